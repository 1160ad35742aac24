//! What the archive's tests share: the topic's valid readings as the test reads them itself,
//! the lake as DuckDB and pyarrow read it, and the check that the two agree.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;
use testkit::Tansu;

/// A valid reading of the topic, as the test reads it itself from the raw message.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub sensor_id: String,
    pub record_id: i64,
    pub temperature: f64,
    pub co_concentration: i64,
    pub humidity: i64,
    pub event_ms: i64,
}

/// The valid readings of `topic` by (partition, offset), and how many records are not valid.
pub fn topic_readings(tansu: &Tansu, topic: &str) -> (BTreeMap<(i32, i64), Expected>, usize) {
    let mut valid = BTreeMap::new();
    let mut invalid = 0;
    for record in tansu.read_all(topic) {
        let parsed: Option<Value> = record.value.as_deref().and_then(|v| serde_json::from_slice(v).ok());
        let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name).cloned());
        let key = record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned());
        match (field("record_id"), field("temperature"), field("CO_concentration"), field("humidity")) {
            (Some(id), Some(t), Some(co), Some(h)) => {
                let sensor_id = field("sensor_id").and_then(|s| s.as_str().map(str::to_string)).or(key).unwrap();
                valid.insert(
                    (record.partition, record.offset),
                    Expected {
                        sensor_id,
                        record_id: id.as_i64().unwrap(),
                        temperature: t.as_f64().unwrap(),
                        co_concentration: co.as_i64().unwrap(),
                        humidity: h.as_i64().unwrap(),
                        event_ms: record.timestamp.unwrap(),
                    },
                );
            }
            _ => invalid += 1,
        }
    }
    (valid, invalid)
}

/// What DuckDB and pyarrow find in the lake.
pub struct LakeView {
    pub rows: Vec<BTreeMap<String, Value>>,
    pub files: Vec<BTreeMap<String, Value>>,
    pub leftovers: Vec<String>,
}

/// The lake in the directory `dir`, as the readers find it.
pub fn read_lake(dir: &Path) -> LakeView {
    run_reader(&[dir.to_str().unwrap()])
}

/// The lake in `bucket` of the S3 server at `endpoint`, as the readers find it through the S3
/// API (listing and GET; nothing of the server's own disk).
pub fn read_lake_in_s3(endpoint: &str, bucket: &str) -> LakeView {
    run_reader(&[&format!("s3://{bucket}"), endpoint])
}

fn run_reader(args: &[&str]) -> LakeView {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_lake.py");
    let out = Command::new(testkit::lake_python()).arg(script).args(args).output().expect("running the lake reader");
    assert!(out.status.success(), "the lake reader failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("the reader's JSON");
    let objects = |name: &str| -> Vec<BTreeMap<String, Value>> {
        json[name].as_array().unwrap().iter().map(|v| serde_json::from_value(v.clone()).unwrap()).collect()
    };
    let leftovers = json["leftovers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    LakeView { rows: objects("rows"), files: objects("files"), leftovers }
}

/// The lake in `dir` holds exactly `expected` (see [`assert_view_holds`]).
pub fn assert_lake_holds(dir: &Path, expected: &BTreeMap<(i32, i64), Expected>) -> LakeView {
    assert_view_holds(read_lake(dir), expected)
}

/// The data files of a lake by name, each with the SHA-256 of its bytes.
pub fn file_digests(lake: &LakeView) -> BTreeMap<String, String> {
    lake.files
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["sha256"].as_str().unwrap().to_string()))
        .collect()
}

