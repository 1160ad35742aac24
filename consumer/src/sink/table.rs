//! Window tables: outputs that keep one row per window (a PostgreSQL table, a compacted topic)
//! and make their rows durable together with their own progress, in one transaction. This is
//! the seam between the consumer's loop and each of them; what is specific to one lives in its
//! own module ([`super::postgres`], [`super::topic`]).
//!
//! The order that makes a table hold every window once, beside the file or alone: at each
//! checkpoint every table commits first (its new rows and its offsets, all or nothing), and the
//! file's checkpoint is saved after. A crash in between leaves a table *ahead* of the file,
//! never behind it. The restarted run resumes at the file's checkpoint, and a table that is
//! ahead is not sent again the windows it already holds: those whose readings all lie below its
//! durable offsets ([`CatchUp`]). Without a file (`--no-file`) the table's own state, open
//! windows included, is the checkpoint.
//!
//! A new kind of table is a module of its own with three parts, listed once in
//! [`super::TableArgs`]: its flags ([`TableFlags`]), checked into a [`TableConfig`] before any
//! work starts, which opens the running [`WindowTable`]; [`join`] and [`Table`] then give it the
//! same guarantees. What the running table must provide: its durable [`TableState`] for the
//! output (consumer group and topic) when opened; [`WindowTable::rebuild`], durable at once,
//! keeping the old rows visible until a commit with `caught_up`; and [`WindowTable::commit`],
//! all or nothing, that tells after a lost connection whether the last attempt landed, so that
//! it is never applied twice.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use tokio::runtime::Handle;
use weather_common::kafka::KafkaArgs;
use weather_common::shutdown::Stop;

use crate::rules::Rules;
use crate::share::store::{GroupStore, Membership, Mirror};
use crate::window::{WindowSummary, Windows};

/// A table's flags, as the command line gave them.
pub trait TableFlags {
    /// The flag that asks for this table, e.g. `--to-postgres`.
    fn flag(&self) -> &'static str;

    /// The table's checked configuration, if its flag was given; the error names the flag and
    /// says what is wrong.
    fn check(self: Box<Self>, checks: &Checks<'_>) -> Result<Option<Arc<dyn TableConfig>>, String>;
}

/// What a table's flags are checked against.
pub struct Checks<'a> {
    pub kafka: &'a KafkaArgs,
    /// The topic read.
    pub topic: &'a str,
    pub dead_letter_topic: &'a str,
}

/// A table, checked: everything needed to open it for a run.
pub trait TableConfig: fmt::Debug + Send + Sync {
    /// What kind of table it is, in a word, for metrics' labels: `postgres`, `topic`.
    fn kind(&self) -> &'static str;

    /// The consumer group of an output that has no file and this as its first table: derived
    /// from what the consumer computes and from where the table lives.
    fn default_group(&self, rules: &Rules) -> String;

    /// Opens the table for this run's output: connects, creates what is missing, and reads
    /// where the output's progress stands.
    fn open(&self, run: &Opening<'_>) -> anyhow::Result<Box<dyn WindowTable>>;

    /// True if members of a shared group (`--share`) can write to this table and keep the
    /// group's state beside it.
    fn shares(&self) -> bool {
        false
    }

    /// Joins a shared group whose state this table keeps (see [`TableConfig::shares`]).
    fn group_store(&self, membership: &Membership<'_>) -> anyhow::Result<Box<dyn GroupStore>> {
        anyhow::bail!("{} cannot keep a shared group's state (group `{}`)", self.kind(), membership.group)
    }

    /// True if members of a shared group can write to this table beside the table that keeps
    /// the group's state, in that table's commits ([`Mirror`]).
    fn mirrors(&self) -> bool {
        false
    }

    /// Opens this table for a member of a shared group (see [`TableConfig::mirrors`]).
    fn mirror(&self, run: &Opening<'_>) -> anyhow::Result<Box<dyn Mirror>> {
        anyhow::bail!("{} cannot be written by a shared group (group `{}`)", self.kind(), run.group)
    }
}

/// The run a table is opened for.
pub struct Opening<'a> {
    pub kafka: &'a KafkaArgs,
    /// The consumer group of the output.
    pub group: &'a str,
    pub rules: &'a Rules,
    /// The run rebuilds every output from the beginning: progress under other rules is no
    /// reason to stop.
    pub rebuild: bool,
    pub stop: &'a Stop,
    pub runtime: &'a Handle,
}

