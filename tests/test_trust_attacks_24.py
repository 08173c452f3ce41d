"""A twenty-fourth attacker's trial, on the mends of cb95517 and c7df4fa (sql/65_schema_changes.sql,
sql/60_capture.sql): _on_ddl_end follows the row types of an altered relation's descendants and of
its typed tables, _covered_made_of walks up from changed types through pg_depend, a cast to json
touches only covered tables made of its source type, _temporary_dependency walks pg_depend down,
and the event triggers pin quote_all_identifiers. The seams tried here: the other spellings
PostgreSQL accepts for a column change of a table (ALTER VIEW, ALTER MATERIALIZED VIEW, ALTER
FOREIGN TABLE, ALTER TYPE ... RENAME ATTRIBUTE on a plain table: watched tags, but only the tag
ALTER TABLE counts as changing a covered table's columns); session settings that might change
what the event triggers compute or record (DateStyle, IntervalStyle, extra_float_digits,
bytea_output, standard_conforming_strings, TimeZone, array_nulls, transform_null_equals,
session_replication_role, under which no event trigger fires); ALTER EVENT TRIGGER; DDL inside a
procedure that commits; tables that become children later (INHERIT, ATTACH PARTITION) and a typed
table's inheritance child; a cast to json through a superuser's polymorphic function (trusted by
owner, but not the user's code); rewrites that keep the values (SET STORAGE/COMPRESSION, CLUSTER,
VACUUM FULL). Each test asserts the SAFE outcome: it passes when the product holds and fails when
the attack breaks it.

The trial also counted what another role's 400 temporary composites over table_owner's row type or
enum cost table_owner's rename: about 15,000 catalogue rows more, with the event triggers disabled
as much as enabled (PostgreSQL's own). Not kept as a test: it measures the server. The audit's walk
up from a changed type now stops at temporary types, which nothing beneath a covered table can be.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and on public; TEMP, as every role has) unless it says otherwise;
app_maintainer (a member of table_owner) tracks the tables. None needs a superuser.
"""

from __future__ import annotations

import psycopg
import pytest
from schema_changes import columns, recorded_or_refused

from pgaudit_py import enable_tracking

WRONG_OBJECT_TYPE = "42809"


def _ledger(attacker, connect):
    attacker.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, debit int, credit int, note int)")
    attacker.execute("INSERT INTO public.ledger VALUES (1, 100, 0, 7)")
    enable_tracking(connect("app_maintainer"), "public.ledger")


# --- 1. A covered table's columns changed by a command spelled as for another kind of relation ------

