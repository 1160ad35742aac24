//! A member's commits run beside its reading. Loading a second's windows into PostgreSQL (most
//! of it keeping the primary key's index) takes a good part of that second; a member that
//! waited for it would read that much less. So a commit takes what it makes durable (each
//! partition's state, copied, and its windows finished since the last one) to a thread of its
//! own, with the store and the aggregates topic, while the member reads on; the member settles
//! it before anything else touches the store (a heartbeat, a claim, the next commit, leaving).
//! Nothing of a commit is visible until its transaction ends, as before: only the waiting
//! moved.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::store::{Committed, GroupStore, Mirror, PartitionCommit};
use crate::window::{WindowSummary, Windows};

/// What one partition makes durable in a commit, taken from the member when the commit began.
pub struct Pending {
    pub partition: i32,
    pub epoch: i64,
    pub next_offset: i64,
    /// Its open windows at `next_offset`.
    pub windows: Windows,
    /// Its windows finished since the last commit.
    pub finished: Vec<WindowSummary>,
    /// Sensors first seen in it since the last commit.
    pub new_sensors: Vec<String>,
    /// Handed back with this commit.
    pub release: bool,
}

impl Pending {
    fn commit(&self) -> PartitionCommit<'_> {
        PartitionCommit {
            partition: self.partition,
            epoch: self.epoch,
            next_offset: self.next_offset,
            windows: &self.windows,
            finished: &self.finished,
            new_sensors: &self.new_sensors,
            release: self.release,
        }
    }
}

/// How a commit ended.
#[derive(Default)]
pub struct Settled {
    /// What it made durable.
    pub committed: Vec<Pending>,
    /// What it could not: partitions another member has claimed since they were claimed here.
    pub fenced: Vec<Pending>,
    /// The rebuilt partitions among `committed` that caught up and replaced their old rows.
    pub swapped: Vec<i32>,
    /// From its start to its end.
    pub took: Duration,
}

/// The store and the aggregates topic: with the member, or lent to the commit under way.
struct Writers {
    store: Box<dyn GroupStore>,
    mirror: Option<Box<dyn Mirror>>,
}

/// A member's commits, one under way at most.
pub struct Committer {
    idle: Option<Writers>,
    under_way: Option<JoinHandle<(Writers, anyhow::Result<Settled>)>>,
}

impl Committer {
    pub fn new(store: Box<dyn GroupStore>, mirror: Option<Box<dyn Mirror>>) -> Committer {
        Committer { idle: Some(Writers { store, mirror }), under_way: None }
    }

    /// The store, between commits ([`Committer::settle`] first).
    pub fn store(&mut self) -> &mut dyn GroupStore {
        self.writers().store.as_mut()
    }

    /// The aggregates topic, between commits.
    pub fn mirror(&mut self) -> Option<&dyn Mirror> {
        self.writers().mirror.as_deref()
    }

    fn writers(&mut self) -> &mut Writers {
        self.idle.as_mut().expect("the commit under way was settled first")
    }

    /// Begins making `pending` durable on a thread of its own ([`commit`]); the commit before
    /// it must have been settled.
    pub fn begin(&mut self, pending: Vec<Pending>) -> anyhow::Result<()> {
        let writers = self.idle.take().expect("one commit under way at most");
        // Handed over through a slot, so that the store comes back if the thread cannot start.
        let slot = Arc::new(Mutex::new(Some((writers, pending))));
        let handed = Arc::clone(&slot);
        let thread = std::thread::Builder::new().name("commit".into()).spawn(move || {
            let (mut writers, pending) =
                handed.lock().expect("the slot is never poisoned").take().expect("handed over");
            let settled = commit(&mut writers, pending);
            (writers, settled)
        });
        match thread {
            Ok(thread) => {
                self.under_way = Some(thread);
                Ok(())
            }
            Err(e) => {
                let (writers, _) = slot.lock().expect("the slot is never poisoned").take().expect("not handed over");
                self.idle = Some(writers);
                Err(anyhow::Error::new(e).context("starting a thread for the commit (nothing was committed)"))
            }
        }
    }

    /// Whether the commit under way has ended (and waits to be settled).
    pub fn ended(&self) -> bool {
        self.under_way.as_ref().is_some_and(JoinHandle::is_finished)
    }

    /// Waits for the commit under way, if any, and takes the store back.
    pub fn settle(&mut self) -> Option<anyhow::Result<Settled>> {
        let thread = self.under_way.take()?;
        let (writers, settled) = thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        self.idle = Some(writers);
        Some(settled)
    }
}

