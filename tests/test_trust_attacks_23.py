"""A twenty-third attacker's trial, on the mends of c7df4fa (sql/65_schema_changes.sql, sql/60_capture.sql):
_record_schema_change now follows each changed type UP through pg_depend to the covered tables made
of it; _on_sql_drop records every cascaded column drop and every column drop by a command
_on_ddl_end does not watch; _tree_problem refuses a covered column of a temporary type at any depth;
and an unrelated role's DDL walks no covered table's types. The seams tried here: which changed
types _on_ddl_end hands to the upward walk at all (an ALTER TABLE of a parent renames, adds and drops
the columns of its inheritance children and partitions, whose row types a covered column may be
made of; ALTER TYPE ... CASCADE reaches the partitions of a typed table), the things besides a type's
schema that tie a covered column to one session (a temporary function a generated column calls, a
temporary collation, a range's temporary subtype_diff, a composite attribute's temporary collation;
ended by the session's end or by DISCARD TEMP, where no event trigger fires), what other roles'
commands cost and whether a table owner can make them fail (CREATE CAST, which regenerates and
checks every covered table; a session's quote_all_identifiers in the sql_drop refresh loop), and a
few routes the upward walk and PostgreSQL must hold (a range over a domain over an enum and its
multirange, a domain over an array of a composite, a composite whose attribute is a table's row
type, a permanent domain over a temporary composite, moving a type into or out of pg_temp, another
session's temporary schema). Each test asserts the SAFE outcome: it passes when the product holds
and fails when the attack breaks it.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and on public; TEMP on the database, as every role has by default) unless it
says otherwise; app_maintainer (a member of table_owner) tracks the tables. The cost and
denial-of-service attacks run as a role with no privilege beyond PUBLIC's (app_attacker, or a role
the setup makes, with a schema of its own, and track_functions set by the superuser only to count
the work). None needs a superuser.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from schema_changes import columns, made_without_the_temporary_check, names_table, recorded_or_refused, schema_events

from pgaudit_py import InvalidTarget, enable_tracking


def _image(db, table: str, column: str) -> object:
    return db.execute(f"SELECT to_jsonb(t.{column}) FROM {table} t ORDER BY 1 LIMIT 1").fetchone()[0]


def _tracked_or_refused(connect, table: str) -> bool:
    """enable_tracking as app_maintainer: True when tracked, False when refused (PA008)."""
    try:
        enable_tracking(connect("app_maintainer"), table)
    except InvalidTarget:
        return False
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return False
    return True


def _wait_until(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


# --- 1. Row types changed by an ALTER TABLE of another table: the children's and partitions' ---------

SWAP = ("ALTER TABLE {t} RENAME COLUMN debit TO x; ALTER TABLE {t} RENAME COLUMN credit TO debit;"
        " ALTER TABLE {t} RENAME COLUMN x TO credit")


def test_renaming_a_parents_columns_swaps_a_childs_row_type_under_a_tracked_column(db, connect, attacker):
    """public.leg inherits from public.base (neither tracked); tracked public.book stores values of
    leg's row type. Renaming base's columns renames leg's too (PostgreSQL recurses), so every stored
    value of book.e reads with debit and credit swapped. _on_ddl_end hands the upward walk base's row
    type only, not leg's."""
    attacker.execute("CREATE TABLE public.base (debit int, credit int)")
    attacker.execute("CREATE TABLE public.leg () INHERITS (public.base)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.leg)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    new = recorded_or_refused(db, attacker, SWAP.format(t="public.base"), "public.book")
    if new is not None:
        assert _image(db, "public.book", "e") == {"debit": 0, "credit": 100}


def test_dropping_a_parents_column_drops_an_attribute_of_a_childs_row_type_under_a_tracked_column(
        db, connect, attacker):
    """ALTER TABLE base DROP COLUMN debit drops leg.debit too, and with it the debit of every value
    of book.e. The tag is watched (so _on_sql_drop leaves it to _on_ddl_end), and _on_ddl_end sees
    base only."""
    attacker.execute("CREATE TABLE public.base (debit int, credit int)")
    attacker.execute("CREATE TABLE public.leg () INHERITS (public.base)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.leg)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    new = recorded_or_refused(db, attacker, "ALTER TABLE public.base DROP COLUMN debit", "public.book")
    if new is not None:
        assert _image(db, "public.book", "e") == {"credit": 0}


def test_renaming_a_partitioned_tables_columns_swaps_a_partitions_row_type_under_a_tracked_column(
        db, connect, attacker):
    """The same through a partitioned table (untracked) and its partition, whose row type the
    tracked column is: ALTER TABLE ledger RENAME COLUMN recurses to ledger_1."""
    attacker.execute("CREATE TABLE public.ledger (k int, debit int, credit int) PARTITION BY LIST (k)")
    attacker.execute("CREATE TABLE public.ledger_1 PARTITION OF public.ledger FOR VALUES IN (1)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.ledger_1)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(1, 100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    new = recorded_or_refused(db, attacker, SWAP.format(t="public.ledger"), "public.book")
    if new is not None:
        assert _image(db, "public.book", "e") == {"k": 1, "debit": 0, "credit": 100}


def test_alter_type_cascade_reaching_a_typed_tables_partition_is_recorded(db, connect, attacker):
    """public.pt is typed by public.amount and partitioned; public.pt_1 is its partition (not typed
    itself). ALTER TYPE amount RENAME ATTRIBUTE ... CASCADE renames pt's columns and pt_1's. The
    tracked column is of pt_1's row type: _on_ddl_end follows the tables typed by amount (pt), not
    their partitions."""
    attacker.execute("CREATE TYPE public.amount AS (k int, debit int, credit int)")
    attacker.execute("CREATE TABLE public.pt OF public.amount PARTITION BY LIST (k)")
    attacker.execute("CREATE TABLE public.pt_1 PARTITION OF public.pt FOR VALUES IN (1)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.pt_1)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(1, 100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    swap = ("ALTER TYPE public.amount RENAME ATTRIBUTE debit TO x CASCADE;"
            " ALTER TYPE public.amount RENAME ATTRIBUTE credit TO debit CASCADE;"
            " ALTER TYPE public.amount RENAME ATTRIBUTE x TO credit CASCADE")
    new = recorded_or_refused(db, attacker, swap, "public.book")
    if new is not None:
        assert columns(db, "public.pt_1") == ["k", "credit", "debit"]


def _cast_decides_setup(attacker) -> None:
    """An enum with table_owner's own cast to json (created while no covered table uses the enum,
    so allowed), and a tracked column of a child's row type."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE sql IMMUTABLE"
                     " AS $$ SELECT '\"forged\"'::json $$")
    attacker.execute("CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood)")
    attacker.execute("CREATE TABLE public.base (x int)")
    attacker.execute("CREATE TABLE public.leg () INHERITS (public.base)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.leg)")


def test_a_column_with_an_untrusted_json_cast_added_through_a_parent_is_refused(db, connect, attacker):
    """docs/capture.md: adding, to a table whose row type a covered column is made of, a column of a
    type with a cast to json that is not a superuser's is refused (the cast would decide what is
    recorded). Added to the parent, the column reaches the child's row type all the same; then
    book's row images print mood through table_owner's function."""
    _cast_decides_setup(attacker)
    enable_tracking(connect("app_maintainer"), "public.book")
    try:
        attacker.execute("ALTER TABLE public.base ADD COLUMN m public.mood")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(1, 'sad'))")
    image = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book.insert'").fetchone()[0]
    assert image["e"]["m"] == "sad", f"the attacker's cast wrote the record: {image}"


def test_a_table_owners_broken_tracked_table_does_not_block_another_roles_create_cast(db, connect, attacker):
    """Denial of service: once a covered table holds a problem nobody refused (the route above),
    every CREATE CAST of the database, by any role, on types of its own that no covered table uses,
    runs _refuse_switched_off on every covered table (cast_created: touched := all_covered) and
    fails with PA008. app_attacker (no privilege but TEMP) creates a cast between two temporary
    composites of its own."""
    _cast_decides_setup(attacker)
    enable_tracking(connect("app_maintainer"), "public.book")
    try:
        attacker.execute("ALTER TABLE public.base ADD COLUMN m public.mood")
    except psycopg.Error:
        return  # refused: no broken covered table to block anyone with
    other = connect("app_attacker")
    other.execute("CREATE TYPE pg_temp.a AS (x int)")
    other.execute("CREATE TYPE pg_temp.b AS (y int)")
    other.execute("CREATE FUNCTION pg_temp.ab(pg_temp.a) RETURNS pg_temp.b LANGUAGE sql IMMUTABLE"
                  " AS 'SELECT ROW(($1).x)::pg_temp.b'")
    try:
        other.execute("CREATE CAST (pg_temp.a AS pg_temp.b) WITH FUNCTION pg_temp.ab(pg_temp.a)")
    except psycopg.Error as exc:
        pytest.fail(f"another role's unrelated CREATE CAST was refused for table_owner's table: {exc}")


# --- 2. What other roles' commands cost, and what they rewrite ---------------------------------------


def test_another_roles_create_cast_walks_no_covered_tables_types(db, connect, attacker):
    """Trial 22's rule, for CREATE CAST: a role that owns nothing tracked creates a cast between two
    composites of its own. _on_ddl_end then touches every covered table (cast_created), regenerates
    each capture function and checks each whole: _column_types of every covered table, as large as
    table_owner's type graph makes it (counted by PostgreSQL's function statistics, not timed)."""
    db.execute("CREATE ROLE t23_bystander LOGIN")
    db.execute("ALTER ROLE t23_bystander SET track_functions = 'all'")
    db.execute("CREATE SCHEMA t23_bystander AUTHORIZATION t23_bystander")
    try:
        attacker.execute("CREATE TYPE public.root AS (x int, y int[])")
        for i in range(3):
            attacker.execute(f"CREATE TABLE public.tr{i} (id int PRIMARY KEY, r public.root)")
            enable_tracking(connect("app_maintainer"), f"public.tr{i}")
        other = connect("t23_bystander")
        other.execute("CREATE TYPE t23_bystander.a AS (x int)")
        other.execute("CREATE TYPE t23_bystander.b AS (y int)")
        other.execute("CREATE FUNCTION t23_bystander.ab(t23_bystander.a) RETURNS t23_bystander.b LANGUAGE sql"
                      " IMMUTABLE AS 'SELECT ROW(($1).x)::t23_bystander.b'")
        with other.transaction():
            other.execute("CREATE CAST (t23_bystander.a AS t23_bystander.b) WITH FUNCTION t23_bystander.ab(t23_bystander.a)")
            walks = int(other.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                                      " WHERE schemaname = 'audit' AND funcname = '_column_types'").fetchone()[0])
        other.close()
        assert walks == 0, f"an unrelated CREATE CAST walked covered tables' types {walks} times"
    finally:
        db.execute("DROP SCHEMA t23_bystander CASCADE")
        db.execute("DROP ROLE t23_bystander")


def test_another_sessions_quote_all_identifiers_rewrites_no_tracked_tables_name(db, connect, attacker):
    """_on_sql_drop refreshes every tracked table whenever any index, column or constraint anywhere
    is dropped; _refresh_tracking compares relid::regclass::text with the stored name without
    pinning quote_all_identifiers. app_attacker (no privilege but TEMP) sets it on and drops an index
    of a temporary table of its own: nothing about public.t changed, so nothing may be recorded or
    rewritten (and no capture function regenerated)."""
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.t")
    before = len(schema_events(db))
    other = connect("app_attacker")
    other.execute("CREATE TEMP TABLE scratch (a int)")
    other.execute("CREATE INDEX scratch_a ON pg_temp.scratch (a)")
    other.execute("SET quote_all_identifiers = on")
    other.execute("DROP INDEX pg_temp.scratch_a")
    assert db.execute("SELECT table_name FROM audit.tracked_tables").fetchall() == [("public.t",)]
    assert schema_events(db)[before:] == []


# --- 3. A covered column tied to one session by something other than its type's schema --------------


def test_a_generated_column_calling_a_temporary_function_is_refused_or_its_end_recorded(db, connect, attacker):
    """A stored generated column may call a temporary function (PostgreSQL allows it; the column
    depends on the function). When the session ends, its temporary schema is dropped with CASCADE
    outside any command: the column goes with every stored value, and no event trigger fires."""
    conn = connect("table_owner")
    conn.execute("CREATE FUNCTION pg_temp.dbl(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2'")
    with made_without_the_temporary_check(db):
        conn.execute("CREATE TABLE public.t (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (pg_temp.dbl(v)) STORED)")
    conn.execute("INSERT INTO public.t (id, v) VALUES (1, 5)")
    if not _tracked_or_refused(connect, "public.t"):
        return
    before = len(schema_events(db))
    conn.close()
    assert _wait_until(lambda: "g" not in columns(db, "public.t"))
    new = [e for e in schema_events(db)[before:] if names_table(e, "public.t")]
    assert new, "public.t.g went with every stored value, with nothing recorded"


def test_a_column_of_a_temporary_collation_is_refused_or_its_end_recorded(db, connect, attacker):
    """A text column COLLATE a temporary collation: DISCARD TEMP (no event trigger fires for it)
    drops the collation with CASCADE, and the column with every row's value."""
    conn = connect("table_owner")
    conn.execute('CREATE COLLATION pg_temp.c1 FROM "C"')
    with made_without_the_temporary_check(db):
        conn.execute("CREATE TABLE public.t (id int PRIMARY KEY, s text COLLATE pg_temp.c1)")
    conn.execute("INSERT INTO public.t VALUES (1, 'kept')")
    if not _tracked_or_refused(connect, "public.t"):
        return
    before = len(schema_events(db))
    conn.execute("DISCARD TEMP")
    assert "s" not in columns(db, "public.t")
    new = [e for e in schema_events(db)[before:] if names_table(e, "public.t")]
    assert new, "public.t.s went with every stored value, with nothing recorded"


def test_a_range_with_a_temporary_subtype_diff_is_refused_or_its_end_recorded(db, connect, attacker):
    """A permanent range type (public.fr, in public: _tree_problem sees no temporary schema) whose
    subtype_diff is a temporary function depends on it: at the session's end the range, its
    multirange and the tracked column of it go, every value with them."""
    conn = connect("table_owner")
    conn.execute("CREATE FUNCTION pg_temp.diff(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS 'SELECT $1 - $2'")
    with made_without_the_temporary_check(db):
        conn.execute("CREATE TYPE public.fr AS RANGE (subtype = float8, subtype_diff = pg_temp.diff)")
        conn.execute("CREATE TABLE public.t (id int PRIMARY KEY, r public.fr)")
    conn.execute("INSERT INTO public.t VALUES (1, '[1,2)')")
    if not _tracked_or_refused(connect, "public.t"):
        return
    before = len(schema_events(db))
    conn.close()
    assert _wait_until(lambda: "r" not in columns(db, "public.t"))
    new = [e for e in schema_events(db)[before:] if names_table(e, "public.t")]
    assert new, "public.t.r went with every stored value, with nothing recorded"


def test_a_composite_attribute_of_a_temporary_collation_is_refused_or_its_end_recorded(db, connect, attacker):
    """A permanent composite (public.note) with an attribute COLLATE a temporary collation: DISCARD
    TEMP drops the attribute, and every stored value of the tracked column of type note loses it."""
    conn = connect("table_owner")
    conn.execute('CREATE COLLATION pg_temp.c1 FROM "C"')
    with made_without_the_temporary_check(db):
        conn.execute("CREATE TYPE public.note AS (body text COLLATE pg_temp.c1, n int)")
        conn.execute("CREATE TABLE public.t (id int PRIMARY KEY, c public.note)")
    conn.execute("INSERT INTO public.t VALUES (1, ROW('secret', 1))")
    if not _tracked_or_refused(connect, "public.t"):
        return
    before = len(schema_events(db))
    conn.execute("DISCARD TEMP")
    assert _image(db, "public.t", "c") == {"n": 1}
    new = [e for e in schema_events(db)[before:] if names_table(e, "public.t")]
    assert new, "every stored public.t.c lost its body, with nothing recorded"


def test_a_permanent_domain_over_a_temporary_composite_is_refused_when_added(db, connect, attacker):
    """public.d, created after tracking, is a domain over pg_temp.amount: a column of it added to a
    tracked table must be refused (at depth, through the domain)."""
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
    enable_tracking(connect("app_maintainer"), "public.t")
    attacker.execute("CREATE TYPE pg_temp.amount AS (debit int, credit int)")
    with made_without_the_temporary_check(db):
        attacker.execute("CREATE DOMAIN public.d AS pg_temp.amount")
    with pytest.raises(psycopg.Error) as refused:
        attacker.execute("ALTER TABLE public.t ADD COLUMN a public.d[]")
    assert refused.value.sqlstate == "PA008", refused.value
    assert columns(db, "public.t") == ["id"]


def test_a_tracked_columns_type_cannot_be_moved_into_or_out_of_a_temporary_schema(db, connect, attacker):
    """ALTER TYPE ... SET SCHEMA pg_temp of a type a tracked column uses, and of a temporary type out
    to public: either would make a session-bound type permanent or the reverse. Refused (by
    PostgreSQL), the column untouched."""
    attacker.execute("CREATE TYPE public.pair AS (x int, y int)")
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, p public.pair)")
    enable_tracking(connect("app_maintainer"), "public.t")
    for command in ("ALTER TYPE public.pair SET SCHEMA pg_temp", "ALTER DOMAIN public.pair SET SCHEMA pg_temp"):
        with pytest.raises(psycopg.Error):
            attacker.execute(command)
    attacker.execute("CREATE TYPE pg_temp.amount AS (debit int)")
    with pytest.raises(psycopg.Error):
        attacker.execute("ALTER TYPE pg_temp.amount SET SCHEMA public")
    assert db.execute("SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'public.t'::regclass"
                      " AND attname = 'p'").fetchone()[0] == "pair"


