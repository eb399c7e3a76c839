use super::Elapsed;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::BoxError;
use tokio::time::Sleep;
use tower_service::Service;

pin_project! {
    /// Response future of [`EnforceDeadline`](super::EnforceDeadline): waits for the
    /// inner service to be ready, then for its answer, both within the budget.
    pub struct ResponseFuture<S, R, F> {
        #[pin]
        state: State<S, R, F>,
        #[pin]
        sleep: Option<Sleep>,
        budget: Duration,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, R, F> {
        // A saturated pool below says "not ready"; the wait counts against the budget.
        Ready {
            inner: S,
            request: Option<R>,
        },
        Calling {
            #[pin]
            call: F,
        },
    }
}

impl<S, R, F> ResponseFuture<S, R, F> {
    pub(super) fn new(inner: S, request: R, budget: Option<Duration>) -> Self {
        ResponseFuture {
            state: State::Ready {
                inner,
                request: Some(request),
            },
            sleep: budget.map(tokio::time::sleep),
            budget: budget.unwrap_or_default(),
        }
    }
}

impl<S, R, T> Future for ResponseFuture<S, R, S::Future>
where
    S: Service<R, Response = T, Error = BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Ready { inner, request } => match inner.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let Some(request) = request.take() else {
                            return Poll::Ready(Err("polled after completion".into()));
                        };
                        let call = inner.call(request);
                        this.state.set(State::Calling { call });
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                },
                StateProj::Calling { call } => match call.poll(cx) {
                    Poll::Ready(result) => return Poll::Ready(result),
                    Poll::Pending => break,
                },
            }
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
