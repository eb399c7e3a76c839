/// The API key is missing, unknown or disabled (deliberately not saying which).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("missing, unknown or disabled API key")]
pub struct Unauthorized;

/// The key is valid but not approved for the target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this API key is not approved for `{target}`")]
pub struct Forbidden {
    /// The target that was refused.
    pub target: String,
}

/// The target (method) does not exist. Reported only to authenticated callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no method named `{target}`")]
pub struct UnknownTarget {
    /// The target asked for.
    pub target: String,
}
