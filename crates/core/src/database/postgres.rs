//! PostgreSQL through tokio-postgres (bb8-postgres's connection manager, our pool). Parameters are converted to the
//! types the server infers for the statement, so a script can pass `"2026-11-28T10:00:00Z"`
//! for a `timestamptz` or `3` for a `float8`.

use super::{Rows, TxCommand, bad_param, json_text};
use crate::classify::sqlstate;
use crate::config::DatabaseDef;
use crate::error::{Failure, FailureClass, codes};
use bb8_postgres::PostgresConnectionManager;
use serde_json::{Map, Value};
use std::error::Error as _;
use std::path::Path;
use std::str::FromStr;
use tokio_postgres::Row;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres_rustls::MakeRustlsConnect;

type Manager = PostgresConnectionManager<MakeRustlsConnect>;
type Client = super::pool::Pooled<Manager>;

pub(super) struct Pool {
    pool: std::sync::Arc<super::pool::ManagedPool<Manager>>,
}

impl Pool {
    /// `url` may carry libpq's `sslmode` (`disable` — the default here —, `prefer`,
    /// `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file, relative to
    /// the config file). Whenever TLS is used the server's certificate is verified —
    /// against `sslrootcert`, or the public web roots without it — and its name checked:
    /// rustls has no "encrypt but trust anyone" mode, so `require` is as strict as
    /// `verify-full`.
    pub(super) fn new(url: &str, def: &DatabaseDef, base_dir: &Path) -> Result<Pool, String> {
        let (url, mode, roots) = tls_settings(url, base_dir)?;
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        config.connect_timeout(def.timeout);
        match mode {
            Some(mode) => {
                config.ssl_mode(mode);
            }
            // Key-value strings (`host=… sslmode=require`) keep what they say; without
            // `sslmode` anywhere, plain as before.
            None if !url.contains("sslmode=") => {
                config.ssl_mode(SslMode::Disable);
            }
            None => {}
        }
        crate::tls::install_crypto_provider();
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let pool = super::pool::ManagedPool::new(
            PostgresConnectionManager::new(config, MakeRustlsConnect::new(tls)),
            def.timeout,
        );
        Ok(Pool { pool })
    }

    pub(super) async fn get(&self) -> Result<Conn, Failure> {
        let client = self.pool.get().await.map_err(|e| match e {
            super::pool::CheckoutError::Connect(e) => classify(&e),
            super::pool::CheckoutError::TimedOut => {
                Failure::transient(codes::TIMEOUT, "timed out waiting for a connection")
            }
        })?;
        Ok(Conn { client })
    }
}

pub(super) struct Conn {
    client: Client,
}

