//! The real local stack for integration tests: a Tansu broker, an s3s-fs server and a
//! PostgreSQL server, each started on a free port of 127.0.0.1 chosen here, with its data in a
//! temporary directory, and stopped when dropped; and a headless browser ([`chromium`]).
//!
//! The binaries are found in `TANSU_BIN` / `S3S_FS_BIN`, else on `PATH`, else where
//! `scripts/stack install` puts them. A missing binary fails the test with the command that
//! installs it: no test is skipped because a server is missing.

pub mod strace;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weather_common::kafka::{self, KafkaArgs};

pub mod chromium;

/// A sensor producing live (see [`Tansu::live_producer`]).
pub struct LiveProducer {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl LiveProducer {
    /// Stops the sensor; returns once every reading it sent is acknowledged.
    pub fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().expect("the live producer panicked");
    }
}

/// The partitions each of `members` (in the order given) owns in a group that shares
/// `partitions` partitions as the README says: dealt round-robin over the members in name
/// order. Written here apart from `weather_common::share`, which the tests check against it.
pub fn deal(members: &[&str], partitions: i32) -> Vec<BTreeSet<i32>> {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    members
        .iter()
        .map(|name| {
            let index = sorted.iter().position(|n| n == name).unwrap();
            (0..partitions).filter(|p| *p as usize % sorted.len() == index).collect()
        })
        .collect()
}

pub const TANSU_VERSION: &str = "0.6.0";
pub const S3S_FS_VERSION: &str = "0.14.1";
/// The demo credentials of every test S3 server; the consumer reads them from the
/// environment like any AWS credentials.
pub const S3_ACCESS_KEY: &str = "weather-test-key";
pub const S3_SECRET_KEY: &str = "weather-test-secret";

