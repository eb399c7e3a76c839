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
