-- Schema changes on tracked tables: event triggers (created by the installer when it runs as a
-- superuser, see sql/superuser/) follow renames, keep the capture functions in step with the
-- columns, cover partitions created or attached later, forget dropped tables (recording that they
-- went), and refuse any change that would leave a tracked table, or a partition of one, without
-- its capture. Each looks only at the tables the command touched, and those made of a type it
-- changed: a table whose capture is broken blocks changes to itself and the types it is made of
-- (whoever owns them: docs/capture.md), never to the rest of the database.

-- The names a tracked table's redacted, excluded, key and tenant columns had, by the log's record of
-- each change to its options since `since` (audit.tracked_table_altered, which only pgaudit_py
-- writes), each under the option it was in: a hidden name renamed away or dropped stays hidden
-- (_former_hidden_names), and a key or tenant name goes to no other column (_refuse_lost_names).
CREATE OR REPLACE FUNCTION @schema@._former_names(prefix text, since timestamptz)
RETURNS TABLE (name text, option text, place bigint)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT n.name, o.option, n.place  -- place: its place in the array (the key's order), 1 for the tenant
      FROM @schema@.events e,
           LATERAL (VALUES ('redact_columns'), ('exclude_columns'), ('key_columns'), ('tenant_column')) AS o(option),
           LATERAL (SELECT x, k FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(e.payload -> 'before' -> o.option) = 'array'
                                                                    THEN e.payload -> 'before' -> o.option END)
                                     WITH ORDINALITY AS a(x, k)
                    UNION ALL
                    SELECT e.payload -> 'before' ->> o.option, 1 WHERE jsonb_typeof(e.payload -> 'before' -> o.option) = 'string'
                   ) AS n(name, place)
     WHERE e.kind = 'audit.tracked_table_altered' AND e.origin = 'system' AND e.target_type = 'table'
       AND e.payload -> 'before' ->> 'kind_prefix' = prefix AND e.occurred_at >= since
$$;
COMMENT ON FUNCTION @schema@._former_names(text, timestamptz) IS
    'Names a tracked table''s redacted, excluded, key and tenant columns had since a time, by the log''s '
    'audit.tracked_table_altered events.';

-- The names a tracked table's redacted and excluded columns had (_former_names): each under one
-- option, redaction first.
CREATE OR REPLACE FUNCTION @schema@._former_hidden_names(prefix text, since timestamptz)
RETURNS TABLE (name text, option text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT ON (f.name) f.name, f.option FROM @schema@._former_names(prefix, since) f
     WHERE f.option IN ('redact_columns', 'exclude_columns')
     ORDER BY f.name, f.option DESC
$$;
COMMENT ON FUNCTION @schema@._former_hidden_names(text, timestamptz) IS
    'Names a tracked table''s redacted and excluded columns had since a time (_former_names), redaction first.';

-- Re-derive a tracked table's names from its column numbers and record the change when anything
-- moved; regenerate the capture functions of the table and its partitions when asked (a column
-- added or retyped changes what they do) or when the options changed.
CREATE OR REPLACE FUNCTION @schema@._refresh_tracking(target oid, regenerate boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables;
    fresh @schema@.tracked_tables;
BEGIN
    SELECT * INTO t FROM @schema@.tracked_tables WHERE relid = target;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = target) THEN
        RETURN;
    END IF;
    fresh := t;
    fresh.table_name := t.relid::regclass::text;
    fresh.key_columns := @schema@._key_columns(t.relid);
    fresh.exclude_columns := @schema@._attnames(t.relid, t.exclude_attnums);
    fresh.redact_columns := @schema@._attnames(t.relid, t.redact_attnums);
    -- A column now under a name a redacted or excluded column had since the table's tracking was last
    -- enabled (renamed away, or dropped) is redacted or excluded too: else the table's owner could
    -- move what the application writes under that name out of redaction (trial 84, o12).
    SELECT fresh.redact_columns || coalesce(array_agg(f.name ORDER BY f.name) FILTER (WHERE f.option = 'redact_columns'), '{}'),
           fresh.exclude_columns || coalesce(array_agg(f.name ORDER BY f.name) FILTER (WHERE f.option = 'exclude_columns'), '{}')
      INTO fresh.redact_columns, fresh.exclude_columns
      FROM @schema@._former_hidden_names(t.kind_prefix, t.enabled_at) f
     WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.relid AND a.attname = f.name AND a.attnum > 0
                                                  AND NOT a.attisdropped AND a.attnum <> ALL (t.redact_attnums || t.exclude_attnums))
       AND f.name <> ALL (coalesce(@schema@._key_columns(t.relid), '{}'))
       AND f.name IS DISTINCT FROM (@schema@._attnames(t.relid, ARRAY[t.tenant_attnum]))[1];
    fresh.exclude_attnums := @schema@._attnums(t.relid, fresh.exclude_columns);
    fresh.redact_attnums := @schema@._attnums(t.relid, fresh.redact_columns);
    fresh.tenant_column := (@schema@._attnames(t.relid, ARRAY[t.tenant_attnum]))[1];
    fresh.tenant_attnum := CASE WHEN fresh.tenant_column IS NOT NULL THEN t.tenant_attnum END;
    -- A table given a key: its baseline's images name no row by it, so they no longer say which
    -- rows were there (row_state_as_of would call a row there all along absent; trial 96, b6).
    IF t.key_columns IS NULL AND fresh.key_columns IS NOT NULL THEN
        fresh.baseline_at := NULL;
    END IF;
    IF fresh IS DISTINCT FROM t THEN
        UPDATE @schema@.tracked_tables SET
            baseline_at = fresh.baseline_at,
            table_name = fresh.table_name, key_columns = fresh.key_columns,
            exclude_columns = fresh.exclude_columns, redact_columns = fresh.redact_columns,
            tenant_column = fresh.tenant_column, exclude_attnums = fresh.exclude_attnums,
            redact_attnums = fresh.redact_attnums, tenant_attnum = fresh.tenant_attnum
         WHERE relid = t.relid;
        UPDATE @schema@.kind_prefixes SET table_name = fresh.table_name WHERE relid = t.relid;
        PERFORM @schema@._record('audit.tracked_table_altered', NULL, NULL, NULL, 'table', fresh.table_name,
                                 jsonb_build_object('before', @schema@._tracking_options(t),
                                                    'after', @schema@._tracking_options(fresh)),
                                 'success', NULL, NULL);
    ELSIF NOT regenerate THEN
        RETURN;
    END IF;
    -- Functions only: a partition's triggers are attached by _cover_partitions, as its owner.
    PERFORM @schema@._generate_capture(c) FROM @schema@._capture_tables(t.relid) c;
END
$$;
COMMENT ON FUNCTION @schema@._refresh_tracking(oid, boolean) IS
    'Follows renames and dropped columns of a tracked table (recording audit.tracked_table_altered) and '
    'regenerates its capture functions.';

