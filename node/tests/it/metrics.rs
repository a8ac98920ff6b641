//! `GET /metrics`: the exposition parsed with a Prometheus text parser —
//! every family of docs/observability.md with its type and label keys,
//! non-zero where traffic happened, nothing from a request in a label, and
//! a series count that does not grow with the number of candidates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prometheus_parse::{Scrape, Value as Sample};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Backend, TestApp, ok_json, plan};
use crate::ws::Ws;

/// Every family: (name as exposed, type, label keys).
const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("invigil_answers_acked_total", "counter", &[]),
    ("invigil_answers_refused_total", "counter", &["code"]),
    ("invigil_answer_ack_seconds", "histogram", &[]),
    ("invigil_journal_batch_entries", "histogram", &[]),
    ("invigil_journal_commit_seconds", "histogram", &[]),
    ("invigil_journal_stale_epoch_rejected_total", "counter", &[]),
    ("invigil_sockets", "gauge", &["role"]),
    (
        "invigil_socket_frames_total",
        "counter",
        &["role", "direction"],
    ),
    ("invigil_socket_closes_total", "counter", &["role", "code"]),
    ("invigil_resumes_total", "counter", &["outcome"]),
    ("invigil_control_delivery_seconds", "histogram", &[]),
    ("invigil_candidates", "gauge", &["state"]),
    ("invigil_candidates_connection", "gauge", &["connection"]),
    ("invigil_rooms_active", "gauge", &[]),
    ("invigil_rooms_dark", "gauge", &[]),
    ("invigil_incidents_total", "counter", &["kind", "source"]),
    ("invigil_plan_state", "gauge", &["state"]),
    ("invigil_cluster_members", "gauge", &["status"]),
    ("invigil_shards_owned", "gauge", &[]),
    ("invigil_shard_handoffs_total", "counter", &["reason"]),
    ("invigil_lease_renewal_seconds", "histogram", &[]),
    ("invigil_self_fenced_total", "counter", &[]),
    ("invigil_transport_calls_total", "counter", &["outcome"]),
    ("invigil_forwarded_requests_total", "counter", &["kind"]),
    ("invigil_queue_pending", "gauge", &["topic"]),
    (
        "invigil_queue_processed_total",
        "counter",
        &["topic", "outcome"],
    ),
    ("invigil_queue_dead_letters", "gauge", &["topic"]),
    (
        "invigil_http_requests_total",
        "counter",
        &["route", "method", "status_class"],
    ),
    (
        "invigil_http_request_seconds",
        "histogram",
        &["route", "method", "status_class"],
    ),
    ("invigil_logins_total", "counter", &["role", "outcome"]),
    ("invigil_process_resident_memory_bytes", "gauge", &[]),
    ("invigil_process_open_fds", "gauge", &[]),
    ("invigil_process_max_fds", "gauge", &[]),
    ("invigil_process_cpu_seconds_total", "counter", &[]),
    ("invigil_runtime_alive_tasks", "gauge", &[]),
    ("invigil_runtime_workers", "gauge", &[]),
    ("invigil_build_info", "gauge", &["version"]),
];

struct Exposition {
    text: String,
    scrape: Scrape,
}

impl Exposition {
    async fn of(app: &TestApp) -> Self {
        let response = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = response.text().await.unwrap();
        let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("parses");
        Self { text, scrape }
    }

    /// The `# TYPE` of each family.
    fn types(&self) -> BTreeMap<&str, &str> {
        self.text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_once(' '))
            .collect()
    }

    /// The value of `name` with exactly `labels` (counters and gauges), or
    /// the observation count (histograms).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.scrape
            .samples
            .iter()
            .filter(|sample| sample.metric == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .map(|sample| match &sample.value {
                Sample::Counter(value) | Sample::Gauge(value) | Sample::Untyped(value) => *value,
                Sample::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
                Sample::Summary(_) => f64::NAN,
            })
            .reduce(|a, b| a + b)
    }

    /// Every series: metric name and sorted labels.
    fn series(&self) -> BTreeSet<String> {
        self.scrape
            .samples
            .iter()
            .map(|sample| format!("{}{{{}}}", sample.metric, sample.labels))
            .collect()
    }
}

