//! The aggregates topic (`--to-topic`): every window as one record of a compacted Kafka topic,
//! keyed by the window (`weather_common::aggregate` defines the bytes), so that other jobs read
//! the table of averages instead of recomputing it (`weather-report` does).
//!
//! Its durable progress is a state record in a companion compacted topic, `<topic>.state` (one
//! partition, one record per output: the key names the consumer group and the topic read; the
//! value holds the rules, the next offset per partition, and, when the topic is the only
//! output, the open windows). A state record rather than the consumer group's offsets alone,
//! because a table that is the only output must keep its open windows too, and because Tansu
//! never lets a transaction's offsets reach the group; a companion topic rather than records in
//! the aggregates topic itself, so that the aggregates topic stays a pure table for any reader.
//!
//! How a commit is made durable depends on the broker, found out when the sink opens by
//! committing one transaction (a tombstone of a key of its own, in the state topic):
//! - **Transactions** (Apache Kafka): the windows since the last commit, the state record and
//!   the consumed offsets (sent to the consumer group) go in one transaction. A crash before
//!   its commit leaves nothing that a `read_committed` reader sees, and the next run (the same
//!   `transactional.id`) aborts it; the log holds every window once.
//! - **Idempotent writes** (Tansu 0.6, which has no EndTxn, so no transaction ever commits):
//!   the windows are sent with an idempotent producer and all acknowledged, then the state
//!   record is sent and acknowledged. A crash in between leaves windows beyond the state, which
//!   the restarted run writes again with the same key and the same value: the log may hold a
//!   window twice, the table (the latest value per key) never differs.
//!
//! Either way the topic commits before the file's checkpoint (see [`crate::sink::table`]): after a
//! crash it is never behind the file, and the windows it holds are not sent again.

pub mod config;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use weather_common::aggregate::{Aggregate, WindowKey};
use weather_common::kafka::{self, Deliveries, KafkaArgs, LoggingContext};

pub use self::config::{TopicArgs, TopicTarget};
use crate::share::store::Mirror;
use crate::sink::table::{Commit, Opening, TableState, WindowTable};
use crate::units::Unit;
use crate::window::{WindowSize, WindowSummary, Windows};

/// The companion topic of an aggregates topic, where each output's progress lives.
pub const STATE_SUFFIX: &str = ".state";
/// Java clients place keys with murmur2: with it, any other writer of this topic puts a
/// window's key in the same partition, which compaction needs.
const PARTITIONER: (&str, &str) = ("partitioner", "murmur2_random");

/// How this broker makes a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Windows, state and offsets in one Kafka transaction.
    Transactions,
    /// Idempotent writes, the windows acknowledged before the state (the broker has no EndTxn).
    Idempotent,
}

/// The key of an output's state record.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StateKey<'a> {
    consumer_group: &'a str,
    topic: &'a str,
}

/// An output's state record: its rules and its progress.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StateRecord {
    window_days: u32,
    unit: Unit,
    offsets: BTreeMap<i32, i64>,
    ended_with_partial: bool,
    /// Only when the topic is the only output.
    open_windows: Option<Windows>,
}

/// This output's windows in an aggregates topic.
pub struct TopicTable {
    target: TopicTarget,
    name: String,
    key: Vec<u8>,
    window: WindowSize,
    unit: Unit,
    producer: ThreadedProducer<Deliveries>,
    delivery: Delivery,
    /// The consumer group, for the offsets sent with a transaction.
    group: Option<ConsumerGroupMetadata>,
    source_topic: String,
    /// A transaction is open (transactions only).
    in_transaction: bool,
    /// How long a commit waits for the broker.
    timeout: Duration,
    state: TableState,
}

