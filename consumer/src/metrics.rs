//! The aggregator's metrics (served by [`weather_common::metrics`]): its counters are set from
//! the very figures its summary counts, at every turn of the loop's clock and at the end of a
//! run, so that `/metrics` and the summary never disagree. Its lag is measured at each scrape
//! from the durable position each checkpoint publishes: readings not yet in every output are
//! lag, whether or not they were read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use weather_common::kafka::KafkaArgs;
use weather_common::metrics::{set_counter, Lag};

use crate::pipeline::Summary;

/// What the loop publishes: the topic's name for labels, and the lag's positions.
pub struct Metrics {
    topic: String,
    lag: Arc<Lag>,
}

impl Metrics {
    pub fn new(topic: &str, kafka: &KafkaArgs) -> Metrics {
        let lag = Lag::register(["weather_consumer_lag_readings", "weather_consumer_lag_seconds"], topic, kafka);
        Metrics { topic: topic.to_string(), lag }
    }

    /// A reading stamped `timestamp` was read from `partition`.
    pub fn read(&self, partition: i32, timestamp: Option<i64>) {
        self.lag.read(partition, timestamp);
    }

    /// The figures so far: the summary's counts, the dead letters' by reason, and the windows
    /// each sink was sent (`file`, `postgres`, `topic`).
    pub fn publish(&self, summary: &Summary, rejected: &BTreeMap<&'static str, u64>, sent: &[(&'static str, u64)]) {
        let topic = || ("topic", self.topic.clone());
        set_counter("weather_consumer_readings_total", &[topic()], summary.readings);
        for (&reason, &count) in rejected {
            set_counter("weather_consumer_readings_rejected_total", &[topic(), ("reason", reason.to_string())], count);
        }
        for &(sink, windows) in sent {
            set_counter("weather_consumer_windows_written_total", &[("sink", sink.to_string())], windows);
        }
        set_counter("weather_consumer_fenced_writes_total", &[], summary.fenced_writes);
    }

    /// A member of a shared group claimed `partition`, whose store holds it up to `next`: its
    /// lag is the member's from now on, before the member has read or written any of it.
    pub fn claimed(&self, partition: i32, next: i64) {
        self.lag.durable(partition, next);
    }

    /// A member of a shared group owns `partitions` now: the lag of the others is theirs.
    pub fn owns(&self, partitions: &[i32], released: &[i32]) {
        for &partition in released {
            self.lag.forget(partition);
        }
        ::metrics::gauge!("weather_consumer_partitions_owned").set(partitions.len() as f64);
    }

    /// A checkpoint made everything up to `offsets` durable; it took `took`. The figures it
    /// accounts for are published first ([`Metrics::publish`]): a scrape that sees no lag sees
    /// every window that ended it.
    pub fn checkpoint(&self, summary: &Summary, offsets: &BTreeMap<i32, i64>, took: Duration) {
        for (&partition, &next) in offsets {
            self.lag.durable(partition, next);
        }
        ::metrics::histogram!("weather_consumer_checkpoint_duration_seconds").record(took.as_secs_f64());
        set_counter("weather_consumer_checkpoints_total", &[], summary.checkpoints);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        ::metrics::gauge!("weather_consumer_last_checkpoint_timestamp_seconds").set(now.as_secs_f64());
    }
}

/// One table's commit took `took`.
pub fn commit(sink: &'static str, took: Duration) {
    ::metrics::histogram!("weather_consumer_commit_duration_seconds", "sink" => sink).record(took.as_secs_f64());
}
