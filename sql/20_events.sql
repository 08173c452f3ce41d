-- Explicit events: record(), the implementation it shares with the package's own events, and the
-- registry of event types.

CREATE OR REPLACE FUNCTION @schema@._check_kind(kind text, what text DEFAULT 'event kind')
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF kind IS NULL OR kind !~ '^[A-Za-z][A-Za-z0-9_./-]*$' OR char_length(kind) > 128 THEN
        RAISE EXCEPTION 'invalid %', what  -- never the kind itself: messages end up in logs
            USING ERRCODE = 'PA001',
                  HINT = 'A kind starts with a letter, then letters, digits, _ . / -, at most 128 characters.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._check_kind(text, text) IS 'Raises PA001 for a kind that fails validation.';

-- A new event's id: a UUID of version 7 (RFC 9562), the Unix time in milliseconds in its first 48
-- bits, then 74 random ones, all from gen_random_uuid (random() would move the session's own
-- sequence, which setseed() makes repeatable). The log's unique index on id then grows at its right
-- edge, like seq's, instead of on a random page: once a log of random ids outgrows memory, every id
-- sealed reads a page of that index and, after each checkpoint, writes it whole to the WAL
-- (bench/scale.py). Ids of older events keep their version 4. A captured statement makes one and
-- counts its rows' ids up from it (_capture_body). SQL without FROM, so that it is inlined, in the
-- intake's column default too.
CREATE OR REPLACE FUNCTION @schema@._new_event_id()
RETURNS uuid
LANGUAGE sql
VOLATILE
AS $$
    -- The milliseconds' 6 bytes, then bytes 7 to 16 of a version 4 UUID, whose version digit (the
    -- 13th hex digit) becomes 7; its variant bits stay.
    SELECT pg_catalog.overlay(
               pg_catalog.encode(
                   pg_catalog.substr(pg_catalog.int8send(
                       pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000)::bigint), 3)
                   || pg_catalog.substr(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), 7), 'hex'),
               '7', 13, 1)::uuid
$$;
COMMENT ON FUNCTION @schema@._new_event_id() IS 'A new event id: a time-ordered UUID (version 7).';

ALTER TABLE @schema@.event_intake ALTER COLUMN id SET DEFAULT @schema@._new_event_id();

-- The implementation behind record(), and of the package's own events (audit.pruned, ...), which
-- have origin 'system'; record() passes 'record', and only that origin is checked against the kinds
-- reserved for the others. Like the helpers above it has no SET clause (a SET costs a settings save
-- and restore on every call, and stops SQL functions from being inlined): it is executable by the
-- owner and the roles of the privileged functions alone, and always runs under the pinned
-- search_path of the SECURITY DEFINER function that calls it.
DROP FUNCTION IF EXISTS @schema@._record(text, text, text, text, text, text, jsonb, text, text, text);
CREATE OR REPLACE FUNCTION @schema@._record(
    p_kind text,
    p_tenant_id text,
    p_actor_type text,
    p_actor_id text,
    p_target_type text,
    p_target_id text,
    p_payload jsonb,
    p_outcome text,
    p_correlation_id text,
    p_idempotency_key text,
    p_origin text DEFAULT 'system'
)
RETURNS @schema@.events
LANGUAGE plpgsql
AS $$
DECLARE
    -- An application's event may take its tenant from the session; the package's own carry only
    -- the tenant they name: one about the whole installation (a prune, a master key, an archive)
    -- filed under the tenant a session claims would be shown to that tenant's readers.
    v_tenant text := CASE WHEN p_origin = 'record' THEN coalesce(p_tenant_id, @schema@._context('tenant_id'))
                          ELSE p_tenant_id END;
    v_actor_id text := coalesce(p_actor_id, @schema@._context('actor_id'));
    v_actor_type text := coalesce(p_actor_type, @schema@._context('actor_type'));
    v_role text := @schema@._db_role();
    v_correlation text := coalesce(p_correlation_id, @schema@._context('correlation_id'));
    v_payload jsonb := coalesce(p_payload, '{}'::jsonb);
    v_outcome text := coalesce(p_outcome, 'success');
    v_schema jsonb;
    v_strict boolean;
    v_errors text[];
    v_valid boolean;
    v_id uuid := @schema@._new_event_id();
    v_hash bytea;
    v_too_long text;
    v_tracked text;
    v_existing @schema@.idempotency_keys;
    v_event @schema@.events;
