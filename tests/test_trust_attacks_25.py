"""A twenty-fifth attacker's trial, on the class trials 20-24 opened: changes that make a covered
(tracked) table's stored rows read differently, or drop a column with its values, with no row
event, must be recorded (audit.tracked_table_ddl, audit.tracked_type_altered) or refused (PA008);
no owner's code may decide what is recorded; one role's objects must not make another's DDL fail.
The routes tried here are the ones the five trials before left alone: casts to json other than a
table owner's own function (a superuser's function of the owner's type created as the cast after
tracking, the same cast dropped, a superuser's function that calls the owner's function, then
replaced; WITH INOUT and casts to jsonb; an extension's cast, hstore's, dropped through ALTER
EXTENSION), DROP OWNED BY (its own tag) cascading to a covered column and to a composite's attribute
beneath one, a permanent function a stored generated column calls made to depend on a temporary
object by CREATE OR REPLACE (tag CREATE FUNCTION, not watched; a SQL-standard body records its
dependencies), the writer's and the maintainer's output settings through domains, arrays,
composites, ranges and multiranges on both the inline and the sandbox path and in a baseline, and
another role's objects against status() and enable_tracking. Each test asserts the SAFE outcome: it
passes when the product holds and fails when the attack breaks it.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and on public, so it may create trusted extensions such as hstore; TEMP, as
every role has) unless it says otherwise; app_maintainer (a member of table_owner) tracks the
tables. Where a superuser's object is part of the setting (a helper function a superuser wrote,
which _json_casts trusts because a superuser owns it), the test says so: the superuser only sets
the scene, the attack is table_owner's. type_owner, where used, is a login the setup makes with no
audit role, owning a type table_owner's table uses.
"""

from __future__ import annotations

import contextlib

import psycopg
import pytest
from schema_changes import names_table, recorded_or_refused, schema_events

from pgaudit_py import PgAuditError, enable_tracking


def _image_now(db, table: str, key: int) -> dict:
    """What a row of the table reads as now, imaged the way the capture images it (the sandbox's
    to_jsonb under its pinned settings)."""
    return db.execute(f"SELECT (audit._row_images(ARRAY[x]))[1] FROM {table} x WHERE id = %s", (key,)).fetchone()[0]


def _last_image(db, kind: str) -> dict:
    return db.execute("SELECT row_after FROM audit.events WHERE kind = %s ORDER BY occurred_at DESC, intake_id DESC"
                      " LIMIT 1", (kind,)).fetchone()[0]


@pytest.fixture
def type_owner(db, connect):
    db.execute("CREATE ROLE type_owner LOGIN")
    db.execute("GRANT CREATE ON SCHEMA public TO type_owner")
    yield connect("type_owner")
    db.execute("REASSIGN OWNED BY type_owner TO postgres")
    db.execute("DROP OWNED BY type_owner")
    db.execute("DROP ROLE type_owner")


def _superusers_mood_json(db, body: str = "SELECT pg_catalog.json_build_object('label', $1::text)") -> None:
    """A helper a superuser wrote for table_owner's enum (owned by the superuser: trusted)."""
    db.execute(f"CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE sql STABLE AS $f${body}$f$")


# --- 1. Casts to json that are not the table owner's own function -----------------------------------

