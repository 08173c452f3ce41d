"""A tenth attacker's trial, on what the ninth trial's mends and the deep-JSON work changed: the
installer taking over an empty audit schema while its maker still works in it; the rate limit's
count against upserts, MERGE, COPY, foreign-key cascades, inheritance and nested partitions, and the
maintainer's partition work under the new refusals; SQLAlchemy sessions whose transaction outlives
the request that began it; the library's loop that reads JSON deeper than Python's json. Each test
asserts the SAFE outcome: it passes when the product holds and fails when the attack breaks it.

Roles: table_owner (the `attacker` fixture: owns tables, no audit role; app_maintainer is a member,
so it may track and limit them), app_writer, app_reader, app_maintainer, app_secrets."""

from __future__ import annotations

import contextlib
import functools
import json
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import set_json_loads

from pgaudit_py import audit_context, disable_rate_limit, enable_rate_limit, list_events
from pgaudit_py.errors import InstallError
from pgaudit_py.installer import install, status


def _admitted(connect, statements: list[str], *, setup=None) -> list[bool]:
    """app_writer runs each statement in a transaction of its own, as actor u1: True when admitted,
    False when the rate limit refused it (PA009)."""
    writer = connect("app_writer")
    admitted = []
    for statement in statements:
        try:
            with audit_context(writer, actor_id="u1"):
                if callable(statement):
                    statement(writer)
                else:
                    writer.execute(statement)
        except psycopg.Error as exc:
            assert exc.sqlstate == "PA009", exc
            admitted.append(False)
        else:
            admitted.append(True)
    return admitted


def _limit(connect, table: str, per_user: int = 2) -> None:
    enable_rate_limit(connect("app_maintainer"), table, per_user_per_minute=per_user, per_tenant_per_minute=None)


# ================================ class 1: the installer racing the schema's maker ================================

def test_c1_an_overload_the_squatter_commits_after_the_takeover_does_not_break_readers(db, fresh_database):
    """The installer refuses a foreign audit schema holding any object, and takes over an empty one
    (ALTER SCHEMA ... OWNER TO audit_owner). The check reads the catalog once, in autocommit, before
    the takeover: the schema's maker, still its owner at that moment, has an overload of list_events
    (one more defaulted parameter) created in a transaction it has not committed. The check does not
    see it, nothing the installer does waits for it, and the squatter commits once the install is
    done: its function sits in the package's schema, and every reader's list_events is ambiguous."""
    db.execute("CREATE ROLE squatter LOGIN")
    info = db.info
    arguments = db.execute("SELECT pg_get_function_arguments(p.oid) FROM pg_proc p"
                           " WHERE p.oid = 'audit.list_events'::regproc").fetchone()[0]
    squatter = None
    try:
        conn = fresh_database("squatted")
        conn.execute("GRANT CREATE ON DATABASE squatted TO squatter")
        squatter = psycopg.connect(host=info.host, port=info.port, dbname="squatted", user="squatter", autocommit=True)
        squatter.execute("CREATE SCHEMA audit")
        squatter.autocommit = False
        squatter.execute(f"CREATE FUNCTION audit.list_events({arguments}, squat integer DEFAULT 0)"
                         " RETURNS integer LANGUAGE sql AS 'SELECT 0'")  # audit.events is not there yet
        conn.execute("SET statement_timeout = '60s'")
        try:
            install(conn)
        except (InstallError, psycopg.Error):
            squatter.rollback()
            return  # refused: safe
        squatter.commit()
        foreign = conn.execute("SELECT p.oid::regprocedure::text FROM pg_proc p"
                               " WHERE p.pronamespace = 'audit'::regnamespace AND p.proowner = 'squatter'::regrole"
                               ).fetchall()
        problems = status(conn).problems
        with psycopg.connect(host=info.host, port=info.port, dbname="squatted", user="app_reader",
                             autocommit=True) as reader:
            try:
                list_events(reader)
                reader_ok: object = True
            except psycopg.Error as exc:
                reader_ok = str(exc)
        assert reader_ok is True, f"readers broken by {foreign}; status problems: {problems}"
    finally:
        if squatter is not None:
            squatter.close()
        db.execute("DROP DATABASE IF EXISTS squatted WITH (FORCE)")
        db.execute("DROP ROLE squatter")


# ================================ class 2: writes the rate limit counts wrongly ================================

@pytest.fixture
def lim(db, attacker):
    attacker.execute("""CREATE TABLE public.lim (id int PRIMARY KEY, body text);
                        GRANT ALL ON public.lim TO app_writer""")
    return attacker


