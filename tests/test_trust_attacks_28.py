"""A twenty-eighth attacker's trial, on the mends of 33ae857 (sql/60_capture.sql,
sql/65_schema_changes.sql): _on_ddl_end no longer leaves at once for a CREATE FUNCTION whose
function depends DIRECTLY on an object in a temporary schema (_depends_on_temporary), and then
checks every covered table whole with _temporary_dependency, which now follows a view's query (its
pg_rewrite rule) too; a column of any reg* type, at any depth, is refused (PA008); _on_sql_drop
matches a dropped cast's address under either quote_all_identifiers spelling and walks covered types
only for a cast to json; _generate_capture leaves an identical capture function alone; and (ca28cc0)
_on_sql_drop leaves to _on_ddl_end the non-original dropped columns of a relation that has an
original dropped column in the same watched command.

The routes tried here: a temporary dependency made by a command _on_ddl_end does not watch (ALTER
DOMAIN ... SET DEFAULT of a domain a covered column is, to a temporary function or to nextval of a
temporary sequence; CREATE OR REPLACE AGGREGATE with a temporary state function, reached by a view
whose row type a covered column is or by a generated column's function; CREATE OR REPLACE RULE
"_RETURN" of such a view); a chain two steps long whose far end is made temporary-dependent FIRST
(its CREATE FUNCTION reaches no covered table yet, so the whole check finds nothing) and then wired
in by replacing a function nothing covered depends on directly (the early exit); temporary
dependents that take only themselves (a column default, a domain CHECK, a policy, extended
statistics, a trigger) as controls; ALTER FUNCTION ... SET SCHEMA pg_temp; a view replaced, or a
composite altered, to reach something temporary (watched: controls); aclitem, a type the reg*
refusal does not name that prints ROLE NAMES (a role renamed or dropped changes every stored row);
reg* values hidden in a view's row type and beneath a range; a cast to json dropped under odd
schema names, a search_path and quote_all_identifiers; who may tamper with a capture function at all;
ALTER TABLE ... DROP COLUMN ... CASCADE of a tracked partitioned table whose partition has its own
generated column over the dropped one (PostgreSQL 15 lets a partition's column be generated where
the parent's is not); ALTER TABLE of an untracked table whose row type a covered column is. Each
test asserts the SAFE outcome: it passes when the product holds and fails when the attack breaks it.

Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and on public; TEMP, as every role has) unless it says otherwise;
app_maintainer (a member of table_owner) tracks the tables. The temporary schema is dropped with
DISCARD TEMP (no event trigger fires on it, as at a session's end), in a second session of
table_owner's. Where a superuser acts (renaming or dropping a role; dropping an extension's cast),
the test says so.
"""

from __future__ import annotations

import psycopg
import pytest
from schema_changes import both_verifiers_ok, columns, hidden, names_table, schema_events, tracked_or_refused

from pgaudit_py import enable_tracking


def _image_now(db, table: str, key: int) -> dict:
    """What a row of the table reads as now, imaged the way the sandbox images it."""
    return db.execute(f"SELECT (audit._row_images(ARRAY[x]))[1] FROM {table} x WHERE id = %s", (key,)).fetchone()[0]


def _events_naming(db, table: str, since: int) -> list:
    events = schema_events(db)[since:]
    return [e for e in events if names_table(e, table)]


def _temporary_end_takes_nothing_unrecorded(db, connect, setup: list[str], table: str, column: str,
                                            temporaries: list[str], attack: list[str]) -> None:
    """The shape of every route of section 1: setup as table_owner, tracked; a second session of
    table_owner's makes its temporary objects and runs the attack; DISCARD TEMP. The attack must be
    refused (PA008), or the column must stay, or its loss must be recorded naming the table."""
    owner = connect("table_owner")
    for command in setup:
        owner.execute(command)
    if not tracked_or_refused(connect, table):
        return
    before = columns(db, table)
    assert column in before
    session = connect("table_owner")
    for command in temporaries:
        session.execute(command)
    n = len(schema_events(db))
    try:
        for command in attack:
            session.execute(command)
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", (command, exc.sqlstate, exc)
        return
    session.execute("DISCARD TEMP")
    left = columns(db, table)
    if left == before:
        return
    assert _events_naming(db, table, n), (
        f"{table}.{column} went with DISCARD TEMP (columns {before} -> {left}), nothing recorded or refused")


