//! The lake as a Delta Lake table (`--table delta`), as two readers that are not our writer
//! find it: delta-rs's Python deltalake, and DuckDB's delta extension. Each holds every valid
//! reading of the topic once, prunes files by date and hour, and goes on doing so across runs,
//! a compaction and a vacuum.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use support::*;
use testkit::Tansu;

/// The `weather-archive compact` command on the lake at `dir`, merging every closed hour.
fn compact_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weather-archive"));
    command.args(["compact", "-o", dir.to_str().unwrap(), "--closed-for", "0", "--checkpoint-every", "10"]);
    command
}

/// Log entries of the table at `dir`.
fn versions(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("_delta_log"))
        .map(|d| d.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".json")).count())
        .unwrap_or(0)
}

/// A table of `partitions` partitions over `hours` hours, 50 readings an hour each, archived in
/// files of 5 readings: ten small files per hour and partition. Returns the topic's readings.
fn small_files(tansu: &Tansu, dir: &Path, partitions: i32, hours: i64) -> BTreeMap<(i32, i64), Expected> {
    tansu.create_topic("weather", partitions as u32);
    send_hours(tansu, partitions, hours, 50, 1);
    archive(tansu, dir, &["--until-end", "--max-rows", "5", "--table", "delta"]);
    topic_readings(tansu, "weather").0
}

/// `weather-archive compact` on the lake at `dir`, merging every closed hour.
fn compact(dir: &Path) -> String {
    archived(&mut compact_command(dir))
}

/// `weather-archive vacuum` on the lake at `dir`, with no retention.
fn vacuum(dir: &Path) -> String {
    archived(std::process::Command::new(env!("CARGO_BIN_EXE_weather-archive")).args([
        "vacuum",
        "-o",
        dir.to_str().unwrap(),
        "--retention",
        "0",
    ]))
}

