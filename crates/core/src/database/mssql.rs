//! MS SQL Server through tiberius 0.12 and a bb8-tiberius pool (`[5.6-1]`). Connection
//! targets come as an ADO.NET string (`Server=tcp:host,1433;Database=…;User Id=…;
//! Password=…;TrustServerCertificate=true`) or a URL
//! (`mssql://user:pw@host:1433/db?trust_cert=true&encrypt=required&instance=NAME`).
//! Parameters are positional: `@P1`, `@P2`, … in the SQL.

use super::{Rows, TxCommand, bad_param, json_text};
use crate::classify::mssql_error;
use crate::config::{DatabaseDef, Secret};
use crate::error::{Failure, FailureClass, codes};
use serde_json::{Map, Value};
use tiberius::{AuthMethod, ColumnData, Config, EncryptionLevel, FromSql, IntoSql, Query};

type Manager = bb8_tiberius::ConnectionManager;
pub(super) type Client = super::pool::Pooled<Manager>;

/// A connection target parsed from an `mssql://` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct MssqlTarget {
    /// Server host.
    pub host: String,
    /// Port (1433 by default).
    pub port: u16,
    /// Named instance (resolved through SQL Browser).
    pub instance: Option<String>,
    /// Database.
    pub database: Option<String>,
    /// SQL login.
    pub user: Option<String>,
    /// Its password.
    pub password: Option<Secret>,
    /// Accept any server certificate.
    pub trust_cert: bool,
    /// Encryption level: `off`, `on`, `required` or `not_supported`.
    pub encrypt: EncryptionLevel,
    /// Application name reported to the server.
    pub app_name: Option<String>,
}

impl MssqlTarget {
    /// Parses `mssql://user:pw@host:port/db?trust_cert=true&…`. The error never
    /// contains the password.
    pub fn parse(url: &str) -> Result<MssqlTarget, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("invalid MS SQL URL: {e}"))?;
        if !matches!(parsed.scheme(), "mssql" | "sqlserver") {
            return Err(format!("expected mssql://, found {}://", parsed.scheme()));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the MS SQL URL has no host")?
            .to_string();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut target = MssqlTarget {
            host,
            port: parsed.port().unwrap_or(1433),
            instance: None,
            database: Some(decode(parsed.path().trim_start_matches('/'))).filter(|d| !d.is_empty()),
            user: Some(decode(parsed.username())).filter(|u| !u.is_empty()),
            password: parsed.password().map(|p| Secret::new(decode(p))),
            trust_cert: false,
            encrypt: EncryptionLevel::Required,
            app_name: None,
        };
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "trust_cert" | "trustservercertificate" => {
                    target.trust_cert = matches!(value.as_ref(), "true" | "yes" | "1")
                }
                "encrypt" => {
                    target.encrypt = match value.as_ref() {
                        "off" | "false" | "no" => EncryptionLevel::Off,
                        "on" | "true" | "yes" => EncryptionLevel::On,
                        "required" | "strict" => EncryptionLevel::Required,
                        "not_supported" => EncryptionLevel::NotSupported,
                        other => {
                            return Err(format!(
                                "unknown encrypt value `{other}` (use off, on, required or not_supported)"
                            ));
                        }
                    }
                }
                "instance" => target.instance = Some(value.into_owned()),
                "app_name" | "application_name" => target.app_name = Some(value.into_owned()),
                other => return Err(format!("unknown MS SQL URL option `{other}`")),
            }
        }
        Ok(target)
    }

    /// The tiberius configuration.
    pub fn to_config(&self) -> Config {
        let mut config = Config::new();
        config.host(&self.host);
        config.port(self.port);
        if let Some(instance) = &self.instance {
            config.instance_name(instance);
        }
        if let Some(db) = &self.database {
            config.database(db);
        }
        if let Some(app) = &self.app_name {
            config.application_name(app);
        }
        if let Some(user) = &self.user {
            config.authentication(AuthMethod::sql_server(
                user,
                self.password.as_ref().map_or("", |p| p.expose()),
            ));
        }
        if self.trust_cert {
            config.trust_cert();
        }
        config.encryption(self.encrypt);
        config
    }
}