# --- 1. A temporary dependency made by a command _on_ddl_end does not watch --------------------------

TEMP_H = "CREATE FUNCTION pg_temp.h(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 3'"


def test_alter_domain_set_default_to_a_temporary_function_cannot_hand_a_covered_column_to_discard_temp(
        db, connect, attacker):
    """A domain's default is part of the domain: PostgreSQL records that the domain (pg_type)
    depends on every function its default calls. ALTER DOMAIN public.dd SET DEFAULT pg_temp.h(1)
    (tag ALTER DOMAIN: not among _ddl_end_tags, so _on_ddl_end never runs) makes the domain of a
    covered column depend on a temporary function. DISCARD TEMP drops pg_temp.h with CASCADE: the
    domain, and the covered column of that type with every row's value, go with no event trigger.
    (Trial 27's domain_default_direct reached the same edge by CREATE OR REPLACE FUNCTION, which is
    watched; _tree_problem would see this one too, had anything asked it.) The ALTER DOMAIN is run
    through a DO block, so the query string names nothing. Needs: ownership of the domain; TEMP."""
    _temporary_end_takes_nothing_unrecorded(
        db, connect,
        ["CREATE DOMAIN public.dd AS int",
         "CREATE TABLE public.book (id int PRIMARY KEY, d public.dd)",
         "INSERT INTO public.book VALUES (1, 7)"],
        "public.book", "d", [TEMP_H],
        [hidden("ALTER DOMAIN public.dd SET DEFAULT pg_temp.h(1)")])


def test_alter_domain_set_default_to_nextval_of_a_temporary_sequence_cannot_drop_a_covered_column(
        db, connect, attacker):
    """The same edge through a temporary object of another kind: a temporary SEQUENCE.
    ALTER DOMAIN public.dd SET DEFAULT nextval('pg_temp.s') records the domain's dependency on the
    sequence (the regclass constant); a column default that calls it would take only the default,
    a domain's takes the domain and every covered column of it. Needs: ownership of the domain."""
    _temporary_end_takes_nothing_unrecorded(
        db, connect,
        ["CREATE DOMAIN public.dd AS bigint",
         "CREATE TABLE public.book (id int PRIMARY KEY, d public.dd)",
         "INSERT INTO public.book VALUES (1, 7)"],
        "public.book", "d", ["CREATE SEQUENCE pg_temp.s"],
        ["ALTER DOMAIN public.dd SET DEFAULT nextval('pg_temp.s')"])


AGGREGATE = ["CREATE FUNCTION public.sf(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT coalesce($1, 0) + $2'",
             "CREATE AGGREGATE public.agg(int) (SFUNC = public.sf, STYPE = int)"]
AGGREGATE_ROUTES = {
    # book.c is of the row type of a view whose query calls the aggregate
    "view_whose_row_type_a_column_is": (
        AGGREGATE + ["CREATE VIEW public.v AS SELECT public.agg(x) AS a FROM (VALUES (1)) s(x)",
                     "CREATE TABLE public.book (id int PRIMARY KEY, c public.v)",
                     "INSERT INTO public.book VALUES (1, ROW(5))"],
        "c"),
    # book.g GENERATED by a function whose SQL-standard body calls the aggregate
    "generated_columns_function": (
        AGGREGATE + ["CREATE FUNCTION public.gf(int) RETURNS int LANGUAGE sql IMMUTABLE"
                     " BEGIN ATOMIC SELECT public.agg(x) FROM (VALUES ($1)) s(x); END",
                     "CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.gf(v)) STORED)",
                     "INSERT INTO public.book (id, v) VALUES (1, 5)"],
        "g"),
}


