//! Where the windows go: `--to-postgres` checked into a server, a database and a user, and the
//! password looked up when connecting, as libpq does: `PGPASSWORD`, else a password file
//! (`PGPASSFILE`, else `~/.pgpass`). Never from the URL or a flag, never printed.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// The default table.
pub const DEFAULT_TABLE: &str = "weather_aggregates";
/// The longest table name whose companions (`_progress`, `_staging`) still fit PostgreSQL's 63
/// bytes.
const MAX_TABLE_LEN: usize = 63 - "_progress".len();

/// Where the windows go: a server, a database, a user and a table; the password is looked up
/// when connecting.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    pub(super) config: Config,
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

    pub(super) fn host_port(&self) -> String {
        self.address.rsplit_once('/').map_or(self.address.clone(), |(hp, _)| hp.to_string())
    }

    pub(super) fn user(&self) -> &str {
        self.config.get_user().unwrap_or_default()
    }

    pub(super) fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// The configuration with the password, if the environment or a password file has one.
    pub(super) fn with_password(&self) -> Config {
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

/// The password file libpq reads: `PGPASSFILE`, else `~/.pgpass`.
pub(super) fn password_file() -> Option<PathBuf> {
    std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")))
}

/// The password for `user` on `host_port` and `database`: `PGPASSWORD`, else the password file.
fn password(host_port: &str, database: &str, user: &str) -> Option<String> {
    if let Ok(password) = std::env::var("PGPASSWORD") {
        return Some(password);
    }
    let text = std::fs::read_to_string(password_file()?).ok()?;
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
}