#[tokio::test]
async fn every_family_is_exposed_with_its_type_labels_and_traffic() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    ok_json(app.put_plan("p1", &plan("p1", 1, 3)).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let login = ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await;
    let token = login["token"].as_str().unwrap().to_string();
    let refused = app.login_candidate("p1", "R0002", "wrong-code").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    ok_json(app.command("p1", json!({"action": "start"})).await).await;

    let (mut ws, welcome) = Ws::candidate(&app, &token, None).await;
    let session = welcome["session"].as_str().unwrap().to_string();
    ws.send(json!({"t": "answer", "q": "q1", "value": "2", "cseq": 1}))
        .await;
    ws.expect("ack").await;
    ws.send(json!({"t": "answer", "q": "q1", "value": "nine", "cseq": 2}))
        .await;
    ws.expect("error").await;
    ws.send(json!({"t": "event", "kind": "focus_lost"})).await;
    ws.close().await;
    // A resume on a new socket.
    let (ws, welcome) = Ws::candidate(&app, &token, Some((&session, 1))).await;
    assert_eq!(welcome["t"], "welcome");
    // A proctor's command delivered to the connected candidate.
    let proctor = ok_json(app.login_proctor("p1-proctor-1", "password-1").await).await;
    let warn = app
        .http
        .post(app.url("/api/v1/proctor/candidates/cand-0001/commands"))
        .bearer_auth(proctor["token"].as_str().unwrap())
        .json(&json!({"action": "warn", "reason": "eyes on your screen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(warn).await["delivered"], true);

    // The room reports its seats at its tick.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let metrics = Exposition::of(&app).await;
    let types = metrics.types();
    for (name, kind, keys) in FAMILIES {
        assert_eq!(
            types.get(name).copied(),
            Some(*kind),
            "{name} has type {kind}"
        );
        for sample in metrics.scrape.samples.iter().filter(|s| s.metric == *name) {
            let found: BTreeSet<&str> = sample
                .labels
                .keys()
                .map(String::as_str)
                .filter(|key| *key != "le")
                .collect();
            let expected: BTreeSet<&str> = keys.iter().copied().collect();
            assert_eq!(found, expected, "label keys of {name}");
        }
    }
    let positive = |name: &str, labels: &[(&str, &str)]| {
        let value = metrics.value(name, labels);
        assert!(
            value.is_some_and(|v| v > 0.0),
            "{name}{labels:?} = {value:?}"
        );
    };
    positive("invigil_answers_acked_total", &[]);
    positive(
        "invigil_answers_refused_total",
        &[("code", "invalid_answer")],
    );
    positive("invigil_answer_ack_seconds", &[]);
    positive("invigil_journal_batch_entries", &[]);
    positive("invigil_journal_commit_seconds", &[]);
    positive("invigil_sockets", &[("role", "candidate")]);
    positive(
        "invigil_socket_frames_total",
        &[("role", "candidate"), ("direction", "in")],
    );
    positive(
        "invigil_socket_frames_total",
        &[("role", "candidate"), ("direction", "out")],
    );
    positive("invigil_socket_closes_total", &[("role", "candidate")]);
    positive("invigil_resumes_total", &[("outcome", "replayed")]);
    positive("invigil_control_delivery_seconds", &[]);
    positive("invigil_lease_renewal_seconds", &[]);
    positive("invigil_candidates", &[("state", "testing")]);
    positive("invigil_candidates", &[("state", "registered")]);
    positive("invigil_candidates_connection", &[("connection", "online")]);
    positive("invigil_rooms_active", &[]);
    positive(
        "invigil_incidents_total",
        &[("kind", "focus_lost"), ("source", "client")],
    );
    positive("invigil_plan_state", &[("state", "in_progress")]);
    positive("invigil_shards_owned", &[]);
    positive("invigil_shard_handoffs_total", &[("reason", "acquired")]);
    positive(
        "invigil_http_requests_total",
        &[
            ("route", "/api/v1/auth/candidate"),
            ("method", "POST"),
            ("status_class", "2xx"),
        ],
    );
    positive(
        "invigil_http_requests_total",
        &[("route", "/api/v1/auth/candidate"), ("status_class", "4xx")],
    );
    positive(
        "invigil_logins_total",
        &[("role", "candidate"), ("outcome", "ok")],
    );
    positive(
        "invigil_logins_total",
        &[("role", "candidate"), ("outcome", "refused")],
    );
    positive("invigil_process_resident_memory_bytes", &[]);
    positive("invigil_process_open_fds", &[]);
    positive("invigil_runtime_alive_tasks", &[]);
    assert_eq!(
        metrics.value("invigil_shards_owned", &[]),
        Some(1024.0),
        "alone, the node holds every shard"
    );
    // Nothing a client sent is a label value: no token, id or code.
    for secret in [token.as_str(), "cand-0001", "code-0001", "R0001", "nine"] {
        assert!(!metrics.text.contains(secret), "{secret} in the exposition");
    }
    ws.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_series_count_does_not_grow_with_candidates() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    ok_json(app.put_plan("p1", &plan("p1", 10, 50)).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    // Every candidate logs in, answers over REST and opens a socket, and
    // some also send a wrong code and an unknown path.
    let mut series_after = Vec::new();
    let mut sockets = Vec::new();
    // The first scrape counts itself from then on.
    Exposition::of(&app).await;
    for n in 1..=500 {
        let login = ok_json(
            app.login_candidate("p1", &format!("R{n:04}"), &format!("code-{n:04}"))
                .await,
        )
        .await;
        let token = login["token"].as_str().unwrap().to_string();
        let saved = app
            .http
            .put(app.url("/api/v1/candidate/answers/q1"))
            .bearer_auth(&token)
            .json(&json!({"value": "2", "cseq": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), StatusCode::OK);
        let missing = app
            .http
            .get(app.url(&format!("/api/v1/nothing/{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        if n % 10 == 0 {
            let _ = app
                .login_candidate("p1", &format!("R{n:04}"), "wrong")
                .await;
            let (ws, _) = Ws::candidate(&app, &token, None).await;
            sockets.push(ws);
        }
        if n == 50 || n == 500 {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            series_after.push(Exposition::of(&app).await.series());
        }
    }
    let (first, last) = (&series_after[0], &series_after[1]);
    let grew: Vec<&String> = last.difference(first).collect();
    assert!(
        grew.is_empty(),
        "series added between 50 and 500 candidates: {grew:?}"
    );
    assert!(first.len() < 600, "{} series", first.len());
    for ws in sockets {
        ws.close().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| config.metrics.enabled = false).await;
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    app.stop().await;
}
