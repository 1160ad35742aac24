//! System calls as `strace -f -y` logs them (Debian's package; `scripts/test` installs it): the
//! durability tests run a binary under strace and check the order of its writes, syncs and
//! renames, which a SIGKILL (it keeps the page cache) cannot show.

use std::path::PathBuf;

/// The `-e` argument: the calls that create, write, sync and rename files, every spelling of
/// each, so that a change of library calls cannot hide a write or a sync.
pub const TRACED: &str = "trace=openat,mkdir,mkdirat,write,writev,pwrite64,pwritev,pwritev2,fsync,fdatasync,\
                          sync_file_range,rename,renameat,renameat2,link,linkat";

/// One traced call that matters to a durability check.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Open(PathBuf),
    Mkdir(PathBuf),
    Write(PathBuf),
    /// `fsync` or `fdatasync`: the file's data is on disk once it returns.
    Sync(PathBuf),
    /// `sync_file_range`: starts or waits for writeback of a range, but makes no promise about
    /// the file's metadata or the disk's cache: not a sync.
    RangeSync(PathBuf),
    Rename {
        to: PathBuf,
    },
    /// `link` or `linkat`: a second name for a file, which never replaces one (a Delta log
    /// entry is created that way).
    Link {
        from: PathBuf,
        to: PathBuf,
    },
}

/// The successful calls of an `strace -f -y` log, in the order they started. A call that was
/// interrupted by another thread's (`<unfinished ...>`) counts where it started: each thread's
/// calls are in order, and the programs checked make the calls that matter on one thread.
pub fn calls(log: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    for line in log.lines() {
        // "PID name(args) = result", or "PID name(args <unfinished ...>", or "PID <... name resumed>".
        let Some((_, call)) = line.split_once(' ') else { continue };
        let call = call.trim_start();
        let Some((name, args)) = call.split_once('(') else { continue };
        if name.starts_with('<') || name.contains(' ') {
            continue;
        }
        // With -y a file descriptor is printed with its path: `5</tmp/x/out.csv>`.
        let fd_path = || args.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(p, _)| PathBuf::from(p));
        let quoted: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
        let failed = call.contains(") = -1");
        match name {
            _ if failed => {}
            "openat" => calls.extend(quoted.first().map(|p| Call::Open(PathBuf::from(p)))),
            "mkdir" | "mkdirat" => calls.extend(quoted.first().map(|p| Call::Mkdir(PathBuf::from(p)))),
            "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2" => calls.extend(fd_path().map(Call::Write)),
            "fsync" | "fdatasync" => calls.extend(fd_path().map(Call::Sync)),
            "sync_file_range" => calls.extend(fd_path().map(Call::RangeSync)),
            "rename" | "renameat" | "renameat2" => {
                calls.extend(quoted.get(1).map(|to| Call::Rename { to: PathBuf::from(to) }))
            }
            "link" | "linkat" => calls.extend(
                quoted.first().zip(quoted.get(1)).map(|(from, to)| Call::Link { from: from.into(), to: to.into() }),
            ),
            _ => {}
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each spelling is read as its call, a call interrupted by another thread's counts where
    /// it started, failed calls are left out, and `sync_file_range` is not taken for a sync.
    #[test]
    fn calls_are_read_from_the_log() {
        let parsed = calls(concat!(
            "12 write(5</d/out.csv>, \"a,1\\n\", 4) = 4\n",
            "12 fdatasync(5</d/out.csv> <unfinished ...>\n",
            "13 write(9<anon_inode:[eventfd]>, \"\\1\\0\", 8) = 8\n",
            "12 <... fdatasync resumed>) = 0\n",
            "12 sync_file_range(5</d/out.csv>, 0, 0, SYNC_FILE_RANGE_WRITE) = 0\n",
            "12 mkdir(\"/d/h=07\", 0777) = 0\n",
            "12 mkdir(\"/d\", 0777) = -1 EEXIST (File exists)\n",
            "12 openat(AT_FDCWD, \"/d/.x.tmp\", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 6</d/.x.tmp>\n",
            "12 rename(\"/d/.x.tmp\", \"/d/x\") = 0\n",
            "12 fsync(7</d>) = 0\n",
            "12 linkat(AT_FDCWD, \"/d/.e.tmp\", AT_FDCWD, \"/d/e\", 0) = 0\n",
            "12 linkat(AT_FDCWD, \"/d/.f.tmp\", AT_FDCWD, \"/d/f\", 0) = -1 EEXIST (File exists)\n",
        ));
        let path = PathBuf::from;
        assert_eq!(
            parsed,
            [
                Call::Write(path("/d/out.csv")),
                Call::Sync(path("/d/out.csv")),
                Call::Write(path("anon_inode:[eventfd]")),
                Call::RangeSync(path("/d/out.csv")),
                Call::Mkdir(path("/d/h=07")),
                Call::Open(path("/d/.x.tmp")),
                Call::Rename { to: path("/d/x") },
                Call::Sync(path("/d")),
                Call::Link { from: path("/d/.e.tmp"), to: path("/d/e") },
            ]
        );
    }
}
