//! A site node: local state, store-and-forward and its forwarder, the script pool, and
//! the runtime of the current deployment — which survives restarts, so a site keeps
//! working while central is down (sites are autonomous).

use crate::host::site_engine;
use crate::runtime::{NodeServices, Runtime};
use crate::state::SiteState;
use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::config::{Config, Secret, SiteConfig};
use switchyard_core::error::codes;
use switchyard_core::protocol::Deployment;
use switchyard_core::script::{CompileError, ScriptLimits, ScriptPool};
use switchyard_core::{BoxError, Failure};
use switchyard_ha::network::HttpNetwork;
use switchyard_ha::{PairMember, PairNode, Tuning, Voter};
use switchyard_layers::store_forward::{
    Category, FjallOutbox, Forwarder, ForwarderHandle, ForwarderOptions, Lane, OutboxOptions,
    Pacing, StoredMessage, now_ms,
};

/// Why a site node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The site is not in the configuration.
    #[error("no site named `{0}` in the configuration")]
    UnknownSite(String),
    /// The site token could not be read.
    #[error("sites.{site}.token: {reason}")]
    Token {
        /// Site name.
        site: String,
        /// Why.
        reason: String,
    },
    /// `--node` does not fit the site's configuration.
    #[error("sites.{site}: {reason}")]
    Node {
        /// Site name.
        site: String,
        /// Why.
        reason: String,
    },
    /// The pair's consensus could not start.
    #[error("sites.{site}: {reason}")]
    Pair {
        /// Site name.
        site: String,
        /// Why.
        reason: String,
    },
    /// Local state could not be opened.
    #[error("cannot open the site's data in {dir}: {reason}")]
    Storage {
        /// The directory.
        dir: String,
        /// Why.
        reason: String,
    },
}

/// One site node.
pub struct SiteNode {
    /// Site name.
    pub name: String,
    /// The site's settings.
    pub settings: SiteConfig,
    services: NodeServices,
    runtime: Arc<ArcSwapOption<Runtime>>,
    /// The site token central must present (never empty: the config refuses that).
    token: Arc<Option<Secret>>,
    deploy_lock: tokio::sync::Mutex<()>,
    forwarder: Mutex<Option<ForwarderHandle>>,
    /// This node's voter when the site runs as a pair (SPEC §8); `None`: a single node,
    /// always active.
    pair: Option<Arc<PairNode>>,
    /// The node's name (`--node`), or the site's name for a single node.
    pub node_name: String,
    /// A pair node serves once it has taken over (deployment in force, forwarder
    /// running), not merely once it leads.
    serving: std::sync::atomic::AtomicBool,
    _gauges: AbortOnDrop,
    supervisor: Mutex<Option<AbortOnDrop>>,
}

impl std::fmt::Debug for SiteNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteNode")
            .field("name", &self.name)
            .finish()
    }
}

