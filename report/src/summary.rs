//! What the table says, per window length and sensor: the windows present, the first and the
//! last, the missing ones, and min / mean / max of every average. Printed on stdout; the CSV
//! and the HTML page are written from the same [`Report`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use weather_common::aggregate::id_column;
use weather_common::meter::{counted, thousands};
use weather_common::units::{div_round_half_even, Tenths, Unit};

use crate::source::Read;
use crate::table::{BadRecord, SensorWindows, Table, Window};

/// The whole report.
#[derive(Debug)]
pub struct Report {
    pub topic: String,
    pub read: Read,
    /// Windows in the table, of every length.
    pub windows: u64,
    pub overwritten: u64,
    pub deleted: u64,
    pub bad: Vec<BadRecord>,
    pub bad_by_category: BTreeMap<&'static str, u64>,
    /// The windows of `--window-days` (all without it), by window length and unit.
    pub sections: Vec<Section>,
    /// `--window-days`, and the windows of other lengths it left out.
    pub only: Option<(u32, u64)>,
    /// The files written, what each holds and where (absolute when it could be resolved).
    pub written: Vec<(&'static str, std::path::PathBuf)>,
}

/// The windows of one length and one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub window_days: u32,
    pub unit: Unit,
    /// By sensor, in counting order.
    pub sensors: Vec<Series>,
}

/// One sensor's windows of one length and unit, by window id.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub sensor_id: String,
    pub windows: Vec<Window>,
}

impl Report {
    pub fn new(topic: &str, read: Read, table: Table, only: Option<u32>) -> Report {
        let (overwritten, deleted, windows) = (table.overwritten, table.deleted, table.len() as u64);
        let (bad, bad_by_category) = (table.bad.clone(), table.bad_by_category.clone());
        let mut left_out = 0;
        let mut sections: BTreeMap<(u32, Unit), Vec<Series>> = BTreeMap::new();
        for run in table.into_sorted() {
            if only.is_some_and(|days| days != run.window_days) {
                left_out += run.windows.len() as u64;
                continue;
            }
            let SensorWindows { window_days, sensor_id, windows } = run;
            // Usually all in one unit: then the windows move over whole.
            if let Some(unit) = windows.first().map(|w| w.unit).filter(|&u| windows.iter().all(|w| w.unit == u)) {
                sections.entry((window_days, unit)).or_default().push(Series { sensor_id, windows });
                continue;
            }
            for window in windows {
                let series = sections.entry((window_days, window.unit)).or_default();
                match series.last_mut() {
                    Some(last) if last.sensor_id == sensor_id => last.windows.push(window),
                    _ => series.push(Series { sensor_id: sensor_id.clone(), windows: vec![window] }),
                }
            }
        }
        Report {
            topic: topic.to_string(),
            read,
            windows,
            overwritten,
            deleted,
            bad,
            bad_by_category,
            sections: sections
                .into_iter()
                .map(|((window_days, unit), sensors)| Section { window_days, unit, sensors })
                .collect(),
            only: only.map(|days| (days, left_out)),
            written: Vec::new(),
        }
    }

    pub fn bad_records(&self) -> u64 {
        self.bad_by_category.values().sum()
    }
}

impl Section {
    pub fn windows(&self) -> usize {
        self.sensors.iter().map(|s| s.windows.len()).sum()
    }

    /// What a window of this length is called: `week`, `month`, or `10-day window`.
    pub fn window_name(&self) -> String {
        match self.window_days {
            7 => "week".into(),
            30 => "month".into(),
            days => format!("{days}-day window"),
        }
    }

    pub fn title(&self) -> String {
        format!(
            "{}-day windows ({}), avg_temp in {}",
            self.window_days,
            id_column(self.window_days),
            self.unit.symbol()
        )
    }
}

