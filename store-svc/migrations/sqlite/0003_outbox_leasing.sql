-- sync-svc drains the outbox (issue: store and forward).
--
-- Leases live in store-svc's memory (a restart releases them, which is what
-- an expired lease would do anyway), so the lease columns of 0001 stay unused.

-- Whether the cloud's coverage was told about a dead letter.
ALTER TABLE outbox ADD COLUMN dead_letter_reported BOOLEAN NOT NULL DEFAULT FALSE;

-- Critical versions drain first; this index holds only them, so normal
-- ingest pays nothing for it.
CREATE INDEX outbox_critical ON outbox (version_id)
    WHERE priority = 2 AND dead_lettered_at_us IS NULL;

-- Dead letters are listed and counted without scanning the whole outbox.
CREATE INDEX outbox_dead_letters ON outbox (version_id)
    WHERE dead_lettered_at_us IS NOT NULL;
