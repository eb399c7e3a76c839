//! Marker errors of the inbound checks (SPEC §3); each maps to one status and code.

use std::fmt;
use switchyard_core::script::ScriptError;

/// Anything but `POST` on `/api/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodNotAllowed {
    /// The method used.
    pub method: String,
}

impl fmt::Display for MethodNotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not allowed; API methods are called with POST",
            self.method
        )
    }
}

impl std::error::Error for MethodNotAllowed {}

/// The body is larger than `max_body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadTooLarge {
    /// The limit in bytes.
    pub limit: u64,
}

impl fmt::Display for PayloadTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the request body is larger than {} bytes", self.limit)
    }
}

impl std::error::Error for PayloadTooLarge {}

/// The body is not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedMediaType {
    /// The content type sent.
    pub found: String,
}

impl fmt::Display for UnsupportedMediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "content type `{}` is not supported; send application/json",
            self.found
        )
    }
}

impl std::error::Error for UnsupportedMediaType {}

/// The body is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadJson {
    /// Why.
    pub reason: String,
}

impl fmt::Display for BadJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request body must be a JSON object of parameters: {}",
            self.reason
        )
    }
}

impl std::error::Error for BadJson {}

/// The body could not be read in time (slow client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTimeout;

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimeout {}

/// The method's script failed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptFailed(pub ScriptError);

impl fmt::Display for ScriptFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ScriptFailed {}

/// This central node is on standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotActive;

impl fmt::Display for NotActive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this central node is on standby; call the active node")
    }
}

impl std::error::Error for NotActive {}
