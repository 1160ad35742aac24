//! What the consumer's process-level tests share: the consumer binary with version 2's rules on
//! a bounded run, started with its summary in a log and its stderr beside it.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The consumer binary on the broker at `bootstrap` with weekly °F CSV rules and a sensor column (unless `args`
/// give a --window), a bounded run with a checkpoint every 50 ms (unless `args` give a
/// --checkpoint-interval), logging at `info`, then `args`.
pub fn consumer_command(bootstrap: &str, args: &[&str]) -> Command {
    let rules: &[&str] = if args.contains(&"--window") { &[] } else { &["--window", "week", "--unit", "fahrenheit"] };
    let interval: &[&str] =
        if args.contains(&"--checkpoint-interval") { &[] } else { &["--checkpoint-interval", "0.05"] };
    let mut command = Command::new(env!("CARGO_BIN_EXE_weather-consumer"));
    command
        .args(["-b", bootstrap, "--format", "csv"])
        .args(rules)
        .args(["--sensor-column", "--until-end", "--connect-timeout", "20"])
        .args(interval)
        .args(args)
        .env("RUST_LOG", "info");
    command
}

/// Starts `command` with its stdout (the summary) in `log` and its stderr in [`err_path`].
pub fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    command
        .stdout(File::create(log).unwrap())
        .stderr(File::create(err_path(log)).unwrap())
        .spawn()
        .expect("starting weather-consumer")
}

/// Where [`spawn_logged`] puts a run's stderr: `log` + `.err`.
pub fn err_path(log: &Path) -> PathBuf {
    let mut err = log.as_os_str().to_owned();
    err.push(".err");
    err.into()
}

/// Waits for `child`, started by [`spawn_logged`], to end successfully (`what` names the run
/// if not); its summary and its stderr.
pub fn finish(mut child: Child, log: &Path, what: &str) -> (String, String) {
    let status = child.wait().unwrap();
    let summary = std::fs::read_to_string(log).unwrap();
    let stderr = std::fs::read_to_string(err_path(log)).unwrap_or_default();
    assert!(status.success(), "{what} failed ({status}):\n{summary}\n{stderr}");
    (summary, stderr)
}
