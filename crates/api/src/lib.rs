//! switchyard central: the Inbound API (SPEC §3), the API-script host with `Route.To`,
//! the client of the sites' cluster endpoints, deployment to sites, keys, the failure
//! log, metrics and OpenAPI.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]

mod active;
mod admin;
pub mod central;
pub mod failure_log;
mod host;
pub mod inbound;
pub mod keys;
pub mod openapi;
pub mod registry;
pub mod router;
pub mod site_client;
mod ui;

pub use central::{Central, CentralError};
pub use host::central_engine;
pub use router::app;
