//! Windows: readings in, finished window summaries out. Pure, no I/O.
//!
//! A reading's window comes from its `record_id` (the simulated day), per sensor:
//! `window_id = (record_id - 1) div size + 1`. Arrival order does not matter, so a restart,
//! a duplicate or a reordered message can never shift a later window. A window is finished
//! when every one of its days has been seen once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use weather_common::aggregate::{Aggregate, WindowKey};
use weather_common::Reading;

use crate::units::Unit;

/// Days per window: 30 is the walkthrough's month, 7 its week. Written as the number of days,
/// and checked when read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32")]
pub struct WindowSize(u32);

impl TryFrom<u32> for WindowSize {
    type Error = String;

    fn try_from(days: u32) -> Result<WindowSize, String> {
        WindowSize::days(days)
            .ok_or_else(|| format!("a window of {days} days is not between 1 and {} days", WindowSize::MAX_DAYS))
    }
}

impl WindowSize {
    pub const MONTH: WindowSize = WindowSize(30);
    pub const WEEK: WindowSize = WindowSize(7);
    /// Bounded so that a window's day set stays small (the aggregates topic checks it too).
    pub const MAX_DAYS: u32 = weather_common::aggregate::MAX_WINDOW_DAYS;

    pub fn days(days: u32) -> Option<WindowSize> {
        (1..=Self::MAX_DAYS).contains(&days).then_some(WindowSize(days))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn id_of(self, record_id: u64) -> u64 {
        (record_id - 1) / u64::from(self.0) + 1
    }

    /// The name of the window id column: `month_id`, `week_id`, or `window_id`.
    pub fn id_column(self) -> &'static str {
        weather_common::aggregate::id_column(self.0)
    }

    /// A short name for logs and consumer group names: `month`, `week` or `<n>d`.
    pub fn label(self) -> String {
        match self {
            WindowSize::MONTH => "month".into(),
            WindowSize::WEEK => "week".into(),
            WindowSize(days) => format!("{days}d"),
        }
    }
}

/// A finished window of one sensor: exact sums, ready to be averaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSummary {
    pub sensor_id: String,
    pub window_id: u64,
    pub readings: u32,
    /// The first and last day (`record_id`) counted in it: the window's bounds when complete.
    pub first_record_id: u64,
    pub last_record_id: u64,
    /// False only for a window written at the end of a run by `--emit-partial`.
    pub complete: bool,
    pub temperature_tenths: i64,
    pub co_concentration: u64,
    pub humidity: u64,
}

/// The averages written for a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Averages {
    /// Tenths of a degree in the chosen unit.
    pub temperature_tenths: i64,
    pub co_concentration: i64,
    pub humidity: i64,
}

impl WindowSummary {
    pub fn averages(&self, unit: Unit) -> Averages {
        let n = i64::from(self.readings);
        let mean = |sum: u64| crate::units::div_round_half_even(sum as i64, n);
        Averages {
            temperature_tenths: unit.mean_tenths(self.temperature_tenths, self.readings),
            co_concentration: mean(self.co_concentration),
            humidity: mean(self.humidity),
        }
    }

    /// The window as a record of the aggregates topic (`--to-topic`), its numbers as the CSV
    /// row has them.
    pub fn aggregate(&self, size: WindowSize, unit: Unit) -> Aggregate {
        let a = self.averages(unit);
        Aggregate {
            key: WindowKey { sensor_id: self.sensor_id.clone(), window_days: size.get(), window_id: self.window_id },
            unit,
            avg_temp: crate::units::Tenths(a.temperature_tenths),
            avg_co: a.co_concentration,
            avg_humidity: a.humidity,
            readings: self.readings,
            first_record_id: self.first_record_id,
            last_record_id: self.last_record_id,
        }
    }
}

/// What became of a reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Counted in a window that is still open.
    Counted,
    /// Counted, and it finished its window.
    Finished(WindowSummary),
    /// Its day was already counted: a duplicate `record_id`.
    Duplicate,
    /// Its window was already written as partial; written windows are never rewritten.
    Late,
}

