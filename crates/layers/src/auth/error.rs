use std::fmt;

/// The API key is missing, unknown or disabled (deliberately not saying which).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unauthorized;

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("missing, unknown or disabled API key")
    }
}

impl std::error::Error for Unauthorized {}

/// The key is valid but not approved for the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The target that was refused.
    pub target: String,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this API key is not approved for `{}`", self.target)
    }
}

impl std::error::Error for Forbidden {}

/// The target (method) does not exist. Reported only to authenticated callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTarget {
    /// The target asked for.
    pub target: String,
}

impl fmt::Display for UnknownTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no method named `{}`", self.target)
    }
}

impl std::error::Error for UnknownTarget {}
