//! Gossip membership: who is in the cluster, alive and ready (chitchat).
//!
//! Every node runs one chitchat instance (UDP gossip) identified by
//! `ChitchatId { node_id, generation_id: generation, gossip_advertise_addr }`.
//! The generation is the node's start time in ms, so a restarted node is a new
//! chitchat member. Until the old generation is declared dead both are live;
//! the view keeps the highest generation of each node id.
//!
//! # Published keys
//! Each node publishes its own state under the constants below and every
//! reader goes through [`MemberInfo::from_state`]:
//! - `invigil.http_addr`: `host:port` of the REST / WebSocket listener
//! - `invigil.actor_addr`: `host:port` of the ractor_cluster transport
//! - `invigil.status`: `joining` | `ready` | `draining`
//! - `invigil.load`: a decimal `u64` (open sockets), informational
//!
//! A member with a missing or malformed key (half-propagated or hostile
//! gossip) is left out of the view and logged at debug.
//!
//! # Failure detection
//! chitchat, not a TCP session, decides who is alive. Its detector is a
//! simplified phi accrual: `phi = silence / mean heartbeat interval` (no
//! standard deviation term, so there is no minimum std dev to tune). A peer
//! leaves `live_nodes` at the first liveness check, run once per gossip round,
//! where `phi > phi_threshold`. `dead_node_grace_period` does not remove a
//! node from the live set; it only delays the garbage collection of a dead
//! node's state.
//!
//! A node's heartbeat rises on every gossip round and every message it
//! handles, and reaches us directly and through the digests of third
//! parties, so the mean interval we observe is at most the gossip interval.
//! With the node defaults (200 ms, phi 8) a silent peer goes after
//! 8 × ≤ 0.2 s ≤ 1.6 s plus at most one round: under 2 s (measured 1.2 s
//! on 127.0.0.1, see the tests). The settings, in [`failure_detector_config`]:
//! - `initial_interval` = the gossip interval. It is the prior mean (weighted as
//!   5 samples) before real samples exist; chitchat's default of 5 s would make
//!   a new peer take 40 s to be declared dead.
//! - `max_interval` = 10 gossip intervals. A longer gap means the peer was
//!   already declared dead; it is not a sample of the normal rhythm.
//! - `sampling_window_size` = 1 000 samples (a few minutes of heartbeats).
//! - `dead_node_grace_period` = 10 min: long enough for every peer to see a
//!   dead generation die before its state is forgotten (so gossip does not
//!   resurrect it), short enough that restarts do not pile up dead entries.
//!
//! # Change notification
//! chitchat's live-nodes watcher fires after a gossip round in which the live
//! set or the max version (any key) of a live member changed; it drives the
//! published view, so no extra polling is needed. Our own updates publish at
//! once. The view is sent only when it differs from the last one.
//!
//! # Seeds
//! Seeds are `host:port` strings handed to chitchat: it resolves host names at
//! start and again every 60 s and logs a warning for each one that does not
//! resolve. A bad seed is never fatal; a node learns the others from any seed
//! that answers, and a node that starts later joins through us.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chitchat::transport::UdpTransport;
use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState,
    ProtocolVersion, spawn_chitchat,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// `host:port` of the node's REST / WebSocket listener.
pub const HTTP_ADDR_KEY: &str = "invigil.http_addr";
/// `host:port` of the node's ractor_cluster transport.
pub const ACTOR_ADDR_KEY: &str = "invigil.actor_addr";
/// [`MemberStatus::as_str`] of the node.
pub const STATUS_KEY: &str = "invigil.status";
/// The node's load as a decimal `u64`.
pub const LOAD_KEY: &str = "invigil.load";

/// Heartbeat intervals kept by the failure detector for each peer.
const SAMPLING_WINDOW_SIZE: usize = 1_000;
/// Heartbeat gaps longer than this many gossip intervals are not sampled.
const MAX_INTERVAL_IN_GOSSIP_ROUNDS: u32 = 10;
/// How long a dead member's state is kept before it is forgotten.
const DEAD_NODE_GRACE_PERIOD: Duration = Duration::from_secs(10 * 60);
/// How long deleted keys are kept as tombstones (we delete none today).
const MARKED_FOR_DELETION_GRACE_PERIOD: Duration = Duration::from_secs(60 * 60);
/// Longest published value quoted in a log line.
const LOGGED_VALUE_MAX_CHARS: usize = 64;

