"""Trial 72: an actor context that cannot mislabel. Leaks across units of work (L), mislabel by the
caller's own data (M), web integrations (W) and false alarms (F). Every test reads what the
database holds (audit.events, or the sealed log) and fails when the attack works."""

from __future__ import annotations

import asyncio
import threading
import unicodedata
from contextlib import suppress

import httpx
import psycopg
import pytest
from django.urls import path
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from trial_helpers import both_verifiers, dj_record, django_test_client, seal_all

from pgaudit_py import aio, audit_context, list_events, record, request_context
from pgaudit_py.errors import PgAuditError, UnsupportedSession
from pgaudit_py.integrations.asgi import AuditContextMiddleware

COLS = "kind, actor_type, actor_id, tenant_id, correlation_id, db_role, host(client_addr), application_name"


def dsn(db, role: str = "app_writer") -> str:
    info = db.info
    return f"host={info.host} port={info.port} dbname={info.dbname} user={role}"


def events(db, where: str = "true", params=()) -> list[tuple]:
    return db.execute(f"SELECT {COLS} FROM audit.events WHERE origin IN ('record', 'capture') AND ({where})"
                      " ORDER BY occurred_at, intake_id NULLS FIRST, seq", params).fetchall()


def who_of(db, kind: str) -> list[tuple]:
    """(actor_id, tenant_id) of each event of that kind."""
    return db.execute("SELECT actor_id, tenant_id FROM audit.events WHERE kind = %s ORDER BY occurred_at",
                      (kind,)).fetchall()


def by_kind(db) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in db.execute(
        "SELECT kind, actor_type, actor_id, tenant_id, correlation_id FROM audit.events"
        " WHERE origin = 'record'").fetchall()}


