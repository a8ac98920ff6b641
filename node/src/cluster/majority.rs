//! The majority rule: a node hosts shards only while the live members it
//! sees are a strict majority of the last stable membership, so a node cut
//! off from the others stops before they take its shards over.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::membership::{MemberStatus, MembershipView};

/// A membership unchanged this long becomes the one majorities count against.
pub(super) const STABLE_AFTER: Duration = Duration::from_secs(3);

/// The majority rule's memory.
#[derive(Debug)]
pub(super) struct Stability {
    /// The live set being watched, and since when it is unchanged.
    watching: BTreeSet<String>,
    since: Instant,
    /// The last stable membership (empty: none yet).
    pub(super) stable: BTreeSet<String>,
    /// Members seen draining: they leave on purpose and do not count
    /// against a majority (a node that comes back live leaves this set).
    pub(super) departed: BTreeSet<String>,
}

impl Stability {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            watching: BTreeSet::new(),
            since: now,
            stable: BTreeSet::new(),
            departed: BTreeSet::new(),
        }
    }

    /// Takes in a view at `now`; returns whether its live, non-draining
    /// members are a strict majority of the last stable membership (minus
    /// the members that drained). A draining node always hands off.
    pub(super) fn observe(&mut self, view: &MembershipView, draining: bool, now: Instant) -> bool {
        for member in &view.members {
            if member.status == MemberStatus::Draining {
                self.departed.insert(member.node_id.clone());
            } else {
                self.departed.remove(&member.node_id);
            }
        }
        let live: BTreeSet<String> = view
            .members
            .iter()
            .filter(|member| member.status != MemberStatus::Draining)
            .map(|member| member.node_id.clone())
            .collect();
        if live != self.watching {
            self.watching = live.clone();
            self.since = now;
        }
        let baseline = self.stable.difference(&self.departed).count();
        let majority = live.len() * 2 > baseline || draining;
        if majority && now.duration_since(self.since) >= STABLE_AFTER {
            self.stable = live;
        }
        majority
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::membership::MemberInfo;

    fn view(members: &[(&str, MemberStatus)]) -> MembershipView {
        MembershipView {
            members: members
                .iter()
                .map(|(node_id, status)| MemberInfo {
                    node_id: (*node_id).to_string(),
                    generation: 1,
                    http_addr: "127.0.0.1:1".into(),
                    actor_addr: "127.0.0.1:2".into(),
                    status: *status,
                    load: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_minority_of_the_last_stable_membership_stops_hosting() {
        use MemberStatus::Ready;
        let start = Instant::now();
        let later = |s: u64| start + Duration::from_secs(s);
        let mut quorum = Stability::new(start);
        let three = view(&[("a", Ready), ("b", Ready), ("c", Ready)]);
        assert!(quorum.observe(&three, false, start));
        assert!(
            quorum.observe(&three, false, later(4)),
            "three become the stable membership"
        );
        // One lost: two of three is a majority.
        let two = view(&[("a", Ready), ("b", Ready)]);
        assert!(quorum.observe(&two, false, later(5)));
        // A partition leaves this node alone: one of three is not (not even
        // after a while: a minority never becomes the stable membership).
        let alone = view(&[("a", Ready)]);
        assert!(!quorum.observe(&alone, false, later(6)));
        assert!(!quorum.observe(&alone, false, later(20)));
        // Healed: hosting again.
        assert!(quorum.observe(&three, false, later(21)));
    }

    #[test]
    fn drained_members_do_not_count_against_a_majority() {
        use MemberStatus::{Draining, Ready};
        let start = Instant::now();
        let later = |s: u64| start + Duration::from_secs(s);
        let mut quorum = Stability::new(start);
        let three = view(&[("a", Ready), ("b", Ready), ("c", Ready)]);
        quorum.observe(&three, false, start);
        quorum.observe(&three, false, later(4));
        // Two drain at once (scale-in): the last one keeps hosting.
        let draining = view(&[("a", Ready), ("b", Draining), ("c", Draining)]);
        assert!(quorum.observe(&draining, false, later(5)));
        assert!(quorum.observe(&view(&[("a", Ready)]), false, later(6)));
        // A draining node itself always hands off.
        assert!(Stability::new(start).observe(&view(&[("a", Draining)]), true, start));
    }
}
