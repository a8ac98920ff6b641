//! The closing plan: a second, small plan started just before the fault
//! whose time runs out a couple of seconds into it, so the exam's own
//! clock has to do its work — submit every sheet at time-up — while rooms
//! move, stores restart or sockets storm. Its rooms hash to shards of
//! their own, so some are hosted by the victim.
//!
//! Checked from Postgres, not the nodes' word: every candidate of the plan
//! submitted with reason `time_up`, no earlier than its deadline and at
//! most the budget after it; no answer accepted after the deadline; and
//! every candidate told (a `state {event: time_up}` frame, or a view saying
//! so after a reconnect).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::traffic::Rider;

/// The closing plan's id, beside the drill's main plan `main`.
pub fn plan_id(main: &str) -> String {
    format!("{main}-end")
}

/// Candidates per room of the closing plan.
pub const PER_ROOM: usize = 2;

/// Rooms of the closing plan: two per node (spares too), so every node is
/// likely to host some.
pub fn rooms(nodes: usize) -> usize {
    (nodes * 2).max(4)
}

/// What the check found.
#[derive(Debug, Default, Serialize)]
pub struct TimeUp {
    pub candidates: usize,
    /// In rooms the victim hosted when the fault struck.
    pub in_victims_rooms: usize,
    /// Submitted at time-up (reason `time_up`) within the budget.
    pub on_time: usize,
    /// Told by the server that their time was up.
    pub told: usize,
    /// The latest submission after its deadline, ms.
    pub latest_ms: i64,
    /// The plan's deadline (unix ms), and seconds from the fault to it.
    pub deadline_ms: i64,
    pub deadline_after_fault_s: f64,
    pub violations: Vec<String>,
}

impl TimeUp {
    /// Seconds from the fault (unix ms) to the deadline.
    pub fn deadline_after_fault_s_from(&self, fault_at_ms: i64) -> f64 {
        (self.deadline_ms - fault_at_ms) as f64 / 1000.0
    }
}

/// The deadline every candidate of the plan shares: its start plus its
/// duration (the closing plan is never paused or extended).
fn deadline_ms(plan_runtime: &Value, duration_s: i64) -> anyhow::Result<i64> {
    let started = plan_runtime["started_at"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("the closing plan never started: {plan_runtime}"))?;
    anyhow::ensure!(
        plan_runtime["extension_s"].as_i64().unwrap_or(0) == 0,
        "the closing plan was extended: {plan_runtime}"
    );
    Ok(started + duration_s * 1000)
}

/// One candidate's row: (id, state, runtime).
pub struct Sheet {
    pub id: String,
    pub state: String,
    pub runtime: Value,
}

/// Judges the rows read from the store and what the riders were told.
pub fn judge(
    deadline_ms: i64,
    sheets: &[Sheet],
    late_answers: &[(String, i64, i64)],
    told: &HashMap<String, bool>,
    budget: Duration,
) -> TimeUp {
    let mut found = TimeUp {
        candidates: sheets.len(),
        deadline_ms,
        ..TimeUp::default()
    };
    let budget_ms = i64::try_from(budget.as_millis()).unwrap_or(i64::MAX);
    for sheet in sheets {
        let reason = sheet.runtime["submit_reason"].as_str().unwrap_or("none");
        let at = sheet.runtime["submitted_at"].as_i64();
        match at {
            Some(at) if sheet.state == "submitted" && reason == "time_up" => {
                let late = at - deadline_ms;
                found.latest_ms = found.latest_ms.max(late);
                if late < 0 {
                    found.violations.push(format!(
                        "{} submitted at time-up {} ms before its deadline",
                        sheet.id, -late
                    ));
                } else if late > budget_ms {
                    found.violations.push(format!(
                        "{} submitted at time-up {late} ms after its deadline (budget {budget_ms} ms)",
                        sheet.id
                    ));
                } else {
                    found.on_time += 1;
                }
            }
            _ => found.violations.push(format!(
                "{} not submitted at time-up: state {}, reason {reason}",
                sheet.id, sheet.state
            )),
        }
        if told.get(&sheet.id).copied().unwrap_or(false) {
            found.told += 1;
        } else {
            found
                .violations
                .push(format!("{} was never told its time was up", sheet.id));
        }
    }
    for (candidate, cseq, at) in late_answers {
        found.violations.push(format!(
            "{candidate} cseq {cseq} accepted {} ms after the deadline",
            at - deadline_ms
        ));
    }
    found
}

/// Reads the closing plan from the store and judges it.
pub async fn check(
    pool: &sqlx::PgPool,
    plan_id: &str,
    riders: &[Rider],
    duration_s: i64,
    budget: Duration,
) -> anyhow::Result<TimeUp> {
    let plan: String = sqlx::query_scalar("SELECT runtime FROM plans WHERE id = $1")
        .bind(plan_id)
        .fetch_one(pool)
        .await?;
    let deadline = deadline_ms(&serde_json::from_str(&plan)?, duration_s)?;
    let sheets: Vec<Sheet> =
        sqlx::query("SELECT id, state, runtime FROM candidates WHERE plan_id = $1 ORDER BY id")
            .bind(plan_id)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|row| Sheet {
                id: row.get(0),
                state: row.get(1),
                runtime: serde_json::from_str(row.get::<&str, _>(2)).unwrap_or_default(),
            })
            .collect();
    let late: Vec<(String, i64, i64)> = sqlx::query(
        "SELECT candidate_id, cseq, at_ms FROM answer_journal WHERE plan_id = $1 AND at_ms > $2",
    )
    .bind(plan_id)
    .bind(deadline)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect();
    let told: HashMap<String, bool> = riders
        .iter()
        .map(|rider| {
            let record = rider.record.lock().unwrap_or_else(|p| p.into_inner());
            (rider.candidate_id.clone(), record.told_time_up.is_some())
        })
        .collect();
    Ok(judge(deadline, &sheets, &late, &told, budget))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sheet(id: &str, state: &str, reason: &str, at: i64) -> Sheet {
        Sheet {
            id: id.into(),
            state: state.into(),
            runtime: json!({"submit_reason": reason, "submitted_at": at}),
        }
    }

    /// The check can fail: a sheet left open, one submitted early, one far
    /// too late, an answer accepted after the deadline and a candidate
    /// never told are each named; a clean plan passes.
    #[test]
    fn each_planted_time_up_violation_is_caught() {
        let budget = Duration::from_secs(5);
        let told = HashMap::from([("a".to_string(), true), ("b".to_string(), true)]);
        let clean = [
            sheet("a", "submitted", "time_up", 10_300),
            sheet("b", "submitted", "time_up", 10_000),
        ];
        let found = judge(10_000, &clean, &[], &told, budget);
        assert!(found.violations.is_empty(), "{found:?}");
        assert_eq!((found.on_time, found.told, found.latest_ms), (2, 2, 300));

        let told = HashMap::from([("a".to_string(), true), ("c".to_string(), false)]);
        let planted = [
            sheet("a", "testing", "none", 0),
            sheet("b", "submitted", "time_up", 9_000),
            sheet("c", "submitted", "time_up", 16_000),
        ];
        let late = [("a".to_string(), 7, 10_500)];
        let found = judge(10_000, &planted, &late, &told, budget);
        assert_eq!(found.on_time, 0, "{found:?}");
        // a: not submitted; b: early, never told; c: too late, never told;
        // a's answer after the deadline.
        assert_eq!(found.violations.len(), 6, "{:#?}", found.violations);
    }
}
