//! The warehouse table: every window as a row of a PostgreSQL table, written exactly once,
//! the rows and the Kafka offsets they came from in one transaction (see [`super::table`] for
//! the order of commits beside the file).
//!
//! Tables, created if missing (`T` is `--postgres-table`, by default `weather_aggregates`):
//! - `T`: one row per window, keyed by (sensor_id, window_days, unit, window_id).
//! - `T_staging`: the rows of a rebuild until it has caught up with the topic; then, in one
//!   transaction, they replace their rule set's rows in `T`: readers see the old rows or the
//!   new ones, never half of each. A rule set that `T` does not hold yet is loaded in place
//!   (there is nothing to replace, and its rows are then written once, not twice).
//! - `T_progress`: per consumer group, topic and partition, the next offset.
//! - `T_state`: per consumer group and topic, the rules, whether a rebuild is under way, a
//!   commit count (to tell after a lost connection whether a commit landed), and the open
//!   windows when the table is the only output.
//!
//! A run holds a PostgreSQL advisory lock per table and rule set: one writer each. The password
//! comes from `PGPASSWORD` or a password file (`PGPASSFILE`, else `~/.pgpass`), never from the
//! URL or a flag, and is never printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, GenericClient, NoTls};
use weather_common::error_chain;

use super::table::{Commit, TableState, WindowTable};
use crate::units::{Tenths, Unit};
use crate::window::{WindowSize, WindowSummary, Windows};

/// The default table.
pub const DEFAULT_TABLE: &str = "weather_aggregates";
/// The longest table name whose companions (`_progress`, `_staging`) still fit PostgreSQL's 63
/// bytes.
const MAX_TABLE_LEN: usize = 63 - "_progress".len();
/// The columns of the table and of its staging table, with their types as PostgreSQL's
/// `format_type` names them.
const COLUMNS: [(&str, &str); 10] = [
    ("sensor_id", "text"),
    ("window_days", "integer"),
    ("window_id", "bigint"),
    ("unit", "text"),
    ("avg_temp", "numeric(6,1)"),
    ("avg_co", "integer"),
    ("avg_humidity", "integer"),
    ("readings", "integer"),
    ("first_record_id", "bigint"),
    ("last_record_id", "bigint"),
];
const PROGRESS_COLUMNS: [(&str, &str); 4] =
    [("consumer_group", "text"), ("topic", "text"), ("partition", "integer"), ("next_offset", "bigint")];
const STATE_COLUMNS: [(&str, &str); 8] = [
    ("consumer_group", "text"),
    ("topic", "text"),
    ("window_days", "integer"),
    ("unit", "text"),
    ("rebuilding", "boolean"),
    ("ended_with_partial", "boolean"),
    ("commits", "bigint"),
    ("open_windows", "text"),
];
/// The first key of this program's advisory locks ("weat").
const LOCK_CLASS: i32 = 0x7765_6174;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bytes of COPY data per message to the server; rows are sent ahead of their commit once
/// this many are waiting.
const COPY_PIECE: usize = 64 * 1024;
/// Pieces on their way to the server at most: past that, sending ahead waits for it, rather
/// than hold a second copy of the rows in memory.
const PIECES_UNDER_WAY: usize = 16;

/// Where the windows go: a server, a database, a user and a table; the password is looked up
/// when connecting.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    config: Config,
    pub table: String,
    /// `host:port/database`, for messages.
    pub address: String,
    /// How long an unreachable server is retried, at start and after a lost connection.
    pub connect_timeout: Duration,
}

