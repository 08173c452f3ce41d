"""Write rate limits, enforced inside PostgreSQL: exact counts, retry-after, no hot row."""

from __future__ import annotations

import math
import threading
import time

import psycopg
import pytest
from click.testing import CliRunner

from pgaudit_py import (
    InvalidArgument,
    InvalidKind,
    InvalidTarget,
    RateLimitBypassRefused,
    RateLimited,
    audit_context,
    disable_rate_limit,
    disable_tracking,
    enable_rate_limit,
    enable_tracking,
    rate_limit,
    rate_limited,
    rate_limits,
    record_refusal,
    set_operation_limit,
    status,
    translated,
)
from pgaudit_py.cli import cli


@pytest.fixture
def maintainer(connect):
    return connect("app_maintainer")


@pytest.fixture
def notes(db):
    db.execute("""CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
                  ALTER TABLE public.notes OWNER TO app_maintainer;
                  GRANT ALL ON public.notes, public.notes_id_seq TO app_writer""")
    return "public.notes"


def write(conn, tenant="t1", user="u1") -> float | None:
    """One limited write; None when admitted, else the retry-after in seconds."""
    try:
        with audit_context(conn, tenant_id=tenant, actor_id=user):
            conn.execute("INSERT INTO notes (body) VALUES ('x')")
    except psycopg.Error as exc:
        if exc.sqlstate != "PA009":
            raise
        return RateLimited(exc.diag.message_primary or "", detail=exc.diag.message_detail).retry_after
    return None


def rows(db) -> int:
    return int(db.execute("SELECT count(*) FROM notes").fetchone()[0])


def test_a_refused_write_of_the_applications_own_raises_rate_limited_inside_translated(db, connect, maintainer,
                                                                                      notes):
    """The application's own statement is refused by PostgreSQL: psycopg raises its own error, with
    SQLSTATE PA009; inside `with translated()` it is RateLimited, with the retry-after
    (docs/rate-limits.md, "Refusal")."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=1, per_tenant_per_minute=None)
    writer = connect("app_writer")
    assert write(writer) is None
    with pytest.raises(psycopg.Error) as raw, audit_context(writer, tenant_id="t1", actor_id="u1"):
        writer.execute("INSERT INTO notes (body) VALUES ('x')")
    assert raw.value.sqlstate == "PA009" and not isinstance(raw.value, RateLimited)
    with pytest.raises(RateLimited) as refused, translated(), audit_context(writer, tenant_id="t1", actor_id="u1"):
        writer.execute("INSERT INTO notes (body) VALUES ('x')")
    assert 0 < refused.value.retry_after_ms <= 120_000 and not refused.value.recorded  # two windows at most
    assert "user u1 on public.notes" in str(refused.value)
    assert rows(db) == 1


def test_the_refusal_names_the_user_counted(db, connect, maintainer, notes):
    """The message names the user the limit counted: the actor id, else the database role when no
    actor is named, else (a type named alone, which the log records with no id) the type."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=1, per_tenant_per_minute=None)
    writer = connect("app_writer")
    for context, named in (({"actor_id": "u9"}, "user u9 on public.notes"),
                           ({}, "user app_writer on public.notes"),
                           ({"actor_type": "service"}, "user of type service with no id on public.notes")):
        messages = []
        for _ in range(2):
            try:
                with audit_context(writer, tenant_id="t1", **context):
                    writer.execute("INSERT INTO notes (body) VALUES ('x')")
            except psycopg.Error as exc:
                assert exc.sqlstate == "PA009"
                messages.append(exc.diag.message_primary)
        assert messages == [f"rate limit exceeded for {named}: 1 writes per 60 s"], (context, messages)


def test_exactly_the_limit_then_refusals_then_admission_again(db, connect, maintainer, notes):
    enable_rate_limit(maintainer, notes, per_user_per_minute=5, per_tenant_per_minute=None, window_seconds=1)
    writer = connect("app_writer")
    assert [write(writer) for _ in range(5)] == [None] * 5
    waits = [write(writer) for _ in range(3)]
    assert all(w is not None and 0 < w <= 2.0 for w in waits), waits
    assert rows(db) == 5
    time.sleep(max(waits))  # type: ignore[type-var]
    assert write(writer) is None
    assert rows(db) == 6


WINDOW = 2  # seconds: short, so that the test can place itself in a window without waiting long


def window_position(at: float | None = None) -> tuple[int, float]:
    """The window number (as _rate_take counts: floor(epoch / window)) and how far into it, 0..1.
    Client and server share this machine's clock."""
    t = (time.time() if at is None else at) / WINDOW
    return math.floor(t), t - math.floor(t)


