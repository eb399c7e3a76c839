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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, String, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn without_an_admin_token_the_console_is_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(
            &path,
            "[central]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n",
        )
        .unwrap();
        let config = switchyard_core::config::Config::load(&path).unwrap();
        let app = crate::app(crate::Central::start(config).await.unwrap());
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        let (status, location, _) = send(&app, get("/ui")).await;
        assert_eq!(
            (status, location.as_str()),
            (StatusCode::SEE_OTHER, "/ui/login")
        );
        let (status, _, body) = send(&app, get("/ui/login")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("console is disabled"), "{body}");
        let login = Request::post("/ui/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("token=anything-at-all"))
            .unwrap();
        let (status, _, body) = send(&app, login).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("console is disabled"), "{body}");
    }
}
