-- Integrity of an installation: what `status` checks.

-- A list as the snapshot holds it: in one order whatever order the catalogue keeps it in (an ACL item
-- changed in place keeps its place; one given back comes last), and as _to_record orders it.
CREATE OR REPLACE FUNCTION @schema@._sorted(items text[])
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY to_jsonb(x)), '[]') FROM unnest(items) x
$$;

-- What an install leaves in place (grants, triggers, and a digest of every definition): compared by `status` with the snapshot the
-- last install stored, so that a dropped function or a loosened grant is named.
CREATE OR REPLACE FUNCTION @schema@._security_snapshot()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'schema_acl', (SELECT @schema@._sorted(n.nspacl::text[]) FROM pg_namespace n
                        WHERE n.nspname = '@schema@'),
        'capture_schema_acl', (SELECT @schema@._sorted(n.nspacl::text[]) FROM pg_namespace n
                                WHERE n.nspname = '@schema@_capture'),
        -- Who may act as the owner role: none after a superuser's install, the installer after another's.
        'owner_members', (SELECT @schema@._sorted(array_agg(m.member::regrole::text))
                            FROM pg_auth_members m WHERE m.roleid = '@schema@_owner'::regrole),
        'functions', (SELECT coalesce(jsonb_object_agg(
                          p.pronamespace::regnamespace::text || '.' || quote_ident(p.proname)
                          || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                          jsonb_build_object('security_definer', p.prosecdef,
                                             'config', @schema@._sorted(p.proconfig),
                                             'acl', @schema@._sorted(p.proacl::text[]),
                                             -- pgcrypto's schema as a placeholder: the secrets functions
                                             -- are bound to it by oid, and follow it where status says to
                                             -- move it (ALTER EXTENSION pgcrypto SET SCHEMA).
                                             'definition', md5(CASE WHEN p.prokind = 'a'  -- no functiondef: its parts
                                                                    THEN (SELECT g::text FROM pg_aggregate g WHERE g.aggfnoid = p.oid)
                                                                    WHEN crypto.pattern IS NULL
                                                                    THEN pg_get_functiondef(p.oid)
                                                                    ELSE regexp_replace(pg_get_functiondef(p.oid),
                                                                                        crypto.pattern, '<pgcrypto>.', 'g') END)
                                             )), '{}')
                        FROM pg_proc p
                        -- The schema's name qualifying a call: a word of its own (audit_capture. is not capture.)
                        -- before a function's name and its parenthesis, each character but letters and digits escaped.
                        LEFT JOIN (SELECT E'(?<![[:alnum:]_$"])'
                                          || regexp_replace(e.extnamespace::regnamespace::text || '.', E'([^[:alnum:]_])',
                                                            E'\\\\\\1', 'g')
                                          || E'(?=[[:alpha:]_][[:alnum:]_$]*\\()' AS pattern
                                     FROM pg_extension e WHERE e.extname = 'pgcrypto') crypto ON true
                       WHERE p.pronamespace IN ('@schema@'::regnamespace, '@schema@_capture'::regnamespace)
                         -- Generated per tracked table: checked on their own.
                         AND NOT (p.pronamespace = '@schema@_capture'::regnamespace AND p.proname ~ '^_capture_[0-9]+$')),
        'relations', (SELECT coalesce(jsonb_object_agg(c.relname, jsonb_build_object(
                          'acl', @schema@._sorted(c.relacl::text[]),
                          'column_acls', (SELECT coalesce(jsonb_object_agg(a.attname, @schema@._sorted(a.attacl::text[])), '{}')
                                            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL),
                          'row_security', c.relrowsecurity OR c.relforcerowsecurity,
                          'policies', (SELECT coalesce(jsonb_object_agg(p.polname, md5(p.polcmd::text || p.polpermissive::text
                                                         || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
                                                         || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
                                                         || p.polroles::text)), '{}')
                                         FROM pg_policy p WHERE p.polrelid = c.oid),
                          'rules', (SELECT coalesce(jsonb_object_agg(r.rulename, md5(pg_get_ruledef(r.oid))), '{}')
                                      FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'),
                          'options', @schema@._sorted(c.reloptions),
                          'persistence', c.relpersistence,  -- an UNLOGGED table is emptied by a crash
                          -- Under a publication of its deletes or updates, a table with no replica identity
                          -- refuses them: the sealer's, prune's, a token's revocation.
                          'replica_identity', c.relreplident,
                          'definition', CASE WHEN c.relkind = 'v' THEN md5(pg_get_viewdef(c.oid)) END,
                          -- A trigger by what it does, not its name alone (one of a guard's name may fire on
                          -- something else).
                          'triggers', (SELECT coalesce(jsonb_object_agg(t.tgname, t.tgenabled::text || ' '
                                                                        || md5(pg_get_triggerdef(t.oid))), '{}')
                                         FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
                          -- The table's shape: a dropped CHECK (the log's seq > 0 keeps events out of the seqs
                          -- below the chain), a column's default or type, an index dropped or left invalid.
                          'constraints', (SELECT coalesce(jsonb_object_agg(k.conname, md5(pg_get_constraintdef(k.oid))
                                                                          || CASE WHEN k.convalidated THEN '' ELSE ' not valid' END),
                                                          '{}')
                                            FROM pg_constraint k WHERE k.conrelid = c.oid),
                          -- (attnum: a column dropped and another of its name and type put in its place
                          -- has new values that no guard saw written.)
                          'columns', (SELECT coalesce(jsonb_object_agg(a.attname, md5(a.attnum || ' ' || format_type(a.atttypid, a.atttypmod)
                                                          || a.attcollation::regcollation::text || a.attnotnull::text || a.attidentity::text || a.attgenerated::text
                                                          -- (storage PLAIN keeps a value out of TOAST: a large one no longer fits)
                                                          || a.attstorage::text
                                                          || coalesce(pg_get_expr(d.adbin, d.adrelid), ''))), '{}')
                                        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                          'indexes', (SELECT coalesce(jsonb_object_agg(i.indexrelid::regclass::text,
                                                          md5(pg_get_indexdef(i.indexrelid))
                                                          || CASE WHEN i.indisvalid THEN '' ELSE ' invalid' END), '{}')
                                        FROM pg_index i WHERE i.indrelid = c.oid),
                          -- A sequence's parameters (the intake's ids are not cached per session: the order
                          -- of history relies on it).
                          'sequence', (SELECT jsonb_build_object('increment', q.seqincrement, 'cache', q.seqcache,
                                                                 'cycle', q.seqcycle, 'min', q.seqmin, 'max', q.seqmax)
                                         FROM pg_sequence q WHERE q.seqrelid = c.oid))), '{}')
                        FROM pg_class c
                       WHERE c.relnamespace = '@schema@'::regnamespace AND c.relkind IN ('r', 'v', 'p', 'S', 'c')
                         -- The log's partitions come and go with sealing and pruning; checked on their own below.
                         AND NOT EXISTS (SELECT 1 FROM pg_inherits i
                                          WHERE i.inhrelid = c.oid AND i.inhparent = '@schema@.event_log'::regclass)));
$$;
COMMENT ON FUNCTION @schema@._security_snapshot() IS
    'Functions, grants, policies, rules and triggers of the schema, and the owner role''s members, as status '
    'compares them with the last install.';

