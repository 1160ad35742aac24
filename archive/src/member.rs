//! Membership in the consumer group: the group's protocol shares the topic's partitions among
//! the instances with the same `--group`, and this context hears of every change. A partition
//! is started where the lake says (not where the group committed) before it is fetched, inside
//! the rebalance callback, so no record is read from a wrong position.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use weather_common::kafka::LoggingContext;

/// What a member does when the group changes its partitions. Called on the thread that polls.
pub trait Rebalance: Send + Sync + 'static {
    /// `partitions` are now this member's: returns where to fetch each from.
    fn assigned(&self, partitions: &[i32]) -> BTreeMap<i32, i64>;
    /// `partitions` are no longer this member's.
    fn revoked(&self, partitions: &[i32]);
}

pub struct GroupContext {
    handler: Arc<dyn Rebalance>,
}

impl GroupContext {
    pub fn new(handler: Arc<dyn Rebalance>) -> GroupContext {
        GroupContext { handler }
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        LoggingContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        LoggingContext.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!("the group assigned partitions {partitions:?}");
                let starts = self.handler.assigned(&partitions);
                let assigned: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
                for (topic, partition) in assigned {
                    let Some(&offset) = starts.get(&partition) else { continue };
                    if let Err(e) = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset)) {
                        tracing::error!("partition {partition}: cannot start at offset {offset}: {e}");
                    }
                }
                match cooperative {
                    true => consumer.incremental_assign(tpl),
                    false => consumer.assign(tpl),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!("the group took back partitions {partitions:?}");
                self.handler.revoked(&partitions);
                match cooperative {
                    true => consumer.incremental_unassign(tpl),
                    false => consumer.unassign(),
                }
            }
            other => {
                tracing::warn!("rebalance failed ({other:?}); giving up every partition until the next one");
                self.handler.revoked(&partitions);
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!("applying the group's assignment failed: {e}");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        LoggingContext.commit_callback(result, offsets);
    }
}
