//! Reading what a partition holds by explicit assignment: its confirmed ends, a range of
//! offsets, the offsets of a time. Tansu 0.6 needs work-arounds here (its listed end is the
//! last batch's start; a fetch answers from the batch that holds an offset), so every reader
//! goes through these.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

/// Low and high watermark of every partition.
///
/// The high watermark is confirmed by reading the partition from `high - 1` to its end:
/// some Kafka-compatible brokers (Tansu 0.6) answer ListOffsets with the base offset of the
/// last record batch + 1 rather than the true end. On Apache Kafka this reads one message
/// per partition. `client` must have `enable.partition.eof=true` and no assignment in use.
pub fn watermarks<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
) -> KafkaResult<HashMap<i32, (i64, i64)>> {
    watermarks_within(client, topic, partitions, Duration::from_secs(10))
}

/// [`watermarks`], each look-up given up after `patience`, the confirming reads after three
/// times that (a metrics scrape must answer within Prometheus's timeout).
pub fn watermarks_within<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    patience: Duration,
) -> KafkaResult<HashMap<i32, (i64, i64)>> {
    let mut marks = HashMap::new();
    let mut probe = TopicPartitionList::new();
    for &p in partitions {
        let (low, high) = client.fetch_watermarks(topic, p, patience)?;
        marks.insert(p, (low, high));
        if high > low {
            probe.add_partition_offset(topic, p, Offset::Offset(high - 1))?;
        }
    }
    if probe.count() == 0 {
        return Ok(marks);
    }
    client.assign(&probe)?;
    let mut pending: HashSet<i32> = probe.elements().iter().map(|e| e.partition()).collect();
    let deadline = Instant::now() + 3 * patience;
    while !pending.is_empty() && Instant::now() < deadline {
        match client.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                if let Some((_, high)) = marks.get_mut(&message.partition()) {
                    *high = (*high).max(message.offset() + 1);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            _ => {}
        }
    }
    client.unassign()?;
    if !pending.is_empty() {
        tracing::warn!("could not confirm the end of partitions {pending:?} of `{topic}`; using the broker's figures");
    }
    Ok(marks)
}

/// The offset to fetch from so that reading `partition` yields `offset` itself: the broker's
/// first record is at or before it, and the caller skips the records before `offset`.
///
/// Apache Kafka answers a fetch with the record batch that contains the requested offset, so
/// this returns `offset` after one look. Tansu 0.6 answers with the first batch that *starts*
/// at or after it, silently skipping the rest of the batch that contains it (and with nothing
/// at all past the last batch's start, which is what it lists as the partition's end: see
/// [`watermarks`]). Stepping back (1, 2, 4, ... records) finds an offset whose answer starts
/// early enough. `client` must have `enable.partition.eof=true`, and not be the consumer that
/// will read the partition (its queue would keep the probe's records).
pub fn fetch_start<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
    (low, high): (i64, i64),
) -> KafkaResult<i64> {
    if offset <= low || offset >= high {
        return Ok(offset);
    }
    // Past the listed end, Tansu has no batch start to answer with.
    let (_, listed_end) = client.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
    let mut from = offset.min(listed_end - 1).max(low);
    let mut step = 1;
    loop {
        match first_record(client, topic, partition, from)?.map(|m| m.offset()) {
            Some(first) if first <= offset => return Ok(from),
            _ if from <= low => return Ok(low),
            _ => {
                from = (offset - step).min(from - 1).max(low);
                step *= 2;
            }
        }
    }
}

/// The first record a fetch from `from` returns (from the start of the next batch on Tansu,
/// see [`fetch_start`]); `None` if it reaches the end or returns nothing for 3 s.
fn first_record<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    from: i64,
) -> KafkaResult<Option<OwnedMessage>> {
    let mut first = None;
    fetch_from(client, topic, partition, from, Duration::from_secs(3), |m| {
        first = Some(m.detach());
        ControlFlow::Break(())
    })?;
    Ok(first)
}

