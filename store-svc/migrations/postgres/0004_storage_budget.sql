-- Bounded storage: retention, a storage budget, and drops under the
-- `drop-oldest-unsynced` policy (DESIGN §5).

-- Versions removed by retention or the budget (pruned: synced, so the cloud
-- holds them) and by the drop policy (dropped: never delivered). Kept with the
-- state row, in the transactions that remove them, so the books still add up
-- after a restart: synced = versions stored - unsynced - dead letters + pruned.
ALTER TABLE site_state ADD COLUMN pruned_versions BIGINT NOT NULL DEFAULT 0;
ALTER TABLE site_state ADD COLUMN dropped_versions BIGINT NOT NULL DEFAULT 0;

-- Synced readings, oldest seq first: what retention and the budget remove
-- first. Partial, so ingest (which writes pending readings) pays nothing.
CREATE INDEX readings_synced ON readings (seq) WHERE sync_state = 2;

-- Versions dropped unsynced, until the cloud's coverage was told (then the
-- row goes): the seq, reading and version the unsent report names.
CREATE TABLE unreported_drops (
    version_id     BIGINT PRIMARY KEY,
    seq            BIGINT NOT NULL,
    reading_id     TEXT    NOT NULL,
    hlc            BIGINT NOT NULL,
    site_id        TEXT    NOT NULL,
    dropped_at_us  BIGINT NOT NULL
);
