//! One writer per output: an advisory lock on a small file beside what is written.
//!
//! The lock is the kernel's (`flock` on Unix), taken without waiting and released when the
//! holder exits, however it exits: a SIGKILLed writer leaves no stale lock behind. The file
//! keeps the holder's process id and command line, so that a second writer can say who holds
//! it. The file itself stays (removing it would let two writers lock two different files).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A held lock; released when dropped or when the process ends.
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

impl WriterLock {
    /// The lock file of `output`: `<output>.lock` beside it.
    pub fn path_for(output: &Path) -> PathBuf {
        crate::beside(output, ".lock")
    }

    /// Takes the lock of `output` (described as `what` in messages), or says who holds it.
    pub fn acquire(output: &Path, what: &str) -> Result<WriterLock, LockError> {
        let path = WriterLock::path_for(output);
        let io_error = |source| LockError::Io { what: what.to_string(), path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "it has not said who it is yet".to_string(),
                    said => said.to_string(),
                };
                return Err(LockError::Held { what: what.to_string(), holder, path });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
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
}
