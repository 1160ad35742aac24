//! The benchmark: on one broker and the same data, in one run, it measures side by side
//!
//! - produce baseline: a minimal rdkafka loop sending ready-made JSON readings, with the
//!   sensor's delivery settings (idempotent, acks=all) and its warm-up before the clock starts;
//! - producer: `weather-producer --rate 0` sending as many readings;
//! - consume baseline: the fastest consume loop there is, and the baseline of every job that
//!   reads: every partition from the beginning to the end, librdkafka's fetched messages taken
//!   a batch at a time as the replay takes them ([`weather_common::fetch`]) and discarded;
//! - consume, poll: the same loop with one `poll` per message, as a plain rdkafka consumer
//!   reads (shown for comparison, no target);
//! - replay: `weather-consumer` recomputing version 2 (weekly, °F, CSV, checkpoints on) from
//!   the beginning to the end of that topic;
//! - replay + metrics: the same replay serving its metrics (`--metrics-addr`), beside the replay;
//! - archive: `weather-archive` writing every reading of that topic to Parquet files on the
//!   local disk, from the beginning to the end (beside the consume baseline too); and the same
//!   into a Delta table (`--table delta`, beside the Hive-file archive), then its compaction,
//!   timed;
//! - one member, two members: the replay into PostgreSQL alone (`--no-file`) by one process,
//!   by the one member of a shared group (`--share`), and by two members together: their
//!   combined rate, and the machine's CPU meanwhile (what bounds it on two cores);
//! - replay + PostgreSQL: the same replay also loading every week into a PostgreSQL table
//!   (`--to-postgres`, a server of its own with durable commits), beside the file-only replay;
//! - replay + topic: the same replay also publishing every week to a compacted aggregates
//!   topic (`--to-topic`), beside the file-only replay;
//! - report: `weather-report` reading the aggregates of the readings (one record per week, as
//!   the consumer's topic sink writes them) as a table, beside the consume baseline on that
//!   topic;
//!
//! each in a process of its own, so that its peak resident memory is its own. Every rate is
//! from a step's first message to its last, as the step's own clock has it; the wall time of
//! the whole process is printed beside it, and a step that took more than a second longer than
//! its data time is explained below the table. It runs on
//! Tansu (the local stack's broker) and on librdkafka's in-process mock cluster, with enough
//! partitions that the mock broker is not the bottleneck. Counts are checked (the run fails
//! if any is off); `--check-targets` also fails it when a target is missed.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::{Parser, Subcommand, ValueEnum};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use weather_common::aggregate::{Aggregate, WindowKey};
use weather_common::fetch::Fetcher;
use weather_common::kafka::{self, Deliveries, KafkaArgs};
use weather_common::meter::{counted, thousands, Span};
use weather_common::units::{Tenths, Unit};
use weather_producer::walk::Walk;

#[derive(Parser)]
#[command(name = "weather-bench", about = "Replay and produce throughput and memory, against minimal rdkafka loops")]
struct Cli {
    #[command(subcommand)]
    step: Option<Step>,

    /// Readings in all.
    #[arg(long, default_value_t = 1_000_000)]
    readings: u64,

    /// Sensors the readings come from.
    #[arg(long, default_value_t = 32)]
    sensors: u32,

    /// Which brokers to run on.
    #[arg(long, value_enum, default_value = "both")]
    broker: BrokerChoice,

    /// Rounds of the steps, each on a fresh broker; each step's best rate counts (this
    /// machine's timings vary from run to run).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,

