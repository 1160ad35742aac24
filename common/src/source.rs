//! The Kafka side of a job that reads the topic: the topic's offsets and where a run starts
//! in them, reading every partition fast (with the Tansu work-arounds of [`crate::kafka`]),
//! knowing when a bounded run is done, and committing progress to the consumer group.
//!
//! [`Source`] assigns partitions explicitly (not through a group rebalance): the job's own
//! state, not the group, decides where reading starts, as in Spark's file sink. The group still
//! receives commits, so `kafka-consumer-groups` and `weather-consumer status` show the lag.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::fetch::{Fetcher, Record};
use crate::kafka::{self, KafkaArgs, LoggingContext};
use crate::position::{Start, Until};
use crate::shutdown::Stop;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

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
    #[error("--start offset: {0}")]
    BadOffset(String),
    #[error(transparent)]
    Topic(#[from] kafka::TopicError),
    #[error("Kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// How far every partition has been read, and how far a bounded run must read. Looked at
/// for every record, so kept in vectors indexed by partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Next offset to read, by partition (`None`: not read).
    next: Vec<Option<i64>>,
    /// For a bounded run: where each partition ends (`None`: at its first reading stamped at
    /// or after `until_time`, which becomes its end once met, or at its end once that time has
    /// passed).
    end: Option<Vec<Option<i64>>>,
    until_time: Option<i64>,
    /// For a bounded run: the partitions not yet read to their end (kept up to date, so
    /// that asking whether the run is done costs nothing per record).
    unfinished: BTreeSet<i32>,
    /// By partition: its last news was "nothing more for now".
    at_end: Vec<bool>,
}

/// What to do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Read it.
    New,
    /// It was read before (a fetch may start early, see `kafka::fetch_start`): skip it.
    Old,
    /// It lies past the end of a bounded run: leave it, and the partition is done.
    Beyond,
}

impl Progress {
    pub fn new(next: BTreeMap<i32, i64>, end: Option<BTreeMap<i32, Option<i64>>>, until_time: Option<i64>) -> Self {
        let unfinished = end
            .iter()
            .flatten()
            .filter(|&(p, &e)| e.is_none_or(|e| next.get(p).is_none_or(|&n| n < e)))
            .map(|(&p, _)| p)
            .collect();
        Progress {
            next: by_partition(&next),
            end: end.as_ref().map(|end| by_partition(end).into_iter().map(Option::flatten).collect()),
            until_time,
            unfinished,
            at_end: Vec::new(),
        }
    }

    /// Reading of `partition` (newly assigned by the group) starts at `next`; a bounded run now
    /// waits for it to reach its end.
    pub fn assign(&mut self, partition: i32, next: i64) {
        let index = partition as usize;
        if index >= self.next.len() {
            self.next.resize(index + 1, None);
        }
        self.next[index] = Some(next);
        if let Some(at_end) = self.at_end.get_mut(index) {
            *at_end = false;
        }
        let end = self.end.as_ref().map(|end| end.get(index).copied().flatten());
        match end {
            Some(end) if end.is_none_or(|e| next < e) => self.unfinished.insert(partition),
            _ => self.unfinished.remove(&partition),
        };
    }

    /// `partition` is no longer read here (the group gave it to another member).
    pub fn revoke(&mut self, partition: i32) {
        if let Some(next) = self.next.get_mut(partition as usize) {
            *next = None;
        }
        self.unfinished.remove(&partition);
    }

    /// Next offset to read, per partition read.
    pub fn next(&self) -> BTreeMap<i32, i64> {
        self.next.iter().enumerate().filter_map(|(p, &n)| Some((p as i32, n?))).collect()
    }

    /// Decides about a record of `partition` at `offset`; `timestamp` (ms) is asked for only
    /// when the run is bounded by time.
    pub fn admit(&mut self, partition: i32, offset: i64, timestamp: impl FnOnce() -> Option<i64>) -> Admit {
        let index = partition as usize;
        if self.next.get(index).copied().flatten().is_some_and(|next| offset < next) {
            return Admit::Old;
        }
        if let Some(end) = &mut self.end {
            let past_end = end.get(index).copied().flatten().is_some_and(|e| offset >= e);
            let past_time = || self.until_time.is_some_and(|until| timestamp().is_some_and(|t| t >= until));
            if past_end || past_time() {
                // The partition ends here: what follows is beyond the bound too, even a record
                // stamped earlier (records already fetched still arrive after the pause).
                if let Some(e) = end.get_mut(index) {
                    *e = Some(e.map_or(offset, |e| e.min(offset)));
                }
                self.unfinished.remove(&partition);
                return Admit::Beyond;
            }
        }
        if let Some(at_end) = self.at_end.get_mut(index) {
            *at_end = false;
        }
        Admit::New
    }

