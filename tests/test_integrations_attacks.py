"""Attacks on the request-context integrations, the pytest plugin, event catalogues, the install
script and secret listing. Each test states the claim it holds the code to."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pgaudit_py import request_context
from pgaudit_py.catalogues import load_catalogue, read_catalogue
from pgaudit_py.errors import InstallError
from pgaudit_py.events import register_event_type
from pgaudit_py.integrations.asgi import AuditContextMiddleware
from pgaudit_py.pytest_plugin import AuditTrail


def who(request: Request) -> dict[str, str | None]:
    return {"actor_id": request.headers.get("x-user")}


def dsn(db, role: str = "app_writer") -> str:
    info = db.info
    return f"host={info.host} port={info.port} dbname={info.dbname} user={role}"


# ---------------------------------------------------------------- 1. request context (ASGI)

def test_a_task_that_outlives_its_request_does_not_name_the_requester(db):
    """Claim: work outside any request names nobody else. A task spawned by a request (a lazily
    started worker, a fire-and-forget job) copies the request's contextvars and keeps them after the
    request has ended."""
    pool = AsyncConnectionPool(dsn(db), min_size=1, max_size=2, open=False)
    go = asyncio.Event()
    spawned: list[asyncio.Task] = []

    async def later() -> None:
        await go.wait()  # the request is over by now
        async with pool.connection() as conn, request_context.transaction_async(conn):
            await conn.execute("SELECT audit.record(kind => 'job.after_request')")

    async def endpoint(request: Request) -> PlainTextResponse:
        spawned.append(asyncio.create_task(later()))
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/spawn", endpoint)])
    app.add_middleware(AuditContextMiddleware, context=who)

    async def run() -> None:
        await pool.open()
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/spawn", headers={"x-user": "alice"})).status_code == 200
        assert request_context.current() is None  # the request has ended
        go.set()
        await spawned[0]
        await pool.close()

    asyncio.run(run())
    assert db.execute("SELECT actor_type, actor_id FROM audit.events WHERE kind = 'job.after_request'"
                      ).fetchall() == [("db_role", "app_writer")]


@pytest.mark.parametrize("host", ["fe80::1%eth0", "fe80::1%25"])
def test_an_ipv6_client_with_a_zone_does_not_fail_the_request(db, host):
    """Claim: the client address is taken only when it is an IP address (else left out), so that it
    never refuses the transaction's events. Python's ipaddress accepts a scope id; inet does not."""
    assert request_context.ip_address(host) is None or "%" not in request_context.ip_address(host), \
        f"ip_address({host!r}) = {request_context.ip_address(host)!r}, which inet refuses"


def test_an_ipv6_client_with_a_zone_end_to_end(db):
    pool = AsyncConnectionPool(dsn(db), min_size=1, max_size=1, open=False)

    async def endpoint(request: Request) -> PlainTextResponse:
        async with pool.connection() as conn, request_context.transaction_async(conn):
            await conn.execute("SELECT audit.record(kind => 'zone.seen')")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(AuditContextMiddleware, context=who)

    async def run() -> int:
        await pool.open()
        try:
            transport = httpx.ASGITransport(app=app, client=("fe80::1%eth0", 1), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return (await client.get("/", headers={"x-user": "alice"})).status_code
        finally:
            await pool.close()

    assert asyncio.run(run()) == 200


@pytest.mark.parametrize("actor", ["x" * 300, "a\x00b"])
def test_a_hostile_actor_fails_the_request_rather_than_dropping_the_event(db, connect, actor):
    """Fail closed: an actor record() refuses must fail the transaction, never write it unattributed."""
    conn = connect("app_writer")
    with pytest.raises((psycopg.Error, ValueError)), request_context.serving({"actor_id": actor}), \
            request_context.transaction(conn):
        conn.execute("SELECT audit.record(kind => 'hostile.actor')")
    assert db.execute("SELECT count(*) FROM audit.event_intake WHERE kind = 'hostile.actor'").fetchone() == (0,)


def test_newlines_in_an_actor_are_kept_verbatim(db, connect):
    conn = connect("app_writer")
    with request_context.serving({"actor_id": "eve\nuser:admin"}), request_context.transaction(conn):
        conn.execute("SELECT audit.record(kind => 'nl.actor')")
    assert db.execute("SELECT actor_id FROM audit.events WHERE kind = 'nl.actor'").fetchone() == ("eve\nuser:admin",)


def test_background_and_streaming_work_names_the_request_and_the_next_request_nobody(db):
    from starlette.background import BackgroundTask
    from starlette.responses import StreamingResponse

    pool = AsyncConnectionPool(dsn(db), min_size=1, max_size=1, open=False)

    async def write(kind: str) -> None:
        async with pool.connection() as conn, request_context.transaction_async(conn):
            await conn.execute("SELECT audit.record(kind => %s)", (kind,))

    async def endpoint(request: Request):
        async def body():
            await write("stream.chunk")
            yield b"x"
        return StreamingResponse(body(), background=BackgroundTask(write, "bg.task"))

    async def plain(request: Request) -> PlainTextResponse:
        await write("plain.after")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/s", endpoint), Route("/p", plain)])
    app.add_middleware(AuditContextMiddleware, context=who)

    async def run() -> None:
        await pool.open()
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/s", headers={"x-user": "alice"})).status_code == 200
            assert (await client.get("/p")).status_code == 200
        await pool.close()

    asyncio.run(run())
    rows = dict(db.execute("SELECT kind, actor_id FROM audit.events").fetchall())
    assert rows == {"stream.chunk": "alice", "bg.task": "alice", "plain.after": "app_writer"}


# ---------------------------------------------------------------- 1b. request context (Django)

# ---------------------------------------------------------------- 2. the pytest plugin

def test_assert_recorded_does_not_take_1_for_true(db, connect):
    """Can it pass when it should fail: the application recorded 1, the test asks for true."""
    connect("app_writer").execute("""SELECT audit.record(kind => 'order.paid', payload => '{"refunded": 1}')""")
    with pytest.raises(AssertionError):
        AuditTrail(db).assert_recorded("order.paid", payload={"refunded": True})


def test_assert_recorded_changed_empty_does_not_match_an_event_that_changed_nothing(db, connect):
    """changed=[] on an event that is no captured change at all (an explicit record())."""
    connect("app_writer").execute("SELECT audit.record(kind => 'orders.update')")
    with pytest.raises(AssertionError):
        AuditTrail(db).assert_recorded("orders.update", changed=[])


def test_assert_recorded_sees_an_event_older_than_the_newest_500(db, connect):
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 'first.one')")
    writer.execute("SELECT audit.record(kind => 'noise') FROM generate_series(1, 600)")
    AuditTrail(db).assert_recorded("first.one")


# ---------------------------------------------------------------- 3. event catalogues

def test_loading_a_catalogue_does_not_silently_drop_strict(db, connect):
    """Claim: a kind registered by hand is replaced by a catalogue only when asked (same schema
    excepted). A strict kind with the catalogue's schema loses strict without being asked."""
    maintainer = connect("app_maintainer")
    schema = read_catalogue("auth")["kinds"]["auth.login"]["schema"]
    register_event_type(maintainer, "auth.login", schema, strict=True)
    load_catalogue(maintainer, "auth")
    assert db.execute("SELECT strict FROM audit.event_types WHERE kind = 'auth.login'").fetchone() == (True,)


