//! The walkthrough on the real local stack: the sensor publishes to Tansu, version 1 and
//! version 2 of the consumer aggregate, version 2 uploads to s3s-fs. Every output is checked
//! against an oracle that applies the spec's formulas to the readings actually in the topic.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::oracle;
use testkit::{S3Server, Tansu};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The spec's formulas ([`oracle::windows`]) on the readings in the topic: per sensor the rows
/// `id,avg_temp,avg_co,avg_humidity` of the complete windows, in window order.
fn oracle(tansu: &Tansu, topic: &str, size: u64, fahrenheit: bool) -> BTreeMap<String, Vec<String>> {
    oracle::windows(&tansu.read_all(topic), size, fahrenheit, false)
}

/// The CSV rows of a multi-sensor output, grouped by sensor (rows of one sensor keep their
/// order; sensors interleave by completion, which depends on partition timing).
fn csv_rows_by_sensor(csv: &str) -> BTreeMap<String, Vec<String>> {
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let (sensor, rest) = line.split_once(',').unwrap();
        rows.entry(sensor.to_string()).or_default().push(rest.to_string());
    }
    rows
}

/// Version 1 writes the walkthrough's one-line TXT file, byte for byte what the spec's
/// formulas give, and leaves out the month that is still incomplete.
#[tokio::test(flavor = "multi_thread")]
async fn v1_writes_the_walkthrough_txt() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    tansu.produce("weather", 1, 95, 11).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("weather_aggregation.txt");
    let summary = support::consume(&tansu, &["--preset", "v1", "--until-end", "-o", path(&out)]).await.unwrap();
    let expected: String =
        oracle(&tansu, "weather", 30, false)["sensor-1"].iter().map(|row| format!("{row},")).collect();
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written, expected);
    assert!(written.starts_with("1,") && written.contains(",3,") && !written.contains('\n'), "{written}");
    assert_eq!((summary.readings, summary.windows_written), (95, 3));
}

/// The replay exercise: version 1, then version 2 recomputes the whole history from the
/// beginning under the new rules (weekly, °F, CSV), and the object in S3 equals the file.
#[tokio::test(flavor = "multi_thread")]
async fn v2_replays_the_whole_history_and_uploads_it() {
    let (tansu, s3) = (Tansu::start(), S3Server::start());
    tansu.create_topic("weather", 3);
    s3.create_bucket("weather-bucket");
    tansu.produce("weather", 3, 100, 12).await;
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (dir.path().join("v1.txt"), dir.path().join("v2.csv"));
    support::consume(&tansu, &["--preset", "v1", "--sensor-column", "--until-end", "-o", path(&v1)]).await.unwrap();
    let endpoint = s3.endpoint();
    let v2_args = ["--preset", "v2", "--sensor-column", "--until-end", "-o", path(&v2)];
    let s3_args = ["--s3-bucket", "weather-bucket", "--s3-endpoint", &endpoint, "--upload-interval", "0"];
    let summary = support::consume(&tansu, &[&v2_args[..], &s3_args[..]].concat()).await.unwrap();

    let csv = std::fs::read_to_string(&v2).unwrap();
    assert!(csv.starts_with("sensor_id,week_id,avg_temp,avg_co,avg_humidity\n"), "{csv}");
    let expected = oracle(&tansu, "weather", 7, true);
    assert_eq!(csv_rows_by_sensor(&csv), expected);
    for sensor in ["sensor-1", "sensor-2", "sensor-3"] {
        let weeks: Vec<&str> = expected[sensor].iter().map(|r| r.split(',').next().unwrap()).collect();
        assert_eq!(weeks, (1..=14).map(|w| w.to_string()).collect::<Vec<_>>(), "{sensor} must cover weeks 1 to 14");
    }
    assert_eq!(s3.object("weather-bucket", "v2.csv").as_deref(), Some(csv.as_bytes()), "the object equals the file");
    assert_eq!(summary.uploads.map(|u| u.behind), Some(false));
    assert_eq!(summary.windows_written, 3 * 14);
}