BEGIN
    IF p_kind IS NULL OR p_kind !~ '^[A-Za-z][A-Za-z0-9_./-]*$' OR char_length(p_kind) > 128 THEN
        PERFORM @schema@._check_kind(p_kind);  -- raises, with the message
    END IF;
    IF p_origin = 'record' THEN
        -- What only pgaudit_py and the capture triggers write cannot be written through record().
        IF @schema@._reserved_kind(p_kind) THEN
            RAISE EXCEPTION 'the kind is reserved for pgaudit_py''s own events'
                USING ERRCODE = 'PA001';
        END IF;
        SELECT t.table_name INTO v_tracked FROM @schema@.tracked_tables t
         WHERE starts_with(p_kind, t.kind_prefix || '.') LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'the kind belongs to the captured changes of tracked table %', v_tracked
                USING ERRCODE = 'PA001', HINT = 'Choose a kind outside the table''s kind prefix.';
        END IF;
    ELSIF p_origin IS DISTINCT FROM 'system' THEN
        RAISE EXCEPTION 'invalid origin: %', coalesce(p_origin, 'NULL') USING ERRCODE = 'PA005';
    END IF;
    IF v_outcome NOT IN ('success', 'failure') THEN
        -- Not repeated: an outcome is one of two words, and text given here could be anything.
        RAISE EXCEPTION 'invalid outcome' USING ERRCODE = 'PA005', HINT = 'outcome is ''success'' or ''failure''.';
    END IF;
    IF jsonb_typeof(v_payload) <> 'object' THEN
        RAISE EXCEPTION 'payload must be a JSON object, got %', jsonb_typeof(v_payload)
            USING ERRCODE = 'PA002';
    END IF;
    -- Before the payload is printed, which a wild number makes huge (sql/14_wild_numbers.sql).
    IF p_origin = 'record' AND @schema@._wild_numbers(v_payload) THEN
        RAISE EXCEPTION 'payload holds a number of magnitude 1e400 or more (or non-zero below 1e-400)'
            USING ERRCODE = 'PA002', HINT = 'Send such a value as a string.';
    END IF;
    -- pgaudit_py's own payloads are bounded by what they describe (a table's options, say).
    IF p_origin = 'record' AND octet_length(v_payload::text) > 65536 THEN
        RAISE EXCEPTION 'payload is % bytes, more than the limit of 65536', octet_length(v_payload::text)
            USING ERRCODE = 'PA002';
    END IF;
    v_too_long := CASE
        WHEN char_length(v_tenant) > 256 THEN 'tenant_id is longer than 256'
        WHEN char_length(v_actor_type) > 64 THEN 'actor_type is longer than 64'
        WHEN char_length(v_actor_id) > 256 THEN 'actor_id is longer than 256'
        WHEN char_length(p_target_type) > 128 THEN 'target_type is longer than 128'
        WHEN char_length(p_target_id) > 512 THEN 'target_id is longer than 512'
        WHEN char_length(v_correlation) > 256 THEN 'correlation_id is longer than 256'
        WHEN char_length(p_idempotency_key) > 256 THEN 'idempotency_key is longer than 256'
        -- Indexed with the target type, for the moves of captured rows (event_log_moved_from).
        WHEN char_length(v_payload ->> 'moved_from') > 512 THEN 'payload.moved_from is longer than 512' END;
    IF v_too_long IS NOT NULL THEN
        RAISE EXCEPTION '% characters', v_too_long USING ERRCODE = 'PA005';
    END IF;
    IF v_actor_id IS NULL AND v_actor_type IS NULL THEN
        -- Nobody named: the database role is the actor.
        v_actor_type := 'db_role';
        v_actor_id := v_role;
    END IF;
    v_actor_type := coalesce(v_actor_type, 'user');

    SELECT t.schema, t.strict INTO v_schema, v_strict FROM @schema@.event_types t WHERE t.kind = p_kind;
    IF FOUND THEN
        v_errors := @schema@._schema_errors(v_schema, v_payload);
        v_valid := cardinality(v_errors) = 0;
        -- pgaudit_py's own events are written whatever a schema says (audit.event_quarantined
        -- must always be writable, or the sealer would be held up): a mismatch is only marked.
        IF NOT v_valid AND v_strict AND p_origin = 'record' THEN
            RAISE EXCEPTION 'payload does not match the schema registered for %', p_kind
                USING ERRCODE = 'PA003', DETAIL = array_to_string(v_errors, '; ');
        END IF;
    END IF;

    IF p_idempotency_key IS NOT NULL THEN
        v_hash := sha256(convert_to(jsonb_build_array(
            p_kind, v_actor_type, v_actor_id, p_target_type, p_target_id, v_payload, v_outcome,
            v_correlation)::text, 'UTF8'));
        -- Waits for a concurrent holder of the same key to commit or roll back.
        INSERT INTO @schema@.idempotency_keys (tenant_id, idempotency_key, event_id, request_hash)
        VALUES (v_tenant, p_idempotency_key, v_id, v_hash)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            -- By the unique index, which IS NOT DISTINCT FROM cannot use: a retry read every key.
            IF v_tenant IS NULL THEN
                SELECT * INTO v_existing FROM @schema@.idempotency_keys k
                 WHERE k.tenant_id IS NULL AND k.idempotency_key = p_idempotency_key;
            ELSE
                SELECT * INTO v_existing FROM @schema@.idempotency_keys k
                 WHERE k.tenant_id = v_tenant AND k.idempotency_key = p_idempotency_key;
            END IF;
            SELECT * INTO v_event FROM @schema@.events e WHERE e.id = v_existing.event_id;
            IF v_event.id IS NULL THEN
                -- The first event was set aside by the sealer: still the first event, still unsealed.
                SELECT NULL, true, q.id, q.tenant_id, q.actor_type, q.actor_id, q.db_role, q.client_addr,
                       q.application_name, q.kind, q.target_type, q.target_id, q.outcome, q.correlation_id,
                       q.idempotency_key, q.txid, q.occurred_at, NULL, q.payload, q.schema_valid, q.row_before,
                       q.row_after, NULL, NULL, q.origin, q.intake_id
                  INTO v_event FROM @schema@.quarantine q WHERE q.id = v_existing.event_id LIMIT 1;
            END IF;
            -- A retry is the same request from the same database role: another role is not handed
            -- the first event (its address, application and time; a writer may not read events).
            IF v_existing.request_hash <> v_hash OR (v_event.id IS NOT NULL AND v_event.db_role IS DISTINCT FROM v_role) THEN
                -- Not naming the first event: a writer may not read it, and a time-ordered id
                -- would tell it when another tenant's request came.
                RAISE EXCEPTION 'the idempotency key was already used for a different event'
                    USING ERRCODE = 'PA004',
                          DETAIL = 'The first event with this key differs in kind, actor, target, payload, outcome, '
                                   'correlation id or database role.';
            END IF;
            RETURN v_event;
        END IF;
    END IF;

    INSERT INTO @schema@.event_intake (
        id, tenant_id, actor_type, actor_id, db_role, client_addr, application_name, kind,
        target_type, target_id, outcome, correlation_id, idempotency_key, txid, occurred_at,
        payload, schema_valid, origin)
    VALUES (
        v_id, v_tenant, v_actor_type, v_actor_id, v_role, @schema@._client_addr(),
        pg_catalog.current_setting('application_name'), p_kind, p_target_type, p_target_id,
        v_outcome, v_correlation, p_idempotency_key, pg_current_xact_id(), clock_timestamp(),
        v_payload, v_valid, p_origin)
    RETURNING NULL, true, id, tenant_id, actor_type, actor_id, db_role, client_addr,
              application_name, kind, target_type, target_id, outcome, correlation_id,
              idempotency_key, txid, occurred_at, NULL, payload, schema_valid, row_before,
              row_after, NULL, NULL, origin, intake_id
    INTO v_event;
    RETURN v_event;
