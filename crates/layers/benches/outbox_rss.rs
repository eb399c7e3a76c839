//! (c) Peak memory while buffering a large backlog: enqueues 5,000,000 messages of about
//! 300 bytes (override with `SWITCHYARD_BENCH_MESSAGES`) and prints the peak RSS
//! (`VmHWM`), which must stay flat whatever the backlog (target <= 256 MiB).
//!
//! Run: `cargo bench -p switchyard-layers --bench outbox_rss`.

use std::time::{Duration, Instant};
use switchyard_core::{MessageId, RetryPolicy};
use switchyard_layers::store_forward::{Category, FjallOutbox, NewMessage, OutboxOptions};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that excludes us means: do nothing.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty()
        && !args
            .iter()
            .any(|a| "rss".contains(a.as_str()) || a.contains("rss"))
    {
        return;
    }
    let total: usize = std::env::var("SWITCHYARD_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let dir = tempfile::tempdir_in(
        std::env::var("SWITCHYARD_BENCH_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let padding = "x".repeat(200);
    runtime.block_on(async move {
        let outbox = FjallOutbox::open(dir.path(), OutboxOptions { min_free_disk: 0, ..Default::default() }).unwrap();
        let start = Instant::now();
        let producers = 256;
        let mut tasks = Vec::new();
        for p in 0..producers {
            let outbox = outbox.clone();
            let padding = padding.clone();
            let count = total / producers + usize::from(p < total % producers);
            tasks.push(tokio::spawn(async move {
                for i in 0..count {
                    let message = NewMessage {
                        id: MessageId::new(),
                        category: Category::External,
                        target: format!("ERP-{}", p % 8),
                        payload: serde_json::json!({ "method": "PostReading", "params": { "seq": i, "note": padding } }),
                        retry: RetryPolicy::default(),
                        first_delay: Duration::from_secs(3600),
                        last_error: None,
                    };
                    outbox.enqueue(message).await.unwrap();
                }
            }));
        }
        let reporter = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    eprintln!("  buffered {} … RSS {} MiB", outbox.pending_total(), status_kib("VmRSS:") / 1024);
                }
            }
        });
        for t in tasks {
            t.await.unwrap();
        }
        reporter.abort();
        let took = start.elapsed();
        let pending = outbox.pending_total();
        let disk = dir_size(dir.path());
        println!("== store-and-forward memory ==");
        println!("(c) buffered {pending} messages (~300 B each) in {:.1} s ({:.0} msgs/s), {} MiB on disk", took.as_secs_f64(), pending as f64 / took.as_secs_f64(), disk >> 20);
        println!("(c) peak RSS (VmHWM): {} MiB; RSS now {} MiB (target <= 256 MiB)", status_kib("VmHWM:") / 1024, status_kib("VmRSS:") / 1024);
        assert_eq!(pending as usize, total);
    });
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
