"""Trial 73: attacks on the block holder (H), the one-host client_addr (A), Django's clearing of a
request's session leftovers (D), and false alarms of the same changes (F). Every test reads what the
database holds and fails when the attack works (or an honest use is refused)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import sys
import threading
import time
from contextlib import suppress

import anyio
import anyio.to_thread
import psycopg
import pytest
from django.urls import path
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool
from trial_helpers import both_verifiers, dj_record, django_test_client, seal_all

from pgaudit_py import aio, audit_context, record, request_context
from pgaudit_py.errors import PgAuditError, UnsupportedSession
from pgaudit_py.events import record_call

REFUSED = (psycopg.Error, PgAuditError)


def dsn(db, role: str = "app_writer") -> str:
    info = db.info
    return f"host={info.host} port={info.port} dbname={info.dbname} user={role}"


def who(db, kind: str) -> list[tuple]:
    return db.execute("SELECT actor_id, tenant_id FROM audit.events WHERE kind = %s ORDER BY occurred_at, intake_id",
                      (kind,)).fetchall()


@pytest.fixture
def notes(db):
    db.execute("""CREATE TABLE public.t73_notes (id serial PRIMARY KEY, body text);
                  GRANT ALL ON public.t73_notes, public.t73_notes_id_seq TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.t73_notes')")
    return "public.t73_notes"


def wait_active(conn, timeout=5.0):
    end = time.monotonic() + timeout
    while conn.info.transaction_status != TransactionStatus.ACTIVE:
        assert time.monotonic() < end, "the other query never started"
        time.sleep(0.005)


# ------------------------------------------------------------------ H: the block holder

def test_H_block_opened_while_another_threads_plain_query_runs_is_outermost_and_inherits_no_session_tenant(db, connect):
    """Another thread's query (no block) is in flight when a block opens: the block must still be
    outermost and clear what the session holds, not inherit a leftover tenant."""
    conn = connect("app_writer")
    conn.execute("SELECT set_config('pgaudit_py.tenant_id', 't73-leftover', false)")
    t = threading.Thread(target=lambda: conn.execute("SELECT pg_sleep(0.4)"))
    t.start()
    wait_active(conn)
    try:
        with audit_context(conn, actor_id="bob"):
            record(conn, "t73.h.sync")
    except REFUSED:
        pass
    t.join()
    assert who(db, "t73.h.sync") in ([], [("bob", None)])


def test_H_aio_block_opened_while_another_tasks_plain_query_runs_inherits_no_session_tenant(db):
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn:
            await conn.execute("SELECT set_config('pgaudit_py.tenant_id', 't73-leftover', false)")
            slow = asyncio.create_task(conn.execute("SELECT pg_sleep(0.3)"))
            while conn.info.transaction_status != TransactionStatus.ACTIVE:
                await asyncio.sleep(0.005)
            try:
                async with aio.audit_context(conn, actor_id="bob"):
                    await aio.record(conn, "t73.h.aio")
            except REFUSED:
                pass
            await slow
    asyncio.run(main())
    assert who(db, "t73.h.aio") in ([], [("bob", None)])


def test_H_record_checked_before_another_thread_opens_its_block_is_not_the_blocks(db, connect):
    """record() checks the holder, then runs: a thread preempted between the two (forced here with a
    trace hook at that very point) writes inside a block opened meanwhile."""
    conn = connect("app_writer")
    checked, opened = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code is record_call.__code__:
            checked.set()
            opened.wait(5)
        return None

    def b():
        sys.settrace(tracer)
        try:
            record(conn, "t73.h.race")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            sys.settrace(None)

    t = threading.Thread(target=b)
    t.start()
    assert checked.wait(5)
    try:
        with audit_context(conn, actor_id="alice", tenant_id="acme"):
            opened.set()
            t.join(2)
            record(conn, "t73.h.alice")
    except REFUSED:
        pass
    opened.set()
    t.join()
    assert ("alice", "acme") not in who(db, "t73.h.race")


