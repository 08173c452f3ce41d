-- Integrity of an installation: what `status` checks.

-- What an install leaves in place (grants, triggers, and a digest of every definition): compared by `status` with the snapshot the
-- last install stored, so that a dropped function or a loosened grant is named.
CREATE OR REPLACE FUNCTION @schema@._security_snapshot()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'schema_acl', (SELECT to_jsonb(coalesce(n.nspacl::text[], '{}')) FROM pg_namespace n
                        WHERE n.nspname = '@schema@'),
        'functions', (SELECT coalesce(jsonb_object_agg(
                          p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                          jsonb_build_object('security_definer', p.prosecdef,
                                             'config', to_jsonb(coalesce(p.proconfig, '{}')),
                                             'acl', to_jsonb(coalesce(p.proacl::text[], '{}')),
                                             'definition', md5(pg_get_functiondef(p.oid))
                                             )), '{}')
                        FROM pg_proc p
                       WHERE p.pronamespace = '@schema@'::regnamespace
                         AND p.proname !~ '^_capture_[0-9]+$'),  -- generated per tracked table
        'relations', (SELECT coalesce(jsonb_object_agg(c.relname, jsonb_build_object(
                          'acl', to_jsonb(coalesce(c.relacl::text[], '{}')),
                          'definition', CASE WHEN c.relkind = 'v' THEN md5(pg_get_viewdef(c.oid)) END,
                          'triggers', (SELECT coalesce(jsonb_object_agg(t.tgname, t.tgenabled), '{}')
                                         FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal))), '{}')
                        FROM pg_class c
                       WHERE c.relnamespace = '@schema@'::regnamespace AND c.relkind IN ('r', 'v', 'p')));
$$;
COMMENT ON FUNCTION @schema@._security_snapshot() IS
    'Functions, grants and triggers of the schema, as status compares them with the last install.';

CREATE OR REPLACE FUNCTION @schema@._integrity_problems()
RETURNS SETOF text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expected jsonb;
    actual jsonb := @schema@._security_snapshot();
    k text;
    v jsonb;
BEGIN
    -- Rules that hold whatever the snapshot says.
    RETURN QUERY
    SELECT format('role %s is missing', r.name)
      FROM unnest(ARRAY['@schema@_owner', '@schema@_writer', '@schema@_reader', '@schema@_maintainer',
                           '@schema@_secrets']) AS r(name)
     WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name);
    RETURN QUERY
    SELECT format('SECURITY DEFINER function @schema@.%s(%s) is executable by PUBLIC',
                  p.proname, pg_get_function_identity_arguments(p.oid))
      FROM pg_proc p
     WHERE p.pronamespace = '@schema@'::regnamespace AND p.prosecdef
       AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
                                         WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'));
    RETURN QUERY
    SELECT format('SECURITY DEFINER function @schema@.%s(%s) does not pin search_path',
                  p.proname, pg_get_function_identity_arguments(p.oid))
      FROM pg_proc p
     WHERE p.pronamespace = '@schema@'::regnamespace AND p.prosecdef
       AND NOT coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp'];
    RETURN QUERY
    SELECT format('%s has %s on @schema@.%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                  a.privilege_type, c.relname)
      FROM pg_class c, aclexplode(c.relacl) a
     WHERE c.oid IN (to_regclass('@schema@.event_intake'), to_regclass('@schema@.event_log'),
                     to_regclass('@schema@.blocks'), to_regclass('@schema@.prune_points'))
       AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
       AND a.grantee IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = '@schema@_owner');
    RETURN QUERY
    SELECT format('guard trigger %s on @schema@.%s is %s', g.tgname, g.relname,
                  CASE WHEN t.tgenabled IS NULL THEN 'missing' ELSE 'disabled' END)
      FROM (VALUES ('event_intake', 'guard_update'), ('event_intake', 'guard_delete'),
                   ('event_intake', 'guard_truncate'), ('event_log', 'guard_insert'),
                   ('event_log', 'guard_update'), ('event_log', 'guard_delete'),
                   ('event_log', 'guard_truncate'), ('blocks', 'guard_insert'), ('blocks', 'guard_change'),
                   ('blocks', 'guard_truncate'), ('prune_points', 'guard_insert'),
                   ('prune_points', 'guard_change'), ('prune_points', 'guard_truncate')) AS g(relname, tgname)
      LEFT JOIN pg_trigger t ON t.tgrelid = to_regclass('@schema@.' || g.relname) AND t.tgname = g.tgname
     WHERE t.tgenabled IS DISTINCT FROM 'O';

    RETURN QUERY
    SELECT format('event trigger %s is %s: renames and drops of tracked tables are not followed, and capture '
                  'triggers are not protected (run the installer as a superuser)', e.name,
                  CASE WHEN g.evtenabled IS NULL THEN 'missing' ELSE 'disabled' END)
      FROM (VALUES ('@schema@_ddl_end'), ('@schema@_sql_drop')) AS e(name)
      LEFT JOIN pg_event_trigger g ON g.evtname = e.name
     WHERE g.evtenabled IS DISTINCT FROM 'O';
    RETURN QUERY
    SELECT format('tracked table %s lacks enabled capture triggers or its capture function', t.table_name)
      FROM @schema@.tracked_tables t
     WHERE to_regprocedure(@schema@._capture_function(t.relid) || '()') IS NULL
        OR (SELECT count(*) FROM pg_trigger g
             WHERE g.tgrelid = t.relid AND g.tgname LIKE '@schema@\_capture\_%' AND g.tgenabled <> 'D') < 4;

    -- Differences from what the last install left.
    SELECT i.snapshot INTO expected FROM @schema@._install i ORDER BY i.installed_at DESC LIMIT 1;
    IF expected IS NULL THEN
        RETURN NEXT 'no install record: run the installer';
        RETURN;
    END IF;
    IF expected -> 'schema_acl' <> actual -> 'schema_acl' THEN
        RETURN NEXT format('grants on schema @schema@ changed: %s, installed %s',
                           actual -> 'schema_acl', expected -> 'schema_acl');
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(expected -> 'functions') LOOP
        IF NOT (actual -> 'functions') ? k THEN
            RETURN NEXT format('function @schema@.%s is missing', k);
        ELSIF actual -> 'functions' -> k <> v THEN
            RETURN NEXT format('function @schema@.%s changed: %s, installed %s', k, actual -> 'functions' -> k, v);
        END IF;
    END LOOP;
    FOR k, v IN SELECT * FROM jsonb_each(expected -> 'relations') LOOP
        IF NOT (actual -> 'relations') ? k THEN
            RETURN NEXT format('table or view @schema@.%s is missing', k);
        ELSIF actual -> 'relations' -> k <> v THEN
            RETURN NEXT format('grants or triggers of @schema@.%s changed: %s, installed %s',
                               k, actual -> 'relations' -> k, v);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._integrity_problems() IS
    'Everything missing or loosened in the installation, one line each; empty when intact.';
