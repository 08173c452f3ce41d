"""Sealing: order, one sealer at a time, late commits, and gap-free forward paging."""

from __future__ import annotations

import random
import threading
import time
from contextlib import suppress

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from pgaudit_py import InvalidArgument, audit_context, enable_tracking, list_events, record, seal, seal_status
from pgaudit_py.chain import verify_chain
from pgaudit_py.errors import SealConflict
from pgaudit_py.installer import install
from pgaudit_py.installer import status as install_status
from pgaudit_py.sealing import seal_continuously


def test_seal_moves_committed_events_in_order(db, connect, counts):
    writer = connect("app_writer")
    ids = [record(writer, f"e.n{i}").id for i in range(5)]  # type: ignore[union-attr]
    assert seal(db, 3).__dict__ == {"sealed": 3, "first_seq": 1, "last_seq": 3, "block_no": 1}
    assert counts() == (2, 3)
    assert seal(db).__dict__ == {"sealed": 2, "first_seq": 4, "last_seq": 5, "block_no": 2}
    assert seal(db).__dict__ == {"sealed": 0, "first_seq": None, "last_seq": None, "block_no": None}
    rows = db.execute("SELECT seq, id, sealed_at IS NOT NULL FROM audit.event_log ORDER BY seq").fetchall()
    assert rows == [(i + 1, ids[i], True) for i in range(5)]


def test_late_commit_gets_a_larger_seq_and_holds_back_nobody(db, connect):
    slow = connect("app_writer", autocommit=False)
    fast = connect("app_writer")
    late = record(slow, "slow.event")
    record(fast, "fast.one")
    assert seal(db).__dict__ == {"sealed": 1, "first_seq": 1, "last_seq": 1, "block_no": 1}
    record(fast, "fast.two")
    assert seal(db).__dict__ == {"sealed": 1, "first_seq": 2, "last_seq": 2, "block_no": 2}
    slow.commit()
    assert seal(db).__dict__ == {"sealed": 1, "first_seq": 3, "last_seq": 3, "block_no": 3}
    assert db.execute("SELECT seq FROM audit.event_log WHERE id = %s", (late.id,)).fetchone() == (3,)  # type: ignore[union-attr]
    assert db.execute("SELECT ok, blocks_checked, events_checked FROM audit.verify()").fetchone() == (True, 3, 3)
    assert verify_chain(db).ok


MOVES = ["ALTER SEQUENCE audit.event_intake_intake_id_seq RESTART WITH 1",
         "ALTER TABLE audit.event_intake ALTER COLUMN intake_id RESTART WITH 1",
         "SELECT setval('audit.event_intake_intake_id_seq', 1)",
         "ALTER SEQUENCE audit.event_intake_intake_id_seq OWNED BY audit.event_intake.intake_id",
         "ALTER SEQUENCE audit.event_intake_intake_id_seq OWNER TO audit_owner",
         "GRANT UPDATE ON SEQUENCE audit.event_intake_intake_id_seq TO audit_owner"]


@pytest.mark.parametrize("role", ["audit_owner", "app_maintainer", "app_writer"])
@pytest.mark.parametrize("move", MOVES)
def test_no_role_of_the_package_moves_the_intakes_ids(db, role, move):
    """The intake's ids are the order events are sealed in: their sequence is the sealer role's, which
    nobody may act as. The owner role, which owns the intake, may not move it back (a later write
    would be sealed first), nor take it over."""
    before = db.execute("SELECT last_value, is_called FROM audit.event_intake_intake_id_seq").fetchone()
    db.execute(f"SET ROLE {role}")
    try:
        with suppress(psycopg.Error):  # refused; a GRANT by whoever holds no grant option only warns
            db.execute(move)
        db.rollback()
        db.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("SELECT setval('audit.event_intake_intake_id_seq', 1)")
    finally:
        db.rollback()
        db.execute("RESET ROLE")
    assert db.execute("SELECT last_value, is_called FROM audit.event_intake_intake_id_seq").fetchone() == before
    assert install_status(db).problems == []


