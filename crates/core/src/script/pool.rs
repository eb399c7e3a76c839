//! The dedicated script pool (`CD-ESG-7`): scripts run on their own OS threads, never on
//! the async runtime's workers, so a script blocked on I/O cannot slow the HTTP server
//! or the store-and-forward forwarder. Calls from outside wait in a bounded queue and
//! are refused at once ([`Overloaded`]) when it is full; work the node gives itself
//! (alarm on-trigger scripts) has its own bounded queue ([`INTERNAL_QUEUE`]), served
//! alongside callers (neither starves the other). A job whose deadline passed while it
//! waited is dropped with a log line and `switchyard_script_dropped_total`.

use super::engine::set_deadline;
use crate::Deadline;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The queue is full; the caller should answer "overloaded" rather than wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the script pool is saturated")]
pub struct Overloaded;

/// The pool was shut down before the job ran (or the job panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the script did not run to completion (pool stopped or script panicked)")]
pub struct PoolClosed;

struct Job {
    deadline: Option<std::time::Instant>,
    run: Box<dyn FnOnce() + Send>,
}

/// How many jobs the node may give itself (alarm on-trigger scripts) before new ones
/// are dropped, loudly: an alarm storm must not grow memory without bound.
pub const INTERNAL_QUEUE: usize = 10_000;

/// Work a script thread does when it has had no job for a while.
pub type IdleHook = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    name: String,
    queued: AtomicUsize,
    busy: AtomicUsize,
    threads: usize,
    idle: (std::time::Duration, IdleHook),
    /// Callers waiting for room in the external queue ([`ScriptPool::poll_room`]),
    /// woken when a thread takes a job off it.
    waiting: Mutex<Vec<Waker>>,
    waiting_count: AtomicUsize,
}

/// A fixed set of script threads with a bounded queue.
#[derive(Clone)]
pub struct ScriptPool {
    external: Sender<Job>,
    internal: Sender<Job>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ScriptPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptPool")
            .field("name", &self.shared.name)
            .field("threads", &self.shared.threads)
            .field("queued", &self.queued())
            .finish()
    }
}

impl ScriptPool {
    /// Starts `threads` script threads named `{name}-script-N`; `queue` calls may wait.
    /// A thread without a job tidies its own connections every
    /// [`TIDY_EVERY`](super::TIDY_EVERY) ([`tidy_thread`](super::tidy_thread)).
    pub fn new(name: &str, threads: usize, queue: usize) -> ScriptPool {
        ScriptPool::with_idle_hook(
            name,
            threads,
            queue,
            super::TIDY_EVERY,
            Arc::new(super::tidy_thread),
        )
    }

    /// [`new`](Self::new) with another idle hook: each thread runs `hook` after `every`
    /// without a job (and every `every` while it stays idle).
    pub fn with_idle_hook(
        name: &str,
        threads: usize,
        queue: usize,
        every: std::time::Duration,
        hook: IdleHook,
    ) -> ScriptPool {
        let (external, external_rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let (internal, internal_rx) = crossbeam_channel::bounded::<Job>(INTERNAL_QUEUE);
        let shared = Arc::new(Shared {
            name: name.to_string(),
            queued: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            threads: threads.max(1),
            idle: (every, hook),
            waiting: Mutex::new(Vec::new()),
            waiting_count: AtomicUsize::new(0),
        });
        for i in 0..shared.threads {
            let (external_rx, internal_rx, shared) =
                (external_rx.clone(), internal_rx.clone(), shared.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-script-{i}"))
                .stack_size(8 << 20)
                .spawn(move || worker(&external_rx, &internal_rx, &shared));
            if let Err(e) = spawned {
                tracing::error!(pool = name, error = %e, "cannot start a script thread");
            }
        }
        ScriptPool {
            external,
            internal,
            shared,
        }
    }

    /// Queues `job` to run with `deadline` on a script thread; refuses at once when the
    /// queue is full. The returned future resolves to the job's result.
    pub fn submit<T, F>(
        &self,
        deadline: Deadline,
        job: F,
    ) -> Result<impl Future<Output = Result<T, PoolClosed>> + Send + 'static, Overloaded>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = self.job(Some(deadline), job, tx);
        match self.external.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(Overloaded);
            }
        }
        self.publish();
        Ok(async move { rx.await.map_err(|_| PoolClosed) })
    }

    /// Queues work the node gives itself (alarm on-trigger scripts), never awaited.
    /// When [`INTERNAL_QUEUE`] jobs already wait, this one is dropped with an error log
    /// and a metric; returns whether it was queued.
    pub fn spawn_internal<F>(&self, deadline: Deadline, job: F) -> bool
    where
        F: FnOnce() + Send + 'static,
    {
        let (tx, _rx) = tokio::sync::oneshot::channel::<()>();
        let job = self.job(Some(deadline), job, tx);
        let queued = match self.internal.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                dropped(&self.shared, "queue_full");
                tracing::error!(pool = %self.shared.name, limit = INTERNAL_QUEUE, "internal script queue full; job dropped");
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                tracing::error!(pool = %self.shared.name, "script pool stopped; internal job not run");
                false
            }
        };
        self.publish();
        queued
    }

    fn job<T, F>(
        &self,
        deadline: Option<Deadline>,
        job: F,
        tx: tokio::sync::oneshot::Sender<T>,
    ) -> Job
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        Job {
            deadline: deadline.map(|d| d.instant().into_std()),
            run: Box::new(move || {
                let _ = tx.send(job());
            }),
        }
    }

    /// Whether a call [`submit`](Self::submit)ted now would be queued: `Pending` while
    /// the external queue is full, with the task woken when a thread takes a job off it.
    /// This is the pool's readiness: a service in front of it answers `poll_ready` with
    /// it, so a saturated pool says "not ready" (and `LoadShed` above turns that into
    /// [`Overloaded`] at once).
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.external.is_full() {
            return Poll::Ready(());
        }
        {
            let mut waiting = self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
                self.shared.waiting_count.fetch_add(1, Ordering::Release);
            }
        }
        // A thread may have taken a job between the first look and the registration.
        if self.external.is_full() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Calls waiting for a thread.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Threads running a script now.
    pub fn busy(&self) -> usize {
        self.shared.busy.load(Ordering::Relaxed)
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    fn publish(&self) {
        publish(&self.shared);
    }
}

