-- How many readings the site holds, kept by the writes that add or remove
-- them (appends, pulled readings, pruning, drops), so that the store's
-- books (GetStats, and the gauges refreshed every few seconds) no longer
-- count every row of `readings`: a count that grows with the table and ran
-- on every refresh.
ALTER TABLE site_state ADD COLUMN readings_held INTEGER NOT NULL DEFAULT 0;
UPDATE site_state SET readings_held = (SELECT COUNT(*) FROM readings);
