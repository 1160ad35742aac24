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

use crate::rules::Rules;
use crate::window::Windows;

const VERSION: u32 = 1;
/// Marks kept in the history: enough to roll back to within a few percent of the topic.
pub const HISTORY: usize = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub rules: Rules,
    /// Bytes of the output file that these offsets produced.
    pub output_len: u64,
    /// Next offset to read, per partition.
    pub offsets: BTreeMap<i32, i64>,
    pub windows: Windows,
    /// Earlier checkpoints, oldest first, the newest being this one; see [`Checkpoint::remember`].
    #[serde(default)]
    pub history: Vec<Mark>,
}

/// One checkpoint as it was: a state the output can be rolled back to and recomputed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub output_len: u64,
    pub offsets: BTreeMap<i32, i64>,
    pub windows: Windows,
}

impl Mark {
    /// Readings consumed up to this mark, over all partitions: its place in the topic.
    pub fn position(&self) -> i64 {
        self.offsets.values().sum()
    }

    /// True if the mark has not read past `targets` in any partition (unlisted partitions
    /// do not constrain it).
    pub fn not_after(&self, targets: &BTreeMap<i32, i64>) -> bool {
        targets.iter().all(|(p, &target)| self.offsets.get(p).copied().unwrap_or(0) <= target)
    }
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
        Checkpoint { version: VERSION, rules, output_len: 0, offsets: BTreeMap::new(), windows, history: Vec::new() }
    }

    /// This checkpoint's state as a mark.
    pub fn mark(&self) -> Mark {
        Mark { output_len: self.output_len, offsets: self.offsets.clone(), windows: self.windows.clone() }
    }

    /// Adds the current state to the history (replacing the newest mark if no reading was
    /// consumed since), then thins the history to [`HISTORY`] marks: the oldest and the newest
    /// stay, and of the others the one whose neighbours are closest goes, so the marks stay
    /// spread over the whole topic.
    pub fn remember(&mut self) {
        self.remember_mark(self.mark());
    }

    /// Adds `mark`, a state between this checkpoint's last mark and its current state, to the
    /// history, as [`Checkpoint::remember`] does. A mark may be taken between checkpoints (its
    /// output length is durable once the next checkpoint is saved), so that a short run still
    /// leaves states to roll back to.
    pub fn remember_mark(&mut self, mark: Mark) {
        if self.history.last().is_some_and(|last| last.position() == mark.position()) {
            self.history.pop();
        }
        self.history.push(mark);
        while self.history.len() > HISTORY {
            let positions: Vec<i64> = self.history.iter().map(Mark::position).collect();
            let closest = (1..positions.len() - 1)
                .min_by_key(|&i| positions[i + 1] - positions[i - 1])
                .expect("more than two marks");
            self.history.remove(closest);
        }
    }

    /// The newest mark that has not read past `targets`; `None` if even the oldest has.
    pub fn last_mark_not_after(&self, targets: &BTreeMap<i32, i64>) -> Option<usize> {
        self.history.iter().rposition(|mark| mark.not_after(targets))
    }

    /// Rolls the state back to mark `index`; the marks after it no longer describe the output.
    pub fn roll_back(&mut self, index: usize) {
        self.history.truncate(index + 1);
        let mark = self.history[index].clone();
        (self.output_len, self.offsets, self.windows) = (mark.output_len, mark.offsets, mark.windows);
    }

    /// Where the checkpoint of `output` lives: beside it, `<output>.checkpoint`.
    pub fn path_for(output: &Path) -> PathBuf {
        weather_common::beside(output, ".checkpoint")
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
        let mut checkpoint = checkpoint;
        if checkpoint.history.last() != Some(&checkpoint.mark()) {
            // Written before the history existed: the checkpoint itself is its only mark.
            checkpoint.remember();
        }
        Ok(Some(checkpoint))
    }

    /// Replaces the checkpoint of `output` atomically and durably.
    pub fn save(&self, output: &Path) -> io::Result<()> {
        let path = Checkpoint::path_for(output);
        let mut staging = path.clone().into_os_string();
        staging.push(".tmp");
        let staging = PathBuf::from(staging);
        let mut json = serde_json::to_vec(self)?;
        json.push(b'\n');
        let mut file = File::create(&staging)?;
        file.write_all(&json)?;
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
    use crate::rules::Format;
    use crate::units::Unit;
    use crate::window::WindowSize;

    fn rules() -> Rules {
        Rules {
            topic: "weather".into(),
            window: WindowSize::WEEK,
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
        checkpoint.remember();
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

    fn at(offsets: &[(i32, i64)], output_len: u64) -> Checkpoint {
        let mut checkpoint = Checkpoint::new(rules(), Windows::new(WindowSize::WEEK));
        checkpoint.offsets = offsets.iter().copied().collect();
        checkpoint.output_len = output_len;
        checkpoint
    }

    /// The history keeps the oldest and newest marks and spreads the rest evenly over the
    /// topic, however many checkpoints were taken.
    #[test]
    fn history_stays_spread_over_the_topic() {
        let mut checkpoint = at(&[(0, 0)], 0);
        checkpoint.remember();
        for i in 1..=1000 {
            checkpoint.offsets.insert(0, i * 10);
            checkpoint.output_len = i as u64;
            checkpoint.remember();
            checkpoint.remember(); // nothing consumed since: no new mark
        }
        let positions: Vec<i64> = checkpoint.history.iter().map(Mark::position).collect();
        assert_eq!(positions.len(), HISTORY);
        assert_eq!((positions[0], positions[HISTORY - 1]), (0, 10_000));
        let widest = positions.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(widest <= 2 * 10_000 / (HISTORY as i64 - 1), "uneven marks: {positions:?}");
    }

    /// Rolling back picks the newest mark not past the targets in any listed partition, and
    /// forgets the marks after it.
    #[test]
    fn roll_back_to_the_last_mark_before_the_targets() {
        let mut checkpoint = at(&[(0, 0), (1, 0)], 0);
        for (offsets, len) in [([(0, 0), (1, 0)], 10), ([(0, 5), (1, 3)], 20), ([(0, 9), (1, 8)], 30)] {
            (checkpoint.offsets, checkpoint.output_len) = (offsets.into_iter().collect(), len);
            checkpoint.remember();
        }
        let targets = |t: &[(i32, i64)]| t.iter().copied().collect::<BTreeMap<_, _>>();
        assert_eq!(checkpoint.last_mark_not_after(&targets(&[(0, 9), (1, 8)])), Some(2));
        assert_eq!(checkpoint.last_mark_not_after(&targets(&[(0, 8)])), Some(1));
        assert_eq!(checkpoint.last_mark_not_after(&targets(&[(0, 6), (1, 2)])), Some(0));
        assert_eq!(checkpoint.last_mark_not_after(&targets(&[(2, 0)])), Some(2), "an unread partition");
        let mut none = at(&[(0, 4)], 0);
        none.remember();
        assert_eq!(none.last_mark_not_after(&targets(&[(0, 3)])), None);
        checkpoint.roll_back(1);
        assert_eq!((checkpoint.output_len, checkpoint.offsets[&0], checkpoint.history.len()), (20, 5, 2));
    }

    /// A checkpoint written before the history existed loads with itself as its only mark.
    #[test]
    fn checkpoints_without_history_load() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.csv");
        let old = at(&[(0, 12)], 40);
        let mut json = serde_json::to_value(&old).unwrap();
        json.as_object_mut().unwrap().remove("history");
        fs::write(Checkpoint::path_for(&output), json.to_string()).unwrap();
        let loaded = Checkpoint::load(&output, &rules()).unwrap().unwrap();
        assert_eq!(loaded.history, [old.mark()]);
    }
}
