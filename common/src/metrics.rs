//! What a long-running job shows an operator: Prometheus metrics at `/metrics` and its health
//! at `/health`, served on `--metrics-addr`.
//!
//! Jobs count through the `metrics` facade. Without `--metrics-addr` no recorder is installed
//! and every count is a no-op; with it, [`serve`] installs Prometheus's recorder once per
//! process and serves it until the returned [`Server`] is dropped. Counters are set from the
//! figures the job's summary counts ([`set_counter`]), so that the two never disagree. Lag is
//! measured when Prometheus asks: the broker's end of each partition a job reads, less the
//! position the job last published ([`Lag`]), as kafka-lag-exporter and Burrow measure it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rdkafka::consumer::BaseConsumer;
use tokio::net::TcpSocket;

use crate::kafka::{self, KafkaArgs, LoggingContext};
use crate::position::now_ms;

/// The metrics flag of every long-running job.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://HOST:PORT/metrics and the job's health at /health,
    /// e.g. 127.0.0.1:9102. Off by default.
    #[arg(long, env = "WEATHER_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<SocketAddr>,
}

/// Buckets of every `*_duration_seconds` histogram: from a millisecond to a minute.
const DURATION_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0];
/// A loop that has not said it is alive for this long is unhealthy.
const STALLED_AFTER_MS: i64 = 30_000;
/// How long a scrape waits for each answer about the partitions' ends (three times that for
/// the reads that confirm them).
const LAG_LOOK_UP: Duration = Duration::from_secs(2);

/// Why the metrics could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics-addr {addr}: cannot listen there ({source}): choose another address or port")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("installing the Prometheus recorder: {0}")]
    Recorder(#[from] metrics_exporter_prometheus::BuildError),
}

/// The process's recorder, installed by the first [`serve`].
fn recorder() -> Result<&'static PrometheusHandle, MetricsError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle);
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &DURATION_BUCKETS)?
        .install_recorder()?;
    Ok(HANDLE.get_or_init(|| handle))
}

/// A running metrics server; it stops when dropped.
pub struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What `/metrics` and `/health` answer from.
#[derive(Clone)]
struct Job {
    name: &'static str,
    handle: &'static PrometheusHandle,
}

/// Serves `/metrics` and `/health` for the job `name` on `addr`, if given, until the returned
/// server is dropped. Must be called on a Tokio runtime.
///
/// Not an `async fn`: the body of one is compiled in every crate that awaits it (see
/// [`crate::job`]), and this one holds the HTTP server (axum, hyper, and the HTTP/2 server
/// that hyper-util compiles in because the S3 client's HTTP/2 is on): once per job's crate,
/// about 80,000 lines of LLVM IR each. Binding is immediate anyway.
pub fn serve(args: &MetricsArgs, name: &'static str) -> Result<Option<Server>, MetricsError> {
    let Some(addr) = args.metrics_addr else { return Ok(None) };
    let handle = recorder()?;
    let listener = listen(addr).map_err(|source| MetricsError::Listen { addr, source })?;
    let addr = listener.local_addr().map_err(|source| MetricsError::Listen { addr, source })?;
    let app =
        Router::new().route("/metrics", get(metrics)).route("/health", get(health)).with_state(Job { name, handle });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = served.await {
            tracing::warn!("the metrics server on {addr} stopped: {e}");
        }
    });
    tracing::info!("metrics at http://{addr}/metrics, health at http://{addr}/health");
    Ok(Some(Server { stop: Some(stop), addr }))
}

/// A listener on `addr`, as `tokio::net::TcpListener::bind` makes it (SO_REUSEADDR: a job
/// restarted at once binds its port again though connections of its last run linger).
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn metrics(State(job): State<Job>) -> impl IntoResponse {
    // The lag is looked up now, off the runtime's threads: it asks the broker.
    let _ = tokio::task::spawn_blocking(Lag::measure_all).await;
    job.handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], job.handle.render())
}

async fn health(State(job): State<Job>) -> impl IntoResponse {
    match HEALTH.verdict(now_ms()) {
        Ok(text) => (StatusCode::OK, format!("{}: {text}\n", job.name)),
        Err(text) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}: {text}\n", job.name)),
    }
}

/// Sets counter `name` with `labels` to `value`, a figure the job's summary counts.
pub fn set_counter(name: &'static str, labels: &[(&'static str, String)], value: u64) {
    ::metrics::counter!(name, labels).absolute(value);
}

/// The job's health, as its loop reports it.
pub struct Health {
    connected: AtomicBool,
    /// When the loop last said it was alive (Unix ms); 0: not yet.
    alive_at: AtomicI64,
}

static HEALTH: Health = Health { connected: AtomicBool::new(false), alive_at: AtomicI64::new(0) };

/// The process's health, for its job's loop to report to.
pub fn health_of_job() -> &'static Health {
    &HEALTH
}

impl Health {
    /// The broker answered: the job is connected.
    pub fn connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.alive();
    }

    /// The job's loop went round: it is working (or waiting for work).
    pub fn alive(&self) {
        self.alive_at.store(now_ms(), Ordering::Relaxed);
    }

    /// Healthy, or why not, at `now` (Unix ms).
    fn verdict(&self, now: i64) -> Result<String, String> {
        if !self.connected.load(Ordering::Relaxed) {
            return Err("not connected to Kafka yet".to_string());
        }
        let since = now - self.alive_at.load(Ordering::Relaxed);
        if since > STALLED_AFTER_MS {
            return Err(format!("connected, but its loop has not gone round for {} s", since / 1000));
        }
        Ok("connected and working".to_string())
    }
}

