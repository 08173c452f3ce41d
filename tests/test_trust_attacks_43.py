"""A forty-third attacker's trial, on the read side, the verifiers, the auditor's archive kit and the
actor context: the SQL verifier (audit.verify), the Python one (chain.verify_chain) and the offline
one (verify_archive.py, a public key alone) on legitimately recorded hostile names and values (keys
differing by case or by normalisation, keys whose byte order is not their code-point order, 1.0
against 1, -0, long integers, U+2028, a database whose encoding is SQL_ASCII) and on tampering that
keeps JSON "equal" (NFC to NFD, 1.0 to 1, a key's case); removals passed off as a prune or an
archived batch (a forged prune point, a batch erased from the record and the store); an archiver
killed in the middle of writing a manifest and run again; SQLAlchemy sessions whose savepoint is
rolled back by text; asyncio tasks cancelled mid-record and mid-commit; a request that fails on a
pooled connection. Each test asserts the SAFE outcome: it passes when the product holds and fails
when the attack works."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
import time
import unicodedata
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from pgaudit_py import aio, record, seal, verify_archive
from pgaudit_py import archive as archiving
from pgaudit_py.archive_targets import open_target
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint
from pgaudit_py.cli import cli
from pgaudit_py.installer import install


def dsn(conn: psycopg.Connection, role: str | None = None) -> str:
    i = conn.info
    return f"host={i.host} port={i.port} dbname={i.dbname} user={role or i.user}"


def tamper(db: psycopg.Connection, statement: str) -> None:
    """What a superuser can do: switch the guard triggers off for the session and rewrite."""
    db.execute("SET session_replication_role = replica")
    try:
        db.execute(statement)
    finally:
        db.execute("RESET session_replication_role")


def sql_verdict(db: psycopg.Connection) -> tuple[bool, str | None]:
    row = db.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    assert row is not None
    return row[0], row[1]


def offline(directory: Path, public: Path, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = verify_archive.main([str(directory), "--public-key", str(public), *extra])
    return code, out.getvalue()


def keys_in(tmp_path: Path) -> tuple[Path, Path]:
    directory = tmp_path / "keys"
    generate_keys(directory)
    return directory / "checkpoint-ed25519.pem", directory / "checkpoint-ed25519.pub.pem"


def archive_all(db: psycopg.Connection, directory: Path, signing: Path, max_events: int = 10) -> archiving.ArchiveRun:
    db.execute("SELECT audit.set_archive_settings(interval '1 second', %s, 3)", (max_events,))
    time.sleep(0.05)
    return archiving.archive(
        db, open_target(f"file://{directory}"), load_keys(signing_key=signing), older_than=timedelta(milliseconds=1)
    )


# ====================== 1. the three verifiers on hostile, honest data ======================

NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
HOSTILE_PAYLOADS = [
    # keys that differ only in case, or only in normalisation, and an empty key
    f'{{"Key": 1, "key": 2, "KEY": 3, "": 4, "{NFC}": 5, "{NFD}": 6}}',
    # keys whose order by UTF-8 length and bytes is not their UTF-16 order (U+E000 and U+FFFF sort
    # after U+10000 in UTF-16, before it by UTF-8 length) nor their code-point order within a length
    '{"\ue000": 1, "\uffff": 2, "\u0800": 3, "\U00010000": 4, "\U0001f600": 5, "a\U0001f600": 6}',
    # numbers that are equal as JSON but not as text, and ones near and past a double's limits
    '{"a": 1.0, "b": 1, "c": -0, "d": -0.0, "e": 1e308, "f": 0.1000000000000000055511151231257827021181583404541015625,'
    ' "g": 18446744073709551616, "h": -340282366920938463463374607431768211457, "i": 1E+2, "j": 100e-2}',
    # line and paragraph separators, NEL, DEL, escapes spelled as escapes and as themselves
    '{"s": "a\u2028b\u2029c\u0085d\u007fe\\u2028\\/\\u00e9\u00e9"}',
    # nesting deep, with keys at every level
    '{"d": ' + '{"K": {"k": [' * 400 + "1.50" + "]}}" * 400 + "}",
]


def test_hostile_honest_events_verify_alike_in_sql_python_online_archive_and_offline(db, connect, tmp_path):
    """Legitimately recorded hostile payloads, actors, targets and captured column names must verify
    in all three verifiers (and the archive's online check) with no false alarm."""
    writer = connect("app_writer")
    for i, payload in enumerate(HOSTILE_PAYLOADS):
        writer.execute(
            "SELECT audit.record(kind => 'hostile.payload', actor_id => %s, target_id => %s,"
            " tenant_id => %s, payload => %s::jsonb)",
            (f"{NFD}\u2028{i}", f"t\x7f{NFC}\u0085", "Tenant\u2029", payload),
        )
    db.execute(f'''CREATE TABLE public.odd ("A" int PRIMARY KEY, "a" text, "{NFC}" text, "{NFD}" numeric,
                                           "\u2028" float8, "Ab" jsonb)''')
    db.execute("SELECT audit.enable_tracking('public.odd')")
    db.execute("INSERT INTO public.odd VALUES (1, %s, %s, 1.0, -0.0, %s::jsonb)", (NFD, NFC, HOSTILE_PAYLOADS[0]))
    db.execute(f'UPDATE public.odd SET "{NFD}" = 1, "\u2028" = 1e308')  # 1.0 -> 1 is a change to keep
    seal(db)
    assert sql_verdict(db) == (True, None)
    python = verify_chain(db)
    assert (python.ok, python.problem) == (True, None)
    signing, public = keys_in(tmp_path)
    directory = tmp_path / "archive"
    run = archive_all(db, directory, signing)
    assert run.events >= len(HOSTILE_PAYLOADS) + 2
    checked = archiving.verify_archive(db, open_target(f"file://{directory}"), load_keys(public_key=public))
    assert checked.problems == []
    code, out = offline(directory, public)
    assert code == 0, out
    assert sql_verdict(db) == (True, None) and verify_chain(db).ok


@pytest.mark.parametrize(
    "change",
    [
        ("NFC to NFD in a key", f"payload = replace(payload::text, '{NFC}', '{NFD}')::jsonb"),
        ("1.0 to 1", "payload = replace(payload::text, '\"a\": 1.0', '\"a\": 1')::jsonb"),
        ("a key's case", "payload = replace(payload::text, '\"Key\"', '\"KEY2\"')::jsonb"),
        ("1.0 to 1.00", "payload = replace(payload::text, '\"a\": 1.0', '\"a\": 1.00')::jsonb"),
        ("an actor NFD to NFC", "actor_id = normalize(actor_id, NFC)"),
    ],
)
def test_a_change_that_keeps_json_equal_or_looks_alike_is_found_by_both_verifiers(db, connect, change):
    """A superuser rewrites an event into text that reads alike (normalisation, 1 or 1.00 for 1.0) or
    a key renamed: the hash covers the stored text, so both verifiers must name the block."""
    name, assignment = change
    writer = connect("app_writer")
    writer.execute(
        "SELECT audit.record(kind => 'x.one', actor_id => %s, payload => %s::jsonb)",
        (NFD, f'{{"Key": 1, "{NFC}": 2, "a": 1.0, "d": -0.0}}'),
    )
    seal(db)
    assert sql_verdict(db) == (True, None)
    before = db.execute("SELECT payload::text, actor_id FROM audit.event_log WHERE kind = 'x.one'").fetchone()
    tamper(db, f"UPDATE audit.event_log SET {assignment} WHERE kind = 'x.one'")
    after = db.execute("SELECT payload::text, actor_id FROM audit.event_log WHERE kind = 'x.one'").fetchone()
    assert after != before, "the tamper did not change the stored event"
    ok, problem = sql_verdict(db)
    python = verify_chain(db)
    assert not ok and problem and "changed" in problem, (name, problem)
    assert not python.ok and python.bad_block == 1, (name, python.problem)


def test_an_sql_ascii_database_verifies_alike_in_sql_and_python(db):
    """PostgreSQL lets a database use SQL_ASCII, where text is bytes and a writer may store a byte
    that is not UTF-8 (in a payload, and in a tenant, which the quarantine's own event copies). The
    installer takes such a database; the two verifiers must agree on what it then holds (no crash, no
    false alarm), and the event must be somewhere: sealed or quarantined, never lost."""
    name = "t43_sql_ascii"
    db.execute(f"DROP DATABASE IF EXISTS {name}")
    db.execute(f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    i = db.info
    try:
        with psycopg.connect(
            host=i.host, port=i.port, user=i.user, dbname=name, autocommit=True, options="-c client_encoding=UTF8"
        ) as conn:
            try:
                install(conn)
            except Exception:  # a refusal to install where text is not checked is safe too
                return
            conn.execute(
                "SELECT 1 FROM audit.record(kind => 'bytes.stored',"
                " tenant_id => convert_from('\\x41ff'::bytea, 'SQL_ASCII'),"
                " payload => jsonb_build_object('s', convert_from('\\xff41'::bytea, 'SQL_ASCII')))"
            )
            for _ in range(4):
                seal(conn)
            kept = conn.execute(
                "SELECT (SELECT count(*) FROM audit.event_log WHERE kind = 'bytes.stored')"
                " + (SELECT count(*) FROM audit.quarantine WHERE kind = 'bytes.stored')"
            ).fetchone()
            assert kept == (1,)
            sql_ok = conn.execute("SELECT ok FROM audit.verify()").fetchone()
            try:
                python_ok: object = verify_chain(conn).ok
            except Exception as exc:  # a verifier that cannot read honest data is a false alarm
                python_ok = f"raised {type(exc).__name__}: {exc}"
            assert (sql_ok, python_ok) == ((True,), True)
    finally:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ====================== 2. removals passed off as a prune or an archive ======================


def _three_blocks(db: psycopg.Connection, connect) -> None:
    writer = connect("app_writer")
    for r in range(3):
        for i in range(3):
            record(writer, "order.paid", target_id=f"o{r}-{i}", payload={"r": r})
        seal(db)
    assert db.execute("SELECT count(*) FROM audit.blocks").fetchone() == (3,)


FORGE_PRUNE = (
    "DELETE FROM audit.event_log WHERE seq <= (SELECT last_seq FROM audit.blocks WHERE block_no = 1);"
    " INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
    " SELECT block_no, block_hash, last_seq, now(), 'app_maintainer' FROM audit.blocks WHERE block_no = 1"
)


def test_events_deleted_under_a_forged_prune_point_are_found_by_the_verifiers(db, connect):
    """A superuser deletes the oldest block's events and writes the prune point a prune would have:
    no prune ran (no audit.pruned event is in the chain, nothing was older than any retention). Both
    verifiers must not report the chain intact: a removal must be visible."""
    _three_blocks(db, connect)
    tamper(db, FORGE_PRUNE)
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.pruned'").fetchone() == (0,)
    ok, problem = sql_verdict(db)
    python = verify_chain(db)
    assert (ok, python.ok) == (False, False), (problem, python.problem)


def test_a_checkpoint_signed_before_a_forged_prune_does_not_hold(db, connect, tmp_path):
    """The checkpoint signs pruned_through (null: nothing was pruned when it was signed). After the
    oldest events are deleted under a forged prune point, `pgaudit verify --checkpoint` must fail:
    the signed history up to the checkpoint's block is no longer all there, and no prune says why."""
    _three_blocks(db, connect)
    signing, public = keys_in(tmp_path)
    document = make_checkpoint(db, load_keys(signing_key=signing))
    assert document["checkpoint"]["pruned_through"] is None
    path = tmp_path / "checkpoint.json"
    from pgaudit_py import canonical

    path.write_text(canonical.dumps(document) + "\n")
    tamper(db, FORGE_PRUNE)
    done = CliRunner().invoke(cli, ["verify", "--checkpoint", str(path), "--public-key", str(public), "--dsn", dsn(db)])
    assert done.exit_code != 0, done.output


def test_an_archived_batch_erased_from_the_record_and_the_store_is_found(db, connect, tmp_path):
    """The last archived batch's events left the log with delete_archived; a superuser then erases
    its archive_batches row and its two objects. Its events are now in no log and no archive, and
    the chain still holds the audit.archived event that names the batch: the database's archive
    check (or verify) must say something is missing."""
    _three_blocks(db, connect)
    signing, public = keys_in(tmp_path)
    directory = tmp_path / "archive"
    run = archive_all(db, directory, signing, max_events=3)
    assert len(run.batches) == 3
    seal(db)  # the archiver's own events, sealed: the chain names every batch
    last = run.batches[-1]
    tamper(db, f"DELETE FROM audit.archive_batches WHERE batch_id = '{last.batch_id}'")
    (directory / last.data_object).unlink()
    (directory / last.manifest_object).unlink()
    checked = archiving.verify_archive(db, open_target(f"file://{directory}"), load_keys(public_key=public))
    ok, problem = sql_verdict(db)
    assert checked.problems or not ok, ("nothing missed", problem)


# ====================== 3. an archiver killed while writing a manifest ======================

KILLED_ARCHIVER = r"""
import io, os, shutil, sys
from pathlib import Path
from datetime import timedelta
import psycopg
from pgaudit_py import archive as archiving
from pgaudit_py.archive_targets import open_target
from pgaudit_py.checkpoint import load_keys

real = shutil.copyfileobj
def half(src, dst, *args):
    if isinstance(src, io.BytesIO):  # the manifest's upload (the data object's comes from a file)
        data = src.read()
        dst.write(data[: len(data) // 2])
        dst.flush()
        os.fsync(dst.fileno())
        os._exit(9)
    return real(src, dst, *args)
shutil.copyfileobj = half
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    archiving.archive(conn, open_target(sys.argv[2]), load_keys(signing_key=Path(sys.argv[3])),
                      older_than=timedelta(milliseconds=1))
"""


def test_an_archiver_killed_mid_manifest_then_run_again_leaves_an_archive_the_auditor_accepts(db, connect, tmp_path):
    """kill -9 while the first manifest is half written: the data object is stored, the manifest
    only a file aside. New events are sealed meanwhile. The re-run must complete the same batch and
    the rest; then the database, the online check and the offline verifier all agree, with nothing
    but batches in the directory and every event either archived or in the log."""
    _three_blocks(db, connect)
    signing, public = keys_in(tmp_path)
    directory = tmp_path / "archive"
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 3, 3)")
    time.sleep(0.05)
    done = subprocess.run(
        [sys.executable, "-c", KILLED_ARCHIVER, dsn(db, "app_maintainer"), f"file://{directory}", str(signing)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 9, done.stderr[-2000:]
    names = sorted(p.name for p in directory.iterdir())
    assert any(n.startswith(".part-") and ".manifest.json" in n for n in names), names  # the kill landed
    assert db.execute("SELECT state FROM audit.archive_batches").fetchall() == [("planned",)]
    record(connect("app_writer"), "order.late", payload={"after": "crash"})
    seal(db)
    total = db.execute("SELECT max(last_seq) FROM audit.blocks").fetchone()[0]
    maintainer = connect("app_maintainer")
    archiving.archive(
        maintainer,
        open_target(f"file://{directory}"),
        load_keys(signing_key=signing),
        older_than=timedelta(milliseconds=1),
    )
    names = sorted(p.name for p in directory.iterdir())
    assert not [n for n in names if not n.startswith("blocks-")], names
    archived = db.execute(
        "SELECT coalesce(sum(event_count), 0) FROM audit.archive_batches WHERE state = 'deleted'"
    ).fetchone()[0]
    in_log = db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    assert archived + in_log == total
    assert sql_verdict(db) == (True, None) and verify_chain(db).ok
    checked = archiving.verify_archive(db, open_target(f"file://{directory}"), load_keys(public_key=public))
    assert checked.problems == []
    code, out = offline(directory, public)
    assert code == 0, out


# ====================== 4. the auditor's kit: another database's archive ======================


def test_an_archive_of_another_database_signed_with_the_same_key_fails_this_databases_checkpoint(
    db, connect, fresh_database, tmp_path
):
    """An operator signs two installations with one key. The auditor holds a checkpoint of the one
    under audit; the operator hands over the other's archive (whole: its manifest chain is intact).
    The offline verifier must not verify it against this database's checkpoint."""
    signing, public = keys_in(tmp_path)
    _three_blocks(db, connect)
    checkpoint = make_checkpoint(db, load_keys(signing_key=signing))
    from pgaudit_py import canonical

    cp = tmp_path / "checkpoint.json"
    cp.write_text(canonical.dumps(checkpoint) + "\n")
    own = tmp_path / "own"
    archive_all(db, own, signing, max_events=3)
    assert offline(own, public, "--checkpoint", str(cp))[0] == 0  # the honest archive: no false alarm
    other = fresh_database("t43_other")
    install(other)
    for r in range(3):
        for i in range(3):
            other.execute("SELECT audit.record(kind => 'order.paid', target_id => %s)", (f"o{r}-{i}",))
        seal(other)
    foreign = tmp_path / "foreign"
    archive_all(other, foreign, signing, max_events=3)
    other.close()
    assert offline(foreign, public)[0] == 0  # a whole archive, correctly signed
    code, out = offline(foreign, public, "--checkpoint", str(cp))
    assert code == 1 and "PROBLEM" in out, out


# ====================== 5. the actor context ======================


def _audited_session(db):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from pgaudit_py.integrations.sqlalchemy import audit_sessions

    class AuditedSession(Session):
        pass

    audit_sessions(AuditedSession)
    engine = create_engine(f"postgresql+psycopg://app_writer@{db.info.host}:{db.info.port}/{db.info.dbname}")
    return AuditedSession, engine


@pytest.mark.parametrize("then", ["another request", "no request"])
def test_a_textual_rollback_to_savepoint_does_not_bring_back_the_previous_requests_actor(db, then):
    """A scoped_session's transaction outlives request A (ada), which made a savepoint with text (as
    code written for psycopg does). Request B's first statement sets bob's values inside it; B then
    rolls back to the savepoint with text, which undoes bob's values and brings ada's back. The hook
    still believes it holds bob's: B's next event (or a job's, outside any request) must not name ada."""
    from sqlalchemy import text

    from pgaudit_py import request_context

    session_class, engine = _audited_session(db)
    record_sql = text("SELECT audit.record(kind => 'order.viewed', target_id => :t)")
    session = session_class(engine)
    try:
        with request_context.serving({"actor_id": "ada", "tenant_id": "t1"}):
            session.execute(record_sql, {"t": "o1"})
            session.execute(text("SAVEPOINT s1"))
        later = {"actor_id": "bob", "tenant_id": "t2"} if then == "another request" else None
        with request_context.serving(later) if later else contextlib.nullcontext():
            session.execute(text("SELECT 1"))  # the request's values, set inside the savepoint
            session.execute(text("ROLLBACK TO SAVEPOINT s1"))
            session.execute(record_sql, {"t": "o2"})
            session.commit()
    finally:
        session.close()
        engine.dispose()
    rows = db.execute(
        "SELECT actor_id, tenant_id FROM audit.events WHERE kind = 'order.viewed' AND target_id = 'o2'"
    ).fetchall()
    expected = ("bob", "t2") if then == "another request" else ("app_writer", None)
    assert rows == [expected], rows


def test_a_request_that_fails_mid_transaction_leaves_its_pooled_connection_naming_nobody(db):
    """Request A (alice) records inside request_context.transaction_async, then raises. Its pooled
    connection (the pool's only one) serves B (bob) at once and then a job outside any request: each
    event names its own actor, and alice's failed transaction leaves no event."""
    import httpx
    from psycopg_pool import AsyncConnectionPool
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from pgaudit_py import request_context
    from pgaudit_py.integrations.asgi import AuditContextMiddleware

    pool = AsyncConnectionPool(dsn(db, "app_writer"), min_size=1, max_size=1, open=False)

    async def endpoint(request: Request) -> PlainTextResponse:
        async with pool.connection() as conn, request_context.transaction_async(conn):
            await conn.execute("SELECT audit.record(kind => 'req.work', target_id => %s)", (request.path_params["t"],))
            if request.path_params["t"] == "fail":
                raise RuntimeError("the handler fails after its write")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/{t}", endpoint)])
    app.add_middleware(
        AuditContextMiddleware,
        context=lambda r: {"actor_id": r.headers.get("x-user"), "tenant_id": r.headers.get("x-tenant")},
    )

    async def run() -> None:
        await pool.open()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            failed, fine = await asyncio.gather(
                client.get("/fail", headers={"x-user": "alice", "x-tenant": "a"}),
                client.get("/b", headers={"x-user": "bob", "x-tenant": "b"}),
            )
            assert failed.status_code == 500 and fine.status_code == 200
        async with pool.connection() as conn:
            await conn.execute("SELECT audit.record(kind => 'req.work', target_id => 'job')")
        await pool.close()

    asyncio.run(run())
    rows = db.execute(
        "SELECT target_id, actor_id, tenant_id FROM audit.events WHERE kind = 'req.work' ORDER BY target_id"
    ).fetchall()
    assert rows == [("b", "bob", "b"), ("job", "app_writer", None)], rows


# ====================== 6. asyncio cancellation ======================


@pytest.mark.parametrize("where", ["mid-statement", "mid-commit"])
def test_a_task_cancelled_mid_record_or_mid_commit_writes_nothing_and_leaves_no_actor(db, where):
    """aio.audit_context(alice) records, then the task is cancelled while a statement runs, or while
    COMMIT runs a deferred trigger. Nothing of the block may be written (not the event, not the row),
    the connection must be usable and idle, and the next event on it must name the database role."""
    db.execute("""CREATE TABLE public.slow (id int);
                  CREATE FUNCTION public.sleepy() RETURNS trigger LANGUAGE plpgsql AS
                  $$ BEGIN PERFORM pg_sleep(20); RETURN NULL; END $$;
                  CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON public.slow
                      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.sleepy();
                  GRANT ALL ON public.slow TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.slow')")
    reached = []

    async def run() -> tuple[object, object]:
        conn = await psycopg.AsyncConnection.connect(dsn(db, "app_writer"), autocommit=True)
        try:

            async def block() -> None:
                async with aio.audit_context(conn, actor_id="alice", tenant_id="acme"):
                    await aio.record(conn, "cancel.me", target_id="x")
                    await conn.execute("INSERT INTO public.slow VALUES (1)")
                    reached.append("inserted")
                    if where == "mid-statement":
                        await conn.execute("SELECT pg_sleep(20)")

            task = asyncio.create_task(block())
            await asyncio.sleep(1.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
            status = conn.info.transaction_status
            await aio.record(conn, "after.cancel")
            return status, conn.closed
        finally:
            await conn.close()

    started = time.monotonic()
    status, closed = asyncio.run(run())
    assert time.monotonic() - started < 15, "the cancellation did not stop the statement"
    assert reached == ["inserted"]
    assert (status, closed) == (psycopg.pq.TransactionStatus.IDLE, False)
    assert db.execute(
        "SELECT count(*) FROM audit.events WHERE kind = 'cancel.me' OR kind LIKE 'public.slow.%'"
    ).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM public.slow").fetchone() == (0,)
    assert db.execute(
        "SELECT actor_type, actor_id, tenant_id FROM audit.events WHERE kind = 'after.cancel'"
    ).fetchall() == [("db_role", "app_writer", None)]
