//! Login with the admin token, and logout.

use super::Console;
use super::form::Fields;
use super::layout::{self, Nav};
use super::session::{self, Session};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use maud::html;
use std::sync::Arc;

const DISABLED: &str =
    "The console is disabled: set central.admin_token in the configuration and reload.";

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    layout::respond(
        status,
        layout::page(
            "Log in",
            None,
            Nav::Other,
            None,
            html! {
                h1 { "Operator console" }
                @if let Some(problem) = problem {
                    p.error { (problem) }
                }
                form.card method="post" action="/ui/login" {
                    label {
                        "Admin token (central.admin_token)"
                        input type="password" name="token" autocomplete="current-password" required autofocus;
                    }
                    p { button type="submit" { "Log in" } }
                }
            },
        ),
    )
}

/// `GET /ui/login`.
pub(crate) async fn form(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if console.central.admin_token().is_none() {
        return login_page(StatusCode::FORBIDDEN, Some(DISABLED));
    }
    if session::current(&console, &headers).is_some() {
        return Redirect::to("/ui").into_response();
    }
    login_page(StatusCode::OK, None)
}

/// `POST /ui/login`: the right token opens a session and goes to the overview.
pub(crate) async fn submit(State(console): State<Arc<Console>>, body: Bytes) -> Response {
    let token = console.central.admin_token();
    let Some(expected) = token.as_ref() else {
        return login_page(StatusCode::FORBIDDEN, Some(DISABLED));
    };
    let fields = Fields::parse(&body);
    let presented = fields.get("token").unwrap_or("");
    if !session::is_admin_token(presented, expected) {
        tracing::warn!("console login refused: wrong admin token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        );
    }
    let session = console.sessions.open(expected);
    tracing::info!("console login");
    let mut response = Redirect::to("/ui").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session.cookie());
    response
}

/// `POST /ui/logout`.
pub(crate) async fn logout(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
) -> Response {
    console.sessions.close(&session);
    let mut response = Redirect::to("/ui/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::expired_cookie());
    response
}
