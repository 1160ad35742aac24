//! Files published on a thread of their own while the archiving loop reads on. Each decision
//! the loop makes ([`crate::roll`]) comes here with its partition's [`Ledger`]: its file is
//! encoded (Parquet, and for a Delta table its statistics) and taken through the steps of
//! [`crate::state`]: decided, written, committed to the table, done. Decisions are published
//! one after the other in the order they were made, so that every partition's state moves
//! exactly as if the loop had published them itself; after a failure nothing more is.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use weather_common::position::now_ms;
use weather_common::shutdown::Stop;

use crate::columns;
use crate::delta::log::Add;
use crate::delta::schema;
use crate::delta::table::{CommitError, Outcome, Table};
use crate::layout::{Layout, Slot};
use crate::roll::{DecidedFile, Decision, FileIndex};
use crate::state::{Lease, StateError};
use crate::store::{Store, StoreError};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a partition's publishing needs and keeps: its lease (and state) and its files.
pub struct Ledger {
    pub lease: Lease,
    pub index: FileIndex,
}

/// A partition's ledger, shared by the publisher, which moves it on, and the loop, which
/// hands the partition back once nothing of it is left to publish.
pub type SharedLedger = Arc<Mutex<Ledger>>;

pub fn shared(lease: Lease, index: FileIndex) -> SharedLedger {
    Arc::new(Mutex::new(Ledger { lease, index }))
}

/// The ledger, also when a thread that held it panicked (the publisher reports that itself).
pub fn lock(ledger: &SharedLedger) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What became of a decision.
pub enum Published {
    /// Its file, if it had one, is in the lake, and its partition's state is done up to `end`.
    Done { partition: i32, end: i64, file: Option<FileFigures>, superseded: u64, commits: u64 },
    /// Another instance took the partition over: nothing was written.
    Fenced { partition: i32 },
}

pub struct FileFigures {
    pub rows: u64,
    pub bytes: u64,
    pub late: bool,
}

struct Job {
    decision: Decision,
    ledger: SharedLedger,
}

/// Where the files go: the lake's store and names, and with `--table delta` its table.
pub struct Target {
    pub store: Arc<dyn Store>,
    pub layout: Layout,
    pub table: Option<Arc<Table>>,
}

pub struct Publisher {
    jobs: Sender<Job>,
    published: Receiver<anyhow::Result<Published>>,
}

impl Publisher {
    /// Starts the publishing thread; retries of a failing store end at `stop`.
    pub fn start(target: Target, stop: Stop) -> Publisher {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, published) = mpsc::channel();
        std::thread::Builder::new()
            .name("lake-publisher".into())
            .spawn(move || {
                for job in inbox {
                    let result = publish(job, &target, &stop);
                    let failed = result.is_err();
                    if outbox.send(result).is_err() || failed {
                        // A decision after a failed one would move its partition's state past
                        // readings that are not in the lake.
                        return;
                    }
                }
            })
            .expect("a thread for the lake's publisher");
        Publisher { jobs, published }
    }

    /// Queues a decision of the partition whose ledger this is.
    pub fn send(&self, decision: Decision, ledger: SharedLedger) {
        // A thread that ended has reported why, or is reported stopped by `next`.
        let _ = self.jobs.send(Job { decision, ledger });
    }

    /// What became of the oldest decision not yet reported, once it is published.
    pub fn next(&self) -> anyhow::Result<Published> {
        self.published.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// What became of the oldest decision not yet reported, if it is published already.
    pub fn ready(&self) -> Option<anyhow::Result<Published>> {
        match self.published.try_recv() {
            Ok(published) => Some(published),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(stopped())),
        }
    }
}

fn stopped() -> anyhow::Error {
    anyhow::anyhow!("the lake's publisher stopped")
}

/// Makes a decision durable, publishes its file, removes the files it supersedes, and moves
/// the partition's state past it. A partition another instance took over is left with nothing
/// written.
fn publish(job: Job, target: &Target, stop: &Stop) -> anyhow::Result<Published> {
    let Decision { partition, start, end, file } = job.decision;
    let encoded = file.map(|file| encode(file, target.table.is_some()));
    let mut ledger = lock(&job.ledger);
    let Ledger { lease, index } = &mut *ledger;
    let mut commits = 0;
    let mut superseded = 0;
    let written = (|| -> Result<Option<FileFigures>, PublishError> {
        let store = &*target.store;
        let mut add = None;
        let mut figures = None;
        if let Some(encoded) = encoded {
            let Encoded { slot, first_row, rows, late, bytes, stats } = encoded?;
            retry(stop, || lease.write(partition, start, Some(end), store))?;
            let key = target.layout.file_key(slot, partition, first_row);
            retry(stop, || store.put(&key, &bytes).map_err(StateError::Store))?;
            let stale = index.replace(start, end, first_row, &key);
            if target.table.is_some() {
                // Files the table does not reference are the vacuum's: one the table holds is
                // never deleted here.
                add = Some(Add {
                    path: key.strip_prefix(target.layout.prefix()).unwrap_or(&key).to_string(),
                    partition_values: schema::partition_values(slot).into_iter().map(|(k, v)| (k, Some(v))).collect(),
                    size: bytes.len() as i64,
                    modification_time: now_ms(),
                    data_change: true,
                    stats,
                });
            } else {
                for stale in stale {
                    retry(stop, || store.delete(&stale).map_err(StateError::Store))?;
                    superseded += 1;
                }
            }
            tracing::debug!("published {key} ({rows} rows, offsets {start}..{end})");
            figures = Some(FileFigures { rows, bytes: bytes.len() as u64, late });
        }
        if let Some(table) = &target.table {
            let epoch = lease.state.epoch;
            let outcome = retry(stop, || match table.append(partition, epoch, start, end, add.clone()) {
                Ok(outcome) => Ok(Ok(outcome)),
                Err(CommitError::Store(e)) => Err(StateError::Store(e)),
                Err(CommitError::Fenced { partition, epoch, .. }) => Err(StateError::Fenced { partition, epoch }),
                Err(other) => Ok(Err(other)),
            })?;
            match outcome.map_err(|e| PublishError::Table(e.to_string()))? {
                Outcome::Committed(version) => {
                    commits += 1;
                    tracing::debug!("committed offsets {start}..{end} of partition {partition} as version {version}");
                }
                Outcome::AlreadyThere => {
                    tracing::debug!("the table already held offsets {start}..{end} of partition {partition}")
                }
            }
        }
        retry(stop, || lease.write(partition, end, None, store))?;
        Ok(figures)
    })();
    match written {
        Ok(file) => Ok(Published::Done { partition, end, file, superseded, commits }),
        Err(PublishError::State(StateError::Fenced { .. })) => Ok(Published::Fenced { partition }),
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("publishing offsets {start}..{end} of partition {partition}")))
        }
    }
}

