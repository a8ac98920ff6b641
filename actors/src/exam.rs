//! Exam operations that change durable state outside a live room: plan
//! commands and check-in at login. Each decision goes through the domain and
//! each write carries the fence of its shard.
//!
//! A plan command is read → decide → conditional write (optimistic
//! concurrency on the plan's revision), then fanned out to every room and
//! candidate of the plan through the journal writer.

use std::sync::Arc;

use tracing::info;

use crate::domain::{
    CandidateRuntime, ExamContext, ExamRules, PlanCommand, PlanEvent, PlanId, PlanRuntime,
    RoomRuntime,
};
use crate::error::ExamError;
use crate::journal_writer::JournalWriter;
use crate::ports::{
    CandidateLogin, Clock, EntryOutcome, FencedEntry, FencedError, JournalEntry, PlanStore,
    StoreError,
};
use crate::shard::leases::LeaseKeeper;
use crate::shard::{Fence, ShardId};

/// How often a plan command re-reads and re-decides after losing a race.
const MAX_COMMAND_ATTEMPTS: usize = 5;
/// Fan-out writes go to the journal in groups of this many entries.
const FAN_OUT_CHUNK: usize = 500;

pub struct ExamService {
    plans: Arc<dyn PlanStore>,
    journal: JournalWriter,
    leases: Arc<LeaseKeeper>,
    clock: Arc<dyn Clock>,
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

    /// Runs an admin command on a plan; returns the plan's runtime after it.
    pub async fn plan_command(
        &self,
        plan_id: &PlanId,
        command: &PlanCommand,
    ) -> Result<PlanRuntime, ExamError> {
        let fence = self.fence(ShardId::of_plan(plan_id))?;
        for _ in 0..MAX_COMMAND_ATTEMPTS {
            let current = self
                .plans
                .plan_runtime(plan_id)
                .await?
                .ok_or(ExamError::NotFound("plan"))?;
            let mut runtime = current.runtime;
            let events = runtime.handle(command, self.clock.now())?;
            if events.is_empty() {
                return Ok(runtime);
            }
            match self
                .plans
                .save_plan_runtime(fence, plan_id, current.revision, &runtime, &events)
                .await
            {
                Ok(_) => {
                    info!(plan_id = %plan_id, events = ?events.iter().map(PlanEvent::name).collect::<Vec<_>>(), "plan command applied");
                    self.fan_out(plan_id, &runtime, &events).await?;
                    return Ok(runtime);
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

    /// Applies the room and candidate consequences of plan events.
    async fn fan_out(
        &self,
        plan_id: &PlanId,
        plan: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<(), ExamError> {
        let room_commands: Vec<_> = events.iter().filter_map(PlanEvent::room_command).collect();
        let candidate_commands: Vec<_> = events
            .iter()
            .filter_map(PlanEvent::candidate_command)
            .collect();
        if room_commands.is_empty() && candidate_commands.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let mut entries = Vec::new();
        let mut rooms = std::collections::HashMap::new();
        for (room_id, mut runtime) in self.plans.room_runtimes(plan_id).await? {
            let fence = self.fence(ShardId::of_room(plan_id, &room_id))?;
            for command in &room_commands {
                for event in runtime.handle(command, now)? {
                    entries.push(FencedEntry {
                        fence,
                        entry: JournalEntry::Room {
                            plan_id: plan_id.clone(),
                            room_id: room_id.clone(),
                            event,
                            runtime: runtime.clone(),
                        },
                    });
                }
            }
            rooms.insert(room_id, runtime);
        }
        let rules = ExamRules::without_questions(0, 0);
        let idle_room = RoomRuntime::default();
        for row in self.plans.candidate_runtimes(plan_id).await? {
            let fence = self.fence(ShardId::of_room(plan_id, &row.room_id))?;
            let room = rooms.get(&row.room_id).unwrap_or(&idle_room);
            let context = ExamContext {
                rules: &rules,
                plan,
                room,
                extra_time_s: row.extra_time_s,
            };
            let mut runtime = row.runtime;
            for command in &candidate_commands {
                for event in runtime.handle(command, &context, now)? {
                    entries.push(FencedEntry {
                        fence,
                        entry: JournalEntry::Candidate {
                            plan_id: plan_id.clone(),
                            candidate_id: row.candidate_id.clone(),
                            event,
                            runtime: runtime.clone(),
                        },
                    });
                }
            }
        }
        let writes = entries
            .chunks(FAN_OUT_CHUNK)
            .map(|chunk| self.journal.write_together(chunk.to_vec()));
        // Submitting every chunk before awaiting lets the writer share transactions.
        for outcomes in futures::future::join_all(writes).await {
            if let Some(stale) = outcomes?
                .iter()
                .position(|outcome| *outcome == EntryOutcome::StaleFence)
            {
                return Err(ExamError::NotOwner(entries[stale].fence.shard));
            }
        }
        Ok(())
    }

    /// Checks a candidate in at login (and begins their exam when the plan is
    /// already running); returns their runtime afterwards. A repeated login
    /// writes nothing.
    pub async fn check_in(&self, login: &CandidateLogin) -> Result<CandidateRuntime, ExamError> {
        let rules = ExamRules::without_questions(login.duration_s, login.late_entry_s);
        let room = RoomRuntime::default();
        let context = ExamContext {
            rules: &rules,
            plan: &login.plan_runtime,
            room: &room,
            extra_time_s: login.extra_time_s,
        };
        let mut runtime = login.runtime.clone();
        let events = runtime.handle(
            &crate::domain::CandidateCommand::CheckIn,
            &context,
            self.clock.now(),
        )?;
        if events.is_empty() {
            return Ok(runtime);
        }
        let fence = self.fence(ShardId::of_room(&login.plan_id, &login.room_id))?;
        let mut replay = login.runtime.clone();
        let entries = events
            .into_iter()
            .map(|event| {
                replay.apply(&event);
                FencedEntry {
                    fence,
                    entry: JournalEntry::Candidate {
                        plan_id: login.plan_id.clone(),
                        candidate_id: login.candidate_id.clone(),
                        event,
                        runtime: replay.clone(),
                    },
                }
            })
            .collect();
        let outcomes = self.journal.write_together(entries).await?;
        if outcomes.contains(&EntryOutcome::StaleFence) {
            return Err(ExamError::NotOwner(fence.shard));
        }
        Ok(runtime)
    }
}
