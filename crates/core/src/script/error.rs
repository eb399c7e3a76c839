use crate::error::{Failure, codes};
use rhai::EvalAltResult;
use std::time::Duration;

/// A script that does not compile, with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct CompileError {
    /// The script file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Why a script run did not produce a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    /// The run's deadline passed.
    #[error("script timed out after {}", humantime::format_duration(*budget))]
    Timeout {
        /// The budget the run had.
        budget: Duration,
    },
    /// A failure from an outbound call (Route.To, ExternalSystem…) that the script did
    /// not catch.
    #[error("{0}")]
    Failure(Failure),
    /// A sandbox limit was hit (operations, sizes, call depth).
    #[error("script stopped: {message}")]
    Limit {
        /// Which limit.
        message: String,
    },
    /// Any other uncaught error (a `throw`, a type error, an unknown function…).
    #[error("script error: {message}")]
    Runtime {
        /// The error, with its position.
        message: String,
    },
    /// The script pool is saturated.
    #[error("the script pool is saturated")]
    Overloaded,
}

impl ScriptError {
    /// Classifies an uncaught rhai error. `budget` is reported for timeouts.
    pub fn from_eval(err: &EvalAltResult, budget: Duration) -> ScriptError {
        match err {
            EvalAltResult::ErrorTerminated(token, _)
                if token.clone().into_string().ok().as_deref()
                    == Some(super::engine::MEMORY_TOKEN) =>
            {
                ScriptError::Limit {
                    message:
                        "the script used more memory than a run may (ScriptLimits::max_memory)"
                            .into(),
                }
            }
            EvalAltResult::ErrorTerminated(..) => ScriptError::Timeout { budget },
            EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
            | EvalAltResult::ErrorInModule(_, inner, _) => {
                match ScriptError::from_eval(inner, budget) {
                    ScriptError::Runtime { .. } => ScriptError::Runtime {
                        message: err.to_string(),
                    },
                    other => other,
                }
            }
            EvalAltResult::ErrorRuntime(value, _) => {
                match super::convert::failure_from_dynamic(value) {
                    Some(failure) => ScriptError::Failure(failure),
                    None => ScriptError::Runtime {
                        message: err.to_string(),
                    },
                }
            }
            EvalAltResult::ErrorTooManyOperations(_)
            | EvalAltResult::ErrorTooManyVariables(_)
            | EvalAltResult::ErrorTooManyModules(_)
            | EvalAltResult::ErrorStackOverflow(_)
            | EvalAltResult::ErrorDataTooLarge(..) => ScriptError::Limit {
                message: err.to_string(),
            },
            _ => ScriptError::Runtime {
                message: err.to_string(),
            },
        }
    }

    /// The error as a [`Failure`] (what one script sees when another fails).
    pub fn to_failure(&self) -> Failure {
        match self {
            ScriptError::Failure(f) => f.clone(),
            ScriptError::Timeout { .. } => Failure::transient(codes::TIMEOUT, self.to_string()),
            ScriptError::Overloaded => Failure::transient(codes::OVERLOADED, self.to_string()),
            ScriptError::Limit { .. } | ScriptError::Runtime { .. } => {
                Failure::permanent(codes::SCRIPT_ERROR, self.to_string())
            }
        }
    }
}