@pytest.fixture
def notes(db):
    db.execute("""CREATE TABLE public.t72_notes (id serial PRIMARY KEY, body text);
                  GRANT ALL ON public.t72_notes, public.t72_notes_id_seq TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.t72_notes')")
    return "public.t72_notes"


# ------------------------------------------------------------------ L: leaks across units of work

def test_L_pooled_connection_after_a_library_set_the_session_value_names_nobody_in_the_next_block(db):
    """A library on a pooled connection runs a session-level SET inside its block; the next borrower's
    outermost block names only what it names."""
    with ConnectionPool(dsn(db), min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        with pool.connection() as conn, audit_context(conn, actor_id="alice", tenant_id="acme"):
            conn.execute("SET pgaudit_py.tenant_id = 'acme'")   # session-level, outlives the block
            conn.execute("SET pgaudit_py.actor_type = 'admin'")
            record(conn, "t72.first")
        with pool.connection() as conn, audit_context(conn, actor_id="bob"):
            record(conn, "t72.second")
    got = by_kind(db)
    assert got["t72.second"][1:3] == ("bob", None)
    assert got["t72.second"][0] in (None, "user")  # not the 'admin' the first borrower left


def test_L_exception_inside_the_block_leaves_nothing_for_the_next_write_on_the_connection(db, connect, notes):
    writer = connect("app_writer")
    with pytest.raises(RuntimeError), audit_context(writer, actor_id="alice", tenant_id="acme"):
        writer.execute("INSERT INTO t72_notes (body) VALUES ('lost')")
        raise RuntimeError
    writer.execute("INSERT INTO t72_notes (body) VALUES ('later')")
    assert who_of(db, "public.t72_notes.insert") == [("app_writer", None)]


def test_L_autocommit_off_block_then_commit_then_plain_write_names_the_role(db, connect, notes):
    writer = connect("app_writer", autocommit=False)
    with audit_context(writer, actor_id="alice", tenant_id="acme"):
        writer.execute("INSERT INTO t72_notes (body) VALUES ('a')")
    writer.commit()
    writer.execute("INSERT INTO t72_notes (body) VALUES ('b')")
    writer.commit()
    assert who_of(db, "public.t72_notes.insert") == [("alice", "acme"), ("app_writer", None)]


def test_L_nested_blocks_exited_out_of_order_do_not_label_a_later_write(db, connect):
    """Contexts entered A then B and exited A first (an ExitStack misuse, a framework's hooks):
    whatever happens, no write made after both are gone may name alice or bob."""
    writer = connect("app_writer")
    a = audit_context(writer, actor_id="alice", tenant_id="acme")
    b = audit_context(writer, actor_id="bob")
    a.__enter__()
    b.__enter__()
    record(writer, "t72.inside")
    with suppress(Exception):
        a.__exit__(None, None, None)
    with suppress(Exception):
        b.__exit__(None, None, None)
    if writer.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        writer.execute("ROLLBACK")
    record(writer, "t72.after")
    rows = by_kind(db)
    assert rows["t72.after"][1:3] == ("app_writer", None)


@pytest.mark.xfail(strict=True, reason="a known limit (docs/python.md, What a block is): a generator suspended inside a block leaves it open, and its caller's writes between items are the block's; strict, so that a change that closes it says so")
def test_L_generator_suspended_inside_a_block_does_not_label_the_callers_own_write(db, connect):
    """A generator holds a block open between yields; the caller's write between two items is not
    the generator's actor's."""
    writer = connect("app_writer")

    def export():
        with audit_context(writer, actor_id="exporter", tenant_id="acme"):
            for i in range(2):
                record(writer, f"t72.export.{i}")
                yield i

    items = export()
    next(items)
    with audit_context(writer, actor_id="carol", tenant_id="globex"):
        record(writer, "t72.carol")
    record(writer, "t72.nobody")
    list(items)
    rows = by_kind(db)
    assert rows["t72.carol"][1:3] == ("carol", "globex")
    assert rows["t72.nobody"][1:3] == ("app_writer", None)


def test_L_two_asyncio_tasks_sharing_one_connection_each_name_their_own(db):
    """Two tasks, each in its own aio.audit_context on one AsyncConnection, B's block wholly inside
    A's in time (properly nested, so psycopg commits it): B names bob and no tenant, not A's."""

    async def main():
        conn = await psycopg.AsyncConnection.connect(dsn(db), autocommit=True)
        a_in, b_done = asyncio.Event(), asyncio.Event()
        try:
            async def task_a():
                async with aio.audit_context(conn, actor_id="alice", tenant_id="acme"):
                    a_in.set()
                    await b_done.wait()
                    await aio.record(conn, "t72.task.a")

            async def task_b():
                await a_in.wait()
                try:
                    async with aio.audit_context(conn, actor_id="bob"):
                        await aio.record(conn, "t72.task.b")
                except UnsupportedSession:  # safe too: B's block is refused inside A's transaction
                    refused.append("b")
                finally:
                    b_done.set()

            await asyncio.gather(task_a(), task_b())
        finally:
            await conn.close()

    refused: list[str] = []
    asyncio.run(main())
    rows = by_kind(db)
    assert rows["t72.task.a"][1:3] == ("alice", "acme")
    assert refused == ["b"] and "t72.task.b" not in rows or rows["t72.task.b"][1:3] == ("bob", None)


def test_L_two_requests_sharing_one_async_connection_name_their_own(db):
    """Request A's transaction is open on a shared AsyncConnection; request B's transaction opens and
    closes inside it in time. A's write made while B's was open must name A, not B."""

    async def main():
        conn = await psycopg.AsyncConnection.connect(dsn(db), autocommit=True)
        a_in, b_in, a_wrote = asyncio.Event(), asyncio.Event(), asyncio.Event()
        b_done = asyncio.Event()
        try:
            async def req_a():
                with request_context.serving({"actor_id": "alice", "tenant_id": "acme"}):
                    async with request_context.transaction_async(conn):
                        a_in.set()
                        await b_in.wait()
                        await conn.execute("SELECT audit.record(kind => 't72.req.a')")
                        a_wrote.set()
                        await b_done.wait()

            async def req_b():
                await a_in.wait()
                try:
                    with request_context.serving({"actor_id": "bob", "tenant_id": "globex"}):
                        async with request_context.transaction_async(conn):
                            b_in.set()
                            await a_wrote.wait()
                            await conn.execute("SELECT audit.record(kind => 't72.req.b')")
                except UnsupportedSession:  # safe too: B's transaction is refused inside A's
                    refused.append("b")
                    b_in.set()
                b_done.set()

            await asyncio.gather(req_a(), req_b())
        finally:
            await conn.close()

    refused: list[str] = []
    asyncio.run(main())
    rows = by_kind(db)
    assert refused == ["b"] and "t72.req.b" not in rows or rows["t72.req.b"][1:3] == ("bob", "globex")
    assert rows["t72.req.a"][1:3] == ("alice", "acme")


def test_L_two_threads_sharing_a_connection_each_name_their_own(db, connect):
    writer = connect("app_writer")
    a_in, b_done = threading.Event(), threading.Event()

    def a():
        with audit_context(writer, actor_id="alice", tenant_id="acme"):
            a_in.set()
            b_done.wait(5)
            record(writer, "t72.thread.a")

    def b():
        a_in.wait(5)
        try:
            record(writer, "t72.thread.b")  # no context of its own: nobody
        except UnsupportedSession:  # safe too: refused inside A's block
            refused.append("b")
        finally:
            b_done.set()

    refused: list[str] = []

    ts = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    rows = by_kind(db)
    assert rows["t72.thread.a"][1:3] == ("alice", "acme")
    assert refused == ["b"] and "t72.thread.b" not in rows or rows["t72.thread.b"][1:3] == ("app_writer", None)


def test_L_commit_as_text_inside_a_block_does_not_carry_the_actor_to_the_next_unit(db, connect):
    writer = connect("app_writer")
    try:
        with audit_context(writer, actor_id="alice", tenant_id="acme"):
            record(writer, "t72.before_commit")
            writer.execute("SET pgaudit_py.actor_id = 'alice'")  # a library's session-level SET
            writer.execute("COMMIT")
    except Exception:  # noqa: BLE001
        pass
    with audit_context(writer, tenant_id="globex"):
        record(writer, "t72.next_unit")
    rows = by_kind(db)
    assert rows["t72.next_unit"][1:3] == ("app_writer", "globex")


def test_L_rollback_to_an_application_savepoint_inside_a_nested_block_names_no_outer_actor_silently(db, connect):
    """bob's block rolls back to a savepoint made before it: bob's writes may fail, but any event
    that survives from bob's block names bob, never alice."""
    writer = connect("app_writer")
    try:
        with audit_context(writer, actor_id="alice", tenant_id="acme"):
            writer.execute("SAVEPOINT t72_s")
            with audit_context(writer, actor_id="bob", tenant_id="globex"):
                writer.execute("ROLLBACK TO SAVEPOINT t72_s")
                record(writer, "t72.in_bobs_block")
    except Exception:  # noqa: BLE001
        pass
    rows = by_kind(db)
    if "t72.in_bobs_block" in rows:
        assert rows["t72.in_bobs_block"][1:3] == ("bob", "globex")


@pytest.mark.xfail(strict=True, reason="a known limit (docs/python.md, What a block is): rows of a server-side cursor fetched after its block has ended are computed under the values then in force; strict, so that a change that closes it says so")
def test_L_server_side_cursor_opened_in_bobs_block_records_bob_on_every_row(db, connect):
    """One statement, run in bob's block: its later-fetched rows are still bob's work."""
    writer = connect("app_writer")
    with audit_context(writer, actor_id="alice", tenant_id="acme"):
        with audit_context(writer, actor_id="bob", tenant_id="globex"):
            cur = writer.cursor(name="t72_cur")
            cur.itersize = 1
            cur.execute("SELECT audit.record(kind => 't72.cursor', target_id => g::text)"
                        " FROM generate_series(1, 4) g")
            cur.fetchone()
        cur.fetchall()
        cur.close()
    assert set(who_of(db, "t72.cursor")) == {("bob", "globex")}


def test_L_prepared_generic_plan_reads_the_actor_of_each_transaction(db, connect, notes):
    writer = connect("app_writer", prepare_threshold=0)
    writer.execute("SET plan_cache_mode = force_generic_plan")
    for i in range(8):
        with audit_context(writer, actor_id=f"u{i}", tenant_id=f"t{i % 2}"):
            writer.execute("INSERT INTO t72_notes (body) VALUES (%s)", (str(i),))
            record(writer, f"t72.prep.{i}", target_id=str(i))
    writer.execute("INSERT INTO t72_notes (body) VALUES ('after')")
    caps = who_of(db, "public.t72_notes.insert")
    assert caps == [(f"u{i}", f"t{i % 2}") for i in range(8)] + [("app_writer", None)]
    rows = by_kind(db)
    assert all(rows[f"t72.prep.{i}"][1:3] == (f"u{i}", f"t{i % 2}") for i in range(8))


@pytest.mark.parametrize("reset", ["RESET ALL", "DISCARD ALL", "RESET pgaudit_py.actor_id"])
def test_L_reset_inside_a_nested_block_does_not_bring_back_a_session_actor(db, connect, reset):
    """A library resets settings inside bob's block: what comes back is never a session value left
    behind by earlier work (mallory)."""
    writer = connect("app_writer")
    writer.execute("SET pgaudit_py.actor_id = 'mallory'")
    writer.execute("SET pgaudit_py.tenant_id = 'evilcorp'")
    try:
        with audit_context(writer, actor_id="alice", tenant_id="acme"), audit_context(writer, actor_id="bob"):
            writer.execute(reset)
            record(writer, "t72.after_reset")
    except Exception:  # noqa: BLE001
        pass
    rows = by_kind(db)
    if "t72.after_reset" in rows:
        assert rows["t72.after_reset"][1] != "mallory" and rows["t72.after_reset"][2] != "evilcorp"


def test_L_request_transaction_outside_a_request_after_set_session_names_nobody(db, connect, notes):
    writer = connect("app_writer")
    writer.execute("SELECT set_config('pgaudit_py.actor_id', 'mallory', false),"
                   " set_config('pgaudit_py.tenant_id', 'evilcorp', false),"
                   " set_config('pgaudit_py.correlation_id', 'req-old', false)")
    with request_context.transaction(writer):
        writer.execute("INSERT INTO t72_notes (body) VALUES ('job')")
    assert events(db, "kind = 'public.t72_notes.insert'")[0][2:5] == ("app_writer", None, None)


def test_L_async_generator_suspended_in_a_request_transaction_does_not_label_another_request(db):
    """An async generator holding a request transaction on a pooled connection of one; another
    request's block waits or gets its own values, never the first request's."""

    async def main():
        pool = AsyncConnectionPool(dsn(db), min_size=1, max_size=2, open=False, kwargs={"autocommit": True})
        await pool.open()
        try:
            async def rows_for(user):
                with request_context.serving({"actor_id": user, "tenant_id": f"t-{user}"}):
                    async with pool.connection() as conn, request_context.transaction_async(conn):
                        for i in range(2):
                            await conn.execute("SELECT audit.record(kind => %s)", (f"t72.agen.{user}.{i}",))
                            await asyncio.sleep(0.01)
                            yield i

            gens = [rows_for("ann"), rows_for("ben")]
            await gens[0].__anext__()
            await gens[1].__anext__()
            for g in gens:
                async for _ in g:
                    pass
        finally:
            await pool.close()

    asyncio.run(main())
    got = by_kind(db)
    for user in ("ann", "ben"):
        for i in range(2):
            assert got[f"t72.agen.{user}.{i}"][1:3] == (user, f"t-{user}")


@pytest.mark.xfail(strict=True, reason="a known limit (docs/python.md, What a block is): inside a transaction, a value set for the session cannot be told from the transaction's own, and a block inherits what it does not name; strict, so that a change that closes it says so")
def test_L_block_in_the_callers_own_transaction_does_not_inherit_a_session_tenant_left_by_earlier_work(db, connect, notes):
    """A pooled connection where an earlier unit's library left a session-level tenant; the next
    unit opens its own transaction and names alice only: its writes are not filed under evilcorp."""
    writer = connect("app_writer")
    writer.execute("SELECT set_config('pgaudit_py.tenant_id', 'evilcorp', false),"
                   " set_config('pgaudit_py.correlation_id', 'req-old', false)")
    with writer.transaction(), audit_context(writer, actor_id="alice"):
        writer.execute("INSERT INTO t72_notes (body) VALUES ('x')")
    assert who_of(db, "public.t72_notes.insert") == [("alice", None)]
    assert events(db, "kind = 'public.t72_notes.insert'")[0][4] is None


@pytest.mark.xfail(strict=True, reason="a known limit (docs/python.md, What a block is): a COMMIT sent as text ends the block's transaction and its values; what follows names the database role; strict, so that a change that closes it says so")
def test_L_commit_and_chain_as_text_inside_a_block_keeps_naming_the_blocks_actor(db, connect, notes):
    """A COMMIT AND CHAIN sent as text inside alice's block (as the SQLAlchemy hook is documented to
    survive): the block's later writes still name alice, or are refused; never the role."""
    writer = connect("app_writer")
    try:
        with audit_context(writer, actor_id="alice", tenant_id="acme"):
            writer.execute("INSERT INTO t72_notes (body) VALUES ('before')")
            writer.execute("COMMIT AND CHAIN")
            writer.execute("INSERT INTO t72_notes (body) VALUES ('after')")
    except psycopg.Error:
        pass
    rows = db.execute("SELECT row_after->>'body', actor_id, tenant_id FROM audit.events"
                      " WHERE kind = 'public.t72_notes.insert' ORDER BY occurred_at").fetchall()
    assert ("before", "alice", "acme") in rows
    for _body, actor, tenant in rows:
        assert (actor, tenant) == ("alice", "acme"), rows


@pytest.mark.xfail(strict=True, reason="a known limit (docs/python.md, What a block is): a deferred trigger's work runs at commit, under the outermost block's values; strict, so that a change that closes it says so")
def test_L_deferred_trigger_work_from_bobs_block_is_not_named_after_alice(db, connect, notes):
    """bob's block inserts into a table whose deferred constraint trigger writes the tracked table at
    commit, after bob's block has ended: the captured change is bob's doing, not alice's."""
    db.execute("""CREATE TABLE public.t72_src (id int);
                  GRANT ALL ON public.t72_src TO app_writer;
                  CREATE FUNCTION public.t72_copy() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN INSERT INTO public.t72_notes (body) VALUES ('from src ' || NEW.id); RETURN NULL; END $$;
                  CREATE CONSTRAINT TRIGGER t72_copy AFTER INSERT ON public.t72_src
                      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.t72_copy()""")
    writer = connect("app_writer")
    with audit_context(writer, actor_id="alice", tenant_id="acme"):
        with audit_context(writer, actor_id="bob", tenant_id="globex"):
            writer.execute("INSERT INTO t72_src VALUES (1)")
        writer.execute("INSERT INTO t72_notes (body) VALUES ('alice own')")
    rows = dict(db.execute("SELECT row_after->>'body', actor_id FROM audit.events"
                           " WHERE kind = 'public.t72_notes.insert'").fetchall())
    assert rows["alice own"] == "alice"
    assert rows["from src 1"] != "alice", rows


# ------------------------------------------------------------------ M: the caller's own data

def test_M_a_nul_in_an_actor_is_refused_not_truncated(db, connect):
    writer = connect("app_writer")
    with pytest.raises(psycopg.Error), audit_context(writer, actor_id="alice\x00mallory"):
        record(writer, "t72.nul")
    assert by_kind(db).get("t72.nul") is None
    assert db.execute("SELECT count(*) FROM audit.events WHERE actor_id IN ('alice', 'mallory')").fetchone()[0] == 0


@pytest.mark.parametrize("length", [257, 300])
def test_M_an_actor_over_256_characters_is_refused_in_record_and_capture(db, connect, notes, length):
    writer = connect("app_writer")
    long_id = "é" * length
    with pytest.raises((psycopg.Error, PgAuditError)), audit_context(writer, actor_id=long_id):
        record(writer, "t72.long")
    with pytest.raises((psycopg.Error, PgAuditError)), audit_context(writer, actor_id=long_id):
        writer.execute("INSERT INTO t72_notes (body) VALUES ('x')")
    assert db.execute("SELECT count(*) FROM audit.events WHERE origin IN ('record','capture')").fetchone()[0] == 0


def test_M_an_actor_type_over_64_characters_set_by_context_is_refused(db, connect):
    writer = connect("app_writer")
    with pytest.raises((psycopg.Error, PgAuditError)), audit_context(writer, actor_type="s" * 65, actor_id="svc"):
        record(writer, "t72.long_type")
    assert by_kind(db).get("t72.long_type") is None


@pytest.mark.parametrize("actor", ["alice ", " alice", "Alice", "аlice", "alice\u200b", "alice\n",
                                   unicodedata.normalize("NFD", "josé"), "\u3000"])
def test_M_look_alike_actors_are_stored_verbatim_and_not_found_under_the_real_one(db, connect, notes, actor):
    writer = connect("app_writer")
    with audit_context(writer, actor_id=actor, tenant_id="acme"):
        record(writer, "t72.lookalike")
        writer.execute("INSERT INTO t72_notes (body) VALUES ('x')")
    rows = db.execute("SELECT actor_id FROM audit.events WHERE origin IN ('record','capture')").fetchall()
    assert rows == [(actor,), (actor,)]
    real = "josé" if actor.startswith("jos") else "alice"
    reader = connect("app_reader")
    assert list_events(reader, actor_id=real) == []
    assert seal_all(db) is None
    assert db.execute("SELECT array_agg(actor_id ORDER BY seq) FROM audit.event_log WHERE origin <> 'system'").fetchone()[0] == [actor, actor]


@pytest.mark.parametrize("addr", ["10.0.0.0/8", "0.0.0.0/0", "2001:db8::/32"])
def test_M_a_network_is_not_recorded_as_the_clients_address(db, connect, notes, addr):
    """client_addr takes an IP address or nothing: a network (any host of 10/8) names no client."""
    writer = connect("app_writer")
    refused = 0
    # Each path on its own (a refusal raises the package's InvalidContext from record()).
    for write in (lambda: record(writer, "t72.net"), lambda: writer.execute("INSERT INTO t72_notes (body) VALUES ('x')")):
        try:
            with audit_context(writer, actor_id="alice", client_addr=addr):
                write()
        except (psycopg.Error, PgAuditError):
            refused += 1
    rows = db.execute("SELECT client_addr::text, masklen(client_addr), family(client_addr)"
                      " FROM audit.events WHERE origin IN ('record','capture')").fetchall()
    assert refused + len(rows) == 2, (refused, rows)
    for text, masklen, family in rows:
        assert masklen == (32 if family == 4 else 128), f"client_addr {text} is a network"


@pytest.mark.parametrize("value", ["alice', true), set_config('pgaudit_py.tenant_id', 'globex",
                                   "pgaudit_py.tenant_id=globex", "-c pgaudit_py.tenant_id=globex",
                                   "alice; SET pgaudit_py.tenant_id = 'globex'"])
def test_M_sql_looking_actor_sets_nothing_else(db, connect, notes, value):
    writer = connect("app_writer")
    with audit_context(writer, actor_id=value):
        record(writer, "t72.sqlish")
        writer.execute("INSERT INTO t72_notes (body) VALUES ('x')")
    assert db.execute("SELECT array_agg(DISTINCT actor_id), array_agg(DISTINCT coalesce(tenant_id, '-'))"
                      " FROM audit.events WHERE origin IN ('record','capture')").fetchone() == ([value], ["-"])


def test_M_empty_and_whitespace_actor_outermost_do_not_fall_back_to_a_session_actor(db, connect):
    writer = connect("app_writer")
    writer.execute("SET pgaudit_py.actor_id = 'mallory'")
    writer.execute("SET pgaudit_py.actor_type = 'admin'")
    with audit_context(writer, actor_id=""):
        record(writer, "t72.empty")
    with audit_context(writer, actor_type="service"):
        record(writer, "t72.type_only")
    rows = by_kind(db)
    assert rows["t72.empty"][1] != "mallory" and rows["t72.empty"][0] != "admin"
    assert rows["t72.type_only"][:2] != ("service", "mallory")


@pytest.mark.xfail(strict=True, reason="by design (docs/how-it-works.md, Who): actor_type and actor_id are the application's claims, db_role the one column the database vouches for (trial 62's c6); strict, so that a change that refuses them says so")
def test_M_a_claimed_db_role_actor_names_the_role_that_wrote(db, connect, notes):
    """actor_type 'db_role' is what the package writes when no actor is named: an event claiming it
    must name the database role that wrote, not another one (the superuser)."""
    writer = connect("app_writer")
    try:
        with audit_context(writer, actor_type="db_role", actor_id="postgres"):
            record(writer, "t72.as_postgres")
            writer.execute("INSERT INTO t72_notes (body) VALUES ('x')")
    except (psycopg.Error, PgAuditError):
        pass
    rows = db.execute("SELECT actor_id, db_role FROM audit.events WHERE origin IN ('record','capture')"
                      " AND actor_type = 'db_role'").fetchall()
    assert all(actor == role for actor, role in rows), rows


def test_M_role_switch_inside_a_block_names_the_role_that_wrote(db, connect, notes):
    writer = connect("app_writer")
    db.execute("GRANT app_reader TO app_writer")
    try:
        with audit_context(writer, actor_id="alice"):
            writer.execute("INSERT INTO t72_notes (body) VALUES ('as writer')")
            writer.execute("SET LOCAL ROLE app_reader")
            try:
                writer.execute("SAVEPOINT x; SELECT audit.record(kind => 't72.as_reader')")
            except psycopg.Error:
                writer.execute("ROLLBACK TO SAVEPOINT x")
            writer.execute("RESET ROLE")
            record(writer, "t72.as_writer_again")
    finally:
        db.execute("REVOKE app_reader FROM app_writer")
    rows = db.execute("SELECT kind, db_role, actor_id FROM audit.events WHERE origin IN ('record','capture')"
                      " ORDER BY occurred_at").fetchall()
    for kind, role, actor in rows:
        assert role == ("app_reader" if kind == "t72.as_reader" else "app_writer"), rows
        assert actor == "alice"


# ------------------------------------------------------------------ W: web integrations

def who_header(request: Request) -> dict[str, str | None]:
    return {"actor_id": request.headers.get("x-user"), "tenant_id": request.headers.get("x-tenant"),
            "correlation_id": request.headers.get("x-request-id")}


def make_app(db, pool_size: int = 1, *, hold: dict | None = None):
    pool = AsyncConnectionPool(dsn(db), min_size=1, max_size=pool_size, open=False)

    async def write(request: Request) -> PlainTextResponse:
        async with pool.connection() as conn, request_context.transaction_async(conn):
            await asyncio.sleep(0.005)
            await conn.execute("SELECT audit.record(kind => 't72.web', target_id => %s)", (request.path_params["n"],))
            if request.query_params.get("fail"):
                raise RuntimeError("boom")
        return PlainTextResponse("ok")

    async def background(request: Request) -> PlainTextResponse:
        n = request.path_params["n"]

        async def later():
            await asyncio.sleep(0.02)
            async with pool.connection() as conn, request_context.transaction_async(conn):
                await conn.execute("SELECT audit.record(kind => 't72.web.bg', target_id => %s)", (n,))
        return PlainTextResponse("ok", background=BackgroundTask(later))

    async def stream(request: Request) -> StreamingResponse:
        n = request.path_params["n"]

        async def body():
            for i in range(2):
                await asyncio.sleep(0.005)
                async with pool.connection() as conn, request_context.transaction_async(conn):
                    await conn.execute("SELECT audit.record(kind => 't72.web.stream', target_id => %s)", (f"{n}.{i}",))
                yield b"x"
        return StreamingResponse(body())

    app = Starlette(routes=[Route("/w/{n}", write, methods=["POST"]), Route("/bg/{n}", background, methods=["POST"]),
                            Route("/s/{n}", stream)])
    app.add_middleware(AuditContextMiddleware, context=who_header)
    return app, pool


def run_app(db, requests, pool_size: int = 1):
    app, pool = make_app(db, pool_size)

    async def main():
        await pool.open()
        try:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await asyncio.gather(*(client.request(m, url, headers=h) for m, url, h in requests))
        finally:
            await pool.close()

    return asyncio.run(main())


def web_events(db, kind: str) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in db.execute(
        "SELECT target_id, actor_id, tenant_id, correlation_id FROM audit.events WHERE kind = %s", (kind,)).fetchall()}


def test_W_interleaved_requests_with_and_without_users_on_a_pool_of_one(db):
    reqs = [("POST", f"/w/{i}", {"x-user": f"u{i}", "x-tenant": f"t{i}", "x-request-id": f"r{i}"} if i % 3 else {})
            for i in range(12)]
    run_app(db, reqs, pool_size=1)
    got = web_events(db, "t72.web")
    assert len(got) == 12
    for i in range(12):
        want = (f"u{i}", f"t{i}", f"r{i}") if i % 3 else ("app_writer", None, None)
        assert got[str(i)] == want, i


def test_W_a_failing_request_rolls_back_and_the_next_on_its_connection_names_its_own(db):
    reqs = [("POST", "/w/0?fail=1", {"x-user": "mallory", "x-tenant": "evil"}), ("POST", "/w/1", {}),
            ("POST", "/w/2", {"x-user": "bob"})]
    run_app(db, reqs, pool_size=1)
    got = web_events(db, "t72.web")
    assert "0" not in got
    assert got["1"] == ("app_writer", None, None)
    assert got["2"] == ("bob", None, None)


@pytest.mark.parametrize("headers", [
    {"x-user": "alice", "x-tenant": "acme', true); SELECT set_config('pgaudit_py.actor_id', 'root"},
    {"x-user": "alice", "x-forwarded-for": "10.9.9.9", "x-client-addr": "10.9.9.9"},
    {"x-user": "alice", "x-pgaudit-actor": "root", "pgaudit_py.actor_id": "root"},
])
def test_W_headers_cannot_inject_an_actor_tenant_or_address(db, headers):
    run_app(db, [("POST", "/w/0", headers), ("POST", "/w/1", {})], pool_size=1)
    rows = db.execute("SELECT target_id, actor_id, tenant_id, host(client_addr) FROM audit.events"
                      " WHERE kind = 't72.web' ORDER BY target_id").fetchall()
    assert rows[0][1] == "alice" and rows[0][2] == headers.get("x-tenant")
    assert rows[0][3] != "10.9.9.9"
    assert rows[1][1:3] == ("app_writer", None)


def test_W_background_task_and_streamed_body_interleaved_with_other_requests(db):
    reqs = [("POST", "/bg/0", {"x-user": "bg-user", "x-tenant": "acme"}), ("GET", "/s/1", {"x-user": "streamer"}),
            ("POST", "/w/2", {}), ("POST", "/w/3", {"x-user": "carol"})]
    run_app(db, reqs, pool_size=1)
    bg = web_events(db, "t72.web.bg")
    st = web_events(db, "t72.web.stream")
    w = web_events(db, "t72.web")
    assert bg["0"][:2] in (("bg-user", "acme"), ("app_writer", None))  # the request's, or nobody: no other
    assert st == {"1.0": ("streamer", None, None), "1.1": ("streamer", None, None)}
    assert w["2"] == ("app_writer", None, None) and w["3"] == ("carol", None, None)


def test_W_a_task_spawned_in_a_request_that_writes_after_the_next_request_began(db):
    """A fire-and-forget task of request A writes while request B is being served: it names A or
    nobody, never B."""
    spawned: list[asyncio.Task] = []
    pool = AsyncConnectionPool(dsn(db), min_size=1, max_size=2, open=False)
    gate = asyncio.Event()

    async def a(request: Request) -> PlainTextResponse:
        async def job():
            await gate.wait()
            async with pool.connection() as conn, request_context.transaction_async(conn):
                await conn.execute("SELECT audit.record(kind => 't72.web.job')")
        spawned.append(asyncio.get_running_loop().create_task(job()))
        return PlainTextResponse("ok")

    async def b(request: Request) -> PlainTextResponse:
        gate.set()
        await asyncio.sleep(0.05)
        async with pool.connection() as conn, request_context.transaction_async(conn):
            await conn.execute("SELECT audit.record(kind => 't72.web.b')")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/a", a), Route("/b", b)])
    app.add_middleware(AuditContextMiddleware, context=who_header)

    async def main():
        await pool.open()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                await client.get("/a", headers={"x-user": "alice"})
                await client.get("/b", headers={"x-user": "bob", "x-tenant": "globex"})
            await asyncio.gather(*spawned)
        finally:
            await pool.close()

    asyncio.run(main())
    job = who_of(db, "t72.web.job")
    assert job and job[0] in (("alice", None), ("app_writer", None))
    assert who_of(db, "t72.web.b") == [("bob", "globex")]


def test_W_fastapi_dependency_and_sync_endpoint_threadpool_names_the_request(db):
    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    pool = ConnectionPool(dsn(db), min_size=1, max_size=2, open=False)

    def conn_dep():
        with pool.connection() as conn, request_context.transaction(conn):
            yield conn

    app = FastAPI()

    @app.post("/f/{n}")
    def endpoint(n: str, conn=Depends(conn_dep)):  # noqa: B008 (FastAPI's way)  a sync endpoint: run in a worker thread
        conn.execute("SELECT audit.record(kind => 't72.fastapi', target_id => %s)", (n,))
        return {"ok": True}

    app.add_middleware(AuditContextMiddleware, context=who_header)
    pool.open()
    try:
        with TestClient(app) as client:
            for i in range(6):
                client.post(f"/f/{i}", headers={"x-user": f"u{i}"} if i % 2 else {})
    finally:
        pool.close()
    got = web_events(db, "t72.fastapi")
    for i in range(6):
        assert got[str(i)][0] == (f"u{i}" if i % 2 else "app_writer"), (i, got)


# ------------------------------------------------------------------ F: documented ordinary uses

def test_F_the_documented_block_names_everything_seals_and_verifies(db, connect, notes):
    writer = connect("app_writer", application_name="t72-app")
    with audit_context(writer, actor_type="user", actor_id="alice", tenant_id="acme",
                       correlation_id="req-42", client_addr="203.0.113.7"):
        record(writer, "order.refunded", target_type="order", target_id="o-1", payload={"amount": 12.5})
        writer.execute("INSERT INTO t72_notes (body) VALUES ('shipped')")
    record(writer, "email.sent", best_effort=True)
    assert seal_all(db) is None
    rows = db.execute(f"SELECT {COLS} FROM audit.events WHERE origin IN ('record','capture') AND NOT pending"
                      " ORDER BY seq").fetchall()
    assert rows == [
        ("order.refunded", "user", "alice", "acme", "req-42", "app_writer", "203.0.113.7", "t72-app"),
        ("public.t72_notes.insert", "user", "alice", "acme", "req-42", "app_writer", "203.0.113.7", "t72-app"),
        ("email.sent", "db_role", "app_writer", None, None, "app_writer", rows[2][6], "t72-app"),
    ]
    assert rows[2][6] != "203.0.113.7"
    assert both_verifiers(db) == (True, True)


def test_F_async_documented_block_and_pool_threads_seal_and_verify(db, notes):
    async def main():
        async with await psycopg.AsyncConnection.connect(dsn(db), autocommit=True) as conn:
            async with aio.audit_context(conn, actor_id="alice", tenant_id="acme"):
                await aio.record(conn, "order.refunded", target_type="order", target_id="o-1")
                await conn.execute("INSERT INTO t72_notes (body) VALUES ('async')")
            await aio.record(conn, "t72.after")

    asyncio.run(main())
    with ConnectionPool(dsn(db), min_size=2, max_size=2, kwargs={"autocommit": True}) as pool:
        def work(i):
            with pool.connection() as conn, audit_context(conn, actor_id=f"w{i}", tenant_id=f"t{i % 3}"):
                conn.execute("INSERT INTO t72_notes (body) VALUES (%s)", (f"w{i}",))
        threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert seal_all(db) is None
    rows = db.execute("SELECT row_after->>'body', actor_id, tenant_id FROM audit.events"
                      " WHERE kind = 'public.t72_notes.insert' AND NOT pending").fetchall()
    assert sorted(rows) == sorted([("async", "alice", "acme")] + [(f"w{i}", f"w{i}", f"t{i % 3}") for i in range(12)])
    rows = by_kind(db)
    assert rows["order.refunded"][1:3] == ("alice", "acme") and rows["t72.after"][1:3] == ("app_writer", None)
    assert both_verifiers(db) == (True, True)


def test_F_nested_block_in_callers_transaction_with_update_and_delete(db, connect, notes):
    writer = connect("app_writer")
    writer.execute("INSERT INTO t72_notes (body) VALUES ('one'), ('two')")
    with writer.transaction():
        with audit_context(writer, actor_id="alice", tenant_id="acme"):
            writer.execute("UPDATE t72_notes SET body = 'ONE' WHERE body = 'one'")
            with audit_context(writer, actor_id="bob"):
                writer.execute("DELETE FROM t72_notes WHERE body = 'two'")
            writer.execute("UPDATE t72_notes SET body = 'One' WHERE body = 'ONE'")
        writer.execute("INSERT INTO t72_notes (body) VALUES ('three')")
    assert seal_all(db) is None
    rows = db.execute("SELECT kind, actor_id, tenant_id FROM audit.events WHERE origin = 'capture'"
                      " ORDER BY seq").fetchall()
    assert rows == [("public.t72_notes.insert", "app_writer", None)] * 2 + [("public.t72_notes.update", "alice", "acme"),
                    ("public.t72_notes.delete", "bob", "acme"), ("public.t72_notes.update", "alice", "acme"),
                    ("public.t72_notes.insert", "app_writer", None)]
    assert both_verifiers(db) == (True, True)


def test_F_pipeline_mode_blocks_name_their_own(db, connect, notes):
    writer = connect("app_writer")
    with writer.pipeline():
        for i in range(4):
            with audit_context(writer, actor_id=f"p{i}"):
                writer.execute("INSERT INTO t72_notes (body) VALUES (%s)", (str(i),))
        writer.execute("INSERT INTO t72_notes (body) VALUES ('none')")
    assert seal_all(db) is None
    rows = db.execute("SELECT row_after->>'body', actor_id FROM audit.events WHERE origin = 'capture'"
                      " ORDER BY seq").fetchall()
    assert rows == [(str(i), f"p{i}") for i in range(4)] + [("none", "app_writer")]
    assert both_verifiers(db) == (True, True)


# ------------------------------------------------------------------ W: Django and SQLAlchemy

def dj_auto(request, n):
    dj_record("t72.dj.auto", str(n))
    from django.http import HttpResponse
    return HttpResponse("ok")


def dj_helper_sets_session(request):
    """A 'helpful' library inside a request sets the tenant for the session."""
    from django.db import connection
    from django.http import HttpResponse
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pgaudit_py.tenant_id', 'acme', false),"
                       " set_config('pgaudit_py.actor_id', 'alice', false)")
    dj_record("t72.dj.helper")
    return HttpResponse("ok")


