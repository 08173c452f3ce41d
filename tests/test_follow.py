"""Following the log: one NOTIFY per sealed round; follow() yields every sealed event exactly once,
in seq order, across late commits and reconnects; `pgaudit events --follow` prints them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from late_writers import LateWriters
from stop_signals import signal_until_exit

from pgaudit_py import record, seal
from pgaudit_py.follow import follow


def test_each_sealed_round_sends_one_notification_with_its_last_seq(db, connect):
    listener = connect()
    listener.execute("LISTEN audit")
    db.execute("SELECT audit.record(kind => 'order.paid') FROM generate_series(1, 2500)")
    assert [seal(db, 1000).last_seq for _ in range(4)] == [1000, 2000, 2500, None]  # the last round is empty
    notes = list(listener.notifies(timeout=1))
    assert [(n.channel, n.payload) for n in notes] == [("audit", "1000"), ("audit", "2000"), ("audit", "2500")]


def test_a_round_rolled_back_notifies_no_one(db, connect):
    listener = connect()
    listener.execute("LISTEN audit")
    db.execute("SELECT audit.record(kind => 'order.paid')")
    with db.transaction(force_rollback=True):
        assert seal(db).sealed == 1
    assert list(listener.notifies(timeout=0.5)) == []


def test_follow_starts_after_the_last_sealed_event_and_wakes_on_the_next_round(db, connect):
    record(db, "order.paid")
    seal(db)
    follower = connect()
    got: list[tuple[int | None, str]] = []
    stop = threading.Event()

    def consume() -> None:
        for event in follow(follower, poll_interval=30, stop=stop):  # only the NOTIFY can wake it in time
            got.append((event.seq, event.kind))
            if len(got) == 2:
                stop.set()
                return

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.5)
    record(db, "order.refunded")
    record(db, "user.login")
    started = time.monotonic()
    seal(db)
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert got == [(2, "order.refunded"), (3, "user.login")]


def test_follow_filters_and_pages_through_a_backlog(db, connect):
    db.execute("SELECT audit.record(kind => CASE WHEN n % 3 = 0 THEN 'order.paid' ELSE 'user.login' END,"
               " tenant_id => 't' || (n % 2)) FROM generate_series(1, 1300) n")
    seal(db, 100000)
    stop = threading.Event()
    seen = []
    for event in follow(connect(), since_seq=0, kind_prefix="order.", tenant_id="t1", poll_interval=0.1, stop=stop):
        seen.append(event)
        if len(seen) == 217:
            stop.set()
    expected = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'order.paid' AND tenant_id = 't1'"
                          " ORDER BY seq").fetchall()
    assert [(e.seq,) for e in seen] == expected and len(expected) == 217


def test_follow_refuses_a_connection_in_a_transaction(connect):
    conn = connect(autocommit=False)
    with pytest.raises(psycopg.ProgrammingError, match="autocommit"):
        next(follow(conn))


def test_every_event_exactly_once_under_late_commits_and_reconnects(db, connect):
    """Writers commit late and out of order while the sealer runs; the follower drops its connection
    every few events and resumes from the last seq it saw."""
    writers = LateWriters(connect, events=40)

    seen: list[tuple[int, str]] = []
    last = 0
    deadline = time.monotonic() + 60
    while len(seen) < 160 and time.monotonic() < deadline:
        conn = connect()
        stop = threading.Event()
        for event in follow(conn, since_seq=last, poll_interval=0.2, stop=stop):
            assert event.seq is not None
            seen.append((event.seq, str(event.id)))
            last = event.seq
            if len(seen) % 13 == 0 or len(seen) == 160:
                break  # a dropped connection: resume from `last`
        conn.close()
    writers.finish()
    seal(db)

    assert [s for s, _ in seen] == list(range(1, 161))
    assert sorted(i for _, i in seen) == sorted(writers.written)


def test_the_cli_follows_until_sigterm(db, connect):
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user={info.user}"
    record(db, "order.paid")
    seal(db)
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "events", "--follow", "--json",
                             "--kind-prefix", "user.", "--dsn", dsn],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # connected and listening
        record(db, "order.refunded")
        record(db, "user.login", actor_id="ada")
        seal(db)
        line = proc.stdout.readline()  # type: ignore[union-attr]
        event = json.loads(line)
        assert (event["seq"], event["kind"], event["actor_id"]) == (3, "user.login", "ada")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == ""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_cli_follower_stops_cleanly_however_often_it_is_told_to(db, stop):
    """Ctrl-C pressed again and again (or SIGTERM repeated) until the follower is gone, while events
    are being sealed: status 0, no traceback, whichever moment of the stop a later signal lands in."""
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=app_reader"
    started = db.execute("SELECT clock_timestamp()").fetchone()[0]
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "events", "--follow", "--dsn", dsn],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    # Its own session (not one an earlier test left): connected, so past loading, its signals taken.
    while not db.execute("SELECT 1 FROM pg_stat_activity WHERE usename = 'app_reader' AND backend_start > %s",
                         [started]).fetchone():
        assert time.monotonic() < deadline and proc.poll() is None, "the follower never connected"
        time.sleep(0.05)
    record(db, "storm.one")
    seal(db)
    out, err = signal_until_exit(proc, stop)
    # An interrupted query may leave psycopg's one warning line ("error ignored in rollback"): no more.
    assert (proc.returncode, "Traceback" in err, "pgaudit:" in err) == (0, False, False), err


def test_the_cli_resumes_after_a_seq(db):
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user={info.user}"
    for kind in ("a.one", "a.two", "a.three"):
        record(db, kind)
    seal(db)
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "events", "--follow", "--since-seq", "1",
                             "--dsn", dsn], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert "a.two" in lines[0] and "a.three" in lines[1]
    assert proc.returncode == 0


def test_the_cli_following_from_now_resumes_from_there_after_a_lost_connection(db):
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=app_reader"
    record(db, "first.one")
    seal(db)
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "events", "--follow", "--dsn", dsn],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (row := db.execute("SELECT pid FROM pg_stat_activity WHERE usename = 'app_reader'"
                                     " AND state = 'idle' AND query LIKE '%%seal_status%%'").fetchone()):
            assert time.monotonic() < deadline, "the follower never connected"
            time.sleep(0.1)
        db.execute("SELECT pg_terminate_backend(%s)", [row[0]])
        record(db, "during.outage")  # sealed while the follower waits to reconnect
        seal(db)
        time.sleep(3)
        record(db, "after.reconnect")  # so that a follower that skipped the first still prints a line
        seal(db)
        line = proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert "during.outage" in line and "first.one" not in line + out
    assert "connection lost" in err


def test_a_json_line_stays_one_line_whatever_the_payload(db):
    from pgaudit_py import list_events
    from pgaudit_py.cli.events import follow_line
    record(db, "note.added", payload={"text": "a\u2028b\u2029c\u0085d\ne\u202ef"})
    seal(db)
    event = list_events(db, since_seq=0)[0]
    line = follow_line(event, True)
    assert line.splitlines() == [line]
    assert json.loads(line)["payload"]["text"] == "a\u2028b\u2029c\u0085d\ne\u202ef"


def test_the_cli_gives_every_event_exactly_once_under_late_commits_and_killed_connections(db, connect):
    """The same guarantee from `pgaudit events --follow --json`: writers commit late and out of order
    while the sealer runs, and the follower's connection is killed again and again; it reconnects and
    resumes after the last event it printed."""
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=app_reader"
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "pgaudit_py.cli", "events", "--follow",
                             "--json", "--since-seq", "0", "--dsn", dsn], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    writers = LateWriters(connect, events=30, pause=0.15)  # about 2 s a writer: the kills land meanwhile
    stop_killing = threading.Event()
    kills: list[int] = []

    def killer() -> None:
        while not stop_killing.is_set():
            time.sleep(0.5)
            killed = db.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                " WHERE usename = 'app_reader'").fetchone()
            kills.append(killed[0] if killed else 0)

    killing = threading.Thread(target=killer)
    killing.start()
    seen: list[tuple[int, str]] = []
    try:
        deadline = time.monotonic() + 90
        while len(seen) < 120 and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if line:
                event = json.loads(line)
                seen.append((event["seq"], event["id"]))
    finally:
        writers.finish()
        stop_killing.set()
        killing.join()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints where it hangs
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"SIGTERM did not stop it; seen {len(seen)}:\n{err[-4000:]}") from None
    assert [s for s, _ in seen] == list(range(1, 121)), err[-2000:]
    assert sorted(i for _, i in seen) == sorted(writers.written)
    assert sum(kills) >= 2 and err.count("reconnecting in") >= 2  # lost, and found again, more than once
