//! The Kafka side of the consumer: which offsets to start from, reading every partition,
//! knowing when a bounded run is done, and committing progress to the consumer group.
//!
//! Partitions are assigned explicitly (not through a group rebalance): the checkpoint, not
//! the group, decides where reading starts, as in Spark's file sink. The group still receives
//! commits, so `kafka-consumer-groups` and `weather-consumer status` show the lag.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use weather_common::kafka::{self, KafkaArgs, LoggingContext};

/// Where reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The beginning of every partition.
    Earliest,
    /// The consumer group's committed offsets (the beginning where there are none).
    Committed,
    /// These offsets (from a checkpoint); partitions not listed start at the beginning.
    Offsets(BTreeMap<i32, i64>),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "partition {partition} of `{topic}` no longer holds offsets {resume}..{low} (retention deleted them), so \
         readings would be missed: rebuild with --from-beginning, or pass --allow-data-loss to skip them"
    )]
    DataLoss { topic: String, partition: i32, resume: i64, low: i64 },
    #[error(
        "the checkpoint resumes partition {partition} of `{topic}` at offset {resume}, past its end {high}: the topic \
         was deleted and created again; rebuild with --from-beginning"
    )]
    AheadOfTopic { topic: String, partition: i32, resume: i64, high: i64 },
    #[error(transparent)]
    Topic(#[from] kafka::TopicError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// How far every partition has been read, and how far a bounded run must read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Next offset to read, per partition.
    pub next: BTreeMap<i32, i64>,
    /// For a bounded run: the end of every partition when the run started.
    pub end: Option<BTreeMap<i32, i64>>,
    /// For a bounded run: the partitions not yet read to their end (kept up to date, so
    /// that asking whether the run is done costs nothing per message).
    unfinished: BTreeSet<i32>,
}

impl Progress {
    pub fn new(next: BTreeMap<i32, i64>, end: Option<BTreeMap<i32, i64>>) -> Self {
        let unfinished =
            end.iter().flatten().filter(|&(p, &e)| next.get(p).is_none_or(|&n| n < e)).map(|(&p, _)| p).collect();
        Progress { next, end, unfinished }
    }

    /// False for a record below the partition's next offset: it was read before (a fetch
    /// may start early, see `kafka::fetch_start`), and is skipped.
    pub fn is_new(&self, partition: i32, offset: i64) -> bool {
        self.next.get(&partition).is_none_or(|&next| offset >= next)
    }

    pub fn consumed(&mut self, partition: i32, offset: i64) {
        self.next.insert(partition, offset + 1);
        if self.end.as_ref().and_then(|end| end.get(&partition)).is_some_and(|&e| offset + 1 >= e) {
            self.unfinished.remove(&partition);
        }
    }

    /// The broker says there is nothing more to read in `partition` for now.
    pub fn reached_end(&mut self, partition: i32) {
        self.unfinished.remove(&partition);
    }

    /// A bounded run is done once every partition is read up to its end at start.
    pub fn done(&self) -> bool {
        self.end.is_some() && self.unfinished.is_empty()
    }

    /// Readings left to read in a bounded run.
    pub fn remaining(&self) -> Option<i64> {
        let end = self.end.as_ref()?;
        Some(end.iter().map(|(p, &e)| (e - self.next.get(p).copied().unwrap_or(0)).max(0)).sum())
    }
}

/// How the consumer fetches; the benchmark's consume baseline uses the same.
pub const FETCH_SETTINGS: [(&str, &str); 4] = [
    ("fetch.wait.max.ms", "100"),
    // librdkafka pauses a partition's fetching for this long once its prefetch queue is full
    // (1 s by default): a consumer that does real work per message would then drain the queue
    // and sit idle. Refill it promptly instead.
    ("fetch.queue.backoff.ms", "10"),
    // ... and keep that queue, and each fetch, small: memory must not grow with history. Each
    // fetch response stays in memory until its last message is consumed; 2 MiB fetches halved
    // peak memory on Tansu (94 -> 56 MiB for 1M readings) for about 5% of throughput
    // (weather-bench).
    ("queued.max.messages.kbytes", "8192"),
    ("fetch.max.bytes", "2097152"),
];

pub struct Source {
    consumer: BaseConsumer<LoggingContext>,
    topic: String,
    pub progress: Progress,
}

