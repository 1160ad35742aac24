//! Replay controls and progress against the real broker: `--start` (time, offsets, latest),
//! `--until time:`, `--dry-run`, and the progress lines of both binaries.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use testkit::Tansu;
use weather_common::position::now_ms;
use weather_consumer::checkpoint::Checkpoint;

const SENSORS: u32 = 3;
/// Weekly windows in °F with a sensor column, as version 2 computes them, without S3.
const WEEKLY: [&str; 7] = ["--window", "week", "--unit", "fahrenheit", "--format", "csv", "--sensor-column"];

fn with<'a>(output: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    WEEKLY.iter().copied().chain(["-o", output.to_str().unwrap()]).chain(extra.iter().copied()).collect()
}

fn consumer(tansu: &Tansu, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["-b", &tansu.bootstrap()])
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "weather-consumer {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn sorted_rows(bytes: &[u8]) -> Vec<String> {
    let mut rows: Vec<String> = String::from_utf8_lossy(bytes).lines().map(String::from).collect();
    rows.sort();
    rows
}

/// Waits until the clock has passed the returned time, so that every reading sent before
/// this call is stamped before it and every reading sent after is stamped at or after it.
fn a_moment_between_batches() -> i64 {
    let moment = now_ms() + 1;
    while now_ms() <= moment {
        std::thread::sleep(Duration::from_millis(1));
    }
    moment
}

/// 20 weeks per sensor, a moment, 10 more weeks, all aggregated. Then `--start time:` that
/// moment: the dry run says what will happen, touching nothing; the replay cuts the output
/// back to the checkpoint taken before the moment, keeps the 20 weeks before it byte for
/// byte, reads only the readings after it, and ends with the same rows as before.
#[tokio::test(flavor = "multi_thread")]
async fn start_at_a_time_recomputes_only_the_windows_after_it() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("weekly.csv");
    tansu.produce("weather", SENSORS, 140, 41).await;
    let first = support::consume(&tansu, &with(&output, &["--until-end"])).await.unwrap();
    assert_eq!(first.readings, 420);
    let before_moment = std::fs::read(&output).unwrap();
    let moment = a_moment_between_batches();
    tansu.produce("weather", SENSORS, 70, 41).await;
    let second = support::consume(&tansu, &with(&output, &["--until-end"])).await.unwrap();
    assert_eq!((second.readings, second.windows_written), (210, 30));
    let complete = std::fs::read(&output).unwrap();
    let checkpoint = dir.path().join("weekly.csv.checkpoint");
    let checkpoint_bytes = std::fs::read(&checkpoint).unwrap();

    let start = format!("time:{}", weather_common::position::format_time(moment));
    let dry = consumer(&tansu, &with(&output, &["--start", &start, "--until-end", "--dry-run"]));
    let plan = String::from_utf8(dry.stdout).unwrap();
    let bytes = |b: &[u8]| weather_common::meter::thousands(b.len() as u64);
    let rolled_back = format!("rolled back from {} to {} bytes", bytes(&complete), bytes(&before_moment));
    assert!(plan.contains(&rolled_back), "{plan}");
    for sensor in 1..=SENSORS {
        assert!(plan.contains(&format!("sensor-{sensor}         kept 1-20; rewritten 21-30; new from 31")), "{plan}");
    }
    let total_line = plan.lines().find(|l| l.trim_start().starts_with("total")).expect("a total line");
    assert!(total_line.ends_with(" 210"), "{plan}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), checkpoint_bytes, "a dry run changes nothing");
    assert_eq!(std::fs::read(&output).unwrap(), complete);

    let replay = support::consume(&tansu, &with(&output, &["--start", &start, "--until-end"])).await.unwrap();
    assert_eq!((replay.readings, replay.windows_written), (210, 30));
    let replayed = std::fs::read(&output).unwrap();
    assert_eq!(replayed[..before_moment.len()], before_moment[..], "the weeks before the moment are kept");
    assert_eq!(sorted_rows(&replayed), sorted_rows(&complete));
}

