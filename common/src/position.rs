//! Where a run starts and where it stops, as the user says it: `--start` and `--until`, and
//! the times they name. Shared by every job that reads the topic; what a position means for a
//! job's own state (a checkpoint to roll back, files to rewrite) is that job's to decide.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// `--start`: where reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The beginning of every partition: the output is rebuilt (`--from-beginning`).
    Earliest,
    /// The end of every partition: a new output sees only readings published from now on.
    Latest,
    /// Where this output left off: its checkpoint; a new output starts at the beginning, as the
    /// walkthrough's consumer did. The default.
    Resume,
    /// The consumer group's committed offsets. An output with a checkpoint still resumes at
    /// its checkpoint; a new output starts at the group's offsets, skipping what came before
    /// (the beginning where the group has no offset).
    Committed,
    /// The first reading stamped at or after this time (milliseconds since the epoch), by the
    /// broker's offsets-for-times look-up.
    Time(i64),
    /// These offsets; unlisted partitions are not constrained (a new output reads them from
    /// the beginning).
    Offsets(BTreeMap<i32, i64>),
}

/// `--until`: where a bounded run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Never: follow the topic until stopped.
    Follow,
    /// The end every partition had when the run started (`--until-end`).
    End,
    /// Before the first reading stamped at or after this time (milliseconds since the epoch);
    /// a partition with none ends at its end once this time has passed.
    Time(i64),
}

/// `--start`, `--from-beginning`, `--until`, `--until-end`: where a run of a job that reads
/// the topic starts and stops. Flattened into the consumer's and the archive's command lines.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Where reading starts: resume (the default: where the output's progress left off, a new
    /// output from the beginning), earliest, latest, committed (the group's offsets),
    /// time:<RFC 3339>, or offset:<partition>=<offset>,... An output with progress is never
    /// moved forward: it is taken back to its last state before that point, keeps what it wrote
    /// before it as it is and rewrites the rest. A new output starts at the point itself.
    #[arg(long, env = "WEATHER_START", value_name = "POSITION", conflicts_with = "from_beginning")]
    pub start: Option<Start>,

    /// Seek to the beginning of every partition and rebuild the output under the current
    /// rules: the short form of --start earliest.
    #[arg(long, env = "WEATHER_FROM_BEGINNING")]
    pub from_beginning: bool,

    /// Make the run bounded (a batch run): stop at the end every partition has when the run
    /// starts (end), or before the first reading stamped at or after a time (time:<RFC 3339>).
    /// Without it the run follows the topic until stopped.
    #[arg(long, env = "WEATHER_UNTIL", value_name = "POSITION", conflicts_with = "until_end")]
    pub until: Option<Until>,

    /// The short form of --until end.
    #[arg(long, env = "WEATHER_UNTIL_END")]
    pub until_end: bool,
}

impl RunArgs {
    /// Where the run starts: `--start`, else the beginning with `--from-beginning`, else the
    /// job's `default` (the consumer's version 2 replays; every other run resumes).
    pub fn start(&self, default: Start) -> Start {
        match (&self.start, self.from_beginning) {
            (Some(start), _) => start.clone(),
            (None, true) => Start::Earliest,
            (None, false) => default,
        }
    }

    /// Where the run stops: `--until`, else the end with `--until-end`, else never.
    pub fn until(&self) -> Until {
        match (self.until, self.until_end) {
            (Some(until), _) => until,
            (None, true) => Until::End,
            (None, false) => Until::Follow,
        }
    }
}

impl FromStr for Start {
    type Err = String;

    fn from_str(s: &str) -> Result<Start, String> {
        match s {
            "earliest" => Ok(Start::Earliest),
            "latest" => Ok(Start::Latest),
            "resume" => Ok(Start::Resume),
            "committed" => Ok(Start::Committed),
            _ => {
                if let Some(time) = s.strip_prefix("time:") {
                    return parse_time(time).map(Start::Time);
                }
                if let Some(list) = s.strip_prefix("offset:") {
                    return parse_offsets(list).map(Start::Offsets);
                }
                Err(format!(
                    "`{s}` is not a start position: use resume, earliest, latest, committed, time:<RFC 3339> \
                     (e.g. time:2026-11-22T06:00:00Z) or offset:<partition>=<offset>,..."
                ))
            }
        }
    }
}

