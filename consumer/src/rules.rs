//! The rules an output is computed under: the one record of what a consumer computes (the
//! topic, the window length, the unit) and how it writes it (the format, the sensor column).
//! The settings, the checkpoint, the row formats and the default consumer group all take it
//! from here.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::units::Unit;
use crate::window::WindowSize;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
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

/// The rules an output file was computed under. A checkpoint is only resumed under the same
/// rules: anything else needs a rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub topic: String,
    /// Readings (simulated days) per window; `window_days` in the checkpoint.
    #[serde(rename = "window_days")]
    pub window: WindowSize,
    /// The unit of `avg_temp`.
    pub unit: Unit,
    pub format: Format,
    /// Every row (CSV) or group (TXT) starts with the sensor id: needed when the topic carries
    /// several sensors.
    pub sensor_column: bool,
}

impl Rules {
    /// The consumer group of `output` computed under these rules: derived from what the
    /// consumer computes and from the output's absolute path, so that a v1 and a v2 consumer,
    /// or two files of the same name in different directories, never share progress.
    pub fn default_group(&self, output: &Path) -> String {
        let size = self.window.label();
        let by_sensor = if self.sensor_column { "-by-sensor" } else { "" };
        format!(
            "weather-consumer-{size}-{}-{}{by_sensor}:{}",
            self.unit.name(),
            self.format.name(),
            absolute(output).display()
        )
    }
}

/// `path` made absolute, its directory with symbolic links resolved where it exists, so that
/// one file has one name however it is given.
pub fn absolute(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (fs::canonicalize(dir), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

impl std::fmt::Display for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {}, {}-day windows, {}, {}",
            self.topic,
            self.window.get(),
            self.unit.name(),
            self.format.name()
        )?;
        if self.sensor_column {
            f.write_str(", sensor column")?;
        }
        Ok(())
    }
}
