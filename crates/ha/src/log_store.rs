//! The replicated log and the vote, on fjall (`DATA_DIR/raft`): entries keyed by their
//! index (big-endian), the vote, the committed position and the last purged entry in a
//! small state keyspace. Every append and vote is synced (`SyncData`) before openraft
//! hears of it: a voter that acknowledged an entry still has it after a power cut.

use crate::{NodeId, TypeConfig, any};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

/// The log of one voter. Cheap to clone (the reader openraft asks for is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Database,
    log: Keyspace,
    state: Keyspace,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<LogStore, fjall::Error> {
        let db = Database::builder(dir).open()?;
        let log = db.keyspace("log", KeyspaceCreateOptions::default)?;
        let state = db.keyspace("state", KeyspaceCreateOptions::default)?;
        Ok(LogStore { db, log, state })
    }

    fn read_state<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, String> {
        match self.state.get(key).map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(key))),
            None => Ok(None),
        }
    }

    fn write_state<T: Serialize>(&self, key: &[u8], value: &T, sync: bool) -> Result<(), String> {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        self.state.insert(key, bytes).map_err(|e| e.to_string())?;
        if sync {
            self.db
                .persist(PersistMode::SyncData)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, String> {
        match self.log.last_key_value() {
            Some(item) => {
                let (_, value) = item.into_inner().map_err(|e| e.to_string())?;
                let entry: Entry<TypeConfig> =
                    serde_json::from_slice(&value).map_err(|e| e.to_string())?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }
}

fn bound(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(i.to_be_bytes()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let range = (bound(range.start_bound()), bound(range.end_bound()));
        let mut entries = Vec::new();
        for item in self.log.range(range) {
            let (_, value) = item
                .into_inner()
                .map_err(|e| StorageIOError::read_logs(any(e)))?;
            entries.push(
                serde_json::from_slice(&value).map_err(|e| StorageIOError::read_logs(any(e)))?,
            );
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> = self
            .read_state(PURGED)
            .map_err(|e| StorageIOError::read_logs(any(e)))?;
        let last = self
            .last_entry_id()
            .map_err(|e| StorageIOError::read_logs(any(e)))?
            .or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let store = self.clone();
        let vote = *vote;
        tokio::task::spawn_blocking(move || store.write_state(VOTE, &vote, true))
            .await
            .map_err(|e| StorageIOError::write_vote(any(e)))?
            .map_err(|e| StorageIOError::write_vote(any(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_state(VOTE)
            .map_err(|e| StorageIOError::read_vote(any(e)).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not synced: a lost committed position is learnt again from the leader.
        self.write_state(COMMITTED, &committed, false)
            .map_err(|e| StorageIOError::write(any(e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .read_state::<Option<LogId<NodeId>>>(COMMITTED)
            .map_err(|e| StorageIOError::read(any(e)))?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = self.db.batch();
        for entry in entries {
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(any(e)))?;
            batch.insert(&self.log, entry.get_log_id().index.to_be_bytes(), bytes);
        }
        let db = self.db.clone();
        let written = tokio::task::spawn_blocking(move || {
            batch.commit()?;
            db.persist(PersistMode::SyncData)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(any(e)))?;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(any(e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Entries from `log_id` on (a deposed leader's unreplicated tail) are removed.
        let mut batch = self.db.batch();
        for item in self.log.range(log_id.index.to_be_bytes()..) {
            let key = item.key().map_err(|e| StorageIOError::write_logs(any(e)))?;
            batch.remove(&self.log, key);
        }
        batch
            .commit()
            .and_then(|()| self.db.persist(PersistMode::SyncData))
            .map_err(|e| StorageIOError::write_logs(any(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // The purged position first: a crash half-way leaves stale entries below it,
        // never a gap above it.
        self.write_state(PURGED, &Some(log_id), true)
            .map_err(|e| StorageIOError::write_logs(any(e)))?;
        let mut batch = self.db.batch();
        for item in self.log.range(..=log_id.index.to_be_bytes()) {
            let key = item.key().map_err(|e| StorageIOError::write_logs(any(e)))?;
            batch.remove(&self.log, key);
        }
        batch
            .commit()
            .map_err(|e| StorageIOError::write_logs(any(e)).into())
    }
}
