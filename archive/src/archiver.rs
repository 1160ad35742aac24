//! The archiving loop: readings in from the partitions this instance owns (all of them alone,
//! its share in a group, moved at each heartbeat: [`crate::group`]), files out to the lake
//! through [`crate::publisher`], which takes each through the three steps of [`crate::state`]
//! (decided, published, done) on a thread beside it. The loop runs on a thread of its own,
//! taking librdkafka's fetched messages a batch at a time ([`weather_common::fetch`]), from a
//! consumer made anew whenever the partitions it owns change.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, CommitMode};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use weather_common::dead_letter::{self, DeadLetters};
use weather_common::fetch::{Fetcher, Record};
use weather_common::kafka::{self, LoggingContext};

use crate::metrics::Metrics;
use weather_common::meter::{counted, thousands, Meter, Span};
use weather_common::position::{now_ms, Until};
use weather_common::share::{share_of, Moves};
use weather_common::shutdown::Stop;
use weather_common::source::{Admit, Progress, TopicView, FETCH_SETTINGS};
use weather_common::Reading;

use crate::config::{Settings, TableSettings};
use crate::delta::table::Table;
use crate::group::Group;
use crate::lake::{Lake, Taken};
use crate::publisher::{self, retry, FileFigures, Published, Publisher, SharedLedger, Target};
use crate::roll::{Decision, PartitionFiles};
use crate::state::Claim;
use crate::store::Store;

/// A bounded member that owns no partition waits this many leases for one before it ends.
const IDLE_LEASES: u32 = 2;
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Reading the clock for every message costs more than the message: look every so often.
const CLOCK_EVERY: u64 = 1024;
/// How often the group hears how far the lake goes (for lag tools).
const COMMIT_EVERY: Duration = Duration::from_secs(5);
const DEAD_LETTER_FLUSH: Duration = Duration::from_secs(10);
/// Rows held in memory across all open files at most (about 60 bytes each): past it, the
/// fullest file is closed early, so that memory does not grow with the number of partitions.
const MAX_BUFFERED_ROWS: usize = 400_000;
/// Rows of files closed and not yet published at most: past it, the loop waits for the
/// publisher.
const MAX_OUTGOING_ROWS: usize = 250_000;

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
    /// Partitions this instance took over or handed back.
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
            if offsets.is_empty() { "none (no partition owned)".into() } else { offsets.join(" ") }
        )
    }
}

/// A partition this instance writes.
struct Part {
    files: PartitionFiles,
    /// Its lease and files, which the publisher moves on.
    ledger: SharedLedger,
    /// How far the lake holds it, as the publisher last reported.
    done: i64,
}

/// Everything but the Kafka consumer: what the records go into.
struct Writer {
    lake: Arc<Lake>,
    settings: Settings,
    parts: BTreeMap<i32, Part>,
    progress: Progress,
    dead_letters: DeadLetters,
    summary: Summary,
    /// Partitions to stop fetching: read to their end.
    to_pause: Vec<i32>,
    /// Partitions lost to another instance since the loop last looked.
    lost: Vec<i32>,
    /// Rows in all open files.
    buffered: usize,
    /// The rows of each decision sent to the publisher and not yet reported, oldest first.
    outgoing: VecDeque<usize>,
    outgoing_rows: usize,
    publisher: Publisher,
    metrics: Metrics,
}

pub struct Archiver {
    /// Fetching the partitions this instance owns; none while it owns none.
    fetcher: Option<Fetcher<LoggingContext>>,
    writer: Writer,
    /// With `--group`: this instance's membership, and its share of the partitions.
    sharing: Option<Sharing>,
    /// Every partition of the topic.
    partitions: Vec<i32>,
}

/// A member's view of the group, as of its last heartbeat.
struct Sharing {
    group: Group,
    next_heartbeat: Instant,
    /// The partitions dealt to this member.
    share: BTreeSet<i32>,
    /// What the log last said this member owns.
    said: Option<BTreeSet<i32>>,
    /// Since when its share has been empty.
    idle_since: Option<Instant>,
}

