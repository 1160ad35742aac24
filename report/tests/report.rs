//! weather-report on a real broker (Tansu): aggregates published with a plain producer,
//! overwrites, tombstones and bad records among them, read back as a table, printed, as CSV
//! and as charts.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use support::week;
use testkit::Tansu;
use weather_common::aggregate::{Aggregate, WindowKey};
use weather_common::units::Unit;

/// Runs weather-report with these flags against `tansu`, in-process, as its command line would.
async fn report(tansu: &Tansu, args: &[&str]) -> anyhow::Result<weather_report::Report> {
    let bootstrap = tansu.bootstrap();
    let argv = ["weather-report", "-b", &bootstrap, "--connect-timeout", "20", "--quiet"];
    let settings = weather_report::Cli::try_parse_from(argv.into_iter().chain(args.iter().copied()))?.settings()?;
    weather_report::run(settings, std::future::pending()).await
}

/// The report of `aggregates` with its table written as CSV and its charts as HTML, in a
/// directory of its own (kept as long as the returned guard).
async fn report_with_files(tansu: &Tansu) -> (weather_report::Report, PathBuf, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (csv, html) = (dir.path().join("table.csv"), dir.path().join("report.html"));
    let report = report(tansu, &["-t", "aggregates", "--csv", csv.to_str().unwrap(), "--html", html.to_str().unwrap()])
        .await
        .unwrap();
    (report, csv, html, dir)
}

fn put(a: &Aggregate) -> (Vec<u8>, Option<Vec<u8>>) {
    (a.key.to_json(), Some(a.to_json()))
}

/// Creates `topic` as the consumer's topic sink does, compacted, and checks that the broker
/// says so.
async fn create_compacted(tansu: &Tansu, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", tansu.bootstrap()).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    for result in admin.create_topics([&new], &options).await.unwrap() {
        result.unwrap();
    }
    let described = admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options).await.unwrap();
    let config = described.into_iter().next().unwrap().unwrap();
    let policy = config.get("cleanup.policy").and_then(|entry| entry.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"), "the broker describes {topic} as compacted");
}

