"""A caller's connection with any row_factory (dict_row, as many applications set for the whole
connection): every function of the package that takes one answers as it does on a plain connection,
and writes what it would, because the package reads its own rows as tuples (session.tuples)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.rows import dict_row, namedtuple_row, scalar_row

from pgaudit_py import (
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


@pytest.fixture(params=ROW_FACTORIES, ids=lambda factory: factory.__name__)
def theirs(request, connect) -> psycopg.Connection:
    """A superuser's connection whose rows come as the application likes them."""
    return connect(row_factory=request.param)


def test_writes_and_reads_answer_as_on_a_plain_connection(db, theirs, tmp_path):
    db.execute("CREATE TABLE public.rf (id int PRIMARY KEY, note text)")
    assert enable_tracking(theirs, "public.rf").table_name == "public.rf"
    theirs.execute("INSERT INTO public.rf VALUES (1, 'a'), (2, 'b'); UPDATE public.rf SET note = 'c' WHERE id = 1")
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


def test_the_asyncio_api_on_an_async_connection_of_dict_rows(db):
    i = db.info
    db.execute("CREATE TABLE public.rf (id int PRIMARY KEY, note text)")

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user=i.user,
                                                         autocommit=True, row_factory=dict_row) as theirs:
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
