//! A small connection pool over a bb8 connection manager (bb8-postgres,
//! bb8-tiberius). bb8's own pool hides connection errors behind its checkout timeout —
//! a database that refuses connections looks like a 30 s timeout with no cause — so
//! checkout here connects directly: an unreachable server fails at once, with its error,
//! and `CachedWrite` can buffer without making the script wait.

use bb8::ManageConnection;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a checkout failed.
#[derive(Debug)]
pub(super) enum CheckoutError<E> {
    /// Connecting failed.
    Connect(E),
    /// The server did not answer in time.
    TimedOut,
}

pub(super) struct ManagedPool<M: ManageConnection> {
    manager: M,
    idle: Mutex<Vec<M::Connection>>,
    timeout: Duration,
}

impl<M: ManageConnection> ManagedPool<M> {
    /// Connections made by `manager`; connecting gives up after `timeout`. How many
    /// may be out at once is the caller's slot count
    /// ([`DatabasePool`](super::DatabasePool)'s `max_connections`).
    pub(super) fn new(manager: M, timeout: Duration) -> Arc<Self> {
        Arc::new(ManagedPool {
            manager,
            idle: Mutex::new(Vec::new()),
            timeout,
        })
    }

    /// A connection: an idle one that is not broken, or a new one.
    pub(super) async fn get(self: &Arc<Self>) -> Result<Pooled<M>, CheckoutError<M::Error>> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(mut conn) => {
                    if !self.manager.has_broken(&mut conn) {
                        return Ok(Pooled {
                            conn: Some(conn),
                            pool: self.clone(),
                        });
                    }
                }
                None => break,
            }
        }
        let conn = tokio::time::timeout(self.timeout, self.manager.connect())
            .await
            .map_err(|_| CheckoutError::TimedOut)?
            .map_err(CheckoutError::Connect)?;
        Ok(Pooled {
            conn: Some(conn),
            pool: self.clone(),
        })
    }
}

/// A checked-out connection; back to the pool when dropped (unless broken or discarded).
pub(super) struct Pooled<M: ManageConnection> {
    conn: Option<M::Connection>,
    pool: Arc<ManagedPool<M>>,
}

impl<M: ManageConnection> Pooled<M> {
    /// Closes the connection instead of returning it (it may be mid-transaction or broken).
    pub(super) fn discard(mut self) {
        self.conn = None;
    }
}

impl<M: ManageConnection> std::ops::Deref for Pooled<M> {
    type Target = M::Connection;
    fn deref(&self) -> &M::Connection {
        // Present until drop or discard, both of which consume the guard.
        self.conn
            .as_ref()
            .expect("connection present while checked out")
    }
}

impl<M: ManageConnection> std::ops::DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        self.conn
            .as_mut()
            .expect("connection present while checked out")
    }
}

impl<M: ManageConnection> Drop for Pooled<M> {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take()
            && !self.pool.manager.has_broken(&mut conn)
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}
