//! The archive's metrics (served by [`weather_common::metrics`]): its counters are set from
//! the very figures its summary counts, at every turn of the loop's clock and at the end of a
//! run. Its lag is measured at each scrape from the position the lake holds in each partition
//! (its durable state), published here.

use std::collections::BTreeMap;
use std::sync::Arc;

use weather_common::kafka::KafkaArgs;
use weather_common::metrics::{health_of_job, set_counter, Lag};

use crate::archiver::Summary;

/// What the loop publishes: the topic's name for labels, and the lag's positions.
pub struct Metrics {
    topic: String,
    lag: Arc<Lag>,
}

impl Metrics {
    pub fn new(topic: &str, kafka: &KafkaArgs) -> Metrics {
        let lag = Lag::register(["weather_archive_lag_readings", "weather_archive_lag_seconds"], topic, kafka);
        Metrics { topic: topic.to_string(), lag }
    }

    /// A reading stamped `timestamp` was read from `partition`.
    pub fn read(&self, partition: i32, timestamp: Option<i64>) {
        self.lag.read(partition, timestamp);
    }

    /// This instance no longer writes `partition`.
    pub fn revoked(&self, partition: i32) {
        self.lag.forget(partition);
    }

    /// The figures so far, the dead letters' by reason, and how far the lake holds each
    /// partition this instance writes; and that the loop is alive.
    pub fn publish(&self, summary: &Summary, rejected: &BTreeMap<&'static str, u64>, held: &BTreeMap<i32, i64>) {
        let topic = || ("topic", self.topic.clone());
        set_counter("weather_archive_readings_total", &[topic()], summary.readings);
        for (&reason, &count) in rejected {
            set_counter("weather_archive_readings_rejected_total", &[topic(), ("reason", reason.to_string())], count);
        }
        set_counter("weather_archive_files_total", &[], summary.files);
        set_counter("weather_archive_bytes_total", &[], summary.bytes);
        set_counter("weather_archive_late_files_total", &[], summary.late_files);
        set_counter("weather_archive_rebalances_total", &[], summary.rebalances);
        set_counter("weather_archive_fenced_writes_total", &[], summary.fenced_writes);
        for (&partition, &next) in held {
            self.lag.durable(partition, next);
        }
        ::metrics::gauge!("weather_archive_partitions_owned").set(held.len() as f64);
        health_of_job().alive();
    }
}
