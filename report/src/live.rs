//! The topic followed, for `--serve`: read to its end as the one-shot report reads it
//! ([`crate::source`]), then record by record as windows arrive, into the same [`Table`] (the
//! latest value per window). The page is drawn again by [`crate::page`], the one way to draw,
//! once a burst of changes has settled, and handed to whoever shows it.
//!
//! Following goes through `weather_common::source`, as the aggregator's follow mode does: the
//! partitions assigned explicitly, each from the offset after the last record read.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use weather_common::kafka;
use weather_common::shutdown::Stop;
use weather_common::source::{start_offsets, Admit, Progress, Source, TopicView};

use crate::config::Settings;
use crate::page;
use crate::source::{self, Read, GROUP};
use crate::summary::Report;
use crate::table::Table;

const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Reads `settings.topic` to its end, calls `show` with the page drawn from the table, then follows
/// the topic and calls `show` with a new drawing after each settled burst of changes, until
/// `stop`. Returns the report of the table as last seen.
pub fn follow(
    settings: &Settings,
    stop: &Stop,
    mut show: impl FnMut(String) -> anyhow::Result<()>,
) -> anyhow::Result<Report> {
    let mut table = Table::default();
    // By partition, the offset after the last record read.
    let mut read_up_to: BTreeMap<i32, i64> = BTreeMap::new();
    let mut load = table.load();
    let mut read = source::read_to_end(
        &settings.kafka,
        &settings.topic,
        settings.progress.display(),
        stop,
        |p, o, key, value| {
            load.apply(p, o, key, value);
            read_up_to.insert(p, o + 1);
        },
    )?;
    drop(load);
    show(draw(settings, &read, &table)?)?;
    tracing::info!("read `{}` to its end: {} windows; following it", settings.topic, table.len());

    let view = TopicView::look_up(&settings.kafka, &settings.topic, stop)?;
    // A partition not read yet (empty at start) from its beginning. The report has no choice
    // to offer if records were deleted meanwhile: it starts at what the topic still holds.
    let requested = view.partitions.iter().map(|&p| (p, read_up_to.get(&p).copied())).collect();
    let from = start_offsets(&settings.topic, &requested, &view.watermarks, true)?;
    let mut progress = Progress::new(from.clone(), None, None);
    let source = Source::open(&settings.kafka, GROUP, view, &from)?;
    let mut debounce = Debounce::default();
    let following = Instant::now();
    while !stop.requested() {
        match source.poll(POLL_TIMEOUT) {
            Some(Ok(record)) => {
                let (partition, offset) = (record.partition(), record.offset());
                // A fetch may start before the offset asked for (kafka::fetch_start).
                if progress.admit(partition, offset, || None) == Admit::New {
                    table.apply(partition, offset, record.key(), record.payload());
                    progress.consumed(partition, offset);
                    read.records += 1;
                    debounce.changed(Instant::now());
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                return Err(anyhow::Error::new(e).context(format!("following `{}`", settings.topic)));
            }
            Some(Err(e)) => kafka::warn_consuming(&e),
        }
        let now = Instant::now();
        if debounce.due(now) {
            show(draw(settings, &read, &table)?)?;
            debounce.drawn(now, now.elapsed());
        }
    }
    // The summary's rate is then the run's: its records over its time.
    read.elapsed += following.elapsed();
    Ok(Report::new(&settings.topic, read, table, settings.window_days))
}

/// The page of the table as it is now.
fn draw(settings: &Settings, read: &Read, table: &Table) -> anyhow::Result<String> {
    page::render(&Report::new(&settings.topic, read.clone(), table.clone(), settings.window_days))
}

/// A change is drawn once no other came for this long: the aggregator writes a checkpoint's
/// windows in one burst, which becomes one drawing.
pub const SETTLE: Duration = Duration::from_millis(250);
/// ... and at the latest this long after it came, so that a steady stream still shows.
pub const LATEST: Duration = Duration::from_secs(1);

/// When to draw the page again. Never sooner after a drawing than that drawing took: a big
/// table then spends at most half of the following thread's time on drawings.
#[derive(Debug, Default)]
pub struct Debounce {
    /// The first and the last change not drawn yet.
    pending: Option<(Instant, Instant)>,
    /// No drawing before this.
    not_before: Option<Instant>,
}

impl Debounce {
    pub fn changed(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |(first, _)| first);
        self.pending = Some((first, now));
    }

    pub fn due(&self, now: Instant) -> bool {
        let Some((first, last)) = self.pending else { return false };
        let settled = now.saturating_duration_since(last) >= SETTLE || now.saturating_duration_since(first) >= LATEST;
        settled && self.not_before.is_none_or(|t| now >= t)
    }

    /// A drawing that started at `started` and took `took` shows every change so far.
    pub fn drawn(&mut self, started: Instant, took: Duration) {
        self.pending = None;
        self.not_before = Some(started + took + took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing is drawn without a change; a burst is drawn once it settles, a steady stream at
    /// least every LATEST, and a slow drawing spaces the next one out by its own time.
    #[test]
    fn changes_are_drawn_once_settled() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut d = Debounce::default();
        assert!(!d.due(ms(5_000)), "no change, no drawing");

        d.changed(ms(0));
        d.changed(ms(100));
        assert!(!d.due(ms(300)), "the burst goes on");
        assert!(d.due(ms(350)), "settled");
        d.drawn(ms(350), Duration::from_millis(10));
        assert!(!d.due(ms(2_000)), "drawn");

        for n in (1_000..=2_000).step_by(100) {
            d.changed(ms(n));
            let due = d.due(ms(n));
            assert_eq!(due, n >= 2_000, "a steady stream is drawn after LATEST, at {n} ms");
        }
        d.drawn(ms(2_000), Duration::from_millis(800));
        d.changed(ms(2_100));
        assert!(!d.due(ms(3_500)), "not before twice the last drawing's time after its start");
        assert!(d.due(ms(3_600)));
    }
}
