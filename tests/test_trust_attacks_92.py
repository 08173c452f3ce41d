"""A ninety-second attacker's trial: who an event names when requests overlap, outlive themselves or
carry hostile headers; the asyncio API against the sync one and under cancellation; the CLI's least
roles, its DSN passwords and its escaping; and what error messages repeat.

Classes (test names carry the letter):
  I. integrations and request context (Starlette's AuditContextMiddleware with psycopg pools,
     request_context.transaction / transaction_async): tasks and threads that outlive a request, a
     streamed body, an exception mid-request, a session left holding values, nested audit_context,
     server-side cursors, X-Forwarded-For and hostile header values (NUL, huge, odd Unicode).
  A. asyncio API: the same refusals as sync (best_effort never swallows bad input, bad argument
     types), a record cancelled while waiting leaves nothing written and no context on the connection.
  L. the live stream and listing with tenant tokens: lookalike tenants, Last-Event-ID resumes,
     reconnects after every event, counts and months, a revoked token's open stream, the token
     brake against rotated or spoofed X-Forwarded-For.
  C. CLI: least roles, a DSN's password never printed, terminal escapes in kinds and tenants
     never printed raw, long refused values never repeated.
  M. error messages: refused kinds, idempotency keys, client addresses, payload values and values
     over their bounds never repeated (sync and asyncio); an integer past its argument's range is
     bad input (InvalidInput), not a raw driver error.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when
an honest use is refused). Objects and roles made here are prefixed t92_.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time
from contextlib import suppress

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from pgaudit_py import aio, audit_context, record, request_context, seal
from pgaudit_py.cli import cli
from pgaudit_py.errors import InvalidInput
from pgaudit_py.integrations.asgi import AuditContextMiddleware

CLIENT = ("203.0.113.9", 4711)


def rows(db, like: str = "t92.%"):
    return db.execute("SELECT kind, actor_type, actor_id, tenant_id, correlation_id, host(client_addr), db_role, target_id"
                      " FROM audit.events WHERE kind LIKE %s ORDER BY intake_id, seq", (like,)).fetchall()


def who(request: Request) -> dict[str, str | None]:
    return {"actor_id": request.headers.get("x-user"), "tenant_id": request.headers.get("x-tenant"),
            "correlation_id": request.headers.get("x-request-id")}


def who_forwarded(request: Request) -> dict[str, str | None]:
    """An application that (wrongly or not) takes the address from X-Forwarded-For."""
    return {**who(request), "client_addr": request.headers.get("x-forwarded-for")}


def pg_dsn(db, role: str = "app_writer") -> str:
    i = db.info
    return f"host={i.host} port={i.port} dbname={i.dbname} user={role}"


def run_app(db, routes, calls, context=who, after=None):
    """Serve `routes` with the middleware and a pool of two app_writer connections; `calls(client)`
    is awaited; returns what it returned."""
    pool = AsyncConnectionPool(pg_dsn(db), min_size=1, max_size=2, open=False)
    app = Starlette(routes=[Route(p, f(pool)) for p, f in routes])
    app.add_middleware(AuditContextMiddleware, context=context)

    async def go():
        await pool.open()
        try:
            transport = httpx.ASGITransport(app=app, client=CLIENT, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                out = await calls(client)
            if after:
                await after(pool)
            return out
        finally:
            await pool.close()

    return asyncio.run(go())


async def rec(pool, kind, target=None):
    async with pool.connection() as conn, request_context.transaction_async(conn):
        await conn.execute("SELECT audit.record(kind => %s, target_id => %s)", (kind, target))


# ============================================ class I ============================================

def test_i1_a_task_the_request_started_that_records_after_it_ended_names_nobody(db):
    started: list[asyncio.Task] = []
    def view(pool):
        async def v(request):
            ev = request.app.state.gate

            async def later():
                await ev.wait()
                await rec(pool, "t92.late")
            started.append(asyncio.get_running_loop().create_task(later()))
            await rec(pool, "t92.now")
            return PlainTextResponse("ok")
        return v

    pool = AsyncConnectionPool(pg_dsn(db), min_size=1, max_size=2, open=False)
    app = Starlette(routes=[Route("/x", view(pool))])
    app.add_middleware(AuditContextMiddleware, context=who)
    app.state.gate = None

    async def go():
        await pool.open()
        try:
            transport = httpx.ASGITransport(app=app, client=CLIENT)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                app.state.gate = asyncio.Event()
                r = await client.get("/x", headers={"x-user": "t92_alice", "x-tenant": "t92_acme", "x-request-id": "r1"})
                assert r.status_code == 200
                app.state.gate.set()
                await asyncio.gather(*started)
        finally:
            await pool.close()

    asyncio.run(go())
    got = {r[0]: r[1:5] for r in rows(db)}
    assert got["t92.now"] == ("user", "t92_alice", "t92_acme", "r1")
    assert got["t92.late"] == ("db_role", "app_writer", None, None)


def test_i2_a_thread_started_with_the_requests_context_that_records_after_it_ended_names_nobody(db, connect):
    conn = connect("app_writer")
    go_on = threading.Event()
    done = threading.Event()

    def job():
        go_on.wait(10)
        with request_context.transaction(conn):
            conn.execute("SELECT audit.record(kind => 't92.thread_late')")
        done.set()

    with request_context.serving({"actor_id": "t92_bob", "tenant_id": "t92_t", "correlation_id": "c9"}):
        ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(job,))
        t.start()
    go_on.set()
    t.join(10)
    assert done.is_set()
    assert [r[:5] for r in rows(db)] == [("t92.thread_late", "db_role", "app_writer", None, None)]


def test_i3_a_streamed_body_records_with_its_own_requests_values_under_concurrency(db):
    def view(pool):
        async def v(request):
            n = request.path_params["n"]

            async def body():
                yield b"a"
                await asyncio.sleep(0.01)
                await rec(pool, "t92.streamed", n)
                yield b"b"
            return StreamingResponse(body())
        return v

    async def calls(client):
        async def one(n):
            h = {"x-user": f"u{n}", "x-tenant": f"t{n}", "x-request-id": f"r{n}"} if n % 3 else {}
            r = await client.get(f"/s/{n}", headers=h)
            assert r.status_code == 200 and r.text == "ab"
        await asyncio.gather(*(one(n) for n in range(12)))

    run_app(db, [("/s/{n}", view)], calls)
    got = rows(db)
    assert len(got) == 12
    for _kind, at, aid, tid, cid, addr, role, target in got:
        n = int(target)
        assert addr == CLIENT[0] and role == "app_writer"
        if n % 3:
            assert (at, aid, tid, cid) == ("user", f"u{n}", f"t{n}", f"r{n}")
        else:
            assert (at, aid, tid, cid) == ("db_role", "app_writer", None, None)


def test_i4_an_exception_mid_request_leaves_nothing_and_the_next_request_names_its_own_actor(db):
    def boom(pool):
        async def v(request):
            async with pool.connection() as conn:
                await conn.execute("SELECT set_config('pgaudit_py.actor_id', 't92_leak', false)")
                await conn.execute("SELECT set_config('pgaudit_py.tenant_id', 't92_leak_t', false)")
                async with request_context.transaction_async(conn):
                    await conn.execute("SELECT audit.record(kind => 't92.boom')")
                    raise RuntimeError("t92 boom")
        return v

    def fine(pool):
        async def v(request):
            await rec(pool, "t92.fine", request.path_params["n"])
            return PlainTextResponse("ok")
        return v

    async def calls(client):
        for n in range(3):
            assert (await client.get("/boom", headers={"x-user": "t92_evil"})).status_code == 500
            assert (await client.get(f"/fine/{n}", headers={} if n == 1 else {"x-user": f"t92_u{n}"})).status_code == 200

    run_app(db, [("/boom", boom), ("/fine/{n}", fine)], calls)
    got = rows(db)
    assert [r[0] for r in got] == ["t92.fine"] * 3
    assert [(r[1], r[2], r[3]) for r in got] == [("user", "t92_u0", None), ("db_role", "app_writer", None),
                                                  ("user", "t92_u2", None)]


@pytest.mark.parametrize("forwarded", ["198.51.100.7, 10.0.0.1", "10.0.0.0/8", "0.0.0.0", "not-an-ip", "::ffff:0.0.0.0",
                                       "fe80::1%eth0", "224.0.0.1"])
def test_i5_an_odd_forwarded_address_is_left_out_and_the_event_is_kept(db, forwarded):
    def view(pool):
        async def v(request):
            await rec(pool, "t92.fwd")
            return PlainTextResponse("ok")
        return v

    async def calls(client):
        return (await client.get("/f", headers={"x-user": "t92_carol", "x-forwarded-for": forwarded})).status_code

    status = run_app(db, [("/f", view)], calls, context=who_forwarded)
    got = rows(db)
    assert status == 200 and len(got) == 1
    assert got[0][2] == "t92_carol"
    assert got[0][5] not in (forwarded, "10.0.0.0", "0.0.0.0", "198.51.100.7", "224.0.0.1")  # never the refused address


def test_i6_x_forwarded_for_is_never_taken_when_the_application_does_not_name_it(db):
    def view(pool):
        async def v(request):
            await rec(pool, "t92.xff")
            return PlainTextResponse("ok")
        return v

    async def calls(client):
        return (await client.get("/f", headers={"x-forwarded-for": "198.51.100.66", "x-real-ip": "198.51.100.67",
                                                "forwarded": "for=198.51.100.68"})).status_code

    assert run_app(db, [("/f", view)], calls) == 200
    assert rows(db)[0][5] == CLIENT[0]


@pytest.mark.parametrize("value", ["t92\x00nul", "t92" + "x" * 200_000, "t92\u202eevil\u2066", "t92\ud800"],
                         ids=["nul", "huge", "bidi", "lone_surrogate"])
def test_i7_a_hostile_header_value_is_stored_as_given_or_fails_the_request_loudly(db, value):
    """Either the event is written naming that exact value, or the request is answered with an
    error: never a 200 whose event is lost or names someone else."""
    def view(pool):
        async def v(request):
            await rec(pool, "t92.hostile")
            return PlainTextResponse("ok")
        return v

    def ctx(request):
        return {"actor_id": value, "tenant_id": "t92_ten"}

    async def calls(client):
        return (await client.get("/h")).status_code

    status = run_app(db, [("/h", view)], calls, context=ctx)
    got = rows(db)
    if status == 200:
        assert len(got) == 1 and got[0][2] == value and got[0][3] == "t92_ten"
    else:
        assert got == []


def test_i8_a_session_left_holding_every_value_is_not_taken_by_the_next_request(db, connect):
    conn = connect("app_writer", autocommit=False)
    for name, v in [("actor_type", "service"), ("actor_id", "t92_stale"), ("tenant_id", "t92_stale_t"),
                    ("correlation_id", "t92_stale_c"), ("client_addr", "198.51.100.1")]:
        conn.execute("SELECT set_config(%s, %s, false)", (f"pgaudit_py.{name}", v))
    conn.commit()
    with request_context.serving({"actor_id": "t92_dan"}), request_context.transaction(conn):
        conn.execute("SELECT audit.record(kind => 't92.after_stale')")
    with request_context.transaction(conn):
        conn.execute("SELECT audit.record(kind => 't92.outside')")
    got = rows(db)
    assert [r[1:5] for r in got] == [("user", "t92_dan", None, None), ("db_role", "app_writer", None, None)]
    assert all(r[5] != "198.51.100.1" for r in got)


def test_i9_a_transaction_left_open_by_one_request_is_not_attributed_to_the_next(db, connect):
    """Request 1 leaves its connection inside an open transaction it began itself, holding its
    transaction-local values; request 2 runs its own request_context.transaction on it."""
    conn = connect("app_writer", autocommit=False)
    with request_context.serving({"actor_id": "t92_first", "tenant_id": "t92_a"}):
        conn.execute("SELECT 1")  # a transaction begun, never ended
        conn.execute("SELECT set_config('pgaudit_py.actor_id', 't92_first', true),"
                     " set_config('pgaudit_py.tenant_id', 't92_a', true)")
    with request_context.serving({"actor_id": "t92_second"}), request_context.transaction(conn):
        conn.execute("SELECT audit.record(kind => 't92.second')")
    conn.commit()
    got = rows(db)
    assert len(got) == 1 and got[0][2] == "t92_second" and got[0][3] is None


def test_i10_nested_audit_context_inside_a_request_transaction_gives_back_the_requests_values(db, connect):
    conn = connect("app_writer")
    with request_context.serving({"actor_id": "t92_eve", "tenant_id": "t92_t1", "correlation_id": "c1",
                                  "client_addr": "198.51.100.9"}), request_context.transaction(conn):
        with audit_context(conn, actor_id="t92_inner", tenant_id=""):
            conn.execute("SELECT audit.record(kind => 't92.inner')")
        with pytest.raises(RuntimeError), audit_context(conn, actor_id="t92_inner2"):
            raise RuntimeError
        conn.execute("SELECT audit.record(kind => 't92.outer')")
    got = {r[0]: (r[2], r[3], r[4], r[5]) for r in rows(db)}
    assert got["t92.inner"] == ("t92_inner", None, "c1", "198.51.100.9")
    assert got["t92.outer"] == ("t92_eve", "t92_t1", "c1", "198.51.100.9")


def test_i11_a_server_side_cursor_in_a_request_transaction_names_the_request(db, connect):
    conn = connect("app_writer", autocommit=False)
    with request_context.serving({"actor_id": "t92_srv", "tenant_id": "t92_ss"}), request_context.transaction(conn), \
            conn.cursor(name="t92_cur") as cur:
        cur.execute("SELECT audit.record(kind => 't92.ss', target_id => g::text) FROM generate_series(1, 3) g")
        cur.fetchall()
    conn.commit()
    got = rows(db)
    assert len(got) == 3 and all(r[2] == "t92_srv" and r[3] == "t92_ss" for r in got)


def test_i12_concurrent_threads_each_serving_their_own_request_on_their_own_connections(db, connect):
    conns = [connect("app_writer") for _ in range(4)]
    errors: list[BaseException] = []

    def serve(i):
        try:
            for j in range(10):
                with request_context.serving({"actor_id": f"t92_u{i}", "tenant_id": f"t92_t{i}", "correlation_id": f"{i}-{j}"}), \
                        request_context.transaction(conns[i]):
                    conns[i].execute("SELECT audit.record(kind => 't92.thr', target_id => %s)", (f"{i}-{j}",))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=serve, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    got = rows(db)
    assert len(got) == 40
    for r in got:
        i = r[7].split("-")[0]
        assert (r[2], r[3], r[4]) == (f"t92_u{i}", f"t92_t{i}", r[7])


def test_i13_a_generator_made_in_a_request_but_run_after_it_names_nobody(db, connect):
    conn = connect("app_writer")

    def gen():
        with request_context.transaction(conn):
            conn.execute("SELECT audit.record(kind => 't92.gen')")
        yield 1

    with request_context.serving({"actor_id": "t92_gen"}):
        g = gen()
    list(g)
    assert [r[1:3] for r in rows(db)] == [("db_role", "app_writer")]


# ============================================ class A ============================================

def aconn(db, role="app_writer", autocommit=True):
    i = db.info
    return psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user=role, autocommit=autocommit)


BAD_CALLS = [
    dict(kind="audit.t92_reserved"),
    dict(kind="T92 Bad Kind!"),
    dict(kind="t92.ok", outcome="t92bogus"),
    dict(kind="t92.ok", payload={"v": "t92\x00nul"}),
    dict(kind="t92.ok", payload={"v": "\ud800"}),
    dict(kind="t92.ok", tenant_id="t92\x00"),
]


@pytest.mark.parametrize("best_effort", [False, True])
@pytest.mark.parametrize("call", range(len(BAD_CALLS)))
def test_a1_async_record_refuses_what_sync_refuses_and_best_effort_never_swallows_it(db, connect, call, best_effort):
    args = BAD_CALLS[call]
    conn = connect("app_writer")
    with pytest.raises(InvalidInput) as sync_err:
        record(conn, best_effort=best_effort, **args)

    async def go():
        async with await aconn(db) as ac:
            with pytest.raises(InvalidInput) as async_err:
                await aio.record(ac, best_effort=best_effort, **args)
            return async_err

    async_err = asyncio.run(go())
    assert type(async_err.value) is type(sync_err.value)
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE '%t92%' OR kind LIKE '%T92%'").fetchone()[0] == 0


def test_a2_async_and_sync_store_the_same_values(db, connect):
    from decimal import Decimal
    payload = {"n": Decimal("12345678901234567.89"), "s": "jos\u00e9\u2028", "z": [None, True, 0]}
    kw = dict(tenant_id="t92_tt", actor_type="user", actor_id="t92_a", target_type="doc", target_id="d1",
              payload=payload, outcome="failure", correlation_id="t92_c")
    record(connect("app_writer"), "t92.parity_sync", **kw)

    async def go():
        async with await aconn(db) as ac:
            await aio.record(ac, "t92.parity_async", **kw)
    asyncio.run(go())
    got = db.execute("SELECT kind, tenant_id, actor_type, actor_id, target_type, target_id, payload::text, outcome,"
                     " correlation_id FROM audit.events WHERE kind LIKE 't92.parity%' ORDER BY kind").fetchall()
    assert len(got) == 2 and got[0][1:] == got[1][1:]


def test_a3_an_async_record_cancelled_while_waiting_writes_nothing_and_leaves_no_context(db, connect):
    """A superuser holds the intake locked; the async record inside an audit_context waits on it
    and is cancelled. Then the lock goes; the connection's next record, outside any block, names
    nobody, and nothing of the cancelled one was written."""
    blocker = connect(autocommit=False)
    blocker.execute("LOCK TABLE audit.event_intake IN ACCESS EXCLUSIVE MODE")

    async def go():
        async with await aconn(db) as ac:
            async def attempt():
                async with aio.audit_context(ac, actor_id="t92_cancelled", tenant_id="t92_ct"):
                    await aio.record(ac, "t92.cancelled")
            task = asyncio.create_task(attempt())
            await asyncio.sleep(0.7)
            assert not task.done()
            task.cancel()
            with pytest.raises((asyncio.CancelledError, psycopg.Error)):
                await task
            blocker.rollback()
            if ac.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                await ac.rollback()
            await aio.record(ac, "t92.after_cancel")
    asyncio.run(go())
    got = rows(db)
    assert [(r[0], r[1], r[2], r[3]) for r in got] == [("t92.after_cancel", "db_role", "app_writer", None)]


def test_a4_a_task_cancelled_inside_a_nested_async_block_gives_back_the_outer_values(db):
    async def go():
        async with await aconn(db, autocommit=False) as ac:
            async with aio.audit_context(ac, actor_id="t92_outer", tenant_id="t92_o"):
                async def inner():
                    async with aio.audit_context(ac, actor_id="t92_inner"):
                        await ac.execute("SELECT pg_sleep(5)")
                t = asyncio.create_task(inner())
                await asyncio.sleep(0.3)
                t.cancel()
                with pytest.raises((asyncio.CancelledError, psycopg.Error)):
                    await t
                await aio.record(ac, "t92.after_inner")
            await ac.commit()
    asyncio.run(go())
    got = rows(db)
    assert [(r[0], r[2], r[3]) for r in got] == [("t92.after_inner", "t92_outer", "t92_o")]


# ============================================ class M ============================================

def msg(err) -> str:
    e = err.value
    return " ".join(str(x) for x in (e, getattr(e, "message", ""), getattr(e, "detail", ""), getattr(e, "hint", "")) if x)


@pytest.mark.parametrize("kind", ["audit.t92secretkindvalue", "T92SECRET KIND", "t92secretkindvalue" + "x" * 300])
def test_m1_a_refused_kind_is_not_repeated(connect, kind):
    with pytest.raises(InvalidInput) as err:
        record(connect("app_writer"), kind)
    assert "t92secretkindvalue" not in msg(err).lower()


def test_m2_a_reused_idempotency_key_is_not_repeated(db, connect):
    conn = connect("app_writer")
    record(conn, "t92.first", idempotency_key="t92-idem-SECRETVALUE")
    with pytest.raises(InvalidInput) as err:
        record(conn, "t92.other", idempotency_key="t92-idem-SECRETVALUE")
    assert "SECRETVALUE" not in msg(err)


@pytest.mark.parametrize("addr", ["10.0.0.0/8", "0.0.0.0", "224.0.0.9"])
def test_m3_a_refused_client_address_is_not_repeated(connect, addr):
    conn = connect("app_writer")
    with pytest.raises(InvalidInput) as err, audit_context(conn, client_addr=addr):
        record(conn, "t92.addr")
    assert addr not in msg(err)


@pytest.mark.parametrize("payload", [{"k": "t92SECRETPAYLOAD\x00"}, {"t92SECRETPAYLOADKEY\x00": 1},
                                     {"k": ["t92SECRETPAYLOAD", "\ud800"]}])
def test_m4_a_refused_payload_value_is_not_repeated_sync_or_async(db, connect, payload):
    with pytest.raises(InvalidInput) as err:
        record(connect("app_writer"), "t92.p", payload=payload)
    assert "SECRETPAYLOAD" not in msg(err)

    async def go():
        async with await aconn(db) as ac:
            with pytest.raises(InvalidInput) as aerr:
                await aio.record(ac, "t92.p", payload=payload, best_effort=True)
            return aerr
    assert "SECRETPAYLOAD" not in msg(asyncio.run(go()))


def test_m5_an_outcome_refused_is_not_repeated_by_list_events(connect):
    from pgaudit_py import list_events
    with pytest.raises(InvalidInput) as err:
        list_events(connect("app_reader"), outcome="t92SECRETOUTCOME")
    assert "SECRETOUTCOME" not in msg(err)


# ============================================ class C ============================================

def run(*args, env=None, input=None):
    result = CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=True)
    return result


def out_of(result) -> str:
    return (result.output or "") + (result.stderr or "") + (repr(result.exception) if result.exception and not isinstance(result.exception, SystemExit) else "")


def clean_failure(result):
    text = out_of(result)
    assert result.exit_code not in (0, None), text
    assert "Traceback" not in text and not (result.exception and not isinstance(result.exception, SystemExit)), text


@pytest.mark.parametrize("args,role", [
    (["record", "t92.cli_writer"], "app_writer"),
    (["events"], "app_reader"),
    (["count"], "app_reader"),
    (["tracked"], "app_reader"),
    (["limits"], "app_reader"),
    (["types", "list"], "app_reader"),
    (["archive", "list"], "app_reader"),
    (["seal"], "app_maintainer"),
    (["tokens", "list"], "app_maintainer"),
])
def test_c1_each_command_works_with_its_least_role_and_fails_cleanly_one_below(db, args, role):
    ok = run(args[0], *args[1:], "--dsn", pg_dsn(db, role))
    assert ok.exit_code == 0, out_of(ok)
    below = run(args[0], *args[1:], "--dsn", pg_dsn(db, "app_attacker"))
    clean_failure(below)


@pytest.mark.parametrize("args", [["events"], ["record", "t92.x"], ["status"], ["tokens", "list"], ["seal"]])
@pytest.mark.parametrize("how", ["kv", "uri", "env"])
def test_c2_a_dsns_password_is_never_printed(db, args, how):
    i = db.info
    pw = "t92Pw,@S3cr3t=x"
    if how == "kv":
        dsn, env = f"host={i.host} port={i.port} dbname=t92_nonexistent user=t92_nobody password='{pw}'", None
    elif how == "uri":
        dsn, env = f"postgresql://t92_nobody:{pw}@{i.host}:{i.port}/t92_nonexistent", None
    else:
        dsn, env = None, {"PGAUDIT_DSN": f"host={i.host} port={i.port} dbname=t92_nonexistent user=t92_nobody password={pw[:8]}xx"}
    result = run(*args, *(["--dsn", dsn] if dsn else []), env=env)
    text = out_of(result)
    assert result.exit_code != 0
    assert "Traceback" not in text
    for piece in ("t92Pw", "S3cr3t"):
        assert piece not in text, text


def test_c3_terminal_escapes_in_kind_tenant_actor_are_escaped_in_listings(db, connect):
    conn = connect("app_writer")
    record(conn, "t92.esc", tenant_id="t92\x1b]0;pwned\x07", actor_id="t92\r\x1b[2Kgone",
           target_id="t\x9b31m", payload={"k": "\x1b[5m"})
    result = run("events", "--dsn", pg_dsn(db, "app_reader"))
    assert result.exit_code == 0, out_of(result)
    for raw in ("\x1b", "\x07", "\r", "\x9b"):
        assert raw not in result.output, repr(result.output)
    assert "\\u001b" in result.output or "\\x1b" in result.output or "\\e" in result.output


def test_c4_terminal_escapes_in_an_error_line_are_escaped(db):
    result = run("record", "audit.t92\x1b[31m", "--dsn", pg_dsn(db, "app_writer"))
    assert result.exit_code != 0
    assert "\x1b" not in out_of(result)


def test_c5_a_long_refused_kind_is_not_repeated_on_stderr(db):
    piece = "t92abcdefghijklmnopqrstuvwxyz0123456789"
    result = run("record", f"audit.{piece}", "--dsn", pg_dsn(db, "app_writer"))
    assert result.exit_code != 0
    assert piece not in out_of(result)


def test_c6_a_long_reused_idempotency_key_is_not_repeated_on_stderr(db):
    key = "t92KEY0123456789abcdefghijklmnopqrstuvwxyz"
    first = run("record", "t92.idem1", "--idempotency-key", key, "--dsn", pg_dsn(db, "app_writer"))
    assert first.exit_code == 0, out_of(first)
    second = run("record", "t92.idem2", "--idempotency-key", key, "--dsn", pg_dsn(db, "app_writer"))
    assert second.exit_code != 0 and "Traceback" not in out_of(second)
    assert key not in out_of(second)


def test_c7_a_payload_the_cli_refuses_is_not_repeated(db):
    secret = "t92PAYLOADSECRET0123456789abcdefghijklmnop"
    result = run("record", "t92.pay", "--payload", f'{{"k": "{secret}\\u0000"}}', "--dsn", pg_dsn(db, "app_writer"))
    assert result.exit_code != 0 and "Traceback" not in out_of(result)
    assert secret not in out_of(result)


def test_c8_a_refused_outcome_or_number_prints_the_value_given_placeholder(db):
    r1 = run("record", "t92.o", "--outcome", "t92BOGUS", "--dsn", pg_dsn(db, "app_writer"))
    r2 = run("events", "--page-size", "t92NaN", "--dsn", pg_dsn(db, "app_reader"))
    for r in (r1, r2):
        assert r.exit_code == 2
        assert "t92BOGUS" not in out_of(r) and "t92NaN" not in out_of(r)


def test_c9_the_cli_json_listing_keeps_hostile_values_exactly(db, connect):
    import json
    conn = connect("app_writer")
    record(conn, "t92.json", tenant_id="t92\x1b[0m\u202e")
    result = run("events", "--json", "--tenant", "t92\x1b[0m\u202e", "--dsn", pg_dsn(db, "app_reader"))
    assert result.exit_code == 0, out_of(result)
    assert "\x1b" not in result.output
    data = json.loads(result.output)
    items = data if isinstance(data, list) else data.get("events", data)
    assert any(e["tenant_id"] == "t92\x1b[0m\u202e" for e in items)


# ============================================ class L ============================================

OTHER_TENANTS = ["t92xa", "t92_a ", "T92_A", "t92_a\u0301", "t92_", "t92%", " t92_a"]


def stream_events(client, *, params=None, headers=None, want=10**9, seconds=6.0, stop_after=None):
    """(events, error messages) of one stream connection, until `want` events, an error or `seconds`."""
    from api_server import sse_messages
    got, errors = [], []
    deadline = time.monotonic() + seconds
    with client.stream("GET", "/v1/audit/stream", params=params or {}, headers=headers or {}) as response:
        if response.status_code != 200:
            return response.status_code, got, errors
        for m in sse_messages(response):
            if m.event == "error":
                errors.append(m.data)
                break
            if m.data is not None and m.event == "audit":
                got.append(json.loads(m.data))
                if stop_after:
                    stop_after(got)
            if len(got) >= want or time.monotonic() > deadline:
                break
    return 200, got, errors


def t92_write_tenants(db, n=2):
    for i in range(n):
        record(db, "t92.mine", tenant_id="t92_a", target_id=str(i))
        for t in OTHER_TENANTS:
            record(db, "t92.other", tenant_id=t, target_id=str(i))
    seal(db)


@pytest.mark.parametrize("resume", [None, "0", "1"])
def test_l1_a_tenant_token_stream_from_the_start_sees_only_its_tenant_never_lookalikes(db, start_api, make_token, resume):
    token = make_token("reader", tenant_id="t92_a")
    t92_write_tenants(db)
    api = start_api(poll_interval=0.2, heartbeat=0.5)
    with api.client(token) as client:
        status, got, _ = stream_events(client, params={"since_seq": "0"},
                                       headers={"Last-Event-ID": resume} if resume else None, want=50, seconds=4)
    assert status == 200
    assert {e["tenant_id"] for e in got} <= {"t92_a"}
    assert sorted(e["target_id"] for e in got if e["kind"] == "t92.mine") == ["0", "1"]


@pytest.mark.parametrize("other", OTHER_TENANTS)
def test_l2_a_tenant_token_naming_a_lookalike_tenant_is_forbidden_on_stream_and_listing(db, start_api, make_token, other):
    token = make_token("reader", tenant_id="t92_a")
    t92_write_tenants(db, 1)
    api = start_api(poll_interval=0.2, heartbeat=0.5)
    with api.client(token) as client:
        listing = client.get("/v1/audit", params={"tenant_id": other})
        assert listing.status_code == 403, listing.text
        status, got, _ = stream_events(client, params={"tenant_id": other, "since_seq": "0"}, want=20, seconds=2)
        assert status == 403 and got == []
        ok = client.get("/v1/audit", params={"kind_prefix": "t92."})
        assert ok.status_code == 200 and {e["tenant_id"] for e in ok.json()["events"]} == {"t92_a"}


def test_l3_a_revoked_tokens_open_stream_stops_and_gets_nothing_written_after(db, start_api, make_token, connect):
    from pgaudit_py.tokens import revoke_token
    token = make_token("reader", name="t92_rev")
    seal(db)
    api = start_api(poll_interval=0.2, heartbeat=0.5)
    maint = connect("app_maintainer")
    revoked = threading.Event()

    def revoke_after_first(got):
        if len(got) == 1 and not revoked.is_set():
            revoke_token(maint, "t92_rev")
            revoked.set()
            time.sleep(1.0)  # past the token answer's 0.5 s
            record(db, "t92.after_revoke")
            seal(db)

    record(db, "t92.before_revoke")
    seal(db)
    with api.client(token) as client:
        status, got, errors = stream_events(client, params={"kind_prefix": "t92.", "since_seq": "0"},
                                            want=10, seconds=8, stop_after=revoke_after_first)
    assert status == 200
    assert [e["kind"] for e in got] == ["t92.before_revoke"]
    assert errors and "unauthorized" in errors[0]


def test_l4_a_tenant_stream_reconnecting_after_every_event_skips_and_repeats_nothing(db, start_api, make_token, connect):
    token = make_token("reader", tenant_id="t92_a")
    seal(db)
    start = db.execute("SELECT last_seq FROM audit.seal_state").fetchone()[0]
    for i in range(6):
        record(db, "t92.mine", tenant_id="t92_a", target_id=str(i))
        record(db, "t92.other", tenant_id="t92xa", target_id=str(i))
        if i % 2:
            seal(db)
    seal(db)
    api = start_api(poll_interval=0.2, heartbeat=0.5)
    seen, last = [], None
    with api.client(token) as client:
        for _ in range(12):
            headers = {"Last-Event-ID": str(last)} if last is not None else None
            status, got, _ = stream_events(client, params={"since_seq": str(start)}, headers=headers, want=1, seconds=2)
            assert status == 200
            if not got:
                break
            seen += got
            last = got[-1]["seq"]
    assert [e["target_id"] for e in seen] == [str(i) for i in range(6)]
    assert all(e["tenant_id"] == "t92_a" for e in seen)


# ============================================ class I (Django) ============================================

DJ_LATE: list[threading.Thread] = []
DJ_GATE = threading.Event()


def dj_thread_view(request):
    from django.http import HttpResponse
    ctx = contextvars.copy_context()

    def job():
        DJ_GATE.wait(10)
        dj_record("t92.dj_late")
        from django.db import connection
        connection.close()
    t = threading.Thread(target=ctx.run, args=(job,))
    t.start()
    DJ_LATE.append(t)
    dj_record("t92.dj_now")
    return HttpResponse("ok")


def dj_xff_view(request):
    from django.http import HttpResponse
    dj_record("t92.dj_xff")
    return HttpResponse("ok")


def dj_boom_view(request):
    from django.db import connection
    with connection.cursor() as c:
        c.execute("SELECT set_config('pgaudit_py.actor_id', 't92_leak', false)")
    dj_record("t92.dj_boom")
    raise RuntimeError("t92 boom")


def dj_plain_view(request):
    from django.http import HttpResponse
    dj_record("t92.dj_plain")
    return HttpResponse("ok")


def dj_stream_view(request):
    from django.http import StreamingHttpResponse

    def body():
        yield b"a"
        dj_record("t92.dj_stream")
        yield b"b"
    return StreamingHttpResponse(body())


urlpatterns = []
with suppress(ImportError):
    from django.urls import path as _path
    from trial_helpers import dj_record, django_test_client
    urlpatterns = [_path("thread", dj_thread_view), _path("xff", dj_xff_view), _path("boom", dj_boom_view),
                   _path("plain", dj_plain_view), _path("stream", dj_stream_view)]


def test_i14_django_a_thread_with_the_requests_context_recording_after_it_ended_names_nobody(db):
    DJ_LATE.clear()
    DJ_GATE.clear()
    with django_test_client(db, __name__, {}) as client:
        assert client.get("/thread", headers={"x-user": "t92_dj", "x-tenant": "t92_djt"}).status_code == 200
        DJ_GATE.set()
        for t in DJ_LATE:
            t.join(10)
    got = {r[0]: r[1:4] for r in rows(db)}
    assert got["t92.dj_now"] == ("user", "t92_dj", "t92_djt")
    assert got["t92.dj_late"] == ("db_role", "app_writer", None)


def test_i15_django_x_forwarded_for_is_not_taken_as_the_client_address(db):
    with django_test_client(db, __name__, {}) as client:
        assert client.get("/xff", headers={"x-user": "t92_x", "x-forwarded-for": "198.51.100.66"},
                          REMOTE_ADDR="203.0.113.5").status_code == 200
    assert rows(db)[0][5] == "203.0.113.5"


def test_i16_django_a_request_that_fails_after_setting_the_session_leaves_nothing_for_the_next(db):
    with django_test_client(db, __name__, {}, raise_request_exception=False) as client:
        assert client.get("/boom", headers={"x-user": "t92_evil"}).status_code == 500
        assert client.get("/plain").status_code == 200
        assert client.get("/plain", headers={"x-user": "t92_good"}).status_code == 200
    got = [(r[0], r[1], r[2]) for r in rows(db)]
    assert ("t92.dj_plain", "db_role", "app_writer") in got and ("t92.dj_plain", "user", "t92_good") in got
    assert all(r[2] != "t92_leak" for r in got)


def test_i17_django_concurrent_streamed_bodies_each_name_their_own_request(db):
    with django_test_client(db, __name__, {}) as client:
        responses = [client.get("/stream", headers={"x-user": f"t92_s{i}"}) for i in range(3)]
        # consumed interleaved, after every view returned
        its = [iter(r.streaming_content) for r in responses]
        for it in its:
            next(it)
        for it in reversed(its):
            list(it)
        for r in responses:
            r.close()
    got = sorted(r[2] for r in rows(db))
    assert got == ["t92_s0", "t92_s1", "t92_s2"]


# ============================================ class C (more) ============================================

@pytest.mark.parametrize("args", [["status"], ["history", "public.t92_none", "1"], ["verify"], ["archive", "settings"],
                                  ["count", "--months", "2"]])
def test_c10_reading_commands_run_as_a_reader_and_fail_cleanly_without(db, args):
    if args[0] == "history":
        db.execute("CREATE TABLE public.t92_none (id int PRIMARY KEY, v int)")
        db.execute("GRANT ALL ON public.t92_none TO app_maintainer")
        from pgaudit_py import enable_tracking
        enable_tracking(db, "public.t92_none")
        db.execute("INSERT INTO public.t92_none VALUES (1, 1)")
    ok = run(*args, "--dsn", pg_dsn(db, "app_reader"))
    assert ok.exit_code in ((0, 1) if args[0] == "status" else (0,)), out_of(ok)
    assert "Traceback" not in out_of(ok)
    clean_failure(run(*args, "--dsn", pg_dsn(db, "app_attacker")))


INVISIBLE = ["\u200b", "\u3164", "\u2800", "\ufe0f", "\u034f", "\U000e0041", "\u2028", "\u202e", "\u00ad", "\u061c",
             "\u115f", "\u180e", "\u2060", "\ufeff", "\u0085", "\x7f"]


@pytest.mark.parametrize("ch", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_c11_invisible_and_format_characters_are_escaped_in_text_listings(db, connect, ch):
    conn = connect("app_writer")
    record(conn, "t92.inv", tenant_id=f"t92{ch}t", actor_id=f"a{ch}", target_id=f"x{ch}y",
           correlation_id=f"c{ch}", payload={f"k{ch}": f"v{ch}"})
    result = run("events", "--dsn", pg_dsn(db, "app_reader"))
    assert result.exit_code == 0, out_of(result)
    assert ch not in result.output, repr(result.output)
    counted = run("count", "--tenant", f"t92{ch}t", "--dsn", pg_dsn(db, "app_reader"))
    assert ch not in out_of(counted)


def test_c12_a_non_nfc_tenant_prints_unlike_its_nfc_twin(db, connect):
    conn = connect("app_writer")
    record(conn, "t92.nfc", tenant_id="t92jos\u00e9")
    record(conn, "t92.nfd", tenant_id="t92jose\u0301")
    out = run("events", "--dsn", pg_dsn(db, "app_reader")).output
    lines = [ln for ln in out.splitlines() if "t92.nf" in ln]
    assert len(lines) == 2
    assert "\u0301" not in out
    assert any("t92jos\u00e9" in ln for ln in lines)
    assert not all("t92jos\u00e9" in ln for ln in lines)  # the NFD one prints otherwise


def test_c13_a_tenant_with_escapes_in_secrets_list(db, tmp_path):
    keyfile = tmp_path / "t92.key"
    assert run("secrets", "keygen", str(keyfile)).exit_code == 0
    env = {"PGAUDIT_MASTER_KEY": keyfile.read_text().strip()}
    dsn = pg_dsn(db, "app_secrets")
    for args in (["secrets", "init"], ["secrets", "declare", "t92.k", "t92 key"]):
        r = run(*args, "--dsn", dsn, env=env)
        assert r.exit_code == 0, out_of(r)
    r = run("secrets", "put", "--tenant", "t92\x1b]0;x\x07", "t92.k", "--dsn", dsn, env=env, input="v")
    assert r.exit_code == 0, out_of(r)
    result = run("secrets", "list", "--dsn", dsn, env=env)
    assert result.exit_code == 0, out_of(result)
    assert "t92" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output


# ============================================ class M (more) ============================================

LONG = "t92SECRETVALUE" + "x" * 300


@pytest.mark.parametrize("field", ["tenant_id", "actor_id", "correlation_id", "idempotency_key", "target_id",
                                   "actor_type", "target_type"])
def test_m6_a_value_over_its_bound_is_refused_without_repeating_it_sync_and_async(db, connect, field):
    value = LONG * (2 if field == "target_id" else 1)
    kw = {field: value}
    if field == "actor_type":
        kw["actor_id"] = "a"
    with pytest.raises(InvalidInput) as err:
        record(connect("app_writer"), "t92.bound", **kw)
    assert "SECRETVALUE" not in msg(err)

    async def go():
        async with await aconn(db) as ac:
            with pytest.raises(InvalidInput) as aerr:
                await aio.record(ac, "t92.bound", best_effort=True, **kw)
            return aerr
    assert "SECRETVALUE" not in msg(asyncio.run(go()))
    assert rows(db) == []


@pytest.mark.parametrize("field", ["tenant_id", "actor_id", "correlation_id", "actor_type"])
def test_m7_a_context_value_over_its_bound_is_refused_without_repeating_it(db, connect, field):
    conn = connect("app_writer")
    with pytest.raises(InvalidInput) as err, audit_context(conn, **{field: LONG}):
        record(conn, "t92.ctxbound")
    assert "SECRETVALUE" not in msg(err)

    async def go():
        async with await aconn(db) as ac:
            with pytest.raises(InvalidInput) as aerr:
                async with aio.audit_context(ac, **{field: LONG}):
                    await aio.record(ac, "t92.ctxbound")
            return aerr
    assert "SECRETVALUE" not in msg(asyncio.run(go()))
    assert rows(db) == []


@pytest.mark.parametrize("addr", ["10.0.0.0/8", "255.255.255.255"])
def test_m8_async_audit_context_refuses_a_non_host_address_like_sync_without_repeating_it(db, addr):
    async def go():
        async with await aconn(db) as ac:
            with pytest.raises(InvalidInput) as aerr:
                async with aio.audit_context(ac, client_addr=addr):
                    await aio.record(ac, "t92.addr")
            return aerr
    assert addr not in msg(asyncio.run(go()))
    assert rows(db) == []


# ============================================ class C (pytest plugin, follow) ============================================

def test_c14_the_pytest_plugins_list_of_what_was_recorded_escapes_terminal_sequences(db, connect):
    from pgaudit_py.pytest_plugin import AuditTrail
    record(connect("app_writer"), "t92.plug", tenant_id="t92\x1b[2J", actor_id="t92\r\x1b[1A", payload={"k": "\x1b[31m"})
    with pytest.raises(AssertionError) as err:
        AuditTrail(db).assert_recorded("t92.nothing_like_it")
    text = str(err.value)
    assert "t92" in text
    assert "\x1b" not in text and "\r" not in text


def test_c15_events_follow_escapes_terminal_sequences_and_stops_cleanly(db, connect):
    import signal
    import subprocess
    import sys
    record(connect("app_writer"), "t92.follow", tenant_id="t92\x1b]0;x\x07", target_id="t92\x1b[2K")
    seal(db)
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "events", "--follow", "--since-seq", "0",
                             "--dsn", pg_dsn(db, "app_reader")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(4)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert b"t92.follow" in out
    assert b"\x1b" not in out and b"\x07" not in out


# ============================================ class L (more) ============================================

def test_l5_a_tenant_tokens_counts_and_months_count_only_its_tenant(db, start_api, make_token):
    token = make_token("reader", tenant_id="t92_a")
    t92_write_tenants(db, 2)
    api = start_api()
    with api.client(token) as client:
        c = client.get("/v1/audit/count", params=[("by_kind_prefix", "t92."), ("by_kind_prefix", "t92.other")])
        assert c.status_code == 200, c.text
        assert c.json()["by_kind_prefix"] == {"t92.": 2, "t92.other": 0}
        m = client.get("/v1/audit/monthly", params=[("by_kind_prefix", "t92.other")])
        assert m.status_code == 200
        assert sum(x["by_kind_prefix"]["t92.other"] for x in m.json()["months"]) == 0
        for path in ("/v1/audit/tracked", "/v1/audit/limits", "/v1/audit/status", "/v1/audit/archives"):
            assert client.get(path).status_code == 403, path


FAKE = "pga_" + "0" * 12 + "_" + "ab" * 32


def test_l6_rotating_x_forwarded_for_from_an_untrusted_client_does_not_escape_the_token_brake(db, start_api):
    api = start_api()
    statuses = []
    with api.client() as client:
        for i in range(13):
            r = client.get("/v1/audit", headers={"Authorization": f"Bearer {FAKE[:-2]}{i:02x}",
                                                 "X-Forwarded-For": f"198.51.100.{i + 1}"})
            statuses.append(r.status_code)
    assert 429 in statuses, statuses


def test_l7_a_spoofed_leftmost_forwarded_entry_behind_a_trusted_proxy_does_not_escape_the_brake(db):
    from api_server import LiveServer

    from pgaudit_py.server import ServerConfig
    api = LiveServer(ServerConfig(dsn=pg_dsn(db, "app_maintainer")), trusted_proxies=["127.0.0.1"])
    try:
        statuses = []
        with api.client() as client:
            for n in range(13):
                r = client.get("/v1/audit", headers={"Authorization": f"Bearer {FAKE[:-2]}{n:02x}",
                                                     "X-Forwarded-For": f"203.0.113.{n + 1}, 198.51.100.5"})
                statuses.append(r.status_code)
        assert 429 in statuses, statuses
    finally:
        api.stop()


# ============================================ class A (parity of argument refusals) ============================================

PARITY = [
    ("list_events", "app_reader", dict(since="t92SECRETsince")),
    ("list_events", "app_reader", dict(page_size="t92SECRET")),
    ("list_events", "app_reader", dict(page_size=True)),
    ("list_events", "app_reader", dict(since_seq=1.5)),
    ("list_events", "app_reader", dict(outcome="t92SECRETout")),
    ("list_events", "app_reader", dict(before_seq="t92SECRET")),
    ("count_events", "app_reader", dict(by_kind_prefix="t92SECRETprefix")),
    ("count_events", "app_reader", dict(until="t92SECRETuntil")),
    ("monthly_event_counts", "app_reader", dict(month_count="t92SECRET")),
    ("preview_prune", "app_maintainer", dict(older_than="t92SECRET days")),
    ("preview_prune", "app_maintainer", dict(older_than="1 day 1 day")),
    ("preview_prune", "app_maintainer", dict(older_than="90 days", batch_size="t92SECRET")),
    ("seal", "app_maintainer", dict(max_events="t92SECRET")),
]


@pytest.mark.parametrize("case", range(len(PARITY)),
                         ids=[f"{f}-{'-'.join(k)}-{i}" for i, (f, _, k) in enumerate(PARITY)])
def test_a5_async_refuses_bad_arguments_as_sync_does_without_repeating_them(db, connect, case):
    import pgaudit_py
    name, role, kw = PARITY[case]
    kw = dict(kw)
    with pytest.raises(InvalidInput) as serr:
        getattr(pgaudit_py, name)(connect(role), **kw)

    async def go():
        async with await aconn(db, role) as ac:
            with pytest.raises(InvalidInput) as aerr:
                await getattr(aio, name)(ac, **kw)
            return aerr
    aerr = asyncio.run(go())
    assert type(aerr.value) is type(serr.value)
    for m in (msg(serr), msg(aerr)):
        assert "SECRET" not in m and "1000000000000" not in m


INT_RANGE = [
    ("monthly_event_counts", "app_reader", dict(month_count=10**12)),
    ("list_events", "app_reader", dict(page_size=2**40)),
    ("list_events", "app_reader", dict(since_seq=10**30)),
    ("preview_prune", "app_maintainer", dict(older_than="90 days", batch_size=-(2**40))),
    ("seal", "app_maintainer", dict(max_events=2**63)),
]


@pytest.mark.parametrize("case", range(len(INT_RANGE)), ids=[f"{f}-{'-'.join(k)}" for f, _, k in INT_RANGE])
def test_m9_an_integer_past_its_arguments_range_is_bad_input_sync_and_async(db, connect, case):
    """python.md: "bad input is an InvalidInput, refused with nothing written"; security.md: the
    wrappers check their integers before sending anything."""
    import pgaudit_py
    name, role, kw = INT_RANGE[case]
    with pytest.raises(InvalidInput):
        getattr(pgaudit_py, name)(connect(role), **kw)

    async def go():
        async with await aconn(db, role) as ac:
            with pytest.raises(InvalidInput):
                await getattr(aio, name)(ac, **kw)
    asyncio.run(go())


@pytest.mark.parametrize("args", [["events", "--page-size", "99999999999999"], ["count", "--months", "99999999999999"],
                                  ["seal", "--max-events", "99999999999999"], ["events", "--since-seq", "9" * 30],
                                  ["events", "--before-seq", "9" * 30], ["events", "--before-intake-id", "9" * 30],
                                  ["prune", "--older-than", "90d", "--batch-size", "99999999999999", "--yes"]])
def test_c16_a_number_out_of_range_on_the_command_line_is_exit_2_without_echo(db, args):
    result = run(*args, "--dsn", pg_dsn(db, "app_maintainer"))
    text = out_of(result)
    assert result.exit_code == 2, text
    assert "Traceback" not in text and "99999999999999" not in text and "9" * 30 not in text
