//! The HTTP transport: reqwest, one client per external system (connection pooling).

use bytes::Bytes;
use futures::future::BoxFuture;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::BoxError;
use switchyard_core::script::PerThreadClient;
use tower::Service;

/// Largest response body accepted from an external system.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// reqwest as a tower service over `http` types. Requests made from a script thread
/// (inside [`block_on_here`](switchyard_core::script::block_on_here)) use that thread's own client and connections, the
/// forwarder's the shared ones (`core::script::thread_io`).
#[derive(Clone, Debug)]
pub struct Reqwest {
    client: PerThreadClient,
}

/// How long an idle connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(60);

impl Reqwest {
    /// A client whose connection attempts give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Reqwest {
        switchyard_core::tls::install_crypto_provider();
        let client = PerThreadClient::new(move || {
            reqwest::Client::builder()
                // Never follow a redirect: credentials must not travel to another origin.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(POOL_IDLE)
                .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot build the HTTP client with its settings; using defaults");
                    reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .unwrap_or_default()
                })
        });
        Reqwest { client }
    }
}

impl Service<http::Request<Bytes>> for Reqwest {
    type Response = http::Response<Bytes>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Bytes>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            // Chosen where the request runs, not where it was made.
            let client = client.get();
            let request = reqwest::Request::try_from(request)?;
            let mut response = client.execute(request).await?;
            let mut builder = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(switchyard_core::Failure::permanent(
                        switchyard_core::error::codes::BAD_RESPONSE,
                        format!(
                            "the response is larger than {} MiB",
                            MAX_RESPONSE_BYTES >> 20
                        ),
                    )
                    .into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(builder.body(Bytes::from(body))?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use switchyard_core::script::{block_on_here, tidy_thread};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What the test server has done so far.
    #[derive(Default)]
    struct Counts {
        /// Connections accepted.
        accepted: AtomicUsize,
        /// Connections the server has closed.
        closed: AtomicUsize,
    }

    /// A server that keeps each connection open for `idle` after its last answer and
    /// then closes it, as a server with a keep-alive timeout does.
    fn short_keep_alive_server(
        idle: Duration,
    ) -> (tokio::runtime::Runtime, std::net::SocketAddr, Arc<Counts>) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let counts = Arc::new(Counts::default());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server_counts = counts.clone();
        rt.spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                server_counts.accepted.fetch_add(1, Ordering::SeqCst);
                let counts = server_counts.clone();
                tokio::spawn(async move {
                    answer_until_idle(&mut socket, idle).await;
                    drop(socket);
                    counts.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (rt, addr, counts)
    }

    /// Answers requests on `socket` until it stays quiet for `idle` or the peer leaves.
    async fn answer_until_idle(socket: &mut tokio::net::TcpStream, idle: Duration) {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            // One request (GETs without a body), then the answer.
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout(idle, socket.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            seen.clear();
            let answer =
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
            if socket.write_all(answer).await.is_err() {
                return;
            }
        }
    }

    fn get(addr: std::net::SocketAddr) -> http::Request<Bytes> {
        http::Request::get(format!("http://{addr}/"))
            .body(Bytes::new())
            .unwrap()
    }

    /// How long the thread stays away between calls while the server keeps connections
    /// for 30 s: long enough that the pooled connection really sits idle (this thread's
    /// runtime is not running), far inside the server's keep-alive. A pause, not a wait.
    const BETWEEN_CALLS: Duration = Duration::from_millis(50);

    #[test]
    fn a_script_thread_does_not_reuse_a_connection_the_server_closed_while_it_was_idle() {
        let (_server, addr, counts) = short_keep_alive_server(Duration::from_millis(50));
        let mut transport = Reqwest::new(Duration::from_secs(2));
        let server = counts.clone();
        std::thread::spawn(move || {
            for call in 1..=3 {
                let response = block_on_here(transport.call(get(addr)))
                    .unwrap_or_else(|_| panic!("a plain thread has its own runtime"))
                    .expect("the call succeeds on a fresh connection");
                assert_eq!(response.status(), 200);
                // The server closes the connection while this thread does something else.
                let start = std::time::Instant::now();
                while server.closed.load(Ordering::SeqCst) < call {
                    assert!(
                        start.elapsed() < Duration::from_secs(5),
                        "the server did not close connection {call}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
        .join()
        .unwrap();
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_script_thread_reuses_its_connection_while_the_server_keeps_it() {
        let (_server, addr, counts) = short_keep_alive_server(Duration::from_secs(30));
        let mut transport = Reqwest::new(Duration::from_secs(2));
        std::thread::spawn(move || {
            for _ in 0..3 {
                let response = block_on_here(transport.call(get(addr)))
                    .unwrap_or_else(|_| panic!("a plain thread has its own runtime"))
                    .expect("the call succeeds");
                assert_eq!(response.status(), 200);
                tidy_thread();
                std::thread::sleep(BETWEEN_CALLS);
            }
        })
        .join()
        .unwrap();
        assert_eq!(counts.accepted.load(Ordering::SeqCst), 1);
    }
}
