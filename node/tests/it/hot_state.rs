//! A node with `redis.url` keeps its hot state in Redis: the resume buffer
//! and the session a reconnecting candidate finds are the ones in Redis, so
//! any node of a cluster can serve the resume.

use std::time::Duration;

use invigil_actors::ports::{CandidateKey, HotState};
use invigil_node::config::Secret;
use invigil_store::{RedisHotState, RedisOptions};
use serde_json::json;

use crate::support::{Backend, TestApp, ok_json, plan};
use crate::ws::Ws;

fn redis_url() -> String {
    std::env::var("INVIGIL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// Deletes a test's keys when dropped, also when the test failed.
struct Prefix(String);

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let mut scan = redis::cmd("SCAN");
        scan.cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{}*", self.0))
            .arg("COUNT")
            .arg(1000);
        let keys: Vec<String> = match scan.iter::<String>(&mut connection) {
            Ok(keys) => keys.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _ = redis::cmd("DEL").arg(&keys).query::<u64>(&mut connection);
        }
    }
}

#[tokio::test]
async fn a_candidate_resumes_from_the_buffer_in_redis() {
    let prefix = Prefix(format!("invigil-test:{}:", uuid::Uuid::now_v7().simple()));
    let mut options = RedisOptions::new(redis_url());
    options.key_prefix = prefix.0.clone();
    let redis = RedisHotState::connect(options).expect("redis url");
    if let Err(error) = redis.connection().ping().await {
        panic!(
            "Redis at {} is not reachable ({error}); run scripts/ensure-services.sh",
            redis_url()
        );
    }
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.redis.url = Some(Secret::new(redis_url()));
        config.redis.key_prefix = prefix.0.clone();
        config.redis.resume_ttl_s = 600;
    })
    .await;

    ok_json(app.put_plan("p1", &plan("p1", 1, 2)).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let login = ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await;
    let token = login["token"].as_str().unwrap().to_string();
    ok_json(app.command("p1", json!({"action": "start"})).await).await;

    let (mut ws, welcome) = Ws::candidate(&app, &token, None).await;
    let session = welcome["session"].as_str().unwrap().to_string();
    ws.send(json!({"t": "answer", "q": "q1", "value": "1", "cseq": 1}))
        .await;
    ws.expect("ack").await;
    let seen = ws.last_seq;
    ws.close().await;

    // While away: a warning, numbered and buffered in Redis.
    let proctor = ok_json(app.login_proctor("p1-proctor-1", "password-1").await).await;
    let warn = app
        .http
        .post(app.url("/api/v1/proctor/candidates/cand-0001/commands"))
        .bearer_auth(proctor["token"].as_str().unwrap())
        .json(&json!({"action": "warn", "reason": "eyes on your screen"}))
        .send()
        .await
        .unwrap();
    ok_json(warn).await;

    let key = CandidateKey {
        plan_id: "p1".parse().unwrap(),
        candidate_id: "cand-0001".parse().unwrap(),
    };
    assert!(
        redis.last_outbound_seq(&key).await.unwrap() > seen,
        "the warning is in the Redis buffer"
    );
    let claim = redis
        .session(&key)
        .await
        .unwrap()
        .expect("a session in Redis");
    assert_eq!(
        (claim.session_id.as_str(), claim.node_id.as_str()),
        (session.as_str(), "test-node")
    );

    let (mut back, welcome) = Ws::candidate(&app, &token, Some((&session, seen))).await;
    assert_eq!(welcome["resumed"], true);
    let control = back.expect_next("control").await;
    assert_eq!(control["action"], "warn");
    assert_eq!(control["seq"].as_u64().unwrap(), seen + 1, "no hole");
    back.close().await;
    app.stop().await;
}
