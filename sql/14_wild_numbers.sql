-- Numbers that print far larger than they are stored. A jsonb number keeps only its significant
-- digits and an exponent: 1e131071 takes 8 bytes and prints as 131,072 characters, so a 2 kB row
-- printed as 1 GB, and the sealer, the verifiers and list_events all print. A number at or beyond
-- 1e400 in magnitude (or a non-zero one below 1e-400) is "wild": no double precision value is,
-- and a tame one prints at most about 50 times its stored size.

CREATE OR REPLACE FUNCTION @schema@._wild_numbers(j jsonb)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT pg_catalog.jsonb_path_exists(j,
        'strict $.** ? (@.type() == "number" && (@ >= 1e400 || @ <= -1e400 || (@ != 0 && @ < 1e-400 && @ > -1e-400)))')
$$;
COMMENT ON FUNCTION @schema@._wild_numbers(jsonb) IS
    'True when the value holds a number of magnitude at or beyond 1e400, or non-zero below 1e-400.';

-- Each wild number replaced by {"$omitted": {"wild_number": true}}: the rest of the value kept.
-- Its digits are not hashed, since printing them is what must not happen.
CREATE OR REPLACE FUNCTION @schema@._tame_numbers(j jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE jsonb_typeof(j)
        WHEN 'number' THEN CASE WHEN @schema@._wild_numbers(j) THEN '{"$omitted": {"wild_number": true}}'::jsonb ELSE j END
        WHEN 'object' THEN (SELECT coalesce(jsonb_object_agg(e.key, @schema@._tame_numbers(e.value)), '{}')
                              FROM jsonb_each(j) e)
        WHEN 'array' THEN (SELECT coalesce(jsonb_agg(@schema@._tame_numbers(e.value) ORDER BY e.ordinality), '[]')
                             FROM jsonb_array_elements(j) WITH ORDINALITY e)
        ELSE j END;
END
$$;
COMMENT ON FUNCTION @schema@._tame_numbers(jsonb) IS
    'The value with every wild number replaced by {"$omitted": {"wild_number": true}}.';
