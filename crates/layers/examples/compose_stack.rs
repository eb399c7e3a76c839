//! Compose your own stack: a webhook of your own wrapped in switchyard's layers.
//!
//! ```sh
//! cargo run -p switchyard-layers --example compose_stack
//! ```
//!
//! The webhook below stands in for any outbound service of yours (an MQTT publish, a
//! ticket system, a historian): it refuses requests without its key and answers
//! `503 Service Unavailable` to the first two deliveries. The stack around it, top to
//! bottom:
//!
//! ```text
//! validate ─▶ store-and-forward ─▶ classify ─▶ deadline ─▶ (to HTTP) ─▶ credentials ─▶ webhook
//! ```
//!
//! A call with bad parameters is refused before anything is stored; a 503 is transient,
//! so the event is kept on disk (fjall) and the forwarder delivers it later with the
//! same id; a 4xx is permanent and comes straight back.

use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use switchyard_core::config::Secret;
use switchyard_core::types::{ParamDef, Type};
use switchyard_core::{BoxError, Deadline, Failure, MessageId, RetryPolicy};
use switchyard_layers::auth::{AttachCredentialsLayer, Credentials};
use switchyard_layers::classify::{ClassifyLayer, HttpStatus};
use switchyard_layers::deadline::{EnforceDeadlineLayer, HasDeadline};
use switchyard_layers::store_forward::{
    Category, Delivery, FjallOutbox, Forwardable, Forwarder, ForwarderOptions, NewMessage,
    OutboxOptions, StoreForwardLayer, StoredMessage,
};
use switchyard_layers::validate::{HasParams, ValidateLayer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// One event for the webhook: what your code hands to the stack.
#[derive(Clone, Debug)]
struct Event {
    id: MessageId,
    params: Value,
    defs: Arc<Vec<ParamDef>>,
    deadline: Option<Deadline>,
}

impl HasParams for Event {
    fn params(&self) -> &Value {
        &self.params
    }
    fn param_defs(&self) -> &[ParamDef] {
        &self.defs
    }
}

impl HasDeadline for Event {
    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(2))
    }
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}

impl Forwardable for Event {
    fn to_message(self, failure: &Failure) -> NewMessage {
        let retry = RetryPolicy::new(5, Duration::from_millis(300));
        NewMessage {
            id: self.id,
            category: Category::External,
            target: "webhook".into(),
            payload: self.params,
            retry,
            first_delay: retry.delay(failure.retry_after),
            last_error: Some(failure.message.clone()),
        }
    }
}

/// The event as the HTTP request the webhook takes (the message id travels as
/// `Idempotency-Key`, the same on every attempt).
fn to_http(event: Event) -> Request<Vec<u8>> {
    Request::post("http://webhook.example/events")
        .header("idempotency-key", event.id.to_string())
        .header("content-type", "application/json")
        .body(event.params.to_string().into_bytes())
        .expect("a static URI and valid header values")
}

/// The stack below store-and-forward: the path of the first attempt and of every
/// retry. Built once; cloned per request.
fn below_store_forward<W>(
    webhook: W,
    key: &Secret,
) -> impl Service<Event, Response = Response<()>, Error = BoxError, Future: Send> + Clone + Send + 'static
where
    W: Service<Request<Vec<u8>>, Response = Response<()>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    W::Future: Send + 'static,
{
    ServiceBuilder::new()
        // Store-and-forward above decides by class: 5xx/408/429 and timeouts are
        // transient, other 4xx permanent.
        .layer(ClassifyLayer::new(HttpStatus))
        // No attempt outlives its timeout (2 s) or the caller's budget.
        .layer(EnforceDeadlineLayer::new(None))
        // Your request type becomes HTTP here.
        .map_request(to_http)
        // The webhook's key on every request, never logged.
        .layer(AttachCredentialsLayer::new(
            Credentials::api_key("x-webhook-key", key).expect("a valid header name"),
        ))
        .service(webhook)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // --- your service: a webhook that is busy for its first two deliveries ---
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let webhook = service_fn(move |request: Request<Vec<u8>>| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let status = if request.headers().get("x-webhook-key").is_none() {
                StatusCode::UNAUTHORIZED
            } else if request.body().is_empty() || n < 2 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            println!(
                "webhook: attempt {} for {} -> {}",
                n + 1,
                request.headers()["idempotency-key"].to_str().unwrap_or("?"),
                status
            );
            Ok::<_, BoxError>(Response::builder().status(status).body(())?)
        }
    });

    // --- the stack, built once ---
    let dir = tempfile::tempdir()?;
    let outbox = FjallOutbox::open(
        dir.path(),
        OutboxOptions {
            min_free_disk: 0,
            ..OutboxOptions::default()
        },
    )?;
    let key = Secret::new("webhook-key-123");
    let inner = below_store_forward(webhook, &key);
    let stack = ServiceBuilder::new()
        // Nothing is stored or sent that does not match the event's definition.
        .layer(ValidateLayer::params())
        // A transient failure is kept on disk and retried; the caller does not wait.
        .layer(StoreForwardLayer::new(outbox.clone()))
        .service(inner.clone());

    // The forwarder retries buffered events through the same inner stack.
    let retry = ServiceBuilder::new()
        .map_request(|message: StoredMessage| Event {
            id: message.id,
            params: message.payload,
            defs: Arc::new(Vec::new()),
            deadline: None,
        })
        .map_response(|_| ())
        .service(inner);
    let _forwarder = Forwarder::new(
        outbox.clone(),
        retry,
        ForwarderOptions {
            idle_poll: Duration::from_millis(100),
            ..ForwarderOptions::default()
        },
    )
    .spawn();

    let defs = Arc::new(vec![
        ParamDef::required("tank", Type::String),
        ParamDef::required("level", Type::Float),
    ]);
    let event = |params: Value| Event {
        id: MessageId::new(),
        params,
        defs: defs.clone(),
        deadline: Some(Deadline::after(Duration::from_secs(5))),
    };

    // 1. Bad parameters: refused, nothing stored.
    let mut svc = stack.clone();
    match svc
        .ready()
        .await?
        .call(event(json!({ "tank": "T-1", "level": "high" })))
        .await
    {
        Ok(_) => println!("bad parameters: sent (unexpected)"),
        Err(e) => println!("bad parameters: refused: {e}"),
    }

    // 2. The webhook is busy: buffered, the caller goes on.
    let mut svc = stack.clone();
    match svc
        .ready()
        .await?
        .call(event(json!({ "tank": "T-1", "level": 92.5 })))
        .await?
    {
        Delivery::Delivered(_) => println!("event: delivered at once"),
        Delivery::Buffered { id } => println!("event: buffered as {id} (the webhook said 503)"),
    }

    // 3. The forwarder delivers it once the webhook recovers.
    while outbox.pending_total() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "forwarder: nothing pending after {} webhook attempts",
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}
