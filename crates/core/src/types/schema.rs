//! JSON Schema (as used by OpenAPI 3.0) for switchyard types.

use super::{ParamDef, Type};
use serde_json::{Map, Value, json};

impl Type {
    /// The JSON Schema of values of this type, in the OpenAPI 3.0 dialect
    /// (`nullable` is left to the caller, which knows whether the value is required).
    pub fn json_schema(&self) -> Value {
        match self {
            Type::Boolean => json!({"type": "boolean"}),
            Type::Integer => json!({"type": "integer", "format": "int64"}),
            Type::Float => json!({"type": "number", "format": "double"}),
            Type::String => json!({"type": "string"}),
            Type::DateTime => json!({"type": "string", "format": "date-time"}),
            Type::List(None) => json!({"type": "array", "items": {}}),
            Type::List(Some(inner)) => json!({"type": "array", "items": inner.json_schema()}),
            Type::Object(None) => json!({"type": "object"}),
            Type::Object(Some(fields)) => {
                let mut properties = Map::new();
                let mut required = Vec::new();
                for field in fields {
                    let mut schema = field.ty.json_schema();
                    if field.optional {
                        schema["nullable"] = Value::Bool(true);
                    } else {
                        required.push(Value::String(field.name.clone()));
                    }
                    properties.insert(field.name.clone(), schema);
                }
                let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
                if !required.is_empty() {
                    schema["required"] = Value::Array(required);
                }
                schema
            }
        }
    }
}

/// The JSON Schema of a flat parameter object (the body of `POST /api/{method}`).
pub fn params_schema(params: &[ParamDef]) -> Value {
    let fields = params
        .iter()
        .map(|p| super::Field {
            name: p.name.clone(),
            ty: p.ty.clone(),
            optional: !p.required,
        })
        .collect();
    Type::Object(Some(fields)).json_schema()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_schema_lists_required_fields_and_nullable_optional_ones() {
        let ty = Type::parse("Object{level: Float, unit?: String, at: List<DateTime>}").unwrap();
        let schema = ty.json_schema();
        assert_eq!(schema["required"], json!(["level", "at"]));
        assert_eq!(schema["properties"]["unit"]["nullable"], json!(true));
        assert_eq!(
            schema["properties"]["at"]["items"]["format"],
            json!("date-time")
        );
        assert_eq!(schema["additionalProperties"], json!(false));
    }
}
