-- Every right on the package's schema, tables, views, sequences and functions held by a role outside
-- the package is taken back at each install: the package's roles are what an application is given
-- (a role that made the schema before the first install may have granted CREATE on it to others,
-- which a change of owner leaves in place). Last of the files, after every statement that rewrites
-- a catalogue row (a GRANT, a REVOKE, CREATE OR REPLACE): such a statement starts from the row's
-- latest version, so a grant another session committed while the install waited would otherwise be
-- left, and recorded as the install's (tests/test_trust_attacks_57.py).
DO $$
DECLARE
    statement text;
BEGIN
    FOR statement IN
        WITH package(role) AS (
            SELECT r::regrole FROM unnest(ARRAY['@schema@_owner', '@schema@_writer', '@schema@_reader',
                   '@schema@_maintainer', '@schema@_secrets', '@schema@_capture', '@schema@_sealer',
                   '@schema@_pruner', '@schema@_sandbox']) r),
        held(what, grantee) AS (
            SELECT 'SCHEMA @schema@', a.grantee FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE n.oid = '@schema@'::regnamespace AND a.grantee <> n.nspowner
            UNION
            SELECT c.oid::regclass::text, g.grantee
              FROM pg_class c
             CROSS JOIN LATERAL (SELECT a.grantee FROM aclexplode(c.relacl) a
                                 UNION
                                 SELECT a.grantee FROM pg_attribute t, aclexplode(t.attacl) a
                                  WHERE t.attrelid = c.oid AND t.attacl IS NOT NULL) g
             WHERE c.relnamespace IN ('@schema@'::regnamespace, '@schema@_capture'::regnamespace)
               AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND g.grantee <> c.relowner
            UNION
            SELECT 'ROUTINE ' || p.oid::regprocedure::text, a.grantee FROM pg_proc p, aclexplode(p.proacl) a
             WHERE p.pronamespace IN ('@schema@'::regnamespace, '@schema@_capture'::regnamespace)
               AND a.grantee <> p.proowner)
        SELECT format('REVOKE ALL ON %s FROM %s CASCADE', h.what, h.grantee::regrole)
          FROM held h
         WHERE h.grantee <> 0 AND h.grantee NOT IN (SELECT role FROM package)
    LOOP
        EXECUTE statement;
    END LOOP;
END
$$;
