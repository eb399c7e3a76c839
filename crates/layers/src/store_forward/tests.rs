use super::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::{Failure, RetryPolicy, error::codes};
use tower::{Layer, ServiceExt, service_fn};
use tower_test::mock;

#[derive(Debug, Clone, PartialEq)]
struct Job {
    id: MessageId,
    body: &'static str,
}

impl Forwardable for Job {
    fn to_message(self, failure: &Failure) -> NewMessage {
        let retry = RetryPolicy::new(3, Duration::from_secs(30));
        NewMessage {
            id: self.id,
            category: Category::External,
            target: "ERP".into(),
            payload: serde_json::json!({ "body": self.body }),
            retry,
            first_delay: retry.delay(failure.retry_after),
            last_error: Some(failure.message.clone()),
        }
    }
}

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

fn message(target: &str, retry: RetryPolicy, first_delay: Duration) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        category: Category::External,
        target: target.into(),
        payload: serde_json::json!({"n": 1}),
        retry,
        first_delay,
        last_error: None,
    }
}

fn scan_all(outbox: &FjallOutbox) -> Vec<StoredMessage> {
    outbox
        .due(u64::MAX - 1, usize::MAX, &HashSet::new(), None)
        .unwrap()
        .messages
}

#[tokio::test]
async fn transient_failures_are_buffered_with_the_request_and_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let (mut svc, mut handle) =
        mock::spawn_layer::<Job, &'static str, _>(StoreForwardLayer::new(outbox.clone()));
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());
    let job = Job {
        id: MessageId::new(),
        body: "order 7",
    };
    let call = svc.call(job.clone());
    let (seen, send) = handle.next_request().await.unwrap();
    assert_eq!(seen, job);
    send.send_error(Failure::transient(codes::HTTP_STATUS, "HTTP 503").with_status(503));
    assert_eq!(call.await.unwrap(), Delivery::Buffered { id: job.id });

    let stored = scan_all(&outbox);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, job.id);
    assert_eq!(stored[0].payload, serde_json::json!({"body": "order 7"}));
    assert_eq!(stored[0].last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(stored[0].due_ms - stored[0].created_ms, 30_000);
    assert_eq!(
        outbox.counts(),
        vec![(
            Category::External,
            "ERP".to_string(),
            Counts {
                pending: 1,
                parked: 0
            }
        )]
    );
}

#[tokio::test]
async fn permanent_failures_and_successes_pass_through_unbuffered() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let (mut svc, mut handle) =
        mock::spawn_layer::<Job, &'static str, _>(StoreForwardLayer::new(outbox.clone()));
    handle.allow(2);

    assert!(svc.poll_ready().is_ready());
    let call = svc.call(Job {
        id: MessageId::new(),
        body: "a",
    });
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_error(Failure::permanent(codes::HTTP_STATUS, "HTTP 404").with_status(404));
    let err = call.await.unwrap_err();
    assert_eq!(err.downcast_ref::<Failure>().unwrap().status, Some(404));

    assert!(svc.poll_ready().is_ready());
    let call = svc.call(Job {
        id: MessageId::new(),
        body: "b",
    });
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response("200 OK");
    assert_eq!(call.await.unwrap(), Delivery::Delivered("200 OK"));

    assert_eq!(outbox.pending_total(), 0);
    assert!(scan_all(&outbox).is_empty());
}