fn publish(shared: &Shared) {
    metrics::gauge!("switchyard_script_queue", "pool" => shared.name.clone())
        .set(shared.queued.load(Ordering::Relaxed) as f64);
    metrics::gauge!("switchyard_script_busy", "pool" => shared.name.clone())
        .set(shared.busy.load(Ordering::Relaxed) as f64);
}

fn dropped(shared: &Shared, reason: &'static str) {
    metrics::counter!("switchyard_script_dropped_total", "pool" => shared.name.clone(), "reason" => reason)
        .increment(1);
}

/// Wakes every caller waiting for room in the queue (one slot freed; the first to
/// submit gets it, the others look again).
fn wake_waiting(shared: &Shared) {
    if shared.waiting_count.load(Ordering::Acquire) == 0 {
        return;
    }
    // Taken and reset under the lock a caller registers under, so no registration
    // falls between the two (it would be counted as none and never woken).
    let wakers = {
        let mut waiting = shared.waiting.lock().unwrap_or_else(|p| p.into_inner());
        shared.waiting_count.store(0, Ordering::Release);
        std::mem::take(&mut *waiting)
    };
    for waker in wakers {
        waker.wake();
    }
}

fn worker(external: &Receiver<Job>, internal: &Receiver<Job>, shared: &Shared) {
    loop {
        // Both queues are served as their jobs arrive (crossbeam picks fairly among
        // ready ones): an alarm storm cannot starve callers, nor callers alarms.
        let (every, hook) = &shared.idle;
        let job = crossbeam_channel::select! {
            recv(internal) -> job => job,
            recv(external) -> job => job,
            default(*every) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook()));
                continue;
            }
        };
        // Both queues close together, when the last pool handle is dropped.
        let Ok(job) = job else { return };
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        wake_waiting(shared);
        if job
            .deadline
            .is_some_and(|deadline| std::time::Instant::now() >= deadline)
        {
            // Nobody waits for its answer any more (the caller got its timeout).
            dropped(shared, "expired");
            tracing::warn!(pool = %shared.name, "script job dropped: its deadline passed while it waited for a thread");
            publish(shared);
            continue;
        }
        shared.busy.fetch_add(1, Ordering::Relaxed);
        publish(shared);
        set_deadline(job.deadline);
        // A panicking script binding must not take the thread down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job.run));
        set_deadline(None);
        shared.busy.fetch_sub(1, Ordering::Relaxed);
        publish(shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Polls `done` every millisecond; panics if it is not true `within`.
    async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < within, "not within {within:?}: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A waker that records that it was woken.
    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A generous bound for what happens at once: a thread taking a job, a 20 ms
    /// deadline passing. Only a broken pool (or a frozen machine) reaches it.
    const PROMPTLY: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_full_queue_is_not_ready_until_a_thread_takes_a_job() {
        // One thread, room for one waiting call.
        let pool = ScriptPool::new("room", 1, 1);
        let gate = Arc::new(std::sync::Barrier::new(2));
        let g = gate.clone();
        let running = pool
            .submit(Deadline::after(Duration::from_secs(5)), move || {
                g.wait();
            })
            .unwrap();
        wait_for("the job occupies the only thread", PROMPTLY, || {
            pool.busy() > 0
        })
        .await;
        let waiting = pool
            .submit(Deadline::after(Duration::from_secs(5)), || 2)
            .unwrap();
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(
            pool.poll_room(&mut cx).is_pending(),
            "the queue is full: not ready"
        );
        assert!(
            pool.submit(Deadline::after(Duration::from_secs(5)), || 3)
                .is_err(),
            "and a submit is refused"
        );
        gate.wait();
        wait_for("the waiting task is woken", PROMPTLY, || {
            woken.0.load(Ordering::SeqCst)
        })
        .await;
        assert!(
            pool.poll_room(&mut cx).is_ready(),
            "a thread took the waiting job"
        );
        running.await.unwrap();
        assert_eq!(waiting.await, Ok(2));
    }

    #[tokio::test]
    async fn expired_jobs_are_dropped_and_the_internal_queue_is_bounded() {
        let pool = ScriptPool::new("expiry", 1, 4);
        let gate = Arc::new(std::sync::Barrier::new(2));
        let g = gate.clone();
        let busy = pool
            .submit(Deadline::after(Duration::from_secs(5)), move || {
                g.wait();
            })
            .unwrap();
        wait_for("the job occupies the only thread", PROMPTLY, || {
            pool.busy() > 0
        })
        .await;
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let short = Deadline::after(Duration::from_millis(20));
        let late = pool
            .submit(short, move || {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        // Fill the internal queue while the only thread is busy: the one past the
        // bound is refused.
        for _ in 0..INTERNAL_QUEUE {
            assert!(pool.spawn_internal(short, || {}));
        }
        assert!(!pool.spawn_internal(Deadline::after(Duration::from_secs(5)), || {}));
        wait_for("the queued jobs' deadline has passed", PROMPTLY, || {
            short.is_expired()
        })
        .await;
        gate.wait();
        busy.await.unwrap();
        assert_eq!(late.await, Err(PoolClosed), "dropped, never run");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        // The pool is free again at once.
        let job = pool
            .submit(Deadline::after(Duration::from_secs(5)), || 9)
            .unwrap();
        assert_eq!(job.await, Ok(9));
    }

    #[tokio::test]
    async fn runs_jobs_off_the_runtime_and_refuses_when_full() {
        let pool = ScriptPool::new("t", 1, 1);
        let gate = Arc::new(std::sync::Barrier::new(2));
        let g = gate.clone();
        let first = pool
            .submit(Deadline::after(Duration::from_secs(5)), move || {
                g.wait();
                std::thread::current().name().map(str::to_string)
            })
            .unwrap();
        wait_for("the first job occupies the only thread", PROMPTLY, || {
            pool.busy() > 0
        })
        .await;
        let second = pool
            .submit(Deadline::after(Duration::from_secs(5)), || 2)
            .unwrap();
        assert!(matches!(
            pool.submit(Deadline::after(Duration::from_secs(5)), || 3),
            Err(Overloaded)
        ));
        gate.wait();
        assert_eq!(first.await.unwrap().as_deref(), Some("t-script-0"));
        assert_eq!(second.await.unwrap(), 2);
        assert_eq!(pool.queued(), 0);
    }

    #[tokio::test]
    async fn an_idle_thread_runs_its_hook_and_still_takes_jobs() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let pool = ScriptPool::with_idle_hook(
            "i",
            1,
            4,
            Duration::from_millis(20),
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        // Two idle periods of 20 ms take 40 ms; the bound leaves room for a loaded machine
        // but not for a hook that waits much longer than it was told to.
        wait_for(
            "the hook ran twice while idle",
            Duration::from_millis(150),
            || ran.load(Ordering::SeqCst) >= 2,
        )
        .await;
        let job = pool.submit(Deadline::after(Duration::from_secs(5)), || 7);
        assert_eq!(job.unwrap().await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_thread() {
        let pool = ScriptPool::new("p", 1, 4);
        let boom = pool
            .submit(Deadline::after(Duration::from_secs(5)), || -> u8 {
                panic!("binding bug")
            })
            .unwrap();
        assert_eq!(boom.await, Err(PoolClosed));
        let after = pool
            .submit(Deadline::after(Duration::from_secs(5)), || 7)
            .unwrap();
        assert_eq!(after.await.unwrap(), 7);
    }

    #[tokio::test]
    async fn the_deadline_is_visible_to_the_job() {
        let pool = ScriptPool::new("d", 1, 4);
        let seen = pool
            .submit(
                Deadline::after(Duration::from_secs(5)),
                super::super::engine::current_deadline,
            )
            .unwrap();
        assert!(seen.await.unwrap().is_some());
    }
}
