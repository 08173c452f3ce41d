"""Benchmark: the log at scale (issue 16).

Run: python bench/scale.py [--events 10000000] [--queries 200]

1. The sealing rate on the empty log: a backlog of 100,000 record() events (50 tenants, 10,000
   actors, six kinds and a rare one, 5% failures, a correlation id per ten events) sealed in rounds of 10,000.
2. The log is built to --events sealed events, recorded and sealed in rounds of 100,000.
3. The sealing rate again, on the full log: the same backlog, the same rounds, into the first
   100,000 seqs of a partition (the log is partitioned by a million seqs); then, the log built on
   to where the next 100,000 fill that partition (10,900,000 for ten million), into its last
   100,000 seqs, where its indexes are at their largest. Each with its ratio to step 1 (bar:
   within 20%, at least 0.80). Every sealing measurement starts just after a checkpoint and prints
   the WAL written per sealed event.
4. list_events(page_size => 50) with no filter, with each single filter, and one page deep in
   keyset paging (before_seq at a tenth of the log): p50 and p99 over --queries calls (bar: p99 at
   most 10 ms), twice: with the intake vacuumed, and as a steady stream of writes leaves it (just
   after a round of 100,000 was sealed, before any vacuum: autovacuum is off for the intake's
   partitions during that pass; seal() has emptied those that writers left). count_events for one
   tenant, the same two ways; and the intake's size at that moment.
5. The log's bytes per event (table, TOAST, indexes).
6. Pruning the oldest million events (prune_events in batches of 100,000): the time, the WAL it
   wrote, and a DELETE of the same rows from a copy of those rows with the log's indexes, then the
   VACUUM that DELETE leaves to do, in the same run (bar: pruning a million events does not cost a
   DELETE of a million rows).
A throwaway cluster with PostgreSQL's default durability, on disk.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import psycopg
from common import bench_database, latencies_ms, log_sizes

from pgaudit_py import list_events, seal
from pgaudit_py.events import count_events
from pgaudit_py.retention import prune_all

ROUND = 100_000
INTAKE_PARTITIONS = [f"audit.event_intake_{n}" for n in range(4)]
TENANTS = 50
ACTORS = 10_000

# One statement records `n` events whose fields vary like an application's: the filters of
# list_events each select a realistic share of the log.
RECORD_ROUND = f"""
SELECT audit.record(
    kind => CASE WHEN n %% 10000 = 1 THEN 'refund.approved'  -- a rare kind and a rare target type
                 ELSE (ARRAY['order.paid', 'order.refunded', 'user.login', 'user.logout', 'invoice.sent',
                             'settings.updated'])[1 + (n %% 6)] END,
    tenant_id => 't' || (n %% {TENANTS}),
    actor_type => CASE WHEN n %% 10 = 0 THEN 'service' ELSE 'user' END,
    actor_id => 'u' || (n * 7919 %% {ACTORS}),
    target_type => CASE WHEN n %% 10000 = 1 THEN 'refund'
                        ELSE (ARRAY['order', 'user', 'invoice', 'setting', 'account'])[1 + (n %% 5)] END,
    target_id => 'o-' || (n %% 100000),
    outcome => CASE WHEN n %% 20 = 0 THEN 'failure' ELSE 'success' END,
    correlation_id => 'c-' || (n / 10),
    payload => jsonb_build_object('amount', n %% 1000, 'currency', 'EUR'))
  FROM generate_series(%(first)s::bigint, %(first)s::bigint + %(count)s - 1) n
