//! Reading the aggregates topic from its beginning to the end every partition has when the
//! run starts, as fast as the broker serves it: one consumer assigned every partition, polled
//! on this thread with the consumer's fetch settings (`common::source`), each record handed over as borrowed bytes.
//!
//! Only committed records are read (`isolation.level=read_committed`): a topic sink that
//! writes in transactions never shows an aborted or unfinished transaction's records here.
//!
//! Not `common::source` (issue 22 asked): its `Source` reads every record, committed or not,
//! and this loop needs the consumer's position at a partition's end to say where committed
//! records stop. Taking the records in batches (`common::fetch`) was tried: the position it
//! leaves at a partition's end is past an unfinished transaction's first record (the report
//! test of an unfinished transaction fails), so the plain poll stays.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use weather_common::kafka::{self, KafkaArgs, LoggingContext};
use weather_common::meter::{counted, Display, Meter, Span};
use weather_common::shutdown::Stop;

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
    // The log's end, unfinished transactions included: a read_committed look-up answers their
    // start instead (Tansu 0.6 answers the beginning of the partition), which would hide them
    // from the report's account of what it could not read.
    let probe = kafka::metadata_client_seeing_everything(args)?;
    let partitions = kafka::partitions_unless(&probe, args, topic, stop)?;
    // Confirmed ends: Tansu lists the last batch's start as a partition's end.
    let marks = kafka::watermarks(&probe, topic, &partitions)?;
    drop(probe);
    let mut settings = vec![("isolation.level", "read_committed")];
    settings.extend_from_slice(&weather_common::source::FETCH_SETTINGS);
    // Never commits: the report keeps no progress, it reads the whole table every time.
    let consumer: BaseConsumer<LoggingContext> =
        args.consumer_config("weather-report", &settings).create_with_context(LoggingContext)?;

    // By partition: the end to read up to; a partition is removed once it is read.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for (&partition, &(low, high)) in &marks {
        if high > low {
            // From the first record on: a fetch from the low watermark starts where Tansu's
            // first batch does, so no step back is needed (see kafka::fetch_start).
            assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
            ends.insert(partition, high);
        }
    }
    let total: i64 = marks.values().map(|&(low, high)| high - low).sum();
    let mut read = Read { partitions: partitions.len(), ..Read::default() };
    if ends.is_empty() {
        return Ok(read);
    }
    consumer.assign(&assignment)?;
    let mut meter = Meter::new(display, "records", Some(total as u64));
    let mut span = Span::default();
    // Since when no record came, by the count of records then: the clock is read only when a
    // poll comes back empty, never per record.
    let mut quiet = (0, Instant::now());
    let done = |ends: &mut BTreeMap<i32, i64>, partition: i32| {
        if ends.remove(&partition).is_some() {
            // Records written after the start are not this run's: stop fetching them.
            kafka::pause(&consumer, topic, partition);
        }
    };
    while !ends.is_empty() {
        if stop.requested() {
            bail!("stopped after {} of `{topic}`: nothing written", counted(read.records, "record"));
        }
        match consumer.poll(POLL_TIMEOUT) {
            Some(Ok(m)) => {
                span.read();
                let partition = m.partition();
                let Some(&end) = ends.get(&partition) else { continue };
                if m.offset() < end {
                    visit(partition, m.offset(), m.key(), m.payload());
                    read.records += 1;
                }
                if m.offset() + 1 >= end {
                    done(&mut ends, partition);
                }
                if read.records.is_multiple_of(256) {
                    span.taken();
                    meter.update(read.records, String::new);
                }
            }
            // At its end: with read_committed, control records and aborted transactions may
            // end a partition without a record at its last offset, and an unfinished
            // transaction ends it early (at the last stable offset).
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if let Some(&end) = ends.get(&partition) {
                    let stable = position(&consumer, topic, partition).unwrap_or(end);
                    if stable < end {
                        read.unfinished.push((partition, stable, end));
                    }
                }
                done(&mut ends, partition)
            }
            Some(Err(e)) => tracing::warn!("reading `{topic}`: {e}"),
            None if quiet.0 != read.records => quiet = (read.records, Instant::now()),
            None if quiet.1.elapsed() > STALL => {
                let waiting: Vec<String> = ends.keys().map(i32::to_string).collect();
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

/// The consumer's position in `partition`: the offset it would fetch next.
fn position(consumer: &BaseConsumer<LoggingContext>, topic: &str, partition: i32) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}
