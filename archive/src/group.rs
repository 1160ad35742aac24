//! The archive's group (`--group`): the instances that share the topic's partitions, here or on
//! other machines, each known to the others by a heartbeat object it keeps replacing in the lake
//! (`_members/<topic>/<member>.json`). Every member deals the partitions among the live ones the
//! same way ([`weather_common::share`]) and takes its share over through the partitions' states
//! ([`crate::state::Claim`]), whose epochs fence a member that lost one.
//!
//! Why not Kafka's group protocol: Tansu's coordinator does not hand a dead member's partitions
//! on, nor give a later member any (docs/tansu), and the lake already holds what decides who may
//! write. The lake needs nothing but the writes it already does: a member is alive while its
//! heartbeat changes, as this member's own clock sees it, so the members' clocks need not agree.
//! Offsets are still committed to the consumer group, for lag tools.
//!
//! A thread of its own replaces the heartbeat ([`weather_common::heartbeat`]), so that the
//! loop's longer steps (a consumer made anew, a file encoded and uploaded) do not pass for a
//! death; it stops beating when the loop has not turned for [`STALLED_LEASES`] leases, so that
//! a stuck member's partitions move on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weather_common::heartbeat::Beater;
pub use weather_common::heartbeat::STALLED_LEASES;

use crate::layout::Layout;
use crate::store::{is_leftover, Store, StoreError};

/// A heartbeat left unchanged this many leases is a member that died: its object is removed.
const TIDY_AFTER_LEASES: u32 = 10;

/// What a member's heartbeat object holds.
#[derive(Debug, Serialize, Deserialize)]
struct Heartbeat {
    /// Which run of the member (a restart under the same name is a new run).
    run: u64,
    /// Counts up at every heartbeat.
    beat: u64,
    /// How long the others wait for its next heartbeat before they take its partitions over.
    lease_ms: u64,
}

/// Which members are alive, by whether their heartbeats change within their lease. Pure: the
/// heartbeats and the time come in.
#[derive(Debug, Default)]
pub struct Liveness {
    seen: BTreeMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    /// The run and beat last read.
    beat: (u64, u64),
    lease: Duration,
    /// When they were first read: a live member changes them within its lease.
    since: Instant,
}

impl Liveness {
    /// Notes the heartbeats there are `now`, each `(member, (run, beat), lease)`. A member seen
    /// for the first time counts as alive for one lease; one no longer there has left.
    pub fn observe(&mut self, beats: Vec<(String, (u64, u64), Duration)>, now: Instant) {
        let mut seen = BTreeMap::new();
        for (member, beat, lease) in beats {
            let since = match self.seen.get(&member) {
                Some(old) if old.beat == beat => old.since,
                _ => now,
            };
            seen.insert(member, Seen { beat, lease, since });
        }
        self.seen = seen;
    }

    /// The members alive `now`, in name order.
    pub fn live(&self, now: Instant) -> Vec<String> {
        self.seen.iter().filter(|(_, s)| now.duration_since(s.since) < s.lease).map(|(m, _)| m.clone()).collect()
    }

    /// The members silent for `leases` of their leases: dead long enough to tidy away.
    fn silent_for(&self, leases: u32, now: Instant) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(_, s)| now.duration_since(s.since) >= s.lease * leases)
            .map(|(m, _)| m.clone())
            .collect()
    }
}

/// This instance as a member of the group.
pub struct Group {
    store: Arc<dyn Store>,
    prefix: String,
    member: String,
    lease: Duration,
    liveness: Liveness,
    /// Replacing the heartbeat, from the first [`Group::heartbeat`] on; told each time the
    /// loop asks for the members, to see whether it is stuck.
    beater: Option<Beater>,
}

