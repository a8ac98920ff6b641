//! [`FileDownload`]: a stored file streamed from the store a chunk at a time
//! (memory per download stays at one chunk, whatever the file's size), with
//! its validator (`ETag`) and caching headers, or `304 Not Modified`.

use std::sync::Arc;

use invigil_actors::ports::{FileStore, StoredFile};
use poem::http::StatusCode;
use poem::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, ETAG,
    X_CONTENT_TYPE_OPTIONS,
};
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::registry::{
    MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::types::Type;
use tracing::warn;

/// How much one read from the store returns.
pub const CHUNK_BYTES: u32 = 256 * 1024;

/// The answer to `GET /api/v1/files/{id}`.
pub enum FileDownload {
    /// The whole file.
    Content {
        file: StoredFile,
        body: poem::Body,
        cache_control: String,
    },
    /// The client's copy is current: `If-None-Match` named the file's ETag.
    NotModified { etag: String, cache_control: String },
}

/// The file's strong validator: its SHA-256, quoted.
pub fn etag(file: &StoredFile) -> String {
    format!("\"{}\"", file.sha256)
}

/// Whether an `If-None-Match` value matches `etag`: `*`, or a listed tag
/// with the same opaque value (the weak comparison RFC 9110 §13.1.2 asks
/// for, so `W/"…"` matches too).
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    let if_none_match = if_none_match.trim();
    if_none_match == "*"
        || if_none_match
            .split(',')
            .map(str::trim)
            .map(|tag| tag.strip_prefix("W/").unwrap_or(tag))
            .any(|tag| tag == etag)
}

/// `inline; filename*=UTF-8''…` (RFC 6266, RFC 8187): the stored name,
/// percent-encoded, so any name makes a valid header and none can inject one.
pub fn content_disposition(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("inline; filename*=UTF-8''{encoded}")
}

/// The file's bytes as a stream of range reads, [`CHUNK_BYTES`] each. The
/// headers are sent before the first read, so a store failure half-way
/// ends the response early: the client sees fewer bytes than
/// `Content-Length` promised, never different ones.
pub fn file_body(files: Arc<dyn FileStore>, file: &StoredFile) -> poem::Body {
    let file_id = file.id.clone();
    let size = file.size;
    let chunks = futures::stream::try_unfold(0u64, move |offset| {
        let files = files.clone();
        let file_id = file_id.clone();
        async move {
            if offset >= size {
                return Ok(None);
            }
            let wanted =
                u32::try_from(size - offset).map_or(CHUNK_BYTES, |left| left.min(CHUNK_BYTES));
            let failure = match files.read_file_range(&file_id, offset, wanted).await {
                Ok(Some(chunk)) if chunk.len() == wanted as usize => {
                    return Ok(Some((chunk, offset + u64::from(wanted))));
                }
                Ok(Some(chunk)) => format!(
                    "the stored file ends at {} of {size} bytes",
                    offset + chunk.len() as u64
                ),
                Ok(None) => "the file is gone".to_string(),
                Err(error) => error.to_string(),
            };
            warn!(file_id = %file_id, offset, error = %failure, "file download cut short");
            Err(std::io::Error::other(failure))
        }
    });
    poem::Body::from_bytes_stream(chunks)
}

impl IntoResponse for FileDownload {
    fn into_response(self) -> Response {
        match self {
            Self::Content {
                file,
                body,
                cache_control,
            } => {
                let mut response = Response::builder()
                    .status(StatusCode::OK)
                    .content_type(&file.content_type)
                    .header(CONTENT_LENGTH, file.size)
                    .header(ETAG, etag(&file))
                    .header(CACHE_CONTROL, cache_control)
                    // Served from the API's origin: never sniffed into
                    // something executable, never a document with powers.
                    .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
                    .header(CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox");
                if let Some(name) = &file.name {
                    response = response.header(CONTENT_DISPOSITION, content_disposition(name));
                }
                response.body(body)
            }
            Self::NotModified {
                etag,
                cache_control,
            } => Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .header(ETAG, etag)
                .header(CACHE_CONTROL, cache_control)
                .finish(),
        }
    }
}

fn header(name: &str, description: &str, schema: MetaSchemaRef) -> MetaHeader {
    MetaHeader {
        name: name.to_string(),
        description: Some(description.to_string()),
        required: true,
        deprecated: false,
        schema,
    }
}

/// Describes the two answers in the OpenAPI document.
impl ApiResponse for FileDownload {
    fn meta() -> MetaResponses {
        let etag = || header("ETag", "`\"<sha256>\"`", String::schema_ref());
        let cache_control = || {
            header(
                "Cache-Control",
                "`private, max-age=<files.cache_max_age_s>`: an id always names the same bytes",
                String::schema_ref(),
            )
        };
        MetaResponses {
            responses: vec![
                MetaResponse {
                    description: "The file, streamed, with the content type it was uploaded with",
                    status: Some(200),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "*/*",
                        schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format(
                            "string", "binary",
                        ))),
                    }],
                    headers: vec![
                        etag(),
                        cache_control(),
                        header("Content-Length", "the file's size", u64::schema_ref()),
                    ],
                },
                MetaResponse {
                    description: "Not modified: If-None-Match named the file's ETag",
                    status: Some(304),
                    status_range: None,
                    content: vec![],
                    headers: vec![etag(), cache_control()],
                },
            ],
        }
    }

    fn register(_registry: &mut Registry) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = "\"ab12\"";
        assert!(none_match("\"ab12\"", tag));
        assert!(none_match(" W/\"ab12\" ", tag));
        assert!(none_match("\"zz\", \"ab12\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"ab1\"", tag));
        assert!(!none_match("ab12", tag));
        assert!(!none_match("", tag));
    }

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(
            content_disposition("문항 1.png"),
            "inline; filename*=UTF-8''%EB%AC%B8%ED%95%AD%201.png"
        );
        assert_eq!(
            content_disposition("a\"b\r\nX: y;.pdf"),
            "inline; filename*=UTF-8''a%22b%0D%0AX%3A%20y%3B.pdf"
        );
    }
}
