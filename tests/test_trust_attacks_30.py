"""A thirtieth attacker's trial, on d36ffc8 (sql/60_capture.sql, sql/65_schema_changes.sql,
sql/superuser/70_event_triggers.sql): a new event trigger, audit_temporary, on ddl_command_end with
no tag list, runs _refuse_temporary_beneath: for every object pg_event_trigger_ddl_commands()
reports (oid >= 16384; not itself in a schema named pg_temp or pg_temp_N; not a temporary view's
rule, a trigger, a policy, a constraint, an extended statistics object or an index) it asks
_temporary_beneath, which walks PostgreSQL's record of dependencies DOWN from the object (plus a
composite type's relation, a table's generated columns, a view's rule), and refuses (PA008) when it
reaches an object in a temporary schema, or a temporary schema itself.

The routes tried here: an object that is ITSELF temporary (so never walked) but that PostgreSQL
made an internal part of a permanent one, so that dropping it drops its owner (a range type's
MULTIRANGE, which CREATE TYPE ... AS RANGE (multirange_type_name = pg_temp.mr) puts in the
session's temporary schema while the range itself is permanent: the multirange depends on the
range, INTERNAL, and the walk down from the range, or from anything above it, never sees it), reached
at tracking time, by a column added later, through a domain and an array, and through a generated
column's function replaced to call the range's constructor; an identity column's sequence named
into the temporary schema; temporary objects the walk meets under another name (a temporary table's
TOAST table, in pg_toast_temp_N, named by OID in a function's body) or in another session's
temporary schema (named by OID: no lookup, no USAGE needed); a procedure that commits after the link;
hostile names in the refusal's message; what another role's ordinary DDL costs once a table owner
has built a great deal (counted: audit function calls and pg_depend scans, in the bystander's own
transaction); and one collateral check: a rule that, like a trigger, would go alone. Each test
asserts the SAFE outcome: it passes when the product holds and fails when the attack breaks it.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and on public; TEMP, as every role has) unless it says otherwise;
app_maintainer (a member of table_owner) tracks the tables. The temporary schema is dropped with
DISCARD TEMP in a second session of table_owner's (no event trigger fires on it, as at a session's
end). The cost test uses t30_bystander, a login role with no privilege beyond PUBLIC's (and CREATE
on public for its own objects), track_functions set by the superuser only to count the work.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from schema_changes import (
    columns,
    events_naming,
    gone_events,
    ran_or_refused,
    tracked_or_refused,
)


def _exists(db, table: str) -> bool:
    return db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def _discard_and_check(db, session, table: str, since: int | None = None, composite: str | None = None) -> None:
    """DISCARD TEMP in session. Safe: the table keeps every column (and `composite`, the type of one
    of them, every attribute), or what it lost (the table itself) is recorded naming it, after
    `since` (the events before the discard by default)."""
    before = columns(db, table)
    inner = columns(db, composite) if composite else []
    n = len(gone_events(db)) if since is None else since
    session.execute("DISCARD TEMP")
    if not _exists(db, table):
        assert events_naming(db, table, n), (
            f"{table} (tracked) went with DISCARD TEMP, with every row, nothing recorded or refused")
        return
    left = columns(db, table)
    if left != before:
        assert events_naming(db, table, n), (
            f"{table} lost columns with DISCARD TEMP ({before} -> {left}), nothing recorded or refused")
    if composite:
        inner_left = columns(db, composite) if _exists(db, composite) else []
        if inner_left != inner:
            assert events_naming(db, table, n), (
                f"{table}'s column of {composite} lost attributes with DISCARD TEMP ({inner} -> {inner_left}),"
                " with every value of them, nothing recorded or refused")


MULTIRANGE_IN_TEMP = "CREATE TYPE public.r AS RANGE (subtype = int4, multirange_type_name = pg_temp.mr)"


# --- 1. A range type whose multirange is temporary ----------------------------------------------------


def test_a_range_whose_multirange_is_temporary_cannot_hand_a_tracked_column_to_discard_temp(db, connect, attacker):
    """CREATE TYPE public.r AS RANGE (subtype = int4, multirange_type_name = pg_temp.mr): PostgreSQL
    puts the range in public and its multirange (and the multirange's array and constructors) in
    the session's temporary schema; pg_depend says mr depends on r, INTERNAL (mr is part of r). The
    command reports r (permanent: walked) and nothing temporary lies beneath r; mr is itself
    temporary (left alone). book (id, v public.r) is made and tracked; enable_tracking's
    _temporary_dependency walks down from book -> r and misses mr too. DISCARD TEMP drops mr with
    CASCADE, and, since mr is internal to r, PostgreSQL drops its owner r instead, and book.v with
    it, with every value: no event trigger fires. Safe: refused, or nothing lost, or the loss
    recorded. Needs: TEMP; CREATE on public."""
    session = connect("table_owner")
    if not ran_or_refused(session, [MULTIRANGE_IN_TEMP]):
        return
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v public.r)")
    attacker.execute("INSERT INTO public.book VALUES (1, '[1,5)'), (2, '[7,9)')")
    if not tracked_or_refused(connect, "public.book"):
        return
    _discard_and_check(db, session, "public.book")


MULTIRANGE_ROUTES = {
    # a column of the range added to a table already tracked (ALTER TABLE: watched by _on_ddl_end)
    "column_of_the_range_added_after_tracking": (
        [MULTIRANGE_IN_TEMP], ["ALTER TABLE public.book ADD COLUMN w public.r"], None),
    # deeper: a domain over the range's array, a column of it added later
    "column_of_a_domain_over_an_array_of_the_range": (
        [MULTIRANGE_IN_TEMP, "CREATE DOMAIN public.spans AS public.r[]"],
        ["ALTER TABLE public.book ADD COLUMN w public.spans"], None),
    # a composite type holding the range, a covered column of it added later: the column stays,
    # the attribute of its type goes, with every row's value of it
    "column_of_a_composite_type_holding_the_range": (
        [MULTIRANGE_IN_TEMP, "CREATE TYPE public.slot AS (label text, span public.r)"],
        ["ALTER TABLE public.book ADD COLUMN w public.slot"], "public.slot"),
}


@pytest.mark.parametrize("route", MULTIRANGE_ROUTES)
def test_a_column_reaching_a_range_whose_multirange_is_temporary_is_refused_or_its_loss_recorded(
        db, connect, attacker, route):
    """The same range, wired in to a table ALREADY tracked: ALTER TABLE public.book ADD COLUMN w of
    the range, of a domain over its array, or of a composite type holding it. _on_ddl_end and
    audit_temporary both walk down from book (and the new column's type) and never meet mr, which
    depends on r, not r on it. DISCARD TEMP takes r (its internal part gone), then the domain or the
    composite type's attribute, and book.w with every value. The ADD COLUMN is recorded as any is;
    only records after it count for the loss."""
    setup, attack, composite = MULTIRANGE_ROUTES[route]
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int)")
    attacker.execute("INSERT INTO public.book VALUES (1, 5)")
    assert tracked_or_refused(connect, "public.book")
    session = connect("table_owner")
    if not ran_or_refused(session, setup):
        return
    if not ran_or_refused(attacker, attack, ("0A000",)):
        return
    n = len(gone_events(db))
    _discard_and_check(db, session, "public.book", since=n, composite=composite)


def test_a_generated_columns_function_replaced_to_call_the_ranges_constructor_is_refused_or_its_loss_recorded(
        db, connect, attacker):
    """g GENERATED ALWAYS AS (public.gf(v)) STORED on a tracked table; afterwards (a chain built far
    end first) the range r with its multirange in pg_temp, then CREATE OR REPLACE FUNCTION public.gf
    whose SQL-standard body calls public.r(0, 1), the range's constructor (a function INTERNAL to
    r). audit_temporary walks gf -> r(int,int) -> r -> public, int4: nothing temporary; _on_ddl_end
    re-checks book (gf is a generated column's function) with the same walk. DISCARD TEMP: mr goes,
    r with it, its constructor, gf, and book.g with every value."""
    attacker.execute("CREATE FUNCTION public.gf(x int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT x * 2; END")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int,"
                     " g int GENERATED ALWAYS AS (public.gf(v)) STORED)")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5), (2, 6)")
    assert tracked_or_refused(connect, "public.book")
    session = connect("table_owner")
    if not ran_or_refused(session, [MULTIRANGE_IN_TEMP]):
        return
    n = len(gone_events(db))
    if not ran_or_refused(attacker, ["CREATE OR REPLACE FUNCTION public.gf(x int) RETURNS int LANGUAGE sql IMMUTABLE"
                           " BEGIN ATOMIC SELECT CASE WHEN public.r(0, 1) IS NULL THEN 0 ELSE x * 2 END; END"]):
        return
    _discard_and_check(db, session, "public.book", since=n)


# --- 2. Other internal parts, and temporary objects under other names ---------------------------------


def test_an_identity_sequence_named_into_the_temporary_schema_cannot_take_a_tracked_column(db, connect, attacker):
    """An identity column's sequence is INTERNAL to its column: were it temporary, DISCARD TEMP
    would drop the column with it. ALTER TABLE public.book ALTER COLUMN v ADD GENERATED BY DEFAULT AS
    IDENTITY (SEQUENCE NAME pg_temp.s) names it into the temporary schema (a permanent sequence's
    name in pg_temp is made temporary by PostgreSQL); PostgreSQL's OWNED BY then names
    pg_temp.book.v, so a temporary table of that name is made first. (Seen: the sequence becomes
    INTERNAL to the TEMPORARY table's column, not public.book's; DISCARD TEMP leaves public.book.v,
    whose inserts then fail with "no owned sequence found": the table owner's own table, no loss.)
    Safe: refused, or book keeps its columns, or the loss recorded."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int)")
    attacker.execute("INSERT INTO public.book VALUES (1, 5)")
    assert tracked_or_refused(connect, "public.book")
    session = connect("table_owner")
    attacker.execute("ALTER TABLE public.book ALTER COLUMN v SET NOT NULL")
    session.execute("CREATE TEMP TABLE book (v int NOT NULL)")
    if not ran_or_refused(session, ["ALTER TABLE public.book ALTER COLUMN v ADD GENERATED BY DEFAULT AS IDENTITY"
                          " (SEQUENCE NAME pg_temp.s)"], ("42P01", "42P16", "0A000")):
        return
    _discard_and_check(db, session, "public.book")


def _oid_of(session, route: str) -> tuple[str, str]:
    """A temporary object of session's, by OID, and the reg* type to name it with."""
    session.execute("CREATE TEMP TABLE IF NOT EXISTS anchor (x text)")
    if route.endswith("toast_table"):
        return str(session.execute("SELECT reltoastrelid FROM pg_class WHERE oid = 'pg_temp.anchor'::regclass"
                                   ).fetchone()[0]), "regclass"
    session.execute("CREATE TYPE pg_temp.ty AS (a int)")
    return str(session.execute("SELECT 'pg_temp.ty'::regtype::oid").fetchone()[0]), "regtype"


OID_ROUTES = ["own_temporary_toast_table", "another_sessions_temporary_toast_table", "another_sessions_temporary_type"]


@pytest.mark.parametrize("route", OID_ROUTES)
def test_a_temporary_object_named_by_oid_from_pg_toast_temp_or_another_session_cannot_take_a_generated_column(
        db, connect, attacker, route):
    """A function's SQL-standard body holding a reg* constant depends on the object it names;
    '<oid>'::regclass reads digits with no lookup and no USAGE on the schema. Named: a temporary
    table's TOAST table (schema pg_toast_temp_N, which _temporary_beneath's pattern
    '^pg_temp(_[0-9]+)?$' does not match) of the same session or of another one, or a type in
    another session's temporary schema (pg_temp_N). public.gf then feeds a generated column of a
    tracked table. When the owning session discards its temporary objects, the toast table goes with
    its table (or the type goes), gf with it, and book.g. Safe: refused, or the loss recorded."""
    holder = connect("table_owner")
    oid, reg = _oid_of(holder, route)
    creator = holder if route.startswith("own") else attacker
    if not ran_or_refused(creator, [f"CREATE FUNCTION public.gf(x int) RETURNS int LANGUAGE sql IMMUTABLE"
                          f" BEGIN ATOMIC SELECT CASE WHEN '{oid}'::{reg} IS NULL THEN 0 ELSE x END; END"]):
        return
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.gf(v)) STORED)")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5)")
    if not tracked_or_refused(connect, "public.book"):
        return
    _discard_and_check(db, holder, "public.book")


