//! Every error the API returns, and the one mapping from errors to HTTP
//! status and stable `code`, rendered as RFC 7807 `application/problem+json`.

use invigil_actors::domain::{DomainError, SpecProblem, SpecProblems};
use invigil_actors::error::{ErrorClass, ExamError, StoreError};
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};
use serde::Serialize;
use tracing::error;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// Names the shard of a `not_owner` problem, for the forwarding layer
/// (`crate::cluster`).
pub const SHARD_HEADER: &str = "x-invigil-shard";

/// One problem in a list of validation problems.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Object)]
pub struct ProblemItem {
    pub code: String,
    pub field: String,
    pub detail: String,
}

/// An RFC 7807 problem document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Object)]
pub struct Problem {
    /// `urn:invigil:problem:<code>`.
    #[serde(rename = "type")]
    #[oai(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// Stable snake_case identifier clients match on.
    pub code: String,
    pub detail: String,
    /// The offending field's path, e.g. `candidates[3].room_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem found, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemItem>>,
    /// How many problems were found in all (more than listed when truncated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_count: Option<usize>,
}

/// An API error: a status, a stable code and a human detail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub field: Option<String>,
    pub errors: Option<(Vec<ProblemItem>, usize)>,
    /// The shard of a `not_owner` refusal (sent as a header for forwarding).
    pub shard: Option<u16>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            field: None,
            errors: None,
            shard: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }

    /// The plan named in the path does not exist.
    pub fn plan_not_found(plan_id: &invigil_actors::domain::PlanId) -> Self {
        Self::not_found("plan_not_found", format!("plan {plan_id} does not exist"))
    }

    /// An unexpected failure: logged in full, answered without internals.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an unexpected error occurred; it was logged",
        )
    }

    pub fn problem(&self) -> Problem {
        let (errors, error_count) = match &self.errors {
            Some((items, total)) => (Some(items.clone()), Some(*total)),
            None => (None, None),
        };
        Problem {
            problem_type: format!("urn:invigil:problem:{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            code: self.code.to_string(),
            detail: self.detail.clone(),
            field: self.field.clone(),
            errors,
            error_count,
        }
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = Response::builder()
            .status(self.status)
            .content_type(PROBLEM_CONTENT_TYPE);
        if self.status == StatusCode::UNAUTHORIZED {
            response = response.header("WWW-Authenticate", "Bearer");
        }
        if let Some(shard) = self.shard {
            response = response.header(SHARD_HEADER, shard.to_string());
        }
        // Every 503 is "not now": say when to come back (RFC 9110 §10.2.3).
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response = response.header("Retry-After", "1");
        }
        response.body(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        poem::error::ResponseError::as_response(&self)
    }
}

/// Describes the problem responses in the OpenAPI document.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let responses = [
            (400, "Malformed request (problem+json)"),
            (401, "Missing or invalid credentials"),
            (403, "Not allowed for this role or scope"),
            (404, "Not found"),
            (409, "Conflicts with the current state"),
            (413, "Body too large"),
            (422, "Invalid field values"),
            (429, "Too many attempts"),
            (503, "Not available on this node right now"),
        ];
        MetaResponses {
            responses: responses
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_CONTENT_TYPE,
                        schema: Problem::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

impl From<SpecProblems> for ApiError {
    fn from(problems: SpecProblems) -> Self {
        let Some(first) = problems.problems.first() else {
            return Self::internal("a validation failure listed no problem");
        };
        let items: Vec<ProblemItem> = problems.problems.iter().map(problem_item).collect();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: first.code,
            detail: if problems.total == 1 {
                first.detail.clone()
            } else {
                format!(
                    "{} (and {} more problems)",
                    first.detail,
                    problems.total - 1
                )
            },
            field: Some(first.field.clone()),
            shard: None,
            errors: Some((items, problems.total)),
        }
    }
}

fn problem_item(problem: &SpecProblem) -> ProblemItem {
    ProblemItem {
        code: problem.code.to_string(),
        field: problem.field.clone(),
        detail: problem.detail.clone(),
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        ExamError::Domain(error).into()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ExamError::Store(error).into()
    }
}

