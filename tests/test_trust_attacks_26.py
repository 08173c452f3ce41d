"""A twenty-sixth attacker's trial, on the mend of a666dc3 (sql/65_schema_changes.sql): _on_ddl_end
now leaves at once for a CREATE FUNCTION whose function no generated column's default (pg_attrdef)
and no type (pg_type) depends on DIRECTLY, and its check of a replaced function looks only one
step up the same two edges. PostgreSQL's record of dependencies is a graph: a generated column may
reach a function through another function's SQL-standard body (BEGIN ATOMIC), through an operator,
or a range type through its subtype_diff's body. A function at the far end, replaced to call a
temporary one, hands the covered column to its session's end, where no event trigger fires and the
column goes with every row's value. Beside those: keys of a reg* type, whose text is the name of
an object at the time of the write (an object renamed and its name reused gives two rows one
history); odd Unicode in the names and labels the sandbox prints into row images, through both
verifiers; a DROP ... CASCADE of the same nested function as a control (sql_drop sees it); and the
sealer, verify and the history functions under a reader's and a maintainer's hostile settings.
Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack
breaks it.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and on public; TEMP, as every role has) unless it says otherwise;
app_maintainer (a member of table_owner) tracks the tables.
"""

from __future__ import annotations

import psycopg
import pytest
from schema_changes import both_verifiers_ok, columns, names_table, schema_events

from pgaudit_py import InvalidTarget, enable_tracking


def _end_session(db: psycopg.Connection, session: psycopg.Connection) -> None:
    """Close a session and wait until its backend (and so its temporary schema) is gone."""
    pid = session.info.backend_pid
    session.close()
    for _ in range(600):
        if not db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
            return
        db.execute("SELECT pg_sleep(0.05)")


# --- 2. A covered column handed to a session's end, one step further up the graph -------------------

# route: (setup as table_owner, the covered table's columns, the function to replace and its new body
# calling pg_temp.t, the column expected to go)
INDIRECT = {
    # book.g GENERATED (public.g(v)); g's SQL-standard body calls public.h: g depends on h.
    "function_called_by_the_generated_columns_function": (
        ["CREATE FUNCTION public.h(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT $1 * 2; END",
         "CREATE FUNCTION public.g(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT public.h($1); END"],
        "(id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.g(v)) STORED)",
        "CREATE OR REPLACE FUNCTION public.h(int) RETURNS int LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT pg_temp.t($1); END",
        "g"),
    # book.g GENERATED (v @+@ 1): the default depends on the operator, the operator on its function.
    "operator_in_the_generated_column": (
        ["CREATE FUNCTION public.plus(int, int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT $1 + $2; END",
         "CREATE OPERATOR public.@+@ (LEFTARG = int, RIGHTARG = int, FUNCTION = public.plus)"],
        "(id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (v OPERATOR(public.@+@) 1) STORED)",
        "CREATE OR REPLACE FUNCTION public.plus(int, int) RETURNS int LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT pg_temp.t($1 + $2); END",
        "g"),
    # book.r of a range type whose subtype_diff's body calls public.h: the type depends on the
    # subtype_diff, the subtype_diff on h.
    "function_called_by_a_ranges_subtype_diff": (
        ["CREATE FUNCTION public.h(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE"
         " BEGIN ATOMIC SELECT $1 - $2; END",
         "CREATE FUNCTION public.diff(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE"
         " BEGIN ATOMIC SELECT public.h($1, $2); END",
         "CREATE TYPE public.span AS RANGE (subtype = float8, subtype_diff = public.diff)"],
        "(id int PRIMARY KEY, v int, r public.span)",
        "CREATE OR REPLACE FUNCTION public.h(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT pg_temp.t($1) - $2; END",
        "r"),
}


