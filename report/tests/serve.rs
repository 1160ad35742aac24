//! `weather-report --serve`, the binary, on a real broker (Tansu) and in a real browser
//! (headless Chromium, driven over the DevTools protocol): the page loads with the table as it
//! is, windows published afterwards appear on it without a reload, and SIGTERM stops it.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::week;
use testkit::chromium::Chromium;
use testkit::Tansu;
use weather_common::aggregate::Aggregate;

/// How long a published window may take to show on the page: generous, as Chromium, the broker
/// and the report share a busy machine's two cores. That it came without a reload, through the
/// event stream, `window.loadedOnce` shows; it shows within a second on an idle machine.
const SHOWN_WITHIN: Duration = Duration::from_secs(30);

fn publish(tansu: &Tansu, windows: &[Aggregate]) {
    let records: Vec<(Vec<u8>, Vec<u8>)> = windows.iter().map(|a| (a.key.to_json(), a.to_json())).collect();
    let raw: Vec<testkit::RawMessage<'_>> =
        records.iter().map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice()))).collect();
    tansu.send_raw("aggregates", &raw);
}

/// The page's table, row by row: sensor, windows, first, last, missing, avg_temp min / mean / max.
const ROWS: &str = "[...document.querySelectorAll('#live table tr')].slice(1)
    .map(tr => [...tr.cells].slice(0, 6).map(td => td.textContent))";

/// Per sensor, the points of its temperature chart: the vertices of its data lines (the only
/// lines of width 2) and its dots (lone windows).
const POINTS: &str = "Object.fromEntries([...document.querySelectorAll('#live figure.chart.temperature')].map(f => [
    f.dataset.sensor,
    [...f.querySelectorAll('polyline[stroke-width=\"2\"]')]
        .map(l => l.getAttribute('points').trim().split(/\\s+/).length).reduce((a, b) => a + b, 0)
      + f.querySelectorAll('circle').length]))";

/// The page follows the topic: it loads with the table as it is; a new sensor, a new window and
/// a window republished with a new value then show on it within seconds, through the event
/// stream (no reload), the new value replacing the old; SIGTERM stops the server, which prints
/// the table as last seen, and the page says it is no longer live.
#[test]
fn the_page_follows_the_topic() {
    let tansu = Tansu::start();
    tansu.create_topic("aggregates", 2);
    publish(&tansu, &[week(1, 1, 686), week(1, 2, 701), week(1, 3, 650), week(2, 1, 600), week(2, 2, 610)]);
    let report = Served::start(&tansu);
    let mut chromium = Chromium::start();
    let mut tab = chromium.open(&report.url);

    assert_eq!(
        tab.evaluate(ROWS),
        json!([
            ["sensor-1", "3", "1", "3", "0", "65.0 / 67.9 / 70.1"],
            ["sensor-2", "2", "1", "2", "0", "60.0 / 60.5 / 61.0"]
        ])
    );
    assert_eq!(tab.evaluate(POINTS), json!({ "sensor-1": 3, "sensor-2": 2 }));
    let live = tab.wait_for("document.getElementById('live-status').textContent === '● live'", SHOWN_WITHIN);
    live.unwrap_or_else(|e| panic!("the event stream did not open: {e}"));
    // Gone if the page were loaded again.
    tab.evaluate("window.loadedOnce = true");

    publish(&tansu, &[week(3, 1, 500), week(2, 3, 620), week(1, 2, 999)]);
    let expected = json!([
        ["sensor-1", "3", "1", "3", "0", "65.0 / 77.8 / 99.9"],
        ["sensor-2", "3", "1", "3", "0", "60.0 / 61.0 / 62.0"],
        ["sensor-3", "1", "1", "1", "0", "50.0 / 50.0 / 50.0"]
    ]);
    let started = Instant::now();
    let condition = format!("JSON.stringify({ROWS}) === {}", serde_json::to_string(&expected.to_string()).unwrap());
    let shown = tab.wait_for(&condition, SHOWN_WITHIN);
    shown.unwrap_or_else(|e| panic!("{e}; the table shows {}", tab.evaluate(ROWS)));
    println!("the new windows showed after {:?}", started.elapsed());
    assert_eq!(tab.evaluate(POINTS), json!({ "sensor-1": 3, "sensor-2": 3, "sensor-3": 1 }));
    assert_eq!(tab.evaluate("window.loadedOnce === true"), json!(true), "the page was not loaded again");
    let status = tab.evaluate("document.getElementById('live-status').textContent");
    assert!(status.as_str().is_some_and(|s| s.starts_with("● live, updated ")), "{status}");

    let output = report.stop();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}: {stdout}", output.status);
    assert!(stdout.contains("table: 7 windows (1 overwritten by a later value, 0 deleted by a tombstone)"), "{stdout}");
    assert!(stdout.contains("read `aggregates`: 8 records from 2 partitions"), "{stdout}");
    let gone =
        tab.wait_for("document.getElementById('live-status').textContent.startsWith('○ not live')", SHOWN_WITHIN);
    gone.unwrap_or_else(|e| panic!("the page did not notice that the report stopped: {e}"));
}

/// An address that cannot be served on (here one already taken) fails the run at once, naming
/// it and what --serve takes, before any broker is asked (none answers at this one).
#[tokio::test]
async fn a_taken_address_fails_at_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let argv =
        ["weather-report", "-b", "127.0.0.1:1", "--connect-timeout", "5", "-t", "aggregates", "--serve", &address];
    let settings = <weather_report::Cli as clap::Parser>::try_parse_from(argv).unwrap().settings().unwrap();
    let started = Instant::now();
    let err = format!("{:#}", weather_report::run(settings, std::future::pending()).await.unwrap_err());
    assert!(err.contains(&format!("cannot serve on `{address}`")) && err.contains("HOST:PORT"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

/// `weather-report --serve` as a user runs it, on a port the system chooses; killed if the test
/// fails before it is stopped.
struct Served {
    child: Option<Child>,
    url: String,
}

impl Served {
    fn start(tansu: &Tansu) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weather-report"))
            .args(["--serve", "127.0.0.1:0", "-b", &tansu.bootstrap(), "-t", "aggregates"])
            .args(["--connect-timeout", "20", "--quiet"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting weather-report");
        let (lines, logged) = mpsc::channel();
        let stderr = child.stderr.take().expect("its stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("weather-report: {line}");
                let _ = lines.send(line);
            }
        });
        let mut served = Served { child: Some(child), url: String::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while served.url.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = logged.recv_timeout(left).expect("weather-report did not say where it serves within 60 s");
            if let Some((_, url)) = line.split_once("serving the live report on ") {
                served.url = url.split_whitespace().next().expect("a URL").to_string();
            }
        }
        served
    }

    /// SIGTERM, as a service manager stops it; its output once it exited.
    fn stop(mut self) -> Output {
        let child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("running kill");
        assert!(status.success());
        let (exited, output) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exited.send(child.wait_with_output());
        });
        output
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("weather-report did not stop within 30 s of SIGTERM")
            })
            .expect("waiting for weather-report")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
