//! What a user sets on the report: the topic to read, the files to write or the address to
//! serve the live page on, and the usual Kafka and progress flags shared with the other binaries.

use std::path::PathBuf;

use clap::Parser;
use weather_common::aggregate::MAX_WINDOW_DAYS;
use weather_common::kafka::KafkaArgs;
use weather_common::meter::ProgressArgs;

/// The report: reads a compacted aggregates topic (written by `weather-consumer --to-topic`)
/// from its beginning to its end as a table, the latest value per window, and prints per
/// window length and sensor the windows present, the missing ones, and min / mean / max of
/// every average; optionally writes the table as CSV and charts as one HTML page.
#[derive(Parser, Debug, Clone)]
#[command(name = "weather-report", version)]
pub struct Cli {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// The aggregates topic to read (the consumer's --to-topic).
    #[arg(short = 't', long, env = "WEATHER_AGGREGATES_TOPIC", value_name = "NAME")]
    pub topic: String,

    /// Write the table to this CSV file, sorted by sensor and window: the columns of the
    /// consumer's CSV with --sensor-column (sensor_id, week_id / month_id / window_id,
    /// avg_temp, avg_co, avg_humidity). It holds one window length: see --window-days.
    #[arg(long, env = "WEATHER_REPORT_CSV", value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Write one self-contained HTML page with charts to this file: per sensor, avg_temp
    /// over the window ids, and small charts of avg_co and avg_humidity.
    #[arg(long, env = "WEATHER_REPORT_HTML", value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Report only the windows of this length, in readings (simulated days): 7 for weekly, 30
    /// for monthly averages. Needed for --csv when the topic holds several window lengths.
    #[arg(long, env = "WEATHER_REPORT_WINDOW_DAYS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WINDOW_DAYS)))]
    pub window_days: Option<u32>,

    /// Follow the topic and serve the report on HOST:PORT (e.g. 127.0.0.1:8080) as a live
    /// page, until Ctrl-C or SIGTERM: its tables and charts update as windows arrive, with
    /// nothing loaded from elsewhere. Prints the summary of the table as last seen when it stops.
    #[arg(long, env = "WEATHER_REPORT_SERVE", value_name = "HOST:PORT", conflicts_with_all = ["csv", "html"])]
    pub serve: Option<String>,

    #[command(flatten)]
    pub progress: ProgressArgs,
}