/// The offset of the first record of `partition` from `from` on stamped at or after `time`
/// (a record without a timestamp counts as such); `None` if none is, up to its end.
fn first_stamped<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    from: i64,
    time: i64,
) -> KafkaResult<Option<i64>> {
    let mut found = None;
    let read = fetch_from(client, topic, partition, from, Duration::from_secs(30), |m| {
        if m.timestamp().to_millis().is_none_or(|t| t >= time) {
            found = Some(m.offset());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    match read {
        Fetched::TimedOut => Err(KafkaError::PartitionEOF(partition)),
        Fetched::Stopped | Fetched::AtEnd => Ok(found),
    }
}

/// Calls `visit(offset, key, value)` for every record of `partition` with an offset in `[start, end)`,
/// reading from where [`fetch_start`] says. Same requirements on `client` as [`fetch_start`].
pub fn read_range<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    (start, end): (i64, i64),
    watermarks: (i64, i64),
    mut visit: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>),
) -> KafkaResult<()> {
    if start >= end {
        return Ok(());
    }
    let from = fetch_start(client, topic, partition, start, watermarks)?;
    let read = fetch_from(client, topic, partition, from, Duration::from_secs(30), |m| {
        if (start..end).contains(&m.offset()) {
            visit(m.offset(), m.key(), m.payload());
        }
        if m.offset() + 1 >= end {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    match read {
        Fetched::TimedOut => Err(KafkaError::PartitionEOF(partition)),
        Fetched::Stopped | Fetched::AtEnd => Ok(()),
    }
}

/// How [`fetch_from`] ended.
enum Fetched {
    /// The visitor asked to stop.
    Stopped,
    /// The partition has nothing more for now.
    AtEnd,
    TimedOut,
}

/// Assigns `partition` to `client` from `from` alone, hands `visit` its records at or after
/// `from` (earlier ones can only be left over from an earlier assignment) until `visit` stops,
/// the partition's end, or `timeout`, and unassigns it again.
fn fetch_from<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    from: i64,
    timeout: Duration,
    mut visit: impl FnMut(&BorrowedMessage<'_>) -> ControlFlow<()>,
) -> KafkaResult<Fetched> {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
    client.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let fetched = loop {
        if Instant::now() > deadline {
            break Fetched::TimedOut;
        }
        match client.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.partition() == partition && m.offset() >= from => match visit(&m) {
                ControlFlow::Break(()) => break Fetched::Stopped,
                ControlFlow::Continue(()) => {}
            },
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break Fetched::AtEnd,
            Some(Err(e)) => tracing::debug!("while reading {topic}/{partition}: {e}"),
            _ => {}
        }
    };
    client.unassign()?;
    Ok(fetched)
}

/// Per partition, the offset of the first record stamped at or after `time` (milliseconds
/// since the epoch); `None` where there is none yet.
///
/// Tansu 0.6 answers with the start of an earlier batch than the one that holds that record
/// (seen: a batch 120 records before it, every record between stamped before `time`), and
/// "none" with offset 0 instead of Kafka's -1: from its answer, the records are read on to the
/// first one stamped at or after `time` (on Apache Kafka, the answer's own record). Same
/// requirements on `client` as [`fetch_start`].
pub fn offsets_for_time<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    watermarks: &HashMap<i32, (i64, i64)>,
    time: i64,
) -> KafkaResult<BTreeMap<i32, Option<i64>>> {
    let mut query = TopicPartitionList::new();
    for &p in watermarks.keys() {
        query.add_partition_offset(topic, p, Offset::Offset(time))?;
    }
    let answer = client.offsets_for_times(query, Duration::from_secs(10))?;
    let mut offsets = BTreeMap::new();
    for element in answer.elements() {
        let partition = element.partition();
        let (low, high) = watermarks[&partition];
        let found = match element.offset() {
            Offset::Offset(o) if o < high => first_stamped(client, topic, partition, o.max(low), time)?,
            _ => None,
        };
        offsets.insert(partition, found);
    }
    Ok(offsets)
}
