//! The durable outbox: messages in fjall, written by one thread that group-commits.
//!
//! Layout (one fjall database, four keyspaces):
//! - `pending`: id → [`StoredMessage`]
//! - `due`: due-ms ‖ id → (empty): the order messages fall due in
//! - `parked`: id → [`ParkedMessage`]
//! - `counts`: category ‖ 0 ‖ target → pending and parked counts (queue depth without scans)
//!
//! Every change is an [`OutboxEvent`] applied by the writer thread: concurrent enqueues
//! share one `fsync` (group commit), and the same events, applied in order to another
//! copy, give the same outbox (what a standby replica needs).

use super::events::OutboxEvent;
use super::message::{
    Category, NewMessage, ParkedMessage, StoredMessage, decode, due_key, encode, parse_due_key,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::MessageId;
use tokio::sync::{Notify, oneshot};

/// Why the outbox could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum OutboxError {
    /// Free disk space is below the configured floor: the message was not buffered.
    #[error(
        "store-and-forward refused the message: only {free_mib} MiB free in {dir} (minimum {floor_mib} MiB)"
    )]
    DiskFull {
        /// Free MiB when refused.
        free_mib: u64,
        /// Configured floor in MiB.
        floor_mib: u64,
        /// The outbox directory.
        dir: String,
    },
    /// The storage engine failed.
    #[error("store-and-forward storage error: {0}")]
    Storage(String),
    /// No parked message with this id.
    #[error("no parked message with id {0}")]
    NotFound(MessageId),
    /// The outbox has been shut down.
    #[error("store-and-forward is shut down")]
    Closed,
    /// The change could not be replicated to a majority of the node pair's voters
    /// (this node is not active, or no majority is reachable): nothing was buffered.
    #[error("store-and-forward is unavailable: {0}")]
    Unavailable(String),
}

/// Where an outbox whose changes are replicated sends them (SPEC §8): every change
/// goes through the replicated log and comes back through
/// [`FjallOutbox::apply_replicated`] on every node, this one included.
pub trait Replicate: Send + Sync + 'static {
    /// Proposes one change; the receiver answers once it is committed and applied here.
    fn propose(&self, events: Vec<OutboxEvent>) -> oneshot::Receiver<Result<(), OutboxError>>;
}

impl From<fjall::Error> for OutboxError {
    fn from(e: fjall::Error) -> Self {
        OutboxError::Storage(e.to_string())
    }
}

/// Settings of an outbox.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    /// Below this much free disk (bytes), new messages are refused.
    pub min_free_disk: u64,
    /// Block cache size in bytes (memory stays flat whatever the backlog).
    pub cache_bytes: u64,
    /// Memtable size of the largest keyspace in bytes (the others get a quarter).
    pub memtable_bytes: u64,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            min_free_disk: 512 << 20,
            cache_bytes: 16 << 20,
            memtable_bytes: 16 << 20,
        }
    }
}

/// Pending and parked messages of one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting for delivery.
    pub pending: u64,
    /// Waiting for an operator.
    pub parked: u64,
}

/// A page of parked messages, oldest first.
#[derive(Debug, Clone)]
pub struct ParkedPage {
    /// The messages.
    pub items: Vec<ParkedMessage>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<MessageId>,
}

type Reply = oneshot::Sender<Result<(), OutboxError>>;

struct Command {
    events: Vec<OutboxEvent>,
    /// Sync to disk before replying (enqueues, operator actions).
    durable: bool,
    reply: Option<Reply>,
    /// Stop the writer after this command.
    shutdown: bool,
}

struct Shared {
    db: Database,
    pending: Keyspace,
    due: Keyspace,
    parked: Keyspace,
    counts: Mutex<HashMap<(Category, String), Counts>>,
    /// Woken when new work may be due (enqueue, retry of a parked message).
    work: Notify,
    dir: PathBuf,
    /// Messages delivered from the outbox since it was opened (for a delivery rate).
    delivered: AtomicU64,
    /// State kept beside the messages by whoever replicates them (the last applied log
    /// entry), written in the same batches.
    meta: Keyspace,
    /// Set when changes are replicated: they go there instead of to the writer.
    replicate: std::sync::OnceLock<Arc<dyn Replicate>>,
}

/// The fjall-backed outbox. Cheap to clone; the writer thread stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct FjallOutbox {
    shared: Arc<Shared>,
    core: Arc<Writer>,
    commands: crossbeam_channel::Sender<Command>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for FjallOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallOutbox")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

/// Most events the writer folds into one batch.
const MAX_GROUP: usize = 4096;

