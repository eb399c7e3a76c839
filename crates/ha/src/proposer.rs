//! Proposes outbox changes to the replicated log, many per entry: what queued up while
//! the previous entries were being replicated goes into the next one, so 64 producers
//! waiting for their own acknowledgement share a few log appends and syncs, as they
//! share the outbox's group commit on a single node.

use crate::{NodeId, Raft, Request, Response};
use openraft::error::{ClientWriteError, RaftError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_layers::store_forward::{OutboxError, OutboxEvent, Replicate};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most changes in one log entry.
pub const MAX_PARTS: usize = 256;
/// Entries being replicated at once.
const IN_FLIGHT: usize = 4;

struct Proposal {
    events: Vec<OutboxEvent>,
    reply: oneshot::Sender<Result<(), OutboxError>>,
}

/// The outbox's way into the log ([`Replicate`]).
pub struct Proposer {
    queue: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    /// Starts proposing to `raft`; a change not committed within `commit_timeout`
    /// (no majority reachable) is answered `Unavailable`. `names` turns a voter id into
    /// its name for the error that names the active node.
    pub fn start(
        raft: Raft,
        commit_timeout: Duration,
        names: Arc<BTreeMap<NodeId, String>>,
    ) -> Proposer {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx, commit_timeout, names));
        Proposer { queue }
    }
}

impl Replicate for Proposer {
    fn propose(&self, events: Vec<OutboxEvent>) -> oneshot::Receiver<Result<(), OutboxError>> {
        let (reply, rx) = oneshot::channel();
        // A closed queue drops the reply: the caller sees the outbox closed.
        let _ = self.queue.send(Proposal { events, reply });
        rx
    }
}

async fn run(
    raft: Raft,
    mut queue: mpsc::UnboundedReceiver<Proposal>,
    commit_timeout: Duration,
    names: Arc<BTreeMap<NodeId, String>>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        // Waiting for a slot lets more changes queue up for this entry.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_PARTS {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let names = names.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (parts, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.events, p.reply)).unzip();
            match commit(&raft, Request::Outbox { parts }, commit_timeout, &names).await {
                Ok(response) => {
                    let mut results = response.results.into_iter();
                    for reply in replies {
                        let result = results.next().unwrap_or_else(|| {
                            Err(OutboxError::Storage(
                                "the log entry lost a change's result".into(),
                            ))
                        });
                        let _ = reply.send(result);
                    }
                }
                Err(why) => fail_all(replies, &why),
            }
        });
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Result<(), OutboxError>>>, why: &str) {
    for reply in replies {
        let _ = reply.send(Err(OutboxError::Unavailable(why.to_string())));
    }
}

/// Writes `request` to the log and waits, at most `timeout`, until it is committed
/// and applied here. A refusal says why, naming the active node when it is known; a
/// timeout means no majority answered (the entry may still commit later).
pub(crate) async fn commit(
    raft: &Raft,
    request: Request,
    timeout: Duration,
    names: &BTreeMap<NodeId, String>,
) -> Result<Response, String> {
    match tokio::time::timeout(timeout, raft.client_write(request)).await {
        Ok(Ok(written)) => Ok(written.data),
        Ok(Err(e)) => Err(refusal(&e, names)),
        Err(_) => Err(format!(
            "not replicated to a majority of the pair within {} ms (no majority reachable)",
            timeout.as_millis()
        )),
    }
}

/// Why the log refused a change, naming the active node when it is known.
fn refusal(
    error: &RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>,
    names: &BTreeMap<NodeId, String>,
) -> String {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            match forward.leader_id.and_then(|id| names.get(&id)) {
                Some(name) => format!("this node is not active; the active node is {name}"),
                None => "this node is not active and no node is active now".into(),
            }
        }
        other => other.to_string(),
    }
}
