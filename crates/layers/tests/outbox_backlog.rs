//! No maximum buffer size (`[5.3-5-int]`, `[6.4-4]`): a backlog of 1,000,000 messages —
//! far above any cap a product might pick — is accepted whole and drained whole, and the
//! process's peak memory stays flat (the queue lives on disk, never in memory).
//!
//! Long (about a minute in a debug build): `#[ignore]`d, run by `.ci/run`'s long step.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use switchyard_core::{BoxError, MessageId, RetryPolicy};
use switchyard_layers::store_forward::{
    Category, FjallOutbox, Forwarder, ForwarderOptions, NewMessage, OutboxOptions, StoredMessage,
};
use tower::service_fn;

const MESSAGES: usize = 1_000_000;

/// Peak resident memory the whole test process may reach, buffering and draining.
const PEAK_RSS_LIMIT_MIB: u64 = 256;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 1,000,000 messages buffered and drained (run by .ci/run)"]
async fn a_million_message_backlog_is_accepted_and_drained_in_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = FjallOutbox::open(
        dir.path(),
        OutboxOptions {
            min_free_disk: 0,
            ..OutboxOptions::default()
        },
    )
    .unwrap();
    let producers = 128;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let outbox = outbox.clone();
        let count = MESSAGES / producers + usize::from(p < MESSAGES % producers);
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                outbox
                    .enqueue(NewMessage {
                        id: MessageId::new(),
                        category: Category::External,
                        target: format!("ERP-{}", p % 4),
                        payload: serde_json::json!({ "seq": i }),
                        retry: RetryPolicy::default(),
                        first_delay: Duration::ZERO,
                        last_error: None,
                    })
                    .await
                    .expect("no maximum buffer size: every message is accepted");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(outbox.pending_total() as usize, MESSAGES);
    let after_buffering = status_kib("VmHWM:") / 1024;
    assert!(
        after_buffering <= PEAK_RSS_LIMIT_MIB,
        "peak RSS {after_buffering} MiB while buffering {MESSAGES} messages (limit {PEAK_RSS_LIMIT_MIB} MiB)"
    );

    let delivered = Arc::new(AtomicU64::new(0));
    let count = delivered.clone();
    let _forwarder = Forwarder::new(
        outbox.clone(),
        service_fn(move |_: StoredMessage| {
            count.fetch_add(1, Ordering::Relaxed);
            async { Ok::<(), BoxError>(()) }
        }),
        ForwarderOptions::default(),
    )
    .spawn();
    let started = std::time::Instant::now();
    while outbox.pending_total() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "drain stalled at {} pending",
            outbox.pending_total()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(delivered.load(Ordering::Relaxed) >= MESSAGES as u64);
    let peak = status_kib("VmHWM:") / 1024;
    assert!(
        peak <= PEAK_RSS_LIMIT_MIB,
        "peak RSS {peak} MiB after draining {MESSAGES} messages (limit {PEAK_RSS_LIMIT_MIB} MiB)"
    );
}
