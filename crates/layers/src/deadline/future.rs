use super::Elapsed;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::BoxError;
use tokio::time::Sleep;

pin_project! {
    /// Response future of [`EnforceDeadline`](super::EnforceDeadline).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        budget: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, budget: Option<Duration>) -> Self {
        ResponseFuture {
            inner,
            sleep: budget.map(tokio::time::sleep),
            budget: budget.unwrap_or_default(),
        }
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => match sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Elapsed {
                    budget: *this.budget,
                }
                .into())),
                Poll::Pending => Poll::Pending,
            },
            None => Poll::Pending,
        }
    }
}
