//! The control loop: it turns the membership view into a placement, hosts
//! the shards placement gives this node (under fenced leases), hands off
//! the ones it no longer owns, and stops hosting without a majority.
//!
//! # One step (every [`TICK`] and on every membership change)
//! 1. Placement: rendezvous hashing over the `ready` members.
//! 2. Majority: live non-draining members versus the last stable membership
//!    (`majority`). Without a strict majority the node stops hosting at
//!    once: it drops its leases (they run out; the majority takes them) and
//!    its rooms retire. The rule is also applied by a watcher task of its
//!    own on every membership change: a step can sit for seconds on a store
//!    the node can no longer reach (a partition cuts those too), and a
//!    minority must stop hosting — and turn new sockets away — within a
//!    gossip round of losing its peers, not after the store times out.
//! 3. Hand-off: shards held but no longer placed here are retired (their
//!    sockets told to reconnect, their writes in flight finished), then
//!    their leases released so the new owner takes them at once.
//! 4. Take-over: missing shards are taken as soon as their lease is free or
//!    expired, and the active rooms in them are activated eagerly, restored
//!    from the store and the resume buffers in Redis.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use invigil_actors::live::directory::Directory;
use invigil_actors::shard::ShardId;
use invigil_actors::shard::placement::Placement;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::membership::{MemberStatus, MembershipView};
use super::node::ClusterNode;

/// How often the control loop runs without a membership change.
const TICK: Duration = Duration::from_millis(250);
/// How long a hand-off waits for a shard's rooms to finish their writes.
const HANDOFF_WAIT: Duration = Duration::from_secs(3);
/// A draining node announces it this long before handing shards off, so
/// every member has moved the shards in its placement by then and sockets
/// told to reconnect go straight to the new owners.
const DRAIN_ANNOUNCE: Duration = Duration::from_secs(1);
/// A joining node that sees no other member becomes ready after this long.
const ALONE_AFTER: Duration = Duration::from_secs(2);

/// Runs the control loop until `stopped`.
pub async fn run(
    node: Arc<ClusterNode>,
    directory: Arc<Directory>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut control = Control {
        node,
        directory,
        known_held: HashSet::new(),
    };
    let mut views = control.node.membership.subscribe();
    tokio::spawn(watch_majority(
        control.node.clone(),
        control.directory.clone(),
        stopped.clone(),
    ));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = views.changed() => {}
            () = control.node.wake.notified() => {}
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
        }
        let view = control.node.membership.view();
        // Joining → ready once we see another member (or there is none
        // to wait for): joining with an empty view would take every shard.
        let node = &control.node;
        if node.status() == MemberStatus::Joining
            && !node.draining.load(Ordering::Relaxed)
            && (view.members.len() > 1 || started.elapsed() >= ALONE_AFTER)
        {
            node.set_status(MemberStatus::Ready).await;
            info!(node_id = %node.node_id, members = view.members.len(), "cluster member ready");
        }
        control.step(&view).await;
    }
}

struct Control {
    node: Arc<ClusterNode>,
    directory: Arc<Directory>,
    /// The shards held at the last step (new ones get their rooms activated).
    known_held: HashSet<ShardId>,
}

impl Control {
    /// One pass of the control loop (module doc).
    async fn step(&mut self, view: &MembershipView) {
        let node = self.node.clone();
        let peers: Vec<(String, String)> = view
            .members
            .iter()
            .filter(|member| member.node_id != node.node_id)
            .map(|member| (member.node_id.clone(), member.actor_addr.clone()))
            .collect();
        node.transport.set_peers(&peers).await;
        node.tunnels.close_departed(&node.node_id, view);

        // Placement over the ready members (this node only once it says so).
        let ready: Vec<String> = view.ready().map(|member| member.node_id.clone()).collect();
        let placement = Arc::new(Placement::over(ready));
        node.set_placement(placement.clone());

        if !apply_majority(&node, &self.directory, view) {
            return;
        }
        let draining = node.draining.load(Ordering::Relaxed);
        if draining && still_announcing(&node) {
            // Still announcing: keep serving until the others have heard.
            return;
        }
        let desired: Vec<ShardId> = if draining || node.status() != MemberStatus::Ready {
            Vec::new()
        } else {
            placement.shards_of(&node.node_id)
        };
        self.hand_off(&desired).await;
        if draining && node.leases.held_count() == 0 {
            let _ = node.drained.send(true);
        }
        if !node.leases.holds_desired()
            && let Err(error) = node.leases.acquire_missing().await
        {
            warn!(%error, "taking shards failed");
        }
        if !node.hosting() {
            // The majority was lost while this step ran (the watcher has
            // let go of everything, or will at its next tick).
            return;
        }
        self.activate_taken().await;
        let sockets = u64::try_from(node.tunnels.count()).unwrap_or(u64::MAX);
        node.membership.set_load(sockets).await;
    }

