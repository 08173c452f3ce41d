"""A forty-ninth attacker's trial: does the audit log lose nothing, duplicate nothing and keep its
hash chain whole under concurrency and transaction shapes earlier trials did not try?

Variants: two-phase commit (a writer that PREPAREs after record() or a captured write while the
sealer seals and the intake rotates, then COMMIT or ROLLBACK PREPARED much later; the worker beside
it; a maintainer's seal() that prepares); long writers at READ COMMITTED, REPEATABLE READ and
SERIALIZABLE that write before and after several seals and rotations; commit order unlike intake
order; two sealers at once, a worker and a manual sealer, a sealer cancelled (pg_cancel_backend,
statement_timeout) while paused at each of its steps, the caller's lock_timeout; subtransactions
(savepoints rolled back, PL/pgSQL exception blocks, over 64 subtransactions, a writer writing in
many subtransactions while sealers run); COPY, INSERT ... ON CONFLICT DO UPDATE and a partitioned
tracked table inside prepared and long transactions; cursors WITH HOLD and open cursors over the
intake and the log; the intake's id sequence out of a writer's reach and near its end; a writer's
session settings.

After each, the intake is sealed until empty and the test asserts: every committed write has
exactly one event in audit.events (sealed), nothing of rolled-back work is there, nothing is in
the quarantine, seq has no gap and no duplicate, and both verifiers (audit.verify in SQL and
pgaudit_py.chain.verify_chain) find the chain intact.

Everything runs in a cluster of this module's own, with max_prepared_transactions set (the suite's
cluster has none), in a fresh database per test. Each test asserts the SAFE outcome: it passes when
the product holds and fails when the attack works.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress

import psycopg
import pytest

from pgaudit_py import enable_tracking, record, seal
from pgaudit_py.chain import verify_chain
from pgaudit_py.installer import install
from pgaudit_py.sealing import seal_continuously
from pgaudit_py.tempdb import TemporaryCluster
from pgaudit_py.worker import run_worker

RANGE = 16384  # intake ids per partition of the intake (migrations/0014_intake_rotation.sql)
WRITER, READER, MAINT, OWNER = "t49_writer", "t49_reader", "t49_maint", "t49_owner"
ROLES = {WRITER: "audit_writer", READER: "audit_reader", MAINT: "audit_maintainer", OWNER: None}


# ============================== the cluster, databases, connections ==============================


@pytest.fixture(scope="module")
def cl() -> Iterator[TemporaryCluster]:
    with TemporaryCluster.start(settings={"max_prepared_transactions": "20", "synchronous_commit": "on"}) as started:
        with psycopg.connect(started.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE t49_template")
        try:
            with psycopg.connect(started.dsn("t49_template"), autocommit=True) as admin:
                install(admin)
                for role, group in ROLES.items():
                    admin.execute(f"CREATE ROLE {role} LOGIN")
                    if group:
                        admin.execute(f"GRANT {group} TO {role}")
                admin.execute(f"GRANT {OWNER} TO {MAINT}")  # the maintainer may track the owner's tables
                admin.execute(f"GRANT CREATE ON SCHEMA public TO {OWNER}")
            yield started
        finally:
            with psycopg.connect(started.dsn(), autocommit=True) as admin:
                for name, in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 't49_%'").fetchall():
                    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
                for role in ROLES:
                    admin.execute(f"DROP ROLE IF EXISTS {role}")


class Db:
    """One test's database: connections as any role, closed (and prepared transactions rolled back)
    after the test."""

    def __init__(self, cluster: TemporaryCluster, name: str) -> None:
        self.cluster, self.name = cluster, name
        self.opened: list[psycopg.Connection] = []
        self.admin = self.conn()

    def conn(self, role: str | None = None, autocommit: bool = True, **kwargs: object) -> psycopg.Connection:
        c = psycopg.connect(self.cluster.dsn(self.name, role), autocommit=autocommit, **kwargs)  # type: ignore[arg-type]
        self.opened.append(c)
        return c

    def dsn(self, role: str | None = None) -> str:
        return self.cluster.dsn(self.name, role)


@pytest.fixture
def d(cl: TemporaryCluster) -> Iterator[Db]:
    name = f"t49_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cl.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE t49_template")
    db = Db(cl, name)
    try:
        yield db
    finally:
        for c in db.opened:
            with suppress(psycopg.Error):
                c.close()
        with psycopg.connect(cl.dsn(), autocommit=True) as admin:
            for gid, in admin.execute("SELECT gid FROM pg_prepared_xacts WHERE database = %s", (name,)).fetchall():
                with psycopg.connect(cl.dsn(name), autocommit=True) as there:
                    there.execute(f"ROLLBACK PREPARED '{gid}'")
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


# ============================== helpers ==============================


def items_table(d: Db, name: str = "items", owner: str = MAINT) -> str:
    """public.<name> (id int primary key, m text), tracked, writable by the writer and the owner role."""
    d.admin.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY, m text)")
    d.admin.execute(f"ALTER TABLE public.{name} OWNER TO {owner}")
    d.admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON public.{name} TO {WRITER}")
    enable_tracking(d.conn(MAINT), f"public.{name}")
    return f"public.{name}"


def mark(conn: psycopg.Connection, m: str) -> None:
    record(conn, "t49.e", payload={"m": m})


def move_writers_to(d: Db, intake_id: int) -> None:
    """The next event written gets this intake_id (only forward: the superuser's setval in a test)."""
    d.admin.execute("SELECT setval('audit.event_intake_intake_id_seq', %s, false)", [intake_id])


def next_id(d: Db) -> int:
    row = d.admin.execute("SELECT coalesce(pg_sequence_last_value('audit.event_intake_intake_id_seq'), 0) + 1").fetchone()
    assert row is not None
    return int(row[0])


def rotate(d: Db, sealer: psycopg.Connection, times: int, filler: list[str], tag: str) -> None:
    """Move writers to the next partition of the intake `times` times, writing and sealing in each, so
    that the partitions left behind are drained and (when nobody holds them) TRUNCATEd."""
    for k in range(times):
        nid = next_id(d)
        move_writers_to(d, (nid // RANGE + 1) * RANGE)
        m = f"{tag}-rot{k}"
        mark(d.admin, m)
        filler.append(m)
        seal(sealer)
        seal(sealer)


def pages(d: Db, slot: int) -> int:
    row = d.admin.execute(f"SELECT pg_relation_size('audit.event_intake_{slot}') / 8192").fetchone()
    assert row is not None
    return int(row[0])


def seal_until_empty(d: Db) -> None:
    for _ in range(200):
        if seal(d.admin, 10000).sealed == 0 and d.admin.execute(
                "SELECT count(*) FROM audit.event_intake").fetchone() == (0,):
            return
    raise AssertionError("the intake never emptied")


MARKER_SQL = """SELECT CASE WHEN origin = 'record' THEN payload ->> 'm'
                            ELSE kind || ':' || coalesce(row_after ->> 'm', row_before ->> 'm', payload ->> 'table') END
                  FROM audit.{rel} WHERE kind NOT LIKE 'audit.%'"""


def assert_whole(d: Db, committed: list[str], rolled_back: list[str] = ()) -> None:  # type: ignore[assignment]
    """Seal until the intake is empty; then every committed write has exactly one sealed event, none
    of rolled-back work, no quarantine, seq without gap or duplicate, and both verifiers agree."""
    seal_until_empty(d)
    got = Counter(r[0] for r in d.admin.execute(MARKER_SQL.format(rel="event_log")).fetchall())
    want = Counter(committed)
    missing = want - got
    extra = got - want
    assert not missing, f"committed writes without an event: {sorted(missing)}"
    assert not extra, f"events twice, or of rolled-back work: {sorted(extra)}"
    assert not set(rolled_back) & set(got), f"rolled-back work sealed: {sorted(set(rolled_back) & set(got))}"
    assert d.admin.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    assert d.admin.execute("SELECT count(*) FROM audit.events WHERE pending").fetchone() == (0,)
    n, distinct, lo, hi, last, start = d.admin.execute(
        "SELECT count(*), count(DISTINCT seq), min(seq), max(seq), (SELECT last_seq FROM audit.seal_state),"
        " (SELECT chain_start_seq FROM audit.seal_state) FROM audit.event_log").fetchone()  # type: ignore[misc]
    assert n == distinct, "a seq is held by two events"
    if n:
        assert (lo, hi) == (start + 1, last) and hi - lo + 1 == n, f"seq has a gap: {n} events over {lo}..{hi}"
    assert d.admin.execute("SELECT coalesce(sum(event_count), 0) FROM audit.blocks").fetchone() == (n,)
    ok, problem = d.admin.execute("SELECT ok, problem FROM audit.verify()").fetchone()  # type: ignore[misc]
    assert ok, f"audit.verify: {problem}"
    verdict = verify_chain(d.admin)
    assert verdict.ok, f"verify_chain: {verdict}"


def sealer_conn(d: Db, timeout: str = "20s") -> psycopg.Connection:
    """A maintainer's session whose seal() cannot hang the test: a statement over `timeout` fails."""
    c = d.conn(MAINT)
    c.execute(f"SET statement_timeout = '{timeout}'")
    return c


def prepare(conn: psycopg.Connection, gid: str) -> None:
    conn.execute(f"PREPARE TRANSACTION '{gid}'")


def finish_prepared(d: Db, gid: str, commit: bool, role: str = WRITER) -> None:
    """COMMIT or ROLLBACK PREPARED, as the role that prepared it (which may)."""
    d.conn(role).execute(f"{'COMMIT' if commit else 'ROLLBACK'} PREPARED '{gid}'")


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def waiting_on_lock(d: Db, pid: int) -> bool:
    row = d.admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


# ============================== 1. two-phase commit ==============================


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
@pytest.mark.parametrize("how", ["record", "capture"])
def test_a_prepared_writer_across_seals_and_rotations(d, how, outcome):
    """A writer PREPAREs after record() or a captured insert near the end of a partition; the sealer
    seals and the intake rotates all the way round (back into the writer's partition) several times;
    nothing hangs; then COMMIT or ROLLBACK PREPARED: its events arrive once, or never."""
    items_table(d)
    sealer = sealer_conn(d)
    committed: list[str] = []
    move_writers_to(d, RANGE - 2)
    w = d.conn(WRITER)
    w.execute("BEGIN")
    if how == "record":
        mark(w, "p1")
        mark(w, "p2")
        mine = ["p1", "p2"]
    else:
        w.execute("INSERT INTO public.items VALUES (1, 'p1'), (2, 'p2')")
        mine = ["public.items.insert:p1", "public.items.insert:p2"]
    prepare(w, "t49_p")
    rotate(d, sealer, 6, committed, "a")  # partitions 1, 2, 3, 0 (the writer's), 1, 2
    assert d.admin.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    finish_prepared(d, "t49_p", outcome == "commit")
    rotate(d, sealer, 2, committed, "b")
    assert_whole(d, committed + (mine if outcome == "commit" else []), [] if outcome == "commit" else mine)


def test_a_prepared_writer_does_not_stop_the_rotation_of_other_partitions(d):
    """While a prepared writer holds partition 0, partitions it is not in are still emptied."""
    sealer = sealer_conn(d)
    committed: list[str] = []
    w = d.conn(WRITER)
    w.execute("BEGIN")
    mark(w, "held")
    prepare(w, "t49_hold")
    rotate(d, sealer, 3, committed, "r")  # writers on partition 3; 1 and 2 drained
    assert pages(d, 1) == 0 and pages(d, 2) == 0
    assert pages(d, 0) > 0  # the prepared writer's partition waits
    finish_prepared(d, "t49_hold", True)
    assert_whole(d, committed + ["held"])


def test_a_prepared_idempotent_retry_does_not_wedge_a_round_that_needs_a_new_log_partition(d):
    """A writer's retry of an idempotency key reads audit.events (the log and every intake partition)
    and PREPAREs, keeping those locks; the sealer must then make the log's next partition at once."""
    # The chain starts five seqs before the log's first partition ends (the suite's near_end).
    with d.admin.transaction():
        d.admin.execute("SET LOCAL ROLE audit_sealer")  # seal_state's guard lets the sealer alone move it
        d.admin.execute("UPDATE audit.seal_state SET last_seq = 999994, chain_start_seq = 999994")
    w = d.conn(WRITER)
    record(w, "t49.e", payload={"m": "k1"}, idempotency_key="k1")
    seal(d.admin)
    w.execute("BEGIN")
    again = record(w, "t49.e", payload={"m": "k1"}, idempotency_key="k1")  # the retry: the first event
    assert again.seq == 999995
    prepare(w, "t49_retry")
    sealer = sealer_conn(d, "10s")
    w2 = d.conn(WRITER)
    for k in range(6):
        mark(w2, f"n{k}")
    assert seal(sealer, 10).sealed == 6  # into the log's next partition while the retry holds its locks
    assert d.admin.execute("SELECT count(*) FROM audit._log_partitions()").fetchone()[0] >= 2
    finish_prepared(d, "t49_retry", True)
    assert_whole(d, ["k1"] + [f"n{k}" for k in range(6)])


def test_the_worker_keeps_sealing_around_a_prepared_writer(d):
    """`pgaudit worker`'s loop seals others' events while a prepared writer sits in the intake, and
    the prepared writer's events once it commits."""
    committed: list[str] = []
    w = d.conn(WRITER)
    w.execute("BEGIN")
    mark(w, "prepared")
    prepare(w, "t49_wk")
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_worker(lambda: psycopg.connect(d.dsn(MAINT), autocommit=True), stop, interval=0.05, max_events=3)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        other = d.conn(WRITER)
        for k in range(20):
            if k % 5 == 0:
                move_writers_to(d, (next_id(d) // RANGE + 1) * RANGE)
            mark(other, f"o{k}")
            committed.append(f"o{k}")
        wait_until(lambda: d.admin.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,),
                   "the worker sealed the others' events")
        finish_prepared(d, "t49_wk", True)
        committed.append("prepared")
        wait_until(lambda: d.admin.execute("SELECT count(*) FROM audit.event_log WHERE payload ->> 'm' = 'prepared'"
                                           ).fetchone() == (1,), "the worker sealed the prepared writer's event")
    finally:
        stop.set()
        t.join(10)
    assert not errors and not t.is_alive()
    assert_whole(d, committed)


def test_a_maintainers_prepared_seal_does_not_wedge_every_later_sealer(d):
    """docs/sealing.md: 'A transaction that has sent a notification cannot be prepared, so seal()
    cannot run in a two-phase transaction.' A round that seals nothing sends none: prepared, does
    it hold the sealer's row lock (and any partition it emptied) until someone resolves it?"""
    m = d.conn(MAINT)
    m.execute("BEGIN")
    m.execute("SELECT audit.seal(10)")
    with suppress(psycopg.Error):
        prepare(m, "t49_sealprep")
    w = d.conn(WRITER)
    mark(w, "after")
    sealer = d.conn(MAINT)
    sealer.execute("SET lock_timeout = '3s'")
    assert seal(sealer).sealed == 1, "a later sealer was held up"
    assert_whole(d, ["after"])


# ============================== 2. long writers ==============================


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
def test_a_long_writer_across_several_seals_and_rotations(d, isolation):
    """A writer writes early (record and a captured insert), stays open while the sealer seals and
    the intake rotates round and past its partition, writes again (and updates its own row), commits."""
    items_table(d)
    sealer = sealer_conn(d)
    committed: list[str] = []
    w = d.conn(WRITER, autocommit=False)
    w.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    move_writers_to(d, RANGE - 1)
    mark(w, "early")
    w.execute("INSERT INTO public.items VALUES (1, 'early-row')")
    rotate(d, sealer, 5, committed, "x")
    mark(w, "late")
    w.execute("UPDATE public.items SET m = 'late-row' WHERE id = 1")
    w.execute("INSERT INTO public.items VALUES (2, 'late-row2')")
    rotate(d, sealer, 2, committed, "y")
    w.commit()
    assert_whole(d, committed + ["early", "late", "public.items.insert:early-row", "public.items.update:late-row",
                                 "public.items.insert:late-row2"])


def test_a_repeatable_read_retry_after_its_event_was_sealed_and_rotated_is_not_a_second_event(d):
    """The first event with a key is sealed and its partition drained while a REPEATABLE READ writer
    that saw it pending is open; the writer's retry returns it, and nothing is written twice."""
    sealer = sealer_conn(d)
    committed: list[str] = []
    first = d.conn(WRITER)
    move_writers_to(d, RANGE - 1)
    record(first, "t49.e", payload={"m": "keyed"}, idempotency_key="once")
    w = d.conn(WRITER, autocommit=False)
    w.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    w.execute("SELECT 1")  # the snapshot: the keyed event pending
    rotate(d, sealer, 5, committed, "z")
    again = record(w, "t49.e", payload={"m": "keyed"}, idempotency_key="once")
    w.commit()
    row = d.admin.execute("SELECT id FROM audit.event_log WHERE payload ->> 'm' = 'keyed'").fetchone()
    assert row is not None and again.id == row[0]
    assert_whole(d, committed + ["keyed"])


# ============================== 3. commit order unlike intake order ==============================


def test_commit_order_unlike_intake_order_with_a_sealer_between_every_commit(d):
    """Writer A takes the first intake id and commits last; B..E commit in reverse; one-event seals
    between: no event skipped because a later one was sealed first."""
    sealer = sealer_conn(d)
    move_writers_to(d, RANGE - 2)  # the writers straddle two partitions
    writers = []
    for name in "ABCDE":
        c = d.conn(WRITER, autocommit=False)
        mark(c, name)
        writers.append(c)
    for c in reversed(writers):
        c.commit()
        seal(sealer, 1)
        seal(sealer, 1)
    assert_whole(d, list("ABCDE"))
    order = [r[0] for r in d.admin.execute("SELECT payload ->> 'm' FROM audit.event_log"
                                           " WHERE kind = 't49.e' ORDER BY seq").fetchall()]
    assert order == list("EDCBA")


# ============================== 4. sealers at once, cancelled, timed out ==============================


def test_two_sealers_and_the_worker_with_tiny_rounds_against_concurrent_writers(d):
    """Two manual sealers (max_events 1 and 2) and the worker's loop (max_events 3) race writers
    that commit, roll back and cross partitions."""
    stop = threading.Event()
    errors: list[BaseException] = []
    committed: list[str] = []
    rolled: list[str] = []
    lock = threading.Lock()

    def sealer(n: int) -> None:
        c = psycopg.connect(d.dsn(MAINT), autocommit=True)
        try:
            while not stop.is_set():
                seal(c, n)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()

    def worker() -> None:
        with psycopg.connect(d.dsn(MAINT), autocommit=True) as c:
            try:
                seal_continuously(c, stop, interval=0.01, max_events=3)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    def writer(wid: int) -> None:
        rng = random.Random(wid)
        c = psycopg.connect(d.dsn(WRITER), autocommit=False)
        try:
            for k in range(25):
                ms = [f"w{wid}-{k}-{j}" for j in range(rng.randint(1, 3))]
                for m in ms:
                    mark(c, m)
                    time.sleep(rng.random() * 0.005)
                if rng.random() < 0.25:
                    c.rollback()
                    with lock:
                        rolled.extend(ms)
                else:
                    c.commit()
                    with lock:
                        committed.extend(ms)
                if wid == 0 and k % 6 == 0:
                    move_writers_to(d, (next_id(d) // RANGE + 1) * RANGE - 1)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=sealer, args=(1,)), threading.Thread(target=sealer, args=(2,)),
               threading.Thread(target=worker)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads + writers:
        t.start()
    for t in writers:
        t.join(60)
    stop.set()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert_whole(d, committed, rolled)


PAUSES = {
    # what a superuser holds; the step of seal() that waits for it
    "seal_state (before anything)": "SELECT * FROM audit.seal_state FOR UPDATE",
    "the intake partition (moving events)": "LOCK TABLE audit.event_intake_0 IN SHARE MODE",
    "the log's partition (inserting events)": "LOCK TABLE audit.event_log_000000 IN SHARE MODE",
    "blocks (closing the block)": "LOCK TABLE audit.blocks IN SHARE MODE",
    "intake_drains (the rotation's record)": "LOCK TABLE audit.intake_drains IN SHARE MODE",
}


@pytest.mark.parametrize("stop_by", ["pg_cancel_backend", "statement_timeout"])
@pytest.mark.parametrize("pause", list(PAUSES))
def test_a_seal_stopped_at_each_step_loses_and_duplicates_nothing(d, pause, stop_by):
    committed: list[str] = []
    w = d.conn(WRITER)
    for k in range(5):
        mark(w, f"s{k}")
        committed.append(f"s{k}")
    holder = d.conn()
    holder.execute("BEGIN")
    holder.execute(PAUSES[pause])
    sealer = d.conn(MAINT)
    pid = sealer.info.backend_pid
    if stop_by == "statement_timeout":
        sealer.execute("SET statement_timeout = '400ms'")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            seal(sealer, 3)
        except psycopg.Error as exc:
            failure.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    if stop_by == "pg_cancel_backend":
        wait_until(lambda: waiting_on_lock(d, pid), "the sealer waits at the step")
        d.admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
    t.join(10)
    holder.execute("ROLLBACK")
    assert failure and isinstance(failure[0], psycopg.errors.QueryCanceled)
    mark(w, "after")
    committed.append("after")
    assert_whole(d, committed)


def test_a_callers_lock_timeout_fails_the_second_sealer_cleanly(d):
    committed = []
    w = d.conn(WRITER)
    for k in range(4):
        mark(w, f"l{k}")
        committed.append(f"l{k}")
    first = d.conn(MAINT)
    first.execute("BEGIN")
    assert seal(first, 2).sealed == 2
    second = d.conn(MAINT)
    second.execute("SET lock_timeout = '50ms'")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        seal(second, 2)
    mark(w, "l4")
    committed.append("l4")
    first.execute("COMMIT")
    assert seal(second, 2).sealed == 2
    assert_whole(d, committed)


def test_a_sealing_transaction_that_read_pg_stat_activity_first_does_not_empty_a_partition_an_older_snapshot_reads(d):
    """The rotation empties a drained partition only 'once no snapshot in the cluster is older than
    that round', judged from pg_stat_activity, which PostgreSQL reads once per transaction and then
    keeps. A maintainer's transaction that looked at pg_stat_activity (a monitoring query) before
    another sealer's round, then seals: a REPEATABLE READ reader whose snapshot predates that round
    must still find every event, pending or sealed."""
    move_writers_to(d, RANGE - 2)
    w = d.conn(WRITER)
    for m in ("v0", "v1", "v2"):  # two in partition 0, one in 1 (where writers stay)
        mark(w, m)
    m_conn = d.conn(MAINT)
    m_conn.execute("BEGIN")
    m_conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
    r = d.conn(READER)
    r.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    r.execute("SELECT 1")  # the reader's snapshot: three events pending
    assert seal(d.conn(MAINT)).sealed == 3  # another sealer's round drains partitions 0 and 1
    m_conn.execute("SELECT audit.seal()")
    m_conn.execute("COMMIT")
    seen = r.execute("SELECT payload ->> 'm' FROM audit.events WHERE kind = 't49.e' ORDER BY intake_id").fetchall()
    r.execute("COMMIT")
    assert [x[0] for x in seen] == ["v0", "v1", "v2"], "events the reader's snapshot should see are gone"
    assert_whole(d, ["v0", "v1", "v2"])


# ============================== 5. subtransactions ==============================


def test_savepoints_and_exception_blocks_rolled_back_after_writes(d):
    items_table(d)
    w = d.conn(WRITER, autocommit=False)
    mark(w, "top")
    w.execute("SAVEPOINT a")
    mark(w, "in-a")
    w.execute("INSERT INTO public.items VALUES (1, 'row-a')")
    w.execute("ROLLBACK TO SAVEPOINT a")
    w.execute("SAVEPOINT b")
    mark(w, "in-b")
    w.execute("INSERT INTO public.items VALUES (2, 'row-b')")
    w.execute("RELEASE SAVEPOINT b")
    # a PL/pgSQL exception block that writes, then fails: its writes go; those before it stay
    w.execute("""DO $$
                 BEGIN
                     PERFORM audit.record('t49.e', payload => '{"m": "do-kept"}');
                     BEGIN
                         PERFORM audit.record('t49.e', payload => '{"m": "do-undone"}');
                         INSERT INTO public.items VALUES (3, 'row-undone');
                         PERFORM 1 / 0;
                     EXCEPTION WHEN division_by_zero THEN NULL;
                     END;
                     INSERT INTO public.items VALUES (4, 'row-kept');
                 END $$""")
    w.commit()
    assert_whole(d, ["top", "in-b", "public.items.insert:row-b", "do-kept", "public.items.insert:row-kept"],
                 ["in-a", "public.items.insert:row-a", "do-undone", "public.items.insert:row-undone"])


def test_over_64_subtransactions_in_one_writer_while_sealers_run_and_the_intake_rotates(d):
    """200 subtransactions (the snapshot's subxid cache overflows at 64), a third rolled back, each
    with a record() and a captured write, while two sealers seal one or two events at a time and
    the intake rotates."""
    items_table(d)
    stop = threading.Event()
    errors: list[BaseException] = []

    def sealer(n: int) -> None:
        with psycopg.connect(d.dsn(MAINT), autocommit=True) as c:
            try:
                while not stop.is_set():
                    seal(c, n)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    others = d.conn(WRITER)
    threads = [threading.Thread(target=sealer, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    committed: list[str] = []
    rolled: list[str] = []
    w = d.conn(WRITER, autocommit=False)
    try:
        for k in range(200):
            w.execute(f"SAVEPOINT s{k}")
            mark(w, f"sub{k}")
            w.execute("INSERT INTO public.items VALUES (%s, %s)", (k, f"subrow{k}"))
            if k % 3 == 0:
                w.execute(f"ROLLBACK TO SAVEPOINT s{k}")
                rolled += [f"sub{k}", f"public.items.insert:subrow{k}"]
            else:
                committed += [f"sub{k}", f"public.items.insert:subrow{k}"]
            if k % 40 == 0:
                move_writers_to(d, (next_id(d) // RANGE + 1) * RANGE - 1)
                mark(others, f"other{k}")
                committed.append(f"other{k}")
        w.commit()
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not errors, errors
    assert_whole(d, committed, rolled)


# ============================== 6. COPY, ON CONFLICT, partitions, cursors ==============================


def test_copy_and_on_conflict_in_a_prepared_transaction_across_rotations(d):
    items_table(d, "stock", owner=OWNER)
    owner = d.conn(OWNER)
    sealer = sealer_conn(d)
    committed: list[str] = []
    move_writers_to(d, RANGE - 3)
    owner.execute("BEGIN")
    with owner.cursor().copy("COPY public.stock (id, m) FROM STDIN") as copy:
        for k in range(6):
            copy.write_row((k, f"copied{k}"))
    owner.execute("INSERT INTO public.stock VALUES (1, 'upserted1'), (10, 'new10')"
                  " ON CONFLICT (id) DO UPDATE SET m = excluded.m")
    prepare(owner, "t49_copy")
    rotate(d, sealer, 5, committed, "c")
    finish_prepared(d, "t49_copy", True, OWNER)
    committed += [f"public.stock.insert:copied{k}" for k in range(6)]
    committed += ["public.stock.update:upserted1", "public.stock.insert:new10"]
    assert_whole(d, committed)


def test_a_partitioned_tracked_table_with_a_row_moving_partitions_in_a_long_transaction(d):
    d.admin.execute("""CREATE TABLE public.parts (id int, region int, m text, PRIMARY KEY (id, region))
                           PARTITION BY LIST (region);
                       CREATE TABLE public.parts_1 PARTITION OF public.parts FOR VALUES IN (1);
                       CREATE TABLE public.parts_2 PARTITION OF public.parts FOR VALUES IN (2)""")
    for t in ("parts", "parts_1", "parts_2"):
        d.admin.execute(f"ALTER TABLE public.{t} OWNER TO {MAINT}")
        d.admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON public.{t} TO {WRITER}")
    enable_tracking(d.conn(MAINT), "public.parts")
    sealer = sealer_conn(d)
    committed: list[str] = []
    w = d.conn(WRITER, autocommit=False)
    w.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    w.execute("INSERT INTO public.parts VALUES (1, 1, 'p-in-1'), (2, 2, 'p-in-2')")
    rotate(d, sealer, 4, committed, "q")
    w.execute("UPDATE public.parts SET region = 2, m = 'p-moved' WHERE id = 1")
    w.execute("DELETE FROM public.parts WHERE id = 2")
    w.commit()
    assert_whole(d, committed + ["public.parts.insert:p-in-1", "public.parts.insert:p-in-2",
                                 "public.parts.update:p-moved", "public.parts.delete:p-in-2"])


def test_a_cursor_with_hold_over_the_intake_and_log_does_not_stop_the_rotation(d):
    """A reader's cursor WITH HOLD over the events, its transaction committed: the partitions it read
    are still emptied, and it still returns what it saw."""
    sealer = sealer_conn(d)
    committed: list[str] = []
    move_writers_to(d, RANGE - 2)  # two events in partition 0, two in 1
    w = d.conn(WRITER)
    for k in range(4):
        mark(w, f"h{k}")
        committed.append(f"h{k}")
    seal(sealer, 1)
    r = d.conn(READER)
    r.execute("BEGIN")
    r.execute("DECLARE held CURSOR WITH HOLD FOR SELECT seq, intake_id, payload FROM audit.events ORDER BY intake_id")
    r.execute("COMMIT")
    rotate(d, sealer, 2, committed, "hold")  # writers on partition 3
    assert pages(d, 0) == 0 and pages(d, 1) == 0  # the held cursor held nothing back
    assert len(r.execute("FETCH ALL FROM held").fetchall()) == 4  # what it saw, whole
    assert_whole(d, committed)


def test_an_open_cursor_over_the_events_defers_the_rotation_and_loses_nothing(d):
    """A reader's open cursor over the events (its snapshot taken with four events pending) keeps
    reading them while they are sealed and rotated away; the partitions are emptied once it ends."""
    sealer = sealer_conn(d)
    committed: list[str] = []
    move_writers_to(d, RANGE - 2)
    w = d.conn(WRITER)
    for k in range(4):
        mark(w, f"c{k}")
        committed.append(f"c{k}")
    r = d.conn(READER)
    r.execute("BEGIN")
    r.execute("DECLARE open_c CURSOR FOR SELECT payload ->> 'm' FROM audit.events WHERE kind = 't49.e'"
              " ORDER BY intake_id, seq")
    assert len(r.execute("FETCH 1 FROM open_c").fetchall()) == 1
    rotate(d, sealer, 2, committed, "open")  # writers on partition 3
    assert pages(d, 0) > 0 and pages(d, 1) > 0  # deferred while the cursor's snapshot may read them
    rest = [x[0] for x in r.execute("FETCH ALL FROM open_c").fetchall()]
    assert rest == ["c1", "c2", "c3"]  # its snapshot still reads every event it saw pending
    r.execute("COMMIT")
    seal(sealer)
    seal(sealer)
    assert pages(d, 0) == 0 and pages(d, 1) == 0
    assert_whole(d, committed)


# ============================== 7. sequences and a writer's session ==============================


@pytest.mark.parametrize("statement", [
    "SELECT nextval('audit.event_intake_intake_id_seq')",
    "SELECT setval('audit.event_intake_intake_id_seq', 1)",
    "ALTER SEQUENCE audit.event_intake_intake_id_seq CACHE 1000",
    "ALTER SEQUENCE audit.event_intake_intake_id_seq RESTART",
])
@pytest.mark.parametrize("role", [WRITER, OWNER])
def test_a_writer_or_table_owner_cannot_move_the_intake_ids(d, statement, role):
    before = next_id(d)
    c = d.conn(role)
    with pytest.raises(psycopg.Error):
        c.execute(statement)
    assert next_id(d) == before


def test_intake_ids_near_their_end_fail_the_writer_not_the_log(d):
    """The intake's ids at their last values (a superuser's setval): the write that finds none left
    fails in the writer's statement; everything written before seals, the sealer is not stopped."""
    d.admin.execute("SELECT setval('audit.event_intake_intake_id_seq', 9223372036854775805)")
    w = d.conn(WRITER)
    mark(w, "z1")
    mark(w, "z2")
    with pytest.raises(psycopg.Error):
        mark(w, "z3")
    assert_whole(d, ["z1", "z2"], ["z3"])


def test_a_writers_session_settings_change_nothing_sealed(d):
    """Settings any role may set for its session: planner switches, tiny memory, timeouts,
    output styles, a search_path of its own, deferrable serializable transactions."""
    items_table(d)
    w = d.conn(WRITER, autocommit=False)
    for setting in ["enable_seqscan = off", "enable_hashagg = off", "enable_sort = off", "enable_indexscan = off",
                    "work_mem = '64kB'", "jit = on", "jit_above_cost = 0", "plan_cache_mode = force_generic_plan",
                    "DateStyle = 'SQL, DMY'", "IntervalStyle = 'sql_standard'", "TimeZone = 'Pacific/Chatham'",
                    "extra_float_digits = -15", "bytea_output = 'escape'", "search_path = pg_temp, public",
                    "default_transaction_isolation = 'serializable'", "default_transaction_deferrable = on",
                    "synchronous_commit = off", "lock_timeout = '1ms'", "standard_conforming_strings = off"]:
        w.execute(f"SET {setting}")
    w.commit()
    for k in range(5):
        # SQL, as any client may send it (the Python wrappers refuse a session with these styles)
        w.execute("SELECT audit.record('t49.e', payload => jsonb_build_object('m', %s::text))", (f"set{k}",))
        w.execute("INSERT INTO public.items VALUES (%s, %s)", (k, f"setrow{k}"))
        w.execute("UPDATE public.items SET m = %s WHERE id = %s", (f"setupd{k}", k))
        w.commit()
    assert_whole(d, [f"set{k}" for k in range(5)] + [f"public.items.insert:setrow{k}" for k in range(5)]
                 + [f"public.items.update:setupd{k}" for k in range(5)])


# ============================== 8. everything at once ==============================


def test_mixed_transaction_shapes_against_sealers_the_worker_and_rotation(d):
    """Writers of every shape (isolation levels, savepoints, rollbacks, prepared then committed or
    rolled back, captured writes) against two tiny-round sealers and a rotating intake."""
    items_table(d)
    stop = threading.Event()
    errors: list[BaseException] = []
    committed: list[str] = []
    rolled: list[str] = []
    lock = threading.Lock()

    def sealer(n: int) -> None:
        with psycopg.connect(d.dsn(MAINT), autocommit=True) as c:
            try:
                while not stop.is_set():
                    seal(c, n)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    def writer(wid: int) -> None:
        rng = random.Random(100 + wid)
        c = psycopg.connect(d.dsn(WRITER), autocommit=True)
        try:
            for k in range(15):
                level = rng.choice(["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
                c.execute(f"BEGIN ISOLATION LEVEL {level}")
                keep: list[str] = []
                drop: list[str] = []
                for j in range(rng.randint(1, 4)):
                    # (no write of one writer conflicts with another's: no serialization failure)
                    m = f"x{wid}-{k}-{j}"
                    sp = rng.random() < 0.4
                    if sp:
                        c.execute("SAVEPOINT s")
                    if rng.random() < 0.5:
                        mark(c, m)
                        ev = m
                    else:
                        key = wid * 100000 + k * 10 + j
                        c.execute("INSERT INTO public.items VALUES (%s, %s)", (key, m))
                        ev = f"public.items.insert:{m}"
                    time.sleep(rng.random() * 0.01)
                    if sp and rng.random() < 0.5:
                        c.execute("ROLLBACK TO SAVEPOINT s")
                        drop.append(ev)
                    else:
                        keep.append(ev)
                end = rng.random()
                if end < 0.2:
                    c.execute("ROLLBACK")
                    drop += keep
                    keep = []
                elif end < 0.45:
                    gid = f"t49_mix_{wid}_{k}"
                    c.execute(f"PREPARE TRANSACTION '{gid}'")
                    time.sleep(rng.random() * 0.05)
                    if rng.random() < 0.3:
                        c.execute(f"ROLLBACK PREPARED '{gid}'")
                        drop += keep
                        keep = []
                    else:
                        c.execute(f"COMMIT PREPARED '{gid}'")
                else:
                    c.execute("COMMIT")
                with lock:
                    committed.extend(keep)
                    rolled.extend(drop)
                if wid == 0 and k % 4 == 0:
                    move_writers_to(d, (next_id(d) // RANGE + 1) * RANGE - 2)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            c.close()

    sealers = [threading.Thread(target=sealer, args=(n,)) for n in (1, 3)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in sealers + writers:
        t.start()
    for t in writers:
        t.join(90)
    stop.set()
    for t in sealers:
        t.join(20)
    assert not errors, errors
    assert_whole(d, committed, rolled)
