//! Loading rows ahead of their commit, so that PostgreSQL's work (most of it keeping the
//! primary key's index) goes on while the replay reads, rather than all at the checkpoint: a
//! transaction is opened with a COPY that takes rows as they come, and the commit finishes it.
//! If anything fails on the way, the commit rolls it back and makes the whole transaction again
//! from the rows it kept: sending ahead only ever saves time.

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weather_common::error_chain;

use super::Postgres;
use crate::sink::table::Commit;

/// Bytes of COPY data per message to the server; rows are sent ahead of their commit once
/// this many are waiting.
pub(super) const COPY_PIECE: usize = 64 * 1024;
/// Pieces on their way to the server at most: past that, sending ahead waits for it, rather
/// than hold a second copy of the rows in memory.
const PIECES_UNDER_WAY: usize = 16;

/// Where sending ahead stands since the last commit.
pub(super) enum Ahead {
    /// Nothing sent since the last commit.
    Idle,
    /// A transaction is open, its COPY taking the rows sent.
    Open(Load),
    /// Opening one failed: rows wait for the commit.
    Off,
}

/// The COPY of an open transaction, fed by a task of its own with the pieces sent.
pub(super) struct Load {
    pieces: mpsc::Sender<Bytes>,
    copy: JoinHandle<Result<u64, tokio_postgres::Error>>,
}

impl Postgres {
    /// [`Postgres::transact`] for a transaction whose rows up to `sent` were sent ahead by
    /// `copy`, fed through `pieces`; made whole again if that went wrong.
    pub(super) async fn finish_ahead(
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

    /// Sends the rows not sent yet ahead of their commit, opening its transaction first if
    /// need be. A failure only leaves them for the commit.
    pub(super) fn send_ahead(&mut self) {
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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::rules::Format;
    use crate::sink::postgres::target::PostgresTarget;
    use crate::sink::table::{Opening, WindowTable};
    use crate::units::Unit;
    use crate::window::WindowSize;
    use weather_common::kafka::KafkaArgs;
    use weather_common::shutdown::Stop;

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
        let rules = crate::sink::rules(WindowSize::WEEK, Unit::Celsius, Format::Csv, false);
        let (kafka, stop) = (KafkaArgs::new("127.0.0.1:1"), Stop::default());
        let run = Opening {
            kafka: &kafka,
            group: "g",
            rules: &rules,
            rebuild: false,
            stop: &stop,
            runtime: runtime.handle(),
        };
        let mut table = Postgres::open(&run, &target).unwrap();
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
