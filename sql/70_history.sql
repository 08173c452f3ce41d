-- Reading a row's past from the captured events.

-- The captured-event prefix of a table (its tracked kind prefix, else <schema>.<table>) and its key
-- in the documented form (a composite key is a JSON array, normalised so [1,"EU"] matches).
CREATE OR REPLACE FUNCTION @schema@._history_target(target regclass, key text, OUT prefix text, OUT target_id text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys text[];
BEGIN
    SELECT t.kind_prefix, t.key_columns INTO prefix, keys FROM @schema@._tracking_of(target) t;
    IF prefix IS NULL THEN
        SELECT n.nspname || '.' || c.relname INTO prefix
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
        keys := @schema@._key_columns(target);
    END IF;
    IF key IS NULL THEN
        RAISE EXCEPTION 'key must not be NULL' USING ERRCODE = 'PA005';
    END IF;
    target_id := key;
    IF cardinality(keys) > 1 THEN
        BEGIN
            target_id := key::jsonb::text;
        EXCEPTION WHEN invalid_text_representation THEN
            RAISE EXCEPTION '% has a composite key: give it as a JSON array such as [1, "EU"], not %', target, key
                USING ERRCODE = 'PA005';
        END;
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._history_target(regclass, text) IS
    'target_type and target_id under which a table''s row is captured.';

CREATE OR REPLACE FUNCTION @schema@.row_history(target regclass, key text)
RETURNS SETOF @schema@.events
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.*
      FROM @schema@._history_target(target, key) AS h,
           @schema@.events AS e
     WHERE e.target_type = h.prefix AND e.target_id = h.target_id
       AND e.kind IN (h.prefix || '.insert', h.prefix || '.update', h.prefix || '.delete')
       AND coalesce(e.origin, 'capture') = 'capture'  -- events before 0.2 carry no origin
     ORDER BY e.seq NULLS LAST, e.occurred_at
$$;
COMMENT ON FUNCTION @schema@.row_history(regclass, text) IS
    'Every captured version of one row, oldest first (sealed by seq, then pending); captured events only, '
    'never recorded ones. key: the primary key as text, or a JSON array for a composite key.';

CREATE OR REPLACE FUNCTION @schema@.row_as_of(target regclass, key text, at timestamptz)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The last captured change to the row, or TRUNCATE of its whole table, at or before `at`. (A
    -- TRUNCATE of one partition names no rows: it does not count.)
    SELECT CASE WHEN last.kind = h.prefix || '.insert' OR last.kind = h.prefix || '.update'
                THEN last.row_after END
      FROM @schema@._history_target(target, key) AS h
      LEFT JOIN LATERAL (
          SELECT e.kind, e.row_after FROM @schema@.events e
           WHERE e.target_type = h.prefix AND e.occurred_at <= at
             AND coalesce(e.origin, 'capture') = 'capture'  -- events before 0.2 carry no origin
             AND ((e.target_id = h.target_id
                   AND e.kind IN (h.prefix || '.insert', h.prefix || '.update', h.prefix || '.delete'))
                  OR (e.kind = h.prefix || '.truncate' AND NOT e.payload ? 'partition'))
           ORDER BY e.occurred_at DESC, e.seq DESC NULLS FIRST
           LIMIT 1) AS last ON true
$$;
COMMENT ON FUNCTION @schema@.row_as_of(regclass, text, timestamptz) IS
    'The row as captured at a moment (its last image at or before `at`), or NULL if it did not exist then.';
