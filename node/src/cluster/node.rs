//! One node's part of the cluster as the rest of the node sees it: where a
//! shard is served, the cluster view, drain, and the ways to reach other
//! nodes — a forwarded request, a socket tunnel, a room or coordinator
//! hosted elsewhere ([`ClusterPort`] for the api, [`RemoteLive`] for the
//! live exam). It holds the state the control loop (`control`) keeps up to
//! date and the inbound server (`inbound`) answers from; it knows neither.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use async_trait::async_trait;
use invigil_actors::domain::{PlanEvent, PlanId, PlanRuntime, RoomId};
use invigil_actors::error::ExamError;
use invigil_actors::live::RemoteLive;
use invigil_actors::live::wire::PresenceCounts;
use invigil_actors::ports::LeaseStore;
use invigil_actors::shard::leases::LeaseKeeper;
use invigil_actors::shard::placement::Placement;
use invigil_actors::shard::{SELF_FENCED_WRITES, STALE_EPOCH_WRITES, ShardId};
use invigil_api::cluster::{
    ClusterPort, ClusterView, DrainView, ForwardedRequest, ForwardedResponse, MemberView, Route,
    ShardView, Tunnel, TunnelFrame, TunnelOpen,
};
use invigil_api::error::ApiError;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info};

use super::majority::Stability;
use super::membership::{MemberStatus, Membership};
use super::transport::{Transport, TransportError};
use super::tunnels::{Tunnels, pump};
use super::wire::{Wire, decode_reply, encode};
use invigil_actors::metrics::Metrics;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct ClusterNode {
    pub(super) node_id: String,
    pub(super) membership: Membership,
    pub(super) transport: Transport,
    pub(super) leases: Arc<LeaseKeeper>,
    lease_store: Arc<dyn LeaseStore>,
    /// Rendezvous placement over the ready members, as of the last step.
    placement: RwLock<Arc<Placement>>,
    /// False without a majority of the last stable membership.
    pub(super) hosting: AtomicBool,
    pub(super) draining: AtomicBool,
    /// When the drain was announced. A std mutex, like every one here:
    /// never held across an await.
    pub(super) drain_started: Mutex<Option<Instant>>,
    status: Mutex<MemberStatus>,
    pub(super) stability: Mutex<Stability>,
    pub(super) tunnels: Tunnels,
    /// Wakes the control loop (drain, a finished hand-off).
    pub(super) wake: Notify,
    /// Turns true when a drain has handed every shard off.
    pub(super) drained: watch::Sender<bool>,
    /// Transport calls by outcome, members by status.
    pub(super) metrics: Metrics,
}

