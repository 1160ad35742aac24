//! What the weather sensor and the aggregating consumer must agree on.
//!
//! - [`reading`]: the `Reading` and its JSON form, the wire contract on the `weather` topic.
//! - [`kafka`]: Kafka client settings shared by both sides (brokers, `-X`, secrets).
//! - [`shutdown`]: Ctrl-C / SIGTERM, and a stop flag for the blocking Kafka loops.

pub mod kafka;
pub mod reading;
pub mod shutdown;

pub use reading::{BadReading, Reading};

/// Logs to stderr; `RUST_LOG` refines the level (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}
