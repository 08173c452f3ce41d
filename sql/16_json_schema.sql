-- Payload validation: the subset of JSON Schema that register_event_type accepts and record()
-- checks.

-- The subset of JSON Schema that payload validation understands. register_event_type refuses any
-- other keyword, so that a schema never silently means less than it says, and any keyword value of
-- the wrong type or shape, so that no record() of the kind can later fail on its own schema.
DROP FUNCTION IF EXISTS @schema@._schema_unsupported(jsonb, text);
CREATE OR REPLACE FUNCTION @schema@._schema_problem(schema jsonb, path text DEFAULT '$')
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
    v jsonb;
    t text;
    bad text;
BEGIN
    IF jsonb_typeof(schema) = 'boolean' THEN
        RETURN NULL;
    ELSIF jsonb_typeof(schema) IS DISTINCT FROM 'object' THEN
        RETURN path || ': a schema must be an object or a boolean';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(schema) LOOP
        t := jsonb_typeof(v);
        bad := CASE
            WHEN k IN ('const', 'default') THEN NULL
            -- (Nested CASEs: an AND may evaluate its operands in any order, and an array function
            -- on a scalar raises.)
            WHEN k = 'type' THEN
                CASE WHEN t = 'string' THEN
                          CASE WHEN v #>> '{}' IN ('null', 'boolean', 'object', 'array', 'number', 'string', 'integer')
                               THEN NULL ELSE 'must be a JSON type name, or a non-empty array of them' END
                     WHEN t = 'array' THEN
                          CASE WHEN jsonb_array_length(v) > 0 AND NOT EXISTS (
                                   SELECT 1 FROM jsonb_array_elements(v) e
                                    WHERE jsonb_typeof(e) <> 'string'
                                       OR e #>> '{}' NOT IN ('null', 'boolean', 'object', 'array', 'number', 'string', 'integer'))
                               THEN NULL ELSE 'must be a JSON type name, or a non-empty array of them' END
                     ELSE 'must be a JSON type name, or a non-empty array of them' END
            WHEN k IN ('enum', 'examples') THEN CASE WHEN t = 'array' THEN NULL ELSE 'must be an array' END
            WHEN k = 'required' THEN
                CASE WHEN t <> 'array' THEN 'must be an array of strings'
                     WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(v) e WHERE jsonb_typeof(e) <> 'string')
                     THEN 'must be an array of strings' END
            WHEN k IN ('minItems', 'maxItems', 'minLength', 'maxLength') THEN
                CASE WHEN t <> 'number' THEN 'must be a whole number from 0 to 2147483647'
                     WHEN v::numeric = trunc(v::numeric) AND v::numeric BETWEEN 0 AND 2147483647 THEN NULL
                     ELSE 'must be a whole number from 0 to 2147483647' END
            WHEN k IN ('minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum') THEN
                CASE WHEN t = 'number' THEN NULL ELSE 'must be a number' END
            WHEN k = 'pattern' THEN
                CASE WHEN t <> 'string' THEN 'must be a string'
                     ELSE @schema@._regex_problem(v #>> '{}') END
            WHEN k IN ('$schema', '$id', 'title', 'description', '$comment') THEN
                CASE WHEN t = 'string' THEN NULL ELSE 'must be a string' END
            WHEN k = 'properties' THEN
                CASE WHEN t = 'object' THEN NULL ELSE 'must be an object of schemas' END
            WHEN k IN ('items', 'additionalProperties') THEN NULL  -- checked as schemas below
            ELSE 'is not a supported keyword' END;
        IF bad IS NOT NULL THEN
            RETURN path || '.' || k || ' ' || bad;
        END IF;
        IF k = 'properties' THEN
            FOR bad IN SELECT @schema@._schema_problem(p.value, path || '.properties.' || p.key)
                         FROM jsonb_each(v) p LOOP
                IF bad IS NOT NULL THEN RETURN bad; END IF;
            END LOOP;
        ELSIF k IN ('items', 'additionalProperties') THEN
            bad := @schema@._schema_problem(v, path || '.' || k);
            IF bad IS NOT NULL THEN RETURN bad; END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@._schema_problem(jsonb, text) IS
    'The first keyword of a schema outside the supported JSON Schema subset, or with a value of the wrong '
    'type or shape, as "<path>.<keyword> <what is wrong>"; NULL when the schema is usable.';

-- Whether a pattern compiles (PostgreSQL's own regular expressions, as validation uses them).
CREATE OR REPLACE FUNCTION @schema@._regex_problem(pattern text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM '' ~ pattern;
    RETURN NULL;
EXCEPTION WHEN invalid_regular_expression THEN
    RETURN 'is not a valid regular expression';
END
$$;
COMMENT ON FUNCTION @schema@._regex_problem(text) IS 'NULL when a regular expression compiles, else why not.';

CREATE OR REPLACE FUNCTION @schema@._schema_errors(schema jsonb, value jsonb, path text DEFAULT '$')
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE
AS $$
DECLARE
    errs text[] := '{}';
    t text := jsonb_typeof(value);
    k text;
    v jsonb;
    i integer := 0;
BEGIN
    IF jsonb_typeof(schema) = 'boolean' THEN
        RETURN CASE WHEN schema = 'false'::jsonb THEN ARRAY[path || ': no value is allowed'] ELSE errs END;
    END IF;
    IF schema ? 'type' AND NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements_text(
                 CASE WHEN jsonb_typeof(schema -> 'type') = 'array' THEN schema -> 'type'
                      ELSE jsonb_build_array(schema -> 'type') END) AS want(name)
         WHERE want.name = t
            OR (want.name = 'integer' AND t = 'number' AND value::numeric = trunc(value::numeric))) THEN
        RETURN ARRAY[format('%s: expected %s, got %s', path, schema -> 'type', t)];
    END IF;
    IF schema ? 'enum' AND NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements(schema -> 'enum') AS e(elem) WHERE e.elem = value) THEN
        errs := errs || format('%s: not one of %s', path, schema -> 'enum');
    END IF;
    IF schema ? 'const' AND value <> schema -> 'const' THEN
        errs := errs || format('%s: must be %s', path, schema -> 'const');
    END IF;
    IF t = 'number' THEN
        IF value::numeric < (schema ->> 'minimum')::numeric THEN
            errs := errs || format('%s: less than %s', path, schema -> 'minimum');
        END IF;
        IF value::numeric > (schema ->> 'maximum')::numeric THEN
            errs := errs || format('%s: greater than %s', path, schema -> 'maximum');
        END IF;
        IF value::numeric <= (schema ->> 'exclusiveMinimum')::numeric THEN
            errs := errs || format('%s: not greater than %s', path, schema -> 'exclusiveMinimum');
        END IF;
        IF value::numeric >= (schema ->> 'exclusiveMaximum')::numeric THEN
            errs := errs || format('%s: not less than %s', path, schema -> 'exclusiveMaximum');
        END IF;
    ELSIF t = 'string' THEN
        -- numeric, not integer: a whole number may be written 1.0 (JSON Schema's own reading), and the
        -- registration takes it so.
        IF char_length(value #>> '{}') < (schema ->> 'minLength')::numeric THEN
            errs := errs || format('%s: shorter than %s characters', path, schema -> 'minLength');
        END IF;
        IF char_length(value #>> '{}') > (schema ->> 'maxLength')::numeric THEN
            errs := errs || format('%s: longer than %s characters', path, schema -> 'maxLength');
        END IF;
        IF schema ? 'pattern' AND NOT (value #>> '{}') ~ (schema ->> 'pattern') THEN
            errs := errs || format('%s: does not match %s', path, schema -> 'pattern');
        END IF;
    ELSIF t = 'array' THEN
        IF jsonb_array_length(value) < (schema ->> 'minItems')::numeric THEN
            errs := errs || format('%s: fewer than %s items', path, schema -> 'minItems');
        END IF;
        IF jsonb_array_length(value) > (schema ->> 'maxItems')::numeric THEN
            errs := errs || format('%s: more than %s items', path, schema -> 'maxItems');
        END IF;
        IF schema ? 'items' THEN
            FOR v IN SELECT jsonb_array_elements(value) LOOP
                errs := errs || @schema@._schema_errors(schema -> 'items', v, format('%s[%s]', path, i));
                i := i + 1;
            END LOOP;
        END IF;
    ELSIF t = 'object' THEN
        FOR k IN SELECT jsonb_array_elements_text(coalesce(schema -> 'required', '[]')) LOOP
            IF NOT value ? k THEN
                errs := errs || format('%s: %s is required', path, k);
            END IF;
        END LOOP;
        FOR k, v IN SELECT * FROM jsonb_each(value) LOOP
            IF schema -> 'properties' ? k THEN
                errs := errs || @schema@._schema_errors(schema -> 'properties' -> k, v, path || '.' || k);
            ELSIF schema ? 'additionalProperties' THEN
                errs := errs || @schema@._schema_errors(schema -> 'additionalProperties', v, path || '.' || k);
            END IF;
        END LOOP;
    END IF;
    RETURN errs;
END
$$;
COMMENT ON FUNCTION @schema@._schema_errors(jsonb, jsonb, text) IS
    'Validation errors of a JSON value against a schema in the supported subset; empty when valid.';
