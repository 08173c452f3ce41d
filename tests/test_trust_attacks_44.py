"""A forty-fourth attacker's trial, against the mends of trial 43: the prune point both verifiers now
require to be justified (audit.verify and chain.verify_chain), the checkpoint's pruned_since, the
archive check's batches named by events, the SQLAlchemy hook that sets the request's values before
every statement, and the idempotent retry whose first event was quarantined. Covered: a superuser
justifying a removal with a quarantine row alone (never announced by audit.event_quarantined), with
a pending audit.pruned of legacy (NULL) origin, with a real prune's or archive deletion's event
reused for another point, with a point moved, lowered, or beyond the head; legitimate flows that
must raise no false alarm (many interleaved prunes, archive runs, delete_archived, restores and
seals, a whole log partition dropped, verify over ranges, both verifiers racing a committing
prune); an archived batch erased once the events naming it were pruned; SQLAlchemy with AsyncSession
and a streamed query, begin_nested with a failing statement, insertmanyvalues and yield_per,
a connection killed mid-request, a session bound to two engines, a multi-statement text that rolls
back to another request's savepoint; idempotent retries around a quarantined first event (another
tenant, other content, another role); and the offline auditor's kit fed a properly signed manifest
whose data object is a gzip bomb (many lines, or one huge line) under an address-space limit. Each
test asserts the SAFE outcome: it passes when the product holds and fails when the attack works."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pgaudit_py import archive as archiving
from pgaudit_py import canonical, record, seal
from pgaudit_py.archive_targets import open_target
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint, pruned_since, sign
from pgaudit_py.errors import IdempotencyConflict

ROOT = Path(__file__).resolve().parents[1]


def tamper(db: psycopg.Connection, statement: str) -> None:
    """What a superuser can do: switch the guard triggers off for the session and rewrite."""
    db.execute("SET session_replication_role = replica")
    try:
        db.execute(statement)
    finally:
        db.execute("RESET session_replication_role")


def sql_verdict(db: psycopg.Connection, *bounds: int) -> tuple[bool, str | None]:
    if bounds:
        row = db.execute("SELECT ok, problem FROM audit.verify(%s, %s)", bounds).fetchone()
    else:
        row = db.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    assert row is not None
    return row[0], row[1]


def verdicts(db: psycopg.Connection) -> tuple[tuple[bool, str | None], tuple[bool, str | None]]:
    python = verify_chain(db)
    return sql_verdict(db), (python.ok, python.problem)


def keys_in(tmp_path: Path) -> tuple[Path, Path]:
    directory = tmp_path / "keys"
    generate_keys(directory)
    return directory / "checkpoint-ed25519.pem", directory / "checkpoint-ed25519.pub.pem"


def blocks_of(db: psycopg.Connection, connect, rounds: int = 3, per: int = 3, kind: str = "order.paid") -> None:
    writer = connect("app_writer")
    for r in range(rounds):
        for i in range(per):
            record(writer, kind, target_id=f"o{r}-{i}", payload={"r": r})
        seal(db)


def prune(maintainer: psycopg.Connection, batch_size: int = 1000) -> tuple[int, bool]:
    time.sleep(0.01)
    row = maintainer.execute(
        "SELECT deleted, more FROM audit.prune_events(interval '1 millisecond', %s)", (batch_size,)
    ).fetchone()
    assert row is not None
    return int(row[0] or 0), bool(row[1])


def archive_due(maintainer: psycopg.Connection, directory: Path, signing: Path) -> archiving.ArchiveRun:
    time.sleep(0.01)
    return archiving.archive(
        maintainer,
        open_target(f"file://{directory}"),
        load_keys(signing_key=signing),
        older_than=timedelta(milliseconds=1),
    )


def forged_point(block: int) -> str:
    return (
        "INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
        f" SELECT block_no, block_hash, last_seq, now(), 'app_maintainer' FROM audit.blocks WHERE block_no = {block}"
    )


def delete_through(block: int, after_block: int = 0) -> str:
    return (
        "DELETE FROM audit.event_log WHERE seq <= (SELECT last_seq FROM audit.blocks WHERE block_no = "
        f"{block}) AND seq > coalesce((SELECT last_seq FROM audit.blocks WHERE block_no = {after_block}), 0)"
    )


def pruned_payload(block: int) -> str:
    return (
        "(SELECT jsonb_build_object('last_block', block_no, 'last_block_hash', encode(block_hash, 'hex'),"
        f" 'first_block', 1, 'deleted', 0) FROM audit.blocks WHERE block_no = {block})"
    )


# ====================== 1. prune points: forged justifications ======================


def test_a_forged_quarantine_row_alone_does_not_pass_a_removal_off_as_a_prune(db, connect):
    """The sealer sets an event aside only with an audit.event_quarantined event in the chain that
    announces it. A superuser deletes blocks 1..2's events, writes their prune point, and justifies
    it with a row written straight into audit.quarantine (no announcement, never sealed). Nothing of
    the removal will ever read in the chain: the verifiers must not both call it intact."""
    blocks_of(db, connect)
    tamper(db, f"{delete_through(2)}; {forged_point(2)}")
    (sql_ok, _), (py_ok, _) = verdicts(db)
    assert not sql_ok and not py_ok  # the removal alone is found: the quarantine row is what passes it
    tamper(
        db,
        "INSERT INTO audit.quarantine (id, actor_type, actor_id, db_role, kind, target_type, outcome, txid,"
        "   occurred_at, payload, origin, intake_id, quarantined_at, sqlstate, error)"
        " SELECT gen_random_uuid(), 'db_role', 'app_maintainer', 'app_maintainer', 'audit.pruned', 'event_log',"
        f"   'success', '1', now(), {pruned_payload(2)}, 'system', 1, now(), '54000', 'set aside'",
    )
    for _ in range(2):
        seal(db)
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE seq <= 6").fetchone() == (0,)  # removed
    announced = db.execute(
        "SELECT count(*) FROM audit.events WHERE kind IN ('audit.event_quarantined', 'audit.pruned')"
    ).fetchone()
    assert announced == (0,)  # nothing in the chain, nor pending, says anything was removed
    (sql_ok, sql_problem), (py_ok, py_problem) = verdicts(db)
    assert not sql_ok and not py_ok, (sql_problem, py_problem)


@pytest.mark.parametrize("origin", [None, "system"])
def test_a_forged_pending_prune_event_makes_the_removal_read_as_a_prune_and_a_checkpoint_name_it(
    db, connect, tmp_path, origin
):
    """The documented limit: a superuser who also writes the audit.pruned event passes. Then the
    removal must read as a prune in the chain once sealed (whatever origin: NULL is a legacy row)
    and a checkpoint signed before it must name the blocks as pruned since."""
    blocks_of(db, connect)
    signing, public = keys_in(tmp_path)
    document = make_checkpoint(db, load_keys(signing_key=signing))
    assert document["checkpoint"]["pruned_through"] is None
    db.execute("SET session_replication_role = replica")
    try:
        db.execute(f"{delete_through(2)}; {forged_point(2)}")
        db.execute(
            "INSERT INTO audit.event_intake (actor_type, actor_id, db_role, kind, target_type, outcome, txid,"
            " occurred_at, payload, origin)"
            " SELECT 'db_role', 'app_maintainer', 'app_maintainer', 'audit.pruned', 'event_log', 'success',"
            f" pg_current_xact_id(), now(), {pruned_payload(2)}, %s",
            (origin,),
        )
    finally:
        db.execute("RESET session_replication_role")
    seal(db)
    sealed = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 'audit.pruned'").fetchone()
    (sql_ok, _), (py_ok, _) = verdicts(db)
    if sql_ok or py_ok:
        assert sealed == (1,), "passed without the removal reading as a prune in the chain"
        verification = verify_chain(db)
        assert pruned_since(document, verification) == (1, 2), "the earlier checkpoint does not name the removal"


POINT_TRICKS = {
    # A real prune of block 1; the attacker then deletes block 2..3's events and moves the real point
    # (its row) to block 3, keeping block 1's hash and last seq, which the real event names.
    "the real point moved up": (
        f"{delete_through(3, 1)}; UPDATE audit.prune_points SET block_no = 3 WHERE block_no = 1",
    ),
    # ... or keeps the real point and adds one at block 3 whose hash is block 1's (the real event's).
    "a second point borrowing the real hash": (
        f"{delete_through(3, 1)}; INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
        " SELECT 3, block_hash, (SELECT last_seq FROM audit.blocks WHERE block_no = 3), now(), 'x'"
        " FROM audit.blocks WHERE block_no = 1",
    ),
    # ... or a point far beyond the head: no block is checked at all under it.
    "a point beyond the head": (
        f"{delete_through(3, 1)}; INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
        " SELECT 99, block_hash, last_seq, now(), 'x' FROM audit.blocks WHERE block_no = 1",
    ),
    # ... or a point of a lower number than the real one, with block 2's events deleted above it.
    "a lower point under a deletion above the real one": (
        f"{delete_through(2, 1)}; INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
        " SELECT 0, block_hash, last_seq, now(), 'x' FROM audit.blocks WHERE block_no = 2",
    ),
    # ... or the real prune's own sealed event rewritten to name block 3: a change in a checked block.
    "the real prune's sealed event renamed": (
        f"{delete_through(3, 1)}; {forged_point(3)};"
        " UPDATE audit.event_log l SET payload = l.payload || jsonb_build_object('last_block', 3,"
        " 'last_block_hash', (SELECT encode(block_hash, 'hex') FROM audit.blocks WHERE block_no = 3))"
        " WHERE kind = 'audit.pruned'",
    ),
}


@pytest.mark.parametrize("trick", POINT_TRICKS)
def test_a_real_prunes_point_or_event_cannot_be_stretched_over_a_later_removal(db, connect, trick):
    """After a real prune of block 1 (its event sealed in a later block), events of later blocks
    are deleted by hand, borrowing what the real prune left: both verifiers must find it."""
    blocks_of(db, connect, rounds=2)
    time.sleep(0.01)
    maintainer = connect("app_maintainer")
    assert prune(maintainer, batch_size=3)[0] == 3  # block 1 alone
    seal(db)  # the prune's event: block 3
    blocks_of(db, connect, rounds=2)  # blocks 4, 5
    assert verdicts(db) == ((True, None), (True, None))
    (statement,) = POINT_TRICKS[trick]
    before = db.execute("SELECT count(*) FROM audit.event_log").fetchone()
    tamper(db, statement)
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() != before  # events went
    (sql_ok, sql_problem), (py_ok, py_problem) = verdicts(db)
    assert not sql_ok and not py_ok, (trick, sql_problem, py_problem)


def test_a_real_archive_deletions_event_cannot_justify_a_removal_of_later_blocks(db, connect, tmp_path):
    """audit.archive_deleted is matched by its last_seq alone (no block, no hash): after a real
    archive and deletion of block 1, blocks 2..3's events are deleted by hand under a point whose
    last seq the attacker sets to the real batch's. The point no longer matches its block."""
    blocks_of(db, connect)
    signing, _ = keys_in(tmp_path)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 3, 3)")
    maintainer = connect("app_maintainer")
    run = archive_due(maintainer, tmp_path / "archive", signing)
    assert run.batches
    seal(db)
    blocks_of(db, connect, rounds=1)
    assert verdicts(db) == ((True, None), (True, None))
    newest = db.execute("SELECT max(block_no) FROM audit.prune_points").fetchone()[0]
    tamper(
        db,
        f"{delete_through(newest + 2, newest)};"
        " INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
        f" SELECT b.block_no, b.block_hash, p.last_seq, now(), 'x' FROM audit.blocks b, audit.prune_points p"
        f" WHERE b.block_no = {newest + 2} AND p.block_no = {newest}",
    )
    (sql_ok, sql_problem), (py_ok, py_problem) = verdicts(db)
    assert not sql_ok and not py_ok, (sql_problem, py_problem)


