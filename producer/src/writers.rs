//! One process per sensor: another process writing the same sensor's walk is noticed at the
//! tail of its partition while this one runs, and stops the sensor.
//!
//! Two writers of one sensor each continue the walk after the highest `record_id` they found,
//! so the topic gets record ids twice and the consumer rejects one of each as a duplicate (the
//! compose demo once did this to about 18 minutes of live readings). One writer's readings follow
//! each other in their partition with consecutive record ids (idempotent delivery keeps their
//! order and sends none twice), so a reading of one of our sensors written since this run
//! started whose record id is not the one after that sensor's previous reading is another
//! writer's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use weather_common::kafka::{self, KafkaArgs, LoggingContext};
use weather_common::meter::thousands;
use weather_common::Reading;

use crate::resume::Found;

/// Records read at most per partition and look: more written since the last look (a sensor
/// sending as fast as the broker takes them) are skipped, and the look starts afresh after them.
const MOST_PER_LOOK: i64 = 4096;

/// A reading of one of our sensors that this process did not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rival {
    pub sensor_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record_id: u64,
    /// The record id of the sensor's reading before it in the partition.
    pub after: u64,
}

impl std::fmt::Display for Rival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another process is writing {sensor}'s walk to partition {partition} of `{topic}`: the reading at \
             offset {offset} has record_id {id} where {sensor}'s next is {next}, so every record id would be \
             written twice and the consumer would reject one of each as a duplicate. Run one process per \
             sensor: stop the other one (a history run with --count belongs before the live sensor starts, \
             not beside it). Stopped so that the walk is not written twice",
            sensor = self.sensor_id,
            partition = self.partition,
            topic = self.topic,
            offset = thousands(self.offset as u64),
            id = self.record_id,
            next = self.after + 1,
        )
    }
}

/// Each sensor's record id last seen in its partition: the pure part of the watch.
#[derive(Debug, Default)]
struct Continuity {
    last: HashMap<String, u64>,
}

impl Continuity {
    /// Takes in the next reading of `sensor_id` in its partition; false if it does not follow
    /// the sensor's previous one. A sensor not known yet (after a skip) starts here.
    fn follows(&mut self, sensor_id: &str, record_id: u64) -> bool {
        match self.last.insert(sensor_id.to_string(), record_id) {
            Some(previous) => record_id == previous + 1,
            None => true,
        }
    }

    /// The record id last seen of `sensor_id`.
    fn last(&self, sensor_id: &str) -> Option<u64> {
        self.last.get(sensor_id).copied()
    }

    /// Forgets `sensors`: the readings between the last look and the next were not read.
    fn forget<'a>(&mut self, sensors: impl IntoIterator<Item = &'a String>) {
        for sensor in sensors {
            self.last.remove(sensor);
        }
    }
}

/// Watches the partitions our sensors write to, from where they ended when this run started.
pub struct Watch {
    client: BaseConsumer<LoggingContext>,
    topic: String,
    placed: BTreeMap<i32, BTreeSet<String>>,
    /// Per partition, its end when the run started.
    start: HashMap<i32, i64>,
    /// Per partition, the offset the next look reads from.
    next: HashMap<i32, i64>,
    continuity: Continuity,
}

/// How a look finds the partitions' ends. Tansu lists the start of the last record batch + 1
/// as a partition's end, so that a large last batch of ours could hide a few readings of
/// another writer before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ends {
    /// As the broker lists them: the periodic looks of a running sensor.
    Listed,
    /// By reading each partition's last record (one fetch each): the last look of a run.
    Confirmed,
}

impl Watch {
    /// A watch of `placed` (partition: its sensors) from `watermarks`' ends, each sensor
    /// expected to go on after its reading in `found` (at record id 1 if it has none).
    pub fn new(
        kafka_args: &KafkaArgs,
        topic: &str,
        placed: BTreeMap<i32, BTreeSet<String>>,
        watermarks: &HashMap<i32, (i64, i64)>,
        found: &HashMap<String, Found>,
    ) -> KafkaResult<Watch> {
        let mut continuity = Continuity::default();
        for sensor in placed.values().flatten() {
            continuity.last.insert(sensor.clone(), found.get(sensor).map_or(0, |f| f.last.record_id));
        }
        let start: HashMap<i32, i64> =
            placed.keys().map(|&p| (p, watermarks.get(&p).map_or(0, |&(_, high)| high))).collect();
        Ok(Watch {
            client: kafka::metadata_client(kafka_args)?,
            topic: topic.to_string(),
            placed,
            next: start.clone(),
            start,
            continuity,
        })
    }

