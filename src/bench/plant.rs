//! A benchmark plant in a temporary directory: central and one site in this process,
//! listening on loopback.

use super::plant_toml::{PlantToml, list, param, table};
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
    let config = config(central_port, site_port, external, pg_url);
    write(dir.path(), "switchyard.toml", &config.to_string());
    let config =
        Config::load(&dir.path().join("switchyard.toml")).unwrap_or_else(|e| panic!("{e}"));
    let site = SiteNode::start(&config, "bench", None)
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

/// The benchmark plant's configuration: central, the site `bench` with the tank `T-1`,
/// two API methods, the external system `Local` and two databases.
fn config(central_port: u16, site_port: u16, external: SocketAddr, pg_url: &str) -> PlantToml {
    let bench = || list(["bench"]);
    let retry = || table([("max_retries", 3.into()), ("interval", "1s".into())]);
    let mut c = PlantToml::default();
    c.table("central")
        .set("listen", format!("127.0.0.1:{central_port}"))
        .set("script_threads", 4)
        .set("script_queue", 256);
    c.table("sites.bench")
        .set("listen", format!("127.0.0.1:{site_port}"))
        .set("token", "bench-site-token")
        .set("script_threads", 4)
        .set("min_free_disk", "1MiB");
    c.table("api_keys.bench")
        .set("hash", switchyard_layers::auth::hash_key(KEY));
    c.table("api_methods.Validate3")
        .set("script", "api/validate3.rhai")
        .set("approved_keys", bench())
        .set(
            "params",
            list([
                param("a", "String", true),
                param("b", "Integer", true),
                param("c", "Float", true),
            ]),
        )
        .set("returns", "Object{a: String, b: Integer, c: Float}");
    c.table("api_methods.GetAttributes")
        .set("script", "api/attrs.rhai")
        .set("approved_keys", bench())
        .set(
            "returns",
            "Object{Level: Float, Setpoint: Float, Name: String}",
        );
    c.table("templates.Tank")
        .set(
            "attributes",
            table([
                ("Level", "Float".into()),
                ("Setpoint", "Float".into()),
                ("Name", "String".into()),
            ]),
        )
        .set(
            "scripts",
            table([
                ("Echo", "scripts/echo.rhai".into()),
                ("Ext", "scripts/ext.rhai".into()),
                ("ExtLoop", "scripts/ext_loop.rhai".into()),
            ]),
        );
    c.table("instances.T-1")
        .set("template", "Tank")
        .set("site", "bench")
        .set(
            "values",
            table([
                ("Level", 42.0.into()),
                ("Setpoint", 50.0.into()),
                ("Name", "North tank".into()),
            ]),
        );
    c.table("external_systems.Local")
        .set("base_url", format!("http://{external}"))
        .set("timeout", "10s");
    c.table("external_systems.Local.methods.Post")
        .set("http_method", "POST")
        .set("path", "/echo")
        .set(
            "params",
            list([param("tank", "String", true), param("level", "Float", true)]),
        );
    // The same peer behind a paced drain (`bench drain`).
    c.table("external_systems.Paced")
        .set("base_url", format!("http://{external}"))
        .set("timeout", "10s")
        .set("max_rate", super::drain::RATE);
    c.table("external_systems.Paced.methods.Post")
        .set("http_method", "POST")
        .set("path", "/paced")
        .set(
            "params",
            list([param("tank", "String", true), param("level", "Float", true)]),
        );
    c.table("databases.Historian")
        .set("url", "sqlite://historian.db")
        .set("max_connections", 4)
        .set("retry", retry());
    c.table("databases.Pg")
        .set("url", pg_url)
        .set("max_connections", 16)
        .set("retry", retry());
    c
}
