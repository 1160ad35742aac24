//! Outages and misconfiguration on the real stack: each is retried where it can pass, and
//! reported plainly where it cannot, and none loses or doubles output.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use clap::Parser;
use testkit::{free_port, S3Server, Tansu};
use weather_consumer::Cli;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run_binary(binary: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(binary).args(args).envs(env.iter().copied()).env("RUST_LOG", "info").output().unwrap();
    (output, started.elapsed())
}

/// A broker that does not answer at start is retried with backoff, then reported by address
/// with a non-zero exit once --connect-timeout has passed; never a panic.
#[test]
fn unreachable_broker_is_retried_then_reported() {
    let broker = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.txt");
    let args = ["-b", broker.as_str(), "--connect-timeout", "3", "--until-end", "-o", path(&output)];
    let (out, took) = run_binary(env!("CARGO_BIN_EXE_weather-consumer"), &args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("no Kafka broker answered at {broker} within 3 s")), "{stderr}");
    assert!(stderr.contains("retrying for up to 3 s (--connect-timeout)"), "it retries: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// A topic the broker says it does not know is reported within seconds, not after the
/// connect timeout, with the topics the broker has and how to create it; the log never speaks
/// of an unanswered broker.
#[test]
fn a_missing_topic_is_reported_at_once() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.txt");
    let bootstrap = tansu.bootstrap();
    let args = ["-b", bootstrap.as_str(), "-t", "wether", "--until-end", "-o", path(&output)];
    let (out, took) = run_binary(env!("CARGO_BIN_EXE_weather-consumer"), &args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "topic `wether` does not exist on {bootstrap} (it has `weather`; did you mean `weather`?)"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--create --topic wether"), "says how to create it: {stderr}");
    assert!(!stderr.contains("no Kafka broker answered"), "{stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// A missing bucket and refused credentials stop the consumer at once, naming the endpoint
/// and the bucket; the secret is never printed.
#[test]
fn s3_misconfiguration_names_endpoint_and_bucket() {
    let s3 = S3Server::start();
    s3.create_bucket("present");
    let endpoint = s3.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.csv");
    let base = ["-b", "127.0.0.1:9", "--connect-timeout", "1", "-o", path(&output), "--s3-endpoint", &endpoint];
    let consumer = env!("CARGO_BIN_EXE_weather-consumer");

    let (out, _) = run_binary(consumer, &[&base[..], &["--s3-bucket", "absent"]].concat(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("bucket `absent` does not exist at {endpoint}")), "{stderr}");

    let wrong = [("AWS_ACCESS_KEY_ID", testkit::S3_ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", "not-the-secret")];
    let (out, _) = run_binary(consumer, &[&base[..], &["--s3-bucket", "present"]].concat(), &wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{endpoint} does not accept these credentials (HTTP 403 ")), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "the secret must not be printed: {stderr}");

    // A name S3 would reject is a bad flag, named as such before anything is sent.
    let (out, _) = run_binary(consumer, &[&base[..], &["--s3-bucket", "ab"]].concat(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--s3-bucket: `ab` is not a valid S3 bucket name"), "{stderr}");
}

/// While S3 is away the local output goes on and the run reports the object as behind; once
/// S3 is back, the next run, a resume with nothing new to read, uploads the file and the
/// object equals it.
#[tokio::test(flavor = "multi_thread")]
async fn s3_outage_keeps_local_output_and_the_next_run_uploads() {
    testkit::use_test_credentials();
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    tansu.produce("weather", 1, 70, 21).await;
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("weekly.csv");
    // Version 2's rules, without its --from-beginning: the second run resumes.
    let args = [
        "--window",
        "week",
        "--unit",
        "fahrenheit",
        "--format",
        "csv",
        "--until-end",
        "-o",
        path(&output),
        "--s3-bucket",
        "later",
        "--s3-endpoint",
        &endpoint,
    ];

    let err = support::consume(&tansu, &args).await.unwrap_err().to_string();
    assert!(err.contains("s3://later/weekly.csv could not be updated") && err.contains("next run uploads it"), "{err}");
    let local = std::fs::read_to_string(&output).unwrap();
    assert_eq!(local.lines().count(), 1 + 10, "the local output is complete:\n{local}");

    let s3 = S3Server::start_on(port);
    s3.create_bucket("later");
    let summary = support::consume(&tansu, &args).await.unwrap();
    assert_eq!(summary.readings, 0, "the second run resumes at the end: nothing to read");
    assert_eq!(summary.uploads.map(|u| (u.uploads, u.behind)), Some((1, false)));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), local, "the resume leaves the file as it was");
    assert_eq!(s3.object("later", "weekly.csv").as_deref(), Some(local.as_bytes()));
}

/// A checkpoint save interrupted by a crash leaves its temporary file beside the checkpoint,
/// half written: the next run ignores it, resumes at the checkpoint, and replaces it.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_checkpoint_save_does_not_break_the_resume() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 40, 28).await;
    let dir = tempfile::tempdir().unwrap();
    let (output, reference) = (dir.path().join("out.txt"), dir.path().join("reference.txt"));
    support::consume(&tansu, &["--until-end", "-o", path(&output)]).await.unwrap();
    let checkpoint = std::fs::read_to_string(dir.path().join("out.txt.checkpoint")).unwrap();
    let staging = dir.path().join("out.txt.checkpoint.tmp");
    std::fs::write(&staging, &checkpoint[..checkpoint.len() / 2]).unwrap();

    tansu.produce("weather", 1, 30, 28).await;
    let resumed = support::consume(&tansu, &["--until-end", "-o", path(&output)]).await.unwrap();
    assert_eq!((resumed.readings, resumed.windows_written), (30, 1), "it resumes at the checkpoint");
    assert!(!staging.exists(), "the temporary file was replaced and renamed");
    support::consume(&tansu, &["--until-end", "--from-beginning", "-o", path(&reference)]).await.unwrap();
    assert_eq!(std::fs::read_to_string(&output).unwrap(), std::fs::read_to_string(&reference).unwrap());
}

/// A checkpoint that points past the end of its topic (the topic was deleted and created
/// again) stops the consumer with the way out, instead of silently reading nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_topic_needs_a_rebuild() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 60, 22).await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.txt");
    support::consume(&tansu, &["--until-end", "-o", path(&output)]).await.unwrap();
    tansu.delete_topic("weather");
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 10, 23).await;
    let err = support::consume(&tansu, &["--until-end", "-o", path(&output)]).await.unwrap_err();
    assert!(format!("{err:#}").contains("created again") && format!("{err:#}").contains("--from-beginning"), "{err:#}");
    let rebuilt = support::consume(&tansu, &["--until-end", "--from-beginning", "-o", path(&output)]).await.unwrap();
    assert_eq!(rebuilt.readings, 10);
}

/// A write that fails part-way (the file size limit here, as a full disk would) stops the
/// consumer with a clear error and commits nothing past what was durably written: the next
/// run, with room again, ends with exactly the file of an uninterrupted run.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_write_commits_nothing_past_the_durable_output() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 7000, 24).await;
    let dir = tempfile::tempdir().unwrap();
    let (reference, output) = (dir.path().join("reference.csv"), dir.path().join("out.csv"));
    let common = ["--window", "week", "--format", "csv", "--until-end", "--checkpoint-interval", "0"];
    support::consume(&tansu, &[&common[..], &["-o", path(&reference), "-g", "reference"]].concat()).await.unwrap();
    assert!(std::fs::metadata(&reference).unwrap().len() > 8192);

    // A file size limit of 8 KiB, with SIGXFSZ ignored so the write fails with EFBIG.
    let consumer = env!("CARGO_BIN_EXE_weather-consumer");
    let script = format!(
        "ulimit -f 8; trap '' XFSZ; exec {consumer} -b {} {} -o {} -g limited",
        tansu.bootstrap(),
        common.join(" "),
        path(&output)
    );
    let out = Command::new("bash").args(["-c", &script]).env("RUST_LOG", "error").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.csv.checkpoint")).unwrap()).unwrap();
    let durable = checkpoint["output_len"].as_u64().unwrap();
    assert!(durable <= 8192 && durable <= std::fs::metadata(&output).unwrap().len(), "checkpoint at {durable}");

    support::consume(&tansu, &[&common[..], &["-o", path(&output), "-g", "limited"]].concat()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&output).unwrap(), std::fs::read_to_string(&reference).unwrap());
}

/// When S3 comes back in the middle of a run, uploads resume by themselves and the object
/// catches up with the file, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn s3_coming_back_mid_run_catches_up() {
    testkit::use_test_credentials();
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 70, 25).await;
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("weekly.csv");
    let bootstrap = tansu.bootstrap();
    let argv = ["weather-consumer", "-b", &bootstrap, "--window", "week", "--format", "csv", "-o", path(&output)];
    let s3_flags = ["--s3-bucket", "back", "--s3-endpoint", &endpoint, "--upload-interval", "0.1"];
    let settings = Cli::try_parse_from(argv.into_iter().chain(s3_flags)).unwrap().settings().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(weather_consumer::run(settings, async {
        let _ = stopped.await;
    }));

    // The consumer follows the topic; wait until all ten weeks are written locally.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&output).map_or(0, |t| t.lines().count()) < 11 {
        assert!(Instant::now() < deadline, "the weeks were not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s3 = S3Server::start_on(port);
    s3.create_bucket("back");
    let file = std::fs::read(&output).unwrap();
    while s3.object("back", "weekly.csv").as_deref() != Some(file.as_slice()) {
        assert!(Instant::now() < deadline, "the object did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    let summary = run.await.unwrap().unwrap();
    let uploads = summary.uploads.unwrap();
    assert!(uploads.uploads >= 1 && !uploads.behind, "{uploads:?}");
}

/// An output directory where nothing can be created stops the consumer before it reads,
/// saying which file it could not create (the output's lock, its first).
#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_output_directory_is_reported() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 7, 26).await;
    let err = support::consume(&tansu, &["--until-end", "-o", "/proc/weather_aggregation.txt"]).await.unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("cannot lock /proc/weather_aggregation.txt.lock for writing /proc/weather_aggregation.txt: "),
        "{err}"
    );
}

/// Readings that retention deleted after the checkpoint stop the consumer with the way out
/// (Spark's failOnDataLoss); with --allow-data-loss it skips them and goes on.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_readings_stop_the_consumer_unless_allowed() {
    let tansu = Tansu::start_with(testkit::Storage::Sqlite);
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 60, 27).await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.txt");
    support::consume(&tansu, &["--until-end", "-o", path(&output)]).await.unwrap();
    tansu.produce("weather", 1, 40, 27).await;
    tansu.apply_retention("weather", 0, 80);

    let err = support::consume(&tansu, &["--until-end", "-o", path(&output)]).await.unwrap_err();
    assert!(format!("{err:#}").contains("60..80") && format!("{err:#}").contains("--allow-data-loss"), "{err:#}");
    let resumed = support::consume(&tansu, &["--until-end", "--allow-data-loss", "-o", path(&output)]).await.unwrap();
    assert_eq!(resumed.readings, 20, "it resumes at the earliest reading left");
}