def test_a_trusted_cast_to_json_created_after_tracking_is_refused_or_recorded(db, connect, attacker):
    """docs/capture.md: creating a cast to json on a type a covered table uses is refused (PA008).
    _on_ddl_end checks the covered tables made of the cast's source, and _tree_problem refuses only
    an untrusted cast: a superuser's function of table_owner's enum is trusted. table_owner (who owns
    the enum; CREATE CAST needs that and EXECUTE on the function) makes it the cast after tracking:
    every stored value of book.m now reads as {"label": ...} instead of its label, with no row
    event. Needs: ownership of the enum; a superuser's function of the enum's type."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'sad')")
    _superusers_mood_json(db)
    enable_tracking(connect("app_maintainer"), "public.book")
    before = _image_now(db, "public.book", 1)
    assert before == {"id": 1, "m": "sad"}
    events = recorded_or_refused(db, attacker, "CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood)",
                                  "public.book")
    if events is not None:
        assert _image_now(db, "public.book", 1) != before  # the change the record is about


def test_a_trusted_cast_to_json_dropped_is_refused(db, connect, attacker):
    """The reverse of the last: a table tracked with a trusted cast in place (a superuser's, in C:
    hstore's), so every image of its column is hstore's JSON. DROP CAST (tag DROP CAST) would turn
    every stored value's image back into the type's text, with no row event: refused. Only a
    superuser can do it since trust needs C (hstore's cast belongs to the extension; the trial's
    table owner, who owned an enum with a superuser's SQL cast, could): run here as the superuser,
    whom the event trigger refuses too."""
    db.execute("CREATE EXTENSION IF NOT EXISTS hstore")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, h hstore)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'a=>1')")
    enable_tracking(connect("app_maintainer"), "public.book")
    attacker.execute("UPDATE public.book SET h = 'a=>2'")
    assert _last_image(db, "public.book.update") == {"id": 1, "h": {"a": "2"}}
    db.execute("ALTER EXTENSION hstore DROP CAST (hstore AS json)")
    with pytest.raises(psycopg.Error, match="would no longer have a cast to json") as refused:
        db.execute("DROP CAST (hstore AS json)")
    assert refused.value.sqlstate == "PA008"
    assert _image_now(db, "public.book", 1) == {"id": 1, "h": {"a": "2"}}


def test_a_superusers_cast_function_calling_the_owners_function_is_refused_or_its_replacement_recorded(
        db, connect, attacker):
    """_json_casts trusts a cast by its function's owner alone. A superuser's helper that calls a
    function of table_owner's (public.mood_text, say, the label spelled the owner's way) is the
    owner's code all the same: CREATE OR REPLACE FUNCTION public.mood_text (tag CREATE FUNCTION, not
    watched) changes what every stored value of book.m reads as, and runs in the sandbox on every
    write. Refused at enable_tracking, or the replacement refused or recorded. Needs: ownership of
    the enum and of the function the superuser's helper calls."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE FUNCTION public.mood_text(public.mood) RETURNS text LANGUAGE sql STABLE"
                     " AS $$ SELECT $1::text $$")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'sad')")
    _superusers_mood_json(db, "SELECT pg_catalog.to_json(public.mood_text($1))")
    attacker.execute("CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood)")
    try:
        enable_tracking(connect("app_maintainer"), "public.book")
    except (psycopg.Error, PgAuditError) as exc:
        assert exc.sqlstate == "PA008", exc  # a superuser's cast function is trusted only in C
        return
    assert _image_now(db, "public.book", 1) == {"id": 1, "m": "sad"}
    recorded_or_refused(db, attacker, "CREATE OR REPLACE FUNCTION public.mood_text(public.mood) RETURNS text"
                                       " LANGUAGE sql STABLE AS $$ SELECT CASE $1 WHEN 'sad' THEN 'ok' ELSE 'sad' END $$",
                         "public.book")