/// A decided file, encoded.
struct Encoded {
    slot: Slot,
    first_row: i64,
    rows: u64,
    late: bool,
    bytes: Vec<u8>,
    /// With a Delta table: the file's statistics, for its entry in the log.
    stats: Option<String>,
}

fn encode(file: DecidedFile, with_stats: bool) -> Result<Encoded, PublishError> {
    let DecidedFile { slot, first_row, rows, late } = file;
    let count = rows.len() as u64;
    let batch = rows.finish().map_err(|e| PublishError::Encode(e.to_string()))?;
    let bytes = columns::encode(&batch).map_err(|e| PublishError::Encode(e.to_string()))?;
    let stats = with_stats.then(|| schema::stats(&batch));
    Ok(Encoded { slot, first_row, rows: count, late, bytes, stats })
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("encoding Parquet: {0}")]
    Encode(String),
    #[error("committing to the table: {0}")]
    Table(String),
    #[error("stopped while retrying: {0}")]
    Stopped(StoreError),
}

/// Runs `op` until it succeeds, retrying a store that fails (an unreachable S3, a full disk)
/// with a growing pause and a warning each time, until a stop is requested. A conflict (the
/// partition was taken over) is not retried.
pub fn retry<T>(stop: &Stop, mut op: impl FnMut() -> Result<T, StateError>) -> Result<T, PublishError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match op() {
            Err(StateError::Store(e @ StoreError::Failed { .. })) => {
                if stop.requested() {
                    return Err(PublishError::Stopped(e));
                }
                tracing::warn!("{e}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other.map_err(PublishError::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use weather_common::Reading;

    use super::*;
    use crate::layout::PartitionBy;
    use crate::state::Claim;
    use crate::store::disk::DiskStore;

    fn decision(start: i64, end: i64, with_file: bool) -> Decision {
        let file = with_file.then(|| {
            let mut rows = crate::columns::Rows::default();
            for offset in start..end {
                let reading = Reading {
                    sensor_id: "sensor-1".into(),
                    record_id: offset as u64,
                    temperature_tenths: 215,
                    co_concentration: 700,
                    humidity: 55,
                };
                rows.push(&reading, 1_000 + offset, 0, offset);
            }
            DecidedFile { slot: PartitionBy::Hour.slot(1_000), first_row: start, rows, late: false }
        });
        Decision { partition: 0, start, end, file }
    }

    /// Decisions are published in the order they were made, each file in place and the state
    /// done at the last one's end; once another instance took the partition over, every later
    /// decision is reported fenced, with nothing written.
    #[test]
    fn decisions_are_published_in_order_until_the_partition_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DiskStore::open(dir.path()).unwrap());
        let layout = Layout::new("", "weather");
        let key = layout.state_key(0);
        let take = || Lease::take_over(&*store, &key, 0, 0, Claim::Alone).unwrap().unwrap();
        let ledger = shared(take(), FileIndex::default());
        let target = Target { store: store.clone(), layout: layout.clone(), table: None };
        let publisher = Publisher::start(target, Stop::default());
        for (start, end, file) in [(0, 3, true), (3, 5, false), (5, 9, true)] {
            publisher.send(decision(start, end, file), ledger.clone());
        }
        let mut ends = Vec::new();
        for _ in 0..3 {
            match publisher.next().unwrap() {
                Published::Done { end, .. } => ends.push(end),
                Published::Fenced { .. } => panic!("fenced before a takeover"),
            }
        }
        assert_eq!(ends, [3, 5, 9]);
        assert_eq!(lock(&ledger).lease.state.done, 9);
        let files = |store: &dyn Store| store.list(&layout.data_prefix()).unwrap().len();
        assert_eq!(files(&*store), 2);

        let other = take();
        assert_eq!(other.state.done, 9);
        for (start, end, file) in [(9, 12, true), (12, 13, false)] {
            publisher.send(decision(start, end, file), ledger.clone());
        }
        for _ in 0..2 {
            assert!(matches!(publisher.next().unwrap(), Published::Fenced { partition: 0 }));
        }
        assert_eq!(files(&*store), 2, "a fenced decision wrote its file");
        assert!(publisher.ready().is_none());
    }
}
