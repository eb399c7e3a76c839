//! The baseline server: a bare axum JSON echo.

use std::net::SocketAddr;

fn app() -> axum::Router {
    axum::Router::new().route(
        "/echo",
        axum::routing::post(|body: axum::Json<serde_json::Value>| async move { body }),
    )
}

/// Starts `POST /echo` (returns the JSON body) on loopback, in this process.
pub async fn start() -> SocketAddr {
    let app = app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the echo server");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// `switchyard echo-server`: serves the echo on loopback, prints its address on stdout
/// and runs until its standard input closes (the parent exits) or it is killed.
pub async fn serve_until_stdin_closes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the echo server");
    println!("{}", listener.local_addr().expect("echo address"));
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = closed.send(());
    });
    let stdin_closed = async move {
        let _ = stdin_closed.await;
    };
    let _ = axum::serve(listener, app())
        .with_graceful_shutdown(stdin_closed)
        .await;
}

/// The echo server running as a child process (killed when this is dropped).
pub struct EchoProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    _child: tokio::process::Child,
}

/// Starts `switchyard echo-server` as a child process.
pub async fn start_in_second_process() -> EchoProcess {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("echo-server")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the echo server");
    let stdout = child.stdout.take().expect("echo server stdout");
    let line = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("read the echo server address")
        .expect("the echo server printed its address");
    EchoProcess {
        addr: line.trim().parse().expect("an address"),
        _child: child,
    }
}