def test_a_procedure_that_commits_right_after_the_link_is_still_refused(db, connect, attacker):
    """CALL of a procedure that creates, through EXECUTE, a function calling a temporary one and
    COMMITs at once (the link made and committed in one procedure, before anything else of the
    CALL can look); the function then feeds a tracked table's generated column. Safe: the CREATE
    inside the procedure is refused (PA008) or the loss is recorded."""
    session = connect("table_owner")
    session.execute("CREATE FUNCTION pg_temp.h(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 3'")
    session.execute("""CREATE PROCEDURE public.link() LANGUAGE plpgsql AS $p$
        BEGIN
            EXECUTE 'CREATE FUNCTION public.gf(x int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT pg_temp.h(x); END';
            COMMIT;
        END $p$""")
    if not ran_or_refused(session, ["CALL public.link()"]):
        return
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.gf(v)) STORED)")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5)")
    if not tracked_or_refused(connect, "public.book"):
        return
    _discard_and_check(db, session, "public.book")


# --- 3. Hostile names in the refusal --------------------------------------------------------------------


HOSTILE = ['h%s%%"q\'', 'h\nERROR:  forged line', '%', 'h" || pg_sleep(1) || "']


@pytest.mark.parametrize("name", HOSTILE, ids=["percent_quotes", "newline", "bare_percent", "concatenation"])
def test_hostile_names_in_the_refusal_message_are_data(db, connect, attacker, name):
    """A temporary function and a permanent one calling it, both with hostile names (%, quotes, a
    newline, SQL-looking text). Safe: refused with PA008 (no other error: the names are RAISE's
    arguments, not its format), and the message names both objects exactly as pg_identify_object
    spells them (the permanent one's, a missing object's, taken from a second refusal of the same
    object)."""
    session = connect("table_owner")
    q = '"' + name.replace('"', '""') + '"'
    session.execute(f"CREATE FUNCTION pg_temp.{q}(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1'")
    temp_identity = session.execute(
        "SELECT (pg_identify_object('pg_proc'::regclass, p.oid, 0)).identity FROM pg_proc p"
        " WHERE p.proname = %s AND p.pronamespace = pg_my_temp_schema()", (name,)).fetchone()[0]
    with pytest.raises(psycopg.Error) as caught:
        session.execute(f"CREATE FUNCTION public.{q}(x int) RETURNS int LANGUAGE sql IMMUTABLE"
                        f" BEGIN ATOMIC SELECT pg_temp.{q}(x); END")
    exc = caught.value
    assert exc.sqlstate == "PA008", (exc.sqlstate, exc)
    message = exc.diag.message_primary or ""
    assert temp_identity in message, (temp_identity, message)
    assert f"public.{q}(integer)" in message, message


