//! Taking what librdkafka fetched a batch at a time, for a job whose polling thread is its
//! bottleneck (a replay reads a million readings in well under a second).
//!
//! rdkafka's `BaseConsumer::poll` hands out one message per call, and each call reads the
//! clock three times or more (librdkafka notes when the application polls, and when it is done;
//! rdkafka times the call) and unwraps an event: on the mock cluster that is most of a plain
//! poll loop's time. librdkafka's `rd_kafka_consume_batch_queue` pays it once per batch; the
//! benchmark's consume baseline measures both ways side by side. rdkafka (0.39) does not wrap
//! that call, so this module does, over the bindings rdkafka re-exports, and keeps all of its
//! `unsafe` in one place.
//!
//! A [`Fetcher`] owns the consumer and a queue of its own. Each partition's fetch queue is
//! forwarded to that queue before the partition is assigned, once, when the fetcher is made
//! (a partition assigned again would lose its forwarding to the first assignment's end), so
//! every fetched message, partition end and fetch error arrives there, in order, and nowhere
//! else. The consumer's own queue keeps librdkafka's other events (client
//! errors, commit results), which rdkafka's poll serves between batches.
//!
//! A partition's end arrives as a message too, carrying the offset where the partition ends
//! for this consumer: with `isolation.level=read_committed` (librdkafka's default), where
//! committed records stop, before a transaction not finished (yet). The fetcher keeps that
//! offset ([`Fetcher::end_of`]): the consumer's position is no answer there, since taking
//! messages in batches leaves it past the unfinished transaction's first record.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{c_void, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;

/// Messages taken from librdkafka at once: enough that its per-call costs vanish, few enough
/// that the fetch buffers they keep alive stay small.
const BATCH: usize = 1024;

/// A consumer whose fetched messages are taken in batches.
pub struct Fetcher<C: ConsumerContext + 'static> {
    /// Where every assigned partition's fetch queue is forwarded. Released in `drop`, before
    /// the consumer (a field, so dropped after `drop` has run).
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Messages taken from the queue and not handed out yet: `taken[next..]`.
    pending: RefCell<Pending>,
    /// By partition, the offset its latest end said it ends at.
    ends: RefCell<BTreeMap<i32, i64>>,
    consumer: BaseConsumer<C>,
}

struct Pending {
    taken: Vec<*mut rd::rd_kafka_message_t>,
    next: usize,
}

// SAFETY: librdkafka's queues and messages may be used from any thread (its API is
// thread-safe); a Fetcher is not Sync (the RefCell), so one thread at a time uses them.
unsafe impl<C: ConsumerContext> Send for Fetcher<C> {}

impl<C: ConsumerContext> Fetcher<C> {
    /// Assigns the partitions of `list` to `consumer`, at their offsets, with their fetched
    /// messages sent to the fetcher's queue.
    pub fn assign(consumer: BaseConsumer<C>, list: &TopicPartitionList) -> KafkaResult<Fetcher<C>> {
        // SAFETY: the client handle is valid while `consumer` lives, and the queue is
        // destroyed before it (see `drop`).
        let queue = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        let queue = NonNull::new(queue).expect("librdkafka allocates a queue or aborts");
        let pending = RefCell::new(Pending { taken: Vec::with_capacity(BATCH), next: 0 });
        let fetcher = Fetcher { queue, pending, ends: RefCell::default(), consumer };
        fetcher.forward(list)?;
        fetcher.consumer.assign(list)?;
        Ok(fetcher)
    }

    /// Forwards the fetch queue of every partition of `list` to this fetcher's queue.
    fn forward(&self, list: &TopicPartitionList) -> KafkaResult<()> {
        let client = self.consumer.client().native_ptr();
        for element in list.elements() {
            let topic = CString::new(element.topic())
                .map_err(|_| KafkaError::Subscription(format!("topic name {:?} has a NUL byte", element.topic())))?;
            // SAFETY: the handle is valid (see `assign`) and `topic` is a C string that outlives
            // the call; librdkafka returns a new reference to the partition's queue, released
            // at once (the forwarding stays), or null only for a producer.
            unsafe {
                let partition = rd::rd_kafka_queue_get_partition(client, topic.as_ptr(), element.partition());
                if partition.is_null() {
                    return Err(KafkaError::Subscription(format!(
                        "librdkafka has no queue for partition {} of `{}`",
                        element.partition(),
                        element.topic()
                    )));
                }
                rd::rd_kafka_queue_forward(partition, self.queue.as_ptr());
                rd::rd_kafka_queue_destroy(partition);
            }
        }
        Ok(())
    }