def test_casts_to_json_with_inout_and_to_jsonb_change_no_image_and_run_no_owner_code(db, connect, attacker):
    """to_jsonb consults only a cast to json, and only one with a function. table_owner adds, after
    tracking, a cast to json WITH INOUT (castfunc 0: _json_casts does not see it), a cast to jsonb
    through its own function (a spy), and tries WITHOUT FUNCTION (a superuser's). Allowed or
    refused, every write is captured as before, and the spy never runs."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood, a public.mood[])")
    enable_tracking(connect("app_maintainer"), "public.book")
    attacker.execute("CREATE FUNCTION public.mood_jsonb(public.mood) RETURNS jsonb LANGUAGE sql"
                     " AS $$ SELECT CASE WHEN public.spy('cast') THEN '\"forged\"'::jsonb END $$")
    for command in ("CREATE CAST (public.mood AS json) WITH INOUT",
                    "CREATE CAST (public.mood AS jsonb) WITH FUNCTION public.mood_jsonb(public.mood)",
                    "CREATE CAST (public.mood[] AS json) WITH INOUT",
                    "CREATE CAST (public.mood AS jsonb) WITHOUT FUNCTION"):
        try:
            attacker.execute(command)
        except psycopg.Error as exc:
            assert exc.sqlstate == "PA008" or exc.sqlstate.startswith("42"), (command, exc)
    writer = connect("app_writer")
    db.execute("GRANT INSERT, UPDATE ON public.book TO app_writer")
    writer.execute("INSERT INTO public.book VALUES (1, 'sad', '{ok,sad}')")
    assert _last_image(db, "public.book.insert") == {"id": 1, "m": "sad", "a": ["ok", "sad"]}
    assert db.execute("SELECT count(*) FROM public.who_ran").fetchone()[0] == 0


def test_an_extensions_trusted_cast_cannot_be_dropped_from_under_a_covered_column(db, connect, attacker):
    """hstore is a trusted extension: table_owner may CREATE EXTENSION it, and owns the extension, not
    its members (the bootstrap superuser's). Its cast to json (hstore_to_json, a superuser's: trusted)
    makes every image of a hstore column an object. Removing the cast, through ALTER EXTENSION ... DROP
    CAST then DROP CAST, or the function, would turn every stored value's image into hstore's text.
    Refused (by PostgreSQL or PA008) or recorded. Needs: CREATE on the database."""
    attacker.execute("CREATE EXTENSION IF NOT EXISTS hstore")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, h public.hstore)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'a=>1')")
    enable_tracking(connect("app_maintainer"), "public.book")
    assert _image_now(db, "public.book", 1) == {"id": 1, "h": {"a": "1"}}
    for command in ("ALTER EXTENSION hstore DROP CAST (public.hstore AS json)",
                    "DROP CAST (public.hstore AS json)",
                    "ALTER EXTENSION hstore DROP FUNCTION public.hstore_to_json(public.hstore)",
                    "DROP FUNCTION public.hstore_to_json(public.hstore) CASCADE"):
        recorded_or_refused(db, attacker, command, "public.book", pg_refusals=("42501", "2BP01"))
    # Whatever happened, what the rows read as is what was recorded last.
    if _image_now(db, "public.book", 1) != {"id": 1, "h": {"a": "1"}}:
        assert any(names_table(e, "public.book") for e in schema_events(db))


# --- 2. DROP OWNED BY: its own tag, dropping with CASCADE ---------------------------------------------

def test_drop_owned_by_a_types_owner_drops_a_covered_column_and_is_recorded(db, connect, attacker, type_owner):
    """type_owner owns public.mood (no audit role); table_owner's tracked book has a column of it.
    DROP OWNED BY type_owner CASCADE (tag DROP OWNED) drops the type and book.m with every row's
    value. Recorded as audit.tracked_table_ddl with the columns after it. Needs: type_owner's own
    role only (anyone may DROP OWNED BY themselves)."""
    type_owner.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood, n int)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'sad', 2)")
    enable_tracking(connect("app_maintainer"), "public.book")
    events = recorded_or_refused(db, type_owner, "DROP OWNED BY type_owner CASCADE", "public.book")
    if events is not None:
        ddl = [e for e in events if e[0] == "audit.tracked_table_ddl"]
        assert ddl and [c[1] for c in ddl[-1][2]["columns"]] == ["id", "n"], events


def test_drop_owned_by_dropping_a_composite_attribute_under_a_covered_column_is_recorded(
        db, connect, attacker, type_owner):
    """table_owner's composite public.pair has an attribute of type_owner's enum; tracked book.p is
    of pair. DROP OWNED BY type_owner CASCADE drops the attribute: every stored value of book.p loses
    a key. Recorded (audit.tracked_type_altered naming book, or tracked_table_ddl)."""
    type_owner.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TYPE public.pair AS (m public.mood, w int)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, p public.pair)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW('sad', 3))")
    enable_tracking(connect("app_maintainer"), "public.book")
    assert _image_now(db, "public.book", 1) == {"id": 1, "p": {"m": "sad", "w": 3}}
    recorded_or_refused(db, type_owner, "DROP OWNED BY type_owner CASCADE", "public.book")


# --- 3. A permanent function a generated column calls, made to depend on something temporary ------

TEMPORARY_BODIES = {
    "temporary_function": ("CREATE FUNCTION pg_temp.h(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$",
                           "SELECT pg_temp.h($1)"),
    "temporary_table": ("CREATE TEMPORARY TABLE k (v int)",
                        "SELECT $1 + (SELECT count(*)::int FROM pg_temp.k)"),
}


@pytest.mark.parametrize("route", TEMPORARY_BODIES)
def test_a_generated_columns_function_replaced_to_depend_on_a_temporary_object_is_refused_or_recorded(
        db, connect, attacker, route):
    """book.g is GENERATED ALWAYS AS (public.g(v)) STORED, public.g permanent: tracking accepts it.
    CREATE OR REPLACE FUNCTION public.g with a SQL-standard body (BEGIN ATOMIC) that names a
    temporary function or table makes g depend on it in pg_depend (tag CREATE FUNCTION: not watched).
    When the session ends its temporary schema is dropped with CASCADE, outside any command: g goes,
    and with it book.g and every row's value, with no event. The replacement must be refused, or the
    column's end recorded. Needs: ownership of g; TEMP (every role's)."""
    attacker.execute("CREATE FUNCTION public.g(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT $1 * 2; END")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.g(v)) STORED)")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5)")
    enable_tracking(connect("app_maintainer"), "public.book")
    session = connect("table_owner")
    make_temporary, body = TEMPORARY_BODIES[route]
    session.execute(make_temporary)
    n = len(schema_events(db))
    try:
        session.execute(f"CREATE OR REPLACE FUNCTION public.g(int) RETURNS int LANGUAGE sql IMMUTABLE"
                        f" BEGIN ATOMIC {body}; END")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008" or exc.sqlstate.startswith("42") or exc.sqlstate.startswith("0A"), exc
        return
    pid = session.info.backend_pid
    session.close()  # its temporary schema is dropped, with CASCADE, as the backend exits
    for _ in range(600):  # gone from pg_stat_activity only after its temporary schema is
        if not db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
            break
        db.execute("SELECT pg_sleep(0.05)")
    left = [r[0] for r in db.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'public.book'::regclass"
                                     " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
    if left == ["id", "v", "g"]:
        return  # PostgreSQL kept the column after all
    recorded = [e for e in schema_events(db)[n:] if names_table(e, "public.book")]
    assert recorded, f"book.g went with its session's temporary schema (columns now {left}), nothing recorded"


def test_a_generated_columns_function_cannot_be_moved_into_a_temporary_schema(db, connect, attacker):
    """The other way to make it temporary: ALTER FUNCTION public.g SET SCHEMA pg_temp (tag ALTER
    FUNCTION, not watched). Refused by PostgreSQL, or by the product; the column and its capture stay."""
    attacker.execute("CREATE FUNCTION public.g(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT $1 * 2 $$")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.g(v)) STORED)")
    enable_tracking(connect("app_maintainer"), "public.book")
    attacker.execute("CREATE TEMPORARY TABLE anchor (x int)")  # the session's temporary schema exists
    with pytest.raises(psycopg.Error) as refused:
        attacker.execute("ALTER FUNCTION public.g(int) SET SCHEMA pg_temp")
    assert refused.value.sqlstate in ("PA008", "0A000", "42501", "3F000", "42P17"), refused.value
    assert db.execute("SELECT audit._capture_problem('public.book'::regclass)").fetchone()[0] is None


# --- 4. Output settings the writer (or the maintainer) controls -----------------------------------

HOSTILE = {"DateStyle": "SQL, DMY", "IntervalStyle": "sql_standard", "extra_float_digits": "-15",
           "bytea_output": "escape", "lc_monetary": "de_DE.utf8", "TimeZone": "Asia/Kathmandu",
           "lc_numeric": "de_DE.utf8", "lc_time": "de_DE.utf8", "xmloption": "document",
           "quote_all_identifiers": "on"}

BUILTIN_COLUMNS = (
    "(id int PRIMARY KEY, ts tsrange, tm tstzmultirange, dr daterange, ivs interval[], dm public.dmoney,"
    " mo money[], by bytea, f float8, f4 float4[], pt point, bx box, tz timestamptz, tt timetz, t time, d date,"
    " di public.divl, x xml, cat pg_catalog.pg_enum)")
BUILTIN_VALUES = ("(1, '[2026-05-01 10:00,2026-05-02)', '{[2026-05-01 10:00+00,2026-05-02 00:00+00)}',"
                  " '[2026-05-01,2026-05-03)', '{1 day 02:03:04,-1 mons}', 1234.5, '{1234.56}', '\\x00ff41',"
                  " 1349.0123456789, '{0.1,3.3333333}', '(0.1,2.00000001)', '((1.5,2),(0.1,0.3333))',"
                  " '2026-05-01 10:00:00+00', '10:00:00+05:30', '10:00:00', '2026-05-01', '-3 days 00:00:01',"
                  " '<a>x</a>', ROW(16999, 17000, 1.0000001, 'label')::pg_catalog.pg_enum)")


def _hostile(conn) -> None:
    for name, value in HOSTILE.items():
        with contextlib.suppress(psycopg.Error):  # a locale the machine lacks
            conn.execute(f"SET {name} = '{value}'")


@pytest.mark.parametrize("path", ["inline", "sandbox"])
def test_the_writers_output_settings_change_no_image(db, connect, attacker, path):
    """The capture pins extra_float_digits, IntervalStyle, bytea_output, lc_monetary, TimeZone and
    quote_all_identifiers for the built-in types a table's columns are made of, and DateStyle only for
    a built-in range; the sandbox pins them all. A writer sets every output setting it may to odd
    values (plus lc_numeric, lc_time, xmloption) and deletes the row a writer with the defaults
    inserted (the same stored values: IntervalStyle and lc_monetary change how literals parse):
    through domains (over money, interval), arrays (interval[], money[], float4[]), built-in ranges and multiranges (tsrange, tstzmultirange), geometric types,
    time and timetz, xml, a catalogue's row type (pg_enum: oid, float4, name; pg_class's aclitem[]
    is refused since trial 28) and, for the
    sandbox path, the same beneath a composite and a user's range over timestamp, with an enum beside
    them. Both images must be the same."""
    attacker.execute("CREATE DOMAIN public.dmoney AS money")
    attacker.execute("CREATE DOMAIN public.divl AS interval")
    columns = BUILTIN_COLUMNS
    values = BUILTIN_VALUES
    if path == "sandbox":
        attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
        attacker.execute("CREATE TYPE public.tsr AS RANGE (subtype = timestamp)")
        attacker.execute("CREATE TYPE public.box_t AS (iv interval, m money, f float8, r tsrange, b bytea, tz timestamptz)")
        columns = columns[:-1] + ", mood public.mood, ur public.tsr, bx2 public.box_t)"
        values = values[:-1] + (", 'ok', '[2026-05-01 10:00,2026-05-02 11:30)',"
                                " ROW('1 day 02:00', 12.5, 0.1, '[2026-05-01,2026-05-02)', '\\x01', '2026-05-01 10:00+00'))")
    attacker.execute(f"CREATE TABLE public.book {columns}")
    enable_tracking(connect("app_maintainer"), "public.book")
    db.execute("GRANT INSERT, DELETE ON public.book TO app_writer")
    plain = connect("app_writer")
    plain.execute(f"INSERT INTO public.book VALUES {values}")  # parsed under the defaults
    expected = _last_image(db, "public.book.insert")
    odd = connect("app_writer")
    _hostile(odd)
    odd.execute("DELETE FROM public.book")  # the same stored row, imaged in the odd session
    got = db.execute("SELECT row_before FROM audit.events WHERE kind = 'public.book.delete'").fetchone()[0]
    differ = {k: (expected.get(k), got.get(k)) for k in set(expected) | set(got) if expected.get(k) != got.get(k)}
    assert not differ, differ


def test_the_maintainers_output_settings_change_no_baseline_image(db, connect, attacker):
    """A baseline is imaged in the maintainer's session, under its settings but for those the
    baseline's functions pin. The same rows baselined by a maintainer with the defaults and by one
    with every output setting odd must read alike (here through the inline and the sandbox path in
    one table: an enum beside built-in types)."""
    attacker.execute("CREATE DOMAIN public.dmoney AS money")
    attacker.execute("CREATE DOMAIN public.divl AS interval")
    attacker.execute("CREATE TYPE public.tsr AS RANGE (subtype = timestamp)")
    attacker.execute(f"CREATE TABLE public.book {BUILTIN_COLUMNS[:-1]}, ur public.tsr)")
    attacker.execute(f"INSERT INTO public.book VALUES {BUILTIN_VALUES[:-1]}, '[2026-05-01 10:00,2026-05-02 11:30)')")
    attacker.execute(f"CREATE TABLE public.book2 {BUILTIN_COLUMNS[:-1]}, ur public.tsr)")
    attacker.execute(f"INSERT INTO public.book2 VALUES {BUILTIN_VALUES[:-1]}, '[2026-05-01 10:00,2026-05-02 11:30)')")
    enable_tracking(connect("app_maintainer"), "public.book", baseline=True)
    odd = connect("app_maintainer")
    _hostile(odd)
    odd.execute("SELECT audit.enable_tracking('public.book2', baseline => true)")  # the client refuses such a session
    a = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book.baseline'").fetchone()[0]
    b = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book2.baseline'").fetchone()[0]
    differ = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert not differ, differ


# --- 5. Other roles' objects against status() and enable_tracking -------------------------------

def test_another_roles_cast_on_its_own_type_under_a_covered_column_is_refused_not_silent(
        db, connect, attacker, type_owner):
    """type_owner owns the enum a covered column of table_owner's is made of. Its CREATE CAST to json
    through its own function (untrusted) must be refused (PA008), not accepted: otherwise its code
    would decide book's images, and status would report book broken from then on."""
    type_owner.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    type_owner.execute("CREATE FUNCTION public.mood_j(public.mood) RETURNS json LANGUAGE sql AS $$ SELECT '1'::json $$")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood)")
    enable_tracking(connect("app_maintainer"), "public.book")
    with pytest.raises(psycopg.Error) as refused:
        type_owner.execute("CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_j(public.mood)")
    assert refused.value.sqlstate == "PA008", refused.value
    problems = db.execute("SELECT problems FROM audit.install_status()").fetchone()[0]
    assert not [p for p in problems if "book" in p], problems


