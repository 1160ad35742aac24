//! The topic read as a table, as compaction leaves it: the latest value per window, a
//! tombstone deleting its window, and bad records skipped (they change nothing) and kept
//! with their partition and offset for the report.

use std::collections::{BTreeMap, HashMap};

use weather_common::aggregate::{self, Aggregate, BadAggregate, Change, WindowKey};
use weather_common::units::{Tenths, Unit};

/// A record that is not a window's averages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub partition: i32,
    pub offset: i64,
    pub reason: BadAggregate,
}

/// Bad records kept with their position; the rest are only counted.
pub const BAD_RECORDS_KEPT: usize = 100;

#[derive(Debug, Default, Clone)]
pub struct Table {
    /// Each sensor id once: a window names its sensor by its index here (a million windows
    /// are a million sensor ids fewer to keep).
    sensors: Vec<String>,
    sensor_index: HashMap<String, u32, foldhash::fast::RandomState>,
    /// The windows, in order. A B-tree grows a node at a time: a hash table doubles, and holds
    /// its old and its new table at once while it does (three times the rows' memory).
    rows: BTreeMap<Key, Window>,
    /// Values that replaced an earlier value of their window.
    pub overwritten: u64,
    /// Tombstones that deleted a window.
    pub deleted: u64,
    /// The first [`BAD_RECORDS_KEPT`] bad records, in the order read.
    pub bad: Vec<BadRecord>,
    /// Bad records by category.
    pub bad_by_category: BTreeMap<&'static str, u64>,
}

/// Which window a row is, its sensor by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    window_days: u32,
    sensor: u32,
    window_id: u64,
}

/// One window of the report: the averages it shows, without the sensor and the window length
/// that the series and the section it is in name (nor the readings and record ids behind them,
/// which no output shows: a window is 40 bytes, not 56).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub window_id: u64,
    /// The unit of `avg_temp`.
    pub unit: Unit,
    pub avg_temp: Tenths,
    pub avg_co: i64,
    pub avg_humidity: i64,
}

impl From<&Aggregate> for Window {
    fn from(a: &Aggregate) -> Window {
        Window {
            window_id: a.key.window_id,
            unit: a.unit,
            avg_temp: a.avg_temp,
            avg_co: a.avg_co,
            avg_humidity: a.avg_humidity,
        }
    }
}

/// One sensor's windows of one length, by window id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorWindows {
    pub window_days: u32,
    pub sensor_id: String,
    pub windows: Vec<Window>,
}

impl Table {
    /// Applies the record at `offset` of `partition`.
    pub fn apply(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        match aggregate::parse_record(key, value) {
            Ok(Change::Put(a)) => {
                let window = Window::from(&a);
                let key = self.key(a.key);
                if self.rows.insert(key, window).is_some() {
                    self.overwritten += 1;
                }
            }
            Ok(Change::Delete(key)) => {
                let sensor = self.sensor_index.get(&key.sensor_id).copied();
                let key = sensor.map(|sensor| Key { window_days: key.window_days, sensor, window_id: key.window_id });
                if key.is_some_and(|key| self.rows.remove(&key).is_some()) {
                    self.deleted += 1;
                }
            }
            Err(reason) => {
                *self.bad_by_category.entry(reason.category()).or_default() += 1;
                if self.bad.len() < BAD_RECORDS_KEPT {
                    self.bad.push(BadRecord { partition, offset, reason });
                }
            }
        }
    }

