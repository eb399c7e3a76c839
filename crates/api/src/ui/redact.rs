//! What the console never shows: fields of a payload whose name says they hold a
//! credential, and the password in a URL (`scheme://user:password@host`). Applied to
//! every payload and reason the console renders or exports.

use serde_json::Value;

/// Replacement text of a redacted value.
pub(crate) const REDACTED: &str = "***";

/// Parts of field names that mark a credential (compared in lower case, without `-`
/// and `_`).
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "credential",
    "privatekey",
    "cookie",
];

fn is_secret_name(name: &str) -> bool {
    let name: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_NAMES.iter().any(|s| name.contains(s))
}

/// A copy of `value` with credential fields replaced by `***` at any depth, and URL
/// passwords masked in every string.
pub(crate) fn payload(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    let v = if is_secret_name(k) && !v.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        payload(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(payload).collect()),
        Value::String(text) => Value::String(text_with_urls(text)),
        other => other.clone(),
    }
}

/// `text` with the password of every `scheme://user:password@host` masked.
pub(crate) fn text_with_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first `/`, `?`, `#` or white space.
        let end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(userinfo),
                }
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credential_fields_are_redacted_at_any_depth() {
        let value = json!({
            "system": "ERP",
            "params": {
                "tank": "T-1",
                "Password": "hunter2",
                "api_key": "k-123",
                "nested": [{ "access-token": "t-456", "level": 3 }],
                "client_secret": null
            }
        });
        let shown = payload(&value);
        let text = shown.to_string();
        for secret in ["hunter2", "k-123", "t-456"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(shown["params"]["tank"], "T-1");
        assert_eq!(shown["params"]["nested"][0]["level"], 3);
        assert_eq!(shown["params"]["Password"], REDACTED);
        // Nothing to hide in a null.
        assert_eq!(shown["params"]["client_secret"], Value::Null);
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            text_with_urls("connect postgres://app:s3cret@db:5432/x failed"),
            "connect postgres://app:***@db:5432/x failed"
        );
        assert_eq!(
            text_with_urls("see http://host/a@b and mssql://u@h"),
            "see http://host/a@b and mssql://u@h"
        );
        assert_eq!(text_with_urls("no url: a:b@c"), "no url: a:b@c");
        assert_eq!(text_with_urls("x://a:b@"), "x://a:***@");
        assert_eq!(
            payload(&json!(["smtp://u:p@mail"])),
            json!(["smtp://u:***@mail"])
        );
    }
}
