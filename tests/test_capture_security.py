"""No path from a user's table to a privileged role: names never become code, and user-defined code
(casts, domains, policies, triggers, defaults) never runs as the owner or a function role.

The attacker owns a tracked table and holds no audit role at all (the maintainer who tracked it is
a member of its role, as enable_tracking requires)."""

from __future__ import annotations

from contextlib import contextmanager

import psycopg
import pytest

from pgaudit_py import InvalidKind, enable_tracking, seal, status

PRIVILEGED = {"audit_owner", "audit_capture", "audit_sealer", "audit_pruner", "postgres"}

# Each would create public.pwned_<n> if it ever ran as code: after a newline in a comment, past the
# end of a dollar quote (every tag the project uses), a quoted literal, a comment, a format().
BREAKOUTS = [
    "a\nCREATE TABLE public.pwned_1();\n--",
    "b$body$;CREATE TABLE public.pwned_2();--",
    "c$$;CREATE TABLE public.pwned_3();--",
    "d$gen$;CREATE TABLE public.pwned_4();--",
    "e$f$;CREATE TABLE public.pwned_5();--",
    "f');CREATE TABLE public.pwned_6();--",
    "g\\');CREATE TABLE public.pwned_7();--",
    'h";CREATE TABLE public.pwned_8();--',
    "i*/CREATE TABLE public.pwned_9();/*",
    "j%s%L%I%1$s%%",
]


@contextmanager
def casts_unwatched(db):
    """As on an install made without a superuser, which has no event triggers: nothing refuses a
    cast to json created on a tracked table's type (status names it). The sandbox is then what
    keeps the cast's code from running with a privileged role's rights."""
    db.execute("ALTER EVENT TRIGGER audit_ddl_end DISABLE")
    try:
        yield
    finally:
        db.execute("ALTER EVENT TRIGGER audit_ddl_end ENABLE")


def ran(db) -> set[tuple[str, str, bool]]:
    return set(db.execute("SELECT who, what, forged FROM public.who_ran").fetchall())


def no_breakout(db) -> None:
    assert db.execute("SELECT array_agg(relname) FROM pg_class WHERE relname LIKE 'pwned%'").fetchone() == (None,)


@pytest.mark.parametrize("name", BREAKOUTS)
def test_hostile_names_of_tables_schemas_and_columns_stay_names(db, connect, attacker, name):
    schema = "s_" + name
    attacker.execute(f"CREATE SCHEMA {ident(schema)}")
    attacker.execute(f"""CREATE TABLE {ident(schema)}.{ident(name)} ({ident(name + '_k')} int PRIMARY KEY,
                         {ident(name + '_x')} text, {ident(name + '_r')} text, {ident(name + '_t')} text)""")
    table = f"{ident(schema)}.{ident(name)}"
    enable_tracking(connect("app_maintainer"), table, exclude_columns=[name + "_x"], redact_columns=[name + "_r"],
                    tenant_column=name + "_t", kind_prefix="hostile.t")
    attacker.execute(f"INSERT INTO {table} VALUES (1, 'secret', 'card', 'acme')")
    # Every event-trigger path regenerates the function: renames of the column named in each option,
    # the key, the table, the schema; a column added.
    for old, new in (("_x", "_x2"), ("_r", "_r2"), ("_t", "_t2"), ("_k", "_k2")):
        attacker.execute(f"ALTER TABLE {table} RENAME COLUMN {ident(name + old)} TO {ident(name + new)}")
    attacker.execute(f"ALTER TABLE {table} ADD COLUMN {ident(name + '_added')} int DEFAULT 7")
    attacker.execute(f"ALTER TABLE {table} RENAME TO {ident(name + '_t2')}")
    table = f"{ident(schema)}.{ident(name + '_t2')}"
    attacker.execute(f"ALTER SCHEMA {ident(schema)} RENAME TO {ident(schema + '2')}")
    table = f"{ident(schema + '2')}.{ident(name + '_t2')}"
    attacker.execute("SET check_function_bodies = off")  # any session may
    attacker.execute(f"UPDATE {table} SET {ident(name + '_r2')} = 'card2', {ident(name + '_x2')} = 'secret2'")
    attacker.execute(f"DELETE FROM {table}")
    no_breakout(db)
    rows = db.execute("SELECT kind, target_id, tenant_id, row_before, row_after, changed FROM audit.events"
                      " WHERE kind LIKE 'hostile.t.%' ORDER BY occurred_at, kind").fetchall()
    first = {name + "_k": 1, name + "_r": "[redacted]", name + "_t": "acme"}
    renamed = {name + "_k2": 1, name + "_r2": "[redacted]", name + "_t2": "acme", name + "_added": 7}
    assert rows == [
        ("hostile.t.insert", "1", "acme", None, first, None),
        ("hostile.t.update", "1", "acme", renamed, renamed, {name + "_r2": {"old": "[redacted]", "new": "[redacted]"}}),
        ("hostile.t.delete", "1", "acme", renamed, None, None),
    ]
    assert status(db).problems == []


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.mark.parametrize("prefix", ["a\nb", "x$body$", "x';--", "x%s", "public.orders insert", "é.t"])
def test_a_hostile_kind_prefix_is_refused(db, connect, attacker, prefix):
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
    with pytest.raises(InvalidKind):
        enable_tracking(connect("app_maintainer"), "public.t", kind_prefix=prefix)
    assert db.execute("SELECT count(*) FROM audit.tracked_tables").fetchone() == (0,)


