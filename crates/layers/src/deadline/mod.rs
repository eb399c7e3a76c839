//! Deadlines (`[7.4-5-rt]`, `CD-ESG-4`): every request runs against the smallest of its
//! own timeout (method timeout, system timeout), the caller's remaining budget, and the
//! layer's default; when it runs out the call fails with [`Elapsed`].
//!
//! The budget covers the wait for the inner service's readiness too: the layer is always
//! ready itself, and each request waits for a slot below it (a session of the SMTP pool,
//! a connection of a database pool) for no longer than its budget. A saturated pool so
//! becomes a bounded wait, never an unbounded queue.
//!
//! ```
//! use std::time::Duration;
//! use switchyard_core::Deadline;
//! use switchyard_layers::deadline::{Elapsed, EnforceDeadlineLayer, HasDeadline};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! struct Call { timeout: Duration, budget: Option<Deadline> }
//! impl HasDeadline for Call {
//!     fn timeout(&self) -> Option<Duration> { Some(self.timeout) }
//!     fn deadline(&self) -> Option<Deadline> { self.budget }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slow = service_fn(|_: Call| async {
//!     tokio::time::sleep(Duration::from_secs(60)).await;
//!     Ok::<_, switchyard_core::BoxError>(())
//! });
//! let svc = ServiceBuilder::new()
//!     // Nothing outlives the caller's budget.
//!     .layer(EnforceDeadlineLayer::new(None))
//!     .service(slow);
//! let call = Call { timeout: Duration::from_secs(10), budget: Some(Deadline::after(Duration::from_secs(2))) };
//! let err = svc.oneshot(call).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<Elapsed>().unwrap().budget, Duration::from_secs(2));
//! # }
//! ```

mod future;

pub use future::ResponseFuture;

use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::{BoxError, Deadline};
use tower_layer::Layer;
use tower_service::Service;

/// The request's time budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {}", humantime::format_duration(*.budget))]
pub struct Elapsed {
    /// The budget the request had.
    pub budget: Duration,
}

/// What a request says about its time budget.
pub trait HasDeadline {
    /// The request's own timeout (method or system timeout).
    fn timeout(&self) -> Option<Duration>;
    /// The caller's remaining budget.
    fn deadline(&self) -> Option<Deadline>;
}

/// The budget of an HTTP request, carried in its extensions: outbound HTTP stacks put
/// the system timeout and the script's deadline here for [`EnforceDeadline`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// The system's timeout.
    pub timeout: Option<Duration>,
    /// The caller's deadline.
    pub deadline: Option<Deadline>,
}

impl<B> HasDeadline for http::Request<B> {
    fn timeout(&self) -> Option<Duration> {
        self.extensions().get::<Budget>().and_then(|b| b.timeout)
    }

    fn deadline(&self) -> Option<Deadline> {
        self.extensions().get::<Budget>().and_then(|b| b.deadline)
    }
}

/// Fails requests that outlive their budget.
#[derive(Debug, Clone)]
pub struct EnforceDeadline<S> {
    inner: S,
    default: Option<Duration>,
}

impl<S> EnforceDeadline<S> {
    /// Wraps `inner`; `default` applies when the request names no timeout.
    pub fn new(inner: S, default: Option<Duration>) -> Self {
        EnforceDeadline { inner, default }
    }
}

/// Applies [`EnforceDeadline`].
#[derive(Debug, Clone)]
pub struct EnforceDeadlineLayer {
    default: Option<Duration>,
}

impl EnforceDeadlineLayer {
    /// `default` applies when a request names no timeout of its own.
    pub fn new(default: Option<Duration>) -> Self {
        EnforceDeadlineLayer { default }
    }
}

impl<S> Layer<S> for EnforceDeadlineLayer {
    type Service = EnforceDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EnforceDeadline::new(inner, self.default)
    }
}

