-- The site's identities: who may call the mesh, with which scopes. Only a
-- token's SHA-256 is kept (tokens are 256 random bits, so a fast hash is
-- enough). Every service reads this table, through store-svc, every couple
-- of seconds; a revoked row stops working everywhere within that.
CREATE TABLE identities (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    -- Comma-separated: ingest, read, operate.
    scopes TEXT NOT NULL,
    -- NULL: the site's default rate; 0: unlimited.
    calls_per_second BIGINT,
    readings_per_second BIGINT,
    created_at_us BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at_us BIGINT
);

-- One valid identity per name; revoked ones stay, for the record.
CREATE UNIQUE INDEX identities_valid_name ON identities (name) WHERE revoked_at_us IS NULL;
