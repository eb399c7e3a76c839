//! The site runtime as a separate process: autonomy across restarts, deployments that
//! are rejected whole, script limits and deadlines, isolation of the script pool from
//! the cluster endpoint, site-token authentication, alarms, and the own-instance rule.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard_core::deadline::DEADLINE_HEADER;

async fn cluster(
    plant: &TestPlant,
    site: &str,
    path: &str,
    body: Value,
    token: Option<&str>,
    deadline_ms: Option<u64>,
) -> (u16, Value) {
    let mut request = http()
        .post(format!("http://127.0.0.1:{}{path}", plant.site_port(site)))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(ms) = deadline_ms {
        request = request.header(DEADLINE_HEADER, ms.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn call_site(
    plant: &TestPlant,
    instance: &str,
    script: &str,
    params: Value,
    deadline_ms: Option<u64>,
) -> (u16, Value) {
    let site = if instance.starts_with('P') {
        "plant-b"
    } else {
        "plant-a"
    };
    cluster(
        plant,
        site,
        "/cluster/call",
        json!({ "instance": instance, "script": script, "params": params }),
        Some(SITE_TOKEN),
        deadline_ms,
    )
    .await
}

/// A site restarted while central is down comes back with its last deployment: its
/// scripts run and its attribute values are the ones set before the restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_site_restarted_with_central_down_serves_its_last_deployment() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    // The stored deployment holds the config's literal secrets: owner-only data dir.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(plant.dir.path().join("data/plant-a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }
    let (status, _) = plant
        .call(
            "SetLevels",
            json!({ "tank": "T-2", "level": 66.5, "setpoint": 70.0 }),
        )
        .await;
    assert_eq!(status, 200);
    plant.kill("central");
    plant.kill("plant-a");
    plant.start_site("plant-a");
    plant.wait_deployed("plant-a").await;
    let (status, body) =
        call_site(&plant, "T-2", "Echo", json!({ "after": "restart" }), None).await;
    assert_eq!(
        (status, &body["value"]["instance"]),
        (200, &json!("T-2")),
        "{body}"
    );
    let (status, body) = cluster(
        &plant,
        "plant-a",
        "/cluster/attributes/get",
        json!({ "instance": "T-2", "names": ["Level", "Setpoint"] }),
        Some(SITE_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["values"], json!({ "Level": 66.5, "Setpoint": 70.0 }));
}

/// A deployment with a syntax error is rejected with `file:line:col`; the site keeps
/// running the previous one.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_with_a_syntax_error_is_rejected_and_the_old_one_keeps_running() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let before = plant.site_health("plant-a").await.unwrap()["revision"].clone();
    write(plant.dir.path(), "scripts/Echo.rhai", "let broken = ;\n");
    let (status, body) = plant.admin(reqwest::Method::POST, "/reload").await;
    assert_eq!(status, 200, "central's own config is fine: {body}");
    wait_until_async(
        "central reports the rejection",
        Duration::from_secs(20),
        || async {
            let (_, sites) = plant.admin(reqwest::Method::GET, "/sites").await;
            sites["plant-a"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("Echo.rhai:1:14"))
        },
    )
    .await;
    assert_eq!(
        plant.site_health("plant-a").await.unwrap()["revision"],
        before
    );
    let (status, body) = call_site(&plant, "T-1", "Echo", json!({}), None).await;
    assert_eq!(status, 200, "the old Echo still runs: {body}");
    // `switchyard check` reports the same error with its location.
    let (code, _, err) = cli(&["check", "--config", plant.config_str()]);
    assert_eq!(code, 1);
    assert!(err.contains("Echo.rhai:1:14"), "{err}");
}

/// An infinite loop ends with a timeout at its deadline; huge strings and deep
/// recursion are refused; the node lives on.
#[tokio::test(flavor = "multi_thread")]
async fn runaway_scripts_are_stopped_with_clear_errors_and_the_node_lives_on() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let started = Instant::now();
    let (status, body) = call_site(&plant, "T-1", "Loop", json!({}), Some(1000)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("TIMEOUT")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stopped at its deadline: {:?}",
        started.elapsed()
    );
    let (status, body) = call_site(&plant, "T-1", "Grow", json!({}), None).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Length of string"),
        "{body}"
    );
    let (status, body) = call_site(&plant, "T-1", "Recurse", json!({}), None).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("stack overflow"),
        "{body}"
    );
    let (status, _) = call_site(&plant, "T-1", "Echo", json!({}), None).await;
    assert_eq!(status, 200, "the node lives on");
    // eval and import never get as far as running: the deployment is refused.
    write(plant.dir.path(), "scripts/Echo.rhai", "eval(\"1 + 1\")");
    write(
        plant.dir.path(),
        "scripts/Loop.rhai",
        "import \"other\" as o;\n1",
    );
    let (code, _, err) = cli(&["check", "--config", plant.config_str()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("`eval` is not allowed") && err.contains("`import` is not allowed"),
        "{err}"
    );
}

