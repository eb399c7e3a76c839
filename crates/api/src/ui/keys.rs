//! API keys and the methods each may call. Enabling or disabling a key here does what
//! `switchyard key enable|disable` does — the configuration file is edited in place —
//! and then reloads central, so it takes effect at once.

use super::Console;
use super::layout::{self, Nav, csrf_field};
use super::overview::enc;
use super::session::Session;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;
use switchyard_layers::auth::Principal;

/// What the page reports after a change (`?changed=NAME&enabled=BOOL`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Changed {
    #[serde(default)]
    changed: String,
    #[serde(default)]
    enabled: String,
}

/// `GET /ui/keys`.
pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Query(changed): Query<Changed>,
) -> Response {
    let registry = console.central.registry();
    let config = &registry.config;
    let approved = |key: &str| -> Vec<&str> {
        config
            .api_methods
            .iter()
            .filter(|(_, m)| m.approved_keys.iter().any(|k| k == key))
            .map(|(name, _)| name.as_str())
            .collect()
    };
    let body = html! {
        h1 { "Keys and methods" }
        @if config.api_keys.contains_key(&changed.changed) {
            p.done #outcome {
                "Key " strong { (changed.changed) } " "
                @if changed.enabled == "true" { "enabled" } @else { "disabled" }
                " in " span.mono { (console.central.config_path().display()) } "; central reloaded."
            }
        }
        h2 { "API keys" }
        @if config.api_keys.is_empty() {
            p { "No API keys. Create one with " code { "switchyard key new NAME" } "." }
        } @else {
            table {
                thead { tr { th { "Key" } th { "State" } th { "May call" } th { "" } } }
                tbody {
                    @for (name, key) in &config.api_keys {
                        tr id=(format!("key-{name}")) {
                            td { strong { (name) } }
                            td {
                                @if key.enabled { span.ok { "enabled" } } @else { span.bad { "disabled" } }
                            }
                            td {
                                @let methods = approved(name);
                                @if methods.is_empty() { small { "no method" } }
                                @for (i, m) in methods.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (m)
                                }
                                br;
                                a href=(format!("/ui/keys/{}/openapi.json", enc(name))) { small { "OpenAPI document as this key sees it" } }
                            }
                            td {
                                form method="post" action=(format!("/ui/keys/{}/{}", enc(name), if key.enabled { "disable" } else { "enable" })) {
                                    (csrf_field(&session))
                                    @if key.enabled {
                                        button.danger type="submit" { "Disable" }
                                    } @else {
                                        button type="submit" { "Enable" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { small {
            "Callers fetch their own document at " a href="/openapi.json" { "/openapi.json" }
            " with their key in X-API-Key. A disabled key is refused (401) as soon as central has reloaded."
        } }
        h2 { "Methods" }
        table {
            thead { tr { th { "Method" } th { "Timeout" } th { "Parameters" } th { "Returns" } th { "Approved keys" } } }
            tbody {
                @for (name, method) in &config.api_methods {
                    tr {
                        td { strong { (name) } }
                        td { (humantime::format_duration(method.timeout)) }
                        td {
                            @for (i, p) in method.params.iter().enumerate() {
                                @if i > 0 { ", " }
                                span.mono { (p.name) ": " (p.ty) @if !p.required { "?" } }
                            }
                        }
                        td.mono { @match &method.returns { Some(t) => (t), None => "any" } }
                        td { (method.approved_keys.join(", ")) }
                    }
                }
            }
        }
    };
    layout::respond(
        StatusCode::OK,
        layout::page("Keys and methods", Some(&session), Nav::Keys, None, body),
    )
}

/// `POST /ui/keys/{name}/enable|disable`: edits the configuration file, then reloads.
pub(crate) async fn set_enabled(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => {
            return layout::error_page(
                StatusCode::NOT_FOUND,
                Some(&session),
                "Keys are enabled or disabled.",
            );
        }
    };
    if !console
        .central
        .registry()
        .config
        .api_keys
        .contains_key(&name)
    {
        return layout::error_page(
            StatusCode::NOT_FOUND,
            Some(&session),
            &format!("There is no API key named “{name}”."),
        );
    }
    let path = console.central.config_path().to_path_buf();
    let key = name.clone();
    let edited =
        tokio::task::spawn_blocking(move || crate::keys::set_enabled(&path, &key, enabled))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
    if let Err(e) = edited {
        return layout::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(&session),
            &format!("The configuration file was not changed: {e}"),
        );
    }
    tracing::info!(key = %name, enabled, "console: API key changed");
    if let Err(e) = console.central.reload().await {
        return layout::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(&session),
            &format!(
                "The configuration file now has key “{name}” {}, but central could not reload it, so the running configuration is unchanged: {e}",
                if enabled { "enabled" } else { "disabled" }
            ),
        );
    }
    Redirect::to(&format!(
        "/ui/keys?changed={}&enabled={enabled}",
        enc(&name)
    ))
    .into_response()
}

/// `GET /ui/keys/{name}/openapi.json`: the document a caller with this key gets.
pub(crate) async fn openapi(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Response {
    let registry = console.central.registry();
    if !registry.config.api_keys.contains_key(&name) {
        return layout::error_page(
            StatusCode::NOT_FOUND,
            Some(&session),
            &format!("There is no API key named “{name}”."),
        );
    }
    let principal = Principal { key_name: name };
    let mut response = axum::Json(crate::openapi::document(&registry, &principal)).into_response();
    layout::secure_headers(response.headers_mut());
    response
}