def test_H_task_started_in_a_block_that_outlives_it_cannot_write_in_a_later_block_of_another_task(db):
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn:
            go, b_open = asyncio.Event(), asyncio.Event()
            result = {}

            async def straggler():
                await go.wait()
                try:
                    await aio.record(conn, "t73.h.straggler")
                    result["s"] = "written"
                except UnsupportedSession:
                    result["s"] = "refused"

            async with aio.audit_context(conn, actor_id="alice"):
                s = asyncio.create_task(straggler())
                await aio.record(conn, "t73.h.alice")

            async def task_b():
                async with aio.audit_context(conn, actor_id="bob", tenant_id="bobco"):
                    b_open.set()
                    await asyncio.sleep(0.2)
                    await aio.record(conn, "t73.h.bob")
            tb = asyncio.create_task(task_b())
            await b_open.wait()
            go.set()
            await asyncio.gather(s, tb)
            return result
    res = asyncio.run(main())
    assert ("bob", "bobco") not in who(db, "t73.h.straggler"), res
    assert who(db, "t73.h.bob") == [("bob", "bobco")]


def test_H_child_task_of_outer_block_cannot_write_inside_the_parents_nested_block(db):
    """Parent opens a1, starts child C, then opens nested a2 (another actor): C's writes while a2 is
    open would be a2's actor; they are refused or not a2's."""
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn:
            inner_open, done = asyncio.Event(), asyncio.Event()

            async def child():
                await inner_open.wait()
                with suppress(UnsupportedSession):
                    await aio.record(conn, "t73.h.child")
                done.set()

            async with aio.audit_context(conn, actor_id="alice", tenant_id="acme"):
                c = asyncio.create_task(child())
                async with aio.audit_context(conn, actor_id="root-admin"):
                    inner_open.set()
                    await done.wait()
                await c
    asyncio.run(main())
    assert ("root-admin", "acme") not in who(db, "t73.h.child")


def test_H_child_nested_block_then_parent_exits_first_leaves_no_write_misnamed(db):
    """A child task opens its own nested block; the parent ends its outer block without waiting. A
    third, unrelated task writes afterwards: it must not be the child's or the parent's actor."""
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn:
            child_in, parent_out = asyncio.Event(), asyncio.Event()

            async def child():
                with suppress(*REFUSED):
                    async with aio.audit_context(conn, actor_id="carol"):
                        child_in.set()
                        await parent_out.wait()
                        await aio.record(conn, "t73.h.carol")

            c = None
            with suppress(*REFUSED):
                async with aio.audit_context(conn, actor_id="alice"):
                    c = asyncio.create_task(child())
                    await child_in.wait()
            parent_out.set()

            async def stranger():
                with suppress(*REFUSED):
                    await aio.record(conn, "t73.h.stranger")
            await asyncio.create_task(stranger())
            if c:
                with suppress(*REFUSED):
                    await c
            if conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.rollback()
    asyncio.run(main())
    assert who(db, "t73.h.stranger") in ([], [("app_writer", None)])


def test_H_thread_pool_without_copied_context_cannot_write_in_the_block(db, connect):
    conn = connect("app_writer")
    with concurrent.futures.ThreadPoolExecutor(1) as pool, audit_context(conn, actor_id="alice", tenant_id="acme"):
        fut = pool.submit(record, conn, "t73.h.pool")
        with suppress(*REFUSED):
            fut.result()
    assert who(db, "t73.h.pool") == []


def test_H_copied_context_kept_after_the_block_cannot_write_in_a_later_block(db, connect):
    """A framework keeps the context it copied inside alice's block and runs work in it later, while
    bob's block is open on the same connection."""
    conn = connect("app_writer")
    with audit_context(conn, actor_id="alice"):
        kept = contextvars.copy_context()
    bob_in, bob_go = threading.Event(), threading.Event()

    def bob():
        with audit_context(conn, actor_id="bob", tenant_id="bobco"):
            bob_in.set()
            bob_go.wait(5)
            record(conn, "t73.h.bob")
    t = threading.Thread(target=bob)
    t.start()
    assert bob_in.wait(5)
    with concurrent.futures.ThreadPoolExecutor(1) as pool, suppress(*REFUSED):
        pool.submit(kept.run, record, conn, "t73.h.kept").result()
    bob_go.set()
    t.join()
    assert who(db, "t73.h.kept") == []


