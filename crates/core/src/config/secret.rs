//! Secrets in the configuration: a literal string (which `check` warns about),
//! `{ env = "VAR" }` or `{ file = "path" }`. Resolved values are wrapped in [`Secret`],
//! whose `Debug` never prints them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret comes from. Definitions carry the reference, not the value: a
/// deployment sent to a site names `ERP_KEY`, and the site reads its own environment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SecretRef {
    /// Written in the config file itself (fine for trying things out; `check` warns).
    Literal(String),
    /// Read from an environment variable of the process that uses it.
    Env {
        /// Variable name.
        env: String,
    },
    /// Read from a file (trailing newline trimmed), relative to the config file.
    File {
        /// Path, relative to the config file's directory.
        file: PathBuf,
    },
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Literal(_) => f.write_str("SecretRef::Literal(***)"),
            SecretRef::Env { env } => write!(f, "SecretRef::Env({env})"),
            SecretRef::File { file } => write!(f, "SecretRef::File({})", file.display()),
        }
    }
}

impl SecretRef {
    /// Whether the secret is written in the config file.
    pub fn is_literal(&self) -> bool {
        matches!(self, SecretRef::Literal(_))
    }

    /// Reads the secret. `base_dir` is the directory of the config file. The error names
    /// where the secret should have come from, never its value.
    pub fn resolve(&self, base_dir: &Path) -> Result<Secret, String> {
        match self {
            SecretRef::Literal(value) => Ok(Secret(value.clone())),
            SecretRef::Env { env } => std::env::var(env)
                .map(Secret)
                .map_err(|_| format!("environment variable `{env}` is not set")),
            SecretRef::File { file } => {
                // Only below the config file's directory: a deployment (which carries
                // secret references to the site) must not be able to name `/etc/shadow`
                // or `../../somewhere` as a password.
                let escapes = file.is_absolute()
                    || file.components().any(|c| {
                        !matches!(
                            c,
                            std::path::Component::Normal(_) | std::path::Component::CurDir
                        )
                    });
                if escapes {
                    return Err(format!(
                        "secret file `{}` must be a relative path inside the config file's directory (no absolute path, no `..`)",
                        file.display()
                    ));
                }
                let path = base_dir.join(file);
                std::fs::read_to_string(&path)
                    .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                    .map_err(|e| format!("cannot read secret file `{}`: {e}", path.display()))
            }
        }
    }
}

/// The shortest bearer token switchyard accepts (`sites.*.token`, `central.admin_token`).
pub const MIN_TOKEN_LEN: usize = 12;

impl SecretRef {
    /// Reads a bearer token and checks that it can protect anything (SPEC §7: an empty
    /// token is a config error, never "no auth").
    pub fn resolve_token(&self, base_dir: &Path) -> Result<Secret, String> {
        let token = self.resolve(base_dir)?;
        check_token(token.expose())?;
        Ok(token)
    }
}

/// Why a bearer token is unusable: empty (or blank), or shorter than
/// [`MIN_TOKEN_LEN`] characters. The message never contains the value.
pub fn check_token(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!(
            "the token is empty: a bearer token must be at least {MIN_TOKEN_LEN} characters"
        ));
    }
    let length = value.chars().count();
    if length < MIN_TOKEN_LEN {
        return Err(format!(
            "the token is too short ({length} characters): a bearer token must be at least {MIN_TOKEN_LEN}"
        ));
    }
    Ok(())
}

/// A resolved secret value. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_resolve_only_inside_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/pw"), "s3cret").unwrap();
        let inside = SecretRef::File {
            file: "secrets/pw".into(),
        };
        assert_eq!(inside.resolve(dir.path()).unwrap().expose(), "s3cret");
        for outside in ["/etc/shadow", "../pw", "secrets/../../pw", "/etc/hostname"] {
            let err = SecretRef::File {
                file: outside.into(),
            }
            .resolve(dir.path())
            .unwrap_err();
            assert!(
                err.contains("must be a relative path inside"),
                "{outside}: {err}"
            );
        }
    }

    #[test]
    fn empty_and_short_tokens_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "   ", "short-tok"] {
            let err = SecretRef::Literal(bad.into())
                .resolve_token(dir.path())
                .unwrap_err();
            assert!(
                err.contains("at least 12 characters") || err.contains("at least 12"),
                "{err}"
            );
            if !bad.trim().is_empty() {
                assert!(!err.contains(bad), "{err}");
            }
        }
        assert!(
            SecretRef::Literal("twelve-chars".into())
                .resolve_token(dir.path())
                .is_ok()
        );
    }

    #[test]
    fn resolves_each_kind_and_never_prints_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let file = SecretRef::File { file: "pw".into() };
        assert_eq!(file.resolve(dir.path()).unwrap().expose(), "s3cret");
        let literal = SecretRef::Literal("hunter2".into());
        assert_eq!(literal.resolve(dir.path()).unwrap().expose(), "hunter2");
        assert!(!format!("{literal:?}").contains("hunter2"));
        assert!(!format!("{:?}", literal.resolve(dir.path()).unwrap()).contains("hunter2"));
        let missing = SecretRef::Env {
            env: "SWITCHYARD_TEST_SURELY_UNSET".into(),
        };
        assert_eq!(
            missing.resolve(dir.path()).unwrap_err(),
            "environment variable `SWITCHYARD_TEST_SURELY_UNSET` is not set"
        );
    }
}
