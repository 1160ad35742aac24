//! What makes the output and the Kafka offsets agree after a crash.
//!
//! Beside the output file lives a small checkpoint, replaced atomically (write, fsync,
//! rename, fsync the directory), that records per partition the next offset to read, the
//! length of the output that those offsets produced, and the open windows. A restart cuts
//! the output back to that length and resumes from those offsets with that state, so what
//! was written after the checkpoint is written again exactly once. Kafka commits follow the
//! checkpoint, for lag tools, but are not the source of truth.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sink::Format;
use crate::units::Unit;
use crate::window::Windows;

const VERSION: u32 = 1;

/// The rules an output file was computed under. A checkpoint is only resumed under the same
/// rules: anything else needs a rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub topic: String,
    pub window_days: u32,
    pub unit: Unit,
    pub format: Format,
    pub sensor_column: bool,
}

impl Rules {
    /// The consumer group of an output computed under these rules: derived from what the
    /// consumer computes and writes, so that a v1 and a v2 consumer never share progress.
    pub fn default_group(&self, file_name: &str) -> String {
        let size = crate::window::WindowSize::days(self.window_days)
            .map_or_else(|| format!("{}d", self.window_days), |s| s.label());
        let by_sensor = if self.sensor_column { "-by-sensor" } else { "" };
        format!("weather-consumer-{size}-{}-{}{by_sensor}-{file_name}", self.unit.name(), self.format.name())
    }
}

impl std::fmt::Display for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "topic {}, {}-day windows, {}, {}",
            self.topic,
            self.window_days,
            self.unit.name(),
            self.format.name()
        )?;
        if self.sensor_column {
            f.write_str(", sensor column")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub rules: Rules,
    /// Bytes of the output file that these offsets produced.
    pub output_len: u64,
    /// Next offset to read, per partition.
    pub offsets: BTreeMap<i32, i64>,
    pub windows: Windows,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("checkpoint {path} is damaged ({source}); delete it and rebuild with --from-beginning")]
    Damaged { path: PathBuf, source: serde_json::Error },
    #[error("{output} was computed with other rules ({found}) than this run's ({wanted}): rebuild it with --from-beginning, or choose another --output")]
    OtherRules { output: PathBuf, found: Rules, wanted: Rules },
}

impl Checkpoint {
    pub fn new(rules: Rules, windows: Windows) -> Self {
        Checkpoint { version: VERSION, rules, output_len: 0, offsets: BTreeMap::new(), windows }
    }

    /// Where the checkpoint of `output` lives: beside it, `<output>.checkpoint`.
    pub fn path_for(output: &Path) -> PathBuf {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".checkpoint");
        output.with_file_name(name)
    }

    /// The checkpoint of `output`, if there is one, as it is.
    pub fn read(output: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = Checkpoint::path_for(output);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|source| CheckpointError::Damaged { path, source })
    }

    /// The checkpoint of `output`, if there is one, checked against this run's rules.
    pub fn load(output: &Path, rules: &Rules) -> Result<Option<Checkpoint>, CheckpointError> {
        let Some(checkpoint) = Checkpoint::read(output)? else { return Ok(None) };
        if &checkpoint.rules != rules {
            return Err(CheckpointError::OtherRules {
                output: output.to_path_buf(),
                found: checkpoint.rules,
                wanted: rules.clone(),
            });
        }
        Ok(Some(checkpoint))
    }

    /// Replaces the checkpoint of `output` atomically and durably.
    pub fn save(&self, output: &Path) -> io::Result<()> {
        let path = Checkpoint::path_for(output);
        let mut staging = path.clone().into_os_string();
        staging.push(".tmp");
        let staging = PathBuf::from(staging);
        let mut file = File::create(&staging)?;
        serde_json::to_writer(&mut file, self)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&staging, &path)?;
        sync_dir(&path)
    }

    /// Removes the checkpoint of `output`, for a rebuild from the beginning.
    pub fn remove(output: &Path) -> io::Result<()> {
        match fs::remove_file(Checkpoint::path_for(output)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Makes a rename durable: the directory entry itself must reach the disk.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowSize;

    fn rules() -> Rules {
        Rules {
            topic: "weather".into(),
            window_days: 7,
            unit: Unit::Fahrenheit,
            format: Format::Csv,
            sensor_column: false,
        }
    }

    /// A saved checkpoint loads back as it was, from beside its output.
    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("weather_aggregation.csv");
        assert_eq!(Checkpoint::load(&output, &rules()).unwrap(), None);
        let mut checkpoint = Checkpoint::new(rules(), Windows::new(WindowSize::WEEK));
        checkpoint.output_len = 42;
        checkpoint.offsets.insert(0, 1000);
        checkpoint.offsets.insert(3, 7);
        checkpoint.save(&output).unwrap();
        assert!(dir.path().join("weather_aggregation.csv.checkpoint").exists());
        assert_eq!(Checkpoint::load(&output, &rules()).unwrap(), Some(checkpoint));
    }

    /// A checkpoint made under other rules is refused with the way out.
    #[test]
    fn other_rules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.csv");
        Checkpoint::new(rules(), Windows::new(WindowSize::WEEK)).save(&output).unwrap();
        let celsius = Rules { unit: Unit::Celsius, ..rules() };
        let err = Checkpoint::load(&output, &celsius).unwrap_err().to_string();
        assert!(err.contains("--from-beginning") && err.contains("fahrenheit") && err.contains("celsius"), "{err}");
    }

    /// A damaged checkpoint is reported, not silently ignored.
    #[test]
    fn damaged_checkpoint_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.csv");
        fs::write(Checkpoint::path_for(&output), "{not json").unwrap();
        assert!(matches!(Checkpoint::load(&output, &rules()), Err(CheckpointError::Damaged { .. })));
    }
}
