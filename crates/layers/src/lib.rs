//! The tower layers every switchyard surface is built from (SPEC §1):
//!
//! | layer | inbound (Inbound API) | outbound (ExternalSystem, Database, Notify, Route.To) |
//! |---|---|---|
//! | [`auth`] | verify `X-API-Key`, per-method approval | attach credentials |
//! | [`validate`] | request params vs method definition | call params vs external-method definition |
//! | [`deadline`] | per-method timeout | per-system timeout capped by the caller's budget |
//! | [`classify`] | — (the API maps errors to statuses) | failure → transient / permanent |
//! | [`store_forward`] | never (`CD-IA-8`) | `CachedCall`, `CachedWrite`, `Notify…Send` |
//!
//! Each layer is generic over a small trait of the request (or a pluggable extension
//! point such as [`auth::KeyStore`], [`validate::ValidateRequest`], [`classify::Classify`],
//! [`store_forward::Outbox`]), so the same layer wraps inbound and outbound stacks and can
//! be used alone. Layers that add a failure return `BoxError` holding a small marker
//! type (`Unauthorized`, `Invalid`, `Elapsed`, `Failure`) that callers test with
//! `err.is::<T>()`.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod classify;
pub mod deadline;
pub mod slot;
pub mod store_forward;
pub mod validate;

use switchyard_core::BoxError;
use tower_service::Service;

/// Drives one request through a stored stack: waits until it is ready, then calls the
/// instance that said so (readiness is where back-pressure lives). Surfaces build their
/// stack once, clone it per request and hand the clone here.
pub async fn drive<S, R>(mut stack: S, request: R) -> Result<S::Response, BoxError>
where
    S: Service<R, Error = BoxError>,
{
    std::future::poll_fn(|cx| stack.poll_ready(cx)).await?;
    stack.call(request).await
}
