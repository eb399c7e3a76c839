//! The HTTP transport: reqwest, one client per external system (connection pooling).

use bytes::Bytes;
use futures::future::BoxFuture;
use std::cell::{Cell, RefCell};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::BoxError;
use tower::Service;

/// Largest response body accepted from an external system.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// reqwest as a tower service over `http` types.
///
/// Requests made from a script thread (inside [`block_on_here`]) use a client of that
/// thread, whose connections live in the thread's own runtime: the whole exchange then
/// runs on the script thread, with no hand-over to a runtime worker and back. Requests
/// made on the shared runtime (the forwarder) use the shared client.
#[derive(Clone, Debug)]
pub struct Reqwest {
    client: reqwest::Client,
    connect_timeout: Duration,
    /// Names this transport's per-thread clients; they are dropped once every clone of
    /// the transport is (a redeployment builds new ones).
    owner: Arc<()>,
}

/// How long an idle connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(60);

thread_local! {
    static THREAD_CLIENTS: RefCell<Vec<(Weak<()>, reqwest::Client)>> = RefCell::default();
    static THREAD_RUNTIME: Option<tokio::runtime::Runtime> =
        tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
    /// Set while [`block_on_here`] runs a future on this thread.
    static ON_THREAD_RUNTIME: Cell<bool> = const { Cell::new(false) };
}

/// Runs `future` to completion on this thread, in the thread's own runtime (script
/// threads). Gives the future back when there is none to be had here: on a thread of
/// an async runtime, or when the runtime could not be built; the caller then uses the
/// shared runtime.
pub fn block_on_here<F: std::future::Future>(future: F) -> Result<F::Output, F> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(future);
    }
    THREAD_RUNTIME.with(|rt| match rt {
        Some(rt) => {
            /// Clears the flag however the run ends (a panicking script included).
            struct Running;
            impl Drop for Running {
                fn drop(&mut self) {
                    ON_THREAD_RUNTIME.set(false);
                }
            }
            ON_THREAD_RUNTIME.set(true);
            let _running = Running;
            Ok(rt.block_on(async {
                settle().await;
                future.await
            }))
        }
        None => Err(future),
    })
}

/// Lets the thread's connections see what happened while the thread was away.
///
/// Between two calls nothing polls the thread's runtime, so a connection the server
/// closed in the meantime still looks idle and reusable. The first yield makes the
/// runtime poll for I/O events (waking those connections' tasks), the second lets the
/// woken tasks run, so a closed connection leaves the pool before the call picks one.
async fn settle() {
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
}

/// How often an idle script thread tidies its connections ([`tidy_thread`]).
pub const TIDY_EVERY: Duration = Duration::from_secs(15);

/// Housekeeping of a script thread's own HTTP clients while it has no job: drops the
/// clients of systems no longer deployed, and lets the thread's runtime run once so its
/// connections notice closes by the server and expire after [`POOL_IDLE`]. Without it
/// those would only happen at the thread's next call.
pub fn tidy_thread() {
    let _ = THREAD_CLIENTS.try_with(|clients| {
        clients
            .borrow_mut()
            .retain(|(owner, _)| owner.strong_count() > 0);
    });
    let _ = block_on_here(async {});
}

fn client(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(POOL_IDLE)
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot build the HTTP client with its settings; using defaults");
            reqwest::Client::new()
        })
}

impl Reqwest {
    /// A client whose connection attempts give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Reqwest {
        switchyard_core::tls::install_crypto_provider();
        Reqwest {
            client: client(connect_timeout),
            connect_timeout,
            owner: Arc::new(()),
        }
    }

    /// The client for where the request runs: this thread's inside [`block_on_here`],
    /// the shared one elsewhere.
    fn client_here(&self) -> reqwest::Client {
        if !ON_THREAD_RUNTIME.get() {
            return self.client.clone();
        }
        THREAD_CLIENTS
            .try_with(|clients| {
                let mut clients = clients.borrow_mut();
                let owner = Arc::downgrade(&self.owner);
                if let Some((_, found)) = clients.iter().find(|(o, _)| o.ptr_eq(&owner)) {
                    return found.clone();
                }
                clients.retain(|(o, _)| o.strong_count() > 0);
                let made = client(self.connect_timeout);
                clients.push((owner, made.clone()));
                made
            })
            .unwrap_or_else(|_| self.client.clone())
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
        let transport = self.clone();
        Box::pin(async move {
            // Chosen where the request runs, not where it was made.
            let client = transport.client_here();
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that keeps each connection open for `idle` after its last answer and
    /// then closes it, as a server with a keep-alive timeout does.
    fn short_keep_alive_server(
        idle: Duration,
    ) -> (
        tokio::runtime::Runtime,
        std::net::SocketAddr,
        Arc<AtomicUsize>,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let count = accepted.clone();
        rt.spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
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
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (rt, addr, accepted)
    }

    fn get(addr: std::net::SocketAddr) -> http::Request<Bytes> {
        http::Request::get(format!("http://{addr}/"))
            .body(Bytes::new())
            .unwrap()
    }

    #[test]
    fn a_script_thread_does_not_reuse_a_connection_the_server_closed_while_it_was_idle() {
        let (_server, addr, accepted) = short_keep_alive_server(Duration::from_millis(50));
        let mut transport = Reqwest::new(Duration::from_secs(2));
        std::thread::spawn(move || {
            for _ in 0..3 {
                let response = block_on_here(transport.call(get(addr)))
                    .unwrap_or_else(|_| panic!("a plain thread has its own runtime"))
                    .expect("the call succeeds on a fresh connection");
                assert_eq!(response.status(), 200);
                // The server closes the connection while this thread does something else.
                std::thread::sleep(Duration::from_millis(300));
            }
        })
        .join()
        .unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_script_thread_reuses_its_connection_while_the_server_keeps_it() {
        let (_server, addr, accepted) = short_keep_alive_server(Duration::from_secs(30));
        let mut transport = Reqwest::new(Duration::from_secs(2));
        std::thread::spawn(move || {
            for _ in 0..3 {
                let response = block_on_here(transport.call(get(addr)))
                    .unwrap_or_else(|_| panic!("a plain thread has its own runtime"))
                    .expect("the call succeeds");
                assert_eq!(response.status(), 200);
                tidy_thread();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .join()
        .unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn tidying_drops_the_clients_of_systems_no_longer_deployed() {
        std::thread::spawn(|| {
            let mut transport = Reqwest::new(Duration::from_secs(2));
            let (_server, addr, _) = short_keep_alive_server(Duration::from_secs(30));
            block_on_here(transport.call(get(addr)))
                .unwrap_or_else(|_| panic!("a plain thread has its own runtime"))
                .expect("the call succeeds");
            let held = || THREAD_CLIENTS.with(|c| c.borrow().len());
            assert_eq!(held(), 1);
            tidy_thread();
            assert_eq!(held(), 1, "a deployed system keeps its client");
            drop(transport);
            tidy_thread();
            assert_eq!(held(), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_thread_runtime_is_refused_inside_an_async_runtime() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _entered = rt.enter();
        assert!(block_on_here(async { 1 }).is_err());
    }
}