    /// The next fetched message or news of a partition (its end, a fetch error), or an error of
    /// the client; waits up to `timeout` only when nothing is there yet.
    pub fn poll(&self, timeout: Duration) -> Option<KafkaResult<Record<'_>>> {
        if let Some(next) = self.next_taken() {
            return Some(next);
        }
        // Between batches, the consumer's own queue: it carries no messages (see the module's
        // comment), only events, which rdkafka turns into errors and callbacks. A message
        // there would be one read out of its partition's order: fatal, never skipped.
        match self.consumer.poll(Duration::ZERO) {
            Some(Err(e)) => return Some(Err(e)),
            Some(Ok(m)) => {
                tracing::error!(
                    "partition {} offset {}: a message came around the fetcher's queue",
                    m.partition(),
                    m.offset()
                );
                return Some(Err(KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::Fail)));
            }
            None => {}
        }
        self.take(Duration::ZERO, BATCH);
        if let Some(next) = self.next_taken() {
            return Some(next);
        }
        // Wait for one message only: a run that follows the topic gets each as it comes.
        self.take(timeout, 1);
        self.next_taken()
    }

    /// Where `partition` ends, as its latest end (a `PartitionEOF` from [`Fetcher::poll`])
    /// said: for a read_committed consumer, where its committed records stop. `None` before
    /// its first end.
    pub fn end_of(&self, partition: i32) -> Option<i64> {
        self.ends.borrow().get(&partition).copied()
    }

    /// Stops fetching `partition` of `topic` (see [`crate::kafka::pause`]).
    pub fn pause(&self, topic: &str, partition: i32) {
        crate::kafka::pause(&self.consumer, topic, partition)
    }

    /// Commits the offsets of `list` to the consumer group.
    pub fn commit(&self, list: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        self.consumer.commit(list, mode)
    }

    /// Takes up to `max` messages from the queue, waiting up to `timeout` for them.
    fn take(&self, timeout: Duration, max: usize) {
        let mut pending = self.pending.borrow_mut();
        debug_assert_eq!(pending.next, pending.taken.len(), "taken only once every message is handed out");
        pending.taken.clear();
        pending.next = 0;
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the queue is valid (see `assign`) and `taken` has room for `max <= BATCH`
        // pointers; librdkafka writes `n` of them and returns `n`, or -1 on an error.
        unsafe {
            let n = rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                pending.taken.as_mut_ptr(),
                max.min(BATCH),
            );
            pending.taken.set_len(n.max(0) as usize);
        }
    }

    fn next_taken(&self) -> Option<KafkaResult<Record<'_>>> {
        let mut pending = self.pending.borrow_mut();
        let message = *pending.taken.get(pending.next)?;
        pending.next += 1;
        let record = Record { message: NonNull::new(message)?, _fetcher: PhantomData };
        let error = record.fields().err;
        Some(match error {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(record),
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                self.ends.borrow_mut().insert(record.partition(), record.offset());
                Err(KafkaError::PartitionEOF(record.partition()))
            }
            e => Err(KafkaError::MessageConsumption(e.into())),
        })
    }
}

