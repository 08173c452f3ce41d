-- Append-only by construction: guard triggers refuse changes to the intake and the log, even
-- for the owner and superusers, except inside the privileged functions (seal, prune), which
-- announce themselves for the rest of their own statement with a transaction-local setting
-- and only while running as the owner role.

CREATE OR REPLACE FUNCTION @schema@._guard_append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_user = '@schema@_owner'
       AND current_setting('pgaudit_py.privileged_op', true) = ANY (TG_ARGV) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '%.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'PA006',
              HINT = 'Events leave the log only through prune_events (maintainer role).';
END
$$;
COMMENT ON FUNCTION @schema@._guard_append_only() IS
    'Guard trigger: refuses writes to the intake and the log outside the privileged functions.';

-- Statement-level: one check per statement, nothing per row.
CREATE OR REPLACE TRIGGER guard_update BEFORE UPDATE ON @schema@.event_intake
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_delete BEFORE DELETE ON @schema@.event_intake
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('seal');
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.event_intake
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();

CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON @schema@.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('seal');
CREATE OR REPLACE TRIGGER guard_update BEFORE UPDATE ON @schema@.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_delete BEFORE DELETE ON @schema@.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('prune');
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();

-- A transaction-local flag that a privileged function raises for its own work only.
CREATE OR REPLACE FUNCTION @schema@._privileged(op text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.set_config('pgaudit_py.privileged_op', op, true) $$;
COMMENT ON FUNCTION @schema@._privileged(text) IS
    'Raises (op) or clears ('''') the flag that the guard triggers honour for the owner role.';
