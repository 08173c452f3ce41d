-- Append-only by construction: guard triggers refuse changes to the intake and the log, even
-- for the owner and superusers, except when the statement runs inside one of the privileged
-- functions named in the trigger's arguments (seal, prune_events), as the owner role. The call
-- stack is checked rather than a setting, because any session can forge a setting.

CREATE OR REPLACE FUNCTION @schema@._guard_append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stack text;
    allowed text;
BEGIN
    IF current_user = '@schema@_owner' THEN
        GET DIAGNOSTICS stack = PG_CONTEXT;
        FOREACH allowed IN ARRAY TG_ARGV LOOP
            IF strpos(stack, 'function @schema@.' || allowed || '(') > 0 THEN
                RETURN NULL;
            END IF;
        END LOOP;
    END IF;
    RAISE EXCEPTION '%.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'PA006',
              HINT = 'Events leave the log only through prune_events and delete_archived (maintainer role).';
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
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('prune_events', 'delete_archived');
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();

-- The chain's blocks and the prune points are append-only too.
CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON @schema@.blocks
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('seal');
CREATE OR REPLACE TRIGGER guard_change BEFORE UPDATE OR DELETE ON @schema@.blocks
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.blocks
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON @schema@.prune_points
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('prune_events', 'delete_archived');
CREATE OR REPLACE TRIGGER guard_change BEFORE UPDATE OR DELETE ON @schema@.prune_points
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.prune_points
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();

-- Re-running the installer repairs a guard someone disabled.
ALTER TABLE @schema@.event_intake
    ENABLE TRIGGER guard_update, ENABLE TRIGGER guard_delete, ENABLE TRIGGER guard_truncate;
ALTER TABLE @schema@.event_log
    ENABLE TRIGGER guard_insert, ENABLE TRIGGER guard_update, ENABLE TRIGGER guard_delete,
    ENABLE TRIGGER guard_truncate;
ALTER TABLE @schema@.blocks
    ENABLE TRIGGER guard_insert, ENABLE TRIGGER guard_change, ENABLE TRIGGER guard_truncate;
ALTER TABLE @schema@.prune_points
    ENABLE TRIGGER guard_insert, ENABLE TRIGGER guard_change, ENABLE TRIGGER guard_truncate;