    /// Fail unless every target is met (throughput ratios, consumer memory).
    #[arg(long)]
    check_targets: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BrokerChoice {
    Tansu,
    Mock,
    Both,
}

/// The baseline loops, run as child processes of the benchmark.
#[derive(Subcommand)]
enum Step {
    #[command(hide = true)]
    ProduceBaseline { bootstrap: String, topic: String, count: u64, sensors: u32 },
    #[command(hide = true)]
    ConsumeBaseline {
        bootstrap: String,
        topic: String,
        /// One `poll` per message, as a plain rdkafka consumer reads (instead of a batch at a
        /// time).
        #[arg(long)]
        poll: bool,
    },
    /// A mock cluster holding the benchmark's readings in `weather` and their weeks in
    /// `aggregates` (as the report step reads them), for a profiler to run a job against:
    /// prints its bootstrap address, and stops when standard input closes.
    Mock {
        #[arg(long, default_value_t = 1_000_000)]
        readings: u64,
        #[arg(long, default_value_t = 32)]
        sensors: u32,
    },
    /// Runs a command and prints its peak resident memory after its output (see `measure`).
    #[command(hide = true)]
    Launch {
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

/// One measured process.
struct Measured {
    name: &'static str,
    readings: u64,
    /// The whole process, start-up and connection included.
    elapsed: Duration,
    /// From its first message to its last, as the process reports it ([`Span`]): what the
    /// rates compare. Start-up (connecting, looking up metadata) is a fixed cost of a few
    /// hundred milliseconds that moves in steps of librdkafka's 100 ms timers, which at a
    /// million readings would swamp the difference being measured; it is in `elapsed`.
    data_seconds: f64,
    peak_rss_kib: u64,
    stdout: String,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.readings as f64 / self.data_seconds
    }
}

/// The rate a binary prints at the end of its summary line, `... (<rate>/s)`.
fn reported_rate(stdout: &str, line_start: &str) -> anyhow::Result<f64> {
    let line = stdout.lines().find(|l| l.starts_with(line_start)).context("no summary line")?;
    let rate = line.rsplit_once('(').and_then(|(_, r)| r.strip_suffix("/s)")).context("no rate in the summary")?;
    Ok(rate.replace(',', "").parse()?)
}

fn main() -> anyhow::Result<()> {
    weather_common::allocator::configure();
    let cli = Cli::parse();
    match cli.step {
        Some(Step::ProduceBaseline { bootstrap, topic, count, sensors }) => {
            produce_baseline(&bootstrap, &topic, count, sensors)
        }
        Some(Step::ConsumeBaseline { bootstrap, topic, poll }) => consume_baseline(&bootstrap, &topic, poll),
        Some(Step::Launch { command }) => launch(&command),
        Some(Step::Mock { readings, sensors }) => serve_mock(readings, sensors),
        None => run(&cli),
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    ensure!(cli.readings.is_multiple_of(u64::from(cli.sensors)), "--readings must be a multiple of --sensors");
    println!("weather-bench: {} readings from {} sensors, on {}", cli.readings, cli.sensors, machine());
    let mut missed = Vec::new();
    if cli.broker != BrokerChoice::Mock {
        let partitions = 8;
        let fresh = || -> anyhow::Result<Broker> {
            let tansu = testkit::Tansu::start();
            for (topic, count) in topics(partitions) {
                tansu.create_topic(topic, count);
            }
            Ok(Broker::Tansu(tansu))
        };
        missed.extend(bench_on("Tansu (memory storage)", &fresh, partitions, cli)?);
    }
    if cli.broker != BrokerChoice::Tansu {
        let partitions = mock_partitions(cli.readings);
        let fresh = || -> anyhow::Result<Broker> { Ok(Broker::Mock(mock_cluster(partitions)?)) };
        missed.extend(bench_on("librdkafka mock cluster", &fresh, partitions, cli)?);
    }
    if cli.check_targets && !missed.is_empty() {
        bail!("targets missed: {}", missed.join("; "));
    }
    Ok(())
}

/// The mock broker keeps about 5 MiB per partition (and drops the rest): room for the readings
/// (about 200 bytes each as stored), twice over.
fn mock_partitions(readings: u64) -> u32 {
    ((readings * 2 * 200) / (5 << 20) + 1).clamp(16, 512) as u32
}

/// A mock cluster with the topics of a round. It has no CreateTopics: the sink's topics exist,
/// as an operator would create them.
fn mock_cluster(partitions: u32) -> anyhow::Result<MockCluster<'static, rdkafka::producer::DefaultProducerContext>> {
    let mock = MockCluster::new(1)?;
    let sink = [(TO_TOPIC, partitions), (TO_TOPIC_STATE, 1)];
    for (topic, count) in topics(partitions).into_iter().chain(sink) {
        mock.create_topic(topic, count as i32, 1)?;
    }
    Ok(mock)
}

/// `weather-bench mock`: the readings and aggregates of a round in a mock cluster, until standard
/// input closes.
fn serve_mock(readings: u64, sensors: u32) -> anyhow::Result<()> {
    ensure!(readings.is_multiple_of(u64::from(sensors)), "--readings must be a multiple of --sensors");
    let mock = mock_cluster(mock_partitions(readings))?;
    let status = Command::new(sibling("weather-producer")?)
        .args(["-b", &mock.bootstrap_servers(), "-t", "weather", "--rate", "0", "--seed", "1", "--quiet"])
        .args(["--count", &(readings / u64::from(sensors)).to_string(), "--sensors", &sensors.to_string()])
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "the producer failed ({status})");
    publish_aggregates(&mock.bootstrap_servers(), "aggregates", sensors, readings / u64::from(sensors) / 7)?;
    println!("{}", mock.bootstrap_servers());
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}

/// The aggregates topic of the "replay + topic" step, and its state topic.
const TO_TOPIC: &str = "weekly.aggregates";
const TO_TOPIC_STATE: &str = "weekly.aggregates.state";

/// The topics of a round, with their partition counts: every round runs on a fresh broker,
/// so that no round sees (or pays for) another's data.
fn topics(partitions: u32) -> [(&'static str, u32); 4] {
    [("baseline", partitions), ("weather", partitions), ("weather.dlq", 1), ("aggregates", partitions)]
}

/// A broker for one round; stopped when dropped.
enum Broker {
    Tansu(testkit::Tansu),
    Mock(MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
}

impl Broker {
    fn bootstrap(&self) -> String {
        match self {
            Broker::Tansu(tansu) => tansu.bootstrap(),
            Broker::Mock(mock) => mock.bootstrap_servers(),
        }
    }
}

/// Runs every step on one broker, checks the counts, prints the table, returns the targets
/// missed.
fn bench_on(
    broker: &str,
    fresh: &dyn Fn() -> anyhow::Result<Broker>,
    partitions: u32,
    cli: &Cli,
) -> anyhow::Result<Vec<String>> {
    let n = cli.readings;
    let per_sensor = n / u64::from(cli.sensors);
    let me = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let output = dir.path().join("weather_aggregation.csv");

    // The round with the best rate (the shortest data time) counts; the peak memory is the
    // highest of all rounds.
    let best = |a: Measured, b: Measured| {
        if b.data_seconds < a.data_seconds {
            Measured { peak_rss_kib: a.peak_rss_kib.max(b.peak_rss_kib), ..b }
        } else {
            Measured { peak_rss_kib: a.peak_rss_kib.max(b.peak_rss_kib), ..a }
        }
    };
    // One PostgreSQL server for all rounds, commits fsynced as in production; every round
    // loads a table of its own.
    let postgres = testkit::PostgresServer::start_with_fsync(true);
    let to_postgres = dir.path().join("to_postgres.csv");
    let to_topic_output = dir.path().join("to_topic.csv");
    let mut rounds: Vec<Vec<Measured>> = Vec::new();
    // The archive into a Delta table against the Hive-file archive of the same round (the best
    // round's ratio), and that table's compaction.
    let mut table_best: Option<(f64, String)> = None;
    let mut member_best: Option<f64> = None;
    let mut pair_best: Option<Pair> = None;
    for round in 0..cli.rounds {
        let server = fresh()?;
        let bootstrap = server.bootstrap();
        let bootstrap = bootstrap.as_str();
        let (baseline_topic, topic) = ("baseline", "weather");
        let produce_baseline = measure(
            "produce baseline",
            n,
            Command::new(&me).args([
                "produce-baseline",
                bootstrap,
                baseline_topic,
                &n.to_string(),
                &cli.sensors.to_string(),
            ]),
        )?;
        let produce_baseline = with_data_seconds(produce_baseline, n)?;
        let producer = measure(
            "producer",
            n,
            Command::new(sibling("weather-producer")?)
                .args(["-b", bootstrap, "-t", topic, "--rate", "0", "--seed", "1"])
                .args(["--count", &per_sensor.to_string(), "--sensors", &cli.sensors.to_string()]),
        )?;
        let ack = format!("sent {}: {} acknowledged, 0 failed", counted(n, "reading"), thousands(n));
        ensure!(producer.stdout.starts_with(&ack), "the producer reported: {}", producer.stdout);
        let producer = Measured { data_seconds: n as f64 / reported_rate(&producer.stdout, "sent ")?, ..producer };
        let consume_baseline =
            measure("consume baseline", n, Command::new(&me).args(["consume-baseline", bootstrap, topic]))?;
        let consume_baseline = with_data_seconds(consume_baseline, n)?;
        let consume_poll =
            measure("consume, poll", n, Command::new(&me).args(["consume-baseline", "--poll", bootstrap, topic]))?;
        let consume_poll = with_data_seconds(consume_poll, n)?;
        let replay = measure_job(
            "replay (v2)",
            n,
            Command::new(sibling("weather-consumer")?)
                .args(["-b", bootstrap, "-t", topic, "--window", "week", "--unit", "fahrenheit", "--format", "csv"])
                .args(["--sensor-column", "--from-beginning", "--until-end", "-o"])
                .arg(&output),
            CONSUMED,
        )?;
        let weeks = u64::from(cli.sensors) * (per_sensor / 7);
        ensure!(
            replay.stdout.contains(&format!("windows written:    {} complete", thousands(weeks))),
            "the replay wrote:\n{}",
            replay.stdout
        );
        ensure!(std::fs::read_to_string(&output)?.lines().count() as u64 == weeks + 1, "the output lacks rows");
        // The same replay serving its metrics (nobody scrapes: what counting costs the loop).
        let with_metrics = measure_job(
            "replay + metrics",
            n,
            Command::new(sibling("weather-consumer")?)
                .args(["-b", bootstrap, "-t", topic, "--window", "week", "--unit", "fahrenheit", "--format", "csv"])
                .args(["--sensor-column", "--from-beginning", "--until-end", "--metrics-addr", "127.0.0.1:0", "-o"])
                .arg(&output),
            CONSUMED,
        )?;
        let lake = dir.path().join("lake");
        if lake.exists() {
            std::fs::remove_dir_all(&lake)?;
        }
        let archive = measure_job(
            "archive (disk)",
            n,
            Command::new(sibling("weather-archive")?)
                .args(["-b", bootstrap, "-t", topic, "--from-beginning", "--until-end", "-o"])
                .arg(&lake),
            "readings archived:",
        )?;
        let (in_table, compaction) = table_archive(bootstrap, topic, n, dir.path())?;
        let ratio = in_table.rate() / archive.rate();
        if table_best.as_ref().is_none_or(|(best, _)| ratio > *best) {
            table_best = Some((ratio, format!("{}; {compaction}", files_written(&in_table.stdout)?)));
        }
        let table = format!("bench_round_{round}");
        let mut loading = Command::new(sibling("weather-consumer")?);
        loading
            .args(["-b", bootstrap, "-t", topic, "--window", "week", "--unit", "fahrenheit", "--format", "csv"])
            .args(["--sensor-column", "--from-beginning", "--until-end", "--to-postgres", &postgres.url()])
            .args(["--postgres-table", &table, "-o"])
            .arg(&to_postgres)
            .env("PGPASSWORD", postgres.password());
        let to_table = measure_job("replay + postgres", n, &mut loading, CONSUMED)?;
        let rows = postgres.query(&format!("SELECT count(*) FROM {table}"));
        ensure!(rows == [[Some(weeks.to_string())]], "the table holds {rows:?} rows, not {weeks}");
        let (ratio, one_member) = shared_member(bootstrap, topic, n, weeks, &postgres, round)?;
        member_best = Some(member_best.map_or(ratio, |best: f64| best.max(ratio)));
        let pair = member_pair(bootstrap, topic, n, weeks, &postgres, round, one_member)?;
        if pair_best.as_ref().is_none_or(|best: &Pair| pair.rate > best.rate) {
            pair_best = Some(pair);
        }
        let mut publishing = Command::new(sibling("weather-consumer")?);
        publishing
            .args(["-b", bootstrap, "-t", topic, "--window", "week", "--unit", "fahrenheit", "--format", "csv"])
            .args(["--sensor-column", "--from-beginning", "--until-end", "--to-topic", TO_TOPIC, "-o"])
            .arg(&to_topic_output);
        let to_topic = measure_job("replay + topic", n, &mut publishing, CONSUMED)?;
        ensure!(
            to_topic.stdout.contains(&format!("({} sent)", counted(weeks, "window"))),
            "the replay + topic sent:\n{}",
            to_topic.stdout
        );
        // The weeks of these readings, as the topic sink writes them: the table the report holds.
        publish_aggregates(bootstrap, "aggregates", cli.sensors, per_sensor / 7)?;
        let report_baseline = measure(
            "consume aggregates",
            weeks,
            Command::new(&me).args(["consume-baseline", bootstrap, "aggregates"]),
        )?;
        let report_baseline = with_data_seconds(report_baseline, weeks)?;
        let report = measure(
            "report",
            weeks,
            Command::new(sibling("weather-report")?).args(["-b", bootstrap, "-t", "aggregates"]),
        )?;
        ensure!(
            report.stdout.contains(&format!("read `aggregates`: {} from ", counted(weeks, "record")))
                && report.stdout.contains(&format!("table: {} (", counted(weeks, "window"))),
            "the report read:\n{}",
            report.stdout
        );
        let report =
            Measured { data_seconds: weeks as f64 / reported_rate(&report.stdout, "read `aggregates`")?, ..report };
        println!(
            "{broker}, round {}/{}: producer {:.2}x, replay {:.2}x, archive {:.2}x, report {:.2}x its baseline \
             (replay peak {:.1} MiB, archive {:.1} MiB, report {:.1} MiB; archive {}); replay + metrics {:.2}x, \
             replay + postgres {:.2}x, replay + topic {:.2}x the replay (wall {:.2} s for {:.2} s of data)",
            rounds.len() + 1,
            cli.rounds,
            producer.rate() / produce_baseline.rate(),
            replay.rate() / consume_baseline.rate(),
            archive.rate() / consume_baseline.rate(),
            report.rate() / report_baseline.rate(),
            replay.peak_rss_kib as f64 / 1024.0,
            archive.peak_rss_kib as f64 / 1024.0,
            report.peak_rss_kib as f64 / 1024.0,
            files_written(&archive.stdout)?,
            with_metrics.rate() / replay.rate(),
            to_table.rate() / replay.rate(),
            to_topic.rate() / replay.rate(),
            to_topic.elapsed.as_secs_f64(),
            to_topic.data_seconds,
        );
        rounds.push(vec![
            produce_baseline,
            producer,
            consume_baseline,
            consume_poll,
            replay,
            with_metrics,
            archive,
            to_table,
            to_topic,
            report_baseline,
            report,
        ]);
    }
    let best_of: Vec<Measured> = rounds
        .into_iter()
        .reduce(|a, b| a.into_iter().zip(b).map(|(a, b)| best(a, b)).collect())
        .expect("at least one round");
    let Ok(
        [produce_baseline, producer, consume_baseline, consume_poll, replay, with_metrics, archive, to_table, to_topic, report_baseline, report],
    ) = <[Measured; 11]>::try_from(best_of)
    else {
        unreachable!("every round measures eleven steps")
    };

    println!("\n{broker}, {partitions} partitions, best of {} round(s)", cli.rounds);
    println!(
        "{:<18} {:>10} {:>8} {:>8} {:>13} {:>12} {:>14}",
        "step", "readings", "wall s", "data s", "readings/s", "vs baseline", "peak RSS MiB"
    );
    let rows = [
        (&produce_baseline, None),
        (&producer, Some(&produce_baseline)),
        (&consume_baseline, None),
        (&consume_poll, Some(&consume_baseline)),
        (&replay, Some(&consume_baseline)),
        (&with_metrics, Some(&replay)),
        (&archive, Some(&consume_baseline)),
        (&to_table, Some(&replay)),
        (&to_topic, Some(&replay)),
        (&report_baseline, None),
        (&report, Some(&report_baseline)),
    ];
    let mut missed = Vec::new();
    for (m, baseline) in rows {
        let ratio = baseline.map(|b| m.rate() / b.rate());
        println!(
            "{:<18} {:>10} {:>8.2} {:>8.2} {:>13.0} {:>12} {:>14.1}",
            m.name,
            m.readings,
            m.elapsed.as_secs_f64(),
            m.data_seconds,
            m.rate(),
            ratio.map_or("-".to_string(), |r| format!("{r:.2}x")),
            m.peak_rss_kib as f64 / 1024.0
        );
        // Every job that reads is compared with the fastest loop that reads the same topic.
        // The archive's target is lower on the mock cluster: the baseline reads faster there
        // than any real broker serves, and Parquet encoding is a fixed cost per reading.
        let target = match m.name {
            "archive (disk)" if broker.starts_with("Tansu") => Some(0.85),
            "archive (disk)" => Some(0.6),
            // On Tansu the broker is the limit of every reading step; on the mock cluster, which
            // serves a consumer faster than any real broker, the replay's own work is.
            "replay (v2)" if broker.starts_with("Tansu") => Some(0.95),
            "replay (v2)" => Some(0.8),
            // Not a target: what taking one message per call costs a plain consumer.
            "consume, poll" => None,
            // Against the replay without metrics: counting must cost the loop next to nothing.
            "replay + metrics" => Some(0.97),
            // Against the file-only replay: the table's rows cost PostgreSQL's own work.
            "replay + postgres" => Some(0.5),
            // Against the file-only replay: the same replay, plus one record per week. On Tansu:
            // on the mock cluster the polling thread is the bottleneck, and producing the weeks
            // takes CPU from it on the same two cores.
            "replay + topic" if broker.starts_with("Tansu") => Some(0.8),
            "replay + topic" => None,
            _ => Some(0.8),
        };
        if let (Some(ratio), Some(target)) = (ratio, target) {
            if ratio < target {
                missed.push(format!("{broker}: {} at {ratio:.2}x its baseline (target {target}x)", m.name));
            }
        }
    }
    println!("archive (disk): {}", files_written(&archive.stdout)?);
    if let Some(ratio) = member_best {
        println!("replay, one member of a shared group: {ratio:.2}x the single process (both --no-file --to-postgres)");
        if ratio < 0.95 {
            missed.push(format!(
                "{broker}: one member of a shared group at {ratio:.2}x the single process (target 0.95x)"
            ));
        }
    }
    if let Some(pair) = pair_best {
        println!("{pair}");
    }
    if let Some((ratio, line)) = table_best {
        println!("archive (table): {ratio:.2}x the Hive-file archive; {line}");
        if ratio < 0.85 {
            missed.push(format!(
                "{broker}: archive into a Delta table at {ratio:.2}x the Hive-file archive (target 0.85x)"
            ));
        }
    }
    for m in [&produce_baseline, &producer, &consume_baseline, &consume_poll, &replay, &with_metrics, &archive]
        .into_iter()
        .chain([&to_table, &to_topic, &report_baseline, &report])
    {
        if let Some(line) = beyond_data(m) {
            println!("{line}");
        }
    }
    // What the topic sink adds to a user's wait: its start-up (the topic looked up or created,
    // the broker's transactions probed) and its last acknowledgements.
    let topic_adds = start_up(&to_topic) - start_up(&replay);
    println!("replay + topic: {topic_adds:.2} s more wall time beyond its data time than the replay's");
    if topic_adds > 0.5 {
        missed
            .push(format!("{broker}: --to-topic adds {topic_adds:.2} s to the replay's start-up (target under 0.5 s)"));
    }
    if replay.peak_rss_kib > 64 * 1024 {
        missed.push(format!("{broker}: replay peak RSS {} KiB (target under 64 MiB)", replay.peak_rss_kib));
    }
    if archive.peak_rss_kib > 128 * 1024 {
        missed.push(format!("{broker}: archive peak RSS {} KiB (target under 128 MiB)", archive.peak_rss_kib));
    }
    if report.peak_rss_kib > 128 * 1024 {
        missed.push(format!("{broker}: report peak RSS {} KiB (target under 128 MiB)", report.peak_rss_kib));
    }
    Ok(missed)
}

/// The replay into PostgreSQL alone (`--no-file`) by one process, then by the one member of a
/// shared group (`--share`, issue 27), each into a table of its own: the member's rate over
/// the single process's, from first reading to last, and the member's rate.
fn shared_member(
    bootstrap: &str,
    topic: &str,
    n: u64,
    weeks: u64,
    postgres: &testkit::PostgresServer,
    round: u32,
) -> anyhow::Result<(f64, f64)> {
    let mut rates = Vec::new();
    for (name, table, share) in [
        ("replay, postgres alone", format!("bench_alone_{round}"), &[][..]),
        ("replay, one member", format!("bench_member_{round}"), &["--share", "-g", "bench-member", "--lease", "5"][..]),
    ] {
        let table = format!("{table}_{}", std::process::id());
        let mut command = Command::new(sibling("weather-consumer")?);
        command
            .args(["-b", bootstrap, "-t", topic, "--window", "week", "--unit", "fahrenheit", "--no-file"])
            .args(["--from-beginning", "--until-end", "--to-postgres", &postgres.url(), "--postgres-table", &table])
            .args(share)
            .env("PGPASSWORD", postgres.password());
        let measured = measure_job(name, n, &mut command, CONSUMED)?;
        let rows = postgres.query(&format!("SELECT count(*) FROM {table}"));
        ensure!(rows == [[Some(weeks.to_string())]], "{name}: the table holds {rows:?} rows, not {weeks}");
        rates.push(measured.rate());
    }
    Ok((rates[1] / rates[0], rates[1]))
}

/// Two members of a shared group replaying the same data together (issue 27), and what bounds
/// them on this machine.
struct Pair {
    /// Readings per second of the two together: every reading, over the time from the first
    /// member's first reading to the last member's last.
    rate: f64,
    /// One member alone ([`shared_member`]), for comparison.
    one_member: f64,
    /// Per member: readings it read, and its CPU time (user + system), in seconds.
    members: [(u64, f64); 2],
    /// The pair's data time, in seconds.
    seconds: f64,
    /// The pair's wall time, from their start to the last one's exit, in seconds.
    wall: f64,
    /// CPU time the whole machine spent meanwhile (the members, the broker, PostgreSQL, and
    /// anything else running), in seconds, and its cores.
    machine_cpu: f64,
    cores: usize,
}

impl std::fmt::Display for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [(a, a_cpu), (b, b_cpu)] = self.members;
        let members_cpu = a_cpu + b_cpu;
        let busy = self.machine_cpu / (self.wall * self.cores as f64);
        let bound = if busy >= 0.85 {
            format!(
                "bound by the {} cores ({:.0}% busy over the pair's {:.2} s of wall time; the members took {:.0}% of \
                 it, the broker, PostgreSQL and the rest {:.0}%): more members on more machines scale, more on \
                 these cores do not",
                self.cores,
                busy * 100.0,
                self.wall,
                100.0 * members_cpu / self.machine_cpu,
                100.0 * (self.machine_cpu - members_cpu).max(0.0) / self.machine_cpu
            )
        } else {
            format!(
                "not by the CPU ({:.0}% of the {} cores busy over the pair's {:.2} s of wall time): by waits, the \
                 broker's answers, the members' commits and start-up, and the deal of partitions at the start",
                busy * 100.0,
                self.cores,
                self.wall
            )
        };
        write!(
            f,
            "two members of a shared group: {:.0} readings/s together, {:.2}x one member ({} + {} readings, {:.2} s \
             of data, {members_cpu:.2} s of the members' CPU); {bound}",
            self.rate,
            self.rate / self.one_member,
            thousands(a),
            thousands(b),
            self.seconds
        )
    }
}

/// Two members of one shared group (`--share`, lease 2 s) started together on the topic, each
/// until the partitions it owns are read to their end, into a table of their own. The pair's
/// data time runs from the earliest member's first reading to the last member's exit: a
/// member's first reading is taken as its exit less its own data time (first reading to last),
/// so that the last commit after the last reading counts once, at the end.
fn member_pair(
    bootstrap: &str,
    topic: &str,
    n: u64,
    weeks: u64,
    postgres: &testkit::PostgresServer,
    round: u32,
    one_member: f64,
) -> anyhow::Result<Pair> {
    let table = format!("bench_pair_{round}_{}", std::process::id());
    let dir = tempfile::tempdir()?;
    let cpu_before = machine_cpu()?;
    let started = Instant::now();
    let mut waits = Vec::new();
    for member in ["a", "b"] {
        let log = dir.path().join(member);
        let child = Command::new(sibling("weather-consumer")?)
            .args(["-b", bootstrap, "-t", topic, "--window", "week", "--unit", "fahrenheit", "--no-file"])
            .args(["--from-beginning", "--until-end", "--to-postgres", &postgres.url(), "--postgres-table", &table])
            .args(["--share", "-g", "bench-pair", "--member", member, "--lease", "2"])
            .env("PGPASSWORD", postgres.password())
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(&log)?)
            .spawn()?;
        let pid = child.id() as libc::pid_t;
        waits.push(std::thread::spawn(move || {
            wait_with_usage(pid).map(|(status, usage)| (status, usage, Instant::now()))
        }));
    }
    let mut members = [(0, 0.0); 2];
    let mut span: Option<(Instant, Instant)> = None;
    for (i, wait) in waits.into_iter().enumerate() {
        let (status, usage, ended) = wait.join().map_err(|_| anyhow::anyhow!("waiting for a member panicked"))??;
        let stdout = std::fs::read_to_string(dir.path().join(["a", "b"][i]))?;
        ensure!(status == 0, "member {} of the pair failed (wait status {status}):\n{stdout}", ["a", "b"][i]);
        let readings = reported_count(&stdout, CONSUMED)? as u64;
        let seconds = if readings == 0 { 0.0 } else { readings as f64 / reported_rate(&stdout, CONSUMED)? };
        let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        members[i] = (readings, cpu(usage.ru_utime) + cpu(usage.ru_stime));
        if readings > 0 {
            let first = ended.checked_sub(Duration::from_secs_f64(seconds)).unwrap_or(started).max(started);
            span = Some(span.map_or((first, ended), |(a, b)| (a.min(first), b.max(ended))));
        }
    }
    let (machine_cpu, wall) = (machine_cpu()? - cpu_before, started.elapsed().as_secs_f64());
    let rows = postgres.query(&format!("SELECT count(*) FROM {table}"));
    ensure!(rows == [[Some(weeks.to_string())]], "two members: the table holds {rows:?} rows, not {weeks}");
    ensure!(members[0].0 + members[1].0 >= n, "two members read {members:?} readings, fewer than {n}");
    let (first, last) = span.context("neither member read a reading")?;
    let seconds = (last - first).as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    Ok(Pair { rate: n as f64 / seconds, one_member, members, seconds, wall, machine_cpu, cores })
}

