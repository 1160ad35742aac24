//! Where each sensor left off: the newest reading of every sensor already in the topic.
//!
//! The walkthrough's sensor started again at `record_id` 1 after a restart. Ours reads the
//! tail of each partition (backwards, in growing chunks) until it has found every sensor it
//! is about to drive, or reached the beginning, and continues the walk from there.

use std::collections::{HashMap, HashSet};

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use weather_common::kafka;
use weather_common::Reading;

const FIRST_CHUNK: i64 = 1024;

/// The newest reading of each of `sensors` found in `topic`; sensors never seen are absent.
pub fn last_readings<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    watermarks: &HashMap<i32, (i64, i64)>,
    sensors: &HashSet<String>,
) -> KafkaResult<HashMap<String, Reading<'static>>> {
    let mut found: HashMap<String, Reading<'static>> = HashMap::new();
    let mut partitions: Vec<_> = watermarks.iter().collect();
    partitions.sort();
    for (&partition, &(low, high)) in partitions {
        let mut end = high;
        let mut chunk = FIRST_CHUNK;
        while end > low && found.len() < sensors.len() {
            let start = (end - chunk).max(low);
            // Within a chunk the newest reading wins; a sensor found in a newer chunk is done.
            let mut newest: HashMap<String, Reading<'static>> = HashMap::new();
            kafka::read_range(client, topic, partition, (start, end), (low, high), |key, value| {
                let Ok(reading) = Reading::parse(value, key) else { return };
                if sensors.contains(reading.sensor_id.as_ref()) && !found.contains_key(reading.sensor_id.as_ref()) {
                    newest.insert(reading.sensor_id.to_string(), reading.into_owned());
                }
            })?;
            for (sensor, reading) in newest {
                match found.get(&sensor) {
                    Some(known) if known.record_id >= reading.record_id => {}
                    _ => {
                        found.insert(sensor, reading);
                    }
                }
            }
            end = start;
            chunk = chunk.saturating_mul(4);
        }
    }
    Ok(found)
}
