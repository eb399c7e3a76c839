use super::error::{Forbidden, Unauthorized, UnknownTarget};
use super::key_store::{Authorization, KeyStore, Principal};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use switchyard_core::BoxError;
use tower_layer::Layer;
use tower_service::Service;

/// What [`RequireApiKey`] needs from a request.
pub trait ApiKeyRequest {
    /// The presented key, if any.
    fn api_key(&self) -> Option<&str>;
    /// What is being called (the method name).
    fn target(&self) -> &str;
    /// Records who the request was authenticated as.
    fn set_principal(&mut self, principal: Principal);
}

/// Plain HTTP requests: the key is the `X-API-Key` header, the target the last path
/// segment, and the principal goes into the request's extensions.
impl<B> ApiKeyRequest for http::Request<B> {
    fn api_key(&self) -> Option<&str> {
        self.headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
    }

    fn target(&self) -> &str {
        self.uri().path().rsplit('/').next().unwrap_or("")
    }

    fn set_principal(&mut self, principal: Principal) {
        self.extensions_mut().insert(principal);
    }
}

/// Refuses requests without an enabled key approved for their target.
#[derive(Debug, Clone)]
pub struct RequireApiKey<S, K> {
    inner: S,
    keys: K,
}

impl<S, K> RequireApiKey<S, K> {
    /// Wraps `inner`, checking keys against `keys`.
    pub fn new(inner: S, keys: K) -> Self {
        RequireApiKey { inner, keys }
    }
}

/// Applies [`RequireApiKey`].
#[derive(Debug, Clone)]
pub struct RequireApiKeyLayer<K> {
    keys: K,
}

impl<K> RequireApiKeyLayer<K> {
    /// Checks keys against `keys`.
    pub fn new(keys: K) -> Self {
        RequireApiKeyLayer { keys }
    }
}

impl<S, K: Clone> Layer<S> for RequireApiKeyLayer<K> {
    type Service = RequireApiKey<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireApiKey::new(inner, self.keys.clone())
    }
}

impl<S, K, R> Service<R> for RequireApiKey<S, K>
where
    S: Service<R, Error = BoxError>,
    K: KeyStore,
    R: ApiKeyRequest,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: R) -> Self::Future {
        let Some(principal) = request
            .api_key()
            .and_then(|key| self.keys.authenticate(key))
        else {
            return ResponseFuture::refused(Unauthorized.into());
        };
        match self.keys.authorize(&principal, request.target()) {
            Authorization::Allowed => {}
            Authorization::UnknownTarget => {
                return ResponseFuture::refused(
                    UnknownTarget {
                        target: request.target().to_string(),
                    }
                    .into(),
                );
            }
            Authorization::Denied => {
                return ResponseFuture::refused(
                    Forbidden {
                        target: request.target().to_string(),
                    }
                    .into(),
                );
            }
        }
        request.set_principal(principal);
        ResponseFuture::called(self.inner.call(request))
    }
}

pin_project! {
    /// Response future of [`RequireApiKey`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Refused { error: Option<BoxError> },
    }
}

impl<F> ResponseFuture<F> {
    fn called(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Called { future },
        }
    }

    fn refused(error: BoxError) -> Self {
        ResponseFuture {
            kind: Kind::Refused { error: Some(error) },
        }
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => future.poll(cx),
            KindProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "RequireApiKey future polled after completion".into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{StaticKeyStore, hash_key};
    use std::sync::Arc;
    use tower_test::mock;

    type Req = http::Request<&'static str>;

    fn store() -> Arc<StaticKeyStore> {
        let mut keys = StaticKeyStore::default();
        keys.add_key("mes", &hash_key("good"), true).unwrap();
        keys.add_key("off", &hash_key("disabled"), false).unwrap();
        keys.add_key("other", &hash_key("other"), true).unwrap();
        keys.approve("M", "mes");
        Arc::new(keys)
    }

    fn req(key: Option<&str>, target: &str) -> Req {
        let mut b = http::Request::post(format!("/api/{target}"));
        if let Some(k) = key {
            b = b.header("X-API-Key", k);
        }
        b.body("body").unwrap()
    }

    #[tokio::test]
    async fn check_order_and_markers() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Req, &'static str, _>(RequireApiKeyLayer::new(store()));
        handle.allow(10);
        assert!(svc.poll_ready().is_ready());
        // 401 before anything about the method is revealed.
        for key in [None, Some("bad"), Some("disabled")] {
            let err = svc.call(req(key, "Nope")).await.unwrap_err();
            assert!(err.is::<Unauthorized>(), "{key:?}: {err}");
        }
        let err = svc.call(req(Some("other"), "Nope")).await.unwrap_err();
        assert!(err.is::<UnknownTarget>(), "{err}");
        let err = svc.call(req(Some("other"), "M")).await.unwrap_err();
        assert!(err.is::<Forbidden>(), "{err}");

        let call = svc.call(req(Some("good"), "M"));
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(
            request.extensions().get::<Principal>().unwrap().key_name,
            "mes"
        );
        send.send_response("ok");
        assert_eq!(call.await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn readiness_is_the_inner_services() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Req, &'static str, _>(RequireApiKeyLayer::new(store()));
        handle.allow(0);
        assert!(svc.poll_ready().is_pending());
        handle.allow(1);
        assert!(svc.poll_ready().is_ready());
        let call = svc.call(req(Some("good"), "M"));
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.uri().path(), "/api/M");
        send.send_response("done");
        assert_eq!(call.await.unwrap(), "done");
    }

    #[tokio::test]
    async fn inner_errors_pass_through() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Req, &'static str, _>(RequireApiKeyLayer::new(store()));
        handle.allow(1);
        assert!(svc.poll_ready().is_ready());
        let call = svc.call(req(Some("good"), "M"));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error("inner broke");
        assert_eq!(call.await.unwrap_err().to_string(), "inner broke");
    }
}
