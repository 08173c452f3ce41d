"""Trial 74: attacks on the per-session block lock and registry (K), the client_addr refusals (C),
Django's once-per-transaction clearing (J), and false alarms of the same changes (F). Every test
reads what the database holds and fails when the attack works (or an honest use is refused)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from contextlib import suppress

import httpx
import psycopg
import pytest
from django.urls import path
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from trial_helpers import both_verifiers, dj_record, django_test_client, seal_all

from pgaudit_py import aio, audit_context, record, request_context
from pgaudit_py.errors import PgAuditError
from pgaudit_py.integrations.asgi import AuditContextMiddleware

REFUSED = (psycopg.Error, PgAuditError)


def dsn(db, role: str = "app_writer") -> str:
    info = db.info
    return f"host={info.host} port={info.port} dbname={info.dbname} user={role}"


def who(db, kind: str) -> list[tuple]:
    return db.execute("SELECT actor_id, tenant_id FROM audit.events WHERE kind = %s ORDER BY occurred_at, intake_id",
                      (kind,)).fetchall()


def addr_of(db, kind: str) -> list[tuple]:
    return db.execute("SELECT host(client_addr), masklen(client_addr) FROM audit.events WHERE kind = %s"
                      " ORDER BY occurred_at, intake_id", (kind,)).fetchall()


@pytest.fixture
def notes(db):
    db.execute("""CREATE TABLE public.t74_notes (id serial PRIMARY KEY, body text);
                  GRANT ALL ON public.t74_notes, public.t74_notes_id_seq TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.t74_notes')")
    return "public.t74_notes"


def run_thread(target, timeout=10.0):
    """Run target in a daemon thread; (finished, error)."""
    errors: list[BaseException] = []

    def body():
        try:
            target()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    return (not t.is_alive()), errors


def wait_for_lock_wait(db, pid: int, timeout=5.0) -> None:
    end = time.monotonic() + timeout
    while not db.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
        assert time.monotonic() < end, "the record never waited on the lock"
        time.sleep(0.01)


# ------------------------------------------------------------------ K: the per-session lock and registry

def test_K_block_from_a_thread_while_anothers_record_waits_on_a_table_lock_opens_after_it_and_names_its_own(db, connect):
    """Thread A's record() waits on a lock in the database (holding the session's lock); thread B
    opens a block meanwhile. B must neither hang nor be refused, and each event names its own."""
    conn = connect("app_writer")
    locker = connect()
    locker.execute("BEGIN")
    locker.execute("LOCK TABLE audit.event_intake IN ACCESS EXCLUSIVE MODE")
    pid = conn.info.backend_pid
    a = threading.Thread(target=lambda: record(conn, "t74.k.a"), daemon=True)
    a.start()
    wait_for_lock_wait(db, pid)
    b_done: list[bool] = []

    def b():
        with audit_context(conn, actor_id="bob", tenant_id="bobco"):
            record(conn, "t74.k.b")
        b_done.append(True)
    tb = threading.Thread(target=b, daemon=True)
    tb.start()
    time.sleep(0.3)
    locker.execute("COMMIT")
    a.join(10)
    tb.join(10)
    assert not a.is_alive() and not tb.is_alive(), "hung"
    assert b_done == [True]
    assert who(db, "t74.k.a") == [("app_writer", None)]
    assert who(db, "t74.k.b") == [("bob", "bobco")]


def test_K_record_refused_promptly_while_another_threads_block_runs_a_long_statement(db, connect):
    conn = connect("app_writer")
    inside = threading.Event()

    def a():
        with audit_context(conn, actor_id="alice", tenant_id="acme"):
            inside.set()
            conn.execute("SELECT pg_sleep(1.5)")
            record(conn, "t74.k.alice")
    ta = threading.Thread(target=a, daemon=True)
    ta.start()
    assert inside.wait(5)
    t0 = time.monotonic()
    ok, errors = run_thread(lambda: record(conn, "t74.k.other"), timeout=10)
    took = time.monotonic() - t0
    ta.join(10)
    assert ok and not ta.is_alive()
    assert who(db, "t74.k.other") == [] and len(errors) == 1
    assert took < 1.0, f"refusal waited {took:.2f}s for the block's statement"
    assert who(db, "t74.k.alice") == [("alice", "acme")]


