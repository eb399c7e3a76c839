//! The API-script host (`[7.4-6-rt]`): scripts run on central's dedicated pool with the
//! method timeout as deadline, and see:
//!
//! | constant | what it reaches |
//! |---|---|
//! | `params` | the validated parameters |
//! | `Route` | `To(instance)` → `Call`, `GetAttribute(s)`, `SetAttribute(s)` at any site (`[7.4-7-rt]`) |
//! | `Database` | `Connection(name)` to central's databases (`CD-IA-10`) |
//! | `Shared` | every call fails: shared scripts are site-only (`[7.4-8-rt]`) |
//! | `Log` | `Info`, `Warn`, `Error` |

mod route_api;

use crate::registry::{MethodEntry, Registry};
use rhai::{Dynamic, Engine, EvalAltResult, Map, Scope};
use serde_json::Value;
use std::sync::Arc;
use switchyard_core::error::codes;
use switchyard_core::script::{
    ConnectionApi, ConnectionTracker, LogApi, ScriptError, ScriptLimits, failure_error,
    from_dynamic, new_engine, to_dynamic,
};
use switchyard_core::types::Strictness;
use switchyard_core::{Deadline, Failure};

/// Central's engine: the sandbox plus the API-script API.
pub fn central_engine(limits: &ScriptLimits) -> Engine {
    new_engine(limits, |engine| {
        LogApi::register(engine);
        route_api::register(engine);
        ConnectionApi::register(engine);
        engine.register_type_with_name::<DatabaseApi>("Database");
        engine.register_fn(
            "Connection",
            |api: DatabaseApi, name: &str| -> Result<ConnectionApi, Box<EvalAltResult>> {
                let pool = api.0.registry.databases.get(name).cloned().ok_or_else(|| {
                    failure_error(&Failure::permanent(
                        codes::NOT_FOUND,
                        format!("no database connection named `{name}`"),
                    ))
                })?;
                api.0
                    .connections
                    .open(&pool, &api.0.handle, api.0.deadline)
                    .map_err(|f| failure_error(&f))
            },
        );
        engine.register_fn(
            "CachedWrite",
            |_: DatabaseApi,
             _: &str,
             _: &str,
             _: rhai::Array|
             -> Result<Dynamic, Box<EvalAltResult>> {
                Err(failure_error(&Failure::permanent(
                    codes::NOT_ALLOWED,
                    "Database.CachedWrite is available in site scripts only",
                )))
            },
        );
        engine.register_type_with_name::<SharedApi>("Shared");
        engine.register_fn(
            "Call",
            |_: SharedApi, name: &str, _: Map| -> Result<Dynamic, Box<EvalAltResult>> {
                shared_refused(name)
            },
        );
        engine.register_fn(
            "Call",
            |_: SharedApi, name: &str| -> Result<Dynamic, Box<EvalAltResult>> {
                shared_refused(name)
            },
        );
    })
}

fn shared_refused(name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
    Err(failure_error(&Failure::permanent(
        codes::NOT_ALLOWED,
        format!("shared scripts are site-only (Shared.Call(\"{name}\") from an API script)"),
    )))
}

/// What one API-script run can reach.
pub(crate) struct ApiContext {
    pub(crate) registry: Arc<Registry>,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) deadline: Deadline,
    pub(crate) connections: Arc<ConnectionTracker>,
}

#[derive(Clone)]
pub(crate) struct DatabaseApi(Arc<ApiContext>);

#[derive(Clone)]
pub(crate) struct SharedApi;

/// Runs a method's script with its parameters; checks the value against `returns`
/// (`[7.4-4-rt]`: a value that does not match is a script error, never a malformed 200).
pub(crate) fn run(
    engine: &Engine,
    registry: Arc<Registry>,
    handle: tokio::runtime::Handle,
    deadline: Deadline,
    method: &MethodEntry,
    params: &Value,
) -> Result<Value, ScriptError> {
    let ctx = Arc::new(ApiContext {
        registry,
        handle,
        deadline,
        connections: Arc::default(),
    });
    let mut scope = Scope::new();
    scope.push_constant("params", to_dynamic(params));
    scope.push_constant("Route", route_api::RouteApi(ctx.clone()));
    scope.push_constant("Database", DatabaseApi(ctx.clone()));
    scope.push_constant("Shared", SharedApi);
    scope.push_constant(
        "Log",
        LogApi {
            source: format!("api/{}", method.name).into(),
        },
    );
    let budget = deadline.remaining();
    let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &method.ast);
    ctx.connections.finish(&ctx.handle, &method.name);
    let mut value = match result {
        Ok(value) => from_dynamic(&value).map_err(|e| ScriptError::Runtime {
            message: format!("the return value: {e}"),
        })?,
        Err(e) => return Err(ScriptError::from_eval(&e, budget)),
    };
    if let Some(returns) = &method.def.returns {
        returns
            .validate("result", &value, Strictness::Exact)
            .map_err(|e| ScriptError::Runtime {
                message: format!("the return value does not match `{returns}`: {e}"),
            })?;
        returns.normalize(&mut value);
    }
    Ok(value)
}
