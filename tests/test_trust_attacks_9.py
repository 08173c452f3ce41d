"""A ninth attacker's trial, on less-trodden surfaces: the rate-limit trigger that the event triggers
keep on a limited table and its partitions, against the table's owner (no audit role); the
SQLAlchemy integration on an AUTOCOMMIT engine; the installer run in a database where a hostile
role made the (empty) audit schema first. Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack
breaks it.

Roles: table_owner (the `attacker` fixture: owns tables, no audit role; app_maintainer is a member,
so it may track and limit them), app_writer, app_reader, app_maintainer, app_secrets."""

from __future__ import annotations

import psycopg
import pytest

from pgaudit_py import audit_context, enable_rate_limit, list_events
from pgaudit_py.errors import InstallError, UnsupportedSession
from pgaudit_py.installer import install, status


def _limited_writes(db, connect, table: str, ids: list[int]) -> list[bool]:
    """app_writer inserts one row a statement into `table`, as actor u1: True when admitted."""
    writer = connect("app_writer")
    admitted = []
    for i in ids:
        try:
            with audit_context(writer, actor_id="u1"):
                writer.execute(f"INSERT INTO {table} VALUES (%s, 'x')", (i,))
        except psycopg.Error as exc:
            assert exc.sqlstate == "PA009", exc
            admitted.append(False)
        else:
            admitted.append(True)
    return admitted


# ================================ class 2: writes the rate limit does not count ================================

LOOK_ALIKE = """CREATE FUNCTION public.nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
                CREATE TRIGGER audit_rate_limit BEFORE INSERT OR UPDATE OR DELETE ON public.parted_9
                    FOR EACH STATEMENT EXECUTE FUNCTION public.nothing()"""


@pytest.mark.parametrize("carrying", [LOOK_ALIKE, ""], ids=["a look-alike trigger", "nothing (the control)"])
def test_c2_a_partition_the_owner_attaches_to_a_limited_table_is_limited_or_refused(db, connect, attacker, carrying):
    """A partition of a rate-limited table is limited with it: the event trigger adds the
    rate-limit trigger to each partition attached later, and refuses (PA008) one whose owner may not
    (only a maintainer owning it may add it). But it only looked for a trigger of that NAME: the
    table owner attached a table that already carried its own do-nothing trigger named
    audit_rate_limit, and statements naming that partition were never counted."""
    attacker.execute("""CREATE TABLE public.parted (id int, body text) PARTITION BY RANGE (id);
                        CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100)""")
    enable_rate_limit(connect("app_maintainer"), "public.parted", per_user_per_minute=2, per_tenant_per_minute=None)
    attacker.execute("CREATE TABLE public.parted_9 (id int, body text)")
    if carrying:
        attacker.execute(carrying)
    try:
        attacker.execute("ALTER TABLE public.parted ATTACH PARTITION public.parted_9 FOR VALUES FROM (900) TO (1000)")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc  # refused: safe
        return
    attacker.execute("GRANT ALL ON public.parted, public.parted_1, public.parted_9 TO app_writer")
    assert _limited_writes(db, connect, "public.parted_9", [901, 902, 903, 904]) == [True, True, False, False]


@pytest.mark.parametrize("ddl", [
    "ALTER TABLE public.lim DISABLE TRIGGER audit_rate_limit",
    "ALTER TABLE public.lim DISABLE TRIGGER ALL",
    "DROP TRIGGER audit_rate_limit ON public.lim",
    "ALTER TRIGGER audit_rate_limit ON public.lim RENAME TO gone",
    "ALTER TABLE public.lim ENABLE REPLICA TRIGGER audit_rate_limit",
])
def test_c2_the_table_owner_cannot_switch_its_rate_limit_off(db, connect, attacker, ddl):
    """The limit a maintainer set on a table binds every role but the maintainer's (docs/rate-limits.md);
    the table's owner, holding no audit role, switches the limit's trigger off with DDL on its own
    table, and the writers' statements are no longer counted (the capture triggers' DDL is refused,
    PA008; the rate-limit trigger's is not looked at)."""
    attacker.execute("CREATE TABLE public.lim (id int, body text)")
    maintainer = connect("app_maintainer")
    enable_rate_limit(maintainer, "public.lim", per_user_per_minute=2, per_tenant_per_minute=None)
    try:
        attacker.execute(ddl)
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc  # refused: safe
        return
    attacker.execute("GRANT ALL ON public.lim TO app_writer")
    assert _limited_writes(db, connect, "public.lim", [1, 2, 3, 4]) == [True, True, False, False]