/// The lake holds exactly `expected`, each reading once with its values, every file one hour
/// of one partition, in offset order and named after its first offset, with statistics.
pub fn assert_view_holds(lake: LakeView, expected: &BTreeMap<(i32, i64), Expected>) -> LakeView {
    assert!(lake.leftovers.is_empty(), "files that are not Parquet: {:?}", lake.leftovers);
    let mut seen = BTreeMap::new();
    let mut by_file: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for row in &lake.rows {
        let at = (row["partition"].as_i64().unwrap() as i32, row["offset"].as_i64().unwrap());
        let got = Expected {
            sensor_id: row["sensor_id"].as_str().unwrap().to_string(),
            record_id: row["record_id"].as_i64().unwrap(),
            temperature: row["temperature"].as_f64().unwrap(),
            co_concentration: row["co_concentration"].as_i64().unwrap(),
            humidity: row["humidity"].as_i64().unwrap(),
            event_ms: row["event_ms"].as_i64().unwrap(),
        };
        // The Hive partition columns are the reading's own hour, in UTC.
        let stamp = jiff::Timestamp::from_millisecond(got.event_ms).unwrap().to_zoned(jiff::tz::TimeZone::UTC);
        assert_eq!(row["date"].as_str().unwrap(), stamp.date().to_string(), "{row:?}");
        if let Some(hour) = row.get("hour") {
            // DuckDB reads `hour=07` as a number, and `hour=00` as text.
            let hour = hour.as_i64().or_else(|| hour.as_str()?.parse().ok());
            assert_eq!(hour, Some(i64::from(stamp.hour())), "{row:?}");
        }
        // The directory as written, which DuckDB's reading of `hour` as a number would not
        // tell apart: `date=YYYY-MM-DD`, and `hour=HH` zero-padded when the lake is by hour.
        let file = row["filename"].as_str().unwrap();
        let dir = Path::new(file).parent().unwrap().to_str().unwrap();
        let by_day = format!("topic=weather/date={}", stamp.date());
        let by_hour = format!("{by_day}/hour={:02}", stamp.hour());
        let wanted = if row.contains_key("hour") { by_hour } else { by_day };
        assert_eq!(dir, wanted, "the directory of {file}, holding offset {at:?}");
        assert!(seen.insert(at, got).is_none(), "offset {at:?} is in the lake twice");
        by_file.entry(file.to_string()).or_default().push(at);
    }
    let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(k)).take(5).collect();
    let extra: Vec<_> = seen.keys().filter(|k| !expected.contains_key(k)).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, not in the topic {extra:?}");
    for (at, got) in &seen {
        assert_eq!(got, &expected[at], "the values at {at:?}");
    }
    check_files(&by_file);
    for file in &lake.files {
        assert_eq!((file["row_groups"].as_i64(), file["compression"].as_str()), (Some(1), Some("SNAPPY")), "{file:?}");
        assert_eq!(file["statistics"], Value::Bool(true), "{file:?}");
    }
    assert_eq!(
        lake.files[0]["schema"],
        serde_json::json!([
            "sensor_id:string",
            "record_id:int64",
            "temperature:double",
            "co_concentration:int32",
            "humidity:int32",
            "event_time:timestamp[ms, tz=UTC]",
            "partition:int32",
            "offset:int64"
        ])
    );
    lake
}

/// Each file's rows, as `(partition, offset)` in the order read: all of one partition, the
/// file's first row included and its last, in offset order, and the file named after that
/// partition and its first offset.
pub fn check_files(by_file: &BTreeMap<String, Vec<(i32, i64)>>) {
    for (file, offsets) in by_file {
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        let (partition, first) = offsets[0];
        assert_eq!(name, format!("weather+{partition}+{first:020}.parquet"), "{file}");
        let strangers: Vec<_> = offsets.iter().filter(|(p, _)| *p != partition).collect();
        assert!(strangers.is_empty(), "{file}: rows of another partition than {partition}: {strangers:?}");
        assert!(offsets.windows(2).all(|w| w[0].1 < w[1].1), "{file}: not in offset order");
    }
}

/// A row of the table as a reader gives it: `[partition, offset, sensor_id, record_id,
/// temperature, co_concentration, humidity, event_ms, date, hour, file]`.
pub type TableRow = Vec<Value>;

/// What the two readers of the Delta table (deltalake and DuckDB's delta extension) find.
pub struct TableView {
    pub version: u64,
    /// Files in the table, as deltalake counts them.
    pub files: usize,
    pub deltalake: Vec<TableRow>,
    pub duckdb: Vec<TableRow>,
    /// A filter on the first row's date and hour: the files each reader read for it (DuckDB:
    /// `[read, of]`) and the rows it found.
    pub pruning: Value,
}

/// The table at the lake `dir`, as its readers find it.
pub fn read_table(dir: &Path) -> TableView {
    run_table_reader(&[dir.to_str().unwrap()])
}

/// The table at `s3://bucket/prefix` of the S3 server at `endpoint`, read through the S3 API.
pub fn read_table_in_s3(endpoint: &str, url: &str) -> TableView {
    run_table_reader(&[url, endpoint])
}