def sleep_until(window_no: int, fraction: float) -> None:
    time.sleep(max(0.0, (window_no + fraction) * WINDOW - time.time()))


def test_the_window_slides_a_full_window_carries_over_and_retry_after_is_exact(db, connect):
    """A limit of 160 (16 shards of 10) filled in window N. At 0.2 into window N+1 a fixed window
    would admit 160 again; the sliding estimate, prev * (1 - e) + cur + 1 <= 10 per shard, admits
    only floor(10 * e) per shard: 32 in all. The refusal then says when the next slot frees."""
    writer = connect("app_writer")
    limit = 160

    def take() -> None:
        rate_limit(writer, "api.call", "k1", limit, window_seconds=WINDOW)

    n, e = window_position()
    n = n if e < 0.5 else n + 1
    sleep_until(n, 0.5)  # late in window n, with half a window left to fill it
    for _ in range(limit):
        take()
    with pytest.raises(RateLimited):
        take()
    assert window_position()[0] == n, "filling the limit took longer than half a window"

    sleep_until(n + 1, 0.2)
    first_e = window_position()[1]
    admitted, refusal = 0, None
    while refusal is None and admitted <= limit:
        before = time.time()
        try:
            take()
            admitted += 1
        except RateLimited as refused:
            refusal = refused
        after = time.time()
    assert refusal is not None, "a fixed window's worth admitted again"
    (n_before, e_before), (n_after, e_after) = window_position(before), window_position(after)
    assert n_before == n_after == n + 1, "the burst left its window"
    # Each shard admitted floor(10 * e) at the e it was tried at (a fixed window: all 10 of each).
    assert 16 * math.floor(10 * first_e) <= admitted <= 16 * math.floor(10 * e_after), (first_e, e_after, admitted)

    # Retry-after: the soonest a shard admits again, (count + 1) / 10 - e windows away, from the
    # counts the shards hold and the server's time of the refusal, which lies between `before` and
    # `after`. So the tolerance is that one call's round trip, plus 1 ms of rounding up (ceil).
    counts = [c for (c,) in db.execute("SELECT count FROM audit.rate_counters WHERE key = %s"
                                       " AND window_no = %s", (f"operation:api.call:{WINDOW}:k1", n + 1))]
    assert len(counts) == 16 and sum(counts) == admitted
    soonest = (min(counts) + 1) / 10
    assert (soonest - e_after) * WINDOW * 1000 <= refusal.retry_after_ms \
        <= (soonest - e_before) * WINDOW * 1000 + 1, (refusal.retry_after_ms, e_before, e_after, counts)
    time.sleep(max(0.0, after + refusal.retry_after - time.time()))
    take()  # the slot has freed, as promised


def test_a_small_limit_slides_too(connect):
    """A limit of 4 (one shard: a share of 1 per shard could not slide) filled in window N. At 0.9
    into window N+1 the previous window weighs 4 * 0.1, so 3 more are admitted: a fixed window
    would admit 4, four shards of 1 would admit none (1 * 0.1 + 1 > 1)."""
    writer = connect("app_writer")

    def take() -> bool:
        try:
            rate_limit(writer, "api.small", "k1", 4, window_seconds=WINDOW)
        except RateLimited:
            return False
        return True

    n, e = window_position()
    n = n if e < 0.5 else n + 1
    sleep_until(n, 0.5)
    assert [take() for _ in range(5)] == [True] * 4 + [False]
    sleep_until(n + 1, 0.9)
    assert [take() for _ in range(4)] == [True] * 3 + [False]
    assert window_position()[0] == n + 1, "the burst left its window"


def test_per_user_and_per_tenant_limits_interact(db, connect, maintainer, notes):
    enable_rate_limit(maintainer, notes, per_user_per_minute=3, per_tenant_per_minute=4)
    writer = connect("app_writer")
    assert [write(writer, "t1", "u1") is None for _ in range(4)] == [True, True, True, False]  # user limit
    assert [write(writer, "t1", "u2") is None for _ in range(2)] == [True, False]  # tenant t1 is full
    assert write(writer, "t2", "u2") is None  # another tenant, another budget
    with pytest.raises(psycopg.Error, match="rate limit exceeded for tenant t1 on public.notes: 4 writes per 60 s"), \
            audit_context(writer, tenant_id="t1", actor_id="u3"):
        writer.execute("INSERT INTO notes (body) VALUES ('x')")
    assert rows(db) == 5


