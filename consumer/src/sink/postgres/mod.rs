//! The warehouse table: every window as a row of a PostgreSQL table, written exactly once,
//! the rows and the Kafka offsets they came from in one transaction (see
//! [`crate::sink::table`] for the order of commits beside the file).
//!
//! - [`config`]: its flags, checked, and how it opens for a run.
//! - [`target`]: the server, database, user and table of `--to-postgres`; the password.
//! - [`connect`]: connecting, retrying an unreachable server.
//! - [`schema`]: the tables it keeps (`T`, `T_staging`, `T_progress`, `T_state`) and its rows.
//! - [`transaction`]: one commit, all or nothing; [`ahead`]: rows sent ahead of their commit.
//!
//! A rebuild's rows go to `T_staging` until it has caught up with the topic; then, in one
//! transaction, they replace their rule set's rows in `T`: readers see the old rows or the
//! new ones, never half of each. A rule set that `T` does not hold yet is loaded in place
//! (there is nothing to replace, and its rows are then written once, not twice). The state's
//! commit count tells after a lost connection whether a commit landed.
//!
//! A run holds a PostgreSQL advisory lock per table and rule set: one writer each (the members
//! of a shared output, [`partitions`], hold it together).

mod ahead;
pub mod config;
mod connect;
pub mod partitions;
mod schema;
pub mod target;
mod transaction;

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Context};
use tokio::runtime::Handle;
use tokio_postgres::Client;
use weather_common::error_chain;

use self::ahead::{Ahead, COPY_PIECE};
use self::connect::{connect, connection_lost};
use self::schema::copy_row;
use self::target::PostgresTarget;
use self::transaction::forget_others;
use super::table::{Commit, Opening, TableState, WindowTable};
use crate::units::Unit;
use crate::window::{WindowSize, WindowSummary, Windows};

pub use self::config::PostgresArgs;
pub use self::connect::PostgresError;

/// The first key of this program's advisory locks ("weat").
const LOCK_CLASS: i32 = 0x7765_6174;

/// This output's rows in one PostgreSQL table.
pub struct Postgres {
    target: PostgresTarget,
    name: String,
    runtime: Handle,
    client: Client,
    group: String,
    topic: String,
    window: WindowSize,
    unit: Unit,
    state: TableState,
    /// Commits made so far, as recorded in the state table.
    commits: i64,
    /// Rows taken since the last commit, as COPY text: kept until it lands, so that a failed
    /// commit can be made again whole.
    rows: Vec<u8>,
    /// Rows sent ahead of their commit: `rows[..sent]`.
    sent: usize,
    ahead: Ahead,
}

impl Postgres {
    /// Connects, creates the tables if missing (a table with other columns is refused), takes
    /// the rule set's lock, and reads where the run's output's progress stands. A run that
    /// rebuilds from the beginning finds rows of other rules no reason to stop.
    pub fn open(run: &Opening<'_>, target: &PostgresTarget) -> anyhow::Result<Postgres> {
        let deadline = Instant::now() + target.connect_timeout;
        let client = run.runtime.block_on(connect(target, deadline))?;
        let mut table = Postgres {
            name: target.name(),
            target: target.clone(),
            runtime: run.runtime.clone(),
            client,
            group: run.group.to_string(),
            topic: run.rules.topic.clone(),
            window: run.rules.window,
            unit: run.rules.unit,
            state: TableState::default(),
            commits: 0,
            rows: Vec::new(),
            sent: 0,
            ahead: Ahead::Idle,
        };
        table.runtime.clone().block_on(table.prepare(run.rebuild))?;
        Ok(table)
    }

    fn t(&self) -> &str {
        &self.target.table
    }

