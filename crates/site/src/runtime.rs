//! A site's runtime: one deployment, compiled and running. Built whole from a
//! [`Deployment`] (a syntax error anywhere rejects it, and the previous runtime keeps
//! running), then swapped in atomically.

use crate::cached_write::CachedWrites;
use crate::external::ExternalGateway;
use crate::host::{self, RunContext};
use crate::instance::{AlarmTrigger, Instance};
use crate::notify::Notifier;
use crate::state::SiteState;
use rhai::{AST, Engine};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::database::DatabasePool;
use switchyard_core::error::codes;
use switchyard_core::protocol::Deployment;
use switchyard_core::script::{CompileError, ScriptError, ScriptPool, compile};
use switchyard_core::{Deadline, Failure};
use switchyard_layers::store_forward::FjallOutbox;

/// What every runtime of a node shares: the engine, the script pool, local state,
/// store-and-forward.
#[derive(Clone)]
pub struct NodeServices {
    /// The sandboxed engine with the site API registered.
    pub engine: Arc<Engine>,
    /// The dedicated script pool.
    pub pool: ScriptPool,
    /// Deployment and attribute storage.
    pub state: SiteState,
    /// Store-and-forward.
    pub outbox: FjallOutbox,
    /// Directory secrets and relative paths are resolved against.
    pub base_dir: PathBuf,
    /// Default deadline of script runs.
    pub script_timeout: Duration,
    /// Site name.
    pub site: String,
    /// The async runtime native script functions hand their I/O to.
    pub handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for NodeServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeServices")
            .field("site", &self.site)
            .finish()
    }
}

/// A running deployment.
pub struct Runtime {
    /// The deployment it runs.
    pub deployment: Deployment,
    pub(crate) services: NodeServices,
    scripts: HashMap<(String, String), Arc<AST>>,
    alarm_scripts: HashMap<(String, usize), Arc<AST>>,
    shared: HashMap<String, Arc<AST>>,
    instances: HashMap<String, Arc<Instance>>,
    /// External systems.
    pub external: ExternalGateway,
    /// Database pools by connection name.
    pub databases: Arc<HashMap<String, Arc<DatabasePool>>>,
    /// `Database.CachedWrite`.
    pub cached_writes: CachedWrites,
    /// E-mail.
    pub notifier: Notifier,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("revision", &self.deployment.revision)
            .field("instances", &self.instances.len())
            .finish()
    }
}