# --- 4. Another role's DDL: its cost, whatever a table owner built ----------------------------------


@pytest.fixture
def bystander(db) -> Iterator[str]:
    """t30_bystander: a login role with no privilege beyond PUBLIC's (TEMP), CREATE on public for
    its own objects; its function calls counted. Dropped after the test."""
    db.execute("CREATE ROLE t30_bystander LOGIN")
    try:
        db.execute("ALTER ROLE t30_bystander SET track_functions = 'all'")
        db.execute("GRANT CREATE ON SCHEMA public TO t30_bystander")
        yield "t30_bystander"
    finally:
        db.execute("DROP OWNED BY t30_bystander")
        db.execute("DROP ROLE t30_bystander")


BYSTANDER_DDL = {
    "create_table": ([], "CREATE TABLE public.bt{n} (a int PRIMARY KEY, b text)"),
    "create_index": (["CREATE TABLE public.bt{n} (a int, b text)"], "CREATE INDEX ON public.bt{n} (b)"),
    "create_function": ([], "CREATE FUNCTION public.bf{n}(int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT $1 + 1; END"),
    "alter_table": (["CREATE TABLE public.bt{n} (a int, b text)"], "ALTER TABLE public.bt{n} ADD COLUMN c int DEFAULT 3"),
}


COUNTERS = ("SELECT (SELECT coalesce(sum(calls) FILTER (WHERE funcname = '_temporary_beneath'), 0)"
            "          FROM pg_stat_xact_user_functions WHERE schemaname = 'audit'),"
            "       (SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE schemaname = 'audit'),"
            "       (SELECT coalesce(sum(seq_scan), 0) + coalesce(sum(idx_scan), 0) FROM pg_stat_xact_sys_tables"
            "         WHERE relname = 'pg_depend'),"
            "       (SELECT coalesce(sum(seq_scan), 0) + coalesce(sum(idx_scan), 0) FROM pg_stat_xact_sys_tables"
            "         WHERE relname = 'pg_inherits')")


