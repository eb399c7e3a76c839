//! Paced drain (issue 15), end to end: a site whose outbox holds a backlog (written
//! while the site was stopped, as after an outage) restarts and drains it into a real
//! HTTP peer at the configured `max_rate`, never more than `max_in_flight` at once,
//! measured where it matters — at the peer.
//!
//! The 10,000-message run at 500/s is `#[ignore]`d (it takes about 25 s);
//! `.ci/run` runs it with the other long tests.

mod common;

use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::{MessageId, RetryPolicy};
use switchyard_layers::store_forward::{
    Category, FjallOutbox, OutboxEvent, OutboxOptions, StoredMessage, now_ms,
};
use switchyard_site::messages::{ExternalMessage, SfMessage};

/// An HTTP peer that records when each request arrived, per system (told apart by
/// their credentials), and the most requests of one system it held at once.
#[derive(Clone, Default)]
struct CountingPeer {
    arrivals: Arc<Mutex<Vec<(&'static str, Instant)>>>,
    busy: Arc<[AtomicUsize; 2]>,
    most_at_once: Arc<[AtomicUsize; 2]>,
}

impl CountingPeer {
    /// Serves on a free port; each request takes `work`.
    async fn start(&self, work: Duration) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let me = me.clone();
            async move {
                // `Stub` sends an API key, `BasicStub` Basic credentials.
                let (system, slot) = if request.headers().contains_key("authorization") {
                    ("BasicStub", 1)
                } else {
                    ("Stub", 0)
                };
                let now_busy = me.busy[slot].fetch_add(1, Ordering::SeqCst) + 1;
                me.most_at_once[slot].fetch_max(now_busy, Ordering::SeqCst);
                me.arrivals.lock().unwrap().push((system, Instant::now()));
                tokio::time::sleep(work).await;
                me.busy[slot].fetch_sub(1, Ordering::SeqCst);
                axum::Json(json!({ "ok": true }))
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    fn arrivals(&self, system: &str) -> Vec<Instant> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.0 == system)
            .map(|a| a.1)
            .collect()
    }

    fn most_at_once(&self, system: &str) -> usize {
        let slot = usize::from(system == "BasicStub");
        self.most_at_once[slot].load(Ordering::SeqCst)
    }
}

/// Writes `n` buffered `PostReading` calls for `system` into a stopped site's outbox,
/// all due now (what an outage leaves behind).
async fn buffer(plant: &TestPlant, site: &str, system: &str, n: usize) {
    let dir = plant.dir.path().join("data").join(site).join("outbox");
    let outbox = FjallOutbox::open(
        &dir,
        OutboxOptions {
            min_free_disk: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let now = now_ms();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
        let events = chunk
            .iter()
            .map(|i| {
                let payload = ExternalMessage {
                    system: system.into(),
                    method: "PostReading".into(),
                    params: json!({ "tank": format!("T-{i}"), "level": *i as f64 }),
                }
                .to_payload();
                OutboxEvent::Enqueued(StoredMessage {
                    id: MessageId::new(),
                    category: Category::External,
                    target: system.into(),
                    payload,
                    retry: RetryPolicy::default(),
                    created_ms: now,
                    attempts: 0,
                    due_ms: now,
                    last_error: Some("peer down during the outage".into()),
                })
            })
            .collect();
        outbox.apply(events, true).await.unwrap();
    }
    outbox.close();
}

/// A plant whose `Stub` system (an API key) and `BasicStub` system (Basic auth) both
/// point at `peer`, with the given paces; started, then `plant-a` stopped with `stub`
/// and `basic` messages buffered for them, then restarted. Returns when it restarted.
async fn plant_after_an_outage(
    peer: SocketAddr,
    pace: impl FnOnce(&mut plant_toml::PlantToml),
    stub: usize,
    basic: usize,
) -> (TestPlant, Instant) {
    let peers = Peers {
        stub: peer.to_string(),
        ..Peers::default()
    };
    let mut plant = TestPlant::with_config(&peers, pace);
    plant.start().await;
    plant.kill("plant-a");
    buffer(&plant, "plant-a", "Stub", stub).await;
    buffer(&plant, "plant-a", "BasicStub", basic).await;
    let restarted = Instant::now();
    plant.start_site("plant-a");
    (plant, restarted)
}

/// Deliveries per whole second, counted from the first arrival.
fn per_second(arrivals: &[Instant]) -> Vec<usize> {
    let Some(first) = arrivals.iter().min() else {
        return Vec::new();
    };
    let mut counts = Vec::new();
    for at in arrivals {
        let second = (*at - *first).as_secs() as usize;
        if counts.len() <= second {
            counts.resize(second + 1, 0);
        }
        counts[second] += 1;
    }
    counts
}

async fn wait_for(peer: &CountingPeer, system: &str, n: usize, timeout: Duration) {
    wait_until(
        &format!("{n} {system} calls reach the peer"),
        timeout,
        || peer.arrivals(system).len() >= n,
    )
    .await;
}

/// 300 messages at `max_rate = 100` take about 3 s at the peer (a burst of 11, then
/// one every 10 ms); 50 for a system with `max_in_flight = 1` never overlap there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_at_max_rate_and_max_in_flight() {
    let peer = CountingPeer::default();
    let addr = peer.start(Duration::from_millis(20)).await;
    let (plant, _) = plant_after_an_outage(
        addr,
        |c| {
            c.table("external_systems.Stub").set("max_rate", 100);
            c.table("external_systems.BasicStub")
                .set("max_in_flight", 1);
        },
        300,
        50,
    )
    .await;
    wait_for(&peer, "Stub", 300, Duration::from_secs(60)).await;
    wait_for(&peer, "BasicStub", 50, Duration::from_secs(60)).await;

    let stub = peer.arrivals("Stub");
    let first = *stub.iter().min().unwrap();
    let span = (*stub.iter().max().unwrap() - first).as_secs_f64();
    println!(
        "300 messages at max_rate 100: {span:.2} s at the peer, per second {:?}",
        per_second(&stub)
    );
    assert!(
        (2.6..3.5).contains(&span),
        "300 at 100/s took {span:.2} s at the peer"
    );
    for (second, n) in per_second(&stub).iter().enumerate() {
        assert!(*n <= 115, "{n} arrivals in second {second}");
    }
    assert_eq!(peer.most_at_once("BasicStub"), 1, "max_in_flight = 1");
    assert!(
        peer.most_at_once("Stub") > 1,
        "the rate alone allows overlapping requests (the peer takes 20 ms each)"
    );
    // Nothing left, nothing parked, and the pace shows in the site's metrics.
    wait_until_async("the outbox is empty", Duration::from_secs(10), || async {
        plant
            .site_health("plant-a")
            .await
            .is_some_and(|h| h["pending"].as_u64() == Some(0) && h["parked"].as_u64() == Some(0))
    })
    .await;
    let rate = plant
        .site_metric(
            "plant-a",
            "switchyard_sf_max_rate{category=\"external\",target=\"Stub\"}",
        )
        .await;
    assert_eq!(rate, Some(100.0));
}