    /// The row key of a window, its sensor given an index if it is new.
    fn key(&mut self, key: WindowKey) -> Key {
        let sensor = match self.sensor_index.get(&key.sensor_id) {
            Some(&index) => index,
            None => {
                let index = self.sensors.len() as u32;
                self.sensors.push(key.sensor_id.clone());
                self.sensor_index.insert(key.sensor_id, index);
                index
            }
        };
        Key { window_days: key.window_days, sensor, window_id: key.window_id }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn bad_records(&self) -> u64 {
        self.bad_by_category.values().sum()
    }

    /// The windows, by window length, then sensor (`sensor-2` before `sensor-10`), then window.
    pub fn into_sorted(self) -> Vec<SensorWindows> {
        let mut sorted: Vec<SensorWindows> = Vec::new();
        let mut last = None;
        // The rows go as they are copied out: the B-tree frees its nodes on the way.
        for (key, window) in self.rows {
            if last != Some((key.window_days, key.sensor)) {
                last = Some((key.window_days, key.sensor));
                let sensor_id = self.sensors[key.sensor as usize].clone();
                sorted.push(SensorWindows { window_days: key.window_days, sensor_id, windows: Vec::new() });
            }
            sorted.last_mut().expect("pushed above").windows.push(window);
        }
        // Sensors in counting order, ranked once per sensor (not per row).
        sorted.sort_by(|a, b| {
            (a.window_days, sensor_order(&a.sensor_id)).cmp(&(b.window_days, sensor_order(&b.sensor_id)))
        });
        sorted
    }
}

/// Sensor ids in the order people count them: by the text before a trailing number, then by
/// that number (`sensor-2` before `sensor-10`), then by the id itself.
pub fn sensor_order(id: &str) -> (&str, Option<u128>, &str) {
    let digits = id.len() - id.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (stem, number) = id.split_at(digits);
    (stem, number.parse().ok(), id)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The sorted table, each window with its key.
    fn sorted(table: Table) -> Vec<(WindowKey, Window)> {
        let windows = |s: SensorWindows| {
            s.windows.into_iter().map(move |w| {
                (WindowKey { sensor_id: s.sensor_id.clone(), window_days: s.window_days, window_id: w.window_id }, w)
            })
        };
        table.into_sorted().into_iter().flat_map(windows).collect()
    }

    /// A window as the table holds it.
    fn row(a: &Aggregate) -> (WindowKey, Window) {
        (a.key.clone(), Window::from(a))
    }

    /// `sensor`'s first 30-day window, its averages those of [`week`]'s first.
    pub(crate) fn month(sensor: &str) -> Aggregate {
        Aggregate {
            key: WindowKey { sensor_id: sensor.into(), window_days: 30, window_id: 1 },
            readings: 30,
            first_record_id: 1,
            last_record_id: 30,
            ..week(sensor, 1, 0)
        }
    }

    pub(crate) fn week(sensor: &str, id: u64, temp: i64) -> Aggregate {
        Aggregate {
            key: WindowKey { sensor_id: sensor.into(), window_days: 7, window_id: id },
            unit: Unit::Celsius,
            avg_temp: Tenths(temp),
            avg_co: 700,
            avg_humidity: 50,
            readings: 7,
            first_record_id: id * 7 - 6,
            last_record_id: id * 7,
        }
    }

    fn put(table: &mut Table, offset: i64, a: &Aggregate) {
        table.apply(0, offset, Some(&a.key.to_json()), Some(&a.to_json()));
    }

    /// The latest value of a window wins, a tombstone deletes it, and bad records change
    /// nothing but are kept with their position.
    #[test]
    fn latest_value_wins_and_tombstones_delete() {
        let mut table = Table::default();
        put(&mut table, 0, &week("sensor-1", 1, 100));
        put(&mut table, 1, &week("sensor-1", 2, 110));
        put(&mut table, 2, &week("sensor-1", 1, 120));
        table.apply(0, 3, Some(&week("sensor-1", 2, 0).key.to_json()), None);
        table.apply(0, 4, Some(&week("sensor-1", 9, 0).key.to_json()), None);
        table.apply(1, 5, Some(b"oops"), Some(b"{}"));
        table.apply(1, 6, Some(&week("sensor-1", 1, 0).key.to_json()), Some(b"not json"));
        assert_eq!((table.overwritten, table.deleted, table.bad_records()), (1, 1, 2));
        assert_eq!(table.bad.iter().map(|b| (b.partition, b.offset)).collect::<Vec<_>>(), [(1, 5), (1, 6)]);
        assert_eq!(sorted(table), [row(&week("sensor-1", 1, 120))]);
    }

    /// Rows come by window length, sensor in counting order, then window.
    #[test]
    fn rows_are_sorted_by_length_sensor_and_window() {
        let mut table = Table::default();
        let month = month("sensor-1");
        for (i, a) in
            [week("sensor-10", 1, 0), month.clone(), week("sensor-2", 2, 0), week("sensor-2", 1, 0)].iter().enumerate()
        {
            put(&mut table, i as i64, a);
        }
        let order: Vec<(u32, String, u64)> =
            sorted(table).into_iter().map(|(key, _)| (key.window_days, key.sensor_id, key.window_id)).collect();
        assert_eq!(
            order,
            [
                (7, "sensor-2".into(), 1),
                (7, "sensor-2".into(), 2),
                (7, "sensor-10".into(), 1),
                (30, "sensor-1".into(), 1)
            ]
        );
    }

    /// Counting order for numbered ids, text order otherwise.
    #[test]
    fn sensors_in_counting_order() {
        let mut ids = vec!["sensor-10", "sensor-2", "b", "a", "sensor-1", "sensor-01"];
        ids.sort_by_key(|id| sensor_order(id));
        assert_eq!(ids, ["a", "b", "sensor-01", "sensor-1", "sensor-2", "sensor-10"]);
    }
}
