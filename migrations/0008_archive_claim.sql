-- One archiver at a time: the claim, kept in a row that only the owner role writes (through
-- claim_archiver and release_archiver, sql/55_archive.sql), where releases before 0.2 used an
-- advisory lock on a fixed key, which any role that may connect could take and hold.

-- One row. A claim names the backend that made it (pid and login role) and its beacon: a session
-- lock on a key chosen at claim time, which that backend holds until it releases the claim or is
-- gone. A claim whose backend does not hold its beacon is stale (that backend is gone, and its pid
-- may have been reused) and the next archiver takes it over.
CREATE TABLE archive_claim (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pid integer,
    claimed_by text,
    beacon bigint,
    claimed_at timestamptz,
    CHECK ((pid IS NULL) = (claimed_by IS NULL) AND (pid IS NULL) = (beacon IS NULL)
           AND (pid IS NULL) = (claimed_at IS NULL))
);
INSERT INTO archive_claim DEFAULT VALUES;
COMMENT ON TABLE archive_claim IS 'The running archiver''s claim: at most one at a time (see claim_archiver).';
COMMENT ON COLUMN archive_claim.pid IS 'The claiming backend''s process id; NULL when nobody archives.';
COMMENT ON COLUMN archive_claim.claimed_by IS 'The claiming backend''s login role (session_user).';
COMMENT ON COLUMN archive_claim.beacon IS
    'Key of the session advisory lock the claiming backend holds while it lives: proof that the claim is not stale.';
