//! The cluster protocol between central and sites (SPEC §7): JSON over HTTP, called only
//! by central, authenticated with the site token (`Authorization: Bearer …`). Central's
//! remaining deadline travels in [`DEADLINE_HEADER`](crate::deadline::DEADLINE_HEADER).
//! Both sides use these types, so they cannot drift apart.

use crate::config::{
    Config, DatabaseDef, ExternalSystemDef, InstanceDef, NotificationListDef, ScriptSource,
    SmtpDef, TemplateDef,
};
use crate::error::{Failure, FailureClass};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Endpoint paths of a site's cluster endpoint.
pub mod paths {
    /// `POST` a [`Deployment`](super::Deployment).
    pub const DEPLOY: &str = "/cluster/deploy";
    /// `POST` a [`CallScript`](super::CallScript).
    pub const CALL: &str = "/cluster/call";
    /// `POST` a [`GetAttributes`](super::GetAttributes).
    pub const GET_ATTRIBUTES: &str = "/cluster/attributes/get";
    /// `POST` a [`SetAttributes`](super::SetAttributes).
    pub const SET_ATTRIBUTES: &str = "/cluster/attributes/set";
    /// `GET` a [`Health`](super::Health).
    pub const HEALTH: &str = "/cluster/health";
    /// `GET` parked messages (`?after=ID&limit=N`).
    pub const PARKED: &str = "/cluster/parked";
    /// `POST /cluster/parked/{id}/retry`.
    pub const PARKED_RETRY: &str = "/cluster/parked/{id}/retry";
    /// `POST /cluster/parked/{id}/discard`.
    pub const PARKED_DISCARD: &str = "/cluster/parked/{id}/discard";
}

/// Everything a site needs to run, as central deploys it (`[5.1-1-rt]`, `[5.5-1-rt]`,
/// `[6.1-1-rt]`, `[6.2-2]`). Secrets travel as references; the site resolves them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Content hash; equal revisions mean equal deployments.
    pub revision: String,
    /// The site it is for.
    pub site: String,
    /// Templates used by the site's instances.
    pub templates: BTreeMap<String, TemplateDef>,
    /// The site's instances.
    pub instances: BTreeMap<String, InstanceDef>,
    /// Shared scripts.
    pub shared_scripts: BTreeMap<String, ScriptSource>,
    /// External systems (deployed uniformly to all sites).
    pub external_systems: BTreeMap<String, ExternalSystemDef>,
    /// Database connections.
    pub databases: BTreeMap<String, DatabaseDef>,
    /// SMTP settings.
    pub smtp: Option<SmtpDef>,
    /// Notification lists.
    pub notification_lists: BTreeMap<String, NotificationListDef>,
}

impl Deployment {
    /// The deployment of `site` from a configuration.
    pub fn for_site(config: &Config, site: &str) -> Deployment {
        let instances: BTreeMap<_, _> = config
            .instances
            .iter()
            .filter(|(_, i)| i.site == site)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut deployment = Deployment {
            revision: String::new(),
            site: site.to_string(),
            // Every template, so a template edit redeploys every site that may use it.
            templates: config.templates.clone(),
            instances,
            shared_scripts: config.shared_scripts.clone(),
            external_systems: config.external_systems.clone(),
            databases: config.databases.clone(),
            smtp: config.smtp.clone(),
            notification_lists: config.notification_lists.clone(),
        };
        deployment.revision = deployment.content_hash();
        deployment
    }

    /// Hash of everything but the revision itself.
    pub fn content_hash(&self) -> String {
        let mut copy = self.clone();
        copy.revision = String::new();
        // Plain data with string keys: serialization cannot fail.
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        hex::encode(&Sha256::digest(&bytes)[..12])
    }
}

/// Answer to a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    /// The revision now active.
    pub revision: String,
}

/// Runs an instance script (`Route.To(code).Call(script, params)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallScript {
    /// Instance code.
    pub instance: String,
    /// Script name of the instance's template.
    pub script: String,
    /// Parameters (a JSON object).
    pub params: serde_json::Value,
}

/// A script's return value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptResult {
    /// The value.
    pub value: serde_json::Value,
}

/// Reads attributes (`GetAttribute`, `GetAttributes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAttributes {
    /// Instance code.
    pub instance: String,
    /// Attribute names.
    pub names: Vec<String>,
}