def test_reloading_a_catalogue_changes_nothing_after_a_kind_was_made_strict(db, connect):
    maintainer = connect("app_maintainer")
    load_catalogue(maintainer, "auth")
    schema = read_catalogue("auth")["kinds"]["auth.login"]["schema"]
    register_event_type(maintainer, "auth.login", schema, strict=True, replace=True, catalogue="auth")
    load_catalogue(maintainer, "auth")  # a deploy step, run on every release: "loading twice changes nothing"
    assert db.execute("SELECT strict FROM audit.event_types WHERE kind = 'auth.login'").fetchone() == (True,)


def test_claiming_a_catalogue_by_hand_does_not_replace_its_kind_unasked(db, connect):
    """A kind of catalogue auth is replaced only with replace => true; naming the catalogue by hand
    should not be a way around it."""
    maintainer = connect("app_maintainer")
    load_catalogue(maintainer, "auth")
    with pytest.raises(psycopg.Error):
        maintainer.execute("""SELECT audit.register_event_type('auth.login', '{}'::jsonb, catalogue => 'auth')""")


def test_a_concurrent_hand_registration_is_not_silently_replaced_by_a_catalogue(db, connect):
    """Race: the hand registration commits while the catalogue's INSERT ... ON CONFLICT waits."""
    hand = connect("app_maintainer", autocommit=False)
    hand.execute("""SELECT audit.register_event_type('auth.login', '{"type": "object"}'::jsonb)""")
    loader = connect("app_maintainer")
    outcome: list[object] = []

    def load() -> None:
        try:
            outcome.append(load_catalogue(loader, "auth"))
        except Exception as exc:  # noqa: BLE001
            outcome.append(exc)

    t = threading.Thread(target=load)
    t.start()
    t.join(1.5)  # blocked on the uncommitted row
    hand.commit()
    t.join(30)
    row = db.execute("SELECT schema, catalogue FROM audit.event_types WHERE kind = 'auth.login'").fetchone()
    # Either the load failed (as it does without the race) or the hand registration stands.
    assert isinstance(outcome[0], Exception) or row == ({"type": "object"}, None), (outcome, row)