/// CPU time every core of the machine has spent busy since boot, in seconds (`/proc/stat`:
/// all but idle and I/O wait).
fn machine_cpu() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().filter(|l| l.starts_with("cpu ")).context("no cpu line in /proc/stat")?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>()?;
    ensure!(ticks.len() >= 5, "/proc/stat's cpu line has {} fields", ticks.len());
    let busy = ticks.iter().sum::<u64>() - ticks[3] - ticks[4];
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(busy as f64 / per_second.max(1) as f64)
}

/// `weather-archive --table delta` on the same topic as the Hive-file archive, measured; then a
/// table of the same readings in about 200 small files, and its compaction (every hour, the
/// current one included: the readings were sent just now), timed: the compaction's line.
fn table_archive(bootstrap: &str, topic: &str, n: u64, dir: &std::path::Path) -> anyhow::Result<(Measured, String)> {
    let table = dir.join("table");
    if table.exists() {
        std::fs::remove_dir_all(&table)?;
    }
    let archive = measure_job(
        "archive (table)",
        n,
        Command::new(sibling("weather-archive")?)
            .args(["-b", bootstrap, "-t", topic, "--from-beginning", "--until-end", "--table", "delta", "-o"])
            .arg(&table),
        "readings archived:",
    )?;
    // The compaction's own table: the same readings in about 200 small files, as a day of
    // flushes every minute leaves them.
    let small = dir.join("table-small");
    if small.exists() {
        std::fs::remove_dir_all(&small)?;
    }
    let max_rows = (n / 200).max(1).to_string();
    let out = Command::new(sibling("weather-archive")?)
        .args(["-b", bootstrap, "-t", topic, "--from-beginning", "--until-end", "--quiet", "--table", "delta"])
        .args(["--max-rows", &max_rows, "-o"])
        .arg(&small)
        .output()?;
    ensure!(out.status.success(), "the small-file archive failed: {}", String::from_utf8_lossy(&out.stderr));
    let started = Instant::now();
    let out = Command::new(sibling("weather-archive")?).args(["compact", "--all-hours", "-o"]).arg(&small).output()?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "the compaction failed: {}", String::from_utf8_lossy(&out.stderr));
    let merged = stdout.lines().find_map(|l| l.strip_prefix("files merged:")).context("no `files merged:` line")?;
    Ok((archive, format!("compaction: {} in {seconds:.2} s", merged.trim().split(" in ").next().unwrap_or(merged))))
}