def _work(conn, setup: list[str], ddl: str, n: int) -> tuple[int, ...]:
    """Run the setup, then ddl in a transaction of its own: (calls of audit._temporary_beneath, calls
    of every audit function, scans of pg_depend, scans of pg_inherits) that ddl made, read before
    and after it in the same transaction (PostgreSQL 15's pg_stat_xact_* also hold earlier
    transactions' counts not yet flushed). The same command is run once before, on other names,
    so that no cold cache counts."""
    for c in setup:
        conn.execute(c.format(n=f"{n}w"))
        conn.execute(c.format(n=n))
    conn.execute(ddl.format(n=f"{n}w"))
    conn.autocommit = False
    with conn.transaction():
        before = conn.execute(COUNTERS).fetchone()
        conn.execute(ddl.format(n=n))
        after = conn.execute(COUNTERS).fetchone()
    conn.autocommit = True
    return tuple(int(a) - int(b) for a, b in zip(after, before, strict=True))


def _build(attacker, session, start: int, count: int) -> None:
    """What table_owner builds ALONE: composite types and domains over them, untracked tables of
    them with generated columns, columns of them added to its tracked table (ALTER TABLE of its own
    table: recorded, allowed), and temporary functions and tables kept in an open session."""
    for i in range(start, start + count):
        attacker.execute(f"CREATE TYPE public.c{i} AS (a int, b text[], d numeric)")
        attacker.execute(f"CREATE DOMAIN public.d{i} AS public.c{i}")
        attacker.execute(f"CREATE FUNCTION public.g{i}(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT $1 + {i}; END")
        attacker.execute(f"CREATE TABLE public.u{i} (id int, c public.d{i}, g int GENERATED ALWAYS AS (public.g{i}(id)) STORED)")
        attacker.execute(f"ALTER TABLE public.tr ADD COLUMN c{i} public.d{i}")
        session.execute(f"CREATE FUNCTION pg_temp.t{i}(int) RETURNS int LANGUAGE sql AS 'SELECT 1'")
        session.execute(f"CREATE TEMP TABLE tt{i} (a public.c{i})")