@pytest.mark.parametrize("route", AGGREGATE_ROUTES)
def test_create_or_replace_aggregate_with_a_temporary_state_function_is_refused_or_its_loss_recorded(
        db, connect, attacker, route):
    """An aggregate is a pg_proc row too, but CREATE OR REPLACE AGGREGATE runs under its own tag
    (CREATE AGGREGATE), which _on_ddl_end does not watch: the mend's _depends_on_temporary check of
    CREATE FUNCTION never sees it. The aggregate is replaced with SFUNC = pg_temp.tsf; the aggregate
    now depends on a temporary function, and what calls it (a view whose row type a covered column
    is; a generated column's function) with it. DISCARD TEMP cascades to the covered column."""
    setup, column = AGGREGATE_ROUTES[route]
    _temporary_end_takes_nothing_unrecorded(
        db, connect, setup, "public.book", column,
        ["CREATE FUNCTION pg_temp.tsf(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT coalesce($1, 0) + $2'"],
        ["CREATE OR REPLACE AGGREGATE public.agg(int) (SFUNC = pg_temp.tsf, STYPE = int)"])


def test_create_or_replace_rule_return_of_a_views_query_cannot_hand_its_row_types_column_to_discard_temp(
        db, connect, attacker):
    """CREATE OR REPLACE VIEW is watched (CREATE VIEW) and the mend follows a view's rule; but the
    view's query is its "_RETURN" rule, and CREATE OR REPLACE RULE "_RETURN" AS ON SELECT TO
    public.v DO INSTEAD SELECT pg_temp.h(1) AS a, 2 AS b replaces it under the tag CREATE RULE,
    which nothing watches. The rule is internal to the view: dropping pg_temp.h takes the view, its
    row type, and the covered column of it. Needs: ownership of the view; TEMP."""
    _temporary_end_takes_nothing_unrecorded(
        db, connect,
        ["CREATE VIEW public.v AS SELECT 1 AS a, 2 AS b",
         "CREATE TABLE public.book (id int PRIMARY KEY, c public.v)",
         "INSERT INTO public.book VALUES (1, ROW(1, 2))"],
        "public.book", "c", [TEMP_H],
        ['CREATE OR REPLACE RULE "_RETURN" AS ON SELECT TO public.v DO INSTEAD SELECT pg_temp.h(1) AS a, 2 AS b'])


# --- 1b. A chain made temporary at its far end FIRST, then wired in ----------------------------------

LEAF = "CREATE FUNCTION public.leaf(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT $1 * 2; END"
MID = "CREATE FUNCTION public.mid(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT public.leaf($1); END"
WIRE = "CREATE OR REPLACE FUNCTION public.mid(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT public.evil($1); END"
CHAINS = {
    # g GENERATED (public.top(v)); top calls mid; mid is rewired to call evil, which calls pg_temp.h
    "generated_column_two_functions_up": (
        [LEAF, MID,
         "CREATE FUNCTION public.top(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT public.mid($1); END",
         "CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.top(v)) STORED)",
         "INSERT INTO public.book (id, v) VALUES (1, 5)"],
        "g",
        "CREATE FUNCTION public.evil(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT pg_temp.h($1); END"),
    # g GENERATED (v @+@ 1): the operator's function plus calls leaf, which is rewired
    "operator_in_the_generated_column": (
        [LEAF, "CREATE FUNCTION public.plus(int, int) RETURNS int LANGUAGE sql IMMUTABLE"
               " BEGIN ATOMIC SELECT public.leaf($1) + $2; END",
         "CREATE OPERATOR public.@+@ (LEFTARG = int, RIGHTARG = int, FUNCTION = public.plus)",
         "CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (v OPERATOR(public.@+@) 1) STORED)",
         "INSERT INTO public.book (id, v) VALUES (1, 5)"],
        "g",
        "CREATE FUNCTION public.evil(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT pg_temp.h($1); END",
        WIRE.replace("public.mid(int)", "public.leaf(int)")),
    # c of a view's row type; the view calls mid
    "view_query_one_function_down": (
        [LEAF, MID, "CREATE VIEW public.v AS SELECT public.mid(1) AS a",
         "CREATE TABLE public.book (id int PRIMARY KEY, c public.v)",
         "INSERT INTO public.book VALUES (1, ROW(2))"],
        "c",
        "CREATE FUNCTION public.evil(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT pg_temp.h($1); END"),
    # the far end depends on the temporary schema only through its argument type (a default
    # argument fills it), in PL/pgSQL, which records no body dependencies but its signature's
    "far_end_by_a_temporary_argument_type_in_plpgsql": (
        [LEAF, MID,
         "CREATE FUNCTION public.top(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT public.mid($1); END",
         "CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.top(v)) STORED)",
         "INSERT INTO public.book (id, v) VALUES (1, 5)"],
        "g",
        "CREATE FUNCTION public.evil(x int, t pg_temp.tt DEFAULT NULL) RETURNS int LANGUAGE plpgsql IMMUTABLE"
        " AS $$ BEGIN RETURN x * 2; END $$"),
}


