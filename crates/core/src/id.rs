//! Time-ordered identifiers (UUID v7): their big-endian bytes sort by creation time, so
//! they make good storage keys for queues and logs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// A store-and-forward message id; also the `Idempotency-Key` of buffered HTTP calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

/// The id of an inbound-API incident (a 5xx), shared by the response and the failure log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentId(Uuid);

macro_rules! time_ordered_id {
    ($name:ident) => {
        impl $name {
            /// A new id, ordered after every id made earlier by this process.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            /// The 16 big-endian bytes (storage key form).
            pub fn to_bytes(&self) -> [u8; 16] {
                *self.0.as_bytes()
            }

            /// Rebuilds an id from its storage key form.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                Uuid::from_slice(bytes).ok().map($name)
            }

            /// Milliseconds since the Unix epoch at which the id was made.
            pub fn unix_millis(&self) -> u64 {
                self.0
                    .get_timestamp()
                    .map(|ts| {
                        let (secs, nanos) = ts.to_unix();
                        secs * 1000 + u64::from(nanos) / 1_000_000
                    })
                    .unwrap_or(0)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim())
                    .map($name)
                    .map_err(|_| format!("`{s}` is not a valid id (expected a UUID)"))
            }
        }
    };
}

time_ordered_id!(MessageId);
time_ordered_id!(IncidentId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_and_round_trip() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(MessageId::from_slice(&a.to_bytes()), Some(a));
        assert_eq!(a.to_string().parse::<MessageId>(), Ok(a));
        assert!("nope".parse::<MessageId>().is_err());
    }
}
