-- Reading a row's past from the captured events.

-- A key's value as a row image holds it (to_jsonb under the settings a capture function pins), so
-- that a key given in another spelling of its value (a timestamptz as the reader's session prints
-- it, an upper-case UUID, jsonb with other spacing, ' 007' for 7) names the same row
-- (tests/test_trust_attacks_76.py). A SQL function with SET clauses: never inlined.
DROP FUNCTION IF EXISTS @schema@._key_text(anyelement);
CREATE OR REPLACE FUNCTION @schema@._key_value(v anyelement)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
SET IntervalStyle = postgres
SET bytea_output = hex
SET lc_monetary = 'C'
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
SET quote_all_identifiers = off
AS $$ SELECT to_jsonb(v) $$;
COMMENT ON FUNCTION @schema@._key_value(anyelement) IS 'A key column''s value as a row image holds it.';

-- A type beneath its domains.
CREATE OR REPLACE FUNCTION @schema@._base_type(typ oid)
RETURNS oid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE d(typ, depth) AS (
        SELECT typ, 0
        UNION ALL
        SELECT y.typbasetype, d.depth + 1 FROM d JOIN pg_type y ON y.oid = d.typ WHERE y.typtype = 'd'
    )
    SELECT d.typ FROM d ORDER BY d.depth DESC LIMIT 1
$$;
COMMENT ON FUNCTION @schema@._base_type(oid) IS 'A type beneath its domains (the type itself if it is none).';

