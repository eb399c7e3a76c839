//! The error model every outbound surface shares: a [`Failure`] is either
//! [`Transient`](FailureClass::Transient) (worth retrying: store-and-forward takes it) or
//! [`Permanent`](FailureClass::Permanent) (retrying cannot help: it goes back to the
//! script). Scripts see it as the map `#{class, code, status, message}` (SPEC §4).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    /// The peer may accept the same request later (connection refused, timeout, HTTP
    /// 408/429/5xx, SMTP 4xx, database unavailable or deadlocked).
    Transient,
    /// The same request will fail again (HTTP 4xx, SMTP 5xx, SQL syntax or constraint
    /// errors, responses that do not match their definition).
    Permanent,
}

impl FailureClass {
    /// `"transient"` or `"permanent"`, as scripts see it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
        }
    }
}

/// Machine-readable failure codes (the `code` of a [`Failure`]). Kept as constants so
/// that producers and the classifiers that read them cannot drift apart.
pub mod codes {
    /// The peer could not be reached (refused, reset, DNS).
    pub const CONNECTION: &str = "CONNECTION";
    /// The peer did not answer in time, or the caller's deadline ran out.
    pub const TIMEOUT: &str = "TIMEOUT";
    /// The peer answered with an HTTP status outside 2xx.
    pub const HTTP_STATUS: &str = "HTTP_STATUS";
    /// The peer's response could not be decoded.
    pub const BAD_RESPONSE: &str = "BAD_RESPONSE";
    /// The peer's response does not match the declared return type.
    pub const RETURN_MISMATCH: &str = "RETURN_MISMATCH";
    /// Call parameters do not match their definition.
    pub const INVALID_PARAMS: &str = "INVALID_PARAMS";
    /// A named definition (system, method, database, list, instance, script…) does not exist.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// A value of the wrong type for an attribute.
    pub const TYPE_MISMATCH: &str = "TYPE_MISMATCH";
    /// An SMTP server refused or failed the message.
    pub const SMTP: &str = "SMTP";
    /// A database error.
    pub const DATABASE: &str = "DATABASE";
    /// Credentials were refused (OAuth2 token endpoint, SMTP AUTH, HTTP 401).
    pub const AUTH: &str = "AUTH";
    /// No node of a site answered (`Route.To`).
    pub const SITE_UNREACHABLE: &str = "SITE_UNREACHABLE";
    /// Store-and-forward refused a new message (disk nearly full, storage error).
    pub const BUFFER_REFUSED: &str = "BUFFER_REFUSED";
    /// A script failed (uncaught error, limit exceeded).
    pub const SCRIPT_ERROR: &str = "SCRIPT_ERROR";
    /// The script pool is saturated.
    pub const OVERLOADED: &str = "OVERLOADED";
    /// An operation that is not allowed where it was called.
    pub const NOT_ALLOWED: &str = "NOT_ALLOWED";

    // The HTTP error contract (SPEC §3 and the cluster/admin endpoints): the `code` of
    // an `{error, code}` body.

    /// Missing, unknown or disabled API key; missing or wrong bearer token (401).
    pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
    /// No such API method (404).
    pub const METHOD_NOT_FOUND: &str = "METHOD_NOT_FOUND";
    /// The key is not approved for the method (403).
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// Anything but POST on `/api/…` (405).
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    /// The body is over `max_body` (413).
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    /// The body is not JSON (415).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    /// The body is not a JSON object (400).
    pub const BAD_JSON: &str = "BAD_JSON";
    /// The body did not arrive in time (408).
    pub const REQUEST_TIMEOUT: &str = "REQUEST_TIMEOUT";
    /// A request to an operator or cluster endpoint is malformed (400).
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    /// This node is on standby (503).
    pub const NOT_ACTIVE: &str = "NOT_ACTIVE";
    /// `/admin/*` without `central.admin_token` configured (403).
    pub const ADMIN_DISABLED: &str = "ADMIN_DISABLED";
    /// A reload found an invalid configuration (400).
    pub const CONFIG_INVALID: &str = "CONFIG_INVALID";
    /// A site has no deployment yet (503).
    pub const NO_DEPLOYMENT: &str = "NO_DEPLOYMENT";
    /// A deployment did not compile (422).
    pub const DEPLOYMENT_REJECTED: &str = "DEPLOYMENT_REJECTED";
    /// Something on this node failed (500).
    pub const INTERNAL: &str = "INTERNAL";
}

/// A classified failure of an outbound call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// Transient or permanent.
    pub class: FailureClass,
    /// Machine-readable code, one of [`codes`].
    pub code: String,
    /// The peer's status (HTTP status, SMTP reply code) when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Human-readable description, safe to show to a script author (no secrets).
    pub message: String,
    /// How long the peer asked us to wait (`Retry-After`), when it did.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::units::opt_millis"
    )]
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure worth retrying.
    pub fn transient(code: &str, message: impl Into<String>) -> Self {
        Failure {
            class: FailureClass::Transient,
            code: code.into(),
            status: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(code: &str, message: impl Into<String>) -> Self {
        Failure {
            class: FailureClass::Permanent,
            code: code.into(),
            status: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Sets the peer status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the peer's requested back-off.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Prefixes the message with context (`"ERP.GetOrder: "`).
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Whether store-and-forward should keep the request.
    pub fn is_transient(&self) -> bool {
        self.class == FailureClass::Transient
    }

    /// Finds a `Failure` in an error's cause chain (layers box their errors; classification
    /// walks the chain instead of relying on the order of layers).
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Failure> {
        let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            if let Some(failure) = e.downcast_ref::<Failure>() {
                return Some(failure);
            }
            current = e.source();
        }
        None
    }
}