END
$$;
COMMENT ON FUNCTION @schema@._record(text, text, text, text, text, text, jsonb, text, text, text, text) IS
    'Validates and appends one event to the intake; see record(). Origin system unless given.';

CREATE OR REPLACE FUNCTION @schema@.record(
    kind text,
    tenant_id text DEFAULT NULL,
    actor_type text DEFAULT NULL,
    actor_id text DEFAULT NULL,
    target_type text DEFAULT NULL,
    target_id text DEFAULT NULL,
    payload jsonb DEFAULT '{}',
    outcome text DEFAULT 'success',
    correlation_id text DEFAULT NULL,
    idempotency_key text DEFAULT NULL
)
RETURNS @schema@.events
LANGUAGE plpgsql  -- not SQL: a SQL function's body is parsed and planned again at every call
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN @schema@._record($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'record');
END
$$;
COMMENT ON FUNCTION @schema@.record(text, text, text, text, text, text, jsonb, text, text, text) IS
    'Records an application event (pending until sealed). Tenant, actor and correlation default to '
    'the pgaudit_py.* settings; with no actor the database role is the actor. A repeated '
    'idempotency_key returns the first event; with different content it raises PA004. Kinds of '
    'pgaudit_py''s own events and of tracked tables'' captured changes are refused (PA001).';