-- Refuses (PA008) a change after which a tracked table's tenant column or key can no longer name one
-- tenant or row; enable_tracking refuses such a table (PA005):
-- - it holds json (a column retyped, a json attribute added to its composite type): a json value may
--   be one no row image holds, replaced by a marker, whose text would name no tenant and no row
--   (tests/test_trust_attacks_80.py, r8);
-- - it is made of a type with a dropped attribute (the key moved to such a column, or such a column
--   added as the key): a unique index built before the drop may still hold two rows whose keys now
--   print alike and compare equal (tests/test_trust_attacks_83.py, d6, d7, d13, d14).
CREATE OR REPLACE FUNCTION @schema@._refuse_unnamable_names(target oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    names text[] := ARRAY(SELECT unnest(coalesce(t.key_columns, '{}') || t.tenant_column)
                            FROM @schema@.tracked_tables t WHERE t.relid = target);
    json_held text[] := ARRAY(SELECT quote_ident(c) FROM unnest(names) c WHERE c = ANY (@schema@._json_columns(target)));
    dropped_held text[] := ARRAY(SELECT quote_ident(c) FROM unnest(names) c
                                  WHERE c = ANY (@schema@._columns_with_dropped_attributes(target)));
    tenant_unfit text := (SELECT quote_ident(t.tenant_column) FROM @schema@.tracked_tables t
                           WHERE t.relid = target AND t.tenant_column = ANY (@schema@._columns_unfit_for_tenant(target)));
BEGIN
    IF cardinality(json_held) > 0 THEN
        RAISE EXCEPTION 'cannot change % so that its tenant column or key (%) holds json: its value may be one no row '
                        'image holds, whose marker would name no tenant and no row', target::regclass,
                        array_to_string(json_held, ', ')
            USING ERRCODE = 'PA008';
    END IF;
    IF cardinality(dropped_held) > 0 THEN
        RAISE EXCEPTION 'cannot change % so that its tenant column or key (%) is made of a type with a dropped attribute: '
                        'values that differed only in it print alike, naming two rows or tenants as one', target::regclass,
                        array_to_string(dropped_held, ', ')
            USING ERRCODE = 'PA008', HINT = 'Give the column a type made anew without the dropped attribute.';
    END IF;
    IF tenant_unfit IS NOT NULL THEN
        RAISE EXCEPTION 'cannot change % so that its tenant column % is jsonb or made of an array: two tenants would '
                        'print alike ("1" and 1, ''{1,2}'' and ''[0:1]={1,2}'')', target::regclass, tenant_unfit
            USING ERRCODE = 'PA008';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_unnamable_names(oid) IS
    'Raises PA008 when a tracked table''s tenant column or key holds json, or is made of a type with a dropped attribute, '
    'or its tenant column is jsonb or made of an array (called by the event triggers).';
DROP FUNCTION IF EXISTS @schema@._refuse_json_names(oid);
DROP FUNCTION IF EXISTS @schema@._refuse_dropped_attribute_names(oid);

-- Refuses (PA008) a change that takes from a tracked table what its tracking names by column:
-- - its tenant column dropped: its rows' events would be filed under the tenant a session claims;
-- - with keys, a key that changes other than by a rename (dropped, moved, widened, reordered): the
--   events name rows by the key, so the old events would name other rows under the new one.
-- - a name the key or tenant column had, given to another column (trial 87, k11, k12);
-- - a hidden column (or one under a former hidden name) made the key or tenant column (trial 86).
-- (tests/test_trust_attacks_84.py, k27, k30.) A table without a key may be given one. (A redacted or
-- excluded column dropped or renamed is followed instead: see _former_hidden_names.)
CREATE OR REPLACE FUNCTION @schema@._refuse_lost_names(target oid, keys boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables;
    hidden text[];
    taken text[];
    former_hidden text[];  -- the names read once from the log (_former_names), for both checks below
    former_keys text[];
    former_places bigint[];
    former_tenants text[];
BEGIN
    SELECT * INTO t FROM @schema@.tracked_tables WHERE relid = target;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = target) THEN
        RETURN;
    END IF;
    SELECT coalesce(array_agg(f.name) FILTER (WHERE f.option IN ('redact_columns', 'exclude_columns')), '{}'),
           coalesce(array_agg(f.name) FILTER (WHERE f.option = 'key_columns'), '{}'),
           coalesce(array_agg(f.place) FILTER (WHERE f.option = 'key_columns'), '{}'),
           coalesce(array_agg(f.name) FILTER (WHERE f.option = 'tenant_column'), '{}')
      INTO former_hidden, former_keys, former_places, former_tenants
      FROM @schema@._former_names(t.kind_prefix, t.enabled_at) f;
    IF t.tenant_attnum IS NOT NULL AND cardinality(@schema@._attnames(target, ARRAY[t.tenant_attnum])) = 0 THEN
        RAISE EXCEPTION 'cannot drop the tenant column % of tracked table %: its rows'' events would be filed under '
                        'the tenant a session claims', quote_ident(t.tenant_column), t.table_name
            USING ERRCODE = 'PA008', HINT = 'Use disable_tracking first.';
    END IF;
    -- A key or tenant column new to the tracking (a key given, a column renamed into either) that is
    -- redacted or excluded, or named as one was since tracking was last enabled: every event carries
    -- the key and the tenant in the clear (trial 86, o1 to o3). Not the column excluded as the key or
    -- tenant column all along, renamed (back) under its own former name: a key changes here by renames
    -- only, once the table has one, and the tenant column is followed by number.
    hidden := ARRAY(SELECT quote_ident(c)
                      FROM unnest(ARRAY(SELECT unnest(coalesce(@schema@._key_columns(target), '{}'))
                                        EXCEPT SELECT unnest(coalesce(t.key_columns, '{}')))
                                  || ARRAY(SELECT n FROM unnest(@schema@._attnames(target, ARRAY[t.tenant_attnum])) n
                                            WHERE n IS DISTINCT FROM t.tenant_column)) c
                      JOIN pg_attribute a ON a.attrelid = target AND a.attname = c
                     WHERE (c = ANY (t.redact_columns || t.exclude_columns)
                            OR c = ANY (former_hidden))
                       AND NOT (a.attnum = ANY (t.exclude_attnums)
                                AND (t.key_columns IS NOT NULL OR a.attnum IS NOT DISTINCT FROM t.tenant_attnum)));
    IF cardinality(hidden) > 0 THEN
        RAISE EXCEPTION 'cannot make % the key or tenant column of tracked table %: it is redacted or excluded, or named as '
                        'one was, and every event carries the key and the tenant in the clear', array_to_string(hidden, ', '),
                        t.table_name
            USING ERRCODE = 'PA008', HINT = 'Use disable_tracking first.';
    END IF;
    -- A name the key or tenant column had since tracking was last enabled, now another column's: the
    -- application writes under it what it takes to be the key or the tenant, and the rows would be
    -- named, or filed, by the column renamed away (trial 87, k11, k12), or a key's values in another
    -- order (two of its columns' names swapped; trial 89, f10). A column renamed back is itself: the
    -- key's column in the same place (the key's order never changes: _refuse_lost_names with keys).
    taken := ARRAY(SELECT DISTINCT quote_ident(f.name)
                     FROM (SELECT k.name, k.place FROM unnest(former_keys, former_places) AS k(name, place)
                           UNION ALL
                           SELECT n, NULL FROM unnest(former_tenants) AS n) f
                     JOIN pg_attribute a ON a.attrelid = target AND a.attname = f.name AND a.attnum > 0 AND NOT a.attisdropped
                    WHERE (f.place IS NOT NULL AND (@schema@._key_columns(target))[f.place] IS DISTINCT FROM a.attname)
                       OR (f.place IS NULL AND a.attnum IS DISTINCT FROM t.tenant_attnum));
    IF cardinality(taken) > 0 THEN
        RAISE EXCEPTION 'cannot give % of tracked table % to another column: the key or tenant column had it, and what is '
                        'written under it would not name the row or its tenant', array_to_string(taken, ', '), t.table_name
            USING ERRCODE = 'PA008', HINT = 'Use disable_tracking first.';
    END IF;
    IF keys AND t.key_columns IS NOT NULL AND @schema@._key_columns(target) IS DISTINCT FROM t.key_columns THEN
        RAISE EXCEPTION 'cannot change the key of tracked table % (%): its events name rows by the key, and those '
                        'before the change would name other rows under the new one', t.table_name,
                        array_to_string(ARRAY(SELECT quote_ident(c) FROM unnest(t.key_columns) c), ', ')
            USING ERRCODE = 'PA008',
                  HINT = 'Use disable_tracking first: row_as_of and row_state_as_of answer nothing from before its end.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_lost_names(oid, boolean) IS
    'Raises PA008 when a tracked table''s tenant column is dropped or (with keys) its key changed (called by the event '
    'triggers).';

-- Refuses (PA008) a change after which a tracked table's key or tenant column reads otherwise with
-- no row event, by what tracking last took them to be made of (tracked_tables.name_types), and takes
-- any other change (a varchar widened, an enum's value added, a key given) as the new state: a retype
-- that rewrites nothing (int to oid: -1 reads 4294967295; timestamp to timestamptz: a time gains
-- '+00:00'), a composite's attribute added or retyped, an enum's value renamed (two swapped would
-- file each tenant's rows under the other's name). Trial 86, k19; trial 82, n16.
CREATE OR REPLACE FUNCTION @schema@._take_name_types(target oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables;
    made_of jsonb;
    what text;
BEGIN
    SELECT * INTO t FROM @schema@.tracked_tables WHERE relid = target;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = target) THEN
        RETURN;
    END IF;
    made_of := @schema@._name_types(target, t.tenant_attnum);
    IF made_of IS NOT DISTINCT FROM t.name_types THEN
        RETURN;
    END IF;
    what := @schema@._name_type_changes(target, t.name_types, made_of);
    IF what IS NOT NULL THEN
        RAISE EXCEPTION 'cannot change what the key or tenant column of tracked table % is made of (%): its stored values '
                        'would read otherwise, naming rows or tenants apart from their events', t.table_name, what
            USING ERRCODE = 'PA008', HINT = 'Use disable_tracking first.';
    END IF;
    UPDATE @schema@.tracked_tables x SET name_types = made_of WHERE x.relid = target;
END
$$;
COMMENT ON FUNCTION @schema@._take_name_types(oid) IS
    'Raises PA008 when what a tracked table''s key or tenant column is made of changed since tracking took it '
    '(tracked_tables.name_types: a retype without a rewrite, a composite''s attributes, an enum''s value renamed); '
    'else takes it anew.';

-- Refuses (PA008) dropping or renaming an attribute of a type (a composite type's, or a table's or
-- view's row type) that a tracked table's key or tenant column is made of: values that differed only
-- in a dropped one would print alike, naming two rows, or two tenants, as one (trial 81, j10); a
-- rename changes every value's name with no row event, and two swapped name each row as the other
-- (trial 86, k21 to k23).
DROP FUNCTION IF EXISTS @schema@._refuse_dropped_name_attribute(oid, oid[]);
CREATE OR REPLACE FUNCTION @schema@._refuse_name_attribute_change(typ oid, tables oid[], verb text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    held text[] := ARRAY(SELECT DISTINCT format('%s.%s', c::regclass, quote_ident(k))
                           FROM unnest(tables) c, @schema@._tracking_of(c) t,
                                unnest(coalesce(t.key_columns, '{}') || t.tenant_column) k
                          WHERE k = ANY (@schema@._columns_made_of(c, typ)));
BEGIN
    IF cardinality(held) > 0 AND verb = 'drop' THEN
        RAISE EXCEPTION 'cannot drop an attribute of %: the tenant column or key % of a tracked table is made of it, '
                        'and values that differed only in it would name two rows or tenants as one', typ::regtype,
                        array_to_string(held, ', ')
            USING ERRCODE = 'PA008',
                  HINT = 'Give the column a type without the attribute first (enable_tracking refuses a tenant column or key '
                         'made of a type with a dropped attribute).';
    ELSIF cardinality(held) > 0 THEN
        RAISE EXCEPTION 'cannot rename an attribute of %: the tenant column or key % of a tracked table is made of it, '
                        'and its values print the names: every row or tenant would be named anew, with no row event',
                        typ::regtype, array_to_string(held, ', ')
            USING ERRCODE = 'PA008', HINT = 'Use disable_tracking first.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_name_attribute_change(oid, oid[], text) IS
    'Raises PA008 when a tracked table''s tenant column or key is made of a type that lost (verb drop) or renamed an '
    'attribute (called by the event triggers).';

-- Refuses (PA008) a change that leaves a table tracking covers without its whole capture, or a
-- rate-limited table (or a table under one) unlimited, naming what is wrong: both bind every role,
-- the table's owner included, but through the functions that switch them off. Given a trigger just
-- made, it checks what that trigger is part of: a partition of a table both tracked and limited gets
-- its capture triggers, then its rate-limit trigger, each checked as it comes (trial 110, l6); the
-- command's end checks the table whole.
CREATE OR REPLACE FUNCTION @schema@._refuse_switched_off(target oid, trigger_name text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text;
BEGIN
    IF (@schema@._tracking_of(target)).relid IS NOT NULL THEN
        problem := @schema@._capture_problem(target, trigger_name);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'the capture of % cannot be switched off or changed: %', target::regclass, problem
                USING ERRCODE = 'PA008', HINT = 'Use @schema@.disable_tracking to stop auditing a table.';
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM @schema@.rate_limits r WHERE r.scope = 'table')
       AND (trigger_name IS NULL OR trigger_name = '@schema@_rate_limit') THEN
        problem := @schema@._rate_limit_problem(target);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'the rate limit of % cannot be switched off or changed: %', target::regclass, problem
                USING ERRCODE = 'PA008', HINT = 'Use @schema@.disable_rate_limit to stop limiting a table.';
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_switched_off(oid, text) IS
    'Raises PA008 when a table tracking covers lacks its capture triggers as tracking made them (or one of them), '
    'or a rate-limited table (or one under it) its rate-limit trigger.';
DROP FUNCTION IF EXISTS @schema@._refuse_broken_capture(oid, text);

-- The tables tracking covers (tracked ones and their partitions) that still exist.
CREATE OR REPLACE FUNCTION @schema@._covered_tables()
RETURNS SETOF oid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c FROM @schema@.tracked_tables t, @schema@._capture_tables(t.relid) c
     WHERE EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c)
$$;
COMMENT ON FUNCTION @schema@._covered_tables() IS 'Every existing table that tracking covers.';

-- The command of a schema change, as recorded: the client's query string, whole up to 2,000
-- characters. A longer one (several commands, a long comment) is cut there, so its length and the
-- SHA-256 of the whole are recorded too: what was cut still shows as cut, and can be matched.
CREATE OR REPLACE FUNCTION @schema@._ddl_command()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('command', left(q, 2000))
           || CASE WHEN length(q) > 2000
                   THEN jsonb_build_object('command_chars', length(q),
                                           'command_sha256', encode(sha256(convert_to(q, 'UTF8')), 'hex'))
                   ELSE '{}' END
      FROM (SELECT coalesce(current_query(), '') AS q) AS c
$$;
COMMENT ON FUNCTION @schema@._ddl_command() IS
    'The running command for a schema change''s event: up to 2,000 characters, with the whole''s length and SHA-256 if longer.';

-- A table's columns as they are after a schema change, [[attnum, name, type], ...]: renames that
-- swap two columns show, whatever the command's text says.
CREATE OR REPLACE FUNCTION @schema@._columns_now(rel oid)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_array(a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum),
                    '[]')
      FROM pg_attribute a WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION @schema@._columns_now(oid) IS 'A table''s columns now: [[attnum, name, type], ...].';

-- A type as it is after a schema change: what an enum's values, a composite's attributes, a domain's
-- or a range's type beneath now read as, whatever the command's text says (a DO block may EXECUTE
-- any string).
CREATE OR REPLACE FUNCTION @schema@._type_now(typ oid)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
    SELECT CASE t.typtype
               WHEN 'e' THEN jsonb_build_object('labels', (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder)
                                                             FROM pg_enum e WHERE e.enumtypid = t.oid))
               WHEN 'c' THEN jsonb_build_object('attributes', @schema@._columns_now(t.typrelid))
               WHEN 'd' THEN jsonb_build_object('base', format_type(t.typbasetype, t.typtypmod))
               WHEN 'r' THEN jsonb_build_object('subtype', (SELECT format_type(g.rngsubtype, NULL)
                                                              FROM pg_range g WHERE g.rngtypid = t.oid))
               ELSE '{}' END
      FROM pg_type t WHERE t.oid = typ
$$;
COMMENT ON FUNCTION @schema@._type_now(oid) IS
    'A type now: {"labels": [...]}, {"attributes": [[attnum, name, type], ...]}, {"base": ...} or {"subtype": ...}.';

-- The covered tables made of each of these types, at any depth, found from the type up to them by
-- the dependencies PostgreSQL keeps (indexed): a walk from every covered table down
-- (_column_types) would cost every DDL command of the database as much as the largest type any
-- table owner builds under them.
CREATE OR REPLACE FUNCTION @schema@._covered_made_of(types oid[], all_covered oid[])
RETURNS TABLE (typ oid, tables oid[])
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE up(changed, typ) AS (
        SELECT a, a FROM unnest(types) a
        UNION
        SELECT u.changed, x.typ
          FROM up u,
               LATERAL (-- a domain, an array, a range or a multirange over it
                        SELECT d.objid FROM pg_depend d
                         WHERE d.refclassid = 'pg_type'::regclass AND d.refobjid = u.typ AND d.classid = 'pg_type'::regclass
                        UNION ALL
                        -- the row type of a composite type, table or view with an attribute of it
                        SELECT c.reltype FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
                         WHERE d.refclassid = 'pg_type'::regclass AND d.refobjid = u.typ
                           AND d.classid = 'pg_class'::regclass AND d.objsubid > 0 AND c.reltype <> 0) AS x(typ)
               -- Nothing temporary is beneath a covered table (_temporary_dependency): the types any
               -- session builds in its temporary schema over a type are not walked.
               JOIN pg_type y ON y.oid = x.typ
         WHERE y.typnamespace <> pg_my_temp_schema() AND NOT pg_is_other_temp_schema(y.typnamespace)
    )
    SELECT u.changed, array_agg(DISTINCT d.objid ORDER BY d.objid)
      FROM up u JOIN pg_depend d ON d.refclassid = 'pg_type'::regclass AND d.refobjid = u.typ
                                AND d.classid = 'pg_class'::regclass AND d.objsubid > 0
     WHERE d.objid = ANY (all_covered)
     GROUP BY u.changed
$$;
COMMENT ON FUNCTION @schema@._covered_made_of(oid[], oid[]) IS
    'For each of the types, the covered tables (of all_covered) whose columns are made of it at any depth.';

-- Records what a schema change did to covered tables without a row event: the covered tables whose
-- columns it changed (audit.tracked_table_ddl, with their columns now), and each changed type that
-- covered tables are made of (audit.tracked_type_altered, with the tables and the type now); each
-- with the command. Returns the covered tables so reached, to be checked and regenerated.
CREATE OR REPLACE FUNCTION @schema@._record_schema_change(columns_changed oid[], types_altered oid[],
                                                          all_covered oid[])
RETURNS oid[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reached oid[] := '{}';
    changed_type oid;
    covered oid[];
    rel oid;
BEGIN
    FOR changed_type, covered IN SELECT m.typ, m.tables FROM @schema@._covered_made_of(types_altered, all_covered) m LOOP
        reached := reached || covered;
        PERFORM @schema@._record('audit.tracked_type_altered', NULL, NULL, NULL, 'type', changed_type::regtype::text,
                                 jsonb_build_object('tables', (SELECT jsonb_agg(c::regclass::text ORDER BY c::regclass::text)
                                                                 FROM unnest(covered) c),
                                                    'now', @schema@._type_now(changed_type)) || @schema@._ddl_command(),
                                 'success', NULL, NULL);
    END LOOP;
    FOR rel IN SELECT DISTINCT c FROM unnest(columns_changed) c WHERE c = ANY (all_covered)
                                                               AND EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c) LOOP
        PERFORM @schema@._record('audit.tracked_table_ddl', NULL, NULL, NULL, 'table', rel::regclass::text,
                                 @schema@._ddl_command() || jsonb_build_object('columns', @schema@._columns_now(rel)),
                                 'success', NULL, NULL);
    END LOOP;
    RETURN reached;
END
$$;
COMMENT ON FUNCTION @schema@._record_schema_change(oid[], oid[], oid[]) IS
    'Records audit.tracked_table_ddl for covered tables whose columns changed and audit.tracked_type_altered for '
    'changed types covered tables are made of; returns the covered tables reached through the types.';

-- Refuses (PA008) a cast to json created or dropped for a type covered tables are made of: to_jsonb
-- prints the type through it, so every stored row of theirs would read differently, with no row
-- event, whoever's the cast's function.
CREATE OR REPLACE FUNCTION @schema@._refuse_json_cast(typ oid, tables oid[], dropped boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
BEGIN
    RAISE EXCEPTION 'type % % a cast to json: it would change what tracked table % records', typ::regtype,
        CASE WHEN dropped THEN 'would no longer have' ELSE 'has' END, tables[1]::regclass
        USING ERRCODE = 'PA008', HINT = 'Use @schema@.disable_tracking on the tables made of the type first.';
END
$$;
COMMENT ON FUNCTION @schema@._refuse_json_cast(oid, oid[], boolean) IS
    'Raises PA008: a cast to json created or dropped for a type covered tables are made of.';

-- The commands @schema@_ddl_end watches (sql/superuser/70_event_triggers.sql makes it from this
-- list; status reports a trigger made from an earlier one). CREATE SCHEMA too: its commands (CREATE
-- TABLE ... PARTITION OF a tracked table, say) run under its tag alone. Views' and materialized
-- views' row types are composites a column may be made of: their renames and added columns change
-- what stored values read as. (A function replaced to depend on something temporary: @schema@_temporary
-- refuses that, for every command.)
CREATE OR REPLACE FUNCTION @schema@._ddl_end_tags()
RETURNS text[]
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT ARRAY['ALTER FOREIGN TABLE', 'ALTER INDEX', 'ALTER MATERIALIZED VIEW', 'ALTER SCHEMA', 'ALTER TABLE',
                 'ALTER TRIGGER', 'ALTER TYPE', 'ALTER VIEW', 'CREATE CAST', 'CREATE FOREIGN TABLE', 'CREATE INDEX',
                 'CREATE SCHEMA', 'CREATE TABLE', 'CREATE TRIGGER', 'CREATE VIEW']
$$;
COMMENT ON FUNCTION @schema@._ddl_end_tags() IS 'The command tags the @schema@_ddl_end event trigger watches.';

CREATE OR REPLACE FUNCTION @schema@._on_ddl_end()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- the names it records and keeps: the session's setting would quote them
SET jit = off  -- runs for every DDL command of the database
AS $$
DECLARE
    cmd record;
    touched oid[] := '{}';   -- tables the command changed: their capture, and their descendants', is checked whole
    created oid[] := '{}';   -- triggers the command created: each checked on its own
    altered oid[] := '{}';   -- types the command changed: the tables made of them are recorded, and checked
    cast_sources oid[] := '{}';  -- types a cast to json was created for: refused when covered tables are made of them
    columns_altered oid[] := '{}';  -- covered tables whose columns a command changed: what their stored values read as may differ
    renamed oid[] := '{}';  -- types an attribute of which a command renamed (a composite's, a table's row type)
    typed oid[];
    all_covered oid[];  -- once, when a step needs it
    root oid;
    rel oid;
    refreshed boolean := false;
BEGIN
    FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        IF cmd.classid = 'pg_trigger'::regclass AND cmd.command_tag = 'CREATE TRIGGER' THEN
            created := created || cmd.objid;
        ELSIF cmd.classid = 'pg_trigger'::regclass THEN
            touched := touched || (SELECT g.tgrelid FROM pg_trigger g WHERE g.oid = cmd.objid);
        ELSIF cmd.classid = 'pg_class'::regclass THEN
            -- A composite type altered (ALTER TYPE ... CASCADE): the tables typed by it, whose columns it
            -- renames, adds and drops as an ALTER TABLE would.
            typed := ARRAY(SELECT c.oid FROM pg_class t JOIN pg_class c ON c.reloftype = t.reltype
                            WHERE t.oid = cmd.objid AND t.relkind = 'c');
            touched := touched || coalesce((SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = cmd.objid), cmd.objid)
                               || typed;
            columns_altered := columns_altered || typed;
            -- Its row type, and those of the tables typed by it, which another table's column may be
            -- made of (a composite type's, a table's, a view's); and those of the tables that inherit
            -- from them (children, partitions, foreign ones too), whose columns the command changed too.
            -- Not for an index (no row type), nor for a relation this command created (CREATE OR REPLACE VIEW
            -- is the one CREATE that changes an existing one): nothing made before it can be made of
            -- its row type.
            IF cmd.object_type <> 'index' AND cmd.command_tag NOT IN ('CREATE TABLE', 'CREATE FOREIGN TABLE', 'CREATE SCHEMA') THEN
                altered := altered || ARRAY(SELECT t.reltype FROM unnest(cmd.objid || typed) r, @schema@._inheritors(r) d
                                              JOIN pg_class t ON t.oid = d
                                             WHERE t.reltype <> 0);
            END IF;
            -- PostgreSQL renames a table's columns under any relation's spelling (ALTER VIEW, ALTER
            -- MATERIALIZED VIEW, ALTER FOREIGN TABLE ... RENAME COLUMN, ALTER TYPE ... RENAME
            -- ATTRIBUTE of its row type): every ALTER of a covered table is recorded.
            IF starts_with(cmd.command_tag, 'ALTER ') THEN
                columns_altered := columns_altered || cmd.objid;
            END IF;
            -- A column or attribute renamed (the one kind of command whose object is a column).
            IF starts_with(cmd.command_tag, 'ALTER ') AND cmd.objsubid > 0 THEN
                renamed := renamed || ARRAY(SELECT t.reltype FROM unnest(cmd.objid || typed) r, @schema@._inheritors(r) d
                                              JOIN pg_class t ON t.oid = d
                                             WHERE t.reltype <> 0);
            END IF;
        ELSIF cmd.classid = 'pg_type'::regclass THEN  -- ALTER TYPE: an enum's values renamed, say
            altered := altered || cmd.objid;
        ELSIF cmd.classid = 'pg_cast'::regclass THEN  -- a cast to json would decide what is recorded
            cast_sources := cast_sources || ARRAY(SELECT k.castsource FROM pg_cast k  -- WITH INOUT: to_jsonb ignores it
                                                   WHERE k.oid = cmd.objid AND k.casttarget = 'json'::regtype AND k.castfunc <> 0);
        ELSIF cmd.classid = 'pg_namespace'::regclass THEN  -- a renamed schema: its tables' names
            touched := touched || ARRAY(SELECT t.relid FROM @schema@.tracked_tables t JOIN pg_class c ON c.oid = t.relid
                                         WHERE c.relnamespace = cmd.objid);
        END IF;
    END LOOP;
    -- A type that covered tables are made of changed what their values read as, with no row event:
    -- recorded, and the tables checked and regenerated. So is a column renamed, dropped and added
    -- again, retyped without a rewrite (int to oid), by the table's ALTER TABLE or its type's ALTER
    -- TYPE.
    IF cardinality(columns_altered) > 0 OR cardinality(altered) > 0 THEN
        all_covered := ARRAY(SELECT @schema@._covered_tables());
        touched := touched || @schema@._record_schema_change(columns_altered, altered, all_covered);
    END IF;
    IF cardinality(renamed) > 0 THEN
        all_covered := coalesce(all_covered, ARRAY(SELECT @schema@._covered_tables()));
        PERFORM @schema@._refuse_name_attribute_change(m.typ, m.tables, 'rename')
          FROM @schema@._covered_made_of(renamed, all_covered) m;
    END IF;
    -- A cast to json decides how to_jsonb prints its type from then on: the rows of covered tables
    -- made of it would read differently with no row event, whoever's the cast's function.
    IF cardinality(cast_sources) > 0 THEN
        all_covered := coalesce(all_covered, ARRAY(SELECT @schema@._covered_tables()));
        PERFORM @schema@._refuse_json_cast(m.typ, m.tables) FROM @schema@._covered_made_of(cast_sources, all_covered) m;
    END IF;
    -- A change to a table reaches the tables that inherit from it too (a column added, retyped).
    touched := ARRAY(SELECT DISTINCT d FROM unnest(touched) a, @schema@._capture_tables(a) d);
    FOR root IN SELECT DISTINCT (@schema@._tracking_of(a)).relid FROM unnest(touched) a LOOP
        CONTINUE WHEN root IS NULL;
        PERFORM @schema@._refuse_lost_names(root, false);  -- a key's names change here by renames only
        PERFORM @schema@._refresh_tracking(root, true);
        PERFORM @schema@._refuse_unnamable_names(root);
        PERFORM @schema@._take_name_types(root);
        refreshed := true;
    END LOOP;
    IF refreshed THEN
        PERFORM @schema@._drop_stale_captures();  -- a partition detached
    END IF;
    FOR rel IN SELECT unnest(touched) LOOP
        PERFORM @schema@._refuse_switched_off(rel);
    END LOOP;
    FOR rel IN SELECT unnest(created) LOOP
        PERFORM @schema@._refuse_switched_off(g.tgrelid, g.tgname) FROM pg_trigger g WHERE g.oid = rel;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._on_ddl_end() IS
    'Event trigger (ddl_command_end): follows changes of tracked tables and refuses those that break their capture.';

-- A type's address as a session with quote_all_identifiers on writes it (pg_event_trigger_dropped_objects
-- spells a dropped object's address under the dropping session's settings).
CREATE OR REPLACE FUNCTION @schema@._quoted_type_address(typ oid)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = on
AS $$
    SELECT (pg_identify_object_as_address('pg_type'::regclass, typ, 0)).object_names
$$;
COMMENT ON FUNCTION @schema@._quoted_type_address(oid) IS
    'A type''s address names as a session with quote_all_identifiers on spells them.';

-- Nothing permanent may come to have something temporary beneath it (a function calling a session's
-- function, a domain whose default is one, a view's query, a text search configuration mapping a
-- temporary dictionary, a table typed by a temporary type, an extension in a temporary schema):
-- when that session ends, or discards it, PostgreSQL drops the temporary object with CASCADE, and the
-- permanent one with it, where no event trigger fires. Beneath a covered table, that takes columns,
-- or the table, with every value and no event. Every command of the database is checked, whatever its
-- tag, from the objects it created or altered down: a chain built in any order is refused at the link
-- that makes it reach something temporary. Temporary objects themselves are left alone.
CREATE OR REPLACE FUNCTION @schema@._refuse_temporary_beneath()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
SET jit = off  -- runs for every DDL command of the database
AS $$
DECLARE
    cmd record;
    beneath text;
BEGIN
    -- Triggers, policies, constraints, statistics, indexes and rules other than a view's query: nothing
    -- can be made of them, and each goes alone (a trigger on a session's function ends with the
    -- session; no column goes with it).
    FOR cmd IN SELECT c.classid, c.objid, c.object_type, c.object_identity FROM pg_event_trigger_ddl_commands() c
                WHERE c.objid >= 16384
                  AND NOT coalesce((pg_identify_object(c.classid, c.objid, 0)).schema ~ '^pg_temp(_[0-9]+)?$', false)
                  -- A temporary view's query; a rule that is no view's query (ON INSERT ... DO ALSO), which goes alone.
                  AND NOT EXISTS (SELECT 1 FROM pg_rewrite w JOIN pg_class r ON r.oid = w.ev_class
                                   WHERE c.classid = 'pg_rewrite'::regclass AND w.oid = c.objid
                                     AND (r.relpersistence = 't' OR w.ev_type <> '1'))
                  AND c.classid NOT IN ('pg_trigger'::regclass, 'pg_policy'::regclass, 'pg_constraint'::regclass,
                                        'pg_statistic_ext'::regclass)
                  AND c.object_type NOT IN ('index', 'index column') LOOP
        beneath := @schema@._temporary_beneath(cmd.classid, cmd.objid);
        IF beneath IS NOT NULL THEN
            RAISE EXCEPTION '% % would depend on %, which is temporary: it would be dropped with it when that session '
                            'ends, with no event', cmd.object_type, cmd.object_identity, beneath
                USING ERRCODE = 'PA008';
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_temporary_beneath() IS
    'Event trigger (ddl_command_end, every command): refuses a permanent object with something temporary beneath it.';

CREATE OR REPLACE FUNCTION @schema@._on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- the names it records and keeps: the session's setting would quote them
SET jit = off  -- runs for every DROP of the database
AS $$
DECLARE
    gone record;
    t @schema@.tracked_tables;
    rel oid;
    columns_dropped oid[];
    casts_dropped oid[];
    json_casts text[];  -- the source types' names, as the addresses of dropped casts to json spell them
    names_dropped oid[];  -- row types that lost an attribute
    all_covered oid[];
    own boolean;  -- the command dropped a column or constraint of the tracked table at hand
BEGIN
    FOR gone IN SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                 WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
                   AND d.objid IN (SELECT relid FROM @schema@.tracked_tables) LOOP
        PERFORM @schema@._unregister_tracking(gone.objid, 'audit.tracked_table_dropped');
    END LOOP;
    -- A dropped table's limits would otherwise be listed under its oid, which a new table may reuse.
    FOR gone IN SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                 WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
                   AND d.objid::text IN (SELECT target FROM @schema@.rate_limits WHERE scope = 'table') LOOP
        PERFORM @schema@._drop_rate_limit('table', gone.objid::text);
    END LOOP;
    -- A dropped partition's capture function goes (and is recorded).
    IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
                  AND to_regprocedure(@schema@._capture_function(d.objid) || '()') IS NOT NULL) THEN
        PERFORM @schema@._drop_stale_captures();
    END IF;
    -- A DROP ... CASCADE (of a type, domain, function, collation, extension, table, view, schema),
    -- or any command's cascade (ALTER TABLE ... DROP COLUMN ... CASCADE dropping a view whose row
    -- type a covered column is), may drop a covered table's column, and every row's value of it, or
    -- a column of a composite type, table or view whose row type a covered table's column is made
    -- of: recorded as @schema@_ddl_end records what the commands it sees do. The columns a command
    -- @schema@_ddl_end sees names itself (ALTER TABLE ... DROP COLUMN) are its to record, and so are
    -- the others of the same table its cascade drops (a generated column over the one named): one
    -- command, one record. Not a partition's: @schema@_ddl_end records the table the command names,
    -- and a partition's own generated column may go where its parent's plain one stays.
    columns_dropped := ARRAY(SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                              WHERE d.classid = 'pg_class'::regclass AND d.objsubid > 0
                                AND (TG_TAG <> ALL (@schema@._ddl_end_tags())
                                     OR NOT d.original
                                        AND (EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = d.objid)
                                             OR NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() o
                                                             WHERE o.original AND o.classid = 'pg_class'::regclass
                                                               AND o.objid = d.objid AND o.objsubid > 0))));
    -- A cast to json dropped (its source type still there): to_jsonb would print the type otherwise
    -- from then on. Its row is gone; it is named by its address, which is matched against the
    -- addresses of the covered tables' types, never parsed (a type's name is anyone's text). The
    -- address was written under the dropping session's quote_all_identifiers: both spellings match.
    -- Only a cast to json walks the covered tables' types (another role's casts walk nothing).
    json_casts := ARRAY(SELECT d.address_names[1] FROM pg_event_trigger_dropped_objects() d
                         WHERE d.classid = 'pg_cast'::regclass
                           AND d.address_args[1] IN ((pg_identify_object_as_address('pg_type'::regclass, 'json'::regtype, 0)).object_names[1],
                                                     (@schema@._quoted_type_address('json'::regtype))[1]));
    IF cardinality(json_casts) > 0 THEN
        all_covered := ARRAY(SELECT @schema@._covered_tables());
        casts_dropped := ARRAY(
            SELECT DISTINCT x.typ FROM unnest(all_covered) c, @schema@._column_types(c) x
             WHERE (pg_identify_object_as_address('pg_type'::regclass, x.typ, 0)).object_names[1] = ANY (json_casts)
                OR (@schema@._quoted_type_address(x.typ))[1] = ANY (json_casts));
    END IF;
    -- An attribute dropped from a type a tracked table's key or tenant column is made of, by any
    -- command (ALTER TYPE ... DROP ATTRIBUTE, ALTER TABLE ... DROP COLUMN of a row type's table, or
    -- of its parent).
    names_dropped := ARRAY(SELECT DISTINCT c.reltype FROM pg_event_trigger_dropped_objects() d JOIN pg_class c ON c.oid = d.objid
                            WHERE d.classid = 'pg_class'::regclass AND d.objsubid > 0 AND c.reltype <> 0);
    IF cardinality(names_dropped) > 0 THEN
        all_covered := coalesce(all_covered, ARRAY(SELECT @schema@._covered_tables()));
        PERFORM @schema@._refuse_name_attribute_change(m.typ, m.tables, 'drop')
          FROM @schema@._covered_made_of(names_dropped, all_covered) m;
    END IF;
    IF cardinality(columns_dropped) > 0 OR cardinality(casts_dropped) > 0 THEN
        all_covered := coalesce(all_covered, ARRAY(SELECT @schema@._covered_tables()));
        PERFORM @schema@._refuse_json_cast(m.typ, m.tables, true) FROM @schema@._covered_made_of(casts_dropped, all_covered) m;
        PERFORM @schema@._record_schema_change(
            columns_dropped, ARRAY(SELECT c.reltype FROM pg_class c WHERE c.oid = ANY (columns_dropped) AND c.reltype <> 0),
            all_covered);
    END IF;
    -- A dropped column or key index changes what the remaining tables capture.
    FOR t IN SELECT * FROM @schema@.tracked_tables
              WHERE EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                             WHERE d.object_type IN ('table column', 'index', 'table constraint')) LOOP
        -- Only a table this command dropped a column or constraint of: one whose tracking is out of
        -- step (changed with the event triggers off) blocks changes to itself, not to the rest.
        own := EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                        WHERE (d.classid = 'pg_class'::regclass AND d.objid = t.relid AND d.objsubid > 0)
                           OR (d.object_type = 'table constraint'
                               AND d.address_names[1:2] = ARRAY[(SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n
                                                                    ON n.oid = c.relnamespace WHERE c.oid = t.relid),
                                                                 (SELECT c.relname::text FROM pg_class c WHERE c.oid = t.relid)]));
        IF own THEN
            PERFORM @schema@._refuse_lost_names(t.relid, true);
        END IF;
        PERFORM @schema@._refresh_tracking(t.relid, EXISTS (
            SELECT 1 FROM pg_event_trigger_dropped_objects() d
             WHERE d.classid = 'pg_class'::regclass AND d.objid = t.relid AND d.objsubid > 0));
        IF own THEN
            PERFORM @schema@._take_name_types(t.relid);  -- the same: a stale kept state refuses its own table's changes
        END IF;
    END LOOP;
    -- A capture or rate-limit trigger dropped from a table that tracking or a limit still covers, or
    -- the rule that keeps MERGE off a partitioned one (_refuse_merge). The table is found in the
    -- catalogue by its names, not by to_regclass, which needs USAGE on its schema (the owner role
    -- may have none there: tests/test_trust_attacks_70.py).
    FOR rel IN SELECT DISTINCT c.oid
                 FROM pg_event_trigger_dropped_objects() d
                 JOIN pg_namespace n ON n.nspname = d.address_names[1]
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = d.address_names[2]
                WHERE (d.classid = 'pg_trigger'::regclass
                       AND (starts_with(d.address_names[3], '@schema@_capture_') OR d.address_names[3] = '@schema@_rate_limit'))
                   OR d.classid = 'pg_rewrite'::regclass LOOP
        CONTINUE WHEN rel IS NULL;
        PERFORM @schema@._refuse_switched_off(rel);
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._on_sql_drop() IS
    'Event trigger (sql_drop): forgets dropped tracked tables, partitions and their rate limits (recording it), '
    'and refuses dropping a capture trigger.';

