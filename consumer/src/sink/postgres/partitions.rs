//! The state of a shared output (`--share`): the members of a consumer group share the topic's
//! partitions, and each partition's state lives here, beside the table, where any member can
//! take it over. Ownership does not depend on the broker's group coordinator (Tansu's does not
//! recover from a dead member: docs/tansu): it is a lease kept in PostgreSQL, the same store
//! that fences the state, and the member reads its partitions with `assign`.
//!
//! - A member is alive while its heartbeat in `T_members` is younger than the lease; every
//!   member deals the partitions among the live members the same way
//!   ([`weather_common::share`]).
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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::runtime::Handle;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use weather_common::aggregate::{Aggregate, WindowKey};
use weather_common::heartbeat::Beater;

use super::ahead::COPY_PIECE;
use super::connect::{connect, connection_lost};
use super::schema::{self, copy_row, SHARED_TABLES, TABLES, WINDOWS};
use super::target::PostgresTarget;
use super::{lock_key, LOCK_CLASS};
use crate::share::store::{Claimed, Committed, GroupStore, Membership, Mirror, PartitionCommit, Rebuild};
use crate::units::{Tenths, Unit};
use crate::window::{WindowSize, WindowSummary};

/// Connects as a member: a transaction the member leaves open (it was paused, its machine
/// froze) is ended by the server after a lease, so that it holds no partition's row, and no
/// claim waits for it, for longer than that.
async fn member_session(target: &PostgresTarget, lease: Duration) -> anyhow::Result<Client> {
    let client = connect(target, Instant::now() + target.connect_timeout).await?;
    client
        .batch_execute(&format!("SET idle_in_transaction_session_timeout = {}", lease.as_millis()))
        .await
        .context("setting the session's idle-in-transaction timeout")?;
    Ok(client)
}

/// A partition's rebuild, as its row says.
struct Rebuilding {
    /// The offset it rebuilds to; none when it is not being rebuilt.
    until: Option<i64>,
    /// The rule set whose rows its rebuilt rows replace.
    replaces: (Option<i32>, Option<String>),
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
    /// Keeps this member's heartbeat up on a connection of its own, from its first heartbeat
    /// on, while the loop waits for a commit or makes a consumer anew.
    beater: Option<Beater>,
}

