//! The text of a `switchyard.toml`, built table by table: the one writer of plant
//! configurations for the benchmark plant and for the end-to-end tests.
//!
//! The binary crate is no library, so `tests/common` includes this file by path
//! (`#[path = "../../src/bench/plant_toml.rs"]`); it uses `std` only for that reason.
//!
//! ```text
//! let mut config = PlantToml::default();
//! config.table("central").set("listen", "127.0.0.1:8080").set("script_threads", 4);
//! config.table("smtp").set("retry", table([("max_retries", 3.into()), ("interval", "1s".into())]));
//! std::fs::write(path, config.to_string())?;
//! ```

use std::fmt;

/// A value of the plant configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Toml {
    /// A basic string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array.
    List(Vec<Toml>),
    /// An inline table, keys in the order given.
    Table(Vec<(String, Toml)>),
}

impl From<&str> for Toml {
    fn from(s: &str) -> Self {
        Toml::Str(s.to_string())
    }
}

impl From<String> for Toml {
    fn from(s: String) -> Self {
        Toml::Str(s)
    }
}

impl From<i32> for Toml {
    fn from(n: i32) -> Self {
        Toml::Int(n.into())
    }
}

impl From<u16> for Toml {
    fn from(n: u16) -> Self {
        Toml::Int(n.into())
    }
}

impl From<f64> for Toml {
    fn from(x: f64) -> Self {
        Toml::Float(x)
    }
}

impl From<bool> for Toml {
    fn from(b: bool) -> Self {
        Toml::Bool(b)
    }
}

/// An inline table: `{ key = value, … }`.
pub fn table<const N: usize>(pairs: [(&str, Toml); N]) -> Toml {
    Toml::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// An array: `[item, …]`.
pub fn list<T: Into<Toml>>(items: impl IntoIterator<Item = T>) -> Toml {
    Toml::List(items.into_iter().map(Into::into).collect())
}

/// One entry of a method's `params`; `required = false` is written for an optional one
/// only, as required is the default.
pub fn param(name: &str, ty: &str, required: bool) -> Toml {
    let mut entry = vec![
        ("name".to_string(), Toml::from(name)),
        ("type".to_string(), Toml::from(ty)),
    ];
    if !required {
        entry.push(("required".to_string(), Toml::Bool(false)));
    }
    Toml::Table(entry)
}

/// A whole configuration: its tables in the order they were first named.
#[derive(Debug, Clone, Default)]
pub struct PlantToml {
    tables: Vec<Section>,
}

/// One `[table]` of a configuration.
#[derive(Debug, Clone)]
pub struct Section {
    /// Dotted path of bare keys, as in the header (`external_systems.Stub.methods.Get`).
    name: String,
    entries: Vec<(String, Toml)>,
}

impl PlantToml {
    /// The table `name` (a dotted path of bare keys), added at the end if it is new; so a
    /// test can change one value of a ready configuration in place.
    pub fn table(&mut self, name: &str) -> &mut Section {
        let index = match self.tables.iter().position(|t| t.name == name) {
            Some(index) => index,
            None => {
                self.tables.push(Section {
                    name: name.to_string(),
                    entries: Vec::new(),
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[index]
    }
}

impl Section {
    /// Sets `key`, replacing its value where it was if it is already set.
    pub fn set(&mut self, key: &str, value: impl Into<Toml>) -> &mut Section {
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_string(), value)),
        }
        self
    }

    /// Removes `key` if it is set.
    #[allow(
        dead_code,
        reason = "the pair tests use it (tests/common includes this file)"
    )]
    pub fn remove(&mut self, key: &str) -> &mut Section {
        self.entries.retain(|(k, _)| k != key);
        self
    }
}

impl fmt::Display for PlantToml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for section in &self.tables {
            writeln!(f, "\n[{}]", section.name)?;
            for (key, value) in &section.entries {
                writeln!(f, "{} = {value}", Key(key))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Toml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Toml::Str(s) => quoted(f, s),
            Toml::Int(n) => write!(f, "{n}"),
            Toml::Float(x) if x.is_nan() => f.write_str("nan"),
            Toml::Float(x) if x.is_infinite() => f.write_str(if *x > 0.0 { "inf" } else { "-inf" }),
            // `{:?}` keeps the `.0` of a whole number, so it stays a float.
            Toml::Float(x) => write!(f, "{x:?}"),
            Toml::Bool(b) => write!(f, "{b}"),
            Toml::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Toml::Table(entries) if entries.is_empty() => f.write_str("{}"),
            Toml::Table(entries) => {
                f.write_str("{ ")?;
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{} = {value}", Key(key))?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// A key, bare where TOML allows it, quoted otherwise.
struct Key<'a>(&'a str);

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = !self.0.is_empty()
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            f.write_str(self.0)
        } else {
            quoted(f, self.0)
        }
    }
}

fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04X}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}
