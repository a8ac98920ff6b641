//! Files: exam materials (question images, PDFs) the admin server uploads and
//! candidates, proctors and the admin server download. They live in the
//! durable store, so every node serves every file.
//!
//! # Layout
//! - `upload`: the multipart extractor, its limit and validation
//! - `download`: the streamed answer, ETag and caching
//! - `mod.rs`: the routes, who may call them, settings

pub mod download;
pub mod upload;

use invigil_actors::domain::ids::FileId;
use invigil_actors::ports::{NewFile, PutFileOutcome, StoredFile};
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::registry::Registry;
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
};
use tracing::info;

use self::download::{FileDownload, etag, file_body, none_match};
use self::upload::FileUpload;
use crate::auth::{AdminKey, CandidateToken, Claims, ProctorToken};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;

pub struct FilesApi {
    pub state: AppState,
}

/// A stored file.
#[derive(Debug, Object)]
pub struct FileView {
    /// Chosen by invigil at upload (a UUID v7); names the same bytes forever.
    pub id: String,
    /// Lowercase hex SHA-256 of the content; also the download's ETag.
    pub sha256: String,
    /// In bytes.
    pub size: u64,
    /// As uploaded (normalized: type, subtype and parameter names lowercase).
    pub content_type: String,
    /// The uploaded part's filename, if it had one.
    pub name: Option<String>,
}

impl From<&StoredFile> for FileView {
    fn from(file: &StoredFile) -> Self {
        Self {
            id: file.id.to_string(),
            sha256: file.sha256.clone(),
            size: file.size,
            content_type: file.content_type.clone(),
            name: file.name.clone(),
        }
    }
}

#[derive(ApiResponse)]
pub enum UploadResponse {
    /// The file was stored.
    #[oai(status = 201)]
    Created(
        Json<FileView>,
        /// Where to download it.
        #[oai(header = "Location")]
        String,
    ),
    /// The same content (SHA-256, size and content type) was stored before;
    /// this is that file, under its first id and name. Nothing was stored.
    #[oai(status = 200)]
    Existing(Json<FileView>),
}

/// Who may download: the admin server (X-Api-Key), or any candidate or
/// proctor with a valid bearer token.
pub enum FileReader {
    Admin,
    Candidate(Claims),
    Proctor(Claims),
}

impl<'a> ApiExtractor<'a> for FileReader {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        AdminKey::register(registry);
        CandidateToken::register(registry);
        ProctorToken::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        let mut schemes = AdminKey::security_schemes();
        schemes.extend(CandidateToken::security_schemes());
        schemes.extend(ProctorToken::security_schemes());
        schemes
    }

    /// The credential presented decides the check, so a wrong one is
    /// reported as what it is (`invalid_api_key`, `invalid_token`, …), not
    /// as a missing other one.
    async fn from_request(
        request: &'a Request,
        body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        if request.headers().contains_key("x-api-key") {
            AdminKey::from_request(request, body, ExtractParamOptions::default()).await?;
            return Ok(Self::Admin);
        }
        if <Bearer as poem_openapi::auth::BearerAuthorization>::from_request(request).is_err() {
            return Err(ApiError::unauthorized(
                "missing_credentials",
                "credentials are required: X-Api-Key or a Bearer token",
            )
            .into());
        }
        match CandidateToken::from_request(request, body, ExtractParamOptions::default()).await {
            Ok(CandidateToken(claims)) => Ok(Self::Candidate(claims)),
            Err(error)
                if error
                    .downcast_ref::<ApiError>()
                    .is_some_and(|api| api.code == "wrong_role") =>
            {
                let ProctorToken(claims) =
                    ProctorToken::from_request(request, body, ExtractParamOptions::default())
                        .await?;
                Ok(Self::Proctor(claims))
            }
            Err(error) => Err(error),
        }
    }
}

/// Parses a file id from the path.
fn path_file_id(file_id: &str) -> Result<FileId, ApiError> {
    FileId::parse(file_id).map_err(|error| {
        ApiError::bad_request("invalid_id", error.to_string()).with_field("file_id")
    })
}

#[OpenApi(prefix_path = "/api/v1")]
impl FilesApi {
    /// Upload a file (an exam material) as `multipart/form-data` with one
    /// part named `file`.
    ///
    /// The part's filename is kept as the name, its Content-Type as the
    /// content type (default `application/octet-stream`). Files above
    /// `files.max_bytes` (10 MiB by default) are refused with 413
    /// `file_too_large` as soon as the limit is passed. Identical content
    /// (same SHA-256, size and content type) is stored once: uploading it
    /// again answers 200 with the first upload's id and name.
    #[oai(path = "/files", method = "post", tag = "ApiTags::Files")]
    async fn upload_file(
        &self,
        _key: AdminKey,
        upload: FileUpload,
    ) -> Result<UploadResponse, ApiError> {
        let file = NewFile {
            // A hyphenated UUID is always a valid id.
            id: FileId::from_trusted(uuid::Uuid::now_v7().to_string()),
            sha256: upload.sha256,
            content_type: upload.content_type,
            name: upload.name,
            data: upload.data,
            created_at: self.state.clock.now(),
        };
        let outcome = self.state.files.put_file(&file).await?;
        let stored = outcome.file();
        let view = FileView::from(stored);
        Ok(match outcome {
            PutFileOutcome::Created(_) => {
                info!(file_id = %stored.id, size = stored.size, content_type = %stored.content_type, "file stored");
                let location = format!("/api/v1/files/{}", stored.id);
                UploadResponse::Created(Json(view), location)
            }
            PutFileOutcome::Existing(_) => UploadResponse::Existing(Json(view)),
        })
    }

    /// Download a file: the admin server, candidates and proctors.
    ///
    /// The body streams with the stored Content-Type, `Content-Length`,
    /// `ETag: "<sha256>"` and `Cache-Control: private, max-age=…` (an id
    /// always names the same bytes). `If-None-Match` with the ETag answers
    /// 304 without a body.
    #[oai(path = "/files/:file_id", method = "get", tag = "ApiTags::Files")]
    async fn download_file(
        &self,
        _reader: FileReader,
        file_id: Path<String>,
        /// ETags of a copy the client holds; a match answers 304.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<FileDownload, ApiError> {
        let file_id = path_file_id(&file_id)?;
        let file = self.state.files.file(&file_id).await?.ok_or_else(|| {
            ApiError::not_found("file_not_found", format!("file {file_id} not found"))
                .with_field("file_id")
        })?;
        let cache_control = format!(
            "private, max-age={}",
            self.state.settings.files.cache_max_age.as_secs()
        );
        let etag = etag(&file);
        if if_none_match
            .0
            .as_deref()
            .is_some_and(|header| none_match(header, &etag))
        {
            return Ok(FileDownload::NotModified {
                etag,
                cache_control,
            });
        }
        let body = file_body(self.state.files.clone(), &file);
        Ok(FileDownload::Content {
            file,
            body,
            cache_control,
        })
    }
}