fn run_table_reader(args: &[&str]) -> TableView {
    let (python, extension) = testkit::delta_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_table.py");
    let out = Command::new(python).arg(script).arg(extension).args(args).output().expect("running the table reader");
    assert!(out.status.success(), "the table reader failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("the reader's JSON");
    let rows = |v: &Value| -> Vec<TableRow> {
        v["rows"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect()
    };
    TableView {
        version: json["deltalake"]["version"].as_u64().unwrap(),
        files: json["deltalake"]["files"].as_u64().unwrap() as usize,
        deltalake: rows(&json["deltalake"]),
        duckdb: rows(&json["duckdb"]),
        pruning: json["pruning"].clone(),
    }
}

/// Both readers find exactly `expected` in the table, each reading once with its values and
/// its own date and hour; and a filter on one hour reads only that hour's files (fewer than
/// all, as many for both readers), and finds that hour's readings.
pub fn assert_table_holds(view: &TableView, expected: &BTreeMap<(i32, i64), Expected>) {
    for (reader, rows) in [("deltalake", &view.deltalake), ("duckdb", &view.duckdb)] {
        let mut seen = BTreeMap::new();
        for row in rows.iter() {
            let at = (row[0].as_i64().unwrap() as i32, row[1].as_i64().unwrap());
            let got = Expected {
                sensor_id: row[2].as_str().unwrap().to_string(),
                record_id: row[3].as_i64().unwrap(),
                temperature: row[4].as_f64().unwrap(),
                co_concentration: row[5].as_i64().unwrap(),
                humidity: row[6].as_i64().unwrap(),
                event_ms: row[7].as_i64().unwrap(),
            };
            let stamp = jiff::Timestamp::from_millisecond(got.event_ms).unwrap().to_zoned(jiff::tz::TimeZone::UTC);
            assert_eq!(row[8].as_str().unwrap(), stamp.date().to_string(), "{reader}: the date of {row:?}");
            if !row[9].is_null() {
                assert_eq!(row[9].as_i64(), Some(i64::from(stamp.hour())), "{reader}: the hour of {row:?}");
            }
            assert!(seen.insert(at, got).is_none(), "{reader}: offset {at:?} is in the table twice");
        }
        let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(k)).take(5).collect();
        let extra: Vec<_> = seen.keys().filter(|k| !expected.contains_key(k)).take(5).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{reader}: missing {missing:?}, not in the topic {extra:?}");
        for (at, got) in &seen {
            assert_eq!(got, &expected[at], "{reader}: the values at {at:?}");
        }
    }
    let pruning = &view.pruning;
    let (date, hour) = (pruning["date"].as_str().unwrap(), pruning["hour"].as_i64());
    let in_slot = expected
        .values()
        .filter(|r| {
            let stamp = jiff::Timestamp::from_millisecond(r.event_ms).unwrap().to_zoned(jiff::tz::TimeZone::UTC);
            stamp.date().to_string() == date && hour.is_none_or(|h| h == i64::from(stamp.hour()))
        })
        .count() as u64;
    let slots: std::collections::BTreeSet<i64> = expected.values().map(|r| r.event_ms / 3_600_000).collect();
    if slots.len() > 1 {
        // DuckDB's plan says `Scanning Files: read/of` when its filter skipped files.
        let duckdb = pruning["duckdb_files"]
            .as_array()
            .unwrap_or_else(|| panic!("DuckDB's plan names the files it scans: {pruning}"));
        let (read, of) = (duckdb[0].as_u64().unwrap(), duckdb[1].as_u64().unwrap());
        assert_eq!(of as usize, view.files, "DuckDB sees the table's files: {pruning}");
        assert!(read >= 1 && read < of, "a filter on one hour reads that hour's files only: {pruning}");
        assert_eq!(pruning["deltalake_files"].as_u64(), Some(read), "both readers prune alike: {pruning}");
    }
    assert_eq!((pruning["duckdb_rows"].as_u64(), pruning["deltalake_rows"].as_u64()), (Some(in_slot), Some(in_slot)));
}

/// Sends readings stamped over `hours` whole hours from 2025-11-29T00:00Z on: in each hour,
/// `per_hour` readings to each of `partitions` partitions of `weather`, record ids from
/// `first_id` on (in time order within a partition).
pub fn send_hours(tansu: &Tansu, partitions: i32, hours: i64, per_hour: i64, first_id: i64) {
    const MIDNIGHT: i64 = 1_764_374_400_000;
    let mut values = Vec::new();
    for p in 0..partitions {
        for h in 0..hours {
            for i in 0..per_hour {
                let id = first_id + (p as i64 * hours + h) * per_hour + i;
                let at = MIDNIGHT + h * 3_600_000 + i * 3_600_000 / per_hour;
                let value = format!(
                    r#"{{"sensor_id":"sensor-{p}","record_id":{id},"temperature":{}.5,"CO_concentration":700,"humidity":{}}}"#,
                    id % 30,
                    20 + id % 60
                );
                values.push((p, format!("sensor-{p}"), value, at));
            }
        }
    }
    // All sent, then flushed once: each record keeps its own timestamp in the batches (the
    // archive reads record timestamps, not the broker's look-up by time).
    let producer: ThreadedProducer<_> =
        weather_common::kafka::reliable_producer(&tansu.kafka_args(), &[], DefaultProducerContext).unwrap();
    for (p, key, value, at) in &values {
        let record =
            BaseRecord::to("weather").partition(*p).key(key.as_bytes()).payload(value.as_bytes()).timestamp(*at);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(std::time::Duration::from_secs(30)).unwrap();
}

/// The progress the Delta table at `root` records per partition: the latest `txn` version of
/// each partition's app id, read from the log's entries as they are on disk.
pub fn table_progress(root: &Path) -> BTreeMap<i32, i64> {
    let mut progress = BTreeMap::new();
    let mut names: Vec<_> = std::fs::read_dir(root.join("_delta_log"))
        .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    names.retain(|n| n.len() == 25 && n.ends_with(".json"));
    names.sort();
    for name in names {
        let entry = std::fs::read_to_string(root.join("_delta_log").join(name)).unwrap();
        for line in entry.lines() {
            let action: Value = serde_json::from_str(line).unwrap();
            let Some(app) = action["txn"]["appId"].as_str() else { continue };
            if let Some(partition) = app.strip_prefix("weather-archive:weather:").and_then(|p| p.parse().ok()) {
                progress.insert(partition, action["txn"]["version"].as_i64().unwrap());
            }
        }
    }
    progress
}

/// The files the Delta table at `root` holds (paths relative to it), by our own replay of its
/// log's entries on disk: for comparing a table with a reference table the readers have not
/// read.
pub fn table_files(root: &Path) -> std::collections::BTreeSet<String> {
    let mut files = std::collections::BTreeSet::new();
    let mut names: Vec<_> = std::fs::read_dir(root.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 25 && n.ends_with(".json"))
        .collect();
    names.sort();
    for name in names {
        for line in std::fs::read_to_string(root.join("_delta_log").join(name)).unwrap().lines() {
            let action: Value = serde_json::from_str(line).unwrap();
            if let Some(path) = action["add"]["path"].as_str() {
                files.insert(path.to_string());
            }
            if let Some(path) = action["remove"]["path"].as_str() {
                files.remove(path);
            }
        }
    }
    files
}

/// Runs the archive binary on `tansu` into `dir` until the end, and returns its summary.
pub fn archive(tansu: &Tansu, dir: &Path, extra: &[&str]) -> String {
    archived(archive_command(tansu, &["-o", dir.to_str().unwrap()]).args(extra))
}

/// Runs an archive `command` to its end, which must be a success; its summary.
pub fn archived(command: &mut Command) -> String {
    let out = command.output().expect("running weather-archive");
    assert!(out.status.success(), "the archive failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The archive binary's command on `tansu`, with the destination flags given.
pub fn archive_command(tansu: &Tansu, destination: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weather-archive"));
    command.args(["-b", &tansu.bootstrap(), "--connect-timeout", "20", "--quiet"]).args(destination);
    command
}

/// The names and bytes of every data file.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![dir.join("topic=weather")];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.insert(path.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// The state of partition `p` in the lake at `root`, if any.
pub fn state(root: &Path, partition: i32) -> Option<Value> {
    let bytes = std::fs::read(root.join(format!("_state/weather-{partition}.json"))).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// How many Parquet files the lake at `root` holds.
pub fn file_count(root: &Path) -> usize {
    let mut count = 0;
    let mut dirs = vec![root.join("topic=weather")];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                count += 1;
            }
        }
    }
    count
}

/// A summary's count after `field`, e.g. `readings archived:`.
pub fn count(summary: &str, field: &str) -> u64 {
    let line =
        summary.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_else(|| panic!("no `{field}` in {summary}"));
    line.trim().split(' ').next().unwrap().replace(',', "").parse().unwrap()
}

/// What a group member's log (its stderr) says in a line that `is_takeover` picks out (the
/// first): when it said so, and that the heartbeat of member `gone` had not been tidied away
/// before. A member silent for ten leases has its heartbeat removed, which moves its partitions
/// too; a takeover after that line is not its lease running out. Fails if no line is picked out.
pub fn takeover_by_lease(log: &str, gone: &str, is_takeover: impl Fn(&str) -> bool) -> jiff::Timestamp {
    let tidied = format!("member `{gone}` has been silent for");
    for line in log.lines() {
        assert!(
            !line.contains(&tidied),
            "{gone}'s partitions: its heartbeat was tidied away before they moved, its lease had not run out:\n{log}"
        );
        if is_takeover(line) {
            return logged_at(line);
        }
    }
    panic!("{gone}'s partitions: no takeover in\n{log}")
}

/// When a log line (tracing's format: an RFC 3339 time first) was written.
pub fn logged_at(line: &str) -> jiff::Timestamp {
    let stamp = line.split_whitespace().next().unwrap_or_default();
    stamp.parse().unwrap_or_else(|e| panic!("no time at the start of `{line}`: {e}"))
}