def test_K_failed_record_statement_releases_the_session_lock_for_another_threads_block(db, connect):
    conn = connect("app_writer")
    with suppress(*REFUSED):
        record(conn, "t74.k.bad", outcome="not-an-outcome")
    with suppress(*REFUSED):
        record(conn, "t74.k.bad2", payload={"x": 1}, idempotency_key="k" * 5000, best_effort=True)

    def b():
        with audit_context(conn, actor_id="bob"):
            record(conn, "t74.k.after_fail")
    ok, errors = run_thread(b)
    assert ok, "a block hung after a failed record"
    assert errors == []
    assert who(db, "t74.k.after_fail") == [("bob", None)]


def test_K_nested_blocks_and_best_effort_records_on_one_thread_do_not_hang(db, connect):
    conn = connect("app_writer")

    def a():
        with audit_context(conn, actor_id="alice", tenant_id="acme"):
            record(conn, "t74.k.n1", best_effort=True)
            with audit_context(conn, actor_id="bob"):
                record(conn, "t74.k.n2")
                with audit_context(conn, tenant_id="inner"):
                    record(conn, "t74.k.n3", best_effort=True)
            record(conn, "t74.k.n4")
    ok, errors = run_thread(a)
    assert ok and errors == []
    assert who(db, "t74.k.n1") == [("alice", "acme")]
    assert who(db, "t74.k.n2") == [("bob", "acme")]
    assert who(db, "t74.k.n3") == [("bob", "inner")]
    assert who(db, "t74.k.n4") == [("alice", "acme")]