impl Runtime {
    /// Compiles and builds a runtime; every compile error is reported. Must run inside
    /// the tokio runtime (pools are created here).
    pub fn build(
        deployment: Deployment,
        services: NodeServices,
    ) -> Result<Runtime, Vec<CompileError>> {
        let mut errors = Vec::new();
        let mut scripts = HashMap::new();
        let mut alarm_scripts = HashMap::new();
        let mut shared = HashMap::new();
        for (template_name, template) in &deployment.templates {
            for (script_name, source) in &template.scripts {
                match compile(&services.engine, source) {
                    Ok(ast) => {
                        scripts.insert((template_name.clone(), script_name.clone()), Arc::new(ast));
                    }
                    Err(e) => errors.push(e),
                }
            }
            for (index, alarm) in template.alarms.iter().enumerate() {
                if let Some(source) = &alarm.on_trigger {
                    match compile(&services.engine, source) {
                        Ok(ast) => {
                            alarm_scripts.insert((template_name.clone(), index), Arc::new(ast));
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        for (name, source) in &deployment.shared_scripts {
            match compile(&services.engine, source) {
                Ok(ast) => {
                    shared.insert(name.clone(), Arc::new(ast));
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            errors.dedup();
            return Err(errors);
        }

        let mut instances = HashMap::new();
        for (code, def) in &deployment.instances {
            let Some(template) = deployment.templates.get(&def.template) else {
                errors.push(CompileError {
                    file: "deployment".into(),
                    line: 1,
                    column: 1,
                    message: format!("instance {code}: unknown template `{}`", def.template),
                });
                continue;
            };
            let stored = services.state.attributes(code).unwrap_or_else(|e| {
                tracing::error!(instance = %code, error = %e, "cannot read stored attribute values; starting from configured values");
                BTreeMap::new()
            });
            instances.insert(
                code.clone(),
                Arc::new(Instance::new(
                    code,
                    &def.template,
                    Arc::new(template.clone()),
                    &def.values,
                    stored,
                )),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let mut databases = HashMap::new();
        for (name, def) in &deployment.databases {
            match DatabasePool::open(name, def, &services.base_dir) {
                Ok(pool) => {
                    databases.insert(name.clone(), Arc::new(pool));
                }
                Err(e) => {
                    tracing::warn!(database = %name, error = %e, "database connection unusable until the next deployment")
                }
            }
        }
        let databases = Arc::new(databases);
        let retries = deployment
            .databases
            .iter()
            .map(|(n, d)| (n.clone(), d.retry))
            .collect();
        let cached_writes = CachedWrites::new(databases.clone(), retries, services.outbox.clone());
        let external = ExternalGateway::new(
            &deployment.external_systems,
            &services.base_dir,
            services.outbox.clone(),
        );
        let notifier = Notifier::new(
            deployment.smtp.as_ref(),
            &deployment.notification_lists,
            &services.base_dir,
            services.outbox.clone(),
        );
        Ok(Runtime {
            deployment,
            services,
            scripts,
            alarm_scripts,
            shared,
            instances,
            external,
            databases,
            cached_writes,
            notifier,
        })
    }

    /// An instance by code.
    pub fn instance(&self, code: &str) -> Result<Arc<Instance>, Failure> {
        self.instances.get(code).cloned().ok_or_else(|| {
            Failure::permanent(
                codes::NOT_FOUND,
                format!("no instance `{code}` at site {}", self.services.site),
            )
        })
    }

    /// The compiled script `name` of an instance's template.
    pub(crate) fn instance_script(
        &self,
        instance: &Instance,
        name: &str,
    ) -> Result<Arc<AST>, Failure> {
        self.scripts
            .get(&(instance.template_name().to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| {
                Failure::permanent(
                    codes::NOT_FOUND,
                    format!(
                        "{} (template {}) has no script `{name}`",
                        instance.code(),
                        instance.template_name()
                    ),
                )
            })
    }

    /// A compiled shared script.
    pub(crate) fn shared_script(&self, name: &str) -> Result<Arc<AST>, Failure> {
        self.shared.get(name).cloned().ok_or_else(|| {
            Failure::permanent(codes::NOT_FOUND, format!("no shared script `{name}`"))
        })
    }

    /// Runs an instance script on the script pool (what central's `Route.To(…).Call`
    /// does). The deadline is the caller's, capped by the site's script timeout.
    pub async fn call_script(
        self: &Arc<Self>,
        code: &str,
        script: &str,
        params: Value,
        deadline: Option<Deadline>,
    ) -> Result<Value, ScriptError> {
        let instance = self.instance(code).map_err(ScriptError::Failure)?;
        let ast = self
            .instance_script(&instance, script)
            .map_err(ScriptError::Failure)?;
        let deadline = Deadline::earliest(
            deadline,
            Some(Deadline::after(self.services.script_timeout)),
        )
        .unwrap_or_else(|| Deadline::after(self.services.script_timeout));
        let budget = deadline.remaining();
        let runtime = self.clone();
        let handle = self.services.handle.clone();
        let source = format!("{code}/{script}");
        let run = self
            .services
            .pool
            .submit(deadline, move || {
                let ctx = RunContext::new(runtime, handle, deadline, Some(instance), &source);
                let result = host::run(&ctx, &ast, &params);
                ctx.finish();
                result
            })
            .map_err(|_| ScriptError::Overloaded)?;
        match run.await {
            Ok(result) => result,
            // Dropped unrun because its deadline passed while it waited: a timeout.
            Err(_) if deadline.is_expired() => Err(ScriptError::Timeout { budget }),
            Err(_) => Err(ScriptError::Runtime {
                message: format!("{code}/{script} did not complete (script pool stopped)"),
            }),
        }
        .map_err(|e| match e {
            ScriptError::Timeout { .. } => ScriptError::Timeout { budget },
            other => other,
        })
    }

    /// Reads attributes.
    pub fn get_attributes(
        &self,
        code: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, Value>, Failure> {
        self.instance(code)?.get_many(names)
    }

    /// Writes attributes, all or none: checked, persisted, applied; alarms that become
    /// active run their on-trigger scripts.
    pub fn set_attributes(
        self: &Arc<Self>,
        code: &str,
        values: &BTreeMap<String, Value>,
    ) -> Result<(), Failure> {
        let instance = self.instance(code)?;
        instance.check(values)?;
        self.services
            .state
            .save_attributes(code, values)
            .map_err(|e| {
                Failure::transient(
                    codes::BUFFER_REFUSED,
                    format!("{code}: attribute values could not be stored: {e}"),
                )
            })?;
        for trigger in instance.apply(values) {
            self.trigger_alarm(&instance, trigger);
        }
        Ok(())
    }

    fn trigger_alarm(self: &Arc<Self>, instance: &Arc<Instance>, trigger: AlarmTrigger) {
        let alarm = &instance.template().alarms[trigger.index];
        tracing::info!(target: "switchyard::event", instance = instance.code(), alarm = %trigger.alarm, attribute = %trigger.attribute, value = %trigger.value, "alarm triggered");
        metrics::counter!("switchyard_alarms_triggered_total", "alarm" => trigger.alarm.clone())
            .increment(1);
        let Some(ast) = self
            .alarm_scripts
            .get(&(instance.template_name().to_string(), trigger.index))
            .cloned()
        else {
            return;
        };
        let mut params = serde_json::Map::new();
        params.insert("alarm".into(), trigger.alarm.clone().into());
        params.insert("attribute".into(), trigger.attribute.clone().into());
        params.insert("value".into(), trigger.value.clone());
        if let Some(above) = alarm.above {
            params.insert("above".into(), above.into());
        }
        if let Some(below) = alarm.below {
            params.insert("below".into(), below.into());
        }
        let params = Value::Object(params);
        let deadline = Deadline::after(self.services.script_timeout);
        let runtime = self.clone();
        let instance = instance.clone();
        let handle = self.services.handle.clone();
        let source = format!("{}/alarm/{}", instance.code(), trigger.alarm);
        let what = source.clone();
        let queued = self.services.pool.spawn_internal(deadline, move || {
            let ctx = RunContext::new(runtime, handle, deadline, Some(instance), &source);
            if let Err(e) = host::run(&ctx, &ast, &params) {
                tracing::error!(target: "switchyard::event", script = %source, error = %e, "alarm on-trigger script failed");
            }
            ctx.finish();
        });
        if !queued {
            tracing::error!(target: "switchyard::event", script = %what, "alarm on-trigger script not run: the site's internal script queue is full");
        }
    }

    /// Instance codes.
    pub fn instance_codes(&self) -> Vec<String> {
        let mut codes: Vec<_> = self.instances.keys().cloned().collect();
        codes.sort();
        codes
    }
}
