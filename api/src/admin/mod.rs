//! The admin server's interface (X-Api-Key): plan import, reads, commands, status, results.
//!
//! # Layout
//! - `dto`: request and response types
//! - `results`: grading and rendering a plan's results (JSON, CSV)
//! - `mod.rs`: the routes

pub mod dto;
pub mod results;

use invigil_actors::domain::{
    CandidateSpec, CredentialHash, Plaintext, PlanCommand, PlanId, PlanSpec, PlanState, ProctorSpec,
};
use invigil_actors::ports::ImportOutcome;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use tracing::info;

use self::dto::{
    CandidateView, ConnectionCounts, ImportOutcomeView, ImportResult, PlanAction, PlanClockView,
    PlanCommandBody, PlanImport, PlanStatusView, PlanView, ProctorView, QuestionBody, RoomBody,
    SettingsBody,
};
use self::results::{ResultsFormat, ResultsResponse};
use crate::auth::AdminKey;
use crate::body::Body;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;
use crate::time::to_datetime;
use crate::views::{add_counts, plan_clock, room_statuses};

pub struct AdminApi {
    pub state: AppState,
}

#[derive(ApiResponse)]
pub enum ImportResponse {
    /// The plan was created.
    #[oai(status = 201)]
    Created(Json<ImportResult>),
    /// The plan was replaced, or was already exactly this.
    #[oai(status = 200)]
    Done(Json<ImportResult>),
}

/// Parses a plan id from the path.
pub fn path_plan_id(plan_id: &str) -> Result<PlanId, ApiError> {
    PlanId::parse(plan_id).map_err(|error| {
        ApiError::bad_request("invalid_id", error.to_string()).with_field("plan_id")
    })
}

#[OpenApi(prefix_path = "/api/v1")]
impl AdminApi {
    /// Create or replace a whole plan before it starts.
    ///
    /// Idempotent: the same body twice changes nothing (200, `unchanged`).
    /// A different body replaces the plan while it is `scheduled`; after that
    /// the answer is 409 `plan_already_open` or `plan_already_started`.
    #[oai(path = "/admin/plans/:plan_id", method = "put", tag = "ApiTags::Admin")]
    async fn import_plan(
        &self,
        _key: AdminKey,
        plan_id: Path<String>,
        body: Body<PlanImport>,
    ) -> Result<ImportResponse, ApiError> {
        let plan_id = path_plan_id(&plan_id)?;
        let result = import_plan(&self.state, plan_id, body.0).await?;
        Ok(match result.outcome {
            ImportOutcomeView::Created => ImportResponse::Created(Json(result)),
            ImportOutcomeView::Replaced | ImportOutcomeView::Unchanged => {
                ImportResponse::Done(Json(result))
            }
        })
    }

