//! The sensor against a real broker: restarts continue the walk, seeds repeat it, and a
//! SIGTERM loses nothing that was reported as sent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use testkit::Tansu;
use weather_common::Reading;

/// The readings of each sensor in the topic, in offset order.
fn readings_by_sensor(tansu: &Tansu, topic: &str) -> BTreeMap<String, Vec<Reading<'static>>> {
    let mut by_sensor: BTreeMap<String, Vec<Reading<'static>>> = BTreeMap::new();
    for record in tansu.read_all(topic) {
        let reading = Reading::parse(record.value.as_deref(), record.key.as_deref()).unwrap().into_owned();
        assert_eq!(record.key.as_deref(), Some(reading.sensor_id.as_bytes()), "the key is the sensor id");
        by_sensor.entry(reading.sensor_id.to_string()).or_default().push(reading);
    }
    by_sensor
}

/// A restarted sensor continues where the topic left it: record ids go on without a gap or
/// a repeat, and the walk continues from the last values with a bounded step. The topic is
/// large enough that the sensor's look at its tail starts in the middle of a record batch.
#[tokio::test(flavor = "multi_thread")]
async fn restart_continues_the_walk() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    let first = tansu.produce("weather", 3, 4000, 1).await;
    assert_eq!((first.sent, first.acknowledged, first.failed), (12_000, 12_000, 0));
    tansu.produce("weather", 3, 25, 1).await;
    let by_sensor = readings_by_sensor(&tansu, "weather");
    assert_eq!(by_sensor.len(), 3);
    for (sensor, readings) in by_sensor {
        let ids: Vec<u64> = readings.iter().map(|r| r.record_id).collect();
        assert_eq!(ids, (1..=4025).collect::<Vec<_>>(), "{sensor}");
        let (before, after) = (&readings[3999], &readings[4000]);
        assert!((after.temperature_tenths - before.temperature_tenths).abs() <= 50, "{before} -> {after}");
        assert!(after.humidity.abs_diff(before.humidity) <= 20, "{before} -> {after}");
        assert!(after.co_concentration.abs_diff(before.co_concentration) <= 100, "{before} -> {after}");
    }
}

/// The same seed sends the same readings.
#[tokio::test(flavor = "multi_thread")]
async fn same_seed_same_readings() {
    let tansu = Tansu::start();
    tansu.create_topic("a", 1);
    tansu.create_topic("b", 1);
    tansu.produce("a", 2, 30, 77).await;
    tansu.produce("b", 2, 30, 77).await;
    assert_eq!(readings_by_sensor(&tansu, "a"), readings_by_sensor(&tansu, "b"));
}

/// SIGTERM flushes what is in flight: every reading the sensor reports as acknowledged is
/// in the topic, and it exits cleanly.
#[test]
fn sigterm_loses_nothing_reported_as_sent() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weather-producer"))
        .args(["-b", &tansu.bootstrap(), "--rate", "200", "--sensors", "2", "--seed", "5"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The log, line by line, from a thread of its own: waiting for a line must not block
    // past a deadline.
    let (lines, log) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut summary = child.stdout.take().unwrap();
    // Wait for the sensor to be sending, then for readings to reach the topic.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.last().is_some_and(|line: &String| line.contains("sending to `weather`")) {
        match log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the sensor did not start sending within 30 s ({e}); its log: {seen:?}");
            }
        }
    }
    while tansu.read_all("weather").len() < 20 {
        assert!(Instant::now() < deadline, "no readings arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    // The rest of the log, up to its end: the sensor exits.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    loop {
        match log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => last.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the sensor did not exit within 30 s of SIGTERM; its log: {last:?}");
            }
        }
    }
    assert!(child.wait().unwrap().success(), "{last:?}");
    let mut report = String::new();
    std::io::Read::read_to_string(&mut summary, &mut report).unwrap();
    let acknowledged: u64 =
        report.split(" readings: ").nth(1).unwrap().split(' ').next().unwrap().replace(',', "").parse().unwrap();
    assert!(acknowledged >= 20, "{report}");
    let count = weather_common::meter::thousands(acknowledged);
    let sent = format!("sent {count} readings: {count} acknowledged, 0 failed");
    assert!(report.contains(&sent), "{report}");
    assert_eq!(tansu.read_all("weather").len() as u64, acknowledged, "{report}");
}

