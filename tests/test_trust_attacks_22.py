"""A twenty-second attacker's trial, on the mends of 683f501 and 7895160 (sql/65_schema_changes.sql):
_on_ddl_end records typed tables' columns changed through ALTER TYPE ... CASCADE and their row
types, and watches one list of command tags, _ddl_end_tags(); _on_sql_drop records, for commands
whose tag _on_ddl_end does NOT watch, covered tables' columns dropped by DROP ... CASCADE
(audit.tracked_table_ddl with `columns`) and changed composites, views and tables whose row type
covered tables use (audit.tracked_type_altered with `now`). The seam tried first is the hand-over
between the two: a command whose tag IS watched (ALTER TABLE, ALTER TYPE, ALTER FOREIGN TABLE) but
that drops, by CASCADE, something other than what _on_ddl_end looks at (a view, a materialized
view, a SQL function with a BEGIN ATOMIC body), and with it a covered table's column and every
row's value of it: _on_sql_drop skips it for its tag, _on_ddl_end sees only the command's own
table or type. Then the routes _on_sql_drop does take (DROP OWNED, a type in the middle of a
nesting of domains, composites, arrays, ranges and multiranges, a partitioned table, a DO block
that hides the command, a savepoint rolled back), what the records say under odd and colliding
names, huge enums and a temporary composite (which PostgreSQL lets a permanent table's column use,
and drops with CASCADE, outside any command, when its session ends), whether the new helpers can be called by roles without audit rights, and
what the new work costs every other role's DDL. Each test asserts the SAFE outcome: it passes when
the product holds and fails when the attack breaks it.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and on public) unless it says otherwise; app_maintainer (a member of
table_owner) tracks the tables. The one that needs more says so: ALTER FOREIGN TABLE needs USAGE on
a foreign server (granted by the superuser in the setup). None needs a superuser.
"""

from __future__ import annotations

import time

import psycopg
import psycopg.sql
import pytest
from schema_changes import (
    both_verifiers_ok,
    columns,
    hidden,
    made_without_the_temporary_check,
    names_table,
    recorded_or_refused,
    schema_events,
)

from pgaudit_py import InvalidTarget, enable_tracking, seal
from pgaudit_py.installer import status


def _dropped_column_is_recorded(db, attacker, command: str, table: str, column: str) -> None:
    """command (a watched tag) drops table.column by CASCADE: recorded as a change of table with its
    columns after it (or refused); the column and every row's value of it must not go unrecorded."""
    new = recorded_or_refused(db, attacker, command, table)
    if new is None:
        assert column in columns(db, table)
        return
    assert column not in columns(db, table)
    ddl = [p for k, t, p in new if k == "audit.tracked_table_ddl" and t == table]
    assert ddl and column not in [c[1] for c in ddl[-1]["columns"]], new


# --- 1. A watched tag whose CASCADE drops a covered column through something _on_ddl_end ignores ----

VIEW_ROUTES = {
    # name: (the object built on src.debit, the tracked column's type)
    "view": ("CREATE VIEW public.entry AS SELECT debit, credit FROM public.src", "public.entry"),
    "materialized_view": ("CREATE MATERIALIZED VIEW public.entry AS SELECT debit, credit FROM public.src",
                          "public.entry"),
    "array_of_view": ("CREATE VIEW public.entry AS SELECT debit, credit FROM public.src", "public.entry[]"),
}


@pytest.mark.parametrize("route", list(VIEW_ROUTES))
def test_alter_table_drop_column_cascade_dropping_a_view_drops_a_tracked_column_recorded(db, connect, attacker, route):
    """ALTER TABLE src DROP COLUMN debit CASCADE (tag ALTER TABLE: watched, so _on_sql_drop skips
    it) drops the view built on debit, its row type, and with it public.book.e, a tracked column of
    that row type, every row's value gone with no row event. _on_ddl_end sees only src (not
    covered) and src's row type (which book does not use)."""
    make_view, column_type = VIEW_ROUTES[route]
    attacker.execute("CREATE TABLE public.src (debit int, credit int)")
    attacker.execute(make_view)
    attacker.execute(f"CREATE TABLE public.book (id int PRIMARY KEY, e {column_type})")
    value = "ROW(100, 0)::public.entry" if column_type == "public.entry" else "ARRAY[ROW(100, 0)::public.entry]"
    attacker.execute(f"INSERT INTO public.book VALUES (1, {value})")
    enable_tracking(connect("app_maintainer"), "public.book")
    _dropped_column_is_recorded(db, attacker, "ALTER TABLE public.src DROP COLUMN debit CASCADE", "public.book", "e")


