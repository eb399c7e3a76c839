//! Property-based API testing with schemathesis (PyPI) against `/openapi.json` of a
//! running central: every response matches the schema and its documented statuses, and
//! the only 5xx are a script's own documented errors.

mod common;

use common::*;

fn schemathesis() -> Option<String> {
    let bin = python().map(|p| p.replace("/python", "/schemathesis"));
    match bin {
        Some(b) if std::path::Path::new(&b).exists() => Some(b),
        _ => {
            assert!(
                !in_ci(),
                "CI installs schemathesis into the test venv (scripts/test)"
            );
            eprintln!("schemathesis not installed: skipped outside CI");
            None
        }
    }
}

/// The seed of the blocking run.
const FIXED_SEED: u64 = 20_261_202;

/// A seed for an exploratory run, from the clock.
fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_007)
        .unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_contract_violation() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let url = format!("http://127.0.0.1:{}/openapi.json", plant.central_port);
    let report = plant.dir.path().join("schemathesis");
    // The blocking run is reproducible (a fixed seed); `.ci/run` also runs this test once
    // with SWITCHYARD_SCHEMATHESIS_SEED=fresh, whose findings it prints (with schemathesis'
    // curl reproductions) without blocking.
    let seed = match std::env::var("SWITCHYARD_SCHEMATHESIS_SEED")
        .ok()
        .as_deref()
    {
        None | Some("") => FIXED_SEED.to_string(),
        Some("fresh") => rand_seed().to_string(),
        Some(other) => other.to_string(),
    };
    eprintln!("schemathesis seed {seed}");
    let out = tokio::process::Command::new(&schemathesis)
        .args([
            "run",
            &url,
            "-H",
            &format!("X-API-Key: {KEY}"),
            "--checks",
            "all",
            "--seed",
            &seed,
        ])
        // A script that fails is a documented 500 (checked against the failure log below).
        .args(["--exclude-checks", "not_a_server_error"])
        .args([
            "--max-examples",
            "25",
            "--request-timeout",
            "30",
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(&report)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis (seed {seed}) found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(plant.dir.path().join("data/central/failures.jsonl"))
        .unwrap_or_default();
    for line in log.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let code = record["code"].as_str().unwrap();
        assert!(
            matches!(code, "SCRIPT_ERROR" | "TIMEOUT"),
            "a 5xx that is not a script's own error: {record}"
        );
    }
    eprintln!(
        "{}",
        stdout
            .lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
