//! [`FileUpload`]: the `file` part of a `multipart/form-data` body, read
//! chunk by chunk with its SHA-256 and refused as soon as it passes the
//! configured limit, so an upload never holds more than the limit (plus
//! one network read) in memory.

use poem::http::StatusCode;
use poem::http::header::CONTENT_TYPE;
use poem::web::headers::{ContentLength, HeaderMapExt};
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// The multipart part that carries the file.
pub const FILE_PART: &str = "file";
/// Stored when the part names no content type.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// The longest file name kept, in bytes of UTF-8 (a common file-system limit).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// The longest content type accepted, parameters included.
pub const MAX_CONTENT_TYPE_BYTES: usize = 255;
/// What the multipart framing (boundaries, part headers) may add to the
/// file before the whole body counts as too large.
pub const MULTIPART_OVERHEAD_BYTES: usize = 16 * 1024;

/// An uploaded file, read whole and hashed.
#[derive(Debug)]
pub struct FileUpload {
    pub data: Vec<u8>,
    /// Lowercase hex SHA-256 of `data`.
    pub sha256: String,
    /// Validated and normalized (type, subtype and parameter names lowercase).
    pub content_type: String,
    /// The part's `filename`, when it has a non-empty one.
    pub name: Option<String>,
}

impl<'a> ApiExtractor<'a> for FileUpload {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(_registry: &mut Registry) {}

    fn request_meta() -> Option<MetaRequest> {
        let file = MetaSchema {
            description: Some(
                "The file. Its part's filename is kept as the name (at most 255 bytes) and its \
                 Content-Type as the content type (default application/octet-stream).",
            ),
            ..MetaSchema::new_with_format("string", "binary")
        };
        Some(MetaRequest {
            description: Some("One part named `file`; no other parts."),
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                    required: vec![FILE_PART],
                    properties: vec![(FILE_PART, MetaSchemaRef::Inline(Box::new(file)))],
                    ..MetaSchema::new("object")
                })),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let settings = request
            .data::<AppState>()
            .map(|state| state.settings.files)
            .unwrap_or_default();
        Ok(read_upload(request, body, settings.max_bytes).await?)
    }
}

async fn read_upload(
    request: &Request,
    body: &mut RequestBody,
    max_bytes: usize,
) -> Result<FileUpload, ApiError> {
    let boundary = boundary_of(request.content_type())?;
    let max_body_bytes = max_bytes.saturating_add(MULTIPART_OVERHEAD_BYTES);
    let declared_length = request
        .headers()
        .typed_get::<ContentLength>()
        .map(|length| length.0);
    // Refused before a byte is read (a client that sent `Expect:
    // 100-continue` does not even send the body).
    if declared_length.is_some_and(|length| length > max_body_bytes as u64) {
        return Err(file_too_large(max_bytes));
    }
    let stream = body
        .take()
        .map_err(|error| ApiError::bad_request("unreadable_body", error.to_string()))?
        .into_bytes_stream();
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(max_body_bytes as u64)
            .per_field(max_bytes as u64),
    );
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut upload = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|error| multipart_error(error, max_bytes))?
    {
        let part = field.name().unwrap_or_default().to_string();
        if part != FILE_PART {
            return Err(ApiError::bad_request(
                "unexpected_part",
                format!("the only part accepted is `{FILE_PART}`, not `{part}`"),
            )
            .with_field(part));
        }
        if upload.is_some() {
            return Err(ApiError::bad_request(
                "duplicate_part",
                format!("send one `{FILE_PART}` part per upload"),
            )
            .with_field(FILE_PART));
        }
        let name = file_name(field.file_name())?;
        let content_type = match field.headers().get(CONTENT_TYPE) {
            None => DEFAULT_CONTENT_TYPE.to_string(),
            Some(value) => value
                .to_str()
                .ok()
                .and_then(normalize_content_type)
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "invalid_content_type",
                        format!(
                            "the part's Content-Type is not a media type (type/subtype, \
                             optionally ; name=value), or is longer than {MAX_CONTENT_TYPE_BYTES} \
                             bytes"
                        ),
                    )
                    .with_field("file.content_type")
                })?,
        };
        // The body's length bounds the file's; reserving it up front avoids
        // regrowing (and briefly doubling) a large buffer.
        let expected = declared_length
            .and_then(|length| usize::try_from(length).ok())
            .unwrap_or(64 * 1024)
            .min(max_bytes);
        let mut data = Vec::with_capacity(expected);
        let mut hasher = Sha256::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|error| multipart_error(error, max_bytes))?
        {
            if data.len() + chunk.len() > max_bytes {
                return Err(file_too_large(max_bytes));
            }
            reserve_within(&mut data, chunk.len(), max_bytes);
            data.extend_from_slice(&chunk);
            hasher.update(&chunk);
        }
        upload = Some(FileUpload {
            sha256: hex::encode(hasher.finalize()),
            data,
            content_type,
            name,
        });
    }
    upload.ok_or_else(|| {
        ApiError::bad_request(
            "missing_file",
            format!("the multipart body has no `{FILE_PART}` part"),
        )
        .with_field(FILE_PART)
    })
}

