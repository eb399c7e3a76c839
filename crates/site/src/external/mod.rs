//! The External System Gateway (SPEC §5, `[5.1-*-rt] [5.2-*]`, `KDD-ext-1..3`,
//! `CD-ESG-1..6`): sites call external HTTP/JSON systems directly, through a stack built
//! from the shared layers:
//!
//! ```text
//! validate ─▶ store-and-forward (CachedCall only) ─▶ method call (URL, params, decode, returns)
//!          ─▶ classify ─▶ deadline ─▶ attach credentials ─▶ reqwest
//! ```
//!
//! The forwarder delivers buffered calls through the same stack below store-and-forward,
//! with the same `Idempotency-Key` on every attempt.

mod call;
mod transport;

use crate::messages::{ExternalMessage, SfMessage};
pub use call::{ExternalCall, MethodCall};
pub use transport::Reqwest;

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use switchyard_core::config::{ExternalSystemDef, HttpAuth};
use switchyard_core::error::codes;
use switchyard_core::{BoxError, Deadline, Failure, MessageId};
use switchyard_layers::auth::{AttachCredentialsLayer, Credentials};
use switchyard_layers::classify::{ClassifyLayer, HttpStatus};
use switchyard_layers::deadline::EnforceDeadlineLayer;
use switchyard_layers::drive;
use switchyard_layers::store_forward::{Delivery, FjallOutbox, StoreForwardLayer, StoredMessage};
use switchyard_layers::validate::{Invalid, ValidateLayer};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

/// One external system, ready to call: its definition and its stacks, built once when
/// the deployment is applied (one HTTP client per system, pooling connections, and its
/// credentials inside).
pub struct SystemClient {
    /// System name.
    pub name: String,
    /// Definition.
    pub def: ExternalSystemDef,
    /// Credentials, or why they could not be prepared (named, never the secret).
    credentials: Result<Credentials, String>,
    stacks: Stacks,
}

/// The stored stacks of one system; each request clones one and drives it through
/// `ready()` and `call()`.
struct Stacks {
    /// `ExternalSystem.Call`: validate → the direct stack.
    call: BoxCloneSyncService<ExternalCall, Value, BoxError>,
    /// `ExternalSystem.CachedCall`: validate → store-and-forward → the direct stack.
    cached: BoxCloneSyncService<ExternalCall, Delivery<Value>, BoxError>,
    /// The forwarder's retries: the direct stack alone.
    direct: BoxCloneSyncService<ExternalCall, Value, BoxError>,
}

impl std::fmt::Debug for SystemClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemClient")
            .field("name", &self.name)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// All external systems of a deployment.
#[derive(Debug, Clone)]
pub struct ExternalGateway {
    systems: Arc<HashMap<String, Arc<SystemClient>>>,
}

fn credentials(def: &ExternalSystemDef, base_dir: &Path) -> Result<Credentials, String> {
    match &def.auth {
        HttpAuth::None => Ok(Credentials::none()),
        HttpAuth::ApiKey { header, key } => Credentials::api_key(header, &key.resolve(base_dir)?),
        HttpAuth::Basic { username, password } => {
            Credentials::basic(username, &password.resolve(base_dir)?)
        }
        HttpAuth::Bearer { token } => Credentials::bearer(&token.resolve(base_dir)?),
    }
}

impl ExternalGateway {
    /// Prepares every system. A secret that cannot be read makes that system's calls
    /// fail with a message naming it (the deployment itself still goes live).
    pub fn new(
        defs: &BTreeMap<String, ExternalSystemDef>,
        base_dir: &Path,
        outbox: FjallOutbox,
    ) -> ExternalGateway {
        let mut systems = HashMap::new();
        for (name, def) in defs {
            let credentials = credentials(def, base_dir);
            if let Err(e) = &credentials {
                tracing::warn!(system = %name, error = %e, "external system credentials unavailable");
            }
            let direct = direct(def, &credentials, Reqwest::new(def.timeout));
            let stacks = Stacks {
                call: BoxCloneSyncService::new(
                    ServiceBuilder::new()
                        // Nothing leaves the site that does not match the method's definition.
                        .layer(ValidateLayer::params())
                        .service(direct.clone()),
                ),
                cached: BoxCloneSyncService::new(
                    ServiceBuilder::new()
                        // Invalid calls are refused before anything is stored.
                        .layer(ValidateLayer::params())
                        // Transient failures are kept on disk and retried by the forwarder.
                        .layer(StoreForwardLayer::new(outbox.clone()))
                        .service(direct.clone()),
                ),
                direct: BoxCloneSyncService::new(direct),
            };
            systems.insert(
                name.clone(),
                Arc::new(SystemClient {
                    name: name.clone(),
                    def: def.clone(),
                    credentials,
                    stacks,
                }),
            );
        }
        ExternalGateway {
            systems: Arc::new(systems),
        }
    }

