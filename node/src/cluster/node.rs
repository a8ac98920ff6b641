//! One node's part of the cluster: it turns the membership view into a
//! placement, hosts the shards placement gives it (under fenced leases),
//! hands off the ones it no longer owns, stops hosting without a majority,
//! and carries requests, plan changes and sockets to other nodes.
//!
//! # The control loop (every [`TICK`] and on every membership change)
//! 1. Placement: rendezvous hashing over the `ready` members.
//! 2. Majority: live non-draining members versus the last stable membership
//!    (the set that stayed unchanged for [`STABLE_AFTER`]). Without a
//!    strict majority the node stops hosting at once: it drops its leases
//!    (they run out; the majority takes them) and its rooms retire.
//! 3. Hand-off: shards held but no longer placed here are retired (their
//!    sockets told to reconnect, their writes in flight finished), then
//!    their leases released so the new owner takes them at once.
//! 4. Take-over: missing shards are taken as soon as their lease is free or
//!    expired, and the active rooms in them are activated eagerly, restored
//!    from the store and the resume buffers in Redis.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use invigil_actors::domain::{PlanEvent, PlanId, PlanRuntime, RoomId};
use invigil_actors::error::ExamError;
use invigil_actors::live::RemoteLive;
use invigil_actors::live::directory::Directory;
use invigil_actors::ports::LeaseStore;
use invigil_actors::shard::leases::LeaseKeeper;
use invigil_actors::shard::placement::Placement;
use invigil_actors::shard::{SELF_FENCED_WRITES, STALE_EPOCH_WRITES, ShardId};
use invigil_api::AppState;
use invigil_api::cluster::{
    ClusterPort, ClusterView, DrainView, ForwardedRequest, ForwardedResponse, MemberView, Route,
    ShardView, Tunnel, TunnelFrame, TunnelOpen,
};
use invigil_api::error::ApiError;
use invigil_api::ws::tunnel;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::membership::{MemberStatus, Membership, MembershipView};
use super::transport::{RegionHandler, Transport};

/// How often the control loop runs without a membership change.
const TICK: Duration = Duration::from_millis(250);
/// A membership unchanged this long becomes the one majorities count against.
const STABLE_AFTER: Duration = Duration::from_secs(3);
/// How long a hand-off waits for a shard's rooms to finish their writes.
const HANDOFF_WAIT: Duration = Duration::from_secs(3);
/// A draining node announces it this long before handing shards off, so
/// every member has moved the shards in its placement by then and sockets
/// told to reconnect go straight to the new owners.
const DRAIN_ANNOUNCE: Duration = Duration::from_secs(1);
/// Frames queued per tunnel before it is closed as too slow.
const TUNNEL_QUEUE: usize = 1024;

/// What travels between nodes (JSON in the transport's payload).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "snake_case")]
enum Wire {
    /// call → [`ForwardedResponse`]
    Http(ForwardedRequest),
    /// call → `Result<(), String>`
    PlanChanged {
        plan_id: PlanId,
        room_id: RoomId,
        runtime: PlanRuntime,
        events: Vec<PlanEvent>,
    },
    RoomDone {
        plan_id: PlanId,
        room_id: RoomId,
    },
    PlanReplaced {
        plan_id: PlanId,
    },
    /// call → `Option<PresenceCounts>`
    Presence {
        plan_id: PlanId,
        room_id: RoomId,
    },
    /// call → `Result<(), String>`: gateway → owner
    TunnelOpen {
        tunnel: u64,
        open: TunnelOpen,
    },
    /// gateway → owner
    TunnelUp {
        tunnel: u64,
        frame: TunnelFrame,
    },
    /// owner → gateway
    TunnelDown {
        tunnel: u64,
        frame: TunnelFrame,
    },
}

fn encode(wire: &Wire) -> Vec<u8> {
    serde_json::to_vec(wire).unwrap_or_else(|error| {
        // Only a type that cannot be JSON (a bug) gets here.
        tracing::error!(%error, "a cluster message could not be encoded");
        Vec::new()
    })
}