/// Client settings (as `-X` flags) of small fetches and a short prefetch queue: they stretch a
/// replay to several seconds (many broker round trips), so that a crash test's kills land in
/// the middle of it without slowing the code under test.
pub const THROTTLE: [&str; 10] = [
    "-X",
    "max.partition.fetch.bytes=2048",
    "-X",
    "fetch.max.bytes=8192",
    "-X",
    "message.max.bytes=8192",
    "-X",
    "queued.max.messages.kbytes=64",
    "-X",
    "fetch.queue.backoff.ms=200",
];

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
        // Another process may take the port between `free_port` and the broker's bind: then
        // the broker exits at once, and it starts again on another port.
        for _ in 1..START_ATTEMPTS {
            match tansu.launch() {
                Ok(()) => return tansu,
                Err(log) => eprintln!("tansu could not start on port {} (trying another); its log:\n{log}", tansu.port),
            }
            tansu.port = free_port();
        }
        tansu.launch().unwrap_or_else(|log| panic!("tansu did not start on 127.0.0.1:{}; its log:\n{log}", tansu.port));
        tansu
    }

    /// Starts the broker on its port; the broker's log if it exited before listening.
    fn launch(&mut self) -> Result<(), String> {
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
            // Errors, and what the group coordinator decides (it logs a member it drops for a
            // missed heartbeat at info), whatever RUST_LOG the test runs with.
            .env("RUST_LOG", "error,tansu_broker::coordinator::group=info")
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting tansu");
        let child = self.child.insert(child);
        wait_for_port(child, self.port, "tansu", &self.dir.path().join("tansu.log"))
    }

    /// Everything the broker logged (its group coordinator says, for one, which members it
    /// dropped for a missed heartbeat).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn kafka_args(&self) -> KafkaArgs {
        let mut args = KafkaArgs::new(self.bootstrap());
        args.connect_timeout = Some(20);
        args
    }

    /// Publishes `count` readings from each of `sensors` sensors to `topic`, as fast as the
    /// broker takes them, with `weather-producer`'s own code and flags.
    pub async fn produce(&self, topic: &str, sensors: u32, count: u64, seed: u64) -> weather_producer::Sent {
        let (bootstrap, count, sensors, seed) =
            (self.bootstrap(), count.to_string(), sensors.to_string(), seed.to_string());
        let argv = ["weather-producer", "-b", &bootstrap, "-t", topic, "--rate", "0", "--count", &count];
        let settings = weather_producer::Cli::try_parse_from(argv.into_iter().chain([
            "--sensors",
            &sensors,
            "--seed",
            &seed,
            "--quiet",
        ]))
        .and_then(weather_producer::Cli::settings)
        .expect("valid producer flags");
        weather_producer::run(settings, std::future::pending()).await.expect("producing readings")
    }

    /// Publishes `days` readings from each of `sensors` sensors to `weather` in record batches
    /// of at most 5 ms each (the sensor batches for up to 100 ms): a broker answers a fetch with
    /// at least one whole batch, so small batches are what makes a replay with [`THROTTLE`]
    /// take many round trips.
    pub fn produce_in_small_batches(&self, days: u64, sensors: u32) {
        let (bootstrap, count, sensor_count) = (self.bootstrap(), days.to_string(), sensors.to_string());
        let argv = ["weather-producer", "-b", &bootstrap, "--rate", "0", "--count", &count, "--sensors", &sensor_count];
        let small_batches = ["--seed", "9", "-X", "linger.ms=5", "--quiet"];
        let settings = weather_producer::Cli::try_parse_from(argv.into_iter().chain(small_batches))
            .and_then(weather_producer::Cli::settings)
            .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let sent = runtime.block_on(weather_producer::run(settings, std::future::pending())).unwrap();
        assert_eq!(sent.acknowledged, days * u64::from(sensors));
    }

    /// The sensor producing live to `weather`, in-process, at `rate` readings per second from
    /// each of `sensors` sensors, until [`LiveProducer::stop`].
    pub fn live_producer(&self, rate: u32, sensors: u32) -> LiveProducer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (bootstrap, rate, sensors) = (self.bootstrap(), rate.to_string(), sensors.to_string());
        let thread = std::thread::spawn(move || {
            let argv = ["weather-producer", "-b", &bootstrap, "--rate", &rate, "--sensors", &sensors, "--quiet"];
            let settings =
                weather_producer::Cli::try_parse_from(argv).and_then(weather_producer::Cli::settings).unwrap();
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let shutdown = async move {
                tokio::task::spawn_blocking(move || stopped.recv()).await.ok();
            };
            runtime.block_on(weather_producer::run(settings, shutdown)).unwrap();
        });
        LiveProducer { stop, thread }
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
        self.launch()
            .unwrap_or_else(|log| panic!("tansu did not start again on {}; its log:\n{log}", self.bootstrap()));
    }

    /// True if `topic` exists (no error in its metadata, and at least one partition).
    pub fn topic_exists(&self, topic: &str) -> bool {
        let client = kafka::metadata_client(&self.kafka_args()).expect("creating a client");
        kafka::topic_partitions(&client, topic, Duration::from_secs(10)).expect("reading metadata").is_some()
    }

    /// Stops the broker (SIGKILL: a crash); [`Tansu::restart`] starts it again.
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

    /// Sends `(partition, key, value, timestamp in ms)` messages to `topic`, each flushed on its
    /// own (a record batch each: Tansu's memory storage looks times up by batch): records placed
    /// in time and partition by the test, as a replaying or late client would.
    pub fn send_stamped(&self, topic: &str, messages: &[(i32, &[u8], &[u8], i64)]) {
        let producer: ThreadedProducer<_> =
            kafka::reliable_producer(&self.kafka_args(), &[], rdkafka::producer::DefaultProducerContext)
                .expect("creating a producer");
        for &(partition, key, value, timestamp) in messages {
            let record = BaseRecord::to(topic).partition(partition).key(key).payload(value).timestamp(timestamp);
            producer.send(record).map_err(|(e, _)| e).expect("sending a stamped message");
            producer.flush(Duration::from_secs(30)).expect("flushing a stamped message");
        }
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
                        timestamp: m.timestamp().to_millis(),
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
    /// Milliseconds since the epoch, as the broker returns it.
    pub timestamp: Option<i64>,
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
        // As for Tansu: another process may take the port before the server binds it.
        for _ in 1..START_ATTEMPTS {
            let port = free_port();
            match S3Server::try_start_on(port) {
                Ok(server) => return server,
                Err(log) => eprintln!("s3s-fs could not start on port {port} (trying another); its log:\n{log}"),
            }
        }
        S3Server::start_on(free_port())
    }

    /// [`S3Server::start`] on a given port of 127.0.0.1.
    pub fn start_on(port: u16) -> S3Server {
        S3Server::try_start_on(port)
            .unwrap_or_else(|log| panic!("s3s-fs did not start on 127.0.0.1:{port}; its log:\n{log}"))
    }

    fn try_start_on(port: u16) -> Result<S3Server, String> {
        use_test_credentials();
        let dir = tempdir("s3s-fs");
        let root = dir.path().join("data");
        std::fs::create_dir(&root).expect("creating the S3 root");
        let log_path = dir.path().join("s3s-fs.log");
        let log = std::fs::File::create(&log_path).expect("creating the S3 log");
        let mut child = Command::new(binary("s3s-fs", "S3S_FS_BIN", &format!("s3s-fs-{S3S_FS_VERSION}")))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&root)
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting s3s-fs");
        wait_for_port(&mut child, port, "s3s-fs", &log_path)?;
        Ok(S3Server { child, port, dir })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (a directory of the server's root).
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.dir.path().join("data").join(bucket)).expect("creating a bucket");
    }

    /// The directory that holds a bucket's objects, each a plain file under its key.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.path().join("data").join(bucket)
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

