-- Explicit events: the one view over the log, record(), and the registry of event types.

-- The changed columns of an UPDATE, {"column": {"old": ..., "new": ...}}; computed by the sealer
-- (and by the events view for pending events), never in the writer's transaction.
CREATE OR REPLACE FUNCTION @schema@._changed(before jsonb, after jsonb)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(a.key, jsonb_build_object('old', before -> a.key, 'new', a.value)), '{}')
      FROM jsonb_each(after) AS a
     WHERE before -> a.key IS DISTINCT FROM a.value
$$;
COMMENT ON FUNCTION @schema@._changed(jsonb, jsonb) IS
    'Columns whose values differ between two row images, with old and new values.';

CREATE OR REPLACE VIEW @schema@.events AS
SELECT l.seq, false AS pending, l.id, l.tenant_id, l.actor_type, l.actor_id, l.db_role,
       l.client_addr, l.application_name, l.kind, l.target_type, l.target_id, l.outcome,
       l.correlation_id, l.idempotency_key, l.txid, l.occurred_at, l.sealed_at, l.payload,
       l.schema_valid, l.row_before, l.row_after, l.changed, l.block_no, l.origin, NULL::bigint AS intake_id
  FROM @schema@.event_log l
UNION ALL
SELECT NULL::bigint, true, i.id, i.tenant_id, i.actor_type, i.actor_id, i.db_role,
       i.client_addr, i.application_name, i.kind, i.target_type, i.target_id, i.outcome,
       i.correlation_id, i.idempotency_key, i.txid, i.occurred_at, NULL::timestamptz, i.payload,
       i.schema_valid, i.row_before, i.row_after,
       CASE WHEN i.row_before IS NOT NULL AND i.row_after IS NOT NULL
            THEN coalesce(i.changed, '{}') || @schema@._changed(i.row_before, i.row_after) END,
       NULL::bigint, i.origin, i.intake_id
  FROM @schema@.event_intake i;
COMMENT ON VIEW @schema@.events IS
    'Every event: sealed ones (pending = false, with seq) and pending ones not yet sealed (seq NULL); '
    'origin says whether record(), a capture trigger or pgaudit_py itself wrote it; intake_id orders pending '
    'events as they will be sealed.';

-- The subset of JSON Schema that payload validation understands. register_event_type refuses any
-- other keyword, so that a schema never silently means less than it says, and any keyword value of
-- the wrong type or shape, so that no record() of the kind can later fail on its own schema.
DROP FUNCTION IF EXISTS @schema@._schema_unsupported(jsonb, text);
CREATE OR REPLACE FUNCTION @schema@._schema_problem(schema jsonb, path text DEFAULT '$')
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
    v jsonb;
    t text;
    bad text;