/// `--until time:` stops by itself before the first reading stamped at or after the time;
/// `--start committed` starts a new output where its group's commits are; `--start offset:`
/// starts a new output at those offsets (others from the beginning);
/// `--start latest` starts a new output at the end, and resumes an existing one.
#[tokio::test(flavor = "multi_thread")]
async fn until_a_time_and_start_at_offsets_or_the_end() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    let dir = tempfile::tempdir().unwrap();
    tansu.produce("weather", SENSORS, 140, 43).await;
    let moment = a_moment_between_batches();
    tansu.produce("weather", SENSORS, 70, 43).await;

    let until = format!("time:{}", weather_common::position::format_time(moment));
    let bounded = dir.path().join("until.csv");
    let summary = support::consume(&tansu, &with(&bounded, &["--start", "earliest", "--until", &until])).await.unwrap();
    assert_eq!((summary.readings, summary.windows_written), (420, 60));
    let at_moment = summary.offsets.clone();

    let group = Checkpoint::read(&bounded).unwrap().unwrap().rules.default_group(&bounded);
    let committed = dir.path().join("committed.csv");
    let args = with(&committed, &["-g", &group, "--start", "committed", "--until-end"]);
    let summary = support::consume(&tansu, &args).await.unwrap();
    assert_eq!(summary.readings, 210, "a new output starts at the group's committed offsets");

    let (&partition, &offset) = at_moment.iter().max_by_key(|&(_, &o)| o).unwrap();
    let from_offsets = dir.path().join("offsets.csv");
    let start = format!("offset:{partition}={offset}");
    let summary = support::consume(&tansu, &with(&from_offsets, &["--start", &start, "--until-end"])).await.unwrap();
    assert_eq!(summary.readings as i64, 630 - offset, "partition {partition} from {offset}, the others from 0");

    let latest = dir.path().join("latest.csv");
    let summary = support::consume(&tansu, &with(&latest, &["--start", "latest", "--until-end"])).await.unwrap();
    assert_eq!(summary.readings, 0);
    assert_eq!(summary.offsets.values().sum::<i64>(), 630, "a new output starts at the end");
    let summary = support::consume(&tansu, &with(&bounded, &["--start", "latest", "--until-end"])).await.unwrap();
    assert_eq!(summary.readings, 210, "an existing output is never moved forward: it resumes");

    let err = support::consume(&tansu, &with(&latest, &["--start", "offset:7=0", "--until-end"])).await.unwrap_err();
    assert!(format!("{err:#}").contains("no partition 7"), "{err:#}");
}

/// Two outputs of the same name in two directories never share progress: each new output
/// reads the topic from the beginning, whatever another one committed. A new output that is
/// asked to start at a group's commits says loudly how many readings it leaves out.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_output_never_skips_history_silently() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    tansu.produce("weather", 1, 100, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("exercise"), dir.path().join("walkthrough"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let mut files = Vec::new();
    for output in [first.join("weather_aggregation.txt"), second.join("weather_aggregation.txt")] {
        let out = consumer(&tansu, &["--preset", "v1", "--until-end", "-o", output.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("readings consumed:  100 "), "{stdout}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("a new output, from the beginning"));
        files.push(std::fs::read_to_string(&output).unwrap());
    }
    assert!(files[0].starts_with("1,") && files[0].contains(",3,"), "{}", files[0]);
    assert_eq!(files[0], files[1], "the second output holds the whole history too");

    let group = Checkpoint::read(&first.join("weather_aggregation.txt"))
        .unwrap()
        .unwrap()
        .rules
        .default_group(&first.join("weather_aggregation.txt"));
    let late = dir.path().join("late.txt");
    let out = consumer(&tansu, &["--start", "committed", "-g", &group, "--until-end", "-o", late.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&out.stderr);
    let warning =
        log.lines().find(|l| l.contains("WARN") && l.contains("a new output, from the group's committed offsets"));
    assert!(
        warning.is_some_and(|w| w.contains("the 100 readings before it are not read (--start earliest reads them)")),
        "{log}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("readings consumed:  0 "));
}

/// Off a terminal, the consumer logs progress lines (count, rate, what is left, windows) at
/// --progress-interval; --quiet silences them; the summary is printed either way.
#[tokio::test(flavor = "multi_thread")]
async fn progress_lines_off_a_terminal_and_quiet() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 3000, 47).await;

    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("weekly.csv");
    let loud = consumer(&tansu, &with(&output, &["--until-end", "--progress-interval", "0"]));
    let log = String::from_utf8(loud.stderr).unwrap();
    assert!(log.contains(" readings (") && log.contains(" to go, ") && log.contains(" windows written"), "{log}");
    assert!(String::from_utf8(loud.stdout).unwrap().contains("readings consumed:  3,000"));

    let quiet = consumer(&tansu, &with(&output, &["--from-beginning", "--until-end", "-q"]));
    let log = String::from_utf8(quiet.stderr).unwrap();
    assert!(!log.contains(" readings ("), "{log}");
    assert!(String::from_utf8(quiet.stdout).unwrap().contains("readings consumed:  3,000"));
}