/// The budget of a request: the smallest of its timeout, its caller's remaining budget
/// and the default.
pub fn budget_of<R: HasDeadline>(request: &R, default: Option<Duration>) -> Option<Duration> {
    let timeout = request.timeout().or(default);
    let remaining = request.deadline().map(|d| d.remaining());
    match (timeout, remaining) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<S, R> Service<R> for EnforceDeadline<S>
where
    S: Service<R, Error = BoxError> + Clone,
    R: HasDeadline,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, R, S::Future>;

    /// Always ready: waiting for the inner service is part of each request's budget.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let budget = budget_of(&request, self.default);
        // The request takes this instance (and whatever slot it reserves when ready);
        // the layer keeps a fresh clone for the next one.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::new(inner, request, budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_test::mock;

    #[derive(Debug, Clone, PartialEq)]
    struct Call {
        timeout: Option<Duration>,
        deadline: Option<Deadline>,
    }

    impl HasDeadline for Call {
        fn timeout(&self) -> Option<Duration> {
            self.timeout
        }
        fn deadline(&self) -> Option<Deadline> {
            self.deadline
        }
    }

    #[tokio::test(start_paused = true)]
    async fn smallest_budget_wins() {
        let cases = [
            (Some(5), None, None, Some(5)),
            (Some(5), Some(2), None, Some(2)),
            (Some(1), Some(2), Some(9), Some(1)),
            (None, None, Some(9), Some(9)),
            (None, Some(3), Some(9), Some(3)),
            (None, None, None, None),
        ];
        for (timeout, deadline, default, want) in cases {
            let call = Call {
                timeout: timeout.map(Duration::from_secs),
                deadline: deadline.map(|s| Deadline::after(Duration::from_secs(s))),
            };
            assert_eq!(
                budget_of(&call, default.map(Duration::from_secs)),
                want.map(Duration::from_secs)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn elapses_at_the_budget_even_while_the_inner_call_runs() {
        let (mut svc, mut handle) = mock::spawn_layer::<Call, (), _>(EnforceDeadlineLayer::new(
            Some(Duration::from_secs(30)),
        ));
        handle.allow(1);
        assert!(svc.poll_ready().is_ready());
        let started = tokio::time::Instant::now();
        // The response future does the work (waiting for readiness, then calling).
        let call = tokio::spawn(svc.call(Call {
            timeout: Some(Duration::from_secs(3)),
            deadline: None,
        }));
        let (_request, _never_answered) = handle.next_request().await.unwrap();
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(
            err.downcast_ref::<Elapsed>(),
            Some(&Elapsed {
                budget: Duration::from_secs(3)
            })
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn answers_in_time_pass_through() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Call, &'static str, _>(EnforceDeadlineLayer::new(None));
        handle.allow(2);
        assert!(svc.poll_ready().is_ready());
        let call = tokio::spawn(svc.call(Call {
            timeout: Some(Duration::from_secs(3)),
            deadline: None,
        }));
        let (_, send) = handle.next_request().await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        send.send_response("in time");
        assert_eq!(call.await.unwrap().unwrap(), "in time");
        // Errors of the inner service are not turned into timeouts.
        assert!(svc.poll_ready().is_ready());
        let call = tokio::spawn(svc.call(Call {
            timeout: None,
            deadline: None,
        }));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error("refused");
        assert_eq!(call.await.unwrap().unwrap_err().to_string(), "refused");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_saturated_service_counts_against_the_budget() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Call, (), _>(EnforceDeadlineLayer::new(None));
        // The inner service is not ready (a full pool): the layer still is, and the
        // request waits for the inner service no longer than its budget.
        handle.allow(0);
        assert!(svc.poll_ready().is_ready());
        let started = tokio::time::Instant::now();
        let err = svc
            .call(Call {
                timeout: Some(Duration::from_secs(2)),
                deadline: None,
            })
            .await
            .unwrap_err();
        assert!(err.is::<Elapsed>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // It never reached the inner service.
        handle.allow(1);
        assert!(
            futures::FutureExt::now_or_never(handle.next_request()).is_none(),
            "the request must not reach the inner service after its deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_freed_in_time_lets_the_request_through() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Call, &'static str, _>(EnforceDeadlineLayer::new(None));
        handle.allow(0);
        let call = tokio::spawn(svc.call(Call {
            timeout: Some(Duration::from_secs(5)),
            deadline: None,
        }));
        tokio::time::advance(Duration::from_secs(3)).await;
        handle.allow(1);
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response("served");
        assert_eq!(call.await.unwrap().unwrap(), "served");
    }

    #[tokio::test(start_paused = true)]
    async fn an_already_spent_budget_fails_at_once() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Call, (), _>(EnforceDeadlineLayer::new(None));
        handle.allow(1);
        let deadline = Deadline::after(Duration::from_millis(10));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(svc.poll_ready().is_ready());
        let err = svc
            .call(Call {
                timeout: None,
                deadline: Some(deadline),
            })
            .await
            .unwrap_err();
        assert!(err.is::<Elapsed>());
    }
}