BEGIN
    IF jsonb_typeof(schema) = 'boolean' THEN
        RETURN NULL;
    ELSIF jsonb_typeof(schema) IS DISTINCT FROM 'object' THEN
        RETURN path || ': a schema must be an object or a boolean';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(schema) LOOP
        t := jsonb_typeof(v);
        bad := CASE
            WHEN k IN ('const', 'default') THEN NULL
            -- (Nested CASEs: an AND may evaluate its operands in any order, and an array function
            -- on a scalar raises.)
            WHEN k = 'type' THEN
                CASE WHEN t = 'string' THEN
                          CASE WHEN v #>> '{}' IN ('null', 'boolean', 'object', 'array', 'number', 'string', 'integer')
                               THEN NULL ELSE 'must be a JSON type name, or a non-empty array of them' END
                     WHEN t = 'array' THEN
                          CASE WHEN jsonb_array_length(v) > 0 AND NOT EXISTS (
                                   SELECT 1 FROM jsonb_array_elements(v) e
                                    WHERE jsonb_typeof(e) <> 'string'
                                       OR e #>> '{}' NOT IN ('null', 'boolean', 'object', 'array', 'number', 'string', 'integer'))
                               THEN NULL ELSE 'must be a JSON type name, or a non-empty array of them' END
                     ELSE 'must be a JSON type name, or a non-empty array of them' END
            WHEN k IN ('enum', 'examples') THEN CASE WHEN t = 'array' THEN NULL ELSE 'must be an array' END
            WHEN k = 'required' THEN
                CASE WHEN t <> 'array' THEN 'must be an array of strings'
                     WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(v) e WHERE jsonb_typeof(e) <> 'string')
                     THEN 'must be an array of strings' END
            WHEN k IN ('minItems', 'maxItems', 'minLength', 'maxLength') THEN
                CASE WHEN t <> 'number' THEN 'must be a whole number from 0 to 2147483647'
                     WHEN v::numeric = trunc(v::numeric) AND v::numeric BETWEEN 0 AND 2147483647 THEN NULL
                     ELSE 'must be a whole number from 0 to 2147483647' END
            WHEN k IN ('minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum') THEN
                CASE WHEN t = 'number' THEN NULL ELSE 'must be a number' END
            WHEN k = 'pattern' THEN
                CASE WHEN t <> 'string' THEN 'must be a string'
                     ELSE @schema@._regex_problem(v #>> '{}') END
            WHEN k IN ('$schema', '$id', 'title', 'description', '$comment') THEN
                CASE WHEN t = 'string' THEN NULL ELSE 'must be a string' END
            WHEN k = 'properties' THEN
                CASE WHEN t = 'object' THEN NULL ELSE 'must be an object of schemas' END
            WHEN k IN ('items', 'additionalProperties') THEN NULL  -- checked as schemas below
            ELSE 'is not a supported keyword' END;
        IF bad IS NOT NULL THEN
            RETURN path || '.' || k || ' ' || bad;
        END IF;
        IF k = 'properties' THEN
            FOR bad IN SELECT @schema@._schema_problem(p.value, path || '.properties.' || p.key)
                         FROM jsonb_each(v) p LOOP
                IF bad IS NOT NULL THEN RETURN bad; END IF;
            END LOOP;
        ELSIF k IN ('items', 'additionalProperties') THEN
            bad := @schema@._schema_problem(v, path || '.' || k);
            IF bad IS NOT NULL THEN RETURN bad; END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@._schema_problem(jsonb, text) IS
    'The first keyword of a schema outside the supported JSON Schema subset, or with a value of the wrong '
    'type or shape, as "<path>.<keyword> <what is wrong>"; NULL when the schema is usable.';

-- Whether a pattern compiles (PostgreSQL's own regular expressions, as validation uses them).
CREATE OR REPLACE FUNCTION @schema@._regex_problem(pattern text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM '' ~ pattern;
    RETURN NULL;
EXCEPTION WHEN invalid_regular_expression THEN
    RETURN 'is not a valid regular expression';
END
$$;
COMMENT ON FUNCTION @schema@._regex_problem(text) IS 'NULL when a regular expression compiles, else why not.';

CREATE OR REPLACE FUNCTION @schema@._schema_errors(schema jsonb, value jsonb, path text DEFAULT '$')
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE
AS $$
DECLARE
    errs text[] := '{}';
    t text := jsonb_typeof(value);
    k text;
    v jsonb;
    i integer := 0;
BEGIN
    IF jsonb_typeof(schema) = 'boolean' THEN
        RETURN CASE WHEN schema = 'false'::jsonb THEN ARRAY[path || ': no value is allowed'] ELSE errs END;
    END IF;
    IF schema ? 'type' AND NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements_text(
                 CASE WHEN jsonb_typeof(schema -> 'type') = 'array' THEN schema -> 'type'
                      ELSE jsonb_build_array(schema -> 'type') END) AS want(name)
         WHERE want.name = t
            OR (want.name = 'integer' AND t = 'number' AND value::numeric = trunc(value::numeric))) THEN
        RETURN ARRAY[format('%s: expected %s, got %s', path, schema -> 'type', t)];
    END IF;
    IF schema ? 'enum' AND NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements(schema -> 'enum') AS e(elem) WHERE e.elem = value) THEN
        errs := errs || format('%s: %s is not one of %s', path, value, schema -> 'enum');
    END IF;
    IF schema ? 'const' AND value <> schema -> 'const' THEN
        errs := errs || format('%s: must be %s', path, schema -> 'const');
    END IF;
    IF t = 'number' THEN
        IF value::numeric < (schema ->> 'minimum')::numeric THEN
            errs := errs || format('%s: %s is less than %s', path, value, schema -> 'minimum');
        END IF;
        IF value::numeric > (schema ->> 'maximum')::numeric THEN
            errs := errs || format('%s: %s is greater than %s', path, value, schema -> 'maximum');
        END IF;
        IF value::numeric <= (schema ->> 'exclusiveMinimum')::numeric THEN
            errs := errs || format('%s: %s is not greater than %s', path, value, schema -> 'exclusiveMinimum');
        END IF;
        IF value::numeric >= (schema ->> 'exclusiveMaximum')::numeric THEN
            errs := errs || format('%s: %s is not less than %s', path, value, schema -> 'exclusiveMaximum');
        END IF;
    ELSIF t = 'string' THEN
        IF char_length(value #>> '{}') < (schema ->> 'minLength')::integer THEN
            errs := errs || format('%s: shorter than %s characters', path, schema -> 'minLength');
        END IF;
        IF char_length(value #>> '{}') > (schema ->> 'maxLength')::integer THEN
            errs := errs || format('%s: longer than %s characters', path, schema -> 'maxLength');
        END IF;
        IF schema ? 'pattern' AND NOT (value #>> '{}') ~ (schema ->> 'pattern') THEN
            errs := errs || format('%s: does not match %s', path, schema -> 'pattern');
        END IF;
    ELSIF t = 'array' THEN
        IF jsonb_array_length(value) < (schema ->> 'minItems')::integer THEN
            errs := errs || format('%s: fewer than %s items', path, schema -> 'minItems');
        END IF;
        IF jsonb_array_length(value) > (schema ->> 'maxItems')::integer THEN
            errs := errs || format('%s: more than %s items', path, schema -> 'maxItems');
        END IF;
        IF schema ? 'items' THEN
            FOR v IN SELECT jsonb_array_elements(value) LOOP
                errs := errs || @schema@._schema_errors(schema -> 'items', v, format('%s[%s]', path, i));
                i := i + 1;
            END LOOP;
        END IF;
    ELSIF t = 'object' THEN
        FOR k IN SELECT jsonb_array_elements_text(coalesce(schema -> 'required', '[]')) LOOP
            IF NOT value ? k THEN
                errs := errs || format('%s: %s is required', path, k);
            END IF;
        END LOOP;
        FOR k, v IN SELECT * FROM jsonb_each(value) LOOP
            IF schema -> 'properties' ? k THEN
                errs := errs || @schema@._schema_errors(schema -> 'properties' -> k, v, path || '.' || k);
            ELSIF schema ? 'additionalProperties' THEN
                errs := errs || @schema@._schema_errors(schema -> 'additionalProperties', v, path || '.' || k);
            END IF;
        END LOOP;
    END IF;
    RETURN errs;
END
$$;
COMMENT ON FUNCTION @schema@._schema_errors(jsonb, jsonb, text) IS
    'Validation errors of a JSON value against a schema in the supported subset; empty when valid.';

-- A setting from the application's context, NULL when unset or empty.
CREATE OR REPLACE FUNCTION @schema@._context(name text)
RETURNS text
LANGUAGE sql
STABLE
AS $$ SELECT NULLIF(pg_catalog.current_setting('pgaudit_py.' || name, true), '') $$;
COMMENT ON FUNCTION @schema@._context(text) IS
    'The transaction-local setting pgaudit_py.<name>, or NULL.';

-- The database role that is acting: SET ROLE if used, else the login role. Reliable inside
-- SECURITY DEFINER functions, where current_user is the owner.
CREATE OR REPLACE FUNCTION @schema@._db_role()
RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN pg_catalog.current_setting('role') = 'none' THEN session_user::text
                ELSE pg_catalog.current_setting('role') END
$$;
COMMENT ON FUNCTION @schema@._db_role() IS 'The acting database role (SET ROLE, else the session user).';

CREATE OR REPLACE FUNCTION @schema@._parse_client_addr(given text)
RETURNS inet
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    BEGIN  -- a subtransaction, paid only when the application names an address
        RETURN given::inet;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'pgaudit_py.client_addr is not an IP address: %', given
            USING ERRCODE = 'PA007';
    END;
END
$$;
COMMENT ON FUNCTION @schema@._parse_client_addr(text) IS
    'The address an application named in pgaudit_py.client_addr; PA007 if it is none.';

-- SQL, so that callers (record, every capture trigger) inline it: the common case, no address
-- named, costs no function call.
CREATE OR REPLACE FUNCTION @schema@._client_addr()
RETURNS inet
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN @schema@._context('client_addr') IS NULL THEN pg_catalog.inet_client_addr()
                ELSE @schema@._parse_client_addr(@schema@._context('client_addr')) END
$$;
COMMENT ON FUNCTION @schema@._client_addr() IS
    'Client address from pgaudit_py.client_addr, else the connection''s own address.';

CREATE OR REPLACE FUNCTION @schema@._check_kind(kind text, what text DEFAULT 'event kind')
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF kind IS NULL OR kind !~ '^[A-Za-z][A-Za-z0-9_./-]*$' OR char_length(kind) > 128 THEN
        RAISE EXCEPTION 'invalid %: %', what, coalesce(pg_catalog.quote_literal(kind), 'NULL')
            USING ERRCODE = 'PA001',
                  HINT = 'A kind starts with a letter, then letters, digits, _ . / -, at most 128 characters.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._check_kind(text, text) IS 'Raises PA001 for a kind that fails validation.';

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
    v_tenant text := coalesce(p_tenant_id, @schema@._context('tenant_id'));
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
    v_id uuid := gen_random_uuid();
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
            RAISE EXCEPTION 'kind % is reserved for pgaudit_py''s own events', pg_catalog.quote_literal(p_kind)
                USING ERRCODE = 'PA001';
        END IF;
        SELECT t.table_name INTO v_tracked FROM @schema@.tracked_tables t
         WHERE starts_with(p_kind, t.kind_prefix || '.') LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'kind % belongs to the captured changes of tracked table %', pg_catalog.quote_literal(p_kind),
                v_tracked USING ERRCODE = 'PA001', HINT = 'Choose a kind outside the table''s kind prefix.';
        END IF;
    ELSIF p_origin IS DISTINCT FROM 'system' THEN
        RAISE EXCEPTION 'invalid origin: %', coalesce(p_origin, 'NULL') USING ERRCODE = 'PA005';
    END IF;
    IF v_outcome NOT IN ('success', 'failure') THEN
        RAISE EXCEPTION 'invalid outcome: %', pg_catalog.quote_literal(v_outcome)
            USING ERRCODE = 'PA005', HINT = 'outcome is ''success'' or ''failure''.';
    END IF;
    IF jsonb_typeof(v_payload) <> 'object' THEN
        RAISE EXCEPTION 'payload must be a JSON object, got %', jsonb_typeof(v_payload)
            USING ERRCODE = 'PA002';
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
        WHEN char_length(p_idempotency_key) > 256 THEN 'idempotency_key is longer than 256' END;
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
        IF NOT v_valid AND v_strict THEN
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
            SELECT * INTO v_existing FROM @schema@.idempotency_keys k
             WHERE k.tenant_id IS NOT DISTINCT FROM v_tenant AND k.idempotency_key = p_idempotency_key;
            IF v_existing.request_hash <> v_hash THEN
                RAISE EXCEPTION 'idempotency key % was already used for a different event', pg_catalog.quote_literal(p_idempotency_key)
                    USING ERRCODE = 'PA004',
                          DETAIL = format('The first event with this key is %s.', v_existing.event_id);
            END IF;
            SELECT * INTO v_event FROM @schema@.events e WHERE e.id = v_existing.event_id;
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
              row_after, NULL, NULL, origin
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
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @schema@._record($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'record') $$;
COMMENT ON FUNCTION @schema@.record(text, text, text, text, text, text, jsonb, text, text, text) IS
    'Records an application event (pending until sealed). Tenant, actor and correlation default to '
    'the pgaudit_py.* settings; with no actor the database role is the actor. A repeated '
    'idempotency_key returns the first event; with different content it raises PA004. Kinds of '
    'pgaudit_py''s own events and of tracked tables'' captured changes are refused (PA001).';

CREATE OR REPLACE FUNCTION @schema@.register_event_type(
    kind text,
    schema jsonb,
    strict boolean DEFAULT false
)
RETURNS @schema@.event_types
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    bad text;
    result @schema@.event_types;
BEGIN
    PERFORM @schema@._check_kind(register_event_type.kind);
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
    INSERT INTO @schema@.event_types AS t (kind, schema, strict, registered_by)
    VALUES (register_event_type.kind, register_event_type.schema,
            coalesce(register_event_type.strict, false), @schema@._db_role())
    ON CONFLICT (kind) DO UPDATE
        SET schema = excluded.schema, strict = excluded.strict,
            registered_at = now(), registered_by = excluded.registered_by
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.register_event_type(text, jsonb, boolean) IS
    'Registers (or replaces) the JSON Schema for a kind. Non-strict: mismatching payloads are '
    'written and counted in event_type_drift; strict: they are refused with PA003.';

CREATE OR REPLACE VIEW @schema@.event_type_drift AS
SELECT t.kind, t.strict, count(e.kind) AS mismatches, max(e.occurred_at) AS last_mismatch_at
  FROM @schema@.event_types t
  LEFT JOIN @schema@.events e ON e.kind = t.kind AND e.schema_valid = false
 GROUP BY t.kind, t.strict;
COMMENT ON VIEW @schema@.event_type_drift IS
    'Per registered kind: how many retained events failed its schema (written anyway, non-strict types).';
