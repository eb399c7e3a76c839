//! What the outbox stores: messages, their categories, and the record encoding.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use switchyard_core::{MessageId, RetryPolicy};

/// What kind of work a message is (SPEC §6): each category has its own forwarder path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// An external-system call (system, method, params).
    External,
    /// A database write (connection, sql, params).
    Database,
    /// An e-mail (list, subject, message, resolved recipients).
    Notification,
}

impl Category {
    /// `external`, `database` or `notification`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::External => "external",
            Category::Database => "database",
            Category::Notification => "notification",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message about to be buffered.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Id, chosen before the first attempt so every attempt carries the same one.
    pub id: MessageId,
    /// Category.
    pub category: Category,
    /// The system, connection or list it goes to (metrics are counted per target).
    pub target: String,
    /// Everything needed to deliver it again.
    pub payload: serde_json::Value,
    /// Retry settings of the target, fixed when the message is buffered.
    pub retry: RetryPolicy,
    /// Wait before the first retry (the interval, or a longer `Retry-After`).
    pub first_delay: Duration,
    /// Why the first attempt failed.
    pub last_error: Option<String>,
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Id.
    pub id: MessageId,
    /// Category.
    pub category: Category,
    /// Target name.
    pub target: String,
    /// Delivery payload.
    pub payload: serde_json::Value,
    /// Retry settings.
    pub retry: RetryPolicy,
    /// When it was buffered (ms since the Unix epoch).
    pub created_ms: u64,
    /// Retries done so far.
    pub attempts: u32,
    /// When it is next due (ms since the Unix epoch).
    pub due_ms: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// A message that could not be delivered and waits for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedMessage {
    /// The message as it was when parked.
    pub message: StoredMessage,
    /// When it was parked (ms since the Unix epoch).
    pub parked_ms: u64,
    /// Why: retries exhausted, or the permanent failure met during a retry.
    pub reason: String,
}

/// Version byte in front of every stored record, so the format can evolve.
const RECORD_VERSION: u8 = 1;

/// A stored record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt outbox record: {0}")]
pub struct DecodeError(pub String);

/// Encodes a record: a version byte, then JSON.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(RECORD_VERSION);
    // Serializing these plain structs to a Vec cannot fail (no maps with non-string
    // keys, no failing Serialize impls).
    serde_json::to_writer(&mut out, record).expect("outbox records always serialize");
    out
}

/// Decodes a record written by [`encode`]; any other input is an error, never a panic.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => {
            serde_json::from_slice(body).map_err(|e| DecodeError(e.to_string()))
        }
        Some((version, _)) => Err(DecodeError(format!("unknown record version {version}"))),
        None => Err(DecodeError("empty record".into())),
    }
}

/// Key of the due index: due time (big-endian ms) then id, so a range scan yields
/// messages in the order they fall due.
pub(crate) fn due_key(due_ms: u64, id: &MessageId) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&due_ms.to_be_bytes());
    key[8..].copy_from_slice(&id.to_bytes());
    key
}

/// Splits a due-index key.
pub(crate) fn parse_due_key(key: &[u8]) -> Option<(u64, MessageId)> {
    if key.len() != 24 {
        return None;
    }
    let due = u64::from_be_bytes(key[..8].try_into().ok()?);
    Some((due, MessageId::from_slice(&key[8..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        let msg = StoredMessage {
            id: MessageId::new(),
            category: Category::Database,
            target: "Historian".into(),
            payload: serde_json::json!({"sql": "insert", "params": [1, "a"]}),
            retry: RetryPolicy::default(),
            created_ms: 1,
            attempts: 2,
            due_ms: 3,
            last_error: Some("down".into()),
        };
        let bytes = encode(&msg);
        assert_eq!(decode::<StoredMessage>(&bytes).unwrap(), msg);
        assert!(decode::<StoredMessage>(&[]).is_err());
        assert!(decode::<StoredMessage>(&[9, b'{']).is_err());
        assert!(decode::<StoredMessage>(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn payload_floats_survive_a_round_trip_exactly() {
        // serde_json's fast float parser can land one ULP off for long decimals, so a
        // payload read back and stored again (a retry, a snapshot) would drift; the
        // workspace enables `float_roundtrip`. These are decimals the fast parser misreads.
        for text in [
            "4239597738164463412166e3",
            "2679508191959465321405e17",
            "959141670500656267273e9",
        ] {
            let message = StoredMessage {
                id: MessageId::new(),
                category: Category::External,
                target: "ERP".into(),
                payload: serde_json::from_str(&format!("{{\"value\": {text}}}")).unwrap(),
                retry: RetryPolicy::default(),
                created_ms: 1,
                attempts: 0,
                due_ms: 1,
                last_error: None,
            };
            assert_eq!(
                decode::<StoredMessage>(&encode(&message)).unwrap(),
                message,
                "{text}"
            );
        }
    }

    #[test]
    fn due_keys_sort_by_time_then_id() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(due_key(5, &b) < due_key(6, &a));
        assert!(due_key(5, &a) < due_key(5, &b));
        assert_eq!(parse_due_key(&due_key(7, &a)), Some((7, a)));
        assert_eq!(parse_due_key(b"short"), None);
    }
}
