"""A twenty-ninth attacker's trial, on the mends of 1ad9278 (sql/60_capture.sql,
sql/65_schema_changes.sql): _temporary_beneath walks PostgreSQL's record of dependencies DOWN from
any object (plus a composite's relation, a table's generated columns' expressions, a view's rule),
not entering built-in objects, and calls an object temporary when pg_identify_object puts it in a
schema named pg_temp_N; _on_ddl_end asks it of every pg_proc, pg_rewrite and pg_type object of a
watched command and then checks every covered table whole; ALTER DOMAIN, CREATE AGGREGATE and
CREATE RULE are watched; aclitem is refused like reg*; _on_sql_drop records a partition's own
cascaded column drops again.

The routes tried here: an object that is not in any schema but goes with a temporary one (an
EXTENSION created in the session's temporary schema: its members, made so by ALTER EXTENSION ...
ADD or ALTER FUNCTION ... DEPENDS ON EXTENSION, go with it; pg_identify_object gives an extension
no schema, so the walk never calls it temporary); commands _on_ddl_end does not watch that wire
something temporary beneath a covered column (ALTER TEXT SEARCH CONFIGURATION ... ALTER MAPPING to
a temporary dictionary, the configuration a generated column's to_tsvector names); WATCHED commands
whose object is a relation (pg_class), which _on_ddl_end never walks for temporary objects (CREATE
OR REPLACE VIEW of a view a generated column's function reads; ALTER TABLE ... OF a temporary
composite type, for a table such a function reads); what another role's DDL of its OWN temporary
objects costs and whether it can fail because of a table owner's covered tables (every CREATE
FUNCTION / AGGREGATE / RULE of a session's temporary object checks every covered table whole); and
controls: ALTER DOMAIN and CREATE OR REPLACE RULE reaching a generated column through a function's
body, rules on a covered table (a soft delete, a conversion to a view), catalogue row types and
ranges that would print names, a hostile view name in a CREATE RULE record, a leaf partition's own
generated column two levels down, another role's non-temporary ALTER DOMAIN / CREATE RULE /
CREATE AGGREGATE. Each test asserts the SAFE outcome: it passes when the product holds and fails
when the attack breaks it.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database, so it may create trusted extensions, and on public; TEMP, as every role
has) unless it says otherwise; app_maintainer (a member of table_owner) tracks the tables. The
temporary schema is dropped with DISCARD TEMP (no event trigger fires on it, as at a session's end),
in a second session of table_owner's. The cost and refusal attacks on another role's DDL use
t29_bystander, a login role with no privilege beyond PUBLIC's (and CREATE on public for its own
objects), track_functions set by the superuser only to count the work.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from schema_changes import (
    both_verifiers_ok,
    columns,
    events_naming,
    gone_events,
    hidden,
    names_table,
    schema_events,
    tracked_or_refused,
)

from pgaudit_py import enable_tracking


def _exists(db, table: str) -> bool:
    return db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def _temp_schema(session) -> str:
    """The session's temporary schema's name (made to exist by a temporary table)."""
    session.execute("CREATE TEMP TABLE IF NOT EXISTS anchor (x int)")
    return session.execute("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()").fetchone()[0]


def _temporary_extension(session) -> bool:
    """CREATE EXTENSION tcn in the session's temporary schema: True when made, False when refused
    (PA008: since trial 29, nothing permanent may have something temporary beneath it)."""
    nsp = _temp_schema(session)
    try:
        session.execute(f'CREATE EXTENSION tcn SCHEMA "{nsp}"')
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return False
    return True


def _attack_then_discard(db, session, table: str, attack: list[str], count_after_attack: bool = False) -> None:
    """Run the attack in session (table_owner's second session), then DISCARD TEMP. Safe: the attack
    is refused (PA008), or the table keeps every column, or what it lost is recorded naming it
    (count_after_attack: a record the attack's own watched command writes about something else,
    a domain's new default, does not count as one of the loss)."""
    before = columns(db, table)
    n = len(gone_events(db))
    try:
        for command in attack:
            session.execute(command)
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", (command, exc.sqlstate, exc)
        return
    if count_after_attack:
        n = len(gone_events(db))
    session.execute("DISCARD TEMP")
    if not _exists(db, table):
        assert events_naming(db, table, n), (
            f"{table} (tracked) went with DISCARD TEMP, with every row, nothing recorded or refused")
        return
    left = columns(db, table)
    if left != before:
        assert events_naming(db, table, n), (
            f"{table} lost columns with DISCARD TEMP ({before} -> {left}), nothing recorded or refused")


TEMP_H = "CREATE FUNCTION pg_temp.h(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 3'"


# --- 1. An extension in the session's temporary schema ------------------------------------------------


def test_a_tracked_table_made_a_member_of_an_extension_in_the_temporary_schema_is_not_dropped_unrecorded(
        db, connect, attacker):
    """CREATE EXTENSION tcn SCHEMA pg_temp_N (tcn is trusted, so table_owner, with CREATE on the
    database, may; its script names no function unqualified, so it installs into a temporary schema)
    gives an extension owned by table_owner that depends on the temporary schema: when the session
    ends, or DISCARD TEMP, PostgreSQL drops it with CASCADE, and every member with it. ALTER
    EXTENSION tcn ADD TABLE public.book (tag ALTER EXTENSION, not watched; needs only ownership of
    both) makes the TRACKED table a member. DISCARD TEMP then drops public.book with every row: no
    event trigger fires, audit.tracked_table_dropped is never written, audit.tracked_tables keeps a
    row for an oid that no longer exists. Safe: refused, or the table stays, or its loss recorded."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int)")
    attacker.execute("INSERT INTO public.book VALUES (1, 5), (2, 6)")
    assert tracked_or_refused(connect, "public.book")
    session = connect("table_owner")
    if not _temporary_extension(session):
        return
    _attack_then_discard(db, session, "public.book", [hidden("ALTER EXTENSION tcn ADD TABLE public.book")])


TEMP_EXTENSION_ROUTES = {
    # the table a member BEFORE it is tracked: enable_tracking's _tree_problem must see it
    "tracked_after_it_became_a_member": (
        ["CREATE TABLE public.book (id int PRIMARY KEY, v int)", "INSERT INTO public.book VALUES (1, 5)"],
        ["ALTER EXTENSION tcn ADD TABLE public.book"], False, []),
    # g GENERATED (public.gf(v)); gf made to go with the extension (tag ALTER FUNCTION)
    "generated_columns_function_depends_on_extension": (
        ["CREATE FUNCTION public.gf(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2'",
         "CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.gf(v)) STORED)",
         "INSERT INTO public.book (id, v) VALUES (1, 5)"],
        [], False, ["ALTER FUNCTION public.gf(int) DEPENDS ON EXTENSION tcn"]),
    # d of domain public.dd, made a member; then a WATCHED ALTER DOMAIN, whose _temporary_beneath
    # walk from the domain reaches the extension and its temporary schema
    "domain_member_then_a_watched_alter_domain": (
        ["CREATE DOMAIN public.dd AS int",
         "CREATE TABLE public.book (id int PRIMARY KEY, d public.dd)",
         "INSERT INTO public.book VALUES (1, 7)"],
        [], True, ["ALTER EXTENSION tcn ADD DOMAIN public.dd", "ALTER DOMAIN public.dd SET DEFAULT 1"]),
}


@pytest.mark.parametrize("route", TEMP_EXTENSION_ROUTES)
def test_a_covered_column_tied_to_an_extension_in_the_temporary_schema_is_refused_or_its_loss_recorded(
        db, connect, attacker, route):
    """The same extension, reached the ways _temporary_beneath would have to see: pg_identify_object
    gives an extension (and a schema) no schema of its own, so the walk's test `o.schema ~
    '^pg_temp_[0-9]+$'` never matches the extension, nor the temporary schema beneath it. (1) the
    table is made a member first, then tracked: enable_tracking (_tree_problem, _temporary_dependency)
    must refuse it; (2) ALTER FUNCTION public.gf(int) DEPENDS ON EXTENSION tcn, gf a generated
    column's function; (3) ALTER EXTENSION tcn ADD DOMAIN public.dd, then ALTER DOMAIN (watched: its
    walk goes dd -> extension -> pg_temp_N and finds nothing). DISCARD TEMP takes the table or the
    column. In (3) the ALTER DOMAIN's own audit.tracked_type_altered (a new default, recorded as
    any ALTER DOMAIN is) says nothing of the column's loss: only records after the attack count.
    Needs: CREATE on the database (trusted extension); ownership of the objects."""
    setup, before_tracking, count_after_attack, attack = TEMP_EXTENSION_ROUTES[route]
    for command in setup:
        attacker.execute(command)
    session = connect("table_owner")
    if not _temporary_extension(session):
        return
    for command in before_tracking:
        session.execute(command)
    if not tracked_or_refused(connect, "public.book"):
        return
    _attack_then_discard(db, session, "public.book", attack, count_after_attack)


# --- 2. A command _on_ddl_end does not watch, reaching something temporary ---------------------------


def test_alter_text_search_configuration_mapping_to_a_temporary_dictionary_cannot_take_a_generated_column(
        db, connect, attacker):
    """g tsvector GENERATED ALWAYS AS (to_tsvector('public.cfg'::regconfig, v)) STORED: the
    generated expression depends on the text search configuration public.cfg (a regconfig
    constant). ALTER TEXT SEARCH CONFIGURATION public.cfg ALTER MAPPING FOR asciiword WITH
    pg_temp.d (tag ALTER TEXT SEARCH CONFIGURATION, not watched) makes the configuration depend on
    a temporary dictionary (CREATE TEXT SEARCH DICTIONARY pg_temp.d (TEMPLATE = simple): no
    privilege needed). DISCARD TEMP drops the dictionary with CASCADE: the configuration, the
    generated expression, and g with every row's value. (_temporary_dependency would see it; nothing
    asks.) Needs: ownership of the configuration (table_owner made it by COPY = simple)."""
    attacker.execute("CREATE TEXT SEARCH CONFIGURATION public.cfg (COPY = simple)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v text,"
                     " g tsvector GENERATED ALWAYS AS (to_tsvector('public.cfg'::regconfig, v)) STORED)")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 'hello world')")
    assert tracked_or_refused(connect, "public.book")
    session = connect("table_owner")
    session.execute("CREATE TEXT SEARCH DICTIONARY pg_temp.d (TEMPLATE = simple)")
    _attack_then_discard(db, session, "public.book",
                         [hidden("ALTER TEXT SEARCH CONFIGURATION public.cfg ALTER MAPPING FOR asciiword WITH pg_temp.d")])


# --- 3. A watched command on a relation: _on_ddl_end asks _temporary_beneath of pg_proc, pg_rewrite
#        and pg_type objects only ------------------------------------------------------------------


def test_create_or_replace_view_of_a_view_a_generated_columns_function_reads_cannot_take_the_column(
        db, connect, attacker):
    """public.gf's SQL-standard body reads public.v (SELECT $1 + a FROM public.v): gf depends on the
    view. g GENERATED ALWAYS AS (public.gf(x)). CREATE OR REPLACE VIEW public.v AS SELECT
    pg_temp.h(1) AS a (watched: tag CREATE VIEW) replaces the view's rule to call a temporary
    function; the view stays permanent (PostgreSQL makes a view temporary only for a temporary
    relation). The command's object is the view (pg_class), so _on_ddl_end never asks
    _temporary_beneath; the view's row type is no covered column's, so nothing is recorded or
    checked. DISCARD TEMP drops h: the rule, the view, gf, and book.g with every value. (Trial 28's
    create_or_replace_view had a covered column OF the view's row type, recorded as such.)"""
    attacker.execute("CREATE VIEW public.v AS SELECT 1 AS a")
    attacker.execute("CREATE FUNCTION public.gf(int) RETURNS int LANGUAGE sql IMMUTABLE"
                     " BEGIN ATOMIC SELECT $1 + a FROM public.v; END")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, x int, g int GENERATED ALWAYS AS (public.gf(x)) STORED)")
    attacker.execute("INSERT INTO public.book (id, x) VALUES (1, 5)")
    assert tracked_or_refused(connect, "public.book")
    session = connect("table_owner")
    session.execute(TEMP_H)
    _attack_then_discard(db, session, "public.book",
                         ["CREATE OR REPLACE VIEW public.v AS SELECT pg_temp.h(1) AS a"])


T2_ROUTES = {
    # t2 typed by a temporary composite type: the whole table goes with it
    "alter_table_of_a_temporary_composite_type": (
        "SELECT $1 + count(*)::int FROM public.t2", "CREATE TYPE pg_temp.ct AS (a int)",
        "ALTER TABLE public.t2 OF pg_temp.ct"),
}


@pytest.mark.parametrize("route", T2_ROUTES)
def test_alter_table_of_a_table_a_generated_columns_function_reads_cannot_tie_it_to_a_temporary_type(
        db, connect, attacker, route):
    """public.gf's body reads the untracked table public.t2 (counts its rows): gf depends
    on t2. A watched ALTER TABLE of t2 ties it to a temporary type: ALTER TABLE public.t2 OF
    pg_temp.ct (PostgreSQL lets a permanent table be typed by a temporary composite type; ALTER
    COLUMN a TYPE of a temporary domain it refuses itself, 0A000, for a column a function's body
    reads). The command's object is t2, a relation (pg_class) whose row type no covered column is:
    nothing is recorded, and _on_ddl_end never asks _temporary_beneath. DISCARD TEMP drops the type
    with CASCADE: t2 itself, gf, and book.g with every value."""
    body, temporary, attack = T2_ROUTES[route]
    attacker.execute("CREATE TABLE public.t2 (a int)")
    attacker.execute(f"CREATE FUNCTION public.gf(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC {body}; END")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, x int, g int GENERATED ALWAYS AS (public.gf(x)) STORED)")
    attacker.execute("INSERT INTO public.book (id, x) VALUES (1, 5)")
    assert tracked_or_refused(connect, "public.book")
    session = connect("table_owner")
    session.execute(temporary)
    _attack_then_discard(db, session, "public.book", [attack])


CONTROLS = {
    # the generated column's function casts to the domain: gf depends on it; ALTER DOMAIN is a pg_type
    "alter_domain_of_a_domain_the_function_casts_to": (
        ["CREATE DOMAIN public.dd AS int",
         "CREATE FUNCTION public.gf(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT ($1::public.dd)::int * 2; END"],
        "ALTER DOMAIN public.dd SET DEFAULT pg_temp.h(1)"),
    # the same view as above, its query replaced by CREATE OR REPLACE RULE (a pg_rewrite)
    "create_or_replace_rule_of_a_view_the_function_reads": (
        ["CREATE VIEW public.v AS SELECT 1 AS a",
         "CREATE FUNCTION public.gf(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT $1 + a FROM public.v; END"],
        'CREATE OR REPLACE RULE "_RETURN" AS ON SELECT TO public.v DO INSTEAD SELECT pg_temp.h(1) AS a'),
}


@pytest.mark.parametrize("route", CONTROLS)
def test_control_the_same_function_body_routes_through_a_pg_type_or_pg_rewrite_object_are_refused(
        db, connect, attacker, route):
    """Controls beside section 3: a generated column's function reaching a domain (a cast in its
    body) or a view's query, wired to a temporary function by ALTER DOMAIN or CREATE OR REPLACE RULE,
    whose objects (pg_type, pg_rewrite) _on_ddl_end does walk: refused, or nothing is lost."""
    setup, attack = CONTROLS[route]
    for command in setup:
        attacker.execute(command)
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, x int, g int GENERATED ALWAYS AS (public.gf(x)) STORED)")
    attacker.execute("INSERT INTO public.book (id, x) VALUES (1, 5)")
    assert tracked_or_refused(connect, "public.book")
    session = connect("table_owner")
    session.execute(TEMP_H)
    _attack_then_discard(db, session, "public.book", [attack])


# --- 4. Another role's DDL of its own temporary objects --------------------------------------------------


@pytest.fixture
def bystander(db, connect) -> Iterator[str]:
    """t29_bystander: a login role with no privilege beyond PUBLIC's (TEMP), CREATE on public for
    its own objects; its function calls counted. Dropped after the test."""
    db.execute("CREATE ROLE t29_bystander LOGIN")
    try:
        db.execute("ALTER ROLE t29_bystander SET track_functions = 'all'")
        db.execute("GRANT CREATE ON SCHEMA public TO t29_bystander")
        yield "t29_bystander"
    finally:
        db.execute("DROP OWNED BY t29_bystander")
        db.execute("DROP ROLE t29_bystander")


BYSTANDER_TEMP = {
    "create_temporary_function": ([], "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
    "create_temporary_aggregate": ([], "CREATE AGGREGATE pg_temp.total(int) (SFUNC = int4pl, STYPE = int)"),
    "create_rule_on_a_temporary_view": (["CREATE TEMP VIEW tv AS SELECT 1 AS a"],
                                        "CREATE RULE tv_ins AS ON INSERT TO pg_temp.tv DO INSTEAD NOTHING"),
}


def _walks(conn, command: str) -> int:
    """Run command in a transaction of its own; how often it called audit._temporary_dependency
    (one walk of a covered table's whole dependency graph each)."""
    with conn.transaction():
        conn.execute(command)
        return int(conn.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                                " WHERE schemaname = 'audit' AND funcname = '_temporary_dependency'").fetchone()[0])


def _close(conn) -> None:
    conn.execute("DISCARD TEMP")
    conn.close()


@pytest.mark.parametrize("command", BYSTANDER_TEMP)
def test_another_roles_own_temporary_function_aggregate_or_rule_walks_no_covered_table(
        db, connect, attacker, bystander, command):
    """_on_ddl_end checks every covered table whole (_temporary_dependency of each) when an object of
    the command has something temporary beneath it: the seed of _temporary_beneath's walk is the
    object itself, so an object IN a temporary schema always counts. A role that owns nothing
    tracked creating a temporary function, a temporary aggregate, or a rule on its temporary view
    (a session's helpers, an updatable temporary view: common) makes the event trigger walk the
    dependency graph of every covered table of every owner, as large as their owners make them.
    Nothing covered can depend on an object created in a temporary schema that was not already
    temporary-dependent. Counted by PostgreSQL's function statistics: safe when 0."""
    for i in range(4):
        attacker.execute(f"CREATE TABLE public.tr{i} (id int PRIMARY KEY, v int)")
        enable_tracking(connect("app_maintainer"), f"public.tr{i}")
    other = connect(bystander, autocommit=True)
    setup, ddl = BYSTANDER_TEMP[command]
    for c in setup:
        other.execute(c)
    other.autocommit = False
    walks = _walks(other, ddl)
    other.autocommit = True
    _close(other)
    assert walks == 0, f"{bystander}'s {ddl!r} walked {walks} covered tables"


@pytest.mark.parametrize("command", BYSTANDER_TEMP)
def test_a_table_owners_covered_table_cannot_make_another_roles_temporary_objects_fail(
        db, connect, attacker, bystander, command):
    """The same whole check, turned into a refusal: table_owner wires its covered table to a
    temporary text search dictionary of its own session (section 2's unwatched ALTER TEXT SEARCH
    CONFIGURATION) and keeps the session open. Every covered table _temporary_dependency finds is
    'touched', and _refuse_switched_off raises PA008 for it: any other role's CREATE FUNCTION
    pg_temp.f, CREATE AGGREGATE pg_temp.total or CREATE RULE on its temporary view now fails, naming
    table_owner's table, for as long as table_owner likes. Safe: the bystander's command succeeds."""
    attacker.execute("CREATE TEXT SEARCH CONFIGURATION public.cfg (COPY = simple)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v text,"
                     " g tsvector GENERATED ALWAYS AS (to_tsvector('public.cfg'::regconfig, v)) STORED)")
    enable_tracking(connect("app_maintainer"), "public.book")
    owner_session = connect("table_owner")
    owner_session.execute("CREATE TEXT SEARCH DICTIONARY pg_temp.d (TEMPLATE = simple)")
    try:
        owner_session.execute("ALTER TEXT SEARCH CONFIGURATION public.cfg ALTER MAPPING FOR asciiword WITH pg_temp.d")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    other = connect(bystander)
    setup, ddl = BYSTANDER_TEMP[command]
    try:
        for c in setup:
            other.execute(c)
        try:
            other.execute(ddl)
        except psycopg.Error as exc:
            pytest.fail(f"{bystander}'s {ddl!r} failed because of table_owner's covered table: {exc.sqlstate} {exc}")
    finally:
        _close(other)
        owner_session.execute("DISCARD TEMP")


BYSTANDER_PLAIN = {
    "alter_domain": (["CREATE DOMAIN public.bd AS int"], "ALTER DOMAIN public.bd SET DEFAULT 3"),
    "create_aggregate": ([], "CREATE AGGREGATE public.btotal(int) (SFUNC = int4pl, STYPE = int)"),
    "create_rule": (["CREATE TABLE public.bt (a int)", "CREATE VIEW public.bv AS SELECT a FROM public.bt"],
                    "CREATE RULE bv_ins AS ON INSERT TO public.bv DO INSTEAD INSERT INTO public.bt VALUES (NEW.a)"),
}


@pytest.mark.parametrize("command", BYSTANDER_PLAIN)
def test_another_roles_plain_alter_domain_create_aggregate_or_rule_walks_no_covered_table(
        db, connect, attacker, bystander, command):
    """The newly watched tags, for a role that owns nothing tracked, on permanent objects of its
    own that nothing covered uses: no covered table's graph is walked (_temporary_dependency,
    _column_types), nothing is recorded, and the command succeeds."""
    attacker.execute("CREATE TYPE public.deep AS (a int, b int[], c text)")
    for i in range(3):
        attacker.execute(f"CREATE TABLE public.tr{i} (id int PRIMARY KEY, d public.deep)")
        enable_tracking(connect("app_maintainer"), f"public.tr{i}")
    n = len(schema_events(db))
    other = connect(bystander)
    setup, ddl = BYSTANDER_PLAIN[command]
    for c in setup:
        other.execute(c)
    other.autocommit = False
    with other.transaction():
        other.execute(ddl)
        walks = int(other.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions"
                                  " WHERE schemaname = 'audit' AND funcname IN ('_temporary_dependency', '_column_types')"
                                  ).fetchone()[0])
    other.close()
    assert walks == 0, f"{ddl!r} walked covered tables {walks} times"
    assert schema_events(db)[n:] == []


# --- 5. Rules on a covered table ----------------------------------------------------------------------


def test_a_do_instead_rule_on_a_covered_table_leaves_no_row_change_uncaptured(db, connect, attacker):
    """CREATE RULE (now watched) on the covered table itself: ON DELETE DO INSTEAD UPDATE (a soft
    delete) and ON UPDATE DO ALSO INSERT INTO a side table. Every row the table's statements then
    change is captured: the DELETE becomes an UPDATE of the row, captured as one; the stored rows
    read as the last images of their keys."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int, gone boolean DEFAULT false)")
    attacker.execute("CREATE TABLE public.side (id int, v int)")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5), (2, 6)")
    enable_tracking(connect("app_maintainer"), "public.book")
    try:
        attacker.execute("CREATE RULE soft AS ON DELETE TO public.book DO INSTEAD"
                         " UPDATE public.book SET gone = true WHERE id = OLD.id")
        attacker.execute("CREATE RULE also AS ON UPDATE TO public.book DO ALSO INSERT INTO public.side VALUES (NEW.id, NEW.v)")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    attacker.execute("DELETE FROM public.book WHERE id = 1")
    attacker.execute("UPDATE public.book SET v = 9 WHERE id = 2")
    rows = {r[0]: r[1] for r in db.execute("SELECT id::text, to_jsonb(b) FROM public.book b")}
    last = {r[0]: r[1] for r in db.execute(
        "SELECT DISTINCT ON (target_id) target_id, row_after FROM audit.events WHERE kind LIKE 'public.book.%'"
        " ORDER BY target_id, occurred_at DESC, intake_id DESC")}
    assert last == rows, (last, rows)


def test_create_rule_return_cannot_turn_an_empty_covered_table_into_a_view(db, connect, attacker):
    """PostgreSQL 15 still turns an empty table into a view when a "_RETURN" ON SELECT rule is
    created for it; its rows (none) would go, and every later write would be the view's, not
    captured. On a covered table (it has the capture triggers, and a primary key index) it must be
    refused, by PostgreSQL or PA008; the table stays a table with its capture whole."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.book")
    with pytest.raises(psycopg.Error):
        attacker.execute('CREATE RULE "_RETURN" AS ON SELECT TO public.book DO INSTEAD SELECT 1 AS id, 2 AS v')
    assert db.execute("SELECT relkind FROM pg_class WHERE oid = 'public.book'::regclass").fetchone()[0] == "r"
    assert db.execute("SELECT audit._capture_problem('public.book'::regclass)").fetchone()[0] is None


HOSTILE = 'v"; DROP TABLE public.book; --\u202e\n%s'


def test_a_rule_replacing_a_hostile_named_views_query_is_recorded_as_data(db, connect, attacker):
    """CREATE OR REPLACE RULE "_RETURN" of a view whose name holds quotes, a statement, U+202E, a
    newline and a format directive, its row type a covered column's: the name is data, never code
    (the checks every command passes read it as an oid); the table stays, and both verifiers pass."""
    quoted = '"' + HOSTILE.replace('"', '""') + '"'
    attacker.execute(f"CREATE VIEW public.{quoted} AS SELECT 1 AS a")
    attacker.execute(f"CREATE TABLE public.book (id int PRIMARY KEY, c public.{quoted})")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(1))")
    enable_tracking(connect("app_maintainer"), "public.book")
    n = len(schema_events(db))
    attacker.execute(f'CREATE OR REPLACE RULE "_RETURN" AS ON SELECT TO public.{quoted} DO INSTEAD SELECT 2 AS a')
    # A view's query changes no stored value of book (its column holds values of the row type), and
    # CREATE RULE is not recorded since trial 29's mend; the name reached the checks as an oid.
    assert [e for e in schema_events(db)[n:] if names_table(e, "public.book")] == []
    assert _exists(db, "public.book")
    both_verifiers_ok(db)


# --- 6. Types that print names, as catalogue row types and ranges --------------------------------------

NAME_PRINTING = {
    "pg_stats_row_type": "pg_catalog.pg_stats",           # anyarray: prints with its elements' type
    "pg_proc_row_type": "pg_catalog.pg_proc",             # regproc, aclitem[]
    "pg_type_row_type": "pg_catalog.pg_type",             # regproc
    "range_over_regclass": "public.rr",
    "multirange_over_regclass": "public.rr_multi",
    "domain_over_aclitem_array": "public.acls",
}


@pytest.mark.parametrize("route", NAME_PRINTING)
def test_a_catalogue_row_type_or_a_range_that_prints_object_names_cannot_be_tracked(db, connect, attacker, route):
    """Column types whose values print objects' current names (a rename would change every stored
    row with no row event): catalogue row types holding reg*, aclitem or anyarray, a range (and its
    multirange) over regclass, a domain over aclitem[]. The table cannot be made (PostgreSQL), or
    tracking it is refused (PA008)."""
    attacker.execute("CREATE TYPE public.rr AS RANGE (subtype = regclass, multirange_type_name = public.rr_multi)")
    attacker.execute("CREATE DOMAIN public.acls AS aclitem[]")
    try:
        attacker.execute(f"CREATE TABLE public.book (id int PRIMARY KEY, c {NAME_PRINTING[route]})")
    except psycopg.Error:
        return
    assert not tracked_or_refused(connect, "public.book")


# --- 7. One command, one record, two levels down -----------------------------------------------------


def test_a_leaf_partitions_own_generated_column_two_levels_down_dropped_by_the_roots_cascade_is_recorded(
        db, connect, attacker):
    """public.book (id, x, g) partitioned; book_1 partitioned again; its leaf book_1_1 has g
    GENERATED ALWAYS AS (x * 2) STORED (attached: PostgreSQL 15 allows a partition's column to be
    generated where its parent's is plain). ALTER TABLE public.book DROP COLUMN x CASCADE drops x at
    all three levels and, by its dependency, book_1_1.g with every value, while book.g and book_1.g
    stay. Safe: refused, or a record names book_1_1 (or shows the columns it has)."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, x int, g int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1_1 (id int PRIMARY KEY, x int, g int GENERATED ALWAYS AS (x * 2) STORED)")
    attacker.execute("ALTER TABLE public.book_1 ATTACH PARTITION public.book_1_1 FOR VALUES FROM (0) TO (50)")
    attacker.execute("INSERT INTO public.book (id, x) VALUES (1, 5)")
    if not tracked_or_refused(connect, "public.book"):
        return
    n = len(schema_events(db))
    try:
        attacker.execute("ALTER TABLE public.book DROP COLUMN x CASCADE")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    left = columns(db, "public.book_1_1")
    if "g" in left:
        return
    new = schema_events(db)[n:]
    shown = [[c[1] for c in e[2].get("columns", [])] for e in new if e[0] == "audit.tracked_table_ddl"]
    assert any(names_table(e, "public.book_1_1") for e in new) or left in shown, (
        f"book_1_1.g went with every value (now {left}); the records show {shown}: {new}")
