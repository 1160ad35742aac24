//! What the consumer's process-level tests share: the consumer binary with version 2's rules on
//! a bounded run, started with its summary in a log and its stderr beside it; the CSV's rows
//! per sensor and the check that they are an uninterrupted run's first rows; the spec oracle;
//! `/metrics` scraped and parsed by Prometheus's own Python parser; the crash tests' kills at
//! random moments.

#![allow(dead_code)]

pub mod oracle;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
pub use testkit::Running;

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
pub fn spawn_logged(command: &mut Command, log: &Path) -> Running {
    let child = command
        .stdout(File::create(log).unwrap())
        .stderr(File::create(err_path(log)).unwrap())
        .spawn()
        .expect("starting weather-consumer");
    Running::new(child)
}

/// Where [`spawn_logged`] puts a run's stderr: `log` + `.err`.
pub fn err_path(log: &Path) -> PathBuf {
    let mut err = log.as_os_str().to_owned();
    err.push(".err");
    err.into()
}

/// Where a crash test's kill moments come from: `CRASH_SEED` if set (to repeat a failed run),
/// else a new seed, printed so that it can be.
pub fn kill_moments() -> (u64, rand::rngs::StdRng) {
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("kill moments from CRASH_SEED={seed}");
    (seed, rand::rngs::StdRng::seed_from_u64(seed))
}

/// SIGKILLs `child`, the crash test's run number `kill` (started by [`spawn_logged`] with
/// `log`), at a random moment: every fourth run during its start-up, the others a little after
/// `progressed` says it made durable progress of its own (within 60 s). The run must not have
/// ended by then (nor printed its summary): the replay is made long enough for every kill.
pub fn kill_at_random_moment(
    mut child: Running,
    kill: u32,
    rng: &mut rand::rngs::StdRng,
    mut progressed: impl FnMut() -> bool,
    log: &Path,
    context: &str,
) {
    let ended = |child: &mut Child| {
        child.try_wait().unwrap().map(|status| {
            let stderr = std::fs::read_to_string(err_path(log)).unwrap_or_default();
            format!("the replay ended ({status}) after only {kill} kills: make it longer\n{stderr}")
        })
    };
    if kill % 4 == 3 {
        // Start-up: loading the checkpoint or the state, connecting, creating tables and topics.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
    } else {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !progressed() {
            if let Some(ended) = ended(&mut child) {
                panic!("{ended}");
            }
            assert!(Instant::now() < deadline, "{context}: no progress within 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
    }
    if let Some(ended) = ended(&mut child) {
        panic!("{ended}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read_to_string(log).unwrap(), "", "{context}: the killed run had printed its summary");
}

/// Waits for `child`, started by [`spawn_logged`], to end successfully (`what` names the run
/// if not); its summary and its stderr.
pub fn finish(mut child: Running, log: &Path, what: &str) -> (String, String) {
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