/// Where a table's durable progress stands for one output (its consumer group and topic).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableState {
    /// Next offset per partition that its rows account for; empty: nothing of this output yet.
    pub offsets: BTreeMap<i32, i64>,
    /// The open windows at those offsets; kept only by a table that is the only output.
    pub windows: Option<Windows>,
    /// A rebuild is under way: its rows are not visible to readers until it has caught up.
    pub rebuilding: bool,
    /// Its last commit held the partial windows written at the end of a run (`--emit-partial`).
    pub ended_with_partial: bool,
}

/// One commit: the windows taken since the last one, made durable with this progress.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// Next offset per partition.
    pub offsets: &'a BTreeMap<i32, i64>,
    /// The open windows: given only when the table is the only output.
    pub windows: Option<&'a Windows>,
    /// The run has read everything there was to read (or up to its bound): a rebuild can be
    /// made visible now.
    pub caught_up: bool,
    /// This commit holds the partial windows of the run's end.
    pub partial: bool,
}

/// A table of windows. Its methods block: the consumer's loop runs on a thread of its own.
pub trait WindowTable: Send {
    /// The table in messages, without secrets, e.g. `PostgreSQL table weather_aggregates on
    /// 127.0.0.1:5432/weather`.
    fn name(&self) -> &str;

    /// Its durable progress for this output: as found when it was opened, then as each
    /// commit left it.
    fn state(&self) -> &TableState;

    /// Starts rebuilding this output's rows, reading from `from` with `windows` open (given
    /// only when the table is the only output): durable at once. The rows it replaces stay
    /// visible until the rebuild has caught up, then all change at once.
    fn rebuild(&mut self, from: &BTreeMap<i32, i64>, windows: Option<&Windows>) -> anyhow::Result<()>;

    /// Takes a finished window (complete, or partial at the end of a run): durable with the
    /// next commit.
    fn add(&mut self, window: &WindowSummary) -> anyhow::Result<()>;

    /// Makes every window taken since the last commit durable with `commit`'s progress, in one
    /// transaction: all or nothing, whatever fails when.
    fn commit(&mut self, commit: &Commit<'_>) -> anyhow::Result<()>;
}

/// How a table joins a run that resumes the file at `resume` (next offset per partition).
#[derive(Debug, PartialEq)]
pub enum Joining {
    /// The table stands where the file does.
    Along,
    /// The table is ahead (a crash between its commit and the file's checkpoint).
    CatchUp(CatchUp),
    /// The table starts this output's rows anew.
    Rebuild,
}

/// How the reference output starts a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStart {
    /// It resumes where it stood.
    Resumes,
    /// It starts anew, from elsewhere than the beginning (a new output, a roll-back).
    Anew,
    /// Every output is rebuilt from the beginning of the topic, whatever it holds.
    Rebuilt,
}

