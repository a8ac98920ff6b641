//! Timed plan imports through the API, and the baseline they are compared
//! with: the same rows written one INSERT at a time in one transaction.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use sqlx::Connection;

/// PUTs `plan` as `plan_id` and returns the wall time and the outcome.
pub async fn timed_import(
    base: &str,
    api_key: &str,
    plan_id: &str,
    plan: &Value,
) -> anyhow::Result<(Duration, String)> {
    let client = crate::target::client(1)?;
    let body = serde_json::to_vec(plan)?;
    let started = Instant::now();
    let response = client
        .put(format!("{base}/api/v1/admin/plans/{plan_id}"))
        .header("X-Api-Key", api_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    let elapsed = started.elapsed();
    if !status.is_success() {
        bail!("import failed with {status}: {answer}");
    }
    Ok((
        elapsed,
        answer["outcome"].as_str().unwrap_or("?").to_string(),
    ))
}

/// One INSERT per row; expanded per backend.
macro_rules! naive_rows {
    ($tx:ident, $plan_id:expr, $plan:expr) => {{
        let plan_id: &str = $plan_id;
        let plan: &Value = $plan;
        let text = |value: &Value| value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
        sqlx::query(
            "INSERT INTO plans (id, title, starts_at_ms, duration_s, settings, state, runtime, revision, import_digest, \
             created_at_ms, updated_at_ms) VALUES ($1, $2, 0, $3, '{}', 'scheduled', '{}', 1, 'naive', 0, 0)",
        )
        .bind(plan_id)
        .bind(text(&plan["title"]))
        .bind(plan["duration_s"].as_i64().unwrap_or(0))
        .execute(&mut *$tx)
        .await
        .context("plan row")?;
        for (position, question) in plan["questions"].as_array().into_iter().flatten().enumerate() {
            sqlx::query("INSERT INTO questions (plan_id, id, position, kind, choices, answer, points) VALUES ($1, $2, $3, $4, $5, $6, 1.0)")
                .bind(plan_id)
                .bind(text(&question["id"]))
                .bind(position as i64)
                .bind(text(&question["kind"]))
                .bind(question["choices"].to_string())
                .bind(question["answer"].to_string())
                .execute(&mut *$tx)
                .await?;
        }
        for (position, room) in plan["rooms"].as_array().into_iter().flatten().enumerate() {
            sqlx::query("INSERT INTO rooms (plan_id, id, position, name, capacity, state, runtime) VALUES ($1, $2, $3, $4, $5, 'waiting', '{}')")
                .bind(plan_id)
                .bind(text(&room["id"]))
                .bind(position as i64)
                .bind(text(&room["name"]))
                .bind(room["capacity"].as_i64().unwrap_or(0))
                .execute(&mut *$tx)
                .await?;
        }
        for (position, proctor) in plan["proctors"].as_array().into_iter().flatten().enumerate() {
            sqlx::query("INSERT INTO proctors (plan_id, id, position, name, login, password_hash) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(plan_id)
                .bind(text(&proctor["id"]))
                .bind(position as i64)
                .bind(text(&proctor["name"]))
                .bind(text(&proctor["login"]))
                .bind(text(&proctor["password"]))
                .execute(&mut *$tx)
                .await?;
            for room in proctor["room_ids"].as_array().into_iter().flatten() {
                sqlx::query("INSERT INTO proctor_rooms (plan_id, proctor_id, room_id) VALUES ($1, $2, $3)")
                    .bind(plan_id)
                    .bind(text(&proctor["id"]))
                    .bind(text(room))
                    .execute(&mut *$tx)
                    .await?;
            }
        }
        for (position, candidate) in plan["candidates"].as_array().into_iter().flatten().enumerate() {
            sqlx::query(
                "INSERT INTO candidates (plan_id, id, position, reg_no, name, room_id, seat, access_code_hash, extra_time_s, \
                 state, runtime, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 'registered', '{}', 0)",
            )
            .bind(plan_id)
            .bind(text(&candidate["id"]))
            .bind(position as i64)
            .bind(text(&candidate["reg_no"]))
            .bind(text(&candidate["name"]))
            .bind(text(&candidate["room_id"]))
            .bind(text(&candidate["seat"]))
            .bind(text(&candidate["access_code"]))
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

/// The naive writer: every row its own INSERT statement (one transaction),
/// against the real schema at `url` (migrated here). Secrets are stored as
/// given, so this measures database work only.
pub async fn naive_import(url: &str, plan_id: &str, plan: &Value) -> anyhow::Result<Duration> {
    let store = invigil_store::SqlStore::connect(&invigil_store::SqlOptions::new(url)).await?;
    store.migrate().await?;
    store.close().await;
    let started = Instant::now();
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url).await?;
        let mut tx = connection.begin().await?;
        naive_rows!(tx, plan_id, plan);
        tx.commit().await?;
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await?;
        let mut tx = connection.begin().await?;
        naive_rows!(tx, plan_id, plan);
        tx.commit().await?;
    }
    Ok(started.elapsed())
}

/// Argon2id hashes per second on this machine with the node's default cost,
/// spread over every core: the ceiling of a login that hashes access codes
/// like passwords.
pub fn argon2_hashes_per_second(samples: usize) -> anyhow::Result<f64> {
    use argon2::password_hash::PasswordHasher;
    let params =
        argon2::Params::new(7 * 1024, 5, 1, None).map_err(|error| anyhow::anyhow!("{error}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                for _ in 0..samples {
                    let _ = argon.hash_password(b"demo-0001");
                }
            });
        }
    });
    Ok((samples * cores) as f64 / started.elapsed().as_secs_f64())
}
