//! What the weather sensor and the jobs that read its topic must agree on, and what every job
//! that reads the topic does the same way.
//!
//! - [`reading`]: the `Reading` and its JSON form, the wire contract on the `weather` topic.
//! - [`sensor_ids`]: sensor ids kept once, each known by its place.
//! - [`kafka`]: Kafka client settings shared by all (brokers, `-X`, secrets), and the broker
//!   look-ups and work-arounds behind them.
//! - [`position`]: `--start` and `--until`, as the user says them.
//! - [`source`]: reading the topic: where each partition starts, bounded runs, commits.
//! - [`fetch`]: taking librdkafka's fetched messages a batch at a time.
//! - [`dead_letter`]: readings that cannot be used, kept aside with their reason.
//! - [`s3`]: the bucket, its flags, a client from the AWS credential chain, S3's refusals.
//! - [`share`]: pure; the partitions dealt among the live members of a group that shares them.
//! - [`heartbeat`]: a member's heartbeat, kept up by a thread of its own.
//! - [`shutdown`]: Ctrl-C / SIGTERM, and a stop flag for the blocking Kafka loops.
//! - [`job`]: a job's run as one boxed future, compiled once in the job's crate.
//! - [`meter`]: progress of a long run: a bar on a terminal, log lines otherwise.
//! - [`metrics`]: Prometheus metrics and health on `--metrics-addr`, and the lag of a job.
//! - [`lock`]: one writer per output, by an advisory lock the kernel releases.
//! - [`units`]: °C/°F and exact rounding, as every output writes numbers.
//! - [`aggregate`]: a window's averages as one record of the compacted aggregates topic.
//! - [`allocator`]: mimalloc for the whole process, librdkafka included.

pub mod aggregate;
pub mod allocator;
pub mod dead_letter;
pub mod fetch;
pub mod heartbeat;
pub mod job;
pub mod kafka;
pub mod lock;
pub mod meter;
pub mod metrics;
pub mod position;
pub mod reading;
pub mod s3;
pub mod sensor_ids;
pub mod share;
pub mod shutdown;
pub mod source;
pub mod units;

use std::path::{Path, PathBuf};

/// The file beside `output` that keeps some of its state: `<output><suffix>`, e.g.
/// `weather_aggregation.txt.checkpoint`.
pub fn beside(output: &Path, suffix: &str) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    output.with_file_name(name)
}

pub use reading::{BadReading, Reading};

/// An error with its causes, for messages: the AWS SDK's and tokio-postgres's own text is only
/// the outermost.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Logs to stderr, above the progress bar if one is drawn; `RUST_LOG` refines the level
/// (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| meter::Stderr).with_ansi(ansi).try_init();
}

/// A command-line number of seconds, 0 or more, possibly fractional.
pub fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(std::time::Duration::from_secs_f64(seconds)),
        _ => Err(format!("`{s}` is not a number of seconds (0 or more, e.g. 5 or 0.5)")),
    }
}
