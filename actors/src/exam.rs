//! Exam operations that change durable state outside a live room: plan
//! commands and check-in at login. Each decision goes through the domain and
//! each write carries the fence of its shard and the revision of the row it
//! was decided on, so two writers racing on one row cannot lose an update:
//! the loser gets `Conflict`, re-reads and decides again.
//!
//! A plan command is read → decide → conditional write (optimistic
//! concurrency on the plan's revision). Rooms and candidates are then
//! *reconciled* with the plan's state: what the state implies (the start
//! begins everyone checked in, the end submits and marks absent) is applied
//! to every row not there yet. Reconciling is idempotent, so repeating a
//! command that was applied but whose fan-out failed completes the fan-out.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{info, warn};

use crate::domain::{
    CandidateCommand, CandidateRuntime, DomainError, ExamContext, ExamRules, PlanCommand,
    PlanEvent, PlanId, PlanRuntime, PlanState, RoomCommand, RoomRuntime, SubmitReason,
};
use crate::error::ExamError;
use crate::journal_writer::JournalWriter;
use crate::ports::{
    CandidateLogin, Clock, EntryOutcome, FencedEntry, FencedError, JournalEntry, PlanStore,
    StoreError, VersionedPlanRuntime,
};
use crate::shard::leases::LeaseKeeper;
use crate::shard::{Fence, ShardId};

/// How often a decision is re-read and re-taken after losing a race.
const MAX_ATTEMPTS: usize = 5;
/// Reconcile writes go to the journal in groups of this many entries.
const CHUNK: usize = 500;

pub struct ExamService {
    plans: Arc<dyn PlanStore>,
    journal: JournalWriter,
    leases: Arc<LeaseKeeper>,
    clock: Arc<dyn Clock>,
}

/// What the plan's state asks of its rooms and candidates.
fn implied_commands(plan: &PlanRuntime) -> (Option<RoomCommand>, Option<CandidateCommand>) {
    match plan.state {
        PlanState::InProgress | PlanState::Paused => {
            (Some(RoomCommand::Start), Some(CandidateCommand::Begin))
        }
        PlanState::Ended | PlanState::Finalized => (
            Some(RoomCommand::End),
            Some(CandidateCommand::AutoSubmit {
                reason: SubmitReason::PlanEnded,
            }),
        ),
        PlanState::Scheduled | PlanState::Open => (None, None),
    }
}

