//! The work queue and the hot state on real Redis, under faults: a worker
//! killed mid-batch, poison entries, a Redis restart in the middle of an
//! exam. The restart test runs its own `redis-server` on a free port, so it
//! never disturbs the shared one other tests use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use invigil_actors::domain::Timestamp;
use invigil_actors::ports::{LogEntry, LogKind, WorkItem, WorkQueue};
use invigil_actors::workers::consumer::{Consume, Outcome};
use invigil_actors::workers::logs::LogWorker;
use invigil_actors::workers::{
    ConsumerConfig, LogPayload, WorkerActor, WorkerArgs, WorkerCounters, topics,
};
use invigil_store::redis::{RedisOptions, RedisWorkQueue};
use ractor::Actor;
use serde_json::json;

use crate::support::{Backend, TestApp, ok_json, plan, wait_for};
use crate::ws::Ws;

fn redis_url() -> String {
    std::env::var("INVIGIL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_prefix() -> String {
    format!("it-{}:", uuid::Uuid::now_v7().simple())
}

/// Deletes a test's keys.
async fn forget(prefix: &str) {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .expect("del");
    }
}

/// A node on the shared Redis under `prefix`, with the test's own settings.
async fn spawn_on_redis(
    backend: Backend,
    prefix: &str,
    configure: impl FnOnce(&mut invigil_node::config::Config) + Send + 'static,
) -> TestApp {
    let prefix = prefix.to_string();
    TestApp::spawn_with(backend, move |config| {
        config.redis.url = Some(invigil_node::config::Secret::new(redis_url()));
        config.redis.key_prefix = prefix;
        configure(config);
    })
    .await
}

fn queue(prefix: &str) -> Arc<dyn WorkQueue> {
    let mut options = RedisOptions::new(redis_url());
    options.key_prefix = prefix.to_string();
    Arc::new(RedisWorkQueue::connect(options).expect("redis url"))
}

fn log_line(plan: &str, n: usize) -> Vec<u8> {
    serde_json::to_vec(&LogPayload::new(LogEntry {
        plan_id: plan.parse().unwrap(),
        kind: LogKind::System,
        subject: None,
        room_id: None,
        message: format!("line {n}"),
        detail: json!({"n": n}),
        at: Timestamp::from_millis(1_700_000_000_000 + n as i64),
    }))
    .unwrap()
}

/// Rows of a plan's system log lines, and how many distinct entry ids.
async fn log_rows(app: &TestApp, plan: &str) -> (i64, i64) {
    let pool = app.postgres().await;
    let counts = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT entry_id) FROM logs WHERE plan_id = $1 AND kind = 'system'",
    )
    .bind(plan)
    .fetch_one(&pool)
    .await
    .expect("logs readable");
    pool.close().await;
    counts
}

/// Writes its batch, then hangs before acknowledging it: a worker that dies
/// between its effect and its ack.
struct DiesAfterWriting(LogWorker);

#[async_trait]
impl Consume for DiesAfterWriting {
    fn topic(&self) -> &'static str {
        self.0.topic()
    }

    fn group(&self) -> &'static str {
        self.0.group()
    }

    async fn consume(&mut self, items: &[WorkItem]) -> Vec<Outcome> {
        let _ = self.0.consume(items).await;
        std::future::pending().await
    }
}

fn consumer_config(batch: usize) -> ConsumerConfig {
    ConsumerConfig {
        batch,
        wait: Duration::from_millis(100),
        min_idle: Duration::from_millis(500),
        reclaim_every: Duration::from_millis(100),
        max_deliveries: 5,
    }
}

