use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Who a request was authenticated as: the key's *name* (the key itself is never kept).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Name of the API key.
    pub key_name: String,
}

/// Whether a principal may call a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    /// Approved.
    Allowed,
    /// The target exists; the key is not approved for it.
    Denied,
    /// No such target.
    UnknownTarget,
}

/// The extension point of [`RequireApiKey`](super::RequireApiKey): where keys and
/// approvals come from.
pub trait KeyStore: Send + Sync {
    /// The principal whose key hashes to the same value as `presented`, if it is enabled.
    /// Implementations compare hashes in constant time.
    fn authenticate(&self, presented: &str) -> Option<Principal>;

    /// Whether `principal` may call `target`.
    fn authorize(&self, principal: &Principal, target: &str) -> Authorization;
}

impl<K: KeyStore + ?Sized> KeyStore for Arc<K> {
    fn authenticate(&self, presented: &str) -> Option<Principal> {
        (**self).authenticate(presented)
    }

    fn authorize(&self, principal: &Principal, target: &str) -> Authorization {
        (**self).authorize(principal, target)
    }
}

/// The stored form of a key: `sha256:` and the lowercase hex digest.
pub fn hash_key(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

#[derive(Debug, Clone)]
struct StoredKey {
    name: String,
    digest: [u8; 32],
    enabled: bool,
}

/// A [`KeyStore`] over a fixed set of hashed keys and approvals (rebuilt on reload).
#[derive(Debug, Clone, Default)]
pub struct StaticKeyStore {
    keys: Vec<StoredKey>,
    approvals: HashMap<String, HashSet<String>>,
}

impl StaticKeyStore {
    /// Adds a key by its stored hash (`sha256:<hex>`).
    pub fn add_key(&mut self, name: &str, hash: &str, enabled: bool) -> Result<(), String> {
        let hex_digest = hash
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("key `{name}`: hash must start with `sha256:`"))?;
        let bytes =
            hex::decode(hex_digest).map_err(|_| format!("key `{name}`: hash is not hex"))?;
        let digest: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("key `{name}`: hash must be 32 bytes"))?;
        self.keys.push(StoredKey {
            name: name.to_string(),
            digest,
            enabled,
        });
        Ok(())
    }

    /// Declares a target; without approvals nobody may call it, but it exists.
    pub fn add_target(&mut self, target: &str) {
        self.approvals.entry(target.to_string()).or_default();
    }

    /// Approves `key_name` for `target` (declaring the target).
    pub fn approve(&mut self, target: &str, key_name: &str) {
        self.approvals
            .entry(target.to_string())
            .or_default()
            .insert(key_name.to_string());
    }
}

impl KeyStore for StaticKeyStore {
    fn authenticate(&self, presented: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Compare against every key, without stopping at a match, each comparison in
        // constant time: the time taken says nothing about how close a guess was.
        let mut found: Option<&StoredKey> = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        found.filter(|k| k.enabled).map(|k| Principal {
            key_name: k.name.clone(),
        })
    }

    fn authorize(&self, principal: &Principal, target: &str) -> Authorization {
        match self.approvals.get(target) {
            None => Authorization::UnknownTarget,
            Some(keys) if keys.contains(&principal.key_name) => Authorization::Allowed,
            Some(_) => Authorization::Denied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticates_by_hash_and_respects_enabled() {
        let mut store = StaticKeyStore::default();
        store.add_key("mes", &hash_key("k1"), true).unwrap();
        store.add_key("old", &hash_key("k2"), false).unwrap();
        store.approve("M", "mes");
        store.add_target("Locked");
        let mes = store.authenticate("k1").unwrap();
        assert_eq!(mes.key_name, "mes");
        assert_eq!(store.authenticate("k2"), None, "disabled key");
        assert_eq!(store.authenticate("k3"), None, "unknown key");
        assert_eq!(store.authenticate(""), None);
        assert_eq!(store.authorize(&mes, "M"), Authorization::Allowed);
        assert_eq!(store.authorize(&mes, "Locked"), Authorization::Denied);
        assert_eq!(store.authorize(&mes, "Nope"), Authorization::UnknownTarget);
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut store = StaticKeyStore::default();
        assert!(store.add_key("x", "md5:00", true).is_err());
        assert!(store.add_key("x", "sha256:zz", true).is_err());
    }

    /// What keeps the compare from leaking how close a guess was: the store keeps only
    /// the 32-byte SHA-256 digest of each key, a presented key is hashed before it is
    /// compared (`subtle`'s constant-time `ct_eq` over the two digests), so a guess that
    /// shares all but one byte with the key, or the stored hash itself, gets nowhere.
    /// (A timing test cannot show this on a shared machine: both guesses are hashed
    /// first, and a clock only adds noise.)
    #[test]
    fn only_the_digest_of_the_presented_key_is_compared() {
        let key = "k".repeat(64);
        let stored = hash_key(&key);
        let mut store = StaticKeyStore::default();
        store.add_key("mes", &stored, true).unwrap();
        assert_eq!(
            store.keys[0].digest.as_slice(),
            Sha256::digest(key.as_bytes()).as_slice()
        );
        assert_eq!(store.authenticate(&key).unwrap().key_name, "mes");
        let near = format!("{}x", &key[..63]);
        let far = format!("x{}", &key[1..]);
        let hex_digest = stored.trim_start_matches("sha256:");
        for guess in [
            near.as_str(),
            far.as_str(),
            &key[..63],
            stored.as_str(),
            hex_digest,
        ] {
            assert_eq!(store.authenticate(guess), None, "{guess}");
        }
    }
}
