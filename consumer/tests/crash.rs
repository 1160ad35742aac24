//! Crashes on the real stack: the consumer killed at random moments, and the broker restarted
//! under it, end with the same output as an uninterrupted run.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;
use testkit::{S3Server, Storage, Tansu};
use weather_consumer::checkpoint::Checkpoint;

/// Readings per sensor, sensors, partitions: 100,000 readings in all.
const DAYS: u64 = 12_500;
const SENSORS: u32 = 8;
const PARTITIONS: u32 = 4;
/// How long the broker stays away in `broker_restart_mid_run_changes_nothing`.
const OUTAGE: Duration = Duration::from_secs(4);
/// What the consumer logs when the broker has gone away.
const OUTAGE_WARNING: &str = "while consuming";
/// Readings of the one-sensor variant, all in one partition.
const ONE_SENSOR_DAYS: u64 = 28_000;
/// Starts the consumer binary with the crash tests' rules (see [`consumer_command`]), writing
/// `output`, logging warnings and errors only; its stdout (the summary) goes to `log`, its
/// stderr to `log` + `.err`.
fn consumer(tansu: &Tansu, output: &Path, extra: &[&str], log: &Path) -> Running {
    let mut command = consumer_command(&tansu.bootstrap(), &[&["-o", output.to_str().unwrap()], extra].concat());
    spawn_logged(command.env("RUST_LOG", "warn"), log)
}

/// Runs the consumer to its end; its summary.
fn run_consumer(tansu: &Tansu, output: &Path, extra: &[&str], log: &Path) -> String {
    finish(consumer(tansu, output, extra, log), log, &output.display().to_string()).0
}

/// A field of the consumer's summary: the text after `label` on its line.
fn summary_field<'a>(summary: &'a str, label: &str) -> &'a str {
    let line = summary.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no `{label}` in:\n{summary}"));
    line[label.len()..].trim()
}

/// `readings consumed:` of a summary.
fn readings_consumed(summary: &str) -> u64 {
    summary_field(summary, "readings consumed:").split(' ').next().unwrap().replace(',', "").parse().unwrap()
}

/// `offsets committed:` of a summary, summed over partitions.
fn offsets_committed(summary: &str) -> i64 {
    let offsets = summary_field(summary, "offsets committed:");
    offsets.split(' ').map(|po| po.split_once(':').unwrap().1.parse::<i64>().unwrap()).sum()
}

