//! The lake as its users read it: DuckDB and pyarrow (not our writer) read every file the
//! archive wrote, and find each valid reading of the topic exactly once, with its values, in the
//! file of its hour, in offset order.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::*;
use testkit::Tansu;

/// A batch run archives every valid reading once and keeps the bad ones aside; a second run
/// adds only what came since; a rebuild writes the very same files again.
#[tokio::test(flavor = "multi_thread")]
async fn the_lake_holds_every_valid_reading_once() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    tansu.produce("weather", 4, 1_500, 7).await;
    tansu.send_raw("weather", &[(Some(b"sensor-1"), Some(b"not json")), (None, Some(br#"{"record_id":1}"#))]);
    let lake = tempfile::tempdir().unwrap();
    let summary = archive(&tansu, lake.path(), &["--until-end", "--max-rows", "700"]);
    assert!(summary.starts_with("readings archived:  6,000 in "), "{summary}");
    assert!(summary.contains("readings rejected:  2 (") && summary.contains("kept in `weather.dlq`"), "{summary}");
    let (expected, invalid) = topic_readings(&tansu, "weather");
    assert_eq!((expected.len(), invalid), (6_000, 2));
    let first = assert_lake_holds(lake.path(), &expected);
    assert!(first.files.iter().all(|f| f["rows"].as_i64().unwrap() <= 700), "--max-rows is a file's most");
    assert_eq!(tansu.read_all("weather.dlq").len(), 2);

    // Nothing new: nothing written. Then more readings: only they are added.
    let again = archive(&tansu, lake.path(), &["--until-end", "--max-rows", "700"]);
    assert!(again.starts_with("readings archived:  0 in ") && again.contains("files written:      0 "), "{again}");
    tansu.produce("weather", 4, 500, 7).await;
    let more = archive(&tansu, lake.path(), &["--until-end", "--max-rows", "700"]);
    assert!(more.starts_with("readings archived:  2,000 in "), "{more}");
    let (expected, _) = topic_readings(&tansu, "weather");
    assert_lake_holds(lake.path(), &expected);

    // A rebuild writes the same files: same names, same bytes, and no others.
    let before = files(lake.path());
    let rebuilt = archive(&tansu, lake.path(), &["--until-end", "--max-rows", "700", "--from-beginning"]);
    assert!(rebuilt.starts_with("readings archived:  8,000 in "), "{rebuilt}");
    assert_eq!(files(lake.path()), before);

    // A rebuild under another layout replaces the files it rewrites, and leaves no other.
    let by_day = archive(
        &tansu,
        lake.path(),
        &["--until-end", "--max-rows", "700", "--from-beginning", "--partition-by", "day"],
    );
    assert!(by_day.contains(&format!("{} of earlier runs replaced", before.len())), "{by_day}");
    let lake_by_day = assert_lake_holds(lake.path(), &expected);
    assert!(
        lake_by_day.files.iter().all(|f| !f["path"].as_str().unwrap().contains("hour=")),
        "only the day layout is left"
    );
}

/// A reading stamped in an hour already closed on its partition goes into a file of its own
/// hour, never into the file open at the time; the summary counts such late files. By day, the
/// same readings make fewer files.
#[tokio::test(flavor = "multi_thread")]
async fn late_readings_land_in_their_own_hour() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    // 2025-11-29T08:00:00Z, and readings of hours 08, 08, 09, 08 (late), 10, 09 (late): hours
    // of one digit and of two, so the directories' zero-padding (`hour=08`) is pinned too.
    let eight = 1_764_403_200_000_i64;
    let hours = [0, 0, 1, 0, 2, 1];
    send_readings_at(&tansu, &hours.map(|h| eight + h * 3_600_000 + 1_000));
    let (expected, _) = topic_readings(&tansu, "weather");
    let by_hour = tempfile::tempdir().unwrap();
    let summary = archive(&tansu, by_hour.path(), &["--until-end"]);
    assert!(summary.contains("files written:      5 to ") && summary.contains(", 2 late\n"), "{summary}");
    let lake = assert_lake_holds(by_hour.path(), &expected);
    let per_hour = |hour: &str| lake.files.iter().filter(|f| f["path"].as_str().unwrap().contains(hour)).count();
    assert_eq!((per_hour("hour=08/"), per_hour("hour=09/"), per_hour("hour=10/")), (2, 2, 1));
    let by_day = tempfile::tempdir().unwrap();
    let summary = archive(&tansu, by_day.path(), &["--until-end", "--partition-by", "day"]);
    assert!(summary.contains("files written:      1 to ") && summary.contains(", 0 late\n"), "{summary}");
    assert_lake_holds(by_day.path(), &expected);
}

/// The lake in a bucket: the same files, each one PUT, and the state beside them.
#[tokio::test(flavor = "multi_thread")]
async fn the_lake_in_s3_holds_every_valid_reading_once() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    tansu.produce("weather", 3, 1_000, 3).await;
    let s3 = testkit::S3Server::start();
    s3.create_bucket("lake");
    let summary = archived(
        archive_command(&tansu, &["--s3-bucket", "lake", "--s3-endpoint", &s3.endpoint(), "--s3-prefix", "archive"])
            .args(["--until-end", "--max-rows", "400"]),
    );
    assert!(summary.contains(" to s3://lake/archive at http://127.0.0.1:"), "{summary}");
    let (expected, _) = topic_readings(&tansu, "weather");
    // Read through the S3 API (listing and GET), not from the server's directory.
    assert_view_holds(read_lake_in_s3(&s3.endpoint(), "lake/archive"), &expected);
    for p in 0..3 {
        let state: Value =
            serde_json::from_slice(&s3.object("lake", &format!("archive/_state/weather-{p}.json")).unwrap()).unwrap();
        assert_eq!(state["pending"], Value::Null, "{state}");
    }
}

/// An S3-compatible server may hold an object whose stored checksum disagrees with its bytes:
/// s3s-fs does after a PUT whose client was killed between putting the bytes in place and
/// recording their checksum (the S3 crash test ran into it). The archive still reads its
/// state there and goes on: on a server that is not AWS it asks for checksums only where S3
/// requires them.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_whose_stored_checksum_disagrees_is_still_read() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce("weather", 1, 200, 2).await;
    let s3 = testkit::S3Server::start();
    s3.create_bucket("lake");
    let endpoint = s3.endpoint();
    let run =
        || archived(archive_command(&tansu, &["--s3-bucket", "lake", "--s3-endpoint", &endpoint]).arg("--until-end"));
    run();
    // The state written again by a client with the SDK's default checksums (s3s-fs records
    // a CRC32 beside it), then its bytes changed as such a killed PUT leaves them.
    let credentials = Credentials::new(testkit::S3_ACCESS_KEY, testkit::S3_SECRET_KEY, None, None, "test");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .http_client(weather_common::s3::http_client())
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let key = "_state/weather-0.json";
    let state = s3.object("lake", key).unwrap();
    client.put_object().bucket("lake").key(key).body(state.clone().into()).send().await.unwrap();
    std::fs::write(s3.bucket_dir("lake").join(key), [state.as_slice(), b"\n"].concat()).unwrap();
    let read = async { client.get_object().bucket("lake").key(key).send().await.ok()?.body.collect().await.ok() };
    assert!(read.await.is_none(), "a client that checks the checksum reads the state: they do not disagree");

    tansu.produce("weather", 1, 400, 2).await;
    run();
    let (expected, _) = topic_readings(&tansu, "weather");
    assert!(expected.len() > 400, "the second run had readings to archive: {}", expected.len());
    assert_lake_holds(&s3.bucket_dir("lake"), &expected);
}

