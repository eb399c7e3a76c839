//! The paced drain (issue 15), in virtual time: rate, in-flight limit, no head-of-line
//! blocking of other targets, waiting that costs no attempts, and a pace that changes.
//! A test binary of its own: the real-time test here would otherwise load the CPU under
//! the store-and-forward unit tests that run on a paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::{BoxError, Failure, Pace, RetryPolicy, error::codes};
use switchyard_layers::store_forward::{
    Category, FjallOutbox, Forwarder, ForwarderOptions, Lane, OutboxEvent, OutboxOptions, Pacing,
    StoredMessage, now_ms,
};
use tokio::time::Instant;
use tower::service_fn;

fn open(dir: &std::path::Path) -> FjallOutbox {
    FjallOutbox::open(
        dir,
        OutboxOptions {
            min_free_disk: 0,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Buffers `n` messages for `target`, all due now, in one batch.
async fn fill(outbox: &FjallOutbox, target: &str, n: usize, retry: RetryPolicy) {
    let now = now_ms();
    let events = (0..n)
        .map(|i| {
            OutboxEvent::Enqueued(StoredMessage {
                id: switchyard_core::MessageId::new(),
                category: Category::External,
                target: target.into(),
                payload: serde_json::json!({ "n": i }),
                retry,
                created_ms: now,
                attempts: 0,
                due_ms: now,
                last_error: None,
            })
        })
        .collect();
    outbox.apply(events, false).await.unwrap();
}

/// Paces the `ERP` target only, at whatever `pace` holds when asked.
fn erp_paced(pace: Arc<Mutex<Pace>>) -> impl Pacing {
    move |category, target: &str| {
        (target == "ERP").then(|| Lane {
            category,
            name: target.to_string(),
            pace: *pace.lock().unwrap(),
        })
    }
}

fn pace(max_rate: Option<f64>, max_in_flight: Option<u32>) -> Arc<Mutex<Pace>> {
    Arc::new(Mutex::new(Pace {
        max_rate,
        max_in_flight,
    }))
}

/// Delivery attempts as the peer saw them: (target, when it started, deliveries of any
/// target in flight), and a signal on every arrival.
#[derive(Clone)]
struct Log {
    attempts: Arc<Mutex<Vec<(String, Instant, usize)>>>,
    arrived: Arc<tokio::sync::watch::Sender<()>>,
}

impl Log {
    fn new() -> Self {
        Log {
            attempts: Arc::default(),
            arrived: Arc::new(tokio::sync::watch::channel(()).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Instant, usize)>> {
        self.attempts.lock().unwrap()
    }
}

/// A peer taking `work` per message, recording each arrival and the concurrency seen.
fn peer(
    work: Duration,
    fail: Option<Failure>,
) -> (
    Log,
    impl tower::Service<StoredMessage, Response = (), Error = BoxError, Future = impl Send + use<>>
    + Clone
    + Send
    + 'static,
) {
    let log = Log::new();
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = log.clone();
    let service = service_fn(move |m: StoredMessage| {
        let (seen, busy, fail) = (seen.clone(), busy.clone(), fail.clone());
        async move {
            use std::sync::atomic::Ordering::SeqCst;
            let now_busy = busy.fetch_add(1, SeqCst) + 1;
            seen.lock()
                .push((m.target.clone(), Instant::now(), now_busy));
            seen.arrived.send_replace(());
            tokio::time::sleep(work).await;
            busy.fetch_sub(1, SeqCst);
            match fail {
                Some(f) => Err(BoxError::from(f)),
                None => Ok(()),
            }
        }
    });
    (log, service)
}

fn arrivals(log: &Log, target: &str) -> Vec<Instant> {
    log.lock()
        .iter()
        .filter(|a| a.0 == target)
        .map(|a| a.1)
        .collect()
}

/// Waits until `n` attempts for `target` reached the peer. Woken by the arrivals, not
/// by polling: with the clock paused, a poll loop lets the clock run ahead whenever
/// the outbox's writer thread is busy, which would stretch every figure measured.
async fn arrived(log: &Log, target: &str, n: usize) {
    let mut changes = log.arrived.subscribe();
    let reached = changes.wait_for(|_| arrivals(log, target).len() >= n);
    tokio::time::timeout(Duration::from_secs(3600), reached)
        .await
        .unwrap_or_else(|_| panic!("{n} {target} attempts did not arrive"))
        .unwrap();
}

/// Polls (after the measurements) until `done`.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(start_paused = true)]
async fn a_paced_backlog_drains_at_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    fill(&outbox, "ERP", 300, RetryPolicy::default()).await;
    let (log, service) = peer(Duration::from_millis(5), None);
    let begin = Instant::now();
    let _forwarder = Forwarder::new(outbox.clone(), service, ForwarderOptions::default())
        .with_pacing(erp_paced(pace(Some(100.0), None)))
        .spawn();
    arrived(&log, "ERP", 300).await;
    let times = arrivals(&log, "ERP");
    assert_eq!(times.len(), 300);
    // A burst of 1 + 100 × 0.1 s, then one every 10 ms.
    let took = (*times.last().unwrap() - begin).as_secs_f64();
    assert!((2.8..3.0).contains(&took), "300 at 100/s took {took:.2} s");
    for (i, t) in times.iter().enumerate() {
        let in_the_next_second = times[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_secs(1))
            .count();
        assert!(in_the_next_second <= 111, "{in_the_next_second} within 1 s");
    }
}

#[tokio::test(start_paused = true)]
async fn max_in_flight_one_never_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    fill(&outbox, "ERP", 20, RetryPolicy::default()).await;
    let (log, service) = peer(Duration::from_millis(50), None);
    let begin = Instant::now();
    let _forwarder = Forwarder::new(outbox.clone(), service, ForwarderOptions::default())
        .with_pacing(erp_paced(pace(None, Some(1))))
        .spawn();
    arrived(&log, "ERP", 20).await;
    let log = log.lock().clone();
    assert_eq!(log.len(), 20);
    assert!(log.iter().all(|a| a.2 == 1), "never two at once");
    assert!(Instant::now() - begin >= Duration::from_millis(20 * 50));
}

#[tokio::test(start_paused = true)]
async fn a_paced_backlog_does_not_hold_up_other_targets() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    fill(&outbox, "ERP", 2_000, RetryPolicy::default()).await;
    // Behind the whole ERP backlog in due order.
    tokio::time::sleep(Duration::from_millis(5)).await;
    fill(&outbox, "MES", 50, RetryPolicy::default()).await;
    let (log, service) = peer(Duration::from_millis(1), None);
    let begin = Instant::now();
    let _forwarder = Forwarder::new(outbox.clone(), service, ForwarderOptions::default())
        .with_pacing(erp_paced(pace(Some(10.0), None)))
        .spawn();
    arrived(&log, "MES", 50).await;
    let mes_done = Instant::now() - begin;
    assert!(mes_done < Duration::from_secs(1), "MES waited {mes_done:?}");
    // A message enqueued later, for an unpaced target, goes at once too.
    fill(&outbox, "MES", 1, RetryPolicy::default()).await;
    let asked = Instant::now();
    arrived(&log, "MES", 51).await;
    assert!(Instant::now() - asked < Duration::from_millis(500));
    let erp = arrivals(&log, "ERP").len();
    let at_pace = (Instant::now() - begin).as_secs_f64() * 10.0 + 2.0;
    assert!(
        (erp as f64) <= at_pace,
        "{erp} ERP messages, pace allows {at_pace:.0}"
    );
}

#[tokio::test(start_paused = true)]
async fn waiting_for_the_pace_costs_no_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    // Two retries one second apart: parked after two attempts by the forwarder (the
    // first, direct attempt happened before buffering), however long each waited.
    fill(
        &outbox,
        "ERP",
        10,
        RetryPolicy::new(2, Duration::from_secs(1)),
    )
    .await;
    let down = Failure::transient(codes::HTTP_STATUS, "HTTP 503").with_status(503);
    let (log, service) = peer(Duration::from_millis(1), Some(down));
    let _forwarder = Forwarder::new(outbox.clone(), service, ForwarderOptions::default())
        .with_pacing(erp_paced(pace(Some(2.0), Some(1))))
        .spawn();
    arrived(&log, "ERP", 20).await;
    wait_until("all parked", || {
        outbox.counts().first().is_some_and(|c| c.2.parked == 10)
    })
    .await;
    assert_eq!(arrivals(&log, "ERP").len(), 20, "two attempts each");
    let page = outbox.list_parked(None, 100).unwrap();
    assert!(page.items.iter().all(|p| p.message.attempts == 2));
}

#[tokio::test(start_paused = true)]
async fn two_paced_lanes_each_keep_their_own_rate() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    // Interleaved in due order: ERP, MES, ERP, MES, …
    for _ in 0..100 {
        fill(&outbox, "ERP", 1, RetryPolicy::default()).await;
        fill(&outbox, "MES", 1, RetryPolicy::default()).await;
    }
    let (log, service) = peer(Duration::from_millis(1), None);
    let pacing = |category, target: &str| {
        Some(Lane {
            category,
            name: target.to_string(),
            pace: Pace {
                max_rate: Some(if target == "ERP" { 20.0 } else { 10.0 }),
                max_in_flight: None,
            },
        })
    };
    let begin = Instant::now();
    let _forwarder = Forwarder::new(outbox.clone(), service, ForwarderOptions::default())
        .with_pacing(pacing)
        .spawn();
    arrived(&log, "ERP", 100).await;
    let erp_took = (Instant::now() - begin).as_secs_f64();
    let mes_by_then = arrivals(&log, "MES").len();
    arrived(&log, "MES", 100).await;
    let mes_took = (Instant::now() - begin).as_secs_f64();
    // 100 at 20/s after a burst of 3: about 4.85 s; 100 at 10/s after 2: about 9.8 s.
    assert!((4.7..5.3).contains(&erp_took), "ERP took {erp_took:.2} s");
    assert!((9.6..10.3).contains(&mes_took), "MES took {mes_took:.2} s");
    assert!(
        (48..=54).contains(&mes_by_then),
        "{mes_by_then} MES while ERP drained"
    );
}

/// In real time: with a paused clock, every wait for the outbox's writer thread lets
/// the clock jump, which says nothing about an unpaced drain's speed.
#[tokio::test]
async fn a_pace_taken_away_lets_the_backlog_go() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    fill(&outbox, "ERP", 200, RetryPolicy::default()).await;
    let (log, service) = peer(Duration::from_millis(1), None);
    let slow = pace(Some(1.0), None);
    let _forwarder = Forwarder::new(outbox.clone(), service, ForwarderOptions::default())
        .with_pacing(erp_paced(slow.clone()))
        .spawn();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = arrivals(&log, "ERP").len();
    assert!(before <= 3, "{before} at 1/s");
    *slow.lock().unwrap() = Pace::default();
    let changed = Instant::now();
    wait_until("the rest delivered", || outbox.pending_total() == 0).await;
    // At the old pace the rest would take more than three minutes.
    assert!(
        Instant::now() - changed < Duration::from_secs(10),
        "drained {:?} after the pace was removed",
        Instant::now() - changed
    );
}
