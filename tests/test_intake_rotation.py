"""The intake rotates through four partitions by intake_id (16,384 ids each); seal() empties a
partition writers have left, once drained, with TRUNCATE, and never one that a writer or reader is
inside or that holds a pending event. Sealing keeps intake_id order across partitions."""

from __future__ import annotations

import psycopg
import pytest

from pgaudit_py import record, seal, status
from pgaudit_py.chain import verify_chain

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


def test_a_drained_partition_writers_have_left_is_truncated(db):
    move_writers_to(db, RANGE - 5)
    write(db, *range(10))  # five in partition 0, five in partition 1
    assert (pages(db, 0), pages(db, 1)) == (1, 1)
    assert seal(db).sealed == 10
    assert sealed_order(db) == list(range(10))
    assert pages(db, 0) == 0  # drained, and writers are on partition 1
    assert pages(db, 1) == 1  # writers are still on it: its deleted rows wait for the next rotation
    move_writers_to(db, 2 * RANGE)
    write(db, 10)
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
    assert pages(db, 0) == 1  # the writer's lock: not even looked into
    slow.commit()
    assert seal(db).sealed == 1
    assert pages(db, 0) == 0
    assert sorted(sealed_order(db)) == [0, 1, 2, 3]


def test_a_pending_event_keeps_its_partition(db, connect):
    move_writers_to(db, RANGE - 1)
    write(db, 0, 1)
    assert seal(db, 1).sealed == 1  # 0 sealed; 1 (partition 1) pending
    move_writers_to(db, 3 * RANGE)  # writers on partition 3: 1's partition is not theirs
    assert seal(db, 1).sealed == 1
    assert sealed_order(db) == [0, 1]
    assert (pages(db, 0), pages(db, 1)) == (0, 0)


def test_a_reader_inside_holds_off_truncation_until_it_ends(db, connect):
    move_writers_to(db, RANGE - 1)
    write(db, 0, 1)
    reader = connect("app_reader", autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    assert reader.execute("SELECT count(*) FROM audit.events WHERE pending").fetchone() == (2,)
    assert seal(db).sealed == 2
    assert pages(db, 0) == 1  # the reader's lock
    assert reader.execute("SELECT count(*) FROM audit.events WHERE pending").fetchone() == (2,)  # its snapshot
    reader.rollback()
    seal(db)
    assert pages(db, 0) == 0


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
