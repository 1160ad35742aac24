//! The state of a shared output (`--share`): the members of a consumer group share the topic's
//! partitions, and each partition's state lives here, beside the table, where any member can
//! take it over. Ownership does not depend on the broker's group coordinator (Tansu's does not
//! recover from a dead member: docs/tansu): it is a lease kept in PostgreSQL, the same store
//! that fences the state, and the member reads its partitions with `assign`.
//!
//! - A member is alive while its heartbeat in `T_members` is younger than the lease; every
//!   member deals the partitions among the live members the same way
//!   ([`crate::share::assignment`]).
//! - A member claims a partition that nobody owns, that a dead member owned, or that it owned
//!   itself: the claim bumps the partition's epoch and returns its state (next offset, open
//!   windows). A live owner hands a partition back (owner NULL) in the commit that makes its
//!   last rows durable, so the next owner resumes exactly there.
//! - Every commit is one transaction: the rows of the windows finished since the last one, and
//!   per partition its next offset and open windows, written only if the partition still has
//!   the epoch this member claimed it at. A member whose partition was claimed by another (it
//!   was paused past its lease, say) has its commit refused whole; it drops that partition's
//!   pending rows and state and goes on with the others. PostgreSQL's clock is the only one
//!   that decides a lease: members on other machines need no synchronised clocks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::runtime::Handle;
use tokio_postgres::Client;

use super::ahead::COPY_PIECE;
use super::connect::connect;
use super::schema::{self, copy_row, SHARED_TABLES, TABLES, WINDOWS};
use super::target::PostgresTarget;
use super::{lock_key, LOCK_CLASS};
use crate::units::Unit;
use crate::window::{WindowSize, WindowSummary, Windows};

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

/// A member's view of a shared output's state.
pub struct PartitionStore {
    target: PostgresTarget,
    runtime: Handle,
    client: Client,
    group: String,
    topic: String,
    member: String,
    lease: Duration,
    window: WindowSize,
    unit: Unit,
}