/// The majority rule's memory.
#[derive(Debug)]
struct Stability {
    /// The live set being watched, and since when it is unchanged.
    watching: BTreeSet<String>,
    since: Instant,
    /// The last stable membership (empty: none yet).
    stable: BTreeSet<String>,
    /// Members seen draining: they leave on purpose and do not count
    /// against a majority (a node that comes back live leaves this set).
    departed: BTreeSet<String>,
}

impl Stability {
    fn new(now: Instant) -> Self {
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
    fn observe(&mut self, view: &MembershipView, draining: bool, now: Instant) -> bool {
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

/// The tunnels through this node, both sides.
#[derive(Default)]
struct Tunnels {
    /// Gateway side: tunnel id → (owner node, frames from the owner).
    gateway: HashMap<u64, (String, mpsc::Sender<TunnelFrame>)>,
    /// Owner side: (gateway node, tunnel id) → frames from the client.
    owner: HashMap<(String, u64), mpsc::Sender<TunnelFrame>>,
}

pub struct ClusterNode {
    node_id: String,
    membership: Membership,
    transport: Transport,
    leases: Arc<LeaseKeeper>,
    lease_store: Arc<dyn LeaseStore>,
    directory: Arc<Directory>,
    placement: RwLock<Arc<Placement>>,
    hosting: AtomicBool,
    draining: AtomicBool,
    /// When the drain was announced.
    drain_started: Mutex<Option<Instant>>,
    status: Mutex<MemberStatus>,
    stability: Mutex<Stability>,
    /// The app, for forwarded requests and tunnelled sockets; taken away
    /// at shutdown (it refers back to this node).
    app: Mutex<Option<(AppState, Arc<poem::endpoint::BoxEndpoint<'static>>)>>,
    tunnels: Mutex<Tunnels>,
    next_tunnel: AtomicU64,
    /// The shards held at the last step (new ones get their rooms activated).
    known_held: Mutex<HashSet<ShardId>>,
    /// Wakes the control loop (drain, a finished hand-off).
    wake: Notify,
    /// Turns true when a drain has handed every shard off.
    drained: watch::Sender<bool>,
}

impl ClusterNode {
    pub fn new(
        node_id: String,
        membership: Membership,
        transport: Transport,
        leases: Arc<LeaseKeeper>,
        lease_store: Arc<dyn LeaseStore>,
        directory: Arc<Directory>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            membership,
            transport,
            leases,
            lease_store,
            directory,
            placement: RwLock::new(Arc::new(Placement::over(Vec::<String>::new()))),
            hosting: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            drain_started: Mutex::new(None),
            status: Mutex::new(MemberStatus::Joining),
            stability: Mutex::new(Stability::new(Instant::now())),
            app: Mutex::new(None),
            tunnels: Mutex::new(Tunnels::default()),
            next_tunnel: AtomicU64::new(1),
            known_held: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            drained: watch::channel(false).0,
        })
    }

    /// Gives the node the app it serves forwarded requests and sockets with.
    pub fn attach(&self, state: AppState, endpoint: poem::endpoint::BoxEndpoint<'static>) {
        *self
            .app
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((state, Arc::new(endpoint)));
    }

    fn app(&self) -> Option<(AppState, Arc<poem::endpoint::BoxEndpoint<'static>>)> {
        self.app
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    fn placement(&self) -> Arc<Placement> {
        self.placement
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn status(&self) -> MemberStatus {
        *self
            .status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn set_status(&self, status: MemberStatus) {
        *self
            .status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = status;
        self.membership.set_status(status).await;
    }

    /// Whether this node is ready and holds every shard placed on it.
    pub fn settled(&self) -> bool {
        self.status() == MemberStatus::Ready
            && self.hosting.load(Ordering::Relaxed)
            && self.leases.holds_desired()
    }

    /// Completes once a drain handed every shard off.
    pub async fn wait_drained(&self) {
        let mut drained = self.drained.subscribe();
        let _ = drained.wait_for(|done| *done).await;
    }

    /// Runs the control loop until `stopped`.
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut views = self.membership.subscribe();
        let started = Instant::now();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = views.changed() => {}
                () = self.wake.notified() => {}
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        break;
                    }
                }
            }
            let view = self.membership.view();
            // Joining → ready once we see another member (or there is none
            // to wait for): joining with an empty view would take every shard.
            if self.status() == MemberStatus::Joining
                && !self.draining.load(Ordering::Relaxed)
                && (view.members.len() > 1 || started.elapsed() >= Duration::from_secs(2))
            {
                self.set_status(MemberStatus::Ready).await;
                info!(node_id = %self.node_id, members = view.members.len(), "cluster member ready");
            }
            self.step(&view).await;
        }
    }

