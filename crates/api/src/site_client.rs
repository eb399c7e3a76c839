//! Central's client of the sites' cluster endpoints (SPEC §7): a tower stack of
//! deadline + classify over a transport that tries the site's nodes in order — never
//! store-and-forward (`CD-IA-8`). No node answering is `SITE_UNREACHABLE`, found out
//! fast (the connect timeout, not the whole method timeout).

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::config::Config;
use switchyard_core::deadline::DEADLINE_HEADER;
use switchyard_core::error::codes;
use switchyard_core::protocol::{
    self, AttributeValues, CallScript, Deployed, Deployment, ErrorBody, GetAttributes, Health,
    ParkedList, ScriptResult, SetAttributes,
};
use switchyard_core::script::PerThreadClient;
use switchyard_core::{BoxError, Deadline, Failure};
use switchyard_layers::auth::Credentials;
use switchyard_layers::classify::{Classify, ClassifyFailures, ClassifyLayer};
use switchyard_layers::deadline::{EnforceDeadline, EnforceDeadlineLayer, HasDeadline};
use tower::{Service, ServiceBuilder};

/// Where each site is and how to prove we are central.
#[derive(Debug, Default)]
pub struct SiteDirectory {
    sites: HashMap<String, SiteEndpoint>,
    instances: HashMap<String, String>,
    /// The CAs of the sites whose link runs over TLS: the only roots the client trusts.
    roots: Vec<reqwest::Certificate>,
}

#[derive(Debug)]
struct SiteEndpoint {
    nodes: Vec<String>,
    /// The node that answered last (a pair's active node): tried first.
    preferred: std::sync::atomic::AtomicUsize,
    /// `Authorization: Bearer <site token>`, prepared once (the cluster endpoint
    /// verifies it with `RequireBearer`).
    credentials: Result<http::HeaderMap, String>,
    /// `http`, or `https` when the site's link runs over TLS (an error when its CA could
    /// not be read: no plain-text fallback).
    scheme: Result<&'static str, String>,
}

impl SiteDirectory {
    /// The directory of a configuration (`CD-IA-6`: an instance's site comes from the
    /// deployed configuration).
    pub fn from_config(config: &Config) -> SiteDirectory {
        let mut roots = Vec::new();
        let sites = config
            .sites
            .iter()
            .map(|(name, site)| {
                let scheme = match &site.tls {
                    None => Ok("http"),
                    Some(tls) => switchyard_core::tls::ca_certificate(&tls.ca)
                        .map(|ca| {
                            roots.push(ca);
                            "https"
                        })
                        .map_err(|e| format!("sites.{name}.{e}")),
                };
                (
                    name.clone(),
                    SiteEndpoint {
                        nodes: site.nodes.clone(),
                        preferred: std::sync::atomic::AtomicUsize::new(0),
                        credentials: site
                            .token
                            .resolve_token(&config.base_dir)
                            .and_then(|token| Credentials::bearer(&token))
                            .map(|credentials| {
                                let mut headers = http::HeaderMap::new();
                                credentials.apply(&mut headers);
                                headers
                            }),
                        scheme,
                    },
                )
            })
            .collect();
        let instances = config
            .instances
            .iter()
            .map(|(code, i)| (code.clone(), i.site.clone()))
            .collect();
        SiteDirectory {
            sites,
            instances,
            roots,
        }
    }

    /// The site of an instance.
    pub fn site_of(&self, instance: &str) -> Result<&str, Failure> {
        self.instances
            .get(instance)
            .map(String::as_str)
            .ok_or_else(|| {
                Failure::permanent(
                    codes::NOT_FOUND,
                    format!("no instance `{instance}` is deployed"),
                )
            })
    }
}

/// One request to a site.
#[derive(Debug, Clone)]
pub struct SiteRequest {
    site: String,
    method: http::Method,
    path: String,
    body: Bytes,
    deadline: Option<Deadline>,
    timeout: Option<Duration>,
}

impl HasDeadline for SiteRequest {
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}

/// A site's answer: status and body.
#[derive(Debug, Clone)]
pub struct SiteResponse {
    site: String,
    status: http::StatusCode,
    body: Bytes,
}

/// Tries the site's nodes in order; the first that accepts the connection answers.
#[derive(Clone, Debug)]
struct SiteTransport {
    /// Script threads (`Route.To`) use their own connections, the async runtime the shared ones.
    http: PerThreadClient,
    directory: Arc<SiteDirectory>,
}

