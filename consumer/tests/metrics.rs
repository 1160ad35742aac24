//! The jobs' metrics, read as Prometheus reads them: `/metrics` parsed by Prometheus's own
//! Python parser (not our writer) agrees with the consumer's summary, the lag rises while the
//! consumer cannot make progress durable and returns to 0 once it has caught up, and a real
//! Prometheus server (Debian's) scrapes the sensor, the consumer and the archive.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

mod support;

use support::{scrape, sum, Sample};
use testkit::{free_port, lake_python, PostgresServer, Running, Tansu};

/// Scrapes `addr` until `done` says the samples are what the test waits for (at most
/// `deadline`); the last scrape.
fn scrape_until(addr: &str, what: &str, deadline: Duration, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let until = Instant::now() + deadline;
    loop {
        let samples = scrape(addr);
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < until, "{what} within {deadline:?}; the last scrape:\n{samples:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A process of the test, killed when dropped (a failed assertion included).
struct Job(Running);

impl Job {
    fn new(child: Child) -> Job {
        Job(Running::new(child))
    }

    /// SIGTERM, as an operator stops a job; waits for it to end.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.0.wait().unwrap()
    }
}

fn get(url: &str) -> (u16, String) {
    let out = Command::new(lake_python())
        .args([
            "-c",
            "import sys, urllib.request, urllib.error\n\
             try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=10); print(r.status); print(r.read().decode())\n\
             except urllib.error.HTTPError as e:\n    print(e.code); print(e.read().decode())",
            url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, body) = text.split_once('\n').unwrap_or((&text, ""));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The figure after `label` on the summary's line that starts with it.
fn figure(summary: &str, label: &str) -> u64 {
    let line = summary.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no `{label}` in:\n{summary}"));
    line[label.len()..].split_whitespace().next().unwrap().replace(',', "").parse().unwrap()
}

/// After readings of two sensors and three bad records, the consumer's counters equal its
/// summary: readings, rejected by reason, windows per sink. While another session holds the
/// table's progress locked, the consumer cannot make progress durable and the lag of the
/// readings sent meanwhile shows, in readings (every one of them, though the sensor sent them
/// in batches: Tansu lists a partition's end as its last batch's start) and in seconds; once
/// the lock goes, the lag returns to 0. `/health` says the job is connected and working.
#[test]
fn counters_equal_the_summary_and_lag_rises_then_returns_to_zero() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    let pg = PostgresServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(tansu.produce("weather", 2, 300, 1));
    let bad: [testkit::RawMessage<'_>; 3] = [
        (Some(b"sensor-1"), Some(b"not json")),
        (Some(b"sensor-2"), Some(b"{\"sensor_id\": \"sensor-2\"}")),
        (Some(b"sensor-1"), None),
    ];
    tansu.send_raw("weather", &bad);
    let dir = tempfile::tempdir().unwrap();
    let (output, log) = (dir.path().join("out.txt"), dir.path().join("consumer.log"));
    let addr = format!("127.0.0.1:{}", free_port());
    let consumer = Job::new(
        Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
            .args(["-b", &tansu.bootstrap(), "--preset", "v1", "--sensor-column", "--quiet"])
            .args(["-o", output.to_str().unwrap(), "--checkpoint-interval", "0.2"])
            .args(["--to-postgres", &pg.url(), "--metrics-addr", &addr])
            .env("PGPASSWORD", pg.password())
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting weather-consumer"),
    );
    let lag = |s: &[Sample]| sum(s, "weather_consumer_lag_readings", &[("topic", "weather")]);
    let read = |s: &[Sample]| sum(s, "weather_consumer_readings_total", &[("topic", "weather")]);
    scrape_until(&addr, "all 603 records read and durable", Duration::from_secs(60), |s| {
        read(s) == Some(603.0) && lag(s) == Some(0.0)
    });
    let (status, body) = get(&format!("http://{addr}/health"));
    assert_eq!((status, body.trim()), (200, "weather-consumer: connected and working"));

    // Another session locks the progress table: the consumer's next commit waits for it.
    let mut config = tokio_postgres::Config::from_str(&pg.url()).unwrap();
    config.password(pg.password());
    let (client, connection) = runtime.block_on(config.connect(tokio_postgres::NoTls)).unwrap();
    runtime.spawn(connection);
    runtime
        .block_on(client.batch_execute("BEGIN; LOCK TABLE weather_aggregates_progress IN ACCESS EXCLUSIVE MODE"))
        .unwrap();
    runtime.block_on(tansu.produce("weather", 2, 100, 1));
    scrape_until(&addr, "a lag of the 200 readings sent while the table is locked", Duration::from_secs(60), |s| {
        lag(s) == Some(200.0) && sum(s, "weather_consumer_lag_seconds", &[]).is_some_and(|l| l > 0.0)
    });
    runtime.block_on(client.batch_execute("COMMIT")).unwrap();
    let last = scrape_until(&addr, "every reading read and the lag back to 0", Duration::from_secs(60), |s| {
        read(s) == Some(803.0) && lag(s) == Some(0.0) && sum(s, "weather_consumer_lag_seconds", &[]) == Some(0.0)
    });

    assert!(consumer.terminate().success());
    let summary = std::fs::read_to_string(&log).unwrap();
    assert_eq!(read(&last), Some(figure(&summary, "readings consumed:") as f64), "{summary}");
    let rejected_line = summary.lines().find(|l| l.starts_with("readings rejected:")).unwrap();
    let mut rejected_total = 0.0;
    for sample in last.iter().filter(|s| s.name == "weather_consumer_readings_rejected_total") {
        let reason = &sample.labels["reason"];
        assert!(rejected_line.contains(&format!("{reason} {}", sample.value)), "{reason}: {rejected_line}");
        rejected_total += sample.value;
    }
    assert_eq!(rejected_total, figure(&summary, "readings rejected:") as f64, "{summary}");
    assert_eq!(rejected_total, 3.0);
    let windows = |sink: &str| sum(&last, "weather_consumer_windows_written_total", &[("sink", sink)]);
    assert_eq!(windows("file"), Some(figure(&summary, "windows written:") as f64), "{summary}");
    let table_line = summary.lines().find(|l| l.starts_with("table:")).expect("a table line");
    let sent: u64 = table_line.rsplit_once('(').unwrap().1.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(windows("postgres"), Some(sent as f64), "{summary}");
    assert!(sent > 0);
    assert!(sum(&last, "weather_consumer_checkpoint_duration_seconds_count", &[]).is_some_and(|n| n > 0.0));
    assert!(sum(&last, "weather_consumer_commit_duration_seconds_bucket", &[("sink", "postgres")]).is_some());
}

/// Another job's binary, built beside the consumer's by `cargo test --workspace`.
fn sibling(name: &str) -> String {
    let path = Path::new(env!("CARGO_BIN_EXE_weather-consumer")).with_file_name(name);
    assert!(path.is_file(), "{} is not built: run the tests with --workspace (scripts/test does)", path.display());
    path.to_str().unwrap().to_string()
}

/// Starts a job binary with `args`, its output discarded, stopped when dropped.
fn job(binary: &str, args: &[&str]) -> Job {
    Job::new(
        Command::new(binary)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}")),
    )
}

/// Debian's Prometheus scrapes the sensor, the consumer and the archive, all following a live
/// topic: every target is up, and a PromQL query through its HTTP API returns the consumer's
/// lag per partition.
#[test]
fn prometheus_scrapes_every_job() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = tansu.bootstrap();
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let _sensor = job(
        &sibling("weather-producer"),
        &["-b", &bootstrap, "--sensors", "3", "--rate", "20", "--quiet", "--metrics-addr", &addrs[0]],
    );
    let output = dir.path().join("out.txt");
    let _consumer = job(
        env!("CARGO_BIN_EXE_weather-consumer"),
        &["-b", &bootstrap, "--preset", "v1", "--sensor-column", "--quiet", "-o", output.to_str().unwrap()]
            .iter()
            .chain(&["--metrics-addr", addrs[1].as_str()])
            .copied()
            .collect::<Vec<_>>(),
    );
    let lake = dir.path().join("lake");
    let _archive = job(
        &sibling("weather-archive"),
        &["-b", &bootstrap, "-o", lake.to_str().unwrap(), "--quiet", "--metrics-addr", &addrs[2]],
    );

    let config = dir.path().join("prometheus.yml");
    let targets = |i: usize| format!("['{}']", addrs[i]);
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: weather-producer\n    static_configs:\n      \
             - targets: {}\n  - job_name: weather-consumer\n    static_configs:\n      - targets: {}\n  - job_name: \
             weather-archive\n    static_configs:\n      - targets: {}\n",
            targets(0),
            targets(1),
            targets(2)
        ),
    )
    .unwrap();
    let prometheus_addr = format!("127.0.0.1:{}", free_port());
    let _prometheus = Job::new(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("Debian's prometheus is not installed: scripts/test installs it (apt-get install prometheus)"),
    );
    let query = |promql: &str| -> serde_json::Value {
        let url = format!("http://{prometheus_addr}/api/v1/query?query={}", urlencode(promql));
        let (status, body) = get(&url);
        if status != 200 {
            return serde_json::Value::Null;
        }
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]["result"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let up = query("up");
        let ups: Vec<(String, String)> = up
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (s["metric"]["job"].as_str().unwrap_or("").to_string(), s["value"][1].as_str().unwrap_or("").into())
            })
            .collect();
        let lag = query("sum by (partition) (weather_consumer_lag_readings)");
        let partitions: Vec<String> = lag
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["metric"]["partition"].as_str().map(str::to_string))
            .collect();
        if ups.len() == 3 && ups.iter().all(|(_, v)| v == "1") && partitions.len() == 3 {
            let mut sorted = partitions.clone();
            sorted.sort();
            assert_eq!(sorted, ["0", "1", "2"]);
            let jobs: Vec<&str> = ups.iter().map(|(j, _)| j.as_str()).collect();
            for expected in ["weather-producer", "weather-consumer", "weather-archive"] {
                assert!(jobs.contains(&expected), "{jobs:?}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "every job up and the lag per partition within 90 s; up: {ups:?}, lag: {lag}\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let sent = query("weather_producer_readings_acknowledged_total");
    assert!(sent.as_array().is_some_and(|s| !s.is_empty()), "{sent}");
    let files = query("weather_archive_files_total");
    assert!(files.as_array().is_some_and(|s| !s.is_empty()), "{files}");
}

/// `text` as a URL query value.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Two members of a shared group on four partitions: each publishes the partitions it owns
/// (two), a lag for each of its own from the moment it claims it (a partition it handed back
/// shows 0 there: its new owner has the lag), all 0 once everything is committed; the windows
/// they sent, as published when their lag reads 0, add up to the table's rows.
#[test]
fn members_of_a_shared_group_publish_their_own_partitions() {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", 4);
    tansu.produce_in_small_batches(70, 8);
    let addrs = [format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())];
    let consumer = env!("CARGO_BIN_EXE_weather-consumer");
    let bootstrap = tansu.bootstrap();
    let url = pg.url();
    let members: Vec<Job> = ["a", "b"]
        .iter()
        .zip(&addrs)
        .map(|(name, addr)| {
            let args = [
                "-b",
                &bootstrap,
                "--share",
                "-g",
                "fleet",
                "--member",
                name,
                "--no-file",
                "--to-postgres",
                &url,
                "--lease",
                "2",
                "--metrics-addr",
                addr,
            ];
            Job::new(
                Command::new(consumer)
                    .args(args)
                    .env("PGPASSWORD", pg.password())
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let lagging = |samples: &[Sample]| -> BTreeMap<String, f64> {
        let lag = samples.iter().filter(|s| s.name == "weather_consumer_lag_readings");
        lag.map(|s| (s.labels["partition"].clone(), s.value)).collect()
    };
    let settled = |samples: &[Sample]| {
        sum(samples, "weather_consumer_partitions_owned", &[]) == Some(2.0)
            && lagging(samples).len() >= 2
            && sum(samples, "weather_consumer_lag_readings", &[]) == Some(0.0)
    };
    let scraped: Vec<Vec<Sample>> =
        addrs.iter().map(|a| scrape_until(a, "two partitions, caught up", Duration::from_secs(60), settled)).collect();
    let mut all: Vec<String> = scraped.iter().flat_map(|s| lagging(s).into_keys()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all, ["0", "1", "2", "3"], "the members' lag covers every partition");
    let sent: f64 = scraped
        .iter()
        .map(|s| sum(s, "weather_consumer_windows_written_total", &[("sink", "postgres")]).unwrap_or(0.0))
        .sum();
    let rows: f64 = pg.query("SELECT count(*) FROM weather_aggregates")[0][0].as_ref().unwrap().parse().unwrap();
    assert_eq!((sent, rows), (8.0 * 2.0, 8.0 * 2.0), "8 sensors' two complete months, written once");
    drop(members);
}
