//! S3, as every job that writes to it reaches it: the bucket and its endpoint, the flags that
//! name them, a client from the standard AWS credential chain (environment, profile, instance
//! role; never a flag), and what S3 answered when it refuses a bucket.

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation, SharedHttpClient};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::error_chain;

/// `--s3-bucket`, `--s3-endpoint`, `--s3-region`: where a job's S3 copy goes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct S3Args {
    /// S3 bucket to write to. Credentials come from the standard AWS chain
    /// (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profile, instance role).
    #[arg(long, env = "WEATHER_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// S3 endpoint URL, for MinIO or another S3-compatible server (path-style addressing).
    #[arg(long, env = "WEATHER_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// S3 region. Default: from the AWS configuration, else us-east-1.
    #[arg(long, env = "WEATHER_S3_REGION")]
    pub s3_region: Option<String>,
}

impl S3Args {
    /// The bucket the flags name, if any, checked: its name by S3's rules, the endpoint as a
    /// URL. An endpoint or region from the environment (`scripts/stack env` sets one) applies
    /// only to the runs that write to S3; given as a flag without a bucket, it is a mistake,
    /// as are the `others` flags (name, whether given) that only make sense with a bucket.
    pub fn bucket(&self, others: &[(&str, bool)]) -> Result<Option<Bucket>, String> {
        let from_env = |var: &str, value: &Option<String>| std::env::var(var).ok() == *value;
        let flags = [
            ("--s3-endpoint", self.s3_endpoint.is_some() && !from_env("WEATHER_S3_ENDPOINT", &self.s3_endpoint)),
            ("--s3-region", self.s3_region.is_some() && !from_env("WEATHER_S3_REGION", &self.s3_region)),
        ];
        let Some(name) = &self.s3_bucket else {
            return match others.iter().chain(&flags).find(|(_, given)| *given) {
                Some((flag, _)) => Err(format!("{flag} needs --s3-bucket")),
                None => Ok(None),
            };
        };
        check_bucket_name(name).map_err(|e| format!("--s3-bucket: {e}"))?;
        if let Some(endpoint) = &self.s3_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!("--s3-endpoint `{endpoint}` must be a URL starting with http:// or https://"));
            }
        }
        Ok(Some(Bucket { name: name.clone(), endpoint: self.s3_endpoint.clone(), region: self.s3_region.clone() }))
    }
}

/// A bucket and where it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    /// A custom endpoint (MinIO, a local server), addressed path-style.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl Bucket {
    pub fn endpoint_name(&self) -> &str {
        self.endpoint.as_deref().unwrap_or("AWS S3")
    }

    /// The object `key` as an S3 URL, for messages.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
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

