//! The S3 copy of the output file.
//!
//! The consumer announces each new durable length of the local file; the uploader puts that
//! prefix of the file as the object, no more often than the upload interval, and once more
//! at the end. So the object is always a complete, checkpointed state of the local file, and
//! a replay of millions of readings uploads a handful of times, not once per week.
//! Credentials come from the standard AWS chain (environment, profile, instance role) only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

/// Where the copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    pub key: String,
    /// A custom endpoint (MinIO, a local server), addressed path-style.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl S3Target {
    pub fn endpoint_name(&self) -> &str {
        self.endpoint.as_deref().unwrap_or("AWS S3")
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// Why S3 cannot be used at all (as opposed to a passing outage, which is retried). Each says
/// what S3 answered.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error(
        "bucket `{bucket}` does not exist at {endpoint}: create it first (scripts/stack up creates the local one)"
    )]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error("{endpoint} rejects `{bucket}` as a bucket name ({said})")]
    InvalidBucketName { bucket: String, endpoint: String, said: String },
    #[error("{endpoint} does not accept these credentials ({said}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or your AWS profile")]
    BadCredentials { bucket: String, endpoint: String, said: String },
    #[error("access to bucket `{bucket}` at {endpoint} was denied ({said}): the credentials are valid, but not allowed to use this bucket")]
    AccessDenied { bucket: String, endpoint: String, said: String },
    #[error("{endpoint} refused bucket `{bucket}` ({said})")]
    Rejected { bucket: String, endpoint: String, said: String },
}

/// S3's own rules for bucket names, checked before anything is sent, so that a bad
/// `--s3-bucket` is reported as the flag it is.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let problem = if !(3..=63).contains(&name.len()) {
        Some("it must be 3 to 63 characters long")
    } else if !name.chars().all(allowed) {
        Some("it may hold only lowercase letters, digits, dots and hyphens")
    } else if !edge(name.chars().next()) || !edge(name.chars().last()) {
        Some("it must begin and end with a letter or a digit")
    } else if name.contains("..") {
        Some("it may not hold two dots in a row")
    } else if name.parse::<std::net::Ipv4Addr>().is_ok() {
        Some("it may not look like an IP address")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("`{name}` is not a valid S3 bucket name: {problem}")),
        None => Ok(()),
    }
}

/// An S3 client for `target`, configured from the standard AWS chain.
pub async fn client(target: &S3Target) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    // A local endpoint has no region of its own; don't send the SDK looking for one on an
    // instance metadata service that is not there.
    let env_region = ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|var| std::env::var(var).ok());
    let region =
        target.region.clone().or(env_region).or_else(|| target.endpoint.as_ref().map(|_| "us-east-1".to_string()));
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        config = config.region(Region::new("us-east-1"));
    }
    if let Some(endpoint) = &target.endpoint {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    Client::from_conf(config.build())
}

/// Fails fast on a missing bucket, a rejected name or refused credentials, saying what S3
/// answered; an unreachable endpoint is only reported, because uploads are retried until it
/// is back.
pub async fn check_bucket(client: &Client, target: &S3Target) -> Result<(), S3Error> {
    let Err(error) = client.head_bucket().bucket(&target.bucket).send().await else {
        return Ok(());
    };
    let endpoint = target.endpoint_name().to_string();
    let bucket = target.bucket.clone();
    let Some(status) = error.raw_response().map(|r| r.status().as_u16()) else {
        tracing::warn!("S3 at {endpoint} is not answering yet ({}); uploads will be retried", error_chain(&error));
        return Ok(());
    };
    if status == 404 {
        return Err(S3Error::NoSuchBucket { bucket, endpoint });
    }
    if status >= 500 {
        tracing::warn!("S3 at {endpoint} answered HTTP {status}; uploads will be retried");
        return Ok(());
    }
    // A HEAD answer has no body: ask again in a way whose answer says why.
    let (code, message) = match client.list_objects_v2().bucket(&target.bucket).max_keys(1).send().await {
        Err(e) => (e.code().map(str::to_string), e.message().map(str::to_string)),
        Ok(_) => (None, None),
    };
    let said = match (&code, &message) {
        (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
        (Some(code), None) => format!("HTTP {status} {code}"),
        _ => format!("HTTP {status}"),
    };
    Err(match code.as_deref() {
        Some("NoSuchBucket") => S3Error::NoSuchBucket { bucket, endpoint },
        Some("InvalidBucketName") => S3Error::InvalidBucketName { bucket, endpoint, said },
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken") => {
            S3Error::BadCredentials { bucket, endpoint, said }
        }
        Some("AccessDenied" | "AllAccessDisabled") => S3Error::AccessDenied { bucket, endpoint, said },
        None if status == 401 => S3Error::BadCredentials { bucket, endpoint, said },
        None if status == 403 => S3Error::AccessDenied { bucket, endpoint, said },
        _ => S3Error::Rejected { bucket, endpoint, said },
    })
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
                    report.uploads += 1;
                    report.uploaded_len = Some(wanted);
                    next_allowed = Instant::now() + interval;
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    report.failed_attempts += 1;
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
            Ok(()) => {
                report.uploads += 1;
                report.uploaded_len = Some(wanted);
            }
            Err(e) => {
                report.failed_attempts += 1;
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
        .bucket(&target.bucket)
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

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bucket names follow S3's rules, and a bad one says which rule it breaks.
    #[test]
    fn bucket_names_follow_the_s3_rules() {
        for good in ["weather-aggregation", "abc", "my.bucket.2026", &"a".repeat(63)] {
            assert_eq!(check_bucket_name(good), Ok(()), "{good}");
        }
        for (bad, rule) in [
            ("ab", "3 to 63 characters"),
            (&"a".repeat(64), "3 to 63 characters"),
            ("Weather", "lowercase letters"),
            ("my_bucket", "lowercase letters"),
            ("-weather", "begin and end"),
            ("weather.", "begin and end"),
            ("a..b", "two dots"),
            ("192.168.1.1", "IP address"),
        ] {
            let err = check_bucket_name(bad).unwrap_err();
            assert!(err.contains(rule) && err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    /// An upload target names its object as an S3 URL and its endpoint for messages.
    #[test]
    fn targets_name_their_object_and_endpoint() {
        let mut target = S3Target { bucket: "b-1".into(), key: "weekly.csv".into(), endpoint: None, region: None };
        assert_eq!((target.url().as_str(), target.endpoint_name()), ("s3://b-1/weekly.csv", "AWS S3"));
        target.endpoint = Some("http://127.0.0.1:9000".into());
        assert_eq!(target.endpoint_name(), "http://127.0.0.1:9000");
    }
}
