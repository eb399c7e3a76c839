//! The operator console: server-rendered pages under `/ui` on central, for the operator
//! who must see the sites and their queues and put a parked message back without a
//! terminal.
//!
//! | page | what |
//! |---|---|
//! | `/ui` | every site: reachable, role, deployment, queues, the last hour |
//! | `/ui/parked` | parked messages: filter, details, retry, discard, export |
//! | `/ui/failures` | central's failure log: filter by method, status, time, incident |
//! | `/ui/keys` | API keys (enable/disable) and the methods each may call |
//!
//! Login exchanges `central.admin_token` for a session cookie ([`session`]); nothing
//! else under `/ui` answers without one, and every POST carries the session's CSRF token.
//! The admin token is never written into a page or a cookie; payloads are shown with
//! their credentials redacted ([`redact`]).

mod failures;
mod form;
mod keys;
mod layout;
mod login;
mod overview;
mod parked;
mod redact;
mod session;

use crate::central::Central;
use axum::Router;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get, post};
use std::sync::Arc;

/// What the console's pages share: central, the sessions, the sampled history.
#[derive(Debug)]
pub(crate) struct Console {
    central: Arc<Central>,
    sessions: session::Sessions,
    history: overview::History,
}

/// The `/ui` routes (absolute paths, merged into central's router).
pub(crate) fn router(central: Arc<Central>) -> Router<Arc<Central>> {
    let console = Arc::new(Console {
        central,
        sessions: session::Sessions::default(),
        history: overview::History::default(),
    });
    overview::spawn_sampler(&console);
    let protected = Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/", get(overview::page))
        .route("/ui/logout", post(login::logout))
        .route("/ui/parked", get(parked::list))
        .route("/ui/parked/export", get(parked::export))
        .route("/ui/parked/confirm", post(parked::confirm))
        .route("/ui/parked/apply", post(parked::apply))
        .route("/ui/parked/{site}/{id}", get(parked::detail))
        .route("/ui/failures", get(failures::page))
        .route("/ui/keys", get(keys::page))
        .route("/ui/keys/{name}/openapi.json", get(keys::openapi))
        .route("/ui/keys/{name}/{action}", post(keys::set_enabled))
        .route("/ui/{*rest}", any(not_found))
        // Nothing above runs without a live session, nor a POST without its CSRF token.
        .route_layer(middleware::from_fn_with_state(
            console.clone(),
            session::require,
        ));
    Router::new()
        .route("/ui/login", get(login::form).post(login::submit))
        .merge(protected)
        .with_state(console)
}

async fn not_found(Extension(session): Extension<session::Session>) -> Response {
    layout::error_page(
        StatusCode::NOT_FOUND,
        Some(&session),
        "There is no such page.",
    )
}
