"""A fifty-third attacker's trial, on the newcomer's path: the actor context that "cannot mislabel"
(README "Who acted, from each web request", docs/python.md, docs/integrations.md): `audit_context`
and `pgaudit_py.aio.audit_context` (pgaudit_py/context.py, pgaudit_py/aio.py), the request context
(pgaudit_py/request_context.py) and its integrations for Starlette (pgaudit_py/integrations/asgi.py)
and Django (pgaudit_py/integrations/django.py), psycopg's pool, the async API against the sync one,
and the database role the log vouches for (docs/security.md "What the session claims",
docs/roles.md).

Variants: a session-level value (from the DSN's options, PGOPTIONS, or an earlier borrower of a
pooled connection) and an outermost block run in psycopg's pipeline mode; a connection whose
`row_factory` is psycopg's dict_row, namedtuple_row or scalar_row, under nested blocks; Django's
server-side cursors (QuerySet.iterator()), a savepoint rolled back after a database error, a worker
thread carrying the request's context, and an async streamed body under Django's ASGI handler; a
sync Starlette endpoint, a sync streamed body and a thread the request started; an application
mounted inside another's request; the async API and the sync API given the same hostile values and
the same bad input (compared on what the database holds, and on the errors raised); a writer, and
a role with no audit grant at all, that try to make the log name another database role (ALTER ROLE
... SET role / session_authorization / pgaudit_py.*, the DSN's options, set_config, SET LOCAL, a
SECURITY DEFINER function of their own with a SET role clause).

Each test asserts the SAFE outcome on what the database holds: it passes when the product holds and
fails when the attack works.

Roles: every role made here is named t53_*, and dropped after its test (app_writer and the other
conftest.py roles are only used).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row, namedtuple_row, scalar_row
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from test_trust_attacks_10 import django_db  # noqa: F401 - a fixture: Django on this test's database

from pgaudit_py import aio, audit_context, record, request_context
from pgaudit_py.errors import InvalidPayload
from pgaudit_py.integrations.asgi import AuditContextMiddleware

# Every column of audit.events but those that differ by run (ids, times, transaction ids).
COMPARED = ("kind, tenant_id, actor_type, actor_id, db_role, host(client_addr), target_type, target_id, outcome,"
            " correlation_id, idempotency_key, payload, origin")


def dsn_of(db: psycopg.Connection, role: str) -> str:
    info = db.info
    return f"host={info.host} port={info.port} dbname={info.dbname} user={role}"


def events(db: psycopg.Connection, columns: str = "kind, actor_type, actor_id, tenant_id, correlation_id",
           where: str = "true") -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT {columns} FROM audit.events WHERE {where} ORDER BY intake_id").fetchall()


# ====================== 1. the outermost block, in psycopg's pipeline mode ======================
#
# docs/python.md: "Outside any transaction, the values it does not name are cleared (nothing carries
# over from the session)". context.py and aio.py decide "outside any transaction" by
# conn.info.transaction_status == IDLE; in pipeline mode a statement sent and not yet synced leaves it
# ACTIVE, with no transaction of the caller's open (autocommit): the block then takes itself for a
# nested one and inherits what the session holds.

LEFTOVER = "-c pgaudit_py.tenant_id=evil-corp -c pgaudit_py.correlation_id=forged-req"


def test_an_outermost_block_in_pipeline_mode_does_not_inherit_the_sessions_values(db, connect):
    """Attack: the pooled connection's DSN sets session-level pgaudit_py.* values (options=, as
    PGOPTIONS does; an earlier borrower's set_config(..., false) does the same). The application
    batches its statements in a pipeline on an autocommit connection and opens
    audit_context(actor_id='alice') after a first statement. Safe: the event names alice, with no
    tenant and no correlation id (the block named neither), as outside the pipeline."""
    writer = connect("app_writer", options=LEFTOVER)
    with writer.pipeline():
        writer.execute("SELECT 1")
        with audit_context(writer, actor_id="alice"):
            record(writer, "pipe.sync")
    assert events(db) == [("pipe.sync", "user", "alice", None, None)]


def test_an_outermost_async_block_in_pipeline_mode_does_not_inherit_the_sessions_values(db):
    """The same on an AsyncConnection with pgaudit_py.aio.audit_context."""

    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn_of(db, "app_writer"), autocommit=True, options=LEFTOVER)
        try:
            async with conn.pipeline():
                await conn.execute("SELECT 1")
                async with aio.audit_context(conn, actor_id="alice"):
                    await aio.record(conn, "pipe.async")
        finally:
            await conn.close()

    asyncio.run(run())
    assert events(db) == [("pipe.async", "user", "alice", None, None)]


def test_a_request_transaction_outside_the_pipeline_names_nobody_the_dsn_claimed(db, connect):
    """Control (README: "a pooled connection carries nothing to the next request"): the same DSN,
    no pipeline; a transaction outside any request, and an audit_context naming the actor only."""
    writer = connect("app_writer", options=LEFTOVER)
    with request_context.transaction(writer):
        writer.execute("SELECT audit.record(kind => 'no.request')")
    with audit_context(writer, actor_id="alice"):
        record(writer, "named.actor")
    assert events(db) == [("no.request", "db_role", "app_writer", None, None),
                          ("named.actor", "user", "alice", None, None)]


# ====================== 2. the caller's row factory ======================
#
# The package's calls set their own row factory (calls.py: class_row); audit_context reads the values
# around a nested block (GET_CONTEXT) and sets them (SET_CONTEXT) through the connection's own, which
# psycopg lets the caller choose (psycopg.connect(..., row_factory=dict_row) is common). Every column
# of both queries has one name ("coalesce", "set_config").


def nested_blocks(conn: psycopg.Connection) -> None:
    """The documented nesting (docs/python.md): the inner block overrides what it names, inherits
    the rest, and the outer values are back after it."""
    with audit_context(conn, actor_type="admin", actor_id="root", tenant_id="acme"):
        with audit_context(conn, actor_id="bob", client_addr="203.0.113.7"):
            record(conn, "rf.inner")
        record(conn, "rf.outer")


@pytest.mark.parametrize("factory", [dict_row, namedtuple_row], ids=["dict_row", "namedtuple_row"])
def test_nested_blocks_on_a_connection_with_its_own_row_factory_record_as_documented(db, connect, factory):
    """Attack (an application whose connections return dicts or named tuples): nested blocks, as
    docs/python.md shows them. dict_row: the values read around the inner block are a dict of one
    key, which zip(strict=True) refuses; namedtuple_row: psycopg cannot make a row of SET_CONTEXT's
    five columns named alike, so even the outermost block fails. Safe: both events are written,
    named as documented."""
    with contextlib.suppress(Exception):  # a failure is what the assertion below shows
        nested_blocks(connect("app_writer", row_factory=factory))
    assert events(db, "kind, actor_type, actor_id, tenant_id, host(client_addr)") == [
        # The outer block names no address: the connection's (docs/integrations.md, how-it-works.md).
        ("rf.inner", "admin", "bob", "acme", "203.0.113.7"), ("rf.outer", "admin", "root", "acme", "127.0.0.1")]


def test_an_inner_block_on_a_scalar_row_connection_does_not_name_letters_of_the_outer_actor_type(db, connect):
    """Attack (scalar_row, psycopg 3.2's factory for one-value queries): the values read around the
    inner block come back as the first one alone, a string, which zip() walks letter by letter: with
    an outer actor type of five letters the inner event takes 'a', 'm', 'i' as its actor type,
    tenant and correlation id. Safe: the inner event names the outer block's actor type and tenant,
    no correlation id."""
    conn = connect("app_writer", row_factory=scalar_row)
    outer = {"actor_type": "admin", "actor_id": "root", "tenant_id": "acme"}
    inner = {"actor_id": "bob", "client_addr": "203.0.113.7"}
    with contextlib.suppress(Exception), audit_context(conn, **outer), audit_context(conn, **inner):
        record(conn, "rf.inner")
    assert events(db) == [("rf.inner", "admin", "bob", "acme", None)]


def test_an_async_nested_block_on_a_dict_row_connection_records_as_documented(db):
    """The same nesting through pgaudit_py.aio on an AsyncConnection returning dicts."""

    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn_of(db, "app_writer"), autocommit=True, row_factory=dict_row)
        try:
            async with aio.audit_context(conn, actor_type="admin", actor_id="root", tenant_id="acme"):
                async with aio.audit_context(conn, actor_id="bob"):
                    await aio.record(conn, "rf.inner")
                await aio.record(conn, "rf.outer")
        finally:
            await conn.close()

    with contextlib.suppress(Exception):
        asyncio.run(run())
    assert events(db, "kind, actor_type, actor_id, tenant_id") == [
        ("rf.inner", "admin", "bob", "acme"), ("rf.outer", "admin", "root", "acme")]


# ====================== 3. Django: queries the wrapper sees but does not reach ======================
#
# docs/integrations.md: "The middleware wraps every query of the request on each of Django's
# connections and sets the values transaction-locally first". _wrapper sets them with
# context["cursor"].cursor, the query's own psycopg cursor; for QuerySet.iterator() that is a named
# (server-side) cursor, whose execute() only DECLAREs a query: the SELECT set_config(...) never runs,
# and the next execute() closes it. Known, and left (docs): callproc and COPY only.

_MODELS: dict[str, Any] = {}


def dj_order_model() -> Any:
    """public.dj_orders (test_trust_attacks_10's django_db fixture) as an unmanaged model, made once a process."""
    if "DjOrder" not in _MODELS:
        from django.db import models

        class DjOrder(models.Model):
            id = models.IntegerField(primary_key=True)
            status = models.TextField()

            class Meta:
                app_label = "t53"
                db_table = "dj_orders"
                managed = False

        _MODELS["DjOrder"] = DjOrder
    return _MODELS["DjOrder"]


def django_request(view: Callable[[Any], Any]) -> int:
    from django.test import RequestFactory

    from pgaudit_py.integrations.django import AuditContextMiddleware

    request = RequestFactory().post("/", headers={"x-user": "alice", "x-tenant": "t1"})
    return int(AuditContextMiddleware(view)(request).status_code)


@pytest.mark.parametrize("atomic", [False, True], ids=["autocommit", "atomic"])
def test_a_django_querysets_iterator_names_the_requests_actor(db, django_db, atomic):  # noqa: F811
    """Attack: a view walks a queryset with .iterator() (a server-side cursor on PostgreSQL, Django's
    way for large results), its rows computed by a function that refunds each order (a captured
    UPDATE), in autocommit and inside transaction.atomic. Safe: the captured change names the
    request's user and tenant."""
    from django.db import transaction
    from django.db.models.expressions import RawSQL
    from django.http import HttpResponse

    order = dj_order_model()

    def view(request: Any) -> HttpResponse:
        with transaction.atomic() if atomic else contextlib.nullcontext():
            refunded = [o.r for o in order.objects.annotate(r=RawSQL("public.refund(id)", [])).iterator()]
        assert refunded == [1]
        return HttpResponse("ok")

    assert django_request(view) == 200
    assert events(db, "kind, actor_id, tenant_id", "kind LIKE 'public.dj_orders.%'") == [
        ("public.dj_orders.update", "alice", "t1")]


def test_a_django_savepoint_rolled_back_after_a_database_error_leaves_the_request_recording(db, django_db):  # noqa: F811
    """Attack (Django's documented way to recover from an IntegrityError inside a transaction: an
    inner atomic block whose savepoint is rolled back): Django sends ROLLBACK TO SAVEPOINT through
    cursor.execute, so through the wrapper, which first runs SELECT set_config(...) in the aborted
    transaction. Safe: as without the middleware, the view goes on and its event is recorded,
    naming the request's user."""
    from django.db import IntegrityError, connection, transaction
    from django.http import HttpResponse

    def view(request: Any) -> HttpResponse:
        with transaction.atomic(), connection.cursor() as cursor:
            try:
                with transaction.atomic():
                    cursor.execute("INSERT INTO public.dj_orders VALUES (1, 'again')")  # its key is taken
            except IntegrityError:
                pass
            cursor.execute("SELECT audit.record(kind => 'dj.after_savepoint')")
        return HttpResponse("ok")

    with contextlib.suppress(Exception):
        django_request(view)
    assert events(db, "kind, actor_id, tenant_id", "kind = 'dj.after_savepoint'") == [
        ("dj.after_savepoint", "alice", "t1")]


def test_a_django_query_in_a_thread_carrying_the_requests_context_names_the_request(db, django_db):  # noqa: F811
    """Attack (a view that fans work out to a worker thread, carrying the request's context with
    contextvars.copy_context(), as asgiref's sync_to_async does): the thread's query runs on its own
    connection of Django's, which the middleware's execute_wrapper (installed per thread) never
    reaches, although request_context.current() there is the request. Safe, by "every query a
    request runs, on every database connection of Django's": the event names alice of tenant t1."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections
    from django.http import HttpResponse

    def in_thread() -> None:
        try:
            dj_record("dj.thread")
        finally:
            connections.close_all()

    def view(request: Any) -> HttpResponse:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(contextvars.copy_context().run, in_thread).result()
        return HttpResponse("ok")

    assert django_request(view) == 200
    assert events(db, "kind, actor_id, tenant_id", "kind = 'dj.thread'") == [("dj.thread", "alice", "t1")]


def dj_record(kind: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT audit.record(kind => %s)", [kind])


async def dj_async_streamed_view(request: Any) -> Any:
    """An async view whose streamed body does its database work the way Django's async code does
    it: sync_to_async (thread-sensitive), directly or through the async ORM."""
    from asgiref.sync import sync_to_async
    from django.http import StreamingHttpResponse

    async def body() -> Any:
        if request.GET.get("way") == "orm":
            await dj_order_model().objects.filter(id=1).aupdate(status="shipped")
        else:
            await sync_to_async(dj_record)("dj.async_stream")
        yield b"x"
    return StreamingHttpResponse(body())


async def dj_async_view(request: Any) -> Any:
    from asgiref.sync import sync_to_async
    from django.http import HttpResponse

    await sync_to_async(dj_record)("dj.async_view")
    return HttpResponse("ok")


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("stream", dj_async_streamed_view), path("view", dj_async_view)]


urlpatterns: list[Any] = []  # filled when Django is configured (ROOT_URLCONF points here)


@pytest.mark.parametrize("way", ["sync_to_async", "orm"], ids=["sync_to_async", "async ORM"])
def test_an_async_streamed_body_under_asgi_names_the_request(db, django_db, way):  # noqa: F811
    """Claim (docs/integrations.md, Django): "A streamed body is served with the request's context";
    _streamed wraps an async iterator for it. Under Django's ASGI handler the database work of async
    code runs through sync_to_async, in the request's thread-sensitive thread, whose connection the
    body's wrapper is never put on (_streamed installs it on the event loop thread's connections, a
    thread-local). Control: an async view (not streamed) in the same run. Safe: both name alice of
    tenant t1 and the client's address."""
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler

    urlpatterns[:] = _urlpatterns()
    saved = {name: getattr(settings, name, None) for name in ("ROOT_URLCONF", "MIDDLEWARE")}
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = ["pgaudit_py.integrations.django.AuditContextMiddleware"]
    try:
        app = ASGIHandler()

        async def run() -> None:
            transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                for url in ("/view", f"/stream?way={way}"):
                    assert (await client.get(url, headers={"x-user": "alice", "x-tenant": "t1"})).status_code == 200

        asyncio.run(run())
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)
    streamed = "public.dj_orders.update" if way == "orm" else "dj.async_stream"
    assert events(db, "kind, actor_id, tenant_id, host(client_addr)", "origin <> 'system'") == [
        ("dj.async_view", "alice", "t1", "203.0.113.9"), (streamed, "alice", "t1", "203.0.113.9")]


