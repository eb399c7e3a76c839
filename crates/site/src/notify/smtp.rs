//! The SMTP end of the notification stack: composing the e-mail (`CD-NS-1`: recipients
//! in the envelope only, `from` in `From:` and `To:`, plain text) and sending it over a
//! pool of SMTP sessions, authenticated with Basic (PLAIN/LOGIN) or XOAUTH2.
//!
//! The pool is our own, over lettre's connections: every open session — busy or idle —
//! holds one of `max_connections` permits, so the server never sees more sessions than
//! configured (lettre's pool bounds idle sessions only).

use super::Email;
use super::oauth::TokenSource;
use futures::future::BoxFuture;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use switchyard_core::config::{Secret, SmtpAuth, SmtpDef, TlsMode};
use switchyard_core::error::codes;
use switchyard_core::{BoxError, Failure, FailureClass};
use switchyard_layers::classify::Classify;
use switchyard_layers::slot::Slots;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Idle sessions older than this are closed instead of reused.
const MAX_IDLE: Duration = Duration::from_secs(60);

enum Auth {
    None,
    Basic(Result<Credentials, String>),
    OAuth2(TokenSource),
}

/// An open SMTP session.
struct Session {
    conn: AsyncSmtpConnection,
    idle_since: Instant,
    /// With OAuth2: the session is not reused once its token is due for renewal.
    auth_until: Option<tokio::time::Instant>,
}

/// Sends e-mails for one `[smtp]` definition.
pub struct SmtpSender {
    def: SmtpDef,
    auth: Auth,
    hello: ClientId,
    idle: Mutex<Vec<Session>>,
    /// One slot per session `max_connections` allows: a send holds one from before it
    /// takes a session until it returns it. All taken = the pool is not ready.
    slots: Arc<Semaphore>,
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
        let slots = Arc::new(Semaphore::new(def.max_connections.max(1) as usize));
        SmtpSender {
            def,
            auth,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            slots,
        }
    }

    /// The definition.
    pub fn def(&self) -> &SmtpDef {
        &self.def
    }

    /// The OAuth2 token source, if OAuth2 is configured.
    pub fn token_source(&self) -> Option<&TokenSource> {
        match &self.auth {
            Auth::OAuth2(source) => Some(source),
            _ => None,
        }
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

    /// A session for the holder of a slot: an idle one, or a new one. (Sessions never
    /// outnumber slots: a new one is opened only when every open one is in use.)
    async fn checkout(&self, _slot: &OwnedSemaphorePermit) -> Result<Session, Failure> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(mut session) = idle else {
                return self.open().await;
            };
            let token_fresh = session
                .auth_until
                .is_none_or(|until| tokio::time::Instant::now() < until);
            if session.idle_since.elapsed() < MAX_IDLE && token_fresh && !session.conn.has_broken()
            {
                return Ok(session);
            }
            session.conn.abort().await;
        }
    }

    /// Returns a healthy session to the pool; closes a broken one.
    async fn checkin(&self, mut session: Session) {
        if session.conn.has_broken() {
            session.conn.abort().await;
        } else {
            session.idle_since = Instant::now();
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(session);
        }
    }

    /// Connects (TLS as configured) and authenticates. With OAuth2, a refused token
    /// (535) is replaced once by a freshly fetched one.
    async fn open(&self) -> Result<Session, Failure> {
        let d = &self.def;
        let wrapper = match d.tls {
            TlsMode::Tls => Some(self.tls_parameters()?),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (d.host.as_str(), d.port),
            Some(d.timeout),
            &self.hello,
            wrapper,
            None,
        )
        .await
        .map_err(|e| classify(&e))?;
        if d.tls == TlsMode::Starttls {
            if !conn.can_starttls() {
                conn.abort().await;
                return Err(Failure::permanent(
                    codes::SMTP,
                    format!(
                        "{}:{} does not offer STARTTLS (smtp.tls = \"starttls\")",
                        d.host, d.port
                    ),
                ));
            }
            conn.starttls(self.tls_parameters()?, &self.hello)
                .await
                .map_err(|e| classify(&e))?;
        }
        let mut auth_until = None;
        match &self.auth {
            Auth::None => {}
            Auth::Basic(Ok(credentials)) => {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(|e| classify(&e))?;
            }
            Auth::Basic(Err(e)) => {
                return Err(Failure::permanent(
                    codes::AUTH,
                    format!("SMTP password unavailable: {e}"),
                ));
            }
            Auth::OAuth2(source) => {
                let (token, until) = source.token_until(false).await?;
                auth_until = Some(until);
                let attempt = conn
                    .auth(
                        &[Mechanism::Xoauth2],
                        &Credentials::new(d.from.clone(), token.expose().to_string()),
                    )
                    .await;
                if let Err(e) = attempt {
                    let failure = classify(&e);
                    if !matches!(failure.status, Some(534 | 535)) {
                        return Err(failure);
                    }
                    tracing::info!("SMTP refused the OAuth2 token; fetching a fresh one");
                    source.invalidate(&token).await;
                    let (fresh, until): (Secret, _) = source.token_until(true).await?;
                    auth_until = Some(until);
                    conn.auth(
                        &[Mechanism::Xoauth2],
                        &Credentials::new(d.from.clone(), fresh.expose().to_string()),
                    )
                    .await
                    .map_err(|e| classify(&e))?;
                }
            }
        }
        Ok(Session {
            conn,
            idle_since: Instant::now(),
            auth_until,
        })
    }

    /// The slots of the session pool (for a service's readiness).
    pub(super) fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    /// Sends one e-mail in a slot already held.
    async fn send_in(&self, slot: OwnedSemaphorePermit, email: &Email) -> Result<(), Failure> {
        let (envelope, body) = compose(&self.def.from, email)?;
        let mut session = self.checkout(&slot).await?;
        match transmit(&mut session.conn, &envelope, &body).await {
            Ok(_) => {
                self.checkin(session).await;
                Ok(())
            }
            Err(e) => {
                let failure = classify(&e);
                // After a refused command the session may still be usable, but a fresh
                // one is the safe choice.
                session.conn.abort().await;
                Err(failure)
            }
        }
    }
}

