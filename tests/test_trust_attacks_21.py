"""A twenty-first attacker's trial, on the class trial 20 opened: schema changes that make a covered
(tracked) table's stored rows read differently, or lose a column's values, with no row event,
through routes other than an ALTER TABLE of the table itself. The event trigger _on_ddl_end
(sql/65_schema_changes.sql) watches a fixed list of command tags, and _on_sql_drop records a
dropped tracked table but not a dropped column: so the routes tried here are the row types a
tracked column may be made of that other tags change (a view's, ALTER VIEW and CREATE OR REPLACE
VIEW; a materialized view's; a typed table's, through its type's ALTER TYPE ... CASCADE), columns
dropped by DROP ... CASCADE of something they depend on (a type, a domain, a function a generated
column calls, a collation, an extension's type, a table or view whose row type they are, a schema),
what a recorded event says when the command's text is hidden (DDL run by EXECUTE of a decoded
string in a DO block), and a few changes that are recorded or refused as they should be (a typed
table's attribute retyped in place or with a rewrite through its type, a partitioned typed table's
attribute renamed, a column added with a volatile default, ALTER TABLE ... RENAME COLUMN on a view).
Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack
breaks it.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and on public, so it may create schemas and trusted extensions such as
citext). None needs a superuser. app_maintainer (a member of table_owner) tracks the tables.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from schema_changes import both_verifiers_ok, columns, hidden, recorded_or_refused, schema_events

from pgaudit_py import enable_tracking, seal
from pgaudit_py.installer import status

# --- 1. Row types a tracked column is made of, changed under tags _on_ddl_end does not watch ---------

def test_a_view_column_renamed_under_a_tracked_column_of_its_row_type_is_recorded(db, connect, attacker):
    """A view's row type is a composite a table's column may be made of: every stored value's image
    has the view's column names as keys. ALTER VIEW ... RENAME COLUMN (tag ALTER VIEW, not watched)
    renames a key of every tracked row's image, debit to credit, with no row event."""
    attacker.execute("CREATE TABLE public.src (debit int, credit int)")
    attacker.execute("CREATE VIEW public.entry AS SELECT debit, credit FROM public.src")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.entry)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    for command in ("ALTER VIEW public.entry RENAME COLUMN debit TO tmp",
                    "ALTER VIEW public.entry RENAME COLUMN credit TO debit",
                    "ALTER VIEW public.entry RENAME COLUMN tmp TO credit"):
        if recorded_or_refused(db, attacker, command, "public.book") is None:
            return
    # The stored row now reads as a credit of 100.
    assert db.execute("SELECT to_jsonb(e) FROM public.book").fetchone()[0] == {"credit": 100, "debit": 0}


def test_a_column_added_to_a_view_whose_row_type_a_tracked_column_uses_is_recorded(db, connect, attacker):
    """CREATE OR REPLACE VIEW (tag CREATE VIEW, not watched) may add columns at the end: every stored
    value of a tracked column of the view's row type gains a key (null) with no row event; an
    ALTER TABLE ... ADD COLUMN on a table whose row type is used is recorded (trial 20)."""
    attacker.execute("CREATE TABLE public.src (amount int)")
    attacker.execute("CREATE VIEW public.entry AS SELECT amount FROM public.src")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.entry)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100))")
    enable_tracking(connect("app_maintainer"), "public.book")
    recorded_or_refused(db, attacker, "CREATE OR REPLACE VIEW public.entry AS"
                                       " SELECT amount, NULL::boolean AS reversed FROM public.src", "public.book")


def test_a_materialized_view_column_renamed_under_a_tracked_column_of_its_row_type_is_recorded(db, connect, attacker):
    """A materialized view's row type too: ALTER MATERIALIZED VIEW ... RENAME COLUMN (not watched)."""
    attacker.execute("CREATE MATERIALIZED VIEW public.entry AS SELECT 1 AS debit, 2 AS credit WITH NO DATA")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.entry)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    recorded_or_refused(db, attacker, "ALTER MATERIALIZED VIEW public.entry RENAME COLUMN debit TO credit_was", "public.book")