impl TopicTable {
    /// Creates the topic (compacted, the source topic's partition count) and its state topic
    /// if missing, warns about an existing topic that is not compacted, finds out whether the
    /// broker commits transactions, and reads where this output's progress stands. `rebuild`:
    /// the run rebuilds from the beginning, so progress under other rules is no reason to stop.
    pub fn open(run: &Opening<'_>, target: &TopicTarget) -> anyhow::Result<TopicTable> {
        let Opening { kafka, group, rules, rebuild, stop, runtime } = *run;
        let (source_topic, window, unit) = (rules.topic.as_str(), rules.window, rules.unit);
        let probe = kafka::metadata_client(kafka)?;
        let partitions = kafka::partitions_unless(&probe, kafka, source_topic, stop)?;
        let state_topic = target.state_topic();
        let admin = kafka::admin_client(kafka)?;
        runtime.block_on(futures_util::future::try_join(
            ensure_compacted(kafka, &admin, &probe, &target.topic, partitions.len(), true),
            // Its settings are not looked up: not compacted, it only grows by a record per checkpoint.
            ensure_compacted(kafka, &admin, &probe, &state_topic, 1, false),
        ))?;
        kafka::dispose(admin);
        kafka::dispose(probe);
        let key = serde_json::to_vec(&StateKey { consumer_group: group, topic: source_topic }).expect("serializes");
        let timeout = kafka.connect_timeout().max(Duration::from_secs(30));
        let transactional_id = format!("weather-consumer:{group}:{}", target.topic);
        // Whether the broker commits transactions is found out on a thread of its own, while the
        // idempotent producer connects and the state is read (on a third) as an idempotent
        // output reads it: on Tansu, which cannot commit one, both are ready by the time the
        // probe has failed, instead of a few hundred milliseconds of start-up after it.
        let (probed, idempotent, uncommitted_state) = std::thread::scope(|s| {
            let probe = s.spawn(|| transactional(kafka, &transactional_id, &state_topic, &key, timeout));
            // Every record counts, and Tansu keeps the probe's transaction open.
            let state = s.spawn(|| {
                let reader = kafka::metadata_client_seeing_everything(kafka)?;
                let state = read_state(&reader, &state_topic, &key);
                kafka::dispose(reader);
                state
            });
            let idempotent = kafka::reliable_producer(kafka, &[PARTITIONER], Deliveries::default());
            if let Ok(producer) = &idempotent {
                kafka::warm_up(producer, &target.topic, timeout);
            }
            (probe.join(), idempotent, state.join())
        });
        let probed = probed.map_err(|_| anyhow::anyhow!("the transactions probe panicked"))??;
        let uncommitted_state = uncommitted_state.map_err(|_| anyhow::anyhow!("reading the state panicked"))?;
        let (producer, delivery, state) = match probed {
            Some(producer) => {
                // Only committed state records count (an aborted one never happened), read once
                // the probe has ended any transaction a crashed run of this output left open.
                let reader = kafka::metadata_client(kafka)?;
                let state = read_state(&reader, &state_topic, &key)?;
                kafka::dispose(reader);
                if let Ok(idempotent) = idempotent {
                    kafka::dispose(idempotent);
                }
                (producer, Delivery::Transactions, state)
            }
            None => {
                tracing::debug!(
                    "the broker at {} does not commit transactions (no EndTxn): the windows go to `{}` with \
                     idempotent writes, acknowledged before its progress",
                    kafka.bootstrap_servers,
                    target.topic
                );
                (idempotent?, Delivery::Idempotent, uncommitted_state?)
            }
        };
        let name = match delivery {
            Delivery::Transactions => format!("topic `{}` (transactions)", target.topic),
            Delivery::Idempotent => format!("topic `{}` (idempotent writes)", target.topic),
        };
        let group_metadata = match delivery {
            Delivery::Transactions => {
                let member: BaseConsumer<LoggingContext> =
                    kafka.consumer_config(group, &[]).create_with_context(LoggingContext)?;
                member.group_metadata()
            }
            Delivery::Idempotent => None,
        };
        let mut table = TopicTable {
            target: target.clone(),
            name,
            key,
            window,
            unit,
            producer,
            delivery,
            group: group_metadata,
            source_topic: source_topic.to_string(),
            in_transaction: false,
            timeout,
            state: TableState::default(),
        };
        if let Some(record) = state {
            let record: StateRecord = serde_json::from_slice(&record).with_context(|| {
                format!(
                    "`{state_topic}` holds a damaged state record for group `{group}`: rebuild with --from-beginning"
                )
            })?;
            if (record.window_days, record.unit) != (window.get(), unit) {
                if !rebuild {
                    bail!(
                        "{} holds the windows of group `{group}` computed with {}-day windows in {}, not this run's \
                         {}-day windows in {}: rebuild them with --from-beginning, or give this output another \
                         --to-topic",
                        table.name,
                        record.window_days,
                        record.unit.name(),
                        window.get(),
                        unit.name()
                    );
                }
            } else {
                table.state = TableState {
                    offsets: record.offsets,
                    windows: record.open_windows,
                    rebuilding: false,
                    ended_with_partial: record.ended_with_partial,
                };
            }
        }
        Ok(table)
    }

    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// Sends one record (key, value) to `topic`.
    fn send(&mut self, topic: &str, key: &[u8], value: Option<&[u8]>) -> anyhow::Result<()> {
        if self.delivery == Delivery::Transactions && !self.in_transaction {
            self.producer.begin_transaction().context("beginning a transaction")?;
            self.in_transaction = true;
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        kafka::send(&self.producer, record).with_context(|| format!("sending to `{topic}`"))
    }

    /// Waits until every record sent is acknowledged ([`acknowledged`]).
    fn flush(&self) -> anyhow::Result<()> {
        acknowledged(&self.producer, &self.name, self.timeout)
    }

    /// Makes the windows sent since the last commit durable with `commit`'s progress.
    fn make_durable(&mut self, commit: &Commit<'_>) -> anyhow::Result<()> {
        let record = StateRecord {
            window_days: self.window.get(),
            unit: self.unit,
            offsets: commit.offsets.clone(),
            ended_with_partial: commit.partial,
            open_windows: commit.windows.cloned(),
        };
        let value = serde_json::to_vec(&record).expect("a state record always serializes");
        let (state_topic, key) = (self.target.state_topic(), self.key.clone());
        match self.delivery {
            Delivery::Idempotent => {
                // The windows first: the state must never count a window the topic lacks.
                self.flush()?;
                self.send(&state_topic, &key, Some(&value))?;
                self.flush()?;
            }
            Delivery::Transactions => {
                self.send(&state_topic, &key, Some(&value))?;
                if let Some(group) = &self.group {
                    let mut offsets = TopicPartitionList::new();
                    for (&partition, &offset) in commit.offsets {
                        offsets.add_partition_offset(&self.source_topic, partition, Offset::Offset(offset))?;
                    }
                    self.producer
                        .send_offsets_to_transaction(&offsets, group, self.timeout)
                        .map_err(|e| self.abort(e, "sending the offsets with the transaction"))?;
                }
                // rdkafka's commit_transaction flushes first, looking again only every 100 ms
                // while the producer's thread takes the reports: 100 ms of every commit. Waited
                // for here, woken by each report, nothing is left in flight for it.
                kafka::flush(&self.producer, self.timeout);
                loop {
                    match self.producer.commit_transaction(self.timeout) {
                        Ok(()) => break,
                        Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                            tracing::warn!("committing to {}: {e}; trying again", self.name);
                        }
                        Err(e) => return Err(self.abort(e, "committing the transaction")),
                    }
                }
                self.in_transaction = false;
            }
        }
        self.state.offsets = commit.offsets.clone();
        self.state.ended_with_partial = commit.partial;
        self.state.windows = commit.windows.cloned();
        Ok(())
    }

