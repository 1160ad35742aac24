//! Where a restarted sensor continues, against a real broker: after the highest `record_id`
//! of its walk, whatever else was written to the topic after it, found by reading only the
//! tail of the partition the sensor writes to.

use std::collections::BTreeMap;
use std::process::Command;

use testkit::Tansu;
use weather_common::Reading;

/// Runs the sensor binary with these flags against `tansu`; returns its log (stderr).
fn sensor(tansu: &Tansu, flags: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weather-producer"))
        .args(["-b", &tansu.bootstrap(), "--rate", "0", "--quiet"])
        .args(flags)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "weather-producer {flags:?}:\n{log}");
    log
}

/// The record ids of each sensor in the topic, in offset order.
fn record_ids(tansu: &Tansu) -> BTreeMap<String, Vec<u64>> {
    let mut ids: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in tansu.read_all("weather") {
        let reading = Reading::parse(record.value.as_deref(), record.key.as_deref()).unwrap();
        ids.entry(reading.sensor_id.to_string()).or_default().push(reading.record_id);
    }
    ids
}

/// A stray copy of an old reading at the end of the topic (a replayed message, a second
/// writer) does not take the walk back: the sensor continues after its highest record id,
/// says so, and names the stray.
#[test]
fn a_stray_older_reading_does_not_reset_the_walk() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    sensor(&tansu, &["--count", "50", "--seed", "3"]);
    let first = tansu.read_all("weather").into_iter().find(|r| r.offset == 0).expect("the first reading");
    tansu.send_raw("weather", &[(first.key.as_deref(), first.value.as_deref())]);

    let log = sensor(&tansu, &["--count", "50", "--seed", "3"]);
    assert!(
        log.contains("sensor-1 continues after its highest record_id 50 (partition")
            && log.contains("repeats record_id 1 and is not where its walk stopped"),
        "{log}"
    );
    let ids = &record_ids(&tansu)["sensor-1"];
    let mut expected: Vec<u64> = (1..=50).collect();
    expected.push(1);
    expected.extend(51..=100);
    assert_eq!(ids, &expected, "the walk goes on at 51, after the stray");
}

/// With several sensors over several partitions, each sensor is looked for in its own
/// partition only, and found in that partition's last 1,024 records: the look-up does not
/// read the topic back to its beginning (it did, for sensors of other partitions).
#[test]
fn each_sensor_is_found_in_the_tail_of_its_own_partition() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    sensor(&tansu, &["--count", "2000", "--sensors", "8", "--seed", "4"]);
    let log = sensor(&tansu, &["--count", "1", "--sensors", "8", "--seed", "4"]);
    assert!(!log.contains("looking for where"), "only the first chunk of each partition was read:\n{log}");
    for i in 1..=8 {
        assert!(log.contains(&format!("sensor-{i} continues after record_id 2000 (partition ")), "{log}");
    }
    let records = tansu.read_all("weather");
    for (sensor, ids) in record_ids(&tansu) {
        assert_eq!(ids, (1..=2001).collect::<Vec<_>>(), "{sensor}");
        let partitions: Vec<i32> =
            records.iter().filter(|r| r.key.as_deref() == Some(sensor.as_bytes())).map(|r| r.partition).collect();
        assert!(partitions.windows(2).all(|w| w[0] == w[1]), "{sensor} writes to one partition");
    }
}
