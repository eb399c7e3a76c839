//! A peer that accepts connections and never answers — the failure a timeout exists for
//! — on every surface: the cached surfaces keep the work (transient, buffered), the
//! direct ones give the script or the caller a clean error at their deadline. (E-mail:
//! `notify::a_stalled_smtp_server_is_transient_and_the_email_is_buffered`; external
//! systems: `outbound::an_attempt_is_cut_at_the_system_timeout_and_the_timeout_is_transient`.)

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// `Database.CachedWrite` to a stalled database is buffered at the connection's
/// timeout (3 s for `Pg` in the test plant); `Database.Connection(…).Query` gets a
/// transient error the script can catch.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_database_buffers_cached_writes_and_fails_connections_cleanly() {
    let (port, held) = stalled_listener(0);
    let mut plant = TestPlant::new(&Peers {
        pg_port: port,
        ..Peers::default()
    });
    plant.start().await;
    let started = Instant::now();
    let write = plant
        .run(
            "T-1",
            "Write",
            json!({ "db": "Pg", "sql": "INSERT INTO t VALUES ($1)", "args": [1] }),
        )
        .await;
    assert_eq!(write["value"]["status"], "buffered", "{write}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let query = plant
        .run(
            "T-1",
            "Query",
            json!({ "db": "Pg", "sql": "SELECT 1 AS one", "args": [] }),
        )
        .await;
    assert_eq!(query["error"]["class"], "transient", "{query}");
    assert!(
        query["error"]["message"].as_str().unwrap().contains("Pg"),
        "{query}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !held.lock().unwrap().is_empty(),
        "the database port was reached"
    );
    assert_eq!(
        plant.counts("plant-a").await,
        (1, 0),
        "the write waits in the outbox"
    );
}

/// A full connection pool makes the write's stack not ready: with `max_connections = 1`
/// taken by a write stuck on a stalled database, a second `CachedWrite` waits for a
/// connection no longer than the 3 s timeout and is buffered; while it waits it opens
/// no connection of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_connection_pool_is_a_bounded_wait_and_the_write_is_buffered() {
    let (port, held) = stalled_listener(0);
    let mut plant = TestPlant::with_config(
        &Peers {
            pg_port: port,
            ..Peers::default()
        },
        |c| {
            c.table("databases.Pg").set("max_connections", 1);
        },
    );
    plant.start().await;
    let write = |n: i64| {
        plant.run(
            "T-1",
            "Write",
            json!({ "db": "Pg", "sql": "INSERT INTO t VALUES ($1)", "args": [n] }),
        )
    };
    let started = Instant::now();
    let both = async { tokio::join!(write(1), write(2)) };
    let watch = async {
        // Mid-way through the first attempt the second waits for the only connection.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        held.lock().unwrap().len()
    };
    let ((a, b), connections_midway) = tokio::join!(both, watch);
    let elapsed = started.elapsed();
    assert_eq!(a["value"]["status"], "buffered", "{a}");
    assert_eq!(b["value"]["status"], "buffered", "{b}");
    assert_eq!(
        connections_midway, 1,
        "while the only connection is stalled, the other write waits for it and opens none"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "the wait for a connection counts against the 3 s timeout: {elapsed:?}"
    );
    assert_eq!(plant.counts("plant-a").await, (2, 0));
}

/// `Route.To` to a site whose node accepts and never answers: the caller gets a clean
/// `504 TIMEOUT` at the method's deadline (1.5 s), nothing hangs, nothing is buffered.
#[tokio::test(flavor = "multi_thread")]
async fn route_to_a_stalled_site_ends_at_the_method_deadline() {
    let mut plant = TestPlant::new(&Peers::default());
    // plant-b's node accepts and never answers (its process is not started).
    let (_, _held) = stalled_listener(plant.site_port("plant-b"));
    plant.start_site("plant-a");
    plant.start_central();
    plant.wait_deployed("plant-a").await;
    let started = Instant::now();
    let (status, body) = plant
        .call(
            "SlowRoute",
            json!({ "instance": "P-1", "script": "Echo", "args": {} }),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("TIMEOUT")),
        "{body}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}