impl ClusterNode {
    pub fn new(
        node_id: String,
        membership: Membership,
        transport: Transport,
        leases: Arc<LeaseKeeper>,
        lease_store: Arc<dyn LeaseStore>,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            node_id,
            membership,
            transport,
            leases,
            lease_store,
            placement: RwLock::new(Arc::new(Placement::over(Vec::<String>::new()))),
            hosting: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            drain_started: Mutex::new(None),
            status: Mutex::new(MemberStatus::Joining),
            stability: Mutex::new(Stability::new(Instant::now())),
            tunnels: Tunnels::default(),
            wake: Notify::new(),
            drained: watch::channel(false).0,
        })
    }

    /// A call to another node over the transport, counted by outcome.
    #[tracing::instrument(name = "transport.call", level = "debug", skip(self, payload), fields(bytes = payload.len()))]
    async fn call_peer(&self, node: &str, payload: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let result = self.transport.call(node, payload).await;
        self.metrics.transport_call(match &result {
            Ok(_) => "ok",
            Err(TransportError::Timeout) => "timeout",
            Err(_) => "error",
        });
        result
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub(super) fn placement(&self) -> Arc<Placement> {
        self.placement
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(super) fn set_placement(&self, placement: Arc<Placement>) {
        *self
            .placement
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = placement;
    }

    pub(super) fn status(&self) -> MemberStatus {
        *lock(&self.status)
    }

    pub(super) async fn set_status(&self, status: MemberStatus) {
        *lock(&self.status) = status;
        self.membership.set_status(status).await;
    }

    /// False while this node has no majority of the last stable membership
    /// (cut off: it hosts nothing).
    pub fn hosting(&self) -> bool {
        self.hosting.load(Ordering::Relaxed)
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

    /// Starts draining: shards are handed off by the control loop.
    pub async fn start_drain(&self) {
        if !self.draining.swap(true, Ordering::Relaxed) {
            *lock(&self.drain_started) = Some(Instant::now());
            info!(node_id = %self.node_id, held = self.leases.held_count(), "draining");
            self.set_status(MemberStatus::Draining).await;
        }
        self.wake.notify_one();
    }

    /// Stops the transport (no more inbound messages: the inbound server
    /// ends) and forgets every tunnel.
    pub async fn shutdown(&self) {
        self.transport.shutdown().await;
        self.tunnels.clear();
    }

    /// The owner of `shard` by placement, when it is another node.
    fn other_owner(&self, shard: ShardId) -> Option<String> {
        let owner = self.placement().owner(shard)?.to_string();
        (owner != self.node_id).then_some(owner)
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
        let stable = lock(&self.stability).stable.len();
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

    fn leaving(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn cut_off(&self) -> bool {
        !self.hosting.load(Ordering::Relaxed)
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
            .call_peer(node, encode(&Wire::Http(request)))
            .await
            .map_err(|error| error.to_string())?;
        decode_reply(node, &reply)
    }

    async fn open_tunnel(&self, node: &str, open: TunnelOpen) -> Result<Tunnel, String> {
        let (tunnel, from_owner) = self.tunnels.open_gateway(node);
        let opened = match self
            .call_peer(node, encode(&Wire::TunnelOpen { tunnel, open }))
            .await
        {
            Ok(bytes) => decode_reply::<Result<(), String>>(node, &bytes).and_then(|result| result),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = opened {
            self.tunnels.forget_gateway(tunnel);
            return Err(error);
        }
        let (to_owner, up_rx) = mpsc::channel::<TunnelFrame>(super::tunnels::TUNNEL_QUEUE);
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
            to_owner,
            from_owner,
        })
    }
}

/// Reaches rooms and coordinators hosted on other nodes.
#[async_trait]
impl RemoteLive for ClusterNode {
    async fn plan_changed(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<(), ExamError> {
        let shard = ShardId::of_room(plan_id, room_id);
        let owner = self.other_owner(shard).ok_or(ExamError::NotOwner(shard))?;
        let wire = Wire::PlanChanged {
            plan_id: plan_id.clone(),
            room_id: room_id.clone(),
            runtime: runtime.clone(),
            events: events.to_vec(),
        };
        self.confirmed_call(&owner, &wire, "the room did not confirm the plan change")
            .await
    }

    async fn room_done(&self, plan_id: &PlanId, room_id: &RoomId) -> Result<(), ExamError> {
        let shard = ShardId::of_plan(plan_id);
        let owner = self.other_owner(shard).ok_or(ExamError::NotOwner(shard))?;
        let wire = Wire::RoomDone {
            plan_id: plan_id.clone(),
            room_id: room_id.clone(),
        };
        self.confirmed_call(&owner, &wire, "the plan's coordinator did not confirm")
            .await
    }

    async fn presence(&self, plan_id: &PlanId, room_id: &RoomId) -> Option<PresenceCounts> {
        let owner = self.other_owner(ShardId::of_room(plan_id, room_id))?;
        let wire = Wire::Presence {
            plan_id: plan_id.clone(),
            room_id: room_id.clone(),
        };
        match self.call_peer(&owner, encode(&wire)).await {
            Ok(reply) => decode_reply(&owner, &reply).ok().flatten(),
            Err(error) => {
                debug!(node = %owner, %error, "presence not answered");
                None
            }
        }
    }

    fn plan_replaced(&self, plan_id: &PlanId) {
        let others: Vec<String> = self
            .membership
            .view()
            .members
            .iter()
            .filter(|member| member.node_id != self.node_id)
            .map(|member| member.node_id.clone())
            .collect();
        let wire = encode(&Wire::PlanReplaced {
            plan_id: plan_id.clone(),
        });
        let transport = self.transport.clone();
        tokio::spawn(async move {
            for other in others {
                if let Err(error) = transport.cast(&other, wire.clone()).await {
                    // Its coordinator re-reads the plan when it next activates.
                    debug!(node = %other, %error, "plan replacement not told");
                }
            }
        });
    }
}

impl ClusterNode {
    /// A call answered `Result<(), String>`: `Ok` only when the peer says so.
    async fn confirmed_call(
        &self,
        node: &str,
        wire: &Wire,
        unconfirmed: &'static str,
    ) -> Result<(), ExamError> {
        let reply = self.call_peer(node, encode(wire)).await.map_err(|error| {
            debug!(node = %node, %error, "a call to another node failed");
            ExamError::Unavailable("the node hosting it did not answer")
        })?;
        match decode_reply::<Result<(), String>>(node, &reply) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                debug!(node = %node, %error, "refused by another node");
                Err(ExamError::Unavailable(unconfirmed))
            }
            Err(_) => Err(ExamError::Unavailable(unconfirmed)),
        }
    }
}
