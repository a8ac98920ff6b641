//! Bad input gets a 4xx problem+json naming the problem, never a 500.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{API_KEY, TestApp, ok_json, plan, problem};

crate::on_both_backends!(
    malformed_json_is_a_400,
    unknown_and_missing_fields_are_named,
    invalid_ids_are_named_in_body_and_path,
    duplicate_candidates_and_unknown_rooms_are_refused,
    negative_durations_are_refused,
    control_characters_and_short_codes_are_refused,
    oversized_bodies_are_refused_before_reading,
    credentials_and_roles_are_checked,
    other_transport_errors_are_problems,
);

async fn raw_put(app: &TestApp, plan_id: &str, body: &'static str) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/api/v1/admin/plans/{plan_id}")))
        .header("X-Api-Key", API_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn malformed_json_is_a_400(app: &TestApp) {
    problem(
        raw_put(app, "p1", "{\"title\": \"x\",").await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    problem(
        raw_put(app, "p1", "").await,
        StatusCode::BAD_REQUEST,
        "empty_body",
    )
    .await;
    problem(
        raw_put(app, "p1", "[1, 2]").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
}

async fn unknown_and_missing_fields_are_named(app: &TestApp) {
    let mut body = plan("p1", 1, 2);
    body["candidates"][1]["nickname"] = json!("x");
    let error = problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_field",
    )
    .await;
    assert_eq!(error["field"], "candidates[1].nickname");

    let mut body = plan("p1", 1, 2);
    body.as_object_mut().unwrap().remove("duration_s");
    let error = problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_field",
    )
    .await;
    assert_eq!(error["field"], "duration_s");

    let mut body = plan("p1", 1, 2);
    body["rooms"][0].as_object_mut().unwrap().remove("capacity");
    let error = problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing_field",
    )
    .await;
    assert_eq!(error["field"], "rooms[0].capacity");

    let mut body = plan("p1", 1, 2);
    body["settings"]["heartbeat"] = json!(5);
    let error = problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_field",
    )
    .await;
    assert_eq!(error["field"], "settings.heartbeat");
}

async fn invalid_ids_are_named_in_body_and_path(app: &TestApp) {
    let mut body = plan("p1", 1, 2);
    body["candidates"][0]["id"] = json!("has space");
    body["rooms"][0]["id"] = json!("x".repeat(65));
    let error = problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_id",
    )
    .await;
    let fields: Vec<&str> = error["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["rooms[0].id", "candidates[0].id"]);
    assert_eq!(error["error_count"], 2);

    let error = problem(
        app.put_plan("bad%20id", &plan("p1", 1, 1)).await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    )
    .await;
    assert_eq!(error["field"], "plan_id");
    problem(
        app.admin_get("/api/v1/admin/plans/%C3%BC").await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    )
    .await;
}

async fn duplicate_candidates_and_unknown_rooms_are_refused(app: &TestApp) {
    let mut body = plan("p1", 2, 2);
    body["candidates"][3]["id"] = body["candidates"][0]["id"].clone();
    body["candidates"][2]["room_id"] = json!("room-9");
    let error = problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_room",
    )
    .await;
    let problems: Vec<(String, String)> = error["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_string(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        vec![
            (
                "unknown_room".to_string(),
                "candidates[2].room_id".to_string()
            ),
            (
                "duplicate_candidate_id".to_string(),
                "candidates[3].id".to_string()
            ),
        ]
    );
    // Nothing of a refused plan is stored.
    problem(
        app.admin_get("/api/v1/admin/plans/p1").await,
        StatusCode::NOT_FOUND,
        "plan_not_found",
    )
    .await;
}

