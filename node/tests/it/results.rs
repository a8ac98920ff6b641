//! Results through the admin API: candidates answer over the real socket
//! and REST, the plan ends, and the results — graded from the keys — come
//! back as JSON and as CSV.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{API_KEY, TestApp, ok_json, problem};
use crate::ws::Ws;

crate::on_both_backends!(
    results_grade_every_candidate_once_the_plan_ends,
    results_as_csv_round_trip_every_field,
    results_are_refused_before_the_end_and_without_the_key,
);

/// A name with a comma and quotes: import validation refuses control
/// characters in names, so the newline goes into a text answer.
const AWKWARD_NAME: &str = "김수험,\"x\"";
/// An essay answer with a comma, quotes, LF and CRLF.
const ESSAY: &str = "첫 줄, \"인용\"\n둘째 줄\r\n끝";

/// Questions of every kind, one ungraded (an essay); two rooms; c5 never comes.
fn results_plan() -> Value {
    let candidate = |n: usize, name: &str, room: &str, seat: Value| {
        json!({"id": format!("c{n}"), "reg_no": format!("R{n:04}"), "name": name, "room_id": room,
               "seat": seat, "access_code": format!("code-{n:04}")})
    };
    json!({
        "title": "Results exam",
        "starts_at": "2026-12-01T09:00:00Z",
        "duration_s": 3600,
        "questions": [
            {"id": "q1", "kind": "single", "choices": ["1", "2", "3", "4"], "answer": "2", "points": 2},
            {"id": "q2", "kind": "multi", "choices": ["A", "B", "C", "D"], "answer": ["A", "C"], "points": 3},
            {"id": "q3", "kind": "text", "answer": ["서울", "Seoul City"], "points": 3},
            {"id": "q4", "kind": "text", "points": 5}
        ],
        "rooms": [
            {"id": "room-1", "name": "Room 1", "capacity": 3},
            {"id": "room-2", "name": "Room 2", "capacity": 3}
        ],
        "candidates": [
            candidate(1, AWKWARD_NAME, "room-1", json!(1)),
            candidate(2, "Lee", "room-1", json!("A-2")),
            candidate(3, "Park", "room-1", Value::Null),
            candidate(4, "Choi", "room-2", json!(1)),
            candidate(5, "Absent", "room-2", json!(2))
        ]
    })
}

async fn login(app: &TestApp, n: usize) -> String {
    let login = ok_json(
        app.login_candidate("p1", &format!("R{n:04}"), &format!("code-{n:04}"))
            .await,
    )
    .await;
    login["token"].as_str().unwrap().to_string()
}

/// Sends an answer on the socket and waits for its ack.
async fn ws_answer(ws: &mut Ws, question: &str, value: Value, cseq: i64) {
    ws.send(json!({"t": "answer", "q": question, "value": value, "cseq": cseq}))
        .await;
    loop {
        let frame = ws.next().await.expect("an answer's ack");
        if frame["cseq"] == cseq {
            assert_eq!(frame["t"], "ack", "{frame}");
            return;
        }
    }
}

/// Saves an answer over REST; it is durable when this returns.
async fn rest_answer(app: &TestApp, token: &str, question: &str, value: Value, cseq: i64) {
    let response = app
        .http
        .put(app.url(&format!("/api/v1/candidate/answers/{question}")))
        .bearer_auth(token)
        .json(&json!({"value": value, "cseq": cseq}))
        .send()
        .await
        .expect("request");
    ok_json(response).await;
}

async fn results(app: &TestApp, query: &str) -> reqwest::Response {
    app.admin_get(&format!("/api/v1/admin/plans/p1/results{query}"))
        .await
}

