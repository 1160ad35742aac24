//! Crashes: the archive killed at random moments (on disk and on S3), killed right after a
//! wall-clock flush, and one of three instances in a group killed mid-run, all end with the
//! lake an uninterrupted run makes: every valid reading once, no partial or orphan file.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use support::*;
use testkit::{Running, S3Server, Tansu};

/// Readings per sensor, sensors, partitions: 100,000 readings in all.
const DAYS: u64 = 12_500;
const SENSORS: u32 = 8;
const PARTITIONS: u32 = 4;

/// Where a crash scenario's lake is: a directory, or a bucket of an S3 server.
enum Lake {
    Disk(tempfile::TempDir),
    S3(Rc<S3Server>, &'static str),
}

impl Lake {
    /// A bucket of its own on `server`.
    fn in_bucket(server: &Rc<S3Server>, bucket: &'static str) -> Lake {
        server.create_bucket(bucket);
        Lake::S3(server.clone(), bucket)
    }

    /// Another lake of the same kind, empty: where an uninterrupted run goes.
    fn another(&self) -> Lake {
        match self {
            Lake::Disk(_) => Lake::Disk(tempfile::tempdir().unwrap()),
            Lake::S3(server, _) => Lake::in_bucket(server, "reference"),
        }
    }

    /// The lake's files on disk (for S3: the server's directory of the bucket), for the test
    /// to follow a run's progress; what the lake holds is read by [`Lake::read`].
    fn root(&self) -> PathBuf {
        match self {
            Lake::Disk(dir) => dir.path().to_path_buf(),
            Lake::S3(server, bucket) => server.bucket_dir(bucket),
        }
    }

    /// The lake as its readers find it: in a directory, or through the S3 API.
    fn read(&self) -> LakeView {
        match self {
            Lake::Disk(dir) => read_lake(dir.path()),
            Lake::S3(server, bucket) => read_lake_in_s3(&server.endpoint(), bucket),
        }
    }

    /// The lake's Delta table as its readers find it: in a directory, or through the S3 API.
    fn read_table(&self) -> TableView {
        match self {
            Lake::Disk(dir) => read_table(dir.path()),
            Lake::S3(server, bucket) => read_table_in_s3(&server.endpoint(), &format!("s3://{bucket}")),
        }
    }

    fn flags(&self) -> Vec<String> {
        match self {
            Lake::Disk(dir) => vec!["-o".into(), dir.path().display().to_string()],
            Lake::S3(server, bucket) => {
                vec!["--s3-bucket".into(), bucket.to_string(), "--s3-endpoint".into(), server.endpoint()]
            }
        }
    }
}

/// Starts the archive binary; its stdout (the summary) goes to `log`, its stderr to `log.err`.
fn start(tansu: &Tansu, lake: &Lake, extra: &[&str], log: &Path) -> Running {
    let destination = lake.flags();
    let destination: Vec<&str> = destination.iter().map(String::as_str).collect();
    let child = archive_command(tansu, &destination)
        .args(extra)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .expect("starting weather-archive");
    Running::new(child)
}

/// Waits for `child` to end, successfully, within `limit`; its summary.
fn finish(mut child: Running, log: &Path, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "the archive did not finish within {limit:?}: {}",
                std::fs::read_to_string(log.with_extension("err")).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the archive failed: {}", std::fs::read_to_string(log.with_extension("err")).unwrap());
    std::fs::read_to_string(log).unwrap()
}

/// Waits until `condition` holds, checking every 10 ms, for at most 60 s.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Fails unless `child` still runs: a run that ended before its kill either failed (its
/// errors are shown) or archived everything there was.
fn still_running(child: &mut Child, log: &Path, context: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "{context}: the run ended ({status}) before its kill:\n{}{}",
            std::fs::read_to_string(log).unwrap(),
            std::fs::read_to_string(log.with_extension("err")).unwrap()
        );
    }
}

/// Per partition of `partitions`, how far the lake's state says it is archived (`None`: the
/// partition has no state yet).
fn done(root: &Path, partitions: u32) -> BTreeMap<i32, Option<i64>> {
    (0..partitions as i32).map(|p| (p, state(root, p).map(|s| s["done"].as_i64().unwrap()))).collect()
}