impl Service<SiteRequest> for SiteTransport {
    type Response = SiteResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<SiteResponse, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: SiteRequest) -> Self::Future {
        let http = self.http.clone();
        let directory = self.directory.clone();
        Box::pin(async move {
            // Chosen where the request runs, not where it was made.
            let http = http.get();
            let endpoint = directory.sites.get(&request.site).ok_or_else(|| {
                Failure::permanent(
                    codes::NOT_FOUND,
                    format!("no site named `{}`", request.site),
                )
            })?;
            let credentials = endpoint.credentials.as_ref().map_err(|e| {
                Failure::permanent(codes::AUTH, format!("sites.{}.token: {e}", request.site))
            })?;
            let scheme = endpoint
                .scheme
                .clone()
                .map_err(|e| Failure::permanent(codes::CONNECTION, e))?;
            // A pair's standby answers 503 NOT_ACTIVE: the next node is tried, and while
            // a failover is under way (no node active yet) the round is repeated until
            // one is, within the caller's deadline (the deadline layer cuts it off).
            let started = std::time::Instant::now();
            loop {
                match try_nodes(&http, &request, endpoint, credentials, scheme).await? {
                    Round::Answered(response) => return Ok(response),
                    Round::NoneActive(tried) if started.elapsed() < FAILOVER_WAIT => {
                        tracing::debug!(site = %request.site, tried = %tried.join("; "), "no active node yet; trying again");
                        tokio::time::sleep(FAILOVER_POLL).await;
                    }
                    Round::NoneActive(tried) => {
                        return Err(Failure::transient(
                            codes::NOT_ACTIVE,
                            format!(
                                "no node of site {} is active ({})",
                                request.site,
                                tried.join("; ")
                            ),
                        )
                        .into());
                    }
                    Round::Unreachable(tried) => {
                        return Err(Failure::transient(
                            codes::SITE_UNREACHABLE,
                            format!(
                                "no node of site {} answered ({})",
                                request.site,
                                tried.join("; ")
                            ),
                        )
                        .into());
                    }
                }
            }
        })
    }
}

/// Longest wait for a pair's failover when the caller set no deadline.
const FAILOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Pause between rounds while no node of a pair is active.
const FAILOVER_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The outcome of trying every node of a site once.
enum Round {
    /// A node that does the site's work answered.
    Answered(SiteResponse),
    /// At least one node answered, but none is active (a failover is under way).
    NoneActive(Vec<String>),
    /// No node took the connection.
    Unreachable(Vec<String>),
}

/// Tries the site's nodes once, the last active one first. A request is sent again
/// to another node only when it never reached one (connection refused or timed out)
/// or a standby refused it unread: never twice to a node that may have run it.
async fn try_nodes(
    http: &reqwest::Client,
    request: &SiteRequest,
    endpoint: &SiteEndpoint,
    credentials: &http::HeaderMap,
    scheme: &str,
) -> Result<Round, BoxError> {
    use std::sync::atomic::Ordering;
    let count = endpoint.nodes.len();
    let first = endpoint.preferred.load(Ordering::Relaxed) % count.max(1);
    let mut tried = Vec::new();
    let mut standby = false;
    for i in (0..count).map(|k| (first + k) % count) {
        let node = &endpoint.nodes[i];
        let mut builder = http
            .request(
                request.method.clone(),
                format!("{scheme}://{node}{}", request.path),
            )
            .headers(credentials.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(request.body.clone());
        if let Some(deadline) = request.deadline {
            builder = builder.header(DEADLINE_HEADER, deadline.to_header_value());
        }
        match builder.send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.bytes().await.map_err(|e| {
                    Failure::transient(
                        codes::SITE_UNREACHABLE,
                        format!(
                            "site {} ({node}) broke off its answer: {}",
                            request.site,
                            e.without_url()
                        ),
                    )
                })?;
                if status == http::StatusCode::SERVICE_UNAVAILABLE
                    && let Ok(refusal) = serde_json::from_slice::<ErrorBody>(&body)
                    && refusal.code == codes::NOT_ACTIVE
                {
                    standby = true;
                    tried.push(format!("{node}: {}", refusal.error));
                    continue;
                }
                endpoint.preferred.store(i, Ordering::Relaxed);
                return Ok(Round::Answered(SiteResponse {
                    site: request.site.clone(),
                    status,
                    body,
                }));
            }
            // Nobody took the connection (refused, or the connect timeout): next node.
            Err(e) if e.is_connect() || e.is_timeout() => {
                tried.push(format!(
                    "{node}: {}",
                    switchyard_core::classify::error_chain(&e.without_url())
                ));
            }
            Err(e) => {
                return Err(Failure::transient(
                    codes::SITE_UNREACHABLE,
                    format!(
                        "site {} ({node}) failed during the call: {}",
                        request.site,
                        switchyard_core::classify::error_chain(&e.without_url())
                    ),
                )
                .into());
            }
        }
    }
    Ok(if standby {
        Round::NoneActive(tried)
    } else {
        Round::Unreachable(tried)
    })
}

