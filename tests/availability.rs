//! Central availability (`[7.5-1]`, `[7.5-2]`): with two central nodes only the active
//! one serves the API; when it dies, the standby takes over.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

async fn api(port: u16) -> (u16, serde_json::Value) {
    let r = http()
        .post(format!("http://127.0.0.1:{port}/api/Run"))
        .header("X-API-Key", KEY)
        .json(&json!({ "instance": "T-1", "script": "Echo" }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn ready(port: u16) -> Option<u16> {
    http()
        .get(format!("http://127.0.0.1:{port}/ready"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_active_central_serves_and_the_standby_takes_over_when_it_dies() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    plant.wait_central().await;
    let standby_port = free_port();
    let standby = switchyard(
        plant.dir.path(),
        "central-2",
        &[
            "central",
            "--config",
            plant.config_str(),
            "--listen",
            &format!("127.0.0.1:{standby_port}"),
        ],
    );
    plant.procs.push(standby);
    wait_until_async("the standby answers", Duration::from_secs(30), || async {
        ready(standby_port).await.is_some()
    })
    .await;

    assert_eq!(ready(plant.central_port).await, Some(200));
    assert_eq!(ready(standby_port).await, Some(503));
    assert_eq!(api(plant.central_port).await.0, 200);
    let (status, body) = api(standby_port).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("NOT_ACTIVE")),
        "{body}"
    );

    plant.kill("central"); // SIGKILL: its lock goes with it
    wait_until_async("the standby is active", Duration::from_secs(10), || async {
        ready(standby_port).await == Some(200)
    })
    .await;
    let (status, body) = api(standby_port).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"], "T-1");
}