@pytest.mark.xfail(strict=True, reason="a known limit (docs/rate-limits.md): a statement counts once for each kind of write it may do; strict, so that a change that closes it says so")
def test_c2_an_upsert_is_one_write(connect, lim):
    """docs/rate-limits.md: "One write is one statement (INSERT, UPDATE or DELETE) ... whatever its
    row count". An INSERT ... ON CONFLICT DO UPDATE fires the BEFORE INSERT and the BEFORE UPDATE
    statement triggers both, and the limit's trigger takes a slot each time: a writer limited to 2
    writes a minute is refused its second upsert."""
    _limit(connect, "public.lim")
    upsert = "INSERT INTO public.lim VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET body = excluded.body"
    assert _admitted(connect, [upsert, upsert, upsert]) == [True, True, False]


@pytest.mark.xfail(strict=True, reason="a known limit (docs/rate-limits.md): a statement counts once for each kind of write it may do; strict, so that a change that closes it says so")
def test_c2_a_merge_is_one_write(connect, lim):
    """MERGE (PostgreSQL 15) fires the BEFORE statement trigger of every action it names, taken or
    not: one MERGE with an UPDATE and an INSERT arm takes two slots of the limit."""
    _limit(connect, "public.lim")
    merge = ("MERGE INTO public.lim l USING (VALUES (1, 'x')) s(id, body) ON l.id = s.id"
             " WHEN MATCHED THEN UPDATE SET body = s.body WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.body)")
    assert _admitted(connect, [merge, merge, merge]) == [True, True, False]


def test_c2_copy_into_a_limited_table_is_counted(connect, lim):
    """COPY FROM writes rows without an INSERT statement: it must still take a slot."""
    _limit(connect, "public.lim")

    def copy(n: int):
        def run(writer):
            with writer.cursor().copy("COPY public.lim (id, body) FROM STDIN") as cp:
                cp.write_row((n, "x"))
        return run

    assert _admitted(connect, [copy(1), copy(2), copy(3), copy(4)]) == [True, True, False, False]


def test_c2_a_foreign_key_cascade_into_a_limited_table_is_counted_once_a_statement(db, connect, attacker):
    """The writer deletes from an unlimited parent table, and ON DELETE CASCADE deletes the rows of the
    limited child: each cascade must count (else every row of a limited table goes uncounted through
    an unlimited one), and a single DELETE of the parent, whatever its row count, is one write."""
    attacker.execute("""CREATE TABLE public.parent (id int PRIMARY KEY);
                        CREATE TABLE public.child (id int PRIMARY KEY, pid int REFERENCES public.parent ON DELETE CASCADE);
                        INSERT INTO public.parent SELECT generate_series(1, 20);
                        INSERT INTO public.child SELECT i, i FROM generate_series(1, 20) i;
                        GRANT ALL ON public.parent, public.child TO app_writer""")
    _limit(connect, "public.child", per_user=3)
    # one DELETE of five parents: one write; then single ones until refused
    assert _admitted(connect, ["DELETE FROM public.parent WHERE id BETWEEN 1 AND 5",
                               "DELETE FROM public.parent WHERE id = 6",
                               "DELETE FROM public.parent WHERE id = 7",
                               "DELETE FROM public.parent WHERE id = 8"]) == [True, True, True, False]


def test_c2_alter_table_inherit_of_a_limited_table_is_limited_or_refused(connect, lim):
    """The ninth trial's plain inheritance child was made with CREATE TABLE ... INHERITS; the same
    child made first and joined after with ALTER TABLE ... INHERIT must be refused (PA008) or limited."""
    _limit(connect, "public.lim")
    lim.execute("CREATE TABLE public.kid (id int NOT NULL, body text); GRANT ALL ON public.kid TO app_writer")
    try:
        lim.execute("ALTER TABLE public.kid INHERIT public.lim")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    inserts = [f"INSERT INTO public.kid VALUES ({i}, 'x')" for i in range(1, 5)]
    assert _admitted(connect, inserts) == [True, True, False, False]


@pytest.mark.parametrize("look_alike", [True, False])
def test_c2_a_partitioned_table_attached_with_partitions_of_its_own_is_limited_or_refused(db, connect, attacker,
                                                                                          look_alike):
    """The owner attaches a partitioned table whose own partition (a grandchild of the limited
    table) carries a do-nothing trigger named audit_rate_limit, or none: statements naming the
    grandchild must be counted, or the attach refused."""
    attacker.execute("""CREATE TABLE public.parted (id int, body text) PARTITION BY RANGE (id);
                        CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100)""")
    _limit(connect, "public.parted")
    attacker.execute("""CREATE TABLE public.sub (id int, body text) PARTITION BY RANGE (id);
                        CREATE TABLE public.sub_1 PARTITION OF public.sub FOR VALUES FROM (900) TO (950)""")
    if look_alike:
        attacker.execute("""
            CREATE FUNCTION public.nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
            CREATE TRIGGER audit_rate_limit BEFORE INSERT OR UPDATE OR DELETE ON public.sub_1
                FOR EACH STATEMENT EXECUTE FUNCTION public.nothing()""")
    try:
        attacker.execute("ALTER TABLE public.parted ATTACH PARTITION public.sub FOR VALUES FROM (900) TO (1000)")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    attacker.execute("GRANT ALL ON public.parted, public.sub, public.sub_1 TO app_writer")
    inserts = [f"INSERT INTO public.sub_1 VALUES ({i}, 'x')" for i in range(901, 905)]
    assert _admitted(connect, inserts) == [True, True, False, False]


