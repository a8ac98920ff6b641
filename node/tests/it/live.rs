//! The live exam over real WebSockets: each sequence of docs/protocol.md,
//! durable acks, refusals, the server's clock, resume, proctor control.

use std::time::{Duration, Instant};

use invigil_actors::ports::Journal;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestApp, ok_json, plan, problem};
use crate::ws::Ws;

crate::on_both_backends!(
    check_in_then_start_reaches_the_socket,
    acked_answers_are_durable_and_stored_once,
    answers_are_refused_while_paused_after_submit_and_after_the_end,
    a_pause_freezes_remaining_time_and_a_resume_restores_it,
    the_end_auto_submits_a_disconnected_candidate,
    a_resume_replays_what_was_missed,
    a_proctor_pause_reaches_the_candidate_with_an_ack,
    every_proctor_control_reaches_the_candidate,
    a_proctor_cannot_command_another_rooms_candidate,
    proctors_see_answer_progress_within_a_second,
    bad_frames_get_error_frames_and_the_socket_stays_open,
    a_flooding_socket_is_slowed_down_not_dropped,
    oversized_frames_and_silent_sockets_are_closed_with_a_reason,
    a_second_login_takes_over_and_is_recorded,
    client_events_become_incidents_proctors_review,
    control_characters_in_free_text_are_refused_and_harm_no_one,
    rest_answers_and_submit_take_the_same_path,
);