impl Archiver {
    /// Looks the topic up and takes every partition over, or, in a group, joins it: its share
    /// comes with the first heartbeat.
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
            // Only the partitions taken over are waited for.
            progress.revoke(p);
        }
        tracing::info!(
            "archiving `{}` ({}) on {} into {}; {} `{}`",
            settings.topic,
            counted(view.partitions.len() as u64, "partition"),
            settings.kafka.bootstrap_servers,
            settings.destination,
            match &settings.member {
                Some(m) => format!("member `{}` sharing the partitions (lease {:?}) in group", m.name, m.lease),
                None => "every partition, committing as group".to_string(),
            },
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
        let sharing = settings.member.as_ref().map(|member| Sharing {
            group: Group::join(lake.store.clone(), &lake.layout, &member.name, member.lease),
            next_heartbeat: Instant::now(),
            share: BTreeSet::new(),
            said: None,
            idle_since: None,
        });
        let summary = Summary {
            dead_letter_topic: settings.dead_letter_topic.clone(),
            destination: lake.store.describe(),
            table: lake.table.as_ref().map(|_| (0, None)),
            ..Summary::default()
        };
        let dead_letters = DeadLetters::new(&settings.kafka, &settings.dead_letter_topic, runtime);
        let metrics = Metrics::new(&settings.topic, &settings.kafka);
        let target = Target { store: lake.store.clone(), layout: lake.layout.clone(), table: lake.table.clone() };
        let publisher = Publisher::start(target, stop.clone());
        let writer = Writer {
            lake,
            settings,
            parts: BTreeMap::new(),
            progress,
            dead_letters,
            summary,
            to_pause: Vec::new(),
            lost: Vec::new(),
            buffered: 0,
            outgoing: VecDeque::new(),
            outgoing_rows: 0,
            publisher,
            metrics,
        };
        let mut archiver = Archiver { fetcher: None, writer, sharing, partitions };
        if archiver.sharing.is_none() {
            let taken = archiver.writer.lake.take(&archiver.partitions, Claim::Alone)?;
            archiver.adopt(taken);
            archiver.refetch()?;
        }
        Ok(archiver)
    }

    /// Archives until the bounded run is done or a stop is requested, then publishes every
    /// open file and reports.
    pub fn run(mut self, stop: &Stop) -> anyhow::Result<Summary> {
        let mut span = Span::default();
        let follow = self.writer.settings.until == Until::Follow;
        let mut meter = Meter::new(self.writer.settings.progress.display(), "readings", None);
        let mut last_commit = Instant::now();
        let result = loop {
            if stop.requested() || (!follow && self.bounded_run_done()) {
                break Ok(());
            }
            let Some(fetcher) = &self.fetcher else {
                // Nothing owned (yet): the heartbeat may change that.
                if let Err(e) = self.heartbeat(stop) {
                    break Err(e);
                }
                self.writer.report_metrics();
                std::thread::sleep(POLL_TIMEOUT);
                continue;
            };
            let idle = match fetcher.poll(POLL_TIMEOUT) {
                None => true,
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.writer.progress.reached_end(partition, now_ms());
                    true
                }
                Some(Err(e)) => {
                    kafka::warn_consuming(&e);
                    true
                }
                Some(Ok(record)) => {
                    span.read();
                    if let Err(e) = self.writer.take(&record) {
                        break Err(e);
                    }
                    if self.writer.summary.readings.is_multiple_of(CLOCK_EVERY) {
                        span.taken();
                        self.writer.metrics.read(record.partition(), record.timestamp());
                    }
                    false
                }
            };
            for partition in self.writer.to_pause.drain(..) {
                fetcher.pause(&self.writer.settings.topic, partition);
            }
            if !self.writer.lost.is_empty() {
                if let Err(e) = self.refetch() {
                    break Err(e);
                }
            }
            if !idle && !self.writer.summary.readings.is_multiple_of(CLOCK_EVERY) {
                continue;
            }
            if idle {
                self.writer.progress.tick(now_ms());
            }
            if follow {
                if let Err(e) = self.writer.flush_due() {
                    break Err(e);
                }
            }
            if let Err(e) = self.writer.collect_published() {
                break Err(e);
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                self.commit(CommitMode::Async);
                last_commit = Instant::now();
            }
            if let Err(e) = self.heartbeat(stop) {
                break Err(e);
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
        self.writer.close_all()?;
        self.commit(CommitMode::Sync);
        self.leave(stop);
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
            let _ = list.add_partition_offset(&self.writer.settings.topic, partition, Offset::Offset(part.done));
        }
        if let (Some(fetcher), true) = (&self.fetcher, list.count() > 0) {
            if let Err(e) = fetcher.commit(&list, mode) {
                tracing::debug!("commit to the consumer group failed: {e} (the lake's state holds the progress)");
            }
        }
    }

    /// Starts writing the partitions taken over (fetched from the next [`Archiver::refetch`]).
    fn adopt(&mut self, taken: Vec<Taken>) {
        for taken in taken {
            self.writer.adopt(taken);
        }
    }

    /// Fetches exactly the partitions this instance owns, each from its next offset, with a
    /// consumer made anew: librdkafka's batch queue follows the partitions it was made with
    /// (see [`weather_common::fetch`]), and the owned ones change only when members come and
    /// go. Messages fetched and not yet taken are fetched again.
    fn refetch(&mut self) -> anyhow::Result<()> {
        self.writer.lost.clear();
        // The old consumer leaves first, with its fetch queue.
        self.fetcher = None;
        let topic = self.writer.settings.topic.clone();
        let mut list = TopicPartitionList::new();
        for (partition, next) in self.writer.progress.next() {
            if self.writer.parts.contains_key(&partition) {
                let fetch = self.writer.lake.fetch_offset(partition, next)?;
                list.add_partition_offset(&topic, partition, Offset::Offset(fetch))?;
            }
        }
        if list.count() == 0 {
            return Ok(());
        }
        let mut config = vec![("auto.offset.reset", "earliest")];
        config.extend_from_slice(&FETCH_SETTINGS);
        let settings = &self.writer.settings;
        // Assigned here, never by the group's protocol (see crate::group).
        let consumer: BaseConsumer<LoggingContext> =
            settings.kafka.consumer_config(&settings.group, &config).create_with_context(LoggingContext)?;
        self.fetcher = Some(Fetcher::assign(consumer, &list)?);
        Ok(())
    }

    /// In a group, at each heartbeat: says this member is alive, learns who else is, and moves
    /// from what it owns to its share: hands back what is no longer its share (its open files
    /// dropped: the next owner reads them again from the state), takes over what is and has no
    /// live owner. A heartbeat the store refuses is said and tried again at the next one.
    fn heartbeat(&mut self, stop: &Stop) -> anyhow::Result<()> {
        let Some(sharing) = &mut self.sharing else { return Ok(()) };
        let now = Instant::now();
        if now < sharing.next_heartbeat {
            return Ok(());
        }
        let lease = sharing.group.lease();
        sharing.next_heartbeat = now + (lease / 4).max(Duration::from_millis(250));
        let live = match sharing.group.heartbeat() {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(
                    "the heartbeat of member `{}` failed ({e}); if this lasts {lease:?}, the others take its partitions over",
                    sharing.group.member()
                );
                return Ok(());
            }
        };
        let member = sharing.group.member().to_string();
        let share = share_of(&member, &live, &self.partitions);
        let owned: BTreeSet<i32> = self.writer.parts.keys().copied().collect();
        let moves = Moves::between(&owned, &share);
        if !moves.release.is_empty() || !moves.claim.is_empty() {
            // What was decided under the old ownership is published under it.
            self.writer.wait_published()?;
        }
        for &partition in &moves.release {
            self.writer.release(partition, stop);
        }
        if !moves.claim.is_empty() {
            let claims: Vec<i32> = moves.claim.iter().copied().collect();
            let taken = self.writer.lake.take(&claims, Claim::Member { name: &member, live: &live })?;
            self.adopt(taken);
        }
        // A new consumer when the partitions owned changed or one was lost; and a consumer
        // exactly while some are owned.
        let now_owned: BTreeSet<i32> = self.writer.parts.keys().copied().collect();
        if now_owned != owned || !self.writer.lost.is_empty() || self.fetcher.is_some() == now_owned.is_empty() {
            self.refetch()?;
        }
        let Some(sharing) = &mut self.sharing else { return Ok(()) };
        let owned: BTreeSet<i32> = self.writer.parts.keys().copied().collect();
        if sharing.said.as_ref() != Some(&owned) {
            let listed: Vec<String> = owned.iter().map(i32::to_string).collect();
            tracing::info!(
                "member `{member}` reads partitions [{}] ({}: {})",
                listed.join(", "),
                counted(live.len() as u64, "live member"),
                live.join(", ")
            );
        }
        if share.is_empty() && sharing.idle_since.is_none() {
            tracing::warn!(
                "member `{member}` owns no partition: {} share the {} of `{}`; it takes some over when a member \
                 leaves or its lease runs out{}",
                counted(live.len() as u64, "live member"),
                counted(self.partitions.len() as u64, "partition"),
                self.writer.settings.topic,
                match self.writer.settings.until {
                    Until::Follow => String::new(),
                    _ => format!("; a bounded run ends after {IDLE_LEASES} leases without one"),
                }
            );
        }
        sharing.idle_since = match share.is_empty() {
            true => sharing.idle_since.or(Some(now)),
            false => None,
        };
        sharing.said = Some(owned);
        sharing.share = share;
        Ok(())
    }

    /// A bounded run is done once every partition it owns is read to its end; in a group, once
    /// it owns its whole share, or has owned none for a while (the group may yet give it some).
    fn bounded_run_done(&self) -> bool {
        let read = self.writer.progress.done();
        match &self.sharing {
            None => read,
            Some(s) if s.share.is_empty() => {
                s.said.is_some() && s.idle_since.is_some_and(|t| t.elapsed() >= s.group.lease() * IDLE_LEASES)
            }
            // Its whole share, none held by a member that has not let go yet, none lost since.
            Some(s) => read && s.said.is_some() && self.writer.parts.keys().eq(s.share.iter()),
        }
    }

    /// Leaves the group, if in one: every partition handed back (its files are published by
    /// now), then the heartbeat removed, so that the others take them over at once.
    fn leave(&mut self, stop: &Stop) {
        if self.sharing.is_none() {
            return;
        }
        let partitions: Vec<i32> = self.writer.parts.keys().copied().collect();
        for &partition in &partitions {
            self.writer.release(partition, stop);
        }
        let Some(sharing) = &mut self.sharing else { return };
        let member = sharing.group.member().to_string();
        match sharing.group.leave() {
            Ok(()) => tracing::info!("member `{member}` left group `{}`", self.writer.settings.group),
            Err(e) => {
                tracing::warn!("member `{member}` could not remove its heartbeat ({e}): its lease runs out instead")
            }
        }
    }
}