def test_catalogue_roles_and_names(db, connect):
    for role in ("app_writer", "app_reader", "app_attacker", "app_secrets"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connect(role).execute("SELECT audit.register_event_type('auth.login', '{}'::jsonb, catalogue => 'auth')")
    for name in ("../auth", "auth/../auth", "/etc/passwd", "auth.json", "AUTH", ""):
        with pytest.raises(Exception, match="no catalogue named"):
            load_catalogue(connect("app_maintainer"), name)


# ---------------------------------------------------------------- 4. install script

def test_the_script_refuses_a_pgcrypto_a_non_superuser_created(db, fresh_database):
    """install() refuses, as a superuser, a pgcrypto whose owner is not one (the owner could swap its
    functions for look-alikes the audit owner runs). The script, generated by the same superuser,
    must refuse it too."""
    name = "attack_pgcrypto"
    conn = fresh_database(name)
    db.execute("DROP ROLE IF EXISTS crypto_squatter")
    db.execute("CREATE ROLE crypto_squatter LOGIN")
    db.execute(f"GRANT CREATE ON DATABASE {name} TO crypto_squatter")
    info = db.info
    try:
        with psycopg.connect(host=info.host, port=info.port, user="crypto_squatter", dbname=name,
                             autocommit=True) as squatter:
            squatter.execute("CREATE SCHEMA squat")
            squatter.execute("CREATE EXTENSION pgcrypto SCHEMA squat")  # trusted: no superuser needed
        from pgaudit_py.install_script import install_script
        from pgaudit_py.installer import install

        with pytest.raises(InstallError, match="pgcrypto"):
            install(conn)
        script = None
        with contextlib.suppress(InstallError):
            script = install_script(conn)
        assert script is None, "install_script() generated a script using the squatter's pgcrypto: " + \
            ("uses \"squat\"." if '"squat"' in (script or "") or "squat." in (script or "") else "")
    finally:
        conn.close()
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        db.execute("DROP ROLE IF EXISTS crypto_squatter")


# ---------------------------------------------------------------- 5. secrets listing

def test_a_script_written_before_a_squatter_made_pgcrypto_refuses_to_run(db, fresh_database):
    """install() and install_script() refuse a pgcrypto that a role which is no superuser created
    (it could drop the audit owner's functions with one CASCADE). A script written before such a
    role made it, and applied after, checks again and refuses."""
    import subprocess

    from pgaudit_py.install_script import install_script
    from pgaudit_py.tempdb import find_binary

    name = "attack_pgcrypto2"
    conn = fresh_database(name)
    db.execute("DROP ROLE IF EXISTS crypto_squatter2")
    db.execute("CREATE ROLE crypto_squatter2 LOGIN")
    db.execute(f"GRANT CREATE ON DATABASE {name} TO crypto_squatter2")
    info = db.info
    try:
        script = install_script(conn)  # no pgcrypto yet: the script will create it
        with psycopg.connect(host=info.host, port=info.port, user="crypto_squatter2", dbname=name,
                             autocommit=True) as squatter:
            squatter.execute("CREATE SCHEMA squat")
            squatter.execute("CREATE EXTENSION pgcrypto SCHEMA squat")
        done = subprocess.run([find_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", info.host,
                               "-p", str(info.port), "-U", info.user, "-d", name, "-f", "-"],
                              input=script, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and "pgcrypto is not where, or whose, it was" in done.stderr
        assert conn.execute("SELECT to_regnamespace('audit')").fetchone() == (None,)  # nothing was installed
    finally:
        conn.close()
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        db.execute("DROP ROLE IF EXISTS crypto_squatter2")


def test_a_stale_script_applied_after_an_install_fails_cleanly_or_does_nothing(db, fresh_database):
    import subprocess

    from pgaudit_py.install_script import install_script
    from pgaudit_py.installer import install, status
    from pgaudit_py.tempdb import find_binary

    conn = fresh_database("attack_stale_script")
    info = conn.info
    script = install_script(conn)

    def apply() -> subprocess.CompletedProcess:
        return subprocess.run([find_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", info.host,
                               "-p", str(info.port), "-U", info.user, "-d", info.dbname, "-f", "-"],
                              input=script, capture_output=True, text=True, timeout=300)

    assert apply().returncode == 0
    second = apply()  # the same script twice (a migrator retrying)
    install(conn)  # then the installer, as a concurrent deploy would
    third = apply()
    st = status(conn)
    conn.close()
    assert st.intact, st.problems
    # Each stale application fails cleanly, saying what to do, and changes nothing.
    for stale in (second, third):
        assert stale.returncode != 0 and "regenerate it (pgaudit-install --sql)" in stale.stderr, stale.stderr[-600:]
