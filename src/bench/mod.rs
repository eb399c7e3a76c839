//! `switchyard bench …`: the benchmarks of the issues, run in release mode, each
//! printing its figure beside the baseline it is compared with, measured in the same
//! run. Load comes from a second process (`switchyard load`), and for the Inbound API
//! also from wrk where it is installed.
//!
//! ```text
//! cargo run --release -- bench inbound       # Inbound API vs a bare axum JSON echo
//! cargo run --release -- bench site-client   # central's site client vs the echo
//! cargo run --release -- bench external      # ExternalSystem.Call vs raw reqwest; CachedWrite drain
//! cargo run --release -- bench smtp          # e-mails/s, pool of 5 vs one connection
//! cargo run --release -- bench drain         # a 10,000-call backlog at max_rate 500 vs unpaced
//! cargo run --release -- bench ha            # a pair: replicated enqueue vs one outbox, failover
//! ```
//!
//! `bench inbound` with wrk installed (`apt-get install wrk`), release build at the commit
//! that added mimalloc, 2 cores shared with a test run, two runs back to back (wrk figures):
//!
//! | | req/s | p99 | server CPU per request | vs echo |
//! |---|---|---|---|---|
//! | bare axum JSON echo | 57.8k / 40.0k | 2.7 / 6.0 ms | 17 / 20 µs | 100 % |
//! | `Validate3` | 33.6k / 28.6k | 4.2 / 5.0 ms | 41 / 47 µs | 58 % / 71 % (target 55 %) |
//! | `GetAttributes` (one `Route.To`) | 9.6k / 11.3k | 8.8 / 6.0 ms | 163 / 143 µs | 17 % / 28 % (target 30 %) |
//!
//! The echo's figure moves most with the machine's other load, and with it every ratio;
//! the CPU per request is the steadier figure (docs/decisions.md, "Inbound performance").

pub mod drain;
pub mod echo;
pub mod ha;
pub mod load;
pub mod plant;
pub mod plant_toml;
pub mod suites;
pub mod wrk;

/// Buffers `count` messages for `target` in `outbox` directly (in chunks of 2,000), all
/// falling due at `due_ms`, each with the payload `payload(i)`: a full backlog for a
/// drain to start from.
pub async fn backlog(
    outbox: &switchyard_layers::store_forward::FjallOutbox,
    category: switchyard_layers::store_forward::Category,
    target: &str,
    count: usize,
    due_ms: u64,
    payload: impl Fn(usize) -> serde_json::Value,
) {
    use switchyard_layers::store_forward::{OutboxEvent, StoredMessage};
    let mut n = 0;
    while n < count {
        let chunk = (count - n).min(2_000);
        let events = (n..n + chunk)
            .map(|i| {
                OutboxEvent::Enqueued(StoredMessage {
                    id: switchyard_core::MessageId::new(),
                    category,
                    target: target.to_string(),
                    payload: payload(i),
                    retry: switchyard_core::RetryPolicy::default(),
                    created_ms: due_ms,
                    attempts: 0,
                    due_ms,
                    last_error: None,
                })
            })
            .collect();
        outbox.apply(events, false).await.expect("fill the outbox");
        n += chunk;
    }
}

/// Latency and throughput of one measured run.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Figures {
    /// Completed requests.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
}

impl Figures {
    /// From per-request latencies over a wall-clock duration.
    pub fn from_latencies(
        mut latencies: Vec<std::time::Duration>,
        errors: u64,
        elapsed: std::time::Duration,
    ) -> Figures {
        latencies.sort_unstable();
        let pick = |q: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies[i].as_secs_f64() * 1000.0
        };
        Figures {
            requests: latencies.len() as u64,
            errors,
            rps: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
        }
    }
}

/// Prints one line of a comparison.
pub fn line(label: &str, f: &Figures) {
    println!(
        "{label:<58} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} requests, {} errors)",
        f.rps, f.p50_ms, f.p99_ms, f.requests, f.errors
    );
}

/// Prints a ratio against a target.
pub fn verdict(what: &str, ratio: f64, target: f64, higher_is_better: bool) {
    let met = if higher_is_better {
        ratio >= target
    } else {
        ratio <= target
    };
    println!(
        "  {what}: {:.0}% (target {} {:.0}%) {}",
        ratio * 100.0,
        if higher_is_better { ">=" } else { "<=" },
        target * 100.0,
        if met { "MET" } else { "NOT MET" }
    );
}
