//! `weather-archive compact`: the small files of each closed hour (or day) of the table are
//! merged into one per Kafka partition, and swapped in by one commit that removes them and
//! adds the merged file, both with `dataChange: false` ("the records in the added file must be
//! contained in one or more remove actions in the same version"). A reader's snapshot has the
//! small files or the merged one, never both. A kill before the commit leaves the merged file
//! unreferenced (`vacuum` deletes it); the same merge made again writes the same file. The
//! commit is made only if every file it removes is still in the table, so a concurrent
//! compaction never merges a file twice; the archive's commits only add files, and go on.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use serde_json::json;
use weather_common::meter::{counted, thousands};

use crate::columns;
use crate::delta::log::{Action, Add, Remove};
use crate::delta::schema;
use crate::delta::table::{Outcome, Table, Verdict};
use crate::layout::{Layout, Slot};
use crate::store::Store;
use weather_common::position::now_ms;

/// What a compaction did.
#[derive(Debug, Default)]
pub struct Compacted {
    /// Merged files made and committed.
    pub merges: u64,
    /// Small files they replaced.
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Merges not committed because their files had changed meanwhile.
    pub skipped: u64,
    pub version: Option<u64>,
    pub elapsed: Duration,
}

impl fmt::Display for Compacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "files merged:       {} into {} ({} rows, {}) in {:.1} s",
            thousands(self.files),
            thousands(self.merges),
            thousands(self.rows),
            counted(self.bytes, "byte"),
            self.elapsed.as_secs_f64()
        )?;
        if self.skipped > 0 {
            writeln!(f, "left as they were:  {} (changed by another compaction meanwhile)", thousands(self.skipped))?;
        }
        writeln!(f, "table version:      {}", self.version.map_or("none".into(), |v| v.to_string()))
    }
}

/// Compacts the table under `prefix`: hours (or days) that ended `closed_for` ago or more
/// (`None`: every one).
pub fn run(
    store: Arc<dyn Store>,
    prefix: &str,
    closed_for: Option<Duration>,
    checkpoint_every: u64,
) -> anyhow::Result<Compacted> {
    let started = Instant::now();
    let (table, topic, _) = Table::open_existing(store.clone(), prefix, checkpoint_every)?;
    let layout = Layout::new(prefix, &topic);
    let snapshot = table.snapshot()?;
    let closed_before = closed_for.map_or(i64::MAX, |d| now_ms() - d.as_millis() as i64);
    let mut groups: BTreeMap<(Slot, i32), Vec<Add>> = BTreeMap::new();
    for add in snapshot.files.values() {
        let value = |name: &str| add.partition_values.get(name).cloned().flatten();
        let Some(slot) = value("date").and_then(|date| Slot::parse(&date, value("hour").as_deref())) else { continue };
        let Some(partition) = layout.partition_of(&add.path) else { continue };
        if slot.end_ms() <= closed_before {
            groups.entry((slot, partition)).or_default().push(add.clone());
        }
    }
    let mut done = Compacted::default();
    for ((slot, partition), files) in groups.into_iter().filter(|(_, files)| files.len() > 1) {
        let merged = merge(&*store, prefix, &files)
            .with_context(|| format!("merging the files of {slot}, partition {partition}"))?;
        let offsets = merged.column_by_name("offset").expect("the lake's schema").as_primitive::<Int64Type>();
        let (first, last) = (offsets.value(0), offsets.value(offsets.len() - 1));
        let key = layout.merged_key(slot, partition, first, last + 1);
        let bytes = columns::encode(&merged)?;
        store.put(&key, &bytes)?;
        let now = now_ms();
        let add = Add {
            path: key.strip_prefix(prefix).unwrap_or(&key).to_string(),
            partition_values: files[0].partition_values.clone(),
            size: bytes.len() as i64,
            modification_time: now,
            data_change: false,
            stats: Some(schema::stats(&merged)),
        };
        let mut actions: Vec<Action> = files.iter().map(|f| Action::Remove(Remove::of(f, false, now))).collect();
        actions.push(Action::Add(add));
        let parameters = json!({"partition": partition, "slot": slot.to_string(), "files": files.len()});
        let outcome = table.commit("OPTIMIZE", parameters, actions, |latest| {
            Ok(match files.iter().all(|f| latest.files.contains_key(&f.path)) {
                true => Verdict::Commit,
                false => Verdict::AlreadyThere,
            })
        })?;
        match outcome {
            Outcome::Committed(version) => {
                tracing::info!(
                    "{slot}, partition {partition}: {} files merged into {key} (version {version})",
                    files.len()
                );
                done.merges += 1;
                done.files += files.len() as u64;
                done.rows += merged.num_rows() as u64;
                done.bytes += bytes.len() as u64;
            }
            Outcome::AlreadyThere => {
                tracing::warn!("{slot}, partition {partition}: its files changed meanwhile; left as they are");
                done.skipped += 1;
            }
        }
    }
    done.version = table.snapshot()?.version;
    done.elapsed = started.elapsed();
    Ok(done)
}

/// The rows of `files`, in offset order (each file is; they are put in the order of their
/// first offsets).
fn merge(store: &dyn Store, prefix: &str, files: &[Add]) -> anyhow::Result<arrow_array::RecordBatch> {
    let mut batches = Vec::new();
    for file in files {
        let key = format!("{prefix}{}", file.path);
        let bytes = store.get(&key)?.with_context(|| format!("{key} is in the table but not in the lake"))?;
        let batch = columns::decode(bytes).with_context(|| format!("reading {key}"))?;
        let first = batch.column_by_name("offset").expect("the lake's schema").as_primitive::<Int64Type>().value(0);
        batches.push((first, batch));
    }
    batches.sort_by_key(|(first, _)| *first);
    let batches: Vec<_> = batches.into_iter().map(|(_, b)| b).collect();
    Ok(arrow_select::concat::concat_batches(&columns::schema(), &batches)?)
}
