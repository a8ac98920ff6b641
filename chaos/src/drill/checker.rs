//! The drill's checker: what the clients were told (their acks) against
//! what the journal holds, read from Postgres directly, not from the nodes'
//! own counters. It knows nothing about how invigil works inside beyond the
//! journal's columns, so a bug in the node cannot hide in it.
//!
//! Violations:
//! - **lost**: an acknowledged answer (candidate, cseq) missing from the
//!   journal, or there under another version than the ack said;
//! - **twice**: one version of one candidate's question written twice (two
//!   rows with the same (candidate, question, version): two writers);
//! - **stale epoch**: along one candidate's question, in version order, an
//!   epoch lower than an earlier one (a fenced-off owner wrote after its
//!   successor), or an epoch above the shard's current one.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::Row;

/// An answer a client saw acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Acked {
    pub candidate: String,
    pub cseq: i64,
    pub version: i64,
}

/// A row of `answer_journal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalRow {
    pub candidate: String,
    pub cseq: i64,
    pub question: String,
    pub version: i64,
    pub shard: i64,
    pub epoch: i64,
}

/// What the checker found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Findings {
    /// Acknowledged answers checked.
    pub acked_checked: usize,
    /// Journal rows read.
    pub journal_rows: usize,
    pub lost: Vec<String>,
    pub twice: Vec<String>,
    pub stale_epochs: Vec<String>,
}

impl Findings {
    pub fn violations(&self) -> usize {
        self.lost.len() + self.twice.len() + self.stale_epochs.len()
    }

    pub fn passed(&self) -> bool {
        self.violations() == 0
    }
}

/// Checks `acked` against `journal`; `shard_epochs` is each shard's epoch
/// now (`shard_lease`).
pub fn check(
    acked: &[Acked],
    journal: &[JournalRow],
    shard_epochs: &HashMap<i64, i64>,
) -> Findings {
    let mut findings = Findings {
        acked_checked: acked.len(),
        journal_rows: journal.len(),
        ..Findings::default()
    };
    let by_cseq: HashMap<(&str, i64), &JournalRow> = journal
        .iter()
        .map(|row| ((row.candidate.as_str(), row.cseq), row))
        .collect();
    for ack in acked {
        match by_cseq.get(&(ack.candidate.as_str(), ack.cseq)) {
            Some(row) if row.version == ack.version => {}
            Some(row) => findings.lost.push(format!(
                "{} cseq {}: acked as version {}, journal has version {}",
                ack.candidate, ack.cseq, ack.version, row.version
            )),
            None => findings.lost.push(format!(
                "{} cseq {}: acked as version {}, not in the journal",
                ack.candidate, ack.cseq, ack.version
            )),
        }
    }
    let mut versions: BTreeMap<(&str, &str), Vec<&JournalRow>> = BTreeMap::new();
    for row in journal {
        versions
            .entry((row.candidate.as_str(), row.question.as_str()))
            .or_default()
            .push(row);
        if let Some(current) = shard_epochs.get(&row.shard)
            && row.epoch > *current
        {
            findings.stale_epochs.push(format!(
                "{} cseq {}: epoch {} above shard {}'s current {current}",
                row.candidate, row.cseq, row.epoch, row.shard
            ));
        }
    }
    for ((candidate, question), mut rows) in versions {
        rows.sort_by_key(|row| (row.version, row.cseq));
        for pair in rows.windows(2) {
            let (earlier, later) = (pair[0], pair[1]);
            if earlier.version == later.version {
                findings.twice.push(format!(
                    "{candidate} {question}: version {} written by cseq {} and cseq {}",
                    later.version, earlier.cseq, later.cseq
                ));
            }
            if later.epoch < earlier.epoch {
                findings.stale_epochs.push(format!(
                    "{candidate} {question}: version {} under epoch {} after version {} under epoch {}",
                    later.version, later.epoch, earlier.version, earlier.epoch
                ));
            }
        }
    }
    findings
}

/// Reads the plan's journal and the shards' epochs from Postgres.
pub async fn read_journal(
    pool: &sqlx::PgPool,
    plan_id: &str,
) -> anyhow::Result<(Vec<JournalRow>, HashMap<i64, i64>)> {
    let rows = sqlx::query(
        "SELECT candidate_id, cseq, question_id, version, shard, epoch \
         FROM answer_journal WHERE plan_id = $1",
    )
    .bind(plan_id)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| JournalRow {
        candidate: row.get(0),
        cseq: row.get(1),
        question: row.get(2),
        version: row.get(3),
        shard: row.get(4),
        epoch: row.get(5),
    })
    .collect();
    Ok((rows, read_epochs(pool).await?))
}

/// Each shard's lease epoch (it grows by one whenever the shard changes
/// hands).
pub async fn read_epochs(pool: &sqlx::PgPool) -> anyhow::Result<HashMap<i64, i64>> {
    Ok(sqlx::query("SELECT shard, epoch FROM shard_lease")
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|row| (row.get::<i64, _>(0), row.get::<i64, _>(1)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(candidate: &str, cseq: i64, question: &str, version: i64, epoch: i64) -> JournalRow {
        JournalRow {
            candidate: candidate.into(),
            cseq,
            question: question.into(),
            version,
            shard: 7,
            epoch,
        }
    }

    fn ack(candidate: &str, cseq: i64, version: i64) -> Acked {
        Acked {
            candidate: candidate.into(),
            cseq,
            version,
        }
    }

    fn epochs() -> HashMap<i64, i64> {
        HashMap::from([(7, 3)])
    }

    #[test]
    fn a_clean_journal_passes() {
        let journal = vec![row("c1", 1, "q1", 1, 2), row("c1", 2, "q1", 2, 3)];
        let findings = check(&[ack("c1", 1, 1), ack("c1", 2, 2)], &journal, &epochs());
        assert!(findings.passed(), "{findings:?}");
    }

    /// The checker must be able to fail: a dropped acknowledged answer, a
    /// version under the wrong number, a version written twice and a
    /// stale-epoch row are each caught.
    #[test]
    fn a_planted_violation_of_each_kind_fails_the_drill() {
        let journal = vec![
            row("c1", 1, "q1", 1, 2),
            // cseq 2 was acked but is missing (dropped).
            row("c1", 3, "q1", 2, 3),
            // A fenced-off owner (epoch 2) wrote after its successor (3).
            row("c1", 4, "q1", 3, 2),
            // Two writers gave version 1 of q2 away twice.
            row("c2", 1, "q2", 1, 3),
            row("c2", 2, "q2", 1, 3),
        ];
        let acked = [
            ack("c1", 1, 1),
            ack("c1", 2, 2),
            ack("c1", 3, 9),
            ack("c2", 1, 1),
        ];
        let findings = check(&acked, &journal, &epochs());
        assert!(!findings.passed());
        assert_eq!(findings.lost.len(), 2, "{findings:?}");
        assert_eq!(findings.twice.len(), 1, "{findings:?}");
        assert_eq!(findings.stale_epochs.len(), 1, "{findings:?}");
        // An epoch the shard never reached is caught too.
        let future = vec![row("c3", 1, "q1", 1, 4)];
        assert_eq!(check(&[], &future, &epochs()).stale_epochs.len(), 1);
    }
}
