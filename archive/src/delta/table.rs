//! The table's commits. A commit is the next log entry, created only if absent ("Writers MUST
//! never overwrite an existing log entry ... use atomic primitives of the underlying filesystem
//! to ensure concurrent writers do not overwrite each other's entries"): a link that never
//! replaces on disk, a PUT with If-None-Match `*` on S3 ([`Store::put_new`]). A writer that
//! loses the race reads the entries it missed and decides again on the newer snapshot, as the
//! protocol's optimistic concurrency has it ("Writers ... optimistically write out new data
//! files ... Then, they commit").
//!
//! Each commit of a partition's file carries two transaction identifiers ("Transaction
//! Identifiers": "the latest version for a given appId is available in the table snapshot"):
//! - `weather-archive:<topic>:<partition>`, version = the next offset the table holds, as
//!   kafka-delta-ingest records its progress: a restart or a new owner learns from the table
//!   where the partition stands, and a commit of a range the table already holds is never
//!   made (the Delta sink's "if this value is greater than or equal to the batch being
//!   written, then this data has already been added to the table");
//! - `weather-archive:<topic>:<partition>:epoch`, version = the epoch of the instance that
//!   owns the partition, committed when it takes the partition over: a commit by an instance
//!   whose epoch is older than the table's is refused, whatever it writes.
//!
//! The check and the entry are one atomic step, since the entry is created on top of exactly
//! the snapshot that was checked.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use weather_common::position::now_ms;

use super::checkpoint;
use super::log::{self, Action, Add, Format, LogError, Metadata, Protocol, Snapshot, Txn};
use super::schema;
use crate::layout::PartitionBy;
use crate::store::{Store, StoreError};

/// Tombstones younger than this are kept in checkpoints ("A tombstone expires when current
/// time ... exceeds the expiration threshold"), Delta's default retention of a week.
pub const TOMBSTONE_RETENTION_MS: i64 = 7 * 24 * 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(
        "partition {partition} was taken over by another instance (the table is at its epoch {table_epoch}, this \
         instance's is {epoch})"
    )]
    Fenced { partition: i32, epoch: u64, table_epoch: i64 },
    #[error("{0}")]
    Inconsistent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the table's log is not readable: {0}")]
    Log(#[from] LogError),
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The entry of this version holds it.
    Committed(u64),
    /// The table already held it: nothing was written.
    AlreadyThere,
}

/// What a commit's check decides on the latest snapshot.
pub enum Verdict {
    Commit,
    AlreadyThere,
}

/// The table at the lake's root, and the latest snapshot this instance knows.
pub struct Table {
    store: Arc<dyn Store>,
    prefix: String,
    topic: String,
    checkpoint_every: u64,
    latest: Mutex<Snapshot>,
}

/// The app id of a partition's progress.
pub fn offsets_app(topic: &str, partition: i32) -> String {
    format!("weather-archive:{topic}:{partition}")
}

/// The app id of a partition's owner's epoch.
pub fn epoch_app(topic: &str, partition: i32) -> String {
    format!("{}:epoch", offsets_app(topic, partition))
}

impl Table {
    /// Opens the table under `prefix` (empty, or ending in `/`), creating it if there is none:
    /// version 0 holds the protocol and the metadata ("The first version of a table must
    /// contain a metaData action"). A table of another topic or layout is refused.
    pub fn open(
        store: Arc<dyn Store>,
        prefix: &str,
        topic: &str,
        by: PartitionBy,
        checkpoint_every: u64,
    ) -> Result<Table, CommitError> {
        let table = Table {
            store,
            prefix: prefix.to_string(),
            topic: topic.to_string(),
            checkpoint_every,
            latest: Mutex::new(Snapshot::default()),
        };
        let mut snapshot = table.read_log()?;
        if snapshot.version.is_none() {
            let metadata = Metadata {
                id: table_id(),
                format: Format { provider: "parquet".into(), options: Default::default() },
                schema_string: schema::schema_string(by),
                partition_columns: schema::partition_columns(by),
                created_time: Some(now_ms()),
                configuration: [("weather.topic".to_string(), topic.to_string())].into(),
            };
            let create = vec![
                Action::Protocol(Protocol {
                    min_reader_version: log::MIN_READER_VERSION,
                    min_writer_version: log::MIN_WRITER_VERSION,
                }),
                Action::Metadata(metadata),
            ];
            // Another instance may create it first: its table is then this one's.
            table.commit_on(&mut snapshot, "CREATE TABLE", json!({}), create, |s| {
                Ok(if s.version.is_none() { Verdict::Commit } else { Verdict::AlreadyThere })
            })?;
        }
        let metadata = snapshot
            .metadata
            .as_ref()
            .ok_or_else(|| CommitError::Inconsistent(format!("the table at {} has no metadata", table.describe())))?;
        if metadata.partition_columns != schema::partition_columns(by) {
            return Err(CommitError::Inconsistent(format!(
                "the table at {} is partitioned by {:?}, not by {:?}: archive with the --partition-by it was made with",
                table.describe(),
                metadata.partition_columns,
                schema::partition_columns(by)
            )));
        }
        if let Some(other) = metadata.configuration.get("weather.topic").filter(|t| *t != topic) {
            return Err(CommitError::Inconsistent(format!(
                "the table at {} holds the topic `{other}`, not `{topic}`: one table per lake; give this topic a lake of its own",
                table.describe()
            )));
        }
        *table.latest.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
        Ok(table)
    }

