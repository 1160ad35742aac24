//! One process per sensor, against a real broker: a second process writing the same sensor's
//! walk beside a live one is noticed, by both, and neither goes on writing the walk twice.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use testkit::{Running, Tansu};

fn sensor(tansu: &Tansu, flags: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weather-producer"));
    command.args(["-b", &tansu.bootstrap(), "--quiet"]).args(flags).env("RUST_LOG", "info");
    command
}

const NOTICED: &str = "another process is writing sensor-1's walk to partition";

/// The compose demo's mistake on the local stack: a live sensor runs, and a history run of the
/// same sensor is started beside it. The history run ends with an error that names the other
/// writer and says to run one process per sensor; the live sensor notices it at its next look
/// at the tail of its partition, and stops with the same error.
#[test]
fn a_second_writer_of_a_sensor_is_noticed_by_both() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 3);
    let mut live = Running::new(sensor(&tansu, &["--rate", "20"]).stderr(Stdio::piped()).spawn().unwrap());
    // Its log, line by line, to a channel: the test waits for events, not for time.
    let (lines, log) = mpsc::channel();
    let stderr = BufReader::new(live.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match log.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    let done = line.contains(needle);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no `{needle}` in the live sensor's log ({e}):\n{}", seen.join("\n")),
            }
        }
    };
    wait_for("sending to `weather`");

    let history = sensor(&tansu, &["--rate", "50", "--count", "100"]).output().unwrap();
    let history_log = String::from_utf8_lossy(&history.stderr);
    assert!(!history.status.success(), "the history run beside a live sensor fails:\n{history_log}");
    assert!(history_log.contains(NOTICED) && history_log.contains("Run one process per sensor"), "{history_log}");

    let live_log = wait_for(NOTICED).join("\n");
    assert!(live_log.contains("Run one process per sensor"), "{live_log}");
    let status = live.wait().unwrap();
    assert!(!status.success(), "the live sensor stops with an error:\n{live_log}");
}