/// Imports a 2-room plan (2 candidates each), opens it, logs in everyone
/// listed; returns their tokens.
async fn open_with(app: &TestApp, heartbeat_s: i64, logins: &[usize]) -> Vec<String> {
    let mut body = plan("p1", 2, 2);
    body["settings"]["heartbeat_s"] = json!(heartbeat_s);
    ok_json(app.put_plan("p1", &body).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let mut tokens = Vec::new();
    for &n in logins {
        let login = ok_json(
            app.login_candidate("p1", &format!("R{n:04}"), &format!("code-{n:04}"))
                .await,
        )
        .await;
        tokens.push(login["token"].as_str().unwrap().to_string());
    }
    tokens
}

async fn proctor_token(app: &TestApp, room: usize) -> String {
    let login = ok_json(
        app.login_proctor(&format!("p1-proctor-{room}"), &format!("password-{room}"))
            .await,
    )
    .await;
    login["token"].as_str().unwrap().to_string()
}

async fn answer(ws: &mut Ws, question: &str, value: Value, cseq: i64) -> Value {
    ws.send(json!({"t": "answer", "q": question, "value": value, "cseq": cseq}))
        .await;
    loop {
        let frame = ws.next().await.expect("an answer's ack or error");
        if (frame["t"] == "ack" || frame["t"] == "error") && frame["cseq"] == cseq {
            return frame;
        }
    }
}

async fn me(app: &TestApp, token: &str) -> Value {
    ok_json(app.bearer_get("/api/v1/candidate/me", token).await).await
}

/// Polls `check` until it holds or `timeout` passes.
async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

async fn check_in_then_start_reaches_the_socket(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    let (mut ws, welcome) = Ws::candidate(app, &tokens[0], None).await;
    assert_eq!(welcome["resumed"], false);
    assert_eq!(welcome["state"]["state"], "checked_in");
    assert_eq!(
        welcome["state"]["remaining_s"], 3900,
        "duration + 300 s extra time"
    );
    let session = welcome["session"].as_str().unwrap().to_string();
    assert!(!session.is_empty());

    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let started = ws.expect("state").await;
    assert_eq!(
        (started["event"].as_str(), started["state"].as_str()),
        (Some("started"), Some("testing"))
    );
    assert!(started["seq"].as_u64().unwrap() > welcome["seq"].as_u64().unwrap());
    assert!(started["ends_at"].is_string());
    // The proctor's view and the status agree.
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(status["rooms"][0]["candidates"]["testing"], 1);
    assert_eq!(status["rooms"][0]["connection"]["online"], 1);
}

async fn acked_answers_are_durable_and_stored_once(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let (mut ws, _) = Ws::candidate(app, &tokens[0], None).await;
    let store = app.store().await;
    let (plan_id, candidate) = ("p1".parse().unwrap(), "cand-0001".parse().unwrap());

    let ack = answer(&mut ws, "q1", json!("2"), 1).await;
    assert_eq!(
        (ack["t"].as_str(), ack["version"].as_i64()),
        (Some("ack"), Some(1))
    );
    // Acknowledged means durable: the journal has it now.
    let saved = store
        .journaled_answer(&plan_id, &candidate, 1)
        .await
        .unwrap()
        .expect("in the journal");
    assert_eq!((saved.question_id.as_str(), saved.version), ("q1", 1));

    // The same cseq again: the same ack, no second row.
    let again = answer(&mut ws, "q1", json!("2"), 1).await;
    assert_eq!(
        (again["t"].as_str(), again["version"].as_i64()),
        (Some("ack"), Some(1))
    );
    let second = answer(&mut ws, "q1", json!("3"), 2).await;
    assert_eq!(second["version"], 2);
    // A superseded cseq resent (its ack was lost): acked with its own version.
    let old = answer(&mut ws, "q1", json!("2"), 1).await;
    assert_eq!(
        (old["t"].as_str(), old["version"].as_i64()),
        (Some("ack"), Some(1))
    );
    let conflict = answer(&mut ws, "q2", json!(["A"]), 1).await;
    assert_eq!(
        (conflict["t"].as_str(), conflict["code"].as_str()),
        (Some("error"), Some("cseq_conflict"))
    );
    // The same cseq with another value is not a repeat either: the sheet
    // (latest) and the journal (superseded) both know the value's digest.
    for (cseq, what) in [(2, "latest"), (1, "superseded")] {
        let changed = answer(&mut ws, "q1", json!("4"), cseq).await;
        assert_eq!(changed["code"], "cseq_conflict", "{what}: {changed}");
    }
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(status["answers_saved"], 2);
    assert_eq!(
        me(app, &tokens[0]).await["answers"],
        json!([{"question_id": "q1", "version": 2}])
    );

    // Refusals name the problem.
    for (question, value, code) in [
        ("q404", json!("1"), "unknown_question"),
        ("q1", json!("9"), "invalid_answer"),
        ("q2", json!("A"), "invalid_answer"),
    ] {
        let error = answer(&mut ws, question, value, 10).await;
        assert_eq!(error["code"], code, "{error}");
    }
    let stale = answer(&mut ws, "q3", json!("x"), 2).await;
    assert_eq!(stale["code"], "cseq_conflict");
    // cseq runs from 1 to 2^53 - 1: i64::MAX would lock the sheet forever.
    for cseq in [0, -1, i64::MAX, 1 << 53] {
        let error = answer(&mut ws, "q3", json!("x"), cseq).await;
        assert_eq!(error["code"], "invalid_cseq", "{cseq}: {error}");
    }
    assert_eq!(
        answer(&mut ws, "q3", json!("x"), (1 << 53) - 1).await["t"],
        "ack"
    );
    store.close().await;
}

async fn answers_are_refused_while_paused_after_submit_and_after_the_end(app: &TestApp) {
    let tokens = open_with(app, 10, &[1, 2]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let (mut first, _) = Ws::candidate(app, &tokens[0], None).await;
    let (mut second, _) = Ws::candidate(app, &tokens[1], None).await;

    ok_json(app.command("p1", json!({"action": "pause"})).await).await;
    assert_eq!(first.expect("state").await["exam_state"], "paused");
    assert_eq!(
        answer(&mut first, "q1", json!("1"), 1).await["code"],
        "exam_paused"
    );
    ok_json(app.command("p1", json!({"action": "resume"})).await).await;
    assert_eq!(answer(&mut first, "q1", json!("1"), 1).await["t"], "ack");

    first.send(json!({"t": "submit"})).await;
    let submitted = first.expect("state").await;
    assert_eq!(
        (submitted["event"].as_str(), submitted["state"].as_str()),
        (Some("submitted"), Some("submitted"))
    );
    assert_eq!(
        answer(&mut first, "q1", json!("2"), 2).await["code"],
        "already_submitted"
    );

    ok_json(app.command("p1", json!({"action": "end"})).await).await;
    let ended = loop {
        let frame = second.expect("state").await;
        if frame["event"] != "paused" && frame["event"] != "resumed" {
            break frame;
        }
    };
    assert_eq!(
        (ended["event"].as_str(), ended["submit_reason"].as_str()),
        (Some("ended"), Some("plan_ended"))
    );
    // Ended early: no time is shown as left, to anyone.
    assert_eq!(ended["remaining_s"], 0, "{ended}");
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(status["clock"]["remaining_s"], 0);
    assert_eq!(
        answer(&mut second, "q1", json!("2"), 1).await["code"],
        "already_submitted"
    );
}

async fn a_pause_freezes_remaining_time_and_a_resume_restores_it(app: &TestApp) {
    let tokens = open_with(app, 300, &[2]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let (mut ws, _) = Ws::candidate(app, &tokens[0], None).await;
    app.clock.advance(Duration::from_secs(100));
    assert_eq!(me(app, &tokens[0]).await["remaining_s"], 3500);

    ok_json(app.command("p1", json!({"action": "pause"})).await).await;
    let paused = ws.expect("state").await;
    assert_eq!(
        (paused["exam_state"].as_str(), paused["paused_by"].as_str()),
        (Some("paused"), Some("plan"))
    );
    assert!(paused["ends_at"].is_null());
    app.clock.advance(Duration::from_secs(600));
    assert_eq!(
        me(app, &tokens[0]).await["remaining_s"],
        3500,
        "a pause freezes the clock"
    );

    ok_json(app.command("p1", json!({"action": "resume"})).await).await;
    assert_eq!(
        ws.expect("state").await["remaining_s"],
        3500,
        "a resume restores it"
    );
    app.clock.advance(Duration::from_secs(10));
    assert_eq!(me(app, &tokens[0]).await["remaining_s"], 3490);
}

async fn the_end_auto_submits_a_disconnected_candidate(app: &TestApp) {
    let tokens = open_with(app, 300, &[2, 3]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    // Candidate 2 answers once and goes away; candidate 3 is connected.
    let (mut gone, _) = Ws::candidate(app, &tokens[0], None).await;
    assert_eq!(answer(&mut gone, "q1", json!("2"), 1).await["t"], "ack");
    gone.close().await;
    let (mut present, _) = Ws::candidate(app, &tokens[1], None).await;

    // Time passes (with heartbeats, or the socket would count as dead).
    for step in [1_700, 1_700, 201] {
        app.clock.advance(Duration::from_secs(step));
        present.send(json!({"t": "hb"})).await;
    }
    let time_up = present.expect("state").await;
    assert_eq!(
        (time_up["event"].as_str(), time_up["submit_reason"].as_str()),
        (Some("time_up"), Some("time_up"))
    );
    let submitted = wait_until(Duration::from_secs(5), || async {
        me(app, &tokens[0]).await["state"] == "submitted"
    })
    .await;
    assert!(
        submitted,
        "the disconnected candidate was submitted by the server's clock"
    );
    assert_eq!(me(app, &tokens[0]).await["submit_reason"], "time_up");
    // Nobody is left: the plan ends itself (candidates 1 and 4 never came: absent).
    let ended = wait_until(Duration::from_secs(5), || async {
        ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await["clock"]["state"]
            == "ended"
    })
    .await;
    assert!(ended, "the plan ends when every candidate is done");
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(
        (
            status["candidates"]["submitted"].as_i64(),
            status["candidates"]["absent"].as_i64()
        ),
        (Some(2), Some(2))
    );
    // Over means no time left, whatever the clock did not use.
    assert_eq!(status["clock"]["remaining_s"], 0);
    assert_eq!(me(app, &tokens[0]).await["remaining_s"], 0);
}

async fn a_resume_replays_what_was_missed(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let proctor = proctor_token(app, 1).await;
    let (mut ws, welcome) = Ws::candidate(app, &tokens[0], None).await;
    let session = welcome["session"].as_str().unwrap().to_string();
    assert_eq!(answer(&mut ws, "q1", json!("1"), 1).await["t"], "ack");
    let seen = ws.last_seq;
    ws.close().await;

    // While away: a warning and a notice.
    let warn = app
        .http
        .post(app.url("/api/v1/proctor/candidates/cand-0001/commands"))
        .bearer_auth(&proctor)
        .json(&json!({"action": "warn", "reason": "eyes on your screen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok_json(warn).await["delivered"],
        false,
        "nobody was connected"
    );
    let notice = app
        .http
        .post(app.url("/api/v1/proctor/rooms/room-1/commands"))
        .bearer_auth(&proctor)
        .json(&json!({"action": "notice", "text": "30 minutes left"}))
        .send()
        .await
        .unwrap();
    ok_json(notice).await;

    let (mut back, welcome) = Ws::candidate(app, &tokens[0], Some((&session, seen))).await;
    assert_eq!(
        (welcome["resumed"].as_bool(), welcome["session"].as_str()),
        (Some(true), Some(session.as_str()))
    );
    let control = back.expect_next("control").await;
    assert_eq!(
        (control["action"].as_str(), control["reason"].as_str()),
        (Some("warn"), Some("eyes on your screen"))
    );
    let notice = back.expect_next("notice").await;
    assert_eq!(notice["text"], "30 minutes left");
    assert_eq!(control["seq"].as_u64().unwrap(), seen + 1, "no hole");
    assert_eq!(notice["seq"].as_u64().unwrap(), seen + 2);
    assert_eq!(
        welcome["seq"].as_u64().unwrap(),
        seen + 2,
        "the welcome says how far the replay goes"
    );
    back.close().await;

    // Another session (or one too old to fill) gets a snapshot, not a hole.
    let (other, welcome) = Ws::candidate(app, &tokens[0], Some(("not-my-session", 1))).await;
    assert_eq!(welcome["resumed"], false);
    assert_eq!(welcome["state"]["warnings"], 1);
    assert_eq!(welcome["state"]["answers"], json!({"q1": 1}));
    other.close().await;
}

async fn a_proctor_pause_reaches_the_candidate_with_an_ack(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let (mut candidate, _) = Ws::candidate(app, &tokens[0], None).await;
    let mut dashboard = Ws::connect(app, "/ws/proctor", &proctor_token(app, 1).await).await;
    dashboard.send(json!({"t": "hello"})).await;
    let room = dashboard.expect("room").await;
    assert_eq!(room["room_id"], "room-1");
    assert_eq!(room["seats"].as_array().unwrap().len(), 2);
    assert_eq!(room["seats"][0]["connection"], "online");

    let sent = Instant::now();
    dashboard
        .send(json!({"t": "command", "id": "c-1", "target": {"candidate_id": "cand-0001"}, "action": "pause", "reason": "toilet"}))
        .await;
    let control = candidate.expect("control").await;
    let latency = sent.elapsed();
    assert_eq!(
        (control["action"].as_str(), control["reason"].as_str()),
        (Some("pause"), Some("toilet"))
    );
    assert_eq!(candidate.expect("state").await["exam_state"], "paused");
    assert!(latency < Duration::from_secs(1), "control took {latency:?}");
    // The ack and the seat delta, in whichever order they come.
    let (mut ack, mut seat) = (None, None);
    while ack.is_none() || seat.is_none() {
        let frame = dashboard.next().await.expect("dashboard frames");
        match frame["t"].as_str() {
            Some("command_ack") => ack = Some(frame),
            Some("seat") if frame["exam_state"] == "paused" => seat = Some(frame),
            _ => {}
        }
    }
    let (ack, seat) = (ack.unwrap(), seat.unwrap());
    assert_eq!(
        (ack["id"].as_str(), ack["delivered"].as_bool()),
        (Some("c-1"), Some(true))
    );
    assert_eq!(seat["candidate_id"], "cand-0001");
    assert_eq!(
        answer(&mut candidate, "q1", json!("1"), 1).await["code"],
        "exam_paused"
    );

    dashboard.send(json!({"t": "command", "id": "c-2", "target": {"candidate_id": "cand-0001"}, "action": "resume"})).await;
    assert_eq!(candidate.expect("control").await["action"], "resume");
    assert_eq!(dashboard.expect("command_ack").await["id"], "c-2");
    assert_eq!(
        answer(&mut candidate, "q1", json!("1"), 1).await["t"],
        "ack"
    );
}

/// Sends a command on the dashboard socket and returns its `command_ack`.
async fn command(dashboard: &mut Ws, id: &str, target: Value, action: &str, extra: Value) -> Value {
    let mut frame = json!({"t": "command", "id": id, "target": target, "action": action});
    if let (Some(frame), Some(extra)) = (frame.as_object_mut(), extra.as_object()) {
        frame.extend(extra.clone());
    }
    dashboard.send(frame).await;
    loop {
        let ack = dashboard.expect("command_ack").await;
        if ack["id"] == id {
            return ack;
        }
    }
}

async fn every_proctor_control_reaches_the_candidate(app: &TestApp) {
    let tokens = open_with(app, 10, &[1, 2]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let (mut first, welcome) = Ws::candidate(app, &tokens[0], None).await;
    let (mut second, _) = Ws::candidate(app, &tokens[1], None).await;
    let before = welcome["state"]["remaining_s"].as_i64().unwrap();
    let mut dashboard = Ws::connect(app, "/ws/proctor", &proctor_token(app, 1).await).await;
    dashboard.send(json!({"t": "hello"})).await;
    dashboard.expect("room").await;
    let one = json!({"candidate_id": "cand-0001"});
    let two = json!({"candidate_id": "cand-0002"});

    // extend: the candidate's own clock grows by exactly the extension.
    let ack = command(
        &mut dashboard,
        "e",
        one.clone(),
        "extend",
        json!({"extend_s": 300, "reason": "fire alarm"}),
    )
    .await;
    assert_eq!(ack["delivered"], true, "{ack}");
    let control = first.expect("control").await;
    assert_eq!(
        (
            control["action"].as_str(),
            control["extend_s"].as_i64(),
            control["reason"].as_str()
        ),
        (Some("extend"), Some(300), Some("fire alarm"))
    );
    let state = first.expect("state").await;
    assert_eq!(state["event"], "extended");
    assert_eq!(
        state["remaining_s"].as_i64().unwrap(),
        before + 300,
        "{state}"
    );

    // warn: counted, and the reason reaches the screen.
    let ack = command(
        &mut dashboard,
        "w",
        two.clone(),
        "warn",
        json!({"reason": "eyes front"}),
    )
    .await;
    assert_eq!(ack["delivered"], true);
    let control = second.expect("control").await;
    assert_eq!(
        (control["action"].as_str(), control["reason"].as_str()),
        (Some("warn"), Some("eyes front"))
    );

    // A room notice reaches every seat of the room.
    let ack = command(
        &mut dashboard,
        "n",
        json!({"room_id": "room-1"}),
        "notice",
        json!({"text": "10 minutes left"}),
    )
    .await;
    assert_eq!(ack["delivered"], true, "{ack}");
    assert_eq!(first.expect("notice").await["text"], "10 minutes left");
    assert_eq!(second.expect("notice").await["text"], "10 minutes left");

    // force_submit: the sheet is closed; later answers are refused.
    assert_eq!(answer(&mut first, "q1", json!("2"), 1).await["t"], "ack");
    let ack = command(
        &mut dashboard,
        "f",
        one.clone(),
        "force_submit",
        json!({"reason": "notes found"}),
    )
    .await;
    assert_eq!(ack["delivered"], true);
    assert_eq!(first.expect("control").await["action"], "force_submit");
    let state = first.expect("state").await;
    assert_eq!(
        (state["event"].as_str(), state["state"].as_str()),
        (Some("submitted"), Some("force_submitted"))
    );
    assert_eq!(
        answer(&mut first, "q2", json!(["A"]), 2).await["code"],
        "already_submitted"
    );

    // expel: the candidate is out; answers are refused with their own code.
    let ack = command(
        &mut dashboard,
        "x",
        two.clone(),
        "expel",
        json!({"reason": "phone"}),
    )
    .await;
    assert_eq!(ack["delivered"], true);
    assert_eq!(second.expect("control").await["action"], "expel");
    assert_eq!(second.expect("state").await["state"], "expelled");
    assert_eq!(
        answer(&mut second, "q1", json!("1"), 1).await["code"],
        "candidate_expelled"
    );

    // A command the domain refuses comes back on the ack, with its code.
    let ack = command(&mut dashboard, "again", one, "pause", json!({})).await;
    assert_eq!(
        (ack["delivered"].as_bool(), ack["error"]["code"].as_str()),
        (Some(false), Some("already_submitted")),
        "{ack}"
    );

    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(
        (
            status["candidates"]["force_submitted"].as_i64(),
            status["candidates"]["expelled"].as_i64()
        ),
        (Some(1), Some(1)),
        "{status}"
    );
}

async fn a_proctor_cannot_command_another_rooms_candidate(app: &TestApp) {
    open_with(app, 10, &[3]).await;
    let proctor = proctor_token(app, 1).await;
    let response = app
        .http
        .post(app.url("/api/v1/proctor/candidates/cand-0003/commands"))
        .bearer_auth(&proctor)
        .json(&json!({"action": "warn"}))
        .send()
        .await
        .unwrap();
    problem(
        response,
        StatusCode::FORBIDDEN,
        "candidate_not_in_your_rooms",
    )
    .await;
    let response = app
        .http
        .post(app.url("/api/v1/proctor/rooms/room-2/commands"))
        .bearer_auth(&proctor)
        .json(&json!({"action": "pause"}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "room_not_assigned").await;
    problem(
        app.bearer_get("/api/v1/proctor/rooms/room-2", &proctor)
            .await,
        StatusCode::FORBIDDEN,
        "room_not_assigned",
    )
    .await;
    let mut dashboard = Ws::connect(app, "/ws/proctor", &proctor).await;
    dashboard.send(json!({"t": "hello"})).await;
    dashboard.send(json!({"t": "command", "id": "x", "target": {"candidate_id": "cand-0003"}, "action": "expel"})).await;
    let ack = dashboard.expect("command_ack").await;
    assert_eq!(
        (ack["delivered"].as_bool(), ack["error"]["code"].as_str()),
        (Some(false), Some("candidate_not_in_your_rooms"))
    );
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(status["candidates"]["expelled"], 0);
}

async fn proctors_see_answer_progress_within_a_second(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let mut dashboard = Ws::connect(app, "/ws/proctor", &proctor_token(app, 1).await).await;
    dashboard.send(json!({"t": "hello"})).await;
    dashboard.expect("room").await;
    let (mut candidate, _) = Ws::candidate(app, &tokens[0], None).await;
    let sent = Instant::now();
    candidate
        .send(json!({"t": "answer", "q": "q2", "value": ["A", "C"], "cseq": 1}))
        .await;
    loop {
        let frame = dashboard.expect("progress").await;
        let answered = frame["seats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|seat| seat["candidate_id"] == "cand-0001");
        if answered.is_some_and(|seat| seat["answered"] == 1) {
            break;
        }
    }
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "progress took {:?}",
        sent.elapsed()
    );
}

async fn bad_frames_get_error_frames_and_the_socket_stays_open(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let (mut ws, _) = Ws::candidate(app, &tokens[0], None).await;
    ws.send_raw(Message::text("{not json")).await;
    assert_eq!(ws.expect("error").await["code"], "malformed_json");
    ws.send(json!({"t": "dance"})).await;
    assert_eq!(ws.expect("error").await["code"], "unknown_frame_type");
    ws.send(json!({"t": "answer", "q": "q1", "value": "1", "cseq": "seven"}))
        .await;
    assert_eq!(ws.expect("error").await["code"], "invalid_frame");
    ws.send(json!({"t": "hello"})).await;
    assert_eq!(ws.expect("error").await["code"], "already_greeted");
    ws.send(json!({"t": "submit", "really": "no"})).await;
    assert_eq!(
        ws.expect("error").await["code"],
        "invalid_frame",
        "a stray field never submits"
    );
    ws.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(ws.expect("error").await["code"], "text_only");
    // Still open and working.
    assert_eq!(answer(&mut ws, "q1", json!("1"), 1).await["t"], "ack");

    // Sockets need a valid token before the upgrade: the handshake is refused.
    let url = format!(
        "{}/ws/candidate?token=forged",
        app.base.replace("http://", "ws://")
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("a forged token must be refused, got {other:?}"),
    }
}

async fn a_flooding_socket_is_slowed_down_not_dropped(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let (mut ws, _) = Ws::candidate(app, &tokens[0], None).await;
    // 300 frames in well under 3 s: some one-second window sees more than
    // the default 100 frames/s, whatever the machine's pace.
    for _ in 0..300 {
        ws.send(json!({"t": "hb"})).await;
    }
    let refused = ws.expect("error").await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert!(
        refused["cseq"].is_null(),
        "a heartbeat has no cseq: {refused}"
    );
    // Over the limit, a dropped answer is named by its cseq (a burst can
    // straddle two windows on a slow machine: then try again).
    let mut named = None;
    for cseq in 100..105 {
        for _ in 0..150 {
            ws.send(json!({"t": "hb"})).await;
        }
        ws.send(json!({"t": "answer", "q": "q1", "value": "2", "cseq": cseq}))
            .await;
        let outcome = loop {
            let frame = ws.next().await.expect("the socket stays open");
            if frame["cseq"] == cseq {
                break frame;
            }
        };
        if outcome["t"] == "error" {
            named = Some(outcome);
            break;
        }
    }
    let named = named.expect("an answer dropped by the frame limit");
    assert_eq!(named["code"], "rate_limited", "{named}");
    // The socket stays open; once the window passes, answers go through.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(answer(&mut ws, "q1", json!("1"), 1_000).await["t"], "ack");
}

async fn oversized_frames_and_silent_sockets_are_closed_with_a_reason(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    let (mut ws, _) = Ws::candidate(app, &tokens[0], None).await;
    let huge = "x".repeat(100 * 1024);
    ws.send(json!({"t": "answer", "q": "q3", "value": huge, "cseq": 1}))
        .await;
    assert_eq!(ws.closed().await.code, 1009, "over the 64 KiB test limit");

    let mut silent = Ws::connect(app, "/ws/candidate", &tokens[0]).await;
    let closed = silent.closed().await;
    assert_eq!(closed.code, 4408);
    assert!(closed.reason.contains("hello"), "{closed:?}");

    // The proctor socket before its hello: the same rules.
    let proctor = proctor_token(app, 1).await;
    let mut dashboard = Ws::connect(app, "/ws/proctor", &proctor).await;
    dashboard.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(dashboard.expect("error").await["code"], "text_only");
    dashboard
        .send_raw(Message::text("x".repeat(100 * 1024)))
        .await;
    assert_eq!(dashboard.closed().await.code, 1009);

    let mut chatty = Ws::connect(app, "/ws/candidate", &tokens[0]).await;
    chatty.send(json!({"t": "hb"})).await;
    assert_eq!(chatty.expect("error").await["code"], "hello_expected");
    assert_eq!(
        chatty.closed().await.code,
        4408,
        "only a valid hello counts"
    );
}

async fn a_second_login_takes_over_and_is_recorded(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    let (mut first, _) = Ws::candidate(app, &tokens[0], None).await;
    let again = ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await;
    let (mut second, welcome) = Ws::candidate(app, again["token"].as_str().unwrap(), None).await;
    assert_eq!(welcome["resumed"], false);
    let control = first.expect("control").await;
    assert_eq!(control["action"], "reconnect");
    assert_eq!(first.closed().await.code, 4409);
    let proctor = proctor_token(app, 1).await;
    let recorded = wait_until(Duration::from_secs(5), || async {
        let room = ok_json(
            app.bearer_get("/api/v1/proctor/rooms/room-1", &proctor)
                .await,
        )
        .await;
        room["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|incident| {
                incident["kind"] == "duplicate_login"
                    && incident["candidate_id"] == "cand-0001"
                    && incident["source"] == "rule"
            })
    })
    .await;
    assert!(recorded, "the takeover is an incident");
    // The new socket is the live one.
    second.send(json!({"t": "hb", "ts": 1})).await;
    second.close().await;
}

async fn client_events_become_incidents_proctors_review(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let proctor = proctor_token(app, 1).await;
    let mut dashboard = Ws::connect(app, "/ws/proctor", &proctor).await;
    dashboard.send(json!({"t": "hello"})).await;
    dashboard.expect("room").await;
    let (mut ws, _) = Ws::candidate(app, &tokens[0], None).await;
    ws.send(json!({"t": "event", "kind": "copy_paste", "detail": {"chars": 120}}))
        .await;
    let incident = dashboard.expect("incident").await;
    assert_eq!(
        (incident["kind"].as_str(), incident["source"].as_str()),
        (Some("copy_paste"), Some("client"))
    );
    assert_eq!(
        (incident["severity"].as_str(), incident["status"].as_str()),
        (Some("high"), Some("open"))
    );
    // The copy-paste rule escalates it (source rule), once.
    let escalated = dashboard.expect("incident").await;
    assert_eq!(
        (escalated["kind"].as_str(), escalated["source"].as_str()),
        (Some("copy_paste_detected"), Some("rule"))
    );
    ws.send(json!({"t": "event", "kind": "Not A Kind"})).await;
    assert_eq!(ws.expect("error").await["code"], "invalid_incident");

    let id = incident["id"].as_str().unwrap();
    let reviewed = app
        .http
        .patch(app.url(&format!("/api/v1/proctor/incidents/{id}")))
        .bearer_auth(&proctor)
        .json(&json!({"status": "confirmed", "action": "warn"}))
        .send()
        .await
        .unwrap();
    let reviewed = ok_json(reviewed).await;
    assert_eq!(
        (
            reviewed["status"].as_str(),
            reviewed["resolved_by"].as_str()
        ),
        (Some("confirmed"), Some("proctor-1"))
    );
    let twice = app
        .http
        .patch(app.url(&format!("/api/v1/proctor/incidents/{id}")))
        .bearer_auth(&proctor)
        .json(&json!({"status": "dismissed"}))
        .send()
        .await
        .unwrap();
    problem(twice, StatusCode::CONFLICT, "incident_already_resolved").await;

    let reported = app
        .http
        .post(app.url("/api/v1/proctor/incidents"))
        .bearer_auth(&proctor)
        .json(&json!({"candidate_id": "cand-0001", "kind": "cheat_sheet", "note": "paper under the desk"}))
        .send()
        .await
        .unwrap();
    let reported = ok_json(reported).await;
    assert_eq!(
        (reported["source"].as_str(), reported["status"].as_str()),
        (Some("proctor"), Some("open"))
    );
    // Open: the rule's escalation and the proctor's report.
    let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
    assert_eq!(status["incidents_open"], 2);
}

async fn control_characters_in_free_text_are_refused_and_harm_no_one(app: &TestApp) {
    let tokens = open_with(app, 10, &[1, 3]).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let proctor = proctor_token(app, 1).await;
    // A candidate of the other room answers throughout.
    let (mut other, _) = Ws::candidate(app, &tokens[1], None).await;
    let post = |path: &str, body: Value| {
        app.http
            .post(app.url(path))
            .bearer_auth(&proctor)
            .json(&body)
            .send()
    };
    for (cseq, (path, body)) in [
        (
            "/api/v1/proctor/incidents",
            json!({"candidate_id": "cand-0001", "kind": "other", "note": "a\u{0}b"}),
        ),
        (
            "/api/v1/proctor/rooms/room-1/commands",
            json!({"action": "notice", "text": "bell\u{7}"}),
        ),
        (
            "/api/v1/proctor/rooms/room-1/commands",
            json!({"action": "notice", "text": "   "}),
        ),
        (
            "/api/v1/proctor/candidates/cand-0001/commands",
            json!({"action": "warn", "reason": "x\u{0}"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        problem(
            post(path, body).await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text",
        )
        .await;
        let ack = answer(&mut other, "q1", json!("1"), cseq as i64 + 1).await;
        assert_eq!(ack["t"], "ack", "the other room is unaffected: {ack}");
    }
    // Newlines and tabs are text, not control: a multi-line note is fine.
    let note = ok_json(
        post(
            "/api/v1/proctor/incidents",
            json!({"candidate_id": "cand-0001", "kind": "other", "note": "line 1\n\tline 2"}),
        )
        .await
        .unwrap(),
    )
    .await;
    let id = note["id"].as_str().unwrap();
    let review = app
        .http
        .patch(app.url(&format!("/api/v1/proctor/incidents/{id}")))
        .bearer_auth(&proctor)
        .json(&json!({"status": "confirmed", "action": "warn\u{0}ed"}))
        .send()
        .await
        .unwrap();
    problem(review, StatusCode::UNPROCESSABLE_ENTITY, "invalid_text").await;
}

async fn rest_answers_and_submit_take_the_same_path(app: &TestApp) {
    let tokens = open_with(app, 10, &[1]).await;
    let put = |cseq: i64, value: Value| {
        app.http
            .put(app.url("/api/v1/candidate/answers/q1"))
            .bearer_auth(&tokens[0])
            .json(&json!({"value": value, "cseq": cseq}))
            .send()
    };
    problem(
        put(1, json!("1")).await.unwrap(),
        StatusCode::CONFLICT,
        "exam_not_running",
    )
    .await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    assert_eq!(
        ok_json(put(1, json!("1")).await.unwrap()).await,
        json!({"cseq": 1, "version": 1})
    );
    assert_eq!(
        ok_json(put(1, json!("1")).await.unwrap()).await,
        json!({"cseq": 1, "version": 1}),
        "a repeat"
    );
    assert_eq!(
        ok_json(put(2, json!("4")).await.unwrap()).await,
        json!({"cseq": 2, "version": 2})
    );
    problem(
        put(3, json!("nine")).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_answer",
    )
    .await;
    let submit = app
        .http
        .post(app.url("/api/v1/candidate/submit"))
        .bearer_auth(&tokens[0])
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(submit).await["state"], "submitted");
    problem(
        put(4, json!("1")).await.unwrap(),
        StatusCode::CONFLICT,
        "already_submitted",
    )
    .await;
    let detail = ok_json(
        app.bearer_get("/api/v1/proctor/rooms/room-1", &proctor_token(app, 1).await)
            .await,
    )
    .await;
    assert_eq!(detail["seats"][0]["state"], "submitted");
    assert_eq!(detail["seats"][0]["answered"], 1);
}

/// Database faults in the middle of a live exam, injected from a second
/// connection into the test's own schema (Postgres only: SQLite's locking
/// would turn a stall into a 10 s busy timeout per attempt).
mod postgres_faults {
    use super::*;
    use crate::support::Backend;

    /// Connects and resumes, retrying while the room answers "try again"
    /// (it is finishing its writes before it moves).
    async fn resume_when_ready(
        app: &TestApp,
        token: &str,
        session: &str,
        last_seq: u64,
    ) -> (Ws, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut ws = Ws::connect(app, "/ws/candidate", token).await;
            ws.send(json!({"t": "hello", "resume": {"session": session, "last_seq": last_seq}}))
                .await;
            while let Some(frame) = ws.next().await {
                if frame["t"] == "welcome" {
                    return (ws, frame);
                }
            }
            assert!(Instant::now() < deadline, "the room never came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A started plan with candidate 1 connected (its token, socket and
    /// welcome), and a raw pool on the test's schema.
    async fn connected(app: &TestApp) -> (String, Ws, Value, sqlx::PgPool) {
        let mut tokens = open_with(app, 10, &[1]).await;
        ok_json(app.command("p1", json!({"action": "start"})).await).await;
        let token = tokens.remove(0);
        let (ws, welcome) = Ws::candidate(app, &token, None).await;
        (token, ws, welcome, app.postgres().await)
    }

    /// Takes a lock on the answer journal, held until the transaction ends:
    /// `ACCESS EXCLUSIVE` stops reads too, `EXCLUSIVE` only writes.
    async fn lock_journal(
        pool: &sqlx::PgPool,
        mode: &str,
    ) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut stall = pool.begin().await.expect("begin");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE answer_journal IN {mode} MODE"
        )))
        .execute(&mut *stall)
        .await
        .expect("lock");
        stall
    }

    async fn journal_rows(pool: &sqlx::PgPool, cseq: i64) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM answer_journal WHERE candidate_id = 'cand-0001' AND cseq = $1",
        )
        .bind(cseq)
        .fetch_one(pool)
        .await
        .expect("count")
    }

    /// The database stops answering writes (a table lock held elsewhere):
    /// no ack is sent while the commit cannot happen, the durable view does
    /// not show the answer, and once the database moves again the ack comes.
    #[tokio::test]
    async fn a_stalled_database_delays_acks_and_never_fakes_them() {
        let app = TestApp::spawn(Backend::Postgres).await;
        let (token, mut ws, _, pool) = connected(&app).await;
        let stall = lock_journal(&pool, "ACCESS EXCLUSIVE").await;
        ws.send(json!({"t": "answer", "q": "q1", "value": "2", "cseq": 1}))
            .await;
        let early = tokio::time::timeout(Duration::from_millis(800), ws.next()).await;
        assert!(
            early.is_err(),
            "nothing may be acknowledged during the stall: {early:?}"
        );
        assert_eq!(
            me(&app, &token).await["answers"],
            json!([]),
            "not durable yet"
        );

        stall.rollback().await.expect("release");
        let ack = ws.expect("ack").await;
        assert_eq!(
            (ack["cseq"].as_i64(), ack["version"].as_i64()),
            (Some(1), Some(1))
        );
        assert_eq!(journal_rows(&pool, 1).await, 1);
        pool.close().await;
        app.stop().await;
    }

    /// A commit fails outright: the answer is refused with a code (never
    /// acked), the room retires and tells the socket to reconnect; the
    /// client resends the same cseq once the database is healthy and it is
    /// stored exactly once.
    #[tokio::test]
    async fn a_failed_commit_is_refused_and_the_resent_answer_is_stored_once() {
        let app = TestApp::spawn(Backend::Postgres).await;
        let (token, mut ws, welcome, pool) = connected(&app).await;
        assert_eq!(answer(&mut ws, "q1", json!("1"), 1).await["t"], "ack");

        sqlx::query(
            "ALTER TABLE answer_journal ADD CONSTRAINT refuse_new CHECK (cseq < 2) NOT VALID",
        )
        .execute(&pool)
        .await
        .expect("break the journal");
        let refused = answer(&mut ws, "q2", json!(["A"]), 2).await;
        assert_eq!(
            (refused["t"].as_str(), refused["code"].as_str()),
            (Some("error"), Some("store_unavailable")),
            "{refused}"
        );
        assert_eq!(
            ws.closed().await.code,
            4000,
            "the room retires and asks for a reconnect"
        );
        assert_eq!(journal_rows(&pool, 2).await, 0);

        sqlx::query("ALTER TABLE answer_journal DROP CONSTRAINT refuse_new")
            .execute(&pool)
            .await
            .expect("heal the journal");
        let session = welcome["session"].as_str().unwrap().to_string();
        let (mut back, _) = Ws::candidate(&app, &token, Some((&session, 1))).await;
        let ack = answer(&mut back, "q2", json!(["A"]), 2).await;
        assert_eq!(
            (ack["t"].as_str(), ack["version"].as_i64()),
            (Some("ack"), Some(1)),
            "{ack}"
        );
        let again = answer(&mut back, "q2", json!(["A"]), 2).await;
        assert_eq!(again["version"], 1);
        assert_eq!(journal_rows(&pool, 2).await, 1);
        assert_eq!(
            me(&app, &token).await["answers"],
            json!([{"question_id": "q1", "version": 1}, {"question_id": "q2", "version": 1}])
        );
        pool.close().await;
        app.stop().await;
    }

    /// A write fails while a later one of the same room is still queued
    /// behind it. The room retires but waits for the queued write: it
    /// commits, its ack goes into the resume buffer, and only then may the
    /// room come back (reading a settled store). The client resumes and
    /// finds the ack.
    #[tokio::test]
    async fn a_retiring_room_finishes_its_writes_and_the_acks_survive() {
        let app = TestApp::spawn(Backend::Postgres).await;
        let (token, mut ws, welcome, pool) = connected(&app).await;
        let session = welcome["session"].as_str().unwrap().to_string();
        let first = answer(&mut ws, "q1", json!("1"), 1).await;
        assert_eq!(first["t"], "ack");
        let seen = first["seq"].as_u64().unwrap();

        // Writes stall; when they resume, cseq 2 is refused by the database.
        let mut stall = lock_journal(&pool, "EXCLUSIVE").await;
        sqlx::query(
            "ALTER TABLE answer_journal ADD CONSTRAINT refuse_two CHECK (cseq <> 2) NOT VALID",
        )
        .execute(&mut *stall)
        .await
        .expect("constraint");
        ws.send(json!({"t": "answer", "q": "q2", "value": ["A"], "cseq": 2}))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await; // its batch is in flight
        ws.send(json!({"t": "answer", "q": "q3", "value": "x", "cseq": 3}))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await; // queued behind it
        stall.commit().await.expect("release");

        let refused = ws.expect("error").await;
        assert_eq!(
            (refused["cseq"].as_i64(), refused["code"].as_str()),
            (Some(2), Some("store_unavailable")),
            "{refused}"
        );
        assert_eq!(ws.closed().await.code, 4000);

        let (mut back, welcome) = resume_when_ready(&app, &token, &session, seen).await;
        assert_eq!(welcome["resumed"], true, "{welcome}");
        let replayed = back.expect_next("ack").await;
        assert_eq!(
            (replayed["cseq"].as_i64(), replayed["version"].as_i64()),
            (Some(3), Some(1)),
            "{replayed}"
        );
        assert_eq!(journal_rows(&pool, 2).await, 0);
        assert_eq!(journal_rows(&pool, 3).await, 1);
        assert_eq!(
            welcome["state"]["answers"],
            json!({"q1": 1, "q3": 1}),
            "the room came back from a store with every settled write"
        );
        // cseq 2 is below an accepted one now: it is resent with a new number.
        assert_eq!(
            answer(&mut back, "q2", json!(["A"]), 2).await["code"],
            "cseq_not_increasing"
        );
        sqlx::query("ALTER TABLE answer_journal DROP CONSTRAINT refuse_two")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(answer(&mut back, "q2", json!(["A"]), 4).await["version"], 1);
        pool.close().await;
        app.stop().await;
    }

    /// An answer superseded in memory whose write has not committed yet is
    /// resent (a REST retry, a resend after reconnect): it waits for that
    /// commit and is acked with its own version — not refused.
    #[tokio::test]
    async fn a_resent_answer_still_in_flight_is_acked_once_it_commits() {
        let app = TestApp::spawn(Backend::Postgres).await;
        let (_, mut ws, _, pool) = connected(&app).await;
        // Writes stall; reads (the journal lookup of old cseqs) do not.
        let stall = lock_journal(&pool, "EXCLUSIVE").await;
        ws.send(json!({"t": "answer", "q": "q1", "value": "1", "cseq": 1}))
            .await;
        ws.send(json!({"t": "answer", "q": "q1", "value": "2", "cseq": 2}))
            .await;
        ws.send(json!({"t": "answer", "q": "q1", "value": "1", "cseq": 1}))
            .await;
        ws.send(json!({"t": "answer", "q": "q2", "value": ["A"], "cseq": 1}))
            .await;
        let conflict = ws.expect("error").await;
        assert_eq!(
            (conflict["cseq"].as_i64(), conflict["code"].as_str()),
            (Some(1), Some("cseq_conflict")),
            "{conflict}"
        );
        let early = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        assert!(early.is_err(), "nothing acked before the commit: {early:?}");
        stall.rollback().await.expect("release");

        let mut acks = Vec::new();
        while acks.len() < 3 {
            let ack = ws.expect("ack").await;
            acks.push((
                ack["cseq"].as_i64().unwrap(),
                ack["version"].as_i64().unwrap(),
            ));
        }
        acks.sort_unstable();
        assert_eq!(acks, vec![(1, 1), (1, 1), (2, 2)]);
        assert_eq!(journal_rows(&pool, 1).await, 1);
        pool.close().await;
        app.stop().await;
    }

    /// The end's write fails in one room: the admin hears that not every
    /// room confirmed (503), and once the database heals the coordinator
    /// tells the room again — its candidates are submitted without anyone
    /// connecting or repeating the command.
    #[tokio::test]
    async fn an_end_a_room_missed_is_completed_by_the_coordinator() {
        let app = TestApp::spawn(Backend::Postgres).await;
        open_with(&app, 10, &[1, 2]).await;
        ok_json(app.command("p1", json!({"action": "start"})).await).await;
        let pool = app.postgres().await;
        sqlx::query("ALTER TABLE candidates ADD CONSTRAINT no_submit CHECK (state <> 'submitted') NOT VALID")
            .execute(&pool)
            .await
            .expect("break submits");
        let response = app.command("p1", json!({"action": "end"})).await;
        problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
        let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
        assert_eq!(
            status["clock"]["state"], "ended",
            "the plan's own state is saved"
        );

        sqlx::query("ALTER TABLE candidates DROP CONSTRAINT no_submit")
            .execute(&pool)
            .await
            .expect("heal");
        let settled = wait_until(Duration::from_secs(15), || async {
            let status = ok_json(app.admin_get("/api/v1/admin/plans/p1/status").await).await;
            status["candidates"]["submitted"] == 2
        })
        .await;
        assert!(settled, "the coordinator completes the end on its own");
        pool.close().await;
        app.stop().await;
    }
}
