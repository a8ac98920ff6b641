//! Finds a room's or a plan's actor, activating it on first use. Actors are
//! registered by name (`room/{plan}/{room}`, `plan/{plan}`): the registry is
//! the one place that decides which of two concurrent activations wins. The
//! cluster puts a shard region in front of this; callers only see
//! [`Directory::room`] and [`Directory::plan`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorRef, SpawnErr};
use tracing::warn;

use super::plan::{PlanActor, PlanArgs, PlanMsg, plan_actor_name, report_room_done};
use super::room::state::PlanShared;
use super::room::{
    PlanChanged, Retire, RoomActor, RoomArgs, RoomMsg, plan_rooms_group, room_actor_name,
};
use super::{LiveDeps, PlanRooms, RemoteLive};
use crate::domain::{ExamRules, PlanEvent, PlanId, PlanRuntime, RoomId};
use crate::error::ExamError;
use crate::shard::ShardId;

pub struct Directory {
    deps: Arc<LiveDeps>,
    /// Prefix of every actor name this directory registers.
    scope: Arc<str>,
    /// Per plan: what its rooms share, and its room ids. A std mutex: never
    /// held across an await.
    plans: Mutex<HashMap<PlanId, PlanEntry>>,
}

/// What a plan's rooms share, and the plan's room ids.
type PlanEntry = (Arc<PlanShared>, Arc<Vec<RoomId>>);

