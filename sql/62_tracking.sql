-- Tracking: the catalogue of tracked tables, and enable_tracking / disable_tracking, which attach
-- and remove the capture triggers (sql/60_capture.sql) on a table and all its partitions.

CREATE OR REPLACE FUNCTION @schema@._attnums(target oid, columns text[])
RETURNS int2[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(a.attnum ORDER BY u.o), '{}')
      FROM unnest(columns) WITH ORDINALITY AS u(name, o)
      JOIN pg_attribute a ON a.attrelid = target AND a.attname = u.name AND a.attnum > 0 AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION @schema@._attnums(oid, text[]) IS 'Column numbers of the named columns (missing ones left out).';

CREATE OR REPLACE FUNCTION @schema@._attnames(target oid, attnums int2[])
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(a.attname::text ORDER BY u.o), '{}')
      FROM unnest(attnums) WITH ORDINALITY AS u(attnum, o)
      JOIN pg_attribute a ON a.attrelid = target AND a.attnum = u.attnum AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION @schema@._attnames(oid, int2[]) IS 'Current names of columns given by number (dropped ones left out).';

CREATE OR REPLACE FUNCTION @schema@._tracking_options(t @schema@.tracked_tables)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('table', t.table_name, 'kind_prefix', t.kind_prefix, 'key_columns', t.key_columns,
                              'exclude_columns', t.exclude_columns, 'redact_columns', t.redact_columns,
                              'tenant_column', t.tenant_column, 'skip_noop_updates', t.skip_noop_updates)
$$;
COMMENT ON FUNCTION @schema@._tracking_options(@schema@.tracked_tables) IS 'A tracked table''s options, as event payload.';

-- Kinds pgaudit_py writes itself: record() refuses them, and no tracked table's kinds may fall among them.
-- Inlined where it is called (no SET clause: every name qualified): a SQL function that is not is
-- parsed and planned again at every call.
CREATE OR REPLACE FUNCTION @schema@._reserved_kind(kind text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT kind OPERATOR(pg_catalog.=) 'audit' OR pg_catalog.starts_with(kind, 'audit.')
        OR pg_catalog.starts_with(kind, 'secret.') OR pg_catalog.starts_with(kind, 'tenant.secret.')
        OR pg_catalog.starts_with(kind, 'tenant.data_key.')
$$;
COMMENT ON FUNCTION @schema@._reserved_kind(text) IS
    'True for the kinds of pgaudit_py''s own events (audit., secret., tenant.secret., tenant.data_key.).';

-- Before migration 0027 the helpers took proofs without their token: the old signatures go, or a
-- call naming no token would be ambiguous between them and the new ones.
DROP FUNCTION IF EXISTS @schema@._check_owner(oid);
DROP FUNCTION IF EXISTS @schema@._prove_owner(oid);
DROP FUNCTION IF EXISTS @schema@._register_tracking(@schema@.tracked_tables);
DROP FUNCTION IF EXISTS @schema@._unregister_tracking(oid, text);
DROP FUNCTION IF EXISTS @schema@._cover_partition(oid);

-- Who may change a table's tracking or limits: a member of the maintainer role who owns the table.
-- The SECURITY DEFINER helpers that make the change cannot tell who called them (inside them
-- current_user is the owner role, and session_user is whoever logged in: a maintainer's SECURITY
-- DEFINER function run in another maintainer's session would pass for that one). So the caller
-- proves it first, with its own rights: enable_tracking and the like (SECURITY INVOKER) insert a row
-- into owner_proofs under a random token, whose BEFORE trigger, running as the inserting role, stamps
-- it with current_user and the transaction and refuses a role that does not own the table; the
-- caller passes the token to the helper, which consumes the row. Only the maintainer may insert
-- there, and only through this trigger; no role but the owner may read it, so no other code run in
-- the same statement can learn the token.
CREATE OR REPLACE FUNCTION @schema@._stamp_owner_proof()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = NEW.relid);
BEGIN
    NEW.role := current_user;
    NEW.role_id := (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user);
    NEW.xid := pg_current_xact_id();
    NEW.statement_at := statement_timestamp();
    IF owner IS NULL OR NOT pg_has_role(current_user, owner, 'MEMBER') THEN
        RAISE EXCEPTION 'must be owner of table %',
                        coalesce((SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = NEW.relid), NEW.relid::text)
            USING ERRCODE = 'insufficient_privilege';
    ELSIF NOT pg_has_role(current_user, '@schema@_maintainer', 'MEMBER') THEN
        RAISE EXCEPTION 'tracking and limits of table % are changed by a member of @schema@_maintainer, not %',
                        NEW.relid::regclass, current_user USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @schema@._stamp_owner_proof() IS
    'BEFORE INSERT trigger of owner_proofs, as the inserting role: stamps the row, refuses a role that does not own the table.';
CREATE OR REPLACE TRIGGER stamp BEFORE INSERT ON @schema@.owner_proofs
    FOR EACH ROW EXECUTE FUNCTION @schema@._stamp_owner_proof();

-- The caller's proof that it owns the table (run with the caller's rights); returns the token to pass
-- to the helper that takes it. One token may prove several tables (a tree and its partitions).
CREATE OR REPLACE FUNCTION @schema@._prove_owner(target oid, token uuid DEFAULT gen_random_uuid())
RETURNS uuid
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO @schema@.owner_proofs (relid, token) VALUES (target, token);
    SELECT token;  -- not RETURNING, which would need the right to read owner_proofs, and so others' tokens