# ====================== 4. Starlette: threads, sync bodies, a request inside a request ======================


def test_sync_endpoints_sync_bodies_and_a_thread_the_request_started_name_whom_they_should(db):
    """Claims (docs/integrations.md): a streamed body is still the request's; a task a request
    started that runs on after the request has ended names nobody. Here the sync forms: a sync
    endpoint (run in a worker thread), a sync generator as the streamed body, and a thread started
    with a copy of the request's context that writes after the request ended. Safe: alice, bob, and
    the database role."""
    pool = ConnectionPool(dsn_of(db, "app_writer"), min_size=1, max_size=1, open=True)
    later: list[tuple[threading.Thread, threading.Event]] = []

    def write(kind: str) -> None:
        with pool.connection() as conn, request_context.transaction(conn):
            conn.execute("SELECT audit.record(kind => %s)", (kind,))

    def sync_endpoint(request: Request) -> PlainTextResponse:
        write("sync.endpoint")
        ctx, go = contextvars.copy_context(), threading.Event()
        thread = threading.Thread(target=lambda: (go.wait(), ctx.run(write, "thread.after_request")))
        thread.start()
        later.append((thread, go))
        return PlainTextResponse("ok")

    def streamed(request: Request) -> StreamingResponse:
        def body() -> Iterator[bytes]:
            write("sync.stream")
            yield b"x"
        return StreamingResponse(body())

    app = Starlette(routes=[Route("/sync", sync_endpoint), Route("/stream", streamed)])
    app.add_middleware(AuditContextMiddleware, context=lambda r: {"actor_id": r.headers.get("x-user")})

    async def run() -> None:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/sync", headers={"x-user": "alice"})).status_code == 200
            assert (await client.get("/stream", headers={"x-user": "bob"})).status_code == 200

    try:
        asyncio.run(run())
        for thread, go in later:
            go.set()
            thread.join(10)
    finally:
        pool.close()
    assert events(db, "kind, actor_type, actor_id") == [
        ("sync.endpoint", "user", "alice"), ("sync.stream", "user", "bob"),
        ("thread.after_request", "db_role", "app_writer")]


