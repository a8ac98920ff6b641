//! Which node owns which shard: rendezvous (highest random weight) hashing
//! over the ready members. Every node computes it from its own membership
//! view with no coordinator; when a member leaves, only its shards move, and
//! a joining member takes about `1/n` of the shards from the others.

use super::{SHARD_COUNT, ShardId, mix64, stable_hash};

/// The weight of `node_id` for `shard`: the owner is the member with the
/// highest weight (ties, which need equal 64-bit hashes, go to the smaller id).
pub fn weight(node_hash: u64, shard: ShardId) -> u64 {
    mix64(node_hash ^ mix64(u64::from(shard.get()).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// The owner of every shard over a set of member ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    members: Vec<String>,
    /// Per shard: an index into `members`; empty when there are none.
    owners: Vec<u16>,
}

impl Placement {
    /// Places every shard over `members` (order and duplicates do not matter).
    pub fn over<I, S>(members: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut members: Vec<String> = members.into_iter().map(Into::into).collect();
        members.sort();
        members.dedup();
        let hashes: Vec<u64> = members
            .iter()
            .map(|member| stable_hash(&[member.as_bytes()]))
            .collect();
        let owners = if members.is_empty() {
            Vec::new()
        } else {
            ShardId::all()
                .map(|shard| {
                    let mut best = 0_usize;
                    let mut best_weight = weight(hashes[0], shard);
                    for (index, &hash) in hashes.iter().enumerate().skip(1) {
                        let candidate = weight(hash, shard);
                        if candidate > best_weight {
                            best = index;
                            best_weight = candidate;
                        }
                    }
                    // At most u16::MAX members: far beyond any cluster.
                    u16::try_from(best).unwrap_or(u16::MAX)
                })
                .collect()
        };
        Self { members, owners }
    }

    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The owner of `shard`, if there is any member.
    pub fn owner(&self, shard: ShardId) -> Option<&str> {
        let index = *self.owners.get(usize::from(shard.get()))?;
        self.members.get(usize::from(index)).map(String::as_str)
    }

    /// The shards `member` owns, in order.
    pub fn shards_of(&self, member: &str) -> Vec<ShardId> {
        let Ok(index) = self.members.binary_search_by(|m| m.as_str().cmp(member)) else {
            return Vec::new();
        };
        ShardId::all()
            .filter(|shard| usize::from(self.owners[usize::from(shard.get())]) == index)
            .collect()
    }

    /// How many shards each member owns, in member order.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let mut counts = vec![0_usize; self.members.len()];
        for &owner in &self.owners {
            counts[usize::from(owner)] += 1;
        }
        self.members.iter().cloned().zip(counts).collect()
    }
}

/// All shards, for a node that is alone (not clustered).
pub fn every_shard() -> Vec<ShardId> {
    debug_assert_eq!(ShardId::all().count(), usize::from(SHARD_COUNT));
    ShardId::all().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn every_shard_has_one_owner_and_order_does_not_matter() {
        let a = Placement::over(nodes(3));
        let mut reversed = nodes(3);
        reversed.reverse();
        assert_eq!(a, Placement::over(reversed));
        let total: usize = a.counts().iter().map(|(_, count)| count).sum();
        assert_eq!(total, usize::from(SHARD_COUNT));
        assert!(
            Placement::over(Vec::<String>::new())
                .owner(ShardId::new(0).unwrap())
                .is_none()
        );
    }

    #[test]
    fn shares_are_within_twenty_percent_of_the_mean() {
        for n in 2..=8 {
            let placement = Placement::over(nodes(n));
            let mean = f64::from(SHARD_COUNT) / n as f64;
            for (member, count) in placement.counts() {
                let off = (count as f64 - mean).abs() / mean;
                assert!(
                    off <= 0.2,
                    "{n} nodes: {member} has {count} (mean {mean:.0})"
                );
            }
        }
    }

    #[test]
    fn only_a_lost_members_shards_move_and_a_joiner_takes_about_its_share() {
        let three = Placement::over(nodes(3));
        let two = Placement::over(["node-1", "node-3"]);
        for shard in ShardId::all() {
            if three.owner(shard) != Some("node-2") {
                assert_eq!(three.owner(shard), two.owner(shard), "shard {shard} moved");
            }
        }
        let four = Placement::over(nodes(4));
        let moved = ShardId::all()
            .filter(|&shard| three.owner(shard) != four.owner(shard))
            .count();
        assert!(
            ShardId::all()
                .filter(|&shard| three.owner(shard) != four.owner(shard))
                .all(|shard| four.owner(shard) == Some("node-4"))
        );
        assert!(
            (200..=312).contains(&moved),
            "{moved} shards moved to the 4th node"
        );
    }

    #[test]
    fn placement_is_pinned() {
        // A change here moves every room of a running cluster on upgrade.
        let placement = Placement::over(nodes(3));
        let firsts: Vec<&str> = (0..4)
            .map(|n| placement.owner(ShardId::new(n).unwrap()).unwrap())
            .collect();
        assert_eq!(firsts, ["node-2", "node-1", "node-3", "node-1"]);
    }
}
