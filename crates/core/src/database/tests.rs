//! Database access against real engines: SQLite on disk and the PostgreSQL server of the
//! machine (`SWITCHYARD_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/test`).
//! In CI (`CI=true`) a missing PostgreSQL fails these tests instead of skipping them.

use super::*;
use crate::FailureClass;
use crate::RetryPolicy;
use crate::config::SecretRef;
use serde_json::json;

fn def(url: String, max_connections: u32) -> DatabaseDef {
    DatabaseDef {
        target: DatabaseTarget::Url(SecretRef::Literal(url)),
        max_connections,
        timeout: Duration::from_secs(5),
        retry: RetryPolicy::default(),
        pace: Default::default(),
    }
}

fn sqlite_pool(dir: &Path) -> DatabasePool {
    DatabasePool::open("Historian", &def("sqlite://historian.db".into(), 4), dir).unwrap()
}

pub(crate) fn pg_url() -> String {
    std::env::var("SWITCHYARD_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A PostgreSQL pool, or `None` (test skipped) when no server answers outside CI.
async fn pg_pool(max_connections: u32) -> Option<DatabasePool> {
    let pool = DatabasePool::open("pg", &def(pg_url(), max_connections), Path::new(".")).unwrap();
    match pool.connect(None).await {
        Ok(conn) => {
            conn.close().await;
            Some(pool)
        }
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "PostgreSQL not reachable at {} ({e}); skipped outside CI",
                pg_url()
            );
            None
        }
        Err(e) => panic!(
            "PostgreSQL is required in CI but not reachable at {}: {e}",
            pg_url()
        ),
    }
}

fn table(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &crate::MessageId::new().to_string().replace('-', "")[20..]
    )
}

#[tokio::test]
async fn sqlite_queries_updates_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(dir.path());
    let mut conn = pool.connect(None).await.unwrap();
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, tank TEXT, level REAL, ok INTEGER, at TEXT, note TEXT)", &[]).await.unwrap();
    let n = conn
        .execute(
            "INSERT INTO events (tank, level, ok, at, note) VALUES (?1, ?2, ?3, ?4, ?5)",
            &[
                json!("T-101"),
                json!(91.5),
                json!(true),
                json!("2026-11-28T11:00:00Z"),
                Value::Null,
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let rows = conn
        .query(
            "SELECT tank, level, ok, at, note FROM events WHERE tank = ?1",
            &[json!("T-101")],
        )
        .await
        .unwrap();
    assert_eq!(rows, vec![json!({"tank": "T-101", "level": 91.5, "ok": 1, "at": "2026-11-28T11:00:00Z", "note": null}).as_object().unwrap().clone()]);
    conn.close().await;
}

#[tokio::test]
async fn sqlite_transactions_commit_roll_back_and_close_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(dir.path());
    let mut conn = pool.connect(None).await.unwrap();
    conn.execute("CREATE TABLE t (v INTEGER)", &[])
        .await
        .unwrap();
    conn.begin().await.unwrap();
    conn.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    conn.rollback().await.unwrap();
    conn.begin().await.unwrap();
    conn.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    conn.commit().await.unwrap();
    conn.begin().await.unwrap();
    conn.execute("INSERT INTO t VALUES (3)", &[]).await.unwrap();
    conn.close().await; // never committed
    let rows = pool
        .connect(None)
        .await
        .unwrap()
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r["v"].clone()).collect::<Vec<_>>(),
        vec![json!(2)]
    );
}

#[tokio::test]
async fn sqlite_errors_are_permanent_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(dir.path());
    let mut conn = pool.connect(None).await.unwrap();
    let err = conn
        .execute("INSERT INTO nowhere VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(err.class, FailureClass::Permanent);
    assert!(
        err.message.contains("no such table: nowhere"),
        "{}",
        err.message
    );
    assert!(
        err.message.starts_with("database `Historian`"),
        "{}",
        err.message
    );
    let err = conn.commit().await.unwrap_err();
    assert!(err.message.contains("Commit without Begin"));
    let err = conn.call_procedure("p", &[]).await.unwrap_err();
    assert!(err.message.contains("no stored procedures"));
}

