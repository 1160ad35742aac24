//! What a user sets on the archive: the raw command line ([`Cli`]) is checked into
//! [`Settings`] before any work starts, so that a bad flag is reported by name, at once.

use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use weather_common::dead_letter::DeadLetterArgs;
use weather_common::kafka::KafkaArgs;
use weather_common::meter::ProgressArgs;
use weather_common::metrics::MetricsArgs;
use weather_common::position::{RunArgs, Start, Until};
use weather_common::s3::{Bucket, S3Args};

use crate::layout::PartitionBy;

/// The lake archive: every valid reading of the topic in Parquet files, in Hive-style
/// partitions by event time (`topic=T/date=D/hour=H/`), on a local disk or in S3, exactly once.
/// Several instances with the same --group share the topic's partitions. With --table delta,
/// the lake is also a Delta Lake table, which `compact` and `vacuum` keep tidy.
#[derive(Parser, Debug, Clone)]
#[command(name = "weather-archive", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub maintenance: Option<Maintenance>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic to archive.
    #[arg(short = 't', long, env = "WEATHER_TOPIC", default_value = "weather")]
    pub topic: String,

    #[command(flatten)]
    pub lake: LakeArgs,

    /// Also make the lake a table: `delta` commits every file the archive publishes to a Delta
    /// Lake table at the lake's root (`_delta_log/`), exactly once per Kafka partition, so that
    /// Delta readers (DuckDB's delta_scan, Spark, deltalake) see each reading once, and
    /// `weather-archive compact` can merge small files under them. Without it: the Hive files only.
    #[arg(long, value_enum, env = "WEATHER_TABLE")]
    pub table: Option<TableFormat>,

    /// With --table: a checkpoint of the table's log every this many commits, so that a reader
    /// does not replay thousands of log entries (0: none).
    #[arg(long, env = "WEATHER_CHECKPOINT_EVERY", default_value_t = 100)]
    pub checkpoint_every: u64,

    /// The time window of a directory, and so the most a file spans: hour or day.
    #[arg(long, value_enum, env = "WEATHER_PARTITION_BY", default_value = "hour")]
    pub partition_by: PartitionBy,

    /// Rows per file at most (one row group each).
    #[arg(long, env = "WEATHER_MAX_ROWS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rows: u32,

    /// Following the topic, a file open this long (wall time) is closed and published, so that
    /// a quiet partition's readings do not wait for the next one.
    #[arg(long, env = "WEATHER_FLUSH_INTERVAL", value_name = "SECONDS", default_value = "60", value_parser = weather_common::parse_seconds)]
    pub flush_interval: Duration,

    #[command(flatten)]
    pub run: RunArgs,

    /// Scale out: share the topic's partitions with the other instances of this group
    /// archiving the same lake (here or on other machines), each writing the partitions it owns.
    /// Ownership is a lease kept in the lake, not Kafka's group protocol (see the README's
    /// "Scaling out"); progress is committed as this consumer group for lag tools. Without it,
    /// this instance archives every partition, and commits as group `weather-archive:<lake>`.
    #[arg(short = 'g', long, env = "WEATHER_GROUP")]
    pub group: Option<String>,

    /// This member's name in the group. Default: the host's name and the process id.
    #[arg(long, env = "WEATHER_MEMBER", requires = "group")]
    pub member: Option<String>,

    /// How long a member of the group that stopped sending heartbeats (crashed, paused, cut
    /// off) keeps its partitions before the others take them over.
    #[arg(long, env = "WEATHER_LEASE", value_name = "SECONDS", default_value = "10", value_parser = weather_common::parse_seconds)]
    pub lease: Duration,

    #[command(flatten)]
    pub dead_letters: DeadLetterArgs,

    /// Start even if retention deleted readings the lake has not archived (they are skipped).
    #[arg(long, env = "WEATHER_ALLOW_DATA_LOSS")]
    pub allow_data_loss: bool,

    #[command(flatten)]
    pub progress: ProgressArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// The table format of `--table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    /// A Delta Lake table (protocol: reader 1, writer 2).
    Delta,
}

/// Where the lake is: the flags every command of the archive shares.
#[derive(Args, Debug, Clone)]
pub struct LakeArgs {
    /// The lake's directory (instead of --s3-bucket). Default: lake
    #[arg(short = 'o', long, env = "WEATHER_ARCHIVE_OUTPUT")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub s3: S3Args,

    /// With --s3-bucket: the lake's prefix in the bucket (e.g. `lake`). Default: the bucket's root.
    #[arg(long, env = "WEATHER_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,
}

impl LakeArgs {
    fn destination(self, invalid: impl Fn(String) -> clap::Error) -> Result<Destination, clap::Error> {
        let bucket = self.s3.bucket(&[("--s3-prefix", !self.s3_prefix.is_empty())]).map_err(&invalid)?;
        Ok(match bucket {
            Some(_) if self.output.is_some() => {
                return Err(invalid(
                    "--output and --s3-bucket: the lake is either a directory or a bucket; give one".into(),
                ))
            }
            Some(bucket) => Destination::S3 { bucket, prefix: self.s3_prefix.trim_matches('/').to_string() },
            None => {
                let output = self.output.unwrap_or_else(|| PathBuf::from("lake"));
                if output.exists() && !output.is_dir() {
                    return Err(invalid(format!("--output `{}` is a file, not a directory", output.display())));
                }
                Destination::Disk(std::path::absolute(&output).unwrap_or(output))
            }
        })
    }
}

