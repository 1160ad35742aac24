//! The lake in an S3 bucket (or MinIO, or any S3-compatible server). A file is one PUT, so it
//! is visible only when complete. A state object is replaced with a conditional PUT: If-Match
//! its last ETag, or If-None-Match `*` for the first one; S3, MinIO and s3s-fs refuse the
//! write (412) if another writer replaced it since. An entry of the table's log is one PUT with
//! If-None-Match `*`, which S3 (since August 2024) and MinIO make atomic. s3s-fs 0.14.1 (the
//! tests' server) refuses it when the object already exists, but checks before it writes
//! (`object_path.exists()`, then a rename that replaces): two PUTs racing inside that window
//! may both succeed. One writer at a time, as the tests have it, is refused as S3 would.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use std::time::SystemTime;
use tokio::runtime::Handle;
use weather_common::error_chain;
use weather_common::s3::Bucket;

use super::{Store, StoreError, Version};

pub struct S3Store {
    client: Client,
    bucket: Bucket,
    /// The lake's prefix in the bucket, for messages (the keys carry it).
    prefix: String,
    runtime: Handle,
}

impl S3Store {
    pub fn new(client: Client, bucket: Bucket, prefix: &str, runtime: Handle) -> S3Store {
        S3Store { client, bucket, prefix: prefix.to_string(), runtime }
    }
}

/// Whether S3 refused a conditional write because the object changed.
fn is_conflict<E: ProvideErrorMetadata>(
    error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    let status = error.raw_response().map(|r| r.status().as_u16());
    matches!(status, Some(412 | 409))
        || matches!(error.code(), Some("PreconditionFailed" | "ConditionalRequestConflict"))
}

impl Store for S3Store {
    fn describe(&self) -> String {
        format!("{} at {}", self.bucket.url(&self.prefix), self.bucket.endpoint_name())
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let request =
            self.client.put_object().bucket(&self.bucket.name).key(key).body(ByteStream::from(bytes.to_vec()));
        self.runtime
            .block_on(request.send())
            .map(|_| ())
            .map_err(|e| StoreError::failed(format!("uploading {}", self.bucket.url(key)), error_chain(&e)))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let request = self.client.delete_object().bucket(&self.bucket.name).key(key);
        self.runtime
            .block_on(request.send())
            .map(|_| ())
            .map_err(|e| StoreError::failed(format!("removing {}", self.bucket.url(key)), error_chain(&e)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list_modified(prefix)?.into_iter().map(|(key, _)| key).collect())
    }

    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, SystemTime)>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket.name).prefix(prefix).into_paginator().send();
        while let Some(page) = self.runtime.block_on(pages.next()) {
            let page =
                page.map_err(|e| StoreError::failed(format!("listing {}", self.bucket.url(prefix)), error_chain(&e)))?;
            keys.extend(page.contents().iter().filter_map(|o| {
                // An object without a time is taken as written now: too young for a vacuum.
                let modified =
                    o.last_modified().and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or(SystemTime::now());
                Some((o.key()?.to_string(), modified))
            }));
        }
        keys.sort();
        Ok(keys)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read_state(key)?.map(|(bytes, _)| bytes))
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_state(key, bytes, None).map(|_| ())
    }

    fn read_state(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
        let failed = |e: String| StoreError::failed(format!("reading {}", self.bucket.url(key)), e);
        let request = self.client.get_object().bucket(&self.bucket.name).key(key);
        let object = match self.runtime.block_on(request.send()) {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(failed(error_chain(&e))),
        };
        let etag = object.e_tag().unwrap_or_default().to_string();
        let bytes = self.runtime.block_on(object.body.collect()).map_err(|e| failed(e.to_string()))?.into_bytes();
        Ok(Some((bytes.to_vec(), Version(etag))))
    }

    fn write_state(&self, key: &str, bytes: &[u8], expected: Option<&Version>) -> Result<Version, StoreError> {
        let mut request =
            self.client.put_object().bucket(&self.bucket.name).key(key).body(ByteStream::from(bytes.to_vec()));
        request = match expected {
            Some(Version(etag)) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        match self.runtime.block_on(request.send()) {
            Ok(output) => Ok(Version(output.e_tag().unwrap_or_default().to_string())),
            Err(e) if is_conflict(&e) => Err(StoreError::Conflict { key: key.to_string() }),
            Err(e) => Err(StoreError::failed(format!("writing {}", self.bucket.url(key)), error_chain(&e))),
        }
    }
}