def test_one_statement_is_one_write(db, connect, maintainer, notes):
    enable_rate_limit(maintainer, notes, per_user_per_minute=2, per_tenant_per_minute=None)
    writer = connect("app_writer")
    writer.execute("INSERT INTO notes (body) SELECT 'bulk' FROM generate_series(1, 100)")
    writer.execute("UPDATE notes SET body = 'y'")
    with pytest.raises(psycopg.Error, match="rate limit exceeded"):
        writer.execute("DELETE FROM notes")
    assert rows(db) == 100


def test_a_rolled_back_write_does_not_count(db, connect, maintainer, notes):
    enable_rate_limit(maintainer, notes, per_user_per_minute=2, per_tenant_per_minute=None)
    writer = connect("app_writer", autocommit=False)
    for _ in range(3):
        writer.execute("INSERT INTO notes (body) VALUES ('x')")
        writer.rollback()
    writer.autocommit = True
    assert [write(writer) for _ in range(2)] == [None, None]
    assert write(writer) is not None


def test_racing_connections_admit_no_more_than_the_limit(db, connect, maintainer, notes):
    """160 a window: 16 shards of 10. 156 are taken (6 by writes, the rest set in the counters), one
    slot left in each of 4 shards; 8 writers race for them, each holding its transaction open."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=None, per_tenant_per_minute=160, window_seconds=600)
    first = connect("app_writer")
    assert [write(first, user=f"u{i}") for i in range(6)] == [None] * 6
    oid = db.execute("SELECT 'public.notes'::regclass::oid").fetchone()[0]
    db.execute("""INSERT INTO audit.rate_counters (key, shard, window_no, count, prev_count)
                  SELECT %(key)s, s, floor(date_part('epoch', now()) / 600), CASE WHEN s < 4 THEN 9 ELSE 10 END, 0
                    FROM generate_series(0, 15) s
                  ON CONFLICT (key, shard) DO UPDATE SET window_no = excluded.window_no, count = excluded.count,
                                                         prev_count = 0""",
               {"key": f"table:{oid}:tenant:t1"})
    racers = [connect("app_writer", autocommit=False) for _ in range(8)]
    barrier = threading.Barrier(8)
    admitted: list[bool] = []

    def race(conn: psycopg.Connection, n: int) -> None:
        barrier.wait()
        try:
            conn.execute("SELECT set_config('pgaudit_py.tenant_id', 't1', true), set_config('pgaudit_py.actor_id', %s, true)",
                          (f"racer{n}",))
            conn.execute("INSERT INTO notes (body) VALUES ('race')")
            time.sleep(0.2)  # hold the transaction open while the others race
            conn.commit()
            admitted.append(True)
        except psycopg.Error as exc:
            assert exc.sqlstate == "PA009", exc
            conn.rollback()
            admitted.append(False)

    threads = [threading.Thread(target=race, args=(c, n)) for n, c in enumerate(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(admitted) == [False] * 4 + [True] * 4
    assert rows(db) == 10
    # count and prev_count: a window that ends during the test moves a shard's count to prev_count.
    assert db.execute("SELECT sum(count + prev_count) FROM audit.rate_counters WHERE key = %s",
                      (f"table:{oid}:tenant:t1",)).fetchone()[0] == 160


def test_concurrent_writers_of_one_tenant_do_not_queue(db, connect, maintainer, notes):
    """Writers holding open transactions do not block another writer of the same tenant."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=None, per_tenant_per_minute=600)
    holders = [connect("app_writer", autocommit=False) for _ in range(3)]
    for n, conn in enumerate(holders):
        conn.execute("SELECT set_config('pgaudit_py.tenant_id', 't1', true)")
        conn.execute("INSERT INTO notes (body) VALUES (%s)", (f"held{n}",))  # transaction left open
    late = connect("app_writer", options="-c lock_timeout=200ms")  # any wait on a lock would fail the write
    assert write(late) is None
    for conn in holders:
        conn.commit()
    assert rows(db) == 4


def test_the_maintainer_is_not_limited_and_only_it_may_bypass(db, connect, maintainer, notes):
    enable_rate_limit(maintainer, notes, per_user_per_minute=1, per_tenant_per_minute=1)
    db.execute("GRANT ALL ON public.notes_id_seq TO app_maintainer")
    for _ in range(3):
        maintainer.execute("INSERT INTO notes (body) VALUES ('batch')")
    maintainer.execute("SET pgaudit_py.rate_limit_bypass = on")
    maintainer.execute("INSERT INTO notes (body) VALUES ('batch')")
    writer = connect("app_writer")
    writer.execute("SET pgaudit_py.rate_limit_bypass = on")
    with pytest.raises(psycopg.Error, match="only the maintainer role may bypass rate limits") as caught:
        writer.execute("INSERT INTO notes (body) VALUES ('sneaky')")
    assert caught.value.sqlstate == "PA010"
    with pytest.raises(RateLimitBypassRefused):
        rate_limit(writer, "login", "1.2.3.4", 5)
    assert rows(db) == 4
    # The maintainer is not counted; the refused writer is refused before it takes a slot.
    assert db.execute("SELECT count(*) FROM audit.rate_counters").fetchone() == (0,)


