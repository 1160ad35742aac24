//! The lake's durability on disk, observed in the system calls themselves: a SIGKILL keeps the
//! page cache, so the crash tests would pass without a single fsync. Here the archive runs
//! under `strace` (Debian's package; `scripts/test` installs it) and every file it publishes,
//! data or state, is checked against what `store/disk.rs` promises: written under a temporary
//! name, fsynced, renamed into place, and its directory fsynced before anything else is
//! renamed; a directory it creates is in its parent, fsynced, before a file is published in it.
//! An entry of the Delta table's log is created the same way, by a link that never replaces
//! one instead of a rename.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::strace::{calls, Call, TRACED};
use testkit::Tansu;

/// What a run published under `root`, by kind.
#[derive(Debug, Default, PartialEq)]
struct Published {
    files: usize,
    states: usize,
    /// The Delta table's log entries, checkpoints and pointer to the last checkpoint.
    log: usize,
}

/// Checks every publication under `root` in `calls`; what was published.
fn check_publications(calls: &[Call], root: &Path) -> Published {
    let mut published = Published::default();
    for (i, call) in calls.iter().enumerate() {
        let published_as = match call {
            Call::Rename { to } if to.starts_with(root) => {
                let name = to.file_name().unwrap().to_str().unwrap();
                Some((to.parent().unwrap().join(format!(".{name}.tmp")), to))
            }
            Call::Link { from, to } if to.starts_with(root) => Some((from.clone(), to)),
            _ => None,
        };
        if let Some((temporary, to)) = published_as {
            let dir = to.parent().unwrap().to_path_buf();
            // Its bytes are on disk before it takes the name readers look for.
            let write = calls[..i]
                .iter()
                .rposition(|c| *c == Call::Write(temporary.clone()))
                .unwrap_or_else(|| panic!("{} was published without being written", to.display()));
            assert!(
                calls[write..i].contains(&Call::Sync(temporary.clone())),
                "{} was published before it was synced: {:?}",
                to.display(),
                &calls[write..=i]
            );
            // The new name is on disk before the next publication (the state that says the
            // file is there, the table's entry that adds it, or the next file).
            let next = calls[i + 1..]
                .iter()
                .position(|c| matches!(c, Call::Rename { .. } | Call::Link { .. }))
                .map_or(calls.len(), |p| i + 1 + p);
            assert!(
                calls[i..next].contains(&Call::Sync(dir.clone())),
                "the directory of {} was not synced before the next publication: {:?}",
                to.display(),
                &calls[i..next.min(i + 10)]
            );
            let relative = to.strip_prefix(root).unwrap();
            match relative.components().next().and_then(|c| c.as_os_str().to_str()) {
                Some("_delta_log") => published.log += 1,
                Some("_state") => published.states += 1,
                _ if to.extension().is_some_and(|e| e == "parquet") => published.files += 1,
                _ => panic!("published something else: {}", to.display()),
            }
        }
        match call {
            Call::Mkdir(dir) if dir.starts_with(root) && dir != root => {
                // A new directory's entry is on disk before a file is published in it.
                let parent = dir.parent().unwrap().to_path_buf();
                let first = calls[i..]
                    .iter()
                    .position(|c| matches!(c, Call::Rename { to } | Call::Link { to, .. } if to.starts_with(dir)))
                    .map_or(calls.len(), |p| i + p);
                assert!(
                    calls[i..first].contains(&Call::Sync(parent.clone())),
                    "{} was created and used before its parent was synced: {:?}",
                    dir.display(),
                    &calls[i..first.min(i + 10)]
                );
            }
            _ => {}
        }
    }
    published
}

/// An archive run under `strace`, into a lake of several hours' directories that is also a
/// Delta table (`--table delta`, a checkpoint every 5 commits): every file, every state and
/// every entry of the table's log follows the protocol, and there are several of each.
/// Removing any of the store's syncs fails this.
#[tokio::test(flavor = "multi_thread")]
async fn files_and_states_are_made_durable_in_order() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    tansu.produce("weather", 2, 500, 41).await;
    let dir = tempfile::tempdir().unwrap();
    // strace prints the paths the kernel resolved.
    let root = dir.path().canonicalize().unwrap().join("lake");
    let trace = dir.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-y", "-qq", "-e", TRACED, "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_weather-archive"))
        .args(["-b", &tansu.bootstrap(), "--connect-timeout", "20", "--quiet", "--until-end", "--max-rows", "100"])
        .args(["--table", "delta", "--checkpoint-every", "5"])
        .arg("-o")
        .arg(&root)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running weather-archive under strace (Debian package `strace`; scripts/test installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    assert_eq!(support::count(&String::from_utf8_lossy(&out.stdout), "readings archived:"), 1000, "{stderr}");
    let calls = calls(&std::fs::read_to_string(&trace).unwrap());
    let published = check_publications(&calls, &root);
    assert!(published.files >= 10 && published.states >= 20 && published.log >= 10, "{published:?}: {calls:?}");
}

/// The checker itself: each missing sync is caught (of a file, a state or a log entry), and
/// so is a range written back in place of a sync.
#[test]
fn the_checker_catches_each_missing_sync() {
    let root = PathBuf::from("/lake");
    let hour = root.join("topic=weather/date=2026-01-01/hour=07");
    let (file, tmp) =
        (hour.join("weather+0+00000000000000000000.parquet"), hour.join(".weather+0+00000000000000000000.parquet.tmp"));
    let log = root.join("_delta_log");
    let entry_tmp = log.join(".00000000000000000000.json.77.0.tmp");
    let good = vec![
        Call::Mkdir(hour.clone()),
        Call::Sync(hour.parent().unwrap().to_path_buf()),
        Call::Open(tmp.clone()),
        Call::Write(tmp.clone()),
        Call::Sync(tmp.clone()),
        Call::Rename { to: file.clone() },
        Call::Sync(hour.clone()),
        Call::Mkdir(log.clone()),
        Call::Sync(root.clone()),
        Call::Open(entry_tmp.clone()),
        Call::Write(entry_tmp.clone()),
        Call::Sync(entry_tmp.clone()),
        Call::Link { from: entry_tmp.clone(), to: log.join("00000000000000000000.json") },
        Call::Sync(log.clone()),
    ];
    assert_eq!(check_publications(&good, &root), Published { files: 1, states: 0, log: 1 });
    for missing in [
        Call::Sync(hour.parent().unwrap().to_path_buf()),
        Call::Sync(tmp.clone()),
        Call::Sync(hour.clone()),
        Call::Sync(root.clone()),
        Call::Sync(entry_tmp.clone()),
        Call::Sync(log.clone()),
    ] {
        let broken: Vec<Call> = good.iter().filter(|c| **c != missing).cloned().collect();
        let caught = std::panic::catch_unwind(|| check_publications(&broken, &root)).is_err();
        assert!(caught, "a missing {missing:?} was not caught");
        let ranged: Vec<Call> = good
            .iter()
            .map(|c| match c {
                Call::Sync(p) if *c == missing => Call::RangeSync(p.clone()),
                other => other.clone(),
            })
            .collect();
        let caught = std::panic::catch_unwind(|| check_publications(&ranged, &root)).is_err();
        assert!(caught, "a sync_file_range in place of {missing:?} was not caught");
    }
}
