//! The script runtime shared by central (API scripts) and sites (instance, alarm and
//! shared scripts): a sandboxed rhai engine, compilation with located errors, the
//! dedicated thread pool scripts run on (`CD-ESG-7`), deadlines, and the bridges between
//! rhai values, JSON and [`Failure`](crate::Failure)s.
//!
//! ```
//! use std::time::Duration;
//! use switchyard_core::Deadline;
//! use switchyard_core::config::ScriptSource;
//! use switchyard_core::script::{ScriptLimits, ScriptPool, compile, new_engine};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let engine = std::sync::Arc::new(new_engine(&ScriptLimits::default(), |_| {}));
//! let ast = compile(&engine, &ScriptSource { path: "double.rhai".into(), source: "params.x * 2".into() }).unwrap();
//! let pool = ScriptPool::new("example", 2, 8);
//! let run = pool.submit(Deadline::after(Duration::from_secs(1)), move || {
//!     let mut scope = rhai::Scope::new();
//!     scope.push_constant("params", switchyard_core::script::to_dynamic(&serde_json::json!({"x": 21})));
//!     engine.eval_ast_with_scope::<rhai::Dynamic>(&mut scope, &ast).map(|v| v.as_int().unwrap())
//! }).unwrap();
//! assert_eq!(run.await.unwrap().unwrap(), 42);
//! # }
//! ```

mod connection;
mod convert;
mod engine;
mod error;
mod log;
mod pool;
mod thread_io;

pub use connection::{ConnectionApi, ConnectionTracker, sql_params};
pub use convert::{MAX_VALUE_DEPTH, failure_error, failure_map, from_dynamic, to_dynamic};
pub use engine::{
    AllocationProbe, ScriptLimits, compile, current_deadline, enter_nested_call,
    install_allocation_probe, new_engine,
};
pub use error::{CompileError, ScriptError};
pub use log::LogApi;
pub use pool::{INTERNAL_QUEUE, IdleHook, Overloaded, PoolClosed, ScriptPool};
pub use thread_io::{PerThreadClient, TIDY_EVERY, block_on_here, block_on_here_or, tidy_thread};
