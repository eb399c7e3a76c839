//! External systems and databases at a site, end to end (SPEC §5): what the HTTP server
//! sees, which failures are buffered and which come back, parking and the `parked`
//! CLI, crash safety of buffered work, transactions from scripts.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// Retries of every target at `interval` (so nothing is retried while a test looks).
fn slow_retries(plant: &TestPlant, interval: &str) {
    let text = std::fs::read_to_string(&plant.config)
        .unwrap()
        .replace("interval = \"1s\"", &format!("interval = \"{interval}\""));
    std::fs::write(&plant.config, text).unwrap();
}

fn external(system: &str, method: &str, args: Value) -> Value {
    json!({ "system": system, "method": method, "args": args })
}

/// GET/DELETE send a query string, POST/PUT a JSON body; API-key and Basic credentials
/// are on every request (`CD-ESG-1..3`).
#[tokio::test(flavor = "multi_thread")]
async fn the_server_sees_query_strings_json_bodies_and_credentials() {
    let stub = HttpStub::start().await;
    stub.set_default(Reply::json(200, json!({ "id": 1, "status": "ok" })));
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    plant
        .run(
            "T-1",
            "External",
            external("Stub", "GetOrder", json!({ "id": 12 })),
        )
        .await;
    plant
        .run(
            "T-1",
            "External",
            external("Stub", "DeleteOrder", json!({ "id": 13 })),
        )
        .await;
    plant
        .run(
            "T-1",
            "External",
            external(
                "Stub",
                "PostReading",
                json!({ "tank": "T-1", "level": 1.5 }),
            ),
        )
        .await;
    plant
        .run(
            "T-1",
            "External",
            external("Stub", "PutOrder", json!({ "id": 14, "status": "closed" })),
        )
        .await;
    plant
        .run(
            "T-1",
            "External",
            external(
                "BasicStub",
                "PostReading",
                json!({ "tank": "T-2", "level": 2.5 }),
            ),
        )
        .await;
    let seen = stub.seen();
    assert_eq!(
        (
            seen[0].method.as_str(),
            seen[0].query.as_deref(),
            &seen[0].body
        ),
        ("GET", Some("id=12"), &Value::Null)
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].query.as_deref()),
        ("DELETE", Some("id=13"))
    );
    assert_eq!(
        (
            seen[2].method.as_str(),
            seen[2].query.as_deref(),
            &seen[2].body
        ),
        ("POST", None, &json!({ "tank": "T-1", "level": 1.5 }))
    );
    assert_eq!(seen[2].headers["content-type"], "application/json");
    assert_eq!(
        (seen[3].method.as_str(), &seen[3].body),
        ("PUT", &json!({ "id": 14, "status": "closed" }))
    );
    for s in &seen[..4] {
        assert_eq!(s.headers["x-api-key"], "stub-key-123");
    }
    // Basic erp-user:erp-pass-456
    assert_eq!(
        seen[4].headers["authorization"],
        "Basic ZXJwLXVzZXI6ZXJwLXBhc3MtNDU2"
    );
    assert!(seen.iter().all(|s| s.path.starts_with("/erp/")));
}

