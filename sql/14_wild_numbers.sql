-- Numbers that print far larger than they are stored. A jsonb number keeps only its significant
-- digits, an exponent and how many decimals to print: 1e131071 takes 8 bytes and prints as 131,072
-- characters, 1.000...0 with 16,383 zeros takes 10 and prints as 16,385, so a 2 kB row printed as
-- 1 GB, and the sealer, the verifiers and list_events all print. A number at or beyond 1e400 in
-- magnitude (or a non-zero one below 1e-400) is "wild": no double precision value is. So is one
-- with more than 400 decimals, in a value holding more than 100 numbers (fewer print to at most
-- 1.7 MB; and a JSON path cannot see decimals, so finding them takes a walk in SQL, 3 us a value).

-- More than 100 numbers, one of them with more than 400 decimals. STRICT: _wild_numbers of a missing
-- image (an INSERT's row_before) reaches it as NULL AND ..., which calls it; a call of a SQL function
-- with a SET clause costs the sealer 13% of an event's time.
CREATE OR REPLACE FUNCTION @schema@._long_numbers(j jsonb)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_array_length(jsonb_path_query_array(j, 'strict $.** ? (@.type() == "number")')) > 100
       AND EXISTS (SELECT 1 FROM jsonb_path_query(j, 'strict $.** ? (@.type() == "number")') AS n(v)
                    WHERE scale(n.v::numeric) > 400)
$$;
COMMENT ON FUNCTION @schema@._long_numbers(jsonb) IS
    'True when the value holds more than 100 numbers, one of them with more than 400 decimals.';

-- Inlined where it is called (no SET clause: every name qualified; STABLE, as pg_column_size is).
-- Only a value over 800 bytes as stored, or compressed, can hold more than 100 numbers (each takes
-- 8 bytes at least), so only such a one is walked for decimals: a row image is seldom one.
CREATE OR REPLACE FUNCTION @schema@._wild_numbers(j jsonb)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT pg_catalog.jsonb_path_exists(j,
        'strict $.** ? (@.type() == "number" && (@ >= 1e400 || @ <= -1e400 || (@ != 0 && @ < 1e-400 && @ > -1e-400)))')
        OR ((pg_catalog.pg_column_size(j) OPERATOR(pg_catalog.>) 800 OR pg_catalog.pg_column_compression(j) IS NOT NULL)
            AND @schema@._long_numbers(j))
$$;
COMMENT ON FUNCTION @schema@._wild_numbers(jsonb) IS
    'True when the value holds a number of magnitude at or beyond 1e400, or non-zero below 1e-400, or, among more '
    'than 100 numbers, one with more than 400 decimals.';

-- The same, or NULL for a value nested too deep for a JSON path to walk (about 10,000 levels under
-- the default max_stack_depth), whose images the sealer stores through _omit_unprintable (its second
-- attempt). For the events view, which shows pending events as the sealer will store them: one such
-- event must not fail every page that holds it. A level takes 8 bytes at least, so only a value over
-- 4,000 bytes as stored, or compressed, can be 500 levels deep: only such a one is walked where the
-- failure can be caught. Inlined where it is called.
CREATE OR REPLACE FUNCTION @schema@._wild_numbers_caught(j jsonb)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN @schema@._wild_numbers(j);
EXCEPTION WHEN statement_too_complex THEN  -- the stack's depth
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@._wild_numbers_caught(jsonb) IS
    '_wild_numbers, or NULL when the value is nested too deep to walk.';

CREATE OR REPLACE FUNCTION @schema@._wild_numbers_walked(j jsonb)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN pg_catalog.pg_column_size(j) OPERATOR(pg_catalog.>) 4000 OR pg_catalog.pg_column_compression(j) IS NOT NULL
                THEN @schema@._wild_numbers_caught(j) ELSE @schema@._wild_numbers(j) END
$$;
COMMENT ON FUNCTION @schema@._wild_numbers_walked(jsonb) IS
    '_wild_numbers, or NULL for a value nested too deep to walk.';

-- Each wild number, and each with more than 400 decimals, replaced by
-- {"$omitted": {"wild_number": true}}: the rest of the value kept. Its digits are not hashed, since
-- printing them is what must not happen.
CREATE OR REPLACE FUNCTION @schema@._tame_numbers(j jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE jsonb_typeof(j)
        WHEN 'number' THEN CASE WHEN @schema@._wild_numbers(j) OR scale(j::numeric) > 400
                                THEN '{"$omitted": {"wild_number": true}}'::jsonb ELSE j END
        WHEN 'object' THEN (SELECT coalesce(jsonb_object_agg(e.key, @schema@._tame_numbers(e.value)), '{}')
                              FROM jsonb_each(j) e)
        WHEN 'array' THEN (SELECT coalesce(jsonb_agg(@schema@._tame_numbers(e.value) ORDER BY e.ordinality), '[]')
                             FROM jsonb_array_elements(j) WITH ORDINALITY e)
        ELSE j END;
END
$$;
COMMENT ON FUNCTION @schema@._tame_numbers(jsonb) IS
    'The value with every wild number replaced by {"$omitted": {"wild_number": true}}.';

-- _tame_numbers, or NULL where its walk runs out of stack (it recurses a PL/pgSQL call a level: about
-- 1,000 levels, fewer than a JSON path walks). The sealer then takes the event as its second attempt
-- does (_omit_unprintable), and so does the events view, which must not fail on one such event
-- (tests/test_trust_attacks_81.py, t8, t9).
CREATE OR REPLACE FUNCTION @schema@._tame_numbers_caught(j jsonb)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN @schema@._tame_numbers(j);
EXCEPTION WHEN statement_too_complex THEN  -- the stack's depth
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@._tame_numbers_caught(jsonb) IS
    '_tame_numbers, or NULL when the value is nested too deep for it.';

-- What stands for a value left out of a row image: the size and SHA-256 of its JSON text.
-- Inlined where it is called.
CREATE OR REPLACE FUNCTION @schema@._omitted(printed text)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT pg_catalog.jsonb_build_object('$omitted', pg_catalog.jsonb_build_object(
               'bytes', pg_catalog.octet_length(printed),
               'sha256', pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(printed, 'UTF8')), 'hex')))
