//! The consumer's loop: readings in from Kafka, finished windows out to the file and the
//! window tables, and progress made durable in checkpoints (the tables' commits first, then
//! the file's checkpoint: see [`crate::sink::table`]).
//!
//! It runs on a thread of its own, takes librdkafka's fetched messages a batch at a time
//! ([`weather_common::fetch`], the fastest way to drain librdkafka) and checks the stop flag
//! between messages. A checkpoint is taken when readings stop arriving (nothing for a poll's
//! timeout) or every checkpoint interval while they keep coming, and once more at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use weather_common::meter::{counted, thousands, Meter, Span};
use weather_common::shutdown::Stop;
use weather_common::Reading;

use crate::checkpoint::{Checkpoint, Mark, HISTORY};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::sink::file::OutputFile;
use crate::sink::s3::{Announcer, UploadReport};
use crate::sink::table::{Commit, Table};
use crate::sink::RowFormat;
use crate::window::{Outcome, WindowSummary};
use weather_common::dead_letter::{self, DeadLetters};
use weather_common::fetch::Record;
use weather_common::position::now_ms;
use weather_common::source::{Admit, Progress, Source};

const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const DEAD_LETTER_FLUSH: Duration = Duration::from_secs(10);
/// Reading the clock for every message costs more than the message: look every so often.
const CLOCK_EVERY: u64 = 256;
/// Readings between two marks at the least: a short replay of a few thousand readings can
/// still be rolled back to within a few weeks.
const MIN_MARK_SPACING: u64 = 64;

/// What a consumer run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub readings: u64,
    pub windows_written: u64,
    pub partial_windows: u64,
    /// Readings kept aside in the dead-letter topic, by category.
    pub rejected: BTreeMap<&'static str, u64>,
    pub dead_letter_topic: String,
    pub checkpoints: u64,
    /// Next offset per partition, as committed.
    pub offsets: BTreeMap<i32, i64>,
    /// The output file; none with `--no-file`.
    pub output: Option<PathBuf>,
    pub output_len: u64,
    /// Each window table and the windows sent to it in this run.
    pub tables: Vec<(String, u64)>,
    pub uploads: Option<UploadReport>,
    /// In a shared group: partitions whose commit was refused because another member had
    /// taken them over.
    pub fenced_writes: u64,
    /// From the first reading to the last (see [`Span`]).
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 { self.readings as f64 / seconds } else { 0.0 };
        writeln!(
            f,
            "readings consumed:  {} in {seconds:.1} s ({}/s)",
            thousands(self.readings),
            thousands(rate as u64)
        )?;
        writeln!(
            f,
            "windows written:    {} complete, {} partial",
            thousands(self.windows_written),
            thousands(self.partial_windows)
        )?;
        writeln!(f, "{}", dead_letter::summary_line(&self.rejected, &self.dead_letter_topic))?;
        let offsets: Vec<String> = self.offsets.iter().map(|(p, o)| format!("{p}:{o}")).collect();
        writeln!(f, "offsets committed:  {}", offsets.join(" "))?;
        match &self.output {
            Some(output) => writeln!(
                f,
                "output:             {} ({}, {})",
                output.display(),
                counted(self.output_len, "byte"),
                counted(self.checkpoints, "checkpoint")
            )?,
            None => writeln!(f, "output:             no file ({})", counted(self.checkpoints, "checkpoint"))?,
        }
        for (table, windows) in &self.tables {
            writeln!(f, "table:              {table} ({} sent)", counted(*windows, "window"))?;
        }
        if self.fenced_writes > 0 {
            writeln!(f, "fenced writes:      {} (taken over by another member)", thousands(self.fenced_writes))?;
        }
        if let Some(u) = &self.uploads {
            write!(
                f,
                "uploads:            {} ({})",
                thousands(u.uploads),
                counted(u.failed_attempts, "failed attempt")
            )?;
            if u.behind {
                write!(f, ", BEHIND the local file")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Everything the loop owns: where readings come from, and what they go into.
pub struct Pipeline {
    pub(crate) source: Source,
    pub(crate) writer: Writer,
}

/// The output side of a run: the windows, the file and the tables they are written to, the
/// checkpoint that ties them to the offsets read, and the dead letters.
pub struct Writer {
    pub(crate) settings: Settings,
    /// The state of the output; saved beside the file, or (without one) by the table.
    pub(crate) checkpoint: Checkpoint,
    pub(crate) progress: Progress,
    /// None with `--no-file`.
    pub(crate) output: Option<OutputFile>,
    pub(crate) tables: Vec<Table>,
    pub(crate) format: Box<dyn RowFormat>,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) uploads: Option<Announcer>,
    pub(crate) metrics: Metrics,
}

/// Whether a checkpoint carries the run's partial windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partials {
    /// None: the run goes on, or ends without `--emit-partial`.
    Kept,
    /// The run's end wrote its incomplete windows (`--emit-partial`): the tables note it.
    Written,
}