    /// Creates the tables if missing, takes the lock, and reads this output's state.
    async fn prepare(&mut self, rebuild: bool) -> anyhow::Result<()> {
        let t = self.t().to_string();
        schema::ensure(&self.client, &t, &self.target.address, &schema::TABLES).await?;
        self.lock().await?;
        let state = self
            .client
            .query_opt(
                &format!(
                    "SELECT window_days, unit, rebuilding, ended_with_partial, commits, open_windows FROM {t}_state \
                     WHERE consumer_group = $1 AND topic = $2"
                ),
                &[&self.group, &self.topic],
            )
            .await
            .with_context(|| format!("reading {t}_state"))?;
        let Some(state) = state else { return Ok(()) };
        let (days, unit): (i32, String) = (state.get(0), state.get(1));
        if (days, unit.as_str()) != (self.window.get() as i32, self.unit.name()) {
            if rebuild {
                return Ok(());
            }
            bail!(
                "{} holds the rows of group `{}` computed with {days}-day windows in {unit}, not this run's {}-day \
                 windows in {}: rebuild them with --from-beginning, or give this output another --postgres-table",
                self.name,
                self.group,
                self.window.get(),
                self.unit.name()
            );
        }
        let windows: Option<String> = state.get(5);
        self.state = TableState {
            offsets: BTreeMap::new(),
            windows: match windows {
                Some(json) => Some(serde_json::from_str(&json).with_context(|| {
                    format!(
                        "{t}_state holds damaged open windows for group `{}`: rebuild with --from-beginning",
                        self.group
                    )
                })?),
                None => None,
            },
            rebuilding: state.get(2),
            ended_with_partial: state.get(3),
        };
        self.commits = state.get(4);
        for row in self
            .client
            .query(
                &format!("SELECT partition, next_offset FROM {t}_progress WHERE consumer_group = $1 AND topic = $2"),
                &[&self.group, &self.topic],
            )
            .await
            .with_context(|| format!("reading {t}_progress"))?
        {
            self.state.offsets.insert(row.get(0), row.get(1));
        }
        Ok(())
    }

    /// Takes this table's and rule set's advisory lock for the session.
    async fn lock(&self) -> anyhow::Result<()> {
        let key = self.lock_key();
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
            .await
            .context("taking the table's advisory lock")?;
        if row.get(0) {
            return Ok(());
        }
        let holder = self
            .client
            .query_opt(
                "SELECT a.pid, coalesce(a.client_addr::text, 'a local socket') FROM pg_locks l \
                 JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted \
                 AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 2",
                &[&i64::from(LOCK_CLASS), &i64::from(key)],
            )
            .await
            .ok()
            .flatten()
            .map(|r| format!(" (PostgreSQL backend {} for a client at {})", r.get::<_, i32>(0), r.get::<_, String>(1)))
            .unwrap_or_default();
        bail!(
            "another consumer is writing {}-day windows in {} to {}{holder}: one writer per table and rule set; \
             stop it first, or give this output another --postgres-table",
            self.window.get(),
            self.unit.name(),
            self.name
        )
    }

    fn lock_key(&self) -> i32 {
        lock_key(self.t(), self.window, self.unit)
    }

    /// Runs `commit` until it lands, reconnecting after a lost connection (a PostgreSQL
    /// restart) for as long as an unreachable server is retried at start. After a reconnect the
    /// commit count tells whether the last attempt had landed before the connection went.
    fn commit_rows(&mut self, commit: &Commit<'_>, rows: &[u8]) -> anyhow::Result<()> {
        let runtime = self.runtime.clone();
        let mut ahead = match std::mem::replace(&mut self.ahead, Ahead::Idle) {
            Ahead::Open(load) => Some(load),
            Ahead::Idle | Ahead::Off => None,
        };
        let sent = std::mem::take(&mut self.sent);
        loop {
            let attempt = match ahead.take() {
                Some(load) => runtime.block_on(self.finish_ahead(load, commit, rows, sent)),
                None => runtime.block_on(self.transact(commit, rows)),
            };
            let error = match attempt {
                Ok(swapped) => {
                    self.committed(commit, swapped);
                    return Ok(());
                }
                Err(e) => e,
            };
            if !connection_lost(&self.client, &error) {
                return Err(anyhow::Error::new(error).context(format!("writing to {}", self.name)));
            }
            tracing::warn!("lost the connection to {} ({}); reconnecting", self.name, error_chain(&error));
            let deadline = Instant::now() + self.target.connect_timeout;
            self.client = runtime.block_on(connect(&self.target, deadline))?;
            runtime.block_on(self.lock())?;
            let commits: Option<i64> = runtime
                .block_on(self.client.query_opt(
                    &format!("SELECT commits FROM {}_state WHERE consumer_group = $1 AND topic = $2", self.t()),
                    &[&self.group, &self.topic],
                ))
                .with_context(|| format!("reading {}_state after reconnecting", self.t()))?
                .map(|row| row.get(0));
            if commits == Some(self.commits + 1) {
                tracing::info!("the last commit to {} had landed", self.name);
                let swapped = self.state.rebuilding && commit.caught_up;
                self.committed(commit, swapped);
                return Ok(());
            }
        }
    }