    /// One pass of the control loop (module doc).
    async fn step(&self, view: &MembershipView) {
        let peers: Vec<(String, String)> = view
            .members
            .iter()
            .filter(|member| member.node_id != self.node_id)
            .map(|member| (member.node_id.clone(), member.actor_addr.clone()))
            .collect();
        self.transport.set_peers(&peers).await;
        self.close_tunnels_of_departed(view);

        // Placement over the ready members (this node only once it says so).
        let ready: Vec<String> = view.ready().map(|member| member.node_id.clone()).collect();
        let placement = Arc::new(Placement::over(ready));
        *self
            .placement
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = placement.clone();

        let majority = self.has_majority(view);
        let was_hosting = self.hosting.swap(majority, Ordering::Relaxed);
        if !majority {
            if was_hosting {
                warn!(node_id = %self.node_id, live = view.members.len(), "lost the majority of the last stable membership: hosting nothing");
                self.leases.set_desired(Vec::new());
                self.leases.abandon_all();
                self.directory
                    .retire_all("this node lost contact with the cluster");
            }
            return;
        }

        let draining = self.draining.load(Ordering::Relaxed);
        if draining
            && self
                .drain_started
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .is_some_and(|started| started.elapsed() < DRAIN_ANNOUNCE)
        {
            // Still announcing: keep serving until the others have heard.
            return;
        }
        let desired: Vec<ShardId> = if draining || self.status() != MemberStatus::Ready {
            Vec::new()
        } else {
            placement.shards_of(&self.node_id)
        };
        let desired_set: HashSet<ShardId> = desired.iter().copied().collect();
        self.leases.set_desired(desired.clone());
        // Shards held but placed elsewhere: nothing new may use them from
        // now on; once their actors have stopped (writes in flight
        // committed), their leases go back.
        let handoff: HashSet<ShardId> = self
            .leases
            .held_shards()
            .into_iter()
            .filter(|shard| !desired_set.contains(shard))
            .collect();
        self.leases.set_releasing(&handoff);
        if !handoff.is_empty() {
            let busy = self
                .directory
                .retire_shards(&handoff, "the room moves to another node", HANDOFF_WAIT)
                .await;
            let shards: Vec<ShardId> = handoff.difference(&busy).copied().collect();
            info!(node_id = %self.node_id, shards = shards.len(), still_busy = busy.len(), "handing shards off");
            if let Err(error) = self.leases.release(&shards).await {
                warn!(%error, "releasing handed-off leases failed; they expire on their own");
            }
        }
        if draining && self.leases.held_count() == 0 {
            let _ = self.drained.send(true);
        }
        if !self.leases.holds_desired()
            && let Err(error) = self.leases.acquire_missing().await
        {
            warn!(%error, "taking shards failed");
        }
        // Rooms of shards taken over (here or by the renewal loop) keep
        // their timers: activate them now.
        let held: HashSet<ShardId> = self
            .leases
            .fences()
            .into_iter()
            .map(|fence| fence.shard)
            .collect();
        let taken = {
            let mut known = self
                .known_held
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let taken = held.difference(&known).count();
            *known = held;
            taken
        };
        if taken > 0 {
            match self.directory.activate_active_plans().await {
                Ok(live) => {
                    info!(node_id = %self.node_id, shards = taken, actors = live, "shards taken over; active rooms activated")
                }
                Err(error) => {
                    warn!(%error, "activating the rooms of taken shards failed; retried");
                    self.known_held
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .clear();
                }
            }
        }
        let sockets = u64::try_from(self.tunnels_count()).unwrap_or(u64::MAX);
        self.membership.set_load(sockets).await;
    }