/// 408, 429, 5xx, timeouts and refused connections are buffered; 400, 401, 404 and 422
/// come back to the script and are not (`KDD-ext-3`, `CD-ESG-5/6`).
#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_buffered_and_permanent_ones_are_not() {
    let stub = HttpStub::start().await;
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    // No retry while the test runs: what was buffered stays pending to be counted.
    slow_retries(&plant, "60s");
    plant.start().await;
    let mut buffered = 0;
    for status in [408u16, 429, 500, 502, 503, 504] {
        stub.push(Reply::json(status, json!({})));
        let r = plant
            .run(
                "T-1",
                "Cached",
                external(
                    "Stub",
                    "PostReading",
                    json!({ "tank": "T-1", "level": 1.0 }),
                ),
            )
            .await;
        assert_eq!(r["value"]["status"], "buffered", "HTTP {status}: {r}");
        buffered += 1;
    }
    stub.push(Reply {
        status: 200,
        body: json!({}),
        headers: Vec::new(),
        delay: Duration::from_secs(5),
    });
    let r = plant
        .run(
            "T-1",
            "Cached",
            external(
                "Stub",
                "PostReading",
                json!({ "tank": "T-1", "level": 1.0 }),
            ),
        )
        .await;
    assert_eq!(
        r["value"]["status"], "buffered",
        "a timeout (2s system timeout): {r}"
    );
    buffered += 1;
    let r = plant
        .run("T-1", "Cached", external("Down", "Ping", json!({})))
        .await;
    assert_eq!(r["value"]["status"], "buffered", "connection refused: {r}");
    buffered += 1;
    for status in [400u16, 401, 404, 422] {
        stub.push(Reply::json(status, json!({ "error": "no" })));
        let r = plant
            .run(
                "T-1",
                "Cached",
                external(
                    "Stub",
                    "PostReading",
                    json!({ "tank": "T-1", "level": 1.0 }),
                ),
            )
            .await;
        assert_eq!(
            (r["error"]["class"].as_str(), r["error"]["status"].as_u64()),
            (Some("permanent"), Some(u64::from(status))),
            "HTTP {status}: {r}"
        );
    }
    let (pending, parked) = plant.counts("plant-a").await;
    assert_eq!(pending + parked, buffered);
    // Call never buffers: every failure goes back.
    stub.push(Reply::json(503, json!({})));
    let r = plant
        .run(
            "T-1",
            "External",
            external(
                "Stub",
                "PostReading",
                json!({ "tank": "T-1", "level": 1.0 }),
            ),
        )
        .await;
    assert_eq!(
        (r["error"]["class"].as_str(), r["error"]["status"].as_u64()),
        (Some("transient"), Some(503)),
        "{r}"
    );
    let r = plant
        .run("T-1", "External", external("Down", "Ping", json!({})))
        .await;
    assert_eq!(
        r["error"]["code"], "CONNECTION",
        "unreachable system → error to the script: {r}"
    );
    let r = plant
        .run(
            "T-1",
            "External",
            external("Stub", "NoSuchMethod", json!({})),
        )
        .await;
    assert_eq!(r["error"]["code"], "NOT_FOUND", "{r}");
    let r = plant
        .run(
            "T-1",
            "External",
            external("Stub", "GetOrder", json!({ "id": "seven" })),
        )
        .await;
    assert_eq!(r["error"]["code"], "INVALID_PARAMS", "{r}");
}