/// A step's wall time beyond its data time, in seconds: start-up before its first message,
/// and what it does after its last.
fn start_up(m: &Measured) -> f64 {
    m.elapsed.as_secs_f64() - m.data_seconds
}

/// For a step whose wall time exceeds its data time by more than a second, a line that says
/// where that time goes.
fn beyond_data(m: &Measured) -> Option<String> {
    let beyond = start_up(m);
    if beyond <= 1.0 {
        return None;
    }
    // Every process starts a launcher and connects; a reading job also looks the topic and its
    // offsets up before its first message.
    let why = match m.name {
        "produce baseline" | "producer" => "connecting, the idempotent producer's id and the topic looked up",
        "consume baseline" | "consume, poll" | "consume aggregates" => "connecting, the partitions and their offsets",
        "replay (v2)" | "replay + metrics" => {
            "connecting, the topic's offsets, the checkpoint read; after the last reading, the final checkpoint \
             (three fsyncs)"
        }
        "replay + postgres" => {
            "as the replay, plus connecting to PostgreSQL and creating the table; after the last reading, the last \
             rows' COPY and its commit"
        }
        "replay + topic" => {
            "as the replay, plus the aggregates topic and its state topic looked up (or created) and one transaction \
             tried; after the last reading, the last windows acknowledged"
        }
        "archive (disk)" => "after the last reading, the files still open encoded, written and fsynced",
        "report" => "after the last record, the table sorted, summarised and printed",
        _ => "start-up and the end of the run",
    };
    Some(format!(
        "{}: {:.2} s of wall time, {beyond:.2} s beyond its {:.2} s of data: {why}",
        m.name,
        m.elapsed.as_secs_f64(),
        m.data_seconds
    ))
}

