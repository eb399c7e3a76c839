//! Central's HTTP surface: `/api/{method}`, `/health`, `/ready`, `/metrics`,
//! `/openapi.json`, the admin endpoints and the operator console (`/ui`).

use crate::central::{Central, error_body};
use crate::{admin, ui};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::json;
use std::sync::Arc;
use switchyard_core::error::codes;
use switchyard_layers::auth::KeyStore;

/// The whole router (tests drive it with `oneshot`).
pub fn app(central: Arc<Central>) -> Router {
    Router::new()
        .route("/api/{method}", any(api))
        .route("/api", any(api_without_method))
        .route("/api/", any(api_without_method))
        .route(
            "/health",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .nest("/admin", admin::router(central.clone()))
        // The operator console: its own login, sessions and CSRF checks.
        .merge(ui::router(central.clone()))
        .fallback(|| async {
            error_body(
                StatusCode::NOT_FOUND,
                codes::NOT_FOUND,
                "no such endpoint",
                None,
            )
        })
        .with_state(central)
}

async fn api(State(central): State<Arc<Central>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // Decoded by hand: any byte sequence names a method (unknown ones get 404 with the
    // usual JSON body, never a framework rejection).
    let raw = parts.uri.path().strip_prefix("/api/").unwrap_or("");
    let method = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    central
        .handle_api(method, parts.method, parts.headers, body)
        .await
}

async fn api_without_method(State(central): State<Arc<Central>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    central
        .handle_api(String::new(), parts.method, parts.headers, Body::new(body))
        .await
}

async fn ready(State(central): State<Arc<Central>>) -> Response {
    if central.is_active() {
        axum::Json(json!({ "status": "active" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "standby", "code": codes::NOT_ACTIVE })),
        )
            .into_response()
    }
}

async fn metrics(State(central): State<Arc<Central>>) -> Response {
    let pool = central.pool();
    metrics::gauge!("switchyard_script_queue", "pool" => "central").set(pool.queued() as f64);
    // The failure log lives in central's data dir.
    if let Some(data_dir) = central.failure_log().path().parent() {
        switchyard_core::telemetry::record_disk_free(data_dir);
    }
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        switchyard_core::telemetry::handle().render(),
    )
        .into_response()
}

async fn openapi(State(central): State<Arc<Central>>, request: Request) -> Response {
    let registry = central.registry();
    let principal = request
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .and_then(|k| registry.authenticate(k));
    match principal {
        Some(principal) => {
            axum::Json(crate::openapi::document(&registry, &principal)).into_response()
        }
        None => error_body(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "missing, unknown or disabled API key",
            None,
        ),
    }
}