/// The table's upkeep, apart from archiving.
#[derive(Subcommand, Debug, Clone)]
pub enum Maintenance {
    /// Merge the small files of each closed hour (or day) of the lake's table into one per
    /// Kafka partition, each merge swapped in by one commit (remove + add): a reader sees the
    /// small files or the merged one, never both. Safe beside a running archive.
    Compact(CompactArgs),
    /// Delete the data files the lake's table no longer references (merged away, or written
    /// by a run that died before its commit), once older than the retention.
    Vacuum(VacuumArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CompactArgs {
    #[command(flatten)]
    pub lake: LakeArgs,

    /// Merge only hours (or days) that ended at least this long ago, when late readings are
    /// unlikely (a late reading after the merge gets a small file of its own, merged next time).
    #[arg(long, value_name = "SECONDS", default_value = "3600", value_parser = weather_common::parse_seconds)]
    pub closed_for: Duration,

    /// Merge every hour (or day), the current one too: a reading of it archived later gets a
    /// small file of its own, merged the next time.
    #[arg(long, conflicts_with = "closed_for")]
    pub all_hours: bool,

    /// A checkpoint of the table's log every this many commits (0: none).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
}

#[derive(Args, Debug, Clone)]
pub struct VacuumArgs {
    #[command(flatten)]
    pub lake: LakeArgs,

    /// Delete a file only this long after the table stopped referencing it (or, for a file it
    /// never referenced, after it was written), so that readers of an older snapshot and
    /// writers about to commit still find it. Default: a week, as Delta's.
    #[arg(long, value_name = "SECONDS", default_value = "604800", value_parser = weather_common::parse_seconds)]
    pub retention: Duration,
}

/// The checked settings of `compact` or `vacuum`.
#[derive(Debug, Clone)]
pub struct MaintenanceSettings {
    pub destination: Destination,
    pub task: Task,
}

#[derive(Debug, Clone)]
pub enum Task {
    /// `closed_for`: merge the hours (or days) that ended this long ago; `None`: every one.
    Compact {
        closed_for: Option<Duration>,
        checkpoint_every: u64,
    },
    Vacuum {
        retention: Duration,
    },
}

/// What a command line asks for.
#[derive(Debug, Clone)]
pub enum Job {
    Archive(Box<Settings>),
    Maintain(MaintenanceSettings),
}

/// Where the lake is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Disk(PathBuf),
    S3 { bucket: Bucket, prefix: String },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Disk(dir) => write!(f, "{}", dir.display()),
            Destination::S3 { bucket, prefix } => write!(f, "{}", bucket.url(prefix)),
        }
    }
}

/// The checked settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaArgs,
    pub topic: String,
    pub destination: Destination,
    pub partition_by: PartitionBy,
    pub max_rows: usize,
    pub flush_interval: Duration,
    pub start: Start,
    pub until: Until,
    pub group: String,
    /// With `--group`: this instance as a member, sharing the partitions with the others.
    pub member: Option<Member>,
    pub dead_letter_topic: String,
    pub allow_data_loss: bool,
    pub progress: ProgressArgs,
    pub metrics: MetricsArgs,
    /// `--table delta`: commit every file to the table, with a checkpoint every so many commits.
    pub table: Option<TableSettings>,
}

/// A member of the group (`--group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub lease: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSettings {
    pub checkpoint_every: u64,
}

impl Cli {
    /// The job the command line asks for: archiving, or the table's upkeep.
    pub fn job(self) -> Result<Job, clap::Error> {
        let invalid = |message: String| Cli::command().error(ErrorKind::InvalidValue, message);
        Ok(match self.maintenance {
            Some(Maintenance::Compact(args)) => Job::Maintain(MaintenanceSettings {
                destination: args.lake.destination(invalid)?,
                task: Task::Compact {
                    closed_for: (!args.all_hours).then_some(args.closed_for),
                    checkpoint_every: args.checkpoint_every,
                },
            }),
            Some(Maintenance::Vacuum(args)) => Job::Maintain(MaintenanceSettings {
                destination: args.lake.destination(invalid)?,
                task: Task::Vacuum { retention: args.retention },
            }),
            None => Job::Archive(Box::new(self.settings()?)),
        })
    }

    pub fn settings(self) -> Result<Settings, clap::Error> {
        let invalid = |message: String| Cli::command().error(ErrorKind::InvalidValue, message);
        let destination = self.lake.destination(invalid)?;
        let dead_letter_topic = self.dead_letters.topic(&self.topic).map_err(invalid)?;
        let member = match &self.group {
            None => None,
            Some(_) => {
                let name = self.member.unwrap_or_else(weather_common::share::default_member);
                weather_common::share::check_member(&name).map_err(invalid)?;
                weather_common::share::check_lease(self.lease).map_err(invalid)?;
                Some(Member { name, lease: self.lease })
            }
        };
        Ok(Settings {
            member,
            group: self.group.unwrap_or_else(|| format!("weather-archive:{destination}")),
            kafka: self.kafka,
            topic: self.topic,
            destination,
            partition_by: self.partition_by,
            max_rows: self.max_rows as usize,
            flush_interval: self.flush_interval,
            start: self.run.start(Start::Resume),
            until: self.run.until(),
            dead_letter_topic,
            allow_data_loss: self.allow_data_loss,
            progress: self.progress,
            metrics: self.metrics,
            table: self.table.map(|TableFormat::Delta| TableSettings { checkpoint_every: self.checkpoint_every }),
        })
    }
}
