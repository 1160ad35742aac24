//! Readings that cannot be counted are kept aside, never dropped: each goes to the dead-letter
//! topic with its original key and bytes, the reason and its origin in headers, and is
//! counted by category for the run summary.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use weather_common::kafka::{self, Deliveries, KafkaArgs};

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
    pub fn keep(
        &mut self,
        message: &BorrowedMessage<'_>,
        category: &'static str,
        reason: &str,
    ) -> Result<(), DeadLetterError> {
        *self.counts.entry(category).or_default() += 1;
        self.ensure_producer()?;
        let producer = self.producer.as_ref().expect("made just above");
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "weather.reason", value: Some(reason) })
            .insert(Header { key: "weather.category", value: Some(category) })
            .insert(Header { key: "weather.source.topic", value: Some(message.topic()) })
            .insert(Header { key: "weather.source.partition", value: Some(&partition) })
            .insert(Header { key: "weather.source.offset", value: Some(&offset) });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        Ok(kafka::send(producer, record)?)
    }

    /// Waits until every dead letter sent so far is acknowledged. `Ok(false)` if that took
    /// longer than `timeout` (the broker is slow or away: try again later).
    pub fn flush(&self, timeout: Duration) -> Result<bool, DeadLetterError> {
        let Some(producer) = &self.producer else { return Ok(true) };
        let flushed = producer.flush(timeout).is_ok();
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

fn exists(args: &KafkaArgs, topic: &str) -> Result<bool, DeadLetterError> {
    let client = kafka::metadata_client(args)?;
    Ok(kafka::topic_partitions(&client, topic, Duration::from_secs(10))?.is_some())
}

/// Creates the topic; a failure is only reported, since the topic may exist all the same
/// (created by someone else, or auto-created by the broker).
async fn create(args: &KafkaArgs, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = match args.client_config(&[]).create() {
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