/// Records each partition's progress in `previous`: it never goes back, and a state once
/// written never goes away (a takeover would start the partition over).
fn check_progress(previous: &mut BTreeMap<i32, i64>, now: &BTreeMap<i32, Option<i64>>, context: &str) {
    for (&partition, &done) in now {
        match (previous.get(&partition).copied(), done) {
            (Some(before), None) => panic!("{context}: partition {partition}'s state is gone (it was at {before})"),
            (Some(before), Some(done)) => {
                assert!(done >= before, "{context}: partition {partition}'s state went back from {before} to {done}")
            }
            (None, _) => {}
        }
        if let Some(done) = done {
            previous.insert(partition, done);
        }
    }
}

/// SIGKILL at `kills` random moments of a 100,000-reading archive run (now and then during
/// start-up, otherwise once the run published a file of its own, then at a random moment:
/// mid-file, mid-decision, mid-upload), restarting each time. After each kill: the killed run
/// printed no summary, and no partition's state went back or went away. At the end: the last
/// run read exactly the readings after the state's progress, the lake holds every valid
/// reading once, as DuckDB reads it (a bucket through the S3 API), with no partial or leftover
/// file, and its files are those of an uninterrupted run into another lake, names and bytes.
///
/// With `table`, into a Delta table (`--table delta`): the run's start is the table's progress,
/// and at the end both of the table's readers find every valid reading once, in the very files
/// the uninterrupted run committed (those its log holds).
fn sigkill_scenario(lake: Lake, kills: u32, table: bool) {
    let tansu = Tansu::start();
    tansu.create_topic("weather", PARTITIONS);
    tansu.produce_in_small_batches(DAYS, SENSORS);
    let (expected, _) = topic_readings(&tansu, "weather");
    assert_eq!(expected.len() as u64, DAYS * u64::from(SENSORS));
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("kill moments from CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let logs = tempfile::tempdir().unwrap();
    let mut flags = vec!["--until-end", "--max-rows", "200"];
    let table_flags = ["--table", "delta", "--checkpoint-every", "10"];
    if table {
        flags.extend(table_flags);
    }
    // The killed runs are slowed down, so that a kill lands mid-run; the last run and the
    // uninterrupted one are not.
    let unthrottled = flags.clone();
    flags.extend(testkit::THROTTLE);
    let root = lake.root();
    let mut previous = BTreeMap::new();
    for kill in 0..kills {
        let context = format!("after kill {}, CRASH_SEED={seed}", kill + 1);
        let log = logs.path().join(format!("run-{kill}.log"));
        let before = file_count(&root);
        let mut child = start(&tansu, &lake, &flags, &log);
        if kill % 4 == 3 {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        } else {
            wait_for(&context, || {
                still_running(&mut child, &log, &context);
                file_count(&root) > before
            });
            std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        }
        still_running(&mut child, &log, &context);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "", "{context}: the killed run had printed its summary");
        check_progress(&mut previous, &done(&root, PARTITIONS), &context);
    }
    let resumed_at: i64 = match table {
        // The table's progress, which may be past the state's (a kill between the commit and
        // the state's write).
        true => table_progress(&root).values().sum(),
        false => done(&root, PARTITIONS).values().flatten().sum(),
    };
    println!("after {kills} kills the lake holds {resumed_at} of {} readings", expected.len());
    let log = logs.path().join("final.log");
    let summary = finish(start(&tansu, &lake, &unthrottled, &log), &log, Duration::from_secs(120));
    let context = format!("after {kills} kills, CRASH_SEED={seed}");
    assert_eq!(
        count(&summary, "readings archived:") as i64,
        expected.len() as i64 - resumed_at,
        "{context}: the last run read other readings than those after the state's progress:\n{summary}"
    );
    assert!(count(&summary, "readings archived:") > 0, "{context}: the kills all landed after the run's end");
    if table {
        let crashed = lake.read_table();
        assert_table_holds(&crashed, &expected);
        let reference = lake.another();
        let log = logs.path().join("reference.log");
        finish(start(&tansu, &reference, &unthrottled, &log), &log, Duration::from_secs(120));
        // The files each table references (as DuckDB's delta_scan names them), with their
        // bytes, all read through the store's API: a restart writes the decided file again, so
        // the crashed table's files are the uninterrupted run's, name for name and byte for byte
        // (a killed run's file that never made it into a commit is the vacuum's, not compared).
        let referenced = |table: &TableView, lake: &Lake| -> BTreeMap<String, String> {
            let names: BTreeSet<String> =
                table.duckdb.iter().map(|row| row[10].as_str().unwrap().to_string()).collect();
            let digests = file_digests(&lake.read());
            names
                .into_iter()
                .map(|name| {
                    let digest =
                        digests.get(&name).unwrap_or_else(|| panic!("{name} is referenced and not in the lake"));
                    (name, digest.clone())
                })
                .collect()
        };
        let (crashed, reference) = (referenced(&crashed, &lake), referenced(&reference.read_table(), &reference));
        assert!(crashed.len() > 100, "{} files", crashed.len());
        let names: BTreeSet<&String> = crashed.keys().chain(reference.keys()).collect();
        let differ: Vec<&&String> = names.iter().filter(|k| crashed.get(**k) != reference.get(**k)).collect();
        assert!(
            differ.is_empty(),
            "{context}: {} of {} of the table's files are not the uninterrupted run's (names and bytes), first {:?}",
            differ.len(),
            reference.len(),
            &differ[..differ.len().min(5)]
        );
        return;
    }
    let crashed = assert_view_holds(lake.read(), &expected);
    // File boundaries are decided by --max-rows and the hours alone, and a restart writes the
    // decided file again: the lake is the very lake of an uninterrupted run, file for file.
    let reference = lake.another();
    let log = logs.path().join("reference.log");
    finish(start(&tansu, &reference, &unthrottled, &log), &log, Duration::from_secs(120));
    let (crashed, reference) = (file_digests(&crashed), file_digests(&reference.read()));
    assert!(crashed.len() > 100, "{} files", crashed.len());
    let names: BTreeSet<&String> = crashed.keys().chain(reference.keys()).collect();
    let differ: Vec<&&String> = names.iter().filter(|k| crashed.get(**k) != reference.get(**k)).collect();
    assert!(
        differ.is_empty(),
        "{context}: {} of {} files are not the uninterrupted run's (names and bytes), first {:?}",
        differ.len(),
        reference.len(),
        &differ[..differ.len().min(5)]
    );
}

