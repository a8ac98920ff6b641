//! A batch on Postgres as one statement and one round trip: the statement
//! text ([`COMMIT_BATCH`], [`COMMIT_ANSWERS`]) and what its result says.

use std::collections::HashMap;

use invigil_actors::error::StoreError;
use invigil_actors::ports::{EntryOutcome, FencedEntry};
use sqlx::Row;

use super::rows::{
    AnswerKeys, AnswerRow, Chain, TransitionRow, UPSERT_CURRENT_TAIL, chains, last_per_key, sort,
};
use crate::error::from_sqlx;

/// A batch on Postgres, whatever it carries, as one statement: one round
/// trip and an implicit transaction, instead of a transaction of a statement
/// per table that each wait for the server to be scheduled (a proctor's
/// `warn` among the answers used to cost a batch eight round trips). Its
/// parts, as CTEs, keep the multi-statement transaction's semantics:
///
/// - `fence`: the lease rows of the batch's shards, read `FOR SHARE` (a
///   takeover waits for this commit, and a takeover that committed first is
///   seen). Every other part joins it, so entries under another epoch are not
///   written; they are reported from the fences the statement returns.
/// - answers: a cseq already in the journal is written once, and the current
///   answer only moves to a higher version (one row per key: `latest`).
/// - `chains`: compare-and-set per candidate or room row, from the revision
///   the entries were decided on; a chain's transitions are recorded only if
///   its row moved, in the batch's order.
/// - incidents are upserted, logs appended.
///
/// The arrays are bound per column; empty ones make empty parts. A batch of
/// nothing but answers (the hot path) is sent as [`COMMIT_ANSWERS`], the
/// first parts alone (see [`statement`] for the two forms of each): Postgres plans, locks and opens every table a
/// statement writes to on each execution, even the ones it writes no row to.
static COMMIT_BATCH: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(|| [false, true].map(|fresh| statement(fresh, true)));

/// A batch of nothing but answers: [`COMMIT_BATCH`]'s fence and answer parts.
static COMMIT_ANSWERS: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(|| [false, true].map(|fresh| statement(fresh, false)));

/// The statement for a batch; each comes in two forms, `[careful, fresh]`.
///
/// The careful form appends answers `ON CONFLICT DO NOTHING` and returns
/// the ones it appended: a cseq already in the journal is not written again
/// and is reported `AlreadyStored`. The fresh form is a plain `INSERT`,
/// which spares Postgres a second descent of the journal's primary key per
/// answer and the answers' trip back: the room actor only sends a cseq above
/// the highest it knows of, so a cseq is nearly always new. When one is not,
/// the fresh form fails on the primary key as a whole, writing nothing, and
/// the batch is sent again in the careful form.
fn statement(fresh: bool, everything: bool) -> String {
    let (append_tail, latest_from) = if fresh {
        (
            "",
            "(SELECT a.* FROM incoming a JOIN fence f ON f.shard = a.shard AND f.epoch = a.epoch) a",
        )
    } else {
        (
            " ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING \
             RETURNING plan_id, candidate_id, cseq, question_id, value, version, at_ms",
            "appended",
        )
    };
    // Parameters $1 (the shards) to $10 (the answers' columns).
    let answer_parts = format!(
        "\
WITH fence AS MATERIALIZED ( \
    SELECT shard, epoch FROM shard_lease WHERE shard = ANY($1::bigint[]) FOR SHARE \
), incoming AS ( \
    SELECT * FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], \
                         $8::bigint[], $9::bigint[], $10::bigint[]) \
        AS a(plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms) \
), appended AS ( \
    INSERT INTO answer_journal (plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms) \
    SELECT a.* FROM incoming a JOIN fence f ON f.shard = a.shard AND f.epoch = a.epoch{append_tail} \
), latest AS ( \
    SELECT DISTINCT ON (plan_id, candidate_id, question_id) \
        plan_id, candidate_id, question_id, value, version, cseq, at_ms FROM {latest_from} \
    ORDER BY plan_id, candidate_id, question_id, version DESC \
), current AS ( \
    INSERT INTO answers (plan_id, candidate_id, question_id, value, version, cseq, updated_at_ms) \
    SELECT plan_id, candidate_id, question_id, value, version, cseq, at_ms FROM latest{UPSERT_CURRENT_TAIL} \
)"
    );
    let mut statement = answer_parts;
    if everything {
        statement.push_str(", ");
        statement.push_str(OTHER_PARTS);
    }
    statement.push_str(" SELECT 0, NULL::text, NULL::text, shard, epoch FROM fence");
    if !fresh {
        statement.push_str(
            " UNION ALL SELECT 1, plan_id, candidate_id, cseq, NULL::bigint FROM appended",
        );
    }
    if everything {
        statement.push_str(
            " UNION ALL SELECT 2, NULL::text, NULL::text, chain, NULL::bigint FROM moved",
        );
    }
    statement
}

