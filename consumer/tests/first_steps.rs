//! What a newcomer meets on the first steps that go wrong: the status of an output no consumer
//! has written, and a start that fails, each as the binary shows it.

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::Tansu;

/// `status -o` of an output that was never written says that it is not written yet, and how
/// it gets written, rather than asking first for a consumer group; at once, without a broker.
#[test]
fn the_status_of_an_output_never_written_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["status", "-b", "127.0.0.1:9", "-o", "never.txt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(
        stderr.contains("never.txt is not written yet: no consumer has written it (there is no never.txt.checkpoint)")
            && stderr.contains("A consumer run with -o never.txt writes it"),
        "{stderr}"
    );
}

/// A consumer whose start fails (here: a topic the broker does not have) leaves nothing
/// beside the output it would have written: no `OUTPUT.lock`.
#[test]
fn a_failed_start_leaves_no_lock_file() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["-b", &tansu.bootstrap(), "-t", "no-such-topic", "--until-end", "--quiet", "-o", "out.txt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-topic"), "it failed for the missing topic: {stderr}");
    let left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.contains(&"out.txt.lock".to_string()), "left behind: {left:?}");
}
