//! [`FileStore`] on sqlx. A file is one row of `files` with its bytes in a
//! blob column (`BYTEA` / `BLOB`). Identical content is kept once: the unique
//! index `files_by_content (sha256, size, content_type)` makes an upload of
//! bytes already stored return the existing row, also when two uploads race.
//! Reads take a range with `substr`, so a download holds one chunk at a
//! time in this process. Postgres stores the column uncompressed out of line
//! (`STORAGE EXTERNAL`) and reads only the chunks a range touches; SQLite
//! reads the row's blob inside the engine for each range, which the upload
//! limit keeps small.

use async_trait::async_trait;
use invigil_actors::domain::Timestamp;
use invigil_actors::domain::ids::FileId;
use invigil_actors::error::StoreError;
use invigil_actors::ports::{FileStore, NewFile, PutFileOutcome, StoredFile};

use super::rows::id;
use super::{SqlStore, on_backend};
use crate::error::{corrupt, from_sqlx};

/// `id, sha256, size, content_type, name, created_at_ms`.
type FileRow = (String, String, i64, String, Option<String>, i64);

const SELECT_BY_ID: &str = "SELECT id, sha256, size, content_type, name, created_at_ms \
     FROM files WHERE id = $1";

const SELECT_BY_CONTENT: &str = "SELECT id, sha256, size, content_type, name, created_at_ms \
     FROM files WHERE sha256 = $1 AND size = $2 AND content_type = $3";

const INSERT: &str = "INSERT INTO files (id, sha256, size, content_type, name, data, created_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (sha256, size, content_type) DO NOTHING \
     RETURNING id, sha256, size, content_type, name, created_at_ms";

/// `substr` counts from 1 in both dialects, over bytes for a blob.
const SELECT_RANGE: &str = "SELECT substr(data, $2, $3) FROM files WHERE id = $1";

fn to_stored(row: FileRow) -> Result<StoredFile, StoreError> {
    let (file_id, sha256, size, content_type, name, created_at_ms) = row;
    Ok(StoredFile {
        id: id("file id", file_id)?,
        sha256,
        size: u64::try_from(size).map_err(|_| corrupt("file size", size))?,
        content_type,
        name,
        created_at: Timestamp::from_millis(created_at_ms),
    })
}

impl SqlStore {
    async fn file_with_content(
        &self,
        sha256: &str,
        size: i64,
        content_type: &str,
    ) -> Result<Option<StoredFile>, StoreError> {
        let row: Option<FileRow> = on_backend!(self, pool => {
            sqlx::query_as(SELECT_BY_CONTENT)
                .bind(sha256)
                .bind(size)
                .bind(content_type)
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
        });
        row.map(to_stored).transpose()
    }
}

#[async_trait]
impl FileStore for SqlStore {
    async fn put_file(&self, file: &NewFile) -> Result<PutFileOutcome, StoreError> {
        let size = i64::try_from(file.data.len())
            .map_err(|_| StoreError::Rejected("the file is too large to store".into()))?;
        // Looking first spares sending the bytes again for content that is
        // already stored; the unique index settles a race between uploads.
        if let Some(existing) = self
            .file_with_content(&file.sha256, size, &file.content_type)
            .await?
        {
            return Ok(PutFileOutcome::Existing(existing));
        }
        let inserted: Option<FileRow> = on_backend!(self, pool => {
            sqlx::query_as(INSERT)
                .bind(file.id.as_str())
                .bind(file.sha256.as_str())
                .bind(size)
                .bind(file.content_type.as_str())
                .bind(file.name.as_deref())
                .bind(file.data.as_slice())
                .bind(file.created_at.as_millis())
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
        });
        match inserted {
            Some(row) => Ok(PutFileOutcome::Created(to_stored(row)?)),
            // Another upload of the same content committed in between.
            None => self
                .file_with_content(&file.sha256, size, &file.content_type)
                .await?
                .map(PutFileOutcome::Existing)
                .ok_or_else(|| StoreError::Conflict("files: identical content".into())),
        }
    }

    async fn file(&self, file_id: &FileId) -> Result<Option<StoredFile>, StoreError> {
        let row: Option<FileRow> = on_backend!(self, pool => {
            sqlx::query_as(SELECT_BY_ID)
                .bind(file_id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
        });
        row.map(to_stored).transpose()
    }

    async fn read_file_range(
        &self,
        file_id: &FileId,
        offset: u64,
        len: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // Postgres' substr takes `integer`s; no stored value is longer than
        // that (a bytea or a SQLite blob holds at most about 1 GB), so a
        // range starting beyond it is past the end of any file.
        let Some(start) = offset
            .checked_add(1)
            .and_then(|start| i32::try_from(start).ok())
        else {
            return Ok(self.file(file_id).await?.map(|_| Vec::new()));
        };
        let count = i32::try_from(len).unwrap_or(i32::MAX);
        let row: Option<(Vec<u8>,)> = on_backend!(self, pool => {
            sqlx::query_as(SELECT_RANGE)
                .bind(file_id.as_str())
                .bind(start)
                .bind(count)
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
        });
        Ok(row.map(|(bytes,)| bytes))
    }
}