impl FromStr for Until {
    type Err = String;

    fn from_str(s: &str) -> Result<Until, String> {
        match s {
            "end" => Ok(Until::End),
            _ => match s.strip_prefix("time:") {
                Some(time) => parse_time(time).map(Until::Time),
                None => Err(format!(
                    "`{s}` is not an end position: use end or time:<RFC 3339> (e.g. time:2026-11-22T06:00:00Z)"
                )),
            },
        }
    }
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Start::Earliest => f.write_str("the beginning"),
            Start::Latest => f.write_str("the end"),
            Start::Resume => f.write_str("the beginning"),
            Start::Committed => f.write_str("the group's committed offsets"),
            Start::Time(t) => write!(f, "{}", format_time(*t)),
            Start::Offsets(offsets) => {
                let list: Vec<String> = offsets.iter().map(|(p, o)| format!("{p}={o}")).collect();
                write!(f, "offsets {}", list.join(","))
            }
        }
    }
}

fn parse_time(s: &str) -> Result<i64, String> {
    let time: jiff::Timestamp =
        s.parse().map_err(|e| format!("`{s}` is not an RFC 3339 time ({e}), e.g. 2026-11-22T06:00:00Z"))?;
    Ok(time.as_millisecond())
}

/// An epoch-milliseconds time as RFC 3339, for messages.
pub fn format_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| format!("{ms} ms"), |t| t.to_string())
}

/// Now, in epoch milliseconds (Kafka's timestamp unit).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn parse_offsets(list: &str) -> Result<BTreeMap<i32, i64>, String> {
    let mut offsets = BTreeMap::new();
    for pair in list.split(',') {
        let parsed = pair
            .split_once('=')
            .and_then(|(p, o)| Some((p.trim().parse::<i32>().ok()?, o.trim().parse::<i64>().ok()?)));
        match parsed {
            Some((partition, offset)) if partition >= 0 && offset >= 0 => {
                if offsets.insert(partition, offset).is_some() {
                    return Err(format!("partition {partition} is given twice"));
                }
            }
            _ => return Err(format!("`{pair}` is not <partition>=<offset> (e.g. offset:0=1200,1=1187)")),
        }
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every start and end position parses, and a bad one says what would be accepted.
    #[test]
    fn positions_parse() {
        assert_eq!("earliest".parse(), Ok(Start::Earliest));
        assert_eq!("latest".parse(), Ok(Start::Latest));
        assert_eq!("committed".parse(), Ok(Start::Committed));
        assert_eq!("resume".parse(), Ok(Start::Resume));
        assert_eq!("time:1970-01-01T00:00:01.5Z".parse(), Ok(Start::Time(1500)));
        assert_eq!("time:1970-01-01T01:00:00+01:00".parse(), Ok(Start::Time(0)));
        assert_eq!("offset:0=12, 2=7".parse(), Ok(Start::Offsets(BTreeMap::from([(0, 12), (2, 7)]))));
        assert_eq!("end".parse(), Ok(Until::End));
        assert_eq!("time:1970-01-01T00:00:02Z".parse(), Ok(Until::Time(2000)));
        for (bad, needle) in [
            ("begin", "resume, earliest, latest, committed"),
            ("time:yesterday", "RFC 3339"),
            ("offset:0", "<partition>=<offset>"),
            ("offset:0=1,0=2", "partition 0 is given twice"),
            ("offset:-1=5", "`-1=5`"),
            ("offset:0=x", "`0=x`"),
        ] {
            let err = bad.parse::<Start>().unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        assert!("latest".parse::<Until>().unwrap_err().contains("end or time:"));
        assert_eq!(format_time(1500), "1970-01-01T00:00:01.5Z");
    }
}
