//! Parameter validation never panics on any type and any JSON, and an accepted value
//! is accepted again (validation is a pure function).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_core::types::{ParamDef, Strictness, Type, validate_params};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // First line: a type; the rest: a JSON value.
    let (ty_text, json_text) = text.split_once('\n').unwrap_or((text, "null"));
    let Ok(ty) = Type::parse(ty_text) else { return };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json_text) else { return };
    let first = ty.validate("v", &value, Strictness::Exact);
    assert_eq!(first, ty.validate("v", &value, Strictness::Exact));
    let _ = ty.validate("v", &value, Strictness::AllowExtra);
    let defs = vec![ParamDef::required("a", ty.clone()), ParamDef::optional("b", ty)];
    let _ = validate_params(&defs, &value);
});
