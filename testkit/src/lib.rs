//! The real local stack for integration tests: a Tansu broker and an s3s-fs server, each
//! started on a free port of 127.0.0.1 chosen here, with its data in a temporary directory,
//! and stopped when dropped.
//!
//! The binaries are found in `TANSU_BIN` / `S3S_FS_BIN`, else on `PATH`, else where
//! `scripts/stack install` puts them. A missing binary fails the test with the command that
//! installs it: no test is skipped because a server is missing.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weather_common::kafka::{self, KafkaArgs};

pub const TANSU_VERSION: &str = "0.6.0";
pub const S3S_FS_VERSION: &str = "0.14.1";
/// The demo credentials of every test S3 server; the consumer reads them from the
/// environment like any AWS credentials.
pub const S3_ACCESS_KEY: &str = "weather-test-key";
pub const S3_SECRET_KEY: &str = "weather-test-secret";

/// A running Tansu broker.
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    storage: Storage,
    dir: tempfile::TempDir,
}

/// Where Tansu keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Fastest; gone when the broker stops.
    Memory,
    /// A SQLite file in the broker's directory; survives a restart.
    Sqlite,
}

impl Tansu {
    /// Starts a broker with in-memory storage.
    pub fn start() -> Tansu {
        Tansu::start_with(Storage::Memory)
    }

    pub fn start_with(storage: Storage) -> Tansu {
        let mut tansu = Tansu { child: None, port: free_port(), storage, dir: tempdir("tansu") };
        tansu.launch();
        tansu
    }

    fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let engine = match self.storage {
            Storage::Memory => "memory://tansu/",
            // Tansu resolves sqlite:// paths against its working directory.
            Storage::Sqlite => "sqlite://./tansu.db",
        };
        let log = std::fs::File::create(self.dir.path().join("tansu.log")).expect("creating the broker log");
        let child = Command::new(binary("tansu", "TANSU_BIN", &format!("tansu-{TANSU_VERSION}")))
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", engine])
            .current_dir(self.dir.path())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting tansu");
        self.child = Some(child);
        wait_for_port(self.port, "tansu", &self.dir.path().join("tansu.log"));
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kafka_args(&self) -> KafkaArgs {
        let mut args = KafkaArgs::new(self.bootstrap());
        args.connect_timeout = 20;
        args
    }

    /// Publishes `count` readings from each of `sensors` sensors to `topic`, as fast as the
    /// broker takes them, with `weather-producer`'s own code and flags.
    pub async fn produce(&self, topic: &str, sensors: u32, count: u64, seed: u64) -> weather_producer::Sent {
        let (bootstrap, count, sensors, seed) =
            (self.bootstrap(), count.to_string(), sensors.to_string(), seed.to_string());
        let argv = ["weather-producer", "-b", &bootstrap, "-t", topic, "--rate", "0", "--count", &count];
        let config = weather_producer::Config::try_parse_from(argv.into_iter().chain([
            "--sensors",
            &sensors,
            "--seed",
            &seed,
            "--quiet",
        ]))
        .expect("valid producer flags");
        weather_producer::run(config, std::future::pending()).await.expect("producing readings")
    }

    /// Runs `weather-consumer` with these flags against this broker, in-process, as its
    /// command line would.
    pub async fn consume(&self, args: &[&str]) -> anyhow::Result<weather_consumer::Summary> {
        let bootstrap = self.bootstrap();
        let argv = ["weather-consumer", "-b", &bootstrap, "--connect-timeout", "20", "--quiet"];
        let settings =
            weather_consumer::Cli::try_parse_from(argv.into_iter().chain(args.iter().copied()))?.settings()?;
        weather_consumer::run(settings, std::future::pending()).await
    }

