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
    /// The windows, a series per window length and sensor (its place), in the order first seen.
    series: Vec<((u32, u32), Series)>,
    /// Where each series is in `series`.
    series_places: HashMap<(u32, u32), u32, foldhash::fast::RandomState>,
    /// Windows read and not put yet, with their series' place: see [`Load`].
    pending: Vec<(u32, Window)>,
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
/// months counted from a fixed day), so its windows are kept in blocks of [`BLOCK`] ids, a
/// window's place in its block found by a division: 40 bytes a window, and a window never moves
/// once in its block (a single run of windows, doubled and copied as it grew, took a fifth of
/// the report's time). A block is made once [`DENSE`] of its ids have windows, and taken apart
/// when tombstones leave it fewer than half as many; other windows are kept loose, so that
/// scattered ids cost their windows and not blocks. A block always holds [`DENSE`] / 2 windows
/// or more: 640 bytes a window at most (a series of one window costs a B-tree's node, about
/// 600 bytes).
#[derive(Debug, Default, Clone)]
struct Series {
    blocks: BTreeMap<u64, Block>,
    loose: BTreeMap<u64, Window>,
}

#[derive(Debug, Clone)]
struct Block {
    /// Windows held.
    held: usize,
    slots: Box<[Option<Window>]>,
}

/// Window ids per block: 10 KiB of windows.
const BLOCK: u64 = 256;

/// Windows a block's ids must have for the block to be made.
const DENSE: usize = 32;

/// The block of window `id`, and its slot in the block.
fn locate(id: u64) -> (u64, usize) {
    (id / BLOCK, (id % BLOCK) as usize)
}

impl Series {
    /// Puts `window` in its place: true if it replaced a window.
    fn put(&mut self, window: Window) -> bool {
        let (number, at) = locate(window.window_id);
        if let Some(block) = self.blocks.get_mut(&number) {
            let replaced = block.slots[at].replace(window).is_some();
            block.held += usize::from(!replaced);
            return replaced;
        }
        let replaced = self.loose.insert(window.window_id, window).is_some();
        if !replaced {
            self.gather(number);
        }
        replaced
    }

    /// Removes the window `id`: true if there was one.
    fn remove(&mut self, id: u64) -> bool {
        let (number, at) = locate(id);
        let Some(block) = self.blocks.get_mut(&number) else {
            return self.loose.remove(&id).is_some();
        };
        if block.slots[at].take().is_none() {
            return false;
        }
        block.held -= 1;
        if block.held < DENSE / 2 {
            self.scatter(number);
        }
        true
    }

    /// Asks the processor to fetch the place of `id`, if its block is made.
    fn prefetch(&self, id: u64) {
        let (number, at) = locate(id);
        if let Some(block) = self.blocks.get(&number) {
            prefetch(&block.slots[at]);
        }
    }

    /// Makes block `number` if [`DENSE`] of its ids have windows, and moves them in.
    fn gather(&mut self, number: u64) {
        let ids = || self.loose.range(number * BLOCK..).map(|(&id, _)| id).take_while(|&id| locate(id).0 == number);
        if ids().take(DENSE).count() < DENSE {
            return;
        }
        let ids: Vec<u64> = ids().collect();
        let mut block = Block { held: ids.len(), slots: vec![None; BLOCK as usize].into_boxed_slice() };
        for id in ids {
            block.slots[locate(id).1] = self.loose.remove(&id);
        }
        self.blocks.insert(number, block);
    }

    /// Takes block `number` apart, its windows kept loose again.
    fn scatter(&mut self, number: u64) {
        if let Some(block) = self.blocks.remove(&number) {
            self.loose.extend(block.slots.into_vec().into_iter().flatten().map(|w| (w.window_id, w)));
        }
    }

    /// The windows, by id.
    fn into_windows(self) -> Vec<Window> {
        let mut windows = Vec::new();
        let mut loose = self.loose.into_values().peekable();
        for (number, block) in self.blocks {
            windows.extend(std::iter::from_fn(|| loose.next_if(|w| locate(w.window_id).0 < number)));
            windows.extend(block.slots.into_vec().into_iter().flatten());
        }
        windows.extend(loose);
        windows
    }
}