/// The HTTPS client of every S3 request and credential look-up: hyper and rustls over ring
/// (the SDK's own default would build aws-lc, see the workspace's Cargo.toml).
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// An S3 client for `bucket`, configured from the standard AWS chain.
pub async fn client(bucket: &Bucket) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    // A local endpoint has no region of its own; don't send the SDK looking for one on an
    // instance metadata service that is not there.
    let env_region = ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|var| std::env::var(var).ok());
    let region =
        bucket.region.clone().or(env_region).or_else(|| bucket.endpoint.as_ref().map(|_| "us-east-1".to_string()));
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    // An S3-compatible server gets checksums only where S3 requires them (the SDK's behaviour
    // before 2025), unless AWS_REQUEST_CHECKSUM_CALCULATION or AWS_RESPONSE_CHECKSUM_VALIDATION
    // say otherwise: many such servers handle the newer default checksums badly, and s3s-fs
    // records an object's checksum after putting its bytes in place, so that a PUT whose
    // client dies in between leaves every later GET failing its check ("streaming error")
    // until the object is written again, which the archive cannot do without reading it.
    if bucket.endpoint.is_some() {
        if std::env::var_os("AWS_REQUEST_CHECKSUM_CALCULATION").is_none() {
            loader = loader.request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        }
        if std::env::var_os("AWS_RESPONSE_CHECKSUM_VALIDATION").is_none() {
            loader = loader.response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        config = config.region(Region::new("us-east-1"));
    }
    if let Some(endpoint) = &bucket.endpoint {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    Client::from_conf(config.build())
}

/// Fails fast on a missing bucket, a rejected name or refused credentials, saying what S3
/// answered; an unreachable endpoint is only reported, because uploads are retried until it
/// is back.
pub async fn check_bucket(client: &Client, bucket: &Bucket) -> Result<(), S3Error> {
    let Err(error) = client.head_bucket().bucket(&bucket.name).send().await else {
        return Ok(());
    };
    let endpoint = bucket.endpoint_name().to_string();
    let Some(status) = error.raw_response().map(|r| r.status().as_u16()) else {
        tracing::warn!("S3 at {endpoint} is not answering yet ({}); uploads will be retried", error_chain(&error));
        return Ok(());
    };
    if status == 404 {
        return Err(S3Error::NoSuchBucket { bucket: bucket.name.clone(), endpoint });
    }
    if status >= 500 {
        tracing::warn!("S3 at {endpoint} answered HTTP {status}; uploads will be retried");
        return Ok(());
    }
    // A HEAD answer has no body: ask again in a way whose answer says why.
    let (code, message) = match client.list_objects_v2().bucket(&bucket.name).max_keys(1).send().await {
        Err(e) => (e.code().map(str::to_string), e.message().map(str::to_string)),
        Ok(_) => (None, None),
    };
    let said = match (&code, &message) {
        (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
        (Some(code), None) => format!("HTTP {status} {code}"),
        _ => format!("HTTP {status}"),
    };
    Err(match code.as_deref() {
        Some("NoSuchBucket") => S3Error::NoSuchBucket { bucket: bucket.name.clone(), endpoint },
        Some("InvalidBucketName") => S3Error::InvalidBucketName { bucket: bucket.name.clone(), endpoint, said },
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken") => {
            S3Error::BadCredentials { bucket: bucket.name.clone(), endpoint, said }
        }
        Some("AccessDenied" | "AllAccessDisabled") => {
            S3Error::AccessDenied { bucket: bucket.name.clone(), endpoint, said }
        }
        None if status == 401 => S3Error::BadCredentials { bucket: bucket.name.clone(), endpoint, said },
        None if status == 403 => S3Error::AccessDenied { bucket: bucket.name.clone(), endpoint, said },
        _ => S3Error::Rejected { bucket: bucket.name.clone(), endpoint, said },
    })
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

    /// A bucket names its objects as S3 URLs and its endpoint for messages; flags that need a
    /// bucket say so.
    #[test]
    fn buckets_name_their_objects_and_endpoint() {
        let mut args = S3Args { s3_bucket: Some("b-1".into()), ..S3Args::default() };
        let bucket = args.bucket(&[]).unwrap().unwrap();
        assert_eq!((bucket.url("weekly.csv").as_str(), bucket.endpoint_name()), ("s3://b-1/weekly.csv", "AWS S3"));
        args.s3_endpoint = Some("http://127.0.0.1:9000".into());
        assert_eq!(args.bucket(&[]).unwrap().unwrap().endpoint_name(), "http://127.0.0.1:9000");
        args.s3_endpoint = Some("127.0.0.1:9000".into());
        assert!(args.bucket(&[]).unwrap_err().contains("--s3-endpoint `127.0.0.1:9000` must be a URL"));
        args.s3_bucket = None;
        assert_eq!(args.bucket(&[("--s3-key", false)]).unwrap_err(), "--s3-endpoint needs --s3-bucket");
        assert_eq!(S3Args::default().bucket(&[("--s3-key", true)]).unwrap_err(), "--s3-key needs --s3-bucket");
        assert_eq!(S3Args::default().bucket(&[]), Ok(None));
    }
}
