//! Authentication in both directions.
//!
//! Inbound, [`RequireApiKey`] checks the caller's key against a [`KeyStore`]: unknown,
//! missing and disabled keys are all [`Unauthorized`] (one answer for all three, so a
//! caller learns nothing), a target the store does not know is [`UnknownTarget`], and a
//! key not approved for the target is [`Forbidden`] — in that order (SPEC §3).
//!
//! ```
//! use switchyard_layers::auth::{Principal, RequireApiKeyLayer, StaticKeyStore, hash_key};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut keys = StaticKeyStore::default();
//! keys.add_key("mes", &hash_key("s3cret-key"), true).unwrap();
//! keys.approve("GetTankLevel", "mes");
//! let api = ServiceBuilder::new()
//!     // Nobody reaches a method without an approved key.
//!     .layer(RequireApiKeyLayer::new(std::sync::Arc::new(keys)))
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let who = req.extensions().get::<Principal>().unwrap().key_name.clone();
//!         Ok::<_, switchyard_core::BoxError>(who)
//!     }));
//! let req = http::Request::post("/api/GetTankLevel").header("x-api-key", "s3cret-key").body(()).unwrap();
//! assert_eq!(api.oneshot(req).await.unwrap(), "mes");
//! # }
//! ```
//!
//! Outbound, [`AttachCredentials`] puts an API-key header, Basic or bearer credentials
//! on every request (`CD-ESG-3`).

mod attach_credentials;
mod bearer;
mod error;
mod key_store;
mod require_api_key;

pub use attach_credentials::{AttachCredentials, AttachCredentialsLayer, Credentials};
pub use bearer::{ExpectedToken, Rejection, RequireBearer, bearer_matches};
pub use error::{Forbidden, Unauthorized, UnknownTarget};
pub use key_store::{Authorization, KeyStore, Principal, StaticKeyStore, hash_key};
pub use require_api_key::{ApiKeyRequest, RequireApiKey, RequireApiKeyLayer, ResponseFuture};
