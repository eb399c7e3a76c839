//! `switchyard load`: an HTTP load generator (the second process of the benchmarks):
//! `concurrency` connections sending the same request for `duration`, printing JSON
//! figures on stdout.

use super::Figures;
use std::time::{Duration, Instant};

/// Arguments of one load run.
#[derive(Debug, Clone)]
pub struct LoadArgs {
    /// Target URL.
    pub url: String,
    /// Request body (JSON).
    pub body: String,
    /// `name: value` headers.
    pub headers: Vec<(String, String)>,
    /// Requests in flight.
    pub concurrency: usize,
    /// How long to measure (after a short warm-up).
    pub duration: Duration,
}

/// Runs the load and returns its figures.
pub async fn run(args: LoadArgs) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("HTTP client");
    let send = |client: reqwest::Client, args: LoadArgs| async move {
        let mut request = client
            .post(&args.url)
            .header("content-type", "application/json")
            .body(args.body.clone());
        for (k, v) in &args.headers {
            request = request.header(k, v);
        }
        match request.send().await {
            Ok(r) => {
                let ok = r.status().is_success();
                let _ = r.bytes().await;
                ok
            }
            Err(_) => false,
        }
    };
    // Warm-up: open the connections.
    let warm = Instant::now() + Duration::from_millis(500);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, args) = (client.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < warm {
                send(client.clone(), args.clone()).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let start = Instant::now();
    let end = start + args.duration;
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, args) = (client.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                if send(client.clone(), args.clone()).await {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    Figures::from_latencies(all, errors, start.elapsed())
}

/// Runs `switchyard load` as a child process against `url` and reads its figures.
pub async fn from_second_process(
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
    concurrency: usize,
    duration: Duration,
) -> Figures {
    let mut command = tokio::process::Command::new(std::env::current_exe().expect("own path"));
    command.args([
        "load",
        "--url",
        url,
        "--body",
        body,
        "--concurrency",
        &concurrency.to_string(),
        "--duration",
        &format!("{}ms", duration.as_millis()),
    ]);
    for (k, v) in headers {
        command.args(["--header", &format!("{k}: {v}")]);
    }
    let out = command.output().await.expect("run the load generator");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "load generator output: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
