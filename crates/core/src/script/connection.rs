//! The script side of `Database.Connection(name)`, shared by sites and central
//! (`CD-IA-10`): a connection object with `Query`, `Execute`, `Begin`, `Commit`,
//! `Rollback` and `CallProcedure`, and the tracker that closes (and rolls back) every
//! connection a run opened when the run ends.

use super::convert::{failure_error, from_dynamic, to_dynamic};
use crate::Deadline;
use crate::database::{DatabasePool, DbConnection, Rows};
use crate::error::{Failure, codes};
use rhai::{Array, Dynamic, Engine, EvalAltResult};
use serde_json::Value;
use std::sync::{Arc, Mutex};

type Slot = Arc<Mutex<Option<DbConnection>>>;

/// Connections opened by one script run.
#[derive(Debug, Default)]
pub struct ConnectionTracker {
    open: Mutex<Vec<Slot>>,
}

impl ConnectionTracker {
    /// Checks a connection out of `pool` for a script; it is tracked until [`finish`](Self::finish).
    pub fn open(
        self: &Arc<Self>,
        pool: &DatabasePool,
        handle: &tokio::runtime::Handle,
        deadline: Deadline,
    ) -> std::result::Result<ConnectionApi, Failure> {
        let conn = handle.block_on(pool.connect(Some(deadline)))?;
        let slot = Arc::new(Mutex::new(Some(conn)));
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot.clone());
        Ok(ConnectionApi {
            handle: handle.clone(),
            slot,
        })
    }

    /// Ends the run: every connection goes back to its pool; a transaction left open
    /// is rolled back (and logged). Call from the script thread.
    pub fn finish(&self, handle: &tokio::runtime::Handle, source: &str) {
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|p| p.into_inner()));
        for slot in open {
            let conn = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(conn) = conn {
                if conn.in_transaction() {
                    tracing::warn!(target: "switchyard::event", script = source, "transaction not committed when the script ended: rolled back");
                }
                handle.block_on(conn.close());
            }
        }
    }
}

/// A database connection as a script sees it.
#[derive(Clone)]
pub struct ConnectionApi {
    handle: tokio::runtime::Handle,
    slot: Slot,
}

impl std::fmt::Debug for ConnectionApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseConnection")
    }
}

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

impl ConnectionApi {
    /// Registers the connection type and its methods.
    pub fn register(engine: &mut Engine) {
        engine.register_type_with_name::<ConnectionApi>("DatabaseConnection");
        engine.register_fn("Query", |c: ConnectionApi, sql: &str, params: Array| {
            c.query(sql, params)
        });
        engine.register_fn("Query", |c: ConnectionApi, sql: &str| {
            c.query(sql, Array::new())
        });
        engine.register_fn("Execute", |c: ConnectionApi, sql: &str, params: Array| {
            c.execute(sql, params)
        });
        engine.register_fn("Execute", |c: ConnectionApi, sql: &str| {
            c.execute(sql, Array::new())
        });
        engine.register_fn(
            "CallProcedure",
            |c: ConnectionApi, name: &str, params: Array| c.call_procedure(name, params),
        );
        engine.register_fn("CallProcedure", |c: ConnectionApi, name: &str| {
            c.call_procedure(name, Array::new())
        });
        engine.register_fn("Begin", |c: ConnectionApi| {
            c.with(|conn, rt| rt.block_on(conn.begin()))
        });
        engine.register_fn("Commit", |c: ConnectionApi| {
            c.with(|conn, rt| rt.block_on(conn.commit()))
        });
        engine.register_fn("Rollback", |c: ConnectionApi| {
            c.with(|conn, rt| rt.block_on(conn.rollback()))
        });
    }

    fn with<T>(
        &self,
        op: impl FnOnce(&mut DbConnection, &tokio::runtime::Handle) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let conn = slot.as_mut().ok_or_else(|| {
            failure_error(&Failure::permanent(
                codes::DATABASE,
                "the connection is closed",
            ))
        })?;
        op(conn, &self.handle).map_err(|f| failure_error(&f))
    }

    fn query(&self, sql: &str, params: Array) -> Result<Dynamic> {
        let values = sql_params(params)?;
        self.with(|conn, rt| rt.block_on(conn.query(sql, &values)))
            .map(rows_to_dynamic)
    }

    fn execute(&self, sql: &str, params: Array) -> Result<Dynamic> {
        let values = sql_params(params)?;
        self.with(|conn, rt| rt.block_on(conn.execute(sql, &values)))
            .map(|n| Dynamic::from_int(i64::try_from(n).unwrap_or(i64::MAX)))
    }

    fn call_procedure(&self, name: &str, params: Array) -> Result<Dynamic> {
        let values = sql_params(params)?;
        self.with(|conn, rt| rt.block_on(conn.call_procedure(name, &values)))
            .map(rows_to_dynamic)
    }
}

/// Script parameter values as JSON (bound positionally by the driver).
pub fn sql_params(values: Array) -> Result<Vec<Value>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            from_dynamic(v)
                .map_err(|e| -> Box<EvalAltResult> { format!("parameter {}: {e}", i + 1).into() })
        })
        .collect()
}

fn rows_to_dynamic(rows: Rows) -> Dynamic {
    to_dynamic(&Value::Array(rows.into_iter().map(Value::Object).collect()))
}
