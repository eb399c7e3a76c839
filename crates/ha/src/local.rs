//! Three voters in one process on loopback — a pair's two full nodes and its witness,
//! each with its own outbox on disk and its own HTTP server behind the pair token — for
//! tests and benchmarks (`switchyard bench ha`). The network, storage and token check
//! are the production ones; only the processes are not separate.

use crate::network::{self, HttpNetwork};
use crate::{PairMember, PairNode, Tuning, Voter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::config::Secret;
use switchyard_layers::auth::{Rejection, RequireBearer};
use switchyard_layers::store_forward::{FjallOutbox, OutboxError, OutboxOptions};

const TOKEN: &str = "local-pair-token-0123456789";

/// One running voter: its consensus, its outbox, its server.
pub struct Running {
    /// The voter.
    pub node: PairNode,
    /// Its outbox (the state machine).
    pub outbox: FjallOutbox,
    server: tokio::task::JoinHandle<()>,
}

/// A pair (voters `a`, `b`) and its witness (`w`) in this process.
pub struct LocalPair {
    /// The voters, in id order.
    pub voters: Vec<Voter>,
    /// Each voter's data directory.
    pub dirs: Vec<PathBuf>,
    listeners: Vec<Option<std::net::TcpListener>>,
    running: Vec<Option<Running>>,
    tuning: Tuning,
}

fn refuse(_: Rejection) -> axum::response::Response {
    axum::response::IntoResponse::into_response(axum::http::StatusCode::UNAUTHORIZED)
}

impl LocalPair {
    /// Three voters with their data under `root`; none started yet.
    pub fn new(root: &Path, tuning: Tuning) -> std::io::Result<LocalPair> {
        let mut voters = Vec::new();
        let mut listeners = Vec::new();
        let mut dirs = Vec::new();
        for (i, name) in ["a", "b", "w"].into_iter().enumerate() {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            voters.push(Voter {
                id: i as u64 + 1,
                name: name.into(),
                addr: listener.local_addr()?.to_string(),
                witness: name == "w",
            });
            listeners.push(Some(listener));
            dirs.push(root.join(name));
        }
        Ok(LocalPair {
            voters,
            dirs,
            listeners,
            running: vec![None, None, None],
            tuning,
        })
    }

    /// Starts voter `i` (again, after [`stop`](Self::stop): same address, same data).
    pub async fn start(&mut self, i: usize) -> Result<(), String> {
        let listener = match self.listeners[i].take() {
            Some(listener) => listener,
            None => std::net::TcpListener::bind(&self.voters[i].addr).map_err(|e| e.to_string())?,
        };
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let outbox = self.open_outbox(i).map_err(|e| e.to_string())?;
        let member = PairMember {
            voters: self.voters.clone(),
            me: self.voters[i].id,
            tuning: self.tuning,
        };
        let network = HttpNetwork::new(Secret::new(TOKEN), None)?;
        let node = PairNode::start(&member, &self.dirs[i], outbox.clone(), network)
            .await
            .map_err(|e| e.to_string())?;
        let token: Arc<Option<Secret>> = Arc::new(Some(Secret::new(TOKEN)));
        let app = network::routes(node.raft().clone()).layer(RequireBearer::layer(token, refuse));
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        self.running[i] = Some(Running {
            node,
            outbox,
            server,
        });
        Ok(())
    }

    /// Opens voter `i`'s outbox (no disk floor), as [`start`](Self::start) does; a test
    /// can fill it before the voter starts (a single node migrated into a pair).
    pub fn open_outbox(&self, i: usize) -> Result<FjallOutbox, OutboxError> {
        FjallOutbox::open(
            &self.dirs[i].join("outbox"),
            OutboxOptions {
                min_free_disk: 0,
                ..Default::default()
            },
        )
    }

    /// Stops voter `i` as abruptly as one process allows: its server and consensus end
    /// without a word to the others; its outbox is closed.
    pub async fn stop(&mut self, i: usize) {
        let Some(running) = self.running[i].take() else {
            return;
        };
        running.server.abort();
        let _ = running.server.await;
        running.node.shutdown().await;
        running.outbox.close();
    }

    /// Voter `i`, which must be running.
    pub fn voter(&self, i: usize) -> &Running {
        self.running[i].as_ref().expect("the voter is running")
    }

    /// Whether voter `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.running[i].is_some()
    }

    /// The active voter, once exactly one is (panics if two are: that must never be).
    pub async fn active(&self, limit: Duration) -> Option<usize> {
        let until = Instant::now() + limit;
        loop {
            let active: Vec<usize> = (0..3)
                .filter(|i| {
                    self.running[*i]
                        .as_ref()
                        .is_some_and(|r| r.node.is_active())
                })
                .collect();
            assert!(active.len() <= 1, "two active nodes: {active:?}");
            if let [one] = active[..] {
                return Some(one);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