def test_an_intake_sequence_moved_back_below_a_pending_event_is_refused_and_named(db, connect):
    """A superuser may still move the intake's ids back: a later write then takes a lower id than a
    pending earlier one. seal() seals none of them (it would seal the later first), status names it,
    and once the sequence stands past them again, they are sealed in id order."""
    writer = connect("app_writer")
    db.execute("SELECT nextval('audit.event_intake_intake_id_seq')")  # id 1, as a rolled-back write takes it
    first = record(writer, "e.first")  # id 2
    db.execute("ALTER SEQUENCE audit.event_intake_intake_id_seq RESTART WITH 1")
    record(writer, "e.second")
    with pytest.raises(SealConflict, match="moved back below pending event"):
        seal(db)
    db.rollback()
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (2,)
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,)
    assert [p for p in install_status(db).problems if "id sequence stands at 1" in p] == [
        "the intake's id sequence stands at 1, below an event pending in the intake, which seal() refuses to seal "
        "out of order: it was moved (ALTER SEQUENCE ... RESTART)"]
    db.execute("SELECT setval('audit.event_intake_intake_id_seq', (SELECT max(intake_id) FROM audit.event_intake))")
    assert seal(db).sealed == 2  # in the order the ids give, once the maintainer asks for it
    assert db.execute("SELECT kind FROM audit.event_log ORDER BY seq").fetchall() == [("e.second",), ("e.first",)]
    assert db.execute("SELECT id FROM audit.event_log WHERE kind = 'e.first'").fetchone() == (first.id,)  # type: ignore[union-attr]
    assert install_status(db).problems == []


def test_an_intake_sequence_moved_near_its_end_is_named(db, connect):
    """Moved past 2^62 (no honest write reaches it), every captured write would soon fail: named."""
    assert install_status(db).problems == []
    db.execute("ALTER SEQUENCE audit.event_intake_intake_id_seq RESTART WITH 4611686018427387905")
    assert install_status(db).problems == [
        "the intake's id sequence stands at 4611686018427387905, near its end, where captured writes will fail: it "
        "was moved (ALTER SEQUENCE ... RESTART)"]


@pytest.mark.parametrize(("in_its_place", "pending"), [
    ("", True), ("CREATE TABLE audit.event_intake_intake_id_seq (last_value bigint)", True), ("", False)])
def test_an_intake_sequence_dropped_by_the_owner_role_is_named_and_made_again_as_the_docs_say(db, connect,
                                                                                               in_its_place, pending):
    """The owner role owns the schema and may drop the sealer's sequence (CASCADE: the intake's
    default goes too), and put something else of its name there. Writes, seal() and the installer
    fail; status names it (it read the sequence by name, and failed itself). Made again as
    docs/installer.md says (from 1 when nothing is pending), the installer hands it back, and the
    events are sealed in order."""
    writer = connect("app_writer")
    record(writer, "e.0")
    db.execute("SELECT setval('audit.event_intake_intake_id_seq', 39998)")  # past the intake's first slot (16384 ids)
    record(writer, "e.39999")
    if not pending:
        seal(db)
    db.execute(f"SET ROLE audit_owner; DROP SEQUENCE audit.event_intake_intake_id_seq CASCADE; {in_its_place}")
    db.execute("RESET ROLE")
    with pytest.raises(psycopg.errors.IntegrityError):  # no id: no partition of the intake takes it
        record(writer, "e.lost")
    writer.rollback()
    what = "missing" if not in_its_place else "not a sequence"
    assert [p for p in install_status(db).problems if "id sequence" in p] == [
        f"the intake's id sequence audit.event_intake_intake_id_seq is {what}: captured writes, seal() and the "
        "installer fail (docs/installer.md says how to make it again)"]

    start = db.execute("SELECT coalesce(max(intake_id) + 1, 1) FROM audit.event_intake").fetchone()[0]
    db.execute(f"""SET ROLE audit_owner;
                   DROP TABLE IF EXISTS audit.event_intake_intake_id_seq;
                   CREATE SEQUENCE audit.event_intake_intake_id_seq AS bigint START {start} CACHE 1 NO CYCLE;
                   ALTER TABLE audit.event_intake ALTER COLUMN intake_id
                       SET DEFAULT nextval('audit.event_intake_intake_id_seq')""")
    db.execute("RESET ROLE")
    install(db)
    for n in range(3):
        record(writer, f"e.after.{n}")
        while seal(db).sealed:
            pass
    assert db.execute("SELECT kind FROM audit.event_log ORDER BY seq").fetchall() == [
        ("e.0",), ("e.39999",), ("e.after.0",), ("e.after.1",), ("e.after.2",)]
    assert db.execute("SELECT relowner::regrole::text FROM pg_class"
                      " WHERE oid = 'audit.event_intake_intake_id_seq'::regclass").fetchone() == ("audit_sealer",)
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    assert install_status(db).problems == []


