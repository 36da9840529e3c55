-- The seqs a site's stored versions hold, as runs of consecutive seqs
-- rather than a row per seq: a push books its seqs by merging a run or two
-- (one B-tree entry per run, not per version), and the books of a site
-- with millions of versions are a few rows to read. `seq_coverage` keeps
-- only the seqs never held (rejected or dropped, each with its reason);
-- a seq is in a run or in a row, never both.
CREATE TABLE held_runs (
    site_id TEXT NOT NULL,
    seq_from INTEGER NOT NULL,
    seq_to INTEGER NOT NULL,
    PRIMARY KEY (site_id, seq_from)
) WITHOUT ROWID;

-- Each stretch of consecutive held seqs becomes one run: within a
-- stretch, seq minus its rank is the same.
INSERT INTO held_runs (site_id, seq_from, seq_to)
SELECT site_id, MIN(seq), MAX(seq)
FROM (
    SELECT site_id, seq, seq - ROW_NUMBER() OVER (PARTITION BY site_id ORDER BY seq) AS stretch
    FROM seq_coverage
    WHERE status = 'held'
) AS held
GROUP BY site_id, stretch;

DELETE FROM seq_coverage WHERE status = 'held';
