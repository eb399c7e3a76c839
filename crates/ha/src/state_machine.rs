//! The outbox is the state machine: a committed entry's outbox changes are applied to
//! this node's [`FjallOutbox`] together with the entry's position, in one atomic batch.
//! A snapshot is an outbox image (every message, count and the applied position);
//! installing one replaces the outbox with it. The current snapshot is kept in
//! `DATA_DIR/raft/snapshot` so a follower that fell behind the purged log can be sent it.

use crate::{NodeId, Request, Response, TypeConfig, any};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use std::io::Cursor;
use std::path::PathBuf;
use switchyard_layers::store_forward::{FjallOutbox, OutboxEvent};

/// Key of the applied position in the outbox's meta keyspace.
const APPLIED: &[u8] = b"raft.applied";
/// Key of the last applied membership.
const MEMBERSHIP: &[u8] = b"raft.membership";

/// The outbox of one voter, as openraft's state machine.
#[derive(Clone)]
pub struct OutboxStateMachine {
    outbox: FjallOutbox,
    snapshot_file: PathBuf,
    /// Builds (a background task) and installs write the snapshot file one at a time.
    file_lock: std::sync::Arc<std::sync::Mutex<()>>,
}

type Membership = StoredMembership<NodeId, BasicNode>;

impl OutboxStateMachine {
    /// The state machine over `outbox`; its current snapshot lives in `snapshot_file`.
    pub fn new(outbox: FjallOutbox, snapshot_file: PathBuf) -> OutboxStateMachine {
        OutboxStateMachine {
            outbox,
            snapshot_file,
            file_lock: std::sync::Arc::default(),
        }
    }

    fn applied(&self) -> Result<(Option<LogId<NodeId>>, Membership), String> {
        let applied = match self.outbox.meta(APPLIED).map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string())?,
            None => None,
        };
        let membership = match self.outbox.meta(MEMBERSHIP).map_err(|e| e.to_string())? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string())?,
            None => Membership::default(),
        };
        Ok((applied, membership))
    }

    /// Reads the snapshot file: a length-prefixed JSON meta, then the outbox image.
    fn read_snapshot_file(&self) -> Result<Option<Snapshot<TypeConfig>>, String> {
        let bytes = match std::fs::read(&self.snapshot_file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or("snapshot file truncated")?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err("snapshot file truncated".into());
        }
        let meta: SnapshotMeta<NodeId, BasicNode> =
            serde_json::from_slice(&rest[..len]).map_err(|e| e.to_string())?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(rest[len..].to_vec())),
        }))
    }

    /// Writes the snapshot file (to a temporary name, synced, then renamed).
    fn write_snapshot_file(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        image: &[u8],
    ) -> Result<(), String> {
        use std::io::Write;
        let _one_at_a_time = self.file_lock.lock().unwrap_or_else(|p| p.into_inner());
        // Never replaced by an older snapshot (a build that started before an install).
        if let Ok(Some(current)) = self.read_snapshot_file()
            && current.meta.last_log_id > meta.last_log_id
        {
            return Ok(());
        }
        let meta = serde_json::to_vec(meta).map_err(|e| e.to_string())?;
        let tmp = self.snapshot_file.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        file.write_all(&(meta.len() as u32).to_be_bytes())
            .and_then(|()| file.write_all(&meta))
            .and_then(|()| file.write_all(image))
            .and_then(|()| file.sync_data())
            .map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &self.snapshot_file).map_err(|e| e.to_string())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for OutboxStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let image = this.outbox.export().map_err(|e| e.to_string())?;
            // Synced after the image is taken: the log below the snapshot is purged after
            // this, so everything the image covers must be on disk here too.
            this.outbox.sync().map_err(|e| e.to_string())?;
            let applied = match image.meta.get(APPLIED) {
                Some(bytes) => serde_json::from_slice(bytes).map_err(|e| e.to_string())?,
                None => None,
            };
            let membership: Membership = match image.meta.get(MEMBERSHIP) {
                Some(bytes) => serde_json::from_slice(bytes).map_err(|e| e.to_string())?,
                None => Membership::default(),
            };
            let snapshot_id = match applied {
                Some(LogId { leader_id, index }) => {
                    format!(
                        "{}-{}-{}",
                        leader_id.term,
                        index,
                        switchyard_layers::store_forward::now_ms()
                    )
                }
                None => format!("empty-{}", switchyard_layers::store_forward::now_ms()),
            };
            let meta = SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
                snapshot_id,
            };
            this.write_snapshot_file(&meta, &image.bytes)?;
            Ok(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(image.bytes)),
            })
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, any(e)))?
        .map_err(|e: String| StorageIOError::write_snapshot(None, any(e)).into())
    }
}

impl RaftStateMachine<TypeConfig> for OutboxStateMachine {
    type SnapshotBuilder = OutboxStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        self.applied()
            .map_err(|e| StorageIOError::read_state_machine(any(e)).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // All the entries in one batch: their parts in order, the last position and
        // membership beside them; the results are split back per entry.
        let mut parts: Vec<Vec<OutboxEvent>> = Vec::new();
        let mut sizes = Vec::new();
        let mut last = None;
        let mut membership = None;
        let mut values: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for entry in entries {
            last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Normal(Request::Outbox { parts: mut more }) => {
                    sizes.push(more.len());
                    parts.append(&mut more);
                }
                EntryPayload::Normal(Request::Meta { key, value }) => {
                    sizes.push(0);
                    if !key.starts_with("raft.") {
                        values.push((key.into_bytes(), value));
                    }
                }
                EntryPayload::Membership(m) => {
                    sizes.push(0);
                    membership = Some(Membership::new(Some(entry.log_id), m));
                }
                EntryPayload::Blank => sizes.push(0),
            }
        }
        let Some(last) = last else {
            return Ok(Vec::new());
        };
        // Later entries' values come later in the batch and win.
        let mut meta = values;
        meta.push((
            APPLIED.to_vec(),
            serde_json::to_vec(&Some(last)).map_err(|e| StorageIOError::apply(last, any(e)))?,
        ));
        if let Some(membership) = &membership {
            meta.push((
                MEMBERSHIP.to_vec(),
                serde_json::to_vec(membership).map_err(|e| StorageIOError::apply(last, any(e)))?,
            ));
        }
        let outbox = self.outbox.clone();
        let mut results =
            tokio::task::spawn_blocking(move || outbox.apply_replicated(&parts, &meta))
                .await
                .map_err(|e| StorageIOError::apply(last, any(e)))?
                .map_err(|e| StorageIOError::apply(last, any(e)))?
                .into_iter();
        Ok(sizes
            .into_iter()
            .map(|n| Response {
                results: results.by_ref().take(n).collect(),
            })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let this = self.clone();
        let meta = meta.clone();
        let signature = meta.signature();
        tokio::task::spawn_blocking(move || {
            let image = snapshot.into_inner();
            this.outbox.import(&image).map_err(|e| e.to_string())?;
            this.write_snapshot_file(&meta, &image)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(signature.clone()), any(e)))?
        .map_err(|e| StorageIOError::write_snapshot(Some(signature), any(e)).into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.read_snapshot_file()
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)).into())
    }
}
