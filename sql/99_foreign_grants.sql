-- Every right on the package's tables, views, sequences and functions held by a role outside the
-- package is taken back at each install, as on its schemas: the package's roles are what an
-- application is given. Last of the files, after every statement that rewrites a catalogue row
-- (a GRANT, a REVOKE, CREATE OR REPLACE): such a statement starts from the row's latest version,
-- so a grant another session committed while the install waited would otherwise be left, and
-- recorded as the install's (tests/test_trust_attacks_57.py).
DO $$
DECLARE
    statement text;
BEGIN
    FOR statement IN
        SELECT DISTINCT format('REVOKE ALL ON %s FROM %s CASCADE', c.oid::regclass, g.grantee::regrole)
          FROM pg_class c
         CROSS JOIN LATERAL (SELECT a.grantee FROM aclexplode(c.relacl) a
                             UNION
                             SELECT a.grantee FROM pg_attribute t, aclexplode(t.attacl) a
                              WHERE t.attrelid = c.oid AND t.attacl IS NOT NULL) g
         WHERE c.relnamespace IN ('@schema@'::regnamespace, '@schema@_capture'::regnamespace)
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
           AND g.grantee <> 0 AND g.grantee <> c.relowner
           AND g.grantee::regrole::text NOT IN ('@schema@_owner', '@schema@_writer', '@schema@_reader',
                   '@schema@_maintainer', '@schema@_secrets', '@schema@_capture', '@schema@_sealer',
                   '@schema@_pruner', '@schema@_sandbox')
        UNION
        SELECT format('REVOKE ALL ON ROUTINE %s FROM %s CASCADE', p.oid::regprocedure, a.grantee::regrole)
          FROM pg_proc p, aclexplode(p.proacl) a
         WHERE p.pronamespace IN ('@schema@'::regnamespace, '@schema@_capture'::regnamespace)
           AND a.grantee <> 0 AND a.grantee <> p.proowner
           AND a.grantee::regrole::text NOT IN ('@schema@_owner', '@schema@_writer', '@schema@_reader',
                   '@schema@_maintainer', '@schema@_secrets', '@schema@_capture', '@schema@_sealer',
                   '@schema@_pruner', '@schema@_sandbox')
    LOOP
        EXECUTE statement;
    END LOOP;
END
$$;