-- Partitions that come to a tracked table (created or attached) get their capture triggers here, as
-- the role that ran the command: it owns them, where the audit owner cannot attach triggers to
-- another's table. (Plain inheritance children and foreign tables are left to @schema@_ddl_end,
-- which refuses them.) Runs for every CREATE TABLE and ALTER TABLE of the database, so it leaves at once for a
-- table that inherits nothing, and otherwise reads only the system catalogues, which every role may
-- (no name in the audit schema is looked up before it knows a table needs covering). A table counts
-- as covered when all four triggers call the capture functions: one of the same name calling
-- something else is replaced. Runs before @schema@_ddl_end (event triggers fire in name order),
-- which then checks the result.
CREATE OR REPLACE FUNCTION @schema@._cover_partitions()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off  -- the names it records and keeps: the session's setting would quote them
SET jit = off  -- runs for every CREATE and ALTER TABLE of the database: compiling would cost it 80 ms
AS $$
DECLARE
    under_tracked oid[];  -- partitions below a table carrying the capture triggers
    under_limited oid[];  -- partitions below a table carrying the rate-limit trigger
    part oid;
BEGIN
    WITH RECURSIVE involved AS (  -- the tables the command touched (an attached partition: its parent)
        SELECT DISTINCT d.objid AS relid FROM pg_event_trigger_ddl_commands() d
         WHERE d.classid = 'pg_class'::regclass
           AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = d.objid OR i.inhparent = d.objid)
    ), up(relid) AS (
        SELECT relid FROM involved
        UNION SELECT i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.relid
    ), tree(relid) AS (
        SELECT relid FROM up
        UNION SELECT i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.relid
    ), ancestors(of, relid) AS (  -- each partition of those trees, and everything above it
        SELECT t.relid, i.inhparent FROM tree t JOIN pg_class c ON c.oid = t.relid AND c.relkind IN ('r', 'p')
          JOIN pg_inherits i ON i.inhrelid = t.relid WHERE c.relispartition
        UNION SELECT a.of, i.inhparent FROM ancestors a JOIN pg_inherits i ON i.inhrelid = a.relid
    ), marks AS (  -- a captured ancestor calls its own capture function (a detached one keeps only
                   -- the TRUNCATE trigger); a limited one, the rate-limit trigger
        SELECT a.of, g.tgname FROM ancestors a JOIN pg_trigger g ON g.tgrelid = a.relid
          JOIN pg_proc f ON f.oid = g.tgfoid JOIN pg_namespace n ON n.oid = f.pronamespace
         WHERE (g.tgname = '@schema@_capture_insert' AND f.proname = '_capture_' || a.relid AND n.nspname = '@schema@_capture')
            OR (g.tgname = '@schema@_rate_limit' AND f.proname = '_rate_limit_trigger' AND n.nspname = '@schema@')
    )
    SELECT ARRAY(SELECT DISTINCT m.of FROM marks m WHERE m.tgname = '@schema@_capture_insert'),
           ARRAY(SELECT DISTINCT m.of FROM marks m WHERE m.tgname = '@schema@_rate_limit')
      INTO under_tracked, under_limited;

    FOR part IN
        WITH capture AS (
            SELECT f.oid, f.proname FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
             WHERE n.nspname = '@schema@_capture'
        )
        SELECT p FROM unnest(under_tracked) p
         WHERE (SELECT count(*) FROM pg_trigger g
                 WHERE g.tgrelid = p
                   AND ((g.tgname IN ('@schema@_capture_insert', '@schema@_capture_update', '@schema@_capture_delete')
                         AND g.tgfoid IN (SELECT oid FROM capture WHERE proname = '_capture_' || p))
                        OR (g.tgname = '@schema@_capture_truncate'
                            AND g.tgfoid IN (SELECT oid FROM capture WHERE proname = '_capture_truncate')))) < 4
    LOOP
        BEGIN
            -- NULL: tracking does not cover it (a table detached from a tracked one by a role that did
            -- not own it keeps a TRUNCATE trigger).
            -- proved with this role's rights: it must own the partition
            CONTINUE WHEN @schema@._cover_partition(part, @schema@._prove_owner(part)) IS NULL;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION '% would inherit from a tracked table: only a member of @schema@_maintainer owning it '
                            'may add it (its capture triggers must be attached)', part::regclass
                USING ERRCODE = 'PA008';
        END;
        PERFORM @schema@._attach_capture(part);
    END LOOP;
    -- A partition of a rate-limited table is limited with it: a statement naming it fires its own
    -- triggers only.
    -- One of the same name calling something else is replaced (@schema@_ddl_end then checks it whole).
    -- The deepest first: each trigger made is checked with what is below it (a partitioned table
    -- attached with partitions of its own: a statement trigger is not copied to them).
    FOR part IN SELECT p FROM unnest(under_limited) p
                 WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g JOIN pg_proc f ON f.oid = g.tgfoid
                                     JOIN pg_namespace n ON n.oid = f.pronamespace
                                    WHERE g.tgrelid = p AND g.tgname = '@schema@_rate_limit'
                                      AND f.proname = '_rate_limit_trigger' AND n.nspname = '@schema@')
                 ORDER BY (WITH RECURSIVE up(relid) AS (SELECT p UNION ALL
                                                        SELECT i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.relid)
                           SELECT count(*) FROM up) DESC LOOP
        BEGIN
            EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_rate_limit BEFORE INSERT OR UPDATE OR DELETE ON %s'
                           ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._rate_limit_trigger()', part::regclass);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION '% would be a partition of a rate-limited table: only a member of @schema@_maintainer '
                            'owning it may add it', part::regclass USING ERRCODE = 'PA008';
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._cover_partitions() IS
    'Event trigger (ddl_command_end, as the role running the DDL): attaches capture triggers to partitions '
    'that come to tracked tables.';