def test_a_request_served_inside_another_gives_the_outer_request_back(db):
    """An endpoint that calls another ASGI application in-process (an internal API, with its own
    middleware and its own idea of who acts): the inner request's writes name the inner actor, and
    the outer request's writes after it name the outer actor again, from the inner one's address
    too."""
    pool = ConnectionPool(dsn_of(db, "app_writer"), min_size=1, max_size=2, open=True)

    def write(kind: str) -> None:
        with pool.connection() as conn, request_context.transaction(conn):
            conn.execute("SELECT audit.record(kind => %s)", (kind,))

    async def inner_endpoint(request: Request) -> PlainTextResponse:
        write("inner.ran")
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/", inner_endpoint)])
    inner.add_middleware(AuditContextMiddleware, context=lambda r: {"actor_id": "svc", "actor_type": "service"})

    async def outer_endpoint(request: Request) -> PlainTextResponse:
        write("outer.before")
        transport = httpx.ASGITransport(app=inner, client=("10.0.0.5", 2))
        async with httpx.AsyncClient(transport=transport, base_url="http://inner") as client:
            assert (await client.get("/")).status_code == 200
        write("outer.after")
        return PlainTextResponse("ok")

    outer = Starlette(routes=[Route("/", outer_endpoint)])
    outer.add_middleware(AuditContextMiddleware, context=lambda r: {"actor_id": r.headers.get("x-user")})

    async def run() -> None:
        transport = httpx.ASGITransport(app=outer, client=("203.0.113.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/", headers={"x-user": "alice"})).status_code == 200

    try:
        asyncio.run(run())
    finally:
        pool.close()
    assert events(db, "kind, actor_type, actor_id, host(client_addr)") == [
        ("outer.before", "user", "alice", "203.0.113.9"), ("inner.ran", "service", "svc", "10.0.0.5"),
        ("outer.after", "user", "alice", "203.0.113.9")]