def test_c2_the_maintainer_disables_and_enables_a_limit_on_a_two_level_partitioned_table(db, connect, attacker):
    """Legitimate work the new refusals must not block: a limit on a table partitioned two levels
    deep is enabled, disabled (every trigger dropped, writes no longer counted) and enabled again."""
    attacker.execute("""CREATE TABLE public.parted (id int, body text) PARTITION BY RANGE (id);
                        CREATE TABLE public.p1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100) PARTITION BY RANGE (id);
                        CREATE TABLE public.p1a PARTITION OF public.p1 FOR VALUES FROM (0) TO (50);
                        CREATE TABLE public.p2 PARTITION OF public.parted FOR VALUES FROM (100) TO (200);
                        GRANT ALL ON public.parted, public.p1, public.p1a, public.p2 TO app_writer""")
    maintainer = connect("app_maintainer")
    _limit(connect, "public.parted")
    assert disable_rate_limit(maintainer, "public.parted") is True
    left = db.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_rate_limit'").fetchone()
    assert left == (0,)
    assert _admitted(connect, [f"INSERT INTO public.p1a VALUES ({i}, 'x')" for i in range(1, 5)]) == [True] * 4
    _limit(connect, "public.parted")
    assert status(db).problems == []
    assert _admitted(connect, [f"INSERT INTO public.p1a VALUES ({i}, 'x')" for i in range(11, 15)]) == [
        True, True, False, False]


def test_c2_the_owner_may_still_detach_drop_and_reattach_partitions_of_a_limited_table(db, connect, attacker):
    """Partition maintenance by the table's owner: dropping a partition, detaching one and
    attaching it back (it keeps its trigger) must not be refused by the limit's guard, and the
    re-attached partition is limited."""
    attacker.execute("""CREATE TABLE public.parted (id int, body text) PARTITION BY RANGE (id);
                        CREATE TABLE public.p1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
                        CREATE TABLE public.p2 PARTITION OF public.parted FOR VALUES FROM (100) TO (200);
                        CREATE TABLE public.p3 PARTITION OF public.parted FOR VALUES FROM (200) TO (300)""")
    _limit(connect, "public.parted")
    attacker.execute("DROP TABLE public.p3")
    attacker.execute("ALTER TABLE public.parted DETACH PARTITION public.p2")
    attacker.execute("ALTER TABLE public.parted ATTACH PARTITION public.p2 FOR VALUES FROM (100) TO (200)")
    attacker.execute("GRANT ALL ON public.parted, public.p1, public.p2 TO app_writer")
    assert status(db).problems == []
    assert _admitted(connect, [f"INSERT INTO public.p2 VALUES ({i}, 'x')" for i in range(101, 105)]) == [
        True, True, False, False]


# ================================ class 3: events that name the wrong actor ================================

@pytest.mark.parametrize("then", ["another request", "no request"])
def test_c3_a_sqlalchemy_transaction_left_open_by_a_request_does_not_name_its_actor_after_it(db, then):
    """docs/integrations.md: each transaction of an audited session takes the request's values, and
    "outside any request a transaction names nobody, whatever the session was left holding". A
    scoped_session that is not removed at the end of a request keeps its transaction (a request that
    only read never commits): the values were set once, at after_begin, in request A (ada), and the
    event the next request (bob), or a job outside any request, records in that same transaction
    names ada."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from pgaudit_py import request_context
    from pgaudit_py.errors import UnsupportedSession
    from pgaudit_py.integrations.sqlalchemy import audit_sessions

    class AuditedSession(Session):
        pass

    audit_sessions(AuditedSession)
    info = db.info
    engine = create_engine(f"postgresql+psycopg://app_writer@{info.host}:{info.port}/{info.dbname}")
    session = AuditedSession(engine)
    try:
        with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}):
            session.execute(text("SELECT 1"))  # request A reads, and leaves the session as it is
        later = {"actor_id": "bob", "tenant_id": "t2"} if then == "another request" else None
        try:
            if later:
                with request_context.serving(later):
                    session.execute(text("SELECT audit.record(kind => 'order.viewed', target_id => 'o2')"))
                    session.commit()
            else:
                session.execute(text("SELECT audit.record(kind => 'order.viewed', target_id => 'o2')"))
                session.commit()
        except UnsupportedSession:
            pass  # refused: safe
    finally:
        session.close()
        engine.dispose()
    rows = db.execute("SELECT actor_id, tenant_id FROM audit.events WHERE kind = 'order.viewed'").fetchall()
    expected = [("bob", "t2")] if then == "another request" else [("app_writer", None)]
    assert rows in (expected, []), rows


def test_c3_a_sqlalchemy_savepoint_rolled_back_does_not_leave_the_request_before_it(db):
    """The variant of the mend (values set again when the request changes): values set inside a
    savepoint are undone when it rolls back, so the next statement must set them again."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from pgaudit_py import request_context
    from pgaudit_py.integrations.sqlalchemy import audit_sessions

    class AuditedSession(Session):
        pass

    audit_sessions(AuditedSession)
    info = db.info
    engine = create_engine(f"postgresql+psycopg://app_writer@{info.host}:{info.port}/{info.dbname}")
    record = "SELECT audit.record(kind => 'order.viewed', target_id => :t)"
    try:
        with AuditedSession(engine) as session:
            with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}):
                session.execute(text(record), {"t": "o1"})
                nested = session.begin_nested()
                session.execute(text("SELECT 1"))  # the savepoint is made (lazily) here
            with request_context.serving({"actor_id": "bob", "tenant_id": "t2"}):
                session.execute(text("SELECT 1"))  # bob's values set inside the savepoint
                nested.rollback()
                session.execute(text(record), {"t": "o2"})
            session.commit()
    finally:
        engine.dispose()
    rows = db.execute("SELECT target_id, actor_id, tenant_id FROM audit.events WHERE kind = 'order.viewed'"
                      " ORDER BY target_id").fetchall()
    assert rows == [("o1", "ada", "t1"), ("o2", "bob", "t2")]


