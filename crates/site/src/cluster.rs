//! The cluster endpoint (SPEC §7): what central calls on a site. Every route requires
//! `Authorization: Bearer <site token>` (compared in constant time); the caller's
//! remaining deadline arrives in `x-switchyard-deadline-ms`. Errors are
//! [`ErrorBody`] JSON carrying the failure's class.

use crate::node::SiteNode;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use switchyard_core::deadline::DEADLINE_HEADER;
use switchyard_core::error::codes;
use switchyard_core::protocol::{
    self, AttributeValues, CallScript, Deployed, Deployment, ErrorBody, GetAttributes, Health,
    ParkedList, ParkedView, QueueCounts, Role, ScriptResult, SetAttributes,
};
use switchyard_core::script::ScriptError;
use switchyard_core::{Deadline, Failure, FailureClass, MessageId};
use switchyard_layers::auth::{Rejection, RequireBearer};
use switchyard_layers::store_forward::{OutboxError, ParkedMessage};

/// The largest deployment a site accepts.
pub const MAX_DEPLOYMENT_BYTES: usize = 64 << 20;

/// The cluster endpoint's routes.
pub fn router(node: Arc<SiteNode>) -> Router {
    // Consensus traffic between the pair's voters, behind the same token.
    let raft = match node.pair() {
        Some(pair) => switchyard_ha::network::routes(pair.raft().clone()),
        None => Router::new(),
    };
    Router::new()
        // A deployment carries every script inline: well past axum's 2 MiB default.
        .route(
            protocol::paths::DEPLOY,
            post(deploy).layer(DefaultBodyLimit::max(MAX_DEPLOYMENT_BYTES)),
        )
        .route(protocol::paths::CALL, post(call))
        .route(protocol::paths::GET_ATTRIBUTES, post(get_attributes))
        .route(protocol::paths::SET_ATTRIBUTES, post(set_attributes))
        .route(protocol::paths::PARKED, get(list_parked))
        .route(protocol::paths::PARKED_RETRY, post(retry_parked))
        .route(protocol::paths::PARKED_DISCARD, post(discard_parked))
        // Only the active node of a pair does the site's work.
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            only_active,
        ))
        .route(protocol::paths::HEALTH, get(health))
        .merge(raft)
        // Only central (and the pair's voters), holding the site token, get past this point.
        .layer(RequireBearer::layer(node.token(), refuse))
        // Metrics and the node's role hold no secrets: read without the token.
        .route("/metrics", get(metrics))
        .route("/health", get(node_health))
        .route("/ready", get(ready))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                codes::NOT_FOUND,
                "no such cluster endpoint",
                None,
            )
        })
        .with_state(node)
}

/// Refuses the site's work on a node that is not active: `503 NOT_ACTIVE`, naming the
/// active node when this one knows it (central then tries the next node).
async fn only_active(
    State(node): State<Arc<SiteNode>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if node.is_active() {
        return next.run(request).await;
    }
    let active = node.active_node();
    let message = match &active {
        Some(name) => format!(
            "node {} is not active; the active node is {name}",
            node.node_name
        ),
        None => format!(
            "node {} is not active and no node of the pair is active now",
            node.node_name
        ),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": message,
            "code": codes::NOT_ACTIVE,
            "class": "transient",
            "active_node": active,
        })),
    )
        .into_response()
}

fn role(node: &SiteNode) -> Role {
    match node.role() {
        switchyard_ha::Role::Active => Role::Active,
        switchyard_ha::Role::Standby => Role::Standby,
        switchyard_ha::Role::Witness => Role::Witness,
    }
}

/// `GET /health` (SPEC §8): every node, without credentials.
async fn node_health(State(node): State<Arc<SiteNode>>) -> Response {
    axum::Json(protocol::NodeHealth {
        status: "ok".into(),
        role: role(&node),
        node: node.node_name.clone(),
        active_node: node.active_node(),
    })
    .into_response()
}

/// `GET /ready` (SPEC §8): 200 on the active node only (what a load balancer checks).
async fn ready(State(node): State<Arc<SiteNode>>) -> Response {
    let status = if node.is_active() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "ready": status == StatusCode::OK, "role": role(&node) })),
    )
        .into_response()
}

