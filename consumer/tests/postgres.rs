//! The warehouse table on a real PostgreSQL server (started by the test, see
//! `testkit::PostgresServer`): the table equals the CSV row for row, a SIGKILL at any moment or
//! a server restart changes nothing, a rebuild under other rules keeps the first rule set's
//! rows, the password shows nowhere, and bad configuration is named.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;
use testkit::{PostgresServer, Tansu};

const PARTITIONS: u32 = 4;
/// The crash test's readings: 8 sensors of 12,500 days, 100,000 in all.
const DAYS: u64 = 12_500;
const SENSORS: u32 = 8;
/// The table's rows of the crash tests' rules, as the CSV writes them.
const WEEKLY_ROWS: &str = "SELECT sensor_id, window_id, avg_temp, avg_co, avg_humidity FROM weather_aggregates \
                           WHERE window_days = 7 AND unit = 'fahrenheit' ORDER BY sensor_id, window_id";

/// The consumer binary (see [`consumer_command`]) loading the table of `pg`, PGPASSWORD set;
/// stdout to `log`, stderr to `log.err`.
fn consumer(tansu: &Tansu, pg: &PostgresServer, args: &[&str], log: &Path) -> Running {
    let mut command = consumer_command(&tansu.bootstrap(), args);
    command.args(["--to-postgres", &pg.url()]).env("PGPASSWORD", pg.password());
    spawn_logged(&mut command, log)
}

/// Runs the consumer to its end, successfully; its summary.
fn run_consumer(tansu: &Tansu, pg: &PostgresServer, args: &[&str], log: &Path) -> String {
    finish(consumer(tansu, pg, args, log), log, &format!("{args:?}")).0
}

/// The rows of a CSV with a sensor column, as (sensor, week, temp, co, humidity) strings.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows: Vec<Vec<String>> =
        text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>()).collect();
    rows.sort_by(|a, b| (&a[0], a[1].parse::<u64>().unwrap()).cmp(&(&b[0], b[1].parse::<u64>().unwrap())));
    rows
}

fn table_rows(pg: &PostgresServer, sql: &str) -> Vec<Vec<String>> {
    pg.query(sql).into_iter().map(|r| r.into_iter().map(Option::unwrap).collect()).collect()
}

/// The table holds, row for row, what the CSV holds, with each row's rule set, readings and
/// day range; a run with the table as its only output (`--no-file`) writes the same rows.
fn table_equals_the_csv(sensors: u32, days: u64) {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", PARTITIONS);
    tansu.produce_in_small_batches(days, sensors);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("weekly.csv");
    let summary = run_consumer(&tansu, &pg, &["-o", csv.to_str().unwrap()], &dir.path().join("run.log"));
    let expected = csv_rows(&csv);
    assert_eq!(expected.len() as u64, u64::from(sensors) * (days / 7));
    assert_eq!(table_rows(&pg, WEEKLY_ROWS), expected);
    assert!(summary.contains(&format!("({} windows sent)", expected.len())), "{summary}");
    let bounds = table_rows(
        &pg,
        "SELECT DISTINCT readings, last_record_id - first_record_id + 1, (last_record_id + 6) / 7 - window_id \
         FROM weather_aggregates",
    );
    assert_eq!(bounds, [["7", "7", "0"]], "every week of 7 readings, days (w-1)*7+1 ..= w*7");
    assert_eq!(table_rows(&pg, "SELECT count(*) FROM weather_aggregates_staging"), [["0"]]);

    run_consumer(
        &tansu,
        &pg,
        &["--no-file", "--postgres-table", "alone", "-g", "alone"],
        &dir.path().join("alone.log"),
    );
    assert_eq!(table_rows(&pg, &WEEKLY_ROWS.replace("weather_aggregates", "alone")), expected);
}

/// One sensor: the table equals the CSV row for row.
#[test]
fn table_equals_the_csv_with_one_sensor() {
    table_equals_the_csv(1, 1000);
}

/// Eight sensors over four partitions: the table equals the CSV row for row.
#[test]
fn table_equals_the_csv_with_eight_sensors() {
    table_equals_the_csv(8, 700);
}

