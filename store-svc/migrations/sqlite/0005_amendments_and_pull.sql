-- Amendments, the pull direction and conflicts (DESIGN §3, P4).

-- Correctable fields of every version beside the values: a quality flag
-- (1 good, 2 suspect, 3 bad) and an operator's note. The readings row keeps
-- the current version's, like its values.
ALTER TABLE readings ADD COLUMN quality INTEGER NOT NULL DEFAULT 1;
ALTER TABLE readings ADD COLUMN note TEXT;
ALTER TABLE reading_versions ADD COLUMN quality INTEGER NOT NULL DEFAULT 1;
ALTER TABLE reading_versions ADD COLUMN note TEXT;

-- The version an amendment was written on top of (NULL for a first
-- version): what tells a correction from a conflict.
ALTER TABLE reading_versions ADD COLUMN base_hlc INTEGER;
ALTER TABLE reading_versions ADD COLUMN base_site_id TEXT;

-- Versions that arrived from the cloud's change feed. They never enter the
-- outbox (nothing is echoed back) and the site's books do not count them as
-- its own.
ALTER TABLE reading_versions ADD COLUMN remote BOOLEAN NOT NULL DEFAULT FALSE;

-- Readings another site originated (a shared sensor's) are stored under
-- negative keys counting down from -1, so this site's own seqs stay
-- gap-free; origin_seq keeps the origin's seq (NULL: this site's reading,
-- whose seq is its own).
ALTER TABLE readings ADD COLUMN origin_seq INTEGER;
ALTER TABLE site_state ADD COLUMN next_foreign_seq INTEGER NOT NULL DEFAULT -1;

-- Where the change feed was read up to, written in the transaction that
-- applies the page, so every remote version is applied once.
ALTER TABLE site_state ADD COLUMN pull_cursor INTEGER NOT NULL DEFAULT 0;

-- Remote versions stored (pruning removes some): kept beside the other
-- counters so stats need not scan the versions.
ALTER TABLE site_state ADD COLUMN remote_versions INTEGER NOT NULL DEFAULT 0;

-- The audit log: every conflict resolved here, both versions, the winner
-- and the rule. Append-only; an operator lists it with `edge conflicts`.
CREATE TABLE conflicts (
    id              INTEGER PRIMARY KEY,
    reading_id      TEXT    NOT NULL,
    local_hlc       INTEGER NOT NULL,
    local_site_id   TEXT    NOT NULL,
    remote_hlc      INTEGER NOT NULL,
    remote_site_id  TEXT    NOT NULL,
    current_hlc     INTEGER NOT NULL,
    current_site_id TEXT    NOT NULL,
    winner          TEXT    NOT NULL CHECK (winner IN ('local', 'remote')),
    policy          TEXT    NOT NULL,
    resolved_at_us  INTEGER NOT NULL
);
