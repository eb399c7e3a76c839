//! Engine construction: `Engine::new_raw()` plus one shared standard package, explicit
//! sandbox limits, no `eval`, no `import`, and a deadline checked from the progress
//! callback.

use super::error::CompileError;
use crate::config::ScriptSource;
use rhai::packages::{Package, StandardPackage};
use rhai::{AST, Dynamic, Engine, EvalAltResult};
use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Sandbox limits of every script run.
#[derive(Debug, Clone)]
pub struct ScriptLimits {
    /// Operations per run (a runaway loop hits the deadline or this, whichever first).
    pub max_operations: u64,
    /// Nested function calls within a script.
    pub max_call_levels: usize,
    /// Longest string, in bytes.
    pub max_string_size: usize,
    /// Largest array.
    pub max_array_size: usize,
    /// Largest object map.
    pub max_map_size: usize,
    /// Variables in scope at once.
    pub max_variables: usize,
    /// Expression nesting (statements, function bodies).
    pub max_expr_depth: (usize, usize),
    /// Bytes a run may allocate on its thread (net of what it frees) before it is stopped
    /// — a bound on what rhai's own limits do not count (map keys, many containers).
    /// Enforced where the process installed an allocation probe
    /// ([`install_allocation_probe`]; the `switchyard` binary does).
    pub max_memory: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            max_operations: 500_000_000,
            max_call_levels: 48,
            max_string_size: 4 << 20,
            max_array_size: 50_000,
            max_map_size: 50_000,
            max_variables: 1_000,
            max_expr_depth: (64, 32),
            max_memory: 256 << 20,
        }
    }
}

/// Reads the bytes the current thread has allocated, net of what it freed.
pub type AllocationProbe = fn() -> isize;

static ALLOCATION_PROBE: OnceLock<AllocationProbe> = OnceLock::new();

/// Installs the process's allocation probe (a counting global allocator): from then on
/// a script run is stopped when it grows its thread's memory by more than
/// [`ScriptLimits::max_memory`]. Without one, that limit is not enforced.
pub fn install_allocation_probe(probe: AllocationProbe) {
    let _ = ALLOCATION_PROBE.set(probe);
}

/// The token a run is terminated with when it passes its memory budget.
pub(super) const MEMORY_TOKEN: &str = "memory";

thread_local! {
    /// Deadline of the script run on this thread (set by the pool around each job).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The thread's net allocation when the current run started.
    static MEMORY_BASE: Cell<Option<isize>> = const { Cell::new(None) };
    /// Script-to-script calls (Shared.Call, CallScript) in progress on this thread.
    static NESTING: Cell<usize> = const { Cell::new(0) };
}

/// How deep scripts may call other scripts (each call is a new AST evaluation on the
/// native stack).
const MAX_NESTED_SCRIPTS: usize = 16;

/// Starts (`Some`) or ends (`None`) a run on this thread: its deadline, and the base of
/// its memory budget.
pub(super) fn set_deadline(deadline: Option<Instant>) {
    DEADLINE.with(|d| d.set(deadline));
    let base = deadline.and(ALLOCATION_PROBE.get().map(|probe| probe()));
    MEMORY_BASE.with(|b| b.set(base));
}

/// Whether the run on this thread grew its memory past `limit`, measured from the
/// lowest count seen during the run: memory another thread allocated and this one
/// freed lowers the count, and must not become credit for the script.
fn over_memory(limit: usize) -> bool {
    let (Some(base), Some(probe)) = (MEMORY_BASE.with(Cell::get), ALLOCATION_PROBE.get()) else {
        return false;
    };
    let now = probe();
    if now < base {
        MEMORY_BASE.with(|b| b.set(Some(now)));
        return false;
    }
    now.saturating_sub(base) > limit as isize
}

/// The deadline of the script running on this thread, if any: native functions cap
/// their I/O with it.
pub fn current_deadline() -> Option<Instant> {
    DEADLINE.with(Cell::get)
}

/// Guard of a nested script call; dropping it leaves the nesting level.
#[derive(Debug)]
pub struct NestedCall(());

