//! The loader: parses the TOML once (recovering from syntax errors), deserializes every
//! section entry on its own so that one bad entry does not hide the others, then checks
//! what serde cannot (references between sections, script files, value types).

use super::*;
use crate::pace::Pace;
use crate::retry::RetryPolicy;
use crate::types::{ParamDef, Strictness, Type};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A humantime duration in the config.
#[derive(Debug, Clone, Copy)]
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::units::duration::deserialize(d).map(HumanDuration)
    }
}

/// A byte size in the config.
#[derive(Debug, Clone, Copy)]
struct ByteSize(u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::units::bytes::deserialize(d).map(ByteSize)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCentral {
    listen: Option<SocketAddr>,
    data_dir: Option<String>,
    max_body: Option<ByteSize>,
    script_threads: Option<usize>,
    script_queue: Option<usize>,
    admin_token: Option<Spanned<SecretRef>>,
    site_connect_timeout: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    listen: Option<SocketAddr>,
    nodes: Option<Vec<RawNodeEntry>>,
    witness: Option<RawNode>,
    data_dir: Option<String>,
    token: Option<Spanned<SecretRef>>,
    script_threads: Option<usize>,
    script_queue: Option<usize>,
    script_timeout: Option<HumanDuration>,
    min_free_disk: Option<ByteSize>,
    tls: Option<RawClusterTls>,
}

/// One entry of `nodes`: an address (single-node form) or a named node (a pair).
enum RawNodeEntry {
    Address(String),
    Named(RawNode),
}

impl<'de> Deserialize<'de> for RawNodeEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = RawNodeEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address \"host:port\" or a node { name, listen, data_dir }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawNodeEntry, E> {
                Ok(RawNodeEntry::Address(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawNodeEntry, A::Error> {
                RawNode::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawNodeEntry::Named)
            }
        }
        d.deserialize_any(Entry)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    listen: SocketAddr,
    data_dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterTls {
    cert: String,
    key: String,
    ca: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    hash: Spanned<String>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiMethod {
    script: Spanned<String>,
    timeout: Option<HumanDuration>,
    #[serde(default)]
    approved_keys: Vec<Spanned<String>>,
    params: Option<Spanned<Vec<ParamDef>>>,
    returns: Option<Type>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlarm {
    name: String,
    attribute: Spanned<String>,
    above: Option<f64>,
    below: Option<f64>,
    on_trigger: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    #[serde(default)]
    attributes: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    scripts: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    alarms: Vec<Spanned<RawAlarm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    template: Spanned<String>,
    site: Spanned<String>,
    #[serde(default)]
    values: BTreeMap<Spanned<String>, Spanned<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExternalMethod {
    http_method: Option<HttpMethod>,
    #[serde(default)]
    path: String,
    params: Option<Spanned<Vec<ParamDef>>>,
    returns: Option<Type>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExternalSystem {
    base_url: Spanned<String>,
    auth: Option<Spanned<HttpAuth>>,
    timeout: Option<HumanDuration>,
    retry: Option<RetryPolicy>,
    max_rate: Option<Spanned<toml::Value>>,
    max_in_flight: Option<Spanned<toml::Value>>,
    #[serde(default)]
    methods: BTreeMap<String, RawExternalMethod>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<Spanned<SecretRef>>,
    ado: Option<Spanned<SecretRef>>,
    max_connections: Option<u32>,
    timeout: Option<HumanDuration>,
    retry: Option<RetryPolicy>,
    max_rate: Option<Spanned<toml::Value>>,
    max_in_flight: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    tls: Option<TlsMode>,
    from: Spanned<String>,
    auth: Option<Spanned<SmtpAuth>>,
    timeout: Option<HumanDuration>,
    max_connections: Option<u32>,
    retry: Option<RetryPolicy>,
    max_rate: Option<Spanned<toml::Value>>,
    max_in_flight: Option<Spanned<toml::Value>>,
    ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    recipients: Vec<Spanned<String>>,
}

const SECTIONS: &[&str] = &[
    "central",
    "sites",
    "api_keys",
    "api_methods",
    "templates",
    "instances",
    "shared_scripts",
    "external_systems",
    "databases",
    "smtp",
    "notification_lists",
];

struct Loader<'t> {
    text: &'t str,
    file: PathBuf,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// Attributes whose type did not parse (already reported): values for them are not
    /// reported again as unknown.
    broken_attributes: BTreeSet<(String, String)>,
}

pub(super) fn load(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let (config, errors) = load_lenient(text, path);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Loads what can be loaded and reports every problem: the configuration holds every
/// entry that checked out (so `check` can still compile its scripts).
pub(super) fn load_lenient(text: &str, path: &Path) -> (Config, Vec<ConfigError>) {
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut loader = Loader {
        text,
        file: path.to_path_buf(),
        base_dir,
        errors: Vec::new(),
        warnings: Vec::new(),
        broken_attributes: BTreeSet::new(),
    };
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    for e in syntax_errors {
        let span = e.span().unwrap_or(0..0);
        loader.error(span, e.message().trim().to_string());
    }
    let root = root.into_inner();

    let mut sections: BTreeMap<&str, Spanned<DeValue<'_>>> = BTreeMap::new();
    for (key, value) in root {
        match SECTIONS.iter().find(|s| **s == key.get_ref().as_ref()) {
            Some(name) => {
                sections.insert(name, value);
            }
            None => loader.error(
                key.span(),
                format!(
                    "unknown section `{}`; expected one of: {}",
                    key.get_ref(),
                    SECTIONS.join(", ")
                ),
            ),
        }
    }

    let central = loader.central(sections.remove("central"));
    let sites = loader.map_section(
        sections.remove("sites"),
        "sites",
        |l, name, span, raw: RawSite| l.site(name, span, raw),
    );
    let api_keys = loader.map_section(
        sections.remove("api_keys"),
        "api_keys",
        |l, name, _, raw: RawApiKey| l.api_key(name, raw),
    );
    let shared_scripts = loader.map_section(
        sections.remove("shared_scripts"),
        "shared_scripts",
        |l, _, _, raw: Spanned<String>| l.script(&raw),
    );
    let api_methods = loader.map_section(
        sections.remove("api_methods"),
        "api_methods",
        |l, name, _, raw: RawApiMethod| l.api_method(name, raw, &api_keys),
    );
    let templates = loader.map_section(
        sections.remove("templates"),
        "templates",
        |l, name, _, raw: RawTemplate| l.template(name, raw),
    );
    let instances = loader.map_section(
        sections.remove("instances"),
        "instances",
        |l, code, _, raw: RawInstance| l.instance(code, raw, &templates, &sites),
    );
    let external_systems = loader.map_section(
        sections.remove("external_systems"),
        "external_systems",
        |l, name, _, raw: RawExternalSystem| l.external_system(name, raw),
    );
    let databases = loader.map_section(
        sections.remove("databases"),
        "databases",
        |l, name, span, raw: RawDatabase| l.database(name, span, raw),
    );
    let smtp = sections.remove("smtp").and_then(|value| {
        let raw: RawSmtp = loader.de(value, "smtp")?;
        loader.smtp(raw)
    });
    let notification_lists = loader.map_section(
        sections.remove("notification_lists"),
        "notification_lists",
        |l, name, _, raw: RawList| l.list(name, raw),
    );

    loader
        .errors
        .sort_by_key(|e| (e.file.clone(), e.line, e.column));
    let config = Config {
        source: loader.file,
        base_dir: loader.base_dir,
        central,
        sites,
        api_keys,
        api_methods,
        templates,
        instances,
        shared_scripts,
        external_systems,
        databases,
        smtp,
        notification_lists,
        warnings: loader.warnings,
    };
    (config, loader.errors)
}

impl Loader<'_> {
    fn location(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn at(&self, span: Range<usize>, message: String) -> ConfigError {
        let (line, column) = self.location(span.start);
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            message,
        }
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let e = self.at(span, message.into());
        self.errors.push(e);
    }

    fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let w = self.at(span, message.into());
        self.warnings.push(w);
    }

    /// Deserializes one entry; on failure records the error (with its own location)
    /// prefixed by `what`.
    fn de<T: DeserializeOwned>(&mut self, value: Spanned<DeValue<'_>>, what: &str) -> Option<T> {
        let fallback = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or(fallback);
                self.error(span, format!("{what}: {}", e.message().trim()));
                None
            }
        }
    }

    /// Deserializes every entry of a `[section.NAME]` table and converts it.
    fn map_section<R: DeserializeOwned, T>(
        &mut self,
        section: Option<Spanned<DeValue<'_>>>,
        section_name: &str,
        mut convert: impl FnMut(&mut Self, &str, Range<usize>, R) -> Option<T>,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        let Some(section) = section else { return out };
        let span = section.span();
        let DeValue::Table(table) = section.into_inner() else {
            self.error(span, format!("`{section_name}` must be a table"));
            return out;
        };
        for (key, value) in table {
            let name = key.get_ref().to_string();
            let what = format!("{section_name}.{name}");
            if let Some(raw) = self.de::<R>(value, &what)
                && let Some(def) = convert(self, &name, key.span(), raw)
            {
                out.insert(name, def);
            }
        }
        out
    }

    fn dir(&self, path: Option<String>, default: &str) -> PathBuf {
        let path = path.unwrap_or_else(|| default.to_string());
        let joined = self.base_dir.join(path);
        std::path::absolute(&joined).unwrap_or(joined)
    }

    fn secret_warning(&mut self, secret: &Spanned<SecretRef>, what: &str) {
        if secret.get_ref().is_literal() {
            self.warn(secret.span(), format!("{what} is written in the config file; prefer {{ env = \"…\" }} or {{ file = \"…\" }}"));
        }
    }

    /// A bearer token that is empty or too short is a config error (SPEC §7). Literals
    /// are checked here; `env`/`file` tokens too when they can be read now (at `check`
    /// on another machine they may not be — the node checks again when it starts).
    fn token_check(&mut self, token: &Spanned<SecretRef>, what: &str) {
        if let Ok(value) = token.get_ref().resolve(&self.base_dir)
            && let Err(reason) = super::secret::check_token(value.expose())
        {
            self.error(token.span(), format!("{what}: {reason}"));
        }
    }

    fn central(&mut self, value: Option<Spanned<DeValue<'_>>>) -> CentralConfig {
        let raw = value.and_then(|v| self.de::<RawCentral>(v, "central"));
        let mut central = CentralConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: self.dir(None, "data/central"),
            max_body: 1 << 20,
            script_threads: 16,
            script_queue: 64,
            admin_token: None,
            site_connect_timeout: Duration::from_secs(2),
        };
        if let Some(raw) = raw {
            if let Some(token) = &raw.admin_token {
                self.secret_warning(token, "central.admin_token");
                self.token_check(token, "central.admin_token");
            }
            central.listen = raw.listen.unwrap_or(central.listen);
            central.data_dir = self.dir(raw.data_dir, "data/central");
            central.max_body = raw.max_body.map_or(central.max_body, |b| b.0);
            central.script_threads = raw.script_threads.unwrap_or(central.script_threads).max(1);
            central.script_queue = raw.script_queue.unwrap_or(central.script_threads * 4);
            central.admin_token = raw.admin_token.map(Spanned::into_inner);
            central.site_connect_timeout = raw
                .site_connect_timeout
                .map_or(central.site_connect_timeout, |d| d.0);
        }
        central
    }

    fn site(&mut self, name: &str, span: Range<usize>, raw: RawSite) -> Option<SiteConfig> {
        let (listen, addresses, pair, witness) = self.site_nodes(name, &span, &raw)?;
        let token = match raw.token {
            Some(token) => {
                self.secret_warning(&token, &format!("sites.{name}.token"));
                self.token_check(&token, &format!("sites.{name}.token"));
                token.into_inner()
            }
            None => {
                self.error(span, format!("sites.{name}: `token` is required (the shared secret central uses to call the site)"));
                return None;
            }
        };
        let threads = raw.script_threads.unwrap_or(16).max(1);
        let tls = raw.tls.map(|t| ClusterTls {
            cert: self.dir(Some(t.cert), ""),
            key: self.dir(Some(t.key), ""),
            ca: self.dir(Some(t.ca), ""),
        });
        match &tls {
            Some(files) => {
                for (what, path) in [
                    ("cert", &files.cert),
                    ("key", &files.key),
                    ("ca", &files.ca),
                ] {
                    // Each machine needs only its part (the site its cert and key,
                    // central the CA): a warning here; the process that needs the file
                    // fails at start, naming it.
                    if !path.is_file() {
                        self.warn(
                            span.clone(),
                            format!(
                                "sites.{name}.tls.{what}: no file at {} on this machine",
                                path.display()
                            ),
                        );
                    }
                }
            }
            None => {
                let off_loopback = !listen.ip().is_loopback()
                    || addresses.iter().any(|n| {
                        n.parse::<SocketAddr>()
                            .map_or(true, |a| !a.ip().is_loopback())
                    })
                    || witness.iter().any(|w| !w.listen.ip().is_loopback());
                if off_loopback {
                    self.warn(span.clone(), format!("sites.{name}: the cluster link leaves this machine without TLS (the site token and deployments travel in clear); set sites.{name}.tls = {{ cert, key, ca }}"));
                }
            }
        }
        let data_dir = match pair.first() {
            Some(first) => first.data_dir.clone(),
            None => self.dir(raw.data_dir, &format!("data/{name}")),
        };
        Some(SiteConfig {
            listen,
            nodes: addresses,
            data_dir,
            token,
            script_threads: threads,
            script_queue: raw.script_queue.unwrap_or(threads * 64),
            script_timeout: raw.script_timeout.map_or(Duration::from_secs(30), |d| d.0),
            min_free_disk: raw.min_free_disk.map_or(512 << 20, |b| b.0),
            tls,
            pair,
            witness,
        })
    }

    /// A site's nodes: the single-node form (`listen`, optional `nodes` addresses) or a
    /// pair (named `nodes`, optional `witness`, SPEC §8). Returns the address the first
    /// node listens on, the addresses central tries in order, the named full nodes and
    /// the witness.
    #[allow(clippy::type_complexity)]
    fn site_nodes(
        &mut self,
        name: &str,
        span: &Range<usize>,
        raw: &RawSite,
    ) -> Option<(SocketAddr, Vec<String>, Vec<NodeDef>, Option<NodeDef>)> {
        let entries = raw.nodes.as_deref().unwrap_or_default();
        let named: Vec<&RawNode> = entries
            .iter()
            .filter_map(|e| match e {
                RawNodeEntry::Named(n) => Some(n),
                RawNodeEntry::Address(_) => None,
            })
            .collect();
        if named.is_empty() {
            if raw.witness.is_some() {
                self.error(span.clone(), format!("sites.{name}.witness: a witness needs named nodes (nodes = [{{ name, listen, data_dir }}, ...])"));
                return None;
            }
            let Some(listen) = raw.listen else {
                self.error(
                    span.clone(),
                    format!("sites.{name}: `listen` is required (or named `nodes` for a pair)"),
                );
                return None;
            };
            let addresses = entries
                .iter()
                .filter_map(|e| match e {
                    RawNodeEntry::Address(a) => Some(a.clone()),
                    RawNodeEntry::Named(_) => None,
                })
                .collect::<Vec<_>>();
            let addresses = if addresses.is_empty() {
                vec![listen.to_string()]
            } else {
                addresses
            };
            return Some((listen, addresses, Vec::new(), None));
        }
        if named.len() != entries.len() {
            self.error(
                span.clone(),
                format!("sites.{name}.nodes: either addresses or named nodes, not both"),
            );
            return None;
        }
        if raw.listen.is_some() || raw.data_dir.is_some() {
            self.error(span.clone(), format!("sites.{name}: with named nodes, each node has its own `listen` and `data_dir` (remove sites.{name}.listen / data_dir)"));
            return None;
        }
        if named.len() > 2 {
            self.error(span.clone(), format!("sites.{name}.nodes: a pair has at most two full nodes (and a witness), found {}", named.len()));
            return None;
        }
        let node = |this: &mut Self, n: &RawNode| NodeDef {
            name: n.name.clone(),
            listen: n.listen,
            data_dir: this.dir(n.data_dir.clone(), &format!("data/{name}-{}", n.name)),
        };
        let pair: Vec<NodeDef> = named.iter().map(|n| node(self, n)).collect();
        let witness = raw.witness.as_ref().map(|w| node(self, w));
        let all: Vec<&NodeDef> = pair.iter().chain(&witness).collect();
        let mut ok = true;
        for (i, a) in all.iter().enumerate() {
            if a.name.is_empty() {
                self.error(
                    span.clone(),
                    format!("sites.{name}.nodes: a node name must not be empty"),
                );
                ok = false;
            }
            for b in &all[..i] {
                for (what, same) in [
                    ("name", a.name == b.name),
                    ("listen", a.listen == b.listen),
                    ("data_dir", a.data_dir == b.data_dir),
                ] {
                    if same {
                        self.error(
                            span.clone(),
                            format!(
                                "sites.{name}: nodes `{}` and `{}` have the same {what}",
                                b.name, a.name
                            ),
                        );
                        ok = false;
                    }
                }
            }
        }
        if !ok {
            return None;
        }
        if pair.len() == 2 && witness.is_none() {
            self.warn(span.clone(), format!("sites.{name}: a pair without a witness stops when either node is down (two voters need both); add sites.{name}.witness"));
        }
        let addresses = pair.iter().map(|n| n.listen.to_string()).collect();
        Some((pair[0].listen, addresses, pair, witness))
    }

    fn api_key(&mut self, name: &str, raw: RawApiKey) -> Option<ApiKeyDef> {
        let hash = raw.hash.get_ref();
        let valid = hash
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()));
        if !valid {
            self.error(
                raw.hash.span(),
                format!("api_keys.{name}.hash: expected `sha256:` and 64 hex digits (create keys with `switchyard key new {name}`)"),
            );
            return None;
        }
        Some(ApiKeyDef {
            hash: hash.to_ascii_lowercase(),
            enabled: raw.enabled.unwrap_or(true),
        })
    }

    /// Reads a script file named in the config; a missing file is an error at the path.
    fn script(&mut self, path: &Spanned<String>) -> Option<ScriptSource> {
        let full = self.base_dir.join(path.get_ref());
        match read_small_file(&full) {
            Ok(source) => Some(ScriptSource {
                path: full.display().to_string(),
                source,
            }),
            Err(e) => {
                let reason = if e.kind() == std::io::ErrorKind::NotFound {
                    "not found".to_string()
                } else {
                    e.to_string()
                };
                self.error(
                    path.span(),
                    format!("script file `{}`: {reason}", full.display()),
                );
                None
            }
        }
    }

    /// Checks a parameter list for duplicates and unwraps it.
    fn params(&mut self, params: Option<Spanned<Vec<ParamDef>>>, what: &str) -> Vec<ParamDef> {
        let Some(params) = params else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        for p in params.get_ref() {
            if !seen.insert(p.name.as_str()) {
                self.error(
                    params.span(),
                    format!("{what}: parameter `{}` is declared twice", p.name),
                );
            }
        }
        params.into_inner()
    }

    fn api_method(
        &mut self,
        name: &str,
        raw: RawApiMethod,
        keys: &BTreeMap<String, ApiKeyDef>,
    ) -> Option<ApiMethodDef> {
        let params = self.params(raw.params, &format!("api_methods.{name}.params"));
        for key in &raw.approved_keys {
            if !keys.contains_key(key.get_ref()) {
                self.warn(
                    key.span(),
                    format!(
                        "api_methods.{name}.approved_keys: no API key named `{}` (yet)",
                        key.get_ref()
                    ),
                );
            }
        }
        let script = self.script(&raw.script)?;
        Some(ApiMethodDef {
            script,
            timeout: raw.timeout.map_or(Duration::from_secs(30), |d| d.0),
            approved_keys: raw
                .approved_keys
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            params,
            returns: raw.returns,
        })
    }

    fn template(&mut self, name: &str, raw: RawTemplate) -> Option<TemplateDef> {
        let mut attributes = BTreeMap::new();
        for (attribute, text) in &raw.attributes {
            match Type::parse(text.get_ref()) {
                Ok(ty) => {
                    attributes.insert(attribute.clone(), ty);
                }
                Err(e) => {
                    // Point at the character in the type string (after the opening quote).
                    let at = text.span().start
                        + 1
                        + text
                            .get_ref()
                            .char_indices()
                            .nth(e.column - 1)
                            .map_or(0, |(i, _)| i);
                    self.error(
                        at..at,
                        format!("templates.{name}.attributes.{attribute}: {}", e.message),
                    );
                    self.broken_attributes
                        .insert((name.to_string(), attribute.clone()));
                }
            }
        }
        let mut scripts = BTreeMap::new();
        for (script_name, path) in &raw.scripts {
            if let Some(source) = self.script(path) {
                scripts.insert(script_name.clone(), source);
            }
        }
        let mut alarms = Vec::new();
        for alarm in raw.alarms {
            let span = alarm.span();
            let alarm = alarm.into_inner();
            let what = format!("templates.{name}.alarms.{}", alarm.name);
            match attributes.get(alarm.attribute.get_ref()) {
                Some(Type::Integer | Type::Float) => {}
                Some(other) => {
                    self.error(alarm.attribute.span(), format!("{what}: attribute `{}` is {other}; alarms need an Integer or Float attribute", alarm.attribute.get_ref()));
                }
                None => {
                    self.error(
                        alarm.attribute.span(),
                        format!(
                            "{what}: template `{name}` has no attribute `{}`",
                            alarm.attribute.get_ref()
                        ),
                    );
                }
            }
            if alarm.above.is_none() && alarm.below.is_none() {
                self.error(
                    span.clone(),
                    format!("{what}: give `above` or `below` (or both)"),
                );
            }
            let on_trigger = alarm.on_trigger.as_ref().and_then(|path| self.script(path));
            alarms.push(AlarmDef {
                name: alarm.name,
                attribute: alarm.attribute.into_inner(),
                above: alarm.above,
                below: alarm.below,
                on_trigger,
            });
        }
        // Kept even when something in it is wrong: instances that use it are still
        // checked, and the load fails anyway because the errors were recorded.
        Some(TemplateDef {
            attributes,
            scripts,
            alarms,
        })
    }

    fn instance(
        &mut self,
        code: &str,
        raw: RawInstance,
        templates: &BTreeMap<String, TemplateDef>,
        sites: &BTreeMap<String, SiteConfig>,
    ) -> Option<InstanceDef> {
        let mut ok = true;
        if !sites.contains_key(raw.site.get_ref()) {
            ok = false;
            self.error(
                raw.site.span(),
                format!("instances.{code}: unknown site `{}`", raw.site.get_ref()),
            );
        }
        let Some(template) = templates.get(raw.template.get_ref()) else {
            self.error(
                raw.template.span(),
                format!(
                    "instances.{code}: unknown template `{}`",
                    raw.template.get_ref()
                ),
            );
            return None;
        };
        let mut values = BTreeMap::new();
        for (attr, value) in raw.values {
            let broken = (raw.template.get_ref().clone(), attr.get_ref().clone());
            match template.attributes.get(attr.get_ref()) {
                None if self.broken_attributes.contains(&broken) => ok = false,
                None => {
                    ok = false;
                    self.error(
                        attr.span(),
                        format!(
                            "instances.{code}.values: template `{}` has no attribute `{}`",
                            raw.template.get_ref(),
                            attr.get_ref()
                        ),
                    );
                }
                Some(ty) => {
                    if let Err(e) = ty.validate(attr.get_ref(), value.get_ref(), Strictness::Exact)
                    {
                        ok = false;
                        self.error(value.span(), format!("instances.{code}.values.{e}"));
                    } else {
                        values.insert(attr.into_inner(), value.into_inner());
                    }
                }
            }
        }
        ok.then(|| InstanceDef {
            template: raw.template.into_inner(),
            site: raw.site.into_inner(),
            values,
        })
    }

    fn external_system(&mut self, name: &str, raw: RawExternalSystem) -> Option<ExternalSystemDef> {
        let mut ok = true;
        match url::Url::parse(raw.base_url.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => {
                ok = false;
                self.error(raw.base_url.span(), format!("external_systems.{name}.base_url: scheme `{}` is not supported (use http or https)", u.scheme()));
            }
            Err(e) => {
                ok = false;
                self.error(
                    raw.base_url.span(),
                    format!("external_systems.{name}.base_url: {e}"),
                );
            }
        }
        let auth = match raw.auth {
            Some(auth) => {
                let span = auth.span();
                let auth = auth.into_inner();
                let literal = match &auth {
                    HttpAuth::ApiKey { key, .. } => key.is_literal(),
                    HttpAuth::Basic { password, .. } => password.is_literal(),
                    HttpAuth::Bearer { token } => token.is_literal(),
                    HttpAuth::None => false,
                };
                if literal {
                    self.warn(span, format!("external_systems.{name}.auth: the secret is written in the config file; prefer {{ env = \"…\" }}"));
                }
                auth
            }
            None => HttpAuth::None,
        };
        let mut methods = BTreeMap::new();
        for (method_name, m) in raw.methods {
            let params = self.params(
                m.params,
                &format!("external_systems.{name}.methods.{method_name}.params"),
            );
            methods.insert(
                method_name,
                ExternalMethodDef {
                    http_method: m.http_method.unwrap_or(HttpMethod::Post),
                    path: m.path,
                    params,
                    returns: m.returns,
                },
            );
        }
        let pace = self.pace(
            &format!("external_systems.{name}"),
            raw.max_rate,
            raw.max_in_flight,
        );
        (ok && pace.is_some()).then(|| ExternalSystemDef {
            base_url: raw.base_url.into_inner(),
            auth,
            timeout: raw.timeout.map_or(Duration::from_secs(30), |d| d.0),
            retry: raw.retry.unwrap_or_default(),
            pace: pace.unwrap_or_default(),
            methods,
        })
    }

    fn database(
        &mut self,
        name: &str,
        span: Range<usize>,
        raw: RawDatabase,
    ) -> Option<DatabaseDef> {
        let target = match (raw.url, raw.ado) {
            (Some(url), None) => {
                if let SecretRef::Literal(text) = url.get_ref() {
                    let scheme = text.split("://").next().unwrap_or("");
                    if !matches!(
                        scheme,
                        "mssql" | "sqlserver" | "postgres" | "postgresql" | "sqlite"
                    ) || !text.contains("://")
                    {
                        self.error(url.span(), format!("databases.{name}.url: unsupported URL `{scheme}://…`; use mssql://, postgres:// or sqlite://"));
                        return None;
                    }
                    if text.contains('@')
                        && text.split('@').next().is_some_and(|userinfo| {
                            userinfo.contains(':') && userinfo.matches(':').count() > 1
                        })
                    {
                        self.warn(url.span(), format!("databases.{name}.url contains a password; prefer url = {{ env = \"…\" }}"));
                    }
                }
                DatabaseTarget::Url(url.into_inner())
            }
            (None, Some(ado)) => DatabaseTarget::Ado(ado.into_inner()),
            (Some(_), Some(ado)) => {
                self.error(
                    ado.span(),
                    format!("databases.{name}: give either `url` or `ado`, not both"),
                );
                return None;
            }
            (None, None) => {
                self.error(
                    span,
                    format!("databases.{name}: `url` (or `ado`) is required"),
                );
                return None;
            }
        };
        let pace = self.pace(
            &format!("databases.{name}"),
            raw.max_rate,
            raw.max_in_flight,
        )?;
        Some(DatabaseDef {
            target,
            max_connections: raw.max_connections.unwrap_or(10).max(1),
            timeout: raw.timeout.map_or(Duration::from_secs(30), |d| d.0),
            retry: raw.retry.unwrap_or_default(),
            pace,
        })
    }

    fn smtp(&mut self, raw: RawSmtp) -> Option<SmtpDef> {
        let mut ok = true;
        if !looks_like_address(raw.from.get_ref()) {
            ok = false;
            self.error(
                raw.from.span(),
                format!(
                    "smtp.from: `{}` is not an e-mail address",
                    raw.from.get_ref()
                ),
            );
        }
        let tls = raw.tls.unwrap_or(TlsMode::Starttls);
        let auth = match raw.auth {
            Some(auth) => {
                let literal = match auth.get_ref() {
                    SmtpAuth::Basic { password, .. } => password.is_literal(),
                    SmtpAuth::Oauth2 { client_secret, .. } => client_secret.is_literal(),
                    SmtpAuth::None => false,
                };
                if tls == TlsMode::None && !matches!(auth.get_ref(), SmtpAuth::None) {
                    self.warn(auth.span(), "smtp.auth: with tls = \"none\" the credentials travel in clear; use \"starttls\" or \"tls\"");
                }
                if literal {
                    self.warn(auth.span(), "smtp.auth: the secret is written in the config file; prefer { env = \"…\" }");
                }
                auth.into_inner()
            }
            None => SmtpAuth::None,
        };
        let ca_pem = match &raw.ca_file {
            Some(path) => {
                let full = self.base_dir.join(path.get_ref());
                match read_small_file(&full) {
                    Ok(pem) => Some(pem),
                    Err(e) => {
                        ok = false;
                        self.error(
                            path.span(),
                            format!("smtp.ca_file `{}`: {e}", full.display()),
                        );
                        None
                    }
                }
            }
            None => None,
        };
        let default_port = match tls {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        };
        let pace = self.pace("smtp", raw.max_rate, raw.max_in_flight);
        (ok && pace.is_some()).then(|| SmtpDef {
            host: raw.host,
            port: raw.port.unwrap_or(default_port),
            tls,
            from: raw.from.into_inner(),
            auth,
            timeout: raw.timeout.map_or(Duration::from_secs(30), |d| d.0),
            max_connections: raw.max_connections.unwrap_or(5).max(1),
            retry: raw.retry.unwrap_or_default(),
            pace: pace.unwrap_or_default(),
            ca_pem,
        })
    }

    /// The paced-drain keys of a target (`max_rate`, `max_in_flight`); `None` after
    /// reporting a bad value, each error naming its key.
    fn pace(
        &mut self,
        what: &str,
        max_rate: Option<Spanned<toml::Value>>,
        max_in_flight: Option<Spanned<toml::Value>>,
    ) -> Option<Pace> {
        let mut ok = true;
        let mut pace = Pace::default();
        if let Some(rate) = max_rate {
            let checked = match rate.get_ref() {
                toml::Value::Float(f) => Pace::check_rate(*f),
                toml::Value::Integer(i) => Pace::check_rate(*i as f64),
                other => Err(format!(
                    "must be a number of messages per second greater than 0, found {} `{other}`",
                    other.type_str()
                )),
            };
            match checked {
                Ok(rate) => pace.max_rate = Some(rate),
                Err(e) => {
                    ok = false;
                    self.error(rate.span(), format!("{what}.max_rate: {e}"));
                }
            }
        }
        if let Some(n) = max_in_flight {
            let checked = match n.get_ref() {
                toml::Value::Integer(i) => Pace::check_in_flight(*i),
                other => Err(format!(
                    "must be a whole number of at least 1, found {} `{other}`",
                    other.type_str()
                )),
            };
            match checked {
                Ok(n) => pace.max_in_flight = Some(n),
                Err(e) => {
                    ok = false;
                    self.error(n.span(), format!("{what}.max_in_flight: {e}"));
                }
            }
        }
        ok.then_some(pace)
    }

    fn list(&mut self, name: &str, raw: RawList) -> Option<NotificationListDef> {
        let mut ok = true;
        for r in &raw.recipients {
            if !looks_like_address(r.get_ref()) {
                ok = false;
                self.error(
                    r.span(),
                    format!(
                        "notification_lists.{name}: `{}` is not an e-mail address",
                        r.get_ref()
                    ),
                );
            }
        }
        ok.then(|| NotificationListDef {
            recipients: raw
                .recipients
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
        })
    }
}

