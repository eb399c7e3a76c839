//! A full disk: the site's data dir on a small tmpfs (CI runs as root). New buffering
//! fails with a clear error to the script; nothing already buffered is lost or
//! corrupted; buffering resumes once space is freed.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Tmpfs> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !in_ci(),
            "CI runs as root and must be able to mount a tmpfs"
        );
        eprintln!("cannot mount a tmpfs (not root?): disk-full test skipped outside CI");
        return None;
    }
    Some(Tmpfs(dir.to_path_buf()))
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_new_buffering_loudly_and_loses_nothing() {
    let stub = HttpStub::start().await;
    stub.set_default(Reply::json(503, json!({})));
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    let mount = plant.dir.path().join("small-disk");
    let Some(_tmpfs) = mount_tmpfs(&mount, "96m") else {
        return;
    };
    let text = std::fs::read_to_string(&plant.config)
        .unwrap()
        .replace(
            "data_dir = \"data/plant-a\"",
            &format!("data_dir = \"{}\"", mount.join("plant-a").display()),
        )
        .replace("min_free_disk = \"1MiB\"", "min_free_disk = \"16MiB\"")
        .replace("interval = \"1s\"", "interval = \"2s\"")
        .replace("max_retries = 3,", "max_retries = 1000,");
    std::fs::write(&plant.config, text).unwrap();
    plant.start().await;

    let cached = |n: u32| json!({ "system": "Stub", "method": "PostReading", "args": { "tank": format!("before-{n}"), "level": n } });
    let mut buffered = Vec::new();
    for n in 0..5 {
        let r = plant.run("T-1", "Cached", cached(n)).await;
        assert_eq!(r["value"]["status"], "buffered", "{r}");
        buffered.push(r["value"]["id"].as_str().unwrap().to_string());
    }

    // Fill the disk until less than the floor is left.
    let filler = mount.join("filler");
    let free = free_bytes(&mount);
    let keep = 8 << 20;
    let status = Command::new("fallocate")
        .args(["-l", &(free.saturating_sub(keep)).to_string()])
        .arg(&filler)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(free_bytes(&mount) < 16 << 20);
    let r = plant.run("T-1", "Cached", cached(100)).await;
    assert_eq!(r["error"]["code"], "BUFFER_REFUSED", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("refused the message") && message.contains("MiB free"),
        "{message}"
    );

    // Space back: buffering resumes.
    std::fs::remove_file(&filler).unwrap();
    let r = plant.run("T-1", "Cached", cached(200)).await;
    assert_eq!(r["value"]["status"], "buffered", "{r}");
    buffered.push(r["value"]["id"].as_str().unwrap().to_string());

    // Nothing that was buffered was lost or corrupted: all six are delivered.
    stub.set_default(Reply::json(200, json!({})));
    wait_until_async("everything delivered", Duration::from_secs(30), || async {
        plant.counts("plant-a").await == (0, 0)
    })
    .await;
    let delivered: std::collections::BTreeSet<String> = stub
        .seen()
        .iter()
        .filter(|s| s.headers.get("idempotency-key").is_some())
        .map(|s| s.headers["idempotency-key"].to_str().unwrap().to_string())
        .collect();
    for id in &buffered {
        assert!(
            delivered.contains(id),
            "{id} was buffered and never delivered"
        );
    }
    plant.kill("plant-a");
}