#[tokio::test]
async fn a_worker_killed_mid_batch_is_reclaimed_without_double_effect() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let prefix = unique_prefix();
    let queue = queue(&prefix);
    let store = Arc::new(app.store().await);
    let lines: Vec<Vec<u8>> = (0..300).map(|n| log_line("kill-test", n)).collect();
    queue
        .publish(topics::LOGS, &lines)
        .await
        .expect("published");

    let (doomed, _) = Actor::spawn(
        None,
        WorkerActor::<DiesAfterWriting>::default(),
        WorkerArgs {
            queue: queue.clone(),
            consumer_name: "doomed".into(),
            consumer: DiesAfterWriting(LogWorker::new(store.clone())),
            config: consumer_config(100),
            counters: Arc::new(WorkerCounters::default()),
            metrics: invigil_actors::metrics::Metrics::noop(),
        },
    )
    .await
    .unwrap();
    // Its first batch is in the database, not acknowledged: then it dies.
    wait_for(Duration::from_secs(10), async || {
        (log_rows(&app, "kill-test").await.0 >= 100).then_some(())
    })
    .await
    .expect("the first batch written");
    doomed.kill();

    let counters = Arc::new(WorkerCounters::default());
    let (survivor, _) = Actor::spawn(
        None,
        WorkerActor::<LogWorker>::default(),
        WorkerArgs {
            queue: queue.clone(),
            consumer_name: "survivor".into(),
            consumer: LogWorker::new(store.clone()),
            config: consumer_config(100),
            counters: counters.clone(),
            metrics: invigil_actors::metrics::Metrics::noop(),
        },
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(15), async || {
        (counters.acked.load(std::sync::atomic::Ordering::Relaxed) >= 300).then_some(())
    })
    .await
    .expect("every entry acknowledged by the survivor");
    assert!(
        counters
            .reclaimed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 100
    );
    // The reclaimed batch was written twice and stored once.
    assert_eq!(log_rows(&app, "kill-test").await, (300, 300));
    // Nothing is left pending for anyone.
    let left = queue
        .reclaim(
            topics::LOGS,
            LogWorker::GROUP,
            "auditor",
            Duration::ZERO,
            1_000,
        )
        .await
        .unwrap();
    assert!(left.is_empty(), "{} entries still pending", left.len());
    survivor.stop(None);
    app.stop().await;
    forget(&prefix).await;
}

