//! OpenAPI tags.

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// The admin server's interface (X-Api-Key).
    Admin,
    /// Candidate and proctor login.
    Auth,
    /// A candidate's own exam (Bearer, role candidate).
    Candidate,
    /// A proctor's rooms (Bearer, role proctor).
    Proctor,
    /// Exam materials: uploads (X-Api-Key), downloads (X-Api-Key or Bearer).
    Files,
    /// Health, readiness.
    Operations,
}