# ================================ class 5: the deep-JSON loop against json ================================

HOSTILE_INNER = ('{"s": "\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0001 \\u001f \\u007f \\u00e9 \\ud83d\\ude00 \u2028 \u0085",'
                 ' "n": [-0.0, 1.500, 123456789012345678901234567890, 1e-300, 0.1, 1e308, -1.7976931348623157e308,'
                 ' 12345678901234567.89, 1e399],'
                 ' "k": {"": 1, "\\u00e9": 2, "e\\u0301": 3, "\\n": 4}, "t": [true, false, null, [], {}, ""]}')


@pytest.mark.parametrize("loads", ["psycopg default", "Decimal"])
def test_c5_the_deep_loop_reads_every_scalar_as_the_connections_json_does(db, connect, loads):
    """A writer's payload nests hostile scalars (every escape, a surrogate pair, U+2028, -0, 1.500,
    long integers, 1e399, odd keys) deeper than Python's json goes, so the reader's list_events
    reads it with deep_json's loop: each must come back exactly as the connection's own loads reads
    the same value when shallow."""
    depth = 1500
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 'deep.hostile', payload => %s::jsonb)",
                   ('{"d": ' + "[" * depth + HOSTILE_INNER + "]" * depth + "}",))
    reader = connect("app_reader")
    first = json.loads if loads == "psycopg default" else functools.partial(json.loads, parse_float=Decimal)
    if loads == "Decimal":
        set_json_loads(first, reader)
    value = list_events(reader)[0].payload["d"]
    for _ in range(depth):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    stored = db.execute("SELECT %s::jsonb::text", (HOSTILE_INNER,)).fetchone()[0]
    expected = first(stored)
    assert repr(value) == repr(expected)


# ================================ class 3: Django queries the middleware does not see ================================

def django_who(request) -> dict[str, str | None]:
    return {"actor_id": request.headers.get("x-user"), "tenant_id": request.headers.get("x-tenant")}


@pytest.fixture
def django_db(db):
    """Django configured for this test's database (persistent connections), the middleware reading
    the x-user header; the test calls the middleware around a view of its own."""
    import django
    from django.conf import settings
    from django.db import connections

    info = db.info
    conf = {"ENGINE": "django.db.backends.postgresql", "NAME": info.dbname, "USER": "app_writer",
            "HOST": info.host, "PORT": str(info.port), "OPTIONS": {}, "CONN_MAX_AGE": None}
    if not settings.configured:
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], INSTALLED_APPS=[], USE_TZ=True,
                           PGAUDIT_CONTEXT=f"{__name__}.django_who", DATABASES={"default": conf})
        django.setup()
    else:
        connections.close_all()
        settings.DATABASES["default"].clear()
        settings.DATABASES["default"].update(conf)
        connections.settings = connections.configure_settings(settings.DATABASES)
        settings.PGAUDIT_CONTEXT = f"{__name__}.django_who"
    db.execute("""CREATE TABLE public.dj_orders (id int PRIMARY KEY, status text);
                  INSERT INTO public.dj_orders VALUES (1, 'new');
                  GRANT ALL ON public.dj_orders TO app_writer;
                  CREATE FUNCTION public.refund(order_id int) RETURNS int LANGUAGE sql
                      AS $$ UPDATE public.dj_orders SET status = 'refunded' WHERE id = order_id RETURNING id $$;
                  SELECT audit.enable_tracking('public.dj_orders')""")
    yield
    connections.close_all()


