//! The static content of a plan as the admin server imports it, and its
//! validation. Validation collects every problem with a stable code and the
//! path of the field it concerns, so the admin server can fix a file in one go.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::{CandidateId, PlanId, ProctorId, QuestionId, RoomId};
use super::question::Question;
use super::time::Timestamp;

/// The longest exam: a week, far beyond any real sitting; guards arithmetic.
pub const MAX_DURATION_S: i64 = 7 * 24 * 3600;
/// Upper bounds that keep one import within a sane memory and transaction size.
pub const MAX_QUESTIONS: usize = 10_000;
pub const MAX_ROOMS: usize = 20_000;
pub const MAX_PROCTORS: usize = 50_000;
pub const MAX_CANDIDATES: usize = 500_000;
/// The shortest access code. Codes are random exam secrets; with the login
/// limit (10 attempts per account per 5 minutes by default) 8 random
/// characters put guessing any candidate's code out of reach.
pub const MIN_ACCESS_CODE_CHARS: usize = 8;
/// The most problems reported for one import; the rest are counted, not listed.
pub const MAX_REPORTED_PROBLEMS: usize = 50;

/// Per-plan settings. Unknown keys are rejected so a typo does not silently
/// fall back to a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanSettings {
    /// How often clients send a heartbeat.
    pub heartbeat_s: i64,
    /// How long after the actual start a candidate may still check in.
    pub late_entry_s: i64,
    /// The longest text answer, in characters.
    pub max_text_chars: i64,
    /// When the server raises incidents itself (see `domain::rules`).
    pub incident_rules: super::rules::IncidentRules,
}

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            heartbeat_s: 10,
            late_entry_s: 600,
            max_text_chars: 10_000,
            incident_rules: super::rules::IncidentRules::default(),
        }
    }
}

/// A plaintext secret as it arrives in an import (a proctor password, a
/// candidate access code). It never prints.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Plaintext(pub String);

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plaintext(<redacted>)")
    }
}

/// The stored form of a secret: an argon2 PHC string for passwords, a keyed
/// hash for access codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialHash(pub String);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomSpec {
    pub id: RoomId,
    pub name: String,
    pub capacity: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProctorSpec<S> {
    pub id: ProctorId,
    pub name: String,
    pub login: String,
    pub password: S,
    pub room_ids: Vec<RoomId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateSpec<S> {
    pub id: CandidateId,
    pub reg_no: String,
    pub name: String,
    pub room_id: RoomId,
    pub seat: Option<String>,
    pub access_code: S,
    pub extra_time_s: i64,
}

/// A whole plan. `S` is how secrets are held: [`Plaintext`] on input,
/// [`CredentialHash`] once hashed for storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanSpec<S> {
    pub id: PlanId,
    pub title: String,
    pub starts_at: Timestamp,
    pub duration_s: i64,
    pub settings: PlanSettings,
    pub questions: Vec<Question>,
    pub rooms: Vec<RoomSpec>,
    pub proctors: Vec<ProctorSpec<S>>,
    pub candidates: Vec<CandidateSpec<S>>,
}

/// One thing wrong with an import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpecProblem {
    /// Stable snake_case code, e.g. `duplicate_candidate_id`.
    pub code: &'static str,
    /// Path of the offending field, e.g. `candidates[3].room_id`.
    pub field: String,
    pub detail: String,
}

/// Every problem found in an import (at most [`MAX_REPORTED_PROBLEMS`] listed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the plan, first: {}: {}", .total, .problems[0].field, .problems[0].detail)]
pub struct SpecProblems {
    pub problems: Vec<SpecProblem>,
    pub total: usize,
}

#[derive(Default)]
struct Collector {
    problems: Vec<SpecProblem>,
    total: usize,
}

impl Collector {
    fn add(&mut self, code: &'static str, field: impl Into<String>, detail: impl Into<String>) {
        self.total += 1;
        if self.problems.len() < MAX_REPORTED_PROBLEMS {
            self.problems.push(SpecProblem {
                code,
                field: field.into(),
                detail: detail.into(),
            });
        }
    }

    fn text(
        &mut self,
        code: &'static str,
        field: impl Into<String>,
        value: &str,
        max_chars: usize,
    ) {
        let count = value.chars().count();
        if value.trim().is_empty() || count > max_chars || value.chars().any(char::is_control) {
            self.add(
                code,
                field,
                format!("must be 1 to {max_chars} characters without control characters"),
            );
        }
    }

    fn finish(self) -> Result<(), SpecProblems> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(SpecProblems {
                problems: self.problems,
                total: self.total,
            })
        }
    }
}