def test_a_typed_tables_row_type_used_by_a_tracked_column_renamed_through_alter_type_cascade_is_recorded(db, connect, attacker):
    """public.entry is a typed table (OF public.entry_t); public.book's column is of entry's row type
    (not of entry_t). ALTER TYPE entry_t RENAME ATTRIBUTE ... CASCADE renames entry's column, so a key
    of every tracked image: _on_ddl_end adds entry_t's row type to what was altered, and the typed
    tables to what was touched, but not the typed tables' own row types."""
    attacker.execute("CREATE TYPE public.entry_t AS (debit int, credit int)")
    attacker.execute("CREATE TABLE public.entry OF public.entry_t")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.entry)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    recorded_or_refused(db, attacker, "ALTER TYPE public.entry_t RENAME ATTRIBUTE debit TO credit_was CASCADE",
                         "public.book")


def test_control_alter_table_rename_column_of_a_view_is_recorded(db, connect, attacker):
    """The same rename as the first test, spelled ALTER TABLE (PostgreSQL accepts it on a view): tag
    ALTER TABLE, watched. Recorded, as audit.tracked_type_altered naming the view's row type."""
    attacker.execute("CREATE TABLE public.src (debit int, credit int)")
    attacker.execute("CREATE VIEW public.entry AS SELECT debit, credit FROM public.src")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, e public.entry)")
    enable_tracking(connect("app_maintainer"), "public.book")
    new = recorded_or_refused(db, attacker, "ALTER TABLE public.entry RENAME COLUMN debit TO tmp", "public.book")
    assert new is None or ("audit.tracked_type_altered", "public.entry") in [(k, t) for k, t, _ in new], new


# --- 2. A tracked column dropped by DROP ... CASCADE of what it depends on ---------------------------

DROPS = {
    # name: (setup, the tracked table's definition, the drop)
    "enum": ("CREATE TYPE public.grade AS ENUM ('low', 'high')",
             "CREATE TABLE public.t (id int PRIMARY KEY, v int, c public.grade)",
             "DROP TYPE public.grade CASCADE"),
    "domain": ("CREATE DOMAIN public.cents AS int",
               "CREATE TABLE public.t (id int PRIMARY KEY, v int, c public.cents)",
               "DROP DOMAIN public.cents CASCADE"),
    "generated": ("CREATE FUNCTION public.twice(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2'",
                  "CREATE TABLE public.t (id int PRIMARY KEY, v int, c int GENERATED ALWAYS AS (public.twice(v)) STORED)",
                  "DROP FUNCTION public.twice(int) CASCADE"),
    "collation": ("CREATE COLLATION public.coll (provider = icu, locale = 'und')",
                  "CREATE TABLE public.t (id int PRIMARY KEY, v int, c text COLLATE public.coll)",
                  "DROP COLLATION public.coll CASCADE"),
    "extension": ("CREATE EXTENSION IF NOT EXISTS citext",
                  "CREATE TABLE public.t (id int PRIMARY KEY, v int, c citext)",
                  "DROP EXTENSION citext CASCADE"),
    "row_type": ("CREATE TABLE public.other (a int)",
                 "CREATE TABLE public.t (id int PRIMARY KEY, v int, c public.other)",
                 "DROP TABLE public.other CASCADE"),
    "schema": ("CREATE SCHEMA lib; CREATE TYPE lib.grade AS ENUM ('low', 'high')",
               "CREATE TABLE public.t (id int PRIMARY KEY, v int, c lib.grade)",
               "DROP SCHEMA lib CASCADE"),
    # The control: the same column dropped by ALTER TABLE, which is recorded.
    "control_alter_table": ("SELECT 1", "CREATE TABLE public.t (id int PRIMARY KEY, v int, c int)",
                            "ALTER TABLE public.t DROP COLUMN c"),
}
VALUES = {"enum": "'high'", "domain": "5", "generated": "DEFAULT", "collation": "'x'", "extension": "'x'",
          "row_type": "ROW(1)", "schema": "'high'",
          "control_alter_table": "3"}


@pytest.mark.parametrize("route", list(DROPS))
def test_a_tracked_column_dropped_by_drop_cascade_is_recorded(db, connect, attacker, route):
    """ALTER TABLE t DROP COLUMN c is recorded (audit.tracked_table_ddl, with the columns after it);
    DROP <what c depends on> CASCADE drops c, and every row's value of it, as surely. Recorded as a
    change of the table (its columns after it), or refused: not only followed by _on_sql_drop,
    which regenerates the capture and records nothing when no option names the column."""
    setup, table, drop = DROPS[route]
    attacker.execute(setup)
    attacker.execute(table)
    attacker.execute(f"INSERT INTO public.t (id, v, c) VALUES (1, 1, {VALUES[route]})")
    enable_tracking(connect("app_maintainer"), "public.t")
    new = recorded_or_refused(db, attacker, drop, "public.t")
    if new is None:
        assert "c" in columns(db, "public.t")
        return
    assert "c" not in columns(db, "public.t")
    ddl = [p for k, _, p in new if k == "audit.tracked_table_ddl"]
    assert ddl and [c[1] for c in ddl[-1]["columns"]] == ["id", "v"], new
    attacker.execute("UPDATE public.t SET v = 2")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.t.update'").fetchone()[0] == {"id": 1, "v": 2}