# ---- user-defined code: casts, domains, composites, ranges, arrays, policies, triggers, defaults ----

@pytest.fixture
def spied_table(db, connect, attacker):
    """A tracked table whose every column type carries the attacker's code."""
    attacker.execute("""
        CREATE TYPE mood AS ENUM ('ok', 'bad');
        CREATE TYPE span AS RANGE (subtype = float8);
        CREATE TYPE pair AS (a int, m mood);
        CREATE FUNCTION public.checked(int) RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN RETURN public.spy('domain check'); END $$;
        CREATE DOMAIN watched AS int CHECK (public.checked(VALUE));
        CREATE DOMAIN moody AS mood;
        CREATE TABLE public.spied (id int PRIMARY KEY, m mood, ms mood[], s span, p pair, w watched, d moody,
                                   dflt boolean DEFAULT public.spy('default'));
        CREATE FUNCTION public.own_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM public.spy('trigger'); RETURN NULL; END $$;
        CREATE TRIGGER own AFTER INSERT OR UPDATE OR DELETE ON public.spied
            FOR EACH STATEMENT EXECUTE FUNCTION public.own_trigger();
        CREATE FUNCTION public.policy() RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN RETURN public.spy('policy'); END $$;
        ALTER TABLE public.spied ENABLE ROW LEVEL SECURITY;
        CREATE POLICY everything ON public.spied USING (public.policy());
        GRANT ALL ON public.spied TO app_writer;
    """)
    enable_tracking(connect("app_maintainer"), "public.spied")
    with casts_unwatched(db):
        attacker.execute("""
            CREATE FUNCTION public.mood_json(mood) RETURNS json LANGUAGE plpgsql AS $$
                BEGIN PERFORM public.spy('cast on enum'); RETURN to_json($1::text); END $$;
            CREATE CAST (mood AS json) WITH FUNCTION public.mood_json(mood);
            CREATE FUNCTION public.mood_jsonb(mood) RETURNS jsonb LANGUAGE plpgsql AS $$
                BEGIN PERFORM public.spy('cast to jsonb'); RETURN to_jsonb($1::text); END $$;
            CREATE CAST (mood AS jsonb) WITH FUNCTION public.mood_jsonb(mood);
            CREATE FUNCTION public.span_json(span) RETURNS json LANGUAGE plpgsql AS $$
                BEGIN PERFORM public.spy('cast on range'); RETURN to_json($1::text); END $$;
            CREATE CAST (span AS json) WITH FUNCTION public.span_json(span);""")
    return "public.spied"