impl Group {
    pub fn join(store: Arc<dyn Store>, layout: &Layout, member: &str, lease: Duration) -> Group {
        Group {
            store,
            prefix: layout.members_prefix(),
            member: member.to_string(),
            lease,
            liveness: Liveness::default(),
            beater: None,
        }
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Reads the members' heartbeats (this member's written first, the first time, and then
    /// kept up by its own thread): the live members, this one among them, in name order.
    pub fn heartbeat(&mut self) -> Result<Vec<String>, StoreError> {
        match &self.beater {
            Some(beater) => beater.turned(),
            None => self.beater = Some(self.start_beating()?),
        }
        let mut beats = Vec::new();
        for key in self.store.list(&self.prefix)? {
            let Some(member) = key.strip_prefix(&self.prefix).and_then(|n| n.strip_suffix(".json")) else { continue };
            if is_leftover(&key).is_some() || member == self.member {
                continue;
            }
            // Gone between the list and the read: that member left.
            let Some(bytes) = self.store.get(&key)? else { continue };
            match serde_json::from_slice::<Heartbeat>(&bytes) {
                Ok(h) => beats.push((member.to_string(), (h.run, h.beat), Duration::from_millis(h.lease_ms))),
                Err(e) => tracing::warn!("{key} is not a member's heartbeat ({e}): not counted as a member"),
            }
        }
        let now = Instant::now();
        self.liveness.observe(beats, now);
        for dead in self.liveness.silent_for(TIDY_AFTER_LEASES, now) {
            tracing::info!("member `{dead}` has been silent for {TIDY_AFTER_LEASES} leases: removing its heartbeat");
            self.store.delete(&self.key(&dead))?;
        }
        let mut live = self.liveness.live(now);
        live.push(self.member.clone());
        live.sort_unstable();
        Ok(live)
    }

    /// Writes the first heartbeat, then starts the thread that writes the next ones.
    fn start_beating(&self) -> Result<Beater, StoreError> {
        let run = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let (store, key, lease) = (self.store.clone(), self.key(&self.member), self.lease);
        let beat = move |beat: u64| {
            let bytes = serde_json::to_vec(&Heartbeat { run, beat, lease_ms: lease.as_millis() as u64 })
                .expect("a heartbeat always serializes");
            store.put(&key, &bytes)
        };
        beat(1)?;
        Ok(Beater::start(&self.member, lease, beat))
    }

    /// Stops the heartbeat's thread, if it runs.
    fn stop_beating(&mut self) {
        if let Some(mut beater) = self.beater.take() {
            beater.stop();
        }
    }

    /// Leaves the group: the others deal its partitions (handed back first) at their next
    /// heartbeat, without waiting for its lease to run out.
    pub fn leave(&mut self) -> Result<(), StoreError> {
        self.stop_beating();
        self.store.delete(&self.key(&self.member))
    }

    fn key(&self, member: &str) -> String {
        format!("{}{member}.json", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(member: &str, run: u64, beat: u64) -> (String, (u64, u64), Duration) {
        (member.to_string(), (run, beat), Duration::from_secs(10))
    }

    /// A member is alive while its heartbeat changes within its lease, on the observer's clock;
    /// one seen first is given one lease; a restart (a new run) counts as a change; one whose
    /// heartbeat is gone has left.
    #[test]
    fn a_member_is_alive_while_its_heartbeat_changes() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut liveness = Liveness::default();
        liveness.observe(vec![beat("a", 1, 7), beat("b", 1, 3)], at(0));
        assert_eq!(liveness.live(at(9)), ["a", "b"], "first seen: one lease");
        liveness.observe(vec![beat("a", 1, 8), beat("b", 1, 3)], at(9));
        assert_eq!(liveness.live(at(10)), ["a"], "b's heartbeat did not change in its lease");
        liveness.observe(vec![beat("a", 1, 8), beat("b", 2, 3)], at(11));
        assert_eq!(liveness.live(at(18)), ["a", "b"], "b restarted: a new run, at the same beat");
        assert_eq!(liveness.live(at(19)), ["b"], "a's last change was at 9");
        liveness.observe(vec![beat("b", 2, 4)], at(20));
        assert_eq!(liveness.live(at(20)), ["b"], "a left");
        assert_eq!(liveness.silent_for(10, at(120)), ["b"]);
        assert!(liveness.silent_for(10, at(119)).is_empty());
    }

    /// Members see each other through the lake; one that leaves is gone at the next heartbeat,
    /// one that stops beating is not alive after its lease; one whose loop no longer turns
    /// stops beating.
    #[test]
    fn members_see_each_other_through_the_lake() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::disk::DiskStore::open(dir.path()).unwrap());
        let layout = Layout::new("", "weather");
        let lease = Duration::from_millis(300);
        let mut a = Group::join(store.clone(), &layout, "a", lease);
        let mut b = Group::join(store.clone(), &layout, "b", lease);
        assert_eq!(a.heartbeat().unwrap(), ["a"]);
        assert_eq!(b.heartbeat().unwrap(), ["a", "b"]);
        assert_eq!(a.heartbeat().unwrap(), ["a", "b"]);
        b.leave().unwrap();
        assert_eq!(a.heartbeat().unwrap(), ["a"]);
        let mut c = Group::join(store.clone(), &layout, "c", lease);
        c.heartbeat().unwrap();
        assert_eq!(a.heartbeat().unwrap(), ["a", "c"]);
        // c stops beating (a run that ended without leaving): after its lease, a no longer
        // counts it. a reads c's last beat first: its thread may have beaten once more between
        // a's look above and the drop, however slow the machine.
        drop(c);
        a.heartbeat().unwrap();
        std::thread::sleep(lease);
        assert_eq!(a.heartbeat().unwrap(), ["a"]);
        // d's loop turns once, then never again: its thread beats on for a while, then stops.
        let mut d = Group::join(store.clone(), &layout, "d", lease);
        d.heartbeat().unwrap();
        assert_eq!(a.heartbeat().unwrap(), ["a", "d"]);
        std::thread::sleep(lease * STALLED_LEASES / 2);
        assert_eq!(a.heartbeat().unwrap(), ["a", "d"], "beating while its loop is slow");
        // It stops after STALLED_LEASES without a turn, give or take its thread's lateness on a
        // busy machine: waited for, up to four times that. Beating on, it would stay alive.
        let deadline = Instant::now() + lease * STALLED_LEASES * 4;
        while a.heartbeat().unwrap() != ["a"] {
            assert!(Instant::now() < deadline, "a stuck loop stops beating");
            std::thread::sleep(lease / 4);
        }
    }
}
