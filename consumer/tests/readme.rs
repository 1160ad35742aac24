//! The README's walkthrough, command by command as written there, on the local stack that
//! `scripts/stack` starts (on ports this test chose, in a directory of its own), with each
//! step's output checked. The commands are read from the README itself, so that the README and
//! what is tested cannot drift apart.
//!
//! It runs the binaries of this build (`target/debug`; `cargo test --workspace` builds them all).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::free_port;

/// The walkthrough's shell block, split into its numbered steps (`# N. ...`), comments dropped.
fn walkthrough_steps() -> BTreeMap<u32, Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let section = readme.split("## The walkthrough, step by step").nth(1).expect("the walkthrough section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("its shell block");
    let mut steps: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut step = None;
    for line in block.lines() {
        if let Some(number) = line.strip_prefix("# ").and_then(|l| l.split_once(". ")).and_then(|(n, _)| n.parse().ok())
        {
            step = Some(number);
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            steps.entry(step.expect("a command before the first step")).or_default().push(line.to_string());
        }
    }
    steps
}

/// Runs the steps in one shell, as a reader pasting them would, and returns each step's
/// output (stdout and stderr together).
fn run_walkthrough(dir: &Path, steps: &BTreeMap<u32, Vec<String>>) -> BTreeMap<u32, String> {
    let mut script = String::from("set -euo pipefail\nexec 2>&1\ntrap 'scripts/stack down >/dev/null 2>&1' EXIT\n");
    for (step, commands) in steps {
        script += &format!("echo '@@ step {step}'\n");
        for command in commands {
            script += &format!("echo '$ {}'\n{command}\n", command.replace('\'', "'\\''"));
        }
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_weather-consumer")).parent().unwrap().to_path_buf();
    for binary in ["weather-producer", "weather-archive", "weather-report"] {
        assert!(
            bin_dir.join(binary).exists(),
            "{} has no {binary}: build the workspace first (cargo build --workspace)",
            bin_dir.display()
        );
    }
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", path)
        .env("WEATHER_KAFKA_PORT", free_port().to_string())
        .env("WEATHER_S3_PORT", free_port().to_string())
        .env("WEATHER_POSTGRES_PORT", free_port().to_string())
        .env_remove("PGPASSFILE")
        .env_remove("PGPASSWORD")
        .env("RUST_LOG", "info")
        .env_remove("WEATHER_STACK_DIR")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("WEATHER_S3_ENDPOINT")
        .output()
        .expect("running bash");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(out.status.success(), "the walkthrough failed ({}):\n{text}", out.status);
    let mut outputs = BTreeMap::new();
    for part in text.split("@@ step ").skip(1) {
        let (step, output) = part.split_once('\n').unwrap_or((part, ""));
        outputs.insert(step.trim().parse().unwrap(), output.to_string());
    }
    assert_eq!(outputs.len(), steps.len(), "every step ran:\n{text}");
    outputs
}

fn assert_has(output: &str, needles: &[&str], step: u32) {
    for needle in needles {
        assert!(output.contains(needle), "step {step} should show `{needle}`:\n{output}");
    }
}

/// The README's walkthrough, every command as written: the sensor's readings, version 1 from
/// the beginning, the lag while it is down and its catch-up, version 2's dry run, replay and
/// upload, its table and its aggregates topic, the report of that topic, a replay from a point
/// in time that keeps the weeks before it, the lake archive as DuckDB reads it, and the stack's
/// end.
#[test]
fn the_readme_walkthrough_runs_as_written() {
    let steps = walkthrough_steps();
    assert_eq!(steps.keys().copied().collect::<Vec<_>>(), (0..=8).collect::<Vec<_>>());
    // A checkout of its own: `scripts/` as in the repo, the stack's data and outputs here.
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL's cluster lives under it and runs as the `postgres` user when the test runs
    // as root: that user must reach it.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts"), dir.path().join("scripts"))
        .unwrap();
    let out = run_walkthrough(dir.path(), &steps);

    assert_has(
        &out[&0],
        &["tansu listening on 127.0.0.1:", "created topic weather (3 partitions)", "postgres listening on 127.0.0.1:"],
        0,
    );
    assert_has(&out[&1], &["sent 5 readings: 5 acknowledged, 0 failed", "sent 1,095 readings: 1,095 acknowledged"], 1);
    assert_has(&out[&1], &["sensor-1 continues after record_id 5 ("], 1);

    // 1,100 readings: months 1 to 36, from the beginning of the topic.
    let v1 = &out[&2];
    assert_has(
        v1,
        &["a new output, from the beginning", "readings consumed:  1,100 ", "windows written:    36 complete"],
        2,
    );
    assert_has(v1, &["$ cat weather_aggregation.txt\n1,"], 2);

    let catch_up = &out[&3];
    assert_has(
        catch_up,
        &["sent 365 readings", "total", "readings consumed:  365 ", "windows written:    12 complete"],
        3,
    );
    // Months 1 to 48, each once, after the catch-up.
    let txt = std::fs::read_to_string(dir.path().join("weather_aggregation.txt")).unwrap();
    let months: Vec<&str> = txt.split(',').filter(|f| !f.is_empty()).step_by(4).collect();
    assert_eq!(months, (1..=48).map(|m| m.to_string()).collect::<Vec<_>>(), "{txt}");
    let totals: Vec<&str> = catch_up.lines().filter(|l| l.trim_start().starts_with("total")).collect();
    assert_eq!(totals.iter().map(|l| l.split_whitespace().last().unwrap()).collect::<Vec<_>>(), ["365", "0"]);

    // 1,465 readings: weeks 1 to 209, in the file and in the bucket.
    let v2 = &out[&4];
    assert_has(
        v2,
        &[
            "dry run: nothing is consumed, written or committed",
            "weather_aggregation.csv: a new output, from the beginning",
            "uploads: s3://weather-aggregation/weather_aggregation.csv at http://127.0.0.1:",
            "readings consumed:  1,465 ",
            "windows written:    209 complete",
            "week_id,avg_temp,avg_co,avg_humidity\n1,",
        ],
        4,
    );
    let csv = std::fs::read(dir.path().join("weather_aggregation.csv")).unwrap();
    let object = dir.path().join(".stack/s3/weather-aggregation/weather_aggregation.csv");
    assert_eq!(std::fs::read(object).unwrap(), csv, "the object equals the file");
    // psql shows the table's first weeks: those of the file.
    let table: Vec<String> = v2
        .split("$ psql")
        .nth(1)
        .expect("the psql query ran")
        .lines()
        .skip(3)
        .take(3)
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>().join(","))
        .collect();
    let file: Vec<String> = String::from_utf8_lossy(&csv).lines().skip(1).take(3).map(str::to_string).collect();
    assert_eq!(table, file, "{v2}");

    assert_has(v2, &["table:              topic `weather.aggregates` (idempotent writes) (209 windows sent)"], 4);

    // The report of the topic: 209 weeks of sensor-1, none missing, the table as the file's rows.
    let report = &out[&5];
    assert_has(
        report,
        &[
            "read `weather.aggregates`: 209 records from 3 partitions",
            "table: 209 windows",
            "sensor-1      209      1    209        0",
            "$ head -n 3 weather_report.csv\nsensor_id,week_id,avg_temp,avg_co,avg_humidity\nsensor-1,1,",
        ],
        5,
    );
    let table = std::fs::read_to_string(dir.path().join("weather_report.csv")).unwrap();
    let rows: Vec<&str> = table.lines().skip(1).map(|l| l.strip_prefix("sensor-1,").unwrap()).collect();
    assert_eq!(
        rows,
        String::from_utf8_lossy(&csv).lines().skip(1).collect::<Vec<_>>(),
        "the report's table is the file"
    );
    let page = std::fs::read_to_string(dir.path().join("weather_report.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("sensor-1"), "the HTML report charts sensor-1");

    // The fourth year again: the weeks of the first three years are kept.
    let replay = &out[&6];
    assert_has(replay, &["rolled back from ", "kept 1-"], 6);
    let kept: u64 = replay.split("kept 1-").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    assert!(
        (140..=157).contains(&kept),
        "the weeks before the fourth year (157 of them) are kept, but for a few: {kept}\n{replay}"
    );
    assert_eq!(std::fs::read(dir.path().join("weather_aggregation.csv")).unwrap(), csv, "recomputed the same");
    // The lake: 1,465 readings, all of this hour or the last few, each once.
    let lake = &out[&7];
    assert_has(lake, &["readings archived:  1,465 ", "files written:      ", "readings rejected:  0", "avg_temp"], 7);
    let counted: u64 = lake
        .lines()
        .filter(|l| l.starts_with("│ 20"))
        .map(|l| l.split('│').nth(3).unwrap().trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, 1_465, "DuckDB counts every reading once:\n{lake}");
    assert_has(&out[&8], &["stopped tansu", "stopped s3s-fs", "stopped postgres"], 8);
}
