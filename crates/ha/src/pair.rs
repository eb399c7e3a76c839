//! One voter of a pair: its log, its outbox as the state machine, the RPC clients, the
//! proposer the outbox sends its changes to, and the answer to "is this node active?".
//!
//! Active means more than "openraft says leader": a leader that was paused (SIGSTOP)
//! or cut off still believes it leads until it hears of a newer term. So a leader
//! counts as active only within a lease from the last time a majority acknowledged it
//! (openraft measures this from when the acknowledged heartbeat or entries were sent),
//! and the lease is shorter than the shortest election timeout: no other node can have
//! been elected within it.

use crate::log_store::LogStore;
use crate::network::HttpNetwork;
use crate::proposer::Proposer;
use crate::state_machine::OutboxStateMachine;
use crate::{NodeId, Raft};
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_layers::store_forward::FjallOutbox;
use tokio::task::JoinHandle;

/// One voter of a pair, as the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// Raft id: the position in the pair (first node 1, second 2, witness 3).
    pub id: NodeId,
    /// The configured name (`a`, `b`, `w`).
    pub name: String,
    /// Where its cluster endpoint listens (`host:port`).
    pub addr: String,
    /// A witness votes and keeps the log, never becomes active.
    pub witness: bool,
}

/// A node's place in its pair.
#[derive(Debug, Clone)]
pub struct PairMember {
    /// Every voter (the full nodes, then the witness if there is one).
    pub voters: Vec<Voter>,
    /// This node's id.
    pub me: NodeId,
    /// Heartbeat and election timing.
    pub tuning: Tuning,
}

impl PairMember {
    /// This node's voter entry.
    pub fn me(&self) -> &Voter {
        self.voters
            .iter()
            .find(|v| v.id == self.me)
            .expect("a pair member is one of its voters")
    }
}

/// Heartbeat and election timing of a pair, and how often its log is compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower that heard nothing for a random time in this range stands for
    /// election.
    pub election_min: Duration,
    /// Upper end of the election timeout.
    pub election_max: Duration,
    /// A change not committed within this is refused (`Unavailable`).
    pub commit_timeout: Duration,
    /// A snapshot is taken after this many log entries (each holds up to
    /// [`MAX_PARTS`](crate::proposer::MAX_PARTS) changes)...
    pub snapshot_after_entries: u64,
    /// ...and this many entries below it are kept, for a follower just behind.
    pub keep_entries: u64,
}

impl Default for Tuning {
    /// Failover within about two and a half seconds of a crash on a LAN: a follower
    /// stands after openraft's leader lease (`election_max`) plus its election timeout.
    fn default() -> Self {
        Tuning {
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(600),
            election_max: Duration::from_millis(1200),
            commit_timeout: Duration::from_secs(5),
            snapshot_after_entries: 2000,
            keep_entries: 500,
        }
    }
}

/// What a node is to its pair (SPEC §8 `/health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs scripts, serves work, delivers.
    Active,
    /// A full node that is not active.
    Standby,
    /// Votes and keeps the log only.
    Witness,
}

impl Role {
    /// `active`, `standby` or `witness`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
            Role::Witness => "witness",
        }
    }
}

/// A running voter.
pub struct PairNode {
    raft: Raft,
    me: Voter,
    names: Arc<BTreeMap<NodeId, String>>,
    /// When a majority last acknowledged this node as leader (`None`: not leader).
    acked: Arc<Mutex<Option<Instant>>>,
    lease: Duration,
    commit_timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
}

/// Why a voter could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the pair's consensus: {0}")]
pub struct StartError(String);