/// A call that never succeeds is parked after `max_retries` with its last error; the
/// `parked` CLI lists it, retries it (delivered once the server recovers) and discards.
#[tokio::test(flavor = "multi_thread")]
async fn never_succeeding_calls_are_parked_and_the_cli_lists_retries_and_discards_them() {
    let stub = HttpStub::start().await;
    stub.set_default(Reply::json(503, json!({ "error": "down for maintenance" })));
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    let first = plant
        .run(
            "T-1",
            "Cached",
            external(
                "Stub",
                "PostReading",
                json!({ "tank": "T-1", "level": 1.0 }),
            ),
        )
        .await["value"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = plant
        .run(
            "T-1",
            "Cached",
            external(
                "Stub",
                "PostReading",
                json!({ "tank": "T-1", "level": 2.0 }),
            ),
        )
        .await["value"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until_async("both parked", Duration::from_secs(30), || async {
        plant.counts("plant-a").await == (0, 2)
    })
    .await;
    assert_eq!(
        stub.seen().len(),
        2 + 2 * 3,
        "first attempt + max_retries (3) each"
    );

    let config = plant.config_str().to_string();
    let (code, out, err) = cli(&[
        "parked", "list", "--config", &config, "--site", "plant-a", "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], first.as_str());
    assert_eq!(items[0]["attempts"], 3);
    assert!(
        items[0]["reason"].as_str().unwrap().contains("HTTP 503"),
        "{}",
        items[0]
    );
    let (code, table, _) = cli(&["parked", "list", "--config", &config, "--site", "plant-a"]);
    assert_eq!(code, 0);
    assert!(
        table.contains(&first) && table.contains("external"),
        "{table}"
    );
    // Columns line up: the attempts end under the end of their header.
    let header = table.lines().next().unwrap();
    let row = table.lines().find(|l| l.starts_with(&first)).unwrap();
    let attempts_end = header.find("ATTEMPTS").unwrap() + "ATTEMPTS".len();
    assert_eq!(&row[attempts_end - 1..attempts_end], "3", "{table}");
    assert_eq!(
        header.find("PARKED"),
        row[attempts_end..].find("20").map(|at| at + attempts_end),
        "{table}"
    );

    stub.set_default(Reply::json(200, json!({})));
    let before = stub.seen().len();
    let (code, _, err) = cli(&[
        "parked", "retry", &first, "--config", &config, "--site", "plant-a",
    ]);
    assert_eq!(code, 0, "{err}");
    wait_until(
        "the retried call is delivered",
        Duration::from_secs(15),
        || stub.seen().len() == before + 1,
    )
    .await;
    assert_eq!(
        stub.seen().last().unwrap().headers["idempotency-key"],
        first.as_str()
    );
    let (code, _, err) = cli(&[
        "parked", "discard", &second, "--config", &config, "--site", "plant-a",
    ]);
    assert_eq!(code, 0, "{err}");
    wait_until_async("nothing left", Duration::from_secs(10), || async {
        plant.counts("plant-a").await == (0, 0)
    })
    .await;
    let (code, _, err) = cli(&[
        "parked", "discard", &second, "--config", &config, "--site", "plant-a",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no parked message"), "{err}");
    // With the site stopped, the CLI works on its data directly.
    plant.kill("plant-a");
    let (code, out, err) = cli(&["parked", "list", "--config", &config, "--site", "plant-a"]);
    assert_eq!((code, out.trim()), (0, "no parked messages"), "{err}");
}

/// Buffered calls and writes survive `kill -9` of the site and are delivered after it
/// restarts.
#[tokio::test(flavor = "multi_thread")]
async fn buffered_calls_and_writes_survive_kill_9_and_are_delivered_after_restart() {
    let pg = postgres_available().await;
    let stub = HttpStub::start().await;
    stub.set_default(Reply::json(503, json!({})));
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap(), false).await;
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        pg_port: proxy.port,
        ..Peers::default()
    });
    // Long intervals: nothing is retried before the kill.
    slow_retries(&plant, "6s");
    plant.start().await;
    let table = format!("e2e_k_{}", plant.central_port);
    if pg {
        psql(&format!("CREATE TABLE {table} (n int4)")).await;
    }
    for n in 0..5 {
        let r = plant
            .run(
                "T-1",
                "Cached",
                external("Stub", "PostReading", json!({ "tank": "T-1", "level": n })),
            )
            .await;
        assert_eq!(r["value"]["status"], "buffered", "{r}");
        if pg {
            let r = plant.run("T-1", "Write", json!({ "db": "Pg", "sql": format!("INSERT INTO {table} VALUES ($1)"), "args": [n] })).await;
            assert_eq!(r["value"]["status"], "buffered", "{r}");
        }
    }
    let expected_pending = if pg { 10 } else { 5 };
    let (code, out) = plant.parked_list_json("plant-a");
    assert_eq!(
        plant.counts("plant-a").await,
        (expected_pending, 0),
        "{code} {out}"
    );
    plant.kill("plant-a"); // SIGKILL
    stub.set_default(Reply::json(200, json!({})));
    proxy.set_up(true);
    plant.start_site("plant-a");
    plant.wait_deployed("plant-a").await;
    wait_until_async(
        "everything delivered after the restart",
        Duration::from_secs(30),
        || async { plant.counts("plant-a").await == (0, 0) },
    )
    .await;
    let delivered: std::collections::BTreeSet<String> = stub
        .seen()
        .iter()
        .filter(|s| s.headers.get("idempotency-key").is_some() && s.body.is_object())
        .map(|s| s.body["level"].to_string())
        .collect();
    assert_eq!(delivered.len(), 5, "{delivered:?}");
    if pg {
        let rows = psql(&format!("SELECT n FROM {table} ORDER BY n")).await;
        assert_eq!(
            rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        psql(&format!("DROP TABLE {table}")).await;
    }
}

/// Transactions from scripts: a rolled-back insert is absent, a committed one present,
/// one left open when the script ends is rolled back. Failures to an unreachable
/// database come back to the script.
#[tokio::test(flavor = "multi_thread")]
async fn script_transactions_commit_roll_back_and_are_rolled_back_at_script_end() {
    let mut plant = TestPlant::new(&Peers::default());
    write(
        plant.dir.path(),
        "scripts/Echo.rhai",
        r#"
let db = Database.Connection("Historian");
db.Execute("CREATE TABLE IF NOT EXISTS tx (v INTEGER)");
db.Begin(); db.Execute("INSERT INTO tx VALUES (?1)", [1]); db.Rollback();
db.Begin(); db.Execute("INSERT INTO tx VALUES (?1)", [2]); db.Commit();
db.Begin(); db.Execute("INSERT INTO tx VALUES (?1)", [3]);
"left open"
"#,
    );
    plant.start().await;
    assert_eq!(
        plant.run("T-1", "Echo", json!({})).await,
        json!("left open")
    );
    let r = plant
        .run(
            "T-1",
            "Query",
            json!({ "db": "Historian", "sql": "SELECT v FROM tx ORDER BY v", "args": [] }),
        )
        .await;
    assert_eq!(r["value"], json!([{ "v": 2 }]), "{r}");
    let r = plant
        .run(
            "T-1",
            "Query",
            json!({ "db": "PgDown", "sql": "SELECT 1", "args": [] }),
        )
        .await;
    assert_eq!(
        r["error"]["class"], "transient",
        "unreachable database → error to the script: {r}"
    );
    let r = plant
        .run(
            "T-1",
            "Write",
            json!({ "db": "Historian", "sql": "INSERT INTO nowhere VALUES (1)", "args": [] }),
        )
        .await;
    assert_eq!(
        r["error"]["class"], "permanent",
        "a permanent write failure comes back, not buffered: {r}"
    );
    assert_eq!(plant.counts("plant-a").await, (0, 0));
}

/// A redirect is never followed, so credentials never travel to another origin: a 302
/// is a permanent failure naming where it pointed, for `Call` and `CachedCall` alike
/// (not buffered), and the other origin sees nothing.
#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed_and_credentials_stay_home() {
    let stub = HttpStub::start().await;
    let elsewhere = HttpStub::start().await;
    let location = format!("http://{}/collect", elsewhere.addr);
    stub.set_default(Reply {
        status: 302,
        body: json!({}),
        headers: vec![("location".into(), location.clone())],
        delay: Duration::ZERO,
    });
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    let call = plant
        .run(
            "T-1",
            "External",
            external("Stub", "GetOrder", json!({ "id": 1 })),
        )
        .await;
    let cached = plant
        .run(
            "T-1",
            "Cached",
            external(
                "Stub",
                "PostReading",
                json!({ "tank": "T-1", "level": 1.0 }),
            ),
        )
        .await;
    for r in [&call, &cached] {
        assert_eq!(r["error"]["class"], "permanent", "{r}");
        assert_eq!(r["error"]["status"], 302, "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("redirect to {location} not followed")),
            "{message}"
        );
    }
    assert_eq!(stub.seen().len(), 2);
    assert!(
        elsewhere.seen().is_empty(),
        "nothing reached the other origin"
    );
    assert_eq!(plant.counts("plant-a").await, (0, 0), "nothing buffered");
}

/// The `Stub` system's `timeout` in the test plant.
const STUB_TIMEOUT: Duration = Duration::from_secs(2);
/// How far past a cut the script may get its answer: the way back through the site and
/// central on a small machine, far below the stub's delay.
const CUT_SLACK: Duration = Duration::from_millis(700);

/// `CD-ESG-4`: an attempt is cut at the system's configured `timeout`, and the timeout is
/// transient — `Call` gets a transient `TIMEOUT` error, `CachedCall` buffers the call —
/// at 2 s, not after the server's 10 s answer.
#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_is_cut_at_the_system_timeout_and_the_timeout_is_transient() {
    let stub = HttpStub::start().await;
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    slow_retries(&plant, "60s");
    plant.start().await;
    let slow = Reply {
        status: 200,
        body: json!({ "id": 1, "status": "late" }),
        headers: Vec::new(),
        delay: Duration::from_secs(10),
    };
    for probe in ["External", "Cached"] {
        stub.push(slow.clone());
        let before = stub.seen().len();
        let started = std::time::Instant::now();
        let r = plant
            .run(
                "T-1",
                probe,
                external("Stub", "GetOrder", json!({ "id": 1 })),
            )
            .await;
        let answered = std::time::Instant::now();
        let seen = stub.seen();
        assert_eq!(
            seen.len(),
            before + 1,
            "{probe}: one attempt reached the server"
        );
        let cut = answered - seen[before].at;
        assert!(
            answered - started >= STUB_TIMEOUT && cut < STUB_TIMEOUT + CUT_SLACK,
            "{probe}: cut at the 2 s system timeout: {cut:?} after the request arrived, {:?} after the call\n{r}",
            answered - started
        );
        match probe {
            "External" => assert_eq!(
                (r["error"]["class"].as_str(), r["error"]["code"].as_str()),
                (Some("transient"), Some("TIMEOUT")),
                "{r}"
            ),
            _ => assert_eq!(r["value"]["status"], "buffered", "{r}"),
        }
    }
    assert_eq!(
        plant.counts("plant-a").await,
        (1, 0),
        "only CachedCall buffers"
    );
}

/// A `Retry-After` longer than the retry interval (1 s) is honoured end to end: after a
/// 503 or 429 asking for 4 s, the next attempt reaches the server no sooner than 4 s
/// later — after the first attempt (from the script) and after a retry alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_longer_than_the_interval_delays_the_next_attempt() {
    const RETRY_AFTER: Duration = Duration::from_secs(4);
    /// The forwarder's polling and a busy machine: how late an attempt may come.
    const LATE: Duration = Duration::from_secs(3);
    let stub = HttpStub::start().await;
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    for status in [503u16, 429] {
        stub.push(Reply {
            status,
            body: json!({ "error": "busy" }),
            headers: vec![("Retry-After".into(), RETRY_AFTER.as_secs().to_string())],
            delay: Duration::ZERO,
        });
    }
    let r = plant
        .run(
            "T-1",
            "Cached",
            external(
                "Stub",
                "PostReading",
                json!({ "tank": "T-1", "level": 1.0 }),
            ),
        )
        .await;
    assert_eq!(r["value"]["status"], "buffered", "{r}");
    wait_until(
        "the call is delivered on its third attempt",
        Duration::from_secs(30),
        || stub.seen().len() == 3,
    )
    .await;
    wait_until_async("nothing pending", Duration::from_secs(10), || async {
        plant.counts("plant-a").await == (0, 0)
    })
    .await;
    let seen = stub.seen();
    for (n, pair) in seen.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= RETRY_AFTER && gap < RETRY_AFTER + LATE,
            "attempt {} came {gap:?} after a Retry-After of {RETRY_AFTER:?} (interval 1 s)",
            n + 2
        );
    }
    assert_eq!(
        seen[1].headers["idempotency-key"], seen[2].headers["idempotency-key"],
        "one message, retried"
    );
}

