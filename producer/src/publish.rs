//! The Kafka side of the sensor: paced sending, delivery reports, flush on shutdown.
//!
//! Delivery is idempotent with acks from all replicas. A reading counts as sent only when
//! the broker acknowledged it; a reading that failed for good stops the sensor, because
//! sending on would leave a gap in `record_id`.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use weather_common::kafka::{self, Deliveries, KafkaArgs};
use weather_common::meter::{counted, thousands, Meter};
use weather_common::metrics;
use weather_common::shutdown::Stop;

use crate::config::Settings;
use crate::walk::Walk;

const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// What a producer run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sent {
    pub sent: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 { self.acknowledged as f64 / seconds } else { 0.0 };
        write!(
            f,
            "sent {}: {} acknowledged, {} failed, in {seconds:.1} s ({}/s)",
            counted(self.sent, "reading"),
            thousands(self.acknowledged),
            thousands(self.failed),
            thousands(rate as u64)
        )
    }
}

/// How often the progress meter is told, in readings: it reads the clock.
const METER_EVERY: u64 = 256;

/// Why the sensor stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("a reading could not be delivered ({0}); stopped so that record ids keep no gap")]
    Delivery(String),
    #[error(
        "{unacked} readings were not acknowledged within {FLUSH_TIMEOUT:?} of shutting down: is the broker reachable?"
    )]
    Flush { unacked: u64 },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// The sensor's Kafka producer. Create it before looking anything else up, so that it
/// connects (brokers, idempotent producer id) in the background meanwhile: handed a burst the
/// moment it was created, it ran a million readings 0.4 s slower on librdkafka's mock cluster
/// (weather-bench), and a pause before the first send had the same cure.
pub fn producer(kafka_args: &KafkaArgs) -> Result<ThreadedProducer<Deliveries>, PublishError> {
    Ok(kafka::reliable_producer(kafka_args, &DELIVERY_SETTINGS, Deliveries::default())?)
}

/// How the sensor batches its readings; the benchmark's produce baseline uses the same.
pub const DELIVERY_SETTINGS: [(&str, &str); 2] = [
    // Batches of up to 100 ms, not librdkafka's 5 ms. A paced fleet (8 sensors at 250 readings
    // per second) then writes up to 10 record batches a second per partition instead of up to
    // 200. Tansu 0.6's memory storage lists every batch of a partition for each fetch and answers
    // only once a pass finds no new one (docs/brokers.md): with 5 ms batches, after a few minutes
    // the listing outlasted the gap between batches and a following consumer's fetch was held
    // for tens of seconds at a time. A sensor sending as fast as it can (`--rate 0`) fills its
    // batches (10,000 readings) in well under 100 ms.
    ("linger.ms", "100"),
    ("compression.type", "lz4"),
];

/// Sends readings from `walks` with `producer` to the settings' topic, at their pace, until
/// their count per sensor is sent or `stop` is requested, each sensor's to its partition among
/// `partitions` ([`kafka::partition_of`]).
pub fn publish(
    producer: &ThreadedProducer<Deliveries>,
    settings: &Settings,
    partitions: &[i32],
    walks: &mut [Walk],
    stop: &Stop,
) -> Result<Sent, PublishError> {
    let (topic, count) = (settings.topic.as_str(), settings.count);
    // Where the topic's partitions live, known before the first reading is sent rather than
    // looked up while readings pile up: on Tansu the same million readings went 1.5 to 2
    // times faster (weather-bench).
    kafka::warm_up(producer, topic, FLUSH_TIMEOUT);
    let placed: Vec<i32> =
        walks.iter().map(|walk| kafka::partition_of(walk.sensor_id().as_bytes(), partitions)).collect();
    let started = Instant::now();
    let mut meter = Meter::new(settings.progress.display(), "readings sent", count.map(|n| n * walks.len() as u64));
    let tick = settings.pace.interval();
    let mut sent = 0u64;
    let mut round = 0u64;
    let mut payload = Vec::with_capacity(160);
    'rounds: while count.is_none_or(|n| round < n) {
        if let Some(tick) = tick {
            if !pace(started + tick.mul_f64(round as f64), stop) {
                break;
            }
        }
        for (walk, &partition) in walks.iter_mut().zip(&placed) {
            if stop.requested() || producer.context().failed() > 0 {
                break 'rounds;
            }
            payload.clear();
            walk.next_reading().write_json(&mut payload);
            kafka::send(producer, BaseRecord::to(topic).partition(partition).key(walk.sensor_id()).payload(&payload))?;
            sent += 1;
            if tick.is_some() || sent.is_multiple_of(METER_EVERY) {
                let context = producer.context();
                publish_counts(topic, sent, context);
                meter.update(sent, || {
                    format!(
                        "{} acknowledged, {} failed",
                        thousands(context.acknowledged()),
                        thousands(context.failed())
                    )
                });
            }
        }
        round += 1;
    }
    meter.finish();
    let flushed = kafka::flush(producer, FLUSH_TIMEOUT);
    let context = producer.context();
    publish_counts(topic, sent, context);
    let outcome =
        Sent { sent, acknowledged: context.acknowledged(), failed: context.failed(), elapsed: started.elapsed() };
    if let Some(failure) = context.first_failure() {
        return Err(PublishError::Delivery(failure));
    }
    if !flushed {
        return Err(PublishError::Flush { unacked: outcome.sent - outcome.acknowledged });
    }
    Ok(outcome)
}

/// The figures the summary counts, for the metrics; and that the sensor is alive.
fn publish_counts(topic: &str, sent: u64, deliveries: &Deliveries) {
    let topic = [("topic", topic.to_string())];
    metrics::set_counter("weather_producer_readings_sent_total", &topic, sent);
    metrics::set_counter("weather_producer_readings_acknowledged_total", &topic, deliveries.acknowledged());
    metrics::set_counter("weather_producer_readings_failed_total", &topic, deliveries.failed());
    metrics::health_of_job().alive();
}

/// Waits until `at`, waking often enough to notice a stop; false if a stop came first.
fn pace(at: Instant, stop: &Stop) -> bool {
    loop {
        if stop.requested() {
            return false;
        }
        metrics::health_of_job().alive();
        let now = Instant::now();
        if now >= at {
            return true;
        }
        std::thread::sleep((at - now).min(Duration::from_millis(50)));
    }
}
