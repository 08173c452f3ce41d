-- The log, in two steps, and the state that sealing keeps.
-- Runs with search_path set to the audit schema alone, as the schema's owner role:
-- names here are unqualified on purpose so that one file serves any schema name.

-- Marks the schema as ours (the installer refuses schemas without it) and keeps each
-- install's version and security snapshot, so that `status` can name what was loosened.
CREATE TABLE _install (
    installed_at timestamptz NOT NULL DEFAULT now(),
    version text NOT NULL,
    installed_by text NOT NULL DEFAULT session_user,
    snapshot jsonb NOT NULL
);
COMMENT ON TABLE _install IS 'One row per run of the installer: package version and security snapshot.';

-- Writers append here inside their own transaction. No btree index on purpose: the write path
-- stays cheap; the sealer reads the (small) table whole.
CREATE TABLE event_intake (
    intake_id bigint GENERATED ALWAYS AS IDENTITY (CACHE 100),
    id uuid,
    tenant_id text,
    actor_type text NOT NULL,
    actor_id text,
    db_role text NOT NULL,
    client_addr inet,
    application_name text,
    kind text COLLATE "C" NOT NULL,
    target_type text,
    target_id text,
    outcome text NOT NULL,
    correlation_id text,
    idempotency_key text,
    txid xid8 NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    schema_valid boolean,
    row_before jsonb,
    row_after jsonb
);
COMMENT ON TABLE event_intake IS
    'Pending events: appended by writers, moved into event_log by seal(). Never updated.';

-- The sealed log: seq is assigned by the one sealer, in order, without gaps.
CREATE TABLE event_log (
    seq bigint PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    tenant_id text,
    actor_type text NOT NULL,
    actor_id text,
    db_role text NOT NULL,
    client_addr inet,
    application_name text,
    kind text COLLATE "C" NOT NULL
        CHECK (kind ~ '^[A-Za-z][A-Za-z0-9_./-]*$' AND length(kind) <= 128),
    target_type text,
    target_id text,
    outcome text NOT NULL CHECK (outcome IN ('success', 'failure')),
    correlation_id text,
    idempotency_key text,
    txid xid8 NOT NULL,
    occurred_at timestamptz NOT NULL,
    sealed_at timestamptz NOT NULL,
    payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    schema_valid boolean,
    row_before jsonb,
    row_after jsonb,
    changed jsonb,
    block_no bigint
);
COMMENT ON TABLE event_log IS 'Sealed events, append-only; written only by seal(), removed only by prune.';
COMMENT ON COLUMN event_log.seq IS 'Position in the log, assigned at sealing; never reused, never smaller than one already visible.';
COMMENT ON COLUMN event_log.txid IS 'Transaction that wrote the event.';
COMMENT ON COLUMN event_log.occurred_at IS 'When the event happened (the writing statement''s clock).';
COMMENT ON COLUMN event_log.sealed_at IS 'When seal() moved it from the intake.';
COMMENT ON COLUMN event_log.schema_valid IS 'NULL: kind not registered; false: payload failed its registered schema.';
COMMENT ON COLUMN event_log.changed IS 'Captured updates: the changed columns with old and new values.';
COMMENT ON COLUMN event_log.block_no IS 'Hash-chain block that covers this event.';

-- Indexes serve list_events and count_events; they cost the sealer, never the writer.
CREATE INDEX event_log_tenant_seq ON event_log (tenant_id, seq);
CREATE INDEX event_log_tenant_kind_seq ON event_log (tenant_id, kind, seq);
-- Target ids are specific enough that the tenant need not lead (row_history has no tenant).
CREATE INDEX event_log_target_seq ON event_log (target_type, target_id, seq);
CREATE INDEX event_log_tenant_actor_seq ON event_log (tenant_id, actor_type, actor_id, seq);
CREATE INDEX event_log_correlation ON event_log (correlation_id, seq) WHERE correlation_id IS NOT NULL;
CREATE INDEX event_log_drift ON event_log (kind, seq) WHERE schema_valid = false;
CREATE INDEX event_log_occurred_brin ON event_log USING brin (occurred_at);

-- The sealer's one row: the last seq handed out (gap-free, survives prunes) and the lock that
-- keeps sealing to one transaction at a time.
CREATE TABLE seal_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_seq bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_sealed_at timestamptz
);
INSERT INTO seal_state DEFAULT VALUES;
COMMENT ON TABLE seal_state IS 'Sealer state: the last seq assigned and when events were last sealed.';

-- One row per idempotency key: uniqueness across pending and sealed events, race-free.
CREATE TABLE idempotency_keys (
    tenant_id text,
    idempotency_key text NOT NULL,
    event_id uuid NOT NULL,
    request_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (tenant_id, idempotency_key)
);
CREATE INDEX idempotency_keys_event ON idempotency_keys (event_id);
COMMENT ON TABLE idempotency_keys IS 'Idempotency keys per tenant, the event each produced and a hash of the request.';

CREATE TABLE event_types (
    kind text COLLATE "C" PRIMARY KEY CHECK (kind ~ '^[A-Za-z][A-Za-z0-9_./-]*$' AND length(kind) <= 128),
    schema jsonb NOT NULL CHECK (jsonb_typeof(schema) = 'object'),
    strict boolean NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text NOT NULL
);
COMMENT ON TABLE event_types IS 'Registered event kinds with the JSON Schema their payload must satisfy.';

-- Result rows of the query and maintenance functions.
CREATE TYPE seal_result AS (sealed bigint, first_seq bigint, last_seq bigint);
CREATE TYPE event_count AS (count bigint, by_kind_prefix jsonb);
CREATE TYPE monthly_event_count AS (month date, count bigint, by_kind_prefix jsonb);
CREATE TYPE prune_preview AS (cutoff timestamptz, events bigint, first_seq bigint, last_seq bigint, batches bigint);
CREATE TYPE prune_result AS (cutoff timestamptz, deleted bigint, first_seq bigint, last_seq bigint, more boolean);
CREATE TYPE seal_status AS (
    pending bigint, oldest_pending_at timestamptz, last_seq bigint, last_sealed_at timestamptz
);
