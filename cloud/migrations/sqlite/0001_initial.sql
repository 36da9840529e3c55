-- The reference cloud's store (SQLite). The PostgreSQL schema in
-- ../postgres is the same, column for column.

-- One row: the cloud-wide push counter. Every push answered 200 takes the
-- next number, which survives restarts.
CREATE TABLE cloud_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    last_push INTEGER NOT NULL
);
INSERT INTO cloud_state (singleton, last_push) VALUES (1, 0);

-- Every distinct version ever pushed. `id` orders the admin listing; the
-- unique key is what the cloud deduplicates on (reading id, HLC, version site).
-- `site_id` is the pushing site, which is also the readings' origin.
CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    reading_id TEXT NOT NULL,
    hlc_physical_ms INTEGER NOT NULL,
    hlc_logical INTEGER NOT NULL,
    version_site_id TEXT NOT NULL,
    sensor_id TEXT NOT NULL,
    temperature REAL NOT NULL,
    humidity REAL NOT NULL,
    measured_at_us INTEGER NOT NULL,
    received_at_us INTEGER NOT NULL,
    priority TEXT NOT NULL,
    clock_suspect INTEGER NOT NULL,
    push INTEGER NOT NULL,
    UNIQUE (reading_id, hlc_physical_ms, hlc_logical, version_site_id)
);
CREATE INDEX versions_by_site ON versions (site_id, id);

-- The books per site and seq: held (a version is stored), rejected or
-- dropped (never held). `held` is final.
CREATE TABLE seq_coverage (
    site_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('held', 'rejected', 'dropped')),
    reason TEXT,
    PRIMARY KEY (site_id, seq)
) WITHOUT ROWID;

-- Per site: every seq 1..=contiguous_upto is in seq_coverage. Advanced by
-- the writes that add coverage rows, so a coverage query only scans the seqs
-- above it.
CREATE TABLE site_books (
    site_id TEXT PRIMARY KEY,
    contiguous_upto INTEGER NOT NULL
);

-- Idempotency records: a key's body digest and its gzipped answer, written in
-- the same transaction as the versions.
CREATE TABLE push_keys (
    site_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body_digest BLOB NOT NULL,
    response_gz BLOB NOT NULL,
    push INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (site_id, idempotency_key)
);

-- The simple API's readings. No idempotency key, so no deduplication.
CREATE TABLE simple_readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor_id TEXT NOT NULL,
    temperature REAL NOT NULL,
    humidity REAL NOT NULL,
    timestamp TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL
);