def dj_raises(request):
    from django.db import transaction
    with transaction.atomic():
        dj_record("t72.dj.raised")
        raise RuntimeError("boom")


def dj_plain_thread(request):
    """A thread started without the request's context (a plain Thread): its work names nobody."""
    from django.db import connections
    from django.http import HttpResponse

    def work():
        try:
            dj_record("t72.dj.thread")
        finally:
            connections.close_all()
    t = threading.Thread(target=work)
    t.start()
    t.join()
    return HttpResponse("ok")


urlpatterns = [path("auto/<int:n>", dj_auto), path("helper", dj_helper_sets_session),
               path("raises", dj_raises), path("thread", dj_plain_thread)]


@pytest.fixture
def django_client(db):
    with django_test_client(db, __name__, raise_request_exception=False) as client:
        yield client


def test_W_django_a_librarys_session_setting_in_one_request_does_not_label_the_next_or_a_job(db, django_client):
    django_client.get("/helper", headers={"x-user": "alice", "x-tenant": "acme"})
    django_client.get("/auto/1", headers={"x-user": "bob"})
    django_client.get("/auto/2")
    dj_record("t72.dj.job")  # a management command on the same persistent connection, no request
    rows = db.execute("SELECT kind, target_id, actor_id, tenant_id FROM audit.events WHERE kind LIKE 't72.dj.%'"
                      " ORDER BY occurred_at").fetchall()
    assert rows == [("t72.dj.helper", None, "alice", "acme"), ("t72.dj.auto", "1", "bob", None),
                    ("t72.dj.auto", "2", "app_writer", None), ("t72.dj.job", None, "app_writer", None)]


