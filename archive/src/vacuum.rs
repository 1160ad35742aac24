//! `weather-archive vacuum`: the data files the table does not reference are deleted once they
//! are older than the retention: those a compaction removed, counted from their removal ("the
//! remove action includes a timestamp ... Physical deletion ... can happen lazily after some
//! user-specified expiration time threshold. This delay allows concurrent readers to continue
//! to execute against a stale snapshot"), and those never committed (a run killed between its
//! write and its commit), counted from when they were written. A retention shorter than the
//! moment between an archive's write and its commit could delete a file about to be committed:
//! keep it in hours beside a running archive.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use weather_common::meter::thousands;

use crate::delta::table::Table;
use crate::layout::Layout;
use crate::store::Store;
use weather_common::position::now_ms;

#[derive(Debug, Default)]
pub struct Vacuumed {
    pub deleted: u64,
    /// Unreferenced files younger than the retention, kept.
    pub young: u64,
}

impl fmt::Display for Vacuumed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "files deleted:      {} (not in the table), {} kept until the retention passes",
            thousands(self.deleted),
            thousands(self.young)
        )
    }
}

pub fn run(store: Arc<dyn Store>, prefix: &str, retention: Duration) -> anyhow::Result<Vacuumed> {
    let (table, topic, _) = Table::open_existing(store.clone(), prefix, 0)?;
    let layout = Layout::new(prefix, &topic);
    let snapshot = table.snapshot()?;
    let cutoff = now_ms() - retention.as_millis() as i64;
    let mut done = Vacuumed::default();
    for (key, modified) in store.list_modified(&layout.data_prefix())? {
        let path = key.strip_prefix(prefix).unwrap_or(&key);
        if snapshot.files.contains_key(path) {
            continue;
        }
        let written = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let removed = snapshot.tombstones.get(path).and_then(|r| r.deletion_timestamp).unwrap_or(0);
        if written.max(removed) > cutoff {
            done.young += 1;
            continue;
        }
        store.delete(&key)?;
        tracing::debug!("deleted {key}");
        done.deleted += 1;
    }
    Ok(done)
}
