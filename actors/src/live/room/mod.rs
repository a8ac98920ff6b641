//! The room actor: one per active room, holding the room and every
//! candidate in it as state (not one actor per candidate — see
//! docs/architecture.md). It is the only writer of its room and candidates
//! while it holds the shard's lease.
//!
//! # Layout
//! - `messages`: what it is asked
//! - `state`: seats, subscribers, writes awaiting commit, views; retiring
//! - `outbound`: stream frames, connection frames, dashboard deltas
//! - `commit`: writes, and their effects once durable
//! - `resume`: the resume buffers, written off the mailbox
//! - `connect`: candidate sockets: connect, resume, heartbeats
//! - `answer`: answers, repeats and superseded cseqs
//! - `candidate`: events, submit, check-in, incidents
//! - `proctor`: commands, incidents, dashboards
//! - `clock`: ticks, plan changes, reconciliation
//! - `report`: what goes to the workers (live events, logs) and the incidents they raise

mod answer;
mod candidate;
mod clock;
mod commit;
mod connect;
pub mod messages;
mod outbound;
mod proctor;
mod report;
mod resume;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;
use tracing::{debug, warn};

pub use self::messages::*;
use self::resume::ResumeLog;
use self::state::{PlanShared, RoomState, Seat};
use crate::domain::{Connection, Hysteresis, PlanId, PlanRuntime, Presence, RoomId};
use crate::error::ExamError;
use crate::live::LiveDeps;
use crate::ports::{CandidateKey, ResumePosition};
use crate::shard::ShardId;

/// The registry name of a room's actor within a directory's `scope` (the
/// registry is per process; the scope keeps two nodes in one process —
/// tests — apart).
pub fn room_actor_name(scope: &str, plan_id: &PlanId, room_id: &RoomId) -> String {
    format!("{scope}/room/{plan_id}/{room_id}")
}

/// The process group of a plan's rooms (to reach them all).
pub fn plan_rooms_group(scope: &str, plan_id: &PlanId) -> String {
    format!("{scope}/plan-rooms/{plan_id}")
}

pub struct RoomActor;

pub struct RoomArgs {
    pub deps: Arc<LiveDeps>,
    /// The directory's scope of actor names.
    pub scope: Arc<str>,
    pub plan_id: PlanId,
    pub room_id: RoomId,
    pub shared: Arc<PlanShared>,
    pub plan: PlanRuntime,
}

impl Actor for RoomActor {
    type Msg = RoomMsg;
    type State = RoomState;
    type Arguments = RoomArgs;

    /// Restores the room from the store (and the resume positions from the
    /// hot state). Refuses to start without the shard's lease.
    async fn pre_start(
        &self,
        myself: ActorRef<RoomMsg>,
        args: RoomArgs,
    ) -> Result<RoomState, ActorProcessingErr> {
        let shard = ShardId::of_room(&args.plan_id, &args.room_id);
        if args.deps.leases.fence(shard).is_none() {
            return Err(format!("shard {shard} is not held here").into());
        }
        let snapshot = args
            .deps
            .plans
            .load_room(&args.plan_id, &args.room_id)
            .await?
            .ok_or_else(|| {
                format!(
                    "room {} of plan {} does not exist",
                    args.room_id, args.plan_id
                )
            })?;
        // Where each candidate's stream stands (the hot state outlives this
        // actor and, with Redis, this node), in one round trip for the room.
        let keys: Vec<CandidateKey> = snapshot
            .candidates
            .iter()
            .map(|stored| CandidateKey {
                plan_id: args.plan_id.clone(),
                candidate_id: stored.spec.id.clone(),
            })
            .collect();
        let positions = match args.deps.hot.resume_positions(&keys).await {
            Ok(positions) if positions.len() == keys.len() => positions,
            Ok(_) | Err(_) => {
                // Numbering restarts; a resume gets a snapshot.
                warn!(plan_id = %args.plan_id, room_id = %args.room_id, "resume positions unreadable; streams restart");
                vec![ResumePosition::default(); keys.len()]
            }
        };
        let mut seats = Vec::with_capacity(snapshot.candidates.len());
        let mut index = HashMap::with_capacity(snapshot.candidates.len());
        for ((stored, key), position) in snapshot.candidates.into_iter().zip(keys).zip(positions) {
            index.insert(stored.spec.id.clone(), seats.len());
            seats.push(Seat {
                spec: stored.spec,
                key,
                runtime: stored.runtime,
                revision: stored.revision,
                connection: Connection::default(),
                reported_presence: Presence::Offline,
                session: position.session.map(|claim| claim.session_id),
                last_seq: position.last_seq,
                socket: None,
                resuming: None,
                uncommitted: HashMap::new(),
                events: (args.deps.clock.now(), 0),
            });
        }
        ractor::pg::join(
            plan_rooms_group(&args.scope, &args.plan_id),
            vec![myself.get_cell()],
        );
        debug!(plan_id = %args.plan_id, room_id = %args.room_id, seats = seats.len(), "room activated");
        let gauge = args.deps.metrics.room_gauge();
        let room = myself.clone();
        let resume = ResumeLog::start(
            args.deps.hot.clone(),
            args.deps.config.resume_buffer,
            move |read| {
                // Dropped when the room stopped meanwhile.
                let _ = room.cast(RoomMsg::ResumeRead(read));
            },
        );
        Ok(RoomState {
            hysteresis: Hysteresis::from_heartbeat(args.shared.settings.heartbeat_s),
            deps: args.deps,
            scope: args.scope,
            plan_id: args.plan_id,
            room_id: args.room_id,
            shard,
            shared: args.shared,
            plan: args.plan,
            room: snapshot.runtime,
            room_revision: snapshot.revision,
            spec: snapshot.spec,
            seats,
            index,
            incidents: snapshot.open_incidents,
            subscribers: Vec::new(),
            pending: HashMap::new(),
            next_ticket: 0,
            progress_dirty: HashSet::new(),
            done_report: state::DoneReport::Unreported,
            retiring: None,
            lookups: 0,
            resume,
            gauge,
        })
    }

