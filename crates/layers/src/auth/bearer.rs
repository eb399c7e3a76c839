//! Bearer tokens between switchyard's own processes (central → a site's cluster
//! endpoint, an operator → central's `/admin/*`): the one place a presented token is
//! compared with the configured one.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchyard_core::config::Secret;

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