impl<S> PlanSpec<S> {
    /// Replaces the secrets, e.g. plaintext by hashes, keeping everything else.
    pub fn map_secrets<T, E>(
        self,
        mut proctor_secret: impl FnMut(&ProctorSpec<S>) -> Result<T, E>,
        mut candidate_secret: impl FnMut(&CandidateSpec<S>) -> Result<T, E>,
    ) -> Result<PlanSpec<T>, E> {
        let proctors = self
            .proctors
            .into_iter()
            .map(|proctor| {
                let password = proctor_secret(&proctor)?;
                Ok(ProctorSpec {
                    id: proctor.id,
                    name: proctor.name,
                    login: proctor.login,
                    password,
                    room_ids: proctor.room_ids,
                })
            })
            .collect::<Result<Vec<_>, E>>()?;
        let candidates = self
            .candidates
            .into_iter()
            .map(|candidate| {
                let access_code = candidate_secret(&candidate)?;
                Ok(CandidateSpec {
                    id: candidate.id,
                    reg_no: candidate.reg_no,
                    name: candidate.name,
                    room_id: candidate.room_id,
                    seat: candidate.seat,
                    access_code,
                    extra_time_s: candidate.extra_time_s,
                })
            })
            .collect::<Result<Vec<_>, E>>()?;
        Ok(PlanSpec {
            id: self.id,
            title: self.title,
            starts_at: self.starts_at,
            duration_s: self.duration_s,
            settings: self.settings,
            questions: self.questions,
            rooms: self.rooms,
            proctors,
            candidates,
        })
    }

    /// Returns the question with `id`.
    pub fn question(&self, id: &QuestionId) -> Option<&Question> {
        self.questions.iter().find(|question| &question.id == id)
    }
}

impl PlanSpec<Plaintext> {
    /// Checks everything the admin server could get wrong, beyond the shape
    /// that deserialization already enforced.
    pub fn validate(&self) -> Result<(), SpecProblems> {
        let mut problems = Collector::default();
        problems.text("invalid_title", "title", &self.title, 200);
        if self.duration_s <= 0 || self.duration_s > MAX_DURATION_S {
            problems.add(
                "invalid_duration",
                "duration_s",
                format!("must be between 1 and {MAX_DURATION_S} seconds"),
            );
        }
        self.validate_settings(&mut problems);
        self.validate_questions(&mut problems);
        let rooms = self.validate_rooms(&mut problems);
        self.validate_proctors(&rooms, &mut problems);
        self.validate_candidates(&rooms, &mut problems);
        problems.finish()
    }

    fn validate_settings(&self, problems: &mut Collector) {
        let settings = &self.settings;
        if !(1..=300).contains(&settings.heartbeat_s) {
            problems.add(
                "invalid_setting",
                "settings.heartbeat_s",
                "must be between 1 and 300",
            );
        }
        // Bounded by the duration only when that is valid itself, so one
        // mistake is reported once.
        let duration_valid = (1..=MAX_DURATION_S).contains(&self.duration_s);
        if settings.late_entry_s < 0 || (duration_valid && settings.late_entry_s > self.duration_s)
        {
            problems.add(
                "invalid_setting",
                "settings.late_entry_s",
                "must be between 0 and the duration",
            );
        }
        if !(1..=100_000).contains(&settings.max_text_chars) {
            problems.add(
                "invalid_setting",
                "settings.max_text_chars",
                "must be between 1 and 100000",
            );
        }
        for (field, message) in settings.incident_rules.problems() {
            problems.add(
                "invalid_setting",
                format!("settings.incident_rules.{field}"),
                message,
            );
        }
    }

    fn validate_questions(&self, problems: &mut Collector) {
        if self.questions.is_empty() {
            problems.add(
                "no_questions",
                "questions",
                "a plan needs at least one question",
            );
        }
        if self.questions.len() > MAX_QUESTIONS {
            problems.add(
                "too_many_questions",
                "questions",
                format!("at most {MAX_QUESTIONS}"),
            );
        }
        let mut seen = HashSet::new();
        for (index, question) in self.questions.iter().enumerate() {
            if !seen.insert(&question.id) {
                problems.add(
                    "duplicate_question_id",
                    format!("questions[{index}].id"),
                    format!("question {} appears twice", question.id),
                );
            }
            if let Err(problem) = question.check_definition() {
                problems.add("invalid_question", format!("questions[{index}]"), problem.0);
            }
        }
    }

