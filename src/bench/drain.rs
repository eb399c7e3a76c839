//! `switchyard bench drain` (issue 15): a backlog of buffered external calls drained into
//! an HTTP peer, counted per second *at the peer* — once unpaced (the baseline: as fast
//! as the forwarder and the peer go), once through a system with `max_rate = 500`.

use super::plant;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_layers::store_forward::{Category, FjallOutbox, now_ms};
use switchyard_site::messages::{ExternalMessage, SfMessage};

/// The pace of the bench plant's `Paced` system.
pub const RATE: f64 = 500.0;

/// Arrival times at the peer.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

/// An HTTP peer that answers `{}` and records when each request arrived.
async fn counting_peer(arrivals: Arrivals) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the peer");
    let addr = listener.local_addr().expect("peer address");
    let app = axum::Router::new().fallback(move || {
        let arrivals = arrivals.clone();
        async move {
            arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
            axum::Json(json!({}))
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Buffers `count` calls to `system`, all falling due in two seconds (so that the
/// drain starts from a full backlog).
async fn fill(outbox: &FjallOutbox, system: &str, count: usize) {
    super::backlog(
        outbox,
        Category::External,
        system,
        count,
        now_ms() + 2_000,
        |i| {
            ExternalMessage {
                system: system.into(),
                method: "Post".into(),
                params: json!({ "tank": format!("T-{i}"), "level": i as f64 }),
            }
            .to_payload()
        },
    )
    .await;
}

/// Deliveries counted at the peer in each whole second from the first.
fn per_second(arrivals: &[Instant]) -> Vec<usize> {
    let Some(first) = arrivals.first() else {
        return Vec::new();
    };
    let mut counts = Vec::new();
    for at in arrivals {
        let second = (*at - *first).as_secs() as usize;
        if counts.len() <= second {
            counts.resize(second + 1, 0);
        }
        counts[second] += 1;
    }
    counts
}

/// Runs the suite with `messages` buffered calls per drain.
pub async fn run(messages: usize) {
    let arrivals: Arrivals = Arc::default();
    let peer = counting_peer(arrivals.clone()).await;
    let plant = plant::start(peer, "postgres://127.0.0.1:1/none").await;
    println!("== paced drain: {messages} buffered calls, counted per second at the HTTP peer ==");
    for (system, label) in [
        ("Local", "unpaced (baseline)".to_string()),
        ("Paced", format!("max_rate = {RATE}")),
    ] {
        arrivals.lock().unwrap_or_else(|p| p.into_inner()).clear();
        fill(plant.site.outbox(), system, messages).await;
        let limit = Instant::now() + Duration::from_secs_f64(messages as f64 / RATE * 3.0 + 60.0);
        while plant.site.outbox().pending_total() > 0 && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen = arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (Some(first), Some(last)) = (seen.first(), seen.last()) else {
            println!("  {label:<22} nothing reached the peer");
            continue;
        };
        let span = (*last - *first).as_secs_f64().max(0.001);
        let seconds = per_second(&seen);
        // The first second holds the burst, the last is partial.
        let whole = seconds
            .get(1..seconds.len().saturating_sub(1))
            .unwrap_or(&[]);
        let (low, high) = (
            whole.iter().min().copied().unwrap_or(0),
            whole.iter().max().copied().unwrap_or(0),
        );
        println!(
            "  {label:<22} {:>8.0} msgs/s at the peer  ({} in {span:.1} s; whole seconds {low}..{high})",
            seen.len() as f64 / span,
            seen.len()
        );
        if system == "Paced" {
            let band = (RATE * 0.9, RATE * 1.1);
            let met = !whole.is_empty()
                && whole
                    .iter()
                    .all(|n| (band.0..=band.1).contains(&(*n as f64)));
            println!(
                "  every whole second within {RATE} ± 10 % ({:.0}..{:.0}): {}",
                band.0,
                band.1,
                if met { "MET" } else { "NOT MET" }
            );
        }
    }
}