# ====================== 2. no false alarm under legitimate flows ======================


def all_verifiers_hold(db: psycopg.Connection, note: str, directory: Path | None = None, public: Path | None = None):
    assert verdicts(db) == ((True, None), (True, None)), note
    head = db.execute("SELECT coalesce(max(block_no), 0) FROM audit.blocks").fetchone()[0]
    point = db.execute("SELECT coalesce(max(block_no), 0) FROM audit.prune_points").fetchone()[0]
    for bounds in {(1, head), (max(1, point), head), (1, max(1, point)), (max(1, point + 1), head), (head, head)}:
        if head and bounds[0] <= bounds[1]:
            assert sql_verdict(db, *bounds) == (True, None), (note, bounds)
    if (
        directory is not None
        and public is not None
        and db.execute("SELECT count(*) FROM audit.archive_batches WHERE state <> 'planned'").fetchone()[0]
    ):
        checked = archiving.verify_archive(db, open_target(f"file://{directory}"), load_keys(public_key=public))
        assert checked.problems == [], (note, checked.problems)


def test_no_false_alarm_through_interleaved_archives_deletions_restores_and_seals(db, connect, tmp_path):
    """Archive runs (several batches each, delete_archived of each), restores, seals of the
    archiver's own events and new writes, round after round: both chain verifiers, verify over
    ranges and the archive check must hold after every step."""
    signing, public = keys_in(tmp_path)
    directory = tmp_path / "archive"
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 4, 3)")
    maintainer = connect("app_maintainer")
    restored = 0
    for round_no in range(5):
        blocks_of(db, connect, rounds=2, per=2 + round_no)
        all_verifiers_hold(db, f"round {round_no}: written", directory, public)
        run = archive_due(maintainer, directory, signing)
        all_verifiers_hold(db, f"round {round_no}: archived {len(run.batches)}", directory, public)
        seal(db)
        all_verifiers_hold(db, f"round {round_no}: sealed", directory, public)
        if run.batches:
            restored += archiving.restore_batch(maintainer, open_target(f"file://{directory}"), run.batches[0].batch_id)
            all_verifiers_hold(db, f"round {round_no}: restored", directory, public)
    assert restored > 0
    assert db.execute("SELECT count(*) FROM audit.archive_batches WHERE state = 'deleted'").fetchone()[0] >= 5


