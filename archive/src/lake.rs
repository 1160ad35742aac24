//! Taking partitions over: when this instance takes a partition (all of them alone, its share
//! in a group), the lake says where its reading starts. The state (`_state/...json`) holds how far it was archived and the file
//! decided last; the files already in the lake say where earlier runs ended files, so that a
//! restart or a rebuild writes the same files again; `--start` can only take a partition back,
//! never skip what it has not archived.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use weather_common::position::Start;
use weather_common::source::{start_offsets, TopicView};

use crate::delta::table::{CommitError, Table};
use crate::layout::Layout;
use crate::roll::FileIndex;
use crate::state::{Claim, Lease, StateError};
use crate::store::{is_leftover, Store, StoreError};

/// A partition this instance now writes.
pub struct Taken {
    pub partition: i32,
    pub lease: Lease,
    pub index: FileIndex,
    /// The first offset to read.
    pub start: i64,
    /// Offsets where files must end: where the lake's files begin, and the end of the file
    /// decided last.
    pub boundaries: BTreeSet<i64>,
}

/// The lake, as taking partitions over needs it.
pub struct Lake {
    pub store: Arc<dyn Store>,
    pub layout: Layout,
    /// With `--table delta`: the table every file is committed to, whose progress decides
    /// where a partition starts.
    pub table: Option<Arc<Table>>,
    view: TopicView,
    start: Start,
    /// `--start` looked up per partition when the run began (`None`: the beginning).
    positions: BTreeMap<i32, Option<i64>>,
    allow_data_loss: bool,
    /// Partitions started in this run: `--start` applies to the first time only; a partition
    /// that comes back after the group moved it resumes.
    started: Mutex<BTreeSet<i32>>,
}

impl Lake {
    pub fn new(
        store: Arc<dyn Store>,
        layout: Layout,
        table: Option<Arc<Table>>,
        view: TopicView,
        start: Start,
        positions: BTreeMap<i32, Option<i64>>,
        allow_data_loss: bool,
    ) -> Lake {
        Lake { store, layout, table, view, start, positions, allow_data_loss, started: Mutex::default() }
    }

    pub fn topic(&self) -> &str {
        self.view.topic()
    }

