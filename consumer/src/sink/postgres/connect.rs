//! Connecting to PostgreSQL: an unreachable server is retried with backoff until a deadline;
//! what no retry can mend (wrong credentials, a missing database, no password) stops at once.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};
use weather_common::error_chain;

use super::target::{password_file, PostgresTarget};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What went wrong with PostgreSQL, for a caller that must stop at once or retry.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL at {address} is unreachable after {seconds} s ({error}): start it, or check --to-postgres")]
    Unreachable { address: String, seconds: u64, error: String },
    #[error("PostgreSQL at {address} refused user `{user}` ({said}): check the user in --to-postgres and the password in PGPASSWORD or the password file")]
    Credentials { address: String, user: String, said: String },
    #[error("database `{database}` does not exist on PostgreSQL at {address}: create it (createdb {database}), or name another in --to-postgres")]
    NoDatabase { address: String, database: String },
    #[error("PostgreSQL at {address} asks for a password for user `{user}`, and none was found: set PGPASSWORD, or add a line `{address}:{database}:{user}:PASSWORD` to the password file ({file})")]
    NoPassword { address: String, database: String, user: String, file: String },
}

/// Connects, retrying an unreachable server with backoff until `deadline`; wrong credentials
/// and a missing database stop at once.
pub(super) async fn connect(target: &PostgresTarget, deadline: Instant) -> anyhow::Result<Client> {
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
        } else if error_chain(&error).contains("password missing") {
            // Known at once: no retry finds a password.
            let file = match password_file() {
                Some(path) if path.exists() => format!("{}, which has no line for it", path.display()),
                Some(path) => format!("{}, which does not exist; PGPASSFILE names another", path.display()),
                None => "PGPASSFILE, else ~/.pgpass; HOME is not set".to_string(),
            };
            let (user, database) = (target.user().to_string(), target.database().to_string());
            return Err(PostgresError::NoPassword { address, database, user, file }.into());
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
pub(super) fn connection_lost(client: &Client, error: &tokio_postgres::Error) -> bool {
    match error.as_db_error() {
        None => true,
        Some(db) => client.is_closed() || db.code().code().starts_with("08") || db.code().code().starts_with("57P"),
    }
}