@pytest.mark.parametrize("route", CHAINS)
def test_a_chain_made_temporary_at_its_far_end_first_then_wired_in_is_refused_or_its_loss_recorded(
        db, connect, attacker, route):
    """The mend checks the covered tables when a CREATE FUNCTION makes a function that depends
    DIRECTLY on a temporary object: done first, public.evil (calling pg_temp.h, or taking an
    argument of the temporary type pg_temp.tt) reaches no covered table yet, so the whole check finds
    nothing and it stands. Then public.mid, which a covered column reaches only through another
    function, an operator or a view (nothing covered depends on it directly) and which depends on
    nothing temporary directly, is replaced to call public.evil: _on_ddl_end's early exit (no
    pg_attrdef or pg_type depends on mid, and _depends_on_temporary(mid) is false) returns at once.
    DISCARD TEMP then cascades pg_temp.h (or pg_temp.tt) -> evil -> mid -> ... -> the covered
    column."""
    setup, column, far_end, *wire = CHAINS[route]
    _temporary_end_takes_nothing_unrecorded(
        db, connect, setup, "public.book", column,
        [TEMP_H, "CREATE TYPE pg_temp.tt AS (x int)"],
        [far_end, wire[0] if wire else WIRE])


# --- 1c. Controls: temporary dependents that take only themselves; watched wiring -------------------

SELF_ONLY = {
    "column_default": "ALTER TABLE public.book ALTER COLUMN v SET DEFAULT pg_temp.h(1)",
    "domain_check": "ALTER DOMAIN public.dd ADD CONSTRAINT c CHECK (pg_temp.h(VALUE) IS NOT NULL)",
    "policy": "CREATE POLICY p ON public.book USING (pg_temp.h(v) > 0)",
    "statistics": "CREATE STATISTICS public.s ON (pg_temp.h(v)), v FROM public.book",
    "trigger": "CREATE TRIGGER t BEFORE INSERT ON public.book FOR EACH ROW EXECUTE FUNCTION pg_temp.trg()",
}