/// What became of one message.
enum Taken {
    /// A reading of this run: counted, kept aside, or the last of a window written.
    Read,
    /// Read before (a re-delivery after a rebalance or a seek): nothing to do.
    Again,
    /// Past this run's bound: its partition is done.
    Beyond,
}

impl Pipeline {
    /// Consumes until the bounded run is done or a stop is requested, then makes everything
    /// durable and reports.
    pub fn run(mut self, stop: &Stop) -> anyhow::Result<Summary> {
        let mut span = Span::default();
        let writer = &mut self.writer;
        let mut summary = Summary {
            dead_letter_topic: writer.dead_letters.topic().to_string(),
            output: writer.output.as_ref().map(|o| o.path().to_path_buf()),
            ..Summary::default()
        };
        let mut dirty = false;
        let mut last_checkpoint = Instant::now();
        let total = writer.progress.remaining().map(|r| r as u64);
        let mut meter = Meter::new(writer.settings.progress.display(), "readings", total);
        let mut paused = BTreeSet::new();
        let mut next_mark = MIN_MARK_SPACING;
        while !stop.requested() && !writer.progress.done() {
            // Nothing arrived for a while: the time to make progress durable at once. The end of
            // one partition is not: during a replay the others are still being read, and a
            // checkpoint (three fsyncs) per partition end would cost more than the reading.
            let mut idle = false;
            match self.source.poll(POLL_TIMEOUT) {
                None => idle = true,
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    writer.progress.reached_end(partition, now_ms());
                }
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(anyhow::Error::new(e).context("reading the topic"));
                }
                Some(Err(e)) => {
                    weather_common::kafka::warn_consuming(&e);
                    idle = true;
                }
                Some(Ok(message)) => match writer.take(&message, &mut summary)? {
                    Taken::Read => {
                        dirty = true;
                        span.read();
                        if summary.readings.is_multiple_of(CLOCK_EVERY) {
                            span.taken();
                            writer.metrics.read(message.partition(), message.timestamp());
                        }
                        if summary.readings >= next_mark {
                            next_mark = summary.readings.saturating_add(writer.take_mark());
                        }
                    }
                    Taken::Again => continue,
                    Taken::Beyond => {
                        if paused.insert(message.partition()) {
                            self.source.pause(message.partition());
                        }
                        continue;
                    }
                },
            }
            if !idle && !summary.readings.is_multiple_of(CLOCK_EVERY) {
                continue;
            }
            if idle {
                writer.progress.tick(now_ms());
            }
            // A rebuilt table is made visible at the first checkpoint after the run has caught
            // up, even if nothing was read since the last one.
            let swap_due = idle && writer.tables.iter().any(Table::rebuilding) && writer.progress.caught_up();
            if (dirty || swap_due)
                && (idle || last_checkpoint.elapsed() >= writer.settings.checkpoint_interval)
                && writer.checkpoint(&self.source, &mut summary, Partials::Kept)?
            {
                dirty = false;
                last_checkpoint = Instant::now();
            }
            meter.update(summary.readings, || format!("{} written", counted(summary.windows_written, "window")));
            writer.publish(&summary);
        }
        if writer.progress.done() {
            // A bounded run ends at its last reading; a stopped one at the last noted.
            span.taken();
        }
        meter.finish();
        writer.finish(&self.source, &mut summary)?;
        summary.elapsed = span.elapsed();
        Ok(summary)
    }
}