@pytest.mark.parametrize("arguments, error, message", [
    ({"per_user_per_minute": 0}, InvalidArgument, "per_user_per_minute must be between 1 and 10000000, got 0"),
    ({"per_tenant_per_minute": -5}, InvalidArgument, "per_tenant_per_minute must be between 1 and 10000000, got -5"),
    ({"window_seconds": 0}, InvalidArgument, "window_seconds must be between 1 and 86400, got 0"),
])
def test_bad_limits_are_refused(db, maintainer, notes, arguments, error, message):
    with pytest.raises(error, match=message):
        enable_rate_limit(maintainer, notes, **arguments)
    assert rate_limits(db) == []
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_rate_limit'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM audit.events").fetchone() == (0,)  # no audit.rate_limit_set


def test_bad_targets_and_operations(db, connect, maintainer):
    with pytest.raises(psycopg.errors.UndefinedTable):
        enable_rate_limit(maintainer, "public.nope")
    db.execute("CREATE VIEW public.v AS SELECT 1 AS x; ALTER VIEW public.v OWNER TO app_maintainer")
    with pytest.raises(InvalidTarget, match="only tables can be limited"):
        enable_rate_limit(maintainer, "public.v")
    writer = connect("app_writer")
    with pytest.raises(InvalidKind, match="invalid operation name"):
        rate_limit(writer, "bad op", "k", 5)
    with pytest.raises(InvalidArgument, match="per_minute must be between 1 and 10000000, got 0"):
        rate_limit(writer, "login", "k", 0)
    with pytest.raises(InvalidArgument, match="key must be given"):
        rate_limit(writer, "login", None, 5)  # type: ignore[arg-type]
    assert rate_limits(db) == []
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_rate_limit'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM audit.rate_counters").fetchone() == (0,)  # no refused call counted
    assert db.execute("SELECT count(*) FROM audit.events").fetchone() == (0,)


def test_named_operations_with_a_runtime_override_and_recorded_refusals(db, connect, maintainer):
    writer = connect("app_writer")

    @rate_limited("auth.login", key=lambda conn, address: address, per_minute=2)
    def login(conn: psycopg.Connection, address: str) -> str:
        return f"welcome from {address}"

    assert [login(writer, "203.0.113.9") for _ in range(2)] == ["welcome from 203.0.113.9"] * 2
    with pytest.raises(RateLimited) as caught:
        login(writer, "203.0.113.9")
    assert 0 < caught.value.retry_after <= 120
    assert login(writer, "198.51.100.1") == "welcome from 198.51.100.1"  # another key
    refused = db.execute("SELECT kind, outcome, target_id, payload ->> 'retry_after_ms' IS NOT NULL FROM audit.events"
                         " WHERE kind = 'security.rate_limited'").fetchall()
    assert refused == [("security.rate_limited", "failure", "auth.login:203.0.113.9", True)]
    set_operation_limit(maintainer, "auth.login", 4)
    assert [login(writer, "203.0.113.9") for _ in range(2)] == ["welcome from 203.0.113.9"] * 2
    with pytest.raises(RateLimited):
        login(writer, "203.0.113.9")


@pytest.mark.parametrize("autocommit", [True, False])
def test_a_refusal_inside_the_callers_transaction_is_raised_and_recorded_after_it(db, connect, autocommit):
    """Inside a transaction block the decorator can neither end the refused transaction nor
    commit the event on its own: it raises RateLimited unrecorded, and the caller records it
    once the block has rolled back."""
    writer = connect("app_writer", autocommit=autocommit)

    @rate_limited("auth.login", key=lambda conn, address: address, per_minute=1)
    def login(conn: psycopg.Connection, address: str) -> str:
        conn.execute("SELECT 1")
        return "welcome"

    with writer.transaction():
        assert login(writer, "203.0.113.9") == "welcome"
    with pytest.raises(RateLimited) as caught, writer.transaction():
        login(writer, "203.0.113.9")
    refused = "SELECT count(*) FROM audit.events WHERE kind = 'security.rate_limited'"
    assert caught.value.recorded is False and db.execute(refused).fetchone() == (0,)
    with writer.transaction():  # too early: in the block, whether the refusal failed it or not
        with pytest.raises(InvalidArgument, match="after the refused transaction"):
            record_refusal(writer, caught.value)
        with pytest.raises(RateLimited):
            login(writer, "203.0.113.9")
        with pytest.raises(InvalidArgument, match="after the refused transaction"):
            record_refusal(writer, caught.value)
        raise psycopg.Rollback()
    record_refusal(writer, caught.value, target="auth.login")
    assert caught.value.recorded is True and db.execute(refused).fetchone() == (1,)
    if not autocommit:
        writer.commit()  # nothing left open: the event was committed on its own
    with pytest.raises(RateLimited) as outside:
        login(writer, "203.0.113.9")  # no block: the decorator ends the refused transaction and records
    assert outside.value.recorded is True and db.execute(refused).fetchone() == (2,)


