//! Readings that cannot be counted are kept aside, never dropped: each goes to the dead-letter
//! topic with its original key and bytes, the reason and its origin in headers, and is
//! counted by category for the run summary.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fetch::Record;
use crate::kafka::{self, Deliveries, KafkaArgs};
use crate::meter::thousands;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

/// Where rejected readings go: flattened into the command line of every job that reads the
/// topic.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DeadLetterArgs {
    /// Topic where readings that cannot be used are kept, with the reason in a header.
    /// Default: <topic>.dlq.
    #[arg(long, env = "WEATHER_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
}

impl DeadLetterArgs {
    /// The dead-letter topic of a job that reads `read`; the error says why it cannot be.
    pub fn topic(&self, read: &str) -> Result<String, String> {
        let topic = self.dead_letter_topic.clone().unwrap_or_else(|| format!("{read}.dlq"));
        if topic == read {
            return Err(format!("--dead-letter-topic: `{topic}` is the topic being read: name another"));
        }
        Ok(topic)
    }
}

/// A message kept aside: where it was read, and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

impl<'a> From<&'a BorrowedMessage<'_>> for Origin<'a> {
    fn from(m: &'a BorrowedMessage<'_>) -> Self {
        Origin { topic: m.topic(), partition: m.partition(), offset: m.offset(), key: m.key(), payload: m.payload() }
    }
}

impl<'a> From<&'a Record<'_>> for Origin<'a> {
    fn from(r: &'a Record<'_>) -> Self {
        Origin { topic: r.topic(), partition: r.partition(), offset: r.offset(), key: r.key(), payload: r.payload() }
    }
}

pub struct DeadLetters {
    topic: String,
    kafka: KafkaArgs,
    runtime: tokio::runtime::Handle,
    /// Made at the first rejection: most runs reject nothing and need no second client.
    producer: Option<ThreadedProducer<Deliveries>>,
    counts: BTreeMap<&'static str, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("a rejected reading could not be kept aside in `{topic}`: {reason}")]
    Lost { topic: String, reason: String },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

impl DeadLetters {
    /// Dead letters go to `topic`, which is created (one partition) at the first rejection if
    /// it does not exist. `runtime` runs the admin request that creates it.
    pub fn new(args: &KafkaArgs, topic: &str, runtime: tokio::runtime::Handle) -> DeadLetters {
        DeadLetters { topic: topic.to_string(), kafka: args.clone(), runtime, producer: None, counts: BTreeMap::new() }
    }

    fn ensure_producer(&mut self) -> Result<(), DeadLetterError> {
        if self.producer.is_none() {
            if !exists(&self.kafka, &self.topic)? {
                self.runtime.block_on(create(&self.kafka, &self.topic));
            }
            // A rejected value may be far larger than a reading (an oversized one is rejected
            // for that very reason); the client must not refuse to keep it.
            let extra = [("linger.ms", "20"), ("message.max.bytes", "16777216")];
            self.producer = Some(kafka::reliable_producer(&self.kafka, &extra, Deliveries::default())?);
        }
        Ok(())
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Keeps `message` aside for `reason`, under `category`.
    pub fn keep(&mut self, message: Origin<'_>, category: &'static str, reason: &str) -> Result<(), DeadLetterError> {
        *self.counts.entry(category).or_default() += 1;
        self.ensure_producer()?;
        let producer = self.producer.as_ref().expect("made just above");
        let partition = message.partition.to_string();
        let offset = message.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "weather.reason", value: Some(reason) })
            .insert(Header { key: "weather.category", value: Some(category) })
            .insert(Header { key: "weather.source.topic", value: Some(message.topic) })
            .insert(Header { key: "weather.source.partition", value: Some(&partition) })
            .insert(Header { key: "weather.source.offset", value: Some(&offset) });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).headers(headers);
        if let Some(key) = message.key {
            record = record.key(key);
        }
        if let Some(payload) = message.payload {
            record = record.payload(payload);
        }
        Ok(kafka::send(producer, record)?)
    }

    /// Waits until every dead letter sent so far is acknowledged. `Ok(false)` if that took
    /// longer than `timeout` (the broker is slow or away: try again later).
    pub fn flush(&self, timeout: Duration) -> Result<bool, DeadLetterError> {
        let Some(producer) = &self.producer else { return Ok(true) };
        let flushed = kafka::flush(producer, timeout);
        if let Some(reason) = producer.context().first_failure() {
            return Err(DeadLetterError::Lost { topic: self.topic.clone(), reason });
        }
        Ok(flushed)
    }

    /// Rejected readings so far, by category.
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }
}

/// The summary line of a run's rejections, the same for every job: the count, and with any,
/// the count by category and the topic that keeps them, e.g.
/// ``readings rejected:  3 (duplicate 2, not-json 1), kept in `weather.dlq` ``.
pub fn summary_line(counts: &BTreeMap<&'static str, u64>, topic: &str) -> String {
    let rejected: u64 = counts.values().sum();
    let mut line = format!("readings rejected:  {}", thousands(rejected));
    if rejected > 0 {
        let by: Vec<String> = counts.iter().map(|(c, n)| format!("{c} {}", thousands(*n))).collect();
        line += &format!(" ({}), kept in `{topic}`", by.join(", "));
    }
    line
}

