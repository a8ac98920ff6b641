//! A batch on SQLite, in process: one `BEGIN IMMEDIATE` transaction of
//! multi-row statements, a statement per table.

use std::collections::HashMap;

use invigil_actors::error::StoreError;
use invigil_actors::ports::{EntryOutcome, FencedEntry};
use sqlx::{QueryBuilder, Row};

use super::rows::{
    AnswerKeys, AnswerRow, ROWS_PER_STATEMENT, TransitionRow, UPSERT_CURRENT_TAIL, chains,
    last_per_key, sort,
};
use crate::error::from_sqlx;

/// SQLite: appends to the journal (a multi-row `VALUES`; parsing is cheap in
/// process) and returns the keys that were new.
async fn sqlite_insert_journal(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &[AnswerRow<'_>],
) -> Result<AnswerKeys, StoreError> {
    let mut insert = QueryBuilder::new(
        "INSERT INTO answer_journal (plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms) ",
    );
    insert.push_values(rows, |mut row, answer| {
        row.push_bind(answer.plan_id.to_owned())
            .push_bind(answer.candidate_id.to_owned())
            .push_bind(answer.cseq)
            .push_bind(answer.question_id.to_owned())
            .push_bind(answer.value.to_owned())
            .push_bind(answer.version)
            .push_bind(answer.shard)
            .push_bind(answer.epoch)
            .push_bind(answer.at_ms);
    });
    insert.push(" ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING RETURNING plan_id, candidate_id, cseq");
    Ok(insert
        .build()
        .fetch_all(&mut **tx)
        .await
        .map_err(from_sqlx)?
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

/// SQLite: raises the current answers to these versions where they are newer.
async fn sqlite_upsert_current(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &[&AnswerRow<'_>],
) -> Result<(), StoreError> {
    let mut upsert = QueryBuilder::new(
        "INSERT INTO answers (plan_id, candidate_id, question_id, value, version, cseq, updated_at_ms) ",
    );
    upsert.push_values(rows, |mut row, answer| {
        row.push_bind(answer.plan_id.to_owned())
            .push_bind(answer.candidate_id.to_owned())
            .push_bind(answer.question_id.to_owned())
            .push_bind(answer.value.to_owned())
            .push_bind(answer.version)
            .push_bind(answer.cseq)
            .push_bind(answer.at_ms);
    });
    upsert.push(UPSERT_CURRENT_TAIL);
    upsert.build().execute(&mut **tx).await.map_err(from_sqlx)?;
    Ok(())
}

/// A batch on SQLite: one `BEGIN IMMEDIATE` transaction (the write lock
/// first, so the fences read cannot change under it), a statement per table.
pub(super) async fn commit_sqlite(
    pool: &sqlx::SqlitePool,
    batch: &[FencedEntry],
    shards: &[i64],
) -> Result<Vec<EntryOutcome>, StoreError> {
    let mut outcomes = vec![EntryOutcome::Written; batch.len()];
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(from_sqlx)?;

    let mut read_fences =
        QueryBuilder::new("SELECT shard, epoch FROM shard_lease WHERE shard IN (");
    let mut list = read_fences.separated(", ");
    for shard in shards {
        list.push_bind(*shard);
    }
    read_fences.push(")");
    let current: HashMap<i64, i64> = read_fences
        .build()
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .into_iter()
        .map(|row| (row.get::<i64, _>(0), row.get::<i64, _>(1)))
        .collect();
    let sorted = sort(batch, Some(&current), &mut outcomes)?;

    let mut fresh_answers = Vec::new();
    for chunk in sorted.answers.chunks(ROWS_PER_STATEMENT) {
        let mut inserted = sqlite_insert_journal(&mut tx, chunk).await?;
        for answer in chunk {
            let key = (
                answer.plan_id.to_owned(),
                answer.candidate_id.to_owned(),
                answer.cseq,
            );
            // `remove`: a cseq repeated within the batch is written
            // once; its later copies are repeats like any other.
            if inserted.remove(&key) {
                fresh_answers.push(answer);
            } else {
                outcomes[answer.index] = EntryOutcome::AlreadyStored;
            }
        }
    }
    let latest = last_per_key(
        {
            let mut by_version: Vec<&AnswerRow> = fresh_answers;
            by_version.sort_by_key(|answer| answer.version);
            by_version
        },
        |answer| (answer.plan_id, answer.candidate_id, answer.question_id),
    );
    for chunk in latest.chunks(ROWS_PER_STATEMENT) {
        sqlite_upsert_current(&mut tx, chunk).await?;
    }

    for (rows, table) in [(&sorted.candidates, "candidates"), (&sorted.rooms, "rooms")] {
        // Compare-and-set per row: a row moves only from the revision
        // its entries were decided on; otherwise they are conflicts.
        let chains = chains(rows, &mut outcomes);
        let mut written: Vec<&TransitionRow> = Vec::new();
        for chunk in chains.chunks(ROWS_PER_STATEMENT) {
            // VALUES columns are column1.. in both dialects.
            let mut update = QueryBuilder::new(format!(
                "UPDATE {table} SET state = v.column3, runtime = v.column4, revision = v.column6"
            ));
            if table == "candidates" {
                update.push(", updated_at_ms = v.column7");
            }
            update.push(" FROM (");
            update.push_values(chunk, |mut row, chain| {
                row.push_bind(chain.last.plan_id.clone())
                    .push_bind(chain.last.entity_id.clone())
                    .push_bind(chain.last.to_state)
                    .push_bind(chain.last.runtime.clone())
                    .push_bind(chain.first.revision)
                    .push_bind(chain.last.revision + 1)
                    .push_bind(chain.last.at_ms);
            });
            update.push(format!(
                ") AS v WHERE {table}.plan_id = v.column1 AND {table}.id = v.column2 \
                     AND {table}.revision = v.column5 RETURNING {table}.plan_id, {table}.id"
            ));
            let updated: std::collections::HashSet<(String, String)> = update
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            for chain in chunk {
                if updated.contains(&(chain.first.plan_id.clone(), chain.first.entity_id.clone())) {
                    written.extend(chain.entries.iter().copied());
                } else {
                    for entry in &chain.entries {
                        outcomes[entry.index] = EntryOutcome::Conflict;
                    }
                }
            }
        }
        for chunk in written.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::new(
                "INSERT INTO transitions (plan_id, entity, entity_id, event, to_state, detail, shard, epoch, at_ms) ",
            );
            insert.push_values(chunk, |mut row, transition| {
                row.push_bind(transition.plan_id.clone())
                    .push_bind(transition.entity)
                    .push_bind(transition.entity_id.clone())
                    .push_bind(transition.event)
                    .push_bind(transition.to_state)
                    .push_bind(transition.detail.clone())
                    .push_bind(transition.shard)
                    .push_bind(transition.epoch)
                    .push_bind(transition.at_ms);
            });
            insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
        }
    }

    let incidents = last_per_key(sorted.incidents.iter(), |(_, incident)| {
        incident.id.as_str()
    });
    for chunk in incidents.chunks(ROWS_PER_STATEMENT) {
        let mut upsert = QueryBuilder::new(
            "INSERT INTO incidents (id, plan_id, room_id, candidate_id, kind, source, severity, status, note, \
                 action, created_at_ms, resolved_at_ms, resolved_by, shard, epoch) ",
        );
        upsert.push_values(chunk, |mut row, (fenced, incident)| {
            row.push_bind(incident.id.clone())
                .push_bind(incident.plan_id.to_string())
                .push_bind(incident.room_id.to_string())
                .push_bind(incident.candidate_id.as_ref().map(ToString::to_string))
                .push_bind(incident.kind.clone())
                .push_bind(incident.source.as_str())
                .push_bind(incident.severity.as_str())
                .push_bind(incident.status.as_str())
                .push_bind(incident.note.clone())
                .push_bind(incident.action.clone())
                .push_bind(incident.created_at.as_millis())
                .push_bind(incident.resolved_at.map(|at| at.as_millis()))
                .push_bind(incident.resolved_by.as_ref().map(ToString::to_string))
                .push_bind(i64::from(fenced.fence.shard.get()))
                .push_bind(fenced.fence.epoch);
        });
        upsert.push(
                " ON CONFLICT (id) DO UPDATE SET status = excluded.status, note = excluded.note, \
                 action = excluded.action, resolved_at_ms = excluded.resolved_at_ms, \
                 resolved_by = excluded.resolved_by, shard = excluded.shard, epoch = excluded.epoch",
            );
        upsert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
    }

    for chunk in sorted.logs.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO logs (plan_id, kind, subject, room_id, message, detail, at_ms) ",
        );
        insert.push_values(chunk, |mut row, (_, log)| {
            row.push_bind(log.plan_id.to_string())
                .push_bind(log.kind.as_str())
                .push_bind(log.subject.clone())
                .push_bind(log.room_id.as_ref().map(ToString::to_string))
                .push_bind(log.message.clone())
                .push_bind(log.detail.to_string())
                .push_bind(log.at.as_millis());
        });
        insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
    }

    tx.commit().await.map_err(from_sqlx)?;
    Ok(outcomes)
}