def test_no_false_alarm_through_interleaved_prunes_and_seals_in_small_batches(db, connect):
    """prune_events in batches of one block, again and again, with the prune's own events sealed
    (or still pending) between calls and new writes beside them."""
    maintainer = connect("app_maintainer")
    pruned = 0
    for round_no in range(4):
        blocks_of(db, connect, rounds=2, per=2)
        all_verifiers_hold(db, f"round {round_no}: written")
        more = True
        calls = 0
        while more and calls < 3:
            deleted, more = prune(maintainer, batch_size=1)
            pruned += deleted
            calls += 1
            all_verifiers_hold(db, f"round {round_no}: pruned (event pending)")
            if calls % 2:
                seal(db)
                all_verifiers_hold(db, f"round {round_no}: pruned and sealed")
    assert pruned > 0
    assert db.execute("SELECT count(*) FROM audit.prune_points").fetchone()[0] >= 4


def test_no_false_alarm_when_a_prune_drops_a_whole_log_partition_then_archive_takes_the_rest(
    db, connect, near_end, tmp_path
):
    """Blocks across the end of the log's first partition; a prune takes the whole partition (a
    DROP, docs/retention.md), then an archive run the rest: no false alarm at any step."""
    blocks_of(db, connect, rounds=4, per=3)
    assert db.execute("SELECT max(last_seq) FROM audit.blocks").fetchone()[0] > 999_999
    all_verifiers_hold(db, "written across the partition's end")
    maintainer = connect("app_maintainer")
    deleted, _ = prune(maintainer, batch_size=1)
    assert deleted >= 1
    all_verifiers_hold(db, "partition pruned")
    seal(db)
    all_verifiers_hold(db, "prune's event sealed")
    signing, public = keys_in(tmp_path)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 3, 3)")
    archive_due(maintainer, tmp_path / "archive", signing)
    all_verifiers_hold(db, "archived after the prune")
    seal(db)
    all_verifiers_hold(db, "archiver's events sealed")