    /// Aborts the open transaction after `error`, if it can be: nothing of it is made durable.
    fn abort(&mut self, error: KafkaError, doing: &str) -> anyhow::Error {
        if matches!(&error, KafkaError::Transaction(e) if e.txn_requires_abort()) {
            if let Err(e) = self.producer.abort_transaction(self.timeout) {
                tracing::warn!("aborting the transaction on {}: {e}", self.name);
            }
            self.in_transaction = false;
        }
        anyhow::Error::new(error).context(format!("{doing} on {}: nothing of it was made durable", self.name))
    }
}

impl WindowTable for TopicTable {
    fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> &TableState {
        &self.state
    }

    /// A rebuild writes every window again, over the old values (the same ones under the same
    /// rules): there is nothing to hide until it has caught up.
    fn rebuild(&mut self, from: &BTreeMap<i32, i64>, windows: Option<&Windows>) -> anyhow::Result<()> {
        self.make_durable(&Commit { offsets: from, windows, caught_up: false, partial: false })?;
        tracing::info!("{}: writing this output's windows from {}", self.name, describe(from));
        Ok(())
    }

    fn add(&mut self, window: &WindowSummary) -> anyhow::Result<()> {
        let aggregate = window.aggregate(self.window, self.unit);
        let topic = self.target.topic.clone();
        self.send(&topic, &aggregate.key.to_json(), Some(&aggregate.to_json()))
    }