def write_everything(conn) -> None:
    conn.execute("""INSERT INTO public.spied (id, m, ms, s, p, w, d)
                    VALUES (1, 'ok', '{ok,bad}', '[1.5,2)', ROW(1, 'bad'), 5, 'ok')""")
    conn.execute("UPDATE public.spied SET m = 'bad', w = 6")
    conn.execute("DELETE FROM public.spied")
    conn.execute("INSERT INTO public.spied (id) VALUES (2)")
    conn.execute("TRUNCATE public.spied")


@pytest.mark.parametrize("writer", ["table_owner", "app_writer"])
def test_user_code_never_runs_as_a_privileged_role(db, connect, attacker, spied_table, writer):
    write_everything(connect(writer))
    seal(db)
    whom = {who for who, _, _ in ran(db)}
    assert whom & PRIVILEGED == set(), ran(db)
    assert not any(forged for _, _, forged in ran(db)), "user code appended to the log"
    # The casts did run (in the sandbox), and their JSON is what was captured.
    assert ("audit_sandbox", "cast on enum", False) in ran(db)
    assert ("audit_sandbox", "cast on range", False) in ran(db)
    inserted = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.spied.insert'"
                          " ORDER BY occurred_at LIMIT 1").fetchone()[0]
    assert (inserted["m"], inserted["ms"], inserted["s"], inserted["p"], inserted["w"], inserted["d"]) == (
        "ok", ["ok", "bad"], "[1.5,2)", {"a": 1, "m": "bad"}, 5, "ok")
    # The TRUNCATE was recorded without reading the table: its policy never ran.
    assert db.execute("SELECT payload FROM audit.events WHERE kind = 'public.spied.truncate'").fetchone() == (
        {"table": "public.spied"},)
    assert {what for who, what, _ in ran(db) if who == "audit_capture"} == set()
    # Where nothing refused them, status names the casts that decide what is recorded.
    assert any("has a cast to json" in p for p in status(db).problems)


def test_a_type_gains_a_cast_after_tracking(db, connect, attacker):
    """A table of built-in types converts rows inline; a column of the attacker's type added later
    moves it to the sandbox; a cast to json on that type, which would decide what is recorded, is
    refused. Where nothing refuses it, it runs in the sandbox only, and status names it."""
    attacker.execute("CREATE TABLE public.plain (id int PRIMARY KEY, note text)")
    enable_tracking(connect("app_maintainer"), "public.plain")
    body = "SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(audit._capture_function('public.plain'::regclass) || '()')"
    assert "_row_images" not in db.execute(body).fetchone()[0]
    attacker.execute("""
        CREATE TYPE later AS ENUM ('x');
        ALTER TABLE public.plain ADD COLUMN l later;
        CREATE FUNCTION public.later_json(later) RETURNS json LANGUAGE plpgsql AS $$
            BEGIN PERFORM public.spy('cast added later'); RETURN '"y"'; END $$;
    """)
    assert "_row_images" in db.execute(body).fetchone()[0]
    with pytest.raises(psycopg.Error, match="has a cast to json") as caught:
        attacker.execute("CREATE CAST (later AS json) WITH FUNCTION public.later_json(later)")
    assert caught.value.sqlstate == "PA008"
    with casts_unwatched(db):
        attacker.execute("CREATE CAST (later AS json) WITH FUNCTION public.later_json(later)")
    attacker.execute("INSERT INTO public.plain VALUES (1, 'n', 'x')")
    assert ran(db) == {("audit_sandbox", "cast added later", False)}
    assert any("public.later has a cast to json" in p for p in status(db).problems), status(db).problems


