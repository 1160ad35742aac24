//! Shutdown: the signal that ends a run, and a flag that blocking loops can check.
//!
//! The Kafka loops run on their own threads (a blocking poll is the fastest way to drain
//! librdkafka), so an async shutdown future is turned into a flag they look at between polls.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Resolves on Ctrl-C or SIGTERM, asking the run to finish what is in flight. A second one
/// quits at once (exit code 130): every binary here is safe to kill at any moment, so nobody has
/// to wait for a slow broker to let go.
pub async fn signal() {
    one_signal().await;
    tracing::warn!("stopping: finishing what is in flight (Ctrl-C again quits at once)");
    tokio::spawn(async {
        one_signal().await;
        eprintln!("quitting at once");
        std::process::exit(130);
    });
}

async fn one_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Set once a stop was asked for; cheap to check in a hot loop.
#[derive(Clone, Default, Debug)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag that is set when `shutdown` resolves. Must be called inside a tokio runtime.
    pub fn when(shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        let stop = Stop::default();
        let flag = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            flag.request();
        });
        stop
    }

    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
