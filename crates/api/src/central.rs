//! The central node: the Inbound API, the config authority (reload, deployment to the
//! sites), the failure log and metrics.

use crate::failure_log::FailureLog;
use crate::host::central_engine;
use crate::inbound::{self, InboundCall, InboundStack, StackParts};
use crate::registry::Registry;
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_core::IncidentId;
use switchyard_core::config::{Config, Secret};
use switchyard_core::protocol::Deployment;
use switchyard_core::script::{ScriptLimits, ScriptPool};
use tokio::sync::watch;
use tower::ServiceExt;

/// Why central could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    /// The configuration has errors.
    #[error("{0}")]
    Config(String),
    /// The data dir cannot be used.
    #[error("cannot use central's data dir {dir}: {reason}")]
    Storage {
        /// The directory.
        dir: String,
        /// Why.
        reason: String,
    },
}

/// How often central checks that every site runs the current deployment.
const RECHECK: Duration = Duration::from_secs(15);

/// Deployment state of one site, as central sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SiteDeployment {
    /// Revision central wants the site to run.
    pub desired: String,
    /// Revision the site confirmed, if any.
    pub deployed: Option<String>,
    /// The last error, if the site has not got the desired revision.
    pub last_error: Option<String>,
    /// A revision the site refused (compile errors): not offered again until it changes.
    pub rejected: Option<String>,
}

/// The current registry and the inbound stack built for it: swapped together on reload.
struct Current {
    registry: Arc<Registry>,
    stack: InboundStack,
}

/// The central node.
pub struct Central {
    config_path: PathBuf,
    current: ArcSwap<Current>,
    parts: StackParts,
    admin_token: ArcSwap<Option<Secret>>,
    registry_changes: watch::Sender<Arc<Registry>>,
    deployments: Arc<std::sync::Mutex<HashMap<String, SiteDeployment>>>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Central {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Central")
            .field("config", &self.config_path)
            .finish()
    }
}

