//! A site node: local state, store-and-forward and its forwarder, the script pool, and
//! the runtime of the current deployment — which survives restarts, so a site keeps
//! working while central is down (sites are autonomous).

use crate::host::site_engine;
use crate::runtime::{NodeServices, Runtime};
use crate::state::SiteState;
use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use switchyard_core::config::{Config, Secret, SiteConfig};
use switchyard_core::error::codes;
use switchyard_core::protocol::Deployment;
use switchyard_core::script::{CompileError, ScriptLimits, ScriptPool};
use switchyard_core::{BoxError, Failure};
use switchyard_layers::store_forward::{
    Category, FjallOutbox, Forwarder, ForwarderHandle, ForwarderOptions, OutboxOptions,
    StoredMessage,
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
    /// store-and-forward. Must be called inside the tokio runtime.
    pub async fn start(config: &Config, site: &str) -> Result<Arc<SiteNode>, StartError> {
        // Record from the start (the recorder is process-wide).
        switchyard_core::telemetry::handle();
        let settings = config
            .sites
            .get(site)
            .cloned()
            .ok_or_else(|| StartError::UnknownSite(site.to_string()))?;
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
        let node = Arc::new(SiteNode {
            name: site.to_string(),
            settings,
            services,
            runtime: Arc::new(ArcSwapOption::empty()),
            token: Arc::new(Some(token)),
            deploy_lock: tokio::sync::Mutex::new(()),
            forwarder: Mutex::new(None),
        });
        node.resume().await;
        node.start_forwarder();
        Ok(node)
    }

    /// Loads the last deployment from disk, if there is one.
    async fn resume(&self) {
        let state = self.services.state.clone();
        match tokio::task::spawn_blocking(move || state.deployment()).await {
            Ok(Ok(Some(deployment))) => {
                let revision = deployment.revision.clone();
                match Runtime::build(deployment, self.services.clone()) {
                    Ok(runtime) => {
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
        };
        let handle = Forwarder::new(
            self.services.outbox.clone(),
            dispatch,
            ForwarderOptions::default(),
        )
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
        let revision = deployment.revision.clone();
        let runtime = Runtime::build(deployment.clone(), self.services.clone())?;
        let state = self.services.state.clone();
        let saved = tokio::task::spawn_blocking(move || state.save_deployment(&deployment)).await;
        if let Err(e) = saved
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            return Err(vec![CompileError {
                file: "deployment".into(),
                line: 1,
                column: 1,
                message: format!("cannot store the deployment: {e}"),
            }]);
        }
        self.runtime.store(Some(Arc::new(runtime)));
        tracing::info!(site = %self.name, %revision, "deployment active");
        Ok(revision)
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
        Box::pin(async move {
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
