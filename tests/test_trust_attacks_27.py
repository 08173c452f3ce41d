"""A twenty-seventh attacker's trial, on the class trials 20-25 opened and the mends since (0946f66,
a666dc3, d7f3da1): changes that make a covered (tracked) table's stored rows read differently, drop
a column with its values, or lose a table's rows, with no row event, must be recorded
(audit.tracked_table_ddl, audit.tracked_type_altered, audit.tracked_table_altered) or refused
(PA008); no owner's code may decide what is recorded; one role's objects must not make another's
DDL fail or slow; hostile names are data. The routes tried here are the ones the mends opened or
left: _on_ddl_end now leaves at once for a CREATE FUNCTION that no generated column or type depends
on directly, so a function reached INDIRECTLY (a helper a generated column's, a domain default's or
a range's subtype_diff function calls; a view a covered column's row type is; a partition key's
expression, on which the table itself depends) is replaced with a SQL-standard body that names a
temporary function and DISCARD TEMP (no event trigger fires) cascades to the column, or to the whole
table; _on_sql_drop matches a dropped cast's type by the address PostgreSQL computed in the
dropping session (under that session's quote_all_identifiers), and walks every covered table's
types for any role's DROP CAST; ALTER FUNCTION ... DEPENDS ON EXTENSION then DROP EXTENSION; values stored as object ids (regclass, regtype, regproc,
regnamespace, regconfig) that print the object's current name; the "recorded twice" case of an
ALTER TABLE whose cascade drops a generated column; DETACH PARTITION (CONCURRENTLY: it commits
midway); ALTER TABLE ... SET ACCESS METHOD, SET LOGGED/UNLOGGED, REPLICA IDENTITY, NO INHERIT, a
column's collation; ALTER DOMAIN variants; ALTER EXTENSION ... UPDATE of a covered column's type;
COMMENT and SECURITY LABEL; a procedure that commits and rolls back midway; hostile schema names
under the cast address match. Each test asserts the SAFE outcome: it passes when the product holds
and fails when the attack breaks it.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and on public, so it may create trusted extensions such as hstore; TEMP, as
every role has) unless it says otherwise; app_maintainer (a member of table_owner) tracks the
tables. Where a superuser acts (dropping an extension's cast, which only the type's owner, the
bootstrap superuser, may), the test says so; the cost attack runs as a role with no privilege beyond
PUBLIC's and a schema of its own (track_functions set by the superuser only to count the work).
"""

from __future__ import annotations

import psycopg
import pytest
from schema_changes import SCHEMA_KINDS, both_verifiers_ok, columns, names_table, recorded_or_refused, schema_events

from pgaudit_py import InvalidTarget, enable_tracking


def _image_now(db, table: str, key: int) -> dict:
    """What a row of the table reads as now, imaged the way the sandbox images it."""
    return db.execute(f"SELECT (audit._row_images(ARRAY[x]))[1] FROM {table} x WHERE id = %s", (key,)).fetchone()[0]


def _track(connect, table: str) -> bool:
    """enable_tracking as app_maintainer: True when tracked, False when refused (PA008)."""
    try:
        enable_tracking(connect("app_maintainer"), table)
    except InvalidTarget:
        return False
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return False
    return True


def _events_naming(db, table: str, since: int = 0) -> list:
    """Every event that says something about the table: the schema-change kinds, a dropped tracked
    table, a partition that left."""
    rows = db.execute("SELECT kind, target_id, payload FROM audit.events"
                      " WHERE kind = ANY (%s) ORDER BY occurred_at, intake_id",
                      (list(SCHEMA_KINDS) + ["audit.tracked_table_dropped", "audit.tracked_partition_removed"],)).fetchall()
    return [r for r in rows[since:] if names_table((r[0], r[1], r[2]), table)]


def _count_events(db) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = ANY (%s)",
                      (list(SCHEMA_KINDS) + ["audit.tracked_table_dropped", "audit.tracked_partition_removed"],)
                      ).fetchone()[0]


def _table_exists(db, table: str) -> bool:
    return db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


# --- 1. A function reached indirectly, made to depend on a temporary one -----------------------------

