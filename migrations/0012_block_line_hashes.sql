-- A block keeps the SHA-256 of each of its events' lines, in seq order: events_hash is the SHA-256
-- of their concatenation, so they are as fixed as the block's hash, and a verifier that finds a
-- block's events changed can name the first changed event (it checks them against events_hash
-- first). NULL for blocks sealed before this.
ALTER TABLE blocks ADD COLUMN line_hashes bytea;
COMMENT ON COLUMN blocks.line_hashes IS
    'SHA-256 of each event line, in seq order (sha256 of the whole is events_hash); locates a changed event.';