/// Where a member is in its life cycle; only `Ready` members host shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    Joining,
    Ready,
    Draining,
}

impl MemberStatus {
    /// Returns the value published under [`STATUS_KEY`].
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Joining => "joining",
            MemberStatus::Ready => "ready",
            MemberStatus::Draining => "draining",
        }
    }

    /// Parses a published status; anything but the exact lowercase names is `None`.
    pub fn parse(value: &str) -> Option<MemberStatus> {
        match value {
            "joining" => Some(MemberStatus::Joining),
            "ready" => Some(MemberStatus::Ready),
            "draining" => Some(MemberStatus::Draining),
            _ => None,
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One live member as its gossip state describes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberInfo {
    /// Stable node id, e.g. `node-1`.
    pub node_id: String,
    /// Start time in ms since the epoch; a restarted node is a new member.
    pub generation: u64,
    /// `host:port` of the REST / WebSocket listener.
    pub http_addr: String,
    /// `host:port` of the ractor_cluster transport.
    pub actor_addr: String,
    pub status: MemberStatus,
    /// Open sockets; informational.
    pub load: u64,
}

impl MemberInfo {
    /// Reads a member from its gossip state, or returns `None` (logged at
    /// debug) when a key is missing or malformed.
    pub fn from_state(chitchat_id: &ChitchatId, node_state: &NodeState) -> Option<MemberInfo> {
        match Self::parse_state(chitchat_id, node_state) {
            Ok(member) => Some(member),
            Err(problem) => {
                debug!(member = ?chitchat_id, %problem, "member left out of the view");
                None
            }
        }
    }

    fn parse_state(
        chitchat_id: &ChitchatId,
        node_state: &NodeState,
    ) -> Result<MemberInfo, StateProblem> {
        if chitchat_id.node_id.is_empty() {
            return Err(StateProblem::EmptyNodeId);
        }
        let http_addr = host_port_value(node_state, HTTP_ADDR_KEY)?;
        let actor_addr = host_port_value(node_state, ACTOR_ADDR_KEY)?;
        let status_value = required_value(node_state, STATUS_KEY)?;
        let status = MemberStatus::parse(status_value)
            .ok_or_else(|| StateProblem::malformed(STATUS_KEY, status_value))?;
        let load_value = required_value(node_state, LOAD_KEY)?;
        let load = load_value
            .parse::<u64>()
            .map_err(|_| StateProblem::malformed(LOAD_KEY, load_value))?;
        Ok(MemberInfo {
            node_id: chitchat_id.node_id.to_string(),
            generation: chitchat_id.generation_id,
            http_addr: http_addr.to_owned(),
            actor_addr: actor_addr.to_owned(),
            status,
            load,
        })
    }
}

/// Why a gossip state is not a member.
#[derive(Debug, PartialEq)]
enum StateProblem {
    EmptyNodeId,
    MissingKey(&'static str),
    Malformed { key: &'static str, value: String },
}

impl StateProblem {
    fn malformed(key: &'static str, value: &str) -> StateProblem {
        let value = value.chars().take(LOGGED_VALUE_MAX_CHARS).collect();
        StateProblem::Malformed { key, value }
    }
}

impl fmt::Display for StateProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateProblem::EmptyNodeId => write!(formatter, "empty node id"),
            StateProblem::MissingKey(key) => write!(formatter, "missing key {key}"),
            StateProblem::Malformed { key, value } => {
                write!(formatter, "malformed {key}: {value:?}")
            }
        }
    }
}

fn required_value<'a>(
    node_state: &'a NodeState,
    key: &'static str,
) -> Result<&'a str, StateProblem> {
    node_state.get(key).ok_or(StateProblem::MissingKey(key))
}

fn host_port_value<'a>(
    node_state: &'a NodeState,
    key: &'static str,
) -> Result<&'a str, StateProblem> {
    let value = required_value(node_state, key)?;
    if is_host_port(value) {
        Ok(value)
    } else {
        Err(StateProblem::malformed(key, value))
    }
}

