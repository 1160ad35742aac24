//! Where each sensor left off: the reading with the highest `record_id` of every sensor already
//! in the topic.
//!
//! The walkthrough's sensor started again at `record_id` 1 after a restart. Ours reads the
//! tail of the partition each sensor publishes to (backwards, in growing chunks) until it has
//! found every sensor placed there, or reached the beginning, and continues each walk after
//! the highest `record_id` it found: a stray older reading at the end of the topic (a replayed
//! message, a second writer) is not where the walk stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use weather_common::kafka;
use weather_common::meter::{counted, thousands};
use weather_common::shutdown::Stop;
use weather_common::Reading;

/// Records read first from the end of a partition; each further chunk is 4 times larger, up
/// to [`MAX_CHUNK`], so that a stop is noticed between chunks.
const FIRST_CHUNK: i64 = 1024;
const MAX_CHUNK: i64 = 65_536;

/// The last reading of a sensor's walk, and where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The reading with the highest `record_id`.
    pub last: Reading<'static>,
    pub partition: i32,
    pub offset: i64,
    /// The newest reading by offset, where it has a lower `record_id` than `last` (a stray).
    pub stray: Option<(i64, u64)>,
}

/// The highest reading found so far of each sensor, with the newest by offset beside it.
#[derive(Default)]
struct Tail {
    found: HashMap<String, Found>,
}

impl Tail {
    /// Takes in the readings of one chunk, `(offset, reading)` in offset order, of `partition`.
    /// Only sensors not found in a newer chunk are looked at: what lies before a sensor's
    /// newest chunk is older than everything in it.
    fn take_chunk(&mut self, partition: i32, chunk: Vec<(i64, Reading<'static>)>) {
        let mut newest: HashMap<String, Found> = HashMap::new();
        for (offset, reading) in chunk {
            if self.found.contains_key(reading.sensor_id.as_ref()) {
                continue;
            }
            let record_id = reading.record_id;
            match newest.get_mut(reading.sensor_id.as_ref()) {
                Some(found) => {
                    if record_id >= found.last.record_id {
                        (found.last, found.offset, found.stray) = (reading, offset, None);
                    } else {
                        found.stray = Some((offset, record_id));
                    }
                }
                None => {
                    let found = Found { last: reading, partition, offset, stray: None };
                    newest.insert(found.last.sensor_id.to_string(), found);
                }
            }
        }
        self.found.extend(newest);
    }
}

/// Which partition each of `sensors` publishes to, for a topic of `partitions`.
pub fn placement<'a>(
    sensors: impl IntoIterator<Item = &'a str>,
    partitions: &[i32],
) -> BTreeMap<i32, BTreeSet<String>> {
    let mut placed: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for sensor in sensors {
        let partition = kafka::partition_of(sensor.as_bytes(), partitions);
        placed.entry(partition).or_default().insert(sensor.to_string());
    }
    placed
}

/// The last reading of each of `sensors` found in `topic`, each looked for in the partition it
/// publishes to (see [`placement`]); sensors never seen are absent. `None` if `stop` came first.
pub fn last_readings<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    watermarks: &HashMap<i32, (i64, i64)>,
    placed: &BTreeMap<i32, BTreeSet<String>>,
    stop: &Stop,
) -> KafkaResult<Option<HashMap<String, Found>>> {
    let started = Instant::now();
    let mut tail = Tail::default();
    for (&partition, sensors) in placed {
        let Some(&(low, high)) = watermarks.get(&partition) else { continue };
        let mut end = high;
        let mut chunk = FIRST_CHUNK;
        let missing = |tail: &Tail| sensors.iter().any(|s| !tail.found.contains_key(s));
        while end > low && missing(&tail) {
            if stop.requested() {
                return Ok(None);
            }
            let start = (end - chunk).max(low);
            if end - start > FIRST_CHUNK {
                tracing::info!(
                    "looking for where {} left off: reading offsets {}..{} of partition {partition} ({} to go)",
                    sensors.iter().filter(|s| !tail.found.contains_key(*s)).cloned().collect::<Vec<_>>().join(", "),
                    thousands(start as u64),
                    thousands(end as u64),
                    counted((start - low) as u64, "older reading")
                );
            }
            let mut readings = Vec::new();
            kafka::read_range(client, topic, partition, (start, end), (low, high), |offset, key, value| {
                if let Ok(reading) = Reading::parse(value, key) {
                    if sensors.contains(reading.sensor_id.as_ref()) {
                        readings.push((offset, reading.into_owned()));
                    }
                }
            })?;
            tail.take_chunk(partition, readings);
            end = start;
            chunk = (chunk * 4).min(MAX_CHUNK);
        }
    }
    tracing::debug!("found where {} left off in {:?}", counted(tail.found.len() as u64, "sensor"), started.elapsed());
    Ok(Some(tail.found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor: &str, record_id: u64) -> Reading<'static> {
        Reading {
            sensor_id: sensor.to_string().into(),
            record_id,
            temperature_tenths: 100,
            co_concentration: 500,
            humidity: 50,
        }
    }

    /// A stray older reading after the walk's last one does not move the walk back: the
    /// highest record id wins, and the stray is reported.
    #[test]
    fn the_highest_record_id_wins_over_a_newer_stray() {
        let mut tail = Tail::default();
        let mut chunk: Vec<_> = (1..=50).map(|id| (id as i64 - 1, reading("sensor-1", id))).collect();
        chunk.push((50, reading("sensor-1", 1)));
        chunk.push((51, reading("sensor-2", 7)));
        tail.take_chunk(0, chunk);
        let found = &tail.found["sensor-1"];
        assert_eq!((found.last.record_id, found.offset, found.stray), (50, 49, Some((50, 1))));
        assert_eq!((tail.found["sensor-2"].last.record_id, tail.found["sensor-2"].stray), (7, None));
    }

    /// A sensor found in a newer chunk is not looked at again in older ones.
    #[test]
    fn a_newer_chunk_settles_a_sensor() {
        let mut tail = Tail::default();
        tail.take_chunk(0, vec![(100, reading("a", 10))]);
        tail.take_chunk(0, vec![(5, reading("a", 99)), (6, reading("b", 3))]);
        assert_eq!(tail.found["a"].last.record_id, 10);
        assert_eq!(tail.found["b"].offset, 6);
    }

    /// Sensors are looked for where they publish, each in one partition.
    #[test]
    fn placement_groups_sensors_by_partition() {
        let sensors: Vec<String> = (1..=8).map(|i| format!("sensor-{i}")).collect();
        let placed = placement(sensors.iter().map(String::as_str), &[0, 1, 2]);
        assert_eq!(placed.values().map(BTreeSet::len).sum::<usize>(), 8);
        for (partition, names) in &placed {
            for name in names {
                assert_eq!(kafka::partition_of(name.as_bytes(), &[0, 1, 2]), *partition);
            }
        }
    }
}