#[tokio::test]
async fn postgres_round_trip_with_inferred_parameter_types() {
    let Some(pool) = pg_pool(4).await else { return };
    let t = table("sy_types");
    let mut conn = pool.connect(None).await.unwrap();
    conn.execute(&format!("CREATE TABLE {t} (id serial, tank text, level float8, n int4, ok bool, at timestamptz, day date, doc jsonb)"), &[]).await.unwrap();
    conn.execute(
        &format!(
            "INSERT INTO {t} (tank, level, n, ok, at, day, doc) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ),
        &[
            json!("T-101"),
            json!(3),
            json!(7),
            json!(false),
            json!("2026-11-28T11:00:00+01:00"),
            json!("2026-11-28"),
            json!({"k": [1, 2]}),
        ],
    )
    .await
    .unwrap();
    conn.execute(
        &format!("INSERT INTO {t} (tank) VALUES ($1)"),
        &[Value::Null],
    )
    .await
    .unwrap();
    let rows = conn
        .query(
            &format!("SELECT tank, level, n, ok, at, day, doc FROM {t} ORDER BY id"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0]["tank"], json!("T-101"));
    assert_eq!(rows[0]["level"], json!(3.0));
    assert_eq!(rows[0]["n"], json!(7));
    assert_eq!(rows[0]["ok"], json!(false));
    assert_eq!(rows[0]["at"], json!("2026-11-28T10:00:00+00:00"));
    assert_eq!(rows[0]["day"], json!("2026-11-28"));
    assert_eq!(rows[0]["doc"], json!({"k": [1, 2]}));
    assert_eq!(rows[1]["tank"], Value::Null);
    let err = conn
        .query(
            &format!("SELECT 1 FROM {t} WHERE n = $1"),
            &[json!("seven")],
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("parameter 1: expected an integer"),
        "{}",
        err.message
    );
    conn.execute(&format!("DROP TABLE {t}"), &[]).await.unwrap();
    conn.close().await;
}

#[tokio::test]
async fn postgres_transactions_and_rollback_at_close() {
    let Some(pool) = pg_pool(2).await else { return };
    let t = table("sy_tx");
    let mut conn = pool.connect(None).await.unwrap();
    conn.execute(&format!("CREATE TABLE {t} (v int4)"), &[])
        .await
        .unwrap();
    conn.begin().await.unwrap();
    conn.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[json!(1)])
        .await
        .unwrap();
    conn.rollback().await.unwrap();
    conn.begin().await.unwrap();
    conn.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[json!(2)])
        .await
        .unwrap();
    conn.commit().await.unwrap();
    conn.begin().await.unwrap();
    conn.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[json!(3)])
        .await
        .unwrap();
    conn.close().await;
    let mut check = pool.connect(None).await.unwrap();
    let rows = check
        .query(&format!("SELECT v FROM {t} ORDER BY v"), &[])
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r["v"].clone()).collect::<Vec<_>>(),
        vec![json!(2)]
    );
    check
        .execute(&format!("DROP TABLE {t}"), &[])
        .await
        .unwrap();
    check.close().await;
}

#[tokio::test]
async fn postgres_procedures_and_functions() {
    let Some(pool) = pg_pool(2).await else { return };
    let t = table("sy_proc");
    let mut conn = pool.connect(None).await.unwrap();
    conn.execute(&format!("CREATE TABLE {t} (tank text, level float8)"), &[])
        .await
        .unwrap();
    conn.execute(&format!("CREATE PROCEDURE {t}_log(p_tank text, p_level float8) LANGUAGE sql AS $$ INSERT INTO {t} VALUES (p_tank, p_level) $$"), &[]).await.unwrap();
    conn.execute(&format!("CREATE FUNCTION {t}_above(p_level float8) RETURNS TABLE(tank text, level float8) LANGUAGE sql AS $$ SELECT tank, level FROM {t} WHERE level > p_level $$"), &[]).await.unwrap();
    conn.call_procedure(&format!("{t}_log"), &[json!("T-1"), json!(95.0)])
        .await
        .unwrap();
    conn.call_procedure(&format!("{t}_log"), &[json!("T-2"), json!(10.0)])
        .await
        .unwrap();
    let rows = conn
        .call_procedure(&format!("{t}_above"), &[json!(50)])
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            json!({"tank": "T-1", "level": 95.0})
                .as_object()
                .unwrap()
                .clone()
        ]
    );
    let err = conn
        .call_procedure("surely_no_such_proc", &[])
        .await
        .unwrap_err();
    assert!(err.message.contains("no procedure or function named"));
    let err = conn
        .call_procedure("x; DROP TABLE y", &[])
        .await
        .unwrap_err();
    assert!(err.message.contains("not a valid procedure name"));
    conn.execute(&format!("DROP FUNCTION {t}_above"), &[])
        .await
        .unwrap();
    conn.execute(&format!("DROP PROCEDURE {t}_log"), &[])
        .await
        .unwrap();
    conn.execute(&format!("DROP TABLE {t}"), &[]).await.unwrap();
    conn.close().await;
}

