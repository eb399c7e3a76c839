//! `Database.Connection(name)` (a raw connection: queries, updates, transactions,
//! procedures) and `Database.CachedWrite(name, sql, params)` (`[4.4-9]`, `[5.6-*]`).

use super::{RunContext, delivery_map};
use rhai::{Array, Dynamic, Engine, EvalAltResult};
use std::sync::Arc;
use switchyard_core::Failure;
use switchyard_core::error::codes;
use switchyard_core::script::{ConnectionApi, failure_error, sql_params};

#[derive(Clone)]
pub(crate) struct DatabaseApi(pub(crate) Arc<RunContext>);

type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

pub(super) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<DatabaseApi>("Database");
    ConnectionApi::register(engine);
    engine.register_fn("Connection", connection);
    engine.register_fn(
        "CachedWrite",
        |api: DatabaseApi, name: &str, sql: &str, params: Array| {
            cached_write(&api, name, sql, params)
        },
    );
    engine.register_fn("CachedWrite", |api: DatabaseApi, name: &str, sql: &str| {
        cached_write(&api, name, sql, Array::new())
    });
}

fn connection(api: DatabaseApi, name: &str) -> Result<ConnectionApi> {
    let ctx = &api.0;
    let pool = ctx
        .runtime
        .databases
        .get(name)
        .cloned()
        .ok_or_else(|| {
            Failure::permanent(
                codes::NOT_FOUND,
                format!("no database connection named `{name}`"),
            )
        })
        .map_err(|f| failure_error(&f))?;
    ctx.connections
        .open(&pool, &ctx.handle, ctx.deadline)
        .map_err(|f| failure_error(&f))
}

/// Runs the write through the cached-write stack: written now, or buffered when the
/// database is unavailable; permanent failures (syntax, constraint) come back.
fn cached_write(api: &DatabaseApi, name: &str, sql: &str, values: Array) -> Result<Dynamic> {
    let ctx = &api.0;
    let values = sql_params(values)?;
    match ctx.handle.block_on(ctx.runtime.cached_writes.cached_write(
        name,
        sql,
        values,
        Some(ctx.deadline),
    )) {
        Ok(buffered) => {
            if let Some(id) = buffered {
                tracing::info!(target: "switchyard::event", script = %ctx.source, database = name, %id, "database write buffered for retry");
            }
            Ok(Dynamic::from_map(delivery_map(buffered)))
        }
        Err(failure) => {
            tracing::warn!(target: "switchyard::event", script = %ctx.source, database = name, error = %failure, "database write failed");
            Err(failure_error(&failure))
        }
    }
}
