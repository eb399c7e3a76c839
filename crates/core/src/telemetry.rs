//! Prometheus metrics (`GET /metrics` on central and on every site): API calls by
//! method and status, latency, calls in flight, script pools, store-and-forward depth,
//! delivery attempts and their outcome per target, the drain's pace, free disk.
//!
//! [`METRICS`] lists every metric switchyard records, with its help text: the recorder
//! is given them all when it is installed, so every series carries `# HELP` and
//! `# TYPE` lines (what `promtool check metrics` asks for). A metric recorded anywhere
//! must be listed here; a test greps the workspace to hold that.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::path::Path;
use std::sync::OnceLock;

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution, exported with buckets.
    Histogram,
}

/// Every metric: name, kind, help text.
pub const METRICS: &[(&str, Kind, &str)] = &[
    // Central: the Inbound API.
    (
        "switchyard_api_calls_total",
        Kind::Counter,
        "Inbound API calls answered, by method and HTTP status.",
    ),
    (
        "switchyard_api_call_duration_seconds",
        Kind::Histogram,
        "Time to answer an Inbound API call, by method.",
    ),
    (
        "switchyard_api_in_flight",
        Kind::Gauge,
        "Inbound API calls being answered now.",
    ),
    (
        "switchyard_site_deployed",
        Kind::Gauge,
        "1 when the site accepted central's current deployment, 0 when the last attempt failed (the site is unreachable or rejected it).",
    ),
    // Script pools (central and sites).
    (
        "switchyard_script_queue",
        Kind::Gauge,
        "Script runs waiting for a thread of the pool.",
    ),
    (
        "switchyard_script_busy",
        Kind::Gauge,
        "Threads of the pool running a script.",
    ),
    (
        "switchyard_script_dropped_total",
        Kind::Counter,
        "Script runs dropped unrun, by pool and reason.",
    ),
    // Sites.
    (
        "switchyard_alarms_triggered_total",
        Kind::Counter,
        "Alarm transitions into the active state, by alarm.",
    ),
    // Store-and-forward, per category and target.
    (
        "switchyard_sf_pending",
        Kind::Gauge,
        "Store-and-forward messages waiting for delivery.",
    ),
    (
        "switchyard_sf_parked",
        Kind::Gauge,
        "Store-and-forward messages parked, waiting for an operator.",
    ),
    (
        "switchyard_sf_oldest_pending_age_seconds",
        Kind::Gauge,
        "Age of the oldest pending store-and-forward message (0 when none is pending).",
    ),
    (
        "switchyard_sf_attempts_total",
        Kind::Counter,
        "Delivery attempts of buffered messages by the forwarder.",
    ),
    (
        "switchyard_sf_delivered_total",
        Kind::Counter,
        "Buffered messages delivered by the forwarder.",
    ),
    (
        "switchyard_sf_failures_total",
        Kind::Counter,
        "Failed delivery attempts of buffered messages, by class (transient or permanent).",
    ),
    (
        "switchyard_sf_retries_total",
        Kind::Counter,
        "Failed attempts after which the message waits for another retry.",
    ),
    (
        "switchyard_sf_parked_total",
        Kind::Counter,
        "Messages parked (retries used up, or a permanent failure during a retry).",
    ),
    (
        "switchyard_sf_attempt_duration_seconds",
        Kind::Histogram,
        "Duration of one delivery attempt of a buffered message (the outbound call).",
    ),
    (
        "switchyard_sf_max_rate",
        Kind::Gauge,
        "Configured max_rate of the drain in messages per second (0: unpaced).",
    ),
    (
        "switchyard_sf_max_in_flight",
        Kind::Gauge,
        "Configured max_in_flight of the drain (0: no limit of its own).",
    ),
    // Pairs with a witness (SPEC §8).
    (
        "switchyard_ha_leader",
        Kind::Gauge,
        "1 while this voter leads its pair (the active node, or a witness handing over), else 0.",
    ),
    (
        "switchyard_ha_term",
        Kind::Gauge,
        "Current Raft term of this voter.",
    ),
    (
        "switchyard_ha_last_log_index",
        Kind::Gauge,
        "Index of the last entry in this voter's replicated log.",
    ),
    (
        "switchyard_ha_applied_index",
        Kind::Gauge,
        "Index of the last log entry applied to this voter's outbox.",
    ),
    (
        "switchyard_ha_replication_lag_entries",
        Kind::Gauge,
        "On the leader: log entries a follower has not yet received, by follower.",
    ),
    (
        "switchyard_ha_leader_elections_total",
        Kind::Counter,
        "Elections this voter won (a rise on a full node is a failover to it).",
    ),
    // Disk.
    (
        "switchyard_disk_free_bytes",
        Kind::Gauge,
        "Free disk space available to the node in its data directory.",
    ),
    (
        "switchyard_disk_min_free_bytes",
        Kind::Gauge,
        "Configured min_free_disk: below this much free space store-and-forward refuses new messages.",
    ),
];

/// Bucket bounds of every duration histogram, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide recorder (installed on first use; central and the sites of
/// `switchyard dev` share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(DURATION_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (tests): render an empty, private one.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        describe();
        handle
    })
}

/// Gives the recorder the help text of every metric.
fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

/// Records the free space under `dir` (a statfs call: cheap enough for every scrape).
pub fn record_disk_free(dir: &Path) {
    match fs4::available_space(dir) {
        Ok(free) => {
            metrics::gauge!("switchyard_disk_free_bytes", "dir" => dir.display().to_string())
                .set(free as f64);
        }
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot read the free disk space")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for &(name, kind, help) in METRICS {
            assert!(seen.insert(name), "{name} listed twice");
            assert!(name.starts_with("switchyard_"), "{name}");
            assert!(!help.is_empty(), "{name} has help text");
            assert_eq!(
                name.ends_with("_total"),
                kind == Kind::Counter,
                "{name}: counters, and only counters, end in _total"
            );
            if kind == Kind::Histogram {
                assert!(name.ends_with("_seconds"), "{name}: durations in seconds");
            }
        }
    }

    /// Every `metrics::counter!/gauge!/histogram!("name"…)` in the workspace names a
    /// listed metric of that kind (otherwise it would be exported without help text).
    #[test]
    fn every_recorded_metric_is_listed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for dir in ["crates", "src"] {
            collect_rust_files(&root.join(dir), &mut files);
        }
        let mut found = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // Spelled in pieces so that this test does not find itself.
            for (macro_name, kind) in [
                (concat!("metrics::", "counter!("), Kind::Counter),
                (concat!("metrics::", "gauge!("), Kind::Gauge),
                (concat!("metrics::", "histogram!("), Kind::Histogram),
            ] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = text[at + macro_name.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix('"') else {
                        continue;
                    };
                    let name = &rest[..rest.find('"').unwrap()];
                    found += 1;
                    assert!(
                        METRICS.iter().any(|m| m.0 == name && m.1 == kind),
                        "{}: {name} ({kind:?}) is not in telemetry::METRICS",
                        file.display()
                    );
                }
            }
        }
        assert!(found >= 20, "the grep found only {found} metrics");
    }

    fn collect_rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    collect_rust_files(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
}
