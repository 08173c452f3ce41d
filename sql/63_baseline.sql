-- A baseline: one <prefix>.baseline event per row a table holds when tracking starts, so that its
-- history begins with what was there rather than with nothing.
--
-- The rows are read by the audit's own functions, not handed in by the caller: a baseline is
-- captured, as trustworthy as the triggers' events, and no maintainer can write one of its own
-- making. The capture role plans no query on the user's table (planning runs the owner's code:
-- immutable functions of constant arguments in index expressions and predicates, constraints and
-- statistics are folded): the sandbox, which holds no privilege, reads the rows and makes their
-- images (_baseline_images), and the capture role writes the events from those. Row-level
-- security is refused (policies would decide which rows the baseline shows). Writers are kept out
-- by enable_tracking's lock meanwhile, and the read takes its snapshot after that lock (READ
-- COMMITTED only), so the baseline comes after every change it shows and before every other.

-- The images of the rows of one table in a range of its pages, as the sandbox reads them (granted
-- SELECT by enable_tracking for the call): what runs while reading runs with no privilege. One
-- image a row, returned as they are read: the rows of 128 pages may hold gigabytes of TOASTed values,
-- more than one value (a jsonb holds 256 MB) or the backend's memory could.
SET ROLE @schema@_sandbox;
DROP FUNCTION IF EXISTS @schema@._baseline_images(oid, tid, tid);  -- it returned one jsonb array in earlier releases
CREATE FUNCTION @schema@._baseline_images(part oid, first_row tid, end_row tid)
RETURNS TABLE (j jsonb, jk jsonb)
LANGUAGE plpgsql
VOLATILE  -- it may deallocate prepared statements (below)
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
SET IntervalStyle = postgres
SET bytea_output = hex
SET lc_monetary = 'C'
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
SET quote_all_identifiers = off
AS $$
DECLARE
    read boolean := false;
    -- What the rollback below cannot undo, as it was before: the session's prepared statements and
    -- session advisory locks are not transactional. The table's code, run in the maintainer's
    -- session, could swap a statement the maintainer's client prepared (psycopg prepares a query it
    -- runs often) for one of its own, which the client would then run with the maintainer's rights.
    statements jsonb := (SELECT pg_catalog.jsonb_object_agg(s.name, pg_catalog.jsonb_build_array(s.prepare_time,
                                    s.statement, s.parameter_types::text, s.from_sql))
                           FROM pg_catalog.pg_prepared_statements s);
    locks text[] := ARRAY(SELECT pg_catalog.concat_ws('/', l.classid, l.objid, l.objsubid, l.mode)
                            FROM pg_catalog.pg_locks l
                           WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted);
    held text[];
    -- A json column (or an array, domain or composite type holding json) may hold what jsonb cannot
    -- (see _jsonb_takes, sql/60_capture.sql, which this role may not call): such a table is read
    -- column by column, and each value that may be one is converted on its own, its marker put in
    -- its place if it is one, and named in jk. Each is read as its JSON text (to_json, as the
    -- capture's markers are made: a domain's CHECK is not run again).
    json_cols name[];
    -- _jsonb_takes of the row's column %1$I, written out.
    takes constant text := 'pg_catalog.octet_length(pg_catalog.to_json(x.%1$I)::pg_catalog.text) OPERATOR(pg_catalog.<) 8000'
                           ' AND pg_catalog.to_json(x.%1$I)::pg_catalog.text OPERATOR(pg_catalog.!~)'
                           ' (pg_catalog.chr(92) || pg_catalog.chr(92) || ''[uU]'''
                           ' || CASE WHEN pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.=) ''UTF8'''
                           ' THEN ''(0000|[dD][89a-fA-F])'' ELSE '''' END || ''|[eE][-+]?[0-9]{4}'')';
    image jsonb;
    suspects text[];
    v jsonb;
    replaced text[];
    left_behind boolean := false;
    done boolean;
    stale record;
BEGIN
    -- In a subtransaction rolled back at once, as the capture functions call the sandbox
    -- (sql/60_capture.sql): what the table's code changed for the session (its folded functions
    -- may SET search_path, which outlives every SET clause, the capture role's baseline's too)
    -- goes with it, and only the images, this function's result, are kept (PL/pgSQL keeps the
    -- result outside the subtransaction). PA016 is raised and caught here only; raised by the
    -- table's code instead, it goes on.
    WITH RECURSIVE t(attnum, typ) AS (
        SELECT a.attnum, a.atttypid FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = part AND a.attnum > 0 AND NOT a.attisdropped
        UNION
        SELECT t.attnum, b.typ
          FROM t JOIN pg_catalog.pg_type y ON y.oid = t.typ,
               LATERAL (SELECT y.typbasetype WHERE y.typtype = 'd'
                        UNION ALL SELECT y.typelem
                         WHERE y.typelem <> 0 AND y.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc
                        UNION ALL SELECT c.atttypid FROM pg_catalog.pg_attribute c
                         WHERE y.typtype = 'c' AND c.attrelid = y.typrelid AND c.attnum > 0 AND NOT c.attisdropped
                       ) AS b(typ)
    )
    SELECT pg_catalog.array_agg(a.attname ORDER BY a.attnum) INTO json_cols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = part
       AND a.attnum IN (SELECT t.attnum FROM t WHERE t.typ = 'pg_catalog.json'::pg_catalog.regtype);
    BEGIN
        IF json_cols IS NULL THEN
            RETURN QUERY EXECUTE format('SELECT pg_catalog.to_jsonb(x.*), NULL::pg_catalog.jsonb FROM ONLY %s AS x'
                                        ' WHERE x.ctid >= $1 AND x.ctid < $2', part::regclass)
                USING first_row, end_row;
        ELSE
            FOR image, suspects IN EXECUTE format(
                'SELECT %s AS base, ARRAY[%s]::pg_catalog.text[] AS suspects FROM ONLY %s AS x'
                ' WHERE x.ctid >= $1 AND x.ctid < $2',
                (SELECT pg_catalog.string_agg(pg_catalog.format('pg_catalog.jsonb_build_object(%s)', c.pairs), ' || ')
                   FROM (SELECT pg_catalog.string_agg(pg_catalog.format(
                                    CASE WHEN a.attname = ANY (json_cols)
                                         THEN '%1$L, CASE WHEN ' || takes || ' THEN pg_catalog.to_jsonb(x.%1$I) END'
                                         ELSE '%1$L, x.%1$I' END, a.attname),
                                    ', ') AS pairs
                           FROM (SELECT a.attname, (pg_catalog.row_number() OVER (ORDER BY a.attnum) - 1) / 50 AS chunk
                                   FROM pg_catalog.pg_attribute a
                                  WHERE a.attrelid = part AND a.attnum > 0 AND NOT a.attisdropped) a
                          GROUP BY a.chunk) c),
                (SELECT pg_catalog.string_agg(pg_catalog.format(
                            'CASE WHEN NOT coalesce(' || takes || ', true) THEN pg_catalog.to_json(x.%1$I)::pg_catalog.text END', c),
                            ', ' ORDER BY o)
                   FROM pg_catalog.unnest(json_cols) WITH ORDINALITY AS u(c, o)),
                part::regclass) USING first_row, end_row LOOP
                replaced := '{}';
                FOR i IN 1 .. pg_catalog.cardinality(json_cols) LOOP
                    CONTINUE WHEN suspects[i] IS NULL;
                    BEGIN
                        v := pg_catalog.to_jsonb(suspects[i]::pg_catalog.json);
                    EXCEPTION WHEN untranslatable_character OR invalid_text_representation OR numeric_value_out_of_range
                                   OR statement_too_complex THEN
                        -- What _omitted makes (sql/14_wild_numbers.sql), which this role may not call.
                        v := pg_catalog.jsonb_build_object('$omitted', pg_catalog.jsonb_build_object(
                                 'bytes', pg_catalog.octet_length(suspects[i]),
                                 'sha256', pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(suspects[i], 'UTF8')), 'hex')));
                        replaced := replaced || json_cols[i]::text;
                    END;
                    image := image || pg_catalog.jsonb_build_object(json_cols[i], v);
                END LOOP;
                j := image;
                jk := pg_catalog.to_jsonb(replaced);
                RETURN NEXT;
            END LOOP;
        END IF;
        read := true;
        RAISE SQLSTATE 'PA016';
    EXCEPTION WHEN SQLSTATE 'PA016' THEN
        IF NOT read THEN
            RAISE;
        END IF;
    END;
    -- Whatever else the table's code left is undone here, and the baseline refused.
    FOR stale IN SELECT s.name FROM pg_catalog.pg_prepared_statements s
                  WHERE statements -> s.name IS DISTINCT FROM pg_catalog.jsonb_build_array(s.prepare_time, s.statement,
                                                                                            s.parameter_types::text, s.from_sql) LOOP
        EXECUTE pg_catalog.format('DEALLOCATE %I', stale.name);
        left_behind := true;
    END LOOP;
    left_behind := left_behind OR EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(statements) AS k(name)
                                           WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements s
                                                              WHERE s.name = k.name));
    -- A session advisory lock the table's code took is released, every hold of it (it was not held
    -- before); one it released (pg_advisory_unlock_all(), say: an archiver's claim, another's mutual
    -- exclusion) is taken again at once, if no other session took it meanwhile. A second hold of a
    -- key already held cannot be seen: pg_locks counts no holds.
    held := ARRAY(SELECT pg_catalog.concat_ws('/', l.classid, l.objid, l.objsubid, l.mode) FROM pg_catalog.pg_locks l
                   WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted);
    FOR stale IN SELECT k = ANY (held) AS taken, pg_catalog.split_part(k, '/', 4) AS mode,
                        -- a bigint key (objsubid 1) is classid and objid's 64 bits; else two int4 keys
                        CASE pg_catalog.split_part(k, '/', 3)
                             WHEN '1' THEN ((pg_catalog.split_part(k, '/', 1)::bigint << 32)
                                            | pg_catalog.split_part(k, '/', 2)::bigint)::text || '::bigint'
                             ELSE pg_catalog.split_part(k, '/', 1)::bigint::bit(32)::integer || ', '
                                  || pg_catalog.split_part(k, '/', 2)::bigint::bit(32)::integer END AS key
                   FROM pg_catalog.unnest(locks || held) AS k
                  WHERE (k = ANY (locks)) IS DISTINCT FROM (k = ANY (held)) LOOP
        LOOP  -- numbers from pg_locks and fixed names only
            EXECUTE pg_catalog.format('SELECT pg_catalog.%s(%s)',
                                      CASE WHEN stale.taken THEN 'pg_advisory_unlock' ELSE 'pg_try_advisory_lock' END
                                      || CASE WHEN stale.mode = 'ShareLock' THEN '_shared' ELSE '' END, stale.key)
                INTO done;
            EXIT WHEN NOT (done AND stale.taken);
        END LOOP;
        left_behind := true;
    END LOOP;
    IF left_behind THEN
        RAISE EXCEPTION 'the code of table % (a function its planner runs) changed this session''s prepared statements '
                        'or advisory locks: undone, and the baseline refused', part::regclass
            USING ERRCODE = 'PA008', HINT = 'Track it without a baseline, or remove that code.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._baseline_images(oid, tid, tid) IS
    'Rows of a table in a ctid range as JSON, one image a row (and the json values it replaced), read and converted '
    'as a role with no privileges.';
REVOKE ALL ON FUNCTION @schema@._baseline_images(oid, tid, tid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@._baseline_images(oid, tid, tid) TO @schema@_capture;
SET ROLE @schema@_owner;

-- The statement that images the rows of one table (or partition) in a range of its pages, as its
-- capture function would have for their INSERT. Parameters: the context ($1..$6, and the tenant
-- $10, as v_tenant), the moment ($7), the first and the end ctid ($8, $9).
CREATE OR REPLACE FUNCTION @schema@._baseline_statement(part oid)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables := @schema@._tracking_of(part);
    redacted jsonb := (SELECT jsonb_object_agg(c, '[redacted]') FROM unnest(t.redact_columns) c);
    excluded text := CASE WHEN cardinality(t.exclude_columns) > 0 THEN format('%L::text[]', t.exclude_columns) END;
BEGIN
    IF t.relid IS NULL THEN
        RAISE EXCEPTION 'table % is not tracked', part::regclass USING ERRCODE = 'PA008';
    END IF;
    RETURN format($q$
INSERT INTO @schema@.event_intake (tenant_id, actor_type, actor_id, db_role, client_addr, application_name, kind,
    target_type, target_id, outcome, correlation_id, txid, occurred_at, payload, row_after, origin)
SELECT %1$s, $1, $2, $3, $4, $5, %2$L, %3$L, %4$s, 'success', $6, pg_catalog.pg_current_xact_id(), $7, %8$s, %5$s,
       'capture'
  FROM (SELECT q.j, %6$s AS i, %9$s AS jk, $10::text AS v_tenant
          FROM @schema@._baseline_images(%7$s::oid, $8, $9) AS q(j, jk)
        OFFSET 0) AS r$q$,
        @schema@._gen_tenant(t, 'r.j'), t.kind_prefix || '.baseline', t.kind_prefix, @schema@._gen_target_id(t, 'r.j'),
        @schema@._gen_bounded('r.i'), @schema@._gen_image(t, excluded, redacted, 'q.j'), part,
        @schema@._gen_json_noted(true, 'row_after', 'r.jk', @schema@._gen_noted('''{}''::jsonb', 'row_after', 'r.i')),
        -- The json values replaced, but those the stored image leaves out or redacts.
        CASE WHEN cardinality(t.exclude_columns || t.redact_columns) > 0
             THEN format('(q.jk OPERATOR(pg_catalog.-) %L::text[])', t.exclude_columns || t.redact_columns) ELSE 'q.jk' END);
