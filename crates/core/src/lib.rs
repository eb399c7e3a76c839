//! Types shared by every switchyard crate: the value type system, the configuration
//! and its definitions, the error model and its classifiers, retry policy, deadlines,
//! ids, the cluster protocol, the script runtime and the database drivers.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]

pub mod classify;
pub mod config;
pub mod database;
pub mod deadline;
pub mod error;
pub mod id;
pub mod pace;
pub mod protocol;
pub mod retry;
pub mod script;
pub mod telemetry;
pub mod tls;
pub mod types;
pub mod units;

pub use deadline::Deadline;
pub use error::{Failure, FailureClass};
pub use id::{IncidentId, MessageId};
pub use pace::Pace;
pub use retry::RetryPolicy;

/// Boxed error used across tower boundaries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