@pytest.mark.parametrize("route", INDIRECT)
def test_c2_a_function_beneath_a_covered_column_replaced_to_depend_on_a_temporary_one_is_refused_or_recorded(
        db, connect, attacker, route):
    """Trial 25 replaced the generated column's own function; the mend checks the tables whose
    defaults or types depend on a replaced function directly, and a666dc3 leaves at once for any
    other CREATE FUNCTION. Here the function replaced sits one step further: called by the
    generated column's function, or by an operator the expression uses, or by a range type's
    subtype_diff. Its new body calls pg_temp.t: when the session ends, the temporary schema is
    dropped with CASCADE (t, the replaced function, what depends on it, the column), with no event
    trigger. The replacement must be refused, or the column's end recorded."""
    setup, table, replace, column = INDIRECT[route]
    for command in setup:
        attacker.execute(command)
    attacker.execute(f"CREATE TABLE public.book {table}")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5)")
    if column == "r":
        attacker.execute("UPDATE public.book SET r = public.span(1.5, 2.5)")
    enable_tracking(connect("app_maintainer"), "public.book")
    before = columns(db, "public.book")
    assert column in before
    session = connect("table_owner")
    session.execute("CREATE FUNCTION pg_temp.t(float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$")
    session.execute("CREATE FUNCTION pg_temp.t(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$")
    n = len(schema_events(db))
    try:
        session.execute(replace)
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    _end_session(db, session)
    left = columns(db, "public.book")
    if left == before:
        return  # PostgreSQL kept the column after all
    recorded = [e for e in schema_events(db)[n:] if names_table(e, "public.book")]
    assert recorded, (f"book.{column} went with its session's temporary schema (columns {before} -> {left}),"
                      f" nothing recorded")


DROPS = {"function_called_by_the_generated_columns_function": "DROP FUNCTION public.h(int) CASCADE",
         "operator_in_the_generated_column": "DROP OPERATOR public.@+@ (int, int) CASCADE",
         "function_called_by_a_ranges_subtype_diff": "DROP FUNCTION public.h(float8, float8) CASCADE"}


@pytest.mark.parametrize("route", DROPS)
def test_c2_control_the_same_graph_dropped_with_cascade_is_recorded(db, connect, attacker, route):
    """The same graphs taken down by a command (DROP ... CASCADE of the far function or the
    operator): the covered column goes. A DROP fires sql_drop, which records every cascaded column."""
    setup, table, _, column = INDIRECT[route]
    for command in setup:
        attacker.execute(command)
    attacker.execute(f"CREATE TABLE public.book {table}")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5)")
    enable_tracking(connect("app_maintainer"), "public.book")
    n = len(schema_events(db))
    try:
        attacker.execute(DROPS[route])
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    assert column not in columns(db, "public.book")
    assert [e for e in schema_events(db)[n:] if names_table(e, "public.book")], f"book.{column} dropped, nothing recorded"


def test_c2_a_nested_function_replaced_without_anything_temporary_still_writes_and_captures(db, connect, attacker):
    """Legitimate work beside the hole: replacing a function a generated column reaches through
    another one (no temporary object) is allowed and the next write is captured as usual."""
    for command in INDIRECT["function_called_by_the_generated_columns_function"][0]:
        attacker.execute(command)
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int,"
                     " g int GENERATED ALWAYS AS (public.g(v)) STORED)")
    enable_tracking(connect("app_maintainer"), "public.book")
    attacker.execute("CREATE OR REPLACE FUNCTION public.h(int) RETURNS int LANGUAGE sql IMMUTABLE"
                     " BEGIN ATOMIC SELECT $1 * 3; END")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (7, 2)")
    image = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book.insert'").fetchone()
    assert image is not None and image[0] == {"id": 7, "v": 2, "g": 6}


# --- 3. Keys whose text is an object's name ---------------------------------------------------------

REG_KEYS = {
    # (key type, make the first object, its key literal, rename it away, make the second under the name)
    "regclass": ("regclass", "CREATE TABLE public.a (x int)", "public.a",
                 "ALTER TABLE public.a RENAME TO a_old", "CREATE TABLE public.a (x int)"),
    "regproc": ("regproc", "CREATE FUNCTION public.fa() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", "public.fa",
                "ALTER FUNCTION public.fa() RENAME TO fa_old",
                "CREATE FUNCTION public.fa() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$"),
}


@pytest.mark.parametrize("route", REG_KEYS)
def test_c3_a_reg_key_whose_object_is_renamed_and_its_name_reused_never_gives_two_rows_one_history(
        db, connect, attacker, route):
    """A reg* value is an oid printed as the object's name at the time of the write. A table keyed
    by one: row 1 is the oid of public.a; the owner renames public.a away and makes another public.a
    (no ALTER of the covered table, nothing recorded), and inserts its oid as row 2. Both rows are
    in the table at once (two oids), but row 2's events carry the target_id row 1's insert carried:
    row_history(reg, 'public.a') shows one row inserted twice, the first row's past as the second's.
    docs/capture.md admits that a rename changes what a reg* value reads as; two rows sharing one
    history is what the array-key and jsonb-key mends refuse (tests/test_trust_attacks_7.py, _11.py).
    Safe: tracking refuses such a key (PA008), or no history names two rows."""
    typ, make_first = REG_KEYS[route][:2]
    attacker.execute(make_first)
    attacker.execute(f"CREATE TABLE public.reg (k {typ} PRIMARY KEY, note text)")
    with pytest.raises(InvalidTarget, match=f"type {typ}, which prints an object's name"):
        enable_tracking(connect("app_maintainer"), "public.reg")


