//! One writer per output: an advisory lock on a small file beside what is written.
//!
//! The lock is the kernel's (`flock` on Unix), taken without waiting and released when the
//! holder exits, however it exits: a SIGKILLed writer leaves no stale lock behind, only the
//! file, which the next writer takes. The file keeps the holder's process id and command line,
//! so that a second writer can say who holds it. A holder that ends (a run done, or a start
//! that failed) removes the file while it still holds the lock, so that nothing is left beside
//! the output; a writer that locked a file which was removed meanwhile (or replaced by a new
//! one) lets go and locks the file now at the path, so two writers never hold two files.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A held lock; released (and its file removed) when dropped, released when the process ends.
#[derive(Debug)]
pub struct WriterLock {
    path: PathBuf,
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} is being written by another process ({holder}; lock {path}): an output has one writer. Stop that one first, or choose another output")]
    Held { what: String, holder: String, path: PathBuf },
    #[error("cannot lock {path} for writing {what}")]
    Io { what: String, path: PathBuf, source: io::Error },
}

/// What trying to lock one opened lock file gave.
enum Attempt {
    Locked(File),
    /// Another process holds it; what the file says about that process.
    Held(String),
    /// The file was removed from the path (or replaced) after it was opened: try the path again.
    Moved,
}

/// Tries to lock `file`, opened at `path`, without waiting.
fn try_lock(path: &Path, mut file: File) -> io::Result<Attempt> {
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Ok(Attempt::Held(holder));
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    // Its holder may have removed it between our open and our lock: then it is no longer the
    // file at `path`, and another writer could lock the one that is.
    let here = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(there) if (there.dev(), there.ino()) == (here.dev(), here.ino()) => Ok(Attempt::Locked(file)),
        Ok(_) => Ok(Attempt::Moved),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Attempt::Moved),
        Err(e) => Err(e),
    }
}

impl WriterLock {
    /// The lock file of `output`: `<output>.lock` beside it.
    pub fn path_for(output: &Path) -> PathBuf {
        crate::beside(output, ".lock")
    }

    /// Takes the lock of `output` (described as `what` in messages), or says who holds it.
    pub fn acquire(output: &Path, what: &str) -> Result<WriterLock, LockError> {
        let path = WriterLock::path_for(output);
        let io_error = |source| LockError::Io { what: what.to_string(), path: path.clone(), source };
        let mut file = loop {
            let file =
                OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_error)?;
            match try_lock(&path, file).map_err(io_error)? {
                Attempt::Locked(file) => break file,
                Attempt::Moved => continue,
                Attempt::Held(holder) => {
                    let holder = match holder.trim() {
                        "" => "it has not said who it is yet".to_string(),
                        said => said.to_string(),
                    };
                    return Err(LockError::Held { what: what.to_string(), holder, path });
                }
            }
        };
        let me = format!("pid {}: {}", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
        (|| {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(me.as_bytes())?;
            file.write_all(b"\n")
        })()
        .map_err(io_error)?;
        Ok(WriterLock { path, _file: file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriterLock {
    /// Removes the file while the lock is still held (the file closes after this): a writer
    /// that opened it meanwhile finds it moved and takes the path's new file instead.
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!("removing the lock file {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second writer is refused and told who holds the lock; once the first lets go, the
    /// second gets it.
    #[test]
    fn one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.txt");
        let first = WriterLock::acquire(&output, "out.txt").unwrap();
        assert_eq!(first.path(), dir.path().join("out.txt.lock"));
        let err = WriterLock::acquire(&output, "out.txt").unwrap_err().to_string();
        assert!(err.contains("out.txt is being written by another process"), "{err}");
        assert!(err.contains(&format!("pid {}", std::process::id())), "names the holder: {err}");
        drop(first);
        WriterLock::acquire(&output, "out.txt").expect("free again once the holder let go");
    }

    /// A holder that ends, however its run went, leaves no lock file beside the output.
    #[test]
    fn the_lock_file_goes_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.txt");
        let failed_start = || -> Result<(), LockError> {
            let _writer = WriterLock::acquire(&output, "out.txt")?;
            assert!(WriterLock::path_for(&output).exists(), "the file is there while the lock is held");
            Err(LockError::Io { what: "a start".into(), path: output.clone(), source: io::Error::other("failed") })
        };
        assert!(failed_start().is_err());
        assert!(!WriterLock::path_for(&output).exists(), "no out.txt.lock after a failed start");
    }

    /// A writer that opened the lock file just before its holder removed it does not take
    /// that file's lock for the output's: the file at the path is another (or none).
    #[test]
    fn a_removed_lock_file_is_not_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.txt");
        let path = WriterLock::path_for(&output);
        let holder = WriterLock::acquire(&output, "out.txt").unwrap();
        let opened_meanwhile = || OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let (late, later) = (opened_meanwhile(), opened_meanwhile());
        drop(holder);
        assert!(matches!(try_lock(&path, late).unwrap(), Attempt::Moved), "removed");
        let next = WriterLock::acquire(&output, "out.txt").unwrap();
        assert!(matches!(try_lock(&path, later).unwrap(), Attempt::Moved), "replaced by the next holder's");
        drop(next);
    }
}
