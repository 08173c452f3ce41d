-- Schema changes on tracked tables: event triggers (created by the installer when it runs as a
-- superuser, see sql/superuser/) follow renames, keep the capture functions in step with the
-- columns, forget dropped tables (recording that they went), and refuse to let a capture trigger
-- be dropped or disabled other than through disable_tracking.

-- Re-derive a tracked table's names from its column numbers; regenerate its capture function and
-- record the change when anything moved.
CREATE OR REPLACE FUNCTION @schema@._refresh_tracking(t @schema@.tracked_tables)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fresh @schema@.tracked_tables := t;
BEGIN
    fresh.table_name := t.relid::regclass::text;
    fresh.key_columns := @schema@._key_columns(t.relid);
    fresh.exclude_columns := @schema@._attnames(t.relid, t.exclude_attnums);
    fresh.redact_columns := @schema@._attnames(t.relid, t.redact_attnums);
    fresh.exclude_attnums := @schema@._attnums(t.relid, fresh.exclude_columns);
    fresh.redact_attnums := @schema@._attnums(t.relid, fresh.redact_columns);
    fresh.tenant_column := (@schema@._attnames(t.relid, ARRAY[t.tenant_attnum]))[1];
    fresh.tenant_attnum := CASE WHEN fresh.tenant_column IS NOT NULL THEN t.tenant_attnum END;
    IF fresh IS NOT DISTINCT FROM t THEN
        RETURN;
    END IF;
    UPDATE @schema@.tracked_tables SET
        table_name = fresh.table_name, key_columns = fresh.key_columns,
        exclude_columns = fresh.exclude_columns, redact_columns = fresh.redact_columns,
        tenant_column = fresh.tenant_column, exclude_attnums = fresh.exclude_attnums,
        redact_attnums = fresh.redact_attnums, tenant_attnum = fresh.tenant_attnum
     WHERE relid = t.relid;
    PERFORM @schema@._generate_capture(fresh);
    PERFORM @schema@._record('audit.tracked_table_altered', NULL, NULL, NULL, 'table', fresh.table_name,
                             jsonb_build_object('before', @schema@._tracking_options(t),
                                                'after', @schema@._tracking_options(fresh)),
                             'success', NULL, NULL);
END
$$;
COMMENT ON FUNCTION @schema@._refresh_tracking(@schema@.tracked_tables) IS
    'Follows renames and dropped columns of a tracked table; records audit.tracked_table_altered.';

-- Every tracked table that still exists must have its four capture triggers, enabled.
CREATE OR REPLACE FUNCTION @schema@._check_capture_triggers()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stack text;
    broken text;
BEGIN
    GET DIAGNOSTICS stack = PG_CONTEXT;
    IF strpos(stack, 'function @schema@.disable_tracking(') > 0
       OR strpos(stack, 'function @schema@.enable_tracking(') > 0 THEN
        RETURN;
    END IF;
    SELECT string_agg(t.table_name, ', ') INTO broken
      FROM @schema@.tracked_tables t
     WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.relid)
       AND (SELECT count(*) FROM pg_trigger g
             WHERE g.tgrelid = t.relid AND g.tgname LIKE '@schema@\_capture\_%' AND g.tgenabled <> 'D') < 4;
    IF broken IS NOT NULL THEN
        RAISE EXCEPTION 'the capture triggers of % cannot be dropped or disabled', broken
            USING ERRCODE = 'PA008', HINT = 'Use @schema@.disable_tracking to stop auditing a table.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._check_capture_triggers() IS
    'Refuses (PA008) a statement that left a tracked table without its enabled capture triggers.';

CREATE OR REPLACE FUNCTION @schema@._on_ddl_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables;
BEGIN
    FOR t IN SELECT * FROM @schema@.tracked_tables
              WHERE relid IN (SELECT objid FROM pg_event_trigger_ddl_commands() WHERE classid = 'pg_class'::regclass
                              UNION SELECT i.indrelid FROM pg_event_trigger_ddl_commands() d
                                      JOIN pg_index i ON i.indexrelid = d.objid)
                AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relid) LOOP
        PERFORM @schema@._refresh_tracking(t);
    END LOOP;
    PERFORM @schema@._check_capture_triggers();
END
$$;
COMMENT ON FUNCTION @schema@._on_ddl_end() IS 'Event trigger (ddl_command_end): follows ALTER TABLE on tracked tables.';

CREATE OR REPLACE FUNCTION @schema@._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gone oid;
    t @schema@.tracked_tables;
BEGIN
    FOR gone IN SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                 WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
                   AND d.objid IN (SELECT relid FROM @schema@.tracked_tables) LOOP
        PERFORM @schema@._unregister_tracking(gone, 'audit.tracked_table_dropped');
    END LOOP;
    -- A dropped table's limits would otherwise be listed under its oid, which a new table may reuse.
    FOR gone IN SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                 WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
                   AND d.objid::text IN (SELECT target FROM @schema@.rate_limits WHERE scope = 'table') LOOP
        PERFORM @schema@._drop_rate_limit('table', gone::text);
    END LOOP;
    -- A dropped column or key index changes what the remaining tables capture.
    FOR t IN SELECT * FROM @schema@.tracked_tables LOOP
        PERFORM @schema@._refresh_tracking(t);
    END LOOP;
    PERFORM @schema@._check_capture_triggers();
END
$$;
COMMENT ON FUNCTION @schema@._on_sql_drop() IS
    'Event trigger (sql_drop): forgets dropped tracked tables and their rate limits (recording it), '
    'and guards the capture triggers.';
