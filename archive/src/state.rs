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
//! (a late writer, paused past its session) finds its write refused and stops there.

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
    /// back with the next epoch.
    pub fn take_over(store: &dyn Store, key: &str, partition: i32, new_start: i64) -> Result<Lease, StateError> {
        loop {
            let found = store.read_state(key).map_err(StateError::Store)?;
            let (state, expected) = match &found {
                Some((bytes, version)) => {
                    let state: PartitionState = serde_json::from_slice(bytes)
                        .map_err(|e| StateError::Corrupt { key: key.to_string(), reason: e.to_string() })?;
                    (state, Some(version))
                }
                None => (PartitionState { epoch: 0, done: new_start, pending: None }, None),
            };
            let state = PartitionState { epoch: state.epoch + 1, ..state };
            match store.write_state(key, &to_json(&state), expected) {
                Ok(version) => {
                    tracing::debug!("partition {partition}: taken over at epoch {}", state.epoch);
                    return Ok(Lease { key: key.to_string(), state, version });
                }
                // Another instance took it over between our read and write: read again.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(StateError::Store(e)),
            }
        }
    }

    /// Replaces the state, unless another instance took the partition over since.
    pub fn write(&mut self, partition: i32, state: PartitionState, store: &dyn Store) -> Result<(), StateError> {
        debug_assert_eq!(state.epoch, self.state.epoch);
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
        let mut first = Lease::take_over(&store, key, 0, 40).unwrap();
        assert_eq!(first.state, PartitionState { epoch: 1, done: 40, pending: None });
        first.write(0, PartitionState { epoch: 1, done: 40, pending: Some(90) }, &store).unwrap();
        let mut second = Lease::take_over(&store, key, 0, 0).unwrap();
        assert_eq!(second.state, PartitionState { epoch: 2, done: 40, pending: Some(90) });
        let late = first.write(0, PartitionState { epoch: 1, done: 90, pending: None }, &store);
        assert!(matches!(late, Err(StateError::Fenced { partition: 0, epoch: 1 })), "{late:?}");
        second.write(0, PartitionState { epoch: 2, done: 90, pending: None }, &store).unwrap();
        assert_eq!(Lease::take_over(&store, key, 0, 0).unwrap().state.done, 90);
    }
}