def test_no_false_alarm_from_verifiers_racing_committing_prunes_and_seals(db, connect):
    """Both verifiers, run over and over while prunes commit and the sealer seals their events:
    one snapshot each, never a state between a prune and its event."""
    blocks_of(db, connect, rounds=8, per=2)
    maintainer = connect("app_maintainer")
    sealer = connect()
    reader_sql = connect()
    reader_py = connect()
    stop = threading.Event()
    seen: list[tuple[str, object]] = []

    def verify_loop() -> None:
        while not stop.is_set():
            sql_ok = reader_sql.execute("SELECT ok, problem FROM audit.verify()").fetchone()
            python = verify_chain(reader_py)
            if sql_ok != (True, None) or not python.ok:
                seen.append(("false alarm", (sql_ok, python.problem)))
            seen.append(("ran", None))

    thread = threading.Thread(target=verify_loop)
    thread.start()
    try:
        writer = connect("app_writer")
        for i in range(12):
            prune(maintainer, batch_size=2)
            seal(sealer)
            record(writer, "order.paid", target_id=f"late{i}")
            seal(sealer)
    finally:
        stop.set()
        thread.join(60)
    assert ("ran", None) in seen
    assert [s for s in seen if s[0] == "false alarm"] == []


# ====================== 3. the archive check: a batch erased once its naming events were pruned ======================


