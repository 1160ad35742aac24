//! Scale-out on the real stack (Tansu and PostgreSQL, started by the test): members of a shared
//! group (`--share`) follow a live topic together, one is SIGKILLed with work left and one is
//! paused past its lease, others join and leave, and the table ends equal to the spec's oracle,
//! every window once.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::*;
use testkit::{PostgresServer, Tansu};

const PARTITIONS: i32 = 6;
const SENSORS: u32 = 12;
/// The history already in the topic when the members start, per sensor.
const HISTORY_DAYS: u64 = 350;
const GROUP: &str = "shared";
/// The aggregates topic every member writes beside the table.
const AGGREGATES: &str = "weather.aggregates";
const LEASE: &str = "2";

/// The crash scenario's rules, and version 1's.
const WEEKLY_F: [&str; 4] = ["--window", "week", "--unit", "fahrenheit"];
const MONTHLY_C: [&str; 4] = ["--window", "month", "--unit", "celsius"];

/// A member of the group with weekly °F rules (unless `extra` gives a --window) and a lease of
/// `LEASE` (unless `extra` gives one), following the topic (no `--until-end`), its log at info
/// level.
fn member(tansu: &Tansu, pg: &PostgresServer, name: &str, dir: &Path, extra: &[&str]) -> (Running, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_weather-consumer"));
    let rules: &[&str] = if extra.contains(&"--window") { &[] } else { &WEEKLY_F };
    let lease: &[&str] = if extra.contains(&"--lease") { &[] } else { &["--lease", LEASE] };
    command
        .args(["-b", &tansu.bootstrap(), "--connect-timeout", "20"])
        .args(rules)
        .args(["--share", "-g", GROUP, "--member", name, "--no-file"])
        .args(lease)
        .args(["--to-postgres", &pg.url(), "--to-topic", AGGREGATES])
        .args(extra)
        .env("PGPASSWORD", pg.password())
        .env("RUST_LOG", "info");
    (spawn_logged(&mut command, &log), log)
}

/// The partitions a member last said it reads, from its log; empty before it said so.
fn reads(log: &Path) -> BTreeSet<i32> {
    let text = std::fs::read_to_string(err_path(log)).unwrap_or_default();
    let Some(line) = text.lines().rev().find(|l| l.contains("reads partitions [")) else { return BTreeSet::new() };
    let list = line.rsplit_once('[').unwrap().1.trim_end_matches(']');
    list.split(", ").filter(|s| !s.is_empty()).map(|p| p.parse().unwrap()).collect()
}

