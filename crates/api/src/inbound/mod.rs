//! The Inbound API (SPEC §3, `[7.1-*] [7.3-*] [7.4-*-rt]`, `CD-IA-*`): `POST /api/{method}`
//! through a tower stack built from the shared layers:
//!
//! ```text
//! error → response (above everything)
//!   └ auth: X-API-Key, hash, constant time, enabled; method known; approved   401 / 404 / 403
//!     └ read: POST only, body limit, JSON content type, JSON object              405 / 413 / 415 / 400
//!       └ validate: parameters vs the method definition                          400 INVALID_PARAMS
//!         └ deadline: the method timeout, routed calls included                   504 TIMEOUT
//!           └ API script on the dedicated pool (Route.To, Database, Log)          500 / 502 / 503
//! ```
//! No store-and-forward, ever (`CD-IA-8`), and no rate limiting (`CD-IA-5`).

mod call;
mod error;
mod read;
mod response;
mod script;

pub use call::InboundCall;
pub use error::{
    BadJson, BodyTimeout, MethodNotAllowed, NotActive, PayloadTooLarge, ScriptFailed,
    UnsupportedMediaType,
};
pub use read::{ReadCall, ReadCallLayer};
pub use response::{ErrorAnswer, classify};
pub use script::ApiScript;
