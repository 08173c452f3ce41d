-- Event triggers must be created by a superuser: the installer applies this file only when it
-- runs as one (status reports their absence otherwise). Recreated when the commands they watch change.
DO $$
DECLARE
    wanted text[] := ARRAY['ALTER INDEX', 'ALTER SCHEMA', 'ALTER TABLE', 'ALTER TRIGGER', 'ALTER TYPE', 'CREATE INDEX',
                           'CREATE TABLE', 'CREATE TRIGGER'];
BEGIN
    IF EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_ddl_end'
                                                AND evttags IS DISTINCT FROM wanted) THEN
        DROP EVENT TRIGGER @schema@_ddl_end;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_ddl_end') THEN
        CREATE EVENT TRIGGER @schema@_ddl_end ON ddl_command_end
            WHEN TAG IN ('ALTER INDEX', 'ALTER SCHEMA', 'ALTER TABLE', 'ALTER TRIGGER', 'ALTER TYPE', 'CREATE INDEX',
                         'CREATE TABLE', 'CREATE TRIGGER')
            EXECUTE FUNCTION @schema@._on_ddl_end();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_sql_drop') THEN
        CREATE EVENT TRIGGER @schema@_sql_drop ON sql_drop EXECUTE FUNCTION @schema@._on_sql_drop();
    END IF;
    -- Named to fire before @schema@_ddl_end, which checks what it did.
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_capture_partitions') THEN
        CREATE EVENT TRIGGER @schema@_capture_partitions ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE')
            EXECUTE FUNCTION @schema@._cover_partitions();
    END IF;
END
$$;
ALTER EVENT TRIGGER @schema@_ddl_end ENABLE;
ALTER EVENT TRIGGER @schema@_sql_drop ENABLE;
ALTER EVENT TRIGGER @schema@_capture_partitions ENABLE;

-- Partitions of tracked tables that have no capture triggers yet (tracked before partitions were
-- covered, or added while the event triggers were off): attached here, as the superuser.
SELECT @schema@._cover_partition(c), @schema@._attach_capture(c)
  FROM @schema@.tracked_tables t, @schema@._capture_tables(t.relid) c
 WHERE c <> t.relid AND EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c)
   AND @schema@._capture_problem(c) IS NOT NULL;

-- Now that schema changes are followed, capture functions may convert rows inline where it is safe.
SELECT @schema@_capture._generate_capture(c) FROM @schema@.tracked_tables t, @schema@._capture_tables(t.relid) c
 WHERE EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c);

-- Tables tracked by earlier releases granted SELECT to the owner role for TRUNCATE counts; the
-- capture role counts them now.
DO $$
DECLARE
    rel oid;
BEGIN
    FOR rel IN SELECT c FROM @schema@.tracked_tables t, @schema@._capture_tables(t.relid) c
                WHERE EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c) LOOP
        EXECUTE format('GRANT SELECT ON %s TO @schema@_capture', rel::regclass);
        EXECUTE format('REVOKE SELECT ON %s FROM @schema@_owner', rel::regclass);
    END LOOP;
END
$$;