def test_K_sync_best_effort_record_racing_a_block_never_writes_the_blocks_work_as_nobody(db, connect):
    conn = connect("app_writer")
    barrier = threading.Barrier(2)

    def a():
        barrier.wait(5)
        for i in range(20):
            record(conn, "t74.k.be", target_id=str(i), best_effort=True)

    def b():
        barrier.wait(5)
        for i in range(20):
            with suppress(*REFUSED), audit_context(conn, actor_id="alice", tenant_id="acme"):
                record(conn, "t74.k.blk", target_id=str(i))
    ts = [threading.Thread(target=f, daemon=True) for f in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert not any(t.is_alive() for t in ts), "hung"
    assert set(who(db, "t74.k.blk")) <= {("alice", "acme")}
    assert set(who(db, "t74.k.be")) <= {("app_writer", None)}


def test_K_aio_best_effort_record_and_a_block_in_another_task_name_their_own(db):
    """Task A's best-effort record opens its own transaction; task B's block opens while A's
    transaction stands: B must not be taken into A's transaction (its writes named by nobody, or
    committed by A's commit)."""
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn:
            async def a():
                for i in range(5):
                    with suppress(*REFUSED):
                        await aio.record(conn, "t74.k.abe", target_id=str(i), best_effort=True)
                    await asyncio.sleep(0)

            async def b():
                for i in range(5):
                    with suppress(*REFUSED):
                        async with aio.audit_context(conn, actor_id="alice", tenant_id="acme"):
                            await aio.record(conn, "t74.k.ablk", target_id=str(i))
                            await aio.record(conn, "t74.k.ablk2", target_id=str(i))
                    await asyncio.sleep(0)
            await asyncio.wait_for(asyncio.gather(a(), b()), 10)
    asyncio.run(main())
    assert set(who(db, "t74.k.ablk")) <= {("alice", "acme")}, who(db, "t74.k.ablk")
    assert set(who(db, "t74.k.ablk2")) <= {("alice", "acme")}, who(db, "t74.k.ablk2")
    assert set(who(db, "t74.k.abe")) <= {("app_writer", None)}


def test_K_aio_block_that_fails_while_another_tasks_best_effort_record_commits_leaves_no_event(db):
    """Task A's best-effort record (its own transaction) is on its way when task B's block opens:
    B's block fails and rolls back, so its event must not be in the log (nor be committed by A)."""
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn:
            async def a():
                with suppress(*REFUSED):
                    await aio.record(conn, "t74.k.be_a", best_effort=True)

            async def b():
                with suppress(RuntimeError, *REFUSED):
                    async with aio.audit_context(conn, actor_id="alice", tenant_id="acme"):
                        await aio.record(conn, "t74.k.undone")
                        await asyncio.sleep(0.1)
                        raise RuntimeError("alice's work fails: nothing of it stays")
            await asyncio.wait_for(asyncio.gather(a(), b()), 10)
    asyncio.run(main())
    assert who(db, "t74.k.undone") == [], "a rolled-back block's event is in the log"
    assert set(who(db, "t74.k.be_a")) <= {("app_writer", None)}


def test_K_sync_block_that_fails_while_another_threads_best_effort_record_waits_leaves_no_event(db, connect):
    """The sync twin of the case above: thread A's best-effort record waits on a table lock inside
    its own transaction; thread B's block opens meanwhile, records, and fails."""
    conn = connect("app_writer")
    locker = connect()
    locker.execute("BEGIN")
    locker.execute("LOCK TABLE audit.event_intake IN ACCESS EXCLUSIVE MODE")
    pid = conn.info.backend_pid
    a = threading.Thread(target=lambda: record(conn, "t74.k.sbe_a", best_effort=True), daemon=True)
    a.start()
    wait_for_lock_wait(db, pid)

    def b():
        with suppress(RuntimeError, *REFUSED), audit_context(conn, actor_id="alice", tenant_id="acme"):
            record(conn, "t74.k.sundone")
            time.sleep(0.1)
            raise RuntimeError("alice's work fails")
    tb = threading.Thread(target=b, daemon=True)
    tb.start()
    time.sleep(0.3)
    locker.execute("COMMIT")
    a.join(10)
    tb.join(10)
    assert not a.is_alive() and not tb.is_alive(), "hung"
    assert who(db, "t74.k.sundone") == []
    assert who(db, "t74.k.sbe_a") == [("app_writer", None)]


def test_K_connection_closed_inside_a_block_leaves_no_registry_entry_for_new_connections(db, connect):
    for i in range(5):
        conn = psycopg.connect(dsn(db), autocommit=True)
        with suppress(Exception), audit_context(conn, actor_id=f"gone{i}"):
            conn.close()
        del conn
        gc.collect()
    fresh = [connect("app_writer") for _ in range(5)]

    def b():
        for i, c in enumerate(fresh):
            record(c, "t74.k.fresh_plain", target_id=str(i))
            with audit_context(c, actor_id="bob"):
                record(c, "t74.k.fresh", target_id=str(i))
    ok, errors = run_thread(b)
    assert ok and errors == []
    assert who(db, "t74.k.fresh") == [("bob", None)] * 5
    assert who(db, "t74.k.fresh_plain") == [("app_writer", None)] * 5


def test_K_pooled_connection_after_a_failed_block_in_one_thread_serves_another_threads_block(db):
    pool = ConnectionPool(dsn(db), min_size=1, max_size=1, kwargs={"autocommit": True}, open=True)
    try:
        def a():
            with pool.connection() as c, audit_context(c, actor_id="alice", tenant_id="acme"):
                record(c, "t74.k.pool_a")
                raise RuntimeError("boom")
        ok, errors = run_thread(a)
        assert ok and len(errors) == 1

        def b():
            with pool.connection() as c:
                record(c, "t74.k.pool_plain")
                with audit_context(c, actor_id="bob"):
                    record(c, "t74.k.pool_b")
        ok, errors = run_thread(b)
        assert ok and errors == [], errors
    finally:
        pool.close()
    assert who(db, "t74.k.pool_a") == []
    assert who(db, "t74.k.pool_plain") == [("app_writer", None)]
    assert who(db, "t74.k.pool_b") == [("bob", None)]


def test_K_aio_twin_of_a_sync_connection_is_refused_inside_the_sync_threads_block(db, connect):
    conn = connect("app_writer")
    twin = psycopg.AsyncConnection(conn.pgconn)
    inside, done = threading.Event(), threading.Event()

    def a():
        with audit_context(conn, actor_id="alice", tenant_id="acme"):
            inside.set()
            done.wait(5)
            record(conn, "t74.k.twin_alice")
    ta = threading.Thread(target=a, daemon=True)
    ta.start()
    assert inside.wait(5)

    async def other():
        with suppress(*REFUSED):
            await aio.record(twin, "t74.k.twin_other")
    try:
        asyncio.run(asyncio.wait_for(other(), 5))
    finally:
        done.set()
        ta.join(10)
    assert not ta.is_alive()
    assert who(db, "t74.k.twin_other") == []
    assert who(db, "t74.k.twin_alice") == [("alice", "acme")]


def test_K_aio_block_on_a_twin_while_a_sync_record_waits_does_not_deadlock_the_event_loop(db, connect):
    """A sync record on the connection waits for a table lock that a task of the event loop holds;
    another task opens an aio block on the twin AsyncConnection. The event loop must not stop
    (a thread lock taken inside a coroutine) so the task holding the table lock can commit."""
    conn = connect("app_writer")
    twin = psycopg.AsyncConnection(conn.pgconn)
    pid = conn.info.backend_pid
    state: dict[str, object] = {}

    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db, db.info.user), autocommit=True) as locker:
            await locker.execute("BEGIN")
            await locker.execute("LOCK TABLE audit.event_intake IN ACCESS EXCLUSIVE MODE")
            s = threading.Thread(target=lambda: state.setdefault("s", record(conn, "t74.k.dl_sync")), daemon=True)
            s.start()
            while not (await (await locker.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,))).fetchone())[0]:
                await asyncio.sleep(0.01)

            async def release():
                await asyncio.sleep(0.3)
                await locker.execute("COMMIT")
            rel = asyncio.create_task(release())
            await asyncio.sleep(0)
            with suppress(*REFUSED):
                async with aio.audit_context(twin, actor_id="bob"):
                    await aio.record(twin, "t74.k.dl_twin")
            await rel
            s.join(5)
        state["done"] = True

    ok, errors = run_thread(lambda: asyncio.run(main()), timeout=8)
    where = ""
    if not ok:  # where the event loop's thread stands, then break the deadlock so the run goes on
        import sys
        import traceback
        where = " | ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                           for fr in sys._current_frames().values()
                           for f in traceback.extract_stack(fr)[-2:] if "blocks.py" in f.filename)
        db.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = %s"
                   " OR (query LIKE 'LOCK TABLE audit.event_intake%%' AND pid <> pg_backend_pid())", (pid,))
        time.sleep(1)
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                   " query LIKE 'LOCK TABLE audit.event_intake%%' AND pid <> pg_backend_pid()")
    assert ok, f"the event loop stopped: a coroutine waited on a thread lock held by a record waiting on the loop ({where})"
    assert errors == []
    assert who(db, "t74.k.dl_sync") == [("app_writer", None)]
    assert set(who(db, "t74.k.dl_twin")) <= {("bob", None)}


