//! The configuration file (`switchyard.toml`, SPEC §2): typed definitions and a loader
//! that reports *every* problem it finds, each with `file:line:col`.
//!
//! ```no_run
//! let config = switchyard_core::config::Config::load("switchyard.toml".as_ref())
//!     .unwrap_or_else(|errors| { eprintln!("{errors}"); std::process::exit(1) });
//! println!("{} site(s)", config.sites.len());
//! ```

mod defs;
mod load;
mod secret;

pub use defs::*;
pub use secret::{MIN_TOKEN_LEN, Secret, SecretRef, check_token};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// The directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// `[central]`.
    pub central: CentralConfig,
    /// `[sites.*]`.
    pub sites: BTreeMap<String, SiteConfig>,
    /// `[api_keys.*]`.
    pub api_keys: BTreeMap<String, ApiKeyDef>,
    /// `[api_methods.*]`.
    pub api_methods: BTreeMap<String, ApiMethodDef>,
    /// `[templates.*]`.
    pub templates: BTreeMap<String, TemplateDef>,
    /// `[instances.*]`.
    pub instances: BTreeMap<String, InstanceDef>,
    /// `[shared_scripts]`.
    pub shared_scripts: BTreeMap<String, ScriptSource>,
    /// `[external_systems.*]`.
    pub external_systems: BTreeMap<String, ExternalSystemDef>,
    /// `[databases.*]`.
    pub databases: BTreeMap<String, DatabaseDef>,
    /// `[smtp]`.
    pub smtp: Option<SmtpDef>,
    /// `[notification_lists.*]`.
    pub notification_lists: BTreeMap<String, NotificationListDef>,
    /// Things that work but deserve attention (literal secrets, unknown approved keys).
    pub warnings: Vec<ConfigError>,
}

/// One problem in the configuration, at a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the problem is in (the config file or a script).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads and checks a configuration file; script files it names are read too.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = read_config_text(path)?;
        Config::parse(&text, path)
    }

    /// Loads what can be loaded and reports every problem: the configuration holds each
    /// entry that checked out. `Err` only when the file cannot be read.
    pub fn load_lenient(path: &Path) -> Result<(Config, Vec<ConfigError>), ConfigErrors> {
        let text = read_config_text(path)?;
        Ok(load::load_lenient(&text, path))
    }

    /// Checks configuration text as if it had been read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        load::load(text, path)
    }

    /// Resolves a path written in the config (relative to its directory).
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The site an instance lives at.
    pub fn site_of(&self, instance: &str) -> Option<&str> {
        self.instances.get(instance).map(|i| i.site.as_str())
    }
}

/// The file's text, or the one error saying why it cannot be read.
fn read_config_text(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the configuration: {e}"),
        }])
    })
}
