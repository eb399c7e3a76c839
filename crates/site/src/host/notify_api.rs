//! `Notify.To(list).Send(subject, message)` (`[6.3-1]`, `[4.4-8]`), available to
//! instance, alarm on-trigger and shared scripts (`[6.3-2]`).

use super::{RunContext, delivery_map};
use rhai::{Dynamic, Engine, EvalAltResult};
use std::sync::Arc;
use switchyard_core::script::failure_error;

#[derive(Clone)]
pub(crate) struct NotifyApi(pub(crate) Arc<RunContext>);

/// `Notify.To(list)`: a list to send to.
#[derive(Clone)]
pub(crate) struct NotifyTarget {
    ctx: Arc<RunContext>,
    list: String,
}

pub(super) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<NotifyApi>("Notify");
    engine.register_type_with_name::<NotifyTarget>("NotificationList");
    engine.register_fn("To", |api: NotifyApi, list: &str| NotifyTarget {
        ctx: api.0.clone(),
        list: list.to_string(),
    });
    engine.register_fn("Send", send);
}

fn send(target: NotifyTarget, subject: &str, message: &str) -> Result<Dynamic, Box<EvalAltResult>> {
    let ctx = &target.ctx;
    match ctx.handle.block_on(ctx.runtime.notifier.send(
        &target.list,
        subject,
        message,
        Some(ctx.deadline),
    )) {
        Ok(buffered) => {
            if let Some(id) = buffered {
                tracing::info!(target: "switchyard::event", script = %ctx.source, list = %target.list, %id, "notification buffered for retry");
            }
            Ok(Dynamic::from_map(delivery_map(buffered)))
        }
        Err(failure) => {
            tracing::warn!(target: "switchyard::event", script = %ctx.source, list = %target.list, error = %failure, "notification failed");
            Err(failure_error(&failure))
        }
    }
}
