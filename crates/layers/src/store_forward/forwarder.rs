//! The forwarder: drains due messages through the stack *below* the store-and-forward
//! layer, one attempt per message per due time, many messages at once. A message that
//! fails transiently waits its own interval (or a longer `Retry-After`) without holding
//! up the others; when its retries are used up, or a retry fails permanently, it is
//! parked with the reason.

use super::events::OutboxEvent;
use super::message::{ParkedMessage, StoredMessage};
use super::outbox::{FjallOutbox, duration_ms, now_ms};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::{BoxError, MessageId};
use tokio::sync::{Notify, Semaphore};
use tower::{Service, ServiceExt};

/// Settings of a forwarder.
#[derive(Debug, Clone)]
pub struct ForwarderOptions {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Longest sleep between scans when nothing is known to be due.
    pub idle_poll: Duration,
    /// How often draining progress is logged while a backlog is being worked off.
    pub progress_every: Duration,
}

impl Default for ForwarderOptions {
    fn default() -> Self {
        ForwarderOptions {
            concurrency: 64,
            idle_poll: Duration::from_secs(1),
            progress_every: Duration::from_secs(10),
        }
    }
}

/// Drains an outbox through a delivery service.
#[derive(Debug)]
pub struct Forwarder<D> {
    outbox: FjallOutbox,
    deliver: D,
    options: ForwarderOptions,
}

/// Stops the forwarder when dropped or when [`ForwarderHandle::stop`] is called.
#[derive(Debug)]
pub struct ForwarderHandle {
    task: tokio::task::JoinHandle<()>,
}

impl ForwarderHandle {
    /// Stops scanning; deliveries in flight are abandoned and will be retried after a
    /// restart (at-least-once).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for ForwarderHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Progress {
    delivered: u64,
    since: Instant,
    last_log: Instant,
}

impl<D> Forwarder<D>
where
    D: Service<StoredMessage, Response = (), Error = BoxError> + Clone + Send + 'static,
    D::Future: Send + 'static,
{
    /// A forwarder for `outbox` delivering through `deliver`.
    pub fn new(outbox: FjallOutbox, deliver: D, options: ForwarderOptions) -> Self {
        Forwarder {
            outbox,
            deliver,
            options,
        }
    }

    /// Starts draining on the current runtime.
    pub fn spawn(self) -> ForwarderHandle {
        ForwarderHandle {
            task: tokio::spawn(self.run()),
        }
    }

    async fn run(self) {
        let concurrency = self.options.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let in_flight: Arc<Mutex<HashSet<MessageId>>> = Arc::default();
        let finished = Arc::new(Notify::new());
        let progress = Arc::new(Mutex::new(Progress {
            delivered: 0,
            since: Instant::now(),
            last_log: Instant::now(),
        }));
        let mut cursor = None;
        loop {
            let free = slots.available_permits();
            if free == 0 {
                finished.notified().await;
                continue;
            }
            let now = now_ms();
            let skip = in_flight.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let outbox = self.outbox.clone();
            let scan =
                tokio::task::spawn_blocking(move || outbox.due(now, free, &skip, cursor)).await;
            let batch = match scan {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "store-and-forward scan failed; retrying");
                    tokio::time::sleep(self.options.idle_poll).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "store-and-forward scan task failed");
                    tokio::time::sleep(self.options.idle_poll).await;
                    continue;
                }
            };
            let found = batch.messages.len();
            // A short batch means we reached the end of what is due: start the next scan
            // from the beginning so nothing that fell due behind the cursor is missed.
            cursor = if found < free { None } else { batch.cursor };
            for message in batch.messages {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(message.id);
                let deliver = self.deliver.clone();
                let outbox = self.outbox.clone();
                let in_flight = in_flight.clone();
                let finished = finished.clone();
                let progress = progress.clone();
                let progress_every = self.options.progress_every;
                tokio::spawn(async move {
                    let id = message.id;
                    let delivered = attempt(deliver, &outbox, message).await;
                    in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    drop(permit);
                    finished.notify_one();
                    if delivered {
                        report_progress(&progress, &outbox, progress_every);
                    }
                });
            }
            if found == 0 {
                wait_for_work(&self.outbox, self.options.idle_poll, &finished).await;
            }
        }
    }
}

