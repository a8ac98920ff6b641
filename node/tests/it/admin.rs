//! Plan import, reads, commands and status through the admin API.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, ok_json, plan, problem};

crate::on_both_backends!(
    import_is_idempotent_and_replaces_until_open,
    get_never_returns_secrets,
    commands_drive_the_plan_and_its_clock,
    status_counts_rooms_by_candidate_state,
);

async fn import_is_idempotent_and_replaces_until_open(app: &TestApp) {
    let body = plan("p1", 2, 3);
    let created = app.put_plan("p1", &body).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = ok_json(created).await;
    assert_eq!(
        created,
        json!({"plan_id": "p1", "outcome": "created", "questions": 3, "rooms": 2, "proctors": 2, "candidates": 6})
    );
    let before = ok_json(app.admin_get("/api/v1/admin/plans/p1").await).await;

    let again = app.put_plan("p1", &body).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(ok_json(again).await["outcome"], "unchanged");
    let after = ok_json(app.admin_get("/api/v1/admin/plans/p1").await).await;
    assert_eq!(before, after, "the same body twice changes nothing");

    let mut changed = body.clone();
    changed["title"] = json!("Renamed");
    assert_eq!(
        ok_json(app.put_plan("p1", &changed).await).await["outcome"],
        "replaced"
    );
    assert_eq!(
        ok_json(app.admin_get("/api/v1/admin/plans/p1").await).await["title"],
        "Renamed"
    );

    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    problem(
        app.put_plan("p1", &body).await,
        StatusCode::CONFLICT,
        "plan_already_open",
    )
    .await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    problem(
        app.put_plan("p1", &body).await,
        StatusCode::CONFLICT,
        "plan_already_started",
    )
    .await;
    // A retry of the import that is in force is still answered calmly.
    assert_eq!(
        ok_json(app.put_plan("p1", &changed).await).await["outcome"],
        "unchanged"
    );
}

async fn get_never_returns_secrets(app: &TestApp) {
    ok_json(app.put_plan("p1", &plan("p1", 2, 3)).await).await;
    let text = app
        .admin_get("/api/v1/admin/plans/p1")
        .await
        .text()
        .await
        .unwrap();
    for secret in [
        "code-0001",
        "code-0006",
        "password-1",
        "access_code",
        "password",
        "hmac-sha256",
        "$argon2",
    ] {
        assert!(!text.contains(secret), "GET plan leaks {secret}: {text}");
    }
    let view: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        view["candidates"][0],
        json!({
            "id": "cand-0001", "reg_no": "R0001", "name": "수험자 1", "room_id": "room-1", "seat": "1", "extra_time_s": 300
        })
    );
    assert_eq!(view["proctors"][1]["room_ids"], json!(["room-2"]));
    assert_eq!(view["questions"][1]["answer"], json!(["A", "C"]));
    let starts_at =
        chrono::DateTime::parse_from_rfc3339(view["starts_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        starts_at,
        chrono::DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z").unwrap()
    );
}

async fn commands_drive_the_plan_and_its_clock(app: &TestApp) {
    // Nobody checks in here: with the default late entry (600 s) the clock
    // moves past it below, both candidates become absent, and the plan
    // ends on its own ("every candidate is done") at the room's next tick —
    // before this test's own `end` when the machine is busy.
    let mut body = plan("p1", 1, 2);
    body["settings"]["late_entry_s"] = json!(3600);
    ok_json(app.put_plan("p1", &body).await).await;
    problem(
        app.command("p1", json!({"action": "pause"})).await,
        StatusCode::CONFLICT,
        "plan_not_running",
    )
    .await;
    problem(
        app.command("p1", json!({"action": "extend"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_field",
    )
    .await;
    problem(
        app.command("nope", json!({"action": "open"})).await,
        StatusCode::NOT_FOUND,
        "plan_not_found",
    )
    .await;

    let started = ok_json(app.command("p1", json!({"action": "start"})).await).await;
    assert_eq!(
        (started["state"].as_str(), started["remaining_s"].as_i64()),
        (Some("in_progress"), Some(3600))
    );
    app.clock.advance(Duration::from_secs(600));
    let paused = ok_json(app.command("p1", json!({"action": "pause"})).await).await;
    assert_eq!(
        (paused["paused"].as_bool(), paused["remaining_s"].as_i64()),
        (Some(true), Some(3000))
    );
    app.clock.advance(Duration::from_secs(900));
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(
        status["clock"]["remaining_s"], 3000,
        "a pause freezes the clock"
    );
    let resumed = ok_json(app.command("p1", json!({"action": "resume"})).await).await;
    assert_eq!(resumed["remaining_s"], 3000, "a resume restores it");
    let extended = ok_json(
        app.command("p1", json!({"action": "extend", "extend_s": 120}))
            .await,
    )
    .await;
    assert_eq!(
        (
            extended["extension_s"].as_i64(),
            extended["remaining_s"].as_i64()
        ),
        (Some(120), Some(3120))
    );
    app.clock.advance(Duration::from_secs(20));
    let ended = ok_json(app.command("p1", json!({"action": "end"})).await).await;
    assert_eq!(ended["state"], "ended");
    problem(
        app.command("p1", json!({"action": "start"})).await,
        StatusCode::CONFLICT,
        "plan_ended",
    )
    .await;
    let finalized = ok_json(app.command("p1", json!({"action": "finalize"})).await).await;
    assert_eq!(finalized["state"], "finalized");
}

async fn status_counts_rooms_by_candidate_state(app: &TestApp) {
    ok_json(app.put_plan("p1", &plan("p1", 2, 3)).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    for (reg_no, code) in [
        ("R0001", "code-0001"),
        ("R0004", "code-0004"),
        ("R0005", "code-0005"),
    ] {
        ok_json(app.login_candidate("p1", reg_no, code).await).await;
    }
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(status["rooms"][0]["candidates"]["checked_in"], 1);
    assert_eq!(status["rooms"][1]["candidates"]["checked_in"], 2);
    assert_eq!(status["candidates"]["registered"], 3);
    assert_eq!(status["connection"]["offline"], 6);

    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(
        (
            status["candidates"]["testing"].as_i64(),
            status["candidates"]["registered"].as_i64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(status["rooms"][0]["state"], "in_progress");

    ok_json(app.command("p1", json!({"action": "end"})).await).await;
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(
        status["candidates"]["submitted"], 3,
        "the end submits every open sheet"
    );
    assert_eq!(
        status["candidates"]["absent"], 3,
        "and marks who never came absent"
    );
    assert_eq!(status["rooms"][1]["state"], "ended");
}