/// Decides how a table in `state` joins a run whose reference output stands at `resume` and
/// starts as `start`. The error says why the table cannot follow the reference, for a message
/// that adds what to do.
pub fn join(state: &TableState, resume: &BTreeMap<i32, i64>, start: OutputStart) -> Result<Joining, String> {
    let fresh = start != OutputStart::Resumes;
    if start == OutputStart::Rebuilt || (fresh && state.offsets.is_empty()) {
        return Ok(Joining::Rebuild);
    }
    if state.offsets.is_empty() {
        return Err("it holds no windows of this output yet, and the output has progress of its own".to_string());
    }
    let behind: Vec<String> = resume
        .iter()
        .filter(|&(p, &file)| state.offsets.get(p).is_none_or(|&table| table < file))
        .map(|(p, file)| {
            format!("partition {p} at {}, the output at {file}", state.offsets.get(p).copied().unwrap_or(0))
        })
        .collect();
    if !behind.is_empty() {
        return Err(format!("it is behind the output ({})", behind.join("; ")));
    }
    let ahead = state.offsets.iter().any(|(p, &table)| resume.get(p).is_none_or(|&file| table > file));
    match ahead {
        false => Ok(Joining::Along),
        // The partial windows of that run's end are in the table; the file would have to
        // stop exactly where it did to write the same ones.
        true if state.ended_with_partial => {
            Err("it holds the partial windows of a run that ended after the output's checkpoint".to_string())
        }
        true => Ok(Joining::CatchUp(CatchUp::new(state.offsets.clone()))),
    }
}

/// A table ahead of the file: which of the windows the file writes again it holds already.
///
/// The table holds exactly the windows that were finished before its last commit, that is the
/// windows whose readings all lie below its durable offsets. A window finished now by a reading
/// below them is one of those, unless another of its readings (in another partition) lay at or
/// above them: such windows are noted as their readings are counted.
#[derive(Debug, Clone, PartialEq)]
pub struct CatchUp {
    offsets: BTreeMap<i32, i64>,
    /// Windows (sensor, window id) that counted a reading at or above the offsets.
    beyond: HashSet<(String, u64)>,
}

impl CatchUp {
    pub fn new(offsets: BTreeMap<i32, i64>) -> CatchUp {
        CatchUp { offsets, beyond: HashSet::new() }
    }

    fn below(&self, partition: i32, offset: i64) -> bool {
        self.offsets.get(&partition).is_some_and(|&table| offset < table)
    }

    /// A reading of `partition` at `offset` was counted in window `window_id` of `sensor`.
    pub fn counted(&mut self, sensor: &str, window_id: u64, partition: i32, offset: i64) {
        if !self.below(partition, offset) {
            self.beyond.insert((sensor.to_string(), window_id));
        }
    }

    /// True if the table holds `window` already, finished by the reading at `offset` of
    /// `partition`.
    pub fn holds(&mut self, window: &WindowSummary, partition: i32, offset: i64) -> bool {
        let beyond = self.beyond.remove(&(window.sensor_id.clone(), window.window_id));
        window.complete && !beyond && self.below(partition, offset)
    }

    /// The offsets to commit with the table's new rows: never behind what it holds.
    pub fn offsets(&self, next: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
        let mut merged = self.offsets.clone();
        for (&p, &n) in next {
            let at = merged.entry(p).or_insert(n);
            *at = (*at).max(n);
        }
        merged
    }

    /// True once the file has been read up to the table's offsets in every partition.
    pub fn done(&self, next: &BTreeMap<i32, i64>) -> bool {
        self.offsets.iter().all(|(p, &table)| next.get(p).is_some_and(|&n| n >= table))
    }
}

/// A window table as the consumer's writer drives it.
pub struct Table {
    sink: Box<dyn WindowTable>,
    kind: &'static str,
    catch_up: Option<CatchUp>,
    /// Windows taken since the last commit, for the summary.
    pub windows_sent: u64,
}

impl Table {
    pub fn new(sink: Box<dyn WindowTable>, kind: &'static str, catch_up: Option<CatchUp>) -> Table {
        if catch_up.is_some() {
            tracing::info!("{} is ahead of the output: the windows it holds are not sent again", sink.name());
        }
        Table { sink, kind, catch_up, windows_sent: 0 }
    }

    pub fn name(&self) -> &str {
        self.sink.name()
    }

    /// What kind of table it is (`postgres`, `topic`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// True while a rebuild waits to be made visible.
    pub fn rebuilding(&self) -> bool {
        self.sink.state().rebuilding
    }

    /// True while the table is ahead of the file.
    pub fn catching_up(&self) -> bool {
        self.catch_up.is_some()
    }

