//! When a file of one Kafka partition ends, decided reading by reading. Pure: readings in,
//! decisions out; the archiver makes them durable and publishes the files.
//!
//! A file holds the valid readings of a contiguous range of its partition's offsets, all of one
//! time slot (hour or day), in offset order. It ends
//! - before a reading of another slot (a later one, or an earlier one: late data gets a file of
//!   its own slot, never a wrong one),
//! - once it holds `max_rows` readings,
//! - where a file of an earlier run began (so that a rebuild writes the same files again, and a
//!   restart finishes the file that was decided before a crash),
//! - and when the archiver closes it: at the end of a bounded run, or after the flush interval.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use weather_common::Reading;

use crate::columns::Rows;
use crate::layout::{PartitionBy, Slot};

/// A file's range, decided: the offsets `[start, end)` of the partition, and the file of their
/// valid readings (none if there were none).
pub struct Decision {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    pub file: Option<DecidedFile>,
}

pub struct DecidedFile {
    pub slot: Slot,
    /// The offset of its first row, which names it.
    pub first_row: i64,
    pub rows: Rows,
    /// Its slot is earlier than one this partition already had a file in.
    pub late: bool,
}

struct OpenFile {
    slot: Slot,
    first_row: i64,
    rows: Rows,
    opened: Instant,
}

/// One partition's reading position and the file being filled.
pub struct PartitionFiles {
    id: i32,
    by: PartitionBy,
    max_rows: usize,
    /// Every offset before this is in a decision.
    decided: i64,
    /// The offset after the last reading taken.
    next: i64,
    /// Offsets where a file must end (where files of an earlier run begin, or where a decided
    /// file ends), past `decided`.
    boundaries: BTreeSet<i64>,
    open: Option<OpenFile>,
    latest: Option<Slot>,
}

impl PartitionFiles {
    /// Starts at `start` (everything before it decided), ending files at `boundaries` too.
    pub fn new(id: i32, by: PartitionBy, max_rows: usize, start: i64, boundaries: BTreeSet<i64>) -> PartitionFiles {
        let boundaries = boundaries.into_iter().filter(|&b| b > start).collect();
        PartitionFiles { id, by, max_rows, decided: start, next: start, boundaries, open: None, latest: None }
    }

    pub fn next(&self) -> i64 {
        self.next
    }

    pub fn decided(&self) -> i64 {
        self.decided
    }