def test_c2_an_inheritance_child_of_a_limited_table_is_limited_or_refused(db, connect, attacker):
    """A statement naming a child fires the child's triggers only, and only partitions get the
    limit's trigger when they come: a plain inheritance child of a limited table was unlimited."""
    attacker.execute("CREATE TABLE public.lim (id int, body text)")
    enable_rate_limit(connect("app_maintainer"), "public.lim", per_user_per_minute=2, per_tenant_per_minute=None)
    try:
        attacker.execute("CREATE TABLE public.kid () INHERITS (public.lim)")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    attacker.execute("GRANT ALL ON public.lim, public.kid TO app_writer")
    assert _limited_writes(db, connect, "public.kid", [1, 2, 3, 4]) == [True, True, False, False]


def test_c2_status_names_a_limit_switched_off_behind_the_event_triggers(db, connect, attacker):
    """A superuser may switch the event triggers off; a limit's trigger then switched off is a
    problem status names, as a capture trigger's is."""
    attacker.execute("CREATE TABLE public.lim (id int, body text)")
    enable_rate_limit(connect("app_maintainer"), "public.lim", per_user_per_minute=2, per_tenant_per_minute=None)
    assert status(db).problems == []
    db.execute("ALTER EVENT TRIGGER audit_ddl_end DISABLE")
    db.execute("ALTER TABLE public.lim DISABLE TRIGGER audit_rate_limit")
    assert "rate-limited table public.lim: trigger audit_rate_limit is disabled" in status(db).problems


# ================================ class 3: events that name the wrong actor ================================

def test_c3_a_sqlalchemy_session_on_an_autocommit_engine_names_the_requests_actor(db):
    """docs/integrations.md: with audit_sessions, "each transaction of those sessions takes the
    request's values". The hook runs SET_CONTEXT (set_config(..., true)) once, at SQLAlchemy's
    after_begin; on an engine in AUTOCOMMIT (isolation_level="AUTOCOMMIT", a common setting) that
    statement is a database transaction of its own, and its values end with it: every event the
    request then records names the database role, not the request's actor and tenant."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from pgaudit_py import request_context
    from pgaudit_py.integrations.sqlalchemy import audit_sessions

    class AuditedSession(Session):
        pass

    audit_sessions(AuditedSession)
    info = db.info
    engine = create_engine(f"postgresql+psycopg://app_writer@{info.host}:{info.port}/{info.dbname}",
                           isolation_level="AUTOCOMMIT")
    try:
        with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}), AuditedSession(engine) as session:
            session.execute(text("SELECT audit.record(kind => 'order.viewed', target_id => 'o1')"))
            session.execute(text("SELECT audit.record(kind => 'order.viewed', target_id => 'o2')"))
            session.commit()
    except UnsupportedSession:
        pass  # refused, nothing run: safe
    finally:
        engine.dispose()
    rows = db.execute("SELECT target_id, actor_id, tenant_id FROM audit.events WHERE kind = 'order.viewed'"
                      " ORDER BY target_id").fetchall()
    assert rows in ([("o1", "ada", "t1"), ("o2", "ada", "t1")], [])


# ================================ class 1: the installer in a database a hostile role prepared ================================

@pytest.fixture
def squatted(db, fresh_database):
    """A database where the role `squatter` (CREATE on it, nothing else) and its friend may connect:
    yields the superuser's connection and a function connecting as one of them."""
    db.execute("DROP ROLE IF EXISTS squatter; DROP ROLE IF EXISTS squat_friend;"
               " CREATE ROLE squatter LOGIN; CREATE ROLE squat_friend LOGIN")
    info = db.info
    try:
        conn = fresh_database("squatted")
        conn.execute("GRANT CREATE ON DATABASE squatted TO squatter")
        yield conn, lambda role: psycopg.connect(host=info.host, port=info.port, dbname="squatted", user=role,
                                                 autocommit=True)
    finally:
        db.execute("DROP DATABASE IF EXISTS squatted WITH (FORCE)")
        db.execute("DROP ROLE squatter; DROP ROLE squat_friend")