# ====================== 5. the async API records and refuses as the sync one ======================

HOSTILE = {"actor_type": "user:admin", "actor_id": "alice\u202e:bob,carol", "tenant_id": "acme\u2028globex",
           "correlation_id": "r\t1 -- 2", "client_addr": "2001:db8::1"}


def scenario_sync(conn: psycopg.Connection, key: str) -> None:
    with audit_context(conn, **HOSTILE):
        record(conn, "parity.one", target_type="order", target_id="o:1,2", payload={"k": "v:w", "n": 12.5})
        with audit_context(conn, actor_id="bob", tenant_id=""):
            record(conn, "parity.nested")
        record(conn, "parity.retry", actor_id="explicit", idempotency_key=key)
        record(conn, "parity.retry", actor_id="explicit", idempotency_key=key)  # the same event back
        # Bad input raises under best_effort too, nothing written (trial 88, r15): it was logged and lost.
        with pytest.raises(InvalidPayload):
            record(conn, "parity.lost", payload={"n": float("inf")}, best_effort=True)
        record(conn, "parity.after")
    record(conn, "parity.outside", outcome="failure")


async def scenario_async(conn: psycopg.AsyncConnection, key: str) -> None:
    async with aio.audit_context(conn, **HOSTILE):
        await aio.record(conn, "parity.one", target_type="order", target_id="o:1,2", payload={"k": "v:w", "n": 12.5})
        async with aio.audit_context(conn, actor_id="bob", tenant_id=""):
            await aio.record(conn, "parity.nested")
        await aio.record(conn, "parity.retry", actor_id="explicit", idempotency_key=key)
        await aio.record(conn, "parity.retry", actor_id="explicit", idempotency_key=key)
        with pytest.raises(InvalidPayload):
            await aio.record(conn, "parity.lost", payload={"n": float("inf")}, best_effort=True)
        await aio.record(conn, "parity.after")
    await aio.record(conn, "parity.outside", outcome="failure")