SPELLINGS = {
    "alter_view": "ALTER VIEW public.ledger RENAME COLUMN {a} TO {b}",
    "alter_materialized_view": "ALTER MATERIALIZED VIEW public.ledger RENAME COLUMN {a} TO {b}",
    "alter_foreign_table": "ALTER FOREIGN TABLE public.ledger RENAME COLUMN {a} TO {b}",
    "alter_type_attribute": "ALTER TYPE public.ledger RENAME ATTRIBUTE {a} TO {b}",
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_a_swap_of_a_tracked_tables_columns_spelled_for_another_relation_kind_is_recorded(
        db, connect, attacker, spelling):
    """PostgreSQL's RENAME COLUMN checks the relation's kind loosely: ALTER VIEW, ALTER MATERIALIZED
    VIEW, ALTER FOREIGN TABLE (and perhaps ALTER TYPE ... RENAME ATTRIBUTE) rename a plain table's
    columns too. The tags are watched, but _on_ddl_end adds a relation to columns_altered (the
    tables recorded as audit.tracked_table_ddl) only when the tag is ALTER TABLE. Swapping debit and
    credit of the tracked table (neither a key nor an option) then changes what every stored row
    reads as with no record: _refresh_tracking sees no option change."""
    _ledger(attacker, connect)
    cmd = SPELLINGS[spelling]
    swap = "; ".join([cmd.format(a="debit", b="x"), cmd.format(a="credit", b="debit"), cmd.format(a="x", b="credit")])
    new = recorded_or_refused(db, attacker, swap, "public.ledger", pg_refusals=(WRONG_OBJECT_TYPE,))
    if new is not None:
        assert any(e[0] == "audit.tracked_table_ddl" and [c[1] for c in e[2]["columns"]] ==
                   ["id", "credit", "debit", "note"] for e in new), new


FOREIGN_TABLE_CHANGES = {
    "drop_column": "ALTER FOREIGN TABLE public.ledger DROP COLUMN note",
    "retype_in_place": "ALTER FOREIGN TABLE public.ledger ALTER COLUMN note TYPE oid",
    "add_column": "ALTER FOREIGN TABLE public.ledger ADD COLUMN extra int DEFAULT 5",
}


@pytest.mark.parametrize("change", sorted(FOREIGN_TABLE_CHANGES))
def test_a_tracked_tables_column_dropped_or_retyped_through_alter_foreign_table_is_recorded(
        db, connect, attacker, change):
    """The same for the subcommands that drop a column with every value or retype it in place: the
    tag ALTER FOREIGN TABLE is watched, so _on_sql_drop leaves an original DROP COLUMN to
    _on_ddl_end, which records columns only for ALTER TABLE. PostgreSQL may refuse the spelling on a
    plain table (wrong object type): then it holds."""
    _ledger(attacker, connect)
    recorded_or_refused(db, attacker, FOREIGN_TABLE_CHANGES[change], "public.ledger",
                         pg_refusals=(WRONG_OBJECT_TYPE,))


def test_control_alter_view_rename_of_a_table_whose_row_type_a_tracked_column_uses_is_recorded(db, connect, attacker):
    """The same spelling on another table whose row type a tracked column is: reached through the
    row type (altered), whatever the tag."""
    attacker.execute("CREATE TABLE public.leg (debit int, credit int)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.leg)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    swap = ("ALTER VIEW public.leg RENAME COLUMN debit TO x; ALTER VIEW public.leg RENAME COLUMN credit TO debit;"
            " ALTER VIEW public.leg RENAME COLUMN x TO credit")
    recorded_or_refused(db, attacker, swap, "public.book", pg_refusals=(WRONG_OBJECT_TYPE,))


# --- 2. Event triggers switched off or bypassed without a superuser -----------------------------------


def test_table_owner_cannot_run_ddl_in_replica_mode(db, connect, attacker):
    """Event triggers do not fire with session_replication_role = replica. It is a superuser's
    setting: table_owner tries SET, SET LOCAL, ALTER ROLE ... SET, and a function's SET clause, then
    renames an enum value a tracked column uses inside that function: refused, or recorded."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'sad')")
    enable_tracking(connect("app_maintainer"), "public.book")
    for command in ("SET session_replication_role = replica",
                    "BEGIN; SET LOCAL session_replication_role = replica; COMMIT",
                    "ALTER ROLE table_owner SET session_replication_role = replica"):
        with pytest.raises(psycopg.Error):
            attacker.execute(command)
        attacker.execute("ROLLBACK") if attacker.info.transaction_status != 0 else None
    assert attacker.execute("SHOW session_replication_role").fetchone()[0] == "origin"
    try:
        attacker.execute("CREATE FUNCTION public.quiet() RETURNS void LANGUAGE plpgsql"
                         " SET session_replication_role = replica"
                         " AS $$ BEGIN ALTER TYPE public.mood RENAME VALUE 'sad' TO 'happy'; END $$")
    except psycopg.Error:
        return
    recorded_or_refused(db, attacker, "SELECT public.quiet()", "public.book", pg_refusals=("42501",))


def test_table_owner_cannot_disable_rename_or_take_the_event_triggers(db, attacker):
    """ALTER EVENT TRIGGER needs the trigger's owner (a superuser): table_owner may not disable,
    set to replica-only, rename or take any of them."""
    names = [r[0] for r in db.execute("SELECT evtname FROM pg_event_trigger WHERE evtname LIKE 'audit%'")]
    assert names
    for name in names:
        for clause in ("DISABLE", "ENABLE REPLICA", "RENAME TO gone", "OWNER TO table_owner"):
            with pytest.raises(psycopg.Error):
                attacker.execute(f"ALTER EVENT TRIGGER {name} {clause}")
    assert db.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'audit%' AND evtenabled = 'O'"
                      ).fetchone()[0] == len(names)


def test_an_enum_value_renamed_in_a_procedure_that_commits_is_recorded(db, connect, attacker):
    """DDL in a procedure, between COMMITs (each its own transaction, run through SPI): the event
    triggers fire for the nested command all the same."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood)")
    attacker.execute("INSERT INTO public.book VALUES (1, 'sad')")
    enable_tracking(connect("app_maintainer"), "public.book")
    attacker.execute("CREATE PROCEDURE public.p() LANGUAGE plpgsql AS $$ BEGIN COMMIT;"
                     " ALTER TYPE public.mood RENAME VALUE 'sad' TO 'x'; COMMIT;"
                     " ALTER TYPE public.mood RENAME VALUE 'ok' TO 'sad'; COMMIT;"
                     " ALTER TYPE public.mood RENAME VALUE 'x' TO 'ok'; COMMIT; END $$")
    new = recorded_or_refused(db, attacker, "CALL public.p()", "public.book")
    if new is not None:
        assert new[-1][2]["now"] == {"labels": ["ok", "sad"]}, new


