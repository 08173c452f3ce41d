"""preview_prune and prune_events: what goes, in batches, and the record of who asked."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from pgaudit_py import InvalidArgument, audit_context, preview_prune, prune_events, record, seal, status
from pgaudit_py.chain import verify_chain
from pgaudit_py.retention import prune_all


@pytest.fixture
def aged(db, connect):
    """Five sealed events 100 days old (blocks of 2, 2 and 1), two sealed recent ones, one pending old one."""
    db.execute("""
        INSERT INTO audit.event_intake (id, actor_type, db_role, kind, outcome, txid, occurred_at, payload, idempotency_key)
        SELECT gen_random_uuid(), 'user', 'x', 'old.event', 'success', pg_current_xact_id(),
               now() - interval '100 days' + make_interval(secs => n), '{}', 'key-' || n
          FROM generate_series(1, 5) n""")
    db.execute("""INSERT INTO audit.idempotency_keys (idempotency_key, event_id, request_hash)
                  SELECT idempotency_key, id, '\\x00' FROM audit.event_intake""")
    for _ in range(3):
        seal(db, 2)
    writer = connect("app_writer")
    record(writer, "new.event", idempotency_key="fresh")
    record(writer, "new.event")
    seal(db)
    # Committed only now, yet it happened long ago: pending events are never pruned.
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                  VALUES ('user', 'x', 'old.pending', 'success', pg_current_xact_id(), now() - interval '200 days', '{}')""")


def test_preview_shows_what_would_go_and_removes_nothing(connect, counts, aged):
    preview = preview_prune(connect("app_reader"), timedelta(days=30), batch_size=2)
    assert (preview.events, preview.first_seq, preview.last_seq, preview.batches) == (5, 1, 5, 3)
    assert counts() == (1, 7)


def test_prune_goes_batch_by_batch_and_records_who_asked(db, connect, counts, aged):
    maintainer = connect("app_maintainer")
    with audit_context(maintainer, actor_type="user", actor_id="dba-1"):
        first = prune_events(maintainer, timedelta(days=30), batch_size=2)
    assert (first.deleted, first.first_seq, first.last_seq, first.more) == (2, 1, 2, True)
    batches = []
    assert prune_all(maintainer, "30 days", batch_size=2, on_batch=batches.append) == 3
    assert [(b.deleted, b.first_seq, b.last_seq, b.more) for b in batches] == [(2, 3, 4, True), (1, 5, 5, False)]
    assert db.execute("SELECT seq, kind FROM audit.event_log ORDER BY seq").fetchall() == [
        (6, "new.event"), (7, "new.event")]
    pruned = db.execute("""SELECT actor_type, actor_id, db_role, payload - '{cutoff,last_block_hash}'::text[],
                                  target_type FROM audit.events
                            WHERE kind = 'audit.pruned' ORDER BY occurred_at""").fetchall()
    assert pruned == [
        ("user", "dba-1", "app_maintainer", {"older_than": "30 days", "deleted": 2, "first_seq": 1, "last_seq": 2, "first_block": 1, "last_block": 1}, "event_log"),
        ("db_role", "app_maintainer", "app_maintainer", {"older_than": "30 days", "deleted": 2, "first_seq": 3, "last_seq": 4, "first_block": 2, "last_block": 2}, "event_log"),
        ("db_role", "app_maintainer", "app_maintainer", {"older_than": "30 days", "deleted": 1, "first_seq": 5, "last_seq": 5, "first_block": 3, "last_block": 3}, "event_log"),
    ]
    # Pending events stay, whatever their age; the keys of pruned events go with them.
    assert db.execute("SELECT kind FROM audit.event_intake WHERE kind = 'old.pending'").fetchall() == [("old.pending",)]
    assert db.execute("SELECT idempotency_key FROM audit.idempotency_keys").fetchall() == [("fresh",)]


def test_nothing_to_prune_records_nothing(db, connect, counts):
    result = prune_events(connect("app_maintainer"), timedelta(days=1))
    assert (result.deleted, result.more) == (0, False)
    assert counts() == (0, 0)


