//! The three Raft RPCs over the cluster HTTP link: `POST /cluster/raft/{append,vote,
//! snapshot}`, JSON bodies, the pair's token as a bearer token (the host mounts
//! [`routes`] behind the same token layer as its other cluster routes), TLS when the
//! link has it. A refused connection is `Unreachable` (openraft backs off), anything
//! else on the way a network error, and the peer's own refusal a remote error.

use crate::{NodeId, Raft, TypeConfig};
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use switchyard_core::config::Secret;

/// Where the RPCs are served.
pub mod paths {
    /// Log entries and heartbeats.
    pub const APPEND: &str = "/cluster/raft/append";
    /// Votes.
    pub const VOTE: &str = "/cluster/raft/vote";
    /// Snapshot chunks.
    pub const SNAPSHOT: &str = "/cluster/raft/snapshot";
}

/// The largest RPC body a voter accepts (entries are capped well below this).
pub const MAX_RPC_BYTES: usize = 64 << 20;

/// The routes that serve a voter's RPCs. Put them behind the pair's bearer token.
pub fn routes<S: Clone + Send + Sync + 'static>(raft: Raft) -> Router<S> {
    Router::new()
        .route(paths::APPEND, post(append))
        .route(paths::VOTE, post(vote))
        .route(paths::SNAPSHOT, post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_RPC_BYTES))
        .with_state(raft)
}

async fn append(
    State(raft): State<Raft>,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(raft.append_entries(rpc).await)
}

async fn vote(
    State(raft): State<Raft>,
    Json(rpc): Json<VoteRequest<NodeId>>,
) -> Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
    Json(raft.vote(rpc).await)
}

async fn snapshot(
    State(raft): State<Raft>,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>> {
    Json(raft.install_snapshot(rpc).await)
}

/// Makes the clients a voter uses to reach the others.
#[derive(Clone)]
pub struct HttpNetwork {
    http: reqwest::Client,
    token: Arc<Secret>,
    scheme: &'static str,
}

impl HttpNetwork {
    /// Clients sending `token`; with `ca`, over TLS to nodes whose certificate chains to
    /// that CA only (as central's site client does). Never follows a redirect.
    pub fn new(token: Secret, ca: Option<reqwest::Certificate>) -> Result<HttpNetwork, String> {
        switchyard_core::tls::install_crypto_provider();
        let tls = ca.is_some();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(1))
            .pool_idle_timeout(std::time::Duration::from_secs(30));
        if let Some(ca) = ca {
            builder = builder.tls_certs_only(vec![ca]);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the pair's HTTP client: {e}"))?;
        Ok(HttpNetwork {
            http,
            token: Arc::new(token),
            scheme: if tls { "https" } else { "http" },
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            network: self.clone(),
            base: format!("{}://{}", self.scheme, node.addr),
            target,
        }
    }
}

/// The client of one peer.
pub struct PeerClient {
    network: HttpNetwork,
    base: String,
    target: NodeId,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn post<Req, Resp, E>(
        &self,
        path: &str,
        rpc: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let response = self
            .network
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.network.token.expose())
            .timeout(option.hard_ttl())
            .json(rpc)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            let refused = std::io::Error::other(format!("{path}: HTTP {status}"));
            return Err(RPCError::Network(NetworkError::new(&refused)));
        }
        let answer: Result<Resp, RaftError<NodeId, E>> = response
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.post(paths::APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.post(paths::SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.post(paths::VOTE, &rpc, &option).await
    }
}