"""


def record_round(conn: psycopg.Connection, first: int, count: int = ROUND) -> None:
    conn.execute(RECORD_ROUND, {"first": first, "count": count}, prepare=False)


def seal_all(conn: psycopg.Connection, max_events: int) -> int:
    total = 0
    while (moved := seal(conn, max_events).sealed):
        total += moved
    return total


def build(conn: psycopg.Connection, first: int, until: int, started: float) -> None:
    """Record and seal rounds of ROUND events from `first` up to `until` sealed events."""
    for n in range(first, until, ROUND):
        record_round(conn, n)
        seal_all(conn, ROUND)
        if n % (10 * ROUND) == 0:
            print(f"  built {n + ROUND:,} events, {(n + ROUND) / (time.perf_counter() - started):,.0f}/s", flush=True)


def seal_rate(conn: psycopg.Connection, first: int) -> tuple[float, float]:
    """Events per second sealing a fresh backlog of ROUND events in rounds of 10,000, just after a
    checkpoint, and the WAL bytes written per event: a page first written after a checkpoint goes
    to the WAL whole, so an index written at random pages costs more the larger it has grown."""
    conn.execute("VACUUM audit.event_intake")
    record_round(conn, first)
    conn.execute("CHECKPOINT")
    sealed: list[int] = []
    seconds, wal = wal_bytes(conn, lambda: sealed.append(seal_all(conn, 10_000)))
    return sealed[0] / seconds, wal / sealed[0]


def queries(conn: psycopg.Connection, calls: int, deep_seq: int) -> None:
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    cases: dict[str, dict[str, object]] = {
        "no filter": {}, "tenant_id": {"tenant_id": "t7"}, "kind_prefix": {"kind_prefix": "order."},
        "kind_prefix, a rare kind": {"kind_prefix": "refund."}, "target_type": {"target_type": "invoice"},
        "target_type, a rare type": {"target_type": "refund"}, "target_id": {"target_id": "o-4242"},
        "correlation_id": {"correlation_id": "c-424242"}, "outcome": {"outcome": "failure"},
        "actor_type": {"actor_type": "service"}, "actor_id": {"actor_id": "u4242"},
        "since": {"since": hour_ago}, "until": {"until": datetime.now(timezone.utc)},
        f"before_seq {deep_seq:,} (deep page)": {"before_seq": deep_seq},
    }
    for name, filters in cases.items():
        p50, p99 = latencies_ms(calls, lambda f=filters: list_events(conn, page_size=50, **f))  # type: ignore[misc]
        print(f"  list_events({name}): p50 {p50:.1f} ms, p99 {p99:.1f} ms{'  MISSED (bar 10 ms)' if p99 > 10 else ''}")
    p50, p99 = latencies_ms(max(5, calls // 20), lambda: count_events(conn, tenant_id="t7"))
    print(f"  count_events(tenant_id): p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def log_bytes(conn: psycopg.Connection, events: int) -> None:
    table, toast, indexes = log_sizes(conn)
    print(f"log: {(table + toast + indexes) / 1e6:,.0f} MB for {events:,} events:"
          f" {(table + toast + indexes) / events:.0f} bytes per event (table {table / events:.0f},"
          f" TOAST {toast / events:.0f}, indexes {indexes / events:.0f})")


def wal_bytes(conn: psycopg.Connection, step: Callable[[], object]) -> tuple[float, int]:
    """Seconds and WAL bytes of step()."""
    before = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
    started = time.perf_counter()
    step()
    seconds = time.perf_counter() - started
    wal = conn.execute("SELECT pg_current_wal_insert_lsn() - %s::pg_lsn", [before]).fetchone()[0]  # type: ignore[index]
    return seconds, int(wal)


def pruning(conn: psycopg.Connection, million: int) -> None:
    """Prune the oldest `million` events; beside it, a DELETE of the same rows from an indexed copy."""
    cutoff = conn.execute("SELECT sealed_at FROM audit.blocks WHERE last_seq >= %s ORDER BY block_no LIMIT 1",
                          [million]).fetchone()[0]  # type: ignore[index]
    last = conn.execute("SELECT max(last_seq) FROM audit.blocks WHERE sealed_at <= %s", [cutoff]).fetchone()[0]  # type: ignore[index]
    conn.execute("CREATE TABLE bench_copy (LIKE audit.event_log INCLUDING INDEXES)")  # one table, the log's indexes
    conn.execute("INSERT INTO bench_copy SELECT * FROM audit.event_log WHERE seq <= %s", [last])
    conn.execute("VACUUM ANALYZE bench_copy")
    conn.execute("CHECKPOINT")
    copy_s, copy_wal = wal_bytes(conn, lambda: conn.execute("DELETE FROM bench_copy WHERE seq <= %s", [last]))
    # What the DELETE leaves: a million dead rows in the table and its indexes, for vacuum.
    vacuum_s, vacuum_wal = wal_bytes(conn, lambda: conn.execute("VACUUM bench_copy"))
    conn.execute("DROP TABLE bench_copy")
    conn.execute("CHECKPOINT")
    older_than = datetime.now(timezone.utc) - cutoff + timedelta(microseconds=1)
    pruned: list[int] = []
    prune_s, prune_wal = wal_bytes(conn, lambda: pruned.append(prune_all(conn, older_than, 100_000)))
    print(f"pruning the oldest {pruned[0]:,} events: {prune_s:.1f} s, {prune_wal / 1e6:,.0f} MB of WAL;"
          f" a DELETE of the same {last:,} rows from an indexed copy: {copy_s:.1f} s, {copy_wal / 1e6:,.0f} MB"
          f" of WAL: {prune_s / copy_s:.2f} of its time (the bar asks for far less than 1); the VACUUM that DELETE"
          f" leaves: {vacuum_s:.1f} s, {vacuum_wal / 1e6:,.0f} MB of WAL: pruning took"
          f" {prune_s / (copy_s + vacuum_s):.2f} of both")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    events = max(ROUND, args.events // ROUND * ROUND)

    with bench_database() as cluster, psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
        empty_rate, empty_wal = seal_rate(conn, 0)
        print(f"sealing on the empty log: {empty_rate:,.0f} events/s, {empty_wal:,.0f} bytes of WAL per event")
        partition = conn.execute("SELECT audit._log_partition_size()").fetchone()[0]  # type: ignore[index]
        started = time.perf_counter()
        build(conn, ROUND, events, started)
        # The log's partitions hold a million seqs each: the full log's rate is measured twice, on
        # the first ROUND events of a partition and on its last, where its indexes are at their largest.
        fresh_rate, fresh_wal = seal_rate(conn, events)
        print(f"sealing on a log of {events:,} events, into a partition that holds {events % partition:,}:"
              f" {fresh_rate:,.0f} events/s, {fresh_wal:,.0f} bytes of WAL per event:"
              f" {fresh_rate / empty_rate:.2f} of the empty log's rate (bar: at least 0.80)")
        built = events + ROUND + (partition - (events + 2 * ROUND) % partition) % partition
        build(conn, events + ROUND, built, started)
        conn.execute("VACUUM ANALYZE audit.event_log")
        full_rate, full_wal = seal_rate(conn, built)
        print(f"sealing on a log of {built:,} events, into the last {ROUND:,} seqs of a partition that holds"
              f" {built % partition:,}: {full_rate:,.0f} events/s, {full_wal:,.0f} bytes of WAL per"
              f" event: {full_rate / empty_rate:.2f} of the empty log's rate (bar: at least 0.80)")
        total = built + ROUND

        conn.execute("VACUUM audit.event_intake")
        print(f"reading a log of {total:,} events, the intake vacuumed:")
        queries(conn, args.queries, total // 10)
        for part in INTAKE_PARTITIONS:
            conn.execute(f"ALTER TABLE {part} SET (autovacuum_enabled = false)")
        record_round(conn, total)
        seal_all(conn, 10_000)
        total += ROUND
        intake = conn.execute("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
                              " WHERE inhparent = 'audit.event_intake'::regclass").fetchone()[0]  # type: ignore[index]
        print(f"the same, just after {ROUND:,} events were sealed (the intake not yet vacuumed,"
              f" {float(intake) / 1e6:.1f} MB):")
        queries(conn, args.queries, total // 10)
        for part in INTAKE_PARTITIONS:
            conn.execute(f"ALTER TABLE {part} RESET (autovacuum_enabled)")

        log_bytes(conn, total)
        pruning(conn, min(1_000_000, total // 2))


if __name__ == "__main__":
    main()