def test_K_caller_transaction_with_savepoint_name_block_is_nested_and_restores_the_callers_values(db, connect, notes):
    conn = connect("app_writer")
    with conn.transaction(savepoint_name="t74_sp"):
        conn.execute("SELECT set_config('pgaudit_py.actor_id', 'carol', true)")
        with audit_context(conn, actor_id="alice", tenant_id="acme"):
            record(conn, "t74.k.sp_in")
        record(conn, "t74.k.sp_after")
    with audit_context(conn, actor_id="bob"):
        record(conn, "t74.k.sp_next")
    assert who(db, "t74.k.sp_in") == [("alice", "acme")]
    assert who(db, "t74.k.sp_after") == [("carol", None)]
    assert who(db, "t74.k.sp_next") == [("bob", None)]


def test_K_autocommit_off_implicit_transaction_block_is_nested_and_leaves_nothing_after_commit(db, connect, notes):
    """autocommit=False: psycopg's implicit transaction is open (a SELECT ran); the block is a
    savepoint in it; after commit, a write names the role, and the next block is outermost."""
    conn = connect("app_writer", autocommit=False)
    conn.execute("SELECT 1")
    with audit_context(conn, actor_id="alice", tenant_id="acme"):
        record(conn, "t74.k.off_in")
        conn.execute("INSERT INTO t74_notes (body) VALUES ('in')")
    record(conn, "t74.k.off_after_block")
    conn.commit()
    record(conn, "t74.k.off_after_commit")
    conn.commit()
    with audit_context(conn, tenant_id="solo"):
        record(conn, "t74.k.off_outer")
    conn.commit()
    assert who(db, "t74.k.off_in") == [("alice", "acme")]
    assert who(db, "public.t74_notes.insert") == [("alice", "acme")]
    assert who(db, "t74.k.off_after_block") == [("app_writer", None)]
    assert who(db, "t74.k.off_after_commit") == [("app_writer", None)]
    assert who(db, "t74.k.off_outer") == [("app_writer", "solo")]