    pub fn consumed(&mut self, partition: i32, offset: i64) {
        let index = partition as usize;
        if index >= self.next.len() {
            self.next.resize(index + 1, None);
        }
        self.next[index] = Some(offset + 1);
        if self.end.as_ref().and_then(|end| end.get(index).copied().flatten()).is_some_and(|e| offset + 1 >= e) {
            self.unfinished.remove(&partition);
        }
    }

    /// The broker says there is nothing more to read in `partition` for now (`now` in ms).
    pub fn reached_end(&mut self, partition: i32, now: i64) {
        let index = partition as usize;
        if index >= self.at_end.len() {
            self.at_end.resize(index + 1, false);
        }
        self.at_end[index] = true;
        self.tick(now);
    }

    /// Ends the partitions of a run bounded by time that sit at their end once the time has
    /// passed; without a time bound, reaching the end is enough.
    pub fn tick(&mut self, now: i64) {
        if self.until_time.is_none_or(|until| now >= until) {
            for (p, _) in self.at_end.iter().enumerate().filter(|&(_, &at_end)| at_end) {
                self.unfinished.remove(&(p as i32));
            }
        }
    }

    /// True if the run has read everything there is to read now: its bound, or the end of
    /// every partition it reads (a rebuild of a window table can then be made visible).
    pub fn caught_up(&self) -> bool {
        let reading = self.next.iter().enumerate().filter(|(_, n)| n.is_some()).map(|(p, _)| p);
        self.done()
            || reading.clone().next().is_some() && reading.into_iter().all(|p| self.at_end.get(p) == Some(&true))
    }

    /// For a bounded run, the partitions not yet read to their end.
    pub fn unfinished(&self) -> impl Iterator<Item = i32> + '_ {
        self.unfinished.iter().copied()
    }

    /// A bounded run is done once every partition is read up to its end.
    pub fn done(&self) -> bool {
        self.end.is_some() && self.unfinished.is_empty()
    }

    /// Readings left to read up to the ends known now (`None` for a run that follows the topic).
    pub fn remaining(&self) -> Option<i64> {
        let end = self.end.as_ref()?;
        let next = |p: usize| self.next.get(p).copied().flatten().unwrap_or(0);
        Some(end.iter().enumerate().filter_map(|(p, &e)| Some((e? - next(p)).max(0))).sum())
    }
}

/// A map by partition as a vector indexed by partition.
fn by_partition<T: Copy>(map: &BTreeMap<i32, T>) -> Vec<Option<T>> {
    let len = map.keys().next_back().map_or(0, |&p| p as usize + 1);
    let mut v = vec![None; len];
    for (&p, &value) in map {
        v[p as usize] = Some(value);
    }
    v
}

