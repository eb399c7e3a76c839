//! The SMTP end of the notification stack: composing the e-mail (`CD-NS-1`: recipients
//! in the envelope only, `from` in `From:` and `To:`, plain text) and sending it through
//! a lettre pool, with Basic or XOAUTH2 authentication.

use super::Email;
use super::oauth::TokenSource;
use futures::future::BoxFuture;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use switchyard_core::config::{Secret, SmtpAuth, SmtpDef, TlsMode};
use switchyard_core::error::codes;
use switchyard_core::{BoxError, Failure, FailureClass};
use tokio::sync::{Mutex, Semaphore};

type Transport = AsyncSmtpTransport<Tokio1Executor>;

enum Auth {
    None,
    Basic(Result<Credentials, String>),
    OAuth2(TokenSource),
}

/// Sends e-mails for one `[smtp]` definition.
pub struct SmtpSender {
    def: SmtpDef,
    auth: Auth,
    /// The pool of the current credentials (rebuilt when the OAuth2 token changes).
    transport: Mutex<Option<(Option<Secret>, Transport)>>,
    sessions: Arc<Semaphore>,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("host", &self.def.host)
            .field("port", &self.def.port)
            .finish()
    }
}

impl SmtpSender {
    /// Prepares sending; secrets that cannot be read make every send fail with a
    /// message naming them.
    pub fn new(def: SmtpDef, base_dir: &Path) -> SmtpSender {
        switchyard_core::tls::install_crypto_provider();
        let auth = match &def.auth {
            SmtpAuth::None => Auth::None,
            SmtpAuth::Basic { username, password } => Auth::Basic(
                password
                    .resolve(base_dir)
                    .map(|p| Credentials::new(username.clone(), p.expose().to_string())),
            ),
            SmtpAuth::Oauth2 {
                tenant,
                client_id,
                client_secret,
                authority,
                scope,
            } => Auth::OAuth2(TokenSource::new(
                authority,
                tenant,
                client_id,
                client_secret.resolve(base_dir),
                scope,
                def.timeout,
            )),
        };
        let sessions = Arc::new(Semaphore::new(def.max_connections.max(1) as usize));
        SmtpSender {
            def,
            auth,
            transport: Mutex::new(None),
            sessions,
        }
    }

    /// The definition.
    pub fn def(&self) -> &SmtpDef {
        &self.def
    }

    /// Permits for concurrent SMTP sessions (`max_connections`).
    pub fn sessions(&self) -> Arc<Semaphore> {
        self.sessions.clone()
    }

    /// The OAuth2 token source, if OAuth2 is configured.
    pub fn token_source(&self) -> Option<&TokenSource> {
        match &self.auth {
            Auth::OAuth2(source) => Some(source),
            _ => None,
        }
    }

    fn build(
        &self,
        credentials: Option<Credentials>,
        mechanisms: Vec<Mechanism>,
    ) -> Result<Transport, Failure> {
        let d = &self.def;
        let tls = match d.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(self.tls_parameters()?),
            TlsMode::Tls => Tls::Wrapper(self.tls_parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(d.host.as_str())
            .port(d.port)
            .tls(tls)
            .timeout(Some(d.timeout))
            .pool_config(PoolConfig::new().max_size(d.max_connections.max(1)));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials).authentication(mechanisms);
        }
        Ok(builder.build())
    }

    fn tls_parameters(&self) -> Result<TlsParameters, Failure> {
        let mut params = TlsParameters::builder(self.def.host.clone());
        if let Some(pem) = &self.def.ca_pem {
            let cert = Certificate::from_pem(pem.as_bytes())
                .map_err(|e| Failure::permanent(codes::SMTP, format!("smtp.ca_file: {e}")))?;
            params = params.add_root_certificate(cert);
        }
        params
            .build_rustls()
            .map_err(|e| Failure::permanent(codes::SMTP, format!("TLS settings: {e}")))
    }

    /// The pool for the current credentials; with OAuth2, the token it was built with.
    async fn transport(&self, refresh_token: bool) -> Result<(Option<Secret>, Transport), Failure> {
        let token = match &self.auth {
            Auth::OAuth2(source) => Some(source.token(refresh_token).await?),
            _ => None,
        };
        let mut current = self.transport.lock().await;
        if let Some((built_with, transport)) = current.as_ref()
            && *built_with == token
        {
            return Ok((token, transport.clone()));
        }
        let transport = match &self.auth {
            Auth::None => self.build(None, Vec::new())?,
            Auth::Basic(Ok(credentials)) => self.build(
                Some(credentials.clone()),
                vec![Mechanism::Plain, Mechanism::Login],
            )?,
            Auth::Basic(Err(e)) => {
                return Err(Failure::permanent(
                    codes::AUTH,
                    format!("SMTP password unavailable: {e}"),
                ));
            }
            Auth::OAuth2(_) => {
                let token = token
                    .as_ref()
                    .map(|t| t.expose().to_string())
                    .unwrap_or_default();
                self.build(
                    Some(Credentials::new(self.def.from.clone(), token)),
                    vec![Mechanism::Xoauth2],
                )?
            }
        };
        *current = Some((token.clone(), transport.clone()));
        Ok((token, transport))
    }

    /// Sends one e-mail. With OAuth2, a refused token (535) is replaced once and the
    /// e-mail sent again.
    pub async fn send(&self, email: &Email) -> Result<(), Failure> {
        let (envelope, body) = compose(&self.def.from, email)?;
        let (token, transport) = self.transport(false).await?;
        match transport.send_raw(&envelope, &body).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let failure = classify(&e);
                let refused = failure.status == Some(535) || failure.status == Some(534);
                if let (true, Some(source), Some(token)) = (refused, self.token_source(), token) {
                    tracing::info!(
                        "SMTP refused the OAuth2 token; fetching a fresh one and sending again"
                    );
                    source.invalidate(&token).await;
                    let (_, transport) = self.transport(true).await?;
                    return transport
                        .send_raw(&envelope, &body)
                        .await
                        .map(|_| ())
                        .map_err(|e| classify(&e));
                }
                Err(failure)
            }
        }
    }
}