pub(super) struct Pool {
    pool: std::sync::Arc<super::pool::ManagedPool<Manager>>,
}

impl Pool {
    pub(super) fn from_url(url: &str, def: &DatabaseDef) -> Result<Pool, String> {
        Ok(Pool::with_config(MssqlTarget::parse(url)?.to_config(), def))
    }

    pub(super) fn from_ado(ado: &str, def: &DatabaseDef) -> Result<Pool, String> {
        // tiberius' own error text can echo the string; keep the password out of it.
        let config = Config::from_ado_string(ado)
            .map_err(|_| "invalid ADO.NET connection string".to_string())?;
        Ok(Pool::with_config(config, def))
    }

    fn with_config(config: Config, def: &DatabaseDef) -> Pool {
        Pool {
            pool: super::pool::ManagedPool::new(
                bb8_tiberius::ConnectionManager::new(config),
                def.timeout,
            ),
        }
    }

    pub(super) async fn get(&self) -> Result<Conn, Failure> {
        let client = self.pool.get().await.map_err(|e| match e {
            super::pool::CheckoutError::Connect(bb8_tiberius::Error::Tiberius(e)) => classify(&e),
            super::pool::CheckoutError::Connect(bb8_tiberius::Error::Io(e)) => {
                crate::classify::io_error(&e)
            }
            super::pool::CheckoutError::TimedOut => {
                Failure::transient(codes::TIMEOUT, "timed out waiting for a connection")
            }
        })?;
        Ok(Conn {
            client: Some(client),
            broken: false,
        })
    }
}

pub(super) struct Conn {
    client: Option<Client>,
    /// An I/O error was seen: tiberius cannot tell the pool the connection broke, so it
    /// is closed instead of returned.
    broken: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.broken
            && let Some(client) = self.client.take()
        {
            client.discard();
        }
    }
}

impl Conn {
    fn client(&mut self) -> Result<&mut Client, Failure> {
        self.client
            .as_mut()
            .ok_or_else(|| Failure::permanent(codes::DATABASE, "connection closed"))
    }

    /// Classifies an error, remembering a broken connection.
    fn fail(&mut self, err: &tiberius::error::Error) -> Failure {
        if matches!(err, tiberius::error::Error::Io { .. }) {
            self.broken = true;
        }
        classify(err)
    }

    pub(super) async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, Failure> {
        let query = bind(sql, params)?;
        let result = {
            let client = self.client()?;
            match query.query(&mut **client).await {
                Ok(stream) => stream.into_first_result().await,
                Err(e) => Err(e),
            }
        };
        let rows = result.map_err(|e| self.fail(&e))?;
        rows.into_iter().map(row_to_json).collect()
    }

    pub(super) async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, Failure> {
        let query = bind(sql, params)?;
        let client = self.client()?;
        match query.execute(&mut **client).await {
            Ok(result) => Ok(result.total()),
            Err(e) => Err(self.fail(&e)),
        }
    }

    pub(super) async fn batch(&mut self, command: TxCommand) -> Result<(), Failure> {
        let sql = match command {
            TxCommand::Begin => "BEGIN TRANSACTION",
            TxCommand::Commit => "COMMIT TRANSACTION",
            TxCommand::Rollback => "ROLLBACK TRANSACTION",
        };
        let client = self.client()?;
        let result = match client.simple_query(sql).await {
            Ok(stream) => stream.into_results().await.map(|_| ()),
            Err(e) => Err(e),
        };
        result.map_err(|e| self.fail(&e))
    }

    pub(super) async fn call_procedure(
        &mut self,
        procedure: &str,
        params: &[Value],
    ) -> Result<Rows, Failure> {
        self.query(&procedure_sql(procedure, params.len()), params)
            .await
    }

