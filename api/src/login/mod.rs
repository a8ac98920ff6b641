//! `POST /api/v1/auth/candidate` and `POST /api/v1/auth/proctor`.
//!
//! Unknown accounts and wrong secrets get the same 401 `invalid_credentials`
//! after the same work, so responses reveal nothing; repeated failures for
//! one account are limited (429 `too_many_attempts`).

use chrono::{DateTime, Utc};
use invigil_actors::domain::{PlanId, PlanState};
use invigil_actors::ports::ProctorLogin;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;
use tracing::info;

use crate::auth::Role;
use crate::auth::tokens::Grant;
use crate::body::{Body, RequestBodyType};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;

pub struct LoginApi {
    pub state: AppState,
}

#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct CandidateLoginBody {
    pub plan_id: String,
    pub reg_no: String,
    pub access_code: String,
}

impl RequestBodyType for CandidateLoginBody {}

#[derive(Debug, Object)]
pub struct CandidateLoginResponse {
    pub token: String,
    pub candidate_id: String,
    pub room_id: String,
    pub plan_id: String,
    /// The candidate's state after this login (`checked_in`, or `testing` when the exam already runs).
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct ProctorLoginBody {
    pub login: String,
    pub password: String,
    /// Picks the plan when the login exists in several; otherwise the running one is chosen.
    pub plan_id: Option<String>,
}

impl RequestBodyType for ProctorLoginBody {}

#[derive(Debug, Object)]
pub struct ProctorLoginResponse {
    pub token: String,
    pub proctor_id: String,
    pub plan_id: String,
    pub room_ids: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "the credentials are not valid")
}

/// Checks a login field: 1 to `max_chars` characters, none of them control
/// characters (which no stored value contains, and Postgres refuses NUL).
fn bounded(value: &str, field: &'static str, max_chars: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.chars().count() > max_chars || value.chars().any(char::is_control)
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field} must be 1 to {max_chars} characters without control characters"),
        )
        .with_field(field));
    }
    Ok(())
}

/// The part of a plan's import digest a proctor token carries.
pub fn token_version(plan_digest: &str) -> String {
    plan_digest.chars().take(16).collect()
}

fn too_many_attempts(seconds: i64) -> ApiError {
    ApiError::new(
        poem::http::StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed logins for this account; retry in {seconds} s"),
    )
}

impl LoginApi {
    /// Refuses early, before any database work, while an account is blocked
    /// (on this node, or by its failures across the cluster).
    async fn check_not_blocked(&self, account: &str) -> Result<(), ApiError> {
        let limiter = &self.state.login_limiter;
        let now = self.state.clock.now();
        if let Some(seconds) = limiter.blocked_for(account, now) {
            return Err(too_many_attempts(seconds));
        }
        match limiter.blocked_across_nodes(account, now).await {
            Some(seconds) => Err(too_many_attempts(seconds)),
            None => Ok(()),
        }
    }

    /// A wrong secret for an existing account.
    async fn failed(&self, account: &str) -> ApiError {
        self.state
            .login_limiter
            .record_failure(account, self.state.clock.now())
            .await;
        invalid_credentials()
    }

    /// Counts an attempt on an existing account before its secret is checked.
    fn begin_attempt(&self, account: &str) -> Result<(), ApiError> {
        self.state
            .login_limiter
            .begin_attempt(account, self.state.clock.now())
            .map_err(too_many_attempts)
    }
}

/// Orders a login's plans: running first, then open, scheduled, ended; the
/// nearest scheduled start breaks ties.
fn plan_priority(login: &ProctorLogin) -> (u8, i64) {
    let rank = match login.plan_state {
        PlanState::InProgress | PlanState::Paused => 0,
        PlanState::Open => 1,
        PlanState::Scheduled => 2,
        PlanState::Ended | PlanState::Finalized => 3,
    };
    (rank, login.starts_at.as_millis())
}

#[OpenApi(prefix_path = "/api/v1")]
impl LoginApi {
    /// Candidate login; checks the candidate in (and begins their exam if it already runs).
    #[oai(path = "/auth/candidate", method = "post", tag = "ApiTags::Auth")]
    async fn candidate(
        &self,
        body: Body<CandidateLoginBody>,
    ) -> Result<Json<CandidateLoginResponse>, ApiError> {
        let result = self.candidate_login(body.0).await;
        self.count("candidate", result.as_ref().err());
        result
    }

    /// Proctor login (argon2id-verified password).
    #[oai(path = "/auth/proctor", method = "post", tag = "ApiTags::Auth")]
    async fn proctor(
        &self,
        body: Body<ProctorLoginBody>,
    ) -> Result<Json<ProctorLoginResponse>, ApiError> {
        let result = self.proctor_login(body.0).await;
        self.count("proctor", result.as_ref().err());
        result
    }
}

