//! What the lake knows about one Kafka partition, kept with the data (`_state/<topic>-<p>.json`)
//! so that any instance can take the partition over: how far its readings are archived, the
//! file that was decided but perhaps not yet published, and who writes it now.
//!
//! Every file goes through the same three steps: its range of offsets is recorded as `pending`,
//! the file is published, and `done` moves past it. So a file is decided before it exists, and
//! whoever restarts the partition (after a crash, or after a rebalance) writes that very file
//! again, with the same name and rows, instead of a different one. A wall-clock flush is no
//! exception: it is one more decision, recorded first.
//!
//! Each owner bumps `epoch` when it takes the partition over, and every later write is
//! conditional on the state being the one it wrote last: an instance that lost the partition
//! (a late writer, paused past its lease) finds its write refused and stops there. In a group
//! (`--group`), the state also names its `owner`: a member takes a partition over only from
//! nobody, from itself, or from a member whose lease has run out ([`crate::group`]).

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Version};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Bumped by every instance that takes the partition over.
    pub epoch: u64,
    /// Every reading before this offset is in a published file (or in the dead-letter topic).
    pub done: i64,
    /// A file decided and perhaps not yet published: the readings from `done` up to this offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
    /// The member of the group that writes it; none without a group, or once handed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Who takes a partition over, and from whom it may.
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// The only instance writing the lake (no group): from whoever wrote it before.
    Alone,
    /// A member of the group: from nobody, from itself (restarted under its name), or from a
    /// member not among the `live` ones.
    Member { name: &'a str, live: &'a [String] },
}

impl Claim<'_> {
    fn owner(self) -> Option<String> {
        match self {
            Claim::Alone => None,
            Claim::Member { name, .. } => Some(name.to_string()),
        }
    }

    /// Whether the partition may be taken from `owner`.
    fn allows(self, owner: Option<&str>) -> bool {
        match (self, owner) {
            (Claim::Alone, _) | (Claim::Member { .. }, None) => true,
            (Claim::Member { name, live }, Some(owner)) => owner == name || !live.iter().any(|m| m == owner),
        }
    }
}

/// The right to write a partition's state, as long as no one took the partition over since.
#[derive(Debug)]
pub struct Lease {
    key: String,
    pub state: PartitionState,
    version: Version,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("partition {partition} was taken over by another instance (its state changed since epoch {epoch})")]
    Fenced { partition: i32, epoch: u64 },
    #[error("the state {key} is not readable ({reason}): remove it to archive the partition anew")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Store(StoreError),
}

impl Lease {
    /// Takes `partition` over: reads its state (none yet: starting at `new_start`) and writes it
    /// back with the next epoch, as `claim` says; none if a live member of the group owns it.
    pub fn take_over(
        store: &dyn Store,
        key: &str,
        partition: i32,
        new_start: i64,
        claim: Claim<'_>,
    ) -> Result<Option<Lease>, StateError> {
        loop {
            let found = store.read_state(key).map_err(StateError::Store)?;
            let (state, expected) = match &found {
                Some((bytes, version)) => {
                    let state: PartitionState = serde_json::from_slice(bytes)
                        .map_err(|e| StateError::Corrupt { key: key.to_string(), reason: e.to_string() })?;
                    (state, Some(version))
                }
                None => (PartitionState { epoch: 0, done: new_start, pending: None, owner: None }, None),
            };
            if !claim.allows(state.owner.as_deref()) {
                return Ok(None);
            }
            let state = PartitionState { epoch: state.epoch + 1, owner: claim.owner(), ..state };
            match store.write_state(key, &to_json(&state), expected) {
                Ok(version) => {
                    tracing::debug!("partition {partition}: taken over at epoch {}", state.epoch);
                    return Ok(Some(Lease { key: key.to_string(), state, version }));
                }
                // Another instance took it over between our read and write: read again.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(StateError::Store(e)),
            }
        }
    }

    /// Moves the state to `done` with the file decided next (`pending`), unless another
    /// instance took the partition over since.
    pub fn write(
        &mut self,
        partition: i32,
        done: i64,
        pending: Option<i64>,
        store: &dyn Store,
    ) -> Result<(), StateError> {
        let state = PartitionState { done, pending, ..self.state.clone() };
        self.replace(partition, state, store)
    }

    /// Hands the partition back to the group: no owner, so that the member whose share it now
    /// is takes it over without waiting for this one's lease to run out.
    pub fn release(&mut self, partition: i32, store: &dyn Store) -> Result<(), StateError> {
        let state = PartitionState { owner: None, ..self.state.clone() };
        self.replace(partition, state, store)
    }

    fn replace(&mut self, partition: i32, state: PartitionState, store: &dyn Store) -> Result<(), StateError> {
        match store.write_state(&self.key, &to_json(&state), Some(&self.version)) {
            Ok(version) => {
                (self.state, self.version) = (state, version);
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(StateError::Fenced { partition, epoch: self.state.epoch }),
            Err(e) => Err(StateError::Store(e)),
        }
    }
}

fn to_json(state: &PartitionState) -> Vec<u8> {
    serde_json::to_vec(state).expect("a state always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::DiskStore;

    /// A new partition starts where it is told; every takeover bumps the epoch and keeps the
    /// progress; the instance taken over from can no longer write.
    #[test]
    fn a_takeover_fences_the_previous_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let key = "_state/weather-0.json";
        let take = |start| Lease::take_over(&store, key, 0, start, Claim::Alone).unwrap().unwrap();
        let mut first = take(40);
        assert_eq!(first.state, PartitionState { epoch: 1, done: 40, pending: None, owner: None });
        first.write(0, 40, Some(90), &store).unwrap();
        let mut second = take(0);
        assert_eq!(second.state, PartitionState { epoch: 2, done: 40, pending: Some(90), owner: None });
        let late = first.write(0, 90, None, &store);
        assert!(matches!(late, Err(StateError::Fenced { partition: 0, epoch: 1 })), "{late:?}");
        second.write(0, 90, None, &store).unwrap();
        assert_eq!(take(0).state.done, 90);
    }

    /// A member takes a partition from nobody, from itself, or from a member whose lease ran
    /// out; never from a live one. Handing it back lets the next member take it at once.
    #[test]
    fn a_member_takes_a_partition_only_from_the_dead_or_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let key = "_state/weather-0.json";
        let live: Vec<String> = vec!["a".into(), "b".into()];
        let claim = |name| Claim::Member { name, live: &live };
        let mut a = Lease::take_over(&store, key, 0, 0, claim("a")).unwrap().expect("nobody owned it");
        assert_eq!(a.state.owner.as_deref(), Some("a"));
        assert!(Lease::take_over(&store, key, 0, 0, claim("b")).unwrap().is_none(), "taken from a live member");
        let again = Lease::take_over(&store, key, 0, 0, claim("a")).unwrap().expect("its own");
        assert_eq!(again.state.epoch, 2);
        let only_b: Vec<String> = vec!["b".into()];
        let b = Lease::take_over(&store, key, 0, 0, Claim::Member { name: "b", live: &only_b }).unwrap();
        assert_eq!(b.expect("a's lease ran out").state.epoch, 3);
        assert!(matches!(a.release(0, &store), Err(StateError::Fenced { .. })), "a lost it twice over");
        let mut b = Lease::take_over(&store, key, 0, 0, claim("b")).unwrap().unwrap();
        b.release(0, &store).unwrap();
        let c = Lease::take_over(&store, key, 0, 0, claim("c")).unwrap().expect("handed back");
        assert_eq!((c.state.epoch, c.state.owner.as_deref()), (5, Some("c")));
    }
}
