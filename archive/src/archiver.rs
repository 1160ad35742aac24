//! The archiving loop: readings in from the partitions the group gives this instance, files
//! out to the lake, each through the three steps of [`crate::state`] (decided, published,
//! done). It runs on a thread of its own with rdkafka's blocking poll, which also serves the
//! group's rebalances; the consumer, which assigns its partitions itself, takes batches
//! instead ([`weather_common::fetch`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use weather_common::dead_letter::{self, DeadLetters};
use weather_common::kafka;

use crate::metrics::Metrics;
use weather_common::meter::{counted, thousands, Meter, Span};
use weather_common::position::{now_ms, Until};
use weather_common::shutdown::Stop;
use weather_common::source::{Admit, Progress, TopicView, FETCH_SETTINGS};
use weather_common::Reading;

use crate::columns;
use crate::config::{Settings, TableSettings};
use crate::delta::log::Add;
use crate::delta::schema;
use crate::delta::table::{CommitError, Outcome, Table};
use crate::lake::{Change, Lake, Taken};
use crate::member::{GroupContext, Rebalance};
use crate::roll::{Decision, FileIndex, PartitionFiles};
use crate::state::{Lease, PartitionState, StateError};
use crate::store::{Store, StoreError};

/// How long a member waits for the group's first assignment before it says why it may never
/// come (and a bounded run stops).
const ASSIGNMENT_WAIT: Duration = Duration::from_secs(45);
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Reading the clock for every message costs more than the message: look every so often.
const CLOCK_EVERY: u64 = 1024;
/// How often the group hears how far the lake goes (for lag tools).
const COMMIT_EVERY: Duration = Duration::from_secs(5);
const DEAD_LETTER_FLUSH: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Rows held in memory across all open files at most (about 60 bytes each): past it, the
/// fullest file is closed early, so that memory does not grow with the number of partitions.
const MAX_BUFFERED_ROWS: usize = 400_000;

/// What an archive run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records taken: valid readings and rejected ones.
    pub readings: u64,
    pub rows: u64,
    pub files: u64,
    /// Files of a time slot earlier than one their partition already had (late data).
    pub late_files: u64,
    pub bytes: u64,
    /// Files of earlier runs removed because a new file holds their readings.
    pub superseded: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub dead_letter_topic: String,
    pub destination: String,
    /// Changes of assignment the group made (partitions given or taken back).
    pub rebalances: u64,
    /// Writes refused because another instance had taken the partition over.
    pub fenced_writes: u64,
    /// How far the lake holds each partition this instance wrote.
    pub offsets: BTreeMap<i32, i64>,
    /// With `--table delta`: the commits this run made, and the table's version at its end.
    pub table: Option<(u64, Option<u64>)>,
    /// From the first reading to the last (see [`Span`]): the files still open at the end are
    /// written after it.
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        let per_second = |n: u64| if seconds > 0.0 { (n as f64 / seconds) as u64 } else { 0 };
        writeln!(
            f,
            "readings archived:  {} in {seconds:.1} s ({}/s)",
            thousands(self.rows),
            thousands(per_second(self.readings))
        )?;
        write!(
            f,
            "files written:      {} to {} ({}; {}/s), {} late",
            thousands(self.files),
            self.destination,
            counted(self.bytes, "byte"),
            counted(per_second(self.bytes), "byte"),
            thousands(self.late_files)
        )?;
        if self.superseded > 0 {
            write!(f, ", {} of earlier runs replaced", thousands(self.superseded))?;
        }
        writeln!(f)?;
        if self.fenced_writes > 0 {
            writeln!(
                f,
                "fenced writes:      {} (partitions taken over by another instance)",
                thousands(self.fenced_writes)
            )?;
        }
        if let Some((commits, version)) = self.table {
            let version = version.map_or("none".to_string(), |v| v.to_string());
            writeln!(f, "table commits:      {} (the Delta table is at version {version})", thousands(commits))?;
        }
        writeln!(f, "{}", dead_letter::summary_line(&self.rejected, &self.dead_letter_topic))?;
        let offsets: Vec<String> = self.offsets.iter().map(|(p, o)| format!("{p}:{o}")).collect();
        writeln!(
            f,
            "lake holds offsets: {}",
            if offsets.is_empty() { "none (no partition assigned)".into() } else { offsets.join(" ") }
        )
    }
}

/// A partition this instance writes.
struct Part {
    files: PartitionFiles,
    lease: Lease,
    index: FileIndex,
}