/// The summary line of the consumer that starts with its count and rate.
const CONSUMED: &str = "readings consumed:";

/// Measures a job that reports its own rate: its summary `line` must count all `readings`,
/// and its data time is from the rate it reports (first reading to last).
fn measure_job(name: &'static str, readings: u64, command: &mut Command, line: &str) -> anyhow::Result<Measured> {
    let m = measure(name, readings, command)?;
    ensure!(m.stdout.contains(&format!("{line}  {} ", thousands(readings))), "{name}:\n{}", m.stdout);
    Ok(Measured { data_seconds: readings as f64 / reported_rate(&m.stdout, line)?, ..m })
}

/// The files and bytes of an archive run, and their rates, from its summary's
/// `files written:` line.
fn files_written(stdout: &str) -> anyhow::Result<String> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("files written:")).context("no files line")?;
    let files = line.trim().split(' ').next().context("no file count")?;
    let rate = reported_rate(stdout, "readings archived:")?;
    let readings = reported_count(stdout, "readings archived:")?;
    let bytes: f64 =
        line.split_once('(').and_then(|(_, r)| r.split(' ').next()).context("no bytes")?.replace(',', "").parse()?;
    let files: f64 = files.replace(',', "").parse()?;
    let seconds = readings / rate;
    Ok(format!(
        "{files} files, {:.1} MB, {:.1} files/s, {:.1} MB/s",
        bytes / 1e6,
        files / seconds,
        bytes / 1e6 / seconds
    ))
}

