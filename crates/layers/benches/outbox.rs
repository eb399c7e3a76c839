//! Store-and-forward throughput (issue: foundation):
//! (a) durable enqueue with 64 concurrent producers, beside a raw-fjall baseline measured
//!     in the same run (one writer, `WriteBatch` of 256 inserts, `PersistMode::SyncData`);
//! (b) draining 100,000 buffered messages into a target that accepts everything.
//!
//! Run: `cargo bench -p switchyard-layers --bench outbox`. A summary with the ratio to
//! the baseline is printed at the end.

use criterion::{Criterion, Throughput, criterion_group};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_core::{BoxError, MessageId, RetryPolicy};
use switchyard_layers::store_forward::{
    Category, FjallOutbox, Forwarder, ForwarderOptions, NewMessage, OutboxEvent, OutboxOptions,
    StoredMessage, now_ms,
};

const PRODUCERS: usize = 64;
const PER_PRODUCER: usize = 100;
const BASELINE_BATCH: usize = 256;
const DRAIN: usize = 100_000;

/// Total time and elements measured by a benchmark, to print rates at the end.
struct Tally(Mutex<(Duration, u64)>);

impl Tally {
    const fn new() -> Self {
        Tally(Mutex::new((Duration::ZERO, 0)))
    }
    fn add(&self, elapsed: Duration, elements: u64) {
        let mut t = self.0.lock().unwrap();
        t.0 += elapsed;
        t.1 += elements;
    }
    fn rate(&self) -> f64 {
        let t = self.0.lock().unwrap();
        t.1 as f64 / t.0.as_secs_f64().max(1e-9)
    }
}

static BASELINE: Tally = Tally::new();
static ENQUEUE: Tally = Tally::new();
static RAW64: Tally = Tally::new();
static PIPELINED: Tally = Tally::new();
static DRAINED: Tally = Tally::new();

fn payload() -> serde_json::Value {
    // About 300 bytes once encoded, like a typical buffered API call.
    serde_json::json!({ "system": "ERP", "method": "PostReading", "params": { "tank": "T-101", "note": "x".repeat(200) } })
}

fn message() -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        category: Category::External,
        target: "ERP".into(),
        payload: payload(),
        retry: RetryPolicy::default(),
        first_delay: Duration::from_secs(3600),
        last_error: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench_enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("enqueue");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    let total = (PRODUCERS * PER_PRODUCER) as u64;
    group.throughput(Throughput::Elements(total));

    let record = serde_json::to_vec(&payload()).unwrap();
    group.bench_function("raw_fjall_baseline_batch256_syncdata", |b| {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let ks = db
            .keyspace("items", KeyspaceCreateOptions::default)
            .unwrap();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..(total as usize / BASELINE_BATCH) {
                    let mut batch = db.batch().durability(Some(PersistMode::SyncData));
                    for _ in 0..BASELINE_BATCH {
                        batch.insert(&ks, MessageId::new().to_bytes(), record.as_slice());
                    }
                    batch.commit().unwrap();
                }
            }
            let elapsed = start.elapsed();
            BASELINE.add(elapsed, iters * total);
            elapsed
        });
    });

    group.bench_function("raw_fjall_batch64_syncdata", |b| {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let ks = db
            .keyspace("items", KeyspaceCreateOptions::default)
            .unwrap();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for _ in 0..(total as usize / PRODUCERS) {
                    let mut batch = db.batch().durability(Some(PersistMode::SyncData));
                    for _ in 0..PRODUCERS {
                        batch.insert(&ks, MessageId::new().to_bytes(), record.as_slice());
                    }
                    batch.commit().unwrap();
                }
            }
            let elapsed = start.elapsed();
            RAW64.add(elapsed, iters * total);
            elapsed
        });
    });

    group.bench_function("outbox_64_producers", |b| {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let outbox = FjallOutbox::open(
            dir.path(),
            OutboxOptions {
                min_free_disk: 0,
                ..Default::default()
            },
        )
        .unwrap();
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut producers = Vec::with_capacity(PRODUCERS);
                    for _ in 0..PRODUCERS {
                        let outbox = outbox.clone();
                        producers.push(tokio::spawn(async move {
                            for _ in 0..PER_PRODUCER {
                                outbox.enqueue(message()).await.unwrap();
                            }
                        }));
                    }
                    for p in producers {
                        p.await.unwrap();
                    }
                }
                let elapsed = start.elapsed();
                ENQUEUE.add(elapsed, iters * total);
                elapsed
            })
        });
    });
    group.bench_function("outbox_64_producers_4_in_flight_each", |b| {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let outbox = FjallOutbox::open(
            dir.path(),
            OutboxOptions {
                min_free_disk: 0,
                ..Default::default()
            },
        )
        .unwrap();
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut producers = Vec::with_capacity(PRODUCERS);
                    for _ in 0..PRODUCERS {
                        let outbox = outbox.clone();
                        producers.push(tokio::spawn(async move {
                            use futures::StreamExt;
                            futures::stream::iter(0..PER_PRODUCER)
                                .map(|_| outbox.enqueue(message()))
                                .buffer_unordered(4)
                                .for_each(|r| async move {
                                    r.unwrap();
                                })
                                .await;
                        }));
                    }
                    for p in producers {
                        p.await.unwrap();
                    }
                }
                let elapsed = start.elapsed();
                PIPELINED.add(elapsed, iters * total);
                elapsed
            })
        });
    });
    group.finish();
}

