"""The intake rotates through four partitions by intake_id (16,384 ids each); seal() empties a
partition writers have left with TRUNCATE, once an earlier round drained it and every snapshot in
the cluster is younger than that round; never one that a writer or reader is inside or that holds
a pending event. Sealing keeps intake_id order across partitions."""

from __future__ import annotations

import os
import re
import subprocess
import time

import psycopg
import pytest

from pgaudit_py import record, seal, status
from pgaudit_py.chain import verify_chain
from pgaudit_py.tempdb import find_binary

RANGE = 16384


def pages(db, n: int) -> int:
    return db.execute(f"SELECT pg_relation_size('audit.event_intake_{n}') / 8192").fetchone()[0]


def move_writers_to(db, intake_id: int) -> None:
    """The next event written gets this intake_id (the sequence is the superuser's to set in a test)."""
    db.execute("SELECT setval('audit.event_intake_intake_id_seq', %s, false)", [intake_id])


def sealed_order(db) -> list[int]:
    return [r[0] for r in db.execute("SELECT (payload ->> 'n')::int FROM audit.event_log"
                                     " WHERE kind = 'rot.e' ORDER BY seq")]


def write(conn, *numbers: int) -> None:
    for n in numbers:
        record(conn, "rot.e", payload={"n": n})


def test_a_drained_partition_writers_have_left_is_truncated_by_a_later_round(db):
    move_writers_to(db, RANGE - 5)
    write(db, *range(10))  # five in partition 0, five in partition 1
    assert (pages(db, 0), pages(db, 1)) == (1, 1)
    assert seal(db).sealed == 10
    assert sealed_order(db) == list(range(10))
    assert pages(db, 0) == 1  # drained by this very round: a snapshot taken before it commits could still read it
    assert seal(db).sealed == 0
    assert pages(db, 0) == 0  # drained earlier, older than every snapshot, and writers are on partition 1
    assert pages(db, 1) == 1  # writers are still on it: its deleted rows wait for the next rotation
    move_writers_to(db, 2 * RANGE)
    write(db, 10)
    seal(db)
    seal(db)
    assert (pages(db, 1), pages(db, 2)) == (0, 1)
    assert verify_chain(db).ok and status(db).problems == []


def test_sealing_keeps_intake_order_across_partitions_and_the_wrap(db, connect):
    early = connect(autocommit=False)
    move_writers_to(db, 1000)
    write(early, 0)  # partition 0, committed after the others
    move_writers_to(db, 4 * RANGE - 3)
    write(db, 1, 2, 3, 4, 5, 6)  # partition 3, then 0 again (the wrap)
    early.commit()
    assert seal(db).sealed == 7
    assert sealed_order(db) == [0, 1, 2, 3, 4, 5, 6]  # intake_id order: three runs, 0 / 3 / 0
    assert verify_chain(db).ok


def test_a_writer_inside_a_partition_holds_off_its_truncation_and_loses_nothing(db, connect):
    slow = connect(autocommit=False)
    move_writers_to(db, RANGE - 2)
    write(slow, 0)  # partition 0, uncommitted
    write(db, 1, 2, 3)  # 0, then partition 1
    assert seal(db).sealed == 3
    seal(db)
    assert pages(db, 0) == 1  # the writer's lock
    slow.commit()
    assert seal(db).sealed == 1
    seal(db)
    assert pages(db, 0) == 0
    assert sorted(sealed_order(db)) == [0, 1, 2, 3]


def test_a_pending_event_keeps_its_partition(db):
    move_writers_to(db, RANGE - 1)
    write(db, 0, 1)
    assert seal(db, 1).sealed == 1  # 0 sealed; 1 (partition 1) pending
    move_writers_to(db, 3 * RANGE)  # writers on partition 3: 1's partition is not theirs
    assert seal(db, 1).sealed == 1
    seal(db)
    assert sealed_order(db) == [0, 1]
    assert (pages(db, 0), pages(db, 1)) == (0, 0)


