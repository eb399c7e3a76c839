//! Console sessions: the admin token is exchanged once for a random session id kept in a
//! cookie (`HttpOnly`, `SameSite=Strict`, `Path=/ui`, 8 hours); the table lives in
//! memory, so a restart of central logs everyone out. Each session has its own CSRF
//! token, which every state-changing form carries in a hidden field and which
//! [`require`] checks before any handler runs.
//!
//! A session remembers a hash of the admin token it was opened with: changing
//! `central.admin_token` (and reloading) ends every session opened with the old one.

use super::Console;
use super::form::Fields;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use switchyard_core::config::Secret;

/// Name of the session cookie.
pub(crate) const COOKIE: &str = "sy_session";

/// How long a session lasts after login.
pub(crate) const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Sessions kept at most; a login beyond that ends the oldest one.
const MAX_SESSIONS: usize = 256;

/// The largest form the console accepts (a selection of a few thousand messages).
const MAX_FORM: usize = 512 * 1024;

/// Name of the hidden form field with the CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// What a handler knows about the operator's session.
#[derive(Clone)]
pub(crate) struct Session {
    /// The token every state-changing form must carry.
    pub(crate) csrf: String,
    id: String,
    token_hash: [u8; 32],
    expires: Instant,
}

/// Never prints the id or the CSRF token.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// The in-memory session table.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

/// A random 256-bit value, URL-safe.
fn random_token() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &Secret) -> [u8; 32] {
    Sha256::digest(token.expose().as_bytes()).into()
}

/// Whether `presented` is the admin token (constant time over the hashes).
pub(crate) fn is_admin_token(presented: &str, expected: &Secret) -> bool {
    let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    bool::from(presented.ct_eq(&token_hash(expected)))
}

impl Sessions {
    /// Opens a session for an operator who presented `token`.
    pub(crate) fn open(&self, token: &Secret) -> Session {
        let session = Session {
            csrf: random_token(),
            id: random_token(),
            token_hash: token_hash(token),
            expires: Instant::now() + LIFETIME,
        };
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        table.retain(|_, s| s.expires > now);
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table
                .values()
                .min_by_key(|s| s.expires)
                .map(|s| s.id.clone())
        {
            table.remove(&oldest);
        }
        table.insert(session.id.clone(), session.clone());
        session
    }

    /// The live session with this id, opened with the current admin token.
    pub(crate) fn find(&self, id: &str, token: &Secret) -> Option<Session> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let session = table.get(id)?.clone();
        let current = token_hash(token);
        if session.expires <= Instant::now() || !bool::from(session.token_hash.ct_eq(&current)) {
            table.remove(id);
            return None;
        }
        Some(session)
    }

    /// Ends a session.
    pub(crate) fn close(&self, session: &Session) {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session.id);
    }
}

impl Session {
    /// Whether a submitted form carries this session's CSRF token.
    pub(crate) fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(self.csrf.as_bytes())))
    }

    /// The `Set-Cookie` value that stores this session in the browser.
    pub(crate) fn cookie(&self) -> HeaderValue {
        let value = format!(
            "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
            self.id,
            LIFETIME.as_secs()
        );
        // Base64url characters and fixed text only: always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn expired_cookie() -> HeaderValue {
    HeaderValue::from_static("sy_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session id the browser sent, if any.
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The session of a request, if it has a live one.
pub(crate) fn current(console: &Console, headers: &HeaderMap) -> Option<Session> {
    let token = console.central.admin_token();
    let token = token.as_ref().as_ref()?;
    console.sessions.find(cookie_value(headers)?, token)
}

/// Every protected `/ui` route: no live session → `303` to the login page; a POST
/// whose form lacks the session's CSRF token → `403`. Handlers find the [`Session`]
/// in the request's extensions and a POST's form as [`Fields`].
pub(crate) async fn require(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(session) = current(&console, request.headers()) else {
        return Redirect::to("/ui/login").into_response();
    };
    let (mut parts, body) = request.into_parts();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return super::layout::error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some(&session),
                    "The form is too large.",
                );
            }
        };
        let fields = Fields::parse(&bytes);
        if !session.csrf_matches(fields.get(CSRF_FIELD)) {
            return super::layout::error_page(
                StatusCode::FORBIDDEN,
                Some(&session),
                "The form's security token is missing or out of date. Go back, reload the page and try again.",
            );
        }
        parts.extensions.insert(fields);
        parts.extensions.insert(session);
        return next.run(Request::from_parts(parts, Body::empty())).await;
    }
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret {
        Secret::new(text.to_string())
    }

    #[test]
    fn a_session_needs_its_id_and_the_token_it_was_opened_with() {
        let sessions = Sessions::default();
        let token = secret("admin-token-1");
        let session = sessions.open(&token);
        assert!(sessions.find(&session.id, &token).is_some());
        assert!(sessions.find("guessed", &token).is_none());
        // A new admin token ends the sessions of the old one.
        assert!(
            sessions
                .find(&session.id, &secret("admin-token-2"))
                .is_none()
        );
        assert!(sessions.find(&session.id, &token).is_none());
    }

    #[test]
    fn closed_and_expired_sessions_are_gone() {
        let sessions = Sessions::default();
        let token = secret("admin-token-1");
        let session = sessions.open(&token);
        sessions.close(&session);
        assert!(sessions.find(&session.id, &token).is_none());
        let mut old = sessions.open(&token);
        old.expires = Instant::now() - Duration::from_secs(1);
        sessions
            .table
            .lock()
            .unwrap()
            .insert(old.id.clone(), old.clone());
        assert!(sessions.find(&old.id, &token).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let sessions = Sessions::default();
        let token = secret("admin-token-1");
        let first = sessions.open(&token);
        for _ in 0..MAX_SESSIONS {
            sessions.open(&token);
        }
        assert_eq!(sessions.table.lock().unwrap().len(), MAX_SESSIONS);
        assert!(sessions.find(&first.id, &token).is_none());
    }

    #[test]
    fn csrf_and_cookie() {
        let sessions = Sessions::default();
        let session = sessions.open(&secret("admin-token-1"));
        assert!(session.csrf_matches(Some(&session.csrf.clone())));
        assert!(!session.csrf_matches(None));
        assert!(!session.csrf_matches(Some("")));
        assert!(!session.csrf_matches(Some(&sessions.open(&secret("x")).csrf)));
        let printed = format!("{session:?}");
        assert!(!printed.contains(&session.csrf) && !printed.contains(&session.id));
        let cookie = session.cookie();
        let cookie = cookie.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={}; c=d", session.id)).unwrap(),
        );
        assert_eq!(cookie_value(&headers), Some(session.id.as_str()));
        assert!(is_admin_token("admin-token-1", &secret("admin-token-1")));
        assert!(!is_admin_token("admin-token-", &secret("admin-token-1")));
    }
}
