//! The aggregating consumer: readings from the `weather` topic in, window averages out.
//!
//! - [`window`]: pure; readings in, finished window summaries out, by `record_id`.
//! - [`units`]: °C/°F and exact rounding (ties to even).
//! - [`sink`]: TXT and CSV row formats, the durable output file, S3, and the window tables
//!   (PostgreSQL, the aggregates topic) with the seam they share.
//! - [`checkpoint`]: ties the output file to Kafka offsets so a crash loses and doubles nothing.
//! - [`start`]: the plan a `--start` / `--until` makes for an output, `--dry-run`.
//! - [`open`]: a run's start: the plan, the checkpoint it resumes or rolls back, the output.
//! - [`pipeline`]: the loop that joins them.
//!
//! Reading the topic (positions, bounded runs, the dead-letter topic) is shared with the
//! other jobs that read it, in [`weather_common::source`] and [`weather_common::dead_letter`].
//! - [`rules`]: what an output computes and how it writes it, recorded once.
//! - [`config`]: the command line, checked into [`config::Settings`].
//! - [`status`]: `weather-consumer status`, where a consumer stands.

pub mod checkpoint;
pub mod config;
pub mod open;
pub mod pipeline;
pub mod rules;
pub mod sink;
pub mod start;
pub mod status;
pub mod units;
pub mod window;

use std::future::Future;

use anyhow::Context;
use weather_common::lock::WriterLock;
use weather_common::shutdown::Stop;

pub use config::{Cli, Command, Settings};
pub use open::dry_run;
pub use pipeline::Summary;
use sink::s3::Uploader;
use weather_common::s3;

/// Runs the consumer until its bounded run is done or `shutdown` resolves, then makes all
/// progress durable, uploads the final state and returns what it did.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<Summary> {
    // Held until the end of the run, the final upload included. A table has a lock of its own.
    let _writer = match settings.file {
        true => Some(WriterLock::acquire(&settings.output, &settings.output.display().to_string())?),
        false => None,
    };
    let stop = Stop::when(shutdown);
    let s3 = match &settings.s3 {
        Some(target) => {
            let client = s3::client(&target.bucket).await;
            s3::check_bucket(&client, &target.bucket).await?;
            Some((client, target.clone()))
        }
        None => None,
    };
    let (pipeline_settings, thread_stop, runtime) = (settings.clone(), stop.clone(), tokio::runtime::Handle::current());
    let opened = tokio::task::spawn_blocking(move || open::open(pipeline_settings, &thread_stop, &runtime))
        .await
        .context("the consumer thread panicked")??;
    let Some(mut pipeline) = opened else {
        anyhow::bail!("stopped before the consumer was connected");
    };
    let uploader = s3.map(|(client, target)| {
        tracing::info!("uploading to {} (at most every {:?})", target.url(), settings.upload_interval);
        Uploader::start(
            client,
            target,
            settings.output.clone(),
            settings.upload_interval,
            pipeline.writer.checkpoint.output_len,
        )
    });
    pipeline.writer.uploads = uploader.as_ref().map(Uploader::announcer);
    let consumed =
        tokio::task::spawn_blocking(move || pipeline.run(&stop)).await.context("the consumer thread panicked")?;
    let report = match uploader {
        Some(uploader) => Some(uploader.finish().await),
        None => None,
    };
    let mut summary = consumed?;
    summary.uploads = report;
    if let (Some(report), Some(target)) = (report, &settings.s3) {
        if report.behind {
            anyhow::bail!(
                "{} is complete ({} bytes), but {} could not be updated: it holds {}; the next run uploads it",
                settings.output.display(),
                summary.output_len,
                target.url(),
                report.uploaded_len.map_or("an older state".to_string(), |len| format!("the first {len} bytes"))
            );
        }
    }
    Ok(summary)
}