impl Outcome {
    /// Why `reading` cannot count, as a dead letter's category and reason; none if it counted.
    pub fn rejection(&self, reading: &Reading<'_>) -> Option<(&'static str, String)> {
        let (id, sensor) = (reading.record_id, &reading.sensor_id);
        match self {
            Outcome::Counted | Outcome::Finished(_) => None,
            Outcome::Duplicate => Some(("duplicate", format!("duplicate record_id {id} of {sensor}"))),
            Outcome::Late => Some(("late", format!("record_id {id} of {sensor} arrived after its window was written"))),
        }
    }
}

/// The open windows of every sensor, and which windows were already written.
/// Serializable: it is part of the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    size: WindowSize,
    /// Looked up for every reading: a fast hash, seeded per process like the default one.
    sensors: HashMap<String, SensorWindows, foldhash::fast::RandomState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SensorWindows {
    open: BTreeMap<u64, OpenWindow>,
    /// Windows written complete, as sorted disjoint inclusive ranges (usually just one).
    written: Vec<(u64, u64)>,
    /// Windows written partial by `--emit-partial`.
    written_partial: BTreeSet<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenWindow {
    /// One bit per day of the window.
    days: Vec<u64>,
    readings: u32,
    temperature_tenths: i64,
    co_concentration: u64,
    humidity: u64,
}

impl Windows {
    pub fn new(size: WindowSize) -> Self {
        Windows { size, sensors: HashMap::default() }
    }

    pub fn size(&self) -> WindowSize {
        self.size
    }

    /// Counts a reading in its window.
    pub fn add(&mut self, reading: &Reading<'_>) -> Outcome {
        let size = self.size;
        let window_id = size.id_of(reading.record_id);
        let sensor = match self.sensors.get_mut(reading.sensor_id.as_ref()) {
            Some(s) => s,
            None => self.sensors.entry(reading.sensor_id.to_string()).or_default(),
        };
        if contains(&sensor.written, window_id) {
            return Outcome::Duplicate;
        }
        if sensor.written_partial.contains(&window_id) {
            return Outcome::Late;
        }
        let day = ((reading.record_id - 1) % u64::from(size.get())) as usize;
        let window = sensor.open.entry(window_id).or_insert_with(|| OpenWindow {
            days: vec![0; (size.get() as usize).div_ceil(64)],
            readings: 0,
            temperature_tenths: 0,
            co_concentration: 0,
            humidity: 0,
        });
        let (word, bit) = (day / 64, 1u64 << (day % 64));
        if window.days[word] & bit != 0 {
            return Outcome::Duplicate;
        }
        window.days[word] |= bit;
        window.readings += 1;
        window.temperature_tenths += i64::from(reading.temperature_tenths);
        window.co_concentration += u64::from(reading.co_concentration);
        window.humidity += u64::from(reading.humidity);
        if window.readings < size.get() {
            return Outcome::Counted;
        }
        let window = sensor.open.remove(&window_id).expect("the window was just updated");
        insert(&mut sensor.written, window_id);
        Outcome::Finished(summary(reading.sensor_id.to_string(), window_id, size, window, true))
    }

    /// Closes every open window as partial, ordered by sensor then window; they count as
    /// written from now on.
    pub fn drain_partial(&mut self) -> Vec<WindowSummary> {
        let mut partial = Vec::new();
        for (sensor_id, sensor) in &mut self.sensors {
            for (window_id, window) in std::mem::take(&mut sensor.open) {
                sensor.written_partial.insert(window_id);
                partial.push(summary(sensor_id.clone(), window_id, self.size, window, false));
            }
        }
        partial.sort_by(|a, b| (&a.sensor_id, a.window_id).cmp(&(&b.sensor_id, b.window_id)));
        partial
    }

    /// The newest window written for each sensor, sorted by sensor.
    pub fn last_written(&self) -> BTreeMap<String, u64> {
        self.sensors
            .iter()
            .filter_map(|(id, s)| {
                let complete = s.written.last().map(|&(_, end)| end);
                let partial = s.written_partial.last().copied();
                complete.max(partial).map(|w| (id.clone(), w))
            })
            .collect()
    }

    pub fn sensor_count(&self) -> usize {
        self.sensors.len()
    }

    /// The sensors seen so far, sorted.
    pub fn sensors(&self) -> impl Iterator<Item = String> {
        let mut ids: Vec<String> = self.sensors.keys().cloned().collect();
        ids.sort();
        ids.into_iter()
    }

    /// How many windows are open (started but not finished), over all sensors.
    pub fn open_windows(&self) -> usize {
        self.sensors.values().map(|s| s.open.len()).sum()
    }
}

fn summary(sensor_id: String, window_id: u64, size: WindowSize, w: OpenWindow, complete: bool) -> WindowSummary {
    // Days are bits of the window, the first day in the lowest bit of the first word.
    let first_day = w
        .days
        .iter()
        .enumerate()
        .find(|(_, &bits)| bits != 0)
        .map_or(0, |(i, bits)| i * 64 + bits.trailing_zeros() as usize);
    let last_day = w
        .days
        .iter()
        .enumerate()
        .rfind(|(_, &bits)| bits != 0)
        .map_or(0, |(i, bits)| i * 64 + 63 - bits.leading_zeros() as usize);
    let before = (window_id - 1) * u64::from(size.get());
    WindowSummary {
        sensor_id,
        window_id,
        readings: w.readings,
        first_record_id: before + first_day as u64 + 1,
        last_record_id: before + last_day as u64 + 1,
        complete,
        temperature_tenths: w.temperature_tenths,
        co_concentration: w.co_concentration,
        humidity: w.humidity,
    }
}

fn contains(ranges: &[(u64, u64)], id: u64) -> bool {
    let i = ranges.partition_point(|&(start, _)| start <= id);
    i > 0 && ranges[i - 1].1 >= id
}

/// Adds `id` to sorted disjoint ranges, merging neighbours; the common case (the next
/// window of a sensor) only extends the last range.
fn insert(ranges: &mut Vec<(u64, u64)>, id: u64) {
    let i = ranges.partition_point(|&(start, _)| start <= id);
    let joins_left = i > 0 && ranges[i - 1].1 + 1 >= id;
    let joins_right = i < ranges.len() && ranges[i].0 == id + 1;
    match (joins_left, joins_right) {
        (true, true) => {
            ranges[i - 1].1 = ranges[i].1;
            ranges.remove(i);
        }
        (true, false) => ranges[i - 1].1 = ranges[i - 1].1.max(id),
        (false, true) => ranges[i].0 = id,
        (false, false) => ranges.insert(i, (id, id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor: &str, record_id: u64, tenths: i32) -> Reading<'static> {
        Reading {
            sensor_id: sensor.to_string().into(),
            record_id,
            temperature_tenths: tenths,
            co_concentration: 100,
            humidity: 50,
        }
    }

    fn finished(windows: &mut Windows, readings: impl IntoIterator<Item = Reading<'static>>) -> Vec<(String, u64)> {
        readings
            .into_iter()
            .filter_map(|r| match windows.add(&r) {
                Outcome::Finished(w) => Some((w.sensor_id, w.window_id)),
                _ => None,
            })
            .collect()
    }

    /// Window ids come from record ids: days 1..=7 are week 1, day 8 starts week 2.
    #[test]
    fn boundaries_come_from_record_ids() {
        let week = WindowSize::WEEK;
        assert_eq!([1, 7, 8, 14, 15].map(|d| week.id_of(d)), [1, 1, 2, 2, 3]);
        assert_eq!([1, 30, 31, 60, 61].map(|d| WindowSize::MONTH.id_of(d)), [1, 1, 2, 2, 3]);
        let mut w = Windows::new(week);
        assert_eq!(finished(&mut w, (1..=20).map(|d| reading("s", d, 0))), [("s".into(), 1), ("s".into(), 2)]);
        assert_eq!(w.open_windows(), 1);
    }

    /// Reordered readings give the same windows with the same sums.
    #[test]
    fn reordering_changes_nothing() {
        let in_order: Vec<_> = (1..=14).map(|d| reading("s", d, d as i32)).collect();
        let mut shuffled = in_order.clone();
        shuffled.reverse();
        shuffled.swap(0, 9);
        let sums = |rs: Vec<Reading<'static>>| {
            let mut w = Windows::new(WindowSize::WEEK);
            let mut out: Vec<WindowSummary> = rs
                .iter()
                .filter_map(|r| match w.add(r) {
                    Outcome::Finished(s) => Some(s),
                    _ => None,
                })
                .collect();
            out.sort_by_key(|s| s.window_id);
            out
        };
        let expected = sums(in_order);
        assert_eq!(expected[0].temperature_tenths, (1..=7).sum::<i64>());
        assert_eq!((expected[1].first_record_id, expected[1].last_record_id), (8, 14));
        assert_eq!(sums(shuffled), expected);
    }

    /// A duplicate is refused whether its window is open or already written, and does not
    /// shift anything.
    #[test]
    fn duplicates_are_refused() {
        let mut w = Windows::new(WindowSize::WEEK);
        assert_eq!(w.add(&reading("s", 3, 10)), Outcome::Counted);
        assert_eq!(w.add(&reading("s", 3, 99)), Outcome::Duplicate);
        let done = finished(&mut w, [1, 2, 4, 5, 6, 7].map(|d| reading("s", d, 10)));
        assert_eq!(done, [("s".into(), 1)]);
        assert_eq!(w.add(&reading("s", 5, 10)), Outcome::Duplicate);
        assert_eq!(finished(&mut w, (8..=14).map(|d| reading("s", d, 0))), [("s".into(), 2)]);
    }

    /// Sensors have windows of their own.
    #[test]
    fn sensors_are_independent() {
        let mut w = Windows::new(WindowSize::WEEK);
        let mixed = (1..=7).flat_map(|d| [reading("a", d, 0), reading("b", d, 0)]);
        assert_eq!(finished(&mut w, mixed), [("a".into(), 1), ("b".into(), 1)]);
    }

    /// Partial windows are written at the end on request, sorted, and a reading that arrives
    /// for them afterwards is late and never rewrites them.
    #[test]
    fn partial_windows_and_late_readings() {
        let mut w = Windows::new(WindowSize::WEEK);
        for r in [reading("b", 2, 10), reading("a", 9, 30), reading("a", 8, 10), reading("a", 1, 0)] {
            w.add(&r);
        }
        let partial: Vec<_> = w
            .drain_partial()
            .into_iter()
            .map(|s| (s.sensor_id, s.window_id, s.readings, s.complete, s.first_record_id, s.last_record_id))
            .collect();
        assert_eq!(
            partial,
            [("a".into(), 1, 1, false, 1, 1), ("a".into(), 2, 2, false, 8, 9), ("b".into(), 1, 1, false, 2, 2)]
        );
        assert_eq!(w.add(&reading("a", 10, 0)), Outcome::Late);
        assert_eq!(w.open_windows(), 0);
        assert_eq!(w.last_written(), BTreeMap::from([("a".into(), 2), ("b".into(), 1)]));
    }

    /// Averages of a finished window are exact and rounded once.
    #[test]
    fn averages_are_exact() {
        let mut w = Windows::new(WindowSize::days(2).unwrap());
        w.add(&Reading {
            sensor_id: "s".into(),
            record_id: 1,
            temperature_tenths: 202,
            co_concentration: 701,
            humidity: 50,
        });
        let Outcome::Finished(s) = w.add(&Reading {
            sensor_id: "s".into(),
            record_id: 2,
            temperature_tenths: 203,
            co_concentration: 702,
            humidity: 53,
        }) else {
            panic!("window of two days not finished by its second day")
        };
        assert_eq!(
            s.averages(Unit::Celsius),
            Averages { temperature_tenths: 202, co_concentration: 702, humidity: 52 }
        );
        assert_eq!(s.averages(Unit::Fahrenheit).temperature_tenths, 684); // 20.25 °C = 68.45 °F -> 68.4
    }

    /// Written windows are kept as merged ranges, whatever order they finish in.
    #[test]
    fn written_ranges_merge() {
        let mut ranges = Vec::new();
        for id in [5, 1, 3, 2, 4, 9, 7, 8] {
            insert(&mut ranges, id);
        }
        assert_eq!(ranges, [(1, 5), (7, 9)]);
        assert!(contains(&ranges, 1) && contains(&ranges, 5) && contains(&ranges, 8));
        assert!(!contains(&ranges, 6) && !contains(&ranges, 10) && !contains(&ranges, 0));
    }

    /// The window state survives a round trip through the checkpoint's JSON.
    #[test]
    fn state_round_trips_through_json() {
        let mut w = Windows::new(WindowSize::MONTH);
        for d in 1..=45 {
            w.add(&reading("s", d, d as i32));
        }
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Windows>(&json).unwrap(), w);
    }
}