    fn committed(&mut self, commit: &Commit<'_>, swapped: bool) {
        self.commits += 1;
        self.state.offsets = commit.offsets.clone();
        self.state.ended_with_partial = commit.partial;
        if swapped {
            tracing::info!("{}: the rebuilt rows replaced the old ones", self.name);
            self.state.rebuilding = false;
        }
    }
}

/// The second key of a table's and rule set's lock: a stable hash of both, positive.
fn lock_key(table: &str, window: WindowSize, unit: Unit) -> i32 {
    let name = format!("{table}/{}/{}", window.get(), unit.name());
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    (hash & 0x7fff_ffff) as i32
}

impl WindowTable for Postgres {
    fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> &TableState {
        &self.state
    }

    fn rebuild(&mut self, from: &BTreeMap<i32, i64>, windows: Option<&Windows>) -> anyhow::Result<()> {
        let t = self.t().to_string();
        let (days, unit) = (self.window.get() as i32, self.unit.name());
        let (group, topic) = (self.group.clone(), self.topic.clone());
        let client = &mut self.client;
        let holds_rows = self
            .runtime
            .block_on(async {
                let tx = client.transaction().await?;
                tx.execute(&format!("DELETE FROM {t}_staging WHERE window_days = $1 AND unit = $2"), &[&days, &unit])
                    .await?;
                tx.execute(
                    &format!("DELETE FROM {t}_progress WHERE consumer_group = $1 AND topic = $2"),
                    &[&group, &topic],
                )
                .await?;
                let holds_rows: bool = tx
                    .query_one(
                        &format!("SELECT EXISTS (SELECT 1 FROM {t} WHERE window_days = $1 AND unit = $2)"),
                        &[&days, &unit],
                    )
                    .await?
                    .get(0);
                if !holds_rows {
                    // Loaded in place: other outputs' progress on this rule set describes
                    // rows that are gone.
                    forget_others(&tx, &t, days, unit, &group).await?;
                }
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(holds_rows)
            })
            .with_context(|| format!("starting the rebuild of {}", self.name))?;
        self.state =
            TableState { offsets: BTreeMap::new(), windows: None, rebuilding: holds_rows, ended_with_partial: false };
        let start = Commit { offsets: from, windows, caught_up: false, partial: false };
        self.commit_rows(&start, &[])?;
        match holds_rows {
            true => {
                tracing::info!("{}: rebuilding this output's rows; they replace the old ones once caught up", self.name)
            }
            false => tracing::info!("{}: loading this output's rows", self.name),
        }
        Ok(())
    }

    fn add(&mut self, w: &WindowSummary) -> anyhow::Result<()> {
        copy_row(&mut self.rows, w, self.window, self.unit);
        if self.rows.len() - self.sent >= COPY_PIECE {
            self.send_ahead();
        }
        Ok(())
    }

    fn commit(&mut self, commit: &Commit<'_>) -> anyhow::Result<()> {
        let rows = std::mem::take(&mut self.rows);
        let result = self.commit_rows(commit, &rows);
        if result.is_err() {
            self.rows = rows;
        }
        result
    }
}