impl Directory {
    pub fn new(deps: Arc<LiveDeps>) -> Arc<Self> {
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scope: Arc<str> = format!("{}#{instance}", deps.node_id).into();
        Arc::new(Self {
            deps,
            scope,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// The actors other nodes host (cluster).
    pub fn remote(&self) -> Option<&Arc<dyn RemoteLive>> {
        self.deps.remote.as_ref()
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn deps(&self) -> &Arc<LiveDeps> {
        &self.deps
    }

    /// What a plan's rooms share, loaded once per plan import.
    async fn plan_shared(&self, plan_id: &PlanId) -> Result<PlanEntry, ExamError> {
        if let Some(cached) = self
            .plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(plan_id)
        {
            return Ok(cached.clone());
        }
        let context = self
            .deps
            .plans
            .plan_context(plan_id)
            .await?
            .ok_or(ExamError::NotFound("plan"))?;
        let rules = ExamRules {
            duration_s: context.duration_s,
            late_entry_s: context.settings.late_entry_s,
            max_text_chars: usize::try_from(context.settings.max_text_chars).unwrap_or(usize::MAX),
            questions: context
                .questions
                .iter()
                .map(|question| (question.id.clone(), question.clone()))
                .collect(),
        };
        let shared = Arc::new(PlanShared {
            rules,
            settings: context.settings,
            title: context.title,
            digest: context.digest,
        });
        let rooms = Arc::new(
            context
                .rooms
                .into_iter()
                .map(|room| room.id)
                .collect::<Vec<_>>(),
        );
        let entry = (shared, rooms);
        self.plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(plan_id.clone(), entry.clone());
        Ok(entry)
    }

    /// The room's actor if it is live here, without activating it.
    pub fn live_room(&self, plan_id: &PlanId, room_id: &RoomId) -> Option<ActorRef<RoomMsg>> {
        ractor::registry::where_is(room_actor_name(&self.scope, plan_id, room_id)).map(Into::into)
    }

    /// The room's actor, activated (restored from the store) if needed.
    pub async fn room(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
    ) -> Result<ActorRef<RoomMsg>, ExamError> {
        if let Some(room) = self.live_room(plan_id, room_id) {
            return Ok(room);
        }
        let shard = ShardId::of_room(plan_id, room_id);
        if self.deps.leases.fence(shard).is_none() {
            return Err(ExamError::NotOwner(shard));
        }
        let (shared, rooms) = self.plan_shared(plan_id).await?;
        if !rooms.contains(room_id) {
            return Err(ExamError::NotFound("room"));
        }
        let plan = self
            .deps
            .plans
            .plan_runtime(plan_id)
            .await?
            .ok_or(ExamError::NotFound("plan"))?;
        let args = RoomArgs {
            deps: self.deps.clone(),
            scope: self.scope.clone(),
            plan_id: plan_id.clone(),
            room_id: room_id.clone(),
            shared,
            plan: plan.runtime,
        };
        match Actor::spawn(
            Some(room_actor_name(&self.scope, plan_id, room_id)),
            RoomActor,
            args,
        )
        .await
        {
            Ok((room, _)) => Ok(room),
            Err(SpawnErr::ActorAlreadyRegistered(_)) => self
                .live_room(plan_id, room_id)
                .ok_or(ExamError::Unavailable("the room is restarting; retry")),
            Err(error) => {
                warn!(plan_id = %plan_id, room_id = %room_id, %error, "room activation failed");
                Err(ExamError::Unavailable(
                    "the room could not be activated; retry",
                ))
            }
        }
    }

    /// The plan's coordinator, activated if needed.
    pub async fn plan(self: &Arc<Self>, plan_id: &PlanId) -> Result<ActorRef<PlanMsg>, ExamError> {
        if let Some(cell) = ractor::registry::where_is(plan_actor_name(&self.scope, plan_id)) {
            return Ok(cell.into());
        }
        let shard = ShardId::of_plan(plan_id);
        if self.deps.leases.fence(shard).is_none() {
            return Err(ExamError::NotOwner(shard));
        }
        if self.deps.plans.plan_runtime(plan_id).await?.is_none() {
            return Err(ExamError::NotFound("plan"));
        }
        let args = PlanArgs {
            deps: self.deps.clone(),
            rooms: self.clone(),
            plan_id: plan_id.clone(),
        };
        match Actor::spawn(Some(plan_actor_name(&self.scope, plan_id)), PlanActor, args).await {
            Ok((plan, _)) => Ok(plan),
            Err(SpawnErr::ActorAlreadyRegistered(_)) => {
                ractor::registry::where_is(plan_actor_name(&self.scope, plan_id))
                    .map(Into::into)
                    .ok_or(ExamError::Unavailable("the plan is restarting; retry"))
            }
            Err(error) => {
                warn!(plan_id = %plan_id, %error, "plan coordinator activation failed");
                Err(ExamError::Unavailable(
                    "the plan could not be activated; retry",
                ))
            }
        }
    }

    /// The plan was replaced: its live actors were built from the old
    /// content, so they stop, and the next use restores them from the new.
    pub fn forget_plan(&self, plan_id: &PlanId) {
        self.plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(plan_id);
        for member in ractor::pg::get_members(&plan_rooms_group(&self.scope, plan_id)) {
            let room: ActorRef<RoomMsg> = member.into();
            let _ = room.cast(RoomMsg::Retire(Retire {
                reason: "the plan was replaced",
            }));
        }
        if let Some(cell) = ractor::registry::where_is(plan_actor_name(&self.scope, plan_id)) {
            let plan: ActorRef<PlanMsg> = cell.into();
            let _ = plan.cast(PlanMsg::Retire);
        }
    }

    /// Tells a room live here that its plan changed (a remote delivery
    /// ends here: it is never forwarded again).
    pub async fn deliver_plan_change_here(
        self: &Arc<Self>,
        plan_id: &PlanId,
        room_id: &RoomId,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<(), ExamError> {
        let room = self.room(plan_id, room_id).await?;
        self.plan_change_here(room, runtime, events).await
    }

    async fn plan_change_here(
        &self,
        room: ActorRef<RoomMsg>,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<(), ExamError> {
        let message = |done| {
            RoomMsg::PlanChanged(PlanChanged {
                runtime: runtime.clone(),
                events: events.to_vec(),
                done: Some(done),
            })
        };
        match room
            .call(message, Some(self.deps.config.call_timeout))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            _ => Err(ExamError::Unavailable(
                "the room did not confirm the plan change",
            )),
        }
    }

    /// A room done on another node, reported to the coordinator live here;
    /// `Ok` once it recorded it.
    pub async fn room_done_here(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
    ) -> Result<(), ExamError> {
        report_room_done(&self.scope, plan_id, room_id, self.deps.config.call_timeout).await
    }

    /// Activates, for every open or running plan, its coordinator if the
    /// plan's shard is held here and each of its rooms whose shard is held
    /// here: rooms are live on their owners (timers keep running with
    /// nobody connected), wherever the coordinator is. Returns how many
    /// actors were activated or already live.
    pub async fn activate_active_plans(self: &Arc<Self>) -> Result<usize, ExamError> {
        let mut live = 0;
        for plan_id in self.deps.plans.active_plans().await? {
            if self.deps.leases.fence(ShardId::of_plan(&plan_id)).is_some() {
                match self.plan(&plan_id).await {
                    Ok(_) => live += 1,
                    Err(error) => warn!(plan_id = %plan_id, %error, "plan not activated"),
                }
            }
            let rooms = match self.plan_shared(&plan_id).await {
                Ok((_, rooms)) => rooms,
                Err(error) => {
                    warn!(plan_id = %plan_id, %error, "plan rooms not loaded");
                    continue;
                }
            };
            let held: Vec<&RoomId> = rooms
                .iter()
                .filter(|room_id| {
                    self.deps
                        .leases
                        .fence(ShardId::of_room(&plan_id, room_id))
                        .is_some()
                })
                .collect();
            let activations = held.iter().map(|room_id| self.room(&plan_id, room_id));
            for (room_id, result) in held
                .iter()
                .zip(futures::future::join_all(activations).await)
            {
                match result {
                    Ok(_) => live += 1,
                    Err(error) => {
                        warn!(plan_id = %plan_id, room_id = %room_id, %error, "room not activated");
                    }
                }
            }
        }
        Ok(live)
    }

    /// Retires the live actors of the given shards (hand-off: their sockets
    /// are told to reconnect, their writes in flight finish) and waits, up
    /// to `wait`, until they have stopped. Returns the shards that still
    /// have a live actor (the caller keeps their leases and asks again).
    pub async fn retire_shards(
        &self,
        shards: &HashSet<ShardId>,
        reason: &'static str,
        wait: Duration,
    ) -> HashSet<ShardId> {
        let plans: Vec<(PlanId, Arc<Vec<RoomId>>)> = self
            .plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(plan_id, (_, rooms))| (plan_id.clone(), rooms.clone()))
            .collect();
        let mut names: Vec<(ShardId, String)> = Vec::new();
        for (plan_id, rooms) in plans {
            for room_id in rooms.iter() {
                let shard = ShardId::of_room(&plan_id, room_id);
                if !shards.contains(&shard) {
                    continue;
                }
                if let Some(room) = self.live_room(&plan_id, room_id) {
                    let _ = room.cast(RoomMsg::Retire(Retire { reason }));
                    names.push((shard, room_actor_name(&self.scope, &plan_id, room_id)));
                }
            }
            let shard = ShardId::of_plan(&plan_id);
            if shards.contains(&shard) {
                let name = plan_actor_name(&self.scope, &plan_id);
                if let Some(cell) = ractor::registry::where_is(name.clone()) {
                    let plan: ActorRef<PlanMsg> = cell.into();
                    let _ = plan.cast(PlanMsg::Retire);
                    names.push((shard, name));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            names.retain(|(_, name)| ractor::registry::where_is(name.clone()).is_some());
            if names.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        names.into_iter().map(|(shard, _)| shard).collect()
    }

    /// Stops every live actor (shutdown): sockets are told to reconnect.
    pub fn retire_all(&self, reason: &'static str) {
        let plans: Vec<PlanId> = self
            .plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .cloned()
            .collect();
        for plan_id in plans {
            for member in ractor::pg::get_members(&plan_rooms_group(&self.scope, &plan_id)) {
                let room: ActorRef<RoomMsg> = member.into();
                let _ = room.cast(RoomMsg::Retire(Retire { reason }));
            }
            if let Some(cell) = ractor::registry::where_is(plan_actor_name(&self.scope, &plan_id)) {
                let plan: ActorRef<PlanMsg> = cell.into();
                let _ = plan.cast(PlanMsg::Retire);
            }
        }
    }
}

#[async_trait::async_trait]
impl PlanRooms for Directory {
    async fn keep_live(&self, plan_id: &PlanId, room_id: &RoomId) -> Result<(), ExamError> {
        self.room(plan_id, room_id).await.map(drop)
    }

    /// Here, or on the owner of the room's shard.
    async fn deliver_plan_change(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<(), ExamError> {
        match self.room(plan_id, room_id).await {
            Ok(room) => self.plan_change_here(room, runtime, events).await,
            Err(ExamError::NotOwner(shard)) => match self.remote() {
                Some(remote) => remote.plan_changed(plan_id, room_id, runtime, events).await,
                None => Err(ExamError::NotOwner(shard)),
            },
            Err(error) => Err(error),
        }
    }
}
