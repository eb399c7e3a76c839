//! The Notification Service (SPEC §5, `[6.*]`, `KDD-ext-4`, `CD-NS-*`):
//! `Notify.To(list).Send(subject, message)` sends one plain-text e-mail per call, every
//! recipient of the list in the envelope only (BCC), the `from` address in `To:`. The
//! stack, from the shared layers:
//!
//! ```text
//! store-and-forward ─▶ classify (SMTP replies) ─▶ deadline ─▶ SMTP (a pool of at most
//!                                                            max_connections sessions)
//! ```
//!
//! SMTP 4xx, refused connections and timeouts — a server that accepts and never answers
//! included — are transient (buffered, retried with the SMTP `retry` settings); 5xx are
//! permanent (back to the script).

mod oauth;
mod smtp;

pub use oauth::TokenSource;
pub use smtp::{SmtpSender, compose};

use crate::messages::{NotificationMessage, SfMessage};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::config::{NotificationListDef, SmtpDef};
use switchyard_core::error::codes;
use switchyard_core::{BoxError, Deadline, Failure, MessageId, RetryPolicy};
use switchyard_layers::classify::{ClassifyLayer, failure_of};
use switchyard_layers::deadline::{EnforceDeadlineLayer, HasDeadline};
use switchyard_layers::drive;
use switchyard_layers::store_forward::{
    Category, Delivery, FjallOutbox, Forwardable, NewMessage, StoreForwardLayer, StoredMessage,
};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

/// One e-mail to send.
#[derive(Debug, Clone)]
pub struct Email {
    /// Message id (store-and-forward).
    pub id: MessageId,
    /// The list it was sent to.
    pub list: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub message: String,
    /// The list's recipients when it was sent (duplicates kept, `CD-NS-2`).
    pub recipients: Vec<String>,
    /// The caller's deadline.
    pub deadline: Option<Deadline>,
    retry: RetryPolicy,
    timeout: Duration,
}

impl HasDeadline for Email {
    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}

impl Forwardable for Email {
    fn to_message(self, failure: &Failure) -> NewMessage {
        NewMessage {
            id: self.id,
            category: Category::Notification,
            target: self.list.clone(),
            payload: NotificationMessage {
                list: self.list,
                subject: self.subject,
                message: self.message,
                recipients: self.recipients,
            }
            .to_payload(),
            retry: self.retry,
            first_delay: self.retry.delay(failure.retry_after),
            last_error: Some(failure.message.clone()),
        }
    }
}

/// E-mail for a deployment.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// The SMTP sender and its stacks, built once per deployment (none without `[smtp]`).
    smtp: Option<Stacks>,
    lists: Arc<BTreeMap<String, NotificationListDef>>,
}

/// The SMTP sender and the stored stacks over it; each send clones a stack and drives it
/// through `ready()` + `call()`.
#[derive(Clone)]
struct Stacks {
    /// The session pool (its settings give each e-mail its retry and timeout).
    sender: Arc<SmtpSender>,
    /// `Notify…Send`: store-and-forward over the direct stack.
    send: BoxCloneSyncService<Email, Delivery<()>, BoxError>,
    /// The forwarder's retries: the direct stack alone.
    direct: BoxCloneSyncService<Email, (), BoxError>,
}

impl std::fmt::Debug for Stacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stacks(send, direct)")
    }
}

impl Notifier {
    /// Prepares SMTP (if configured) and the lists (`[6.1-1-rt]`, `[6.2-2]`).
    pub fn new(
        smtp: Option<&SmtpDef>,
        lists: &BTreeMap<String, NotificationListDef>,
        base_dir: &Path,
        outbox: FjallOutbox,
    ) -> Notifier {
        let smtp = smtp.map(|def| {
            let sender = Arc::new(SmtpSender::new(def.clone(), base_dir));
            let direct = direct(&sender);
            Stacks {
                sender,
                send: BoxCloneSyncService::new(
                    ServiceBuilder::new()
                        // A server that is down, throttling or stalled must not lose the
                        // e-mail or block the script.
                        .layer(StoreForwardLayer::new(outbox))
                        .service(direct.clone()),
                ),
                direct: BoxCloneSyncService::new(direct),
            }
        });
        Notifier {
            smtp,
            lists: Arc::new(lists.clone()),
        }
    }

    fn smtp(&self) -> Result<&Stacks, Failure> {
        self.smtp.as_ref().ok_or_else(|| {
            Failure::permanent(codes::SMTP, "no [smtp] settings are deployed to this site")
        })
    }

    /// `Notify.To(list).Send(subject, message)`: `None` when delivered, the message id
    /// when buffered; permanent failures come back.
    pub async fn send(
        &self,
        list: &str,
        subject: &str,
        message: &str,
        deadline: Option<Deadline>,
    ) -> Result<Option<MessageId>, Failure> {
        let stacks = self.smtp()?;
        // The list resolves to its recipients here, at the site (`[6.1-2-rt]`).
        let recipients = self
            .lists
            .get(list)
            .ok_or_else(|| {
                Failure::permanent(
                    codes::NOT_FOUND,
                    format!("no notification list named `{list}`"),
                )
            })?
            .recipients
            .clone();
        let email = Email {
            id: MessageId::new(),
            list: list.to_string(),
            subject: subject.to_string(),
            message: message.to_string(),
            recipients,
            deadline,
            retry: stacks.sender.def().retry,
            timeout: stacks.sender.def().timeout,
        };
        match drive(stacks.send.clone(), email).await {
            Ok(Delivery::Delivered(())) => Ok(None),
            Ok(Delivery::Buffered { id }) => Ok(Some(id)),
            Err(e) => Err(failure_of(&*e).context(format!("Notify.To(\"{list}\")"))),
        }
    }

    /// The forwarder's path: the stack below store-and-forward, with the recipients the
    /// e-mail was buffered with.
    pub async fn deliver(&self, message: &StoredMessage) -> Result<(), Failure> {
        let stacks = self.smtp()?;
        let stored = NotificationMessage::from_stored(message)?;
        let email = Email {
            id: message.id,
            list: stored.list,
            subject: stored.subject,
            message: stored.message,
            recipients: stored.recipients,
            deadline: None,
            retry: message.retry,
            timeout: stacks.sender.def().timeout,
        };
        drive(stacks.direct.clone(), email)
            .await
            .map_err(|e| failure_of(&*e))
    }
}

/// The stack below store-and-forward, built once per deployment.
fn direct(
    sender: &Arc<SmtpSender>,
) -> impl tower::Service<Email, Response = (), Error = BoxError, Future: Send>
+ Clone
+ Send
+ Sync
+ use<> {
    ServiceBuilder::new()
        // Store-and-forward above decides by class: a stalled server (deadline) is
        // transient, an SMTP 5xx permanent.
        .layer(ClassifyLayer::new(smtp::SmtpReplies))
        // The SMTP timeout, capped by the script's deadline.
        .layer(EnforceDeadlineLayer::new(None))
        .service(smtp::SendEmail::new(sender.clone()))
}
