//! The lake as a Delta Lake table (`--table delta`): every published file is added by a commit
//! to `_delta_log/` at the lake's root, the moment it becomes visible to the table's readers.
//! Written from the protocol's specification (delta-io/delta, PROTOCOL.md), each rule relied on
//! cited by its section's name where it is applied.
//!
//! - [`log`]: pure; the actions, a log entry's lines, and the snapshot they replay to.
//! - [`schema`]: pure; the table's schema, partition values and per-file statistics.
//! - [`checkpoint`]: a snapshot as a classic checkpoint (Parquet), every so many commits.
//! - [`table`]: the commits: put-if-absent of the next entry, retried on conflict, and the
//!   per-partition `txn` actions that make them exactly-once and fence a stale writer.

pub mod checkpoint;
pub mod log;
pub mod schema;
pub mod table;