/// One crash scenario: `sensors` sensors of `days` readings each over [`PARTITIONS`]
/// partitions, SIGKILL at `kills` random moments of a replay (during start-up, and mid-window,
/// mid-write, mid-checkpoint, mid-upload, mid-commit once a run has made progress), restarting
/// with the same flags each time. After each kill: the checkpointed prefix of the file holds,
/// per sensor, the first rows of an uninterrupted run in order (with one sensor: its first
/// bytes); the S3 object, if any, is a prefix of that; the checkpoint never goes back; the
/// killed run printed no summary (it was killed before its end). At the end: the file holds
/// per sensor exactly the rows of an uninterrupted run in order (with one sensor, the same
/// bytes), the object equals the file, the last run read exactly the readings after the last
/// checkpoint, and nothing was kept aside as a duplicate (a resume that read counted readings
/// again would put them there).
fn sigkill_scenario(days: u64, sensors: u32, kills: u32) {
    let (tansu, s3) = (Tansu::start(), S3Server::start());
    tansu.create_topic("weather", PARTITIONS);
    s3.create_bucket("crash");
    tansu.produce_in_small_batches(days, sensors);
    let total = days * u64::from(sensors);
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    let summary = run_consumer(&tansu, &reference, &["-g", "reference"], &dir.path().join("reference.log"));
    assert_eq!((readings_consumed(&summary), summary_field(&summary, "readings rejected:")), (total, "0"));
    let reference_bytes = std::fs::read(&reference).unwrap();
    let expected = rows_by_sensor(&reference_bytes);
    assert_eq!(expected.len(), sensors as usize);
    assert!(expected.values().all(|rows| rows.len() as u64 == days / 7));
    let flat: Vec<String> =
        expected.iter().flat_map(|(sensor, rows)| rows.iter().map(move |row| format!("{sensor},{row}"))).collect();
    oracle::assert_reference_is_the_spec(&flat, &tansu.read_all("weather"));

    let (seed, mut rng) = kill_moments();
    let crashed = dir.path().join("crashed.csv");
    let endpoint = s3.endpoint();
    let mut flags =
        vec!["-g", "crashed", "--s3-bucket", "crash", "--s3-endpoint", &endpoint, "--upload-interval", "0.2"];
    // The killed runs are slowed down, so that a kill lands mid-run; the last run is not.
    let unthrottled = flags.clone();
    flags.extend(testkit::THROTTLE);
    let checkpoint = || Checkpoint::read(&crashed).unwrap();
    let durable = || checkpoint().map_or(0, |c| c.output_len);
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for kill in 0..kills {
        let context = format!("after kill {}, CRASH_SEED={seed}", kill + 1);
        let before = durable();
        let log = dir.path().join(format!("run-{kill}.log"));
        let child = consumer(&tansu, &crashed, &flags, &log);
        kill_at_random_moment(child, kill, &mut rng, || durable() != before, &log, &context);

        // What the kill left behind.
        let file = std::fs::read(&crashed).unwrap_or_default();
        let Some(checkpoint) = checkpoint() else {
            // No checkpoint yet is fine only before the first one: once written, it is
            // replaced, never removed.
            assert!(offsets.is_empty(), "{context}: the checkpoint is gone (it held {offsets:?})");
            assert!(file.is_empty(), "{context}: {} bytes without a checkpoint", file.len());
            continue;
        };
        let len = usize::try_from(checkpoint.output_len).unwrap();
        assert!(file.len() >= len, "{context}: the file ({} bytes) is shorter than its checkpoint ({len})", file.len());
        let durable_part = &file[..len];
        if sensors == 1 {
            assert!(
                reference_bytes.starts_with(durable_part),
                "{context}: the durable {len} bytes are not the reference's first bytes"
            );
        } else {
            assert_row_prefixes(&rows_by_sensor(durable_part), &expected, &context);
        }
        if let Some(object) = s3.object("crash", "crashed.csv") {
            assert!(
                durable_part.starts_with(&object),
                "{context}: the object ({} bytes) is not a prefix of the checkpointed {len} bytes of the file",
                object.len()
            );
        }
        for (partition, &offset) in &checkpoint.offsets {
            let previous = offsets.insert(*partition, offset).unwrap_or(0);
            assert!(
                offset >= previous,
                "{context}: partition {partition}'s checkpoint went back from {previous} to {offset}"
            );
        }
    }
    let resumed_at: i64 = checkpoint().map_or(0, |c| c.offsets.values().sum());
    let summary = run_consumer(&tansu, &crashed, &unthrottled, &dir.path().join("final.log"));
    let context = format!("after {kills} kills, CRASH_SEED={seed}");
    assert_eq!(
        readings_consumed(&summary),
        total - u64::try_from(resumed_at).unwrap(),
        "{context}: the last run read other readings than those after the last checkpoint:\n{summary}"
    );
    assert!(readings_consumed(&summary) > 0, "{context}: the kills all landed after the replay's end");
    assert_eq!(offsets_committed(&summary), i64::try_from(total).unwrap(), "{context}:\n{summary}");
    assert_eq!(summary_field(&summary, "readings rejected:"), "0", "{context}:\n{summary}");
    if tansu.topic_exists("weather.dlq") {
        let dead = tansu.read_all("weather.dlq");
        assert!(dead.is_empty(), "{context}: {} readings were kept aside, first {:?}", dead.len(), dead[0].headers);
    }
    let file = std::fs::read(&crashed).unwrap();
    if sensors == 1 {
        assert!(file == reference_bytes, "{context}: the file differs from the uninterrupted run's");
    } else {
        let rows = rows_by_sensor(&file);
        assert_row_prefixes(&rows, &expected, &context);
        assert_eq!(rows.len(), expected.len(), "{context}: sensors missing");
        for (sensor, rows) in &rows {
            assert_eq!(rows.len(), expected[sensor].len(), "{context}: {sensor} lacks rows");
        }
    }
    assert_eq!(s3.object("crash", "crashed.csv").as_deref(), Some(&file[..]), "the object equals the file");
}