fn compile_errors(errors: &[switchyard_core::script::CompileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Central {
    /// Starts central from a loaded configuration: compiles every API script (a syntax
    /// error stops it, with `file:line:col`), opens the failure log and starts deploying
    /// to every site. Must be called inside the tokio runtime.
    pub async fn start(config: Config) -> Result<Arc<Central>, CentralError> {
        // Record from the start (the recorder is process-wide).
        switchyard_core::telemetry::handle();
        let engine = Arc::new(central_engine(&ScriptLimits::default()));
        let config_path = config.source.clone();
        let settings = config.central.clone();
        let admin_token = match &settings.admin_token {
            Some(secret) => Some(
                secret
                    .resolve_token(&config.base_dir)
                    .map_err(|e| CentralError::Config(format!("central.admin_token: {e}")))?,
            ),
            None => None,
        };
        let data_dir = settings.data_dir.clone();
        let failure_log = tokio::task::spawn_blocking(move || FailureLog::open(&data_dir))
            .await
            .map_err(|e| CentralError::Storage {
                dir: settings.data_dir.display().to_string(),
                reason: e.to_string(),
            })?
            .map_err(|e| CentralError::Storage {
                dir: settings.data_dir.display().to_string(),
                reason: e.to_string(),
            })?;
        let registry = Arc::new(
            Registry::build(config, &engine)
                .map_err(|e| CentralError::Config(compile_errors(&e)))?,
        );
        let (registry_changes, _) = watch::channel(registry.clone());
        let parts = StackParts {
            engine,
            pool: ScriptPool::new("central", settings.script_threads, settings.script_queue),
            failure_log: Arc::new(failure_log),
            active: Arc::new(AtomicBool::new(false)),
        };
        let central = Arc::new(Central {
            config_path,
            current: ArcSwap::new(Arc::new(Current {
                stack: inbound::build(&registry, &parts),
                registry,
            })),
            parts,
            admin_token: ArcSwap::new(Arc::new(admin_token)),
            registry_changes,
            deployments: Arc::default(),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        crate::active::acquire(&settings.data_dir, central.parts.active.clone()).map_err(|e| {
            CentralError::Storage {
                dir: settings.data_dir.display().to_string(),
                reason: format!("active lock: {e}"),
            }
        })?;
        central.spawn_deployer();
        Ok(central)
    }

    /// The current registry.
    pub fn registry(&self) -> Arc<Registry> {
        self.current.load().registry.clone()
    }

    /// The admin token, if configured.
    pub fn admin_token(&self) -> Arc<Option<Secret>> {
        self.admin_token.load_full()
    }

    /// The failure log.
    pub fn failure_log(&self) -> &Arc<FailureLog> {
        &self.parts.failure_log
    }

    /// The API script pool.
    pub fn pool(&self) -> &ScriptPool {
        &self.parts.pool
    }

    /// Whether this node serves `/api` (the active node of the central cluster).
    pub fn is_active(&self) -> bool {
        self.parts.active.load(Ordering::Relaxed)
    }

    /// Marks this node active or standby.
    pub fn set_active(&self, active: bool) {
        self.parts.active.store(active, Ordering::Relaxed);
    }

    /// Deployment state per site.
    pub fn deployments(&self) -> HashMap<String, SiteDeployment> {
        self.deployments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the configuration file and applies keys, methods and definitions without
    /// a restart; calls in flight finish with what they started with. Sites get the new
    /// definitions. A configuration with errors changes nothing.
    pub async fn reload(&self) -> Result<usize, CentralError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let path = self.config_path.clone();
        let config = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| CentralError::Config(e.to_string()))?
            .map_err(|e| CentralError::Config(e.to_string()))?;
        let admin_token = match &config.central.admin_token {
            Some(secret) => Some(
                secret
                    .resolve_token(&config.base_dir)
                    .map_err(|e| CentralError::Config(format!("central.admin_token: {e}")))?,
            ),
            None => None,
        };
        let registry = Arc::new(
            Registry::build(config, &self.parts.engine)
                .map_err(|e| CentralError::Config(compile_errors(&e)))?,
        );
        let methods = registry.methods.len();
        self.current.store(Arc::new(Current {
            stack: inbound::build(&registry, &self.parts),
            registry: registry.clone(),
        }));
        self.admin_token.store(Arc::new(admin_token));
        let _ = self.registry_changes.send(registry);
        tracing::info!(methods, "configuration reloaded");
        Ok(methods)
    }

    /// Deploys to every site now and whenever the registry changes, retrying sites that
    /// are down until they have the current deployment.
    fn spawn_deployer(self: &Arc<Self>) {
        let mut changes = self.registry_changes.subscribe();
        let deployments = self.deployments.clone();
        let active = self.parts.active.clone();
        tokio::spawn(async move {
            // Only the active node deploys.
            while !active.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            loop {
                let registry = changes.borrow_and_update().clone();
                let desired: Vec<Deployment> = registry
                    .config
                    .sites
                    .keys()
                    .map(|site| Deployment::for_site(&registry.config, site))
                    .collect();
                {
                    let mut state = deployments.lock().unwrap_or_else(|p| p.into_inner());
                    state.retain(|site, _| registry.config.sites.contains_key(site));
                    for d in &desired {
                        let entry = state.entry(d.site.clone()).or_insert(SiteDeployment {
                            desired: String::new(),
                            deployed: None,
                            last_error: None,
                            rejected: None,
                        });
                        entry.desired = d.revision.clone();
                    }
                }
                let mut pending: Vec<Deployment> = desired;
                let mut wait = Duration::from_millis(500);
                while !pending.is_empty() {
                    let mut still = Vec::new();
                    for deployment in pending {
                        let site = deployment.site.clone();
                        match registry
                            .sites
                            .deploy(&deployment, Duration::from_secs(30))
                            .await
                        {
                            Ok(revision) => {
                                tracing::info!(site = %site, %revision, "site has the current deployment");
                                metrics::gauge!("switchyard_site_deployed", "site" => site.clone())
                                    .set(1.0);
                                let mut state =
                                    deployments.lock().unwrap_or_else(|p| p.into_inner());
                                if let Some(entry) = state.get_mut(&site) {
                                    entry.deployed = Some(revision);
                                    entry.last_error = None;
                                }
                            }
                            Err(failure) => {
                                metrics::gauge!("switchyard_site_deployed", "site" => site.clone())
                                    .set(0.0);
                                let rejected = !failure.is_transient();
                                if rejected {
                                    tracing::error!(site = %site, error = %failure, "site rejected the deployment; it keeps its previous one");
                                } else {
                                    tracing::warn!(site = %site, error = %failure, "site not reachable for deployment; will retry");
                                }
                                {
                                    let mut state =
                                        deployments.lock().unwrap_or_else(|p| p.into_inner());
                                    if let Some(entry) = state.get_mut(&site) {
                                        entry.last_error = Some(failure.message.clone());
                                        if rejected {
                                            entry.rejected = Some(deployment.revision.clone());
                                        }
                                    }
                                }
                                if !rejected {
                                    still.push(deployment);
                                }
                            }
                        }
                    }
                    pending = still;
                    if pending.is_empty() {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        changed = changes.changed() => if changed.is_err() { return } else { break },
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
                // Then watch: a site that lost or missed its deployment (a wiped data
                // dir, a restore from backup) gets it again.
                loop {
                    tokio::select! {
                        changed = changes.changed() => {
                            if changed.is_err() { return }
                            break;
                        }
                        _ = tokio::time::sleep(RECHECK) => {}
                    }
                    let mut stale = false;
                    for site in registry.config.sites.keys() {
                        let Some(entry) = deployments
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(site)
                            .cloned()
                        else {
                            continue;
                        };
                        if entry.rejected.as_ref() == Some(&entry.desired) {
                            continue;
                        }
                        let desired = Some(entry.desired);
                        if let Ok(health) =
                            registry.sites.health(site, Duration::from_secs(5)).await
                            && health.revision != desired
                        {
                            tracing::info!(site = %site, running = ?health.revision, "site is not running the current deployment; deploying again");
                            stale = true;
                        }
                    }
                    if stale {
                        changes.mark_changed();
                        break;
                    }
                }
            }
        });
    }

    /// Handles `POST /api/{method}` through the stored inbound stack.
    pub async fn handle_api(
        self: Arc<Self>,
        method: String,
        http_method: Method,
        headers: HeaderMap,
        body: Body,
    ) -> Response {
        let api_key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let call = InboundCall {
            method,
            api_key,
            http_method,
            headers,
            body: Some(body),
            principal: None,
            entry: None,
            params: json!({}),
            deadline: None,
        };
        let stack = self.current.load().stack.clone();
        match stack.oneshot(call).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Path of the configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
}

/// `{"error", "code"}` (+ `"incident"` on 5xx).
pub fn error_body(
    status: StatusCode,
    code: &str,
    message: &str,
    incident: Option<IncidentId>,
) -> Response {
    let mut body = json!({ "error": message, "code": code });
    if let Some(incident) = incident {
        body["incident"] = json!(incident.to_string());
    }
    (status, axum::Json(body)).into_response()
}