/// Site answers → failures: error bodies keep the class the site gave them.
#[derive(Clone, Copy, Debug)]
struct SiteStatus;

impl Classify<SiteResponse> for SiteStatus {
    fn classify_response(&self, response: SiteResponse) -> Result<SiteResponse, Failure> {
        if response.status.is_success() {
            return Ok(response);
        }
        if response.status == http::StatusCode::UNAUTHORIZED {
            return Err(Failure::permanent(
                codes::AUTH,
                format!(
                    "site {} refused central's token (check sites.{}.token on both sides)",
                    response.site, response.site
                ),
            ));
        }
        match serde_json::from_slice::<ErrorBody>(&response.body) {
            Ok(body) => Err(body.into_failure().with_status(response.status.as_u16())),
            Err(_) => Err(Failure::permanent(
                codes::BAD_RESPONSE,
                format!(
                    "site {} answered HTTP {} with an unreadable body",
                    response.site, response.status
                ),
            )),
        }
    }

    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Failure {
        Failure::find(error).cloned().unwrap_or_else(|| {
            Failure::transient(
                codes::SITE_UNREACHABLE,
                switchyard_core::classify::error_chain(error),
            )
        })
    }
}

/// Central's client of every site.
#[derive(Debug, Clone)]
pub struct SiteClient {
    /// classify → deadline → transport, built once per client (per registry).
    stack: ClassifyFailures<EnforceDeadline<SiteTransport>, SiteStatus>,
    directory: Arc<SiteDirectory>,
}

impl SiteClient {
    /// A client for the sites of `directory`; connecting to a node gives up after
    /// `connect_timeout`.
    pub fn new(directory: Arc<SiteDirectory>, connect_timeout: Duration) -> SiteClient {
        switchyard_core::tls::install_crypto_provider();
        let roots = directory.roots.clone();
        let http = PerThreadClient::new(move || {
            let mut builder = reqwest::Client::builder()
                // Never follow a redirect: credentials must not travel to another origin.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(connect_timeout)
                .pool_idle_timeout(Duration::from_secs(30));
            if !roots.is_empty() {
                // A site's certificate must chain to a configured CA, nothing else.
                builder = builder.tls_certs_only(roots.clone());
            }
            builder.build().unwrap_or_else(|e| {
                // Fail closed: no configured CA trusted means no TLS site reachable, and
                // still no redirects — never a client that trusts anything else.
                tracing::error!(error = %e, "cannot build the site client with its settings; TLS sites are unreachable");
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .tls_certs_only(Vec::new())
                    .build()
                    .unwrap_or_default()
            })
        });
        let transport = SiteTransport {
            http,
            directory: directory.clone(),
        };
        let stack = ServiceBuilder::new()
            // Every failure leaves as a classified Failure (SITE_UNREACHABLE, TIMEOUT, or the site's own).
            .layer(ClassifyLayer::new(SiteStatus))
            // The caller's remaining budget bounds the whole exchange.
            .layer(EnforceDeadlineLayer::new(None))
            .service(transport);
        SiteClient { stack, directory }
    }

    /// The directory this client routes with.
    pub fn directory(&self) -> &SiteDirectory {
        &self.directory
    }

    async fn send<R: DeserializeOwned>(
        &self,
        site: &str,
        method: http::Method,
        path: &str,
        body: Bytes,
        deadline: Option<Deadline>,
        timeout: Option<Duration>,
    ) -> Result<R, Failure> {
        let request = SiteRequest {
            site: site.to_string(),
            method,
            path: path.to_string(),
            body,
            deadline,
            timeout,
        };
        let response = switchyard_layers::drive(self.stack.clone(), request)
            .await
            .map_err(|e| switchyard_layers::classify::failure_of(&*e))?;
        serde_json::from_slice(&response.body).map_err(|e| {
            Failure::permanent(
                codes::BAD_RESPONSE,
                format!("site {site} sent an unreadable answer: {e}"),
            )
        })
    }