-- What an install records: what it leaves (after), except what it found (before, read before it
-- changed anything) other than the last install recorded (a policy, a rule, a grant, a trigger added
-- or taken away since) and left so: there the record stays as it was, so that status goes on naming
-- it. Objects compare key by key, lists (grants, members, settings) item by item; a key missing on
-- one side is an empty object or list where the others have one.
CREATE OR REPLACE FUNCTION @schema@._to_record(recorded jsonb, before jsonb, after jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text := coalesce(jsonb_typeof(after), jsonb_typeof(before), jsonb_typeof(recorded));
    k text;
    v jsonb;
    merged jsonb;
BEGIN
    IF t IN ('object', 'array') AND coalesce(jsonb_typeof(recorded), t) = t AND coalesce(jsonb_typeof(before), t) = t
       AND coalesce(jsonb_typeof(after), t) = t THEN
        -- A key missing is an empty object or list; the record leaves out what the install leaves none of.
        IF t = 'object' THEN
            merged := '{}';
            FOR k IN SELECT jsonb_object_keys(coalesce(recorded, '{}')) UNION SELECT jsonb_object_keys(coalesce(before, '{}'))
                     UNION SELECT jsonb_object_keys(coalesce(after, '{}')) LOOP
                -- An object (a function, a table) added since the last install stays out of the record
                -- as a whole (status names it added), unless the install made it anew: in part, its grants
                -- taken back, it would be named missing once dropped.
                v := CASE WHEN recorded IS NOT NULL AND recorded -> k IS NULL AND jsonb_typeof(before -> k) = 'object'
                               AND before -> k -> 'definition' IS NOT DISTINCT FROM after -> k -> 'definition' THEN NULL
                          ELSE @schema@._to_record(recorded -> k, before -> k, after -> k) END;
                -- Kept as recorded, a key the last install had none of is left out again, not emptied.
                IF v IS NOT NULL AND NOT (v IN ('{}', '[]') AND recorded -> k IS NULL AND v IS DISTINCT FROM after -> k) THEN
                    merged := merged || jsonb_build_object(k, v);
                END IF;
            END LOOP;
        ELSIF coalesce(before, '[]') @> coalesce(recorded, '[]') AND coalesce(recorded, '[]') @> coalesce(before, '[]') THEN
            RETURN after;
        ELSE
            SELECT coalesce(jsonb_agg(x.item ORDER BY x.item), '[]') INTO merged
              FROM (SELECT a.item FROM jsonb_array_elements(coalesce(after, '[]')) a(item)
                     WHERE NOT (coalesce(before, '[]') @> jsonb_build_array(a.item)
                                AND NOT coalesce(recorded, '[]') @> jsonb_build_array(a.item))
                    UNION ALL
                    SELECT r.item FROM jsonb_array_elements(coalesce(recorded, '[]')) r(item)
                     WHERE NOT coalesce(before, '[]') @> jsonb_build_array(r.item)
                       AND NOT coalesce(after, '[]') @> jsonb_build_array(r.item)) x;
            IF after IS NOT NULL AND merged @> after AND after @> merged THEN
                RETURN after;
            END IF;
        END IF;
        RETURN CASE WHEN after IS NULL AND merged IN ('{}', '[]') THEN NULL ELSE merged END;
    END IF;
    RETURN CASE WHEN before IS DISTINCT FROM recorded AND after IS NOT DISTINCT FROM before THEN recorded ELSE after END;
END
$$;
COMMENT ON FUNCTION @schema@._to_record(jsonb, jsonb, jsonb) IS
    'The snapshot an install records: what it leaves, but what it found changed since the last install and left so.';

-- What is wrong with a guard trigger, if anything: missing, disabled (or for replicas only), or one of
-- its name that is not the guard (firing on something else, at another time, for other roles).
CREATE OR REPLACE FUNCTION @schema@._guard_problem(rel regclass, tgname text, events text, allowed text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN t.oid IS NULL THEN 'missing'
                WHEN t.tgenabled <> 'O' THEN 'disabled'
                WHEN pg_get_triggerdef(t.oid) <> format(
                         'CREATE TRIGGER %I BEFORE %s ON %s FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only(%s)',
                         tgname, events, rel, coalesce(quote_literal(allowed), ''))
                THEN 'not the guard: ' || pg_get_triggerdef(t.oid) END
      FROM (SELECT 1) one
      LEFT JOIN pg_trigger t ON t.tgrelid = rel AND t.tgname = _guard_problem.tgname AND NOT t.tgisinternal
$$;
COMMENT ON FUNCTION @schema@._guard_problem(regclass, text, text, text) IS
    'What is wrong with a guard trigger (missing, disabled, another trigger of its name), or NULL.';

-- Everything in the package's schemas that has an owner, and whether that is a role of the package
-- (ours); none_made: of a kind the package makes none
-- of (a domain, an enum, a materialized view, an operator, an aggregate; a relation in the capture
-- schema, which holds functions alone), so that one is named whoever made it.
DROP FUNCTION IF EXISTS @schema@._schema_objects();  -- one OUT column fewer before
CREATE OR REPLACE FUNCTION @schema@._schema_objects(OUT kind text, OUT name text, OUT owner oid, OUT none_made boolean,
                                                     OUT ours boolean)
RETURNS SETOF record
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.kind, o.name, o.owner, o.none_made,
           o.owner::regrole::text IN ('@schema@_owner', '@schema@_capture', '@schema@_sealer', '@schema@_pruner',
                                      '@schema@_sandbox')
      FROM (SELECT CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE 'function' END AS kind,
                   p.oid::regprocedure::text AS name, p.proowner AS owner, p.pronamespace AS space,
                   p.prokind NOT IN ('f', 'p') AS none_made
              FROM pg_proc p
            UNION ALL
            SELECT CASE c.relkind WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'relation' END,
                   c.oid::regclass::text, c.relowner, c.relnamespace,
                   c.relkind IN ('m', 'f') OR c.relnamespace = '@schema@_capture'::regnamespace
              FROM pg_class c
            UNION ALL  -- the package's types are its tables' and composite types' rows, and their arrays
            SELECT 'type', t.oid::regtype::text, t.typowner, t.typnamespace,
                   NOT (t.typtype = 'c' OR (t.typtype = 'b' AND t.typelem <> 0 AND t.typcategory = 'A'))
              FROM pg_type t
            UNION ALL
            SELECT 'operator', o.oid::regoperator::text, o.oprowner, o.oprnamespace, true FROM pg_operator o
            UNION ALL  -- what else a schema holds that has an owner
            SELECT 'collation', x.collname, x.collowner, x.collnamespace, true FROM pg_collation x
            UNION ALL
            SELECT 'conversion', x.conname, x.conowner, x.connamespace, true FROM pg_conversion x
            UNION ALL
            SELECT 'statistics object', x.stxname, x.stxowner, x.stxnamespace, true FROM pg_statistic_ext x
            UNION ALL
            SELECT 'text search configuration', x.cfgname, x.cfgowner, x.cfgnamespace, true FROM pg_ts_config x
            UNION ALL
            SELECT 'text search dictionary', x.dictname, x.dictowner, x.dictnamespace, true FROM pg_ts_dict x
            UNION ALL
            SELECT 'operator class', x.opcname, x.opcowner, x.opcnamespace, true FROM pg_opclass x
            UNION ALL
            SELECT 'operator family', x.opfname, x.opfowner, x.opfnamespace, true FROM pg_opfamily x) o
     WHERE o.space IN ('@schema@'::regnamespace, '@schema@_capture'::regnamespace)
$$;
COMMENT ON FUNCTION @schema@._schema_objects() IS
    'Everything with an owner in the package''s schemas, and whether the package makes any of its kind.';

-- A partition of the log is the log's shape alone: a trigger but its guards (by what they are, not
-- their names), a constraint, an index, a NOT NULL or a column's storage of its own would change or
-- refuse the sealer's events there.
CREATE OR REPLACE FUNCTION @schema@._log_partition_own(part regclass)
RETURNS SETOF text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('trigger %s on %s is not one of its guards', t.tgname, part)
      FROM pg_trigger t
     WHERE t.tgrelid = part AND NOT t.tgisinternal
       -- _guard_log_partition's: BEFORE, FOR EACH STATEMENT, one event each, _guard_append_only() alone
       AND ((t.tgname, t.tgtype) NOT IN (('guard_insert', 6::int2), ('guard_update', 18::int2), ('guard_delete', 10::int2),
                                         ('guard_truncate', 34::int2))
            OR t.tgfoid <> '@schema@._guard_append_only()'::regprocedure OR t.tgnargs <> 0 OR t.tgqual IS NOT NULL
            OR t.tgattr <> ''::int2vector)
    UNION ALL
    SELECT format('constraint %I on %s is not one of the log''s', k.conname, part)
      FROM pg_constraint k
     WHERE k.conrelid = part AND k.coninhcount = 0 AND k.conparentid = 0
    UNION ALL
    SELECT format('index %s on %s is not one of the log''s', x.indexrelid::regclass, part)
      FROM pg_index x
     WHERE x.indrelid = part AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = x.indexrelid)
    UNION ALL
    SELECT format('column %I of %s is NOT NULL, not the log''s', a.attname, part)
      FROM pg_attribute a
      JOIN pg_attribute l ON l.attrelid = '@schema@.event_log'::regclass AND l.attname = a.attname AND NOT l.attnotnull
     WHERE a.attrelid = part AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull
    UNION ALL
    SELECT format('%s has replica identity %s, not its key''s: a publication of its deletes refuses them', part,
                  c.relreplident)
      FROM pg_class c
     WHERE c.oid = part AND c.relreplident <> 'd'
    UNION ALL
    SELECT format('column %I of %s is stored otherwise than the log''s', a.attname, part)
      FROM pg_attribute a
      JOIN pg_attribute l ON l.attrelid = '@schema@.event_log'::regclass AND l.attname = a.attname
                         AND l.attstorage <> a.attstorage
     WHERE a.attrelid = part AND a.attnum > 0 AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION @schema@._log_partition_own(regclass) IS
    'What a partition of the log has of its own (a trigger, a constraint, an index, a NOT NULL, a column''s storage), '
    'one line each.';

