//! The lake archive: every valid reading of the topic in Parquet files, exactly once.
//!
//! - [`layout`]: where files and state live: Hive-style partitions by event time.
//! - [`columns`]: the rows of a file and their Parquet form.
//! - [`roll`]: pure; where a file ends, reading by reading.
//! - [`state`]: a partition's progress and the file decided last, kept with the data, and the
//!   lease that fences an instance that lost the partition.
//! - [`store`]: the lake on disk or in S3.
//! - [`lake`]: taking a partition over: where its reading starts.
//! - [`delta`]: the lake as a Delta Lake table (`--table delta`): commits, checkpoints.
//! - [`compact`] and [`vacuum`]: the table's upkeep: small files merged, unreferenced ones
//!   deleted.
//! - [`group`]: scale-out (`--group`): members, their heartbeats in the lake, and the deal.
//! - [`publisher`]: files encoded and published, each through the state's steps, on a thread
//!   of their own while the loop reads on.
//! - [`archiver`]: the loop that joins them.
//! - [`config`]: the command line, checked into [`config::Settings`].
//! - [`metrics`]: what it shows Prometheus, from the figures its summary counts.
//!
//! Reading the topic (positions, bounded runs) is shared with the consumer, in
//! [`weather_common::source`]; so are the dead letters, in [`weather_common::dead_letter`].

pub mod archiver;
pub mod columns;
pub mod compact;
pub mod config;
pub mod delta;
pub mod group;
pub mod lake;
pub mod layout;
pub mod metrics;
pub mod publisher;
pub mod roll;
pub mod state;
pub mod store;
pub mod vacuum;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use weather_common::job::{Run, Shutdown};
use weather_common::s3;
use weather_common::shutdown::Stop;

use archiver::Archiver;
pub use archiver::Summary;
pub use config::{Cli, Destination, Job, MaintenanceSettings, Settings};
use layout::Layout;
use store::disk::DiskStore;
use store::s3::S3Store;
use store::Store;

/// Archives until the bounded run is done or `shutdown` resolves, publishing every open file
/// at the end, and returns what it did.
pub fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> Run<anyhow::Result<Summary>> {
    start(settings, Box::pin(shutdown))
}

/// [`run`]'s future, boxed here so that it is compiled in this crate only ([`weather_common::job`]).
#[inline(never)]
fn start(settings: Settings, shutdown: Shutdown) -> Run<anyhow::Result<Summary>> {
    Box::pin(archive(settings, shutdown))
}

async fn archive(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Summary> {
    let _metrics = weather_common::metrics::serve(&settings.metrics, "weather-archive")?;
    let stop = Stop::when(shutdown);
    let runtime = tokio::runtime::Handle::current();
    let (store, prefix) = open_store(&settings.destination).await?;
    let layout = Layout::new(&prefix, &settings.topic);
    tokio::task::spawn_blocking(move || Archiver::open(settings, store, layout, &stop, runtime)?.run(&stop))
        .await
        .context("the archive thread panicked")?
}

/// Compacts or vacuums the lake's table, and says what it did (boxed as [`run`] is).
#[inline(never)]
pub fn maintain(settings: MaintenanceSettings) -> Run<anyhow::Result<String>> {
    Box::pin(maintain_table(settings))
}

async fn maintain_table(settings: MaintenanceSettings) -> anyhow::Result<String> {
    let (store, prefix) = open_store(&settings.destination).await?;
    tokio::task::spawn_blocking(move || match settings.task {
        config::Task::Compact { closed_for, checkpoint_every } => {
            Ok(compact::run(store, &prefix, closed_for, checkpoint_every)?.to_string())
        }
        config::Task::Vacuum { retention } => Ok(vacuum::run(store, &prefix, retention)?.to_string()),
    })
    .await
    .context("the maintenance thread panicked")?
}

/// The lake's store, and its prefix in it (empty or ending in `/`).
async fn open_store(destination: &Destination) -> anyhow::Result<(Arc<dyn Store>, String)> {
    let runtime = tokio::runtime::Handle::current();
    Ok(match destination {
        Destination::Disk(dir) => (Arc::new(DiskStore::open(dir)?), String::new()),
        Destination::S3 { bucket, prefix } => {
            let client = s3::client(bucket).await;
            s3::check_bucket(&client, bucket).await?;
            let store = Arc::new(S3Store::new(client, bucket.clone(), prefix, runtime));
            (store, Layout::new(prefix, "").prefix().to_string())
        }
    })
}
