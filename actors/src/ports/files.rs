//! Uploaded files (exam materials), read back in ranges.

use async_trait::async_trait;

use crate::domain::Timestamp;
use crate::error::StoreError;

/// A stored file's description; its bytes are read in ranges
/// ([`FileStore::read_file_range`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    pub id: crate::domain::ids::FileId,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
    /// A validated media type, e.g. `image/png`.
    pub content_type: String,
    /// The name the uploader gave; kept for display, never used as a path.
    pub name: Option<String>,
    pub created_at: Timestamp,
}

/// A file to store. `sha256` and the size are the caller's account of
/// `data`; the store keeps them as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFile {
    pub id: crate::domain::ids::FileId,
    pub sha256: String,
    pub content_type: String,
    pub name: Option<String>,
    pub data: Vec<u8>,
    pub created_at: Timestamp,
}

/// What storing a file did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutFileOutcome {
    /// The file is new and stored under the id it was given.
    Created(StoredFile),
    /// The same content (SHA-256, size and content type) was stored before:
    /// this is that record, with its id, name and time; nothing was written.
    Existing(StoredFile),
}

impl PutFileOutcome {
    pub fn file(&self) -> &StoredFile {
        match self {
            Self::Created(file) | Self::Existing(file) => file,
        }
    }
}

/// Files in the durable store, so every node serves every file. Files are
/// immutable: an id always names the same bytes, which is what lets readers
/// fetch a file in several range reads and clients cache it by id.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Stores a file, or returns the stored one with the same SHA-256, size
    /// and content type (identical content is kept once, also when two
    /// uploads race; the first upload's name is the one kept).
    async fn put_file(&self, file: &NewFile) -> Result<PutFileOutcome, StoreError>;

    /// A file's description, or `None` when there is no such file.
    async fn file(&self, id: &crate::domain::ids::FileId)
    -> Result<Option<StoredFile>, StoreError>;

    /// Up to `len` bytes of a file from `offset` (fewer at the end, none past
    /// it), without reading the rest into this process; `None` when there is
    /// no such file.
    async fn read_file_range(
        &self,
        id: &crate::domain::ids::FileId,
        offset: u64,
        len: u32,
    ) -> Result<Option<Vec<u8>>, StoreError>;
}
