//! What a member of a shared group needs from the store that keeps the group's state beside the
//! table it writes: heartbeats, claims, commits fenced by epoch, leaving. The PostgreSQL table
//! keeps it ([`crate::sink::postgres::partitions`]); a table reaches it through
//! [`crate::sink::table::TableConfig::group_store`], so the member's loop names no store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::runtime::Handle;
use weather_common::aggregate::{Aggregate, WindowKey};

use crate::rules::Rules;
use crate::window::{WindowSummary, Windows};

/// A member joining its group, as the store needs it.
pub struct Membership<'a> {
    pub group: &'a str,
    pub member: &'a str,
    pub lease: Duration,
    /// What the member computes; the topic read is among them.
    pub rules: &'a Rules,
    /// Every partition of the topic.
    pub partitions: &'a [i32],
    /// With `--start earliest` or `--start time:`: where each partition's rebuild would read,
    /// if the group's rules are not the member's.
    pub rebuild: Option<Rebuild<'a>>,
    pub runtime: &'a Handle,
}

/// What a member would rebuild the group's rows from, if its rules are not the group's.
#[derive(Clone, Copy)]
pub struct Rebuild<'a> {
    /// Where it starts, in words: `the beginning`, or a time.
    pub start: &'a str,
    /// Per partition, what it reads.
    pub ranges: &'a BTreeMap<i32, RebuildRange>,
}

/// A partition's part in a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildRange {
    /// The first offset read; none: the beginning.
    pub from: Option<i64>,
    /// Its end now, which the rebuild reads up to before its rows replace the old ones; at or
    /// before `from` when there is nothing to read (its sensors have no rows under the new
    /// rules: the old ones go at the claim's commit).
    pub to: i64,
}

/// The group's state, as one member sees and changes it. Its methods block.
pub trait GroupStore: Send {
    /// The store in messages, without secrets.
    fn name(&self) -> String;

    /// Records that this member is alive; returns the live members, this one among them. An
    /// error if the group's rules changed under it (another member started a rebuild).
    fn heartbeat(&mut self) -> anyhow::Result<Vec<String>>;

    /// Claims `partition` if nobody owns it, its owner's lease has run out, or this member owned
    /// it: a new epoch, and the state to resume from. None while a live member holds it.
    fn claim(&mut self, partition: i32) -> anyhow::Result<Option<Claimed>>;

    /// Makes `commits` durable in one transaction if every partition still has its epoch;
    /// otherwise nothing, and the partitions claimed by another member since. Their windows go
    /// to `mirror` too, acknowledged before the transaction commits.
    fn commit(
        &mut self,
        commits: &[PartitionCommit<'_>],
        mirror: Option<&mut (dyn Mirror + 'static)>,
    ) -> anyhow::Result<Committed>;

    /// Leaves the group: the others deal its partitions (handed back by its last commit) at
    /// their next heartbeat.
    fn leave(&mut self) -> anyhow::Result<()>;
}

/// A table the members write beside the store, in every commit before the store's transaction
/// ends (the aggregates topic, `--to-topic`): a window is acknowledged there before the state
/// that moves its partition past it is committed, so that the state never counts a window the
/// table lacks. A commit that is fenced sends nothing; one whose member is fenced while it sends
/// (it was paused past its lease) sends the windows the next owner sends again, the same values
/// under the same keys.
pub trait Mirror: Send {
    /// The table in messages.
    fn name(&self) -> &str;

    /// Deletes the windows `gone`, then sends `windows`, each step acknowledged before the
    /// next: the old windows of a rebuilt partition are gone before its new ones appear.
    fn publish(&mut self, gone: &[WindowKey], windows: &[Aggregate]) -> anyhow::Result<()>;
}

/// A partition as a member claimed it.
#[derive(Debug)]
pub struct Claimed {
    pub partition: i32,
    /// The epoch the claim gave it: every later write of this member for it names it.
    pub epoch: i64,
    /// Where it stands; none if no member has committed it yet.
    pub next_offset: Option<i64>,
    /// Its sensors' open windows at that offset.
    pub windows: Option<Windows>,
}

/// What one partition makes durable in a commit.
pub struct PartitionCommit<'a> {
    pub partition: i32,
    pub epoch: i64,
    pub next_offset: i64,
    pub windows: &'a Windows,
    /// Its windows finished since the last commit.
    pub finished: &'a [WindowSummary],
    /// Sensors first seen in it since the last commit.
    pub new_sensors: &'a [String],
    /// Handed back with this commit.
    pub release: bool,
}

/// How a commit went.
#[derive(Debug, PartialEq)]
pub enum Committed {
    /// Written; the rebuilt partitions among them that caught up and replaced their old rows.
    Done { swapped: Vec<i32> },
    /// Nothing written: these partitions have been claimed by another member since.
    Fenced(BTreeSet<i32>),
}