-- What seal() writes through, as the last install left it: the log and the intake (their columns,
-- constraints, indexes, triggers), the package's functions, and the partition it writes (nothing of
-- its own). seal() sets an event aside only then: else what failed it may be code someone put in the
-- sealer's path for a round to send a chosen event there, and the round fails instead.
CREATE OR REPLACE FUNCTION @schema@._sealing_path_problem(at_seq bigint)
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    expected jsonb := (SELECT i.snapshot FROM @schema@._install i ORDER BY i.installed_at DESC LIMIT 1);
    actual jsonb := @schema@._security_snapshot();
    part regclass := (SELECT p.part FROM @schema@._log_partitions() p WHERE at_seq BETWEEN p.first_seq AND p.last_seq);
    rel text;
BEGIN
    FOREACH rel IN ARRAY ARRAY['event_log', 'event_intake', 'event_intake_0', 'event_intake_1', 'event_intake_2',
                               'event_intake_3'] LOOP
        IF expected -> 'relations' -> rel IS DISTINCT FROM actual -> 'relations' -> rel THEN
            RETURN format('@schema@.%s is not as the last install left it', rel);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM jsonb_each(expected -> 'functions') f WHERE actual -> 'functions' -> f.key IS DISTINCT FROM f.value) THEN
        RETURN 'a function of the package is not as the last install left it';
    END IF;
    IF part IS NULL THEN
        RETURN format('no partition of @schema@.event_log holds seq %s', at_seq);
    END IF;
    RETURN (SELECT x FROM @schema@._log_partition_own(part) x LIMIT 1);
END
$$;
COMMENT ON FUNCTION @schema@._sealing_path_problem(bigint) IS
    'What in seal()''s path is not as installed (the log, the intake, the functions, the partition for a seq), or NULL.';
REVOKE ALL ON FUNCTION @schema@._sealing_path_problem(bigint) FROM PUBLIC;

-- The columns a table's replica identity names (its primary key, or the index chosen), by number;
-- empty for a whole-row identity or none.
CREATE OR REPLACE FUNCTION @schema@._replica_identity_columns(rel oid)
RETURNS int2[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT i.indkey::int2[] FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                      WHERE i.indrelid = rel
                        AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END),
                    '{}')
$$;
COMMENT ON FUNCTION @schema@._replica_identity_columns(oid) IS
    'The column numbers of a table''s replica identity index; empty for FULL or NOTHING.';

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
    -- Where the chain starts (block 1 says so once there is one: it is guarded, hashed and under the
    -- checkpoints, as seal_state is not), where it ends (the last block), and where prune has been.
    -- (ONLY: a table inheriting from one of these is named below, and not read as its rows.)
    v_first_block bigint := (SELECT b.first_seq FROM ONLY @schema@.blocks b WHERE b.block_no = 1);
    v_chain_start bigint := coalesce(v_first_block - 1, (SELECT s.chain_start_seq FROM ONLY @schema@.seal_state s));
    v_sealed bigint := coalesce((SELECT b.last_seq FROM ONLY @schema@.blocks b ORDER BY b.block_no DESC LIMIT 1),
                                v_chain_start);
    v_pruned bigint := (SELECT max(r.last_seq) FROM ONLY @schema@.prune_points r);
    v_size bigint := @schema@._log_partition_size();
    v_ids regclass := to_regclass('@schema@.event_intake_intake_id_seq');
    v_ids_at bigint;
