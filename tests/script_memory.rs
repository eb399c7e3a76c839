//! A script that builds a map of huge keys (rhai counts neither map keys against its
//! string limit nor memory in total) is stopped at its memory budget: the caller gets a
//! clean `500 SCRIPT_ERROR`, the node keeps its memory and answers the next call.

mod common;

use common::plant_toml::list;
use common::*;
use serde_json::json;
use std::time::Duration;

/// Doubles a string to 1 MiB, then inserts keys of that size until something stops it.
const HOG: &str = r#"
let s = "x";
while s.len() < 1048576 { s += s; }
let m = #{};
let i = 0;
loop { m[s + i] = i; i += 1; }
"#;

fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_building_a_map_of_huge_keys_is_stopped_at_its_memory_budget() {
    let mut plant = TestPlant::with_config(&Peers::default(), |toml| {
        toml.table("api_methods.Hog")
            .set("script", "api/hog.rhai")
            .set("timeout", "20s")
            .set("approved_keys", list(["mes"]));
    });
    write(plant.dir.path(), "api/hog.rhai", HOG);
    plant.start().await;
    let started = std::time::Instant::now();
    let (status, body) = plant.call("Hog", json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("SCRIPT_ERROR")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped by its memory budget, not by the 20 s timeout: {:?}",
        started.elapsed()
    );
    let log =
        std::fs::read_to_string(plant.dir.path().join("data/central/failures.jsonl")).unwrap();
    assert!(log.contains("more memory than a run may"), "{log}");
    let central = plant.procs.iter().find(|p| p.name == "central").unwrap();
    let rss = rss_mib(central.child.id());
    assert!(rss < 1024, "central holds {rss} MiB after the run");
    // The node goes on.
    let (status, body) = plant
        .call(
            "Run",
            json!({ "instance": "T-1", "script": "Echo", "args": { "x": 1 } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