@pytest.mark.xfail(strict=True, reason="a known limit (docs/archive.md): once the events naming a batch are "
                   "pruned, only a signature held outside the database could say it existed; strict, so that a "
                   "change that closes it says so")
def test_an_archived_batch_erased_after_the_events_naming_it_were_pruned_is_found(db, connect, tmp_path):
    """Batches A and B archived and deleted from the log; the blocks holding their audit.archived
    and audit.archive_deleted events then pruned by retention (a legitimate prune, recorded). A
    superuser erases B's record and objects: B's events are now in no log and no archive. Some
    verifier must say so (the prune point delete_archived left for B is still there)."""
    signing, public = keys_in(tmp_path)
    directory = tmp_path / "archive"
    blocks_of(db, connect, rounds=2, per=3)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 3, 3)")
    maintainer = connect("app_maintainer")
    run = archive_due(maintainer, directory, signing)
    assert len(run.batches) == 2
    seal(db)  # the archiver's events: block 3
    blocks_of(db, connect, rounds=1)  # block 4
    deleted, _ = prune(maintainer, batch_size=1000)
    assert deleted > 0
    assert db.execute("SELECT count(*) FROM audit.events WHERE target_type = 'archive_batch'").fetchone() == (0,)
    seal(db)
    assert verdicts(db) == ((True, None), (True, None))
    honest = archiving.verify_archive(db, open_target(f"file://{directory}"), load_keys(public_key=public))
    assert honest.problems == []
    last = run.batches[-1]
    tamper(db, f"DELETE FROM audit.archive_batches WHERE batch_id = '{last.batch_id}'")
    (directory / last.data_object).unlink()
    (directory / last.manifest_object).unlink()
    checked = archiving.verify_archive(db, open_target(f"file://{directory}"), load_keys(public_key=public))
    (sql_ok, _), (py_ok, _) = verdicts(db)
    assert checked.problems or not sql_ok or not py_ok, "batch erased, nothing missed"


# ====================== 4. the SQLAlchemy hook ======================


def engine_url(db: psycopg.Connection, role: str = "app_writer", driver: str = "psycopg") -> str:
    return f"postgresql+{driver}://{role}@{db.info.host}:{db.info.port}/{db.info.dbname}"


def audited_class():
    from sqlalchemy.orm import Session

    from pgaudit_py.integrations.sqlalchemy import audit_sessions

    class AuditedSession(Session):
        pass

    audit_sessions(AuditedSession)
    return AuditedSession


def actors(db: psycopg.Connection, kind: str) -> list[tuple]:
    return db.execute(
        "SELECT target_id, actor_id, tenant_id FROM audit.events WHERE kind = %s ORDER BY target_id", (kind,)
    ).fetchall()