/// A consumer that stops and comes back resumes at its checkpoint: the months written
/// while it was down are added once, and the result equals a rebuild from the beginning.
#[tokio::test(flavor = "multi_thread")]
async fn restart_resumes_without_duplicates() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    tansu.produce("weather", 1, 50, 13).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v1.txt");
    let first = support::consume(&tansu, &["--until-end", "-o", path(&out)]).await.unwrap();
    assert_eq!((first.readings, first.windows_written), (50, 1));
    tansu.produce("weather", 1, 70, 13).await;
    let second = support::consume(&tansu, &["--until-end", "-o", path(&out)]).await.unwrap();
    assert_eq!((second.readings, second.windows_written), (70, 3), "only the new readings are read");
    let resumed = std::fs::read(&out).unwrap();

    let rebuilt_path = dir.path().join("rebuilt.txt");
    support::consume(&tansu, &["--until-end", "--from-beginning", "-o", path(&rebuilt_path)]).await.unwrap();
    assert_eq!(
        String::from_utf8(resumed.clone()).unwrap(),
        String::from_utf8(std::fs::read(&rebuilt_path).unwrap()).unwrap()
    );
    let expected: String = oracle(&tansu, "weather", 30, false)["sensor-1"].iter().map(|r| format!("{r},")).collect();
    assert_eq!(String::from_utf8(resumed).unwrap(), expected);
    // Rebuilding in place replaces the file; it never appends a second copy.
    support::consume(&tansu, &["--until-end", "--from-beginning", "-o", path(&out)]).await.unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
}

/// Changing the rules for an existing output without a rebuild is refused, with the way out,
/// and leaves the file and its checkpoint as they were, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn new_rules_need_a_rebuild() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 70, 14).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let first = support::consume(&tansu, &["--until-end", "-o", path(&out)]).await.unwrap();
    assert_eq!(first.windows_written, 2);
    let checkpoint = weather_consumer::checkpoint::Checkpoint::path_for(&out);
    let (written, checkpointed) = (std::fs::read(&out).unwrap(), std::fs::read(&checkpoint).unwrap());
    let celsius: String = oracle(&tansu, "weather", 30, false)["sensor-1"].iter().map(|r| format!("{r},")).collect();
    assert_eq!(String::from_utf8(written.clone()).unwrap(), celsius);

    tansu.produce("weather", 1, 30, 14).await; // a month the refused run must not touch
    let err = support::consume(&tansu, &["--until-end", "--unit", "fahrenheit", "-o", path(&out)]).await.unwrap_err();
    assert!(format!("{err:#}").contains("--from-beginning"), "{err:#}");
    assert_eq!(std::fs::read(&out).unwrap(), written, "the refusal changed the file");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), checkpointed, "the refusal changed the checkpoint");

    let rebuilt =
        support::consume(&tansu, &["--until-end", "--unit", "fahrenheit", "--from-beginning", "-o", path(&out)])
            .await
            .unwrap();
    assert_eq!((rebuilt.readings, rebuilt.windows_written), (100, 3));
    let fahrenheit: String = oracle(&tansu, "weather", 30, true)["sensor-1"].iter().map(|r| format!("{r},")).collect();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), fahrenheit);
}

/// Without --sensor-column, a second sensor stops the consumer with advice instead of
/// writing rows nobody could tell apart.
#[tokio::test(flavor = "multi_thread")]
async fn several_sensors_need_the_sensor_column() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 2, 7, 15).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let err = support::consume(&tansu, &["--until-end", "--window", "week", "-o", path(&out)]).await.unwrap_err();
    assert!(format!("{err:#}").contains("--sensor-column"), "{err:#}");
}

