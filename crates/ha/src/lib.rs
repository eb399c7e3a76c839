//! Node pairs with a witness (SPEC §8): two full nodes and a witness vote with
//! [openraft](https://docs.rs/openraft/0.9); the leader is the active node. Every change
//! of the store-and-forward outbox is an entry of the replicated log, acknowledged only
//! once a majority has it on disk, and applied to each node's outbox in log order, so
//! the node that takes over holds every acknowledged message.
//!
//! - [`log_store`]: the log and the vote on fjall, synced before an append is reported.
//! - [`state_machine`]: the outbox as the state machine; snapshots are outbox images.
//! - [`network`]: the three RPCs as JSON over the cluster HTTP link (bearer token).
//! - [`proposer`]: many outbox changes per log entry, so group commit survives.
//! - [`pair`]: one voter, started from its place in the pair.
//! - [`local`]: three voters in one process, for tests and benchmarks.

pub mod local;
pub mod log_store;
pub mod network;
pub mod pair;
pub mod proposer;
pub mod state_machine;

use serde::{Deserialize, Serialize};
use std::io::Cursor;
use switchyard_layers::store_forward::{OutboxError, OutboxEvent};

pub use pair::{PairMember, PairNode, Role, Tuning, Voter};

/// Ids of the voters: the position in the pair (first node 1, second node 2, witness 3).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's types for a switchyard pair.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The running consensus of one voter.
pub type Raft = openraft::Raft<TypeConfig>;

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// Outbox changes, one part per proposed change (an enqueue, a delivery result,
    /// an operator action); each part succeeds or fails on its own.
    Outbox {
        /// The changes, in order.
        parts: Vec<Vec<OutboxEvent>>,
    },
    /// A value kept beside the outbox on every node (the site's deployment).
    Meta {
        /// Key in the outbox's meta keyspace (never one of the `raft.` keys).
        key: String,
        /// The value.
        value: Vec<u8>,
    },
}

/// What applying an entry gave: one result per part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// In the order of the parts.
    pub results: Vec<Result<(), OutboxError>>,
}

/// An error for openraft's storage error constructors.
pub(crate) fn any(error: impl std::fmt::Display) -> openraft::AnyError {
    openraft::AnyError::error(error)
}
