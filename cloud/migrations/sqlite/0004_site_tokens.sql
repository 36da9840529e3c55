-- Per-site bearer tokens: the token a site presents decides the site id it
-- may push, read coverage and pull as. Only the token's SHA-256 (lower-case
-- hex) is stored; the token itself is shown once, by `edge cloud sites add`.
--
-- A rotated or revoked token keeps its row (revoked_at_us set) so an
-- operator can see when a site's credential changed; at most one token per
-- site is active (revoked_at_us IS NULL).
CREATE TABLE site_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    -- Microseconds since the Unix epoch, as every other timestamp here.
    created_at_us INTEGER NOT NULL,
    revoked_at_us INTEGER
);
CREATE UNIQUE INDEX site_tokens_active ON site_tokens (site_id) WHERE revoked_at_us IS NULL;
