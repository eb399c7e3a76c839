//! `Database.CachedWrite` as a stack from the shared layers: store-and-forward over the
//! write itself. A transient failure stores connection name + SQL + parameter values
//! (`[5.6-4]`) and the forwarder retries them with the connection's retry settings
//! (`[5.6-5]`, `[5.5-2-rt]`) through the same inner service.

use crate::messages::{DatabaseMessage, SfMessage};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_core::database::DatabasePool;
use switchyard_core::error::codes;
use switchyard_core::{BoxError, Deadline, Failure, MessageId, RetryPolicy};
use switchyard_layers::drive;
use switchyard_layers::store_forward::{
    Category, Delivery, FjallOutbox, Forwardable, NewMessage, StoreForwardLayer, StoredMessage,
};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, service_fn};

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

async fn execute(write: DbWrite) -> Result<u64, BoxError> {
    write
        .pool
        .execute(&write.sql, &write.params, write.deadline)
        .await
        .map_err(BoxError::from)
}

/// Cached writes of a deployment.
#[derive(Clone)]
pub struct CachedWrites {
    pools: Arc<HashMap<String, Arc<DatabasePool>>>,
    retries: Arc<HashMap<String, RetryPolicy>>,
    /// Store-and-forward over the write, built once per deployment.
    stack: BoxCloneSyncService<DbWrite, Delivery<u64>, BoxError>,
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
        let stack = ServiceBuilder::new()
            // The database being unavailable must not lose the write (or block the script).
            .layer(StoreForwardLayer::new(outbox))
            .service(service_fn(execute));
        CachedWrites {
            pools,
            retries: Arc::new(retries),
            stack: BoxCloneSyncService::new(stack),
        }
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
        match drive(self.stack.clone(), write).await {
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
        execute(write)
            .await
            .map(|_| ())
            .map_err(|e| switchyard_layers::classify::failure_of(&*e))
    }
}