$$;
COMMENT ON FUNCTION @schema@._omitted(text) IS
    '{"$omitted": {"bytes": N, "sha256": "<hex>"}} for a value of this JSON text.';

-- A marker is JSON anyone can write into a json column: what tells a stored marker from a written
-- one is the event's payload, {"omitted": {"row_before": [...], "row_after": [...]}}, which names
-- the columns (top-level keys) whose value the capture or the sealer replaced in each image (sorted,
-- once). Called only for images that lost a value.
CREATE OR REPLACE FUNCTION @schema@._note_omitted(payload jsonb, image text, keys text[])
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN coalesce(cardinality(keys), 0) = 0 THEN payload
                ELSE payload || jsonb_build_object('omitted', coalesce(payload -> 'omitted', '{}') || jsonb_build_object(image,
                         (SELECT jsonb_agg(DISTINCT x.k ORDER BY x.k)
                            FROM (SELECT unnest(keys) COLLATE "C"
                                  UNION ALL
                                  SELECT jsonb_array_elements_text(payload -> 'omitted' -> image)) AS x(k)))) END
$$;
COMMENT ON FUNCTION @schema@._note_omitted(jsonb, text, text[]) IS
    'The payload with these keys added to payload.omitted.<image>: the columns whose value was replaced by a marker.';

-- The top-level keys whose value a stored image replaced (tamed or omitted) in the image as captured.
CREATE OR REPLACE FUNCTION @schema@._replaced_keys(captured jsonb, stored jsonb)
RETURNS text[]
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(e.key) FROM jsonb_each(captured) AS e WHERE stored -> e.key IS DISTINCT FROM e.value
$$;
COMMENT ON FUNCTION @schema@._replaced_keys(jsonb, jsonb) IS
    'Keys of a captured row image whose value the stored image replaced.';