END
$$;
COMMENT ON FUNCTION @schema@._baseline_statement(oid) IS
    'Generator: the INSERT of <prefix>.baseline events for the rows of a table in a ctid range (user text only '
    'as quoted literals; the table by oid).';

-- Called by the capture role's _take_baseline only: it marks the moment from which a row with no
-- event is known to have been absent.
CREATE OR REPLACE FUNCTION @schema@._baseline_taken(target oid, imaged bigint, taken_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables;
BEGIN
    UPDATE @schema@.tracked_tables x SET baseline_at = taken_at WHERE x.relid = target RETURNING * INTO t;
    PERFORM @schema@._record('audit.tracking_baseline', NULL, NULL, NULL, 'table', t.table_name,
                             jsonb_build_object('rows', imaged, 'kind', t.kind_prefix || '.baseline'),
                             'success', NULL, NULL);
END
$$;
COMMENT ON FUNCTION @schema@._baseline_taken(oid, bigint, timestamptz) IS
    'Records that a tracked table''s rows were imaged (baseline_at, audit.tracking_baseline); the capture role''s.';
REVOKE ALL ON FUNCTION @schema@._baseline_taken(oid, bigint, timestamptz) FROM PUBLIC;

-- Called by the capture role's _take_baseline first: the caller proved, with its own rights, that it
-- owns the table and each partition (enable_tracking proves it again for the baseline), as every
-- other change of a table's tracking asks; a maintainer with only writes on a table takes none. The
-- proofs are the acting role's, the one the baseline's events name (db_role): not a proof another
-- role of the session made before a SET ROLE to a role that owns nothing (trial 100, b2).
DROP FUNCTION IF EXISTS @schema@._claim_baseline(oid);  -- before migration 0027, without the proofs' token
CREATE OR REPLACE FUNCTION @schema@._claim_baseline(target oid, proof uuid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Each raises without the acting role's proof (the role the baseline's events name).
    PERFORM @schema@._check_owner(c, proof) FROM @schema@._capture_tables(target) c;
END
$$;
COMMENT ON FUNCTION @schema@._claim_baseline(oid, uuid) IS
    'Consumes the acting role''s proofs of owning a tracked table and its partitions before a baseline (raises '
    '42501 without them); the capture role''s.';
REVOKE ALL ON FUNCTION @schema@._claim_baseline(oid, uuid) FROM PUBLIC;

SET ROLE @schema@_capture;
DROP FUNCTION IF EXISTS @schema@_capture._take_baseline(oid);  -- before migration 0027, without the proofs' token
CREATE OR REPLACE FUNCTION @schema@_capture._take_baseline(target oid, proof uuid DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables := @schema@._tracking_of(target);
    v_role text := @schema@._db_role();
    v_actor_type text := @schema@._context('actor_type');
    v_actor_id text := @schema@._context('actor_id');
    v_at timestamptz;
    part oid;
    statement text;
    pages bigint;
    first bigint;
    chunk constant bigint := 128;  -- pages read per statement: 1 MiB of heap
    n bigint;
    imaged bigint := 0;
BEGIN
    IF t.relid IS DISTINCT FROM target THEN
        RAISE EXCEPTION 'table % is not tracked (a baseline is taken of a tracked table, with its partitions)',
            target::regclass USING ERRCODE = 'PA008';
    ELSIF EXISTS (SELECT 1 FROM @schema@._capture_tables(target) c
                   WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                                      WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation'
                                        AND l.relation = c AND l.granted
                                        AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                                                       'AccessExclusiveLock'))) THEN
        -- Every partition locked (LOCK ONLY the parent leaves them writable).
        RAISE EXCEPTION 'a baseline of % is taken while writers are locked out: call enable_tracking with baseline',
            target::regclass USING ERRCODE = 'PA005';
    ELSIF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        -- A transaction's snapshot may predate the lock: the baseline would show rows as they were
        -- before changes captured ahead of it.
        RAISE EXCEPTION 'a baseline is taken at READ COMMITTED, not %', pg_catalog.current_setting('transaction_isolation')
            USING ERRCODE = 'PA005';
    END IF;
    PERFORM @schema@._claim_baseline(target, proof);
    -- The moment of the baseline is after the locks were granted: a write committed while they
    -- were awaited came before it.
    v_at := pg_catalog.clock_timestamp();
    IF v_actor_id IS NULL AND v_actor_type IS NULL THEN
        v_actor_type := 'db_role';
        v_actor_id := v_role;
    END IF;
    v_actor_type := coalesce(v_actor_type, 'user');
    PERFORM @schema@._refuse_long_context(NULL, v_actor_type, v_actor_id, @schema@._context('correlation_id'));
    FOR part IN SELECT @schema@._capture_tables(target) LOOP
        IF (SELECT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = part) THEN
            RAISE EXCEPTION 'cannot take a baseline of %: it has row-level security, whose policies would decide '
                            'which rows it shows', part::regclass USING ERRCODE = 'PA008',
                HINT = 'Track it without a baseline.';
        END IF;
        CONTINUE WHEN (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = part) <> 'r';  -- no storage of its own
        statement := @schema@._baseline_statement(part);
        pages := pg_catalog.pg_relation_size(part) / pg_catalog.current_setting('block_size')::bigint;
        first := 0;
        WHILE first < pages LOOP
            EXECUTE statement USING v_actor_type, v_actor_id, v_role, @schema@._client_addr(),
                pg_catalog.current_setting('application_name'), @schema@._context('correlation_id'), v_at,
                format('(%s,0)', first)::tid, format('(%s,0)', first + chunk)::tid,
                NULL::text;  -- every tenant's rows: never filed under a tenant the session claims
            GET DIAGNOSTICS n = ROW_COUNT;
            imaged := imaged + n;
            first := first + chunk;
        END LOOP;
    END LOOP;
    PERFORM @schema@._baseline_taken(target, imaged, v_at);
    RETURN imaged;
END
$$;
COMMENT ON FUNCTION @schema@_capture._take_baseline(oid, uuid) IS
    'Records a <prefix>.baseline event for every row of a tracked table and its partitions, read by the sandbox '
    '(granted SELECT by enable_tracking for the call); returns how many.';
REVOKE ALL ON FUNCTION @schema@_capture._take_baseline(oid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@_capture._take_baseline(oid, uuid) TO @schema@_maintainer;
SET ROLE @schema@_owner;