/// SIGKILL at 20 random moments of a 100,000-reading replay with `--to-postgres`: after every
/// kill the table, its staging rows included, holds only rows of the uninterrupted run, each
/// once (the primary key would refuse a second); at the end it holds exactly the
/// uninterrupted run's rows, as does the file. With `rebuild`, the table already holds this
/// rule set's rows, with other values (the uninterrupted run's, each `avg_co` one higher), so
/// the crashed run rebuilds them beside the old ones: after every kill readers see all the old
/// rows or all the new ones, never half of each, and at the end the new ones. Without, the
/// crashed run loads the rule set in place, and readers see per sensor exactly the weeks the
/// committed offsets complete.
fn sigkill_scenario(extra: &[&str], table: &str, rebuild: bool) {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", PARTITIONS);
    tansu.produce_in_small_batches(DAYS, SENSORS);
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    run_consumer(
        &tansu,
        &pg,
        &[
            "-o",
            reference.to_str().unwrap(),
            "-g",
            "reference",
            "--postgres-table",
            if rebuild { table } else { "reference" },
        ],
        &dir.path().join("reference.log"),
    );
    let expected = csv_rows(&reference);
    assert_eq!(expected.len() as u64, u64::from(SENSORS) * (DAYS / 7));
    let readings = tansu.read_all("weather");
    let reference_rows: Vec<String> = expected.iter().map(|row| row.join(",")).collect();
    oracle::assert_reference_is_the_spec(&reference_rows, &readings);
    let old: Vec<Vec<String>> = if rebuild {
        // The rows a rebuild must replace: this rule set's, with values the new ones do not have.
        pg.query(&format!("UPDATE {table} SET avg_co = avg_co + 1"));
        let old: Vec<Vec<String>> = expected
            .iter()
            .map(|row| {
                let mut row = row.clone();
                row[3] = (row[3].parse::<i64>().unwrap() + 1).to_string();
                row
            })
            .collect();
        assert_eq!(table_rows(&pg, &WEEKLY_ROWS.replace("weather_aggregates", table)), old, "the old rows");
        old
    } else {
        Vec::new()
    };

    let (seed, mut rng) = kill_moments();
    let crashed = dir.path().join("crashed.csv");
    let mut flags = vec!["-g", "crashed", "--postgres-table", table];
    flags.extend(extra);
    if !extra.contains(&"--no-file") {
        flags.extend(["-o", crashed.to_str().unwrap()]);
    }
    // The killed runs are slowed down, so that a kill lands mid-run; the last run is not.
    let unthrottled = flags.clone();
    flags.extend(testkit::THROTTLE);
    // Until the first run has committed, its tables may not exist yet; after that, every query
    // must succeed (an error is a failure, not "no rows").
    let created = std::cell::Cell::new(false);
    let query = |sql: &str| -> Vec<Vec<Option<String>>> {
        match pg.try_query(sql) {
            Ok(rows) => rows,
            Err(e) if !created.get() && e.contains(UNDEFINED_TABLE) => Vec::new(),
            Err(e) => panic!("{sql}: {e}"),
        }
    };
    let rows = |which: &str| -> Vec<Vec<String>> {
        let sql = WEEKLY_ROWS.replace("FROM weather_aggregates", &format!("FROM {table}{which}"));
        query(&sql).into_iter().map(|r| r.into_iter().map(Option::unwrap).collect()).collect()
    };
    let committed = || -> i64 {
        let sql =
            format!("SELECT coalesce(sum(next_offset), 0) FROM {table}_progress WHERE consumer_group = 'crashed'");
        query(&sql).first().map_or(0, |row| row[0].as_deref().unwrap().parse().unwrap())
    };
    for kill in 0..20 {
        let context = format!("after kill {}, CRASH_SEED={seed}", kill + 1);
        let before = committed();
        let log = dir.path().join(format!("run-{kill}.log"));
        let child = consumer(&tansu, &pg, &flags, &log);
        kill_at_random_moment(child, kill, &mut rng, || committed() != before, &log, &context);
        created.set(true);
        let visible = rows("");
        if rebuild {
            assert!(
                visible == old || visible == expected,
                "{context}: {} rows visible during the rebuild, neither all the old ones nor all the new ones",
                visible.len()
            );
        } else {
            let offsets = progress(&pg, table, "crashed");
            assert_committed_prefix(&visible, &expected, &readings, &offsets, &context);
        }
        // Rows of the rebuild under way: each a row of the reference.
        for row in rows("_staging") {
            assert!(expected.binary_search_by(|e| cmp_rows(e, &row)).is_ok(), "{context}: staged row {row:?}");
        }
    }
    let summary = run_consumer(&tansu, &pg, &unthrottled, &dir.path().join("final.log"));
    let context = format!("after 20 kills, CRASH_SEED={seed}");
    assert!(summary.contains("readings rejected:  0"), "{context}:\n{summary}");
    assert_eq!(rows(""), expected, "{context}: the table");
    assert_eq!(rows("_staging"), Vec::<Vec<String>>::new(), "{context}: nothing left staged");
    if !extra.contains(&"--no-file") {
        assert_eq!(csv_rows(&crashed), expected, "{context}: the file");
    }
    assert_eq!(committed(), i64::try_from(DAYS * u64::from(SENSORS)).unwrap());
}