impl PartitionStore {
    /// Connects, creates the tables that are missing, takes the rule set's lock together with
    /// the group's other members, records the group's rules (or checks them against those
    /// recorded), and makes a row for every partition of `partitions` that has none.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        target: &PostgresTarget,
        group: &str,
        topic: &str,
        member: &str,
        lease: Duration,
        (window, unit): (WindowSize, Unit),
        partitions: &[i32],
        runtime: Handle,
    ) -> anyhow::Result<PartitionStore> {
        let client = runtime.block_on(connect(target, Instant::now() + target.connect_timeout))?;
        let store = PartitionStore {
            target: target.clone(),
            runtime,
            client,
            group: group.to_string(),
            topic: topic.to_string(),
            member: member.to_string(),
            lease,
            window,
            unit,
        };
        store.runtime.block_on(store.prepare(partitions))?;
        Ok(store)
    }

    /// Connects to look at the group only (`status`): nothing is created, locked or claimed.
    pub fn inspect(
        target: &PostgresTarget,
        group: &str,
        topic: &str,
        runtime: Handle,
    ) -> anyhow::Result<PartitionStore> {
        let client = runtime.block_on(connect(target, Instant::now() + target.connect_timeout))?;
        Ok(PartitionStore {
            target: target.clone(),
            runtime,
            client,
            group: group.to_string(),
            topic: topic.to_string(),
            member: String::new(),
            lease: Duration::ZERO,
            window: WindowSize::MONTH,
            unit: Unit::Celsius,
        })
    }

    fn t(&self) -> &str {
        &self.target.table
    }

    /// The table in messages, without secrets.
    pub fn name(&self) -> String {
        self.target.name()
    }

    async fn prepare(&self, partitions: &[i32]) -> anyhow::Result<()> {
        let t = self.t();
        let tables: Vec<_> = TABLES.iter().chain(SHARED_TABLES.iter()).copied().collect();
        schema::ensure(&self.client, t, &self.target.address, &tables).await?;
        let key = lock_key(t, self.window, self.unit);
        let locked: bool = self
            .client
            .query_one("SELECT pg_try_advisory_lock_shared($1, $2)", &[&LOCK_CLASS, &key])
            .await
            .context("taking the table's advisory lock")?
            .get(0);
        if !locked {
            bail!(
                "a consumer that is not a member of group `{}` is writing {}-day windows in {} to {}: stop it first, \
                 or give this group another --postgres-table",
                self.group,
                self.window.get(),
                self.unit.name(),
                self.name()
            );
        }
        let (days, unit) = (self.window.get() as i32, self.unit.name());
        self.client
            .execute(
                &format!(
                    "INSERT INTO {t}_state (consumer_group, topic, window_days, unit, rebuilding, ended_with_partial, \
                     commits, open_windows) VALUES ($1, $2, $3, $4, false, false, 0, NULL) ON CONFLICT DO NOTHING"
                ),
                &[&self.group, &self.topic, &days, &unit],
            )
            .await
            .with_context(|| format!("recording the rules of group `{}` in {t}_state", self.group))?;
        let recorded = self
            .client
            .query_one(
                &format!("SELECT window_days, unit FROM {t}_state WHERE consumer_group = $1 AND topic = $2"),
                &[&self.group, &self.topic],
            )
            .await
            .with_context(|| format!("reading {t}_state"))?;
        let (recorded_days, recorded_unit): (i32, String) = (recorded.get(0), recorded.get(1));
        if (recorded_days, recorded_unit.as_str()) != (days, unit) {
            bail!(
                "group `{}` writes {recorded_days}-day windows in {recorded_unit} to {}, not this member's {days}-day \
                 windows in {unit}: the members of a group share one rule set; give this one another --group",
                self.group,
                self.name()
            );
        }
        self.client
            .execute(
                &format!(
                    "INSERT INTO {t}_partitions (consumer_group, topic, partition, epoch, owner, next_offset, \
                     open_windows, commits) SELECT $1, $2, p, 0, NULL, NULL, NULL, 0 FROM unnest($3::integer[]) AS p \
                     ON CONFLICT DO NOTHING"
                ),
                &[&self.group, &self.topic, &partitions],
            )
            .await
            .with_context(|| format!("recording the partitions of `{}` in {t}_partitions", self.topic))?;
        Ok(())
    }

    /// Records that this member is alive; returns the live members, this one among them.
    /// Members dead for a long while are forgotten.
    pub fn heartbeat(&self) -> anyhow::Result<Vec<String>> {
        let t = self.t();
        let lease = self.lease.as_secs_f64();
        self.runtime
            .block_on(async {
                self.client
                    .execute(
                        &format!(
                            "INSERT INTO {t}_members (consumer_group, topic, member, seen) \
                             VALUES ($1, $2, $3, now()) ON CONFLICT (consumer_group, topic, member) \
                             DO UPDATE SET seen = now()"
                        ),
                        &[&self.group, &self.topic, &self.member],
                    )
                    .await?;
                self.client
                    .execute(
                        &format!(
                            "DELETE FROM {t}_members WHERE consumer_group = $1 AND topic = $2 \
                             AND seen < now() - make_interval(secs => $3::float8 * 100)"
                        ),
                        &[&self.group, &self.topic, &lease],
                    )
                    .await?;
                let rows = self
                    .client
                    .query(
                        &format!(
                            "SELECT member FROM {t}_members WHERE consumer_group = $1 AND topic = $2 \
                             AND seen > now() - make_interval(secs => $3::float8) ORDER BY member"
                        ),
                        &[&self.group, &self.topic, &lease],
                    )
                    .await?;
                Ok::<_, tokio_postgres::Error>(rows.iter().map(|r| r.get(0)).collect())
            })
            .with_context(|| format!("sending the heartbeat of member `{}` to {t}_members", self.member))
    }

    /// Claims `partition` if nobody owns it, its owner's lease has run out, or this member owned
    /// it: a new epoch, and the state to resume from. None while a live member owns it.
    pub fn claim(&self, partition: i32) -> anyhow::Result<Option<Claimed>> {
        let t = self.t();
        let lease = self.lease.as_secs_f64();
        let row = self
            .runtime
            .block_on(self.client.query_opt(
                &format!(
                    "UPDATE {t}_partitions p SET owner = $3, epoch = p.epoch + 1 \
                     WHERE p.consumer_group = $1 AND p.topic = $2 AND p.partition = $4 \
                     AND (p.owner IS NULL OR p.owner = $3 OR NOT EXISTS (SELECT 1 FROM {t}_members m \
                       WHERE m.consumer_group = $1 AND m.topic = $2 AND m.member = p.owner \
                       AND m.seen > now() - make_interval(secs => $5::float8))) \
                     RETURNING p.epoch, p.next_offset, p.open_windows"
                ),
                &[&self.group, &self.topic, &self.member, &partition, &lease],
            ))
            .with_context(|| format!("claiming partition {partition} in {t}_partitions"))?;
        let Some(row) = row else { return Ok(None) };
        let windows: Option<String> = row.get(2);
        let windows = match windows {
            Some(json) => Some(serde_json::from_str(&json).with_context(|| {
                format!("{t}_partitions holds damaged open windows for partition {partition} of group `{}`", self.group)
            })?),
            None => None,
        };
        Ok(Some(Claimed { partition, epoch: row.get(0), next_offset: row.get(1), windows }))
    }

    /// Makes `commits` durable in one transaction, if this member still holds every one of
    /// their partitions at its epoch. Otherwise nothing is written, and the partitions that
    /// another member has claimed since are returned: fenced.
    pub fn commit(&self, commits: &[PartitionCommit<'_>]) -> anyhow::Result<BTreeSet<i32>> {
        self.runtime
            .block_on(self.transact(commits))
            .with_context(|| format!("committing to {} as member `{}`", self.name(), self.member))
    }

    async fn transact(&self, commits: &[PartitionCommit<'_>]) -> anyhow::Result<BTreeSet<i32>> {
        self.client.batch_execute("BEGIN").await?;
        let result = self.write(commits).await;
        if !matches!(&result, Ok(fenced) if fenced.is_empty()) {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return result;
        }
        self.client.batch_execute("COMMIT").await?;
        result
    }

    async fn write(&self, commits: &[PartitionCommit<'_>]) -> anyhow::Result<BTreeSet<i32>> {
        let t = self.t();
        let client = &self.client;
        let partitions: Vec<i32> = commits.iter().map(|c| c.partition).collect();
        let epochs: Vec<i64> = commits.iter().map(|c| c.epoch).collect();
        let offsets: Vec<i64> = commits.iter().map(|c| c.next_offset).collect();
        let windows: Vec<String> =
            commits.iter().map(|c| serde_json::to_string(c.windows).expect("windows always serialize")).collect();
        let releases: Vec<bool> = commits.iter().map(|c| c.release).collect();
        // First, as it locks the rows: a claim made meanwhile waits for this transaction and
        // then resumes from what it wrote. The epoch alone decides: every claim bumps it, even
        // by a member of the same name (a restart while the old process still runs).
        let written: BTreeSet<i32> = client
            .query(
                &format!(
                    "UPDATE {t}_partitions p SET next_offset = u.o, open_windows = u.w, commits = p.commits + 1, \
                     owner = CASE WHEN u.r THEN NULL ELSE p.owner END \
                     FROM unnest($3::integer[], $4::bigint[], $5::bigint[], $6::text[], $7::boolean[]) AS u(p, e, o, w, r) \
                     WHERE p.consumer_group = $1 AND p.topic = $2 AND p.partition = u.p AND p.epoch = u.e \
                     RETURNING p.partition"
                ),
                &[&self.group, &self.topic, &partitions, &epochs, &offsets, &windows, &releases],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let fenced: BTreeSet<i32> = partitions.iter().copied().filter(|p| !written.contains(p)).collect();
        if !fenced.is_empty() {
            return Ok(fenced);
        }
        self.check_sensors(commits).await?;
        if commits.iter().any(|c| !c.finished.is_empty()) {
            let copy = client.copy_in(&format!("COPY {t} ({}) FROM STDIN", WINDOWS.column_list())).await?;
            futures_util::pin_mut!(copy);
            let mut rows = Vec::new();
            for window in commits.iter().flat_map(|c| c.finished) {
                copy_row(&mut rows, window, self.window, self.unit);
                if rows.len() >= COPY_PIECE {
                    copy.send(Bytes::from(std::mem::take(&mut rows))).await?;
                }
            }
            copy.send(Bytes::from(rows)).await?;
            copy.finish().await?;
        }
        Ok(BTreeSet::new())
    }

    /// Records the partition of each new sensor; a sensor already seen in another partition
    /// means the topic's keys do not keep a sensor to one partition: its windows would be
    /// computed in two places, from half the readings each. Refused, with the sensor named.
    async fn check_sensors(&self, commits: &[PartitionCommit<'_>]) -> anyhow::Result<()> {
        let (sensors, partitions): (Vec<&str>, Vec<i32>) =
            commits.iter().flat_map(|c| c.new_sensors.iter().map(|s| (s.as_str(), c.partition))).unzip();
        if sensors.is_empty() {
            return Ok(());
        }
        let t = self.t();
        self.client
            .execute(
                &format!(
                    "INSERT INTO {t}_sensors (consumer_group, topic, sensor_id, partition) \
                     SELECT $1, $2, s, p FROM unnest($3::text[], $4::integer[]) AS u(s, p) ON CONFLICT DO NOTHING"
                ),
                &[&self.group, &self.topic, &sensors, &partitions],
            )
            .await?;
        let split = self
            .client
            .query_opt(
                &format!(
                    "SELECT s.sensor_id, s.partition, u.p FROM {t}_sensors s \
                     JOIN unnest($3::text[], $4::integer[]) AS u(s, p) ON s.sensor_id = u.s \
                     WHERE s.consumer_group = $1 AND s.topic = $2 AND s.partition <> u.p LIMIT 1"
                ),
                &[&self.group, &self.topic, &sensors, &partitions],
            )
            .await?;
        if let Some(row) = split {
            let (sensor, first, second): (String, i32, i32) = (row.get(0), row.get(1), row.get(2));
            bail!(
                "sensor {sensor} has readings in partitions {first} and {second} of `{}`: the members of a group \
                 aggregate a sensor where its partition is read, so its readings must all carry its key (the \
                 producer's do); nothing of this commit was written",
                self.topic
            );
        }
        Ok(())
    }

    /// Leaves the group: the member's heartbeat is removed, so that the others deal its
    /// partitions (handed back by its last commit) at their next heartbeat.
    pub fn leave(&self) -> anyhow::Result<()> {
        let t = self.t();
        self.runtime
            .block_on(self.client.execute(
                &format!("DELETE FROM {t}_members WHERE consumer_group = $1 AND topic = $2 AND member = $3"),
                &[&self.group, &self.topic, &self.member],
            ))
            .with_context(|| format!("leaving group `{}` in {t}_members", self.group))?;
        Ok(())
    }
}

/// A shared output's partitions and members, for `status`.
pub struct GroupView {
    /// Per partition: owner, epoch, next offset.
    pub partitions: BTreeMap<i32, (Option<String>, i64, Option<i64>)>,
    /// Per member: seconds since its heartbeat, and the partitions it owns.
    pub members: Vec<(String, f64, Vec<i32>)>,
}

impl PartitionStore {
    /// How the group stands now.
    pub fn view(&self) -> anyhow::Result<GroupView> {
        let t = self.t();
        let exists: bool = self
            .runtime
            .block_on(self.client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("{t}_partitions")]))
            .with_context(|| format!("looking up {t}_partitions"))?
            .get(0);
        if !exists {
            bail!(
                "{} keeps no shared group's state (there is no {t}_partitions): a group shares partitions only when \
                 its members run with --share; for another group, leave out --to-postgres",
                self.name()
            );
        }
        self.runtime
            .block_on(async {
                let partitions = self
                    .client
                    .query(
                        &format!(
                            "SELECT partition, owner, epoch, next_offset FROM {t}_partitions \
                             WHERE consumer_group = $1 AND topic = $2 ORDER BY partition"
                        ),
                        &[&self.group, &self.topic],
                    )
                    .await?
                    .iter()
                    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
                    .collect();
                let members = self
                    .client
                    .query(
                        &format!(
                            "SELECT m.member, extract(epoch FROM now() - m.seen)::float8, \
                             array(SELECT p.partition FROM {t}_partitions p WHERE p.consumer_group = $1 \
                               AND p.topic = $2 AND p.owner = m.member ORDER BY p.partition) \
                             FROM {t}_members m WHERE m.consumer_group = $1 AND m.topic = $2 ORDER BY m.member"
                        ),
                        &[&self.group, &self.topic],
                    )
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect();
                Ok::<_, tokio_postgres::Error>(GroupView { partitions, members })
            })
            .with_context(|| format!("reading group `{}` from {t}_partitions and {t}_members", self.group))
    }
}
