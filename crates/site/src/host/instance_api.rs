//! `Instance`: the own instance of a script, and nothing else (`[4.4-10]`): there is no
//! call that names another instance.

use super::{RunContext, json_arg, run};
use rhai::{Dynamic, Engine, EvalAltResult, Map};
use std::collections::BTreeMap;
use std::sync::Arc;
use switchyard_core::script::{enter_nested_call, failure_error, to_dynamic};

#[derive(Clone)]
pub(crate) struct InstanceApi(pub(crate) Arc<RunContext>);

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

impl InstanceApi {
    fn instance(&self) -> &Arc<crate::instance::Instance> {
        // The constant is only pushed when the run has an instance.
        self.0
            .instance
            .as_ref()
            .expect("Instance is only bound for instance runs")
    }
}

pub(super) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<InstanceApi>("Instance");
    engine.register_get("Code", |api: &mut InstanceApi| {
        api.instance().code().to_string()
    });
    engine.register_fn(
        "GetAttribute",
        |api: InstanceApi, name: &str| -> Result<Dynamic> {
            api.instance()
                .get(name)
                .map(|v| to_dynamic(&v))
                .map_err(|f| failure_error(&f))
        },
    );
    engine.register_fn(
        "SetAttribute",
        |api: InstanceApi, name: &str, value: Dynamic| -> Result<()> {
            let value = json_arg(&value, name)?;
            let values = BTreeMap::from([(name.to_string(), value)]);
            api.0
                .runtime
                .set_attributes(api.instance().code(), &values)
                .map_err(|f| failure_error(&f))
        },
    );
    engine.register_fn(
        "CallScript",
        |api: InstanceApi, name: &str, params: Map| -> Result<Dynamic> {
            call_script(&api, name, params)
        },
    );
    engine.register_fn(
        "CallScript",
        |api: InstanceApi, name: &str| -> Result<Dynamic> { call_script(&api, name, Map::new()) },
    );
}

/// Runs another script of the same instance, inline on this thread, with the same
/// deadline.
fn call_script(api: &InstanceApi, name: &str, params: Map) -> Result<Dynamic> {
    let ast = api
        .0
        .runtime
        .instance_script(api.instance(), name)
        .map_err(|f| failure_error(&f))?;
    let params = json_arg(&Dynamic::from_map(params), "params")?;
    let _nested = enter_nested_call().map_err(|e| -> Box<EvalAltResult> { e.into() })?;
    match run(&api.0, &ast, &params) {
        Ok(value) => Ok(to_dynamic(&value)),
        Err(e) => Err(failure_error(
            &e.to_failure()
                .context(format!("{}/{name}", api.instance().code())),
        )),
    }
}
