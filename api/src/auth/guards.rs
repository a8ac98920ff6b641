//! The security schemes routes declare: the admin server's API key, and
//! bearer tokens per role. A missing or bad credential is 401; a valid token
//! of the wrong role is 403.

use invigil_actors::domain::{CandidateId, PlanId, RoomId};
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{ApiKey, Bearer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::tokens::{Claims, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// The admin server, authenticated by `X-Api-Key`.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-Api-Key",
    key_in = "header",
    checker = "check_admin_key"
)]
pub struct AdminKey(());

/// A candidate's bearer token.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_candidate")]
pub struct CandidateToken(pub Claims);

/// A proctor's bearer token.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_proctor")]
pub struct ProctorToken(pub Claims);

/// The configured admin API keys, kept as SHA-256 digests and compared in
/// constant time.
#[derive(Clone, Default)]
pub struct AdminKeys(Vec<[u8; 32]>);

impl AdminKeys {
    pub fn new<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Self {
        Self(keys.into_iter().map(|key| digest(key.as_ref())).collect())
    }

    pub fn accepts(&self, key: &str) -> bool {
        let offered = digest(key);
        // Compare against every key so timing does not reveal which matched.
        self.0.iter().fold(false, |found, known| {
            found | bool::from(known.ct_eq(&offered))
        })
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn state(request: &Request) -> poem::Result<&AppState> {
    request
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("application state is missing").into())
}

async fn check_admin_key(request: &Request, key: ApiKey) -> poem::Result<()> {
    if state(request)?.admin_keys.accepts(&key.key) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("invalid_api_key", "the X-Api-Key is not valid").into())
    }
}

fn check_role(request: &Request, bearer: &Bearer, role: Role) -> poem::Result<Claims> {
    let claims = state(request)?.tokens.verify(&bearer.token)?;
    if claims.role != role {
        let needed = match role {
            Role::Candidate => "candidate",
            Role::Proctor => "proctor",
        };
        return Err(ApiError::forbidden(
            "wrong_role",
            format!("this route is for the {needed} role"),
        )
        .into());
    }
    Ok(claims)
}

async fn check_candidate(request: &Request, bearer: Bearer) -> poem::Result<Claims> {
    check_role(request, &bearer, Role::Candidate)
}

async fn check_proctor(request: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let claims = check_role(request, &bearer, Role::Proctor)?;
    check_plan_version(state(request)?, &claims).await?;
    Ok(claims)
}

/// Refuses a proctor token issued under an earlier import of its plan: the
/// re-import may have moved the proctor to other rooms.
pub async fn check_plan_version(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    let Some(version) = &claims.ver else {
        return Ok(());
    };
    let current = state.plans.plan_digest(&claims.plan).await?;
    match current {
        Some((digest, _)) if &crate::login::token_version(&digest) == version => Ok(()),
        _ => Err(ApiError::unauthorized(
            "token_stale",
            "the plan was imported again since this login; log in again",
        )),
    }
}

/// Verifies a socket's `?token=`: present, valid, of the right role, and
/// (for a proctor) issued under the plan's current import. Sockets cannot
/// send headers from a browser, so the bearer token comes in the query.
pub async fn verify_socket_token(
    state: &AppState,
    token: Option<&str>,
    role: Role,
) -> Result<Claims, ApiError> {
    let token = token.ok_or_else(|| {
        ApiError::unauthorized("missing_credentials", "connect with ?token=<bearer token>")
    })?;
    let claims = state.tokens.verify(token)?;
    if claims.role != role {
        return Err(ApiError::forbidden(
            "wrong_role",
            "this socket is for another role",
        ));
    }
    check_plan_version(state, &claims).await?;
    Ok(claims)
}

/// The seat a candidate's socket token names: plan, room, candidate.
pub async fn candidate_seat(
    state: &AppState,
    token: Option<&str>,
) -> Result<(PlanId, RoomId, CandidateId), ApiError> {
    let claims = verify_socket_token(state, token, Role::Candidate).await?;
    match (claims.candidate_id(), claims.rooms.first()) {
        (Ok(candidate_id), Some(room_id)) => {
            Ok((claims.plan.clone(), room_id.clone(), candidate_id))
        }
        _ => Err(ApiError::unauthorized(
            "invalid_token",
            "the token names no candidate room",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::AdminKeys;

    #[test]
    fn any_configured_key_is_accepted() {
        let keys = AdminKeys::new(["first-key-0123456", "second-key-012345"]);
        assert!(keys.accepts("second-key-012345"));
        assert!(!keys.accepts("second-key-01234"));
        assert!(!AdminKeys::default().accepts(""));
    }
}