@pytest.mark.parametrize("what", SELF_ONLY)
def test_a_temporary_dependent_that_takes_only_itself_leaves_the_covered_columns_and_the_capture_whole(
        db, connect, attacker, what):
    """A column default, a domain's CHECK constraint, a policy, extended statistics and a trigger
    that call a temporary function go alone at DISCARD TEMP (each depends on the function; nothing
    of the table's depends on them): the covered columns and their values stay, the capture stays
    whole, and a write after it is captured."""
    attacker.execute("CREATE DOMAIN public.dd AS int")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int, d public.dd)")
    attacker.execute("INSERT INTO public.book VALUES (1, 5, 6)")
    enable_tracking(connect("app_maintainer"), "public.book")
    session = connect("table_owner")
    session.execute(TEMP_H)
    session.execute("CREATE FUNCTION pg_temp.trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
    try:
        session.execute(SELF_ONLY[what])
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    session.execute("DISCARD TEMP")
    assert columns(db, "public.book") == ["id", "v", "d"]
    assert db.execute("SELECT audit._capture_problem('public.book'::regclass)").fetchone()[0] is None
    attacker.execute("UPDATE public.book SET v = 9")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book.update'").fetchone()[0] == \
        {"id": 1, "v": 9, "d": 6}


WATCHED_WIRING = {
    "create_or_replace_view": (
        ["CREATE VIEW public.v AS SELECT 1 AS a",
         "CREATE TABLE public.book (id int PRIMARY KEY, c public.v)",
         "INSERT INTO public.book VALUES (1, ROW(2))"],
        "c", "CREATE OR REPLACE VIEW public.v AS SELECT public.evil(1) AS a"),
    "composite_attribute_of_a_temporary_tables_row_type": (
        ["CREATE TYPE public.holder AS (x int)",
         "CREATE TABLE public.book (id int PRIMARY KEY, c public.holder)",
         "INSERT INTO public.book VALUES (1, ROW(2))"],
        "c", "ALTER TYPE public.holder ADD ATTRIBUTE t pg_temp.tmp CASCADE"),
    "function_set_schema_pg_temp": (
        ["CREATE FUNCTION public.g(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2'",
         "CREATE TABLE public.book (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.g(v)) STORED)",
         "INSERT INTO public.book (id, v) VALUES (1, 5)"],
        "g", "DO $$ BEGIN EXECUTE format('ALTER FUNCTION public.g(int) SET SCHEMA %I', pg_my_temp_schema()::regnamespace); END $$"),
}


@pytest.mark.parametrize("route", WATCHED_WIRING)
def test_wiring_a_temporary_dependency_in_by_a_watched_command_is_refused(db, connect, attacker, route):
    """Controls beside 1b: the far end made temporary first, then wired in by a command that is
    watched (CREATE OR REPLACE VIEW; ALTER TYPE ... ADD ATTRIBUTE of a temporary table's row type
    CASCADE), or moved into the temporary schema itself (ALTER FUNCTION ... SET SCHEMA pg_temp_N,
    which PostgreSQL refuses, 0A000). Refused, or the column stays, or its loss is recorded."""
    setup, column, wire = WATCHED_WIRING[route]
    owner = connect("table_owner")
    for command in setup:
        owner.execute(command)
    enable_tracking(connect("app_maintainer"), "public.book")
    before = columns(db, "public.book")
    session = connect("table_owner")
    session.execute(TEMP_H)
    session.execute("CREATE TABLE pg_temp.tmp (z int)")
    try:  # since trial 29, nothing permanent may have something temporary beneath it
        session.execute("CREATE FUNCTION public.evil(int) RETURNS int LANGUAGE sql IMMUTABLE"
                        " BEGIN ATOMIC SELECT pg_temp.h($1); END")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        if "evil" in wire:
            return
    n = len(schema_events(db))
    try:
        session.execute(wire)
    except psycopg.Error as exc:
        assert exc.sqlstate in ("PA008", "0A000"), exc
        return
    session.execute("DISCARD TEMP")
    if columns(db, "public.book") != before:
        assert _events_naming(db, "public.book", n), f"book.{column} went, nothing recorded"


# --- 2. Types that print an object's current name ----------------------------------------------------


def test_an_aclitem_column_cannot_read_differently_after_a_role_is_renamed_or_dropped(db, connect, attacker):
    """aclitem (and aclitem[], the type of every relacl, which any role can store) stores role
    oids and prints role NAMES: 'clerk=r/table_owner'. It is not among the reg* types the mend
    refuses, yet it is exactly regrole's case (docs/capture.md: "a role, which no event trigger
    sees"): ALTER ROLE clerk RENAME TO boss makes every stored row read 'boss=r/table_owner', and
    DROP ROLE (aclitem records no dependency) makes it read '<oid>=r/table_owner', with no row event
    and no record (any CREATEROLE role may). Safe: tracking such a table is refused (PA008)."""
    db.execute("CREATE ROLE clerk")
    try:
        attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, a aclitem[])")
        attacker.execute("INSERT INTO public.book VALUES (1, '{clerk=r/table_owner}')")
        assert not tracked_or_refused(connect, "public.book")
    finally:
        db.execute("DROP ROLE clerk")  # roles are the cluster's: another test may make one of the name


REG_HIDDEN = {
    "view_row_type_replaced": (
        ["CREATE VIEW public.v AS SELECT 1 AS a",
         "CREATE TABLE public.book (id int PRIMARY KEY, c public.v)"],
        "CREATE OR REPLACE VIEW public.v AS SELECT 1 AS a, 'pg_class'::regclass AS r"),
    "table_row_type_column_added": (
        ["CREATE TABLE public.inner_t (a int)",
         "CREATE TABLE public.book (id int PRIMARY KEY, c public.inner_t)"],
        "ALTER TABLE public.inner_t ADD COLUMN r regnamespace"),
    "array_of_regrole_in_a_composite": (
        ["CREATE TYPE public.holder AS (x int)",
         "CREATE TABLE public.book (id int PRIMARY KEY, c public.holder)"],
        "ALTER TYPE public.holder ADD ATTRIBUTE r regrole[] CASCADE"),
}