    /// A reading was counted in an open window (only looked at while catching up).
    pub fn counted(&mut self, sensor: &str, window_id: u64, partition: i32, offset: i64) {
        if let Some(c) = &mut self.catch_up {
            c.counted(sensor, window_id, partition, offset);
        }
    }

    /// The reading at `offset` of `partition` finished `window`.
    pub fn finished(&mut self, window: &WindowSummary, partition: i32, offset: i64) -> anyhow::Result<()> {
        if self.catch_up.as_mut().is_some_and(|c| c.holds(window, partition, offset)) {
            return Ok(());
        }
        self.windows_sent += 1;
        self.sink.add(window)
    }

    /// A partial window at the end of the run.
    pub fn partial(&mut self, window: &WindowSummary) -> anyhow::Result<()> {
        if self.catch_up.is_some() {
            anyhow::bail!(
                "{} is ahead of the output and has not been caught up with: partial windows cannot be written yet; \
                 run again without --emit-partial until the run reads to the end",
                self.sink.name()
            );
        }
        self.windows_sent += 1;
        self.sink.add(window)
    }

    /// Commits the windows taken since the last commit with the run's progress.
    pub fn commit(&mut self, commit: Commit<'_>) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        self.commit_caught_up(commit)?;
        crate::metrics::commit(self.kind, started.elapsed());
        Ok(())
    }

