//! `Shared.Call(name, params)`: shared scripts, run inline with the caller's context
//! (its instance, deadline and connections).

use super::{RunContext, json_arg, run};
use rhai::{Dynamic, Engine, EvalAltResult, Map};
use std::sync::Arc;
use switchyard_core::script::{enter_nested_call, failure_error, to_dynamic};

#[derive(Clone)]
pub(crate) struct SharedApi(pub(crate) Arc<RunContext>);

pub(super) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<SharedApi>("Shared");
    engine.register_fn("Call", |api: SharedApi, name: &str, params: Map| {
        call(&api, name, params)
    });
    engine.register_fn("Call", |api: SharedApi, name: &str| {
        call(&api, name, Map::new())
    });
}

fn call(api: &SharedApi, name: &str, params: Map) -> Result<Dynamic, Box<EvalAltResult>> {
    let ast = api
        .0
        .runtime
        .shared_script(name)
        .map_err(|f| failure_error(&f))?;
    let params = json_arg(&Dynamic::from_map(params), "params")?;
    let _nested = enter_nested_call().map_err(|e| -> Box<EvalAltResult> { e.into() })?;
    match run(&api.0, &ast, &params) {
        Ok(value) => Ok(to_dynamic(&value)),
        Err(e) => Err(failure_error(
            &e.to_failure().context(format!("shared script {name}")),
        )),
    }
}