def test_the_sandbox_can_do_nothing(db, connect):
    """What runs as audit_sandbox holds no privilege on the audit schema at all."""
    privileges = db.execute("""
        SELECT has_schema_privilege('audit_sandbox', 'audit', 'USAGE'),
               (SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'audit'::regnamespace
                   AND (has_table_privilege('audit_sandbox', c.oid, 'SELECT')
                        OR has_table_privilege('audit_sandbox', c.oid, 'INSERT'))),
               (SELECT count(*) FROM pg_proc p WHERE p.pronamespace IN ('audit'::regnamespace, 'audit_capture'::regnamespace)
                   AND p.proowner <> 'audit_sandbox'::regrole
                   AND has_function_privilege('audit_sandbox', p.oid, 'EXECUTE'))""").fetchone()
    assert privileges == (False, 0, 0)


def test_a_table_with_the_attackers_types_in_a_schema_the_capture_role_cannot_see(db, connect, attacker):
    """The sandbox takes anonymous rows: its capture needs neither the schema nor the names, which
    the catalogue follows through every rename."""
    attacker.execute("""CREATE SCHEMA app;
                        CREATE TYPE app.mood AS ENUM ('ok');
                        CREATE TABLE app.t (id int PRIMARY KEY, m app.mood)""")
    enable_tracking(connect("app_maintainer"), "app.t")
    for n, (rename, table) in enumerate([("ALTER TABLE app.t RENAME TO t2", "app.t2"),
                                         ("ALTER SCHEMA app RENAME TO app2", "app2.t2"),
                                         ("ALTER TABLE app2.t2 SET SCHEMA public", "public.t2")]):
        attacker.execute(rename)
        attacker.execute(f"INSERT INTO {table} VALUES ({n}, 'ok')")
    assert db.execute("SELECT kind, row_after FROM audit.events WHERE kind LIKE 'app.t.%'"
                      " ORDER BY occurred_at").fetchall() == [("app.t.insert", {"id": n, "m": "ok"}) for n in range(3)]
    assert db.execute("SELECT table_name FROM audit.tracked_tables").fetchone() == ("public.t2",)
    assert status(db).problems == []


def test_code_in_the_sandbox_cannot_plant_functions(db, connect, attacker):
    """A cast running as the sandbox tries to create what a privileged role would then call: an
    overload of the sandbox itself, or of _record. Neither schema lets it (nor the capture role)."""
    attacker.execute("""
        CREATE TYPE mood AS ENUM ('ok');
        CREATE TABLE public.planted (id int PRIMARY KEY, m mood);""")
    enable_tracking(connect("app_maintainer"), "public.planted")
    with casts_unwatched(db):
        attacker.execute("""
        CREATE FUNCTION public.plant(mood) RETURNS json LANGUAGE plpgsql AS $$
        BEGIN
            BEGIN
                CREATE FUNCTION audit._row_images(r public.planted[]) RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb';
                INSERT INTO public.who_ran VALUES (current_user, 'planted in audit', true);
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            BEGIN
                CREATE FUNCTION audit_capture.planted() RETURNS int LANGUAGE sql AS 'SELECT 1';
                INSERT INTO public.who_ran VALUES (current_user, 'planted in audit_capture', true);
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            RETURN to_json($1::text);
        END $$;
        CREATE CAST (mood AS json) WITH FUNCTION public.plant(mood);""")
    attacker.execute("INSERT INTO public.planted VALUES (1, 'ok')")
    attacker.execute("INSERT INTO public.planted VALUES (2, 'ok')")
    assert ran(db) == set()
    creators = db.execute("""SELECT r.rolname, has_schema_privilege(r.oid, 'audit', 'CREATE'),
                                    has_schema_privilege(r.oid, 'audit_capture', 'CREATE')
                               FROM pg_roles r WHERE r.rolname LIKE 'audit\\_%' ORDER BY 1""").fetchall()
    # The capture role owns its schema, and the owner role is its one member (it hands generated
    # functions over); neither the sandbox nor the capture role may create in the audit schema.
    assert [(name, a, c) for name, a, c in creators if a or c] == [
        ("audit_capture", False, True), ("audit_owner", True, True)]
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.planted.insert'").fetchone() == (2,)


