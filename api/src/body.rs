//! `Body<T>`: a JSON request body read with a size limit and parsed by serde,
//! so every error names the exact field (`candidates[3].room_id`) and gets a
//! stable code. It registers `T`'s schema so the OpenAPI document stays the
//! full reference.

use poem::http::StatusCode;
use poem::web::headers::{ContentLength, HeaderMapExt};
use poem::{Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use invigil_actors::domain::ids::INVALID_ID_MESSAGE_PREFIX;

/// Size limits for request bodies, shared through the request's data.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Every body but bulk imports.
    pub default_bytes: usize,
    /// Plan imports, which carry every candidate.
    pub import_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            default_bytes: 64 * 1024,
            import_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A request body type: deserializable, documented, and sized.
pub trait RequestBodyType: DeserializeOwned + Type + Send {
    /// Whether this body may use the (larger) import limit.
    const BULK: bool = false;
}

/// A JSON request body of type `T`.
pub struct Body<T>(pub T);

impl<T: Type> Payload for Body<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: RequestBodyType> ParsePayload for Body<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limits = request.data::<BodyLimits>().copied().unwrap_or_default();
        let limit = if T::BULK {
            limits.import_bytes
        } else {
            limits.default_bytes
        };
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body exceeds {limit} bytes"),
            )
        };
        if request
            .headers()
            .typed_get::<ContentLength>()
            .is_some_and(|length| length.0 > limit as u64)
        {
            return Err(too_large().into());
        }
        let bytes = body
            .take()?
            .into_bytes_limit(limit)
            .await
            .map_err(|error| match error {
                poem::error::ReadBodyError::PayloadTooLarge => too_large(),
                other => ApiError::bad_request("unreadable_body", other.to_string()),
            })?;
        parse_json(&bytes).map(Body).map_err(Into::into)
    }
}

impl<'a, T: RequestBodyType> ApiExtractor<'a> for Body<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: Self::CONTENT_TYPE,
                schema: Self::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // A missing content type is read as JSON (curl -d sends a form type,
        // which is refused); anything else must be JSON.
        if let Some(content_type) = request.content_type() {
            let essence = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("expected application/json, got {content_type}"),
                )
                .into());
            }
        }
        <Self as ParsePayload>::from_request(request, body).await
    }
}

/// Parses JSON into `T`, naming the field and the problem on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "empty_body",
            "the request body is empty; send a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(describe)?;
    deserializer.end().map_err(|error| {
        ApiError::bad_request(
            "malformed_json",
            format!("trailing data after the JSON value: {error}"),
        )
    })?;
    Ok(value)
}

fn describe(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if !inner.is_data() {
        return ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {inner}"),
        );
    }
    let message = strip_position(&inner.to_string());
    // For an unknown field the path already ends with its name; for a
    // missing one it is the parent's path.
    let field_at = |name: Option<&str>| match (path.as_str(), name) {
        (".", Some(name)) => name.to_string(),
        (".", None) => String::new(),
        (path, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_string()
        }
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_string(),
    };
    let (code, field) = if let Some(rest) = message.strip_prefix("unknown field ") {
        ("unknown_field", field_at(backticked(rest)))
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        ("missing_field", field_at(backticked(rest)))
    } else if message.starts_with(INVALID_ID_MESSAGE_PREFIX) {
        ("invalid_id", field_at(None))
    } else {
        ("invalid_field", field_at(None))
    };
    let detail = if field.is_empty() {
        message
    } else {
        format!("{field}: {message}")
    };
    let error = ApiError::unprocessable(code, detail);
    if field.is_empty() {
        error
    } else {
        error.with_field(field)
    }
}

/// The first `name` in "`name`…".
fn backticked(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('`')?;
    rest.find('`').map(|end| &rest[..end])
}

/// Drops serde_json's " at line 1 column 42" suffix; the path says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        title: String,
        items: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        id: invigil_actors::domain::RoomId,
        n: i64,
    }

    fn error_of(json: &str) -> (StatusCode, &'static str, Option<String>) {
        let error = parse_json::<Outer>(json.as_bytes()).unwrap_err();
        (error.status, error.code, error.field)
    }

    #[test]
    fn malformed_json_is_a_400() {
        assert_eq!(
            error_of("{\"title\": "),
            (StatusCode::BAD_REQUEST, "malformed_json", None)
        );
        assert_eq!(
            error_of("  "),
            (StatusCode::BAD_REQUEST, "empty_body", None)
        );
        assert_eq!(
            error_of("{\"title\":\"x\",\"items\":[]} {}"),
            (StatusCode::BAD_REQUEST, "malformed_json", None)
        );
    }

    #[test]
    fn field_problems_name_the_field() {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        assert_eq!(
            error_of(r#"{"items": []}"#),
            (unprocessable, "missing_field", Some("title".into()))
        );
        assert_eq!(
            error_of(r#"{"title":"t","items":[{"id":"a","n":1},{"id":"b","n":1,"x":2}]}"#),
            (unprocessable, "unknown_field", Some("items[1].x".into()))
        );
        assert_eq!(
            error_of(r#"{"title":"t","items":[{"id":"a","n":1},{"id":"b"}]}"#),
            (unprocessable, "missing_field", Some("items[1].n".into()))
        );
        assert_eq!(
            error_of(r#"{"title":"t","items":[{"id":"a b","n":1}]}"#),
            (unprocessable, "invalid_id", Some("items[0].id".into()))
        );
        assert_eq!(
            error_of(r#"{"title":5,"items":[]}"#),
            (unprocessable, "invalid_field", Some("title".into()))
        );
    }
}
