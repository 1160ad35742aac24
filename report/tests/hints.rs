//! weather-report points the right way, as a user runs it (the binary, on Tansu): a topic that is
//! not an aggregates topic and a missing one each fail at once, with exit code 1 and the way to
//! the right topic; a run that writes files says where.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use testkit::Tansu;
use weather_common::aggregate::{Aggregate, WindowKey};
use weather_common::units::{Tenths, Unit};

/// Well within the report's own waits (a 30 s stall, a 60 s connect timeout): an error the
/// broker's first answers show comes before either.
const AT_ONCE: Duration = Duration::from_secs(15);

/// Runs the report binary with these flags against `tansu`: its output and how long it took.
fn report(tansu: &Tansu, dir: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weather-report"))
        .args(["-b", &tansu.bootstrap(), "--quiet"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (out, started.elapsed())
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The readings topic given where the aggregates topic belongs: exit code 1 at once, saying it
/// is not an aggregates topic and naming the one that is; no file is written.
#[tokio::test(flavor = "multi_thread")]
async fn the_readings_topic_is_not_an_aggregates_topic() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    tansu.create_topic("weather.aggregates", 3);
    tansu.create_topic("weather.aggregates.state", 1);
    tansu.produce("weather", 1, 100, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = report(&tansu, dir.path(), &["-t", "weather", "--csv", "r.csv", "--html", "r.html"]);
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(took < AT_ONCE, "took {took:?}:\n{text}");
    assert!(
        text.contains("`weather` is not an aggregates topic (the readings topic, perhaps): none of its 100 records")
            && text.contains("(not-json 100)")
            && text.contains(
                "The aggregates topic on this broker is `weather.aggregates` (weather-report -t weather.aggregates)"
            ),
        "{text}"
    );
    assert!(!dir.path().join("r.csv").exists() && !dir.path().join("r.html").exists(), "nothing written");
}

/// A topic that does not exist yet: exit code 1 within seconds, pointing to the consumer's
/// --to-topic that publishes it, not to creating it by hand.
#[test]
fn a_missing_topic_points_to_the_consumer() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = report(&tansu, dir.path(), &["-t", "weather.aggregates"]);
    let text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(took < AT_ONCE, "took {took:?}:\n{text}");
    assert!(
        text.contains("topic `weather.aggregates` does not exist on ")
            && text.contains("`weather-consumer --to-topic weather.aggregates` publishes the windows it writes"),
        "{text}"
    );
    assert!(!text.contains("create it first") && !text.contains("tansu topic create"), "{text}");
}

/// A run that writes the CSV and the page says where each was written.
#[test]
fn the_files_written_are_named() {
    let tansu = Tansu::start();
    tansu.create_topic("weather.aggregates", 1);
    let week = Aggregate {
        key: WindowKey { sensor_id: "sensor-1".into(), window_days: 7, window_id: 1 },
        unit: Unit::Fahrenheit,
        avg_temp: Tenths(686),
        avg_co: 700,
        avg_humidity: 50,
        readings: 7,
        first_record_id: 1,
        last_record_id: 7,
    };
    let (key, value) = (week.key.to_json(), week.to_json());
    tansu.send_raw("weather.aggregates", &[(Some(key.as_slice()), Some(value.as_slice()))]);
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = report(&tansu, dir.path(), &["-t", "weather.aggregates", "--csv", "r.csv", "--html", "r.html"]);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    let dir = dir.path().canonicalize().unwrap();
    for line in [
        format!("wrote the table as CSV: {}", dir.join("r.csv").display()),
        format!("wrote the charts as HTML: {}", dir.join("r.html").display()),
    ] {
        assert!(text.contains(&line), "`{line}` in:\n{text}");
    }
}
