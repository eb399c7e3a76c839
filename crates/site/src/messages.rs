//! The typed store-and-forward messages of a site (SPEC §6): one struct per category,
//! stored in the outbox payload with a version tag (`"version": 1`), so a later release
//! can change a message's shape and still read what an earlier one buffered. Payloads
//! written before the tag existed (the same fields, no tag) read as version 1.
//!
//! A payload that does not decode is a permanent failure naming what is wrong: the
//! forwarder parks the message with that reason, where an operator sees it — it is
//! never retried forever, nor delivered with defaults in place of its data.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::Failure;
use switchyard_core::error::codes;
use switchyard_layers::store_forward::{Category, StoredMessage};

/// The version this release writes.
const CURRENT_VERSION: u64 = 1;

/// A message kind kept in store-and-forward.
pub trait SfMessage: Serialize + DeserializeOwned {
    /// Its category.
    const CATEGORY: Category;

    /// The payload to store: the message's fields and the version tag.
    fn to_payload(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut value {
            fields.insert("version".into(), CURRENT_VERSION.into());
        }
        value
    }

    /// Reads a stored message of this kind; anything else is a permanent failure
    /// saying why (the forwarder parks it with that reason).
    fn from_stored(message: &StoredMessage) -> Result<Self, Failure> {
        let undecodable = |why: String| {
            Failure::permanent(
                codes::BAD_RESPONSE,
                format!(
                    "stored {} message {} cannot be read: {why}",
                    Self::CATEGORY,
                    message.id
                ),
            )
        };
        if message.category != Self::CATEGORY {
            return Err(undecodable(format!("it is a {} message", message.category)));
        }
        let mut payload = message.payload.clone();
        let version = match &mut payload {
            Value::Object(fields) => fields.remove("version"),
            other => {
                return Err(undecodable(format!(
                    "the payload is not an object: {other}"
                )));
            }
        };
        match version {
            // Version 1, or written before messages carried a version.
            None => {}
            Some(v) if v.as_u64() == Some(1) => {}
            Some(v) => {
                return Err(undecodable(format!(
                    "version {v} is newer than this release reads (1)"
                )));
            }
        }
        serde_json::from_value(payload).map_err(|e| undecodable(e.to_string()))
    }
}

/// `ExternalSystem.CachedCall(system, method, params)` (`external`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalMessage {
    /// External system name.
    pub system: String,
    /// Method name.
    pub method: String,
    /// Parameters (a JSON object).
    pub params: Value,
}

impl SfMessage for ExternalMessage {
    const CATEGORY: Category = Category::External;
}

/// `Database.CachedWrite(connection, sql, params)` (`database`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseMessage {
    /// Connection name.
    pub connection: String,
    /// The statement.
    pub sql: String,
    /// Positional parameter values.
    pub params: Vec<Value>,
}

impl SfMessage for DatabaseMessage {
    const CATEGORY: Category = Category::Database;
}

/// `Notify.To(list).Send(subject, message)` (`notification`), with the recipients the
/// list had when it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationMessage {
    /// Notification list name.
    pub list: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub message: String,
    /// Resolved recipients.
    pub recipients: Vec<String>,
}

impl SfMessage for NotificationMessage {
    const CATEGORY: Category = Category::Notification;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_core::{MessageId, RetryPolicy};

    fn stored(category: Category, payload: Value) -> StoredMessage {
        StoredMessage {
            id: MessageId::new(),
            category,
            target: "T".into(),
            payload,
            retry: RetryPolicy::default(),
            created_ms: 0,
            attempts: 1,
            due_ms: 0,
            last_error: None,
        }
    }

    #[test]
    fn current_messages_round_trip_with_their_version() {
        let m = ExternalMessage {
            system: "ERP".into(),
            method: "PostLevel".into(),
            params: json!({ "tank": "T-1", "level": 1.5 }),
        };
        let payload = m.to_payload();
        assert_eq!(payload["version"], 1);
        let back = ExternalMessage::from_stored(&stored(Category::External, payload)).unwrap();
        assert_eq!(back, m);
    }

    /// Payloads as the previous release wrote them (no version tag) still read.
    #[test]
    fn records_written_before_the_version_tag_still_read() {
        let external =
            json!({ "system": "ERP", "method": "PostLevel", "params": { "tank": "T-2" } });
        let database = json!({ "connection": "Historian", "sql": "INSERT INTO e VALUES (?1)", "params": ["x", 2] });
        let notification = json!({ "list": "Operators", "subject": "High", "message": "T-1 at 92 %", "recipients": ["a@plant.example", "a@plant.example"] });
        assert_eq!(
            ExternalMessage::from_stored(&stored(Category::External, external))
                .unwrap()
                .params,
            json!({ "tank": "T-2" })
        );
        assert_eq!(
            DatabaseMessage::from_stored(&stored(Category::Database, database))
                .unwrap()
                .params,
            vec![json!("x"), json!(2)]
        );
        assert_eq!(
            NotificationMessage::from_stored(&stored(Category::Notification, notification))
                .unwrap()
                .recipients
                .len(),
            2
        );
    }

    /// What does not decode is a permanent failure naming the problem — never a
    /// delivery with empty defaults.
    #[test]
    fn undecodable_payloads_are_permanent_failures_saying_why() {
        for (payload, needle) in [
            (
                json!({ "system": "ERP", "params": {} }),
                "missing field `method`",
            ),
            (json!("text"), "not an object"),
            (
                json!({ "version": 7, "system": "ERP", "method": "M", "params": {} }),
                "version 7 is newer",
            ),
            (
                json!({ "system": 3, "method": "M", "params": {} }),
                "invalid type",
            ),
        ] {
            let err =
                ExternalMessage::from_stored(&stored(Category::External, payload)).unwrap_err();
            assert!(!err.is_transient());
            assert!(err.message.contains(needle), "{}", err.message);
            assert!(
                err.message.contains("stored external message"),
                "{}",
                err.message
            );
        }
        let wrong_kind = ExternalMessage::from_stored(&stored(
            Category::Database,
            json!({ "connection": "c", "sql": "s", "params": [] }),
        ))
        .unwrap_err();
        assert!(wrong_kind.message.contains("it is a database message"));
    }
}