# --- 3. Session settings of the role running the DDL -----------------------------------------------

ODD_SETTINGS = ("SET DateStyle = 'SQL, DMY'", "SET IntervalStyle = 'sql_standard'", "SET extra_float_digits = -15",
                "SET bytea_output = 'escape'", "SET standard_conforming_strings = off", "SET TimeZone = 'Pacific/Kiritimati'",
                "SET array_nulls = off", "SET transform_null_equals = on", "SET lc_monetary = 'C'",
                "SET escape_string_warning = off", "SET backslash_quote = on", "SET xmloption = document")


def test_a_sessions_output_and_parsing_settings_change_nothing_the_event_triggers_record(db, connect, attacker):
    """The event triggers pin search_path, quote_all_identifiers and jit; the rest is the session's.
    table_owner sets every output and parsing setting a role may, then renames a label holding a
    backslash, a quote and 'NULL', swaps two columns of a tracked table and retypes a column in place
    (int to oid): the events must read exactly as under the defaults."""
    for s in ODD_SETTINGS:
        attacker.execute(s)
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood, a int, b int, at timestamp(3))")
    attacker.execute("INSERT INTO public.book VALUES (1, 'sad', 1, 2, '2001-02-03 04:05:06')")
    enable_tracking(connect("app_maintainer"), "public.book")
    label = "NULL\\'q"
    new = recorded_or_refused(db, attacker, "ALTER TYPE public.mood RENAME VALUE 'sad' TO E'NULL\\\\''q'",
                               "public.book")
    assert new is not None and new[-1][2]["now"] == {"labels": [label, "ok"]}, new
    new = recorded_or_refused(db, attacker, "ALTER TABLE public.book RENAME COLUMN a TO x;"
                               " ALTER TABLE public.book RENAME COLUMN b TO a; ALTER TABLE public.book RENAME COLUMN x TO b",
                               "public.book")
    assert new is not None and new[-1][2]["columns"] == [
        [1, "id", "integer"], [2, "m", "public.mood"], [3, "b", "integer"], [4, "a", "integer"],
        [5, "at", "timestamp(3) without time zone"]], new
    assert db.execute("SELECT table_name, key_columns FROM audit.tracked_tables").fetchall() == [("public.book", ["id"])]
    attacker.execute("INSERT INTO public.book VALUES (2, 'ok', 3, 4, '2001-02-03 04:05:06.5')")
    image = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book.insert'"
                       " AND row_after->>'id' = '2'").fetchone()[0]
    assert image == {"id": 2, "m": "ok", "b": 3, "a": 4, "at": "2001-02-03T04:05:06.5"}, image


def test_a_sessions_plpgsql_extra_checks_do_not_break_the_event_triggers(db, connect, attacker):
    """plpgsql.extra_errors and extra_warnings are anyone's settings and apply to the functions a
    session compiles, the event triggers' too: with all checks on, table_owner's ALTER TABLE of
    its tracked table must still be followed (recorded), not fail in the audit code."""
    attacker.execute("SET plpgsql.extra_errors = 'all'")
    attacker.execute("SET plpgsql.extra_warnings = 'all'")
    _ledger(attacker, connect)
    recorded_or_refused(db, attacker, "ALTER TABLE public.ledger RENAME COLUMN note TO remark", "public.ledger")
    attacker.execute("INSERT INTO public.ledger VALUES (2, 1, 1, 1)")


# --- 4. Tables that become children later, and a typed table's child -------------------------------

SWAP = ("ALTER TABLE {t} RENAME COLUMN debit TO x; ALTER TABLE {t} RENAME COLUMN credit TO debit;"
        " ALTER TABLE {t} RENAME COLUMN x TO credit")


