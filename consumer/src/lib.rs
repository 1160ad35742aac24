//! The aggregating consumer: readings from the `weather` topic in, window averages out.
//!
//! - [`window`]: pure; readings in, finished window summaries out, by `record_id`.
//! - [`units`]: °C/°F and exact rounding (ties to even), from [`weather_common::units`].
//! - [`rules`]: what an output computes and how it writes it, recorded once.
//! - [`sink`]: TXT and CSV row formats, the durable output file and its S3 copy, and the window
//!   tables (PostgreSQL, the aggregates topic) with the seam they share; each destination owns
//!   its flags and how it opens.
//! - [`checkpoint`]: ties the output file to Kafka offsets so a crash loses and doubles nothing.
//! - [`start`]: the plan a `--start` / `--until` makes for an output, `--dry-run`.
//! - [`open`]: a run's start: the plan, the checkpoint it resumes or rolls back, the outputs.
//! - [`pipeline`]: the loop that joins them.
//! - [`config`]: the command line, checked into [`config::Settings`].
//! - [`share`]: scale-out, the members of a group sharing the partitions (`--share`).
//! - [`status`]: `weather-consumer status`, where a consumer stands.
//! - [`metrics`]: what it shows Prometheus, from the figures its summary counts.
//!
//! Reading the topic (positions, bounded runs, the dead-letter topic) is shared with the
//! other jobs that read it, in [`weather_common::source`] and [`weather_common::dead_letter`].

pub mod checkpoint;
pub mod config;
pub mod metrics;
pub mod open;
pub mod pipeline;
pub mod rules;
pub mod share;
pub mod sink;
pub mod start;
pub mod status;
pub mod units;
pub mod window;

use std::future::Future;

use anyhow::Context;
use weather_common::job::{Run, Shutdown};
use weather_common::lock::WriterLock;
use weather_common::shutdown::Stop;

pub use config::{Cli, Command, Settings};
pub use open::dry_run;
pub use pipeline::Summary;
use sink::file::FileOutput;
use weather_common::s3;

/// Runs the consumer until its bounded run is done or `shutdown` resolves, then makes all
/// progress durable, uploads the final state and returns what it did.
pub fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> Run<anyhow::Result<Summary>> {
    start(settings, Box::pin(shutdown))
}

/// [`run`]'s future, boxed here so that it is compiled in this crate only ([`weather_common::job`]).
#[inline(never)]
fn start(settings: Settings, shutdown: Shutdown) -> Run<anyhow::Result<Summary>> {
    Box::pin(consume(settings, shutdown))
}

async fn consume(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Summary> {
    // Held until the end of the run, the final upload included. A table has a lock of its own.
    let _writer = match &settings.file {
        Some(file) => Some(WriterLock::acquire(&file.path, &file.path.display().to_string())?),
        None => None,
    };
    let _metrics = weather_common::metrics::serve(&settings.metrics, "weather-consumer")?;
    let stop = Stop::when(shutdown);
    if let Some(share) = settings.share.clone() {
        let runtime = tokio::runtime::Handle::current();
        return tokio::task::spawn_blocking(move || share::member::run(&settings, &share, &stop, &runtime))
            .await
            .context("the member's thread panicked")?;
    }
    let s3 = match settings.file.as_ref().and_then(|file| file.s3.as_ref()) {
        Some(target) => {
            let client = s3::client(&target.bucket).await;
            s3::check_bucket(&client, &target.bucket).await?;
            Some(client)
        }
        None => None,
    };
    let (pipeline_settings, thread_stop, runtime) = (settings.clone(), stop.clone(), tokio::runtime::Handle::current());
    let opened = tokio::task::spawn_blocking(move || open::open(pipeline_settings, &thread_stop, &runtime, s3))
        .await
        .context("the consumer thread panicked")??;
    let Some((pipeline, uploader)) = opened else {
        anyhow::bail!("stopped before the consumer was connected");
    };
    let consumed =
        tokio::task::spawn_blocking(move || pipeline.run(&stop)).await.context("the consumer thread panicked")?;
    let Some(uploader) = uploader else { return consumed };
    let report = uploader.finish().await;
    let mut summary = consumed?;
    summary.uploads = Some(report);
    if let (true, Some(FileOutput { path, s3: Some(target), .. })) = (report.behind, &settings.file) {
        anyhow::bail!(
            "{} is complete ({} bytes), but {} could not be updated: it holds {}; the next run uploads it",
            path.display(),
            summary.output_len,
            target.url(),
            report.uploaded_len.map_or("an older state".to_string(), |len| format!("the first {len} bytes"))
        );
    }
    Ok(summary)
}