impl Writer {
    /// Takes one message in: admitted by the run's bounds, then parsed and counted into its
    /// window, which is written once complete; a reading that cannot count is kept aside.
    fn take(&mut self, message: &Record<'_>, summary: &mut Summary) -> anyhow::Result<Taken> {
        let (partition, offset) = (message.partition(), message.offset());
        match self.progress.admit(partition, offset, || message.timestamp()) {
            Admit::New => {}
            Admit::Old => return Ok(Taken::Again),
            Admit::Beyond => return Ok(Taken::Beyond),
        }
        match Reading::parse(message.payload(), message.key()) {
            Ok(reading) => match self.checkpoint.windows.add(&reading) {
                Outcome::Counted => {
                    // A table ahead of the file notes the windows that have a reading it lacks.
                    if self.tables.iter().any(Table::catching_up) {
                        let window_id = self.checkpoint.windows.size().id_of(reading.record_id);
                        for table in &mut self.tables {
                            table.counted(&reading.sensor_id, window_id, partition, offset);
                        }
                    }
                }
                Outcome::Finished(window) => {
                    if let Some(output) = &mut self.output {
                        check_single_sensor(&self.settings, &self.checkpoint)?;
                        append(output, &mut *self.format, &window)?;
                    }
                    for table in &mut self.tables {
                        table.finished(&window, partition, offset)?;
                    }
                    summary.windows_written += 1;
                }
                rejected @ (Outcome::Duplicate | Outcome::Late) => {
                    let (category, reason) = rejected.rejection(&reading).expect("a rejection");
                    self.dead_letters.keep(message.into(), category, &reason)?;
                }
            },
            Err(bad) => self.dead_letters.keep(message.into(), bad.category(), &bad.to_string())?,
        }
        self.progress.consumed(partition, offset);
        summary.readings += 1;
        Ok(Taken::Read)
    }

    /// Makes progress durable: dead letters acknowledged, output fsynced, then each table's
    /// rows and progress committed, then the checkpoint replaced, then the group told. A crash
    /// in between leaves the tables ahead of the file, never behind. False if dead letters are
    /// not acknowledged yet.
    fn checkpoint(&mut self, source: &Source, summary: &mut Summary, partials: Partials) -> anyhow::Result<bool> {
        let started = Instant::now();
        if !self.dead_letters.flush(DEAD_LETTER_FLUSH)? {
            tracing::warn!("dead letters not yet acknowledged; checkpoint postponed");
            return Ok(false);
        }
        if let Some(output) = &mut self.output {
            self.checkpoint.output_len =
                output.sync().with_context(|| format!("writing {}", output.path().display()))?;
        }
        self.checkpoint.offsets = self.progress.next();
        let commit = Commit {
            offsets: &self.checkpoint.offsets,
            windows: self.output.is_none().then_some(&self.checkpoint.windows),
            caught_up: self.progress.caught_up(),
            partial: partials == Partials::Written,
        };
        for table in &mut self.tables {
            table.commit(commit)?;
        }
        if let Some(output) = &self.output {
            self.checkpoint.remember();
            self.checkpoint
                .save(output.path())
                .with_context(|| format!("saving the checkpoint beside {}", output.path().display()))?;
        }
        summary.checkpoints += 1;
        self.publish(summary);
        self.metrics.checkpoint(summary, &self.checkpoint.offsets, started.elapsed());
        if let Some(uploads) = &self.uploads {
            uploads.announce(self.checkpoint.output_len);
        }
        if let Err(e) = source.commit(&self.checkpoint.offsets, CommitMode::Async) {
            tracing::debug!("commit to the consumer group failed: {e}");
        }
        Ok(true)
    }

    /// The end of a run: the incomplete windows if asked for, a last checkpoint and a
    /// synchronous commit, and the summary's final figures.
    fn finish(&mut self, source: &Source, summary: &mut Summary) -> anyhow::Result<()> {
        let partials = if self.settings.emit_partial { Partials::Written } else { Partials::Kept };
        if partials == Partials::Written {
            for window in self.checkpoint.windows.drain_partial() {
                if let Some(output) = &mut self.output {
                    append(output, &mut *self.format, &window)?;
                }
                for table in &mut self.tables {
                    table.partial(&window)?;
                }
                summary.partial_windows += 1;
            }
        }
        if !self.checkpoint(source, summary, partials)? {
            bail!(
                "rejected readings could not be kept aside in `{}`: progress stays at the last checkpoint",
                self.dead_letters.topic()
            );
        }
        if let Err(e) = source.commit(&self.checkpoint.offsets, CommitMode::Sync) {
            tracing::warn!("final commit to the consumer group failed: {e} (the checkpoint holds the progress)");
        }
        summary.rejected = self.dead_letters.counts().clone();
        summary.offsets = self.checkpoint.offsets.clone();
        summary.output_len = self.checkpoint.output_len;
        summary.tables = self.tables.iter().map(|t| (t.name().to_string(), t.windows_sent)).collect();
        self.publish(summary);
        Ok(())
    }