#[tokio::test]
async fn poison_entries_land_in_the_dead_letter_stream_and_can_be_replayed() {
    let prefix = unique_prefix();
    let app = spawn_on_redis(Backend::Postgres, &prefix, |config| {
        config.workers.max_deliveries = 2;
        config.workers.min_idle_ms = 1_000;
        config.workers.reclaim_every_ms = 200;
        config.workers.fetch_wait_ms = 100;
    })
    .await;
    let queue = queue(&prefix);
    // Undecodable; refused by Postgres every time (a NUL byte); and fine.
    let mut refused = log_line("poison-test", 1);
    let text = String::from_utf8(refused)
        .unwrap()
        .replace("line 1", "line\\u0000one");
    refused = text.into_bytes();
    queue
        .publish(
            topics::LOGS,
            &[b"{not json".to_vec(), refused, log_line("poison-test", 2)],
        )
        .await
        .unwrap();

    let parked = wait_for(Duration::from_secs(15), async || {
        let letters = ok_json(app.admin_get("/api/v1/admin/queue/logs/dead-letters").await).await;
        (letters.as_array()?.len() == 2).then_some(letters)
    })
    .await
    .expect("both poison entries parked");
    let payloads: Vec<&str> = parked
        .as_array()
        .unwrap()
        .iter()
        .map(|letter| letter["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads[0], "{not json", "undecodable: parked at once");
    assert!(payloads[1].contains("line\\u0000one"), "{payloads:?}");
    assert!(parked[1]["deliveries"].as_u64().unwrap() >= 2, "{parked}");
    // The good one is stored once.
    assert_eq!(log_rows(&app, "poison-test").await, (1, 1));

    // An operator replays the undecodable one: it comes back, and is parked again.
    let id = parked[0]["id"].as_str().unwrap().to_string();
    let replayed = app
        .http
        .post(app.url(&format!(
            "/api/v1/admin/queue/logs/dead-letters/{id}/replay"
        )))
        .header("x-api-key", crate::support::API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(replayed).await, json!({"replayed": true}));
    let again = app
        .http
        .post(app.url(&format!(
            "/api/v1/admin/queue/logs/dead-letters/{id}/replay"
        )))
        .header("x-api-key", crate::support::API_KEY)
        .send()
        .await
        .unwrap();
    crate::support::problem(
        again,
        reqwest::StatusCode::NOT_FOUND,
        "dead_letter_not_found",
    )
    .await;
    wait_for(Duration::from_secs(10), async || {
        let letters = ok_json(app.admin_get("/api/v1/admin/queue/logs/dead-letters").await).await;
        (letters.as_array()?.len() == 2).then_some(())
    })
    .await
    .expect("parked again after the replay");
    let unknown = app.admin_get("/api/v1/admin/queue/nope/dead-letters").await;
    crate::support::problem(unknown, reqwest::StatusCode::NOT_FOUND, "unknown_topic").await;
    app.stop().await;
    forget(&prefix).await;
}

/// A `redis-server` of this test's own, on a free port, without persistence
/// (a restart loses everything, like a crashed cache).
struct PrivateRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut redis = Self { port, child: None };
        redis.launch().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (scripts/ensure-services.sh installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not listen on {}", self.port);
    }

    /// SIGKILL: everything it held is gone.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

#[tokio::test]
async fn a_redis_restart_mid_exam_loses_no_acked_answer_and_the_node_recovers() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    let app = TestApp::spawn_with(Backend::Postgres, move |config| {
        config.redis.url = Some(invigil_node::config::Secret::new(url));
        config.redis.op_timeout_ms = 200;
        config.workers.fetch_wait_ms = 100;
    })
    .await;
    let mut body = plan("p1", 1, 3);
    body["settings"]["incident_rules"] = json!({"focus_lost_count": 3});
    ok_json(app.put_plan("p1", &body).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let mut tokens = Vec::new();
    for n in 1..=3 {
        let login = ok_json(
            app.login_candidate("p1", &format!("R{n:04}"), &format!("code-{n:04}"))
                .await,
        )
        .await;
        tokens.push(login["token"].as_str().unwrap().to_string());
    }
    ok_json(app.command("p1", json!({"action": "start"})).await).await;

    // Three candidates answer continuously; Redis dies and comes back.
    let mut sockets = Vec::new();
    for token in &tokens {
        sockets.push(Ws::candidate(&app, token, None).await.0);
    }
    let mut acked: Vec<(usize, i64)> = Vec::new();
    let mut cseq = 0;
    let started = Instant::now();
    let mut killed = false;
    let mut restarted = false;
    while started.elapsed() < Duration::from_secs(6) {
        cseq += 1;
        for (n, ws) in sockets.iter_mut().enumerate() {
            let answer = json!({"t": "answer", "q": "q1", "value": (cseq % 4 + 1).to_string(), "cseq": cseq});
            ws.send(answer.clone()).await;
            let sent = Instant::now();
            let frame = loop {
                let frame = ws.next().await.unwrap_or_else(|| {
                    panic!(
                        "socket closed waiting for cand {n} cseq {cseq} at {:?} (killed {killed}, restarted {restarted})",
                        started.elapsed()
                    )
                });
                if frame["cseq"] != cseq {
                    continue;
                }
                // Faster than the socket's frame limit: slow down, resend.
                if frame["code"] == "rate_limited" {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    ws.send(answer.clone()).await;
                    continue;
                }
                break frame;
            };
            let waited = sent.elapsed();
            assert!(
                waited < Duration::from_secs(3),
                "cand {n} cseq {cseq} waited {waited:?} for its ack (killed {killed}, restarted {restarted})"
            );
            assert_eq!(
                frame["t"], "ack",
                "answers are acked while Redis is down: {frame}"
            );
            acked.push((n, cseq));
        }
        if !killed && started.elapsed() > Duration::from_secs(1) {
            redis.kill().await;
            killed = true;
        }
        if killed && !restarted && started.elapsed() > Duration::from_secs(3) {
            redis.launch().await;
            restarted = true;
        }
    }
    assert!(restarted);
    assert!(acked.len() > 30, "only {} acks", acked.len());

    // Every acked answer is durable.
    let pool = app.postgres().await;
    for (n, cseq) in &acked {
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM answer_journal WHERE plan_id = 'p1' AND candidate_id = $1 AND cseq = $2",
        )
        .bind(format!("cand-{:04}", n + 1))
        .bind(cseq)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(stored, 1, "acked answer cand {n} cseq {cseq}");
    }
    pool.close().await;

    // The node recovered by itself: resume buffers fill again and replay …
    let ws = &mut sockets[0];
    ws.send(json!({"t": "answer", "q": "q2", "value": ["A"], "cseq": cseq + 1}))
        .await;
    ws.expect("ack").await;
    let welcome = wait_for(Duration::from_secs(5), async || {
        let (mut again, welcome) = Ws::candidate(&app, &tokens[1], None).await;
        let session = welcome["session"].as_str().unwrap().to_string();
        again
            .send(json!({"t": "answer", "q": "q2", "value": ["B"], "cseq": cseq + 1}))
            .await;
        again.expect("ack").await;
        let seq = again.last_seq;
        again.close().await;
        let (_, resumed) = Ws::candidate(&app, &tokens[1], Some((&session, seq - 1))).await;
        (resumed["resumed"] == true).then_some(resumed)
    })
    .await;
    assert!(welcome.is_some(), "resume works again after the restart");

    // … and the queue's consumer groups are back: a focus-loss burst is escalated.
    let proctor = ok_json(app.login_proctor("p1-proctor-1", "password-1").await).await;
    let proctor = proctor["token"].as_str().unwrap().to_string();
    let ws = &mut sockets[2];
    for _ in 0..3 {
        ws.send(json!({"t": "event", "kind": "focus_lost"})).await;
    }
    let escalated = wait_for(Duration::from_secs(10), async || {
        let room = ok_json(
            app.bearer_get("/api/v1/proctor/rooms/room-1", &proctor)
                .await,
        )
        .await;
        room["incidents"]
            .as_array()?
            .iter()
            .any(|incident| incident["kind"] == "focus_lost_repeated")
            .then_some(())
    })
    .await;
    assert!(
        escalated.is_some(),
        "the rules worker runs again after the restart"
    );
    app.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn failed_logins_count_across_nodes_sharing_redis() {
    let prefix = unique_prefix();
    let first = spawn_on_redis(Backend::Sqlite, &prefix, |_| {}).await;
    let second = spawn_on_redis(Backend::Sqlite, &prefix, |_| {}).await;
    for app in [&first, &second] {
        ok_json(app.put_plan("p1", &plan("p1", 1, 2)).await).await;
        ok_json(app.command("p1", json!({"action": "open"})).await).await;
    }
    // The limit is 5 failures per window (see support.rs): 3 on one node,
    // 2 on the other …
    for _ in 0..3 {
        let wrong = first.login_candidate("p1", "R0001", "wrong-code").await;
        crate::support::problem(
            wrong,
            reqwest::StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    for _ in 0..2 {
        let wrong = second.login_candidate("p1", "R0001", "wrong-code").await;
        crate::support::problem(
            wrong,
            reqwest::StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    // … and both refuse the account, even with the right code.
    for app in [&first, &second] {
        let blocked = app.login_candidate("p1", "R0001", "code-0001").await;
        crate::support::problem(
            blocked,
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
        )
        .await;
    }
    // Another account is not affected.
    ok_json(second.login_candidate("p1", "R0002", "code-0002").await).await;
    first.stop().await;
    second.stop().await;
    forget(&prefix).await;
}

#[tokio::test]
async fn a_redelivered_rule_input_never_reopens_a_resolved_incident() {
    let prefix = unique_prefix();
    let app = spawn_on_redis(Backend::Sqlite, &prefix, |config| {
        config.workers.fetch_wait_ms = 100;
    })
    .await;
    let mut body = plan("p1", 1, 2);
    body["settings"]["incident_rules"] = json!({"focus_lost_count": 3, "copy_paste": false});
    ok_json(app.put_plan("p1", &body).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let login = ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await;
    ok_json(app.command("p1", json!({"action": "start"})).await).await;
    let proctor = ok_json(app.login_proctor("p1-proctor-1", "password-1").await).await;
    let proctor = proctor["token"].as_str().unwrap().to_string();
    let (mut ws, _) = Ws::candidate(&app, login["token"].as_str().unwrap(), None).await;
    for _ in 0..3 {
        ws.send(json!({"t": "event", "kind": "focus_lost"})).await;
    }
    let repeated = async || {
        let room = ok_json(
            app.bearer_get("/api/v1/proctor/rooms/room-1", &proctor)
                .await,
        )
        .await;
        room["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|incident| incident["kind"] == "focus_lost_repeated")
            .cloned()
            .collect::<Vec<_>>()
    };
    let escalated = wait_for(Duration::from_secs(5), async || {
        repeated().await.into_iter().next()
    })
    .await
    .expect("the burst escalated");
    // The proctor dismisses it.
    let id = escalated["id"].as_str().unwrap();
    let dismissed = app
        .http
        .patch(app.url(&format!("/api/v1/proctor/incidents/{id}")))
        .bearer_auth(&proctor)
        .json(&json!({"status": "dismissed"}))
        .send()
        .await
        .unwrap();
    ok_json(dismissed).await;

    // The same three events arrive again (as after a consumer crash).
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<Entry> = redis::cmd("XRANGE")
        .arg(format!("{prefix}q:events"))
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let payloads: Vec<Vec<u8>> = entries
        .into_iter()
        .flat_map(|(_, fields)| fields.into_iter().map(|(_, value)| value))
        .filter(|payload| String::from_utf8_lossy(payload).contains("focus_lost"))
        .collect();
    assert_eq!(payloads.len(), 3);
    queue(&prefix)
        .publish(topics::EVENTS, &payloads)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        repeated().await.is_empty(),
        "a redelivered input reopened the dismissed incident"
    );
    app.stop().await;
    forget(&prefix).await;
}
