//! Store-and-forward (SPEC §6): a request that fails *transiently* is persisted in the
//! outbox and answered with [`Delivery::Buffered`]; the caller does not wait for the
//! peer. Permanent failures pass through untouched (they go back to the script). A
//! [`Forwarder`] later drains the outbox through the stack below this layer.
//!
//! ```
//! use switchyard_core::{BoxError, Failure, RetryPolicy, MessageId, error::codes};
//! use switchyard_layers::store_forward::{
//!     Category, Delivery, FjallOutbox, Forwardable, NewMessage, OutboxOptions, StoreForwardLayer,
//! };
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! #[derive(Clone)]
//! struct Email { id: MessageId, to: String }
//!
//! impl Forwardable for Email {
//!     fn to_message(self, failure: &Failure) -> NewMessage {
//!         NewMessage {
//!             id: self.id,
//!             category: Category::Notification,
//!             target: "Operators".into(),
//!             payload: serde_json::json!({ "to": self.to }),
//!             retry: RetryPolicy::default(),
//!             first_delay: RetryPolicy::default().delay(failure.retry_after),
//!             last_error: Some(failure.message.clone()),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let outbox = FjallOutbox::open(dir.path(), OutboxOptions { min_free_disk: 0, ..Default::default() }).unwrap();
//! let smtp_down = service_fn(|_: Email| async {
//!     Err::<(), BoxError>(Failure::transient(codes::CONNECTION, "connection refused").into())
//! });
//! let send = ServiceBuilder::new()
//!     // Keep what the server could not take; the script carries on.
//!     .layer(StoreForwardLayer::new(outbox.clone()))
//!     .service(smtp_down);
//! let email = Email { id: MessageId::new(), to: "ops@plant.example".into() };
//! let answer = send.oneshot(email.clone()).await.unwrap();
//! assert!(matches!(answer, Delivery::Buffered { id } if id == email.id));
//! assert_eq!(outbox.pending_total(), 1);
//! # }
//! ```

mod events;
mod forwarder;
mod future;
mod layer;
mod message;
mod outbox;
mod pace;

pub use events::OutboxEvent;
pub use forwarder::{Forwarder, ForwarderHandle, ForwarderOptions};
pub use future::ResponseFuture;
pub use layer::StoreForwardLayer;
pub use message::{
    Category, DecodeError, NewMessage, ParkedMessage, StoredMessage, decode, encode,
};
pub use outbox::{
    Counts, DueBatch, FjallOutbox, OutboxError, OutboxImage, OutboxOptions, ParkedPage, Replicate,
    now_ms,
};
pub use pace::{Lane, Pacing, TOLERANCE};

use futures::future::BoxFuture;
use std::task::{Context, Poll};
use switchyard_core::{BoxError, Failure, MessageId};
use tower_service::Service;

/// What a store-and-forward service answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery<T> {
    /// The peer took the request at once; its response.
    Delivered(T),
    /// The peer failed transiently; the request is safe on disk and will be retried.
    Buffered {
        /// The message id (also the `Idempotency-Key` of buffered HTTP calls).
        id: MessageId,
    },
}

/// A request that can be turned into an outbox message.
pub trait Forwardable: Clone {
    /// The message to buffer after `failure` (which is transient).
    fn to_message(self, failure: &Failure) -> NewMessage;
}

/// Where buffered messages go: the extension point of the layer, implemented by
/// [`FjallOutbox`].
pub trait Outbox: Clone + Send + Sync + 'static {
    /// Persists a message durably; resolves once it is safe.
    fn enqueue(&self, message: NewMessage) -> BoxFuture<'static, Result<MessageId, OutboxError>>;
}

impl Outbox for FjallOutbox {
    fn enqueue(&self, message: NewMessage) -> BoxFuture<'static, Result<MessageId, OutboxError>> {
        let outbox = self.clone();
        Box::pin(async move { FjallOutbox::enqueue(&outbox, message).await })
    }
}

/// Buffers transiently failed requests in an [`Outbox`].
#[derive(Debug, Clone)]
pub struct StoreForward<S, O> {
    inner: S,
    outbox: O,
}

impl<S, O> StoreForward<S, O> {
    /// Wraps `inner`, buffering into `outbox`.
    pub fn new(inner: S, outbox: O) -> Self {
        StoreForward { inner, outbox }
    }
}

impl<S, O, R> Service<R> for StoreForward<S, O>
where
    S: Service<R, Error = BoxError>,
    R: Forwardable,
    O: Outbox,
{
    type Response = Delivery<S::Response>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, R, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let copy = request.clone();
        ResponseFuture::new(self.inner.call(request), copy, self.outbox.clone())
    }
}

#[cfg(test)]
mod tests;
