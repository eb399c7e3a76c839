//! Serving HTTP: binding with a clear error, graceful shutdown on Ctrl-C / SIGTERM, and
//! reloads on SIGHUP.

use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::Central;
use tokio::net::TcpListener;

/// Binds `addr`, naming what failed to bind.
pub async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{what}: cannot listen on {addr}: {e}"))
}

/// A client must send its request headers within this long (slow clients are cut off).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS handshake must complete within this long.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` (HTTP/1.1, over TLS when `tls` is given) until Ctrl-C or SIGTERM;
/// connections that trickle their headers are closed after [`HEADER_READ_TIMEOUT`]
/// (bodies have their own timeout in the API). In-flight requests finish before the
/// process exits.
pub fn spawn(
    router: Router,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> tokio::task::JoinHandle<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(connection) => connection,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            match &acceptor {
                None => {
                    let connection = graceful.watch(
                        builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                    );
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let stream = match tokio::time::timeout(
                            TLS_HANDSHAKE_TIMEOUT,
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                        let connection = watcher.watch(
                            builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                        );
                        let _ = connection.await;
                    });
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Reloads central's configuration on every SIGHUP.
pub fn reload_on_sighup(central: Arc<Central>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            match central.reload().await {
                Ok(methods) => tracing::info!(methods, "reloaded on SIGHUP"),
                Err(e) => {
                    tracing::error!(error = %e, "reload on SIGHUP failed; the previous configuration stays active")
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = central;
}

/// A site reloads nothing on SIGHUP (its definitions come from central); say so instead
/// of letting the signal end the process.
pub fn log_sighup(site: String) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!(site = %site, "SIGHUP: a site's definitions come from central; reload central instead");
        }
    });
    #[cfg(not(unix))]
    let _ = site;
}