-- Which values of a row image to replace by a marker: the largest first (ties by key), until what
-- is left comes to at most 1 MiB, each marker counted as 200 bytes (more than one takes). By their
-- stored sizes (the capture's bound, _large_value_keys) or by what they print to (the sealer's
-- second attempt, _omit_unprintable).
CREATE OR REPLACE FUNCTION @schema@._longest_first(keys text[], sizes bigint[], total bigint)
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i integer;
    chosen text[] := '{}';
BEGIN
    FOR i IN SELECT s.i FROM unnest(sizes, keys) WITH ORDINALITY AS s(n, k, i) ORDER BY s.n DESC, s.k COLLATE "C" LOOP
        EXIT WHEN total <= 1048576;
        chosen := chosen || keys[i];
        total := total - sizes[i] + 200;
    END LOOP;
    RETURN chosen;
END
$$;
COMMENT ON FUNCTION @schema@._longest_first(text[], bigint[], bigint) IS
    'The keys whose values, largest first, to replace by a marker until the rest come to at most 1 MiB.';

-- For an event the sealer could not take as it was captured (a canonical line over 16 MiB, a value
-- nested too deep to walk): its row image bounded as the capture bounds one, but by what it prints
-- to. Each top-level value that cannot be walked is replaced as the capture replaces its largest
-- values, by {"$omitted": {"bytes": N, "sha256": "<hex of the value's JSON text>"}} (so that a
-- change of it still shows), or by {"$omitted": {"unprintable": true}} when it cannot even be
-- printed; then the values that print longest, longest first, until the rest print to at most
-- 1 MiB; wild numbers are tamed. A number such as 1.000...0, with 16,383 zeros, is stored in 10
-- bytes and prints as 16,385 characters; a control character takes one byte and prints as six; a
-- jsonb can be nested deeper than a JSON path can walk. Without this, such an image would send the
-- event to the quarantine, and every later change of the same row with it, for good. Only the
-- sealer's second attempt at one event calls it.
CREATE OR REPLACE FUNCTION @schema@._omit_unprintable(j jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kept jsonb := '{}';
    k text;
    v jsonb;
    walked boolean;
    printed text;
    keys text[] := '{}';  -- the values kept so far, and the bytes each prints to
    sizes bigint[] := '{}';
    total bigint := 0;
BEGIN
    IF jsonb_typeof(j) IS DISTINCT FROM 'object' THEN
        RETURN j;
    END IF;
    FOR k, v IN SELECT e.key, e.value FROM jsonb_each(j) e LOOP
        BEGIN
            IF @schema@._wild_numbers(v) THEN
                v := @schema@._tame_numbers(v);
            END IF;
            walked := true;
        EXCEPTION WHEN OTHERS THEN  -- too deep to walk (a cancel is not caught)
            walked := false;
        END;
        BEGIN
            printed := v::text;
            IF walked THEN
                keys := keys || k;
                sizes := sizes || octet_length(printed)::bigint;
                total := total + octet_length(printed);
            ELSE
                v := @schema@._omitted(printed);
            END IF;
        EXCEPTION WHEN OTHERS THEN  -- past what can be allocated
            v := '{"$omitted": {"unprintable": true}}';
        END;
        kept := kept || jsonb_build_object(k, v);
    END LOOP;
    FOREACH k IN ARRAY @schema@._longest_first(keys, sizes, total) LOOP
        kept := kept || jsonb_build_object(k, @schema@._omitted((kept -> k)::text));
    END LOOP;
    RETURN kept;
END
$$;
COMMENT ON FUNCTION @schema@._omit_unprintable(jsonb) IS
    'A row image with each top-level value that cannot be walked, then the longest printed, replaced by its size and '
    'SHA-256 (or {"$omitted": {"unprintable": true}}) until the rest print to at most 1 MiB; wild numbers tamed.';
