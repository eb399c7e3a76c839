//! Resolution and reading of an authenticated call, in the order of SPEC §3: the method
//! (its entry and deadline), then 405 (not POST), 413 (too large, refused on
//! `Content-Length` before reading), 415 (not JSON), 400 `BAD_JSON` (not a JSON object).

use super::call::InboundCall;
use super::error::{BadJson, BodyTimeout, MethodNotAllowed, PayloadTooLarge, UnsupportedMediaType};
use crate::registry::Registry;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::{BoxError, Deadline};
use switchyard_layers::auth::UnknownTarget;
use tower::{Layer, Service};

/// Applies [`ReadCall`].
#[derive(Clone, Debug)]
pub struct ReadCallLayer {
    registry: Arc<Registry>,
    max_body: u64,
    body_timeout: Duration,
}

impl ReadCallLayer {
    /// Reads bodies of at most `max_body` bytes, arriving within `body_timeout`.
    pub fn new(registry: Arc<Registry>, max_body: u64, body_timeout: Duration) -> Self {
        ReadCallLayer {
            registry,
            max_body,
            body_timeout,
        }
    }
}

impl<S> Layer<S> for ReadCallLayer {
    type Service = ReadCall<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadCall {
            inner,
            layer: self.clone(),
        }
    }
}

/// Resolves the method and reads the parameters of a call.
#[derive(Clone, Debug)]
pub struct ReadCall<S> {
    inner: S,
    layer: ReadCallLayer,
}

impl<S> Service<InboundCall> for ReadCall<S>
where
    S: Service<InboundCall, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: InboundCall) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let entry = layer
                .registry
                .method(&call.method)
                .cloned()
                .ok_or_else(|| UnknownTarget {
                    target: call.method.clone(),
                })?;
            call.deadline = Some(Deadline::after(entry.def.timeout));
            let entry_timeout = entry.def.timeout;
            call.entry = Some(entry);
            if call.http_method != http::Method::POST {
                return Err(MethodNotAllowed {
                    method: call.http_method.to_string(),
                }
                .into());
            }
            let declared = call
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > layer.max_body) {
                return Err(PayloadTooLarge {
                    limit: layer.max_body,
                }
                .into());
            }
            let content_type = call
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or("?").to_string());
            let body = call.body.take().unwrap_or_default();
            let limited = http_body_util::Limited::new(
                body,
                usize::try_from(layer.max_body).unwrap_or(usize::MAX),
            );
            // The body must arrive within the method's timeout (and never more than the cap).
            let body_timeout = layer.body_timeout.min(entry_timeout);
            let bytes = match tokio::time::timeout(body_timeout, limited.collect()).await {
                Err(_) => return Err(BodyTimeout.into()),
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(PayloadTooLarge {
                        limit: layer.max_body,
                    }
                    .into());
                }
                Ok(Err(e)) => {
                    return Err(BadJson {
                        reason: format!("the body could not be read: {e}"),
                    }
                    .into());
                }
                Ok(Ok(collected)) => collected.to_bytes(),
            };
            let is_json = |ct: &str| {
                let essence = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json"
                    || (essence.starts_with("application/") && essence.ends_with("+json"))
            };
            match &content_type {
                Some(ct) if !is_json(ct) => {
                    return Err(UnsupportedMediaType { found: ct.clone() }.into());
                }
                None if !bytes.is_empty() => {
                    return Err(UnsupportedMediaType {
                        found: "(none)".into(),
                    }
                    .into());
                }
                _ => {}
            }
            // SPEC §3: an empty body is `{}`; anything else (whitespace included) must be
            // a JSON object.
            call.params = if bytes.is_empty() {
                serde_json::json!({})
            } else {
                match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(value @ serde_json::Value::Object(_)) => value,
                    Ok(other) => {
                        return Err(BadJson {
                            reason: format!("found {}", kind(&other)),
                        }
                        .into());
                    }
                    Err(e) => {
                        return Err(BadJson {
                            reason: e.to_string(),
                        }
                        .into());
                    }
                }
            };
            inner.call(call).await
        })
    }
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