#[tokio::test]
async fn errors_nobody_classified_are_buffered_not_lost() {
    // The one rule (`classify::failure_of`): an unclassified error, or a deadline that
    // expired with no classify layer between, is transient — kept, never dropped.
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let raw = StoreForwardLayer::new(outbox.clone()).layer(service_fn(|_: Job| async {
        Err::<(), BoxError>("raw error".into())
    }));
    let id = MessageId::new();
    let r = raw.oneshot(Job { id, body: "x" }).await.unwrap();
    assert_eq!(r, Delivery::Buffered { id });
    let elapsed = StoreForwardLayer::new(outbox.clone()).layer(service_fn(|_: Job| async {
        Err::<(), BoxError>(
            crate::deadline::Elapsed {
                budget: std::time::Duration::from_secs(10),
            }
            .into(),
        )
    }));
    let id2 = MessageId::new();
    let r = elapsed.oneshot(Job { id: id2, body: "y" }).await.unwrap();
    assert_eq!(r, Delivery::Buffered { id: id2 });
    assert_eq!(outbox.pending_total(), 2);
    let stored = scan_all(&outbox);
    assert!(
        stored
            .iter()
            .any(|m| m.id == id2 && m.last_error.as_deref() == Some("timed out after 10s")),
        "{stored:?}"
    );
    // A permanent failure still comes back unbuffered.
    let permanent = StoreForwardLayer::new(outbox.clone()).layer(service_fn(|_: Job| async {
        Err::<(), BoxError>(Failure::permanent(codes::HTTP_STATUS, "HTTP 400").into())
    }));
    let err = permanent
        .oneshot(Job {
            id: MessageId::new(),
            body: "z",
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "HTTP 400");
    assert_eq!(outbox.pending_total(), 2);
}

#[tokio::test]
async fn a_full_disk_refuses_new_messages_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = FjallOutbox::open(
        dir.path(),
        OutboxOptions {
            min_free_disk: u64::MAX,
            ..Default::default()
        },
    )
    .unwrap();
    let svc = StoreForwardLayer::new(outbox.clone()).layer(service_fn(|_: Job| async {
        Err::<(), BoxError>(Failure::transient(codes::CONNECTION, "refused").into())
    }));
    let err = svc
        .oneshot(Job {
            id: MessageId::new(),
            body: "x",
        })
        .await
        .unwrap_err();
    let failure = err.downcast_ref::<Failure>().unwrap();
    assert_eq!(failure.code, codes::BUFFER_REFUSED);
    assert!(
        failure
            .message
            .contains("store-and-forward refused the message"),
        "{}",
        failure.message
    );
    assert_eq!(outbox.pending_total(), 0);
}

#[tokio::test]
async fn concurrent_enqueues_share_syncs_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            outbox
                .enqueue(message(
                    if i % 2 == 0 { "A" } else { "B" },
                    RetryPolicy::default(),
                    Duration::ZERO,
                ))
                .await
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().unwrap());
    }
    assert_eq!(ids.len(), 200);
    let stored: HashSet<_> = scan_all(&outbox).into_iter().map(|m| m.id).collect();
    assert_eq!(stored, ids);
    let counts = outbox.counts();
    assert_eq!(
        counts.iter().map(|c| c.2.pending).collect::<Vec<_>>(),
        vec![100, 100]
    );
}

/// Records when each delivery attempt happened and answers from a script of outcomes.
#[derive(Clone)]
struct Target {
    attempts: Arc<Mutex<Vec<(MessageId, tokio::time::Instant)>>>,
    outcomes: Arc<Mutex<std::collections::VecDeque<Result<(), Failure>>>>,
    otherwise: Result<(), Failure>,
}

impl Target {
    fn new(outcomes: Vec<Result<(), Failure>>, otherwise: Result<(), Failure>) -> Self {
        Target {
            attempts: Arc::default(),
            outcomes: Arc::new(Mutex::new(outcomes.into())),
            otherwise,
        }
    }

    fn service(
        &self,
    ) -> impl tower::Service<
        StoredMessage,
        Response = (),
        Error = BoxError,
        Future = impl Send + use<>,
    >
    + Clone
    + Send
    + 'static
    + use<> {
        let me = self.clone();
        service_fn(move |m: StoredMessage| {
            let me = me.clone();
            async move {
                me.attempts
                    .lock()
                    .unwrap()
                    .push((m.id, tokio::time::Instant::now()));
                let next = me
                    .outcomes
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| me.otherwise.clone());
                next.map_err(BoxError::from)
            }
        })
    }

    fn times(&self) -> Vec<tokio::time::Instant> {
        self.attempts.lock().unwrap().iter().map(|a| a.1).collect()
    }
}