    fn validate_rooms(&self, problems: &mut Collector) -> HashMap<&RoomId, i64> {
        if self.rooms.len() > MAX_ROOMS {
            problems.add("too_many_rooms", "rooms", format!("at most {MAX_ROOMS}"));
        }
        let mut capacities = HashMap::new();
        for (index, room) in self.rooms.iter().enumerate() {
            problems.text(
                "invalid_name",
                format!("rooms[{index}].name"),
                &room.name,
                100,
            );
            if !(1..=10_000).contains(&room.capacity) {
                problems.add(
                    "invalid_capacity",
                    format!("rooms[{index}].capacity"),
                    "must be between 1 and 10000",
                );
            }
            if capacities.insert(&room.id, room.capacity).is_some() {
                problems.add(
                    "duplicate_room_id",
                    format!("rooms[{index}].id"),
                    format!("room {} appears twice", room.id),
                );
            }
        }
        capacities
    }

    fn validate_proctors(&self, rooms: &HashMap<&RoomId, i64>, problems: &mut Collector) {
        if self.proctors.len() > MAX_PROCTORS {
            problems.add(
                "too_many_proctors",
                "proctors",
                format!("at most {MAX_PROCTORS}"),
            );
        }
        let mut ids = HashSet::new();
        let mut logins = HashSet::new();
        for (index, proctor) in self.proctors.iter().enumerate() {
            let at = |field: &str| format!("proctors[{index}].{field}");
            problems.text("invalid_name", at("name"), &proctor.name, 100);
            problems.text("invalid_login", at("login"), &proctor.login, 64);
            let password_chars = proctor.password.0.chars().count();
            if !(8..=256).contains(&password_chars) {
                problems.add(
                    "invalid_password",
                    at("password"),
                    "must be 8 to 256 characters",
                );
            }
            if !ids.insert(&proctor.id) {
                problems.add(
                    "duplicate_proctor_id",
                    at("id"),
                    format!("proctor {} appears twice", proctor.id),
                );
            }
            if !logins.insert(proctor.login.as_str()) {
                problems.add(
                    "duplicate_proctor_login",
                    at("login"),
                    format!("login {:?} appears twice", proctor.login),
                );
            }
            let mut assigned = HashSet::new();
            for (room_index, room_id) in proctor.room_ids.iter().enumerate() {
                if !rooms.contains_key(room_id) {
                    problems.add(
                        "unknown_room",
                        format!("proctors[{index}].room_ids[{room_index}]"),
                        format!("room {room_id} is not in the plan"),
                    );
                }
                if !assigned.insert(room_id) {
                    problems.add(
                        "duplicate_room_id",
                        format!("proctors[{index}].room_ids[{room_index}]"),
                        format!("room {room_id} is assigned twice"),
                    );
                }
            }
        }
    }

