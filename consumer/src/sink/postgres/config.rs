//! What a user sets for the warehouse table, checked before any work starts, and how it opens.

use std::sync::Arc;
use std::time::Duration;

use super::partitions::PartitionStore;
use super::target::{PostgresTarget, DEFAULT_TABLE};
use super::Postgres;
use crate::rules::Rules;
use crate::share::store::{GroupStore, Membership};
use crate::sink::table::{Checks, Opening, TableConfig, TableFlags, WindowTable};

/// The warehouse table's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct PostgresArgs {
    /// Also write every window into a PostgreSQL table, exactly once: a URL such as
    /// postgres://weather@127.0.0.1:5432/weather, without a password (it comes from PGPASSWORD
    /// or a password file, ~/.pgpass or PGPASSFILE).
    #[arg(long, env = "WEATHER_POSTGRES_URL", value_name = "URL")]
    pub to_postgres: Option<String>,

    /// The PostgreSQL table; created if missing, with <table>_progress, <table>_state and
    /// <table>_staging beside it.
    #[arg(long, env = "WEATHER_POSTGRES_TABLE", value_name = "NAME", default_value = DEFAULT_TABLE)]
    pub postgres_table: String,

    /// How long to keep retrying an unreachable PostgreSQL server, at start and after a lost
    /// connection, before giving up.
    #[arg(long, env = "WEATHER_POSTGRES_CONNECT_TIMEOUT", value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub postgres_connect_timeout: u64,
}

impl PostgresArgs {
    /// The server and table of `--to-postgres`, checked; none without it.
    pub fn target(&self) -> Result<Option<PostgresTarget>, String> {
        let Some(url) = &self.to_postgres else { return Ok(None) };
        let timeout = Duration::from_secs(self.postgres_connect_timeout);
        PostgresTarget::parse(url, &self.postgres_table, timeout).map(Some)
    }
}

impl TableFlags for PostgresArgs {
    fn flag(&self) -> &'static str {
        "--to-postgres"
    }

    fn check(self: Box<Self>, _: &Checks<'_>) -> Result<Option<Arc<dyn TableConfig>>, String> {
        Ok(self.target()?.map(|target| Arc::new(target) as Arc<dyn TableConfig>))
    }
}

impl TableConfig for PostgresTarget {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn default_group(&self, rules: &Rules) -> String {
        format!(
            "weather-consumer-{}-{}-postgres:{}/{}",
            rules.window.label(),
            rules.unit.name(),
            self.address,
            self.table
        )
    }

    fn shares(&self) -> bool {
        true
    }

    fn group_store(&self, membership: &Membership<'_>) -> anyhow::Result<Box<dyn GroupStore>> {
        Ok(Box::new(PartitionStore::open(self, membership)?))
    }

    fn open(&self, run: &Opening<'_>) -> anyhow::Result<Box<dyn WindowTable>> {
        Ok(Box::new(Postgres::open(run, self)?))
    }
}
