-- The journal drops its foreign key to candidates. Postgres checks a foreign
-- key per inserted row with a `FOR KEY SHARE` lock on the candidate's row: a
-- row lock written to the heap and the WAL for every answer, about a
-- quarter of an answer batch's time on the database (1.34x the batches/s
-- without it, scripts/bench-journal-sql.sh). Nothing is lost by it: the
-- journal is appended only for
-- candidates a room actor loaded from this database, and a plan's candidates
-- are deleted only when a scheduled plan (which accepts no answers) is
-- replaced, in a transaction that deletes the plan's journal rows first.
ALTER TABLE answer_journal DROP CONSTRAINT IF EXISTS answer_journal_plan_id_candidate_id_fkey;