impl PairNode {
    /// Starts this node's voter: its log in `DATA_DIR/raft`, `outbox` as the state
    /// machine (from now on every outbox change goes through the log), `network` to
    /// reach the others. A fresh pair is initialised with every voter; restarting a
    /// member picks up where its log is.
    pub async fn start(
        member: &PairMember,
        data_dir: &Path,
        outbox: FjallOutbox,
        network: HttpNetwork,
    ) -> Result<PairNode, StartError> {
        let me = member.me().clone();
        let t = member.tuning;
        let config = Config {
            cluster_name: "switchyard".into(),
            heartbeat_interval: t.heartbeat.as_millis() as u64,
            // The witness stands later than the full node (1.4 × its timeouts): the
            // surviving full node usually stands first and wins at once; the witness
            // wins only when it alone holds the newest entry, and then hands over
            // (`hand_over`). Not later than that: openraft's leader lease is the
            // election maximum, and the witness must not refuse the full node's
            // candidacy for longer than the full node waits before standing.
            election_timeout_min: witness_wait(me.witness, t.election_min).as_millis() as u64,
            election_timeout_max: witness_wait(me.witness, t.election_max).as_millis() as u64,
            // A witness stands for election too: when it holds the newest entry (the
            // other full node had not received it), only it can win, and it then hands
            // the leadership over (see `hand_over`). It is never active.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_after_entries),
            max_in_snapshot_log_to_keep: t.keep_entries,
            // Entries carry up to MAX_PARTS changes each: keep one RPC in the MiBs.
            max_payload_entries: 8,
            snapshot_max_chunk_size: 1 << 20,
            install_snapshot_timeout: 5000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError(e.to_string()))?;
        let log = LogStore::open(&data_dir.join("raft"))
            .map_err(|e| StartError(format!("log in {}: {e}", data_dir.display())))?;
        let state_machine = OutboxStateMachine::new(outbox.clone(), data_dir.join("raft-snapshot"));
        let raft = Raft::new(me.id, Arc::new(config), network, log, state_machine)
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError(e.to_string()))?;
        if !initialized {
            let members: BTreeMap<NodeId, BasicNode> = member
                .voters
                .iter()
                .map(|v| (v.id, BasicNode::new(&v.addr)))
                .collect();
            let first_full = member.voters.iter().find(|v| !v.witness).map(|v| v.id);
            if first_full == Some(me.id) {
                initialize(&raft, members).await?;
            } else if !me.witness {
                // Initialising stands this node for election at once; the first full
                // node does it, this one only if the pair is still new a while later
                // (the first node is down on the pair's first start). A witness never
                // does: it must never stand.
                tokio::spawn(initialize_later(raft.clone(), members, t.election_max * 3));
            }
        }
        let names: Arc<BTreeMap<NodeId, String>> = Arc::new(
            member
                .voters
                .iter()
                .map(|v| (v.id, v.name.clone()))
                .collect(),
        );
        outbox
            .replicate_through(Arc::new(Proposer::start(
                raft.clone(),
                t.commit_timeout,
                names.clone(),
            )))
            .map_err(|e| StartError(e.to_string()))?;
        let acked = Arc::new(Mutex::new(None));
        // A quarter of the shortest election timeout is kept as margin for clock rates
        // and scheduling.
        let lease = t.election_min * 3 / 4;
        let mut tasks = vec![tokio::spawn(watch_role(
            raft.clone(),
            me.clone(),
            names.clone(),
        ))];
        if me.witness {
            tasks.push(tokio::spawn(hand_over(raft.clone(), t.heartbeat)));
        } else {
            tasks.push(tokio::spawn(track_quorum_acks(raft.clone(), acked.clone())));
            let witness = member.voters.iter().find(|v| v.witness).map(|v| v.id);
            if let Some(witness) = witness {
                tasks.push(tokio::spawn(take_back(raft.clone(), witness, t.heartbeat)));
            }
        }
        Ok(PairNode {
            raft,
            me,
            names,
            acked,
            lease,
            commit_timeout: t.commit_timeout,
            tasks,
        })
    }

    /// The consensus handle (to serve its RPCs, read its metrics).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// This node.
    pub fn me(&self) -> &Voter {
        &self.me
    }

    /// Whether this node is the active one now: the leader, with its leadership
    /// confirmed by a majority within the lease.
    pub fn is_active(&self) -> bool {
        if self.me.witness {
            return false;
        }
        let leader = self.raft.metrics().borrow().state == ServerState::Leader;
        let acked = *self.acked.lock().unwrap_or_else(|p| p.into_inner());
        leader && acked.is_some_and(|at| at.elapsed() < self.lease)
    }

    /// This node's role now.
    pub fn role(&self) -> Role {
        if self.me.witness {
            Role::Witness
        } else if self.is_active() {
            Role::Active
        } else {
            Role::Standby
        }
    }

    /// The name of the node this one believes is active (itself included), if any.
    pub fn active_node(&self) -> Option<String> {
        if self.is_active() {
            return Some(self.me.name.clone());
        }
        let leader = self.raft.metrics().borrow().current_leader;
        leader
            .filter(|id| *id != self.me.id)
            .and_then(|id| self.names.get(&id).cloned())
    }

    /// Stores `value` under `key` beside the outbox on every node (read back with
    /// [`FjallOutbox::meta`]); returns once a majority has it. Only on the active node.
    pub async fn put_replicated(&self, key: &str, value: Vec<u8>) -> Result<(), String> {
        let request = crate::Request::Meta {
            key: key.to_string(),
            value,
        };
        crate::proposer::commit(&self.raft, request, self.commit_timeout, &self.names)
            .await
            .map(|_| ())
    }

    /// Adopts into the replicated outbox every message `outbox` holds that the pair has
    /// not replicated yet — those of a single node migrated into a pair — once per node
    /// (a replicated marker records it). Adopting is idempotent: a voter that already
    /// holds a message keeps it as it is. Call on the active node before it delivers;
    /// returns how many records were proposed.
    pub async fn adopt_unreplicated(&self, outbox: &FjallOutbox) -> Result<usize, String> {
        // Per node: a node that took over first (with nothing of its own) must not mark
        // the adoption done for the node that holds the single node's messages.
        let marker = format!("{ADOPTED}.{}", self.me.name);
        if outbox
            .meta(marker.as_bytes())
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(0);
        }
        let scan = outbox.clone();
        let events = tokio::task::spawn_blocking(move || unreplicated_records(&scan))
            .await
            .map_err(|e| e.to_string())??;
        let count = events.len();
        for chunk in events.chunks(crate::proposer::MAX_PARTS) {
            let parts = chunk.iter().map(|e| vec![e.clone()]).collect();
            crate::proposer::commit(
                &self.raft,
                crate::Request::Outbox { parts },
                self.commit_timeout,
                &self.names,
            )
            .await?;
        }
        self.put_replicated(&marker, b"1".to_vec()).await?;
        if count > 0 {
            tracing::warn!(
                count,
                "adopted messages that predate the pair into the replicated outbox"
            );
        }
        Ok(count)
    }

    /// Waits until this leader has applied everything committed before its term (a
    /// read-index round with a majority), so what it acts on — the replicated
    /// deployment, the pending messages — is the pair's latest. Call when taking over.
    pub async fn catch_up(&self) -> Result<(), String> {
        match tokio::time::timeout(self.commit_timeout, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the pair did not confirm this node's leadership in time".into()),
        }
    }

    /// Waits until this node is active (or `limit` passed); true when it is.
    pub async fn wait_active(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.is_active() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.is_active()
    }

    /// Stops the voter (its tasks and openraft's).
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "the pair's consensus did not stop cleanly");
        }
    }
}