/// The message text after `DATA`, dot-stuffed and terminated, as one write.
struct DotStuffed(String);

impl std::fmt::Display for DotStuffed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every line ending — CRLF, a bare CR or a bare LF — becomes CRLF before dot-stuffing,
/// so no `\r.\r\n` (or `\n.\n`) in a script's text can end the DATA early and smuggle
/// commands to a lenient server (SMTP smuggling).
fn dot_stuff(body: &[u8]) -> DotStuffed {
    let text = String::from_utf8_lossy(body)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    DotStuffed(out)
}

/// MAIL, RCPT for every recipient, DATA, then the message and its terminator in a
/// single write. (lettre writes the message and the terminator separately; with Nagle's
/// algorithm and a server's delayed ACK that costs ~40 ms per e-mail.)
async fn transmit(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    body: &[u8],
) -> Result<(), lettre::transport::smtp::Error> {
    conn.command(Mail::new(envelope.from().cloned(), Vec::new()))
        .await?;
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), Vec::new())).await?;
    }
    conn.command(Data).await?;
    conn.command(dot_stuff(body)).await?;
    Ok(())
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

/// The classifier of the notification stack (`CD-NS-3`, `CD-NS-4`): SMTP 4xx,
/// connection problems and timeouts are transient, 5xx permanent; a stalled server is
/// cut by the deadline layer below and comes out as a transient `TIMEOUT`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SmtpReplies;

impl Classify<()> for SmtpReplies {
    fn classify_response(&self, response: ()) -> Result<(), Failure> {
        Ok(response)
    }

    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Failure {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(smtp) = e.downcast_ref::<lettre::transport::smtp::Error>() {
                return classify(smtp);
            }
            current = e.source();
        }
        switchyard_core::classify::any_error(error)
    }
}