impl Conn {
    pub(super) async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, Failure> {
        let stmt = self.client.prepare(sql).await.map_err(|e| classify(&e))?;
        let bound = bind(stmt.params(), params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self
            .client
            .query(&stmt, &refs)
            .await
            .map_err(|e| classify(&e))?;
        rows.iter().map(row_to_json).collect()
    }

    pub(super) async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, Failure> {
        let stmt = self.client.prepare(sql).await.map_err(|e| classify(&e))?;
        let bound = bind(stmt.params(), params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.client
            .execute(&stmt, &refs)
            .await
            .map_err(|e| classify(&e))
    }

    pub(super) async fn batch(&mut self, command: TxCommand) -> Result<(), Failure> {
        let sql = match command {
            TxCommand::Begin => "BEGIN",
            TxCommand::Commit => "COMMIT",
            TxCommand::Rollback => "ROLLBACK",
        };
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| classify(&e))
    }

    /// Closes the connection (the server rolls back its open transaction).
    pub(super) fn abandon_transaction(self) {
        self.client.discard();
    }

    /// Procedures (`CREATE PROCEDURE`) are `CALL`ed; functions are selected from, so
    /// set-returning functions give their rows.
    pub(super) async fn call_procedure(
        &mut self,
        procedure: &str,
        params: &[Value],
    ) -> Result<Rows, Failure> {
        let (schema, name) = match procedure.split_once('.') {
            Some((s, n)) => (Some(s), n),
            None => (None, procedure),
        };
        let kind = self
            .client
            .query(
            "SELECT p.prokind::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.proname = $1 AND ($2::text IS NULL OR n.nspname = $2) LIMIT 1",
            &[&name, &schema],
        )
        .await
        .map_err(|e| classify(&e))?;
        let Some(kind) = kind.first().map(|r| r.get::<_, String>(0)) else {
            return Err(Failure::permanent(
                codes::DATABASE,
                format!("no procedure or function named `{procedure}`"),
            ));
        };
        let placeholders: Vec<String> = (1..=params.len()).map(|i| format!("${i}")).collect();
        let sql = if kind == "p" {
            format!("CALL {procedure}({})", placeholders.join(", "))
        } else {
            format!("SELECT * FROM {procedure}({})", placeholders.join(", "))
        };
        self.query(&sql, params).await
    }
}

/// NULL for a parameter of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

type Param = Box<dyn ToSql + Sync + Send>;

fn bind(types: &[Type], params: &[Value]) -> Result<Vec<Param>, Failure> {
    if types.len() != params.len() {
        return Err(Failure::permanent(
            codes::DATABASE,
            format!(
                "the statement takes {} parameter(s), {} given",
                types.len(),
                params.len()
            ),
        ));
    }
    types
        .iter()
        .zip(params)
        .enumerate()
        .map(|(i, (ty, value))| convert(i, ty, value))
        .collect()
}

fn convert(i: usize, ty: &Type, value: &Value) -> Result<Param, Failure> {
    if value.is_null() {
        return Ok(Box::new(Null));
    }
    let want = |what: &str| {
        bad_param(
            i,
            format!("expected {what} for a `{ty}` column, found {value}"),
        )
    };
    let int = || value.as_i64().ok_or_else(|| want("an integer"));
    Ok(match *ty {
        Type::BOOL => Box::new(value.as_bool().ok_or_else(|| want("a boolean"))?),
        Type::INT2 => Box::new(i16::try_from(int()?).map_err(|_| want("a smallint"))?),
        Type::INT4 => Box::new(i32::try_from(int()?).map_err(|_| want("an integer"))?),
        Type::INT8 => Box::new(int()?),
        Type::FLOAT4 => Box::new(value.as_f64().ok_or_else(|| want("a number"))? as f32),
        Type::FLOAT8 => Box::new(value.as_f64().ok_or_else(|| want("a number"))?),
        Type::TIMESTAMPTZ => {
            let text = value
                .as_str()
                .ok_or_else(|| want("an RFC 3339 date-time"))?;
            Box::new(
                chrono::DateTime::parse_from_rfc3339(text)
                    .map_err(|_| want("an RFC 3339 date-time"))?
                    .with_timezone(&chrono::Utc),
            )
        }
        Type::TIMESTAMP => {
            let text = value.as_str().ok_or_else(|| want("a date-time"))?;
            let parsed = chrono::DateTime::parse_from_rfc3339(text)
                .map(|d| d.naive_utc())
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
                .map_err(|_| want("a date-time"))?;
            Box::new(parsed)
        }
        Type::DATE => {
            let text = value.as_str().ok_or_else(|| want("a date"))?;
            Box::new(
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| want("a date (YYYY-MM-DD)"))?,
            )
        }
        Type::JSON | Type::JSONB => Box::new(value.clone()),
        _ => Box::new(json_text(value)),
    })
}

