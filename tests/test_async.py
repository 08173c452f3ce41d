"""The library for asyncio applications (pgaudit_py.aio), on a real AsyncConnection, and both
flavours from SQLAlchemy."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import create_async_engine

from pgaudit_py import InvalidKind, UnsupportedSession, aio, audit_context, list_events, record
from pgaudit_py.errors import MasterKeyUnavailable


def url(db, role: str, driver: str = "postgresql+psycopg") -> str:
    i = db.info
    return f"{driver}://{role}@{i.host}:{i.port}/{i.dbname}"


def test_record_list_count_and_seal_on_an_async_connection(db):
    i = db.info

    async def main() -> None:
        writer = await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                       user="app_writer", autocommit=True)
        maintainer = await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                           user="app_maintainer", autocommit=True)
        async with writer, maintainer:
            async with aio.audit_context(writer, actor_id="alice", tenant_id="acme"):
                made = await aio.record(writer, "order.refunded", target_type="order", target_id="o-1",
                                        payload={"amount": 12.5})
                async with aio.audit_context(writer, actor_id="bob"):
                    await aio.record(writer, "order.viewed")
                await aio.record(writer, "order.closed")
            assert made is not None and made.pending and made.actor_id == "alice"
            for best_effort in (False, True):  # bad input raises, best effort or not
                with pytest.raises(InvalidKind):
                    await aio.record(writer, "Not A Kind", best_effort=best_effort)
            sealed = await aio.seal(maintainer)
            assert sealed.sealed == 3
            events = await aio.list_events(maintainer, tenant_id="acme", kind_prefix="order.")
            assert [(e.kind, e.actor_id) for e in events] == [
                ("order.closed", "alice"), ("order.viewed", "bob"), ("order.refunded", "alice")]
            counted = await aio.count_events(maintainer, tenant_id="acme", by_kind_prefix=["order."])
            assert counted.count == 3
            months = await aio.monthly_event_counts(maintainer, tenant_id="acme", month_count=1)
            assert [m.count for m in months] == [3]
            status = await aio.seal_status(maintainer)
            assert (status.pending, status.last_seq) == (0, 3)

    asyncio.run(main())
    assert db.execute("SELECT kind, actor_id, tenant_id FROM audit.events ORDER BY seq").fetchall() == [
        ("order.refunded", "alice", "acme"), ("order.viewed", "bob", "acme"), ("order.closed", "alice", "acme")]


def test_best_effort_on_an_async_connection_survives_a_failure_and_the_transaction_goes_on(db):
    i = db.info

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                         user="app_reader") as reader, reader.transaction():
            assert await aio.record(reader, "not.allowed", best_effort=True) is None  # no privilege
            assert (await (await reader.execute("SELECT 1")).fetchone()) == (1,)

    asyncio.run(main())


def test_from_sqlalchemy_sync_and_async(db):
    engine = sqlalchemy.create_engine(url(db, "app_writer"))
    with engine.begin() as connection:
        raw = connection.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        with audit_context(raw, actor_id="alice"):
            record(raw, "from.sqlalchemy")
    engine.dispose()

    async def main() -> None:
        engine = create_async_engine(url(db, "app_writer"))
        async with engine.begin() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert isinstance(raw, psycopg.AsyncConnection)
            async with aio.audit_context(raw, actor_id="bob"):
                await aio.record(raw, "from.sqlalchemy.async")
        await engine.dispose()

    asyncio.run(main())
    assert [(e.kind, e.actor_id) for e in reversed(list_events(db))] == [
        ("from.sqlalchemy", "alice"), ("from.sqlalchemy.async", "bob")]


def test_row_history_and_state_on_an_async_connection(db):
    db.execute("CREATE TABLE public.stock (id int PRIMARY KEY, qty int); GRANT ALL ON public.stock TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.stock')")
    i = db.info

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                         user="app_writer", autocommit=True) as writer, \
                await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                      user="app_reader", autocommit=True) as reader:
            async with aio.audit_context(writer, actor_id="alice"):
                await writer.execute("INSERT INTO stock VALUES (1, 5)")
            await writer.execute("UPDATE stock SET qty = 6 WHERE id = 1")
            history = await aio.row_history(reader, "public.stock", "1")
            assert [(e.kind, e.actor_id, e.row_after) for e in history] == [
                ("public.stock.insert", "alice", {"id": 1, "qty": 5}),
                ("public.stock.update", "app_writer", {"id": 1, "qty": 6})]
            now = (await (await reader.execute("SELECT clock_timestamp()")).fetchone())[0]
            found = await aio.row_state_as_of(reader, "public.stock", "1", now)
            assert (found.state, found.image) == ("existed", {"id": 1, "qty": 6})

    asyncio.run(main())


def test_secrets_in_client_key_mode_on_an_async_connection(db):
    """The key is set with a bound parameter and forgotten when the block ends."""
    import secrets as random

    i = db.info
    key = random.token_hex(32)

    async def main() -> None:
        app = await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user="app_secrets",
                                                    autocommit=True)
        async with app:
            async with aio.use_master_key(app, None, new_key=key):
                await (await app.execute("SELECT audit.add_master_key()")).fetchone()
            async with aio.use_master_key(app, key):
                slot = await aio.declare_secret(app, "stripe.api_key", "Stripe secret key")
                assert slot.key == "stripe.api_key"
                assert await aio.put_secret(app, "t1", "stripe.api_key", "sk_live_1") == 1
                assert await aio.read_secret(app, "t1", "stripe.api_key") == "sk_live_1"
                assert await aio.read_secret(app, "t2", "stripe.api_key") is None
                assert [(s.tenant_id, s.key) for s in await aio.list_secrets(app)] == [("t1", "stripe.api_key")]
                assert await aio.delete_secret(app, "t1", "stripe.api_key") is True
            with pytest.raises(MasterKeyUnavailable, match="not available in this session"):  # forgotten
                await aio.put_secret(app, "t1", "stripe.api_key", "sk_live_2")

    asyncio.run(main())
    assert db.execute("SELECT kind, tenant_id FROM audit.event_intake WHERE kind LIKE 'tenant.secret.%'"
                      " ORDER BY intake_id").fetchall() == [
        ("tenant.secret.written", "t1"), ("tenant.secret.read", "t1"), ("tenant.secret.read", "t2"),
        ("tenant.secret.deleted", "t1")]


def test_tracking_history_and_prune_on_an_async_connection(db, attacker):
    attacker.execute("CREATE TABLE public.stock (id int PRIMARY KEY, qty int); INSERT INTO public.stock VALUES (1, 5)")
    i = db.info

    async def main() -> None:
        maintainer = await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                           user="app_maintainer", autocommit=True)
        async with maintainer:
            entry = await aio.enable_tracking(maintainer, "public.stock", baseline=True)
            assert entry.baseline_at is not None
            assert [t.table_name for t in await aio.tracked_tables(maintainer)] == ["public.stock"]
            at = (await (await maintainer.execute("SELECT clock_timestamp()")).fetchone())[0]
            assert await aio.row_as_of(maintainer, "public.stock", "1", at) == {"id": 1, "qty": 5}
            await aio.seal(maintainer)
            preview = await aio.preview_prune(maintainer, "1 microsecond")
            pruned = await aio.prune_events(maintainer, "1 microsecond")
            assert preview.events > 0 and pruned.deleted > 0
            assert await aio.disable_tracking(maintainer, "public.stock") is True
            assert await aio.tracked_tables(maintainer) == []

    asyncio.run(main())


def test_a_block_is_refused_to_another_task_on_its_connection_and_its_own_tasks_write_in_it(db):
    """A task that did not start inside another's block on the same AsyncConnection would write as
    that block's actor: its block and its record() are refused (UnsupportedSession). The tasks the
    block's own code starts (asyncio.gather) carry its context and write as its actor."""
    i = db.info
    refused: list[str] = []

    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                     user="app_writer", autocommit=True)
        inside, done = asyncio.Event(), asyncio.Event()

        async def alice() -> None:
            async with aio.audit_context(conn, actor_id="alice", tenant_id="acme"):
                await asyncio.gather(aio.record(conn, "own.1"), aio.record(conn, "own.2"))
                inside.set()
                await done.wait()

        async def stranger() -> None:
            await inside.wait()
            try:
                try:
                    async with aio.audit_context(conn, actor_id="bob"):
                        await aio.record(conn, "stranger.block")
                except UnsupportedSession:
                    refused.append("block")
                try:
                    await aio.record(conn, "stranger.record")
                except UnsupportedSession:
                    refused.append("record")
            finally:
                done.set()

        async with conn:
            await asyncio.gather(alice(), stranger())
            await aio.record(conn, "after")

    asyncio.run(main())
    assert refused == ["block", "record"]
    assert db.execute("SELECT kind, actor_id, tenant_id FROM audit.events WHERE origin = 'record'"
                      " ORDER BY kind").fetchall() == [("after", "app_writer", None), ("own.1", "alice", "acme"),
                                                       ("own.2", "alice", "acme")]
