//! Kafka client settings shared by the sensor and the consumer: brokers, `-X` overrides as
//! in kcat, secrets from the environment, and the few metadata look-ups both sides need.
//!
//! This is the one place that builds an rdkafka `ClientConfig`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::ToBytes;
use rdkafka::message::{BorrowedMessage, DeliveryResult, Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::shutdown::Stop;

/// Environment variables read for secrets, so they never appear in flags, shell history or logs.
pub const SECRET_ENV: [(&str, &str); 2] =
    [("KAFKA_SASL_USERNAME", "sasl.username"), ("KAFKA_SASL_PASSWORD", "sasl.password")];

/// How to reach Kafka. Flattened into both binaries' command lines.
#[derive(clap::Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    #[arg(short = 'b', long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = "localhost:9092")]
    pub bootstrap_servers: String,

    /// Any librdkafka setting as KEY=VALUE, repeatable (as kcat's -X), e.g.
    /// `-X security.protocol=SASL_SSL`. Secrets are refused here: set KAFKA_SASL_USERNAME and
    /// KAFKA_SASL_PASSWORD in the environment instead. In the environment variable, separate
    /// settings with `;`.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_override, env = "KAFKA_X", value_delimiter = ';')]
    pub overrides: Vec<(String, String)>,

    /// How long to keep retrying an unreachable broker at start before giving up.
    #[arg(long, env = "KAFKA_CONNECT_TIMEOUT", value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
}

impl KafkaArgs {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaArgs { bootstrap_servers: bootstrap_servers.into(), overrides: Vec::new(), connect_timeout: 60 }
    }

    /// The base configuration every client of this project starts from; the `-X` overrides
    /// are applied last so that a user can change any default.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config.set_log_level(RDKafkaLogLevel::Warning);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (var, key) in SECRET_ENV {
            if let Ok(value) = std::env::var(var) {
                config.set(key, value);
            }
        }
        for (key, value) in &self.overrides {
            config.set(key, value);
            // rdkafka sets librdkafka's log level from `set_log_level` (Warning, above) once
            // the client exists, which would drop the very lines `-X debug=...` asks for.
            if key == "debug" && !value.is_empty() {
                config.set_log_level(RDKafkaLogLevel::Debug);
            }
        }
        config
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }
}