/// A broker that does not answer at start is retried with backoff, then reported by address
/// with a non-zero exit once --connect-timeout has passed; never a panic.
#[test]
fn unreachable_broker_is_retried_then_reported() {
    let broker = format!("127.0.0.1:{}", testkit::free_port());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weather-producer"))
        .args(["-b", &broker, "--connect-timeout", "3", "--count", "1"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("no Kafka broker answered at {broker} within 3 s")), "{stderr}");
    assert!(stderr.contains("retrying for up to 3 s (--connect-timeout)") && !stderr.contains("panicked"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// SIGKILL at random moments of a fast run (once it sends), then a restart each time: per
/// sensor, the topic holds every record id from 1 up, once, in order: no gap and no duplicate.
#[test]
fn sigkill_then_restart_leaves_no_gap_and_no_duplicate() {
    use rand::{Rng, SeedableRng};
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    let seed = rand::random::<u64>();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bootstrap = tansu.bootstrap();
    let sensor = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weather-producer"))
            .args(["-b", &bootstrap, "--rate", "0", "--sensors", "3", "--seed", "8"])
            .args(extra)
            .env("RUST_LOG", "error")
            .spawn()
            .unwrap()
    };
    // The topic's end, summed over its partitions: it grows once a run sends.
    let probe: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let end = || -> i64 {
        (0..2).map(|p| probe.fetch_watermarks("weather", p, Duration::from_secs(5)).expect("listing the end").1).sum()
    };
    for kill in 1..=6 {
        let before = end();
        let mut child = sensor(&[]);
        // Killed while it sends, not during a start-up that a busy machine can stretch past any
        // fixed delay.
        let deadline = Instant::now() + Duration::from_secs(60);
        while end() == before {
            assert!(child.try_wait().unwrap().is_none(), "run {kill} ended before its kill");
            assert!(Instant::now() < deadline, "run {kill} sent nothing within 60 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..900)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(sensor(&["--count", "10"]).wait().unwrap().success());
    for (sensor, readings) in readings_by_sensor(&tansu, "weather") {
        let ids: Vec<u64> = readings.iter().map(|r| r.record_id).collect();
        let expected: Vec<u64> = (1..=ids.len() as u64).collect();
        assert!(ids == expected, "{sensor}: record ids are not 1..={} in order (seed {seed})", ids.len());
        assert!(ids.len() > 10, "{sensor}: the killed runs sent nothing");
    }
}

/// Off a terminal, the sensor logs progress lines (sent, rate, what is left, acknowledged and
/// failed) at --progress-interval; --quiet silences them; the summary (with the rate) is
/// printed either way.
#[test]
fn progress_lines_off_a_terminal_and_quiet() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_weather-producer"))
            .args(["-b", &tansu.bootstrap(), "--rate", "0", "--count", "3000"])
            .args(extra)
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8(out.stderr).unwrap(), String::from_utf8(out.stdout).unwrap())
    };
    let (log, summary) = run(&["--progress-interval", "0"]);
    let line = log.lines().find(|l| l.contains(" readings sent (")).expect("a progress line");
    assert!(line.contains("/s), ") && line.contains(" to go, ") && line.contains(" acknowledged, 0 failed"), "{line}");
    assert!(summary.starts_with("sent 3,000 readings: 3,000 acknowledged, 0 failed, in "), "{summary}");
    assert!(summary.trim_end().ends_with("/s)"), "{summary}");
    let (quiet, summary) = run(&["--progress-interval", "0", "--quiet"]);
    assert!(!quiet.contains(" readings sent ("), "{quiet}");
    assert!(summary.starts_with("sent 3,000 readings: 3,000 acknowledged"), "{summary}");
}
