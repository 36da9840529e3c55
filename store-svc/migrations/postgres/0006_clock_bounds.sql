-- Clock bounds: what a far-ahead stamp may do to this site, and how the
-- versions stamped beyond the bound are found.

-- A version that arrived stamped further ahead of the site's wall clock than
-- the clock-skew bound: how far ahead it was, in milliseconds, when it was
-- stored (NULL: within the bound, or written here). Such a version is kept
-- like any other; the site's clock did not follow it past the bound.
ALTER TABLE reading_versions ADD COLUMN clock_ahead_ms BIGINT;

-- The current version's flag, kept in step with its values so queries show it.
ALTER TABLE readings ADD COLUMN version_clock_ahead_ms BIGINT;

-- The clock-skew bound the cloud last announced with its change feed, in
-- milliseconds (NULL until a cloud announced one: the site's own
-- --max-clock-skew applies). Used by every write and at start-up.
ALTER TABLE site_state ADD COLUMN max_clock_skew_ms BIGINT;

-- Flagged versions are few: counted for stats and found by an operator
-- without a scan of every version.
CREATE INDEX reading_versions_clock_ahead ON reading_versions (version_id)
    WHERE clock_ahead_ms IS NOT NULL;