# --- 5. Odd Unicode in the names and labels the sandbox prints -------------------------------------

ODD_LABELS = ["line\u2028sep", "e\u0301", "\u00e9", "\ufffe", "\uffff", "\U0010ffff", "\x01x", "\x7f",
              "a\u0300\u0301\u0302\u0303\u0304", "\U0001f600", "a\uff61", "\\\"", "\ufeff"]


def test_c5_odd_unicode_enum_labels_and_attribute_names_in_sandboxed_images_verify_in_both(db, connect, attacker):
    """Row images of a table with a composite column (converted in the sandbox): the composite's
    attribute names (jsonb keys that sort differently by bytes, code points and UTF-16: U+1F600 and
    'a' U+FF61 are four bytes each) and an enum's labels (U+2028, a combining sequence beside its
    precomposed form, noncharacters, U+10FFFF, a control and DEL, a BOM, quote and backslash). An
    UPDATE walks every label; sealed, both verifiers must agree the chain holds, and the images must
    name every label as stored."""
    labels = ", ".join("'" + s.replace("'", "''") + "'" for s in ODD_LABELS)
    attacker.execute(f"CREATE TYPE public.odd AS ENUM ({labels})")
    attacker.execute('CREATE TYPE public.pair AS ("\U0001f600" public.odd, "a\uff61" public.odd,'
                     ' "\u2028" text, "e\u0301" int, "\u00e9" int)')
    attacker.execute("CREATE TABLE public.odd_t (id int PRIMARY KEY, p public.pair, e public.odd[])")
    enable_tracking(connect("app_maintainer"), "public.odd_t")
    attacker.execute("INSERT INTO public.odd_t VALUES (1, ROW(%s, %s, 'x', 1, 2), %s::public.odd[])",
                     (ODD_LABELS[0], ODD_LABELS[1], ODD_LABELS))
    for i in range(1, len(ODD_LABELS)):
        attacker.execute("UPDATE public.odd_t SET p.\"\U0001f600\" = %s::public.odd, e = e[2:] || e[1:1]",
                         (ODD_LABELS[i],))
    attacker.execute("DELETE FROM public.odd_t")
    db.execute("SELECT audit.seal()")
    both_verifiers_ok(db)
    first = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.odd_t.insert'").fetchone()[0]
    assert first["e"] == ODD_LABELS
    assert first["p"]["\U0001f600"] == ODD_LABELS[0] and first["p"]["e\u0301"] == 1 and first["p"]["\u00e9"] == 2


# --- 4. Settings -----------------------------------------------------------------------------------

HOSTILE_ROLE_SETTINGS = {"DateStyle": "SQL, DMY", "TimeZone": "Pacific/Chatham", "IntervalStyle": "iso_8601",
                         "extra_float_digits": "-15", "lc_numeric": "de_DE.UTF-8", "lc_time": "de_DE.UTF-8",
                         "bytea_output": "escape", "standard_conforming_strings": "off",
                         "default_text_search_config": "german", "quote_all_identifiers": "on",
                         "enable_seqscan": "off", "enable_indexscan": "off", "enable_bitmapscan": "off",
                         "plan_cache_mode": "force_generic_plan", "jit": "on", "jit_above_cost": "0"}