# ------------------------------------------------------------------ C: client_addr

def db_takes(db, conn, addr: str) -> str | None:
    """The host stored for addr, or None when refused."""
    try:
        with audit_context(conn, actor_id="c", client_addr=addr):
            ev = record(conn, "t74.c.probe")
    except REFUSED:
        return None
    return db.execute("SELECT host(client_addr) FROM audit.events WHERE id = %s", (ev.id,)).fetchone()[0]


@pytest.mark.parametrize("given", ["127.0.0.1", "::1", "169.254.10.20", "fe80::1", "10.1.2.3", "172.16.0.1",
                                   "192.168.1.1", "192.0.2.1", "198.51.100.7", "2001:db8::1", "fd00::1",
                                   "100.64.0.1", "::ffff:127.0.0.1", "127.0.0.1/32", "FE80::ABCD", "1.1.1.1"])
def test_C_ordinary_host_addresses_are_accepted_by_the_database_and_the_integrations(db, connect, notes, given):
    conn = connect("app_writer")
    host = db_takes(db, conn, given)
    assert host is not None, f"{given} refused"
    with audit_context(conn, actor_id="c", client_addr=given):
        conn.execute("INSERT INTO t74_notes (body) VALUES ('c')")
    assert addr_of(db, "public.t74_notes.insert")[0][0] == host
    assert request_context.ip_address(given.split("/")[0]) is not None, f"{given} left out by the integrations"


@pytest.mark.parametrize("given", ["::0.0.0.0", "::ffff:0:0", "0.0.0.0/32", "FF02::1", "::FFFF:E000:1",
                                   "::ffff:e000:1", "::ffff:ffff:ffff", "0:0:0:0:0:0:0:0", "ff0e::101/128",
                                   "239.255.255.250", "::ffff:239.1.2.3/128"])
def test_C_no_clients_address_in_any_spelling_is_refused(db, connect, given):
    conn = connect("app_writer")
    assert db_takes(db, conn, given) is None, given


@pytest.mark.parametrize("given", ["::224.0.0.1", "::255.255.255.255"])
def test_C_a_multicast_or_broadcast_address_wrapped_in_another_ipv6_form_names_no_client(db, connect, given):
    """The IPv4-compatible spelling (::a.b.c.d, deprecated, which PostgreSQL itself prints with the
    IPv4 address inside) of a multicast group or the broadcast address names no client either."""
    conn = connect("app_writer")
    assert db_takes(db, conn, given) is None, f"{given} stored as a client's address"