$$;
COMMENT ON FUNCTION @schema@._prove_owner(oid, uuid) IS
    'Proves, with the caller''s own rights, that it owns a table and holds the maintainer role (see _check_owner); '
    'returns the token the helper is passed.';

-- Inside the SECURITY DEFINER helpers: consumes the proofs of the table made in this transaction
-- under the token the helper was passed, and returns the role that made the one it takes. A table
-- that no longer exists needs none (its tracking is being cleaned up). A proof is taken only
-- - with its token, which only the code that made the proof knows: another maintainer's SECURITY
--   DEFINER function run in the same statement cannot take it (tests/test_owner_proofs.py);
-- - in the statement that made it, by the role the session acts as (the one the events name): a
--   helper cannot tell who called it (current_user is the owner role here), so a proof left in a
--   transaction, or made before a SET ROLE, would serve another role's code
--   (tests/test_trust_attacks_106.py, trial 100's b2, trial 102's b5);
-- - while its role still owns the table under the name it had (the table given away, or the role
--   renamed, since the proof: tests/test_trust_attacks_103.py, b3 to b5).
CREATE OR REPLACE FUNCTION @schema@._check_owner(target oid, token uuid)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acting text := @schema@._db_role();
    proofs @schema@.owner_proofs[];
    proof @schema@.owner_proofs;
BEGIN
    -- Proofs left by earlier transactions go, but never waiting for a row another transaction holds.
    DELETE FROM @schema@.owner_proofs p
     WHERE p.ctid = ANY (ARRAY(SELECT o.ctid FROM @schema@.owner_proofs o
                                WHERE o.xid <> pg_current_xact_id() FOR UPDATE SKIP LOCKED));
    WITH taken AS (DELETE FROM @schema@.owner_proofs p
                    WHERE p.relid = target AND p.xid = pg_current_xact_id() AND p.token = _check_owner.token
                   RETURNING p AS proof)
    SELECT array_agg(taken.proof) INTO proofs FROM taken;
    SELECT t.* INTO proof FROM unnest(proofs) t
     WHERE t.role = acting AND t.statement_at = statement_timestamp()
       AND EXISTS (SELECT 1 FROM pg_roles r JOIN pg_class c ON c.oid = target
                    WHERE r.oid = t.role_id AND r.rolname = t.role AND pg_has_role(r.oid, c.relowner, 'MEMBER'))
     LIMIT 1;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = target) THEN
        RETURN proofs[1].role;
    ELSIF proof.role IS NULL THEN
        RAISE EXCEPTION 'must be owner of table %', target::regclass USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('A proof of owning it serves the role the session acts as (%s), in the statement that '
                            'made it, with the token it was made under, while that role owns the table.', acting),
            HINT = 'Change tracking and limits through enable_tracking, disable_tracking, enable_rate_limit and '
                   'disable_rate_limit, as a maintainer owning the table.';
    END IF;
    RETURN proof.role;
END
$$;
COMMENT ON FUNCTION @schema@._check_owner(oid, uuid) IS
    'Consumes the caller''s proof of owning a table, made under the token (raises 42501 without one); returns '
    'who made it. A table that no longer exists passes.';

-- What may be tracked, and under which prefix: refused before anything is written.
CREATE OR REPLACE FUNCTION @schema@._check_trackable(entry @schema@.tracked_tables)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel pg_class := (SELECT c FROM pg_class c WHERE c.oid = entry.relid);
    col text;
    clash text;