impl SiteNode {
    /// Opens the site's data, resumes its last deployment and starts draining
    /// store-and-forward. `node` picks the node of a pair (SPEC §8): it joins its pair
    /// and works only while it is the active node. Must be called inside the tokio
    /// runtime.
    pub async fn start(
        config: &Config,
        site: &str,
        node: Option<&str>,
    ) -> Result<Arc<SiteNode>, StartError> {
        // Record from the start (the recorder is process-wide).
        switchyard_core::telemetry::handle();
        let mut settings = config
            .sites
            .get(site)
            .cloned()
            .ok_or_else(|| StartError::UnknownSite(site.to_string()))?;
        let member = pair_member(&settings, site, node)?;
        if let Some(member) = &member {
            let me = settings
                .node(&member.me().name)
                .map(|(def, _)| def.clone())
                .expect("pair_member found the node");
            settings.listen = me.listen;
            settings.data_dir = me.data_dir;
        }
        let token = settings
            .token
            .resolve_token(&config.base_dir)
            .map_err(|reason| StartError::Token {
                site: site.to_string(),
                reason,
            })?;
        let data_dir = settings.data_dir.clone();
        let storage = |reason: String| StartError::Storage {
            dir: data_dir.display().to_string(),
            reason,
        };
        let (state, outbox) = {
            let (state_dir, outbox_dir) = (data_dir.join("state"), data_dir.join("outbox"));
            let min_free_disk = settings.min_free_disk;
            let private = data_dir.clone();
            tokio::task::spawn_blocking(move || {
                // The deployment (literal secrets included) and buffered payloads live
                // here: owner only.
                owner_only(&private)?;
                let state = SiteState::open(&state_dir).map_err(|e| e.to_string())?;
                let outbox = FjallOutbox::open(
                    &outbox_dir,
                    OutboxOptions {
                        min_free_disk,
                        ..Default::default()
                    },
                )
                .map_err(|e| e.to_string())?;
                Ok::<_, String>((state, outbox))
            })
            .await
            .map_err(|e| storage(e.to_string()))?
            .map_err(storage)?
        };
        let services = NodeServices {
            engine: Arc::new(site_engine(&ScriptLimits::default())),
            pool: ScriptPool::new(
                &format!("site-{site}"),
                settings.script_threads,
                settings.script_queue,
            ),
            state,
            outbox,
            base_dir: config.base_dir.clone(),
            script_timeout: settings.script_timeout,
            site: site.to_string(),
            handle: tokio::runtime::Handle::current(),
        };
        let pair = match &member {
            Some(member) => {
                let ca = match &settings.tls {
                    Some(tls) => Some(switchyard_core::tls::ca_certificate(&tls.ca).map_err(
                        |reason| StartError::Pair {
                            site: site.to_string(),
                            reason: format!("tls.{reason}"),
                        },
                    )?),
                    None => None,
                };
                let pair_error = |reason: String| StartError::Pair {
                    site: site.to_string(),
                    reason,
                };
                let network = HttpNetwork::new(token.clone(), ca).map_err(pair_error)?;
                let voter = PairNode::start(member, &data_dir, services.outbox.clone(), network)
                    .await
                    .map_err(|e| pair_error(e.to_string()))?;
                Some(Arc::new(voter))
            }
            None => None,
        };
        let node_name = member
            .as_ref()
            .map_or_else(|| site.to_string(), |m| m.me().name.clone());
        let gauges = AbortOnDrop(tokio::spawn(refresh_gauges(
            services.outbox.clone(),
            data_dir.clone(),
            settings.min_free_disk,
        )));
        let node = Arc::new(SiteNode {
            name: site.to_string(),
            settings,
            services,
            runtime: Arc::new(ArcSwapOption::empty()),
            token: Arc::new(Some(token)),
            deploy_lock: tokio::sync::Mutex::new(()),
            forwarder: Mutex::new(None),
            pair,
            node_name,
            serving: std::sync::atomic::AtomicBool::new(false),
            _gauges: gauges,
            supervisor: Mutex::new(None),
        });
        match &node.pair {
            None => {
                node.resume().await;
                node.start_forwarder();
            }
            Some(pair) if pair.me().witness => {
                tracing::info!(site = %node.name, node = %node.node_name, "witness of the pair: votes and keeps the log");
            }
            Some(_) => {
                // A warm standby: the deployment is loaded, the work waits for the role.
                node.resume().await;
                let task = tokio::spawn(supervise(Arc::downgrade(&node)));
                *node.supervisor.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(AbortOnDrop(task));
            }
        }
        Ok(node)
    }

    /// This node's voter, when the site runs as a pair.
    pub fn pair(&self) -> Option<&Arc<PairNode>> {
        self.pair.as_ref()
    }