def test_alter_table_drop_column_cascade_dropping_a_begin_atomic_function_drops_a_generated_column_recorded(
        db, connect, attacker):
    """A SQL function with a BEGIN ATOMIC body depends on the columns it reads. A tracked table's
    generated column calls it: ALTER TABLE rates DROP COLUMN factor CASCADE (tag ALTER TABLE) drops
    the function and the generated column, with every stored value."""
    attacker.execute("CREATE TABLE public.rates (factor int)")
    attacker.execute("INSERT INTO public.rates VALUES (2)")
    attacker.execute("CREATE FUNCTION public.scaled(v int) RETURNS int LANGUAGE sql IMMUTABLE"
                     " BEGIN ATOMIC SELECT v * coalesce(max(factor), 1) FROM public.rates; END")
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, v int,"
                     " c int GENERATED ALWAYS AS (public.scaled(v)) STORED)")
    attacker.execute("INSERT INTO public.t (id, v) VALUES (1, 5)")
    enable_tracking(connect("app_maintainer"), "public.t")
    _dropped_column_is_recorded(db, attacker, "ALTER TABLE public.rates DROP COLUMN factor CASCADE", "public.t", "c")


def test_alter_type_drop_attribute_cascade_dropping_a_view_drops_a_tracked_column_recorded(db, connect, attacker):
    """A view reading a composite's field depends on that attribute. ALTER TYPE amount DROP
    ATTRIBUTE debit CASCADE (tag ALTER TYPE: watched) drops the view, its row type, and the tracked
    column made of it. _on_ddl_end looks at amount's row type and the tables typed by it only."""
    attacker.execute("CREATE TYPE public.amount AS (debit int, credit int)")
    attacker.execute("CREATE VIEW public.entry AS SELECT (ROW(1, 2)::public.amount).debit AS d")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.entry)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100))")
    enable_tracking(connect("app_maintainer"), "public.book")
    _dropped_column_is_recorded(db, attacker, "ALTER TYPE public.amount DROP ATTRIBUTE debit CASCADE",
                                "public.book", "e")


def test_alter_foreign_table_drop_column_cascade_drops_a_tracked_column_recorded(db, connect, attacker):
    """The same through ALTER FOREIGN TABLE (watched). Needs USAGE on a foreign server, which the
    superuser grants in the setup (a wrapper with no handler: nothing is ever read from it)."""
    db.execute("CREATE FOREIGN DATA WRAPPER trial22_fdw")
    db.execute("CREATE SERVER trial22_srv FOREIGN DATA WRAPPER trial22_fdw")
    db.execute("GRANT USAGE ON FOREIGN SERVER trial22_srv TO table_owner")
    try:
        attacker.execute("CREATE FOREIGN TABLE public.src (debit int, credit int) SERVER trial22_srv")
        attacker.execute("CREATE VIEW public.entry AS SELECT debit, credit FROM public.src")
        attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.entry)")
        attacker.execute("INSERT INTO public.book VALUES (1, ROW(100, 0))")
        enable_tracking(connect("app_maintainer"), "public.book")
        _dropped_column_is_recorded(db, attacker, "ALTER FOREIGN TABLE public.src DROP COLUMN debit CASCADE",
                                    "public.book", "e")
    finally:
        db.execute("DROP SERVER trial22_srv CASCADE")
        db.execute("DROP FOREIGN DATA WRAPPER trial22_fdw CASCADE")