/// Where each partition starts: the requested offset (`None`: the beginning), checked against
/// what the topic still holds.
pub fn start_offsets(
    topic: &str,
    requested: &BTreeMap<i32, Option<i64>>,
    watermarks: &HashMap<i32, (i64, i64)>,
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

/// How the consumer fetches; the benchmark's consume baseline uses the same.
pub const FETCH_SETTINGS: [(&str, &str); 4] = [
    ("fetch.wait.max.ms", "100"),
    // librdkafka pauses a partition's fetching for this long once its prefetch queue is full
    // (1 s by default): a consumer that does real work per message would then drain the queue
    // and sit idle. Refill it at once instead.
    ("fetch.queue.backoff.ms", "1"),
    // ... and keep that queue, and each fetch, small: memory must not grow with history. Each
    // fetch response stays in memory until its last message is consumed (2 MiB fetches halved
    // the peak on Tansu, 94 -> 56 MiB for 1M readings), and a queued reading of 100 bytes
    // costs librdkafka several hundred. Measured with weather-bench (peak memory of a replay
    // of 1M readings on the mock cluster, replay against baseline on Tansu): with glibc's
    // malloc an 8 MiB queue peaked at 56-64 MiB, 6 MiB at 46-51 MiB with the same rate. With
    // mimalloc (crate::allocator), which keeps freed memory for a while, 6 MiB peaked at 59-86
    // MiB on the mock cluster and 2 MiB at 47-51 MiB; on Tansu 56-57 MiB either way.
    ("queued.max.messages.kbytes", "2048"),
    ("fetch.max.bytes", "2097152"),
];

/// The topic as it is when a run starts: its partitions and their offsets, and a client to
/// look up positions in it.
pub struct TopicView {
    topic: String,
    /// Probing reads records; a client of its own keeps them out of the consumer's queue.
    probe: BaseConsumer<LoggingContext>,
    pub partitions: Vec<i32>,
    /// (low, high) offsets per partition, now.
    pub watermarks: HashMap<i32, (i64, i64)>,
}

impl TopicView {
    /// Connects (retrying while the broker is unreachable) and looks the topic up.
    pub fn look_up(args: &KafkaArgs, topic: &str, stop: &Stop) -> Result<TopicView, SourceError> {
        TopicView::look_up_with(kafka::metadata_client(args)?, args, topic, stop)
    }

    /// [`TopicView::look_up`], with the ends of the logs as the high watermarks: records of
    /// transactions not (yet) committed included, which a [`Source`] does not read, for a
    /// reader that says what it could not read. (A read_committed look-up answers where the
    /// first unfinished transaction starts; Tansu 0.6 answers the partition's beginning.)
    pub fn look_up_whole_logs(args: &KafkaArgs, topic: &str, stop: &Stop) -> Result<TopicView, SourceError> {
        TopicView::look_up_with(kafka::metadata_client_seeing_everything(args)?, args, topic, stop)
    }

    fn look_up_with(
        probe: BaseConsumer<LoggingContext>,
        args: &KafkaArgs,
        topic: &str,
        stop: &Stop,
    ) -> Result<TopicView, SourceError> {
        let partitions = kafka::partitions_unless(&probe, args, topic, stop)?;
        let watermarks = kafka::watermarks(&probe, topic, &partitions)?;
        Ok(TopicView { topic: topic.to_string(), probe, partitions, watermarks })
    }

    /// `start` as an offset per partition (`None`: the beginning, or no constraint).
    pub fn positions(
        &self,
        args: &KafkaArgs,
        group: &str,
        start: &Start,
    ) -> Result<BTreeMap<i32, Option<i64>>, SourceError> {
        let every = |offset: &dyn Fn(i32) -> Option<i64>| self.partitions.iter().map(|&p| (p, offset(p))).collect();
        Ok(match start {
            Start::Earliest | Start::Resume => every(&|_| None),
            Start::Latest => every(&|p| Some(self.watermarks[&p].1)),
            Start::Committed => {
                let member: BaseConsumer<LoggingContext> =
                    args.consumer_config(group, &[]).create_with_context(LoggingContext)?;
                let offsets = committed(&member, &self.topic, &self.partitions);
                kafka::dispose(member);
                offsets?
            }
            Start::Time(time) => {
                let found = self.offsets_for_time(*time)?;
                // No reading stamped at or after the time yet: nothing to read before the end.
                every(&|p| found[&p].or(Some(self.watermarks[&p].1)))
            }
            Start::Offsets(offsets) => {
                for (p, &offset) in offsets {
                    let Some(&(_, high)) = self.watermarks.get(p) else {
                        let partitions = &self.partitions;
                        return Err(SourceError::BadOffset(format!(
                            "`{}` has no partition {p} (it has {partitions:?})",
                            self.topic
                        )));
                    };
                    if offset > high {
                        return Err(SourceError::BadOffset(format!(
                            "partition {p} ends at offset {high}, before the {offset} asked for"
                        )));
                    }
                }
                every(&|p| offsets.get(&p).copied())
            }
        })
    }

    /// Where a bounded run stops, per partition (`None` for a run that follows the topic).
    pub fn ends(&self, until: Until) -> Result<Option<BTreeMap<i32, Option<i64>>>, SourceError> {
        Ok(match until {
            Until::Follow => None,
            Until::End => Some(self.watermarks.iter().map(|(&p, &(_, high))| (p, Some(high))).collect()),
            Until::Time(time) => Some(self.offsets_for_time(time)?),
        })
    }

    fn offsets_for_time(&self, time: i64) -> Result<BTreeMap<i32, Option<i64>>, SourceError> {
        Ok(kafka::offsets_for_time(&self.probe, &self.topic, &self.watermarks, time)?)
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Where to fetch from so that reading `partition` yields `offset` itself (see
    /// [`kafka::fetch_start`]), given the partition's offsets now ([`TopicView::marks_now`]:
    /// a group member is given partitions long after it looked the topic up).
    pub fn fetch_offset(&self, partition: i32, offset: i64, marks: (i64, i64)) -> Result<i64, SourceError> {
        Ok(kafka::fetch_start(&self.probe, &self.topic, partition, offset, marks)?)
    }

    /// The (low, high) offsets of `partition` now.
    pub fn marks_now(&self, partition: i32) -> Result<(i64, i64), SourceError> {
        let now = kafka::watermarks(&self.probe, &self.topic, &[partition])?;
        Ok(now[&partition])
    }

    /// Calls `visit(offset, key, value)` for every record of `partition` in `[start, end)`.
    pub fn read_range(
        &self,
        partition: i32,
        range: (i64, i64),
        visit: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>),
    ) -> Result<(), SourceError> {
        Ok(kafka::read_range(&self.probe, &self.topic, partition, range, self.watermarks[&partition], visit)?)
    }
}

pub struct Source {
    fetcher: Fetcher<LoggingContext>,
    topic: String,
}

impl Source {
    /// Assigns every partition of `view`, reading from `from`. Only committed records are read:
    /// a transaction not finished (yet) ends its partition early ([`Source::end_of`]).
    pub fn open(
        args: &KafkaArgs,
        group: &str,
        view: TopicView,
        from: &BTreeMap<i32, i64>,
    ) -> Result<Source, SourceError> {
        // read_committed is librdkafka's default; said here because readers rely on it.
        let mut settings = vec![("auto.offset.reset", "earliest"), ("isolation.level", "read_committed")];
        settings.extend_from_slice(&FETCH_SETTINGS);
        let consumer: BaseConsumer<LoggingContext> =
            args.consumer_config(group, &settings).create_with_context(LoggingContext)?;
        let topic = view.topic.as_str();
        let mut assignment = TopicPartitionList::new();
        for (&partition, &offset) in from {
            let start = kafka::fetch_start(&view.probe, topic, partition, offset, view.watermarks[&partition])?;
            assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
        }
        let fetcher = Fetcher::assign(consumer, &assignment)?;
        kafka::dispose(view.probe);
        Ok(Source { fetcher, topic: view.topic })
    }

    /// The next message, or what librdkafka has to say; waits up to `timeout` only when
    /// nothing is there yet.
    pub fn poll(&self, timeout: Duration) -> Option<KafkaResult<Record<'_>>> {
        self.fetcher.poll(timeout)
    }

    /// Where `partition` ends for this source, as its latest `PartitionEOF` said: where its
    /// committed records stop (see [`Fetcher::end_of`]).
    pub fn end_of(&self, partition: i32) -> Option<i64> {
        self.fetcher.end_of(partition)
    }

    /// Stops fetching `partition`: a bounded run has read it to its end.
    pub fn pause(&self, partition: i32) {
        self.fetcher.pause(&self.topic, partition)
    }

    /// Tells the consumer group how far the durable output goes (for lag tools).
    pub fn commit(&self, offsets: &BTreeMap<i32, i64>, mode: CommitMode) -> KafkaResult<()> {
        let mut list = TopicPartitionList::new();
        for (&partition, &offset) in offsets {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
        }
        self.fetcher.commit(&list, mode)
    }
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
        let ends = BTreeMap::from([(0, Some(3)), (1, Some(5))]);
        let mut p = Progress::new(BTreeMap::from([(0, 0), (1, 5)]), Some(ends), None);
        assert!(!p.done());
        assert_eq!(p.remaining(), Some(3));
        p.consumed(0, 1);
        assert!(!p.done());
        p.consumed(0, 2);
        assert!(p.done());
        let mut q = Progress::new(BTreeMap::from([(0, 0)]), Some(BTreeMap::from([(0, Some(10))])), None);
        q.reached_end(0, 0);
        assert!(q.done());
        assert!(!Progress::new(BTreeMap::from([(0, 9)]), None, None).done());
    }

    /// A partition the group assigns later is read from where it is told, and a bounded run
    /// waits for it; a revoked one is no longer waited for; one assigned again after its
    /// bound is read again.
    #[test]
    fn partitions_come_and_go_with_the_group() {
        let ends = BTreeMap::from([(0, Some(10)), (1, Some(5)), (2, Some(7))]);
        let mut p = Progress::new(BTreeMap::new(), Some(ends), None);
        for partition in [0, 1, 2] {
            p.revoke(partition);
        }
        assert!(p.done(), "nothing assigned, nothing to wait for");
        p.assign(0, 4);
        p.assign(1, 5);
        assert!(!p.done());
        assert_eq!(p.admit(0, 3, || None), Admit::Old);
        assert_eq!(p.next(), BTreeMap::from([(0, 4), (1, 5)]));
        p.revoke(0);
        assert!(p.done());
        assert_eq!(p.next(), BTreeMap::from([(1, 5)]));
        assert_eq!(p.admit(1, 5, || None), Admit::Beyond);
        p.assign(1, 3);
        assert_eq!(p.admit(1, 3, || None), Admit::New, "assigned again, read again from where it is told");
    }

    /// Records below a partition's next offset were read before and are not new; records at
    /// or past a bounded run's end are beyond it and end their partition.
    #[test]
    fn records_are_admitted_between_next_and_end() {
        let ends = BTreeMap::from([(0, Some(102)), (1, Some(9))]);
        let mut p = Progress::new(BTreeMap::from([(0, 100), (1, 0)]), Some(ends), None);
        assert_eq!(p.admit(0, 99, || None), Admit::Old);
        assert_eq!(p.admit(0, 100, || None), Admit::New);
        p.consumed(0, 100);
        assert_eq!(p.admit(0, 100, || None), Admit::Old);
        assert_eq!(p.admit(1, 9, || None), Admit::Beyond);
        assert_eq!(p.admit(0, 101, || None), Admit::New);
        assert!(!p.done());
        p.consumed(0, 101);
        assert!(p.done());
        let mut follow = Progress::new(BTreeMap::from([(0, 0)]), None, None);
        assert_eq!(follow.admit(0, 1_000_000, || Some(i64::MAX)), Admit::New);
    }

    /// Bounded by time, a partition ends at its first reading stamped at or after the time,
    /// or, with none yet, at its end once the time has passed.
    #[test]
    fn time_bounds_end_partitions_by_stamp_or_clock() {
        let end = BTreeMap::from([(0, Some(50)), (1, None)]);
        let mut p = Progress::new(BTreeMap::from([(0, 0), (1, 0)]), Some(end), Some(1_000));
        assert_eq!(p.remaining(), Some(50));
        assert_eq!(p.admit(1, 0, || Some(999)), Admit::New);
        p.consumed(1, 0);
        p.reached_end(1, 500);
        assert_eq!(p.admit(0, 7, || Some(1_000)), Admit::Beyond, "stamped at the bound");
        assert_eq!(p.admit(0, 8, || Some(999)), Admit::Beyond, "after the bound, even if stamped before it");
        assert!(!p.done(), "partition 1 may still get readings stamped before the bound");
        p.tick(999);
        assert!(!p.done());
        p.tick(1_000);
        assert!(p.done());
    }

    /// A partition that gets a reading after reaching its end is no longer at its end: the
    /// time passing does not end it until the broker says so again.
    #[test]
    fn a_reading_after_the_end_reopens_its_partition() {
        let end = BTreeMap::from([(0, None), (1, None)]);
        let mut p = Progress::new(BTreeMap::from([(0, 0), (1, 0)]), Some(end), Some(1_000));
        p.reached_end(0, 100);
        p.reached_end(1, 100);
        assert_eq!(p.admit(1, 0, || Some(999)), Admit::New);
        p.consumed(1, 0);
        p.tick(1_000);
        assert!(!p.done(), "partition 1 read a reading since its end");
        p.reached_end(1, 1_001);
        assert!(p.done());
    }

    /// A start point that retention deleted stops the run unless data loss is allowed; one
    /// past the end means the topic was created anew; no resume point means the beginning.
    #[test]
    fn start_offsets_are_checked_against_the_topic() {
        let marks = HashMap::from([(0, (100, 500)), (1, (0, 50))]);
        let requested = BTreeMap::from([(0, Some(40)), (1, None)]);
        let err = start_offsets("weather", &requested, &marks, false).unwrap_err().to_string();
        assert!(
            err.contains("--from-beginning") && err.contains("--allow-data-loss") && err.contains("40..100"),
            "{err}"
        );
        assert_eq!(start_offsets("weather", &requested, &marks, true).unwrap(), BTreeMap::from([(0, 100), (1, 0)]));
        let ahead = BTreeMap::from([(0, Some(200)), (1, Some(51))]);
        let err = start_offsets("weather", &ahead, &marks, true).unwrap_err().to_string();
        assert!(err.contains("created again") && err.contains("--from-beginning"), "{err}");
        let fine = BTreeMap::from([(0, Some(500)), (1, Some(7))]);
        assert_eq!(start_offsets("weather", &fine, &marks, false).unwrap(), BTreeMap::from([(0, 500), (1, 7)]));
    }
}
