//! `weather-consumer status` against the real stack.

mod support;

use std::process::Command;

use testkit::{S3Server, Tansu};

/// After a v2 run and 30 more readings, `status` shows per partition the group's committed
/// offset, the end and the lag (30 in all), the last week written (14) and the last upload
/// (the whole file); `--json` says the same for scripts.
#[tokio::test(flavor = "multi_thread")]
async fn status_shows_lag_last_windows_and_upload() {
    let (tansu, s3) = (Tansu::start(), S3Server::start());
    tansu.create_topic("weather", 2);
    s3.create_bucket("status");
    let bootstrap = tansu.bootstrap();
    tansu.produce("weather", 1, 100, 31).await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("weekly.csv");
    let output = output.to_str().unwrap();
    let endpoint = s3.endpoint();
    let v2 = ["--preset", "v2", "--until-end", "-o", output, "--s3-bucket", "status", "--s3-endpoint", &endpoint];
    support::consume(&tansu, &v2).await.unwrap();
    tansu.produce("weather", 1, 30, 31).await;

    let status = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
            .args(["status", "-b", &bootstrap, "-o", output])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&status(&["--json"])).unwrap();
    let real_dir = dir.path().canonicalize().unwrap();
    let group = format!("weather-consumer-week-fahrenheit-csv:{}", real_dir.join("weekly.csv").display());
    assert_eq!(json["group"], group.as_str());
    assert_eq!(json["total_lag"], 30);
    let committed: i64 =
        json["partitions"].as_array().unwrap().iter().map(|p| p["committed"].as_i64().unwrap_or(0)).sum();
    assert_eq!(committed, 100);
    assert_eq!(json["output"]["last_windows"]["sensor-1"], 14);
    let file_len = std::fs::metadata(output).unwrap().len();
    assert_eq!(json["output"]["last_upload"]["bytes"], file_len);
    assert_eq!(json["output"]["last_upload"]["object"], "s3://status/weekly.csv");

    let text = status(&[]);
    assert!(text.contains("PARTITION") && text.contains("LAG") && text.contains("sensor-1 14"), "{text}");
    assert!(text.contains(&format!("last upload: s3://status/weekly.csv ({file_len} bytes)")), "{text}");

    // By group alone, as `kafka-consumer-groups --describe --group G`: the same offsets and
    // lag, and where the output's details would come from.
    let out = Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["status", "-b", &bootstrap, "-g", &group, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let by_group: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&by_group["partitions"], &by_group["total_lag"]), (&json["partitions"], &json["total_lag"]));
    assert!(by_group["output"].is_null(), "{by_group}");
    let out = Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["status", "-b", &bootstrap, "-g", &group])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("total") && text.contains("output: not given (-o OUTPUT shows"), "{text}");
}

/// `status` needs an output or a group, and says so by flag.
#[test]
fn status_needs_an_output_or_a_group() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_weather-consumer")).args(["status", "-b", "127.0.0.1:9"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--output"), "{stderr}");
}

/// Without a checkpoint and without --group, `status` says what it needs.
#[test]
fn status_without_a_checkpoint_asks_for_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("never-written.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["status", "-b", "127.0.0.1:9", "-o", output.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --group"));
}
