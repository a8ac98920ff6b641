//! The plan coordinator: one per active plan, in the plan's shard. It takes
//! admin plan commands (decide → fenced, optimistic save → broadcast to the
//! rooms), keeps every room of a running plan live (timers must run even
//! with nobody connected), and ends the plan when every room is done.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{info, warn};

use super::{LiveDeps, PlanRooms};
use crate::domain::{DomainError, PlanCommand, PlanEvent, PlanId, PlanState, RoomId};
use crate::error::{ExamError, StoreError};
use crate::ports::{FencedError, VersionedPlanRuntime};
use crate::shard::ShardId;
use crate::workers::events::{PlanNotice, new_id, topics};

/// How often the coordinator checks its rooms are live and its lease held.
const KEEPER_PERIOD: Duration = Duration::from_secs(2);
/// How often a command is re-decided after losing a race with another writer.
const MAX_ATTEMPTS: usize = 5;
/// A plan command that was saved but not confirmed by every room yet.
const NOT_CONFIRMED: ExamError = ExamError::Unavailable(
    "the plan changed, but not every room has confirmed it yet; repeat the command",
);

/// The registry name of a plan's coordinator within a directory's scope.
pub fn plan_actor_name(scope: &str, plan_id: &PlanId) -> String {
    format!("{scope}/plan/{plan_id}")
}

pub enum PlanMsg {
    Command(Command),
    RoomDone(RoomDone),
    Keep,
    Retire,
}

impl ractor::Message for PlanMsg {}

pub struct Command {
    pub command: PlanCommand,
    pub reply: ractor::RpcReplyPort<Result<VersionedPlanRuntime, ExamError>>,
}

/// Every candidate of a room is done; answered once the coordinator
/// recorded it (the room reports again until it hears so).
pub struct RoomDone {
    pub room_id: RoomId,
    pub reply: ractor::RpcReplyPort<()>,
}

/// Tells the plan's coordinator live in `scope` that every candidate of the
/// room is done; `Ok` once it recorded it.
pub async fn report_room_done(
    scope: &str,
    plan_id: &PlanId,
    room_id: &RoomId,
    timeout: Duration,
) -> Result<(), ExamError> {
    let Some(cell) = ractor::registry::where_is(plan_actor_name(scope, plan_id)) else {
        return Err(ExamError::NotOwner(ShardId::of_plan(plan_id)));
    };
    let coordinator: ActorRef<PlanMsg> = cell.into();
    let message = |reply| {
        PlanMsg::RoomDone(RoomDone {
            room_id: room_id.clone(),
            reply,
        })
    };
    match coordinator.call(message, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(())) => Ok(()),
        _ => Err(ExamError::Unavailable(
            "the plan's coordinator did not confirm; retry",
        )),
    }
}

pub struct PlanActor;

pub struct PlanArgs {
    pub deps: Arc<LiveDeps>,
    /// The plan's rooms, wherever they live.
    pub rooms: Arc<dyn PlanRooms>,
    pub plan_id: PlanId,
}

pub struct PlanActorState {
    deps: Arc<LiveDeps>,
    live_rooms: Arc<dyn PlanRooms>,
    plan_id: PlanId,
    shard: ShardId,
    plan: VersionedPlanRuntime,
    rooms: Vec<RoomId>,
    done: HashSet<RoomId>,
    /// Every room confirmed the plan's current state (its candidates'
    /// share is durable). Until then the keeper tells them again.
    settled: bool,
    /// This plan's entry in `invigil_plan_state`.
    gauge: crate::metrics::PlanGauge,
}

impl Actor for PlanActor {
    type Msg = PlanMsg;
    type State = PlanActorState;
    type Arguments = PlanArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<PlanMsg>,
        args: PlanArgs,
    ) -> Result<PlanActorState, ActorProcessingErr> {
        let deps = &args.deps;
        let shard = ShardId::of_plan(&args.plan_id);
        if deps.leases.fence(shard).is_none() {
            return Err(format!("shard {shard} is not held here").into());
        }
        let context = deps
            .plans
            .plan_context(&args.plan_id)
            .await?
            .ok_or_else(|| format!("plan {} does not exist", args.plan_id))?;
        let gauge = deps.metrics.plan_gauge();
        gauge.set(context.runtime.state);
        Ok(PlanActorState {
            gauge,
            deps: args.deps,
            live_rooms: args.rooms,
            plan_id: args.plan_id,
            shard,
            plan: VersionedPlanRuntime {
                runtime: context.runtime,
                revision: context.revision,
                duration_s: context.duration_s,
            },
            rooms: context.rooms.into_iter().map(|room| room.id).collect(),
            done: HashSet::new(),
            // A fresh coordinator does not know what its rooms missed.
            settled: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PlanMsg>,
        state: &mut PlanActorState,
    ) -> Result<(), ActorProcessingErr> {
        myself.send_interval(KEEPER_PERIOD, || PlanMsg::Keep);
        state.keep_rooms_live().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PlanMsg>,
        message: PlanMsg,
        state: &mut PlanActorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PlanMsg::Command(command) => {
                let result = state.command(&command.command).await;
                let _ = command.reply.send(result);
            }
            PlanMsg::RoomDone(done) => {
                state.done.insert(done.room_id);
                let _ = done.reply.send(());
                if state.plan.runtime.state.is_running()
                    && state.rooms.iter().all(|room| state.done.contains(room))
                {
                    info!(plan_id = %state.plan_id, "every candidate is done; ending the plan");
                    if let Err(error) = state.command(&PlanCommand::End).await {
                        warn!(plan_id = %state.plan_id, %error, "could not end the plan");
                    }
                }
            }
            PlanMsg::Keep => {
                if state.deps.leases.fence(state.shard).is_none() {
                    myself.stop(Some("the shard lease is lost".into()));
                    return Ok(());
                }
                state.keep_rooms_live().await;
            }
            PlanMsg::Retire => myself.stop(Some("retired".into())),
        }
        Ok(())
    }
}