def test_limits_are_listed_changed_and_removed(db, maintainer, notes):
    enable_rate_limit(maintainer, notes, per_user_per_minute=5, per_tenant_per_minute=50)
    enable_rate_limit(maintainer, notes, per_user_per_minute=7, per_tenant_per_minute=None)
    set_operation_limit(maintainer, "auth.login", 5)
    assert [(r.scope, r.target, r.per_user, r.per_tenant, r.per_key) for r in rate_limits(db)] == [
        ("operation", "auth.login", None, None, 5), ("table", "notes", 7, None, None)]
    assert disable_rate_limit(maintainer, notes) is True
    assert disable_rate_limit(maintainer, notes) is False
    assert [r.scope for r in rate_limits(db)] == ["operation"]
    kinds = [r[0] for r in db.execute("SELECT kind FROM audit.events WHERE kind LIKE 'audit.rate_limit%'"
                                      " ORDER BY occurred_at")]
    assert kinds == ["audit.rate_limit_set"] * 3 + ["audit.rate_limit_removed"]


def test_dropping_a_limited_table_removes_its_limits(db, maintainer, notes):
    """Left behind, the entry would be listed under the table's old oid, and under the name of a
    table that reuses the oid later, although no trigger enforces it."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=5, per_tenant_per_minute=50)
    set_operation_limit(maintainer, "auth.login", 5)
    oid = db.execute("SELECT 'public.notes'::regclass::oid::text").fetchone()[0]
    maintainer.execute("DROP TABLE public.notes")
    assert db.execute("SELECT scope, target FROM audit.rate_limits").fetchall() == [("operation", "auth.login")]
    removed = db.execute("SELECT target_type, target_id, db_role FROM audit.events"
                         " WHERE kind = 'audit.rate_limit_removed'").fetchall()
    assert removed == [("table", oid, "app_maintainer")]


def test_cli_limits(db, notes):
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"
    runner = CliRunner()
    made = runner.invoke(cli, ["limits", "set", "--dsn", dsn, "public.notes", "--per-user", "30", "--per-tenant", "0"])
    assert made.exit_code == 0, made.stderr
    assert made.output.strip() == "public.notes: 30 writes per user, no per tenant, per 60 s"
    listed = runner.invoke(cli, ["limits", "--dsn", dsn])
    assert listed.output.splitlines()[2].split()[:6] == ["table", "notes", "30", "-", "-", "60"]  # none is "-"
    bad = runner.invoke(cli, ["limits", "set", "--dsn", dsn, "public.notes", "--per-user", "-1"])
    assert bad.exit_code == 2 and bad.stderr.strip() == (  # named by its flag, not the SQL parameter
        "pgaudit: Invalid value for '--per-user': the value given is not in the range 0<=x<=10000000. (see cli limits set --help)")
    gone = runner.invoke(cli, ["limits", "unset", "--dsn", dsn, "public.notes"])
    assert gone.output.strip() == "removed the limits of public.notes"


def test_busy_shards_refuse_briefly_instead_of_queueing(db, connect, maintainer, notes):
    """When the only shards with room belong to open transactions, a write is refused at once with a
    retry-after of at most 100 ms; once those roll back, it is admitted."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=None, per_tenant_per_minute=20)
    holders = [connect("app_writer", autocommit=False) for _ in range(2)]
    for conn in holders:
        conn.execute("SELECT set_config('pgaudit_py.tenant_id', 't1', true)")
        conn.execute("INSERT INTO notes (body) VALUES ('held')")  # owns one of the two shards (of 10), open
    late = connect("app_writer", options="-c lock_timeout=200ms")
    wait = write(late)
    assert wait is not None and 0 < wait <= 0.1
    for conn in holders:
        conn.rollback()
    assert write(late) is None
    assert rows(db) == 1


