//! What a user sets on the consumer. The raw command line ([`Cli`]) is turned into checked
//! [`Settings`] before any work starts, so a bad flag is reported by name, at once.

use std::sync::Arc;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use weather_common::dead_letter::DeadLetterArgs;
use weather_common::kafka::KafkaArgs;
use weather_common::meter::ProgressArgs;
use weather_common::metrics::MetricsArgs;

use crate::rules::{Format, Rules};
use crate::sink::file::{FileArgs, FileOutput, Upload};
use crate::sink::table::{Checks, TableConfig};
use crate::sink::TableArgs;
use crate::units::Unit;
use crate::window::WindowSize;
use weather_common::position::{RunArgs, Start, Until};

/// The walkthrough's two consumers, each in one flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Version 1: monthly averages in °C, written to weather_aggregation.txt.
    V1,
    /// Version 2: weekly averages in °F, written to weather_aggregation.csv and uploaded to S3
    /// (needs --s3-bucket), recomputed from the beginning of the topic.
    V2,
}

/// What a preset sets; a flag given explicitly wins.
struct Defaults {
    window: WindowSize,
    unit: Unit,
    format: Format,
    start: Start,
    upload: Upload,
}

impl Preset {
    fn defaults(self) -> Defaults {
        match self {
            Preset::V1 => Defaults {
                window: WindowSize::MONTH,
                unit: Unit::Celsius,
                format: Format::Txt,
                start: Start::Resume,
                upload: Upload::IfAsked,
            },
            Preset::V2 => Defaults {
                window: WindowSize::WEEK,
                unit: Unit::Fahrenheit,
                format: Format::Csv,
                start: Start::Earliest,
                upload: Upload::Preset,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WindowArg {
    /// 30 readings (simulated days) per window.
    Month,
    /// 7 readings per window.
    Week,
}

/// `--window`: a name clap knows, or what to give instead (any length: `--window-days`).
fn window_arg(name: &str) -> Result<WindowArg, String> {
    WindowArg::from_str(name, true).map_err(|_| {
        format!("`{name}` is not a window: month or week, or any length in readings with --window-days N (a fortnight: --window-days 14)")
    })
}

/// The aggregating consumer: reads weather readings from Kafka, writes monthly or weekly
/// averages (°C or °F, TXT or CSV, optionally uploaded to S3), and can recompute the whole
/// history from the beginning of the topic.
#[derive(Parser, Debug, Clone)]
#[command(name = "weather-consumer", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic to read.
    #[arg(short = 't', long, env = "WEATHER_TOPIC", default_value = "weather")]
    pub topic: String,

    /// The walkthrough's version 1 or 2 in one flag; other flags given explicitly win.
    #[arg(long, value_enum, env = "WEATHER_PRESET")]
    pub preset: Option<Preset>,

    /// Window length: month (30 readings) or week (7). Default: month.
    #[arg(long, env = "WEATHER_WINDOW", conflicts_with = "window_days", value_parser = window_arg)]
    pub window: Option<WindowArg>,

    /// Window length in readings (simulated days), instead of --window.
    #[arg(long, env = "WEATHER_WINDOW_DAYS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(WindowSize::MAX_DAYS)))]
    pub window_days: Option<u32>,

    /// Temperature unit of the averages. Default: celsius.
    #[arg(long, value_enum, env = "WEATHER_UNIT")]
    pub unit: Option<Unit>,

    /// Output format. Default: txt.
    #[arg(long, value_enum, env = "WEATHER_FORMAT")]
    pub format: Option<Format>,

    /// Start every row (CSV) or group (TXT) with the sensor id: needed when the topic carries
    /// more than one sensor.
    #[arg(long, env = "WEATHER_SENSOR_COLUMN")]
    pub sensor_column: bool,

    /// At the end of the run, also write the windows that are still incomplete. They count as
    /// written: readings that arrive for them later are rejected as late.
    #[arg(long, env = "WEATHER_EMIT_PARTIAL")]
    pub emit_partial: bool,

    #[command(flatten)]
    pub run: RunArgs,

    /// Print, per partition, the offsets the run would read and, per sensor, the windows it
    /// would keep, rewrite and add; then exit without consuming, writing or committing.
    #[arg(long, env = "WEATHER_DRY_RUN")]
    pub dry_run: bool,

    #[command(flatten)]
    pub progress: ProgressArgs,

    /// Consumer group for offset commits. Default: derived from what this consumer computes
    /// and writes, so a v1 and a v2 consumer never share progress. With --share, the group whose
    /// members share the topic's partitions.
    #[arg(short = 'g', long, env = "WEATHER_GROUP")]
    pub group: Option<String>,

    /// Share the topic's partitions with the other members of --group (processes like this
    /// one, here or on other machines), each writing the windows of its partitions: needs
    /// --group, --no-file and --to-postgres, whose database keeps each partition's state and
    /// owner (--to-topic goes beside it, written by each commit). Without it, one process reads
    /// every partition (with a file, always).
    #[arg(long, env = "WEATHER_SHARE", requires = "group")]
    pub share: bool,

    /// This member's name in a shared group. Default: the host's name and the process id.
    #[arg(long, env = "WEATHER_MEMBER", requires = "share")]
    pub member: Option<String>,

    /// How long a member of a shared group that stopped sending heartbeats (crashed, paused,
    /// cut off) keeps its partitions before the others take them over.
    #[arg(long, env = "WEATHER_LEASE", value_name = "SECONDS", default_value = "10", value_parser = weather_common::parse_seconds)]
    pub lease: Duration,

    #[command(flatten)]
    pub file: FileArgs,

    /// How often progress is made durable (output fsynced, checkpoint replaced, offsets
    /// committed) while readings keep arriving; when the topic goes quiet it happens at once.
    #[arg(long, env = "WEATHER_CHECKPOINT_INTERVAL", value_name = "SECONDS", default_value = "1", value_parser = weather_common::parse_seconds)]
    pub checkpoint_interval: Duration,

    #[command(flatten)]
    pub dead_letters: DeadLetterArgs,

    /// Resume even if retention deleted readings after the checkpoint (they are skipped).
    #[arg(long, env = "WEATHER_ALLOW_DATA_LOSS")]
    pub allow_data_loss: bool,

    #[command(flatten)]
    pub tables: TableArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Where a consumer stands: per partition the group's committed offset, the end and the
    /// lag; for its output the last window written per sensor and the last upload.
    Status(crate::status::StatusArgs),
}

/// Checked settings of one consumer run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaArgs,
    /// What the output computes and how it writes it; the topic is among them.
    pub rules: Rules,
    /// The output file and its S3 copy; none with `--no-file`.
    pub file: Option<FileOutput>,
    /// The window tables, in the order they commit.
    pub tables: Vec<Arc<dyn TableConfig>>,
    /// The output a run resumes from.
    pub reference: Reference,
    pub emit_partial: bool,
    pub start: Start,
    pub until: Until,
    pub dry_run: bool,
    pub progress: ProgressArgs,
    pub group: String,
    pub checkpoint_interval: Duration,
    pub dead_letter_topic: String,
    pub allow_data_loss: bool,
    pub metrics: MetricsArgs,
    /// Set when the partitions are shared with the other members of the group.
    pub share: Option<Share>,
}

/// A member of a shared group (`--share`).
#[derive(Debug, Clone)]
pub struct Share {
    /// The table that keeps each partition's state and owner beside its rows.
    pub store: Arc<dyn TableConfig>,
    pub member: String,
    pub lease: Duration,
}

/// The output whose state a run resumes, and that the others follow: the file when there is
/// one, else the last table to commit (after a crash the one furthest behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    File,
    /// The table of this index in [`Settings::tables`].
    Table(usize),
}

impl Cli {
    /// Checks the flags together and applies the preset.
    pub fn settings(mut self) -> Result<Settings, clap::Error> {
        // Without a preset: version 1's defaults.
        let preset = self.preset.unwrap_or(Preset::V1).defaults();
        let rules = self.rules(&preset);
        let dead_letter_topic = self.dead_letters.topic(&rules.topic).map_err(invalid)?;
        let flags = self.tables.flags();
        let checks = Checks { kafka: &self.kafka, topic: &rules.topic, dead_letter_topic: &dead_letter_topic };
        let tables = self.tables.clone().check(&checks).map_err(invalid)?;
        let share = self.share(&tables).map_err(invalid)?;
        if self.file.no_file {
            if tables.is_empty() {
                return Err(invalid(format!("--no-file needs a table to write to: give {}", flags.join(" or "))));
            }
            if self.dry_run {
                return Err(invalid(
                    "--dry-run does not go with --no-file yet: it plans from a file's checkpoint".into(),
                ));
            }
        }
        let file = self.file.check(&rules, preset.upload).map_err(invalid)?;
        let (reference, group) = match (&file, tables.last()) {
            (Some(file), _) => (Reference::File, rules.default_group(&file.path)),
            (None, Some(_)) => (Reference::Table(tables.len() - 1), tables[0].default_group(&rules)),
            (None, None) => unreachable!("--no-file without a table was refused above"),
        };
        Ok(Settings {
            start: self.run.start(preset.start),
            until: self.run.until(),
            kafka: self.kafka,
            rules,
            file,
            tables,
            reference,
            emit_partial: self.emit_partial,
            dry_run: self.dry_run,
            progress: self.progress,
            group: self.group.take().unwrap_or(group),
            checkpoint_interval: self.checkpoint_interval,
            dead_letter_topic,
            allow_data_loss: self.allow_data_loss,
            metrics: self.metrics,
            share,
        })
    }

