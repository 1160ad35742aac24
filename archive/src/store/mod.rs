//! Where the lake is kept: a local directory ([`disk`]) or an S3 bucket ([`s3`]), behind the
//! few operations the archive needs. A data file is published whole or not at all; a state
//! object is replaced only if it is still the version the writer last saw, which is what keeps
//! an instance that lost a partition from writing for it afterwards; an entry of the table's log
//! is created only if absent, which is what orders the commits of several writers.

pub mod disk;
pub mod s3;

use std::time::SystemTime;

/// The version of a state object a writer last saw: its bytes on disk, its ETag on S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state object is not the version expected: another instance wrote it since.
    #[error("{key} was changed by another writer")]
    Conflict { key: String },
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
}

impl StoreError {
    pub fn failed(what: impl Into<String>, reason: impl ToString) -> StoreError {
        StoreError::Failed { what: what.into(), reason: reason.to_string() }
    }
}

pub trait Store: Send + Sync {
    /// Where the lake is, for messages: a directory or `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// Publishes `bytes` as `key`, visible only once complete; replaces an object of that key.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`; a key that is already gone is fine.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Every key under `prefix`, including unfinished uploads' leftovers (see [`is_leftover`]).
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Every key under `prefix` with the time it was last written, oldest or not.
    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, SystemTime)>, StoreError>;

    /// The bytes of `key`, if it exists.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Publishes `bytes` as `key` only if no object of that key exists, atomically: of two
    /// writers of the same key, one gets [`StoreError::Conflict`].
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// A state object and its version, if it exists.
    fn read_state(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StoreError>;

    /// Replaces a state object if it is still at `expected` (`None`: if it does not exist),
    /// and returns the new version.
    fn write_state(&self, key: &str, bytes: &[u8], expected: Option<&Version>) -> Result<Version, StoreError>;
}

/// A file a writer started and never published (on disk, `.name.tmp`): the key of the file it
/// was for.
pub fn is_leftover(key: &str) -> Option<String> {
    let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
    let name = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    Some(if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") })
}