# --- 3. What a recorded change says when the command's text says nothing -----------------------------

def test_a_swap_run_by_execute_of_a_decoded_string_is_told_by_the_columns(db, connect, attacker):
    """The recorded command is the client's query string: a DO block EXECUTEing base64 text names
    no column. The columns after each command still tell that debit and credit swapped."""
    attacker.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, debit int, credit int)")
    attacker.execute("INSERT INTO public.ledger VALUES (1, 100, 0)")
    enable_tracking(connect("app_maintainer"), "public.ledger")
    do = hidden("ALTER TABLE public.ledger RENAME COLUMN debit TO tmp",
                 "ALTER TABLE public.ledger RENAME COLUMN credit TO debit",
                 "ALTER TABLE public.ledger RENAME COLUMN tmp TO credit")
    attacker.execute(do)
    ddl = [p for k, t, p in schema_events(db) if k == "audit.tracked_table_ddl" and t == "public.ledger"]
    assert len(ddl) == 3 and all(p["command"] == do for p in ddl), ddl
    assert [[c[1] for c in p["columns"]] for p in ddl] == [["id", "tmp", "credit"], ["id", "tmp", "debit"],
                                                           ["id", "credit", "debit"]]
    assert ddl[-1]["columns"] == [[1, "id", "integer"], [2, "credit", "integer"], [3, "debit", "integer"]]


def test_an_enum_value_renamed_by_execute_of_a_decoded_string_is_told_by_the_event(db, connect, attacker):
    """audit.tracked_type_altered carries the tables and the command, and nothing of the type after
    it (no labels, no attributes, unlike tracked_table_ddl's columns). Run from a DO block that
    EXECUTEs base64 text, the record of 'pending' renamed 'approved' under every row says neither
    name: an auditor cannot tell what every stored value now reads as."""
    attacker.execute("CREATE TYPE public.state AS ENUM ('pending', 'rejected')")
    attacker.execute("CREATE TABLE public.claim (id int PRIMARY KEY, s public.state)")
    attacker.execute("INSERT INTO public.claim VALUES (1, 'pending')")
    enable_tracking(connect("app_maintainer"), "public.claim")
    do = hidden("ALTER TYPE public.state RENAME VALUE 'pending' TO 'approved'")
    new = recorded_or_refused(db, attacker, do, "public.claim")
    if new is None:
        return
    told = json.dumps([p for _, _, p in new])
    assert "approved" in told, f"the record of the rename does not say what the values read as now: {told}"


def test_a_composite_attribute_renamed_by_execute_of_a_decoded_string_is_told_by_the_event(db, connect, attacker):
    """The same for a composite under a tracked column: ALTER TYPE ... RENAME ATTRIBUTE swapping two
    attributes (three commands) from a DO block. Each is recorded as audit.tracked_type_altered;
    the record should tell the attributes after it, as tracked_table_ddl tells the columns."""
    attacker.execute("CREATE TYPE public.amount AS (debit int, credit int)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, a public.amount)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(100, 0))")
    enable_tracking(connect("app_maintainer"), "public.book")
    do = hidden("ALTER TYPE public.amount RENAME ATTRIBUTE debit TO tmp",
                 "ALTER TYPE public.amount RENAME ATTRIBUTE credit TO debit",
                 "ALTER TYPE public.amount RENAME ATTRIBUTE tmp TO credit")
    new = recorded_or_refused(db, attacker, do, "public.book")
    if new is None:
        return
    assert len(new) == 3, new
    told = json.dumps(new[-1][2])
    assert "credit" in told and "debit" in told, f"the record of the swap does not say the attributes now: {told}"


# --- 4. Changes that are recorded or refused, and what they say --------------------------------------

