//! Typed definitions: what the configuration means once it has been checked. These are
//! also the definitions central deploys to sites (serialized as JSON), so every field
//! is plain data: script sources are carried inline, secrets as references.

use super::secret::SecretRef;
use crate::pace::Pace;
use crate::retry::RetryPolicy;
use crate::types::{ParamDef, Type};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The central node (`[central]`).
#[derive(Debug, Clone, PartialEq)]
pub struct CentralConfig {
    /// Address of the Inbound API.
    pub listen: SocketAddr,
    /// Where the failure log and other central state live (absolute).
    pub data_dir: PathBuf,
    /// Largest accepted request body in bytes.
    pub max_body: u64,
    /// Threads of the API-script pool.
    pub script_threads: usize,
    /// Calls that may wait for a script thread before the API answers 503 `OVERLOADED`.
    pub script_queue: usize,
    /// Protects `/admin/*`; without it the admin endpoints are disabled.
    pub admin_token: Option<SecretRef>,
    /// Budget for connecting to a site node before trying the next one.
    pub site_connect_timeout: Duration,
}

/// One site (`[sites.NAME]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    /// Address of the site's cluster endpoint.
    pub listen: SocketAddr,
    /// Addresses central tries, in order (active first, then standby).
    pub nodes: Vec<String>,
    /// Where the site keeps its deployment, attributes and store-and-forward (absolute).
    pub data_dir: PathBuf,
    /// Shared secret between central and the site.
    pub token: SecretRef,
    /// Threads of the site's script pool.
    pub script_threads: usize,
    /// Script runs that may wait for a thread before new calls are refused.
    pub script_queue: usize,
    /// Default deadline of instance, alarm and shared script runs.
    pub script_timeout: Duration,
    /// Below this much free disk, store-and-forward refuses new messages.
    pub min_free_disk: u64,
    /// TLS on the cluster link (SPEC §7): the site serves with `cert`/`key`, central
    /// verifies it against `ca`. `None`: plain HTTP (`check` warns off loopback).
    pub tls: Option<ClusterTls>,
    /// The named nodes of a pair (SPEC §8), in the order central tries them; empty in
    /// the single-node form. `listen` and `data_dir` above are the first node's.
    pub pair: Vec<NodeDef>,
    /// The pair's witness (votes and keeps the log, never active).
    pub witness: Option<NodeDef>,
}

impl SiteConfig {
    /// The node called `name` (a full node or the witness) and whether it is the
    /// witness.
    pub fn node(&self, name: &str) -> Option<(&NodeDef, bool)> {
        self.pair
            .iter()
            .find(|n| n.name == name)
            .map(|n| (n, false))
            .or_else(|| {
                self.witness
                    .as_ref()
                    .filter(|w| w.name == name)
                    .map(|w| (w, true))
            })
    }

    /// The names of every node, full nodes first, then the witness.
    pub fn node_names(&self) -> Vec<&str> {
        self.pair
            .iter()
            .chain(&self.witness)
            .map(|n| n.name.as_str())
            .collect()
    }
}

/// One node of a pair (`nodes = [{ name, listen, data_dir }]`, `witness = {...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDef {
    /// The name `--node` selects.
    pub name: String,
    /// Where its cluster endpoint listens.
    pub listen: SocketAddr,
    /// Its own data (absolute).
    pub data_dir: PathBuf,
}

/// The files of a TLS cluster link (`[sites.NAME] tls = { cert, key, ca }`), absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// The node's certificate chain (PEM).
    pub cert: PathBuf,
    /// The node's private key (PEM).
    pub key: PathBuf,
    /// The CA central verifies the node's certificate against (PEM).
    pub ca: PathBuf,
}

/// An API key (`[api_keys.NAME]`): only the hash of the key is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyDef {
    /// `sha256:` followed by 64 lowercase hex digits.
    pub hash: String,
    /// Disabled keys are refused with 401.
    pub enabled: bool,
}

/// A script file, loaded when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptSource {
    /// The file's path (the config's directory joined with the path written there);
    /// script errors are reported as `path:line:col`.
    pub path: String,
    /// The script text.
    pub source: String,
}

/// An inbound API method (`[api_methods.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiMethodDef {
    /// Implementation script, run on central.
    pub script: ScriptSource,
    /// Maximum execution time, routed calls included.
    #[serde(with = "crate::units::duration")]
    pub timeout: Duration,
    /// Names of the API keys allowed to call the method.
    pub approved_keys: Vec<String>,
    /// Declared parameters.
    pub params: Vec<ParamDef>,
    /// Declared return type; `None` accepts any JSON value.
    pub returns: Option<Type>,
}

/// An alarm of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmDef {
    /// Alarm name.
    pub name: String,
    /// Numeric attribute watched.
    pub attribute: String,
    /// Active while the attribute is above this value.
    pub above: Option<f64>,
    /// Active while the attribute is below this value.
    pub below: Option<f64>,
    /// Script run once per transition into the active state.
    pub on_trigger: Option<ScriptSource>,
}

/// A template (`[templates.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateDef {
    /// Typed attributes.
    pub attributes: BTreeMap<String, Type>,
    /// Instance scripts by name.
    pub scripts: BTreeMap<String, ScriptSource>,
    /// Alarms.
    pub alarms: Vec<AlarmDef>,
}

