//! Only the active node of central serves the API (`[7.5-1]`): a standby answers
//! `503 NOT_ACTIVE` before it looks at the key, so nothing a caller sends is checked,
//! logged or run there.

use super::error::NotActive;
use futures::future::{Either, Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use switchyard_core::BoxError;
use tower::{Layer, Service};

/// Applies [`RequireActive`].
#[derive(Debug, Clone)]
pub struct RequireActiveLayer {
    active: Arc<AtomicBool>,
}

impl RequireActiveLayer {
    /// Serves while `active` is set.
    pub fn new(active: Arc<AtomicBool>) -> Self {
        RequireActiveLayer { active }
    }
}

impl<S> Layer<S> for RequireActiveLayer {
    type Service = RequireActive<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireActive {
            inner,
            active: self.active.clone(),
        }
    }
}

/// Fails calls with [`NotActive`] while this node is a standby.
#[derive(Debug, Clone)]
pub struct RequireActive<S> {
    inner: S,
    active: Arc<AtomicBool>,
}

impl<S, R> Service<R> for RequireActive<S>
where
    S: Service<R, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<S::Future, Ready<Result<S::Response, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        if self.active.load(Ordering::Relaxed) {
            Either::Left(self.inner.call(request))
        } else {
            Either::Right(ready(Err(NotActive.into())))
        }
    }
}