    /// Closes the connection (the server rolls back its open transaction).
    pub(super) fn abandon_transaction(mut self) {
        if let Some(client) = self.client.take() {
            client.discard();
        }
    }
}

/// `EXEC name @P1, @P2, …`.
pub(super) fn procedure_sql(procedure: &str, params: usize) -> String {
    let placeholders: Vec<String> = (1..=params).map(|i| format!("@P{i}")).collect();
    format!("EXEC {procedure} {}", placeholders.join(", "))
        .trim_end()
        .to_string()
}

/// A JSON parameter as the TDS value it is sent as: `null` → NULL (NVARCHAR), booleans
/// → BIT, integers → BIGINT, other numbers → FLOAT, strings as they are and lists and
/// objects as their JSON text → NVARCHAR.
pub(super) fn to_column(index: usize, value: &Value) -> Result<ColumnData<'static>, Failure> {
    Ok(match value {
        Value::Null => Option::<String>::None.into_sql(),
        Value::Bool(b) => b.into_sql(),
        Value::Number(n) => match n.as_i64() {
            Some(v) => v.into_sql(),
            None => n
                .as_f64()
                .ok_or_else(|| bad_param(index, "number out of range"))?
                .into_sql(),
        },
        other => json_text(other).into_sql(),
    })
}

/// A converted parameter, bound as it is.
struct Bound(ColumnData<'static>);

impl<'a> IntoSql<'a> for Bound {
    fn into_sql(self) -> ColumnData<'a> {
        self.0
    }
}

/// Binds JSON parameters positionally (`@P1`, `@P2`, …).
pub(super) fn bind<'a>(sql: &'a str, params: &[Value]) -> Result<Query<'a>, Failure> {
    let mut query = Query::new(sql);
    for (i, value) in params.iter().enumerate() {
        query.bind(Bound(to_column(i, value)?));
    }
    Ok(query)
}

/// One column value → JSON.
pub(super) fn column_to_json(data: ColumnData<'static>) -> Result<Value, String> {
    let date_time = |d: &ColumnData<'static>| {
        chrono::NaiveDateTime::from_sql(d)
            .map(|v| v.map(|v| Value::from(v.format("%Y-%m-%dT%H:%M:%S%.f").to_string())))
    };
    let value = match &data {
        ColumnData::U8(v) => v.map(Value::from),
        ColumnData::I16(v) => v.map(Value::from),
        ColumnData::I32(v) => v.map(Value::from),
        ColumnData::I64(v) => v.map(Value::from),
        ColumnData::F32(v) => v.map(|f| Value::from(f64::from(f))),
        ColumnData::F64(v) => v.map(Value::from),
        ColumnData::Bit(v) => v.map(Value::from),
        ColumnData::String(v) => v.as_ref().map(|s| Value::from(s.as_ref())),
        ColumnData::Guid(v) => v.map(|u| Value::from(u.to_string())),
        ColumnData::Numeric(v) => v.map(|n| Value::from(f64::from(n))),
        ColumnData::Xml(v) => v.as_ref().map(|x| Value::from(x.to_string())),
        ColumnData::Binary(v) => v
            .as_ref()
            .map(|b| Value::Array(b.iter().map(|x| Value::from(*x)).collect())),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            date_time(&data).map_err(|e| e.to_string())?
        }
        ColumnData::Date(_) => chrono::NaiveDate::from_sql(&data)
            .map_err(|e| e.to_string())?
            .map(|d| Value::from(d.to_string())),
        ColumnData::Time(_) => chrono::NaiveTime::from_sql(&data)
            .map_err(|e| e.to_string())?
            .map(|t| Value::from(t.to_string())),
        // Read with its own offset: tiberius' `DateTime<Utc>` reading subtracts the
        // offset from a time TDS already carries in UTC (off by the offset).
        ColumnData::DateTimeOffset(_) => chrono::DateTime::<chrono::FixedOffset>::from_sql(&data)
            .map_err(|e| e.to_string())?
            .map(|d| Value::from(d.to_rfc3339())),
    };
    Ok(value.unwrap_or(Value::Null))
}

