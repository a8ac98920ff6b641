//! Time and the plan: the tick (connections, time-up, late entry, progress,
//! the lease) and plan changes, with reconciliation of the room and its
//! candidates to what the plan's state implies.

use ractor::ActorRef;
use tracing::{debug, info};

use super::messages::{DoneReported, PlanChanged, Reply, RoomMsg};
use super::state::{AfterCommit, DoneReport, RoomState, Waiting};
use crate::domain::{CandidateCommand, CandidateEvent, DomainError, PlanEvent, SubmitReason};
use crate::error::ExamError;
use crate::live::plan::report_room_done;
use crate::live::wire::{self, close};
use crate::ports::FencedEntry;

const WRITE_FAILED: &str = "the journal is unavailable";
const LEASE_LOST: &str = "the shard lease is lost";

/// The `state` frame event for candidate events written by the room itself.
fn event_name(event: &CandidateEvent) -> &'static str {
    match event {
        CandidateEvent::Began { .. } => "started",
        CandidateEvent::Submitted {
            reason: SubmitReason::TimeUp,
            ..
        } => "time_up",
        CandidateEvent::Submitted {
            reason: SubmitReason::PlanEnded,
            ..
        } => "ended",
        CandidateEvent::Submitted { .. } => "submitted",
        CandidateEvent::MarkedAbsent { .. } => "absent",
        CandidateEvent::CheckedIn { .. } => "checked_in",
        _ => "changed",
    }
}

impl RoomState {
    /// Applies what the plan's state implies to the room and every
    /// candidate not there yet (idempotent); `done` is answered once that is
    /// durable.
    pub(super) async fn reconcile(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        done: Option<Reply<()>>,
    ) -> Result<(), String> {
        let (room_command, candidate_command) = crate::domain::implied_commands(&self.plan);
        let candidates = candidate_command.map(|command| (0..self.seats.len(), command));
        match self
            .apply_to_candidates(myself, room_command, candidates, done)
            .await
        {
            None => Ok(()),
            Some(reason) => Err(reason.to_string()),
        }
    }

