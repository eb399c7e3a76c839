//! A benchmark plant in a temporary directory: central and one site in this process,
//! listening on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::Central;
use switchyard_core::config::Config;
use switchyard_site::SiteNode;

/// The API key of the benchmark plant.
pub const KEY: &str = "bench-key-0000";

/// A running benchmark plant.
pub struct BenchPlant {
    /// Its directory, removed when the plant is dropped.
    _dir: tempfile::TempDir,
    /// Central.
    pub central: Arc<Central>,
    /// Central's address.
    pub central_addr: SocketAddr,
    /// The site.
    pub site: Arc<SiteNode>,
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Starts a plant whose external system `Local` points at `external` and whose
/// PostgreSQL connection is `pg_url`.
pub async fn start(external: SocketAddr, pg_url: &str) -> BenchPlant {
    let dir = tempfile::tempdir().expect("temp dir");
    let (central_port, site_port) = (port(), port());
    write(
        dir.path(),
        "api/validate3.rhai",
        "#{ a: params.a, b: params.b, c: params.c }",
    );
    write(
        dir.path(),
        "api/attrs.rhai",
        "Route.To(\"T-1\").GetAttributes([\"Level\", \"Setpoint\", \"Name\"])",
    );
    write(dir.path(), "scripts/echo.rhai", "params");
    write(
        dir.path(),
        "scripts/ext.rhai",
        "ExternalSystem.Call(\"Local\", \"Post\", params)",
    );
    write(
        dir.path(),
        "scripts/ext_loop.rhai",
        "let i = 0; while i < params.n { ExternalSystem.Call(\"Local\", \"Post\", #{ tank: \"T-1\", level: 42.5 }); i += 1; } i",
    );
    let config = format!(
        r#"
[central]
listen = "127.0.0.1:{central_port}"
script_threads = 4
script_queue = 256

[sites.bench]
listen = "127.0.0.1:{site_port}"
token = "bench-site-token"
script_threads = 4
min_free_disk = "1MiB"

[api_keys.bench]
hash = "{hash}"

[api_methods.Validate3]
script = "api/validate3.rhai"
approved_keys = ["bench"]
params = [ {{ name = "a", type = "String" }}, {{ name = "b", type = "Integer" }}, {{ name = "c", type = "Float" }} ]
returns = "Object{{a: String, b: Integer, c: Float}}"

[api_methods.GetAttributes]
script = "api/attrs.rhai"
approved_keys = ["bench"]
returns = "Object{{Level: Float, Setpoint: Float, Name: String}}"

[templates.Tank]
attributes = {{ Level = "Float", Setpoint = "Float", Name = "String" }}
scripts = {{ Echo = "scripts/echo.rhai", Ext = "scripts/ext.rhai", ExtLoop = "scripts/ext_loop.rhai" }}

[instances.T-1]
template = "Tank"
site = "bench"
values = {{ Level = 42.0, Setpoint = 50.0, Name = "North tank" }}

[external_systems.Local]
base_url = "http://{external}"
timeout = "10s"
[external_systems.Local.methods.Post]
http_method = "POST"
path = "/echo"
params = [ {{ name = "tank", type = "String" }}, {{ name = "level", type = "Float" }} ]

[databases.Historian]
url = "sqlite://historian.db"
max_connections = 4
retry = {{ max_retries = 3, interval = "1s" }}

[databases.Pg]
url = "{pg_url}"
max_connections = 16
retry = {{ max_retries = 3, interval = "1s" }}
"#,
        hash = switchyard_layers::auth::hash_key(KEY),
    );
    write(dir.path(), "switchyard.toml", &config);
    let config =
        Config::load(&dir.path().join("switchyard.toml")).unwrap_or_else(|e| panic!("{e}"));
    let site = SiteNode::start(&config, "bench")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", site_port))
        .await
        .expect("bind site");
    let router = switchyard_site::cluster::router(site.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let central = Central::start(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", central_port))
        .await
        .expect("bind central");
    let central_addr = listener.local_addr().expect("central address");
    let app = switchyard_api::app(central.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    for _ in 0..200 {
        if site.runtime().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(site.runtime().is_some(), "the site got no deployment");
    BenchPlant {
        _dir: dir,
        central,
        central_addr,
        site,
    }
}
