-- Log lines arrive through the work queue (at least once): each carries the
-- id it was published with, and a redelivered line is skipped on insert.
-- Lines written by the journal itself (proctor commands) have none.
ALTER TABLE logs ADD COLUMN entry_id TEXT;
CREATE UNIQUE INDEX logs_entry_id ON logs (entry_id);