    /// Publishes the figures so far to the metrics, and that the loop is alive.
    fn publish(&self, summary: &Summary) {
        let file = self.output.as_ref().map(|_| ("file", summary.windows_written + summary.partial_windows));
        let tables = self.tables.iter().map(|t| (t.kind(), t.windows_sent));
        let sent: Vec<(&'static str, u64)> = file.into_iter().chain(tables).collect();
        self.metrics.publish(summary, self.dead_letters.counts(), &sent);
        weather_common::metrics::health_of_job().alive();
    }

    /// Remembers the state now as a mark to roll back to (saved with the next checkpoint), and
    /// says how many readings to consume before the next one: marks are taken as often as the
    /// history can keep them spread over the topic, so that `--start time:` keeps all but a
    /// few percent of the output even after a single short run.
    fn take_mark(&mut self) -> u64 {
        if self.output.is_none() {
            // Marks roll a file back; a table alone has none.
            return u64::MAX;
        }
        let mark = Mark {
            output_len: self.output.as_ref().map_or(0, OutputFile::len),
            offsets: self.progress.next(),
            windows: self.checkpoint.windows.clone(),
        };
        let spacing = (mark.position().max(0) as u64 / HISTORY as u64).max(MIN_MARK_SPACING);
        self.checkpoint.remember_mark(mark);
        spacing
    }
}

/// Without a sensor column, rows of two sensors could not be told apart in the file.
fn check_single_sensor(settings: &Settings, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    if settings.rules.sensor_column {
        return Ok(());
    }
    if checkpoint.windows.sensor_count() > 1 {
        let sensors: Vec<String> = checkpoint.windows.sensors().take(3).collect();
        bail!(
            "the topic carries more than one sensor ({}, ...): rerun with --sensor-column --from-beginning so that \
             every row says which sensor it belongs to",
            sensors.join(", ")
        );
    }
    Ok(())
}

/// Appends the row of a finished window to the output (buffered; durable at the next
/// checkpoint).
fn append(output: &mut OutputFile, format: &mut dyn RowFormat, window: &WindowSummary) -> anyhow::Result<()> {
    output.write_all(format.row(window)).context("writing the output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Format;
    use crate::sink::{row_format, rules, week};
    use crate::units::Unit;
    use crate::window::WindowSize;

    fn summary() -> Summary {
        Summary {
            readings: 1500,
            windows_written: 214,
            partial_windows: 1,
            dead_letter_topic: "weather.dlq".into(),
            checkpoints: 3,
            offsets: BTreeMap::from([(0, 700), (2, 800)]),
            output: Some(PathBuf::from("out.csv")),
            output_len: 4096,
            elapsed: Duration::from_secs(2),
            ..Summary::default()
        }
    }

    /// The summary says what the run did, one line each, with the rate.
    #[test]
    fn the_summary_reports_every_count() {
        let text = summary().to_string();
        assert_eq!(
            text,
            "readings consumed:  1,500 in 2.0 s (750/s)\n\
             windows written:    214 complete, 1 partial\n\
             readings rejected:  0\n\
             offsets committed:  0:700 2:800\n\
             output:             out.csv (4,096 bytes, 3 checkpoints)\n"
        );
    }

    /// Rejections are listed by category with the topic that keeps them; uploads that fell
    /// behind say so.
    #[test]
    fn the_summary_reports_rejections_and_uploads_behind() {
        let mut s = summary();
        s.rejected = BTreeMap::from([("duplicate", 2), ("not-json", 1)]);
        s.uploads = Some(UploadReport { uploads: 4, failed_attempts: 2, behind: true, ..UploadReport::default() });
        s.elapsed = Duration::ZERO;
        let text = s.to_string();
        assert!(text.starts_with("readings consumed:  1,500 in 0.0 s (0/s)\n"), "{text}");
        assert!(text.contains("readings rejected:  3 (duplicate 2, not-json 1), kept in `weather.dlq`\n"), "{text}");
        assert!(text.ends_with("uploads:            4 (2 failed attempts), BEHIND the local file\n"), "{text}");
    }

    /// A finished window goes through the output's buffer as its row: durable at the next sync.
    #[test]
    fn append_writes_the_window_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut output = OutputFile::open(&path, 0).unwrap();
        let mut format = row_format(&rules(WindowSize::WEEK, Unit::Celsius, Format::Csv, true));
        append(&mut output, &mut *format, &week("sensor-1", 1, 7 * 203, 7 * 700, 7 * 55)).unwrap();
        append(&mut output, &mut *format, &week("sensor-2", 1, -7 * 15, 7 * 60, 7)).unwrap();
        assert_eq!(output.sync().unwrap(), std::fs::metadata(&path).unwrap().len());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "sensor-1,1,20.3,700,55\nsensor-2,1,-1.5,60,1\n");
    }
}
