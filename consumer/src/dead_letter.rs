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
    producer: ThreadedProducer<Deliveries>,
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
    /// Dead letters go to `topic`, which is created (one partition) if it does not exist.
    pub async fn open(args: &KafkaArgs, topic: &str) -> Result<DeadLetters, DeadLetterError> {
        let admin: AdminClient<DefaultClientContext> = args.client_config(&[]).create()?;
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
        // A rejected value may be far larger than a reading (an oversized one is rejected
        // for that very reason); the client must not refuse to keep it.
        let producer = kafka::reliable_producer(
            args,
            &[("linger.ms", "20"), ("message.max.bytes", "16777216")],
            Deliveries::default(),
        )?;
        Ok(DeadLetters { topic: topic.to_string(), producer, counts: BTreeMap::new() })
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
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Waits until every dead letter sent so far is acknowledged. `Ok(false)` if that took
    /// longer than `timeout` (the broker is slow or away: try again later).
    pub fn flush(&self, timeout: Duration) -> Result<bool, DeadLetterError> {
        let flushed = self.producer.flush(timeout).is_ok();
        if let Some(reason) = self.producer.context().first_failure() {
            return Err(DeadLetterError::Lost { topic: self.topic.clone(), reason });
        }
        Ok(flushed)
    }

    /// Rejected readings so far, by category.
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }
}
