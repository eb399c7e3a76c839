//! Admin endpoints, protected by `central.admin_token` (`Authorization: Bearer …`);
//! without a configured token they are disabled.
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /admin/reload` | re-read the configuration (keys, methods, definitions) |
//! | `GET /admin/failures?since=…` | the failure log |
//! | `GET /admin/sites` | deployment state per site |
//! | `GET /admin/parked?site=…&after=…&limit=…` | a site's parked messages |
//! | `POST /admin/parked/{site}/{id}/retry` · `…/discard` | act on one |

use crate::central::{Central, error_body};
use crate::failure_log::{FailureLog, parse_since};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::error::codes;
use switchyard_layers::auth::{ExpectedToken, Rejection, RequireBearer};

pub(crate) fn router(central: Arc<Central>) -> Router<Arc<Central>> {
    Router::new()
        .route("/reload", post(reload))
        .route("/failures", get(failures))
        .route("/sites", get(sites))
        .route("/parked", get(parked))
        .route("/parked/{site}/{id}/{action}", post(parked_action))
        // Only an operator holding the admin token gets past this point.
        .layer(RequireBearer::layer(AdminToken(central), refuse))
}

/// The admin token as it is now (a reload may change it).
#[derive(Clone)]
struct AdminToken(Arc<Central>);

impl ExpectedToken for AdminToken {
    fn expected(&self) -> Arc<Option<switchyard_core::config::Secret>> {
        self.0.admin_token()
    }
}

/// The answer to a request the admin token does not open.
fn refuse(why: Rejection) -> Response {
    match why {
        Rejection::Disabled => error_body(
            StatusCode::FORBIDDEN,
            codes::ADMIN_DISABLED,
            "admin endpoints are disabled: set central.admin_token",
            None,
        ),
        Rejection::WrongToken => error_body(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "missing or wrong admin token",
            None,
        ),
    }
}

async fn reload(State(central): State<Arc<Central>>) -> Response {
    match central.reload().await {
        Ok(methods) => axum::Json(serde_json::json!({ "status": "reloaded", "methods": methods }))
            .into_response(),
        Err(e) => error_body(
            StatusCode::BAD_REQUEST,
            codes::CONFIG_INVALID,
            &e.to_string(),
            None,
        ),
    }
}

#[derive(Deserialize)]
struct SinceQuery {
    since: Option<String>,
    limit: Option<usize>,
}

/// Records `/admin/failures` returns by default, and at most.
const FAILURES_PAGE: (usize, usize) = (1_000, 10_000);

async fn failures(State(central): State<Arc<Central>>, Query(q): Query<SinceQuery>) -> Response {
    let since = match q.since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(e) => return error_body(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, &e, None),
    };
    // The newest `limit` records at or after `since`, oldest first: page back with an
    // earlier `since`, forward with the last record's time.
    let limit = q.limit.unwrap_or(FAILURES_PAGE.0).clamp(1, FAILURES_PAGE.1);
    let path = central.failure_log().path().to_path_buf();
    match tokio::task::spawn_blocking(move || FailureLog::read(&path, since)).await {
        Ok(Ok(records)) => {
            let skip = records.len().saturating_sub(limit);
            axum::Json(&records[skip..]).into_response()
        }
        Ok(Err(e)) => error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            &e.to_string(),
            None,
        ),
        Err(e) => error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            &e.to_string(),
            None,
        ),
    }
}

async fn sites(State(central): State<Arc<Central>>) -> Response {
    axum::Json(central.deployments()).into_response()
}

#[derive(Deserialize)]
struct ParkedQuery {
    site: String,
    after: Option<String>,
    limit: Option<usize>,
}

async fn parked(State(central): State<Arc<Central>>, Query(q): Query<ParkedQuery>) -> Response {
    let registry = central.registry();
    match registry
        .sites
        .parked(
            &q.site,
            q.after.as_deref(),
            q.limit.unwrap_or(50),
            Duration::from_secs(10),
        )
        .await
    {
        Ok(list) => axum::Json(list).into_response(),
        Err(f) => error_body(StatusCode::BAD_GATEWAY, &f.code, &f.message, None),
    }
}

async fn parked_action(
    State(central): State<Arc<Central>>,
    Path((site, id, action)): Path<(String, String, String)>,
) -> Response {
    if action != "retry" && action != "discard" {
        return error_body(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            "use …/retry or …/discard",
            None,
        );
    }
    let registry = central.registry();
    match registry
        .sites
        .parked_action(&site, &id, &action, Duration::from_secs(10))
        .await
    {
        Ok(value) => axum::Json(value).into_response(),
        Err(f) if f.status == Some(404) => {
            error_body(StatusCode::NOT_FOUND, &f.code, &f.message, None)
        }
        Err(f) => error_body(StatusCode::BAD_GATEWAY, &f.code, &f.message, None),
    }
}