/// The topic read as a table: the latest value per window, tombstones delete, bad records
/// (not JSON, wrong key, key and value of other windows, a bad value for a window already in
/// the table) are reported with their partition and offset and change nothing. The CSV is the
/// expected table, and the page has one temperature chart per sensor with a point per window.
#[tokio::test]
async fn the_report_is_the_latest_value_per_window() {
    let tansu = Tansu::start();
    create_compacted(&tansu, "aggregates", 3).await;
    let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for (id, temp) in [(1, 686), (2, 701), (3, -5), (4, 0), (5, 1002)] {
        records.push(put(&week(1, id, temp)));
    }
    records.push(put(&Aggregate { readings: 3, last_record_id: 38, ..week(1, 6, 500) }));
    for (id, temp) in [(1, 600), (2, 610), (3, 620), (4, 630)] {
        records.push(put(&week(2, id, temp)));
    }
    for (id, temp) in [(2, 400), (3, 410)] {
        records.push(put(&week(3, id, temp)));
    }
    // Overwrites: a rebuilt week, and a partial week completed.
    records.push(put(&week(1, 2, 715)));
    records.push(put(&week(1, 6, 555)));
    // Tombstones: one deletes a week, one names a week that never was.
    records.push((week(2, 3, 0).key.to_json(), None));
    records.push((week(3, 9, 0).key.to_json(), None));
    let bad: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
        (b"sensor-1".to_vec(), Some(week(1, 1, 0).to_json())),
        (br#"{"sensor_id":"sensor-1"}"#.to_vec(), Some(week(1, 1, 0).to_json())),
        (week(1, 4, 0).key.to_json(), Some(week(1, 5, 0).to_json())),
        (week(1, 1, 0).key.to_json(), Some(b"not json".to_vec())),
    ];
    records.extend(bad.iter().cloned());
    let raw: Vec<testkit::RawMessage<'_>> = records.iter().map(|(k, v)| (Some(k.as_slice()), v.as_deref())).collect();
    tansu.send_raw("aggregates", &raw);
    // Where the bad records landed, as the broker has them.
    let positions: Vec<(i32, i64)> = tansu
        .read_all("aggregates")
        .into_iter()
        .filter(|r| bad.iter().any(|(k, v)| r.key.as_ref() == Some(k) && r.value == *v))
        .map(|r| (r.partition, r.offset))
        .collect();
    assert_eq!(positions.len(), bad.len());

    let (report, csv, html, _dir) = report_with_files(&tansu).await;
    let text = report.to_string();
    println!("{text}");

    assert!(text.contains(&format!("read `aggregates`: {} records from 3 partitions", records.len())), "{text}");
    assert!(text.contains("table: 11 windows (2 overwritten by a later value, 1 deleted by a tombstone)"), "{text}");
    assert!(text.contains("bad records skipped: 4 (disagree 1, not-json 2, wrong-key 1)"), "{text}");
    for (partition, offset) in &positions {
        assert!(text.contains(&format!("  partition {partition}, offset {offset}: ")), "{partition}/{offset}: {text}");
    }
    assert!(text
        .contains("7-day windows (week_id), avg_temp in °F, avg_co in ppm, avg_humidity in %: 3 sensors, 11 windows"));
    let row = |sensor: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.starts_with(&format!("{sensor} "))).unwrap_or_else(|| panic!("{text}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    // sensor, windows, first, last, missing, then min / mean / max of temperature, CO, humidity
    assert_eq!(
        row("sensor-1"),
        ["sensor-1", "6", "1", "6", "0", "-0.5", "49.2", "100.2", "101", "103.5", "106", "11", "13.5", "16"]
    );
    assert_eq!(row("sensor-2")[..5], ["sensor-2", "3", "1", "4", "1"]);
    assert_eq!(row("sensor-3")[..5], ["sensor-3", "2", "2", "3", "0"]);
    assert!(text.contains("missing in sensor-2: 3\n"), "{text}");

    let expected = "sensor_id,week_id,avg_temp,avg_co,avg_humidity\n\
                    sensor-1,1,68.6,101,11\n\
                    sensor-1,2,71.5,102,12\n\
                    sensor-1,3,-0.5,103,13\n\
                    sensor-1,4,0.0,104,14\n\
                    sensor-1,5,100.2,105,15\n\
                    sensor-1,6,55.5,106,16\n\
                    sensor-2,1,60.0,201,21\n\
                    sensor-2,2,61.0,202,22\n\
                    sensor-2,4,63.0,204,24\n\
                    sensor-3,2,40.0,302,32\n\
                    sensor-3,3,41.0,303,33\n";
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), expected);

    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(
        chart_points(&page, "temperature"),
        BTreeMap::from([("sensor-1".into(), 6), ("sensor-2".into(), 3), ("sensor-3".into(), 2)])
    );
    assert_eq!(chart_points(&page, "co").len(), 3);
    assert_eq!(chart_points(&page, "humidity").len(), 3);
}

/// Per sensor, the points of its `class` chart: the vertices of the data lines and the dots
/// of lone windows (the data are the chart's only round dots, and its only lines of width 2).
fn chart_points(page: &str, class: &str) -> BTreeMap<String, usize> {
    let mut points = BTreeMap::new();
    for figure in page.split(&format!("<figure class=\"chart {class}\" data-sensor=\"")).skip(1) {
        let (sensor, rest) = figure.split_once('"').unwrap();
        let svg = &rest[..rest.find("</figure>").unwrap()];
        let vertices: usize = svg
            .split("<polyline")
            .skip(1)
            .filter(|line| line.contains("stroke-width=\"2\""))
            .map(|line| line.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split_whitespace().count())
            .sum();
        let previous = points.insert(sensor.to_string(), vertices + svg.matches("<circle").count());
        assert!(previous.is_none(), "one {class} chart per sensor: {sensor} has two");
    }
    points
}

/// Many sensors and windows: every sensor gets its charts, every window its point, and the
/// rows come in counting order (sensor-2 before sensor-10).
#[tokio::test]
async fn thirty_two_sensors_get_a_chart_each() {
    let tansu = Tansu::start();
    tansu.create_topic("aggregates", 4);
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        (1..=32).flat_map(|s| (1..=52).map(move |id| put(&week(s, id, (s * 10 + id) as i64)))).collect();
    let raw: Vec<testkit::RawMessage<'_>> = records.iter().map(|(k, v)| (Some(k.as_slice()), v.as_deref())).collect();
    tansu.send_raw("aggregates", &raw);
    let (report, csv, html, _dir) = report_with_files(&tansu).await;
    assert!(report.to_string().contains("32 sensors, 1,664 windows"), "{report}");
    let points = chart_points(&std::fs::read_to_string(&html).unwrap(), "temperature");
    assert_eq!(points.len(), 32);
    assert!(points.values().all(|&n| n == 52), "{points:?}");
    let sensors: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .chunk_by(|a, b| a == b)
        .map(|chunk| chunk[0].clone())
        .collect();
    assert_eq!(sensors, (1..=32).map(|s| format!("sensor-{s}")).collect::<Vec<_>>());
}