def test_async_session_streaming_and_a_failed_nested_transaction_name_the_request(db):
    """AsyncSession (sync_session_class hooked): a streamed (server-side) query read while events
    are recorded, then begin_nested with a failing statement rolled back by the ORM, then another
    event, then a second request on the same session: each event names its own request."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from pgaudit_py import request_context

    engine = create_async_engine(engine_url(db))
    record_sql = text("SELECT audit.record(kind => 'async.view', target_id => :t)")

    async def run() -> None:
        session = AsyncSession(engine, sync_session_class=audited_class())
        try:
            with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}):
                stream = await session.stream(text("SELECT g FROM generate_series(1, 3) g"))
                async for row in stream:
                    await session.execute(record_sql, {"t": f"a-stream-{row[0]}"})
                try:
                    async with session.begin_nested():
                        await session.execute(record_sql, {"t": "a-undone"})
                        await session.execute(text("SELECT 1/0"))
                except DBAPIError:
                    pass
                await session.execute(record_sql, {"t": "a-after"})
            with request_context.serving({"actor_id": "bob", "tenant_id": "t2"}):
                await session.execute(record_sql, {"t": "b-same-transaction"})
                await session.commit()
        finally:
            await session.close()
            await engine.dispose()

    asyncio.run(run())
    assert actors(db, "async.view") == [
        ("a-after", "ada", "t1"),
        ("a-stream-1", "ada", "t1"),
        ("a-stream-2", "ada", "t1"),
        ("a-stream-3", "ada", "t1"),
        ("b-same-transaction", "bob", "t2"),
    ]


def test_orm_insertmanyvalues_and_yield_per_name_the_request_of_each_batch(db):
    """A tracked table written by the ORM in one flush (insertmanyvalues batches) while another
    query streams with yield_per; then a second request continues the same transaction: every
    captured row names the request it was written in."""
    from sqlalchemy import create_engine, select

    from pgaudit_py import request_context

    db.execute("CREATE TABLE public.items (id int PRIMARY KEY, name text)")
    db.execute("GRANT ALL ON public.items TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.items')")

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        name: Mapped[str] = mapped_column(String)

    engine = create_engine(engine_url(db), insertmanyvalues_page_size=7)
    session = audited_class()(engine)
    try:
        with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}):
            session.add_all([Item(id=i, name=f"n{i}") for i in range(40)])
            session.flush()
        with request_context.serving({"actor_id": "bob", "tenant_id": "t2"}):
            for item in session.scalars(select(Item).order_by(Item.id).execution_options(yield_per=5)):
                if item.id % 10 == 0:
                    session.add(Item(id=1000 + item.id, name="late"))
                    session.flush()
            session.commit()
    finally:
        session.close()
        engine.dispose()
    rows = db.execute(
        "SELECT (row_after ->> 'id')::int >= 1000, actor_id, tenant_id, count(*) FROM audit.events"
        " WHERE kind LIKE 'public.items.%' GROUP BY 1, 2, 3 ORDER BY 1"
    ).fetchall()
    assert rows == [(False, "ada", "t1", 40), (True, "bob", "t2", 4)], rows


def test_a_connection_killed_mid_request_reconnects_naming_the_request(db):
    """The session's backend is terminated mid-request; the ORM rolls back and the session carries
    on, on a new connection: the next event still names the request, not the database role."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    from pgaudit_py import request_context

    engine = create_engine(engine_url(db), pool_pre_ping=False)
    record_sql = text("SELECT audit.record(kind => 'killed.view', target_id => :t)")
    session = audited_class()(engine)
    try:
        with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}):
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            time.sleep(0.2)
            with pytest.raises(DBAPIError):
                session.execute(record_sql, {"t": "lost"})
            session.rollback()
            session.execute(record_sql, {"t": "again"})
            session.commit()
    finally:
        session.close()
        engine.dispose()
    assert actors(db, "killed.view") == [("again", "ada", "t1")]


