//! The baseline server: a bare axum JSON echo.

use std::net::SocketAddr;

/// Starts `POST /echo` (returns the JSON body) on loopback.
pub async fn start() -> SocketAddr {
    let app = axum::Router::new().route(
        "/echo",
        axum::routing::post(|body: axum::Json<serde_json::Value>| async move { body }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the echo server");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
