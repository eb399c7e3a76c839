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
                    let failure = match Failure::find(&*err) {
                        Some(f) if f.is_transient() => f.clone(),
                        _ => return Poll::Ready(Err(err)),
                    };
                    let Some(request) = request.take() else {
                        return Poll::Ready(Err(err));
                    };
                    let enqueue = outbox.enqueue(request.to_message(&failure));
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