def test_a_typed_tables_type_gains_a_column_of_the_attackers_type(db, connect, attacker):
    """ALTER TYPE changes a typed table's columns without an ALTER TABLE on it: capture follows,
    and refuses a column whose type has a cast to json; without that, the cast runs in the sandbox."""
    attacker.execute("CREATE TYPE shape AS (id int, v text); CREATE TABLE public.typed OF shape (PRIMARY KEY (id))")
    enable_tracking(connect("app_maintainer"), "public.typed")
    attacker.execute("""
        CREATE TYPE flag AS ENUM ('on');
        CREATE FUNCTION public.flag_json(flag) RETURNS json LANGUAGE plpgsql AS $$
            BEGIN PERFORM public.spy('cast of a typed table'); RETURN '"on"'; END $$;
        CREATE CAST (flag AS json) WITH FUNCTION public.flag_json(flag);""")
    with pytest.raises(psycopg.Error, match="has a cast to json") as caught:
        attacker.execute("ALTER TYPE shape ADD ATTRIBUTE f flag CASCADE")
    assert caught.value.sqlstate == "PA008"
    with casts_unwatched(db):
        attacker.execute("ALTER TYPE shape ADD ATTRIBUTE f flag CASCADE")
    db.execute("SELECT audit._generate_capture('public.typed'::regclass)")  # what the event trigger would have done
    attacker.execute("INSERT INTO public.typed VALUES (1, 'x', 'on')")
    assert ran(db) == {("audit_sandbox", "cast of a typed table", False)}


def test_a_column_named_x_is_a_column(db, connect, attacker):
    """The sandbox gets whole rows even when a column is named like the alias for them: the stored
    image is the row, and a domain's check runs for the writer only, never for a row literal."""
    attacker.execute("""
        CREATE FUNCTION public.check_d(text) RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN RETURN public.spy('domain check'); END $$;
        CREATE DOMAIN dchk AS text CHECK (public.check_d(VALUE));
        CREATE TYPE lvl AS ENUM ('lo', 'hi');
        CREATE TABLE public.xt (id int PRIMARY KEY, d dchk, m lvl, x text);
    """)
    enable_tracking(connect("app_maintainer"), "public.xt")
    attacker.execute("INSERT INTO public.xt VALUES (1, 'ok', 'lo', '(1,pwn,hi,zzz)')")
    assert {who for who, _, _ in ran(db)} == {"table_owner"}
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.xt.insert'").fetchone() == (
        {"id": 1, "d": "ok", "m": "lo", "x": "(1,pwn,hi,zzz)"},)


# ---- from a second attacker's review ----

def test_planning_a_query_on_the_table_never_runs_its_code_as_a_function_role(db, connect, attacker):
    """Planning a query on a table runs the "immutable" functions of its index expressions, partial
    index predicates and statistics expressions, and reading it runs its policies. The capture
    reads transition tables only: a TRUNCATE used to count the rows, as the capture role, and the
    table's owner forged a captured event with it."""
    attacker.execute("""
        CREATE FUNCTION public.folded(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM public.spy('planned');
            RETURN $1;
        END $$;
        CREATE TABLE public.planned (id int PRIMARY KEY, n int);
        CREATE INDEX ON public.planned ((id + public.folded(0)));
        CREATE INDEX ON public.planned (n) WHERE n > public.folded(1);
        CREATE STATISTICS public.planned_stats ON (n + public.folded(2)), id FROM public.planned;
        ALTER TABLE public.planned ENABLE ROW LEVEL SECURITY;
        ALTER TABLE public.planned FORCE ROW LEVEL SECURITY;
        CREATE POLICY everyone ON public.planned USING (public.spy('policy'));
        INSERT INTO public.planned VALUES (1, 1), (2, 2);""")
    enable_tracking(connect("app_maintainer"), "public.planned")
    db.execute("DELETE FROM public.who_ran")
    fresh = connect("table_owner")  # a new backend plans afresh
    fresh.execute("UPDATE public.planned SET n = n + 1")
    fresh.execute("DELETE FROM public.planned WHERE id = 2")
    fresh.execute("TRUNCATE public.planned")
    assert {who for who, _, _ in ran(db)} <= {"table_owner"}  # its own statements plan as itself
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'forged.event'").fetchone() == (0,)
    assert [k for (k,) in db.execute("SELECT kind FROM audit.events WHERE kind LIKE 'public.planned.%'"
                                     " ORDER BY intake_id")] == [
        "public.planned.update", "public.planned.update", "public.planned.delete", "public.planned.truncate"]
    # Nor may the capture role read the table at all.
    assert db.execute("SELECT has_table_privilege('audit_capture', 'public.planned', 'SELECT')").fetchone() == (False,)


