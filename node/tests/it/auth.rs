//! Candidate and proctor login.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, ok_json, plan, problem};

crate::on_both_backends!(
    candidates_log_in_while_the_plan_admits_them,
    wrong_and_unknown_credentials_look_the_same,
    repeated_failures_are_limited,
    parallel_guesses_cannot_pass_the_limit,
    proctors_log_in_to_their_rooms,
    a_reimport_retires_older_proctor_tokens,
    the_candidate_sees_their_own_exam,
);

async fn candidates_log_in_while_the_plan_admits_them(app: &TestApp) {
    ok_json(app.put_plan("p1", &plan("p1", 1, 3)).await).await;
    problem(
        app.login_candidate("p1", "R0001", "code-0001").await,
        StatusCode::CONFLICT,
        "plan_not_open",
    )
    .await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let login = ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await;
    assert_eq!(
        (login["candidate_id"].as_str(), login["room_id"].as_str()),
        (Some("cand-0001"), Some("room-1"))
    );
    assert_eq!(login["state"], "checked_in");
    assert!(login["token"].as_str().unwrap().split('.').count() == 3);

    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    app.clock.advance(Duration::from_secs(300));
    let late = ok_json(app.login_candidate("p1", "R0002", "code-0002").await).await;
    assert_eq!(
        late["state"], "testing",
        "a late entry within the window begins at once"
    );
    app.clock.advance(Duration::from_secs(301));
    problem(
        app.login_candidate("p1", "R0003", "code-0003").await,
        StatusCode::CONFLICT,
        "late_entry_closed",
    )
    .await;
    // Someone already in may log in again (a new device).
    assert_eq!(
        ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await["state"],
        "testing"
    );
}

async fn wrong_and_unknown_credentials_look_the_same(app: &TestApp) {
    ok_json(app.put_plan("p1", &plan("p1", 1, 2)).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let wrong = problem(
        app.login_candidate("p1", "R0001", "code-0002").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown = problem(
        app.login_candidate("p1", "R9999", "code-0001").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let other_plan = problem(
        app.login_candidate("p2", "R0001", "code-0001").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, other_plan);
    problem(
        app.login_candidate("bad id", "R0001", "x").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_id",
    )
    .await;
    problem(
        app.login_proctor("p1-proctor-1", "wrong-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    problem(
        app.login_proctor("nobody", "password-1").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

async fn repeated_failures_are_limited(app: &TestApp) {
    ok_json(app.put_plan("p1", &plan("p1", 1, 2)).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    for _ in 0..5 {
        problem(
            app.login_candidate("p1", "R0001", "guess").await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    // Even the right code waits now; another account does not.
    problem(
        app.login_candidate("p1", "R0001", "code-0001").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
    )
    .await;
    ok_json(app.login_candidate("p1", "R0002", "code-0002").await).await;
    app.clock.advance(Duration::from_secs(301));
    ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await;
}

async fn proctors_log_in_to_their_rooms(app: &TestApp) {
    ok_json(app.put_plan("p1", &plan("p1", 2, 2)).await).await;
    let login = ok_json(app.login_proctor("p1-proctor-2", "password-2").await).await;
    assert_eq!(
        (login["proctor_id"].as_str(), login["plan_id"].as_str()),
        (Some("proctor-2"), Some("p1"))
    );
    assert_eq!(login["room_ids"], json!(["room-2"]));
    let rooms = ok_json(
        app.bearer_get("/api/v1/proctor/rooms", login["token"].as_str().unwrap())
            .await,
    )
    .await;
    let room_ids: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        room_ids,
        vec!["room-2"],
        "a proctor sees only assigned rooms"
    );
}

async fn the_candidate_sees_their_own_exam(app: &TestApp) {
    ok_json(app.put_plan("p1", &plan("p1", 1, 2)).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let login = ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await;
    let token = login["token"].as_str().unwrap();
    let me = ok_json(app.bearer_get("/api/v1/candidate/me", token).await).await;
    assert_eq!(
        (me["state"].as_str(), me["remaining_s"].as_i64()),
        (Some("checked_in"), Some(3900))
    );
    assert!(me["ends_at"].is_null());
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    app.clock.advance(Duration::from_secs(100));
    let me = ok_json(app.bearer_get("/api/v1/candidate/me", token).await).await;
    assert_eq!(
        (me["exam_state"].as_str(), me["remaining_s"].as_i64()),
        (Some("testing"), Some(3800))
    );
    ok_json(app.command("p1", json!({"action": "pause"})).await).await;
    let me = ok_json(app.bearer_get("/api/v1/candidate/me", token).await).await;
    assert_eq!(
        (me["state"].as_str(), me["exam_state"].as_str()),
        (Some("testing"), Some("paused"))
    );
    assert!(me["ends_at"].is_null());
    assert_eq!(me["answers"], json!([]));
}

async fn parallel_guesses_cannot_pass_the_limit(app: &TestApp) {
    ok_json(app.put_plan("p1", &plan("p1", 1, 2)).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    // 20 guesses at once against a limit of 5 attempts per window.
    let guesses = (0..20).map(|n| {
        app.login_candidate(
            "p1",
            "R0001",
            if n == 19 { "code-0001" } else { "wrong-guess" },
        )
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(guesses)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s != StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        checked <= 5,
        "{checked} of 20 parallel attempts were checked: {statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS));
    // Unknown accounts are not tracked: they cannot fill memory or lock anyone out.
    for n in 0..20 {
        problem(
            app.login_candidate("p1", &format!("NOBODY{n}"), "wrong-guess")
                .await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
}

async fn a_reimport_retires_older_proctor_tokens(app: &TestApp) {
    let mut body = plan("p1", 2, 2);
    ok_json(app.put_plan("p1", &body).await).await;
    let login = ok_json(app.login_proctor("p1-proctor-1", "password-1").await).await;
    let token = login["token"].as_str().unwrap().to_string();
    ok_json(app.bearer_get("/api/v1/proctor/rooms", &token).await).await;
    // The admin server moves proctor 1 to room 2 while the plan is scheduled.
    body["proctors"][0]["room_ids"] = json!(["room-2"]);
    assert_eq!(
        ok_json(app.put_plan("p1", &body).await).await["outcome"],
        "replaced"
    );
    problem(
        app.bearer_get("/api/v1/proctor/rooms", &token).await,
        StatusCode::UNAUTHORIZED,
        "token_stale",
    )
    .await;
    let login = ok_json(app.login_proctor("p1-proctor-1", "password-1").await).await;
    assert_eq!(login["room_ids"], json!(["room-2"]));
    ok_json(
        app.bearer_get("/api/v1/proctor/rooms", login["token"].as_str().unwrap())
            .await,
    )
    .await;
}