/// Attribute values by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeValues {
    /// The values.
    pub values: BTreeMap<String, serde_json::Value>,
}

/// Writes attributes (`SetAttribute`, `SetAttributes`): all or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetAttributes {
    /// Instance code.
    pub instance: String,
    /// New values by name.
    pub values: BTreeMap<String, serde_json::Value>,
}

/// Which node of a site answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves calls and drains store-and-forward.
    Active,
    /// Mirrors the active node.
    Standby,
    /// Votes and keeps the replicated log; never active (SPEC §8).
    Witness,
}

/// A site's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Site name.
    pub site: String,
    /// Role of the node answering.
    pub role: Role,
    /// Revision of the active deployment, if any.
    pub revision: Option<String>,
    /// Store-and-forward messages waiting.
    pub pending: u64,
    /// Store-and-forward messages parked.
    pub parked: u64,
    /// The same counts per category and target (empty from a site of an earlier release).
    #[serde(default)]
    pub queues: Vec<QueueCounts>,
    /// Messages the forwarder delivered since the node started (two readings give the
    /// delivery rate; 0 from a site of an earlier release).
    #[serde(default)]
    pub delivered: u64,
    /// The answering node's name (its `--node`, or the site's name for a single node).
    #[serde(default)]
    pub node: Option<String>,
    /// The node this one knows to be active.
    #[serde(default)]
    pub active_node: Option<String>,
}

/// A node's answer on `GET /health` (SPEC §8), without credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// Always `ok` when the node answers.
    pub status: String,
    /// `active`, `standby` or `witness`.
    pub role: Role,
    /// The answering node.
    pub node: String,
    /// The active node, if known.
    pub active_node: Option<String>,
}

/// Store-and-forward counts of one queue: a category and its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// `external`, `database` or `notification`.
    pub category: String,
    /// System, connection or list.
    pub target: String,
    /// Messages waiting for delivery.
    pub pending: u64,
    /// Messages parked.
    pub parked: u64,
}

/// A parked message as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedView {
    /// Message id.
    pub id: String,
    /// `external`, `database` or `notification`.
    pub category: String,
    /// System, connection or list.
    pub target: String,
    /// Retries made.
    pub attempts: u32,
    /// When it was buffered (RFC 3339).
    pub created: String,
    /// When it was parked (RFC 3339).
    pub parked: String,
    /// Why.
    pub reason: String,
    /// What would be delivered.
    pub payload: serde_json::Value,
}

/// A page of parked messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedList {
    /// The messages, oldest first.
    pub items: Vec<ParkedView>,
    /// Pass as `after` for the next page.
    pub next: Option<String>,
}

/// The error body of every cluster endpoint, carrying the failure's class so central
/// (and the script behind it) can tell transient from permanent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Machine-readable code.
    pub code: String,
    /// Transient or permanent, when it is an outbound failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<FailureClass>,
    /// The peer status behind the failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl ErrorBody {
    /// The body for a failure.
    pub fn from_failure(failure: &Failure) -> ErrorBody {
        ErrorBody {
            error: failure.message.clone(),
            code: failure.code.clone(),
            class: Some(failure.class),
            status: failure.status,
        }
    }

    /// The failure a body describes (permanent unless it says otherwise).
    pub fn into_failure(self) -> Failure {
        Failure {
            class: self.class.unwrap_or(FailureClass::Permanent),
            code: self.code,
            status: self.status,
            message: self.error,
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_follow_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = "[sites.a]\nlisten = \"127.0.0.1:1\"\ntoken = { env = \"T\" }\n[sites.b]\nlisten = \"127.0.0.1:2\"\ntoken = { env = \"T\" }\n";
        let config = Config::parse(text, &path).unwrap();
        let a1 = Deployment::for_site(&config, "a");
        let a2 = Deployment::for_site(&config, "a");
        assert_eq!(a1.revision, a2.revision);
        assert_eq!(a1.revision, a1.content_hash());
        let b = Deployment::for_site(&config, "b");
        assert_ne!(a1.revision, b.revision);
        let json = serde_json::to_string(&a1).unwrap();
        assert_eq!(serde_json::from_str::<Deployment>(&json).unwrap(), a1);
    }
}