def test_control_alter_table_drop_column_of_the_tracked_table_itself_is_recorded(db, connect, attacker):
    """The control: the same column dropped by the tracked table's own ALTER TABLE is recorded."""
    attacker.execute("CREATE TABLE public.src (debit int, credit int)")
    attacker.execute("CREATE VIEW public.entry AS SELECT debit, credit FROM public.src")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.entry)")
    enable_tracking(connect("app_maintainer"), "public.book")
    _dropped_column_is_recorded(db, attacker, "ALTER TABLE public.book DROP COLUMN e", "public.book", "e")


# --- 2. The routes _on_sql_drop takes --------------------------------------------------------------

def test_drop_owned_cascade_drops_a_column_of_another_roles_tracked_table_recorded(db, connect, attacker):
    """DROP OWNED BY table_owner CASCADE (tag DROP OWNED, not watched) drops table_owner's enum and,
    with it, the column of a tracked table that app_maintainer owns (its own table survives).
    Privileges: membership of the role dropped (table_owner is itself)."""
    attacker.execute("CREATE TYPE public.grade AS ENUM ('low', 'high')")
    maintainer = connect("app_maintainer")
    maintainer.execute("SET ROLE app_maintainer")
    maintainer.execute("CREATE TABLE public.kept (id int PRIMARY KEY, v int, g public.grade)")
    maintainer.execute("INSERT INTO public.kept VALUES (1, 1, 'high')")
    maintainer.execute("RESET ROLE")
    enable_tracking(maintainer, "public.kept")
    try:
        _dropped_column_is_recorded(db, attacker, "DROP OWNED BY table_owner CASCADE", "public.kept", "g")
        maintainer.execute("UPDATE public.kept SET v = 2")
        assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.kept.update'").fetchone()[0] == {
            "id": 1, "v": 2}
    finally:
        db.execute("DROP TABLE IF EXISTS public.kept")


NESTINGS = {
    # name: (setup, the tracked column's type, a value, the drop, the composite that changes, its attributes after)
    "domain_over_composite_over_enum": (
        "CREATE TYPE public.grade AS ENUM ('low', 'high');"
        " CREATE TYPE public.mark AS (g public.grade, n int);"
        " CREATE DOMAIN public.dmark AS public.mark",
        "public.dmark", "ROW('high', 1)::public.mark", "DROP TYPE public.grade CASCADE",
        "public.mark", [[2, "n", "integer"]]),
    "array_of_composite_over_domain": (
        "CREATE DOMAIN public.cents AS int;"
        " CREATE TYPE public.pay AS (c public.cents, note text)",
        "public.pay[]", "ARRAY[ROW(5, 'x')::public.pay]", "DROP DOMAIN public.cents CASCADE",
        "public.pay", [[2, "note", "text"]]),
    "multirange_of_range_of_composite_over_domain": (
        "CREATE DOMAIN public.cents AS int;"
        " CREATE TYPE public.amt AS (c public.cents, w int);"
        " CREATE TYPE public.amt_r AS RANGE (subtype = public.amt)",
        "public.amt_r_multirange", "public.amt_r_multirange(public.amt_r(ROW(1, 1)::public.amt, ROW(2, 2)::public.amt))",
        "DROP DOMAIN public.cents CASCADE", "public.amt", [[2, "w", "integer"]]),
    "composite_of_a_dropped_tables_row_type": (
        "CREATE TABLE public.other (a int);"
        " CREATE TYPE public.wrap AS (o public.other, k int)",
        "public.wrap[]", "ARRAY[ROW(ROW(1), 2)::public.wrap]", "DROP TABLE public.other CASCADE",
        "public.wrap", [[2, "k", "integer"]]),
}


