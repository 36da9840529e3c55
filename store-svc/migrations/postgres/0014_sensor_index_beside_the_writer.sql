-- On PostgreSQL, readings by sensor come from `readings_by_sensor` again,
-- filled in sorted batches as on SQLite (0002), but by a task of the
-- store's own beside the writer rather than in the writer's transactions.
--
-- 0010 moved them to an index on the readings because, in the writer's
-- transaction, a batch cost more than the index. But the index is kept in
-- the append's transaction whatever it costs, and with a thousand sensors
-- each reading lands on its own sensor's leaf page: measured with the
-- streaming load, it took about as much of the single writer's time as the
-- readings themselves (71k readings/s with it, 111k without). A batch
-- copied on another connection runs beside the writer, on the other core.
-- A query by sensor reads the table up to `sensor_indexed_seq` and the
-- readings above it in one statement, one snapshot, and the batch and the
-- mark commit together, so each reading is seen once.
--
-- On a large site this migration copies every reading's key, in its
-- transaction, before the store serves.
CREATE TABLE readings_by_sensor (
    sensor_id      TEXT    NOT NULL,
    measured_at_us BIGINT  NOT NULL,
    seq            BIGINT NOT NULL,  -- no foreign key: derived rows, checked by the code that writes them
    PRIMARY KEY (sensor_id, measured_at_us, seq)
);

INSERT INTO readings_by_sensor (sensor_id, measured_at_us, seq)
    SELECT sensor_id, measured_at_us, seq FROM readings ORDER BY sensor_id, measured_at_us, seq;
UPDATE site_state SET sensor_indexed_seq = next_seq - 1;
DROP INDEX readings_by_sensor_time;
