//! One member of a shared group: its heartbeat, the partitions it owns, and the loop that reads
//! them. Each owned partition keeps its own open windows (a sensor's readings all come from one
//! partition), its next offset, the windows finished since the last commit and the epoch it was
//! claimed at; a commit makes all of them durable at once, or none if another member has
//! claimed one of them since ([`PartitionStore::commit`]), while the member reads on
//! ([`super::commits`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use tokio::runtime::Handle;
use weather_common::dead_letter::DeadLetters;
use weather_common::fetch::Record;
use weather_common::meter::Span;
use weather_common::position::{Start, Until};
use weather_common::shutdown::Stop;
use weather_common::source::{Source, TopicView};
use weather_common::Reading;

use super::commits::{Committer, Pending, Settled};
use super::store::{Claimed, Membership, Rebuild, RebuildRange};
use crate::config::{Settings, Share};
use crate::metrics::Metrics;
use crate::pipeline::Summary;
use crate::sink::table::Opening;
use crate::window::{Outcome, WindowSummary, Windows};
use weather_common::share::{share_of, Moves};

const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const DEAD_LETTER_FLUSH: Duration = Duration::from_secs(10);
/// Reading the clock for every message costs more than the message: look every so often.
const CLOCK_EVERY: u64 = 256;

/// A partition this member owns.
struct Owned {
    epoch: i64,
    /// The next offset to take.
    next: i64,
    windows: Windows,
    /// Sensors first seen in it since the last commit.
    new_sensors: Vec<String>,
    /// Windows finished since the last commit.
    finished: Vec<WindowSummary>,
    /// Something to commit.
    dirty: bool,
    /// Where a bounded run (`--until-end`) stops reading it: its end when it was claimed.
    end: i64,
}

/// With `--until-end`, whether a member has read its part: every partition dealt to it claimed
/// (one that its last owner has not handed over yet is still to be read: the member that had it
/// may end first, having read its own part), and every partition it owns read to where it ended
/// when claimed.
fn part_read(dealt: &BTreeSet<i32>, owned: &BTreeMap<i32, Owned>) -> bool {
    dealt.iter().all(|p| owned.contains_key(p)) && owned.values().all(|o| o.next >= o.end)
}

impl Owned {
    fn new(claimed: Claimed, start: i64, end: i64, settings: &Settings) -> Owned {
        let windows = claimed.windows.unwrap_or_else(|| Windows::new(settings.rules.window));
        Owned {
            epoch: claimed.epoch,
            next: start,
            windows,
            new_sensors: Vec::new(),
            finished: Vec::new(),
            // Its first commit comes at once: a rebuilt partition with nothing to read swaps
            // its sensors' old rows out then.
            dirty: true,
            end,
        }
    }

    /// What it makes durable in the next commit; its windows finished and sensors first seen
    /// go with it.
    fn pending(&mut self, partition: i32, release: bool) -> Pending {
        self.dirty = false;
        Pending {
            partition,
            epoch: self.epoch,
            next_offset: self.next,
            windows: self.windows.clone(),
            finished: std::mem::take(&mut self.finished),
            new_sensors: std::mem::take(&mut self.new_sensors),
            release,
        }
    }
}

/// A member, between two heartbeats.
struct Member<'a> {
    settings: &'a Settings,
    share: &'a Share,
    stop: &'a Stop,
    /// The store, and the aggregates topic written by every commit of the store (`mirrors`).
    committer: Committer,
    mirrors: bool,
    partitions: Vec<i32>,
    /// Its share of the partitions at the last heartbeat: what it owns once their last owners
    /// have handed them over.
    dealt: BTreeSet<i32>,
    owned: BTreeMap<i32, Owned>,
    /// Reads the owned partitions; remade whenever they change.
    source: Option<Source>,
    dead_letters: DeadLetters,
    summary: Summary,
    metrics: Metrics,
    /// It said it owns no partition (said again once it has owned some).
    said_idle: bool,
    /// From its first reading to its last: the summary's rate.
    span: Span,
}

