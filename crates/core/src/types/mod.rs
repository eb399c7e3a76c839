//! The value type system of switchyard (SPEC §2, `[7.4-3-rt]`, `KDD-ext-5`).
//!
//! A [`Type`] describes what an API parameter, an attribute, a return value or an
//! external-system response may hold. Types are written in a small grammar
//! (`Boolean | Integer | Float | String | DateTime | List<T> | Object{name: T, other?: T}`)
//! and parsed once, when the configuration is loaded; values are then checked against
//! them with [`Type::validate`], whose errors name the exact path of the offending value:
//!
//! ```
//! use switchyard_core::types::{ParamDef, Type, validate_params};
//!
//! let params = vec![ParamDef::required("items", Type::parse("List<Object{qty: Integer}>").unwrap())];
//! let body = serde_json::json!({"items": [{"qty": 1}, {"qty": 2}, {"qty": "abc"}]});
//! let err = validate_params(&params, &body).unwrap_err();
//! assert_eq!(err.to_string(), r#"params.items[2].qty: expected Integer, found String "abc""#);
//! ```

mod parse;
mod schema;
mod validate;

pub use parse::TypeParseError;
pub use schema::params_schema;
pub use validate::{Strictness, ValidationError, validate_params};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A type of the switchyard type system.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// `true` or `false`.
    Boolean,
    /// A JSON integer within `i64`; `3.0` and `"3"` are refused.
    Integer,
    /// Any JSON number.
    Float,
    /// Any JSON string.
    String,
    /// An RFC 3339 date-time string.
    DateTime,
    /// `List<T>`, or bare `List` (any JSON array) when `None`.
    List(Option<Box<Type>>),
    /// `Object{…}`, or bare `Object` (any JSON object) when `None`.
    Object(Option<Vec<Field>>),
}

/// A named field of an `Object{…}` type.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Field name as written.
    pub name: String,
    /// Field type.
    pub ty: Type,
    /// `name?: T`: the field may be absent or `null`.
    pub optional: bool,
}

/// A declared parameter of an API method or an external-system method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    /// Parameter name, a top-level key of the JSON body.
    pub name: String,
    /// Parameter type.
    #[serde(rename = "type")]
    pub ty: Type,
    /// Whether the parameter must be present (and not `null`). Defaults to `true`.
    #[serde(default = "default_true")]
    pub required: bool,
}

fn default_true() -> bool {
    true
}

impl ParamDef {
    /// A parameter that must be present.
    pub fn required(name: impl Into<String>, ty: Type) -> Self {
        ParamDef {
            name: name.into(),
            ty,
            required: true,
        }
    }

    /// A parameter that may be absent or `null`.
    pub fn optional(name: impl Into<String>, ty: Type) -> Self {
        ParamDef {
            name: name.into(),
            ty,
            required: false,
        }
    }
}

impl Type {
    /// Parses a type written in the grammar of SPEC §2.
    pub fn parse(text: &str) -> Result<Type, TypeParseError> {
        parse::parse(text)
    }

    /// The name of the type's kind, as used in error messages (`List`, `Object`, …).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Type::Boolean => "Boolean",
            Type::Integer => "Integer",
            Type::Float => "Float",
            Type::String => "String",
            Type::DateTime => "DateTime",
            Type::List(_) => "List",
            Type::Object(_) => "Object",
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::List(Some(inner)) => write!(f, "List<{inner}>"),
            Type::Object(Some(fields)) => {
                f.write_str("Object{")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    let mark = if field.optional { "?" } else { "" };
                    write!(f, "{}{mark}: {}", field.name, field.ty)?;
                }
                f.write_str("}")
            }
            other => f.write_str(other.kind_name()),
        }
    }
}

impl Serialize for Type {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Type {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Type::parse(&text).map_err(serde::de::Error::custom)
    }
}