/// Sleeps until the earliest message falls due, new work arrives, or a delivery in
/// flight finishes (its message may be due again).
async fn wait_for_work(outbox: &FjallOutbox, idle_poll: Duration, finished: &Notify) {
    let scan = outbox.clone();
    let next = tokio::task::spawn_blocking(move || scan.next_due_ms())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let now = now_ms();
    let sleep = match next {
        Some(due) if due > now => Duration::from_millis(due - now).min(idle_poll),
        // Due but in flight (or nothing pending): wait for a change.
        _ => idle_poll,
    };
    tokio::select! {
        _ = outbox.work_notified() => {}
        _ = finished.notified() => {}
        _ = tokio::time::sleep(sleep) => {}
    }
}

/// One delivery attempt and the event that records its outcome. Returns whether the
/// message was delivered.
async fn attempt<D>(deliver: D, outbox: &FjallOutbox, message: StoredMessage) -> bool
where
    D: Service<StoredMessage, Response = (), Error = BoxError>,
{
    let category = message.category.as_str();
    let target = message.target.clone();
    let result = match deliver.oneshot(message.clone()).await {
        Ok(()) => Ok(()),
        Err(e) => Err(crate::classify::failure_of(&*e)),
    };
    let delivered = result.is_ok();
    let event = match result {
        Ok(()) => {
            metrics::counter!("switchyard_sf_delivered_total", "category" => category, "target" => target.clone()).increment(1);
            OutboxEvent::Delivered {
                id: message.id,
                due_ms: message.due_ms,
                category: message.category,
                target,
            }
        }
        Err(failure) => {
            // The site's own record of each failed attempt (see the store-and-forward
            // layer): duplicates at a peer are reconciled against the TIMEOUTs logged here.
            tracing::debug!(id = %message.id, attempts = message.attempts + 1, code = %failure.code, error = %failure, "delivery attempt failed");
            let prev_due_ms = message.due_ms;
            let mut next = message;
            next.attempts += 1;
            next.last_error = Some(failure.message.clone());
            let now = now_ms();
            if failure.is_transient() && !next.retry.exhausted(next.attempts) {
                next.due_ms =
                    now.saturating_add(duration_ms(next.retry.delay(failure.retry_after)));
                metrics::counter!("switchyard_sf_retries_total", "category" => category, "target" => target.clone()).increment(1);
                OutboxEvent::Rescheduled {
                    message: next,
                    prev_due_ms,
                }
            } else {
                let reason = if failure.is_transient() {
                    format!(
                        "retries exhausted after {} attempt(s); last error: {}",
                        next.attempts, failure.message
                    )
                } else {
                    format!("permanent failure: {}", failure.message)
                };
                metrics::counter!("switchyard_sf_parked_total", "category" => category, "target" => target.clone()).increment(1);
                tracing::warn!(id = %next.id, category, target = %target, %reason, "message parked");
                OutboxEvent::Parked {
                    parked: ParkedMessage {
                        message: next,
                        parked_ms: now,
                        reason,
                    },
                    prev_due_ms,
                }
            }
        }
    };
    if let Err(e) = outbox.apply(vec![event], false).await {
        // The message stays pending at its old due time and is attempted again.
        tracing::error!(error = %e, "could not record a delivery outcome");
    }
    delivered
}

fn report_progress(progress: &Mutex<Progress>, outbox: &FjallOutbox, every: Duration) {
    let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
    p.delivered += 1;
    if p.last_log.elapsed() >= every {
        let rate = p.delivered as f64 / p.since.elapsed().as_secs_f64().max(0.001);
        let left = outbox.pending_total();
        if left > 0 {
            tracing::info!(
                left,
                delivered = p.delivered,
                rate = format!("{rate:.0}/s"),
                "store-and-forward draining"
            );
        }
        p.delivered = 0;
        p.since = Instant::now();
        p.last_log = Instant::now();
    }
}