fn row_to_json(row: tiberius::Row) -> Result<Map<String, Value>, Failure> {
    let names: Vec<String> = row.columns().iter().map(|c| c.name().to_string()).collect();
    let mut map = Map::new();
    for (name, data) in names.into_iter().zip(row) {
        let value = column_to_json(data)
            .map_err(|e| Failure::permanent(codes::DATABASE, format!("column `{name}`: {e}")))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// A tiberius error → failure: server error numbers decide (deadlocks, timeouts and
/// unavailable databases are transient); I/O and routing are transient; protocol,
/// conversion and encoding errors are permanent.
pub(super) fn classify(err: &tiberius::error::Error) -> Failure {
    use tiberius::error::Error as E;
    let message = err.to_string();
    let class = match err {
        E::Server(token) => mssql_error(token.code()),
        E::Io { .. } | E::Routing { .. } | E::Tls(_) => FailureClass::Transient,
        _ => FailureClass::Permanent,
    };
    let code = if matches!(err, E::Io { .. }) {
        codes::CONNECTION
    } else {
        codes::DATABASE
    };
    Failure {
        class,
        code: code.into(),
        status: None,
        message,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureClass::{Permanent, Transient};

    #[test]
    fn urls_become_targets() {
        let t = MssqlTarget::parse("mssql://sa:p%40ss@db.plant:1444/Historian?trust_cert=true&encrypt=on&app_name=switchyard").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("db.plant", 1444));
        assert_eq!(t.database.as_deref(), Some("Historian"));
        assert_eq!(t.user.as_deref(), Some("sa"));
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert!(t.trust_cert);
        assert_eq!(t.encrypt, EncryptionLevel::On);
        assert_eq!(t.to_config().get_addr(), "db.plant:1444");

        let d = MssqlTarget::parse("sqlserver://host/db?instance=SQLEXPRESS").unwrap();
        assert_eq!(
            (d.port, d.instance.as_deref(), d.encrypt),
            (1433, Some("SQLEXPRESS"), EncryptionLevel::Required)
        );
        assert!(!d.trust_cert);
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_the_password() {
        for url in [
            "mssql://u:hunter2@/db",
            "mssql://u:hunter2@h/db?encrypt=maybe",
            "mssql://u:hunter2@h/db?colour=blue",
            "postgres://u:hunter2@h/db",
        ] {
            let err = MssqlTarget::parse(url).unwrap_err();
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn ado_strings_are_accepted() {
        let def = crate::config::DatabaseDef {
            target: crate::config::DatabaseTarget::Ado(crate::config::SecretRef::Literal(
                String::new(),
            )),
            max_connections: 2,
            timeout: std::time::Duration::from_secs(1),
            retry: crate::RetryPolicy::default(),
            pace: Default::default(),
        };
        let config = Config::from_ado_string("Server=tcp:db.plant,1433;Database=Historian;User Id=sa;Password=secret;TrustServerCertificate=true").unwrap();
        assert_eq!(config.get_addr(), "db.plant:1433");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(
                Pool::from_ado("Server=tcp:db.plant,1433;User Id=sa;Password=secret", &def).is_ok()
            );
            let err = Pool::from_ado("Server=tcp:db.plant,notaport;Password=secret", &def)
                .err()
                .unwrap();
            assert!(!err.contains("secret"), "{err}");
        });
    }

    #[test]
    fn parameters_bind_positionally_and_procedures_use_exec() {
        assert_eq!(
            procedure_sql("dbo.LogEvent", 2),
            "EXEC dbo.LogEvent @P1, @P2"
        );
        assert_eq!(procedure_sql("dbo.Ping", 0), "EXEC dbo.Ping");
        let params = [
            Value::Null,
            Value::from(true),
            Value::from(3),
            Value::from(i64::MIN),
            Value::from(1.5),
            Value::from(u64::MAX),
            Value::from("x"),
            serde_json::json!([1, "a"]),
            serde_json::json!({ "k": 2 }),
        ];
        let columns: Vec<ColumnData<'static>> = params
            .iter()
            .enumerate()
            .map(|(i, v)| to_column(i, v).unwrap())
            .collect();
        assert_eq!(
            columns,
            vec![
                ColumnData::String(None),
                ColumnData::Bit(Some(true)),
                ColumnData::I64(Some(3)),
                ColumnData::I64(Some(i64::MIN)),
                ColumnData::F64(Some(1.5)),
                // Beyond BIGINT: sent as FLOAT rather than refused.
                ColumnData::F64(Some(u64::MAX as f64)),
                ColumnData::String(Some("x".into())),
                ColumnData::String(Some("[1,\"a\"]".into())),
                ColumnData::String(Some("{\"k\":2}".into())),
            ]
        );
        assert!(bind("INSERT INTO t VALUES (@P1, @P2)", &params[..2]).is_ok());
    }

    #[test]
    fn column_values_map_to_json() {
        use chrono::{NaiveDate, TimeZone};
        let at = NaiveDate::from_ymd_opt(2026, 11, 28)
            .unwrap()
            .and_hms_milli_opt(10, 0, 5, 250)
            .unwrap();
        let guid = uuid::Uuid::parse_str("0192f0c4-5b7e-7cc0-8d1e-3a1f2b4c5d6e").unwrap();
        let cases: Vec<(ColumnData<'static>, Value)> = vec![
            (ColumnData::U8(Some(255)), Value::from(255)),
            (ColumnData::I16(Some(-7)), Value::from(-7)),
            (ColumnData::I32(Some(7)), Value::from(7)),
            (ColumnData::I64(Some(i64::MAX)), Value::from(i64::MAX)),
            (ColumnData::F32(Some(0.5)), Value::from(0.5)),
            (ColumnData::F64(Some(-2.25)), Value::from(-2.25)),
            (ColumnData::Bit(Some(true)), Value::from(true)),
            (ColumnData::String(Some("a".into())), Value::from("a")),
            (ColumnData::Guid(Some(guid)), Value::from(guid.to_string())),
            (
                ColumnData::Numeric(Some(tiberius::numeric::Numeric::new_with_scale(12345, 2))),
                Value::from(123.45),
            ),
            (
                ColumnData::Binary(Some(vec![1u8, 2, 255].into())),
                serde_json::json!([1, 2, 255]),
            ),
            (at.into_sql(), Value::from("2026-11-28T10:00:05.250")),
            (at.date().into_sql(), Value::from("2026-11-28")),
            (
                // DATETIMEOFFSET: the same instant, with its own offset.
                chrono::FixedOffset::east_opt(3600)
                    .unwrap()
                    .from_utc_datetime(&at)
                    .into_sql(),
                Value::from("2026-11-28T11:00:05.250+01:00"),
            ),
            (ColumnData::F64(None), Value::Null),
            (ColumnData::String(None), Value::Null),
        ];
        for (column, expected) in cases {
            let shown = format!("{column:?}");
            assert_eq!(column_to_json(column).unwrap(), expected, "{shown}");
        }
    }

    #[test]
    fn errors_are_classified() {
        let io = tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionRefused,
            message: "refused".into(),
        };
        assert_eq!(
            (classify(&io).class, classify(&io).code.as_str()),
            (Transient, codes::CONNECTION)
        );
        let conversion = tiberius::error::Error::Conversion("bad".into());
        assert_eq!(
            (
                classify(&conversion).class,
                classify(&conversion).code.as_str()
            ),
            (Permanent, codes::DATABASE)
        );
        let reset = tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionReset,
            message: "reset".into(),
        };
        assert_eq!(classify(&reset).class, Transient);
        let routing = tiberius::error::Error::Routing {
            host: "replica".into(),
            port: 1433,
        };
        assert_eq!(
            (classify(&routing).class, classify(&routing).code.as_str()),
            (Transient, codes::DATABASE)
        );
        let protocol = tiberius::error::Error::Protocol("unexpected token".into());
        assert_eq!(classify(&protocol).class, Permanent);
        // Server errors go by number (crate::classify::mssql_error): deadlock and lock
        // timeout transient, constraint and syntax permanent.
        assert_eq!(
            [1205, 1222, 40613, 2627, 547, 102, 208].map(mssql_error),
            [
                Transient, Transient, Transient, Permanent, Permanent, Permanent, Permanent
            ]
        );
    }

    /// An unreachable server is a transient failure (CachedWrite buffers it).
    #[tokio::test]
    async fn an_unreachable_server_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let def = crate::config::DatabaseDef {
            target: crate::config::DatabaseTarget::Url(crate::config::SecretRef::Literal(format!(
                "mssql://sa:pw@127.0.0.1:{port}/db?trust_cert=true"
            ))),
            max_connections: 1,
            timeout: std::time::Duration::from_secs(2),
            retry: crate::RetryPolicy::default(),
            pace: Default::default(),
        };
        let pool =
            super::super::DatabasePool::open("Historian", &def, std::path::Path::new(".")).unwrap();
        let err = pool
            .execute("INSERT INTO t VALUES (@P1)", &[Value::from(1)], None)
            .await
            .unwrap_err();
        assert_eq!(err.class, Transient, "{err:?}");
    }

    /// Runs against a real server when `SWITCHYARD_TEST_MSSQL` holds an ADO string or an
    /// `mssql://` URL (see docs/operations.md).
    #[tokio::test]
    async fn real_server_when_configured() {
        let Ok(target) = std::env::var("SWITCHYARD_TEST_MSSQL") else {
            eprintln!(
                "SWITCHYARD_TEST_MSSQL not set: MS SQL integration skipped (no SQL Server can run here)"
            );
            return;
        };
        let secret = crate::config::SecretRef::Literal(target.clone());
        let def = crate::config::DatabaseDef {
            target: if target.starts_with("mssql://") || target.starts_with("sqlserver://") {
                crate::config::DatabaseTarget::Url(secret)
            } else {
                crate::config::DatabaseTarget::Ado(secret)
            },
            max_connections: 2,
            timeout: std::time::Duration::from_secs(15),
            retry: crate::RetryPolicy::default(),
            pace: Default::default(),
        };
        let pool = super::super::DatabasePool::open("mssql", &def, std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("SWITCHYARD_TEST_MSSQL is set but unusable: {e}"));
        // Set means "test against it": an unreachable server fails loudly, in CI or not.
        let mut conn = pool.connect(None).await.unwrap_or_else(|e| {
            panic!("SWITCHYARD_TEST_MSSQL is set but the server is unreachable: {e}")
        });
        conn.execute(
            "IF OBJECT_ID('tempdb..#sy') IS NOT NULL DROP TABLE #sy",
            &[],
        )
        .await
        .unwrap();
        conn.execute(
            "CREATE TABLE #sy (id INT, name NVARCHAR(50), at DATETIME2)",
            &[],
        )
        .await
        .unwrap();
        conn.begin().await.unwrap();
        conn.execute(
            "INSERT INTO #sy VALUES (@P1, @P2, @P3)",
            &[
                Value::from(1),
                Value::from("a"),
                Value::from("2026-11-28T10:00:00"),
            ],
        )
        .await
        .unwrap();
        conn.rollback().await.unwrap();
        conn.execute(
            "INSERT INTO #sy VALUES (@P1, @P2, @P3)",
            &[Value::from(2), Value::from("b"), Value::Null],
        )
        .await
        .unwrap();
        let rows = conn
            .query("SELECT id, name FROM #sy ORDER BY id", &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["id"], Value::from(2));
        conn.close().await;
    }
}