/// SIGKILL at 20 random moments of a replay of 100,000 readings from 8 sensors over 4
/// partitions (see [`sigkill_scenario`]): every sensor's rows are those of an uninterrupted
/// run, in order, each once, and the S3 object equals the file.
#[test]
fn sigkill_at_random_moments_changes_nothing() {
    sigkill_scenario(DAYS, SENSORS, 20);
}

/// The same with one sensor, whose rows have one order only: after every kill the durable
/// part of the file is a byte prefix of the uninterrupted run's file, and at the end the file
/// and the object are that file, byte for byte.
#[test]
fn sigkill_with_one_sensor_gives_the_same_bytes() {
    sigkill_scenario(ONE_SENSOR_DAYS, 1, 10);
}

/// A broker that crashes and stays away for seconds in the middle of a run does not change
/// the output: the consumer, still running when the broker went, notices (it says so on
/// stderr), waits for it, goes on once it is back, and ends with the uninterrupted run's rows,
/// having read every reading once.
#[test]
fn broker_restart_mid_run_changes_nothing() {
    let mut tansu = Tansu::start_with(Storage::Sqlite);
    tansu.create_topic("weather", PARTITIONS);
    // SQLite storage takes writes slowly; a fifth of the data still runs for seconds.
    let days = DAYS / 5;
    tansu.produce_in_small_batches(days, SENSORS);
    let total = days * u64::from(SENSORS);
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    run_consumer(&tansu, &reference, &["-g", "reference"], &dir.path().join("reference.log"));

    let output = dir.path().join("restarted.csv");
    let mut flags = vec!["-g", "restarted"];
    flags.extend(testkit::THROTTLE);
    let log = dir.path().join("restarted.log");
    let stderr_path = dir.path().join("restarted.log.err");
    let mut child = consumer(&tansu, &output, &flags, &log);
    // Wait until some windows are durable, then crash the broker under the consumer.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&output).map_or(0, |m| m.len()) < 10_000 {
        assert!(Instant::now() < deadline, "no progress before the broker restart");
        assert!(child.try_wait().unwrap().is_none(), "the consumer ended before the broker restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.try_wait().unwrap().is_none(), "the consumer ended before the broker went away");
    let logged_before = std::fs::read_to_string(&stderr_path).unwrap().len();
    tansu.stop();
    let down = Instant::now();
    // The consumer notices: librdkafka's errors reach its log.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&stderr_path).unwrap()[logged_before..].contains(OUTAGE_WARNING) {
        assert!(Instant::now() < deadline, "the consumer did not notice the broker was gone");
        assert!(child.try_wait().unwrap().is_none(), "the consumer ended while the broker was away");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Away for a few seconds: longer than librdkafka's reconnect backoff and its requests.
    std::thread::sleep(OUTAGE.saturating_sub(down.elapsed()));
    assert!(child.try_wait().unwrap().is_none(), "the consumer ended while the broker was away");
    let written_during_outage = std::fs::metadata(&output).unwrap().len();
    tansu.restart();
    let status = child.wait().unwrap();
    let (summary, stderr) = (std::fs::read_to_string(&log).unwrap(), std::fs::read_to_string(&stderr_path).unwrap());
    assert!(status.success(), "{status}\n{summary}\n{stderr}");
    assert!(std::fs::metadata(&output).unwrap().len() > written_during_outage, "nothing was written after the restart");
    assert_eq!(readings_consumed(&summary), total, "every reading once:\n{summary}");
    assert_eq!(summary_field(&summary, "readings rejected:"), "0", "{summary}");
    assert_eq!(
        rows_by_sensor(&std::fs::read(&output).unwrap()),
        rows_by_sensor(&std::fs::read(&reference).unwrap()),
        "after a broker restart"
    );
}
