-- Event triggers must be created by a superuser: the installer applies this file only when it
-- runs as one (status reports their absence otherwise). Recreated when the commands they watch change.
DO $$
DECLARE
    w record;
BEGIN
    -- The triggers on ddl_command_end, each made from its one list of the commands it watches, and
    -- made again when that list changes.
    FOR w IN SELECT * FROM (VALUES
            ('@schema@_ddl_end', @schema@._ddl_end_tags(), '@schema@._on_ddl_end'),
            -- Named to fire before @schema@_ddl_end, which checks what it did.
            ('@schema@_capture_partitions', ARRAY['ALTER TABLE', 'CREATE SCHEMA', 'CREATE TABLE'],
             '@schema@._cover_partitions')) AS t(name, tags, fn) LOOP
        IF EXISTS (SELECT 1 FROM pg_event_trigger e WHERE e.evtname = w.name AND e.evttags IS DISTINCT FROM w.tags) THEN
            EXECUTE format('DROP EVENT TRIGGER %I', w.name);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_event_trigger e WHERE e.evtname = w.name) THEN
            EXECUTE format('CREATE EVENT TRIGGER %I ON ddl_command_end WHEN TAG IN (%s) EXECUTE FUNCTION %s()', w.name,
                           (SELECT string_agg(quote_literal(g), ', ') FROM unnest(w.tags) AS g), w.fn);
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_sql_drop') THEN
        CREATE EVENT TRIGGER @schema@_sql_drop ON sql_drop EXECUTE FUNCTION @schema@._on_sql_drop();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_table_rewrite') THEN
        CREATE EVENT TRIGGER @schema@_table_rewrite ON table_rewrite EXECUTE FUNCTION @schema@._refuse_rewrite();
    END IF;
    -- Every command, once it ran (named to fire after @schema@_ddl_end).
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_temporary') THEN
        CREATE EVENT TRIGGER @schema@_temporary ON ddl_command_end EXECUTE FUNCTION @schema@._refuse_temporary_beneath();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_detach_concurrently') THEN
        CREATE EVENT TRIGGER @schema@_detach_concurrently ON ddl_command_start WHEN TAG IN ('ALTER TABLE')
            EXECUTE FUNCTION @schema@._refuse_detach_concurrently();
    END IF;
    -- Every command, before it runs.
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_function_roles') THEN
        CREATE EVENT TRIGGER @schema@_function_roles ON ddl_command_start
            EXECUTE FUNCTION @schema@._refuse_function_role_ddl();
    END IF;
END
$$;
ALTER EVENT TRIGGER @schema@_ddl_end ENABLE;
ALTER EVENT TRIGGER @schema@_sql_drop ENABLE;
ALTER EVENT TRIGGER @schema@_capture_partitions ENABLE;
ALTER EVENT TRIGGER @schema@_function_roles ENABLE;
ALTER EVENT TRIGGER @schema@_table_rewrite ENABLE;
ALTER EVENT TRIGGER @schema@_temporary ENABLE;
ALTER EVENT TRIGGER @schema@_detach_concurrently ENABLE;

-- Partitions of tracked tables that have no capture triggers yet (tracked before partitions were
-- covered, or added while the event triggers were off): attached here, as the superuser.
DO $$
DECLARE
    c oid;
BEGIN
    FOR c IN SELECT p FROM @schema@.tracked_tables t, @schema@._capture_tables(t.relid) p
              WHERE p <> t.relid AND EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = p AND r.relispartition)
                AND @schema@._capture_problem(p) IS NOT NULL LOOP
        PERFORM @schema@._cover_partition(c, @schema@._prove_owner(c)), @schema@._attach_capture(c);
    END LOOP;
END
$$;

-- Now that schema changes are followed, capture functions may convert rows inline where it is safe.
SELECT @schema@._generate_capture(c) FROM @schema@.tracked_tables t, @schema@._capture_tables(t.relid) c
 WHERE EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c);

-- Releases before 0.2 granted SELECT on tracked tables (to the owner role, then to the capture role)
-- to count the rows of a TRUNCATE; nothing reads them now. A superuser's REVOKE acts as the table's
-- owner, who granted it.
DO $$
DECLARE
    rel oid;
BEGIN
    FOR rel IN SELECT c.oid FROM pg_class c, aclexplode(c.relacl) a
                WHERE a.grantee IN ('@schema@_owner'::regrole, '@schema@_capture'::regrole)
                  AND a.privilege_type = 'SELECT'
                  AND c.oid IN (SELECT d FROM @schema@.tracked_tables t, @schema@._capture_tables(t.relid) d)
                GROUP BY c.oid LOOP
        EXECUTE format('REVOKE SELECT ON %s FROM @schema@_owner, @schema@_capture', rel::regclass);
    END LOOP;
END
$$;
