//! `invigil demo`: one node on embedded SQLite with a seeded demo plan.
//!
//! The data directory keeps the database and the demo's secrets, so a
//! restart reuses both; the plan is seeded only when it is absent. The demo's
//! credentials are fixed and printed: it is a demo, not an exam.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{Duration as ChronoDuration, Utc};
use invigil_actors::domain::{PlanCommand, PlanId};
use invigil_api::admin::dto::{
    CandidateBody, PlanImport, ProctorBody, QuestionBody, QuestionKindBody, RoomBody, SettingsBody,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{Config, LogFormat, Secret};

pub const DEMO_PLAN_ID: &str = "demo-2026";
pub const ROOMS: usize = 3;
pub const CANDIDATES_PER_ROOM: usize = 30;
pub const QUESTIONS: usize = 20;

pub struct DemoOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub api_key: String,
    pub reset: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoSecrets {
    jwt_secret: String,
    access_code_secret: String,
}

fn random_hex(bytes: usize) -> String {
    let buffer: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buffer)
}

/// Reads the demo's secrets from the data directory, creating them once.
fn load_or_create_secrets(data_dir: &Path) -> anyhow::Result<DemoSecrets> {
    let path = data_dir.join("demo-secrets.toml");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return toml::from_str(&text).with_context(|| format!("parsing {}", path.display()));
    }
    let secrets = DemoSecrets {
        jwt_secret: random_hex(32),
        access_code_secret: random_hex(32),
    };
    std::fs::write(&path, toml::to_string(&secrets)?)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(secrets)
}

/// The configuration of a demo node.
pub fn config(options: &DemoOptions) -> anyhow::Result<Config> {
    if options.reset && options.data_dir.exists() {
        std::fs::remove_dir_all(&options.data_dir)
            .with_context(|| format!("removing {}", options.data_dir.display()))?;
    }
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("creating {}", options.data_dir.display()))?;
    let secrets = load_or_create_secrets(&options.data_dir)?;
    let mut config = Config::default();
    config.node.id = "demo".into();
    config.node.listen = options.listen;
    config.node.shutdown_grace_s = 5;
    config.store.url = Secret::new(format!(
        "sqlite:{}",
        options.data_dir.join("invigil.db").display()
    ));
    config.store.max_connections = 4;
    config.auth.api_keys = vec![Secret::new(options.api_key.clone())];
    config.auth.jwt_secret = Secret::new(secrets.jwt_secret);
    config.auth.access_code_secret = Secret::new(secrets.access_code_secret);
    config.telemetry.log_format = LogFormat::Pretty;
    config.telemetry.log_filter = "info,sqlx=warn".into();
    config.validate()?;
    Ok(config)
}

/// Registration number and access code of demo candidate `n` (1-based).
pub fn candidate_credentials(n: usize) -> (String, String) {
    (format!("D{n:04}"), format!("demo-{n:04}"))
}