    /// Decides `room_command` for the room and `candidates` for the seats
    /// given, and writes what changed in one batch; `done` is answered once
    /// it is durable (at once when nothing changes).
    async fn apply_to_candidates(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        room_command: Option<crate::domain::RoomCommand>,
        candidates: Option<(impl IntoIterator<Item = usize>, CandidateCommand)>,
        done: Option<Reply<()>>,
    ) -> Option<&'static str> {
        let now = self.now();
        let room_events = match &room_command {
            Some(command) => self.room.decide(command, now).unwrap_or_default(),
            None => Vec::new(),
        };
        let mut decided: Vec<(usize, Vec<CandidateEvent>)> = Vec::new();
        if let Some((seats, command)) = candidates {
            for seat in seats {
                let context = self.context(seat);
                if let Ok(events) = self.seats[seat].runtime.decide(&command, &context, now)
                    && !events.is_empty()
                {
                    decided.push((seat, events));
                }
            }
        }
        if room_events.is_empty() && decided.is_empty() {
            if let Some(done) = done {
                let _ = done.send(Ok(()));
            }
            return None;
        }
        let Ok(fence) = self.fence() else {
            if let Some(done) = done {
                let _ = done.send(Err(crate::error::ExamError::NotOwner(self.shard)));
            }
            return Some(LEASE_LOST);
        };
        let room_changed = !room_events.is_empty();
        let mut entries: Vec<FencedEntry> = room_events
            .into_iter()
            .map(|event| self.room_entry(fence, event))
            .collect();
        let mut after = AfterCommit::new(done.map_or(Waiting::Nobody, Waiting::Done));
        for (seat, events) in decided {
            let name = events.last().map_or("changed", event_name);
            entries.extend(
                events
                    .into_iter()
                    .map(|event| self.candidate_entry(fence, seat, event)),
            );
            after.frames.push((seat, self.state_frame(seat, name)));
            after.seats.push(seat);
        }
        if room_changed {
            after.proctor_frames.push(self.room_state_frame());
        }
        match self.write(myself, entries, after).await {
            Ok(()) => None,
            Err(_) => Some(WRITE_FAILED),
        }
    }

    pub(super) async fn on_plan_changed(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        changed: PlanChanged,
    ) -> Option<&'static str> {
        self.plan = changed.runtime;
        self.done_report = DoneReport::Unreported;
        // Pauses and extensions change every clock without a write here.
        let clock_event = changed.events.iter().rev().find_map(|event| match event {
            PlanEvent::Paused { .. } => Some("paused"),
            PlanEvent::Resumed { .. } => Some("resumed"),
            PlanEvent::Extended { .. } => Some("extended"),
            _ => None,
        });
        if let Some(event) = clock_event {
            let frames: Vec<_> = (0..self.seats.len())
                .filter(|&seat| self.seats[seat].runtime.state.is_sitting())
                .map(|seat| (seat, self.state_frame(seat, event)))
                .collect();
            self.push(frames);
            for seat in 0..self.seats.len() {
                self.seat_changed(seat);
            }
        }
        let frame = self.room_state_frame();
        self.broadcast_to_proctors(frame);
        match self.reconcile(myself, changed.done).await {
            Ok(()) => None,
            Err(_) => Some(WRITE_FAILED),
        }
    }

    pub(super) async fn on_tick(&mut self, myself: &ActorRef<RoomMsg>) -> Option<&'static str> {
        if !self.holds_lease() {
            return Some(LEASE_LOST);
        }
        let now = self.now();
        self.report_counts();

        // Connections: hysteresis, and sockets silent for too long are dead.
        for seat in 0..self.seats.len() {
            let mut changed = false;
            if self.seats[seat].connection.is_dead(now, self.hysteresis) {
                if let Some(socket) = self.seats[seat].socket.take() {
                    socket.let_go(close::DEAD);
                }
                // Silent for the whole offline threshold already: offline now.
                changed = self.seats[seat].connection.dead().is_some();
            }
            let evaluated = self.seats[seat].connection.evaluate(now, self.hysteresis);
            if changed || evaluated.is_some() {
                self.seat_changed(seat);
            }
        }

        // The server's clock: time up, late entry closed.
        if self.plan.state.is_running() {
            let time_up: Vec<usize> = (0..self.seats.len())
                .filter(|&seat| {
                    let candidate = &self.seats[seat];
                    candidate.runtime.state.is_sitting()
                        && candidate
                            .runtime
                            .clock(&self.context(seat))
                            .remaining_millis(now)
                            == 0
                })
                .collect();
            if !time_up.is_empty() {
                info!(room_id = %self.room_id, candidates = time_up.len(), "time is up; submitting");
                let command = CandidateCommand::AutoSubmit {
                    reason: SubmitReason::TimeUp,
                };
                if let Some(reason) = self
                    .apply_to_candidates(myself, None, Some((time_up, command)), None)
                    .await
                {
                    return Some(reason);
                }
            }
            let late_entry_closed = matches!(
                self.plan
                    .admits_check_in(self.shared.rules.late_entry_s, now),
                Err(DomainError::LateEntryClosed)
            );
            if late_entry_closed {
                let absent: Vec<usize> = (0..self.seats.len())
                    .filter(|&seat| {
                        self.seats[seat].runtime.state == crate::domain::CandidateState::Registered
                    })
                    .collect();
                if !absent.is_empty()
                    && let Some(reason) = self
                        .apply_to_candidates(
                            myself,
                            None,
                            Some((absent, CandidateCommand::MarkAbsent)),
                            None,
                        )
                        .await
                {
                    return Some(reason);
                }
            }
        }

        // Answer progress for the dashboards, at most once per tick.
        if !self.progress_dirty.is_empty() {
            let mut changed: Vec<(String, usize)> = self
                .progress_dirty
                .drain()
                .map(|seat| {
                    (
                        self.seats[seat].spec.id.to_string(),
                        self.seats[seat].runtime.sheet.answered_count(),
                    )
                })
                .collect();
            changed.sort();
            let total = self
                .seats
                .iter()
                .map(|seat| seat.runtime.sheet.answered_count())
                .sum();
            let frame = wire::proctor::progress(self.room_id.as_str(), &changed, total);
            self.broadcast_to_proctors(frame);
        }

        // Everyone done: the coordinator may end the plan. Reported off the
        // mailbox, again on a later tick until the coordinator confirms.
        if self.plan.state.is_running()
            && self.done_report == DoneReport::Unreported
            && self.pending.is_empty()
            && self.seats.iter().all(|seat| seat.runtime.state.is_final())
        {
            self.next_ticket += 1;
            let attempt = self.next_ticket;
            self.done_report = DoneReport::InFlight { attempt };
            let (scope, deps, myself) = (self.scope.clone(), self.deps.clone(), myself.clone());
            let (plan_id, room_id) = (self.plan_id.clone(), self.room_id.clone());
            tokio::spawn(async move {
                let timeout = deps.config.call_timeout;
                let mut result = report_room_done(&scope, &plan_id, &room_id, timeout).await;
                if let (Err(ExamError::NotOwner(_)), Some(remote)) = (&result, &deps.remote) {
                    // The coordinator lives on the owner of the plan's shard.
                    result = remote.room_done(&plan_id, &room_id).await;
                }
                if let Err(error) = &result {
                    debug!(plan_id = %plan_id, room_id = %room_id, %error, "room done not confirmed yet; reported again");
                }
                let _ = myself.cast(RoomMsg::DoneReported(DoneReported {
                    attempt,
                    confirmed: result.is_ok(),
                }));
            });
        }
        None
    }
}

impl RoomState {
    /// The coordinator answered (or not) report number `attempt`.
    pub(super) fn on_done_reported(&mut self, reported: DoneReported) {
        if self.done_report
            == (DoneReport::InFlight {
                attempt: reported.attempt,
            })
        {
            self.done_report = if reported.confirmed {
                DoneReport::Confirmed
            } else {
                DoneReport::Unreported
            };
        }
    }
}
