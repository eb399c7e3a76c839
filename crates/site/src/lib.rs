//! A switchyard site: instances with typed attributes and alarms, the script host on a
//! dedicated pool, the outbound surfaces (external systems, databases, e-mail) with
//! store-and-forward, and the cluster endpoint central calls.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]

pub mod cached_write;
pub mod cluster;
pub mod external;
mod host;
pub mod instance;
pub mod messages;
pub mod node;
pub mod notify;
pub mod runtime;
pub mod state;

pub use host::site_engine;
pub use node::{SiteNode, StartError};
