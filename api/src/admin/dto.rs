//! The admin server's plan import and the views returned to it. Request types
//! derive both serde (parsing, with field paths in errors) and poem-openapi
//! (the documented schema); they become domain types through `TryFrom`.

use chrono::{DateTime, Utc};
use invigil_actors::domain::ids::id_problem;
use invigil_actors::domain::{
    CandidateId, CandidateSpec, IncidentRules, Plaintext, PlanId, PlanSettings, PlanSpec,
    ProctorId, ProctorSpec, Question, QuestionId, QuestionKind, RoomId, RoomSpec, SpecProblem,
    SpecProblems,
};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::body::RequestBodyType;
use crate::time::to_timestamp;

/// The id pattern, for the schema.
pub const ID_PATTERN: &str = r"^[A-Za-z0-9._-]{1,64}$";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum QuestionKindBody {
    Single,
    Multi,
    Text,
}

impl From<QuestionKindBody> for QuestionKind {
    fn from(kind: QuestionKindBody) -> Self {
        match kind {
            QuestionKindBody::Single => Self::Single,
            QuestionKindBody::Multi => Self::Multi,
            QuestionKindBody::Text => Self::Text,
        }
    }
}

impl From<QuestionKind> for QuestionKindBody {
    fn from(kind: QuestionKind) -> Self {
        match kind {
            QuestionKind::Single => Self::Single,
            QuestionKind::Multi => Self::Multi,
            QuestionKind::Text => Self::Text,
        }
    }
}

fn one() -> f64 {
    1.0
}

/// A question: what may be answered and the key to grade by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(rename = "Question", deny_unknown_fields)]
pub struct QuestionBody {
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub id: String,
    pub kind: QuestionKindBody,
    /// Choice ids in display order (single and multi).
    #[serde(default)]
    #[oai(default)]
    pub choices: Vec<String>,
    /// The key: a choice id (single), choice ids (multi), accepted text(s) (text); null when ungraded.
    #[serde(default)]
    #[oai(default)]
    pub answer: Value,
    #[serde(default = "one")]
    #[oai(default = "one")]
    pub points: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(rename = "Room", deny_unknown_fields)]
pub struct RoomBody {
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub id: String,
    pub name: String,
    pub capacity: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(rename = "ProctorImport", deny_unknown_fields)]
pub struct ProctorBody {
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub id: String,
    pub name: String,
    pub login: String,
    /// Stored as an argon2id hash; never returned.
    pub password: String,
    #[serde(default)]
    #[oai(default)]
    pub room_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(rename = "CandidateImport", deny_unknown_fields)]
pub struct CandidateBody {
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub id: String,
    pub reg_no: String,
    pub name: String,
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub room_id: String,
    /// A seat label; a number is accepted and kept as text.
    #[serde(default, deserialize_with = "string_or_number")]
    pub seat: Option<String>,
    /// Stored as a keyed hash; never returned.
    pub access_code: String,
    #[serde(default)]
    #[oai(default)]
    pub extra_time_s: i64,
}

fn string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(seat)) => Ok(Some(seat)),
        Some(Value::Number(seat)) => Ok(Some(seat.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "a seat is a string or a number, not {other}"
        ))),
    }
}

/// Plan settings; every key is optional and defaults as documented.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(rename = "PlanSettings", deny_unknown_fields)]
pub struct SettingsBody {
    /// Client heartbeat period (default 10).
    pub heartbeat_s: Option<i64>,
    /// Check-in allowed this long after the actual start (default 600).
    pub late_entry_s: Option<i64>,
    /// Longest text answer in characters (default 10000).
    pub max_text_chars: Option<i64>,
    /// When the server raises incidents itself; every key is optional.
    pub incident_rules: Option<IncidentRulesBody>,
}

/// Incident rules of a plan (see docs/protocol.md, "Incident rules").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(rename = "IncidentRules", deny_unknown_fields)]
pub struct IncidentRulesBody {
    /// `focus_lost` events that raise `focus_lost_repeated` (default 5; 0: off)…
    pub focus_lost_count: Option<u32>,
    /// …within this many seconds (default 60).
    pub focus_lost_window_s: Option<i64>,
    /// Raise `copy_paste_detected` on a `copy_paste` event (default true).
    pub copy_paste: Option<bool>,
    /// Raise `ip_changed` when a sitting candidate reconnects from another address (default true).
    pub ip_change: Option<bool>,
    /// Raise `duplicate_login` when a second connection takes over (default true).
    pub duplicate_login: Option<bool>,
    /// Candidates of one room going offline together that make one room-level
    /// `connectivity` incident (default 3)…
    pub connectivity_min_candidates: Option<u32>,
    /// …and at least this fraction of the room's sitting candidates (default 0.5)…
    pub connectivity_fraction: Option<f64>,
    /// …within this many seconds (default 20).
    pub connectivity_window_s: Option<i64>,
    /// Raise `went_offline` for a candidate who went offline alone (default true).
    pub offline_alone: Option<bool>,
}

