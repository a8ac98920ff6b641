-- Identical content (same SHA-256, size and content type) is stored once:
-- an upload that races another with the same bytes ends on the same row
-- (INSERT … ON CONFLICT DO NOTHING). It is also the upload's lookup.
CREATE UNIQUE INDEX files_by_content ON files (sha256, size, content_type);

-- Out of line and uncompressed, so a download's range reads (substr) fetch
-- only the TOAST chunks they need instead of decompressing the whole value.
-- Most exam materials (images, PDFs) are compressed already.
ALTER TABLE files ALTER COLUMN data SET STORAGE EXTERNAL;
