//! Bearer tokens between switchyard's own processes (central → a site's cluster
//! endpoint, an operator → central's `/admin/*`). One pair for both ends: the caller
//! attaches [`Credentials::bearer`](super::Credentials::bearer), the endpoint verifies
//! with [`RequireBearer`] (a tower-http `ValidateRequest`), and [`bearer_matches`] is
//! the one place a presented token is compared with the configured one.
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_core::config::Secret;
//! use switchyard_layers::auth::{Rejection, RequireBearer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! fn refuse(why: Rejection) -> http::Response<String> {
//!     let status = match why {
//!         Rejection::Disabled => http::StatusCode::FORBIDDEN,
//!         Rejection::WrongToken => http::StatusCode::UNAUTHORIZED,
//!     };
//!     http::Response::builder().status(status).body(why.to_string()).unwrap()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let token = Arc::new(Some(Secret::new("site-token-0123")));
//! let endpoint = ServiceBuilder::new()
//!     // Only a caller holding the site token gets past this point.
//!     .layer(RequireBearer::layer(token, refuse))
//!     .service(service_fn(|_: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new("deployed".to_string()))
//!     }));
//! let anonymous = http::Request::new(());
//! let answer = endpoint.clone().oneshot(anonymous).await.unwrap();
//! assert_eq!(answer.status(), http::StatusCode::UNAUTHORIZED);
//! let central = http::Request::builder()
//!     .header("authorization", "Bearer site-token-0123")
//!     .body(())
//!     .unwrap();
//! assert_eq!(endpoint.oneshot(central).await.unwrap().into_body(), "deployed");
//! # }
//! ```

use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use switchyard_core::config::Secret;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

/// Where an endpoint finds the token it expects: fixed at start, or re-read on every
/// request when a reload may change it. `None` means the endpoints are disabled.
pub trait ExpectedToken {
    /// The token requests must carry now.
    fn expected(&self) -> Arc<Option<Secret>>;
}

impl ExpectedToken for Arc<Option<Secret>> {
    fn expected(&self) -> Arc<Option<Secret>> {
        self.clone()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No token is configured: the endpoints are off.
    #[error("no token is configured: these endpoints are disabled")]
    Disabled,
    /// The request carries no token, or another one.
    #[error("missing or wrong token")]
    WrongToken,
}

/// Verifies `Authorization: Bearer …` against the expected token; a refused request
/// gets the response `reject` builds (so each endpoint keeps its own error body).
pub struct RequireBearer<T, B> {
    token: T,
    reject: fn(Rejection) -> http::Response<B>,
}

impl<T: Clone, B> Clone for RequireBearer<T, B> {
    fn clone(&self) -> Self {
        RequireBearer {
            token: self.token.clone(),
            reject: self.reject,
        }
    }
}

impl<T, B> std::fmt::Debug for RequireBearer<T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequireBearer(***)")
    }
}

impl<T: ExpectedToken, B> RequireBearer<T, B> {
    /// The layer: tower-http's `ValidateRequestHeaderLayer` with this check.
    pub fn layer(
        token: T,
        reject: fn(Rejection) -> http::Response<B>,
    ) -> ValidateRequestHeaderLayer<Self> {
        ValidateRequestHeaderLayer::custom(RequireBearer { token, reject })
    }
}

impl<T: ExpectedToken, B, ReqBody> ValidateRequest<ReqBody> for RequireBearer<T, B> {
    type ResponseBody = B;

    fn validate(&mut self, request: &mut http::Request<ReqBody>) -> Result<(), http::Response<B>> {
        match &*self.token.expected() {
            None => Err((self.reject)(Rejection::Disabled)),
            Some(expected) if bearer_matches(request.headers(), expected) => Ok(()),
            Some(_) => Err((self.reject)(Rejection::WrongToken)),
        }
    }
}

/// Whether `headers` carry `Authorization: Bearer <expected>`. A missing or malformed
/// header never matches, whatever the configured token is; the comparison is on
/// SHA-256 digests in constant time, so neither the token nor its length leaks
/// through timing.
///
/// ```
/// use switchyard_core::config::Secret;
/// use switchyard_layers::auth::bearer_matches;
///
/// let expected = Secret::new("site-token-0123");
/// let mut headers = http::HeaderMap::new();
/// assert!(!bearer_matches(&headers, &expected));
/// headers.insert("authorization", "Bearer site-token-0123".parse().unwrap());
/// assert!(bearer_matches(&headers, &expected));
/// ```
pub fn bearer_matches(headers: &http::HeaderMap, expected: &Secret) -> bool {
    let Some(presented) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    if expected.expose().is_empty() {
        // The config refuses empty tokens; never let one open anything regardless.
        return false;
    }
    let a: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(expected.expose().as_bytes()).into();
    bool::from(a.ct_eq(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn only_the_exact_token_matches() {
        let expected = Secret::new("admin-token-42");
        assert!(bearer_matches(&with("Bearer admin-token-42"), &expected));
        for wrong in [
            "Bearer admin-token-4",
            "Bearer admin-token-420",
            "bearer admin-token-42",
            "admin-token-42",
            "Bearer ",
        ] {
            assert!(!bearer_matches(&with(wrong), &expected), "{wrong}");
        }
        assert!(!bearer_matches(&http::HeaderMap::new(), &expected));
    }

    #[test]
    fn an_empty_configured_token_matches_nothing() {
        let empty = Secret::new("");
        assert!(!bearer_matches(&http::HeaderMap::new(), &empty));
        assert!(!bearer_matches(&with("Bearer "), &empty));
    }
}
