//! Values between rhai and JSON, and failures between Rust and rhai.

use crate::error::{Failure, FailureClass};
use rhai::{Dynamic, EvalAltResult, Map, Position};

/// JSON → rhai (integers stay integers, objects become maps).
pub fn to_dynamic(value: &serde_json::Value) -> Dynamic {
    // Serializing a JSON value into a Dynamic cannot fail (every JSON value has a rhai
    // counterpart); fall back to () just in case.
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

/// How deeply nested a script's value may be when it leaves the script (the same depth
/// serde_json accepts when it parses): a script can nest arrays in a loop far deeper
/// than any stack can recurse.
pub const MAX_VALUE_DEPTH: usize = 128;

/// rhai → JSON. Values with no JSON form (function pointers, custom types) are an
/// error naming their type; so is a value nested deeper than [`MAX_VALUE_DEPTH`].
pub fn from_dynamic(value: &Dynamic) -> Result<serde_json::Value, String> {
    from_dynamic_at(value, 0)
}

fn from_dynamic_at(value: &Dynamic, depth: usize) -> Result<serde_json::Value, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!(
            "a value nested more than {MAX_VALUE_DEPTH} levels deep cannot be converted to JSON"
        ));
    }
    if let Some(map) = value.read_lock::<Map>() {
        let mut out = serde_json::Map::with_capacity(map.len());
        for (key, item) in map.iter() {
            out.insert(key.to_string(), from_dynamic_at(item, depth + 1)?);
        }
        return Ok(serde_json::Value::Object(out));
    }
    if let Some(array) = value.read_lock::<rhai::Array>() {
        return array
            .iter()
            .map(|item| from_dynamic_at(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(serde_json::Value::Array);
    }
    rhai::serde::from_dynamic::<serde_json::Value>(value).map_err(|_| {
        format!(
            "a value of type `{}` cannot be converted to JSON",
            value.type_name()
        )
    })
}

/// The map scripts catch: `#{class, code, status, message}` (SPEC §4).
pub fn failure_map(failure: &Failure) -> Map {
    let mut map = Map::new();
    map.insert("class".into(), failure.class.as_str().into());
    map.insert("code".into(), failure.code.clone().into());
    map.insert(
        "status".into(),
        failure
            .status
            .map_or(Dynamic::UNIT, |s| Dynamic::from_int(i64::from(s))),
    );
    map.insert("message".into(), failure.message.clone().into());
    map
}

/// A failure as a catchable rhai error.
pub fn failure_error(failure: &Failure) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from_map(failure_map(failure)),
        Position::NONE,
    ))
}

/// Reads back a failure map thrown (or re-thrown) by a script.
pub(super) fn failure_from_dynamic(value: &Dynamic) -> Option<Failure> {
    let map = value.read_lock::<Map>()?;
    let class = match map.get("class")?.clone().into_string().ok()?.as_str() {
        "transient" => FailureClass::Transient,
        "permanent" => FailureClass::Permanent,
        _ => return None,
    };
    let code = map.get("code")?.clone().into_string().ok()?;
    let message = map
        .get("message")
        .and_then(|m| m.clone().into_string().ok())
        .unwrap_or_default();
    let status = map
        .get("status")
        .and_then(|s| s.as_int().ok())
        .and_then(|s| u16::try_from(s).ok());
    Some(Failure {
        class,
        code,
        status,
        message,
        retry_after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes;
    use serde_json::json;

    #[test]
    fn nesting_is_bounded_when_a_value_leaves_a_script() {
        let mut value = Dynamic::from(1_i64);
        for _ in 0..MAX_VALUE_DEPTH {
            value = Dynamic::from_array(vec![value]);
        }
        assert!(
            from_dynamic(&value).is_ok(),
            "{MAX_VALUE_DEPTH} levels convert"
        );
        let mut map = Map::new();
        map.insert("inner".into(), Dynamic::from_array(vec![value.clone()]));
        let err = from_dynamic(&Dynamic::from_map(map)).unwrap_err();
        assert!(err.contains("nested more than 128 levels"), "{err}");
        // Maps and arrays convert as before.
        let mut m = Map::new();
        m.insert(
            "a".into(),
            Dynamic::from_array(vec![Dynamic::from(2_i64), "x".into()]),
        );
        assert_eq!(
            from_dynamic(&Dynamic::from_map(m)).unwrap(),
            json!({"a": [2, "x"]})
        );
    }

    #[test]
    fn json_round_trips() {
        let value = json!({"a": 1, "b": [1.5, "x", true, null], "c": {"d": -7}});
        assert_eq!(from_dynamic(&to_dynamic(&value)).unwrap(), value);
    }

    #[test]
    fn failures_round_trip_through_the_script_map() {
        let f = Failure::transient(codes::HTTP_STATUS, "HTTP 503").with_status(503);
        let err = failure_error(&f);
        let EvalAltResult::ErrorRuntime(value, _) = *err else {
            panic!()
        };
        assert_eq!(failure_from_dynamic(&value), Some(f));
        assert_eq!(failure_from_dynamic(&Dynamic::from("just a string")), None);
    }
}