/// A PostgreSQL server of its own: a cluster made with Debian's `initdb` in a temporary
/// directory, listening on 127.0.0.1 and a free port, run as the `postgres` user when the test
/// runs as root (PostgreSQL refuses to run as root). The superuser reaches it through a socket
/// in that directory without a password; the user `weather` owns the database `weather` and
/// signs in over TCP with a password made for this server.
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    password: String,
    /// The user that runs the server, when the test runs as root.
    run_as: Option<(u32, u32)>,
    /// Whether commits reach the disk (`fsync`): off for tests, on for the benchmark.
    fsync: bool,
}

/// The user and database the consumer signs in as.
pub const POSTGRES_USER: &str = "weather";
pub const POSTGRES_DATABASE: &str = "weather";

impl PostgresServer {
    /// A server for tests: commits are not fsynced (a crash of the machine is not what the
    /// tests simulate), which keeps them fast.
    pub fn start() -> PostgresServer {
        PostgresServer::start_with_fsync(false)
    }

    /// A server whose commits are durable, as in production: for measurements.
    pub fn start_with_fsync(fsync: bool) -> PostgresServer {
        let dir = tempdir("postgres");
        let run_as = run_as_postgres();
        let password = format!("pw-{:016x}", {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        });
        let data = dir.path().join("data");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("handing the directory to postgres");
        }
        let log_path = dir.path().join("initdb.log");
        let log = std::fs::File::create(&log_path).expect("creating the initdb log");
        let mut initdb = Command::new(postgres_binary("initdb"));
        initdb
            .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        as_user(&mut initdb, run_as);
        let status = initdb.status().expect("running initdb");
        assert!(status.success(), "initdb failed: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
        let mut server = PostgresServer { child: None, port: free_port(), dir, password, run_as, fsync };
        for _ in 1..START_ATTEMPTS {
            match server.launch() {
                Ok(()) => break,
                Err(log) => eprintln!("postgres could not start on port {} (trying another):\n{log}", server.port),
            }
            server.port = free_port();
        }
        if server.child.is_none() {
            server.launch().unwrap_or_else(|log| panic!("postgres did not start:\n{log}"));
        }
        server.superuser("postgres", &format!("CREATE ROLE {POSTGRES_USER} LOGIN PASSWORD '{}'", server.password));
        server.superuser("postgres", &format!("CREATE DATABASE {POSTGRES_DATABASE} OWNER {POSTGRES_USER}"));
        server
    }

