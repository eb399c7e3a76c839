//! Readiness of a bounded pool: a service at the bottom of a stack reserves one of the
//! pool's slots in `poll_ready` (not ready while all are taken, woken when one is
//! freed) and hands it to the call it makes; a clone starts without one. The SMTP
//! session pool and each database pool are bounded this way, so the deadline layer
//! above them turns a full pool into a bounded wait.
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_layers::slot::Slots;
//! use tokio::sync::Semaphore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let pool = Arc::new(Semaphore::new(1));
//! let mut first = Slots::new(pool.clone());
//! let mut second = first.clone();
//! std::future::poll_fn(|cx| first.poll_reserve(cx)).await.unwrap();
//! let waker = futures::task::noop_waker();
//! let mut cx = std::task::Context::from_waker(&waker);
//! assert!(second.poll_reserve(&mut cx).is_pending(), "the only slot is taken");
//! drop(first.take()); // the call that used it is over
//! assert!(second.poll_reserve(&mut cx).is_ready());
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

/// The pool was closed: no slot will ever be free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pool is closed")]
pub struct PoolClosed;

/// One service instance's reservation of a slot of a pool.
#[derive(Debug)]
pub struct Slots {
    pool: PollSemaphore,
    held: Option<OwnedSemaphorePermit>,
}

impl Slots {
    /// Reserves from `pool` (one permit per slot).
    pub fn new(pool: Arc<Semaphore>) -> Self {
        Slots {
            pool: PollSemaphore::new(pool),
            held: None,
        }
    }

    /// Ready once this instance holds a slot (at once if it already does).
    pub fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PoolClosed>> {
        if self.held.is_none() {
            match std::task::ready!(self.pool.poll_acquire(cx)) {
                Some(slot) => self.held = Some(slot),
                None => return Poll::Ready(Err(PoolClosed)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The reserved slot, for the call (freed when the call drops it); `None` when
    /// `poll_reserve` has not said ready since the last take.
    pub fn take(&mut self) -> Option<OwnedSemaphorePermit> {
        self.held.take()
    }
}

impl Clone for Slots {
    /// A clone starts without a slot: each instance reserves its own.
    fn clone(&self) -> Self {
        Slots {
            pool: self.pool.clone(),
            held: None,
        }
    }
}