impl From<IncidentRulesBody> for IncidentRules {
    fn from(body: IncidentRulesBody) -> Self {
        let defaults = IncidentRules::default();
        IncidentRules {
            focus_lost_count: body.focus_lost_count.unwrap_or(defaults.focus_lost_count),
            focus_lost_window_s: body
                .focus_lost_window_s
                .unwrap_or(defaults.focus_lost_window_s),
            copy_paste: body.copy_paste.unwrap_or(defaults.copy_paste),
            ip_change: body.ip_change.unwrap_or(defaults.ip_change),
            duplicate_login: body.duplicate_login.unwrap_or(defaults.duplicate_login),
            connectivity_min_candidates: body
                .connectivity_min_candidates
                .unwrap_or(defaults.connectivity_min_candidates),
            connectivity_fraction: body
                .connectivity_fraction
                .unwrap_or(defaults.connectivity_fraction),
            connectivity_window_s: body
                .connectivity_window_s
                .unwrap_or(defaults.connectivity_window_s),
            offline_alone: body.offline_alone.unwrap_or(defaults.offline_alone),
        }
    }
}

impl From<&IncidentRules> for IncidentRulesBody {
    fn from(rules: &IncidentRules) -> Self {
        Self {
            focus_lost_count: Some(rules.focus_lost_count),
            focus_lost_window_s: Some(rules.focus_lost_window_s),
            copy_paste: Some(rules.copy_paste),
            ip_change: Some(rules.ip_change),
            duplicate_login: Some(rules.duplicate_login),
            connectivity_min_candidates: Some(rules.connectivity_min_candidates),
            connectivity_fraction: Some(rules.connectivity_fraction),
            connectivity_window_s: Some(rules.connectivity_window_s),
            offline_alone: Some(rules.offline_alone),
        }
    }
}

impl From<SettingsBody> for PlanSettings {
    fn from(body: SettingsBody) -> Self {
        let defaults = PlanSettings::default();
        PlanSettings {
            heartbeat_s: body.heartbeat_s.unwrap_or(defaults.heartbeat_s),
            late_entry_s: body.late_entry_s.unwrap_or(defaults.late_entry_s),
            max_text_chars: body.max_text_chars.unwrap_or(defaults.max_text_chars),
            incident_rules: body.incident_rules.map(Into::into).unwrap_or_default(),
        }
    }
}

/// A whole plan, created or replaced by `PUT /api/v1/admin/plans/{plan_id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(rename = "PlanImport", deny_unknown_fields)]
pub struct PlanImport {
    pub title: String,
    /// The scheduled start, shown to people; the clock runs from the actual `start` command.
    pub starts_at: DateTime<Utc>,
    pub duration_s: i64,
    #[serde(default)]
    #[oai(default)]
    pub settings: SettingsBody,
    pub questions: Vec<QuestionBody>,
    pub rooms: Vec<RoomBody>,
    #[serde(default)]
    #[oai(default)]
    pub proctors: Vec<ProctorBody>,
    #[serde(default)]
    #[oai(default)]
    pub candidates: Vec<CandidateBody>,
}

impl RequestBodyType for PlanImport {
    const BULK: bool = true;
}

/// Collects id problems while converting.
struct Ids {
    problems: Vec<SpecProblem>,
    total: usize,
}

impl Ids {
    fn parse<T: std::str::FromStr>(
        &mut self,
        field: impl FnOnce() -> String,
        value: &str,
    ) -> Option<T> {
        if let Some(reason) = id_problem(value) {
            self.total += 1;
            if self.problems.len() < invigil_actors::domain::spec::MAX_REPORTED_PROBLEMS {
                self.problems.push(SpecProblem {
                    code: "invalid_id",
                    field: field(),
                    detail: format!("{value:?} {reason}"),
                });
            }
            return None;
        }
        value.parse().ok()
    }
}