    fn commit(&mut self, commit: &Commit<'_>) -> anyhow::Result<()> {
        self.make_durable(commit)
    }
}

/// Waits until every record `producer` sent is acknowledged by `name`; a record that failed
/// for good fails the commit (nothing after it is made durable), and so does a broker that
/// acknowledges nothing for `timeout`.
fn acknowledged(producer: &ThreadedProducer<Deliveries>, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut said = false;
    loop {
        let flushed = kafka::flush(producer, Duration::from_secs(1));
        if let Some(failure) = producer.context().first_failure() {
            bail!("{name} did not take a record: {failure}");
        }
        if flushed {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} acknowledged nothing for {} s: is the broker up?", timeout.as_secs());
        }
        if !said {
            tracing::warn!("waiting for {name} to acknowledge the windows sent");
            said = true;
        }
    }
}

/// The aggregates topic as the members of a shared group (`--share`) write it: their group's
/// state lives in PostgreSQL beside the warehouse table ([`crate::sink::postgres::partitions`]),
/// not in `NAME.state`, and each of their commits sends its windows here with an idempotent
/// producer, acknowledged before the PostgreSQL transaction that moves the partitions past them
/// commits ([`Mirror`]). On any broker: the fencing is PostgreSQL's epoch, held for the whole
/// commit, and a window sent twice (a fenced member's, or a commit made again after a lost
/// connection) is the same value under the same key.
pub struct GroupTopic {
    topic: String,
    name: String,
    producer: ThreadedProducer<Deliveries>,
    timeout: Duration,
}

impl GroupTopic {
    /// Creates the topic if missing (compacted, the source topic's partition count; an
    /// existing topic that is not compacted is warned about) and connects the producer.
    pub fn open(run: &Opening<'_>, target: &TopicTarget) -> anyhow::Result<GroupTopic> {
        let probe = kafka::metadata_client(run.kafka)?;
        let partitions = kafka::partitions_unless(&probe, run.kafka, &run.rules.topic, run.stop)?;
        let admin = kafka::admin_client(run.kafka)?;
        run.runtime.block_on(ensure_compacted(run.kafka, &admin, &probe, &target.topic, partitions.len(), true))?;
        kafka::dispose(admin);
        kafka::dispose(probe);
        let producer = kafka::reliable_producer(run.kafka, &[PARTITIONER], Deliveries::default())?;
        let timeout = run.kafka.connect_timeout().max(Duration::from_secs(30));
        kafka::warm_up(&producer, &target.topic, timeout);
        Ok(GroupTopic {
            topic: target.topic.clone(),
            name: format!("topic `{}` (idempotent writes)", target.topic),
            producer,
            timeout,
        })
    }

    fn send(&self, key: &[u8], value: Option<&[u8]>) -> anyhow::Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        kafka::send(&self.producer, record).with_context(|| format!("sending to `{}`", self.topic))
    }
}

impl Mirror for GroupTopic {
    fn name(&self) -> &str {
        &self.name
    }

