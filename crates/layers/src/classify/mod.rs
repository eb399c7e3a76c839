//! Classification (`KDD-ext-3`): whatever goes wrong below this layer comes out as a
//! [`Failure`] — transient or permanent — so the layers above (store-and-forward, the
//! script bridge) decide by class, not by transport. A [`Classify`] implementation says
//! which *responses* are failures (an HTTP 503 is a response, not an error) and how
//! transport errors map; deadline expiry ([`Elapsed`]) is always a transient timeout.
//!
//! ```
//! use switchyard_core::{Failure, FailureClass};
//! use switchyard_layers::classify::{ClassifyLayer, HttpStatus};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let busy = service_fn(|_: ()| async {
//!     Ok::<_, switchyard_core::BoxError>(http::Response::builder().status(503).header("retry-after", "120").body(()).unwrap())
//! });
//! let svc = ServiceBuilder::new()
//!     // Store-and-forward above only needs to know: transient or permanent?
//!     .layer(ClassifyLayer::new(HttpStatus))
//!     .service(busy);
//! let err = svc.oneshot(()).await.unwrap_err();
//! let failure = err.downcast_ref::<Failure>().unwrap();
//! assert_eq!(failure.class, FailureClass::Transient);
//! assert_eq!(failure.retry_after, Some(std::time::Duration::from_secs(120)));
//! # }
//! ```

use crate::deadline::Elapsed;
use futures::future::{MapOk, TryFutureExt};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use switchyard_core::error::codes;
use switchyard_core::{BoxError, Failure, classify};
use tower_layer::Layer;
use tower_service::Service;

/// The extension point: which responses are failures, and what errors mean.
pub trait Classify<T> {
    /// `Err` turns a response into a failure.
    fn classify_response(&self, response: T) -> Result<T, Failure>;

    /// Classifies an error of the inner service. The default walks the cause chain
    /// (a `Failure` inside wins; reqwest and I/O errors by kind; otherwise transient).
    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Failure {
        classify::any_error(error)
    }
}

/// HTTP responses: 2xx pass; other statuses become failures per `KDD-ext-3`, with
/// `Retry-After` kept for 429 and 503.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpStatus;

impl<B> Classify<http::Response<B>> for HttpStatus {
    fn classify_response(&self, response: http::Response<B>) -> Result<http::Response<B>, Failure> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(classify::parse_retry_after);
        let reason = status.canonical_reason().unwrap_or("").to_string();
        // Redirects are never followed (credentials must not reach another origin): a
        // 3xx is a permanent failure that says where the peer pointed.
        let reason = if status.is_redirection() {
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .map_or("(no Location header)", |v| {
                    v.to_str().unwrap_or("(unreadable Location header)")
                });
            // Without its query string: it may carry tokens, and this message is logged.
            let location = location.split('?').next().unwrap_or(location);
            format!("{reason}: redirect to {location} not followed")
        } else {
            reason
        };
        Err(classify::http_failure(
            status.as_u16(),
            &reason,
            retry_after,
        ))
    }
}

/// Turns every failure below into a [`Failure`].
#[derive(Debug, Clone)]
pub struct ClassifyFailures<S, C> {
    inner: S,
    classifier: C,
}

impl<S, C> ClassifyFailures<S, C> {
    /// Wraps `inner`.
    pub fn new(inner: S, classifier: C) -> Self {
        ClassifyFailures { inner, classifier }
    }
}

/// Applies [`ClassifyFailures`].
#[derive(Debug, Clone)]
pub struct ClassifyLayer<C> {
    classifier: C,
}

impl<C> ClassifyLayer<C> {
    /// Classifies with `classifier`.
    pub fn new(classifier: C) -> Self {
        ClassifyLayer { classifier }
    }
}

impl<S, C: Clone> Layer<S> for ClassifyLayer<C> {
    type Service = ClassifyFailures<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ClassifyFailures::new(inner, self.classifier.clone())
    }
}

/// Classifies an error: deadline expiry is a transient timeout, anything else goes to
/// the classifier.
fn classify_error<C, T>(classifier: &C, error: BoxError) -> BoxError
where
    C: Classify<T>,
{
    if error.is::<Failure>() {
        return error;
    }
    match deadline_failure(&*error) {
        Some(timeout) => timeout.into(),
        None => classifier.classify_error(&*error).into(),
    }
}

/// A deadline expiry ([`Elapsed`]) anywhere in the cause chain, as a transient timeout.
fn deadline_failure(error: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(elapsed) = e.downcast_ref::<Elapsed>() {
            return Some(Failure::transient(codes::TIMEOUT, elapsed.to_string()));
        }
        current = e.source();
    }
    None
}

