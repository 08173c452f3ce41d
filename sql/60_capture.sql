-- Capture: statement-level triggers with transition tables append one intake row per changed row
-- in a single INSERT ... SELECT; everything that can wait (the changed-column diff) waits for
-- the sealer.

-- The documented text form of a row's identity: the key value as text for a one-column key, a
-- JSON array of the values in key order for a composite key (e.g. [7, "EU"]), NULL without a key.
CREATE OR REPLACE FUNCTION @schema@._row_key(image jsonb, key_columns text[])
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE WHEN key_columns IS NULL THEN NULL
                WHEN cardinality(key_columns) = 1 THEN image ->> key_columns[1]
                ELSE (SELECT jsonb_agg(image -> k ORDER BY o)
                        FROM unnest(key_columns) WITH ORDINALITY AS u(k, o))::text END
$$;
COMMENT ON FUNCTION @schema@._row_key(jsonb, text[]) IS
    'target_id of a captured row: the key as text, a JSON array for composite keys, NULL without a key.';

CREATE OR REPLACE FUNCTION @schema@._capture()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables;
    v_tenant text := NULLIF(current_setting('pgaudit_py.tenant_id', true), '');
    v_actor_type text := NULLIF(current_setting('pgaudit_py.actor_type', true), '');
    v_actor_id text := NULLIF(current_setting('pgaudit_py.actor_id', true), '');
    v_correlation text := NULLIF(current_setting('pgaudit_py.correlation_id', true), '');
    v_role text := @schema@._db_role();
    v_addr inet := @schema@._client_addr();
    v_app text := current_setting('application_name');
    v_txid xid8 := pg_current_xact_id();
    v_at timestamptz := statement_timestamp();
    v_kind text;
    v_keys integer;
    v_key text;
    v_plain boolean;
    v_redact jsonb := '{}';
BEGIN
    SELECT * INTO t FROM @schema@.tracked_tables WHERE relid = TG_RELID;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'capture trigger on % has no entry in %.tracked_tables', TG_RELID::regclass, '@schema@'
            USING ERRCODE = 'PA008', HINT = 'Run enable_tracking or disable_tracking for this table.';
    END IF;
    IF v_actor_id IS NULL AND v_actor_type IS NULL THEN
        v_actor_type := 'db_role';
        v_actor_id := v_role;
    END IF;
    v_actor_type := coalesce(v_actor_type, 'user');
    v_kind := t.kind_prefix || '.' || lower(TG_OP);
    -- Decided once per statement, so that the common case costs no function call per row.
    v_keys := coalesce(cardinality(t.key_columns), 0);
    v_key := t.key_columns[1];
    v_plain := cardinality(t.exclude_columns) = 0 AND cardinality(t.redact_columns) = 0;
    IF cardinality(t.redact_columns) > 0 THEN
        SELECT jsonb_object_agg(c, '[redacted]') INTO v_redact FROM unnest(t.redact_columns) AS c;
    END IF;

    -- "OFFSET 0" keeps each row image computed once rather than once per use.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO @schema@.event_intake (
            tenant_id, actor_type, actor_id, db_role, client_addr, application_name, kind,
            target_type, target_id, outcome, correlation_id, txid, occurred_at, payload, row_after)
        SELECT CASE WHEN t.tenant_column IS NULL THEN v_tenant ELSE coalesce(r.j ->> t.tenant_column, v_tenant) END,
               v_actor_type, v_actor_id, v_role, v_addr, v_app, v_kind, t.kind_prefix,
               CASE v_keys WHEN 1 THEN r.j ->> v_key WHEN 0 THEN NULL ELSE @schema@._row_key(r.j, t.key_columns) END,
               'success', v_correlation, v_txid, v_at, '{}',
               CASE WHEN v_plain THEN r.j ELSE (r.j - t.exclude_columns) || v_redact END
          FROM (SELECT to_jsonb(n) AS j FROM new_rows n OFFSET 0) AS r;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Old and new transition rows come in the same order: pair them by position, no join.
        INSERT INTO @schema@.event_intake (
            tenant_id, actor_type, actor_id, db_role, client_addr, application_name, kind,
            target_type, target_id, outcome, correlation_id, txid, occurred_at, payload, row_before,
            row_after, changed)
        SELECT CASE WHEN t.tenant_column IS NULL THEN v_tenant ELSE coalesce(p.n ->> t.tenant_column, v_tenant) END,
               v_actor_type, v_actor_id, v_role, v_addr, v_app, v_kind, t.kind_prefix,
               CASE v_keys WHEN 1 THEN p.n ->> v_key WHEN 0 THEN NULL ELSE @schema@._row_key(p.n, t.key_columns) END,
               'success', v_correlation, v_txid, v_at, '{}',
               CASE WHEN v_plain THEN p.o ELSE (p.o - t.exclude_columns) || v_redact END,
               CASE WHEN v_plain THEN p.n ELSE (p.n - t.exclude_columns) || v_redact END,
               CASE WHEN NOT v_plain AND cardinality(t.redact_columns) > 0 THEN
                   (SELECT jsonb_object_agg(c, '{"old": "[redacted]", "new": "[redacted]"}'::jsonb)
                      FROM unnest(t.redact_columns) AS c WHERE p.o -> c IS DISTINCT FROM p.n -> c) END
          FROM unnest(ARRAY(SELECT to_jsonb(o) FROM old_rows o),
                      ARRAY(SELECT to_jsonb(n) FROM new_rows n)) AS p(o, n)
         WHERE NOT t.skip_noop_updates
            OR CASE WHEN v_plain THEN p.o <> p.n
                    ELSE (p.o - t.exclude_columns) <> (p.n - t.exclude_columns) END;
    ELSE
        INSERT INTO @schema@.event_intake (
            tenant_id, actor_type, actor_id, db_role, client_addr, application_name, kind,
            target_type, target_id, outcome, correlation_id, txid, occurred_at, payload, row_before)
        SELECT CASE WHEN t.tenant_column IS NULL THEN v_tenant ELSE coalesce(r.j ->> t.tenant_column, v_tenant) END,
               v_actor_type, v_actor_id, v_role, v_addr, v_app, v_kind, t.kind_prefix,
               CASE v_keys WHEN 1 THEN r.j ->> v_key WHEN 0 THEN NULL ELSE @schema@._row_key(r.j, t.key_columns) END,
               'success', v_correlation, v_txid, v_at, '{}',
               CASE WHEN v_plain THEN r.j ELSE (r.j - t.exclude_columns) || v_redact END
          FROM (SELECT to_jsonb(o) AS j FROM old_rows o OFFSET 0) AS r;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@._capture() IS
    'Statement-level capture trigger: one intake row per inserted, updated or deleted row.';