/// Malformed messages never stop the consumer: one of every category the README lists is
/// counted under it and kept in the dead-letter topic with its original key and bytes, the
/// reason, and where it came from; the good readings are aggregated as if the bad ones were
/// not there (checked against the oracle), and the output is not touched by them.
#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_are_kept_aside() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 10, 16).await;
    let good = tansu.read_all("weather");
    assert_eq!(good.len(), 10);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    // --emit-partial writes week 2 (days 8 to 10) as partial: a reading of it is then late.
    let args = ["--until-end", "--window", "week", "--format", "csv", "--emit-partial", "-o", path(&out)];
    let first = support::consume(&tansu, &args).await.unwrap();
    assert_eq!((first.readings, first.windows_written, first.partial_windows), (10, 1, 1));
    assert!(first.rejected.is_empty(), "{:?}", first.rejected);
    let expected: String =
        oracle::windows(&good, 7, false, true)["sensor-1"].iter().map(|r| format!("{r}\n")).collect();
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written, format!("week_id,avg_temp,avg_co,avg_humidity\n{expected}"));

    let duplicate = good[3].value.clone().unwrap();
    let oversized = vec![b'x'; 1 << 20];
    let reading = |fields: &str| format!(r#"{{"sensor_id":"sensor-1",{fields}}}"#).into_bytes();
    let (missing, wrong_type, out_of_bounds, late) = (
        reading(r#""record_id":8,"temperature":1.0,"humidity":5"#),
        reading(r#""record_id":8,"temperature":"warm","CO_concentration":60,"humidity":5"#),
        reading(r#""record_id":8,"temperature":99.0,"CO_concentration":60,"humidity":5"#),
        reading(r#""record_id":11,"temperature":20.0,"CO_concentration":500,"humidity":50"#),
    );
    let invalid_id = br#"{"sensor_id":"sensor 1","record_id":8,"temperature":1.0,"CO_concentration":60,"humidity":5}"#;
    /// Key, value, category.
    type Bad<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, &'a str);
    let bad: Vec<Bad<'_>> = vec![
        (Some(b"sensor-1"), Some(b"\xff\xfe\xfd"), "not-utf8"),
        (Some(b"sensor-1"), Some(b"temperature=21"), "not-json"),
        (Some(b"sensor-1"), Some(&missing), "missing-field"),
        (None, Some(&wrong_type), "wrong-type"),
        (Some(b"sensor-1"), Some(&out_of_bounds), "out-of-bounds"),
        (Some(b"sensor-1"), None, "empty"),
        (Some(b"k"), Some(b"null"), "empty"),
        (Some(b"sensor-1"), Some(&oversized), "oversized"),
        (Some(b"sensor 1"), Some(invalid_id), "invalid-sensor-id"),
        (Some(b"sensor-1"), Some(&duplicate), "duplicate"),
        (Some(b"sensor-1"), Some(&late), "late"),
    ];
    let raw: Vec<testkit::RawMessage<'_>> = bad.iter().map(|&(key, value, _)| (key, value)).collect();
    tansu.send_raw("weather", &raw);
    let second = support::consume(&tansu, &args).await.unwrap();
    assert_eq!((second.readings, second.windows_written, second.partial_windows), (bad.len() as u64, 0, 0));
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, _, category) in &bad {
        *counts.entry(category).or_default() += 1;
    }
    let categories = [
        "not-utf8",
        "not-json",
        "missing-field",
        "wrong-type",
        "out-of-bounds",
        "empty",
        "oversized",
        "invalid-sensor-id",
        "duplicate",
        "late",
    ];
    assert_eq!(counts.len(), categories.len(), "one of every category the README lists");
    assert!(categories.iter().all(|c| counts.contains_key(c)));
    assert_eq!(second.rejected.iter().map(|(c, n)| (*c, *n)).collect::<BTreeMap<_, _>>(), counts);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written, "bad messages changed the output");

    let dead = tansu.read_all("weather.dlq");
    assert_eq!(dead.len(), bad.len());
    for (i, (letter, &(key, value, category))) in dead.iter().zip(&bad).enumerate() {
        let h = &letter.headers;
        assert_eq!(letter.key.as_deref(), key, "{category}: the original key is kept");
        assert_eq!(letter.value.as_deref(), value, "{category}: the original bytes are kept");
        assert_eq!(h["weather.category"], category, "{h:?}");
        assert!(!h["weather.reason"].is_empty(), "{h:?}");
        assert_eq!(h["weather.source.topic"], "weather", "{h:?}");
        assert_eq!(h["weather.source.partition"], "0", "{h:?}");
        assert_eq!(h["weather.source.offset"], (good.len() + i).to_string(), "{category}: {h:?}");
    }
    assert_eq!(dead[2].headers["weather.reason"], "field `CO_concentration` is missing");
    assert_eq!(dead[9].headers["weather.reason"], "duplicate record_id 4 of sensor-1");
}

/// A reading that arrives after its window was written (here as partial, with
/// --emit-partial) is kept aside as late, and never rewrites that window.
#[tokio::test(flavor = "multi_thread")]
async fn late_readings_never_rewrite_a_written_window() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 10, 17).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let args = ["--until-end", "--window", "week", "--format", "csv", "--emit-partial", "-o", path(&out)];
    let first = support::consume(&tansu, &args).await.unwrap();
    assert_eq!((first.windows_written, first.partial_windows), (1, 1));
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().count(), 3, "{written}");

    tansu.produce("weather", 1, 1, 17).await; // record_id 11, in the partial week 2
    let second = support::consume(&tansu, &args).await.unwrap();
    assert_eq!(second.rejected.get("late"), Some(&1));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written, "week 2 is not rewritten");
    let late = tansu.read_all("weather.dlq");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].headers["weather.category"], "late");
    assert!(late[0].headers["weather.reason"].contains("record_id 11"), "{:?}", late[0].headers);
}