#[tokio::test]
async fn postgres_errors_are_classified() {
    let Some(pool) = pg_pool(2).await else { return };
    let t = table("sy_err");
    let mut conn = pool.connect(None).await.unwrap();
    let err = conn.execute("SELEKT 1", &[]).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Permanent);
    assert!(err.message.contains("SQLSTATE 42601"), "{}", err.message);
    conn.execute(&format!("CREATE TABLE {t} (id int4 PRIMARY KEY)"), &[])
        .await
        .unwrap();
    conn.execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
        .await
        .unwrap();
    let err = conn
        .execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.class, FailureClass::Permanent);
    assert!(err.message.contains("23505"), "{}", err.message);
    conn.execute(&format!("DROP TABLE {t}"), &[]).await.unwrap();
    conn.close().await;
}

#[tokio::test]
async fn an_unreachable_postgres_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let pool = DatabasePool::open(
        "down",
        &def(format!("postgres://postgres@127.0.0.1:{port}/test"), 1),
        Path::new("."),
    )
    .unwrap();
    let err = pool.connect(None).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Transient, "{err:?}");
    assert!(
        err.message.starts_with("database `down`"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn pool_size_bounds_concurrent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pool =
        DatabasePool::open("Historian", &def("sqlite://h.db".into(), 2), dir.path()).unwrap();
    let a = pool.connect(None).await.unwrap();
    let _b = pool.connect(None).await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(200), pool.connect(None)).await;
    assert!(third.is_err(), "a third connection must wait for the pool");
    a.close().await;
    let third = tokio::time::timeout(Duration::from_secs(2), pool.connect(None)).await;
    assert!(third.is_ok());
}

/// Database URLs that are only a scheme are a clear config error, not a panic.
#[tokio::test]
async fn urls_without_a_path_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["sqlite", "sqlite://"] {
        let err = DatabasePool::open("Historian", &def(url.into(), 1), dir.path())
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.class, FailureClass::Permanent, "{url}");
        assert!(
            err.message.starts_with("database `Historian`: "),
            "{url}: {}",
            err.message
        );
    }
}

/// A raw `BEGIN` from a script leaves the server in a transaction the connection object
/// does not know about: that connection is discarded at close (the server rolls it
/// back), never handed to the next script mid-transaction. Also the row cap.
#[tokio::test]
async fn postgres_a_raw_begin_never_reaches_the_next_user() {
    let Some(pool) = pg_pool(1).await else { return };
    let t = table("sy_rawtx");
    let mut setup = pool.connect(None).await.unwrap();
    setup
        .execute(&format!("CREATE TABLE {t} (v int4)"), &[])
        .await
        .unwrap();
    setup.close().await;
    let mut raw = pool.connect(None).await.unwrap();
    let pid = raw
        .query("SELECT pg_backend_pid() AS pid", &[])
        .await
        .unwrap()[0]["pid"]
        .clone();
    raw.execute("BEGIN TRANSACTION", &[]).await.unwrap();
    raw.execute(&format!("INSERT INTO {t} VALUES (7)"), &[])
        .await
        .unwrap();
    raw.close().await;
    let mut next = pool.connect(None).await.unwrap();
    let rows = next
        .query(
            &format!("SELECT pg_backend_pid() AS pid, (SELECT count(*) FROM {t}) AS n"),
            &[],
        )
        .await
        .unwrap();
    assert_ne!(
        rows[0]["pid"], pid,
        "the raw-transaction connection was discarded"
    );
    assert_eq!(rows[0]["n"], json!(0), "its uncommitted insert is gone");
    let too_many = next
        .query("SELECT generate_series(1, 50001) AS n", &[])
        .await
        .unwrap_err();
    assert!(
        too_many.message.contains("more than the 50000"),
        "{}",
        too_many.message
    );
    next.execute(&format!("DROP TABLE {t}"), &[]).await.unwrap();
    next.close().await;
}

