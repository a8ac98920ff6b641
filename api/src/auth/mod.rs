//! Authentication: credential hashing, tokens, route guards, login limits.
//!
//! # Layout
//! - `secrets`: argon2 passwords, keyed access-code hashes, import digests
//! - `tokens`: HS256 JWTs with role and scope
//! - `guards`: the OpenAPI security schemes (API key, bearer per role) and socket tokens
//! - `limiter`: failed-login limits

pub mod guards;
pub mod limiter;
pub mod secrets;
pub mod tokens;

pub use guards::{
    AdminKey, AdminKeys, CandidateToken, ProctorToken, candidate_seat, verify_socket_token,
};
pub use limiter::LoginLimiter;
pub use secrets::{Argon2Cost, CredentialHasher};
pub use tokens::{Claims, Role, TokenIssuer};