impl Writer {
    /// Publishes the figures so far to the metrics.
    fn report_metrics(&self) {
        let held = self.parts.iter().map(|(&partition, part)| (partition, part.done)).collect();
        self.metrics.publish(&self.summary, self.dead_letters.counts(), &held);
    }

    /// Starts writing a partition taken over.
    fn adopt(&mut self, taken: Taken) {
        self.summary.rebalances += 1;
        let Taken { partition, lease, index, start, boundaries } = taken;
        let s = &self.settings;
        let files = PartitionFiles::new(partition, s.partition_by, s.max_rows, start, boundaries);
        self.progress.assign(partition, start);
        let done = lease.state.done;
        self.parts.insert(partition, Part { files, ledger: publisher::shared(lease, index), done });
    }

    /// Hands a partition back to the group: its open file is dropped (the next owner reads
    /// those readings again, from the state this instance left) and its state loses its owner.
    /// A partition taken over meanwhile is left as it is.
    fn release(&mut self, partition: i32, stop: &Stop) {
        let Some(part) = self.remove(partition) else { return };
        self.summary.rebalances += 1;
        let store = self.lake.store.clone();
        let mut ledger = publisher::lock(&part.ledger);
        match retry(stop, || ledger.lease.release(partition, &*store)) {
            Ok(()) => tracing::debug!("partition {partition}: handed back at offset {}", part.done),
            Err(e) => tracing::info!("partition {partition}: not handed back ({e}); it is another member's already, or will be once this one's lease runs out"),
        }
    }

