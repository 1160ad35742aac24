//! `weather-consumer status`: where a consumer stands, as `kafka-consumer-groups --describe`
//! shows it: per partition the group's committed offset, the end and the lag, and, given the
//! output, the last window written per sensor and the last successful upload. For a shared
//! group (`--share`, given `--to-postgres`): its members, and per partition the owner, the
//! epoch and the state's offset, which is where the next owner resumes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rdkafka::consumer::BaseConsumer;
use serde::Serialize;
use weather_common::kafka::{self, KafkaArgs, LoggingContext};

use crate::checkpoint::Checkpoint;
use crate::sink::postgres::partitions::PartitionStore;
use crate::sink::postgres::PostgresArgs;
use crate::sink::s3::UploadRecord;
use weather_common::source;

/// The flags of `weather-consumer status`.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic the consumer reads.
    #[arg(short = 't', long, env = "WEATHER_TOPIC", default_value = "weather")]
    pub topic: String,

    /// The consumer's output file; its checkpoint beside it says how it was computed, which
    /// windows it holds and which group it commits to.
    #[arg(short = 'o', long, env = "WEATHER_OUTPUT", required_unless_present = "group")]
    pub output: Option<PathBuf>,

    /// Consumer group. Default: the one the consumer derives for the output.
    #[arg(short = 'g', long, env = "WEATHER_GROUP")]
    pub group: Option<String>,

    /// Print JSON, for scripts.
    #[arg(long)]
    pub json: bool,

    /// The database of a shared group (`--share`): its members and its partitions' owners.
    #[command(flatten)]
    pub postgres: PostgresArgs,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub topic: String,
    pub group: String,
    pub partitions: Vec<PartitionStatus>,
    pub total_lag: i64,
    /// The output's side; `None` when only the group was given.
    pub output: Option<OutputStatus>,
    /// The members of a shared group; `None` unless `--to-postgres` was given.
    pub members: Option<Vec<MemberStatus>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub member: String,
    /// Seconds since its last heartbeat.
    pub heartbeat_age: f64,
    /// The partitions it said it owns at that heartbeat.
    pub partitions: Vec<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub partition: i32,
    /// The group's committed offset; `None` if it never committed.
    pub committed: Option<i64>,
    pub end: i64,
    /// Readings not yet consumed by the group.
    pub lag: i64,
    /// In a shared group: the member that owns the partition, none while it is handed over.
    pub owner: Option<String>,
    /// In a shared group: the partition's epoch, bumped by every claim.
    pub epoch: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputStatus {
    pub path: PathBuf,
    /// How the output is computed, from its checkpoint.
    pub rules: Option<String>,
    /// Durable bytes of the output, from its checkpoint.
    pub bytes: Option<u64>,
    /// The newest window written, per sensor.
    pub last_windows: BTreeMap<String, u64>,
    pub last_upload: Option<UploadRecord>,
}

/// Looks the status up: the checkpoint beside the output (if given), the group's commits, the
/// topic's ends.
pub fn status(args: &StatusArgs) -> anyhow::Result<Status> {
    let checkpoint = match &args.output {
        Some(output) => Checkpoint::read(output)?,
        None => None,
    };
    let group = match (&args.group, &checkpoint, &args.output) {
        (Some(group), _, _) => group.clone(),
        (None, Some(checkpoint), Some(output)) => checkpoint.rules.default_group(output),
        (None, _, Some(output)) => anyhow::bail!("{}", no_checkpoint(output)),
        (None, _, None) => anyhow::bail!("give an output (-o) or a consumer group (--group)"),
    };
    let probe = kafka::metadata_client(&args.kafka).context("creating the Kafka client")?;
    let partitions = kafka::partitions(&probe, &args.kafka, &args.topic)?;
    let marks = kafka::watermarks(&probe, &args.topic, &partitions).context("reading the topic's offsets")?;
    let member: BaseConsumer<LoggingContext> =
        args.kafka.consumer_config(&group, &[]).create_with_context(LoggingContext)?;
    let mut committed = source::committed(&member, &args.topic, &partitions).context("reading the group's offsets")?;
    let shared = match args.postgres.target().map_err(anyhow::Error::msg)? {
        Some(target) => {
            let runtime = tokio::runtime::Handle::current();
            Some(PartitionStore::inspect(&target, &group, &args.topic, runtime)?.view()?)
        }
        None => None,
    };
    // A shared group's members resume from the state, not from the offsets committed to Kafka.
    for (p, (_, _, next)) in shared.iter().flat_map(|s| &s.partitions) {
        committed.insert(*p, *next);
    }
    let partitions: Vec<PartitionStatus> = partitions
        .iter()
        .map(|&p| {
            let (low, end) = marks[&p];
            let committed = committed.get(&p).copied().flatten();
            let held = shared.as_ref().and_then(|s| s.partitions.get(&p));
            PartitionStatus {
                partition: p,
                committed,
                end,
                lag: (end - committed.unwrap_or(low)).max(0),
                owner: held.and_then(|h| h.0.clone()),
                epoch: held.map(|h| h.1),
            }
        })
        .collect();
    Ok(Status {
        topic: args.topic.clone(),
        group,
        total_lag: partitions.iter().map(|p| p.lag).sum(),
        partitions,
        output: args.output.as_ref().map(|output| OutputStatus {
            path: output.clone(),
            rules: checkpoint.as_ref().map(|c| c.rules.to_string()),
            bytes: checkpoint.as_ref().map(|c| c.output_len),
            last_windows: checkpoint.as_ref().map(|c| c.windows.last_written()).unwrap_or_default(),
            last_upload: UploadRecord::read(output),
        }),
        members: shared.map(|s| {
            s.members
                .into_iter()
                .map(|(member, heartbeat_age, partitions)| MemberStatus { member, heartbeat_age, partitions })
                .collect()
        }),
    })
}