-- TRUNCATE has no transition table: one event saying who emptied what, and how many rows went
-- (counted before they go; enable_tracking lets the owner role read tracked tables for this).
CREATE OR REPLACE FUNCTION @schema@._capture_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables;
    v_rows bigint;
BEGIN
    SELECT * INTO t FROM @schema@.tracked_tables WHERE relid = TG_RELID;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'capture trigger on % has no entry in %.tracked_tables', TG_RELID::regclass, '@schema@'
            USING ERRCODE = 'PA008', HINT = 'Run enable_tracking or disable_tracking for this table.';
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', TG_RELID::regclass) INTO v_rows;
    PERFORM @schema@._record(t.kind_prefix || '.truncate', NULL, NULL, NULL, t.kind_prefix, NULL,
                             jsonb_build_object('table', t.table_name, 'rows', v_rows), 'success', NULL, NULL);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@._capture_truncate() IS
    'Capture trigger for TRUNCATE: records <prefix>.truncate with the table and the number of rows removed.';

-- The catalogue is written only here, and every change is itself an event.
CREATE OR REPLACE FUNCTION @schema@._register_tracking(entry @schema@.tracked_tables)
RETURNS @schema@.tracked_tables
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result @schema@.tracked_tables;
BEGIN
    INSERT INTO @schema@.tracked_tables AS t (relid, table_name, kind_prefix, key_columns, exclude_columns,
                                              redact_columns, tenant_column, skip_noop_updates, enabled_by)
    VALUES (entry.relid, entry.table_name, entry.kind_prefix, entry.key_columns, entry.exclude_columns,
            entry.redact_columns, entry.tenant_column, entry.skip_noop_updates, @schema@._db_role())
    ON CONFLICT (relid) DO UPDATE
        SET table_name = excluded.table_name, kind_prefix = excluded.kind_prefix,
            key_columns = excluded.key_columns, exclude_columns = excluded.exclude_columns,
            redact_columns = excluded.redact_columns, tenant_column = excluded.tenant_column,
            skip_noop_updates = excluded.skip_noop_updates, enabled_at = now(), enabled_by = excluded.enabled_by
    RETURNING * INTO result;
    PERFORM @schema@._record('audit.tracking_enabled', NULL, NULL, NULL, 'table', result.table_name,
                             to_jsonb(result) - 'relid' - 'enabled_at' - 'enabled_by', 'success', NULL, NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@._register_tracking(@schema@.tracked_tables) IS
    'Writes a tracked_tables entry and records audit.tracking_enabled; called by enable_tracking.';

CREATE OR REPLACE FUNCTION @schema@._unregister_tracking(target oid, reason text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gone @schema@.tracked_tables;
BEGIN
    DELETE FROM @schema@.tracked_tables WHERE relid = target RETURNING * INTO gone;
    IF FOUND THEN
        PERFORM @schema@._record(reason, NULL, NULL, NULL, 'table', gone.table_name,
                                 jsonb_build_object('kind_prefix', gone.kind_prefix), 'success', NULL, NULL);
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._unregister_tracking(oid, text) IS
    'Removes a tracked_tables entry and records why (audit.tracking_disabled, audit.tracked_table_dropped).';

CREATE OR REPLACE FUNCTION @schema@.enable_tracking(
    target regclass,
    exclude_columns text[] DEFAULT '{}',
    redact_columns text[] DEFAULT '{}',
    tenant_column text DEFAULT NULL,
    skip_noop_updates boolean DEFAULT true,
    kind_prefix text DEFAULT NULL
)
RETURNS @schema@.tracked_tables
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    rel pg_class;
    ns text;
    col text;
    entry @schema@.tracked_tables;
BEGIN
    SELECT * INTO rel FROM pg_class c WHERE c.oid = target;
    ns := (SELECT nspname FROM pg_namespace n WHERE n.oid = rel.relnamespace);
    IF ns = '@schema@' THEN
        RAISE EXCEPTION 'cannot track %: the audit log does not audit itself', target USING ERRCODE = 'PA008';
    ELSIF rel.relispartition THEN
        RAISE EXCEPTION 'cannot track %: it is a partition', target USING ERRCODE = 'PA008',
            HINT = format('Track the partitioned table %s instead.',
                          (SELECT i.inhparent::regclass FROM pg_inherits i WHERE i.inhrelid = target));
    ELSIF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot track %: only tables can be tracked, not %', target,
            CASE rel.relkind WHEN 'v' THEN 'views' WHEN 'm' THEN 'materialized views'
                             WHEN 'f' THEN 'foreign tables' ELSE 'this kind of relation' END
            USING ERRCODE = 'PA008';
    END IF;
    FOREACH col IN ARRAY coalesce(exclude_columns, '{}') || coalesce(redact_columns, '{}')
                         || CASE WHEN tenant_column IS NULL THEN '{}'::text[] ELSE ARRAY[tenant_column] END LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = target AND a.attname = col
                                                     AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column % of % does not exist', coalesce(quote_ident(col), 'NULL'), target
                USING ERRCODE = 'PA005';
        END IF;
    END LOOP;
    IF exclude_columns && redact_columns THEN
        RAISE EXCEPTION 'a column cannot be both excluded and redacted: %',
            array_to_string(ARRAY(SELECT unnest(exclude_columns) INTERSECT SELECT unnest(redact_columns)), ', ')
            USING ERRCODE = 'PA005';
    END IF;
    entry.kind_prefix := coalesce(kind_prefix, ns || '.' || rel.relname);
    PERFORM @schema@._check_kind(entry.kind_prefix, 'kind prefix');
    IF char_length(entry.kind_prefix) > 100 THEN
        RAISE EXCEPTION 'kind prefix is longer than 100 characters' USING ERRCODE = 'PA001';
    END IF;

    entry.relid := target;
    entry.table_name := target::text;
    entry.key_columns := @schema@._key_columns(target);
    entry.exclude_columns := coalesce(exclude_columns, '{}');
    entry.redact_columns := coalesce(redact_columns, '{}');
    entry.tenant_column := tenant_column;
    entry.skip_noop_updates := coalesce(skip_noop_updates, true);

    EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_capture_insert AFTER INSERT ON %s'
                   ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @schema@._capture()', target);
    EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_capture_update AFTER UPDATE ON %s'
                   ' REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._capture()', target);
    EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_capture_delete AFTER DELETE ON %s'
                   ' REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION @schema@._capture()', target);
    EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_capture_truncate BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._capture_truncate()', target);
    EXECUTE format('GRANT SELECT ON %s TO @schema@_owner', target);  -- to count the rows a TRUNCATE removes
    RETURN @schema@._register_tracking(entry);
