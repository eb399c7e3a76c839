//! `Database.CachedWrite` as a stack from the shared layers, one per connection:
//! store-and-forward over the deadline over the write itself (ready while the pool has
//! a free connection). A transient failure stores connection name + SQL + parameter values
//! (`[5.6-4]`) and the forwarder retries them with the connection's retry settings
//! (`[5.6-5]`, `[5.5-2-rt]`) through the same inner service.

use crate::messages::{DatabaseMessage, SfMessage};
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::database::DatabasePool;
use switchyard_core::error::codes;
use switchyard_core::{BoxError, Deadline, Failure, MessageId, RetryPolicy};
use switchyard_layers::deadline::{EnforceDeadlineLayer, HasDeadline};
use switchyard_layers::drive;
use switchyard_layers::slot::Slots;
use switchyard_layers::store_forward::{
    Category, Delivery, FjallOutbox, Forwardable, NewMessage, StoreForwardLayer, StoredMessage,
};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

/// One write.
#[derive(Clone, Debug)]
pub struct DbWrite {
    id: MessageId,
    connection: String,
    sql: String,
    params: Vec<Value>,
    deadline: Option<Deadline>,
    retry: RetryPolicy,
    pool: Arc<DatabasePool>,
}

impl Forwardable for DbWrite {
    fn to_message(self, failure: &Failure) -> NewMessage {
        NewMessage {
            id: self.id,
            category: Category::Database,
            target: self.connection.clone(),
            payload: DatabaseMessage {
                connection: self.connection.clone(),
                sql: self.sql,
                params: self.params,
            }
            .to_payload(),
            retry: self.retry,
            first_delay: self.retry.delay(failure.retry_after),
            last_error: Some(failure.message.clone()),
        }
    }
}

impl HasDeadline for DbWrite {
    fn timeout(&self) -> Option<Duration> {
        Some(self.pool.timeout())
    }

    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}

/// The write itself, on one connection's pool. Ready when it holds one of the pool's
/// connection slots: with every connection in use it is not ready, and the deadline
/// layer above bounds the wait (a `CachedWrite` that gets no connection in time is
/// buffered).
#[derive(Debug, Clone)]
struct Execute {
    slots: Slots,
}

impl Execute {
    fn on(pool: &DatabasePool) -> Self {
        Execute {
            slots: Slots::new(pool.slots()),
        }
    }
}

impl tower::Service<DbWrite> for Execute {
    type Response = u64;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<u64, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.slots.poll_reserve(cx).map_err(|closed| {
            Failure::permanent(codes::DATABASE, format!("connections: {closed}")).into()
        })
    }

    fn call(&mut self, write: DbWrite) -> Self::Future {
        let slot = self.slots.take();
        Box::pin(async move {
            let Some(slot) = slot else {
                return Err("Execute called before it was ready".into());
            };
            write
                .pool
                .execute_in(slot, &write.sql, &write.params, write.deadline)
                .await
                .map_err(BoxError::from)
        })
    }
}

/// The stacks of one connection, built once per deployment.
#[derive(Clone)]
struct Stacks {
    /// Store-and-forward over the write.
    cached: BoxCloneSyncService<DbWrite, Delivery<u64>, BoxError>,
    /// The write alone: the forwarder's path.
    direct: BoxCloneSyncService<DbWrite, u64, BoxError>,
}

impl Stacks {
    fn new(pool: &DatabasePool, outbox: &FjallOutbox) -> Self {
        let direct = ServiceBuilder::new()
            // The connection's timeout, capped by the script's deadline; the wait for a
            // free connection counts against it.
            .layer(EnforceDeadlineLayer::new(None))
            .service(Execute::on(pool));
        Stacks {
            cached: BoxCloneSyncService::new(
                ServiceBuilder::new()
                    // The database being unavailable, stalled or saturated must not lose
                    // the write (or block the script).
                    .layer(StoreForwardLayer::new(outbox.clone()))
                    .service(direct.clone()),
            ),
            direct: BoxCloneSyncService::new(direct),
        }
    }
}

/// Cached writes of a deployment.
#[derive(Clone)]
pub struct CachedWrites {
    pools: Arc<HashMap<String, Arc<DatabasePool>>>,
    retries: Arc<HashMap<String, RetryPolicy>>,
    /// Per connection.
    stacks: Arc<HashMap<String, Stacks>>,
}

impl std::fmt::Debug for CachedWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedWrites")
            .field("connections", &self.pools.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CachedWrites {
    /// Writes through `pools`, buffering into `outbox`.
    pub fn new(
        pools: Arc<HashMap<String, Arc<DatabasePool>>>,
        retries: HashMap<String, RetryPolicy>,
        outbox: FjallOutbox,
    ) -> Self {
        let stacks = pools
            .iter()
            .map(|(name, pool)| (name.clone(), Stacks::new(pool, &outbox)))
            .collect();
        CachedWrites {
            pools,
            retries: Arc::new(retries),
            stacks: Arc::new(stacks),
        }
    }

    fn stacks(&self, connection: &str) -> Result<&Stacks, Failure> {
        self.stacks.get(connection).ok_or_else(|| {
            Failure::permanent(
                codes::NOT_FOUND,
                format!("no database connection named `{connection}`"),
            )
        })
    }

    fn write(
        &self,
        id: MessageId,
        connection: &str,
        sql: &str,
        params: Vec<Value>,
        deadline: Option<Deadline>,
    ) -> Result<DbWrite, Failure> {
        let pool = self.pools.get(connection).cloned().ok_or_else(|| {
            Failure::permanent(
                codes::NOT_FOUND,
                format!("no database connection named `{connection}`"),
            )
        })?;
        let retry = self.retries.get(connection).copied().unwrap_or_default();
        Ok(DbWrite {
            id,
            connection: connection.to_string(),
            sql: sql.to_string(),
            params,
            deadline,
            retry,
            pool,
        })
    }

    /// `Database.CachedWrite(name, sql, params)`: `None` when written now, the message id
    /// when buffered; permanent failures come back.
    pub async fn cached_write(
        &self,
        connection: &str,
        sql: &str,
        params: Vec<Value>,
        deadline: Option<Deadline>,
    ) -> Result<Option<MessageId>, Failure> {
        let write = self.write(MessageId::new(), connection, sql, params, deadline)?;
        let stack = self.stacks(connection)?.cached.clone();
        match drive(stack, write).await {
            Ok(Delivery::Delivered(_)) => Ok(None),
            Ok(Delivery::Buffered { id }) => Ok(Some(id)),
            Err(e) => Err(switchyard_layers::classify::failure_of(&*e)),
        }
    }

    /// The forwarder's path: the same write, below store-and-forward.
    pub async fn deliver(&self, message: &StoredMessage) -> Result<(), Failure> {
        let DatabaseMessage {
            connection,
            sql,
            params,
        } = DatabaseMessage::from_stored(message)?;
        let write = self.write(message.id, &connection, &sql, params, None)?;
        let stack = self.stacks(&connection)?.direct.clone();
        drive(stack, write)
            .await
            .map(|_| ())
            .map_err(|e| switchyard_layers::classify::failure_of(&*e))
    }
}