/// Largest script or certificate file the loader reads.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Reads a regular file of reasonable size (a path to a device or a pipe is refused
/// rather than read forever).
fn read_small_file(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_FILE_BYTES >> 20
        )));
    }
    std::fs::read_to_string(path)
}

fn looks_like_address(text: &str) -> bool {
    let mut parts = text.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(local), Some(domain), None)
        if !local.is_empty() && !domain.is_empty() && !text.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const FULL: &str = r#"
[central]
listen = "127.0.0.1:18080"
data_dir = "data/central"
max_body = "1MiB"
script_threads = 4
admin_token = { env = "SWITCHYARD_ADMIN_TOKEN" }

[sites.plant-a]
listen = "127.0.0.1:19101"
nodes = ["127.0.0.1:19101"]
data_dir = "data/plant-a"
token = { env = "SWITCHYARD_TOKEN_PLANT_A" }
script_timeout = "30s"
min_free_disk = "512MiB"

[api_keys.mes]
hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
enabled = true

[api_methods.GetTankLevel]
script = "api/get_tank_level.rhai"
timeout = "5s"
approved_keys = ["mes"]
params = [ { name = "tank", type = "String" },
           { name = "window", type = "Integer", required = false } ]
returns = "Object{level: Float, unit: String}"

[templates.Tank]
attributes = { Level = "Float", Setpoint = "Float", Name = "String" }
scripts = { Fill = "scripts/tank/fill.rhai" }
alarms = [ { name = "HighLevel", attribute = "Level", above = 90.0, on_trigger = "scripts/tank/high_level.rhai" } ]