    /// Starts the server on its port and data; its log if it did not come up.
    fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("postgres.log");
        let log = std::fs::File::create(&log_path).expect("creating the server log");
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&log_path, Some(uid), Some(gid)).expect("handing the log to postgres");
        }
        let mut command = Command::new(postgres_binary("postgres"));
        command
            .args(["-D", self.dir.path().join("data").to_str().unwrap(), "-p", &self.port.to_string()])
            .args(["-k", self.dir.path().to_str().unwrap(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", if self.fsync { "fsync=on" } else { "fsync=off" }])
            .args(["-c", "log_statement=all", "-c", "log_connections=on"])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        as_user(&mut command, self.run_as);
        let child = self.child.insert(command.spawn().expect("starting postgres"));
        wait_for_port(child, self.port, "postgres", &log_path)?;
        // Listening is not accepting: wait until a query runs.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_superuser("postgres", "SELECT 1").is_err() {
            assert!(Instant::now() < deadline, "postgres did not accept queries within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// `postgres://weather@127.0.0.1:PORT/weather`: no password in it.
    pub fn url(&self) -> String {
        format!("postgres://{POSTGRES_USER}@127.0.0.1:{}/{POSTGRES_DATABASE}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of the user `weather`, for `PGPASSWORD`.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Everything the server logged (it logs every statement and connection).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Runs `sql` in the `weather` database as the superuser; the rows, every value as text.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.superuser(POSTGRES_DATABASE, sql)
    }

    /// [`PostgresServer::query`], with the error (a table that does not exist yet, say).
    pub fn try_query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        self.try_superuser(POSTGRES_DATABASE, sql)
    }

    fn superuser(&self, database: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        self.try_superuser(database, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn try_superuser(&self, database: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut config = tokio_postgres::Config::new();
            config.host_path(self.dir.path()).port(self.port).user("postgres").dbname(database);
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let messages = client.simple_query(sql).await.map_err(|e| format!("{e:?}"))?;
            Ok(messages
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect())
        })
    }

    /// Stops the server at once (an immediate shutdown: a crash, recovered from the WAL on the
    /// next start).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: the postmaster ends its backends and exits without a checkpoint.
            let _ = Command::new("kill").args(["-QUIT", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data, after [`PostgresServer::stop`].
    pub fn start_again(&mut self) {
        self.launch().unwrap_or_else(|log| panic!("postgres did not start again on port {}:\n{log}", self.port));
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `postgres` user's ids when this process runs as root, as PostgreSQL wants.
fn run_as_postgres() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let me = passwd.lines().find(|l| l.split(':').nth(2) == Some(&current_uid().to_string()));
    if me.is_some_and(|l| !l.starts_with("root:")) || current_uid() != 0 {
        return None;
    }
    let line = passwd.lines().find(|l| l.starts_with("postgres:")).expect(
        "running as root, PostgreSQL needs the `postgres` user: install Debian's postgresql (scripts/stack install)",
    );
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}

fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(u32::MAX)
}

fn as_user(command: &mut Command, run_as: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid).env("HOME", "/tmp").current_dir("/");
    }
}

/// A PostgreSQL server program: in `PG_BIN` if set, else Debian's newest
/// `/usr/lib/postgresql/N/bin`, else on `PATH`.
pub fn postgres_binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir).join(name);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(name))))
        .filter(|(_, path)| path.is_file())
        .collect();
    versions.sort();
    if let Some((_, path)) = versions.pop() {
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| {
        panic!("PostgreSQL's {name} is not installed: run `scripts/stack install` (Debian's postgresql)")
    })
}

/// Sets the standard AWS credential variables to the test servers' keys. Every server of a
/// test run uses the same keys, so setting them again changes nothing.
pub fn use_test_credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY);
}

/// Attempts at starting a server on a fresh port before giving up.
const START_ATTEMPTS: usize = 3;