    fn validate_candidates(&self, rooms: &HashMap<&RoomId, i64>, problems: &mut Collector) {
        if self.candidates.len() > MAX_CANDIDATES {
            problems.add(
                "too_many_candidates",
                "candidates",
                format!("at most {MAX_CANDIDATES}"),
            );
        }
        let mut ids = HashSet::new();
        let mut reg_nos = HashSet::new();
        let mut seats = HashSet::new();
        let mut per_room: HashMap<&RoomId, i64> = HashMap::new();
        for (index, candidate) in self.candidates.iter().enumerate() {
            let at = |field: &str| format!("candidates[{index}].{field}");
            problems.text("invalid_name", at("name"), &candidate.name, 100);
            problems.text("invalid_reg_no", at("reg_no"), &candidate.reg_no, 64);
            let code_chars = candidate.access_code.0.chars().count();
            if !(MIN_ACCESS_CODE_CHARS..=128).contains(&code_chars) {
                problems.add(
                    "invalid_access_code",
                    at("access_code"),
                    format!("must be {MIN_ACCESS_CODE_CHARS} to 128 characters"),
                );
            }
            if candidate.extra_time_s < 0 || candidate.extra_time_s > MAX_DURATION_S {
                problems.add(
                    "invalid_extra_time",
                    at("extra_time_s"),
                    format!("must be between 0 and {MAX_DURATION_S} seconds"),
                );
            }
            if !ids.insert(&candidate.id) {
                problems.add(
                    "duplicate_candidate_id",
                    at("id"),
                    format!("candidate {} appears twice", candidate.id),
                );
            }
            if !reg_nos.insert(candidate.reg_no.as_str()) {
                problems.add(
                    "duplicate_reg_no",
                    at("reg_no"),
                    format!("registration number {:?} appears twice", candidate.reg_no),
                );
            }
            if let Some(seat) = &candidate.seat {
                problems.text("invalid_seat", at("seat"), seat, 32);
                if !seats.insert((&candidate.room_id, seat.as_str())) {
                    problems.add(
                        "duplicate_seat",
                        at("seat"),
                        format!("seat {seat:?} of room {} is taken twice", candidate.room_id),
                    );
                }
            }
            match rooms.get(&candidate.room_id) {
                None => problems.add(
                    "unknown_room",
                    at("room_id"),
                    format!("room {} is not in the plan", candidate.room_id),
                ),
                Some(&capacity) => {
                    let seated = per_room.entry(&candidate.room_id).or_default();
                    *seated += 1;
                    if *seated == capacity + 1 {
                        problems.add(
                            "room_over_capacity",
                            at("room_id"),
                            format!(
                                "room {} holds only {capacity} candidates",
                                candidate.room_id
                            ),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::question::QuestionKind;

    /// A small valid plan: 2 rooms, 1 proctor, 3 candidates, 3 questions.
    pub(crate) fn sample_plan() -> PlanSpec<Plaintext> {
        let room = |id: &str| RoomSpec {
            id: RoomId::parse(id).unwrap(),
            name: id.into(),
            capacity: 2,
        };
        let candidate = |id: &str, room: &str| CandidateSpec {
            id: CandidateId::parse(id).unwrap(),
            reg_no: format!("R-{id}"),
            name: format!("name {id}"),
            room_id: RoomId::parse(room).unwrap(),
            seat: None,
            access_code: Plaintext(format!("access-{id}")),
            extra_time_s: 0,
        };
        let question = |id: &str, kind, choices: &[&str], answer| Question {
            id: QuestionId::parse(id).unwrap(),
            kind,
            choices: choices.iter().map(|c| c.to_string()).collect(),
            answer,
            points: 1.0,
        };
        PlanSpec {
            id: PlanId::parse("plan-1").unwrap(),
            title: "Sample".into(),
            starts_at: Timestamp::from_millis(0),
            duration_s: 3_600,
            settings: PlanSettings::default(),
            questions: vec![
                question("q1", QuestionKind::Single, &["A", "B", "C"], json!("B")),
                question(
                    "q2",
                    QuestionKind::Multi,
                    &["A", "B", "C"],
                    json!(["A", "C"]),
                ),
                question("q3", QuestionKind::Text, &[], json!("seoul")),
            ],
            rooms: vec![room("r1"), room("r2")],
            proctors: vec![ProctorSpec {
                id: ProctorId::parse("p1").unwrap(),
                name: "Proctor".into(),
                login: "proctor1".into(),
                password: Plaintext("correct horse".into()),
                room_ids: vec![RoomId::parse("r1").unwrap()],
            }],
            candidates: vec![
                candidate("c1", "r1"),
                candidate("c2", "r1"),
                candidate("c3", "r2"),
            ],
        }
    }

    fn codes(plan: &PlanSpec<Plaintext>) -> Vec<(&'static str, String)> {
        match plan.validate() {
            Ok(()) => vec![],
            Err(problems) => problems
                .problems
                .into_iter()
                .map(|p| (p.code, p.field))
                .collect(),
        }
    }

    #[test]
    fn the_sample_is_valid() {
        assert_eq!(codes(&sample_plan()), vec![]);
    }

    #[test]
    fn duplicates_and_unknown_rooms_name_their_field() {
        let mut plan = sample_plan();
        plan.candidates[1].id = plan.candidates[0].id.clone();
        plan.candidates[2].room_id = RoomId::parse("nowhere").unwrap();
        assert_eq!(
            codes(&plan),
            vec![
                ("duplicate_candidate_id", "candidates[1].id".to_string()),
                ("unknown_room", "candidates[2].room_id".to_string()),
            ]
        );
    }

    #[test]
    fn negative_durations_are_rejected() {
        let mut plan = sample_plan();
        plan.duration_s = -5;
        plan.candidates[0].extra_time_s = -1;
        let found = codes(&plan);
        assert!(found.contains(&("invalid_duration", "duration_s".into())));
        assert!(found.contains(&("invalid_extra_time", "candidates[0].extra_time_s".into())));
    }

    #[test]
    fn capacity_is_enforced_once_per_room() {
        let mut plan = sample_plan();
        plan.rooms[0].capacity = 1;
        assert_eq!(
            codes(&plan),
            vec![("room_over_capacity", "candidates[1].room_id".to_string())]
        );
    }

    #[test]
    fn problems_are_capped_but_counted() {
        let mut plan = sample_plan();
        let template = plan.candidates[0].clone();
        plan.rooms[0].capacity = 10_000;
        plan.candidates = (0..200).map(|_| template.clone()).collect();
        let problems = plan.validate().unwrap_err();
        assert_eq!(problems.problems.len(), MAX_REPORTED_PROBLEMS);
        assert_eq!(problems.total, 199 * 2);
    }
}