def test_H_failed_enter_leaves_the_connection_usable_by_others(db):
    """A block whose enter fails (a NUL in a value) must not leave the pool's connection held."""
    with ConnectionPool(dsn(db), min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        with pool.connection() as conn, suppress(*REFUSED, ValueError), audit_context(conn, actor_id="al\x00ice"):
            pass
        out = {}

        def other():
            with pool.connection() as conn:
                record(conn, "t73.h.after_enter")
                with audit_context(conn, actor_id="dave"):
                    record(conn, "t73.h.dave")
                out["ok"] = True
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert who(db, "t73.h.after_enter") == [("app_writer", None)]
    assert who(db, "t73.h.dave") == [("dave", None)]


def test_H_failed_commit_at_exit_leaves_the_connection_usable_by_others(db):
    """A deferred constraint fails the block's COMMIT: the pool's next borrower (another thread) is
    not refused for a block that is over."""
    db.execute("""CREATE TABLE public.t73_once (k int, CONSTRAINT t73_once_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED);
                  GRANT ALL ON public.t73_once TO app_writer""")
    with ConnectionPool(dsn(db), min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        with pool.connection() as conn, suppress(*REFUSED), audit_context(conn, actor_id="erin"):
            conn.execute("INSERT INTO public.t73_once VALUES (1), (1)")
            record(conn, "t73.h.erin")
        errors = []

        def other():
            try:
                with pool.connection() as conn:
                    record(conn, "t73.h.after_exit")
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert errors == []
    assert who(db, "t73.h.erin") == []
    assert who(db, "t73.h.after_exit") == [("app_writer", None)]


def test_H_cancelled_aio_block_leaves_the_connection_usable_by_another_task(db):
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn:
            async def slow():
                async with aio.audit_context(conn, actor_id="frank"):
                    await conn.execute("SELECT pg_sleep(5)")
            t = asyncio.create_task(slow())
            await asyncio.sleep(0.3)
            t.cancel()
            with suppress(asyncio.CancelledError, *REFUSED):
                await t
            if conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.rollback()

            async def other():
                await aio.record(conn, "t73.h.after_cancel")
            await asyncio.create_task(other())
    asyncio.run(main())
    assert who(db, "t73.h.after_cancel") == [("app_writer", None)]


def test_H_aio_failed_commit_at_exit_leaves_the_connection_usable_by_another_task(db):
    db.execute("""CREATE TABLE public.t73_once2 (k int, CONSTRAINT t73_once2_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED);
                  GRANT ALL ON public.t73_once2 TO app_writer""")

    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn:
            with suppress(*REFUSED):
                async with aio.audit_context(conn, actor_id="erin"):
                    await conn.execute("INSERT INTO public.t73_once2 VALUES (1), (1)")

            async def other():
                await aio.record(conn, "t73.h.aio_after_exit")
                async with aio.audit_context(conn, actor_id="gus"):
                    await aio.record(conn, "t73.h.gus")
            await asyncio.create_task(other())
    asyncio.run(main())
    assert who(db, "t73.h.aio_after_exit") == [("app_writer", None)]
    assert who(db, "t73.h.gus") == [("gus", None)]


def test_H_blocks_exited_out_of_order_leave_the_connection_usable_by_another_thread(db, connect):
    w = connect("app_writer")
    a = audit_context(w, actor_id="alice")
    b = audit_context(w, actor_id="bob")
    a.__enter__()
    b.__enter__()
    with suppress(Exception):
        a.__exit__(None, None, None)
    with suppress(Exception):
        b.__exit__(None, None, None)
    if w.info.transaction_status != TransactionStatus.IDLE:
        w.execute("ROLLBACK")
    errors = []

    def other():
        try:
            with audit_context(w, actor_id="hank"):
                record(w, "t73.h.hank")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors == []
    assert who(db, "t73.h.hank") == [("hank", None)]


def test_H_second_python_connection_over_the_same_libpq_connection_is_refused_or_not_the_blocks(db, connect):
    """The holder is known by the Python object: another object over the same server session."""
    conn = connect("app_writer")
    twin = psycopg.Connection(conn.pgconn)
    in_block, go = threading.Event(), threading.Event()

    def other():
        in_block.wait(5)
        with suppress(*REFUSED):
            record(twin, "t73.h.twin")
        go.set()
    t = threading.Thread(target=other)
    t.start()
    with audit_context(conn, actor_id="alice", tenant_id="acme"):
        in_block.set()
        go.wait(5)
    t.join()
    assert ("alice", "acme") not in who(db, "t73.h.twin")


def test_H_sqlalchemy_driver_connection_is_the_same_holder(db):
    from sqlalchemy import create_engine
    info = db.info
    engine = create_engine(f"postgresql+psycopg://app_writer@{info.host}:{info.port}/{info.dbname}",
                           pool_size=1, max_overflow=0, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as sa:
            raw = sa.connection.driver_connection
            in_block, go = threading.Event(), threading.Event()

            def other():
                in_block.wait(5)
                with suppress(*REFUSED):
                    record(sa.connection.driver_connection, "t73.h.sa")
                go.set()
            t = threading.Thread(target=other)
            t.start()
            with audit_context(raw, actor_id="alice", tenant_id="acme"):
                in_block.set()
                go.wait(5)
            t.join()
    finally:
        engine.dispose()
    assert who(db, "t73.h.sa") == []


# ------------------------------------------------------------------ A: client_addr

def stored_addrs(db):
    return db.execute("SELECT client_addr::text, host(client_addr), masklen(client_addr), family(client_addr)"
                      " FROM audit.events WHERE origin IN ('record', 'capture') ORDER BY occurred_at, intake_id").fetchall()


@pytest.mark.parametrize(("given", "host"), [("10.0.0.1/32", "10.0.0.1"), ("2001:db8::1/128", "2001:db8::1"),
                                             ("::ffff:10.0.0.1", "::ffff:10.0.0.1")])
def test_A_one_host_spellings_are_accepted_and_stored_as_that_host(db, connect, notes, given, host):
    w = connect("app_writer")
    with audit_context(w, actor_id="alice", client_addr=given):
        record(w, "t73.a.ok")
        w.execute("INSERT INTO t73_notes (body) VALUES ('x')")
    rows = stored_addrs(db)
    assert [(r[1], r[2]) for r in rows] == [(host, 32 if "." in host and ":" not in host else 128)] * 2


@pytest.mark.parametrize("given", ["10.0.0.1/8", "::ffff:10.0.0.0/104", "10.0.0.0/31", "2001:db8::/127"])
def test_A_networks_in_any_spelling_are_refused_by_record_and_capture(db, connect, notes, given):
    w = connect("app_writer")
    refused = 0
    for write in (lambda: record(w, "t73.a.net"), lambda: w.execute("INSERT INTO t73_notes (body) VALUES ('x')")):
        try:
            with audit_context(w, actor_id="alice", client_addr=given):
                write()
        except REFUSED:
            refused += 1
    assert refused == 2, stored_addrs(db)
    assert stored_addrs(db) == []
    assert db.execute("SELECT count(*) FROM t73_notes").fetchone()[0] == 0


@pytest.mark.parametrize("given", ["0.0.0.0", "::", "255.255.255.255"])
def test_A_the_unspecified_or_broadcast_address_names_no_client(db, connect, given):
    """0.0.0.0, :: and the broadcast address are no host's address: a careful audit refuses them as
    it refuses 0.0.0.0/0."""
    w = connect("app_writer")
    with suppress(*REFUSED), audit_context(w, actor_id="alice", client_addr=given):
        record(w, "t73.a.unspec")
    assert stored_addrs(db) == []


@pytest.mark.parametrize("given", [" 10.0.0.1", "010.000.000.001"])
def test_A_odd_spellings_are_refused_or_stored_as_exactly_that_host(db, connect, given):
    w = connect("app_writer")
    with suppress(*REFUSED), audit_context(w, actor_id="alice", client_addr=given):
        record(w, "t73.a.odd")
    rows = stored_addrs(db)
    assert rows == [] or [(r[1], r[2]) for r in rows] == [("10.0.0.1", 32)], rows


@pytest.mark.parametrize("stmt", ["UPDATE t73_notes SET body = 'y'", "DELETE FROM t73_notes", "TRUNCATE t73_notes"])
def test_A_set_config_network_refuses_update_delete_truncate_whole(db, connect, notes, stmt):
    db.execute("INSERT INTO t73_notes (body) VALUES ('keep')")
    before = db.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    w = connect("app_writer", autocommit=False)
    with suppress(*REFUSED):
        w.execute("SELECT set_config('pgaudit_py.client_addr', '192.168.0.0/16', true),"
                  " set_config('pgaudit_py.actor_id', 'alice', true)")
        w.execute(stmt)
        w.commit()
    w.rollback()
    assert db.execute("SELECT array_agg(body) FROM t73_notes").fetchone()[0] == ["keep"]
    assert db.execute("SELECT count(*) FROM audit.events").fetchone()[0] == before
    assert db.execute("SELECT count(*) FROM audit.events WHERE masklen(client_addr) < 32").fetchone()[0] == 0


def test_A_refusal_inside_a_block_leaves_nothing_half_written(db, connect, notes):
    """A block records, inserts, then a nested block names a network: nothing of the block stays."""
    w = connect("app_writer")
    with suppress(*REFUSED), audit_context(w, actor_id="alice", client_addr="198.51.100.7"):
        record(w, "t73.a.first")
        w.execute("INSERT INTO t73_notes (body) VALUES ('first')")
        with audit_context(w, client_addr="198.51.100.0/24"):
            w.execute("INSERT INTO t73_notes (body) VALUES ('second')")
    assert db.execute("SELECT count(*) FROM t73_notes").fetchone()[0] == 0
    assert stored_addrs(db) == []


def test_A_request_context_with_a_network_stores_no_network(db, connect, notes):
    w = connect("app_writer")
    with request_context.serving({"actor_id": "alice", "client_addr": "10.0.0.0/8"}), \
            suppress(*REFUSED), request_context.transaction(w):
        record(w, "t73.a.req")
        w.execute("INSERT INTO t73_notes (body) VALUES ('r')")
    for _text, _host, masklen, family in stored_addrs(db):
        assert masklen == (32 if family == 4 else 128)


def test_A_best_effort_record_with_a_network_stores_no_network(db, connect):
    w = connect("app_writer")
    with suppress(*REFUSED), audit_context(w, actor_id="alice", client_addr="0.0.0.0/0"):
        record(w, "t73.a.best", best_effort=True)
    assert stored_addrs(db) == []


# ------------------------------------------------------------------ D: Django after a request

def dj_helper_sets_session(request):
    from django.db import connection, transaction
    from django.http import HttpResponse
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pgaudit_py.tenant_id', 'acme', false),"
                       " set_config('pgaudit_py.actor_id', 'alice', false)")
        dj_record("t73.dj.helper")
    return HttpResponse("ok")


def dj_plain(request):
    from django.http import HttpResponse
    dj_record("t73.dj.req")
    return HttpResponse("ok")




@pytest.fixture
def django_client(db):
    with django_test_client(db, __name__, {}) as client:
        yield client


@pytest.fixture
def django_pool_client(db):
    with django_test_client(db, __name__, {"CONN_MAX_AGE": 0, "OPTIONS": {"pool": {"min_size": 1, "max_size": 1}}}) as client:
        yield client


def test_D_job_block_on_the_driver_connection_after_a_request_keeps_its_own_actor(db, django_client):
    """A job outside any request names its actor with audit_context on Django's psycopg connection;
    the wrapper's clearing must not erase the job's own, transaction-local actor."""
    from django.db import connection
    connection.ensure_connection()
    for _ in ("before any request", "after one"):
        with audit_context(connection.connection, actor_type="job", actor_id="nightly", tenant_id="acme"):
            dj_record("t73.dj.job")
        django_client.get("/plain", headers={"x-user": "bob"})
    assert who(db, "t73.dj.req") == [("bob", None)] * 2
    assert who(db, "t73.dj.job") == [("nightly", "acme")] * 2


def test_D_job_in_atomic_with_its_own_local_actor_after_a_request_keeps_it(db, django_client):
    from django.db import connection, transaction
    for _ in ("before any request", "after one"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('pgaudit_py.actor_id', 'nightly', true)")
            dj_record("t73.dj.atomic_job")
        django_client.get("/plain", headers={"x-user": "bob"})
    assert who(db, "t73.dj.atomic_job") == [("nightly", None)] * 2


def test_D_session_leftover_is_gone_for_a_driver_write_after_an_atomic_job(db, django_client):
    """A request leaves a session value; the first work outside a request is an atomic block (only
    overridden there); then the job writes with pgaudit_py.record on the driver connection."""
    from django.db import connection, transaction
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    with transaction.atomic():
        dj_record("t73.dj.job1")
    record(connection.connection, "t73.dj.raw")
    assert who(db, "t73.dj.job1") == [("app_writer", None)]
    assert who(db, "t73.dj.raw") == [("app_writer", None)]


def test_D_atomic_job_after_a_leftover_then_autocommit_names_nobody(db, django_client):
    from django.db import transaction
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    with transaction.atomic():
        dj_record("t73.dj.a1")
        dj_record("t73.dj.a2")
    dj_record("t73.dj.auto")
    with transaction.atomic():
        dj_record("t73.dj.a3")
    assert who(db, "t73.dj.helper") == [("alice", "acme")]
    for k in ("t73.dj.a1", "t73.dj.a2", "t73.dj.auto", "t73.dj.a3"):
        assert who(db, k) == [("app_writer", None)], k


def test_D_the_clearing_after_a_request_costs_one_statement_per_transaction_not_per_query(db, django_client):
    """Count the set_config statements Django's connection sends for two atomic jobs of five
    queries each after one request."""
    from django.db import connection, transaction
    django_client.get("/plain", headers={"x-user": "bob"})
    connection.ensure_connection()
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
        for j in range(2):
            with transaction.atomic():
                for i in range(5):
                    dj_record(f"t73.dj.cost{j}{i}")
    finally:
        raw.cursor_factory = base
    assert len(sent) <= 2, f"{len(sent)} set_config statements for 10 queries in 2 transactions"


def test_D_pooled_django_connection_leftover_not_named_by_a_job_in_another_thread(db, django_pool_client):
    from django.db import connections, transaction
    django_pool_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    connections["default"].close()  # the request's end (the test client keeps it open): back to the pool
    errors = []

    def job():
        try:
            with transaction.atomic():
                dj_record("t73.dj.pool_atomic")
            dj_record("t73.dj.pool_auto")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connections.close_all()
    t = threading.Thread(target=job)
    t.start()
    t.join()
    assert errors == []
    assert who(db, "t73.dj.helper") == [("alice", "acme")]
    assert who(db, "t73.dj.pool_atomic") == [("app_writer", None)]
    assert who(db, "t73.dj.pool_auto") == [("app_writer", None)]


def dj_helper_commits(request):
    """AUTOCOMMIT off: a library sets the session's values, and the view commits its work."""
    from django.db import connection, transaction
    from django.http import HttpResponse
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pgaudit_py.tenant_id', 'acme', false),"
                       " set_config('pgaudit_py.actor_id', 'alice', false)")
    dj_record("t73.dj.helper_off")
    transaction.commit()
    return HttpResponse("ok")


urlpatterns = [path("helper", dj_helper_sets_session), path("plain", dj_plain), path("helper_off", dj_helper_commits)]


@pytest.fixture
def django_pool_off_client(db):
    pool_off = {"CONN_MAX_AGE": 0, "AUTOCOMMIT": False, "OPTIONS": {"pool": {"min_size": 1, "max_size": 1}}}
    with django_test_client(db, __name__, pool_off) as client:
        yield client


def test_D_pooled_autocommit_off_leftover_not_named_by_a_job_in_another_thread(db, django_pool_off_client):
    from django.db import connections, transaction
    assert django_pool_off_client.get("/helper_off", headers={"x-user": "alice", "x-tenant": "acme"}).status_code == 200
    connections["default"].close()
    errors = []

    def job():
        try:
            dj_record("t73.dj.off_job")
            transaction.commit()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            connections.close_all()
    t = threading.Thread(target=job)
    t.start()
    t.join()
    assert errors == []
    assert who(db, "t73.dj.helper_off") == [("alice", "acme")]
    assert who(db, "t73.dj.off_job") == [("app_writer", None)]


# ------------------------------------------------------------------ F: false alarms

def test_F_to_thread_and_gather_in_blocks_write_as_the_block_and_verify(db, connect, notes):
    conn = connect("app_writer")

    async def main():
        with audit_context(conn, actor_id="alice", tenant_id="acme"):
            await anyio.to_thread.run_sync(record, conn, "t73.f.anyio")
            await asyncio.to_thread(conn.execute, "INSERT INTO t73_notes (body) VALUES ('t')")
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as ac:
            async with aio.audit_context(ac, actor_id="bob", tenant_id="bobco"):
                await asyncio.gather(aio.record(ac, "t73.f.g1"), aio.record(ac, "t73.f.g2"))
            await aio.record(ac, "t73.f.after")
    asyncio.run(main())
    assert who(db, "t73.f.anyio") == [("alice", "acme")]
    assert who(db, "public.t73_notes.insert") == [("alice", "acme")]
    assert who(db, "t73.f.g1") == who(db, "t73.f.g2") == [("bob", "bobco")]
    assert who(db, "t73.f.after") == [("app_writer", None)]
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_F_copied_context_thread_pool_inside_the_block_writes_as_the_block(db, connect):
    conn = connect("app_writer")
    with audit_context(conn, actor_id="alice", tenant_id="acme"), concurrent.futures.ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(contextvars.copy_context().run, record, conn, f"t73.f.cp{i}") for i in range(4)]
        for f in futs:
            f.result()
    for i in range(4):
        assert who(db, f"t73.f.cp{i}") == [("alice", "acme")]
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_F_threads_taking_turns_on_one_connection_each_name_their_own(db, connect, notes):
    conn = connect("app_writer")
    lock = threading.Lock()

    def work(i):
        with lock, audit_context(conn, actor_id=f"u{i}", client_addr=f"192.0.2.{i + 1}/32"):
            record(conn, f"t73.f.turn{i}")
            conn.execute("INSERT INTO t73_notes (body) VALUES (%s)", (str(i),))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i in range(6):
        assert who(db, f"t73.f.turn{i}") == [(f"u{i}", None)]
    rows = db.execute("SELECT row_after->>'body', actor_id, host(client_addr) FROM audit.events"
                      " WHERE kind = 'public.t73_notes.insert'").fetchall()
    assert sorted(rows) == sorted((str(i), f"u{i}", f"192.0.2.{i + 1}") for i in range(6))
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_F_django_request_then_job_then_request_name_their_own_and_verify(db, django_client):
    from django.db import transaction
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    dj_record("t73.dj.job")
    with transaction.atomic():
        dj_record("t73.dj.job2")
    django_client.get("/plain", headers={"x-user": "bob"})
    assert who(db, "t73.dj.helper") == [("alice", "acme")]
    assert who(db, "t73.dj.job") == [("app_writer", None)]
    assert who(db, "t73.dj.job2") == [("app_writer", None)]
    assert who(db, "t73.dj.req") == [("bob", None)]
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