impl ExamService {
    pub fn new(
        plans: Arc<dyn PlanStore>,
        journal: JournalWriter,
        leases: Arc<LeaseKeeper>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            plans,
            journal,
            leases,
            clock,
        }
    }

    fn fence(&self, shard: ShardId) -> Result<Fence, ExamError> {
        self.leases.fence(shard).ok_or(ExamError::NotOwner(shard))
    }

    /// Runs an admin command on a plan; returns the plan's runtime after it
    /// and its duration.
    pub async fn plan_command(
        &self,
        plan_id: &PlanId,
        command: &PlanCommand,
    ) -> Result<VersionedPlanRuntime, ExamError> {
        let fence = self.fence(ShardId::of_plan(plan_id))?;
        for _ in 0..MAX_ATTEMPTS {
            let mut current = self
                .plans
                .plan_runtime(plan_id)
                .await?
                .ok_or(ExamError::NotFound("plan"))?;
            let events = match current.runtime.handle(command, self.clock.now()) {
                Ok(events) => events,
                Err(refusal) => {
                    // The plan is already where the command leads: finish a
                    // fan-out an earlier attempt may have left half done.
                    if matches!(
                        (command, &refusal),
                        (PlanCommand::Start, DomainError::PlanAlreadyStarted)
                            | (PlanCommand::End, DomainError::PlanEnded)
                    ) {
                        self.reconcile(plan_id, &current.runtime).await?;
                    }
                    return Err(refusal.into());
                }
            };
            if events.is_empty() {
                return Ok(current);
            }
            match self
                .plans
                .save_plan_runtime(fence, plan_id, current.revision, &current.runtime, &events)
                .await
            {
                Ok(revision) => {
                    info!(plan_id = %plan_id, events = ?events.iter().map(PlanEvent::name).collect::<Vec<_>>(), "plan command applied");
                    current.revision = revision;
                    if events.iter().any(|event| {
                        event.room_command().is_some() || event.candidate_command().is_some()
                    }) {
                        self.reconcile(plan_id, &current.runtime).await?;
                    }
                    return Ok(current);
                }
                Err(FencedError::Store(StoreError::Conflict(_))) => continue,
                Err(FencedError::StaleFence(fence)) => {
                    return Err(ExamError::NotOwner(fence.shard));
                }
                Err(FencedError::Store(error)) => return Err(error.into()),
            }
        }
        Err(ExamError::Contended)
    }

    /// Brings every room and candidate of the plan to what the plan's state
    /// implies. Rows that changed under us are re-read and decided again.
    pub async fn reconcile(&self, plan_id: &PlanId, plan: &PlanRuntime) -> Result<(), ExamError> {
        let (room_command, candidate_command) = implied_commands(plan);
        if room_command.is_none() && candidate_command.is_none() {
            return Ok(());
        }
        for attempt in 1..=MAX_ATTEMPTS {
            let now = self.clock.now();
            let mut entries = Vec::new();
            let mut rooms = HashMap::new();
            for row in self.plans.room_runtimes(plan_id).await? {
                let fence = self.fence(ShardId::of_room(plan_id, &row.room_id))?;
                let mut runtime = row.runtime;
                if let Some(command) = &room_command {
                    let events = runtime.decide(command, now)?;
                    for (revision, event) in (row.revision..).zip(events) {
                        runtime.apply(&event);
                        entries.push(FencedEntry {
                            fence,
                            entry: JournalEntry::Room {
                                plan_id: plan_id.clone(),
                                room_id: row.room_id.clone(),
                                revision,
                                event,
                                runtime: runtime.clone(),
                            },
                        });
                    }
                }
                rooms.insert(row.room_id, runtime);
            }
            let rules = ExamRules::without_questions(0, 0);
            let idle_room = RoomRuntime::default();
            for row in self.plans.candidate_runtimes(plan_id).await? {
                let Some(command) = &candidate_command else {
                    break;
                };
                let fence = self.fence(ShardId::of_room(plan_id, &row.room_id))?;
                let room = rooms.get(&row.room_id).unwrap_or(&idle_room);
                let context = ExamContext {
                    rules: &rules,
                    plan,
                    room,
                    extra_time_s: row.extra_time_s,
                };
                let mut runtime = row.runtime;
                let events = runtime.decide(command, &context, now)?;
                for (revision, event) in (row.revision..).zip(events) {
                    runtime.apply(&event);
                    entries.push(FencedEntry {
                        fence,
                        entry: JournalEntry::Candidate {
                            plan_id: plan_id.clone(),
                            candidate_id: row.candidate_id.clone(),
                            revision,
                            event,
                            runtime: runtime.clone(),
                        },
                    });
                }
            }
            if entries.is_empty() {
                return Ok(());
            }
            // Submitting every chunk before awaiting lets the writer share transactions.
            let writes = entries
                .chunks(CHUNK)
                .map(|chunk| self.journal.write_together(chunk.to_vec()));
            let mut conflicts = 0;
            for (chunk, outcomes) in entries
                .chunks(CHUNK)
                .zip(futures::future::join_all(writes).await)
            {
                for (entry, outcome) in chunk.iter().zip(outcomes?) {
                    match outcome {
                        EntryOutcome::StaleFence => {
                            return Err(ExamError::NotOwner(entry.fence.shard));
                        }
                        EntryOutcome::Conflict => conflicts += 1,
                        EntryOutcome::Written | EntryOutcome::AlreadyStored => {}
                    }
                }
            }
            if conflicts == 0 {
                return Ok(());
            }
            warn!(plan_id = %plan_id, conflicts, attempt, "rows changed during reconcile; deciding again");
        }
        Err(ExamError::Contended)
    }

    /// Checks a candidate in at login (and begins their exam when the plan is
    /// already running); returns their runtime afterwards. A repeated login
    /// writes nothing.
    pub async fn check_in(&self, login: &CandidateLogin) -> Result<CandidateRuntime, ExamError> {
        let fence = self.fence(ShardId::of_room(&login.plan_id, &login.room_id))?;
        let rules = ExamRules::without_questions(login.duration_s, login.late_entry_s);
        let room = RoomRuntime::default();
        let mut plan = login.plan_runtime.clone();
        let mut runtime = login.runtime.clone();
        let mut revision = login.revision;
        for _ in 0..MAX_ATTEMPTS {
            let context = ExamContext {
                rules: &rules,
                plan: &plan,
                room: &room,
                extra_time_s: login.extra_time_s,
            };
            let before = runtime.clone();
            let events = runtime.handle(&CandidateCommand::CheckIn, &context, self.clock.now())?;
            if events.is_empty() {
                return Ok(runtime);
            }
            let outcomes = self
                .journal
                .write_together(candidate_entries(login, fence, before, revision, events))
                .await?;
            if outcomes.contains(&EntryOutcome::StaleFence) {
                return Err(ExamError::NotOwner(fence.shard));
            }
            if !outcomes.contains(&EntryOutcome::Conflict) {
                return Ok(runtime);
            }
            // Someone else (a plan start or end, another login) moved the
            // candidate first: decide again on what is stored now.
            let record = self
                .plans
                .candidate_record(&login.plan_id, &login.candidate_id)
                .await?
                .ok_or(ExamError::NotFound("candidate"))?;
            plan = record.plan_runtime;
            runtime = record.runtime;
            revision = record.revision;
        }
        Err(ExamError::Contended)
    }
}

/// The journal entries of `events` applied in order to `runtime`, starting at
/// row revision `revision`.
fn candidate_entries(
    login: &CandidateLogin,
    fence: Fence,
    mut runtime: CandidateRuntime,
    mut revision: i64,
    events: Vec<crate::domain::CandidateEvent>,
) -> Vec<FencedEntry> {
    events
        .into_iter()
        .map(|event| {
            runtime.apply(&event);
            let entry = FencedEntry {
                fence,
                entry: JournalEntry::Candidate {
                    plan_id: login.plan_id.clone(),
                    candidate_id: login.candidate_id.clone(),
                    revision,
                    event,
                    runtime: runtime.clone(),
                },
            };
            revision += 1;
            entry
        })
        .collect()
}