fn file_too_large(max_bytes: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
        format!("the file exceeds the limit of {max_bytes} bytes"),
    )
}

/// Grows `data` for `additional` more bytes, doubling as a `Vec` does but
/// never beyond `max_bytes` (the caller checked the total fits).
fn reserve_within(data: &mut Vec<u8>, additional: usize, max_bytes: usize) {
    let needed = data.len() + additional;
    if needed > data.capacity() {
        let target = data
            .capacity()
            .saturating_mul(2)
            .clamp(needed, max_bytes.max(needed));
        data.reserve_exact(target - data.len());
    }
}

fn multipart_error(error: multer::Error, max_bytes: usize) -> ApiError {
    match error {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            file_too_large(max_bytes)
        }
        multer::Error::StreamReadFailed(cause) => ApiError::bad_request(
            "unreadable_body",
            format!("the request body could not be read: {cause}"),
        ),
        other => ApiError::bad_request(
            "malformed_multipart",
            format!("the multipart body is malformed: {other}"),
        ),
    }
}

/// The boundary of a `multipart/form-data` content type.
fn boundary_of(content_type: Option<&str>) -> Result<String, ApiError> {
    let not_multipart = |got: &str| {
        ApiError::bad_request(
            "not_multipart",
            format!("send multipart/form-data with a `{FILE_PART}` part, not {got}"),
        )
    };
    let Some(content_type) = content_type else {
        return Err(not_multipart("a body without Content-Type"));
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != "multipart/form-data" {
        return Err(not_multipart(&essence));
    }
    match multer::parse_boundary(content_type) {
        Ok(boundary) if is_valid_boundary(&boundary) => Ok(boundary),
        _ => Err(ApiError::bad_request(
            "invalid_boundary",
            "the Content-Type needs a boundary parameter of 1 to 70 characters (RFC 2046)",
        )),
    }
}

/// RFC 2046: 1 to 70 `bchars`, not ending in a space.
fn is_valid_boundary(boundary: &str) -> bool {
    (1..=70).contains(&boundary.len())
        && !boundary.ends_with(' ')
        && boundary
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&byte))
}

/// The name to keep: any text without control characters, at most
/// [`MAX_FILE_NAME_BYTES`]. It is only ever shown, never used as a path.
fn file_name(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(name) if name.len() > MAX_FILE_NAME_BYTES => Err(ApiError::unprocessable(
            "invalid_file_name",
            format!(
                "the file name is {} bytes long; at most {MAX_FILE_NAME_BYTES}",
                name.len()
            ),
        )
        .with_field("file.filename")),
        Some(name) if name.chars().any(char::is_control) => Err(ApiError::unprocessable(
            "invalid_file_name",
            "the file name contains control characters",
        )
        .with_field("file.filename")),
        Some(name) => Ok(Some(name.to_string())),
    }
}

/// Parses `type/subtype *(; name=value)` (RFC 9110 §8.3.1) and returns it
/// with type, subtype and parameter names lowercase and one space after each
/// `;`, so equal types compare equal; `None` when it is not one.
pub fn normalize_content_type(raw: &str) -> Option<String> {
    let raw = raw.trim_matches([' ', '\t']);
    if raw.is_empty() || raw.len() > MAX_CONTENT_TYPE_BYTES || !raw.is_ascii() {
        return None;
    }
    let mut cursor = Cursor {
        bytes: raw.as_bytes(),
        at: 0,
    };
    let media_type = cursor.token()?;
    cursor.expect(b'/')?;
    let subtype = cursor.token()?;
    let mut normalized = format!(
        "{}/{}",
        media_type.to_ascii_lowercase(),
        subtype.to_ascii_lowercase()
    );
    loop {
        cursor.skip_whitespace();
        if cursor.at_end() {
            return Some(normalized);
        }
        cursor.expect(b';')?;
        cursor.skip_whitespace();
        let name = cursor.token()?;
        cursor.expect(b'=')?;
        let value = if cursor.peek() == Some(b'"') {
            cursor.quoted_string()?
        } else {
            cursor.token()?
        };
        normalized.push_str("; ");
        normalized.push_str(&name.to_ascii_lowercase());
        normalized.push('=');
        normalized.push_str(value);
    }
}

