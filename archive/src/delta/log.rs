//! The Delta log's actions and the table state they replay to, after the protocol
//! (delta-io/delta, PROTOCOL.md; sections cited by name). Pure: JSON lines in, a snapshot out;
//! a commit's actions in, one log entry's bytes out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol this writer speaks: reader version 1 and writer version 2 ("Protocol
/// Evolution"): no table features, so every reader of Delta reads the table; writer version 2
/// asks writers to respect `delta.appendOnly` and column invariants, neither of which the
/// table sets.
pub const MIN_READER_VERSION: i32 = 1;
pub const MIN_WRITER_VERSION: i32 = 2;

/// "Protocol Evolution": the versions a client must implement to read and to write the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    pub min_reader_version: i32,
    pub min_writer_version: i32,
}

/// "Format Specification": always Parquet, without options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Format {
    pub provider: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// "Change Metadata": the table's id, schema and partition columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    pub format: Format,
    pub schema_string: String,
    pub partition_columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
}

/// "Add File and Remove File": a data file that is part of the table from this version on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Relative to the table's root, as a URI ("path ... is a URI as specified by RFC 2396"):
    /// our names use no character that needs escaping but `=`, which needs none in a path.
    pub path: String,
    /// "Partition Value Serialization": a date as `YYYY-MM-DD`, a number as its digits.
    pub partition_values: BTreeMap<String, Option<String>>,
    pub size: i64,
    pub modification_time: i64,
    pub data_change: bool,
    /// "Per-file Statistics", as a JSON string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

/// "Add File and Remove File": a file no longer part of the table, kept as a tombstone until
/// a vacuum deletes it after the retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<i64>,
    pub data_change: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_file_metadata: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_values: Option<BTreeMap<String, Option<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

impl Remove {
    /// The tombstone of `add`, removed at `now_ms` ("extendedFileMetadata: when true the
    /// fields partitionValues, size, and tags are present").
    pub fn of(add: &Add, data_change: bool, now_ms: i64) -> Remove {
        Remove {
            path: add.path.clone(),
            deletion_timestamp: Some(now_ms),
            data_change,
            extended_file_metadata: Some(true),
            partition_values: Some(add.partition_values.clone()),
            size: Some(add.size),
        }
    }
}

/// "Transaction Identifiers": an application's progress, recorded atomically with the files
/// it accounts for; the latest version of each `appId` is in the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Txn {
    pub app_id: String,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<i64>,
}

/// One line of a log entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Protocol(Protocol),
    Metadata(Metadata),
    Add(Add),
    Remove(Remove),
    Txn(Txn),
    /// "Commit Provenance Information": free-form; not part of the snapshot.
    CommitInfo(Value),
}

impl Action {
    /// The action as its line of a log entry: `{"add":{...}}`.
    pub fn to_line(&self) -> String {
        let (name, body) = match self {
            Action::Protocol(a) => ("protocol", serde_json::to_value(a)),
            Action::Metadata(a) => ("metaData", serde_json::to_value(a)),
            Action::Add(a) => ("add", serde_json::to_value(a)),
            Action::Remove(a) => ("remove", serde_json::to_value(a)),
            Action::Txn(a) => ("txn", serde_json::to_value(a)),
            Action::CommitInfo(a) => ("commitInfo", Ok(a.clone())),
        };
        let body = body.expect("actions always serialize");
        serde_json::json!({ name: body }).to_string()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("log entry {version}, line {line}: {reason}")]
pub struct LogError {
    pub version: u64,
    pub line: usize,
    pub reason: String,
}

/// The actions of a log entry ("Delta files use newline-delimited JSON format, where every
/// action is stored as a single-line JSON document"). Actions this writer does not know
/// (`cdc`, `domainMetadata`, ...) are skipped: "clients must ignore such unrecognized fields".
pub fn parse_entry(version: u64, bytes: &[u8]) -> Result<Vec<Action>, LogError> {
    let text = std::str::from_utf8(bytes).map_err(|e| LogError { version, line: 0, reason: e.to_string() })?;
    let mut actions = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let error = |reason: String| LogError { version, line: i + 1, reason };
        let value: serde_json::Map<String, Value> = serde_json::from_str(line).map_err(|e| error(e.to_string()))?;
        for (name, body) in value {
            let parsed = match name.as_str() {
                "protocol" => serde_json::from_value(body).map(Action::Protocol),
                "metaData" => serde_json::from_value(body).map(Action::Metadata),
                "add" => serde_json::from_value(body).map(Action::Add),
                "remove" => serde_json::from_value(body).map(Action::Remove),
                "txn" => serde_json::from_value(body).map(Action::Txn),
                "commitInfo" => Ok(Action::CommitInfo(body)),
                _ => continue,
            };
            actions.push(parsed.map_err(|e| error(format!("{name}: {e}")))?);
        }
    }
    Ok(actions)
}

