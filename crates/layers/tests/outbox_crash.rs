//! Crash safety of the outbox: a child process enqueues messages and reports each id as
//! soon as `enqueue` acknowledges it; it is SIGKILLed mid-stream. After reopening, every
//! acknowledged id must be present exactly once.
//!
//! This file is its own harness (`harness = false`): the same binary is the test and,
//! started by it with [`CHILD_ENV`] set, the child — so the child is not a `#[test]`
//! that a normal run would count as passing without doing anything.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_core::{MessageId, RetryPolicy};
use switchyard_layers::store_forward::{Category, FjallOutbox, NewMessage, OutboxOptions};

const CHILD_ENV: &str = "SWITCHYARD_OUTBOX_CRASH_CHILD_DIR";

/// The one test of this file, as libtest would name it.
const TEST_NAME: &str = "acknowledged_messages_survive_sigkill";

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child_enqueues_until_killed(&dir);
        return;
    }
    // `cargo test` passes libtest's arguments to every test binary; honour those that
    // change what runs. The test is not ignored, so `--ignored` runs nothing here.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return;
    }
    if args.iter().any(|a| a == "--ignored") || !selected(&args) {
        println!("running 0 tests");
        return;
    }
    println!("test {TEST_NAME} ...");
    acknowledged_messages_survive_sigkill();
    println!("test {TEST_NAME} ... ok");
}

/// Whether libtest's name filters and `--skip` select [`TEST_NAME`].
fn selected(args: &[String]) -> bool {
    const TAKE_A_VALUE: &[&str] = &["--test-threads", "--format", "--color", "--logfile", "-Z"];
    let (mut filters, mut skip) = (Vec::new(), Vec::new());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--skip" {
            skip.extend(args.next());
        } else if TAKE_A_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    (filters.is_empty() || filters.iter().any(|f| TEST_NAME.contains(f.as_str())))
        && !skip.iter().any(|s| TEST_NAME.contains(s.as_str()))
}

/// The child process: enqueues from 16 producers and prints `ACK <id>` for each
/// acknowledged message until it is killed.
fn child_enqueues_until_killed(dir: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let outbox = FjallOutbox::open(dir.as_ref(), OutboxOptions { min_free_disk: 0, ..Default::default() }).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<MessageId>();
        for producer in 0..16 {
            let outbox = outbox.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    let message = NewMessage {
                        id: MessageId::new(),
                        category: Category::External,
                        target: format!("target-{}", producer % 4),
                        payload: serde_json::json!({ "producer": producer, "padding": "x".repeat(200) }),
                        retry: RetryPolicy::default(),
                        first_delay: Duration::from_secs(3600),
                        last_error: None,
                    };
                    let id = outbox.enqueue(message).await.unwrap();
                    if tx.send(id).is_err() {
                        return;
                    }
                }
            });
        }
        use std::io::Write;
        let stdout = std::io::stdout();
        while let Some(id) = rx.recv().await {
            let mut out = stdout.lock();
            writeln!(out, "ACK {id}").unwrap();
            out.flush().unwrap();
        }
    });
}

fn acknowledged_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashSet<MessageId> = HashSet::new();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let started = Instant::now();
        let target = acked.len() + 1500 + round * 500;
        while acked.len() < target && started.elapsed() < Duration::from_secs(60) {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(id) = line.strip_prefix("ACK ") {
                        acked.insert(id.parse().unwrap());
                    }
                }
                _ => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Anything still in the pipe was acknowledged before the kill too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.insert(id.parse().unwrap());
            }
        }
        assert!(
            acked.len() >= 1000 * (round + 1),
            "the child acknowledged too little: {}",
            acked.len()
        );
    }

    let outbox = FjallOutbox::open(
        dir.path(),
        OutboxOptions {
            min_free_disk: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let stored = outbox
        .due(u64::MAX - 1, usize::MAX, &HashSet::new(), None)
        .unwrap()
        .messages;
    let mut seen: HashMap<MessageId, usize> = HashMap::new();
    for m in &stored {
        *seen.entry(m.id).or_default() += 1;
    }
    let missing: Vec<_> = acked.iter().filter(|id| !seen.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged message(s) lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated: {duplicated:?}");
    for id in &acked {
        assert!(outbox.is_pending(*id).unwrap());
    }
    eprintln!(
        "{} acknowledged, {} stored (the rest were written but not yet acknowledged when killed)",
        acked.len(),
        stored.len()
    );
}