/// A free TCP port of 127.0.0.1, never the same twice in one test process (tests run in
/// parallel threads), and below the kernel's ephemeral range, so that no client connection
/// of a test takes it as its own local port before the server binds it. Another process can
/// still take it in between: the servers here notice that (they exit) and start again on
/// another port.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    const LOWEST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&low| low > LOWEST + 1000)
        .unwrap_or(32_768);
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = LOWEST + (random % u64::from(ephemeral - LOWEST)) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port of 127.0.0.1 between {LOWEST} and {ephemeral}");
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().expect("creating a temporary directory")
}

/// Waits until the server accepts connections (its only readiness signal) while it still
/// runs. If it exited (say, the port was taken), the error is its log; a server that does not
/// listen within 30 s fails the test.
fn wait_for_port(child: &mut Child, port: u16, name: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listening = TcpStream::connect(("127.0.0.1", port)).is_ok();
        // Checked after connecting too: what answered may be another process on that port.
        if let Some(status) = child.try_wait().expect("checking on the server") {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{name} exited ({status}) before it listened on 127.0.0.1:{port}\n{log}"));
        }
        if listening {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{name} did not start listening on 127.0.0.1:{port} within 30 s; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Python that has DuckDB and pyarrow, the lake's readers that are not our writer
/// (installed by `scripts/stack install` if missing).
pub fn lake_python() -> PathBuf {
    static PYTHON: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut python = PYTHON.lock().unwrap_or_else(|e| e.into_inner());
    python.get_or_insert_with(|| PathBuf::from(stack_says("python").trim())).clone()
}

/// The readers of the lake's Delta table that are not our writer: the Python that has
/// deltalake and DuckDB, and the file of DuckDB's delta extension, loaded from there (both
/// installed by `scripts/stack install` if missing).
pub fn delta_python() -> (PathBuf, PathBuf) {
    static PYTHON: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);
    let mut python = PYTHON.lock().unwrap_or_else(|e| e.into_inner());
    python
        .get_or_insert_with(|| {
            let text = stack_says("delta-python");
            let mut lines = text.lines().map(|l| PathBuf::from(l.trim()));
            (lines.next().expect("the Python"), lines.next().expect("the extension"))
        })
        .clone()
}

/// What `scripts/stack <command>` prints (its errors go to the test's output).
fn stack_says(command: &str) -> String {
    let stack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack");
    let out = Command::new(&stack)
        .arg(command)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running scripts/stack {command}: {e}"));
    assert!(out.status.success(), "scripts/stack {command} failed ({})", out.status);
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("scripts/stack {command} printed no text: {e}"))
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

/// A child process a test started: killed if it still runs when the guard goes (the test
/// ended, or panicked half-way), so that a failed test leaves nothing running.
pub struct Running(Child);

impl Running {
    pub fn new(child: Child) -> Running {
        Running(child)
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process a test started is gone when the test fails half-way (its guard is dropped
    /// while the panic unwinds), and a process that ended is left alone.
    #[test]
    fn a_running_process_goes_with_its_failed_test() {
        let mut pid = 0;
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let running = Running::new(Command::new("sleep").arg("60").spawn().unwrap());
            pid = running.id();
            panic!("the test fails half-way");
        }));
        assert!(failed.is_err());
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "sleep {pid} still runs");
        let mut ended = Running::new(Command::new("true").spawn().unwrap());
        assert!(ended.wait().unwrap().success());
    }

    /// A server that exits before it listens is reported at once, with its log, not after
    /// the 30 s a slow start may take.
    #[test]
    fn wait_for_port_notices_a_server_that_exited() {
        let dir = tempdir("testkit");
        let log = dir.path().join("server.log");
        std::fs::write(&log, "bind: address in use").unwrap();
        let mut child = Command::new("true").spawn().unwrap();
        let started = Instant::now();
        let err = wait_for_port(&mut child, free_port(), "server", &log).unwrap_err();
        assert!(err.contains("exited") && err.contains("address in use"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    }

    /// Ports handed out are distinct and outside the well-known range.
    #[test]
    fn free_ports_are_distinct() {
        let ports: BTreeSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|&p| p >= 10_000), "{ports:?}");
    }
}