    fn publish(&mut self, gone: &[WindowKey], windows: &[Aggregate]) -> anyhow::Result<()> {
        if !gone.is_empty() {
            for key in gone {
                self.send(&key.to_json(), None)?;
            }
            acknowledged(&self.producer, &self.name, self.timeout)?;
        }
        for window in windows {
            self.send(&window.key.to_json(), Some(&window.to_json()))?;
        }
        acknowledged(&self.producer, &self.name, self.timeout)
    }
}

fn describe(offsets: &BTreeMap<i32, i64>) -> String {
    let listed: Vec<String> = offsets.iter().map(|(p, o)| format!("{p}:{o}")).collect();
    format!("offsets {}", listed.join(" "))
}

/// A transactional producer, once one transaction (a tombstone of `key`'s probe in
/// `state_topic`) has committed; `None` if the broker cannot commit one.
fn transactional(
    kafka: &KafkaArgs,
    id: &str,
    state_topic: &str,
    key: &[u8],
    timeout: Duration,
) -> anyhow::Result<Option<ThreadedProducer<Deliveries>>> {
    // Its first look for its coordinator needs a broker connected and up; a look-up first, with
    // every broker it learns of connected at once, makes it find one (else it looks again
    // 500 ms later).
    let settings = [PARTITIONER, ("transactional.id", id), ("enable.sparse.connections", "false")];
    let producer: ThreadedProducer<Deliveries> = kafka::reliable_producer(kafka, &settings, Deliveries::default())?;
    kafka::warm_up(&producer, state_topic, timeout);
    match producer.init_transactions(timeout) {
        Ok(()) => {}
        Err(e) if unsupported(&e) => {
            kafka::dispose(producer);
            return Ok(None);
        }
        Err(e) => return Err(anyhow::Error::new(e).context("starting the transactional producer")),
    }
    producer.begin_transaction().context("beginning the first transaction")?;
    let mut probe = key.to_vec();
    probe.extend_from_slice(b"#probe");
    kafka::send(&producer, BaseRecord::<[u8], [u8]>::to(state_topic).key(&probe[..]))
        .context("sending the first transaction's record")?;
    kafka::flush(&producer, timeout);
    match producer.commit_transaction(timeout) {
        Ok(()) => Ok(Some(producer)),
        Err(e) if unsupported(&e) => {
            kafka::dispose(producer);
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context("committing the first transaction")),
    }
}

/// True if `error` says the broker lacks what transactions need.
fn unsupported(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion)
    )
}

/// The latest value of `key` in (the one partition of) `state_topic`.
fn read_state(client: &BaseConsumer<LoggingContext>, state_topic: &str, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    let marks = kafka::watermarks(client, state_topic, &[0]).with_context(|| format!("looking up `{state_topic}`"))?;
    let Some(&(low, high)) = marks.get(&0) else { return Ok(None) };
    let mut latest: Option<Option<Vec<u8>>> = None;
    kafka::read_range(client, state_topic, 0, (low, high), (low, high), |_, k, value| {
        if k == Some(key) {
            latest = Some(value.map(<[u8]>::to_vec));
        }
    })
    .with_context(|| format!("reading `{state_topic}`"))?;
    Ok(latest.flatten())
}

