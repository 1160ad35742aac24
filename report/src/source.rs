//! Reading the aggregates topic from its beginning to the end every partition has when the
//! run starts, as the consumer reads the readings: `weather_common::source` (a [`TopicView`],
//! a [`Source`] taking librdkafka's messages in batches with the consumer's fetch settings,
//! [`Progress`] deciding when each partition is read), each record handed over as borrowed
//! bytes.
//!
//! Only committed records are read (`isolation.level=read_committed`): a topic sink that
//! writes in transactions never shows an aborted or unfinished transaction's records here.
//! The ends read up to are the logs' ends, unfinished transactions included; a partition whose
//! committed records stop before that end is named with the offsets it could not read.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use weather_common::kafka::{self, KafkaArgs};
use weather_common::meter::{counted, Display, Meter, Span};
use weather_common::position::{now_ms, Until};
use weather_common::shutdown::Stop;
use weather_common::source::{Admit, Progress, Source, TopicView};

/// The report's consumer group: named because librdkafka wants one; nothing is committed (the
/// report keeps no progress, it reads the whole table every time).
pub const GROUP: &str = "weather-report";

/// How the topic was read.
#[derive(Debug, Clone, Default)]
pub struct Read {
    pub partitions: usize,
    /// Records read (tombstones and bad records included).
    pub records: u64,
    /// From the first record to the last (see [`Span`]).
    pub elapsed: Duration,
    /// Partitions whose committed records ended before their end: (partition, where the
    /// committed records end, the partition's end). The rest is a transaction not finished
    /// (yet), which read_committed readers do not see.
    pub unfinished: Vec<(i32, i64, i64)>,
}

/// A partition that sends nothing for this long, before its end, fails the run.
const STALL: Duration = Duration::from_secs(30);
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Calls `visit(partition, offset, key, value)` for every committed record of `topic` below
/// the end each partition has now, partition by partition in offset order.
pub fn read_to_end(
    args: &KafkaArgs,
    topic: &str,
    display: Display,
    stop: &Stop,
    mut visit: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>),
) -> anyhow::Result<Read> {
    // The ends of the logs, unfinished transactions included, so that the report can say
    // what it could not read. Confirmed ends: Tansu lists the last batch's start as the end.
    let view = TopicView::look_up_whole_logs(args, topic, stop)?;
    let mut read = Read { partitions: view.partitions.len(), ..Read::default() };
    // From the first record of every partition that has one.
    let from: BTreeMap<i32, i64> =
        view.watermarks.iter().filter(|(_, &(low, high))| high > low).map(|(&p, &(low, _))| (p, low)).collect();
    if from.is_empty() {
        return Ok(read);
    }
    let ends: BTreeMap<i32, Option<i64>> =
        view.ends(Until::End)?.into_iter().flatten().filter(|(p, _)| from.contains_key(p)).collect();
    let mut progress = Progress::new(from.clone(), Some(ends.clone()), None);
    let total = progress.remaining().unwrap_or(0);
    let source = Source::open(args, GROUP, view, &from)?;
    let mut meter = Meter::new(display, "records", Some(total as u64));
    let mut span = Span::default();
    // Since when no record came, by the count of records then: the clock is read only when a
    // poll comes back empty, never per record.
    let mut quiet = (0, Instant::now());
    let mut paused = BTreeSet::new();
    while !progress.done() {
        if stop.requested() {
            bail!("stopped after {} of `{topic}`: nothing written", counted(read.records, "record"));
        }
        match source.poll(POLL_TIMEOUT) {
            Some(Ok(m)) => {
                span.read();
                let (partition, offset) = (m.partition(), m.offset());
                match progress.admit(partition, offset, || None) {
                    Admit::New => {
                        visit(partition, offset, m.key(), m.payload());
                        progress.consumed(partition, offset);
                        read.records += 1;
                        if read.records.is_multiple_of(256) {
                            span.taken();
                            meter.update(read.records, String::new);
                        }
                    }
                    Admit::Old => {}
                    // Records written after the start are not this run's: stop fetching them.
                    Admit::Beyond => {
                        if paused.insert(partition) {
                            source.pause(partition);
                        }
                    }
                }
            }
            // At its end: with read_committed, control records and aborted transactions may
            // end a partition without a record at its last offset, and an unfinished
            // transaction ends it early, where the committed records stop.
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let end = ends.get(&partition).copied().flatten();
                let stable = source.end_of(partition);
                if let (Some(end), Some(stable)) = (end, stable) {
                    let named = read.unfinished.iter().any(|&(p, _, _)| p == partition);
                    if stable < end && !named {
                        read.unfinished.push((partition, stable, end));
                    }
                }
                progress.reached_end(partition, now_ms());
            }
            Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                return Err(anyhow::Error::new(e).context(format!("reading `{topic}`")));
            }
            Some(Err(e)) => kafka::warn_consuming(&e),
            None if quiet.0 != read.records => quiet = (read.records, Instant::now()),
            None if quiet.1.elapsed() > STALL => {
                let waiting: Vec<String> = progress.unfinished().map(|p| p.to_string()).collect();
                bail!(
                    "partitions {} of `{topic}` sent nothing for {} s before their end (after {} of {total}); is the \
                     broker at {} up?",
                    waiting.join(", "),
                    STALL.as_secs(),
                    counted(read.records, "record"),
                    args.bootstrap_servers
                );
            }
            None => meter.update(read.records, String::new),
        }
    }
    span.taken();
    read.elapsed = span.elapsed();
    meter.finish();
    Ok(read)
}

/// The broker's topics, for a hint; none if it cannot say.
pub fn topics(args: &KafkaArgs) -> Vec<String> {
    let listed = kafka::metadata_client(args).and_then(|client| client.fetch_metadata(None, Duration::from_secs(5)));
    match listed {
        Ok(metadata) => metadata.topics().iter().map(|t| t.name().to_string()).collect(),
        Err(e) => {
            tracing::debug!("listing the broker's topics: {e}");
            Vec::new()
        }
    }
}