/// Makes `pending` durable in one transaction ([`GroupStore::commit`]). Partitions another
/// member has claimed since are fenced, and the others are committed again without them.
fn commit(writers: &mut Writers, mut pending: Vec<Pending>) -> anyhow::Result<Settled> {
    let started = Instant::now();
    let mut fenced = Vec::new();
    while !pending.is_empty() {
        let commits: Vec<PartitionCommit<'_>> = pending.iter().map(Pending::commit).collect();
        let claimed = match writers.store.commit(&commits, writers.mirror.as_deref_mut())? {
            Committed::Done { swapped } => {
                return Ok(Settled { committed: pending, fenced, swapped, took: started.elapsed() });
            }
            Committed::Fenced(claimed) => claimed,
        };
        let (lost, kept) = pending.into_iter().partition(|p| claimed.contains(&p.partition));
        fenced.extend::<Vec<Pending>>(lost);
        pending = kept;
    }
    Ok(Settled { fenced, took: started.elapsed(), ..Settled::default() })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::window::WindowSize;

    /// A store whose commits are fenced for the partitions in `claimed`, noting the partitions
    /// of each commit; with a `gate`, each commit waits for a word through it.
    struct Store {
        claimed: BTreeSet<i32>,
        seen: Arc<Mutex<Vec<Vec<i32>>>>,
        gate: Option<mpsc::Receiver<()>>,
    }

    impl GroupStore for Store {
        fn name(&self) -> String {
            "a store".into()
        }
        fn heartbeat(&mut self) -> anyhow::Result<Vec<String>> {
            Ok(vec!["m".into()])
        }
        fn claim(&mut self, _: i32) -> anyhow::Result<Option<super::super::store::Claimed>> {
            Ok(None)
        }
        fn commit(
            &mut self,
            commits: &[PartitionCommit<'_>],
            _: Option<&mut (dyn Mirror + 'static)>,
        ) -> anyhow::Result<Committed> {
            if let Some(gate) = &self.gate {
                gate.recv_timeout(Duration::from_secs(10))?;
            }
            self.seen.lock().unwrap().push(commits.iter().map(|c| c.partition).collect());
            let fenced: BTreeSet<i32> =
                commits.iter().map(|c| c.partition).filter(|p| self.claimed.contains(p)).collect();
            Ok(if fenced.is_empty() { Committed::Done { swapped: Vec::new() } } else { Committed::Fenced(fenced) })
        }
        fn leave(&mut self) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn pending(partitions: &[i32]) -> Vec<Pending> {
        let pending = |partition| Pending {
            partition,
            epoch: 1,
            next_offset: 70,
            windows: Windows::new(WindowSize::WEEK),
            finished: vec![crate::sink::week("sensor-1", 10, 7 * 203, 7 * 700, 7 * 55)],
            new_sensors: Vec::new(),
            release: false,
        };
        partitions.iter().copied().map(pending).collect()
    }

    fn partitions(pending: &[Pending]) -> Vec<i32> {
        pending.iter().map(|p| p.partition).collect()
    }

    /// A commit begins and the member goes on while the store is still at it; settling waits
    /// for it and tells what it made durable.
    #[test]
    fn a_commit_runs_while_the_member_reads_on() {
        let (open, gate) = mpsc::channel();
        let seen = Arc::default();
        let store = Store { claimed: BTreeSet::new(), seen: Arc::clone(&seen), gate: Some(gate) };
        let mut committer = Committer::new(Box::new(store), None);
        committer.begin(pending(&[0, 1])).unwrap();
        assert!(!committer.ended(), "the commit waits for the store, the member does not");
        assert!(seen.lock().unwrap().is_empty());
        open.send(()).unwrap();
        let settled = committer.settle().expect("a commit was under way").unwrap();
        assert_eq!(partitions(&settled.committed), [0, 1]);
        assert!(settled.fenced.is_empty());
        assert!(committer.settle().is_none(), "settled once");
        assert_eq!(committer.store().name(), "a store", "the store is back with the member");
    }

    /// A commit refused for a partition another member has claimed is made again without it:
    /// the others' windows are not lost with it. When every partition is fenced, nothing is
    /// committed.
    #[test]
    fn fenced_partitions_are_dropped_and_the_others_committed_again() {
        let seen = Arc::default();
        let store = Store { claimed: BTreeSet::from([1, 3]), seen: Arc::clone(&seen), gate: None };
        let mut committer = Committer::new(Box::new(store), None);
        committer.begin(pending(&[0, 1, 2])).unwrap();
        let settled = committer.settle().unwrap().unwrap();
        assert_eq!(partitions(&settled.committed), [0, 2]);
        assert_eq!(partitions(&settled.fenced), [1]);
        assert_eq!(settled.fenced[0].finished.len(), 1, "what it lost is told");
        assert_eq!(*seen.lock().unwrap(), [vec![0, 1, 2], vec![0, 2]]);

        committer.begin(pending(&[3])).unwrap();
        let settled = committer.settle().unwrap().unwrap();
        assert!(settled.committed.is_empty());
        assert_eq!(partitions(&settled.fenced), [3]);
        assert_eq!(seen.lock().unwrap().len(), 3, "nothing left to commit again");
    }
}