impl Drop for NestedCall {
    fn drop(&mut self) {
        NESTING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Enters a script-to-script call, or refuses when scripts are nested too deeply
/// (mutual recursion between shared scripts ends here instead of overflowing the stack).
pub fn enter_nested_call() -> Result<NestedCall, String> {
    NESTING.with(|n| {
        if n.get() >= MAX_NESTED_SCRIPTS {
            Err(format!(
                "scripts nested more than {MAX_NESTED_SCRIPTS} deep (script calls itself?)"
            ))
        } else {
            n.set(n.get() + 1);
            Ok(NestedCall(()))
        }
    })
}

fn standard_package() -> &'static StandardPackage {
    static PACKAGE: OnceLock<StandardPackage> = OnceLock::new();
    PACKAGE.get_or_init(StandardPackage::new)
}

/// A sandboxed engine; `register` adds the node's API types (Instance, Route, …).
pub fn new_engine(limits: &ScriptLimits, register: impl FnOnce(&mut Engine)) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(standard_package().as_shared_module());
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_variables(limits.max_variables)
        .set_max_expr_depths(limits.max_expr_depth.0, limits.max_expr_depth.1);
    // No dynamic code and no file imports: shared code is reached with Shared.Call.
    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    let max_memory = limits.max_memory;
    engine.on_progress(move |operations| {
        // Every operation: one operation can add a whole string (a map key) to memory.
        if over_memory(max_memory) {
            return Some(Dynamic::from(MEMORY_TOKEN));
        }
        if operations % 1024 != 0 {
            return None;
        }
        match current_deadline() {
            Some(deadline) if Instant::now() >= deadline => Some(Dynamic::from("deadline")),
            _ => None,
        }
    });
    // rhai's own `sleep` is a plain thread sleep that the progress callback cannot
    // interrupt: a script could hold a pool thread long past its deadline. These shadow
    // it (the engine's own functions are searched before the standard package).
    engine.register_fn("sleep", |seconds: rhai::INT| {
        sleep_within_deadline(seconds as f64)
    });
    engine.register_fn("sleep", sleep_within_deadline);
    // Wall-clock time for DateTime values (rhai itself only has monotonic timestamps).
    engine.register_fn("now_utc", || {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    });
    engine.on_print(|text| tracing::info!(target: "switchyard::script", "{text}"));
    engine.on_debug(
        |text, source, pos| tracing::debug!(target: "switchyard::script", source, %pos, "{text}"),
    );
    register(&mut engine);
    engine
}

/// The longest `sleep` of a script run that has no deadline (a run always has one in
/// the pools; this bounds any other use).
const MAX_SLEEP_WITHOUT_DEADLINE: Duration = Duration::from_secs(60);

/// `sleep(seconds)` for scripts: never past the run's deadline. A sleep that would end
/// after the deadline sleeps until the deadline and then ends the run as the progress
/// callback does (terminated: "deadline"); a negative, NaN or infinite duration is an
/// error naming the value.
fn sleep_within_deadline(seconds: rhai::FLOAT) -> Result<(), Box<EvalAltResult>> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!(
            "sleep: the duration must be a finite number of seconds ≥ 0, not {seconds}"
        )
        .into());
    }
    let requested = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
    let left = match current_deadline() {
        Some(deadline) => deadline.saturating_duration_since(Instant::now()),
        None => MAX_SLEEP_WITHOUT_DEADLINE,
    };
    if requested < left {
        std::thread::sleep(requested);
        return Ok(());
    }
    std::thread::sleep(left);
    Err(Box::new(EvalAltResult::ErrorTerminated(
        Dynamic::from("deadline"),
        rhai::Position::NONE,
    )))
}

