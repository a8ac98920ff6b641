-- invigil schema (Postgres). Times are unix milliseconds from the server's
-- clock (BIGINT *_ms), identical to the SQLite schema; see docs/erd.md.

CREATE TABLE plans (
    id             TEXT PRIMARY KEY,
    title          TEXT NOT NULL,
    starts_at_ms   BIGINT NOT NULL,
    duration_s     BIGINT NOT NULL,
    settings       TEXT NOT NULL,           -- JSON PlanSettings
    state          TEXT NOT NULL,           -- mirrors runtime.state for queries
    runtime        TEXT NOT NULL,           -- JSON PlanRuntime
    revision       BIGINT NOT NULL,         -- optimistic concurrency
    import_digest  TEXT NOT NULL,           -- keyed hash of the imported body
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

CREATE TABLE questions (
    plan_id   TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    id        TEXT NOT NULL,
    position  BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    choices   TEXT NOT NULL,                -- JSON array of choice ids
    answer    TEXT NOT NULL,                -- JSON answer key
    points    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (plan_id, id)
);

CREATE TABLE rooms (
    plan_id   TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    id        TEXT NOT NULL,
    position  BIGINT NOT NULL,
    name      TEXT NOT NULL,
    capacity  BIGINT NOT NULL,
    state     TEXT NOT NULL,
    runtime   TEXT NOT NULL,                -- JSON RoomRuntime
    revision  BIGINT NOT NULL DEFAULT 0,    -- optimistic concurrency
    PRIMARY KEY (plan_id, id)
);

CREATE TABLE proctors (
    plan_id        TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    id             TEXT NOT NULL,
    position       BIGINT NOT NULL,
    name           TEXT NOT NULL,
    login          TEXT NOT NULL,
    password_hash  TEXT NOT NULL,           -- argon2id PHC string
    PRIMARY KEY (plan_id, id),
    UNIQUE (plan_id, login)
);
-- Proctor login looks a login up across plans.
CREATE INDEX proctors_by_login ON proctors (login);

CREATE TABLE proctor_rooms (
    plan_id     TEXT NOT NULL,
    proctor_id  TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    PRIMARY KEY (plan_id, proctor_id, room_id),
    FOREIGN KEY (plan_id, proctor_id) REFERENCES proctors (plan_id, id) ON DELETE CASCADE,
    FOREIGN KEY (plan_id, room_id) REFERENCES rooms (plan_id, id) ON DELETE CASCADE
);
-- Which proctors watch a room (deltas fan out per room).
CREATE INDEX proctor_rooms_by_room ON proctor_rooms (plan_id, room_id);

CREATE TABLE candidates (
    plan_id           TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    id                TEXT NOT NULL,
    position          BIGINT NOT NULL,
    reg_no            TEXT NOT NULL,
    name              TEXT NOT NULL,
    room_id           TEXT NOT NULL,
    seat              TEXT,
    access_code_hash  TEXT NOT NULL,        -- HMAC-SHA256 with the server's secret
    extra_time_s      BIGINT NOT NULL,
    state             TEXT NOT NULL,        -- mirrors runtime.state for counts
    runtime           TEXT NOT NULL,        -- JSON CandidateRuntime without the sheet
    revision          BIGINT NOT NULL DEFAULT 0,  -- optimistic concurrency
    updated_at_ms     BIGINT NOT NULL,
    PRIMARY KEY (plan_id, id),
    UNIQUE (plan_id, reg_no),               -- candidate login
    FOREIGN KEY (plan_id, room_id) REFERENCES rooms (plan_id, id) ON DELETE CASCADE
);
-- Status counts per room and state, and loading a room's candidates.
CREATE INDEX candidates_by_room_state ON candidates (plan_id, room_id, state);

-- Append-only: every accepted answer version. The primary key makes a
-- repeated cseq a no-op.
CREATE TABLE answer_journal (
    plan_id       TEXT NOT NULL,
    candidate_id  TEXT NOT NULL,
    cseq          BIGINT NOT NULL,
    question_id   TEXT NOT NULL,
    value         TEXT NOT NULL,            -- JSON
    version       BIGINT NOT NULL,
    shard         BIGINT NOT NULL,
    epoch         BIGINT NOT NULL,
    at_ms         BIGINT NOT NULL,
    PRIMARY KEY (plan_id, candidate_id, cseq),
    FOREIGN KEY (plan_id, candidate_id) REFERENCES candidates (plan_id, id) ON DELETE CASCADE
);

-- The latest version per question; what results and resume read.
CREATE TABLE answers (
    plan_id        TEXT NOT NULL,
    candidate_id   TEXT NOT NULL,
    question_id    TEXT NOT NULL,
    value          TEXT NOT NULL,
    version        BIGINT NOT NULL,
    cseq           BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (plan_id, candidate_id, question_id),
    FOREIGN KEY (plan_id, candidate_id) REFERENCES candidates (plan_id, id) ON DELETE CASCADE
);

CREATE TABLE transitions (
    id         BIGSERIAL PRIMARY KEY,
    plan_id    TEXT NOT NULL,
    entity     TEXT NOT NULL,               -- plan | room | candidate
    entity_id  TEXT NOT NULL,
    event      TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    detail     TEXT NOT NULL,               -- JSON of the event
    shard      BIGINT NOT NULL,
    epoch      BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL
);
-- The history of one plan, room or candidate, in order.
CREATE INDEX transitions_by_entity ON transitions (plan_id, entity, entity_id, id);

CREATE TABLE incidents (
    id              TEXT PRIMARY KEY,
    plan_id         TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    room_id         TEXT NOT NULL,
    candidate_id    TEXT,
    kind            TEXT NOT NULL,
    source          TEXT NOT NULL,
    severity        TEXT NOT NULL,
    status          TEXT NOT NULL,
    note            TEXT,
    action          TEXT,
    created_at_ms   BIGINT NOT NULL,
    resolved_at_ms  BIGINT,
    resolved_by     TEXT,
    shard           BIGINT NOT NULL,
    epoch           BIGINT NOT NULL
);
-- Open incidents per room (status view, proctor room view).
CREATE INDEX incidents_by_room_status ON incidents (plan_id, room_id, status);

CREATE TABLE logs (
    id       BIGSERIAL PRIMARY KEY,
    plan_id  TEXT NOT NULL,
    kind     TEXT NOT NULL,                 -- system | candidate | proctor
    subject  TEXT,
    room_id  TEXT,
    message  TEXT NOT NULL,
    detail   TEXT NOT NULL,                 -- JSON
    at_ms    BIGINT NOT NULL
);
CREATE INDEX logs_by_plan_kind ON logs (plan_id, kind, id);

CREATE TABLE files (
    id             TEXT PRIMARY KEY,
    sha256         TEXT NOT NULL,
    size           BIGINT NOT NULL,
    content_type   TEXT NOT NULL,
    name           TEXT,
    data           BYTEA NOT NULL,
    created_at_ms  BIGINT NOT NULL
);

-- One row per virtual shard. Acquiring bumps the epoch; writes carry it.
CREATE TABLE shard_lease (
    shard          BIGINT PRIMARY KEY,
    owner          TEXT NOT NULL DEFAULT '',
    epoch          BIGINT NOT NULL DEFAULT 0,
    expires_at_ms  BIGINT NOT NULL DEFAULT 0
);
INSERT INTO shard_lease (shard) SELECT generate_series(0, 1023);