impl Source {
    /// Connects (retrying while the broker is unreachable), resolves where every partition
    /// starts, and assigns them all.
    pub fn open(
        args: &KafkaArgs,
        group: &str,
        topic: &str,
        start: Start,
        until_end: bool,
        allow_data_loss: bool,
    ) -> Result<Source, SourceError> {
        let mut settings = vec![
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "true"),
        ];
        settings.extend_from_slice(&FETCH_SETTINGS);
        let consumer: BaseConsumer<LoggingContext> =
            args.client_config(&settings).create_with_context(LoggingContext)?;
        // Probing reads records; a separate client keeps them out of the consumer's queue.
        let probe = kafka::metadata_client(args)?;
        let partitions = kafka::partitions(&probe, args, topic)?;
        let watermarks = kafka::watermarks(&probe, topic, &partitions)?;
        let requested: BTreeMap<i32, Option<i64>> = match &start {
            Start::Earliest => partitions.iter().map(|&p| (p, None)).collect(),
            Start::Offsets(offsets) => partitions.iter().map(|&p| (p, offsets.get(&p).copied())).collect(),
            Start::Committed => committed(&consumer, topic, &partitions)?,
        };
        let next = resolve_start(topic, &requested, &watermarks, allow_data_loss)?;
        let mut assignment = TopicPartitionList::new();
        for (&partition, &offset) in &next {
            let from = kafka::fetch_start(&probe, topic, partition, offset, watermarks[&partition])?;
            assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
        }
        drop(probe);
        consumer.assign(&assignment)?;
        let end = until_end.then(|| watermarks.iter().map(|(&p, &(_, high))| (p, high)).collect());
        Ok(Source { consumer, topic: topic.to_string(), progress: Progress::new(next, end) })
    }

    pub fn poll(&self, timeout: Duration) -> Option<KafkaResult<BorrowedMessage<'_>>> {
        self.consumer.poll(timeout)
    }

    /// Tells the consumer group how far the durable output goes (for lag tools).
    pub fn commit(&self, offsets: &BTreeMap<i32, i64>, mode: CommitMode) -> KafkaResult<()> {
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in offsets {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        }
        self.consumer.commit(&list, mode)
    }
}

/// Where each partition starts: the requested offset (`None`: the beginning), checked against
/// what the topic still holds.
pub fn resolve_start(
    topic: &str,
    requested: &BTreeMap<i32, Option<i64>>,
    watermarks: &std::collections::HashMap<i32, (i64, i64)>,
    allow_data_loss: bool,
) -> Result<BTreeMap<i32, i64>, SourceError> {
    let mut next = BTreeMap::new();
    for (&partition, &resume) in requested {
        let (low, high) = watermarks[&partition];
        let offset = match resume {
            None => low,
            Some(resume) if resume > high => {
                return Err(SourceError::AheadOfTopic { topic: topic.into(), partition, resume, high })
            }
            Some(resume) if resume < low && !allow_data_loss => {
                return Err(SourceError::DataLoss { topic: topic.into(), partition, resume, low })
            }
            Some(resume) if resume < low => {
                tracing::warn!(
                    "partition {partition}: offsets {resume}..{low} were deleted by retention; skipping them (--allow-data-loss)"
                );
                low
            }
            Some(resume) => resume,
        };
        next.insert(partition, offset);
    }
    Ok(next)
}

/// The group's committed offset of every partition (`None` where it has none).
pub fn committed(
    consumer: &BaseConsumer<LoggingContext>,
    topic: &str,
    partitions: &[i32],
) -> KafkaResult<BTreeMap<i32, Option<i64>>> {
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10))?;
    Ok(partitions
        .iter()
        .map(|&p| {
            let offset = committed.find_partition(topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            });
            (p, offset)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bounded run is done when every partition reached its end at start, either by
    /// offsets or by the broker saying so; an unbounded run never is.
    #[test]
    fn bounded_runs_end_at_the_start_time_ends() {
        let mut p = Progress::new(BTreeMap::from([(0, 0), (1, 5)]), Some(BTreeMap::from([(0, 3), (1, 5)])));
        assert!(!p.done());
        assert_eq!(p.remaining(), Some(3));
        p.consumed(0, 1);
        assert!(!p.done());
        p.consumed(0, 2);
        assert!(p.done());
        let mut q = Progress::new(BTreeMap::from([(0, 0)]), Some(BTreeMap::from([(0, 10)])));
        q.reached_end(0);
        assert!(q.done());
        assert!(!Progress::new(BTreeMap::from([(0, 9)]), None).done());
    }

    /// A resume point that retention deleted stops the run unless data loss is allowed; one
    /// past the end means the topic was created anew; no resume point means the beginning.
    #[test]
    fn start_offsets_are_checked_against_the_topic() {
        let marks = std::collections::HashMap::from([(0, (100, 500)), (1, (0, 50))]);
        let requested = BTreeMap::from([(0, Some(40)), (1, None)]);
        let err = resolve_start("weather", &requested, &marks, false).unwrap_err().to_string();
        assert!(
            err.contains("--from-beginning") && err.contains("--allow-data-loss") && err.contains("40..100"),
            "{err}"
        );
        assert_eq!(resolve_start("weather", &requested, &marks, true).unwrap(), BTreeMap::from([(0, 100), (1, 0)]));
        let ahead = BTreeMap::from([(0, Some(200)), (1, Some(51))]);
        let err = resolve_start("weather", &ahead, &marks, true).unwrap_err().to_string();
        assert!(err.contains("created again") && err.contains("--from-beginning"), "{err}");
        let fine = BTreeMap::from([(0, Some(500)), (1, Some(7))]);
        assert_eq!(resolve_start("weather", &fine, &marks, false).unwrap(), BTreeMap::from([(0, 500), (1, 7)]));
    }

    /// Records below a partition's next offset were read before and are not new.
    #[test]
    fn records_before_the_next_offset_are_not_new() {
        let mut p = Progress::new(BTreeMap::from([(0, 100)]), None);
        assert!(!p.is_new(0, 99));
        assert!(p.is_new(0, 100));
        p.consumed(0, 100);
        assert!(!p.is_new(0, 100));
        assert!(p.is_new(1, 0), "a partition not yet seen starts anywhere");
    }
}