-- A key column's value given as text, read as a value of the column's type (in the reader's session,
-- as PostgreSQL's own equality would read it) and made what a row image holds; NULL when it is not
-- one. Only PostgreSQL's own types (base types, ranges, multiranges, arrays of them), a domain as its
-- base type: a type's input function, or a domain's CHECK, may be anyone's code. The type by its own
-- name, never with a type modifier: char and bit without one are one character long, and a cast to
-- char(n), bit(n) or numeric(p, s) cuts or rounds, naming another row (trial 77).
DROP FUNCTION IF EXISTS @schema@._key_as_captured(regclass, text, name, text);
CREATE OR REPLACE FUNCTION @schema@._key_as_captured(target regclass, key_column name, key text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    y pg_type := (SELECT t FROM pg_attribute a JOIN pg_type t ON t.oid = @schema@._base_type(a.atttypid)
                   WHERE a.attrelid = target AND a.attname = key_column AND NOT a.attisdropped);
    result jsonb;
BEGIN
    -- ("char" and name cut a longer text to their length: taken as given, trial 79.)
    IF key IS NULL OR y.typnamespace IS DISTINCT FROM 'pg_catalog'::regnamespace OR y.typtype NOT IN ('b', 'r', 'm')
       OR y.oid IN ('"char"'::regtype, 'name'::regtype)
       OR (y.typelem <> 0 AND (SELECT e.typnamespace <> 'pg_catalog'::regnamespace OR e.typtype NOT IN ('b', 'r', 'm')
                                 FROM pg_type e WHERE e.oid = y.typelem)) THEN
        RETURN NULL;
    END IF;
    BEGIN
        EXECUTE format('SELECT @schema@._key_value(CAST($1 AS pg_catalog.%I))', y.typname) INTO result USING key;
    EXCEPTION WHEN data_exception THEN
        RETURN NULL;
    END;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@._key_as_captured(regclass, name, text) IS
    'A key column''s value given as text, as a row image holds it (built-in types only); NULL if none.';

-- Whether two spellings of one key may name one row: its equal values may print apart (1.0 and 1,
-- '1 day' and '24 hours', 'ab' and 'ab ' in char(3), -0 and 0, text under a nondeterministic
-- collation, a type of anyone's making). Its events name the row by the spelling it was written
-- with, so that what they say of one spelling (nothing, or deleted, or moved away) does not mean no
-- such row: row_state_as_of says 'unknown' wherever it would say 'absent'.
CREATE OR REPLACE FUNCTION @schema@._key_spellings_vary(target regclass)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation,
                                 LATERAL (SELECT @schema@._base_type(a.atttypid)) AS k(typ)
                    WHERE a.attrelid = target AND NOT a.attisdropped
                      AND a.attname = ANY (coalesce((@schema@._tracking_of(target)).key_columns, @schema@._key_columns(target)))
                      AND (NOT coalesce(c.collisdeterministic, true)
                           OR k.typ NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'text'::regtype,
                                            'varchar'::regtype, 'name'::regtype, 'uuid'::regtype, 'date'::regtype,
                                            'timestamp'::regtype, 'timestamptz'::regtype, 'time'::regtype, 'bool'::regtype,
                                            'bytea'::regtype, 'inet'::regtype, 'cidr'::regtype, 'macaddr'::regtype,
                                            'macaddr8'::regtype, 'money'::regtype, 'oid'::regtype, '"char"'::regtype)))
$$;
COMMENT ON FUNCTION @schema@._key_spellings_vary(regclass) IS
    'True when equal values of a table''s key may print apart: no event under one spelling says the row was absent.';

-- The captured-event prefix of a table (its tracked kind prefix, else <schema>.<table>) and its key
-- in the documented form (a composite key is a JSON array, normalised so [1,"EU"] matches).
CREATE OR REPLACE FUNCTION @schema@._history_target(target regclass, key text, OUT prefix text, OUT target_id text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    keys text[];
    other text;
    composite jsonb;
    value jsonb;
BEGIN
    SELECT t.kind_prefix, t.key_columns INTO prefix, keys FROM @schema@._tracking_of(target) t;
    IF prefix IS NULL THEN
        SELECT n.nspname || '.' || c.relname INTO prefix
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
        keys := @schema@._key_columns(target);
        -- Its name may hold another table's events: a tracked table renamed keeps its prefix, a
        -- table may have been tracked under a prefix that is this table's name. Only the same table
        -- dropped and created again under its name has its past there.
        SELECT coalesce((SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = k.relid), k.table_name || ' (dropped)')
          INTO other FROM @schema@.kind_prefixes k
         WHERE k.kind_prefix = prefix AND k.relid <> target
           AND (EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = k.relid) OR k.table_name <> target::text);
        IF other IS NOT NULL THEN
            RAISE EXCEPTION '% is not tracked: the events under its name are those of tracked table %', target, other
                USING ERRCODE = 'PA008', HINT = format('Read the history of %s.', other);
        END IF;
    END IF;
    IF key IS NULL THEN
        RAISE EXCEPTION 'key must not be NULL' USING ERRCODE = 'PA005';
    END IF;
    target_id := key;
    IF cardinality(keys) = 1 THEN
        -- As _gen_key names it: a json or jsonb key (through its domains) as its JSON text, any other as its text.
        value := @schema@._key_as_captured(target, keys[1], key);
        IF value IS NOT NULL THEN
            target_id := CASE WHEN EXISTS (SELECT 1 FROM pg_attribute a
                                            WHERE a.attrelid = target AND a.attname = keys[1] AND NOT a.attisdropped
                                              AND @schema@._base_type(a.atttypid) IN ('json'::regtype, 'jsonb'::regtype))
                              THEN value::text ELSE value #>> '{}' END;
        END IF;
    ELSIF cardinality(keys) > 1 THEN
        BEGIN
            composite := key::jsonb;
        EXCEPTION WHEN invalid_text_representation THEN
            RAISE EXCEPTION '% has a composite key: give it as a JSON array such as [1, "EU"]', target
                USING ERRCODE = 'PA005';
        END;
        -- Each value as a row image holds it, where it is one of the column's type; else as given. A
        -- json or jsonb column's value is the JSON value given (a string stays a string: trial 79); any
        -- other column's, a string, number or boolean, as text (an array or object is none of its values).
        target_id := CASE WHEN jsonb_typeof(composite) = 'array'
                          THEN (SELECT jsonb_agg(coalesce(@schema@._key_as_captured(target, keys[e.i::integer],
                                                              CASE WHEN @schema@._base_type(a.atttypid) IN ('json'::regtype, 'jsonb'::regtype)
                                                                   THEN e.v::text
                                                                   WHEN jsonb_typeof(e.v) IN ('string', 'number', 'boolean')
                                                                   THEN e.v #>> '{}' END),
                                                          e.v) ORDER BY e.i)::text
                                  FROM jsonb_array_elements(composite) WITH ORDINALITY AS e(v, i)
                                  LEFT JOIN pg_attribute a ON a.attrelid = target AND a.attname = keys[e.i::integer]
                                                          AND NOT a.attisdropped)
                          END;
        target_id := coalesce(target_id, composite::text);
    END IF;
    -- A change the sealer set aside is missing from the history: no answer rather than a wrong one.
    IF EXISTS (SELECT 1 FROM @schema@.quarantine q
                WHERE q.target_type = prefix AND coalesce(q.origin, 'capture') = 'capture'
                  AND (q.target_id = target_id OR q.payload ->> 'moved_from' = target_id
                       OR (q.kind = prefix || '.truncate' AND NOT q.payload ? 'partition'))) THEN
        RAISE EXCEPTION 'the history of the row asked of % is incomplete: a captured change of it is in the quarantine', target
            USING ERRCODE = 'PA015', HINT = 'See @schema@.quarantine and its audit.event_quarantined event.';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._history_target(regclass, text) IS
    'target_type and target_id under which a table''s row is captured; PA015 when a captured change of it '
    'is in the quarantine.';

-- A row's events: those that name it by its key, and UPDATEs that moved it to another key (they
-- name the new key, and the key they left in payload.moved_from). In the order they were applied:
-- seq (sealing follows the intake, which a row's writes reach in the order their locks allowed),
-- then pending events in intake order. Captured events only: record() cannot write these kinds,
-- and events of releases before 0.2 carry no origin.
CREATE OR REPLACE FUNCTION @schema@.row_history(target regclass, key text)
RETURNS SETOF @schema@.events
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.*
      FROM @schema@._history_target(target, key) AS h,
           @schema@.events AS e
     WHERE e.target_type = h.prefix
       AND (e.target_id = h.target_id OR (e.payload ? 'moved_from' AND e.payload ->> 'moved_from' = h.target_id))
       AND e.kind IN (h.prefix || '.baseline', h.prefix || '.insert', h.prefix || '.update', h.prefix || '.delete')
       AND coalesce(e.origin, 'capture') = 'capture'
     ORDER BY e.seq NULLS LAST, e.intake_id
$$;
COMMENT ON FUNCTION @schema@.row_history(regclass, text) IS
    'Every captured version of one row, oldest first (sealed by seq, then pending in intake order), including '
    'an update that moved it to another key; captured events only, never recorded ones. key: the primary key '
    'as text, or a JSON array for a composite key. PA015 when a captured change of it is in the quarantine.';

-- The last event at or before `at` that says what became of a row: a captured change of it (or its
-- baseline image), a TRUNCATE of its whole table, or the end of its table's tracking (disabled, or
-- the table dropped: a table made later under the name, by anyone, starts with no record of its
-- rows; tests/test_trust_attacks_69.py). In the order the events were applied. (A TRUNCATE of one
-- partition names no rows: it does not count.) An UPDATE that moved a row away from this key does
-- not count when another row of the same statement took the key (a swap).
CREATE OR REPLACE FUNCTION @schema@._last_change(prefix text, key text, at timestamptz)
RETURNS TABLE (kind text, target_id text, row_after jsonb)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The last of each kind of word, each found by its own index (the row's key, the key it moved
    -- from, the table's TRUNCATEs, the ends of tracking), never by walking the table's whole history
    -- (tests/test_trust_attacks_70.py; 77, k7).
    SELECT x.kind, x.target_id, x.row_after
      FROM ((SELECT e.kind, e.target_id, e.row_after, e.seq, e.intake_id FROM @schema@.events e
              WHERE e.target_id = key AND e.target_type = prefix AND e.occurred_at <= at
                AND e.kind IN (prefix || '.baseline', prefix || '.insert', prefix || '.update', prefix || '.delete')
                AND coalesce(e.origin, 'capture') = 'capture'
              ORDER BY e.seq DESC NULLS FIRST, e.intake_id DESC
              LIMIT 1)
            UNION ALL
            (SELECT e.kind, e.target_id, e.row_after, e.seq, e.intake_id FROM @schema@.events e
              WHERE e.target_type = prefix AND e.payload ? 'moved_from' AND e.payload ->> 'moved_from' = key
                AND e.occurred_at <= at AND e.kind = prefix || '.update'
                AND coalesce(e.origin, 'capture') = 'capture'
                AND NOT EXISTS (SELECT 1 FROM @schema@.events a
                                 WHERE a.target_id = key AND a.target_type = prefix
                                   AND a.kind = prefix || '.update'
                                   AND a.payload ->> 'statement' = e.payload ->> 'statement')
              ORDER BY e.seq DESC NULLS FIRST, e.intake_id DESC
              LIMIT 1)
            UNION ALL
            (SELECT e.kind, e.target_id, e.row_after, e.seq, e.intake_id FROM @schema@.events e
              WHERE e.kind = prefix || '.truncate' AND e.kind LIKE '%.truncate' AND e.target_type = prefix
                AND NOT e.payload ? 'partition'
                AND e.occurred_at <= at AND coalesce(e.origin, 'capture') = 'capture'
              ORDER BY e.seq DESC NULLS FIRST, e.intake_id DESC
              LIMIT 1)
            UNION ALL
            (SELECT e.kind, NULL, NULL, e.seq, e.intake_id FROM @schema@.events e
              WHERE e.kind IN ('audit.tracking_disabled', 'audit.tracked_table_dropped')
                AND e.origin = 'system' AND e.target_type = 'table'
                AND e.payload ->> 'kind_prefix' = prefix
                AND e.occurred_at <= at
              ORDER BY e.seq DESC NULLS FIRST, e.intake_id DESC
              LIMIT 1)) AS x
     ORDER BY x.seq DESC NULLS FIRST, x.intake_id DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION @schema@._last_change(text, text, timestamptz) IS
    'The last event at or before a moment that says what became of a row: a captured change, a TRUNCATE of '
    'its whole table, or the end of its table''s tracking (audit.tracking_disabled, audit.tracked_table_dropped).';

CREATE OR REPLACE FUNCTION @schema@.row_as_of(target regclass, key text, at timestamptz)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The row exists if its last change inserted it or updated it into this key, or is its baseline;
    -- after a TRUNCATE, or the end of tracking, there is no image of it.
    SELECT CASE WHEN last.kind IN (h.prefix || '.baseline', h.prefix || '.insert', h.prefix || '.update')
                     AND last.target_id = h.target_id
                THEN last.row_after END
      FROM @schema@._history_target(target, key) AS h
      LEFT JOIN LATERAL @schema@._last_change(h.prefix, h.target_id, at) AS last ON true
$$;
COMMENT ON FUNCTION @schema@.row_as_of(regclass, text, timestamptz) IS
    'The row as captured at a moment (its last image among changes begun at or before `at`, in the order '
    'they were applied), or NULL if it did not exist then. PA015 when a captured change of it is in the '
    'quarantine.';

-- What row_as_of's NULL cannot say: whether the row is known not to have existed at `at`, or
-- whether there is no record of it then (before tracking began, or a row from before tracking
-- that had not changed yet). state: 'existed' (with its image), 'absent' or 'unknown'.
CREATE OR REPLACE FUNCTION @schema@.row_state_as_of(target regclass, key text, at timestamptz,
                                                   OUT state text, OUT image jsonb)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h record;
    latest record;
    since timestamptz;
    first_after record;
    -- No event under the spelling given says the row was absent only where no other spelling of its
    -- key may name it (_key_spellings_vary).
    absent text := CASE WHEN @schema@._key_spellings_vary(target) THEN 'unknown' ELSE 'absent' END;
BEGIN
    SELECT * INTO h FROM @schema@._history_target(target, key);
    SELECT * INTO latest FROM @schema@._last_change(h.prefix, h.target_id, at);
    -- What row_as_of answers, from the same last change.
    IF latest.kind IN (h.prefix || '.baseline', h.prefix || '.insert', h.prefix || '.update')
       AND latest.target_id = h.target_id AND latest.row_after IS NOT NULL THEN
        state := 'existed';
        image := latest.row_after;
        RETURN;
    END IF;
    -- The last change of the row (or a TRUNCATE of its table) at or before `at`, and no image: it was
    -- gone. Unless the last word by then is that tracking ended: what was recorded before says
    -- nothing of the rows after it, and only the current tracking (below) may.
    IF latest.kind NOT IN ('audit.tracking_disabled', 'audit.tracked_table_dropped') THEN
        state := absent;
        RETURN;
    END IF;
    -- Imaged whole since a baseline before `at`, and no image of it: it was not there (unless events
    -- from the baseline on may have been pruned or archived away: then its image may be gone). The
    -- baseline is the current tracking's, so taken after any end of an earlier one.
    -- Only a table with a key: a keyless table's baseline images name no row (trial 96, b6).
    IF (@schema@._tracking_of(target)).baseline_at <= at
       AND (@schema@._tracking_of(target)).key_columns IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM @schema@.prune_points p WHERE p.cutoff > (@schema@._tracking_of(target)).baseline_at) THEN
        state := absent;
        RETURN;
    END IF;
    since := (@schema@._tracking_of(target)).enabled_at;
    IF since IS NULL OR at < since THEN
        state := 'unknown';  -- before tracking began: nothing was recorded
        RETURN;
    END IF;
    -- Tracked at `at`, no change of it by then: its first change after says whether it was there.
    -- An INSERT of the key, or an UPDATE that moved a row into it, says it was not (a TRUNCATE
    -- first says nothing).
    SELECT x.kind, x.target_id, x.moved_here INTO first_after
      FROM (SELECT e.kind, e.target_id, e.payload ? 'moved_from' AS moved_here, e.seq, e.intake_id
              FROM @schema@.row_history(target, key) e WHERE e.occurred_at > at
            UNION ALL
            SELECT e.kind, NULL, false, e.seq, e.intake_id FROM @schema@.events e
             WHERE e.target_type = h.prefix AND e.kind = h.prefix || '.truncate' AND e.kind LIKE '%.truncate'
               AND NOT e.payload ? 'partition'
               AND coalesce(e.origin, 'capture') = 'capture' AND e.occurred_at > at) x
     ORDER BY x.seq NULLS LAST, x.intake_id
     LIMIT 1;
    state := CASE WHEN first_after.target_id = h.target_id
                       AND (first_after.kind = h.prefix || '.insert'
                            OR (first_after.kind = h.prefix || '.update' AND first_after.moved_here))
                  THEN absent ELSE 'unknown' END;
END
$$;
COMMENT ON FUNCTION @schema@.row_state_as_of(regclass, text, timestamptz) IS
    'The row at a moment, and whether that is known: existed (with its image), absent, or unknown (no record: '
    'before tracking began, or a row from before tracking, taken without a baseline, that had not changed by then).';