/// The lag of one job on one topic: per partition, the durable position the job last
/// published and the Kafka timestamp of a recent reading it read there, and a client of its
/// own to ask the broker for the partitions' ends when Prometheus scrapes.
pub struct Lag {
    /// The names of its gauges: readings, seconds.
    names: [&'static str; 2],
    topic: String,
    kafka: KafkaArgs,
    probe: Mutex<Option<BaseConsumer<LoggingContext>>>,
    positions: Mutex<BTreeMap<i32, Position>>,
}

/// Where a job stands in one partition.
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    /// The next offset its durable output accounts for; none before its first checkpoint.
    durable: Option<i64>,
    /// The Kafka timestamp of a recent reading read there.
    stamp: Option<i64>,
}

/// Every job's lag in this process, measured at each scrape while its job holds it.
static LAGS: Mutex<Vec<Weak<Lag>>> = Mutex::new(Vec::new());

impl Lag {
    /// A job's lag on `topic`, in the gauges `names` (readings, seconds), measured at each
    /// scrape while the returned handle lives.
    pub fn register(names: [&'static str; 2], topic: &str, kafka: &KafkaArgs) -> Arc<Lag> {
        let lag = Arc::new(Lag {
            names,
            topic: topic.to_string(),
            kafka: kafka.clone(),
            probe: Mutex::new(None),
            positions: Mutex::new(BTreeMap::new()),
        });
        LAGS.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(&lag));
        lag
    }

    /// A reading stamped `timestamp` was read from `partition` (looked at every so often: the
    /// seconds of lag are told from it).
    pub fn read(&self, partition: i32, timestamp: Option<i64>) {
        if timestamp.is_some() {
            self.positions.lock().unwrap_or_else(|e| e.into_inner()).entry(partition).or_default().stamp = timestamp;
        }
    }

    /// The job's output holds `partition` durably up to `next`.
    pub fn durable(&self, partition: i32, next: i64) {
        self.positions.lock().unwrap_or_else(|e| e.into_inner()).entry(partition).or_default().durable = Some(next);
    }

    /// The job no longer reads `partition` (another member of its group does).
    pub fn forget(&self, partition: i32) {
        self.positions.lock().unwrap_or_else(|e| e.into_inner()).remove(&partition);
        self.set(partition, 0, 0.0);
    }

    fn measure_all() {
        let lags: Vec<Arc<Lag>> = {
            let mut lags = LAGS.lock().unwrap_or_else(|e| e.into_inner());
            lags.retain(|lag| lag.strong_count() > 0);
            lags.iter().filter_map(Weak::upgrade).collect()
        };
        for lag in lags {
            lag.measure();
        }
    }

    /// Sets the lag gauges from the partitions' confirmed ends now ([`kafka::watermarks`]: Tansu
    /// lists a partition's last batch's start as its end, which would hide up to a batch of lag);
    /// a broker that does not answer leaves them as they were (a scrape must answer within
    /// Prometheus's timeout).
    fn measure(&self) {
        let positions = self.positions.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let durable: Vec<i32> = positions.iter().filter(|(_, p)| p.durable.is_some()).map(|(&p, _)| p).collect();
        if durable.is_empty() {
            return;
        }
        let mut probe = self.probe.lock().unwrap_or_else(|e| e.into_inner());
        if probe.is_none() {
            *probe = kafka::metadata_client(&self.kafka).ok();
        }
        let Some(probe) = probe.as_ref() else { return };
        let Ok(ends) = kafka::watermarks_within(probe, &self.topic, &durable, LAG_LOOK_UP) else { return };
        let now = now_ms();
        for (partition, Position { durable, stamp: timestamp }) in positions {
            let (Some(next), Some(&(_, end))) = (durable, ends.get(&partition)) else { continue };
            let readings = (end - next).max(0);
            let seconds = match (readings, timestamp) {
                (0, _) => 0.0,
                (_, Some(t)) => (now - t).max(0) as f64 / 1000.0,
                (_, None) => 0.0,
            };
            self.set(partition, readings, seconds);
        }
    }

    fn set(&self, partition: i32, readings: i64, seconds: f64) {
        let labels = [("topic", self.topic.clone()), ("partition", partition.to_string())];
        ::metrics::gauge!(self.names[0], &labels).set(readings as f64);
        ::metrics::gauge!(self.names[1], &labels).set(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Healthy once connected and while the loop goes round; unhealthy before it connects and
    /// once the loop has stalled, saying which.
    #[test]
    fn health_says_why() {
        let health = Health { connected: AtomicBool::new(false), alive_at: AtomicI64::new(0) };
        assert!(health.verdict(now_ms()).unwrap_err().contains("not connected"));
        health.connected();
        assert!(health.verdict(now_ms()).is_ok());
        let stalled = health.verdict(now_ms() + STALLED_AFTER_MS + 1000).unwrap_err();
        assert!(stalled.contains("has not gone round"), "{stalled}");
    }
}
