//! The benchmark at a small size, for the correctness of its counts, not its speed: every step
//! checks what it handled against what was produced, on Tansu and on the mock cluster.
//!
//! The benchmark runs the binaries built beside it, as `cargo test --workspace` builds them
//! (`scripts/test`); a binary not built is the benchmark's error.

use std::process::Command;

#[test]
fn a_small_run_counts_every_step_on_both_brokers() {
    let out = Command::new(env!("CARGO_BIN_EXE_weather-bench"))
        .args(["--readings", "16000", "--sensors", "4", "--rounds", "1"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(out.status.success(), "the benchmark failed ({}):\n{stdout}\n{stderr}", out.status);
    for broker in ["Tansu (memory storage), 8 partitions", "librdkafka mock cluster, 16 partitions"] {
        let table = stdout.split_once(broker).map(|(_, rest)| rest).unwrap_or_else(|| panic!("no table for {broker}"));
        let steps =
            ["producer ", "replay (v2) ", "archive (disk) ", "replay + postgres ", "replay + topic ", "report "];
        for step in steps {
            assert!(
                table.lines().any(|line| line.starts_with(step)),
                "{broker}: no row for `{}`:\n{stdout}",
                step.trim_end()
            );
        }
    }
}