def test_a_type_cannot_be_made_in_another_sessions_temporary_schemas(db, connect, attacker):
    """Another backend's pg_temp_N and pg_toast_temp_N: a type made there by this role would go
    when that other session ends. Refused (permission), so none can end under a tracked column."""
    holder = connect("app_writer")
    holder.execute("CREATE TEMP TABLE held (a text)")
    temp, toast = holder.execute("SELECT nspname, replace(nspname, 'pg_temp', 'pg_toast_temp')"
                                 " FROM pg_namespace WHERE oid = pg_my_temp_schema()").fetchone()
    for schema in (temp, toast):
        with pytest.raises(psycopg.Error) as refused:
            attacker.execute(f"CREATE TYPE {schema}.amount AS (debit int)")
        assert refused.value.sqlstate == "42501", (schema, refused.value)


# --- 4. Routes the upward walk must follow -----------------------------------------------------------


def test_a_multirange_of_a_range_over_a_domain_over_an_enum_is_followed(db, connect, attacker):
    """grade (enum) <- g (domain) <- gr (range over the domain) <- gr_multirange; the tracked column is
    an array of the multirange. RENAME VALUE changes what every stored bound reads as."""
    attacker.execute("CREATE TYPE public.grade AS ENUM ('low', 'high')")
    attacker.execute("CREATE DOMAIN public.g AS public.grade")
    attacker.execute("CREATE TYPE public.gr AS RANGE (subtype = public.g)")
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, m public.gr_multirange[])")
    attacker.execute("INSERT INTO public.t VALUES (1, ARRAY['{[low,high)}'::public.gr_multirange])")
    enable_tracking(connect("app_maintainer"), "public.t")
    new = recorded_or_refused(db, attacker, "ALTER TYPE public.grade RENAME VALUE 'low' TO 'high2'", "public.t")
    if new is not None:
        assert [t for k, t, _ in new if k == "audit.tracked_type_altered"] == ["public.grade"], new


