//! The S3 copy of the output file.
//!
//! The consumer announces each new durable length of the local file; the uploader puts that
//! prefix of the file as the object, no more often than the upload interval, and once more
//! at the end. So the object is always a complete, checkpointed state of the local file, and
//! a replay of millions of readings uploads a handful of times, not once per week.
//! Credentials come from the standard AWS chain (environment, profile, instance role) only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use weather_common::error_chain;
use weather_common::metrics;
use weather_common::s3::Bucket;

/// Where the copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: Bucket,
    pub key: String,
}

impl S3Target {
    pub fn url(&self) -> String {
        self.bucket.url(&self.key)
    }
}

/// The last successful upload of an output, kept beside it as `<output>.upload` for
/// `weather-consumer status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadRecord {
    pub object: String,
    /// The length of the local file that the object holds.
    pub bytes: u64,
    /// RFC 3339, UTC.
    pub uploaded_at: String,
}

impl UploadRecord {
    pub fn path_for(output: &Path) -> PathBuf {
        weather_common::beside(output, ".upload")
    }

    /// The record of `output`, if it was ever uploaded.
    pub fn read(output: &Path) -> Option<UploadRecord> {
        serde_json::from_slice(&std::fs::read(UploadRecord::path_for(output)).ok()?).ok()
    }

    async fn write(&self, output: &Path) {
        let json = serde_json::to_vec(self).expect("an upload record always serializes");
        if let Err(e) = tokio::fs::write(UploadRecord::path_for(output), json).await {
            tracing::warn!("could not record the upload beside {}: {e}", output.display());
        }
    }
}

/// What the uploader did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadReport {
    pub uploads: u64,
    pub failed_attempts: u64,
    /// The length of the local file that the object now holds, if any upload succeeded.
    pub uploaded_len: Option<u64>,
    /// True if the last durable state could not be uploaded before the end.
    pub behind: bool,
}

/// The background uploader of one output file.
pub struct Uploader {
    durable: watch::Sender<u64>,
    task: JoinHandle<UploadReport>,
}

/// Tells the uploader how far the local file is durable.
#[derive(Clone)]
pub struct Announcer(watch::Sender<u64>);

impl Announcer {
    /// The local file is durable up to `len` bytes.
    pub fn announce(&self, len: u64) {
        self.0.send_replace(len);
    }
}

const FINAL_ATTEMPTS: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Uploader {
    /// Starts uploading `path`, whose durable length is `durable_len` now. Must be called
    /// inside a tokio runtime.
    pub fn start(client: Client, target: S3Target, path: PathBuf, interval: Duration, durable_len: u64) -> Uploader {
        let (durable, announced) = watch::channel(durable_len);
        let task = tokio::spawn(upload_loop(client, target, path, interval, announced));
        Uploader { durable, task }
    }

    /// A handle for the consumer loop to announce new durable lengths.
    pub fn announcer(&self) -> Announcer {
        Announcer(self.durable.clone())
    }

    /// Uploads the last announced state (retrying a few times) once every announcer is
    /// gone, and reports.
    pub async fn finish(self) -> UploadReport {
        drop(self.durable);
        self.task.await.unwrap_or_else(|e| {
            tracing::error!("the S3 uploader panicked: {e}");
            UploadReport { behind: true, ..UploadReport::default() }
        })
    }
}

impl UploadReport {
    /// An upload of the file's first `len` bytes landed: counted here and in the metrics.
    fn succeeded(&mut self, len: u64) {
        self.uploads += 1;
        self.uploaded_len = Some(len);
        metrics::set_counter("weather_consumer_uploads_total", &[], self.uploads);
    }

    /// An attempt failed: counted here and in the metrics.
    fn failed(&mut self) {
        self.failed_attempts += 1;
        metrics::set_counter("weather_consumer_upload_failures_total", &[], self.failed_attempts);
    }
}

async fn upload_loop(
    client: Client,
    target: S3Target,
    path: PathBuf,
    interval: Duration,
    mut announced: watch::Receiver<u64>,
) -> UploadReport {
    let mut report = UploadReport::default();
    let mut next_allowed = Instant::now();
    let mut backoff = Duration::from_secs(1);
    'running: loop {
        let wanted = *announced.borrow_and_update();
        if report.uploaded_len != Some(wanted) && (wanted > 0 || report.uploaded_len.is_some()) {
            // Wait for the interval to pass, but not past the end of the run.
            while Instant::now() < next_allowed {
                tokio::select! {
                    _ = sleep_until(next_allowed) => {}
                    changed = announced.changed() => if changed.is_err() { break 'running },
                }
            }
            let wanted = *announced.borrow_and_update();
            match put(&client, &target, &path, wanted).await {
                Ok(()) => {
                    report.succeeded(wanted);
                    next_allowed = Instant::now() + interval;
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    report.failed();
                    tracing::warn!("upload to {} failed, retrying in {backoff:?}: {e}", target.url());
                    next_allowed = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        }
        if announced.changed().await.is_err() {
            break;
        }
    }
    let wanted = *announced.borrow();
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=FINAL_ATTEMPTS {
        if report.uploaded_len == Some(wanted) {
            break;
        }
        match put(&client, &target, &path, wanted).await {
            Ok(()) => report.succeeded(wanted),
            Err(e) => {
                report.failed();
                tracing::warn!("final upload to {} failed (attempt {attempt} of {FINAL_ATTEMPTS}): {e}", target.url());
                if attempt < FINAL_ATTEMPTS {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    report.behind = report.uploaded_len != Some(wanted);
    if report.behind {
        tracing::error!("{} is behind the local file; the next run uploads it", target.url());
    }
    report
}

/// Puts the first `len` bytes of `path` as the object.
async fn put(client: &Client, target: &S3Target, path: &Path, len: u64) -> Result<(), String> {
    let body = ByteStream::read_from()
        .path(path)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    client
        .put_object()
        .bucket(&target.bucket.name)
        .key(&target.key)
        .content_type(if target.key.ends_with(".csv") { "text/csv" } else { "text/plain" })
        .body(body)
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    tracing::debug!("uploaded {len} bytes to {}", target.url());
    let uploaded_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    UploadRecord { object: target.url(), bytes: len, uploaded_at }.write(path).await;
    Ok(())
}
