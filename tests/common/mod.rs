//! Shared harness of the end-to-end tests: a plant written to a temporary directory,
//! central and sites as separate processes of the built binary, and real peers — an HTTP
//! server, the aiosmtpd fixture, PostgreSQL (through a TCP proxy that can be "down") and
//! SQLite.

#![allow(dead_code)]

#[path = "../../src/bench/plant_toml.rs"]
pub mod plant_toml;

use plant_toml::{PlantToml, Toml, list, param, table};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The demo API key of the test plants, and its stored hash.
pub const KEY: &str = "e2e-key-0123456789";
/// A second key, approved for nothing.
pub const OTHER_KEY: &str = "e2e-other-key-9876543210";
pub const ADMIN_TOKEN: &str = "e2e-admin-token";
pub const SITE_TOKEN: &str = "e2e-site-token";

pub fn hash(key: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Whether missing peers must fail the test (CI) or skip it.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A child process killed on drop; its stderr goes to a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Proc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- log of {} ----\n{}", self.name, self.log_text());
        }
    }
}

pub fn switchyard(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("RUST_LOG", "info,switchyard=debug")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    Proc {
        child,
        log,
        name: name.to_string(),
    }
}

/// Runs the CLI to completion: (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub async fn wait_until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting until {what}");
}

pub async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    panic!("timed out after {timeout:?} waiting until {what}");
}

pub fn http() -> reqwest::Client {
    switchyard_core::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A recorded request to the HTTP stub.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Value,
    /// When the request reached the stub.
    pub at: Instant,
    /// The status the stub answered with.
    pub status: u16,
}

/// What the stub answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

/// An in-process HTTP server standing in for an external system: records every request
/// and answers from a queue of replies (then the default).
#[derive(Clone)]
pub struct HttpStub {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub queue: Arc<Mutex<VecDeque<Reply>>>,
    pub default: Arc<Mutex<Reply>>,
}