def test_a_typed_tables_attribute_retyped_through_its_type_in_place_is_recorded_and_with_a_rewrite_refused(db, connect, attacker):
    """CREATE TABLE ... OF, then tracked. ALTER TYPE ... ALTER ATTRIBUTE amount TYPE oid CASCADE
    retypes the table's column in place (int4 to oid is binary: -1 now reads 4294967295), the tag
    ALTER TYPE on the composite; recorded with the column's new type. To bigint it rewrites the
    rows: refused."""
    attacker.execute("CREATE TYPE public.pay_t AS (id int, amount int)")
    attacker.execute("CREATE TABLE public.pay OF public.pay_t (PRIMARY KEY (id))")
    attacker.execute("INSERT INTO public.pay VALUES (1, -1)")
    enable_tracking(connect("app_maintainer"), "public.pay")
    new = recorded_or_refused(db, attacker, "ALTER TYPE public.pay_t ALTER ATTRIBUTE amount TYPE oid CASCADE", "public.pay")
    if new is not None:
        ddl = [p for k, t, p in new if k == "audit.tracked_table_ddl" and t == "public.pay"]
        assert ddl and ddl[-1]["columns"] == [[1, "id", "integer"], [2, "amount", "oid"]], new
        assert db.execute("SELECT amount::text FROM public.pay").fetchone()[0] == "4294967295"
    with pytest.raises(psycopg.Error) as refused:
        attacker.execute("ALTER TYPE public.pay_t ALTER ATTRIBUTE amount TYPE bigint CASCADE")
    assert refused.value.sqlstate == "PA008", refused.value
    attacker.execute("UPDATE public.pay SET amount = 7")
    # to_jsonb prints an oid as a string.
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.pay.update'").fetchone()[0] == {
        "id": 1, "amount": "7"}
    assert status(db).problems == []


def test_a_partitioned_typed_tables_attribute_renamed_through_its_type_is_recorded_and_captured(db, connect, attacker):
    """A typed table that is partitioned: ALTER TYPE ... RENAME ATTRIBUTE ... CASCADE renames the
    root's column and its partitions'. Recorded for the root with the columns after it; writes to a
    partition afterwards carry the new name; nothing is left broken."""
    attacker.execute("CREATE TYPE public.m_t AS (id int, debit int, credit int)")
    attacker.execute("CREATE TABLE public.m OF public.m_t (PRIMARY KEY (id)) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.m_lo PARTITION OF public.m FOR VALUES FROM (0) TO (100)")
    attacker.execute("INSERT INTO public.m VALUES (1, 100, 0)")
    enable_tracking(connect("app_maintainer"), "public.m")
    new = recorded_or_refused(db, attacker, "ALTER TYPE public.m_t RENAME ATTRIBUTE debit TO owed CASCADE", "public.m")
    if new is None:
        return
    ddl = [p for k, t, p in new if k == "audit.tracked_table_ddl" and t == "public.m"]
    assert ddl and [c[1] for c in ddl[-1]["columns"]] == ["id", "owed", "credit"], new
    assert columns(db, "public.m_lo") == ["id", "owed", "credit"]
    attacker.execute("UPDATE public.m_lo SET credit = 5")
    image = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.m.update'").fetchone()[0]
    assert image == {"id": 1, "owed": 100, "credit": 5}
    assert status(db).problems == []
    seal(db)
    both_verifiers_ok(db)


def test_a_column_added_with_a_volatile_default_is_recorded_with_the_command(db, connect, attacker):
    """ADD COLUMN ... DEFAULT <volatile> rewrites the table (table_rewrite's reason is a default, not
    a column's type, so it is not refused) and fills every row with a value nobody wrote, one per
    row, with no row event. Recorded as audit.tracked_table_ddl, the command naming the default and
    the columns the new one."""
    attacker.execute("CREATE TABLE public.acc (id int PRIMARY KEY, v int)")
    attacker.execute("INSERT INTO public.acc SELECT g, g FROM generate_series(1, 3) g")
    attacker.execute("CREATE SEQUENCE public.approver")
    enable_tracking(connect("app_maintainer"), "public.acc")
    command = "ALTER TABLE public.acc ADD COLUMN approved_by int DEFAULT nextval('public.approver')"
    new = recorded_or_refused(db, attacker, command, "public.acc")
    if new is None:
        return
    ddl = [p for k, t, p in new if k == "audit.tracked_table_ddl"]
    assert ddl and ddl[-1]["command"] == command and ddl[-1]["columns"][-1] == [3, "approved_by", "integer"], new
    assert db.execute("SELECT count(DISTINCT approved_by) FROM public.acc").fetchone()[0] == 3
    attacker.execute("UPDATE public.acc SET v = 0 WHERE id = 1")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.acc.update'").fetchone()[0] == 1