HELPER = "CREATE FUNCTION public.inner_f(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT $1 * 2; END"
OUTER = "CREATE FUNCTION public.outer_f(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT public.inner_f($1); END"
DIFF_HELPER = ("CREATE FUNCTION public.inner_d(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE"
               " BEGIN ATOMIC SELECT $1 - $2; END")
DIFF_OUTER = ("CREATE FUNCTION public.outer_d(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE"
              " BEGIN ATOMIC SELECT public.inner_d($1, $2); END")

# route: (setup commands, table, the column that would go (None: the whole table), replacement)
INDIRECT = {
    "generated_column_through_a_helper": (
        [HELPER, OUTER,
         "CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.outer_f(v)) STORED)",
         "INSERT INTO public.book (id, v) VALUES (1, 5)"],
        "g",
        "CREATE OR REPLACE FUNCTION public.inner_f(int) RETURNS int LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT pg_temp.h($1); END"),
    "domain_default_direct": (
        [HELPER, "CREATE DOMAIN public.dd AS int DEFAULT public.inner_f(1)",
         "CREATE TABLE public.book (id int PRIMARY KEY, d public.dd)",
         "INSERT INTO public.book VALUES (1, 7)"],
        "d",
        "CREATE OR REPLACE FUNCTION public.inner_f(int) RETURNS int LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT pg_temp.h($1); END"),
    "domain_default_through_a_helper": (
        [HELPER, OUTER, "CREATE DOMAIN public.dd AS int DEFAULT public.outer_f(1)",
         "CREATE TABLE public.book (id int PRIMARY KEY, d public.dd)",
         "INSERT INTO public.book VALUES (1, 7)"],
        "d",
        "CREATE OR REPLACE FUNCTION public.inner_f(int) RETURNS int LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT pg_temp.h($1); END"),
    "range_subtype_diff_through_a_helper": (
        [DIFF_HELPER, DIFF_OUTER, "CREATE TYPE public.fr AS RANGE (subtype = float8, subtype_diff = public.outer_d)",
         "CREATE TABLE public.book (id int PRIMARY KEY, r public.fr)",
         "INSERT INTO public.book VALUES (1, '[1,2)')"],
        "r",
        "CREATE OR REPLACE FUNCTION public.inner_d(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT pg_temp.hd($1, $2); END"),
    "view_whose_row_type_a_column_is": (
        [HELPER, "CREATE VIEW public.v AS SELECT public.inner_f(1) AS a, 2 AS b",
         "CREATE TABLE public.book (id int PRIMARY KEY, c public.v)",
         "INSERT INTO public.book VALUES (1, ROW(2, 2))"],
        "c",
        "CREATE OR REPLACE FUNCTION public.inner_f(int) RETURNS int LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT pg_temp.h($1); END"),
    "partition_key_expression": (
        [HELPER,
         "CREATE TABLE public.book (id int, v int) PARTITION BY RANGE (public.inner_f(v))",
         "CREATE TABLE public.book_p PARTITION OF public.book FOR VALUES FROM (0) TO (1000)",
         "INSERT INTO public.book VALUES (1, 5)"],
        None,
        "CREATE OR REPLACE FUNCTION public.inner_f(int) RETURNS int LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT pg_temp.h($1); END"),
}


