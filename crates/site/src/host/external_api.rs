//! `ExternalSystem.Call(system, method, params)` and `.CachedCall(…)` (`[4.4-6]`,
//! `[4.4-7]`, `KDD-ext-2`).

use super::{RunContext, delivery_map, json_arg};
use rhai::{Dynamic, Engine, EvalAltResult, Map};
use std::sync::Arc;
use switchyard_core::script::{block_on_here_or, failure_error, to_dynamic};

#[derive(Clone)]
pub(crate) struct ExternalSystemApi(pub(crate) Arc<RunContext>);

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

pub(super) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ExternalSystemApi>("ExternalSystem");
    engine.register_fn(
        "Call",
        |api: ExternalSystemApi, system: &str, method: &str, params: Map| {
            call(&api, system, method, params)
        },
    );
    engine.register_fn(
        "Call",
        |api: ExternalSystemApi, system: &str, method: &str| call(&api, system, method, Map::new()),
    );
    engine.register_fn(
        "CachedCall",
        |api: ExternalSystemApi, system: &str, method: &str, params: Map| {
            cached_call(&api, system, method, params)
        },
    );
    engine.register_fn(
        "CachedCall",
        |api: ExternalSystemApi, system: &str, method: &str| {
            cached_call(&api, system, method, Map::new())
        },
    );
}

fn call(api: &ExternalSystemApi, system: &str, method: &str, params: Map) -> Result<Dynamic> {
    let params = json_arg(&Dynamic::from_map(params), "params")?;
    let ctx = &api.0;
    let gateway = &ctx.runtime.external;
    let call = gateway.call(system, method, params, Some(ctx.deadline));
    match block_on_here_or(&ctx.handle, call) {
        Ok(value) => Ok(to_dynamic(&value)),
        Err(failure) => Err(failure_error(&failure)),
    }
}

fn cached_call(
    api: &ExternalSystemApi,
    system: &str,
    method: &str,
    params: Map,
) -> Result<Dynamic> {
    let params = json_arg(&Dynamic::from_map(params), "params")?;
    let ctx = &api.0;
    let gateway = &ctx.runtime.external;
    let call = gateway.cached_call(system, method, params, Some(ctx.deadline));
    match block_on_here_or(&ctx.handle, call) {
        Ok(buffered) => {
            if let Some(id) = buffered {
                tracing::info!(target: "switchyard::event", script = %ctx.source, system, method, %id, "external call buffered for retry");
            }
            Ok(Dynamic::from_map(delivery_map(buffered)))
        }
        Err(failure) => {
            // Permanent failures of cached calls go to the site event log as well (WP-8).
            tracing::warn!(target: "switchyard::event", script = %ctx.source, system, method, class = failure.class.as_str(), error = %failure, "external call failed");
            Err(failure_error(&failure))
        }
    }
}