fn unavailable() -> Failure {
    Failure::transient(codes::HTTP_STATUS, "HTTP 503").with_status(503)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

// On the real clock: a paused clock jumps ahead (auto-advance) whenever the runtime
// idles while the outbox's writer or a blocking scan works, which makes the measured
// gaps longer than the interval by chance.
#[tokio::test]
async fn delivered_after_n_transient_failures_at_the_configured_interval() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let interval = Duration::from_millis(400);
    let target = Target::new(
        vec![Err(unavailable()), Err(unavailable()), Err(unavailable())],
        Ok(()),
    );
    let _forwarder = Forwarder::new(
        outbox.clone(),
        target.service(),
        ForwarderOptions::default(),
    )
    .spawn();
    let start = tokio::time::Instant::now();
    let id = outbox
        .enqueue(message("ERP", RetryPolicy::new(5, interval), interval))
        .await
        .unwrap();

    wait_until("delivered", || {
        target.times().len() == 4 && outbox.pending_total() == 0
    })
    .await;
    let times = target.times();
    assert!(
        times[0] - start >= interval,
        "first retry waits one interval"
    );
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        // Never early; late by at most a scheduling hiccup of a loaded machine.
        assert!(
            gap >= interval && gap < interval + Duration::from_secs(2),
            "gap {gap:?}"
        );
    }
    assert!(!outbox.is_pending(id).unwrap());
    assert!(outbox.list_parked(None, 10).unwrap().items.is_empty());
}

#[tokio::test(start_paused = true)]
async fn always_failing_is_parked_after_max_retries_with_attempts_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let target = Target::new(vec![], Err(unavailable()));
    let _forwarder = Forwarder::new(
        outbox.clone(),
        target.service(),
        ForwarderOptions::default(),
    )
    .spawn();
    let id = outbox
        .enqueue(message(
            "ERP",
            RetryPolicy::new(3, Duration::from_secs(10)),
            Duration::ZERO,
        ))
        .await
        .unwrap();

    wait_until("parked", || {
        outbox.counts().first().is_some_and(|c| c.2.parked == 1)
    })
    .await;
    assert_eq!(target.times().len(), 3);
    let parked = outbox.get_parked(id).unwrap().unwrap();
    assert_eq!(parked.message.attempts, 3);
    assert!(
        parked
            .reason
            .contains("retries exhausted after 3 attempt(s)"),
        "{}",
        parked.reason
    );
    assert!(parked.reason.contains("HTTP 503"));
    assert!(!outbox.is_pending(id).unwrap());
    assert_eq!(
        outbox.counts()[0].2,
        Counts {
            pending: 0,
            parked: 1
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_during_retry_parks_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let bad_request =
        Failure::permanent(codes::HTTP_STATUS, "HTTP 400: order 7 does not exist").with_status(400);
    let target = Target::new(vec![Err(unavailable()), Err(bad_request)], Ok(()));
    let _forwarder = Forwarder::new(
        outbox.clone(),
        target.service(),
        ForwarderOptions::default(),
    )
    .spawn();
    let id = outbox
        .enqueue(message(
            "ERP",
            RetryPolicy::new(10, Duration::from_secs(10)),
            Duration::ZERO,
        ))
        .await
        .unwrap();

    wait_until("parked", || outbox.get_parked(id).unwrap().is_some()).await;
    let parked = outbox.get_parked(id).unwrap().unwrap();
    assert_eq!(
        target.times().len(),
        2,
        "no retry after the permanent failure"
    );
    assert_eq!(parked.message.attempts, 2);
    assert_eq!(
        parked.reason,
        "permanent failure: HTTP 400: order 7 does not exist"
    );
}

#[tokio::test(start_paused = true)]
async fn a_longer_retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let slow_down = Failure::transient(codes::HTTP_STATUS, "HTTP 429")
        .with_status(429)
        .with_retry_after(Some(Duration::from_secs(120)));
    let target = Target::new(vec![Err(slow_down)], Ok(()));
    let _forwarder = Forwarder::new(
        outbox.clone(),
        target.service(),
        ForwarderOptions::default(),
    )
    .spawn();
    outbox
        .enqueue(message(
            "ERP",
            RetryPolicy::new(5, Duration::from_secs(10)),
            Duration::ZERO,
        ))
        .await
        .unwrap();

    wait_until("delivered", || target.times().len() == 2).await;
    let times = target.times();
    assert!(
        times[1] - times[0] >= Duration::from_secs(120),
        "{:?}",
        times[1] - times[0]
    );
}