    /// Whether this node does the site's work now: always for a single node; for a
    /// pair, while it is the active node (leadership confirmed within its lease).
    pub fn is_active(&self) -> bool {
        self.pair
            .as_ref()
            .is_none_or(|p| p.is_active() && self.serving.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// What this node is to its site (SPEC §8).
    pub fn role(&self) -> switchyard_ha::Role {
        self.pair
            .as_ref()
            .map_or(switchyard_ha::Role::Active, |p| p.role())
    }

    /// The name of the active node as far as this node knows.
    pub fn active_node(&self) -> Option<String> {
        match &self.pair {
            None => Some(self.node_name.clone()),
            Some(pair) => pair.active_node(),
        }
    }

    /// Becomes the active node: the replicated deployment if it is newer than the one
    /// loaded, then the forwarder.
    async fn take_over(&self) -> bool {
        if let Some(pair) = &self.pair
            && let Err(e) = pair.catch_up().await
        {
            // Not serving yet: the supervisor tries again while this node still leads.
            tracing::warn!(site = %self.name, error = %e, "cannot confirm the pair's latest state; not taking over yet");
            return false;
        }
        let outbox = self.services.outbox.clone();
        let replicated =
            tokio::task::spawn_blocking(move || outbox.meta(DEPLOYMENT_META.as_bytes())).await;
        match replicated {
            Ok(Ok(Some(bytes))) => match serde_json::from_slice::<Deployment>(&bytes) {
                Ok(deployment) => {
                    let current = self.runtime().map(|r| r.deployment.revision.clone());
                    if current.as_deref() != Some(deployment.revision.as_str()) {
                        let _one_at_a_time = self.deploy_lock.lock().await;
                        if let Err(errors) = self.install(deployment).await {
                            tracing::error!(site = %self.name, errors = %join(&errors), "the replicated deployment does not compile here; keeping the loaded one");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(site = %self.name, error = %e, "the replicated deployment is unreadable; keeping the loaded one")
                }
            },
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(site = %self.name, error = %e, "cannot read the replicated deployment")
            }
            Err(e) => {
                tracing::error!(site = %self.name, error = %e, "cannot read the replicated deployment")
            }
        }
        if let Some(pair) = &self.pair
            && let Err(e) = pair.adopt_unreplicated(&self.services.outbox).await
        {
            tracing::error!(site = %self.name, error = %e, "cannot adopt the messages that predate the pair; tried again at the next take-over");
        }
        self.start_forwarder();
        self.serving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!(site = %self.name, node = %self.node_name, "this node is now the site's active node: serving calls and delivering");
        true
    }

    /// No longer active: deliveries stop at once (those in flight are abandoned and
    /// retried by the new active node: at-least-once).
    fn step_down(&self) {
        self.serving
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if let Some(forwarder) = self
            .forwarder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            forwarder.stop();
        }
        tracing::warn!(site = %self.name, node = %self.node_name, active = ?self.active_node(), "this node is no longer active: calls refused, deliveries stopped");
    }

    /// Loads the last deployment from disk, if there is one.
    async fn resume(&self) {
        let state = self.services.state.clone();
        match tokio::task::spawn_blocking(move || state.deployment()).await {
            Ok(Ok(Some(deployment))) => {
                let revision = deployment.revision.clone();
                match Runtime::build(deployment, self.services.clone()) {
                    Ok(runtime) => {
                        publish_paces(&runtime.deployment);
                        self.runtime.store(Some(Arc::new(runtime)));
                        tracing::info!(site = %self.name, %revision, "resumed the last deployment");
                    }
                    Err(errors) => {
                        tracing::error!(site = %self.name, errors = %join(&errors), "the stored deployment no longer compiles; waiting for central")
                    }
                }
            }
            Ok(Ok(None)) => {
                tracing::info!(site = %self.name, "no deployment yet; waiting for central")
            }
            Ok(Err(e)) => {
                tracing::error!(site = %self.name, error = %e, "cannot read the stored deployment; waiting for central")
            }
            Err(e) => {
                tracing::error!(site = %self.name, error = %e, "cannot read the stored deployment")
            }
        }
    }

    fn start_forwarder(&self) {
        let dispatch = Dispatch {
            runtime: self.runtime.clone(),
            pair: self.pair.clone(),
        };
        let pacing = DeploymentPacing {
            runtime: self.runtime.clone(),
        };
        let handle = Forwarder::new(
            self.services.outbox.clone(),
            dispatch,
            ForwarderOptions::default(),
        )
        // Each target's `max_rate` / `max_in_flight`, from the deployment in force.
        .with_pacing(pacing)
        .spawn();
        *self.forwarder.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    /// The runtime of the current deployment.
    pub fn runtime(&self) -> Option<Arc<Runtime>> {
        self.runtime.load_full()
    }

    /// Store-and-forward of this site.
    pub fn outbox(&self) -> &FjallOutbox {
        &self.services.outbox
    }

    /// The script pool.
    pub fn pool(&self) -> &ScriptPool {
        &self.services.pool
    }

    /// The token central must present on the cluster endpoint.
    pub fn token(&self) -> Arc<Option<Secret>> {
        self.token.clone()
    }

    /// Accepts a deployment: compiled whole (every error reported, the current one
    /// stays active on failure), stored durably, then swapped in.
    pub async fn deploy(&self, deployment: Deployment) -> Result<String, Vec<CompileError>> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        if deployment.site != self.name {
            return Err(vec![CompileError {
                file: "deployment".into(),
                line: 1,
                column: 1,
                message: format!(
                    "deployment is for site `{}`, this is `{}`",
                    deployment.site, self.name
                ),
            }]);
        }
        if self.runtime().is_some_and(|r| {
            r.deployment.revision == deployment.revision && !deployment.revision.is_empty()
        }) {
            return Ok(deployment.revision);
        }
        if let Some(pair) = &self.pair {
            // Compiled first (a broken deployment is not replicated), then on a
            // majority, so a node that takes over serves it without central.
            Runtime::build(deployment.clone(), self.services.clone())?;
            let bytes =
                serde_json::to_vec(&deployment).map_err(|e| deployment_error(e.to_string()))?;
            pair.put_replicated(DEPLOYMENT_META, bytes)
                .await
                .map_err(|e| deployment_error(format!("not replicated to the pair: {e}")))?;
        }
        self.install(deployment).await
    }

    /// Compiles, stores and swaps in a deployment.
    async fn install(&self, deployment: Deployment) -> Result<String, Vec<CompileError>> {
        let revision = deployment.revision.clone();
        let runtime = Runtime::build(deployment.clone(), self.services.clone())?;
        let state = self.services.state.clone();
        let saved = tokio::task::spawn_blocking(move || state.save_deployment(&deployment)).await;
        if let Err(e) = saved
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            return Err(deployment_error(format!(
                "cannot store the deployment: {e}"
            )));
        }
        publish_paces(&runtime.deployment);
        self.runtime.store(Some(Arc::new(runtime)));
        tracing::info!(site = %self.name, %revision, "deployment active");
        Ok(revision)
    }
}

/// Key of the replicated deployment beside the outbox.
const DEPLOYMENT_META: &str = "site.deployment";

fn deployment_error(message: String) -> Vec<CompileError> {
    vec![CompileError {
        file: "deployment".into(),
        line: 1,
        column: 1,
        message,
    }]
}

/// This node's place in its pair, from `--node`; `None` for the single-node form.
fn pair_member(
    settings: &SiteConfig,
    site: &str,
    node: Option<&str>,
) -> Result<Option<PairMember>, StartError> {
    let refuse = |reason: String| StartError::Node {
        site: site.to_string(),
        reason,
    };
    let names = settings.node_names().join(", ");
    let name = match (node, settings.pair.is_empty()) {
        (None, true) => return Ok(None),
        (Some(n), true) => {
            return Err(refuse(format!(
                "this site has no named nodes, so there is no node `{n}`; start it without --node"
            )));
        }
        (None, false) => {
            return Err(refuse(format!(
                "this site runs as a pair: name this node with --node ({names})"
            )));
        }
        (Some(n), false) => n,
    };
    if settings.node(name).is_none() {
        return Err(refuse(format!("no node `{name}` (nodes: {names})")));
    }
    let full = settings.pair.iter().map(|n| (n, false));
    let voters = full
        .chain(settings.witness.iter().map(|w| (w, true)))
        .enumerate()
        .map(|(i, (def, witness))| Voter {
            id: i as u64 + 1,
            name: def.name.clone(),
            addr: def.listen.to_string(),
            witness,
        })
        .collect::<Vec<_>>();
    let me = voters
        .iter()
        .find(|v| v.name == name)
        .map(|v| v.id)
        .expect("checked above");
    Ok(Some(PairMember {
        voters,
        me,
        tuning: Tuning::default(),
    }))
}

/// Follows this node's role: takes over when it becomes active, steps down when it
/// stops being active.
async fn supervise(node: std::sync::Weak<SiteNode>) {
    let mut active = false;
    loop {
        tokio::time::sleep(SUPERVISE_EVERY).await;
        let Some(node) = node.upgrade() else { return };
        let now = node.pair.as_ref().is_some_and(|p| p.is_active());
        if now && !active {
            active = node.take_over().await;
        } else if !now && active {
            node.step_down();
            active = false;
        }
    }
}

/// How often a pair node checks its role.
const SUPERVISE_EVERY: Duration = Duration::from_millis(50);

/// Ends a background task with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often the read (not counted) gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

/// Most pending records read to find each target's oldest message.
const OLDEST_WALK: usize = 100_000;

/// Keeps the gauges that are read rather than counted up to date: the age of each
/// target's oldest pending message and the free disk under the data dir.
async fn refresh_gauges(outbox: FjallOutbox, data_dir: PathBuf, min_free_disk: u64) {
    let dir_label = data_dir.display().to_string();
    metrics::gauge!("switchyard_disk_min_free_bytes", "dir" => dir_label).set(min_free_disk as f64);
    loop {
        let scan = outbox.clone();
        let dir = data_dir.clone();
        let oldest = tokio::task::spawn_blocking(move || {
            switchyard_core::telemetry::record_disk_free(&dir);
            scan.oldest_pending(OLDEST_WALK)
        })
        .await;
        match oldest {
            Ok(Ok(oldest)) => {
                let now = now_ms();
                for (category, target, _) in outbox.counts() {
                    let buffered = oldest
                        .iter()
                        .find(|(c, t, _)| *c == category && *t == target)
                        .map(|o| o.2);
                    let age = buffered.map_or(0.0, |ms| now.saturating_sub(ms) as f64 / 1000.0);
                    metrics::gauge!("switchyard_sf_oldest_pending_age_seconds", "category" => category.as_str(), "target" => target)
                        .set(age);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the oldest pending messages"),
            Err(e) => tracing::warn!(error = %e, "the oldest-pending scan failed"),
        }
        tokio::time::sleep(GAUGE_EVERY).await;
    }
}

/// Creates `dir` if needed and makes it readable by its owner only (mode 0700): the
/// site's state holds its deployment, whose literal secrets are in clear.
fn owner_only(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {} to its owner: {e}", dir.display()))?;
    }
    Ok(())
}

fn join(errors: &[CompileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The forwarder's delivery service: each category to the stack below its
/// store-and-forward layer, with the definitions of the current deployment.
#[derive(Clone)]
struct Dispatch {
    runtime: Arc<ArcSwapOption<Runtime>>,
    /// Fencing: a pair node delivers only while its leadership is confirmed.
    pair: Option<Arc<PairNode>>,
}

impl tower::Service<StoredMessage> for Dispatch {
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, message: StoredMessage) -> Self::Future {
        let runtime = self.runtime.load_full();
        let deposed = self.pair.as_ref().is_some_and(|p| !p.is_active());
        Box::pin(async move {
            if deposed {
                // Its result cannot be recorded either (the log refuses a non-leader).
                return Err(Failure::transient(
                    codes::NOT_ACTIVE,
                    "this node is no longer the active node",
                )
                .into());
            }
            let Some(runtime) = runtime else {
                return Err(
                    Failure::transient(codes::NOT_FOUND, "the site has no deployment yet").into(),
                );
            };
            let result = match message.category {
                Category::External => runtime.external.deliver(&message).await,
                Category::Database => runtime.cached_writes.deliver(&message).await,
                Category::Notification => runtime.notifier.deliver(&message).await,
            };
            result.map_err(BoxError::from)
        })
    }
}

/// The forwarder's pacing: each message's lane and pace, read from the deployment in
/// force when the message is considered (a redeployment's pace applies at once). All
/// e-mail shares one lane, the SMTP server.
struct DeploymentPacing {
    runtime: Arc<ArcSwapOption<Runtime>>,
}

impl Pacing for DeploymentPacing {
    fn lane(&self, category: Category, target: &str) -> Option<Lane> {
        let runtime = self.runtime.load();
        lane_of(&runtime.as_ref()?.deployment, category, target)
    }
}

/// The lane of `target` in `deployment` (paced or not); `None` for an unknown target.
fn lane_of(deployment: &Deployment, category: Category, target: &str) -> Option<Lane> {
    let (name, pace) = match category {
        Category::External => (target, deployment.external_systems.get(target)?.pace),
        Category::Database => (target, deployment.databases.get(target)?.pace),
        Category::Notification => (SMTP_LANE, deployment.smtp.as_ref()?.pace),
    };
    Some(Lane {
        category,
        name: name.to_string(),
        pace,
    })
}

/// The lane name of the SMTP server in metrics.
const SMTP_LANE: &str = "smtp";

/// Shows each lane's pace in metrics (`0`: unpaced), so an overview can show it.
fn publish_paces(deployment: &Deployment) {
    let lanes = deployment
        .external_systems
        .keys()
        .map(|name| (Category::External, name.as_str()))
        .chain(
            deployment
                .databases
                .keys()
                .map(|name| (Category::Database, name.as_str())),
        )
        .chain(
            deployment
                .smtp
                .as_ref()
                .map(|_| (Category::Notification, SMTP_LANE)),
        );
    for (category, target) in lanes {
        let Some(lane) = lane_of(deployment, category, target) else {
            continue;
        };
        let labels = [
            ("category", category.as_str().to_string()),
            ("target", lane.name),
        ];
        metrics::gauge!("switchyard_sf_max_rate", &labels).set(lane.pace.max_rate.unwrap_or(0.0));
        metrics::gauge!("switchyard_sf_max_in_flight", &labels)
            .set(lane.pace.max_in_flight.map_or(0.0, f64::from));
    }
}