END
$$;
COMMENT ON FUNCTION @schema@.enable_tracking(regclass, text[], text[], text, boolean, text) IS
    'Captures every INSERT, UPDATE, DELETE and TRUNCATE on a table from now on (idempotent; calling '
    'again changes the options). Caller: the maintainer role, owning the table.';

CREATE OR REPLACE FUNCTION @schema@.disable_tracking(target regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op text;
BEGIN
    FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', '@schema@_capture_' || op, target);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM @schema@.tracked_tables WHERE relid = target) THEN
        RETURN false;
    END IF;
    EXECUTE format('REVOKE SELECT ON %s FROM @schema@_owner', target);
    PERFORM @schema@._unregister_tracking(target, 'audit.tracking_disabled');
    RETURN true;
END
$$;
COMMENT ON FUNCTION @schema@.disable_tracking(regclass) IS
    'Stops capturing a table (idempotent); returns whether it was tracked. Caller: the maintainer, owning the table.';

CREATE OR REPLACE FUNCTION @schema@._key_columns(target regclass)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The primary key, else the replica identity index, in index column order.
    SELECT ARRAY(SELECT a.attname::text
                   FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, o)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  ORDER BY k.o)
      FROM pg_index i
     WHERE i.indrelid = target AND (i.indisprimary OR i.indisreplident)
     ORDER BY i.indisprimary DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION @schema@._key_columns(regclass) IS
    'Columns that identify a row: the primary key, else the replica identity index; NULL if neither.';