@pytest.mark.parametrize("route", list(NESTINGS))
def test_a_type_dropped_in_the_middle_of_a_nesting_is_recorded_with_the_type_now(db, connect, attacker, route):
    """A tracked column made of a composite through domains, arrays, ranges and multiranges; the type
    in the middle dropped by CASCADE (DROP TYPE, DOMAIN, TABLE: not watched) takes an attribute of
    the composite, and a part of every stored value. Recorded as audit.tracked_type_altered naming
    the composite, the table, and the attributes after it."""
    setup, column_type, value, drop, composite, after = NESTINGS[route]
    attacker.execute(setup)
    attacker.execute(f"CREATE TABLE public.t (id int PRIMARY KEY, c {column_type})")
    attacker.execute(f"INSERT INTO public.t VALUES (1, {value})")
    enable_tracking(connect("app_maintainer"), "public.t")
    new = recorded_or_refused(db, attacker, drop, "public.t")
    if new is None:
        return
    altered = [(t, p) for k, t, p in new if k == "audit.tracked_type_altered" and t == composite]
    assert altered, new
    assert altered[-1][1]["tables"] == ["public.t"] and altered[-1][1]["now"] == {"attributes": after}, altered
    attacker.execute("UPDATE public.t SET id = 2")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t.update'").fetchone()[0] == 1
    assert status(db).problems == []


def test_a_column_dropped_from_a_partitioned_tracked_table_by_drop_cascade_is_recorded_and_captured(
        db, connect, attacker):
    """DROP TYPE grade CASCADE drops the column from a partitioned tracked table and from each
    partition: recorded for the root with its columns after it; a partition's writes are captured
    without it, and nothing is left broken."""
    attacker.execute("CREATE TYPE public.grade AS ENUM ('low', 'high')")
    attacker.execute("CREATE TABLE public.m (id int PRIMARY KEY, v int, g public.grade) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.m_lo PARTITION OF public.m FOR VALUES FROM (0) TO (100)")
    attacker.execute("INSERT INTO public.m VALUES (1, 1, 'high')")
    enable_tracking(connect("app_maintainer"), "public.m")
    new = recorded_or_refused(db, attacker, "DROP TYPE public.grade CASCADE", "public.m")
    if new is None:
        return
    ddl = [p for k, t, p in new if k == "audit.tracked_table_ddl" and t == "public.m"]
    assert ddl and [c[1] for c in ddl[-1]["columns"]] == ["id", "v"], new
    attacker.execute("UPDATE public.m_lo SET v = 5")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.m.update'").fetchone()[0] == {
        "id": 1, "v": 5}
    assert status(db).problems == []
    seal(db)
    both_verifiers_ok(db)


def test_a_drop_cascade_hidden_in_a_do_block_is_told_by_the_columns(db, connect, attacker):
    """DROP DOMAIN ... CASCADE run by EXECUTE of base64 text in a DO block: the query string names
    nothing; the record's columns still tell which column went."""
    attacker.execute("CREATE DOMAIN public.cents AS int")
    attacker.execute("CREATE TABLE public.acc (id int PRIMARY KEY, debit public.cents, credit int)")
    attacker.execute("INSERT INTO public.acc VALUES (1, 100, 0)")
    enable_tracking(connect("app_maintainer"), "public.acc")
    do = hidden("DROP DOMAIN public.cents CASCADE")
    new = recorded_or_refused(db, attacker, do, "public.acc")
    if new is None:
        return
    ddl = [p for k, t, p in new if k == "audit.tracked_table_ddl" and t == "public.acc"]
    assert ddl and ddl[-1]["command"] == do and ddl[-1]["columns"] == [[1, "id", "integer"], [3, "credit", "integer"]]


def test_a_drop_cascade_rolled_back_to_a_savepoint_leaves_neither_the_change_nor_a_record(db, connect, attacker):
    """In one transaction: the drop, rolled back to a savepoint, then done again and committed. The
    first leaves nothing (neither the change nor its record); the second leaves both, once."""
    attacker.execute("CREATE TYPE public.grade AS ENUM ('low', 'high')")
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, v int, g public.grade)")
    enable_tracking(connect("app_maintainer"), "public.t")
    before = len(schema_events(db))
    conn = connect("table_owner", autocommit=False)
    conn.execute("SAVEPOINT a")
    conn.execute("DROP TYPE public.grade CASCADE")
    conn.execute("ROLLBACK TO SAVEPOINT a")
    conn.execute("SAVEPOINT b")
    try:
        conn.execute("DROP TYPE public.grade CASCADE")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        conn.rollback()
        return
    conn.execute("RELEASE SAVEPOINT b")
    conn.commit()
    new = [e for e in schema_events(db)[before:] if names_table(e, "public.t")]
    assert [k for k, _, _ in new].count("audit.tracked_table_ddl") == 1, new
    assert "g" not in columns(db, "public.t")