    /// Read a plan as stored, without access codes or password hashes.
    #[oai(path = "/admin/plans/:plan_id", method = "get", tag = "ApiTags::Admin")]
    async fn get_plan(
        &self,
        _key: AdminKey,
        plan_id: Path<String>,
    ) -> Result<Json<PlanView>, ApiError> {
        let plan_id = path_plan_id(&plan_id)?;
        let stored = self
            .state
            .plans
            .load_plan(&plan_id)
            .await?
            .ok_or_else(|| ApiError::plan_not_found(&plan_id))?;
        let spec = stored.spec;
        Ok(Json(PlanView {
            id: spec.id.to_string(),
            title: spec.title,
            starts_at: to_datetime(spec.starts_at),
            duration_s: spec.duration_s,
            settings: SettingsBody {
                heartbeat_s: Some(spec.settings.heartbeat_s),
                late_entry_s: Some(spec.settings.late_entry_s),
                max_text_chars: Some(spec.settings.max_text_chars),
                incident_rules: Some((&spec.settings.incident_rules).into()),
            },
            clock: plan_clock(&stored.runtime, spec.duration_s, self.state.clock.now()),
            questions: spec
                .questions
                .into_iter()
                .map(|question| QuestionBody {
                    id: question.id.to_string(),
                    kind: question.kind.into(),
                    choices: question.choices,
                    answer: question.answer,
                    points: question.points,
                })
                .collect(),
            rooms: spec
                .rooms
                .into_iter()
                .map(|room| RoomBody {
                    id: room.id.to_string(),
                    name: room.name,
                    capacity: room.capacity,
                })
                .collect(),
            proctors: spec
                .proctors
                .into_iter()
                .map(|proctor| ProctorView {
                    id: proctor.id.to_string(),
                    name: proctor.name,
                    login: proctor.login,
                    room_ids: proctor.room_ids.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            candidates: spec
                .candidates
                .into_iter()
                .map(|candidate| CandidateView {
                    id: candidate.id.to_string(),
                    reg_no: candidate.reg_no,
                    name: candidate.name,
                    room_id: candidate.room_id.to_string(),
                    seat: candidate.seat,
                    extra_time_s: candidate.extra_time_s,
                })
                .collect(),
            revision: stored.revision,
            created_at: to_datetime(stored.created_at),
            updated_at: to_datetime(stored.updated_at),
        }))
    }

    /// Run a plan command: open, start, pause, resume, extend, end, finalize.
    #[oai(
        path = "/admin/plans/:plan_id/commands",
        method = "post",
        tag = "ApiTags::Admin"
    )]
    async fn plan_command(
        &self,
        _key: AdminKey,
        plan_id: Path<String>,
        body: Body<PlanCommandBody>,
    ) -> Result<Json<PlanClockView>, ApiError> {
        let plan_id = path_plan_id(&plan_id)?;
        let command = match (body.0.action, body.0.extend_s) {
            (PlanAction::Extend, Some(seconds)) => PlanCommand::Extend { seconds },
            (PlanAction::Extend, None) => {
                return Err(
                    ApiError::unprocessable("missing_field", "extend needs extend_s")
                        .with_field("extend_s"),
                );
            }
            (_, Some(_)) => {
                return Err(ApiError::unprocessable(
                    "unexpected_field",
                    "extend_s is only for extend",
                )
                .with_field("extend_s"));
            }
            (PlanAction::Open, None) => PlanCommand::Open,
            (PlanAction::Start, None) => PlanCommand::Start,
            (PlanAction::Pause, None) => PlanCommand::Pause,
            (PlanAction::Resume, None) => PlanCommand::Resume,
            (PlanAction::End, None) => PlanCommand::End,
            (PlanAction::Finalize, None) => PlanCommand::Finalize,
        };
        let plan = self
            .state
            .exam
            .plan_command(&plan_id, &command)
            .await
            .map_err(|error| match error {
                invigil_actors::error::ExamError::NotFound(_) => ApiError::plan_not_found(&plan_id),
                other => other.into(),
            })?;
        let (runtime, duration_s) = (plan.runtime, plan.duration_s);
        Ok(Json(plan_clock(
            &runtime,
            duration_s,
            self.state.clock.now(),
        )))
    }

    /// Plan state, per-room counts by candidate state and connection, open incidents, answers saved.
    #[oai(
        path = "/admin/plans/:plan_id/status",
        method = "get",
        tag = "ApiTags::Admin"
    )]
    async fn plan_status(
        &self,
        _key: AdminKey,
        plan_id: Path<String>,
    ) -> Result<Json<PlanStatusView>, ApiError> {
        let plan_id = path_plan_id(&plan_id)?;
        let counts = self
            .state
            .plans
            .plan_counts(&plan_id)
            .await?
            .ok_or_else(|| ApiError::plan_not_found(&plan_id))?;
        let now = self.state.clock.now();
        let rooms = room_statuses(&self.state, &plan_id, &counts.rooms).await;
        let mut candidates = dto::CandidateCounts::default();
        let mut connection = ConnectionCounts::default();
        for room in &rooms {
            add_counts(&mut candidates, &room.candidates);
            connection.online += room.connection.online;
            connection.stale += room.connection.stale;
            connection.offline += room.connection.offline;
        }
        Ok(Json(PlanStatusView {
            plan_id: plan_id.to_string(),
            title: counts.title,
            clock: plan_clock(&counts.runtime, counts.duration_s, now),
            rooms,
            candidates,
            connection,
            incidents_open: counts.incidents_open,
            answers_saved: counts.answers_saved,
            as_of: to_datetime(now),
        }))
    }

    /// A plan's results once it has ended: every candidate (absent ones
    /// too) with their state, submit time, current answers and score, graded
    /// from the answer keys at request time.
    ///
    /// `?format=csv` gives the same as a CSV attachment (UTF-8 with a byte
    /// order mark, RFC 4180): the candidate columns, `score`, `max_score`,
    /// then one column per question. Before the end: 409 `results_not_ready`.
    #[oai(
        path = "/admin/plans/:plan_id/results",
        method = "get",
        tag = "ApiTags::Admin"
    )]
    async fn plan_results(
        &self,
        _key: AdminKey,
        plan_id: Path<String>,
        /// `json` (the default) or `csv`.
        format: Query<Option<ResultsFormat>>,
    ) -> Result<ResultsResponse, ApiError> {
        let plan_id = path_plan_id(&plan_id)?;
        results::plan_results(&self.state, &plan_id, format.0.unwrap_or_default()).await
    }
}

