//! `Route.To(instance)`: reach any instance at any site (`[7.4-7-rt]`, `CD-IA-6/7/9`).
//! Each call is synchronous for the script, carries what is left of the method's
//! deadline, and is never buffered (`CD-IA-8`).

use super::ApiContext;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use switchyard_core::script::{block_on_here_or, failure_error, from_dynamic, to_dynamic};

#[derive(Clone)]
pub(crate) struct RouteApi(pub(crate) Arc<ApiContext>);

/// `Route.To(code)`.
#[derive(Clone)]
pub(crate) struct RouteTarget {
    ctx: Arc<ApiContext>,
    instance: String,
}

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

pub(super) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<RouteApi>("Route");
    engine.register_type_with_name::<RouteTarget>("RouteTarget");
    engine.register_fn("To", |api: RouteApi, instance: &str| RouteTarget {
        ctx: api.0.clone(),
        instance: instance.to_string(),
    });
    engine.register_fn("Call", |t: RouteTarget, script: &str, params: Map| {
        call(&t, script, params)
    });
    engine.register_fn("Call", |t: RouteTarget, script: &str| {
        call(&t, script, Map::new())
    });
    engine.register_fn(
        "GetAttribute",
        |t: RouteTarget, name: &str| -> Result<Dynamic> {
            let mut values = get(&t, vec![name.to_string()])?;
            Ok(values
                .remove(name)
                .map_or(Dynamic::UNIT, |v| to_dynamic(&v)))
        },
    );
    engine.register_fn(
        "GetAttributes",
        |t: RouteTarget, names: Array| -> Result<Dynamic> {
            let names = names
                .into_iter()
                .map(|n| {
                    n.into_string().map_err(|t| -> Box<EvalAltResult> {
                        format!("GetAttributes: attribute names must be strings, found {t}").into()
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let values = get(&t, names)?;
            Ok(to_dynamic(&Value::Object(values.into_iter().collect())))
        },
    );
    engine.register_fn(
        "SetAttribute",
        |t: RouteTarget, name: &str, value: Dynamic| -> Result<()> {
            let value = from_dynamic(&value).map_err(|e| -> Box<EvalAltResult> {
                format!("SetAttribute {name}: {e}").into()
            })?;
            set(&t, BTreeMap::from([(name.to_string(), value)]))
        },
    );
    engine.register_fn(
        "SetAttributes",
        |t: RouteTarget, values: Map| -> Result<()> {
            let values = values
                .into_iter()
                .map(|(k, v)| {
                    from_dynamic(&v).map(|v| (k.to_string(), v)).map_err(
                        |e| -> Box<EvalAltResult> { format!("SetAttributes {k}: {e}").into() },
                    )
                })
                .collect::<Result<BTreeMap<_, _>>>()?;
            set(&t, values)
        },
    );
}

fn call(t: &RouteTarget, script: &str, params: Map) -> Result<Dynamic> {
    let params = from_dynamic(&Dynamic::from_map(params))
        .map_err(|e| -> Box<EvalAltResult> { format!("params: {e}").into() })?;
    let ctx = &t.ctx;
    block_on_here_or(
        &ctx.handle,
        ctx.registry
            .sites
            .call_script(&t.instance, script, params, Some(ctx.deadline)),
    )
    .map(|v| to_dynamic(&v))
    .map_err(|f| failure_error(&f))
}

fn get(t: &RouteTarget, names: Vec<String>) -> Result<BTreeMap<String, Value>> {
    let ctx = &t.ctx;
    block_on_here_or(
        &ctx.handle,
        ctx.registry
            .sites
            .get_attributes(&t.instance, names, Some(ctx.deadline)),
    )
    .map_err(|f| failure_error(&f))
}

fn set(t: &RouteTarget, values: BTreeMap<String, Value>) -> Result<()> {
    let ctx = &t.ctx;
    block_on_here_or(
        &ctx.handle,
        ctx.registry
            .sites
            .set_attributes(&t.instance, values, Some(ctx.deadline)),
    )
    .map_err(|f| failure_error(&f))
}