/// The envelope and message text of an e-mail.
pub fn compose(from: &str, email: &Email) -> Result<(Envelope, Vec<u8>), Failure> {
    let from_address: Address = from
        .parse()
        .map_err(|e| Failure::permanent(codes::SMTP, format!("smtp.from `{from}`: {e}")))?;
    let recipients = email
        .recipients
        .iter()
        .map(|r| {
            r.parse::<Address>()
                .map_err(|e| Failure::permanent(codes::SMTP, format!("recipient `{r}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let envelope = Envelope::new(Some(from_address.clone()), recipients).map_err(|e| {
        Failure::permanent(
            codes::SMTP,
            format!("list `{}` has no recipients ({e})", email.list),
        )
    })?;
    let message = Message::builder()
        .from(from_address.clone().into())
        .to(from_address.into())
        .subject(email.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(email.message.clone())
        .map_err(|e| Failure::permanent(codes::SMTP, format!("cannot build the e-mail: {e}")))?;
    Ok((envelope, message.formatted()))
}

/// A lettre error → failure: SMTP 4xx, connection problems, timeouts and TLS failures
/// are transient; 5xx and malformed exchanges permanent.
fn classify(err: &lettre::transport::smtp::Error) -> Failure {
    let message = switchyard_core::classify::error_chain(err);
    if let Some(code) = err.status() {
        let status = u16::from(code);
        let class = switchyard_core::classify::smtp_reply(status);
        let code_name = if matches!(status, 530 | 534 | 535) {
            codes::AUTH
        } else {
            codes::SMTP
        };
        return Failure {
            class,
            code: code_name.into(),
            status: Some(status),
            message: format!("SMTP {message}"),
            retry_after: None,
        };
    }
    if err.is_timeout() {
        return Failure::transient(codes::TIMEOUT, format!("SMTP timed out: {message}"));
    }
    if err.is_response() || err.is_client() {
        return Failure::permanent(codes::SMTP, format!("SMTP: {message}"));
    }
    Failure {
        class: FailureClass::Transient,
        code: codes::CONNECTION.into(),
        status: None,
        message: format!("SMTP connection failed: {message}"),
        retry_after: None,
    }
}

/// The SMTP service at the bottom of the notification stack.
#[derive(Clone, Debug)]
pub(super) struct SendEmail(pub(super) Arc<SmtpSender>);

impl tower::Service<Email> for SendEmail {
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, email: Email) -> Self::Future {
        let sender = self.0.clone();
        Box::pin(async move { sender.send(&email).await.map_err(BoxError::from) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{MessageId, RetryPolicy};

    #[test]
    fn recipients_only_in_the_envelope_and_from_in_to() {
        let email = Email {
            id: MessageId::new(),
            list: "Operators".into(),
            subject: "Tank T-101 high: 95 % — prüfen".into(),
            message: "Level is 95.\nCheck the pump.".into(),
            recipients: vec![
                "a@plant.example".into(),
                "b@plant.example".into(),
                "a@plant.example".into(),
            ],
            deadline: None,
            retry: RetryPolicy::default(),
            timeout: std::time::Duration::from_secs(5),
        };
        let (envelope, body) = compose("scada@plant.example", &email).unwrap();
        assert_eq!(envelope.to().len(), 3, "duplicates are kept (CD-NS-2)");
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("To: scada@plant.example"), "{text}");
        assert!(text.contains("From: scada@plant.example"), "{text}");
        assert!(
            !text.to_ascii_lowercase().contains("\nbcc:")
                && !text.to_ascii_lowercase().contains("\ncc:"),
            "{text}"
        );
        assert!(
            !text.contains("a@plant.example"),
            "recipients never appear in the message: {text}"
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        assert!(
            text.contains("Subject: =?utf-8?"),
            "UTF-8 subjects are encoded: {text}"
        );
    }
}