fn exists(args: &KafkaArgs, topic: &str) -> Result<bool, DeadLetterError> {
    let client = kafka::metadata_client(args)?;
    Ok(kafka::topic_partitions(&client, topic, Duration::from_secs(10))?.is_some())
}

/// Creates the topic; a failure is only reported, since the topic may exist all the same
/// (created by someone else, or auto-created by the broker).
async fn create(args: &KafkaArgs, topic: &str) {
    let admin = match kafka::admin_client(args) {
        Ok(admin) => admin,
        Err(e) => return tracing::warn!("could not create dead-letter topic `{topic}` ({e}); it must exist"),
    };
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics([&new_topic], &options).await {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(_) => tracing::info!("created dead-letter topic `{topic}`"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => {
                        tracing::warn!("could not create dead-letter topic `{topic}` ({code}); it must exist")
                    }
                }
            }
        }
        Err(e) => tracing::warn!("could not create dead-letter topic `{topic}` ({e}); it must exist"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, OwnedMessage};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::*;

    /// A consumer of partition 0 of `topic` on `bootstrap`, from the beginning.
    fn reader(bootstrap: &str, topic: &str) -> BaseConsumer {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "dead-letter-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
        consumer.assign(&assignment).unwrap();
        consumer
    }

    /// Polls `consumer` until it yields a message, within 30 s.
    fn next(consumer: &BaseConsumer) -> OwnedMessage {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no message within 30 s");
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                return m.detach();
            }
        }
    }

    /// A run that rejects nothing makes no client and has nothing to flush.
    #[test]
    fn nothing_rejected_needs_no_client() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        // Nothing listens on port 9: any client would fail to connect.
        let dead = DeadLetters::new(&KafkaArgs::new("127.0.0.1:9"), "weather.dlq", runtime.handle().clone());
        assert_eq!(dead.topic(), "weather.dlq");
        assert!(dead.counts().is_empty());
        assert!(dead.flush(Duration::ZERO).unwrap());
    }

    /// A kept message arrives in the dead-letter topic with its original key and bytes (or
    /// none), the reason, the category and its origin in headers, and is counted by category.
    #[test]
    fn kept_messages_carry_their_bytes_reason_and_origin() {
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        mock.create_topic("weather", 1, 1).unwrap();
        mock.create_topic("weather.dlq", 1, 1).unwrap();
        let bootstrap = mock.bootstrap_servers();
        let args = KafkaArgs::new(bootstrap.clone());
        let producer: ThreadedProducer<Deliveries> =
            kafka::reliable_producer(&args, &[], Deliveries::default()).unwrap();
        kafka::send(&producer, BaseRecord::to("weather").key(b"sensor-1".as_slice()).payload(b"\xff\xfe".as_slice()))
            .unwrap();
        kafka::send(&producer, BaseRecord::<[u8], [u8]>::to("weather")).unwrap();
        assert!(kafka::flush(&producer, Duration::from_secs(30)));

        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut dead = DeadLetters::new(&args, "weather.dlq", runtime.handle().clone());
        let source = reader(&bootstrap, "weather");
        for (category, reason) in [("not-utf8", "value is not UTF-8"), ("empty", "empty or null value")] {
            let deadline = Instant::now() + Duration::from_secs(30);
            let message = loop {
                assert!(Instant::now() < deadline, "the source message did not arrive");
                if let Some(Ok(m)) = source.poll(Duration::from_millis(100)) {
                    break m;
                }
            };
            dead.keep((&message).into(), category, reason).unwrap();
        }
        assert!(dead.flush(Duration::from_secs(30)).unwrap());
        assert_eq!(dead.counts(), &BTreeMap::from([("empty", 1), ("not-utf8", 1)]));

        let letters = reader(&bootstrap, "weather.dlq");
        let headers = |m: &OwnedMessage| -> Vec<(String, String)> {
            let h = m.headers().expect("headers");
            h.iter().map(|h| (h.key.to_string(), String::from_utf8(h.value.unwrap().to_vec()).unwrap())).collect()
        };
        let expected = |reason: &str, category: &str, offset: &str| -> Vec<(String, String)> {
            [
                ("weather.reason", reason),
                ("weather.category", category),
                ("weather.source.topic", "weather"),
                ("weather.source.partition", "0"),
                ("weather.source.offset", offset),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec()
        };
        let first = next(&letters);
        assert_eq!((first.key(), first.payload()), (Some(b"sensor-1".as_slice()), Some(b"\xff\xfe".as_slice())));
        assert_eq!(headers(&first), expected("value is not UTF-8", "not-utf8", "0"));
        let second = next(&letters);
        assert_eq!((second.key(), second.payload()), (None, None));
        assert_eq!(headers(&second), expected("empty or null value", "empty", "1"));
    }
}