/// Several window lengths: the summary shows each, --csv needs --window-days and says so,
/// and with it writes that length alone under its id column.
#[tokio::test]
async fn several_window_lengths() {
    let tansu = Tansu::start();
    tansu.create_topic("aggregates", 2);
    let month = Aggregate {
        key: WindowKey { sensor_id: "sensor-1".into(), window_days: 30, window_id: 1 },
        unit: Unit::Celsius,
        readings: 30,
        first_record_id: 1,
        last_record_id: 30,
        ..week(1, 1, 203)
    };
    let records = [put(&week(1, 1, 686)), put(&month)];
    let raw: Vec<testkit::RawMessage<'_>> = records.iter().map(|(k, v)| (Some(k.as_slice()), v.as_deref())).collect();
    tansu.send_raw("aggregates", &raw);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("table.csv");
    let err = report(&tansu, &["-t", "aggregates", "--csv", csv.to_str().unwrap()]).await.unwrap_err().to_string();
    assert!(err.contains("--window-days"), "{err}");
    assert!(!csv.exists(), "nothing written");
    let text = report(&tansu, &["-t", "aggregates"]).await.unwrap().to_string();
    assert!(
        text.contains("7-day windows (week_id), avg_temp in °F")
            && text.contains("30-day windows (month_id), avg_temp in °C")
    );
    report(&tansu, &["-t", "aggregates", "--csv", csv.to_str().unwrap(), "--window-days", "30"]).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        "sensor_id,month_id,avg_temp,avg_co,avg_humidity\nsensor-1,1,20.3,101,11\n"
    );
}

/// A topic the broker does not have is named, with what it has, within seconds.
#[tokio::test]
async fn a_missing_topic_is_named() {
    let tansu = Tansu::start();
    tansu.create_topic("aggregates", 1);
    let err = report(&tansu, &["-t", "agregates"]).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("`agregates` does not exist") && text.contains("did you mean `aggregates`?"), "{text}");
}

/// Tansu 0.6 and transactions, as the README says: a transactional producer starts and
/// writes, but its commit is refused (the broker has no EndTxn), and a read_committed reader
/// does not see its records, nor any record after them in their partition, until the
/// producer's transactional id starts again. The report reads what is committed, says which
/// offsets it could not read, and does not wait for them.
#[tokio::test]
async fn an_unfinished_transaction_is_named_and_not_read() {
    let tansu = Tansu::start();
    tansu.create_topic("aggregates", 1);
    tansu.send_raw("aggregates", &[(Some(&week(1, 1, 686).key.to_json()), Some(&week(1, 1, 686).to_json()))]);
    let transactional: ThreadedProducer<_> = weather_common::kafka::reliable_producer(
        &tansu.kafka_args(),
        &[("transactional.id", "report-test")],
        rdkafka::producer::DefaultProducerContext,
    )
    .unwrap();
    transactional.init_transactions(Duration::from_secs(10)).unwrap();
    transactional.begin_transaction().unwrap();
    let (key, value) = put(&week(1, 2, 700));
    transactional
        .send(BaseRecord::to("aggregates").key(&key).payload(value.as_deref().unwrap()))
        .map_err(|(e, _)| e)
        .unwrap();
    transactional.flush(Duration::from_secs(10)).unwrap();
    let commit = transactional.commit_transaction(Duration::from_secs(10));
    assert!(
        commit.as_ref().is_err_and(|e| e.to_string().contains("EndTxn")),
        "Tansu 0.6 has no EndTxn; if it commits now ({commit:?}), update README's notes on transactions"
    );
    // A plain record after the transaction's, in the same partition.
    tansu.send_raw("aggregates", &[(Some(&week(1, 3, 0).key.to_json()), Some(&week(1, 3, 0).to_json()))]);

    let started = std::time::Instant::now();
    let report = report(&tansu, &["-t", "aggregates"]).await.unwrap();
    let text = report.to_string();
    assert!(started.elapsed() < Duration::from_secs(20), "the report waited for the transaction: {text}");
    assert!(text.contains("table: 1 window "), "{text}");
    assert!(text.contains("partition 0: offsets 1 to 2 are in a transaction not committed (yet)"), "{text}");
}