fn bench_drain(c: &mut Criterion) {
    let mut group = c.benchmark_group("drain");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(DRAIN as u64));
    group.bench_function("drain_100k_accept_all", |b| {
        let rt = runtime();
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let outbox = FjallOutbox::open(
                        dir.path(),
                        OutboxOptions {
                            min_free_disk: 0,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                    // Fill (not timed): due now.
                    let now = now_ms();
                    for chunk in 0..(DRAIN / 1000) {
                        let events = (0..1000)
                            .map(|i| {
                                OutboxEvent::Enqueued(StoredMessage {
                                    id: MessageId::new(),
                                    category: Category::External,
                                    target: format!("ERP-{}", (chunk * 1000 + i) % 4),
                                    payload: payload(),
                                    retry: RetryPolicy::default(),
                                    created_ms: now,
                                    attempts: 0,
                                    due_ms: now,
                                    last_error: None,
                                })
                            })
                            .collect();
                        outbox.apply(events, false).await.unwrap();
                    }
                    assert_eq!(outbox.pending_total(), DRAIN as u64);
                    let accept =
                        tower::service_fn(|_: StoredMessage| async { Ok::<(), BoxError>(()) });
                    let start = Instant::now();
                    let forwarder = Forwarder::new(
                        outbox.clone(),
                        accept,
                        ForwarderOptions {
                            concurrency: 512,
                            ..Default::default()
                        },
                    )
                    .spawn();
                    while outbox.pending_total() > 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    let took = start.elapsed();
                    forwarder.stop();
                    DRAINED.add(took, DRAIN as u64);
                    elapsed += took;
                    outbox.close();
                }
                elapsed
            })
        });
    });
    group.finish();
}

criterion_group!(benches, bench_enqueue, bench_drain);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let baseline = BASELINE.rate();
    let enqueue = ENQUEUE.rate();
    println!();
    println!("== store-and-forward summary ==");
    if baseline > 0.0 && enqueue > 0.0 {
        println!("(a) raw fjall baseline (1 writer, batch 256, SyncData): {baseline:>10.0} msgs/s");
        println!(
            "    raw fjall, batch 64, SyncData (64 producers' bound): {:>10.0} msgs/s",
            RAW64.rate()
        );
        println!(
            "(a) durable enqueue, 64 producers:                     {enqueue:>10.0} msgs/s = {:.0}% of baseline (target >= 50% and >= 50,000 msgs/s)",
            100.0 * enqueue / baseline
        );
        let pipelined = PIPELINED.rate();
        println!(
            "    durable enqueue, 64 producers x 4 in flight:        {pipelined:>10.0} msgs/s = {:.0}% of baseline",
            100.0 * pipelined / baseline
        );
    }
    let drained = DRAINED.rate();
    if drained > 0.0 {
        println!(
            "(b) drain of 100,000 buffered messages:                {drained:>10.0} msgs/s (target >= 50,000)"
        );
    }
}