/// Runs a member of a shared group until it is stopped (or, with `--until-end`, until the
/// partitions it owns are read to their end), then commits and hands its partitions back.
pub fn run(settings: &Settings, share: &Share, stop: &Stop, runtime: &Handle) -> anyhow::Result<Summary> {
    let topic = &settings.rules.topic;
    let view = TopicView::look_up(&settings.kafka, topic, stop)?;
    // With --start earliest or time:, the group's rows are rebuilt from there if its rules are
    // not this member's (with its rules, the start says nothing: a member resumes).
    let ranges: Option<BTreeMap<i32, RebuildRange>> = match settings.start {
        Start::Earliest | Start::Time(_) => {
            let from = view.positions(&settings.kafka, &settings.group, &settings.start)?;
            Some(from.iter().map(|(&p, &from)| (p, RebuildRange { from, to: view.watermarks[&p].1 })).collect())
        }
        _ => None,
    };
    let start = settings.start.to_string();
    let membership = Membership {
        group: &settings.group,
        member: &share.member,
        lease: share.lease,
        rules: &settings.rules,
        partitions: &view.partitions,
        rebuild: ranges.as_ref().map(|ranges| Rebuild { start: &start, ranges }),
        runtime,
    };
    let store = share.store.group_store(&membership)?;
    let opening = Opening {
        kafka: &settings.kafka,
        group: &settings.group,
        rules: &settings.rules,
        rebuild: ranges.is_some(),
        stop,
        runtime,
    };
    let mirror = settings.tables.iter().find(|t| t.mirrors()).map(|t| t.mirror(&opening)).transpose()?;
    tracing::info!(
        "member `{}` of group `{}`: sharing the {} partitions of `{topic}`, state in {}{}",
        share.member,
        settings.group,
        view.partitions.len(),
        store.name(),
        mirror.as_ref().map_or(String::new(), |m| format!(", windows also to {}", m.name()))
    );
    let mirrors = mirror.is_some();
    let mut member = Member {
        settings,
        share,
        stop,
        committer: Committer::new(store, mirror),
        mirrors,
        partitions: view.partitions.clone(),
        dealt: BTreeSet::new(),
        owned: BTreeMap::new(),
        source: None,
        dead_letters: DeadLetters::new(&settings.kafka, &settings.dead_letter_topic, runtime.clone()),
        summary: Summary { dead_letter_topic: settings.dead_letter_topic.clone(), ..Summary::default() },
        metrics: Metrics::new(topic, &settings.kafka),
        said_idle: false,
        span: Span::default(),
    };
    let ended = member.follow().and_then(|()| member.leave());
    if ended.is_err() {
        // The others need not wait for its lease to run out to take its partitions over.
        member.committer.settle();
        if let Err(e) = member.committer.store().leave() {
            tracing::debug!("leaving the group after an error: {e:#}");
        }
    }
    member.summary.elapsed = member.span.elapsed();
    ended.map(|()| member.summary)
}

