-- Readings by sensor, kept in a table of its own and filled in sorted batches.
--
-- An index on readings (sensor_id, …) is updated row by row in every commit.
-- With many sensors, each reading lands on a different leaf page, so every
-- group commit rewrites about one page per active sensor: that index alone
-- halved ingest throughput. Here the store appends readings only, and once
-- `sensor_indexed_seq` trails the newest seq by a batch it copies the new
-- rows into readings_by_sensor in (sensor, time) order, touching each page
-- once per batch. Queries by sensor read this table for seq <=
-- sensor_indexed_seq and scan the short unindexed tail by seq.
DROP INDEX readings_by_sensor_time;

CREATE TABLE readings_by_sensor (
    sensor_id      TEXT    NOT NULL,
    measured_at_us BIGINT  NOT NULL,
    seq            BIGINT NOT NULL,  -- no foreign key: derived rows, checked by the code that writes them
    PRIMARY KEY (sensor_id, measured_at_us, seq)
);

ALTER TABLE site_state ADD COLUMN sensor_indexed_seq BIGINT NOT NULL DEFAULT 0;

INSERT INTO readings_by_sensor (sensor_id, measured_at_us, seq)
    SELECT sensor_id, measured_at_us, seq FROM readings ORDER BY sensor_id, measured_at_us, seq;
UPDATE site_state SET sensor_indexed_seq = next_seq - 1;
ANALYZE readings_by_sensor;