@pytest.mark.parametrize("command", BYSTANDER_DDL)
def test_another_roles_ordinary_ddl_does_no_work_proportional_to_what_a_table_owner_built(
        db, connect, attacker, bystander, command):
    """audit_temporary (and _on_ddl_end) run for every command of the database, of every role.
    t30_bystander (no audit role, nothing of table_owner's used) runs an ordinary CREATE TABLE,
    CREATE INDEX, CREATE FUNCTION or ALTER TABLE once after table_owner built 2 rounds of deep
    types, tables with generated columns, columns of its tracked table and temporary objects in an
    open session, and once more after 20 more rounds. Counted in the bystander's own transaction:
    calls of audit._temporary_beneath, of every audit function, and scans of pg_depend and of
    pg_inherits. Safe: the same each time."""
    attacker.execute("CREATE TABLE public.tr (id int PRIMARY KEY)")
    assert tracked_or_refused(connect, "public.tr")
    session = connect("table_owner")
    _build(attacker, session, 0, 2)
    other = connect(bystander)
    setup, ddl = BYSTANDER_DDL[command]
    first = _work(other, setup, ddl, 1)
    _build(attacker, session, 2, 20)
    second = _work(other, setup, ddl, 2)
    other.close()
    session.execute("DISCARD TEMP")
    assert first[0] <= 1, f"{ddl!r} called _temporary_beneath {first[0]} times"
    assert second == first, (f"{bystander}'s {ddl!r} did more work after table_owner built more"
                             f" (_temporary_beneath, audit calls, pg_depend scans, pg_inherits scans): {first} -> {second}")


# --- 5. Collateral: a rule that goes alone ------------------------------------------------------------


def test_collateral_a_do_also_rule_on_a_permanent_table_writing_into_a_temporary_table_is_accepted(db, connect, attacker):
    """A session's staging pattern: CREATE RULE ... AS ON INSERT TO public.p DO ALSO INSERT INTO
    pg_temp.stage (a non-SELECT rule on a permanent, untracked table, writing into the session's
    temporary table). When the session ends the rule goes with the temporary table, ALONE, as a
    trigger calling a session's function does (which audit_temporary leaves alone: "each goes
    alone"): no column, no table, nothing else depends on a non-SELECT rule. COLLATERAL, not a
    bypass: safe means the legitimate command is accepted, and nothing of p is lost."""
    session = connect("table_owner")
    session.execute("CREATE TEMP TABLE stage (a int)")
    session.execute("CREATE TABLE public.p (a int)")
    try:
        session.execute("CREATE RULE p_stage AS ON INSERT TO public.p DO ALSO INSERT INTO pg_temp.stage VALUES (NEW.a)")
    except psycopg.Error as exc:
        pytest.fail(f"a rule that would go alone was refused: {exc.sqlstate} {exc}")
    session.execute("INSERT INTO public.p VALUES (1)")
    session.execute("DISCARD TEMP")
    assert columns(db, "public.p") == ["a"]