@pytest.fixture
def stranger(db, connect):
    """A login role with nothing but CONNECT (through PUBLIC) on the database."""
    db.execute("CREATE ROLE rate_stranger LOGIN")
    conn = connect("rate_stranger")
    yield conn
    conn.close()
    db.execute("DROP ROLE rate_stranger")


def test_a_stranger_holding_the_advisory_keys_of_every_shard_blocks_no_write(db, connect, maintainer, notes, stranger):
    """Shards were once owned through advisory locks keyed by a hash of the limit's key, and any role
    that may connect can take any advisory lock: holding all sixteen refused every limited write."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=60, per_tenant_per_minute=None)
    stranger.execute("SELECT pg_advisory_lock(hashtext(format('table:%s:user:%s', 'public.notes'::regclass::oid,"
                     " '{NULL,user,writer,NULL}')), s) FROM generate_series(0, 15) s")
    stranger.execute("SELECT pg_advisory_lock(hashtext('operation:login:60:10.0.0.7'), s) FROM generate_series(0, 15) s")
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s"
    assert db.execute(held, (stranger.info.backend_pid,)).fetchone() == (32,)
    writer = connect("app_writer")
    with audit_context(writer, actor_id="writer"):
        writer.execute("INSERT INTO notes (body) VALUES ('x')")
    rate_limit(writer, "login", "10.0.0.7")
    assert rows(db) == 1
    oid = db.execute("SELECT 'public.notes'::regclass::oid").fetchone()[0]
    assert db.execute("SELECT key, sum(count + prev_count) FROM audit.rate_counters GROUP BY key ORDER BY key").fetchall() == [
        ("operation:login:60:10.0.0.7", 1), (f"table:{oid}:user:{{NULL,user,writer,NULL}}", 1)]
    assert db.execute(held, (stranger.info.backend_pid,)).fetchone() == (32,)  # held all along
    # Nor can it hold a counter row: only the owner role may lock them.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        stranger.execute("SELECT * FROM audit.rate_counters FOR UPDATE")


def test_a_limit_on_a_partitioned_table_counts_writes_to_its_partitions_including_later_ones(db, connect, maintainer):
    """A statement naming a partition fires that partition's triggers only: each partition, those
    created or attached later included, carries the limit, and counts against its limited table."""
    db.execute("""CREATE TABLE public.parted (id int, body text) PARTITION BY RANGE (id);
                  CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
                  ALTER TABLE public.parted OWNER TO app_maintainer;
                  ALTER TABLE public.parted_1 OWNER TO app_maintainer;
                  GRANT CREATE ON SCHEMA public TO app_maintainer""")
    enable_rate_limit(maintainer, "public.parted", per_user_per_minute=4, per_tenant_per_minute=None)
    maintainer.execute("CREATE TABLE public.parted_2 PARTITION OF public.parted FOR VALUES FROM (100) TO (200)")
    maintainer.execute("CREATE TABLE public.parted_3 (id int, body text)")
    maintainer.execute("ALTER TABLE public.parted ATTACH PARTITION public.parted_3 FOR VALUES FROM (200) TO (300)")
    db.execute("GRANT ALL ON public.parted, public.parted_1, public.parted_2, public.parted_3 TO app_writer")
    writer = connect("app_writer")

    def insert(table: str, id_: int) -> bool:
        try:
            with audit_context(writer, actor_id="u1"):
                writer.execute(f"INSERT INTO {table} VALUES (%s, 'x')", (id_,))
        except psycopg.Error as exc:
            assert exc.sqlstate == "PA009", exc
            return False
        return True

    assert [insert("parted_1", 1), insert("parted_2", 101), insert("parted_3", 201), insert("parted", 2)] == [True] * 4
    assert [insert(t, i) for t, i in (("parted_1", 3), ("parted_2", 102), ("parted_3", 202), ("parted", 4))] \
        == [False] * 4
    assert db.execute("SELECT count(*) FROM public.parted").fetchone() == (4,)
    triggers = {name for (name,) in db.execute(
        """SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE t.tgname = 'audit_rate_limit' AND c.relname LIKE 'parted%'""")}
    assert triggers == {"parted", "parted_1", "parted_2", "parted_3"}
    disable_rate_limit(maintainer, "public.parted")
    assert insert("parted_2", 103) and insert("parted_3", 203)
    assert db.execute("""SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                          WHERE t.tgname = 'audit_rate_limit' AND c.relname LIKE 'parted%'""").fetchone() == (0,)


@pytest.mark.parametrize("tracked", [False, True], ids=["limited", "tracked_and_limited"])
def test_a_partitioned_table_attached_with_its_partitions_is_limited_whole(db, connect, maintainer, tracked):
    """A table that has partitions of its own, attached to a limited (and tracked) one: each level gets
    the rate-limit trigger (a statement trigger is not copied to partitions), the deepest first, so that
    the check of each as it comes finds what is below it limited already (trial 110, l6)."""
    db.execute("""CREATE TABLE public.tree (id int, body text) PARTITION BY RANGE (id);
                  CREATE TABLE public.tree_1 PARTITION OF public.tree FOR VALUES FROM (0) TO (100);
                  CREATE TABLE public.branch (id int, body text) PARTITION BY RANGE (id);
                  CREATE TABLE public.branch_1 PARTITION OF public.branch FOR VALUES FROM (100) TO (150);
                  CREATE TABLE public.branch_2 PARTITION OF public.branch FOR VALUES FROM (150) TO (200);
                  ALTER TABLE public.tree OWNER TO app_maintainer; ALTER TABLE public.tree_1 OWNER TO app_maintainer;
                  ALTER TABLE public.branch OWNER TO app_maintainer;
                  ALTER TABLE public.branch_1 OWNER TO app_maintainer;
                  ALTER TABLE public.branch_2 OWNER TO app_maintainer""")
    if tracked:
        enable_tracking(maintainer, "public.tree")
    enable_rate_limit(maintainer, "public.tree", per_user_per_minute=4, per_tenant_per_minute=None)
    maintainer.execute("ALTER TABLE public.tree ATTACH PARTITION public.branch FOR VALUES FROM (100) TO (200)")
    limited = {name for (name,) in db.execute(
        """SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE t.tgname = 'audit_rate_limit' AND c.relname ~ '^(tree|branch)'""")}
    assert limited == {"tree", "tree_1", "branch", "branch_1", "branch_2"}
    assert status(db).problems == []
    disable_rate_limit(maintainer, "public.tree")
    if tracked:
        assert disable_tracking(maintainer, "public.tree") is True


def test_counters_whose_windows_passed_are_purged_and_keys_are_bounded(db, connect, maintainer, notes):
    """Every new key added a counter row for good: a writer making up keys grew the table without
    end. Rows two windows old count for nothing, and purge_rate_counters deletes them."""
    writer = connect("app_writer")
    for i in range(50):
        rate_limit(writer, "api.call", f"made-up-{i}", 5, window_seconds=1)
    time.sleep(2.1)  # two windows of one second
    rate_limit(writer, "api.call", "live", 5, window_seconds=1)
    rate_limit(writer, "api.call", "hourly", 5, window_seconds=3600)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute("SELECT audit.purge_rate_counters()")
    assert maintainer.execute("SELECT audit.purge_rate_counters()").fetchone() == (50,)
    assert sorted(k for (k,) in db.execute("SELECT key FROM audit.rate_counters")) == [
        "operation:api.call:1:live", "operation:api.call:3600:hourly"]
    # A table's key is made of the tenant and actor the session names: bounded too.
    enable_rate_limit(maintainer, notes, per_user_per_minute=5, per_tenant_per_minute=None)
    with pytest.raises(psycopg.Error) as refused, audit_context(writer, tenant_id="t" * 1300, actor_id="a" * 1300):
        writer.execute("INSERT INTO notes (body) VALUES ('x')")
    assert refused.value.sqlstate == "PA005" and "more than 2400" in str(refused.value)
    assert rows(db) == 0
    assert db.execute("SELECT count(*) FROM audit.rate_counters").fetchone() == (2,)


def test_counter_rows_are_read_by_their_index_once_a_small_counter_table_is_analyzed(db, connect, maintainer, notes):
    """Autovacuum analyzes rate_counters soon, every write updating it; holding a few keys, it is a page
    or two, and the planner then prefers reading every counter row to the primary key: each limited
    write scanned the whole table, a third more instructions at 144 rows (docs/benchmarks.md)."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=1000, per_tenant_per_minute=1000)
    first = connect("app_writer")
    for user in range(8):
        assert write(first, user=f"u{user}") is None
    db.execute("ANALYZE audit.rate_counters")
    pages = db.execute("SELECT relpages FROM pg_class WHERE oid = 'audit.rate_counters'::regclass").fetchone()[0]
    assert pages <= 2
    writer = connect("app_writer", autocommit=False)  # plans its statements after the ANALYZE
    for user in list(range(8)) * 2:  # its shards' rows made, then found
        with audit_context(writer, tenant_id="t1", actor_id=f"u{user}"):
            writer.execute("INSERT INTO notes (body) VALUES ('x')")
    scans = writer.execute("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
                           " WHERE relid = 'audit.rate_counters'::regclass").fetchone()
    writer.commit()
    assert scans[0] == 0 and scans[1] >= 32, scans
    assert rows(db) == 24
    assert db.execute("SELECT sum(count + prev_count) FROM audit.rate_counters").fetchone()[0] == 48