#[test]
fn sigkill_at_random_moments_leaves_every_reading_once_on_disk() {
    sigkill_scenario(Lake::Disk(tempfile::tempdir().unwrap()), 20, false);
}

#[test]
fn sigkill_at_random_moments_leaves_every_reading_once_in_s3() {
    sigkill_scenario(Lake::in_bucket(&Rc::new(S3Server::start()), "lake"), 20, false);
}

#[test]
fn sigkill_at_random_moments_leaves_every_reading_once_in_a_table_on_disk() {
    sigkill_scenario(Lake::Disk(tempfile::tempdir().unwrap()), 20, true);
}

#[test]
fn sigkill_at_random_moments_leaves_every_reading_once_in_a_table_in_s3() {
    sigkill_scenario(Lake::in_bucket(&Rc::new(S3Server::start()), "lake"), 20, true);
}

/// Following the topic, a quiet partition's file is flushed after the interval (the lake holds
/// everything without a bounded run's end); killed at random moments around such flushes and
/// restarted, the lake still holds every reading once.
#[tokio::test(flavor = "multi_thread")]
async fn a_flush_then_a_crash_duplicates_nothing() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    let lake = Lake::Disk(tempfile::tempdir().unwrap());
    let root = lake.root();
    let logs = tempfile::tempdir().unwrap();
    let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("kill moments from CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..4 {
        let context = format!("round {round}, CRASH_SEED={seed}");
        tansu.produce("weather", 2, 150 * (round + 1), 5).await;
        let (expected, _) = topic_readings(&tansu, "weather");
        let ends = expected.keys().fold(BTreeMap::new(), |mut ends, &(p, o)| {
            ends.insert(p, o + 1);
            ends
        });
        let log = logs.path().join(format!("follow-{round}.log"));
        let mut child = start(&tansu, &lake, &["--flush-interval", "0.2"], &log);
        // The flush publishes what the run read, though no partition ended and no hour passed.
        wait_for(&context, || ends.iter().all(|(p, &end)| done(&root, 2)[p] == Some(end)));
        assert!(child.try_wait().unwrap().is_none(), "{context}: following, the run does not end");
        tansu.produce("weather", 2, 150 * (round + 1) + 40, 5).await;
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let (expected, _) = topic_readings(&tansu, "weather");
    let log = logs.path().join("final.log");
    finish(start(&tansu, &lake, &["--until-end"], &log), &log, Duration::from_secs(60));
    let view = assert_lake_holds(&root, &expected);
    assert!(view.files.len() >= 4, "each round's flush made files of its own: {} files", view.files.len());
}