def test_a_long_query_string_with_the_drop_last_is_recorded_with_its_length_and_hash(db, connect, attacker):
    """Several commands in one query string, watched and not, the DROP ... CASCADE after 3,000
    characters of comment: the record says the string was cut (length, SHA-256 of the whole)."""
    import hashlib

    attacker.execute("CREATE TYPE public.grade AS ENUM ('low', 'high')")
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, v int, g public.grade)")
    enable_tracking(connect("app_maintainer"), "public.t")
    command = ("CREATE TABLE public.noise (a int); /* " + "x" * 3000 + " */ DROP TYPE public.grade CASCADE;"
               " ALTER TABLE public.noise ADD COLUMN b int")
    new = recorded_or_refused(db, attacker, command, "public.t")
    if new is None:
        return
    ddl = [p for k, t, p in new if k == "audit.tracked_table_ddl"]
    assert ddl and ddl[-1]["command_chars"] == len(command)
    assert ddl[-1]["command_sha256"] == hashlib.sha256(command.encode()).hexdigest()


# --- 3. What the records say under odd names -------------------------------------------------------

ODD_SCHEMA = 'a."b"' + "ü" * 20 + "."  # quotes, dots, two-byte characters: 63 bytes at most
ODD_TYPE = '"' * 10 + "Ω.x" + "e\u0301" * 8 + " ; DROP"


def test_odd_and_long_names_in_the_record_name_the_type_and_tables_unambiguously(db, connect, attacker):
    """A composite and a tracked table with names of quotes, dots, combining characters and 63-byte
    lengths; an attribute dropped by DROP TYPE ... CASCADE. The record's target and tables parse
    back to exactly those objects; the attributes now are the names as they are."""
    schema = ODD_SCHEMA.encode()[:63].decode(errors="ignore")
    attr = "x" * 62 + "é"[:1]
    attr = attr.encode()[:63].decode(errors="ignore")
    attacker.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema)))
    typ = psycopg.sql.Identifier(schema, ODD_TYPE)
    tab = psycopg.sql.Identifier(schema, ODD_TYPE + "t")
    attacker.execute("CREATE TYPE public.grade AS ENUM ('low', 'high')")
    attacker.execute(psycopg.sql.SQL("CREATE TYPE {} AS (g public.grade, {} int)").format(
        typ, psycopg.sql.Identifier(attr)))
    attacker.execute(psycopg.sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, c {})").format(tab, typ))
    regclass = db.execute(psycopg.sql.SQL("SELECT {}::regclass::oid, {}::regclass::text").format(
        psycopg.sql.Literal(tab.as_string(db)), psycopg.sql.Literal(tab.as_string(db)))).fetchone()
    regtype_oid = db.execute("SELECT %s::regtype::oid", (typ.as_string(db),)).fetchone()[0]
    enable_tracking(connect("app_maintainer"), regclass[1], kind_prefix="odd")
    new = recorded_or_refused(db, attacker, "DROP TYPE public.grade CASCADE", regclass[1])
    if new is None:
        return
    altered = [(t, p) for k, t, p in new if k == "audit.tracked_type_altered"]
    assert altered, new
    target, payload = altered[-1]
    assert db.execute("SELECT %s::regtype::oid", (target,)).fetchone()[0] == regtype_oid
    assert [db.execute("SELECT %s::regclass::oid", (t,)).fetchone()[0] for t in payload["tables"]] == [regclass[0]]
    assert payload["now"] == {"attributes": [[2, attr, "integer"]]}, payload