def test_every_caller_of_rate_take_plans_it_with_sequential_scans_off(db):
    """_rate_take's statements are planned under its callers' settings (a SET clause of its own costs a
    limited write 3%): every function that calls it must carry enable_seqscan = off, or the test above
    holds for the trigger only."""
    callers = db.execute("SELECT p.proname, p.proconfig FROM pg_proc p"
                         " WHERE p.pronamespace = 'audit'::regnamespace AND p.proname <> '_rate_take'"
                         "   AND p.prosrc LIKE '%audit._rate_take(%'").fetchall()
    assert sorted(name for name, _ in callers) == ["_rate_limit_trigger", "rate_limit"]
    for name, config in callers:
        assert "enable_seqscan=off" in (config or []), name
    assert db.execute("SELECT proconfig FROM pg_proc WHERE oid = 'audit._rate_take(text, integer, integer)'"
                      "::regprocedure").fetchone() == (None,)


def test_one_operation_limited_per_minute_and_per_hour_counts_against_both(db, connect):
    """Two calls for one operation and key, each with its own window (8 a minute, 5 an hour), shared one
    counter row, and each call restarted the window of the other's length: neither limit held."""
    writer = connect("app_writer")
    admitted = 0
    for _ in range(20):
        try:
            rate_limit(writer, "login", "10.0.0.9", 8, window_seconds=60)
            rate_limit(writer, "login", "10.0.0.9", 5, window_seconds=3600)
            admitted += 1
        except RateLimited:
            pass
    assert admitted == 5  # the hour's limit, the tighter here (20 before)
    counted = dict(db.execute("SELECT key, sum(count + prev_count) FROM audit.rate_counters GROUP BY key").fetchall())
    assert counted.keys() == {"operation:login:60:10.0.0.9", "operation:login:3600:10.0.0.9"}
    assert counted["operation:login:3600:10.0.0.9"] == 5