def test_writers_do_not_wait_for_an_open_sealing_transaction(db, connect, counts):
    """Hashing happens in the sealer: while a seal() holds the chain head, uncommitted, a writer's
    record() and a captured write (and their commit) take no lock it holds. A lock_timeout far
    below the sealing transaction's life turns any wait into an error."""
    db.execute("""CREATE TABLE public.items (id int PRIMARY KEY, name text);
                  ALTER TABLE public.items OWNER TO app_maintainer;
                  GRANT SELECT, INSERT, UPDATE ON public.items TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.items")
    writer = connect("app_writer", autocommit=False, options="-c lock_timeout=200ms -c statement_timeout=2s")
    record(writer, "before.seal", idempotency_key="k-before")
    writer.execute("INSERT INTO items VALUES (1, 'first')")
    writer.commit()

    sealer = connect("app_maintainer", autocommit=False)
    assert seal(sealer).sealed == 3  # tracking_enabled, before.seal, the insert: left uncommitted
    other_sealer = connect("app_maintainer", options="-c lock_timeout=200ms")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        seal(other_sealer)  # the chain head is held
    started = time.monotonic()
    with audit_context(writer, actor_id="alice"):
        record(writer, "during.seal", payload={"n": 1}, idempotency_key="k-during")
        writer.execute("INSERT INTO items VALUES (2, 'second')")
        writer.execute("UPDATE items SET name = 'renamed' WHERE id = 1")
    writer.commit()
    assert time.monotonic() - started < 2
    # Committed; the first three still show too, their move into the log being uncommitted.
    assert [k for (k,) in db.execute("SELECT kind FROM audit.event_intake ORDER BY intake_id")] == [
        "audit.tracking_enabled", "before.seal", "public.items.insert",
        "during.seal", "public.items.insert", "public.items.update"]

    sealer.commit()
    assert seal(db).__dict__ == {"sealed": 3, "first_seq": 4, "last_seq": 6, "block_no": 2}
    assert counts() == (0, 6)
    assert db.execute("SELECT ok, events_checked FROM audit.verify()").fetchone() == (True, 6)


def test_one_sealer_at_a_time(db, connect):
    record(connect("app_writer"), "a.b")
    first = connect("app_maintainer", autocommit=False)
    second = connect("app_maintainer", autocommit=False)
    assert seal(first).sealed == 1
    second.execute("SET lock_timeout = '200ms'")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        seal(second)
    second.rollback()
    first.commit()
    assert seal(second).sealed == 0  # saw the first sealer's work: nothing left, seq not reused
    second.commit()
    assert db.execute("SELECT last_seq FROM audit.seal_state").fetchone() == (1,)


def sealed_nothing(db) -> None:
    """The one pending event is still pending: no seq given, no block made."""
    assert db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log),"
                      " (SELECT count(*) FROM audit.blocks), (SELECT last_seq FROM audit.seal_state)").fetchone() == (
        1, 0, 0, 0)


def test_seal_refuses_snapshot_isolation(db, connect):
    record(connect("app_writer"), "a.b")
    maintainer = connect("app_maintainer", autocommit=False)
    maintainer.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    with pytest.raises(InvalidArgument, match="must run at READ COMMITTED"):
        seal(maintainer)
    maintainer.rollback()
    sealed_nothing(db)


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_seal_begins_its_own_transaction_at_read_committed_whatever_the_default(db, connect, level):
    """A role or database whose default isolation is another (trial 76): seal() on an autocommit
    connection begins its transaction at READ COMMITTED, and so does seal_continuously's every round;
    on a connection that is not autocommit it begins the caller's transaction so; a level the caller
    chose is refused, never changed (trial 77: it was made READ COMMITTED behind the caller's back)."""
    record(connect("app_writer"), "a.b")
    maintainer = connect("app_maintainer")
    maintainer.execute("SELECT set_config('default_transaction_isolation', %s, false)", [level])
    assert seal(maintainer).sealed == 1
    assert maintainer.info.transaction_status == TransactionStatus.IDLE
    assert maintainer.execute("SHOW transaction_isolation").fetchone() == (level,)  # its own transactions as before
    record(connect("app_writer"), "a.c")
    stop = threading.Event()
    seal_continuously(maintainer, stop, interval=0.01, on_round=lambda result: stop.set())
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind IN ('a.b', 'a.c')").fetchone() == (2,)
    theirs = connect("app_maintainer", autocommit=False)
    theirs.execute("SELECT set_config('default_transaction_isolation', %s, false)", [level])
    theirs.commit()
    record(connect("app_writer"), "a.d")
    assert seal(theirs).sealed == 1
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (1,)  # not committed yet: theirs
    theirs.commit()
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    record(connect("app_writer"), "a.e")
    theirs.isolation_level = psycopg.IsolationLevel.SERIALIZABLE  # a level they chose: not changed
    with pytest.raises(InvalidArgument, match="must run at READ COMMITTED"):
        seal(theirs)
    theirs.rollback()
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (1,)


@pytest.mark.parametrize("max_events", [0, -1, 1000001])
def test_seal_refuses_bad_batch_size(db, connect, max_events):
    record(connect("app_writer"), "a.b")
    with pytest.raises(InvalidArgument, match="max_events must be between 1 and 1000000"):
        seal(connect("app_maintainer"), max_events)
    sealed_nothing(db)


def test_writer_and_reader_cannot_seal(db, connect):
    record(connect("app_writer"), "a.b")
    for role in ("app_writer", "app_reader"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            seal(connect(role))
    sealed_nothing(db)


def test_seal_status_reports_pending_and_lag(db, connect):
    writer = connect("app_writer")
    record(writer, "a.b")
    record(writer, "a.c")
    status = seal_status(connect("app_reader"))
    assert status.pending == 2 and status.last_seq == 0 and status.last_sealed_at is None
    assert status.lag.total_seconds() >= 0
    seal(db)
    status = seal_status(db)
    assert (status.pending, status.last_seq, status.lag.total_seconds()) == (0, 2, 0)
    assert status.last_sealed_at is not None


def test_forward_paging_sees_every_event_once_under_concurrent_writers_and_late_commits(db, connect):
    """Writers (some holding transactions open across seal rounds), a running sealer and a reader
    paging forward with since_seq: the reader must see every committed event exactly once."""
    stop = threading.Event()
    sealer_conn = connect("app_maintainer")
    sealer = threading.Thread(target=seal_continuously, args=(sealer_conn, stop),
                              kwargs={"interval": 0.005, "max_events": 7})
    written: list[str] = []
    lock = threading.Lock()

    def write(worker: int) -> None:
        conn = connect("app_writer", autocommit=False)
        rng = random.Random(worker)
        for batch in range(15):
            ids = [str(record(conn, f"w{worker}.b{batch}").id) for _ in range(rng.randint(1, 4))]  # type: ignore[union-attr]
            threading.Event().wait(rng.random() * 0.02)  # stay open across sealing rounds
            conn.commit()
            with lock:
                written.extend(ids)

    seen: list[tuple[int, str]] = []
    reader = connect("app_reader")

    def page_forward() -> None:
        after = 0
        while True:
            page = list_events(reader, since_seq=after, page_size=5)
            seen.extend((e.seq, str(e.id)) for e in page)  # type: ignore[misc]
            after = page[-1].seq if page else after  # type: ignore[assignment]
            if not page and stop.is_set():
                return

    sealer.start()
    writers = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    pager = threading.Thread(target=page_forward)
    for t in writers:
        t.start()
    pager.start()
    for t in writers:
        t.join(60)
    while seal_status(db).pending:
        threading.Event().wait(0.01)
    stop.set()
    sealer.join(10)
    pager.join(30)
    seqs = [s for s, _ in seen]
    assert seqs == list(range(1, len(written) + 1))
    assert sorted(i for _, i in seen) == sorted(written)
    # Many blocks, sealed while writers held transactions open: the chain verifies, in SQL and in Python.
    assert db.execute("SELECT ok, events_checked FROM audit.verify()").fetchone() == (True, len(written))
    python_check = verify_chain(db)
    assert (python_check.ok, python_check.events_checked) == (True, len(written))


def test_seal_backlog_commits_round_by_round(db, connect, counts):
    writer = connect("app_writer")
    for i in range(5):
        record(writer, f"e.n{i}")
    connect("app_maintainer").execute("CALL audit.seal_backlog(2)")
    assert counts() == (0, 5)
    assert db.execute("SELECT last_seq FROM audit.seal_state").fetchone() == (5,)


def test_scheduling_needs_pg_cron(db):
    from pgaudit_py import InstallError
    from pgaudit_py.sealing import schedule_sealing

    with pytest.raises(InstallError, match="pg_cron is not installed in this database"):
        schedule_sealing(db)


def test_pg_cron_job_is_scheduled_once_and_its_command_seals():
    from glob import glob

    from pgaudit_py import install
    from pgaudit_py.sealing import schedule_sealing
    from pgaudit_py.tempdb import TemporaryCluster

    if not glob("/usr/share/postgresql/*/extension/pg_cron.control"):
        pytest.skip("pg_cron is not installed on this machine (.ci/run installs it)")
    settings = {"shared_preload_libraries": "pg_cron", "cron.database_name": "postgres"}
    with TemporaryCluster.start(settings=settings) as cluster, \
            psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        install(conn)
        conn.execute("CREATE EXTENSION pg_cron")
        first = schedule_sealing(conn)
        assert schedule_sealing(conn) == first
        jobs = conn.execute("SELECT jobname, schedule, command, database FROM cron.job").fetchall()
        assert jobs == [("pgaudit_py seal audit", "* * * * *", "CALL \"audit\".seal_backlog(10000)", "postgres")]
        record(conn, "cron.event")
        conn.execute(jobs[0][2])
        assert conn.execute("SELECT count(*) FROM audit.event_log").fetchone() == (1,)