impl HttpStub {
    pub async fn start() -> HttpStub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stub = HttpStub {
            addr,
            seen: Arc::default(),
            queue: Arc::default(),
            default: Arc::new(Mutex::new(Reply::json(200, json!({"ok": true})))),
        };
        let s = stub.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let s = s.clone();
            async move {
                let at = Instant::now();
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let reply = s
                    .queue
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| s.default.lock().unwrap().clone());
                s.seen.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().map(str::to_string),
                    headers: parts.headers.clone(),
                    body,
                    at,
                    status: reply.status,
                });
                if !reply.delay.is_zero() {
                    tokio::time::sleep(reply.delay).await;
                }
                let mut response = axum::response::Response::builder()
                    .status(reply.status)
                    .header("content-type", "application/json");
                for (k, v) in &reply.headers {
                    response = response.header(k, v);
                }
                response
                    .body(axum::body::Body::from(reply.body.to_string()))
                    .unwrap()
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        stub
    }

    pub fn push(&self, reply: Reply) {
        self.queue.lock().unwrap().push_back(reply);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The aiosmtpd fixture (tests/fixtures/smtp_server.py) as a child process.
pub struct Smtp {
    pub port: u16,
    pub dir: PathBuf,
    proc: Option<Child>,
    args: Vec<String>,
}

pub fn python() -> Option<String> {
    if let Ok(p) = std::env::var("SWITCHYARD_PYTHON") {
        return Some(p);
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python");
    if Path::new(venv).exists() {
        return Some(venv.to_string());
    }
    None
}

impl Smtp {
    /// Starts the fixture on `port` (0 = any). `None` (test skipped) when Python with
    /// aiosmtpd is not available outside CI; in CI that is a failure.
    pub fn start(dir: &Path, port: u16, extra: &[&str]) -> Option<Smtp> {
        let Some(python) = python() else {
            assert!(
                !in_ci(),
                "the SMTP fixture needs SWITCHYARD_PYTHON (run the tests with scripts/test)"
            );
            eprintln!("no Python with aiosmtpd: SMTP test skipped outside CI (run scripts/test)");
            return None;
        };
        std::fs::create_dir_all(dir).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smtp_server.py");
        let mut args = vec![
            script.to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut smtp = Smtp {
            port,
            dir: dir.to_path_buf(),
            proc: None,
            args: args.clone(),
        };
        smtp.spawn(&python);
        Some(smtp)
    }

    fn spawn(&mut self, python: &str) {
        let mut child = Command::new(python)
            .args(&self.args)
            .args(["--port", &self.port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the SMTP fixture");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("SMTP fixture did not start: {line:?}"));
        self.port = port.parse().unwrap();
        self.proc = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let python = python().unwrap();
        self.spawn(&python);
    }

    pub fn control(&self, value: Value) {
        let tmp = self.dir.join("control.json.tmp");
        std::fs::write(&tmp, value.to_string()).unwrap();
        std::fs::rename(tmp, self.dir.join("control.json")).unwrap();
    }

    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn messages(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "message")
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of a real server that can be switched "down" (connections
/// refused) and "up" again: a database outage without stopping the shared database.
pub struct TcpProxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    forwarded: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    port_holder: Option<tokio::net::TcpListener>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr, up: bool) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(up));
        let f = flag.clone();
        let forwarded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = forwarded.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !f.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound); // refused: the connection is closed at once
                    continue;
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        TcpProxy {
            port,
            up: flag,
            forwarded,
            task,
            port_holder: None,
        }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }

    /// Connections passed through to the target so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.port_holder.take();
    }
}

pub fn pg_url() -> String {
    std::env::var("SWITCHYARD_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether PostgreSQL answers; outside CI a missing server skips, in CI it fails.
pub async fn postgres_available() -> bool {
    let ok = tokio::net::TcpStream::connect("127.0.0.1:5432")
        .await
        .is_ok();
    if !ok {
        assert!(
            !in_ci(),
            "PostgreSQL is required in CI but nothing listens on 127.0.0.1:5432"
        );
        eprintln!("PostgreSQL not reachable: test skipped outside CI");
    }
    ok
}

pub async fn psql(sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.query(sql, &[]).await.unwrap()
}

/// At most this many plants run at once (each is three processes on a small machine).
const PARALLEL_PLANTS: usize = 3;

static RUNNING: (Mutex<usize>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

/// A running-plant permit.
pub struct Slot;

impl Slot {
    pub fn take() -> Slot {
        let (lock, cvar) = &RUNNING;
        let mut n = lock.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= PARALLEL_PLANTS {
            n = cvar.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cvar) = &RUNNING;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        cvar.notify_one();
    }
}

/// Where the peers of a test plant are.
#[derive(Debug, Clone)]
pub struct Peers {
    pub stub: String,
    pub smtp_port: u16,
    pub pg_port: u16,
}

impl Default for Peers {
    fn default() -> Self {
        let closed = free_port();
        Peers {
            stub: format!("127.0.0.1:{closed}"),
            smtp_port: free_port(),
            pg_port: free_port(),
        }
    }
}

/// A plant of central and two sites (plant-a: T-1, T-2; plant-b: P-1) in a temp dir.
pub struct TestPlant {
    /// First, so the processes stop (and print their logs on a failure) before the
    /// directory with their logs and data is removed.
    pub procs: Vec<Proc>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub central_port: u16,
    pub site_ports: Vec<(String, u16)>,
    _slot: Slot,
}

const PROBE: &[(&str, &str)] = &[
    ("Echo", "#{ instance: Instance.Code, params: params }"),
    (
        "External",
        "let r = #{}; try { r.value = ExternalSystem.Call(params.system, params.method, params.args); } catch (e) { r.error = e; } r",
    ),
    (
        "Cached",
        "let r = #{}; try { r.value = ExternalSystem.CachedCall(params.system, params.method, params.args); } catch (e) { r.error = e; } r",
    ),
    (
        "Mail",
        "let r = #{}; try { r.value = Notify.To(params.list).Send(params.subject, params.message); } catch (e) { r.error = e; } r",
    ),
    (
        "Query",
        "let r = #{}; try { let db = Database.Connection(params.db); r.value = db.Query(params.sql, params.args); } catch (e) { r.error = e; } r",
    ),
    (
        "Exec",
        "let r = #{}; try { let db = Database.Connection(params.db); r.value = db.Execute(params.sql, params.args); } catch (e) { r.error = e; } r",
    ),
    (
        "Write",
        "let r = #{}; try { r.value = Database.CachedWrite(params.db, params.sql, params.args); } catch (e) { r.error = e; } r",
    ),
    (
        "Spin",
        "let t = timestamp(); while t.elapsed < params.secs { } #{ spun: params.secs }",
    ),
    ("Loop", "loop { }"),
    (
        "Fill",
        "let level = Instance.GetAttribute(\"Level\") + params.amount; Instance.SetAttribute(\"Level\", level); #{ level: level }",
    ),
    ("Shared", "Shared.Call(\"double\", #{ x: params.x })"),
    (
        "CallOwn",
        "Instance.CallScript(\"Echo\", #{ via: \"CallScript\" })",
    ),
    (
        "CallOther",
        "let r = #{}; try { r.value = Instance.CallScript(params.name, #{}); } catch (e) { r.error = e; } r",
    ),
    ("Grow", "let s = \"xxxxxxxxxx\"; loop { s += s; }"),
    ("Recurse", "fn down(n) { down(n + 1) } down(0)"),
];

/// The configuration of the test plant: central, `plant-a` (T-1, T-2) and `plant-b` (P-1),
/// the API methods, the `Probe` template with the `PROBE` scripts, and the peers' surfaces.
fn plant_config(central_port: u16, a: u16, b: u16, closed: u16, peers: &Peers) -> PlantToml {
    let run_params = || {
        list([
            param("instance", "String", true),
            param("script", "String", true),
            param("args", "Object", false),
        ])
    };
    let retry = |max_retries: i32, interval: &str| {
        table([
            ("max_retries", max_retries.into()),
            ("interval", interval.into()),
        ])
    };
    let reading_params = || list([param("tank", "String", true), param("level", "Float", true)]);
    let mut c = PlantToml::default();
    c.table("central")
        .set("listen", format!("127.0.0.1:{central_port}"))
        .set("data_dir", "data/central")
        .set("admin_token", ADMIN_TOKEN)
        .set("script_threads", 4)
        .set("site_connect_timeout", "1s");
    c.table("sites.plant-a")
        .set("listen", format!("127.0.0.1:{a}"))
        .set("data_dir", "data/plant-a")
        .set("token", SITE_TOKEN)
        .set("script_threads", 4)
        .set("script_timeout", "20s")
        .set("min_free_disk", "1MiB");
    c.table("sites.plant-b")
        .set("listen", format!("127.0.0.1:{b}"))
        .set("data_dir", "data/plant-b")
        .set("token", SITE_TOKEN)
        .set("script_timeout", "20s")
        .set("min_free_disk", "1MiB");
    c.table("api_keys.mes")
        .set("hash", hash(KEY))
        .set("enabled", true);
    c.table("api_keys.other")
        .set("hash", hash(OTHER_KEY))
        .set("enabled", true);
    let mes = || list(["mes"]);
    c.table("api_methods.Run")
        .set("script", "api/run.rhai")
        .set("timeout", "20s")
        .set("approved_keys", mes())
        .set("params", run_params());
    c.table("api_methods.Levels")
        .set("script", "api/levels.rhai")
        .set("timeout", "10s")
        .set("approved_keys", mes())
        .set("params", list([param("tanks", "List<String>", true)]))
        .set(
            "returns",
            "List<Object{tank: String, level: Float, setpoint: Float}>",
        );
    c.table("api_methods.SetLevels")
        .set("script", "api/set_levels.rhai")
        .set("timeout", "10s")
        .set("approved_keys", mes())
        .set(
            "params",
            list([
                param("tank", "String", true),
                param("level", "Float", true),
                param("setpoint", "Float", true),
            ]),
        )
        .set("returns", "Object{tank: String}");
    c.table("api_methods.Broken")
        .set("script", "api/broken.rhai")
        .set("approved_keys", mes());
    c.table("api_methods.WrongReturn")
        .set("script", "api/wrong_return.rhai")
        .set("approved_keys", mes())
        .set("returns", "Object{sum: Integer}");
    c.table("api_methods.Typed")
        .set("script", "api/typed.rhai")
        .set("approved_keys", mes())
        .set(
            "params",
            list([
                param("n", "Integer", true),
                param("items", "List<Object{qty: Integer}>", true),
            ]),
        )
        .set("returns", "Object{sum: Integer}");
    c.table("api_methods.CallShared")
        .set("script", "api/shared.rhai")
        .set("approved_keys", mes());
    c.table("api_methods.CallSharedCaught")
        .set("script", "api/shared_caught.rhai")
        .set("approved_keys", mes());
    c.table("api_methods.Spin")
        .set("script", "api/spin.rhai")
        .set("timeout", "1s")
        .set("approved_keys", mes());
    c.table("api_methods.SlowRoute")
        .set("script", "api/run.rhai")
        .set("timeout", "1500ms")
        .set("approved_keys", mes())
        .set("params", run_params());
    c.table("templates.Probe")
        .set(
            "attributes",
            table([("Level", "Float".into()), ("Setpoint", "Float".into())]),
        )
        .set(
            "scripts",
            Toml::Table(
                PROBE
                    .iter()
                    .map(|(name, _)| (name.to_string(), format!("scripts/{name}.rhai").into()))
                    .collect(),
            ),
        )
        .set(
            "alarms",
            list([table([
                ("name", "High".into()),
                ("attribute", "Level".into()),
                ("above", 90.0.into()),
                ("on_trigger", "scripts/alarm.rhai".into()),
            ])]),
        );
    for (code, site, level, setpoint) in [
        ("T-1", "plant-a", 10.0, 50.0),
        ("T-2", "plant-a", 20.0, 60.0),
        ("P-1", "plant-b", 30.0, 70.0),
    ] {
        c.table(&format!("instances.{code}"))
            .set("template", "Probe")
            .set("site", site)
            .set(
                "values",
                table([("Level", level.into()), ("Setpoint", setpoint.into())]),
            );
    }
    c.table("shared_scripts")
        .set("double", "scripts/shared/double.rhai");
    let stub = &peers.stub;
    c.table("external_systems.Stub")
        .set("base_url", format!("http://{stub}/erp"))
        .set(
            "auth",
            table([
                ("type", "api_key".into()),
                ("header", "X-API-Key".into()),
                ("key", "stub-key-123".into()),
            ]),
        )
        .set("timeout", "2s")
        .set("retry", retry(3, "1s"));
    c.table("external_systems.Stub.methods.GetOrder")
        .set("http_method", "GET")
        .set("path", "/orders")
        .set("params", list([param("id", "Integer", true)]))
        .set("returns", "Object{id: Integer, status: String}");
    c.table("external_systems.Stub.methods.DeleteOrder")
        .set("http_method", "DELETE")
        .set("path", "/orders")
        .set("params", list([param("id", "Integer", true)]));
    c.table("external_systems.Stub.methods.PostReading")
        .set("http_method", "POST")
        .set("path", "/readings")
        .set("params", reading_params());
    c.table("external_systems.Stub.methods.PutOrder")
        .set("http_method", "PUT")
        .set("path", "/orders")
        .set(
            "params",
            list([
                param("id", "Integer", true),
                param("status", "String", true),
            ]),
        );
    c.table("external_systems.BasicStub")
        .set("base_url", format!("http://{stub}/erp"))
        .set(
            "auth",
            table([
                ("type", "basic".into()),
                ("username", "erp-user".into()),
                ("password", "erp-pass-456".into()),
            ]),
        )
        .set("timeout", "2s");
    c.table("external_systems.BasicStub.methods.PostReading")
        .set("http_method", "POST")
        .set("path", "/readings")
        .set("params", reading_params());
    c.table("external_systems.Down")
        .set("base_url", format!("http://127.0.0.1:{closed}/nothing"))
        .set("timeout", "2s")
        .set("retry", retry(2, "1s"));
    c.table("external_systems.Down.methods.Ping")
        .set("http_method", "POST")
        .set("path", "/ping");
    c.table("databases.Historian")
        .set("url", "sqlite://data/historian.db")
        .set("max_connections", 4);
    c.table("databases.Pg")
        .set(
            "url",
            format!("postgres://postgres@127.0.0.1:{}/test", peers.pg_port),
        )
        .set("max_connections", 4)
        .set("timeout", "3s")
        .set("retry", retry(30, "1s"));
    c.table("databases.PgDown")
        .set(
            "url",
            format!("postgres://postgres@127.0.0.1:{closed}/test"),
        )
        .set("timeout", "2s");
    c.table("smtp")
        .set("host", "127.0.0.1")
        .set("port", peers.smtp_port)
        .set("tls", "none")
        .set("from", "scada@plant.example")
        .set("auth", table([("type", "none".into())]))
        .set("timeout", "5s")
        .set("max_connections", 3)
        .set("retry", retry(30, "1s"));
    c.table("notification_lists.Operators").set(
        "recipients",
        list([
            "ops1@plant.example",
            "ops2@plant.example",
            "ops1@plant.example",
        ]),
    );
    c
}

impl TestPlant {
    pub fn new(peers: &Peers) -> TestPlant {
        TestPlant::with_config(peers, |_| {})
    }

    /// A plant whose configuration `adjust` changes before it is written.
    pub fn with_config(peers: &Peers, adjust: impl FnOnce(&mut PlantToml)) -> TestPlant {
        let slot = Slot::take();
        let dir = tempfile::tempdir().unwrap();
        let central_port = free_port();
        let site_ports = vec![
            ("plant-a".to_string(), free_port()),
            ("plant-b".to_string(), free_port()),
        ];
        let closed = free_port();
        let mut scripts = String::new();
        for (name, body) in PROBE {
            write(dir.path(), &format!("scripts/{name}.rhai"), body);
            scripts.push_str(&format!("{name} = \"scripts/{name}.rhai\", "));
        }
        write(dir.path(), "scripts/shared/double.rhai", "params.x * 2");
        write(
            dir.path(),
            "scripts/alarm.rhai",
            "ExternalSystem.Call(\"Stub\", \"PostReading\", #{ tank: `${params.alarm} on ${Instance.Code}`, level: params.value });",
        );
        write(
            dir.path(),
            "api/run.rhai",
            "let args = if params.args == () { #{} } else { params.args }; Route.To(params.instance).Call(params.script, args)",
        );
        write(
            dir.path(),
            "api/levels.rhai",
            "let out = []; for t in params.tanks { let a = Route.To(t).GetAttributes([\"Level\", \"Setpoint\"]); out.push(#{ tank: t, level: a.Level, setpoint: a.Setpoint }); } out",
        );
        write(
            dir.path(),
            "api/set_levels.rhai",
            "Route.To(params.tank).SetAttributes(#{ Level: params.level, Setpoint: params.setpoint }); #{ tank: params.tank }",
        );
        write(
            dir.path(),
            "api/broken.rhai",
            "let internal = \"INTERNAL-DETAIL-\" + \"7731\"; throw internal;",
        );
        write(
            dir.path(),
            "api/wrong_return.rhai",
            "#{ sum: \"not a number\" }",
        );
        write(
            dir.path(),
            "api/typed.rhai",
            "let sum = params.n; for i in params.items { sum += i.qty; } #{ sum: sum }",
        );
        write(
            dir.path(),
            "api/shared.rhai",
            "Shared.Call(\"double\", #{ x: 1 })",
        );
        write(
            dir.path(),
            "api/shared_caught.rhai",
            "let r = #{}; try { Shared.Call(\"double\", #{ x: 1 }); r.status = \"called\"; } catch (e) { r.error = e; } r",
        );
        write(
            dir.path(),
            "api/spin.rhai",
            "let t = timestamp(); while t.elapsed < 30 { } 1",
        );
        let (a, b) = (site_ports[0].1, site_ports[1].1);
        let mut config = plant_config(central_port, a, b, closed, peers);
        adjust(&mut config);
        write(dir.path(), "switchyard.toml", &config.to_string());
        let config = dir.path().join("switchyard.toml");
        TestPlant {
            dir,
            config,
            central_port,
            site_ports,
            procs: Vec::new(),
            _slot: slot,
        }
    }

    pub fn config_str(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// `switchyard parked list --json` for a site: (exit code, stdout).
    pub fn parked_list_json(&self, site: &str) -> (i32, String) {
        let (code, out, _) = cli(&[
            "parked",
            "list",
            "--config",
            self.config_str(),
            "--site",
            site,
            "--json",
        ]);
        (code, out)
    }

    pub fn site_port(&self, site: &str) -> u16 {
        self.site_ports.iter().find(|(n, _)| n == site).unwrap().1
    }

    pub fn start_site(&mut self, site: &str) {
        let p = switchyard(
            self.dir.path(),
            site,
            &["site", "--config", self.config_str(), "--site", site],
        );
        self.procs.push(p);
    }

    pub fn start_central(&mut self) {
        let p = switchyard(
            self.dir.path(),
            "central",
            &["central", "--config", self.config_str()],
        );
        self.procs.push(p);
    }

    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.procs.iter().position(|p| p.name == name) {
            let mut p = self.procs.remove(i);
            p.kill();
        }
    }

    /// Starts central and both sites and waits until every site has its deployment.
    pub async fn start(&mut self) {
        self.start_site("plant-a");
        self.start_site("plant-b");
        self.start_central();
        self.wait_deployed("plant-a").await;
        self.wait_deployed("plant-b").await;
    }

    pub async fn site_health(&self, site: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/cluster/health", self.site_port(site));
        let r = http().get(url).bearer_auth(SITE_TOKEN).send().await.ok()?;
        r.json().await.ok()
    }

    /// A gauge from the site's `/metrics` for the site's own pool
    /// (`{name}{pool="site-{site}"}`); `None` while the site does not answer.
    pub async fn site_pool_gauge(&self, site: &str, name: &str) -> Option<f64> {
        self.site_metric(site, &format!("{name}{{pool=\"site-{site}\"}}"))
            .await
    }

    /// The value of one series (name and labels, as exposed) from the site's `/metrics`;
    /// `None` while the site does not answer or has not recorded the series.
    pub async fn site_metric(&self, site: &str, series: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.site_port(site));
        let text = http().get(url).send().await.ok()?.text().await.ok()?;
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    pub async fn wait_deployed(&self, site: &str) {
        wait_until_async(
            &format!("{site} has a deployment"),
            Duration::from_secs(60),
            || async {
                self.site_health(site)
                    .await
                    .is_some_and(|h| !h["revision"].is_null())
            },
        )
        .await;
    }

    pub async fn wait_central(&self) {
        let url = format!("http://127.0.0.1:{}/health", self.central_port);
        wait_until_async("central answers", Duration::from_secs(60), || async {
            http()
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    /// `POST /api/{method}` with a key: (status, body).
    pub async fn call_with(&self, method: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut request = http()
            .post(format!(
                "http://127.0.0.1:{}/api/{method}",
                self.central_port
            ))
            .json(&body);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn call(&self, method: &str, body: Value) -> (u16, Value) {
        self.call_with(method, body, Some(KEY)).await
    }

    /// Runs an instance script through the Inbound API (`Run` → `Route.To(…).Call(…)`).
    pub async fn run(&self, instance: &str, script: &str, args: Value) -> Value {
        let (status, body) = self
            .call(
                "Run",
                json!({ "instance": instance, "script": script, "args": args }),
            )
            .await;
        assert_eq!(status, 200, "Run {instance}/{script}: {body}");
        body
    }

    pub async fn counts(&self, site: &str) -> (u64, u64) {
        let h = self.site_health(site).await.expect("site answers");
        (
            h["pending"].as_u64().unwrap(),
            h["parked"].as_u64().unwrap(),
        )
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let r = http()
            .request(
                method,
                format!("http://127.0.0.1:{}/admin{path}", self.central_port),
            )
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A peer that accepts every connection on `port` (0 = any) and never sends a byte —
/// the stall a timeout exists for. Returns the port and the connections it holds.
pub fn stalled_listener(port: u16) -> (u16, Arc<Mutex<Vec<std::net::TcpStream>>>) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    (port, held)
}
