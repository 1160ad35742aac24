//! Looking a topic up: its partitions, retrying an unreachable broker until the connect
//! timeout, and a missing topic said with what the broker has instead.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};

use super::{log, KafkaArgs};
use crate::shutdown::Stop;

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
         `scripts/stack topic {topic} 3` (the local stack, whose `up` creates `weather`)",
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
    let started = Instant::now();
    let deadline = || started + if log::answered() { args.connect_timeout() } else { args.first_answer_timeout() };
    let mut backoff = Duration::from_millis(200);
    let mut unknown_since: Option<Instant> = None;
    let mut said = false;
    loop {
        let attempt = deadline()
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        let last = match topic_partitions(client, topic, attempt) {
            Ok(Some(ids)) => return Ok(ids),
            Ok(None) => {
                // The broker answered: it does not know the topic.
                let since = *unknown_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= MISSING_TOPIC_GRACE || Instant::now() + backoff > deadline() {
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
            let deadline = deadline();
            if Instant::now() + backoff > deadline {
                let seconds = deadline.saturating_duration_since(started).as_secs();
                return Err(TopicError::Unreachable { brokers: brokers.clone(), seconds, last });
            }
            // Said once; librdkafka's own errors stay quiet until a broker has answered.
            if !said {
                let left = deadline.saturating_duration_since(started).as_secs();
                tracing::warn!(
                    "no Kafka broker answers at {brokers} ({last}); retrying for up to {left} s (--connect-timeout)"
                );
                said = true;
            } else {
                tracing::debug!("no Kafka broker answered at {brokers} yet ({last}); retrying in {backoff:?}");
            }
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
    log::answered_now();
    Ok(metadata.topics().iter().find(|t| t.name() == topic).and_then(|t| {
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        (t.error().is_none() && !ids.is_empty()).then_some(ids)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing topic lists what the broker has, and names the likely one for a typo.
    #[test]
    fn a_missing_topic_names_the_likely_one() {
        let existing = vec!["weather".to_string(), "weather.dlq".to_string()];
        assert_eq!(others("wether", &existing), " (it has `weather`, `weather.dlq`; did you mean `weather`?)");
        assert_eq!(others("orders", &existing), " (it has `weather`, `weather.dlq`)");
        assert_eq!(others("orders", &[]), " (it has no topics)");
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
}