/// A `CachedCall` that meets a permanent failure (HTTP 400) is an error to the script and
/// is written to the site's event log, naming the script, system, method and status, so
/// an operator sees it even when the script swallows the error.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_cached_call_failure_is_written_to_the_site_event_log() {
    let stub = HttpStub::start().await;
    stub.push(Reply::json(400, json!({ "error": "unknown tank" })));
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    let site = |plant: &TestPlant| {
        plant
            .procs
            .iter()
            .find(|p| p.name == "plant-a")
            .unwrap()
            .log_text()
    };
    assert!(!site(&plant).contains("external call failed"));
    let r = plant
        .run(
            "T-2",
            "Cached",
            external(
                "Stub",
                "PostReading",
                json!({ "tank": "T-2", "level": 1.0 }),
            ),
        )
        .await;
    assert_eq!(
        (r["error"]["class"].as_str(), r["error"]["status"].as_u64()),
        (Some("permanent"), Some(400)),
        "{r}"
    );
    assert_eq!(plant.counts("plant-a").await, (0, 0), "nothing buffered");
    let failed_line = |log: &str| {
        log.lines()
            .find(|l| l.contains("external call failed"))
            .map(str::to_string)
    };
    wait_until(
        "the failure is in the site log",
        Duration::from_secs(5),
        || failed_line(&site(&plant)).is_some(),
    )
    .await;
    let line = failed_line(&site(&plant)).unwrap();
    for part in [
        "WARN",
        "script=T-2/Cached",
        "system=\"Stub\"",
        "method=\"PostReading\"",
        "class=\"permanent\"",
        "HTTP 400",
    ] {
        assert!(line.contains(part), "{part:?} in the log line: {line}");
    }
}

