//! Queue workers against a real node: incident rules reach the proctor's
//! room view, a room going offline together is one connectivity incident,
//! log lines arrive in the database, statistics are served, webhooks are
//! signed and retried.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestApp, ok_json, plan, wait_for};
use crate::ws::Ws;

crate::on_both_backends!(
    a_focus_loss_burst_reaches_the_proctor_within_two_seconds,
    a_room_going_offline_together_is_one_connectivity_incident,
    a_candidate_going_offline_alone_is_their_own_incident,
    candidate_logs_reach_the_database_through_the_queue,
    statistics_show_answers_per_choice_and_progress_per_room,
);

/// Imports a one-room plan of `candidates`, opens it, logs everyone in and
/// starts it; returns their tokens and the proctor's.
async fn started(app: &TestApp, candidates: usize, settings: Value) -> (Vec<String>, String) {
    let mut body = plan("p1", 1, candidates);
    body["settings"] = settings;
    ok_json(app.put_plan("p1", &body).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let mut tokens = Vec::new();
    for n in 1..=candidates {
        let login = ok_json(
            app.login_candidate("p1", &format!("R{n:04}"), &format!("code-{n:04}"))
                .await,
        )
        .await;
        tokens.push(login["token"].as_str().unwrap().to_string());
    }
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let proctor = ok_json(app.login_proctor("p1-proctor-1", "password-1").await).await;
    (tokens, proctor["token"].as_str().unwrap().to_string())
}

/// The room's open incidents as the proctor sees them.
async fn open_incidents(app: &TestApp, proctor: &str) -> Vec<Value> {
    let room = ok_json(
        app.bearer_get("/api/v1/proctor/rooms/room-1", proctor)
            .await,
    )
    .await;
    room["incidents"].as_array().cloned().unwrap_or_default()
}

async fn a_focus_loss_burst_reaches_the_proctor_within_two_seconds(app: &TestApp) {
    let (tokens, proctor) = started(
        app,
        2,
        json!({"heartbeat_s": 10, "incident_rules": {"focus_lost_count": 4, "focus_lost_window_s": 30}}),
    )
    .await;
    let mut dashboard = Ws::connect(app, "/ws/proctor", &proctor).await;
    dashboard.send(json!({"t": "hello"})).await;
    dashboard.expect("room").await;
    let (mut ws, _) = Ws::candidate(app, &tokens[0], None).await;
    for _ in 0..3 {
        ws.send(json!({"t": "event", "kind": "focus_lost"})).await;
    }
    // Three are below the threshold: only the client's own incidents.
    for _ in 0..3 {
        let incident = dashboard.expect("incident").await;
        assert_eq!(incident["kind"], "focus_lost", "{incident}");
    }
    ws.send(json!({"t": "event", "kind": "focus_lost"})).await;
    let sent = Instant::now();
    let escalated = loop {
        let incident = dashboard.expect("incident").await;
        if incident["kind"] == "focus_lost_repeated" {
            break incident;
        }
    };
    let elapsed = sent.elapsed();
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(
        (
            escalated["source"].as_str(),
            escalated["severity"].as_str(),
            escalated["candidate_id"].as_str()
        ),
        (Some("rule"), Some("high"), Some("cand-0001"))
    );
    // More focus losses while it is open add no second escalation.
    for _ in 0..3 {
        ws.send(json!({"t": "event", "kind": "focus_lost"})).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let repeated = open_incidents(app, &proctor)
        .await
        .into_iter()
        .filter(|incident| incident["kind"] == "focus_lost_repeated")
        .count();
    assert_eq!(repeated, 1);
}

async fn a_room_going_offline_together_is_one_connectivity_incident(app: &TestApp) {
    let (tokens, proctor) = started(
        app,
        6,
        json!({"heartbeat_s": 1, "incident_rules": {"connectivity_window_s": 2}}),
    )
    .await;
    let mut sockets = Vec::new();
    for token in &tokens {
        sockets.push(Ws::candidate(app, token, None).await.0);
    }
    // The room's network fails: every socket drops at once.
    for ws in sockets {
        ws.close().await;
    }
    wait_for(Duration::from_secs(5), async || {
        let room = ok_json(
            app.bearer_get("/api/v1/proctor/rooms/room-1", &proctor)
                .await,
        )
        .await;
        room["seats"]
            .as_array()?
            .iter()
            .all(|seat| seat["connection"] == "stale")
            .then_some(())
    })
    .await
    .expect("every seat stale once its socket closed");
    // Past the offline threshold (6 heartbeats), then past the window.
    app.clock.advance(Duration::from_secs(7));
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.clock.advance(Duration::from_secs(3));
    let connectivity = wait_for(Duration::from_secs(5), async || {
        let incidents = open_incidents(app, &proctor).await;
        incidents
            .iter()
            .any(|incident| incident["kind"] == "connectivity")
            .then_some(incidents)
    })
    .await;
    let Some(connectivity) = connectivity else {
        panic!(
            "no connectivity incident within 5 s; incidents {:?}; logs {:?}",
            open_incidents(app, &proctor).await,
            app.logs("p1", "candidate").await
        );
    };
    // Every decision is made by now; give stragglers a moment anyway.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let incidents = open_incidents(app, &proctor).await;
    let kinds: Vec<&str> = incidents
        .iter()
        .filter_map(|incident| incident["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["connectivity"],
        "{incidents:?} (first seen {connectivity:?})"
    );
    let room_level = &incidents[0];
    assert!(room_level["candidate_id"].is_null(), "{room_level}");
    assert_eq!(room_level["source"], "rule");
}

async fn a_candidate_going_offline_alone_is_their_own_incident(app: &TestApp) {
    let (tokens, proctor) = started(
        app,
        6,
        json!({"heartbeat_s": 1, "incident_rules": {"connectivity_window_s": 2}}),
    )
    .await;
    let mut sockets = Vec::new();
    for token in &tokens {
        sockets.push(Ws::candidate(app, token, None).await.0);
    }
    let leaving = sockets.remove(0);
    leaving.close().await;
    // Time passes; everyone else keeps sending heartbeats.
    for _ in 0..10 {
        app.clock.advance(Duration::from_secs(1));
        for ws in &mut sockets {
            ws.send(json!({"t": "hb", "ts": 1})).await;
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let incidents = wait_for(Duration::from_secs(5), async || {
        let incidents = open_incidents(app, &proctor).await;
        incidents
            .iter()
            .any(|incident| incident["kind"] == "went_offline")
            .then_some(incidents)
    })
    .await
    .expect("a went_offline incident within 5 s");
    let offline: Vec<&Value> = incidents
        .iter()
        .filter(|incident| incident["kind"] == "went_offline")
        .collect();
    assert_eq!(offline.len(), 1, "{incidents:?}");
    assert_eq!(offline[0]["candidate_id"], "cand-0001");
    assert!(
        !incidents
            .iter()
            .any(|incident| incident["kind"] == "connectivity"),
        "{incidents:?}"
    );
}

async fn candidate_logs_reach_the_database_through_the_queue(app: &TestApp) {
    let (tokens, _) = started(app, 2, json!({"heartbeat_s": 10})).await;
    let (mut ws, _) = Ws::candidate(app, &tokens[1], None).await;
    ws.send(json!({"t": "event", "kind": "tab_switch"})).await;
    let found = wait_for(Duration::from_secs(5), async || {
        let messages = app.logs("p1", "candidate").await;
        (messages.contains(&("connected".into(), Some("cand-0002".into())))
            && messages.contains(&("client_event".into(), Some("cand-0002".into()))))
        .then_some(messages)
    })
    .await;
    assert!(found.is_some(), "candidate log lines in the database");
}

async fn statistics_show_answers_per_choice_and_progress_per_room(app: &TestApp) {
    let (tokens, _) = started(app, 3, json!({"heartbeat_s": 10})).await;
    for (n, choice) in [(0, "2"), (1, "2"), (2, "4")] {
        let (mut ws, _) = Ws::candidate(app, &tokens[n], None).await;
        ws.send(json!({"t": "answer", "q": "q1", "value": choice, "cseq": 1}))
            .await;
        ws.expect("ack").await;
        ws.send(json!({"t": "answer", "q": "q2", "value": ["A", "C"], "cseq": 2}))
            .await;
        ws.expect("ack").await;
    }
    let statistics = wait_for(Duration::from_secs(6), async || {
        let statistics = ok_json(app.admin_get("/api/v1/admin/plans/p1/statistics").await).await;
        (statistics["answers"] == 6).then_some(statistics)
    })
    .await
    .expect("statistics refreshed within seconds");
    let q1 = &statistics["questions"][0];
    assert_eq!(q1["question_id"], "q1");
    assert_eq!(q1["answered"], 3);
    assert_eq!(q1["choices"], json!({"1": 0, "2": 2, "3": 0, "4": 1}));
    let q2 = &statistics["questions"][1];
    assert_eq!(q2["choices"], json!({"A": 3, "B": 0, "C": 3}));
    let room = &statistics["rooms"][0];
    assert_eq!(room["room_id"], "room-1");
    assert_eq!(room["candidates"], 3);
    assert_eq!(room["answers"], 6);
    assert_eq!(room["answers_per_candidate"], 2.0);
    assert_eq!(statistics["by_state"]["testing"], 3);
    let unknown = app.admin_get("/api/v1/admin/plans/nope/statistics").await;
    crate::support::problem(unknown, reqwest::StatusCode::NOT_FOUND, "plan_not_found").await;
}

/// A receiver that refuses the first `failures` requests with 503.
struct Receiver {
    base: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(poem::http::HeaderMap, String)>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(failures: usize) -> Self {
        use poem::{EndpointExt, IntoResponse, handler, web::Data};
        type Seen = std::sync::Arc<std::sync::Mutex<Vec<(poem::http::HeaderMap, String)>>>;
        #[handler]
        fn hook(
            request: &poem::Request,
            body: String,
            seen: Data<&(Seen, usize)>,
        ) -> poem::Response {
            let (seen, failures) = *seen;
            let mut seen = seen.lock().unwrap();
            seen.push((request.headers().clone(), body));
            if seen.len() <= *failures {
                poem::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
            } else {
                poem::http::StatusCode::NO_CONTENT.into_response()
            }
        }
        let seen: Seen = Default::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let app = poem::Route::new()
            .at("/hook", poem::post(hook))
            .data((seen.clone(), failures));
        let server = tokio::spawn(async move {
            let _ = poem::Server::new(poem::listener::TcpListener::bind(address))
                .run(app)
                .await;
        });
        // Until it accepts.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            base: format!("http://{address}"),
            seen,
            _server: server,
        }
    }

    fn requests(&self) -> Vec<(poem::http::HeaderMap, String)> {
        self.seen.lock().unwrap().clone()
    }
}

const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";

/// Checks `X-Invigil-Signature` the way a receiver would.
fn signed(headers: &poem::http::HeaderMap, body: &str) -> bool {
    let Some(signature) = headers
        .get("x-invigil-signature")
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some(at) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|at| at.parse::<i64>().ok())
    else {
        return false;
    };
    invigil_actors::workers::webhook::signature(WEBHOOK_SECRET, at, body.as_bytes()) == signature
}

#[tokio::test]
async fn plan_notices_reach_the_admin_webhook_signed_and_retried() {
    let receiver = Receiver::start(2).await;
    let url = format!("{}/hook", receiver.base);
    let app = TestApp::spawn_with(crate::support::Backend::Sqlite, |config| {
        config.webhook.url = url;
        config.webhook.secret = invigil_node::config::Secret::new(WEBHOOK_SECRET);
        config.webhook.timeout_ms = 2_000;
    })
    .await;
    started(&app, 2, json!({"heartbeat_s": 10})).await;
    ok_json(app.command("p1", json!({"action": "end"})).await).await;
    // Two 503s, then the third attempt of the same delivery succeeds.
    let requests = wait_for(Duration::from_secs(8), async || {
        let requests = receiver.requests();
        (requests.len() >= 3).then_some(requests)
    })
    .await
    .expect("three attempts within 8 s");
    let delivery: Vec<&str> = requests
        .iter()
        .map(|(headers, _)| headers["x-invigil-delivery"].to_str().unwrap())
        .collect();
    assert!(delivery.iter().all(|id| *id == delivery[0]), "{delivery:?}");
    for (headers, body) in &requests {
        assert!(signed(headers, body), "signature of {body}");
        assert_eq!(headers["x-invigil-event"], "plan.ended");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (body["event"].as_str(), body["plan_id"].as_str()),
            (Some("plan.ended"), Some("p1"))
        );
        assert_eq!(body["id"], delivery[0]);
    }
    let (headers, body) = &requests[0];
    let mut forged = body.replace("plan.ended", "plan.finalized");
    assert!(
        !signed(headers, &forged),
        "a changed body fails the signature"
    );
    forged.clear();

    ok_json(app.command("p1", json!({"action": "finalize"})).await).await;
    let finalized = wait_for(Duration::from_secs(5), async || {
        receiver
            .requests()
            .into_iter()
            .find(|(headers, _)| headers["x-invigil-event"] == "plan.finalized")
    })
    .await
    .expect("plan.finalized within 5 s");
    assert!(signed(&finalized.0, &finalized.1));
    // Delivered once each: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.requests().len(), 4);
    app.stop().await;
}