/// The answer to a request without the site token.
fn refuse(_: Rejection) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        codes::UNAUTHORIZED,
        "missing or wrong site token",
        None,
    )
}

fn error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    class: Option<FailureClass>,
) -> Response {
    let body = ErrorBody {
        error: message.into(),
        code: code.to_string(),
        class,
        status: None,
    };
    (status, axum::Json(body)).into_response()
}

fn failure_response(failure: &Failure) -> Response {
    let status = match (failure.code.as_str(), failure.class) {
        (codes::NOT_FOUND, _) => StatusCode::NOT_FOUND,
        (codes::TYPE_MISMATCH | codes::INVALID_PARAMS, _) => StatusCode::BAD_REQUEST,
        (_, FailureClass::Transient) => StatusCode::SERVICE_UNAVAILABLE,
        (_, FailureClass::Permanent) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, axum::Json(ErrorBody::from_failure(failure))).into_response()
}

fn script_error_response(what: &str, err: &ScriptError) -> Response {
    match err {
        ScriptError::Timeout { .. } => error(
            StatusCode::GATEWAY_TIMEOUT,
            codes::TIMEOUT,
            format!("{what}: {err}"),
            Some(FailureClass::Transient),
        ),
        ScriptError::Overloaded => error(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::OVERLOADED,
            format!("{what}: {err}"),
            Some(FailureClass::Transient),
        ),
        ScriptError::Failure(f) if f.code == codes::NOT_FOUND => failure_response(f),
        other => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::SCRIPT_ERROR,
            format!("{what}: {other}"),
            Some(FailureClass::Permanent),
        ),
    }
}

/// A protocol message in the request body; one that does not parse is refused with a
/// permanent 400 `BAD_JSON` naming the problem.
struct Wire<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Wire<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        serde_json::from_slice(&body).map(Wire).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                codes::BAD_JSON,
                format!("invalid request body: {e}"),
                Some(FailureClass::Permanent),
            )
        })
    }
}

/// The caller's remaining budget (`x-switchyard-deadline-ms`; none: no deadline). A
/// value that does not parse is refused with 400.
struct CallerDeadline(Option<Deadline>);

impl<S: Send + Sync> FromRequestParts<S> for CallerDeadline {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        match parts.headers.get(DEADLINE_HEADER) {
            None => Ok(CallerDeadline(None)),
            Some(value) => Deadline::from_header_value(value.to_str().unwrap_or(""))
                .map(|d| CallerDeadline(Some(d)))
                .map_err(|e| error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e, None)),
        }
    }
}

fn no_deployment(node: &SiteNode) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::NO_DEPLOYMENT,
        format!("site {} has no deployment yet", node.name),
        Some(FailureClass::Transient),
    )
}

async fn deploy(State(node): State<Arc<SiteNode>>, Wire(deployment): Wire<Deployment>) -> Response {
    match node.deploy(deployment).await {
        Ok(revision) => axum::Json(Deployed { revision }).into_response(),
        Err(errors) => {
            let message = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            tracing::error!(site = %node.name, errors = %message, "deployment rejected; the previous one stays active");
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::DEPLOYMENT_REJECTED,
                message,
                Some(FailureClass::Permanent),
            )
        }
    }
}

async fn call(
    State(node): State<Arc<SiteNode>>,
    CallerDeadline(deadline): CallerDeadline,
    Wire(request): Wire<CallScript>,
) -> Response {
    let Some(runtime) = node.runtime() else {
        return no_deployment(&node);
    };
    let what = format!("{}/{}", request.instance, request.script);
    match runtime
        .call_script(&request.instance, &request.script, request.params, deadline)
        .await
    {
        Ok(value) => axum::Json(ScriptResult { value }).into_response(),
        Err(e) => script_error_response(&what, &e),
    }
}

