//! OAuth2 client credentials for SMTP (Microsoft 365, `CD-NS-6`): the token is fetched
//! from `{authority}/{tenant}/oauth2/v2.0/token` on first use, cached, refreshed before it
//! expires, and fetched again on demand after the server refuses it. The client secret
//! and the token never appear in logs or errors.

use std::time::Duration;
use switchyard_core::Failure;
use switchyard_core::config::Secret;
use switchyard_core::error::codes;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The longest token lifetime believed from `expires_in`.
const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;

/// A cached access token.
#[derive(Clone)]
struct Token {
    value: Secret,
    /// When to stop using it (a margin before it really expires).
    refresh_at: Instant,
}

/// Fetches and caches access tokens.
pub struct TokenSource {
    endpoint: String,
    client_id: String,
    client_secret: Result<Secret, String>,
    scope: String,
    http: reqwest::Client,
    cached: Mutex<Option<Token>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenSource {
    /// A source for `tenant` at `authority`.
    pub fn new(
        authority: &str,
        tenant: &str,
        client_id: &str,
        client_secret: Result<Secret, String>,
        scope: &str,
        timeout: Duration,
    ) -> TokenSource {
        switchyard_core::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            // Never follow a redirect: credentials must not travel to another origin.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .unwrap_or_else(|_| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default()
            });
        TokenSource {
            endpoint: format!(
                "{}/{}/oauth2/v2.0/token",
                authority.trim_end_matches('/'),
                tenant
            ),
            client_id: client_id.to_string(),
            client_secret,
            scope: scope.to_string(),
            http,
            cached: Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Tokens fetched so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid token: the cached one, or a new one when there is none, it is about to
    /// expire, or `refresh` is set (the server refused the last one). Concurrent callers
    /// share one fetch.
    pub async fn token(&self, refresh: bool) -> Result<Secret, Failure> {
        self.token_until(refresh).await.map(|(token, _)| token)
    }

    /// [`token`](Self::token), with the instant until which it may be used.
    pub async fn token_until(&self, refresh: bool) -> Result<(Secret, Instant), Failure> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached
            .as_ref()
            .filter(|t| !refresh && Instant::now() < t.refresh_at)
        {
            return Ok((token.value.clone(), token.refresh_at));
        }
        let token = self.fetch().await?;
        let result = (token.value.clone(), token.refresh_at);
        *cached = Some(token);
        Ok(result)
    }

    /// Forgets the cached token if it is still `refused` (another caller may already
    /// have replaced it).
    pub async fn invalidate(&self, refused: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|t| &t.value == refused) {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<Token, Failure> {
        let secret = self.client_secret.as_ref().map_err(|e| {
            Failure::permanent(
                codes::AUTH,
                format!("OAuth2 client secret unavailable: {e}"),
            )
        })?;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", secret.expose()),
            ("scope", self.scope.as_str()),
        ];
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| Failure::permanent(codes::AUTH, e.to_string()))?;
        let response = self
            .http
            .post(&self.endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                // reqwest errors name the URL, never the form body.
                let f = switchyard_core::classify::reqwest_error(&e.without_url());
                Failure {
                    message: format!(
                        "OAuth2 token endpoint {} unreachable: {}",
                        self.endpoint, f.message
                    ),
                    ..f
                }
            })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            400 | 401 => {
                return Err(Failure::permanent(
                    codes::AUTH,
                    format!(
                        "the OAuth2 token endpoint refused the client credentials (HTTP {status})"
                    ),
                )
                .with_status(status));
            }
            408 | 429 | 500..=599 => {
                return Err(Failure::transient(
                    codes::AUTH,
                    format!("the OAuth2 token endpoint is unavailable (HTTP {status})"),
                )
                .with_status(status));
            }
            _ => {
                return Err(Failure::permanent(
                    codes::AUTH,
                    format!("the OAuth2 token endpoint answered HTTP {status}"),
                )
                .with_status(status));
            }
        }
        let token: TokenResponse = response.json().await.map_err(|_| {
            Failure::transient(
                codes::AUTH,
                "the OAuth2 token endpoint sent an unreadable answer",
            )
        })?;
        // A token endpoint's `expires_in` is trusted up to a day (no overflow from a
        // huge value; a day-old token is renewed anyway).
        let lifetime = Duration::from_secs(
            token
                .expires_in
                .unwrap_or(3600)
                .min(MAX_TOKEN_LIFETIME_SECS),
        );
        // Renew before it lapses: a minute early, or a fifth of a short lifetime.
        let margin = Duration::from_secs(60).min(lifetime / 5);
        tracing::debug!(lifetime = ?lifetime, "fetched an OAuth2 token for SMTP");
        Ok(Token {
            value: Secret::new(token.access_token),
            refresh_at: Instant::now() + lifetime - margin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token endpoint that claims `expires_in` near `u64::MAX`: believed for a day at
    /// most, no overflow.
    #[tokio::test]
    async fn an_absurd_expires_in_is_capped_at_a_day() {
        let app = axum::Router::new().fallback(|| async {
            axum::Json(serde_json::json!({
                "access_token": "tok-1",
                "token_type": "Bearer",
                "expires_in": u64::MAX
            }))
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let source = TokenSource::new(
            &format!("http://{addr}"),
            "tenant",
            "client",
            Ok(Secret::new("client-secret")),
            "scope",
            Duration::from_secs(5),
        );
        let (token, until) = source.token_until(false).await.unwrap();
        assert_eq!(token.expose(), "tok-1");
        let lifetime = until - Instant::now();
        assert!(
            lifetime <= Duration::from_secs(MAX_TOKEN_LIFETIME_SECS),
            "{lifetime:?}"
        );
        assert!(lifetime > Duration::from_secs(MAX_TOKEN_LIFETIME_SECS - 120));
    }
}