/// The HTTP status of a class of refusal.
pub fn status_of(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorClass::Forbidden => StatusCode::FORBIDDEN,
        ErrorClass::NotFound => StatusCode::NOT_FOUND,
        ErrorClass::Conflict => StatusCode::CONFLICT,
        ErrorClass::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Code, class and detail come from the one table in
/// `invigil_actors::error`; the sockets send the same code and detail.
impl From<ExamError> for ApiError {
    fn from(error: ExamError) -> Self {
        match &error {
            ExamError::Store(store @ (StoreError::Unavailable(_) | StoreError::Internal(_))) => {
                error!(error = %store, "store failure");
            }
            ExamError::Store(corrupt @ StoreError::Corrupt(_)) => return Self::internal(corrupt),
            _ => {}
        }
        let mut refusal = Self::new(status_of(error.class()), error.code(), error.detail());
        if let ExamError::NotOwner(shard) = error {
            refusal.shard = Some(shard.get());
        }
        refusal
    }
}

/// Turns any error escaping a handler (router misses, extractor failures,
/// panics) into a problem document.
pub fn problem_response(error: poem::Error) -> Response {
    if let Some(api) = error.downcast_ref::<ApiError>() {
        return api.clone().into_response();
    }
    let status = error.status();
    let api = if error.is::<poem::error::NotFoundError>() || status == StatusCode::NOT_FOUND {
        ApiError::not_found("route_not_found", "no such route")
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        ApiError::new(
            status,
            "method_not_allowed",
            "this route does not accept that method",
        )
    } else if error.is::<poem_openapi::error::AuthorizationError>()
        || status == StatusCode::UNAUTHORIZED
    {
        ApiError::unauthorized(
            "missing_credentials",
            "credentials are required: X-Api-Key or a Bearer token",
        )
    } else if error.is::<poem_openapi::error::ContentTypeError>()
        || status == StatusCode::UNSUPPORTED_MEDIA_TYPE
    {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json",
        )
    } else if let Some(path) = error.downcast_ref::<poem_openapi::error::ParsePathError>() {
        ApiError::bad_request("invalid_path", path.to_string())
    } else if let Some(param) = error.downcast_ref::<poem_openapi::error::ParseParamError>() {
        ApiError::bad_request("invalid_parameter", param.to_string()).with_field(param.name)
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "body_too_large", "the request body is too large")
    } else if status.is_client_error() {
        ApiError::new(status, "bad_request", error.to_string())
    } else {
        ApiError::internal(&error)
    };
    api.into_response()
}

#[cfg(test)]
mod tests {
    use invigil_actors::live::wire;
    use invigil_actors::shard::ShardId;
    use serde_json::Value;

    use super::*;

    /// Every domain refusal. The match fails to compile when a variant is
    /// added, so the list below cannot fall behind.
    fn every_domain_error() -> Vec<DomainError> {
        use DomainError::*;
        let all = vec![
            PlanNotOpen,
            PlanAlreadyStarted,
            PlanNotRunning,
            PlanAlreadyPaused,
            PlanNotPaused,
            PlanEnded,
            PlanNotEnded,
            PlanFinalized,
            RoomNotRunning,
            RoomAlreadyPaused,
            RoomNotPaused,
            LateEntryClosed,
            NotCheckedIn,
            ExamNotRunning,
            ExamPaused,
            CandidateAlreadyPaused,
            CandidateNotPaused,
            TimeUp,
            AlreadySubmitted,
            Expelled,
            Absent,
            UnknownQuestion("q9".into()),
            InvalidAnswer("not a choice".into()),
            InvalidCseq,
            CseqNotIncreasing { cseq: 1, last: 2 },
            CseqConflict(3),
            InvalidExtension { max: 60 },
            TooManyPauses,
            IncidentAlreadyResolved("dismissed"),
            InvalidIncident("kind".into()),
            InvalidText("blank".into()),
            TooManyEvents,
        ];
        for error in &all {
            match error {
                PlanNotOpen
                | PlanAlreadyStarted
                | PlanNotRunning
                | PlanAlreadyPaused
                | PlanNotPaused
                | PlanEnded
                | PlanNotEnded
                | PlanFinalized
                | RoomNotRunning
                | RoomAlreadyPaused
                | RoomNotPaused
                | LateEntryClosed
                | NotCheckedIn
                | ExamNotRunning
                | ExamPaused
                | CandidateAlreadyPaused
                | CandidateNotPaused
                | TimeUp
                | AlreadySubmitted
                | Expelled
                | Absent
                | UnknownQuestion(_)
                | InvalidAnswer(_)
                | InvalidCseq
                | CseqNotIncreasing { .. }
                | CseqConflict(_)
                | InvalidExtension { .. }
                | TooManyPauses
                | IncidentAlreadyResolved(_)
                | InvalidIncident(_)
                | InvalidText(_)
                | TooManyEvents => {}
            }
        }
        all
    }

