-- Capture: statement-level triggers with transition tables append one intake row per changed row
-- in a single INSERT ... SELECT; everything that can wait (the changed-column diff) waits for
-- the sealer.
--
-- Who runs what. The capture functions belong to @schema@_capture, a NOLOGIN role whose only member
-- is the owner role, that may append to the intake and nothing else of the audit log (it reads no
-- secret, deletes nothing, reads no user table), and live in a schema of their own, also named
-- @schema@_capture. The owner role generates them and hands them to the capture role: the capture
-- role itself runs no DDL (an event trigger refuses any, see sql/superuser/), so nothing that ever
-- ran as it could rewrite them. A user's rows become JSON either inline, when every column has a
-- built-in type (to_jsonb then runs no code but PostgreSQL's own), or else in the sandbox, a
-- function of @schema@_sandbox, a role with no privilege at all: to_jsonb calls a user-defined cast
-- to json of an enum, a range or a composite type, which is the user's code, and it must never run
-- as a role that can write the log. No capture function plans a query on a user's table (planning
-- runs the table's index expressions, its policies run on reading it): they read transition tables
-- only, and a TRUNCATE is recorded without counting rows.
--
-- What is rendered. Floats, intervals, bytea and money print according to settings the writer may
-- change (extra_float_digits = -15 prints 1349.01 as 1e+03); each capture function pins those its
-- table's columns need, and the sandbox pins them all.
--
-- Which tables. A tracked table and its partitions, at every level: a statement fires the statement
-- triggers of the table it names only, so each carries capture triggers of its own, and events under
-- the tracked table's kind prefix. Such a table can be tracked only through the table at the top of
-- its tree. Plain inheritance is refused (a child's key need not be unique across the tree, and a
-- statement on a parent reaches children that may have other parents), and so are foreign tables
-- (no transition tables).

-- Each of those tables gets its own capture function, generated from the options so that a
-- statement pays for no catalogue lookup and no per-row branching (measured: 28 us against 41 us per
-- single-row UPDATE for one generic function). User text (column names, the kind prefix) reaches the
-- generated body only as quoted literals, and the body reaches CREATE FUNCTION as one quoted
-- literal, never inside a dollar quote: no name can end it or become code. The function is named by
-- the table's oid and says nothing else about it.
-- Functions of earlier releases that this file replaces under other signatures.
DROP FUNCTION IF EXISTS @schema@._generate_capture(@schema@.tracked_tables);
DROP FUNCTION IF EXISTS @schema@._gen_image(@schema@.tracked_tables, text);
DROP FUNCTION IF EXISTS @schema@_capture._generate_capture(oid);
DROP FUNCTION IF EXISTS @schema@_capture._drop_capture(oid);
DROP FUNCTION IF EXISTS @schema@_capture._count_rows(oid);

CREATE OR REPLACE FUNCTION @schema@._capture_function(relid oid)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT '@schema@_capture.' || quote_ident('_capture_' || relid) $$;
COMMENT ON FUNCTION @schema@._capture_function(oid) IS 'Name of the generated capture function of a table.';

-- The table a function of a capture function's name is for, or NULL where the name is no such name
-- (a number out of oid's range, or written otherwise than the oid's own digits).
CREATE OR REPLACE FUNCTION @schema@._captured_relid(proname name)
RETURNS oid
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN x.n <= 4294967295 AND '_capture_' || x.n::text = proname::text THEN x.n::oid END
      FROM (SELECT substring(proname FROM '^_capture_([0-9]{1,10})$')::bigint AS n) x
$$;
COMMENT ON FUNCTION @schema@._captured_relid(name) IS 'The table a capture function''s name is for, or NULL.';

-- A table and the tables it inherits from (a partition's parents), nearest first.
CREATE OR REPLACE FUNCTION @schema@._lineage(target oid)
RETURNS TABLE (relid oid, depth integer)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE up(relid, depth) AS (
        SELECT target, 0
        UNION ALL
        SELECT i.inhparent, u.depth + 1 FROM up u JOIN pg_inherits i ON i.inhrelid = u.relid
    )
    SELECT relid, depth FROM up
$$;
COMMENT ON FUNCTION @schema@._lineage(oid) IS 'A table and its ancestors, with their distance from it.';

-- The primary key only. A replica identity index also names rows, but PostgreSQL lets it be what a
-- key must not: on a collation other than its column's (a temporary one, gone with its session),
-- with an operator class that tells apart values whose images read alike (record_image_ops: 0 and
-- -0), invalid, or dropped CONCURRENTLY and left dead when cancelled, where no event trigger fires.
-- A primary key's index has its columns' collations and default operator classes, and goes only
-- with its constraint (ALTER TABLE, which the event triggers see).
CREATE OR REPLACE FUNCTION @schema@._key_columns(target regclass)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The key columns only: a covering index's INCLUDE columns follow them in indkey.
    SELECT ARRAY(SELECT a.attname::text
                   FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, o)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE k.o <= i.indnkeyatts
                  ORDER BY k.o)
      FROM pg_index i
     WHERE i.indrelid = target AND i.indisprimary
$$;
COMMENT ON FUNCTION @schema@._key_columns(regclass) IS
    'Columns that identify a row: the primary key''s, in its order; NULL without one.';

-- The tracked_tables entry that covers a table: its own, or its nearest tracked ancestor's when it
-- inherits from a tracked table (a partition, or an inheritance child).
CREATE OR REPLACE FUNCTION @schema@._tracking_of(target oid)
RETURNS @schema@.tracked_tables
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.* FROM @schema@._lineage(target) up JOIN @schema@.tracked_tables t ON t.relid = up.relid
     ORDER BY up.depth LIMIT 1
$$;
COMMENT ON FUNCTION @schema@._tracking_of(oid) IS
    'The tracked_tables entry of a table, or of the tracked table it inherits from; NULL if none.';

-- A relation and every relation that inherits from it, at every level, of any kind (a foreign
-- table too: a change to a parent's columns reaches its row type; tests/test_trust_attacks_81.py, j1).
CREATE OR REPLACE FUNCTION @schema@._inheritors(root oid)
RETURNS SETOF oid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE down(relid) AS (
        SELECT root
        UNION
        SELECT i.inhrelid FROM down d JOIN pg_inherits i ON i.inhparent = d.relid
    )
    SELECT d.relid FROM down d
$$;
COMMENT ON FUNCTION @schema@._inheritors(oid) IS 'A relation and all the relations that inherit from it, of any kind.';

-- A table and every table that inherits from it, at every level (the table itself even when it is
-- gone, for cleaning up after it).
CREATE OR REPLACE FUNCTION @schema@._capture_tables(root oid)
RETURNS SETOF oid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d FROM @schema@._inheritors(root) d
     WHERE d = root OR (SELECT c.relkind FROM pg_class c WHERE c.oid = d) IN ('r', 'p')
$$;
COMMENT ON FUNCTION @schema@._capture_tables(oid) IS 'A table and all the tables that inherit from it.';

-- The types a table's columns are made of, as to_jsonb takes them apart: their own, and through
-- domains, arrays and composite types (attribute by attribute), the ones beneath, down to the
-- leaves, which it prints whole (with a cast to json if the type has one, else its output function).
-- A range or multirange is a leaf, but its output function prints its bounds with their type's
-- (an enum's labels, say): the types beneath it are reached too, as printed whole (not leaves).
CREATE OR REPLACE FUNCTION @schema@._column_types(target oid)
RETURNS TABLE (typ oid, leaf boolean)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE reachable(typ, printed) AS (
        SELECT a.atttypid, false FROM pg_attribute a WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped
        UNION
        SELECT beneath.typ, r.printed OR beneath.printed
          FROM reachable r JOIN pg_type y ON y.oid = r.typ,
               LATERAL (SELECT y.typbasetype, false WHERE y.typtype = 'd'
                        UNION ALL SELECT y.typelem, false WHERE y.typelem <> 0 AND y.typsubscript = 'array_subscript_handler'::regproc
                        UNION ALL SELECT a.atttypid, false FROM pg_attribute a
                                   WHERE y.typtype = 'c' AND a.attrelid = y.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                        UNION ALL SELECT g.rngsubtype, true FROM pg_range g WHERE y.typtype = 'r' AND g.rngtypid = y.oid
                        UNION ALL SELECT g.rngtypid, true FROM pg_range g WHERE y.typtype = 'm' AND g.rngmultitypid = y.oid
                       ) AS beneath(typ, printed)
    )
    SELECT DISTINCT ON (r.typ) r.typ,
           NOT (r.printed OR y.typtype IN ('d', 'c') OR (y.typelem <> 0 AND y.typsubscript = 'array_subscript_handler'::regproc))
      FROM reachable r JOIN pg_type y ON y.oid = r.typ
     ORDER BY r.typ, r.printed
$$;
COMMENT ON FUNCTION @schema@._column_types(oid) IS
    'Every type a table''s columns are made of, through domains, arrays, composites and ranges; leaf: '
    'to_jsonb prints it whole (none of those, and not beneath a range).';

-- Whether to_jsonb can turn a table's rows into JSON without running anyone's code: every column's
-- type, through domains and arrays, is built into PostgreSQL (an oid below 16384, FirstNormalObjectId).
-- to_jsonb consults casts only for other types. The event triggers regenerate the capture function
-- whenever a column is added or its type changed.
CREATE OR REPLACE FUNCTION @schema@._builtin_column_types(target oid)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- A composite type of a user's counts as not built in (its attributes may change under it).
    SELECT NOT EXISTS (SELECT 1 FROM @schema@._column_types(target) c JOIN pg_type y ON y.oid = c.typ
                        WHERE c.typ >= 16384 AND (c.leaf OR y.typtype = 'c'))
$$;
COMMENT ON FUNCTION @schema@._builtin_column_types(oid) IS
    'True when every column type is built in (through domains and arrays): to_jsonb runs no user code on its rows.';

-- Whether the event triggers that follow schema changes are installed and enabled (they need a
-- superuser install).
CREATE OR REPLACE FUNCTION @schema@._schema_changes_followed()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) = 2 FROM pg_event_trigger
     WHERE evtname IN ('@schema@_ddl_end', '@schema@_sql_drop') AND evtenabled IN ('O', 'A')
$$;
COMMENT ON FUNCTION @schema@._schema_changes_followed() IS
    'True when the event triggers that follow schema changes of tracked tables are installed and enabled.';

-- The sandbox: a function of @schema@_sandbox, which holds no privilege at all (see the top of this
-- file). Executable by the capture role only. It takes the transition rows as they come, an array of
-- anonymous records (so that no generated code names a table's type, which its schema might not let
-- the capture role see): only SQL functions accept those, and PostgreSQL never inlines a SECURITY
-- DEFINER one, so to_jsonb always runs here as this role. One image per row, in the rows' order: a
-- statement's images as one jsonb would be bounded at 256 MB, an array of them is bounded at 1 GB,
-- as the images of a table of built-in types are.
SET ROLE @schema@_sandbox;
DROP FUNCTION IF EXISTS @schema@._row_images(anyelement);
CREATE OR REPLACE FUNCTION @schema@._row_images(rows anyarray)
RETURNS jsonb[]
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
SET IntervalStyle = postgres
SET bytea_output = hex
SET lc_monetary = 'C'
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
SET quote_all_identifiers = off
AS $$ SELECT ARRAY(SELECT pg_catalog.to_jsonb(pg_catalog.unnest(rows))) $$;
COMMENT ON FUNCTION @schema@._row_images(anyarray) IS
    'Rows as JSON, one image per row, converted as a role with no privileges (user-defined casts to json run here).';
REVOKE ALL ON FUNCTION @schema@._row_images(anyarray) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@._row_images(anyarray) TO @schema@_capture;

-- The same rows as JSON text, where _row_images failed on json that jsonb cannot hold (see
-- _json_images): to_json keeps a json value as it is written, and runs the same user casts, here.
CREATE OR REPLACE FUNCTION @schema@._row_json(rows anyarray)
RETURNS json[]
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
SET IntervalStyle = postgres
SET bytea_output = hex
SET lc_monetary = 'C'
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
SET quote_all_identifiers = off
AS $$ SELECT ARRAY(SELECT pg_catalog.to_json(pg_catalog.unnest(rows))) $$;
COMMENT ON FUNCTION @schema@._row_json(anyarray) IS
    'Rows as JSON text, one per row, converted as a role with no privileges (see _json_images).';
REVOKE ALL ON FUNCTION @schema@._row_json(anyarray) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@._row_json(anyarray) TO @schema@_capture;
SET ROLE @schema@_owner;

-- json takes what jsonb cannot hold: \u0000, an unpaired surrogate escape, a number past numeric's
-- range (1e200000, or more digits than numeric keeps). to_jsonb of a row holding one fails, and with
-- it the write, and every later change of the row (tests/test_trust_attacks_76.py). A table with a
-- json column (or an array or domain of one) is imaged column by column where its capture is inline
-- (_gen_row_image): such a value is replaced by {"$omitted": {"bytes": N, "sha256": "<hex>"}} of its
-- JSON text (to_json: an array's as a JSON array, as _json_images and a baseline see it), and named in
-- the event's payload (_note_omitted), as a value too large is. Elsewhere, _json_images.
--
-- Whether jsonb surely takes this printed json: no \u0000 or surrogate escape (in UTF8, other \u
-- escapes, which json.dumps writes for every non-ASCII character, are taken), no exponent of four digits or
-- more, and under 8,000 bytes. A number's scale is at most its digits plus its exponent's magnitude,
-- so that one shorter than that, with an exponent under 1,000, is within numeric's 16,383; and
-- nesting within 4,000 levels is within the stack's depth. What fails the check goes on to
-- _json_refused (trial 78). One regular expression a value. Inlined where it is called.
CREATE OR REPLACE FUNCTION @schema@._jsonb_takes(printed text)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT pg_catalog.octet_length(printed) OPERATOR(pg_catalog.<) 8000
           -- (no backslash in a literal: standard_conforming_strings may be off; chr(92) is one.) In a
           -- database not in UTF8 any \u escape may name a character it lacks (trial 79).
           AND printed OPERATOR(pg_catalog.!~) (pg_catalog.chr(92) || pg_catalog.chr(92) || '[uU]'
               || CASE WHEN pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.=) 'UTF8' THEN '(0000|[dD][89a-fA-F])' ELSE '' END
               || '|[eE][-+]?[0-9]{4}')
$$;
COMMENT ON FUNCTION @schema@._jsonb_takes(text) IS
    'True when jsonb surely takes this printed json value (else _json_refused decides).';

CREATE OR REPLACE FUNCTION @schema@._json_refused(v anyelement)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM to_jsonb(v);
    RETURN false;
EXCEPTION WHEN untranslatable_character OR invalid_text_representation OR numeric_value_out_of_range
               OR statement_too_complex THEN  -- the last: nested deeper than the stack allows
    RETURN true;
END
$$;
COMMENT ON FUNCTION @schema@._json_refused(anyelement) IS
    'True when to_jsonb cannot hold this json value (or array or domain of json).';

-- Inlined where it is called: the value, or its marker. (Not both conditions in one OR: SQL does not
-- promise the order an OR evaluates its operands in.)
CREATE OR REPLACE FUNCTION @schema@._json_image(v anyelement)
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN coalesce(@schema@._jsonb_takes(v::text), true) THEN pg_catalog.to_jsonb(v)
                WHEN @schema@._json_refused(v) THEN @schema@._omitted(pg_catalog.to_json(v)::text)
                ELSE pg_catalog.to_jsonb(v) END
$$;
COMMENT ON FUNCTION @schema@._json_image(anyelement) IS
    'A json value as a row image holds it: to_jsonb, or the {"$omitted": ...} marker of one jsonb cannot hold.';

CREATE OR REPLACE FUNCTION @schema@._json_omitted(v anyelement)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN coalesce(@schema@._jsonb_takes(v::text), true) THEN false ELSE @schema@._json_refused(v) END
$$;
COMMENT ON FUNCTION @schema@._json_omitted(anyelement) IS 'True when _json_image replaces this value by a marker.';

-- Where a table's capture is not inline, the sandbox images whole rows (_row_images), and to_jsonb of
-- a row holding json that jsonb cannot hold fails (tests/test_trust_attacks_79.py, q1 to q6). The
-- capture function then asks the sandbox for the rows' JSON text (_row_json) and images them here,
-- where only PostgreSQL's own parser runs: a row whose text jsonb refuses is taken value by value,
-- each refused value (a json column's, or an array's or a composite's holding json) replaced by the
-- marker of its JSON text and its column named under the key '', as _gen_row_image names them.
-- The row's members are found by its tokens (json_each would unescape every string, and fail on
-- the same \u0000): strings, the structural characters, and runs of anything else; a member starts
-- at a comma at depth 1, its value after its first colon at depth 1. E'' strings: their backslashes
-- mean the same whatever standard_conforming_strings says.
CREATE OR REPLACE FUNCTION @schema@._json_members(r json)
RETURNS TABLE (key text, value text)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH tokens AS (
        SELECT m.o, m.a[1] AS tok,
               sum(CASE WHEN m.a[1] IN ('{', '[') THEN 1 WHEN m.a[1] IN ('}', ']') THEN -1 ELSE 0 END)
                   OVER (ORDER BY m.o) AS depth
          FROM regexp_matches(r::text, E'"(?:[^"\\\\]|\\\\.)*"|[][{},:]|[^][{}",:]+', 'g') WITH ORDINALITY AS m(a, o)
    ), members AS (
        SELECT t.o, t.tok, t.depth,
               count(*) FILTER (WHERE t.tok = ',' AND t.depth = 1) OVER (ORDER BY t.o) AS member
          FROM tokens t
         WHERE t.o > 1
    ), split AS (
        SELECT x.member, x.o, x.tok,
               min(x.o) FILTER (WHERE x.tok = ':' AND x.depth = 1) OVER (PARTITION BY x.member) AS colon
          FROM members x
         WHERE x.depth >= 1 AND NOT (x.tok = ',' AND x.depth = 1)
    )
    SELECT (string_agg(s.tok, '' ORDER BY s.o) FILTER (WHERE s.o < s.colon))::json #>> '{}',
           string_agg(s.tok, '' ORDER BY s.o) FILTER (WHERE s.o > s.colon)
      FROM split s
     GROUP BY s.member
     ORDER BY s.member
$$;
COMMENT ON FUNCTION @schema@._json_members(json) IS
    'The keys and the JSON text of the values of a JSON object, as written (nothing unescaped but the keys).';

CREATE OR REPLACE FUNCTION @schema@._json_row_image(r json)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN NOT @schema@._json_refused(r) THEN r::jsonb
                ELSE (SELECT jsonb_object_agg(m.key, CASE WHEN m.refused THEN @schema@._omitted(m.value) ELSE m.value::jsonb END)
                             || jsonb_build_object('', coalesce(jsonb_agg(m.key) FILTER (WHERE m.refused), '[]'))
                        FROM (SELECT x.key, x.value, @schema@._json_refused(x.value::json) AS refused
                                FROM @schema@._json_members(r) AS x OFFSET 0) AS m) END
$$;
COMMENT ON FUNCTION @schema@._json_row_image(json) IS
    'A row image from the row''s JSON text, each value jsonb cannot hold replaced by its marker and named under the key ''''.';

-- The images of rows given as JSON text (a row that passes the quick check as a whole taken as is),
-- and apart from them the columns each image replaced, but those named `unnamed` (the excluded ones,
-- which the stored image leaves out), or NULL for a row whose image replaced none.
CREATE OR REPLACE FUNCTION @schema@._json_images(rows json[], unnamed text[])
RETURNS TABLE (images jsonb[], replaced jsonb[])
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(i.image - '' ORDER BY i.o), array_agg((i.image -> '') - coalesce(unnamed, '{}') ORDER BY i.o)
      FROM (SELECT r.o, CASE WHEN @schema@._jsonb_takes(r.j::text) THEN r.j::jsonb ELSE @schema@._json_row_image(r.j) END AS image
              FROM unnest(rows) WITH ORDINALITY AS r(j, o)
            OFFSET 0) AS i
$$;
COMMENT ON FUNCTION @schema@._json_images(json[], text[]) IS
    'Row images from rows as JSON text (the sandbox''s _row_json), where the whole rows failed (see _json_row_image), '
    'and the columns each replaced.';

-- Each column of a table with every type it is made of: its own, and through domains, arrays,
-- composite types (attribute by attribute), ranges and multiranges, the types beneath; printed when
-- reached only beneath a range, whose value prints whole, as a string.
CREATE OR REPLACE FUNCTION @schema@._column_parts(target oid)
RETURNS TABLE (attname name, typ oid, printed boolean)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE r(attname, typ, printed) AS (
        SELECT a.attname, a.atttypid, false FROM pg_attribute a WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped
        UNION
        SELECT r.attname, b.typ, r.printed OR b.printed
          FROM r JOIN pg_type y ON y.oid = r.typ,
               LATERAL (SELECT y.typbasetype, false WHERE y.typtype = 'd'
                        UNION ALL SELECT y.typelem, false WHERE y.typelem <> 0 AND y.typsubscript = 'array_subscript_handler'::regproc
                        UNION ALL SELECT a.atttypid, false FROM pg_attribute a
                                   WHERE y.typtype = 'c' AND a.attrelid = y.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                        UNION ALL SELECT g.rngsubtype, true FROM pg_range g WHERE y.typtype = 'r' AND g.rngtypid = y.oid
                        UNION ALL SELECT g.rngtypid, true FROM pg_range g WHERE y.typtype = 'm' AND g.rngmultitypid = y.oid
                       ) AS b(typ, printed)
    )
    SELECT r.attname, r.typ, bool_and(r.printed) FROM r GROUP BY r.attname, r.typ
$$;
COMMENT ON FUNCTION @schema@._column_parts(oid) IS
    'Each column of a table with every type it is made of, through domains, arrays, composites and ranges; '
    'printed: only beneath a range.';

-- What the key and tenant columns of a table are made of, as their values read in events: each
-- one's types at every depth by column number (renames keep it; a domain counted as the type
-- beneath it, varchar as text, which print alike), each composite's attributes by number and type,
-- each enum's labels by value oid. A retype that rewrites nothing (int to oid) or an enum's value
-- renamed changes it, and the text of every stored value with it; a varchar widened or made text, a
-- value added to an enum, a constraint on a domain do not (_take_name_types).
CREATE OR REPLACE FUNCTION @schema@._name_types(target oid, tenant_attnum int2)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- As the values print: a domain as the type beneath it, varchar as text (trial 89, n8).
    WITH parts AS (
        SELECT a.attnum, CASE WHEN p.typ = 'varchar'::regtype THEN 'text'::regtype::oid ELSE p.typ END AS typ
          FROM pg_attribute a JOIN @schema@._column_parts(target) p ON p.attname = a.attname
          JOIN pg_type y ON y.oid = p.typ
         WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped AND y.typtype <> 'd'
           AND (a.attname = ANY (coalesce(@schema@._key_columns(target), '{}')) OR a.attnum = tenant_attnum)
    )
    SELECT jsonb_build_object(
        'columns', coalesce((SELECT jsonb_object_agg(c.attnum, c.types)
                               FROM (SELECT attnum, jsonb_agg(DISTINCT typ ORDER BY typ) AS types FROM parts GROUP BY attnum) c), '{}'),
        'attributes', coalesce((SELECT jsonb_object_agg(y.oid, (SELECT coalesce(jsonb_agg(jsonb_build_array(a.attnum, a.atttypid)
                                                                                        ORDER BY a.attnum), '[]')
                                                                  FROM pg_attribute a
                                                                 WHERE a.attrelid = y.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
                                  FROM pg_type y WHERE y.oid IN (SELECT typ FROM parts) AND y.typtype = 'c'), '{}'),
        'labels', coalesce((SELECT jsonb_object_agg(e.oid, e.enumlabel) FROM pg_enum e
                             WHERE e.enumtypid IN (SELECT typ FROM parts)), '{}'))
$$;
COMMENT ON FUNCTION @schema@._name_types(oid, int2) IS
    'What a table''s key and tenant columns are made of: types by column number, composites'' attributes, enum labels.';

-- What changed between what a table's key and tenant columns were taken to be made of and what they
-- are (both from _name_types), after which their stored values read otherwise; NULL if nothing did.
-- Only what was taken and still is: a column dropped or a key changed is refused on its own
-- (_refuse_lost_names), a key given to a keyless table is new, an enum's value added reads as before.
CREATE OR REPLACE FUNCTION @schema@._name_type_changes(target oid, taken jsonb, made_of jsonb)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(x.what, '; ') FROM (
        SELECT format('column %s is now made of other types', quote_ident(a.attname)) AS what
          FROM jsonb_each(taken -> 'columns') c JOIN pg_attribute a ON a.attrelid = target AND a.attnum = c.key::int2
         WHERE made_of -> 'columns' ? c.key AND made_of -> 'columns' -> c.key <> c.value
        UNION ALL
        SELECT format('the attributes of type %s changed', c.key::oid::regtype)
          FROM jsonb_each(taken -> 'attributes') c
         WHERE made_of -> 'attributes' ? c.key AND made_of -> 'attributes' -> c.key <> c.value
        UNION ALL
        SELECT format('the value %s of type %s is now %s', quote_literal(c.value), e.enumtypid::regtype,
                      quote_literal(e.enumlabel))
          FROM jsonb_each_text(taken -> 'labels') c JOIN pg_enum e ON e.oid = c.key::oid
         WHERE e.enumlabel IS DISTINCT FROM c.value) x
$$;
COMMENT ON FUNCTION @schema@._name_type_changes(oid, jsonb, jsonb) IS
    'What changed in what a table''s key and tenant columns are made of, as _name_types gives it; NULL if nothing that '
    'changes how their values read.';

-- The columns of a table of a type, or of anything holding it at any depth (beneath a range too).
CREATE OR REPLACE FUNCTION @schema@._columns_made_of(target oid, made_of oid)
RETURNS name[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT p.attname), '{}') FROM @schema@._column_parts(target) p WHERE p.typ = made_of
$$;
COMMENT ON FUNCTION @schema@._columns_made_of(oid, oid) IS
    'The columns of a table of a type, or of a domain, array, composite or range holding it at any depth.';

-- The columns of a table of type json, or of an array, domain or composite type holding it (a range
-- prints its bounds as a string: not beneath one).
CREATE OR REPLACE FUNCTION @schema@._json_columns(target oid)
RETURNS name[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT p.attname), '{}') FROM @schema@._column_parts(target) p
     WHERE p.typ = 'json'::regtype AND NOT p.printed
$$;
COMMENT ON FUNCTION @schema@._json_columns(oid) IS 'The columns of a table of type json, or an array, domain or composite holding json.';

-- The columns that cannot be a tenant column. tenant_id is the value's image as text (->>), a JSON
-- string's without its quotes: a jsonb column's "1" and 1 ("true" and true, a string and the array
-- or object it spells, JSON null and NULL) would name one tenant. And an array's image keeps no
-- bounds: '{1,2}' and '[0:1]={1,2}', two tenants, would be one (tests/test_trust_attacks_84.py, k1,
-- k2). jsonb through domains; arrays through domains and composites (a range prints them whole).
CREATE OR REPLACE FUNCTION @schema@._columns_unfit_for_tenant(target oid)
RETURNS name[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE d(attname, typ) AS (
        SELECT a.attname, a.atttypid FROM pg_attribute a WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped
        UNION
        SELECT d.attname, y.typbasetype FROM d JOIN pg_type y ON y.oid = d.typ WHERE y.typtype = 'd'
    )
    SELECT coalesce(array_agg(DISTINCT x.attname), '{}')
      FROM (SELECT d.attname FROM d WHERE d.typ = 'jsonb'::regtype
            UNION ALL
            SELECT p.attname FROM @schema@._column_parts(target) p JOIN pg_type y ON y.oid = p.typ
             WHERE NOT p.printed AND y.typelem <> 0 AND y.typsubscript = 'array_subscript_handler'::regproc) x
$$;
COMMENT ON FUNCTION @schema@._columns_unfit_for_tenant(oid) IS
    'The columns of a table that cannot name a tenant: jsonb (through domains), or made of an array.';

-- The columns of a table made of a composite type with a dropped attribute, at any depth (beneath a
-- range too): values that differed only in it print alike, and compare equal.
CREATE OR REPLACE FUNCTION @schema@._columns_with_dropped_attributes(target oid)
RETURNS name[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT p.attname), '{}') FROM @schema@._column_parts(target) p JOIN pg_type y ON y.oid = p.typ
     WHERE y.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = y.typrelid AND a.attisdropped)
$$;
COMMENT ON FUNCTION @schema@._columns_with_dropped_attributes(oid) IS
    'The columns of a table made of a composite type that has a dropped attribute, at any depth.';

-- Generator: a row image of the transition row x: to_jsonb(x.*), unless the table has a json column.
-- Then that too while each json value passes _jsonb_takes (checked once a row); else column by column
-- (jsonb_build_object prints each value as to_jsonb of the row does), the json ones through
-- _json_image, with the columns whose value it replaced under the key '' (no column's name: an
-- identifier is never empty), which _gen_json_split takes off again. Names a table's columns: for a
-- body regenerated when a column changes (inline) only. Excluded and redacted columns are not named
-- as replaced: the stored image leaves them out or redacts them.
CREATE OR REPLACE FUNCTION @schema@._gen_row_image(target oid, t @schema@.tracked_tables)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH j AS (SELECT unnest(@schema@._json_columns(target)) AS c),
    cols AS (SELECT a.attname, j.c IS NOT NULL AS json, (row_number() OVER (ORDER BY a.attnum) - 1) / 50 AS chunk,
                    a.attnum
               FROM pg_attribute a LEFT JOIN j ON j.c = a.attname
              WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped)
    SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM j) THEN 'pg_catalog.to_jsonb(x.*)'
                ELSE format('CASE WHEN %s THEN pg_catalog.to_jsonb(x.*) ELSE %s || pg_catalog.jsonb_build_object(%L,'
                            ' pg_catalog.to_jsonb(pg_catalog.array_remove(ARRAY[%s]::text[], NULL))) END',
                    (SELECT string_agg(format('coalesce(@schema@._jsonb_takes(x.%I::text), true)', c), ' AND ' ORDER BY c) FROM j),
                    (SELECT string_agg(format('pg_catalog.jsonb_build_object(%s)', g.pairs), ' || ' ORDER BY g.chunk)
                       FROM (SELECT chunk, string_agg(format(CASE WHEN json THEN '%1$L, @schema@._json_image(x.%1$I)'
                                                                  ELSE '%1$L, x.%1$I' END, attname), ', ' ORDER BY attnum) AS pairs
                               FROM cols GROUP BY chunk) g),
                    '',
                    coalesce((SELECT string_agg(format('CASE WHEN @schema@._json_omitted(x.%1$I) THEN %1$L END', c), ', ' ORDER BY c)
                                FROM j WHERE c <> ALL (coalesce(t.exclude_columns, '{}') || coalesce(t.redact_columns, '{}'))),
                             'NULL')) END
$$;
COMMENT ON FUNCTION @schema@._gen_row_image(oid, @schema@.tracked_tables) IS
    'Generator: the row image of transition row x (column by column where a json value may be replaced, '
    'which are named under the key '''').';

-- Generator: an image made by _gen_row_image, and the columns whose value it replaced, apart.
CREATE OR REPLACE FUNCTION @schema@._gen_json_split(image text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('CASE WHEN %1$s OPERATOR(pg_catalog.?) '''' THEN %1$s OPERATOR(pg_catalog.-) ''''::text ELSE %1$s END', image)
$$;
COMMENT ON FUNCTION @schema@._gen_json_split(text) IS 'Generator: an image made by _gen_row_image without the key ''''.';

-- The payload with the json values an image replaced named (see _note_omitted).
CREATE OR REPLACE FUNCTION @schema@._note_json_omitted(payload jsonb, image text, keys jsonb)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE WHEN keys IS NULL OR keys OPERATOR(pg_catalog.=) '[]'::jsonb THEN payload
                ELSE @schema@._note_omitted(payload, image, ARRAY(SELECT pg_catalog.jsonb_array_elements_text(keys))) END
$$;
COMMENT ON FUNCTION @schema@._note_json_omitted(jsonb, text, jsonb) IS
    'The payload with the json values an image replaced added to payload.omitted.<image>.';

-- The settings a table's capture function pins: those that change how its columns' types print
-- (geometric types print floats; a timestamptz prints its offset in the session's time zone, which
-- also makes it a key's text). A built-in range prints its bounds with their output functions, where
-- DateStyle counts too: it gets them all. The sandbox pins them all.
CREATE OR REPLACE FUNCTION @schema@._capture_settings(target oid)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH builtin AS (
        SELECT y.typname, y.typtype FROM @schema@._column_types(target) c JOIN pg_type y ON y.oid = c.typ
         WHERE y.typnamespace = 'pg_catalog'::regnamespace
    )
    SELECT ARRAY['search_path=pg_catalog, pg_temp']
        || ARRAY(SELECT s.setting FROM (VALUES
               ('extra_float_digits=1', ARRAY['float4', 'float8', 'point', 'lseg', 'path', 'box', 'polygon', 'line', 'circle']),
               ('IntervalStyle=postgres', ARRAY['interval']),
               ('bytea_output=hex', ARRAY['bytea']),
               ('lc_monetary=C', ARRAY['money']),
               ('TimeZone=UTC', ARRAY['timestamptz']),
               ('quote_all_identifiers=off', ARRAY['regclass', 'regcollation', 'regconfig', 'regdictionary', 'regnamespace',
                                                   'regoper', 'regoperator', 'regproc', 'regprocedure', 'regrole', 'regtype']),
               ('DateStyle=ISO', ARRAY[]::name[])) AS s(setting, types)
                WHERE EXISTS (SELECT 1 FROM builtin b WHERE b.typname = ANY (s.types) OR b.typtype IN ('r', 'm'))
                ORDER BY 1)
$$;
COMMENT ON FUNCTION @schema@._capture_settings(oid) IS
    'The SET clauses of a table''s capture function: search_path, and the output settings its column types need.';

-- No captured row may stop the sealer (a jsonb holds at most 256 MB, and an UPDATE's "changed"
-- doubles what the row holds): a row image over 1 MiB keeps its columns, but the largest values,
-- largest first, are replaced until it fits by {"$omitted": {"bytes": N, "sha256": "<hex>"}}, the
-- size and SHA-256 of the value's JSON text. These are the keys of those values, chosen by their
-- stored sizes alone (_longest_first), so that the capture can name them in the event's payload
-- without printing anything twice. Called only for images over the bound.
CREATE OR REPLACE FUNCTION @schema@._large_value_keys(image jsonb)
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys text[] := ARRAY(SELECT jsonb_object_keys(image));
    sizes bigint[] := '{}';
    k text;
BEGIN
    IF pg_column_size(image) <= 1048576 THEN
        RETURN '{}';
    END IF;
    FOREACH k IN ARRAY keys LOOP  -- simple expressions: no value passes through a query
        sizes := sizes || pg_column_size(image -> k)::bigint;
    END LOOP;
    RETURN @schema@._longest_first(keys, sizes, pg_column_size(image));
END
$$;
COMMENT ON FUNCTION @schema@._large_value_keys(jsonb) IS
    'The keys of a row image over 1 MiB whose values, largest first, are replaced until it fits (none if it does).';

CREATE OR REPLACE FUNCTION @schema@._omit_large_values(image jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
BEGIN
    FOREACH k IN ARRAY @schema@._large_value_keys(image) LOOP
        image := image || jsonb_build_object(k, @schema@._omitted((image -> k)::text));
    END LOOP;
    RETURN image;
END
$$;
COMMENT ON FUNCTION @schema@._omit_large_values(jsonb) IS
    'A row image over 1 MiB with its largest values replaced by their size and SHA-256 until it fits.';

-- An UPDATE's columns among these (values the capture replaces in either image) whose values differ
-- before they are replaced, as {"column": null}: the sealer shows them as changed with their
-- stored values (_changed_as_captured), though a value and a written copy of its marker store alike.
CREATE OR REPLACE FUNCTION @schema@._omitted_changes(before jsonb, after jsonb, keys text[])
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(k, 'null'::jsonb), '{}')
      FROM (SELECT DISTINCT unnest(keys)) AS x(k)
     WHERE before -> x.k IS DISTINCT FROM after -> x.k
$$;
COMMENT ON FUNCTION @schema@._omitted_changes(jsonb, jsonb, text[]) IS
    'Of these keys, those whose values differ between two captured row images, as {"key": null}.';

-- Whether each old row is stored as its new row is, the rows paired by position: their bytes, value
-- by value (record_image_eq, *=), so that no output function, operator or cast runs and no number is
-- printed. For an UPDATE whose images cannot tell (_capture_body). Inlined where it is called.
CREATE OR REPLACE FUNCTION @schema@._stored_alike(old_rows anyarray, new_rows anyarray)
RETURNS boolean[]
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT pg_catalog.array_agg(old_rows[i] OPERATOR(pg_catalog.*=) new_rows[i] ORDER BY i)
      FROM pg_catalog.generate_subscripts(old_rows, 1) AS i
$$;
COMMENT ON FUNCTION @schema@._stored_alike(anyarray, anyarray) IS
    'For rows paired by position: whether each pair is stored alike, byte for byte (*=).';

-- What the log's indexes can hold (an index entry is at most about 2.7 kB): a longer value would stop
-- the sealer, so the writer's statement is refused and nothing is written unaudited. The writers
-- check (record() with its own messages, the capture functions, a baseline): CHECK constraints on
-- the intake did the same until migration 0019, but every statement that wrote there parsed all
-- eight of them again, a third of a single-row capture's cost (docs/benchmarks.md). The error keeps
-- the constraint's SQLSTATE and name.
CREATE OR REPLACE FUNCTION @schema@._refuse_too_long(field text, bound integer, got integer)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% is % characters, more than the % the audit log holds (%_at_most_%_characters)',
        field, got, bound, field, bound
        USING ERRCODE = 'check_violation', CONSTRAINT = format('%s_at_most_%s_characters', field, bound);
END
$$;
COMMENT ON FUNCTION @schema@._refuse_too_long(text, integer, integer) IS
    'Raises check_violation: a value longer than the log holds (called by the writers of the intake).';

-- The value of a tenant or key column that holds json, which only a table tracked before such columns
-- were refused has (status names it): the value, or the write refused where it is a marker, the
-- capture's or a writer's look-alike, whose text names no tenant and no row
-- (tests/test_trust_attacks_79.py, t8; tests/test_trust_attacks_80.py, r8).
CREATE OR REPLACE FUNCTION @schema@._json_named(value jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF jsonb_typeof(value) = 'object' AND value ? '$omitted' THEN
        RAISE EXCEPTION 'a tenant or key column holds json that no row image holds: refused, as it would name no tenant or row'
            USING ERRCODE = 'check_violation',
                  HINT = 'Disable and enable the table''s tracking once its tenant and key columns hold no json.';
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION @schema@._json_named(jsonb) IS
    'A json tenant or key value as given; check_violation for a marker (called by capture functions).';

CREATE OR REPLACE FUNCTION @schema@._refuse_long_context(tenant text, actor_type text, actor_id text, correlation text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF char_length(tenant) > 256 THEN
        PERFORM @schema@._refuse_too_long('tenant_id', 256, char_length(tenant));
    ELSIF char_length(actor_type) > 64 THEN
        PERFORM @schema@._refuse_too_long('actor_type', 64, char_length(actor_type));
    ELSIF char_length(actor_id) > 256 THEN
        PERFORM @schema@._refuse_too_long('actor_id', 256, char_length(actor_id));
    ELSIF char_length(correlation) > 256 THEN
        PERFORM @schema@._refuse_too_long('correlation_id', 256, char_length(correlation));
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_long_context(text, text, text, text) IS
    'Raises check_violation if a context value is longer than the log holds (see _refuse_too_long).';

-- The generated body, for a table covered by tracking entry t (its own, or its tracked ancestor's).
-- Every piece of user text goes through %L; the pieces of code are this function's own.
-- Raised from a capture function (see _capture_body): the statement is refused, nothing is lost.
CREATE OR REPLACE FUNCTION @schema@._unpaired_update(target oid)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'an UPDATE of % lost rows between their old and new versions (a trigger suppressed a row moved to another partition): refused, since capture could not tell which row became which', target::regclass
        USING ERRCODE = 'PA008';
END
$$;
COMMENT ON FUNCTION @schema@._unpaired_update(oid) IS
    'Raises PA008 for an UPDATE whose old and new rows do not pair up (called by capture functions).';

CREATE OR REPLACE FUNCTION @schema@._capture_body(target oid, t @schema@.tracked_tables)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Inline only while the event triggers are there to regenerate this when a column changes.
    inline boolean := @schema@._builtin_column_types(target) AND @schema@._schema_changes_followed();
    redacted jsonb := (SELECT jsonb_object_agg(c, '[redacted]') FROM unnest(t.redact_columns) c);
    excluded text := CASE WHEN cardinality(t.exclude_columns) > 0 THEN format('%L::text[]', t.exclude_columns) END;
    -- The excluded columns an UPDATE may change and still be a no-op: never the key or the tenant
    -- column, whose change moves the row to another name or tenant even where its images omit them.
    ignored text := (SELECT CASE WHEN count(*) > 0 THEN format('%L::text[]', array_agg(c)) END
                       FROM unnest(t.exclude_columns) c
                      WHERE c <> ALL (coalesce(t.key_columns, '{}') || coalesce(t.tenant_column, '')));
    new_rows text;
    old_rows text;
    pairs text;
    prepare_insert text := '';
    prepare_update text := '';
    prepare_delete text := '';
    redact_changed text := 'NULL';
    -- A captured row's id: the statement's id with the row's number added to its last 48 bits.
    id_of text := '(v_id_prefix || pg_catalog.lpad(pg_catalog.to_hex((v_id_base + %s) & 281474976710655), 12, ''0''))::uuid';
    pair_filter text;  -- UPDATE: refuse rows that do not pair up; skip no-op updates if asked
    -- An UPDATE that moves a row to another tenant is two events, each filed under one tenant with
    -- that tenant's image alone (s.side 1: the old tenant's, row_before; 2: the new one's,
    -- row_after; 0: a row that stays, one event as usual): no tenant reads another's version.
    split boolean := t.tenant_column IS NOT NULL;
    named_by text := CASE WHEN split THEN '(CASE s.side WHEN 1 THEN p.o ELSE p.n END)' ELSE 'p.n' END;  -- key, tenant
    -- Types whose values to_jsonb prints alike although they differ as stored: a json value's
    -- duplicate keys, key order and spacing, a float's -0 or NaN, a numeric's (or a jsonb number's)
    -- trailing zeros, an array's bounds, an xml declaration. An UPDATE of a table made of one is a no-op only if the rows are stored alike
    -- too (_stored_alike): the whole rows, or with excluded columns the others, named, which only a
    -- body regenerated when a column changes may do (inline). Without that, the images alone
    -- decide (docs/capture.md).
    compare_stored boolean := t.skip_noop_updates AND (ignored IS NULL OR inline)
        AND (SELECT bool_or(c.typ IN ('json'::regtype, 'jsonb'::regtype, 'float4'::regtype, 'float8'::regtype,
                                      'numeric'::regtype, 'xml'::regtype)
                            OR y.typcategory IN ('A', 'G'))  -- an array's bounds; a geometric type's floats
               FROM @schema@._column_types(target) c JOIN pg_type y ON y.oid = c.typ);
    kept text := CASE WHEN ignored IS NULL THEN 'x.*'
                      ELSE (SELECT 'ROW(' || string_agg(format('x.%I', a.attname), ', ' ORDER BY a.attnum) || ')'
                              FROM pg_attribute a
                             WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped
                               AND (a.attname <> ALL (t.exclude_columns)
                                    OR a.attname = ANY (coalesce(t.key_columns, '{}') || coalesce(t.tenant_column, '')))) END;
    rows_stored text := format(', pg_catalog.unnest(@schema@._stored_alike('
                                        '(SELECT pg_catalog.array_agg(%1$s) FROM old_rows AS x),'
                                        ' (SELECT pg_catalog.array_agg(%1$s) FROM new_rows AS x)))', kept);
    -- v_new, v_old := the sandbox's images of the rows in new_rows and old_rows, in a subtransaction
    -- rolled back at once: whatever the user's code changed for the session (a setting made with SET,
    -- which no SET clause undoes; search_path above all) is undone with it, and only the images,
    -- variables, survive. PA016 is raised and caught here only; raised by the user's code instead,
    -- it goes on.
    -- Where the rows hold json that jsonb cannot, their JSON text from the sandbox instead, imaged value
    -- by value (_json_images), in a subtransaction of its own as the first attempt was.
    sandboxed constant text := 'v_imaged := false;
        BEGIN
            %1$s
            v_imaged := true;
            RAISE SQLSTATE ''PA016'';
        EXCEPTION WHEN SQLSTATE ''PA016'' THEN
            IF NOT v_imaged THEN
                RAISE;
            END IF;
        WHEN untranslatable_character OR invalid_text_representation OR numeric_value_out_of_range
             OR statement_too_complex THEN
            BEGIN
                %2$s
                v_imaged := true;
                RAISE SQLSTATE ''PA016'';
            EXCEPTION WHEN SQLSTATE ''PA016'' THEN
                IF NOT v_imaged THEN
                    RAISE;
                END IF;
            END;
        END;';
    -- A table with json columns, inline: its rows imaged column by column, and the json values an
    -- image replaced named in the payload (_gen_row_image). Not inline, any table: where its images
    -- come from _json_images, the columns replaced come in v_new_keys and v_old_keys (NULL else). The
    -- body names no column there: the excluded and redacted ones are taken off as the statement runs.
    json_table boolean := NOT inline OR cardinality(@schema@._json_columns(target)) > 0;
    row_image text := CASE WHEN inline THEN @schema@._gen_row_image(target, t) END;
    image_new constant text := 'v_new := @schema@._row_images((SELECT pg_catalog.array_agg(x.*) FROM new_rows AS x));';
    image_old constant text := 'v_old := @schema@._row_images((SELECT pg_catalog.array_agg(x.*) FROM old_rows AS x));';
    -- The replaced columns but the excluded ones, whose changes never count: a redacted column's do
    -- (tests/test_trust_attacks_82.py, u5), so it is named until the payload's note, which leaves it out.
    json_new constant text := format('SELECT i.images, i.replaced INTO v_new, v_new_keys FROM @schema@._json_images(@schema@._row_json('
                                     '(SELECT pg_catalog.array_agg(x.*) FROM new_rows AS x)), %L::text[]) AS i;',
                                     coalesce(t.exclude_columns, '{}'));
    json_old constant text := format('SELECT i.images, i.replaced INTO v_old, v_old_keys FROM @schema@._json_images(@schema@._row_json('
                                     '(SELECT pg_catalog.array_agg(x.*) FROM old_rows AS x)), %L::text[]) AS i;',
                                     coalesce(t.exclude_columns, '{}'));
    unnamed_redacted text := CASE WHEN NOT inline AND cardinality(t.redact_columns) > 0
                                  THEN format(' - %L::text[]', t.redact_columns) END;
    jo_named text := CASE WHEN unnamed_redacted IS NULL THEN 'p.jo' ELSE '(p.jo' || unnamed_redacted || ')' END;
    jn_named text := CASE WHEN unnamed_redacted IS NULL THEN 'p.jn' ELSE '(p.jn' || unnamed_redacted || ')' END;
    jk_named text := CASE WHEN unnamed_redacted IS NULL THEN 'r.jk' ELSE '(r.jk' || unnamed_redacted || ')' END;
BEGIN
    compare_stored := compare_stored AND kept IS NOT NULL;  -- every column excluded: nothing to compare
    IF inline THEN
        -- Each row image once per row (OFFSET 0); x.* is the whole row even with a column named x. A
        -- json table's image comes apart from the columns it replaced (_gen_row_image).
        new_rows := CASE WHEN json_table
                         THEN format('(SELECT %s AS j, s.j -> '''' AS jk FROM (SELECT %s AS j FROM new_rows AS x OFFSET 0) AS s'
                                     ' OFFSET 0) AS q', @schema@._gen_json_split('s.j'), row_image)
                         ELSE format('(SELECT %s AS j FROM new_rows AS x OFFSET 0) AS q', row_image) END;
        old_rows := CASE WHEN json_table
                         THEN format('(SELECT %s AS j, s.j -> '''' AS jk FROM (SELECT %s AS j FROM old_rows AS x OFFSET 0) AS s'
                                     ' OFFSET 0) AS q', @schema@._gen_json_split('s.j'), row_image)
                         ELSE format('(SELECT %s AS j FROM old_rows AS x OFFSET 0) AS q', row_image) END;
        pairs := format('ROWS FROM (pg_catalog.unnest(ARRAY(SELECT %1$s FROM old_rows AS x)),'
                        ' pg_catalog.unnest(ARRAY(SELECT %1$s FROM new_rows AS x))', row_image);
    ELSE
        -- x.* as a function's argument is the whole row, even when the table has a column named x.
        -- A user's cast may SET search_path (not LOCAL), which outlives every SET clause: the
        -- statements after it, planned again, would call the user's operators as this role.
        prepare_insert := format(sandboxed, image_new, json_new);
        prepare_delete := format(sandboxed, image_old, json_old);
        prepare_update := format(sandboxed, image_old || image_new, json_old || json_new);
        new_rows := 'ROWS FROM (pg_catalog.unnest(v_new), pg_catalog.unnest(v_new_keys)) AS q(j, jk)';
        old_rows := 'ROWS FROM (pg_catalog.unnest(v_old), pg_catalog.unnest(v_old_keys)) AS q(j, jk)';
        pairs := 'ROWS FROM (pg_catalog.unnest(v_old), pg_catalog.unnest(v_new), pg_catalog.unnest(v_old_keys),'
                 ' pg_catalog.unnest(v_new_keys)';
    END IF;
    pairs := pairs || CASE WHEN compare_stored THEN rows_stored ELSE '' END || ') AS p(o, n'
                   || CASE WHEN NOT inline THEN ', jo, jn' ELSE '' END || CASE WHEN compare_stored THEN ', alike)' ELSE ')' END;
    IF json_table AND inline THEN
        pairs := format('(SELECT %s AS o, %s AS n, p.o -> '''' AS jo, p.n -> '''' AS jn%s FROM %s OFFSET 0) AS p',
                        @schema@._gen_json_split('p.o'), @schema@._gen_json_split('p.n'),
                        CASE WHEN compare_stored THEN ', p.alike' ELSE '' END, pairs);
    END IF;
    IF redacted IS NOT NULL THEN
        -- Both images hold the marker: note which redacted columns changed while the values are at hand.
        -- Not inline, a value replaced by its marker on one side only changed too (trial 82, u5).
        redact_changed := format('NULLIF(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(%s)), ''{}'')',
            (SELECT string_agg(format('%L, CASE WHEN p.o -> %L IS DISTINCT FROM p.n -> %L%s THEN %L::jsonb END',
                                      c, c, c,
                                      CASE WHEN NOT inline
                                           THEN format(' OR (coalesce(p.jo, ''[]''::jsonb) ? %1$L) <> (coalesce(p.jn, ''[]''::jsonb) ? %1$L)', c)
                                           ELSE '' END,
                                      '{"old": "[redacted]", "new": "[redacted]"}'), ', ')
               FROM unnest(t.redact_columns) c));
    END IF;
    -- Old and new rows pair by position; a row deleted by its move to another partition whose
    -- trigger suppressed the insert has no new version, and would shift every pair after it.
    -- One CASE, so that the check comes first (the planner orders separate conditions by cost).
    -- Where the images alone decide and come from the rows' JSON text (not inline), a value replaced
    -- by its marker on one side only is a change too: the other side's may be a writer's look-alike
    -- of the marker (tests/test_trust_attacks_81.py, m8).
    pair_filter := format(' WHERE CASE WHEN p.o IS NULL OR p.n IS NULL THEN @schema@._unpaired_update(%s::oid) ELSE %s END',
                   target, CASE WHEN NOT t.skip_noop_updates THEN 'true'
                                WHEN compare_stored AND ignored IS NULL THEN 'p.o <> p.n OR NOT p.alike'
                                WHEN compare_stored THEN format('(p.o - %1$s) <> (p.n - %1$s) OR NOT p.alike', ignored)
                                WHEN ignored IS NULL THEN 'p.o <> p.n'
                                ELSE format('(p.o - %1$s) <> (p.n - %1$s)', ignored) END
                           || CASE WHEN t.skip_noop_updates AND NOT compare_stored AND NOT inline
                                   THEN ' OR coalesce(p.jo, ''[]''::jsonb) <> coalesce(p.jn, ''[]''::jsonb)' ELSE '' END);

    RETURN format($body$
DECLARE
    v_role text := @schema@._db_role();
    v_actor_type text := @schema@._context('actor_type');
    v_actor_id text := @schema@._context('actor_id');
    v_tenant text := @schema@._context('tenant_id');
    v_correlation text := @schema@._context('correlation_id');
    -- The connection's address, unless the application names one (the rare case, in the body below:
    -- an expression PL/pgSQL never evaluates costs nothing, and each one evaluated is set up again in
    -- every transaction).
    v_addr inet := pg_catalog.inet_client_addr();
    v_app text := pg_catalog.current_setting('application_name');
    v_txid xid8 := pg_catalog.pg_current_xact_id();
    -- When the capture ran, at the statement's end: statement_timestamp() is the client's statement's start,
    -- which a procedure or function keeps however long it runs, through its COMMITs (trial 62).
    v_at timestamptz := pg_catalog.clock_timestamp();
    -- One time-ordered id per statement (_new_event_id), its rows' ids counted up from it: made
    -- row by row, an id costs the writer 1.4 us a row against 0.2 (docs/benchmarks.md).
    v_id text := pg_catalog.replace(@schema@._new_event_id()::text, '-', '');
    v_id_prefix text := pg_catalog.left(v_id, 20);
    v_id_base bigint := ('x' || pg_catalog.right(v_id, 12))::bit(48)::bigint;
    v_new jsonb[];
    v_old jsonb[];
    v_imaged boolean;%35$s
BEGIN
    -- Only for the table it was made for, and only as that table's capture trigger of this
    -- operation: attached to another table it refuses, so no look-alike table can write history
    -- under this table's name.
    IF TG_RELID <> %1$s::oid OR TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'STATEMENT'
       OR TG_NAME <> '@schema@_capture_' || pg_catalog.lower(TG_OP) THEN
        RAISE EXCEPTION 'the capture function of table %% cannot run as trigger %% on table %%', %1$s, TG_NAME, TG_RELID
            USING ERRCODE = 'PA008';
    END IF;
    -- The context is read once per statement, each row image once per row.
    IF v_actor_id IS NULL AND v_actor_type IS NULL THEN
        v_actor_type := 'db_role';
        v_actor_id := v_role;
    END IF;
    v_actor_type := coalesce(v_actor_type, 'user');
    IF @schema@._context('client_addr') IS NOT NULL THEN
        v_addr := @schema@._client_addr();
    END IF;
    IF TG_OP = 'INSERT' THEN
        %2$s
        INSERT INTO @schema@.event_intake (id, tenant_id, actor_type, actor_id, db_role, client_addr,
            application_name, kind, target_type, target_id, outcome, correlation_id, txid, occurred_at,
            payload, row_after, origin)
        SELECT %25$s, %3$s, v_actor_type, v_actor_id, v_role, v_addr, v_app, %4$L, %5$L, %6$s, 'success',
               v_correlation, v_txid, v_at, %27$s, %7$s, 'capture'
          FROM (SELECT q.j, %8$s AS i%33$s, pg_catalog.row_number() OVER () AS k FROM %9$s OFFSET 0) AS r;
    ELSIF TG_OP = 'UPDATE' THEN
        %10$s
        -- Old and new transition rows come in the same order: paired by position.
        INSERT INTO @schema@.event_intake (id, tenant_id, actor_type, actor_id, db_role, client_addr,
            application_name, kind, target_type, target_id, outcome, correlation_id, txid, occurred_at,
            payload, row_before, row_after, changed, origin)
        SELECT %26$s, %11$s, v_actor_type, v_actor_id, v_role, v_addr, v_app, %12$L, %5$L, %13$s, 'success',
               v_correlation, v_txid, v_at, %24$s, %14$s, %15$s, %16$s, 'capture'
          FROM (SELECT p.o, p.n%34$s, %22$s AS img_old, %23$s AS img_new, %29$s AS moved, pg_catalog.row_number() OVER () AS k
                  FROM %17$s%18$s OFFSET 0) AS p%32$s;
    ELSE
        %19$s
        INSERT INTO @schema@.event_intake (id, tenant_id, actor_type, actor_id, db_role, client_addr,
            application_name, kind, target_type, target_id, outcome, correlation_id, txid, occurred_at,
            payload, row_before, origin)
        SELECT %25$s, %3$s, v_actor_type, v_actor_id, v_role, v_addr, v_app, %20$L, %5$L, %6$s, 'success',
               v_correlation, v_txid, v_at, %28$s, %7$s, 'capture'
          FROM (SELECT q.j, %8$s AS i%33$s, pg_catalog.row_number() OVER () AS k FROM %21$s OFFSET 0) AS r;
    END IF;
    -- The session's context is in every event written (checked once, and only if one was: a
    -- statement that writes no event is not refused for it); the refusal undoes the statement.
    IF FOUND AND (pg_catalog.char_length(v_actor_type) > 64 OR pg_catalog.char_length(v_actor_id) > 256
                  OR pg_catalog.char_length(v_correlation) > 256%30$s) THEN
        PERFORM @schema@._refuse_long_context(%31$s, v_actor_type, v_actor_id, v_correlation);
    END IF;
    RETURN NULL;
END
$body$,
        target, prepare_insert, @schema@._gen_tenant(t, 'r.j'), t.kind_prefix || '.insert', t.kind_prefix,
        @schema@._gen_target_id(t, 'r.j'), @schema@._gen_bounded('r.i'), @schema@._gen_image(t, excluded, redacted, 'q.j'),
        new_rows, prepare_update,
        -- Each expression once, on the side's image: every node of the statement is set up again in
        -- each writer's transaction, and one per side made a tenant table's UPDATE 25% dearer.
        @schema@._gen_tenant(t, named_by), t.kind_prefix || '.update', @schema@._gen_target_id(t, named_by),
        @schema@._gen_side(split, 's.side <> 2', @schema@._gen_bounded('p.img_old')),
        @schema@._gen_side(split, 's.side <> 1', @schema@._gen_bounded('p.img_new')),
        -- The columns whose values are replaced in either image, compared before they are.
        @schema@._gen_side(split, 's.side = 0',
            format('CASE WHEN pg_catalog.pg_column_size(p.img_old) <= 1048576 AND pg_catalog.pg_column_size(p.img_new) <= 1048576'
                   ' THEN %1$s ELSE coalesce(%1$s, ''{}''::jsonb) || @schema@._omitted_changes(p.img_old, p.img_new,'
                   ' @schema@._large_value_keys(p.img_old) || @schema@._large_value_keys(p.img_new)) END', redact_changed)),
        pairs, pair_filter, prepare_delete, t.kind_prefix || '.delete', old_rows,
        @schema@._gen_image(t, excluded, redacted, 'p.o'), @schema@._gen_image(t, excluded, redacted, 'p.n'),
        -- The payload: p.moved, with the values _gen_bounded replaces in either image named (both
        -- small: none, and _note_omitted adds nothing for no keys). One expression of each, since
        -- every node of the statement is set up again in each writer's transaction.
        @schema@._gen_sides(split,
            @schema@._gen_json_noted(json_table, 'row_before', jo_named,
                @schema@._gen_noted('''{"tenant": "moved out"}''::jsonb', 'row_before', 'p.img_old')),
            @schema@._gen_json_noted(json_table, 'row_after', jn_named, @schema@._gen_json_noted(json_table, 'row_before', jo_named,
                'CASE WHEN pg_catalog.pg_column_size(p.img_old) <= 1048576 AND pg_catalog.pg_column_size(p.img_new) <= 1048576'
                ' THEN p.moved ELSE @schema@._note_omitted(@schema@._note_omitted(p.moved, ''row_before'','
                ' @schema@._large_value_keys(p.img_old)), ''row_after'', @schema@._large_value_keys(p.img_new)) END')),
            @schema@._gen_json_noted(json_table, 'row_after', jn_named,
                @schema@._gen_noted('''{"tenant": "moved in"}''::jsonb', 'row_after', 'p.img_new'))),
        format(id_of, 'r.k'), format(id_of, CASE WHEN split THEN '2 * p.k + s.side / 2' ELSE 'p.k' END),
        @schema@._gen_json_noted(json_table, 'row_after', jk_named, @schema@._gen_noted('''{}''::jsonb', 'row_after', 'r.i')),
        @schema@._gen_json_noted(json_table, 'row_before', jk_named, @schema@._gen_noted('''{}''::jsonb', 'row_before', 'r.i')),
        -- An UPDATE that changes the key names the row by its new key, and the key it left here;
        -- the statement's id (the one its rows' ids count up from) tells whether another row of
        -- the same statement took that key (a swap).
        -- The key it left is indexed too (event_log_moved_from): bounded as a key is, though it
        -- may predate tracking or a change of the key.
        CASE WHEN t.key_columns IS NULL THEN '''{}''::jsonb'
             ELSE format('CASE WHEN %1$s IS DISTINCT FROM %2$s THEN pg_catalog.jsonb_build_object(''moved_from'', %3$s,'
                         ' ''statement'', v_id::uuid) ELSE ''{}''::jsonb END', @schema@._gen_key(t, 'p.o'),
                         @schema@._gen_key(t, 'p.n'), @schema@._gen_at_most(@schema@._gen_key(t, 'p.o'), 'moved_from', 512)) END,
        -- Where the table has no tenant column, the session's tenant is in every event too.
        CASE WHEN t.tenant_column IS NULL THEN ' OR pg_catalog.char_length(v_tenant) > 256' ELSE '' END,
        CASE WHEN t.tenant_column IS NULL THEN 'v_tenant' ELSE 'NULL' END,
        CASE WHEN split THEN format(', pg_catalog.unnest(CASE WHEN (p.o ->> %1$L) IS DISTINCT FROM (p.n ->> %1$L)'
                                    ' THEN ''{1,2}''::integer[] ELSE ''{0}''::integer[] END) AS s(side)', t.tenant_column)
             ELSE '' END,
        CASE WHEN json_table THEN ', q.jk' ELSE '' END,
        CASE WHEN json_table THEN ', p.jo, p.jn' ELSE '' END,
        CASE WHEN NOT inline THEN E'\n    v_new_keys jsonb[];\n    v_old_keys jsonb[];' ELSE '' END);
END
$$;
COMMENT ON FUNCTION @schema@._capture_body(oid, @schema@.tracked_tables) IS
    'The body of a table''s capture function (user text only as quoted literals).';

-- SQL expressions the generator puts together, for a row image named by `image`.

-- A value the log bounds (see _refuse_too_long), refused in the writer's statement when longer.
CREATE OR REPLACE FUNCTION @schema@._gen_at_most(value text, field text, bound integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('CASE WHEN pg_catalog.char_length(%1$s) > %3$s THEN @schema@._refuse_too_long(%2$L, %3$s,'
                  ' pg_catalog.char_length(%1$s)) ELSE %1$s END', value, field, bound)
$$;
COMMENT ON FUNCTION @schema@._gen_at_most(text, text, integer) IS
    'Generator: a value, or the refusal of one longer than the log holds.';

CREATE OR REPLACE FUNCTION @schema@._gen_tenant(t @schema@.tracked_tables, image text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Checked row by row: the column's value; a row whose column is null is no tenant's (as in a
    -- baseline), never the session's: else any tenant's session writing it would be shown the
    -- versions another tenant's session wrote.
    SELECT CASE WHEN t.tenant_column IS NULL THEN 'v_tenant'
                WHEN t.tenant_column = ANY (@schema@._json_columns(t.relid))  -- from before json was refused
                THEN @schema@._gen_at_most(format('(@schema@._json_named(%s -> %L) #>> ''{}'')', image, t.tenant_column),
                                           'tenant_id', 256)
                ELSE @schema@._gen_at_most(format('(%s ->> %L)', image, t.tenant_column), 'tenant_id', 256) END
$$;
COMMENT ON FUNCTION @schema@._gen_tenant(@schema@.tracked_tables, text) IS
    'Generator: the tenant of a captured row (its tenant column; none where that is null), else the setting.';

CREATE OR REPLACE FUNCTION @schema@._gen_key(t @schema@.tracked_tables, image text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The documented form of target_id: the key as text, a JSON array for a composite key. A json
    -- or jsonb key as its JSON text: as text, "1" (a string) and 1 (a number) would both be 1, two
    -- rows under one name.
    -- A key column holding json (only in a table tracked before such keys were refused) is read
    -- through _json_named, which refuses a marker.
    SELECT CASE WHEN t.key_columns IS NULL THEN 'NULL'
                WHEN cardinality(t.key_columns) = 1 AND EXISTS (
                     WITH RECURSIVE d(typ) AS (  -- the key's type, and the types beneath its domains
                         SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = t.relid AND a.attname = t.key_columns[1]
                         UNION ALL
                         SELECT y.typbasetype FROM pg_type y JOIN d ON y.oid = d.typ WHERE y.typtype = 'd')
                     SELECT 1 FROM d WHERE d.typ IN ('json'::regtype, 'jsonb'::regtype))
                     THEN format('(%s)::text', e.elems[1])
                WHEN cardinality(t.key_columns) = 1 AND e.json THEN format('(%s #>> ''{}'')', e.elems[1])
                WHEN cardinality(t.key_columns) = 1 THEN format('%s ->> %L', image, t.key_columns[1])
                ELSE format('pg_catalog.jsonb_build_array(%s)::text', array_to_string(e.elems, ', ')) END
      FROM (SELECT coalesce(t.key_columns && @schema@._json_columns(t.relid)::text[], false) AS json,
                   ARRAY(SELECT format(CASE WHEN k = ANY (@schema@._json_columns(t.relid)) THEN '@schema@._json_named(%s -> %L)'
                                            ELSE '%s -> %L' END, image, k)
                           FROM unnest(t.key_columns) WITH ORDINALITY AS u(k, o) ORDER BY o) AS elems) AS e
$$;
COMMENT ON FUNCTION @schema@._gen_key(@schema@.tracked_tables, text) IS
    'Generator: the target_id of a captured row.';

CREATE OR REPLACE FUNCTION @schema@._gen_target_id(t @schema@.tracked_tables, image text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Checked whatever the key's type: a capture function generated for an integer key is not
    -- generated again when the column becomes text if the event triggers are not there.
    SELECT CASE WHEN t.key_columns IS NULL THEN @schema@._gen_key(t, image)
                ELSE @schema@._gen_at_most(@schema@._gen_key(t, image), 'target_id', 512) END
$$;
COMMENT ON FUNCTION @schema@._gen_target_id(@schema@.tracked_tables, text) IS
    'Generator: the target_id of a captured row, refused when longer than the log holds.';

CREATE OR REPLACE FUNCTION @schema@._gen_image(t @schema@.tracked_tables, excluded text, redacted jsonb, image text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN excluded IS NULL THEN image ELSE format('(%s - %s)', image, excluded) END
           || CASE WHEN redacted IS NULL THEN '' ELSE format(' || %L::jsonb', redacted) END
$$;
COMMENT ON FUNCTION @schema@._gen_image(@schema@.tracked_tables, text, jsonb, text) IS
    'Generator: the stored row image (excluded columns removed, redacted ones replaced by a marker).';

CREATE OR REPLACE FUNCTION @schema@._gen_bounded(image text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('CASE WHEN pg_catalog.pg_column_size(%1$s) <= 1048576 THEN %1$s'
                  ' ELSE @schema@._omit_large_values(%1$s) END', image)
$$;
COMMENT ON FUNCTION @schema@._gen_bounded(text) IS 'Generator: a row image bounded to 1 MiB (see _omit_large_values).';

CREATE OR REPLACE FUNCTION @schema@._gen_noted(payload text, image_name text, image text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('CASE WHEN pg_catalog.pg_column_size(%1$s) <= 1048576 THEN %2$s'
                  ' ELSE @schema@._note_omitted(%2$s, %3$L, @schema@._large_value_keys(%1$s)) END', image, payload, image_name)
$$;
COMMENT ON FUNCTION @schema@._gen_noted(text, text, text) IS
    'Generator: a payload naming the values _gen_bounded replaces in an image (see _note_omitted).';

CREATE OR REPLACE FUNCTION @schema@._gen_json_noted(noted boolean, image_name text, keys text, payload text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN noted THEN format('CASE WHEN %3$s IS NULL THEN %1$s ELSE @schema@._note_json_omitted(%1$s, %2$L, %3$s) END',
                                       payload, image_name, keys)
                ELSE payload END
$$;
COMMENT ON FUNCTION @schema@._gen_json_noted(boolean, text, text, text) IS
    'Generator: a payload naming the json values _json_image replaced in an image (see _note_json_omitted).';

-- An UPDATE's value on the sides where it is not NULL (see _capture_body's split).
CREATE OR REPLACE FUNCTION @schema@._gen_side(split boolean, sides text, value text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN split THEN format('CASE WHEN %s THEN %s END', sides, value) ELSE value END
$$;
COMMENT ON FUNCTION @schema@._gen_side(boolean, text, text) IS
    'Generator: an UPDATE event''s value, NULL on the sides of a tenant move it does not belong to.';

-- An UPDATE's expression for each side of a row moved to another tenant (see _capture_body's split):
-- the old tenant's event, a row that stays, the new tenant's event.
CREATE OR REPLACE FUNCTION @schema@._gen_sides(split boolean, old_side text, stays text, new_side text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN split THEN format('CASE s.side WHEN 1 THEN %s WHEN 2 THEN %s ELSE %s END', old_side, new_side, stays)
                ELSE stays END
$$;
COMMENT ON FUNCTION @schema@._gen_sides(boolean, text, text, text) IS
    'Generator: an UPDATE event''s value for the old tenant''s side, a row that stays, and the new tenant''s side.';

-- Generating and dropping capture functions: the owner's (a member of the capture role), never the
-- capture role's, so that no function the owner calls could have been rewritten by code that ran as
-- the capture role. The function is created as the owner and then handed to the capture role.
CREATE OR REPLACE FUNCTION @schema@._generate_capture(target oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @schema@.tracked_tables := @schema@._tracking_of(target);
    fn text := @schema@._capture_function(target);
    body text;
    settings text[];
    grantee text;
BEGIN
    IF t.relid IS NULL THEN
        RAISE EXCEPTION 'table % is not tracked', target::regclass USING ERRCODE = 'PA008';
    END IF;
    body := @schema@._capture_body(target, t);
    settings := @schema@._capture_settings(target);
    -- The same function again is not replaced: inside an extension's script (ALTER EXTENSION ...
    -- UPDATE altering a type a tracked table uses) PostgreSQL refuses to replace a function that is
    -- not the extension's, and the update would fail for nothing.
    IF NOT EXISTS (SELECT 1 FROM pg_proc p
                    WHERE p.oid = to_regprocedure(fn || '()') AND p.prosrc = body AND p.prosecdef
                      AND p.proconfig = settings) THEN
        EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER%s AS %L', fn,
                       (SELECT string_agg(CASE WHEN s LIKE 'search_path=%' THEN ' SET search_path = pg_catalog, pg_temp'
                                               ELSE format(' SET %s = %L', split_part(s, '=', 1), split_part(s, '=', 2)) END,
                                          '' ORDER BY o)
                          FROM unnest(settings) WITH ORDINALITY AS u(s, o)),
                       body);
    END IF;
    EXECUTE format('ALTER FUNCTION %s() OWNER TO @schema@_capture', fn);
    EXECUTE format('COMMENT ON FUNCTION %s() IS %L', fn, 'Capture trigger function of the table with this oid (generated).');
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);
    -- Every other grant taken back, and what a grantee passed on (CASCADE): the owner role, acting as
    -- the capture role, may grant on it (tests/test_trust_attacks_67.py); the maintainer's alone is
    -- the package's. The installer regenerates every capture function (95_capture_functions.sql).
    FOR grantee IN SELECT DISTINCT a.grantee::regrole::text  -- quoted as needed
                     FROM pg_proc p, aclexplode(p.proacl) a
                    WHERE p.oid = to_regprocedure(fn || '()') AND a.grantee NOT IN (0, p.proowner) LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM %s CASCADE', fn, grantee);
    END LOOP;
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s() TO @schema@_maintainer', fn);  -- to attach it as a trigger
END
$$;
COMMENT ON FUNCTION @schema@._generate_capture(oid) IS
    'Creates or replaces the capture function of a tracked table, or of a partition of one, for the capture role.';

-- Dropping the function drops the triggers that call it too, on whatever table they are.
CREATE OR REPLACE FUNCTION @schema@._drop_capture(target oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('DROP FUNCTION IF EXISTS %s() CASCADE', @schema@._capture_function(target));
END
$$;
COMMENT ON FUNCTION @schema@._drop_capture(oid) IS 'Drops a table''s capture function and the triggers that call it.';

-- The TRUNCATE trigger function is the capture role's own, created here as it.
SET ROLE @schema@_capture;
REVOKE ALL ON SCHEMA @schema@_capture FROM PUBLIC;
GRANT USAGE ON SCHEMA @schema@_capture TO @schema@_owner, @schema@_reader, @schema@_maintainer;

-- TRUNCATE has no transition table: one event saying who emptied what. Not how many rows went:
-- counting them would plan a query on the user's table (running its index expressions) as the
-- capture role, and make a TRUNCATE as slow as a full scan. One function for every table: it looks
-- its table up, and does nothing for a table that tracking does not cover (a partition detached
-- from a tracked table keeps this trigger when the role that detached it does not own it). On a
-- table tracked with a tenant column the rows are every tenant's, so the event is no tenant's (as a
-- baseline's summary): never the one the session claims (tests/test_trust_attacks_69.py). The
-- partition is named as with quote_all_identifiers off, whatever the writer set.
CREATE OR REPLACE FUNCTION @schema@_capture._capture_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET quote_all_identifiers = off
AS $$
DECLARE
    t @schema@.tracked_tables := @schema@._tracking_of(TG_RELID);
    v_role text := @schema@._db_role();
    v_actor_type text := @schema@._context('actor_type');
    v_actor_id text := @schema@._context('actor_id');
    v_tenant text := CASE WHEN t.tenant_column IS NULL THEN @schema@._context('tenant_id') END;
BEGIN
    IF t.relid IS NULL THEN
        RETURN NULL;
    ELSIF TG_NAME <> '@schema@_capture_truncate' OR TG_WHEN <> 'BEFORE' OR TG_LEVEL <> 'STATEMENT' THEN
        RAISE EXCEPTION 'the TRUNCATE capture function cannot run as trigger % on table %', TG_NAME, TG_RELID::regclass
            USING ERRCODE = 'PA008';
    END IF;
    IF v_actor_id IS NULL AND v_actor_type IS NULL THEN
        v_actor_type := 'db_role';
        v_actor_id := v_role;
    END IF;
    PERFORM @schema@._refuse_long_context(v_tenant, coalesce(v_actor_type, 'user'), v_actor_id,
                                          @schema@._context('correlation_id'));
    INSERT INTO @schema@.event_intake (tenant_id, actor_type, actor_id, db_role, client_addr, application_name,
        kind, target_type, target_id, outcome, correlation_id, txid, occurred_at, payload, origin)
    VALUES (v_tenant, coalesce(v_actor_type, 'user'), v_actor_id, v_role,
            @schema@._client_addr(), current_setting('application_name'), t.kind_prefix || '.truncate',
            t.kind_prefix, NULL, 'success', @schema@._context('correlation_id'), pg_current_xact_id(),
            clock_timestamp(),  -- not statement_timestamp(): see v_at in _capture_body
            jsonb_build_object('table', t.table_name)
            || CASE WHEN TG_RELID <> t.relid THEN jsonb_build_object('partition', TG_RELID::regclass::text)
                    ELSE '{}' END,
            'capture');
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@_capture._capture_truncate() IS
    'Capture trigger for TRUNCATE: records <prefix>.truncate with the table (and partition).';
REVOKE ALL ON FUNCTION @schema@_capture._capture_truncate() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@_capture._capture_truncate() TO @schema@_maintainer;  -- to attach it as a trigger

SET ROLE @schema@_owner;

-- Casts to json that to_jsonb would call on a table's rows (only those of types that are not built
-- in, and only to json, count: jsonb_categorize_type), and whether each is a superuser's function.
CREATE OR REPLACE FUNCTION @schema@._json_casts(target oid)
RETURNS TABLE (source oid, function oid, trusted boolean)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Trusted: a superuser's function in C (an extension's, hstore's say). One in SQL or PL/pgSQL
    -- may call anyone's functions, which their owners may replace; one taking a pseudo-type
    -- (pg_catalog.to_json(anyelement)) is no cast to_jsonb can call: every write would fail.
    SELECT k.castsource, k.castfunc,
           coalesce(r.rolsuper, false) AND coalesce(g.lanname IN ('c', 'internal'), false)
           AND NOT EXISTS (SELECT 1 FROM unnest(f.proargtypes) a JOIN pg_type y ON y.oid = a WHERE y.typtype = 'p')
      FROM @schema@._column_types(target) t
      JOIN pg_cast k ON k.castsource = t.typ AND k.casttarget = 'json'::regtype AND k.castfunc <> 0
      LEFT JOIN pg_proc f ON f.oid = k.castfunc
      LEFT JOIN pg_language g ON g.oid = f.prolang
      LEFT JOIN pg_roles r ON r.oid = f.proowner
     WHERE t.leaf AND t.typ >= 16384
$$;
COMMENT ON FUNCTION @schema@._json_casts(oid) IS
    'Casts to json that to_jsonb would run on a table''s rows; trusted: its function is a superuser''s in C, of no pseudo-type.';

-- What a table's columns depend on that lives in a temporary schema, or NULL: by PostgreSQL's own
-- record of dependencies (pg_depend), from the table, its generated columns' expressions and, at
-- every relation reached (a composite type's, a typed table's, a row type's), theirs. When the session
-- ends (or DISCARD TEMP) its schema is dropped with CASCADE, outside any command: the columns that
-- depend on it go with their values, and no event trigger fires.
-- An object in a temporary schema (or the schema itself) that an object depends on, at any depth
-- (its description), or NULL: when its session ends (or discards it) PostgreSQL drops it with
-- CASCADE, and everything that depends on it, where no event trigger fires. PostgreSQL's record of
-- dependencies is followed down, and up to an object's internal parts (which take it with them: a
-- range's multirange, a view's query, a composite type's relation), and to a table's generated
-- columns' expressions. Built-in objects depend on nothing of a user's: the walk does not enter them.
CREATE OR REPLACE FUNCTION @schema@._temporary_beneath(class oid, object oid)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE reached(classid, objid) AS (
        SELECT class, object
        UNION
        SELECT x.classid, x.objid
          FROM reached r,
               LATERAL (SELECT d.refclassid, d.refobjid FROM pg_depend d WHERE d.classid = r.classid AND d.objid = r.objid
                        UNION ALL  -- its internal parts: dropping one drops it (a range's multirange, a view's
                                   -- query, a composite type's relation, a table's row type)
                        SELECT d.classid, d.objid FROM pg_depend d
                         WHERE d.refclassid = r.classid AND d.refobjid = r.objid AND d.deptype = 'i'
                        UNION ALL
                        SELECT 'pg_attrdef'::regclass::oid, f.oid
                          FROM pg_attrdef f JOIN pg_attribute a ON a.attrelid = f.adrelid AND a.attnum = f.adnum
                         WHERE r.classid = 'pg_class'::regclass AND f.adrelid = r.objid AND a.attgenerated <> ''
                       ) AS x(classid, objid)
         WHERE x.objid >= 16384  -- FirstNormalObjectId
    )
    SELECT o.type || ' ' || o.identity
      FROM reached r, LATERAL pg_identify_object(r.classid, r.objid, 0) o
     WHERE o.schema ~ '^pg_temp(_[0-9]+)?$'
        OR r.classid = 'pg_namespace'::regclass AND o.identity ~ '^pg_temp(_[0-9]+)?$'  -- an extension's schema; the session's own is named pg_temp
     ORDER BY r.classid, r.objid LIMIT 1
$$;
COMMENT ON FUNCTION @schema@._temporary_beneath(oid, oid) IS
    'An object in a temporary schema that an object depends on, at any depth (its description), or NULL.';

CREATE OR REPLACE FUNCTION @schema@._temporary_dependency(target oid)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @schema@._temporary_beneath('pg_class'::regclass, target)
$$;
COMMENT ON FUNCTION @schema@._temporary_dependency(oid) IS
    'An object in a temporary schema that a table''s columns depend on (its description), or NULL.';

-- Why a table cannot be part of a tracked tree (the tracked table itself, or one below it): NULL when
-- it can. Only partitions are captured below a tracked table, and only tables: a statement on a
-- plain inheritance parent changes its children's rows without firing their statement triggers
-- (and a child may have another parent, and repeat its parent's keys); a foreign table has no
-- transition tables.
CREATE OR REPLACE FUNCTION @schema@._tree_problem(target oid)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN (@schema@._tracking_of(target)).relid = target
             AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = target) THEN
             format('it inherits from %s', (SELECT string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhparent)
                                              FROM pg_inherits i WHERE i.inhrelid = target))
        WHEN (@schema@._tracking_of(target)).relid <> target AND NOT c.relispartition THEN
             format('it inherits from %s, which only a partition may', (SELECT string_agg(i.inhparent::regclass::text, ', '
                                                                           ORDER BY i.inhparent)
                                                                          FROM pg_inherits i WHERE i.inhrelid = target))
        WHEN c.relkind NOT IN ('r', 'p') THEN 'it is not a table (a foreign table has no transition tables)'
        -- An unlogged table loses its rows in a crash (and on a standby), with no event.
        WHEN c.relpersistence <> 'p' THEN 'it is unlogged or temporary: its rows can vanish with no event'
        -- A column made of anything temporary (a session's own type, collation, or function that a
        -- generated column, a range's subtype_diff calls), at any depth, goes with every value when
        -- that session ends or discards it, where no event trigger fires.
        WHEN @schema@._temporary_dependency(target) IS NOT NULL THEN
             format('it depends on %s, which is temporary: columns would go, with every value, when its session '
                    'ends, with no event', @schema@._temporary_dependency(target))
        -- A partition left detach pending (a concurrent detach cancelled in its wait) is out of the
        -- tracked table for every query, though it still inherits from it: its rows would be recorded
        -- as the table's. Refused before the table is tracked, as the detach itself is after.
        WHEN EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = target AND i.inhdetachpending) THEN
             'it is being detached concurrently (a detach left unfinished): finish it with ALTER TABLE ... DETACH PARTITION ... FINALIZE'
        -- With a deferred key two rows can share a key until commit: events by key would mix them.
        WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = target AND i.indisprimary AND NOT i.indimmediate) THEN
             'its primary key is deferrable'
        -- An array's image keeps no bounds: '{1,2}' and '[0:1]={1,2}', two keys, would name one row
        -- (beneath domains and composites; a range prints its bounds whole).
        WHEN EXISTS (SELECT 1 FROM @schema@._column_parts(target) p JOIN pg_type y ON y.oid = p.typ
                      WHERE p.attname = ANY (@schema@._key_columns(target)) AND NOT p.printed AND y.typcategory = 'A') THEN
             'its primary key has an array column, whose bounds a row image does not keep: two keys would name one row'
        -- A reg* value (an aclitem's roles too) is an oid that prints as the object's name now: renaming
        -- the object (a table, a function, a schema, a role: commands no event trigger may see) would
        -- change what every stored row reads as, with no row event, and a key's rows could come to
        -- share one history.
        WHEN named.typ IS NOT NULL THEN
             format('its columns are of type %s, which prints an object''s name: a rename would change every stored '
                    'row with no row event (store the oid, or the name as text)', named.typ::regtype)
        -- to_jsonb prints a type through its cast to json: a cast that is not a superuser's own code
        -- would decide what is recorded (and run in the sandbox, as it is).
        WHEN EXISTS (SELECT 1 FROM @schema@._json_casts(target) j WHERE NOT j.trusted) THEN
             format('type %s has a cast to json whose function %s is not a superuser''s in C, or takes any type: it '
                    'would decide what is recorded, or fail every write',
                    (SELECT j.source::regtype FROM @schema@._json_casts(target) j WHERE NOT j.trusted LIMIT 1),
                    (SELECT j.function::regprocedure FROM @schema@._json_casts(target) j WHERE NOT j.trusted LIMIT 1))
        ELSE (SELECT format('%s inherits from it, and only tables that are partitions can be captured',
                            string_agg(k.oid::regclass::text, ', ' ORDER BY k.oid))
                FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid
               WHERE i.inhparent = target AND (NOT k.relispartition OR k.relkind NOT IN ('r', 'p'))
              HAVING count(*) > 0) END
      FROM pg_class c
      LEFT JOIN LATERAL (SELECT k.typ FROM @schema@._column_types(target) k
                          WHERE k.typ IN ('regclass'::regtype, 'regcollation'::regtype, 'regconfig'::regtype,
                                          'regdictionary'::regtype, 'regnamespace'::regtype, 'regoper'::regtype,
                                          'regoperator'::regtype, 'regproc'::regtype, 'regprocedure'::regtype,
                                          'regrole'::regtype, 'regtype'::regtype, 'aclitem'::regtype)
                          ORDER BY k.typ LIMIT 1) named ON true
     WHERE c.oid = target
$$;
COMMENT ON FUNCTION @schema@._tree_problem(oid) IS
    'Why a table cannot be captured as (part of) a tracked table: plain inheritance, a foreign table; NULL if it can.';

-- What is wrong with the capture of one table (a tracked one or a partition of one): NULL when its
-- four triggers are exactly the ones tracking creates, enabled, calling its own functions, and it
-- is a table tracking can capture. Checked by name and definition, never by count: extra triggers
-- change nothing, a look-alike is caught.
CREATE OR REPLACE FUNCTION @schema@._capture_problem(target oid, trigger_name text DEFAULT NULL)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN @schema@._tree_problem(target) IS NOT NULL THEN @schema@._tree_problem(target)
        WHEN to_regprocedure(@schema@._capture_function(target) || '()') IS NULL THEN 'its capture function is missing'
        WHEN EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = target AND c.relkind = 'p')
             AND NOT EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = target) THEN
             'it has no rule, which makes PostgreSQL refuse MERGE (see _refuse_merge): a MERGE moving rows between its partitions would go uncaptured'
        ELSE (SELECT string_agg(format('trigger %s is %s', w.name,
                                       CASE WHEN g.oid IS NULL THEN 'missing'
                                            WHEN g.tgenabled NOT IN ('O', 'A') THEN
                                                 CASE g.tgenabled WHEN 'D' THEN 'disabled' ELSE 'enabled for replicas only' END
                                            ELSE 'not the one tracking creates' END), ', ' ORDER BY w.name)
                FROM (VALUES ('@schema@_capture_insert', 4, to_regprocedure(@schema@._capture_function(target) || '()'), NULL, 'new_rows'),
                             ('@schema@_capture_update', 16, to_regprocedure(@schema@._capture_function(target) || '()'), 'old_rows', 'new_rows'),
                             ('@schema@_capture_delete', 8, to_regprocedure(@schema@._capture_function(target) || '()'), 'old_rows', NULL),
                             ('@schema@_capture_truncate', 34, '@schema@_capture._capture_truncate()'::regprocedure, NULL, NULL))
                     AS w(name, type, fn, old_table, new_table)
                LEFT JOIN pg_trigger g ON g.tgrelid = target AND g.tgname = w.name
               WHERE (trigger_name IS NULL OR w.name = trigger_name)
                 AND (g.oid IS NULL OR g.tgenabled NOT IN ('O', 'A')
                  OR g.tgfoid <> w.fn OR g.tgtype <> w.type OR g.tgqual IS NOT NULL OR g.tgattr <> ''::int2vector
                  OR g.tgnargs <> 0 OR g.tgconstraint <> 0 OR g.tgoldtable IS DISTINCT FROM w.old_table
                  OR g.tgnewtable IS DISTINCT FROM w.new_table)) END
$$;
COMMENT ON FUNCTION @schema@._capture_problem(oid, text) IS
    'What is wrong with a tracked table''s capture triggers (or a partition''s, or one of them), NULL when nothing is.';