@pytest.mark.parametrize("route", INDIRECT)
def test_a_function_reached_indirectly_replaced_to_depend_on_a_temporary_one_is_refused_or_its_loss_recorded(
        db, connect, attacker, route):
    """_on_ddl_end returns at once for a CREATE FUNCTION unless a pg_attrdef or a pg_type depends on
    the function DIRECTLY. A permanent SQL-standard function that something covered depends on only
    through another function (a generated column's, a domain default's, a range's subtype_diff), or
    through a view (pg_rewrite) whose row type a covered column is, or the partition key expression
    (pg_class: the partitioned table itself depends on it), is replaced, as its owner, with a body
    that names a temporary function. DISCARD TEMP (no event trigger fires) then drops the temporary
    schema with CASCADE: the replaced function, what depends on it, and the covered column with
    every row's value, or for the partition key the whole tracked table and its partitions with
    every row. The replacement must be refused (PA008), or the loss recorded. (domain_default_direct
    is the control: the domain depends on the function directly.) For the partition key, the
    trial saw more: tracked_tables keeps the vanished table's entry and install_status reports no
    problem. Needs: ownership of the functions; TEMP."""
    setup, column, replacement = INDIRECT[route]
    for command in setup:
        attacker.execute(command)
    if not _track(connect, "public.book"):
        return
    session = connect("table_owner")
    session.execute("CREATE FUNCTION pg_temp.h(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 3'")
    session.execute("CREATE FUNCTION pg_temp.hd(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS 'SELECT $1 - $2'")
    before = _count_events(db)
    try:
        session.execute(replacement)
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008" or exc.sqlstate[:2] in ("42", "0A"), exc
        return
    session.execute("DISCARD TEMP")
    if column is None:
        if _table_exists(db, "public.book"):
            return  # PostgreSQL kept the table after all
        lost = "the whole table public.book, with its partition and every row"
    else:
        if column in columns(db, "public.book"):
            return  # PostgreSQL kept the column after all
        lost = f"public.book.{column}, with every row's value"
    recorded = _events_naming(db, "public.book", before)
    assert recorded, f"{lost} went at DISCARD TEMP after {replacement!r}, nothing recorded"


# --- 2. A dropped cast's address, computed in the dropping session -----------------------------------


def test_a_trusted_cast_dropped_under_quote_all_identifiers_is_still_refused(db, connect, attacker):
    """0946f66: _on_sql_drop finds a dropped cast's type by comparing pg_event_trigger_dropped_objects'
    address_names with pg_identify_object_as_address of the covered tables' types, computed inside
    the trigger with quote_all_identifiers pinned off. But the dropped cast's address was computed
    by PostgreSQL as the DROP ran, in the dropping session, under ITS quote_all_identifiers:
    {"\\"public\\".\\"hstore\\""} never equals {public.hstore}. The superuser's DROP CAST of hstore's
    cast to json (trial 25 shows it refused) is run here after SET quote_all_identifiers = on: every
    stored value of book.h would read as hstore's text instead of an object, with no row event. Must
    be refused (PA008) as without the setting. (Only the hstore type's owner, the bootstrap
    superuser, may drop the cast; the superuser only sets the session's quoting.)"""
    db.execute("CREATE EXTENSION IF NOT EXISTS hstore")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, h hstore)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'a=>1')")
    enable_tracking(connect("app_maintainer"), "public.book")
    assert _image_now(db, "public.book", 1) == {"id": 1, "h": {"a": "1"}}
    su = connect()
    su.execute("ALTER EXTENSION hstore DROP CAST (hstore AS json)")
    su.execute("SET quote_all_identifiers = on")
    with pytest.raises(psycopg.Error) as refused:
        su.execute("DROP CAST (hstore AS json)")
    assert refused.value.sqlstate == "PA008", refused.value
    assert _image_now(db, "public.book", 1) == {"id": 1, "h": {"a": "1"}}


HOSTILE_SCHEMAS = {
    "quotes_and_dots": 'we"ird.sch"em.a',
    "sixty_three_bytes": "s" * 30 + '"."' + "x" * 30,
    "odd_unicode": "ſchéma\u200b.\u202eevil\u2028",
}