/// Asks the processor to bring `value` into its caches, and goes on without waiting for it: a
/// hint (nothing where SSE is not enabled, as on processors other than x86-64's).
#[inline]
fn prefetch<T>(value: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: `_mm_prefetch` needs SSE, which this build enables (the `cfg` above); a prefetch
    // never faults and changes nothing the program can observe, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast());
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = value;
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

impl<Id> From<&Aggregate<Id>> for Window {
    fn from(a: &Aggregate<Id>) -> Window {
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
    /// Applies the record at `offset` of `partition` now (see [`Table::load`] for many).
    pub fn apply(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.load().apply(partition, offset, key, value);
    }

    /// A load of many records into the table, applied in the order given; the table can be
    /// read again once the load is dropped.
    pub fn load(&mut self) -> Load<'_> {
        Load { table: self }
    }

    /// Puts the windows read and not put yet, in the order read.
    fn settle(&mut self) {
        for (place, window) in self.pending.drain(..) {
            if self.series[place as usize].1.put(window) {
                self.overwritten += 1;
            } else {
                self.windows += 1;
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
        debug_assert!(self.pending.is_empty(), "a load not dropped");
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

/// Records being applied to a [`Table`]. The slots of the windows read one after the other are
/// far apart in a table of megabytes (the partitions give each sensor's windows in turn): a
/// put that waited for its slot would wait for memory at nearly every record. So a window is
/// put [`PENDING`] windows after it is read, its slot asked for when it is read ([`prefetch`])
/// and in the cache by then. The outcome is that of the records one by one: a tombstone puts
/// the windows read before it first, and the load puts them all when it is dropped.
pub struct Load<'t> {
    table: &'t mut Table,
}

/// Windows read and not put yet, at most.
const PENDING: usize = 64;

impl Load<'_> {
    /// Applies the record at `offset` of `partition`.
    pub fn apply(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        let table = &mut *self.table;
        match aggregate::parse_record(key, value) {
            Ok(Change::Put(a)) => {
                let sensor = table.sensors.place(&a.key.sensor_id);
                let series = (a.key.window_days, sensor);
                let place = *table.series_places.entry(series).or_insert_with(|| {
                    table.series.push((series, Series::default()));
                    table.series.len() as u32 - 1
                });
                table.series[place as usize].1.prefetch(a.key.window_id);
                table.pending.push((place, Window::from(&a)));
                if table.pending.len() == PENDING {
                    table.settle();
                }
            }
            Ok(Change::Delete(key)) => {
                table.settle();
                let sensor = table.sensors.get(&key.sensor_id);
                let place = sensor.and_then(|sensor| table.series_places.get(&(key.window_days, sensor)));
                if place.is_some_and(|&place| table.series[place as usize].1.remove(key.window_id)) {
                    table.windows -= 1;
                    table.deleted += 1;
                }
            }
            Err(reason) => {
                *table.bad_by_category.entry(reason.category()).or_default() += 1;
                if table.bad.len() < BAD_RECORDS_KEPT {
                    table.bad.push(BadRecord { partition, offset, reason });
                }
            }
        }
    }
}

impl Drop for Load<'_> {
    fn drop(&mut self) {
        self.table.settle();
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
    /// forwards, backwards, with gaps, far apart, deleted and put again; and it makes blocks
    /// only for ids close together.
    #[test]
    fn a_series_is_a_map_of_its_ids() {
        let window = |id: u64, temp: i64| Window {
            window_id: id,
            unit: Unit::Celsius,
            avg_temp: Tenths(temp),
            avg_co: 0,
            avg_humidity: 0,
        };
        let orders: [&dyn Fn(u64) -> u64; 6] = [
            &|i| 2900 + i,
            &|i| 5000 - i,
            &|i| (i * 7919) % 3001,
            &|i| if i % 50 == 0 { u64::MAX - i } else { 100_000 + (i * 31) % 977 },
            // Scattered: ten ids in each of 300 blocks.
            &|i| (i % 300) * 1000 + i / 300,
            // The last id loose, then gathered into the block that ends at 2^64.
            &|i| if i == 1 || i == 2999 { u64::MAX } else { u64::MAX - 3000 + i },
        ];
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
            same(&series, &model, &format!("order {n}"));
            // Then most windows deleted: blocks left nearly empty are taken apart.
            for id in model.keys().copied().filter(|id| id % 20 != 0).collect::<Vec<_>>() {
                assert_eq!(series.remove(id), model.remove(&id).is_some(), "order {n}: remove {id} at the end");
            }
            same(&series, &model, &format!("order {n}, most deleted"));
        }
    }

    /// `series` holds the windows of `model`, and a block for no fewer than DENSE / 2 of them.
    fn same(series: &Series, model: &BTreeMap<u64, Window>, what: &str) {
        for block in series.blocks.values() {
            assert_eq!(block.held, block.slots.iter().flatten().count(), "{what}: a block's count");
        }
        assert!(
            series.blocks.len() * (DENSE / 2) <= model.len(),
            "{what}: {} blocks for {} windows",
            series.blocks.len(),
            model.len()
        );
        let held = series.clone().into_windows();
        let expected: Vec<Window> = model.values().copied().collect();
        let ids = |windows: &[Window]| windows.iter().map(|w| w.window_id).collect::<Vec<_>>();
        assert_eq!(ids(&held), ids(&expected), "{what}: the ids");
        assert!(held == expected, "{what}: the windows");
    }

    /// A load gives the table that the records applied one by one give, and that a map of
    /// the latest window per key gives: windows put, put again and deleted within the same
    /// pending windows, tombstones of windows never put, bad records between; enough windows
    /// of each series for blocks.
    #[test]
    fn a_load_is_its_records_one_by_one() {
        let mut state = 12345u64;
        let mut next = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let (mut loaded, mut one_by_one) = (Table::default(), Table::default());
        let mut model = BTreeMap::new();
        let mut load = loaded.load();
        for offset in 0..60 * PENDING as i64 {
            let a = week(&format!("sensor-{}", next(3)), 1 + next(600), offset);
            // The last records puts: the load ends with windows not put yet.
            let kind = if offset < 59 * PENDING as i64 { next(10) } else { 9 };
            let (key, value) = match kind {
                0..=1 => {
                    model.remove(&a.key);
                    (a.key.to_json(), None)
                }
                2 => (b"not a key".to_vec(), Some(a.to_json())),
                _ => {
                    model.insert(a.key.clone(), Window::from(&a));
                    (a.key.to_json(), Some(a.to_json()))
                }
            };
            load.apply(0, offset, Some(&key), value.as_deref());
            one_by_one.apply(0, offset, Some(&key), value.as_deref());
        }
        drop(load);
        assert!(loaded.series.iter().all(|(_, series)| !series.blocks.is_empty()), "every series in blocks");
        let counts = |t: &Table| (t.len(), t.overwritten, t.deleted, t.bad_records(), t.bad.clone());
        assert_eq!(counts(&loaded), counts(&one_by_one));
        assert_eq!(loaded.len(), model.len());
        let (loaded, one_by_one) = (sorted(loaded), sorted(one_by_one));
        assert_eq!(loaded, one_by_one);
        assert_eq!(loaded, model.into_iter().collect::<Vec<_>>());
    }

    /// Counting order for numbered ids, text order otherwise.
    #[test]
    fn sensors_in_counting_order() {
        let mut ids = vec!["sensor-10", "sensor-2", "b", "a", "sensor-1", "sensor-01"];
        ids.sort_by_key(|id| sensor_order(id));
        assert_eq!(ids, ["a", "b", "sensor-01", "sensor-1", "sensor-2", "sensor-10"]);
    }
}