/// Waits until the members of `logs` (named by their logs' file names) read, as their logs say,
/// the partitions the README's deal gives them: round-robin over the members in name order.
/// The deal shares every partition, none twice. Returns what each reads.
fn shared_by(logs: &[&Path], what: &str) -> Vec<BTreeSet<i32>> {
    let names: Vec<&str> = logs.iter().map(|l| l.file_stem().unwrap().to_str().unwrap()).collect();
    let deal = testkit::deal(&names, PARTITIONS);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: Vec<BTreeSet<i32>> = logs.iter().map(|l| reads(l)).collect();
        if held == deal {
            return held;
        }
        if Instant::now() > deadline {
            let text: Vec<String> =
                logs.iter().map(|l| std::fs::read_to_string(err_path(l)).unwrap_or_default()).collect();
            panic!("{what}: the members read {held:?}, never the deal {deal:?}\n{}", text.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `status -g` lists the members with the partitions they read, and each partition's owner
/// and epoch (at least 1: claimed) as the members' logs say: asked again until it does, for up
/// to 60 s (a member that missed its lease on a busy machine is dealt its share again).
fn assert_status_shows(tansu: &Tansu, pg: &PostgresServer, members: &[(&str, &BTreeSet<i32>)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Err(mismatch) = status_shows(tansu, pg, members) else { return };
        assert!(Instant::now() < deadline, "{mismatch}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `status -g` shows what [`assert_status_shows`] says; if not, what it shows.
fn status_shows(tansu: &Tansu, pg: &PostgresServer, members: &[(&str, &BTreeSet<i32>)]) -> Result<(), String> {
    let output = Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["status", "-b", &tansu.bootstrap(), "-g", GROUP, "--to-postgres", &pg.url(), "--json"])
        .env("PGPASSWORD", pg.password())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let listed: Vec<(String, BTreeSet<i32>)> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let partitions = m["partitions"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap() as i32);
            (m["member"].as_str().unwrap().to_string(), partitions.collect())
        })
        .collect();
    let wanted: Vec<(String, BTreeSet<i32>)> = members.iter().map(|(m, p)| (m.to_string(), (*p).clone())).collect();
    if listed != wanted {
        return Err(format!("the members listed {listed:?}, not {wanted:?}: {status}"));
    }
    for p in status["partitions"].as_array().unwrap() {
        let partition = p["partition"].as_i64().unwrap() as i32;
        let owner = members.iter().find(|(_, held)| held.contains(&partition)).unwrap().0;
        if p["owner"] != owner || p["epoch"].as_i64().unwrap() < 1 {
            return Err(format!("partition {partition} is not claimed by {owner}: {status}"));
        }
    }
    Ok(())
}

/// Sends `signal` to `child`.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// Next offset per partition in the group's state, none where no member has committed yet;
/// empty before the first member has joined.
fn committed(pg: &PostgresServer) -> Vec<Option<i64>> {
    // Before a member has made the table, none.
    let rows = pg
        .try_query(&format!(
            "SELECT next_offset FROM weather_aggregates_partitions WHERE consumer_group = '{GROUP}' ORDER BY partition"
        ))
        .unwrap_or_default();
    rows.into_iter().map(|r| r[0].as_ref().map(|o| o.parse().unwrap())).collect()
}

/// Waits until the group's state has every partition of `weather` up to `end`.
fn caught_up(pg: &PostgresServer, end: &[i64], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let behind =
        |state: Vec<Option<i64>>| state.len() != end.len() || state.iter().zip(end).any(|(s, &e)| s.unwrap_or(0) < e);
    while behind(committed(pg)) {
        assert!(Instant::now() < deadline, "{what}: the members never caught up: {:?} / {end:?}", committed(pg));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The table's rows of `days`-day windows in `unit`, as the oracle's `sensor,id,temp,co,humidity`, sorted.
fn table_rows(pg: &PostgresServer, days: u32, unit: &str) -> Vec<String> {
    let mut rows: Vec<String> = pg
        .query(&format!(
            "SELECT sensor_id || ',' || window_id || ',' || avg_temp || ',' || avg_co || ',' || avg_humidity \
             FROM weather_aggregates WHERE window_days = {days} AND unit = '{unit}'"
        ))
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    rows.sort();
    rows
}

/// The oracle's complete windows of `size` readings, as [`table_rows`] gives them.
fn oracle_rows(records: &[testkit::Record], size: u64, fahrenheit: bool) -> Vec<String> {
    let mut rows: Vec<String> = oracle::windows(records, size, fahrenheit, false)
        .into_iter()
        .flat_map(|(sensor, rows)| rows.into_iter().map(move |row| format!("{sensor},{row}")))
        .collect();
    rows.sort();
    rows
}

/// Asserts `rows` equal `expected`, naming the first difference.
fn assert_rows(rows: &[String], expected: &[String], what: &str) {
    assert_eq!(rows.len(), expected.len(), "{what}: windows in the table and in the oracle");
    if let Some(i) = (0..rows.len()).find(|&i| rows[i] != expected[i]) {
        panic!("{what}: row {i}: the table has {:?}, the oracle {:?}", rows[i], expected[i]);
    }
}

/// The aggregates topic read as a table, as a reader of it does: the latest value per key, a
/// tombstone deleting it. Its windows as the oracle's `sensor,id,temp,co,humidity`, sorted,
/// and the rule sets (window length, unit) they were computed with.
fn topic_rows(tansu: &Tansu) -> (Vec<String>, BTreeSet<(u64, String)>) {
    let mut table = std::collections::BTreeMap::new();
    for record in tansu.read_all(AGGREGATES) {
        let key = record.key.expect("every window has a key");
        match record.value {
            Some(value) => table.insert(key, serde_json::from_slice::<serde_json::Value>(&value).unwrap()),
            None => table.remove(&key),
        };
    }
    let rules = table.values().map(|v| (v["window_days"].as_u64().unwrap(), v["unit"].as_str().unwrap().into()));
    let rules = rules.collect();
    let mut rows: Vec<String> = table
        .values()
        .map(|v| {
            let temp = v["avg_temp"].as_f64().unwrap();
            format!(
                "{},{},{temp:.1},{},{}",
                v["sensor_id"].as_str().unwrap(),
                v["window_id"],
                v["avg_co"],
                v["avg_humidity"]
            )
        })
        .collect();
    rows.sort();
    (rows, rules)
}

/// The end of each of the `partitions` of `weather`, as read now.
fn ends(tansu: &Tansu, partitions: i32) -> Vec<i64> {
    let records = tansu.read_all("weather");
    (0..partitions)
        .map(|p| records.iter().filter(|r| r.partition == p).map(|r| r.offset + 1).max().unwrap_or(0))
        .collect()
}

/// The stack of the scenarios on a live topic: Tansu with `PARTITIONS` partitions of
/// `weather` holding `HISTORY_DAYS` of `SENSORS`, a producer adding to it, PostgreSQL, and a
/// directory for the members' logs.
fn live_topic() -> (Tansu, PostgresServer, testkit::LiveProducer, tempfile::TempDir) {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", PARTITIONS as u32);
    tansu.produce_in_small_batches(HISTORY_DAYS, SENSORS);
    let producer = tansu.live_producer(20, SENSORS);
    (tansu, pg, producer, tempfile::tempdir().unwrap())
}

/// Three members share six partitions of a live topic. One is SIGKILLed while it still has
/// readings to commit; its partitions move to the two others once its lease has run out, then a
/// replacement joins and takes its share. One member is paused past its lease (SIGSTOP): its
/// partitions move on, and when it resumes its commit is refused (fenced) instead of writing
/// them twice. One leaves with a SIGTERM. At every settled moment each member's partitions,
/// as its log says, are its own and together all six. At the end the table holds exactly the
/// spec oracle's complete weeks of every reading in the topic, each once.
#[test]
fn members_share_the_partitions_through_kills_pauses_and_joins() {
    let (tansu, pg, producer, dir) = live_topic();

    // The victim commits once a second: it always has readings not committed yet.
    let (mut victim, victim_log) = member(&tansu, &pg, "m1", dir.path(), &["--checkpoint-interval", "1"]);
    let paused_metrics = format!("127.0.0.1:{}", testkit::free_port());
    let (mut paused, paused_log) = member(&tansu, &pg, "m2", dir.path(), &["--metrics-addr", &paused_metrics]);
    let (leaving, leaving_log) = member(&tansu, &pg, "m3", dir.path(), &[]);
    let held = shared_by(&[&victim_log, &paused_log, &leaving_log], "three members");
    assert!(held.iter().all(|h| h.len() == 2), "six partitions among three members: {held:?}");
    assert_status_shows(&tansu, &pg, &[("m1", &held[0]), ("m2", &held[1]), ("m3", &held[2])]);

    // The kill: the victim is running and its partitions have readings beyond its state.
    let victims: BTreeSet<i32> = held[0].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (state, end) = (committed(&pg), ends(&tansu, PARTITIONS));
        if victims.iter().any(|&p| state[p as usize].is_some_and(|o| o > 0 && o < end[p as usize])) {
            break;
        }
        assert!(Instant::now() < deadline, "the victim never had work left: {state:?} / {end:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(victim.try_wait().unwrap().is_none(), "the victim ended before its kill");
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert!(std::fs::read_to_string(&victim_log).unwrap().is_empty(), "the killed member printed a summary");
    shared_by(&[&paused_log, &leaving_log], "after the kill");

    let (mut replacement, replacement_log) = member(&tansu, &pg, "m4", dir.path(), &[]);
    shared_by(&[&paused_log, &leaving_log, &replacement_log], "after the replacement joined");

    // The pause: its partitions move on while it sleeps; resumed, it is fenced.
    signal(&paused, "STOP");
    shared_by(&[&leaving_log, &replacement_log], "while m2 was paused");
    signal(&paused, "CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(err_path(&paused_log)).unwrap().contains("fenced") {
        assert!(
            Instant::now() < deadline,
            "m2 was never fenced:\n{}",
            std::fs::read_to_string(err_path(&paused_log)).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    shared_by(&[&paused_log, &leaving_log, &replacement_log], "after m2 resumed");
    let fenced = sum(&scrape(&paused_metrics), "weather_consumer_fenced_writes_total", &[]);
    assert!(fenced.is_some_and(|n| n >= 1.0), "m2's metrics count its fenced writes: {fenced:?}");

    signal(&leaving, "TERM");
    let (summary, stderr) = finish(leaving, &leaving_log, "m3's clean leave");
    assert!(stderr.contains("member `m3` left group"), "{stderr}");
    assert!(summary.contains("readings consumed:"), "{summary}");
    shared_by(&[&paused_log, &replacement_log], "after m3 left");

    producer.stop();
    let end = ends(&tansu, PARTITIONS);
    caught_up(&pg, &end, "after the producer stopped");
    for (child, log) in [(&mut paused, &paused_log), (&mut replacement, &replacement_log)] {
        signal(child, "TERM");
        assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(err_path(log)).unwrap());
    }
    let summary = std::fs::read_to_string(&paused_log).unwrap();
    assert!(summary.contains("fenced writes:"), "m2's summary says it was fenced:\n{summary}");
    let records = tansu.read_all("weather");
    assert!(records.len() as u64 > u64::from(SENSORS) * HISTORY_DAYS, "the live producer added readings");
    let oracle = oracle_rows(&records, 7, true);
    assert_rows(&table_rows(&pg, 7, "fahrenheit"), &oracle, "the table");
    let (topic, rules) = topic_rows(&tansu);
    assert_rows(&topic, &oracle, "the aggregates topic read as a table");
    assert_eq!(rules, BTreeSet::from([(7, "fahrenheit".to_string())]));
}

/// Lines of a member's log that say a partition moved to or from it.
fn moves(log: &Path) -> usize {
    let text = std::fs::read_to_string(err_path(log)).unwrap_or_default();
    text.lines().filter(|l| l.contains("claimed partition") || l.contains("handed partition")).count()
}

/// Two members share a live topic when the table is locked for four leases (an index rebuilt,
/// a long report): their commits wait for it. Their heartbeats go on all the same, on
/// connections of their own (each stays younger than the lease), so neither passes for dead:
/// no partition moves, nothing is fenced, and once the lock is gone the table is the oracle's,
/// every window once.
#[test]
fn a_commit_that_waits_longer_than_a_lease_is_no_death() {
    let (tansu, pg, producer, dir) = live_topic();
    let (mut a, a_log) = member(&tansu, &pg, "a", dir.path(), &[]);
    let (mut b, b_log) = member(&tansu, &pg, "b", dir.path(), &[]);
    let held = shared_by(&[&a_log, &b_log], "two members");
    caught_up(&pg, &ends(&tansu, PARTITIONS), "before the lock");
    let moved = (moves(&a_log), moves(&b_log));

    let lease = Duration::from_secs(LEASE.parse().unwrap());
    let lock = format!(
        "BEGIN; LOCK TABLE weather_aggregates IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({}); COMMIT;",
        (lease * 4).as_secs_f64()
    );
    std::thread::scope(|scope| {
        let locker = scope.spawn(|| pg.query(&lock));
        // Both members' commits wait for the lock: they are stuck in it, not merely idle.
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'COPY %'";
        let deadline = Instant::now() + lease * 3;
        while pg.query(waiting)[0][0].as_deref() != Some("2") {
            assert!(Instant::now() < deadline, "the members' commits never both waited for the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Meanwhile each member's heartbeat stays younger than its lease.
        let ages = "SELECT member, extract(epoch FROM now() - seen)::float8 FROM weather_aggregates_members";
        let mut oldest = 0.0_f64;
        while !locker.is_finished() {
            for row in pg.query(ages) {
                let age: f64 = row[1].as_deref().unwrap().parse().unwrap();
                assert!(age < lease.as_secs_f64(), "member {:?}'s heartbeat is {age} s old", row[0]);
                oldest = oldest.max(age);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        locker.join().unwrap();
        println!("the oldest heartbeat while the commits waited: {oldest:.2} s");
    });

    producer.stop();
    caught_up(&pg, &ends(&tansu, PARTITIONS), "after the lock");
    assert_eq!((moves(&a_log), moves(&b_log)), moved, "a partition moved while the commits waited");
    assert_eq!([reads(&a_log), reads(&b_log)], [held[0].clone(), held[1].clone()]);
    for (child, log) in [(&mut a, &a_log), (&mut b, &b_log)] {
        signal(child, "TERM");
        let stderr = std::fs::read_to_string(err_path(log)).unwrap();
        assert!(child.wait().unwrap().success(), "{stderr}");
        assert!(!stderr.contains("fenced"), "a member was fenced:\n{stderr}");
    }
    let oracle = oracle_rows(&tansu.read_all("weather"), 7, true);
    assert_rows(&table_rows(&pg, 7, "fahrenheit"), &oracle, "the table");
}

/// A group of version 1 (monthly °C) has loaded the table when members of version 2 (weekly
/// °F, `--start earliest`) join it: the group is rebuilt from the beginning, the old members
/// stop (told why), and while the new ones read, every sensor shows its old rows or its new
/// ones, never both. At the end the table holds only version 2's rows, equal to the oracle's,
/// and nothing is left in staging.
#[test]
fn a_group_rebuilds_under_new_rules_one_sensor_at_a_time() {
    rebuild_scenario(false);
}

/// As the rebuild above, with version 2 started at a time (`--start time:T`), after which only
/// four of the eight sensors report: the members rebuild from the first reading at or after T
/// in each partition. At the end the table holds the oracle's weeks of those readings only,
/// and no row of version 1, not even of the sensors silent since T.
#[test]
fn a_group_rebuilds_under_new_rules_from_a_time() {
    rebuild_scenario(true);
}

/// Version 1 loads the table, version 2 rebuilds it (from the beginning, or `by_time` from a
/// time after which only sensors 1 to 4 report), as the two tests above say.
fn rebuild_scenario(by_time: bool) {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", 4);
    tansu.produce_in_small_batches(700, 8);
    let before = tansu.read_all("weather");
    // Only sensors 1 to 4 go on reporting after T (the producer resumes their record ids).
    let time = before.iter().filter_map(|r| r.timestamp).max().unwrap() + 1;
    if by_time {
        tansu.produce_in_small_batches(350, 4);
    }
    let records = tansu.read_all("weather");
    let end = ends(&tansu, 4);
    let dir = tempfile::tempdir().unwrap();
    let mut v1: Vec<(Running, PathBuf)> =
        ["v1-a", "v1-b"].iter().map(|m| member(&tansu, &pg, m, dir.path(), &MONTHLY_C)).collect();
    caught_up(&pg, &end, "version 1");
    assert_rows(&table_rows(&pg, 30, "celsius"), &oracle_rows(&records, 30, false), "version 1");

    let start =
        if by_time { format!("time:{}", weather_common::position::format_time(time)) } else { "earliest".into() };
    let v2_flags = [&WEEKLY_F[..], &["--start", &start]].concat();
    let mut v2: Vec<(Running, PathBuf)> =
        ["v2-a", "v2-b"].iter().map(|m| member(&tansu, &pg, m, dir.path(), &v2_flags)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !v2.iter().any(|(_, log)| std::fs::read_to_string(err_path(log)).unwrap().contains("started rebuilding")) {
        assert!(Instant::now() < deadline, "no member of version 2 started the rebuild");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sensors_rules = "SELECT sensor_id, count(DISTINCT window_days) FROM weather_aggregates GROUP BY sensor_id";
    let under_way = "SELECT count(*) FROM weather_aggregates_partitions WHERE rebuild_until IS NOT NULL";
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for row in pg.query(sensors_rules) {
            assert_eq!(row[1].as_deref(), Some("1"), "sensor {:?} shows rows of both rules at once", row[0]);
        }
        let rebuilding = pg.query(under_way)[0][0].clone().unwrap();
        let state = committed(&pg);
        if rebuilding == "0" && state.len() == end.len() && state.iter().zip(&end).all(|(s, &e)| s.unwrap_or(0) >= e) {
            break;
        }
        assert!(Instant::now() < deadline, "the rebuild never finished: {rebuilding} partitions under way");
        std::thread::sleep(Duration::from_millis(20));
    }
    for (child, log) in &mut v1 {
        assert!(!child.wait().unwrap().success(), "a member of the old rules went on");
        let said = std::fs::read_to_string(err_path(log)).unwrap();
        assert!(said.contains("computes 7-day windows in fahrenheit now"), "{said}");
    }
    // What the rebuild reads: in each partition, from its first reading stamped at or after T
    // (the broker's look-up), as the time look-up gives it.
    let rebuilt: Vec<testkit::Record> = match by_time {
        false => records.clone(),
        true => {
            let first = |p: i32| {
                records.iter().filter(|r| r.partition == p && r.timestamp >= Some(time)).map(|r| r.offset).min()
            };
            records.iter().filter(|r| first(r.partition).is_some_and(|f| r.offset >= f)).cloned().collect()
        }
    };
    assert!(rebuilt.len() < records.len() || !by_time, "the time leaves readings out");
    let oracle = oracle_rows(&rebuilt, 7, true);
    assert_rows(&table_rows(&pg, 7, "fahrenheit"), &oracle, "version 2");
    assert_eq!(table_rows(&pg, 30, "celsius"), Vec::<String>::new(), "version 1's rows are gone");
    // The topic read as a table: version 2's windows only, version 1's deleted by tombstones.
    let (topic, rules) = topic_rows(&tansu);
    assert_eq!(rules, BTreeSet::from([(7, "fahrenheit".to_string())]), "the topic holds version 2's windows only");
    assert_rows(&topic, &oracle, "version 2 in the aggregates topic");
    assert_eq!(pg.query("SELECT count(*) FROM weather_aggregates_staging")[0][0].as_deref(), Some("0"));
    for (child, log) in &mut v2 {
        signal(child, "TERM");
        assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(err_path(log)).unwrap());
    }
}

/// A bounded member (`--until-end`) that joins two members already sharing both partitions
/// owns none: it says so and why, and ends after two leases instead of waiting forever. A
/// bounded member alone reads every partition to its end and ends; the table holds the
/// oracle's windows.
#[test]
fn a_bounded_member_without_a_partition_says_why_and_ends() {
    let (tansu, pg) = (Tansu::start(), PostgresServer::start());
    tansu.create_topic("weather", 2);
    tansu.produce_in_small_batches(140, 4);
    let records = tansu.read_all("weather");
    let dir = tempfile::tempdir().unwrap();
    // A lease long enough that a busy machine does not stall a or b past it while c is there
    // (c would then be dealt a partition): a member beats its heartbeat from its loop.
    let lease = ["--lease", "5"];
    let (mut a, a_log) = member(&tansu, &pg, "a", dir.path(), &lease);
    let (mut b, b_log) = member(&tansu, &pg, "b", dir.path(), &lease);
    let deadline = Instant::now() + Duration::from_secs(60);
    while reads(&a_log).len() + reads(&b_log).len() != 2 || reads(&a_log).is_empty() || reads(&b_log).is_empty() {
        assert!(Instant::now() < deadline, "a and b never shared the two partitions");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let (c, c_log) = member(&tansu, &pg, "c", dir.path(), &["--until-end", "--lease", "5"]);
    let (summary, stderr) = finish(c, &c_log, "the member without a partition");
    assert!(stderr.contains("owns no partition after") && stderr.contains("the other members read all 2"), "{stderr}");
    assert!(stderr.contains("member `c` owns no partition: 3 live members share the 2 partitions"), "{stderr}");
    assert!(summary.contains("readings consumed:  0"), "{summary}");
    assert!(started.elapsed() < Duration::from_secs(30), "c took {:?} to end", started.elapsed());
    for (child, log) in [(&mut a, &a_log), (&mut b, &b_log)] {
        signal(child, "TERM");
        assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(err_path(log)).unwrap());
    }
    let (alone, alone_log) = member(&tansu, &pg, "alone", dir.path(), &["--until-end"]);
    let (summary, _) = finish(alone, &alone_log, "a bounded member alone");
    assert!(summary.contains("readings consumed:  0"), "everything was committed already: {summary}");
    assert_rows(&table_rows(&pg, 7, "fahrenheit"), &oracle_rows(&records, 7, true), "the table");
}
