-- The journal drops its foreign key to candidates, as on Postgres (see that
-- migration for why). SQLite cannot drop a constraint, so the table is
-- rebuilt; nothing references the journal.
CREATE TABLE answer_journal_new (
    plan_id       TEXT NOT NULL,
    candidate_id  TEXT NOT NULL,
    cseq          BIGINT NOT NULL,
    question_id   TEXT NOT NULL,
    value         TEXT NOT NULL,            -- JSON
    version       BIGINT NOT NULL,
    shard         BIGINT NOT NULL,
    epoch         BIGINT NOT NULL,
    at_ms         BIGINT NOT NULL,
    PRIMARY KEY (plan_id, candidate_id, cseq)
);
INSERT INTO answer_journal_new SELECT plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms FROM answer_journal;
DROP TABLE answer_journal;
ALTER TABLE answer_journal_new RENAME TO answer_journal;