/// Imports the plan, lets c1–c4 sit it (c5 never comes), ends it.
async fn sit_the_exam(app: &TestApp) {
    ok_json(app.put_plan("p1", &results_plan()).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let mut tokens = Vec::new();
    for n in 1..=4 {
        tokens.push(login(app, n).await);
    }
    ok_json(app.command("p1", json!({"action": "start"})).await).await;

    // c1, over the socket: everything right, an essay, then submits. 2 + 3 + 3 = 8.
    let (mut first, _) = Ws::candidate(app, &tokens[0], None).await;
    ws_answer(&mut first, "q1", json!("2"), 1).await;
    ws_answer(&mut first, "q2", json!(["C", "A"]), 2).await;
    ws_answer(&mut first, "q3", json!("  SEOUL\u{3000}city "), 3).await;
    ws_answer(&mut first, "q4", json!(ESSAY), 4).await;
    first.send(json!({"t": "submit"})).await;
    loop {
        let state = first.expect("state").await;
        if state["state"] == "submitted" {
            break;
        }
    }
    first.close().await;

    // c2, over REST: q1 corrected to the key, one of two choices, the key
    // text. 2 + 3 × (1 − 0) / 2 + 3 = 6.5.
    rest_answer(app, &tokens[1], "q1", json!("3"), 1).await;
    rest_answer(app, &tokens[1], "q1", json!("2"), 2).await;
    rest_answer(app, &tokens[1], "q2", json!(["A"]), 3).await;
    rest_answer(app, &tokens[1], "q3", json!("서울"), 4).await;

    // c3: q1 right then cleared, one wrong choice among the right ones,
    // full-width text. 0 + 3 × (2 − 1) / 2 + 3 = 4.5.
    rest_answer(app, &tokens[2], "q1", json!("2"), 1).await;
    rest_answer(app, &tokens[2], "q1", Value::Null, 2).await;
    rest_answer(app, &tokens[2], "q2", json!(["A", "C", "D"]), 3).await;
    rest_answer(app, &tokens[2], "q3", json!("ｓｅｏｕｌ　ｃｉｔｙ"), 4).await;

    // c4, over the socket: every choice, a wrong text; never submits. 0.
    let (mut fourth, _) = Ws::candidate(app, &tokens[3], None).await;
    ws_answer(&mut fourth, "q2", json!(["A", "B", "C", "D"]), 1).await;
    ws_answer(&mut fourth, "q3", json!("부산"), 2).await;
    fourth.close().await;

    let ended = ok_json(app.command("p1", json!({"action": "end"})).await).await;
    assert_eq!(ended["state"], "ended");
}

async fn results_grade_every_candidate_once_the_plan_ends(app: &TestApp) {
    sit_the_exam(app).await;
    let response = results(app, "").await;
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body = ok_json(response).await;
    assert_eq!(
        (
            body["plan_id"].as_str(),
            body["title"].as_str(),
            body["state"].as_str(),
            body["finalized"].as_bool()
        ),
        (Some("p1"), Some("Results exam"), Some("ended"), Some(false))
    );
    assert!(body["ended_at"].is_string() && body["finalized_at"].is_null());
    assert_eq!(body["max_score"], 8.0, "2 + 3 + 3; the essay has no key");
    assert_eq!(
        body["questions"],
        json!([
            {"question_id": "q1", "kind": "single", "points": 2.0, "graded": true},
            {"question_id": "q2", "kind": "multi", "points": 3.0, "graded": true},
            {"question_id": "q3", "kind": "text", "points": 3.0, "graded": true},
            {"question_id": "q4", "kind": "text", "points": 5.0, "graded": false}
        ])
    );

    let candidates = body["candidates"].as_array().unwrap();
    let summary: Vec<(&str, &str, f64)> = candidates
        .iter()
        .map(|c| {
            (
                c["candidate_id"].as_str().unwrap(),
                c["state"].as_str().unwrap(),
                c["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("c1", "submitted", 8.0),
            ("c2", "submitted", 6.5),
            ("c3", "submitted", 4.5),
            ("c4", "submitted", 0.0),
            ("c5", "absent", 0.0),
        ]
    );

    let first = &candidates[0];
    assert_eq!(
        (
            first["reg_no"].as_str(),
            first["name"].as_str(),
            first["room_id"].as_str(),
            first["seat"].as_str()
        ),
        (Some("R0001"), Some(AWKWARD_NAME), Some("room-1"), Some("1"))
    );
    assert_eq!(
        first["answers"],
        json!([
            {"question_id": "q1", "value": "2", "version": 1, "points": 2.0},
            {"question_id": "q2", "value": ["C", "A"], "version": 1, "points": 3.0},
            {"question_id": "q3", "value": "  SEOUL\u{3000}city ", "version": 1, "points": 3.0},
            {"question_id": "q4", "value": ESSAY, "version": 1, "points": null}
        ])
    );
    assert_eq!(
        candidates[1]["answers"],
        json!([
            {"question_id": "q1", "value": "2", "version": 2, "points": 2.0},
            {"question_id": "q2", "value": ["A"], "version": 1, "points": 1.5},
            {"question_id": "q3", "value": "서울", "version": 1, "points": 3.0}
        ])
    );
    assert_eq!(
        candidates[2]["answers"][0],
        json!({"question_id": "q1", "value": null, "version": 2, "points": 0.0}),
        "a cleared answer scores nothing"
    );
    assert_eq!(candidates[2]["seat"], Value::Null);
    assert_eq!(
        candidates[3]["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|answer| answer["points"].as_f64().unwrap())
            .collect::<Vec<_>>(),
        vec![0.0, 0.0],
        "selecting every choice earns nothing"
    );
    // c1 submitted before the end, c4 was submitted by it; c5 never came.
    for candidate in &candidates[..4] {
        let submitted_at = candidate["submitted_at"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(submitted_at).expect("an RFC 3339 time");
    }
    let absent = &candidates[4];
    assert_eq!(
        (absent["submitted_at"].clone(), absent["answers"].clone()),
        (Value::Null, json!([]))
    );

    // The admin server finalizes: the same results, marked final.
    let finalized = ok_json(app.command("p1", json!({"action": "finalize"})).await).await;
    assert_eq!(finalized["state"], "finalized");
    let after = ok_json(results(app, "?format=json").await).await;
    assert_eq!(
        (after["state"].as_str(), after["finalized"].as_bool()),
        (Some("finalized"), Some(true))
    );
    assert!(after["finalized_at"].is_string());
    assert_eq!(after["candidates"], body["candidates"]);
    problem(
        app.command("p1", json!({"action": "end"})).await,
        StatusCode::CONFLICT,
        "plan_finalized",
    )
    .await;
}

async fn results_as_csv_round_trip_every_field(app: &TestApp) {
    sit_the_exam(app).await;
    let graded = ok_json(results(app, "").await).await;
    let response = results(app, "?format=csv").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"p1-results.csv\""
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..3], b"\xEF\xBB\xBF", "a UTF-8 byte order mark");
    let text = std::str::from_utf8(&body[3..]).expect("UTF-8");
    assert!(
        text.starts_with(
            "candidate_id,reg_no,name,room_id,seat,state,submitted_at,score,max_score,q1,q2,q3,q4\r\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\r\nc1,R0001,\"김수험,\"\"x\"\"\",room-1,1,submitted,"),
        "the name is quoted, its quotes doubled: {text}"
    );
    assert!(text.ends_with("\r\n"));

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&body[3..]);
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|record| {
            record
                .expect("a valid CSV record")
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 6, "a header and one row per candidate");
    assert_eq!(
        rows[0],
        [
            "candidate_id",
            "reg_no",
            "name",
            "room_id",
            "seat",
            "state",
            "submitted_at",
            "score",
            "max_score",
            "q1",
            "q2",
            "q3",
            "q4"
        ]
    );
    let candidates = graded["candidates"].as_array().unwrap();
    let field = |value: &Value| value.as_str().unwrap_or_default().to_string();
    for (row, candidate) in rows[1..].iter().zip(candidates) {
        assert_eq!(
            row[..9],
            [
                field(&candidate["candidate_id"]),
                field(&candidate["reg_no"]),
                field(&candidate["name"]),
                field(&candidate["room_id"]),
                field(&candidate["seat"]),
                field(&candidate["state"]),
                field(&candidate["submitted_at"]),
                candidate["score"].as_f64().unwrap().to_string(),
                "8".to_string(),
            ]
        );
    }
    // Answers as text, exactly: multi in choice order joined by `;`, the
    // essay with its comma, quotes and line ends, empty when unanswered or
    // cleared.
    let answers: Vec<&[String]> = rows[1..].iter().map(|row| &row[9..]).collect();
    assert_eq!(answers[0], ["2", "A;C", "  SEOUL\u{3000}city ", ESSAY]);
    assert_eq!(answers[1], ["2", "A", "서울", ""]);
    assert_eq!(answers[2], ["", "A;C;D", "ｓｅｏｕｌ　ｃｉｔｙ", ""]);
    assert_eq!(answers[3], ["", "A;B;C;D", "부산", ""]);
    assert_eq!(answers[4], ["", "", "", ""]);
    assert_eq!(rows[1][2], AWKWARD_NAME);
    assert_eq!((rows[2][4].as_str(), rows[2][7].as_str()), ("A-2", "6.5"));
    assert_eq!((rows[3][4].as_str(), rows[5][5].as_str()), ("", "absent"));
}

async fn results_are_refused_before_the_end_and_without_the_key(app: &TestApp) {
    problem(
        results(app, "").await,
        StatusCode::NOT_FOUND,
        "plan_not_found",
    )
    .await;
    ok_json(app.put_plan("p1", &results_plan()).await).await;
    problem(
        results(app, "").await,
        StatusCode::CONFLICT,
        "results_not_ready",
    )
    .await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let token = login(app, 2).await;
    rest_answer(app, &token, "q1", json!("2"), 1).await;
    for query in ["", "?format=csv"] {
        let refused = problem(
            results(app, query).await,
            StatusCode::CONFLICT,
            "results_not_ready",
        )
        .await;
        assert!(
            refused["detail"].as_str().unwrap().contains("in_progress"),
            "{refused}"
        );
    }

    ok_json(app.command("p1", json!({"action": "end"})).await).await;
    let bad_format = problem(
        results(app, "?format=xlsx").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert_eq!(bad_format["field"], "format");
    problem(
        app.http
            .get(app.url("/api/v1/admin/plans/p1/results"))
            .header("X-Api-Key", format!("{API_KEY}-wrong"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
    )
    .await;
    problem(
        app.http
            .get(app.url("/api/v1/admin/plans/p1/results?format=csv"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
    )
    .await;
    // Once ended, the same request is served: c2 sat the exam, nobody
    // else came.
    let served = ok_json(results(app, "").await).await;
    let scores: Vec<(&str, &str, f64)> = served["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["candidate_id"].as_str().unwrap(),
                c["state"].as_str().unwrap(),
                c["score"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        scores,
        vec![
            ("c1", "absent", 0.0),
            ("c2", "submitted", 2.0),
            ("c3", "absent", 0.0),
            ("c4", "absent", 0.0),
            ("c5", "absent", 0.0),
        ]
    );
}