/// A position in an ASCII header value.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Some(())
        } else {
            None
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// `1*tchar`.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
        {
            self.at += 1;
        }
        (self.at > start).then(|| self.slice(start))
    }

    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE`, quotes included.
    fn quoted_string(&mut self) -> Option<&'a str> {
        let start = self.at;
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(self.slice(start));
                }
                b'\\' => {
                    self.at += 1;
                    let escaped = self.peek()?;
                    if escaped != b'\t' && !(b' '..=b'~').contains(&escaped) {
                        return None;
                    }
                    self.at += 1;
                }
                b'\t' | b' '..=b'~' => self.at += 1,
                _ => return None,
            }
        }
    }

    fn slice(&self, start: usize) -> &'a str {
        // The input is ASCII, so every byte offset is a char boundary.
        std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_validated_and_normalized() {
        for (raw, normalized) in [
            ("image/png", "image/png"),
            ("Image/PNG", "image/png"),
            (" text/plain;charset=UTF-8 ", "text/plain; charset=UTF-8"),
            (
                "application/vnd.api+json ; Version=\"1; beta\"",
                "application/vnd.api+json; version=\"1; beta\"",
            ),
            ("text/plain; a=\"x\\\"y\"", "text/plain; a=\"x\\\"y\""),
        ] {
            assert_eq!(
                normalize_content_type(raw).as_deref(),
                Some(normalized),
                "{raw}"
            );
        }
        for bad in [
            "",
            "image",
            "image/",
            "/png",
            "image/png/x",
            "image png",
            "image/png;",
            "image/png; charset",
            "image/png; charset=",
            "text/plain; a=\"unterminated",
            "text/plain; a=\"é\"",
            "image/pñg",
            "text/plain\r\nX-Injected: 1",
            &format!("text/{}", "x".repeat(300)),
        ] {
            assert_eq!(normalize_content_type(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn boundaries_follow_rfc_2046() {
        assert!(is_valid_boundary("----WebKitFormBoundary7MA4YWxkTrZu0gW"));
        assert!(is_valid_boundary("a'()+_,-./:=? b"));
        assert!(!is_valid_boundary(""));
        assert!(!is_valid_boundary("ends with space "));
        assert!(!is_valid_boundary(&"x".repeat(71)));
        assert!(!is_valid_boundary("semi;colon"));
        assert_eq!(
            boundary_of(Some("multipart/form-data; boundary=abc")).unwrap(),
            "abc"
        );
        assert_eq!(
            boundary_of(Some("application/json")).unwrap_err().code,
            "not_multipart"
        );
        assert_eq!(boundary_of(None).unwrap_err().code, "not_multipart");
        assert_eq!(
            boundary_of(Some("multipart/form-data")).unwrap_err().code,
            "invalid_boundary"
        );
        assert_eq!(
            boundary_of(Some(&format!(
                "multipart/form-data; boundary={}",
                "b".repeat(71)
            )))
            .unwrap_err()
            .code,
            "invalid_boundary"
        );
    }

    #[test]
    fn file_names_are_bounded_text() {
        assert_eq!(file_name(None).unwrap(), None);
        assert_eq!(file_name(Some("")).unwrap(), None);
        assert_eq!(
            file_name(Some("../문항 1.png")).unwrap().as_deref(),
            Some("../문항 1.png")
        );
        assert_eq!(
            file_name(Some(&"가".repeat(86))).unwrap_err().code,
            "invalid_file_name"
        );
        assert!(file_name(Some(&"가".repeat(85))).is_ok());
        assert_eq!(
            file_name(Some("a\u{0}b")).unwrap_err().code,
            "invalid_file_name"
        );
    }

    #[test]
    fn buffers_grow_but_not_past_the_limit() {
        let mut data = Vec::with_capacity(10);
        data.extend_from_slice(&[0; 10]);
        // Doubling would make 20; the limit caps it.
        reserve_within(&mut data, 5, 16);
        assert!((15..20).contains(&data.capacity()), "{}", data.capacity());
        let mut exact = Vec::new();
        reserve_within(&mut exact, 100, 1000);
        assert!(exact.capacity() >= 100);
    }
}
