//! Identifiers chosen by the admin server.
//!
//! Every id on the wire matches `[A-Za-z0-9._-]{1,64}` (docs/wire-contract.md). Each kind
//! of id is its own type so a room id cannot be passed where a candidate id is
//! expected; all of them validate on construction and on deserialization.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest id the admin server may choose.
pub const MAX_ID_LEN: usize = 64;

/// Returns why `value` is not a valid id, or `None` when it is one.
pub fn id_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return Some("must not be empty");
    }
    if value.len() > MAX_ID_LEN {
        return Some("must be at most 64 characters");
    }
    if !value
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return Some("may only contain A-Z, a-z, 0-9, '.', '_' and '-'");
    }
    None
}

/// The prefix of the serde error message produced for an invalid id. The API
/// layer recognises it to answer with the stable code `invalid_id`.
pub const INVALID_ID_MESSAGE_PREFIX: &str = "invalid id";

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as an id.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                match id_problem(&value) {
                    None => Ok(Self(value)),
                    Some(reason) => Err(InvalidId { value: truncate_for_message(&value), reason }),
                }
            }

            /// Wraps a value that was validated before, e.g. read back from the
            /// store, which only ever holds validated ids.
            pub fn from_trusted(value: String) -> Self {
                debug_assert!(id_problem(&value).is_none(), "untrusted id {value:?}");
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::parse(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// A plan (시험 계획).
    PlanId
);
define_id!(
    /// A room (시험실), unique within its plan.
    RoomId
);
define_id!(
    /// A candidate (수험자), unique within its plan.
    CandidateId
);
define_id!(
    /// A proctor (감독관), unique within its plan.
    ProctorId
);
define_id!(
    /// A question, unique within its plan.
    QuestionId
);
define_id!(
    /// A stored file (an exam material such as a question image). Unlike the
    /// others it is chosen by invigil at upload (a UUID v7), in the same
    /// alphabet so it travels through the same checks.
    FileId
);

/// A value that is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {value:?}: {reason}")]
pub struct InvalidId {
    pub value: String,
    pub reason: &'static str,
}

fn truncate_for_message(value: &str) -> String {
    value.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for good in ["a", "A-9", "plan_2026.06", &"x".repeat(64)] {
            assert!(PlanId::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", " ", "a b", "ü", "a/b", "../etc", &"x".repeat(65), "a\n"] {
            assert!(RoomId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deserialization_validates() {
        let error = serde_json::from_str::<CandidateId>("\"no spaces\"").unwrap_err();
        assert!(
            error.to_string().starts_with(INVALID_ID_MESSAGE_PREFIX),
            "{error}"
        );
        let id: CandidateId = serde_json::from_str("\"cand-1\"").unwrap();
        assert_eq!(id.as_str(), "cand-1");
    }

    proptest! {
        #[test]
        fn parse_agrees_with_the_pattern(value in "\\PC{0,70}") {
            let matches_pattern = !value.is_empty()
                && value.len() <= 64
                && value.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            prop_assert_eq!(QuestionId::parse(value.clone()).is_ok(), matches_pattern);
        }
    }
}