    /// A shared group's member, checked: what it needs and what it does not do yet.
    fn share(&self, tables: &[Arc<dyn TableConfig>]) -> Result<Option<Share>, String> {
        if !self.share {
            return Ok(None);
        }
        let unshared: Vec<&str> = tables.iter().filter(|t| !t.shares() && !t.mirrors()).map(|t| t.kind()).collect();
        let store = tables.iter().find(|t| t.shares());
        let refused = [
            (!self.file.no_file, "a file (one writer): add --no-file".to_string()),
            (
                store.is_none(),
                "no --to-postgres: its database keeps the partitions' state (--to-topic goes beside it)".to_string(),
            ),
            (
                !unshared.is_empty(),
                format!("the {} table, yet: a shared group writes to PostgreSQL", unshared.join(", ")),
            ),
            (self.emit_partial, "--emit-partial (a member does not know when the group's run ends)".to_string()),
            (self.dry_run, "--dry-run".to_string()),
            (
                !matches!(self.run.start(Start::Resume), Start::Resume | Start::Earliest | Start::Time(_)),
                "a --start other than resume, earliest or time: (a partition starts from its state, or a rebuild \
                 from the beginning or a time)"
                    .to_string(),
            ),
        ];
        if let Some((_, what)) = refused.iter().find(|(refused, _)| *refused) {
            return Err(format!("--share does not go with {what}"));
        }
        let member = self.member.clone().unwrap_or_else(weather_common::share::default_member);
        weather_common::share::check_member(&member)?;
        weather_common::share::check_lease(self.lease)?;
        let store = store.expect("a table that keeps the state, checked above").clone();
        Ok(Some(Share { store, member, lease: self.lease }))
    }

