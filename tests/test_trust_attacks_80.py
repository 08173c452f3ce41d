"""An eightieth attacker's trial: against 28125d0 (where a table's capture is not inline, a statement
whose rows the sandbox cannot image is imaged again from the rows' JSON text: _row_json, _json_images,
the tokenizer _json_members, _json_row_image; markers of a value's JSON text everywhere; a baseline
that looks into composites).

Classes (test names carry the letter):
  T. the tokenizer and the fallback: odd column names, odd honest json, composites, arrays, NULLs.
  C. user code: casts to json of an enum that return refused json, raise the four SQLSTATEs, act
     differently in the second attempt, set settings, try to write; who runs them.
  R. options on the fallback path: exclude, redact, tenant, key, skip_noop_updates, key changes,
     DELETE, COPY, ON CONFLICT, MERGE, partitions.
  B. baselines of nested composites, arrays of composites, domains over composites, dropped
     attributes, casts returning refused json: the baseline's image equals the later DELETE's.
  P. cost of one refused row among 20,000 honest ones; rows over 8,000 bytes.
  V. seal, both verifiers, nothing quarantined.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when
an honest use is refused or imaged wrong). Roles made here: t80_owner, t80_mallory
(table_owner_kit); all dropped afterwards.
"""

from __future__ import annotations

import hashlib
import json
import time

import psycopg
import pytest
from trial_helpers import (
    big_hex,
    both_verifiers,
    events_under,
    seal_all,
    table_owner_kit,
)

from pgaudit_py import InvalidArgument, enable_tracking


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t80") as k:
        yield k


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


NUL = '"\\u0000"'
SUR = '"\\ud800"'
BIG = "1e200000"
NULOBJ = '{"s": "a\\u0000b", "t": [1, {"u": "\\udc00"}]}'
REFUSED = [NUL, SUR, BIG, NULOBJ]

PRIV = ("audit_capture", "audit_owner", "audit_sealer", "audit_pruner", "postgres")


def mood(kit, name="t80_mood"):
    kit.owner.execute(f"CREATE TYPE public.{name} AS ENUM ('ok', 'sad')")


def mk(kit, name: str, cols: str, **opts) -> None:
    kit.owner.execute(f"CREATE TABLE public.{name} ({cols}); GRANT ALL ON public.{name} TO app_writer")
    enable_tracking(kit.maint, f"public.{name}", **opts)


def marker(text: str) -> dict:
    b = text.encode()
    return {"$omitted": {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}}


def expected(conn, table: str, where: str, exclude=(), redact=()) -> tuple[str, list[str]]:
    """The careful image of one row, as JSON text, and the columns a careful capture names: to_jsonb of
    each value, or the marker of to_json's text where jsonb refuses it. Computed on `conn` (the table
    owner's, where user code may run)."""
    cols = [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                                       " AND NOT attisdropped ORDER BY attnum", [table])]
    parts, omitted = [], []
    for c in cols:
        if c in exclude:
            continue
        if c in redact:
            parts.append(json.dumps(c) + ': "[redacted]"')
            continue
        try:
            v = conn.execute(f"SELECT to_jsonb(t.{q(c)})::text FROM {table} t WHERE {where}").fetchone()[0]
        except psycopg.Error:
            txt = conn.execute(f"SELECT to_json(t.{q(c)})::text FROM {table} t WHERE {where}").fetchone()[0]
            v = json.dumps(marker(txt))
            omitted.append(c)
        parts.append(json.dumps(c) + ": " + ("null" if v is None else v))
    return "{" + ", ".join(parts) + "}", sorted(omitted)