/// Parameters $11 to $55: transitions, incidents, logs.
const OTHER_PARTS: &str = "\
chains AS ( \
    SELECT c.* FROM UNNEST($11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], \
                           $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[]) \
        AS c(chain, entity, plan_id, entity_id, state, runtime, revision, next_revision, at_ms, shard, epoch) \
    JOIN fence f ON f.shard = c.shard AND f.epoch = c.epoch \
), moved_candidates AS ( \
    UPDATE candidates t SET state = c.state, runtime = c.runtime, revision = c.next_revision, \
        updated_at_ms = c.at_ms \
    FROM chains c \
    WHERE c.entity = 'candidate' AND t.plan_id = c.plan_id AND t.id = c.entity_id AND t.revision = c.revision \
    RETURNING c.chain \
), moved_rooms AS ( \
    UPDATE rooms t SET state = c.state, runtime = c.runtime, revision = c.next_revision \
    FROM chains c \
    WHERE c.entity = 'room' AND t.plan_id = c.plan_id AND t.id = c.entity_id AND t.revision = c.revision \
    RETURNING c.chain \
), moved AS ( \
    SELECT chain FROM moved_candidates UNION ALL SELECT chain FROM moved_rooms \
), recorded AS ( \
    INSERT INTO transitions (plan_id, entity, entity_id, event, to_state, detail, shard, epoch, at_ms) \
    SELECT t.plan_id, t.entity, t.entity_id, t.event, t.to_state, t.detail, t.shard, t.epoch, t.at_ms \
    FROM UNNEST($22::bigint[], $23::text[], $24::text[], $25::text[], $26::text[], $27::text[], $28::text[], \
                $29::bigint[], $30::bigint[], $31::bigint[]) WITH ORDINALITY \
        AS t(chain, plan_id, entity, entity_id, event, to_state, detail, shard, epoch, at_ms, position) \
    WHERE t.chain IN (SELECT chain FROM moved) \
    ORDER BY t.position \
), noted AS ( \
    INSERT INTO incidents (id, plan_id, room_id, candidate_id, kind, source, severity, status, note, \
                           action, created_at_ms, resolved_at_ms, resolved_by, shard, epoch) \
    SELECT i.* FROM UNNEST($32::text[], $33::text[], $34::text[], $35::text[], $36::text[], $37::text[], \
                           $38::text[], $39::text[], $40::text[], $41::text[], $42::bigint[], $43::bigint[], \
                           $44::text[], $45::bigint[], $46::bigint[]) \
        AS i(id, plan_id, room_id, candidate_id, kind, source, severity, status, note, \
             action, created_at_ms, resolved_at_ms, resolved_by, shard, epoch) \
    JOIN fence f ON f.shard = i.shard AND f.epoch = i.epoch \
    ON CONFLICT (id) DO UPDATE SET status = excluded.status, note = excluded.note, \
        action = excluded.action, resolved_at_ms = excluded.resolved_at_ms, \
        resolved_by = excluded.resolved_by, shard = excluded.shard, epoch = excluded.epoch \
), logged AS ( \
    INSERT INTO logs (plan_id, kind, subject, room_id, message, detail, at_ms) \
    SELECT l.plan_id, l.kind, l.subject, l.room_id, l.message, l.detail, l.at_ms \
    FROM UNNEST($47::text[], $48::text[], $49::text[], $50::text[], $51::text[], $52::text[], $53::bigint[], \
                $54::bigint[], $55::bigint[]) WITH ORDINALITY \
        AS l(plan_id, kind, subject, room_id, message, detail, at_ms, shard, epoch, position) \
    JOIN fence f ON f.shard = l.shard AND f.epoch = l.epoch \
    ORDER BY l.position \
)";

/// Whether the fresh form of a statement failed on a cseq already in the
/// journal.
fn repeats_a_cseq(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database)
        if database.code().as_deref() == Some("23505")
            && database.constraint() == Some("answer_journal_pkey"))
}