    /// Takes the record at `offset`: a valid reading stamped `event_ms`, or `None` for one
    /// that is not (kept aside elsewhere, but its offset is passed all the same). Returns the
    /// files this ends, oldest first.
    pub fn take(&mut self, offset: i64, reading: Option<(&Reading<'_>, i64)>, partition: i32) -> Vec<Decision> {
        let mut decided = Vec::new();
        if let Some((reading, event_ms)) = reading {
            let slot = self.by.slot(event_ms);
            if self.open.as_ref().is_some_and(|open| open.slot != slot) {
                decided.extend(self.close_at(offset));
            }
            let open = self.open.get_or_insert_with(|| OpenFile {
                slot,
                first_row: offset,
                rows: Rows::default(),
                opened: Instant::now(),
            });
            open.rows.push(reading, event_ms, partition, offset);
        }
        self.next = offset + 1;
        let full = self.open.as_ref().is_some_and(|open| open.rows.len() >= self.max_rows);
        let at_boundary = self.boundaries.first().is_some_and(|&b| b <= self.next);
        if full || (at_boundary && self.open.is_some()) {
            decided.extend(self.close_at(self.next));
        }
        decided
    }

    /// Ends the file being filled where reading stands (and decides the offsets read since the
    /// last file, even with no valid reading among them).
    pub fn close(&mut self) -> Option<Decision> {
        self.close_at(self.next)
    }

    /// Rows in the file being filled.
    pub fn open_rows(&self) -> usize {
        self.open.as_ref().map_or(0, |open| open.rows.len())
    }

    /// How long the file being filled has been open.
    pub fn open_since(&self) -> Option<Instant> {
        self.open.as_ref().map(|open| open.opened)
    }

    fn close_at(&mut self, end: i64) -> Option<Decision> {
        if end <= self.decided {
            return None;
        }
        let file = self.open.take().map(|open| {
            let late = self.latest.is_some_and(|latest| open.slot < latest);
            self.latest = self.latest.max(Some(open.slot));
            DecidedFile { slot: open.slot, first_row: open.first_row, rows: open.rows, late }
        });
        let decision = Decision { partition: self.id, start: self.decided, end, file };
        self.decided = end;
        while self.boundaries.first().is_some_and(|&b| b <= end) {
            self.boundaries.pop_first();
        }
        Some(decision)
    }
}

/// The files of a partition in the lake, by the offset of their first row.
#[derive(Debug, Default)]
pub struct FileIndex(BTreeMap<i64, Vec<String>>);

impl FileIndex {
    pub fn insert(&mut self, first_row: i64, key: String) {
        let keys = self.0.entry(first_row).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    /// Where files begin.
    pub fn starts(&self) -> BTreeSet<i64> {
        self.0.keys().copied().collect()
    }

    /// The newest file start at or before `offset`: where a run must begin to rewrite the file
    /// that holds `offset` whole.
    pub fn start_of_file_at(&self, offset: i64) -> Option<i64> {
        self.0.range(..=offset).next_back().map(|(&start, _)| start)
    }

    /// Records `key` as the file of `[start, end)` and returns the other files that begin in
    /// that range: earlier runs' files of those readings, to be removed once it is published.
    pub fn replace(&mut self, start: i64, end: i64, first_row: i64, key: &str) -> Vec<String> {
        let stale: Vec<i64> = self.0.range(start..end).map(|(&s, _)| s).collect();
        let mut superseded = Vec::new();
        for s in stale {
            superseded.extend(self.0.remove(&s).into_iter().flatten().filter(|k| k != key));
        }
        self.insert(first_row, key.to_string());
        superseded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn reading(record_id: u64) -> Reading<'static> {
        Reading {
            sensor_id: "sensor-1".into(),
            record_id,
            temperature_tenths: 200,
            co_concentration: 700,
            humidity: 55,
        }
    }

    /// (first row, rows, late) of a decided file.
    type File = (i64, usize, bool);

    /// (start, end, file) of each decision.
    fn summary(decisions: &[Decision]) -> Vec<(i64, i64, Option<File>)> {
        decisions
            .iter()
            .map(|d| (d.start, d.end, d.file.as_ref().map(|f| (f.first_row, f.rows.len(), f.late))))
            .collect()
    }

    /// Feeds records `(offset, hour or None for an invalid one)` and collects the decisions.
    fn feed(files: &mut PartitionFiles, records: &[(i64, Option<i64>)]) -> Vec<Decision> {
        let mut out = Vec::new();
        for &(offset, hour) in records {
            let r = reading(offset as u64);
            out.extend(files.take(offset, hour.map(|h| (&r, h * HOUR + 5)), 0));
        }
        out
    }

    /// A file ends before a reading of another hour, later or earlier (late data gets its own
    /// file, counted as late); invalid records are decided with the file they fall in.
    #[test]
    fn files_end_at_slot_changes() {
        let mut files = PartitionFiles::new(0, PartitionBy::Hour, 100, 10, BTreeSet::new());
        let out =
            feed(&mut files, &[(10, Some(1)), (11, None), (12, Some(1)), (13, Some(2)), (14, Some(1)), (15, Some(2))]);
        assert_eq!(
            summary(&out),
            [(10, 13, Some((10, 2, false))), (13, 14, Some((13, 1, false))), (14, 15, Some((14, 1, true)))]
        );
        assert_eq!(summary(&[files.close().unwrap()]), [(15, 16, Some((15, 1, false)))]);
        assert!(files.close().is_none(), "nothing left to decide");
        assert_eq!(files.next(), 16);
    }

    /// A file ends at max_rows, and where an earlier run's file began; a closed range of
    /// invalid records only is decided without a file.
    #[test]
    fn files_end_when_full_and_at_earlier_boundaries() {
        let mut files = PartitionFiles::new(0, PartitionBy::Day, 2, 0, BTreeSet::from([0, 3, 7]));
        let out = feed(&mut files, &[(0, Some(1)), (1, Some(1)), (2, Some(1)), (3, Some(1)), (4, None)]);
        assert_eq!(summary(&out), [(0, 2, Some((0, 2, false))), (2, 3, Some((2, 1, false)))]);
        let out = feed(&mut files, &[(5, Some(1)), (6, Some(1)), (7, Some(1))]);
        assert_eq!(summary(&out), [(3, 6, Some((3, 2, false))), (6, 7, Some((6, 1, false)))]);
        assert_eq!((files.decided(), files.next()), (7, 8));
        let mut idle = PartitionFiles::new(0, PartitionBy::Day, 2, 5, BTreeSet::new());
        feed(&mut idle, &[(5, None), (6, None)]);
        assert_eq!(summary(&[idle.close().unwrap()]), [(5, 7, None)]);
    }

    /// The index says where files begin, which file holds an offset, and which files a new
    /// one of the same readings supersedes.
    #[test]
    fn the_index_finds_superseded_files() {
        let mut index = FileIndex::default();
        index.insert(0, "hour=00/w+0+0.parquet".into());
        index.insert(50, "hour=00/w+0+50.parquet".into());
        index.insert(90, "hour=01/w+0+90.parquet".into());
        assert_eq!(index.starts(), BTreeSet::from([0, 50, 90]));
        assert_eq!(
            (index.start_of_file_at(49), index.start_of_file_at(50), index.start_of_file_at(200)),
            (Some(0), Some(50), Some(90))
        );
        assert_eq!(index.replace(0, 50, 0, "hour=00/w+0+0.parquet"), Vec::<String>::new());
        assert_eq!(
            index.replace(50, 120, 50, "day/w+0+50.parquet"),
            ["hour=00/w+0+50.parquet", "hour=01/w+0+90.parquet"]
        );
        assert_eq!(index.starts(), BTreeSet::from([0, 50]));
    }
}
