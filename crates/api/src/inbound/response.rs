//! Error → response, above every fallible layer: one status and `code` per failure
//! (SPEC §3). 5xx bodies carry a safe message and an incident id only — the detail goes
//! to the failure log under the same id.

use super::error::{
    BadJson, BodyTimeout, MethodNotAllowed, NotActive, PayloadTooLarge, ScriptFailed,
    UnsupportedMediaType,
};
use http::StatusCode;
use switchyard_core::BoxError;
use switchyard_core::error::codes;
use switchyard_core::script::{Overloaded, ScriptError};
use switchyard_layers::auth::{Forbidden, Unauthorized, UnknownTarget};
use switchyard_layers::deadline::Elapsed;
use switchyard_layers::validate::Invalid;

/// How a failed call is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// HTTP status.
    pub status: StatusCode,
    /// `code` of the body.
    pub code: &'static str,
    /// `error` of the body: safe to show.
    pub message: String,
    /// What really happened (5xx only; for the failure log).
    pub detail: Option<String>,
}

fn answer(status: StatusCode, code: &'static str, message: impl Into<String>) -> ErrorAnswer {
    ErrorAnswer {
        status,
        code,
        message: message.into(),
        detail: None,
    }
}

/// Maps an error of the inbound stack to its answer.
pub fn classify(err: &BoxError, timeout: Option<std::time::Duration>) -> ErrorAnswer {
    if err.is::<NotActive>() {
        return ErrorAnswer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: codes::NOT_ACTIVE,
            message: NotActive.to_string(),
            detail: Some("call received by a standby central node".into()),
        };
    }
    if err.is::<Unauthorized>() {
        return answer(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "missing, unknown or disabled API key",
        );
    }
    if let Some(e) = err.downcast_ref::<UnknownTarget>() {
        return answer(
            StatusCode::NOT_FOUND,
            codes::METHOD_NOT_FOUND,
            e.to_string(),
        );
    }
    if let Some(e) = err.downcast_ref::<Forbidden>() {
        return answer(StatusCode::FORBIDDEN, codes::FORBIDDEN, e.to_string());
    }
    if let Some(e) = err.downcast_ref::<MethodNotAllowed>() {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::METHOD_NOT_ALLOWED,
            e.to_string(),
        );
    }
    if let Some(e) = err.downcast_ref::<PayloadTooLarge>() {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::PAYLOAD_TOO_LARGE,
            e.to_string(),
        );
    }
    if let Some(e) = err.downcast_ref::<UnsupportedMediaType>() {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            e.to_string(),
        );
    }
    if let Some(e) = err.downcast_ref::<BadJson>() {
        return answer(StatusCode::BAD_REQUEST, codes::BAD_JSON, e.to_string());
    }
    if let Some(e) = err.downcast_ref::<BodyTimeout>() {
        return answer(
            StatusCode::REQUEST_TIMEOUT,
            codes::REQUEST_TIMEOUT,
            e.to_string(),
        );
    }
    if let Some(e) = err.downcast_ref::<Invalid>() {
        return answer(
            StatusCode::BAD_REQUEST,
            codes::INVALID_PARAMS,
            e.to_string(),
        );
    }
    let timed_out = |detail: String| ErrorAnswer {
        status: StatusCode::GATEWAY_TIMEOUT,
        code: codes::TIMEOUT,
        message: match timeout {
            Some(t) => format!(
                "the method did not finish within {}",
                humantime::format_duration(t)
            ),
            None => "the method did not finish in time".into(),
        },
        detail: Some(detail),
    };
    if let Some(e) = err.downcast_ref::<Elapsed>() {
        return timed_out(e.to_string());
    }
    if err.is::<Overloaded>() || err.is::<tower::load_shed::error::Overloaded>() {
        return ErrorAnswer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: codes::OVERLOADED,
            message: "too many calls in progress; try again later".into(),
            detail: Some("the API script pool and its queue are full".into()),
        };
    }
    if let Some(ScriptFailed(e)) = err.downcast_ref::<ScriptFailed>() {
        return match e {
            ScriptError::Timeout { .. } => timed_out(e.to_string()),
            ScriptError::Failure(f) if f.code == codes::TIMEOUT => timed_out(e.to_string()),
            ScriptError::Failure(f) if f.code == codes::SITE_UNREACHABLE => ErrorAnswer {
                status: StatusCode::BAD_GATEWAY,
                code: codes::SITE_UNREACHABLE,
                message: "a site this method needs is unreachable".into(),
                detail: Some(e.to_string()),
            },
            ScriptError::Overloaded => ErrorAnswer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: codes::OVERLOADED,
                message: "too many calls in progress; try again later".into(),
                detail: Some(e.to_string()),
            },
            other => ErrorAnswer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: codes::SCRIPT_ERROR,
                message: "the method's script failed".into(),
                detail: Some(other.to_string()),
            },
        };
    }
    ErrorAnswer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: codes::SCRIPT_ERROR,
        message: "the method's script failed".into(),
        detail: Some(switchyard_core::classify::error_chain(&**err)),
    }
}