/// `[5.5-2-rt]`, `[5.6-6]`: a `Database.CachedWrite` whose database never comes back is
/// retried by the connection's own `retry` (3 retries, 1.5 s apart — no other target of
/// the plant uses these figures) and then parked; `switchyard parked list` shows it in
/// the `database` category with its connection, SQL and parameters.
#[tokio::test(flavor = "multi_thread")]
async fn a_cached_write_that_never_reaches_its_database_is_parked_by_the_connections_retry() {
    const INTERVAL: Duration = Duration::from_millis(1500);
    const RETRIES: u32 = 3;
    /// The forwarder's polling and a busy machine: how late the last retry may come.
    const LATE: Duration = Duration::from_millis(2500);
    let mut plant = TestPlant::new(&Peers::default());
    let text = std::fs::read_to_string(&plant.config).unwrap().replace(
        "[databases.PgDown]\n",
        &format!(
            "[databases.PgDown]\nretry = {{ max_retries = {RETRIES}, interval = \"{}ms\" }}\n",
            INTERVAL.as_millis()
        ),
    );
    std::fs::write(&plant.config, text).unwrap();
    plant.start().await;
    let sql = "INSERT INTO readings (tank, level) VALUES ($1, $2)";
    let r = plant
        .run(
            "T-1",
            "Write",
            json!({ "db": "PgDown", "sql": sql, "args": ["T-1", 93.5] }),
        )
        .await;
    assert_eq!(r["value"]["status"], "buffered", "{r}");
    let id = r["value"]["id"].as_str().unwrap().to_string();
    wait_until_async(
        "the write is parked",
        INTERVAL * RETRIES + LATE + Duration::from_secs(5),
        || async { plant.counts("plant-a").await == (0, 1) },
    )
    .await;

    let (code, out) = plant.parked_list_json("plant-a");
    assert_eq!(code, 0, "{out}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let item = &list["items"][0];
    assert_eq!(item["id"], id.as_str(), "{item}");
    assert_eq!(item["category"], "database", "{item}");
    assert_eq!(item["attempts"], RETRIES, "max_retries of PgDown: {item}");
    let payload = item["payload"].to_string();
    assert!(
        payload.contains("PgDown") && payload.contains(sql) && payload.contains("93.5"),
        "connection, SQL and parameters: {item}"
    );
    let time =
        |field: &str| chrono::DateTime::parse_from_rfc3339(item[field].as_str().unwrap()).unwrap();
    let retrying = (time("parked") - time("created")).to_std().unwrap();
    assert!(
        retrying >= INTERVAL * RETRIES && retrying < INTERVAL * RETRIES + LATE,
        "{RETRIES} retries {INTERVAL:?} apart: parked {retrying:?} after it was buffered"
    );

    let (code, table, err) = cli(&[
        "parked",
        "list",
        "--config",
        plant.config_str(),
        "--site",
        "plant-a",
    ]);
    assert_eq!(code, 0, "{err}");
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap_or("");
    assert!(row.contains("database"), "{table}");
}