@pytest.mark.parametrize("route", REG_HIDDEN)
def test_a_reg_column_smuggled_in_beneath_a_covered_column_afterwards_is_refused(db, connect, attacker, route):
    """A reg* value brought in after tracking, beneath a covered column: a view's row type replaced
    (CREATE OR REPLACE VIEW adding a regclass column), a column added to a table whose row type a
    covered column is, an array of regrole added to a composite. Refused (PA008), or nothing a
    covered column is made of prints an object's name."""
    setup, smuggle = REG_HIDDEN[route]
    for command in setup:
        attacker.execute(command)
    enable_tracking(connect("app_maintainer"), "public.book")
    try:
        attacker.execute(smuggle)
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    named = db.execute("SELECT count(*) FROM audit._column_types('public.book'::regclass) k"
                       " WHERE k.typ::regtype::text LIKE 'reg%'").fetchone()[0]
    assert named == 0, f"{smuggle!r} put a reg* type beneath a covered column"


# --- 3. A dropped cast's address under other spellings ------------------------------------------------

ODD_SCHEMA = 'Sch "é"\u202e.' + "x" * 40


def test_a_trusted_cast_to_json_dropped_under_an_odd_schema_a_search_path_and_quoting_is_refused(
        db, connect, attacker):
    """hstore (trusted, its cast to json a superuser's C function) is installed by the superuser in
    a schema whose name is quoted, dotted, Unicode (U+202E) and 51 bytes; a covered column is an
    array of a domain over it. The superuser takes the cast out of the extension and drops it with
    its schema first on search_path, quote_all_identifiers on and the type named unqualified: the
    address PostgreSQL writes must still match, and the drop be refused (PA008)."""
    quoted = '"' + ODD_SCHEMA.replace('"', '""') + '"'
    db.execute(f"CREATE SCHEMA {quoted}")
    db.execute(f"GRANT USAGE ON SCHEMA {quoted} TO PUBLIC")
    db.execute(f"CREATE EXTENSION hstore SCHEMA {quoted}")
    attacker.execute(f"CREATE DOMAIN public.hd AS {quoted}.hstore")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, h public.hd[])")
    attacker.execute(f"INSERT INTO public.book VALUES (1, ARRAY['a=>1'::{quoted}.hstore])")
    enable_tracking(connect("app_maintainer"), "public.book")
    su = connect()
    su.execute(f"ALTER EXTENSION hstore DROP CAST ({quoted}.hstore AS json)")
    su.execute(f"SET search_path = {quoted}, public")
    su.execute("SET quote_all_identifiers = on")
    with pytest.raises(psycopg.Error) as refused:
        su.execute("DROP CAST (hstore AS json)")
    assert refused.value.sqlstate == "PA008", refused.value


# --- 4. Who could tamper with a capture function -----------------------------------------------------

TAMPER = [
    "ALTER FUNCTION audit_capture.{fn}() STABLE",
    "ALTER FUNCTION audit_capture.{fn}() SECURITY INVOKER",
    "ALTER FUNCTION audit_capture.{fn}() LEAKPROOF",
    "ALTER FUNCTION audit_capture.{fn}() SET work_mem = '64kB'",
    "ALTER FUNCTION audit_capture.{fn}() OWNER TO table_owner",
    "CREATE OR REPLACE FUNCTION audit_capture.{fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
]


