//! The central ↔ site link over TLS (SPEC §7): the site serves with its certificate,
//! central verifies it against the configured CA; plain HTTP to the site gets nothing,
//! and a client that does not trust the CA cannot talk to it.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

fn certs(name: &str) -> String {
    format!("{}/tests/fixtures/certs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// plant-a's link runs over TLS with the test PKI (its certificate names 127.0.0.1).
fn tls_plant() -> TestPlant {
    let plant = TestPlant::new(&Peers::default());
    let text = std::fs::read_to_string(&plant.config).unwrap().replacen(
        "[sites.plant-a]\n",
        &format!(
            "[sites.plant-a]\ntls = {{ cert = \"{}\", key = \"{}\", ca = \"{}\" }}\n",
            certs("server.pem"),
            certs("server.key"),
            certs("ca.pem")
        ),
        1,
    );
    std::fs::write(&plant.config, text).unwrap();
    plant
}

fn trusting(roots: Vec<reqwest::Certificate>) -> reqwest::Client {
    switchyard_core::tls::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only(roots)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn central_reaches_a_tls_site_and_nothing_else_does() {
    let mut plant = tls_plant();
    plant.start_site("plant-a");
    plant.start_site("plant-b");
    plant.start_central();
    plant.wait_central().await;
    let port = plant.site_port("plant-a");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs("ca.pem")).unwrap()).unwrap();
    let health = format!("https://127.0.0.1:{port}/cluster/health");

    // A client trusting the CA sees the site once central has deployed to it over TLS.
    let client = trusting(vec![ca]);
    wait_until_async(
        "plant-a deployed over TLS",
        Duration::from_secs(60),
        || async {
            match client.get(&health).bearer_auth(SITE_TOKEN).send().await {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|h| !h["revision"].is_null()),
                Err(_) => false,
            }
        },
    )
    .await;

    // Route.To from central through the TLS link.
    let r = plant.run("T-1", "Echo", json!({ "x": 1 })).await;
    assert_eq!(r["params"]["x"], 1, "{r}");

    // Plain HTTP to the TLS port: no answer, the token never travels in clear.
    let plain = http()
        .get(format!("http://127.0.0.1:{port}/cluster/health"))
        .bearer_auth(SITE_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP must not be served"
    );

    // A client that does not trust the CA cannot talk to the site.
    let untrusting = trusting(Vec::new());
    let err = untrusting
        .get(&health)
        .bearer_auth(SITE_TOKEN)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

/// `check` warns about a cluster link that leaves the machine without TLS, and names a
/// TLS file that is not there (a warning: each machine holds only its own part — the
/// site its key, central the CA).
#[test]
fn check_warns_about_plaintext_links_off_loopback_and_names_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "switchyard.toml",
        "[sites.far]\nlisten = \"0.0.0.0:9101\"\nnodes = [\"10.0.0.11:9101\"]\ntoken = \"site-token-0001\"\n\n[sites.near]\nlisten = \"127.0.0.1:9102\"\ntoken = \"site-token-0002\"\ntls = { cert = \"certs/none.pem\", key = \"certs/none.key\", ca = \"certs/ca.pem\" }\n",
    );
    let config = dir.path().join("switchyard.toml");
    let (code, _, err) = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("sites.far: the cluster link leaves this machine without TLS"),
        "{err}"
    );
    assert!(err.contains("sites.near.tls.cert: no file at"), "{err}");
    assert!(!err.contains("sites.near: the cluster link"), "{err}");
}