/// A peer asking for 31,000 years (or `u64::MAX` seconds) gets the 1 h cap: the message
/// is retried after an hour — not never, and no overflow.
#[tokio::test(start_paused = true)]
async fn an_absurd_retry_after_is_capped_at_an_hour() {
    for asked in [999_999_999_999_u64, u64::MAX] {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path());
        let slow_down = Failure::transient(codes::HTTP_STATUS, "HTTP 429")
            .with_status(429)
            .with_retry_after(Some(Duration::from_secs(asked)));
        let target = Target::new(vec![Err(slow_down)], Ok(()));
        let forwarder = Forwarder::new(
            outbox.clone(),
            target.service(),
            ForwarderOptions::default(),
        )
        .spawn();
        outbox
            .enqueue(message(
                "ERP",
                RetryPolicy::new(5, Duration::from_secs(10)),
                Duration::ZERO,
            ))
            .await
            .unwrap();
        // Paused time: an hour of virtual time passes in a few real milliseconds.
        for _ in 0..4_000 {
            if target.times().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(target.times().len(), 2, "{asked}: retried within the cap");
        let gap = target.times()[1] - target.times()[0];
        assert!(
            gap >= Duration::from_secs(3600) && gap < Duration::from_secs(3600 + 60),
            "{asked}: {gap:?}"
        );
        forwarder.stop();
    }
}

#[tokio::test(start_paused = true)]
async fn one_failing_message_does_not_block_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let bad = outbox
        .enqueue(message(
            "Down",
            RetryPolicy::new(1000, Duration::from_secs(5)),
            Duration::ZERO,
        ))
        .await
        .unwrap();
    let delivered: Arc<Mutex<Vec<MessageId>>> = Arc::default();
    let seen = delivered.clone();
    let deliver = service_fn(move |m: StoredMessage| {
        let seen = seen.clone();
        async move {
            if m.target == "Down" {
                return Err(BoxError::from(unavailable()));
            }
            seen.lock().unwrap().push(m.id);
            Ok(())
        }
    });
    let _forwarder = Forwarder::new(
        outbox.clone(),
        deliver,
        ForwarderOptions {
            concurrency: 2,
            ..Default::default()
        },
    )
    .spawn();
    let mut good = Vec::new();
    for _ in 0..20 {
        good.push(
            outbox
                .enqueue(message("Up", RetryPolicy::default(), Duration::ZERO))
                .await
                .unwrap(),
        );
    }
    wait_until("the good ones are delivered", || {
        delivered.lock().unwrap().len() == 20
    })
    .await;
    assert!(
        outbox.is_pending(bad).unwrap(),
        "the failing one keeps retrying"
    );
}

#[tokio::test]
async fn parked_messages_are_paged_retried_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let mut ids = Vec::new();
    for _ in 0..5 {
        let m = outbox
            .enqueue(message(
                "ERP",
                RetryPolicy::new(0, Duration::ZERO),
                Duration::ZERO,
            ))
            .await
            .unwrap();
        ids.push(m);
    }
    // Park them the way the forwarder does.
    for m in scan_all(&outbox) {
        let prev_due_ms = m.due_ms;
        let parked = ParkedMessage {
            message: m,
            parked_ms: now_ms(),
            reason: "retries exhausted".into(),
        };
        outbox
            .apply(
                vec![OutboxEvent::Parked {
                    parked,
                    prev_due_ms,
                }],
                false,
            )
            .await
            .unwrap();
    }
    assert!(scan_all(&outbox).is_empty());

    let first = outbox.list_parked(None, 2).unwrap();
    assert_eq!(
        first.items.iter().map(|p| p.message.id).collect::<Vec<_>>(),
        ids[..2]
    );
    let second = outbox.list_parked(first.next, 2).unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|p| p.message.id)
            .collect::<Vec<_>>(),
        ids[2..4]
    );
    let last = outbox.list_parked(second.next, 2).unwrap();
    assert_eq!(last.items.len(), 1);
    assert_eq!(last.next, None);

    outbox.retry_parked(ids[0]).await.unwrap();
    let pending = scan_all(&outbox);
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].id, pending[0].attempts), (ids[0], 0));
    outbox.discard_parked(ids[1]).await.unwrap();
    assert!(outbox.get_parked(ids[1]).unwrap().is_none());
    assert_eq!(
        outbox.discard_parked(ids[1]).await,
        Err(OutboxError::NotFound(ids[1]))
    );
    assert_eq!(
        outbox.retry_parked(ids[0]).await,
        Err(OutboxError::NotFound(ids[0]))
    );
    assert_eq!(
        outbox.counts()[0].2,
        Counts {
            pending: 1,
            parked: 3
        }
    );
}

