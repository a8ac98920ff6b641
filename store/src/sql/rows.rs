//! JSON columns and the conversions between rows and domain types.

use invigil_actors::domain::CandidateRuntime;
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