    /// Live, non-draining members are a strict majority of the last stable
    /// membership (module doc). Nodes that said they drain do not count:
    /// they leave on purpose.
    fn has_majority(&self, view: &MembershipView) -> bool {
        self.stability
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .observe(view, self.draining.load(Ordering::Relaxed), Instant::now())
    }

    fn tunnels_count(&self) -> usize {
        let tunnels = self
            .tunnels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tunnels.gateway.len() + tunnels.owner.len()
    }

    /// Tunnels to or from a node that left are over: both ends learn it.
    fn close_tunnels_of_departed(&self, view: &MembershipView) {
        let mut tunnels = self
            .tunnels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let live = |node: &str| node == self.node_id || view.get(node).is_some();
        tunnels.gateway.retain(|_, (node, _)| live(node));
        tunnels.owner.retain(|(node, _), _| live(node));
    }

    /// Starts draining: shards are handed off by the control loop.
    pub async fn start_drain(&self) {
        if !self.draining.swap(true, Ordering::Relaxed) {
            *self
                .drain_started
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
            info!(node_id = %self.node_id, held = self.leases.held_count(), "draining");
            self.set_status(MemberStatus::Draining).await;
        }
        self.wake.notify_one();
    }

    /// Stops the transport and lets go of the app and every tunnel, so the
    /// last handles of the journal writer can drop.
    pub async fn shutdown(&self) {
        self.transport.shutdown().await;
        self.app
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        *self
            .tunnels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Tunnels::default();
    }

    async fn handle_call(&self, from: String, wire: Wire) -> Vec<u8> {
        match wire {
            Wire::Http(request) => {
                let response = match self.app() {
                    Some((_, endpoint)) => {
                        invigil_api::cluster::serve_forwarded(
                            endpoint.as_ref().as_ref(),
                            &self.node_id,
                            request,
                        )
                        .await
                    }
                    None => ForwardedResponse {
                        status: 503,
                        headers: Vec::new(),
                        body: b"starting".to_vec(),
                    },
                };
                serde_json::to_vec(&response).unwrap_or_default()
            }
            Wire::PlanChanged {
                plan_id,
                room_id,
                runtime,
                events,
            } => {
                let result = self
                    .directory
                    .deliver_plan_change_here(&plan_id, &room_id, &runtime, &events)
                    .await
                    .map_err(|error| error.to_string());
                serde_json::to_vec(&result).unwrap_or_default()
            }
            Wire::TunnelOpen { tunnel, open } => {
                let result = self.open_owner_side(from, tunnel, open);
                serde_json::to_vec(&result).unwrap_or_default()
            }
            Wire::Presence { plan_id, room_id } => {
                // Only a room live here answers: never asked onwards.
                let counts = match self.directory.live_room(&plan_id, &room_id) {
                    Some(_) => match self.app() {
                        Some((state, _)) => state.exam.presence(&plan_id, &room_id).await,
                        None => None,
                    },
                    None => None,
                };
                serde_json::to_vec(&counts).unwrap_or_default()
            }
            other => {
                self.handle_cast(from, other);
                Vec::new()
            }
        }
    }

    fn handle_cast(&self, from: String, wire: Wire) {
        match wire {
            Wire::RoomDone { plan_id, room_id } => {
                self.directory.room_done_here(&plan_id, &room_id)
            }
            Wire::PlanReplaced { plan_id } => self.directory.forget_plan(&plan_id),
            Wire::TunnelUp { tunnel, frame } => {
                let mut tunnels = self
                    .tunnels
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let key = (from, tunnel);
                let closing = matches!(frame, TunnelFrame::Close { .. });
                if let Some(sender) = tunnels.owner.get(&key)
                    && (sender.try_send(frame).is_err() || closing)
                {
                    tunnels.owner.remove(&key);
                }
            }
            Wire::TunnelDown { tunnel, frame } => {
                let mut tunnels = self
                    .tunnels
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let closing = matches!(frame, TunnelFrame::Close { .. });
                if let Some((_, sender)) = tunnels.gateway.get(&tunnel)
                    && (sender.try_send(frame).is_err() || closing)
                {
                    tunnels.gateway.remove(&tunnel);
                }
            }
            Wire::Http(_)
            | Wire::PlanChanged { .. }
            | Wire::TunnelOpen { .. }
            | Wire::Presence { .. } => {
                warn!(from = %from, "a call arrived as a cast; dropped");
            }
        }
    }