impl PartitionStore {
    /// Connects, creates the tables that are missing, takes the rule set's lock together with
    /// the group's other members, records the group's rules (or checks them against those
    /// recorded), and makes a row for every partition that has none. With a `rebuild`, rules
    /// other than the group's start a rebuild of its rows under this member's rules.
    pub fn open(target: &PostgresTarget, membership: &Membership<'_>) -> anyhow::Result<PartitionStore> {
        let runtime = membership.runtime.clone();
        let client = runtime.block_on(member_session(target, membership.lease))?;
        let (window, unit) = (membership.rules.window, membership.rules.unit);
        let store = PartitionStore {
            target: target.clone(),
            runtime,
            client,
            group: membership.group.to_string(),
            topic: membership.rules.topic.clone(),
            member: membership.member.to_string(),
            lease: membership.lease,
            window,
            unit,
            beater: None,
        };
        store.runtime.block_on(store.prepare(membership.partitions, membership.rebuild))?;
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
            beater: None,
        })
    }

    fn t(&self) -> &str {
        &self.target.table
    }

    /// The thread that keeps this member's heartbeat up between the loop's, on a session of
    /// its own (made again after a failure).
    fn start_beating(&self) -> Beater {
        let (target, runtime, lease) = (self.target.clone(), self.runtime.clone(), self.lease);
        let key = (self.group.clone(), self.topic.clone(), self.member.clone());
        let seen = format!(
            "UPDATE {}_members SET seen = now() WHERE consumer_group = $1 AND topic = $2 AND member = $3",
            self.t()
        );
        let mut session: Option<Client> = None;
        Beater::start(&self.member, lease, move |_| {
            runtime.block_on(async {
                let client = match session.take() {
                    Some(client) => client,
                    None => member_session(&target, lease).await?,
                };
                client.execute(&seen, &[&key.0, &key.1, &key.2]).await?;
                session = Some(client);
                Ok::<_, anyhow::Error>(())
            })
        })
    }

    async fn prepare(&self, partitions: &[i32], rebuild: Option<Rebuild<'_>>) -> anyhow::Result<()> {
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
        self.client.batch_execute("BEGIN").await.context("starting to join the group")?;
        let joined = self.join_rules(partitions, rebuild).await;
        let end = if joined.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.client.batch_execute(end).await.context("joining the group")?;
        if let Some((days, unit)) = joined? {
            tracing::info!(
                "member `{}` started rebuilding group `{}`: {}-day windows in {} from {} of `{}`; each \
                 partition's rows replace its sensors' {days}-day windows in {unit} once it has caught up",
                self.member,
                self.group,
                self.window.get(),
                self.unit.name(),
                rebuild.map_or("the beginning", |r| r.start),
                self.topic
            );
        }
        Ok(())
    }

    /// In the transaction that joins: the group's rules recorded or checked, its partitions
    /// recorded, and, if the rules differ and a `rebuild` is given, a rebuild started: every
    /// partition from its start in `rebuild` at a new epoch (which fences the members of the
    /// old rules), its rows into the staging table until it reaches its end there (a partition
    /// with nothing to read from its start reaches it at its first commit, which its claim
    /// makes at once: its sensors' old rows go then). The rule set replaced, if a rebuild
    /// started.
    async fn join_rules(
        &self,
        partitions: &[i32],
        rebuild: Option<Rebuild<'_>>,
    ) -> anyhow::Result<Option<(i32, String)>> {
        let t = self.t();
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
                &format!("SELECT window_days, unit FROM {t}_state WHERE consumer_group = $1 AND topic = $2 FOR UPDATE"),
                &[&self.group, &self.topic],
            )
            .await
            .with_context(|| format!("reading {t}_state"))?;
        let (old_days, old_unit): (i32, String) = (recorded.get(0), recorded.get(1));
        self.client
            .execute(
                &format!(
                    "INSERT INTO {t}_partitions (consumer_group, topic, partition, window_days, unit, epoch, owner, \
                     next_offset, open_windows, commits) \
                     SELECT $1, $2, p, $4, $5, 0, NULL, NULL, NULL, 0 FROM unnest($3::integer[]) AS p \
                     ON CONFLICT DO NOTHING"
                ),
                &[&self.group, &self.topic, &partitions, &old_days, &old_unit],
            )
            .await
            .with_context(|| format!("recording the partitions of `{}` in {t}_partitions", self.topic))?;
        if (old_days, old_unit.as_str()) == (days, unit) {
            if let Some(rebuild) = rebuild {
                // A supervisor restarts a member with the command line that started the rebuild.
                tracing::info!(
                    "group `{}` computes these rules already: a start at {} rebuilds it only under other rules; \
                     member `{}` resumes from its partitions' state",
                    self.group,
                    rebuild.start,
                    self.member
                );
            }
            return Ok(None);
        }
        let Some(rebuild) = rebuild else {
            bail!(
                "group `{}` writes {old_days}-day windows in {old_unit} to {}, not this member's {days}-day windows in \
                 {unit}: the members of a group share one rule set. To rebuild the group's rows under these rules, \
                 start it with --start earliest (or --start time:, from that time on; its members of the old rules \
                 then stop); or give it another --group",
                self.group,
                self.name()
            );
        };
        let under_way: i64 = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {t}_partitions WHERE consumer_group = $1 AND topic = $2 \
                     AND rebuild_until IS NOT NULL"
                ),
                &[&self.group, &self.topic],
            )
            .await?
            .get(0);
        if under_way > 0 {
            bail!(
                "a rebuild of group `{}` to {old_days}-day windows in {old_unit} is under way ({under_way} partitions \
                 not caught up yet): let its members finish it before another, or give this one another --group",
                self.group
            );
        }
        let parts: Vec<i32> = rebuild.ranges.keys().copied().collect();
        let froms: Vec<Option<i64>> = rebuild.ranges.values().map(|r| r.from).collect();
        let ends: Vec<i64> = rebuild.ranges.values().map(|r| r.to).collect();
        let group_topic: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&self.group, &self.topic];
        self.client
            .execute(
                &format!("UPDATE {t}_state SET window_days = $3, unit = $4 WHERE consumer_group = $1 AND topic = $2"),
                &[group_topic[0], group_topic[1], &days, &unit],
            )
            .await?;
        self.client
            .execute(
                &format!(
                    "UPDATE {t}_partitions p SET epoch = p.epoch + 1, owner = NULL, next_offset = u.f, \
                     open_windows = NULL, rebuild_until = u.e, replaces_days = $5, replaces_unit = $6, \
                     window_days = $7, unit = $8 FROM unnest($3::integer[], $4::bigint[], $9::bigint[]) AS u(p, e, f) \
                     WHERE p.consumer_group = $1 AND p.topic = $2 AND p.partition = u.p"
                ),
                &[group_topic[0], group_topic[1], &parts, &ends, &old_days, &old_unit, &days, &unit, &froms],
            )
            .await?;
        // The sensors stay recorded with their partitions: a sensor without a reading from the
        // rebuild's start on still has old rows, and they go with its partition's.
        self.client
            .execute(&format!("DELETE FROM {t}_staging WHERE window_days = $1 AND unit = $2"), &[&days, &unit])
            .await?;
        Ok(Some((old_days, old_unit)))
    }

    fn send_heartbeat(&self) -> anyhow::Result<Vec<String>> {
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
                let rules = self
                    .client
                    .query_opt(
                        &format!("SELECT window_days, unit FROM {t}_state WHERE consumer_group = $1 AND topic = $2"),
                        &[&self.group, &self.topic],
                    )
                    .await?
                    .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)));
                Ok::<_, tokio_postgres::Error>((rows.iter().map(|r| r.get(0)).collect::<Vec<String>>(), rules))
            })
            .with_context(|| format!("sending the heartbeat of member `{}` to {t}_members", self.member))
            .and_then(|(members, rules)| {
                let mine = (self.window.get() as i32, self.unit.name().to_string());
                match rules {
                    Some(rules) if rules != mine => bail!(
                        "group `{}` computes {}-day windows in {} now (a member started a rebuild under those \
                         rules), not this member's {}-day windows in {}: this member stops; start it with the \
                         group's rules",
                        self.group,
                        rules.0,
                        rules.1,
                        mine.0,
                        mine.1
                    ),
                    _ => Ok(members),
                }
            })
    }

    fn try_claim(&self, partition: i32) -> anyhow::Result<Option<Claimed>> {
        let t = self.t();
        // A member of other rules than the partition's (the group was rebuilt under new ones
        // since its last heartbeat) never claims it: the check is on the row it updates.
        let (days, unit) = (self.window.get() as i32, self.unit.name());
        let lease = self.lease.as_secs_f64();
        let claimed = self.runtime.block_on(async {
            self.client.batch_execute("BEGIN").await?;
            let wait = format!("SET LOCAL lock_timeout = {}", self.lease.as_millis());
            let row = match self.client.batch_execute(&wait).await {
                Ok(()) => {
                    self.client
                        .query_opt(
                            &format!(
                                "UPDATE {t}_partitions p SET owner = $3, epoch = p.epoch + 1 \
                                 WHERE p.consumer_group = $1 AND p.topic = $2 AND p.partition = $4 \
                                 AND p.window_days = $6 AND p.unit = $7 \
                                 AND (p.owner IS NULL OR p.owner = $3 OR NOT EXISTS (SELECT 1 FROM {t}_members m \
                                   WHERE m.consumer_group = $1 AND m.topic = $2 AND m.member = p.owner \
                                   AND m.seen > now() - make_interval(secs => $5::float8))) \
                                 RETURNING p.epoch, p.next_offset, p.open_windows"
                            ),
                            &[&self.group, &self.topic, &self.member, &partition, &lease, &days, &unit],
                        )
                        .await
                }
                Err(e) => Err(e),
            };
            let end = if row.is_ok() { "COMMIT" } else { "ROLLBACK" };
            self.client.batch_execute(end).await?;
            row
        });
        let row = match claimed {
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                tracing::info!(
                    "member `{}`: partition {partition} is held by a commit that does not end; later",
                    self.member
                );
                return Ok(None);
            }
            other => other.with_context(|| format!("claiming partition {partition} in {t}_partitions"))?,
        };
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

    /// Runs `step`, and once more after reconnecting if the connection was lost (for steps that
    /// change nothing, or whose change is safe to make twice).
    fn reconnecting<T>(&mut self, step: impl Fn(&Self) -> anyhow::Result<T>) -> anyhow::Result<T> {
        match step(self) {
            Err(e) if e.downcast_ref::<tokio_postgres::Error>().is_some_and(|e| connection_lost(&self.client, e)) => {
                tracing::warn!(
                    "member `{}`: lost the connection to {} ({e:#}); reconnecting",
                    self.member,
                    self.name()
                );
                self.client = self.runtime.block_on(member_session(&self.target, self.lease))?;
                step(self)
            }
            other => other,
        }
    }

    /// After a lost connection: whether `commits` had landed (every partition at its epoch and
    /// next offset), were fenced (an epoch moved), or neither (None: to be made again).
    async fn landed(&self, commits: &[PartitionCommit<'_>]) -> anyhow::Result<Option<Committed>> {
        let t = self.t();
        let partitions: Vec<i32> = commits.iter().map(|c| c.partition).collect();
        let rows: BTreeMap<i32, (i64, Option<i64>)> = self
            .client
            .query(
                &format!(
                    "SELECT partition, epoch, next_offset FROM {t}_partitions \
                     WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3)"
                ),
                &[&self.group, &self.topic, &partitions],
            )
            .await
            .with_context(|| format!("reading {t}_partitions after reconnecting"))?
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        let fenced: BTreeSet<i32> = commits
            .iter()
            .filter(|c| rows.get(&c.partition).is_none_or(|r| r.0 != c.epoch))
            .map(|c| c.partition)
            .collect();
        if !fenced.is_empty() {
            return Ok(Some(Committed::Fenced(fenced)));
        }
        let at = |c: &PartitionCommit<'_>| rows[&c.partition].1 == Some(c.next_offset);
        Ok(commits.iter().all(at).then(|| {
            tracing::info!("member `{}`: the last commit had landed", self.member);
            Committed::Done { swapped: Vec::new() }
        }))
    }

    async fn transact(
        &self,
        commits: &[PartitionCommit<'_>],
        mirror: Option<&mut (dyn Mirror + 'static)>,
    ) -> anyhow::Result<Committed> {
        self.client.batch_execute("BEGIN").await?;
        let result = self.write(commits, mirror).await;
        if !matches!(&result, Ok(Committed::Done { .. })) {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return result;
        }
        self.client.batch_execute("COMMIT").await?;
        result
    }

    async fn write(
        &self,
        commits: &[PartitionCommit<'_>],
        mirror: Option<&mut (dyn Mirror + 'static)>,
    ) -> anyhow::Result<Committed> {
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
        let written: BTreeMap<i32, Rebuilding> = client
            .query(
                &format!(
                    "UPDATE {t}_partitions p SET next_offset = u.o, open_windows = u.w, commits = p.commits + 1, \
                     owner = CASE WHEN u.r THEN NULL ELSE p.owner END \
                     FROM unnest($3::integer[], $4::bigint[], $5::bigint[], $6::text[], $7::boolean[]) AS u(p, e, o, w, r) \
                     WHERE p.consumer_group = $1 AND p.topic = $2 AND p.partition = u.p AND p.epoch = u.e \
                     RETURNING p.partition, p.rebuild_until, p.replaces_days, p.replaces_unit"
                ),
                &[&self.group, &self.topic, &partitions, &epochs, &offsets, &windows, &releases],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), Rebuilding { until: r.get(1), replaces: (r.get(2), r.get(3)) }))
            .collect();
        let fenced: BTreeSet<i32> = partitions.iter().copied().filter(|p| !written.contains_key(p)).collect();
        if !fenced.is_empty() {
            return Ok(Committed::Fenced(fenced));
        }
        self.check_sensors(commits).await?;
        let (staged, settled): (Vec<_>, Vec<_>) = commits.iter().partition(|c| written[&c.partition].until.is_some());
        self.copy(t, settled.iter().flat_map(|c| c.finished)).await?;
        self.copy(&format!("{t}_staging"), staged.iter().flat_map(|c| c.finished)).await?;
        let mut swapped = Vec::new();
        let (mut gone, mut rebuilt) = (Vec::new(), Vec::new());
        for c in staged {
            let rebuild = &written[&c.partition];
            if rebuild.until.is_some_and(|until| c.next_offset >= until) {
                let (old, new) = self.swap(c.partition, &rebuild.replaces).await?;
                gone.extend(old);
                rebuilt.extend(new);
                swapped.push(c.partition);
            }
        }
        // Last, while this transaction holds every partition's row at its epoch: no claim (nor
        // a rebuild's start) can move one on until the windows are acknowledged and committed.
        if let Some(mirror) = mirror {
            let mut windows: Vec<Aggregate> =
                settled.iter().flat_map(|c| c.finished).map(|w| w.aggregate(self.window, self.unit)).collect();
            windows.extend(rebuilt);
            // A key the new rules write again (same window length) is overwritten, not deleted.
            let written: HashSet<&WindowKey> = windows.iter().map(|a| &a.key).collect();
            gone.retain(|key| !written.contains(key));
            mirror.publish(&gone, &windows).with_context(|| format!("publishing to {}", mirror.name()))?;
        }
        Ok(Committed::Done { swapped })
    }

    /// COPYs `windows` into `table`, in pieces.
    async fn copy(&self, table: &str, windows: impl Iterator<Item = &WindowSummary>) -> anyhow::Result<()> {
        let mut windows = windows.peekable();
        if windows.peek().is_none() {
            return Ok(());
        }
        let copy = self.client.copy_in(&format!("COPY {table} ({}) FROM STDIN", WINDOWS.column_list())).await?;
        futures_util::pin_mut!(copy);
        let mut rows = Vec::new();
        for window in windows {
            copy_row(&mut rows, window, self.window, self.unit);
            if rows.len() >= COPY_PIECE {
                copy.send(Bytes::from(std::mem::take(&mut rows))).await?;
            }
        }
        copy.send(Bytes::from(rows)).await?;
        copy.finish().await?;
        Ok(())
    }

    /// A rebuilt partition has caught up: its sensors' rows of the rules it replaces give way
    /// to its rebuilt rows, in this commit's transaction, so that a reader sees each sensor's
    /// old rows or its new ones, never both. The windows deleted and those now in the table,
    /// for the aggregates topic.
    async fn swap(
        &self,
        partition: i32,
        (days, unit): &(Option<i32>, Option<String>),
    ) -> anyhow::Result<(Vec<WindowKey>, Vec<Aggregate>)> {
        let t = self.t();
        let (new_days, new_unit) = (self.window.get() as i32, self.unit.name());
        let sensors =
            format!("SELECT sensor_id FROM {t}_sensors WHERE consumer_group = $1 AND topic = $2 AND partition = $3");
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&self.group, &self.topic, &partition];
        let gone = self
            .client
            .query(
                &format!(
                    "DELETE FROM {t} WHERE window_days = $4 AND unit = $5 AND sensor_id IN ({sensors}) \
                     RETURNING sensor_id, window_days, window_id"
                ),
                &[key[0], key[1], key[2], days, unit],
            )
            .await?
            .iter()
            .map(|r| WindowKey {
                sensor_id: r.get(0),
                window_days: r.get::<_, i32>(1) as u32,
                window_id: r.get::<_, i64>(2) as u64,
            })
            .collect();
        let staged = format!("{t}_staging WHERE window_days = $4 AND unit = $5 AND sensor_id IN ({sensors})");
        let rebuilt = self
            .client
            .query(
                &format!(
                    "INSERT INTO {t} SELECT * FROM {staged} RETURNING sensor_id, window_id, (avg_temp * 10)::bigint, \
                     avg_co, avg_humidity, readings, first_record_id, last_record_id"
                ),
                &[key[0], key[1], key[2], &new_days, &new_unit],
            )
            .await?
            .iter()
            .map(|r| Aggregate {
                key: WindowKey {
                    sensor_id: r.get(0),
                    window_days: self.window.get(),
                    window_id: r.get::<_, i64>(1) as u64,
                },
                unit: self.unit,
                avg_temp: Tenths(r.get(2)),
                avg_co: i64::from(r.get::<_, i32>(3)),
                avg_humidity: i64::from(r.get::<_, i32>(4)),
                readings: r.get::<_, i32>(5) as u32,
                first_record_id: r.get::<_, i64>(6) as u64,
                last_record_id: r.get::<_, i64>(7) as u64,
            })
            .collect();
        self.client.execute(&format!("DELETE FROM {staged}"), &[key[0], key[1], key[2], &new_days, &new_unit]).await?;
        self.client
            .execute(
                &format!(
                    "UPDATE {t}_partitions SET rebuild_until = NULL, replaces_days = NULL, replaces_unit = NULL \
                     WHERE consumer_group = $1 AND topic = $2 AND partition = $3"
                ),
                &key,
            )
            .await?;
        Ok((gone, rebuilt))
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

impl GroupStore for PartitionStore {
    fn name(&self) -> String {
        self.target.name()
    }

    /// Records that this member is alive; returns the live members, this one among them.
    /// Members dead for a long while are forgotten.
    fn heartbeat(&mut self) -> anyhow::Result<Vec<String>> {
        let live = self.reconnecting(Self::send_heartbeat)?;
        match &self.beater {
            Some(beater) => beater.turned(),
            None => self.beater = Some(self.start_beating()),
        }
        Ok(live)
    }

    /// Claims `partition` if nobody owns it, its owner's lease has run out, or this member owned
    /// it: a new epoch, and the state to resume from. None while a live member owns it, or
    /// while another transaction holds its row for longer than a lease (offered again at the
    /// next heartbeat: a claim never waits on a member that stopped mid-commit).
    fn claim(&mut self, partition: i32) -> anyhow::Result<Option<Claimed>> {
        self.reconnecting(|store| store.try_claim(partition))
    }

    /// Makes `commits` durable in one transaction, if this member still holds every one of
    /// their partitions at its epoch; otherwise nothing is written, and the partitions that
    /// another member has claimed since are [`Committed::Fenced`]. A partition being rebuilt
    /// writes its rows to the staging table, and in the commit that reaches its end they
    /// replace the old rules' rows of its sensors.
    ///
    /// After a lost connection (a PostgreSQL restart; or this member was paused mid-commit and
    /// the server ended its session, see [`member_session`]), it reconnects and finds out from
    /// the partitions' rows whether the commit had landed, was fenced since, or is to be made
    /// again.
    fn commit(
        &mut self,
        commits: &[PartitionCommit<'_>],
        mut mirror: Option<&mut (dyn Mirror + 'static)>,
    ) -> anyhow::Result<Committed> {
        let runtime = self.runtime.clone();
        loop {
            let error = match runtime.block_on(self.transact(commits, mirror.as_deref_mut())) {
                Ok(committed) => return Ok(committed),
                Err(e) => e,
            };
            let lost = error.downcast_ref::<tokio_postgres::Error>().is_some_and(|e| connection_lost(&self.client, e));
            if !lost {
                return Err(error.context(format!("committing to {} as member `{}`", self.name(), self.member)));
            }
            tracing::warn!(
                "member `{}`: lost the connection to {} ({error:#}); reconnecting",
                self.member,
                self.name()
            );
            self.client = runtime.block_on(member_session(&self.target, self.lease))?;
            if let Some(known) = runtime.block_on(self.landed(commits))? {
                return Ok(known);
            }
        }
    }

    /// Leaves the group: the member's heartbeat is removed, so that the others deal its
    /// partitions (handed back by its last commit) at their next heartbeat.
    fn leave(&mut self) -> anyhow::Result<()> {
        if let Some(mut beater) = self.beater.take() {
            beater.stop();
        }
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
