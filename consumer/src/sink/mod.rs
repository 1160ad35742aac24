//! Where finished windows go: row formats that turn a window into bytes ([`txt`], [`csv`]),
//! the local output file that tracks its durable length ([`file`]), the S3 copy ([`s3`]), and
//! the window tables ([`table`], the seam they share; [`postgres`], the warehouse table;
//! [`topic`], the aggregates topic).
//!
//! Adding a table: a module that implements the traits of [`table`], and one line in
//! [`TableArgs`] below. Nothing else names a particular table.

pub mod csv;
pub mod file;
pub mod postgres;
pub mod s3;
pub mod table;
pub mod topic;
pub mod txt;

use std::sync::Arc;

use crate::rules::{Format, Rules};
use crate::window::WindowSummary;
use table::{Checks, TableConfig, TableFlags};

/// The window tables a run can write to, each with the flags its module declares.
#[derive(clap::Args, Debug, Clone)]
pub struct TableArgs {
    #[command(flatten)]
    postgres: postgres::PostgresArgs,
    #[command(flatten)]
    topic: topic::TopicArgs,
}

impl TableArgs {
    /// Every table's flags, in the order the tables commit. After a crash the last is the one
    /// furthest behind, and so it is the reference output of a run without a file; the first
    /// names the default consumer group of such a run.
    fn each(self) -> Vec<Box<dyn TableFlags>> {
        let TableArgs { postgres, topic } = self;
        vec![Box::new(postgres), Box::new(topic)]
    }

    /// The flags that ask for a table, for messages.
    pub fn flags(&self) -> Vec<&'static str> {
        self.clone().each().iter().map(|t| t.flag()).collect()
    }

    /// The tables asked for, checked, in the order they commit.
    pub fn check(self, checks: &Checks<'_>) -> Result<Vec<Arc<dyn TableConfig>>, String> {
        let mut tables = Vec::new();
        for flags in self.each() {
            tables.extend(flags.check(checks)?);
        }
        Ok(tables)
    }
}

/// A row format: the file's opening bytes and one row per window, formatted in a buffer the
/// format keeps (a replay formats hundreds of thousands of rows).
pub trait RowFormat: Send {
    /// Written once, to an empty file.
    fn header(&mut self) -> &[u8];
    fn row(&mut self, window: &WindowSummary) -> &[u8];
}

/// A window's row in `out` (cleared first): its values separated by commas, then `end`. The
/// values are its sensor id (with a sensor column), its id and its averages. Both formats' rows
/// are these values; none ever needs quoting in CSV: numbers, and sensor ids of letters,
/// digits, `.`, `_` and `-` (every reading's id is checked when it is read).
fn row<'a>(out: &'a mut Vec<u8>, rules: &Rules, w: &WindowSummary, end: u8) -> &'a [u8] {
    out.clear();
    debug_assert!(weather_common::reading::is_valid_sensor_id(&w.sensor_id), "{}", w.sensor_id);
    let a = w.averages(rules.unit);
    if rules.sensor_column {
        out.extend_from_slice(w.sensor_id.as_bytes());
        out.push(b',');
    }
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(number.format(w.window_id).as_bytes());
    out.push(b',');
    crate::units::Tenths(a.temperature_tenths).write_to(out);
    out.push(b',');
    out.extend_from_slice(number.format(a.co_concentration).as_bytes());
    out.push(b',');
    out.extend_from_slice(number.format(a.humidity).as_bytes());
    out.push(end);
    out
}

/// The row format of `rules`: its format, with the columns and unit they say.
pub fn row_format(rules: &Rules) -> Box<dyn RowFormat> {
    match rules.format {
        Format::Txt => Box::new(txt::Txt::new(rules.clone())),
        Format::Csv => Box::new(csv::Csv::new(rules.clone())),
    }
}

/// The rules of a test output.
#[cfg(test)]
pub(crate) fn rules(
    window: crate::window::WindowSize,
    unit: crate::units::Unit,
    format: Format,
    sensor_column: bool,
) -> Rules {
    Rules { topic: "weather".into(), window, unit, format, sensor_column }
}

/// What `format` writes for `windows`, to an empty file, as text.
#[cfg(test)]
pub(crate) fn render(mut format: impl RowFormat, windows: &[WindowSummary]) -> String {
    let mut out = format.header().to_vec();
    for w in windows {
        out.extend_from_slice(format.row(w));
    }
    String::from_utf8(out).expect("rows are UTF-8")
}

#[cfg(test)]
pub(crate) fn week(sensor: &str, id: u64, temperature_tenths: i64, co: u64, humidity: u64) -> WindowSummary {
    WindowSummary {
        sensor_id: sensor.into(),
        window_id: id,
        readings: 7,
        first_record_id: (id - 1) * 7 + 1,
        last_record_id: id * 7,
        complete: true,
        temperature_tenths,
        co_concentration: co,
        humidity,
    }
}
