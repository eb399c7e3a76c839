//! Parameter validation: requests whose parameters do not match their definition are
//! refused with [`Invalid`] before they reach the inner service (`[7.4-3-rt]`), with the
//! exact path and reason (`params.items[2].qty: expected Integer, found String "abc"`).
//!
//! ```
//! use switchyard_core::types::{ParamDef, Type};
//! use switchyard_layers::validate::{HasParams, Invalid, ValidateLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! struct Call { defs: Vec<ParamDef>, params: serde_json::Value }
//! impl HasParams for Call {
//!     fn params(&self) -> &serde_json::Value { &self.params }
//!     fn param_defs(&self) -> &[ParamDef] { &self.defs }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     // Scripts only ever see parameters that match their definition.
//!     .layer(ValidateLayer::params())
//!     .service(service_fn(|_: Call| async { Ok::<_, switchyard_core::BoxError>("ran") }));
//! let call = Call { defs: vec![ParamDef::required("tank", Type::String)], params: serde_json::json!({"tank": 7}) };
//! let err = svc.oneshot(call).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<Invalid>().unwrap().to_string(), "params.tank: expected String, found Integer 7");
//! # }
//! ```

use futures::future::{Either, Ready, ready};
use std::task::{Context, Poll};
use switchyard_core::BoxError;
use switchyard_core::types::{ParamDef, ValidationError, validate_params};
use tower_layer::Layer;
use tower_service::Service;

/// The request failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub ValidationError);

/// The extension point: how a request is checked.
pub trait ValidateRequest<R> {
    /// `Err` refuses the request.
    fn validate(&self, request: &R) -> Result<(), ValidationError>;
}

/// A request that carries its parameters and their definitions.
pub trait HasParams {
    /// The parameters (a JSON object).
    fn params(&self) -> &serde_json::Value;
    /// Their definitions.
    fn param_defs(&self) -> &[ParamDef];
}

/// Validates [`HasParams`] requests against their own definitions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParamsSchema;

impl<R: HasParams> ValidateRequest<R> for ParamsSchema {
    fn validate(&self, request: &R) -> Result<(), ValidationError> {
        validate_params(request.param_defs(), request.params())
    }
}

/// Refuses invalid requests.
#[derive(Debug, Clone)]
pub struct Validate<S, V> {
    inner: S,
    validator: V,
}

impl<S, V> Validate<S, V> {
    /// Wraps `inner`.
    pub fn new(inner: S, validator: V) -> Self {
        Validate { inner, validator }
    }
}

/// Applies [`Validate`].
#[derive(Debug, Clone)]
pub struct ValidateLayer<V> {
    validator: V,
}

impl ValidateLayer<ParamsSchema> {
    /// Validates parameters against the request's own definitions.
    pub fn params() -> Self {
        ValidateLayer {
            validator: ParamsSchema,
        }
    }
}

impl<V> ValidateLayer<V> {
    /// Validates with `validator`.
    pub fn new(validator: V) -> Self {
        ValidateLayer { validator }
    }
}

impl<S, V: Clone> Layer<S> for ValidateLayer<V> {
    type Service = Validate<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        Validate::new(inner, self.validator.clone())
    }
}

impl<S, V, R> Service<R> for Validate<S, V>
where
    S: Service<R, Error = BoxError>,
    V: ValidateRequest<R>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<S::Future, Ready<Result<S::Response, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match self.validator.validate(&request) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(e) => Either::Right(ready(Err(Invalid(e).into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_core::types::Type;
    use tower_test::{assert_request_eq, mock};

    #[derive(Debug, Clone, PartialEq)]
    struct Call {
        defs: Vec<ParamDef>,
        params: serde_json::Value,
    }

    impl HasParams for Call {
        fn params(&self) -> &serde_json::Value {
            &self.params
        }
        fn param_defs(&self) -> &[ParamDef] {
            &self.defs
        }
    }

    fn call(params: serde_json::Value) -> Call {
        Call {
            defs: vec![
                ParamDef::required("id", Type::Integer),
                ParamDef::optional("note", Type::String),
            ],
            params,
        }
    }

    #[tokio::test]
    async fn valid_requests_reach_the_inner_service_unchanged() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Call, &'static str, _>(ValidateLayer::params());
        handle.allow(1);
        assert!(svc.poll_ready().is_ready());
        let response = svc.call(call(json!({"id": 1})));
        assert_request_eq!(handle, call(json!({"id": 1}))).send_response("ok");
        assert_eq!(response.await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn invalid_requests_never_reach_it() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Call, &'static str, _>(ValidateLayer::params());
        handle.allow(5);
        for (params, want) in [
            (
                json!({}),
                "params.id: required parameter of type Integer is missing",
            ),
            (
                json!({"id": "1"}),
                r#"params.id: expected Integer, found String "1""#,
            ),
            (json!({"id": 1, "x": 2}), "params.x: unknown parameter"),
        ] {
            assert!(svc.poll_ready().is_ready());
            let err = svc.call(call(params)).await.unwrap_err();
            assert_eq!(err.downcast_ref::<Invalid>().unwrap().to_string(), want);
        }
        drop(svc);
        assert!(
            handle.next_request().await.is_none(),
            "nothing reached the inner service"
        );
    }

    #[tokio::test]
    async fn not_ready_inner_means_not_ready() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Call, &'static str, _>(ValidateLayer::params());
        handle.allow(0);
        assert!(svc.poll_ready().is_pending());
    }
}