    /// Every exam error, every domain and store refusal among them.
    fn every_exam_error() -> Vec<ExamError> {
        let mut all: Vec<ExamError> = every_domain_error()
            .into_iter()
            .map(ExamError::Domain)
            .collect();
        all.extend([
            ExamError::NotFound("candidate"),
            ExamError::NotOwner(ShardId::new(7).expect("a shard")),
            ExamError::Contended,
            ExamError::Store(StoreError::Unavailable("pool timed out".into())),
            ExamError::Store(StoreError::Conflict("duplicate key".into())),
            ExamError::Store(StoreError::Rejected("invalid byte sequence".into())),
            ExamError::Store(StoreError::Corrupt("bad json in runtime".into())),
            ExamError::Store(StoreError::Internal("check constraint".into())),
            ExamError::Stopped,
            ExamError::Unavailable("the room is moving; retry"),
        ]);
        for error in &all {
            match error {
                ExamError::Domain(_)
                | ExamError::NotFound(_)
                | ExamError::NotOwner(_)
                | ExamError::Contended
                | ExamError::Stopped
                | ExamError::Unavailable(_) => {}
                ExamError::Store(
                    StoreError::Unavailable(_)
                    | StoreError::Conflict(_)
                    | StoreError::Rejected(_)
                    | StoreError::Corrupt(_)
                    | StoreError::Internal(_),
                ) => {}
            }
        }
        all
    }

    fn frame(text: &str) -> Value {
        serde_json::from_str(text).expect("a frame is JSON")
    }

    #[test]
    fn rest_and_both_sockets_answer_every_exam_error_alike() {
        for error in every_exam_error() {
            let rest = ApiError::from(error.clone());
            let candidate = frame(&wire::exam_error(4, &error, Some(9)));
            let proctor = frame(&wire::proctor::exam_error(&error, Some("r1")));
            assert_eq!(rest.code, error.code(), "{error:?}");
            assert_eq!(rest.status, status_of(error.class()), "{error:?}");
            for socket in [&candidate, &proctor] {
                assert_eq!(socket["t"], "error", "{error:?}");
                assert_eq!(socket["code"], rest.code, "{error:?}");
                assert_eq!(socket["message"], rest.detail, "{error:?}");
            }
            assert_eq!(candidate["cseq"], 9);
        }
    }

    #[test]
    fn store_internals_never_reach_a_client() {
        for error in every_exam_error() {
            let ExamError::Store(store) = &error else {
                continue;
            };
            let rest = ApiError::from(error.clone());
            for internal in ["pool timed out", "bad json", "check constraint"] {
                assert!(
                    !rest.detail.contains(internal),
                    "{error:?}: {}",
                    rest.detail
                );
            }
            let expected = match store {
                StoreError::Unavailable(_) | StoreError::Internal(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
                }
                StoreError::Conflict(_) => (StatusCode::CONFLICT, "concurrent_update"),
                StoreError::Rejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
                StoreError::Corrupt(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            };
            assert_eq!((rest.status, rest.code), expected, "{error:?}");
        }
    }

    #[test]
    fn a_not_owner_refusal_names_its_shard_for_forwarding() {
        let rest = ApiError::from(ExamError::NotOwner(ShardId::new(7).expect("a shard")));
        assert_eq!(rest.shard, Some(7));
        let response = rest.into_response();
        assert_eq!(response.headers()[SHARD_HEADER], "7");
        assert_eq!(
            response.headers()["Retry-After"],
            "1",
            "a 503 says when to retry"
        );
    }
}