def test_c1_an_empty_audit_schema_a_squatter_made_keeps_no_rights_for_its_friends(squatted):
    """The installer refuses an audit schema that holds objects it did not create, but takes over an
    EMPTY one (ALTER SCHEMA ... OWNER TO audit_owner) and then revokes only PUBLIC's rights
    (sql/90_grants.sql). A role with CREATE on the database makes the schema first and grants ALL on
    it to a second role it controls: that grant survives the change of owner (PostgreSQL rewrites
    only the old owner's entries), so after the install the friend may CREATE in the audit schema:
    an overload of list_events with one more defaulted parameter makes every reader's call ambiguous,
    and objects of its own sit beside the package's."""
    conn, connect_as = squatted
    with connect_as("squatter") as sq:
        sq.execute("CREATE SCHEMA audit; GRANT ALL ON SCHEMA audit TO squat_friend")
    try:
        install(conn)
    except InstallError:
        return  # refused: safe
    rights = conn.execute("SELECT has_schema_privilege('squat_friend', 'audit', 'CREATE'),"
                          " has_schema_privilege('squat_friend', 'audit', 'USAGE')").fetchone()
    with connect_as("squat_friend") as friend:
        arguments, returns = conn.execute(
            "SELECT pg_get_function_arguments(p.oid), pg_get_function_result(p.oid) FROM pg_proc p"
            " WHERE p.oid = 'audit.list_events'::regproc").fetchone()
        made = "made"
        try:  # the same parameters, and one more with a default
            friend.execute(f"CREATE FUNCTION audit.list_events({arguments}, squat integer DEFAULT 0)"
                           f" RETURNS {returns} LANGUAGE plpgsql AS 'BEGIN RETURN; END'")
        except psycopg.Error as exc:
            made = str(exc)
    with connect_as("app_reader") as reader:
        try:
            list_events(reader)
            reader_ok = True
        except psycopg.Error as exc:
            reader_ok = str(exc)
    assert rights == (False, False), f"the squatter's friend may still create in the audit schema (overload: {made})"
    assert reader_ok is True


@pytest.mark.parametrize("made", [
    "CREATE TYPE audit.text AS (x int)",
    "CREATE DOMAIN audit.int8 AS pg_catalog.int8 CHECK (VALUE > 0)",
    "CREATE SCHEMA elsewhere; CREATE FUNCTION elsewhere.eq(int, int) RETURNS bool LANGUAGE sql AS 'SELECT true';"
    " CREATE OPERATOR audit.= (LEFTARG = int, RIGHTARG = int, FUNCTION = elsewhere.eq)",
    'CREATE COLLATION audit."C" (provider = libc, locale = \'C\')',
    "CREATE TEXT SEARCH CONFIGURATION audit.simple (COPY = pg_catalog.simple)",
    "CREATE TABLE audit._yoyo_migration (migration_id text); CREATE TABLE audit._install (x int)",
])
def test_c1_a_schema_a_squatter_filled_with_objects_of_any_kind_is_refused(squatted, made):
    """Variants the trial named: a type, a domain, an operator, a collation, a text search
    configuration (which the package's own SQL, run with the audit schema first on its search_path,
    could pick up), or tables of the names the installer takes as its own mark: the install is
    refused, and status calls nothing in that schema."""
    conn, connect_as = squatted
    with connect_as("squatter") as sq:
        sq.execute("CREATE SCHEMA audit")
        sq.execute(made)
        if "_install" in made:  # status, which calls audit.install_status(), must not call this one
            sq.execute("CREATE FUNCTION audit.install_status(OUT version text, OUT migrations text[],"
                       " OUT problems text[], OUT warnings text[], OUT client_master_keys bigint) LANGUAGE sql"
                       " AS $$ SELECT 'x', '{}'::text[], '{}'::text[], '{}'::text[], 0::bigint $$")
    assert status(conn).problems == ["pgaudit_py is not installed in schema 'audit'"]
    with pytest.raises(InstallError, match="already holds objects that pgaudit_py did not create"):
        install(conn)


def test_c1_status_names_a_right_on_the_audit_schema_outside_the_packages_roles(db):
    """A grant made after the install (by a superuser, say) is a problem status names; the next
    install takes it back."""
    db.execute("CREATE ROLE helper_role; GRANT CREATE ON SCHEMA audit TO helper_role;"
               " GRANT CREATE ON SCHEMA audit TO audit_writer")
    try:
        problems = status(db).problems
        assert "helper_role has CREATE on schema audit" in problems, problems
        assert "audit_writer has CREATE on schema audit" in problems, problems
        install(db)
        assert db.execute("SELECT has_schema_privilege('helper_role', 'audit', 'CREATE'),"
                          " has_schema_privilege('helper_role', 'audit', 'USAGE'),"
                          " has_schema_privilege('audit_writer', 'audit', 'CREATE')").fetchone() == (False, False, False)
        assert status(db).problems == []
    finally:
        db.execute("DROP OWNED BY helper_role; DROP ROLE helper_role")


def test_c1_status_names_an_object_in_the_package_schema_that_another_role_owns(db):
    """Defence in depth for the squatter's race: whatever way another role's function came into the
    package's schema (a superuser's mistake, say), status names it."""
    db.execute("CREATE ROLE stranger; GRANT CREATE ON SCHEMA audit TO stranger; SET ROLE stranger;"
               " CREATE FUNCTION audit.list_events(x integer) RETURNS integer LANGUAGE sql AS 'SELECT 0';"
               " RESET ROLE; REVOKE CREATE ON SCHEMA audit FROM stranger")
    try:
        assert "function audit.list_events(integer) is owned by stranger, not a role of the package" \
            in status(db).problems
    finally:
        db.execute("DROP OWNED BY stranger; DROP ROLE stranger")
