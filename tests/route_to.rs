//! `Route.To` end to end: central calling a site's instance script over the cluster
//! link, with the method's deadline travelling along (SPEC §3, §7).

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// `SlowRoute`'s method timeout in the test plant.
const METHOD_TIMEOUT: Duration = Duration::from_millis(1500);
/// How far past the method timeout central may answer: scheduling on a small machine,
/// far below the routed script's own length.
const ANSWER_SLACK: Duration = Duration::from_millis(800);
/// How long the routed script would spin if nothing cut it.
const SCRIPT_SECS: u64 = 10;

/// `[7.4-5-rt]` routed calls included: a method whose `Route.To` call is slower than the
/// method timeout answers 504 `TIMEOUT` at the method's deadline, and the site, which
/// received the remaining deadline, stops its script there instead of spinning on for
/// the script's own length (the site's default `script_timeout` is 20 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_routed_call_slower_than_the_method_timeout_is_504_at_the_deadline_and_cut_at_the_site() {
    let mut plant = TestPlant::new(&Peers::default());
    plant.start().await;
    let started = Instant::now();
    let call = plant.call(
        "SlowRoute",
        json!({ "instance": "T-1", "script": "Spin", "args": { "secs": SCRIPT_SECS } }),
    );
    let site_started = async {
        wait_until_async(
            "the site runs the routed script",
            Duration::from_secs(5),
            || async {
                plant
                    .site_pool_gauge("plant-a", "switchyard_script_busy")
                    .await
                    == Some(1.0)
            },
        )
        .await;
    };
    let ((status, body), ()) = tokio::join!(call, site_started);
    let answered = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "TIMEOUT", "{body}");
    assert!(
        answered >= METHOD_TIMEOUT - Duration::from_millis(50)
            && answered < METHOD_TIMEOUT + ANSWER_SLACK,
        "answered at the 1.5 s method deadline, not before and not after the routed script: {answered:?}"
    );
    // The site had only the remaining budget: its thread is free again right after
    // the deadline, long before the script's own 10 s.
    wait_until_async(
        "the site's script stops at the deadline it received",
        (METHOD_TIMEOUT + ANSWER_SLACK * 2).saturating_sub(started.elapsed()),
        || async {
            plant
                .site_pool_gauge("plant-a", "switchyard_script_busy")
                .await
                == Some(0.0)
        },
    )
    .await;
}

/// Central tries a site's `nodes` in order (SPEC §8): with the first address closed
/// (nothing listens: a node that is down) and two working addresses after it — two TCP
/// proxies in front of the same site — the deployment and every `Route.To` call go
/// through the first working one; the one after it is never needed. The site's own
/// `listen` address is not in the list, so nothing reaches it but through `nodes`.
#[tokio::test(flavor = "multi_thread")]
async fn central_tries_the_nodes_in_order_and_uses_the_first_that_answers() {
    let mut plant = TestPlant::new(&Peers::default());
    let a = plant.site_port("plant-a");
    let site: std::net::SocketAddr = format!("127.0.0.1:{a}").parse().unwrap();
    let (second, third) = (
        TcpProxy::start(site, true).await,
        TcpProxy::start(site, true).await,
    );
    let closed = free_port();
    let text = std::fs::read_to_string(&plant.config).unwrap().replace(
        &format!("[sites.plant-a]\nlisten = \"127.0.0.1:{a}\"\n"),
        &format!(
            "[sites.plant-a]\nlisten = \"127.0.0.1:{a}\"\nnodes = [\"127.0.0.1:{closed}\", \"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
            second.port, third.port
        ),
    );
    assert!(
        text.contains("nodes = ["),
        "the plant's config names the nodes"
    );
    std::fs::write(&plant.config, text).unwrap();
    // The sites first: a proxy whose site is not listening yet would take central's
    // connection and then drop it, which is an answer, not a node that is down.
    plant.start_site("plant-a");
    plant.start_site("plant-b");
    wait_until_async("plant-a listens", Duration::from_secs(60), || async {
        plant.site_health("plant-a").await.is_some()
    })
    .await;
    plant.start_central();
    plant.wait_deployed("plant-a").await;
    plant.wait_deployed("plant-b").await;
    let value = plant.run("T-1", "Echo", json!({ "x": 1 })).await;
    assert_eq!(value, json!({ "instance": "T-1", "params": { "x": 1 } }));
    let (status, body) = plant
        .call("Levels", json!({ "tanks": ["T-1", "T-2", "P-1"] }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([
            { "tank": "T-1", "level": 10.0, "setpoint": 50.0 },
            { "tank": "T-2", "level": 20.0, "setpoint": 60.0 },
            { "tank": "P-1", "level": 30.0, "setpoint": 70.0 }
        ])
    );
    assert!(
        second.forwarded() > 0,
        "the second node (first that answers) carried the calls"
    );
    assert_eq!(third.forwarded(), 0, "the third node was never needed");
}
