//! SQLite through rusqlite: a small pool of connections to one file, every call on the
//! blocking pool (never on the async workers).

use super::{Rows, TxCommand, bad_param, json_text};
use crate::classify::sqlite_code;
use crate::config::DatabaseDef;
use crate::error::{Failure, codes};
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

struct Shared {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    busy_timeout: std::time::Duration,
}

pub(super) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    pub(super) fn new(path: &str, base_dir: &Path, def: &DatabaseDef) -> Pool {
        let path = if path == ":memory:" {
            PathBuf::from(":memory:")
        } else {
            base_dir.join(path)
        };
        Pool {
            shared: Arc::new(Shared {
                path,
                idle: Mutex::new(Vec::new()),
                busy_timeout: def.timeout,
            }),
        }
    }

    /// A connection (how many may be out at once is the caller's slot count).
    pub(super) async fn get(&self) -> Result<Conn, Failure> {
        let idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let shared = self.shared.clone();
                tokio::task::spawn_blocking(move || open(&shared))
                    .await
                    .map_err(|e| {
                        Failure::transient(codes::DATABASE, format!("opening SQLite failed: {e}"))
                    })??
            }
        };
        Ok(Conn {
            conn: Some(conn),
            shared: self.shared.clone(),
        })
    }
}

fn open(shared: &Shared) -> Result<rusqlite::Connection, Failure> {
    if let Some(dir) = shared.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A missing directory is a deployment problem, but creating it is what a user
        // of an embedded database expects.
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = rusqlite::Connection::open(&shared.path).map_err(classify)?;
    conn.busy_timeout(shared.busy_timeout).map_err(classify)?;
    // WAL lets readers and one writer work at once across the pool's connections.
    let _ = conn.pragma_update(None, "journal_mode", "WAL");
    // In WAL mode, NORMAL syncs at checkpoints rather than every commit: a commit
    // survives a crash of the process (not of the machine), at many times the rate.
    let _ = conn.pragma_update(None, "synchronous", "NORMAL");
    Ok(conn)
}

pub(super) struct Conn {
    conn: Option<rusqlite::Connection>,
    shared: Arc<Shared>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

impl Conn {
    /// Closes the connection instead of returning it to the pool (closing a SQLite
    /// connection rolls back its open transaction).
    pub(super) fn abandon_transaction(mut self) {
        self.conn = None;
    }

    /// Runs `work` with the connection on the blocking pool. If the caller gives up
    /// (timeout), the connection is not returned to the pool.
    async fn with<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut rusqlite::Connection) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        let mut conn = self.conn.take().ok_or_else(|| {
            Failure::permanent(codes::DATABASE, "connection lost after an earlier timeout")
        })?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut conn);
            (conn, result)
        })
        .await
        .map_err(|e| Failure::permanent(codes::DATABASE, format!("SQLite call failed: {e}")))?;
        self.conn = Some(conn);
        result
    }

    pub(super) async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, Failure> {
        let (sql, params) = (sql.to_string(), bind(params)?);
        self.with(move |conn| {
            let mut stmt = conn.prepare(&sql).map_err(classify)?;
            let names: Vec<String> = stmt
                .column_names()
                .into_iter()
                .map(str::to_string)
                .collect();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(classify)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(classify)? {
                let mut map = Map::new();
                for (i, name) in names.iter().enumerate() {
                    let value: SqlValue = row.get(i).map_err(classify)?;
                    map.insert(name.clone(), to_json(value));
                }
                out.push(map);
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, Failure> {
        let (sql, params) = (sql.to_string(), bind(params)?);
        self.with(move |conn| {
            let mut stmt = conn.prepare(&sql).map_err(classify)?;
            let changed = stmt
                .execute(rusqlite::params_from_iter(params))
                .map_err(classify)?;
            Ok(changed as u64)
        })
        .await
    }

    pub(super) async fn batch(&mut self, command: TxCommand) -> Result<(), Failure> {
        let sql = match command {
            TxCommand::Begin => "BEGIN",
            TxCommand::Commit => "COMMIT",
            TxCommand::Rollback => "ROLLBACK",
        };
        self.with(move |conn| conn.execute_batch(sql).map_err(classify))
            .await
    }

    pub(super) async fn call_procedure(
        &mut self,
        _procedure: &str,
        _params: &[Value],
    ) -> Result<Rows, Failure> {
        Err(Failure::permanent(
            codes::DATABASE,
            "SQLite has no stored procedures",
        ))
    }
}

fn bind(params: &[Value]) -> Result<Vec<SqlValue>, Failure> {
    params
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(match v {
                Value::Null => SqlValue::Null,
                Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => SqlValue::Integer(i),
                    None => SqlValue::Real(
                        n.as_f64()
                            .ok_or_else(|| bad_param(i, "number out of range"))?,
                    ),
                },
                other => SqlValue::Text(json_text(other)),
            })
        })
        .collect()
}

fn to_json(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::from(i),
        SqlValue::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        SqlValue::Text(s) => Value::String(s),
        SqlValue::Blob(b) => Value::Array(b.into_iter().map(Value::from).collect()),
    }
}

/// A rusqlite error → failure: busy/locked/I/O are transient, the rest permanent.
pub(super) fn classify(err: rusqlite::Error) -> Failure {
    match &err {
        rusqlite::Error::SqliteFailure(e, _) => {
            let class = sqlite_code(e.extended_code & 0xff);
            Failure {
                class,
                code: codes::DATABASE.into(),
                status: None,
                message: err.to_string(),
                retry_after: None,
            }
        }
        _ => Failure::permanent(codes::DATABASE, err.to_string()),
    }
}