def test_W_django_a_request_that_raises_and_a_plain_thread_name_nobody_else(db, django_client):
    assert django_client.get("/raises", headers={"x-user": "mallory", "x-tenant": "evil"}).status_code == 500
    django_client.get("/thread", headers={"x-user": "carol", "x-tenant": "acme"})
    django_client.get("/auto/3")
    rows = db.execute("SELECT kind, actor_id, tenant_id FROM audit.events WHERE kind LIKE 't72.dj.%'"
                      " ORDER BY occurred_at").fetchall()
    assert rows == [("t72.dj.thread", "app_writer", None), ("t72.dj.auto", "app_writer", None)]


def test_W_sqlalchemy_session_level_set_sent_as_text_does_not_reach_the_next_request(db):
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from pgaudit_py.integrations.sqlalchemy import audit_sessions

    class T72Session(Session):
        pass

    audit_sessions(T72Session)
    info = db.info
    engine = create_engine(f"postgresql+psycopg://app_writer@{info.host}:{info.port}/{info.dbname}",
                           pool_size=1, max_overflow=0)
    try:
        with request_context.serving({"actor_id": "alice", "tenant_id": "acme"}), T72Session(engine) as s, s.begin():
            s.execute(text("SET pgaudit_py.tenant_id = 'acme'; SET pgaudit_py.actor_id = 'alice'"))
            s.execute(text("SELECT audit.record(kind => 't72.sa.first')"))
        with request_context.serving({"actor_id": "bob"}), T72Session(engine) as s, s.begin():
            s.execute(text("SELECT audit.record(kind => 't72.sa.second')"))
        with T72Session(engine) as s, s.begin():
            s.execute(text("SELECT audit.record(kind => 't72.sa.job')"))
    finally:
        engine.dispose()
    rows = by_kind(db)
    assert rows["t72.sa.first"][1:3] == ("alice", "acme")
    assert rows["t72.sa.second"][1:3] == ("bob", None)
    assert rows["t72.sa.job"][1:3] == ("app_writer", None)
