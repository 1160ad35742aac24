//! What a user sets on the archive: the raw command line ([`Cli`]) is checked into
//! [`Settings`] before any work starts, so that a bad flag is reported by name, at once.

use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use weather_common::dead_letter::DeadLetterArgs;
use weather_common::kafka::KafkaArgs;
use weather_common::meter::ProgressArgs;
use weather_common::metrics::MetricsArgs;
use weather_common::position::{RunArgs, Start, Until};
use weather_common::s3::{Bucket, S3Args};

use crate::layout::PartitionBy;

/// The lake archive: every valid reading of the topic in Parquet files, in Hive-style
/// partitions by event time (`topic=T/date=D/hour=H/`), on a local disk or in S3, exactly once.
/// Several instances with the same --group share the topic's partitions.
#[derive(Parser, Debug, Clone)]
#[command(name = "weather-archive", version)]
pub struct Cli {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic to archive.
    #[arg(short = 't', long, env = "WEATHER_TOPIC", default_value = "weather")]
    pub topic: String,

    /// The lake's directory (instead of --s3-bucket). Default: lake
    #[arg(short = 'o', long, env = "WEATHER_ARCHIVE_OUTPUT")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub s3: S3Args,

    /// With --s3-bucket: the lake's prefix in the bucket (e.g. `lake`). Default: the bucket's root.
    #[arg(long, env = "WEATHER_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

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

    /// Scale out: join this consumer group and share the topic's partitions with the other
    /// instances in it (start as many as there are partitions). Without it, this instance
    /// archives every partition, and commits its progress as group
    /// `weather-archive:<lake>` for lag tools.
    #[arg(short = 'g', long, env = "WEATHER_GROUP")]
    pub group: Option<String>,

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
    /// Whether `group` was asked for: partitions are then shared through the group's protocol.
    pub scale_out: bool,
    pub dead_letter_topic: String,
    pub allow_data_loss: bool,
    pub progress: ProgressArgs,
    pub metrics: MetricsArgs,
}

impl Cli {
    pub fn settings(self) -> Result<Settings, clap::Error> {
        let invalid = |message: String| Cli::command().error(ErrorKind::InvalidValue, message);
        let bucket = self.s3.bucket(&[("--s3-prefix", !self.s3_prefix.is_empty())]).map_err(invalid)?;
        let destination = match bucket {
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
        };
        let dead_letter_topic = self.dead_letters.topic(&self.topic).map_err(invalid)?;
        Ok(Settings {
            scale_out: self.group.is_some(),
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
        })
    }
}
