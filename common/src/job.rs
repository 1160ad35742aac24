//! A job's run as one boxed future: what the jobs' `run` functions return.
//!
//! The body of an `async fn` is compiled like a generic function's, in the crate that awaits
//! it, and an optimised build shares none of that between crates. A job's whole run (its Kafka
//! loop, its sinks, the S3 client and the metrics server under them) was therefore compiled
//! again in its binary and in every test that runs it. Each job's `run` hands its future to a
//! function of its own crate that is not generic and boxes it there, so the run is compiled
//! once, in the job's crate, and its binary only polls the box.

use std::future::Future;
use std::pin::Pin;

/// A job's run: resolves to what it did (`T`, an `anyhow::Result` in the jobs).
pub type Run<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What ends a run early (Ctrl-C, SIGTERM, a test's signal), boxed for the same reason.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;
