//! Marker errors of the inbound checks (SPEC §3); each maps to one status and code.

use switchyard_core::script::ScriptError;

/// Anything but `POST` on `/api/…`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method} is not allowed; API methods are called with POST")]
pub struct MethodNotAllowed {
    /// The method used.
    pub method: String,
}

/// The body is larger than `max_body`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request body is larger than {limit} bytes")]
pub struct PayloadTooLarge {
    /// The limit in bytes.
    pub limit: u64,
}

/// The body is not JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("content type `{found}` is not supported; send application/json")]
pub struct UnsupportedMediaType {
    /// The content type sent.
    pub found: String,
}

/// The body is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request body must be a JSON object of parameters: {reason}")]
pub struct BadJson {
    /// Why.
    pub reason: String,
}

/// The body could not be read in time (slow client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// The method's script failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ScriptFailed(pub ScriptError);

/// This central node is on standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this central node is on standby; call the active node")]
pub struct NotActive;