/// `--until time:` archives what was stamped before the time, in files of their hours; the
/// next run resumes there and adds the rest.
#[tokio::test(flavor = "multi_thread")]
async fn until_a_time_bounds_the_archive() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    // 2025-11-29T10:00:00Z: readings at 10:10, 10:40, 11:10, 11:40, 12:10, 12:40.
    let ten = 1_764_410_400_000_i64;
    let stamps: Vec<i64> = (1..=6).map(|i| ten + i * 30 * 60_000 - 20 * 60_000).collect();
    send_readings_at(&tansu, &stamps);
    let (all, _) = topic_readings(&tansu, "weather");
    let lake = tempfile::tempdir().unwrap();
    let summary = archive(&tansu, lake.path(), &["--until", "time:2025-11-29T11:00:00Z"]);
    assert!(summary.starts_with("readings archived:  2 in "), "{summary}");
    let before_eleven: std::collections::BTreeMap<_, _> =
        all.iter().filter(|(_, r)| r.event_ms < ten + 3_600_000).map(|(k, v)| (*k, v.clone())).collect();
    assert_lake_holds(lake.path(), &before_eleven);
    let summary = archive(&tansu, lake.path(), &["--until-end"]);
    assert!(summary.starts_with("readings archived:  4 in "), "{summary}");
    assert_lake_holds(lake.path(), &all);
}