/// A log entry's bytes: one line per action.
pub fn entry_bytes(actions: &[Action]) -> Vec<u8> {
    let mut text = String::new();
    for action in actions {
        text.push_str(&action.to_line());
        text.push('\n');
    }
    text.into_bytes()
}

/// The table at one version ("Action Reconciliation"): the latest protocol and metadata, the
/// files added and not removed since, the tombstones, and the latest version of each `txn`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `None`: no entry yet, the table does not exist.
    pub version: Option<u64>,
    pub protocol: Option<Protocol>,
    pub metadata: Option<Metadata>,
    pub files: BTreeMap<String, Add>,
    pub tombstones: BTreeMap<String, Remove>,
    pub txns: BTreeMap<String, i64>,
}

impl Snapshot {
    /// The version the next commit must create ("named using the next available version
    /// number"; the first is 0).
    pub fn next_version(&self) -> u64 {
        self.version.map_or(0, |v| v + 1)
    }

    /// Applies the entry of `version`, the one after this snapshot's.
    pub fn apply(&mut self, version: u64, actions: &[Action]) {
        debug_assert_eq!(version, self.next_version());
        self.reconcile(actions);
        self.version = Some(version);
    }

    /// The snapshot a checkpoint of `version` holds ("the checkpoint ... contains the
    /// complete state of the table as of the version"): its actions applied on nothing.
    pub fn from_checkpoint(version: u64, actions: &[Action]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.reconcile(actions);
        snapshot.version = Some(version);
        snapshot
    }

    /// Applies `actions` ("Action Reconciliation").
    fn reconcile(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                // "The latest protocol action seen wins"; likewise metaData.
                Action::Protocol(p) => self.protocol = Some(p.clone()),
                Action::Metadata(m) => self.metadata = Some(m.clone()),
                // "Keep only the newest reference for each logical file": an add supersedes
                // a tombstone of the same path and a remove the add.
                Action::Add(add) => {
                    self.tombstones.remove(&add.path);
                    self.files.insert(add.path.clone(), add.clone());
                }
                Action::Remove(remove) => {
                    self.files.remove(&remove.path);
                    self.tombstones.insert(remove.path.clone(), remove.clone());
                }
                // "For txn actions, the latest version seen for a given appId wins."
                Action::Txn(txn) => {
                    self.txns.insert(txn.app_id.clone(), txn.version);
                }
                Action::CommitInfo(_) => {}
            }
        }
    }

    /// The latest version recorded for `app_id`.
    pub fn txn(&self, app_id: &str) -> Option<i64> {
        self.txns.get(app_id).copied()
    }

    /// The actions a checkpoint of this snapshot holds ("Checkpoints": the protocol, the
    /// metadata, the files added and not removed, the tombstones not yet expired, the
    /// transaction identifiers; never commitInfo). Tombstones removed before
    /// `expired_before_ms` are left out.
    pub fn checkpoint_actions(&self, expired_before_ms: i64) -> Vec<Action> {
        let mut actions = Vec::new();
        actions.extend(self.protocol.clone().map(Action::Protocol));
        actions.extend(self.metadata.clone().map(Action::Metadata));
        actions.extend(
            self.txns
                .iter()
                .map(|(app, &version)| Action::Txn(Txn { app_id: app.clone(), version, last_updated: None })),
        );
        actions.extend(self.files.values().cloned().map(Action::Add));
        actions.extend(
            self.tombstones
                .values()
                .filter(|r| r.deletion_timestamp.unwrap_or(0) >= expired_before_ms)
                .cloned()
                .map(Action::Remove),
        );
        actions
    }
}

/// Where the log is, under the lake's root (`prefix`: empty or ending in `/`).
pub fn log_dir(prefix: &str) -> String {
    format!("{prefix}_delta_log/")
}