/// A TLS front for the machine's PostgreSQL, speaking the protocol's `SSLRequest`
/// handshake with the test PKI (certificate for 127.0.0.1): counts TLS sessions, and
/// passes plain clients through untouched.
async fn tls_front_for_postgres() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/certs");
    let server = crate::tls::server_config(&crate::config::ClusterTls {
        cert: certs.join("server.pem"),
        key: certs.join("server.key"),
        ca: certs.join("ca.pem"),
    })
    .unwrap();
    let mut server = (*server).clone();
    server.alpn_protocols.clear();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let upstream = pg_url()
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sessions = std::sync::Arc::new(AtomicUsize::new(0));
    let count = sessions.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (acceptor, upstream, count) = (acceptor.clone(), upstream.clone(), count.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 8];
                client.read_exact(&mut first).await?;
                let mut server = tokio::net::TcpStream::connect(&upstream).await?;
                if first == SSL_REQUEST {
                    client.write_all(b"S").await?;
                    let mut tls = acceptor.accept(client).await?;
                    count.fetch_add(1, Ordering::SeqCst);
                    tokio::io::copy_bidirectional(&mut tls, &mut server).await?;
                } else {
                    server.write_all(&first).await?;
                    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    (addr, sessions)
}

/// `sslmode=verify-full` with `sslrootcert` talks TLS and verifies the server: a server
/// whose certificate does not chain to the roots is refused; `sslmode` absent stays
/// plain (today's default).
#[tokio::test]
async fn postgres_over_tls_verifies_the_server() {
    use std::sync::atomic::Ordering;
    if pg_pool(1).await.is_none() {
        return;
    }
    let (front, sessions) = tls_front_for_postgres().await;
    let db = pg_url().rsplit('/').next().unwrap().to_string();
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/certs/ca.pem");
    let dir = tempfile::tempdir().unwrap();
    let open = |query: String| {
        DatabasePool::open(
            "pg",
            &def(format!("postgres://postgres@{front}/{db}{query}"), 1),
            dir.path(),
        )
        .unwrap()
    };
    let verified = open(format!("?sslmode=verify-full&sslrootcert={}", ca.display()));
    let mut conn = verified.connect(None).await.unwrap();
    let rows = conn.query("SELECT 41 + 1 AS n", &[]).await.unwrap();
    assert_eq!(rows[0]["n"], json!(42));
    conn.close().await;
    assert_eq!(sessions.load(Ordering::SeqCst), 1, "one TLS session");

    // `sslrootcert` alone means TLS, verified against it.
    let mut implied = open(format!("?sslrootcert={}", ca.display()))
        .connect(None)
        .await
        .unwrap();
    implied.query("SELECT 1 AS one", &[]).await.unwrap();
    implied.close().await;
    assert_eq!(
        sessions.load(Ordering::SeqCst),
        2,
        "sslrootcert implies TLS"
    );

    // The same server against the public roots: its test CA is not among them.
    let err = open("?sslmode=require".into())
        .connect(None)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.message.to_lowercase().contains("certificate"),
        "{}",
        err.message
    );

    // No sslmode: plain, as before.
    let mut plain = open(String::new()).connect(None).await.unwrap();
    plain.query("SELECT 1 AS one", &[]).await.unwrap();
    plain.close().await;
    // (The refused handshake above never completed, so it is not counted either.)
    assert_eq!(
        sessions.load(Ordering::SeqCst),
        2,
        "no TLS session for the plain client"
    );

    let err = DatabasePool::open(
        "pg",
        &def(
            format!("postgres://postgres@{front}/{db}?sslmode=sometimes"),
            1,
        ),
        dir.path(),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        err.message.contains("sslmode `sometimes`"),
        "{}",
        err.message
    );
}

