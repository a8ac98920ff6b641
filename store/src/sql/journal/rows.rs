//! A batch sorted into rows per table, what both backends' paths start from:
//! answer and transition rows, the chains of revisions a candidate or room
//! row moves along, and the statement parts both paths share.

use std::collections::HashMap;

use invigil_actors::error::StoreError;
use invigil_actors::ports::{EntryOutcome, FencedEntry, JournalEntry};

use crate::sql::rows::{candidate_runtime_json, to_json};

/// Rows per multi-row statement (answer_journal has 9 columns).
pub(super) const ROWS_PER_STATEMENT: usize = 2_000;

pub(super) struct AnswerRow<'a> {
    pub(super) index: usize,
    pub(super) plan_id: &'a str,
    pub(super) candidate_id: &'a str,
    pub(super) question_id: &'a str,
    /// The compact JSON, serialised once where the answer entered.
    pub(super) value: &'a str,
    pub(super) cseq: i64,
    pub(super) version: i64,
    pub(super) shard: i64,
    pub(super) epoch: i64,
    pub(super) at_ms: i64,
}

impl<'a> AnswerRow<'a> {
    /// The journal row of an answer entry (`None` for other entries).
    fn of(index: usize, fenced: &'a FencedEntry) -> Option<Self> {
        let JournalEntry::Answer {
            plan_id,
            candidate_id,
            question_id,
            value,
            cseq,
            version,
            at,
        } = &fenced.entry
        else {
            return None;
        };
        Some(Self {
            index,
            plan_id: plan_id.as_str(),
            candidate_id: candidate_id.as_str(),
            question_id: question_id.as_str(),
            value: value.json(),
            cseq: *cseq,
            version: *version,
            shard: i64::from(fenced.fence.shard.get()),
            epoch: fenced.fence.epoch,
            at_ms: at.as_millis(),
        })
    }

    /// What identifies the row in the journal.
    pub(super) fn key(&self) -> (&'a str, &'a str, i64) {
        (self.plan_id, self.candidate_id, self.cseq)
    }
}

pub(super) struct TransitionRow {
    pub(super) index: usize,
    /// The row revision the entry was decided on.
    pub(super) revision: i64,
    pub(super) plan_id: String,
    pub(super) entity: &'static str,
    pub(super) entity_id: String,
    pub(super) event: &'static str,
    pub(super) to_state: &'static str,
    pub(super) detail: String,
    pub(super) shard: i64,
    pub(super) epoch: i64,
    pub(super) at_ms: i64,
    pub(super) runtime: String,
}

/// The entries of a batch sorted by table, with their positions in the batch.
#[derive(Default)]
pub(super) struct Sorted<'a> {
    pub(super) answers: Vec<AnswerRow<'a>>,
    pub(super) candidates: Vec<TransitionRow>,
    pub(super) rooms: Vec<TransitionRow>,
    pub(super) incidents: Vec<(&'a FencedEntry, &'a invigil_actors::domain::Incident)>,
    pub(super) logs: Vec<(&'a FencedEntry, &'a invigil_actors::ports::LogEntry)>,
}