/// The figures of a sensor's row, in every table of sensors: their heads in the printed table,
/// and their widths there.
const FIGURES: [(&str, usize); 13] = [
    ("WINDOWS", 8),
    ("FIRST", 6),
    ("LAST", 6),
    ("MISSING", 8),
    ("TEMP_MIN", 9),
    ("TEMP_MEAN", 9),
    ("TEMP_MAX", 9),
    ("CO_MIN", 7),
    ("CO_MEAN", 7),
    ("CO_MAX", 7),
    ("HUM_MIN", 7),
    ("HUM_MEAN", 8),
    ("HUM_MAX", 7),
];

impl Series {
    /// The figures of its row in a table of sensors, in the order of [`FIGURES`]: windows,
    /// first, last, missing, then the min, mean and max of avg_temp, avg_co and avg_humidity.
    pub fn figures(&self) -> [String; 13] {
        let (t, c, h) = (self.temperature(), self.co(), self.humidity());
        [
            thousands(self.windows.len() as u64),
            self.first().to_string(),
            self.last().to_string(),
            thousands(self.missing()),
            t.min().to_string(),
            t.mean().to_string(),
            t.max().to_string(),
            c.min().to_string(),
            c.mean().to_string(),
            c.max().to_string(),
            h.min().to_string(),
            h.mean().to_string(),
            h.max().to_string(),
        ]
    }

    pub fn first(&self) -> u64 {
        self.windows.first().map_or(0, |w| w.window_id)
    }

    pub fn last(&self) -> u64 {
        self.windows.last().map_or(0, |w| w.window_id)
    }

    /// The windows missing between the first and the last, as ranges.
    pub fn gaps(&self) -> Vec<RangeInclusive<u64>> {
        self.windows
            .windows(2)
            .filter_map(|pair| {
                let (a, b) = (pair[0].window_id, pair[1].window_id);
                (b > a + 1).then(|| a + 1..=b - 1)
            })
            .collect()
    }

    pub fn missing(&self) -> u64 {
        self.gaps().iter().map(|g| g.end() - g.start() + 1).sum()
    }

    /// The runs of consecutive windows: a chart draws each as one line, so gaps show.
    pub fn runs(&self) -> Vec<&[Window]> {
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=self.windows.len() {
            if i == self.windows.len() || self.windows[i].window_id != self.windows[i - 1].window_id + 1 {
                runs.push(&self.windows[start..i]);
                start = i;
            }
        }
        runs
    }

    pub fn temperature(&self) -> Stats {
        Stats::of(self.windows.iter().map(|w| w.avg_temp.0), 1)
    }

    pub fn co(&self) -> Stats {
        Stats::of(self.windows.iter().map(|w| w.avg_co), 0)
    }

    pub fn humidity(&self) -> Stats {
        Stats::of(self.windows.iter().map(|w| w.avg_humidity), 0)
    }
}

/// Min, mean and max of one average over a sensor's windows. Values are integers with
/// `decimals` (0 or 1) implied decimals, as in the table; the mean gets one decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub min: i64,
    pub max: i64,
    /// In tenths of the unit.
    pub mean_tenths: i64,
    decimals: u8,
}

impl Stats {
    fn of(values: impl Iterator<Item = i64>, decimals: u8) -> Stats {
        let (mut min, mut max, mut sum, mut n) = (i64::MAX, i64::MIN, 0i64, 0i64);
        for v in values {
            (min, max, sum, n) = (min.min(v), max.max(v), sum + v, n + 1);
        }
        let scale = if decimals == 0 { 10 } else { 1 };
        let mean_tenths = if n == 0 { 0 } else { div_round_half_even(sum * scale, n) };
        Stats { min, max, mean_tenths, decimals }
    }

    pub fn min(&self) -> String {
        self.value(self.min)
    }

    pub fn max(&self) -> String {
        self.value(self.max)
    }

    pub fn mean(&self) -> String {
        Tenths(self.mean_tenths).to_string()
    }

    fn value(&self, v: i64) -> String {
        match self.decimals {
            0 => v.to_string(),
            _ => Tenths(v).to_string(),
        }
    }
}