def test_c4_history_seal_and_verify_answer_alike_under_a_roles_hostile_settings(db, connect, attacker):
    """The reader and the maintainer carry role defaults (ALTER ROLE ... SET) that change how text
    is read and printed and how plans are made. seal(), verify(), the Python verifier, row_history,
    row_state_as_of and list_events must answer what a default session answers."""
    attacker.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, amount float8, at timestamptz, span interval,"
                     " raw bytea)")
    enable_tracking(connect("app_maintainer"), "public.ledger")
    attacker.execute("INSERT INTO public.ledger VALUES (1, 1349.01, '2026-05-01 10:00+00', '1 day 02:00', '\\x00ff')")
    attacker.execute("UPDATE public.ledger SET amount = 1349.02, span = '-1 day +02:00'")
    plain = connect("app_reader")
    expected = plain.execute("SELECT kind, row_after::text, changed::text FROM audit.row_history('public.ledger', '1')"
                             ).fetchall()
    state = plain.execute("SELECT state, image::text FROM audit.row_state_as_of('public.ledger', '1', now())").fetchone()
    for role in ("app_reader", "app_maintainer"):
        for name, value in HOSTILE_ROLE_SETTINGS.items():
            db.execute(f"ALTER ROLE {role} SET {name} = '{value}'")
    try:
        maintainer = connect("app_maintainer")
        assert maintainer.execute("SELECT sealed FROM audit.seal()").fetchone()[0] >= 2
        reader = connect("app_reader")
        got = reader.execute("SELECT kind, row_after::text, changed::text FROM"
                             " audit.row_history('public.ledger', '1')").fetchall()
        assert got == expected
        assert reader.execute("SELECT state, image::text FROM audit.row_state_as_of('public.ledger', '1', now())"
                              ).fetchone() == state
        ok = reader.execute("SELECT ok, problem FROM audit.verify()").fetchone()
        assert ok[0], ok
        from pgaudit_py.chain import verify_chain
        py = verify_chain(reader)
        assert py.ok, py.problem
        assert reader.execute("SELECT count(*) FROM audit.list_events(kind_prefix => 'public.ledger.')"
                              ).fetchone()[0] == 2
    finally:
        for role in ("app_reader", "app_maintainer"):
            db.execute(f"ALTER ROLE {role} RESET ALL")


def test_c2_discard_temp_takes_the_covered_column_at_once(db, connect, attacker):
    """The same hole without waiting for the session's end: DISCARD TEMP (no event trigger fires on
    it) drops the temporary schema's objects with CASCADE at once, inside the session that made
    them; the covered column goes while the session lives on and writes."""
    setup, table, replace, _ = INDIRECT["function_called_by_the_generated_columns_function"]
    for command in setup:
        attacker.execute(command)
    attacker.execute(f"CREATE TABLE public.book {table}")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5)")
    enable_tracking(connect("app_maintainer"), "public.book")
    session = connect("table_owner")
    session.execute("CREATE FUNCTION pg_temp.t(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$")
    n = len(schema_events(db))
    try:
        session.execute(replace)
        session.execute("DISCARD TEMP")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    left = columns(db, "public.book")
    if "g" in left:
        return
    recorded = [e for e in schema_events(db)[n:] if names_table(e, "public.book")]
    assert recorded, f"DISCARD TEMP took book.g (columns now {left}), nothing recorded"


def test_c5_a_json_columns_odd_numbers_and_duplicate_keys_are_captured_and_verify_in_both(db, connect, attacker):
    """A json (not jsonb) column keeps its text as written: duplicate keys, -0, 1E+2, 0.000, -0.0e5,
    1e-7, a 40-digit integer, keys equal by NFC but not by bytes, U+2028 and an escaped surrogate
    pair. to_jsonb turns it into jsonb in the image (last duplicate wins, numbers as numeric prints
    them). Both verifiers must agree on the sealed chain, and an UPDATE that only changes the
    duplicate that jsonb drops is not an event that claims a change it cannot show."""
    attacker.execute("CREATE TABLE public.doc (id int PRIMARY KEY, j json)")
    enable_tracking(connect("app_maintainer"), "public.doc")
    odd = ('{"a": 1, "a": -0, "n": 1E+2, "z": 0.000, "m": -0.0e5, "s": 1e-7,'
           ' "big": 1234567890123456789012345678901234567890, "e\\u0301": 1, "\\u00e9": 2,'
           ' "\\u2028": "\\ud83d\\ude00", "\\uff61": [1.50, -0.0]}')
    attacker.execute("INSERT INTO public.doc VALUES (1, %s::json)", (odd,))
    attacker.execute("UPDATE public.doc SET j = %s::json", (odd.replace('"a": 1,', '"a": 7,'),))
    attacker.execute("UPDATE public.doc SET j = %s::json", (odd.replace('"n": 1E+2', '"n": 100'),))
    db.execute("SELECT audit.seal()")
    both_verifiers_ok(db)
    image = db.execute("SELECT row_after -> 'j' FROM audit.events WHERE kind = 'public.doc.insert'").fetchone()[0]
    assert image["\u2028"] == "\U0001f600" and "e\u0301" in image and "\u00e9" in image