def same(db, a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return db.execute("SELECT %s::jsonb = %s::jsonb", [a, b]).fetchone()[0]


def try_write(conn, sql, params=None) -> str | None:
    try:
        conn.execute(sql, params)
        return None
    except psycopg.Error as e:
        return f"{e.sqlstate}: {str(e).splitlines()[0][:160]}"


def check_inserts(kit, table: str, ids, *, exclude=(), redact=()) -> list:
    """For each id: the insert event's image equals the careful one, and its payload names exactly the
    refused columns (none excluded or redacted). The wrong ones, listed."""
    got = {e["target_id"]: e for e in events_under(kit.db, f"public.{table}.insert")}
    wrong = []
    for i in ids:
        exp, om = expected(kit.owner, f"public.{table}", f"id = {i}", exclude, redact)
        om = [c for c in om if c not in exclude and c not in redact]
        e = got.get(str(i))
        if e is None:
            wrong.append((i, "no event"))
            continue
        if not same(kit.db, e["row_after"], exp):
            wrong.append((i, "image", e["row_after"][:300], exp[:300]))
        want_payload = {"omitted": {"row_after": om}} if om else {}
        if (e["payload"] or {}).get("omitted", {}) != want_payload.get("omitted", {}):
            wrong.append((i, "payload", e["payload"], want_payload))
    return wrong


def honest_equal_to_jsonb(db, table: str, kind: str, ids) -> list:
    rows = db.execute(f"SELECT t.id, e.row_after = to_jsonb(t.*), e.payload FROM audit.events e JOIN public.{table} t"
                      f" ON e.target_id = t.id::text WHERE e.kind = %s AND t.id = ANY(%s) ORDER BY t.id",
                      [kind, list(ids)]).fetchall()
    return [r for r in rows if not r[1] or (r[2] or {}).get("omitted")] + (
        [("missing", len(rows), len(ids))] if len(rows) != len(ids) else [])


# ============================================ class T ============================================

ODD_NAMES = ['a"b', "c\\d", "e:f", "g,h", "i{j", "k[l", "m]n", "o}p", "q r", "s\nt", "u😀v", "w" * 63,
             'a":1,"b', '{"x": [1,', "\\", '"', ":", ",", "}", "]", " ", "é"]


def test_t1_odd_column_names_split_right_in_a_statement_with_a_refused_row(kit):
    """Columns named with quotes, backslashes, colons, commas, brackets, spaces, newlines, emoji, 63
    bytes, names that look like JSON; half json (a refused value in the refused row), half text.
    Safe: honest rows equal to_jsonb(row); the refused row's refused columns hold the marker of
    to_json's text and are named, the others exact."""
    mood(kit)
    cols = ", ".join(f"{q(n)} {'json' if i % 2 == 0 else 'text'}" for i, n in enumerate(ODD_NAMES))
    mk(kit, "t80_odd", f"id int PRIMARY KEY, m public.t80_mood, {cols}")
    names = ", ".join(q(n) for n in ODD_NAMES)
    def vals(refused: bool):
        out = []
        for i, n in enumerate(ODD_NAMES):
            if i % 2 == 0:
                out.append(REFUSED[i % 4] if refused and i % 4 == 0 else json.dumps({n: [n, "\\", '"']}))
            else:
                out.append(n + '","' + '\\')
        return out
    ph = ", ".join(["%s"] * len(ODD_NAMES))
    err = try_write(kit.writer, f"INSERT INTO public.t80_odd (id, m, {names}) VALUES (1, 'ok', {ph}), (2, 'sad', {ph}),"
                    f" (3, 'ok', {ph})", vals(False) + vals(True) + vals(False))
    assert err is None
    assert honest_equal_to_jsonb(kit.db, "t80_odd", "public.t80_odd.insert", [1, 3]) == []
    assert check_inserts(kit, "t80_odd", [1, 2, 3]) == []


HONEST_JSON = [
    '"\\\\"', '"a\\"b"', '"\\\\\\""', '",:{}[]"', '{"k,:{}[]": ",:{}[]\\"\\\\"}', '  \n\t { "a" :\n [ 1 ,\t2 ] }  \n',
    "{}", "[]", "1", "-0.0", "true", "null", '"x"', '{"a": {"b": {"c": [[], {}, [{}]]}}}', '[1.50, 2e3, -0]',
    '{"a": 1, "a": 2}', '"\\u00e9\\ud83d\\ude00"', '"\\/\\b\\f\\n\\r\\t"', '[",", ":", "{", "[", "}", "]"]',
]


def test_t2_tricky_honest_json_values_beside_a_refused_one(kit):
    """Honest json with escaped quotes, trailing backslashes, strings of structural characters,
    whitespace, empty containers, scalars, nesting, duplicate keys: in an honest row of a statement
    that also has a refused row, and in the refused row beside the refused value. Safe: exact."""
    mood(kit)
    n = len(HONEST_JSON)
    jcols = ", ".join(f"j{i} json" for i in range(n))
    mk(kit, "t80_hj", f"id int PRIMARY KEY, m public.t80_mood, r json, {jcols}")
    ph = ", ".join(["%s"] * n)
    err = try_write(kit.writer, f"INSERT INTO public.t80_hj VALUES (1, 'ok', '1', {ph}), (2, 'ok', %s, {ph}),"
                    f" (3, 'sad', %s, {ph})", HONEST_JSON + [NUL] + HONEST_JSON + ['  \n' + NULOBJ + ' \t'] + HONEST_JSON)
    assert err is None
    assert honest_equal_to_jsonb(kit.db, "t80_hj", "public.t80_hj.insert", [1]) == []
    assert check_inserts(kit, "t80_hj", [1, 2, 3]) == []


def test_t3_composites_arrays_multidim_nulls(kit):
    """Composites whose text attributes hold quotes, backslashes and structural characters, arrays of
    composites, a two-dimensional json array, a json array with bounds, NULLs; some refused."""
    mood(kit)
    kit.owner.execute("""CREATE TYPE public.t80_c AS (s text, j json, n numeric, "x""y" text);
                         CREATE TYPE public.t80_cc AS (c public.t80_c, cs public.t80_c[], m public.t80_mood)""")
    mk(kit, "t80_cmp", "id int PRIMARY KEY, m public.t80_mood, c public.t80_c, cc public.t80_cc, ca public.t80_c[],"
                       " md json[], mi int[], nul json, nc public.t80_c")
    honest_c = "ROW(E'q\"\\\\,:{}[]', %s::json, 1.50, E'\\\\')::public.t80_c"
    rows = []
    params = []
    for i, refused in ((1, False), (2, True), (3, False), (4, True)):
        jv = NUL if refused else '{"a": "\\"}"}'
        rows.append(f"({i}, 'ok', {honest_c}, ROW({honest_c}, ARRAY[{honest_c}, NULL], 'sad'), ARRAY[{honest_c}],"
                    f" '[0:1][1:2]={{{{\"[1]\",\"{{}}\"}},{{NULL,\"2\"}}}}'::json[], '{{{{1,2}},{{3,4}}}}', NULL, NULL)")
        params += [jv if i != 4 else '"ok"', jv, jv, jv] if i != 4 else ['"ok"', '"ok"', NUL, '"ok"']
    err = try_write(kit.writer, "INSERT INTO public.t80_cmp VALUES " + ", ".join(rows), params)
    assert err is None
    assert honest_equal_to_jsonb(kit.db, "t80_cmp", "public.t80_cmp.insert", [1, 3]) == []
    assert check_inserts(kit, "t80_cmp", [1, 2, 3, 4]) == []


def test_t4_refused_values_of_every_kind_and_padding(kit):
    """Each refused kind (\\u0000, a lone surrogate, 1e200000, json deeper than jsonb's stack) with
    whitespace around it; a refused value in a json[] and in a domain over json."""
    mood(kit)
    kit.owner.execute("CREATE DOMAIN public.t80_dj AS json CHECK (VALUE IS NOT NULL)")
    mk(kit, "t80_kinds", "id int PRIMARY KEY, m public.t80_mood, j json, ja json[], dj public.t80_dj")
    vals = [NUL, SUR, BIG, NULOBJ]
    rows = ", ".join(f"({i}, 'ok', %s, ARRAY[%s::json, '1'], %s)" for i in range(len(vals)))
    params = [p for v in vals for p in (" \n " + v + " ", v, "\t" + v)]
    err = try_write(kit.writer, f"INSERT INTO public.t80_kinds VALUES {rows}, (99, 'ok', '2', '{{}}', '3')", params)
    assert err is None
    assert honest_equal_to_jsonb(kit.db, "t80_kinds", "public.t80_kinds.insert", [99]) == []
    assert check_inserts(kit, "t80_kinds", list(range(len(vals))) + [99]) == []


@pytest.mark.parametrize("depth", [3960, 3975, 3985])
def test_t5_deep_honest_json_under_the_quick_checks_bound_in_a_non_inline_table(kit, depth):
    """Honest json nested just under the quick check's 8,000 bytes: the whole row's text under the
    bound too, so _json_images takes it with ::jsonb outside any handler. Alone, and beside a refused
    row. Safe: an honest write is captured, exactly."""
    mood(kit)
    mk(kit, "t80_deep", "id int PRIMARY KEY, m public.t80_mood, d json")
    v = "[" * depth + "]" * depth
    err1 = try_write(kit.writer, "INSERT INTO public.t80_deep VALUES (1, 'ok', %s)", [v])
    err2 = try_write(kit.writer, "INSERT INTO public.t80_deep VALUES (2, 'ok', %s), (3, 'ok', %s)", [v, NUL])
    assert (err1, err2) == (None, None)
    assert check_inserts(kit, "t80_deep", [1, 2, 3]) == []


@pytest.mark.parametrize("depth", [14000, 14400])
def test_t6_json_nested_near_the_parsers_limit_beside_an_enum(kit, depth):
    """json nested as deep as json_in takes at the writer's depth (about 14,500 here): in the trigger
    the stack is deeper. Safe: the write is taken (never refused), its event holds either the exact
    value or the marker of its text, named; a later UPDATE and DELETE of the row are captured too."""
    mood(kit)
    mk(kit, "t80_dd", "id int PRIMARY KEY, m public.t80_mood, d json")
    v = "[" * depth + "]" * depth
    err = try_write(kit.writer, "INSERT INTO public.t80_dd VALUES (1, 'ok', %s), (2, 'ok', '1')", [v])
    err2 = try_write(kit.writer, "UPDATE public.t80_dd SET m = 'sad'")
    err3 = try_write(kit.writer, "DELETE FROM public.t80_dd")
    assert (err, err2, err3) == (None, None, None)
    e = [x for x in events_under(kit.db, "public.t80_dd.insert") if x["target_id"] == "1"]
    assert len(e) == 1
    img = kit.db.execute("SELECT %s::jsonb -> 'd'", [e[0]["row_after"]]).fetchone()[0]
    assert img == marker(v) and e[0]["payload"]["omitted"] == {"row_after": ["d"]} or (
        kit.db.execute("SELECT %s::jsonb -> 'd' = %s::json::jsonb", [e[0]["row_after"], v]).fetchone()[0]
        and not e[0]["payload"].get("omitted"))


DEEPER_THAN_WALKED = pytest.mark.xfail(strict=True, reason="by design (docs/capture.md): a value nested too deep for a JSON path to walk (about 10,000 levels), jsonb or json, is stored as the marker of its text when the event is sealed, as the events view shows it before; the verifiers and archives never hold it; strict, so that a change that stores it says so")


@pytest.mark.parametrize("depth", [2000, 4000, 8000, pytest.param(12000, marks=DEEPER_THAN_WALKED),
                                   pytest.param(14400, marks=DEEPER_THAN_WALKED)])
def test_t7_an_honest_deep_jsonb_value_in_a_statement_with_a_refused_row(kit, depth):
    """A jsonb value nested as deep as the parser takes at the writer's depth (about 14,500 here), which
    jsonb holds by definition. Alone its row images as to_jsonb; in a statement with a
    refused row the fallback prints it (to_json) and parses it again. Safe: its image is to_jsonb of
    the row, never a marker, in both statements."""
    mood(kit)
    mk(kit, "t80_djb", "id int PRIMARY KEY, m public.t80_mood, b jsonb, j json")
    deep = "[" * depth + "]" * depth
    err1 = try_write(kit.writer, "INSERT INTO public.t80_djb VALUES (1, 'ok', %s::jsonb, '1')", [deep])
    err2 = try_write(kit.writer, "INSERT INTO public.t80_djb VALUES (2, 'ok', %s::jsonb, '1'), (3, 'ok', '1', %s)", [deep, NUL])
    assert (err1, err2) == (None, None)
    rows = kit.db.execute("SELECT t.id, e.row_after = to_jsonb(t.*), e.row_after -> 'b' ? '$omitted', e.payload"
                          " FROM audit.events e JOIN public.t80_djb t ON e.target_id = t.id::text"
                          " WHERE e.kind = 'public.t80_djb.insert' AND t.id < 3 ORDER BY t.id").fetchall()
    assert rows == [(1, True, False, {}), (2, True, False, {})]


@pytest.mark.parametrize("depth", [4000, pytest.param(12000, marks=DEEPER_THAN_WALKED)])
def test_t8_the_same_deep_jsonb_in_an_inline_table(kit, depth):
    """The control for t7: the same jsonb in a table of built-in types only (inline capture)."""
    mk(kit, "t80_djbi", "id int PRIMARY KEY, b jsonb, j json")
    deep = "[" * depth + "]" * depth
    err = try_write(kit.writer, "INSERT INTO public.t80_djbi VALUES (1, %s::jsonb, '1'), (3, '1', %s)", [deep, NUL])
    assert err is None
    rows = kit.db.execute("SELECT t.id, e.row_after = to_jsonb(t.*), e.payload FROM audit.events e JOIN public.t80_djbi t"
                          " ON e.target_id = t.id::text WHERE e.kind = 'public.t80_djbi.insert' AND t.id = 1").fetchall()
    assert rows == [(1, True, {})]


BUILTIN_COLS = [
    ("n1", "numeric", "'NaN'"), ("n2", "numeric", "'Infinity'"), ("n3", "numeric", "1.500"), ("n4", "numeric", "'-0.000'"),
    ("f1", "float8", "'NaN'"), ("f2", "float8", "'-Infinity'"), ("f3", "float8", "'-0'"), ("f4", "float8", "1e308"),
    ("f5", "float4", "1e-38"), ("f6", "float8", "0.1"), ("mo", "money", "12.34"), ("x", "xml", "'<a>&amp;\"</a>'"),
    ("bt", "bit varying", "B'1011'"), ("tv", "tsvector", "'a:1 b\"c:2'"), ("pt", "point", "'(1.5,-0)'"),
    ("bx", "box", "'(1,1),(0,0)'"), ("ip", "inet", "'::ffff:1.2.3.4/96'"), ("u", "uuid", "gen_random_uuid()"),
    ("ch", "char(5)", "'a'"), ("qc", "\"char\"", "'\"'"), ("nm", "name", "'x\"y'"), ("o", "oid", "4294967295"),
    ("lsn", "pg_lsn", "'FF/1'"), ("ts", "timestamptz", "'infinity'"), ("ts2", "timestamp", "'2026-12-05 01:02:03.5'"),
    ("d", "date", "'-infinity'"), ("tm", "timetz", "'01:02:03+05:30'"), ("iv", "interval", "'-1 year 2 mons -3 days 04:05:06.7'"),
    ("r1", "int4range", "'[1,5)'"), ("r2", "tstzrange", "'[2026-01-01,infinity)'"), ("by", "bytea", "'\\x00ff5c22'"),
    ("t", "text", "E'\\u00e9\\U0001F600 \\x01 \\\\ \" \\t'"), ("bo", "boolean", "false"),
    ("jb", "jsonb", "'{\"a\": [1.50, -0, 1e-20, \"\\u00e9\"], \"\": null}'"), ("ia", "int[]", "'[0:1]={1,2}'"),
    ("fa", "float8[]", "'{NaN,-0,1e300}'"), ("big", "numeric", "1e300"),
]


def test_t9_every_builtin_type_in_an_honest_row_of_a_fallback_statement(kit):
    """An honest row of many built-in types (NaN, infinities, -0, money, xml, ranges, bytea, arrays
    with bounds, jsonb with an empty key) beside a refused row: the fallback images it from to_json's
    text. Safe: exactly to_jsonb(row), as a clean statement images it."""
    mood(kit)
    cols = ", ".join(f"{c} {t}" for c, t, _ in BUILTIN_COLS)
    vals = ", ".join(v for _, _, v in BUILTIN_COLS)
    mk(kit, "t80_bt", f"id int PRIMARY KEY, m public.t80_mood, j json, {cols}")
    kit.writer.execute(f"INSERT INTO public.t80_bt VALUES (1, 'ok', '1', {vals})")
    kit.writer.execute(f"INSERT INTO public.t80_bt VALUES (2, 'ok', '1', {vals}), (3, 'ok', %s, {vals})", [NUL])
    assert honest_equal_to_jsonb(kit.db, "t80_bt", "public.t80_bt.insert", [1, 2]) == []
    assert check_inserts(kit, "t80_bt", [3]) == []
    kit.writer.execute("UPDATE public.t80_bt SET m = 'sad'")
    rows = kit.db.execute("SELECT t.id, e.row_after = to_jsonb(t.*) FROM audit.events e JOIN public.t80_bt t"
                          " ON e.target_id = t.id::text WHERE e.kind = 'public.t80_bt.update' AND t.id < 3 ORDER BY 1").fetchall()
    assert rows == [(1, True), (2, True)]
    e3 = [e for e in events_under(kit.db, "public.t80_bt.update") if e["target_id"] == "3"]
    assert len(e3) == 1 and same(kit.db, e3[0]["row_after"], expected(kit.owner, "public.t80_bt", "id = 3")[0])


def test_t10_refused_values_holding_raw_non_ascii_text(kit):
    """Refused values with raw multi-byte characters beside the escape (é, 😀, a combining mark, U+FFFF):
    the marker's bytes and SHA-256 are of the UTF-8 text. Also a json key holding them."""
    mood(kit)
    mk(kit, "t80_utf", "id int PRIMARY KEY, m public.t80_mood, j json, \"ключ😀\" json")
    vals = ['"é😀\\u0000 e\u0301 \uffff"', '{"ключ😀": "\\ud800", "é": 1}']
    err = try_write(kit.writer, "INSERT INTO public.t80_utf VALUES (1, 'ok', %s, %s), (2, 'ok', '\"é\"', '[\"😀\"]')", vals)
    assert err is None
    assert check_inserts(kit, "t80_utf", [1, 2]) == []


# (numbers the events view shows as wild_number markers, documented, left out)
NUMBERS = ["0e5000", "-0.0E+5000", "9" * 140000, "0." + "0" * 17000 + "1", "[1e300, -1e-300, 0e-9999]", "-0e0999",
           '{"n": 0.' + "0" * 16390 + "}"]


def test_t11_numbers_at_numerics_edges_beside_a_refused_row(kit):
    """json numbers at numeric's limits (exponents past 1000, 140,000 digits, 17,000 decimals, zero with
    a large exponent): whichever jsonb refuses is marked and named, the rest exact; one statement."""
    mood(kit)
    cols = ", ".join(f"n{i} json" for i in range(len(NUMBERS)))
    mk(kit, "t80_num", f"id int PRIMARY KEY, m public.t80_mood, r json, {cols}")
    ph = ", ".join(["%s"] * len(NUMBERS))
    err = try_write(kit.writer, f"INSERT INTO public.t80_num VALUES (1, 'ok', %s, {ph}), (2, 'ok', '1', {ph})",
                    [NUL] + NUMBERS + NUMBERS)
    assert err is None
    wrong = check_inserts(kit, "t80_num", [1, 2])
    assert [w[:2] + tuple(str(x)[:200] for x in w[2:]) for w in wrong] == []


# ============================================ class C ============================================

def spy_cast(kit, body: str, name="t80_spy") -> list[str]:
    """An enum t80_e with a cast to json, made by the table owner, its function `body` (plpgsql, with
    v the value); it reports current_user in a NOTICE. Returns the list notices are collected in."""
    kit.owner.execute(f"""
        CREATE TYPE public.t80_e AS ENUM ('ok', 'nul', 'raise', 'twice', 'set', 'write', 'deep', 'sur', 'big');
        CREATE FUNCTION public.{name}(v public.t80_e) RETURNS json LANGUAGE plpgsql AS $f$
        DECLARE ctx text;
        BEGIN
            GET DIAGNOSTICS ctx = PG_CONTEXT;
            RAISE NOTICE 't80who %', current_user || ' ' || session_user || ' ' || (ctx LIKE '%%_row_json%%');
            {body}
        END $f$""")
    seen: list[str] = []

    def keep(n):
        if (n.message_primary or "").startswith("t80who "):
            seen.append(n.message_primary)
    for c in (kit.writer, kit.maint, kit.db, kit.owner):
        c.add_notice_handler(keep)
    return seen


CAST_BODY = """
    IF v = 'nul' THEN RETURN '"\\u0000 from cast"'::json;
    ELSIF v = 'sur' THEN RETURN '["\\ud800"]'::json;
    ELSIF v = 'big' THEN RETURN '{"n": 1e200000}'::json;
    ELSIF v = 'raise' THEN RAISE EXCEPTION 'deliberate' USING ERRCODE = 'untranslatable_character';
    ELSIF v = 'twice' THEN
        IF ctx LIKE '%_row_json%' THEN RETURN '"second"'::json; END IF;
        RAISE EXCEPTION 'first' USING ERRCODE = 'numeric_value_out_of_range';
    ELSIF v = 'set' THEN
        PERFORM set_config('search_path', 'public, pg_catalog', false);
        PERFORM set_config('pgaudit_py.actor_id', 'forged', false);
        PERFORM set_config('pgaudit_py.tenant_id', 'forged', false);
        PERFORM set_config('role', 'none', false);
        RETURN '"\\u0000set"'::json;
    ELSIF v = 'write' THEN
        INSERT INTO public.t80_sink VALUES (current_user);
        RETURN '"w"'::json;
    END IF;
    RETURN to_json(v::text);
"""


def add_cast(kit, name="t80_spy") -> str | None:
    """The cast, made after the table is tracked (enable_tracking refuses a table whose type has one).
    None when made, else the refusal."""
    return try_write(kit.owner, f"CREATE CAST (public.t80_e AS json) WITH FUNCTION public.{name}(public.t80_e)")


def privileged(seen):
    return [s for s in seen if s.split()[1] in PRIV]


def test_c1_a_cast_returning_refused_json_is_imaged_as_a_marker_run_by_nobody_privileged(kit):
    """An enum's cast to json returns \\u0000, a lone surrogate, 1e200000. Safe: captured, the enum
    column the marker of what the cast printed and named; the cast never ran as a privileged role."""
    seen = spy_cast(kit, CAST_BODY)
    mk(kit, "t80_cast", "id int PRIMARY KEY, e public.t80_e, j json")
    made = add_cast(kit)
    if made is not None:
        assert kit.db.execute("SELECT count(*) FROM pg_cast WHERE castsource = 'public.t80_e'::regtype").fetchone()[0] == 0
        return
    err = try_write(kit.writer, "INSERT INTO public.t80_cast VALUES (1, 'ok', '1'), (2, 'nul', '2'), (3, 'sur', NULL),"
                    " (4, 'big', '[]')")
    assert err is None
    assert check_inserts(kit, "t80_cast", [1, 2, 3, 4]) == []
    err = try_write(kit.writer, "UPDATE public.t80_cast SET j = '5'")
    err2 = try_write(kit.writer, "DELETE FROM public.t80_cast")
    assert (err, err2) == (None, None)
    for kind, _col in (("update", "row_after"), ("delete", "row_before")):
        got = events_under(kit.db, f"public.t80_cast.{kind}")
        assert len(got) == 4
    assert privileged(seen) == [], seen[:10]


def test_c2_a_cast_raising_a_caught_sqlstate_refuses_the_write_whole(kit):
    """The cast RAISEs untranslatable_character every time. Safe: the write is refused whole: no row
    written, no event; the cast never ran privileged."""
    seen = spy_cast(kit, CAST_BODY)
    mk(kit, "t80_raise", "id int PRIMARY KEY, e public.t80_e")
    made = add_cast(kit)
    if made is not None:
        assert kit.db.execute("SELECT count(*) FROM pg_cast WHERE castsource = 'public.t80_e'::regtype").fetchone()[0] == 0
        return
    err = try_write(kit.writer, "INSERT INTO public.t80_raise VALUES (1, 'ok'), (2, 'raise')")
    rows = kit.db.execute("SELECT count(*) FROM public.t80_raise").fetchone()[0]
    assert (err is not None, rows, len(events_under(kit.db, "public.t80_raise."))) == (True, 0, 0)
    assert privileged(seen) == []


def test_c3_a_cast_that_answers_only_the_second_attempt(kit):
    """The cast raises numeric_value_out_of_range in _row_images and answers in _row_json. Either the
    write is refused whole or captured with what the cast printed there; never privileged."""
    seen = spy_cast(kit, CAST_BODY)
    mk(kit, "t80_twice", "id int PRIMARY KEY, e public.t80_e")
    made = add_cast(kit)
    if made is not None:
        assert kit.db.execute("SELECT count(*) FROM pg_cast WHERE castsource = 'public.t80_e'::regtype").fetchone()[0] == 0
        return
    err = try_write(kit.writer, "INSERT INTO public.t80_twice VALUES (1, 'ok'), (2, 'twice')")
    rows = kit.db.execute("SELECT count(*) FROM public.t80_twice").fetchone()[0]
    got = events_under(kit.db, "public.t80_twice.")
    if err is None:
        assert rows == 2 and len(got) == 2
        imgs = {e["target_id"]: json.loads(e["row_after"]) for e in got}
        assert imgs == {"1": {"id": 1, "e": "ok"}, "2": {"id": 2, "e": "second"}}
    else:
        assert (rows, got) == (0, [])
    assert privileged(seen) == []


def test_c4_a_cast_setting_search_path_role_and_context_in_the_second_attempt(kit):
    """The cast, in both attempts, sets search_path, role and pgaudit_py.actor_id / tenant_id (not
    local). Safe: the event names the writer's real context, the session's settings are unchanged
    after, nothing privileged ran it."""
    seen = spy_cast(kit, CAST_BODY)
    mk(kit, "t80_set", "id int PRIMARY KEY, e public.t80_e")
    made = add_cast(kit)
    if made is not None:
        assert kit.db.execute("SELECT count(*) FROM pg_cast WHERE castsource = 'public.t80_e'::regtype").fetchone()[0] == 0
        return
    kit.writer.execute("SELECT set_config('pgaudit_py.actor_id', 'alice', false), set_config('pgaudit_py.tenant_id', 't1', false)")
    before = kit.writer.execute("SELECT current_setting('search_path'), current_user").fetchone()
    err = try_write(kit.writer, "INSERT INTO public.t80_set VALUES (1, 'set'), (2, 'ok')")
    after = kit.writer.execute("SELECT current_setting('search_path'), current_user,"
                               " current_setting('pgaudit_py.actor_id'), current_setting('pgaudit_py.tenant_id')").fetchone()
    got = kit.db.execute("SELECT actor_id, tenant_id FROM audit.events WHERE kind = 'public.t80_set.insert'").fetchall()
    assert err is None
    assert (after, sorted(got)) == ((*before, "alice", "t1"), [("alice", "t1"), ("alice", "t1")])
    assert check_inserts(kit, "t80_set", [1, 2]) == []
    assert privileged(seen) == []


def test_c5_a_cast_that_tries_to_write(kit):
    """The cast INSERTs into a table anyone may write, on a row that also needs the fallback. Safe:
    refused whole (the sandbox may not write) or captured; the sink holds no privileged role."""
    seen = spy_cast(kit, CAST_BODY)
    kit.db.execute("CREATE TABLE public.t80_sink (who text); GRANT ALL ON public.t80_sink TO PUBLIC")
    mk(kit, "t80_wr", "id int PRIMARY KEY, e public.t80_e, j json")
    made = add_cast(kit)
    if made is not None:
        assert kit.db.execute("SELECT count(*) FROM pg_cast WHERE castsource = 'public.t80_e'::regtype").fetchone()[0] == 0
        return
    err = try_write(kit.writer, "INSERT INTO public.t80_wr VALUES (1, 'write', %s)", [NUL])
    sink = [r[0] for r in kit.db.execute("SELECT who FROM public.t80_sink")]
    rows = kit.db.execute("SELECT count(*) FROM public.t80_wr").fetchone()[0]
    n = len(events_under(kit.db, "public.t80_wr."))
    assert (rows, n) in ((0, 0), (1, 1)), err
    assert [s for s in sink if s in PRIV] == [] and privileged(seen) == []


@pytest.mark.parametrize("route", ["add_column", "alter_column_type", "composite_attribute", "array_column", "domain_column"])
def test_c6_a_type_with_a_cast_brought_into_a_tracked_table_after_tracking(kit, route):
    """enable_tracking refuses a table whose type has a user's cast to json, and so does CREATE CAST for
    a type a tracked table is made of. Here the cast is made first, on a type no tracked table uses,
    and the type is brought in afterwards (a column added, a column's type changed, an attribute added
    to a composite a tracked column holds, an array or a domain of it). Safe: that DDL is refused (or
    the cast is never used); the cast never runs privileged."""
    seen = spy_cast(kit, CAST_BODY)
    assert add_cast(kit) is None  # no tracked table uses t80_e yet
    kit.owner.execute("CREATE TYPE public.t80_holder AS (a int); CREATE DOMAIN public.t80_edom AS public.t80_e")
    mood(kit)
    mk(kit, "t80_route", "id int PRIMARY KEY, m public.t80_mood, h public.t80_holder, x text")
    kit.writer.execute("INSERT INTO public.t80_route VALUES (1, 'ok', ROW(1), 'ok')")
    ddl = {"add_column": "ALTER TABLE public.t80_route ADD COLUMN e public.t80_e DEFAULT 'nul'",
           "alter_column_type": "ALTER TABLE public.t80_route ALTER COLUMN x TYPE public.t80_e USING x::public.t80_e",
           "composite_attribute": "ALTER TYPE public.t80_holder ADD ATTRIBUTE e public.t80_e",
           "array_column": "ALTER TABLE public.t80_route ADD COLUMN e public.t80_e[] DEFAULT '{nul}'",
           "domain_column": "ALTER TABLE public.t80_route ADD COLUMN e public.t80_edom DEFAULT 'nul'"}[route]
    refused = try_write(kit.owner, ddl)
    seen.clear()
    if route == "composite_attribute" and refused is None:
        try_write(kit.writer, "UPDATE public.t80_route SET h = ROW(2, 'nul')")
    else:
        try_write(kit.writer, "UPDATE public.t80_route SET m = 'sad'")
    imgs = [e["row_after"] for e in events_under(kit.db, "public.t80_route.update")]
    assert privileged(seen) == []
    assert refused is not None or not any("from cast" in (i or "") or "$omitted" in (i or "") for i in imgs), (seen[:3], imgs)
    assert refused is not None, "the DDL brought a type with a user's cast to json into a tracked table"


@pytest.mark.parametrize("typ", ["t80_rng", "t80_rng_mr"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_c7_a_cast_to_json_on_a_range_or_multirange_type(kit, typ, when):
    """A user's range type and its multirange, a column of each; a cast to json (plpgsql, reporting
    current_user, printing \u0000) on one, made before or after tracking. to_json uses a cast of any
    type that is not an array or composite. Safe: tracking or the cast refused, or the cast never runs
    privileged and nothing it prints is recorded."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t80_rng AS RANGE (subtype = int4, multirange_type_name = public.t80_rng_mr)")
    kit.owner.execute(f"""CREATE FUNCTION public.t80_rspy(v public.{typ}) RETURNS json LANGUAGE plpgsql AS $f$
                          BEGIN RAISE NOTICE 't80who %', current_user || ' ' || session_user || ' x';
                          RETURN '"\\u0000 from range cast"'::json; END $f$""")
    seen: list[str] = []
    for c in (kit.writer, kit.maint, kit.db, kit.owner):
        c.add_notice_handler(lambda n: seen.append(n.message_primary) if (n.message_primary or "").startswith("t80who ") else None)
    cast = f"CREATE CAST (public.{typ} AS json) WITH FUNCTION public.t80_rspy(public.{typ})"
    kit.owner.execute("CREATE TABLE public.t80_rc (id int PRIMARY KEY, m public.t80_mood, r public.t80_rng, mr public.t80_rng_mr);"
                      "GRANT ALL ON public.t80_rc TO app_writer")
    refused = None
    if when == "before":
        kit.owner.execute(cast)
        try:
            enable_tracking(kit.maint, "public.t80_rc")
        except Exception as e:  # noqa: BLE001
            refused = str(e)
    else:
        enable_tracking(kit.maint, "public.t80_rc")
        refused = try_write(kit.owner, cast)
    print("\nC7", typ, when, (refused or "")[:150])
    seen.clear()
    try_write(kit.writer, "INSERT INTO public.t80_rc VALUES (1, 'ok', '[1,2)', '{[1,2)}')")
    imgs = [e["row_after"] or "" for e in events_under(kit.db, "public.t80_rc.")]
    assert privileged(seen) == []
    assert refused is not None or (seen == [] and not any("$omitted" in i for i in imgs)), (seen[:3], imgs)


def test_c8_a_domain_check_calling_user_code_on_every_path(kit):
    """A domain over json whose CHECK calls the owner's plpgsql (reporting current_user), inside a
    composite and an array, beside an enum; refused values in it; a baseline, then INSERT, UPDATE,
    DELETE through the fallback. Safe: the code never runs as a privileged role."""
    mood(kit)
    kit.owner.execute("""CREATE FUNCTION public.t80_chk(v json) RETURNS boolean LANGUAGE plpgsql AS $f$
                         BEGIN RAISE NOTICE 't80who %', current_user || ' ' || session_user || ' chk'; RETURN true; END $f$;
                         CREATE DOMAIN public.t80_cj AS json CHECK (public.t80_chk(VALUE));
                         CREATE TYPE public.t80_cjc AS (d public.t80_cj, n int);
                         CREATE TABLE public.t80_chkt (id int PRIMARY KEY, m public.t80_mood, d public.t80_cj,
                             c public.t80_cjc, a public.t80_cj[]);
                         GRANT ALL ON public.t80_chkt TO app_writer""")
    seen: list[str] = []
    for c in (kit.writer, kit.maint, kit.db, kit.owner):
        c.add_notice_handler(lambda n: seen.append(n.message_primary) if (n.message_primary or "").startswith("t80who ") else None)
    kit.owner.execute("INSERT INTO public.t80_chkt VALUES (1, 'ok', %s, ROW(%s, 1), ARRAY[%s::public.t80_cj])", [NUL, SUR, BIG])
    seen.clear()
    enable_tracking(kit.maint, "public.t80_chkt", baseline=True)
    kit.writer.execute("INSERT INTO public.t80_chkt VALUES (2, 'ok', %s, ROW(%s, 1), ARRAY[%s::public.t80_cj])", [NUL, SUR, BIG])
    kit.writer.execute("UPDATE public.t80_chkt SET m = 'sad'")
    kit.writer.execute("DELETE FROM public.t80_chkt")
    assert privileged(seen) == [], seen[:5]
    assert any(x.split()[1] == "app_writer" for x in seen), seen[:5]  # the report works: the writer's own CHECK
    assert len(events_under(kit.db, "public.t80_chkt.")) == 1 + 1 + 2 + 2


# ============================================ class R ============================================

def test_r1_excluded_and_redacted_columns_holding_refused_values(kit):
    """Refused values in an excluded and a redacted column, and in a plain json column: INSERT, UPDATE,
    DELETE. Safe: excluded not in the image nor named, redacted '[redacted]' and not named, the other
    marked and named."""
    mood(kit)
    mk(kit, "t80_xr", "id int PRIMARY KEY, m public.t80_mood, hid json, red json, j json",
       exclude_columns=["hid"], redact_columns=["red"])
    err = try_write(kit.writer, "INSERT INTO public.t80_xr VALUES (1, 'ok', %s, %s, %s), (2, 'ok', %s, %s, '1'),"
                    " (3, 'ok', '1', '2', '3')", [NUL, SUR, BIG, NUL, NUL])
    assert err is None
    assert check_inserts(kit, "t80_xr", [1, 2, 3], exclude=("hid",), redact=("red",)) == []
    p2 = [e["payload"] for e in events_under(kit.db, "public.t80_xr.insert") if e["target_id"] == "2"]
    assert p2 == [{}]
    err = try_write(kit.writer, "UPDATE public.t80_xr SET m = 'sad'")
    exp1, _ = expected(kit.owner, "public.t80_xr", "id = 1", ("hid",), ("red",))
    err2 = try_write(kit.writer, "DELETE FROM public.t80_xr WHERE id = 1")
    assert (err, err2) == (None, None)
    ups = {e["target_id"]: e for e in events_under(kit.db, "public.t80_xr.update")}
    assert sorted(ups) == ["1", "2", "3"]
    assert same(kit.db, ups["1"]["row_after"], exp1)
    assert ups["1"]["payload"].get("omitted") == {"row_before": ["j"], "row_after": ["j"]}
    assert ups["2"]["payload"].get("omitted") is None
    dels = events_under(kit.db, "public.t80_xr.delete")
    assert [(d["target_id"], same(kit.db, d["row_before"], exp1), d["payload"].get("omitted")) for d in dels] == [
        ("1", True, {"row_before": ["j"]})]


def test_r2_a_tenant_move_of_a_row_holding_refused_values(kit):
    """tenant_column (text) beside an enum: an UPDATE moves a row holding \\u0000 to another tenant.
    Safe: two events, each under its tenant, the old image in the first and the new in the second,
    each with its marker named."""
    mood(kit)
    mk(kit, "t80_ten", "id int PRIMARY KEY, m public.t80_mood, tenant text, j json", tenant_column="tenant")
    kit.writer.execute("INSERT INTO public.t80_ten VALUES (1, 'ok', 'A', %s), (2, 'ok', 'A', '1')", [NUL])
    exp_a, _ = expected(kit.owner, "public.t80_ten", "id = 1")
    err = try_write(kit.writer, "UPDATE public.t80_ten SET tenant = 'B'")
    assert err is None
    exp_b, _ = expected(kit.owner, "public.t80_ten", "id = 1")
    ups = [e for e in events_under(kit.db, "public.t80_ten.update") if e["target_id"] == "1"]
    assert [(e["tenant_id"], e["row_before"] is not None, e["row_after"] is not None) for e in ups] == [
        ("A", True, False), ("B", False, True)]
    assert same(kit.db, ups[0]["row_before"], exp_a) and same(kit.db, ups[1]["row_after"], exp_b)
    assert ups[0]["payload"].get("omitted") == {"row_before": ["j"]}
    assert ups[1]["payload"].get("omitted") == {"row_after": ["j"]}
    assert len([e for e in events_under(kit.db, "public.t80_ten.update") if e["target_id"] == "2"]) == 2


def test_r3_key_columns_and_key_changes_with_refused_values(kit):
    """The primary key an enum and text; an UPDATE changes the key of a row holding refused values and
    swaps two keys. Safe: each event names its row by its new key, moved_from its old, images exact."""
    mood(kit)
    mk(kit, "t80_key", "id int, m public.t80_mood, k text, j json, PRIMARY KEY (m, k)")
    kit.writer.execute("INSERT INTO public.t80_key VALUES (1, 'ok', 'a', %s), (2, 'ok', 'b', '1'), (3, 'sad', 'c', %s)",
                       [NUL, SUR])
    err = try_write(kit.writer, "UPDATE public.t80_key SET k = CASE k WHEN 'a' THEN 'aa' WHEN 'b' THEN 'bb' ELSE 'z' END")
    assert err is None
    ups = events_under(kit.db, "public.t80_key.update")
    wrong = []
    for e in ups:
        ra = json.loads(e["row_after"])
        rid = ra["id"]
        exp, om = expected(kit.owner, "public.t80_key", f"id = {rid}")
        if not same(kit.db, e["row_after"], exp):
            wrong.append((rid, "image"))
        if (e["payload"].get("omitted") or {}).get("row_after", []) != om:
            wrong.append((rid, "named", e["payload"]))
        key_now = kit.owner.execute("SELECT m::text, k FROM public.t80_key WHERE id = %s", [rid]).fetchone()
        if key_now[1] not in (e["target_id"] or "") or "moved_from" not in e["payload"]:
            wrong.append((rid, "key", e["target_id"], e["payload"]))
    assert (len(ups), wrong) == (3, [])


def test_r4_skip_noop_updates_with_refused_values(kit):
    """skip_noop_updates: a no-op UPDATE (SET j = j, SET m = m) of rows holding refused values writes
    nothing; a change of the refused value itself (to another refused text) is captured."""
    mood(kit)
    mk(kit, "t80_noop", "id int PRIMARY KEY, m public.t80_mood, j json, c json", skip_noop_updates=True)
    kit.writer.execute("INSERT INTO public.t80_noop VALUES (1, 'ok', %s, '1'), (2, 'ok', '2', '{}')", [NUL])
    kit.writer.execute("UPDATE public.t80_noop SET j = j, m = m")
    n_noop = len(events_under(kit.db, "public.t80_noop.update"))
    kit.writer.execute("UPDATE public.t80_noop SET j = %s WHERE id = 1", [' ' + NUL])
    ups = events_under(kit.db, "public.t80_noop.update")
    exp, _ = expected(kit.owner, "public.t80_noop", "id = 1")
    assert (n_noop, len(ups)) == (0, 1)
    assert same(kit.db, ups[0]["row_after"], exp) and ups[0]["row_before"] != ups[0]["row_after"]


def test_r5_copy_on_conflict_merge(kit):
    """COPY of honest and refused rows; INSERT ... ON CONFLICT DO UPDATE; MERGE; each image exact."""
    mood(kit)
    mk(kit, "t80_ops", "id int PRIMARY KEY, m public.t80_mood, j json")
    with kit.writer.cursor().copy("COPY public.t80_ops (id, m, j) FROM STDIN") as cp:
        cp.write_row((1, "ok", NUL))
        cp.write_row((2, "ok", '{"a": "\\""}'))
        cp.write_row((3, "sad", BIG))
    assert check_inserts(kit, "t80_ops", [1, 2, 3]) == []
    err = try_write(kit.writer, "INSERT INTO public.t80_ops VALUES (1, 'sad', %s), (4, 'ok', %s)"
                    " ON CONFLICT (id) DO UPDATE SET m = excluded.m, j = excluded.j", [SUR, NULOBJ])
    assert err is None
    err = try_write(kit.writer, "MERGE INTO public.t80_ops t USING (VALUES (2, %s::json), (5, %s::json), (3, NULL)) s(id, j)"
                    " ON t.id = s.id WHEN MATCHED AND s.j IS NULL THEN DELETE WHEN MATCHED THEN UPDATE SET j = s.j"
                    " WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'ok', s.j)", [NUL, SUR])
    assert err is None
    assert check_inserts(kit, "t80_ops", [4, 5]) == []
    for rid in (1, 2):
        e = [x for x in events_under(kit.db, "public.t80_ops.update") if x["target_id"] == str(rid)][-1]
        exp, om = expected(kit.owner, "public.t80_ops", f"id = {rid}")
        assert same(kit.db, e["row_after"], exp) and e["payload"]["omitted"]["row_after"] == om, rid
    d = events_under(kit.db, "public.t80_ops.delete")
    assert [(x["target_id"], json.loads(x["row_before"])["j"]) for x in d] == [("3", marker(BIG))]


def test_r6_a_partitioned_table_with_an_enum_column(kit):
    """A partitioned table with an enum column, rows holding refused values, an UPDATE moving a row
    to the other partition. Safe: every event, images exact."""
    mood(kit)
    kit.owner.execute("""CREATE TABLE public.t80_part (id int, m public.t80_mood, j json, PRIMARY KEY (id, m))
                             PARTITION BY LIST (m);
                         CREATE TABLE public.t80_part_ok PARTITION OF public.t80_part FOR VALUES IN ('ok');
                         CREATE TABLE public.t80_part_sad PARTITION OF public.t80_part FOR VALUES IN ('sad');
                         GRANT ALL ON public.t80_part TO app_writer""")
    enable_tracking(kit.maint, "public.t80_part")
    err = try_write(kit.writer, "INSERT INTO public.t80_part VALUES (1, 'ok', %s), (2, 'sad', '1'), (3, 'ok', '[]')", [NUL])
    err2 = try_write(kit.writer, "UPDATE public.t80_part SET m = 'sad' WHERE id = 1")
    assert (err, err2) == (None, None)
    all_ev = kit.db.execute("SELECT kind, row_after::text, payload FROM audit.events WHERE kind LIKE 'public.t80_part%%'"
                            " ORDER BY intake_id").fetchall()
    assert len(all_ev) >= 4, all_ev
    exp, om = expected(kit.owner, "public.t80_part", "id = 1")
    last = [e for e in all_ev if e[1] and json.loads(e[1])["id"] == 1][-1]
    assert same(kit.db, last[1], exp) and last[2]["omitted"]["row_after"] == om


def test_r7_an_update_that_mends_or_spoils_a_refused_value(kit):
    """UPDATEs that replace a refused value by an honest one and back, in one statement with other
    rows: row_before marked and named where it held one, row_after exact (and the other way)."""
    mood(kit)
    mk(kit, "t80_mend", "id int PRIMARY KEY, m public.t80_mood, j json")
    kit.writer.execute("INSERT INTO public.t80_mend VALUES (1, 'ok', %s), (2, 'ok', '1'), (3, 'ok', '2')", [NUL])
    before = {i: expected(kit.owner, "public.t80_mend", f"id = {i}") for i in (1, 2, 3)}
    kit.writer.execute("UPDATE public.t80_mend SET j = CASE id WHEN 1 THEN '\"fine\"'::json WHEN 2 THEN %s::json ELSE j END,"
                       " m = 'sad'", [SUR])
    after = {i: expected(kit.owner, "public.t80_mend", f"id = {i}") for i in (1, 2, 3)}
    ups = {e["target_id"]: e for e in events_under(kit.db, "public.t80_mend.update")}
    wrong = []
    for i in (1, 2, 3):
        e = ups.get(str(i))
        if e is None:
            wrong.append((i, "missing"))
            continue
        if not (same(kit.db, e["row_before"], before[i][0]) and same(kit.db, e["row_after"], after[i][0])):
            wrong.append((i, "image", e["row_before"], e["row_after"]))
        want = {k: v for k, v in (("row_before", before[i][1]), ("row_after", after[i][1])) if v}
        if (e["payload"].get("omitted") or {}) != want:
            wrong.append((i, "named", e["payload"], want))
    assert wrong == []


@pytest.mark.parametrize("via", ["tenant", "key", "tenant_alter_attribute", "tenant_domain", "tenant_retype"])
def test_r8_a_tenant_or_key_composite_given_a_json_attribute_after_tracking(kit, via):
    """A tenant column (or a primary-key column) of a composite type (a text); after tracking, ALTER
    TYPE adds a json attribute, and a row writes \u0000 there. A json tenant is refused (PA005): a
    marker names no tenant. Safe: the ALTER is refused, or the event's tenant / target is not a
    marker's text."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t80_tc AS (a text)")
    alter = "ALTER TYPE public.t80_tc ADD ATTRIBUTE j json"
    if via == "tenant":
        mk(kit, "t80_tcomp", "id int PRIMARY KEY, m public.t80_mood, tc public.t80_tc", tenant_column="tc")
    elif via == "tenant_alter_attribute":
        kit.owner.execute("ALTER TYPE public.t80_tc ADD ATTRIBUTE j text")
        mk(kit, "t80_tcomp", "id int PRIMARY KEY, m public.t80_mood, tc public.t80_tc", tenant_column="tc")
        alter = "ALTER TYPE public.t80_tc ALTER ATTRIBUTE j TYPE json"
    elif via == "tenant_retype":
        kit.owner.execute("CREATE TYPE public.t80_tcj AS (a text, j json)")
        mk(kit, "t80_tcomp", "id int PRIMARY KEY, m public.t80_mood, tc public.t80_tc", tenant_column="tc")
        alter = "ALTER TABLE public.t80_tcomp ALTER COLUMN tc TYPE public.t80_tcj USING ROW((tc).a, NULL)::public.t80_tcj"
    elif via == "tenant_domain":
        kit.owner.execute("CREATE DOMAIN public.t80_tcd AS public.t80_tc")
        mk(kit, "t80_tcomp", "id int PRIMARY KEY, m public.t80_mood, tc public.t80_tcd", tenant_column="tc")
    else:
        mk(kit, "t80_tcomp", "id int, m public.t80_mood, tc public.t80_tc, PRIMARY KEY (tc)")
    refused = try_write(kit.owner, alter)
    if refused is not None:
        return
    err = try_write(kit.writer, "INSERT INTO public.t80_tcomp VALUES (1, 'ok', ROW('A', %s::json))", [NUL])
    got = kit.db.execute("SELECT tenant_id, target_id FROM audit.events WHERE kind = 'public.t80_tcomp.insert'").fetchall()
    assert err is not None or not any("$omitted" in (t or "") for row in got for t in row), got


def test_r9_an_excluded_column_holding_refused_values_renamed_after_tracking(kit):
    """An excluded json column, renamed after tracking; a row writes \u0000 there (fallback path). Safe:
    either the rename is refused, or the column stays excluded: not in the image, not named."""
    mood(kit)
    mk(kit, "t80_ren", "id int PRIMARY KEY, m public.t80_mood, hid json, j json", exclude_columns=["hid"])
    refused = try_write(kit.owner, "ALTER TABLE public.t80_ren RENAME COLUMN hid TO hid2")
    col = "hid" if refused else "hid2"
    err = try_write(kit.writer, f"INSERT INTO public.t80_ren (id, m, {col}, j) VALUES (1, 'ok', %s, %s), (2, 'ok', '1', '2')",
                    [NUL, SUR])
    assert err is None
    got = {e["target_id"]: e for e in events_under(kit.db, "public.t80_ren.insert")}
    img = json.loads(got["1"]["row_after"])
    assert ("hid" not in img and "hid2" not in img, got["1"]["payload"].get("omitted")) == (True, {"row_after": ["j"]})


def test_r10_excluded_and_redacted_columns_with_odd_names_hold_refused_values(kit):
    """Excluded and redacted columns named with quotes, commas, braces and backslashes (the body's
    %L::text[] of their names), holding refused values. Safe: never named, the excluded never imaged."""
    mood(kit)
    ex, red = 'a"b,{c}\\', "x y'z}"
    mk(kit, "t80_oddx", f"id int PRIMARY KEY, m public.t80_mood, {q(ex)} json, {q(red)} json, j json",
       exclude_columns=[ex], redact_columns=[red])
    err = try_write(kit.writer, "INSERT INTO public.t80_oddx VALUES (1, 'ok', %s, %s, %s), (2, 'ok', %s, %s, '1')",
                    [NUL, SUR, BIG, NUL, NULOBJ])
    assert err is None
    assert check_inserts(kit, "t80_oddx", [1, 2], exclude=(ex,), redact=(red,)) == []


def test_r11_a_refused_value_beside_a_value_over_the_images_bound(kit):
    """One row holding \u0000 in j and 1.2 MB of text in t (the image's 1 MiB bound replaces t).
    Safe: both replaced, both named, in row_after; the other columns exact."""
    mood(kit)
    mk(kit, "t80_lg", "id int PRIMARY KEY, m public.t80_mood, j json, t text")
    big = big_hex(600_000)
    err = try_write(kit.writer, "INSERT INTO public.t80_lg VALUES (1, 'ok', %s, %s), (2, 'ok', '1', 'x')", [NUL, big])
    assert err is None
    e = [x for x in events_under(kit.db, "public.t80_lg.insert") if x["target_id"] == "1"][0]
    img = json.loads(e["row_after"])
    assert (img["j"], "$omitted" in img["t"], img["id"], img["m"]) == (marker(NUL), True, 1, "ok")
    assert e["payload"]["omitted"] == {"row_after": ["j", "t"]}


@pytest.mark.parametrize("via", ["key", "tenant"])
def test_r12_a_deep_jsonb_key_or_tenant(kit, via):
    """A jsonb primary key (or jsonb tenant column) holding an honest value 12,000 levels deep (t7: such
    a jsonb value is imaged as a marker). Safe: the event's target / tenant is the value's text, never
    a marker's."""
    mood(kit)
    if via == "key":
        mk(kit, "t80_jk", "k jsonb PRIMARY KEY, m public.t80_mood, j json")
    else:  # a jsonb tenant column is refused since trial 84 (k1: "1" and 1 named one tenant)
        with pytest.raises(InvalidArgument, match="is jsonb or made of an array"):
            mk(kit, "t80_jk", "id int PRIMARY KEY, k jsonb, m public.t80_mood, j json", tenant_column="k")
        return
    deep = "[" * 12000 + "]" * 12000
    cols = "(k, m, j)"
    err = try_write(kit.writer, f"INSERT INTO public.t80_jk {cols} VALUES (%s::jsonb, 'ok', '1')", [deep]) if via == "key" else \
        try_write(kit.writer, "INSERT INTO public.t80_jk VALUES (1, %s::jsonb, 'ok', '1')", [deep])
    got = kit.db.execute("SELECT tenant_id, target_id FROM audit.events WHERE kind = 'public.t80_jk.insert'").fetchall()
    assert err is not None or not any("$omitted" in (t or "") for row in got for t in row), got


def test_r13_writable_ctes_on_one_table_in_one_query(kit):
    """One query: a CTE INSERTs a refused row, another DELETEs one holding a refused value, the main
    statement UPDATEs a third. Safe: every event, each image exact and named."""
    mood(kit)
    mk(kit, "t80_cte", "id int PRIMARY KEY, m public.t80_mood, j json")
    kit.writer.execute("INSERT INTO public.t80_cte VALUES (1, 'ok', %s), (2, 'ok', %s)", [SUR, '"x"'])
    before1, om1 = expected(kit.owner, "public.t80_cte", "id = 1")
    err = try_write(kit.writer, "WITH a AS (INSERT INTO public.t80_cte VALUES (3, 'sad', %s) RETURNING id),"
                    " d AS (DELETE FROM public.t80_cte WHERE id = 1 RETURNING id)"
                    " UPDATE public.t80_cte SET j = %s WHERE id = 2", [NUL, BIG])
    assert err is None
    ins3 = [e for e in events_under(kit.db, "public.t80_cte.insert") if e["target_id"] == "3"]
    exp3, om3 = expected(kit.owner, "public.t80_cte", "id = 3")
    d = events_under(kit.db, "public.t80_cte.delete")
    u = events_under(kit.db, "public.t80_cte.update")
    exp2, om2 = expected(kit.owner, "public.t80_cte", "id = 2")
    assert len(ins3) == 1 and same(kit.db, ins3[0]["row_after"], exp3) and ins3[0]["payload"]["omitted"]["row_after"] == om3
    assert len(d) == 1 and same(kit.db, d[0]["row_before"], before1) and d[0]["payload"]["omitted"]["row_before"] == om1
    assert len(u) == 1 and same(kit.db, u[0]["row_after"], exp2) and u[0]["payload"]["omitted"] == {"row_after": om2}


# ============================================ class B ============================================

def test_b1_baseline_of_nested_composites_domains_dropped_attributes(kit):
    """Rows written before tracking: a composite in a composite holding json, an array of composites, a
    domain over a composite, a composite type with a dropped attribute; refused values in each, and
    honest rows. Safe: the baseline's image of each row equals its later DELETE's image, refused
    columns named alike."""
    mood(kit)
    kit.owner.execute("""CREATE TYPE public.t80_in AS (j json, gone int, t text);
                         ALTER TYPE public.t80_in DROP ATTRIBUTE gone;
                         CREATE TYPE public.t80_out AS (i public.t80_in, n int);
                         CREATE DOMAIN public.t80_dom AS public.t80_in CHECK ((VALUE).t IS NOT NULL);
                         CREATE TABLE public.t80_base (id int PRIMARY KEY, m public.t80_mood, o public.t80_out,
                             oa public.t80_out[], d public.t80_dom, da public.t80_dom[], plain json, f float8);
                         GRANT ALL ON public.t80_base TO app_writer""")
    for i, v in enumerate([NUL, SUR, BIG, NULOBJ, '{"h": "\\"x\\\\"}', '"' + "y" * 9000 + '"']):
        kit.owner.execute("INSERT INTO public.t80_base VALUES (%s, 'ok', ROW(ROW(%s::json, 'a\"b'), 1), "
                          " ARRAY[ROW(ROW(%s::json, 'c'), 2)::public.t80_out], ROW(%s::json, 'd'),"
                          " ARRAY[ROW('1', 'e')::public.t80_dom, ROW(%s::json, 'f')::public.t80_dom], %s, 0.1)",
                          [i, v, v if i % 2 else '1', v if i % 3 == 0 else '2', v if i < 2 else '3', v if i > 2 else '4'])
    enable_tracking(kit.maint, "public.t80_base", baseline=True)
    base = {e["target_id"]: e for e in events_under(kit.db, "public.t80_base.baseline")}
    want = {}
    for i in range(6):
        want[str(i)] = expected(kit.owner, "public.t80_base", f"id = {i}")
    kit.writer.execute("DELETE FROM public.t80_base")
    dels = {e["target_id"]: e for e in events_under(kit.db, "public.t80_base.delete")}
    wrong = []
    for k, (exp, om) in want.items():
        b, d = base.get(k), dels.get(k)
        if b is None or d is None:
            wrong.append((k, "missing", b is None, d is None))
            continue
        if not same(kit.db, b["row_after"], d["row_before"]):
            wrong.append((k, "baseline != delete"))
        if not same(kit.db, d["row_before"], exp):
            wrong.append((k, "delete != careful"))
        if (b["payload"].get("omitted") or {}).get("row_after", []) != om:
            wrong.append((k, "baseline named", b["payload"], om))
        if (d["payload"].get("omitted") or {}).get("row_before", []) != om:
            wrong.append((k, "delete named", d["payload"], om))
    assert wrong == []


def test_b2_baseline_of_an_enum_whose_cast_prints_refused_json(kit):
    """An enum whose cast to json prints \\u0000 (the capture marks it, c1): rows from before tracking.
    Safe: the baseline is taken, and each row's baseline image equals its DELETE's; never privileged."""
    seen = spy_cast(kit, CAST_BODY)
    kit.owner.execute("CREATE TABLE public.t80_bcast (id int PRIMARY KEY, e public.t80_e, j json);"
                      "GRANT ALL ON public.t80_bcast TO app_writer;"
                      "INSERT INTO public.t80_bcast VALUES (1, 'ok', '1'), (2, 'nul', '2'), (3, 'big', NULL)")
    seen.clear()
    err = None
    try:
        enable_tracking(kit.maint, "public.t80_bcast", baseline=True)
    except Exception as e:  # noqa: BLE001
        err = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    base = {e["target_id"]: e for e in events_under(kit.db, "public.t80_bcast.baseline")}
    kit.writer.execute("DELETE FROM public.t80_bcast")
    dels = {e["target_id"]: e for e in events_under(kit.db, "public.t80_bcast.delete")}
    assert privileged(seen) == []
    assert err is None
    assert sorted(base) == ["1", "2", "3"] == sorted(dels)
    assert [k for k in base if not same(kit.db, base[k]["row_after"], dels[k]["row_before"])] == []


def test_b3_a_baseline_of_composites_holding_large_json_with_the_maintainers_odd_settings(db, connect, kit):
    """A composite holding json (over 8,000 bytes: the baseline's suspect path, to_json then jsonb)
    beside a timestamptz, a float, an interval, a bytea and a date; the maintainer's session with
    another TimeZone, DateStyle, IntervalStyle, bytea_output and extra_float_digits. Safe: each row's
    baseline image equals its later DELETE's image."""
    mood(kit)
    kit.owner.execute("""CREATE TYPE public.t80_mix AS (j json, ts timestamptz, f float8, iv interval, b bytea, d date, r numrange);
                         CREATE TABLE public.t80_bmix (id int PRIMARY KEY, m public.t80_mood, x public.t80_mix);
                         GRANT ALL ON public.t80_bmix TO app_writer""")
    big = json.dumps({"s": "q" * 9000})
    for i, jv in enumerate([big, NUL, '{"a": 1}']):
        kit.owner.execute("INSERT INTO public.t80_bmix VALUES (%s, 'ok', ROW(%s::json, '2026-12-05 12:00:00.123456+00', 0.1,"
                          " '1 day 02:03:04.5', '\\x00ff', '2026-01-02', '[1.5,2.50)'))", [i, jv])
    kit.maint.execute("SET TimeZone = 'Asia/Kolkata'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard';"
                      " SET bytea_output = 'escape'; SET extra_float_digits = -3")
    kit.maint.execute("SELECT audit.enable_tracking('public.t80_bmix'::regclass, baseline => true)")
    kit.writer.execute("SET TimeZone = 'America/St_Johns'; SET DateStyle = 'German'; SET extra_float_digits = 0")
    base = {e["target_id"]: e for e in events_under(kit.db, "public.t80_bmix.baseline")}
    kit.writer.execute("DELETE FROM public.t80_bmix")
    dels = {e["target_id"]: e for e in events_under(kit.db, "public.t80_bmix.delete")}
    assert sorted(base) == ["0", "1", "2"] == sorted(dels)
    assert [(k, base[k]["row_after"][:400], dels[k]["row_before"][:400]) for k in base
            if not same(kit.db, base[k]["row_after"], dels[k]["row_before"])] == []


def test_b4_a_baseline_of_a_partitioned_table_whose_partitions_differ_in_layout(kit):
    """A partitioned table with an enum and json: one partition made apart with its columns in another
    order and a dropped column, then attached; refused values in both. Safe: baseline == DELETE."""
    mood(kit)
    kit.owner.execute("""CREATE TABLE public.t80_bp (id int, m public.t80_mood, j json, c text, PRIMARY KEY (id, m))
                             PARTITION BY LIST (m);
                         CREATE TABLE public.t80_bp_ok PARTITION OF public.t80_bp FOR VALUES IN ('ok');
                         CREATE TABLE public.t80_bp_sad (gone int, c text, j json, m public.t80_mood NOT NULL, id int NOT NULL);
                         ALTER TABLE public.t80_bp_sad DROP COLUMN gone;
                         ALTER TABLE public.t80_bp ATTACH PARTITION public.t80_bp_sad FOR VALUES IN ('sad');
                         GRANT ALL ON public.t80_bp TO app_writer""")
    kit.owner.execute("INSERT INTO public.t80_bp VALUES (1, 'ok', %s, 'a'), (2, 'sad', %s, 'b'), (3, 'sad', '[1]', 'c'),"
                      " (4, 'ok', '{}', 'd')", [NUL, SUR])
    enable_tracking(kit.maint, "public.t80_bp", baseline=True)
    base = {json.loads(e["row_after"])["id"]: e for e in kit.db.execute(
        "SELECT row_after::text AS row_after, payload FROM audit.events WHERE kind LIKE 'public.t80_bp%%.baseline'").fetchall()
        for e in [{"row_after": e[0], "payload": e[1]}]}
    kit.writer.execute("DELETE FROM public.t80_bp")
    dels = {json.loads(e[0])["id"]: {"row_before": e[0], "payload": e[1]} for e in kit.db.execute(
        "SELECT row_before::text, payload FROM audit.events WHERE kind LIKE 'public.t80_bp%%.delete'").fetchall()}
    assert sorted(base) == [1, 2, 3, 4] == sorted(dels)
    assert [k for k in base if not same(kit.db, base[k]["row_after"], dels[k]["row_before"])
            or (base[k]["payload"].get("omitted") or {}).get("row_after") != (dels[k]["payload"].get("omitted") or {}).get("row_before")] == []


def test_b5_an_inline_tables_baseline_and_delete_of_json_arrays_with_bounds_and_domains(kit):
    """A table of built-in types only (inline capture): json[] with bounds, a domain over json[], a json
    column, holding refused values; the marker is of to_json's text in the baseline and the capture.
    Safe: baseline == DELETE, named alike."""
    kit.owner.execute("""CREATE DOMAIN public.t80_dja AS json[];
                         CREATE TABLE public.t80_bi (id int PRIMARY KEY, a json[], d public.t80_dja, j json);
                         GRANT ALL ON public.t80_bi TO app_writer""")
    kit.owner.execute("INSERT INTO public.t80_bi VALUES (1, '[0:1]={1,2}', ARRAY[%s::json, '2'], %s),"
                      " (2, '[0:1]={1,2}', ARRAY['\"x\"'::json], '3')", [SUR, BIG])
    kit.owner.execute("UPDATE public.t80_bi SET a[0] = %s::json WHERE id = 1", [NUL])
    enable_tracking(kit.maint, "public.t80_bi", baseline=True)
    base = {e["target_id"]: e for e in events_under(kit.db, "public.t80_bi.baseline")}
    want = {k: expected(kit.owner, "public.t80_bi", f"id = {k}") for k in ("1", "2")}
    kit.writer.execute("DELETE FROM public.t80_bi")
    dels = {e["target_id"]: e for e in events_under(kit.db, "public.t80_bi.delete")}
    wrong = [(k, base[k]["row_after"][:300], dels[k]["row_before"][:300], want[k][0][:300]) for k in ("1", "2")
             if not (same(kit.db, base[k]["row_after"], dels[k]["row_before"]) and same(kit.db, dels[k]["row_before"], want[k][0]))]
    assert wrong == []
    assert [(base[k]["payload"].get("omitted") or {}).get("row_after", []) for k in ("1", "2")] == [want["1"][1], []]


@pytest.mark.parametrize("with_json", [False, True])
def test_b6_a_baseline_of_a_deep_jsonb_value_against_its_delete(kit, with_json):
    """A jsonb value 12,000 levels deep written before tracking (t7: the capture marks it; that is t7's
    finding, not asserted here). Safe: the baseline's image equals the DELETE's, both name the same
    columns."""
    mood(kit)
    kit.owner.execute("CREATE TABLE public.t80_bdj (id int PRIMARY KEY, m public.t80_mood, b jsonb"
                      + (", j json" if with_json else "") + "); GRANT ALL ON public.t80_bdj TO app_writer")
    kit.owner.execute("INSERT INTO public.t80_bdj (id, m, b) VALUES (1, 'ok', %s::jsonb)", ["[" * 12000 + "]" * 12000])
    err = None
    try:
        enable_tracking(kit.maint, "public.t80_bdj", baseline=True)
    except Exception as e:  # noqa: BLE001
        err = str(e)[:200]
    kit.writer.execute("DELETE FROM public.t80_bdj")
    b = events_under(kit.db, "public.t80_bdj.baseline")
    d = events_under(kit.db, "public.t80_bdj.delete")
    assert err is None and len(b) == 1 and len(d) == 1
    assert same(kit.db, b[0]["row_after"], d[0]["row_before"])
    assert (b[0]["payload"].get("omitted") or {}).get("row_after") == (d[0]["payload"].get("omitted") or {}).get("row_before")


# ============================================ class P ============================================

def test_p1_one_refused_row_among_twenty_thousand(kit):
    """20,000 honest rows with and without one refused row, into a non-inline table. Informational:
    the ratio; asserted: completes, every row captured, the refused one marked."""
    mood(kit)
    mk(kit, "t80_cost", "id int PRIMARY KEY, m public.t80_mood, j json, t text")
    n = 20000
    times = {"clean": [], "one_refused": []}
    for rnd in range(2):
        for mode in ("clean", "one_refused"):
            base = (rnd * 2 + (mode == "one_refused")) * 100000
            extra = f", ({base + n}, 'ok', %s, 'x')" if mode == "one_refused" else ""
            t0 = time.perf_counter()
            kit.writer.execute(f"INSERT INTO public.t80_cost SELECT {base} + g, 'ok'::public.t80_mood, json_build_object('g', g, 's', 'a\"b'),"
                               f" repeat('z', 50) FROM generate_series(0, {n - 1}) g" + (
                                   f" UNION ALL SELECT {base + n}, 'ok'::public.t80_mood, %s::json, 'x'" if extra else ""),
                               [NUL] if extra else None)
            times[mode].append(time.perf_counter() - t0)
    clean, refused = min(times["clean"]), min(times["one_refused"])
    print(f"\nP1: clean {clean:.3f}s, one refused {refused:.3f}s, ratio {refused / clean:.2f}")
    assert kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t80_cost.insert'").fetchone()[0] == 4 * n + 2
    bad = kit.db.execute("SELECT count(*) FROM audit.events e JOIN public.t80_cost t ON e.target_id = t.id::text"
                         " WHERE e.kind = 'public.t80_cost.insert' AND t.id %% 100000 < %s"
                         " AND e.row_after <> to_jsonb(t.*)", [n]).fetchone()[0]
    assert bad == 0


def test_p2_rows_over_8000_bytes_beside_a_refused_one(kit):
    """200 honest rows each over 8,000 bytes of JSON (a long string with quotes and backslashes, an
    array of many members), one refused; images exact, timed (informational)."""
    mood(kit)
    mk(kit, "t80_wide", "id int PRIMARY KEY, m public.t80_mood, j json, t text")
    t0 = time.perf_counter()
    kit.writer.execute("INSERT INTO public.t80_wide SELECT g, 'ok'::public.t80_mood, (SELECT json_agg(json_build_object('k\"' || i, repeat('\\\"', 3)))"
                       " FROM generate_series(1, 400) i), repeat('a\\\"b', 3000) FROM generate_series(1, 200) g"
                       " UNION ALL SELECT 0, 'sad'::public.t80_mood, %s::json, repeat('q', 9000)", [NUL])
    print(f"\nP2: {time.perf_counter() - t0:.3f}s")
    assert honest_equal_to_jsonb(kit.db, "t80_wide", "public.t80_wide.insert", list(range(1, 201))) == []
    assert check_inserts(kit, "t80_wide", [0]) == []


def test_p3_one_refused_row_holding_a_large_honest_array(kit):
    """One row holding \u0000 and an honest json array of 300,000 members (the tokenizer's whole
    work): completes, exact, timed against the same row without the refused value (informational)."""
    mood(kit)
    mk(kit, "t80_bigarr", "id int PRIMARY KEY, m public.t80_mood, a json, j json")
    big = "[" + ",".join(["1"] * 50000) + "]"
    t0 = time.perf_counter()
    err0 = try_write(kit.writer, "INSERT INTO public.t80_bigarr VALUES (1, 'ok', %s, '1')", [big])
    t1 = time.perf_counter()
    err1 = try_write(kit.writer, "INSERT INTO public.t80_bigarr VALUES (2, 'ok', %s, %s)", [big, NUL])
    t2 = time.perf_counter()
    print(f"\nP3: clean {t1 - t0:.3f}s, refused {t2 - t1:.3f}s, ratio {(t2 - t1) / (t1 - t0):.1f}")
    assert (err0, err1) == (None, None)
    assert check_inserts(kit, "t80_bigarr", [1, 2]) == []


def test_p4_every_row_refused(kit):
    """5,000 rows, each holding \u0000, against 5,000 honest rows (informational ratio); every
    refused row captured with its marker."""
    mood(kit)
    mk(kit, "t80_allr", "id int PRIMARY KEY, m public.t80_mood, j json")
    t0 = time.perf_counter()
    kit.writer.execute("INSERT INTO public.t80_allr SELECT g, 'ok'::public.t80_mood, json_build_object('g', g)"
                       " FROM generate_series(1, 5000) g")
    t1 = time.perf_counter()
    kit.writer.execute("INSERT INTO public.t80_allr SELECT 10000 + g, 'ok'::public.t80_mood, ('{\"g\": \"\\u0000' || g || '\"}')::json"
                       " FROM generate_series(1, 5000) g")
    t2 = time.perf_counter()
    print(f"\nP4: clean {t1 - t0:.3f}s, all refused {t2 - t1:.3f}s, ratio {(t2 - t1) / (t1 - t0):.1f}")
    n = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t80_allr.insert'"
                       " AND payload -> 'omitted' = '{\"row_after\": [\"j\"]}' AND row_after -> 'j' ? '$omitted'").fetchone()[0]
    assert n == 5000
    assert check_inserts(kit, "t80_allr", [10001, 15000]) == []


def test_p5_a_refused_row_holding_a_long_string_of_escapes(kit):
    """One refused row beside a 600 kB json string made of escaped quotes and backslashes (one token
    for the tokenizer's string pattern) and a 600 kB text of them: completes, exact, timed."""
    mood(kit)
    mk(kit, "t80_esc", "id int PRIMARY KEY, m public.t80_mood, s json, t text, j json")
    s = json.dumps('\\"' * 200000)
    t0 = time.perf_counter()
    err = try_write(kit.writer, "INSERT INTO public.t80_esc VALUES (1, 'ok', %s, %s, %s), (2, 'ok', %s, 'x', '1')",
                    [s, '\\"' * 200000, NUL, s])
    print(f"\nP5: {time.perf_counter() - t0:.3f}s")
    assert err is None
    assert check_inserts(kit, "t80_esc", [1, 2]) == []


# ============================================ class V ============================================

def test_v1_seal_and_verify_after_the_fallback(kit):
    """A mixture of fallback statements (insert, update with a key change, delete, baseline), then seal:
    both verifiers agree, nothing quarantined."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t80_vc AS (j json, s text);"
                      "CREATE TABLE public.t80_v (id int PRIMARY KEY, m public.t80_mood, c public.t80_vc, j json);"
                      "GRANT ALL ON public.t80_v TO app_writer")
    kit.owner.execute("INSERT INTO public.t80_v VALUES (100, 'ok', ROW('\"\\u0000\"', 'x'), '1'), (101, 'ok', NULL, %s)", [SUR])
    enable_tracking(kit.maint, "public.t80_v", baseline=True, redact_columns=["j"])
    kit.writer.execute("INSERT INTO public.t80_v VALUES (1, 'ok', ROW(%s::json, 'a\"'), %s), (2, 'sad', NULL, '2')", [NUL, BIG])
    kit.writer.execute("UPDATE public.t80_v SET id = id + 10, m = 'sad'")
    kit.writer.execute("DELETE FROM public.t80_v WHERE id IN (11, 110)")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] == 0
    assert kit.db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.t80_v.%%'").fetchone()[0] == 2 + 2 + 4 + 2


def test_v2_seal_and_verify_with_markers_in_tenant_and_key_and_deep_jsonb(kit):
    """The events r8 and t7 make (a marker as a tenant and as a key, a deep jsonb value marked), sealed:
    both verifiers agree, nothing quarantined."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t80_vt AS (a text)")
    mk(kit, "t80_vten", "id int PRIMARY KEY, m public.t80_mood, tc public.t80_vt, b jsonb", tenant_column="tc")
    altered = try_write(kit.owner, "ALTER TYPE public.t80_vt ADD ATTRIBUTE j json")
    if altered is None:
        try_write(kit.writer, "INSERT INTO public.t80_vten VALUES (1, 'ok', ROW('A', %s::json)::public.t80_vt, '1')", [NUL])
    try_write(kit.writer, "INSERT INTO public.t80_vten (id, m, b) VALUES (2, 'ok', %s::jsonb)", ["[" * 12000 + "]" * 12000])
    try_write(kit.writer, "UPDATE public.t80_vten SET m = 'sad'")
    try_write(kit.writer, "DELETE FROM public.t80_vten")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] == 0


@pytest.mark.parametrize("case", ["t1", "t3", "r5", "b1", "r2"])
def test_v3_seal_and_verify_after_each_class(kit, case):
    """t1's odd names, t3's composites, r5's COPY / ON CONFLICT / MERGE, b1's baseline, r2's tenant
    move, each then sealed: both verifiers agree, nothing quarantined."""
    {"t1": test_t1_odd_column_names_split_right_in_a_statement_with_a_refused_row,
     "t3": test_t3_composites_arrays_multidim_nulls,
     "r5": test_r5_copy_on_conflict_merge,
     "b1": test_b1_baseline_of_nested_composites_domains_dropped_attributes,
     "r2": test_r2_a_tenant_move_of_a_row_holding_refused_values}[case](kit)
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] == 0