impl PlanActorState {
    /// Rooms of an open or running plan are live on their owners; rooms
    /// that have not confirmed the plan's state (an end they missed: a room
    /// that was moving, a store error, a crash) are told again until they do.
    async fn keep_rooms_live(&mut self) {
        if !self.settled {
            if self.broadcast(Vec::new()).await {
                info!(plan_id = %self.plan_id, state = self.plan.runtime.state.as_str(), "every room confirmed the plan's state");
            }
            return;
        }
        if !matches!(
            self.plan.runtime.state,
            PlanState::Open | PlanState::InProgress | PlanState::Paused
        ) {
            return;
        }
        // Rooms in shards held elsewhere are kept live by their owners.
        let leases = &self.deps.leases;
        let here: Vec<&RoomId> = self
            .rooms
            .iter()
            .filter(|room_id| {
                leases
                    .fence(ShardId::of_room(&self.plan_id, room_id))
                    .is_some()
            })
            .collect();
        let activations = here
            .iter()
            .map(|room_id| self.live_rooms.keep_live(&self.plan_id, room_id));
        for (room_id, result) in here
            .iter()
            .zip(futures::future::join_all(activations).await)
        {
            if let Err(error) = result {
                warn!(plan_id = %self.plan_id, room_id = %room_id, %error, "room not live");
            }
        }
    }

    /// Tells every room (activating it if needed) that the plan changed,
    /// and waits (bounded) until each has made its consequences durable.
    /// Returns whether every room confirmed.
    async fn broadcast(&mut self, events: Vec<PlanEvent>) -> bool {
        let deliveries = self.rooms.iter().map(|room_id| {
            self.live_rooms
                .deliver_plan_change(&self.plan_id, room_id, &self.plan.runtime, &events)
        });
        let mut confirmed = true;
        for (room_id, result) in self
            .rooms
            .iter()
            .zip(futures::future::join_all(deliveries).await)
        {
            // The keeper tells it again (and a room reconciles with the plan
            // whenever it activates).
            if let Err(error) = result {
                warn!(plan_id = %self.plan_id, room_id = %room_id, %error, "plan change not confirmed by a room");
                confirmed = false;
            }
        }
        self.settled = confirmed;
        confirmed
    }

    /// Tells the admin server (webhook worker) that the plan ended or was
    /// finalized, once that is durable.
    fn notify(&self, deps: &crate::live::LiveDeps, events: &[PlanEvent]) {
        if !deps.webhooks {
            return;
        }
        for event in events {
            let (name, at) = match event {
                PlanEvent::Ended { at } => ("plan.ended", at),
                PlanEvent::Finalized { at } => ("plan.finalized", at),
                _ => continue,
            };
            let notice = PlanNotice {
                id: new_id(),
                event: name.to_string(),
                plan_id: self.plan_id.clone(),
                at: at.as_millis(),
            };
            deps.outbox.publish_json(topics::WEBHOOKS, &notice);
        }
    }

    async fn command(&mut self, command: &PlanCommand) -> Result<VersionedPlanRuntime, ExamError> {
        let deps = self.deps.clone();
        let fence = deps
            .leases
            .fence(self.shard)
            .ok_or(ExamError::NotOwner(self.shard))?;
        for _ in 0..MAX_ATTEMPTS {
            let mut next = self.plan.runtime.clone();
            let events = match next.handle(command, deps.clock.now()) {
                Ok(events) => events,
                Err(refusal) => {
                    // Already where the command leads: make sure the rooms are too.
                    if matches!(
                        (command, &refusal),
                        (PlanCommand::Start, DomainError::PlanAlreadyStarted)
                            | (PlanCommand::End, DomainError::PlanEnded)
                    ) && !self.broadcast(Vec::new()).await
                    {
                        return Err(NOT_CONFIRMED);
                    }
                    return Err(refusal.into());
                }
            };
            if events.is_empty() {
                return Ok(self.plan.clone());
            }
            match deps
                .plans
                .save_plan_runtime(fence, &self.plan_id, self.plan.revision, &next, &events)
                .await
            {
                Ok(revision) => {
                    self.gauge.set(next.state);
                    self.plan = VersionedPlanRuntime {
                        runtime: next,
                        revision,
                        duration_s: self.plan.duration_s,
                    };
                    info!(plan_id = %self.plan_id, events = ?events.iter().map(PlanEvent::name).collect::<Vec<_>>(), "plan command applied");
                    self.notify(&deps, &events);
                    if events
                        .iter()
                        .any(|event| matches!(event, PlanEvent::Started { .. }))
                    {
                        self.done.clear();
                    }
                    // Saved either way; the caller learns whether every room
                    // has made it durable (else: repeat the command, or let
                    // the keeper finish it).
                    if !self.broadcast(events).await {
                        return Err(NOT_CONFIRMED);
                    }
                    return Ok(self.plan.clone());
                }
                Err(FencedError::Store(StoreError::Conflict(_))) => {
                    // Someone wrote the plan outside this coordinator: re-read.
                    if let Some(current) = deps.plans.plan_runtime(&self.plan_id).await? {
                        self.gauge.set(current.runtime.state);
                        self.plan = current;
                    }
                }
                Err(FencedError::StaleFence(fence)) => {
                    crate::shard::count_stale_write();
                    return Err(ExamError::NotOwner(fence.shard));
                }
                Err(FencedError::Store(error)) => return Err(error.into()),
            }
        }
        Err(ExamError::Contended)
    }
}
