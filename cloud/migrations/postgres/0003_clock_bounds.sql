-- Clock bounds: versions stored although stamped further ahead of the
-- cloud's wall clock than --max-clock-skew, and how to find them.

-- How far ahead of the cloud's wall clock the version was stamped when it
-- was stored, in milliseconds; NULL when within the bound (and for the
-- cloud's own amendments). Such a version is kept like any other; the
-- cloud's clock did not follow it past the bound.
ALTER TABLE versions ADD COLUMN clock_ahead_ms BIGINT;

-- Flagged versions are few: listed for an operator (GET /admin/clock-ahead)
-- without a scan of every version.
CREATE INDEX versions_clock_ahead ON versions (id) WHERE clock_ahead_ms IS NOT NULL;