    /// Owner side of a tunnel: runs the socket here, its output cast back.
    fn open_owner_side(&self, from: String, tunnel: u64, open: TunnelOpen) -> Result<(), String> {
        let Some((state, _)) = self.app() else {
            return Err("the node is starting".into());
        };
        let (incoming_tx, incoming_rx) = mpsc::channel(TUNNEL_QUEUE);
        let (outgoing_tx, outgoing_rx) = mpsc::channel::<TunnelFrame>(TUNNEL_QUEUE);
        {
            let mut tunnels = self
                .tunnels
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let key = (from.clone(), tunnel);
            if tunnels.owner.contains_key(&key) {
                // A retried open (calls are at-least-once): already running.
                return Ok(());
            }
            tunnels.owner.insert(key, incoming_tx);
        }
        tokio::spawn(tunnel::serve(state, open, incoming_rx, outgoing_tx));
        let close = TunnelFrame::Close {
            code: invigil_actors::live::wire::close::RECONNECT,
            reason: "reconnect".into(),
        };
        tokio::spawn(pump(
            self.transport.clone(),
            from,
            outgoing_rx,
            move |frame| Wire::TunnelDown { tunnel, frame },
            close,
        ));
        Ok(())
    }
}

/// Casts one side's tunnel frames to `peer`, in order, until a close frame
/// or the channel ends; an end without a close sends `close`, so the other
/// side always learns the tunnel is over (unless `peer` is unreachable).
async fn pump(
    transport: Transport,
    peer: String,
    mut frames: mpsc::Receiver<TunnelFrame>,
    wrap: impl Fn(TunnelFrame) -> Wire,
    close: TunnelFrame,
) {
    while let Some(frame) = frames.recv().await {
        let closing = matches!(frame, TunnelFrame::Close { .. });
        if transport.cast(&peer, encode(&wrap(frame))).await.is_err() || closing {
            return;
        }
    }
    let _ = transport.cast(&peer, encode(&wrap(close))).await;
}

/// The transport's inbound side; knows its node once it is built.
#[derive(Default)]
pub struct Region(pub Arc<std::sync::OnceLock<std::sync::Weak<ClusterNode>>>);

#[async_trait]
impl RegionHandler for Region {
    async fn call(&self, from: String, payload: Vec<u8>) -> Vec<u8> {
        let Some(node) = self.0.get().and_then(std::sync::Weak::upgrade) else {
            return Vec::new();
        };
        match serde_json::from_slice::<Wire>(&payload) {
            Ok(wire) => node.handle_call(from, wire).await,
            Err(error) => {
                warn!(from = %from, %error, "malformed cluster message");
                Vec::new()
            }
        }
    }

    async fn cast(&self, from: String, payload: Vec<u8>) {
        let Some(node) = self.0.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        match serde_json::from_slice::<Wire>(&payload) {
            Ok(wire) => node.handle_cast(from, wire),
            Err(error) => warn!(from = %from, %error, "malformed cluster message"),
        }
    }
}

#[async_trait]
impl ClusterPort for ClusterNode {
    fn route(&self, shard: ShardId) -> Route {
        if self.leases.fence(shard).is_some() {
            return Route::Here;
        }
        if !self.hosting.load(Ordering::Relaxed) {
            return Route::Nowhere;
        }
        match self.placement().owner(shard) {
            Some(owner) if owner == self.node_id => Route::Here,
            Some(owner) => Route::Node(owner.to_string()),
            None => Route::Nowhere,
        }
    }