def test_the_longest_user_the_log_records_is_counted_not_refused_for_its_key(db, connect, maintainer, notes):
    """docs/rate-limits.md: a key has room for the longest tenant, actor type and id the log records
    (256, 64 and 256 characters); each here of 4-byte characters, one of them quoted in the key."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=1, per_tenant_per_minute=None)
    tenant, actor_type, actor_id = '"' + "\U0001f600" * 255, "\U0001f600" * 64, "\U0001f600" * 256
    writer = connect("app_writer")
    with audit_context(writer, tenant_id=tenant, actor_type=actor_type, actor_id=actor_id):
        writer.execute("SELECT audit.record('app.checked')")  # the log takes this user
        writer.execute("INSERT INTO notes (body) VALUES ('x')")
    assert write(writer, tenant=tenant, user=actor_id) is None  # another type: another user
    assert 2300 < db.execute("SELECT max(octet_length(key)) FROM audit.rate_counters").fetchone()[0] <= 2400
    with pytest.raises(psycopg.Error) as full, \
            audit_context(writer, tenant_id=tenant, actor_type=actor_type, actor_id=actor_id):
        writer.execute("INSERT INTO notes (body) VALUES ('x')")
    assert full.value.sqlstate == "PA009"
    assert rows(db) == 2


def test_counters_under_the_keys_of_the_release_before_count_for_nobody(db, connect, maintainer, notes):
    """docs/rate-limits.md: counters named by tenant and actor id joined by ':' (the release before)
    are not this release's users: an upgrade starts every per-user count afresh, and the old rows
    pass with their windows."""
    enable_rate_limit(maintainer, notes, per_user_per_minute=3, per_tenant_per_minute=None, window_seconds=600)
    oid = db.execute("SELECT 'public.notes'::regclass::oid").fetchone()[0]
    db.execute("""INSERT INTO audit.rate_counters (key, shard, window_no, count, prev_count, window_seconds)
                  VALUES (%s, 0, floor(date_part('epoch', now()) / 600), 3, 3, 600)""", (f"table:{oid}:user:t1:u1",))
    writer = connect("app_writer")
    assert [write(writer) for _ in range(3)] == [None] * 3
    assert write(writer) is not None
    assert db.execute("SELECT count FROM audit.rate_counters WHERE key = %s", (f"table:{oid}:user:t1:u1",)).fetchone() == (3,)
