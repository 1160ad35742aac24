//! A member's heartbeat kept up by a thread of its own (the archive's `--group`, the
//! aggregator's `--share`), so that the loop's longer steps (a consumer made anew, a file
//! encoded and uploaded, a commit waiting for PostgreSQL) do not pass for a death. It stops
//! beating when the loop has not turned for [`STALLED_LEASES`] leases, so that a stuck member's
//! partitions move on, and beats again if the loop turns again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A loop that has not turned for this many leases is stuck: its heartbeat stops, and the
/// others take its partitions over.
pub const STALLED_LEASES: u32 = 6;

/// The thread that beats for a member every quarter lease (250 ms at least).
pub struct Beater {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// When the loop last turned, in ms since `started`.
    turned: Arc<AtomicU64>,
    started: Instant,
}

impl Beater {
    /// Starts beating for `member` with `beat`, called with 2, 3, ... (the first beat is the
    /// caller's, before: a member is in its group before it deals partitions). A failed beat is
    /// warned about and the next one tried.
    pub fn start<E: std::fmt::Display>(
        member: &str,
        lease: Duration,
        mut beat: impl FnMut(u64) -> Result<(), E> + Send + 'static,
    ) -> Beater {
        let (stop, turned, started) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Instant::now());
        let (stopped, loop_turned, name) = (stop.clone(), turned.clone(), member.to_string());
        let every = (lease / 4).max(Duration::from_millis(250));
        let stalled = (lease * STALLED_LEASES).as_millis() as u64;
        let thread = std::thread::Builder::new().name("heartbeat".into()).spawn(move || {
            let member = name;
            let (mut n, mut said) = (1, false);
            while !stopped.load(Ordering::Relaxed) {
                std::thread::park_timeout(every);
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let idle = (started.elapsed().as_millis() as u64).saturating_sub(loop_turned.load(Ordering::Relaxed));
                if idle > stalled {
                    if !said {
                        tracing::warn!(
                            "member `{member}`'s loop has not turned for {} s: its heartbeat stops, and the others \
                             take its partitions over",
                            idle / 1000
                        );
                        said = true;
                    }
                    continue;
                }
                said = false;
                n += 1;
                if let Err(e) = beat(n) {
                    tracing::warn!(
                        "the heartbeat of member `{member}` failed ({e}); if this lasts {lease:?}, the others take its \
                         partitions over"
                    );
                }
            }
        });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                // The loop's own heartbeats still keep the member alive while it turns.
                tracing::warn!("could not start the heartbeat's thread of member `{member}` ({e})");
                None
            }
        };
        Beater { stop, thread, turned, started }
    }

    /// The loop turned: it is not stuck.
    pub fn turned(&self) {
        self.turned.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Stops beating; the thread is gone when this returns.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Beater {
    /// A run that ends without leaving (an error) stops beating: its lease runs out.
    fn drop(&mut self) {
        self.stop();
    }
}
