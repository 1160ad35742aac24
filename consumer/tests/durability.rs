//! The durability protocol, observed in the system calls themselves: a SIGKILL keeps the page
//! cache, so the crash tests would pass without a single fsync. Here the consumer runs under
//! `strace` (Debian's package; `scripts/test` installs it), and the order of its writes, syncs
//! and renames is checked against what the README promises: the output is fsynced before the
//! checkpoint that counts it is renamed into place, the checkpoint's temporary file is fsynced
//! before that rename, and the directory is fsynced after it.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::strace::{calls, Call, TRACED};
use testkit::Tansu;

/// Checks the protocol on the calls of a run; the number of checkpoints that counted new
/// output.
fn check_protocol(calls: &[Call], output: &Path) -> usize {
    let dir = output.parent().unwrap().to_path_buf();
    let checkpoint = weather_consumer::checkpoint::Checkpoint::path_for(output);
    let mut staging = checkpoint.clone().into_os_string();
    staging.push(".tmp");
    let staging = PathBuf::from(staging);
    let last = |before: usize, call: &Call| calls[..before].iter().rposition(|c| c == call);
    let mut with_output = 0;
    for (i, call) in calls.iter().enumerate() {
        if *call != (Call::Rename { to: checkpoint.clone() }) {
            continue;
        }
        let n = calls[..i].iter().filter(|c| **c == Call::Rename { to: checkpoint.clone() }).count() + 1;
        // The output is durable before the checkpoint that counts it.
        if let Some(write) = last(i, &Call::Write(output.to_path_buf())) {
            with_output += usize::from(
                calls[..i].iter().rposition(|c| *c == Call::Rename { to: checkpoint.clone() }) < Some(write),
            );
            assert!(
                calls[write..i].contains(&Call::Sync(output.to_path_buf())),
                "checkpoint {n} was renamed into place before the output written before it was synced: {:?}",
                &calls[write..=i]
            );
        }
        // The checkpoint's own bytes are durable before it replaces the old one.
        let write = last(i, &Call::Write(staging.clone()))
            .unwrap_or_else(|| panic!("checkpoint {n} was renamed without being written"));
        assert!(
            calls[write..i].contains(&Call::Sync(staging.clone())),
            "checkpoint {n} was renamed before its temporary file was synced: {:?}",
            &calls[write..=i]
        );
        // The rename is durable before anything else happens to the checkpoint.
        let next = calls[i..].iter().position(|c| *c == Call::Open(staging.clone())).map_or(calls.len(), |p| i + p);
        assert!(
            calls[i..next].contains(&Call::Sync(dir.clone())),
            "the directory was not synced after checkpoint {n} was renamed: {:?}",
            &calls[i..next.min(i + 10)]
        );
    }
    // Nothing is left unsynced at the end.
    if let Some(write) = last(calls.len(), &Call::Write(output.to_path_buf())) {
        assert!(
            calls[write..].contains(&Call::Rename { to: checkpoint.clone() }),
            "output written after the last checkpoint"
        );
    }
    with_output
}

/// A replay under `strace`: every checkpoint follows the protocol, and there are several of
/// them, counting new output. Removing any of the three syncs from the consumer fails this.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_are_made_durable_in_order() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    tansu.produce("weather", 2, 1000, 31).await;
    let dir = tempfile::tempdir().unwrap();
    // strace prints the paths the kernel resolved.
    let output = dir.path().canonicalize().unwrap().join("weekly.csv");
    let trace = dir.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-y", "-qq", "-e", TRACED, "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["-b", &tansu.bootstrap(), "--window", "week", "--format", "csv", "--sensor-column", "--until-end"])
        .args(["--checkpoint-interval", "0", "--quiet", "-o"])
        .arg(&output)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running weather-consumer under strace (Debian package `strace`; scripts/test installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains("readings consumed:  2,000 "), "{stderr}");
    let calls = calls(&std::fs::read_to_string(&trace).unwrap());
    let with_output = check_protocol(&calls, &output);
    assert!(with_output >= 3, "only {with_output} checkpoints counted new output: {calls:?}");
}

/// The checker itself: each missing sync is caught.
#[test]
fn the_checker_catches_each_missing_sync() {
    let output = PathBuf::from("/d/out.csv");
    let (cp, tmp, dir) =
        (PathBuf::from("/d/out.csv.checkpoint"), PathBuf::from("/d/out.csv.checkpoint.tmp"), PathBuf::from("/d"));
    let good = vec![
        Call::Write(output.clone()),
        Call::Sync(output.clone()),
        Call::Open(tmp.clone()),
        Call::Write(tmp.clone()),
        Call::Sync(tmp.clone()),
        Call::Rename { to: cp.clone() },
        Call::Open(dir.clone()),
        Call::Sync(dir.clone()),
    ];
    assert_eq!(check_protocol(&good, &output), 1);
    for missing in [Call::Sync(output.clone()), Call::Sync(tmp.clone()), Call::Sync(dir.clone())] {
        let broken: Vec<Call> = good.iter().filter(|c| **c != missing).cloned().collect();
        let caught = std::panic::catch_unwind(|| check_protocol(&broken, &output)).is_err();
        assert!(caught, "a missing {missing:?} was not caught");
    }
    // A range written back is not a sync: an output "synced" that way is caught.
    let ranged: Vec<Call> = good
        .iter()
        .map(|c| if *c == Call::Sync(output.clone()) { Call::RangeSync(output.clone()) } else { c.clone() })
        .collect();
    assert!(std::panic::catch_unwind(|| check_protocol(&ranged, &output)).is_err(), "sync_file_range taken for a sync");
}
