//! The answer sheet (답지): per question the latest version and the `cseq`
//! that wrote it. Values live in the journal; the sheet keeps only what the
//! hot path needs to version, deduplicate and report progress.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::QuestionId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAnswer {
    /// 1 for the first save of a question, +1 for each later one.
    pub version: i64,
    /// The client sequence number that wrote this version.
    pub cseq: i64,
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
    /// The same question was saved with this cseq at `version`.
    Repeat { version: i64 },
    /// The cseq wrote another question.
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
    pub fn known(&self, question_id: &QuestionId, cseq: i64) -> KnownCseq {
        match self.answers.iter().find(|(_, saved)| saved.cseq == cseq) {
            Some((saved_question, saved)) if saved_question == question_id => KnownCseq::Repeat {
                version: saved.version,
            },
            Some(_) => KnownCseq::Conflict,
            None => KnownCseq::Unknown,
        }
    }

    /// Raises the last accepted cseq (restoring from the journal, whose
    /// highest cseq may belong to a superseded version).
    pub fn raise_last_cseq(&mut self, cseq: i64) {
        self.last_cseq = self.last_cseq.max(cseq);
    }

    pub fn record(&mut self, question_id: &QuestionId, version: i64, cseq: i64) {
        let entry = self
            .answers
            .entry(question_id.clone())
            .or_insert(SavedAnswer {
                version: 0,
                cseq: 0,
            });
        if version > entry.version {
            *entry = SavedAnswer { version, cseq };
        }
        self.last_cseq = self.last_cseq.max(cseq);
    }
}
