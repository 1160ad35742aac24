//! The aggregating consumer: readings from the `weather` topic in, window averages out.
//!
//! - [`window`]: pure; readings in, finished window summaries out, by `record_id`.
//! - [`units`]: °C/°F and exact rounding (ties to even).
//! - [`sink`]: TXT and CSV row formats over any `Write`, the durable output file, S3.
//! - [`checkpoint`]: ties the output file to Kafka offsets so a crash loses and doubles nothing.
//! - [`dead_letter`]: rejected readings, kept aside with their reason.
//! - [`source`]: the Kafka side: start offsets, bounded runs, commits.
//! - [`pipeline`]: the loop that joins them.
//! - [`config`]: the command line, checked into [`config::Settings`].
//! - [`status`]: `weather-consumer status`, where a consumer stands.

pub mod checkpoint;
pub mod config;
pub mod dead_letter;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod status;
pub mod units;
pub mod window;

use std::future::Future;

use anyhow::Context;
use weather_common::shutdown::Stop;

use checkpoint::Checkpoint;
pub use config::{Cli, Command, Settings};
use dead_letter::DeadLetters;
use pipeline::Pipeline;
pub use pipeline::Summary;
use sink::file::OutputFile;
use sink::s3::{self, Uploader};
use source::{Source, Start};
use window::Windows;

/// Runs the consumer until its bounded run is done or `shutdown` resolves, then makes all
/// progress durable, uploads the final state and returns what it did.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<Summary> {
    let stop = Stop::when(shutdown);
    let s3 = match &settings.s3 {
        Some(target) => {
            let client = s3::client(target).await;
            s3::check_bucket(&client, target).await?;
            Some((client, target.clone()))
        }
        None => None,
    };
    let (pipeline_settings, thread_stop, runtime) = (settings.clone(), stop.clone(), tokio::runtime::Handle::current());
    let opened = tokio::task::spawn_blocking(move || open(pipeline_settings, &thread_stop, &runtime))
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
            pipeline.checkpoint.output_len,
        )
    });
    pipeline.uploads = uploader.as_ref().map(Uploader::announcer);
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

/// Loads the checkpoint, connects to Kafka (retrying while it is unreachable), prepares the
/// dead-letter topic and the output; `None` if a stop came first.
fn open(settings: Settings, stop: &Stop, runtime: &tokio::runtime::Handle) -> anyhow::Result<Option<Pipeline>> {
    let rules = settings.rules();
    let resumed = if settings.from_beginning { None } else { Checkpoint::load(&settings.output, &rules)? };
    let start = match (&resumed, settings.from_beginning) {
        (Some(checkpoint), _) => Start::Offsets(checkpoint.offsets.clone()),
        (None, true) => Start::Earliest,
        (None, false) => Start::Committed,
    };
    tracing::info!(
        "reading `{}` on {} as group `{}`, from {}",
        settings.topic,
        settings.kafka.bootstrap_servers,
        settings.group,
        match &start {
            Start::Earliest => "the beginning (rebuilding the output)".to_string(),
            Start::Committed => "the group's committed offsets (no checkpoint yet)".to_string(),
            Start::Offsets(o) => format!("the checkpoint ({} partitions)", o.len()),
        }
    );
    let source = Source::open(
        &settings.kafka,
        &settings.group,
        &settings.topic,
        start,
        settings.until_end,
        settings.allow_data_loss,
    )?;
    if stop.requested() {
        return Ok(None);
    }
    let dead_letters = DeadLetters::new(&settings.kafka, &settings.dead_letter_topic, runtime.clone());
    let checkpoint = match resumed {
        Some(checkpoint) => checkpoint,
        None => {
            if std::fs::metadata(&settings.output).is_ok_and(|m| m.len() > 0) {
                tracing::info!("{} has no checkpoint under these rules: writing it afresh", settings.output.display());
            }
            // Recorded before the file is emptied, so a crash in between cannot leave an old
            // checkpoint next to a new, shorter file.
            let mut fresh = Checkpoint::new(rules, Windows::new(settings.layout.size));
            fresh.offsets.clone_from(&source.progress.next);
            fresh
                .save(&settings.output)
                .with_context(|| format!("writing the checkpoint beside {}", settings.output.display()))?;
            fresh
        }
    };
    let format = sink::row_format(settings.format, settings.layout);
    let mut output = OutputFile::open(&settings.output, checkpoint.output_len)
        .with_context(|| format!("opening the output {}", settings.output.display()))?;
    if output.is_empty() {
        format.write_header(&mut output).context("writing the output header")?;
    }
    Ok(Some(Pipeline { settings, checkpoint, source, output, format, dead_letters, uploads: None }))
}