    /// Takes one record in: a valid reading into its partition's file, anything else kept
    /// aside; hands the files it ends to the publisher.
    fn take(&mut self, message: &Record<'_>) -> anyhow::Result<()> {
        let (partition, offset) = (message.partition(), message.offset());
        let Some(part) = self.parts.get_mut(&partition) else {
            return Ok(());
        };
        let timestamp = message.timestamp();
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
            self.send(decision)?;
        }
        if self.buffered > MAX_BUFFERED_ROWS {
            let fullest = self.parts.iter().max_by_key(|(_, part)| part.files.open_rows()).map(|(&p, _)| p);
            if let Some(decision) = fullest.and_then(|p| self.parts.get_mut(&p)).and_then(|part| part.files.close()) {
                self.send(decision)?;
            }
        }
        Ok(())
    }

    /// Forgets a partition this instance no longer writes, with its open file.
    fn remove(&mut self, partition: i32) -> Option<Part> {
        let part = self.parts.remove(&partition)?;
        self.buffered -= part.files.open_rows();
        self.progress.revoke(partition);
        self.metrics.revoked(partition);
        Some(part)
    }

    /// Closes the files that have been open for the flush interval.
    fn flush_due(&mut self) -> anyhow::Result<()> {
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
                self.send(decision)?;
            }
        }
        Ok(())
    }

    /// The end of a run: every open file is published, and every read offset decided.
    fn close_all(&mut self) -> anyhow::Result<()> {
        let partitions: Vec<i32> = self.parts.keys().copied().collect();
        for partition in partitions {
            if let Some(decision) = self.parts.get_mut(&partition).and_then(|part| part.files.close()) {
                self.send(decision)?;
            }
        }
        self.wait_published()?;
        for (&partition, part) in &self.parts {
            self.summary.offsets.insert(partition, part.done);
        }
        if let (Some(table), Some((_, version))) = (&self.lake.table, &mut self.summary.table) {
            *version = table.snapshot().map_err(anyhow::Error::new)?.version;
        }
        Ok(())
    }

    /// Hands a decision to the publisher, once the readings it rejected are kept aside (the
    /// state moves past them when it is published). Waits for the publisher while it holds
    /// too many rows.
    fn send(&mut self, decision: Decision) -> anyhow::Result<()> {
        self.flush_dead_letters()?;
        let rows = decision.file.as_ref().map_or(0, |file| file.rows.len());
        let ledger = self.parts.get(&decision.partition).expect("decisions come from partitions owned").ledger.clone();
        self.buffered -= rows;
        self.outgoing_rows += rows;
        self.outgoing.push_back(rows);
        self.publisher.send(decision, ledger);
        while self.outgoing_rows > MAX_OUTGOING_ROWS {
            self.published(true)?;
        }
        Ok(())
    }

    /// Takes in what the publisher has done so far, without waiting.
    fn collect_published(&mut self) -> anyhow::Result<()> {
        while self.published(false)? {}
        Ok(())
    }

    /// Waits until every decision sent is published.
    fn wait_published(&mut self) -> anyhow::Result<()> {
        while self.published(true)? {}
        Ok(())
    }

    /// Takes in what became of the oldest decision sent, if it is published (or `wait` for
    /// it): false if none was waiting. A partition another instance took over is given up.
    fn published(&mut self, wait: bool) -> anyhow::Result<bool> {
        if self.outgoing.is_empty() {
            return Ok(false);
        }
        let published = match wait {
            true => self.publisher.next(),
            false => match self.publisher.ready() {
                Some(published) => published,
                None => return Ok(false),
            },
        };
        let rows = self.outgoing.pop_front().expect("a decision was waiting");
        self.outgoing_rows -= rows;
        match published? {
            Published::Done { partition, end, file, superseded, commits } => {
                if let Some(part) = self.parts.get_mut(&partition) {
                    part.done = end;
                }
                if let Some(FileFigures { rows, bytes, late }) = file {
                    self.summary.files += 1;
                    self.summary.rows += rows;
                    self.summary.bytes += bytes;
                    self.summary.late_files += u64::from(late);
                }
                self.summary.superseded += superseded;
                if let Some((total, _)) = &mut self.summary.table {
                    *total += commits;
                }
            }
            Published::Fenced { partition } => {
                if self.remove(partition).is_none() {
                    // Given up already, at an earlier decision of it.
                    return Ok(true);
                }
                self.summary.fenced_writes += 1;
                tracing::warn!(
                    "partition {partition} was taken over by another instance: leaving it (nothing more is written for it here)"
                );
                self.lost.push(partition);
                if self.parts.is_empty() && self.settings.member.is_none() {
                    bail!(
                        "every partition of `{}` was taken over by another instance writing {}: stopping",
                        self.settings.topic,
                        self.summary.destination
                    );
                }
            }
        }
        Ok(true)
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