impl<C: ConsumerContext> Drop for Fetcher<C> {
    fn drop(&mut self) {
        let pending = self.pending.get_mut();
        // SAFETY: messages not handed out are owned here, and released before their queue,
        // which is released before the consumer (a field, dropped after this).
        unsafe {
            for &message in &pending.taken[pending.next..] {
                rd::rd_kafka_message_destroy(message);
            }
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// A fetched message, given back to librdkafka when dropped. It cannot outlive its fetcher.
pub struct Record<'a> {
    message: NonNull<rd::rd_kafka_message_t>,
    _fetcher: PhantomData<&'a ()>,
}

impl Record<'_> {
    fn fields(&self) -> &rd::rd_kafka_message_t {
        // SAFETY: the message is librdkafka's and valid until this record drops.
        unsafe { self.message.as_ref() }
    }

    pub fn partition(&self) -> i32 {
        self.fields().partition
    }

    pub fn offset(&self) -> i64 {
        self.fields().offset
    }

    pub fn key(&self) -> Option<&[u8]> {
        bytes(self.fields().key, self.fields().key_len)
    }

    pub fn payload(&self) -> Option<&[u8]> {
        bytes(self.fields().payload, self.fields().len)
    }

    /// The record's timestamp in ms, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a valid message (see `fields`) and a place for the kind.
        let ms = unsafe { rd::rd_kafka_message_timestamp(self.message.as_ptr(), &mut kind) };
        (ms != -1 && kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE).then_some(ms)
    }

    pub fn topic(&self) -> &str {
        // SAFETY: a fetched message's topic handle lives as long as the message, and its name
        // is a C string; topic names are ASCII.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.fields().rkt)) }.to_str().unwrap_or("?")
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        // SAFETY: the message is this record's alone, released once.
        unsafe { rd::rd_kafka_message_destroy(self.message.as_ptr()) }
    }
}

