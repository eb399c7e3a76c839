//! Metrics as Prometheus users expect (issue 15): a live scrape of central and of a
//! site passes `promtool check metrics`, and the shipped Grafana dashboard and alert
//! rules (examples/monitoring/) only name metrics switchyard exports.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use switchyard_core::telemetry::{Kind, METRICS};

/// `promtool check metrics` on `text`: `Ok` when it has nothing to say, `Err` with its
/// report otherwise; `None` when promtool is not installed.
fn promtool_check(text: &str) -> Option<Result<(), String>> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(report)
    })
}

async fn scrape(port: u16) -> String {
    http()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_live_scrapes_of_central_and_a_site() {
    if promtool_check("").is_none() {
        assert!(
            !in_ci(),
            "promtool is required in CI (Debian package `prometheus`)"
        );
        eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
        return;
    }
    let mut plant = TestPlant::with_config(&Peers::default(), |c| {
        c.table("external_systems.Down").set("max_rate", 5);
    });
    plant.start().await;
    // Something of every kind: API calls answered and refused, a script run, a
    // buffered call whose retries fail (attempts, failures, durations, ages).
    let (status, _) = plant.call_with("Run", json!({}), Some("wrong")).await;
    assert_eq!(status, 401);
    let answer = plant
        .run(
            "T-1",
            "Cached",
            json!({ "system": "Down", "method": "Ping", "args": {} }),
        )
        .await;
    assert_eq!(answer["value"]["status"], "buffered", "{answer}");
    wait_until_async(
        "a retry attempt and the age gauge are recorded",
        Duration::from_secs(30),
        || async {
            let text = scrape(plant.site_port("plant-a")).await;
            text.contains("switchyard_sf_failures_total{")
                && text.contains("switchyard_sf_oldest_pending_age_seconds{")
        },
    )
    .await;

    let central = scrape(plant.central_port).await;
    let site = scrape(plant.site_port("plant-a")).await;
    for (node, text, expected) in [
        (
            "central",
            &central,
            &[
                "switchyard_api_calls_total",
                "switchyard_api_call_duration_seconds",
                "switchyard_disk_free_bytes",
                "switchyard_site_deployed",
            ][..],
        ),
        (
            "plant-a",
            &site,
            &[
                "switchyard_sf_pending",
                "switchyard_sf_attempts_total",
                "switchyard_sf_failures_total",
                "switchyard_sf_attempt_duration_seconds",
                "switchyard_sf_oldest_pending_age_seconds",
                "switchyard_sf_max_rate",
                "switchyard_disk_free_bytes",
                "switchyard_disk_min_free_bytes",
            ][..],
        ),
    ] {
        for name in expected {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{node}: no help text for {name}:\n{text}"
            );
        }
        if let Some(Err(report)) = promtool_check(text) {
            panic!("promtool check metrics on {node}'s /metrics:\n{report}\n---\n{text}");
        }
    }
    assert!(
        site.contains("switchyard_sf_max_rate{category=\"external\",target=\"Down\"} 5"),
        "{site}"
    );
}

/// The base names a PromQL expression may use for `name`: histograms also export
/// `_bucket`, `_sum` and `_count` series.
fn exported(name: &str) -> bool {
    METRICS.iter().any(|&(metric, kind, _)| {
        name == metric
            || (kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(metric)))
    })
}

/// Every `switchyard_…` identifier in a query.
fn metric_names(query: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("switchyard_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(&tail[..end]);
        rest = &tail[end..];
    }
    names
}

fn monitoring(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/monitoring")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let dashboard: Value = serde_json::from_str(&monitoring("switchyard-dashboard.json"))
        .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or("");
            assert!(!expr.is_empty(), "panel {title}: empty query");
            queries.push((title.to_string(), expr.to_string()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        queries.push((
            format!("variable {}", variable["name"]),
            variable["query"].as_str().unwrap_or("").to_string(),
        ));
    }
    assert!(queries.len() >= 12, "{} queries", queries.len());
    for (where_, query) in &queries {
        let names = metric_names(query);
        // `up` is Prometheus' own: whether the scrape of a node succeeded.
        assert!(
            !names.is_empty() || query.starts_with("up{"),
            "{where_}: `{query}` names no metric"
        );
        for name in names {
            assert!(
                exported(name),
                "{where_}: `{name}` is not a switchyard metric"
            );
        }
    }
}

#[test]
fn the_alert_rules_name_only_exported_metrics() {
    let rules = monitoring("alerts.yml");
    let names = metric_names(&rules);
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        assert!(
            exported(name),
            "alerts.yml: `{name}` is not a switchyard metric"
        );
    }
    for alert in [
        "SwitchyardMessagesParked",
        "SwitchyardOldestPendingOverAnHour",
        "SwitchyardDiskFloorNear",
        "SwitchyardSiteUnreachable",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert}");
    }
}