def test_a_huge_enum_with_odd_labels_is_told_whole_in_the_record(db, connect, attacker):
    """An enum of 3,000 labels (combining marks, right-to-left text, quotes, 63-byte labels) under a
    tracked column; one label renamed. The record's labels are the enum's, all, in order."""
    labels = [(f"{i}\u202e'\"" + "é" * 28)[:30] for i in range(3000)]
    labels = [label.encode()[:63].decode(errors="ignore") for label in labels]
    attacker.execute("CREATE TYPE public.big AS ENUM ()")
    for chunk in range(0, len(labels), 500):
        attacker.execute(";".join(
            "ALTER TYPE public.big ADD VALUE " + psycopg.sql.Literal(label).as_string(attacker) for label in labels[chunk:chunk + 500]))
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, b public.big)")
    enable_tracking(connect("app_maintainer"), "public.t")
    new = recorded_or_refused(db, attacker, "ALTER TYPE public.big RENAME VALUE "
                               + psycopg.sql.Literal(labels[7]).as_string(attacker) + " TO 'approved'", "public.t")
    if new is None:
        return
    labels[7] = "approved"
    altered = [p for k, t, p in new if k == "audit.tracked_type_altered" and t == "public.big"]
    assert altered and altered[-1]["now"] == {"labels": labels}


def test_colliding_type_names_across_schemas_are_told_apart(db, connect, attacker):
    """public.mood and lib.mood, the session's search_path set to lib first; the tracked table uses
    lib.mood, whose value is renamed. The record must name lib.mood, qualified: an auditor reading
    "mood" would look at public.mood."""
    attacker.execute("CREATE SCHEMA lib")
    attacker.execute("CREATE TYPE public.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TYPE lib.mood AS ENUM ('sad', 'ok')")
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, m lib.mood)")
    enable_tracking(connect("app_maintainer"), "public.t")
    attacker.execute("SET search_path = lib, public")
    new = recorded_or_refused(db, attacker, "ALTER TYPE mood RENAME VALUE 'sad' TO 'happy'", "public.t")
    if new is None:
        return
    assert [t for k, t, _ in new if k == "audit.tracked_type_altered"] == ["lib.mood"], new


def test_a_tracked_column_of_a_temporary_type_is_refused_at_every_route(db, connect, attacker):
    """PostgreSQL lets a permanent table's column be of a temporary composite. When the session ends,
    its temporary schema is dropped with CASCADE by the server, outside any command: no event
    trigger fires, and the column goes with every row's value of it (the trial found it so, and the
    record of a change to such a type named it unqualified, as public.amount would read). Refused:
    tracking such a table, adding such a column to a tracked table, and adding such an attribute to
    a composite a tracked column is made of; the type's end then changes nothing tracked."""
    conn = connect("table_owner")
    conn.execute("CREATE TYPE pg_temp.amount AS (debit int, credit int)")
    with made_without_the_temporary_check(db):
        conn.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int, a pg_temp.amount)")
    with pytest.raises(InvalidTarget, match=r"type pg_temp_\d+\.amount(\[\])?, which is temporary"):
        enable_tracking(connect("app_maintainer"), "public.book")
    conn.execute("CREATE TYPE public.pair AS (x int, y int)")
    conn.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, p public.pair)")
    enable_tracking(connect("app_maintainer"), "public.ledger")
    for command in ("ALTER TABLE public.ledger ADD COLUMN a pg_temp.amount",
                    "ALTER TYPE public.pair ADD ATTRIBUTE a pg_temp.amount"):
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(command)
        assert refused.value.sqlstate == "PA008", (command, refused.value)
    assert columns(db, "public.ledger") == ["id", "p"]
    before = len(schema_events(db))
    conn.close()
    for _ in range(50):  # the server drops the session's temporary schema after it ends
        if "a" not in columns(db, "public.book"):
            break
        time.sleep(0.1)
    assert "a" not in columns(db, "public.book")
    assert [e for e in schema_events(db)[before:] if names_table(e, "public.ledger")] == []
    assert columns(db, "public.ledger") == ["id", "p"]


# --- 4. The new helpers, and what the new work costs others ----------------------------------------

HELPERS = ["audit._record_schema_change('{}'::oid[], '{}'::oid[], '{}'::oid[])",
           "audit._type_now('int4'::regtype)", "audit._ddl_end_tags()", "audit._columns_now('pg_class'::regclass)",
           "audit._ddl_command()", "audit._covered_tables()"]


