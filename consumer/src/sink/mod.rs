//! Where finished windows go: a row format over any `Write` ([`txt`], [`csv`]), the local
//! output file that tracks its durable length ([`file`]), and the S3 copy ([`s3`]).

pub mod csv;
pub mod file;
pub mod s3;
pub mod txt;

use std::io;

use crate::units::Unit;
use crate::window::{WindowSize, WindowSummary};

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The walkthrough's one-line text file: `id,temp,co,humidity,` per window.
    Txt,
    /// A CSV file with a header and one row per window.
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Csv => "csv",
        }
    }
}

/// What every row format is told once: which columns to write and in which unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub size: WindowSize,
    pub unit: Unit,
    /// Start every row (CSV) or group (TXT) with the sensor id: needed when the topic
    /// carries several sensors.
    pub sensor_column: bool,
}

/// A row format: the file's opening bytes and one row per window.
pub trait RowFormat: Send {
    /// Written once, to an empty file.
    fn write_header(&self, out: &mut dyn io::Write) -> io::Result<()>;
    fn write_row(&self, out: &mut dyn io::Write, window: &WindowSummary) -> io::Result<()>;
}

/// The row format for `format`.
pub fn row_format(format: Format, layout: Layout) -> Box<dyn RowFormat> {
    match format {
        Format::Txt => Box::new(txt::Txt(layout)),
        Format::Csv => Box::new(csv::Csv(layout)),
    }
}

#[cfg(test)]
pub(crate) fn week(sensor: &str, id: u64, temperature_tenths: i64, co: u64, humidity: u64) -> WindowSummary {
    WindowSummary {
        sensor_id: sensor.into(),
        window_id: id,
        readings: 7,
        complete: true,
        temperature_tenths,
        co_concentration: co,
        humidity,
    }
}
