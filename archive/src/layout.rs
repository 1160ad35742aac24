//! Where things live in the lake: Hive-style partitions by event time, one file per decided
//! range of a Kafka partition, and the per-partition state beside the data. Pure: names in,
//! names out.
//!
//! ```text
//! <root>/topic=weather/date=2026-11-29/hour=07/weather+2+000000000000001200.parquet
//! <root>/_state/weather-2.json
//! <root>/_members/weather/host-a-1234.json      (with --group: a member's heartbeat)
//! ```

use std::fmt;

/// `--partition-by`: how long the even-time window of a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum PartitionBy {
    /// `date=YYYY-MM-DD/hour=HH/`: a file never spans two hours.
    Hour,
    /// `date=YYYY-MM-DD/`: a file never spans two days.
    Day,
}

/// The event-time window a file belongs to: its directory in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    /// The window's start, in milliseconds since the epoch (UTC).
    pub start_ms: i64,
    pub by: PartitionBy,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

impl PartitionBy {
    /// The window that an event stamped `ms` (since the epoch, UTC) falls in.
    pub fn slot(self, ms: i64) -> Slot {
        let len = match self {
            PartitionBy::Hour => HOUR_MS,
            PartitionBy::Day => DAY_MS,
        };
        Slot { start_ms: ms.div_euclid(len) * len, by: self }
    }
}

impl Slot {
    /// Its date (`YYYY-MM-DD`) and, by hour, its hour.
    pub fn date_and_hour(&self) -> (String, Option<i64>) {
        let (year, month, day) = civil_from_days(self.start_ms.div_euclid(DAY_MS));
        let hour = (self.by == PartitionBy::Hour).then(|| self.start_ms.rem_euclid(DAY_MS) / HOUR_MS);
        (format!("{year:04}-{month:02}-{day:02}"), hour)
    }

    /// The slot of `date` (`YYYY-MM-DD`) and `hour` (by hour) or none (by day).
    pub fn parse(date: &str, hour: Option<&str>) -> Option<Slot> {
        let mut parts = date.splitn(3, '-');
        let (year, month, day) =
            (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
        let start = days_from_civil(year, month, day) * DAY_MS;
        match hour {
            Some(h) => {
                Some(PartitionBy::Hour.slot(start + h.parse::<i64>().ok().filter(|h| (0..24).contains(h))? * HOUR_MS))
            }
            None => Some(PartitionBy::Day.slot(start)),
        }
    }

    /// The first millisecond after the slot.
    pub fn end_ms(&self) -> i64 {
        self.start_ms
            + match self.by {
                PartitionBy::Hour => HOUR_MS,
                PartitionBy::Day => DAY_MS,
            }
    }
}

impl fmt::Display for Slot {
    /// The slot's directory: `date=YYYY-MM-DD/hour=HH` or `date=YYYY-MM-DD`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (date, hour) = self.date_and_hour();
        write!(f, "date={date}")?;
        if let Some(hour) = hour {
            write!(f, "/hour={hour:02}")?;
        }
        Ok(())
    }
}

/// The day number since 1970-01-01 of a date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar date of a day number since 1970-01-01 (proleptic Gregorian; Howard Hinnant's
/// algorithm), without a date library in the hot path.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The lake's names for one topic under one root (a directory, or a prefix in a bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Prepended to every key: empty, or ending in `/`.
    prefix: String,
    topic: String,
}

impl Layout {
    pub fn new(prefix: &str, topic: &str) -> Layout {
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Layout { prefix, topic: topic.to_string() }
    }

    /// Every data file of the topic lies under this.
    pub fn data_prefix(&self) -> String {
        format!("{}topic={}/", self.prefix, self.topic)
    }

    /// The key of the file of `partition` whose first row is at `first_offset`, in `slot`.
    pub fn file_key(&self, slot: Slot, partition: i32, first_offset: i64) -> String {
        format!("{}{slot}/{}+{partition}+{first_offset:020}.parquet", self.data_prefix(), self.topic)
    }

    /// The partition and first offset of a data file's key, if it is one of this topic's.
    pub fn parse_file_key(&self, key: &str) -> Option<(i32, i64)> {
        let name = key.strip_prefix(&self.data_prefix())?.rsplit('/').next()?;
        let rest = name.strip_suffix(".parquet")?.strip_prefix(&self.topic)?.strip_prefix('+')?;
        let (partition, offset) = rest.split_once('+')?;
        Some((partition.parse().ok()?, offset.parse().ok()?))
    }

    /// The key of a file that merges `partition`'s files of `slot` holding offsets
    /// `[first_offset, end)`: named apart from the files it merges (which [`Layout::parse_file_key`]
    /// does not take it for), so that it never replaces one.
    pub fn merged_key(&self, slot: Slot, partition: i32, first_offset: i64, end: i64) -> String {
        format!("{}{slot}/{}+{partition}+{first_offset:020}-{end:020}.parquet", self.data_prefix(), self.topic)
    }

