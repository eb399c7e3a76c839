//! The site script host: the engine with the site's script API registered (SPEC §4) and
//! the run of one script with its API objects pushed as constants:
//!
//! | constant | what it reaches |
//! |---|---|
//! | `params` | the call's parameters |
//! | `Instance` | the own instance only (`[4.4-10]`): `Code`, `GetAttribute`, `SetAttribute`, `CallScript` |
//! | `Shared` | `Call(name, params)` |
//! | `ExternalSystem` | `Call`, `CachedCall` |
//! | `Notify` | `To(list).Send(subject, message)` |
//! | `Database` | `Connection(name)`, `CachedWrite(name, sql, params)` |
//! | `Log` | `Info`, `Warn`, `Error` |
//!
//! Native functions that need I/O run it on the script thread and wait there; they never
//! run on the runtime's workers. External system calls run in the script thread's own
//! runtime with the thread's own connections (no hand-over to a worker and back, see
//! `switchyard_core::script::block_on_here_or`); the others drive the shared runtime's futures with
//! `Handle::block_on`.

mod database_api;
mod external_api;
mod instance_api;
mod notify_api;
mod shared_api;

use crate::instance::Instance;
use crate::runtime::Runtime;
use rhai::{AST, Dynamic, Engine, Scope};
use serde_json::Value;
use std::sync::Arc;
use switchyard_core::Deadline;
use switchyard_core::script::{
    ConnectionTracker, LogApi, ScriptError, ScriptLimits, from_dynamic, new_engine, to_dynamic,
};

/// The site's engine: the sandbox plus the site script API.
pub fn site_engine(limits: &ScriptLimits) -> Engine {
    new_engine(limits, |engine| {
        LogApi::register(engine);
        instance_api::register(engine);
        shared_api::register(engine);
        external_api::register(engine);
        notify_api::register(engine);
        database_api::register(engine);
    })
}

/// Everything one script run (and the scripts it calls) can reach.
pub(crate) struct RunContext {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) deadline: Deadline,
    pub(crate) instance: Option<Arc<Instance>>,
    pub(crate) source: Arc<str>,
    /// Database connections opened by the run; closed (rolled back if still in a
    /// transaction) when the run ends.
    pub(crate) connections: Arc<ConnectionTracker>,
}

impl RunContext {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        handle: tokio::runtime::Handle,
        deadline: Deadline,
        instance: Option<Arc<Instance>>,
        source: &str,
    ) -> Arc<RunContext> {
        Arc::new(RunContext {
            runtime,
            handle,
            deadline,
            instance,
            source: source.into(),
            connections: Arc::default(),
        })
    }

    /// Ends the run: connections go back to their pools, open transactions rolled back.
    pub(crate) fn finish(&self) {
        self.connections.finish(&self.handle, &self.source);
    }
}

/// Runs `ast` with `params` and the site API; returns its value as JSON.
pub(crate) fn run(ctx: &Arc<RunContext>, ast: &AST, params: &Value) -> Result<Value, ScriptError> {
    let mut scope = Scope::new();
    scope.push_constant("params", to_dynamic(params));
    if ctx.instance.is_some() {
        scope.push_constant("Instance", instance_api::InstanceApi(ctx.clone()));
    }
    scope.push_constant("Shared", shared_api::SharedApi(ctx.clone()));
    scope.push_constant(
        "ExternalSystem",
        external_api::ExternalSystemApi(ctx.clone()),
    );
    scope.push_constant("Notify", notify_api::NotifyApi(ctx.clone()));
    scope.push_constant("Database", database_api::DatabaseApi(ctx.clone()));
    scope.push_constant(
        "Log",
        LogApi {
            source: ctx.source.clone(),
        },
    );
    let budget = ctx.deadline.remaining();
    match ctx
        .runtime
        .services
        .engine
        .eval_ast_with_scope::<Dynamic>(&mut scope, ast)
    {
        Ok(value) => from_dynamic(&value).map_err(|e| ScriptError::Runtime {
            message: format!("the script's return value: {e}"),
        }),
        Err(e) => Err(ScriptError::from_eval(&e, budget)),
    }
}

/// Converts a script argument to JSON, or a catchable error naming the argument.
pub(crate) fn json_arg(value: &Dynamic, what: &str) -> Result<Value, Box<rhai::EvalAltResult>> {
    from_dynamic(value).map_err(|e| format!("{what}: {e}").into())
}

/// `#{status: "delivered"}` or `#{status: "buffered", id: "…"}`.
pub(crate) fn delivery_map(buffered: Option<switchyard_core::MessageId>) -> rhai::Map {
    let mut map = rhai::Map::new();
    match buffered {
        Some(id) => {
            map.insert("status".into(), "buffered".into());
            map.insert("id".into(), id.to_string().into());
        }
        None => {
            map.insert("status".into(), "delivered".into());
        }
    }
    map
}
