//! Errors known at once are said at once, in words a user can act on: a broker that refuses
//! every connection, and a PostgreSQL server that asks for a password nobody gave.

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{free_port, PostgresServer, Tansu};

/// Runs `command` to its end; its exit status, stderr, and how long it took.
fn run(command: &mut Command) -> (std::process::ExitStatus, String, Duration) {
    let started = Instant::now();
    let out = command.env("RUST_LOG", "info").output().expect("starting weather-consumer");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned(), started.elapsed())
}

/// A broker that refuses every connection: one warning names --connect-timeout while it
/// retries, librdkafka's own repeated errors stay out of the output, and with no broker ever
/// answering the run gives up after 15 s (not a minute), saying what to do.
#[test]
fn a_refused_broker_is_said_once_and_given_up_on_soon() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = format!("127.0.0.1:{}", free_port());
    let (status, stderr, took) = run(Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["-b", &nobody, "--until-end", "--quiet", "-o"])
        .arg(dir.path().join("out.txt")));
    assert!(!status.success(), "{stderr}");
    assert!(took < Duration::from_secs(25), "took {took:?}:\n{stderr}");
    assert!(took >= Duration::from_secs(8), "it retries before giving up ({took:?}):\n{stderr}");
    assert_eq!(stderr.matches("--connect-timeout").count(), 1, "one warning names the setting:\n{stderr}");
    assert!(!stderr.contains("librdkafka"), "librdkafka's own errors are details:\n{stderr}");
    assert!(stderr.lines().count() <= 3, "a retry and an error, not a page:\n{stderr}");
    assert!(stderr.contains(&format!("no Kafka broker answered at {nobody} within 15 s")), "{stderr}");
}

/// A PostgreSQL server that asks for a password, with none in PGPASSWORD and no password
/// file: said at once (not after a minute of retries), with where the password is looked for
/// and the line the password file needs.
#[test]
fn a_missing_postgres_password_is_said_at_once() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    let pg = PostgresServer::start();
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("no-such-pgpass");
    let (status, stderr, took) = run(Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
        .args(["-b", &tansu.bootstrap(), "--until-end", "--quiet", "--to-postgres", &pg.url(), "-o"])
        .arg(dir.path().join("out.txt"))
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", &nowhere));
    assert!(!status.success(), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}:\n{stderr}");
    assert!(stderr.contains("asks for a password for user `weather`, and none was found"), "{stderr}");
    assert!(stderr.contains(&format!("{}, which does not exist", nowhere.display())), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{}:weather:weather:PASSWORD", pg.port())), "{stderr}");
    assert!(!stderr.contains("unreachable"), "{stderr}");
}

/// A rerun into tables that exist says nothing of them: no "already exists, skipping" notice
/// from PostgreSQL at each start (the tables are created only when missing).
#[test]
fn a_rerun_into_existing_tables_is_quiet() {
    let tansu = Tansu::start();
    tansu.create_topic("weather", 1);
    let pg = PostgresServer::start();
    let dir = tempfile::tempdir().unwrap();
    let rerun = || {
        run(Command::new(env!("CARGO_BIN_EXE_weather-consumer"))
            .args(["-b", &tansu.bootstrap(), "--until-end", "--quiet", "--to-postgres", &pg.url(), "-o"])
            .arg(dir.path().join("out.txt"))
            .env("PGPASSWORD", pg.password()))
    };
    let (first, stderr, _) = rerun();
    assert!(first.success(), "{stderr}");
    assert_eq!(pg.query("SELECT count(*) FROM weather_aggregates_state"), [[Some("1".to_string())]]);
    let (second, stderr, _) = rerun();
    assert!(second.success(), "{stderr}");
    assert!(!stderr.contains("already exists") && !stderr.contains("NOTICE"), "{stderr}");
}
