//! The tables this sink keeps, written once: each one's columns (with their types as
//! PostgreSQL's `format_type` names them) and key, from which both its `CREATE TABLE` and the
//! check of an existing table are made, and the rows in COPY's text format, in column order.
//! `T` is `--postgres-table`:
//! - `T`: one row per window, keyed by (sensor_id, window_days, unit, window_id).
//! - `T_staging`: the rows of a rebuild until it has caught up with the topic.
//! - `T_progress`: per consumer group, topic and partition, the next offset.
//! - `T_state`: per consumer group and topic, the rules, whether a rebuild is under way, a
//!   commit count, and the open windows when the table is the only output.
//!
//! A shared output (`--share`, [`super::partitions`]) keeps three more:
//! - `T_partitions`: per consumer group, topic and partition, the rules it is computed with,
//!   its owner and epoch, the next offset and the open windows of its sensors; during a rebuild, the offset it rebuilds to
//!   and the rule set whose rows it replaces then.
//! - `T_members`: per consumer group and topic, each member's last heartbeat.
//! - `T_sensors`: per consumer group and topic, the partition each sensor's readings come from.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Context};
use tokio_postgres::Client;

use crate::units::{Tenths, Unit};
use crate::window::{WindowSize, WindowSummary};

/// One of the sink's tables: `T` followed by its suffix.
pub(super) struct Schema {
    pub suffix: &'static str,
    /// Name and type of each column, in order.
    pub columns: &'static [(&'static str, &'static str)],
    pub key: &'static [&'static str],
    /// Columns that may be NULL; all others are NOT NULL.
    pub nullable: &'static [&'static str],
}

/// The columns of the table and of its staging table.
pub(super) const COLUMNS: [(&str, &str); 10] = [
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
const WINDOW_KEY: [&str; 4] = ["sensor_id", "window_days", "unit", "window_id"];

pub(super) const WINDOWS: Schema = Schema { suffix: "", columns: &COLUMNS, key: &WINDOW_KEY, nullable: &[] };
pub(super) const STAGING: Schema = Schema { suffix: "_staging", ..WINDOWS };
pub(super) const PROGRESS: Schema = Schema {
    suffix: "_progress",
    columns: &[("consumer_group", "text"), ("topic", "text"), ("partition", "integer"), ("next_offset", "bigint")],
    key: &["consumer_group", "topic", "partition"],
    nullable: &[],
};
pub(super) const STATE: Schema = Schema {
    suffix: "_state",
    columns: &[
        ("consumer_group", "text"),
        ("topic", "text"),
        ("window_days", "integer"),
        ("unit", "text"),
        ("rebuilding", "boolean"),
        ("ended_with_partial", "boolean"),
        ("commits", "bigint"),
        ("open_windows", "text"),
    ],
    key: &["consumer_group", "topic"],
    nullable: &["open_windows"],
};
pub(super) const PARTITIONS: Schema = Schema {
    suffix: "_partitions",
    columns: &[
        ("consumer_group", "text"),
        ("topic", "text"),
        ("partition", "integer"),
        ("window_days", "integer"),
        ("unit", "text"),
        ("epoch", "bigint"),
        ("owner", "text"),
        ("next_offset", "bigint"),
        ("open_windows", "text"),
        ("commits", "bigint"),
        ("rebuild_until", "bigint"),
        ("replaces_days", "integer"),
        ("replaces_unit", "text"),
    ],
    key: &["consumer_group", "topic", "partition"],
    nullable: &["owner", "next_offset", "open_windows", "rebuild_until", "replaces_days", "replaces_unit"],
};
pub(super) const MEMBERS: Schema = Schema {
    suffix: "_members",
    columns: &[("consumer_group", "text"), ("topic", "text"), ("member", "text"), ("seen", "timestamp with time zone")],
    key: &["consumer_group", "topic", "member"],
    nullable: &[],
};
pub(super) const SENSORS: Schema = Schema {
    suffix: "_sensors",
    columns: &[("consumer_group", "text"), ("topic", "text"), ("sensor_id", "text"), ("partition", "integer")],
    key: &["consumer_group", "topic", "sensor_id"],
    nullable: &[],
};
/// Every table of the sink, in the order they are made.
pub(super) const TABLES: [&Schema; 4] = [&WINDOWS, &STAGING, &PROGRESS, &STATE];
/// The tables of a shared output, made beside those.
pub(super) const SHARED_TABLES: [&Schema; 3] = [&PARTITIONS, &MEMBERS, &SENSORS];

impl Schema {
    /// This table's name beside `t`.
    pub fn name(&self, t: &str) -> String {
        format!("{t}{}", self.suffix)
    }

    /// Its `CREATE TABLE`.
    pub fn create(&self, t: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, kind)| match self.nullable.contains(name) {
                true => format!("{name} {kind}"),
                false => format!("{name} {kind} NOT NULL"),
            })
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            self.name(t),
            columns.join(", "),
            self.key.join(", ")
        )
    }

    /// Its column names, comma-separated, in order.
    pub fn column_list(&self) -> String {
        self.columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }
}