@pytest.mark.parametrize("how", ["inherit", "attach_partition"])
def test_a_table_made_a_child_later_then_its_parents_columns_swapped_is_recorded(db, connect, attacker, how):
    """public.leg is created alone, tracked public.book stores values of its row type; later leg is
    made a child (ALTER TABLE leg INHERIT base) or a partition (ALTER TABLE base ATTACH PARTITION
    leg). Renaming base's columns then renames leg's."""
    if how == "inherit":
        attacker.execute("CREATE TABLE public.base (k int, debit int, credit int)")
    else:
        attacker.execute("CREATE TABLE public.base (k int, debit int, credit int) PARTITION BY LIST (k)")
    attacker.execute("CREATE TABLE public.leg (k int, debit int, credit int)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.leg)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(1, 100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    if how == "inherit":
        attacker.execute("ALTER TABLE public.leg INHERIT public.base")
    else:
        attacker.execute("ALTER TABLE public.base ATTACH PARTITION public.leg FOR VALUES IN (1)")
    new = recorded_or_refused(db, attacker, SWAP.format(t="public.base"), "public.book")
    if new is not None:
        assert columns(db, "public.leg") == ["k", "credit", "debit"]


def test_a_typed_tables_inheritance_child_renamed_through_alter_type_cascade_is_recorded(db, connect, attacker):
    """public.typed is OF public.amount; public.kid INHERITS typed; tracked book stores kid's row
    type. ALTER TYPE amount RENAME ATTRIBUTE ... CASCADE renames typed's columns and kid's."""
    attacker.execute("CREATE TYPE public.amount AS (debit int, credit int)")
    attacker.execute("CREATE TABLE public.typed OF public.amount")
    try:
        attacker.execute("CREATE TABLE public.kid () INHERITS (public.typed)")
    except psycopg.Error:
        pytest.skip("PostgreSQL refuses a child of a typed table")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.kid)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    swap = ("ALTER TYPE public.amount RENAME ATTRIBUTE debit TO x CASCADE;"
            " ALTER TYPE public.amount RENAME ATTRIBUTE credit TO debit CASCADE;"
            " ALTER TYPE public.amount RENAME ATTRIBUTE x TO credit CASCADE")
    new = recorded_or_refused(db, attacker, swap, "public.book")
    if new is not None:
        assert columns(db, "public.kid") == ["credit", "debit"]


# --- 5. Casts and rewrites ---------------------------------------------------------------------------


def test_a_cast_to_json_through_a_superusers_polymorphic_function_neither_forges_nor_blocks_writes(
        db, connect, attacker):
    """_json_casts trusts a cast whose function a superuser owns. CREATE CAST needs only the source
    type: table_owner makes pg_catalog.to_json(anyelement) its enum's cast to json (anything is
    binary-coercible to anyelement), after the enum's column is tracked. to_jsonb then calls it
    without an expression to learn its argument's type from (or recurses): the cast must be refused,
    or rows still be captured as they are."""
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, m public.mood)")
    enable_tracking(connect("app_maintainer"), "public.book")
    try:
        attacker.execute("CREATE CAST (public.mood AS json) WITH FUNCTION pg_catalog.to_json(anyelement)")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008" or exc.sqlstate.startswith("42"), exc
        return
    writer = connect("app_writer")
    db.execute("GRANT INSERT ON public.book TO app_writer")
    try:
        writer.execute("INSERT INTO public.book VALUES (1, 'sad')")
    except psycopg.Error as exc:
        pytest.fail(f"table_owner's cast (a superuser's function, so trusted) blocks every write: {exc.sqlstate} {exc}")
    image = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book.insert'").fetchone()[0]
    assert image == {"id": 1, "m": "sad"}, image


def test_rewrites_that_keep_the_values_leave_the_capture_whole(db, connect, attacker):
    """SET STORAGE, SET COMPRESSION, SET ACCESS METHOD heap, CLUSTER, VACUUM FULL and REINDEX by the
    table's owner rewrite or reorganise it without changing a value: allowed or refused, the
    capture must stay whole and keep capturing."""
    attacker.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, debit int, credit int, note text)")
    attacker.execute("INSERT INTO public.ledger VALUES (1, 100, 0, repeat('x', 5000))")
    enable_tracking(connect("app_maintainer"), "public.ledger")
    for command in ("ALTER TABLE public.ledger ALTER COLUMN note SET STORAGE EXTERNAL",
                    "ALTER TABLE public.ledger ALTER COLUMN note SET COMPRESSION pglz",
                    "ALTER TABLE public.ledger SET ACCESS METHOD heap",
                    "CLUSTER public.ledger USING ledger_pkey", "VACUUM FULL public.ledger",
                    "REINDEX TABLE public.ledger"):
        try:
            attacker.execute(command)
        except psycopg.Error as exc:
            assert exc.sqlstate == "PA008" or exc.sqlstate.startswith("42"), (command, exc)
    assert db.execute("SELECT audit._capture_problem('public.ledger'::regclass)").fetchone()[0] is None
    attacker.execute("UPDATE public.ledger SET note = 'y'")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.ledger.update'").fetchone()[0] == 1
