//! The benchmark suites.

use super::{Figures, echo, line, load, plant, verdict, wrk};
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard_core::RetryPolicy;
use switchyard_core::config::{NotificationListDef, SmtpAuth, SmtpDef, TlsMode};
use switchyard_layers::store_forward::{Category, now_ms};

/// Runs `op` from `concurrency` tasks for `duration` (after a short warm-up).
async fn measure<F, Fut>(concurrency: usize, duration: Duration, op: F) -> Figures
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let warm = Instant::now() + Duration::from_millis(300);
    while Instant::now() < warm {
        op().await;
    }
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < end {
                let t = Instant::now();
                if op().await {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    Figures::from_latencies(all, errors, start.elapsed())
}

fn pg_url() -> String {
    std::env::var("SWITCHYARD_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Issue "Inbound API": a scripted method validating 3 parameters, and one doing a
/// `Route.To(…).GetAttributes`, against a bare axum JSON echo — load from a second
/// process at concurrency 32: `switchyard load`, and wrk (`-t1 -c32`) where it is
/// installed. Each ratio uses the generator that got more out of its target.
pub async fn inbound(duration: Duration) {
    let echo = echo::start().await;
    let plant = plant::start(echo, &pg_url()).await;
    let body = json!({ "a": "T-101", "b": 7, "c": 3.5 }).to_string();
    let key = [("X-API-Key", plant::KEY)];
    let wrk = wrk::installed();
    println!("== Inbound API (load from a second process, concurrency 32, {duration:?} each) ==");
    if !wrk {
        println!(
            "  wrk is not installed (apt-get install wrk): only `switchyard load` is used, which \
             drives the echo slower than wrk does and so inflates every ratio"
        );
    }
    let base = both_generators(
        "bare axum JSON echo (baseline)",
        &format!("http://{echo}/echo"),
        &body,
        &[],
        wrk,
        duration,
    )
    .await;
    let v3 = both_generators(
        "POST /api/Validate3 (3 params validated, script returns them)",
        &format!("http://{}/api/Validate3", plant.central_addr),
        &body,
        &key,
        wrk,
        duration,
    )
    .await;
    let ga = both_generators(
        "POST /api/GetAttributes (one Route.To(…).GetAttributes)",
        &format!("http://{}/api/GetAttributes", plant.central_addr),
        "{}",
        &key,
        wrk,
        duration,
    )
    .await;
    println!(
        "  p99 with the better generator: echo {:.2} ms, Validate3 {:.2} ms, GetAttributes {:.2} ms",
        base.p99_ms, v3.p99_ms, ga.p99_ms
    );
    verdict("Validate3 / echo", v3.rps / base.rps, 0.55, true);
    verdict("GetAttributes / echo", ga.rps / base.rps, 0.30, true);
}

/// Measures one target with `switchyard load` and, when `wrk` is set, with wrk; prints
/// both and returns the figures of the one that got more requests through.
async fn both_generators(
    label: &str,
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
    wrk: bool,
    duration: Duration,
) -> Figures {
    println!("{label}");
    let cpu = cpu_seconds();
    let own = load::from_second_process(url, body, headers, 32, duration).await;
    line("  switchyard load", &own);
    cpu_per_request(cpu, &own);
    if !wrk {
        return own;
    }
    let cpu = cpu_seconds();
    match wrk::run(url, body, headers, 32, duration).await {
        Ok(figures) => {
            line("  wrk -t1 -c32", &figures);
            cpu_per_request(cpu, &figures);
            if figures.rps > own.rps { figures } else { own }
        }
        Err(e) => {
            println!("  wrk failed: {e}");
            own
        }
    }
}

/// CPU seconds this process (the servers under test) has used so far, from
/// `/proc/self/stat` (Linux; `None` elsewhere).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ, 100 on every Linux the project runs on.
    Some(ticks / 100.0)
}

/// Prints the servers' CPU time per answered request since `before`: on a small shared
/// machine a steadier measure of a change than requests per second, which move with
/// whatever else runs. Exact for wrk; for `switchyard load` its 0.5 s warm-up is in the
/// time but not in the requests, so that figure is a little high.
fn cpu_per_request(before: Option<f64>, figures: &Figures) {
    if let (Some(before), Some(now)) = (before, cpu_seconds()) {
        let answered = (figures.requests + figures.errors).max(1) as f64;
        println!(
            "    server CPU {:.1} µs per request",
            (now - before) * 1e6 / answered
        );
    }
}

/// Issue "Site runtime": instance-script calls through central's site client to a site
/// on loopback, against the bare echo, both at concurrency 32.
pub async fn site_client(duration: Duration) {
    let echo = echo::start().await;
    let plant = plant::start(echo, &pg_url()).await;
    println!("== Site client (concurrency 32, {duration:?} each, same process) ==");
    let client = reqwest::Client::new();
    let url = format!("http://{echo}/echo");
    let base = measure(32, duration, move || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(&url)
                .json(&json!({ "x": 1 }))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    line("bare axum JSON echo over reqwest (baseline)", &base);
    let registry = plant.central.registry();
    let calls = measure(32, duration, move || {
        let registry = registry.clone();
        async move {
            registry
                .sites
                .call_script("T-1", "Echo", json!({ "x": 1 }), None)
                .await
                .is_ok()
        }
    })
    .await;
    line(
        "site client → /cluster/call → instance script `Echo`",
        &calls,
    );
    verdict("script calls / echo", calls.rps / base.rps, 0.35, true);
}

/// Issue "External System Gateway and Database": `ExternalSystem.Call` from a script vs
/// raw reqwest to the same server; drain of 100,000 buffered `CachedWrite`s.
pub async fn external(duration: Duration, drain: usize) {
    // The external system is another process, as it is in production: a server in this
    // process would let the raw client and the server share a worker thread and answer
    // without a single wake-up, which no real peer does.
    let server = echo::start_in_second_process().await;
    let echo = server.addr;
    let plant = plant::start(echo, &pg_url()).await;
    let runtime = plant.site.runtime().expect("deployed");
    println!(
        "== ExternalSystem.Call vs raw reqwest (JSON echo in a second process, {duration:?} each) =="
    );
    let params = json!({ "tank": "T-1", "level": 42.5 });
    for concurrency in [1usize, 32] {
        let client = reqwest::Client::new();
        let (url, body) = (format!("http://{echo}/echo"), params.clone());
        let raw = measure(concurrency, duration, move || {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                client
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        line(
            &format!("raw reqwest POST, concurrency {concurrency} (baseline)"),
            &raw,
        );
        let (rt, p) = (runtime.clone(), params.clone());
        let script = measure(concurrency, duration, move || {
            let (rt, p) = (rt.clone(), p.clone());
            async move { rt.call_script("T-1", "Ext", p, None).await.is_ok() }
        })
        .await;
        line(
            &format!("script → ExternalSystem.Call, concurrency {concurrency}"),
            &script,
        );
        if concurrency == 1 {
            verdict(
                "script p50 latency / raw p50 latency",
                script.p50_ms / raw.p50_ms,
                1.25,
                false,
            );
            let (rt, p) = (runtime.clone(), params.clone());
            let dispatch = measure(1, duration, move || {
                let (rt, p) = (rt.clone(), p.clone());
                async move { rt.call_script("T-1", "Echo", p, None).await.is_ok() }
            })
            .await;
            line(
                "  of which: script `Echo` (no call), concurrency 1",
                &dispatch,
            );
            let per_call = calls_inside_one_script(&runtime, duration).await;
            println!(
                "{:<58} p50 {:>7.3} ms per call (a script making {CALLS_PER_RUN} calls in a row)",
                "ExternalSystem.Call as the script sees it", per_call
            );
            verdict(
                "in-script call latency / raw p50 latency",
                per_call / raw.p50_ms,
                1.25,
                false,
            );
        }
    }
    println!("== Drain of {drain} buffered CachedWrites ==");
    drain_into(
        &plant,
        "Historian",
        "INSERT INTO drain (n) VALUES (?1)",
        "CREATE TABLE IF NOT EXISTS drain (n INTEGER)",
        drain,
    )
    .await;
    match tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            let table = format!("bench_drain_{}", std::process::id());
            let _ = client
                .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                .await;
            drain_into(
                &plant,
                "Pg",
                &format!("INSERT INTO {table} (n) VALUES ($1)"),
                &format!("CREATE TABLE {table} (n int8)"),
                drain,
            )
            .await;
            let rows = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(-1);
            println!("  PostgreSQL rows present: {rows}");
            let _ = client
                .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                .await;
        }
        Err(e) => println!(
            "  PostgreSQL not reachable at {} ({e}): its drain was not measured",
            pg_url()
        ),
    }
}

const CALLS_PER_RUN: u32 = 200;

/// The median, over runs of a script making `CALLS_PER_RUN` calls in a row, of the time
/// one call takes as the script sees it (the script's dispatch spread over its calls).
async fn calls_inside_one_script(
    runtime: &Arc<switchyard_site::runtime::Runtime>,
    duration: Duration,
) -> f64 {
    let end = Instant::now() + duration;
    let mut per_call = Vec::new();
    while Instant::now() < end {
        let t = Instant::now();
        let run = runtime
            .call_script("T-1", "ExtLoop", json!({ "n": CALLS_PER_RUN }), None)
            .await;
        if run.is_ok() {
            per_call.push(t.elapsed().as_secs_f64() * 1000.0 / f64::from(CALLS_PER_RUN));
        }
    }
    per_call.sort_by(f64::total_cmp);
    per_call
        .get(per_call.len() / 2)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Fills the site's outbox with `count` writes due a little later, then times the
/// forwarder draining them into the database.
async fn drain_into(
    plant: &plant::BenchPlant,
    connection: &str,
    insert: &str,
    create: &str,
    count: usize,
) {
    let runtime = plant.site.runtime().expect("deployed");
    let pool = runtime
        .databases
        .get(connection)
        .expect("connection")
        .clone();
    if let Err(e) = pool.execute(create, &[], None).await {
        println!("  {connection}: cannot create the table ({e}); skipped");
        return;
    }
    let outbox = plant.site.outbox().clone();
    let due = now_ms() + 5_000;
    super::backlog(
        &outbox,
        Category::Database,
        connection,
        count,
        due,
        |i| json!({ "connection": connection, "sql": insert, "params": [i] }),
    )
    .await;
    let wait = due.saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let start = Instant::now();
    while outbox.pending_total() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    println!(
        "  {connection:<10} {:>9.0} rows/s  ({count} rows in {:.1} s)",
        count as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );
}

/// A tiny SMTP sink: accepts everything; `delay` per message stands in for the
/// server's own work (queueing to disk).
async fn smtp_sink(delay: Duration, received: Arc<AtomicU64>) -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the sink");
    let port = listener.local_addr().expect("sink address").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let received = received.clone();
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ready\r\n").await;
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        tokio::time::sleep(delay).await;
                        received.fetch_add(1, Ordering::Relaxed);
                        b"250 2.0.0 queued\r\n"
                    } else {
                        match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                            Some("EHLO") | Some("HELO") => b"250 sink\r\n",
                            Some("DATA") => {
                                in_data = true;
                                b"354 go ahead\r\n"
                            }
                            Some("QUIT") => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        }
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Issue "Notification Service": e-mails/s with a pool of 5 sessions against a single
/// session, 64 scripts sending at once.
pub async fn smtp(duration: Duration, delay: Duration) {
    println!(
        "== Notifications: e-mails/s to a local SMTP sink ({} ms per message at the server), 64 senders, {duration:?} each ==",
        delay.as_millis()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let outbox = switchyard_layers::store_forward::FjallOutbox::open(
        &dir.path().join("outbox"),
        Default::default(),
    )
    .expect("outbox");
    let lists = BTreeMap::from([(
        "Operators".to_string(),
        NotificationListDef {
            recipients: vec!["ops1@plant.example".into(), "ops2@plant.example".into()],
        },
    )]);
    let mut results = Vec::new();
    for sessions in [1u32, 5] {
        let received = Arc::new(AtomicU64::new(0));
        let port = smtp_sink(delay, received.clone()).await;
        let def = SmtpDef {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            from: "scada@plant.example".into(),
            auth: SmtpAuth::None,
            timeout: Duration::from_secs(10),
            max_connections: sessions,
            retry: RetryPolicy::default(),
            pace: Default::default(),
            ca_pem: None,
        };
        let notifier =
            switchyard_site::notify::Notifier::new(Some(&def), &lists, dir.path(), outbox.clone());
        let figures = measure(64, duration, move || {
            let notifier = notifier.clone();
            async move {
                matches!(
                    notifier
                        .send("Operators", "Level high", "T-101 at 95 %", None)
                        .await,
                    Ok(None)
                )
            }
        })
        .await;
        line(
            &format!("Notify.To(list).Send, {sessions} SMTP session(s)"),
            &figures,
        );
        results.push(figures);
    }
    verdict(
        "pool of 5 / single session",
        results[1].rps / results[0].rps,
        3.0,
        true,
    );
}