@pytest.mark.parametrize("name", HOSTILE_SCHEMAS)
def test_a_trusted_cast_of_a_type_in_a_hostile_schema_is_matched_as_data(db, connect, attacker, name):
    """The address match with hostile names: hstore installed into a schema whose name holds quotes,
    dots, 63 bytes or odd Unicode (bidi override, zero-width space, line separator); book.h of that
    hstore. The superuser's DROP CAST is refused (PA008) all the same, and a DROP CAST of an
    unrelated type of another schema whose name reads alike is not."""
    schema = HOSTILE_SCHEMAS[name]
    quoted = '"' + schema.replace('"', '""') + '"'
    db.execute(f"CREATE SCHEMA {quoted}")
    db.execute(f"GRANT USAGE ON SCHEMA {quoted} TO table_owner")
    db.execute(f"CREATE EXTENSION hstore SCHEMA {quoted}")
    attacker.execute(f"CREATE TABLE public.book (id int PRIMARY KEY, h {quoted}.hstore)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'a=>1')")
    enable_tracking(connect("app_maintainer"), "public.book")
    db.execute(f"ALTER EXTENSION hstore DROP CAST ({quoted}.hstore AS json)")
    with pytest.raises(psycopg.Error) as refused:
        db.execute(f"DROP CAST ({quoted}.hstore AS json)")
    assert refused.value.sqlstate == "PA008", refused.value
    # A look-alike: a type named like the whole qualified name, in public.
    lookalike = '"' + (schema + ".hstore").replace('"', '""') + '"'
    attacker.execute(f"CREATE TYPE public.{lookalike} AS ENUM ('x')")
    attacker.execute(f"CREATE FUNCTION public.lj(public.{lookalike}) RETURNS json LANGUAGE sql AS $$ SELECT '1'::json $$")
    attacker.execute(f"CREATE CAST (public.{lookalike} AS json) WITH FUNCTION public.lj(public.{lookalike})")
    attacker.execute(f"DROP CAST (public.{lookalike} AS json)")


def test_another_roles_drop_cast_walks_no_covered_tables_types(db, connect, attacker):
    """Trial 22's and 23's rule (an unrelated role's DDL walks no covered table's types), for DROP
    CAST: _on_sql_drop, for any dropped cast anywhere, joins every covered table's _column_types
    (as large as table_owner's type graph makes it) against the cast's address. A role that owns
    nothing tracked drops a cast between two composites of its own; counted by PostgreSQL's function
    statistics, not timed. (The same walk runs for any DROP TYPE, DROP SCHEMA, DROP OWNED or DROP
    EXTENSION that takes a cast with it.)"""
    db.execute("CREATE ROLE t27_bystander LOGIN")
    db.execute("ALTER ROLE t27_bystander SET track_functions = 'all'")
    db.execute("CREATE SCHEMA t27_bystander AUTHORIZATION t27_bystander")
    try:
        attacker.execute("CREATE TYPE public.root AS (x int, y int[])")
        for i in range(3):
            attacker.execute(f"CREATE TABLE public.tr{i} (id int PRIMARY KEY, r public.root)")
            enable_tracking(connect("app_maintainer"), f"public.tr{i}")
        other = connect("t27_bystander")
        other.execute("CREATE TYPE t27_bystander.a AS (x int)")
        other.execute("CREATE TYPE t27_bystander.b AS (y int)")
        other.execute("CREATE FUNCTION t27_bystander.ab(t27_bystander.a) RETURNS t27_bystander.b LANGUAGE sql"
                      " IMMUTABLE AS 'SELECT ROW(($1).x)::t27_bystander.b'")
        other.execute("CREATE CAST (t27_bystander.a AS t27_bystander.b) WITH FUNCTION t27_bystander.ab(t27_bystander.a)")
        with other.transaction():
            other.execute("DROP CAST (t27_bystander.a AS t27_bystander.b)")
            walks = int(other.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                                      " WHERE schemaname = 'audit' AND funcname = '_column_types'").fetchone()[0])
        other.close()
        assert walks == 0, f"an unrelated DROP CAST walked covered tables' types {walks} times"
    finally:
        db.execute("DROP SCHEMA t27_bystander CASCADE")
        db.execute("DROP ROLE t27_bystander")


# --- 3. Values stored as object ids, printed by the object's current name ----------------------------

