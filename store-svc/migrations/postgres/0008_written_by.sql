-- Who wrote each version: the name of the identity whose call stored it (a
-- gateway's token or client certificate for a reading's first version, an
-- operator's for an amendment), or for a version pulled from the cloud the
-- name the cloud recorded with it. NULL: written before writers were
-- recorded, or not known (a cloud that does not say).
ALTER TABLE reading_versions ADD COLUMN written_by TEXT;

-- The current version's writer, kept in step with its values so queries
-- show it without reading the versions.
ALTER TABLE readings ADD COLUMN version_written_by TEXT;

-- The audit log names both versions' writers as they were when the
-- conflict was resolved: retention may later prune the versions themselves.
ALTER TABLE conflicts ADD COLUMN local_written_by TEXT;
ALTER TABLE conflicts ADD COLUMN remote_written_by TEXT;