    /// Opens the table that exists under `prefix`, of the topic and layout its metadata names.
    pub fn open_existing(
        store: Arc<dyn Store>,
        prefix: &str,
        checkpoint_every: u64,
    ) -> Result<(Table, String, PartitionBy), CommitError> {
        let mut table = Table {
            store,
            prefix: prefix.to_string(),
            topic: String::new(),
            checkpoint_every,
            latest: Mutex::new(Snapshot::default()),
        };
        let snapshot = table.read_log()?;
        let metadata = snapshot.metadata.as_ref().ok_or_else(|| {
            CommitError::Inconsistent(format!(
                "there is no table at {}: archive into it with --table delta first",
                table.describe()
            ))
        })?;
        let by = [PartitionBy::Hour, PartitionBy::Day]
            .into_iter()
            .find(|&by| schema::partition_columns(by) == metadata.partition_columns)
            .ok_or_else(|| {
                CommitError::Inconsistent(format!(
                    "the table at {} is partitioned by {:?}: not a table of the archive's",
                    table.describe(),
                    metadata.partition_columns
                ))
            })?;
        table.topic = metadata.configuration.get("weather.topic").cloned().ok_or_else(|| {
            CommitError::Inconsistent(format!(
                "the table at {} names no topic: not a table of the archive's",
                table.describe()
            ))
        })?;
        *table.latest.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
        let topic = table.topic.clone();
        Ok((table, topic, by))
    }

    fn describe(&self) -> String {
        format!("{}{}", self.store.describe(), if self.prefix.is_empty() { "" } else { "/" })
    }

    /// The table's latest snapshot: from its newest checkpoint, if one reads, and the entries
    /// after it ("Readers ... SHOULD start from the most recent checkpoint"), so that opening
    /// a table of months of commits does not replay them all; otherwise from its first entry.
    fn read_log(&self) -> Result<Snapshot, CommitError> {
        let keys = self.store.list(&log::log_dir(&self.prefix))?;
        let newest = keys.iter().filter_map(|k| log::entry_version(k)).max();
        let Some(newest) = newest else { return Ok(Snapshot::default()) };
        let mut snapshot = self.checkpointed(&keys)?.unwrap_or_default();
        self.catch_up(&mut snapshot)?;
        if snapshot.version < Some(newest) {
            return Err(CommitError::Inconsistent(format!(
                "the log of the table at {} has entries up to {newest} but not from {} to there, and no \
                 checkpoint that reads before them",
                self.describe(),
                snapshot.next_version()
            )));
        }
        Ok(snapshot)
    }

    /// The snapshot of the newest checkpoint among `keys` that reads; none if there is none.
    /// One that does not read is said, and an older one (or the log from its start) used.
    fn checkpointed(&self, keys: &[String]) -> Result<Option<Snapshot>, CommitError> {
        let mut versions: Vec<u64> = keys.iter().filter_map(|k| log::checkpoint_version(k)).collect();
        versions.sort_unstable();
        for version in versions.into_iter().rev() {
            let key = log::checkpoint_key(&self.prefix, version);
            let Some(bytes) = self.store.get(&key)? else { continue };
            match checkpoint::decode(bytes) {
                Ok(actions) => return Ok(Some(Snapshot::from_checkpoint(version, &actions))),
                Err(e) => tracing::warn!("the checkpoint {key} does not read ({e}): reading the log before it"),
            }
        }
        Ok(None)
    }

