-- Amendments, conflicts and the change feed (SQLite). The PostgreSQL
-- migration in ../postgres adds the same columns, tables and indexes.

-- Who a version belongs to, and what an amendment says about it.
-- `site_id` stays "the pusher" (`cloud` for the cloud's own amendments);
-- `origin_site_id` is the site where the reading entered the mesh, which a
-- site pushing an amendment of a shared sensor's reading is not.
ALTER TABLE versions ADD COLUMN origin_site_id TEXT NOT NULL DEFAULT '';
UPDATE versions SET origin_site_id = site_id;
ALTER TABLE versions ADD COLUMN quality TEXT NOT NULL DEFAULT 'good'
    CHECK (quality IN ('good', 'suspect', 'bad'));
ALTER TABLE versions ADD COLUMN note TEXT;
-- The version this one amended (all three, or none for a first version).
ALTER TABLE versions ADD COLUMN base_physical_ms INTEGER;
ALTER TABLE versions ADD COLUMN base_logical INTEGER;
ALTER TABLE versions ADD COLUMN base_site_id TEXT;

-- The change feed: versions of a site's readings written by anyone else.
-- Partial, because nearly every version is a reading's first, written by
-- its origin: those never reach the origin's feed, so they cost the index
-- nothing at push time and the feed never walks past them.
CREATE INDEX versions_feed_by_origin ON versions (origin_site_id, id)
    WHERE version_site_id <> origin_site_id;
-- The change feed: versions of shared sensors.
CREATE INDEX versions_by_sensor ON versions (sensor_id, id);
-- A reading's history is read through the unique key
-- (reading_id, hlc_physical_ms, hlc_logical, version_site_id), whose first
-- column is the reading id: a separate (reading_id) index would only cost.

-- The current version of each reading the cloud holds more than one version
-- of, named by its unique key (reading id and stamp) so a push can name a
-- winner before its row id is known. A reading with a single version (nearly
-- all of them) is its own current version and has no row here: a push of
-- new readings writes nothing to this table, where a row per reading would
-- cost a second random-key insert per version.
CREATE TABLE current_versions (
    reading_id TEXT PRIMARY KEY,
    hlc_physical_ms INTEGER NOT NULL,
    hlc_logical INTEGER NOT NULL,
    version_site_id TEXT NOT NULL
) WITHOUT ROWID;

-- Until now no version named a base, so every version of a reading was a
-- head and the rule picked the greatest (HLC, site id), whatever the policy
-- (no version was the cloud's).
INSERT INTO current_versions (reading_id, hlc_physical_ms, hlc_logical, version_site_id)
SELECT v.reading_id, v.hlc_physical_ms, v.hlc_logical, v.version_site_id
FROM versions v
WHERE EXISTS (SELECT 1 FROM versions o WHERE o.reading_id = v.reading_id AND o.id <> v.id)
  AND NOT EXISTS (
    SELECT 1 FROM versions w
    WHERE w.reading_id = v.reading_id
      AND (w.hlc_physical_ms > v.hlc_physical_ms
           OR (w.hlc_physical_ms = v.hlc_physical_ms AND w.hlc_logical > v.hlc_logical)
           OR (w.hlc_physical_ms = v.hlc_physical_ms AND w.hlc_logical = v.hlc_logical
               AND w.version_site_id > v.version_site_id))
);

-- Coverage's `versions`: the versions each site wrote, counted as they are
-- stored rather than by an index on the writer that every version would pay.
ALTER TABLE site_books ADD COLUMN versions_written INTEGER NOT NULL DEFAULT 0;
INSERT INTO site_books (site_id, contiguous_upto, versions_written)
SELECT version_site_id, 0, COUNT(*) FROM versions GROUP BY version_site_id
ON CONFLICT (site_id) DO UPDATE SET versions_written = excluded.versions_written;

-- Every conflict the cloud resolved: what it held (`local`), what arrived
-- (`remote`), which is current now and under which rule.
CREATE TABLE conflicts (
    id INTEGER PRIMARY KEY,
    reading_id TEXT NOT NULL,
    local_physical_ms INTEGER NOT NULL,
    local_logical INTEGER NOT NULL,
    local_site_id TEXT NOT NULL,
    remote_physical_ms INTEGER NOT NULL,
    remote_logical INTEGER NOT NULL,
    remote_site_id TEXT NOT NULL,
    winner TEXT NOT NULL CHECK (winner IN ('local', 'remote')),
    policy TEXT NOT NULL,
    resolved_at_us INTEGER NOT NULL
);
CREATE INDEX conflicts_by_reading ON conflicts (reading_id, id);

-- The cloud's hybrid logical clock, packed (physical_ms << 16 | logical),
-- persisted with the versions it stamped or received so it never goes back
-- across restarts. It starts above every version already held.
ALTER TABLE cloud_state ADD COLUMN hlc INTEGER NOT NULL DEFAULT 0;
UPDATE cloud_state SET hlc = COALESCE((
    SELECT MAX(CASE WHEN hlc_physical_ms > 140737488355327 THEN 9223372036854775807
                    ELSE hlc_physical_ms * 65536 + hlc_logical END)
    FROM versions), 0);
