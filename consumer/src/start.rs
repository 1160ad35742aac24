//! Where a run starts and where it stops for an output: the plan, and what `--dry-run` prints.
//! Pure: the Kafka look-ups happen in [`weather_common::source`], and are passed in.
//!
//! A start position never makes an existing output skip readings it has not seen, as in
//! Spark: it can only take the output back. For an output with a checkpoint, the output is
//! rolled back to the newest checkpoint mark that has not read past the position in any
//! partition, and recomputed from there; the windows before that mark are kept as they are. A
//! new output (no checkpoint yet) starts at the position itself; by default, at the beginning.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use weather_common::position::Start;
use weather_common::source::{start_offsets, SourceError};

use crate::checkpoint::Checkpoint;

/// Where the output's state comes from in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A new output: no checkpoint, a rebuild, or a start before the oldest mark.
    Fresh,
    /// The checkpoint, as it is.
    Resumed,
    /// The checkpoint rolled back to mark `index` of its history.
    RolledBack { index: usize },
}

/// Where every partition starts, and from which state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub origin: Origin,
    /// Next offset to read, per partition.
    pub from: BTreeMap<i32, i64>,
}

/// Plans the start of a run. `positions` is `start` looked up on the broker, per partition
/// (`None`: no constraint; a new output reads it from the beginning); `watermarks` are the
/// partitions' (low, high) offsets now.
pub fn plan(
    topic: &str,
    start: &Start,
    checkpoint: Option<&Checkpoint>,
    positions: &BTreeMap<i32, Option<i64>>,
    watermarks: &HashMap<i32, (i64, i64)>,
    allow_data_loss: bool,
) -> Result<Plan, SourceError> {
    if let Some(c) = checkpoint.filter(|_| *start != Start::Earliest) {
        // Marks of a topic that was deleted and created again say nothing about the new one.
        for (&partition, &resume) in &c.offsets {
            let high = watermarks.get(&partition).map_or(0, |&(_, high)| high);
            if resume > high {
                return Err(SourceError::AheadOfTopic { topic: topic.into(), partition, resume, high });
            }
        }
    }
    let constraints: BTreeMap<i32, i64> = positions.iter().filter_map(|(&p, &o)| Some((p, o?))).collect();
    let (origin, requested) = match (checkpoint, start) {
        (None, _) | (Some(_), Start::Earliest) => (Origin::Fresh, positions.clone()),
        (Some(c), Start::Resume | Start::Committed) => (Origin::Resumed, resume_at(&c.offsets, positions)),
        (Some(c), _) => match c.last_mark_not_after(&constraints) {
            Some(index) if index + 1 == c.history.len() => (Origin::Resumed, resume_at(&c.offsets, positions)),
            Some(index) => (Origin::RolledBack { index }, resume_at(&c.history[index].offsets, positions)),
            None => (Origin::Fresh, positions.clone()),
        },
    };
    let from = start_offsets(topic, &requested, watermarks, allow_data_loss)?;
    Ok(Plan { origin, from })
}

/// A state's offsets for every partition of the topic; partitions it never read start at
/// the beginning.
fn resume_at(offsets: &BTreeMap<i32, i64>, partitions: &BTreeMap<i32, Option<i64>>) -> BTreeMap<i32, Option<i64>> {
    partitions.keys().map(|&p| (p, offsets.get(&p).copied())).collect()
}