def run_async(db: psycopg.Connection, scenario: Callable[[psycopg.AsyncConnection], Any], role: str = "app_writer") -> None:
    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn_of(db, role), autocommit=True)
        try:
            await scenario(conn)
        finally:
            await conn.close()

    asyncio.run(run())


def test_the_async_api_records_what_the_sync_api_records_for_the_same_hostile_values(db, connect):
    """Hostile values (a type holding ':', an id holding a right-to-left override, ':' and ',', a
    tenant holding U+2028, a correlation id with a tab and '--'), a nested block clearing the tenant,
    an idempotent retry, a best_effort record of bad input (refused by both): the sync API in one database role's
    session, then the async API in a second role's (idempotency keys are per tenant, whatever the
    role: each run has its own). Safe: the rows are the same but for the role and the key."""
    db.execute("CREATE ROLE t53_async LOGIN; GRANT audit_writer TO t53_async")
    try:
        scenario_sync(connect("app_writer"), "key-1")
        run_async(db, lambda conn: scenario_async(conn, "key-2"), "t53_async")
    finally:
        db.execute("DROP ROLE t53_async")
    by_sync = events(db, COMPARED, "db_role = 'app_writer'")
    by_async = [tuple({"t53_async": "app_writer", "key-2": "key-1"}.get(v, v) if isinstance(v, str) else v for v in row)
                for row in events(db, COMPARED, "db_role = 't53_async'")]
    assert len(by_sync) == 5 and by_sync[0][1:4] == ("acme\u2028globex", "user:admin", "alice\u202e:bob,carol")
    assert by_async == by_sync


