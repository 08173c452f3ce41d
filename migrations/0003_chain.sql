-- Tamper evidence: blocks of sealed events, hash-chained; and the points up to which the log
-- was pruned.

CREATE TABLE blocks (
    block_no bigint PRIMARY KEY CHECK (block_no > 0),
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    event_count integer NOT NULL,
    events_hash bytea NOT NULL CHECK (length(events_hash) = 32),
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    block_hash bytea NOT NULL CHECK (length(block_hash) = 32),
    canonical_version smallint NOT NULL,
    sealed_at timestamptz NOT NULL,
    CHECK (first_seq <= last_seq AND event_count = last_seq - first_seq + 1)
);
COMMENT ON TABLE blocks IS
    'One row per sealing round: a contiguous seq range, the hash of its events and the previous block''s hash.';

-- The chain head, kept by the sealer beside last_seq. Events sealed before this migration
-- (seq <= chain_start_seq) are not covered by any block.
ALTER TABLE seal_state
    ADD COLUMN last_block_no bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_block_hash bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex'),
    ADD COLUMN chain_start_seq bigint;
UPDATE seal_state SET chain_start_seq = last_seq;
ALTER TABLE seal_state ALTER COLUMN chain_start_seq SET NOT NULL;

CREATE TABLE prune_points (
    block_no bigint PRIMARY KEY,
    block_hash bytea NOT NULL,
    last_seq bigint NOT NULL,
    cutoff timestamptz NOT NULL,
    pruned_at timestamptz NOT NULL DEFAULT now(),
    pruned_by text NOT NULL
);
COMMENT ON TABLE prune_points IS
    'Each prune: the last block whose events it removed. Blocks up to the newest point keep their row, not their events.';

CREATE TYPE verify_result AS (
    ok boolean, problem text, bad_block bigint, blocks_checked bigint, events_checked bigint,
    pending bigint, retained_from_block bigint, retained_from_seq bigint
);

ALTER TYPE seal_result ADD ATTRIBUTE block_no bigint;