    async fn post<T: Serialize, R: DeserializeOwned>(
        &self,
        site: &str,
        path: &str,
        body: &T,
        deadline: Option<Deadline>,
    ) -> Result<R, Failure> {
        let bytes = Bytes::from(
            serde_json::to_vec(body)
                .map_err(|e| Failure::permanent(codes::INVALID_PARAMS, e.to_string()))?,
        );
        self.send(site, http::Method::POST, path, bytes, deadline, None)
            .await
    }

    /// `Route.To(instance).Call(script, params)` (`[7.4-7-rt]`, `CD-IA-7`).
    pub async fn call_script(
        &self,
        instance: &str,
        script: &str,
        params: Value,
        deadline: Option<Deadline>,
    ) -> Result<Value, Failure> {
        let site = self.directory.site_of(instance)?.to_string();
        let request = CallScript {
            instance: instance.to_string(),
            script: script.to_string(),
            params,
        };
        let result: ScriptResult = self
            .post(&site, protocol::paths::CALL, &request, deadline)
            .await?;
        Ok(result.value)
    }

    /// `GetAttribute(s)`: one round trip for the batch (`CD-IA-9`).
    pub async fn get_attributes(
        &self,
        instance: &str,
        names: Vec<String>,
        deadline: Option<Deadline>,
    ) -> Result<BTreeMap<String, Value>, Failure> {
        let site = self.directory.site_of(instance)?.to_string();
        let result: AttributeValues = self
            .post(
                &site,
                protocol::paths::GET_ATTRIBUTES,
                &GetAttributes {
                    instance: instance.to_string(),
                    names,
                },
                deadline,
            )
            .await?;
        Ok(result.values)
    }

    /// `SetAttribute(s)`: one round trip, all or none (`CD-IA-9`).
    pub async fn set_attributes(
        &self,
        instance: &str,
        values: BTreeMap<String, Value>,
        deadline: Option<Deadline>,
    ) -> Result<(), Failure> {
        let site = self.directory.site_of(instance)?.to_string();
        let _: Value = self
            .post(
                &site,
                protocol::paths::SET_ATTRIBUTES,
                &SetAttributes {
                    instance: instance.to_string(),
                    values,
                },
                deadline,
            )
            .await?;
        Ok(())
    }

    /// Deploys to a site; returns the revision it runs.
    pub async fn deploy(
        &self,
        deployment: &Deployment,
        timeout: Duration,
    ) -> Result<String, Failure> {
        let bytes = Bytes::from(
            serde_json::to_vec(deployment)
                .map_err(|e| Failure::permanent(codes::INVALID_PARAMS, e.to_string()))?,
        );
        let deployed: Deployed = self
            .send(
                &deployment.site,
                http::Method::POST,
                protocol::paths::DEPLOY,
                bytes,
                None,
                Some(timeout),
            )
            .await?;
        Ok(deployed.revision)
    }

    /// A site's health.
    pub async fn health(&self, site: &str, timeout: Duration) -> Result<Health, Failure> {
        self.send(
            site,
            http::Method::GET,
            protocol::paths::HEALTH,
            Bytes::new(),
            None,
            Some(timeout),
        )
        .await
    }

    /// A page of a site's parked messages.
    pub async fn parked(
        &self,
        site: &str,
        after: Option<&str>,
        limit: usize,
        timeout: Duration,
    ) -> Result<ParkedList, Failure> {
        let mut path = format!("{}?limit={limit}", protocol::paths::PARKED);
        if let Some(after) = after {
            path.push_str(&format!("&after={}", percent_encode(after)));
        }
        self.send(
            site,
            http::Method::GET,
            &path,
            Bytes::new(),
            None,
            Some(timeout),
        )
        .await
    }

    /// Retries or discards a parked message (`action` is `retry` or `discard`).
    pub async fn parked_action(
        &self,
        site: &str,
        id: &str,
        action: &str,
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let path = format!("/cluster/parked/{}/{action}", percent_encode(id));
        self.send(
            site,
            http::Method::POST,
            &path,
            Bytes::new(),
            None,
            Some(timeout),
        )
        .await
    }
}

fn percent_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