BAD_INPUT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # (the context's values, record()'s arguments)
    "an actor of 300 characters": ({"actor_id": "x" * 300}, {}),
    "a NUL in the tenant": ({"tenant_id": "a\x00b"}, {}),
    "a client address that is none": ({"client_addr": "10.0.0.1, 10.0.0.2"}, {}),
    "a lone surrogate in the correlation id": ({"correlation_id": "\ud800"}, {}),
    "an outcome that is neither": ({}, {"outcome": "maybe"}),
    "a kind that is none": ({}, {"kind": "1 kind"}),
    "a payload number past a double": ({}, {"payload": {"n": float("inf")}}),
}


def _caught(call: Callable[[], Any]) -> tuple[str, str | None]:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the class and SQLSTATE are compared
        return type(exc).__name__, getattr(exc, "sqlstate", None)
    return "nothing raised", None


@pytest.mark.parametrize("bad", list(BAD_INPUT))
def test_the_async_api_refuses_bad_input_as_the_sync_api_does_and_writes_nothing(db, connect, bad):
    """Safe: the same exception class (and SQLSTATE) from both, an exception at all, and nothing
    written by either."""
    context, arguments = BAD_INPUT[bad]
    arguments = {"kind": "bad.input", **arguments}

    def sync_call() -> None:
        conn = connect("app_writer")
        with audit_context(conn, **context):
            record(conn, **arguments)

    async def async_scenario(conn: psycopg.AsyncConnection) -> None:
        async with aio.audit_context(conn, **context):
            await aio.record(conn, **arguments)

    by_sync = _caught(sync_call)
    by_async = _caught(lambda: run_async(db, async_scenario))
    assert by_sync[0] != "nothing raised"
    assert by_async == by_sync
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)


