//! A member of an archive group that the group gives no partition says so and why, and a
//! bounded run of it ends instead of waiting forever.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::Tansu;

/// A member's process, killed when dropped (a failed assertion included).
struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn member(tansu: &Tansu, lake: &std::path::Path, log: &std::path::Path, bounded: bool) -> Member {
    // Member ids begin with the client id, and the range assignor gives the partition to the
    // first member id: the bounded member is the one given nothing.
    let client = if bounded { "client.id=z-bounded" } else { "client.id=a-following" };
    let mut command = Command::new(env!("CARGO_BIN_EXE_weather-archive"));
    command
        .args(["-b", &tansu.bootstrap(), "--group", "sharing", "--quiet", "-X", client, "-o"])
        .arg(lake)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if bounded {
        command.arg("--until-end");
    }
    Member(command.spawn().expect("starting weather-archive"))
}

fn text(path: &std::path::Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// On a topic of one partition, a member follows it; a second member joins with --until-end
/// and is given nothing: it says it was assigned no partition and why, and ends at once, where
/// it used to wait for a share that could not come. (Mutation: an empty share not counted as
/// an assignment; the bounded member then waits 45 s and stops with the error that says why.)
#[test]
fn a_member_given_nothing_says_so_and_a_bounded_one_ends() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(tansu.produce("weather", 2, 50, 4));
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (first_log, second_log) = (dir.path().join("first.log"), dir.path().join("second.log"));
    let _first = member(&tansu, &lake, &first_log, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !text(&first_log).contains("the group assigned partitions [0]") {
        assert!(Instant::now() < deadline, "the first member was given the partition:\n{}", text(&first_log));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut second = member(&tansu, &lake, &second_log, true);
    let status = loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "the bounded member did not end:\n{}",
            text(&second_log)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (first, second) = (text(&first_log), text(&second_log));
    assert!(status.success(), "{second}");
    let said = |log: &str| log.contains("assigned this instance no partition");
    assert!(said(&second) && second.contains("the bounded run ends"), "{second}");
    assert!(!said(&first), "{first}");
}