/// Without a pace, the same backlog goes as fast as the forwarder and the peer allow:
/// today's behaviour, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pace_the_backlog_is_not_slowed() {
    let peer = CountingPeer::default();
    let addr = peer.start(Duration::from_millis(20)).await;
    let (_plant, _) = plant_after_an_outage(addr, |_| {}, 300, 0).await;
    wait_for(&peer, "Stub", 300, Duration::from_secs(60)).await;
    let stub = peer.arrivals("Stub");
    let span = (*stub.iter().max().unwrap() - *stub.iter().min().unwrap()).as_secs_f64();
    assert!(span < 2.0, "unpaced, 300 took {span:.2} s");
    assert!(peer.most_at_once("Stub") > 8, "many in flight at once");
}

/// Issue 15's figure: 10,000 buffered messages with `max_rate = 500` drain at
/// 500 ± 10 % per second, measured at the peer (every whole second after the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: about 20 s of draining; run by .ci/run with the other long tests"]
async fn ten_thousand_messages_drain_at_500_per_second() {
    const N: usize = 10_000;
    let peer = CountingPeer::default();
    let addr = peer.start(Duration::from_millis(5)).await;
    let (_plant, restarted) = plant_after_an_outage(
        addr,
        |c| {
            c.table("external_systems.Stub").set("max_rate", 500);
        },
        N,
        0,
    )
    .await;
    wait_for(&peer, "Stub", N, Duration::from_secs(120)).await;
    let stub = peer.arrivals("Stub");
    let seconds = per_second(&stub);
    let first = *stub.iter().min().unwrap();
    let span = (*stub.iter().max().unwrap() - first).as_secs_f64();
    println!(
        "{N} messages at max_rate 500: first at the peer {:.1} s after the restart, drained in {span:.1} s = {:.0}/s; per second: {seconds:?}",
        (first - restarted).as_secs_f64(),
        N as f64 / span,
    );
    // Warm-up (the first second holds the burst) and the last, partial second aside.
    let whole = &seconds[1..seconds.len() - 1];
    assert!(whole.len() >= 15, "{} whole seconds", whole.len());
    for (i, n) in whole.iter().enumerate() {
        assert!(
            (450..=550).contains(n),
            "second {}: {n} messages (500 ± 10 %)",
            i + 1
        );
    }
    let rate = (N - seconds[0]) as f64 / (span - 1.0).max(0.001);
    assert!((450.0..=550.0).contains(&rate), "{rate:.0}/s overall");
}
