"""Lookups in tables that only grow (the blocks, the archive batches an archive run deleted, the
quarantine) are served by an index, so that their cost does not grow with the log. Each test turns
sequential scans off in its session: a lookup that an index can serve then uses it whatever the
table's size, and one that no index can serve still reads the table, which the statistics of the
transaction count."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_history import quarantine_an_update

from pgaudit_py import archive as archiving
from pgaudit_py import enable_tracking, preview_prune, record, row_history, seal
from pgaudit_py.archive_targets import open_target
from pgaudit_py.checkpoint import Keys

Connect = Callable[..., psycopg.Connection]
DUE = timedelta(milliseconds=1)  # everything sealed before the call is old enough


def sealed_blocks(db: psycopg.Connection, blocks: int) -> None:
    for b in range(blocks):
        for i in range(5):
            record(db, "order.created", tenant_id="t1", payload={"block": b, "i": i})
        seal(db)


def read_so_far(conn: psycopg.Connection, table: str) -> tuple[int, int]:
    """Sequential scans, and rows fetched through an index (none without an index), of `table` in this
    transaction."""
    row = conn.execute("SELECT seq_scan, coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
                       " WHERE relid = %s::regclass",
                       (table,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def scans_off(connect: Connect, role: str) -> psycopg.Connection:
    conn = connect(role, autocommit=False)
    conn.execute("SET enable_seqscan = off")
    return conn


def test_a_restore_finds_each_events_block_among_its_batchs_blocks(db: psycopg.Connection, connect: Connect,
                                                                   tmp_path: Path) -> None:
    """Each restored event's block was looked up by its seq among every block ever sealed, with no
    index on the blocks' seqs: a scan of the blocks for each event, seconds a batch. Then among the
    batch's own blocks, still for each event, and each block's hash checked over all of the batch's
    events: as many reads as events times blocks, for a batch of small blocks (here 84 block rows and
    80 restored rows for 20 events in 4 blocks)."""
    sealed_blocks(db, 8)
    db.execute("SELECT audit.set_archive_settings('90 days', 20, NULL)")
    private = Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, public_key=private.public_key(), hmac_key=os.urandom(32))
    target = open_target(f"file://{tmp_path}/archive")
    run = archiving.archive(connect("app_maintainer"), target, keys, older_than=DUE, max_batches=2)
    assert [b.batch_id for b in run.batches] == ["blocks-000000000001-000000000004", "blocks-000000000005-000000000008"]
    restorer = scans_off(connect, "app_maintainer")
    assert archiving.restore_batch(restorer, target, run.batches[1].batch_id) == 20
    block_scans, block_rows = read_so_far(restorer, "audit.blocks")
    restored_scans, restored_rows = read_so_far(restorer, "audit.restored_events")
    restorer.commit()
    assert block_scans == restored_scans == 0
    assert block_rows <= 2 * 4 and restored_rows <= 20, (block_rows, restored_rows)
    assert db.execute("SELECT min(seq), max(seq), min(block_no), max(block_no), count(*)"
                      " FROM audit.restored_events").fetchone() == (21, 40, 5, 8, 20)
    assert db.execute("SELECT (seq - 21) / 5, array_agg(DISTINCT block_no) FROM audit.restored_events"
                      " GROUP BY 1 ORDER BY 1").fetchall() == [(0, [5]), (1, [6]), (2, [7]), (3, [8])]


def test_planning_an_archive_batch_and_pruning_pass_over_the_deleted_batches(db: psycopg.Connection,
                                                                             connect: Connect) -> None:
    """Archive runs leave their batches behind, deleted. The next batch to archive, and whether a
    block is still held by an unfinished batch (asked for each block at every prune), were looked
    for through all of them."""
    sealed_blocks(db, 3)
    # Two thousand earlier runs' batches, below the log's first block.
    db.execute("""INSERT INTO audit.archive_batches (batch_id, first_block, last_block, first_seq, last_seq,
                                                     data_sha256, gz_sha256, manifest_sha256, deleted_at)
                  SELECT 'earlier-' || n, -2 * n, -2 * n + 1, 1, 1, '\\x00', '\\x00', '\\x00', now()
                    FROM generate_series(1, 2000) n""")
    assert db.execute("SELECT count(*) FROM audit.archive_batches WHERE state = 'deleted'").fetchone() == (2000,)
    maintainer = scans_off(connect, "app_maintainer")
    preview = preview_prune(maintainer, DUE)
    _, fetched_to_preview = read_so_far(maintainer, "audit.archive_batches")
    batch = maintainer.execute("SELECT batch_id, first_block, last_block FROM audit.next_archive_batch(%s)",
                               (DUE,)).fetchone()
    _, fetched_in_all = read_so_far(maintainer, "audit.archive_batches")
    maintainer.rollback()
    assert preview.events == 15
    assert batch == ("blocks-000000000001-000000000003", 1, 3)
    assert fetched_to_preview == 0 and fetched_in_all <= 3, (fetched_to_preview, fetched_in_all)


def test_history_asks_the_quarantine_for_its_target_by_index(db: psycopg.Connection, connect: Connect) -> None:
    """row_history and row_as_of ask whether a change of their row is in the quarantine, which keeps
    every event it took and had no index."""
    db.execute("CREATE TABLE public.docs (id int PRIMARY KEY, t0 text)")
    enable_tracking(db, "public.docs")
    db.execute("INSERT INTO public.docs VALUES (1, 'one'), (2, 'two')")
    quarantine_an_update(db, "public.docs", 1)
    assert db.execute("SELECT target_id FROM audit.quarantine").fetchall() == [("1",)]
    reader = scans_off(connect, "app_reader")
    history = row_history(reader, "public.docs", "2")
    scans, _ = read_so_far(reader, "audit.quarantine")
    reader.commit()
    assert [e.kind for e in history] == ["public.docs.insert"]
    assert scans == 0