/// The count at the start of a summary line, e.g. `readings archived:  1,000,000 in ...`.
fn reported_count(stdout: &str, line_start: &str) -> anyhow::Result<f64> {
    let line = stdout.lines().find_map(|l| l.strip_prefix(line_start)).context("no summary line")?;
    Ok(line.trim().split(' ').next().context("no count")?.replace(',', "").parse()?)
}

/// Runs `command` to its end; its wall time and peak resident memory.
///
/// The peak is measured by a small launcher process (`weather-bench launch`) and not by
/// waiting for the command here: Linux carries the peak of the process image an `exec`
/// replaces over into the new one, and a child spawned from this process starts out sharing
/// its memory, which holds the whole mock cluster.
fn measure(name: &'static str, readings: u64, command: &mut Command) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut launcher = Command::new(std::env::current_exe()?);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => launcher.env(key, value),
            None => launcher.env_remove(key),
        };
    }
    let output = launcher
        .arg("launch")
        .arg(command.get_program())
        .args(command.get_args())
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()?;
    let elapsed = started.elapsed();
    let text = String::from_utf8(output.stdout)?;
    ensure!(output.status.success(), "{name} failed ({})\n{text}", output.status);
    let (stdout, peak) = text.rsplit_once(PEAK_RSS).context("the launcher reported no peak memory")?;
    let data_seconds = elapsed.as_secs_f64();
    let peak_rss_kib = peak.trim().parse()?;
    Ok(Measured { name, readings, elapsed, data_seconds, peak_rss_kib, stdout: stdout.to_string() })
}