/// Everything but the Kafka consumer: what the records go into.
struct Writer {
    lake: Arc<Lake>,
    settings: Settings,
    parts: BTreeMap<i32, Part>,
    progress: Progress,
    dead_letters: DeadLetters,
    summary: Summary,
    /// The group gave this instance its first assignment (possibly of nothing).
    assigned: bool,
    /// Partitions to stop fetching: read to their end, or lost to another instance.
    to_pause: Vec<i32>,
    /// Rows in all open files.
    buffered: usize,
    metrics: Metrics,
}

pub struct Archiver {
    consumer: BaseConsumer<GroupContext>,
    writer: Writer,
}

impl Archiver {
    /// Looks the topic up, joins the group and subscribes; partitions come with the first poll.
    pub fn open(
        settings: Settings,
        store: Arc<dyn Store>,
        layout: crate::layout::Layout,
        stop: &Stop,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Archiver> {
        let view = TopicView::look_up(&settings.kafka, &settings.topic, stop)?;
        weather_common::metrics::health_of_job().connected();
        let positions = view.positions(&settings.kafka, &settings.group, &settings.start)?;
        let ends = view.ends(settings.until)?;
        let until_time = match settings.until {
            Until::Time(t) => Some(t),
            _ => None,
        };
        let mut progress = Progress::new(BTreeMap::new(), ends, until_time);
        let partitions = view.partitions.clone();
        for &p in &partitions {
            // Only the partitions the group assigns are waited for.
            progress.revoke(p);
        }
        tracing::info!(
            "archiving `{}` ({}) on {} into {}; {} `{}`",
            settings.topic,
            counted(view.partitions.len() as u64, "partition"),
            settings.kafka.bootstrap_servers,
            settings.destination,
            if settings.scale_out { "sharing the partitions in group" } else { "every partition, committing as group" },
            settings.group
        );
        let table = match settings.table {
            Some(TableSettings { checkpoint_every }) => Some(Arc::new(
                Table::open(store.clone(), layout.prefix(), &settings.topic, settings.partition_by, checkpoint_every)
                    .with_context(|| format!("opening the Delta table at {}", settings.destination))?,
            )),
            None => None,
        };
        let lake = Arc::new(Lake::new(
            store,
            layout,
            table,
            view,
            settings.start.clone(),
            positions,
            settings.allow_data_loss,
        ));
        let mut config = vec![
            ("auto.offset.reset", "earliest"),
            // Eager: with cooperative-sticky, Tansu 0.6 hands one partition to two members
            // for seconds at a time (see the README's notes).
            ("partition.assignment.strategy", "range"),
        ];
        config.extend_from_slice(&FETCH_SETTINGS);
        let consumer: BaseConsumer<GroupContext> = settings
            .kafka
            .consumer_config(&settings.group, &config)
            .create_with_context(GroupContext::new(lake.clone()))?;
        if settings.scale_out {
            consumer.subscribe(&[settings.topic.as_str()])?;
        } else {
            // Every partition, assigned here and now: no group protocol to wait for.
            let mut assignment = TopicPartitionList::new();
            for (partition, offset) in lake.assigned(&partitions) {
                assignment.add_partition_offset(&settings.topic, partition, Offset::Offset(offset))?;
            }
            consumer.assign(&assignment)?;
        }
        let summary = Summary {
            dead_letter_topic: settings.dead_letter_topic.clone(),
            destination: lake.store.describe(),
            table: lake.table.as_ref().map(|_| (0, None)),
            ..Summary::default()
        };
        let dead_letters = DeadLetters::new(&settings.kafka, &settings.dead_letter_topic, runtime);
        let metrics = Metrics::new(&settings.topic, &settings.kafka);
        let writer = Writer {
            lake,
            settings,
            parts: BTreeMap::new(),
            progress,
            dead_letters,
            summary,
            assigned: false,
            to_pause: Vec::new(),
            buffered: 0,
            metrics,
        };
        Ok(Archiver { consumer, writer })
    }

    /// Archives until the bounded run is done or a stop is requested, then publishes every
    /// open file and reports.
    pub fn run(mut self, stop: &Stop) -> anyhow::Result<Summary> {
        let started = Instant::now();
        let mut span = Span::default();
        let follow = self.writer.settings.until == Until::Follow;
        let mut meter = Meter::new(self.writer.settings.progress.display(), "readings", None);
        let mut last_commit = Instant::now();
        let mut waiting_said = false;
        let result = loop {
            if stop.requested() || (!follow && self.writer.assigned && self.writer.progress.done()) {
                break Ok(());
            }
            if !self.writer.assigned && started.elapsed() > ASSIGNMENT_WAIT {
                let why = format!(
                    "the group `{}` has assigned this instance nothing, not even an empty share, in {} s: its \
                     coordinator has not finished a rebalance (Tansu 0.6 does not recover from a member that died \
                     without leaving: docs/tansu); restart the other members of the group, or run without --group \
                     to archive every partition",
                    self.writer.settings.group,
                    ASSIGNMENT_WAIT.as_secs()
                );
                if !follow {
                    break Err(anyhow::anyhow!("{why}; a bounded run stops here"));
                }
                if !waiting_said {
                    tracing::warn!("{why}; following, it goes on waiting");
                    waiting_said = true;
                }
            }
            let polled = self.consumer.poll(POLL_TIMEOUT);
            if let Err(e) = self.writer.apply_changes() {
                break Err(e);
            }
            let mut idle = false;
            match polled {
                None => idle = true,
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.writer.progress.reached_end(partition, now_ms());
                    idle = true;
                }
                Some(Err(e)) => {
                    kafka::warn_consuming(&e);
                    idle = true;
                }
                Some(Ok(message)) => {
                    span.read();
                    if let Err(e) = self.writer.take(&message, stop) {
                        break Err(e);
                    }
                    if self.writer.summary.readings.is_multiple_of(CLOCK_EVERY) {
                        span.taken();
                        self.writer.metrics.read(message.partition(), message.timestamp().to_millis());
                    }
                }
            }
            for partition in self.writer.to_pause.drain(..) {
                kafka::pause(&self.consumer, &self.writer.settings.topic, partition);
            }
            if !idle && !self.writer.summary.readings.is_multiple_of(CLOCK_EVERY) {
                continue;
            }
            if idle {
                self.writer.progress.tick(now_ms());
            }
            if follow {
                if let Err(e) = self.writer.flush_due(stop) {
                    break Err(e);
                }
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                self.commit(CommitMode::Async);
                last_commit = Instant::now();
            }
            let summary = &self.writer.summary;
            meter.update(summary.readings, || format!("{} written", counted(summary.files, "file")));
            self.writer.report_metrics();
        };
        if !follow && self.writer.progress.done() {
            // A bounded run ends at its last reading; a stopped one at the last noted.
            span.taken();
        }
        meter.finish();
        result?;
        self.writer.close_all(stop)?;
        self.commit(CommitMode::Sync);
        self.writer.report_metrics();
        let mut summary = self.writer.summary;
        summary.rejected = self.writer.dead_letters.counts().clone();
        summary.elapsed = span.elapsed();
        Ok(summary)
    }

