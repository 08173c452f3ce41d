-- Append-only by construction: guard triggers refuse changes to the intake, the log, the chain
-- and the quarantine for every role, owner and superusers included, except the roles named in the
-- trigger's arguments. Those are NOLOGIN roles with no members that own one privileged function
-- each (@schema@_sealer: seal; @schema@_pruner: prune_events and delete_archived), so current_user
-- is one of them only inside that function, or for a superuser who SET ROLE to it. Nothing here
-- reads a setting or message text: a session can forge the one, and lc_messages translates the other.

CREATE OR REPLACE FUNCTION @schema@._guard_append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_user::text = ANY (TG_ARGV) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '%.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'PA006',
              HINT = 'The log''s tables change only through seal, and prune_events and delete_archived (maintainer role).';
END
$$;
COMMENT ON FUNCTION @schema@._guard_append_only() IS
    'Guard trigger: refuses writes to the log''s tables unless current_user is one of the roles named.';

-- The tables the guards keep (the log and the intake with their partitions, the chain, the prune
-- points, the quarantine, the sealer's state): what DDL must not rewrite or tie to another table.
CREATE OR REPLACE FUNCTION @schema@._guarded_tables()
RETURNS SETOF regclass
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.relid FROM pg_partition_tree('@schema@.event_log') t
    UNION ALL
    SELECT t.relid FROM pg_partition_tree('@schema@.event_intake') t
    UNION ALL
    SELECT unnest(ARRAY['@schema@.blocks', '@schema@.prune_points', '@schema@.quarantine', '@schema@.seal_state']::regclass[])
$$;
COMMENT ON FUNCTION @schema@._guarded_tables() IS 'The tables the guard triggers keep, partitions included.';

-- Statement-level: one check per statement, nothing per row.
CREATE OR REPLACE TRIGGER guard_update BEFORE UPDATE ON @schema@.event_intake
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_delete BEFORE DELETE ON @schema@.event_intake
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('@schema@_sealer');
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.event_intake
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();

-- The intake's partitions: a statement on one of them (not through event_intake) meets these. Only
-- seal() empties a drained partition, with TRUNCATE; it deletes through event_intake.
DO $$
DECLARE
    n integer;
BEGIN
    FOR n IN 0..3 LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER guard_update BEFORE UPDATE ON @schema@.event_intake_%s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only()', n);
        EXECUTE format('CREATE OR REPLACE TRIGGER guard_delete BEFORE DELETE ON @schema@.event_intake_%s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only()', n);
        EXECUTE format('CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.event_intake_%s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only(''@schema@_sealer'')', n);
        EXECUTE format('ALTER TABLE @schema@.event_intake_%s ENABLE TRIGGER guard_update,'
                       ' ENABLE TRIGGER guard_delete, ENABLE TRIGGER guard_truncate', n);
    END LOOP;
END
$$;

CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON @schema@.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('@schema@_sealer');
CREATE OR REPLACE TRIGGER guard_update BEFORE UPDATE ON @schema@.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_delete BEFORE DELETE ON @schema@.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('@schema@_pruner');
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.event_log
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();

-- The chain's blocks, the prune points and the quarantine are append-only too.
CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON @schema@.blocks
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('@schema@_sealer');
CREATE OR REPLACE TRIGGER guard_change BEFORE UPDATE OR DELETE ON @schema@.blocks
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.blocks
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON @schema@.prune_points
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('@schema@_pruner');
CREATE OR REPLACE TRIGGER guard_change BEFORE UPDATE OR DELETE ON @schema@.prune_points
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.prune_points
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON @schema@.quarantine
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('@schema@_sealer');
CREATE OR REPLACE TRIGGER guard_change BEFORE UPDATE OR DELETE ON @schema@.quarantine
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.quarantine
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();

-- The sealer's state says where the chain starts and ends, which status and prune trust: only
-- seal() moves it (one row, never inserted or deleted after the first migration).
CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON @schema@.seal_state
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_update BEFORE UPDATE ON @schema@.seal_state
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only('@schema@_sealer');
CREATE OR REPLACE TRIGGER guard_delete BEFORE DELETE ON @schema@.seal_state
    FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only();
CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON @schema@.seal_state
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
ALTER TABLE @schema@.quarantine
    ENABLE TRIGGER guard_insert, ENABLE TRIGGER guard_change, ENABLE TRIGGER guard_truncate;
ALTER TABLE @schema@.seal_state
    ENABLE TRIGGER guard_insert, ENABLE TRIGGER guard_update, ENABLE TRIGGER guard_delete,
    ENABLE TRIGGER guard_truncate;

-- Re-running the installer also stores each column of the package's tables as its type does, and
-- makes every one of them logged: storage PLAIN keeps a value out of TOAST, and an event, a
-- quarantined one, a block's hashes, a JSON schema or a secret too large for a page would then be
-- refused (a chosen event set aside, or sealing stopped); an UNLOGGED table is emptied by a crash
-- (the chain, the revocations). What a release before the snapshot held these did not name is
-- put back too, not recorded as installed (tests/test_trust_attacks_64.py).
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT a.attrelid::regclass AS rel, a.attname, y.typstorage
               FROM pg_attribute a JOIN pg_type y ON y.oid = a.atttypid JOIN pg_class r ON r.oid = a.attrelid
              WHERE r.relnamespace = '@schema@'::regnamespace AND r.relkind IN ('r', 'p')
                AND a.attnum > 0 AND NOT a.attisdropped AND a.attstorage <> y.typstorage LOOP
        EXECUTE format('ALTER TABLE ONLY %s ALTER COLUMN %I SET STORAGE %s', c.rel, c.attname,
                       CASE c.typstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END);
    END LOOP;
    FOR c IN SELECT r.oid::regclass AS rel FROM pg_class r
              WHERE r.relnamespace = '@schema@'::regnamespace AND r.relkind = 'r' AND r.relpersistence = 'u' LOOP
        EXECUTE format('ALTER TABLE %s SET LOGGED', c.rel);
    END LOOP;
END
$$;

-- And every type of the package (the results of seal(), prune_events() and the like) is usable by
-- all, as PostgreSQL makes a type: the function roles make functions returning them, and with
-- USAGE taken from PUBLIC every install and upgrade would fail (tests/test_trust_attacks_66.py).
DO $$
DECLARE
    t regtype;
BEGIN
    FOR t IN SELECT y.oid::regtype FROM pg_type y
              WHERE y.typnamespace = '@schema@'::regnamespace AND y.typelem = 0
                AND (y.typtype IN ('d', 'e', 'r', 'm')
                     OR (y.typtype = 'c' AND (SELECT r.relkind FROM pg_class r WHERE r.oid = y.typrelid) = 'c'))
                AND NOT has_type_privilege('public', y.oid, 'USAGE') LOOP
        EXECUTE format('GRANT USAGE ON TYPE %s TO PUBLIC', t);
    END LOOP;
END
$$;

-- And each table of the package's schema names its rows to a publication (a change-data-capture
-- setup's FOR ALL TABLES, or one the owner role makes) by its primary key, or whole where it has
-- none (the intake, whose rows the sealer deletes; the idempotency keys, which prune deletes): with
-- no replica identity, a published DELETE or UPDATE is refused, and sealing, prune or a token's
-- revocation with it. FULL costs nothing below wal_level = logical.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT r.oid::regclass AS rel,
                    CASE WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = r.oid AND i.indisprimary)
                         THEN 'd' ELSE 'f' END AS wanted
               FROM pg_class r
              WHERE r.relnamespace = '@schema@'::regnamespace
                AND r.relkind IN ('r', 'p') LOOP
        CONTINUE WHEN (SELECT r.relreplident FROM pg_class r WHERE r.oid = c.rel) = c.wanted;
        EXECUTE format('ALTER TABLE ONLY %s REPLICA IDENTITY %s', c.rel, CASE c.wanted WHEN 'd' THEN 'DEFAULT' ELSE 'FULL' END);
    END LOOP;
END
$$;
