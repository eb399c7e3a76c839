//! Outbox state changes as events. The writer applies them in order; a replica that
//! applies the same events in the same order holds the same outbox.

use super::message::{Category, ParkedMessage, StoredMessage};
use serde::{Deserialize, Serialize};
use switchyard_core::MessageId;

/// One change to the outbox, with every value it needs already decided (times, attempt
/// counts), so applying it is deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OutboxEvent {
    /// A message was buffered.
    Enqueued(StoredMessage),
    /// A retry failed transiently; the message waits for its next due time.
    Rescheduled {
        /// The message with its new attempts, due time and last error.
        message: StoredMessage,
        /// The due time it had (its key in the due index).
        prev_due_ms: u64,
    },
    /// A retry succeeded; the message is gone.
    Delivered {
        /// Message id.
        id: MessageId,
        /// Its due time (its key in the due index).
        due_ms: u64,
        /// Category (for counts).
        category: Category,
        /// Target (for counts).
        target: String,
    },
    /// Retries were exhausted, or a retry failed permanently.
    Parked {
        /// The parked record.
        parked: ParkedMessage,
        /// The due time it had.
        prev_due_ms: u64,
    },
    /// An operator sent a parked message back to pending, attempts reset.
    Retried {
        /// Message id.
        id: MessageId,
        /// When it is due again.
        due_ms: u64,
    },
    /// An operator discarded a parked message.
    Discarded {
        /// Message id.
        id: MessageId,
    },
    /// A pending message that predates replication, adopted into the replicated
    /// outbox (a single node migrated into a pair): inserted where it is missing, left
    /// alone where the message is already held.
    AdoptedPending(StoredMessage),
    /// The same for a parked message.
    AdoptedParked(ParkedMessage),
}
