//! One call of an external-system method, and the service that turns it into an HTTP
//! request and its response back into a checked JSON value.

use super::SystemClient;
use crate::messages::{ExternalMessage, SfMessage};
use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::task::{Context, Poll};
use switchyard_core::config::ExternalMethodDef;
use switchyard_core::error::codes;
use switchyard_core::types::{ParamDef, Strictness};
use switchyard_core::{BoxError, Deadline, Failure, MessageId};
use switchyard_layers::deadline::Budget;
use switchyard_layers::store_forward::{Category, Forwardable, NewMessage};
use switchyard_layers::validate::HasParams;
use tower::Service;

/// A call of `system.method(params)`.
#[derive(Clone)]
pub struct ExternalCall {
    /// Message id of a cached call (sent as `Idempotency-Key` on every attempt).
    pub id: Option<MessageId>,
    /// The system.
    pub system: Arc<SystemClient>,
    /// Method name.
    pub method: String,
    /// Method definition.
    pub def: Arc<ExternalMethodDef>,
    /// Parameters (a JSON object).
    pub params: Value,
    /// The caller's deadline.
    pub deadline: Option<Deadline>,
}

impl std::fmt::Debug for ExternalCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExternalCall({}.{})", self.system.name, self.method)
    }
}

impl HasParams for ExternalCall {
    fn params(&self) -> &Value {
        &self.params
    }

    fn param_defs(&self) -> &[ParamDef] {
        &self.def.params
    }
}

impl Forwardable for ExternalCall {
    fn to_message(self, failure: &Failure) -> NewMessage {
        let retry = self.system.def.retry;
        NewMessage {
            id: self.id.unwrap_or_default(),
            category: Category::External,
            target: self.system.name.clone(),
            payload: ExternalMessage {
                system: self.system.name.clone(),
                method: self.method,
                params: self.params,
            }
            .to_payload(),
            retry,
            first_delay: retry.delay(failure.retry_after),
            last_error: Some(failure.message.clone()),
        }
    }
}

/// Builds the HTTP request of a call (`CD-ESG-1/2`: `base_url` + path; query string for
/// GET/DELETE, JSON body for POST/PUT/PATCH), sends it through the inner HTTP stack, and
/// decodes the response against the method's `returns` (a mismatch is permanent).
#[derive(Clone, Debug)]
pub struct MethodCall<S> {
    http: S,
    /// Why the system cannot be called at all (credentials missing).
    unusable: Option<String>,
}

impl<S> MethodCall<S> {
    pub(super) fn new(http: S, unusable: Option<String>) -> Self {
        MethodCall { http, unusable }
    }
}

impl<S> Service<ExternalCall> for MethodCall<S>
where
    S: Service<http::Request<Bytes>, Response = http::Response<Bytes>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Value;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Value, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, call: ExternalCall) -> Self::Future {
        let what = format!("{}.{}", call.system.name, call.method);
        if let Some(reason) = &self.unusable {
            let failure = Failure::permanent(
                codes::AUTH,
                format!("{what}: credentials unavailable: {reason}"),
            );
            return Box::pin(async move { Err(failure.into()) });
        }
        let request = match build_request(&call) {
            Ok(r) => r,
            Err(f) => return Box::pin(async move { Err(f.into()) }),
        };
        // Use the instance that reported ready; leave a fresh clone in its place.
        let clone = self.http.clone();
        let mut http = std::mem::replace(&mut self.http, clone);
        let returns = call.def.returns.clone();
        Box::pin(async move {
            let response = http.call(request).await?;
            decode(response.body(), returns.as_ref()).map_err(|f| f.context(&what).into())
        })
    }
}

fn build_request(call: &ExternalCall) -> Result<http::Request<Bytes>, Failure> {
    let base = call.system.def.base_url.trim_end_matches('/');
    let path = call.def.path.trim_start_matches('/');
    let joined = if path.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{path}")
    };
    let mut url = url::Url::parse(&joined).map_err(|e| {
        Failure::permanent(codes::CONNECTION, format!("invalid URL `{joined}`: {e}"))
    })?;
    let method = call.def.http_method;
    let mut body = Bytes::new();
    if method.params_in_query() {
        if let Value::Object(params) = &call.params {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in params {
                match value {
                    Value::Null => {}
                    Value::String(s) => {
                        pairs.append_pair(key, s);
                    }
                    Value::Array(items) => {
                        for item in items {
                            pairs.append_pair(key, &query_text(item));
                        }
                    }
                    other => {
                        pairs.append_pair(key, &query_text(other));
                    }
                }
            }
        }
    } else {
        body = Bytes::from(
            serde_json::to_vec(&call.params)
                .map_err(|e| Failure::permanent(codes::INVALID_PARAMS, e.to_string()))?,
        );
    }
    let mut builder = http::Request::builder()
        .method(method.as_http())
        .uri(url.as_str())
        .header(http::header::ACCEPT, "application/json");
    if !method.params_in_query() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    if let Some(id) = call.id {
        builder = builder.header("idempotency-key", id.to_string());
    }
    let mut request = builder.body(body).map_err(|e| {
        Failure::permanent(codes::CONNECTION, format!("cannot build the request: {e}"))
    })?;
    request.extensions_mut().insert(Budget {
        timeout: Some(call.system.def.timeout),
        deadline: call.deadline,
    });
    Ok(request)
}

fn query_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Decodes a response body: empty is `null`; otherwise JSON that must match `returns`
/// (extra fields in objects are allowed: systems often send more than we declare).
fn decode(body: &Bytes, returns: Option<&switchyard_core::types::Type>) -> Result<Value, Failure> {
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Failure::permanent(
                codes::BAD_RESPONSE,
                format!("the response is not JSON: {e}"),
            )
        })?
    };
    if let Some(ty) = returns {
        ty.validate("response", &value, Strictness::AllowExtra)
            .map_err(|e| {
                Failure::permanent(
                    codes::RETURN_MISMATCH,
                    format!("the response does not match `{ty}`: {e}"),
                )
            })?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_core::types::Type;

    #[test]
    fn responses_are_decoded_and_checked() {
        assert_eq!(decode(&Bytes::from_static(b""), None).unwrap(), Value::Null);
        assert_eq!(
            decode(
                &Bytes::from_static(b"{\"a\":1,\"b\":2}"),
                Some(&Type::parse("Object{a: Integer}").unwrap())
            )
            .unwrap(),
            json!({"a": 1, "b": 2})
        );
        let err = decode(&Bytes::from_static(b"<html>"), None).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.class),
            (
                codes::BAD_RESPONSE,
                switchyard_core::FailureClass::Permanent
            )
        );
        let err = decode(
            &Bytes::from_static(b"{\"a\":\"x\"}"),
            Some(&Type::parse("Object{a: Integer}").unwrap()),
        )
        .unwrap_err();
        assert_eq!(err.code, codes::RETURN_MISMATCH);
        assert!(
            err.message
                .contains(r#"response.a: expected Integer, found String "x""#),
            "{}",
            err.message
        );
    }
}