impl Drop for PairNode {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn initialize(raft: &Raft, members: BTreeMap<NodeId, BasicNode>) -> Result<(), StartError> {
    match raft.initialize(members).await {
        // Another voter initialised the pair first: the same membership.
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(StartError(e.to_string())),
    }
}

async fn initialize_later(raft: Raft, members: BTreeMap<NodeId, BasicNode>, after: Duration) {
    tokio::time::sleep(after).await;
    if matches!(raft.is_initialized().await, Ok(false))
        && let Err(e) = initialize(&raft, members).await
    {
        tracing::error!(error = %e, "cannot initialise the pair");
    }
}

/// A full node that follows the witness stands as soon as it holds the witness's whole
/// log (it has applied an entry of the witness's term, and everything it has): the
/// witness leads only to hand over, and waiting for openraft's timers would add the
/// leader lease and, after a candidacy refused for a shorter log, twice the election
/// maximum. The witness refuses while its own lease lasts; the next try wins.
async fn take_back(raft: Raft, witness: NodeId, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let caught_up = {
            let m = raft.metrics().borrow().clone();
            m.state == ServerState::Follower
                && m.current_leader == Some(witness)
                && m.last_applied.is_some_and(|l| {
                    l.leader_id.term == m.current_term && Some(l.index) == m.last_log_index
                })
        };
        if caught_up {
            tracing::info!(
                "the witness leads and this node has its whole log: standing for election"
            );
            if let Err(e) = raft.trigger().elect().await {
                tracing::warn!(error = %e, "cannot stand for election");
            }
        }
    }
}

/// A witness's election timeout: 1.4 × a full node's.
fn witness_wait(witness: bool, timeout: Duration) -> Duration {
    if witness { timeout * 7 / 5 } else { timeout }
}

/// Marker of a pair whose pre-existing messages were adopted.
const ADOPTED: &str = "pair.adopted";