# ====================== 6. the database role the log vouches for ======================
#
# docs/security.md: the actor, the tenant and the correlation id are what the writing session says;
# "What the database vouches for is db_role, which no code in the session changes but by the roles
# the writer may act as." The roles here may act as no one else.


@pytest.fixture
def t53_roles(db):
    """t53_writer (audit_writer, owner of schema t53) and t53_nobody (no audit role), both may
    insert into public.t53_notes, a tracked table; neither is a member of any other role."""
    db.execute("""CREATE ROLE t53_writer LOGIN; GRANT audit_writer TO t53_writer;
                  CREATE ROLE t53_nobody LOGIN;
                  CREATE SCHEMA t53 AUTHORIZATION t53_writer;
                  CREATE TABLE public.t53_notes (id serial PRIMARY KEY, body text);
                  GRANT INSERT ON public.t53_notes TO t53_writer, t53_nobody;
                  GRANT USAGE ON SEQUENCE public.t53_notes_id_seq TO t53_writer, t53_nobody""")
    db.execute("SELECT audit.enable_tracking('public.t53_notes')")
    try:
        yield
    finally:
        db.execute("DROP SCHEMA t53 CASCADE")
        db.execute("DROP TABLE public.t53_notes")
        for role in ("t53_writer", "t53_nobody"):
            db.execute(f"DROP OWNED BY {role}")
            db.execute(f"DROP ROLE {role}")


