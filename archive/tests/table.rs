//! The lake as a Delta Lake table (`--table delta`), as two readers that are not our writer
//! find it: delta-rs's Python deltalake, and DuckDB's delta extension. Each holds every valid
//! reading of the topic once, prunes files by date and hour, and goes on doing so across runs,
//! a compaction and a vacuum.

mod support;

use std::path::Path;

use support::*;
use testkit::Tansu;

/// `weather-archive compact` on the lake at `dir`, merging every closed hour.
fn compact(dir: &Path) -> String {
    archived(std::process::Command::new(env!("CARGO_BIN_EXE_weather-archive")).args([
        "compact",
        "-o",
        dir.to_str().unwrap(),
        "--closed-for",
        "0",
    ]))
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