/// Compiles a script; errors carry `file:line:col`.
pub fn compile(engine: &Engine, script: &ScriptSource) -> Result<AST, CompileError> {
    match engine.compile(&script.source) {
        Ok(mut ast) => {
            ast.set_source(script.path.as_str());
            Ok(ast)
        }
        Err(e) => {
            let message = e.0.to_string();
            let message = if message.contains("'import'") {
                "`import` is not allowed in switchyard scripts; call shared scripts with Shared.Call(name, params)".to_string()
            } else if message.contains("'eval'") {
                "`eval` is not allowed in switchyard scripts".to_string()
            } else {
                message
            };
            Err(CompileError {
                file: script.path.clone(),
                line: e.1.line().unwrap_or(1),
                column: e.1.position().unwrap_or(1),
                message,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> ScriptSource {
        ScriptSource {
            path: "scripts/x.rhai".into(),
            source: text.into(),
        }
    }

    #[test]
    fn syntax_errors_are_located() {
        let engine = new_engine(&ScriptLimits::default(), |_| {});
        let err = compile(&engine, &source("let a = 1;\nlet b = ;\n")).unwrap_err();
        assert_eq!((err.line, err.column), (2, 9), "{err}");
        assert!(err.to_string().starts_with("scripts/x.rhai:2:9: "), "{err}");
    }

    #[test]
    fn eval_and_import_are_refused_at_compile_time() {
        let engine = new_engine(&ScriptLimits::default(), |_| {});
        let err = compile(&engine, &source("eval(\"1 + 1\")")).unwrap_err();
        assert!(err.message.contains("`eval` is not allowed"), "{err}");
        let err = compile(&engine, &source("import \"other\" as o;\n1")).unwrap_err();
        assert!(err.message.contains("`import` is not allowed"), "{err}");
    }

    #[test]
    fn the_deadline_stops_an_endless_loop() {
        let engine = new_engine(&ScriptLimits::default(), |_| {});
        let ast = compile(&engine, &source("loop { }")).unwrap();
        set_deadline(Some(Instant::now() + std::time::Duration::from_millis(50)));
        let started = Instant::now();
        let err = engine.eval_ast::<Dynamic>(&ast).unwrap_err();
        set_deadline(None);
        assert!(
            matches!(*err, rhai::EvalAltResult::ErrorTerminated(..)),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn sleep_ends_at_the_deadline_and_refuses_nonsense() {
        let engine = new_engine(&ScriptLimits::default(), |_| {});
        for text in ["sleep(100); 1", "sleep(1e300); 1", "sleep(100.5); 1"] {
            let ast = compile(&engine, &source(text)).unwrap();
            set_deadline(Some(Instant::now() + Duration::from_millis(200)));
            let started = Instant::now();
            let err = engine.eval_ast::<Dynamic>(&ast).unwrap_err();
            set_deadline(None);
            assert!(
                matches!(*err, EvalAltResult::ErrorTerminated(..)),
                "{text}: {err}"
            );
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(150) && took < Duration::from_secs(2),
                "{text}: {took:?}"
            );
        }
        for text in ["sleep(-1)", "sleep(-0.5)"] {
            let ast = compile(&engine, &source(text)).unwrap();
            let err = engine.eval_ast::<Dynamic>(&ast).unwrap_err().to_string();
            assert!(err.contains("finite number of seconds"), "{text}: {err}");
        }
        // A short sleep within the budget just sleeps.
        let ast = compile(&engine, &source("sleep(0.01); 7")).unwrap();
        set_deadline(Some(Instant::now() + Duration::from_secs(5)));
        assert_eq!(engine.eval_ast::<rhai::INT>(&ast).unwrap(), 7);
        set_deadline(None);
    }

    thread_local! {
        /// A stand-in for the counting allocator: what the script "allocated".
        static FAKE_NET: Cell<isize> = const { Cell::new(0) };
    }

    fn fake_net() -> isize {
        FAKE_NET.with(Cell::get)
    }

    #[test]
    fn a_run_that_outgrows_its_memory_budget_is_stopped() {
        install_allocation_probe(fake_net);
        let limits = ScriptLimits {
            max_memory: 1_000,
            ..ScriptLimits::default()
        };
        let engine = new_engine(&limits, |e| {
            e.register_fn("grow", |n: rhai::INT| {
                FAKE_NET.with(|net| net.set(net.get() + n as isize))
            });
        });
        let within = compile(&engine, &source("grow(600); grow(300); 1")).unwrap();
        set_deadline(Some(Instant::now() + Duration::from_secs(5)));
        assert_eq!(engine.eval_ast::<rhai::INT>(&within).unwrap(), 1);
        set_deadline(None);
        // Memory freed here that another thread allocated is no credit: -5000 then
        // +1200 is still 1200 of growth.
        let credit = compile(&engine, &source("grow(-5000); grow(1200); 1")).unwrap();
        set_deadline(Some(Instant::now() + Duration::from_secs(5)));
        assert!(
            engine.eval_ast::<rhai::INT>(&credit).is_err(),
            "no credit for foreign frees"
        );
        set_deadline(None);
        let over = compile(&engine, &source("grow(600); grow(600); 1")).unwrap();
        set_deadline(Some(Instant::now() + Duration::from_secs(5)));
        let err = engine.eval_ast::<Dynamic>(&over).unwrap_err();
        set_deadline(None);
        let error = super::super::ScriptError::from_eval(&err, Duration::from_secs(5));
        assert!(
            matches!(&error, super::super::ScriptError::Limit { message } if message.contains("more memory")),
            "{error}"
        );
    }

    #[test]
    fn sandbox_limits_hold() {
        // Smaller sizes than the defaults keep this quick: rhai re-checks a container's
        // size on every growth, so filling one to the limit costs quadratic time.
        let limits = ScriptLimits {
            max_array_size: 2_000,
            max_string_size: 1 << 16,
            ..ScriptLimits::default()
        };
        let engine = new_engine(&limits, |_| {});
        for (text, needle) in [
            ("let s = \"x\"; loop { s += s; }", "Length of string"),
            ("let a = []; loop { a.push(1); }", "Size of array"),
            ("fn f(n) { f(n + 1) } f(0)", "Stack overflow"),
        ] {
            let ast = compile(&engine, &source(text)).unwrap();
            let err = engine.eval_ast::<Dynamic>(&ast).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut guards = Vec::new();
        for _ in 0..MAX_NESTED_SCRIPTS {
            guards.push(enter_nested_call().unwrap());
        }
        assert!(enter_nested_call().is_err());
        guards.pop();
        assert!(enter_nested_call().is_ok());
    }
}
