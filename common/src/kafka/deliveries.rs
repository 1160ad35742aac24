//! Sending with a producer and waiting for its acknowledgements: every record counted as
//! sent, acknowledged or failed, and a flush woken by the last report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{DeliveryResult, Message, ToBytes};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::LoggingContext;

/// Sends `record`, waiting while the producer's queue is full: the broker is slower than we
/// are, and the queue drains as it acknowledges. The wait is short (0.1 ms) so that sending
/// resumes as soon as there is room; 1 ms left the sender idle a tenth of a fast run. The
/// record is counted as sent, for [`flush`].
pub fn send<K, P>(producer: &ThreadedProducer<Deliveries>, mut record: BaseRecord<'_, K, P, ()>) -> KafkaResult<()>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.context().sent.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_micros(100));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Waits until every record sent with [`send`] is acknowledged or has failed for good; false if
/// that takes longer than `timeout`. Woken by each delivery report: rdkafka's own `flush`
/// looks again only every 100 ms while the producer's thread takes the reports, which made
/// every commit of a window table wait 100 ms per flush.
pub fn flush(producer: &ThreadedProducer<Deliveries>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let deliveries = producer.context();
    // While a flush is under way, librdkafka sends what lingers at once.
    let _ = producer.flush(Duration::ZERO);
    let mut reported = deliveries.reported.lock().unwrap_or_else(|e| e.into_inner());
    while deliveries.outstanding() > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        reported = deliveries.report.wait_timeout(reported, left).unwrap_or_else(|e| e.into_inner()).0;
    }
    true
}

/// Counts the records a producer sent, acknowledged and failed, remembers the first failure,
/// and wakes [`flush`] at each report.
#[derive(Default)]
pub struct Deliveries {
    sent: AtomicU64,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
    /// Held by [`flush`] while it looks at the counts, and to wake it.
    reported: Mutex<()>,
    report: Condvar,
}

impl Deliveries {
    /// Records sent and not yet reported on.
    fn outstanding(&self) -> u64 {
        let reported = self.acknowledged() + self.failed();
        self.sent.load(Ordering::Relaxed).saturating_sub(reported)
    }

    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first delivery failure, if any, as a message.
    pub fn first_failure(&self) -> Option<String> {
        self.first_failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        LoggingContext.log(level, fac, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        LoggingContext.error(error, reason)
    }

    fn stats_raw(&self, statistics: &[u8]) {
        LoggingContext.stats_raw(statistics)
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let key = message.key().map(String::from_utf8_lossy).unwrap_or_default();
                tracing::error!("message with key {key:?} to {} was not delivered: {error}", message.topic());
                self.first_failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| error.to_string());
            }
        }
        // Only the last report wakes `flush` (a wake is a system call, and a sensor has a
        // million reports a second); taking the lock first means `flush` is either waiting
        // already or has not yet looked at the counts.
        if self.outstanding() == 0 {
            let _waiting = self.reported.lock().unwrap_or_else(|e| e.into_inner());
            self.report.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{reliable_producer, KafkaArgs};

    /// `flush` returns once every record sent is reported on, not before; a broker that never
    /// answers makes it return false when its time is up, with the records still outstanding.
    #[test]
    fn flush_waits_for_every_report() {
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        cluster.create_topic("flushed", 3, 1).unwrap();
        let args = KafkaArgs::new(cluster.bootstrap_servers());
        let producer = reliable_producer(&args, &[("linger.ms", "50")], Deliveries::default()).unwrap();
        for round in 1..=3u64 {
            for i in 0..1000 {
                let key = format!("key-{i}");
                send(&producer, BaseRecord::to("flushed").key(key.as_str()).payload("{}")).unwrap();
            }
            assert!(flush(&producer, Duration::from_secs(30)));
            assert_eq!((producer.context().acknowledged(), producer.context().failed()), (round * 1000, 0));
        }

        let nowhere = KafkaArgs::new(format!(
            "127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        ));
        let producer = reliable_producer(&nowhere, &[], Deliveries::default()).unwrap();
        send(&producer, BaseRecord::to("flushed").key("k").payload("{}")).unwrap();
        assert!(!flush(&producer, Duration::from_millis(300)));
        assert_eq!(producer.context().outstanding(), 1);
    }
}