    async fn view(&self) -> Result<ClusterView, ApiError> {
        let leases = self.lease_store.leases().await.map_err(ApiError::from)?;
        let now = chrono::Utc::now().timestamp_millis();
        let placement = self.placement();
        let view = self.membership.view();
        let stable = self
            .stability
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .stable
            .len();
        let shards = leases
            .iter()
            .map(|lease| ShardView {
                shard: lease.shard.get(),
                owner: placement.owner(lease.shard).map(str::to_string),
                epoch: lease.epoch,
                held_by: (lease.expires_at.as_millis() > now && !lease.owner.is_empty()).then(
                    || {
                        lease
                            .owner
                            .split('@')
                            .next()
                            .unwrap_or_default()
                            .to_string()
                    },
                ),
            })
            .collect();
        Ok(ClusterView {
            node_id: self.node_id.clone(),
            status: self.status().as_str().to_string(),
            hosting: self.hosting.load(Ordering::Relaxed),
            stable_members: u32::try_from(stable).unwrap_or(u32::MAX),
            shards_held: u32::try_from(self.leases.held_count()).unwrap_or(u32::MAX),
            stale_epoch_writes: STALE_EPOCH_WRITES.load(Ordering::Relaxed),
            self_fenced_writes: SELF_FENCED_WRITES.load(Ordering::Relaxed),
            members: view
                .members
                .iter()
                .map(|member| MemberView {
                    node_id: member.node_id.clone(),
                    http_addr: member.http_addr.clone(),
                    actor_addr: member.actor_addr.clone(),
                    status: member.status.as_str().to_string(),
                    generation: member.generation,
                    load: member.load,
                })
                .collect(),
            shards,
        })
    }

    async fn drain(&self) -> DrainView {
        self.start_drain().await;
        DrainView {
            node_id: self.node_id.clone(),
            status: self.status().as_str().to_string(),
            shards_held: u32::try_from(self.leases.held_count()).unwrap_or(u32::MAX),
        }
    }

    async fn forward(
        &self,
        node: &str,
        request: ForwardedRequest,
    ) -> Result<ForwardedResponse, String> {
        let reply = self
            .transport
            .call(node, encode(&Wire::Http(request)))
            .await
            .map_err(|error| error.to_string())?;
        serde_json::from_slice(&reply).map_err(|error| error.to_string())
    }

