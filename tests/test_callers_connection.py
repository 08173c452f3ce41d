"""A caller's connection as the application set it up: any row_factory (dict_row, as many set for the
whole connection), a cursor_factory, loaders and dumpers of its own, every statement prepared,
pipeline mode, a transaction open. Every function of the package that takes one answers as it does on
a plain connection, and writes what it would (the package reads and writes through cursors of its
own, with psycopg's adapters: session.cursor), or refuses in one line having done nothing."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from datetime import datetime, timedelta

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.rows import dict_row, namedtuple_row, scalar_row
from psycopg.types.datetime import DatetimeNoTzDumper
from psycopg.types.json import set_json_dumps
from psycopg.types.numeric import IntDumper
from psycopg.types.string import StrDumper

from pgaudit_py import (
    InstallError,
    InvalidArgument,
    aio,
    count_events,
    enable_rate_limit,
    enable_tracking,
    install,
    list_events,
    monthly_event_counts,
    preview_prune,
    rate_limits,
    record,
    row_history,
    row_state_as_of,
    seal,
    seal_status,
    status,
    tracked_tables,
)
from pgaudit_py import archive as archiving
from pgaudit_py import secrets as secret_store
from pgaudit_py.archive_targets import open_target
from pgaudit_py.catalogues import load_catalogue
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import Keys, make_checkpoint

ROW_FACTORIES = [dict_row, namedtuple_row, scalar_row]


class _Garbage(Loader):
    def load(self, data):
        return "garbage"


class _BinaryGarbage(_Garbage):
    format = Format.BINARY


class _Shouting(StrDumper):
    def dump(self, obj):
        return super().dump(obj.upper())


class _OneMore(IntDumper):
    def dump(self, obj):
        return super().dump(obj + 1)


class _Zoneless(DatetimeNoTzDumper):
    pass


class _BinaryCursor(psycopg.Cursor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.format = Format.BINARY


class _AsyncBinaryCursor(psycopg.AsyncCursor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.format = Format.BINARY


def adapted_strangely(conn):
    """Every type but JSON read as 'garbage', in text and in binary (arrays too), strings sent upper
    case, integers one more, times without their zone, JSON written without its nulls, and cursors
    that read binary (trial 100, l2 to l5)."""
    for info in psycopg.adapters.types:
        if info.name not in ("json", "jsonb"):
            conn.adapters.register_loader(info.oid, _Garbage)
            conn.adapters.register_loader(info.oid, _BinaryGarbage)
            if getattr(info, "array_oid", 0):
                conn.adapters.register_loader(info.array_oid, _Garbage)
    conn.adapters.register_dumper(str, _Shouting)
    conn.adapters.register_dumper(int, _OneMore)
    conn.adapters.register_dumper(datetime, _Zoneless)
    set_json_dumps(lambda value: json.dumps({k: v for k, v in value.items() if v is not None}
                                            if isinstance(value, dict) else value), conn)
    conn.cursor_factory = _AsyncBinaryCursor if isinstance(conn, psycopg.AsyncConnection) else _BinaryCursor
    return conn


@pytest.fixture(params=[*ROW_FACTORIES, "adapters"],
                ids=lambda factory: factory if isinstance(factory, str) else factory.__name__)
def theirs(request, connect) -> psycopg.Connection:
    """A superuser's connection whose rows come as the application likes them, or whose adapters
    and cursors are the application's own."""
    if request.param == "adapters":
        return adapted_strangely(connect(row_factory=dict_row))
    return connect(row_factory=request.param)


