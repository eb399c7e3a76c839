//! The eleven end-to-end scenarios of the seed (WP-13), each against central and two
//! sites running as separate processes of the built binary, with real peers.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// How long the tests watch for an attempt that must not come: twice the `Stub` system's
/// retry interval (1 s), so a retry still scheduled would land inside it. Nothing can
/// announce an attempt that never happens, so this is a window, not a wait for an event.
const NO_RETRY_WINDOW: Duration = Duration::from_secs(2);

/// WP-13 test 1 (`[7.1-1]`, `[7.4-7-rt]`): an external system calls the Inbound API, the
/// API script routes to an instance script at a site, the value flows back.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_1_inbound_call_routes_to_a_site_script_and_returns_its_value() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let value = plant
        .run("P-1", "Echo", json!({ "x": 7, "tags": ["a", "b"] }))
        .await;
    assert_eq!(
        value,
        json!({ "instance": "P-1", "params": { "x": 7, "tags": ["a", "b"] } })
    );
    let value = plant.run("T-1", "Shared", json!({ "x": 21 })).await;
    assert_eq!(value, json!(42), "site scripts reach shared scripts");
}

/// WP-13 test 2 (`[4.4-6]`): `ExternalSystem.Call` → HTTP request → the response back in
/// the script; the server sees query parameters for GET and the API key on the request.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_2_external_call_returns_the_http_response_to_the_script() {
    let stub = HttpStub::start().await;
    stub.push(Reply::json(
        200,
        json!({ "id": 7, "status": "shipped", "extra": "ignored" }),
    ));
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    let value = plant
        .run(
            "T-1",
            "External",
            json!({ "system": "Stub", "method": "GetOrder", "args": { "id": 7 } }),
        )
        .await;
    assert_eq!(
        value["value"],
        json!({ "id": 7, "status": "shipped", "extra": "ignored" }),
        "{value}"
    );
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (
            seen[0].method.as_str(),
            seen[0].path.as_str(),
            seen[0].query.as_deref()
        ),
        ("GET", "/erp/orders", Some("id=7"))
    );
    assert_eq!(seen[0].headers["x-api-key"], "stub-key-123");
}

/// WP-13 test 3 (`[4.4-7]`, `[5.3-1-int]`): `CachedCall` → transient failure → buffered →
/// retried → delivered, with the same `Idempotency-Key` on every attempt.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_3_cached_call_buffers_a_transient_failure_and_delivers_it_on_retry() {
    let stub = HttpStub::start().await;
    for _ in 0..3 {
        stub.push(Reply::json(503, json!({ "error": "maintenance" })));
    }
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    let value = plant.run("T-1", "Cached", json!({ "system": "Stub", "method": "PostReading", "args": { "tank": "T-1", "level": 55.5 } })).await;
    assert_eq!(value["value"]["status"], "buffered", "{value}");
    let id = value["value"]["id"].as_str().unwrap().to_string();
    wait_until(
        "the buffered call is delivered",
        Duration::from_secs(30),
        || stub.seen().len() == 4,
    )
    .await;
    let seen = stub.seen();
    assert!(
        seen.iter()
            .all(|s| s.headers["idempotency-key"] == id.as_str()),
        "same key on every attempt"
    );
    assert_eq!(seen[3].body, json!({ "tank": "T-1", "level": 55.5 }));
    wait_until_async("nothing pending", Duration::from_secs(10), || async {
        plant.counts("plant-a").await == (0, 0)
    })
    .await;
    tokio::time::sleep(NO_RETRY_WINDOW).await;
    assert_eq!(stub.seen().len(), 4, "delivered once, then removed");
}

/// WP-13 test 4 (`[4.4-8]`, `[6.3-1]`): `Notify.To(list).Send` delivers one e-mail.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_4_notify_send_delivers_one_email_to_every_list_member_in_bcc() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    let mut plant = TestPlant::new(&Peers {
        smtp_port: smtp.port,
        ..Peers::default()
    });
    plant.start().await;
    let value = plant
        .run(
            "T-1",
            "Mail",
            json!({ "list": "Operators", "subject": "Pump 3 tripped", "message": "Check pump 3." }),
        )
        .await;
    assert_eq!(value["value"], json!({ "status": "delivered" }), "{value}");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(
        m["rcpt_tos"],
        json!([
            "ops1@plant.example",
            "ops2@plant.example",
            "ops1@plant.example"
        ]),
        "every member, duplicates kept"
    );
    let data = m["data"].as_str().unwrap();
    assert!(data.contains("To: scada@plant.example"), "{data}");
    assert!(
        !data.to_lowercase().contains("\nbcc:") && !data.to_lowercase().contains("\ncc:"),
        "{data}"
    );
    assert!(data.contains("text/plain"), "{data}");
    assert!(data.contains("Check pump 3."));
}