impl PostgresTarget {
    /// Checks `--to-postgres` and `--postgres-table`; the error names what is wrong, never
    /// the URL itself (it might carry a password after all).
    pub fn parse(url: &str, table: &str, connect_timeout: Duration) -> Result<PostgresTarget, String> {
        let mut config = Config::from_str(url).map_err(|e| {
            format!("--to-postgres is not a PostgreSQL URL such as postgres://weather@127.0.0.1:5432/weather ({e})")
        })?;
        if config.get_password().is_some() {
            return Err("--to-postgres: the URL carries a password; leave it out and set PGPASSWORD or a password \
                        file (~/.pgpass, or PGPASSFILE) instead, so that it never shows in a process list"
                .to_string());
        }
        if config.get_hosts().is_empty() {
            return Err("--to-postgres: the URL names no host, e.g. postgres://weather@127.0.0.1:5432/weather".into());
        }
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER").or_else(|_| std::env::var("USER")).map_err(|_| {
                "--to-postgres: the URL names no user, e.g. postgres://weather@127.0.0.1:5432/weather".to_string()
            })?;
            config.user(user);
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or_default().to_string();
            config.dbname(user);
        }
        check_table_name(table).map_err(|e| format!("--postgres-table: {e}"))?;
        config.application_name("weather-consumer");
        config.connect_timeout(Duration::from_secs(10));
        let host = match &config.get_hosts()[0] {
            Host::Tcp(host) => host.clone(),
            #[cfg(unix)]
            Host::Unix(dir) => dir.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let address = format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default());
        Ok(PostgresTarget { config, table: table.to_string(), address, connect_timeout })
    }

    /// The table in messages: `PostgreSQL table T on host:port/database`.
    pub fn name(&self) -> String {
        format!("PostgreSQL table {} on {}", self.table, self.address)
    }

    fn host_port(&self) -> String {
        self.address.rsplit_once('/').map_or(self.address.clone(), |(hp, _)| hp.to_string())
    }

    fn user(&self) -> &str {
        self.config.get_user().unwrap_or_default()
    }

    fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// The configuration with the password, if the environment or a password file has one.
    fn with_password(&self) -> Config {
        let mut config = self.config.clone();
        if let Some(password) = password(&self.host_port(), self.database(), self.user()) {
            config.password(password);
        }
        config
    }
}

/// Table names this program creates: lowercase, so that they need no quoting in `psql`.
pub fn check_table_name(name: &str) -> Result<(), String> {
    let valid = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid || name.len() > MAX_TABLE_LEN {
        return Err(format!(
            "`{name}` is not a table name this consumer creates: 1 to {MAX_TABLE_LEN} characters of a-z 0-9 _, not \
             starting with a digit"
        ));
    }
    Ok(())
}

/// The password for `user` on `host_port` and `database`: `PGPASSWORD`, else the password file.
fn password(host_port: &str, database: &str, user: &str) -> Option<String> {
    if let Ok(password) = std::env::var("PGPASSWORD") {
        return Some(password);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "5432"));
    pgpass_lookup(&text, host, port, database, user)
}

/// The password of the first line of a password file (`host:port:database:user:password`,
/// `*` matching anything, `\:` and `\\` escaped) that matches, as libpq reads it.
pub fn pgpass_lookup(text: &str, host: &str, port: &str, database: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => fields.last_mut()?.extend(chars.next()),
                ':' if fields.len() < 5 => fields.push(String::new()),
                c => fields.last_mut()?.push(c),
            }
        }
        if fields.len() != 5 {
            continue;
        }
        let wanted = [host, port, database, user];
        if fields[..4].iter().zip(wanted).all(|(field, value)| field == "*" || field == value) {
            return fields.pop();
        }
    }
    None
}

/// What went wrong with PostgreSQL, for a caller that must stop at once or retry.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL at {address} is unreachable after {seconds} s ({error}): start it, or check --to-postgres")]
    Unreachable { address: String, seconds: u64, error: String },
    #[error("PostgreSQL at {address} refused user `{user}` ({said}): check the user in --to-postgres and the password in PGPASSWORD or the password file")]
    Credentials { address: String, user: String, said: String },
    #[error("database `{database}` does not exist on PostgreSQL at {address}: create it (createdb {database}), or name another in --to-postgres")]
    NoDatabase { address: String, database: String },
    #[error("PostgreSQL at {address} asks for a password for user `{user}`: set PGPASSWORD or add it to the password file (~/.pgpass, or PGPASSFILE)")]
    NoPassword { address: String, user: String },
}