-- Releases before 0.2 took (kind, schema, strict) only.
DROP FUNCTION IF EXISTS @schema@.register_event_type(text, jsonb, boolean);
CREATE OR REPLACE FUNCTION @schema@.register_event_type(
    kind text,
    schema jsonb,
    strict boolean DEFAULT false,
    replace boolean DEFAULT false,
    catalogue text DEFAULT NULL
)
RETURNS @schema@.event_types
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    bad text;
    had_schema jsonb;
    had_strict boolean;
    had_catalogue text;
    v_strict boolean;
    result @schema@.event_types;
BEGIN
    PERFORM @schema@._check_kind(register_event_type.kind);
    IF register_event_type.catalogue IS NOT NULL AND register_event_type.catalogue !~ '^[a-z][a-z0-9_]{0,63}$' THEN
        RAISE EXCEPTION 'invalid catalogue name: %', pg_catalog.quote_literal(register_event_type.catalogue)
            USING ERRCODE = 'PA005';
    END IF;
    IF @schema@._reserved_kind(register_event_type.kind) THEN
        RAISE EXCEPTION 'the kind is reserved for pgaudit_py''s own events'
            USING ERRCODE = 'PA001';
    END IF;
    IF register_event_type.schema IS NULL OR jsonb_typeof(register_event_type.schema) <> 'object' THEN
        RAISE EXCEPTION 'schema for % must be a JSON object', register_event_type.kind
            USING ERRCODE = 'PA005';
    END IF;
    bad := @schema@._schema_problem(register_event_type.schema);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'schema for % is not usable: %', register_event_type.kind, bad
            USING ERRCODE = 'PA005',
                  HINT = 'Supported: type, enum, const, required, properties, additionalProperties, '
                         'items, minItems, maxItems, minimum, maximum, exclusiveMinimum, '
                         'exclusiveMaximum, minLength, maxLength, pattern, and annotations.';
    END IF;
    -- One registration of a kind at a time (FOR UPDATE locks no row that is not there yet).
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('pgaudit_py.event_type:' || register_event_type.kind, 0));
    SELECT t.schema, t.strict, t.catalogue INTO had_schema, had_strict, had_catalogue
      FROM @schema@.event_types t WHERE t.kind = register_event_type.kind;
    -- strict NULL keeps the registration's (a new kind is not strict): a catalogue's load passes it,
    -- and never loosens a kind someone made strict, nor tightens one. Read here, under the lock: read
    -- before, a strict registration that committed meanwhile was lost (trial 97, e2).
    v_strict := coalesce(register_event_type.strict, had_strict, false);
    IF FOUND AND register_event_type.catalogue IS NOT NULL THEN
        -- One made strict with another schema than the catalogue's is not replaced, even when asked:
        -- whether the catalogue's schema is looser cannot be told.
        IF had_strict AND had_schema <> register_event_type.schema THEN
            RAISE EXCEPTION 'kind % was made strict with another schema than catalogue %''s: loading it would '
                            'loosen what the log refuses, so it was not registered',
                register_event_type.kind, register_event_type.catalogue
                USING ERRCODE = 'PA005', HINT = 'Register the kind again by hand with the schema wanted, strict or '
                                                'not, then load the catalogue.';
        END IF;
    END IF;
    IF FOUND THEN
        IF had_schema = register_event_type.schema AND had_strict = v_strict
           AND had_catalogue IS NOT DISTINCT FROM register_event_type.catalogue THEN
            -- The same again (a catalogue loaded twice): nothing changes.
            SELECT * INTO result FROM @schema@.event_types t WHERE t.kind = register_event_type.kind;
            RETURN result;
        END IF;
        -- Another schema or strictness replaces a registration only when that is asked for, except
        -- where a kind registered by hand is registered by hand again (as always), or a catalogue takes
        -- over a kind registered by hand with exactly its schema and strictness.
        IF NOT coalesce(register_event_type.replace, false)
           AND NOT (had_catalogue IS NULL AND register_event_type.catalogue IS NULL)
           AND NOT (had_catalogue IS NULL AND had_schema = register_event_type.schema
                    AND had_strict = v_strict) THEN
            RAISE EXCEPTION 'kind % is registered already, %', pg_catalog.quote_literal(register_event_type.kind),
                CASE WHEN had_catalogue IS NULL THEN 'by hand' ELSE 'by catalogue ' || had_catalogue END
                USING ERRCODE = 'PA005', HINT = 'Pass replace => true (pgaudit types load --replace) to replace it.';
        END IF;
    END IF;
    INSERT INTO @schema@.event_types AS t (kind, schema, strict, registered_by, catalogue)
    VALUES (register_event_type.kind, register_event_type.schema,
            v_strict, @schema@._db_role(), register_event_type.catalogue)
    ON CONFLICT (kind) DO UPDATE
        SET schema = excluded.schema, strict = excluded.strict,
            registered_at = now(), registered_by = excluded.registered_by, catalogue = excluded.catalogue
    RETURNING * INTO result;
    -- A registration decides what the log refuses: each one that changes anything is recorded, with
    -- what it replaced (the row keeps only the latest).
    PERFORM @schema@._record('audit.event_type_registered', NULL, NULL, NULL, 'event_type', result.kind,
                             (to_jsonb(result) - 'registered_at' - 'registered_by')
                                 || jsonb_build_object('replaced', CASE WHEN had_schema IS NOT NULL THEN
                                        jsonb_build_object('schema', had_schema, 'strict', had_strict,
                                                           'catalogue', had_catalogue) END),
                             'success', NULL, NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.register_event_type(text, jsonb, boolean, boolean, text) IS
    'Registers (or replaces) the JSON Schema for a kind. Non-strict: mismatching payloads are '
    'written and counted in event_type_drift; strict: they are refused with PA003. A kind a '
    'catalogue registered (or, loading a catalogue, one registered by hand with another schema) is '
    'replaced only with replace => true. Each registration that changes anything records '
    'audit.event_type_registered.';

CREATE OR REPLACE VIEW @schema@.event_type_drift AS
SELECT t.kind, t.strict, count(e.kind) AS mismatches, max(e.occurred_at) AS last_mismatch_at
  FROM @schema@.event_types t
  LEFT JOIN @schema@.events e ON e.kind = t.kind AND e.schema_valid = false
 GROUP BY t.kind, t.strict;
COMMENT ON VIEW @schema@.event_type_drift IS
    'Per registered kind: how many retained events failed its schema (written anyway, non-strict types).';