/// Sorts a batch's entries by table. With `current` (the fences read), an
/// entry under a stale epoch is reported and left out; without, every entry
/// is kept and the statement that writes them checks the fences itself.
pub(super) fn sort<'a>(
    batch: &'a [FencedEntry],
    current: Option<&HashMap<i64, i64>>,
    outcomes: &mut [EntryOutcome],
) -> Result<Sorted<'a>, StoreError> {
    let mut sorted = Sorted::default();
    for (index, fenced) in batch.iter().enumerate() {
        let shard = i64::from(fenced.fence.shard.get());
        if let Some(current) = current
            && current.get(&shard) != Some(&fenced.fence.epoch)
        {
            outcomes[index] = EntryOutcome::StaleFence;
            continue;
        }
        let epoch = fenced.fence.epoch;
        match &fenced.entry {
            JournalEntry::Answer { .. } => sorted.answers.extend(AnswerRow::of(index, fenced)),
            JournalEntry::Candidate {
                plan_id,
                candidate_id,
                revision,
                event,
                runtime,
            } => {
                sorted.candidates.push(TransitionRow {
                    index,
                    revision: *revision,
                    plan_id: plan_id.to_string(),
                    entity: "candidate",
                    entity_id: candidate_id.to_string(),
                    event: event.name(),
                    to_state: runtime.state.as_str(),
                    detail: to_json(event)?,
                    shard,
                    epoch,
                    at_ms: event.at().as_millis(),
                    runtime: candidate_runtime_json(runtime)?,
                });
            }
            JournalEntry::Room {
                plan_id,
                room_id,
                revision,
                event,
                runtime,
            } => {
                sorted.rooms.push(TransitionRow {
                    index,
                    revision: *revision,
                    plan_id: plan_id.to_string(),
                    entity: "room",
                    entity_id: room_id.to_string(),
                    event: event.name(),
                    to_state: runtime.state.as_str(),
                    detail: to_json(event)?,
                    shard,
                    epoch,
                    at_ms: event.at().as_millis(),
                    runtime: to_json(runtime)?,
                });
            }
            JournalEntry::Incident(incident) => sorted.incidents.push((fenced, incident)),
            JournalEntry::Log(log) => sorted.logs.push((fenced, log)),
        }
    }
    Ok(sorted)
}

/// Keeps the last row per key, in first-seen order, so one multi-row
/// statement never touches a row twice (Postgres refuses that in upserts).
pub(super) fn last_per_key<T, K: std::hash::Hash + Eq>(
    rows: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut positions: HashMap<K, usize> = HashMap::new();
    let mut kept: Vec<T> = Vec::new();
    for row in rows {
        match positions.get(&key(&row)) {
            Some(&position) => kept[position] = row,
            None => {
                positions.insert(key(&row), kept.len());
                kept.push(row);
            }
        }
    }
    kept
}

/// The chain of entries for one row: consecutive revisions from `first`.
/// Entries that do not continue the chain were decided on a stale view.
pub(super) struct Chain<'r> {
    pub(super) first: &'r TransitionRow,
    pub(super) last: &'r TransitionRow,
    pub(super) entries: Vec<&'r TransitionRow>,
}

/// Groups a table's entries by row and checks that each row's entries
/// continue one another (revision r, r+1, …); breaks are conflicts. Entries
/// of one row under two epochs (a takeover between them) make two chains, of
/// which the fence lets at most one through.
pub(super) fn chains<'r>(
    rows: &'r [TransitionRow],
    outcomes: &mut [EntryOutcome],
) -> Vec<Chain<'r>> {
    let mut by_row: HashMap<(&str, &str, i64), usize> = HashMap::new();
    let mut chains: Vec<Chain<'r>> = Vec::new();
    for row in rows {
        match by_row.get(&(row.plan_id.as_str(), row.entity_id.as_str(), row.epoch)) {
            Some(&position) => {
                let chain = &mut chains[position];
                if row.revision == chain.last.revision + 1 {
                    chain.last = row;
                    chain.entries.push(row);
                } else {
                    outcomes[row.index] = EntryOutcome::Conflict;
                }
            }
            None => {
                by_row.insert(
                    (row.plan_id.as_str(), row.entity_id.as_str(), row.epoch),
                    chains.len(),
                );
                chains.push(Chain {
                    first: row,
                    last: row,
                    entries: vec![row],
                });
            }
        }
    }
    chains
}

/// The keys of answer rows: (plan, candidate, cseq).
pub(super) type AnswerKeys = std::collections::HashSet<(String, String, i64)>;

pub(super) const UPSERT_CURRENT_TAIL: &str = " ON CONFLICT (plan_id, candidate_id, question_id) DO UPDATE SET value = excluded.value, \
     version = excluded.version, cseq = excluded.cseq, updated_at_ms = excluded.updated_at_ms \
     WHERE answers.version < excluded.version";
