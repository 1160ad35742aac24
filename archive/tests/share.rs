//! Scale-out on the real stack (Tansu, started by the test): members of an archive group
//! (`--group`) follow a live topic into one lake and its Delta table, one is SIGKILLed with work
//! left and one is paused past its lease, others join and leave, and the lake and the table end
//! holding every reading of the topic once, as the test reads the topic itself.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::*;
use testkit::{Running, Tansu};

const PARTITIONS: i32 = 6;
const SENSORS: u32 = 12;
/// The history already in the topic when the members start, per sensor.
const HISTORY_DAYS: u64 = 300;
const LEASE: &str = "2";
/// How long the members have to settle after a join or a clean leave.
const SETTLE: Duration = Duration::from_secs(60);
/// How soon a dead or paused member's partitions move on: its lease, the others' heartbeats,
/// their consumers made anew, and slack for a busy machine. That they moved because its lease ran
/// out, not because its heartbeat was tidied away (ten leases, which moves them too), each
/// survivor's log says: [`moved_by_lease`].
const TAKEOVER: Duration = Duration::from_secs(30);

/// A member of group `shared` named `name`, following the topic into the lake at `lake` and
/// its Delta table, its log at info level: the summary in `<dir>/<name>.log`, stderr beside it.
fn member(tansu: &Tansu, lake: &Path, name: &str, dir: &Path, extra: &[&str]) -> (Running, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let mut command = archive_command(tansu, &["-o", lake.to_str().unwrap()]);
    command
        .args(["--group", "shared", "--member", name, "--lease", LEASE, "--table", "delta"])
        .args(["--max-rows", "500", "--flush-interval", "1"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(err_path(&log)).unwrap());
    (Running::new(command.spawn().expect("starting weather-archive")), log)
}

fn err_path(log: &Path) -> PathBuf {
    log.with_extension("err")
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The partitions a member last said it reads, from its log; empty before it said so.
fn reads(log: &Path) -> BTreeSet<i32> {
    let text = text(&err_path(log));
    let Some(line) = text.lines().rev().find(|l| l.contains("reads partitions [")) else { return BTreeSet::new() };
    let list = &line[line.find("reads partitions [").unwrap() + "reads partitions [".len()..];
    let list = &list[..list.find(']').unwrap()];
    list.split(", ").filter(|s| !s.is_empty()).map(|p| p.parse().unwrap()).collect()
}

/// Waits until the members of `logs` (named by their logs' file names) read, as their logs say,
/// the partitions the README's deal gives them: round-robin over the members in name order.
/// The deal shares every partition, none twice. Returns what each reads. Fails unless they
/// do `within` this long.
fn shared_by(logs: &[&Path], what: &str, within: Duration) -> Vec<BTreeSet<i32>> {
    let names: Vec<&str> = logs.iter().map(|l| l.file_stem().unwrap().to_str().unwrap()).collect();
    let deal = testkit::deal(&names, PARTITIONS);
    let deadline = Instant::now() + within;
    loop {
        let held: Vec<BTreeSet<i32>> = logs.iter().map(|l| reads(l)).collect();
        if held == deal {
            let all: BTreeSet<i32> = held.iter().flatten().copied().collect();
            assert_eq!(all.len(), PARTITIONS as usize, "{what}: every partition, none twice: {held:?}");
            return held;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|l| text(&err_path(l))).collect();
            panic!(
                "{what}: the members read {held:?}, not the deal {deal:?} within {within:?}\n{}",
                logs.join("\n-----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to [`SETTLE`]) until the members of `logs` read their deal, and checks that they
/// took member `gone`'s partitions over because its lease ran out: within [`TAKEOVER`] of
/// `since` (its kill or pause), and with its heartbeat not tidied away before the line in which
/// each said it reads its share (its last such line).
fn moved_by_lease(logs: &[&Path], gone: &str, since: Instant) {
    let what = format!("{gone}'s partitions");
    shared_by(logs, &what, SETTLE);
    let took = since.elapsed();
    assert!(took < TAKEOVER, "{what} moved after {took:?}");
    println!("{what} moved after {took:?}");
    for log in logs {
        let said = text(&err_path(log));
        let last = said.lines().rfind(|l| l.contains("reads partitions [")).map(str::to_string);
        takeover_by_lease(&said, gone, |l| Some(l) == last.as_deref());
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// The end of each partition of `weather`, as read now.
fn ends(tansu: &Tansu) -> Vec<i64> {
    let records = tansu.read_all("weather");
    (0..PARTITIONS)
        .map(|p| records.iter().filter(|r| r.partition == p).map(|r| r.offset + 1).max().unwrap_or(0))
        .collect()
}

/// How far the lake's state says each partition is archived (0: no state yet).
fn archived_to(root: &Path) -> Vec<i64> {
    (0..PARTITIONS).map(|p| state(root, p).map_or(0, |s| s["done"].as_i64().unwrap())).collect()
}

/// Waits until `log`'s stderr contains `needle`.
fn said(log: &Path, needle: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text(&err_path(log)).contains(needle) {
        assert!(Instant::now() < deadline, "{what}: no `{needle}` in\n{}", text(&err_path(log)));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Three members share six partitions of a live topic into one lake and its Delta table. One
/// is SIGKILLed while its partitions have readings the lake does not hold yet; they move to
/// the two others once its lease has run out, then a replacement joins and takes its share. One
/// member is paused past its lease (SIGSTOP): its partitions move on, and when it resumes its
/// write is refused (fenced) instead of archiving them twice. One leaves with a SIGTERM. At
/// every settled moment each member's partitions, as its log says, are its deal and together
/// all six. At the end the Hive files (DuckDB, pyarrow) and the table (deltalake, DuckDB's
/// delta_scan) hold every reading of the topic once.
#[test]
fn members_share_the_partitions_through_kills_pauses_and_joins() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", PARTITIONS as u32);
    tansu.produce_in_small_batches(HISTORY_DAYS, SENSORS);
    let producer = tansu.live_producer(20, SENSORS);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");

    let (mut victim, victim_log) = member(&tansu, &lake, "m1", dir.path(), &[]);
    let (mut paused, paused_log) = member(&tansu, &lake, "m2", dir.path(), &[]);
    let (mut leaving, leaving_log) = member(&tansu, &lake, "m3", dir.path(), &[]);
    let held = shared_by(&[&victim_log, &paused_log, &leaving_log], "three members", SETTLE);
    assert!(held.iter().all(|h| h.len() == 2), "six partitions among three members: {held:?}");

    // The kill: the victim is running, and has archived part of a partition whose later
    // readings the lake does not hold yet.
    let victims = held[0].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (done, end) = (archived_to(&lake), ends(&tansu));
        if victims.iter().any(|&p| done[p as usize] > 0 && done[p as usize] < end[p as usize]) {
            break;
        }
        assert!(Instant::now() < deadline, "the victim never had work left: {done:?} / {end:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the victim ended before its kill:\n{}",
        text(&err_path(&victim_log))
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    let killed = Instant::now();
    assert!(text(&victim_log).is_empty(), "the killed member printed a summary");
    moved_by_lease(&[&paused_log, &leaving_log], "m1", killed);

    let (mut replacement, replacement_log) = member(&tansu, &lake, "m4", dir.path(), &[]);
    shared_by(&[&paused_log, &leaving_log, &replacement_log], "after the replacement joined", SETTLE);

    // The pause: its partitions move on while it sleeps; resumed, its next write is refused.
    signal(&paused, "STOP");
    let stopped = Instant::now();
    moved_by_lease(&[&leaving_log, &replacement_log], "m2", stopped);
    signal(&paused, "CONT");
    said(&paused_log, "was taken over by another instance", "m2 fenced after its pause");
    shared_by(&[&paused_log, &leaving_log, &replacement_log], "after m2 resumed", SETTLE);

    signal(&leaving, "TERM");
    let status = leaving.wait().unwrap();
    assert!(status.success(), "m3's clean leave:\n{}", text(&err_path(&leaving_log)));
    assert!(text(&err_path(&leaving_log)).contains("member `m3` left group `shared`"));
    assert!(count(&text(&leaving_log), "readings archived:") > 0, "m3 archived nothing");
    shared_by(&[&paused_log, &replacement_log], "after m3 left", SETTLE);

    producer.stop();
    let end = ends(&tansu);
    let deadline = Instant::now() + Duration::from_secs(60);
    while archived_to(&lake) != end {
        assert!(Instant::now() < deadline, "the lake never caught up: {:?} / {end:?}", archived_to(&lake));
        std::thread::sleep(Duration::from_millis(50));
    }
    for (child, log) in [(&mut paused, &paused_log), (&mut replacement, &replacement_log)] {
        signal(child, "TERM");
        assert!(child.wait().unwrap().success(), "{}", text(&err_path(log)));
    }
    let summary = text(&paused_log);
    assert!(summary.contains("fenced writes:"), "m2's summary says it was fenced:\n{summary}");
    let (expected, _) = topic_readings(&tansu, "weather");
    assert!(expected.len() as u64 > u64::from(SENSORS) * HISTORY_DAYS, "the live producer added readings");
    assert_lake_holds(&lake, &expected);
    assert_table_holds(&read_table(&lake), &expected);
}

/// On a topic of one partition, a member follows it; a second member joins with --until-end
/// and is dealt nothing: it says it owns no partition and why, and ends after two leases,
/// where it would otherwise wait for a share that cannot come. (Mutation: the idle wait not
/// counted; the bounded member then never ends, and the test's deadline fails.)
#[test]
fn a_bounded_member_without_a_partition_says_why_and_ends() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    tansu.produce_in_small_batches(50, 2);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Named to be dealt the one partition: `a` before `z`.
    let (mut first, first_log) = member(&tansu, &lake, "a", dir.path(), &[]);
    said(&first_log, "reads partitions [0]", "the first member");
    let (mut second, second_log) = member(&tansu, &lake, "z", dir.path(), &["--until-end"]);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the bounded member did not end:\n{}",
            text(&err_path(&second_log))
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let second_err = text(&err_path(&second_log));
    assert!(status.success(), "{second_err}");
    assert!(
        second_err.contains("member `z` owns no partition: 2 live members share the 1 partition of `weather`"),
        "{second_err}"
    );
    assert!(second_err.contains("a bounded run ends after 2 leases"), "{second_err}");
    assert!(started.elapsed() >= Duration::from_secs(4), "it waited its two leases");
    assert!(!text(&err_path(&first_log)).contains("owns no partition"));
    first.kill().unwrap();
    first.wait().unwrap();
}
