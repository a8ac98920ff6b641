//! Key names, all under one prefix. docs/redis-keys.md lists them with their
//! types, bounds and users; change both together.

use std::time::Duration;

use invigil_actors::ports::CandidateKey;

/// Builds every key the adapters use.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// Stream: a candidate's resume buffer, entry id `<seq>-0`.
    pub(crate) fn outbound(&self, key: &CandidateKey) -> String {
        format!("{}out:{}:{}", self.prefix, key.plan_id, key.candidate_id)
    }

    /// String: the candidate's live session claim.
    pub(crate) fn session(&self, key: &CandidateKey) -> String {
        format!(
            "{}session:{}:{}",
            self.prefix, key.plan_id, key.candidate_id
        )
    }

    /// String: a serialized live snapshot.
    pub(crate) fn snapshot(&self, key: &str) -> String {
        format!("{}snap:{key}", self.prefix)
    }

    /// String (integer): a rate counter; the window length is part of the
    /// name so two windows over one key never share a count.
    pub(crate) fn counter(&self, key: &str, window: Duration) -> String {
        format!("{}rate:{}:{key}", self.prefix, window.as_millis())
    }

    /// Sorted set: a sliding window of members scored by time (ms).
    pub(crate) fn window(&self, key: &str) -> String {
        format!("{}win:{key}", self.prefix)
    }

    /// Stream: a work-queue topic.
    pub(crate) fn queue(&self, topic: &str) -> String {
        format!("{}q:{topic}", self.prefix)
    }

    /// Stream: a topic's dead letters.
    pub(crate) fn dead_letters(&self, topic: &str) -> String {
        format!("{}dlq:{topic}", self.prefix)
    }
}