fn bytes<'a>(data: *mut c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: librdkafka's key and payload are null or `len` bytes, valid while the message
    // is (the caller ties the lifetime to its record).
    (!data.is_null()).then(|| unsafe { std::slice::from_raw_parts(data as *const u8, len) })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
    use rdkafka::Offset;

    use super::*;
    use crate::kafka::{self, Deliveries, KafkaArgs};

    /// A fetcher of `topic` on `bootstrap`, from `from` (partition, offset), with partition ends
    /// reported.
    fn fetcher(
        bootstrap: &str,
        topic: &str,
        from: &[(i32, i64)],
    ) -> Fetcher<rdkafka::consumer::DefaultConsumerContext> {
        let args = KafkaArgs::new(bootstrap);
        let consumer: BaseConsumer =
            args.client_config(&[("group.id", "fetch-test"), ("enable.partition.eof", "true")]).create().unwrap();
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in from {
            list.add_partition_offset(topic, partition, Offset::Offset(offset)).unwrap();
        }
        Fetcher::assign(consumer, &list).unwrap()
    }

    /// Sends `count` records to `topic`, record `i` to partition `i % partitions` with key
    /// `k<i>`, value `v<i>` and timestamp `1_000 + i` (none for value 0's key, to show a record
    /// without one).
    fn send(bootstrap: &str, topic: &str, count: i64, partitions: i32) {
        let producer: ThreadedProducer<Deliveries> =
            kafka::reliable_producer(&KafkaArgs::new(bootstrap), &[], Deliveries::default()).unwrap();
        for i in 0..count {
            let (key, value) = (format!("k{i}"), format!("v{i}"));
            let mut record =
                BaseRecord::to(topic).partition((i % i64::from(partitions)) as i32).payload(value.as_bytes());
            record = record.timestamp(1_000 + i);
            if i != 0 {
                record = record.key(key.as_bytes());
            }
            kafka::send(&producer, record).unwrap();
        }
        assert!(kafka::flush(&producer, Duration::from_secs(30)));
    }

    /// Every record of every assigned partition arrives once, in its partition's order, with
    /// its key, value, timestamp and topic; then each partition reports its end, and the
    /// fetcher keeps the offset each end carried.
    #[test]
    fn every_record_arrives_once_in_order_then_each_end() {
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        mock.create_topic("weather", 3, 1).unwrap();
        let bootstrap = mock.bootstrap_servers();
        // More than one batch, so that batches follow one another.
        let count = 3 * BATCH as i64 + 7;
        send(&bootstrap, "weather", count, 3);
        let fetcher = fetcher(&bootstrap, "weather", &[(0, 0), (1, 0), (2, 0)]);
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut ended = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while ended.len() < 3 {
            assert!(Instant::now() < deadline, "read {next:?}, ends {ended:?} within 30 s");
            match fetcher.poll(Duration::from_millis(100)) {
                Some(Ok(record)) => {
                    let offset = next.entry(record.partition()).or_default();
                    assert_eq!(record.offset(), *offset, "partition {}", record.partition());
                    *offset += 1;
                    let i = record.offset() * 3 + i64::from(record.partition());
                    assert_eq!(record.payload(), Some(format!("v{i}").as_bytes()));
                    assert_eq!(record.key(), (i != 0).then(|| format!("k{i}")).as_deref().map(str::as_bytes));
                    assert_eq!(record.timestamp(), Some(1_000 + i));
                    assert_eq!(record.topic(), "weather");
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    ended.insert(partition, next.get(&partition).copied().unwrap_or(0));
                }
                Some(Err(e)) => panic!("{e}"),
                None => {}
            }
        }
        let each = count / 3;
        assert_eq!(ended, BTreeMap::from([(0, each + 1), (1, each), (2, each)]), "{count} records");
        let ends: BTreeMap<i32, Option<i64>> = (0..3).map(|p| (p, fetcher.end_of(p))).collect();
        assert_eq!(ends, ended.iter().map(|(&p, &end)| (p, Some(end))).collect(), "each end's offset is kept");
    }

    /// A message that reaches the consumer's own queue instead of the fetcher's (here: a
    /// partition assigned behind the fetcher's back, so its fetch queue is not forwarded)
    /// stops the read with a fatal error: it is never handed out, nor skipped in silence.
    #[test]
    fn a_message_around_the_queue_is_fatal() {
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        mock.create_topic("weather", 2, 1).unwrap();
        let bootstrap = mock.bootstrap_servers();
        send(&bootstrap, "weather", 10, 2);
        let fetcher = fetcher(&bootstrap, "weather", &[(0, 0)]);
        let mut around = TopicPartitionList::new();
        around.add_partition_offset("weather", 1, Offset::Offset(0)).unwrap();
        fetcher.consumer.incremental_assign(&around).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut handed_out = Vec::new();
        let error = loop {
            assert!(Instant::now() < deadline, "no fatal error within 30 s; handed out {handed_out:?}");
            match fetcher.poll(Duration::from_millis(100)) {
                Some(Ok(record)) => handed_out.push((record.partition(), record.offset())),
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => break e,
            }
        };
        assert!(
            matches!(error, KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::Fail)),
            "{error:?}, after {handed_out:?}"
        );
        assert!(handed_out.iter().all(|&(p, _)| p == 0), "a partition-1 record was handed out: {handed_out:?}");
    }

    /// A fetcher dropped while it holds messages taken from librdkafka gives them back, and
    /// the next one reads on from where the first stopped.
    #[test]
    fn a_fetcher_dropped_with_messages_taken_leaves_them_to_the_next() {
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        mock.create_topic("weather", 1, 1).unwrap();
        let bootstrap = mock.bootstrap_servers();
        send(&bootstrap, "weather", 100, 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = fetcher(&bootstrap, "weather", &[(0, 0)]);
        let mut read = Vec::new();
        // Two records: by then the fetcher holds the rest of a batch (the mock cluster serves
        // the 100 records in one fetch).
        while read.len() < 2 {
            assert!(Instant::now() < deadline, "read only {read:?} within 30 s");
            if let Some(Ok(record)) = first.poll(Duration::from_millis(100)) {
                read.push(record.offset());
            }
        }
        assert_eq!(read, [0, 1]);
        let pending = first.pending.borrow().taken.len() - first.pending.borrow().next;
        assert!(pending > 0, "the second record's batch holds the records after it");
        drop(first);
        let next = fetcher(&bootstrap, "weather", &[(0, 2)]);
        loop {
            assert!(Instant::now() < deadline, "no end within 30 s after {read:?}");
            match next.poll(Duration::from_millis(100)) {
                Some(Ok(record)) => read.push(record.offset()),
                Some(Err(KafkaError::PartitionEOF(0))) => break,
                _ => {}
            }
        }
        assert_eq!(read, (0..100).collect::<Vec<_>>());
    }
}