@pytest.mark.parametrize("role", ["table_owner", "app_maintainer"])
def test_no_tracking_role_can_tamper_with_a_capture_function_that_regeneration_would_then_keep(
        db, connect, attacker, role):
    """_generate_capture now keeps an existing capture function whose prosrc, SECURITY DEFINER and
    proconfig match, whatever its volatility, leakproofness, ACL or language: a tampered one would
    stay. That is only a hole if someone short of the audit roles could tamper with it: the table's
    owner and the maintainer try ALTER FUNCTION (volatility, SECURITY INVOKER, LEAKPROOF, SET, OWNER),
    CREATE OR REPLACE. Each is refused by PostgreSQL (42501); a GRANT (refused, or with no grant option a
    warning) changes no ACL; and an ALTER TABLE that regenerates leaves a function that still captures."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.book")
    fn = "_capture_" + str(db.execute("SELECT 'public.book'::regclass::oid").fetchone()[0])
    conn = connect(role)
    for command in TAMPER:
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(command.format(fn=fn))
        assert refused.value.sqlstate == "42501", (command, refused.value)
    acl = db.execute(f"SELECT proacl::text FROM pg_proc WHERE oid = 'audit_capture.{fn}()'::regprocedure").fetchone()
    try:
        conn.execute(f"GRANT EXECUTE ON FUNCTION audit_capture.{fn}() TO PUBLIC")
    except psycopg.Error as exc:
        assert exc.sqlstate == "42501", exc
    assert db.execute(f"SELECT proacl::text FROM pg_proc WHERE oid = 'audit_capture.{fn}()'::regprocedure").fetchone() == acl
    attacker.execute("ALTER TABLE public.book ADD COLUMN w int")
    attacker.execute("INSERT INTO public.book VALUES (1, 2, 3)")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.book.insert'").fetchone()[0] == \
        {"id": 1, "v": 2, "w": 3}


# --- 5. One command, one record: a relation whose dropped columns the record does not show ----------


def test_a_partitions_own_generated_column_dropped_by_the_parents_drop_column_cascade_is_recorded(
        db, connect, attacker):
    """PostgreSQL 15 lets a partition's column be GENERATED where the partitioned table's is plain
    (ATTACH PARTITION checks only the other way). public.book (id, x, g) is tracked; its partition
    book_1 has g GENERATED ALWAYS AS (x * 2) STORED. ALTER TABLE public.book DROP COLUMN x CASCADE
    drops book.x and book_1.x (both original: the recursion deletes them together) and, by
    book_1.g's dependency on book_1.x, book_1.g with every row's value, while book.g stays.
    _on_sql_drop leaves book_1.g to _on_ddl_end because book_1 has an original column dropped too;
    _on_ddl_end records only the command's table, book, whose columns after it ([id, g]) still show
    g. Safe: refused, or a record of the command names book_1 (or shows the columns book_1 has)."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, x int, g int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 (id int PRIMARY KEY, x int, g int GENERATED ALWAYS AS (x * 2) STORED)")
    attacker.execute("ALTER TABLE public.book ATTACH PARTITION public.book_1 FOR VALUES FROM (0) TO (100)")
    attacker.execute("INSERT INTO public.book (id, x) VALUES (1, 5)")
    if not tracked_or_refused(connect, "public.book"):
        return
    n = len(schema_events(db))
    try:
        attacker.execute("ALTER TABLE public.book DROP COLUMN x CASCADE")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    left = columns(db, "public.book_1")
    if "g" in left:
        return
    new = schema_events(db)[n:]
    shown = [[c[1] for c in e[2].get("columns", [])] for e in new if e[0] == "audit.tracked_table_ddl"]
    assert any(names_table(e, "public.book_1") for e in new) or left in shown, (
        f"book_1.g went with every value (book_1 now {left}); the only records show {shown}: {new}")


def test_a_generated_column_of_an_untracked_table_whose_row_type_a_covered_column_is_goes_recorded(
        db, connect, attacker):
    """ALTER TABLE public.inner_t DROP COLUMN x CASCADE, inner_t untracked, its row type the type of
    a covered column, and inner_t.g GENERATED over x (non-original, left to _on_ddl_end): the
    covered column's values lose two attributes; recorded as audit.tracked_type_altered naming the
    covered table, with the attributes after it."""
    attacker.execute("CREATE TABLE public.inner_t (a int, x int, g int GENERATED ALWAYS AS (x * 2) STORED)")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, c public.inner_t)")
    attacker.execute("INSERT INTO public.book VALUES (1, ROW(1, 2, 4))")
    enable_tracking(connect("app_maintainer"), "public.book")
    n = len(schema_events(db))
    try:
        attacker.execute("ALTER TABLE public.inner_t DROP COLUMN x CASCADE")
    except psycopg.Error as exc:
        assert exc.sqlstate in ("PA008", "0A000"), exc
        return
    new = [e for e in schema_events(db)[n:] if names_table(e, "public.book")]
    assert new, "inner_t lost x and g beneath book.c, nothing recorded"
    assert any(e[0] == "audit.tracked_type_altered" and e[2]["now"] == {"attributes": [[1, "a", "integer"]]}
               for e in new), new
    both_verifiers_ok(db)