@pytest.mark.xfail(strict=True, reason="a known limit (docs/integrations.md): Django wraps execute and executemany only; strict, so that a change that closes it says so")
@pytest.mark.parametrize("way", ["callproc", "copy"])
def test_c3_a_django_views_callproc_or_copy_names_the_requests_actor(db, django_db, way):
    """The middleware attributes "every query a request runs, on every database connection of
    Django's" through connection.execute_wrapper, which Django applies to execute() and
    executemany() only. cursor.callproc() (Django's own API for stored procedures) and cursor.copy()
    (psycopg 3's COPY, reached through Django's cursor wrapper) run on the same connection without
    it: in autocommit, the captured change names the database role, not the request's user."""
    from django.db import connection
    from django.http import HttpResponse
    from django.test import RequestFactory

    from pgaudit_py.integrations.django import AuditContextMiddleware

    def view(request) -> HttpResponse:
        with connection.cursor() as cursor:
            if way == "callproc":
                cursor.callproc("refund", [1])
            else:
                with cursor.copy("COPY public.dj_orders (id, status) FROM STDIN") as copy:
                    copy.write_row((2, "imported"))
        return HttpResponse("ok")

    middleware = AuditContextMiddleware(view)
    assert middleware(RequestFactory().post("/", headers={"x-user": "alice", "x-tenant": "t1"})).status_code == 200
    rows = db.execute("SELECT kind, actor_id, tenant_id FROM audit.events WHERE kind LIKE 'public.dj_orders.%'"
                      " ORDER BY intake_id").fetchall()
    kind = "public.dj_orders.update" if way == "callproc" else "public.dj_orders.insert"
    assert rows == [(kind, "alice", "t1")]


# ================================ class 4: the JSON writer's fallback ================================

def test_c4_a_payload_json_refuses_is_refused_by_the_fallback_too(tmp_path):
    """record() writes a payload with json.dumps and, where that raises TypeError (a Decimal) or
    RecursionError (deep), with deep_json.dumps, which has no check for cycles: a payload holding a
    Decimal before a reference to itself (an application's bug, which json.dumps refuses with
    ValueError: Circular reference detected) makes record() loop for ever, its output growing
    without bound. Run in a child process with 1 GB of address space and 20 s."""
    import subprocess
    import sys

    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from decimal import Decimal\n"
            "from pgaudit_py.deep_json import tolerant_dumps\n"
            "payload = {'amount': Decimal('1.10'), 'order': {}}\n"
            "payload['order']['self'] = payload\n"
            "try:\n"
            "    tolerant_dumps(payload)\n"
            "except (ValueError, TypeError) as exc:\n"
            "    print('refused', type(exc).__name__, exc)\n"
            "    sys.exit(0)\n"
            "except MemoryError:\n"
            "    print('MemoryError'); sys.exit(3)\n"
            "print('written'); sys.exit(4)\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("tolerant_dumps of a cyclic payload ran for 20 s")
    assert done.returncode == 0 and done.stdout.startswith("refused"), (done.returncode, done.stdout, done.stderr[-500:])


# ================================ class 3 and 2: the owner's trigger rewriting the session's context ================================

