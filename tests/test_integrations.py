"""Request context from a web framework into every transaction a request runs: Starlette's
middleware with a SQLAlchemy session hook and with psycopg's pool, under concurrent requests that
share a few pooled connections; each event names its own request's actor, and a request without
one (or work outside any request) names nobody else's."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pgaudit_py import request_context
from pgaudit_py.integrations.asgi import AuditContextMiddleware
from pgaudit_py.integrations.sqlalchemy import audit_sessions


class AuditedSession(Session):
    pass


audit_sessions(AuditedSession)


def who(request: Request) -> dict[str, str | None]:
    return {"actor_id": request.headers.get("x-user"), "tenant_id": request.headers.get("x-tenant"),
            "correlation_id": request.headers.get("x-request-id")}


def make_app(db) -> tuple[Starlette, list]:
    info = db.info
    engine = create_async_engine(f"postgresql+psycopg://app_writer@{info.host}:{info.port}/{info.dbname}",
                                 pool_size=2, max_overflow=0)
    sessions = async_sessionmaker(engine, sync_session_class=AuditedSession)
    pool = AsyncConnectionPool(f"host={info.host} port={info.port} dbname={info.dbname} user=app_writer",
                               min_size=1, max_size=2, open=False)

    async def with_sqlalchemy(request: Request) -> PlainTextResponse:
        async with sessions() as session, session.begin():
            await asyncio.sleep(0.01)  # requests interleave on the two connections
            await session.execute(text("SELECT audit.record(kind => 'order.viewed', target_id => :t)"),
                                  {"t": request.path_params["n"]})
        return PlainTextResponse("ok")

    async def with_psycopg(request: Request) -> PlainTextResponse:
        async with pool.connection() as conn, request_context.transaction_async(conn):
            await asyncio.sleep(0.01)
            await conn.execute("SELECT audit.record(kind => 'order.exported', target_id => %s)",
                               (request.path_params["n"],))
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/sa/{n}", with_sqlalchemy), Route("/pg/{n}", with_psycopg)])
    app.add_middleware(AuditContextMiddleware, context=who)
    return app, [engine, pool]


@pytest.mark.parametrize("path", ["sa", "pg"])
def test_concurrent_requests_sharing_a_pool_each_name_their_own_actor(db, path):
    app, closing = make_app(db)

    async def run() -> None:
        await closing[1].open()
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            async def one(n: int) -> None:
                headers = {"x-user": f"u{n}", "x-tenant": f"t{n % 3}", "x-request-id": f"r{n}"} if n % 4 else {}
                assert (await client.get(f"/{path}/{n}", headers=headers)).status_code == 200
            await asyncio.gather(*(one(n) for n in range(40)))
        await closing[0].dispose()
        await closing[1].close()

    asyncio.run(run())
    rows = db.execute("SELECT target_id, actor_type, actor_id, tenant_id, correlation_id, host(client_addr), db_role"
                      " FROM audit.events WHERE kind LIKE 'order.%' ORDER BY target_id::int").fetchall()
    assert len(rows) == 40
    for target, actor_type, actor_id, tenant, correlation, client, role in rows:
        n = int(target)
        assert client == "203.0.113.9" and role == "app_writer"
        if n % 4:
            assert (actor_type, actor_id, tenant, correlation) == ("user", f"u{n}", f"t{n % 3}", f"r{n}")
        else:  # no actor given: the database role, never the previous request's user
            assert (actor_type, actor_id, tenant, correlation) == ("db_role", "app_writer", None, None)


def test_a_transaction_outside_any_request_names_nobody_the_session_claimed(db, connect):
    conn = connect("app_writer")
    conn.execute("SELECT set_config('pgaudit_py.actor_id', 'stale', false)")  # left by someone, session-wide
    with request_context.transaction(conn):
        conn.execute("SELECT audit.record(kind => 'job.ran')")
    with request_context.serving({"actor_id": "cron", "actor_type": "service"}), request_context.transaction(conn):
        conn.execute("SELECT audit.record(kind => 'job.ran')")
    assert db.execute("SELECT actor_type, actor_id FROM audit.events ORDER BY intake_id").fetchall() == [
        ("db_role", "app_writer"), ("service", "cron")]


@pytest.mark.parametrize("undo", ["COMMIT AND CHAIN", "RESET ALL", "ROLLBACK TO s1", "failed, ROLLBACK TO s1"])
def test_a_statement_sent_as_text_that_undoes_the_values_does_not_keep_them_undone(db, undo):
    """Within one request, a statement sent as text undoes the values behind SQLAlchemy's events (a
    chained commit, RESET ALL, a rollback to a savepoint, after a failed statement too): the next
    statement's event still names the request."""
    engine = create_engine(f"postgresql+psycopg://app_writer@{db.info.host}:{db.info.port}/{db.info.dbname}")
    record = text("SELECT audit.record(kind => 'order.viewed', target_id => :t)")
    try:
        with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}), AuditedSession(engine) as session:
            session.execute(text("SAVEPOINT s1"))
            session.execute(record, {"t": "before"})
            if undo.startswith("failed"):
                with pytest.raises(DBAPIError):
                    session.execute(text("SELECT 1/0"))
            session.execute(text(undo.removeprefix("failed, ")))
            session.execute(record, {"t": "after"})
            session.commit()
    finally:
        engine.dispose()
    rows = db.execute("SELECT target_id, actor_id, tenant_id FROM audit.events WHERE kind = 'order.viewed'"
                      " ORDER BY target_id").fetchall()
    kept = [("after", "ada", "t1")] + ([("before", "ada", "t1")] if undo in ("COMMIT AND CHAIN", "RESET ALL") else [])
    assert rows == kept