def test_code_in_the_sandbox_cannot_drop_or_change_it(db, connect, attacker):
    """The sandbox owns the function user casts run in: DROP OWNED BY CURRENT_USER needs no schema
    privilege, and would have broken every sandboxed capture of the database. A function role runs
    no DDL at all."""
    attacker.execute("CREATE TYPE mood AS ENUM ('ok'); CREATE TABLE public.moods (id int PRIMARY KEY, m mood)")
    db.execute("CREATE TYPE public.colour AS ENUM ('red'); CREATE TABLE public.victim (id int PRIMARY KEY, c colour)")
    enable_tracking(connect("app_maintainer"), "public.moods")
    enable_tracking(db, "public.victim")
    with casts_unwatched(db):
        attacker.execute("""
        CREATE FUNCTION public.vandal(mood) RETURNS json LANGUAGE plpgsql AS $$
        BEGIN
            IF current_user = 'audit_sandbox' THEN
                BEGIN
                    DROP OWNED BY CURRENT_USER;
                    INSERT INTO public.who_ran VALUES (current_user, 'dropped', false);
                EXCEPTION WHEN OTHERS THEN
                    INSERT INTO public.who_ran VALUES (current_user, 'refused: ' || SQLSTATE, false);
                END;
            END IF;
            RETURN to_json($1::text);
        END $$;
        CREATE CAST (mood AS json) WITH FUNCTION public.vandal(mood);""")
    attacker.execute("INSERT INTO public.moods VALUES (1, 'ok')")
    assert ran(db) == {("audit_sandbox", "refused: 42501", False)}
    db.execute("INSERT INTO public.victim VALUES (1, 'red')")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.victim.insert'").fetchone() == (
        {"id": 1, "c": "red"},)
    assert [p for p in status(db).problems if "has a cast to json" not in p] == []


@pytest.mark.parametrize("role", ["audit_capture", "audit_sealer", "audit_pruner", "audit_sandbox"])
@pytest.mark.parametrize("ddl", [
    "DROP OWNED BY CURRENT_USER",
    "CREATE FUNCTION audit_capture.planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "ALTER FUNCTION audit_capture._capture_truncate() SECURITY INVOKER",
    "ALTER FUNCTION audit.seal(integer) SECURITY INVOKER",
    "GRANT EXECUTE ON FUNCTION audit_capture._capture_truncate() TO PUBLIC",
    "COMMENT ON SCHEMA audit_capture IS 'mine'",
])
def test_no_function_role_runs_ddl_inside_a_function(db, role, ddl):
    """Whatever ran as a function role (in a SECURITY DEFINER function, where nobody can SET ROLE)
    could rewrite its functions, make them run as their callers, or drop them: the event trigger
    refuses every command. Here a superuser plants such a function, as the only way in."""
    db.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    db.execute(f"SET ROLE {role}")  # a member that SET ROLE to it may: the installer does
    db.execute(f"""CREATE FUNCTION public.inside() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
                   SET search_path = pg_catalog AS $$ BEGIN EXECUTE {literal(ddl)}; END $$""")
    db.execute("RESET ROLE")
    before = status(db).problems
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="changes no schema"):
        db.execute("SELECT public.inside()")
    assert status(db).problems == before
    assert db.execute("SELECT obj_description('audit_capture'::regnamespace)").fetchone() == (None,)
    db.execute("DROP FUNCTION public.inside()")
    db.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