/// Accepts `host:port` (a name, an IPv4 or a bracketed IPv6 host) with a non-zero port.
fn is_host_port(value: &str) -> bool {
    let Some((host, port)) = value.rsplit_once(':') else {
        return false;
    };
    let host_is_plausible = !host.is_empty() && !host.contains(char::is_whitespace);
    host_is_plausible && port.parse::<u16>().is_ok_and(|port| port != 0)
}

/// The live members as this node sees them.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MembershipView {
    /// Live members (self included), sorted by node id, one per node id: its
    /// highest live generation.
    pub members: Vec<MemberInfo>,
}

impl MembershipView {
    /// Returns the members that may host shards.
    pub fn ready(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members
            .iter()
            .filter(|member| member.status == MemberStatus::Ready)
    }

    /// Returns the member with this node id, if live.
    pub fn get(&self, node_id: &str) -> Option<&MemberInfo> {
        self.members.iter().find(|member| member.node_id == node_id)
    }

    /// Builds the view from chitchat's live nodes: malformed states are left
    /// out and each node id keeps its highest generation.
    pub fn from_live_nodes<'a>(
        live_nodes: impl IntoIterator<Item = (&'a ChitchatId, &'a NodeState)>,
    ) -> MembershipView {
        let mut newest_by_node_id: BTreeMap<String, MemberInfo> = BTreeMap::new();
        for (chitchat_id, node_state) in live_nodes {
            let Some(member) = MemberInfo::from_state(chitchat_id, node_state) else {
                continue;
            };
            match newest_by_node_id.entry(member.node_id.clone()) {
                Entry::Vacant(entry) => {
                    entry.insert(member);
                }
                Entry::Occupied(mut entry) => {
                    // Equal generations only come from a misconfiguration;
                    // the addresses break the tie so the view does not flap.
                    let kept = entry.get();
                    if (member.generation, &member.http_addr, &member.actor_addr)
                        > (kept.generation, &kept.http_addr, &kept.actor_addr)
                    {
                        entry.insert(member);
                    }
                }
            }
        }
        MembershipView {
            members: newest_by_node_id.into_values().collect(),
        }
    }
}

/// How a node joins the gossip (`[cluster]` in the node config).
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// Nodes only gossip with nodes of the same cluster id.
    pub cluster_id: String,
    pub node_id: String,
    /// Start time in ms since the epoch.
    pub generation: u64,
    pub gossip_listen: SocketAddr,
    pub gossip_advertise: SocketAddr,
    /// `host:port` gossip addresses of a few nodes to join through.
    pub seeds: Vec<String>,
    /// The node uses 200 ms.
    pub gossip_interval: Duration,
    /// The node uses 8.0.
    pub phi_threshold: f64,
    /// Published under [`HTTP_ADDR_KEY`].
    pub http_addr: String,
    /// Published under [`ACTOR_ADDR_KEY`].
    pub actor_addr: String,
}

/// Returns the detector settings explained in the module doc.
fn failure_detector_config(config: &MembershipConfig) -> FailureDetectorConfig {
    FailureDetectorConfig {
        phi_threshold: config.phi_threshold,
        sampling_window_size: SAMPLING_WINDOW_SIZE,
        max_interval: config.gossip_interval * MAX_INTERVAL_IN_GOSSIP_ROUNDS,
        initial_interval: config.gossip_interval,
        dead_node_grace_period: DEAD_NODE_GRACE_PERIOD,
    }
}

/// This node's place in the gossip: publishes its state and keeps the latest
/// [`MembershipView`].
pub struct Membership {
    node_id: String,
    chitchat_handle: ChitchatHandle,
    view_tx: watch::Sender<Arc<MembershipView>>,
    refresh_stop_tx: oneshot::Sender<()>,
    refresh_task: JoinHandle<()>,
}

impl Membership {
    /// Starts gossiping with status `Joining` and load 0.
    pub async fn start(config: MembershipConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !config.gossip_interval.is_zero(),
            "gossip interval must be positive"
        );
        anyhow::ensure!(
            config.phi_threshold.is_finite() && config.phi_threshold > 0.0,
            "phi threshold must be a positive number, got {}",
            config.phi_threshold
        );
        // Peers would leave us out of their views for a bad own address.
        for (key, value) in [
            (HTTP_ADDR_KEY, &config.http_addr),
            (ACTOR_ADDR_KEY, &config.actor_addr),
        ] {
            anyhow::ensure!(is_host_port(value), "{key} {value:?} is not host:port");
        }

