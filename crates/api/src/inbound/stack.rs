//! The Inbound API's stack, top to bottom. Built once per registry (at start and on
//! every reload) and stored; each request drives a clone of it.

use super::active::RequireActiveLayer;
use super::call::InboundCall;
use super::read::ReadCallLayer;
use super::respond::RespondLayer;
use super::script::ApiScript;
use crate::failure_log::FailureLog;
use crate::registry::Registry;
use axum::response::Response;
use rhai::Engine;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use switchyard_core::script::ScriptPool;
use switchyard_layers::auth::RequireApiKeyLayer;
use switchyard_layers::deadline::EnforceDeadlineLayer;
use switchyard_layers::validate::ValidateLayer;
use tower::ServiceBuilder;
use tower::load_shed::LoadShedLayer;
use tower::util::BoxCloneSyncService;

/// The stored stack: an inbound call in, the HTTP answer out.
pub type InboundStack = BoxCloneSyncService<InboundCall, Response, Infallible>;

/// How long a caller may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the stack is built from.
#[derive(Debug, Clone)]
pub struct StackParts {
    /// Central's script engine.
    pub engine: Arc<Engine>,
    /// The API script pool.
    pub pool: ScriptPool,
    /// The failure log.
    pub failure_log: Arc<FailureLog>,
    /// Set while this node is the active one.
    pub active: Arc<AtomicBool>,
}

/// Builds the stack for `registry`.
pub fn build(registry: &Arc<Registry>, parts: &StackParts) -> InboundStack {
    let settings = &registry.config.central;
    let stack = ServiceBuilder::new()
        // Every error → its status, code and body; 5xx → incident + failure log; metrics.
        .layer(RespondLayer::new(
            registry.clone(),
            parts.failure_log.clone(),
        ))
        // A standby answers 503 NOT_ACTIVE before it looks at the key.
        .layer(RequireActiveLayer::new(parts.active.clone()))
        // 401 / 404 / 403, in that order: an unauthenticated caller learns nothing.
        .layer(RequireApiKeyLayer::new(registry.clone()))
        // 405 / 413 / 415 / 400 BAD_JSON, and the method's deadline starts.
        .layer(ReadCallLayer::new(
            registry.clone(),
            settings.max_body,
            BODY_TIMEOUT,
        ))
        // Scripts only see parameters that match the definition (400 INVALID_PARAMS).
        .layer(ValidateLayer::params())
        // The method timeout covers everything below, routed calls included.
        .layer(EnforceDeadlineLayer::new(None))
        // A saturated script pool is "not ready": answered 503 OVERLOADED at once
        // instead of queueing without bound.
        .layer(LoadShedLayer::new())
        .service(ApiScript {
            engine: parts.engine.clone(),
            pool: parts.pool.clone(),
            registry: registry.clone(),
        });
    BoxCloneSyncService::new(stack)
}