    /// Starts the clock tick and brings the room in line with its plan (a
    /// start or end that happened while the room was not live).
    async fn post_start(
        &self,
        myself: ActorRef<RoomMsg>,
        state: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        myself.send_interval(state.deps.config.tick, || RoomMsg::Tick);
        state.reconcile(&myself, None).await?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RoomMsg>,
        message: RoomMsg,
        state: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(reason) = state.retiring {
            // Retiring: only the outcomes of writes in flight are handled.
            match message {
                RoomMsg::Committed(committed) => {
                    state.committed(committed);
                }
                other => {
                    if other.is_write() && !state.holds_lease() {
                        // A node that woke up past its lease: counted like
                        // a write the store refused for its epoch.
                        crate::shard::count_self_fenced_write();
                    }
                    other.refuse(ExamError::Unavailable("the room is moving; retry"));
                }
            }
            state.stop_when_settled(&myself, reason).await;
            return Ok(());
        }
        let retire = match message {
            RoomMsg::Connect(connect) => state.on_connect(&myself, connect).await,
            RoomMsg::ResumeRead(read) => {
                state.on_resume_read(read);
                None
            }
            RoomMsg::Disconnect(disconnect) => {
                state.on_disconnect(disconnect);
                None
            }
            RoomMsg::Heartbeat(heartbeat) => {
                state.on_heartbeat(heartbeat);
                None
            }
            RoomMsg::Answer(answer) => {
                let span = answer.span.clone();
                state.on_answer(&myself, answer).instrument(span).await
            }
            RoomMsg::ClientEvent(event) => state.on_client_event(&myself, event).await,
            RoomMsg::Submit(submit) => state.on_submit(&myself, submit).await,
            RoomMsg::CheckIn(check_in) => state.on_check_in(&myself, check_in).await,
            RoomMsg::CandidateCommand(command) => {
                state.on_candidate_command(&myself, command).await
            }
            RoomMsg::RoomCommand(command) => state.on_room_command(&myself, command).await,
            RoomMsg::ReportIncident(report) => state.on_report_incident(&myself, report).await,
            RoomMsg::ResolveIncident(resolve) => state.on_resolve_incident(&myself, resolve).await,
            RoomMsg::RaiseIncident(raise) => state.on_raise_incident(&myself, raise).await,
            RoomMsg::Subscribe(subscribe) => {
                state.on_subscribe(subscribe);
                None
            }
            RoomMsg::Unsubscribe(unsubscribe) => {
                state
                    .subscribers
                    .retain(|subscriber| subscriber.id != unsubscribe.subscriber_id);
                None
            }
            RoomMsg::ViewCandidate(view) => {
                let result = state
                    .seat_index(&view.candidate_id)
                    .map(|seat| state.candidate_view(seat));
                let _ = view.reply.send(result);
                None
            }
            RoomMsg::ViewRoom(view) => {
                let _ = view.reply.send(Ok(state.room_view()));
                None
            }
            RoomMsg::Presence(query) => {
                let _ = query.reply.send(Ok(state.presence()));
                None
            }
            RoomMsg::PlanChanged(changed) => state.on_plan_changed(&myself, changed).await,
            RoomMsg::Tick => state.on_tick(&myself).await,
            RoomMsg::Committed(committed) => state.committed(committed).then_some("a write failed"),
            RoomMsg::Superseded(superseded) => {
                state.on_superseded(superseded);
                None
            }
            RoomMsg::DoneReported(reported) => {
                state.on_done_reported(reported);
                None
            }
            RoomMsg::Retire(retire) => Some(retire.reason),
        };
        if let Some(reason) = retire {
            state.retire(reason);
            state.stop_when_settled(&myself, reason).await;
        }
        Ok(())
    }
}
