//! `GET /openapi.json`: an OpenAPI 3.0 document generated from the method definitions.
//! A caller sees only the methods its key is approved for.

use crate::registry::Registry;
use serde_json::{Map, Value, json};
use switchyard_core::types::params_schema;
use switchyard_layers::auth::Principal;

/// The document for `principal`.
pub fn document(registry: &Registry, principal: &Principal) -> Value {
    let mut paths = Map::new();
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let error_response = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": error } } });
    for method in registry.approved_methods(principal) {
        let returns = method
            .def
            .returns
            .as_ref()
            .map_or(json!({}), |t| t.json_schema());
        // A body is required exactly when a parameter is: an empty body is `{}`.
        let body_required = method.def.params.iter().any(|p| p.required);
        let operation = json!({
            "post": {
                "operationId": method.name,
                "summary": format!("Calls the `{}` method (timeout {})", method.name, humantime::format_duration(method.def.timeout)),
                "security": [{ "ApiKey": [] }],
                "requestBody": {
                    "required": body_required,
                    "content": { "application/json": { "schema": params_schema(&method.def.params) } }
                },
                "responses": {
                    "200": { "description": "The method's return value", "content": { "application/json": { "schema": returns } } },
                    "400": error_response("Body is not a JSON object (BAD_JSON) or parameters are invalid (INVALID_PARAMS)"),
                    "401": error_response("Missing, unknown or disabled API key (UNAUTHORIZED)"),
                    "403": error_response("The key is not approved for this method (FORBIDDEN)"),
                    "404": error_response("No such method (METHOD_NOT_FOUND)"),
                    "405": error_response("Only POST is allowed (METHOD_NOT_ALLOWED)"),
                    "408": error_response("The body did not arrive in time (REQUEST_TIMEOUT)"),
                    "413": error_response("The body is too large (PAYLOAD_TOO_LARGE)"),
                    "415": error_response("The body is not JSON (UNSUPPORTED_MEDIA_TYPE)"),
                    "500": error_response("The script failed (SCRIPT_ERROR); see the incident in the failure log"),
                    "502": error_response("A site the method needs is unreachable (SITE_UNREACHABLE)"),
                    "503": error_response("Too many calls in progress (OVERLOADED) or standby node (NOT_ACTIVE)"),
                    "504": error_response("The method timeout elapsed (TIMEOUT)")
                }
            }
        });
        paths.insert(format!("/api/{}", method.name), operation);
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "switchyard Inbound API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "ApiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "code"],
                    "properties": {
                        "error": { "type": "string" },
                        "code": { "type": "string" },
                        "incident": { "type": "string" }
                    }
                }
            }
        }
    })
}
