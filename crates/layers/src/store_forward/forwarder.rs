//! The forwarder: drains due messages through the stack *below* the store-and-forward
//! layer, one attempt per message per due time, many messages at once. A message that
//! fails transiently waits its own interval (or a longer `Retry-After`) without holding
//! up the others; when its retries are used up, or a retry fails permanently, it is
//! parked with the reason.

use super::events::OutboxEvent;
use super::message::{ParkedMessage, StoredMessage, due_key};
use super::outbox::{DueBatch, FjallOutbox, duration_ms, now_ms};
use super::pace::{Decision, LaneKey, Lanes, Pacing, next_key};
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
    /// While a paced lane has a backlog, how often the forwarder walks every due
    /// message again from the start (finding any it lost track of, e.g. a message whose
    /// outcome could not be recorded, or one whose target's pace was removed).
    pub rescan_every: Duration,
}

impl Default for ForwarderOptions {
    fn default() -> Self {
        ForwarderOptions {
            concurrency: 64,
            idle_poll: Duration::from_secs(1),
            progress_every: Duration::from_secs(10),
            rescan_every: Duration::from_secs(30),
        }
    }
}

/// Drains an outbox through a delivery service.
pub struct Forwarder<D> {
    outbox: FjallOutbox,
    deliver: D,
    options: ForwarderOptions,
    pacing: Option<Box<dyn Pacing>>,
}

impl<D> std::fmt::Debug for Forwarder<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("outbox", &self.outbox)
            .field("options", &self.options)
            .field("paced", &self.pacing.is_some())
            .finish()
    }
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

/// What one pass of the loop reads from the due index.
enum Walk {
    /// Onwards from the frontier: messages not looked at since the last rewind.
    Frontier,
    /// Behind the frontier, for one paced lane that has room again.
    Refill(LaneKey),
}

/// The state one forwarder task shares with its deliveries.
struct Shared {
    outbox: FjallOutbox,
    slots: Arc<Semaphore>,
    in_flight: Mutex<HashSet<MessageId>>,
    lanes: Mutex<Lanes>,
    finished: Notify,
    progress: Mutex<Progress>,
    progress_every: Duration,
}