fn parse_override(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{s}` has no key before `=`"));
    }
    if ["password", "secret", "sasl.username"].iter().any(|word| key.contains(word)) {
        return Err(format!(
            "`{key}` is a secret and would end up in shell history: set it in the environment \
             ({}) instead",
            SECRET_ENV.iter().map(|(var, _)| *var).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Routes librdkafka's logs and errors into `tracing`, and reports commits.
#[derive(Clone, Default)]
pub struct LoggingContext;

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            // A failed connection (FAIL) is retried by librdkafka: a warning, like the error event
            // that follows it.
            RDKafkaLogLevel::Error if fac == "FAIL" => tracing::warn!(target: "librdkafka", "{fac}: {log_message}"),
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac}: {log_message}"),
            _ => tracing::debug!(target: "librdkafka", "{fac}: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Reaching the end of a partition is news, not trouble; the consumer handles it.
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::PartitionEOF)) {
            return tracing::trace!(target: "librdkafka", "{reason}");
        }
        // Connection errors repeat, many at a time, while a broker is down; librdkafka keeps
        // retrying, so they are warnings, not failures, and one of a kind every few seconds
        // says it.
        let text = error.to_string();
        if once_in_a_while(&text) {
            tracing::warn!(target: "librdkafka", "{text}: {reason}");
        } else {
            tracing::debug!(target: "librdkafka", "{text}: {reason}");
        }
    }
}

/// True unless the same error was last said less than [`REPEAT_AFTER`] ago.
fn once_in_a_while(text: &str) -> bool {
    static SAID: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    said.retain(|(_, at)| now.duration_since(*at) < REPEAT_AFTER);
    if said.iter().any(|(known, _)| known == text) {
        return false;
    }
    said.push((text.to_string(), now));
    true
}

/// How long one kind of librdkafka error stays said.
const REPEAT_AFTER: Duration = Duration::from_secs(10);

impl ConsumerContext for LoggingContext {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &rdkafka::TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(
                "committing offsets to the consumer group failed (will retry with the next checkpoint): {e}"
            );
        }
    }
}

/// A consumer for metadata look-ups and reading ranges by explicit assignment. It never
/// commits; librdkafka only insists that it names a group.
pub fn metadata_client(args: &KafkaArgs) -> KafkaResult<BaseConsumer<LoggingContext>> {
    probe_client(args, &[])
}

/// A [`metadata_client`] that sees records of transactions not (yet) committed: its
/// [`watermarks`] are the ends of the logs. (librdkafka reads committed records only by
/// default, and then the end it is told is where the first unfinished transaction starts.)
pub fn metadata_client_seeing_everything(args: &KafkaArgs) -> KafkaResult<BaseConsumer<LoggingContext>> {
    probe_client(args, &[("isolation.level", "read_uncommitted")])
}

fn probe_client(args: &KafkaArgs, extra: &[(&str, &str)]) -> KafkaResult<BaseConsumer<LoggingContext>> {
    let mut settings = vec![
        ("group.id", "weather-pipeline-reader"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "true"),
        // Probes want an answer now, not the broker's long poll for more records.
        ("fetch.wait.max.ms", "10"),
    ];
    settings.extend_from_slice(extra);
    args.client_config(&settings).create_with_context(LoggingContext)
}

/// A producer with the project's delivery guarantees: idempotent, acks from all replicas.
pub fn reliable_producer<C: rdkafka::producer::ProducerContext>(
    args: &KafkaArgs,
    extra: &[(&str, &str)],
    context: C,
) -> KafkaResult<ThreadedProducer<C>> {
    let mut defaults = vec![("enable.idempotence", "true"), ("acks", "all")];
    defaults.extend_from_slice(extra);
    args.client_config(&defaults).create_with_context(context)
}

/// Sends `record`, waiting while the producer's queue is full: the broker is slower than we
/// are, and the queue drains as it acknowledges. The wait is short (0.1 ms) so that sending
/// resumes as soon as there is room; 1 ms left the sender idle a tenth of a fast run. The
/// record is counted as sent, for [`flush`].
pub fn send<K, P>(producer: &ThreadedProducer<Deliveries>, mut record: BaseRecord<'_, K, P, ()>) -> KafkaResult<()>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.context().sent.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_micros(100));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Waits until every record sent with [`send`] is acknowledged or has failed for good; false if
/// that takes longer than `timeout`. Woken by each delivery report: rdkafka's own `flush`
/// looks again only every 100 ms while the producer's thread takes the reports, which made
/// every commit of a window table wait 100 ms per flush.
pub fn flush(producer: &ThreadedProducer<Deliveries>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let deliveries = producer.context();
    // While a flush is under way, librdkafka sends what lingers at once.
    let _ = producer.flush(Duration::ZERO);
    let mut reported = deliveries.reported.lock().unwrap_or_else(|e| e.into_inner());
    while deliveries.outstanding() > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        reported = deliveries.report.wait_timeout(reported, left).unwrap_or_else(|e| e.into_inner()).0;
    }
    true
}

/// Counts the records a producer sent, acknowledged and failed, remembers the first failure,
/// and wakes [`flush`] at each report.
#[derive(Default)]
pub struct Deliveries {
    sent: AtomicU64,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
    /// Held by [`flush`] while it looks at the counts, and to wake it.
    reported: Mutex<()>,
    report: Condvar,
}

impl Deliveries {
    /// Records sent and not yet reported on.
    fn outstanding(&self) -> u64 {
        let reported = self.acknowledged() + self.failed();
        self.sent.load(Ordering::Relaxed).saturating_sub(reported)
    }

    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first delivery failure, if any, as a message.
    pub fn first_failure(&self) -> Option<String> {
        self.first_failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        LoggingContext.log(level, fac, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        LoggingContext.error(error, reason)
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let key = message.key().map(String::from_utf8_lossy).unwrap_or_default();
                tracing::error!("message with key {key:?} to {} was not delivered: {error}", message.topic());
                self.first_failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| error.to_string());
            }
        }
        // Only the last report wakes `flush` (a wake is a system call, and a sensor has a
        // million reports a second); taking the lock first means `flush` is either waiting
        // already or has not yet looked at the counts.
        if self.outstanding() == 0 {
            let _waiting = self.reported.lock().unwrap_or_else(|e| e.into_inner());
            self.report.notify_all();
        }
    }
}

/// The partition of a record keyed `key` among a topic's sorted `partitions`: librdkafka's default
/// (`consistent_random`) placement, CRC-32 of the key modulo their count. The sensor places its
/// readings with it explicitly, so that it knows where each sensor's readings are whatever
/// partitioner a `-X` names, and finds those written by earlier versions where they are.
pub fn partition_of(key: &[u8], partitions: &[i32]) -> i32 {
    assert!(!partitions.is_empty(), "a topic has partitions");
    partitions[(crc32fast::hash(key) % partitions.len() as u32) as usize]
}

/// Why the topic could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error(
        "topic `{topic}` does not exist on {brokers}{}: if that is the name you meant, create it first, e.g. \
         `kafka-topics.sh --bootstrap-server {brokers} --create --topic {topic} --partitions 3` (Apache Kafka) or \
         `tansu topic create {topic} --partitions 3` (Tansu; scripts/stack up creates `weather`)",
        others(topic, .existing)
    )]
    Missing { topic: String, brokers: String, existing: Vec<String> },
    #[error("no Kafka broker answered at {brokers} within {seconds} s (last error: {last}); is it running? (scripts/stack up starts one)")]
    Unreachable { brokers: String, seconds: u64, last: KafkaError },
    #[error("stopped while waiting for the Kafka broker at {brokers}")]
    Stopped { brokers: String },
}

/// What the broker has instead of `topic`, and the likely one for a typo.
fn others(topic: &str, existing: &[String]) -> String {
    if existing.is_empty() {
        return " (it has no topics)".to_string();
    }
    let listed = existing.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
    let likely =
        existing.iter().min_by_key(|t| strsim::levenshtein(topic, t)).filter(|t| strsim::levenshtein(topic, t) <= 2);
    match likely {
        Some(likely) => format!(" (it has {listed}; did you mean `{likely}`?)"),
        None => format!(" (it has {listed})"),
    }
}

/// How long a topic the broker says it does not know is waited for (it may be being created)
/// before that is reported.
const MISSING_TOPIC_GRACE: Duration = Duration::from_secs(2);

/// The partitions of `topic`, retrying with backoff while the broker is unreachable (up to
/// `--connect-timeout`) or, briefly, while it does not know the topic.
pub fn partitions<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    args: &KafkaArgs,
    topic: &str,
) -> Result<Vec<i32>, TopicError> {
    partitions_unless(client, args, topic, &Stop::default())
}

/// [`partitions`], giving up as soon as `stop` is requested.
pub fn partitions_unless<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    args: &KafkaArgs,
    topic: &str,
    stop: &Stop,
) -> Result<Vec<i32>, TopicError> {
    let brokers = &args.bootstrap_servers;
    let deadline = Instant::now() + args.connect_timeout();
    let mut backoff = Duration::from_millis(200);
    let mut unknown_since: Option<Instant> = None;
    loop {
        let attempt = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        let last = match topic_partitions(client, topic, attempt) {
            Ok(Some(ids)) => return Ok(ids),
            Ok(None) => {
                // The broker answered: it does not know the topic.
                let since = *unknown_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= MISSING_TOPIC_GRACE || Instant::now() + backoff > deadline {
                    let existing = client
                        .fetch_metadata(None, Duration::from_secs(5))
                        .map(|m| m.topics().iter().map(|t| t.name().to_string()).collect())
                        .unwrap_or_default();
                    return Err(TopicError::Missing { topic: topic.to_string(), brokers: brokers.clone(), existing });
                }
                tracing::debug!("{brokers} does not know topic `{topic}` yet; asking again in {backoff:?}");
                None
            }
            Err(e) => Some(e),
        };
        if let Some(last) = last {
            if Instant::now() + backoff > deadline {
                return Err(TopicError::Unreachable { brokers: brokers.clone(), seconds: args.connect_timeout, last });
            }
            tracing::warn!("no Kafka broker answered at {brokers} yet ({last}); retrying in {backoff:?}");
        }
        if sleep_unless(backoff, stop) {
            return Err(TopicError::Stopped { brokers: brokers.clone() });
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Sleeps for `duration` unless `stop` is requested first; true if it was.
fn sleep_unless(duration: Duration, stop: &Stop) -> bool {
    let until = Instant::now() + duration;
    while !stop.requested() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    true
}

/// The sorted partitions of `topic` after one metadata look-up; `None` if the broker does not
/// know the topic (or it has no partitions yet).
pub fn topic_partitions<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<Option<Vec<i32>>> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata.topics().iter().find(|t| t.name() == topic).and_then(|t| {
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        (t.error().is_none() && !ids.is_empty()).then_some(ids)
    }))
}

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
    let mut marks = HashMap::new();
    let mut probe = TopicPartitionList::new();
    for &p in partitions {
        let (low, high) = client.fetch_watermarks(topic, p, Duration::from_secs(10))?;
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
    let deadline = Instant::now() + Duration::from_secs(30);
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
/// Tansu 0.6 answers "none" with offset 0 instead of Kafka's -1, so an answer whose record
/// is stamped before `time` is read as "none". Same requirements on `client` as [`fetch_start`].
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
            Offset::Offset(o) if o < high => {
                let first = first_record(client, topic, partition, o.max(low))?;
                let stamped_before = first.and_then(|m| m.timestamp().to_millis()).is_some_and(|t| t < time);
                (!stamped_before).then_some(o.max(low))
            }
            _ => None,
        };
        offsets.insert(partition, found);
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-X` takes KEY=VALUE and says what is wrong otherwise.
    #[test]
    fn overrides_are_key_value_pairs() {
        assert_eq!(parse_override("linger.ms=5").unwrap(), ("linger.ms".into(), "5".into()));
        assert_eq!(parse_override("client.id=a=b").unwrap(), ("client.id".into(), "a=b".into()));
        assert!(parse_override("linger.ms").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_override("=5").unwrap_err().contains("no key"));
    }

    /// Secrets are refused on the command line and pointed at the environment.
    #[test]
    fn secrets_are_refused_as_flags() {
        let err = parse_override("sasl.password=hunter2").unwrap_err();
        assert!(err.contains("KAFKA_SASL_PASSWORD"), "{err}");
        assert!(!err.contains("hunter2"), "the secret must not be echoed: {err}");
        assert!(parse_override("ssl.key.password=x").is_err());
    }

    /// `partition_of` places a key where librdkafka's default partitioner does, so that the
    /// sensor finds the readings that earlier versions (which let librdkafka choose) wrote.
    #[tokio::test]
    async fn partition_of_agrees_with_librdkafka() {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        const PARTITIONS: i32 = 7;
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        cluster.create_topic("placed", PARTITIONS, 1).unwrap();
        let producer: FutureProducer = KafkaArgs::new(cluster.bootstrap_servers()).client_config(&[]).create().unwrap();
        for i in 1..=50 {
            let key = format!("sensor-{i}");
            let record: FutureRecord<'_, str, str> = FutureRecord::to("placed").key(key.as_str()).payload("{}");
            let delivered = producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
            assert_eq!(
                delivered.partition,
                partition_of(key.as_bytes(), &(0..PARTITIONS).collect::<Vec<_>>()),
                "{key}"
            );
        }
    }

    /// `flush` returns once every record sent is reported on, not before; a broker that never
    /// answers makes it return false when its time is up, with the records still outstanding.
    #[test]
    fn flush_waits_for_every_report() {
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        cluster.create_topic("flushed", 3, 1).unwrap();
        let args = KafkaArgs::new(cluster.bootstrap_servers());
        let producer = reliable_producer(&args, &[("linger.ms", "50")], Deliveries::default()).unwrap();
        for round in 1..=3u64 {
            for i in 0..1000 {
                let key = format!("key-{i}");
                send(&producer, BaseRecord::to("flushed").key(key.as_str()).payload("{}")).unwrap();
            }
            assert!(flush(&producer, Duration::from_secs(30)));
            assert_eq!((producer.context().acknowledged(), producer.context().failed()), (round * 1000, 0));
        }

        let nowhere = KafkaArgs::new(format!(
            "127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        ));
        let producer = reliable_producer(&nowhere, &[], Deliveries::default()).unwrap();
        send(&producer, BaseRecord::to("flushed").key("k").payload("{}")).unwrap();
        assert!(!flush(&producer, Duration::from_millis(300)));
        assert_eq!(producer.context().outstanding(), 1);
    }

    /// A missing topic lists what the broker has, and names the likely one for a typo.
    #[test]
    fn a_missing_topic_names_the_likely_one() {
        let existing = vec!["weather".to_string(), "weather.dlq".to_string()];
        assert_eq!(others("wether", &existing), " (it has `weather`, `weather.dlq`; did you mean `weather`?)");
        assert_eq!(others("orders", &existing), " (it has `weather`, `weather.dlq`)");
        assert_eq!(others("orders", &[]), " (it has no topics)");
    }

    /// One kind of error is said once, then not again for a while; another kind is said.
    #[test]
    fn repeated_errors_are_said_once_in_a_while() {
        assert!(once_in_a_while("test: all brokers down"));
        assert!(!once_in_a_while("test: all brokers down"));
        assert!(once_in_a_while("test: transport failure"));
    }

    /// Overrides win over the project's defaults.
    #[test]
    fn overrides_win_over_defaults() {
        let mut args = KafkaArgs::new("b:1");
        args.overrides.push(("acks".into(), "1".into()));
        let config = args.client_config(&[("acks", "all"), ("linger.ms", "5")]);
        assert_eq!(config.get("acks"), Some("1"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:1"));
    }
}
