//! librdkafka's logs and errors routed into `tracing`: errors that repeat while a broker is
//! down are said once in a while, not many times a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;

/// Routes librdkafka's logs and errors into `tracing`, and reports commits.
#[derive(Clone, Default)]
pub struct LoggingContext;

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            // A failed connection (FAIL) is retried by librdkafka, and the error event that
            // follows it says the same: a detail.
            RDKafkaLogLevel::Error if fac == "FAIL" => tracing::debug!(target: "librdkafka", "{fac}: {log_message}"),
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac}: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac}: {log_message}"),
            _ => tracing::debug!(target: "librdkafka", "{fac}: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Reaching the end of a partition is news, not trouble; the consumer handles it.
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::PartitionEOF)) {
            return tracing::trace!(target: "librdkafka", "{reason}");
        }
        // Connection errors repeat, many at a time, while a broker is down; librdkafka keeps
        // retrying, so they are warnings, not failures, and one of a kind every few seconds
        // says it.
        let text = error.to_string();
        // Until a broker has answered, the job's own retry says it (naming --connect-timeout).
        if answered() && once_in_a_while(&text) {
            tracing::warn!(target: "librdkafka", "{text}: {reason}");
        } else {
            tracing::debug!(target: "librdkafka", "{text}: {reason}");
        }
    }

    /// librdkafka's statistics (`-X statistics.interval.ms=N`), as the JSON it writes (as kcat
    /// prints them), at info. The default decodes them into rdkafka's types first: a decoder of
    /// 40,000 lines of LLVM IR, compiled again in every crate that makes a client.
    fn stats_raw(&self, statistics: &[u8]) {
        tracing::info!(target: "librdkafka::statistics", "{}", String::from_utf8_lossy(statistics));
    }
}

/// Whether any broker has answered this process yet.
static ANSWERED: AtomicBool = AtomicBool::new(false);

/// A broker answered.
pub(crate) fn answered_now() {
    ANSWERED.store(true, Ordering::Relaxed);
}

/// True once any broker has answered this process.
pub(crate) fn answered() -> bool {
    ANSWERED.load(Ordering::Relaxed)
}

/// True unless the same error was last said less than [`REPEAT_AFTER`] ago.
pub(crate) fn once_in_a_while(text: &str) -> bool {
    static SAID: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    said.retain(|(_, at)| now.duration_since(*at) < REPEAT_AFTER);
    if said.iter().any(|(known, _)| known == text) {
        return false;
    }
    said.push((text.to_string(), now));
    true
}

/// Says an error of a consumer's that librdkafka retries on its own (a broker away, a fetch
/// failed): a warning, once in a while for the same error.
pub fn warn_consuming(error: &KafkaError) {
    let text = format!("while consuming: {error} (librdkafka retries)");
    if once_in_a_while(&text) {
        tracing::warn!("{text}");
    }
}

/// How long one kind of librdkafka error stays said.
const REPEAT_AFTER: Duration = Duration::from_secs(10);

impl ConsumerContext for LoggingContext {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &rdkafka::TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(
                "committing offsets to the consumer group failed (will retry with the next checkpoint): {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One kind of error is said once, then not again for a while; another kind is said.
    #[test]
    fn repeated_errors_are_said_once_in_a_while() {
        assert!(once_in_a_while("test: all brokers down"));
        assert!(!once_in_a_while("test: all brokers down"));
        assert!(once_in_a_while("test: transport failure"));
    }

    /// `-X statistics.interval.ms` makes a client's statistics appear in the log, as the JSON
    /// librdkafka writes: a consumer of a mock cluster, polled for a while, says them.
    #[test]
    fn statistics_are_logged_as_librdkafka_writes_them() {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::mocking::MockCluster;
        use std::sync::Arc;

        let mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext> = MockCluster::new(1).unwrap();
        let consumer: BaseConsumer<LoggingContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "statistics-test")
            .set("statistics.interval.ms", "50")
            .create_with_context(LoggingContext)
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Writer(writer.clone()))
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let started = Instant::now();
            while !said(&log) && started.elapsed() < Duration::from_secs(10) {
                let _ = consumer.poll(Duration::from_millis(50));
            }
        });
        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        assert!(said(&log), "no statistics in the log within 10 s: {text}");
        assert!(text.contains("librdkafka::statistics"), "{text}");

        fn said(log: &Mutex<Vec<u8>>) -> bool {
            String::from_utf8_lossy(&log.lock().unwrap()).contains(r#""type": "consumer""#)
        }
        struct Writer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Writer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    }
}