async fn negative_durations_are_refused(app: &TestApp) {
    let mut body = plan("p1", 1, 1);
    body["duration_s"] = json!(-60);
    let error = problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_duration",
    )
    .await;
    assert_eq!(error["field"], "duration_s");
    let mut body = plan("p1", 1, 1);
    body["candidates"][0]["extra_time_s"] = json!(-1);
    let error = problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_extra_time",
    )
    .await;
    assert_eq!(error["field"], "candidates[0].extra_time_s");
    ok_json(app.put_plan("p1", &plan("p1", 1, 1)).await).await;
    app.command("p1", json!({"action": "start"})).await;
    problem(
        app.command("p1", json!({"action": "extend", "extend_s": -30}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_extension",
    )
    .await;
}

async fn oversized_bodies_are_refused_before_reading(app: &TestApp) {
    // Over the 4 MiB import limit of the test config, declared up front…
    let huge = "x".repeat(5 * 1024 * 1024);
    let body = format!("{{\"title\": \"{huge}\"}}");
    let response = app
        .http
        .put(app.url("/api/v1/admin/plans/p1"))
        .header("X-Api-Key", API_KEY)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    // …and streamed without a length (chunked).
    let stream = futures_stream(body.into_bytes());
    let response = app
        .http
        .put(app.url("/api/v1/admin/plans/p1"))
        .header("X-Api-Key", API_KEY)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    // Small routes have the small limit (64 KiB).
    let response = app
        .http
        .post(app.url("/api/v1/auth/candidate"))
        .header("content-type", "application/json")
        .body(format!("{{\"plan_id\": \"{}\"}}", "p".repeat(100_000)))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
}

fn futures_stream(
    bytes: Vec<u8>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes
        .chunks(64 * 1024)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    futures::stream::iter(chunks)
}

async fn credentials_and_roles_are_checked(app: &TestApp) {
    ok_json(app.put_plan("p1", &plan("p1", 1, 2)).await).await;
    let no_key = app
        .http
        .get(app.url("/api/v1/admin/plans/p1"))
        .send()
        .await
        .unwrap();
    problem(no_key, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    let wrong_key = app
        .http
        .get(app.url("/api/v1/admin/plans/p1"))
        .header("X-Api-Key", "wrong-key-0123456789")
        .send()
        .await
        .unwrap();
    problem(wrong_key, StatusCode::UNAUTHORIZED, "invalid_api_key").await;

    problem(
        app.bearer_get("/api/v1/candidate/me", "not-a-token").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let missing = app
        .http
        .get(app.url("/api/v1/candidate/me"))
        .send()
        .await
        .unwrap();
    problem(missing, StatusCode::UNAUTHORIZED, "missing_credentials").await;

    let proctor = ok_json(app.login_proctor("p1-proctor-1", "password-1").await).await;
    let proctor_token = proctor["token"].as_str().unwrap();
    problem(
        app.bearer_get("/api/v1/candidate/me", proctor_token).await,
        StatusCode::FORBIDDEN,
        "wrong_role",
    )
    .await;
    app.command("p1", json!({"action": "open"})).await;
    let candidate = ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await;
    let candidate_token = candidate["token"].as_str().unwrap();
    problem(
        app.bearer_get("/api/v1/proctor/rooms", candidate_token)
            .await,
        StatusCode::FORBIDDEN,
        "wrong_role",
    )
    .await;
    // A token is not an API key.
    let token_as_key = app
        .http
        .get(app.url("/api/v1/admin/plans/p1"))
        .header("X-Api-Key", candidate_token)
        .send()
        .await
        .unwrap();
    problem(token_as_key, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    let admin_with_bearer = app
        .http
        .get(app.url("/api/v1/admin/plans/p1"))
        .bearer_auth(candidate_token)
        .send()
        .await
        .unwrap();
    problem(
        admin_with_bearer,
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
    )
    .await;
}

async fn other_transport_errors_are_problems(app: &TestApp) {
    problem(
        app.admin_get("/api/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    )
    .await;
    let form = app
        .http
        .post(app.url("/api/v1/auth/candidate"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("plan_id=x")
        .send()
        .await
        .unwrap();
    problem(
        form,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let wrong_method = app
        .http
        .delete(app.url("/api/v1/auth/candidate"))
        .send()
        .await
        .unwrap();
    problem(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let value: Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(value["status"], "ok");
}

async fn control_characters_and_short_codes_are_refused(app: &TestApp) {
    // A NUL byte would be refused by Postgres itself; it must be a 422, not a 500.
    let error = problem(
        app.login_candidate("p1", "R\u{0}1", "code-0001").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    assert_eq!(error["field"], "reg_no");
    problem(
        app.login_proctor("kim\u{0}", "password").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    )
    .await;
    let mut body = plan("p1", 1, 1);
    body["candidates"][0]["access_code"] = json!("1234567");
    let error = problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_access_code",
    )
    .await;
    assert_eq!(error["field"], "candidates[0].access_code");
    let mut body = plan("p1", 1, 1);
    body["candidates"][0]["name"] = json!("tab\tname");
    problem(
        app.put_plan("p1", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_name",
    )
    .await;
}
