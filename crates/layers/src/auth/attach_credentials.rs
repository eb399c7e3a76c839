use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use std::task::{Context, Poll};
use switchyard_core::config::Secret;
use tower_layer::Layer;
use tower_service::Service;

/// Credentials for an outbound HTTP peer, prepared once per system.
#[derive(Clone, Default)]
pub struct Credentials {
    header: Option<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.header {
            Some((name, _)) => write!(f, "Credentials({name}: ***)"),
            None => f.write_str("Credentials(none)"),
        }
    }
}

impl Credentials {
    /// No credentials.
    pub fn none() -> Self {
        Credentials::default()
    }

    /// An API key in `header`.
    pub fn api_key(header: &str, key: &Secret) -> Result<Self, String> {
        let name = HeaderName::try_from(header)
            .map_err(|_| format!("`{header}` is not a valid header name"))?;
        Ok(Credentials {
            header: Some((name, sensitive(key.expose())?)),
        })
    }

    /// HTTP Basic.
    pub fn basic(username: &str, password: &Secret) -> Result<Self, String> {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{username}:{}", password.expose()));
        Ok(Credentials {
            header: Some((AUTHORIZATION, sensitive(&format!("Basic {token}"))?)),
        })
    }

    /// A bearer token.
    pub fn bearer(token: &Secret) -> Result<Self, String> {
        Ok(Credentials {
            header: Some((
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", token.expose()))?,
            )),
        })
    }

    /// Puts the credentials into `headers` (for clients that are not a tower stack).
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        if let Some((name, value)) = &self.header {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// A header value marked sensitive, so `Debug` of the request and HTTP/2 indexing
/// never expose it. The error never contains the value.
fn sensitive(value: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        "the credential contains characters not allowed in an HTTP header".to_string()
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Puts credentials on every request (`CD-ESG-3`).
#[derive(Debug, Clone)]
pub struct AttachCredentials<S> {
    inner: S,
    credentials: Credentials,
}

impl<S> AttachCredentials<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, credentials: Credentials) -> Self {
        AttachCredentials { inner, credentials }
    }
}

/// Applies [`AttachCredentials`].
#[derive(Debug, Clone)]
pub struct AttachCredentialsLayer {
    credentials: Credentials,
}

impl AttachCredentialsLayer {
    /// Attaches `credentials`.
    pub fn new(credentials: Credentials) -> Self {
        AttachCredentialsLayer { credentials }
    }
}

impl<S> Layer<S> for AttachCredentialsLayer {
    type Service = AttachCredentials<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttachCredentials::new(inner, self.credentials.clone())
    }
}

impl<S, B> Service<http::Request<B>> for AttachCredentials<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        self.credentials.apply(request.headers_mut());
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_test::mock;

    async fn sent_headers(credentials: Credentials) -> http::HeaderMap {
        let (mut svc, mut handle) =
            mock::spawn_layer::<http::Request<()>, (), _>(AttachCredentialsLayer::new(credentials));
        handle.allow(1);
        assert!(svc.poll_ready().is_ready());
        let _call = svc.call(http::Request::get("/x").body(()).unwrap());
        let (request, send) = handle.next_request().await.unwrap();
        send.send_response(());
        request.headers().clone()
    }

    #[tokio::test]
    async fn each_kind_of_credential_is_attached_and_marked_sensitive() {
        let h = sent_headers(Credentials::api_key("X-API-Key", &Secret::new("k1")).unwrap()).await;
        assert_eq!(h["x-api-key"], "k1");
        assert!(h["x-api-key"].is_sensitive());
        let h = sent_headers(Credentials::basic("u", &Secret::new("p")).unwrap()).await;
        assert_eq!(h[AUTHORIZATION], "Basic dTpw");
        let h = sent_headers(Credentials::bearer(&Secret::new("t")).unwrap()).await;
        assert_eq!(h[AUTHORIZATION], "Bearer t");
        let h = sent_headers(Credentials::none()).await;
        assert!(h.is_empty());
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let c = Credentials::bearer(&Secret::new("tok-123")).unwrap();
        assert!(!format!("{c:?}").contains("tok-123"));
        let err = Credentials::bearer(&Secret::new("bad\nvalue-123")).unwrap_err();
        assert!(!err.contains("value-123"));
    }
}
