//! The inbound request path through the real router: any method name, header value and
//! body gets an answer with a status from SPEC §3 and an `{error, code}` body — never a
//! panic, never a 500 that is not the script's own.
#![no_main]

use axum::body::Body;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tower::ServiceExt;

const KEY: &str = "fuzz-key";

struct World {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    _dir: std::path::PathBuf,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("switchyard-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("api")).unwrap();
        std::fs::write(dir.join("api/echo.rhai"), "#{ n: params.n, items: params.items }").unwrap();
        let config = format!(
            "[central]\nlisten = \"127.0.0.1:0\"\nmax_body = \"4KiB\"\n\n[api_keys.f]\nhash = \"{}\"\n\n[api_methods.Echo]\nscript = \"api/echo.rhai\"\napproved_keys = [\"f\"]\nparams = [ {{ name = \"n\", type = \"Integer\" }}, {{ name = \"items\", type = \"List<Object{{qty: Integer}}>\", required = false }} ]\n",
            switchyard_layers::auth::hash_key(KEY)
        );
        std::fs::write(dir.join("switchyard.toml"), config).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let app = runtime.block_on(async {
            let config = switchyard_core::config::Config::load(&dir.join("switchyard.toml")).unwrap();
            switchyard_api::app(switchyard_api::Central::start(config).await.unwrap())
        });
        World { runtime, app, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: method name \n http-method \n api key \n content-type \n body
    let mut parts = data.splitn(5, |b| *b == b'\n');
    let name = parts.next().unwrap_or_default();
    let verb = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    let content_type = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default().to_vec();
    let path: String = name.iter().map(|b| format!("%{b:02X}")).collect();
    let method = match verb.first() {
        Some(b'G') => http::Method::GET,
        Some(b'P') => http::Method::PUT,
        _ => http::Method::POST,
    };
    let mut request = http::Request::builder().method(method).uri(format!("/api/{path}"));
    if let Ok(v) = http::HeaderValue::from_bytes(key) {
        request = request.header("x-api-key", v);
    } else if key == b"k" {
        request = request.header("x-api-key", KEY);
    }
    if let Ok(v) = http::HeaderValue::from_bytes(content_type) {
        request = request.header("content-type", v);
    }
    let Ok(request) = request.body(Body::from(body)) else { return };
    let w = world();
    let response = w.runtime.block_on(w.app.clone().oneshot(request)).unwrap();
    let status = response.status().as_u16();
    assert!(matches!(status, 200 | 400 | 401 | 403 | 404 | 405 | 408 | 413 | 415), "unexpected status {status}");
    let bytes = w.runtime.block_on(axum::body::to_bytes(response.into_body(), 1 << 20)).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    if status != 200 {
        assert!(value["error"].is_string() && value["code"].is_string(), "{value}");
    }
});
