-- The site's schema, versioned from the start (DESIGN §3).
-- Times are microseconds since the Unix epoch; HLC stamps are packed
-- (physical_ms << 16 | logical) so integer order is clock order.

-- One row: who this site is and the counters assigned at commit. Updated in
-- the same transaction as the rows it numbers, so seq stays gap-free and the
-- HLC never goes backwards across restarts.
CREATE TABLE site_state (
    singleton       BIGINT PRIMARY KEY CHECK (singleton = 1),
    site_id         TEXT    NOT NULL,
    next_seq        BIGINT NOT NULL,
    next_version_id BIGINT NOT NULL,
    hlc             BIGINT NOT NULL
);

-- One row per reading: what the gateway said (immutable) and the current
-- version's values (denormalised for queries).
CREATE TABLE readings (
    seq             BIGINT PRIMARY KEY,     -- gap-free per-site sequence
    reading_id      TEXT    NOT NULL UNIQUE, -- gateway-supplied UUID
    origin_site_id  TEXT    NOT NULL,
    sensor_id       TEXT    NOT NULL,
    temperature     DOUBLE PRECISION NOT NULL,
    humidity        DOUBLE PRECISION NOT NULL,
    measured_at_us  BIGINT NOT NULL,
    received_at_us  BIGINT NOT NULL,
    priority        BIGINT NOT NULL,
    clock_suspect   BOOLEAN NOT NULL,
    content_digest  BYTEA    NOT NULL,        -- tells a retry from an id reused for other content
    version_hlc     BIGINT NOT NULL,        -- current version
    version_site_id TEXT    NOT NULL,
    sync_state      BIGINT NOT NULL         -- 1 pending, 2 synced, 3 dead-lettered
);
CREATE INDEX readings_by_time ON readings (measured_at_us, seq);
CREATE INDEX readings_by_sensor_time ON readings (sensor_id, measured_at_us, seq);

-- Every write is a version, identified by (reading, hlc, site).
CREATE TABLE reading_versions (
    version_id      BIGINT PRIMARY KEY,     -- local, increasing
    reading_seq     BIGINT NOT NULL REFERENCES readings (seq),
    hlc             BIGINT NOT NULL,
    site_id         TEXT    NOT NULL,
    temperature     DOUBLE PRECISION NOT NULL,
    humidity        DOUBLE PRECISION NOT NULL,
    created_at_us   BIGINT NOT NULL,
    synced_at_us    BIGINT,
    UNIQUE (reading_seq, hlc, site_id)
);

-- The sync outbox: one entry per version not yet acknowledged by the cloud.
-- An entry leaves when the cloud acknowledges exactly that version, so an ack
-- of an earlier version can never mark a later one synced.
CREATE TABLE outbox (
    version_id          BIGINT PRIMARY KEY REFERENCES reading_versions (version_id),
    priority            BIGINT NOT NULL,
    enqueued_at_us      BIGINT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_us  BIGINT NOT NULL,
    last_error          TEXT,
    stuck               BOOLEAN NOT NULL DEFAULT FALSE,
    dead_lettered_at_us BIGINT,
    lease_id            TEXT,
    lease_expires_at_us BIGINT
);
