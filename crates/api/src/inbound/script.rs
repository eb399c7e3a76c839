//! The innermost service: the method's script on central's dedicated pool. A saturated
//! pool makes the service not ready; `LoadShed` above it answers `OVERLOADED` at once
//! instead of queueing without bound.

use super::call::InboundCall;
use super::error::ScriptFailed;
use crate::host;
use crate::registry::Registry;
use futures::future::BoxFuture;
use rhai::Engine;
use serde_json::Value;
use std::sync::Arc;
use std::task::{Context, Poll};
use switchyard_core::script::{ScriptError, ScriptPool};
use switchyard_core::{BoxError, Deadline};
use tower::Service;

/// Runs API scripts.
#[derive(Clone)]
pub struct ApiScript {
    pub(crate) engine: Arc<Engine>,
    pub(crate) pool: ScriptPool,
    pub(crate) registry: Arc<Registry>,
}

impl std::fmt::Debug for ApiScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiScript")
    }
}

impl Service<InboundCall> for ApiScript {
    type Response = Value;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Value, BoxError>>;

    /// Ready while the pool's queue has room; a full queue is "not ready".
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.pool.poll_room(cx).map(Ok)
    }

    fn call(&mut self, call: InboundCall) -> Self::Future {
        let Some(entry) = call.entry.clone() else {
            return Box::pin(async {
                Err("internal: call reached the script service unresolved".into())
            });
        };
        let deadline = call
            .deadline
            .unwrap_or_else(|| Deadline::after(entry.def.timeout));
        let entry_timeout = entry.def.timeout;
        let (engine, registry, params) = (self.engine.clone(), self.registry.clone(), call.params);
        let handle = tokio::runtime::Handle::current();
        let submitted = self.pool.submit(deadline, move || {
            host::run(&engine, registry, handle, deadline, &entry, &params)
        });
        Box::pin(async move {
            let run = submitted?;
            match run.await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(ScriptFailed(e).into()),
                // Dropped unrun because its deadline passed while it waited: a timeout.
                Err(_) if deadline.is_expired() => Err(ScriptFailed(ScriptError::Timeout {
                    budget: entry_timeout,
                })
                .into()),
                Err(closed) => Err(ScriptFailed(ScriptError::Runtime {
                    message: closed.to_string(),
                })
                .into()),
            }
        })
    }
}
