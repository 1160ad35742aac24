//! One commit's transaction: the rows, the progress, the state, and the swap of a rebuild that
//! has caught up, all or nothing.

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::GenericClient;

use super::ahead::COPY_PIECE;
use super::schema::WINDOWS;
use super::Postgres;
use crate::sink::table::Commit;

impl Postgres {
    /// One transaction: the rows, the progress, the state; the swap of a rebuild that has
    /// caught up. True if it swapped.
    pub(super) async fn transact(&self, commit: &Commit<'_>, rows: &[u8]) -> Result<bool, tokio_postgres::Error> {
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

    /// The COPY of this output's rows: into the staging table during a rebuild.
    pub(super) fn copy_statement(&self) -> String {
        let t = &self.target.table;
        let target = if self.state.rebuilding { format!("{t}_staging") } else { t.clone() };
        format!("COPY {target} ({}) FROM STDIN", WINDOWS.column_list())
    }

    /// The rest of a commit's transaction, after its rows: the progress, the swap of a rebuild
    /// that has caught up, the state, and the commit itself. True if it swapped.
    pub(super) async fn finish_transaction(&self, commit: &Commit<'_>) -> Result<bool, tokio_postgres::Error> {
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
    pub(super) async fn rolled_back_on_error<T>(
        &self,
        result: Result<T, tokio_postgres::Error>,
    ) -> Result<T, tokio_postgres::Error> {
        if result.is_err() {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        result
    }
}

/// Deletes the progress and state of other outputs (groups) on this rule set.
pub(super) async fn forget_others(
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