impl FjallOutbox {
    /// Opens (or creates) the outbox in `dir` and starts its writer thread. Messages
    /// left pending by an earlier run are due again at their recorded times.
    pub fn open(dir: &Path, options: OutboxOptions) -> Result<FjallOutbox, OutboxError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| OutboxError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::builder(dir)
            .cache_size(options.cache_bytes)
            .open()?;
        let big = options.memtable_bytes.max(1 << 20);
        let small = (big / 4).max(1 << 20);
        let pending = db.keyspace("pending", || {
            KeyspaceCreateOptions::default().max_memtable_size(big)
        })?;
        let due = db.keyspace("due", || {
            KeyspaceCreateOptions::default().max_memtable_size(small)
        })?;
        let parked = db.keyspace("parked", || {
            KeyspaceCreateOptions::default().max_memtable_size(small)
        })?;
        let counts_ks = db.keyspace("counts", || {
            KeyspaceCreateOptions::default().max_memtable_size(1 << 20)
        })?;
        let meta = db.keyspace("meta", || {
            KeyspaceCreateOptions::default().max_memtable_size(1 << 20)
        })?;
        let counts = read_counts(&counts_ks)?;
        let shared = Arc::new(Shared {
            db,
            pending,
            due,
            parked,
            counts: Mutex::new(counts),
            work: Notify::new(),
            dir: dir.to_path_buf(),
            delivered: AtomicU64::new(0),
            meta,
            replicate: std::sync::OnceLock::new(),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let core = Arc::new(Writer {
            shared: shared.clone(),
            counts_ks,
            min_free_disk: options.min_free_disk,
            commit: Mutex::new(()),
        });
        let writer = core.clone();
        let thread = std::thread::Builder::new()
            .name("sf-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| OutboxError::Storage(format!("cannot start the outbox writer: {e}")))?;
        let outbox = FjallOutbox {
            shared,
            core,
            commands: tx,
            writer: Arc::new(Mutex::new(Some(thread))),
        };
        outbox.publish_gauges();
        Ok(outbox)
    }

    /// Stops the writer after what was submitted before, syncs, and waits for it.
    /// Other clones fail with [`OutboxError::Closed`] afterwards; the directory is
    /// released when the last clone is dropped.
    pub fn close(self) {
        let _ = self.commands.send(Command {
            events: Vec::new(),
            durable: true,
            reply: None,
            shutdown: true,
        });
        let thread = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// The directory the outbox lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Buffers a message; returns once it is synced to disk. Concurrent calls share
    /// one sync.
    pub async fn enqueue(&self, message: NewMessage) -> Result<MessageId, OutboxError> {
        let id = message.id;
        let stored = stored_from_new(message, now_ms());
        self.submit(vec![OutboxEvent::Enqueued(stored)], true)
            .await?;
        Ok(id)
    }

    /// [`enqueue`](Self::enqueue) for threads outside the async runtime (script threads).
    pub fn enqueue_blocking(&self, message: NewMessage) -> Result<MessageId, OutboxError> {
        let id = message.id;
        let stored = stored_from_new(message, now_ms());
        let rx = self.send(vec![OutboxEvent::Enqueued(stored)], true)?;
        rx.blocking_recv().map_err(|_| OutboxError::Closed)??;
        Ok(id)
    }

    /// Applies events (the forwarder's results, a replica's feed). `durable` waits for
    /// the sync; otherwise the events reach the OS before this returns, the disk soon after.
    pub async fn apply(&self, events: Vec<OutboxEvent>, durable: bool) -> Result<(), OutboxError> {
        self.submit(events, durable).await
    }

    async fn submit(&self, events: Vec<OutboxEvent>, durable: bool) -> Result<(), OutboxError> {
        let rx = self.send(events, durable)?;
        rx.await.map_err(|_| OutboxError::Closed)?
    }

    fn send(
        &self,
        events: Vec<OutboxEvent>,
        durable: bool,
    ) -> Result<oneshot::Receiver<Result<(), OutboxError>>, OutboxError> {
        if let Some(replicate) = self.shared.replicate.get() {
            if events.iter().any(|e| matches!(e, OutboxEvent::Enqueued(_)))
                && let Some(refused) = self.core.check_disk()
            {
                return Err(refused);
            }
            return Ok(replicate.propose(events));
        }
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command {
                events,
                durable,
                reply: Some(tx),
                shutdown: false,
            })
            .map_err(|_| OutboxError::Closed)?;
        Ok(rx)
    }

    /// Messages due at `now_ms`, in due order, at most `limit`, skipping `skip` (those
    /// already being delivered). Scans from `from` (a due key returned earlier as the
    /// cursor) so that the tombstones of delivered messages are not walked again.
    /// Blocking: call off the async workers.
    pub fn due(
        &self,
        now_ms: u64,
        limit: usize,
        skip: &HashSet<MessageId>,
        from: Option<[u8; 24]>,
    ) -> Result<DueBatch, OutboxError> {
        let start = from.unwrap_or([0u8; 24]);
        let mut end = [0xffu8; 24];
        end[..8].copy_from_slice(&now_ms.to_be_bytes());
        let mut messages = Vec::new();
        let mut cursor = from;
        for item in self.shared.due.range(start..=end) {
            let key = item.key()?;
            let Some((due_ms, id)) = parse_due_key(&key) else {
                continue;
            };
            if skip.contains(&id) {
                continue;
            }
            if messages.len() >= limit {
                break;
            }
            if let Some(bytes) = self.shared.pending.get(id.to_bytes())? {
                match decode::<StoredMessage>(&bytes) {
                    Ok(message) => messages.push(message),
                    // Never skipped forever: parked with the reason, for an operator.
                    Err(e) => self.park_undecodable(id, due_ms, &bytes, &e)?,
                }
            }
            let mut k = [0u8; 24];
            k.copy_from_slice(&key);
            cursor = Some(k);
        }
        Ok(DueBatch { messages, cursor })
    }

    /// Parks a pending record that cannot be decoded (written by an incompatible
    /// release, or damaged): what can be read of it — category, target, payload — is
    /// kept, the rest is the raw text, and the reason names the decoding error.
    /// Blocking: waits for the writer.
    fn park_undecodable(
        &self,
        id: MessageId,
        due_ms: u64,
        bytes: &[u8],
        error: &super::message::DecodeError,
    ) -> Result<(), OutboxError> {
        tracing::error!(%id, error = %error, "parking an undecodable outbox record");
        let parked = ParkedMessage {
            message: salvage(id, due_ms, bytes, error),
            parked_ms: now_ms(),
            reason: format!("undecodable record: {error}"),
        };
        let rx = self.send(
            vec![OutboxEvent::Parked {
                parked,
                prev_due_ms: due_ms,
            }],
            true,
        )?;
        rx.blocking_recv().map_err(|_| OutboxError::Closed)?
    }

    /// From now on every change is proposed to `replicate` instead of written here;
    /// it comes back through [`apply_replicated`](Self::apply_replicated). Set once,
    /// before the outbox is used; a second call is an error.
    pub fn replicate_through(&self, replicate: Arc<dyn Replicate>) -> Result<(), OutboxError> {
        self.shared
            .replicate
            .set(replicate)
            .map_err(|_| OutboxError::Storage("the outbox is already replicated".into()))
    }

    /// Applies one committed entry of the replicated log: each part is one proposed
    /// change (its result comes back in the same place), `meta` is written in the same
    /// atomic batch (the replication's applied position), so after a crash the entry is
    /// either wholly applied and recorded or not at all. Not synced: the replicated log
    /// is the durable copy. No disk floor here (the proposer checked it; a replica must
    /// apply what the majority committed). Blocking.
    pub fn apply_replicated(
        &self,
        parts: &[Vec<OutboxEvent>],
        meta: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<Result<(), OutboxError>>, OutboxError> {
        self.core.apply_parts(parts, meta)
    }

    /// A value written by [`apply_replicated`](Self::apply_replicated)'s `meta`.
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, OutboxError> {
        Ok(self.shared.meta.get(key)?.map(|v| v.to_vec()))
    }

    /// Syncs everything written so far to disk.
    pub fn sync(&self) -> Result<(), OutboxError> {
        Ok(self.shared.db.persist(PersistMode::SyncData)?)
    }

    /// The whole outbox (messages, counts, meta) as one consistent image, for a
    /// replica to [`import`](Self::import). Blocking.
    pub fn export(&self) -> Result<OutboxImage, OutboxError> {
        use fjall::Readable;
        // Counts are written in the same batches as the messages, so a fjall snapshot is
        // consistent; the lock only keeps a batch from being half-visible while it is taken.
        let snapshot = {
            let _commit = self.core.lock_commit();
            self.shared.db.snapshot()
        };
        let mut out = Vec::with_capacity(4096);
        let mut meta = std::collections::BTreeMap::new();
        out.push(EXPORT_VERSION);
        for (tag, keyspace) in self.core.keyspaces() {
            for item in snapshot.iter(keyspace) {
                let (key, value) = item.into_inner()?;
                if tag == META_TAG {
                    meta.insert(key.to_vec(), value.to_vec());
                }
                out.push(tag);
                out.extend_from_slice(&(key.len() as u32).to_be_bytes());
                out.extend_from_slice(&key);
                out.extend_from_slice(&(value.len() as u32).to_be_bytes());
                out.extend_from_slice(&value);
            }
        }
        Ok(OutboxImage { bytes: out, meta })
    }

    /// Replaces the whole outbox with an image from [`export`](Self::export) and syncs.
    /// The image is checked completely before anything is cleared. Blocking.
    pub fn import(&self, image: &[u8]) -> Result<(), OutboxError> {
        let records = parse_export(image)?;
        let _commit = self.core.lock_commit();
        let keyspaces = self.core.keyspaces();
        // One atomic batch: every key removed, every record inserted, the replicated
        // position among them. A crash leaves the old outbox or the new one, never half.
        let mut batch = self.shared.db.batch();
        for (_, keyspace) in &keyspaces {
            for item in keyspace.iter() {
                batch.remove(keyspace, item.key()?);
            }
        }
        for (tag, key, value) in records {
            let (_, keyspace) = keyspaces
                .iter()
                .find(|(t, _)| *t == tag)
                .expect("parse_export accepts known tags only");
            batch.insert(keyspace, key, value);
        }
        batch.commit()?;
        self.shared.db.persist(PersistMode::SyncData)?;
        let counts = read_counts(&self.core.counts_ks)?;
        *self.shared.counts.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        self.publish_gauges();
        self.shared.work.notify_one();
        Ok(())
    }

    /// Messages delivered from the outbox since it was opened: two readings over time
    /// give the delivery rate.
    pub fn delivered_total(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    /// When the earliest pending message falls due (ms since the Unix epoch).
    /// Blocking: call off the async workers.
    pub fn next_due_ms(&self) -> Result<Option<u64>, OutboxError> {
        match self.shared.due.first_key_value() {
            Some(item) => Ok(parse_due_key(&item.key()?).map(|(due, _)| due)),
            None => Ok(None),
        }
    }

    /// A page of parked messages, oldest first. Blocking: call off the async workers.
    pub fn list_parked(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<ParkedPage, OutboxError> {
        let mut items = Vec::new();
        let start = after.map(|id| {
            let mut k = id.to_bytes().to_vec();
            k.push(0); // strictly after `id`
            k
        });
        let iter = match &start {
            Some(k) => self.shared.parked.range(k.clone()..),
            None => self.shared.parked.iter(),
        };
        let mut more = false;
        for item in iter {
            if items.len() >= limit {
                more = true;
                break;
            }
            let (_, value) = item.into_inner()?;
            match decode::<ParkedMessage>(&value) {
                Ok(parked) => items.push(parked),
                Err(e) => tracing::error!(error = %e, "skipping an undecodable parked record"),
            }
        }
        let next = if more {
            items.last().map(|p| p.message.id)
        } else {
            None
        };
        Ok(ParkedPage { items, next })
    }

    /// One parked message. Blocking: call off the async workers.
    pub fn get_parked(&self, id: MessageId) -> Result<Option<ParkedMessage>, OutboxError> {
        match self.shared.parked.get(id.to_bytes())? {
            Some(bytes) => decode(&bytes)
                .map(Some)
                .map_err(|e| OutboxError::Storage(e.to_string())),
            None => Ok(None),
        }
    }

    /// Whether a message is still pending. Blocking: call off the async workers.
    pub fn is_pending(&self, id: MessageId) -> Result<bool, OutboxError> {
        Ok(self.shared.pending.contains_key(id.to_bytes())?)
    }

    /// When the oldest pending message of each target was buffered (ms since the Unix
    /// epoch), for the "oldest pending age" an operator alerts on. Ids are time-ordered,
    /// so this walks `pending` from its oldest entry until every target with pending
    /// messages has been met, reading at most `max_walk` records; a target not met by
    /// then gets the buffering time of the last record read, which is older than any of
    /// its messages (an upper bound of the age). Blocking: call off the async workers.
    pub fn oldest_pending(
        &self,
        max_walk: usize,
    ) -> Result<Vec<(Category, String, u64)>, OutboxError> {
        #[derive(serde::Deserialize)]
        struct Owner {
            category: Category,
            target: String,
        }
        let mut waiting: HashSet<(Category, String)> = self
            .counts()
            .into_iter()
            .filter(|(_, _, c)| c.pending > 0)
            .map(|(category, target, _)| (category, target))
            .collect();
        let mut oldest = Vec::new();
        let mut last_ms = None;
        let mut walked = 0;
        for item in self.shared.pending.iter() {
            if waiting.is_empty() || walked == max_walk {
                break;
            }
            walked += 1;
            let (key, value) = item.into_inner()?;
            let Some(id) = MessageId::from_slice(&key) else {
                continue;
            };
            last_ms = Some(id.unix_millis());
            if let Ok(owner) = decode::<Owner>(&value)
                && waiting.remove(&(owner.category, owner.target.clone()))
            {
                oldest.push((owner.category, owner.target, id.unix_millis()));
            }
        }
        if let (Some(last_ms), true) = (last_ms, walked == max_walk) {
            oldest.extend(waiting.into_iter().map(|(c, t)| (c, t, last_ms)));
        }
        Ok(oldest)
    }

    /// Moves a parked message back to pending, due now, with its attempts reset.
    pub async fn retry_parked(&self, id: MessageId) -> Result<(), OutboxError> {
        self.submit(
            vec![OutboxEvent::Retried {
                id,
                due_ms: now_ms(),
            }],
            true,
        )
        .await
    }

    /// Deletes a parked message.
    pub async fn discard_parked(&self, id: MessageId) -> Result<(), OutboxError> {
        self.submit(vec![OutboxEvent::Discarded { id }], true).await
    }

    /// Pending and parked counts per category and target.
    pub fn counts(&self) -> Vec<(Category, String, Counts)> {
        let counts = self.shared.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = counts
            .iter()
            .map(|((c, t), n)| (*c, t.clone(), *n))
            .collect();
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out
    }

    /// Total pending messages.
    pub fn pending_total(&self) -> u64 {
        self.counts().iter().map(|(_, _, c)| c.pending).sum()
    }

    /// Waits until new work may be due.
    pub async fn work_notified(&self) {
        self.shared.work.notified().await;
    }

    fn publish_gauges(&self) {
        for (category, target, counts) in self.counts() {
            metrics::gauge!("switchyard_sf_pending", "category" => category.as_str(), "target" => target.clone()).set(counts.pending as f64);
            metrics::gauge!("switchyard_sf_parked", "category" => category.as_str(), "target" => target).set(counts.parked as f64);
        }
    }
}

/// Result of [`FjallOutbox::due`].
#[derive(Debug)]
pub struct DueBatch {
    /// Due messages.
    pub messages: Vec<StoredMessage>,
    /// Where the next scan may start.
    pub cursor: Option<[u8; 24]>,
}

/// The most of an undecodable record that can be read: its fields where they are
/// readable JSON, else the raw text (at most 64 KiB) as the payload.
fn salvage(
    id: MessageId,
    due_ms: u64,
    bytes: &[u8],
    error: &super::message::DecodeError,
) -> StoredMessage {
    const MAX_RAW: usize = 64 << 10;
    let body = bytes.get(1..).unwrap_or_default();
    let fields: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |name: &str| fields.get(name).cloned();
    let raw = || {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_RAW)]);
        serde_json::Value::String(text.into_owned())
    };
    StoredMessage {
        id,
        category: field("category")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or(Category::External),
        target: field("target")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "(undecodable)".into()),
        payload: field("payload").unwrap_or_else(raw),
        retry: field("retry")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        created_ms: field("created_ms")
            .and_then(|v| v.as_u64())
            .unwrap_or(due_ms),
        attempts: field("attempts")
            .and_then(|v| v.as_u64())
            .map_or(0, |a| u32::try_from(a).unwrap_or(u32::MAX)),
        due_ms,
        last_error: Some(error.to_string()),
    }
}

fn stored_from_new(message: NewMessage, now: u64) -> StoredMessage {
    StoredMessage {
        id: message.id,
        category: message.category,
        target: message.target,
        payload: message.payload,
        retry: message.retry,
        created_ms: now,
        attempts: 0,
        due_ms: now.saturating_add(duration_ms(message.first_delay)),
        last_error: message.last_error,
    }
}

/// Milliseconds since the Unix epoch, by the runtime's clock (so that paused-time tests
/// move it): the wall-clock time when the process started plus the monotonic time since.
pub fn now_ms() -> u64 {
    use std::sync::OnceLock;
    static BASE: OnceLock<(u64, std::time::Instant)> = OnceLock::new();
    let (base_ms, base_instant) = *BASE.get_or_init(|| {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (duration_ms(wall), std::time::Instant::now())
    });
    let now = tokio::time::Instant::now().into_std();
    base_ms + duration_ms(now.saturating_duration_since(base_instant))
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn count_key(category: Category, target: &str) -> Vec<u8> {
    let mut key = category.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(target.as_bytes());
    key
}

fn decode_count_key(key: &[u8]) -> Option<(Category, String)> {
    let split = key.iter().position(|&b| b == 0)?;
    let category = match &key[..split] {
        b"external" => Category::External,
        b"database" => Category::Database,
        b"notification" => Category::Notification,
        _ => return None,
    };
    Some((category, String::from_utf8(key[split + 1..].to_vec()).ok()?))
}

fn encode_counts(c: Counts) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&c.pending.to_be_bytes());
    out[8..].copy_from_slice(&c.parked.to_be_bytes());
    out
}