/// **The one rule for an error nobody classified**, used by every layer and surface
/// that must decide (store-and-forward, the forwarder, the script bridge): a
/// [`Failure`] in the cause chain wins; a deadline expiry is a transient `TIMEOUT`;
/// reqwest and I/O errors are classified by kind; anything else is **transient**, so
/// it is buffered, retried and at worst parked with its reason — never dropped.
///
/// ```
/// use switchyard_core::FailureClass;
/// use switchyard_layers::classify::failure_of;
///
/// let odd: switchyard_core::BoxError = "something nobody classified".into();
/// assert_eq!(failure_of(&*odd).class, FailureClass::Transient);
/// ```
pub fn failure_of(error: &(dyn std::error::Error + 'static)) -> Failure {
    if let Some(failure) = Failure::find(error) {
        return failure.clone();
    }
    deadline_failure(error).unwrap_or_else(|| classify::any_error(error))
}

impl<S, C, R, T> Service<R> for ClassifyFailures<S, C>
where
    S: Service<R, Response = T>,
    S::Error: Into<BoxError>,
    C: Classify<T> + Clone,
{
    type Response = T;
    type Error = BoxError;
    type Future =
        ResponseFuture<MapOk<futures::future::ErrInto<S::Future, BoxError>, fn(T) -> T>, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match ready!(self.inner.poll_ready(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(classify_error(&self.classifier, e.into()))),
        }
    }

    fn call(&mut self, request: R) -> Self::Future {
        let identity: fn(T) -> T = |t| t;
        ResponseFuture {
            inner: self
                .inner
                .call(request)
                .err_into::<BoxError>()
                .map_ok(identity),
            classifier: self.classifier.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`ClassifyFailures`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        classifier: C,
    }
}

impl<F, C, T> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, BoxError>>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.inner.poll(cx)) {
            Ok(response) => this
                .classifier
                .classify_response(response)
                .map_err(Into::into),
            Err(error) => Err(classify_error(this.classifier, error)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::FailureClass::{Permanent, Transient};
    use tower_test::mock;

    fn response(status: u16) -> http::Response<()> {
        http::Response::builder().status(status).body(()).unwrap()
    }

    #[tokio::test]
    async fn statuses_become_classified_failures() {
        for (status, class) in [
            (200, None),
            (204, None),
            (400, Some(Permanent)),
            (404, Some(Permanent)),
            (408, Some(Transient)),
            (429, Some(Transient)),
            (503, Some(Transient)),
        ] {
            let (mut svc, mut handle) =
                mock::spawn_layer::<(), http::Response<()>, _>(ClassifyLayer::new(HttpStatus));
            handle.allow(1);
            assert!(svc.poll_ready().is_ready());
            let call = svc.call(());
            handle
                .next_request()
                .await
                .unwrap()
                .1
                .send_response(response(status));
            match (call.await, class) {
                (Ok(r), None) => assert_eq!(r.status(), status),
                (Err(e), Some(class)) => {
                    let f = e.downcast_ref::<Failure>().unwrap();
                    assert_eq!((f.class, f.status), (class, Some(status)), "{status}");
                }
                (other, _) => panic!("HTTP {status}: unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn errors_and_timeouts_become_failures() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<(), http::Response<()>, _>(ClassifyLayer::new(HttpStatus));
        handle.allow(3);
        assert!(svc.poll_ready().is_ready());
        let call = svc.call(());
        handle
            .next_request()
            .await
            .unwrap()
            .1
            .send_error(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ));
        let f = call.await.unwrap_err().downcast::<Failure>().unwrap();
        assert_eq!((f.class, f.code.as_str()), (Transient, codes::CONNECTION));

        assert!(svc.poll_ready().is_ready());
        let call = svc.call(());
        handle.next_request().await.unwrap().1.send_error(Elapsed {
            budget: std::time::Duration::from_secs(1),
        });
        let f = call.await.unwrap_err().downcast::<Failure>().unwrap();
        assert_eq!((f.class, f.code.as_str()), (Transient, codes::TIMEOUT));

        assert!(svc.poll_ready().is_ready());
        let call = svc.call(());
        let permanent = Failure::permanent(codes::RETURN_MISMATCH, "wrong shape");
        handle
            .next_request()
            .await
            .unwrap()
            .1
            .send_error(permanent.clone());
        assert_eq!(
            *call.await.unwrap_err().downcast::<Failure>().unwrap(),
            permanent
        );
    }

    #[tokio::test]
    async fn not_ready_inner_means_not_ready() {
        let (mut svc, mut handle) =
            mock::spawn_layer::<(), http::Response<()>, _>(ClassifyLayer::new(HttpStatus));
        handle.allow(0);
        assert!(svc.poll_ready().is_pending());
    }
}