#[tokio::test]
async fn pending_work_and_counts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let a = outbox
        .enqueue(message("ERP", RetryPolicy::default(), Duration::ZERO))
        .await
        .unwrap();
    let b = outbox
        .enqueue(message(
            "Mail",
            RetryPolicy::default(),
            Duration::from_secs(3600),
        ))
        .await
        .unwrap();
    outbox.close();

    let outbox = open(dir.path());
    assert_eq!(outbox.pending_total(), 2);
    let due_now = outbox
        .due(now_ms(), 10, &HashSet::new(), None)
        .unwrap()
        .messages;
    assert_eq!(due_now.iter().map(|m| m.id).collect::<Vec<_>>(), vec![a]);
    assert!(outbox.is_pending(b).unwrap());

    let delivered = Arc::new(Mutex::new(Vec::new()));
    let seen = delivered.clone();
    let _forwarder = Forwarder::new(
        outbox.clone(),
        service_fn(move |m: StoredMessage| {
            seen.lock().unwrap().push(m.id);
            async { Ok::<(), BoxError>(()) }
        }),
        ForwarderOptions::default(),
    )
    .spawn();
    wait_until("the due one is delivered after the restart", || {
        delivered.lock().unwrap().contains(&a)
    })
    .await;
    assert_eq!(outbox.pending_total(), 1);
}

/// A pending record this release cannot read (an incompatible release wrote it, or it
/// is damaged) is parked with the reason, keeping what can be read — never skipped on
/// every scan for ever.
#[tokio::test]
async fn an_undecodable_record_is_parked_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let readable_fields = outbox
        .enqueue(message("ERP", RetryPolicy::default(), Duration::ZERO))
        .await
        .unwrap();
    let garbage = outbox
        .enqueue(message("Mail", RetryPolicy::default(), Duration::ZERO))
        .await
        .unwrap();
    let intact = outbox
        .enqueue(message("ERP", RetryPolicy::default(), Duration::ZERO))
        .await
        .unwrap();
    outbox.close();
    {
        // Damage two records the way another release or a bad disk might.
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let pending = db
            .keyspace("pending", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let mut wrong_type = vec![1u8];
        wrong_type.extend_from_slice(
            serde_json::json!({
                "id": readable_fields, "category": "external", "target": "ERP",
                "payload": {"n": 1}, "retry": "every so often", "created_ms": 1,
                "attempts": 2, "due_ms": 0, "last_error": null
            })
            .to_string()
            .as_bytes(),
        );
        pending
            .insert(readable_fields.to_bytes(), wrong_type)
            .unwrap();
        pending.insert(garbage.to_bytes(), b"\x07\xff\xfe").unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }

    let outbox = open(dir.path());
    let reader = outbox.clone();
    let due = tokio::task::spawn_blocking(move || {
        reader
            .due(u64::MAX - 1, usize::MAX, &HashSet::new(), None)
            .unwrap()
            .messages
    })
    .await
    .unwrap();
    assert_eq!(
        due.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![intact],
        "only the readable record is handed out"
    );
    let parked = outbox.list_parked(None, 10).unwrap().items;
    assert_eq!(parked.len(), 2, "{parked:?}");
    let first = parked
        .iter()
        .find(|p| p.message.id == readable_fields)
        .unwrap();
    assert!(
        first.reason.starts_with("undecodable record"),
        "{}",
        first.reason
    );
    assert_eq!(first.message.target, "ERP", "readable fields are kept");
    assert_eq!(first.message.payload, serde_json::json!({"n": 1}));
    assert_eq!(first.message.attempts, 2);
    let second = parked.iter().find(|p| p.message.id == garbage).unwrap();
    assert!(
        second.reason.contains("unknown record version 7"),
        "{}",
        second.reason
    );
    assert_eq!(second.message.target, "(undecodable)");
    // Counts follow: ERP's damaged record moved from pending to parked.
    let counts: std::collections::HashMap<_, _> = outbox
        .counts()
        .into_iter()
        .map(|(c, t, n)| ((c, t), (n.pending, n.parked)))
        .collect();
    assert_eq!(counts[&(Category::External, "ERP".to_string())], (1, 1));
    // And an operator can discard it.
    outbox.discard_parked(garbage).await.unwrap();
    assert_eq!(outbox.list_parked(None, 10).unwrap().items.len(), 1);
}