def test_status_and_enable_tracking_survive_another_roles_odd_objects(db, connect, attacker):
    """app_attacker (no role; TEMP only) builds, in its temporary schema and over table_owner's
    types, what it can: domains, arrays, composites, ranges over the enum and the row type, and a
    cast to json of its own composite; table_owner then enables tracking of book and app_reader runs
    status. Neither may fail because of app_attacker's objects, nor report book broken."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood)")
    other = connect("app_attacker")
    other.execute("CREATE DOMAIN pg_temp.dm AS public.mood CHECK (VALUE <> 'ok')")
    other.execute("CREATE TYPE pg_temp.c AS (m public.mood, b public.book, d pg_temp.dm)")
    other.execute("CREATE TYPE pg_temp.r AS RANGE (subtype = public.mood)")
    other.execute("CREATE TEMPORARY TABLE t (c pg_temp.c, r pg_temp.r, b public.book[])")
    other.execute("CREATE FUNCTION pg_temp.cj(pg_temp.c) RETURNS json LANGUAGE sql AS $$ SELECT '1'::json $$")
    try:
        other.execute("CREATE CAST (pg_temp.c AS json) WITH FUNCTION pg_temp.cj(pg_temp.c)")
    except psycopg.Error as exc:
        assert exc.sqlstate.startswith("42") or exc.sqlstate == "PA008", exc
    other.execute("BEGIN")
    other.execute("LOCK TABLE pg_temp.t IN ACCESS EXCLUSIVE MODE")
    try:
        maintainer = connect("app_maintainer")
        maintainer.execute("SET lock_timeout = '5s'")
        enable_tracking(maintainer, "public.book")
        reader = connect("app_reader")
        reader.execute("SET lock_timeout = '5s'")
        problems = reader.execute("SELECT problems FROM audit.install_status()").fetchone()[0]
        assert not [p for p in problems if "book" in p], problems
        attacker.execute("ALTER TYPE public.mood RENAME VALUE 'ok' TO 'fine'")
    finally:
        other.execute("ROLLBACK")
