//! Who reads which partition when several processes share a topic (the aggregator's `--share`,
//! the archive's `--group`): the partitions dealt out among the live members, the same way by
//! every member, and what one member must do to get from what it owns to its share. Pure: the
//! members and the partitions come from the store that keeps the group's leases.

use std::collections::BTreeSet;

/// The partitions `member` should own when `members` are alive: dealt round-robin over the
/// members in name order, so that every member computes the same deal and each partition has
/// exactly one member. Empty if `member` is not among them.
pub fn share_of(member: &str, members: &[String], partitions: &[i32]) -> BTreeSet<i32> {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut partitions = partitions.to_vec();
    partitions.sort_unstable();
    let Some(index) = sorted.iter().position(|&m| m == member) else { return BTreeSet::new() };
    partitions.into_iter().skip(index).step_by(sorted.len()).collect()
}

/// What a member does to move from the partitions it `owns` to its `share`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moves {
    /// Owned, no longer its share: committed and handed back.
    pub release: BTreeSet<i32>,
    /// Its share, not owned yet: claimed once their owner has let them go (or died).
    pub claim: BTreeSet<i32>,
}

impl Moves {
    pub fn between(owns: &BTreeSet<i32>, share: &BTreeSet<i32>) -> Moves {
        Moves { release: owns.difference(share).copied().collect(), claim: share.difference(owns).copied().collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.release.is_empty() && self.claim.is_empty()
    }
}

/// A member's default name: the host's name and the process id, unique among running members.
pub fn default_member() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = if host.trim().is_empty() { "member" } else { host.trim() };
    format!("{host}-{}", std::process::id())
}

/// A member's name, checked: it names the member in logs and in the store's keys.
pub fn check_member(member: &str) -> Result<(), String> {
    match member.is_empty() || member.len() > 200 || member.contains(['/', '\\']) || member.starts_with('.') {
        true => Err(format!("--member `{member}` must be 1 to 200 characters, without `/`, and not start with `.`")),
        false => Ok(()),
    }
}

/// A lease, checked: members beat four times a lease, and a shorter one would take partitions
/// from members only slowed down.
pub fn check_lease(lease: std::time::Duration) -> Result<(), String> {
    match lease < std::time::Duration::from_secs(1) {
        true => Err("--lease must be at least 1 second".to_string()),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    /// Every partition goes to exactly one member, whatever order each member lists the
    /// members in, and the shares differ by at most one partition.
    #[test]
    fn shares_are_disjoint_complete_and_even() {
        let partitions = [5, 0, 3, 1, 4, 2];
        for members in [names(&["b", "a", "c"]), names(&["c", "b", "a"]), names(&["a", "b"]), names(&["z"])] {
            let shares: Vec<BTreeSet<i32>> = members.iter().map(|m| share_of(m, &members, &partitions)).collect();
            let mut all: Vec<i32> = shares.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(all, [0, 1, 2, 3, 4, 5], "{members:?}");
            let sizes: Vec<usize> = shares.iter().map(BTreeSet::len).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        }
        assert_eq!(share_of("a", &names(&["b", "a", "c"]), &partitions), BTreeSet::from([0, 3]));
        assert_eq!(share_of("c", &names(&["c", "b", "a"]), &partitions), BTreeSet::from([2, 5]));
    }

    /// A member that is not alive (its lease ran out) has no share; more members than
    /// partitions leave the last ones with none.
    #[test]
    fn no_share_for_the_dead_or_the_surplus() {
        assert!(share_of("d", &names(&["a", "b"]), &[0, 1]).is_empty());
        assert!(share_of("c", &names(&["a", "b", "c"]), &[0, 1]).is_empty());
    }

    /// A member hands back what is no longer its share and claims what is.
    #[test]
    fn moves_from_what_is_owned_to_the_share() {
        let moves = Moves::between(&BTreeSet::from([0, 1, 2]), &BTreeSet::from([2, 3]));
        assert_eq!(moves, Moves { release: BTreeSet::from([0, 1]), claim: BTreeSet::from([3]) });
        assert!(Moves::between(&BTreeSet::from([1]), &BTreeSet::from([1])).is_empty());
    }
}