@pytest.mark.parametrize("role", ["table_owner", "app_writer", "app_reader", "app_maintainer", "app_attacker"])
def test_the_new_helpers_cannot_be_called_by_other_roles(db, connect, attacker, role):
    """_record_schema_change writes audit.tracked_type_altered and audit.tracked_table_ddl events with
    whatever oids it is handed; _type_now and the rest read the catalogue. None may be called by a
    role of the application, with or without an audit role (it would forge system events)."""
    conn = connect(role)
    for helper in HELPERS:
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(f"SELECT {helper}")
        assert refused.value.sqlstate == "42501", (role, helper, refused.value)


def test_a_forged_call_through_the_record_schema_change_oids_writes_nothing(db, connect, attacker):
    """Even as app_maintainer, with the types of a real tracked table: no event may be written."""
    attacker.execute("CREATE TYPE public.grade AS ENUM ('low', 'high')")
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, g public.grade)")
    enable_tracking(connect("app_maintainer"), "public.t")
    before = len(schema_events(db))
    maintainer = connect("app_maintainer")
    with pytest.raises(psycopg.Error):
        maintainer.execute("SELECT audit._record_schema_change(ARRAY['public.t'::regclass::oid],"
                           " ARRAY['public.grade'::regtype::oid], ARRAY['public.t'::regclass::oid])")
    assert len(schema_events(db)) == before


def _walks_of_covered_types(conn) -> int:
    """Calls of _column_types (the walk of a covered table's types) by an unrelated table's CREATE
    TABLE, CREATE INDEX and DROP TABLE, counted by PostgreSQL in the session's transaction."""
    with conn.transaction():
        conn.execute("CREATE TABLE bystander.x (a int)")
        conn.execute("CREATE INDEX ON bystander.x (a)")
        conn.execute("DROP TABLE bystander.x")
        return int(conn.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                                " WHERE schemaname = 'audit' AND funcname = '_column_types'").fetchone()[0])


def test_a_table_owner_cannot_make_every_other_roles_ddl_slow(db, connect, attacker):
    """_on_ddl_end computed every covered table's types (_column_types of each) for every CREATE
    TABLE, CREATE INDEX, ALTER TABLE, CREATE VIEW ... of the database, whoever ran it: a CREATE
    TABLE alters a row type. table_owner may grow the type graph of its own tracked tables at will
    (ALTER TYPE ... ADD ATTRIBUTE is recorded, not refused): 150 composites of 100 attributes under
    20 tracked tables made another role's unrelated CREATE TABLE, CREATE INDEX and DROP TABLE take
    250 ms against 25. The changed types are now followed up to the tables made of them, by
    PostgreSQL's dependencies: an unrelated command walks no covered table's types at all (counted
    by PostgreSQL's function statistics, not timed)."""
    db.execute("CREATE ROLE bystander LOGIN")
    db.execute("ALTER ROLE bystander SET track_functions = 'all'")
    db.execute("CREATE SCHEMA bystander AUTHORIZATION bystander")
    try:
        other = connect("bystander")
        attacker.execute("CREATE TYPE public.root AS (x int)")
        for i in range(20):
            attacker.execute(f"CREATE TABLE public.tr{i} (id int PRIMARY KEY, r public.root)")
            enable_tracking(connect("app_maintainer"), f"public.tr{i}")
        # 150 composites of 100 attributes each, all under the tracked tables' column.
        for j in range(150):
            cols = ", ".join(f"a{k} int{'[]' if k % 2 else ''}" for k in range(100))
            attacker.execute(f"CREATE TYPE public.n{j} AS ({cols})")
        attacker.execute("ALTER TYPE public.root " + ", ".join(f"ADD ATTRIBUTE n{j} public.n{j}" for j in range(150))
                         + " CASCADE")
        assert _walks_of_covered_types(other) == 0
    finally:
        db.execute("DROP SCHEMA bystander CASCADE")
        db.execute("DROP ROLE bystander")