impl Member<'_> {
    fn follow(&mut self) -> anyhow::Result<()> {
        let heartbeat_every = (self.share.lease / 4).max(Duration::from_millis(250));
        let mut next_heartbeat = Instant::now();
        let mut last_commit = Instant::now();
        let mut owned_nothing_since: Option<Instant> = None;
        // Whether to look at the clock and the partitions' ends this turn: not for every
        // message (the clock costs more than the message), but when the topic is quiet, every
        // CLOCK_EVERY readings and when a partition has been read to its end.
        let mut look = true;
        while !self.stop.requested() {
            if look {
                if Instant::now() >= next_heartbeat {
                    self.rebalance()?;
                    next_heartbeat = Instant::now() + heartbeat_every;
                }
                if self.settings.until == Until::End && self.bounded_run_ended(&mut owned_nothing_since)? {
                    return Ok(());
                }
            }
            look = true;
            let Some(source) = &self.source else {
                std::thread::sleep(POLL_TIMEOUT);
                continue;
            };
            // Nothing arrived for a while: the time to commit at once. The end of one partition
            // is not: during a replay the others are still being read, and a commit per
            // partition end would cost more than the reading.
            let idle = match source.poll(POLL_TIMEOUT) {
                None => true,
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(anyhow::Error::new(e).context("reading the topic"));
                }
                Some(Err(e)) => {
                    weather_common::kafka::warn_consuming(&e);
                    true
                }
                Some(Ok(message)) => {
                    let read_to_end = Self::take(&mut self.owned, &mut self.dead_letters, &message)?;
                    self.summary.readings += 1;
                    self.span.read();
                    if !self.summary.readings.is_multiple_of(CLOCK_EVERY) {
                        look = read_to_end;
                        continue;
                    }
                    self.span.taken();
                    self.metrics.read(message.partition(), message.timestamp());
                    false
                }
            };
            if self.committer.ended() {
                self.settle()?;
            }
            self.publish();
            let due = idle || last_commit.elapsed() >= self.settings.checkpoint_interval;
            if due && self.owned.values().any(|o| o.dirty) {
                self.settle()?;
                if self.begin(&BTreeSet::new())? {
                    last_commit = Instant::now();
                }
            }
        }
        Ok(())
    }

    /// With `--until-end`: whether the member is done, its part read ([`part_read`]), or none
    /// dealt or owned for two leases (`owned_nothing_since`).
    fn bounded_run_ended(&mut self, owned_nothing_since: &mut Option<Instant>) -> anyhow::Result<bool> {
        if self.owned.is_empty() && self.dealt.is_empty() {
            let since = *owned_nothing_since.get_or_insert_with(Instant::now);
            if since.elapsed() < 2 * self.share.lease {
                return Ok(false);
            }
            tracing::info!(
                "member `{}` owns no partition after {} s: the other members read all {} (--until-end ends it)",
                self.share.member,
                since.elapsed().as_secs(),
                self.partitions.len()
            );
            return Ok(true);
        }
        *owned_nothing_since = None;
        if !part_read(&self.dealt, &self.owned) {
            return Ok(false);
        }
        self.span.taken();
        // Its share as of now, not as of the last heartbeat: a member that has left since
        // leaves it more to read (the last member to end is dealt every partition).
        self.rebalance()?;
        Ok(part_read(&self.dealt, &self.owned))
    }

    /// Publishes the figures so far to the metrics, and that the loop is alive.
    fn publish(&self) {
        let written = self.summary.windows_written;
        let sent = [("postgres", written), ("topic", written)];
        let sent = &sent[..if self.mirrors { 2 } else { 1 }];
        self.metrics.publish(&self.summary, self.dead_letters.counts(), sent);
        weather_common::metrics::health_of_job().alive();
    }

    /// Takes one message of an owned partition into its windows. True if it was the last
    /// before where a bounded run stops reading the partition.
    fn take(
        owned: &mut BTreeMap<i32, Owned>,
        dead_letters: &mut DeadLetters,
        message: &Record<'_>,
    ) -> anyhow::Result<bool> {
        let (partition, offset) = (message.partition(), message.offset());
        // A partition handed back since it was fetched, or a message read before.
        let Some(part) = owned.get_mut(&partition).filter(|p| offset >= p.next) else { return Ok(false) };
        match Reading::parse(message.payload(), message.key()) {
            Ok(reading) => {
                let known = part.windows.sensor_count();
                let outcome = part.windows.add(&reading);
                if part.windows.sensor_count() > known {
                    part.new_sensors.push(reading.sensor_id.to_string());
                }
                match outcome {
                    Outcome::Counted => {}
                    Outcome::Finished(window) => part.finished.push(window),
                    rejected @ (Outcome::Duplicate | Outcome::Late) => {
                        let (category, reason) = rejected.rejection(&reading).expect("a rejection");
                        dead_letters.keep(message.into(), category, &reason)?;
                    }
                }
            }
            Err(bad) => dead_letters.keep(message.into(), bad.category(), &bad.to_string())?,
        }
        let before_end = part.next < part.end;
        part.next = offset + 1;
        part.dirty = true;
        Ok(before_end && part.next >= part.end)
    }

    /// The heartbeat: the live members, this member's share of the partitions, and the moves to
    /// it: what is no longer its share is committed and handed back, what is and has no live
    /// owner is claimed. The partitions read change with it.
    fn rebalance(&mut self) -> anyhow::Result<()> {
        self.settle()?;
        let owns: BTreeSet<i32> = self.owned.keys().copied().collect();
        let live = self.committer.store().heartbeat()?;
        let share = share_of(&self.share.member, &live, &self.partitions);
        if share.is_empty() && !self.said_idle {
            tracing::info!(
                "member `{}` owns no partition: {} live members share the {} partitions of `{}`; it takes some over \
                 when a member leaves or its lease runs out",
                self.share.member,
                live.len(),
                self.partitions.len(),
                self.settings.rules.topic
            );
        }
        self.said_idle = share.is_empty();
        self.dealt.clone_from(&share);
        let moves = Moves::between(&owns, &share);
        if moves.is_empty() {
            return Ok(());
        }
        let mut changed = false;
        if !moves.release.is_empty() {
            // Until its dead letters are acknowledged, a partition is kept (and offered again at
            // the next heartbeat).
            if self.commit_now(&moves.release)? {
                changed = true;
            }
        }
        let mut claims = Vec::new();
        for &partition in &moves.claim {
            if let Some(claimed) = self.committer.store().claim(partition)? {
                claims.push(claimed);
            }
        }
        if !claims.is_empty() || changed {
            self.reopen(claims)?;
        }
        Ok(())
    }

    /// Reads the owned partitions, the `claimed` ones among them, from where each stands.
    fn reopen(&mut self, claimed: Vec<Claimed>) -> anyhow::Result<()> {
        self.source = None;
        let view = TopicView::look_up(&self.settings.kafka, &self.settings.rules.topic, self.stop)?;
        for claim in claimed {
            let partition = claim.partition;
            let (low, high) = view.watermarks[&partition];
            let start = match claim.next_offset {
                None => low,
                Some(next) if next < low && !self.settings.allow_data_loss => bail!(
                    "partition {partition} of `{}` starts at offset {low} now, but its state is at {next}: retention \
                     deleted readings never aggregated; rerun with --allow-data-loss to skip them",
                    self.settings.rules.topic
                ),
                Some(next) => next.max(low),
            };
            tracing::info!(
                "member `{}`: claimed partition {partition} at epoch {}, from offset {start}",
                self.share.member,
                claim.epoch
            );
            self.metrics.claimed(partition, start);
            self.owned.insert(partition, Owned::new(claim, start, high, self.settings));
        }
        let from: BTreeMap<i32, i64> = self.owned.iter().map(|(&p, o)| (p, o.next)).collect();
        let gone: Vec<i32> = self.partitions.iter().copied().filter(|p| !from.contains_key(p)).collect();
        self.metrics.owns(&from.keys().copied().collect::<Vec<_>>(), &gone);
        let listed: Vec<String> = from.keys().map(i32::to_string).collect();
        tracing::info!("member `{}` reads partitions [{}]", self.share.member, listed.join(", "));
        if !from.is_empty() {
            self.source = Some(Source::open(&self.settings.kafka, &self.settings.group, view, &from)?);
        }
        Ok(())
    }

    /// Commits every owned partition with something to commit and hands `release` back with
    /// it, and waits until that is settled. False if the dead letters are not acknowledged yet
    /// (nothing committed).
    fn commit_now(&mut self, release: &BTreeSet<i32>) -> anyhow::Result<bool> {
        self.settle()?;
        let begun = self.begin(release)?;
        self.settle()?;
        Ok(begun)
    }

    /// Begins a commit of every owned partition with something to commit, handing `release`
    /// back with it; the member reads on meanwhile ([`Member::settle`]). False if the dead
    /// letters are not acknowledged yet (nothing begun).
    fn begin(&mut self, release: &BTreeSet<i32>) -> anyhow::Result<bool> {
        if !self.dead_letters.flush(DEAD_LETTER_FLUSH)? {
            tracing::warn!("dead letters not yet acknowledged; commit postponed");
            return Ok(false);
        }
        let pending: Vec<Pending> = self
            .owned
            .iter_mut()
            .filter(|(p, o)| o.dirty || release.contains(p))
            .map(|(&p, o)| o.pending(p, release.contains(&p)))
            .collect();
        if !pending.is_empty() {
            self.committer.begin(pending)?;
        }
        Ok(true)
    }

    /// Waits for the commit under way, if any, and takes in how it went. Partitions another
    /// member has claimed since they were claimed here are fenced: dropped, with what they held
    /// since their last commit (the new owner reads it again).
    fn settle(&mut self) -> anyhow::Result<()> {
        let Some(settled) = self.committer.settle() else { return Ok(()) };
        let Settled { committed, fenced, swapped, took } = settled?;
        for partition in swapped {
            tracing::info!(
                "member `{}`: partition {partition} has been rebuilt: its sensors' rows are the new rules' now",
                self.share.member
            );
        }
        for lost in &fenced {
            let partition = lost.partition;
            let since = self.owned.remove(&partition).expect("a committed partition is owned");
            self.summary.fenced_writes += 1;
            tracing::warn!(
                "member `{}`: partition {partition} was claimed by another member (its epoch is past {}: this member's \
                 lease ran out); fenced: its {} windows and readings since its last commit are dropped here, the new \
                 owner reads them again",
                self.share.member,
                lost.epoch,
                lost.finished.len() + since.finished.len()
            );
            self.source = None;
        }
        if !committed.is_empty() {
            let offsets: BTreeMap<i32, i64> = committed.iter().map(|p| (p.partition, p.next_offset)).collect();
            self.summary.windows_written += committed.iter().map(|p| p.finished.len() as u64).sum::<u64>();
            self.summary.checkpoints += 1;
            self.publish();
            self.metrics.checkpoint(&self.summary, &offsets, took);
            crate::metrics::commit("postgres", took);
            if let Some(source) = &self.source {
                if let Err(e) = source.commit(&offsets, CommitMode::Async) {
                    tracing::debug!("commit to the consumer group failed: {e}");
                }
            }
            self.summary.offsets.extend(&offsets);
        }
        for p in committed.iter().filter(|p| p.release) {
            if self.owned.remove(&p.partition).is_some() {
                tracing::info!("member `{}`: handed partition {} back", self.share.member, p.partition);
            }
        }
        if self.source.is_none() && !self.owned.is_empty() {
            self.reopen(Vec::new())?;
        }
        Ok(())
    }

    /// The end of a run: everything committed and every partition handed back, then the
    /// heartbeat removed, so that the others take the partitions over at once.
    fn leave(&mut self) -> anyhow::Result<()> {
        let all: BTreeSet<i32> = self.owned.keys().copied().collect();
        if !self.commit_now(&all)? {
            bail!(
                "rejected readings could not be kept aside in `{}`: progress stays at the last commit",
                self.dead_letters.topic()
            );
        }
        self.committer.store().leave().context("leaving the group")?;
        self.summary.rejected = self.dead_letters.counts().clone();
        self.summary.tables = vec![(self.committer.store().name(), self.summary.windows_written)];
        if let Some(mirror) = self.committer.mirror() {
            self.summary.tables.push((mirror.name().to_string(), self.summary.windows_written));
        }
        tracing::info!("member `{}` left group `{}`", self.share.member, self.settings.group);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowSize;

    fn owned(next: i64, end: i64) -> Owned {
        Owned {
            epoch: 1,
            next,
            windows: Windows::new(WindowSize::WEEK),
            new_sensors: Vec::new(),
            finished: Vec::new(),
            dirty: false,
            end,
        }
    }

    /// A bounded member is done once every partition dealt to it is claimed and read to its
    /// end, not before: a partition that its last owner has not handed over yet is still to
    /// read (two members of weather-bench once ended with a partition read by neither).
    #[test]
    fn a_bounded_member_reads_every_partition_dealt_to_it() {
        let dealt = BTreeSet::from([1, 3]);
        let mut mine = BTreeMap::from([(3, owned(500, 500))]);
        assert!(!part_read(&dealt, &mine), "partition 1 is not handed over yet");
        mine.insert(1, owned(200, 400));
        assert!(!part_read(&dealt, &mine), "partition 1 is not read to its end");
        mine.get_mut(&1).unwrap().next = 400;
        assert!(part_read(&dealt, &mine));
        // A partition still owned but no longer dealt to it is handed back at the end.
        assert!(part_read(&BTreeSet::from([1]), &mine));
    }
}