/// WP-13 test 5 (`[6.4-1]`): SMTP unavailable → buffered → server up → delivered.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_5_notify_buffers_while_smtp_is_down_and_delivers_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut smtp) = Smtp::start(&dir.path().join("smtp"), 0, &[]) else {
        return;
    };
    smtp.stop();
    let mut plant = TestPlant::new(&Peers {
        smtp_port: smtp.port,
        ..Peers::default()
    });
    plant.start().await;
    let value = plant
        .run(
            "T-1",
            "Mail",
            json!({ "list": "Operators", "subject": "Tank overflow", "message": "T-1 is full." }),
        )
        .await;
    assert_eq!(value["value"]["status"], "buffered", "{value}");
    assert_eq!(plant.counts("plant-a").await, (1, 0));
    smtp.restart();
    wait_until(
        "the buffered e-mail arrives",
        Duration::from_secs(30),
        || smtp.messages().len() == 1,
    )
    .await;
    assert!(
        smtp.messages()[0]["data"]
            .as_str()
            .unwrap()
            .contains("T-1 is full.")
    );
    wait_until_async("nothing pending", Duration::from_secs(10), || async {
        plant.counts("plant-a").await == (0, 0)
    })
    .await;
}

/// WP-13 test 6 (`[4.4-9]`, `[5.6-1]`, `[5.6-2]`): `Database.Connection` → query succeeds,
/// on PostgreSQL and on SQLite.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_6_database_connection_queries_postgres_and_sqlite() {
    if !postgres_available().await {
        return;
    }
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap(), true).await;
    let mut plant = TestPlant::new(&Peers {
        pg_port: proxy.port,
        ..Peers::default()
    });
    plant.start().await;
    let table = format!("e2e_q_{}", plant.central_port);
    let r = plant.run("T-1", "Exec", json!({ "db": "Pg", "sql": format!("CREATE TABLE {table} (tank text, level float8)"), "args": [] })).await;
    assert!(r.get("error").is_none(), "{r}");
    plant.run("T-1", "Exec", json!({ "db": "Pg", "sql": format!("INSERT INTO {table} VALUES ($1, $2), ($3, $4)"), "args": ["T-1", 10.5, "T-2", 99] })).await;
    let r = plant.run("T-1", "Query", json!({ "db": "Pg", "sql": format!("SELECT tank, level FROM {table} WHERE level > $1 ORDER BY tank"), "args": [5] })).await;
    assert_eq!(
        r["value"],
        json!([{ "tank": "T-1", "level": 10.5 }, { "tank": "T-2", "level": 99.0 }]),
        "{r}"
    );
    psql(&format!("DROP TABLE {table}")).await;

    plant
        .run(
            "T-1",
            "Exec",
            json!({ "db": "Historian", "sql": "CREATE TABLE t (v INTEGER)", "args": [] }),
        )
        .await;
    plant
        .run(
            "T-1",
            "Exec",
            json!({ "db": "Historian", "sql": "INSERT INTO t VALUES (?1)", "args": [3] }),
        )
        .await;
    let r = plant
        .run(
            "T-1",
            "Query",
            json!({ "db": "Historian", "sql": "SELECT v FROM t", "args": [] }),
        )
        .await;
    assert_eq!(r["value"], json!([{ "v": 3 }]), "{r}");
}

/// WP-13 test 7 (`[5.6-3]`–`[5.6-6]`): `CachedWrite` with the database down → buffered →
/// database back → the row is there.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_7_cached_write_buffers_while_the_database_is_down_and_the_row_appears_after() {
    if !postgres_available().await {
        return;
    }
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap(), true).await;
    let mut plant = TestPlant::new(&Peers {
        pg_port: proxy.port,
        ..Peers::default()
    });
    plant.start().await;
    let table = format!("e2e_w_{}", plant.central_port);
    psql(&format!("CREATE TABLE {table} (tank text, level float8)")).await;
    proxy.set_up(false);
    let r = plant.run("T-1", "Write", json!({ "db": "Pg", "sql": format!("INSERT INTO {table} VALUES ($1, $2)"), "args": ["T-1", 91.5] })).await;
    assert_eq!(r["value"]["status"], "buffered", "{r}");
    assert_eq!(plant.counts("plant-a").await, (1, 0));
    assert!(psql(&format!("SELECT * FROM {table}")).await.is_empty());
    proxy.set_up(true);
    let t = table.clone();
    wait_until_async("the row is written", Duration::from_secs(30), || {
        let t = t.clone();
        async move { psql(&format!("SELECT tank, level FROM {t}")).await.len() == 1 }
    })
    .await;
    let rows = psql(&format!("SELECT tank, level FROM {table}")).await;
    assert_eq!(
        (rows[0].get::<_, String>(0), rows[0].get::<_, f64>(1)),
        ("T-1".to_string(), 91.5)
    );
    psql(&format!("DROP TABLE {table}")).await;
}