fn row_to_json(row: &Row) -> Result<Map<String, Value>, Failure> {
    let mut map = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let unsupported = || {
            Failure::permanent(
                codes::DATABASE,
                format!(
                    "column `{}` has type `{ty}`, which scripts cannot read; cast it in SQL (e.g. `::text` or `::float8`)",
                    column.name()
                ),
            )
        };
        let get = |e: tokio_postgres::Error| {
            Failure::permanent(codes::DATABASE, format!("column `{}`: {e}", column.name()))
        };
        let value = match *ty {
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map_err(get)?
                .map(Value::from),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map_err(get)?
                .map(Value::from),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map_err(get)?
                .map(Value::from),
            Type::INT8 => row
                .try_get::<_, Option<i64>>(i)
                .map_err(get)?
                .map(Value::from),
            Type::OID => row
                .try_get::<_, Option<u32>>(i)
                .map_err(get)?
                .map(Value::from),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)
                .map_err(get)?
                .map(|f| Value::from(f64::from(f))),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(i)
                .map_err(get)?
                .map(Value::from),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::CHAR => {
                row.try_get::<_, Option<String>>(i)
                    .map_err(get)?
                    .map(Value::from)
            }
            Type::TIMESTAMPTZ => row
                .try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
                .map_err(get)?
                .map(|d| Value::from(d.to_rfc3339())),
            Type::TIMESTAMP => row
                .try_get::<_, Option<chrono::NaiveDateTime>>(i)
                .map_err(get)?
                .map(|d| Value::from(d.format("%Y-%m-%dT%H:%M:%S%.f").to_string())),
            Type::DATE => row
                .try_get::<_, Option<chrono::NaiveDate>>(i)
                .map_err(get)?
                .map(|d| Value::from(d.to_string())),
            Type::JSON | Type::JSONB => row.try_get::<_, Option<Value>>(i).map_err(get)?,
            Type::UUID => row
                .try_get::<_, Option<uuid::Uuid>>(i)
                .map_err(get)?
                .map(|u| Value::from(u.to_string())),
            Type::VOID => None,
            _ => return Err(unsupported()),
        };
        map.insert(column.name().to_string(), value.unwrap_or(Value::Null));
    }
    Ok(map)
}

/// Takes libpq's `sslmode` and `sslrootcert` out of a `postgres://` URL (tokio-postgres
/// knows neither `verify-*` nor `sslrootcert`): the URL left, the mode if given, and
/// the roots.
fn tls_settings(
    url: &str,
    base_dir: &Path,
) -> Result<(String, Option<SslMode>, rustls::RootCertStore), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = None;
    let mut root_file = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" | "verify-ca" | "verify-full" => SslMode::Require,
                    other => {
                        return Err(format!(
                            "sslmode `{other}`: use disable, prefer, require, verify-ca or verify-full"
                        ));
                    }
                })
            }
            "sslrootcert" => {
                root_file = Some(base_dir.join(value));
                // A root certificate means "verify against it": TLS unless told otherwise.
                mode = mode.or(Some(SslMode::Require));
            }
            _ => kept.push(pair),
        }
    }
    let mut roots = rustls::RootCertStore::empty();
    match root_file {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {}: no usable certificate",
                    path.display()
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, mode, roots))
}

/// A tokio-postgres error → failure: SQLSTATE decides; errors without one (the
/// connection broke, the server is unreachable) are transient.
pub(super) fn classify(err: &tokio_postgres::Error) -> Failure {
    let message = match err.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => crate::classify::error_chain(err),
    };
    match err.code() {
        Some(code) => {
            let class = sqlstate(code.code());
            Failure {
                class,
                code: codes::DATABASE.into(),
                status: None,
                message: format!("{message} (SQLSTATE {})", code.code()),
                retry_after: None,
            }
        }
        None if err.source().is_some_and(|s| s.is::<std::io::Error>()) || err.is_closed() => {
            Failure::transient(codes::CONNECTION, message)
        }
        None => {
            let class = if message.contains("error connecting") || message.contains("timed out") {
                FailureClass::Transient
            } else {
                FailureClass::Permanent
            };
            Failure {
                class,
                code: codes::DATABASE.into(),
                status: None,
                message,
                retry_after: None,
            }
        }
    }
}