# route: (column type, what the row stores, the rename)
OID_ALIASES = {
    "regclass": ("regclass", "CREATE TABLE public.secret (x int)", "'public.secret'",
                 "ALTER TABLE public.secret RENAME TO innocent"),
    "regtype": ("regtype", "CREATE TYPE public.secret AS ENUM ('x')", "'public.secret'",
                "ALTER TYPE public.secret RENAME TO innocent"),
    "regproc": ("regprocedure", "CREATE FUNCTION public.secret() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                "'public.secret()'", "ALTER FUNCTION public.secret() RENAME TO innocent"),
    "regnamespace": ("regnamespace", "CREATE SCHEMA secret", "'secret'", "ALTER SCHEMA secret RENAME TO innocent"),
    "regconfig": ("regconfig", "CREATE TEXT SEARCH CONFIGURATION public.secret (COPY = simple)", "'public.secret'",
                  "ALTER TEXT SEARCH CONFIGURATION public.secret RENAME TO innocent"),
}


@pytest.mark.parametrize("route", OID_ALIASES)
def test_renaming_the_object_a_stored_oid_alias_names_is_recorded_or_refused(db, connect, attacker, route):
    """A covered column of an object-id alias type (regclass, regtype, regprocedure, regnamespace,
    regconfig: built in, so the capture images them inline; _capture_settings pins
    quote_all_identifiers for them) stores an oid and prints the object's CURRENT name. Renaming the
    object (a schema change; for a function or a text search configuration under a tag _on_ddl_end
    does not even watch) makes every stored value read differently in every later image, with no
    row event: 'public.secret' becomes 'innocent'. Recorded (naming the table) or refused. Needs:
    ownership of the named object (any role's object may be named: the rename is then another
    role's)."""
    typ, create, value, rename = OID_ALIASES[route]
    attacker.execute(create)
    attacker.execute(f"CREATE TABLE public.book (id int PRIMARY KEY, r {typ})")
    attacker.execute(f"INSERT INTO public.book VALUES (1, {value})")
    with pytest.raises(InvalidTarget, match=f"type {typ}, which prints an object's name"):
        enable_tracking(connect("app_maintainer"), "public.book")
    # Nor may a tracked table come to hold one: a column added, retyped, or beneath a composite.
    attacker.execute("ALTER TABLE public.book DROP COLUMN r")
    attacker.execute("CREATE TYPE public.holder AS (x int)")
    attacker.execute("ALTER TABLE public.book ADD COLUMN h public.holder, ADD COLUMN t text")
    enable_tracking(connect("app_maintainer"), "public.book")
    for command in (f"ALTER TABLE public.book ADD COLUMN r {typ}",
                    f"ALTER TABLE public.book ALTER COLUMN t TYPE {typ} USING NULL",
                    f"ALTER TYPE public.holder ADD ATTRIBUTE r {typ} CASCADE"):
        with pytest.raises(psycopg.Error) as refused:
            attacker.execute(command)
        assert refused.value.sqlstate == "PA008", command
    assert db.execute("SELECT count(*) FROM audit.tracked_tables WHERE table_name = 'public.book'").fetchone() == (1,)


# --- 4. The cascade of an ALTER TABLE of the table itself: recorded once -----------------------------


def test_an_alter_table_whose_cascade_drops_a_generated_column_is_recorded_exactly_once(db, connect, attacker):
    """ALTER TABLE book DROP COLUMN v CASCADE also drops g, GENERATED ALWAYS AS (v * 2) STORED. The
    brief's "recorded twice" case: _on_sql_drop records every column a cascade dropped (g is not
    original), and _on_ddl_end records every ALTER of a covered table: one command, two
    audit.tracked_table_ddl events with the same command and columns. Exactly one is expected."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (v * 2) STORED, w int)")
    attacker.execute("INSERT INTO public.book (id, v, w) VALUES (1, 5, 6)")
    enable_tracking(connect("app_maintainer"), "public.book")
    n = len(schema_events(db))
    attacker.execute("ALTER TABLE public.book DROP COLUMN v CASCADE")
    assert columns(db, "public.book") == ["id", "w"]
    ddl = [e for e in schema_events(db)[n:] if e[0] == "audit.tracked_table_ddl" and names_table(e, "public.book")]
    assert len(ddl) == 1, f"recorded {len(ddl)} times: {ddl}"
    assert [c[1] for c in ddl[0][2]["columns"]] == ["id", "w"]


# --- 5. Partitions leaving: DETACH, and DETACH CONCURRENTLY (which commits midway) -------------------


@pytest.mark.parametrize("how", ["", " CONCURRENTLY"])
def test_a_detached_partitions_rows_leave_with_a_record_and_no_stale_capture(db, connect, attacker, how):
    """DETACH PARTITION takes a partition's rows out of the tracked table with no row event: recorded
    as audit.tracked_partition_removed, and the partition's capture function dropped (a detached
    table writing events under the tracked table's prefix would forge its history). DETACH ...
    CONCURRENTLY commits its first transaction midway and finishes in a second: the record and the
    clean-up must happen all the same (or the command be refused)."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)")
    attacker.execute("CREATE TABLE public.book_2 PARTITION OF public.book FOR VALUES FROM (100) TO (200)")
    attacker.execute("INSERT INTO public.book VALUES (1, 1), (150, 2)")
    enable_tracking(connect("app_maintainer"), "public.book")
    oid = db.execute("SELECT 'public.book_1'::regclass::oid").fetchone()[0]
    n = _count_events(db)
    try:
        attacker.execute(f"ALTER TABLE public.book DETACH PARTITION public.book_1{how}")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    removed = _events_naming(db, "public.book_1", n)
    assert any(e[0] == "audit.tracked_partition_removed" for e in removed), removed
    assert db.execute(f"SELECT to_regprocedure('audit_capture._capture_{oid}()')").fetchone()[0] is None
    # The detached table's writes are not captured under the tracked table's prefix.
    attacker.execute("UPDATE public.book_1 SET v = 99")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.book.update'").fetchone()[0] == 0
    both_verifiers_ok(db)