/// WP-13 test 8: `CachedCall` that meets a 4xx → error to the script, nothing buffered.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_8_cached_call_4xx_is_an_error_to_the_script_and_nothing_is_buffered() {
    let stub = HttpStub::start().await;
    stub.set_default(Reply::json(422, json!({ "error": "tank unknown" })));
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    let r = plant.run("T-1", "Cached", json!({ "system": "Stub", "method": "PostReading", "args": { "tank": "X", "level": 1.0 } })).await;
    assert_eq!(r["error"]["class"], "permanent", "{r}");
    assert_eq!(r["error"]["status"], 422);
    assert_eq!(plant.counts("plant-a").await, (0, 0));
    tokio::time::sleep(NO_RETRY_WINDOW).await;
    assert_eq!(stub.seen().len(), 1, "no retry of a permanent failure");
}

/// WP-13 test 9 (`CD-IA-8`): the site is unreachable → an error to the external caller
/// (502 `SITE_UNREACHABLE`), fast, and nothing is buffered anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_9_unreachable_site_gives_502_fast_and_buffers_nothing() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    plant.kill("plant-b");
    let started = std::time::Instant::now();
    let (status, body) = plant
        .call("Run", json!({ "instance": "P-1", "script": "Echo" }))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "SITE_UNREACHABLE");
    assert!(body["incident"].is_string());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast, not after the 20s method timeout"
    );
    // The other site is untouched and nothing was queued for plant-b.
    assert_eq!(plant.counts("plant-a").await, (0, 0));
    plant.start_site("plant-b");
    plant.wait_deployed("plant-b").await;
    assert_eq!(plant.counts("plant-b").await, (0, 0));
    let (status, _) = plant
        .call("Run", json!({ "instance": "P-1", "script": "Echo" }))
        .await;
    assert_eq!(status, 200);
}

/// WP-13 test 10 (`[7.3-3]`): a key disabled with the CLI is refused with 401 after a
/// reload — no restart.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_10_disabled_key_is_refused_after_a_reload_without_restart() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    assert_eq!(
        plant
            .call("Run", json!({ "instance": "T-1", "script": "Echo" }))
            .await
            .0,
        200
    );
    let (code, _, err) = cli(&["key", "disable", "mes", "--config", plant.config_str()]);
    assert_eq!(code, 0, "{err}");
    let (status, body) = plant.admin(reqwest::Method::POST, "/reload").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = plant
        .call("Run", json!({ "instance": "T-1", "script": "Echo" }))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHORIZED")),
        "{body}"
    );
    // SIGHUP works too: enable again.
    let (code, _, _) = cli(&["key", "enable", "mes", "--config", plant.config_str()]);
    assert_eq!(code, 0);
    let pid = plant
        .procs
        .iter()
        .find(|p| p.name == "central")
        .unwrap()
        .child
        .id();
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    wait_until_async("the key works again", Duration::from_secs(10), || async {
        plant
            .call("Run", json!({ "instance": "T-1", "script": "Echo" }))
            .await
            .0
            == 200
    })
    .await;
}

/// WP-13 test 11 (`CD-IA-9`): batch attribute operations through `Route.To`.
#[tokio::test(flavor = "multi_thread")]
async fn wp13_11_batch_get_and_set_attributes_through_route_to() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let (status, body) = plant
        .call("Levels", json!({ "tanks": ["T-1", "P-1"] }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([{ "tank": "T-1", "level": 10.0, "setpoint": 50.0 }, { "tank": "P-1", "level": 30.0, "setpoint": 70.0 }])
    );
    let (status, body) = plant
        .call(
            "SetLevels",
            json!({ "tank": "P-1", "level": 44.5, "setpoint": 45.0 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = plant.call("Levels", json!({ "tanks": ["P-1"] })).await;
    assert_eq!(
        body,
        json!([{ "tank": "P-1", "level": 44.5, "setpoint": 45.0 }])
    );
    // All or none: a wrong type changes nothing.
    let r = plant
        .call(
            "Run",
            json!({ "instance": "P-1", "script": "Fill", "args": { "amount": "lots" } }),
        )
        .await;
    assert_eq!(r.0, 500, "{:?}", r.1);
    let (_, body) = plant.call("Levels", json!({ "tanks": ["P-1"] })).await;
    assert_eq!(body[0]["level"], json!(44.5));
}
