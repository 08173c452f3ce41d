"""The log's partitions: made by the sealer, guarded like the log, dropped whole by prune.

A partition holds a million seqs (the first one, made by migration 0018 from the log as it was,
may hold more); a fresh install's first partition ends at 999,999. The tests start the sealer's
count near that end instead of sealing a million events."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from conftest import FIRST_PARTITION_END as FIRST_END

from pgaudit_py import install, preview_prune, prune_events, seal, status
from pgaudit_py.chain import verify_chain


def partitions(db):
    return db.execute("SELECT part::text, first_seq, last_seq FROM audit._log_partitions()").fetchall()


def record_old(db, n, key_prefix="k", kind="old.event"):
    """n events 100 days old, each with an idempotency key (as record() would keep it)."""
    db.execute("""
        WITH made AS (
            INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, idempotency_key)
            SELECT 'user', 'x', %s, 'success', pg_current_xact_id(),
                   now() - interval '100 days' + make_interval(secs => g), '{}', %s || '-' || g
              FROM generate_series(1, %s) g
            RETURNING id, idempotency_key)
        INSERT INTO audit.idempotency_keys (idempotency_key, event_id, request_hash)
        SELECT idempotency_key, id, '\\x00' FROM made""", [kind, key_prefix, n])


def test_a_round_that_reaches_a_partitions_end_goes_on_in_a_new_block_in_the_next(near_end):
    db = near_end
    assert partitions(db) == [("audit.event_log_000000", 0, FIRST_END)]
    record_old(db, 12)
    result = seal(db, 100)
    assert (result.sealed, result.first_seq, result.last_seq) == (12, FIRST_END - 4, FIRST_END + 7)
    # Two blocks, split at the partition's end, chained as one.
    assert db.execute("SELECT first_seq, last_seq, event_count FROM audit.blocks ORDER BY block_no").fetchall() == [
        (FIRST_END - 4, FIRST_END, 5), (FIRST_END + 1, FIRST_END + 7, 7)]
    assert partitions(db) == [("audit.event_log_000000", 0, FIRST_END),
                              ("audit.event_log_000001", FIRST_END + 1, FIRST_END + 1_000_000)]
    assert db.execute("SELECT tableoid::regclass::text, count(*) FROM audit.event_log GROUP BY 1 ORDER BY 1").fetchall() == [
        ("audit.event_log_000000", 5), ("audit.event_log_000001", 7)]
    assert db.execute("SELECT ok, events_checked FROM audit.verify()").fetchone() == (True, 12)
    assert verify_chain(db).ok


def test_the_next_partition_is_made_ahead_while_a_reader_holds_the_log_and_the_reader_reads_on(near_end, connect):
    """A partition is attached (a lock readers do not conflict with), not created in place (which
    would lock out every reader, and wait behind any of them)."""
    db = near_end
    reader = connect("app_reader")
    reader.autocommit = False
    reader.execute("SELECT count(*) FROM audit.events")  # holds the log until it commits
    record_old(db, 2)
    with db.transaction():
        seal(db, 100)
        assert len(partitions(db)) == 2  # made ahead of need, the reader inside
        assert reader.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,)  # not locked out
    reader.rollback()
    assert db.execute("SELECT last_seq FROM audit.seal_state").fetchone() == (FIRST_END - 3,)


@pytest.mark.parametrize("statement", [
    "INSERT INTO {} SELECT * FROM audit.event_log LIMIT 1",
    "UPDATE {} SET payload = '{{\"forged\": true}}'",
    "DELETE FROM {}",
    "TRUNCATE {}",
])
@pytest.mark.parametrize("role", [None, "audit_owner"])
def test_a_partition_refuses_changes_to_everyone(near_end, statement, role):
    """A statement on a partition directly meets the partition's own guards (the log's statement
    triggers are not cloned to its partitions), superusers and the owner role included."""
    db = near_end
    record_old(db, 12)
    seal(db, 100)
    for part in ("audit.event_log_000000", "audit.event_log_000001"):
        with db.transaction():
            if role:
                db.execute(f"SET LOCAL ROLE {role}")
            with pytest.raises(psycopg.Error) as raised, db.transaction():
                db.execute(statement.format(part))
            assert raised.value.sqlstate in ("PA006", "42501"), raised.value
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE payload ? 'forged'").fetchone() == (0,)
    assert db.execute("SELECT ok, events_checked FROM audit.verify()").fetchone() == (True, 12)


def test_status_names_a_partitions_disabled_guard_or_grant_and_the_installer_repairs_it(near_end):
    db = near_end
    record_old(db, 12)
    seal(db, 100)
    db.execute("ALTER TABLE audit.event_log_000001 DISABLE TRIGGER guard_update")
    db.execute("DROP TRIGGER guard_truncate ON audit.event_log_000000")
    db.execute("GRANT DELETE ON audit.event_log_000001 TO audit_reader")
    problems = status(db).problems
    assert "guard trigger guard_update on audit.event_log_000001 is disabled" in problems
    assert "guard trigger guard_truncate on audit.event_log_000000 is missing" in problems
    assert "audit_reader has DELETE on audit.event_log_000001" in problems
    install(db)
    assert status(db).problems == []


def test_prune_drops_a_partition_whose_events_all_go_in_one_call(near_end, connect):
    db = near_end
    record_old(db, 2, "a")
    seal(db, 100)
    record_old(db, 3, "b")
    seal(db, 100)  # the first partition: two blocks, the last ending at its end
    record_old(db, 4, "c")
    seal(db, 100)  # the second partition: one block
    maintainer = connect("app_maintainer")
    preview = preview_prune(maintainer, timedelta(days=30), batch_size=1)
    # The first partition is one batch whatever batch_size says; the second's block another.
    assert (preview.events, preview.first_seq, preview.last_seq, preview.batches) == (9, FIRST_END - 4, FIRST_END + 4, 2)
    result = prune_events(maintainer, timedelta(days=30), batch_size=1)
    assert (result.deleted, result.first_seq, result.last_seq, result.more) == (5, FIRST_END - 4, FIRST_END, True)
    assert partitions(db) == [("audit.event_log_000001", FIRST_END + 1, FIRST_END + 1_000_000)]
    assert to_regclass(db, "audit.event_log_000000") is None
    # Its events' idempotency keys went with it; the next partition's stay.
    assert db.execute("SELECT idempotency_key FROM audit.idempotency_keys ORDER BY 1").fetchall() == [
        ("c-1",), ("c-2",), ("c-3",), ("c-4",)]
    assert db.execute("SELECT min(seq), count(*) FROM audit.event_log").fetchone() == (FIRST_END + 1, 4)
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)
    assert verify_chain(db).ok
    # A partition whose events are not all prunable is deleted from row by row, and kept.
    result = prune_events(maintainer, timedelta(days=30), batch_size=1)
    assert (result.deleted, result.more) == (4, False)
    assert partitions(db) == [("audit.event_log_000001", FIRST_END + 1, FIRST_END + 1_000_000)]
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,)


def test_prune_deletes_rows_when_the_log_stays_busy_and_drops_the_emptied_partition_later(near_end, connect):
    """Dropping a partition needs the log to itself: after 50 ms of waiting for a reader, prune
    deletes a batch of rows instead; nothing is left undone, and a later prune drops the table."""
    db = near_end
    record_old(db, 5)
    seal(db, 100)
    record_old(db, 1, "later")
    seal(db, 100)
    reader = connect("app_reader")
    reader.autocommit = False
    reader.execute("SELECT count(*) FROM audit.events")
    maintainer = connect("app_maintainer")
    result = prune_events(maintainer, timedelta(days=30), batch_size=1)
    assert (result.deleted, result.last_seq) == (5, FIRST_END)
    assert db.execute("SELECT min(seq) FROM audit.event_log").fetchone() == (FIRST_END + 1,)
    assert len(partitions(db)) == 2
    reader.rollback()
    prune_events(maintainer, timedelta(days=30), batch_size=1)
    assert [p[0] for p in partitions(db)] == ["audit.event_log_000001"]
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)


def test_an_archive_batch_ends_at_a_partitions_end(near_end, connect):
    db = near_end
    record_old(db, 12)
    seal(db, 3)
    seal(db, 100)
    batch = db.execute("SELECT first_seq, last_seq FROM audit.next_archive_batch('30 days')").fetchone()
    assert batch == (FIRST_END - 4, FIRST_END)


def to_regclass(db, name):
    return db.execute("SELECT to_regclass(%s)", [name]).fetchone()[0]
