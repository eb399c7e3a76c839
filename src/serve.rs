//! Serving HTTP: binding with a clear error, graceful shutdown on Ctrl-C / SIGTERM, and
//! reloads on SIGHUP.

use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_api::Central;
use tokio::net::TcpListener;

/// Binds `addr`, naming what failed to bind.
pub async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{what}: cannot listen on {addr}: {e}"))
}

/// Serves `router` until shutdown.
pub fn spawn(router: Router, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown_signal())
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
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
