//! A pair and its witness as three voters in one process, each behind its own HTTP
//! server on loopback (the real network code, the real token check), each with its
//! own outbox on disk. Process-level failover (kill -9) is tested with the binary.

use std::collections::HashSet;
use std::time::Duration;
use switchyard_core::{MessageId, RetryPolicy};
use switchyard_ha::local::{LocalPair, Running};
use switchyard_ha::{Role, Tuning};
use switchyard_layers::store_forward::{
    Category, FjallOutbox, NewMessage, OutboxError, OutboxEvent, StoredMessage,
};

fn tuning() -> Tuning {
    Tuning {
        snapshot_after_entries: 5,
        keep_entries: 0,
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(400),
        election_max: Duration::from_millis(800),
        commit_timeout: Duration::from_secs(3),
    }
}

/// The pair under test and the directory it lives in.
struct Pair {
    local: LocalPair,
    _root: tempfile::TempDir,
}

impl Pair {
    fn new() -> Pair {
        let root = tempfile::tempdir().unwrap();
        Pair {
            local: LocalPair::new(root.path(), tuning()).unwrap(),
            _root: root,
        }
    }

    async fn start(&mut self, i: usize) {
        self.local.start(i).await.unwrap();
    }

    async fn stop(&mut self, i: usize) {
        self.local.stop(i).await;
    }

    fn voter(&self, i: usize) -> &Running {
        self.local.voter(i)
    }

    async fn active(&self, limit: Duration) -> usize {
        self.local
            .active(limit)
            .await
            .expect("a node became active")
    }
}

fn message(n: usize) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        category: Category::External,
        target: "ERP".into(),
        payload: serde_json::json!({ "n": n }),
        retry: RetryPolicy::new(5, Duration::from_secs(3600)),
        first_delay: Duration::from_secs(3600),
        last_error: Some("peer down".into()),
    }
}

async fn enqueue_many(outbox: &FjallOutbox, count: usize) -> Vec<MessageId> {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let outbox = outbox.clone();
        tasks.spawn(async move { outbox.enqueue(message(n)).await });
    }
    let mut ids = Vec::new();
    while let Some(done) = tasks.join_next().await {
        ids.push(done.unwrap().expect("acknowledged"));
    }
    ids
}

fn pending(outbox: &FjallOutbox) -> Vec<StoredMessage> {
    outbox
        .due(u64::MAX - 1, usize::MAX, &HashSet::new(), None)
        .unwrap()
        .messages
}

