-- Cold archival: batches of whole sealed blocks moved to object storage, and where they went.

-- One row: the defaults every archive runner agrees on.
CREATE TABLE archive_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    hot_retention interval NOT NULL DEFAULT interval '90 days' CHECK (hot_retention > interval '0'),
    max_batch_events integer NOT NULL DEFAULT 10000 CHECK (max_batch_events > 0),
    run_hour_utc smallint CHECK (run_hour_utc BETWEEN 0 AND 23),  -- when `pgaudit worker` archives; NULL: never
    last_run_on date  -- the UTC day the worker last archived: at most once a day, whichever worker
);
INSERT INTO archive_settings DEFAULT VALUES;
COMMENT ON TABLE archive_settings IS 'Archival defaults: hot retention, batch size, the worker''s daily hour.';

-- A batch is planned (its block range fixed) before anything is uploaded, so that a re-run after
-- a crash completes the same batch under the same object keys; recorded once both objects are
-- confirmed; deleted once its events left the log.
CREATE TABLE archive_batches (
    batch_id text PRIMARY KEY,  -- blocks-<first>-<last>; the object keys derive from it
    first_block bigint NOT NULL,
    last_block bigint NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    -- Blocks are contiguous and gapless in seq, so a batch's count is its seq range.
    event_count integer GENERATED ALWAYS AS ((last_seq - first_seq + 1)::integer) STORED,
    state text GENERATED ALWAYS AS (CASE WHEN deleted_at IS NOT NULL THEN 'deleted'
                                         WHEN manifest_sha256 IS NOT NULL THEN 'recorded'
                                         ELSE 'planned' END) STORED,
    target text,
    data_bytes bigint,
    gz_bytes bigint,
    data_sha256 bytea,
    gz_sha256 bytea,
    manifest_sha256 bytea,
    prev_manifest_sha256 bytea,
    planned_at timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz,
    archived_by text,
    deleted_at timestamptz,
    CHECK (first_block <= last_block AND first_seq <= last_seq),
    CHECK (manifest_sha256 IS NULL OR (data_sha256 IS NOT NULL AND gz_sha256 IS NOT NULL)),
    CHECK (deleted_at IS NULL OR manifest_sha256 IS NOT NULL)
);
CREATE UNIQUE INDEX archive_batches_first_block ON archive_batches (first_block);
COMMENT ON TABLE archive_batches IS 'Archived batches: block and seq ranges, object keys, sizes and hashes.';

-- A batch restored from the archive for querying, beside (never into) the live log.
CREATE TABLE restored_events (
    batch_id text NOT NULL,
    seq bigint NOT NULL,
    block_no bigint NOT NULL,
    tenant_id text,
    kind text NOT NULL,
    occurred_at timestamptz NOT NULL,
    event jsonb NOT NULL,  -- the whole canonical line, as archived
    PRIMARY KEY (batch_id, seq)
);
COMMENT ON TABLE restored_events IS 'Events of restored archive batches (read-only; see restore_archive_batch).';

ALTER TYPE verify_result ADD ATTRIBUTE archived_through_block bigint, ADD ATTRIBUTE archived_through_seq bigint;
