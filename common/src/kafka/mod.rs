//! Kafka as every job of the suite uses it.
//!
//! - [`args`]: how to reach Kafka (brokers, `-X` overrides, secrets from the environment); the
//!   one place that builds an rdkafka `ClientConfig`.
//! - [`log`]: librdkafka's logs and errors in `tracing`.
//! - [`clients`]: consumers, probes and producers with the project's defaults.
//! - [`deliveries`]: sending, and waiting for acknowledgements.
//! - [`topic`]: a topic's partitions, a missing topic, an unreachable broker; where a key goes.
//! - [`range`]: a partition's ends and ranges, read around Tansu's quirks.

mod args;
mod clients;
mod deliveries;
mod log;
mod range;
mod topic;

pub use args::{KafkaArgs, SECRET_ENV};
pub use clients::{
    admin_client, dispose, metadata_client, metadata_client_seeing_everything, pause, reliable_producer, warm_up,
};
pub use deliveries::{flush, send, Deliveries};
pub use log::{warn_consuming, LoggingContext};
pub use range::{fetch_start, offsets_for_time, read_range, watermarks, watermarks_within};
pub use topic::{partition_of, partitions, partitions_unless, topic_partitions, TopicError};
