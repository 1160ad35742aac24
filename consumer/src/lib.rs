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
use sink::file::FileOutput;
use sink::s3::Uploader;
use weather_common::s3;

/// Runs the consumer until its bounded run is done or `shutdown` resolves, then makes all
/// progress durable, uploads the final state and returns what it did.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<Summary> {
    // Held until the end of the run, the final upload included. A table has a lock of its own.
    let _writer = match &settings.file {
        Some(file) => Some(WriterLock::acquire(&file.path, &file.path.display().to_string())?),
        None => None,
    };
    let stop = Stop::when(shutdown);
    let upload = match &settings.file {
        Some(file @ FileOutput { s3: Some(target), .. }) => {
            let client = s3::client(&target.bucket).await;
            s3::check_bucket(&client, &target.bucket).await?;
            Some((client, target.clone(), file.clone()))
        }
        _ => None,
    };
    let (pipeline_settings, thread_stop, runtime) = (settings.clone(), stop.clone(), tokio::runtime::Handle::current());
    let opened = tokio::task::spawn_blocking(move || open::open(pipeline_settings, &thread_stop, &runtime))
        .await
        .context("the consumer thread panicked")??;
    let Some(mut pipeline) = opened else {
        anyhow::bail!("stopped before the consumer was connected");
    };
    let uploader = upload.map(|(client, target, file)| {
        tracing::info!("uploading to {} (at most every {:?})", target.url(), file.upload_interval);
        let uploader = Uploader::start(
            client,
            target.clone(),
            file.path.clone(),
            file.upload_interval,
            pipeline.writer.checkpoint.output_len,
        );
        (uploader, target, file)
    });
    pipeline.writer.uploads = uploader.as_ref().map(|(uploader, ..)| uploader.announcer());
    let consumed =
        tokio::task::spawn_blocking(move || pipeline.run(&stop)).await.context("the consumer thread panicked")?;
    let mut summary = consumed;
    let Some((uploader, target, file)) = uploader else { return summary };
    let report = uploader.finish().await;
    if let Ok(summary) = &mut summary {
        summary.uploads = Some(report);
    }
    let summary = summary?;
    if report.behind {
        anyhow::bail!(
            "{} is complete ({} bytes), but {} could not be updated: it holds {}; the next run uploads it",
            file.path.display(),
            summary.output_len,
            target.url(),
            report.uploaded_len.map_or("an older state".to_string(), |len| format!("the first {len} bytes"))
        );
    }
    Ok(summary)
}