/// What the launcher prints before the peak resident memory of the command it ran, in KiB.
const PEAK_RSS: &str = "\nweather-bench peak RSS KiB: ";

/// The launcher: a fresh small process that runs the command (output passed through) and
/// prints its peak resident memory; exits as the command did.
fn launch(command: &[String]) -> anyhow::Result<()> {
    let child = Command::new(&command[0]).args(&command[1..]).spawn()?;
    let (status, usage) = wait_with_usage(child.id() as libc::pid_t)?;
    // Linux reports ru_maxrss in KiB.
    println!("{PEAK_RSS}{}", usage.ru_maxrss);
    ensure!(status == 0, "{} failed (wait status {status})", command[0]);
    Ok(())
}

/// A baseline prints `<readings> <seconds from its first reading to its last>`.
fn with_data_seconds(m: Measured, expected: u64) -> anyhow::Result<Measured> {
    let (count, seconds) =
        m.stdout.trim().split_once(' ').with_context(|| format!("{} printed {}", m.name, m.stdout))?;
    ensure!(count == expected.to_string(), "{} handled {count} readings, not {expected}", m.name);
    Ok(Measured { data_seconds: seconds.parse()?, ..m })
}

fn wait_with_usage(pid: libc::pid_t) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 only writes into the two out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    ensure!(waited == pid, "wait4: {}", std::io::Error::last_os_error());
    Ok((status, usage))
}

