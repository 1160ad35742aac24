//! The lake in a local directory. A file is written under a hidden temporary name beside its
//! final one (`.name.tmp`, which readers' `*.parquet` globs skip), fsynced, renamed into place
//! and its directory fsynced: a reader sees all of it or nothing, and a crash leaves at most a
//! leftover that the next owner of the partition removes. A state file is replaced under an
//! advisory lock, after checking that it is still the version its writer last saw. An entry of
//! the table's log is written under a temporary name of its writer's own and hard-linked into
//! place: link(2) never replaces an existing name (EEXIST), so of two writers of one entry,
//! exactly one succeeds, which is the put-if-absent the Delta protocol asks of a file system.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::{Store, StoreError, Version};

pub struct DiskStore {
    root: PathBuf,
    /// Names this process's temporary files of [`Store::put_new`] apart.
    written: AtomicU64,
}

impl DiskStore {
    pub fn open(root: &Path) -> Result<DiskStore, StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError::failed(format!("creating {}", root.display()), e))?;
        Ok(DiskStore { root: root.to_path_buf(), written: AtomicU64::new(0) })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Creates `dir` (under the root) if missing, durably: with the new directories' entries
    /// synced in their parents, so that what is published in it survives a crash too.
    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        if !dir.is_dir() {
            fs::create_dir_all(dir)?;
            let mut d = dir;
            while d != self.root {
                let parent = d.parent().expect("under the root");
                File::open(parent)?.sync_all()?;
                d = parent;
            }
        }
        Ok(())
    }

    /// Writes `bytes` to `path` through a temporary file, durably.
    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = path.parent().expect("keys lie under the root");
        self.create_dir(dir)?;
        let name = path.file_name().expect("a key names a file").to_string_lossy();
        let temporary = dir.join(format!(".{name}.tmp"));
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        File::open(dir)?.sync_all()
    }
}

impl Store for DiskStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key);
        self.replace(&path, bytes).map_err(|e| StoreError::failed(format!("writing {}", path.display()), e))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::failed(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list_modified(prefix)?.into_iter().map(|(key, _)| key).collect())
    }

    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, SystemTime)>, StoreError> {
        let mut keys = Vec::new();
        let mut dirs = vec![self.path(prefix)];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::failed(format!("listing {}", dir.display()), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::failed(format!("listing {}", dir.display()), e))?;
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(path);
                } else if let Ok(key) = path.strip_prefix(&self.root) {
                    // A file removed since it was listed has no time: it is not listed.
                    if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                        keys.push((key.to_string_lossy().replace('\\', "/"), modified));
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::failed(format!("reading {}", path.display()), e)),
        }
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key);
        let failed = |e: io::Error| StoreError::failed(format!("writing {}", path.display()), e);
        let dir = path.parent().expect("keys lie under the root");
        self.create_dir(dir).map_err(failed)?;
        let name = path.file_name().expect("a key names a file").to_string_lossy();
        let n = self.written.fetch_add(1, Ordering::Relaxed);
        let temporary = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let mut file = OpenOptions::new().write(true).create_new(true).open(&temporary).map_err(failed)?;
        let linked =
            file.write_all(bytes).and_then(|()| file.sync_all()).and_then(|()| fs::hard_link(&temporary, &path));
        // The temporary name goes whatever happened; a crash before this leaves it, hidden.
        let _ = fs::remove_file(&temporary);
        match linked {
            Ok(()) => File::open(dir).and_then(|d| d.sync_all()).map_err(failed),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::Conflict { key: key.to_string() }),
            Err(e) => Err(failed(e)),
        }
    }

    fn read_state(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
        let path = self.path(key);
        match fs::read(&path) {
            Ok(bytes) => {
                let version = Version(String::from_utf8_lossy(&bytes).into_owned());
                Ok(Some((bytes, version)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::failed(format!("reading {}", path.display()), e)),
        }
    }

    fn write_state(&self, key: &str, bytes: &[u8], expected: Option<&Version>) -> Result<Version, StoreError> {
        let path = self.path(key);
        let failed = |e: io::Error| StoreError::failed(format!("writing {}", path.display()), e);
        self.create_dir(path.parent().expect("under the root")).map_err(failed)?;
        // Held while the state is compared and replaced; released when dropped, or by the
        // kernel if this process dies.
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(weather_common::beside(&path, ".lock"))
            .map_err(failed)?;
        lock.lock().map_err(failed)?;
        let current = self.read_state(key)?.map(|(_, version)| version);
        if current.as_ref() != expected {
            return Err(StoreError::Conflict { key: key.to_string() });
        }
        self.replace(&path, bytes).map_err(failed)?;
        Ok(Version(String::from_utf8_lossy(bytes).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::is_leftover;

    /// Files are published whole under nested keys, listed, replaced and removed; a state is
    /// replaced only at the version its writer saw.
    #[test]
    fn files_and_states_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        store.put("topic=w/date=2026-01-01/hour=00/w+0+1.parquet", b"one").unwrap();
        store.put("topic=w/date=2026-01-01/hour=00/w+0+1.parquet", b"two").unwrap();
        fs::write(dir.path().join("topic=w/date=2026-01-01/hour=00/.w+0+9.parquet.tmp"), b"half").unwrap();
        let keys = store.list("topic=w/").unwrap();
        assert_eq!(
            keys,
            ["topic=w/date=2026-01-01/hour=00/.w+0+9.parquet.tmp", "topic=w/date=2026-01-01/hour=00/w+0+1.parquet"]
        );
        assert_eq!(is_leftover(&keys[0]).as_deref(), Some("topic=w/date=2026-01-01/hour=00/w+0+9.parquet"));
        assert_eq!(is_leftover(&keys[1]), None);
        assert_eq!(fs::read(dir.path().join(&keys[1])).unwrap(), b"two");
        store.delete(&keys[1]).unwrap();
        store.delete(&keys[1]).unwrap();
        assert_eq!(store.list("topic=w/").unwrap().len(), 1);
        assert!(store.list("topic=other/").unwrap().is_empty());

        let v1 = store.write_state("_state/w-0.json", b"{\"a\":1}", None).unwrap();
        assert!(matches!(store.write_state("_state/w-0.json", b"x", None), Err(StoreError::Conflict { .. })));
        let v2 = store.write_state("_state/w-0.json", b"{\"a\":2}", Some(&v1)).unwrap();
        assert!(matches!(store.write_state("_state/w-0.json", b"x", Some(&v1)), Err(StoreError::Conflict { .. })));
        assert_eq!(store.read_state("_state/w-0.json").unwrap(), Some((b"{\"a\":2}".to_vec(), v2)));
        assert_eq!(store.read_state("_state/w-1.json").unwrap(), None);
    }

    /// A log entry is created once: a second writer of the same key is refused and changes
    /// nothing, and no temporary file is left.
    #[test]
    fn a_new_key_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        store.put_new("_delta_log/00000000000000000000.json", b"first").unwrap();
        let second = store.put_new("_delta_log/00000000000000000000.json", b"second");
        assert!(matches!(second, Err(StoreError::Conflict { .. })), "{second:?}");
        assert_eq!(store.get("_delta_log/00000000000000000000.json").unwrap().unwrap(), b"first");
        assert_eq!(store.list("_delta_log/").unwrap(), ["_delta_log/00000000000000000000.json"]);
        assert_eq!(store.get("_delta_log/00000000000000000001.json").unwrap(), None);
    }
}