# --- 6. ALTER TABLE variants of a covered table -----------------------------------------------------

ALTERS = {
    "set_access_method": "ALTER TABLE public.book SET ACCESS METHOD heap",
    "set_unlogged": "ALTER TABLE public.book SET UNLOGGED",
    "set_logged": "ALTER TABLE public.book SET LOGGED",
    "partition_set_unlogged": "ALTER TABLE public.book_1 SET UNLOGGED",
    "replica_identity_full": "ALTER TABLE public.book REPLICA IDENTITY FULL",
    "replica_identity_index": "ALTER TABLE public.book REPLICA IDENTITY USING INDEX book_id_v_key",
    "partition_no_inherit": "ALTER TABLE public.book_1 NO INHERIT public.book",
    "column_collation": 'ALTER TABLE public.book ALTER COLUMN s TYPE text COLLATE "C"',
    "column_collation_icu": 'ALTER TABLE public.book ALTER COLUMN s TYPE text COLLATE "und-x-icu"',
    "drop_primary_key": "ALTER TABLE public.book DROP CONSTRAINT book_pkey",
}


@pytest.mark.parametrize("alter", ALTERS)
def test_alter_table_variants_of_a_covered_table_are_recorded_or_refused_and_leave_the_capture_whole(
        db, connect, attacker, alter):
    """Every ALTER of a covered table is recorded (or refused); what would let rows vanish with no
    event (UNLOGGED, of the table or of a partition) is refused; whatever ran, the capture stays
    whole and a write after it is captured."""
    attacker.execute("CREATE TABLE public.book (id int, v int, s text, PRIMARY KEY (id), UNIQUE (id, v))"
                     " PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)")
    attacker.execute("ALTER TABLE public.book ALTER COLUMN v SET NOT NULL")
    attacker.execute("INSERT INTO public.book VALUES (1, 1, 'a')")
    enable_tracking(connect("app_maintainer"), "public.book")
    recorded_or_refused(db, attacker, ALTERS[alter], "public.book", pg_refusals=("42809", "0A000", "42P16", "42704"))
    for rel in ("public.book", "public.book_1"):
        assert db.execute("SELECT audit._capture_problem(%s::regclass)", (rel,)).fetchone()[0] is None, rel
        assert db.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass", (rel,)).fetchone()[0] == "p"
    attacker.execute("UPDATE public.book SET s = 'b'")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.book.update'").fetchone()[0] == 1
    both_verifiers_ok(db)


# --- 7. ALTER DOMAIN, COMMENT, SECURITY LABEL: nothing stored reads differently ------------------------