/// Validates, hashes and stores a plan import; shared by the route and the
/// demo seeder so both take exactly one path.
pub async fn import_plan(
    state: &AppState,
    plan_id: PlanId,
    body: PlanImport,
) -> Result<ImportResult, ApiError> {
    let canonical = serde_json::to_vec(&body).map_err(ApiError::internal)?;
    let digest = state.hasher.import_digest(&plan_id, &canonical);
    let spec = body.into_spec(plan_id.clone())?;
    let result = |outcome| ImportResult {
        plan_id: plan_id.to_string(),
        outcome,
        questions: spec.questions.len() as u64,
        rooms: spec.rooms.len() as u64,
        proctors: spec.proctors.len() as u64,
        candidates: spec.candidates.len() as u64,
    };
    if let Some((stored_digest, _)) = state.plans.plan_digest(&plan_id).await?
        && stored_digest == digest
    {
        return Ok(result(ImportOutcomeView::Unchanged));
    }
    let hashed = hash_secrets(state, &spec).await?;
    let mut outcome = state
        .plans
        .import_plan(&hashed, &digest, state.clock.now())
        .await;
    if matches!(outcome, Err(invigil_actors::error::StoreError::Conflict(_))) {
        // Two first imports of the same plan raced; the loser re-reads.
        outcome = state
            .plans
            .import_plan(&hashed, &digest, state.clock.now())
            .await;
    }
    let outcome = match outcome? {
        ImportOutcome::Created => ImportOutcomeView::Created,
        ImportOutcome::Replaced => {
            // Live actors were built from the old plan.
            state.exam.plan_replaced(&plan_id);
            ImportOutcomeView::Replaced
        }
        ImportOutcome::Unchanged => ImportOutcomeView::Unchanged,
        ImportOutcome::Refused(PlanState::Open) => {
            return Err(ApiError::conflict(
                "plan_already_open",
                "the plan is open for check-in and can no longer be replaced",
            ));
        }
        ImportOutcome::Refused(state) => {
            return Err(ApiError::conflict(
                "plan_already_started",
                format!(
                    "the plan is {} and can no longer be replaced",
                    state.as_str()
                ),
            ));
        }
    };
    info!(plan_id = %plan_id, candidates = spec.candidates.len(), outcome = ?outcome, "plan imported");
    Ok(result(outcome))
}

/// Hashes access codes (fast, keyed) and passwords (argon2id, spread over
/// blocking threads, one chunk per core).
async fn hash_secrets(
    state: &AppState,
    spec: &PlanSpec<Plaintext>,
) -> Result<PlanSpec<CredentialHash>, ApiError> {
    let passwords: Vec<String> = spec
        .proctors
        .iter()
        .map(|proctor| proctor.password.0.clone())
        .collect();
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let chunk = passwords.len().div_ceil(workers).max(1);
    let tasks: Vec<_> = passwords
        .chunks(chunk)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let hasher = state.hasher.clone();
            tokio::task::spawn_blocking(move || {
                chunk
                    .iter()
                    .map(|password| hasher.hash_password(password))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .collect();
    let mut password_hashes = Vec::with_capacity(passwords.len());
    for task in tasks {
        password_hashes.extend(
            task.await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?,
        );
    }
    let mut password_hashes = password_hashes.into_iter();
    let hasher = &state.hasher;
    let plan_id = spec.id.clone();
    spec.clone().map_secrets(
        |_: &ProctorSpec<Plaintext>| {
            password_hashes
                .next()
                .ok_or_else(|| ApiError::internal("password hash missing"))
        },
        |candidate: &CandidateSpec<Plaintext>| {
            Ok(hasher.hash_access_code(&plan_id, &candidate.id, &candidate.access_code.0))
        },
    )
}