        let chitchat_id = ChitchatId::new(
            config.node_id.as_str(),
            config.generation,
            config.gossip_advertise,
        );
        let chitchat_config = ChitchatConfig {
            chitchat_id,
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: config.gossip_listen,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: failure_detector_config(&config),
            marked_for_deletion_grace_period: MARKED_FOR_DELETION_GRACE_PERIOD,
            catchup_callback: None,
            extra_liveness_predicate: None,
            // V1 compresses digests, which our few members do not need, and
            // would have to be rolled out to every node first.
            protocol_version: ProtocolVersion::V0,
        };
        let initial_state = vec![
            (HTTP_ADDR_KEY.to_owned(), config.http_addr.clone()),
            (ACTOR_ADDR_KEY.to_owned(), config.actor_addr.clone()),
            (STATUS_KEY.to_owned(), MemberStatus::Joining.to_string()),
            (LOAD_KEY.to_owned(), "0".to_owned()),
        ];
        let chitchat_handle = spawn_chitchat(chitchat_config, initial_state, &UdpTransport)
            .await
            .with_context(|| format!("cannot gossip on {}", config.gossip_listen))?;

        let chitchat = chitchat_handle.chitchat();
        let (view_tx, live_nodes_rx) = {
            let chitchat_guard = chitchat.lock().await;
            let initial_view = Arc::new(current_view(&chitchat_guard));
            (
                watch::Sender::new(initial_view),
                chitchat_guard.live_nodes_watcher(),
            )
        };
        let (refresh_stop_tx, refresh_stop_rx) = oneshot::channel();
        let refresh_task = tokio::spawn(refresh_view_on_changes(
            chitchat,
            live_nodes_rx,
            chitchat_handle.termination_watcher(),
            view_tx.clone(),
            refresh_stop_rx,
        ));
        info!(
            node_id = %config.node_id,
            generation = config.generation,
            gossip_advertise = %config.gossip_advertise,
            seeds = ?config.seeds,
            "gossip membership started"
        );
        Ok(Membership {
            node_id: config.node_id,
            chitchat_handle,
            view_tx,
            refresh_stop_tx,
            refresh_task,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Publishes a new status; our own view has it when this returns, peers
    /// within about one gossip round.
    pub async fn set_status(&self, status: MemberStatus) {
        self.publish_own_value(STATUS_KEY, status.as_str()).await;
    }

    /// Publishes a new load, like [`Membership::set_status`].
    pub async fn set_load(&self, load: u64) {
        self.publish_own_value(LOAD_KEY, &load.to_string()).await;
    }

    /// Returns the latest view.
    pub fn view(&self) -> Arc<MembershipView> {
        self.view_tx.borrow().clone()
    }

    /// Returns a receiver that changes whenever the live set or a member's
    /// published state changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MembershipView>> {
        self.view_tx.subscribe()
    }

    /// Stops gossiping; peers then declare this generation dead.
    pub async fn shutdown(self) {
        let Membership {
            node_id,
            chitchat_handle,
            refresh_stop_tx,
            refresh_task,
            ..
        } = self;
        // An error means the task has already ended.
        let _ = refresh_stop_tx.send(());
        if let Err(error) = refresh_task.await {
            warn!(%node_id, %error, "membership refresh task failed");
        }
        if let Err(error) = chitchat_handle.shutdown().await {
            warn!(%node_id, %error, "gossip stopped with an error");
        }
        info!(%node_id, "gossip membership stopped");
    }

    async fn publish_own_value(&self, key: &'static str, value: &str) {
        let view_tx = &self.view_tx;
        self.chitchat_handle
            .with_chitchat(|chitchat| {
                chitchat.self_node_state().set(key, value);
                publish_view(chitchat, view_tx);
            })
            .await;
    }
}

/// Republishes the view each time chitchat reports a change, until stopped.
async fn refresh_view_on_changes(
    chitchat: Arc<Mutex<Chitchat>>,
    mut live_nodes_rx: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    gossip_terminated: impl Future<Output = anyhow::Result<()>>,
    view_tx: watch::Sender<Arc<MembershipView>>,
    mut stop_rx: oneshot::Receiver<()>,
) {
    tokio::pin!(gossip_terminated);
    loop {
        tokio::select! {
            _ = &mut stop_rx => return,
            result = &mut gossip_terminated => {
                // Peers will declare us dead; our own view is frozen from here.
                if let Err(error) = result {
                    error!(%error, "gossip stopped unexpectedly");
                }
                return;
            }
            changed = live_nodes_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        // The watched map is only the trigger: the view is computed from the
        // current state under the lock, like our own updates, so views are
        // published in the order of the states they come from.
        let chitchat_guard = chitchat.lock().await;
        publish_view(&chitchat_guard, &view_tx);
    }
}

fn current_view(chitchat: &Chitchat) -> MembershipView {
    let live_states = chitchat
        .live_nodes()
        .filter_map(|chitchat_id| Some((chitchat_id, chitchat.node_state(chitchat_id)?)));
    MembershipView::from_live_nodes(live_states)
}

/// Sends the current view if it differs from the published one. Called with
/// the chitchat lock held.
fn publish_view(chitchat: &Chitchat, view_tx: &watch::Sender<Arc<MembershipView>>) {
    let view = current_view(chitchat);
    view_tx.send_if_modified(|published| {
        if **published == view {
            return false;
        }
        log_member_changes(published, &view);
        *published = Arc::new(view);
        true
    });
}

fn log_member_changes(previous: &MembershipView, current: &MembershipView) {
    for member in &current.members {
        match previous.get(&member.node_id) {
            Some(known) if known.generation == member.generation => {
                if known.status != member.status {
                    info!(node_id = %member.node_id, status = %member.status, "member status changed");
                }
            }
            _ => info!(
                node_id = %member.node_id,
                generation = member.generation,
                status = %member.status,
                "member joined"
            ),
        }
    }
    for member in &previous.members {
        if current.get(&member.node_id).is_none() {
            info!(node_id = %member.node_id, generation = member.generation, "member left");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const NODE_IDS: [&str; 3] = ["node-a", "node-b", "node-c"];
    const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);
    const FIRST_GENERATION: u64 = 1_000;

    /// Polls `condition` every 20 ms; returns whether it held before `timeout`.
    async fn wait_until(mut condition: impl FnMut() -> bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn free_udp_addr() -> SocketAddr {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a free udp port");
        socket
            .local_addr()
            .expect("local address of a bound socket")
    }

    fn node_ids_of(view: &MembershipView) -> Vec<&str> {
        view.members
            .iter()
            .map(|member| member.node_id.as_str())
            .collect()
    }

    /// Members started in one process, each seeded with all the others plus two
    /// seeds that never resolve.
    struct TestCluster {
        configs: Vec<MembershipConfig>,
        members: Vec<Membership>,
    }

    impl TestCluster {
        async fn start(cluster_id: &str, node_ids: &[&str]) -> TestCluster {
            let gossip_addrs: Vec<SocketAddr> = node_ids.iter().map(|_| free_udp_addr()).collect();
            let mut configs = Vec::new();
            let mut members = Vec::new();
            for (index, node_id) in node_ids.iter().enumerate() {
                let mut seeds: Vec<String> = gossip_addrs
                    .iter()
                    .filter(|addr| **addr != gossip_addrs[index])
                    .map(ToString::to_string)
                    .collect();
                seeds.push("no-such-host.invalid:7946".to_owned());
                seeds.push("not-a-seed".to_owned());
                let config = MembershipConfig {
                    cluster_id: cluster_id.to_owned(),
                    node_id: (*node_id).to_owned(),
                    generation: FIRST_GENERATION,
                    gossip_listen: gossip_addrs[index],
                    gossip_advertise: gossip_addrs[index],
                    seeds,
                    gossip_interval: GOSSIP_INTERVAL,
                    phi_threshold: 8.0,
                    http_addr: format!("127.0.0.1:{}", 8081 + index),
                    actor_addr: format!("127.0.0.1:{}", 7101 + index),
                };
                members.push(
                    Membership::start(config.clone())
                        .await
                        .expect("start a member"),
                );
                configs.push(config);
            }
            TestCluster { configs, members }
        }

        fn views(&self) -> Vec<Arc<MembershipView>> {
            self.members.iter().map(Membership::view).collect()
        }

        async fn wait_for_all_to_list(&self, node_ids: &[&str], timeout: Duration) {
            let all_list_them = wait_until(
                || {
                    self.members
                        .iter()
                        .all(|member| node_ids_of(&member.view()) == node_ids)
                },
                timeout,
            )
            .await;
            assert!(all_list_them, "views: {:#?}", self.views());
        }

        async fn shutdown(self) {
            for member in self.members {
                member.shutdown().await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_seeded_members_converge_with_their_addresses() {
        let cluster = TestCluster::start("converge", &NODE_IDS).await;

        cluster
            .wait_for_all_to_list(&NODE_IDS, Duration::from_secs(3))
            .await;
        for view in cluster.views() {
            for config in &cluster.configs {
                let member = view.get(&config.node_id).expect("listed member");
                assert_eq!(member.http_addr, config.http_addr);
                assert_eq!(member.actor_addr, config.actor_addr);
                assert_eq!(member.generation, config.generation);
                assert_eq!(member.status, MemberStatus::Joining);
            }
            assert_eq!(view.ready().count(), 0);
        }
        cluster.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_and_load_reach_the_other_members() {
        let cluster = TestCluster::start("status", &NODE_IDS).await;
        cluster
            .wait_for_all_to_list(&NODE_IDS, Duration::from_secs(3))
            .await;
        let mut node_b_views = cluster.members[1].subscribe();
        node_b_views.mark_unchanged();
        // Heartbeats keep flowing, but a stable cluster publishes nothing new.
        let quiet = tokio::time::timeout(Duration::from_secs(1), node_b_views.changed()).await;
        assert!(quiet.is_err(), "view changed: {:#?}", node_b_views.borrow());

        let started = Instant::now();
        cluster.members[0].set_status(MemberStatus::Ready).await;
        cluster.members[0].set_load(7).await;
        let own_view = cluster.members[0].view();
        assert_eq!(node_ids_of_ready(&own_view), ["node-a"]);

        let is_published = |view: &MembershipView| {
            view.get("node-a")
                .is_some_and(|member| member.status == MemberStatus::Ready && member.load == 7)
        };
        // The returned borrow is dropped at once: it would block the sender.
        let seen_by_b = tokio::time::timeout(
            Duration::from_secs(2),
            node_b_views.wait_for(|view| is_published(view)),
        )
        .await
        .is_ok_and(|result| result.is_ok());
        assert!(seen_by_b, "node-b never saw it");
        let seen_by_c = wait_until(
            || is_published(&cluster.members[2].view()),
            Duration::from_secs(2),
        )
        .await;
        assert!(seen_by_c, "views: {:#?}", cluster.views());
        println!("status seen by every member after {:?}", started.elapsed());
        assert_eq!(node_ids_of_ready(&cluster.members[2].view()), ["node-a"]);
        cluster.shutdown().await;
    }

    fn node_ids_of_ready(view: &MembershipView) -> Vec<&str> {
        view.ready().map(|member| member.node_id.as_str()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_member_leaves_the_other_views() {
        let mut cluster = TestCluster::start("leave", &NODE_IDS).await;
        cluster
            .wait_for_all_to_list(&NODE_IDS, Duration::from_secs(3))
            .await;

        let node_c = cluster.members.pop().expect("three members");
        let stopped = Instant::now();
        node_c.shutdown().await;
        cluster
            .wait_for_all_to_list(&["node-a", "node-b"], Duration::from_secs(5))
            .await;
        println!(
            "stopped member left every view after {:?}",
            stopped.elapsed()
        );
        cluster.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_member_replaces_its_old_generation() {
        let mut cluster = TestCluster::start("restart", &["node-a", "node-b"]).await;
        cluster
            .wait_for_all_to_list(&["node-a", "node-b"], Duration::from_secs(3))
            .await;

        let old_node_b = cluster.members.pop().expect("two members");
        old_node_b.shutdown().await;
        let restarted_config = MembershipConfig {
            generation: FIRST_GENERATION + 1_000,
            ..cluster.configs[1].clone()
        };
        let new_node_b = Membership::start(restarted_config)
            .await
            .expect("restart node-b on the same address");
        cluster.members.push(new_node_b);

        let replaced = wait_until(
            || {
                cluster.members.iter().all(|member| {
                    let view = member.view();
                    node_ids_of(&view) == ["node-a", "node-b"]
                        && view.get("node-b").map(|member| member.generation)
                            == Some(FIRST_GENERATION + 1_000)
                })
            },
            Duration::from_secs(5),
        )
        .await;
        assert!(replaced, "views: {:#?}", cluster.views());
        cluster.shutdown().await;
    }

    fn valid_state() -> NodeState {
        let mut node_state = NodeState::for_test();
        node_state.set(HTTP_ADDR_KEY, "127.0.0.1:8081");
        node_state.set(ACTOR_ADDR_KEY, "node-1.internal:7101");
        node_state.set(STATUS_KEY, "ready");
        node_state.set(LOAD_KEY, "12");
        node_state
    }

    fn chitchat_id(node_id: &str, generation: u64) -> ChitchatId {
        ChitchatId::new(
            node_id,
            generation,
            SocketAddr::from(([127, 0, 0, 1], 7946)),
        )
    }

    #[test]
    fn the_accessor_reads_a_complete_state() {
        let member = MemberInfo::from_state(&chitchat_id("node-1", 5), &valid_state());
        assert_eq!(
            member,
            Some(MemberInfo {
                node_id: "node-1".to_owned(),
                generation: 5,
                http_addr: "127.0.0.1:8081".to_owned(),
                actor_addr: "node-1.internal:7101".to_owned(),
                status: MemberStatus::Ready,
                load: 12,
            })
        );
    }

    #[test]
    fn the_accessor_ignores_malformed_or_missing_values() {
        let chitchat_id = chitchat_id("node-1", 5);
        let malformed_values = [
            (STATUS_KEY, "READY"),
            (STATUS_KEY, "ready "),
            (STATUS_KEY, "gone"),
            (LOAD_KEY, "-1"),
            (LOAD_KEY, "a lot"),
            (HTTP_ADDR_KEY, "127.0.0.1"),
            (HTTP_ADDR_KEY, "127.0.0.1:0"),
            (ACTOR_ADDR_KEY, ":7101"),
            (ACTOR_ADDR_KEY, "host:99999"),
        ];
        for (key, value) in malformed_values {
            let mut node_state = valid_state();
            node_state.set(key, value);
            assert_eq!(
                MemberInfo::parse_state(&chitchat_id, &node_state),
                Err(StateProblem::malformed(key, value)),
            );
            assert_eq!(MemberInfo::from_state(&chitchat_id, &node_state), None);
        }
        for key in [HTTP_ADDR_KEY, ACTOR_ADDR_KEY, STATUS_KEY, LOAD_KEY] {
            let mut node_state = valid_state();
            node_state.delete(key);
            assert_eq!(
                MemberInfo::parse_state(&chitchat_id, &node_state),
                Err(StateProblem::MissingKey(key)),
            );
        }
        let empty_state = NodeState::for_test();
        assert_eq!(MemberInfo::from_state(&chitchat_id, &empty_state), None);
    }

    #[test]
    fn the_view_keeps_the_newest_generation_and_skips_malformed_members() {
        let old_generation = chitchat_id("node-1", 100);
        let new_generation = chitchat_id("node-1", 200);
        let other = chitchat_id("node-0", 100);
        let half_propagated = chitchat_id("node-2", 100);
        let mut new_state = valid_state();
        new_state.set(STATUS_KEY, "joining");
        let mut half_propagated_state = NodeState::for_test();
        half_propagated_state.set(HTTP_ADDR_KEY, "127.0.0.1:8083");
        let old_state = valid_state();
        let other_state = valid_state();

        let view = MembershipView::from_live_nodes([
            (&new_generation, &new_state),
            (&half_propagated, &half_propagated_state),
            (&old_generation, &old_state),
            (&other, &other_state),
        ]);
        assert_eq!(node_ids_of(&view), ["node-0", "node-1"]);
        let node_1 = view.get("node-1").expect("node-1 listed");
        assert_eq!(node_1.generation, 200);
        assert_eq!(node_1.status, MemberStatus::Joining);
        assert_eq!(node_ids_of_ready(&view), ["node-0"]);
    }

    #[test]
    fn status_names_round_trip_through_serde_and_parse() {
        for status in [
            MemberStatus::Joining,
            MemberStatus::Ready,
            MemberStatus::Draining,
        ] {
            let json = serde_json::to_string(&status).expect("serialize a status");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(MemberStatus::parse(status.as_str()), Some(status));
        }
    }
}