/// Connects, retrying an unreachable server with backoff until `deadline`; wrong credentials
/// and a missing database stop at once.
async fn connect(target: &PostgresTarget, deadline: Instant) -> anyhow::Result<Client> {
    let mut backoff = Duration::from_millis(100);
    let started = Instant::now();
    let mut said = false;
    loop {
        let error = match target.with_password().connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("the PostgreSQL connection ended: {e}");
                    }
                });
                return Ok(client);
            }
            Err(e) => e,
        };
        let address = target.host_port();
        if let Some(db) = error.as_db_error() {
            let code = db.code().code();
            if code == "28P01" || code == "28000" {
                let said = db.message().to_string();
                return Err(PostgresError::Credentials { address, user: target.user().into(), said }.into());
            }
            if code == "3D000" {
                return Err(PostgresError::NoDatabase { address, database: target.database().into() }.into());
            }
            // 57P03: the server is starting up; others are not for waiting out.
            if code != "57P03" {
                return Err(anyhow::Error::new(error).context(format!("connecting to PostgreSQL at {address}")));
            }
        } else if error.to_string().contains("password missing") {
            return Err(PostgresError::NoPassword { address, user: target.user().into() }.into());
        }
        let now = Instant::now();
        if now >= deadline {
            let seconds = started.elapsed().as_secs();
            return Err(PostgresError::Unreachable { address, seconds, error: error_chain(&error) }.into());
        }
        if !said {
            tracing::warn!("PostgreSQL at {address} is unreachable ({}); retrying", error_chain(&error));
            said = true;
        }
        tokio::time::sleep(backoff.min(deadline - now)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// True if `error` means the connection is gone (the server restarted, the network broke),
/// not that a statement was refused.
fn connection_lost(client: &Client, error: &tokio_postgres::Error) -> bool {
    match error.as_db_error() {
        None => true,
        Some(db) => client.is_closed() || db.code().code().starts_with("08") || db.code().code().starts_with("57P"),
    }
}

/// Deletes the progress and state of other outputs (groups) on this rule set.
async fn forget_others(
    tx: &impl GenericClient,
    t: &str,
    days: i32,
    unit: &str,
    group: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        &format!(
            "DELETE FROM {t}_progress p USING {t}_state s WHERE p.consumer_group = s.consumer_group \
             AND p.topic = s.topic AND s.window_days = $1 AND s.unit = $2 AND s.consumer_group <> $3"
        ),
        &[&days, &unit, &group],
    )
    .await?;
    tx.execute(
        &format!("DELETE FROM {t}_state WHERE window_days = $1 AND unit = $2 AND consumer_group <> $3"),
        &[&days, &unit, &group],
    )
    .await?;
    Ok(())
}

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

/// Loading rows ahead of their commit, so that PostgreSQL's work (most of it keeping the
/// primary key's index) goes on while the replay reads, rather than all at the checkpoint:
/// a transaction is opened with a COPY that takes rows as they come, and the commit finishes
/// it. If anything fails on the way, the commit rolls it back and makes the whole
/// transaction again from `rows`: sending ahead only ever saves time.
enum Ahead {
    /// Nothing sent since the last commit.
    Idle,
    /// A transaction is open, its COPY taking the rows sent.
    Open(Load),
    /// Opening one failed: rows wait for the commit.
    Off,
}

/// The COPY of an open transaction, fed by a task of its own with the pieces sent.
struct Load {
    pieces: mpsc::Sender<Bytes>,
    copy: JoinHandle<Result<u64, tokio_postgres::Error>>,
}

impl Postgres {
    /// Connects, creates the tables if missing (a table with other columns is refused), takes
    /// the rule set's lock, and reads where this output's progress stands. `rebuild`: the run
    /// rebuilds from the beginning, so rows of other rules are no reason to stop.
    pub fn open(
        target: &PostgresTarget,
        group: &str,
        topic: &str,
        window: WindowSize,
        unit: Unit,
        rebuild: bool,
        runtime: Handle,
    ) -> anyhow::Result<Postgres> {
        let deadline = Instant::now() + target.connect_timeout;
        let client = runtime.block_on(connect(target, deadline))?;
        let mut table = Postgres {
            name: target.name(),
            target: target.clone(),
            runtime,
            client,
            group: group.to_string(),
            topic: topic.to_string(),
            window,
            unit,
            state: TableState::default(),
            commits: 0,
            rows: Vec::new(),
            sent: 0,
            ahead: Ahead::Idle,
        };
        table.runtime.clone().block_on(table.prepare(rebuild))?;
        Ok(table)
    }

    fn t(&self) -> &str {
        &self.target.table
    }

