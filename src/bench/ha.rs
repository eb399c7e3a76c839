//! `switchyard bench ha`: a pair with a witness (three voters on loopback in this
//! process, the production network, storage and token check) against the single-node
//! outbox, measured in the same run:
//!
//! - replicated enqueue: 64 producers × 4 in flight, msgs/s and p50/p99 latency of an
//!   acknowledged enqueue (synced on two of three voters), beside the same load on one
//!   outbox (synced locally) — issue 12's targets: ≥ 50 % and p99 ≤ 20 ms;
//! - replication lag under that load (the leader's view of each follower);
//! - failover time over N stops of the active node: stop → another node active, then
//!   the stopped node started again and caught up before the next stop.

use super::Figures;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::{MessageId, RetryPolicy};
use switchyard_ha::Tuning;
use switchyard_ha::local::LocalPair;
use switchyard_layers::store_forward::{Category, FjallOutbox, NewMessage, OutboxOptions};

const PRODUCERS: usize = 64;
const IN_FLIGHT: usize = 4;

fn message(n: usize) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        category: Category::External,
        target: "ERP".into(),
        payload: serde_json::json!({ "tank": "T-101", "level": n as f64, "at": "2026-12-02T12:00:00Z" }),
        retry: RetryPolicy::new(10, Duration::from_secs(3600)),
        first_delay: Duration::from_secs(3600),
        last_error: Some("HTTP 503".into()),
    }
}

/// 64 producers with 4 enqueues each in flight for `duration`.
async fn enqueue_load(outbox: &FjallOutbox, duration: Duration) -> Figures {
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..PRODUCERS * IN_FLIGHT {
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut n = 0;
            while Instant::now() < end {
                let t = Instant::now();
                match outbox.enqueue(message(n)).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
                n += 1;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((l, e)) = task.await {
            all.extend(l);
            errors += e;
        }
    }
    Figures::from_latencies(all, errors, start.elapsed())
}

fn line(label: &str, f: &Figures) {
    println!(
        "  {label:<34} {:>8.0} msgs/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} errors)",
        f.rps, f.p50_ms, f.p99_ms, f.errors
    );
}

/// Runs the suite: enqueue load for `duration` each, then `kills` failovers.
pub async fn run(duration: Duration, kills: usize) {
    println!(
        "== pair with a witness: replicated enqueue ({PRODUCERS} producers × {IN_FLIGHT} in flight), failover =="
    );
    let root = tempfile::tempdir().expect("temp dir");

    let single = FjallOutbox::open(
        &root.path().join("single"),
        OutboxOptions {
            min_free_disk: 0,
            ..Default::default()
        },
    )
    .expect("single-node outbox");
    let baseline = enqueue_load(&single, duration).await;
    single.close();
    line("single-node outbox (baseline)", &baseline);

    let mut pair = LocalPair::new(&root.path().join("pair"), Tuning::default()).expect("pair");
    for i in 0..3 {
        pair.start(i).await.expect("voter starts");
    }
    let Some(active) = pair.active(Duration::from_secs(30)).await else {
        println!("  no node became active within 30 s");
        return;
    };
    let lag = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let raft = pair.voter(active).node.raft().clone();
        let lag = lag.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let m = raft.metrics().borrow().clone();
                let last = m.last_log_index.unwrap_or(0);
                if let Some(replication) = &m.replication {
                    let worst = replication
                        .iter()
                        .filter(|(id, _)| **id != m.id)
                        .map(|(_, matched)| last.saturating_sub(matched.map_or(0, |l| l.index)))
                        .min()
                        .unwrap_or(0);
                    lag.lock().unwrap_or_else(|p| p.into_inner()).push(worst);
                }
            }
        })
    };
    let replicated = enqueue_load(&pair.voter(active).outbox, duration).await;
    sampler.abort();
    line("pair + witness, replicated", &replicated);
    let ratio = replicated.rps / baseline.rps.max(1.0) * 100.0;
    println!(
        "  replicated vs single node: {ratio:.0} % (target ≥ 50 %: {}); p99 {:.2} ms (target ≤ 20 ms: {})",
        if ratio >= 50.0 { "MET" } else { "NOT MET" },
        replicated.p99_ms,
        if replicated.p99_ms <= 20.0 {
            "MET"
        } else {
            "NOT MET"
        }
    );
    let mut samples = lag.lock().unwrap_or_else(|p| p.into_inner()).clone();
    samples.sort_unstable();
    if !samples.is_empty() {
        println!(
            "  replication lag of the closer follower under load (entries): median {}, max {} ({} samples)",
            samples[samples.len() / 2],
            samples[samples.len() - 1],
            samples.len()
        );
    }

    let mut times = Vec::new();
    for round in 0..kills {
        let Some(active) = pair.active(Duration::from_secs(30)).await else {
            println!("  round {round}: no active node");
            break;
        };
        let stopped = Instant::now();
        pair.stop(active).await;
        match pair.active(Duration::from_secs(30)).await {
            Some(_) => times.push(stopped.elapsed()),
            None => println!("  round {round}: no node took over within 30 s"),
        }
        pair.start(active).await.expect("voter restarts");
        // Caught up before the next round: the restarted node's log ends where the
        // active node's does.
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let Some(now) = pair.active(Duration::from_secs(5)).await else {
                break;
            };
            let last = |i: usize| pair.voter(i).node.raft().metrics().borrow().last_log_index;
            if now != active && last(active) == last(now) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    times.sort_unstable();
    if !times.is_empty() {
        let at =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "  failover over {} stops of the active node (stop → another node active): p50 {} ms, p99 {} ms, max {} ms (target p99 ≤ 10 s, aim ≤ 3 s)",
            times.len(),
            at(0.5).as_millis(),
            at(0.99).as_millis(),
            times[times.len() - 1].as_millis()
        );
    }
    for i in 0..3 {
        pair.stop(i).await;
    }
}
