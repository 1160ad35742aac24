//! What the consumer's process-level tests share: the consumer binary with version 2's rules on
//! a bounded run, started with its summary in a log and its stderr beside it; the CSV's rows
//! per sensor and the check that they are an uninterrupted run's first rows; the spec oracle;
//! `/metrics` scraped and parsed by Prometheus's own Python parser.

#![allow(dead_code)]

pub mod oracle;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The consumer binary on the broker at `bootstrap` with weekly °F CSV rules and a sensor column (unless `args`
/// give a --window), a bounded run with a checkpoint every 50 ms (unless `args` give a
/// --checkpoint-interval), logging at `info`, then `args`.
pub fn consumer_command(bootstrap: &str, args: &[&str]) -> Command {
    let rules: &[&str] = if args.contains(&"--window") { &[] } else { &["--window", "week", "--unit", "fahrenheit"] };
    let interval: &[&str] =
        if args.contains(&"--checkpoint-interval") { &[] } else { &["--checkpoint-interval", "0.05"] };
    let mut command = Command::new(env!("CARGO_BIN_EXE_weather-consumer"));
    command
        .args(["-b", bootstrap, "--format", "csv"])
        .args(rules)
        .args(["--sensor-column", "--until-end", "--connect-timeout", "20"])
        .args(interval)
        .args(args)
        .env("RUST_LOG", "info");
    command
}

/// Starts `command` with its stdout (the summary) in `log` and its stderr in [`err_path`].
pub fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    command
        .stdout(File::create(log).unwrap())
        .stderr(File::create(err_path(log)).unwrap())
        .spawn()
        .expect("starting weather-consumer")
}

/// Where [`spawn_logged`] puts a run's stderr: `log` + `.err`.
pub fn err_path(log: &Path) -> PathBuf {
    let mut err = log.as_os_str().to_owned();
    err.push(".err");
    err.into()
}

/// Waits for `child`, started by [`spawn_logged`], to end successfully (`what` names the run
/// if not); its summary and its stderr.
pub fn finish(mut child: Child, log: &Path, what: &str) -> (String, String) {
    let status = child.wait().unwrap();
    let summary = std::fs::read_to_string(log).unwrap();
    let stderr = std::fs::read_to_string(err_path(log)).unwrap_or_default();
    assert!(status.success(), "{what} failed ({status}):\n{summary}\n{stderr}");
    (summary, stderr)
}

/// The rows of a CSV output per sensor, in file order, after checking the header and that
/// the text ends with a whole row.
pub fn rows_by_sensor(csv: &[u8]) -> BTreeMap<String, Vec<String>> {
    let text = std::str::from_utf8(csv).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the output ends mid-row: {:?}",
        &text[text.len().saturating_sub(80)..]
    );
    let mut lines = text.lines();
    if let Some(header) = lines.next() {
        assert_eq!(header, "sensor_id,week_id,avg_temp,avg_co,avg_humidity");
    }
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let (sensor, row) = line.split_once(',').unwrap();
        rows.entry(sensor.to_string()).or_default().push(row.to_string());
    }
    rows
}

/// Per sensor, `actual` holds the first rows of `expected`, in order: each week once, none
/// skipped, none out of place. Fails with the first difference, not with 14,000 rows.
pub fn assert_row_prefixes(
    actual: &BTreeMap<String, Vec<String>>,
    expected: &BTreeMap<String, Vec<String>>,
    context: &str,
) {
    for (sensor, rows) in actual {
        let wanted = expected.get(sensor).unwrap_or_else(|| panic!("{context}: unknown sensor {sensor}"));
        assert!(rows.len() <= wanted.len(), "{context}: {sensor} has {} rows, more than {}", rows.len(), wanted.len());
        if let Some(i) = (0..rows.len()).find(|&i| rows[i] != wanted[i]) {
            panic!("{context}: {sensor}'s row {} is {:?}, not {:?}", i + 1, rows[i], wanted[i]);
        }
    }
}

/// Runs `weather-consumer` with these flags against `tansu`, in-process, as its command line
/// would.
pub async fn consume(tansu: &testkit::Tansu, args: &[&str]) -> anyhow::Result<weather_consumer::Summary> {
    use clap::Parser;
    let bootstrap = tansu.bootstrap();
    let argv = ["weather-consumer", "-b", &bootstrap, "--connect-timeout", "20", "--quiet"];
    let settings = weather_consumer::Cli::try_parse_from(argv.into_iter().chain(args.iter().copied()))?.settings()?;
    weather_consumer::run(settings, std::future::pending()).await
}

/// One sample of a scrape: its name, labels and value.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Scrapes `http://addr/metrics` and parses it with `prometheus_client`'s parser.
pub fn scrape(addr: &str) -> Vec<Sample> {
    const PARSE: &str = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=10).read().decode()
samples = [{"name": s.name, "labels": s.labels, "value": s.value}
           for family in text_string_to_metric_families(text) for s in family.samples]
print(json.dumps(samples))
"#;
    let out = Command::new(testkit::lake_python()).args(["-c", PARSE, addr]).output().expect("running Python");
    assert!(out.status.success(), "scraping {addr}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the parser's samples")
}

/// The sum of the samples named `name` whose labels include `labels`; none: `None`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}