/// A batch run commits every file to the table, and both readers find every valid reading
/// once; a second run commits nothing, a third only what came since; a compaction leaves
/// the same readings in fewer files, and a vacuum deletes exactly the files merged away.
#[test]
fn the_table_holds_every_valid_reading_once() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    send_hours(&tansu, 3, 6, 100, 1);
    tansu.send_raw("weather", &[(Some(b"sensor-1"), Some(b"not json")), (None, Some(br#"{"record_id":1}"#))]);
    let lake = tempfile::tempdir().unwrap();
    let flags = ["--until-end", "--max-rows", "30", "--table", "delta", "--checkpoint-every", "5"];
    let summary = archive(&tansu, lake.path(), &flags);
    assert!(summary.starts_with("readings archived:  1,800 in "), "{summary}");
    let files = count(&summary, "files written:");
    // Version 0 makes the table, each partition's takeover is one commit, then one per file.
    let commits = format!("table commits:      {files} (the Delta table is at version {})", files + 3);
    assert!(summary.contains(&commits), "{summary}");
    let (expected, _) = topic_readings(&tansu, "weather");
    let view = read_table(lake.path());
    assert_table_holds(&view, &expected);
    assert_eq!(view.files as u64, files);
    assert!(lake.path().join("_delta_log/_last_checkpoint").is_file(), "a checkpoint every 5 commits");

    let again = archive(&tansu, lake.path(), &flags);
    assert!(again.contains("table commits:      0 ("), "nothing new, nothing committed: {again}");
    send_hours(&tansu, 3, 7, 20, 10_000);
    let more = archive(&tansu, lake.path(), &flags);
    assert!(more.starts_with("readings archived:  420 in "), "{more}");
    let (expected, _) = topic_readings(&tansu, "weather");
    let before = read_table(lake.path());
    assert_table_holds(&before, &expected);

    let compacted = compact(lake.path());
    let merged = count(&compacted, "files merged:");
    assert!(merged > 0, "{compacted}");
    let after = read_table(lake.path());
    assert_table_holds(&after, &expected);
    assert!(after.files < before.files, "{} files, {} before: {compacted}", after.files, before.files);
    assert_eq!(count(&compact(lake.path()), "files merged:"), 0, "nothing left to merge");
    let on_disk = file_count(lake.path());
    let vacuumed = vacuum(lake.path());
    assert_eq!(count(&vacuumed, "files deleted:"), merged, "{vacuumed}");
    assert_eq!(file_count(lake.path()) + merged as usize, on_disk);
    assert_table_holds(&read_table(lake.path()), &expected);
}

/// A compaction SIGKILLed at random moments (once it has committed a merge or more) and
/// started again: after every kill both readers find every reading once; the last one
/// finishes the merges, and a vacuum then leaves exactly the table's files in the lake.
#[test]
fn a_compaction_killed_at_any_moment_leaves_every_reading_once() {
    let tansu = Tansu::start();
    let lake = tempfile::tempdir().unwrap();
    let expected = small_files(&tansu, lake.path(), 2, 12);
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("kill moments from CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut killed = 0;
    for kill in 0..6 {
        let before = versions(lake.path());
        let mut child = compact_command(lake.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while versions(lake.path()) == before && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the compaction committed nothing in 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        killed += 1;
        let view = read_table(lake.path());
        assert_table_holds(&view, &expected);
        println!("kill {}: {} files in the table", kill + 1, view.files);
    }
    assert!(killed > 0, "every compaction ended before its kill (CRASH_SEED={seed})");
    compact(lake.path());
    let view = read_table(lake.path());
    assert_table_holds(&view, &expected);
    assert_eq!(view.files, 2 * 12, "one file per hour and partition, CRASH_SEED={seed}");
    vacuum(lake.path());
    assert_eq!(file_count(lake.path()), view.files, "the lake holds the table's files and no other");
    assert_table_holds(&read_table(lake.path()), &expected);
}

/// A reader polling the table while a compaction commits merge after merge finds every reading
/// once at every read, and so at every version the compaction made (each read again after).
#[test]
fn a_reader_polling_during_a_compaction_sees_every_reading_once() {
    let tansu = Tansu::start();
    let lake = tempfile::tempdir().unwrap();
    let expected = small_files(&tansu, lake.path(), 2, 12);
    let stop = lake.path().join("stop-polling");
    let (python, extension) = testkit::delta_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_table.py");
    let mut poller = Command::new(python)
        .arg(script)
        .arg(extension)
        .arg(lake.path())
        .arg("--poll")
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(poller.stdout.take().unwrap()));
    let first = lines.next().expect("the poller's first read").unwrap();
    let compacted = compact(lake.path());
    std::fs::write(&stop, b"").unwrap();
    let reads: Vec<serde_json::Value> =
        std::iter::once(first).chain(lines.map(|l| l.unwrap())).map(|l| serde_json::from_str(&l).unwrap()).collect();
    assert!(poller.wait().unwrap().success());
    let merges = count(&compacted, "files merged:");
    assert!(merges > 0, "{compacted}");
    let versions: Vec<u64> = reads.iter().filter(|r| r[0] == "version").map(|r| r[1].as_u64().unwrap()).collect();
    assert!(versions.len() as u64 > 2 * 12, "every merge's version was read: {versions:?}");
    for read in &reads {
        let (rows, distinct) = (read[2].as_u64().unwrap(), read[3].as_u64().unwrap());
        assert_eq!((rows, distinct), (expected.len() as u64, expected.len() as u64), "a read saw {read}");
    }
}

/// On S3 (the tests' s3s-fs 0.14.1), a log entry is created once: a second PUT of the same key
/// with If-None-Match `*` is refused and changes nothing, so two writers commit on top of each
/// other; and a member whose epoch is older than the table's has its commit refused. (s3s-fs
/// checks for the object before it writes it, so two PUTs racing inside that window could both
/// succeed: what is shown here is the refusal S3 makes atomic, one writer at a time.)
#[test]
fn on_s3_an_entry_is_created_once_and_a_stale_member_is_refused() {
    use std::sync::Arc;
    use weather_archive::delta::table::{CommitError, Outcome, Table};
    use weather_archive::layout::PartitionBy;
    use weather_archive::store::s3::S3Store;
    use weather_archive::store::{Store, StoreError};

    let s3 = testkit::S3Server::start();
    s3.create_bucket("lake");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bucket = weather_common::s3::Bucket {
        name: "lake".into(),
        endpoint: Some(s3.endpoint()),
        region: Some("us-east-1".into()),
    };
    let client = runtime.block_on(weather_common::s3::client(&bucket));
    let store: Arc<dyn Store> = Arc::new(S3Store::new(client, bucket, "lake", runtime.handle().clone()));
    store.put_new("other/00000000000000000000.json", b"first").unwrap();
    let second = store.put_new("other/00000000000000000000.json", b"second");
    assert!(matches!(second, Err(StoreError::Conflict { .. })), "{second:?}");
    assert_eq!(store.get("other/00000000000000000000.json").unwrap().unwrap(), b"first");

    let table = || Table::open(store.clone(), "lake/", "weather", PartitionBy::Hour, 0).unwrap();
    let (old, other) = (table(), table());
    old.take_over(0, 1).unwrap();
    other.take_over(1, 1).unwrap();
    assert_eq!(old.append(0, 1, 0, 10, None).unwrap(), Outcome::Committed(3), "on top of the other's takeover");
    let new = table();
    assert_eq!(new.take_over(0, 2).unwrap(), Some(10), "the new owner learns the progress from the table");
    let late = old.append(0, 1, 10, 20, None);
    assert!(matches!(late, Err(CommitError::Fenced { partition: 0, epoch: 1, table_epoch: 2 })), "{late:?}");
    assert_eq!(new.append(0, 2, 10, 20, None).unwrap(), Outcome::Committed(5));
}