@pytest.mark.parametrize("given", ["0.0.0.0", "::", "255.255.255.255", "::ffff:0.0.0.0", "224.0.0.1", "ff02::1",
                                   "::ffff:224.0.0.1", "::224.0.0.1", "::0.0.0.1", "::ffff:0:224.0.0.1",
                                   "2002:e000:1::1", "240.0.0.1", "::ffff:240.0.0.1", "fe80::1%eth0",
                                   "FF02::1%1", " 127.0.0.1 ", "::1", "10.0.0.1"])
def test_C_the_integrations_and_the_database_agree_on_each_address(db, connect, given):
    """What the integrations pass (ip_address) the database takes; what they leave out it refuses
    (a request whose address the database refuses would have every write refused)."""
    conn = connect("app_writer")
    passed = request_context.ip_address(given)
    if passed is not None:
        assert db_takes(db, conn, passed) is not None, f"integrations pass {passed!r}, the database refuses it"
    else:
        bare = given.strip().split("%")[0]
        assert db_takes(db, conn, bare) is None, f"integrations leave out {given!r}, the database takes it"


# ------------------------------------------------------------------ J: Django's clearing per transaction

def dj_helper_sets_session(request):
    from django.db import connection, transaction
    from django.http import HttpResponse
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pgaudit_py.tenant_id', 'acme', false),"
                       " set_config('pgaudit_py.actor_id', 'alice', false)")
        dj_record("t74.dj.helper")
    return HttpResponse("ok")


def dj_callproc_helper(request):
    """A library sets the session's values with callproc, Django's own cursor API, and nothing else."""
    from django.db import connection
    from django.http import HttpResponse
    with connection.cursor() as cursor:
        cursor.callproc("set_config", ["pgaudit_py.actor_id", "alice", False])
        cursor.callproc("set_config", ["pgaudit_py.tenant_id", "acme", False])
    return HttpResponse("ok")


def dj_plain(request):
    from django.http import HttpResponse
    dj_record("t74.dj.req")
    return HttpResponse("ok")


def dj_addr(request):
    from django.http import HttpResponse
    dj_record("t74.dj.addr")
    return HttpResponse("ok")


urlpatterns = [path("helper", dj_helper_sets_session), path("plain", dj_plain),
               path("callproc", dj_callproc_helper), path("addr", dj_addr)]


@pytest.fixture
def django_client(db):
    with django_test_client(db, __name__, {}) as client:
        yield client


@pytest.fixture
def django_off_client(db):
    with django_test_client(db, __name__, {"AUTOCOMMIT": False}) as client:
        yield client


def test_J_atomic_job_that_rolls_back_after_the_clear_then_later_work_names_nobody(db, django_client):
    from django.db import transaction
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    with suppress(RuntimeError), transaction.atomic():
        dj_record("t74.dj.rolled")
        raise RuntimeError("job fails")
    with transaction.atomic():
        dj_record("t74.dj.next_atomic")
    dj_record("t74.dj.next_auto")
    assert who(db, "t74.dj.helper") == [("alice", "acme")]
    assert who(db, "t74.dj.rolled") == []
    assert who(db, "t74.dj.next_atomic") == [("app_writer", None)]
    assert who(db, "t74.dj.next_auto") == [("app_writer", None)]


def test_J_driver_record_after_a_rolled_back_atomic_job_does_not_name_the_requests_leftover(db, django_client):
    """As trial 73's driver write after an atomic job, but the job's transaction rolls back: the clear
    it began with is rolled back with it."""
    from django.db import connection, transaction
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    with suppress(RuntimeError), transaction.atomic():
        dj_record("t74.dj.rolled2")
        raise RuntimeError("job fails")
    record(connection.connection, "t74.dj.raw_after_rollback")
    assert who(db, "t74.dj.raw_after_rollback") == [("app_writer", None)]


def test_J_driver_record_as_a_jobs_first_statement_after_a_request_names_nobody(db, django_client):
    """A job's first work on Django's connection after a request is pgaudit_py.record on its driver
    connection (the clear follows the driver's connection, docs/integrations.md)."""
    from django.db import connection
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    record(connection.connection, "t74.dj.raw_first")
    assert who(db, "t74.dj.raw_first") == [("app_writer", None)]