    async fn open_tunnel(&self, node: &str, open: TunnelOpen) -> Result<Tunnel, String> {
        let tunnel = self.next_tunnel.fetch_add(1, Ordering::Relaxed);
        let (down_tx, down_rx) = mpsc::channel(TUNNEL_QUEUE);
        self.tunnels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .gateway
            .insert(tunnel, (node.to_string(), down_tx));
        let reply = self
            .transport
            .call(node, encode(&Wire::TunnelOpen { tunnel, open }))
            .await;
        let opened = match reply {
            Ok(bytes) => serde_json::from_slice::<Result<(), String>>(&bytes)
                .map_err(|error| error.to_string())
                .and_then(|result| result),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = opened {
            self.tunnels
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .gateway
                .remove(&tunnel);
            return Err(error);
        }
        let (up_tx, up_rx) = mpsc::channel::<TunnelFrame>(TUNNEL_QUEUE);
        let close = TunnelFrame::Close {
            code: 1000,
            reason: String::new(),
        };
        tokio::spawn(pump(
            self.transport.clone(),
            node.to_string(),
            up_rx,
            move |frame| Wire::TunnelUp { tunnel, frame },
            close,
        ));
        Ok(Tunnel {
            to_owner: up_tx,
            from_owner: down_rx,
        })
    }
}

/// Reaches rooms and coordinators on other nodes through the transport.
pub struct RemoteRooms(pub std::sync::Weak<ClusterNode>);

impl RemoteRooms {
    fn owner_of(&self, shard: ShardId) -> Option<(Arc<ClusterNode>, String)> {
        let node = self.0.upgrade()?;
        let owner = node.placement().owner(shard)?.to_string();
        (owner != node.node_id).then_some((node, owner))
    }
}

#[async_trait]
impl RemoteLive for RemoteRooms {
    async fn plan_changed(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<(), ExamError> {
        let shard = ShardId::of_room(plan_id, room_id);
        let Some((node, owner)) = self.owner_of(shard) else {
            return Err(ExamError::NotOwner(shard));
        };
        let wire = Wire::PlanChanged {
            plan_id: plan_id.clone(),
            room_id: room_id.clone(),
            runtime: runtime.clone(),
            events: events.to_vec(),
        };
        let reply = node
            .transport
            .call(&owner, encode(&wire))
            .await
            .map_err(|_| ExamError::Unavailable("the room's node did not answer"))?;
        match serde_json::from_slice::<Result<(), String>>(&reply) {
            Ok(Ok(())) => Ok(()),
            _ => Err(ExamError::Unavailable(
                "the room did not confirm the plan change",
            )),
        }
    }

    fn room_done(&self, plan_id: &PlanId, room_id: &RoomId) {
        let Some((node, owner)) = self.owner_of(ShardId::of_plan(plan_id)) else {
            return;
        };
        let wire = Wire::RoomDone {
            plan_id: plan_id.clone(),
            room_id: room_id.clone(),
        };
        tokio::spawn(async move {
            let _ = node.transport.cast(&owner, encode(&wire)).await;
        });
    }

    async fn presence(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
    ) -> Option<invigil_actors::live::wire::PresenceCounts> {
        let (node, owner) = self.owner_of(ShardId::of_room(plan_id, room_id))?;
        let wire = Wire::Presence {
            plan_id: plan_id.clone(),
            room_id: room_id.clone(),
        };
        let reply = node.transport.call(&owner, encode(&wire)).await.ok()?;
        serde_json::from_slice(&reply).ok().flatten()
    }

    fn plan_replaced(&self, plan_id: &PlanId) {
        let Some(node) = self.0.upgrade() else {
            return;
        };
        let others: Vec<String> = node
            .membership
            .view()
            .members
            .iter()
            .filter(|member| member.node_id != node.node_id)
            .map(|member| member.node_id.clone())
            .collect();
        let wire = encode(&Wire::PlanReplaced {
            plan_id: plan_id.clone(),
        });
        tokio::spawn(async move {
            for other in others {
                let _ = node.transport.cast(&other, wire.clone()).await;
            }
        });
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

    /// Every message survives JSON both ways (an internally tagged enum
    /// cannot carry a bare string, which once emptied every text frame).
    #[test]
    fn every_message_round_trips() {
        let frames = [
            TunnelFrame::Text("{\"t\":\"hello\"}".into()),
            TunnelFrame::Binary,
            TunnelFrame::Close {
                code: 4000,
                reason: "reconnect".into(),
            },
        ];
        for frame in frames {
            for wire in [
                Wire::TunnelUp {
                    tunnel: 7,
                    frame: frame.clone(),
                },
                Wire::TunnelDown {
                    tunnel: 7,
                    frame: frame.clone(),
                },
            ] {
                let bytes = serde_json::to_vec(&wire).expect("encodes");
                let back: Wire = serde_json::from_slice(&bytes).expect("decodes");
                match back {
                    Wire::TunnelUp { frame: got, .. } | Wire::TunnelDown { frame: got, .. } => {
                        assert_eq!(got, frame);
                    }
                    other => panic!("decoded as {other:?}"),
                }
            }
        }
        let open = Wire::TunnelOpen {
            tunnel: 1,
            open: TunnelOpen {
                kind: invigil_api::cluster::SocketKind::Candidate,
                token: "t".into(),
                ip: None,
                room: None,
            },
        };
        assert!(serde_json::from_slice::<Wire>(&serde_json::to_vec(&open).unwrap()).is_ok());
        let http = Wire::Http(ForwardedRequest {
            method: "GET".into(),
            uri: "/x".into(),
            headers: vec![("a".into(), "b".into())],
            body: b"{}".to_vec(),
        });
        assert!(serde_json::from_slice::<Wire>(&serde_json::to_vec(&http).unwrap()).is_ok());
    }
}
