//! The answer sheet (답지): per question the latest version, the `cseq`
//! that wrote it and a digest of its value. Values live in the journal; the
//! sheet keeps only what the hot path needs to version, deduplicate (a
//! repeated `cseq` must carry the same question *and* value) and report
//! progress.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::QuestionId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAnswer {
    /// 1 for the first save of a question, +1 for each later one.
    pub version: i64,
    /// The client sequence number that wrote this version.
    pub cseq: i64,
    /// [`value_digest`] of the value; 0 when unknown.
    #[serde(default)]
    pub digest: u64,
}

/// A stable 64-bit digest (FNV-1a) of an answer's stored JSON text — the
/// same in every process and after a restart, unlike `std`'s hasher.
pub fn text_digest(text: &str) -> u64 {
    let digest = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    digest.max(1)
}

/// The digest of a value as the journal stores it (compact JSON).
pub fn value_digest(value: &serde_json::Value) -> u64 {
    text_digest(&value.to_string())
}

/// An answer's value, serialised once where it enters: parsed (to check it
/// against its question) and as the journal stores it, its compact JSON
/// with that text's digest (repeats of a `cseq` are compared by it).
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerValue {
    value: serde_json::Value,
    json: String,
    digest: u64,
}

impl AnswerValue {
    pub fn new(value: serde_json::Value) -> Self {
        let json = value.to_string();
        Self {
            digest: text_digest(&json),
            value,
            json,
        }
    }

    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }

    /// The compact JSON the journal stores.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// [`value_digest`] of the value, without serialising it again.
    pub fn digest(&self) -> u64 {
        self.digest
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerSheet {
    answers: BTreeMap<QuestionId, SavedAnswer>,
    /// The highest accepted `cseq`; 0 before the first answer.
    last_cseq: i64,
}

/// What the sheet already knows about a `cseq` at or below the last one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KnownCseq {
    /// The same question and value were saved with this cseq at `version`.
    Repeat { version: i64 },
    /// The cseq wrote another question or another value.
    Conflict,
    /// Superseded or never seen: only the journal can tell.
    Unknown,
}

impl AnswerSheet {
    pub fn last_cseq(&self) -> i64 {
        self.last_cseq
    }

    pub fn answered(&self) -> impl Iterator<Item = (&QuestionId, &SavedAnswer)> {
        self.answers.iter()
    }

    pub fn answered_count(&self) -> usize {
        self.answers.len()
    }

    pub fn get(&self, question_id: &QuestionId) -> Option<SavedAnswer> {
        self.answers.get(question_id).copied()
    }

    /// Returns the version the next save of `question_id` gets.
    pub fn next_version(&self, question_id: &QuestionId) -> i64 {
        self.answers
            .get(question_id)
            .map_or(1, |saved| saved.version + 1)
    }

    /// Looks up a `cseq` at or below [`Self::last_cseq`] among the latest saves.
    pub fn known(&self, question_id: &QuestionId, cseq: i64, digest: u64) -> KnownCseq {
        match self.answers.iter().find(|(_, saved)| saved.cseq == cseq) {
            Some((saved_question, saved))
                if saved_question == question_id && same_value(saved.digest, digest) =>
            {
                KnownCseq::Repeat {
                    version: saved.version,
                }
            }
            Some(_) => KnownCseq::Conflict,
            None => KnownCseq::Unknown,
        }
    }

    /// Raises the last accepted cseq (restoring from the journal, whose
    /// highest cseq may belong to a superseded version).
    pub fn raise_last_cseq(&mut self, cseq: i64) {
        self.last_cseq = self.last_cseq.max(cseq);
    }

    pub fn record(&mut self, question_id: &QuestionId, version: i64, cseq: i64, digest: u64) {
        let entry = self
            .answers
            .entry(question_id.clone())
            .or_insert(SavedAnswer {
                version: 0,
                cseq: 0,
                digest: 0,
            });
        // The same version again (restoring from the store over a sheet
        // read from an older runtime) fills in what the store knows.
        if version > entry.version || (version == entry.version && cseq == entry.cseq) {
            *entry = SavedAnswer {
                version,
                cseq,
                digest,
            };
        }
        self.last_cseq = self.last_cseq.max(cseq);
    }
}

/// Whether two digests name the same value; 0 is unknown (rows written
/// before digests existed) and matches anything.
fn same_value(saved: u64, sent: u64) -> bool {
    saved == 0 || sent == 0 || saved == sent
}