@pytest.mark.parametrize("older_than, batch_size, message", [
    (timedelta(0), 10, "older_than must be a positive interval"),
    ("-5 days", 10, "older_than must be a positive interval"),
    # Compared as positive (a month counted as 30 days), yet no age: now() less it may be ahead of now.
    ("-1 mon 30 days 1 hour", 10, "older_than must be a positive interval"),
    ("1 day -1 hour", 10, "older_than must be a positive interval"),
    ("1 mon -1 day", 10, "older_than must be a positive interval"),
    # No time can be taken from now(): it overflowed (22008) instead of being refused.
    ("300000 years", 10, "older_than must be a positive interval"),
    ("36601 days", 10, "older_than must be a positive interval"),
    # compared as intervals are (a month as 30 days) no more than 36600 days, yet reaching further back
    ("101 years", 10, "older_than must be a positive interval"),
    ("1220 mons", 10, "older_than must be a positive interval"),
    (timedelta(days=36601), 10, "older_than must be a positive interval"),
    (timedelta(days=1), 0, "batch_size must be between 1 and 100000, got 0"),
    (timedelta(days=1), 100001, "batch_size must be between 1 and 100000, got 100001"),
])
def test_bad_prune_arguments_remove_nothing(connect, counts, aged, older_than, batch_size, message):
    with pytest.raises(InvalidArgument, match=message):
        prune_events(connect("app_maintainer"), older_than, batch_size)
    with pytest.raises(InvalidArgument, match=message):
        preview_prune(connect("app_reader"), older_than, batch_size)
    assert counts() == (1, 7)


def test_a_block_with_old_and_new_events_stays_whole_and_the_chain_verifies(db, connect, counts):
    """Prune removes whole blocks only: block 1 (both events old) goes, block 2 (one old, one new
    event) stays with both, or what remains would no longer verify."""
    db.execute("""
        INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
        SELECT 'user', 'x', kind, 'success', pg_current_xact_id(), at, '{}'
          FROM (VALUES (1, 'old.first', now() - interval '100 days'), (2, 'old.second', now() - interval '99 days'),
                       (3, 'old.third', now() - interval '98 days'), (4, 'new.event', now())) AS e(n, kind, at)
         ORDER BY n""")
    assert seal(db, 2).block_no == 1
    assert seal(db).block_no == 2
    block_2 = "SELECT seq, kind FROM audit.event_log WHERE block_no = 2 ORDER BY seq"
    assert db.execute(block_2).fetchall() == [(3, "old.third"), (4, "new.event")]
    maintainer = connect("app_maintainer")
    first = prune_events(maintainer, timedelta(days=30))
    assert (first.deleted, first.first_seq, first.last_seq, first.more) == (2, 1, 2, False)
    assert prune_events(maintainer, timedelta(days=30)).deleted == 0
    assert preview_prune(maintainer, timedelta(days=30)).events == 0
    assert db.execute(block_2).fetchall() == [(3, "old.third"), (4, "new.event")]
    assert db.execute("SELECT block_no FROM audit.prune_points").fetchall() == [(1,)]
    seal(db)  # the audit.pruned event
    assert db.execute("SELECT ok, problem, retained_from_block, retained_from_seq FROM audit.verify()").fetchone() == (
        True, None, 2, 3)
    python_check = verify_chain(db)
    assert (python_check.ok, python_check.problem, python_check.events_checked) == (True, None, 3)


@pytest.mark.parametrize("age", ["-1 mon 30 days 1 hour", "1 day -1 second", "0 days", "300000 years",
                                 "2147483647 mons", "36601 days"])
def test_the_archives_ages_are_ages_too(db, age):
    """hot_retention and next_archive_batch's older_than are refused as prune's older_than is."""
    with pytest.raises(psycopg.Error, match="hot_retention must be a positive interval") as refused:
        db.execute("SELECT audit.set_archive_settings(%s::interval, 5, NULL)", (age,))
    assert refused.value.sqlstate == "PA005"
    with pytest.raises(psycopg.Error, match="older_than must be a positive interval") as refused:
        db.execute("SELECT audit.next_archive_batch(%s::interval)", (age,))
    assert refused.value.sqlstate == "PA005"


def test_a_stored_hot_retention_that_is_no_age_plans_nothing_and_status_names_it(db, connect):
    """An earlier release's setter stored any interval greater than zero (trial 97, a5): the archive
    checks the stored value where it uses it, rather than planning a batch of events just sealed."""
    record(connect("app_writer"), "order.paid")
    seal(db)
    db.execute("UPDATE audit.archive_settings SET hot_retention = '-1 mon 30 days 1 hour'")
    with pytest.raises(psycopg.Error, match="the hot_retention stored in archive_settings is not an age") as refused:
        connect("app_maintainer").execute("SELECT audit.next_archive_batch()")
    assert refused.value.sqlstate == "PA005"
    assert db.execute("SELECT count(*) FROM audit.archive_batches").fetchone() == (0,)
    assert [p for p in status(db).problems if "hot_retention" in p] == [
        "archive_settings.hot_retention is not an age (positive, no part negative, at most 100 years): the archive"
        " plans no batch by it until it is set again (pgaudit archive settings --hot-retention)"]
    connect("app_maintainer").execute("SELECT audit.set_archive_settings('90 days', 1000, NULL)")
    assert status(db).problems == []