/// `CD-ESG-7`: with every script thread blocked in a slow native call (an external call
/// the server takes seconds to answer), the cluster endpoint still answers at once.
#[tokio::test(flavor = "multi_thread")]
async fn health_answers_within_50ms_while_every_script_thread_is_blocked() {
    let stub = HttpStub::start().await;
    stub.set_default(Reply {
        status: 200,
        body: json!({}),
        headers: Vec::new(),
        delay: Duration::from_secs(3),
    });
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    let mut blocked = Vec::new();
    for _ in 0..4 {
        let port = plant.site_port("plant-a");
        blocked.push(tokio::spawn(async move {
            http()
                .post(format!("http://127.0.0.1:{port}/cluster/call"))
                .bearer_auth(SITE_TOKEN)
                .json(&json!({ "instance": "T-1", "script": "External", "params": { "system": "Stub", "method": "PostReading", "args": { "tank": "T-1", "level": 1.0 } } }))
                .send()
                .await
        }));
    }
    wait_until(
        "all four script threads are blocked in the call",
        Duration::from_secs(10),
        || stub.seen().len() >= 4,
    )
    .await;
    let client = http();
    let url = format!(
        "http://127.0.0.1:{}/cluster/health",
        plant.site_port("plant-a")
    );
    client
        .get(&url)
        .bearer_auth(SITE_TOKEN)
        .send()
        .await
        .unwrap(); // warm the connection
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let response = client
            .get(&url)
            .bearer_auth(SITE_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        worst = worst.max(started.elapsed());
    }
    eprintln!("health latency with every script thread blocked: worst of 10 = {worst:?}");
    assert!(worst < Duration::from_millis(50), "health took {worst:?}");
    for b in blocked {
        b.await.unwrap().unwrap();
    }
}

/// A missing or wrong site token gets 401 and nothing is executed.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_or_missing_site_token_is_401_and_nothing_runs() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    for token in [None, Some("wrong-token"), Some("")] {
        let (status, body) = cluster(
            &plant,
            "plant-a",
            "/cluster/attributes/set",
            json!({ "instance": "T-1", "values": { "Level": 99.0 } }),
            token,
            None,
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{token:?}: {body}"
        );
        let (status, _) = cluster(
            &plant,
            "plant-a",
            "/cluster/call",
            json!({ "instance": "T-1", "script": "Fill", "params": { "amount": 100.0 } }),
            token,
            None,
        )
        .await;
        assert_eq!(status, 401);
    }
    let (_, body) = cluster(
        &plant,
        "plant-a",
        "/cluster/attributes/get",
        json!({ "instance": "T-1", "names": ["Level"] }),
        Some(SITE_TOKEN),
        None,
    )
    .await;
    assert_eq!(body["values"]["Level"], json!(10.0), "nothing was executed");
}

/// An alarm's on-trigger script runs once when the value crosses `above`, not again
/// while it stays above, and again after it falls back and crosses again.
#[tokio::test(flavor = "multi_thread")]
async fn alarm_on_trigger_runs_once_per_crossing() {
    let stub = HttpStub::start().await;
    let mut plant = TestPlant::new(&Peers {
        stub: stub.addr.to_string(),
        ..Peers::default()
    });
    plant.start().await;
    let set = |level: f64| {
        let plant = &plant;
        async move {
            let (status, body) = cluster(
                plant,
                "plant-a",
                "/cluster/attributes/set",
                json!({ "instance": "T-1", "values": { "Level": level } }),
                Some(SITE_TOKEN),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    set(95.0).await;
    wait_until("the alarm script ran", Duration::from_secs(10), || {
        stub.seen().len() == 1
    })
    .await;
    // The site decides and counts a trigger inside the write, before it answers, so
    // after these two writes the count is final: no window to wait out.
    set(97.0).await;
    set(99.0).await;
    assert_eq!(
        plant.site_metric("plant-a", HIGH_TRIGGERED).await,
        Some(1.0),
        "no new trigger while it stays above"
    );
    assert_eq!(stub.seen().len(), 1, "no new trigger while it stays above");
    set(50.0).await;
    set(91.0).await;
    wait_until(
        "the alarm script ran again",
        Duration::from_secs(10),
        || stub.seen().len() == 2,
    )
    .await;
    assert_eq!(
        stub.seen()[1].body,
        json!({ "tank": "High on T-1", "level": 91.0 })
    );
    assert_eq!(
        plant.site_metric("plant-a", HIGH_TRIGGERED).await,
        Some(2.0)
    );
}

/// The site's count of triggers of the test plants' `High` alarm.
const HIGH_TRIGGERED: &str = "switchyard_alarms_triggered_total{alarm=\"High\"}";

/// `[4.4-10]`: `Instance` reaches its own instance only — `CallScript` finds the own
/// template's scripts, and no name reaches another instance.
#[tokio::test(flavor = "multi_thread")]
async fn call_script_reaches_only_the_own_instance() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let (_, body) = call_site(&plant, "T-1", "CallOwn", json!({}), None).await;
    assert_eq!(
        body["value"],
        json!({ "instance": "T-1", "params": { "via": "CallScript" } })
    );
    for name in ["T-2/Echo", "T-2.Echo", "../T-2/Echo", "T-2"] {
        let (_, body) = call_site(&plant, "T-1", "CallOther", json!({ "name": name }), None).await;
        assert_eq!(
            body["value"]["error"]["code"], "NOT_FOUND",
            "{name}: {body}"
        );
    }
}

/// A deployment far over axum's 2 MiB default body (here a 3 MiB script) is accepted
/// by the site and runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_over_two_mebibytes_is_accepted() {
    let mut plant = TestPlant::new(&Peers::default());
    let padding = format!("// {}\n", "x".repeat(1000)).repeat(3 * 1024);
    write(
        plant.dir.path(),
        "scripts/Echo.rhai",
        &format!("#{{ instance: Instance.Code, params: params }}\n{padding}"),
    );
    plant.start().await;
    let (status, body) = call_site(&plant, "T-1", "Echo", json!({ "big": true }), None).await;
    assert_eq!(
        (status, &body["value"]["params"]["big"]),
        (200, &json!(true)),
        "{body}"
    );
}