impl PlanImport {
    /// Converts to the domain and validates everything, reporting every
    /// problem with its field path.
    pub fn into_spec(self, plan_id: PlanId) -> Result<PlanSpec<Plaintext>, SpecProblems> {
        let mut ids = Ids {
            problems: Vec::new(),
            total: 0,
        };
        let questions: Vec<Option<Question>> = self
            .questions
            .into_iter()
            .enumerate()
            .map(|(index, question)| {
                let id: QuestionId =
                    ids.parse(|| format!("questions[{index}].id"), &question.id)?;
                Some(Question {
                    id,
                    kind: question.kind.into(),
                    choices: question.choices,
                    answer: question.answer,
                    points: question.points,
                })
            })
            .collect();
        let rooms: Vec<Option<RoomSpec>> = self
            .rooms
            .into_iter()
            .enumerate()
            .map(|(index, room)| {
                let id: RoomId = ids.parse(|| format!("rooms[{index}].id"), &room.id)?;
                Some(RoomSpec {
                    id,
                    name: room.name,
                    capacity: room.capacity,
                })
            })
            .collect();
        let proctors: Vec<Option<ProctorSpec<Plaintext>>> = self
            .proctors
            .into_iter()
            .enumerate()
            .map(|(index, proctor)| {
                let id: Option<ProctorId> =
                    ids.parse(|| format!("proctors[{index}].id"), &proctor.id);
                let room_ids: Vec<Option<RoomId>> = proctor
                    .room_ids
                    .iter()
                    .enumerate()
                    .map(|(room_index, room)| {
                        ids.parse(|| format!("proctors[{index}].room_ids[{room_index}]"), room)
                    })
                    .collect();
                Some(ProctorSpec {
                    id: id?,
                    name: proctor.name,
                    login: proctor.login,
                    password: Plaintext(proctor.password),
                    room_ids: room_ids.into_iter().collect::<Option<Vec<_>>>()?,
                })
            })
            .collect();
        let candidates: Vec<Option<CandidateSpec<Plaintext>>> = self
            .candidates
            .into_iter()
            .enumerate()
            .map(|(index, candidate)| {
                let id: Option<CandidateId> =
                    ids.parse(|| format!("candidates[{index}].id"), &candidate.id);
                let room_id: Option<RoomId> = ids.parse(
                    || format!("candidates[{index}].room_id"),
                    &candidate.room_id,
                );
                Some(CandidateSpec {
                    id: id?,
                    reg_no: candidate.reg_no,
                    name: candidate.name,
                    room_id: room_id?,
                    seat: candidate.seat,
                    access_code: Plaintext(candidate.access_code),
                    extra_time_s: candidate.extra_time_s,
                })
            })
            .collect();
        if ids.total > 0 {
            return Err(SpecProblems {
                problems: ids.problems,
                total: ids.total,
            });
        }
        let spec = PlanSpec {
            id: plan_id,
            title: self.title,
            starts_at: to_timestamp(self.starts_at),
            duration_s: self.duration_s,
            settings: self.settings.into(),
            questions: questions.into_iter().flatten().collect(),
            rooms: rooms.into_iter().flatten().collect(),
            proctors: proctors.into_iter().flatten().collect(),
            candidates: candidates.into_iter().flatten().collect(),
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Enum)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcomeView {
    Created,
    Replaced,
    Unchanged,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Object)]
#[oai(rename = "PlanImportResult")]
pub struct ImportResult {
    pub plan_id: String,
    pub outcome: ImportOutcomeView,
    pub questions: u64,
    pub rooms: u64,
    pub proctors: u64,
    pub candidates: u64,
}

/// A proctor as returned: no password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Object)]
pub struct ProctorView {
    pub id: String,
    pub name: String,
    pub login: String,
    pub room_ids: Vec<String>,
}

/// A candidate as returned: no access code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Object)]
pub struct CandidateView {
    pub id: String,
    pub reg_no: String,
    pub name: String,
    pub room_id: String,
    pub seat: Option<String>,
    pub extra_time_s: i64,
}

/// The plan's clock as it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Object)]
pub struct PlanClockView {
    pub state: String,
    pub opened_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub paused: bool,
    /// Sum of plan-wide extensions.
    pub extension_s: i64,
    /// Time left for a candidate without extra time or room/personal extensions.
    pub remaining_s: i64,
}

/// A stored plan without secrets.
#[derive(Clone, Debug, PartialEq, Serialize, Object)]
pub struct PlanView {
    pub id: String,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub duration_s: i64,
    pub settings: SettingsBody,
    pub clock: PlanClockView,
    pub questions: Vec<QuestionBody>,
    pub rooms: Vec<RoomBody>,
    pub proctors: Vec<ProctorView>,
    pub candidates: Vec<CandidateView>,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum PlanAction {
    Open,
    Start,
    Pause,
    Resume,
    End,
    Extend,
    Finalize,
}

/// `POST /api/v1/admin/plans/{plan_id}/commands`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct PlanCommandBody {
    pub action: PlanAction,
    /// Seconds to add; required for `extend`.
    pub extend_s: Option<i64>,
}

impl RequestBodyType for PlanCommandBody {}

/// Candidates per state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Object)]
pub struct CandidateCounts {
    pub registered: i64,
    pub checked_in: i64,
    pub testing: i64,
    pub paused: i64,
    pub submitted: i64,
    pub force_submitted: i64,
    pub expelled: i64,
    pub absent: i64,
    pub total: i64,
}

/// Candidates per connection state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Object)]
pub struct ConnectionCounts {
    pub online: i64,
    pub stale: i64,
    pub offline: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Object)]
pub struct RoomStatusView {
    pub room_id: String,
    pub name: String,
    pub state: String,
    pub paused: bool,
    pub capacity: i64,
    pub extension_s: i64,
    pub candidates: CandidateCounts,
    pub connection: ConnectionCounts,
    pub incidents_open: i64,
}

/// `GET /api/v1/admin/plans/{plan_id}/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Object)]
pub struct PlanStatusView {
    pub plan_id: String,
    pub title: String,
    pub clock: PlanClockView,
    pub rooms: Vec<RoomStatusView>,
    pub candidates: CandidateCounts,
    pub connection: ConnectionCounts,
    pub incidents_open: i64,
    /// Answer versions durably saved so far.
    pub answers_saved: i64,
    pub as_of: DateTime<Utc>,
}
