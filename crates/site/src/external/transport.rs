//! The HTTP transport: reqwest, one client per external system (connection pooling).

use bytes::Bytes;
use futures::future::BoxFuture;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::BoxError;
use tower::Service;

/// Largest response body accepted from an external system.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// reqwest as a tower service over `http` types.
#[derive(Clone, Debug)]
pub struct Reqwest {
    client: reqwest::Client,
}

impl Reqwest {
    /// A client whose connection attempts give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Reqwest {
        switchyard_core::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot build the HTTP client with its settings; using defaults");
                reqwest::Client::new()
            });
        Reqwest { client }
    }
}

impl Service<http::Request<Bytes>> for Reqwest {
    type Response = http::Response<Bytes>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Bytes>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut response = client.execute(request).await?;
            let mut builder = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(switchyard_core::Failure::permanent(
                        switchyard_core::error::codes::BAD_RESPONSE,
                        format!(
                            "the response is larger than {} MiB",
                            MAX_RESPONSE_BYTES >> 20
                        ),
                    )
                    .into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(builder.body(Bytes::from(body))?)
        })
    }
}
