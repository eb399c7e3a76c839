use super::{Delivery, Forwardable, Outbox, OutboxError};
use futures::future::BoxFuture;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use switchyard_core::{BoxError, Failure, MessageId, error::codes};

pin_project! {
    /// Response future of [`StoreForward`](super::StoreForward).
    pub struct ResponseFuture<F, R, O> {
        #[pin]
        state: State<F, R, O>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R, O> {
        Calling {
            #[pin]
            call: F,
            request: Option<R>,
            outbox: O,
        },
        Buffering {
            enqueue: BoxFuture<'static, Result<MessageId, OutboxError>>,
        },
    }
}

impl<F, R, O> ResponseFuture<F, R, O> {
    pub(super) fn new(call: F, request: R, outbox: O) -> Self {
        ResponseFuture {
            state: State::Calling {
                call,
                request: Some(request),
                outbox,
            },
        }
    }
}

impl<F, T, R, O> Future for ResponseFuture<F, R, O>
where
    F: Future<Output = Result<T, BoxError>>,
    R: Forwardable,
    O: Outbox,
{
    type Output = Result<Delivery<T>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling {
                    call,
                    request,
                    outbox,
                } => {
                    let err = match ready!(call.poll(cx)) {
                        Ok(response) => return Poll::Ready(Ok(Delivery::Delivered(response))),
                        Err(err) => err,
                    };
                    // The one rule (`classify::failure_of`): what nobody classified is
                    // transient, so it is kept rather than lost.
                    let failure = crate::classify::failure_of(&*err);
                    if !failure.is_transient() {
                        return Poll::Ready(Err(err));
                    }
                    let Some(request) = request.take() else {
                        return Poll::Ready(Err(err));
                    };
                    let message = request.to_message(&failure);
                    // The site's own record of a failed attempt, per message id: a duplicate
                    // delivery is only ever explained by an attempt recorded as TIMEOUT here.
                    tracing::debug!(id = %message.id, code = %failure.code, error = %failure, "delivery attempt failed");
                    let enqueue = outbox.enqueue(message);
                    this.state.set(State::Buffering { enqueue });
                }
                StateProj::Buffering { enqueue } => {
                    return Poll::Ready(match ready!(enqueue.as_mut().poll(cx)) {
                        Ok(id) => Ok(Delivery::Buffered { id }),
                        Err(e) => {
                            Err(Failure::transient(codes::BUFFER_REFUSED, e.to_string()).into())
                        }
                    });
                }
            }
        }
    }
}
