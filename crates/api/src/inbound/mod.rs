//! The Inbound API (SPEC §3, `[7.1-*] [7.3-*] [7.4-*-rt]`, `CD-IA-*`): `POST /api/{method}`
//! through a tower stack built from the shared layers:
//!
//! ```text
//! respond: error → response, incident + failure log, metrics (above everything)
//!   └ active: only the active node serves                                      503 NOT_ACTIVE
//!     └ auth: X-API-Key, hash, constant time, enabled; method known; approved   401 / 404 / 403
//!       └ read: POST only, body limit, JSON content type, JSON object              405 / 413 / 415 / 400
//!         └ validate: parameters vs the method definition                          400 INVALID_PARAMS
//!           └ deadline: the method timeout, routed calls included                   504 TIMEOUT
//!             └ load shed: a full script pool is not ready                          503 OVERLOADED
//!               └ API script on the dedicated pool (Route.To, Database, Log)        500 / 502 / 503
//! ```
//! The stack is built once per registry ([`build`], in `stack.rs`) and stored.
//! No store-and-forward, ever (`CD-IA-8`), and no rate limiting (`CD-IA-5`).

mod active;
mod call;
mod error;
mod read;
mod respond;
mod response;
mod script;
mod stack;

pub use active::{RequireActive, RequireActiveLayer};
pub use call::InboundCall;
pub use error::{
    BadJson, BodyTimeout, MethodNotAllowed, NotActive, PayloadTooLarge, ScriptFailed,
    UnsupportedMediaType,
};
pub use read::{ReadCall, ReadCallLayer};
pub use respond::{Respond, RespondLayer};
pub use response::{ErrorAnswer, classify};
pub use script::ApiScript;
pub use stack::{InboundStack, StackParts, build};
