//! Secrets never appear in logs, error bodies, the failure log or metrics: every surface
//! runs with known secrets, then everything the system wrote is searched for them.

mod common;

/// How long the processes get to finish logging before their logs are searched.
const LOGS_SETTLE: Duration = Duration::from_secs(2);

use common::plant_toml::table;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_logs_error_bodies_failure_log_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(&dir.path().join("smtp"), 0, &[]);
    let stub = HttpStub::start().await;
    let tokens = HttpStub::start().await;
    // OAuth2 SMTP with a token endpoint answered by the stub (its default reply).
    let oauth_secret = "oauth-client-secret-77123";
    let token = "oauth-access-token-55321";
    let peers = Peers {
        stub: stub.addr.to_string(),
        smtp_port: smtp.as_ref().map_or(1, |s| s.port),
        ..Peers::default()
    };
    let mut plant = TestPlant::with_config(&peers, |config| {
        config.table("smtp").set(
            "auth",
            table([
                ("type", "oauth2".into()),
                ("tenant", "t".into()),
                ("client_id", "c".into()),
                ("client_secret", oauth_secret.into()),
                ("authority", format!("http://{}", tokens.addr).into()),
            ]),
        );
    });
    tokens.set_default(Reply::json(
        200,
        json!({ "access_token": token, "expires_in": 3600 }),
    ));
    stub.set_default(Reply::json(200, json!({ "id": 1, "status": "ok" })));
    plant.start().await;

    let mut bodies = Vec::new();
    bodies.push(
        plant
            .call("Run", json!({ "instance": "T-1", "script": "Echo" }))
            .await
            .1,
    );
    bodies.push(
        plant
            .call_with("Run", json!({}), Some("wrong-key-not-a-secret"))
            .await
            .1,
    );
    bodies.push(plant.call("Broken", json!({})).await.1);
    bodies.push(
        plant
            .run(
                "T-1",
                "External",
                json!({ "system": "Stub", "method": "GetOrder", "args": { "id": 1 } }),
            )
            .await,
    );
    bodies.push(plant.run("T-1", "External", json!({ "system": "BasicStub", "method": "PostReading", "args": { "tank": "a", "level": 1.0 } })).await);
    stub.push(Reply::json(401, json!({ "error": "bad key" })));
    bodies.push(
        plant
            .run(
                "T-1",
                "External",
                json!({ "system": "Stub", "method": "GetOrder", "args": { "id": 2 } }),
            )
            .await,
    );
    stub.push(Reply::json(503, json!({})));
    bodies.push(plant.run("T-1", "Cached", json!({ "system": "Stub", "method": "PostReading", "args": { "tank": "a", "level": 2.0 } })).await);
    if smtp.is_some() {
        bodies.push(
            plant
                .run(
                    "T-1",
                    "Mail",
                    json!({ "list": "Operators", "subject": "s", "message": "m" }),
                )
                .await,
        );
        assert!(
            !tokens.seen().is_empty(),
            "the send went through OAuth2, so the client secret was used"
        );
    }
    let (_, sites) = plant.admin(reqwest::Method::GET, "/sites").await;
    bodies.push(sites);
    let (_, failures) = plant.admin(reqwest::Method::GET, "/failures").await;
    bodies.push(failures);
    plant.kill("plant-b");
    bodies.push(
        plant
            .call("Run", json!({ "instance": "P-1", "script": "Echo" }))
            .await
            .1,
    );
    // Give the processes time to write what they log about the failures above (retries,
    // the unreachable site): the check below reads their logs, and a line written after
    // it would go unchecked.
    tokio::time::sleep(LOGS_SETTLE).await;

    let mut haystack = String::new();
    for b in &bodies {
        haystack.push_str(&b.to_string());
    }
    for port in [plant.central_port, plant.site_port("plant-a")] {
        haystack.push_str(
            &http()
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    haystack.push_str(
        &std::fs::read_to_string(plant.dir.path().join("data/central/failures.jsonl"))
            .unwrap_or_default(),
    );
    let (_, parked) = plant.parked_list_json("plant-a");
    haystack.push_str(&parked);
    let (_, failures_cli, _) = cli(&["failures", "--config", plant.config_str()]);
    haystack.push_str(&failures_cli);
    for p in &plant.procs {
        haystack.push_str(&p.log_text());
    }
    assert!(
        haystack.contains("SCRIPT_ERROR") && haystack.contains("SITE_UNREACHABLE"),
        "the run produced the failures it should"
    );
    let basic = "ZXJwLXVzZXI6ZXJwLXBhc3MtNDU2"; // base64("erp-user:erp-pass-456")
    for secret in [
        KEY,
        SITE_TOKEN,
        ADMIN_TOKEN,
        "stub-key-123",
        "erp-pass-456",
        basic,
        oauth_secret,
        token,
    ] {
        assert!(
            !haystack.contains(secret),
            "secret `{secret}` leaked:\n{}",
            context(&haystack, secret)
        );
    }
}

fn context(haystack: &str, needle: &str) -> String {
    let i = haystack.find(needle).unwrap_or(0);
    haystack[i.saturating_sub(200)..(i + 200).min(haystack.len())].to_string()
}