def test_the_settings_end_with_the_transaction(db, connect):
    conn = connect("app_writer")
    with request_context.serving({"actor_id": "ada"}), request_context.transaction(conn):
        pass
    assert conn.execute("SELECT coalesce(current_setting('pgaudit_py.actor_id', true), '')").fetchone() == ("",)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM audit.events")  # the writer still reads nothing


def test_a_request_transaction_inside_another_gives_back_the_values_from_before_it(db, connect):
    """Nested in the caller's own audit_context, the request's transaction is a savepoint whose
    values end with it: what follows in the outer transaction is the outer actor's again."""
    from pgaudit_py import audit_context

    conn = connect("app_writer")
    with audit_context(conn, actor_id="batch", actor_type="service"):
        with request_context.serving({"actor_id": "ada"}), request_context.transaction(conn):
            conn.execute("SELECT audit.record(kind => 'inner.ran')")
        conn.execute("SELECT audit.record(kind => 'outer.ran')")
    assert db.execute("SELECT kind, actor_type, actor_id FROM audit.events ORDER BY intake_id").fetchall() == [
        ("inner.ran", "user", "ada"), ("outer.ran", "service", "batch")]


def test_the_documented_fastapi_example_with_fastapis_own_test_client(db, monkeypatch):
    import importlib.util
    from pathlib import Path

    from fastapi.testclient import TestClient

    info = db.info
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://app_writer@{info.host}:{info.port}/{info.dbname}")
    path = Path(__file__).parent.parent / "docs" / "examples" / "fastapi_sqlalchemy.py"
    spec = importlib.util.spec_from_file_location("fastapi_example", path)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with TestClient(example.app) as client:
        for n, user in enumerate(["alice", None, "bob"]):
            headers = {"x-user": user, "x-tenant": "acme", "x-request-id": f"r{n}"} if user else {}
            assert client.post(f"/orders/o-{n}/refund", headers=headers).json() == {"refunded": f"o-{n}"}
    rows = db.execute("SELECT target_id, actor_type, actor_id, tenant_id, correlation_id FROM audit.events"
                      " WHERE kind = 'order.refunded' ORDER BY target_id").fetchall()
    assert rows == [("o-0", "user", "alice", "acme", "r0"), ("o-1", "db_role", "app_writer", None, None),
                    ("o-2", "user", "bob", "acme", "r2")]


@pytest.mark.parametrize("forwarded, stored", [
    ("198.51.100.23", "198.51.100.23"),  # the address the application names
    ("not-an-address", "database"),  # none: left out, as any event without one
    ("10.0.0.0/8", "database"),  # a network names no one host
    (None, "203.0.113.9"),  # no address named: the request's peer
])
def test_a_named_client_address_that_is_none_leaves_the_database_connections(db, forwarded, stored):
    """The application names the client's address (from a forwarded header, say). One that is no one
    host's address is left out, never replaced by the request's peer (a proxy, perhaps): the event
    holds what an event without a context holds, the database connection's own address."""
    info = db.info
    pool = AsyncConnectionPool(f"host={info.host} port={info.port} dbname={info.dbname} user=app_writer",
                               min_size=1, max_size=1, open=False)

    async def handler(request: Request) -> PlainTextResponse:
        async with pool.connection() as conn, request_context.transaction_async(conn):
            await conn.execute("SELECT audit.record(kind => 'order.viewed')")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", handler)])
    app.add_middleware(AuditContextMiddleware, context=lambda request: {"actor_id": "u1", "client_addr": forwarded})

    async def run() -> None:
        await pool.open()
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/")).status_code == 200
        await pool.close()

    asyncio.run(run())
    database = db.execute("SELECT host(inet_client_addr())").fetchone()[0]  # the same host, over TCP
    assert database not in ("198.51.100.23", "203.0.113.9")
    assert db.execute("SELECT actor_id, host(client_addr) FROM audit.events WHERE kind = 'order.viewed'").fetchall() == [
        ("u1", database if stored == "database" else stored)]
