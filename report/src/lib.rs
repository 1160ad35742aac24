//! The report: a compacted aggregates topic (written by `weather-consumer --to-topic`) read
//! as a table, printed, written as CSV and charted in one HTML page, or followed and served as a
//! live page.
//!
//! - [`source`]: reads the topic from its beginning to its end, committed records only.
//! - [`table`]: pure; the latest value per window, tombstones, bad records kept aside.
//! - [`summary`]: pure; per window length and sensor: windows, gaps, min / mean / max.
//! - [`csv`]: the table in the consumer's CSV columns.
//! - [`chart`], [`page`]: plotters' SVG charts in one self-contained HTML page.
//! - [`hints`]: pure; what to say when the topic is not an aggregates topic.
//! - [`live`]: `--serve`'s table: the topic followed, the page drawn again as windows arrive.
//! - [`serve`]: `--serve`'s HTTP server: the page, and each new drawing as a server-sent event.
//! - [`config`]: the command line, checked into [`Settings`].

pub mod chart;
pub mod config;
pub mod csv;
pub mod hints;
pub mod live;
pub mod page;
pub mod serve;
pub mod source;
pub mod summary;
pub mod table;

use std::future::Future;
use std::path::Path;

use anyhow::{bail, Context};
use weather_common::job::{Run, Shutdown};
use weather_common::kafka::TopicError;
use weather_common::shutdown::Stop;
use weather_common::source::SourceError;

pub use config::{Cli, Output, Settings};
pub use summary::Report;
use table::Table;

/// Reads the topic to its end, writes the files asked for, and returns the report to print.
/// `shutdown` stops the reading (nothing is written then). With `--serve`, follows the topic
/// and serves its live page until `shutdown` instead ([`serve::run`]).
pub fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> Run<anyhow::Result<Report>> {
    start(settings, Box::pin(shutdown))
}

/// [`run`]'s future, boxed here so that it is compiled in this crate only ([`weather_common::job`]).
#[inline(never)]
fn start(settings: Settings, shutdown: Shutdown) -> Run<anyhow::Result<Report>> {
    Box::pin(make_report(settings, shutdown))
}

async fn make_report(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Report> {
    let (csv, html) = match &settings.output {
        // Served until `shutdown`; the report is then the table as last seen.
        Output::Serve(address) => return serve::run(address.clone(), settings, shutdown).await,
        Output::Files { csv, html } => (csv.clone(), html.clone()),
    };
    let stop = Stop::when(shutdown);
    // A blocking poll on a thread of its own is the fastest way to drain librdkafka.
    tokio::task::spawn_blocking(move || report(&settings, csv.as_deref(), html.as_deref(), &stop))
        .await
        .context("the report thread panicked")?
}

fn report(settings: &Settings, csv: Option<&Path>, html: Option<&Path>, stop: &Stop) -> anyhow::Result<Report> {
    let mut table = Table::default();
    let mut load = table.load();
    let read =
        source::read_to_end(&settings.kafka, &settings.topic, settings.progress.display(), stop, |p, o, key, value| {
            load.apply(p, o, key, value)
        });
    drop(load);
    let read = match read {
        Ok(read) => read,
        Err(e) => match e.downcast_ref::<SourceError>() {
            Some(SourceError::Topic(TopicError::Missing { topic, brokers, existing })) => {
                bail!("{}", hints::missing_topic(topic, brokers, existing))
            }
            _ => return Err(e),
        },
    };
    // Records and not one of them a window or a tombstone: the topic is not what the report
    // reads, and a table of nothing would only hide that.
    if read.records > 0 && table.is_empty() && table.deleted == 0 && table.bad_records() == read.records {
        let existing = source::topics(&settings.kafka);
        bail!("{}", hints::not_aggregates(&settings.topic, read.records, &table.bad_by_category, &existing));
    }
    let mut report = Report::new(&settings.topic, read, table, settings.window_days);
    // Both files are rendered before either is written: a CSV that cannot be written (several
    // window lengths) leaves no half of the outputs behind.
    let csv = csv.map(|path| csv::render(&report).map(|bytes| (path, bytes))).transpose()?;
    let html = html.map(|path| page::render(&report).map(|text| (path, text))).transpose()?;
    if let Some((path, bytes)) = csv {
        replace(path, &bytes)?;
        report.written.push(("the table as CSV", path.to_path_buf()));
    }
    if let Some((path, text)) = html {
        replace(path, text.as_bytes())?;
        report.written.push(("the charts as HTML", path.to_path_buf()));
    }
    Ok(report)
}

/// Writes `path` whole or not at all: a browser or a script never sees half a file.
fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = weather_common::beside(path, ".tmp");
    std::fs::write(&temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))
}
