//! What a user sets on the report: the topic to read, the files to write or the address to
//! serve the live page on, and the usual Kafka and progress flags shared with the other binaries.
//! The raw command line ([`Cli`]) is checked into [`Settings`] before any work starts, so that a
//! bad flag is reported by name, at once.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
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

/// The checked settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaArgs,
    pub topic: String,
    /// Only the windows of this length; `None`: every length.
    pub window_days: Option<u32>,
    pub output: Output,
    pub progress: ProgressArgs,
}

/// What a run makes of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The topic read to its end once, printed, and written to these files if any.
    Files { csv: Option<PathBuf>, html: Option<PathBuf> },
    /// The topic followed and served as a live page on this HOST:PORT.
    Serve(String),
}

impl Cli {
    /// The checked settings of the command line; a bad flag is named, with why.
    pub fn settings(self) -> Result<Settings, clap::Error> {
        let invalid = |message: String| Cli::command().error(ErrorKind::InvalidValue, message);
        let output = match self.serve {
            Some(address) => Output::Serve(checked_address(&address).map_err(|e| invalid(format!("--serve: {e}")))?),
            None => {
                for (flag, path) in [("--csv", &self.csv), ("--html", &self.html)] {
                    if let Some(path) = path.as_ref().filter(|path| path.is_dir()) {
                        return Err(invalid(format!("{flag} `{}` is a directory; give a file", path.display())));
                    }
                }
                if self.csv.is_some() && self.csv == self.html {
                    return Err(invalid("--csv and --html name the same file; give each its own".into()));
                }
                Output::Files { csv: self.csv, html: self.html }
            }
        };
        Ok(Settings {
            kafka: self.kafka,
            topic: self.topic,
            window_days: self.window_days,
            output,
            progress: self.progress,
        })
    }
}

/// `address` if it has the shape HOST:PORT (a host, or an IPv6 address in brackets, and a port
/// number); whether it can be served on is known only when it is bound.
fn checked_address(address: &str) -> Result<String, String> {
    let shape = || format!("`{address}` is not HOST:PORT (e.g. 127.0.0.1:8080)");
    let (host, port) = address.rsplit_once(':').ok_or_else(shape)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(shape());
    }
    Ok(address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, clap::Error> {
        Cli::try_parse_from(["weather-report", "-t", "aggregates"].into_iter().chain(args.iter().copied()))?.settings()
    }

    /// The flags become the settings: files to write, or an address to serve on.
    #[test]
    fn flags_become_settings() {
        let s = settings(&[]).unwrap();
        assert_eq!((s.topic.as_str(), s.window_days), ("aggregates", None));
        assert_eq!(s.output, Output::Files { csv: None, html: None });
        let s = settings(&["--csv", "t.csv", "--html", "t.html", "--window-days", "7"]).unwrap();
        assert_eq!(s.output, Output::Files { csv: Some("t.csv".into()), html: Some("t.html".into()) });
        assert_eq!(s.window_days, Some(7));
        for address in ["127.0.0.1:8080", "localhost:0", "[::1]:8080"] {
            assert_eq!(settings(&["--serve", address]).unwrap().output, Output::Serve(address.into()));
        }
    }

    /// A bad flag names the flag and says why, before any broker is asked.
    #[test]
    fn bad_flags_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().to_str().unwrap();
        for (args, said) in [
            (vec!["--serve", "8080"], "--serve: `8080` is not HOST:PORT"),
            (vec!["--serve", "localhost:http"], "--serve: `localhost:http` is not HOST:PORT"),
            (vec!["--serve", ":8080"], "--serve: `:8080` is not HOST:PORT"),
            (vec!["--csv", "r", "--html", "r"], "--csv and --html name the same file"),
            (vec!["--html", dir], "--html"),
            (vec!["--window-days", "0"], "--window-days"),
            (vec!["--serve", "127.0.0.1:0", "--csv", "r.csv"], "--csv"),
        ] {
            let err = settings(&args).unwrap_err().to_string();
            assert!(err.contains(said), "{args:?}: {err}");
        }
    }
}
