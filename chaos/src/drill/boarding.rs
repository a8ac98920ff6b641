//! The drill's plans and candidates: a plan imported, opened and started
//! through the admin API, and its candidates logged in and put on sockets,
//! round robin over the running nodes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::time::Instant;

use super::cluster::Cluster;
use super::traffic::{Pace, Record, Rider, Storm, ride};
use crate::reconnect::Candidate;

/// A plan for the drill.
pub struct Exam<'a> {
    pub plan_id: &'a str,
    pub title: &'a str,
    pub duration_s: u64,
    pub per_room: usize,
    pub candidates: usize,
    pub heartbeat_s: u64,
}

/// Imports, opens and starts a plan: `candidates` in rooms of `per_room`,
/// one proctor per room.
pub async fn start_exam(cluster: &Cluster, exam: &Exam<'_>) -> anyhow::Result<()> {
    let Exam {
        plan_id,
        title,
        duration_s,
        per_room,
        candidates,
        heartbeat_s,
    } = *exam;
    let rooms = candidates.div_ceil(per_room.max(1));
    let plan = json!({
        "title": title, "starts_at": "2026-12-01T09:00:00Z", "duration_s": duration_s,
        "settings": {"heartbeat_s": heartbeat_s, "late_entry_s": duration_s.min(3600)},
        "questions": (1..=10).map(|q| json!({"id": format!("q{q}"), "kind": "text"})).collect::<Vec<_>>(),
        "rooms": (1..=rooms).map(|r| json!({"id": format!("room-{r}"), "name": format!("Room {r}"), "capacity": per_room})).collect::<Vec<_>>(),
        "proctors": (1..=rooms).map(|r| json!({
            "id": format!("proctor-{r}"), "name": format!("Proctor {r}"), "login": format!("proctor-{r}"),
            "password": format!("password-{r}"), "room_ids": [format!("room-{r}")]
        })).collect::<Vec<_>>(),
        "candidates": (1..=candidates).map(|n| json!({
            "id": format!("cand-{n:04}"), "reg_no": format!("R{n:04}"), "name": format!("Candidate {n}"),
            "room_id": format!("room-{}", (n - 1) / per_room + 1), "seat": (n - 1) % per_room + 1,
            "access_code": format!("code-{n:04}")
        })).collect::<Vec<_>>(),
    });
    let base = cluster.base(0);
    let response = cluster
        .client
        .put(format!("{base}/api/v1/admin/plans/{plan_id}"))
        .header("X-Api-Key", cluster.api_key())
        .json(&plan)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "plan import: {}",
        response.text().await?
    );
    for action in ["open", "start"] {
        let response = cluster
            .client
            .post(format!("{base}/api/v1/admin/plans/{plan_id}/commands"))
            .header("X-Api-Key", cluster.api_key())
            .json(&json!({"action": action}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "plan {action}: {}",
            response.text().await?
        );
    }
    Ok(())
}

/// How candidates of a plan ride.
#[derive(Clone, Copy)]
pub struct Boarding<'a> {
    pub plan_id: &'a str,
    pub per_room: usize,
    pub pace: Pace,
    pub storm: &'a Storm,
    pub stop_at: Instant,
}

/// Logs candidates `1 ..= count` of a plan in and puts each on a socket,
/// round robin over the running nodes; every client knows every address
/// (spares too).
pub async fn board(
    cluster: &Cluster,
    boarding: &Boarding<'_>,
    count: usize,
) -> anyhow::Result<(Vec<Rider>, Vec<tokio::task::JoinHandle<()>>)> {
    let bases = cluster.bases();
    let running = cluster.running().len();
    let mut riders = Vec::new();
    let mut tasks = Vec::new();
    for n in 1..=count {
        let first_node = (n - 1) % running;
        let token = login(cluster, first_node, boarding.plan_id, n).await?;
        let rotated: Vec<String> = (0..bases.len())
            .map(|i| bases[(first_node + i) % bases.len()].clone())
            .collect();
        let record = Arc::new(Mutex::new(Record::default()));
        riders.push(Rider {
            candidate_id: format!("cand-{n:04}"),
            room: (n - 1) / boarding.per_room + 1,
            first_node,
            record: record.clone(),
        });
        tasks.push(tokio::spawn(ride(
            Candidate::new(rotated, token),
            record,
            boarding.pace,
            boarding.storm.clone(),
            boarding.stop_at,
        )));
    }
    Ok((riders, tasks))
}

/// Candidate `n`'s token, logged in on node `index`.
async fn login(cluster: &Cluster, index: usize, plan_id: &str, n: usize) -> anyhow::Result<String> {
    let body = json!({"plan_id": plan_id, "reg_no": format!("R{n:04}"), "access_code": format!("code-{n:04}")});
    for _ in 0..50 {
        let response = cluster
            .client
            .post(format!("{}/api/v1/auth/candidate", cluster.base(index)))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            return Ok(answer["token"].as_str().context("no token")?.to_string());
        }
        anyhow::ensure!(
            status.as_u16() == 503,
            "login of R{n:04}: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("login of R{n:04} kept answering 503")
}
