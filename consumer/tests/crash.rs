//! Crashes on the real stack: the consumer killed at random moments, and the broker restarted
//! under it, end with the same output as an uninterrupted run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::{Rng, SeedableRng};
use testkit::{S3Server, Storage, Tansu};
use weather_consumer::checkpoint::Checkpoint;

/// Readings per sensor, sensors, partitions: 100,000 readings in all.
const DAYS: u64 = 12_500;
const SENSORS: u32 = 8;
const PARTITIONS: u32 = 4;
/// Small fetches and a short prefetch queue stretch a replay to several seconds (many broker
/// round trips), so that kills land in the middle of it without slowing the consumer's code.
const THROTTLE: [&str; 10] = [
    "-X",
    "max.partition.fetch.bytes=2048",
    "-X",
    "fetch.max.bytes=8192",
    "-X",
    "message.max.bytes=8192",
    "-X",
    "queued.max.messages.kbytes=64",
    "-X",
    "fetch.queue.backoff.ms=200",
];

fn produce(tansu: &Tansu, days: u64, sensors: u32) {
    let (bootstrap, count, sensor_count) = (tansu.bootstrap(), days.to_string(), sensors.to_string());
    let argv = ["weather-producer", "-b", &bootstrap, "--rate", "0", "--count", &count, "--sensors", &sensor_count];
    let config = weather_producer::Config::try_parse_from(argv.into_iter().chain(["--seed", "9"])).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sent = runtime.block_on(weather_producer::run(config, std::future::pending())).unwrap();
    assert_eq!(sent.acknowledged, days * u64::from(sensors));
}

fn consumer(tansu: &Tansu, output: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["-b", &tansu.bootstrap(), "--window", "week", "--unit", "fahrenheit", "--format", "csv"])
        .args(["--sensor-column", "--until-end", "--checkpoint-interval", "0.05", "-o", output.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting weather-consumer")
}

/// The rows of a CSV output, sorted, after checking the header and that no row repeats.
fn rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("sensor_id,week_id,avg_temp,avg_co,avg_humidity"));
    let mut rows: Vec<String> = lines.map(str::to_string).collect();
    rows.sort();
    let before = rows.len();
    rows.dedup();
    assert_eq!(rows.len(), before, "{} holds a row twice", path.display());
    rows
}

/// Fails with the rows one side lacks, not with two lists of 14,000 rows.
fn assert_same_rows(actual: &[String], expected: &[String], context: &str) {
    let missing: Vec<&String> = expected.iter().filter(|r| actual.binary_search(r).is_err()).collect();
    let extra: Vec<&String> = actual.iter().filter(|r| expected.binary_search(r).is_err()).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{context}: {} rows missing (first {:?}), {} rows extra (first {:?})",
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)]
    );
}

/// SIGKILL at 20 random moments of a replay of 100,000 readings from 8 sensors over 4
/// partitions (during start-up, and mid-window, mid-write, mid-checkpoint, mid-upload,
/// mid-commit once a run has made progress), restarting with the same flags each time: the final file holds exactly the rows of an uninterrupted
/// run, each once, and the S3 object equals the file.
#[test]
fn sigkill_at_random_moments_changes_nothing() {
    let (tansu, s3) = (Tansu::start(), S3Server::start());
    tansu.create_topic("weather", PARTITIONS);
    s3.create_bucket("crash");
    produce(&tansu, DAYS, SENSORS);
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    assert!(consumer(&tansu, &reference, &["-g", "reference"]).wait().unwrap().success());
    let expected = rows(&reference);
    assert_eq!(expected.len(), SENSORS as usize * (DAYS / 7) as usize);

    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("kill moments from CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let crashed = dir.path().join("crashed.csv");
    let endpoint = s3.endpoint();
    let mut flags =
        vec!["-g", "crashed", "--s3-bucket", "crash", "--s3-endpoint", &endpoint, "--upload-interval", "0.2"];
    flags.extend(THROTTLE);
    let durable = || -> u64 {
        let checkpoint = std::fs::read(Checkpoint::path_for(&crashed)).unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&checkpoint).map_or(0, |c| c["output_len"].as_u64().unwrap_or(0))
    };
    let (mut kills, mut kills_after_progress) = (0, 0);
    while kills < 20 {
        let before = durable();
        let mut child = consumer(&tansu, &crashed, &flags);
        if kills % 4 == 3 {
            // Now and then during start-up: loading the checkpoint, connecting, cutting the file.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        } else {
            // Otherwise at a random moment after this run made progress of its own.
            let deadline = Instant::now() + Duration::from_secs(60);
            while durable() == before {
                assert!(child.try_wait().unwrap().is_none(), "the replay ended after only {kills} kills");
                assert!(Instant::now() < deadline, "no progress within 60 s");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        }
        assert!(child.try_wait().unwrap().is_none(), "the replay ended after only {kills} kills: make it longer");
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        kills_after_progress += usize::from(durable() > before);
    }
    assert!(
        kills_after_progress >= 15,
        "only {kills_after_progress} kills came after progress: they must land mid-replay"
    );
    let status = consumer(&tansu, &crashed, &flags).wait().unwrap();
    assert!(status.success(), "the run after {kills} kills failed: {status}");
    assert_same_rows(&rows(&crashed), &expected, &format!("after {kills} kills, CRASH_SEED={seed}"));
    let file = std::fs::read(&crashed).unwrap();
    assert_eq!(s3.object("crash", "crashed.csv").as_deref(), Some(&file[..]), "the object equals the file");
}

/// A broker that crashes and comes back (with its data) in the middle of a run does not
/// change the output: the consumer waits for it and goes on.
#[test]
fn broker_restart_mid_run_changes_nothing() {
    let mut tansu = Tansu::start_with(Storage::Sqlite);
    tansu.create_topic("weather", PARTITIONS);
    // SQLite storage takes writes slowly; a fifth of the data still runs for seconds.
    produce(&tansu, DAYS / 5, SENSORS);
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    assert!(consumer(&tansu, &reference, &["-g", "reference"]).wait().unwrap().success());

    let output = dir.path().join("restarted.csv");
    let mut flags = vec!["-g", "restarted"];
    flags.extend(THROTTLE);
    let mut child = consumer(&tansu, &output, &flags);
    // Wait until some windows are durable, then crash the broker under the consumer.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&output).map_or(0, |m| m.len()) < 10_000 {
        assert!(Instant::now() < deadline, "no progress before the broker restart");
        assert!(child.try_wait().unwrap().is_none(), "the consumer ended before the broker restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    tansu.restart();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_same_rows(&rows(&output), &rows(&reference), "after a broker restart");
}
