-- Acknowledging a reading's implicit first version without rewriting its
-- row. Until now an acknowledgement set the reading's `sync_state` to 2:
-- on PostgreSQL a new copy of the row and an entry in each of its indexes
-- (about 20 µs a reading), which made recording the cloud's answer the
-- slowest part of the drain there.
--
-- Instead the seqs whose implicit first versions the cloud acknowledged
-- are kept as runs: a reading with `first_implicit` set whose seq lies in
-- a run here is synced, whatever its `sync_state` says (left at 1). A run
-- only ever speaks for readings whose first version is implicit, so it may
-- also cover readings whose first version has a row: theirs is recorded on
-- that row, and the flag never comes back. Adjacent runs are merged as
-- they are recorded, so an outbox drained in order keeps one or two.
--
-- Materialising such a version writes the acknowledged state into the row
-- (and the version's row) as it clears the flag. Readings acknowledged
-- before this migration keep `sync_state` 2: nothing is rewritten.
CREATE TABLE acknowledged_first_runs (
    seq_from BIGINT PRIMARY KEY,
    seq_to   BIGINT NOT NULL,
    CHECK (seq_to >= seq_from)
);
