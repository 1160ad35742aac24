//! The local output file: appended to through a buffer, made durable on demand, and cut
//! back on restart to the length that the checkpoint says is durable and complete.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct OutputFile {
    path: PathBuf,
    file: BufWriter<File>,
    /// Bytes written so far, buffered or not.
    len: u64,
}

impl OutputFile {
    /// Opens `path` keeping its first `keep` bytes (0 starts it afresh).
    pub fn open(path: &Path, keep: u64) -> io::Result<OutputFile> {
        let file = OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
        let actual = file.metadata()?.len();
        if actual < keep {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {actual} bytes but its checkpoint says {keep} bytes were written: the file was \
                     changed by hand; rebuild it with --from-beginning",
                    path.display()
                ),
            ));
        }
        file.set_len(keep)?;
        let mut file = BufWriter::with_capacity(64 * 1024, file);
        io::Seek::seek(&mut file, io::SeekFrom::Start(keep))?;
        Ok(OutputFile { path: path.to_path_buf(), file, len: keep })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes written so far, buffered or not: durable at the next [`OutputFile::sync`].
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Flushes and fsyncs; returns the length that is now durable.
    pub fn sync(&mut self) -> io::Result<u64> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        Ok(self.len)
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reopening keeps exactly the durable prefix and appends after it.
    #[test]
    fn reopen_cuts_back_to_the_kept_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut out = OutputFile::open(&path, 0).unwrap();
        out.write_all(b"header\nrow1\n").unwrap();
        assert_eq!(out.sync().unwrap(), 12);
        out.write_all(b"half a r").unwrap();
        out.sync().unwrap();
        drop(out);
        let mut out = OutputFile::open(&path, 12).unwrap();
        out.write_all(b"row2\n").unwrap();
        out.sync().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "header\nrow1\nrow2\n");
    }

    /// A file shorter than its checkpoint was tampered with, and that is said plainly.
    #[test]
    fn a_file_shorter_than_its_checkpoint_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "1,2,").unwrap();
        let err = OutputFile::open(&path, 100).err().unwrap();
        assert!(err.to_string().contains("--from-beginning"), "{err}");
    }
}