/// The demo plan: 3 rooms of 30 candidates, a proctor per room, 20 questions
/// of every kind.
pub fn plan() -> PlanImport {
    let questions = (1..=QUESTIONS)
        .map(|n| {
            let id = format!("q{n:02}");
            match n {
                1..=12 => QuestionBody {
                    id,
                    kind: QuestionKindBody::Single,
                    choices: (1..=4).map(|c| c.to_string()).collect(),
                    answer: json!(((n % 4) + 1).to_string()),
                    points: 4.0,
                },
                13..=16 => QuestionBody {
                    id,
                    kind: QuestionKindBody::Multi,
                    choices: ["A", "B", "C", "D", "E"].map(String::from).to_vec(),
                    answer: json!(["A", "C"]),
                    points: 5.0,
                },
                _ => QuestionBody {
                    id,
                    kind: QuestionKindBody::Text,
                    choices: vec![],
                    answer: json!(["서울", "Seoul"]),
                    points: 3.0,
                },
            }
        })
        .collect();
    let rooms = (1..=ROOMS)
        .map(|room| RoomBody {
            id: format!("room-{room}"),
            name: format!("제{room}시험실 (Room {room})"),
            capacity: CANDIDATES_PER_ROOM as i64,
        })
        .collect();
    let proctors = (1..=ROOMS)
        .map(|room| ProctorBody {
            id: format!("proctor-{room}"),
            name: format!("감독관 {room}"),
            login: format!("proctor{room}"),
            password: format!("demo-pass-{room}"),
            room_ids: vec![format!("room-{room}")],
        })
        .collect();
    let candidates = (1..=ROOMS * CANDIDATES_PER_ROOM)
        .map(|n| {
            let (reg_no, access_code) = candidate_credentials(n);
            let room = (n - 1) / CANDIDATES_PER_ROOM + 1;
            CandidateBody {
                id: format!("cand-{n:04}"),
                reg_no,
                name: format!("수험자 {n:02}"),
                room_id: format!("room-{room}"),
                seat: Some(((n - 1) % CANDIDATES_PER_ROOM + 1).to_string()),
                access_code,
                extra_time_s: if n % CANDIDATES_PER_ROOM == 0 { 600 } else { 0 },
            }
        })
        .collect();
    PlanImport {
        title: "invigil demo — 2026 mock exam".into(),
        starts_at: Utc::now() + ChronoDuration::minutes(10),
        duration_s: 3_600,
        settings: SettingsBody {
            heartbeat_s: Some(10),
            late_entry_s: Some(600),
            max_text_chars: Some(2_000),
            incident_rules: None,
        },
        questions,
        rooms,
        proctors,
        candidates,
    }
}

/// Seeds the demo plan (open for check-in) unless it exists; returns whether it seeded.
pub async fn seed(state: &invigil_api::AppState) -> anyhow::Result<bool> {
    let plan_id = PlanId::parse(DEMO_PLAN_ID)?;
    if state.plans.plan_digest(&plan_id).await?.is_some() {
        return Ok(false);
    }
    invigil_api::admin::import_plan(state, plan_id.clone(), plan())
        .await
        .map_err(|error| anyhow::anyhow!("seeding the demo plan: {error}"))?;
    state
        .exam
        .plan_command(&plan_id, &PlanCommand::Open)
        .await
        .map_err(|error| anyhow::anyhow!("opening the demo plan: {error}"))?;
    Ok(true)
}

/// What the demo prints once it serves.
pub fn banner(addr: SocketAddr, options: &DemoOptions, seeded: bool, plan_state: &str) -> String {
    let base = format!("http://{addr}");
    let key = &options.api_key;
    let (first_reg, first_code) = candidate_credentials(1);
    let (last_reg, last_code) = candidate_credentials(ROOMS * CANDIDATES_PER_ROOM);
    [
        String::new(),
        format!(
            "invigil demo — embedded SQLite at {}/invigil.db {}",
            options.data_dir.display(),
            if seeded { "(demo plan seeded)" } else { "(reused)" }
        ),
        String::new(),
        format!("  OpenAPI        {base}/openapi.json   Swagger UI  {base}/docs"),
        format!("  Health         {base}/healthz        Ready       {base}/readyz"),
        format!("  Admin API key  {key}   (header X-Api-Key)"),
        String::new(),
        format!(
            "  Plan {DEMO_PLAN_ID} ({plan_state}): {ROOMS} rooms x {CANDIDATES_PER_ROOM} candidates, {QUESTIONS} questions"
        ),
        format!("  Candidates     reg_no {first_reg} … {last_reg}, access code {first_code} … {last_code}"),
        "                 (room-1: D0001-D0030, room-2: D0031-D0060, room-3: D0061-D0090)".to_string(),
        "  Proctors       proctor1 / demo-pass-1 (room-1), proctor2 / demo-pass-2, proctor3 / demo-pass-3".to_string(),
        String::new(),
        format!("  Try  curl -s {base}/api/v1/admin/plans/{DEMO_PLAN_ID}/status -H 'X-Api-Key: {key}'"),
        "  Stop with Ctrl-C; start over with --reset.".to_string(),
    ]
    .join("\n")
}