async fn wait_pending(outbox: &FjallOutbox, count: u64) {
    for _ in 0..500 {
        if outbox.pending_total() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("pending is {}, expected {count}", outbox.pending_total());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pair_elects_one_active_node_replicates_every_change_and_survives_its_loss() {
    let mut pair = Pair::new();
    for i in 0..3 {
        pair.start(i).await;
    }
    let first = pair.active(Duration::from_secs(10)).await;
    assert_ne!(first, 2, "the witness never becomes active");
    assert_eq!(pair.voter(2).node.role(), Role::Witness);
    let standby = 1 - first;
    assert_eq!(pair.voter(standby).node.role(), Role::Standby);
    assert_eq!(
        pair.voter(standby).node.active_node().as_deref(),
        Some(pair.local.voters[first].name.as_str())
    );

    // Acknowledged means on a majority: every voter applies every message.
    let ids = enqueue_many(&pair.voter(first).outbox, 300).await;
    for i in 0..3 {
        wait_pending(&pair.voter(i).outbox, 300).await;
    }

    // A standby refuses to buffer and names the active node.
    match pair.voter(standby).outbox.enqueue(message(0)).await {
        Err(OutboxError::Unavailable(why)) => {
            assert!(why.contains(&pair.local.voters[first].name), "{why}")
        }
        other => panic!("a standby buffered: {other:?}"),
    }

    // A delivery result goes through the log as well.
    let delivered = pending(&pair.voter(first).outbox).remove(0);
    pair.voter(first)
        .outbox
        .apply(
            vec![OutboxEvent::Delivered {
                id: delivered.id,
                due_ms: delivered.due_ms,
                category: delivered.category,
                target: delivered.target.clone(),
            }],
            true,
        )
        .await
        .unwrap();
    wait_pending(&pair.voter(standby).outbox, 299).await;

    // Values beside the outbox (the deployment) reach every node; a standby cannot write.
    pair.voter(first)
        .node
        .put_replicated("deployment", b"rev-1".to_vec())
        .await
        .unwrap();
    assert!(
        pair.voter(standby)
            .node
            .put_replicated("deployment", b"x".to_vec())
            .await
            .is_err()
    );
    for _ in 0..100 {
        if pair
            .voter(standby)
            .outbox
            .meta(b"deployment")
            .unwrap()
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        pair.voter(standby)
            .outbox
            .meta(b"deployment")
            .unwrap()
            .as_deref(),
        Some(&b"rev-1"[..])
    );

    // The active node goes away: the standby takes over with every message.
    pair.stop(first).await;
    let second = pair.active(Duration::from_secs(10)).await;
    assert_eq!(second, standby);
    let survivors: HashSet<MessageId> = pending(&pair.voter(second).outbox)
        .iter()
        .map(|m| m.id)
        .collect();
    let expected: HashSet<MessageId> = ids.into_iter().filter(|id| *id != delivered.id).collect();
    assert_eq!(
        survivors, expected,
        "the new active node holds every acknowledged message"
    );

    // With the witness, the survivor still has a majority: it buffers.
    let more = enqueue_many(&pair.voter(second).outbox, 50).await;
    assert_eq!(more.len(), 50);

    // The old active node comes back as a standby and catches up.
    pair.start(first).await;
    wait_pending(&pair.voter(first).outbox, 349).await;
    assert_eq!(pair.active(Duration::from_secs(5)).await, second);

    for i in 0..3 {
        pair.stop(i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_majority_nothing_is_buffered_and_a_standby_away_for_long_catches_up_from_a_snapshot()
 {
    let mut pair = Pair::new();
    for i in 0..3 {
        pair.start(i).await;
    }
    let active = pair.active(Duration::from_secs(10)).await;
    let standby = 1 - active;

    // The standby is away while 3,000 messages are buffered: the log is compacted
    // into a snapshot past where the standby stopped.
    pair.stop(standby).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.extend(enqueue_many(&pair.voter(active).outbox, 300).await);
    }
    // Snapshots and purges run in the background: wait for both.
    let mut metrics = pair.voter(active).node.raft().metrics().borrow().clone();
    for _ in 0..250 {
        if metrics.snapshot.is_some() && metrics.purged.is_some_and(|p| p.index > 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        metrics = pair.voter(active).node.raft().metrics().borrow().clone();
    }
    assert!(
        metrics.snapshot.is_some(),
        "a snapshot was taken: {metrics:?}"
    );
    assert!(
        metrics.purged.is_some_and(|p| p.index > 1),
        "the log the standby missed is gone: {metrics:?}"
    );

    pair.start(standby).await;
    wait_pending(&pair.voter(standby).outbox, 3000).await;
    let caught_up: HashSet<MessageId> = pending(&pair.voter(standby).outbox)
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(caught_up, ids.iter().copied().collect::<HashSet<_>>());
    let standby_metrics = pair.voter(standby).node.raft().metrics().borrow().clone();
    assert!(
        standby_metrics.snapshot.is_some(),
        "caught up from a snapshot: {standby_metrics:?}"
    );

    // Fail closed: the active node alone is no majority. Nothing is acknowledged.
    pair.stop(standby).await;
    pair.stop(2).await;
    match pair.voter(active).outbox.enqueue(message(0)).await {
        Err(OutboxError::Unavailable(_)) => {}
        other => panic!("buffered without a majority: {other:?}"),
    }
    tokio::time::sleep(tuning().election_min).await;
    assert!(
        !pair.voter(active).node.is_active(),
        "a node without a majority is not active"
    );
    pair.stop(active).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_nodes_messages_are_adopted_when_it_becomes_the_first_node_of_a_pair() {
    let mut pair = Pair::new();
    // The single node's outbox, written before there was a pair: 20 pending, one of
    // them parked.
    let single = pair.local.open_outbox(0).unwrap();
    let ids = enqueue_many(&single, 20).await;
    let parked = pending(&single).remove(0);
    single
        .apply(
            vec![OutboxEvent::Parked {
                prev_due_ms: parked.due_ms,
                parked: switchyard_layers::store_forward::ParkedMessage {
                    message: parked.clone(),
                    parked_ms: 1,
                    reason: "retries exhausted".into(),
                },
            }],
            true,
        )
        .await
        .unwrap();
    single.close();

    for i in 0..3 {
        pair.start(i).await;
    }
    let active = pair.active(Duration::from_secs(10)).await;
    assert_eq!(
        active, 0,
        "the first node initialises the pair and leads its first term"
    );
    let adopted = pair
        .voter(0)
        .node
        .adopt_unreplicated(&pair.voter(0).outbox)
        .await
        .unwrap();
    assert_eq!(adopted, 20);
    assert_eq!(
        pair.voter(0)
            .node
            .adopt_unreplicated(&pair.voter(0).outbox)
            .await,
        Ok(0),
        "once per pair"
    );
    for i in 0..3 {
        wait_pending(&pair.voter(i).outbox, 19).await;
        let counts = pair.voter(i).outbox.counts();
        assert_eq!(
            counts.iter().map(|c| c.2.parked).sum::<u64>(),
            1,
            "voter {i}: {counts:?}"
        );
        assert!(
            pair.voter(i)
                .outbox
                .get_parked(parked.id)
                .unwrap()
                .is_some()
        );
    }
    let held: HashSet<MessageId> = pending(&pair.voter(1).outbox)
        .iter()
        .map(|m| m.id)
        .collect();
    let expected: HashSet<MessageId> = ids.into_iter().filter(|id| *id != parked.id).collect();
    assert_eq!(held, expected);
    for i in 0..3 {
        pair.stop(i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_its_witness_the_pair_goes_on() {
    let mut pair = Pair::new();
    for i in 0..3 {
        pair.start(i).await;
    }
    let active = pair.active(Duration::from_secs(10)).await;
    let standby = 1 - active;
    pair.stop(2).await;
    // Two full nodes are a majority of three: buffering, and the same active node.
    let ids = enqueue_many(&pair.voter(active).outbox, 100).await;
    assert_eq!(ids.len(), 100);
    wait_pending(&pair.voter(standby).outbox, 100).await;
    assert_eq!(pair.active(Duration::from_secs(2)).await, active);
    // The witness comes back and catches up.
    pair.start(2).await;
    wait_pending(&pair.voter(2).outbox, 100).await;
    for i in 0..3 {
        pair.stop(i).await;
    }
}