/// A binary built beside this one (`cargo build --release` builds them all).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    ensure!(path.is_file(), "{} is not built: run `cargo build --release` (scripts/bench does)", path.display());
    Ok(path)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    format!("{} cores of {cpu}", std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Distinct readings the produce baseline cycles through: enough that a record batch never
/// holds a repeat.
const POOL: usize = 1 << 16;

/// The produce baseline: ready-made readings, sent as fast as the client takes them, with the
/// sensor's delivery settings and warm-up. Prints how many were acknowledged, and the seconds
/// from the first send to the last acknowledgement.
fn produce_baseline(bootstrap: &str, topic: &str, count: u64, sensors: u32) -> anyhow::Result<()> {
    let args = KafkaArgs::new(bootstrap);
    let producer: ThreadedProducer<Deliveries> =
        kafka::reliable_producer(&args, &weather_producer::publish::DELIVERY_SETTINGS, Deliveries::default())?;
    // Ready-made readings of the sensor's own walk (as the producer sends them, sensors in
    // turn), so that the data, and how well it compresses, is the producer's.
    let mut walks: Vec<Walk> = (1..=sensors).map(|i| Walk::new(format!("sensor-{i}"), 1)).collect();
    let readings: Vec<(String, Vec<u8>)> = (0..POOL / sensors as usize)
        .flat_map(|_| {
            walks.iter_mut().map(|w| (w.sensor_id().to_string(), w.next_reading().to_json())).collect::<Vec<_>>()
        })
        .collect();
    // The sensor's warm-up: it creates its producer first, looks the topic up with a client of
    // its own (partitions, offsets, its tail) while the producer connects and gets its
    // idempotent producer id, then looks the topic up on the producer, and only then starts its
    // clock. The same here, so that neither rate counts start-up.
    let probe = kafka::metadata_client(&args)?;
    let partitions = kafka::partitions(&probe, &args, topic)?;
    kafka::watermarks(&probe, topic, &partitions)?;
    drop(probe);
    producer.client().fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let started = Instant::now();
    for i in 0..count {
        let (key, payload) = &readings[(i % readings.len() as u64) as usize];
        kafka::send(&producer, BaseRecord::to(topic).key(key).payload(payload))?;
    }
    ensure!(kafka::flush(&producer, Duration::from_secs(120)), "the baseline's readings were not acknowledged");
    println!("{} {}", producer.context().acknowledged(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Publishes the aggregates of `weeks` weeks of `sensors` sensors (one record per window, keyed
/// by window, as the consumer's topic sink writes them): the sensors' weeks 1, 2, ... in turn.
/// Not measured.
fn publish_aggregates(bootstrap: &str, topic: &str, sensors: u32, weeks: u64) -> anyhow::Result<()> {
    let count = u64::from(sensors) * weeks;
    let args = KafkaArgs::new(bootstrap);
    let producer: ThreadedProducer<Deliveries> =
        kafka::reliable_producer(&args, &weather_producer::publish::DELIVERY_SETTINGS, Deliveries::default())?;
    for i in 0..count {
        let (sensor, id) = (i % u64::from(sensors) + 1, i / u64::from(sensors) + 1);
        let aggregate = Aggregate {
            key: WindowKey { sensor_id: format!("sensor-{sensor}"), window_days: 7, window_id: id },
            unit: Unit::Fahrenheit,
            avg_temp: Tenths((i % 1000) as i64 - 200),
            avg_co: (i % 1400 + 50) as i64,
            avg_humidity: (i % 100) as i64,
            readings: 7,
            first_record_id: id * 7 - 6,
            last_record_id: id * 7,
        };
        kafka::send(&producer, BaseRecord::to(topic).key(&aggregate.key.to_json()).payload(&aggregate.to_json()))?;
    }
    kafka::flush(&producer, Duration::from_secs(120));
    let (acknowledged, failed) = (producer.context().acknowledged(), producer.context().failed());
    ensure!(acknowledged == count, "{acknowledged} of {count} aggregates acknowledged, {failed} failed");
    Ok(())
}

/// How long the consume baseline waits for a message before it gives up.
const STALL: Duration = Duration::from_secs(30);

/// The consume baseline: every partition from the beginning to its end, messages discarded.
/// Prints how many were read, and the seconds from the first to the last.
fn consume_baseline(bootstrap: &str, topic: &str, poll: bool) -> anyhow::Result<()> {
    let args = KafkaArgs::new(bootstrap);
    let probe = kafka::metadata_client(&args)?;
    let partitions = kafka::partitions(&probe, &args, topic)?;
    let marks = kafka::watermarks(&probe, topic, &partitions)?;
    drop(probe);
    // The consumer's own fetch settings, so that the ratio measures what the consumer does
    // per message, not a difference in configuration.
    let mut settings = vec![("group.id", "weather-bench-baseline"), ("enable.auto.commit", "false")];
    settings.extend_from_slice(&weather_common::source::FETCH_SETTINGS);
    let consumer: BaseConsumer = args.client_config(&settings).create()?;
    let mut assignment = TopicPartitionList::new();
    let mut expected = 0;
    for (&p, &(low, high)) in &marks {
        assignment.add_partition_offset(topic, p, Offset::Offset(low))?;
        expected += high - low;
    }
    let length = |payload: Option<&[u8]>| payload.map_or(0, <[u8]>::len);
    if poll {
        consumer.assign(&assignment)?;
        drain(expected, |timeout| consumer.poll(timeout).map(|m| m.map(|m| length(m.payload()))))
    } else {
        let fetcher = Fetcher::assign(consumer, &assignment)?;
        drain(expected, |timeout| fetcher.poll(timeout).map(|m| m.map(|m| length(m.payload()))))
    }
}

/// Polls until `expected` messages are read, then prints their count and the seconds taken;
/// `poll` gives a message's length.
fn drain(expected: i64, mut poll: impl FnMut(Duration) -> Option<KafkaResult<usize>>) -> anyhow::Result<()> {
    let mut span = Span::default();
    let mut read = 0i64;
    let mut bytes = 0usize;
    // A message that never comes fails the run rather than hanging it. The clock is read only
    // when a poll comes back empty, never per message.
    let (mut read_at, mut since) = (0, Instant::now());
    while read < expected {
        match poll(Duration::from_millis(100)) {
            Some(Ok(length)) => {
                span.read();
                read += 1;
                bytes += length;
            }
            Some(Err(e)) => eprintln!("consume baseline: {e}"),
            None if read != read_at => (read_at, since) = (read, Instant::now()),
            None => ensure!(
                since.elapsed() < STALL,
                "consume baseline: {read} of {expected} messages, then none for {STALL:?}"
            ),
        }
    }
    span.taken();
    std::hint::black_box(bytes);
    println!("{read} {}", span.elapsed().as_secs_f64());
    Ok(())
}