    /// Creates a topic with the Tansu CLI, as `scripts/stack` does.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(binary("tansu", "TANSU_BIN", &format!("tansu-{TANSU_VERSION}")))
            .args(["topic", "create", name, "--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("running tansu topic create");
        assert!(status.success(), "tansu topic create {name} failed: {status}");
    }

    /// Deletes a topic with the Tansu CLI.
    pub fn delete_topic(&self, name: &str) {
        let status = Command::new(binary("tansu", "TANSU_BIN", &format!("tansu-{TANSU_VERSION}")))
            .args(["topic", "delete", name, "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("running tansu topic delete");
        assert!(status.success(), "tansu topic delete {name} failed: {status}");
    }

    /// Deletes the records of `partition` of `topic` before offset `before` and moves its low
    /// watermark there, as retention does. Needs [`Storage::Sqlite`]: Tansu 0.6 acknowledges
    /// DeleteRecords requests without deleting anything, so this edits its database.
    pub fn apply_retention(&self, topic: &str, partition: i32, before: i64) {
        assert_eq!(self.storage, Storage::Sqlite, "retention needs the broker's data on disk");
        let db = rusqlite::Connection::open(self.dir.path().join("tansu.db")).expect("opening Tansu's database");
        let topition: i64 = db
            .query_row(
                "select tp.id from topition tp join topic t on tp.topic = t.id where t.name = ?1 and tp.partition = ?2",
                rusqlite::params![topic, partition],
                |row| row.get(0),
            )
            .expect("finding the partition in Tansu's database");
        db.execute("delete from record where topition = ?1 and offset_id < ?2", rusqlite::params![topition, before])
            .expect("deleting records");
        db.execute("update watermark set low = ?2 where topition = ?1", rusqlite::params![topition, before])
            .expect("moving the low watermark");
    }

    /// Stops the broker (SIGKILL: a crash) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops the broker; it can be started again with [`Tansu::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends raw messages to `topic`, flushed.
    pub fn send_raw(&self, topic: &str, messages: &[RawMessage<'_>]) {
        let producer: ThreadedProducer<_> = kafka::reliable_producer(
            &self.kafka_args(),
            &[("message.max.bytes", "4000000")],
            rdkafka::producer::DefaultProducerContext,
        )
        .expect("creating a producer");
        for (key, value) in messages {
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if let Some(key) = key {
                record = record.key(*key);
            }
            if let Some(value) = value {
                record = record.payload(*value);
            }
            producer.send(record).map_err(|(e, _)| e).expect("sending a raw message");
        }
        producer.flush(Duration::from_secs(30)).expect("flushing raw messages");
    }

    /// Every message of `topic`, partition by partition, in offset order.
    pub fn read_all(&self, topic: &str) -> Vec<Record> {
        let args = self.kafka_args();
        let client = kafka::metadata_client(&args).expect("creating a reader");
        let partitions = kafka::partitions(&client, &args, topic).expect("listing partitions");
        let marks = kafka::watermarks(&client, topic, &partitions).expect("reading watermarks");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "testkit-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("creating a reader");
        let mut assignment = TopicPartitionList::new();
        let mut left = 0;
        for (&p, &(low, high)) in &marks {
            assignment.add_partition_offset(topic, p, Offset::Offset(low)).expect("assigning");
            left += high - low;
        }
        consumer.assign(&assignment).expect("assigning");
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while left > 0 {
            assert!(Instant::now() < deadline, "timed out reading {topic}: {left} messages missing");
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    left -= 1;
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    records.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers,
                    });
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => panic!("reading {topic}: {e}"),
            }
        }
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A message as bytes: (key, value), either may be absent.
pub type RawMessage<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// One message as read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

/// A running s3s-fs server: buckets are directories, objects are plain files.
pub struct S3Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server and sets the standard AWS credential variables to its demo keys, so
    /// that code using the AWS credential chain reaches it.
    pub fn start() -> S3Server {
        S3Server::start_on(free_port())
    }

    /// [`S3Server::start`] on a given port of 127.0.0.1.
    pub fn start_on(port: u16) -> S3Server {
        use_test_credentials();
        let dir = tempdir("s3s-fs");
        let root = dir.path().join("data");
        std::fs::create_dir(&root).expect("creating the S3 root");
        let log_path = dir.path().join("s3s-fs.log");
        let log = std::fs::File::create(&log_path).expect("creating the S3 log");
        let child = Command::new(binary("s3s-fs", "S3S_FS_BIN", &format!("s3s-fs-{S3S_FS_VERSION}")))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&root)
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting s3s-fs");
        wait_for_port(port, "s3s-fs", &log_path);
        S3Server { child, port, dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (a directory of the server's root).
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.dir.path().join("data").join(bucket)).expect("creating a bucket");
    }

    /// The object's content, if it exists.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join("data").join(bucket).join(key)).ok()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the standard AWS credential variables to the test servers' keys. Every server of a
/// test run uses the same keys, so setting them again changes nothing.
pub fn use_test_credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY);
}

/// A free TCP port of 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("finding a free port").port()
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().expect("creating a temporary directory")
}

/// Waits until the server accepts connections (its only readiness signal).
fn wait_for_port(port: u16, name: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{name} did not start listening on 127.0.0.1:{port} within 30 s; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The path of a stack binary.
pub fn binary(name: &str, env: &str, tools_dir: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if let Some(path) = on_path {
        return path;
    }
    let tools = std::env::var_os("WEATHER_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weather-pipeline/tools")))
        .unwrap_or_default();
    let cached = tools.join(tools_dir).join("bin").join(name);
    assert!(cached.is_file(), "{name} is not installed: run `scripts/stack install` (or set {env})");
    cached
}