/// Two instances on one lake without a group: the second takes every partition over, and the
/// first, finding its next write refused, writes nothing more and stops saying why; the lake
/// still holds every reading once.
#[test]
fn a_second_instance_takes_over_and_fences_the_first() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    tansu.produce_in_small_batches(5_000, 4);
    let (expected, _) = topic_readings(&tansu, "weather");
    let lake = tempfile::tempdir().unwrap();
    let mut flags = vec!["--max-rows", "500", "-o", lake.path().to_str().unwrap()];
    flags.extend(testkit::THROTTLE);
    let first = archive_command(&tansu, &flags)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while file_count(lake.path()) == 0 {
        assert!(std::time::Instant::now() < deadline, "the first instance published nothing");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    archived(archive_command(&tansu, &flags).arg("--until-end"));
    let first = first.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success(), "the first instance stops: {said}");
    assert!(said.contains("was taken over by another instance") && said.contains("every partition"), "{said}");
    assert_lake_holds(lake.path(), &expected);
}

/// Sends sensor-1's readings 1, 2, ... to partition 0 of `weather`, stamped (ms) as given.
fn send_readings_at(tansu: &Tansu, stamps: &[i64]) {
    let values: Vec<String> = (1..=stamps.len())
        .map(|id| {
            format!(
                r#"{{"sensor_id":"sensor-1","record_id":{id},"temperature":20.5,"CO_concentration":700,"humidity":55}}"#
            )
        })
        .collect();
    let messages: Vec<(i32, &[u8], &[u8], i64)> =
        values.iter().zip(stamps).map(|(v, &at)| (0, &b"sensor-1"[..], v.as_bytes(), at)).collect();
    tansu.send_stamped("weather", &messages);
}

/// The file check itself: a file whose last row (or any other) is of another partition is
/// caught, as is one out of offset order or named after another offset.
#[test]
fn the_file_check_catches_a_stranger_row() {
    let file = |rows: &[(i32, i64)]| {
        BTreeMap::from([(
            "topic=weather/date=2026-01-01/hour=00/weather+1+00000000000000000010.parquet".to_string(),
            rows.to_vec(),
        )])
    };
    check_files(&file(&[(1, 10), (1, 11), (1, 12)]));
    for broken in [
        &[(1, 10), (1, 11), (2, 12)][..],
        &[(1, 10), (2, 11), (1, 12)],
        &[(1, 10), (1, 12), (1, 11)],
        &[(1, 11), (1, 12)],
    ] {
        let caught = std::panic::catch_unwind(|| check_files(&file(broken))).is_err();
        assert!(caught, "{broken:?} was not caught");
    }
}
