-- The site's schema, versioned from the start (DESIGN §3).
-- Times are microseconds since the Unix epoch; HLC stamps are packed
-- (physical_ms << 16 | logical) so integer order is clock order.

-- One row: who this site is and the counters assigned at commit. Updated in
-- the same transaction as the rows it numbers, so seq stays gap-free and the
-- HLC never goes backwards across restarts.
CREATE TABLE site_state (
    singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
    site_id         TEXT    NOT NULL,
    next_seq        INTEGER NOT NULL,
    next_version_id INTEGER NOT NULL,
    hlc             INTEGER NOT NULL
);

-- One row per reading: what the gateway said (immutable) and the current
-- version's values (denormalised for queries).
CREATE TABLE readings (
    seq             INTEGER PRIMARY KEY,     -- gap-free per-site sequence
    reading_id      TEXT    NOT NULL UNIQUE, -- gateway-supplied UUID
    origin_site_id  TEXT    NOT NULL,
    sensor_id       TEXT    NOT NULL,
    temperature     REAL    NOT NULL,
    humidity        REAL    NOT NULL,
    measured_at_us  INTEGER NOT NULL,
    received_at_us  INTEGER NOT NULL,
    priority        INTEGER NOT NULL,
    clock_suspect   BOOLEAN NOT NULL,
    content_digest  BLOB    NOT NULL,        -- tells a retry from an id reused for other content
    version_hlc     INTEGER NOT NULL,        -- current version
    version_site_id TEXT    NOT NULL,
    sync_state      INTEGER NOT NULL         -- 1 pending, 2 synced, 3 dead-lettered
);
CREATE INDEX readings_by_time ON readings (measured_at_us, seq);
CREATE INDEX readings_by_sensor_time ON readings (sensor_id, measured_at_us, seq);

-- Every write is a version, identified by (reading, hlc, site).
CREATE TABLE reading_versions (
    version_id      INTEGER PRIMARY KEY,     -- local, increasing
    reading_seq     INTEGER NOT NULL REFERENCES readings (seq),
    hlc             INTEGER NOT NULL,
    site_id         TEXT    NOT NULL,
    temperature     REAL    NOT NULL,
    humidity        REAL    NOT NULL,
    created_at_us   INTEGER NOT NULL,
    synced_at_us    INTEGER,
    UNIQUE (reading_seq, hlc, site_id)
);

-- The sync outbox: one entry per version not yet acknowledged by the cloud.
-- An entry leaves when the cloud acknowledges exactly that version, so an ack
-- of an earlier version can never mark a later one synced.
CREATE TABLE outbox (
    version_id          INTEGER PRIMARY KEY REFERENCES reading_versions (version_id),
    priority            INTEGER NOT NULL,
    enqueued_at_us      INTEGER NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_us  INTEGER NOT NULL,
    last_error          TEXT,
    stuck               BOOLEAN NOT NULL DEFAULT FALSE,
    dead_lettered_at_us INTEGER,
    lease_id            TEXT,
    lease_expires_at_us INTEGER
);
