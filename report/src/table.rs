//! The topic read as a table, as compaction leaves it: the latest value per window, a
//! tombstone deleting its window, and bad records skipped (they change nothing) and kept
//! with their partition and offset for the report.

use std::collections::{BTreeMap, HashMap};

use weather_common::aggregate::{self, Aggregate, BadAggregate, Change};
use weather_common::sensor_ids::SensorIds;
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
    /// Each sensor id once: a window names its sensor by its place here (a million windows
    /// are a million sensor ids fewer to keep).
    sensors: SensorIds,
    /// The windows, a series per window length and sensor (its index).
    series: HashMap<(u32, u32), Series, foldhash::fast::RandomState>,
    /// Windows held.
    windows: usize,
    /// Values that replaced an earlier value of their window.
    pub overwritten: u64,
    /// Tombstones that deleted a window.
    pub deleted: u64,
    /// The first [`BAD_RECORDS_KEPT`] bad records, in the order read.
    pub bad: Vec<BadRecord>,
    /// Bad records by category.
    pub bad_by_category: BTreeMap<&'static str, u64>,
}

/// One sensor's windows of one length, by window id. A series' ids follow each other (weeks or
/// months counted from a fixed day), so they are slots of a run that starts at `first`: a
/// window is found by a subtraction, not by a search, and costs its 40 bytes. An id that would
/// stretch the run by more than its length (and [`GAP`]) is kept apart, in `far`, so that no
/// record makes the table allocate for ids it has not seen.
#[derive(Debug, Default, Clone)]
struct Series {
    first: u64,
    slots: Vec<Option<Window>>,
    far: BTreeMap<u64, Window>,
}

/// Empty slots a run may take on beyond its length to reach an id.
const GAP: u64 = 1024;

impl Series {
    /// Puts `window` in its place: true if it replaced a window.
    fn put(&mut self, window: Window) -> bool {
        let id = window.window_id;
        let len = self.slots.len() as u64;
        let room = len.max(GAP);
        let end = self.first.saturating_add(len);
        if self.slots.is_empty() {
            self.first = id;
            self.slots.push(None);
        } else if id < self.first && self.first - id <= room {
            // Room before the run, as much as it is long: a series read backwards still grows
            // by doubling.
            let start = self.first.saturating_sub((self.first - id).max(len));
            let before = (self.first - start) as usize;
            self.slots.splice(0..0, std::iter::repeat_n(None, before));
            self.first = start;
            self.take_in_far();
        } else if id >= end && id - end < room {
            self.slots.resize((id - self.first + 1) as usize, None);
            self.take_in_far();
        }
        match self.slot(id) {
            Some(slot) => slot.replace(window).is_some(),
            None => self.far.insert(id, window).is_some(),
        }
    }

    /// Removes the window `id`: true if there was one.
    fn remove(&mut self, id: u64) -> bool {
        match self.slot(id) {
            Some(slot) => slot.take().is_some(),
            None => self.far.remove(&id).is_some(),
        }
    }

    fn slot(&mut self, id: u64) -> Option<&mut Option<Window>> {
        let index = usize::try_from(id.checked_sub(self.first)?).ok()?;
        self.slots.get_mut(index)
    }

    /// Moves the windows kept apart that the run now covers into their slots.
    fn take_in_far(&mut self) {
        let end = self.first.saturating_add(self.slots.len() as u64);
        let mut covered = self.far.split_off(&self.first);
        let mut beyond = covered.split_off(&end);
        self.far.append(&mut beyond);
        for (id, window) in covered {
            self.slots[(id - self.first) as usize] = Some(window);
        }
    }

    /// The windows, by id.
    fn into_windows(mut self) -> Vec<Window> {
        let beyond = self.far.split_off(&self.first);
        let mut windows: Vec<Window> = self.far.into_values().collect();
        windows.extend(self.slots.into_iter().flatten());
        windows.extend(beyond.into_values());
        windows
    }
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
                let sensor = self.sensors.place(&a.key.sensor_id);
                if self.series.entry((a.key.window_days, sensor)).or_default().put(window) {
                    self.overwritten += 1;
                } else {
                    self.windows += 1;
                }
            }
            Ok(Change::Delete(key)) => {
                let sensor = self.sensors.get(&key.sensor_id);
                let series = sensor.and_then(|sensor| self.series.get_mut(&(key.window_days, sensor)));
                if series.is_some_and(|series| series.remove(key.window_id)) {
                    self.windows -= 1;
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

    pub fn len(&self) -> usize {
        self.windows
    }

    pub fn is_empty(&self) -> bool {
        self.windows == 0
    }

    pub fn bad_records(&self) -> u64 {
        self.bad_by_category.values().sum()
    }

    /// The windows, by window length, then sensor (`sensor-2` before `sensor-10`), then window.
    pub fn into_sorted(self) -> Vec<SensorWindows> {
        let mut sorted: Vec<SensorWindows> = self
            .series
            .into_iter()
            .map(|((window_days, sensor), series)| SensorWindows {
                window_days,
                sensor_id: self.sensors.id(sensor).to_string(),
                windows: series.into_windows(),
            })
            .filter(|s| !s.windows.is_empty())
            .collect();
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
    use weather_common::aggregate::WindowKey;

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

    /// A series holds what a map of its ids would hold, whatever the order the ids come in:
    /// forwards, backwards, with gaps, far apart, deleted and put again.
    #[test]
    fn a_series_is_a_map_of_its_ids() {
        let window = |id: u64, temp: i64| Window {
            window_id: id,
            unit: Unit::Celsius,
            avg_temp: Tenths(temp),
            avg_co: 0,
            avg_humidity: 0,
        };
        let orders: [&dyn Fn(u64) -> u64; 4] = [&|i| 2900 + i, &|i| 5000 - i, &|i| (i * 7919) % 3001, &|i| {
            if i % 50 == 0 {
                u64::MAX - i
            } else {
                100_000 + (i * 31) % 977
            }
        }];
        for (n, order) in orders.iter().enumerate() {
            let (mut series, mut model) = (Series::default(), BTreeMap::new());
            for i in 0..3000u64 {
                let id = order(i);
                if i % 7 == 3 {
                    assert_eq!(series.remove(id), model.remove(&id).is_some(), "order {n}, step {i}: remove {id}");
                } else {
                    let w = window(id, i as i64);
                    assert_eq!(series.put(w), model.insert(id, w).is_some(), "order {n}, step {i}: put {id}");
                }
            }
            assert!(
                series.slots.len() <= 2 * model.len() + 2 * GAP as usize,
                "order {n}: {} slots",
                series.slots.len()
            );
            let (held, expected) = (series.into_windows(), model.into_values().collect::<Vec<_>>());
            let ids = |windows: &[Window]| windows.iter().map(|w| w.window_id).collect::<Vec<_>>();
            assert_eq!(ids(&held), ids(&expected), "order {n}: the ids");
            assert!(held == expected, "order {n}: the windows");
        }
    }

    /// Counting order for numbered ids, text order otherwise.
    #[test]
    fn sensors_in_counting_order() {
        let mut ids = vec!["sensor-10", "sensor-2", "b", "a", "sensor-1", "sensor-01"];
        ids.sort_by_key(|id| sensor_order(id));
        assert_eq!(ids, ["a", "b", "sensor-01", "sensor-1", "sensor-2", "sensor-10"]);
    }
}