    fn commit_caught_up(&mut self, commit: Commit<'_>) -> anyhow::Result<()> {
        match &self.catch_up {
            None => self.sink.commit(&commit),
            Some(c) => {
                let offsets = c.offsets(commit.offsets);
                let done = c.done(commit.offsets);
                self.sink.commit(&Commit { offsets: &offsets, caught_up: commit.caught_up && done, ..commit })?;
                if done {
                    tracing::info!("{} has been caught up with", self.sink.name());
                    self.catch_up = None;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::week;

    fn offsets(o: &[(i32, i64)]) -> BTreeMap<i32, i64> {
        o.iter().copied().collect()
    }

    fn state(o: &[(i32, i64)]) -> TableState {
        TableState { offsets: offsets(o), ..TableState::default() }
    }

    /// A table where the file is goes along; one ahead catches up; one behind, or empty beside
    /// an output with progress, is refused; a rebuild or a new output starts the table anew.
    #[test]
    fn how_a_table_joins_a_run() {
        let file = offsets(&[(0, 10), (1, 20)]);
        assert_eq!(join(&state(&[(0, 10), (1, 20)]), &file, OutputStart::Resumes), Ok(Joining::Along));
        assert_eq!(
            join(&state(&[(0, 12), (1, 20)]), &file, OutputStart::Resumes),
            Ok(Joining::CatchUp(CatchUp::new(offsets(&[(0, 12), (1, 20)]))))
        );
        let behind = join(&state(&[(0, 12), (1, 19)]), &file, OutputStart::Resumes).unwrap_err();
        assert!(behind.contains("partition 1 at 19, the output at 20"), "{behind}");
        assert!(join(&state(&[(0, 10)]), &file, OutputStart::Resumes).unwrap_err().contains("partition 1 at 0"));
        assert!(join(&state(&[]), &file, OutputStart::Resumes).unwrap_err().contains("no windows"));
        assert_eq!(join(&state(&[]), &file, OutputStart::Anew), Ok(Joining::Rebuild));
        assert_eq!(join(&state(&[(0, 1)]), &file, OutputStart::Rebuilt), Ok(Joining::Rebuild));
        let ended = TableState { ended_with_partial: true, ..state(&[(0, 12), (1, 20)]) };
        assert!(join(&ended, &file, OutputStart::Resumes).unwrap_err().contains("partial"));
        let ended = TableState { ended_with_partial: true, ..state(&[(0, 10), (1, 20)]) };
        assert_eq!(join(&ended, &file, OutputStart::Resumes), Ok(Joining::Along));
    }

    /// A table ahead holds the windows finished below its offsets, not those finished above
    /// them, nor those with one reading above them, nor partial ones.
    #[test]
    fn catch_up_skips_exactly_what_the_table_holds() {
        let mut c = CatchUp::new(offsets(&[(0, 100), (1, 50)]));
        assert!(c.holds(&week("a", 1, 0, 0, 0), 0, 99));
        assert!(!c.holds(&week("a", 2, 0, 0, 0), 0, 100));
        c.counted("b", 3, 1, 50); // above the table's offset of partition 1
        c.counted("b", 3, 0, 10);
        assert!(!c.holds(&week("b", 3, 0, 0, 0), 0, 11));
        assert!(c.holds(&week("b", 4, 0, 0, 0), 0, 12));
        assert!(!c.holds(&WindowSummary { complete: false, ..week("c", 1, 0, 0, 0) }, 0, 1));
        assert!(!c.holds(&week("d", 1, 0, 0, 0), 2, 0), "a partition the table never read");
    }

    /// While catching up, commits never take the table's offsets back; it is done once every
    /// partition is read up to them.
    #[test]
    fn catch_up_commits_never_go_back() {
        let c = CatchUp::new(offsets(&[(0, 100), (1, 50)]));
        assert_eq!(c.offsets(&offsets(&[(0, 60), (1, 70), (2, 5)])), offsets(&[(0, 100), (1, 70), (2, 5)]));
        assert!(!c.done(&offsets(&[(0, 60), (1, 70)])));
        assert!(!c.done(&offsets(&[(1, 70)])));
        assert!(c.done(&offsets(&[(0, 100), (1, 50)])));
    }

    /// What a table receives through [`Table`], for the tests below.
    #[derive(Default)]
    struct Recorded {
        taken: Vec<(String, u64)>,
        commits: Vec<(BTreeMap<i32, i64>, bool, usize)>,
    }

    struct Recorder {
        state: TableState,
        shared: std::sync::Arc<std::sync::Mutex<Recorded>>,
    }

    impl WindowTable for Recorder {
        fn name(&self) -> &str {
            "the test table"
        }
        fn state(&self) -> &TableState {
            &self.state
        }
        fn rebuild(&mut self, _: &BTreeMap<i32, i64>, _: Option<&Windows>) -> anyhow::Result<()> {
            Ok(())
        }
        fn add(&mut self, w: &WindowSummary) -> anyhow::Result<()> {
            self.shared.lock().unwrap().taken.push((w.sensor_id.clone(), w.window_id));
            Ok(())
        }
        fn commit(&mut self, c: &Commit<'_>) -> anyhow::Result<()> {
            let mut r = self.shared.lock().unwrap();
            let n = r.taken.len();
            r.commits.push((c.offsets.clone(), c.caught_up, n));
            self.state.offsets = c.offsets.clone();
            Ok(())
        }
    }

    /// A table that catches up gets only the windows it lacks, commits at its own offsets
    /// until the file has reached them, and follows the run after that.
    #[test]
    fn a_table_catches_up_then_follows() {
        let recorded = std::sync::Arc::new(std::sync::Mutex::new(Recorded::default()));
        let recorder = Recorder { state: state(&[(0, 10)]), shared: recorded.clone() };
        let mut table = Table::new(Box::new(recorder), "test", Some(CatchUp::new(offsets(&[(0, 10)]))));
        table.finished(&week("a", 1, 0, 0, 0), 0, 6).unwrap();
        table.commit(Commit { offsets: &offsets(&[(0, 7)]), windows: None, caught_up: true, partial: false }).unwrap();
        assert!(table.catching_up());
        table.finished(&week("a", 2, 0, 0, 0), 0, 13).unwrap();
        table.commit(Commit { offsets: &offsets(&[(0, 14)]), windows: None, caught_up: true, partial: false }).unwrap();
        assert!(!table.catching_up());
        let r = recorded.lock().unwrap();
        assert_eq!(r.taken, [("a".to_string(), 2)]);
        assert_eq!(r.commits, [(offsets(&[(0, 10)]), false, 0), (offsets(&[(0, 14)]), true, 1)]);
    }
}