/// The first ranges of a list, `17, 40-41, ...`.
pub fn ranges(gaps: &[RangeInclusive<u64>], at_most: usize) -> String {
    let mut shown: Vec<String> = gaps
        .iter()
        .take(at_most)
        .map(|g| if g.start() == g.end() { g.start().to_string() } else { format!("{}-{}", g.start(), g.end()) })
        .collect();
    if gaps.len() > at_most {
        let more = gaps.len() - at_most;
        shown.push(format!("and {} more {}", thousands(more as u64), if more == 1 { "gap" } else { "gaps" }));
    }
    shown.join(", ")
}

/// Bad records listed one per line on stdout, at the most.
const BAD_SHOWN: usize = 20;
/// Gaps listed per sensor, at the most.
const GAPS_SHOWN: usize = 10;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.read.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 { self.read.records as f64 / seconds } else { 0.0 };
        writeln!(
            f,
            "read `{}`: {} from {} in {seconds:.1} s ({}/s)",
            self.topic,
            counted(self.read.records, "record"),
            counted(self.read.partitions as u64, "partition"),
            thousands(rate as u64)
        )?;
        writeln!(
            f,
            "table: {} ({} overwritten by a later value, {} deleted by a tombstone)",
            counted(self.windows, "window"),
            thousands(self.overwritten),
            thousands(self.deleted)
        )?;
        let bad = self.bad_records();
        write!(f, "bad records skipped: {}", thousands(bad))?;
        if bad > 0 {
            let by: Vec<String> = self.bad_by_category.iter().map(|(c, n)| format!("{c} {}", thousands(*n))).collect();
            write!(f, " ({})", by.join(", "))?;
        }
        writeln!(f)?;
        for b in self.bad.iter().take(BAD_SHOWN) {
            writeln!(f, "  partition {}, offset {}: {}", b.partition, b.offset, b.reason)?;
        }
        if bad > BAD_SHOWN.min(self.bad.len()) as u64 {
            writeln!(f, "  and {} more", thousands(bad - BAD_SHOWN.min(self.bad.len()) as u64))?;
        }
        for &(partition, stable, end) in &self.read.unfinished {
            writeln!(
                f,
                "partition {partition}: offsets {stable} to {} are in a transaction not committed (yet), so not in the table",
                end - 1
            )?;
        }
        if let Some((days, left_out)) = self.only {
            writeln!(f, "only {days}-day windows (--window-days): {} of other lengths left out", thousands(left_out))?;
        }
        if self.sections.is_empty() {
            writeln!(f, "\nno window to report")?;
        }
        for section in &self.sections {
            writeln!(f)?;
            section.fmt(f)?;
        }
        if !self.written.is_empty() {
            writeln!(f)?;
        }
        for (what, path) in &self.written {
            let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            writeln!(f, "wrote {what}: {}", shown.display())?;
        }
        Ok(())
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}, avg_co in ppm, avg_humidity in %: {}, {}",
            self.title(),
            counted(self.sensors.len() as u64, "sensor"),
            counted(self.windows() as u64, "window")
        )?;
        let width = self.sensors.iter().map(|s| s.sensor_id.len()).max().unwrap_or(0).max("SENSOR".len());
        let header = FIGURES.map(|(name, _)| name.to_string());
        for (id, figures) in
            std::iter::once(("SENSOR", header)).chain(self.sensors.iter().map(|s| (s.sensor_id.as_str(), s.figures())))
        {
            write!(f, "{id:<width$}")?;
            for (i, (figure, (_, figure_width))) in figures.iter().zip(FIGURES).enumerate() {
                // Two spaces before each group of three: temperature, CO, humidity.
                let gap = if i >= 4 && (i - 4) % 3 == 0 { "  " } else { " " };
                write!(f, "{gap}{figure:>figure_width$}")?;
            }
            writeln!(f)?;
        }
        for s in self.sensors.iter().filter(|s| s.missing() > 0) {
            writeln!(f, "missing in {}: {}", s.sensor_id, ranges(&s.gaps(), GAPS_SHOWN))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::week;

    fn window(id: u64, temp: i64) -> Window {
        Window::from(&week("sensor-1", id, temp))
    }

    fn series(ids: &[u64]) -> Series {
        Series { sensor_id: "sensor-1".into(), windows: ids.iter().map(|&id| window(id, id as i64)).collect() }
    }

    /// Gaps, missing windows and runs follow the window ids.
    #[test]
    fn gaps_and_runs() {
        let s = series(&[3, 4, 6, 9, 10, 11]);
        assert_eq!((s.first(), s.last(), s.missing()), (3, 11, 3));
        assert_eq!(s.gaps(), [5..=5, 7..=8]);
        assert_eq!(ranges(&s.gaps(), 10), "5, 7-8");
        assert_eq!(ranges(&s.gaps(), 1), "5, and 1 more gap");
        let runs: Vec<Vec<u64>> = s.runs().iter().map(|r| r.iter().map(|w| w.window_id).collect()).collect();
        assert_eq!(runs, [vec![3, 4], vec![6], vec![9, 10, 11]]);
        assert!(series(&[1, 2, 3]).gaps().is_empty());
    }

    /// Min and max as the table has them, the mean with one decimal, rounded once.
    #[test]
    fn stats_of_averages() {
        let s = series(&[1, 2, 4]);
        let t = s.temperature();
        assert_eq!((t.min(), t.mean(), t.max()), ("0.1".into(), "0.2".into(), "0.4".into()));
        let c = Stats::of([700, 701, 703].into_iter(), 0);
        assert_eq!((c.min(), c.mean(), c.max()), ("700".into(), "701.3".into(), "703".into()));
        assert_eq!(Stats::of([-5, -10].into_iter(), 1).mean(), "-0.8");
    }

    /// The report groups by window length and unit, keeps the counts, and prints a line per
    /// sensor with its gaps.
    #[test]
    fn printed_summary() {
        let mut table = Table::default();
        let mut offset = 0;
        for a in [week("sensor-1", 1, 200), week("sensor-1", 3, 220), week("sensor-2", 1, -15)] {
            table.apply(0, offset, Some(&a.key.to_json()), Some(&a.to_json()));
            offset += 1;
        }
        table.apply(0, offset, Some(b"bad"), None);
        let report = Report::new("agg", Read { partitions: 1, records: 4, ..Read::default() }, table, None);
        let text = report.to_string();
        assert!(text.contains("read `agg`: 4 records from 1 partition in"), "{text}");
        assert!(text.contains("table: 3 windows (0 overwritten"), "{text}");
        assert!(text.contains("bad records skipped: 1 (not-json 1)\n  partition 0, offset 3: "), "{text}");
        assert!(text.contains(
            "7-day windows (week_id), avg_temp in °C, avg_co in ppm, avg_humidity in %: 2 sensors, 3 windows"
        ));
        let row =
            |sensor: &str| text.lines().find(|l| l.starts_with(sensor)).unwrap().split_whitespace().collect::<Vec<_>>();
        assert_eq!(
            row("sensor-1"),
            ["sensor-1", "2", "1", "3", "1", "20.0", "21.0", "22.0", "700", "700.0", "700", "50", "50.0", "50"]
        );
        assert_eq!(row("sensor-2")[5..8], ["-1.5", "-1.5", "-1.5"]);
        assert!(text.contains("missing in sensor-1: 2\n"), "{text}");
        // The columns line up under their heads, the three groups apart.
        let line = |start: &str| text.lines().find(|l| l.starts_with(start)).unwrap().to_string();
        assert_eq!(
            line("SENSOR"),
            concat!(
                "SENSOR    WINDOWS  FIRST   LAST  MISSING   TEMP_MIN TEMP_MEAN  TEMP_MAX   CO_MIN CO_MEAN  CO_MAX",
                "  HUM_MIN HUM_MEAN HUM_MAX"
            )
        );
        assert_eq!(
            line("sensor-1"),
            concat!(
                "sensor-1        2      1      3        1       20.0      21.0      22.0      700   700.0     700",
                "       50     50.0      50"
            )
        );
    }
}