/// Creates the tables beside `t` that are missing, and refuses one that exists with other
/// columns than this consumer writes: never altered silently. A table that exists is left
/// alone (no `CREATE ... IF NOT EXISTS` that the server would answer with a notice).
pub(super) async fn ensure(client: &Client, t: &str, address: &str, tables: &[&Schema]) -> anyhow::Result<()> {
    // Consumers that start together (the members of a shared group) would each find a table
    // missing and create it at once, which PostgreSQL refuses for all but the first: one at a
    // time, under a lock of the transaction, on the table's name.
    client.batch_execute("BEGIN").await.context("starting the tables' check")?;
    let checked = async {
        client
            .execute("SELECT pg_advisory_xact_lock(hashtext('weather-pipeline tables ' || $1))", &[&t])
            .await
            .context("taking the lock of the tables' check")?;
        for schema in tables {
            let name = schema.name(t);
            let exists = check_columns(client, &name, schema.columns, address).await?;
            if !exists {
                client.batch_execute(&schema.create(t)).await.with_context(|| format!("creating table {name}"))?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    let end = if checked.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.context("ending the tables' check")?;
    checked
}

/// True if `table` exists with exactly the `expected` columns, false if it does not exist; an
/// error that says what differs otherwise.
async fn check_columns(client: &Client, table: &str, expected: &[(&str, &str)], address: &str) -> anyhow::Result<bool> {
    let rows = client
        .query(
            // The catalog, not information_schema: that shows only tables this user may use.
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&table],
        )
        .await
        .with_context(|| format!("looking up table {table}"))?;
    if rows.is_empty() {
        return Ok(false);
    }
    let found: BTreeMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let wanted: BTreeMap<String, String> = expected.iter().map(|(n, k)| (n.to_string(), k.to_string())).collect();
    if found == wanted {
        return Ok(true);
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
        "table {table} on {address} exists with other columns than this consumer writes ({}); it is left as it is: \
         name another with --postgres-table, or drop it",
        problems.join("; ")
    )
}

/// Appends `w` as a row of COPY's text format, in the order of [`COLUMNS`].
pub(super) fn copy_row(rows: &mut Vec<u8>, w: &WindowSummary, window: WindowSize, unit: Unit) {
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

    /// Each table is created from its columns: NOT NULL but where it may be NULL, and its key.
    #[test]
    fn tables_are_created_from_their_columns() {
        assert_eq!(
            STATE.create("w"),
            "CREATE TABLE IF NOT EXISTS w_state (consumer_group text NOT NULL, topic text NOT NULL, \
             window_days integer NOT NULL, unit text NOT NULL, rebuilding boolean NOT NULL, \
             ended_with_partial boolean NOT NULL, commits bigint NOT NULL, open_windows text, \
             PRIMARY KEY (consumer_group, topic))"
        );
        assert_eq!(
            PROGRESS.create("w"),
            "CREATE TABLE IF NOT EXISTS w_progress (consumer_group text NOT NULL, topic text NOT NULL, \
             partition integer NOT NULL, next_offset bigint NOT NULL, PRIMARY KEY (consumer_group, topic, partition))"
        );
        assert!(STAGING.create("w").starts_with("CREATE TABLE IF NOT EXISTS w_staging (sensor_id text NOT NULL, "));
        assert!(WINDOWS.create("w").ends_with("PRIMARY KEY (sensor_id, window_days, unit, window_id))"));
    }
}