fn decode_counts(bytes: &[u8]) -> Option<Counts> {
    if bytes.len() != 16 {
        return None;
    }
    Some(Counts {
        pending: u64::from_be_bytes(bytes[..8].try_into().ok()?),
        parked: u64::from_be_bytes(bytes[8..].try_into().ok()?),
    })
}

/// The single writer: owns every mutation, so counts are exact and events apply in
/// one order.
struct Writer {
    shared: Arc<Shared>,
    counts_ks: Keyspace,
    min_free_disk: u64,
    /// Held while a batch is staged and committed: the writer thread and replicated
    /// applies take turns, and an export sees no half-merged counts.
    commit: Mutex<()>,
}

impl Writer {
    fn lock_commit(&self) -> std::sync::MutexGuard<'_, ()> {
        self.commit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every keyspace with its tag in an export image.
    fn keyspaces(&self) -> [(u8, &Keyspace); 5] {
        let s = &self.shared;
        [
            (1, &s.pending),
            (2, &s.due),
            (3, &s.parked),
            (4, &self.counts_ks),
            (META_TAG, &s.meta),
        ]
    }

    fn apply_parts(
        &self,
        parts: &[Vec<OutboxEvent>],
        meta: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<Result<(), OutboxError>>, OutboxError> {
        let _commit = self.lock_commit();
        let mut batch = self.shared.db.batch();
        let mut deltas: HashMap<(Category, String), (i64, i64)> = HashMap::new();
        let mut touched: HashSet<MessageId> = HashSet::new();
        let mut new_work = false;
        let results = parts
            .iter()
            .map(|events| {
                let mut result = Ok(());
                for event in events {
                    if let Err(e) = self.stage(event, &mut batch, &mut deltas, &mut touched) {
                        result = Err(e);
                    }
                    new_work |= matches!(
                        event,
                        OutboxEvent::Enqueued(_)
                            | OutboxEvent::Retried { .. }
                            | OutboxEvent::AdoptedPending(_)
                    );
                }
                result
            })
            .collect();
        for (key, value) in meta {
            batch.insert(&self.shared.meta, key.as_slice(), value.as_slice());
        }
        self.write(batch, &deltas)?;
        self.merge_counts(&deltas);
        if new_work {
            self.shared.work.notify_one();
        }
        Ok(results)
    }

    fn run(self: Arc<Self>, rx: crossbeam_channel::Receiver<Command>) {
        let syncs = Arc::new(SyncQueue::default());
        let syncer = {
            let syncs = syncs.clone();
            let db = self.shared.db.clone();
            std::thread::Builder::new()
                .name("sf-sync".into())
                .spawn(move || syncs.run(&db))
        };
        let syncer = match syncer {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the outbox sync thread; syncing inline");
                None
            }
        };
        while let Ok(first) = rx.recv() {
            // Group commit: everything that queued up while the previous batch was being
            // written or synced goes into one batch; the sync thread then covers it with
            // one fsync while this thread already takes the next batch.
            let mut stop = first.shutdown;
            let mut group = vec![first];
            let mut events = group[0].events.len();
            while events < MAX_GROUP && !stop {
                match rx.try_recv() {
                    Ok(cmd) => {
                        events += cmd.events.len();
                        stop |= cmd.shutdown;
                        group.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group, syncer.as_ref().map(|_| &*syncs));
            if stop {
                break;
            }
        }
        syncs.close();
        if let Some(handle) = syncer {
            let _ = handle.join();
        }
        // Every sender is gone: make what was written durable before the thread ends.
        let _ = self.shared.db.persist(PersistMode::SyncAll);
    }

    /// Writes one group. Durable commands are answered by the sync thread (or here,
    /// after an inline sync, when there is none); the others as soon as the batch is
    /// written.
    fn commit_group(&self, group: Vec<Command>, syncs: Option<&SyncQueue>) {
        let _commit = self.lock_commit();
        let refusal = if group.iter().any(|c| {
            c.events
                .iter()
                .any(|e| matches!(e, OutboxEvent::Enqueued(_)))
        }) {
            self.check_disk()
        } else {
            None
        };
        let mut batch = self.shared.db.batch();
        let mut deltas: HashMap<(Category, String), (i64, i64)> = HashMap::new();
        let mut touched: HashSet<MessageId> = HashSet::new();
        let mut results: Vec<Result<(), OutboxError>> = Vec::with_capacity(group.len());
        let mut new_work = false;
        for cmd in &group {
            let enqueues = cmd
                .events
                .iter()
                .any(|e| matches!(e, OutboxEvent::Enqueued(_)));
            if let (true, Some(refused)) = (enqueues, &refusal) {
                results.push(Err(refused.clone()));
                continue;
            }
            let mut result = Ok(());
            for event in &cmd.events {
                if let Err(e) = self.stage(event, &mut batch, &mut deltas, &mut touched) {
                    result = Err(e);
                }
                new_work |= matches!(
                    event,
                    OutboxEvent::Enqueued(_) | OutboxEvent::Retried { .. }
                );
            }
            results.push(result);
        }
        let mut committed = self.write(batch, &deltas);
        let inline_sync = syncs.is_none() && group.iter().any(|c| c.durable);
        if committed.is_ok() && inline_sync {
            committed = self
                .shared
                .db
                .persist(PersistMode::SyncData)
                .map_err(OutboxError::from);
        }
        if committed.is_ok() {
            self.merge_counts(&deltas);
            if new_work {
                self.shared.work.notify_one();
            }
        }
        let mut to_sync = Vec::new();
        for (cmd, result) in group.into_iter().zip(results) {
            let result = match (&committed, result) {
                (Err(e), Ok(())) => Err(e.clone()),
                (_, r) => r,
            };
            let Some(reply) = cmd.reply else { continue };
            match (result, syncs) {
                (Ok(()), Some(_)) if cmd.durable => to_sync.push(reply),
                (result, _) => {
                    let _ = reply.send(result);
                }
            }
        }
        if let Some(syncs) = syncs {
            syncs.push(to_sync);
        }
    }

    fn check_disk(&self) -> Option<OutboxError> {
        let free = fs4::available_space(&self.shared.dir).ok()?;
        (free < self.min_free_disk).then(|| OutboxError::DiskFull {
            free_mib: free >> 20,
            floor_mib: self.min_free_disk >> 20,
            dir: self.shared.dir.display().to_string(),
        })
    }

    /// Adds one event to the batch. Events that need the current state (operator
    /// actions on parked messages) read it; ids already changed in this batch are
    /// refused so two actions on one message cannot both apply.
    fn stage(
        &self,
        event: &OutboxEvent,
        batch: &mut fjall::OwnedWriteBatch,
        deltas: &mut HashMap<(Category, String), (i64, i64)>,
        touched: &mut HashSet<MessageId>,
    ) -> Result<(), OutboxError> {
        let s = &self.shared;
        match event {
            OutboxEvent::Enqueued(m) => {
                batch.insert(&s.pending, m.id.to_bytes(), encode(m));
                batch.insert(&s.due, due_key(m.due_ms, &m.id), []);
                bump(deltas, m.category, &m.target, 1, 0);
            }
            OutboxEvent::Rescheduled {
                message,
                prev_due_ms,
            } => {
                // An outcome for a message no longer pending (recorded twice, after a
                // failover or a proposal that committed after its timeout) changes nothing.
                if !self.still_pending(&message.id)? {
                    return Ok(());
                }
                batch.remove(&s.due, due_key(*prev_due_ms, &message.id));
                batch.insert(&s.pending, message.id.to_bytes(), encode(message));
                batch.insert(&s.due, due_key(message.due_ms, &message.id), []);
            }
            OutboxEvent::Delivered {
                id,
                due_ms,
                category,
                target,
            } => {
                if !self.still_pending(id)? {
                    return Ok(());
                }
                batch.remove(&s.due, due_key(*due_ms, id));
                batch.remove(&s.pending, id.to_bytes());
                bump(deltas, *category, target, -1, 0);
                s.delivered.fetch_add(1, Ordering::Relaxed);
            }
            OutboxEvent::Parked {
                parked,
                prev_due_ms,
            } => {
                let m = &parked.message;
                if !self.still_pending(&m.id)? {
                    return Ok(());
                }
                batch.remove(&s.due, due_key(*prev_due_ms, &m.id));
                batch.remove(&s.pending, m.id.to_bytes());
                batch.insert(&s.parked, m.id.to_bytes(), encode(parked));
                bump(deltas, m.category, &m.target, -1, 1);
            }
            OutboxEvent::Retried { id, due_ms } => {
                let parked = self.parked_once(id, touched)?;
                let mut m = parked.message;
                m.attempts = 0;
                m.due_ms = *due_ms;
                batch.remove(&s.parked, id.to_bytes());
                batch.insert(&s.pending, id.to_bytes(), encode(&m));
                batch.insert(&s.due, due_key(m.due_ms, id), []);
                bump(deltas, m.category, &m.target, 1, -1);
            }
            OutboxEvent::AdoptedPending(m) => {
                if self.held(&m.id, touched)? {
                    return Ok(());
                }
                batch.insert(&s.pending, m.id.to_bytes(), encode(m));
                batch.insert(&s.due, due_key(m.due_ms, &m.id), []);
                bump(deltas, m.category, &m.target, 1, 0);
            }
            OutboxEvent::AdoptedParked(parked) => {
                let m = &parked.message;
                if self.held(&m.id, touched)? {
                    return Ok(());
                }
                batch.insert(&s.parked, m.id.to_bytes(), encode(parked));
                bump(deltas, m.category, &m.target, 0, 1);
            }
            OutboxEvent::Discarded { id } => {
                let parked = self.parked_once(id, touched)?;
                batch.remove(&s.parked, id.to_bytes());
                bump(
                    deltas,
                    parked.message.category,
                    &parked.message.target,
                    0,
                    -1,
                );
            }
        }
        Ok(())
    }

    /// Whether a message is pending as far as this batch can tell (committed before it).
    fn still_pending(&self, id: &MessageId) -> Result<bool, OutboxError> {
        Ok(self.shared.pending.contains_key(id.to_bytes())?)
    }

    /// Whether a message is already held (pending or parked, or changed in this batch).
    fn held(&self, id: &MessageId, touched: &mut HashSet<MessageId>) -> Result<bool, OutboxError> {
        let key = id.to_bytes();
        Ok(!touched.insert(*id)
            || self.shared.pending.contains_key(key)?
            || self.shared.parked.contains_key(key)?)
    }

    /// The parked message an operator action names; `NotFound` when there is none or
    /// when this batch already acted on it.
    fn parked_once(
        &self,
        id: &MessageId,
        touched: &mut HashSet<MessageId>,
    ) -> Result<ParkedMessage, OutboxError> {
        if !touched.insert(*id) {
            return Err(OutboxError::NotFound(*id));
        }
        let bytes = self
            .shared
            .parked
            .get(id.to_bytes())?
            .ok_or(OutboxError::NotFound(*id))?;
        decode(&bytes).map_err(|e| OutboxError::Storage(e.to_string()))
    }

    fn write(
        &self,
        mut batch: fjall::OwnedWriteBatch,
        deltas: &HashMap<(Category, String), (i64, i64)>,
    ) -> Result<(), OutboxError> {
        {
            let counts = self.shared.counts.lock().unwrap_or_else(|p| p.into_inner());
            for ((category, target), (dp, dk)) in deltas {
                let current = counts
                    .get(&(*category, target.clone()))
                    .copied()
                    .unwrap_or_default();
                let next = apply_delta(current, *dp, *dk);
                batch.insert(
                    &self.counts_ks,
                    count_key(*category, target),
                    encode_counts(next),
                );
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn merge_counts(&self, deltas: &HashMap<(Category, String), (i64, i64)>) {
        if deltas.is_empty() {
            return;
        }
        let mut counts = self.shared.counts.lock().unwrap_or_else(|p| p.into_inner());
        for ((category, target), (dp, dk)) in deltas {
            let entry = counts.entry((*category, target.clone())).or_default();
            *entry = apply_delta(*entry, *dp, *dk);
            metrics::gauge!("switchyard_sf_pending", "category" => category.as_str(), "target" => target.clone()).set(entry.pending as f64);
            metrics::gauge!("switchyard_sf_parked", "category" => category.as_str(), "target" => target.clone()).set(entry.parked as f64);
        }
    }
}

/// Replies waiting for the next fsync. The sync thread takes all of them, syncs once,
/// and answers them together: everything written while one sync runs shares the next.
#[derive(Default)]
struct SyncQueue {
    state: Mutex<(Vec<Reply>, bool)>,
    wake: std::sync::Condvar,
}

impl SyncQueue {
    fn push(&self, replies: Vec<Reply>) {
        if replies.is_empty() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.extend(replies);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.wake.notify_one();
    }

    fn run(&self, db: &Database) {
        loop {
            let waiting = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                while state.0.is_empty() && !state.1 {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                if state.0.is_empty() {
                    return;
                }
                std::mem::take(&mut state.0)
            };
            // Every reply taken was written before this sync started.
            let result = db.persist(PersistMode::SyncData).map_err(OutboxError::from);
            for reply in waiting {
                let _ = reply.send(result.clone());
            }
        }
    }
}

fn bump(
    deltas: &mut HashMap<(Category, String), (i64, i64)>,
    category: Category,
    target: &str,
    pending: i64,
    parked: i64,
) {
    let entry = deltas.entry((category, target.to_string())).or_default();
    entry.0 += pending;
    entry.1 += parked;
}

fn apply_delta(c: Counts, pending: i64, parked: i64) -> Counts {
    Counts {
        pending: c.pending.saturating_add_signed(pending),
        parked: c.parked.saturating_add_signed(parked),
    }
}

/// Version byte of an [`FjallOutbox::export`] image.
const EXPORT_VERSION: u8 = 1;

/// Tag of the meta keyspace in an image.
const META_TAG: u8 = 5;

/// The whole outbox as one consistent image ([`FjallOutbox::export`]).
#[derive(Debug, Clone)]
pub struct OutboxImage {
    /// What [`FjallOutbox::import`] takes.
    pub bytes: Vec<u8>,
    /// The meta values in it (written by [`FjallOutbox::apply_replicated`]).
    pub meta: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
}

/// One record of an export image: keyspace tag, key, value.
type ImageRecord<'a> = (u8, &'a [u8], &'a [u8]);

/// Reads an export image completely.
fn parse_export(image: &[u8]) -> Result<Vec<ImageRecord<'_>>, OutboxError> {
    let Some((&EXPORT_VERSION, mut rest)) = image.split_first() else {
        return Err(bad_image("unknown version"));
    };
    let mut records = Vec::new();
    while let Some((&tag, tail)) = rest.split_first() {
        if !(1..=5).contains(&tag) {
            return Err(bad_image(&format!("unknown keyspace tag {tag}")));
        }
        rest = tail;
        let key = take_field(&mut rest)?;
        let value = take_field(&mut rest)?;
        records.push((tag, key, value));
    }
    Ok(records)
}

/// One length-prefixed field of an export image.
fn take_field<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], OutboxError> {
    let Some((len, tail)) = rest.split_first_chunk::<4>() else {
        return Err(bad_image("truncated"));
    };
    let len = u32::from_be_bytes(*len) as usize;
    if tail.len() < len {
        return Err(bad_image("truncated"));
    }
    let (field, tail) = tail.split_at(len);
    *rest = tail;
    Ok(field)
}

fn bad_image(why: &str) -> OutboxError {
    OutboxError::Storage(format!("invalid outbox image: {why}"))
}

fn read_counts(counts_ks: &Keyspace) -> Result<HashMap<(Category, String), Counts>, OutboxError> {
    let mut counts = HashMap::new();
    for item in counts_ks.iter() {
        let (key, value) = item.into_inner()?;
        if let (Some(target), Some(c)) = (decode_count_key(&key), decode_counts(&value)) {
            counts.insert(target, c);
        }
    }
    Ok(counts)
}
