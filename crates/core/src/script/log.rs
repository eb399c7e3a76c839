//! `Log.Info/Warn/Error(msg)`: script messages into the node's event log (tracing,
//! target `switchyard::event`), tagged with the script that wrote them.

use rhai::Engine;

/// The `Log` object of a script run.
#[derive(Debug, Clone)]
pub struct LogApi {
    /// Which script is logging (`T-101/Fill`, `api/GetTankLevel`, …).
    pub source: std::sync::Arc<str>,
}

impl LogApi {
    /// Registers the type and its methods.
    pub fn register(engine: &mut Engine) {
        engine.register_type_with_name::<LogApi>("Log");
        engine.register_fn("Info", |log: LogApi, message: &str| {
            tracing::info!(target: "switchyard::event", script = %log.source, "{message}");
        });
        engine.register_fn("Warn", |log: LogApi, message: &str| {
            tracing::warn!(target: "switchyard::event", script = %log.source, "{message}");
        });
        engine.register_fn("Error", |log: LogApi, message: &str| {
            tracing::error!(target: "switchyard::event", script = %log.source, "{message}");
        });
    }
}