/// The partitions a member reads now, as its log (stderr at info) last said.
fn holding(log: &Path) -> BTreeSet<i32> {
    let text = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
    let marker = "reads partitions [";
    let Some(line) = text.lines().rev().find(|l| l.contains(marker)) else { return BTreeSet::new() };
    let rest = &line[line.find(marker).unwrap() + marker.len()..];
    rest[..rest.find(']').unwrap()].split(", ").filter(|p| !p.is_empty()).map(|p| p.parse().unwrap()).collect()
}

/// The group test's members: in group `shared`, named `name`, with a 2 s lease, and these
/// fetch settings; to the topic's end, or following it until SIGTERM (publishing what it read
/// every half second, so that the lake's state shows it archiving).
fn group_flags(name: &'static str, fetch: &[&'static str], bounded: bool) -> Vec<&'static str> {
    let mut flags = vec!["--max-rows", "2000", "-g", "shared", "--member", name, "--lease", "2"];
    match bounded {
        true => flags.push("--until-end"),
        false => flags.extend(["--flush-interval", "0.5"]),
    }
    flags.extend(fetch);
    flags
}

/// The members the lake's state shows archiving: a partition's `done` moved on under the same
/// owner and epoch, as a thread of its own sees it (every 10 ms, until dropped).
struct Archiving {
    seen: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Archiving {
    fn watch(root: &Path, partitions: u32) -> Archiving {
        let (seen, stop) = (Arc::new(Mutex::new(BTreeSet::new())), Arc::new(AtomicBool::new(false)));
        let (root, found, stopped) = (root.to_path_buf(), seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut before: BTreeMap<i32, (serde_json::Value, serde_json::Value, i64)> = BTreeMap::new();
            while !stopped.load(Ordering::Relaxed) {
                for p in 0..partitions as i32 {
                    let Some(s) = state(&root, p) else { continue };
                    let now = (s["owner"].clone(), s["epoch"].clone(), s["done"].as_i64().unwrap());
                    if let (Some(old), Some(owner)) = (before.get(&p), now.0.as_str()) {
                        if (&old.0, &old.1) == (&now.0, &now.1) && now.2 > old.2 {
                            found.lock().unwrap().insert(owner.to_string());
                        }
                    }
                    before.insert(p, now);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Archiving { seen, stop, thread: Some(thread) }
    }

    fn by(&self, member: &str) -> bool {
        self.seen.lock().unwrap().contains(member)
    }
}

impl Drop for Archiving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Member 0's fetch settings: one small fetch per partition a second at most, so that it is
/// still at work when the other two have finished.
const SLOW: [&str; 10] = [
    "-X",
    "max.partition.fetch.bytes=512",
    "-X",
    "fetch.max.bytes=1024",
    "-X",
    "message.max.bytes=1024",
    "-X",
    "queued.max.messages.kbytes=1",
    "-X",
    "fetch.queue.backoff.ms=1000",
];

/// Three instances in one group share the six partitions, each holding its deal, none twice.
/// Member 0 is the slowest: the other two (following the topic, so that they are there when the
/// three share it) leave on a SIGTERM, one after the other (each hands its partitions back, and
/// member 0 takes them over), and member 0, holding every partition with work left, is
/// SIGKILLed. A new member joins the same group: it waits one lease for member 0's
/// heartbeat to stop changing, takes every partition over from the lake's state, and archives
/// exactly the readings the state had not: more than none. The lake then holds every reading
/// once. (On Tansu 0.6, Kafka's group protocol never got this far, see docs/tansu: the group's
/// partitions are leases in the lake, `weather_archive::group`.)
#[test]
fn a_member_killed_mid_run_loses_nothing_when_a_new_member_takes_over() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 6);
    tansu.produce_in_small_batches(DAYS / 2, SENSORS);
    let (expected, _) = topic_readings(&tansu, "weather");
    let end = |p: i32| expected.keys().filter(|k| k.0 == p).map(|k| k.1 + 1).max().unwrap_or(0);
    let lake = Lake::Disk(tempfile::tempdir().unwrap());
    let root = lake.root();
    // Readings of the partitions `held` not yet archived, by the lake's state.
    let left = |held: &BTreeSet<i32>| -> i64 {
        let done = done(&root, 6);
        held.iter().map(|&p| end(p) - done[&p].unwrap_or(0)).sum()
    };
    let logs = tempfile::tempdir().unwrap();
    let log = |i: usize| logs.path().join(format!("member-{i}.log"));
    // One member after the other, each once the group has shared every partition among those
    // there: a member joins a group that is not in the middle of a rebalance. Shared means, in
    // one reading of the logs, each member (member i is named m<i>) holding its deal: disjoint
    // and complete.
    let all: BTreeSet<i32> = (0..6).collect();
    let shared = |members: &[usize]| -> Vec<BTreeSet<i32>> {
        let names: Vec<String> = members.iter().map(|i| format!("m{i}")).collect();
        let deal = testkit::deal(&names.iter().map(String::as_str).collect::<Vec<_>>(), 6);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let held: Vec<BTreeSet<i32>> = members.iter().map(|&i| holding(&log(i))).collect();
            if held == deal {
                let union: BTreeSet<i32> = held.iter().flatten().copied().collect();
                let sizes: usize = held.iter().map(BTreeSet::len).sum();
                assert_eq!((union, sizes), (all.clone(), 6), "disjoint and complete: {held:?}");
                return held;
            }
            let logs: Vec<String> = members
                .iter()
                .map(|&i| std::fs::read_to_string(log(i).with_extension("err")).unwrap_or_default())
                .collect();
            assert!(
                Instant::now() < deadline,
                "members {members:?} did not hold their deal {deal:?} within 60 s: {held:?}\n{}\n---- the broker:\n{}",
                logs.join("\n----\n"),
                tansu.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // The slow member first: alone, it holds every partition, and gets far in none.
    let mut slow = start(&tansu, &lake, &group_flags("m0", &SLOW, true), &log(0));
    shared(&[0]);
    let archiving = Archiving::watch(&root, 6);
    let mut others = Vec::new();
    for (i, name) in [(1, "m1"), (2, "m2")] {
        others.push(start(&tansu, &lake, &group_flags(name, &testkit::THROTTLE, false), &log(i)));
        shared(&(0..=i).collect::<Vec<_>>());
    }

    // The fast two leave, one after the other, each a clean leave that hands its partitions on;
    // each once it has archived some (member 2 has just made its consumer anew when member 1
    // has left, and a busy machine can make that outlast member 1's leave).
    for (i, member) in others.into_iter().enumerate() {
        wait_for(&format!("member {} archiving", i + 1), || archiving.by(&format!("m{}", i + 1)));
        let status = std::process::Command::new("kill").args(["-TERM", &member.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM");
        let summary = finish(member, &log(i + 1), Duration::from_secs(120));
        assert!(count(&summary, "readings archived:") > 0, "member {} archived nothing:\n{summary}", i + 1);
    }
    still_running(&mut slow, &log(0), "member 0, when the others had finished");
    wait_for("member 0 holding every partition once alone", || holding(&log(0)) == all);
    still_running(&mut slow, &log(0), "member 0, before its kill");
    assert!(left(&all) > 0, "member 0 had no work left before its kill: make it slower");
    slow.kill().unwrap();
    slow.wait().unwrap();
    assert_eq!(std::fs::read_to_string(log(0)).unwrap(), "", "the killed member had printed its summary");
    let remainder = left(&all);
    assert!(remainder > 0, "member 0 left no work behind");

    // It takes member 0's partitions once member 0's lease (2 s) has run out, not once the ten
    // leases are over after which a silent member's heartbeat is tidied away (which would move
    // them too): no tidying before the takeover in its log, and the takeover within those ten
    // leases of its first line.
    let newcomer = start(&tansu, &lake, &group_flags("m3", &[], true), &log(3));
    wait_for("the new member taking every partition", || holding(&log(3)) == all);
    let said = std::fs::read_to_string(log(3).with_extension("err")).unwrap();
    let took = takeover_by_lease(&said, "m0", |l| l.contains("reads partitions [0, 1, 2, 3, 4, 5]"));
    let after = took.duration_since(logged_at(said.lines().next().unwrap()));
    assert!(
        after < jiff::SignedDuration::from_secs(20),
        "member 0's partitions moved {after:#} after the newcomer's first line:\n{said}"
    );
    println!("member 0's partitions moved {after:#} after the newcomer's first line");
    let summary = finish(newcomer, &log(3), Duration::from_secs(120));
    assert_eq!(
        count(&summary, "readings archived:") as i64,
        remainder,
        "the new member read other readings than those the lake's state had not archived:\n{summary}"
    );
    assert_lake_holds(&root, &expected);
}
