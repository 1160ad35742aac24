//! One writer per output, against the real broker: a second consumer on the same output is
//! refused at once and changes nothing; a SIGKILLed writer leaves no lock behind.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::{Running, Tansu};
use weather_consumer::checkpoint::Checkpoint;

fn consumer(tansu: &Tansu, output: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weather-consumer"));
    command.args(["-b", &tansu.bootstrap(), "--preset", "v1", "-o", output.to_str().unwrap()]).args(extra);
    command
}

fn run(mut command: Command) -> Output {
    command.output().unwrap()
}

/// Waits until the running consumer has made all `readings` durable.
fn wait_until_caught_up(writer: &mut Child, output: &Path, readings: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = Checkpoint::read(output).ok().flatten().map_or(0, |c| c.offsets.values().sum::<i64>());
        if done == readings {
            return;
        }
        assert!(writer.try_wait().unwrap().is_none(), "the first writer ended");
        assert!(Instant::now() < deadline, "the first writer did not catch up ({done} of {readings})");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// While a consumer follows the topic into an output, a second one on the same output stops
/// at once, naming the output and the process that holds it, and leaves the file and its
/// checkpoint as they were. Once the first is SIGKILLed, the kernel has released its lock: the
/// next run takes the output over and resumes at its checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_writer_is_refused_and_a_killed_one_leaves_no_lock() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 2);
    tansu.produce("weather", 1, 95, 8).await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("same.txt");
    let mut first =
        Running::new(consumer(&tansu, &output, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    wait_until_caught_up(&mut first, &output, 95);
    let before = (std::fs::read(&output).unwrap(), std::fs::read(Checkpoint::path_for(&output)).unwrap());

    let started = Instant::now();
    let second = run(consumer(&tansu, &output, &["--until-end"]));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "refused at once, not after a run");
    assert!(
        stderr.contains(&format!("{} is being written by another process (pid {}:", output.display(), first.id())),
        "{stderr}"
    );
    let after = (std::fs::read(&output).unwrap(), std::fs::read(Checkpoint::path_for(&output)).unwrap());
    assert!(before == after, "the refused writer changed nothing");

    first.kill().unwrap();
    first.wait().unwrap();
    let next = run(consumer(&tansu, &output, &["--until-end"]));
    let stdout = String::from_utf8_lossy(&next.stdout);
    assert!(next.status.success(), "{}", String::from_utf8_lossy(&next.stderr));
    assert!(stdout.contains("readings consumed:  0 "), "resumed at the killed writer's checkpoint:\n{stdout}");
    assert_eq!(std::fs::read(&output).unwrap(), before.0);
}