    /// Applies the entries after `snapshot`'s version, as long as there are.
    fn catch_up(&self, snapshot: &mut Snapshot) -> Result<(), CommitError> {
        loop {
            let version = snapshot.next_version();
            match self.store.get(&log::entry_key(&self.prefix, version))? {
                Some(bytes) => snapshot.apply(version, &log::parse_entry(version, &bytes)?),
                None => return Ok(()),
            }
        }
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Result<Snapshot, CommitError> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        self.catch_up(&mut latest)?;
        Ok(latest.clone())
    }

    /// Commits `actions` if `check` says so on the latest snapshot, retrying on the newer
    /// snapshot each time another writer created the entry first.
    pub fn commit(
        &self,
        operation: &str,
        parameters: serde_json::Value,
        actions: Vec<Action>,
        check: impl FnMut(&Snapshot) -> Result<Verdict, CommitError>,
    ) -> Result<Outcome, CommitError> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        self.commit_on(&mut latest, operation, parameters, actions, check)
    }

    fn commit_on(
        &self,
        snapshot: &mut Snapshot,
        operation: &str,
        parameters: serde_json::Value,
        actions: Vec<Action>,
        mut check: impl FnMut(&Snapshot) -> Result<Verdict, CommitError>,
    ) -> Result<Outcome, CommitError> {
        let info = Action::CommitInfo(json!({
            "timestamp": now_ms(),
            "operation": operation,
            "operationParameters": parameters,
            "clientVersion": concat!("weather-archive/", env!("CARGO_PKG_VERSION")),
        }));
        let mut entry = vec![info];
        entry.extend(actions);
        let bytes = log::entry_bytes(&entry);
        loop {
            if let Verdict::AlreadyThere = check(snapshot)? {
                return Ok(Outcome::AlreadyThere);
            }
            let version = snapshot.next_version();
            match self.store.put_new(&log::entry_key(&self.prefix, version), &bytes) {
                Ok(()) => {
                    snapshot.apply(version, &entry);
                    self.checkpoint_if_due(snapshot);
                    return Ok(Outcome::Committed(version));
                }
                // Another writer made this version first (or this one, in an attempt whose
                // answer was lost): decide again on what it holds.
                Err(StoreError::Conflict { .. }) => self.catch_up(snapshot)?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every `checkpoint_every` versions, a checkpoint of the snapshot and the pointer to it
    /// ("Checkpoints for a given version must only be created after the associated delta file
    /// has been successfully written"; "If two checkpoint writers race to create the same
    /// classic checkpoint, the latest writer wins ... both checkpoints should contain the same
    /// information"). A checkpoint that fails is only a slower read: said, not an error.
    fn checkpoint_if_due(&self, snapshot: &Snapshot) {
        let Some(version) = snapshot.version else { return };
        if self.checkpoint_every == 0 || version == 0 || version % self.checkpoint_every != 0 {
            return;
        }
        let actions = snapshot.checkpoint_actions(now_ms() - TOMBSTONE_RETENTION_MS);
        let written = checkpoint::encode(&actions)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                self.store.put(&log::checkpoint_key(&self.prefix, version), &bytes).map_err(|e| e.to_string())?;
                Ok(bytes.len())
            })
            .and_then(|size| {
                // "Last Checkpoint File Schema": the version and the number of actions.
                let last = json!({"version": version, "size": actions.len(), "sizeInBytes": size});
                self.store
                    .put(&log::last_checkpoint_key(&self.prefix), last.to_string().as_bytes())
                    .map_err(|e| e.to_string())
            });
        match written {
            Ok(()) => tracing::debug!("checkpoint of the table at version {version}"),
            Err(e) => tracing::warn!("no checkpoint of the table at version {version}: {e}"),
        }
    }

    /// Takes `partition` over at `epoch` in the table, refused if the table knows a newer
    /// owner; returns the next offset the table holds of it, if any.
    pub fn take_over(&self, partition: i32, epoch: u64) -> Result<Option<i64>, CommitError> {
        let app = epoch_app(&self.topic, partition);
        let txn = Action::Txn(Txn { app_id: app.clone(), version: epoch as i64, last_updated: Some(now_ms()) });
        let parameters = json!({"partition": partition, "epoch": epoch});
        let mut held = None;
        self.commit("SET TRANSACTION", parameters, vec![txn], |snapshot| {
            held = snapshot.txn(&offsets_app(&self.topic, partition));
            match snapshot.txn(&app) {
                Some(table_epoch) if table_epoch >= epoch as i64 => {
                    Err(CommitError::Fenced { partition, epoch, table_epoch })
                }
                _ => Ok(Verdict::Commit),
            }
        })?;
        Ok(held)
    }

    /// Commits `file` (if any) as partition's offsets `[start, end)`, and the table's progress
    /// to `end`, by the owner at `epoch`. A range the table already holds is not committed
    /// again; an owner older than the table's is refused.
    pub fn append(
        &self,
        partition: i32,
        epoch: u64,
        start: i64,
        end: i64,
        file: Option<Add>,
    ) -> Result<Outcome, CommitError> {
        let app = offsets_app(&self.topic, partition);
        let mut actions: Vec<Action> = file.into_iter().map(Action::Add).collect();
        actions.push(Action::Txn(Txn { app_id: app.clone(), version: end, last_updated: Some(now_ms()) }));
        let parameters = json!({"mode": "Append", "partition": partition, "offsets": [start, end], "epoch": epoch});
        self.commit("WRITE", parameters, actions, |snapshot| {
            if let Some(table_epoch) = snapshot.txn(&epoch_app(&self.topic, partition)).filter(|&e| e > epoch as i64) {
                return Err(CommitError::Fenced { partition, epoch, table_epoch });
            }
            match snapshot.txn(&app) {
                Some(held) if held >= end => Ok(Verdict::AlreadyThere),
                Some(held) if held != start => Err(CommitError::Inconsistent(format!(
                    "partition {partition}: the table holds offsets up to {held}, and this file is of {start}..{end}"
                ))),
                _ => Ok(Verdict::Commit),
            }
        })
    }

    /// The table's root (empty, or ending in `/`): its paths are relative to it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// A GUID for the table's metadata ("id: Unique identifier for this table"), from the time
/// and the process: tables made at once by two processes get two ids (one of them is kept).
fn table_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let bits = nanos ^ (u128::from(std::process::id()) << 96);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::DiskStore;
    use std::collections::BTreeMap;

    fn add(path: &str) -> Add {
        Add {
            path: path.into(),
            partition_values: BTreeMap::from([
                ("date".into(), Some("2026-01-01".into())),
                ("hour".into(), Some("0".into())),
            ]),
            size: 1,
            modification_time: 1,
            data_change: true,
            stats: None,
        }
    }

    /// Two writers on one table each see the other's commits: a writer that lost the race for
    /// an entry commits on top of it, every commit lands once, and the progress decides what
    /// is committed again (nothing).
    #[test]
    fn writers_commit_on_top_of_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DiskStore::open(dir.path()).unwrap());
        let a = Table::open(store.clone(), "", "weather", PartitionBy::Hour, 0).unwrap();
        let b = Table::open(store.clone(), "", "weather", PartitionBy::Hour, 0).unwrap();
        assert_eq!(a.take_over(0, 1).unwrap(), None);
        assert_eq!(b.take_over(1, 1).unwrap(), None, "b commits version 2 after a's 1");
        assert_eq!(a.append(0, 1, 0, 10, Some(add("a0"))).unwrap(), Outcome::Committed(3));
        assert_eq!(b.append(1, 1, 0, 5, Some(add("b0"))).unwrap(), Outcome::Committed(4));
        assert_eq!(a.append(0, 1, 0, 10, Some(add("a0"))).unwrap(), Outcome::AlreadyThere);
        let snapshot = Table::open(store, "", "weather", PartitionBy::Hour, 0).unwrap().snapshot().unwrap();
        assert_eq!(snapshot.files.keys().collect::<Vec<_>>(), ["a0", "b0"]);
        assert_eq!((snapshot.txn(&offsets_app("weather", 0)), snapshot.version), (Some(10), Some(4)));
    }

    /// A member whose epoch is older than the table's cannot commit, even a range the table
    /// does not hold; the new owner learns where the table stands and goes on from there.
    #[test]
    fn a_stale_member_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DiskStore::open(dir.path()).unwrap());
        let old = Table::open(store.clone(), "", "weather", PartitionBy::Hour, 0).unwrap();
        old.take_over(0, 1).unwrap();
        old.append(0, 1, 0, 10, Some(add("f0"))).unwrap();
        let new = Table::open(store.clone(), "", "weather", PartitionBy::Hour, 0).unwrap();
        assert_eq!(new.take_over(0, 2).unwrap(), Some(10));
        let late = old.append(0, 1, 10, 20, Some(add("f10")));
        assert!(matches!(late, Err(CommitError::Fenced { partition: 0, epoch: 1, table_epoch: 2 })), "{late:?}");
        let again = old.take_over(0, 2);
        assert!(matches!(again, Err(CommitError::Fenced { .. })), "an epoch is taken once: {again:?}");
        assert_eq!(new.append(0, 2, 10, 20, Some(add("f10"))).unwrap(), Outcome::Committed(4));
        let gap = new.append(0, 2, 25, 30, None);
        assert!(matches!(gap, Err(CommitError::Inconsistent(_))), "a range that leaves a gap: {gap:?}");
        assert!(!new.snapshot().unwrap().files.is_empty());
    }

    /// A table of another layout or topic is refused with what to do.
    #[test]
    fn another_tables_lake_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DiskStore::open(dir.path()).unwrap());
        Table::open(store.clone(), "", "weather", PartitionBy::Hour, 0).unwrap();
        let by_day = Table::open(store.clone(), "", "weather", PartitionBy::Day, 0).err().unwrap();
        assert!(by_day.to_string().contains("--partition-by"), "{by_day}");
        let other = Table::open(store, "", "air", PartitionBy::Hour, 0).err().unwrap();
        assert!(other.to_string().contains("a lake of its own"), "{other}");
    }

    /// A table opens from its newest checkpoint and the entries after it: the same snapshot as
    /// the whole log gives, and still when the entries before the checkpoint are gone (a log
    /// cleaned up, as Delta writers do after a retention); a checkpoint that does not read is
    /// passed over for the log. (Mutation: `read_log` replaying from version 0 only; opening
    /// the cleaned-up table then fails.)
    #[test]
    fn a_table_opens_from_its_newest_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DiskStore::open(dir.path()).unwrap());
        let table = Table::open(store.clone(), "", "weather", PartitionBy::Hour, 3).unwrap();
        table.take_over(0, 1).unwrap();
        for (i, path) in ["f0", "f1", "f2", "f3"].into_iter().enumerate() {
            let i = i as i64;
            table.append(0, 1, i * 10, i * 10 + 10, Some(add(path))).unwrap();
        }
        let whole = table.snapshot().unwrap();
        assert_eq!(whole.version, Some(5));
        let key = "_delta_log/00000000000000000003.checkpoint.parquet";
        let good = store.get(key).unwrap().expect("a checkpoint at version 3");
        let reopened = |store: &Arc<dyn Store>| Table::open(store.clone(), "", "weather", PartitionBy::Hour, 3);
        assert_eq!(reopened(&store).unwrap().snapshot().unwrap(), whole);

        // A broken checkpoint: the log from its start is read instead.
        store.put(key, b"not parquet").unwrap();
        assert_eq!(reopened(&store).unwrap().snapshot().unwrap(), whole);
        store.put(key, &good).unwrap();

        for version in 0..=3 {
            store.delete(&log::entry_key("", version)).unwrap();
        }
        let from_checkpoint = reopened(&store).unwrap().snapshot().unwrap();
        assert_eq!(from_checkpoint, whole, "the files, txns and metadata of the whole log");
        store.put(key, b"not parquet").unwrap();
        let lost = reopened(&store).err().expect("no checkpoint reads and the log's start is gone");
        assert!(lost.to_string().contains("not from 0"), "{lost}");
    }

    /// Every N versions a checkpoint is written, with the pointer to it.
    #[test]
    fn checkpoints_every_n_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DiskStore::open(dir.path()).unwrap());
        let table = Table::open(store.clone(), "", "weather", PartitionBy::Hour, 2).unwrap();
        table.take_over(0, 1).unwrap();
        assert!(store.get("_delta_log/_last_checkpoint").unwrap().is_none());
        table.append(0, 1, 0, 10, Some(add("f0"))).unwrap();
        let last: serde_json::Value =
            serde_json::from_slice(&store.get("_delta_log/_last_checkpoint").unwrap().unwrap()).unwrap();
        assert_eq!((last["version"].as_u64(), last["size"].as_u64()), (Some(2), Some(5)));
        assert!(store.get("_delta_log/00000000000000000002.checkpoint.parquet").unwrap().is_some());
    }
}