impl LoginApi {
    /// `invigil_logins_total`: ok, limited (429), or refused (anything else).
    fn count(&self, role: &'static str, error: Option<&ApiError>) {
        let outcome = match error {
            None => "ok",
            Some(error) if error.code == "too_many_attempts" => "limited",
            Some(_) => "refused",
        };
        self.state.metrics.login(role, outcome);
    }

    async fn candidate_login(
        &self,
        body: CandidateLoginBody,
    ) -> Result<Json<CandidateLoginResponse>, ApiError> {
        let plan_id = PlanId::parse(body.plan_id.as_str()).map_err(|error| {
            ApiError::unprocessable("invalid_id", error.to_string()).with_field("plan_id")
        })?;
        bounded(&body.reg_no, "reg_no", 64)?;
        bounded(&body.access_code, "access_code", 128)?;
        let account = format!("candidate/{plan_id}/{}", body.reg_no);
        self.check_not_blocked(&account).await?;
        let Some(login) = self
            .state
            .plans
            .candidate_login(&plan_id, &body.reg_no)
            .await?
        else {
            self.state.hasher.waste_access_code_check(&body.access_code);
            return Err(invalid_credentials());
        };
        self.begin_attempt(&account)?;
        if !self.state.hasher.verify_access_code(
            &plan_id,
            &login.candidate_id,
            &body.access_code,
            &login.access_code_hash,
        ) {
            return Err(self.failed(&account).await);
        }
        self.state.login_limiter.record_success(&account);
        let state = self
            .state
            .exam
            .check_in(&plan_id, &login.room_id, &login.candidate_id)
            .await?;
        let (token, expires_at) = self.state.tokens.issue(
            Grant {
                role: Role::Candidate,
                subject: login.candidate_id.as_str(),
                plan: &plan_id,
                rooms: vec![login.room_id.clone()],
                ver: None,
            },
            self.state.clock.now(),
            self.state.settings.candidate_token_ttl_s,
        )?;
        Ok(Json(CandidateLoginResponse {
            token,
            candidate_id: login.candidate_id.to_string(),
            room_id: login.room_id.to_string(),
            plan_id: plan_id.to_string(),
            state: state.as_str().to_string(),
            expires_at,
        }))
    }

    async fn proctor_login(
        &self,
        body: ProctorLoginBody,
    ) -> Result<Json<ProctorLoginResponse>, ApiError> {
        bounded(&body.login, "login", 64)?;
        bounded(&body.password, "password", 256)?;
        let plan_filter = body
            .plan_id
            .as_deref()
            .map(PlanId::parse)
            .transpose()
            .map_err(|error| {
                ApiError::unprocessable("invalid_id", error.to_string()).with_field("plan_id")
            })?;
        let account = format!("proctor/{}", body.login);
        self.check_not_blocked(&account).await?;
        let mut logins: Vec<ProctorLogin> = self
            .state
            .plans
            .proctor_logins(&body.login)
            .await?
            .into_iter()
            .filter(|login| {
                plan_filter
                    .as_ref()
                    .is_none_or(|plan| &login.plan_id == plan)
            })
            .collect();
        logins.sort_by_key(plan_priority);
        let known = !logins.is_empty();
        if known {
            self.begin_attempt(&account)?;
        }
        let hasher = self.state.hasher.clone();
        let password = body.password;
        let matched = tokio::task::spawn_blocking(move || {
            if logins.is_empty() {
                // Spend the same time as a real check.
                let _ = hasher.hash_password(&password);
                return None;
            }
            logins
                .into_iter()
                .find(|login| hasher.verify_password(&password, &login.password_hash))
        })
        .await
        .map_err(ApiError::internal)?;
        let Some(login) = matched else {
            return Err(if known {
                self.failed(&account).await
            } else {
                invalid_credentials()
            });
        };
        self.state.login_limiter.record_success(&account);
        let (token, expires_at) = self.state.tokens.issue(
            Grant {
                role: Role::Proctor,
                subject: login.proctor_id.as_str(),
                plan: &login.plan_id,
                rooms: login.room_ids.clone(),
                ver: Some(token_version(&login.plan_digest)),
            },
            self.state.clock.now(),
            self.state.settings.proctor_token_ttl_s,
        )?;
        info!(plan_id = %login.plan_id, proctor_id = %login.proctor_id, "proctor logged in");
        Ok(Json(ProctorLoginResponse {
            token,
            proctor_id: login.proctor_id.to_string(),
            plan_id: login.plan_id.to_string(),
            room_ids: login.room_ids.iter().map(ToString::to_string).collect(),
            expires_at,
        }))
    }
}
