//! The local output file: what a user sets for it (its path, its S3 copy), and the file itself,
//! appended to through a buffer, made durable on demand, and cut back on restart to the length
//! that the checkpoint says is durable and complete.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use weather_common::s3::S3Args;

use super::s3::S3Target;
use crate::rules::Rules;

/// The output file's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct FileArgs {
    /// Output file. Default: weather_aggregation.txt or .csv, by format. Its checkpoint is
    /// kept beside it as <output>.checkpoint.
    #[arg(short = 'o', long, env = "WEATHER_OUTPUT")]
    pub output: Option<PathBuf>,

    /// Upload the output to an S3 bucket (--s3-bucket) as this object key. Default: the
    /// output's file name.
    #[arg(long, env = "WEATHER_S3_KEY")]
    pub s3_key: Option<String>,

    #[command(flatten)]
    pub s3: S3Args,

    /// Upload after a new window is written, but no more often than this; always once more
    /// at the end.
    #[arg(long, env = "WEATHER_UPLOAD_INTERVAL", value_name = "SECONDS", default_value = "5", value_parser = weather_common::parse_seconds)]
    pub upload_interval: Duration,

    /// Write no output file: the tables (--to-postgres, --to-topic) are the only output, and
    /// keep the open windows themselves.
    #[arg(long, env = "WEATHER_NO_FILE")]
    pub no_file: bool,
}

/// The output file of a run, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FileOutput {
    pub path: PathBuf,
    /// Where it is uploaded, if anywhere.
    pub s3: Option<S3Target>,
    pub upload_interval: Duration,
}

/// Whether the file must be uploaded to S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Only if `--s3-bucket` is given.
    IfAsked,
    /// Always: `--preset v2` uploads its file, and needs `--s3-bucket`.
    Preset,
}

impl FileArgs {
    /// The output file, checked; none with `--no-file`.
    pub fn check(self, rules: &Rules, upload: Upload) -> Result<Option<FileOutput>, String> {
        if self.no_file {
            let given = [
                ("--output", self.output.is_some()),
                ("--s3-bucket", self.s3.s3_bucket.is_some()),
                ("--s3-key", self.s3_key.is_some()),
            ];
            for (flag, given) in given {
                if given {
                    return Err(format!("--no-file writes no file: {flag} does not go with it"));
                }
            }
            return Ok(None);
        }
        let path = self.output.unwrap_or_else(|| format!("weather_aggregation.{}", rules.format.name()).into());
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            return Err(format!("--output `{}` does not name a file", path.display()));
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(format!("--output: directory `{}` does not exist", dir.display()));
            }
        }
        if upload == Upload::Preset && self.s3.s3_bucket.is_none() {
            return Err("--preset v2 uploads to S3: give --s3-bucket (or WEATHER_S3_BUCKET)".to_string());
        }
        let bucket = self.s3.bucket(&[("--s3-key", self.s3_key.is_some())])?;
        let s3 = bucket.map(|bucket| S3Target { bucket, key: self.s3_key.unwrap_or_else(|| file_name.to_string()) });
        Ok(Some(FileOutput { path, s3, upload_interval: self.upload_interval }))
    }
}

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