    async fn prepare(&mut self, rebuild: bool) -> anyhow::Result<()> {
        let t = self.t().to_string();
        let columns: String =
            COLUMNS.iter().map(|(name, kind)| format!("{name} {kind} NOT NULL")).collect::<Vec<_>>().join(", ");
        let key = "PRIMARY KEY (sensor_id, window_days, unit, window_id)";
        for (name, expected, create) in [
            (t.clone(), &COLUMNS[..], format!("CREATE TABLE IF NOT EXISTS {t} ({columns}, {key})")),
            (
                format!("{t}_staging"),
                &COLUMNS[..],
                format!("CREATE TABLE IF NOT EXISTS {t}_staging ({columns}, {key})"),
            ),
            (
                format!("{t}_progress"),
                &PROGRESS_COLUMNS[..],
                format!(
                    "CREATE TABLE IF NOT EXISTS {t}_progress (consumer_group text NOT NULL, topic text NOT NULL, \
                     partition integer NOT NULL, next_offset bigint NOT NULL, PRIMARY KEY (consumer_group, topic, \
                     partition))"
                ),
            ),
            (
                format!("{t}_state"),
                &STATE_COLUMNS[..],
                format!(
                    "CREATE TABLE IF NOT EXISTS {t}_state (consumer_group text NOT NULL, topic text NOT NULL, \
                     window_days integer NOT NULL, unit text NOT NULL, rebuilding boolean NOT NULL, \
                     ended_with_partial boolean NOT NULL, commits bigint NOT NULL, open_windows text, \
                     PRIMARY KEY (consumer_group, topic))"
                ),
            ),
        ] {
            self.check_columns(&name, expected).await?;
            self.client.batch_execute(&create).await.with_context(|| format!("creating table {name}"))?;
        }
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

    /// Refuses a table that exists with other columns than `expected`: never altered silently.
    async fn check_columns(&self, table: &str, expected: &[(&str, &str)]) -> anyhow::Result<()> {
        let rows = self
            .client
            .query(
                // The catalog, not information_schema: that shows only tables this user may use.
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                &[&table],
            )
            .await
            .with_context(|| format!("looking up table {table}"))?;
        if rows.is_empty() {
            return Ok(());
        }
        let found: BTreeMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let wanted: BTreeMap<String, String> = expected.iter().map(|(n, k)| (n.to_string(), k.to_string())).collect();
        if found == wanted {
            return Ok(());
        }
        let mut problems = Vec::new();
        let missing: Vec<&str> = wanted.keys().filter(|c| !found.contains_key(*c)).map(String::as_str).collect();
        if !missing.is_empty() {
            problems.push(format!("it lacks {}", missing.join(", ")));
        }
        let extra: Vec<&str> = found.keys().filter(|c| !wanted.contains_key(*c)).map(String::as_str).collect();
        if !extra.is_empty() {
            problems.push(format!("it has {} besides", extra.join(", ")));
        }
        for (column, kind) in &wanted {
            if let Some(other) = found.get(column).filter(|other| *other != kind) {
                problems.push(format!("{column} is {other}, not {kind}"));
            }
        }
        bail!(
            "table {table} on {} exists with other columns than this consumer writes ({}); it is left as it is: \
             name another with --postgres-table, or drop it",
            self.target.address,
            problems.join("; ")
        )
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

    /// The second key of the lock: a stable hash of the table and the rule set, positive.
    fn lock_key(&self) -> i32 {
        let name = format!("{}/{}/{}", self.t(), self.window.get(), self.unit.name());
        let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        (hash & 0x7fff_ffff) as i32
    }

    /// One transaction: the rows, the progress, the state; the swap of a rebuild that has
    /// caught up. True if it swapped.
    async fn transact(&self, commit: &Commit<'_>, rows: &[u8]) -> Result<bool, tokio_postgres::Error> {
        self.client.batch_execute("BEGIN").await?;
        let done = async {
            if !rows.is_empty() {
                let copy = self.client.copy_in(&self.copy_statement()).await?;
                futures_util::pin_mut!(copy);
                // In pieces, so that neither side holds a second copy of a large batch.
                for piece in rows.chunks(COPY_PIECE) {
                    copy.send(Bytes::copy_from_slice(piece)).await?;
                }
                copy.finish().await?;
            }
            self.finish_transaction(commit).await
        };
        self.rolled_back_on_error(done.await).await
    }

    /// [`Postgres::transact`] for a transaction whose rows up to `sent` were sent ahead by
    /// `copy`, fed through `pieces`; made whole again if that went wrong.
    async fn finish_ahead(
        &self,
        load: Load,
        commit: &Commit<'_>,
        rows: &[u8],
        sent: usize,
    ) -> Result<bool, tokio_postgres::Error> {
        if sent < rows.len() {
            // A closed channel means the COPY failed: found out just below.
            let _ = load.pieces.send(Bytes::copy_from_slice(&rows[sent..])).await;
        }
        drop(load.pieces);
        let reason = match load.copy.await {
            Ok(Ok(_)) => return self.rolled_back_on_error(self.finish_transaction(commit).await).await,
            Ok(Err(e)) => error_chain(&e),
            Err(e) => e.to_string(),
        };
        tracing::warn!("{}: loading rows ahead of the commit failed ({reason}); loading them whole", self.name);
        let _ = self.client.batch_execute("ROLLBACK").await;
        self.transact(commit, rows).await
    }

    /// Opens a transaction with a COPY, fed by a task of its own.
    async fn open_ahead(&self) -> Result<Load, tokio_postgres::Error> {
        self.client.batch_execute("BEGIN").await?;
        let copy = self.client.copy_in::<_, Bytes>(&self.copy_statement()).await;
        let copy = self.rolled_back_on_error(copy).await?;
        let (pieces, mut to_send) = mpsc::channel::<Bytes>(PIECES_UNDER_WAY);
        let copy = tokio::spawn(async move {
            futures_util::pin_mut!(copy);
            while let Some(piece) = to_send.recv().await {
                copy.send(piece).await?;
            }
            copy.finish().await
        });
        Ok(Load { pieces, copy })
    }

    /// The COPY of this output's rows: into the staging table during a rebuild.
    fn copy_statement(&self) -> String {
        let t = &self.target.table;
        let target = if self.state.rebuilding { format!("{t}_staging") } else { t.clone() };
        let columns: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        format!("COPY {target} ({}) FROM STDIN", columns.join(", "))
    }

    /// The rest of a commit's transaction, after its rows: the progress, the swap of a rebuild
    /// that has caught up, the state, and the commit itself. True if it swapped.
    async fn finish_transaction(&self, commit: &Commit<'_>) -> Result<bool, tokio_postgres::Error> {
        let t = &self.target.table;
        let swap = self.state.rebuilding && commit.caught_up;
        let days = self.window.get() as i32;
        let unit = self.unit.name();
        let windows = commit.windows.map(|w| serde_json::to_string(w).expect("windows always serialize"));
        let client = &self.client;
        let (partitions, offsets): (Vec<i32>, Vec<i64>) = commit.offsets.iter().map(|(&p, &o)| (p, o)).unzip();
        client
            .execute(
                &format!(
                    "INSERT INTO {t}_progress (consumer_group, topic, partition, next_offset) \
                     SELECT $1, $2, p, o FROM unnest($3::integer[], $4::bigint[]) AS u(p, o) \
                     ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset"
                ),
                &[&self.group, &self.topic, &partitions, &offsets],
            )
            .await?;
        if swap {
            client.execute(&format!("DELETE FROM {t} WHERE window_days = $1 AND unit = $2"), &[&days, &unit]).await?;
            client
                .execute(
                    &format!("INSERT INTO {t} SELECT * FROM {t}_staging WHERE window_days = $1 AND unit = $2"),
                    &[&days, &unit],
                )
                .await?;
            client
                .execute(&format!("DELETE FROM {t}_staging WHERE window_days = $1 AND unit = $2"), &[&days, &unit])
                .await?;
            // The rows of this rule set are this output's now: other outputs' progress on them
            // no longer describes the table.
            forget_others(client, t, days, unit, &self.group).await?;
        }
        client
            .execute(
                &format!(
                    "INSERT INTO {t}_state (consumer_group, topic, window_days, unit, rebuilding, ended_with_partial, \
                     commits, open_windows) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (consumer_group, topic) DO UPDATE SET window_days = excluded.window_days, \
                     unit = excluded.unit, rebuilding = excluded.rebuilding, \
                     ended_with_partial = excluded.ended_with_partial, commits = excluded.commits, \
                     open_windows = excluded.open_windows"
                ),
                &[
                    &self.group,
                    &self.topic,
                    &days,
                    &unit,
                    &(self.state.rebuilding && !swap),
                    &commit.partial,
                    &(self.commits + 1),
                    &windows,
                ],
            )
            .await?;
        client.batch_execute("COMMIT").await?;
        Ok(swap)
    }

    /// `result`, after rolling the open transaction back if it is an error (on a lost
    /// connection there is nothing to roll back: the server has done it).
    async fn rolled_back_on_error<T>(
        &self,
        result: Result<T, tokio_postgres::Error>,
    ) -> Result<T, tokio_postgres::Error> {
        if result.is_err() {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        result
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

    /// Sends the rows not sent yet ahead of their commit, opening its transaction first if
    /// need be. A failure only leaves them for the commit.
    fn send_ahead(&mut self) {
        if matches!(self.ahead, Ahead::Idle) {
            self.ahead = match self.runtime.block_on(self.open_ahead()) {
                Ok(load) => Ahead::Open(load),
                Err(e) => {
                    tracing::warn!(
                        "{}: could not load rows ahead of the commit ({}); they wait for it",
                        self.name,
                        error_chain(&e)
                    );
                    Ahead::Off
                }
            };
        }
        if let Ahead::Open(load) = &self.ahead {
            // A closed channel means the COPY failed: the commit finds out.
            let _ = load.pieces.blocking_send(Bytes::copy_from_slice(&self.rows[self.sent..]));
            self.sent = self.rows.len();
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

/// Appends `w` as a row of COPY's text format, in the order of [`COLUMNS`].
fn copy_row(rows: &mut Vec<u8>, w: &WindowSummary, window: WindowSize, unit: Unit) {
    let a = w.averages(unit);
    writeln!(
        Text(rows),
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        w.sensor_id,
        window.get(),
        w.window_id,
        unit.name(),
        Tenths(a.temperature_tenths),
        a.co_concentration,
        a.humidity,
        w.readings,
        w.first_record_id,
        w.last_record_id
    )
    .expect("formatting into memory");
}

/// `fmt::Write` into a byte buffer (sensor ids are ASCII without tabs, backslashes or line
/// ends: nothing to escape in COPY's text format).
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL with a password is refused without repeating it; the address names host, port
    /// and database; the user and the database default as libpq's do.
    #[test]
    fn urls_carry_no_password() {
        let timeout = Duration::from_secs(1);
        let err =
            PostgresTarget::parse("postgres://weather:s3cret@127.0.0.1:5433/w", DEFAULT_TABLE, timeout).unwrap_err();
        assert!(err.contains("PGPASSWORD") && !err.contains("s3cret"), "{err}");
        let target = PostgresTarget::parse("postgres://weather@127.0.0.1:5433/w", DEFAULT_TABLE, timeout).unwrap();
        assert_eq!((target.address.as_str(), target.user()), ("127.0.0.1:5433/w", "weather"));
        let target = PostgresTarget::parse("postgresql://weather@db.example", DEFAULT_TABLE, timeout).unwrap();
        assert_eq!(target.address, "db.example:5432/weather");
        assert!(PostgresTarget::parse("mysql://x", DEFAULT_TABLE, timeout).unwrap_err().contains("--to-postgres"));
    }

    /// Table names are what `psql` takes unquoted, short enough for their companions.
    #[test]
    fn table_names() {
        for good in ["weather_aggregates", "_w1", &"a".repeat(MAX_TABLE_LEN)] {
            assert_eq!(check_table_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Weather", "1w", "w-1", "w;drop", &"a".repeat(MAX_TABLE_LEN + 1)] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
    }

    /// The password file is read as libpq reads it: first match wins, `*` matches anything,
    /// `\:` is a colon, comments are skipped.
    #[test]
    fn password_file_lookup() {
        let text = "# comment\n127.0.0.1:5432:other:weather:no\n127.0.0.1:*:weather:weather:pa\\:ss\n*:*:*:*:any\n";
        assert_eq!(pgpass_lookup(text, "127.0.0.1", "5433", "weather", "weather").as_deref(), Some("pa:ss"));
        assert_eq!(pgpass_lookup(text, "127.0.0.1", "5432", "other", "weather").as_deref(), Some("no"));
        assert_eq!(pgpass_lookup(text, "h", "1", "d", "u").as_deref(), Some("any"));
        assert_eq!(pgpass_lookup("h:1:d:u\n", "h", "1", "d", "u"), None, "a line without a password");
    }

    /// Rows are COPY text in the order of the columns: tab-separated, the temperature with
    /// one decimal in the rule set's unit, the rule set and the day range in every row.
    #[test]
    fn rows_as_copy_text() {
        let mut rows = Vec::new();
        let week = crate::sink::week("sensor-1", 2, 7 * 203, 7 * 700, 7 * 55);
        copy_row(&mut rows, &week, WindowSize::WEEK, Unit::Fahrenheit);
        let partial = WindowSummary { readings: 2, first_record_id: 1, last_record_id: 3, complete: false, ..week };
        copy_row(&mut rows, &WindowSummary { temperature_tenths: -21, ..partial }, WindowSize::WEEK, Unit::Celsius);
        assert_eq!(
            String::from_utf8(rows).unwrap(),
            "sensor-1\t7\t2\tfahrenheit\t68.5\t700\t55\t7\t8\t14\nsensor-1\t7\t2\tcelsius\t-1.0\t2450\t192\t2\t1\t3\n"
        );
        assert_eq!(COLUMNS.len(), 10, "one value per column");
    }

    /// Rows sent ahead of their commit are loading while the run goes on, unseen until the
    /// commit, with which they land once; when the connection is lost while rows are on their
    /// way, the commit reconnects and loads them whole, and when their `COPY` is cancelled,
    /// it loads them whole on the same connection.
    #[test]
    fn rows_sent_ahead_land_once_with_their_commit_even_after_a_failure() {
        let pg = testkit::PostgresServer::start();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mut target = PostgresTarget::parse(&pg.url(), "ahead", Duration::from_secs(30)).unwrap();
        target.config.password(pg.password());
        let (window, unit, handle) = (WindowSize::WEEK, Unit::Celsius, runtime.handle().clone());
        let mut table = Postgres::open(&target, "g", "weather", window, unit, false, handle).unwrap();
        let count = |sql: &str| pg.query(sql)[0][0].clone().unwrap();
        let copying = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'weather' AND query LIKE 'COPY ahead %'";
        // Enough rows for several pieces.
        let rows_per_commit = (4 * COPY_PIECE / 40) as u64;
        for round in 1..=3u64 {
            for id in (round - 1) * rows_per_commit + 1..=round * rows_per_commit {
                table.add(&crate::sink::week("sensor-1", id, 7 * 203, 7 * 700, 7 * 55)).unwrap();
            }
            assert!(matches!(table.ahead, Ahead::Open(_)), "round {round}: rows went ahead");
            assert_eq!(count(copying), "1", "round {round}: the server is loading them");
            assert_eq!(count("SELECT count(*) FROM ahead"), ((round - 1) * rows_per_commit).to_string());
            if round == 2 {
                let ended = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'weather'";
                assert_eq!(pg.query(ended), [[Some("t".to_string())]]);
                let deadline = Instant::now() + Duration::from_secs(30);
                while count("SELECT count(*) FROM pg_stat_activity WHERE usename = 'weather'") != "0" {
                    assert!(Instant::now() < deadline, "the backend did not end");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if round == 3 {
                // Taken at the next piece the COPY reads: the commit's.
                let cancelled = "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = 'weather'";
                assert_eq!(pg.query(cancelled), [[Some("t".to_string())]]);
            }
            let offsets = BTreeMap::from([(0, (round * rows_per_commit * 7) as i64)]);
            table.commit(&Commit { offsets: &offsets, windows: None, caught_up: true, partial: false }).unwrap();
            let rows = "SELECT count(*), count(DISTINCT window_id), max(window_id) FROM ahead";
            let n = (round * rows_per_commit).to_string();
            assert_eq!(pg.query(rows), [[Some(n.clone()), Some(n.clone()), Some(n)]], "round {round}");
            assert_eq!(count("SELECT next_offset FROM ahead_progress"), offsets[&0].to_string());
        }
        assert_eq!(count("SELECT commits FROM ahead_state"), "3");
        let log = pg.log();
        assert!(log.contains("terminating connection due to administrator command"), "round 2's end:\n{log}");
        assert!(log.contains("canceling statement due to user request"), "round 3's cancel:\n{log}");
    }
}