    /// Makes `desired` the shards to hold; shards held but placed elsewhere
    /// take nothing new from now on, and once their actors have stopped
    /// (writes in flight committed) their leases go back.
    async fn hand_off(&self, desired: &[ShardId]) {
        let leases = &self.node.leases;
        let desired_set: HashSet<ShardId> = desired.iter().copied().collect();
        leases.set_desired(desired.to_vec());
        let handoff: HashSet<ShardId> = leases
            .held_shards()
            .into_iter()
            .filter(|shard| !desired_set.contains(shard))
            .collect();
        leases.set_releasing(&handoff);
        if handoff.is_empty() {
            return;
        }
        let busy = self
            .directory
            .retire_shards(&handoff, "the room moves to another node", HANDOFF_WAIT)
            .await;
        let shards: Vec<ShardId> = handoff.difference(&busy).copied().collect();
        info!(node_id = %self.node.node_id, shards = shards.len(), still_busy = busy.len(), "handing shards off");
        if let Err(error) = leases.release(&shards).await {
            warn!(%error, "releasing handed-off leases failed; they expire on their own");
        }
    }

    /// Rooms of shards taken over (here or by the renewal loop) keep their
    /// timers: they are activated as soon as their shard is held.
    async fn activate_taken(&mut self) {
        let held: HashSet<ShardId> = self
            .node
            .leases
            .fences()
            .into_iter()
            .map(|fence| fence.shard)
            .collect();
        let taken = held.difference(&self.known_held).count();
        self.known_held = held;
        if taken == 0 {
            return;
        }
        match self.directory.activate_active_plans().await {
            Ok(live) => {
                info!(node_id = %self.node.node_id, shards = taken, actors = live, "shards taken over; active rooms activated")
            }
            Err(error) => {
                warn!(%error, "activating the rooms of taken shards failed; retried");
                self.known_held.clear();
            }
        }
    }
}

/// Applies the majority rule (module doc) and publishes the members by
/// status; false: hosting nothing. Cheap and without I/O: the watcher and
/// the step both call it.
fn apply_majority(node: &ClusterNode, directory: &Directory, view: &MembershipView) -> bool {
    let (majority, unreachable) = {
        let mut stability = node
            .stability
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let majority =
            stability.observe(view, node.draining.load(Ordering::Relaxed), Instant::now());
        // Stable members that are not live now and did not drain.
        let unreachable: Vec<String> = stability
            .stable
            .iter()
            .filter(|id| !stability.departed.contains(*id))
            .filter(|id| !view.members.iter().any(|member| &member.node_id == *id))
            .cloned()
            .collect();
        (majority, unreachable)
    };
    count_members(&node.metrics, view, unreachable.len());
    // With a majority, the leases of members gossip declares dead are
    // taken as soon as those stop renewing (not when they run out): a
    // cut-off member is in a minority, stops hosting, and the epoch
    // fences any write it still makes (docs/cluster.md, "Failover").
    node.leases
        .set_silent(if majority { unreachable } else { Vec::new() });
    let was_hosting = node.hosting.swap(majority, Ordering::Relaxed);
    if majority {
        return true;
    }
    if was_hosting {
        warn!(node_id = %node.node_id, live = view.members.len(), "lost the majority of the last stable membership: hosting nothing");
    }
    // Also when a step that was already past this check took a lease in
    // the meantime: a minority holds none.
    node.leases.set_desired(Vec::new());
    if was_hosting || node.leases.held_count() > 0 {
        node.leases.abandon_all();
        directory.retire_all("this node lost contact with the cluster");
    }
    false
}

/// Applies the majority rule on every membership change (and every
/// [`TICK`]: the last stable membership forms with time), independently of
/// the control step (module doc, step 2), and closes the tunnels of
/// departed members.
async fn watch_majority(
    node: Arc<ClusterNode>,
    directory: Arc<Directory>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut views = node.membership.subscribe();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = views.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
        }
        let view = node.membership.view();
        // Tunnels to departed members close now too, so their sockets
        // reconnect elsewhere without waiting for the step.
        node.tunnels.close_departed(&node.node_id, &view);
        apply_majority(&node, &directory, &view);
    }
}

/// Whether a drain started less than [`DRAIN_ANNOUNCE`] ago.
fn still_announcing(node: &ClusterNode) -> bool {
    node.drain_started
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .is_some_and(|started| started.elapsed() < DRAIN_ANNOUNCE)
}

/// `invigil_cluster_members{status}`: live members by their status, and
/// members of the last stable membership that are not live.
fn count_members(
    metrics: &invigil_actors::metrics::Metrics,
    view: &MembershipView,
    unreachable: usize,
) {
    let mut counts = [0i64; 4];
    for member in &view.members {
        counts[match member.status {
            MemberStatus::Joining => 0,
            MemberStatus::Ready => 1,
            MemberStatus::Draining => 2,
        }] += 1;
    }
    counts[3] = i64::try_from(unreachable).unwrap_or(i64::MAX);
    metrics.set_members(counts);
}