/// "Delta Log Entries": `_delta_log/<version, 20 digits>.json`.
pub fn entry_key(prefix: &str, version: u64) -> String {
    format!("{}{version:020}.json", log_dir(prefix))
}

/// "Classic checkpoint": `_delta_log/<version, 20 digits>.checkpoint.parquet`.
pub fn checkpoint_key(prefix: &str, version: u64) -> String {
    format!("{}{version:020}.checkpoint.parquet", log_dir(prefix))
}

/// "Last Checkpoint File": `_delta_log/_last_checkpoint`.
pub fn last_checkpoint_key(prefix: &str) -> String {
    format!("{}_last_checkpoint", log_dir(prefix))
}

/// The version of a classic checkpoint's key, if it is one.
pub fn checkpoint_version(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    let digits = name.strip_suffix(".checkpoint.parquet")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// The version of a log entry's key, if it is one (not a checkpoint, a checksum or a
/// temporary file).
pub fn entry_version(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(path: &str) -> Add {
        Add {
            path: path.into(),
            partition_values: BTreeMap::from([("date".into(), Some("2026-01-01".into()))]),
            size: 10,
            modification_time: 1,
            data_change: true,
            stats: None,
        }
    }

    /// Replaying entries keeps the newest of each file, txn, protocol and metadata: a removed
    /// file becomes a tombstone, a re-added one leaves the tombstones.
    #[test]
    fn entries_replay_to_a_snapshot() {
        let mut snapshot = Snapshot::default();
        assert_eq!(snapshot.next_version(), 0);
        let txn = |version| Action::Txn(Txn { app_id: "a".into(), version, last_updated: None });
        let first = vec![
            Action::Protocol(Protocol { min_reader_version: 1, min_writer_version: 2 }),
            Action::Add(add("x")),
            Action::Add(add("y")),
            txn(10),
        ];
        let bytes = entry_bytes(&first);
        assert_eq!(parse_entry(0, &bytes).unwrap(), first, "an entry reads back as written");
        snapshot.apply(0, &first);
        snapshot.apply(1, &[Action::Remove(Remove::of(&add("x"), false, 5)), txn(20)]);
        assert_eq!(snapshot.files.keys().collect::<Vec<_>>(), ["y"]);
        assert_eq!(snapshot.tombstones.keys().collect::<Vec<_>>(), ["x"]);
        assert_eq!((snapshot.txn("a"), snapshot.txn("b"), snapshot.next_version()), (Some(20), None, 2));
        snapshot.apply(2, &[Action::Add(add("x"))]);
        assert!(snapshot.tombstones.is_empty() && snapshot.files.len() == 2);
        assert_eq!(snapshot.checkpoint_actions(0).len(), 4, "protocol, txn, two files");
    }

    /// Actions of other writers that this one does not know are skipped; a broken line is an
    /// error that names the entry and the line.
    #[test]
    fn unknown_actions_are_skipped_and_broken_lines_named() {
        let entry = b"{\"commitInfo\":{\"operation\":\"WRITE\"}}\n{\"domainMetadata\":{\"domain\":\"d\"}}\n\
                      {\"txn\":{\"appId\":\"a\",\"version\":3}}\n";
        let actions = parse_entry(4, entry).unwrap();
        assert_eq!(actions.len(), 2);
        let broken = parse_entry(4, b"{\"txn\":{\"appId\":\"a\"}}\n").unwrap_err();
        assert_eq!((broken.version, broken.line), (4, 1));
        assert!(broken.reason.contains("version"), "{broken}");
    }

    /// Keys: entries and checkpoints under `_delta_log/`, 20 digits; only entries parse back.
    #[test]
    fn log_keys() {
        assert_eq!(entry_key("lake/", 7), "lake/_delta_log/00000000000000000007.json");
        assert_eq!(checkpoint_key("", 10), "_delta_log/00000000000000000010.checkpoint.parquet");
        assert_eq!(entry_version("lake/_delta_log/00000000000000000007.json"), Some(7));
        assert_eq!(entry_version("_delta_log/00000000000000000010.checkpoint.parquet"), None);
        assert_eq!(entry_version("_delta_log/.00000000000000000010.json.1.2.tmp"), None);
        assert_eq!(entry_version("_delta_log/_last_checkpoint"), None);
    }
}
