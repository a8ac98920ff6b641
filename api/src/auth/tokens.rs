//! Bearer tokens: HS256 JWTs carrying the role and the scope (plan, rooms).

use chrono::{DateTime, Utc};
use invigil_actors::domain::{CandidateId, PlanId, ProctorId, RoomId, Timestamp};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

const ISSUER: &str = "invigil";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Candidate,
    Proctor,
}

/// What a token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The candidate or proctor id.
    pub sub: String,
    pub role: Role,
    pub plan: PlanId,
    /// Candidate: their room. Proctor: the rooms they may reach.
    pub rooms: Vec<RoomId>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    /// Token id, for logs.
    pub jti: String,
    /// The plan import the token was issued under (proctors): a re-import
    /// may move proctors between rooms, so older tokens stop working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<String>,
}

impl Claims {
    pub fn candidate_id(&self) -> Result<CandidateId, ApiError> {
        CandidateId::parse(self.sub.as_str())
            .map_err(|_| ApiError::unauthorized("invalid_token", "malformed subject"))
    }

    pub fn proctor_id(&self) -> Result<ProctorId, ApiError> {
        ProctorId::parse(self.sub.as_str())
            .map_err(|_| ApiError::unauthorized("invalid_token", "malformed subject"))
    }

    /// Returns whether the holder may reach `room_id`.
    pub fn reaches_room(&self, room_id: &RoomId) -> bool {
        self.rooms.iter().any(|room| room == room_id)
    }
}

/// What a token grants: to whom, in which role, over which plan and rooms.
pub struct Grant<'a> {
    pub role: Role,
    pub subject: &'a str,
    pub plan: &'a PlanId,
    pub rooms: Vec<RoomId>,
    /// The plan import version (proctor tokens).
    pub ver: Option<String>,
}

/// Issues and verifies tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenIssuer {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Issues a token for `grant`, valid from `now` for `ttl_s` seconds.
    pub fn issue(
        &self,
        grant: Grant<'_>,
        now: Timestamp,
        ttl_s: i64,
    ) -> Result<(String, DateTime<Utc>), ApiError> {
        let iat = now.as_millis() / 1000;
        let exp = iat.saturating_add(ttl_s);
        let claims = Claims {
            sub: grant.subject.to_string(),
            role: grant.role,
            plan: grant.plan.clone(),
            rooms: grant.rooms,
            iat,
            exp,
            iss: ISSUER.to_string(),
            jti: uuid::Uuid::now_v7().simple().to_string(),
            ver: grant.ver,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        let expires_at = DateTime::from_timestamp(exp, 0).unwrap_or_default();
        Ok((token, expires_at))
    }

    /// Verifies a token's signature, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("token_expired", "the token has expired; log in again")
                }
                _ => ApiError::unauthorized("invalid_token", "the token is not valid"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_millis(chrono::Utc::now().timestamp_millis())
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let issuer = TokenIssuer::new(b"a secret of at least thirty-two bytes");
        let plan = PlanId::parse("p").unwrap();
        let (token, _) = issuer
            .issue(
                Grant {
                    role: Role::Proctor,
                    subject: "pr1",
                    plan: &plan,
                    rooms: vec![RoomId::parse("r1").unwrap()],
                    ver: Some("digest".into()),
                },
                now(),
                60,
            )
            .unwrap();
        let claims = issuer.verify(&token).unwrap();
        assert_eq!((claims.role, claims.sub.as_str()), (Role::Proctor, "pr1"));
        assert!(claims.reaches_room(&RoomId::parse("r1").unwrap()));
        assert!(!claims.reaches_room(&RoomId::parse("r2").unwrap()));

        let (old, _) = issuer
            .issue(
                Grant {
                    role: Role::Candidate,
                    subject: "c1",
                    plan: &plan,
                    rooms: vec![],
                    ver: None,
                },
                now().plus_millis(-3_600_000),
                60,
            )
            .unwrap();
        assert_eq!(issuer.verify(&old).unwrap_err().code, "token_expired");
        let other = TokenIssuer::new(b"another secret of thirty-two bytes!");
        assert_eq!(other.verify(&token).unwrap_err().code, "invalid_token");
        assert_eq!(
            issuer.verify("not.a.token").unwrap_err().code,
            "invalid_token"
        );
    }
}