def test_writes_and_reads_answer_as_on_a_plain_connection(db, theirs, tmp_path):
    db.execute("CREATE TABLE public.rf (id int PRIMARY KEY, note text)")
    assert enable_tracking(theirs, "public.rf").table_name == "public.rf"
    db.execute("INSERT INTO public.rf VALUES (1, 'a'), (2, 'b'); UPDATE public.rf SET note = 'c' WHERE id = 1")
    recorded = record(theirs, "order.paid", tenant_id="t1", payload={"n": 1})
    assert db.execute("SELECT kind, tenant_id FROM audit.events WHERE id = %s", (recorded.id,)).fetchone() == (
        "order.paid", "t1")
    sealed = seal(theirs)
    assert sealed.sealed == db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0] == 5  # with tracking's
    assert replace(seal_status(theirs), now=None) == replace(seal_status(db), now=None)
    assert list_events(theirs) == list_events(db)
    assert count_events(theirs, tenant_id="t1") == count_events(db, tenant_id="t1")
    assert monthly_event_counts(theirs) == monthly_event_counts(db)
    assert row_history(theirs, "public.rf", "1") == row_history(db, "public.rf", "1")
    now = db.execute("SELECT now()").fetchone()[0]
    assert row_state_as_of(theirs, "public.rf", "1", now) == row_state_as_of(db, "public.rf", "1", now)
    assert tracked_tables(theirs) == tracked_tables(db)
    preview = preview_prune(theirs, timedelta(milliseconds=1))
    assert preview.events == 5
    assert replace(preview, cutoff=None) == replace(preview_prune(db, timedelta(milliseconds=1)), cutoff=None)
    enable_rate_limit(theirs, "public.rf", per_user_per_minute=100)
    assert rate_limits(theirs) == rate_limits(db)
    assert sorted(loaded.kind for loaded in load_catalogue(theirs, "auth")) == [
        kind for (kind,) in db.execute("SELECT kind FROM audit.event_types WHERE catalogue = 'auth' ORDER BY kind")]

    verdict = verify_chain(theirs)
    assert verdict.ok, verdict.problems
    assert verdict == verify_chain(db)
    private = Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, public_key=private.public_key(), hmac_key=os.urandom(32))
    signed, ours = make_checkpoint(theirs, keys)["checkpoint"], make_checkpoint(db, keys)["checkpoint"]
    assert {**signed, "created_at": None} == {**ours, "created_at": None}
    assert signed["block_no"] == 1 and signed["last_seq"] == 5
    ours, got = status(db), status(theirs)
    assert (got.installed_version, got.problems) == (ours.installed_version, ours.problems)

    # the archive holds the log's own lines, which only a plain connection's verifier then accepts
    target = open_target(f"file://{tmp_path}/archive")
    run = archiving.archive(theirs, target, keys, older_than=timedelta(milliseconds=1))
    assert run.events == 5
    checked = archiving.verify_archive(db, target, keys)
    assert checked.ok, checked.problems
    assert archiving.verify_archive(theirs, target, keys) == checked
    assert [b.batch_id for b in archiving.list_batches(theirs)] == [b.batch_id for b in run.batches]


def test_secrets_round_trip(db, theirs):
    key = os.urandom(32).hex()
    with secret_store.use_master_key(theirs, None, new_key=key):
        assert secret_store.add_master_key(theirs).state == "active"
    with secret_store.use_master_key(theirs, key):
        secret_store.declare_secret(theirs, "stripe.api_key", "Stripe secret key")
        assert secret_store.put_secret(theirs, "t1", "stripe.api_key", "sk_1") == 1
        assert secret_store.read_secret(theirs, "t1", "stripe.api_key") == "sk_1"
        assert [s.tenant_id for s in secret_store.list_secrets(theirs)] == ["t1"]
        assert secret_store.delete_secret(theirs, "t1", "stripe.api_key") is True
    assert secret_store.exposure_warnings(theirs) == secret_store.exposure_warnings(db)
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'tenant.secret.read'").fetchone()[0] == 1


def test_install_over_an_installed_schema(db, connect):
    theirs = connect(row_factory=dict_row)
    report = install(theirs)
    assert (report.migrations, report.dry_run) == ([], False)
    assert status(db).problems == []