/// An instance (`[instances.CODE]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceDef {
    /// Template name.
    pub template: String,
    /// Site the instance lives at.
    pub site: String,
    /// Initial attribute values (checked against the template's types).
    pub values: BTreeMap<String, serde_json::Value>,
}

/// HTTP methods an external-system method may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// Parameters in the query string.
    Get,
    /// Parameters as a JSON body.
    Post,
    /// Parameters as a JSON body.
    Put,
    /// Parameters in the query string.
    Delete,
    /// Parameters as a JSON body.
    Patch,
}

impl HttpMethod {
    /// Whether parameters travel in the query string (GET, DELETE; `CD-ESG-2`).
    pub fn params_in_query(self) -> bool {
        matches!(self, HttpMethod::Get | HttpMethod::Delete)
    }

    /// The method as an `http` type.
    pub fn as_http(self) -> http::Method {
        match self {
            HttpMethod::Get => http::Method::GET,
            HttpMethod::Post => http::Method::POST,
            HttpMethod::Put => http::Method::PUT,
            HttpMethod::Delete => http::Method::DELETE,
            HttpMethod::Patch => http::Method::PATCH,
        }
    }
}

/// Credentials attached to every request to an external system (`CD-ESG-3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    /// No credentials.
    None,
    /// An API key in a header.
    ApiKey {
        /// Header name.
        #[serde(default = "default_api_key_header")]
        header: String,
        /// The key.
        key: SecretRef,
    },
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretRef,
    },
    /// A static bearer token.
    Bearer {
        /// The token.
        token: SecretRef,
    },
}

fn default_api_key_header() -> String {
    "X-API-Key".into()
}

/// A method of an external system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalMethodDef {
    /// HTTP method.
    pub http_method: HttpMethod,
    /// Path appended to the system's `base_url`.
    pub path: String,
    /// Declared parameters.
    pub params: Vec<ParamDef>,
    /// Declared response type; `None` accepts any JSON (or an empty body).
    pub returns: Option<Type>,
}

/// An external system (`[external_systems.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalSystemDef {
    /// Base URL; method paths are appended.
    pub base_url: String,
    /// Credentials.
    pub auth: HttpAuth,
    /// Per-request timeout (`CD-ESG-4`).
    #[serde(with = "crate::units::duration")]
    pub timeout: Duration,
    /// Store-and-forward retry settings for `CachedCall`.
    pub retry: RetryPolicy,
    /// How fast the forwarder may drain buffered calls (`max_rate`, `max_in_flight`).
    #[serde(default)]
    pub pace: Pace,
    /// Methods by name.
    pub methods: BTreeMap<String, ExternalMethodDef>,
}

/// Where a database connection points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseTarget {
    /// `mssql://…`, `postgres://…` or `sqlite://path`.
    Url(SecretRef),
    /// An ADO.NET connection string for MS SQL Server (`Server=tcp:…;…`).
    Ado(SecretRef),
}

/// A named database connection (`[databases.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseDef {
    /// Connection target.
    pub target: DatabaseTarget,
    /// Pool size (`CD-ESG-8`).
    pub max_connections: u32,
    /// Connect/query timeout.
    #[serde(with = "crate::units::duration")]
    pub timeout: Duration,
    /// Store-and-forward retry settings for `CachedWrite` (`[5.5-2-rt]`).
    pub retry: RetryPolicy,
    /// How fast the forwarder may drain buffered writes (`max_rate`, `max_in_flight`).
    #[serde(default)]
    pub pace: Pace,
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text.
    None,
    /// Upgrade with STARTTLS (required).
    Starttls,
    /// Implicit TLS from the first byte.
    Tls,
}

/// SMTP authentication (`KDD-ext-4`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SmtpAuth {
    /// No authentication.
    None,
    /// AUTH PLAIN / LOGIN.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretRef,
    },
    /// OAuth2 client credentials (Microsoft 365), sent with XOAUTH2.
    Oauth2 {
        /// Tenant id.
        tenant: String,
        /// Application (client) id.
        client_id: String,
        /// Client secret.
        client_secret: SecretRef,
        /// Token authority; the token endpoint is `{authority}/{tenant}/oauth2/v2.0/token`.
        #[serde(default = "default_authority")]
        authority: String,
        /// Requested scope.
        #[serde(default = "default_scope")]
        scope: String,
    },
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}

fn default_scope() -> String {
    "https://outlook.office365.com/.default".into()
}

/// SMTP settings (`[smtp]`), deployed to every site (`[6.2-2]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmtpDef {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Transport security.
    pub tls: TlsMode,
    /// Sender address, also placed in `To:` (`CD-NS-1`).
    pub from: String,
    /// Authentication.
    pub auth: SmtpAuth,
    /// Connection and command timeout (`CD-NS-7`).
    #[serde(with = "crate::units::duration")]
    pub timeout: Duration,
    /// Pool size (`CD-NS-7`).
    pub max_connections: u32,
    /// Store-and-forward retry settings (`[6.4-2]`).
    pub retry: RetryPolicy,
    /// How fast the forwarder may drain buffered e-mails, all lists together
    /// (`max_rate`, `max_in_flight`).
    #[serde(default)]
    pub pace: Pace,
    /// Extra PEM certificate(s) to trust (a private CA, or a test certificate), read
    /// from the config's `ca_file` when the configuration is loaded.
    pub ca_pem: Option<String>,
}

/// A notification list (`[notification_lists.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationListDef {
    /// E-mail addresses, duplicates kept (`CD-NS-2`).
    pub recipients: Vec<String>,
}
