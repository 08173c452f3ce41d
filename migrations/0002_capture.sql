-- Capture: the catalogue of tracked tables, and the intake's share of the "what changed".

-- Redacted columns are stored as a marker in both row images, so the sealer's diff cannot see
-- whether they changed: the capture trigger notes that here for UPDATE events.
ALTER TABLE event_intake ADD COLUMN changed jsonb;

CREATE TABLE tracked_tables (
    relid oid PRIMARY KEY,
    table_name text NOT NULL,
    kind_prefix text COLLATE "C" NOT NULL
        CHECK (kind_prefix ~ '^[A-Za-z][A-Za-z0-9_./-]*$' AND length(kind_prefix) <= 100),
    key_columns text[],
    exclude_columns text[] NOT NULL DEFAULT '{}',
    redact_columns text[] NOT NULL DEFAULT '{}',
    tenant_column text,
    -- The same columns by number, so that renames are followed (names are refreshed from these).
    exclude_attnums int2[] NOT NULL DEFAULT '{}',
    redact_attnums int2[] NOT NULL DEFAULT '{}',
    tenant_attnum int2,
    skip_noop_updates boolean NOT NULL DEFAULT true,
    enabled_at timestamptz NOT NULL DEFAULT now(),
    enabled_by text NOT NULL,
    CHECK (NOT exclude_columns && redact_columns)
);
COMMENT ON TABLE tracked_tables IS 'Tables whose writes are captured, with their capture options.';
COMMENT ON COLUMN tracked_tables.key_columns IS
    'Identity of a row: the primary key, else the replica identity index; NULL when the table has neither.';