    /// What the output computes and how it writes it: the flags given, else the preset's.
    fn rules(&self, preset: &Defaults) -> Rules {
        let window = match (self.window, self.window_days) {
            (_, Some(days)) => WindowSize::days(days).expect("clap checked the range"),
            (Some(WindowArg::Week), None) => WindowSize::WEEK,
            (Some(WindowArg::Month), None) => WindowSize::MONTH,
            (None, None) => preset.window,
        };
        Rules {
            topic: self.topic.clone(),
            window,
            unit: self.unit.unwrap_or(preset.unit),
            format: self.format.unwrap_or(preset.format),
            sensor_column: self.sensor_column,
        }
    }
}

fn invalid(message: String) -> clap::Error {
    Cli::command().error(ErrorKind::InvalidValue, message)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, clap::Error> {
        Cli::try_parse_from(std::iter::once("weather-consumer").chain(args.iter().copied()))?.settings()
    }

    /// Version 1 is the default and its preset: month, Celsius, TXT, resume.
    #[test]
    fn v1_preset() {
        for args in [&[][..], &["--preset", "v1"]] {
            let s = settings(args).unwrap();
            assert_eq!((s.rules.window, s.rules.unit, s.rules.format), (WindowSize::MONTH, Unit::Celsius, Format::Txt));
            let file = s.file.unwrap();
            assert_eq!(file.path, PathBuf::from("weather_aggregation.txt"));
            assert!(s.start == Start::Resume && s.until == Until::Follow && file.s3.is_none());
            assert_eq!(s.reference, Reference::File);
        }
    }

    /// Version 2 in one flag: week, Fahrenheit, CSV, replay from the beginning, S3 upload.
    #[test]
    fn v2_preset() {
        let s = settings(&["--preset", "v2", "--s3-bucket", "bucket", "--s3-endpoint", "http://127.0.0.1:1"]).unwrap();
        assert_eq!((s.rules.window, s.rules.unit, s.rules.format), (WindowSize::WEEK, Unit::Fahrenheit, Format::Csv));
        let file = s.file.unwrap();
        assert_eq!(file.path, PathBuf::from("weather_aggregation.csv"));
        assert_eq!(s.start, Start::Earliest);
        let s3 = file.s3.unwrap();
        assert_eq!((s3.bucket.name.as_str(), s3.key.as_str()), ("bucket", "weather_aggregation.csv"));
    }

    /// Explicit flags win over the preset.
    #[test]
    fn flags_win_over_preset() {
        let s =
            settings(&["--preset", "v2", "--s3-bucket", "bucket", "--unit", "celsius", "--window-days", "10"]).unwrap();
        assert_eq!((s.rules.window.get(), s.rules.unit), (10, Unit::Celsius));
        let s = settings(&["--preset", "v2", "--s3-bucket", "bucket", "--start", "offset:0=5", "--until-end"]).unwrap();
        assert_eq!((s.start, s.until), (Start::Offsets([(0, 5)].into()), Until::End));
    }

    /// v1 and v2 never share a consumer group, nor do two files of one name in two
    /// directories; one file has one group however its path is written.
    #[test]
    fn groups_follow_what_is_computed_and_where() {
        let v1 = settings(&["--preset", "v1"]).unwrap().group;
        let v2 = settings(&["--preset", "v2", "--s3-bucket", "bucket"]).unwrap().group;
        assert_ne!(v1, v2);
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(
            v1,
            format!("weather-consumer-month-celsius-txt:{}", here.join("weather_aggregation.txt").display())
        );
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let group_of = |path: std::path::PathBuf| settings(&["-o", path.to_str().unwrap()]).unwrap().group;
        assert_ne!(group_of(a.join("out.txt")), group_of(b.join("out.txt")));
        assert_eq!(group_of(a.join("out.txt")), group_of(b.join("../a/out.txt")));
        assert_eq!(settings(&["-g", "mine"]).unwrap().group, "mine");
    }

    /// Without a file, the last table to commit is the reference output and the first names
    /// the default group; with a file, the file is the reference.
    #[test]
    fn tables_and_the_reference_output() {
        let pg = ["--to-postgres", "postgres://w@127.0.0.1:5432/w"];
        let s = settings(&[&pg[..], &["--to-topic", "aggregates", "--no-file"]].concat()).unwrap();
        assert_eq!((s.tables.len(), s.reference, s.file.is_none()), (2, Reference::Table(1), true));
        assert_eq!(s.group, "weather-consumer-month-celsius-postgres:127.0.0.1:5432/w/weather_aggregates");
        let s = settings(&["--to-topic", "aggregates", "--no-file"]).unwrap();
        assert_eq!(
            (s.reference, s.group.as_str()),
            (Reference::Table(0), "weather-consumer-month-celsius-topic:aggregates")
        );
        let s = settings(&pg).unwrap();
        assert_eq!((s.tables.len(), s.reference), (1, Reference::File));
        assert!(s.group.ends_with("weather_aggregation.txt"), "{}", s.group);
    }

    /// A bad flag says which flag and why.
    #[test]
    fn bad_flags_are_named() {
        for (args, needle) in [
            (&["--window", "year"][..], "--window"),
            (&["--window", "fortnight"], "--window-days 14"),
            (&["--window", "week", "--window-days", "3"], "--window-days"),
            (&["--window-days", "0"], "--window-days"),
            (&["--unit", "kelvin"], "--unit"),
            (&["--preset", "v2"], "--s3-bucket"),
            (&["--s3-key", "k"], "--s3-bucket"),
            (&["--s3-bucket", "bucket", "--s3-endpoint", "localhost:9000"], "--s3-endpoint"),
            (&["--output", "/no/such/dir/out.txt"], "--output"),
            (&["--upload-interval", "soon"], "--upload-interval"),
            (&["--dead-letter-topic", "weather"], "--dead-letter-topic"),
            (&["--s3-bucket", "ab"], "--s3-bucket: `ab` is not a valid S3 bucket name: it must be 3 to 63"),
            (&["--s3-bucket", "Weather"], "lowercase letters"),
            (&["--start", "yesterday"], "--start"),
            (&["--start", "time:2026-13-01T00:00:00Z"], "--start"),
            (&["--start", "earliest", "--from-beginning"], "--from-beginning"),
            (&["--until", "time:noon"], "--until"),
            (&["--until", "end", "--until-end"], "--until-end"),
            (&["--no-file"], "--to-postgres or --to-topic"),
            (&["--to-topic", "weather"], "--to-topic: `weather` is the topic read"),
            (&["--to-topic", "weather.dlq"], "--to-topic: `weather.dlq`"),
            (&["--to-topic", "a b"], "--to-topic: `a b` is not a Kafka topic name"),
            (&["--to-topic", "aggregates", "--no-file", "--s3-bucket", "bucket"], "--s3-bucket"),
            (&["--to-postgres", "postgres://w:secret@127.0.0.1/w"], "--to-postgres: the URL carries a password"),
            (&["--to-postgres", "postgres://w@127.0.0.1/w", "--postgres-table", "Aggregates"], "--postgres-table"),
            (&["--to-postgres", "postgres://w@127.0.0.1/w", "--no-file", "-o", "x.csv"], "--output"),
        ] {
            let err = settings(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    /// `--share` makes a member of a shared group, with PostgreSQL for the partitions' state;
    /// what a member does not do is refused by name, and a file keeps one writer.
    #[test]
    fn share_needs_a_group_no_file_and_postgres() {
        let pg = ["--to-postgres", "postgres://w@127.0.0.1/w"];
        let s =
            settings(&[&pg[..], &["--share", "-g", "fleet", "--no-file", "--member", "a", "--lease", "3"]].concat())
                .unwrap();
        let share = s.share.unwrap();
        assert_eq!((share.member.as_str(), share.lease, s.group.as_str()), ("a", Duration::from_secs(3), "fleet"));
        assert!(settings(&[&pg[..], &["-g", "fleet", "--no-file"]].concat()).unwrap().share.is_none());
        let both = [&pg[..], &["--share", "-g", "fleet", "--no-file", "--to-topic", "aggregates"]].concat();
        let s = settings(&both).unwrap();
        assert_eq!((s.share.unwrap().store.kind(), s.tables.len()), ("postgres", 2), "the topic beside PostgreSQL");
        for start in ["earliest", "time:2026-11-22T06:00:00Z"] {
            let s = settings(&[&pg[..], &["--share", "-g", "fleet", "--no-file", "--start", start]].concat()).unwrap();
            assert!(s.share.is_some(), "--start {start}");
        }
        for (args, needle) in [
            (&["--share", "--no-file"][..], "--group"),
            (&["--share", "-g", "fleet"], "a file (one writer): add --no-file"),
            (&["--share", "-g", "fleet", "--no-file", "--to-topic", "aggregates"], "no --to-postgres"),
            (
                &["--share", "-g", "fleet", "--no-file", "--to-postgres", "postgres://w@h/w", "--start", "latest"],
                "--start",
            ),
            (
                &["--share", "-g", "fleet", "--no-file", "--to-postgres", "postgres://w@h/w", "--emit-partial"],
                "--emit-partial",
            ),
            (&["-g", "fleet", "--member", "a"], "--share"),
        ] {
            let err = settings(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
