-- Identical content (same SHA-256, size and content type) is stored once:
-- an upload that races another with the same bytes ends on the same row
-- (INSERT … ON CONFLICT DO NOTHING). It is also the upload's lookup.
CREATE UNIQUE INDEX files_by_content ON files (sha256, size, content_type);
