//! How a long run shows its progress: a progress bar (indicatif) on a terminal, a plain log
//! line every 10 s otherwise (a file, a pipe, a container's log), nothing with `--quiet`.
//!
//! Log lines written while a bar is drawn go above it (see [`crate::init_logging`]).

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How a binary shows its progress: flattened into both command lines.
#[derive(clap::Args, Debug, Clone)]
pub struct ProgressArgs {
    /// No progress bar (on a terminal) and no progress lines (otherwise); warnings, errors
    /// and the summary at the end are still printed.
    #[arg(short = 'q', long, env = "WEATHER_QUIET")]
    pub quiet: bool,

    /// When standard error is not a terminal, log a progress line this often.
    #[arg(long, env = "WEATHER_PROGRESS_INTERVAL", value_name = "SECONDS", default_value = "10", value_parser = crate::parse_seconds)]
    pub progress_interval: Duration,
}

impl ProgressArgs {
    /// A bar on a terminal, lines otherwise, nothing when asked to be quiet.
    pub fn display(&self) -> Display {
        match (self.quiet, io::stderr().is_terminal()) {
            (true, _) => Display::Quiet,
            (false, true) => Display::Bar,
            (false, false) => Display::Lines { every: self.progress_interval },
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Bar,
    Lines { every: Duration },
    Quiet,
}

/// A bar redraws at most this often; updating it more often costs for nothing.
const BAR_EVERY: Duration = Duration::from_millis(100);

/// The bar being drawn, if any, so that log lines can be written above it.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// The progress of one run: a count of `unit`s, out of `total` when the run is bounded.
pub struct Meter {
    display: Display,
    unit: &'static str,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    started: Instant,
    last: Instant,
}

impl Meter {
    pub fn new(display: Display, unit: &'static str, total: Option<u64>) -> Meter {
        let bar = (display == Display::Bar).then(|| {
            let template = match total {
                Some(_) => {
                    "{spinner} {elapsed_precise} [{bar:24}] {human_pos}/{human_len} {prefix} ({rate}, ETA {eta}) {msg}"
                }
                None => "{spinner} {elapsed_precise} {human_pos} {prefix} ({rate}) {msg}",
            };
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(template)
                        .expect("a valid template")
                        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.0}/s", state.per_sec());
                        })
                        .with_key("eta", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = w.write_str(&eta(state.pos(), state.len(), state.elapsed()));
                        })
                        .progress_chars("=> "),
                )
                .with_prefix(unit);
            bar.enable_steady_tick(Duration::from_millis(250));
            *ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
            bar
        });
        let now = Instant::now();
        Meter { display, unit, total, bar, started: now, last: now }
    }

    /// Reports `done` units so far; `detail` (e.g. "12 windows written") is asked for only
    /// when something is shown. Cheap enough to call every few hundred units.
    pub fn update(&mut self, done: u64, detail: impl FnOnce() -> String) {
        let every = match self.display {
            Display::Quiet => return,
            Display::Bar => BAR_EVERY,
            Display::Lines { every } => every,
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(detail());
            }
            None => tracing::info!("{}", self.line(done, &detail())),
        }
    }

    /// One progress line: count, rate, what is left, and the detail.
    fn line(&self, done: u64, detail: &str) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 { done as f64 / seconds } else { 0.0 };
        let mut line = format!("{} {} ({}/s)", thousands(done), self.unit, thousands(rate as u64));
        if let Some(total) = self.total {
            line += &format!(", {} to go", thousands(total.saturating_sub(done)));
        }
        if !detail.is_empty() {
            line += ", ";
            line += detail;
        }
        line
    }

    /// Removes the bar; the caller prints its summary next. (Dropping the meter, as on an
    /// error, does the same.)
    pub fn finish(self) {}
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

/// The time from a run's first reading to its last: what its rate counts, in every job and in
/// the benchmark's baselines alike. Start-up before the first reading (connecting, looking the
/// topic up) and the work after the last (a final checkpoint, the files still open) are not in
/// it: they are in the wall time a user waits, which the benchmark shows beside it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Span {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Span {
    /// A reading was taken: the clock is read for the first one only, so that this costs a
    /// branch per reading.
    pub fn read(&mut self) {
        if self.first.is_none() {
            self.first = Some(Instant::now());
        }
    }

    /// The readings so far were all taken by now: called where a loop reads the clock anyway,
    /// and once its last reading is taken.
    pub fn taken(&mut self) {
        if self.first.is_some() {
            self.last = Some(Instant::now());
        }
    }

    /// From the first reading to the last one noted by [`Span::taken`]; zero before.
    pub fn elapsed(&self) -> Duration {
        match (self.first, self.last) {
            (Some(first), Some(last)) => last.duration_since(first),
            _ => Duration::ZERO,
        }
    }
}

