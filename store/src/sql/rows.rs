//! JSON columns and the conversions between rows and domain types.

use invigil_actors::domain::{CandidateRuntime, Question, QuestionKind};
use invigil_actors::error::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::corrupt;

/// Serializes a value for a JSON column. Domain types always serialize; a
/// failure would be a bug, reported rather than panicking.
pub fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|error| StoreError::Internal(format!("cannot serialize: {error}")))
}

/// Parses a JSON column.
pub fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| corrupt(what, error))
}

/// A candidate's runtime as stored: the sheet lives in `answers`.
pub fn candidate_runtime_json(runtime: &CandidateRuntime) -> Result<String, StoreError> {
    let mut stored = runtime.clone();
    stored.sheet = Default::default();
    to_json(&stored)
}

/// Parses a stored id; the store only ever holds validated ids.
pub fn id<T: std::str::FromStr>(what: &str, value: String) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|error| corrupt(what, error))
}

/// A plan's questions in import order, as [`QuestionRow`]s.
pub const QUESTIONS_SQL: &str =
    "SELECT id, kind, choices, answer, points FROM questions WHERE plan_id = $1 ORDER BY position";

/// `(id, kind, choices JSON, answer key JSON, points)`.
pub type QuestionRow = (String, String, String, String, f64);

/// A question as stored.
pub fn question(
    (question_id, kind, choices, answer, points): QuestionRow,
) -> Result<Question, StoreError> {
    Ok(Question {
        id: id("question id", question_id)?,
        kind: QuestionKind::parse(&kind).ok_or_else(|| corrupt("question kind", &kind))?,
        choices: from_json("question choices", &choices)?,
        answer: from_json("answer key", &answer)?,
        points,
    })
}
