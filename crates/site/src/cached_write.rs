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

/// One connection's pool, retry settings and stacks, built once per deployment.
#[derive(Clone)]
struct Connection {
    pool: Arc<DatabasePool>,
    retry: RetryPolicy,
    /// Store-and-forward over the write.
    cached: BoxCloneSyncService<DbWrite, Delivery<u64>, BoxError>,
    /// The write alone: the forwarder's path.
    direct: BoxCloneSyncService<DbWrite, u64, BoxError>,
}

impl Connection {
    fn new(pool: Arc<DatabasePool>, retry: RetryPolicy, outbox: &FjallOutbox) -> Self {
        let direct = ServiceBuilder::new()
            // The connection's timeout, capped by the script's deadline; the wait for a
            // free connection counts against it.
            .layer(EnforceDeadlineLayer::new(None))
            .service(Execute::on(&pool));
        Connection {
            cached: BoxCloneSyncService::new(
                ServiceBuilder::new()
                    // The database being unavailable, stalled or saturated must not lose
                    // the write (or block the script).
                    .layer(StoreForwardLayer::new(outbox.clone()))
                    .service(direct.clone()),
            ),
            direct: BoxCloneSyncService::new(direct),
            pool,
            retry,
        }
    }

    fn write(
        &self,
        id: MessageId,
        connection: &str,
        sql: &str,
        params: Vec<Value>,
        deadline: Option<Deadline>,
    ) -> DbWrite {
        DbWrite {
            id,
            connection: connection.to_string(),
            sql: sql.to_string(),
            params,
            deadline,
            retry: self.retry,
            pool: self.pool.clone(),
        }
    }
}

/// Cached writes of a deployment.
#[derive(Clone)]
pub struct CachedWrites {
    connections: Arc<HashMap<String, Connection>>,
}

impl std::fmt::Debug for CachedWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedWrites")
            .field("connections", &self.connections.keys().collect::<Vec<_>>())
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
        let connections = pools
            .iter()
            .map(|(name, pool)| {
                let retry = retries.get(name).copied().unwrap_or_default();
                (name.clone(), Connection::new(pool.clone(), retry, &outbox))
            })
            .collect();
        CachedWrites {
            connections: Arc::new(connections),
        }
    }

    fn connection(&self, name: &str) -> Result<&Connection, Failure> {
        self.connections.get(name).ok_or_else(|| {
            Failure::permanent(
                codes::NOT_FOUND,
                format!("no database connection named `{name}`"),
            )
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
        let target = self.connection(connection)?;
        let write = target.write(MessageId::new(), connection, sql, params, deadline);
        match drive(target.cached.clone(), write).await {
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
        let target = self.connection(&connection)?;
        let write = target.write(message.id, &connection, &sql, params, None);
        drive(target.direct.clone(), write)
            .await
            .map(|_| ())
            .map_err(|e| switchyard_layers::classify::failure_of(&*e))
    }
}