/// PostgreSQL's code for a table that does not exist (as `try_query` prints it).
const UNDEFINED_TABLE: &str = "E42P01";

/// The next offset per partition that `group` committed to `table`'s progress.
fn progress(pg: &PostgresServer, table: &str, group: &str) -> BTreeMap<i32, i64> {
    let sql = format!("SELECT partition, next_offset FROM {table}_progress WHERE consumer_group = '{group}'");
    table_rows(pg, &sql).into_iter().map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap())).collect()
}

/// Fails unless `visible` (rows as [`WEEKLY_ROWS`] gives them) is, per sensor, exactly the
/// first rows of `expected` that the committed `offsets` account for: the weeks completed by
/// the sensor's readings before its partition's committed offset, no more (a row whose
/// readings are not committed leaked) and no fewer (a committed row was lost).
fn assert_committed_prefix(
    visible: &[Vec<String>],
    expected: &[Vec<String>],
    readings: &[testkit::Record],
    offsets: &BTreeMap<i32, i64>,
    context: &str,
) {
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    for record in readings {
        if record.offset < offsets.get(&record.partition).copied().unwrap_or(0) {
            let value: serde_json::Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
            *counted.entry(value["sensor_id"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let committed: Vec<&Vec<String>> = expected
        .chunk_by(|a, b| a[0] == b[0])
        .flat_map(|rows| &rows[..counted.get(&rows[0][0]).map_or(0, |&n| n / 7)])
        .collect();
    if let Some(i) = (0..visible.len().min(committed.len())).find(|&i| &visible[i] != committed[i]) {
        panic!("{context}: visible row {} is {:?}, the committed offsets give {:?}", i + 1, visible[i], committed[i]);
    }
    assert_eq!(
        visible.len(),
        committed.len(),
        "{context}: rows visible, and rows the committed offsets {offsets:?} complete"
    );
}

fn cmp_rows(a: &[String], b: &[String]) -> std::cmp::Ordering {
    (&a[0], a[1].parse::<u64>().unwrap(), &a[2..]).cmp(&(&b[0], b[1].parse::<u64>().unwrap(), &b[2..]))
}

/// 20 random SIGKILLs during a 100,000-reading replay with `--to-postgres` beside the file,
/// rebuilding rows the table holds, change nothing: readers see the whole rule set throughout,
/// and the table and the file end with the uninterrupted run's rows, each once.
#[test]
fn sigkill_at_random_moments_changes_nothing_in_the_table() {
    sigkill_scenario(&[], "crashed", true);
}

/// The same with the table as the only output (its open windows live in the state table),
/// loading a rule set the table does not hold yet: readers see each sensor's first weeks.
#[test]
fn sigkill_with_the_table_alone_changes_nothing() {
    sigkill_scenario(&["--no-file"], "alone", false);
}

/// SIGKILL while rows are on their way to the table ahead of their commit (the server shows
/// their `COPY` running), three times: none of those rows is ever visible (the table holds per
/// sensor exactly the weeks its committed offsets complete), and the run that
/// follows ends with the uninterrupted run's rows in the table and the file, each once.
#[test]
fn sigkill_while_rows_are_sent_ahead_changes_nothing() {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", PARTITIONS);
    tansu.produce_in_small_batches(DAYS, SENSORS);
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    let reference_flags = ["-o", reference.to_str().unwrap(), "-g", "reference", "--postgres-table", "reference"];
    run_consumer(&tansu, &pg, &reference_flags, &dir.path().join("reference.log"));
    let expected = csv_rows(&reference);
    let readings = tansu.read_all("weather");
    let crashed = dir.path().join("crashed.csv");
    // Commits far apart, so that rows pile up and go ahead between them.
    let mut flags = vec!["-o", crashed.to_str().unwrap(), "-g", "crashed", "--postgres-table", "ahead"];
    flags.extend(["--checkpoint-interval", "60"]);
    flags.extend(testkit::THROTTLE);
    let rows = || table_rows(&pg, &WEEKLY_ROWS.replace("weather_aggregates", "ahead"));
    let copying = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'weather' AND query LIKE 'COPY ahead %'";
    for kill in 1..=3 {
        let log = dir.path().join(format!("run-{kill}.log"));
        let mut child = consumer(&tansu, &pg, &flags, &log);
        let deadline = Instant::now() + Duration::from_secs(60);
        while pg.query(copying) != [[Some("1".to_string())]] {
            if let Some(status) = child.try_wait().unwrap() {
                let (summary, stderr) = (std::fs::read_to_string(&log), std::fs::read_to_string(err_path(&log)));
                panic!("run {kill} ended ({status}) before sending rows ahead:\n{summary:?}\n{stderr:?}");
            }
            assert!(Instant::now() < deadline, "run {kill} sent no rows ahead within 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while pg.query(copying) != [[Some("0".to_string())]] {
            assert!(Instant::now() < deadline, "the server kept the killed run's COPY");
            std::thread::sleep(Duration::from_millis(5));
        }
        let visible = rows();
        assert!(visible.len() < expected.len(), "kill {kill}: the run had rows left to send");
        let offsets = progress(&pg, "ahead", "crashed");
        assert_committed_prefix(&visible, &expected, &readings, &offsets, &format!("kill {kill}"));
    }
    run_consumer(&tansu, &pg, &flags, &dir.path().join("final.log"));
    assert_eq!(rows(), expected, "the table");
    assert_eq!(csv_rows(&crashed), expected, "the file");
}

/// A PostgreSQL restart mid-run (an immediate shutdown, away for a few seconds) changes
/// nothing: the consumer says it lost the connection, reconnects, and ends with the
/// uninterrupted run's rows in the table and the file, each once.
#[test]
fn postgres_restart_mid_run_changes_nothing() {
    let (tansu, mut pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", PARTITIONS);
    tansu.produce_in_small_batches(DAYS / 5, SENSORS);
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    run_consumer(
        &tansu,
        &pg,
        &["-o", reference.to_str().unwrap(), "-g", "reference", "--postgres-table", "reference"],
        &dir.path().join("reference.log"),
    );
    let expected = csv_rows(&reference);
    let output = dir.path().join("restarted.csv");
    let mut flags = vec!["-o", output.to_str().unwrap(), "-g", "restarted", "--postgres-table", "restarted"];
    flags.extend(testkit::THROTTLE);
    let log = dir.path().join("restarted.log");
    let mut child = consumer(&tansu, &pg, &flags, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let partitions_committed = || pg.try_query("SELECT count(*) FROM restarted_progress").ok()?.first()?[0].clone();
    while partitions_committed().as_deref() != Some("4") {
        assert!(Instant::now() < deadline, "no progress before the restart");
        assert!(child.try_wait().unwrap().is_none(), "the consumer ended before the restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    pg.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(err_path(&log)).unwrap().contains("lost the connection") {
        assert!(Instant::now() < deadline, "the consumer did not notice the server was gone");
        assert!(child.try_wait().unwrap().is_none(), "the consumer ended while the server was away");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "the consumer ended while the server was away");
    pg.start_again();
    let status = child.wait().unwrap();
    let (summary, stderr) = (std::fs::read_to_string(&log).unwrap(), std::fs::read_to_string(err_path(&log)).unwrap());
    assert!(status.success(), "{status}\n{summary}\n{stderr}");
    assert_eq!(table_rows(&pg, &WEEKLY_ROWS.replace("weather_aggregates", "restarted")), expected);
    assert_eq!(csv_rows(&output), expected);
}

/// A second rule set in the same table adds its rows beside the first's; rebuilding the
/// first from the beginning gives it the same rows again and leaves the second's alone.
#[test]
fn a_rebuild_under_other_rules_keeps_the_first_rule_sets_rows() {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", PARTITIONS);
    tansu.produce_in_small_batches(400, 3);
    let dir = tempfile::tempdir().unwrap();
    let weekly = dir.path().join("weekly.csv");
    run_consumer(&tansu, &pg, &["-o", weekly.to_str().unwrap()], &dir.path().join("1.log"));
    let weeks = csv_rows(&weekly);
    assert_eq!(table_rows(&pg, WEEKLY_ROWS), weeks);
    let monthly = dir.path().join("monthly.csv");
    let monthly_flags = ["-o", monthly.to_str().unwrap(), "--window", "month", "--unit", "celsius"];
    run_consumer(&tansu, &pg, &monthly_flags, &dir.path().join("2.log"));
    let months = csv_rows(&monthly);
    let monthly_rows =
        WEEKLY_ROWS.replace("window_days = 7 AND unit = 'fahrenheit'", "window_days = 30 AND unit = 'celsius'");
    assert_eq!(table_rows(&pg, &monthly_rows), months);
    assert_eq!(table_rows(&pg, WEEKLY_ROWS), weeks, "the first rule set's rows are kept");
    run_consumer(&tansu, &pg, &["-o", weekly.to_str().unwrap(), "--from-beginning"], &dir.path().join("3.log"));
    assert_eq!(table_rows(&pg, WEEKLY_ROWS), weeks, "rebuilt");
    assert_eq!(table_rows(&pg, &monthly_rows), months, "the other rule set's rows are left alone");
    let count = table_rows(&pg, "SELECT count(*) FROM weather_aggregates");
    assert_eq!(count, [[(weeks.len() + months.len()).to_string()]]);
}

/// The password is in no process argument and no log line, even at the most verbose level,
/// and the server received it (the consumer signed in with it).
#[test]
fn the_password_shows_nowhere() {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", 1);
    tansu.produce_in_small_batches(2000, 1);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let mut child = spawn_logged(
        Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
            .args(["-b", &tansu.bootstrap(), "--preset", "v2", "--no-file", "--until-end", "--to-postgres", &pg.url()])
            .args(testkit::THROTTLE)
            .env("PGPASSWORD", pg.password())
            .env("RUST_LOG", "trace"),
        &log,
    );
    let mut seen_running = false;
    while child.try_wait().unwrap().is_none() {
        if let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", child.id())) {
            seen_running |= !cmdline.is_empty();
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(!cmdline.contains(pg.password()), "the password is in the arguments: {cmdline}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen_running, "the consumer's arguments were never seen");
    let (stdout, stderr) = (std::fs::read_to_string(&log).unwrap(), std::fs::read_to_string(err_path(&log)).unwrap());
    assert!(stdout.contains("windows written:    285 complete"), "{stdout}\n{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(pg.password()), "the password was printed:\n{text}");
    }
    assert!(pg.log().contains("connection authorized: user=weather database=weather"), "signed in with it");
}

fn run_binary(args: &[&str], password: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(args)
        .env("PGPASSWORD", password)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, started.elapsed())
}

/// An unreachable server is retried, then reported by host and port; wrong credentials, a
/// missing database and a table with other columns stop the consumer at once, each named, and
/// the table is left as it was.
#[test]
fn bad_configuration_is_named() {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", 1);
    tansu.produce_in_small_batches(30, 1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let bootstrap = tansu.bootstrap();
    let base = ["-b", &bootstrap, "--until-end", "-o", out.to_str().unwrap(), "--connect-timeout", "3"];
    let run = |url: &str, extra: &[&str], password: &str| {
        let args: Vec<&str> = base.iter().copied().chain(["--to-postgres", url]).chain(extra.iter().copied()).collect();
        let (out, took) = run_binary(&args, password);
        assert!(!out.status.success(), "{args:?} succeeded");
        (String::from_utf8_lossy(&out.stderr).to_string(), took)
    };

    let closed = testkit::free_port();
    let unreachable = format!("postgres://weather@127.0.0.1:{closed}/weather");
    let (err, took) = run(&unreachable, &["--postgres-connect-timeout", "4"], pg.password());
    assert!(err.contains(&format!("PostgreSQL at 127.0.0.1:{closed} is unreachable after")), "{err}");
    assert!(err.contains("retrying") && took >= Duration::from_secs(2), "retried for {took:?}: {err}");

    // Stopped at once: no retry said, and well short of the connect timeout that a retried
    // failure would wait out (a generous bound: a debug run beside other tests' servers).
    let (err, took) = run(&pg.url(), &["--postgres-connect-timeout", "30"], "not-the-password");
    assert!(err.contains("refused user `weather`") && err.contains("PGPASSWORD"), "{err}");
    assert!(!err.contains("retrying"), "wrong credentials stop at once, not retried: {err}");
    assert!(took < Duration::from_secs(15), "wrong credentials stop at once, not after {took:?}");
    assert!(!err.contains("not-the-password"), "{err}");

    let (err, _) = run(&format!("postgres://weather@127.0.0.1:{}/nosuch", pg.port()), &[], pg.password());
    assert!(err.contains("database `nosuch` does not exist") && err.contains("createdb nosuch"), "{err}");

    pg.query("CREATE TABLE other (sensor_id text, reading integer)");
    pg.query("INSERT INTO other VALUES ('kept', 1)");
    let (err, _) = run(&pg.url(), &["--postgres-table", "other"], pg.password());
    assert!(err.contains("table other on 127.0.0.1:") && err.contains("other columns"), "{err}");
    assert!(err.contains("it lacks ") && err.contains("window_id") && err.contains("reading besides"), "{err}");
    assert_eq!(table_rows(&pg, "SELECT * FROM other"), [["kept", "1"]], "left as it was");
}

/// A table ahead of the file (as a crash between the table's commit and the file's checkpoint
/// leaves it) is not sent again the windows it holds, and both end with the uninterrupted
/// run's rows; a table behind the file (here: one that never saw this output) is refused with
/// the command that rebuilds both.
#[test]
fn a_table_ahead_catches_up_and_one_behind_is_refused() {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", PARTITIONS);
    tansu.produce_in_small_batches(350, 4);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("weekly.csv");
    let checkpoint = dir.path().join("weekly.csv.checkpoint");
    let flags = ["-o", output.to_str().unwrap()];
    run_consumer(&tansu, &pg, &flags, &dir.path().join("1.log"));
    let (early_file, early_checkpoint) = (std::fs::read(&output).unwrap(), std::fs::read(&checkpoint).unwrap());
    tansu.produce_in_small_batches(350, 4);
    run_consumer(&tansu, &pg, &flags, &dir.path().join("2.log"));
    let expected = csv_rows(&output);
    assert_eq!(expected.len(), 4 * 100);
    // The file goes back to where it stood after the first run; the table stays.
    std::fs::write(&output, early_file).unwrap();
    std::fs::write(&checkpoint, early_checkpoint).unwrap();
    let summary = run_consumer(&tansu, &pg, &flags, &dir.path().join("3.log"));
    assert!(summary.contains("(0 windows sent)"), "the table held every window:\n{summary}");
    let stderr = std::fs::read_to_string(err_path(&dir.path().join("3.log"))).unwrap();
    assert!(stderr.contains("is ahead of the output"), "{stderr}");
    assert_eq!(csv_rows(&output), expected);
    assert_eq!(table_rows(&pg, WEEKLY_ROWS), expected);

    let log = dir.path().join("4.log");
    let status = consumer(&tansu, &pg, &[&flags[..], &["--postgres-table", "fresh"]].concat(), &log).wait().unwrap();
    let stderr = std::fs::read_to_string(err_path(&log)).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("PostgreSQL table fresh on") && stderr.contains("cannot follow"), "{stderr}");
    assert!(stderr.contains("--from-beginning"), "{stderr}");
    run_consumer(&tansu, &pg, &[&flags[..], &["--postgres-table", "fresh", "--from-beginning"]].concat(), &log);
    assert_eq!(table_rows(&pg, &WEEKLY_ROWS.replace("weather_aggregates", "fresh")), expected);
}

/// A consumer that follows the topic makes its rebuild visible once it has read to the end of
/// every partition, without waiting for new readings or its own end.
#[test]
fn a_following_rebuild_is_made_visible_once_caught_up() {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", PARTITIONS);
    tansu.produce_in_small_batches(700, 4);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("weekly.csv");
    run_consumer(&tansu, &pg, &["-o", output.to_str().unwrap()], &dir.path().join("1.log"));
    let expected = csv_rows(&output);
    let commits = || -> i64 { table_rows(&pg, "SELECT commits FROM weather_aggregates_state")[0][0].parse().unwrap() };
    let before = commits();
    let log = dir.path().join("follow.log");
    let mut child = spawn_logged(
        Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
            .args(["-b", &tansu.bootstrap(), "--window", "week", "--unit", "fahrenheit", "--format", "csv"])
            .args(["--sensor-column", "--from-beginning", "-o", output.to_str().unwrap(), "--to-postgres", &pg.url()])
            .env("PGPASSWORD", pg.password()),
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    // The rebuild's first commit marks it under way; a later one without the mark swapped it in.
    let rebuilt =
        || table_rows(&pg, "SELECT rebuilding FROM weather_aggregates_state") == [["f"]] && commits() >= before + 2;
    while !rebuilt() {
        assert!(Instant::now() < deadline, "the rebuild was not made visible within 30 s");
        assert!(child.try_wait().unwrap().is_none(), "the follower ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(table_rows(&pg, "SELECT count(*) FROM weather_aggregates_staging"), [["0"]]);
    assert_eq!(table_rows(&pg, WEEKLY_ROWS), expected);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// One writer per table and rule set: a second consumer of the same rules into the same table
/// (another output, another group) is refused at once, naming the first's server process, and
/// changes nothing; once the first has stopped, the second may rebuild the rule set.
#[test]
fn a_second_writer_of_a_rule_set_is_refused() {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", 1);
    tansu.produce_in_small_batches(70, 1);
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first.csv"), dir.path().join("second.csv"));
    let log = dir.path().join("first.log");
    let mut follower = spawn_logged(
        Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
            .args(["-b", &tansu.bootstrap(), "--window", "week", "--unit", "fahrenheit", "--format", "csv"])
            .args(["--sensor-column", "-o", first.to_str().unwrap(), "--to-postgres", &pg.url()])
            .env("PGPASSWORD", pg.password()),
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = || pg.try_query("SELECT count(*) FROM weather_aggregates").ok().and_then(|r| r[0][0].clone());
    while rows().as_deref() != Some("10") {
        assert!(Instant::now() < deadline, "the first consumer loaded nothing within 30 s");
        assert!(follower.try_wait().unwrap().is_none(), "the first consumer ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log2 = dir.path().join("second.log");
    let status = consumer(&tansu, &pg, &["-o", second.to_str().unwrap()], &log2).wait().unwrap();
    let stderr = std::fs::read_to_string(err_path(&log2)).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("another consumer is writing 7-day windows in fahrenheit to PostgreSQL table"), "{stderr}");
    assert!(stderr.contains("(PostgreSQL backend "), "names the holder: {stderr}");
    assert_eq!(table_rows(&pg, "SELECT count(DISTINCT consumer_group) FROM weather_aggregates_state"), [["1"]]);
    follower.kill().unwrap();
    follower.wait().unwrap();
    run_consumer(&tansu, &pg, &["-o", second.to_str().unwrap()], &log2);
    assert_eq!(table_rows(&pg, WEEKLY_ROWS), csv_rows(&second));
}
