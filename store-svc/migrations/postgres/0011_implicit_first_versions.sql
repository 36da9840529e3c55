-- A reading's first version without a row of its own, so a reading costs
-- one row to store: its `readings` row already holds every value of its
-- current version, which for a reading never amended is its first.
--
-- A reading of this site's own with `first_implicit` set has its first
-- version in its row and none in `reading_versions`:
--
-- - the version's values, stamp, writer and sync state are the row's
--   (`version_hlc`, `version_site_id`, `temperature`, …, `sync_state`:
--   1 waiting for the cloud, 2 acknowledged), and it was written when the
--   reading was received;
-- - its version id comes from the run of `first_version_runs` holding the
--   reading's seq: `seq - seq_from + version_from`. An append gives its new
--   readings consecutive seqs and consecutive version ids, so one run
--   covers every reading appended until an amendment or a pulled version
--   takes a version id in between.
--
-- Whatever needs more than that writes the version's row first and clears
-- the flag ("materialises" it), in the same transaction: an amendment or a
-- pulled version of the reading (the row's values stop being the first
-- version's), a failed or rejected push (its outbox row refers to the
-- version), a critical reading (its outbox row is written at once). An
-- acknowledgement of a version id marks only the reading that id maps to.
--
-- Every reading this database already holds has its first version's row:
-- the flag starts unset and nothing is rewritten.
ALTER TABLE readings ADD COLUMN first_implicit BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE first_version_runs (
    seq_from     BIGINT PRIMARY KEY,
    seq_to       BIGINT NOT NULL,
    version_from BIGINT NOT NULL UNIQUE,
    CHECK (seq_to >= seq_from)
);