/// Hands every proposed change straight back to the outbox, as a one-voter replicated
/// log would: what goes through the hook must land exactly as a local write does.
struct Loopback(std::sync::OnceLock<FjallOutbox>);

impl Replicate for Loopback {
    fn propose(
        &self,
        events: Vec<OutboxEvent>,
    ) -> tokio::sync::oneshot::Receiver<Result<(), OutboxError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let outbox = self.0.get().expect("set before use");
        let result = outbox
            .apply_replicated(&[events], &[(b"applied".to_vec(), b"1".to_vec())])
            .and_then(|mut results| results.remove(0));
        let _ = tx.send(result);
        rx
    }
}

#[tokio::test]
async fn replicated_changes_apply_with_their_meta_and_an_image_moves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    let loopback = Arc::new(Loopback(std::sync::OnceLock::new()));
    let _ = loopback.0.set(outbox.clone());
    outbox.replicate_through(loopback.clone()).unwrap();
    assert!(outbox.replicate_through(loopback).is_err(), "set once");

    let retry = RetryPolicy::new(0, Duration::from_secs(1));
    let kept = outbox
        .enqueue(message("ERP", retry, Duration::ZERO))
        .await
        .unwrap();
    let doomed = outbox
        .enqueue(message("MES", retry, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(outbox.meta(b"applied").unwrap().as_deref(), Some(&b"1"[..]));
    let stored = scan_all(&outbox)
        .into_iter()
        .find(|m| m.id == doomed)
        .unwrap();
    outbox
        .apply(
            vec![OutboxEvent::Parked {
                prev_due_ms: stored.due_ms,
                parked: ParkedMessage {
                    message: stored,
                    parked_ms: 5,
                    reason: "retries exhausted".into(),
                },
            }],
            false,
        )
        .await
        .unwrap();
    // One part of an entry failing does not fail the others.
    let results = outbox
        .apply_replicated(
            &[
                vec![OutboxEvent::Discarded {
                    id: MessageId::new(),
                }],
                vec![],
            ],
            &[],
        )
        .unwrap();
    assert!(matches!(results[0], Err(OutboxError::NotFound(_))));
    assert_eq!(results[1], Ok(()));

    let image = outbox.export().unwrap();
    assert_eq!(
        image.meta.get(&b"applied"[..]).map(Vec::as_slice),
        Some(&b"1"[..])
    );
    let image = image.bytes;
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(other_dir.path());
    other
        .enqueue(message("stale", retry, Duration::ZERO))
        .await
        .unwrap();
    assert!(
        other.import(&image[..image.len() - 1]).is_err(),
        "a cut image is refused"
    );
    assert_eq!(other.pending_total(), 1, "a refused image changes nothing");
    other.import(&image).unwrap();
    assert_eq!(other.counts(), outbox.counts());
    assert_eq!(
        scan_all(&other).iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![kept]
    );
    assert_eq!(
        other.get_parked(doomed).unwrap().unwrap().reason,
        "retries exhausted"
    );
    assert_eq!(other.meta(b"applied").unwrap().as_deref(), Some(&b"1"[..]));
    drop(other);
    // What was imported is on disk.
    let reopened = open(other_dir.path());
    assert_eq!(reopened.counts(), outbox.counts());
}
