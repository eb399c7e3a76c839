//! wrk as the load generator, where it is installed: a C event loop that drives a
//! loopback server harder than `switchyard load` can on a small machine, so a ratio
//! against the bare echo is not inflated by a slow generator.

use super::Figures;
use std::time::Duration;

/// Whether `wrk` can be run.
pub fn installed() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// The Lua script that makes wrk POST `body` with `headers`, and print its figures in a
/// line the bench reads (latencies in microseconds).
fn script(body: &str, headers: &[(&str, &str)]) -> String {
    let long = |text: &str| {
        // A Lua long string whose closing bracket cannot occur in `text`.
        let mut level = String::new();
        while text.contains(&format!("]{level}]")) {
            level.push('=');
        }
        format!("[{level}[{text}]{level}]")
    };
    let mut lua = format!(
        "wrk.method = \"POST\"\nwrk.body = {}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        long(body)
    );
    for (name, value) in headers {
        // Spaces inside the brackets: `[[[` would not parse.
        lua.push_str(&format!(
            "wrk.headers[ {} ] = {}\n",
            long(name),
            long(value)
        ));
    }
    lua.push_str(
        "done = function(summary, latency, requests)\n\
         \x20 local e = summary.errors\n\
         \x20 io.write(string.format(\"FIGURES %d %d %d %d %d\\n\", summary.requests,\n\
         \x20   e.connect + e.read + e.write + e.status + e.timeout, summary.duration,\n\
         \x20   latency:percentile(50), latency:percentile(99)))\n\
         end\n",
    );
    lua
}

/// Runs `wrk -t1 -c<concurrency>` against `url` for `duration`.
pub async fn run(
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
    concurrency: usize,
    duration: Duration,
) -> Result<Figures, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let lua = dir.path().join("post.lua");
    std::fs::write(&lua, script(body, headers)).map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new("wrk")
        .args(["-t1", &format!("-c{concurrency}")])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(&lua)
        .arg(url)
        .output()
        .await
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FIGURES "))
        .ok_or_else(|| {
            format!(
                "wrk printed no figures: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let n: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let [requests, errors, micros, p50, p99] = n[..] else {
        return Err(format!("wrk figures unreadable: {line}"));
    };
    Ok(Figures {
        requests: requests.saturating_sub(errors),
        errors,
        rps: requests.saturating_sub(errors) as f64 / (micros.max(1) as f64 / 1e6),
        p50_ms: p50 as f64 / 1000.0,
        p99_ms: p99 as f64 / 1000.0,
    })
}
