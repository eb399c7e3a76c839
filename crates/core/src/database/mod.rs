//! Database access (`[5.6-*]`, `CD-ESG-8/9`, `CD-IA-10`): one pool per named connection,
//! chosen by the connection's URL — `mssql://…` or an ADO string (tiberius, connected by
//! bb8-tiberius's manager), `postgres://…` (tokio-postgres, connected by bb8-postgres's
//! manager), `sqlite://path` (rusqlite; the embedded default for examples and tests).
//! Pooling is the `pool` module's: checkout connects directly, so an unreachable server fails at
//! once with its own error.
//!
//! A [`DbConnection`] gives scripts full control — queries, updates, transactions,
//! stored procedures — with parameters always bound, never interpolated. Every failure
//! is a [`Failure`] classified transient (connection, timeout, deadlock) or permanent
//! (syntax, constraint), which decides whether `CachedWrite` buffers it.

mod mssql;
mod pool;
mod postgres;
mod sqlite;

pub use mssql::MssqlTarget;

use crate::Deadline;
use crate::config::{DatabaseDef, DatabaseTarget};
use crate::error::{Failure, codes};
use serde_json::{Map, Value};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Rows as scripts see them: one map per row, column name → value.
pub type Rows = Vec<Map<String, Value>>;

/// The most rows a query may hand to a script (the size of the largest script array):
/// more is an error naming the limit, not a node out of memory.
pub const MAX_ROWS: usize = 50_000;

fn capped(name: &str, rows: Rows) -> Result<Rows, Failure> {
    if rows.len() > MAX_ROWS {
        return Err(Failure::permanent(
            codes::DATABASE,
            format!(
                "database `{name}`: the result has {} rows, more than the {MAX_ROWS} a script may receive; narrow the query (WHERE, LIMIT)",
                rows.len()
            ),
        ));
    }
    Ok(rows)
}

/// Whether a statement may open (or leave open) a transaction the connection object
/// does not know about, e.g. `Execute("BEGIN TRANSACTION")`.
fn mentions_transaction(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect();
    words.iter().enumerate().any(|(i, w)| match w.as_str() {
        "BEGIN" | "SAVEPOINT" | "IMPLICIT_TRANSACTIONS" => true,
        "START" => words.get(i + 1).is_some_and(|next| next == "TRANSACTION"),
        _ => false,
    })
}

/// The pool of one named connection.
pub struct DatabasePool {
    name: String,
    timeout: Duration,
    kind: PoolKind,
    /// One slot per connection `max_connections` allows; a checked-out connection
    /// holds one until it is closed. All taken = the pool is not ready.
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for DatabasePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabasePool")
            .field("name", &self.name)
            .field("driver", &self.driver())
            .finish()
    }
}

enum PoolKind {
    Sqlite(sqlite::Pool),
    Postgres(postgres::Pool),
    Mssql(mssql::Pool),
}

impl DatabasePool {
    /// Creates the pool; no connection is made until one is needed (a database that is
    /// down at start-up does not stop the node). `base_dir` resolves relative SQLite
    /// paths and secret files. Must be called inside a tokio runtime.
    pub fn open(name: &str, def: &DatabaseDef, base_dir: &Path) -> Result<DatabasePool, Failure> {
        let invalid = |message: String| {
            Failure::permanent(codes::DATABASE, format!("database `{name}`: {message}"))
        };
        let kind = match &def.target {
            DatabaseTarget::Ado(secret) => {
                let ado = secret.resolve(base_dir).map_err(invalid)?;
                PoolKind::Mssql(mssql::Pool::from_ado(ado.expose(), def).map_err(invalid)?)
            }
            DatabaseTarget::Url(secret) => {
                let url = secret.resolve(base_dir).map_err(invalid)?;
                let url = url.expose();
                let (scheme, rest) = url.split_once("://").unwrap_or((url, ""));
                match scheme {
                    "sqlite" if rest.is_empty() => {
                        return Err(invalid(
                            "`sqlite://` needs a path (e.g. sqlite://data/historian.db)"
                                .to_string(),
                        ));
                    }
                    "sqlite" => PoolKind::Sqlite(sqlite::Pool::new(rest, base_dir, def)),
                    "postgres" | "postgresql" => PoolKind::Postgres(
                        postgres::Pool::new(url, def, base_dir).map_err(invalid)?,
                    ),
                    "mssql" | "sqlserver" => {
                        PoolKind::Mssql(mssql::Pool::from_url(url, def).map_err(invalid)?)
                    }
                    other => {
                        return Err(invalid(format!(
                            "unsupported URL scheme `{other}` (use mssql://, postgres:// or sqlite://)"
                        )));
                    }
                }
            }
        };
        Ok(DatabasePool {
            name: name.to_string(),
            timeout: def.timeout,
            kind,
            slots: Arc::new(Semaphore::new(def.max_connections.max(1) as usize)),
        })
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `sqlite`, `postgres` or `mssql`.
    pub fn driver(&self) -> &'static str {
        match self.kind {
            PoolKind::Sqlite(_) => "sqlite",
            PoolKind::Postgres(_) => "postgres",
            PoolKind::Mssql(_) => "mssql",
        }
    }