[instances.T-101]
template = "Tank"
site = "plant-a"
values = { Level = 42.0, Setpoint = 50.0, Name = "North tank" }

[shared_scripts]
format_level = "scripts/shared/format_level.rhai"

[external_systems.ERP]
base_url = "http://127.0.0.1:9000/erp"
auth = { type = "api_key", header = "X-API-Key", key = { env = "ERP_KEY" } }
timeout = "10s"
retry = { max_retries = 20, interval = "30s" }
[external_systems.ERP.methods.GetOrder]
http_method = "GET"
path = "/orders"
params = [ { name = "id", type = "Integer" } ]
returns = "Object"

[databases.Historian]
url = "sqlite://data/historian.db"
max_connections = 10
retry = { max_retries = 10, interval = "10s" }

[smtp]
host = "smtp.office365.com"
port = 587
tls = "starttls"
from = "scada@plant.example"
auth = { type = "oauth2", tenant = "t", client_id = "c", client_secret = { env = "M365_SECRET" } }
timeout = "30s"
max_connections = 5
retry = { max_retries = 10, interval = "60s" }

[notification_lists.Operators]
recipients = ["ops1@plant.example", "ops2@plant.example"]
"#;

    fn full_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for script in [
            "api/get_tank_level.rhai",
            "scripts/tank/fill.rhai",
            "scripts/tank/high_level.rhai",
            "scripts/shared/format_level.rhai",
        ] {
            write(dir.path(), script, "42");
        }
        write(dir.path(), "switchyard.toml", FULL);
        dir
    }

    #[test]
    fn loads_the_spec_example() {
        let dir = full_dir();
        let config =
            Config::load(&dir.path().join("switchyard.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.central.listen.port(), 18080);
        assert_eq!(config.central.max_body, 1 << 20);
        assert!(config.central.data_dir.is_absolute());
        let site = &config.sites["plant-a"];
        assert_eq!(site.min_free_disk, 512 << 20);
        assert_eq!(site.nodes, vec!["127.0.0.1:19101".to_string()]);
        let method = &config.api_methods["GetTankLevel"];
        assert_eq!(method.timeout, Duration::from_secs(5));
        assert_eq!(method.params.len(), 2);
        assert!(!method.params[1].required);
        assert_eq!(
            method.returns.as_ref().unwrap().to_string(),
            "Object{level: Float, unit: String}"
        );
        let tank = &config.templates["Tank"];
        assert_eq!(tank.alarms[0].above, Some(90.0));
        assert_eq!(tank.scripts["Fill"].source, "42");
        assert_eq!(
            config.instances["T-101"].values["Level"],
            serde_json::json!(42.0)
        );
        let erp = &config.external_systems["ERP"];
        assert_eq!(erp.retry.max_retries, 20);
        assert_eq!(erp.methods["GetOrder"].http_method, HttpMethod::Get);
        assert!(matches!(erp.auth, HttpAuth::ApiKey { .. }));
        let smtp = config.smtp.as_ref().unwrap();
        assert!(
            matches!(&smtp.auth, SmtpAuth::Oauth2 { authority, scope, .. }
            if authority == "https://login.microsoftonline.com" && scope == "https://outlook.office365.com/.default")
        );
        assert_eq!(config.notification_lists["Operators"].recipients.len(), 2);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn reports_every_error_with_its_location() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "scripts/ok.rhai", "1");
        let text = r#"
[sites.s]
listen = "127.0.0.1:1"
token = "site-token-0001"

[templates.Tank]
attributes = { Level = "Flaot" }

[templates.Pump]
attributes = { Speed = "Float" }
scripts = { Run = "scripts/missing.rhai" }

[instances.P-1]
template = "Pmp"
site = "s"

[instances.P-2]
template = "Pump"
site = "nowhere"
values = { Speed = "fast" }

[api_keys.k]
hash = "md5:abc"

[bogus]
x = 1
"#;
        let path = dir.path().join("switchyard.toml");
        write(dir.path(), "switchyard.toml", text);
        let errors = Config::load(&path).unwrap_err();
        let shown = errors.to_string();
        let expect = [
            (7, "templates.Tank.attributes.Level: unknown type `Flaot`"),
            (11, "script file"),
            (14, "instances.P-1: unknown template `Pmp`"),
            (19, "instances.P-2: unknown site `nowhere`"),
            (
                20,
                r#"instances.P-2.values.Speed: expected Float, found String "fast""#,
            ),
            (23, "api_keys.k.hash"),
            (25, "unknown section `bogus`"),
        ];
        for (line, needle) in expect {
            assert!(
                errors
                    .0
                    .iter()
                    .any(|e| e.line == line && e.message.contains(needle)),
                "missing line {line} `{needle}` in:\n{shown}"
            );
        }
        assert!(shown.starts_with(&path.display().to_string()), "{shown}");
    }

    #[test]
    fn syntax_errors_are_located_and_do_not_hide_later_sections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = "[sites.s]\nlisten = \n[instances.X]\ntemplate = \"T\"\nsite = \"s\"\n";
        let errors = Config::parse(text, &path).unwrap_err();
        assert!(errors.0.iter().any(|e| e.line == 2), "{errors}");
    }

    #[test]
    fn literal_secrets_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let config = Config::parse(
            "[sites.s]\nlisten = \"127.0.0.1:1\"\ntoken = \"dev-site-token\"\n",
            &path,
        )
        .unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(config.warnings[0].line, 3);
        assert!(config.warnings[0].message.contains("sites.s.token"));
    }

    /// SPEC §5 / `[6.4-4]`: without `timeout` and `max_connections`, SMTP uses 30 s and
    /// 5 sessions (and STARTTLS on 587).
    #[test]
    fn smtp_defaults_are_thirty_seconds_and_five_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(
            "[smtp]\nhost = \"mail.example\"\nfrom = \"a@b.example\"\n",
            &dir.path().join("c.toml"),
        )
        .unwrap();
        let smtp = config.smtp.unwrap();
        assert_eq!(
            (smtp.timeout, smtp.max_connections, smtp.tls, smtp.port),
            (Duration::from_secs(30), 5, TlsMode::Starttls, 587)
        );
    }

    #[test]
    fn smtp_credentials_without_tls_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let config = Config::parse(
            "[smtp]\nhost = \"mail.example\"\nport = 25\ntls = \"none\"\nfrom = \"a@b.example\"\nauth = { type = \"basic\", username = \"u\", password = { env = \"SMTP_PW\" } }\n",
            &path,
        )
        .unwrap();
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.message.contains("credentials travel in clear")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn empty_and_short_tokens_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(dir.path().join("admin-token"), "\n").unwrap();
        let errors = Config::parse(
            "[central]\nadmin_token = { file = \"admin-token\" }\n[sites.s]\nlisten = \"127.0.0.1:1\"\ntoken = \"t\"\n",
            &path,
        )
        .unwrap_err();
        let text = errors.to_string();
        assert!(
            text.contains("central.admin_token: the token is empty"),
            "{text}"
        );
        assert!(
            text.contains("sites.s.token: the token is too short (1 characters)"),
            "{text}"
        );
    }

    /// Issue 15: `max_rate` / `max_in_flight` on the three kinds of target; unset is
    /// unpaced; a bad value is an error naming the key, at its line.
    #[test]
    fn a_site_pair_has_named_nodes_and_a_witness() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let config = Config::parse(
            "[sites.plant-a]\ntoken = \"0123456789abcdef-pair\"\n\
             nodes = [ { name = \"a\", listen = \"127.0.0.1:9101\", data_dir = \"data/a\" },\n\
                       { name = \"b\", listen = \"127.0.0.1:9102\", data_dir = \"data/b\" } ]\n\
             witness = { name = \"w\", listen = \"127.0.0.1:9109\", data_dir = \"data/w\" }\n",
            &path,
        )
        .unwrap();
        let site = &config.sites["plant-a"];
        assert_eq!(site.nodes, vec!["127.0.0.1:9101", "127.0.0.1:9102"]);
        assert_eq!(site.listen.port(), 9101);
        assert_eq!(site.data_dir, dir.path().join("data/a"));
        assert_eq!(site.node_names(), vec!["a", "b", "w"]);
        let (w, witness) = site.node("w").unwrap();
        assert!(witness && w.listen.port() == 9109 && w.data_dir == dir.path().join("data/w"));
        assert!(site.node("x").is_none());
        // The single-node form is unchanged: no pair.
        let single = Config::parse(
            "[sites.s]\nlisten = \"127.0.0.1:9101\"\ntoken = \"0123456789abcdef-pair\"\n",
            &path,
        )
        .unwrap();
        assert!(single.sites["s"].pair.is_empty() && single.sites["s"].witness.is_none());
        assert_eq!(single.sites["s"].nodes, vec!["127.0.0.1:9101"]);

        for (text, want) in [
            (
                "listen = \"127.0.0.1:1\"\nnodes = [ { name = \"a\", listen = \"127.0.0.1:2\" } ]\n",
                "each node has its own `listen`",
            ),
            (
                "nodes = [ { name = \"a\", listen = \"127.0.0.1:2\" }, { name = \"a\", listen = \"127.0.0.1:3\" } ]\n",
                "nodes `a` and `a` have the same name",
            ),
            (
                "listen = \"127.0.0.1:1\"\nwitness = { name = \"w\", listen = \"127.0.0.1:2\" }\n",
                "a witness needs named nodes",
            ),
            (
                "nodes = [ { name = \"a\", listen = \"127.0.0.1:2\", port = 3 } ]\n",
                "unknown field `port`",
            ),
            ("nodes = [ 5 ]\n", "an address \"host:port\" or a node"),
        ] {
            let text = format!("[sites.s]\ntoken = \"0123456789abcdef-pair\"\n{text}");
            let errors = Config::parse(&text, &path).unwrap_err().to_string();
            assert!(errors.contains(want), "{text}\n=> {errors}");
        }
    }

    #[test]
    fn paced_drain_keys_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let config = Config::parse(
            "[external_systems.ERP]\nbase_url = \"http://erp.example\"\nmax_rate = 500\nmax_in_flight = 8\n\
             [databases.Historian]\nurl = \"sqlite://h.db\"\nmax_rate = 2.5\n\
             [databases.Other]\nurl = \"sqlite://o.db\"\n\
             [smtp]\nhost = \"mail.example\"\nfrom = \"a@b.example\"\nmax_in_flight = 1\n",
            &path,
        )
        .unwrap();
        let erp = config.external_systems["ERP"].pace;
        assert_eq!((erp.max_rate, erp.max_in_flight), (Some(500.0), Some(8)));
        assert_eq!(config.databases["Historian"].pace.max_rate, Some(2.5));
        assert!(!config.databases["Other"].pace.is_paced());
        assert_eq!(config.smtp.unwrap().pace.max_in_flight, Some(1));

        let errors = Config::parse(
            "[external_systems.ERP]\nbase_url = \"http://erp.example\"\nmax_rate = 0\nmax_in_flight = 0\n\
             [databases.Historian]\nurl = \"sqlite://h.db\"\nmax_rate = \"fast\"\n\
             [smtp]\nhost = \"mail.example\"\nfrom = \"a@b.example\"\nmax_in_flight = 1.5\n",
            &path,
        )
        .unwrap_err();
        let lines: Vec<(usize, String)> = errors
            .0
            .iter()
            .map(|e| (e.line, e.message.clone()))
            .collect();
        for (line, want) in [
            (
                3,
                "external_systems.ERP.max_rate: must be a number of messages per second greater than 0, found 0",
            ),
            (
                4,
                "external_systems.ERP.max_in_flight: must be a whole number of at least 1, found 0",
            ),
            (
                7,
                "databases.Historian.max_rate: must be a number of messages per second greater than 0, found string `\"fast\"`",
            ),
            (
                11,
                "smtp.max_in_flight: must be a whole number of at least 1, found float `1.5`",
            ),
        ] {
            assert!(
                lines.iter().any(|(l, m)| *l == line && m == want),
                "{want} at line {line}: {lines:?}"
            );
        }
    }
}
