//! Scale-out (`--share`): the members of a consumer group share the topic's partitions, each
//! aggregating the sensors of the partitions it owns into the PostgreSQL table, exactly once,
//! whatever member crashes, pauses or joins when.
//!
//! - [`weather_common::share`]: pure; which partitions each live member should own, and the
//!   moves to get there (the archive's group deals them the same way).
//! - [`member`]: the member's loop: heartbeat, claims and hand-backs, reading, commits.
//! - [`commits`]: a member's commits, on a thread of their own while it reads on.
//! - [`store`]: what the member needs from the store that keeps the group's state.
//! - The state each partition carries from owner to owner (next offset, the open windows of its
//!   sensors, its epoch) and the leases live in PostgreSQL beside the table:
//!   [`crate::sink::postgres::partitions`].
//!
//! Why not Kafka's group protocol: Tansu's coordinator does not hand a dead member's partitions
//! on (docs/tansu), and no broker fences what a member writes to PostgreSQL. A lease in the
//! same database as the rows, checked by every commit, does both, on any broker. Offsets are
//! still committed to the consumer group, for lag tools; a member never reads them back.
//!
//! What a reader of the table sees: each window's row once, committed together with the state
//! of its partition; windows of a partition that changes owner continue where its last commit
//! left them (a week in progress moves with its partition), so the rows are those a single
//! process writes. With `--to-topic`, each commit also sends its windows to the aggregates topic
//! and waits for them to be acknowledged before its transaction commits
//! ([`store::Mirror`]): the topic read as a table holds the same windows.

pub mod commits;
pub mod member;
pub mod store;