def test_J_set_autocommit_switches_with_a_rollback_do_not_bring_the_leftover_back(db, django_client):
    from django.db import connection
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    connection.set_autocommit(False)
    dj_record("t74.dj.sw1")
    connection.rollback()
    connection.set_autocommit(True)
    dj_record("t74.dj.sw2")
    connection.set_autocommit(False)
    dj_record("t74.dj.sw3")
    connection.commit()
    connection.set_autocommit(True)
    record(connection.connection, "t74.dj.sw_raw")
    assert who(db, "t74.dj.sw1") == []
    for k in ("t74.dj.sw2", "t74.dj.sw3", "t74.dj.sw_raw"):
        assert who(db, k) == [("app_writer", None)], k


def test_J_nested_atomic_and_durable_jobs_name_nobody_after_a_request(db, django_client):
    from django.db import transaction
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    with transaction.atomic():
        with suppress(RuntimeError), transaction.atomic():
            dj_record("t74.dj.inner_rolled")
            raise RuntimeError("inner fails")
        with transaction.atomic():
            dj_record("t74.dj.inner_ok")
        dj_record("t74.dj.outer")
    with transaction.atomic(durable=True):
        dj_record("t74.dj.durable")
    assert who(db, "t74.dj.inner_rolled") == []
    for k in ("t74.dj.inner_ok", "t74.dj.outer", "t74.dj.durable"):
        assert who(db, k) == [("app_writer", None)], k


def test_J_on_commit_callbacks_and_a_server_side_cursor_after_a_request_name_nobody(db, django_client):
    from django.db import connection, transaction
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    with transaction.atomic():
        transaction.on_commit(lambda: dj_record("t74.dj.on_commit"))
        dj_record("t74.dj.oc_body")
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    cursor = connection.chunked_cursor()
    cursor.execute("SELECT audit.record(kind => 't74.dj.ssc', target_id => g::text) FROM generate_series(1, 3) g")
    cursor.fetchall()
    cursor.close()
    assert who(db, "t74.dj.on_commit") == [("app_writer", None)]
    assert who(db, "t74.dj.oc_body") == [("app_writer", None)]
    assert who(db, "t74.dj.ssc") == [("app_writer", None)] * 3


def test_J_a_request_that_sets_the_session_with_callproc_only_leaves_nothing_for_a_job(db, django_client):
    """Django's callproc is not wrapped (documented), so a request whose only database work is a
    library's callproc never marks the connection: the job after it must still name nobody."""
    django_client.get("/callproc", headers={"x-user": "bob"})
    dj_record("t74.dj.after_callproc")
    assert who(db, "t74.dj.after_callproc") == [("app_writer", None)]


def test_J_autocommit_job_costs_one_clear_then_none_after_one_request(db, django_client):
    from django.db import connection
    django_client.get("/plain", headers={"x-user": "bob"})
    raw = connection.connection
    base = raw.cursor_factory
    sent: list[str] = []

    class Counting(base):  # type: ignore[misc, valid-type]
        def execute(self, query, *a, **k):
            if "set_config('pgaudit_py." in str(query):
                sent.append(str(query))
            return super().execute(query, *a, **k)
    raw.cursor_factory = Counting
    try:
        for i in range(6):
            dj_record(f"t74.dj.cost{i}")
    finally:
        raw.cursor_factory = base
    assert len(sent) <= 1, f"{len(sent)} set_config statements for 6 autocommit queries"
    for i in range(6):
        assert who(db, f"t74.dj.cost{i}") == [("app_writer", None)]


def test_J_job_own_session_value_in_autocommit_after_a_request_holds(db, django_client):
    """A job outside any request sets its own actor for the session (in autocommit, as its first
    statement): the clear comes before it, and its later queries name it."""
    from django.db import connection
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pgaudit_py.actor_id', 'nightly', false)")
    dj_record("t74.dj.own1")
    dj_record("t74.dj.own2")
    assert who(db, "t74.dj.own1") == [("nightly", None)]
    assert who(db, "t74.dj.own2") == [("nightly", None)]


