-- Who wrote each version: the identity the writing site recorded (a
-- gateway for a first version, an operator for an amendment), or for the
-- cloud's own amendments the site token that asked for them. NULL when the
-- pushing site did not say. Kept for the record and served back with the
-- version in the change feed; nothing is decided by it.
ALTER TABLE versions ADD COLUMN written_by TEXT;