    /// The connection's timeout (`databases.X.timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The pool's connection slots, for a service's readiness: a service that holds one
    /// can check a connection out without waiting for another user to give one back.
    pub fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    /// Checks a connection out of the pool, waiting for a free slot within the budget.
    pub async fn connect(&self, deadline: Option<Deadline>) -> Result<DbConnection, Failure> {
        let budget = self.budget(deadline);
        let slot =
            with_timeout(budget, async {
                self.slots.clone().acquire_owned().await.map_err(|_| {
                    Failure::permanent(codes::DATABASE, "the connection pool is closed")
                })
            })
            .await
            .map_err(|f| f.context(format!("database `{}`: no free connection", self.name)))?;
        self.connect_in(slot, deadline).await
    }

    /// Checks a connection out in a slot already held.
    pub async fn connect_in(
        &self,
        slot: OwnedSemaphorePermit,
        deadline: Option<Deadline>,
    ) -> Result<DbConnection, Failure> {
        let budget = self.budget(deadline);
        let conn = with_timeout(budget, async {
            Ok(match &self.kind {
                PoolKind::Sqlite(p) => Conn::Sqlite(p.get().await?),
                PoolKind::Postgres(p) => Conn::Postgres(p.get().await?),
                PoolKind::Mssql(p) => Conn::Mssql(Box::new(p.get().await?)),
            })
        })
        .await
        .map_err(|f| f.context(format!("database `{}`", self.name)))?;
        Ok(DbConnection {
            name: self.name.clone(),
            timeout: self.timeout,
            deadline,
            conn: Some(conn),
            in_transaction: false,
            suspect: false,
            _slot: slot,
        })
    }

    /// Runs one write on a pooled connection, waiting for a free slot within the budget.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[Value],
        deadline: Option<Deadline>,
    ) -> Result<u64, Failure> {
        self.connect(deadline)
            .await?
            .execute_once(sql, params)
            .await
    }

    /// Runs one write on a pooled connection, in a slot already held (what `CachedWrite`
    /// and its retries do).
    pub async fn execute_in(
        &self,
        slot: OwnedSemaphorePermit,
        sql: &str,
        params: &[Value],
        deadline: Option<Deadline>,
    ) -> Result<u64, Failure> {
        self.connect_in(slot, deadline)
            .await?
            .execute_once(sql, params)
            .await
    }

    fn budget(&self, deadline: Option<Deadline>) -> Duration {
        deadline.map_or(self.timeout, |d| d.cap(self.timeout))
    }
}

enum Conn {
    Sqlite(sqlite::Conn),
    Postgres(postgres::Conn),
    // Boxed: a tiberius client is several times larger than the other connections.
    Mssql(Box<mssql::Conn>),
}

/// A connection checked out for a script (`Database.Connection(name)`). Scripts get
/// the raw power of the database; `close` (called when the script ends) rolls back a
/// transaction left open and returns the connection to the pool.
pub struct DbConnection {
    name: String,
    timeout: Duration,
    deadline: Option<Deadline>,
    conn: Option<Conn>,
    in_transaction: bool,
    /// The connection's state is unknown (a raw transaction statement ran, a procedure
    /// ran, or an operation was cut by its deadline mid-protocol): it is discarded at
    /// the end instead of going back to the pool.
    suspect: bool,
    /// The pool slot this connection holds; freed when it is dropped.
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConnection")
            .field("name", &self.name)
            .field("in_transaction", &self.in_transaction)
            .finish()
    }
}

macro_rules! on_conn {
    ($self:ident, $c:ident => $body:expr) => {{
        let budget = $self
            .deadline
            .map_or($self.timeout, |d| d.cap($self.timeout));
        let name = $self.name.clone();
        let conn = $self.conn.as_mut().ok_or_else(|| {
            Failure::permanent(
                codes::DATABASE,
                format!("database `{name}`: connection already closed"),
            )
        })?;
        // Suspect until the operation has finished: a future dropped mid-exchange leaves
        // the connection in a state nobody knows.
        let was_suspect = std::mem::replace(&mut $self.suspect, true);
        let result = with_timeout(budget, async move {
            match conn {
                Conn::Sqlite($c) => $body,
                Conn::Postgres($c) => $body,
                Conn::Mssql($c) => $body,
            }
        })
        .await;
        // Cut by its deadline mid-exchange: never hand this connection to the next user.
        $self.suspect = was_suspect || result.as_ref().is_err_and(|f| f.code == codes::TIMEOUT);
        result.map_err(|f| f.context(format!("database `{name}`")))
    }};
}