/// `CD-ESG-8` on the managed pool (PostgreSQL, MS SQL): never more than
/// `max_connections` server sessions (counted by the server), connections are reused,
/// and one the server killed is discarded, not handed out again.
#[tokio::test]
async fn postgres_pool_bounds_reuses_and_discards_broken_connections() {
    let Some(monitor) = pg_pool(1).await else {
        return;
    };
    let app = table("sy_pool");
    let pool = DatabasePool::open(
        "pg",
        &def(format!("{}?application_name={app}", pg_url()), 3),
        Path::new("."),
    )
    .unwrap();
    let sessions = || async {
        let mut m = monitor.connect(None).await.unwrap();
        let rows = m
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid",
                &[json!(app)],
            )
            .await
            .unwrap();
        m.close().await;
        rows.into_iter()
            .map(|r| r["pid"].clone())
            .collect::<Vec<_>>()
    };
    async fn backend(conn: &mut DbConnection) -> Value {
        conn.query("SELECT pg_backend_pid() AS pid", &[])
            .await
            .unwrap()[0]["pid"]
            .clone()
    }

    // Three at once: the fourth waits.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.connect(None).await.unwrap());
    }
    let mut first = Vec::new();
    for conn in &mut held {
        first.push(backend(conn).await);
    }
    let fourth = tokio::time::timeout(Duration::from_millis(300), pool.connect(None)).await;
    assert!(
        fourth.is_err(),
        "a fourth connection must wait for the pool"
    );
    assert_eq!(
        sessions().await.len(),
        3,
        "the server sees exactly max_connections sessions"
    );
    for conn in held.drain(..) {
        conn.close().await;
    }

    // Reuse: the same three sessions serve the next three checkouts.
    for _ in 0..3 {
        held.push(pool.connect(None).await.unwrap());
    }
    let mut again = Vec::new();
    for conn in &mut held {
        again.push(backend(conn).await);
    }
    first.sort_by_key(|v| v.as_i64());
    again.sort_by_key(|v| v.as_i64());
    assert_eq!(first, again, "connections are reused, not reopened");
    for conn in held.drain(..) {
        conn.close().await;
    }

    // The server kills one session: the pool discards it.
    let victim = first[0].clone();
    let mut m = monitor.connect(None).await.unwrap();
    m.query(
        "SELECT pg_terminate_backend($1::int4)",
        std::slice::from_ref(&victim),
    )
    .await
    .unwrap();
    m.close().await;
    let started = std::time::Instant::now();
    loop {
        for _ in 0..3 {
            held.push(pool.connect(None).await.unwrap());
        }
        let mut pids = Vec::new();
        let mut failed = false;
        for conn in &mut held {
            match conn.query("SELECT pg_backend_pid() AS pid", &[]).await {
                Ok(rows) => pids.push(rows[0]["pid"].clone()),
                Err(_) => failed = true,
            }
        }
        for conn in held.drain(..) {
            conn.close().await;
        }
        if !failed {
            assert!(
                !pids.contains(&victim),
                "the killed session is not handed out: {pids:?}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the broken connection kept failing"
        );
    }
    assert!(sessions().await.len() <= 3);
}

#[test]
fn transaction_statements_are_recognised_by_their_words() {
    for sql in [
        "BEGIN",
        "begin transaction",
        "START\nTRANSACTION",
        "start  transaction isolation level serializable",
        "SAVEPOINT a",
        "SET IMPLICIT_TRANSACTIONS ON",
        "BEGIN TRY SELECT 1 END TRY BEGIN CATCH END CATCH",
    ] {
        assert!(mentions_transaction(sql), "{sql}");
    }
    for sql in [
        "SELECT begin_ts FROM shifts",
        "INSERT INTO starts (transaction_id) VALUES (1)",
        "UPDATE t SET v = 1",
    ] {
        assert!(!mentions_transaction(sql), "{sql}");
    }
}