@pytest.mark.parametrize("strange", [False, True], ids=["dict_rows", "and_adapters"])
def test_the_asyncio_api_on_an_async_connection_of_dict_rows(db, strange):
    i = db.info
    db.execute("CREATE TABLE public.rf (id int PRIMARY KEY, note text)")

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user=i.user,
                                                         autocommit=True, row_factory=dict_row) as theirs:
            if strange:
                adapted_strangely(theirs)
            await aio.enable_tracking(theirs, "public.rf")
            await theirs.execute("INSERT INTO public.rf VALUES (1, 'a')")
            async with aio.audit_context(theirs, actor_id="alice"):
                await aio.record(theirs, "order.paid", tenant_id="t1")
            assert (await aio.seal(theirs)).sealed == 3
            assert [e.actor_id for e in await aio.list_events(theirs, tenant_id="t1")] == ["alice"]
            assert (await aio.count_events(theirs, tenant_id="t1")).count == 1
            assert [e.kind for e in await aio.row_history(theirs, "public.rf", "1")] == ["public.rf.insert"]
            assert await aio.disable_tracking(theirs, "public.rf") is True

    asyncio.run(main())
    assert db.execute("SELECT actor_id FROM audit.events WHERE kind = 'order.paid'").fetchall() == [("alice",)]


class _Upper(Loader):
    def load(self, data):
        return bytes(data).decode().upper()


class _AsText(Loader):
    def load(self, data):
        return bytes(data).decode()


@pytest.mark.parametrize("type_name, loader", [("int8", _AsText), ("bytea", _AsText), ("text", _Upper),
                                               ("timestamptz", _AsText)])
def test_the_callers_loaders_change_no_verdict(db, connect, type_name, loader):
    """The package reads the built-in types with psycopg's own loaders (session.cursor); JSON
    apart, whose loader the caller decides (trial 99, r7)."""
    record(connect("app_writer"), "order.paid", tenant_id="t1", payload={"n": 1})
    theirs = connect()
    theirs.adapters.register_loader(type_name, loader)
    sealed = seal(theirs)
    assert isinstance(sealed.sealed, int) and sealed.sealed == 1
    verdict = verify_chain(theirs)
    assert verdict.ok and verdict.events_checked == 1, verdict.problem
    db.execute("SET session_replication_role = replica; UPDATE audit.event_log SET tenant_id = 't2';"
               " RESET session_replication_role")
    assert verify_chain(theirs).problem == "block 1: event seq 1 was changed"


def test_a_connection_that_prepares_every_statement(db, connect):
    """prepare_threshold=0: psycopg prepares every statement, and a prepared one holds one command;
    the package sends none of more through the caller's connection (trial 99, r4)."""
    theirs = connect(prepare_threshold=0)
    record(theirs, "order.paid")
    assert seal(theirs).sealed == 1
    assert verify_chain(theirs).ok
    assert install(theirs).migrations == []
    assert status(theirs).problems == []


def test_pipeline_mode_is_answered_or_refused_in_one_line(db, connect):
    """In pipeline mode the wrappers answer; verify_chain (a server-side cursor) and install (scripts of
    many statements) cannot run there, and say so, having done nothing (trial 99, r4b)."""
    theirs = connect()
    with theirs.pipeline():
        record(theirs, "order.paid")
        assert seal(theirs).sealed == 1
        assert status(theirs).problems == []
        with pytest.raises(InvalidArgument, match="call it outside conn.pipeline"):
            verify_chain(theirs)
        with pytest.raises(InstallError, match="call it outside conn.pipeline"):
            install(theirs)
    assert verify_chain(theirs).ok
    assert status(db).problems == []


def test_status_inside_the_callers_transaction_leaves_it_the_callers(db, connect):
    """status reads in a savepoint of an open transaction: the caller's work is neither committed nor
    lost by it (trial 99, r5)."""
    db.execute("CREATE TABLE public.mine (id int)")
    theirs = connect(autocommit=False)
    theirs.execute("INSERT INTO public.mine VALUES (1)")
    assert status(theirs, "no_such_schema").problems == ["pgaudit_py is not installed in schema 'no_such_schema'"]
    assert status(theirs).problems == []
    assert theirs.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert theirs.execute("SELECT count(*) FROM public.mine").fetchone() == (1,)
    theirs.rollback()
    assert db.execute("SELECT count(*) FROM public.mine").fetchone() == (0,)