def test_J_autocommit_off_rolled_back_job_then_next_transaction_names_nobody(db, django_off_client):
    from django.db import connection, transaction
    django_off_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    transaction.commit()
    dj_record("t74.dj.off1")
    transaction.rollback()
    dj_record("t74.dj.off2")
    transaction.commit()
    record(connection.connection, "t74.dj.off_raw")
    transaction.commit()
    assert who(db, "t74.dj.off1") == []
    assert who(db, "t74.dj.off2") == [("app_writer", None)]
    assert who(db, "t74.dj.off_raw") == [("app_writer", None)]


def test_J_connection_reopened_after_a_request_carries_nothing_and_costs_nothing(db, django_client):
    from django.db import connection
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    connection.close()
    dj_record("t74.dj.reopened")
    record(connection.connection, "t74.dj.reopened_raw")
    assert who(db, "t74.dj.reopened") == [("app_writer", None)]
    assert who(db, "t74.dj.reopened_raw") == [("app_writer", None)]


# ------------------------------------------------------------------ F: false alarms

def test_F_sync_and_aio_blocks_with_ordinary_addresses_name_and_verify(db, connect, notes):
    conn = connect("app_writer")
    for i, addr in enumerate(["127.0.0.1", "::1", "fe80::1", "fd12:3456::1", "169.254.0.9"]):
        with audit_context(conn, actor_id=f"u{i}", tenant_id="acme", client_addr=addr):
            record(conn, f"t74.f.s{i}")
            conn.execute("INSERT INTO t74_notes (body) VALUES (%s)", (str(i),))

    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as ac:
            for i, addr in enumerate(["10.9.8.7", "::ffff:192.168.0.1"]):
                async with aio.audit_context(ac, actor_id=f"a{i}", client_addr=addr):
                    await aio.record(ac, f"t74.f.a{i}")
            await aio.record(ac, "t74.f.a_after")
    asyncio.run(main())
    for i in range(5):
        assert who(db, f"t74.f.s{i}") == [(f"u{i}", "acme")]
    assert len(who(db, "public.t74_notes.insert")) == 5
    assert addr_of(db, "t74.f.a1") == [("::ffff:192.168.0.1", 128)]
    assert who(db, "t74.f.a_after") == [("app_writer", None)]
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("client_host", ["127.0.0.1", "::1", "fe80::1%eth0", "192.168.10.2"])
def test_F_starlette_middleware_names_the_request_and_its_loopback_or_private_address(db, client_host):
    async def write(request: Request) -> PlainTextResponse:
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn, \
                request_context.transaction_async(conn):
            await conn.execute("SELECT audit.record(kind => 't74.f.web')")
        return PlainTextResponse("ok")
    app = Starlette(routes=[Route("/w", write, methods=["POST"])])
    app.add_middleware(AuditContextMiddleware, context=lambda r: {"actor_id": r.headers.get("x-user")})

    async def main():
        transport = httpx.ASGITransport(app=app, client=(client_host, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.post("/w", headers={"x-user": "dana"})).status_code
    assert asyncio.run(main()) == 200
    assert who(db, "t74.f.web") == [("dana", None)]
    assert addr_of(db, "t74.f.web")[0][0] == client_host.split("%")[0]
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("remote", ["127.0.0.1", "::1", "10.0.0.5"])
def test_F_django_request_from_a_loopback_or_private_address_then_job_name_their_own(db, django_client, remote):
    from django.db import transaction
    r = django_client.get("/addr", headers={"x-user": "erin"}, REMOTE_ADDR=remote)
    assert r.status_code == 200
    with transaction.atomic():
        dj_record("t74.dj.fjob")
    dj_record("t74.dj.fjob2")
    assert who(db, "t74.dj.addr") == [("erin", None)]
    assert addr_of(db, "t74.dj.addr")[0][0] == remote
    assert who(db, "t74.dj.fjob") == [("app_writer", None)]
    assert who(db, "t74.dj.fjob2") == [("app_writer", None)]
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)