/// What `--dry-run` prints: the plan, per partition and per sensor.
#[derive(Debug, Clone)]
pub struct DryRun {
    pub output: String,
    /// How the output's state is obtained, in words.
    pub origin: String,
    /// Per partition: first offset read, where reading stops (`None`: follows the topic, or
    /// at the first reading stamped at or after the `--until` time), and the end now.
    pub partitions: Vec<(i32, i64, Option<i64>, i64)>,
    /// How the run ends, in words.
    pub until: String,
    /// Where the output would be uploaded, in words.
    pub uploads: String,
    /// The window length, in days.
    pub window_days: u32,
    /// Per sensor: windows kept, rewritten and written anew (inclusive ranges; the last
    /// window written anew where the readings' tails show it).
    pub sensors: Vec<SensorPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorPlan {
    pub sensor_id: String,
    /// The newest window kept as it is.
    pub kept_up_to: Option<u64>,
    /// Windows written before and written again by this run.
    pub rewritten: Option<(u64, u64)>,
    /// The first window this run writes that was never written, and the last one the readings
    /// in range complete (when the partition's tail shows it).
    pub new_from: u64,
    pub new_up_to: Option<u64>,
}

/// Per sensor, what the run keeps, rewrites and adds: `start` is the state the run starts from,
/// `current` the checkpoint as it is now (if any), `last_records` the newest record id per
/// sensor among the readings the run will read (from the partitions' tails), and `size` the
/// window length.
pub fn sensor_plans(
    start: &crate::window::Windows,
    current: Option<&crate::window::Windows>,
    last_records: &BTreeMap<String, u64>,
) -> Vec<SensorPlan> {
    let kept = start.last_written();
    let written = current.map(|c| c.last_written()).unwrap_or_default();
    let size = u64::from(start.size().get());
    let mut sensors: Vec<String> = kept.keys().chain(written.keys()).chain(last_records.keys()).cloned().collect();
    sensors.sort();
    sensors.dedup();
    sensors
        .into_iter()
        .map(|sensor_id| {
            let kept_up_to = kept.get(&sensor_id).copied();
            let first = kept_up_to.map_or(1, |k| k + 1);
            let rewritten = written.get(&sensor_id).copied().filter(|&w| w >= first).map(|w| (first, w));
            let new_from = rewritten.map_or(first, |(_, w)| w + 1);
            // The windows that the newest record completes: those whose last day it reached.
            let new_up_to = last_records.get(&sensor_id).map(|&r| r / size).filter(|&w| w >= new_from);
            SensorPlan { sensor_id, kept_up_to, rewritten, new_from, new_up_to }
        })
        .collect()
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dry run: nothing is consumed, written or committed")?;
        writeln!(f, "output {}: {}", self.output, self.origin)?;
        writeln!(f, "{:>9} {:>12} {:>12} {:>12}", "PARTITION", "FROM", "TO", "READINGS")?;
        let mut total = Some(0);
        for &(partition, from, to, end) in &self.partitions {
            let (to_text, count) = match to {
                Some(to) => (to.to_string(), Some((to - from).max(0))),
                None => (format!("({end}+)"), None),
            };
            total = total.zip(count).map(|(t, c)| t + c);
            let count = count.map_or(format!("{}+", (end - from).max(0)), |c| c.to_string());
            writeln!(f, "{partition:>9} {from:>12} {to_text:>12} {count:>12}")?;
        }
        if let Some(total) = total {
            writeln!(f, "{:>9} {:>12} {:>12} {total:>12}", "total", "", "")?;
        }
        writeln!(f, "then: {}", self.until)?;
        writeln!(f, "uploads: {}", self.uploads)?;
        writeln!(f, "{}-day windows, per sensor:", self.window_days)?;
        if self.sensors.is_empty() {
            writeln!(f, "  none yet: the readings in range will say")?;
        }
        let range = |(a, b): (u64, u64)| if a == b { a.to_string() } else { format!("{a}-{b}") };
        for s in &self.sensors {
            let kept = s.kept_up_to.map_or("none".to_string(), |k| range((1, k)));
            let rewritten = s.rewritten.map_or("none".to_string(), range);
            let new = match s.new_up_to {
                Some(last) => range((s.new_from, last)),
                None => format!("from {} as readings complete them", s.new_from),
            };
            writeln!(f, "  {:<16} kept {kept}; rewritten {rewritten}; new {new}", s.sensor_id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Format;
    use crate::rules::Rules;
    use crate::units::Unit;
    use crate::window::{WindowSize, Windows};

    fn checkpoint_with_marks(marks: &[(i64, i64, u64)]) -> Checkpoint {
        let rules = Rules {
            topic: "weather".into(),
            window: WindowSize::WEEK,
            unit: Unit::Celsius,
            format: Format::Csv,
            sensor_column: false,
        };
        let mut c = Checkpoint::new(rules, Windows::new(WindowSize::WEEK));
        for &(p0, p1, len) in marks {
            (c.offsets, c.output_len) = (BTreeMap::from([(0, p0), (1, p1)]), len);
            c.remember();
        }
        c
    }

    /// A position before the checkpoint rolls back to the newest mark not past it; at or after
    /// the checkpoint, the output resumes; before the oldest mark, it starts anew there.
    #[test]
    fn start_positions_roll_an_existing_output_back() {
        let marks = HashMap::from([(0, (0, 100)), (1, (0, 100))]);
        let c = checkpoint_with_marks(&[(10, 10, 50), (40, 30, 120), (90, 80, 300)]);
        let at = |p0: Option<i64>, p1: Option<i64>| BTreeMap::from([(0, p0), (1, p1)]);
        let plan_for = |start: &Start, positions| plan("weather", start, Some(&c), &positions, &marks, false).unwrap();

        let back = plan_for(&Start::Time(0), at(Some(50), Some(35)));
        assert_eq!(back, Plan { origin: Origin::RolledBack { index: 1 }, from: BTreeMap::from([(0, 40), (1, 30)]) });
        let resumed = plan_for(&Start::Latest, at(Some(100), Some(100)));
        assert_eq!(resumed, Plan { origin: Origin::Resumed, from: BTreeMap::from([(0, 90), (1, 80)]) });
        let only_p0 = plan_for(&Start::Offsets(BTreeMap::from([(0, 39)])), at(Some(39), None));
        assert_eq!(only_p0.origin, Origin::RolledBack { index: 0 });
        let before_all = plan_for(&Start::Time(0), at(Some(5), Some(5)));
        assert_eq!(before_all, Plan { origin: Origin::Fresh, from: BTreeMap::from([(0, 5), (1, 5)]) });
        let committed = plan_for(&Start::Committed, at(Some(3), None));
        assert_eq!(committed.origin, Origin::Resumed, "the checkpoint, not the group, says where the output is");
        let rebuild = plan_for(&Start::Earliest, at(None, None));
        assert_eq!(rebuild, Plan { origin: Origin::Fresh, from: BTreeMap::from([(0, 0), (1, 0)]) });
        let recreated = HashMap::from([(0, (0, 50)), (1, (0, 100))]);
        let err = plan("weather", &Start::Latest, Some(&c), &at(Some(50), Some(100)), &recreated, false).unwrap_err();
        assert!(err.to_string().contains("created again"), "no rolling back into another topic's history: {err}");
        let fresh = plan("weather", &Start::Latest, None, &at(Some(100), Some(100)), &marks, false).unwrap();
        assert_eq!(fresh, Plan { origin: Origin::Fresh, from: BTreeMap::from([(0, 100), (1, 100)]) });
    }

    /// Per sensor: windows up to the start state are kept, those written since are rewritten,
    /// and the tail's newest record says how far the new ones go.
    #[test]
    fn sensor_plans_split_kept_rewritten_and_new() {
        let reading = |sensor: &str, record_id| weather_common::Reading {
            sensor_id: sensor.to_string().into(),
            record_id,
            temperature_tenths: 0,
            co_concentration: 100,
            humidity: 50,
        };
        let mut start = Windows::new(WindowSize::WEEK);
        (1..=16).for_each(|d| {
            start.add(&reading("a", d));
        });
        let mut current = start.clone();
        (17..=30).for_each(|d| {
            current.add(&reading("a", d));
        });
        let tails = BTreeMap::from([("a".to_string(), 60), ("b".to_string(), 20)]);
        let plans = sensor_plans(&start, Some(&current), &tails);
        assert_eq!(
            plans,
            [
                SensorPlan {
                    sensor_id: "a".into(),
                    kept_up_to: Some(2),
                    rewritten: Some((3, 4)),
                    new_from: 5,
                    new_up_to: Some(8)
                },
                SensorPlan {
                    sensor_id: "b".into(),
                    kept_up_to: None,
                    rewritten: None,
                    new_from: 1,
                    new_up_to: Some(2)
                },
            ]
        );
    }
}
