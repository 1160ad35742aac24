//! The clients every job makes, with the project's defaults: consumers that commit only what
//! they chose to and are told where each partition ends, probes for look-ups, and producers
//! with the project's delivery guarantees.

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};
use rdkafka::TopicPartitionList;

use super::{KafkaArgs, LoggingContext};

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

/// An admin client (topics: create, describe their settings), its logs routed as every client's.
pub fn admin_client(args: &KafkaArgs) -> KafkaResult<AdminClient<LoggingContext>> {
    args.client_config(&[]).create_with_context(LoggingContext)
}

fn probe_client(args: &KafkaArgs, extra: &[(&str, &str)]) -> KafkaResult<BaseConsumer<LoggingContext>> {
    // Probes want an answer now, not the broker's long poll for more records.
    let mut settings = vec![("fetch.wait.max.ms", "10")];
    settings.extend_from_slice(extra);
    args.consumer_config("weather-pipeline-reader", &settings).create_with_context(LoggingContext)
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

/// Looks `topic` up on `producer` before its first record: where the topic's partitions live is
/// then known, and librdkafka asks for the idempotent producer's id as the answer arrives. Its
/// own first try, made before any broker is connected, fails, and it tries again only 500 ms
/// later (rdkafka_idempotence.c). A failure is not fatal: sending looks again.
pub fn warm_up<C: ProducerContext>(producer: &ThreadedProducer<C>, topic: &str, timeout: Duration) {
    if let Err(e) = producer.client().fetch_metadata(Some(topic), timeout) {
        tracing::debug!("looking up `{topic}` before sending: {e}");
    }
}

/// Lets go of a librdkafka client that is no longer needed, on a thread of its own: its
/// destruction waits for its threads to end, 70 to 100 ms for a client that has talked to a
/// broker, which nothing needs to wait for. (A client that still has records to deliver is
/// flushed first by its owner; this is for look-ups and the like.)
pub fn dispose<T: Send + 'static>(client: T) {
    let spawned = std::thread::Builder::new().name("kafka-dispose".into()).spawn(move || drop(client));
    if let Err(e) = spawned {
        tracing::debug!("no thread to let a Kafka client go on ({e}): it went here");
    }
}

/// Stops fetching `partition` of `topic`: a bounded run has read it to its end. A failure only
/// means that fetching goes on (the records are then passed over), so it is logged, not returned.
pub fn pause<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partition: i32) {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    if let Err(e) = consumer.pause(&list) {
        tracing::debug!("pausing partition {partition} of `{topic}`: {e}");
    }
}