BEGIN
    -- Rules that hold whatever the snapshot says.
    RETURN QUERY
    SELECT format('role %s is missing', r.name)
      FROM unnest(ARRAY['@schema@_owner', '@schema@_writer', '@schema@_reader', '@schema@_maintainer',
                           '@schema@_secrets', '@schema@_capture', '@schema@_sealer', '@schema@_pruner',
                           '@schema@_sandbox']) AS r(name)
     WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name);
    -- The roles the guards and the sandbox rely on: nobody may act as them (but the owner role, which
    -- hands capture functions over to the capture role).
    RETURN QUERY
    SELECT format('role %s %s: only its functions may act as it', r.rolname,
                  CASE WHEN r.rolcanlogin THEN 'can log in'
                       WHEN r.rolsuper OR r.rolbypassrls THEN 'is privileged'
                       ELSE 'has members (' || (SELECT string_agg(m.member::regrole::text, ', ' ORDER BY m.member::regrole::text)
                                               FROM pg_auth_members m WHERE m.roleid = r.oid) || ')' END)
      FROM pg_roles r
     WHERE r.rolname IN ('@schema@_capture', '@schema@_sealer', '@schema@_pruner', '@schema@_sandbox')
       AND (r.rolcanlogin OR r.rolsuper OR r.rolbypassrls
            OR EXISTS (SELECT 1 FROM pg_auth_members m
                        WHERE m.roleid = r.oid
                          AND NOT (r.rolname = '@schema@_capture' AND m.member = '@schema@_owner'::regrole)));
    -- No role of the package may create roles (a role made beforehand with CREATEROLE could grant its
    -- members the owner role), and the function roles belong to no other role but what the install
    -- grants (the sealer reads pg_read_all_stats, for the intake's rotation).
    RETURN QUERY
    SELECT format('role %s may create roles', r.rolname)
      FROM pg_roles r
     WHERE r.rolcreaterole
       AND r.rolname IN ('@schema@_owner', '@schema@_writer', '@schema@_reader', '@schema@_maintainer', '@schema@_secrets',
                         '@schema@_capture', '@schema@_sealer', '@schema@_pruner', '@schema@_sandbox');
    RETURN QUERY
    SELECT format('role %s is a member of %s: its functions would act with that role''s rights too', f.rolname, r.rolname)
      FROM pg_roles f, pg_roles r
     WHERE f.rolname IN ('@schema@_capture', '@schema@_sealer', '@schema@_pruner', '@schema@_sandbox')
       AND r.oid <> f.oid AND pg_has_role(f.oid, r.oid, 'MEMBER')  -- through other roles too
       AND NOT (f.rolname = '@schema@_sealer' AND r.rolname = 'pg_read_all_stats');
    -- Only an installer may act as the owner role (a non-superuser installer is made a member); a
    -- member the role's maker gave it before the first install, or anyone since, is named.
    RETURN QUERY
    SELECT format('role %s is a member of @schema@_owner and installed nothing here: it may act as the owner',
                  m.member::regrole)
      FROM pg_auth_members m
     WHERE m.roleid = '@schema@_owner'::regrole
       AND m.member::regrole::text NOT IN (SELECT i.installed_by FROM @schema@._install i);
    -- Default privileges of a role of the package would grant whatever it makes (a capture function,
    -- a partition of the log) to their grantees.
    RETURN QUERY
    SELECT format('role %s grants %s on the %s it makes to %s by default (ALTER DEFAULT PRIVILEGES)',
                  d.defaclrole::regrole, a.privilege_type,
                  CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions'
                                       WHEN 'T' THEN 'types' ELSE 'schemas' END,
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END)
      FROM pg_default_acl d, aclexplode(d.defaclacl) a
     WHERE d.defaclrole::regrole::text IN ('@schema@_owner', '@schema@_writer', '@schema@_reader', '@schema@_maintainer',
                                           '@schema@_secrets', '@schema@_capture', '@schema@_sealer', '@schema@_pruner',
                                           '@schema@_sandbox')
       AND a.grantee <> d.defaclrole;
    -- Nor as the owner role, but the installer: a role that may act as it may write anything.
    RETURN QUERY
    SELECT format('role %s %s', r.rolname, CASE WHEN r.rolcanlogin THEN 'can log in' ELSE 'is privileged' END)
      FROM pg_roles r
     WHERE r.rolname = '@schema@_owner' AND (r.rolcanlogin OR r.rolsuper OR r.rolbypassrls);
    -- The package's schemas, and everything in them, are its roles' own: another role's function there
    -- could be found by the package's own calls (an overload), and would run with its callers' rights.
    RETURN QUERY
    SELECT format('schema %s is owned by %s', n.nspname, n.nspowner::regrole)
      FROM pg_namespace n
     WHERE (n.nspname = '@schema@' AND n.nspowner <> '@schema@_owner'::regrole)
        OR (n.nspname = '@schema@_capture' AND n.nspowner <> '@schema@_capture'::regrole);
    RETURN QUERY
    SELECT format('%s %s is owned by %s, not a role of the package', o.kind, o.name, o.owner::regrole)
      FROM @schema@._schema_objects() o
     WHERE NOT o.ours;
    -- And the package's own roles made nothing there but what the installer and tracking make: the
    -- kinds it makes none of, and in the capture schema a function of a capture function's name that is
    -- none (those are not in the snapshot, which names any other function added since the last install).
    RETURN QUERY
    SELECT format('%s %s is none of the package''s: it makes no such object', o.kind, o.name)
      FROM @schema@._schema_objects() o
     WHERE o.none_made AND o.ours;
    RETURN QUERY
    SELECT format('function %s is no tracked table''s capture function', p.oid::regprocedure)
      FROM pg_proc p
     WHERE p.pronamespace = '@schema@_capture'::regnamespace AND p.proname ~ '^_capture_[0-9]+$'
       AND (p.pronargs <> 0 OR (@schema@._tracking_of(@schema@._captured_relid(p.proname))).relid IS NULL);
    -- Only the owner role may create in the package's schemas, and only the package's roles use them.
    RETURN QUERY
    SELECT format('%s has %s on schema %s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                  a.privilege_type, n.nspname)
      FROM pg_namespace n, aclexplode(n.nspacl) a
     WHERE n.oid IN ('@schema@'::regnamespace, '@schema@_capture'::regnamespace) AND a.grantee <> n.nspowner
       AND (a.privilege_type <> 'USAGE' OR a.grantee = 0
            OR a.grantee::regrole::text NOT IN ('@schema@_writer', '@schema@_reader', '@schema@_maintainer',
                                                '@schema@_secrets', '@schema@_capture', '@schema@_sealer',
                                                '@schema@_pruner', '@schema@_owner'));
    RETURN QUERY
    SELECT format('SECURITY DEFINER function %s.%s(%s) is executable by PUBLIC', p.pronamespace::regnamespace,
                  p.proname, pg_get_function_identity_arguments(p.oid))
      FROM pg_proc p
     WHERE p.pronamespace IN ('@schema@'::regnamespace, '@schema@_capture'::regnamespace) AND p.prosecdef
       AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
                                         WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'));
    RETURN QUERY
    SELECT format('SECURITY DEFINER function %s.%s(%s) does not pin search_path', p.pronamespace::regnamespace,
                  p.proname, pg_get_function_identity_arguments(p.oid))
      FROM pg_proc p
     WHERE p.pronamespace IN ('@schema@'::regnamespace, '@schema@_capture'::regnamespace) AND p.prosecdef
       AND NOT coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp'];
    -- Who may write the log's tables at all: exactly these, each for what its functions do.
    RETURN QUERY
    SELECT format('%s has %s on @schema@.%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                  a.privilege_type, c.relname)
      FROM pg_class c, aclexplode(c.relacl) a
     WHERE c.relnamespace = '@schema@'::regnamespace
       AND c.relname IN ('event_intake', 'event_intake_0', 'event_intake_1', 'event_intake_2', 'event_intake_3',
                         'event_log', 'blocks', 'prune_points', 'quarantine', 'seal_state')
       AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
       AND (c.relname, a.grantee::regrole::text, a.privilege_type) NOT IN (
               ('seal_state', '@schema@_sealer', 'UPDATE'), ('event_intake', '@schema@_owner', 'INSERT'), ('event_intake', '@schema@_capture', 'INSERT'),
               ('event_intake', '@schema@_sealer', 'INSERT'), ('event_intake', '@schema@_sealer', 'DELETE'),
               ('event_intake', '@schema@_pruner', 'INSERT'), ('event_log', '@schema@_sealer', 'INSERT'),
               ('event_log', '@schema@_pruner', 'DELETE'), ('blocks', '@schema@_sealer', 'INSERT'),
               ('prune_points', '@schema@_pruner', 'INSERT'), ('quarantine', '@schema@_sealer', 'INSERT'),
               ('event_intake_0', '@schema@_sealer', 'TRUNCATE'), ('event_intake_1', '@schema@_sealer', 'TRUNCATE'),
               ('event_intake_2', '@schema@_sealer', 'TRUNCATE'), ('event_intake_3', '@schema@_sealer', 'TRUNCATE'));
    RETURN QUERY
    SELECT format('guard trigger %s on @schema@.%s is %s', g.tgname, g.relname, x.problem)
      FROM (VALUES ('event_intake', 'guard_update', 'UPDATE', NULL), ('event_intake', 'guard_delete', 'DELETE', '@schema@_sealer'),
                   ('event_intake', 'guard_truncate', 'TRUNCATE', NULL),
                   ('event_log', 'guard_insert', 'INSERT', '@schema@_sealer'), ('event_log', 'guard_update', 'UPDATE', NULL),
                   ('event_log', 'guard_delete', 'DELETE', '@schema@_pruner'), ('event_log', 'guard_truncate', 'TRUNCATE', NULL),
                   ('blocks', 'guard_insert', 'INSERT', '@schema@_sealer'), ('blocks', 'guard_change', 'DELETE OR UPDATE', NULL),
                   ('blocks', 'guard_truncate', 'TRUNCATE', NULL),
                   ('prune_points', 'guard_insert', 'INSERT', '@schema@_pruner'),
                   ('prune_points', 'guard_change', 'DELETE OR UPDATE', NULL), ('prune_points', 'guard_truncate', 'TRUNCATE', NULL),
                   ('quarantine', 'guard_insert', 'INSERT', '@schema@_sealer'),
                   ('quarantine', 'guard_change', 'DELETE OR UPDATE', NULL), ('quarantine', 'guard_truncate', 'TRUNCATE', NULL),
                   ('seal_state', 'guard_insert', 'INSERT', NULL), ('seal_state', 'guard_update', 'UPDATE', '@schema@_sealer'),
                   ('seal_state', 'guard_delete', 'DELETE', NULL), ('seal_state', 'guard_truncate', 'TRUNCATE', NULL),
                   ('event_intake_0', 'guard_update', 'UPDATE', NULL), ('event_intake_0', 'guard_delete', 'DELETE', NULL),
                   ('event_intake_0', 'guard_truncate', 'TRUNCATE', '@schema@_sealer'),
                   ('event_intake_1', 'guard_update', 'UPDATE', NULL), ('event_intake_1', 'guard_delete', 'DELETE', NULL),
                   ('event_intake_1', 'guard_truncate', 'TRUNCATE', '@schema@_sealer'),
                   ('event_intake_2', 'guard_update', 'UPDATE', NULL), ('event_intake_2', 'guard_delete', 'DELETE', NULL),
                   ('event_intake_2', 'guard_truncate', 'TRUNCATE', '@schema@_sealer'),
                   ('event_intake_3', 'guard_update', 'UPDATE', NULL), ('event_intake_3', 'guard_delete', 'DELETE', NULL),
                   ('event_intake_3', 'guard_truncate', 'TRUNCATE', '@schema@_sealer'))
                   AS g(relname, tgname, events, allowed),
           LATERAL (SELECT @schema@._guard_problem(to_regclass('@schema@.' || g.relname), g.tgname, g.events, g.allowed)
                           AS problem) x
     WHERE x.problem IS NOT NULL;
    -- Every partition of the log: its guards, and nobody's right to change it.
    RETURN QUERY
    SELECT format('guard trigger %s on %s is %s', g.tgname, p.part, x.problem)
      FROM @schema@._log_partitions() p
     CROSS JOIN (VALUES ('guard_insert', 'INSERT'), ('guard_update', 'UPDATE'), ('guard_delete', 'DELETE'),
                        ('guard_truncate', 'TRUNCATE')) AS g(tgname, events),
           LATERAL (SELECT @schema@._guard_problem(p.part, g.tgname, g.events, NULL) AS problem) x
     WHERE x.problem IS NOT NULL;
    -- A partition is read through the log, never on its own: no grant on it, of a column either,
    -- and no trigger but its guards.
    RETURN QUERY
    SELECT format('%s has %s on %s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                  a.privilege_type, p.part)
      FROM @schema@._log_partitions() p
      JOIN pg_class c ON c.oid = p.part, aclexplode(c.relacl) a
     WHERE a.grantee <> c.relowner OR a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE');
    RETURN QUERY
    SELECT format('%s has %s on column %s of %s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                  a.privilege_type, t.attname, p.part)
      FROM @schema@._log_partitions() p
      JOIN pg_attribute t ON t.attrelid = p.part AND t.attacl IS NOT NULL, aclexplode(t.attacl) a;
    RETURN QUERY
    SELECT x FROM @schema@._log_partitions() p, @schema@._log_partition_own(p.part) x;
    -- A table inheriting from one of the package's is read with it (its rows, past the parent's guards).
    RETURN QUERY
    SELECT format('table %s inherits from %s: reads of it see its rows', i.inhrelid::regclass, i.inhparent::regclass)
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent
     WHERE c.relnamespace = '@schema@'::regnamespace AND c.relkind IN ('r', 'p')
       AND c.oid <> '@schema@.event_log'::regclass  -- its partitions are checked below
       AND NOT (c.oid = '@schema@.event_intake'::regclass
                AND i.inhrelid IN (SELECT to_regclass('@schema@.event_intake_' || n) FROM generate_series(0, 3) n));
    -- Every partition of the log is a table of the package schema from a multiple of a million to a
    -- multiple of a million (a million seqs as seal() makes them; more for an upgraded log's first),
    -- named as seal() names the one for its first seq: the checks above read those alone and look
    -- inside no other (a partitioned one's partitions; a DEFAULT or MAXVALUE one, which also stops the
    -- sealer), and one wearing the name seal() gives another partition stops seal() making that one.
    RETURN QUERY
    SELECT CASE WHEN t.level > 1
                THEN format('table %s is a partition of %s, itself a partition of @schema@.event_log: out of every check',
                            t.relid::regclass, t.parentrelid::regclass)
                WHEN NOT t.isleaf
                THEN format('partition %s of @schema@.event_log is partitioned: its partitions are out of every check',
                            t.relid::regclass)
                WHEN c.relnamespace <> '@schema@'::regnamespace
                THEN format('partition %s of @schema@.event_log is outside schema @schema@', t.relid::regclass)
                WHEN p.first_seq IS NULL OR p.first_seq % v_size <> 0 OR (p.last_seq::numeric + 1) % v_size <> 0
                THEN format('partition %s of @schema@.event_log is bounded %s, not from a multiple of a million to one',
                            t.relid::regclass, pg_get_expr(c.relpartbound, c.oid))
                ELSE format('partition %s of @schema@.event_log holds seqs from %s: seal() names that one %I, and '
                            'fails to make a partition of this one''s name', t.relid::regclass, p.first_seq, n.name) END
      FROM pg_partition_tree('@schema@.event_log') t
      JOIN pg_class c ON c.oid = t.relid
      LEFT JOIN @schema@._log_partitions() p ON p.part = t.relid
      LEFT JOIN LATERAL (SELECT 'event_log_' || lpad(k.k, greatest(6, length(k.k)), '0') AS name  -- as seal() names it
                           FROM (SELECT (p.first_seq / v_size)::text AS k) k) n ON true
     WHERE t.level > 0
       AND (t.level > 1 OR NOT t.isleaf OR c.relnamespace <> '@schema@'::regnamespace
            OR p.first_seq IS NULL OR p.first_seq % v_size <> 0 OR (p.last_seq::numeric + 1) % v_size <> 0
            OR c.relname <> n.name);
    -- A foreign key to one of the log's tables makes deleting (prune) or writing there depend on
    -- another table, and on its owner's rights.
    RETURN QUERY
    SELECT format('foreign key %I on %s references %s', k.conname, k.conrelid::regclass, k.confrelid::regclass)
      FROM pg_constraint k
     WHERE k.contype = 'f'
       AND (k.confrelid IN (SELECT g FROM @schema@._guarded_tables() g) OR k.confrelid = '@schema@.idempotency_keys'::regclass);
    -- seal_state tells the sealer and prune where the chain starts and ends: what the blocks say.
    RETURN QUERY
    SELECT format('@schema@.seal_state says the chain starts after seq %s; block 1 starts after seq %s',
                  s.chain_start_seq, v_chain_start)
      FROM ONLY @schema@.seal_state s
     WHERE s.chain_start_seq <> v_chain_start;
    RETURN QUERY
    SELECT format('@schema@.seal_state says the chain ends at block %s, seq %s; the last block is %s, ending at seq %s%s',
                  s.last_block_no, s.last_seq, coalesce(b.block_no, 0), v_sealed,
                  CASE WHEN s.last_block_hash IS DISTINCT FROM coalesce(b.block_hash, decode(repeat('00', 32), 'hex'))
                       THEN ', of another hash' ELSE '' END)
      FROM ONLY @schema@.seal_state s
      LEFT JOIN (SELECT x.block_no, x.block_hash FROM ONLY @schema@.blocks x ORDER BY x.block_no DESC LIMIT 1) b ON true
     WHERE (s.last_block_no, s.last_seq, s.last_block_hash)
           IS DISTINCT FROM (coalesce(b.block_no, 0), v_sealed, coalesce(b.block_hash, decode(repeat('00', 32), 'hex')));
    -- The log holds what the sealer sealed, and all of it: no event past the last block (a partition
    -- attached with events of its own), none where prune has been, no seq it kept in no partition (one
    -- detached or dropped).
    RETURN QUERY
    SELECT format('partition %s of @schema@.event_log holds events past the last sealed seq (%s): the sealer did not '
                  'seal them', l.tableoid::regclass, v_sealed)
      FROM (SELECT DISTINCT e.tableoid FROM @schema@.event_log e WHERE e.seq > v_sealed) l;
    RETURN QUERY
    SELECT format('partition %s of @schema@.event_log holds events at seqs pruned (through %s)', l.tableoid::regclass, v_pruned)
      FROM (SELECT DISTINCT e.tableoid FROM @schema@.event_log e WHERE e.seq > v_chain_start AND e.seq <= v_pruned) l;
    -- Every seq from the last prune point through the last block, in a partition: a gap before each
    -- partition, and after the last.
    RETURN QUERY
    SELECT format('seqs %s to %s of @schema@.event_log are in no partition of it: one was detached or dropped', g.lo, g.hi)
      FROM (SELECT greatest(coalesce(lag(p.last_seq::numeric) OVER (ORDER BY p.first_seq) + 1, 0),
                            coalesce(v_pruned, 0) + 1) AS lo,  -- numeric: a partition may end at bigint's end
                   least(p.first_seq::numeric - 1, v_sealed) AS hi
              FROM @schema@._log_partitions() p
            UNION ALL
            SELECT greatest(coalesce(max(p.last_seq::numeric) + 1, 0), coalesce(v_pruned, 0) + 1), v_sealed
              FROM @schema@._log_partitions() p) g
     WHERE g.lo <= g.hi;
    RETURN QUERY
    SELECT format('partition %s of @schema@.event_log is unlogged: a crash empties it', p.part)
      FROM @schema@._log_partitions() p JOIN pg_class c ON c.oid = p.part
     WHERE c.relpersistence <> 'p';
    -- Stored by an earlier release's setter, which took any positive interval, or by hand.
    RETURN QUERY
    SELECT 'archive_settings.hot_retention is not an age (positive, no part negative, at most 100 years): the '
           'archive plans no batch by it until it is set again (pgaudit archive settings --hot-retention)'
      FROM ONLY @schema@.archive_settings s WHERE NOT @schema@._is_age(s.hot_retention);
    -- A writer whose intake_id falls in a partition that is not attached fails.
    RETURN QUERY
    SELECT format('partition event_intake_%s of @schema@.event_intake is not attached: writes that fall in it fail', n)
      FROM generate_series(0, 3) n
     WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i
                        WHERE i.inhparent = '@schema@.event_intake'::regclass
                          AND i.inhrelid = to_regclass('@schema@.event_intake_' || n));

    RETURN QUERY
    SELECT format('event trigger %s is %s: %s (run the installer as a superuser)', e.name,
                  CASE WHEN g.evtenabled IS NULL THEN 'missing' ELSE 'disabled' END, e.without)
      FROM (VALUES ('@schema@_ddl_end', 'a tracked table''s DDL (renamed, its capture triggers disabled or renamed, a '
                                        'column added, renamed or retyped, a type it is made of altered, a cast to '
                                        'json made) is neither recorded nor refused'),
                   ('@schema@_sql_drop', 'a tracked table dropped, or its columns dropped by a cascade, is not '
                                         'recorded, nor is dropping a capture trigger refused'),
                   ('@schema@_capture_partitions', 'a partition created or attached later under a tracked table '
                                                   'gets no capture triggers of its own (refused while '
                                                   '@schema@_ddl_end runs; else writes naming it go uncaptured)'),
                   ('@schema@_function_roles', 'the function roles'' DDL is not refused (the sandbox could drop its '
                                               'own function)'),
                   ('@schema@_table_rewrite', 'a rewrite of a tracked table''s or the log''s rows (ALTER COLUMN ... '
                                              'TYPE) is not refused'),
                   ('@schema@_temporary', 'a tracked table''s column, or a type it is made of, may be made to depend '
                                          'on a temporary object, and be dropped with its values and no event when '
                                          'that session ends'),
                   ('@schema@_detach_concurrently', 'DETACH PARTITION ... CONCURRENTLY under a tracked table is not '
                                                    'refused')) AS e(name, without)
      LEFT JOIN pg_event_trigger g ON g.evtname = e.name
     WHERE g.evtenabled IS DISTINCT FROM 'O';
    RETURN QUERY
    SELECT format('event trigger @schema@_ddl_end watches the commands of an earlier release: changes of tracked '
                  'tables through the others are not recorded (run the installer as a superuser)')
      FROM pg_event_trigger g
     WHERE g.evtname = '@schema@_ddl_end' AND g.evttags IS DISTINCT FROM @schema@._ddl_end_tags();
    -- Every way capture can be off while a table is listed as tracked: a trigger missing, disabled,
    -- enabled for replicas only, replaced by another definition; a partition without them; the
    -- generated function changed, or granted to another role.
    RETURN QUERY
    SELECT format('tracked table %s: %s', CASE WHEN c = t.relid THEN t.table_name
                                               ELSE format('%s (partition %s)', t.table_name, c::regclass) END,
                  coalesce(@schema@._capture_problem(c),
                           'its capture function is not the one tracking generates (run enable_tracking again)'))
      FROM @schema@.tracked_tables t, @schema@._capture_tables(t.relid) c
     WHERE EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c)
       AND (@schema@._capture_problem(c) IS NOT NULL
            OR NOT EXISTS (SELECT 1 FROM pg_proc p
                            WHERE p.oid = to_regprocedure(@schema@._capture_function(c) || '()')
                              AND p.proowner = (SELECT r.oid FROM pg_roles r WHERE r.rolname = '@schema@_capture')
                              AND p.prosecdef
                              AND p.proconfig = @schema@._capture_settings(c)
                              AND p.prosrc = @schema@._capture_body(c, t)
                              -- run by its trigger alone, attached by the maintainer
                              AND p.proacl IS NOT NULL
                              AND NOT EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
                                               WHERE a.grantee <> p.proowner
                                                 AND (a.grantee <> '@schema@_maintainer'::regrole
                                                      OR a.privilege_type <> 'EXECUTE' OR a.is_grantable))));

    -- A tenant column or key holding json, or made of a type with a dropped attribute, and a tenant
    -- column of jsonb or made of an array, are refused (enable_tracking, the event triggers): a json
    -- value may be one no image holds, whose marker names no tenant or row; the others print two rows
    -- or tenants alike. One tracked before those refusals is named here (trials 83, 84).
    RETURN QUERY
    SELECT format('tracked table %s: its tenant column or key (%s) %s', t.table_name, array_to_string(h.held, ', '), w.why)
      FROM @schema@.tracked_tables t
     CROSS JOIN LATERAL (VALUES
               ('holds json, whose value may be one no row image holds (disable and enable its tracking once they '
                'hold none)', @schema@._json_columns(t.relid), coalesce(t.key_columns, '{}') || t.tenant_column),
               ('is made of a type with a dropped attribute, so rows that differed only in it print alike (give the '
                'column a type made anew without it)', @schema@._columns_with_dropped_attributes(t.relid),
                coalesce(t.key_columns, '{}') || t.tenant_column),
               ('is jsonb or made of an array, so two tenants may print alike (give it a scalar type)',
                @schema@._columns_unfit_for_tenant(t.relid), ARRAY[t.tenant_column])) w(why, columns, names)
     CROSS JOIN LATERAL (SELECT ARRAY(SELECT quote_ident(c) FROM unnest(w.names) c WHERE c = ANY (w.columns)) AS held) h
     WHERE EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = t.relid)
       AND cardinality(h.held) > 0;

    -- What a key or tenant column is made of, changed with the event triggers off (a superuser's
    -- change): its stored values may read otherwise than its events name them (_take_name_types).
    RETURN QUERY
    SELECT format('tracked table %s: what its key or tenant column is made of changed since tracking took it (%s): its '
                  'stored values may read otherwise than its events name them (disable and enable its tracking)',
                  t.table_name, x.changes)
      FROM @schema@.tracked_tables t
     CROSS JOIN LATERAL (SELECT @schema@._name_type_changes(t.relid, t.name_types,
                                                            @schema@._name_types(t.relid, t.tenant_attnum)) AS changes) x
     WHERE EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = t.relid) AND x.changes IS NOT NULL;

    -- Replica mode fires no capture trigger: sessions put in it by a stored default (this database's,
    -- a role's, the server's), or roles that are no superuser allowed to set it (PostgreSQL 15's GRANT
    -- SET or ALTER SYSTEM ON PARAMETER), write uncaptured.
    RETURN QUERY
    SELECT format('session_replication_role = %s is stored as a default for %s: its sessions fire no capture trigger',
                  split_part(c.setting, '=', 2),
                  concat_ws(' in ', CASE WHEN s.setrole <> 0 THEN format('role %s', s.setrole::regrole) END,
                            CASE WHEN s.setdatabase <> 0 THEN 'this database' END))
      FROM pg_db_role_setting s, unnest(s.setconfig) c(setting)
     WHERE s.setdatabase IN (0, (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))
       AND lower(c.setting) = 'session_replication_role=replica'  -- (local fires ordinary triggers)
    UNION ALL
    SELECT format('session_replication_role = %s is the server''s default (%s): no session fires a capture trigger',
                  g.reset_val, g.source)
      FROM pg_settings g
     WHERE g.name = 'session_replication_role' AND g.reset_val = 'replica' AND g.source NOT IN ('database', 'user', 'database user')
    UNION ALL
    SELECT format('%s may %s session_replication_role, though no superuser: in replica mode its writes fire no capture '
                  'trigger', CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END, x.privilege_type)
      FROM pg_parameter_acl p, aclexplode(p.paracl) x
     WHERE p.parname = 'session_replication_role'
       AND NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = x.grantee), false);

    -- The intake's ids are the order events are sealed in; their sequence is the sealer role's, and
    -- only a superuser may move it (ALTER SEQUENCE ... RESTART). Moved back below a pending event,
    -- later writes would be sealed first (seal() refuses); moved past 2^62, which writes do not reach
    -- in a hundred thousand years, toward its end, every captured write would soon fail. Dropped by the
    -- owner role (the schema's owner), or something else in its place: read by name, it is named.
    IF v_ids IS NULL OR (SELECT c.relkind FROM pg_class c WHERE c.oid = v_ids) <> 'S' THEN
        RETURN NEXT format('the intake''s id sequence @schema@.event_intake_intake_id_seq is %s: captured writes, '
                           'seal() and the installer fail (docs/installer.md says how to make it again)',
                           CASE WHEN v_ids IS NULL THEN 'missing' ELSE 'not a sequence' END);
    ELSE
        -- (Not pg_sequence_last_value: NULL after a RESTART, which is what is looked for.)
        EXECUTE format('SELECT last_value FROM %s', v_ids) INTO v_ids_at;
        RETURN QUERY
        SELECT format('the intake''s id sequence stands at %s, %s: it was moved (ALTER SEQUENCE ... RESTART)', v_ids_at,
                      CASE WHEN v_ids_at > 4611686018427387904 THEN 'near its end, where captured writes will fail'
                           ELSE 'below an event pending in the intake, which seal() refuses to seal out of order' END)
         WHERE v_ids_at > 4611686018427387904
            OR v_ids_at < (SELECT max(i.intake_id) FROM @schema@.event_intake i);
    END IF;

    -- A publication of a package table's updates or deletes with a row filter or a column list: unless
    -- the table's replica identity covers every column named, PostgreSQL refuses each such UPDATE or
    -- DELETE, whatever rows it touches (sealing, prune, a revocation, archiving, tracking, a limited
    -- write would stop). A whole-row identity covers every row filter, and no column list; a key, the
    -- filters on its columns and the lists that hold them.
    RETURN QUERY
    SELECT format('publication %s publishes %s of %s with a %s: PostgreSQL refuses them where the replica '
                  'identity does not cover it, and the package''s own would fail', quote_ident(p.pubname),
                  concat_ws(' and ', CASE WHEN p.pubupdate THEN 'updates' END, CASE WHEN p.pubdelete THEN 'deletes' END),
                  r.prrelid::regclass,
                  concat_ws(' and ', CASE WHEN r.prqual IS NOT NULL THEN 'row filter' END,
                            CASE WHEN r.prattrs IS NOT NULL THEN 'column list' END))
      FROM pg_publication p JOIN pg_publication_rel r ON r.prpubid = p.oid JOIN pg_class c ON c.oid = r.prrelid
     WHERE c.relnamespace = '@schema@'::regnamespace AND (p.pubupdate OR p.pubdelete)
       AND CASE WHEN c.relreplident = 'f' THEN r.prattrs IS NOT NULL
                ELSE EXISTS (SELECT 1 FROM regexp_matches(coalesce(r.prqual::text, ''), ':varattno (-?[0-9]+)', 'g') m
                              WHERE NOT m[1]::int2 = ANY (@schema@._replica_identity_columns(c.oid)))
                     OR (r.prattrs IS NOT NULL AND NOT @schema@._replica_identity_columns(c.oid) <@ r.prattrs::int2[])
           END;

    RETURN QUERY
    SELECT format('rate-limited table %s', x.problem)
      FROM @schema@.rate_limits r JOIN pg_class c ON c.oid::text = r.target,
           LATERAL (SELECT @schema@._rate_limit_problem(c.oid) AS problem) x
     WHERE r.scope = 'table' AND x.problem IS NOT NULL;

    -- Differences from what the last install left.
    SELECT i.snapshot INTO expected FROM @schema@._install i ORDER BY i.installed_at DESC LIMIT 1;
    IF expected IS NULL THEN
        RETURN NEXT 'no install record: run the installer';
        RETURN;
    END IF;
    IF expected -> 'capture_schema_acl' IS DISTINCT FROM actual -> 'capture_schema_acl' THEN
        RETURN NEXT format('grants on schema @schema@_capture changed: %s, installed %s',
                           actual -> 'capture_schema_acl', expected -> 'capture_schema_acl');
    END IF;
    IF expected -> 'owner_members' IS DISTINCT FROM actual -> 'owner_members' THEN
        RETURN NEXT format('members of role @schema@_owner changed: %s, installed %s',
                           actual -> 'owner_members', expected -> 'owner_members');
    END IF;
    IF expected -> 'schema_acl' <> actual -> 'schema_acl' THEN
        RETURN NEXT format('grants on schema @schema@ changed: %s, installed %s',
                           actual -> 'schema_acl', expected -> 'schema_acl');
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(expected -> 'functions') LOOP
        IF NOT (actual -> 'functions') ? k THEN
            RETURN NEXT format('function %s is missing', k);
        ELSIF actual -> 'functions' -> k <> v THEN
            RETURN NEXT format('function %s changed: %s, installed %s', k, actual -> 'functions' -> k, v);
        END IF;
    END LOOP;
    -- Added since: an overload the package's own calls could pick, a table, view, sequence or type.
    RETURN QUERY
    SELECT format('function %s was added since the last install', f.name)
      FROM jsonb_object_keys(actual -> 'functions') f(name)
     WHERE NOT (expected -> 'functions') ? f.name;
    RETURN QUERY
    SELECT format('table, view, sequence or type @schema@.%I was added since the last install', r.name)
      FROM jsonb_object_keys(actual -> 'relations') r(name)
     WHERE NOT (expected -> 'relations') ? r.name;
    FOR k, v IN SELECT * FROM jsonb_each(expected -> 'relations') LOOP
        IF NOT (actual -> 'relations') ? k THEN
            RETURN NEXT format('table or view @schema@.%I is missing', k);
        ELSIF actual -> 'relations' -> k <> v THEN
            RETURN NEXT format('@schema@.%I changed since the last install (its grants, policies, rules, triggers, '
                               'constraints, columns, indexes or parameters): %s, installed %s',
                               k, actual -> 'relations' -> k, v);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._integrity_problems() IS
    'Everything missing or loosened in the installation, one line each; empty when intact.';

-- Not broken, but worth knowing.
CREATE OR REPLACE FUNCTION @schema@._integrity_warnings()
RETURNS SETOF text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '@schema@_owner holds pg_read_server_files, which it needs only for a server key file, and this '
           'database registers none: REVOKE pg_read_server_files FROM @schema@_owner unless another database '
           'of the cluster uses one'
     WHERE EXISTS (SELECT 1 FROM pg_auth_members m
                    WHERE m.roleid = 'pg_read_server_files'::regrole
                      AND m.member = (SELECT r.oid FROM pg_roles r WHERE r.rolname = '@schema@_owner'))
       AND NOT EXISTS (SELECT 1 FROM @schema@.master_keys m WHERE m.key_file IS NOT NULL AND m.state <> 'retired')
    UNION ALL
    -- An earlier release put pgcrypto where CREATE EXTENSION did (public, in PostgreSQL 15 the
    -- database owner's): that schema's owner may drop it, with the secrets functions.
    SELECT format('pgcrypto is in schema %s, owned by %s, who is no superuser and may drop it with the secrets '
                  'functions: move it to a superuser''s schema (ALTER EXTENSION pgcrypto SET SCHEMA ...)',
                  n.nspname, n.nspowner::regrole)
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace JOIN pg_roles o ON o.oid = n.nspowner
     WHERE e.extname = 'pgcrypto' AND NOT o.rolsuper
       AND (SELECT r.rolsuper FROM pg_roles r JOIN pg_extension x ON x.extowner = r.oid WHERE x.extname = 'pgcrypto')
$$;
COMMENT ON FUNCTION @schema@._integrity_warnings() IS 'What status warns about: not broken, but worth knowing.';

-- What `pgaudit status` reports, for the reader: a monitoring check needs no superuser, and may
-- read neither the installer's bookkeeping nor the master keys.
CREATE OR REPLACE FUNCTION @schema@.install_status(OUT version text, OUT migrations text[], OUT problems text[],
                                                  OUT warnings text[], OUT client_master_keys integer)
RETURNS record
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT i.version INTO version FROM @schema@._install i ORDER BY i.installed_at DESC LIMIT 1;
    migrations := ARRAY(SELECT m.migration_id::text FROM @schema@._yoyo_migration m ORDER BY 1);
    problems := ARRAY(SELECT p FROM @schema@._integrity_problems() p);
    warnings := ARRAY(SELECT w FROM @schema@._integrity_warnings() w);
    client_master_keys := (SELECT count(*) FROM @schema@.master_keys k WHERE k.key_file IS NULL AND k.state <> 'retired');
END
$$;
COMMENT ON FUNCTION @schema@.install_status() IS
    'Installed version, applied migrations, integrity problems and warnings, and how many client-supplied '
    'master keys are in use (status, for the reader).';
