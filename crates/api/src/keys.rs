//! API keys on the command line: `switchyard key new NAME` prints a new high-entropy key
//! once and writes only its `sha256:` hash into the configuration; `key disable` /
//! `key enable` flip `enabled`. The file is edited in place, keeping its formatting and
//! comments; changes apply on reload (`SIGHUP` or `POST /admin/reload`).

use rand::RngCore;
use std::path::Path;
use switchyard_layers::auth::hash_key;
use toml_edit::{DocumentMut, Item, Table, value};

/// A new random key: `sy_` and 43 URL-safe characters (256 bits).
pub fn generate_key() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "sy_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn edit(
    path: &Path,
    change: impl FnOnce(&mut DocumentMut) -> Result<(), String>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    change(&mut doc)?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

fn valid_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid key name (letters, digits, `-` and `_`)"
        ))
    }
}

/// Creates key `name`; returns the key (shown once, never stored).
pub fn new_key(path: &Path, name: &str) -> Result<String, String> {
    valid_name(name)?;
    let key = generate_key();
    let hash = hash_key(&key);
    edit(path, |doc| {
        let keys = doc.entry("api_keys").or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        let keys = keys.as_table_mut().ok_or("`api_keys` is not a table")?;
        if keys.contains_key(name) {
            return Err(format!("a key named `{name}` already exists"));
        }
        let mut entry = Table::new();
        entry["hash"] = value(hash.as_str());
        entry["enabled"] = value(true);
        keys.insert(name, Item::Table(entry));
        Ok(())
    })?;
    Ok(key)
}

/// Sets `enabled` of key `name`.
pub fn set_enabled(path: &Path, name: &str, enabled: bool) -> Result<(), String> {
    edit(path, |doc| {
        let entry = doc
            .get_mut("api_keys")
            .and_then(|k| k.get_mut(name))
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| format!("no key named `{name}` in [api_keys]"))?;
        entry.insert("enabled", value(enabled));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_disabled_and_enabled_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(
            &path,
            "# my plant\n[sites.s]\nlisten = \"127.0.0.1:1\"\ntoken = \"site-token-0001\"\n",
        )
        .unwrap();
        let key = new_key(&path, "mes").unwrap();
        assert!(key.starts_with("sy_") && key.len() > 40);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my plant"), "comments kept: {text}");
        assert!(text.contains(&hash_key(&key)), "{text}");
        assert!(!text.contains(&key), "the key itself is never stored");
        assert!(
            new_key(&path, "mes")
                .unwrap_err()
                .contains("already exists")
        );
        set_enabled(&path, "mes", false).unwrap();
        let config = switchyard_core::config::Config::load(&path).unwrap();
        assert!(!config.api_keys["mes"].enabled);
        set_enabled(&path, "mes", true).unwrap();
        assert!(
            switchyard_core::config::Config::load(&path)
                .unwrap()
                .api_keys["mes"]
                .enabled
        );
        assert!(set_enabled(&path, "nobody", true).is_err());
        assert_ne!(generate_key(), generate_key());
    }
}