HARMLESS = [
    "ALTER DOMAIN public.dm ADD CONSTRAINT c1 CHECK (VALUE <> 'x') NOT VALID",
    "ALTER DOMAIN public.dm VALIDATE CONSTRAINT c1",
    "ALTER DOMAIN public.dm RENAME CONSTRAINT c1 TO c2",
    "ALTER DOMAIN public.dm DROP CONSTRAINT c2",
    "ALTER DOMAIN public.dm SET DEFAULT 'ok'",
    "ALTER DOMAIN public.dm DROP DEFAULT",
    "ALTER DOMAIN public.dm SET NOT NULL",
    "ALTER DOMAIN public.dm DROP NOT NULL",
    "ALTER DOMAIN public.dm RENAME TO \"dm.\"\"x\"\"\u202e\"",
    "COMMENT ON TYPE public.mood IS 'ALTER TYPE public.mood RENAME VALUE ''ok'' TO ''bad''; --'",
    "COMMENT ON COLUMN public.book.m IS '\"; DROP TABLE public.book; --'",
    "COMMENT ON TABLE public.book IS NULL",
    "SECURITY LABEL ON TABLE public.book IS 'secret'",
    "SECURITY LABEL ON COLUMN public.book.m IS 'secret'",
]


def test_alter_domain_comment_and_security_label_change_no_image_and_break_nothing(db, connect, attacker):
    """ALTER DOMAIN (a tag _on_ddl_end does not watch) of a domain over an enum a covered column
    uses, COMMENT (with text that reads as SQL) and SECURITY LABEL (no provider: PostgreSQL refuses)
    change nothing stored rows read as: each either runs or is refused by PostgreSQL (never by the
    audit's triggers failing), the image stays, and the capture stays whole."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'x')")
    attacker.execute("CREATE DOMAIN public.dm AS public.mood")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood, d public.dm)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'sad', 'ok')")
    enable_tracking(connect("app_maintainer"), "public.book")
    before = _image_now(db, "public.book", 1)
    for command in HARMLESS:
        try:
            attacker.execute(command)
        except psycopg.Error as exc:
            assert exc.sqlstate in ("22023", "0A000"), (command, exc.sqlstate, exc)
    assert _image_now(db, "public.book", 1) == before
    assert db.execute("SELECT audit._capture_problem('public.book'::regclass)").fetchone()[0] is None
    attacker.execute("UPDATE public.book SET m = 'ok'")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book.update'").fetchone()[0] == \
        {"id": 1, "m": "ok", "d": "ok"}


# --- 8. ALTER EXTENSION ... UPDATE of a covered column's type ----------------------------------------


@pytest.mark.parametrize("owner", ["table_owner", "superuser"])
def test_alter_extension_update_of_a_covered_columns_type_is_not_made_to_fail(db, connect, attacker, owner):
    """The trusted extension hstore is installed at its oldest installable version (1.4), by
    table_owner or by the superuser (an administrator's extension, another role's); table_owner
    tracks a table with a hstore column. ALTER EXTENSION hstore UPDATE (tag ALTER EXTENSION) runs
    the update scripts, whose ALTER TYPE hstore SET (...) _on_ddl_end sees. It must succeed (the
    update changes nothing a stored value reads as) or be refused with PA008 because it would; a
    covered table must not make the extension's owner's update fail otherwise. Whatever ran, the
    images and the capture stay whole."""
    runner = attacker if owner == "table_owner" else connect()
    runner.execute("CREATE EXTENSION hstore VERSION '1.4'")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, h public.hstore)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'a=>1, b=>NULL')")
    enable_tracking(connect("app_maintainer"), "public.book")
    before = _image_now(db, "public.book", 1)
    n = len(schema_events(db))
    try:
        runner.execute("ALTER EXTENSION hstore UPDATE")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", (exc.sqlstate, str(exc).splitlines()[0])
        return
    assert db.execute("SELECT extversion FROM pg_extension WHERE extname = 'hstore'").fetchone()[0] != "1.4"
    if _image_now(db, "public.book", 1) != before:
        assert [e for e in schema_events(db)[n:] if names_table(e, "public.book")]
    assert db.execute("SELECT audit._capture_problem('public.book'::regclass)").fetchone()[0] is None
    attacker.execute("UPDATE public.book SET h = 'a=>2'")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book.update'").fetchone()[0] == \
        {"id": 1, "h": {"a": "2"}}
    both_verifiers_ok(db)


def test_a_generated_columns_function_made_an_extensions_member_goes_with_the_extension_recorded(
        db, connect, attacker):
    """ALTER FUNCTION ... DEPENDS ON EXTENSION (tag ALTER FUNCTION, not watched) gives a generated
    column's function an automatic dependency on an extension table_owner owns (hstore, trusted).
    DROP EXTENSION hstore (tag DROP EXTENSION) then drops the function without being asked, and the
    covered column with every row's value: refused by PostgreSQL (2BP01), by the product, or
    recorded with the columns after it."""
    attacker.execute("CREATE EXTENSION hstore")
    attacker.execute("CREATE FUNCTION public.g(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2'")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.g(v)) STORED)")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5)")
    enable_tracking(connect("app_maintainer"), "public.book")
    try:
        attacker.execute("ALTER FUNCTION public.g(int) DEPENDS ON EXTENSION hstore")
    except psycopg.Error as exc:
        assert exc.sqlstate in ("42501", "PA008"), exc
        return
    for command in ("DROP EXTENSION hstore", "DROP EXTENSION hstore CASCADE"):
        events = recorded_or_refused(db, attacker, command, "public.book", pg_refusals=("2BP01",))
        if events is not None:
            ddl = [e for e in events if e[0] == "audit.tracked_table_ddl"]
            assert ddl and [c[1] for c in ddl[-1][2]["columns"]] == ["id", "v"], events
            return
    assert columns(db, "public.book") == ["id", "v", "g"]


# --- 9. A procedure that commits and rolls back midway -----------------------------------------------


def test_a_procedure_that_commits_then_rolls_back_leaves_exactly_the_changes_that_stayed_recorded(db, connect, attacker):
    """A procedure renames an enum value a covered column uses, COMMITs, swaps two of the table's
    columns and drops a composite's attribute beneath another (through EXECUTE of built text), then
    ROLLBACKs, then drops the composite's attribute again and COMMITs. What stayed (the rename, the
    attribute dropped) is recorded; what was rolled back is neither done nor recorded."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TYPE public.pair AS (a int, b int)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood, debit int, credit int, p public.pair)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'sad', 10, 20, ROW(1, 2))")
    enable_tracking(connect("app_maintainer"), "public.book")
    attacker.execute("""
        CREATE PROCEDURE public.shuffle() LANGUAGE plpgsql AS $$
        BEGIN
            ALTER TYPE public.mood RENAME VALUE 'sad' TO 'glad';
            COMMIT;
            EXECUTE 'ALTER TABLE public.book RENAME COLUMN debit TO x';
            EXECUTE 'ALTER TABLE public.book RENAME COLUMN credit TO debit';
            EXECUTE 'ALTER TABLE public.book RENAME COLUMN x TO credit';
            EXECUTE 'ALTER TYPE public.pair DROP ATTRIBUTE a CASCADE';
            ROLLBACK;
            EXECUTE 'ALTER TYPE public.pair DROP ATTRIBUTE b CASCADE';
            COMMIT;
        END $$""")
    n = len(schema_events(db))
    attacker.execute("CALL public.shuffle()")
    assert columns(db, "public.book") == ["id", "m", "debit", "credit", "p"]
    assert _image_now(db, "public.book", 1) == {"id": 1, "m": "glad", "debit": 10, "credit": 20, "p": {"a": 1}}
    new = [e for e in schema_events(db)[n:] if names_table(e, "public.book")]
    kinds = [(e[0], e[1]) for e in new]
    assert ("audit.tracked_type_altered", "public.mood") in kinds, new
    assert ("audit.tracked_type_altered", "public.pair") in kinds, new
    assert [e for e in new if e[0] == "audit.tracked_type_altered" and e[1] == "public.pair"][-1][2]["now"] == \
        {"attributes": [[1, "a", "integer"]]}
    assert not [e for e in new if e[0] == "audit.tracked_table_ddl"], new  # the swap was rolled back
    both_verifiers_ok(db)