impl<D> Forwarder<D>
where
    D: Service<StoredMessage, Response = (), Error = BoxError> + Clone + Send + 'static,
    D::Future: Send + 'static,
{
    /// A forwarder for `outbox` delivering through `deliver`, unpaced.
    pub fn new(outbox: FjallOutbox, deliver: D, options: ForwarderOptions) -> Self {
        Forwarder {
            outbox,
            deliver,
            options,
            pacing: None,
        }
    }

    /// Paces the drain per lane: `pacing` names each target's lane and its
    /// `max_rate` / `max_in_flight` (see [`Pacing`]).
    ///
    /// ```
    /// use switchyard_core::{BoxError, Pace};
    /// use switchyard_layers::store_forward::{
    ///     FjallOutbox, Forwarder, ForwarderOptions, Lane, OutboxOptions, StoredMessage,
    /// };
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().unwrap();
    /// let outbox = FjallOutbox::open(dir.path(), OutboxOptions { min_free_disk: 0, ..Default::default() }).unwrap();
    /// let deliver = tower::service_fn(|_: StoredMessage| async { Ok::<(), BoxError>(()) });
    /// let _forwarder = Forwarder::new(outbox, deliver, ForwarderOptions::default())
    ///     // The ERP takes 50 messages a second, 4 at a time; every other target is unpaced.
    ///     .with_pacing(|category, target: &str| {
    ///         (target == "ERP").then(|| Lane {
    ///             category,
    ///             name: target.to_string(),
    ///             pace: Pace { max_rate: Some(50.0), max_in_flight: Some(4) },
    ///         })
    ///     })
    ///     .spawn();
    /// # }
    /// ```
    pub fn with_pacing(mut self, pacing: impl Pacing) -> Self {
        self.pacing = Some(Box::new(pacing));
        self
    }

    /// Starts draining on the current runtime.
    pub fn spawn(self) -> ForwarderHandle {
        ForwarderHandle {
            task: tokio::spawn(self.run()),
        }
    }

    /// The loop. Without pacing it reads the due index from the start, in due order,
    /// as many messages as there are free delivery slots, and starts them all.
    ///
    /// With pacing, a message whose lane has no room is left pending and the walk goes
    /// on past it (so one paced target never holds up the others); the *frontier* marks
    /// how far the walk has got. Behind it, only messages of lanes with a backlog wait,
    /// and each such lane resumes its own walk from where it stopped when it has room
    /// again — reading a few records per message it starts, however long the backlog.
    async fn run(self) {
        let concurrency = self.options.concurrency.max(1);
        let shared = Arc::new(Shared {
            outbox: self.outbox.clone(),
            slots: Arc::new(Semaphore::new(concurrency)),
            in_flight: Mutex::default(),
            lanes: Mutex::new(Lanes::new(self.pacing)),
            finished: Notify::new(),
            progress: Mutex::new(Progress {
                delivered: 0,
                since: Instant::now(),
                last_log: Instant::now(),
            }),
            progress_every: self.options.progress_every,
        });
        let deliver = self.deliver;
        let options = self.options;
        let mut frontier: Option<[u8; 24]> = None;
        let mut last_rewind = tokio::time::Instant::now();
        // After a lane's walk the frontier gets its turn, so lanes that always have room
        // (a pace the forwarder cannot reach) never keep new messages from being found.
        let mut frontier_next = false;
        loop {
            let free = shared.slots.available_permits();
            if free == 0 {
                shared.finished.notified().await;
                continue;
            }
            let now = tokio::time::Instant::now();
            let refill = {
                let mut lanes = lock(&shared.lanes);
                if lanes.any_backlog() && now - last_rewind >= options.rescan_every {
                    lanes.forget_backlogs();
                    frontier = None;
                }
                let refill = if frontier_next {
                    None
                } else {
                    lanes.refillable(now)
                };
                refill.map(|(lane, from)| (lanes.room(&lane, now).min(free) + 1, lane, from))
            };
            frontier_next = refill.is_some();
            let (walk, from, limit) = match refill {
                Some((limit, lane, from)) => (Walk::Refill(lane), Some(from), limit),
                None => (Walk::Frontier, frontier.map(next_key), free),
            };
            if frontier.is_none() {
                last_rewind = now;
            }
            let Some(batch) = scan(&shared, now_ms(), limit, from, options.idle_poll).await else {
                continue;
            };
            let found = batch.messages.len();
            let mut started = 0;
            let mut stopped = false;
            for message in batch.messages {
                let key = due_key(message.due_ms, &message.id);
                if let Walk::Refill(lane) = &walk {
                    if frontier.is_none_or(|f| key > f) {
                        // Past the frontier: the frontier walk takes it from here.
                        lock(&shared.lanes).caught_up(lane);
                        stopped = true;
                        break;
                    }
                    lock(&shared.lanes).walked_to(lane, key);
                }
                let decision = lock(&shared.lanes).consider(&message, key, now);
                match decision {
                    Decision::Start(lane) => {
                        let Ok(permit) = shared.slots.clone().acquire_owned().await else {
                            return;
                        };
                        start(&shared, deliver.clone(), message, lane, permit);
                        started += 1;
                    }
                    Decision::Wait(waiting) => {
                        if matches!(&walk, Walk::Refill(lane) if *lane == waiting) {
                            // The lane is full again; it resumes here next time.
                            stopped = true;
                            break;
                        }
                    }
                }
                if let Walk::Frontier = walk {
                    frontier = Some(key);
                }
            }
            match walk {
                Walk::Refill(lane) => {
                    if !stopped && found < limit {
                        // The end of what is due: nothing of the lane is left behind.
                        lock(&shared.lanes).caught_up(&lane);
                    }
                }
                Walk::Frontier if found < limit => {
                    // The end of what is due. Unless a paced lane left messages behind,
                    // start the next walk from the beginning, so nothing that fell due
                    // behind the frontier (an outcome that could not be recorded) is
                    // missed.
                    if !lock(&shared.lanes).any_backlog() {
                        frontier = None;
                    }
                    let lanes_ready = lock(&shared.lanes).next_ready();
                    let lane_waits = lanes_ready.is_some_and(|at| at <= now);
                    if started == 0 && !lane_waits {
                        wait_for_work(&shared, frontier, options.idle_poll, lanes_ready).await;
                    }
                }
                Walk::Frontier => {}
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads due messages off the async workers; `None` after a failure (logged, and
/// waited out).
async fn scan(
    shared: &Shared,
    now: u64,
    limit: usize,
    from: Option<[u8; 24]>,
    idle_poll: Duration,
) -> Option<DueBatch> {
    let skip = lock(&shared.in_flight).clone();
    let outbox = shared.outbox.clone();
    match tokio::task::spawn_blocking(move || outbox.due(now, limit, &skip, from)).await {
        Ok(Ok(batch)) => Some(batch),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "store-and-forward scan failed; retrying");
            tokio::time::sleep(idle_poll).await;
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "store-and-forward scan task failed");
            tokio::time::sleep(idle_poll).await;
            None
        }
    }
}

/// Starts one delivery; its slot, its place in its lane and its id in the in-flight set
/// are given back when it finishes.
fn start<D>(
    shared: &Arc<Shared>,
    deliver: D,
    message: StoredMessage,
    lane: Option<LaneKey>,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    D: Service<StoredMessage, Response = (), Error = BoxError> + Clone + Send + 'static,
    D::Future: Send + 'static,
{
    lock(&shared.in_flight).insert(message.id);
    let shared = shared.clone();
    tokio::spawn(async move {
        let id = message.id;
        let delivered = attempt(deliver, &shared.outbox, message).await;
        lock(&shared.in_flight).remove(&id);
        if let Some(lane) = &lane {
            lock(&shared.lanes).release(lane);
        }
        drop(permit);
        shared.finished.notify_one();
        if delivered {
            report_progress(&shared.progress, &shared.outbox, shared.progress_every);
        }
    });
}

/// Sleeps until a message may fall due, new work arrives, a delivery in flight finishes
/// (its message may be due again), or a paced lane with a backlog may start another.
async fn wait_for_work(
    shared: &Shared,
    frontier: Option<[u8; 24]>,
    idle_poll: Duration,
    lanes_ready: Option<tokio::time::Instant>,
) {
    let outbox = shared.outbox.clone();
    let skip = lock(&shared.in_flight).clone();
    // The next message beyond the frontier (behind it wait only paced backlogs).
    let next = tokio::task::spawn_blocking(move || match frontier {
        None => outbox.next_due_ms(),
        Some(f) => outbox
            .due(u64::MAX, 1, &skip, Some(next_key(f)))
            .map(|b| b.messages.first().map(|m| m.due_ms)),
    })
    .await
    .ok()
    .and_then(Result::ok)
    .flatten();
    let now = now_ms();
    let mut sleep = match next {
        Some(due) if due > now => Duration::from_millis(due - now).min(idle_poll),
        // Due but in flight (or nothing pending): wait for a change.
        _ => idle_poll,
    };
    if let Some(at) = lanes_ready {
        sleep = sleep.min(at.saturating_duration_since(tokio::time::Instant::now()));
    }
    tokio::select! {
        _ = shared.outbox.work_notified() => {}
        _ = shared.finished.notified() => {}
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
    metrics::counter!("switchyard_sf_attempts_total", "category" => category, "target" => target.clone()).increment(1);
    let started = Instant::now();
    let result = match deliver.oneshot(message.clone()).await {
        Ok(()) => Ok(()),
        Err(e) => Err(crate::classify::failure_of(&*e)),
    };
    metrics::histogram!("switchyard_sf_attempt_duration_seconds", "category" => category, "target" => target.clone())
        .record(started.elapsed().as_secs_f64());
    if let Err(failure) = &result {
        let class = if failure.is_transient() {
            "transient"
        } else {
            "permanent"
        };
        metrics::counter!("switchyard_sf_failures_total", "category" => category, "target" => target.clone(), "class" => class).increment(1);
    }
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