/// Every pending and parked record of `outbox`, as adoption events. Blocking.
fn unreplicated_records(
    outbox: &FjallOutbox,
) -> Result<Vec<switchyard_layers::store_forward::OutboxEvent>, String> {
    use switchyard_layers::store_forward::OutboxEvent;
    let mut events = Vec::new();
    // All at once: a one-time step, bounded by what a single node held.
    let pending = outbox
        .due(
            u64::MAX - 1,
            usize::MAX,
            &std::collections::HashSet::new(),
            None,
        )
        .map_err(|e| e.to_string())?;
    events.extend(
        pending
            .messages
            .into_iter()
            .map(OutboxEvent::AdoptedPending),
    );
    let mut after = None;
    loop {
        let page = outbox.list_parked(after, 1024).map_err(|e| e.to_string())?;
        events.extend(page.items.into_iter().map(OutboxEvent::AdoptedParked));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(events)
}

/// The witness leads only to bring a full node up to date: once a full node has its
/// whole log, it stops sending heartbeats, a full node's election timer runs
/// out, and that node (now as up to date as the witness) wins the next term. openraft
/// 0.9 has no leadership transfer; this is the same effect with its public switches.
async fn hand_over(raft: Raft, every: Duration) {
    let mut silent = false;
    loop {
        tokio::time::sleep(every).await;
        let m = raft.metrics().borrow().clone();
        let caught_up = m.state == ServerState::Leader
            && m.replication.as_ref().is_some_and(|r| {
                r.iter()
                    .filter(|(id, _)| **id != m.id)
                    .any(|(_, matched)| matched.map(|l| l.index) == m.last_log_index)
            });
        if caught_up && !silent {
            tracing::warn!(
                term = m.current_term,
                "the witness leads with every full node up to date: handing the leadership over"
            );
            raft.runtime_config().heartbeat(false);
            silent = true;
        } else if m.state != ServerState::Leader && silent {
            raft.runtime_config().heartbeat(true);
            silent = false;
        }
    }
}

/// Keeps the time a majority last acknowledged this leader, from openraft's metrics
/// (published at least every 1.5 heartbeats, and on every event). The instant is
/// absolute: after a pause it is as old as the pause, so the lease has run out before
/// any fresh figure arrives.
async fn track_quorum_acks(raft: Raft, acked: Arc<Mutex<Option<Instant>>>) {
    let mut metrics = raft.metrics();
    loop {
        let at = {
            let m = metrics.borrow_and_update();
            match (m.state, m.millis_since_quorum_ack) {
                (ServerState::Leader, Some(ms)) => {
                    Instant::now().checked_sub(Duration::from_millis(ms))
                }
                _ => None,
            }
        };
        *acked.lock().unwrap_or_else(|p| p.into_inner()) = at;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Logs every change of leadership with its reason and keeps the pair's metrics.
async fn watch_role(raft: Raft, me: Voter, names: Arc<BTreeMap<NodeId, String>>) {
    let mut metrics = raft.metrics();
    let mut last_state = None;
    let mut last_leader = None;
    let name_of = |id: Option<NodeId>| {
        id.and_then(|id| names.get(&id).cloned())
            .unwrap_or_else(|| "none".into())
    };
    loop {
        let m = metrics.borrow_and_update().clone();
        if last_state != Some(m.state) || last_leader != m.current_leader {
            let leader = name_of(m.current_leader);
            match m.state {
                ServerState::Leader => {
                    metrics::counter!("switchyard_ha_leader_elections_total").increment(1);
                    tracing::warn!(node = %me.name, term = m.current_term, "this node won the election and leads the pair");
                }
                state if last_state == Some(ServerState::Leader) => {
                    tracing::warn!(node = %me.name, term = m.current_term, ?state, %leader, "this node lost the leadership (a newer term)");
                }
                state => {
                    tracing::info!(node = %me.name, term = m.current_term, ?state, %leader, "pair state changed");
                }
            }
            last_state = Some(m.state);
            last_leader = m.current_leader;
        }
        metrics::gauge!("switchyard_ha_leader")
            .set(f64::from(u8::from(m.state == ServerState::Leader)));
        metrics::gauge!("switchyard_ha_term").set(m.current_term as f64);
        metrics::gauge!("switchyard_ha_last_log_index").set(m.last_log_index.unwrap_or(0) as f64);
        metrics::gauge!("switchyard_ha_applied_index")
            .set(m.last_applied.map_or(0, |l| l.index) as f64);
        if let Some(replication) = &m.replication {
            let last = m.last_log_index.unwrap_or(0);
            for (id, matched) in replication.iter() {
                if *id == me.id {
                    continue;
                }
                let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
                metrics::gauge!("switchyard_ha_replication_lag_entries", "follower" => name_of(Some(*id)))
                    .set(lag as f64);
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
