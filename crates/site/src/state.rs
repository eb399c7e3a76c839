//! What a site keeps on disk besides store-and-forward: its last deployment (so it
//! restarts without central) and its attribute values (so they survive restarts).

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use switchyard_core::protocol::Deployment;

/// Errors of the site's local state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The storage engine failed.
    #[error("site state storage error: {0}")]
    Storage(#[from] fjall::Error),
    /// A stored record does not decode.
    #[error("site state is corrupt: {0}")]
    Corrupt(String),
}

/// The site's local state (a fjall database under `data_dir/state`).
#[derive(Clone)]
pub struct SiteState {
    db: Database,
    meta: Keyspace,
    attributes: Keyspace,
}

impl std::fmt::Debug for SiteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteState")
    }
}

const DEPLOYMENT_KEY: &str = "deployment";

fn attribute_key(instance: &str, attribute: &str) -> Vec<u8> {
    let mut key = instance.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(attribute.as_bytes());
    key
}

impl SiteState {
    /// Opens (or creates) the state in `dir`.
    pub fn open(dir: &Path) -> Result<SiteState, StateError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StateError::Corrupt(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::builder(dir).cache_size(8 << 20).open()?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let attributes = db.keyspace("attributes", || {
            KeyspaceCreateOptions::default().max_memtable_size(8 << 20)
        })?;
        Ok(SiteState {
            db,
            meta,
            attributes,
        })
    }

    /// The last accepted deployment.
    pub fn deployment(&self) -> Result<Option<Deployment>, StateError> {
        match self.meta.get(DEPLOYMENT_KEY)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::Corrupt(format!("stored deployment: {e}"))),
            None => Ok(None),
        }
    }

    /// Stores a deployment durably before it goes live.
    pub fn save_deployment(&self, deployment: &Deployment) -> Result<(), StateError> {
        let bytes =
            serde_json::to_vec(deployment).map_err(|e| StateError::Corrupt(e.to_string()))?;
        self.meta.insert(DEPLOYMENT_KEY, bytes)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// Stored attribute values of an instance.
    pub fn attributes(&self, instance: &str) -> Result<BTreeMap<String, Value>, StateError> {
        let mut prefix = instance.as_bytes().to_vec();
        prefix.push(0);
        let mut out = BTreeMap::new();
        for item in self.attributes.prefix(&prefix) {
            let (key, value) = item.into_inner()?;
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            match serde_json::from_slice(&value) {
                Ok(v) => {
                    out.insert(name, v);
                }
                Err(e) => {
                    tracing::warn!(instance, attribute = %name, error = %e, "ignoring an undecodable stored attribute value")
                }
            }
        }
        Ok(out)
    }

    /// Stores attribute values (all in one batch). They reach the OS before this returns
    /// (surviving a crash of the process); the disk soon after.
    pub fn save_attributes(
        &self,
        instance: &str,
        values: &BTreeMap<String, Value>,
    ) -> Result<(), StateError> {
        let mut batch = self.db.batch();
        for (name, value) in values {
            let bytes =
                serde_json::to_vec(value).map_err(|e| StateError::Corrupt(e.to_string()))?;
            batch.insert(&self.attributes, attribute_key(instance, name), bytes);
        }
        batch.commit()?;
        self.db.persist(PersistMode::Buffer)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attributes_and_deployment_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = SiteState::open(dir.path()).unwrap();
            state
                .save_attributes(
                    "T-1",
                    &BTreeMap::from([("Level".into(), json!(42.5)), ("Name".into(), json!("a"))]),
                )
                .unwrap();
            state
                .save_attributes("T-10", &BTreeMap::from([("Level".into(), json!(1))]))
                .unwrap();
        }
        let state = SiteState::open(dir.path()).unwrap();
        let t1 = state.attributes("T-1").unwrap();
        assert_eq!(t1.len(), 2, "prefix must not leak T-10 into T-1");
        assert_eq!(t1["Level"], json!(42.5));
        assert!(state.deployment().unwrap().is_none());
    }
}