    /// The partition of any data file of this topic, merged or not.
    pub fn partition_of(&self, key: &str) -> Option<i32> {
        let name = key.rsplit('/').next()?;
        let rest = name.strip_suffix(".parquet")?.strip_prefix(&self.topic)?.strip_prefix('+')?;
        rest.split_once('+')?.0.parse().ok()
    }

    /// The lake's root: keys of the table are relative to it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of `partition`'s state.
    pub fn state_key(&self, partition: i32) -> String {
        format!("{}_state/{}-{partition}.json", self.prefix, self.topic)
    }

    /// Every heartbeat of the members of a group sharing the topic lies under this.
    pub fn members_prefix(&self) -> String {
        format!("{}_members/{}/", self.prefix, self.topic)
    }

    /// The key of `member`'s heartbeat.
    pub fn member_key(&self, member: &str) -> String {
        format!("{}{member}.json", self.members_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events fall into the hour or day they are stamped in, in UTC, including before 1970
    /// and on leap days.
    #[test]
    fn slots_are_utc_hours_and_days() {
        // 2025-11-29T07:59:59.999Z and the next millisecond.
        let t = 1_764_403_199_999;
        assert_eq!(PartitionBy::Hour.slot(t).to_string(), "date=2025-11-29/hour=07");
        assert_eq!(PartitionBy::Hour.slot(t + 1).to_string(), "date=2025-11-29/hour=08");
        assert!(PartitionBy::Hour.slot(t) < PartitionBy::Hour.slot(t + 1));
        assert_eq!(PartitionBy::Day.slot(t).to_string(), "date=2025-11-29");
        assert_eq!(PartitionBy::Day.slot(0).to_string(), "date=1970-01-01");
        assert_eq!(PartitionBy::Hour.slot(-1).to_string(), "date=1969-12-31/hour=23");
        assert_eq!(PartitionBy::Day.slot(951_782_400_000).to_string(), "date=2000-02-29");
        assert_eq!(PartitionBy::Day.slot(4_107_542_400_000).to_string(), "date=2100-03-01");
    }

    /// A slot parses back from its date and hour, across leap days and before 1970.
    #[test]
    fn slots_parse_back() {
        for ms in [1_764_403_199_999, 0, -1, 951_782_400_000, 4_107_542_400_000] {
            for by in [PartitionBy::Hour, PartitionBy::Day] {
                let slot = by.slot(ms);
                let (date, hour) = slot.date_and_hour();
                assert_eq!(Slot::parse(&date, hour.map(|h| h.to_string()).as_deref()), Some(slot), "{slot}");
            }
        }
        assert_eq!(Slot::parse("2025-11-29", Some("24")), None);
        assert_eq!(PartitionBy::Hour.slot(0).end_ms(), 3_600_000);
    }

    /// A file's key names its topic, slot, partition and zero-padded first offset, so that
    /// listing sorts files by offset; the key parses back, under a prefix or none.
    #[test]
    fn file_keys_round_trip() {
        let slot = PartitionBy::Hour.slot(1_764_403_199_999);
        for (prefix, expected) in [
            ("", "topic=weather/date=2025-11-29/hour=07/weather+2+00000000000000001200.parquet"),
            ("/lake/", "lake/topic=weather/date=2025-11-29/hour=07/weather+2+00000000000000001200.parquet"),
        ] {
            let layout = Layout::new(prefix, "weather");
            let key = layout.file_key(slot, 2, 1200);
            assert_eq!(key, expected);
            assert_eq!(layout.parse_file_key(&key), Some((2, 1200)));
        }
        let layout = Layout::new("", "weather");
        assert_eq!(layout.parse_file_key("topic=weather/date=2025-11-29/.weather+2+1.parquet.tmp"), None);
        assert_eq!(layout.parse_file_key("topic=weather-2/date=2025-11-29/weather-2+0+1.parquet"), None);
        assert_eq!(layout.state_key(2), "_state/weather-2.json");
        assert_eq!(Layout::new("lake", "weather").member_key("a-1"), "lake/_members/weather/a-1.json");
        let merged = layout.merged_key(slot, 2, 1200, 1300);
        assert_eq!(
            merged,
            "topic=weather/date=2025-11-29/hour=07/weather+2+00000000000000001200-00000000000000001300.parquet"
        );
        assert_eq!((layout.parse_file_key(&merged), layout.partition_of(&merged)), (None, Some(2)));
        assert_eq!(layout.partition_of(&layout.file_key(slot, 3, 5)), Some(3));
    }
}