/// Creates `topic` compacted with `partitions` partitions if it is missing; an existing topic
/// that is not compacted is warned about (if `check`), naming the setting.
async fn ensure_compacted(
    kafka: &KafkaArgs,
    admin: &AdminClient<LoggingContext>,
    probe: &BaseConsumer<LoggingContext>,
    topic: &str,
    partitions: usize,
    check: bool,
) -> anyhow::Result<()> {
    // Brokers answer at once; librdkafka's mock cluster has no admin requests and never does.
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let exists = kafka::topic_partitions(probe, topic, Duration::from_secs(10))
        .with_context(|| format!("looking up `{topic}`"))?
        .is_some();
    if !exists {
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
        let created = admin.create_topics([&new], &options).await.with_context(|| format!("creating `{topic}`"))?;
        match created.into_iter().next() {
            Some(Ok(_)) => {
                let partitions = weather_common::meter::counted(partitions as u64, "partition");
                tracing::info!("created `{topic}` ({partitions}, cleanup.policy=compact)");
                return Ok(());
            }
            // Created by another client in the meantime: checked below like any other.
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {}
            Some(Err((_, code))) => bail!("creating `{topic}` on {}: {code}", kafka.bootstrap_servers),
            None => bail!("creating `{topic}`: the broker did not answer"),
        }
    }
    if !check {
        return Ok(());
    }
    let metadata =
        probe.fetch_metadata(Some(topic), Duration::from_secs(10)).with_context(|| format!("looking up `{topic}`"))?;
    let leader = metadata.topics().iter().find(|t| t.name() == topic).and_then(|t| t.partitions().first());
    let Some(leader) = leader.map(|p| p.leader()) else {
        tracing::warn!("could not look up the settings of `{topic}` (no partition leader): is it compacted?");
        return Ok(());
    };
    // A look-up of a topic's settings goes to the controller, unless a broker's own settings
    // are asked for too: then all of it goes to that broker. librdkafka's mock cluster names a
    // controller it does not have, and the look-up waited for its whole timeout there. Any
    // broker answers for a topic: the leader of its first partition is asked.
    let resources = [&ResourceSpecifier::Topic(topic), &ResourceSpecifier::Broker(leader)];
    let described = admin.describe_configs(resources, &options).await;
    let policy = match described.map(|d| d.into_iter().next()) {
        Ok(Some(Ok(config))) => config.get("cleanup.policy").and_then(|entry| entry.value.clone()),
        Ok(None) => None,
        Ok(Some(Err(RDKafkaErrorCode::UnsupportedFeature)))
        | Err(KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedFeature)) => {
            tracing::debug!(
                "the broker does not say a topic's settings: whether `{topic}` is compacted is not checked"
            );
            return Ok(());
        }
        Ok(Some(Err(code))) => {
            tracing::warn!("could not look up the settings of `{topic}` ({code}): is it compacted?");
            return Ok(());
        }
        Err(e) => {
            tracing::warn!("could not look up the settings of `{topic}` ({e}): is it compacted?");
            return Ok(());
        }
    };
    if !policy.as_deref().is_some_and(|p| p.split(',').any(|p| p.trim() == "compact")) {
        tracing::warn!(
            "`{topic}` exists with cleanup.policy={}, not compact: the broker will delete windows by age instead of \
             keeping the latest value of each; set cleanup.policy=compact on it (kafka-configs.sh --alter \
             --entity-type topics --entity-name {topic} --add-config cleanup.policy=compact)",
            policy.as_deref().unwrap_or("delete (the default)")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state record names its output in its key and round-trips with its open windows.
    #[test]
    fn state_records() {
        let key = serde_json::to_vec(&StateKey { consumer_group: "g", topic: "weather" }).unwrap();
        assert_eq!(key, br#"{"consumer_group":"g","topic":"weather"}"#);
        let record = StateRecord {
            window_days: 7,
            unit: Unit::Fahrenheit,
            offsets: BTreeMap::from([(0, 12), (3, 40)]),
            ended_with_partial: false,
            open_windows: Some(Windows::new(WindowSize::WEEK)),
        };
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(serde_json::from_slice::<StateRecord>(&json).unwrap(), record);
    }

    /// A window's record is the aggregate record of `weather_common`, numbers as the CSV row.
    #[test]
    fn windows_as_records() {
        let week = crate::sink::week("sensor-1", 12, 7 * 203, 7 * 700, 7 * 50);
        let a = week.aggregate(WindowSize::WEEK, Unit::Fahrenheit);
        assert_eq!(a.key.to_json(), br#"{"sensor_id":"sensor-1","window_days":7,"window_id":12}"#);
        assert_eq!(
            String::from_utf8(a.to_json()).unwrap(),
            r#"{"sensor_id":"sensor-1","window_days":7,"window_id":12,"unit":"fahrenheit","avg_temp":68.5,"avg_co":700,"avg_humidity":50,"readings":7,"first_record_id":78,"last_record_id":84}"#
        );
    }
}