    /// Reads what was written to our sensors' partitions since the last look; the first
    /// reading of another writer found there, if any. `acknowledged` counts the readings this
    /// process has written (all to these partitions): while the partitions have grown by no
    /// more since the run started, nobody else wrote there, and nothing is read. On Tansu's
    /// memory storage every fetch lists every record batch of the partition, and a look that
    /// read each time slowed a sensor sending single-reading batches until its flush timed out.
    ///
    /// `how` says how the partitions' ends are looked up (see [`Ends`]).
    pub fn look(&mut self, acknowledged: impl Fn() -> u64, how: Ends) -> KafkaResult<Option<Rival>> {
        let partitions: Vec<i32> = self.placed.keys().copied().collect();
        let ends: HashMap<i32, (i64, i64)> = if how == Ends::Confirmed {
            kafka::watermarks(&self.client, &self.topic, &partitions)?
        } else {
            let mut listed = HashMap::new();
            for &partition in &partitions {
                listed
                    .insert(partition, self.client.fetch_watermarks(&self.topic, partition, Duration::from_secs(10))?);
            }
            listed
        };
        let grown: i64 =
            self.start.iter().map(|(p, &start)| ends.get(p).map_or(0, |&(_, end)| (end - start).max(0))).sum();
        // Counted after the look-up: every reading of ours it counts is acknowledged by now.
        if grown as u64 <= acknowledged() {
            return Ok(None);
        }
        let watermarks =
            if how == Ends::Confirmed { ends } else { kafka::watermarks(&self.client, &self.topic, &partitions)? };
        for (&partition, sensors) in &self.placed {
            let Some(&(low, high)) = watermarks.get(&partition) else { continue };
            let next = self.next.get(&partition).copied().unwrap_or(high).max(low);
            let start = if high - next > MOST_PER_LOOK {
                self.continuity.forget(sensors);
                high - MOST_PER_LOOK
            } else {
                next
            };
            let mut rival = None;
            let continuity = &mut self.continuity;
            kafka::read_range(
                &self.client,
                &self.topic,
                partition,
                (start, high),
                (low, high),
                |offset, key, value| {
                    let Ok(reading) = Reading::parse(value, key) else { return };
                    let sensor = reading.sensor_id.as_ref();
                    if rival.is_some() || !sensors.contains(sensor) {
                        return;
                    }
                    let after = continuity.last(sensor);
                    if !continuity.follows(sensor, reading.record_id) {
                        rival = Some(Rival {
                            sensor_id: sensor.to_string(),
                            topic: String::new(),
                            partition,
                            offset,
                            record_id: reading.record_id,
                            after: after.unwrap_or_default(),
                        });
                    }
                },
            )?;
            self.next.insert(partition, high);
            if let Some(rival) = rival {
                return Ok(Some(Rival { topic: self.topic.clone(), ..rival }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One writer's readings follow each other; a repeated, an earlier or a skipped record id
    /// is another writer's.
    #[test]
    fn only_the_next_record_id_follows() {
        let mut continuity = Continuity::default();
        continuity.last.insert("sensor-1".into(), 1095);
        assert!(continuity.follows("sensor-1", 1096));
        assert!(continuity.follows("sensor-1", 1097));
        assert!(!continuity.follows("sensor-1", 1097), "the same record id again");
        let mut continuity = Continuity::default();
        continuity.last.insert("sensor-1".into(), 1100);
        assert!(!continuity.follows("sensor-1", 7), "a live sensor's reading after a history run's");
        let mut continuity = Continuity::default();
        continuity.last.insert("sensor-1".into(), 0);
        assert!(!continuity.follows("sensor-1", 2), "a new sensor starts at 1");
    }

    /// After a skip the sensor's next reading starts it afresh, whatever its record id.
    #[test]
    fn a_forgotten_sensor_starts_afresh() {
        let mut continuity = Continuity::default();
        continuity.last.insert("sensor-1".into(), 10);
        continuity.forget(&["sensor-1".to_string()]);
        assert!(continuity.follows("sensor-1", 5000));
        assert!(continuity.follows("sensor-1", 5001));
    }
}