def test_a_reader_inside_holds_off_truncation_until_it_ends(db, connect):
    move_writers_to(db, RANGE - 1)
    write(db, 0, 1)
    reader = connect("app_reader", autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    assert reader.execute("SELECT count(*) FROM audit.events WHERE pending").fetchone() == (2,)
    assert seal(db).sealed == 2
    seal(db)
    assert pages(db, 0) == 1  # the reader's snapshot, and its lock
    assert reader.execute("SELECT count(*) FROM audit.events WHERE pending").fetchone() == (2,)
    reader.rollback()
    seal(db)
    assert pages(db, 0) == 0


def test_a_snapshot_older_than_the_drain_keeps_seeing_the_events(db, connect):
    """A snapshot taken while a round is uncommitted, that reads the intake only after the round
    committed (pg_dump does that: its snapshot first, its locks after), still finds each event,
    pending for it: no later round truncates the partition under it."""
    move_writers_to(db, RANGE - 2)
    write(db, 0, 1, 2)
    sealer = connect("app_maintainer", autocommit=False)
    assert seal(sealer).sealed == 3
    reader = connect("app_reader", autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    reader.execute("SELECT 1 FROM audit.event_types LIMIT 1")  # its snapshot, before the round commits
    sealer.commit()
    seal(db)
    seal(db)
    assert pages(db, 0) == 1
    assert reader.execute("SELECT count(*), bool_and(pending) FROM audit.events WHERE kind = 'rot.e'").fetchone() \
        == (3, True)
    reader.rollback()
    seal(db)
    assert pages(db, 0) == 0


def test_pg_dump_during_a_round_holds_every_event(db, connect, tmp_path):
    """pg_dump takes its REPEATABLE READ snapshot, then locks the tables one by one: started while a
    round is uncommitted, its dump holds all three events (pending, in the intake), though later
    rounds run before it reads the intake."""
    move_writers_to(db, RANGE - 2)
    write(db, 0, 1, 2)
    sealer = connect("app_maintainer", autocommit=False)
    assert seal(sealer).sealed == 3
    # pg_dump takes its snapshot, then waits for this lock: the round commits, and later rounds run,
    # meanwhile.
    holder = connect(autocommit=False)
    holder.execute("LOCK TABLE audit.master_keys IN ACCESS EXCLUSIVE MODE")
    info = db.info
    out = tmp_path / "dump.sql"
    dump = subprocess.Popen([find_binary("pg_dump"), "-h", info.host, "-p", str(info.port), "-U", info.user,
                             "-d", info.dbname, "--data-only", "-n", "audit", "-f", str(out)],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PGAPPNAME": "rotation_dump"})
    deadline = time.monotonic() + 20
    while not db.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'rotation_dump'"
                         " AND wait_event_type = 'Lock'").fetchone():
        assert time.monotonic() < deadline, "pg_dump never waited for the lock"
        time.sleep(0.05)
    sealer.commit()
    seal(db)
    seal(db)
    assert pages(db, 0) == 1  # pg_dump's snapshot is older than the round that drained it
    holder.rollback()
    assert dump.wait(30) == 0, dump.stderr.read()  # type: ignore[union-attr]
    text = out.read_text()
    dumped = 0
    for table in ("event_log", "event_intake_0", "event_intake_1", "event_intake_2", "event_intake_3"):
        match = re.search(rf"COPY audit\.{table} \(.*?\) FROM stdin;\n(.*?)\\\.\n", text, re.S)
        dumped += sum("\trot.e\t" in line for line in (match.group(1).splitlines() if match else []))
    assert dumped == 3


@pytest.mark.parametrize("statement", ["DELETE FROM audit.event_intake_0", "UPDATE audit.event_intake_0 SET kind = 'x'",
                                       "TRUNCATE audit.event_intake_0"])
def test_no_one_changes_a_partition_directly(db, statement):
    move_writers_to(db, 5)
    write(db, 0)
    with pytest.raises(psycopg.Error) as caught:
        db.execute(statement)
    assert caught.value.sqlstate == "PA006"
    assert db.execute("SELECT count(*) FROM audit.event_intake_0").fetchone() == (1,)


def test_status_names_a_partition_guard_disabled_or_a_partition_detached(db):
    db.execute("ALTER TABLE audit.event_intake_2 DISABLE TRIGGER guard_truncate")
    assert "guard trigger guard_truncate on audit.event_intake_2 is disabled" in status(db).problems
    db.execute("ALTER TABLE audit.event_intake_2 ENABLE TRIGGER guard_truncate")
    db.execute("ALTER TABLE audit.event_intake DETACH PARTITION audit.event_intake_3")
    assert ("partition event_intake_3 of audit.event_intake is not attached: writes that fall in it fail"
            in status(db).problems)


def test_the_intake_is_partitioned_and_hands_out_ids_one_at_a_time(db):
    """Sealing follows intake_id and a row's history follows sealing, so no session may hold a cache
    of ids (migration 0007); the rotated intake keeps that."""
    assert db.execute("SELECT relkind FROM pg_class WHERE oid = 'audit.event_intake'::regclass").fetchone() == ("p",)
    assert db.execute("SELECT seqcache FROM pg_sequence"
                      " WHERE seqrelid = 'audit.event_intake_intake_id_seq'::regclass").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit.event_intake'::regclass").fetchone() \
        == (4,)
    # The old table's length checks came over (migration 0007's), and went in migration 0019: the
    # writers check the bounds (tests/test_capture_integrity.py, tests/test_trust_attacks_14.py).
    assert db.execute("SELECT count(*) FROM pg_constraint"
                      " WHERE conrelid = 'audit.event_intake'::regclass AND contype = 'c'"
                      " AND conname LIKE '%\\_at\\_most\\_%\\_characters'").fetchone() == (0,)