def test_a_session_bound_to_two_engines_names_the_request_on_both(db, connect):
    """One session, two engines (binds by table): both connections take the request's values,
    and a second request on the same transaction renames both."""
    from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert

    from pgaudit_py import request_context

    db.execute("CREATE TABLE public.left_t (id int PRIMARY KEY); CREATE TABLE public.right_t (id int PRIMARY KEY)")
    db.execute("GRANT ALL ON public.left_t, public.right_t TO app_writer, app_maintainer")
    db.execute("SELECT audit.enable_tracking('public.left_t'); SELECT audit.enable_tracking('public.right_t')")
    meta = MetaData()
    left = Table("left_t", meta, Column("id", Integer, primary_key=True))
    right = Table("right_t", meta, Column("id", Integer, primary_key=True))
    one, two = create_engine(engine_url(db)), create_engine(engine_url(db, "app_maintainer"))
    session = audited_class()(binds={left: one, right: two})
    try:
        with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}):
            session.execute(insert(left).values(id=1))
            session.execute(insert(right).values(id=1))
        with request_context.serving({"actor_id": "bob", "tenant_id": "t2"}):
            session.execute(insert(right).values(id=2))
            session.execute(insert(left).values(id=2))
        session.commit()
    finally:
        session.close()
        one.dispose()
        two.dispose()
    rows = db.execute(
        "SELECT kind, row_after ->> 'id', actor_id, tenant_id FROM audit.events"
        " WHERE kind LIKE 'public.%_t.%' ORDER BY 1, 2"
    ).fetchall()
    assert [(r[1], r[2], r[3]) for r in rows] == [("1", "ada", "t1"), ("2", "bob", "t2")] * 2, rows


@pytest.mark.xfail(strict=True, reason="a known limit (docs/integrations.md): the hook runs before a text, not "
                   "between the statements it holds; strict, so that a change that closes it says so")
def test_a_multi_statement_text_rolling_back_to_the_previous_requests_savepoint_does_not_name_it(db):
    """A scoped_session's transaction outlives request A (ada), which made a savepoint. Request B
    (bob) sends one text of two statements: a ROLLBACK TO that savepoint and a record. The hook sets
    bob's values before the text, the rollback brings back ada's: the event must not name ada."""
    from sqlalchemy import create_engine, text

    from pgaudit_py import request_context

    engine = create_engine(engine_url(db))
    session = audited_class()(engine)
    try:
        with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}):
            session.execute(text("SELECT audit.record(kind => 'multi.view', target_id => 'a')"))
            session.execute(text("SAVEPOINT s1"))
        with request_context.serving({"actor_id": "bob", "tenant_id": "t2"}):
            session.execute(
                text("ROLLBACK TO SAVEPOINT s1; SELECT audit.record(kind => 'multi.view', target_id => 'b')")
            )
            session.commit()
    finally:
        session.close()
        engine.dispose()
    rows = actors(db, "multi.view")
    assert rows[0] == ("a", "ada", "t1")
    assert rows[1][0] == "b" and rows[1][1:] != ("ada", "t1"), rows


# ====================== 5. the idempotent retry of a quarantined first event ======================


def quarantine_key(db: psycopg.Connection, key: str) -> None:
    tamper(
        db,
        "INSERT INTO audit.quarantine SELECT i.*, now(), '54000', 'set aside' FROM audit.event_intake i"
        f" WHERE i.idempotency_key = '{key}'; DELETE FROM audit.event_intake WHERE idempotency_key = '{key}'",
    )


def test_retries_around_a_quarantined_first_event_by_tenant_content_and_role(db, connect):
    """t1's first event with key k is quarantined. t1's retry gets it back (pending, same id); t2's
    same key writes t2's own event (never handed t1's); t1 with other content, or another role, PA004."""
    writer = connect("app_writer")
    first = record(writer, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="k")
    quarantine_key(db, "k")
    again = record(writer, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="k")
    assert (again.id, again.pending, again.tenant_id) == (first.id, True, "t1")
    other_tenant = record(writer, "order.paid", tenant_id="t2", payload={"n": 1}, idempotency_key="k")
    assert other_tenant.id != first.id and other_tenant.tenant_id == "t2"
    with pytest.raises(IdempotencyConflict):
        record(writer, "order.paid", tenant_id="t1", payload={"n": 2}, idempotency_key="k")
    db.execute("CREATE ROLE app_retrier NOLOGIN IN ROLE audit_writer; GRANT app_retrier TO app_writer")
    clerk = connect("app_writer")
    clerk.execute("SET ROLE app_retrier")
    with pytest.raises(IdempotencyConflict):
        record(clerk, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="k")
    # the quarantined event's tenant set by the session, retried with the tenant named: one request
    writer.execute("SELECT set_config('pgaudit_py.tenant_id', 't3', false)")
    session_first = record(writer, "order.paid", payload={"n": 3}, idempotency_key="k3")
    quarantine_key(db, "k3")
    named = record(writer, "order.paid", tenant_id="t3", payload={"n": 3}, idempotency_key="k3")
    assert named.id == session_first.id
    seal(db)
    assert db.execute("SELECT count(*) FROM audit.events WHERE idempotency_key IN ('k', 'k3')").fetchone() == (1,)