/// The time left at the average rate of the whole run so far, which a broker that serves
/// partitions one after the other or pauses for seconds does not throw off as a rate of the
/// last few seconds does; `?` until there is a rate to go by.
fn eta(done: u64, total: Option<u64>, elapsed: Duration) -> String {
    match total {
        Some(total) if done > 0 && elapsed >= Duration::from_secs(1) => {
            let left = elapsed.as_secs_f64() * (total.saturating_sub(done) as f64 / done as f64);
            format!("{:#}", indicatif::HumanDuration(Duration::from_secs_f64(left.round())))
        }
        _ => "?".to_string(),
    }
}

/// A count as people read it, with thousands separators (`1,600,000`), as the bar shows counts.
pub fn thousands(n: u64) -> String {
    indicatif::HumanCount(n).to_string()
}

/// `n` things, in the plural unless there is one: `1 checkpoint`, `1,024 checkpoints`.
pub fn counted(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", thousands(n), if n == 1 { "" } else { "s" })
}

/// Standard error, written above the progress bar when one is drawn.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write(buf)),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A progress line says how many, how fast, how many are left, and the detail.
    #[test]
    fn lines_say_count_rate_and_what_is_left() {
        let meter = Meter::new(Display::Lines { every: Duration::ZERO }, "readings", Some(1000));
        let line = meter.line(250, "3 windows written");
        assert!(line.starts_with("250 readings ("), "{line}");
        assert!(line.ends_with("/s), 750 to go, 3 windows written"), "{line}");
        let big = Meter::new(Display::Lines { every: Duration::ZERO }, "readings", Some(2_000_000));
        assert!(
            big.line(1_600_000, "").contains("1,600,000 readings (") && big.line(0, "").contains("2,000,000 to go")
        );
        let open = Meter::new(Display::Lines { every: Duration::ZERO }, "readings", None);
        assert!(!open.line(5, "").contains("to go"));
    }

    /// No ETA before there is a rate to go by; then the average rate of the run.
    #[test]
    fn eta_goes_by_the_average_rate() {
        assert_eq!(eta(0, Some(100), Duration::from_secs(12)), "?");
        assert_eq!(eta(10, Some(100), Duration::from_millis(200)), "?");
        assert_eq!(eta(25, Some(100), Duration::from_secs(10)), "30s");
        assert_eq!(eta(100, Some(100), Duration::from_secs(10)), "0s");
    }

    /// Counts read as people write them.
    #[test]
    fn counts_have_separators_and_plurals() {
        assert_eq!(thousands(1_600_000), "1,600,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(counted(1, "checkpoint"), "1 checkpoint");
        assert_eq!(counted(0, "partition"), "0 partitions");
        assert_eq!(counted(4096, "reading"), "4,096 readings");
    }

    /// A span runs from the first reading to the last noted one: time before the first, and
    /// time after the last noted, are not in it.
    #[test]
    fn a_span_runs_from_the_first_reading_to_the_last() {
        let mut span = Span::default();
        span.taken();
        assert_eq!(span.elapsed(), Duration::ZERO, "nothing read yet");
        std::thread::sleep(Duration::from_millis(30));
        span.read();
        let first = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        span.read();
        span.taken();
        let spanned = span.elapsed();
        std::thread::sleep(Duration::from_millis(30));
        assert!(spanned >= Duration::from_millis(20) && spanned <= first.elapsed(), "{spanned:?}");
        assert_eq!(span.elapsed(), spanned, "nothing noted after the last");
    }

    /// Quiet shows nothing and never asks for the detail.
    #[test]
    fn quiet_never_asks_for_the_detail() {
        let mut meter = Meter::new(Display::Quiet, "readings", None);
        meter.last -= Duration::from_secs(60);
        meter.update(1, || panic!("asked for the detail"));
    }
}
