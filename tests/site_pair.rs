//! A site as a pair with a witness (SPEC §8, `[7.5-1]`): three `switchyard site --node`
//! processes, central in front. Messages buffered through the active node survive its
//! `kill -9`: the standby takes over and delivers every acknowledged one.

mod common;

use common::plant_toml::{PlantToml, list, table};
use common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const NODES: [&str; 3] = ["a", "b", "w"];

/// plant-a as a pair (nodes a, b, witness w); the stub's messages retried for as long
/// as the test needs.
fn pair_config(c: &mut PlantToml, ports: [u16; 3]) {
    let node = |name: &str, port: u16| {
        table([
            ("name", name.into()),
            ("listen", format!("127.0.0.1:{port}").into()),
            ("data_dir", format!("data/plant-a-{name}").into()),
        ])
    };
    c.table("sites.plant-a")
        .remove("listen")
        .remove("data_dir")
        .set("nodes", list([node("a", ports[0]), node("b", ports[1])]))
        .set("witness", node("w", ports[2]));
    c.table("external_systems.Stub").set(
        "retry",
        table([
            ("max_retries", 100_000.into()),
            ("interval", "300ms".into()),
        ]),
    );
}

struct SitePair {
    plant: TestPlant,
    ports: [u16; 3],
}

impl SitePair {
    fn start_node(&mut self, i: usize) {
        let name = format!("plant-a-{}", NODES[i]);
        let config = self.plant.config_str().to_string();
        let p = switchyard(
            self.plant.dir.path(),
            &name,
            &[
                "site", "--config", &config, "--site", "plant-a", "--node", NODES[i],
            ],
        );
        self.plant.procs.push(p);
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `i`'s process.
    fn signal(&self, i: usize, signal: &str) {
        let name = format!("plant-a-{}", NODES[i]);
        let proc = self
            .plant
            .procs
            .iter()
            .find(|p| p.name == name)
            .expect("running");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), proc.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    fn kill_node(&mut self, i: usize) {
        self.plant.kill(&format!("plant-a-{}", NODES[i]));
    }

    async fn get(&self, i: usize, path: &str) -> Option<(u16, Value)> {
        let r = http()
            .get(format!("http://127.0.0.1:{}{path}", self.ports[i]))
            .bearer_auth(SITE_TOKEN)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or_default()))
    }

    /// The full node that answers `/ready` with 200, once exactly one does.
    async fn active(&self, limit: Duration) -> usize {
        let until = Instant::now() + limit;
        loop {
            let mut ready = Vec::new();
            for i in 0..3 {
                if self.get(i, "/ready").await.is_some_and(|(s, _)| s == 200) {
                    ready.push(i);
                }
            }
            assert!(ready.len() <= 1, "two ready nodes: {ready:?}");
            if let [one] = ready[..] {
                return one;
            }
            assert!(Instant::now() < until, "no node of plant-a became active");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A pair of plant-a with its witness, plant-b and central, with the HTTP peer behind
/// a proxy that starts down. Returns once plant-a's active node has its deployment.
async fn start_pair() -> (SitePair, HttpStub, TcpProxy, usize) {
    let stub = HttpStub::start().await;
    let peer = TcpProxy::start(stub.addr, false).await;
    let peers = Peers {
        stub: format!("127.0.0.1:{}", peer.port),
        ..Peers::default()
    };
    let ports = [free_port(), free_port(), free_port()];
    let mut pair = SitePair {
        plant: TestPlant::with_config(&peers, |c| pair_config(c, ports)),
        ports,
    };
    for i in 0..3 {
        pair.start_node(i);
    }
    pair.plant.start_site("plant-b");
    pair.plant.start_central();
    let first = pair.active(Duration::from_secs(60)).await;
    assert_ne!(first, 2, "the witness is never active");
    wait_until_async(
        "plant-a has a deployment",
        Duration::from_secs(60),
        || async {
            pair.get(first, "/cluster/health")
                .await
                .is_some_and(|(_, h)| !h["revision"].is_null())
        },
    )
    .await;
    (pair, stub, peer, first)
}

/// Buffers `count` CachedCalls through central (the peer is down); their message ids.
async fn buffer_calls(pair: &SitePair, count: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for n in 0..count {
        let r = pair
            .plant
            .run(
                "T-1",
                "Cached",
                json!({ "system": "Stub", "method": "PostReading",
                        "args": { "tank": format!("T-{n}"), "level": n as f64 } }),
            )
            .await;
        assert_eq!(r["value"]["status"], "buffered", "{r}");
        ids.insert(r["value"]["id"].as_str().unwrap().to_string());
    }
    ids
}

/// Waits until every id in `ids` was delivered to the peer.
async fn wait_delivered(stub: &HttpStub, ids: &HashSet<String>, what: &str, limit: Duration) {
    wait_until(what, limit, || {
        let seen = deliveries(stub);
        ids.iter().all(|id| seen.contains_key(id))
    })
    .await;
}

/// How often each message id was delivered (the peer answered 2xx).
fn deliveries(stub: &HttpStub) -> std::collections::HashMap<String, usize> {
    let mut seen = std::collections::HashMap::new();
    for s in stub.seen().into_iter().filter(|s| s.status < 300) {
        if let Some(id) = s
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
        {
            *seen.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_pair_takes_over_on_kill_9_and_delivers_every_acknowledged_message() {
    let (mut pair, stub, peer, first) = start_pair().await;
    let ports = pair.ports;
    let standby = 1 - first;

    // Every node says what it is, without credentials (a follower learns who leads
    // from the leader's next message).
    for (i, role) in [(first, "active"), (standby, "standby"), (2, "witness")] {
        let health = || async {
            let r = http()
                .get(format!("http://127.0.0.1:{}/health", ports[i]))
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        };
        wait_until_async(
            "the node knows the active node",
            Duration::from_secs(10),
            || async { health().await["active_node"] == NODES[first] },
        )
        .await;
        let h = health().await;
        assert_eq!(h["role"], role, "{h}");
        assert_eq!(h["node"], NODES[i], "{h}");
    }
    // A standby refuses the site's work and names the active node.
    let r = http()
        .post(format!("http://127.0.0.1:{}/cluster/call", ports[standby]))
        .bearer_auth(SITE_TOKEN)
        .json(&json!({ "instance": "T-1", "script": "Echo", "params": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "NOT_ACTIVE", "{body}");
    assert_eq!(body["active_node"], NODES[first], "{body}");

    // The peer is down: every CachedCall is buffered — acknowledged only once a
    // majority of the pair has it.
    let ids = buffer_calls(&pair, 60).await;

    // kill -9 of the active node: the standby takes over, central follows it.
    let killed = Instant::now();
    pair.kill_node(first);
    let second = pair.active(Duration::from_secs(10)).await;
    assert_eq!(second, standby);
    let failover = killed.elapsed();
    let r = pair
        .plant
        .run("T-1", "Echo", json!({ "after": "failover" }))
        .await;
    assert_eq!(r["instance"], "T-1", "{r}");
    eprintln!(
        "failover (kill -9 → standby ready): {} ms",
        failover.as_millis()
    );

    // The peer comes back: every acknowledged message reaches it, none lost.
    peer.set_up(true);
    wait_delivered(
        &stub,
        &ids,
        "every acknowledged message reached the peer",
        Duration::from_secs(60),
    )
    .await;

    // The killed node comes back as a standby.
    pair.start_node(first);
    wait_until_async(
        "the old active node is back as standby",
        Duration::from_secs(30),
        || async {
            pair.get(first, "/health")
                .await
                .is_some_and(|(_, h)| h["role"] == "standby")
        },
    )
    .await;
    assert_eq!(pair.active(Duration::from_secs(5)).await, second);
}

/// Fencing: the active node paused past the election timeout (SIGSTOP) and resumed
/// (SIGCONT) delivers nothing and runs no script: the new active node delivered every
/// message exactly once, and the resumed node refuses work.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_active_node_resumes_as_a_standby_that_delivers_nothing_and_runs_no_script() {
    let (pair, stub, peer, first) = start_pair().await;
    let other = 1 - first;
    let ids = buffer_calls(&pair, 30).await;

    pair.signal(first, "STOP");
    assert_eq!(pair.active(Duration::from_secs(15)).await, other);
    peer.set_up(true);
    wait_delivered(
        &stub,
        &ids,
        "the new active node delivered everything",
        Duration::from_secs(60),
    )
    .await;

    pair.signal(first, "CONT");
    // Past the old node's retry interval: were it still delivering, it would by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = deliveries(&stub);
    let twice: Vec<_> = ids.iter().filter(|id| seen.get(*id) != Some(&1)).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let (status, body) = pair
        .get(first, "/ready")
        .await
        .expect("the resumed node answers");
    assert_eq!(status, 503, "{body}");
    let r = http()
        .post(format!(
            "http://127.0.0.1:{}/cluster/call",
            pair.ports[first]
        ))
        .bearer_auth(SITE_TOKEN)
        .json(&json!({ "instance": "T-1", "script": "Echo", "params": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503, "the resumed node runs no script");
    assert_eq!(pair.active(Duration::from_secs(5)).await, other);
}

/// 20 cycles of `kill -9` of a voter (the active node two times in three) while calls
/// are buffered through central and drained to a peer that comes and goes; then every
/// acknowledged message — buffered (by id) or delivered at once (by its tag) — is found
/// at the peer: 0 lost. Long: run by `.ci/run` with the other ignored tests.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "long (about 3 minutes): run by .ci/run with --ignored"]
async fn twenty_kill_9_cycles_under_load_lose_no_acknowledged_message() {
    let (mut pair, stub, peer, _) = start_pair().await;
    peer.set_up(true);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The peer flaps: answering 503 (calls are buffered) or 200 (the backlog drains).
    let flapper = {
        let (stub, stop) = (stub.clone(), stop.clone());
        tokio::spawn(async move {
            let mut up = false;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                up = !up;
                let status = if up { 200 } else { 503 };
                stub.set_default(Reply::json(status, json!({})));
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        })
    };
    let central = pair.plant.central_port;
    let producer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut buffered, mut delivered) = (HashSet::new(), HashSet::new());
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let tag = format!("L-{n}");
                let r = http()
                    .post(format!("http://127.0.0.1:{central}/api/Run"))
                    .header("X-API-Key", KEY)
                    .timeout(Duration::from_secs(20))
                    .json(&json!({ "instance": "T-1", "script": "Cached", "args": {
                        "system": "Stub", "method": "PostReading",
                        "args": { "tank": tag, "level": 1.0 } } }))
                    .send()
                    .await;
                // Only what was acknowledged counts; a refusal during a failover is
                // the caller's to retry.
                let Ok(r) = r else { continue };
                if r.status() != 200 {
                    continue;
                }
                let body: Value = r.json().await.unwrap_or_default();
                match body["value"]["status"].as_str() {
                    Some("buffered") => {
                        buffered.insert(body["value"]["id"].as_str().unwrap().to_string());
                    }
                    Some("delivered") => {
                        delivered.insert(tag);
                    }
                    _ => {}
                }
            }
            (buffered, delivered)
        })
    };

    let mut failovers = Vec::new();
    for cycle in 0..20 {
        let active = pair.active(Duration::from_secs(30)).await;
        let victim = if cycle % 3 == 2 {
            (active + 1 + cycle % 2) % 3
        } else {
            active
        };
        let killed = Instant::now();
        pair.kill_node(victim);
        if victim == active {
            pair.active(Duration::from_secs(30)).await;
            failovers.push(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        pair.start_node(victim);
        wait_until_async(
            "the restarted voter answers",
            Duration::from_secs(30),
            || async { pair.get(victim, "/health").await.is_some() },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (buffered, delivered) = producer.await.unwrap();
    flapper.await.unwrap();
    stub.set_default(Reply::json(200, json!({})));
    assert!(
        buffered.len() > 50,
        "the load buffered something: {}",
        buffered.len()
    );
    wait_delivered(
        &stub,
        &buffered,
        "every acknowledged message reached the peer",
        Duration::from_secs(120),
    )
    .await;
    let tags: HashSet<String> = stub
        .seen()
        .iter()
        .filter(|s| s.status < 300)
        .filter_map(|s| s.body["tank"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<_> = delivered.iter().filter(|t| !tags.contains(*t)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged as delivered but never seen: {lost:?}"
    );
    failovers.sort();
    eprintln!(
        "{} buffered + {} delivered at once, 0 lost; failovers: median {} ms, max {} ms",
        buffered.len(),
        delivered.len(),
        failovers[failovers.len() / 2].as_millis(),
        failovers[failovers.len() - 1].as_millis()
    );
}