/// Why `output`, which has no checkpoint, has no status: most likely no consumer has written
/// it yet; a file without a checkpoint was written by something else.
fn no_checkpoint(output: &Path) -> String {
    let checkpoint = Checkpoint::path_for(output);
    if output.exists() {
        format!(
            "{} has no checkpoint beside it ({}), so it was not written by weather-consumer, or under another name, \
             and its consumer group is unknown: give --group",
            output.display(),
            checkpoint.display()
        )
    } else {
        format!(
            "{} is not written yet: no consumer has written it (there is no {}). A consumer run with -o {} \
             writes it and its checkpoint; its status then shows here. For a consumer group's offsets alone, give \
             --group",
            output.display(),
            checkpoint.display(),
            output.display()
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "group `{}` on topic `{}`", self.group, self.topic)?;
        let shared = self.members.is_some();
        match shared {
            true => {
                writeln!(f, "{:>9} {:>12} {:>12} {:>10} {:>6}  OWNER", "PARTITION", "STATE", "END", "LAG", "EPOCH")?
            }
            false => writeln!(f, "{:>9} {:>12} {:>12} {:>10}", "PARTITION", "COMMITTED", "END", "LAG")?,
        }
        for p in &self.partitions {
            let committed = p.committed.map_or("-".to_string(), |c| c.to_string());
            write!(f, "{:>9} {:>12} {:>12} {:>10}", p.partition, committed, p.end, p.lag)?;
            if shared {
                let epoch = p.epoch.map_or("-".to_string(), |e| e.to_string());
                write!(f, " {epoch:>6}  {}", p.owner.as_deref().unwrap_or("-"))?;
            }
            writeln!(f)?;
        }
        writeln!(f, "{:>9} {:>12} {:>12} {:>10}", "total", "", "", self.total_lag)?;
        for m in self.members.iter().flatten() {
            let partitions: Vec<String> = m.partitions.iter().map(i32::to_string).collect();
            writeln!(
                f,
                "member {}: partitions [{}], last heartbeat {:.1} s ago",
                m.member,
                partitions.join(", "),
                m.heartbeat_age
            )?;
        }
        let Some(o) = &self.output else {
            return writeln!(f, "output: not given (-o OUTPUT shows its windows and uploads)");
        };
        match (&o.rules, o.bytes) {
            (Some(rules), Some(bytes)) => writeln!(f, "output {}: {bytes} bytes ({rules})", o.path.display())?,
            _ => writeln!(f, "output {}: no checkpoint yet", o.path.display())?,
        }
        let windows: Vec<String> = o.last_windows.iter().map(|(s, w)| format!("{s} {w}")).collect();
        writeln!(
            f,
            "last window written: {}",
            if windows.is_empty() { "none".to_string() } else { windows.join(", ") }
        )?;
        match &o.last_upload {
            Some(u) => writeln!(f, "last upload: {} ({} bytes) at {}", u.object, u.bytes, u.uploaded_at),
            None => writeln!(f, "last upload: none"),
        }
    }
}