-- The function roles run no DDL: their functions run other roles' code (the sandbox, a user's casts)
-- or could be made to, and a role that owns a function can rewrite it, drop it, or make it run as
-- its caller. Only a member that SET ROLE to it may (the installer, the owner handing over capture
-- functions): inside a SECURITY DEFINER function nobody can SET ROLE.
CREATE OR REPLACE FUNCTION @schema@._refuse_function_role_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_user::text IN ('@schema@_capture', '@schema@_sealer', '@schema@_pruner', '@schema@_sandbox')
       AND current_setting('role') IS DISTINCT FROM current_user::text THEN
        RAISE EXCEPTION '% cannot be run as %: that role runs pgaudit_py''s functions and changes no schema',
                        tg_tag, current_user USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_function_role_ddl() IS
    'Event trigger (ddl_command_start): refuses any DDL run as a function role inside a function.';

-- ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY commits the partition as detach pending (its rows
-- gone from the parent's queries), waits for every transaction that may still see it, and only then
-- finishes, when the event triggers fire: cancelled in its wait (by its own statement_timeout, say),
-- it leaves the rows out of the tracked table with nothing recorded. Refused before it runs while a
-- tracked table has partitions. Nothing says then which table it names, so its text is read: it runs
-- only as a statement of its own, outside any transaction block, pipeline or function, so
-- current_query() is that statement, and a keyword has no other spelling than the word (a quoted one
-- is a name). And it opens its transaction: a statement after another that wrote (a transaction id
-- assigned) is not one, whatever its text says (a migration sent as one string, comments and all).
CREATE OR REPLACE FUNCTION @schema@._refuse_detach_concurrently()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_current_xact_id_if_assigned() IS NULL
       AND current_query() ~* E'\\mconcurrently\\M' AND current_query() ~* E'\\mdetach\\M'
       AND EXISTS (SELECT 1 FROM @schema@.tracked_tables t JOIN pg_inherits i ON i.inhparent = t.relid) THEN
        RAISE EXCEPTION 'DETACH PARTITION ... CONCURRENTLY is refused while a tracked table has partitions: cancelled '
                        'in its wait, it would leave a partition''s rows out of the table with no event'
            USING ERRCODE = 'PA008',
                  HINT = 'Detach without CONCURRENTLY (recorded), or use @schema@.disable_tracking first.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_detach_concurrently() IS
    'Event trigger (ddl_command_start, ALTER TABLE): refuses DETACH PARTITION ... CONCURRENTLY while a tracked '
    'table has partitions.';

-- ALTER TABLE ... ALTER COLUMN ... TYPE (and ALTER TYPE of a typed table's type) rewrites every row,
-- with USING whatever it likes, firing no row trigger: on a covered table the values would change
-- with no event. Refused; disabling tracking first says so in the log. On the log's own tables the
-- guards would not see it either (the chain's start in seal_state, a block, a pending event): refused
-- to every role, the installer's too.
CREATE OR REPLACE FUNCTION @schema@._refuse_rewrite()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target oid := pg_event_trigger_table_rewrite_oid();
BEGIN
    IF pg_event_trigger_table_rewrite_reason() & 4 <> 0  -- AT_REWRITE_COLUMN_REWRITE
       AND target IN (SELECT g FROM @schema@._guarded_tables() g) THEN
        RAISE EXCEPTION 'cannot change the type of a column of %: it rewrites rows that only the package''s functions write',
                        target::regclass USING ERRCODE = 'PA006';
    END IF;
    IF pg_event_trigger_table_rewrite_reason() & 4 <> 0  -- AT_REWRITE_COLUMN_REWRITE
       AND (@schema@._tracking_of(target)).relid IS NOT NULL THEN
        RAISE EXCEPTION 'cannot change the type of a column of %: it rewrites the rows without capturing them',
                        target::regclass USING ERRCODE = 'PA008',
            HINT = 'Call @schema@.disable_tracking first (it is recorded), then enable_tracking again.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_rewrite() IS
    'Event trigger (table_rewrite): refuses rewriting the columns of a table that tracking covers, or of the log''s tables.';