async fn get_attributes(
    State(node): State<Arc<SiteNode>>,
    Wire(request): Wire<GetAttributes>,
) -> Response {
    let Some(runtime) = node.runtime() else {
        return no_deployment(&node);
    };
    match runtime.get_attributes(&request.instance, &request.names) {
        Ok(values) => axum::Json(AttributeValues { values }).into_response(),
        Err(f) => failure_response(&f),
    }
}

async fn set_attributes(
    State(node): State<Arc<SiteNode>>,
    Wire(request): Wire<SetAttributes>,
) -> Response {
    let Some(runtime) = node.runtime() else {
        return no_deployment(&node);
    };
    // Storing values touches the disk: not on the async workers.
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let _enter = handle.enter();
        runtime.set_attributes(&request.instance, &request.values)
    })
    .await;
    match result {
        Ok(Ok(())) => axum::Json(serde_json::json!({})).into_response(),
        Ok(Err(f)) => failure_response(&f),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            e.to_string(),
            None,
        ),
    }
}

async fn metrics(State(node): State<Arc<SiteNode>>) -> Response {
    let pool = node.pool();
    metrics::gauge!("switchyard_script_queue", "pool" => format!("site-{}", node.name))
        .set(pool.queued() as f64);
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

async fn health(State(node): State<Arc<SiteNode>>) -> Response {
    let counts = node.outbox().counts();
    let health = Health {
        site: node.name.clone(),
        role: role(&node),
        revision: node.runtime().map(|r| r.deployment.revision.clone()),
        pending: counts.iter().map(|c| c.2.pending).sum(),
        parked: counts.iter().map(|c| c.2.parked).sum(),
        queues: counts
            .iter()
            .filter(|(_, _, n)| n.pending > 0 || n.parked > 0)
            .map(|(category, target, n)| QueueCounts {
                category: category.to_string(),
                target: target.clone(),
                pending: n.pending,
                parked: n.parked,
            })
            .collect(),
        delivered: node.outbox().delivered_total(),
        node: Some(node.node_name.clone()),
        active_node: node.active_node(),
    };
    axum::Json(health).into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// A parked message as operators see it.
pub fn parked_view(p: &ParkedMessage) -> ParkedView {
    let time = |ms: u64| {
        chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    };
    ParkedView {
        id: p.message.id.to_string(),
        category: p.message.category.to_string(),
        target: p.message.target.clone(),
        attempts: p.message.attempts,
        created: time(p.message.created_ms),
        parked: time(p.parked_ms),
        reason: p.reason.clone(),
        payload: p.message.payload.clone(),
    }
}

async fn list_parked(State(node): State<Arc<SiteNode>>, Query(page): Query<PageQuery>) -> Response {
    let after = match page
        .after
        .as_deref()
        .map(str::parse::<MessageId>)
        .transpose()
    {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e, None),
    };
    let limit = page.limit.unwrap_or(50).clamp(1, 1000);
    let outbox = node.outbox().clone();
    match tokio::task::spawn_blocking(move || outbox.list_parked(after, limit)).await {
        Ok(Ok(page)) => axum::Json(ParkedList {
            items: page.items.iter().map(parked_view).collect(),
            next: page.next.map(|id| id.to_string()),
        })
        .into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::BUFFER_REFUSED,
            e.to_string(),
            None,
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            e.to_string(),
            None,
        ),
    }
}

fn outbox_result(result: Result<(), OutboxError>, id: MessageId, action: &str) -> Response {
    match result {
        Ok(()) => axum::Json(serde_json::json!({ "id": id.to_string(), "status": action }))
            .into_response(),
        Err(OutboxError::NotFound(_)) => error(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("no parked message with id {id}"),
            None,
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::BUFFER_REFUSED,
            e.to_string(),
            None,
        ),
    }
}

async fn retry_parked(State(node): State<Arc<SiteNode>>, Path(id): Path<String>) -> Response {
    let id = match id.parse::<MessageId>() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e, None),
    };
    outbox_result(node.outbox().retry_parked(id).await, id, "retried")
}

async fn discard_parked(State(node): State<Arc<SiteNode>>, Path(id): Path<String>) -> Response {
    let id = match id.parse::<MessageId>() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e, None),
    };
    outbox_result(node.outbox().discard_parked(id).await, id, "discarded")
}