BEGIN
    IF rel.oid IS NULL THEN
        RAISE EXCEPTION 'table % does not exist', coalesce(entry.relid::text, 'NULL') USING ERRCODE = 'undefined_table';
    ELSIF rel.relnamespace = '@schema@'::regnamespace THEN
        RAISE EXCEPTION 'cannot track %: the audit log does not audit itself', entry.relid::regclass USING ERRCODE = 'PA008';
    ELSIF rel.relispartition THEN
        RAISE EXCEPTION 'cannot track %: it is a partition', entry.relid::regclass USING ERRCODE = 'PA008',
            HINT = format('Track the partitioned table %s instead.',
                          (SELECT i.inhparent::regclass FROM pg_inherits i WHERE i.inhrelid = entry.relid));
    ELSIF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = entry.relid) THEN
        -- A statement on its parent would change its rows without firing its statement triggers.
        RAISE EXCEPTION 'cannot track %: it inherits from another table', entry.relid::regclass USING ERRCODE = 'PA008',
            HINT = format('Track %s instead: the tables that inherit from a tracked table are captured with it.',
                          (SELECT string_agg(i.inhparent::regclass::text, ', ') FROM pg_inherits i
                            WHERE i.inhrelid = entry.relid));
    ELSIF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot track %: only tables can be tracked, not %', entry.relid::regclass,
            CASE rel.relkind WHEN 'v' THEN 'views' WHEN 'm' THEN 'materialized views'
                             WHEN 'f' THEN 'foreign tables' ELSE 'this kind of relation' END
            USING ERRCODE = 'PA008';
    ELSIF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'cannot track %: it is a temporary table', entry.relid::regclass USING ERRCODE = 'PA008';
    END IF;
    -- Below it, partitions only (see _tree_problem).
    SELECT format('%s %s', d.relid::regclass, CASE WHEN c.relkind NOT IN ('r', 'p') THEN 'is not a table'
                                                  ELSE 'inherits from it without being a partition' END)
      INTO clash
      FROM (WITH RECURSIVE down(relid) AS (
                SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = entry.relid
                UNION SELECT i.inhrelid FROM down JOIN pg_inherits i ON i.inhparent = down.relid)
            SELECT relid FROM down) d
      JOIN pg_class c ON c.oid = d.relid
     WHERE NOT c.relispartition OR c.relkind NOT IN ('r', 'p')
     ORDER BY d.relid LIMIT 1;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'cannot track %: %', entry.relid::regclass, clash USING ERRCODE = 'PA008',
            HINT = 'Only a table and its partitions can be captured (not inheritance children, not foreign tables).';
    END IF;
    SELECT CASE WHEN c = entry.relid THEN @schema@._tree_problem(c)
                ELSE format('partition %s: %s', c::regclass, @schema@._tree_problem(c)) END
      INTO clash FROM @schema@._capture_tables(entry.relid) c WHERE @schema@._tree_problem(c) IS NOT NULL LIMIT 1;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'cannot track %: %', entry.relid::regclass, clash USING ERRCODE = 'PA008';
    END IF;
    FOREACH col IN ARRAY entry.exclude_columns || entry.redact_columns
                         || CASE WHEN entry.tenant_column IS NULL THEN '{}'::text[] ELSE ARRAY[entry.tenant_column] END LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = entry.relid AND a.attname = col
                                                     AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column % of % does not exist', coalesce(quote_ident(col), 'NULL'), entry.relid::regclass
                USING ERRCODE = 'PA005';
        END IF;
    END LOOP;
    -- The key names the row in target_id and the tenant column fills tenant_id: neither can be hidden.
    IF entry.redact_columns && (coalesce(@schema@._key_columns(entry.relid), '{}') || entry.tenant_column) THEN
        RAISE EXCEPTION 'cannot redact %: the key and the tenant column are recorded in every event (target_id, tenant_id)',
            array_to_string(ARRAY(SELECT unnest(entry.redact_columns)
                                  INTERSECT SELECT unnest(coalesce(@schema@._key_columns(entry.relid), '{}') || entry.tenant_column)), ', ')
            USING ERRCODE = 'PA005';
    END IF;
    -- A json value may be one no row image holds, which the image replaces by a marker: no tenant's name.
    IF entry.tenant_column = ANY (@schema@._json_columns(entry.relid)) THEN
        RAISE EXCEPTION 'the tenant column % of % is json: its value may be one no row image holds (use text or jsonb)',
            quote_ident(entry.tenant_column), entry.relid::regclass USING ERRCODE = 'PA005';
    END IF;
    -- Nor a jsonb one, or one made of an array: two tenants would print alike (_columns_unfit_for_tenant).
    IF entry.tenant_column = ANY (@schema@._columns_unfit_for_tenant(entry.relid)) THEN
        RAISE EXCEPTION 'the tenant column % of % is jsonb or made of an array: two tenants would print alike ("1" and 1, '
                        '''{1,2}'' and ''[0:1]={1,2}'')', quote_ident(entry.tenant_column), entry.relid::regclass
            USING ERRCODE = 'PA005', HINT = 'Use a column of a scalar type, text say.';
    END IF;
    -- Nor a row's (tests/test_trust_attacks_80.py, r8).
    IF @schema@._key_columns(entry.relid) && @schema@._json_columns(entry.relid)::text[] THEN
        RAISE EXCEPTION 'the key of % holds json: its value may be one no row image holds (use text or jsonb)',
            entry.relid::regclass USING ERRCODE = 'PA005';
    END IF;
    -- Nor one made of a type that lost an attribute: rows that differed only in it print alike (and
    -- compare equal), two rows or tenants under one name (tests/test_trust_attacks_82.py, n18).
    IF (coalesce(@schema@._key_columns(entry.relid), '{}') || entry.tenant_column)
       && @schema@._columns_with_dropped_attributes(entry.relid)::text[] THEN
        RAISE EXCEPTION 'the tenant column or key of % is made of a type with a dropped attribute: values that differed '
                        'only in it print alike, naming two rows or tenants as one', entry.relid::regclass
            USING ERRCODE = 'PA005', HINT = 'Give the column a type made anew without the dropped attribute.';
    END IF;
    IF entry.exclude_columns && entry.redact_columns THEN
        RAISE EXCEPTION 'a column cannot be both excluded and redacted: %',
            array_to_string(ARRAY(SELECT unnest(entry.exclude_columns) INTERSECT SELECT unnest(entry.redact_columns)), ', ')
            USING ERRCODE = 'PA005';
    END IF;
    PERFORM @schema@._check_kind(entry.kind_prefix, 'kind prefix');
    IF char_length(entry.kind_prefix) > 100 THEN
        RAISE EXCEPTION 'kind prefix is longer than 100 characters' USING ERRCODE = 'PA001';
    ELSIF @schema@._reserved_kind(entry.kind_prefix || '.insert') THEN
        RAISE EXCEPTION 'the kind prefix given is reserved for pgaudit_py''s own events' USING ERRCODE = 'PA001';
    END IF;
    -- One table per prefix, and none inside another's: each table's kinds are its own. (The
    -- refusals never repeat the prefix given: messages end up in logs.)
    SELECT t.table_name INTO clash FROM @schema@.tracked_tables t
     WHERE t.relid <> entry.relid
       AND (t.kind_prefix = entry.kind_prefix OR starts_with(entry.kind_prefix, t.kind_prefix || '.')
            OR starts_with(t.kind_prefix, entry.kind_prefix || '.'))
     LIMIT 1;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'the kind prefix given overlaps that of tracked table %', clash USING ERRCODE = 'PA005',
            HINT = 'Give each tracked table a kind prefix of its own (enable_tracking(..., kind_prefix => ...)).';
    END IF;
    -- Nor one that another table used (its events stay under it), unless that table is gone and
    -- this one has its name: the same table, dropped and created again.
    SELECT coalesce((SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = k.relid), k.table_name || ' (dropped)')
      INTO clash
      FROM @schema@.kind_prefixes k
     WHERE k.kind_prefix = entry.kind_prefix AND k.relid <> entry.relid
       AND (EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = k.relid) OR k.table_name <> entry.relid::regclass::text);
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'the kind prefix given holds the events of table %', clash USING ERRCODE = 'PA005',
            HINT = 'Its history would read as this table''s: give this one a kind prefix of its own.';
    END IF;
    -- Nor another table's own name: the history of a table that is not tracked (or no longer) is
    -- read under it.
    SELECT c.oid::regclass::text INTO clash FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname || '.' || c.relname = entry.kind_prefix AND c.oid <> entry.relid AND c.relkind IN ('r', 'p')
     LIMIT 1;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'the kind prefix given is the name of table %', clash USING ERRCODE = 'PA005',
            HINT = 'A table''s name is the kind prefix of its own history.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._check_trackable(@schema@.tracked_tables) IS
    'Refuses a table that cannot be tracked, unknown columns, and a kind prefix that is reserved or another table''s.';

-- The catalogue is written only here, and every change is itself an event.
CREATE OR REPLACE FUNCTION @schema@._register_tracking(entry @schema@.tracked_tables, proof uuid DEFAULT NULL)
RETURNS @schema@.tracked_tables
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- the names it records and keeps, whoever calls it (tests/test_trust_attacks_70.py)
AS $$
DECLARE
    result @schema@.tracked_tables;
    who text;
    unhidden text;
    changed text;
    tenant_number int2;  -- the tenant column's number
BEGIN
    entry.exclude_columns := coalesce(entry.exclude_columns, '{}');
    entry.redact_columns := coalesce(entry.redact_columns, '{}');
    tenant_number := (@schema@._attnums(entry.relid, ARRAY[entry.tenant_column]))[1];
    PERFORM @schema@._check_trackable(entry);
    who := @schema@._check_owner(entry.relid, proof);
    -- Called again under the same prefix, every column hidden now (redacted or excluded) stays hidden:
    -- else the same call run again after the table's owner renamed one away (and added another under
    -- its name, which tracking hides too) would record it in clear (trial 86, o9). disable_tracking
    -- first, and a table is tracked anew.
    SELECT string_agg(quote_ident(c), ', ' ORDER BY c) INTO unhidden
      FROM @schema@.tracked_tables t, unnest(@schema@._attnames(t.relid, t.redact_attnums || t.exclude_attnums)) c
     WHERE t.relid = entry.relid AND t.kind_prefix = entry.kind_prefix
       AND c <> ALL (entry.redact_columns || entry.exclude_columns);
    IF unhidden IS NOT NULL THEN
        RAISE EXCEPTION 'cannot stop hiding % of %: tracking enabled again keeps every redacted or excluded column hidden',
                        unhidden, entry.relid::regclass
            USING ERRCODE = 'PA005',
                  HINT = 'Name it in redact_columns or exclude_columns, or use disable_tracking first to track the table anew.';
    END IF;
    -- Called again under the same prefix, the tracking goes on: what its key and tenant columns are
    -- made of must be what it took (a change made with the event triggers off is named by status;
    -- taken anew here, it would pass unseen: trial 89, n10).
    SELECT @schema@._name_type_changes(t.relid, t.name_types, @schema@._name_types(t.relid, tenant_number))
      INTO changed FROM @schema@.tracked_tables t WHERE t.relid = entry.relid AND t.kind_prefix = entry.kind_prefix;
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'cannot track % again: what its key or tenant column is made of changed since tracking took it (%)',
                        entry.relid::regclass, changed
            USING ERRCODE = 'PA005', HINT = 'Use disable_tracking first to track the table anew.';
    END IF;
    PERFORM @schema@._check_owner(c, proof) FROM @schema@._capture_tables(entry.relid) c WHERE c <> entry.relid;  -- partitions too
    -- Moved to another prefix: tracking under the old one ends, and says so there, so that its
    -- events say nothing of the rows from then on (row_as_of; tests/test_trust_attacks_70.py).
    PERFORM @schema@._record('audit.tracking_disabled', NULL, NULL, NULL, 'table', t.table_name,
                             jsonb_build_object('kind_prefix', t.kind_prefix, 'moved_to', entry.kind_prefix),
                             'success', NULL, NULL)
       FROM @schema@.tracked_tables t WHERE t.relid = entry.relid AND t.kind_prefix <> entry.kind_prefix;
    INSERT INTO @schema@.tracked_tables AS t (relid, table_name, kind_prefix, key_columns, exclude_columns,
                                              redact_columns, tenant_column, exclude_attnums, redact_attnums,
                                              tenant_attnum, skip_noop_updates, enabled_by, name_types)
    VALUES (entry.relid, entry.relid::regclass::text, entry.kind_prefix, @schema@._key_columns(entry.relid),
            entry.exclude_columns, entry.redact_columns, entry.tenant_column,
            @schema@._attnums(entry.relid, entry.exclude_columns), @schema@._attnums(entry.relid, entry.redact_columns),
            tenant_number, coalesce(entry.skip_noop_updates, true), who, @schema@._name_types(entry.relid, tenant_number))
    ON CONFLICT (relid) DO UPDATE
        SET table_name = excluded.table_name, kind_prefix = excluded.kind_prefix,
            key_columns = excluded.key_columns, exclude_columns = excluded.exclude_columns,
            redact_columns = excluded.redact_columns, tenant_column = excluded.tenant_column,
            exclude_attnums = excluded.exclude_attnums, redact_attnums = excluded.redact_attnums,
            tenant_attnum = excluded.tenant_attnum, skip_noop_updates = excluded.skip_noop_updates,
            -- Enabled again under its prefix, the tracking goes on: the names its columns had since it
            -- began stay theirs (_former_names; trial 87, o3).
            enabled_at = CASE WHEN t.kind_prefix = excluded.kind_prefix THEN t.enabled_at ELSE now() END,
            enabled_by = excluded.enabled_by, name_types = excluded.name_types,
            -- A baseline is its prefix's: under another, no event holds the rows it imaged.
            baseline_at = CASE WHEN t.kind_prefix = excluded.kind_prefix THEN t.baseline_at END
    RETURNING * INTO result;
    INSERT INTO @schema@.kind_prefixes AS k (kind_prefix, relid, table_name) VALUES (result.kind_prefix, result.relid, result.table_name)
    ON CONFLICT (kind_prefix) DO UPDATE SET relid = excluded.relid, table_name = excluded.table_name;
    PERFORM @schema@._generate_capture(c) FROM @schema@._capture_tables(result.relid) c;
    PERFORM @schema@._record('audit.tracking_enabled', NULL, NULL, NULL, 'table', result.table_name,
                             @schema@._tracking_options(result), 'success', NULL, NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@._register_tracking(@schema@.tracked_tables, uuid) IS
    'Checks and writes a tracked_tables entry, generates the capture functions of the table and its '
    'partitions, and records audit.tracking_enabled; called by enable_tracking.';

-- Capture functions whose table tracking no longer covers (dropped, detached from a tracked table,
-- untracked) go, and the triggers that call them with them; a partition that left is recorded.
CREATE OR REPLACE FUNCTION @schema@._drop_stale_captures()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gone oid;
BEGIN
    FOR gone IN SELECT @schema@._captured_relid(p.proname) FROM pg_proc p
                 WHERE p.pronamespace = '@schema@_capture'::regnamespace AND p.pronargs = 0
                   AND @schema@._captured_relid(p.proname) IS NOT NULL LOOP
        CONTINUE WHEN (@schema@._tracking_of(gone)).relid IS NOT NULL;
        PERFORM @schema@._drop_capture(gone);
        IF NOT EXISTS (SELECT 1 FROM @schema@.tracked_tables t WHERE t.relid = gone) THEN
            PERFORM @schema@._record('audit.tracked_partition_removed', NULL, NULL, NULL, 'table',
                                     coalesce((SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = gone), gone::text),
                                     jsonb_build_object('relid', gone, 'dropped', NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = gone)),
                                     'success', NULL, NULL);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._drop_stale_captures() IS
    'Drops capture functions (and their triggers) of tables tracking no longer covers; records partitions that left.';

CREATE OR REPLACE FUNCTION @schema@._unregister_tracking(target oid, reason text, proof uuid DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- the names it records and keeps, whoever calls it (tests/test_trust_attacks_70.py)
AS $$
DECLARE
    gone @schema@.tracked_tables;
BEGIN
    IF reason NOT IN ('audit.tracking_disabled', 'audit.tracked_table_dropped')
       OR (reason = 'audit.tracked_table_dropped' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = target)) THEN
        RAISE EXCEPTION 'invalid reason: %', reason USING ERRCODE = 'PA005';
    END IF;
    PERFORM @schema@._check_owner(target, proof);
    DELETE FROM @schema@.tracked_tables WHERE relid = target RETURNING * INTO gone;
    IF FOUND THEN
        -- The table's and its partitions' capture functions go (their triggers with them), unrecorded:
        -- this event says it all.
        PERFORM @schema@._drop_capture(c) FROM @schema@._capture_tables(target) c;
        PERFORM @schema@._record(reason, NULL, NULL, NULL, 'table', gone.table_name,
                                 jsonb_build_object('kind_prefix', gone.kind_prefix), 'success', NULL, NULL);
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._unregister_tracking(oid, text, uuid) IS
    'Removes a tracked_tables entry and its capture functions, and records why '
    '(audit.tracking_disabled, audit.tracked_table_dropped).';

-- A partition created in, or attached to, a tracked table: its capture function, and the event
-- saying it is covered; true when it was not covered before, NULL when tracking does not cover it. The triggers are attached by its owner
-- (the event trigger @schema@_capture_partitions, as the role that ran the command), who must hold
-- the maintainer role to run this, and prove first that it owns the partition (_check_owner): a
-- maintainer that owns neither may not record that it is covered, nor clear the tree's baseline.
CREATE OR REPLACE FUNCTION @schema@._cover_partition(target oid, proof uuid DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- the names it records and keeps, whoever calls it (tests/test_trust_attacks_70.py)
AS $$
DECLARE
    t @schema@.tracked_tables := @schema@._tracking_of(target);
    problem text := @schema@._tree_problem(target);
BEGIN
    PERFORM @schema@._check_owner(target, proof);
    IF t.relid IS NULL OR t.relid = target THEN
        RETURN NULL;  -- tracking does not cover it
    ELSIF problem IS NOT NULL THEN
        RAISE EXCEPTION 'cannot capture % as part of tracked table %: %', target::regclass, t.table_name, problem
            USING ERRCODE = 'PA008';
    END IF;
    -- Covered: its function and its four triggers in place. A function alone is not: the installer's
    -- refresh makes one for every partition of a tracked tree before it attaches the triggers of
    -- those added while the event triggers were off (tests/test_trust_attacks_105.py, p6 and p8).
    IF @schema@._capture_problem(target) IS NULL THEN
        RETURN false;
    END IF;
    PERFORM @schema@._generate_capture(target);
    -- Rows it brings (ALTER TABLE ... ATTACH PARTITION of a table with rows) arrive with no event: a
    -- baseline no longer shows every row of the table, so a key without events is no longer known
    -- to be absent. A new, empty partition has no pages.
    IF t.baseline_at IS NOT NULL AND pg_relation_size(target) > 0 THEN
        UPDATE @schema@.tracked_tables x SET baseline_at = NULL WHERE x.relid = t.relid;
    END IF;
    PERFORM @schema@._record('audit.tracked_partition_added', NULL, NULL, NULL, 'table', target::regclass::text,
                             jsonb_build_object('table', t.table_name, 'kind_prefix', t.kind_prefix), 'success', NULL, NULL);
    RETURN true;
END
$$;
COMMENT ON FUNCTION @schema@._cover_partition(oid, uuid) IS
    'Generates the capture function of a new partition of a tracked table and records audit.tracked_partition_added.';

-- Attaches the four capture triggers to one table, as its owner (attaching a trigger needs it).
CREATE OR REPLACE FUNCTION @schema@._attach_capture(target oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text := @schema@._capture_function(target);
BEGIN
    PERFORM @schema@._refuse_merge(target);  -- first: each trigger made is checked with the rest
    EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_capture_insert AFTER INSERT ON %s'
                   ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()', target::regclass, fn);
    EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_capture_update AFTER UPDATE ON %s'
                   ' REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION %s()', target::regclass, fn);
    EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_capture_delete AFTER DELETE ON %s'
                   ' REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()', target::regclass, fn);
    EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_capture_truncate BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@_capture._capture_truncate()', target::regclass);
END
$$;
COMMENT ON FUNCTION @schema@._attach_capture(oid) IS 'Attaches the capture triggers to a table (run as its owner).';

-- A MERGE that moves rows between partitions passes them to no transition table on PostgreSQL 15.18
-- and earlier minor releases of 15 to 17 (fixed upstream in November 2026): the capture would never
-- see them. PostgreSQL refuses MERGE on a table with any rule, so a partitioned table tracking
-- covers gets one that does nothing (a DELETE whose condition is false does nothing more).
CREATE OR REPLACE FUNCTION @schema@._refuse_merge(target oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = target AND c.relkind = 'p')
       AND NOT EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = target AND w.rulename = '@schema@_no_merge') THEN
        EXECUTE format('CREATE RULE @schema@_no_merge AS ON DELETE TO %s WHERE false DO ALSO NOTHING', target::regclass);
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_merge(oid) IS
    'Gives a partitioned table a rule that does nothing, so that PostgreSQL refuses MERGE on it (run as its owner).';

DROP FUNCTION IF EXISTS @schema@.enable_tracking(regclass, text[], text[], text, boolean, text);  -- before baseline
CREATE OR REPLACE FUNCTION @schema@.enable_tracking(
    target regclass,
    exclude_columns text[] DEFAULT '{}',
    redact_columns text[] DEFAULT '{}',
    tenant_column text DEFAULT NULL,
    skip_noop_updates boolean DEFAULT true,
    kind_prefix text DEFAULT NULL,
    baseline boolean DEFAULT false
)
RETURNS @schema@.tracked_tables
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- the names it records and keeps: the session's setting would quote them
AS $$
#variable_conflict use_variable
DECLARE
    entry @schema@.tracked_tables;
    part oid;
    proof uuid := gen_random_uuid();  -- the key of this call's proofs (_check_owner)
BEGIN
    entry.relid := target;
    -- A table tracked already keeps its prefix unless another is given: renamed since, its name is
    -- no longer its prefix (tests/test_trust_attacks_70.py).
    entry.kind_prefix := coalesce(kind_prefix, (SELECT t.kind_prefix FROM @schema@.tracked_tables t WHERE t.relid = target),
                                  (SELECT n.nspname || '.' || c.relname FROM pg_class c
                                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target));
    entry.exclude_columns := exclude_columns;
    entry.redact_columns := redact_columns;
    entry.tenant_column := tenant_column;
    entry.skip_noop_updates := skip_noop_updates;
    entry.exclude_columns := coalesce(entry.exclude_columns, '{}');
    entry.redact_columns := coalesce(entry.redact_columns, '{}');
    PERFORM @schema@._check_trackable(entry);  -- what cannot be tracked is said before who may not
    PERFORM @schema@._prove_owner(target, proof);  -- and who may not, before the lock is awaited
    -- No column, partition or type may change under the checks and the generated functions (a column
    -- of a user's type, added meanwhile, would otherwise be converted inline).
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', target);
    -- Its partitions as the lock holds them: one detached while the lock was awaited is not proved (its
    -- proof would be left), one added is (tests/test_trust_attacks_109.py, c8 and c9).
    PERFORM @schema@._prove_owner(c, proof) FROM @schema@._capture_tables(target) c WHERE c <> target;
    entry := @schema@._register_tracking(entry, proof);  -- checks everything, generates the capture functions
    FOR part IN SELECT * FROM @schema@._capture_tables(target) LOOP
        PERFORM @schema@._attach_capture(part);
    END LOOP;
    IF baseline THEN
        -- The sandbox reads the rows (sql/63_baseline.sql), allowed to for this call only.
        FOR part IN SELECT * FROM @schema@._capture_tables(target) LOOP
            IF NOT has_schema_privilege('@schema@_sandbox', (SELECT c.relnamespace FROM pg_class c WHERE c.oid = part),
                                        'USAGE') THEN
                RAISE EXCEPTION 'cannot take a baseline of %: the role @schema@_sandbox may not use its schema', part::regclass
                    USING ERRCODE = 'PA008',
                          HINT = format('The schema''s owner can allow it: GRANT USAGE ON SCHEMA %I TO @schema@_sandbox.',
                                        (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                          WHERE c.oid = part));
            END IF;
            EXECUTE format('GRANT SELECT ON %s TO @schema@_sandbox', part::regclass);
        END LOOP;
        PERFORM @schema@._prove_owner(c, proof) FROM @schema@._capture_tables(target) c;  -- _take_baseline asks again
        PERFORM @schema@_capture._take_baseline(target, proof);
        FOR part IN SELECT * FROM @schema@._capture_tables(target) LOOP
            EXECUTE format('REVOKE SELECT ON %s FROM @schema@_sandbox', part::regclass);
        END LOOP;
        entry := @schema@._tracking_of(target);
    END IF;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION @schema@.enable_tracking(regclass, text[], text[], text, boolean, text, boolean) IS
    'Captures every INSERT, UPDATE, DELETE and TRUNCATE on a table (and its partitions) from now on '
    '(idempotent; calling again changes the options); with baseline, first records a <prefix>.baseline event '
    'for each row it holds. Caller: the maintainer role, owning the table.';

CREATE OR REPLACE FUNCTION @schema@.disable_tracking(target regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- the names it records and keeps: the session's setting would quote them
AS $$
DECLARE
    tables oid[] := ARRAY(SELECT @schema@._capture_tables(target));
    tracked boolean := EXISTS (SELECT 1 FROM @schema@.tracked_tables WHERE relid = target);
    rel oid;
    op text;
BEGIN
    -- Out of the catalogue first: the event triggers guard the triggers of tracked tables only.
    IF tracked THEN
        PERFORM @schema@._unregister_tracking(target, 'audit.tracking_disabled', @schema@._prove_owner(target));
    END IF;
    FOREACH rel IN ARRAY tables LOOP
        FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', '@schema@_capture_' || op, rel::regclass);
        END LOOP;
        EXECUTE format('DROP RULE IF EXISTS @schema@_no_merge ON %s', rel::regclass);
        IF tracked THEN  -- granted by releases before 0.2, which counted the rows of a TRUNCATE
            EXECUTE format('REVOKE SELECT ON %s FROM @schema@_capture', rel::regclass);
        END IF;
    END LOOP;
    RETURN tracked;
END
$$;
COMMENT ON FUNCTION @schema@.disable_tracking(regclass) IS
    'Stops capturing a table and its partitions (idempotent); returns whether it was tracked. Caller: the '
    'maintainer, owning the table.';