@pytest.mark.xfail(strict=True, reason="a known limit (docs/security.md, What the session claims): a trigger runs as the writer; strict, so that a change that closes it says so")
@pytest.mark.parametrize("setting", ["actor_id", "tenant_id"])
def test_c3_the_owners_statement_trigger_does_not_decide_the_actor_of_a_captured_change(db, connect, attacker, setting):
    """docs/security.md: "No owner's code or DDL decides what is recorded." The table owner adds a
    BEFORE statement trigger of its own to its tracked table, named to fire before everything else,
    which sets pgaudit_py.actor_id (or tenant_id, which decides which tenant's readers see the
    event) transaction-locally (set_config(..., true)) in the writer's transaction: the capture
    that follows reads the session's settings and records the owner's choice for the writer's
    change."""
    from pgaudit_py import enable_tracking

    attacker.execute("""CREATE TABLE public.ledger (id int PRIMARY KEY, amount int);
                        GRANT ALL ON public.ledger TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.ledger")
    attacker.execute(f"""
        CREATE FUNCTION public.blame() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM set_config('pgaudit_py.{setting}', 'mallory', true); RETURN NULL; END $$;
        CREATE TRIGGER a_blame BEFORE INSERT OR UPDATE OR DELETE ON public.ledger
            FOR EACH STATEMENT EXECUTE FUNCTION public.blame()""")
    writer = connect("app_writer")
    with audit_context(writer, actor_id="u1", tenant_id="t1"):
        writer.execute("INSERT INTO public.ledger VALUES (1, 100)")
    rows = db.execute("SELECT actor_id, tenant_id FROM audit.events WHERE kind = 'public.ledger.insert'").fetchall()
    assert rows == [("u1", "t1")]


@pytest.mark.xfail(strict=True, reason="a known limit (docs/security.md, What the session claims): a trigger runs as the writer; strict, so that a change that closes it says so")
def test_c2_the_owners_statement_trigger_cannot_spread_writes_over_made_up_users(db, connect, lim):
    """The limit counts per pgaudit_py.actor_id. The owner, bound by the limit like everyone but the
    maintainer, adds a BEFORE statement trigger named to fire before audit_rate_limit that sets a
    fresh actor_id for every statement: no user ever reaches its limit."""
    _limit(connect, "public.lim")
    lim.execute("""
        CREATE FUNCTION public.rotate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM set_config('pgaudit_py.actor_id', gen_random_uuid()::text, true); RETURN NULL; END $$;
        CREATE TRIGGER a_rotate BEFORE INSERT OR UPDATE OR DELETE ON public.lim
            FOR EACH STATEMENT EXECUTE FUNCTION public.rotate()""")
    inserts = [f"INSERT INTO public.lim VALUES ({i}, 'x')" for i in range(1, 5)]
    assert _admitted(connect, inserts) == [True, True, False, False]


# ================================ class 3: SQLAlchemy connections in AUTOCOMMIT by other routes ================================

@pytest.mark.parametrize("route", ["async engine", "session connection option"])
def test_c3_a_sqlalchemy_session_in_autocommit_by_another_route_is_refused_or_attributed(db, route):
    """The ninth trial's mend refuses an AUTOCOMMIT engine by reading the DBAPI connection's
    `autocommit` at after_begin. The same mode reached another way: an AsyncSession on an
    AUTOCOMMIT async engine (its DBAPI connection is SQLAlchemy's async adapter), or a session whose
    connection is put in AUTOCOMMIT by an execution option. Each event must name the request's actor,
    or the session be refused."""
    import asyncio

    from sqlalchemy import create_engine, text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.orm import Session

    from pgaudit_py import request_context
    from pgaudit_py.errors import UnsupportedSession
    from pgaudit_py.integrations.sqlalchemy import audit_sessions

    class AuditedSession(Session):
        pass

    audit_sessions(AuditedSession)
    info = db.info
    url = f"postgresql+psycopg://app_writer@{info.host}:{info.port}/{info.dbname}"
    statements = [text("SELECT audit.record(kind => 'order.viewed', target_id => 'o1')"),
                  text("SELECT audit.record(kind => 'order.viewed', target_id => 'o2')")]
    try:
        if route == "async engine":
            async def run() -> None:
                engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
                try:
                    with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}):
                        async with AsyncSession(engine, sync_session_class=AuditedSession) as session:
                            for s in statements:
                                await session.execute(s)
                            await session.commit()
                finally:
                    await engine.dispose()
            asyncio.run(run())
        else:
            engine = create_engine(url)
            try:
                with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}), AuditedSession(engine) as session:
                    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                    for s in statements:
                        session.execute(s)
                    session.commit()
            finally:
                engine.dispose()
    except UnsupportedSession:
        pass  # refused: safe
    rows = db.execute("SELECT target_id, actor_id, tenant_id FROM audit.events WHERE kind = 'order.viewed'"
                      " ORDER BY target_id").fetchall()
    assert rows in ([("o1", "ada", "t1"), ("o2", "ada", "t1")], []), rows


# ================================ class 4: the CLI's payload reader ================================

def test_c4_pgaudit_record_refuses_a_long_integer_payload_in_one_line(db):
    """`pgaudit record --payload` now reads with deep_json.loads and the CLI's exact json.loads: an
    integer of more than 4,300 digits raises Python's ValueError (int max str digits), which is no
    JSONDecodeError. run_guarded promises one line and an exit code, "never a traceback"."""
    from click.testing import CliRunner

    from pgaudit_py.cli import cli

    i = db.info
    result = CliRunner().invoke(cli, ["record", "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user=app_writer",
                                      "big.number", "--payload", '{"n": ' + "9" * 5000 + "}"])
    assert result.exit_code in (1, 2) and isinstance(result.exception, (SystemExit, type(None))), (
        result.exit_code, repr(result.exception), result.output[-300:])
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'big.number'").fetchone() == (0,)


@pytest.mark.parametrize("made", [
    "CREATE TABLE public.parted_9 PARTITION OF public.parted FOR VALUES FROM (900) TO (1000)",
    "CREATE TABLE public.parted_9 PARTITION OF public.parted DEFAULT",
    "CREATE TABLE public.sub PARTITION OF public.parted FOR VALUES FROM (900) TO (1000) PARTITION BY RANGE (id);"
    " CREATE TABLE public.parted_9 PARTITION OF public.sub FOR VALUES FROM (900) TO (1000)",
])
def test_c2_a_partition_the_owner_creates_under_a_limited_table_is_limited_or_refused(db, connect, attacker, made):
    """The ninth trial attached tables; here the owner creates the partition in place (CREATE TABLE
    ... PARTITION OF, a default partition, or a partitioned partition and then its own partition,
    two commands): each must be refused (PA008) or limited."""
    attacker.execute("""CREATE TABLE public.parted (id int, body text) PARTITION BY RANGE (id);
                        CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100)""")
    _limit(connect, "public.parted")
    try:
        for statement in made.split("; "):
            attacker.execute(statement)
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    attacker.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO app_writer")
    inserts = [f"INSERT INTO public.parted_9 VALUES ({i}, 'x')" for i in range(901, 905)]
    assert _admitted(connect, inserts) == [True, True, False, False]


def test_c1_a_capture_schema_made_while_the_migrations_run_is_refused(db, fresh_database, monkeypatch):
    """The installer asks who owns audit_capture once, at the start; it makes the schema later, after
    the migrations, with CREATE SCHEMA IF NOT EXISTS. A role with CREATE on the database that makes
    audit_capture in that window (and lets the capture role create in it) is left owning the capture
    role's schema: as its owner it may drop what the capture role puts there, and make objects of its
    own beside the capture functions. The interleaving is made here by running the squatter's
    statements just before the migrations."""
    from pgaudit_py import installer

    db.execute("CREATE ROLE squatter LOGIN")
    info = db.info
    original = installer._apply_migrations

    def squat_then_migrate(conn, schema):
        with psycopg.connect(host=info.host, port=info.port, dbname="squatted", user="squatter",
                             autocommit=True) as sq:
            sq.execute("CREATE SCHEMA audit_capture; GRANT USAGE, CREATE ON SCHEMA audit_capture TO audit_capture")
        return original(conn, schema)

    try:
        conn = fresh_database("squatted")
        conn.execute("GRANT CREATE ON DATABASE squatted TO squatter")
        monkeypatch.setattr(installer, "_apply_migrations", squat_then_migrate)
        try:
            install(conn)
        except (InstallError, psycopg.Error):
            return  # refused: safe
        owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'audit_capture'").fetchone()
        problems = status(conn).problems
        assert owner == ("audit_capture",), f"audit_capture is owned by {owner[0]}; status: {problems}"
    finally:
        db.execute("DROP DATABASE IF EXISTS squatted WITH (FORCE)")
        db.execute("DROP ROLE squatter")


def test_c2_tracking_a_limited_table_on_and_off_keeps_its_limit_and_is_not_refused(db, connect, lim):
    """Legitimate maintainer work beside a limit: enable_tracking and disable_tracking on a
    rate-limited table (each makes or drops triggers on it, which the limit's guard now looks at)
    go through, and the table stays limited."""
    from pgaudit_py import disable_tracking, enable_tracking

    maintainer = connect("app_maintainer")
    _limit(connect, "public.lim")
    enable_tracking(maintainer, "public.lim")
    disable_tracking(maintainer, "public.lim")
    enable_tracking(maintainer, "public.lim")
    assert status(db).problems == []
    inserts = [f"INSERT INTO public.lim VALUES ({i}, 'x')" for i in range(1, 5)]
    assert _admitted(connect, inserts) == [True, True, False, False]
    assert disable_rate_limit(maintainer, "public.lim") is True
    assert _admitted(connect, [f"INSERT INTO public.lim VALUES ({i}, 'x')" for i in range(11, 14)]) == [True] * 3


@pytest.mark.parametrize("view", [
    "CREATE VIEW public.front AS SELECT * FROM public.lim",  # automatically updatable
    "CREATE VIEW public.front AS SELECT * FROM public.lim;"
    " CREATE RULE front_insert AS ON INSERT TO public.front DO INSTEAD INSERT INTO public.lim VALUES (NEW.id, NEW.body)",
    "CREATE VIEW public.front AS SELECT id, body FROM public.lim GROUP BY id, body;"
    " CREATE FUNCTION public.front_insert() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS"
    " $$ BEGIN INSERT INTO public.lim VALUES (NEW.id, NEW.body); RETURN NEW; END $$;"
    " CREATE TRIGGER front_insert INSTEAD OF INSERT ON public.front FOR EACH ROW EXECUTE FUNCTION public.front_insert()",
], ids=["updatable view", "rule", "instead-of trigger"])
def test_c2_writes_through_a_view_the_owner_made_are_counted(db, connect, lim, view):
    """The owner puts a view in front of its limited table (updatable, with a rule, or with an
    INSTEAD OF trigger running as the owner) and grants the writers that view only: each
    statement through it must still take a slot of the table's limit."""
    _limit(connect, "public.lim")
    lim.execute(view)
    lim.execute("GRANT ALL ON public.front TO app_writer")
    inserts = [f"INSERT INTO public.front VALUES ({i}, 'x')" for i in range(1, 5)]
    assert _admitted(connect, inserts) == [True, True, False, False]


@pytest.mark.parametrize("change", ["ALTER TABLE public.p2 DISABLE TRIGGER audit_rate_limit",
                                    "ALTER TABLE public.p2 ENABLE REPLICA TRIGGER audit_rate_limit"])
def test_c2_a_partition_detached_switched_off_and_attached_back_is_limited_or_refused(db, connect, attacker, change):
    """A detached partition is no longer limited, so its owner may switch its (kept) trigger off;
    attaching it back finds a trigger of the right name and function there, and is not made again.
    The attach must be refused (PA008), or the partition limited."""
    attacker.execute("""CREATE TABLE public.parted (id int, body text) PARTITION BY RANGE (id);
                        CREATE TABLE public.p1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
                        CREATE TABLE public.p2 PARTITION OF public.parted FOR VALUES FROM (100) TO (200)""")
    _limit(connect, "public.parted")
    attacker.execute("ALTER TABLE public.parted DETACH PARTITION public.p2")
    attacker.execute(change)
    try:
        attacker.execute("ALTER TABLE public.parted ATTACH PARTITION public.p2 FOR VALUES FROM (100) TO (200)")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    attacker.execute("GRANT ALL ON public.parted, public.p1, public.p2 TO app_writer")
    assert _admitted(connect, [f"INSERT INTO public.p2 VALUES ({i}, 'x')" for i in range(101, 105)]) == [
        True, True, False, False]


def test_c1_the_squatters_late_function_does_not_run_as_the_maintainer(db, fresh_database):
    """The race above, aimed higher: the package's own functions call their helpers by name with
    the argument types they hold, and enable_rate_limit(target regclass) calls _prove_owner(target),
    declared on (oid, uuid DEFAULT ...). The squatter's uncommitted audit._prove_owner(target regclass, token
    uuid DEFAULT ...), committed once
    the install is done, is an exact match and is chosen instead: when the maintainer next limits a
    table, the squatter's code runs with the maintainer's rights (here it notes current_user and
    then makes the real proof, so that nothing fails)."""
    db.execute("CREATE ROLE squatter LOGIN")
    info = db.info
    squatter = None
    try:
        conn = fresh_database("squatted")
        conn.execute("GRANT CREATE ON DATABASE squatted TO squatter")
        squatter = psycopg.connect(host=info.host, port=info.port, dbname="squatted", user="squatter", autocommit=True)
        squatter.execute("""CREATE SCHEMA sq; CREATE TABLE sq.loot (who text);
                            GRANT USAGE ON SCHEMA sq TO PUBLIC; GRANT INSERT ON sq.loot TO PUBLIC;
                            CREATE SCHEMA audit""")
        squatter.autocommit = False
        squatter.execute("""CREATE FUNCTION audit._prove_owner(target regclass, token uuid DEFAULT gen_random_uuid())
                            RETURNS uuid LANGUAGE plpgsql AS $$
                            BEGIN
                                INSERT INTO sq.loot VALUES (current_user);
                                RETURN audit._prove_owner(target::oid, token);
                            END $$""")
        conn.execute("SET statement_timeout = '60s'")
        try:
            install(conn)
        except (InstallError, psycopg.Error):
            squatter.rollback()
            return  # refused: safe
        squatter.commit()
        conn.execute("CREATE TABLE public.t (id int); ALTER TABLE public.t OWNER TO app_maintainer")
        with psycopg.connect(host=info.host, port=info.port, dbname="squatted", user="app_maintainer",
                             autocommit=True) as maintainer, contextlib.suppress(psycopg.Error):
            enable_rate_limit(maintainer, "public.t", per_user_per_minute=5, per_tenant_per_minute=None)
        loot = conn.execute("SELECT who FROM sq.loot").fetchall()
        assert loot == [], f"the squatter's function ran as {loot}; status problems: {status(conn).problems}"
    finally:
        if squatter is not None:
            squatter.close()
        db.execute("DROP DATABASE IF EXISTS squatted WITH (FORCE)")
        db.execute("DROP ROLE squatter")


def test_c5_the_clis_json_of_one_deep_event_is_bounded_like_its_line(db, connect):
    """docs/security.md: what a reader is sent is bounded per event (each event under the sealer's
    16 MiB line). `pgaudit events --json` now writes values of any depth, indented by two spaces a
    level: a payload nested 4,000 levels deep (13 kB as stored) is written with about 4,000^2
    x 2 spaces, 32 MB for one event (a page of 50 such events, 1.6 GB held in memory by the reader's
    CLI); before today it failed with RecursionError. The indentation is quadratic in the depth."""
    from click.testing import CliRunner

    from pgaudit_py.cli import cli

    depth = 4000
    connect("app_writer").execute("SELECT audit.record(kind => 'deep.cli', payload => %s::jsonb)",
                                  ('{"d": ' + "[" * depth + "1" + "]" * depth + "}",))
    stored = db.execute("SELECT pg_column_size(payload) FROM audit.events WHERE kind = 'deep.cli'").fetchone()[0]
    i = db.info
    listed = CliRunner().invoke(cli, ["events", "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader",
                                      "--json"], catch_exceptions=False)
    assert listed.exit_code == 0
    printed = len(listed.output)
    assert printed <= 16 * 2**20, f"{stored} bytes stored, {printed / 1e6:.0f} MB printed for one event"
