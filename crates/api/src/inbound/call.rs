//! The inbound request as it moves down the stack.

use crate::registry::MethodEntry;
use http::{HeaderMap, Method};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::Deadline;
use switchyard_core::types::ParamDef;
use switchyard_layers::auth::{ApiKeyRequest, Principal};
use switchyard_layers::deadline::HasDeadline;
use switchyard_layers::validate::HasParams;

/// A call of `POST /api/{method}`.
#[derive(Debug)]
pub struct InboundCall {
    /// The method name from the path.
    pub method: String,
    /// `X-API-Key`.
    pub api_key: Option<String>,
    /// The HTTP method used.
    pub http_method: Method,
    /// Request headers.
    pub headers: HeaderMap,
    /// The body, until it is read.
    pub body: Option<axum::body::Body>,
    /// Who the key belongs to, once authenticated.
    pub principal: Option<Principal>,
    /// The method, once resolved.
    pub entry: Option<Arc<MethodEntry>>,
    /// The parameters, once read.
    pub params: Value,
    /// The method's deadline, once resolved.
    pub deadline: Option<Deadline>,
}

impl ApiKeyRequest for InboundCall {
    fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    fn target(&self) -> &str {
        &self.method
    }

    fn set_principal(&mut self, principal: Principal) {
        self.principal = Some(principal);
    }
}

impl HasParams for InboundCall {
    fn params(&self) -> &Value {
        &self.params
    }

    fn param_defs(&self) -> &[ParamDef] {
        self.entry.as_ref().map_or(&[], |e| e.def.params.as_slice())
    }
}

impl HasDeadline for InboundCall {
    fn timeout(&self) -> Option<Duration> {
        self.entry.as_ref().map(|e| e.def.timeout)
    }

    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}
