//! Checking `serde_json::Value`s against [`Type`]s, with path-precise errors.

use super::{Field, ParamDef, Type};
use serde_json::{Map, Value};

/// How an `Object{…}` type treats fields it does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Undeclared fields are an error: what callers send us (parameters, attributes,
    /// script return values) must match exactly.
    Exact,
    /// Undeclared fields are ignored: responses from external systems often carry more
    /// than the method definition cares about.
    AllowExtra,
}

/// A value that does not match its type: where (`params.items[2].qty`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ValidationError {
    /// Path of the offending value, starting at the root name (`params`, `result`, …).
    pub path: String,
    /// What was expected and what was found.
    pub reason: String,
}

/// One step of a path, collected while the error unwinds (innermost first).
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

struct Fail<'a> {
    segs: Vec<Seg<'a>>,
    reason: String,
}

impl<'a> Fail<'a> {
    fn new(reason: String) -> Self {
        Fail {
            segs: Vec::new(),
            reason,
        }
    }

    fn at(mut self, seg: Seg<'a>) -> Self {
        self.segs.push(seg);
        self
    }

    fn into_error(self, root: &str) -> ValidationError {
        let mut path = String::from(root);
        for seg in self.segs.iter().rev() {
            match seg {
                Seg::Key(key) => {
                    if is_plain_key(key) {
                        path.push('.');
                        path.push_str(key);
                    } else {
                        path.push_str(&format!("[{}]", Value::String((*key).to_string())));
                    }
                }
                Seg::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        ValidationError {
            path,
            reason: self.reason,
        }
    }
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

impl Type {
    /// Checks `value` against this type. `root` names the value in the error path
    /// (`"result"`, an attribute name, …).
    pub fn validate(
        &self,
        root: &str,
        value: &Value,
        strictness: Strictness,
    ) -> Result<(), ValidationError> {
        check(self, value, strictness).map_err(|fail| fail.into_error(root))
    }
}

impl Type {
    /// Puts a value that validated into the type's canonical form: integers where a
    /// `Float` is declared become floats (`60` → `60.0`), so values are serialized per
    /// their definition (`[7.4-4-rt]`).
    pub fn normalize(&self, value: &mut Value) {
        match (self, value) {
            (Type::Float, Value::Number(n)) if !n.is_f64() => {
                if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                    *n = f;
                }
            }
            (Type::List(Some(inner)), Value::Array(items)) => {
                items.iter_mut().for_each(|v| inner.normalize(v))
            }
            (Type::Object(Some(fields)), Value::Object(map)) => {
                for field in fields {
                    if let Some(v) = map.get_mut(&field.name) {
                        field.ty.normalize(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Checks a flat JSON object of parameters against their definitions (`CD-IA-2`): every
/// required parameter present and not `null`, every value of its declared type, and no
/// parameter that is not declared.
pub fn validate_params(defs: &[ParamDef], body: &Value) -> Result<(), ValidationError> {
    let Value::Object(map) = body else {
        return Err(ValidationError {
            path: "params".into(),
            reason: format!("expected an Object of parameters, found {}", describe(body)),
        });
    };
    let mut matched = 0;
    for def in defs {
        match map.get(&def.name) {
            Some(Value::Null) | None if !def.required => {
                matched += usize::from(map.contains_key(&def.name));
            }
            None => {
                return Err(
                    Fail::new(format!("required parameter of type {} is missing", def.ty))
                        .at(Seg::Key(&def.name))
                        .into_error("params"),
                );
            }
            Some(value) => {
                matched += 1;
                check(&def.ty, value, Strictness::Exact)
                    .map_err(|fail| fail.at(Seg::Key(&def.name)).into_error("params"))?;
            }
        }
    }
    if map.len() > matched
        && let Some(extra) = map.keys().find(|k| !defs.iter().any(|d| &d.name == *k))
    {
        return Err(Fail::new("unknown parameter".into())
            .at(Seg::Key(extra))
            .into_error("params"));
    }
    Ok(())
}

fn check<'a>(ty: &Type, value: &'a Value, strictness: Strictness) -> Result<(), Fail<'a>> {
    match (ty, value) {
        (Type::Boolean, Value::Bool(_)) => Ok(()),
        (Type::Integer, Value::Number(n)) if n.is_i64() => Ok(()),
        (Type::Integer, Value::Number(n)) if n.is_u64() => Err(Fail::new(format!(
            "Integer {n} is out of range (must fit in a signed 64-bit integer)"
        ))),
        (Type::Float, Value::Number(_)) => Ok(()),
        (Type::String, Value::String(_)) => Ok(()),
        (Type::DateTime, Value::String(s)) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(_) => Ok(()),
            Err(_) => Err(Fail::new(format!(
                "expected DateTime (RFC 3339), found {}",
                describe(value)
            ))),
        },
        (Type::List(None), Value::Array(_)) => Ok(()),
        (Type::List(Some(inner)), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check(inner, item, strictness).map_err(|f| f.at(Seg::Index(i)))?;
            }
            Ok(())
        }
        (Type::Object(None), Value::Object(_)) => Ok(()),
        (Type::Object(Some(fields)), Value::Object(map)) => check_fields(fields, map, strictness),
        (expected, found) => Err(Fail::new(format!(
            "expected {}, found {}",
            expected_name(expected),
            describe(found)
        ))),
    }
}

fn check_fields<'a>(
    fields: &[Field],
    map: &'a Map<String, Value>,
    strictness: Strictness,
) -> Result<(), Fail<'a>> {
    let mut matched = 0;
    for field in fields {
        // `get_key_value` hands back the key with the value's lifetime for the path.
        match map.get_key_value(&field.name) {
            Some((_, Value::Null)) | None if field.optional => {
                matched += usize::from(map.contains_key(&field.name));
            }
            None => {
                return Err(Fail::new(format!(
                    "required field `{}` of type {} is missing",
                    field.name, field.ty
                )));
            }
            Some((key, value)) => {
                matched += 1;
                check(&field.ty, value, strictness).map_err(|f| f.at(Seg::Key(key)))?;
            }
        }
    }
    if strictness == Strictness::Exact
        && map.len() > matched
        && let Some(extra) = map.keys().find(|k| !fields.iter().any(|f| &f.name == *k))
    {
        return Err(Fail::new("unknown field".into()).at(Seg::Key(extra)));
    }
    Ok(())
}

/// The expected side of a message: the full type for scalars, the kind for containers
/// (the mismatch is about the container, not its contents).
fn expected_name(ty: &Type) -> String {
    match ty {
        Type::List(_) | Type::Object(_) => ty.kind_name().to_string(),
        other => other.to_string(),
    }
}

/// Describes a found value for an error message: its kind and, for scalars, the value
/// itself (long strings shortened).
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("Boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("Float {n}"),
        Value::Number(n) => format!("Integer {n}"),
        Value::String(s) => {
            const MAX: usize = 40;
            if s.chars().count() > MAX {
                let short: String = s.chars().take(MAX).collect();
                format!("String {}…", Value::String(short))
            } else {
                format!("String {}", Value::String(s.clone()))
            }
        }
        Value::Array(items) => format!("List of {} item(s)", items.len()),
        Value::Object(_) => "Object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ty(text: &str) -> Type {
        Type::parse(text).unwrap()
    }

    fn params(defs: &[(&str, &str, bool)]) -> Vec<ParamDef> {
        defs.iter()
            .map(|(n, t, required)| ParamDef {
                name: n.to_string(),
                ty: ty(t),
                required: *required,
            })
            .collect()
    }

    #[test]
    fn table_of_value_checks() {
        let ok: &[(&str, Value)] = &[
            ("Boolean", json!(true)),
            ("Integer", json!(-3)),
            ("Integer", json!(i64::MAX)),
            ("Float", json!(3)),
            ("Float", json!(3.5)),
            ("String", json!("")),
            ("DateTime", json!("2026-11-28T11:28:13Z")),
            ("DateTime", json!("2026-11-28T11:28:13.5+01:00")),
            ("List", json!([1, "a", null])),
            ("List<Integer>", json!([])),
            ("Object", json!({"any": [1]})),
            ("Object{a: Integer, b?: String}", json!({"a": 1})),
            ("Object{a: Integer, b?: String}", json!({"a": 1, "b": null})),
        ];
        for (t, v) in ok {
            ty(t)
                .validate("v", v, Strictness::Exact)
                .unwrap_or_else(|e| panic!("{t} {v}: {e}"));
        }
        let bad: &[(&str, Value, &str)] = &[
            (
                "Integer",
                json!(3.0),
                "v: expected Integer, found Float 3.0",
            ),
            (
                "Integer",
                json!("3"),
                r#"v: expected Integer, found String "3""#,
            ),
            (
                "Integer",
                json!(u64::MAX),
                "v: Integer 18446744073709551615 is out of range",
            ),
            ("Boolean", json!(null), "v: expected Boolean, found null"),
            (
                "Float",
                json!("1.5"),
                r#"v: expected Float, found String "1.5""#,
            ),
            (
                "DateTime",
                json!("yesterday"),
                r#"v: expected DateTime (RFC 3339), found String "yesterday""#,
            ),
            (
                "List<Integer>",
                json!([1, 2, "x"]),
                r#"v[2]: expected Integer, found String "x""#,
            ),
            ("List<Integer>", json!({}), "v: expected List, found Object"),
            (
                "Object{a: Integer}",
                json!({}),
                "v: required field `a` of type Integer is missing",
            ),
            (
                "Object{a: Integer}",
                json!({"a": null}),
                "v.a: expected Integer, found null",
            ),
            (
                "Object{a: Integer}",
                json!({"a": 1, "b": 2}),
                "v.b: unknown field",
            ),
            (
                "Object{a: List<Object{b: Boolean}>}",
                json!({"a": [{"b": true}, {"b": 1}]}),
                "v.a[1].b: expected Boolean, found Integer 1",
            ),
            (
                "Object",
                json!([]),
                "v: expected Object, found List of 0 item(s)",
            ),
        ];
        for (t, v, want) in bad {
            let err = ty(t)
                .validate("v", v, Strictness::Exact)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{t} {v}: got `{err}`, want `{want}`");
        }
    }

    #[test]
    fn normalize_makes_floats_of_integers_where_floats_are_declared() {
        let mut v = json!({"level": 60, "n": 3, "items": [{"x": 1}]});
        ty("Object{level: Float, n: Integer, items: List<Object{x: Float}>}").normalize(&mut v);
        assert_eq!(v.to_string(), r#"{"items":[{"x":1.0}],"level":60.0,"n":3}"#);
    }

    #[test]
    fn allow_extra_ignores_undeclared_fields_only() {
        let t = ty("Object{a: Integer}");
        t.validate("r", &json!({"a": 1, "b": 2}), Strictness::AllowExtra)
            .unwrap();
        let err = t
            .validate("r", &json!({"a": "x", "b": 2}), Strictness::AllowExtra)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"r.a: expected Integer, found String "x""#
        );
    }

    #[test]
    fn params_table() {
        let defs = params(&[("tank", "String", true), ("window", "Integer", false)]);
        validate_params(&defs, &json!({"tank": "T-101"})).unwrap();
        validate_params(&defs, &json!({"tank": "T-101", "window": null})).unwrap();
        validate_params(&defs, &json!({"tank": "T-101", "window": 5})).unwrap();
        let cases = [
            (
                json!({}),
                "params.tank: required parameter of type String is missing",
            ),
            (
                json!({"tank": null}),
                "params.tank: expected String, found null",
            ),
            (
                json!({"tank": 1}),
                "params.tank: expected String, found Integer 1",
            ),
            (
                json!({"tank": "a", "window": 1.5}),
                "params.window: expected Integer, found Float 1.5",
            ),
            (
                json!({"tank": "a", "extra": 1}),
                "params.extra: unknown parameter",
            ),
            (
                json!({"tank": "a", "window": null, "x y": 1}),
                r#"params["x y"]: unknown parameter"#,
            ),
            (
                json!([1]),
                "params: expected an Object of parameters, found List of 1 item(s)",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                validate_params(&defs, &body).unwrap_err().to_string(),
                want,
                "{body}"
            );
        }
    }

    #[test]
    fn seed_example_path() {
        let defs = params(&[("items", "List<Object{qty: Integer}>", true)]);
        let err = validate_params(
            &defs,
            &json!({"items": [{"qty": 1}, {"qty": 2}, {"qty": "abc"}]}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"params.items[2].qty: expected Integer, found String "abc""#
        );
    }

    #[test]
    fn long_strings_are_shortened_in_messages() {
        let err = Type::Integer
            .validate("v", &json!("x".repeat(500)), Strictness::Exact)
            .unwrap_err();
        assert!(err.reason.len() < 80, "{}", err.reason);
    }
}