/// One column of `rows`: the array a statement's parameter binds.
fn column<'r, T, U>(rows: &'r [T], field: impl Fn(&'r T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

/// What a row of [`COMMIT_BATCH`]'s result is.
const RETURNED_FENCE: i32 = 0;
const RETURNED_APPENDED: i32 = 1;
const RETURNED_MOVED: i32 = 2;

pub(super) async fn commit_postgres(
    pool: &sqlx::PgPool,
    batch: &[FencedEntry],
    shards: &[i64],
) -> Result<Vec<EntryOutcome>, StoreError> {
    let mut outcomes = vec![EntryOutcome::Written; batch.len()];
    // Every entry is sent; the statement checks the fences.
    let sorted = sort(batch, None, &mut outcomes)?;

    // A cseq repeated within the batch is sent once (its first copy): which
    // copy an INSERT keeps is up to the plan, which copy is written is not.
    // Its later copies are repeats like any other.
    let mut seen = std::collections::HashSet::with_capacity(sorted.answers.len());
    let mut answers: Vec<&AnswerRow<'_>> = Vec::with_capacity(sorted.answers.len());
    for row in &sorted.answers {
        if seen.insert((row.key(), row.epoch)) {
            answers.push(row);
        } else {
            outcomes[row.index] = EntryOutcome::AlreadyStored;
        }
    }

    // Chains are numbered across both tables; a transition names its chain.
    let candidate_chains = chains(&sorted.candidates, &mut outcomes);
    let room_chains = chains(&sorted.rooms, &mut outcomes);
    let all_chains: Vec<&Chain<'_>> = candidate_chains.iter().chain(&room_chains).collect();
    let transitions: Vec<(i64, &TransitionRow)> = all_chains
        .iter()
        .enumerate()
        .flat_map(|(number, chain)| {
            chain
                .entries
                .iter()
                .map(move |entry| (number as i64, *entry))
        })
        .collect();

    // An incident written twice in the batch: its last state (per epoch, so
    // that a stale copy cannot hide a current one).
    let incidents = last_per_key(sorted.incidents.iter(), |(fenced, incident)| {
        (incident.id.as_str(), fenced.fence.epoch)
    });

    let only_answers = sorted.candidates.is_empty()
        && sorted.rooms.is_empty()
        && sorted.incidents.is_empty()
        && sorted.logs.is_empty();
    let query = |statement: &'static str| {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(shards)
            // Answers.
            .bind(column(&answers, |row| row.plan_id))
            .bind(column(&answers, |row| row.candidate_id))
            .bind(column(&answers, |row| row.cseq))
            .bind(column(&answers, |row| row.question_id))
            .bind(column(&answers, |row| row.value))
            .bind(column(&answers, |row| row.version))
            .bind(column(&answers, |row| row.shard))
            .bind(column(&answers, |row| row.epoch))
            .bind(column(&answers, |row| row.at_ms));
        if !only_answers {
            let chain_numbers: Vec<i64> = (0..all_chains.len() as i64).collect();
            query = query
                // Chains: the row moves from the first entry's revision to the
                // last entry's state.
                .bind(chain_numbers)
                .bind(column(&all_chains, |chain| chain.first.entity))
                .bind(column(&all_chains, |chain| chain.first.plan_id.as_str()))
                .bind(column(&all_chains, |chain| chain.first.entity_id.as_str()))
                .bind(column(&all_chains, |chain| chain.last.to_state))
                .bind(column(&all_chains, |chain| chain.last.runtime.as_str()))
                .bind(column(&all_chains, |chain| chain.first.revision))
                .bind(column(&all_chains, |chain| chain.last.revision + 1))
                .bind(column(&all_chains, |chain| chain.last.at_ms))
                .bind(column(&all_chains, |chain| chain.first.shard))
                .bind(column(&all_chains, |chain| chain.first.epoch))
                // Transitions, in the order they are recorded.
                .bind(column(&transitions, |(chain, _)| *chain))
                .bind(column(&transitions, |(_, row)| row.plan_id.as_str()))
                .bind(column(&transitions, |(_, row)| row.entity))
                .bind(column(&transitions, |(_, row)| row.entity_id.as_str()))
                .bind(column(&transitions, |(_, row)| row.event))
                .bind(column(&transitions, |(_, row)| row.to_state))
                .bind(column(&transitions, |(_, row)| row.detail.as_str()))
                .bind(column(&transitions, |(_, row)| row.shard))
                .bind(column(&transitions, |(_, row)| row.epoch))
                .bind(column(&transitions, |(_, row)| row.at_ms))
                // Incidents.
                .bind(column(&incidents, |(_, incident)| incident.id.as_str()))
                .bind(column(&incidents, |(_, incident)| {
                    incident.plan_id.as_str()
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.room_id.as_str()
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.candidate_id.as_ref().map(|id| id.as_str())
                }))
                .bind(column(&incidents, |(_, incident)| incident.kind.as_str()))
                .bind(column(&incidents, |(_, incident)| incident.source.as_str()))
                .bind(column(&incidents, |(_, incident)| {
                    incident.severity.as_str()
                }))
                .bind(column(&incidents, |(_, incident)| incident.status.as_str()))
                .bind(column(&incidents, |(_, incident)| incident.note.as_deref()))
                .bind(column(&incidents, |(_, incident)| {
                    incident.action.as_deref()
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.created_at.as_millis()
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.resolved_at.map(|at| at.as_millis())
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.resolved_by.as_ref().map(|by| by.as_str())
                }))
                .bind(column(&incidents, |(fenced, _)| {
                    i64::from(fenced.fence.shard.get())
                }))
                .bind(column(&incidents, |(fenced, _)| fenced.fence.epoch))
                // Logs.
                .bind(column(&sorted.logs, |(_, log)| log.plan_id.as_str()))
                .bind(column(&sorted.logs, |(_, log)| log.kind.as_str()))
                .bind(column(&sorted.logs, |(_, log)| log.subject.as_deref()))
                .bind(column(&sorted.logs, |(_, log)| {
                    log.room_id.as_ref().map(|room| room.as_str())
                }))
                .bind(column(&sorted.logs, |(_, log)| log.message.as_str()))
                .bind(column(&sorted.logs, |(_, log)| log.detail.to_string()))
                .bind(column(&sorted.logs, |(_, log)| log.at.as_millis()))
                .bind(column(&sorted.logs, |(fenced, _)| {
                    i64::from(fenced.fence.shard.get())
                }))
                .bind(column(&sorted.logs, |(fenced, _)| fenced.fence.epoch));
        }
        query
    };
    let [careful, fresh] = if only_answers {
        &*COMMIT_ANSWERS
    } else {
        &*COMMIT_BATCH
    };
    let (returned, sent_fresh) = match query(fresh.as_str()).fetch_all(pool).await {
        Ok(rows) => (rows, true),
        Err(error) if repeats_a_cseq(&error) => (
            query(careful.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?,
            false,
        ),
        Err(error) => return Err(from_sqlx(error)),
    };

    let mut current: HashMap<i64, i64> = HashMap::new();
    let mut appended: AnswerKeys = Default::default();
    let mut moved: std::collections::HashSet<i64> = Default::default();
    for row in returned {
        match row.get::<i32, _>(0) {
            RETURNED_FENCE => {
                current.insert(row.get(3), row.get::<Option<i64>, _>(4).unwrap_or_default());
            }
            RETURNED_APPENDED => {
                appended.insert((row.get(1), row.get(2), row.get(3)));
            }
            RETURNED_MOVED => {
                moved.insert(row.get(3));
            }
            kind => {
                return Err(StoreError::Internal(format!(
                    "unexpected result row of kind {kind}"
                )));
            }
        }
    }
    // The fresh form appended every answer it was sent (those under a stale
    // fence are reported below); the careful form says which it appended.
    if !sent_fresh {
        for answer in &answers {
            let key = (
                answer.plan_id.to_owned(),
                answer.candidate_id.to_owned(),
                answer.cseq,
            );
            if !appended.contains(&key) {
                outcomes[answer.index] = EntryOutcome::AlreadyStored;
            }
        }
    }
    for (number, chain) in all_chains.iter().enumerate() {
        if !moved.contains(&(number as i64)) {
            for entry in &chain.entries {
                outcomes[entry.index] = EntryOutcome::Conflict;
            }
        }
    }
    // Last, so that it wins over anything decided above: an entry under a
    // stale epoch was not written.
    for (index, fenced) in batch.iter().enumerate() {
        if current.get(&i64::from(fenced.fence.shard.get())) != Some(&fenced.fence.epoch) {
            outcomes[index] = EntryOutcome::StaleFence;
        }
    }
    Ok(outcomes)
}