def roles_in_log(db: psycopg.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT DISTINCT db_role FROM audit.events WHERE origin <> 'system'")}


def write_both_ways(conn: psycopg.Connection, may_record: bool) -> None:
    """A captured insert and, for a writer, a recorded event, each in a transaction of its own."""
    with conn.transaction():
        conn.execute("INSERT INTO public.t53_notes (body) VALUES ('x')")
    if may_record:
        record(conn, "role.claim")


@pytest.mark.parametrize("setting", ["role = 'app_maintainer'", "session_authorization = 'app_maintainer'",
                                     "pgaudit_py.actor_id = 'app_maintainer'"])
@pytest.mark.parametrize("who", ["t53_writer", "t53_nobody"])
def test_a_role_cannot_have_its_logins_named_as_another_role_by_alter_role_set(db, connect, t53_roles, setting, who):
    """Attack: the role stores a setting for its own logins (ALTER ROLE itself SET, which PostgreSQL
    lets a role do for parameters it may set, and accepts for role and session_authorization with
    at most a notice), then logs in and writes. Safe: every event's db_role is the role itself."""
    with contextlib.suppress(psycopg.Error):
        connect(who).execute(f"ALTER ROLE {who} SET {setting}")
    try:
        conn = connect(who)
    except psycopg.OperationalError:  # a login refused is safe too
        assert roles_in_log(db) == set()
        return
    write_both_ways(conn, who == "t53_writer")
    assert roles_in_log(db) == {who}


@pytest.mark.parametrize("who", ["t53_writer", "t53_nobody"])
def test_a_role_cannot_name_another_role_through_its_dsn_options(db, connect, t53_roles, who):
    """Attack: options='-c role=app_maintainer' in the DSN (PGOPTIONS), with a claimed actor beside
    it. Safe: the login is refused, or the events' db_role is the role itself."""
    try:
        conn = connect(who, options="-c role=app_maintainer -c pgaudit_py.actor_id=app_maintainer")
    except psycopg.OperationalError:  # refused at login: safe
        assert roles_in_log(db) == set()
        return
    write_both_ways(conn, who == "t53_writer")
    assert roles_in_log(db) == {who}


SESSION_TRIES = {
    "set_config('role', ..., true)": "SELECT set_config('role', 'app_maintainer', true)",
    "SET LOCAL ROLE": "SET LOCAL ROLE app_maintainer",
    "SET LOCAL session_authorization": "SET LOCAL session_authorization = 'app_maintainer'",
    "set_config of the claims": "SELECT set_config('pgaudit_py.actor_id', 'app_maintainer', true),"
                                " set_config('pgaudit_py.actor_type', 'db_role', true)",
}


@pytest.mark.parametrize("attempt", list(SESSION_TRIES))
def test_a_writer_cannot_set_another_db_role_in_its_session(db, connect, t53_roles, attempt):
    """Attack: the writer, inside the transaction that writes, tries to become (or to be named as)
    the maintainer. The claims (actor_type 'db_role', actor_id 'app_maintainer') are the session's
    to make (docs/security.md); db_role is not. Safe: each event's db_role is t53_writer."""
    conn = connect("t53_writer")
    for kind in ("role.claim.recorded", "role.claim.captured"):
        with contextlib.suppress(psycopg.Error), conn.transaction():
            with contextlib.suppress(psycopg.Error), conn.transaction():
                conn.execute(SESSION_TRIES[attempt])
            if kind.endswith("recorded"):
                record(conn, kind)
            else:
                conn.execute("INSERT INTO public.t53_notes (body) VALUES ('x')")
    assert roles_in_log(db) == {"t53_writer"}


@pytest.mark.parametrize("definer", [True, False], ids=["security definer", "security invoker"])
def test_a_writers_own_function_with_a_set_role_clause_does_not_name_another_role(db, connect, t53_roles, definer):
    """Attack: the writer makes a function of its own, in its own schema, that records an event and
    writes the tracked table under a SET role = 'app_maintainer' clause (PostgreSQL checks the clause
    only when the function runs). Safe: creating or calling it fails, or the events name t53_writer."""
    conn = connect("t53_writer")
    with contextlib.suppress(psycopg.Error):
        conn.execute(f"""CREATE FUNCTION t53.act() RETURNS void LANGUAGE plpgsql
                         {'SECURITY DEFINER' if definer else ''} SET role = 'app_maintainer'
                         AS $$ BEGIN PERFORM audit.record(kind => 'role.function');
                                     INSERT INTO public.t53_notes (body) VALUES ('f'); END $$""")
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT t53.act()")
    assert roles_in_log(db) <= {"t53_writer"}