impl DbConnection {
    /// Runs a query; returns its rows.
    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, Failure> {
        self.suspect |= mentions_transaction(sql);
        let rows = on_conn!(self, c => c.query(sql, params).await)?;
        capped(&self.name, rows)
    }

    /// Runs a statement; returns the rows affected.
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, Failure> {
        self.suspect |= mentions_transaction(sql);
        on_conn!(self, c => c.execute(sql, params).await)
    }

    /// Runs one statement, then returns the connection to its pool.
    async fn execute_once(mut self, sql: &str, params: &[Value]) -> Result<u64, Failure> {
        let result = self.execute(sql, params).await;
        self.close().await;
        result
    }

    /// Starts a transaction.
    pub async fn begin(&mut self) -> Result<(), Failure> {
        if self.in_transaction {
            return Err(Failure::permanent(
                codes::DATABASE,
                format!("database `{}`: a transaction is already open", self.name),
            ));
        }
        on_conn!(self, c => c.batch(TxCommand::Begin).await)?;
        self.in_transaction = true;
        Ok(())
    }

    /// Commits the open transaction.
    pub async fn commit(&mut self) -> Result<(), Failure> {
        self.require_transaction("Commit")?;
        let result = on_conn!(self, c => c.batch(TxCommand::Commit).await);
        self.in_transaction = false;
        result
    }

    /// Rolls back the open transaction.
    pub async fn rollback(&mut self) -> Result<(), Failure> {
        self.require_transaction("Rollback")?;
        let result = on_conn!(self, c => c.batch(TxCommand::Rollback).await);
        self.in_transaction = false;
        result
    }

    /// Calls a stored procedure (or, on PostgreSQL, a function); returns its rows.
    pub async fn call_procedure(
        &mut self,
        procedure: &str,
        params: &[Value],
    ) -> Result<Rows, Failure> {
        if procedure.is_empty()
            || !procedure
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            return Err(Failure::permanent(
                codes::DATABASE,
                format!(
                    "database `{}`: `{procedure}` is not a valid procedure name",
                    self.name
                ),
            ));
        }
        // A procedure may leave a transaction open behind our back.
        self.suspect = true;
        let rows = on_conn!(self, c => c.call_procedure(procedure, params).await)?;
        capped(&self.name, rows)
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Rolls back a transaction left open and returns the connection to the pool — or
    /// discards it when its state is unknown (see `suspect`).
    pub async fn close(mut self) {
        if self.in_transaction
            && let Err(e) = self.rollback().await
        {
            tracing::warn!(database = %self.name, error = %e, "rollback of an unfinished transaction failed; dropping the connection");
            if let Some(conn) = self.conn.take() {
                conn.abandon_transaction();
            }
        }
        if self.suspect
            && let Some(conn) = self.conn.take()
        {
            tracing::debug!(database = %self.name, "connection state unknown after the script; discarded, not pooled");
            conn.abandon_transaction();
        }
    }

    fn require_transaction(&self, what: &str) -> Result<(), Failure> {
        if self.in_transaction {
            Ok(())
        } else {
            Err(Failure::permanent(
                codes::DATABASE,
                format!("database `{}`: {what} without Begin", self.name),
            ))
        }
    }
}

impl Drop for DbConnection {
    fn drop(&mut self) {
        // A connection must never go back to the pool inside a transaction: if the owner
        // did not `close` it, roll it back on the way.
        if (self.in_transaction || self.suspect)
            && let Some(conn) = self.conn.take()
        {
            conn.abandon_transaction();
        }
    }
}

impl Conn {
    /// Gets rid of a connection whose transaction is still open, without ever handing
    /// it to the next user mid-transaction.
    fn abandon_transaction(self) {
        match self {
            Conn::Sqlite(c) => c.abandon_transaction(),
            Conn::Postgres(c) => c.abandon_transaction(),
            Conn::Mssql(c) => (*c).abandon_transaction(),
        }
    }
}

/// Transaction control statements.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TxCommand {
    Begin,
    Commit,
    Rollback,
}

async fn with_timeout<T>(
    budget: Duration,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(budget, work).await {
        Ok(result) => result,
        Err(_) => Err(Failure::transient(
            codes::TIMEOUT,
            format!("timed out after {}", humantime::format_duration(budget)),
        )),
    }
}

/// A JSON parameter as text, for drivers that need one (objects and lists are bound as
/// their JSON text).
pub(crate) fn json_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Failure for a value that cannot be bound.
pub(crate) fn bad_param(index: usize, message: impl std::fmt::Display) -> Failure {
    Failure::permanent(
        codes::DATABASE,
        format!("parameter {}: {message}", index + 1),
    )
}

#[cfg(test)]
mod tests;
