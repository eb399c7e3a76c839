//! The top of the inbound stack: every error becomes the SPEC §3 answer (one status and
//! `code` per failure, [`classify`](super::classify)); a 5xx gets an incident id, and
//! its detail goes to the failure log under that id — for authenticated callers only,
//! so nothing an unauthenticated caller sends is written to disk. Every call is
//! counted and timed with a label that never tells an unauthenticated caller which
//! methods exist.

use super::call::InboundCall;
use crate::central::error_body;
use crate::failure_log::{FailureLog, FailureRecord};
use crate::registry::Registry;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::StatusCode;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use switchyard_core::{BoxError, IncidentId};
use switchyard_layers::auth::KeyStore;
use tower::{Layer, Service};

/// Applies [`Respond`].
#[derive(Debug, Clone)]
pub struct RespondLayer {
    registry: Arc<Registry>,
    failure_log: Arc<FailureLog>,
}

impl RespondLayer {
    /// Answers for the methods and keys of `registry`, logging failures in `failure_log`.
    pub fn new(registry: Arc<Registry>, failure_log: Arc<FailureLog>) -> Self {
        RespondLayer {
            registry,
            failure_log,
        }
    }
}

impl<S> Layer<S> for RespondLayer {
    type Service = Respond<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Respond {
            inner,
            layer: self.clone(),
            not_ready: None,
        }
    }
}

/// Turns the stack's result into the HTTP answer; never fails.
#[derive(Debug)]
pub struct Respond<S> {
    inner: S,
    layer: RespondLayer,
    /// The stack below failed to become ready: the next call is answered with this.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for Respond<S> {
    fn clone(&self) -> Self {
        Respond {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
            not_ready: None,
        }
    }
}

/// What the answer needs to know about the call once the stack has consumed it.
struct Caller {
    method: String,
    api_key: Option<String>,
    started: Instant,
}

impl<S> Service<InboundCall> for Respond<S>
where
    S: Service<InboundCall, Response = Value, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // An error of the stack below is the caller's answer, like any other.
        if let Err(e) = std::task::ready!(self.inner.poll_ready(cx)) {
            self.not_ready = Some(e);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: InboundCall) -> Self::Future {
        let caller = Caller {
            method: call.method.clone(),
            api_key: call.api_key.clone(),
            started: Instant::now(),
        };
        let layer = self.layer.clone();
        let result = match self.not_ready.take() {
            None => futures::future::Either::Left(self.inner.call(call)),
            Some(err) => futures::future::Either::Right(futures::future::ready(Err(err))),
        };
        metrics::gauge!("switchyard_api_in_flight").increment(1.0);
        Box::pin(async move {
            let result = result.await;
            metrics::gauge!("switchyard_api_in_flight").decrement(1.0);
            let (status, response, authenticated) = match result {
                // Only an authenticated call reaches the script.
                Ok(value) => (
                    StatusCode::OK,
                    (StatusCode::OK, axum::Json(value)).into_response(),
                    true,
                ),
                Err(err) => layer.failed(&caller, &err).await,
            };
            layer.count(&caller, status, authenticated);
            Ok(response)
        })
    }
}

impl RespondLayer {
    /// The answer to a failed call, and whether its key was good; a 5xx of an
    /// authenticated caller is logged.
    async fn failed(&self, caller: &Caller, err: &BoxError) -> (StatusCode, Response, bool) {
        let registry = &self.registry;
        let timeout = registry.method(&caller.method).map(|m| m.def.timeout);
        let answer = super::classify(err, timeout);
        let incident = answer.status.is_server_error().then(IncidentId::new);
        let principal = caller
            .api_key
            .as_deref()
            .and_then(|k| registry.authenticate(k));
        // Nothing an unauthenticated caller sends is written to disk (a standby or a
        // saturated node answers 503 before the key is checked).
        if let (Some(incident), Some(principal)) = (incident, &principal) {
            let record = FailureRecord {
                time: chrono::Utc::now().to_rfc3339(),
                method: printable_method(&caller.method),
                key: Some(principal.key_name.clone()),
                incident: incident.to_string(),
                status: answer.status.as_u16(),
                code: answer.code.to_string(),
                detail: answer
                    .detail
                    .clone()
                    .unwrap_or_else(|| answer.message.clone()),
                duration_ms: u64::try_from(caller.started.elapsed().as_millis())
                    .unwrap_or(u64::MAX),
            };
            tracing::warn!(method = %record.method, incident = %incident, status = answer.status.as_u16(), code = answer.code, detail = %record.detail, "API call failed");
            let log = self.failure_log.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || log.append(&record))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                tracing::error!(error = %e, "could not write the failure log");
            }
        }
        let mut response = error_body(answer.status, answer.code, &answer.message, incident);
        if answer.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        }
        (answer.status, response, principal.is_some())
    }

    /// Counts and times the call. Metrics never tell an unauthenticated caller which
    /// methods exist.
    fn count(&self, caller: &Caller, status: StatusCode, authenticated: bool) {
        let registry = &self.registry;
        let label = if !authenticated {
            "(unauthenticated)".to_string()
        } else if registry.method(&caller.method).is_some() {
            caller.method.clone()
        } else {
            "(unknown)".to_string()
        };
        metrics::counter!("switchyard_api_calls_total", "method" => label.clone(), "status" => status.as_u16().to_string()).increment(1);
        metrics::histogram!("switchyard_api_call_duration_seconds", "method" => label)
            .record(caller.started.elapsed().as_secs_f64());
    }
}

/// The longest method name written to the failure log or the event log.
const MAX_LOGGED_METHOD: usize = 128;

/// A method name as it may be written to a log: control characters escaped (no forged
/// log lines), at most [`MAX_LOGGED_METHOD`] characters.
pub(crate) fn printable_method(method: &str) -> String {
    let mut out: String = method
        .chars()
        .take(MAX_LOGGED_METHOD)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if method.chars().count() > MAX_LOGGED_METHOD {
        out.push('…');
    }
    out
}
