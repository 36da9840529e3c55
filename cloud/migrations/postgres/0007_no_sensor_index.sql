-- Shared sensors' versions without an index (PostgreSQL; the SQLite
-- migration is the same). The change feed finds them by a bounded scan of
-- row ids (see `Store::changes`): the `(sensor_id, id)` index cost every
-- push a random B-tree insert per version, one leaf page per sensor
-- written, for a feed few sites follow.
DROP INDEX IF EXISTS versions_by_sensor;