# ====================== 6. the auditor's kit against a gzip bomb ======================

BOMB_RUNNER = r"""
import resource, runpy, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv = ["verify_archive.py", *sys.argv[2:]]
runpy.run_path(%r, run_name="__main__")
"""


def bomb_archive(db: psycopg.Connection, connect, tmp_path: Path, write_bomb) -> tuple[Path, Path]:
    """A real one-batch archive whose data object is replaced by write_bomb(path), its manifest
    rewritten to name the new object's size and hashes and signed again with the real key. The
    honest archive verifies first under the same address-space limit (the limit is no false alarm)."""
    blocks_of(db, connect, rounds=1, per=3)
    signing, public = keys_in(tmp_path)
    directory = tmp_path / "archive"
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 100, 3)")
    run = archive_due(connect("app_maintainer"), directory, signing)
    assert len(run.batches) == 1
    honest = run_offline_bounded(directory, public, 512 << 20)
    assert honest.returncode == 0, (honest.stdout[-1500:], honest.stderr[-1500:])
    batch = run.batches[0]
    data = directory / batch.data_object
    write_bomb(data)
    manifest_path = directory / batch.manifest_object
    body = json.loads(manifest_path.read_bytes())["manifest"]
    raw = data.read_bytes()
    body["gz_bytes"] = len(raw)
    body["gz_sha256"] = hashlib.sha256(raw).hexdigest()
    signed = sign(body, load_keys(signing_key=signing))
    manifest_path.write_text(canonical.dumps({"manifest": body, "signatures": signed}) + "\n")
    return directory, public


def run_offline_bounded(directory: Path, public: Path, limit: int) -> subprocess.CompletedProcess[str]:
    script = BOMB_RUNNER % str(ROOT / "pgaudit_py" / "verify_archive.py")

    def cpu() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (120, 120))

    return subprocess.run(
        [sys.executable, "-c", script, str(limit), str(directory), "--public-key", str(public)],
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=cpu,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_the_offline_verifier_stops_at_a_bomb_of_many_lines_past_the_manifests_size(db, connect, tmp_path):
    """A signed manifest says a few hundred bytes; its data object inflates to 2 GiB of short lines."""

    def write(path: Path) -> None:
        chunk = b"x\n" * (1 << 19)
        with gzip.open(path, "wb", compresslevel=9) as out:
            for _ in range(2048):
                out.write(chunk)

    directory, public = bomb_archive(db, connect, tmp_path, write)
    started = time.monotonic()
    done = run_offline_bounded(directory, public, 512 << 20)
    assert time.monotonic() - started < 120
    assert done.returncode == 1 and "PROBLEM" in done.stdout, (done.stdout[-1500:], done.stderr[-1500:])


def test_the_offline_verifier_stops_at_one_huge_line_within_bounded_memory(db, connect, tmp_path):
    """A signed manifest says a few hundred bytes; its data object inflates to one line of 1 GiB
    with no newline. The verifier must name a problem (not be killed by a 768 MiB address space)."""

    def write(path: Path) -> None:
        chunk = b"x" * (1 << 20)
        with gzip.open(path, "wb", compresslevel=6) as out:
            for _ in range(1025):
                out.write(chunk)

    directory, public = bomb_archive(db, connect, tmp_path, write)
    started = time.monotonic()
    done = run_offline_bounded(directory, public, 768 << 20)
    assert time.monotonic() - started < 120
    assert done.returncode == 1 and "PROBLEM" in done.stdout, (done.stdout[-1500:], done.stderr[-1500:])