    /// Tells the group how far the lake holds the partitions this instance writes.
    fn commit(&self, mode: CommitMode) {
        let mut list = TopicPartitionList::new();
        for (&partition, part) in &self.writer.parts {
            let _ = list.add_partition_offset(
                &self.writer.settings.topic,
                partition,
                Offset::Offset(part.lease.state.done),
            );
        }
        if list.count() > 0 {
            if let Err(e) = self.consumer.commit(&list, mode) {
                tracing::debug!("commit to the consumer group failed: {e} (the lake's state holds the progress)");
            }
        }
    }
}

impl Writer {
    /// Publishes the figures so far to the metrics.
    fn report_metrics(&self) {
        let held = self.parts.iter().map(|(&partition, part)| (partition, part.lease.state.done)).collect();
        self.metrics.publish(&self.summary, self.dead_letters.counts(), &held);
    }

    /// Applies what the group changed since the last poll.
    fn apply_changes(&mut self) -> anyhow::Result<()> {
        for change in self.lake.changes() {
            match change {
                Change::Given(partitions) => {
                    self.assigned = true;
                    if partitions.is_empty() && self.settings.scale_out {
                        tracing::warn!(
                            "the group `{}` assigned this instance no partition: it has as many members as `{}` has \
                             partitions, or more{}",
                            self.settings.group,
                            self.settings.topic,
                            match self.settings.until {
                                Until::Follow => "; it waits for the group to change",
                                _ => "; the bounded run ends",
                            }
                        );
                    }
                }
                Change::Assigned(taken) => {
                    self.summary.rebalances += 1;
                    let Taken { partition, lease, index, start, boundaries } = *taken;
                    let s = &self.settings;
                    let files = PartitionFiles::new(partition, s.partition_by, s.max_rows, start, boundaries);
                    self.progress.assign(partition, start);
                    self.parts.insert(partition, Part { files, lease, index });
                    self.assigned = true;
                }
                Change::Revoked(partition) => {
                    self.summary.rebalances += 1;
                    self.metrics.revoked(partition);
                    // Its open file is dropped: the readings are read again by the next owner,
                    // from the state this instance left.
                    self.drop_partition(partition);
                }
                Change::Failed(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Takes one record in: a valid reading into its partition's file, anything else kept
    /// aside; publishes the files it ends.
    fn take(&mut self, message: &BorrowedMessage<'_>, stop: &Stop) -> anyhow::Result<()> {
        let (partition, offset) = (message.partition(), message.offset());
        let Some(part) = self.parts.get_mut(&partition) else {
            return Ok(());
        };
        let timestamp = message.timestamp().to_millis();
        match self.progress.admit(partition, offset, || timestamp) {
            Admit::New => {}
            Admit::Old => return Ok(()),
            Admit::Beyond => {
                self.to_pause.push(partition);
                return Ok(());
            }
        }
        let decisions = match (Reading::parse(message.payload(), message.key()), timestamp) {
            (Ok(reading), Some(ms)) => {
                self.buffered += 1;
                part.files.take(offset, Some((&reading, ms)), partition)
            }
            (Ok(_), None) => {
                self.dead_letters.keep(
                    message.into(),
                    "no-timestamp",
                    "the record has no timestamp to place it in time",
                )?;
                part.files.take(offset, None, partition)
            }
            (Err(bad), _) => {
                self.dead_letters.keep(message.into(), bad.category(), &bad.to_string())?;
                part.files.take(offset, None, partition)
            }
        };
        self.progress.consumed(partition, offset);
        self.summary.readings += 1;
        for decision in decisions {
            self.publish(decision, stop)?;
        }
        if self.buffered > MAX_BUFFERED_ROWS {
            let fullest = self.parts.iter().max_by_key(|(_, part)| part.files.open_rows()).map(|(&p, _)| p);
            if let Some(decision) = fullest.and_then(|p| self.parts.get_mut(&p)).and_then(|part| part.files.close()) {
                self.publish(decision, stop)?;
            }
        }
        Ok(())
    }

    /// Forgets a partition this instance no longer writes, with its open file.
    fn drop_partition(&mut self, partition: i32) {
        if let Some(part) = self.parts.remove(&partition) {
            self.buffered -= part.files.open_rows();
        }
        self.progress.revoke(partition);
    }

    /// Closes the files that have been open for the flush interval.
    fn flush_due(&mut self, stop: &Stop) -> anyhow::Result<()> {
        let interval = self.settings.flush_interval;
        let due: Vec<i32> = self
            .parts
            .iter()
            .filter(|(_, part)| part.files.open_since().is_some_and(|t| t.elapsed() >= interval))
            .map(|(&p, _)| p)
            .collect();
        for partition in due {
            if let Some(decision) = self.parts.get_mut(&partition).and_then(|part| part.files.close()) {
                tracing::debug!("partition {partition}: flushing after {interval:?}");
                self.publish(decision, stop)?;
            }
        }
        Ok(())
    }

    /// The end of a run: every open file is published, and every read offset decided.
    fn close_all(&mut self, stop: &Stop) -> anyhow::Result<()> {
        let partitions: Vec<i32> = self.parts.keys().copied().collect();
        for partition in partitions {
            if let Some(decision) = self.parts.get_mut(&partition).and_then(|part| part.files.close()) {
                self.publish(decision, stop)?;
            }
        }
        for (&partition, part) in &self.parts {
            self.summary.offsets.insert(partition, part.lease.state.done);
        }
        if let (Some(table), Some((_, version))) = (&self.lake.table, &mut self.summary.table) {
            *version = table.snapshot().map_err(anyhow::Error::new)?.version;
        }
        Ok(())
    }

    /// Makes a decision durable, publishes its file, removes the files it supersedes, and
    /// moves the partition's state past it. A partition another instance took over since is
    /// given up, with nothing written.
    fn publish(&mut self, decision: Decision, stop: &Stop) -> anyhow::Result<()> {
        let Decision { partition, start, end, file } = decision;
        self.buffered -= file.as_ref().map_or(0, |f| f.rows.len());
        // Rejected readings in the range must be kept aside before the state moves past them.
        self.flush_dead_letters()?;
        let store = self.lake.store.clone();
        let layout = &self.lake.layout;
        let part = self.parts.get_mut(&partition).expect("decisions come from assigned partitions");
        let epoch = part.lease.state.epoch;
        let table = self.lake.table.clone();
        let mut commits = 0;
        let written = (|| -> Result<(), PublishError> {
            let mut add = None;
            if let Some(file) = file {
                let pending = PartitionState { epoch, done: start, pending: Some(end) };
                retry(stop, || part.lease.write(partition, pending.clone(), &*store))?;
                let key = layout.file_key(file.slot, partition, file.first_row);
                let (rows, late, slot) = (file.rows.len() as u64, file.late, file.slot);
                let batch = file.rows.finish().map_err(|e| PublishError::Encode(e.to_string()))?;
                let bytes = columns::encode(&batch).map_err(|e| PublishError::Encode(e.to_string()))?;
                retry(stop, || store.put(&key, &bytes).map_err(StateError::Store))?;
                let superseded = part.index.replace(start, end, file.first_row, &key);
                if table.is_some() {
                    // Files the table does not reference are the vacuum's: one the table
                    // holds is never deleted here.
                    add = Some(Add {
                        path: key.strip_prefix(layout.prefix()).unwrap_or(&key).to_string(),
                        partition_values: schema::partition_values(slot)
                            .into_iter()
                            .map(|(k, v)| (k, Some(v)))
                            .collect(),
                        size: bytes.len() as i64,
                        modification_time: now_ms(),
                        data_change: true,
                        stats: Some(schema::stats(&batch)),
                    });
                } else {
                    for stale in superseded {
                        retry(stop, || store.delete(&stale).map_err(StateError::Store))?;
                        self.summary.superseded += 1;
                    }
                }
                self.summary.files += 1;
                self.summary.rows += rows;
                self.summary.bytes += bytes.len() as u64;
                self.summary.late_files += u64::from(late);
                tracing::debug!("published {key} ({rows} rows, offsets {start}..{end})");
            }
            if let Some(table) = &table {
                let outcome = retry(stop, || match table.append(partition, epoch, start, end, add.clone()) {
                    Ok(outcome) => Ok(Ok(outcome)),
                    Err(CommitError::Store(e)) => Err(StateError::Store(e)),
                    Err(CommitError::Fenced { partition, epoch, .. }) => Err(StateError::Fenced { partition, epoch }),
                    Err(other) => Ok(Err(other)),
                })?;
                match outcome.map_err(|e| PublishError::Table(e.to_string()))? {
                    Outcome::Committed(version) => {
                        commits += 1;
                        tracing::debug!(
                            "committed offsets {start}..{end} of partition {partition} as version {version}"
                        );
                    }
                    Outcome::AlreadyThere => {
                        tracing::debug!("the table already held offsets {start}..{end} of partition {partition}")
                    }
                }
            }
            let done = PartitionState { epoch, done: end, pending: None };
            retry(stop, || part.lease.write(partition, done.clone(), &*store))?;
            Ok(())
        })();
        if let Some((total, _)) = &mut self.summary.table {
            *total += commits;
        }
        match written {
            Ok(()) => Ok(()),
            Err(PublishError::State(StateError::Fenced { .. })) => {
                self.summary.fenced_writes += 1;
                tracing::warn!(
                    "partition {partition} was taken over by another instance: leaving it (nothing more is written for it here)"
                );
                self.drop_partition(partition);
                self.to_pause.push(partition);
                if self.parts.is_empty() && !self.settings.scale_out {
                    bail!(
                        "every partition of `{}` was taken over by another instance writing {}: stopping",
                        self.settings.topic,
                        self.summary.destination
                    );
                }
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("publishing offsets {start}..{end} of partition {partition}")),
        }
    }

    fn flush_dead_letters(&mut self) -> anyhow::Result<()> {
        for _ in 0..6 {
            if self.dead_letters.flush(DEAD_LETTER_FLUSH)? {
                return Ok(());
            }
            tracing::warn!("dead letters not yet acknowledged by `{}`; waiting", self.dead_letters.topic());
        }
        bail!("rejected readings could not be kept aside in `{}`: nothing more is archived", self.dead_letters.topic())
    }
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
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
fn retry<T>(stop: &Stop, mut op: impl FnMut() -> Result<T, StateError>) -> Result<T, PublishError> {
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
    use super::*;

    /// The summary says what the run did, one line each, with rates.
    #[test]
    fn the_summary_reports_files_and_rejections() {
        let summary = Summary {
            readings: 1_001,
            rows: 1_000,
            files: 4,
            late_files: 1,
            bytes: 40_000,
            rejected: BTreeMap::from([("not-json", 1)]),
            dead_letter_topic: "weather.dlq".into(),
            destination: "/data/lake".into(),
            offsets: BTreeMap::from([(0, 501), (1, 500)]),
            elapsed: Duration::from_secs(2),
            ..Summary::default()
        };
        assert_eq!(
            summary.to_string(),
            "readings archived:  1,000 in 2.0 s (500/s)\n\
             files written:      4 to /data/lake (40,000 bytes; 20,000 bytes/s), 1 late\n\
             readings rejected:  1 (not-json 1), kept in `weather.dlq`\n\
             lake holds offsets: 0:501 1:500\n"
        );
    }
}