    fn request(
        &self,
        system: &str,
        method: &str,
        params: Value,
        id: Option<MessageId>,
        deadline: Option<Deadline>,
    ) -> Result<ExternalCall, Failure> {
        let client = self.systems.get(system).ok_or_else(|| {
            Failure::permanent(
                codes::NOT_FOUND,
                format!("no external system named `{system}`"),
            )
        })?;
        let method_def = client.def.methods.get(method).ok_or_else(|| {
            Failure::permanent(
                codes::NOT_FOUND,
                format!("external system `{system}` has no method `{method}`"),
            )
        })?;
        Ok(ExternalCall {
            id,
            system: client.clone(),
            method: method.to_string(),
            def: Arc::new(method_def.clone()),
            params,
            deadline,
        })
    }

    /// `ExternalSystem.Call`: synchronous; every failure goes back to the caller.
    pub async fn call(
        &self,
        system: &str,
        method: &str,
        params: Value,
        deadline: Option<Deadline>,
    ) -> Result<Value, Failure> {
        let request = self.request(system, method, params, None, deadline)?;
        let stack = request.system.stacks.call.clone();
        drive(stack, request)
            .await
            .map_err(|e| into_failure(e, system, method))
    }

    /// `ExternalSystem.CachedCall`: a transient failure is buffered (the caller does not
    /// wait); a permanent one comes back. The response of a success is discarded.
    pub async fn cached_call(
        &self,
        system: &str,
        method: &str,
        params: Value,
        deadline: Option<Deadline>,
    ) -> Result<Option<MessageId>, Failure> {
        let request = self.request(system, method, params, Some(MessageId::new()), deadline)?;
        let stack = request.system.stacks.cached.clone();
        match drive(stack, request).await {
            Ok(Delivery::Delivered(_)) => Ok(None),
            Ok(Delivery::Buffered { id }) => Ok(Some(id)),
            Err(e) => Err(into_failure(e, system, method)),
        }
    }

    /// Delivers a buffered call (the forwarder's path: the stack below store-and-forward,
    /// the message id as `Idempotency-Key`).
    pub async fn deliver(&self, message: &StoredMessage) -> Result<(), Failure> {
        let ExternalMessage {
            system,
            method,
            params,
        } = ExternalMessage::from_stored(message)?;
        let (system, method) = (system.as_str(), method.as_str());
        let request = self.request(system, method, params, Some(message.id), None)?;
        let stack = request.system.stacks.direct.clone();
        drive(stack, request)
            .await
            .map(|_| ())
            .map_err(|e| into_failure(e, system, method))
    }
}

/// The stack below store-and-forward, built once per system: method call (URL,
/// encoding, decoding, `returns`) over classify → deadline → credentials → reqwest.
fn direct(
    def: &ExternalSystemDef,
    credentials: &Result<Credentials, String>,
    transport: Reqwest,
) -> MethodCall<
    impl tower::Service<
        http::Request<bytes::Bytes>,
        Response = http::Response<bytes::Bytes>,
        Error = BoxError,
        Future: Send,
    >
    + Clone
    + Send
    + Sync
    + 'static
    + use<>,
> {
    let http = ServiceBuilder::new()
        // Statuses and transport errors become transient or permanent failures.
        .layer(ClassifyLayer::new(HttpStatus))
        // The system timeout, capped by what is left of the script's deadline.
        .layer(EnforceDeadlineLayer::new(Some(def.timeout)))
        // Credentials on every request (CD-ESG-3).
        .layer(AttachCredentialsLayer::new(
            credentials.clone().unwrap_or_default(),
        ))
        .service(transport);
    MethodCall::new(http, credentials.as_ref().err().cloned())
}

fn into_failure(err: BoxError, system: &str, method: &str) -> Failure {
    if let Some(invalid) = err.downcast_ref::<Invalid>() {
        return Failure::permanent(
            codes::INVALID_PARAMS,
            format!("{system}.{method}: {invalid}"),
        );
    }
    let failure = switchyard_layers::classify::failure_of(&*err);
    if failure.message.starts_with(&format!("{system}.{method}")) {
        failure
    } else {
        failure.context(format!("{system}.{method}"))
    }
}