    /// Takes `partitions` over as `claim` says, and returns each one taken with the offset to
    /// fetch it from. A partition a live member of the group holds is not taken.
    pub fn take(&self, partitions: &[i32], claim: Claim<'_>) -> anyhow::Result<Vec<(Taken, i64)>> {
        let keys = retrying("listing the lake", || Ok(self.store.list(&self.layout.data_prefix())?))
            .context("listing the lake")?;
        let mut taken = Vec::new();
        for &partition in partitions {
            let what = format!("taking partition {partition} over");
            match retrying(&what, || self.take_over(partition, &keys, claim)).context(what) {
                Ok(Some(one)) => taken.push(one),
                Ok(None) => tracing::debug!("partition {partition}: a live member holds it"),
                // Another instance took it over in the table since this one's lease (both were
                // handed it within moments): that one writes it; this one leaves it, as a
                // fenced write leaves a partition.
                Err(e) if e.chain().any(|c| matches!(c.downcast_ref(), Some(CommitError::Fenced { .. }))) => {
                    tracing::warn!("{e:#}: leaving it to that instance");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(taken)
    }

    /// Takes `partition` over (see [`Lease::take_over`]) and decides where its reading starts;
    /// `keys` are the lake's files, listed once for all the partitions taken together.
    fn take_over(&self, partition: i32, keys: &[String], claim: Claim<'_>) -> anyhow::Result<Option<(Taken, i64)>> {
        let mut index = FileIndex::default();
        let mut leftovers = Vec::new();
        for key in keys {
            if let Some(file) = is_leftover(key) {
                if self.layout.parse_file_key(&file).is_some_and(|(p, _)| p == partition) {
                    leftovers.push(key);
                }
            } else if let Some((p, first_row)) = self.layout.parse_file_key(key) {
                if p == partition {
                    index.insert(first_row, key.clone());
                }
            }
        }
        let marks = self.view.marks_now(partition)?;
        // --start as an offset, moved back to the beginning of the file that holds it, so
        // that the file is written whole.
        let position = self.positions.get(&partition).copied().flatten().unwrap_or(marks.0);
        let position = index.start_of_file_at(position).filter(|_| position > marks.0).unwrap_or(position);
        let key = self.layout.state_key(partition);
        let Some(mut lease) = Lease::take_over(&*self.store, &key, partition, position, claim)? else {
            return Ok(None);
        };
        for key in leftovers {
            // A file a writer never finished (the one fenced by this takeover included): its
            // decision is in the state, and it is written again from there.
            self.store.delete(key)?;
        }
        let first_time = self.started.lock().unwrap_or_else(|e| e.into_inner()).insert(partition);
        let state = lease.state.clone();
        let resumed = state.epoch > 1;
        let mut start = match (&self.start, first_time && resumed) {
            (_, false) | (Start::Resume | Start::Committed, true) => state.done,
            (Start::Earliest, true) => marks.0,
            (_, true) => position.min(state.done),
        };
        let mut held = None;
        if let Some(table) = &self.table {
            // The table says what it holds: a partition it has never had starts where a new
            // one would (files of an earlier run without the table are written again and
            // committed); one it has resumes where it stands. A table is never rebuilt in
            // place: a file it holds is never written again.
            held = table.take_over(partition, state.epoch)?;
            start = held.unwrap_or(position);
            if start != state.done {
                let pending = state.pending.filter(|&p| p > start);
                lease.write(partition, start, pending, &*self.store)?;
            }
        }
        let state = &lease.state;
        let checked = start_offsets(
            self.topic(),
            &BTreeMap::from([(partition, Some(start))]),
            &HashMap::from([(partition, marks)]),
            self.allow_data_loss,
        )?;
        let start = checked[&partition];
        let mut boundaries = index.starts();
        boundaries.extend(state.pending);
        let how = match (resumed, start.cmp(&state.done)) {
            _ if self.table.is_some() => match held {
                Some(held) => format!("the table holds it up to {held}"),
                None => "a new partition in the table".to_string(),
            },
            (false, _) => "a new partition in the lake".to_string(),
            (true, std::cmp::Ordering::Less) => format!("archived up to {}: rewritten from there", state.done),
            (true, _) if state.pending.is_some() => "resumes, and first writes the file decided last".to_string(),
            (true, _) => "resumes".to_string(),
        };
        tracing::info!(
            "partition {partition}: from offset {start} ({how}; {} files in the lake; epoch {})",
            index.starts().len(),
            state.epoch
        );
        let fetch = self.view.fetch_offset(partition, start, marks)?;
        Ok(Some((Taken { partition, lease, index, start, boundaries }, fetch)))
    }
}

/// Attempts at a takeover whose store fails (an S3 that does not answer, or answers an error
/// that may pass), with a pause doubling from half a second: about 15 s in all.
const TAKEOVER_ATTEMPTS: u32 = 6;

/// Runs `op` again while the store fails in a way that may pass, saying so each time.
fn retrying<T>(what: &str, mut op: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut pause = std::time::Duration::from_millis(500);
    for attempt in 1.. {
        match op() {
            Err(e) if attempt < TAKEOVER_ATTEMPTS && passing(&e) => {
                tracing::warn!("{what}: {e:#}; retrying in {pause:?}");
                std::thread::sleep(pause);
                pause *= 2;
            }
            result => return result,
        }
    }
    unreachable!("the loop returns")
}

/// Whether a store failure may pass (as opposed to a refusal or a conflict).
fn passing(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(cause.downcast_ref::<StoreError>(), Some(StoreError::Failed { .. }))
            || matches!(cause.downcast_ref::<StateError>(), Some(StateError::Store(StoreError::Failed { .. })))
            || matches!(cause.downcast_ref::<CommitError>(), Some(CommitError::Store(StoreError::Failed { .. })))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store failure is tried again until it passes; a conflict or any other error is not.
    #[test]
    fn passing_store_failures_are_retried() {
        let failed = || StoreError::failed("reading s3://lake/_state/weather-0.json", "streaming error");
        let mut calls = 0;
        let result = retrying("test", || {
            calls += 1;
            match calls {
                1 => Err(anyhow::Error::new(StateError::Store(failed()))),
                2 => Err(anyhow::Error::new(failed()).context("taking partition 0 over")),
                _ => Ok(calls),
            }
        });
        assert_eq!(result.unwrap(), 3);
        let mut calls = 0;
        let conflict = retrying("test", || -> anyhow::Result<()> {
            calls += 1;
            Err(StateError::Fenced { partition: 0, epoch: 1 }.into())
        });
        assert!(conflict.is_err() && calls == 1, "not retried");
    }
}