def test_a_domain_over_an_array_of_a_composite_is_followed(db, connect, attacker):
    """pair (composite) <- pair[] <- pairs (domain over the array); the tracked column is of pairs.
    ALTER TYPE pair RENAME ATTRIBUTE swaps what every element reads as."""
    attacker.execute("CREATE TYPE public.pair AS (debit int, credit int)")
    attacker.execute("CREATE DOMAIN public.pairs AS public.pair[]")
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, ps public.pairs)")
    attacker.execute("INSERT INTO public.t VALUES (1, ARRAY[ROW(100, 0)::public.pair])")
    enable_tracking(connect("app_maintainer"), "public.t")
    swap = ("ALTER TYPE public.pair RENAME ATTRIBUTE debit TO x; ALTER TYPE public.pair RENAME ATTRIBUTE credit TO debit;"
            " ALTER TYPE public.pair RENAME ATTRIBUTE x TO credit")
    recorded_or_refused(db, attacker, swap, "public.t")


def test_a_composite_whose_attribute_is_a_tables_row_type_altered_is_followed(db, connect, attacker):
    """outer_t (composite) has an attribute of inner_t's row type (a plain table); the tracked column
    is of outer_t. ALTER TABLE inner_t RENAME COLUMN swaps what every stored value reads as."""
    attacker.execute("CREATE TABLE public.inner_t (debit int, credit int)")
    attacker.execute("CREATE TYPE public.outer_t AS (i public.inner_t)")
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, o public.outer_t)")
    attacker.execute("INSERT INTO public.t VALUES (1, ROW(ROW(100, 0)))")
    enable_tracking(connect("app_maintainer"), "public.t")
    recorded_or_refused(db, attacker, SWAP.format(t="public.inner_t"), "public.t")