/// The SMTP service at the bottom of the notification stack. Ready when it holds a
/// slot of the session pool: with every session busy it is not ready, and the deadline
/// layer above bounds the wait (a send that gets no slot in time is buffered).
#[derive(Debug, Clone)]
pub(super) struct SendEmail {
    sender: Arc<SmtpSender>,
    slots: Slots,
}

impl SendEmail {
    pub(super) fn new(sender: Arc<SmtpSender>) -> Self {
        SendEmail {
            slots: Slots::new(sender.slots()),
            sender,
        }
    }
}

impl tower::Service<Email> for SendEmail {
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.slots.poll_reserve(cx).map_err(|closed| {
            Failure::transient(codes::SMTP, format!("SMTP sessions: {closed}")).into()
        })
    }

    fn call(&mut self, email: Email) -> Self::Future {
        let sender = self.sender.clone();
        let slot = self.slots.take();
        Box::pin(async move {
            let Some(slot) = slot else {
                return Err("SendEmail called before it was ready".into());
            };
            sender.send_in(slot, &email).await.map_err(BoxError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{MessageId, RetryPolicy};

    fn def(max_connections: u32) -> SmtpDef {
        SmtpDef {
            host: "127.0.0.1".into(),
            port: 9,
            tls: TlsMode::None,
            from: "scada@plant.example".into(),
            auth: SmtpAuth::None,
            timeout: std::time::Duration::from_secs(1),
            max_connections,
            retry: RetryPolicy::default(),
            ca_pem: None,
            pace: Default::default(),
        }
    }

    #[tokio::test]
    async fn the_service_is_not_ready_while_every_session_slot_is_taken() {
        use tower::ServiceExt;
        let sender = Arc::new(SmtpSender::new(def(2), Path::new(".")));
        let mut first = SendEmail::new(sender.clone());
        let mut second = first.clone();
        let mut third = first.clone();
        first.ready().await.unwrap();
        second.ready().await.unwrap();
        let mut waiting = Box::pin(third.ready());
        assert!(
            futures::poll!(waiting.as_mut()).is_pending(),
            "two slots, both taken: the third is not ready"
        );
        drop(first);
        assert!(
            futures::poll!(waiting.as_mut()).is_ready(),
            "a freed slot makes it ready"
        );
    }

    #[test]
    fn the_message_is_dot_stuffed_and_terminated_once() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n").0,
            "a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".start").0, "..start\r\n.\r\n");
    }

    #[test]
    fn bare_cr_and_lf_cannot_end_the_data_early() {
        let smuggled = dot_stuff(b"a\r.\r\nMAIL FROM:<x@evil>\r\nb\n.\nRCPT TO:<y@evil>");
        assert_eq!(
            smuggled.0,
            "a\r\n..\r\nMAIL FROM:<x@evil>\r\nb\r\n..\r\nRCPT TO:<y@evil>\r\n.\r\n"
        );
        // Exactly one terminator, at the end; no bare CR or LF left.
        assert_eq!(smuggled.0.matches("\r\n.\r\n").count(), 1);
        assert!(!smuggled.0.replace("\r\n", "").contains(['\r', '\n']));
    }

    #[test]
    fn recipients_only_in_the_envelope_and_from_in_to() {
        let email = Email {
            id: MessageId::new(),
            list: "Operators".into(),
            subject: "Tank T-101 high: 95 % — prüfen".into(),
            message: "Level is 95.\nCheck the pump.".into(),
            recipients: vec![
                "ops1@plant.example".into(),
                "ops2@plant.example".into(),
                "ops1@plant.example".into(),
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
            !text.contains("ops1@") && !text.contains("ops2@"),
            "recipients never appear in the message: {text}"
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("Subject: ") && l.contains("=?utf-8?") && l.is_ascii()),
            "UTF-8 subjects are encoded: {text}"
        );
    }
}
