-- Event triggers must be created by a superuser: the installer applies this file only when it
-- runs as one (status reports their absence otherwise).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_ddl_end') THEN
        CREATE EVENT TRIGGER @schema@_ddl_end ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER', 'CREATE INDEX', 'ALTER INDEX')
            EXECUTE FUNCTION @schema@._on_ddl_end();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '@schema@_sql_drop') THEN
        CREATE EVENT TRIGGER @schema@_sql_drop ON sql_drop EXECUTE FUNCTION @schema@._on_sql_drop();
    END IF;
END
$$;
ALTER EVENT TRIGGER @schema@_ddl_end ENABLE;
ALTER EVENT TRIGGER @schema@_sql_drop ENABLE;
