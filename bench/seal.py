"""Benchmark: what hashing at sealing costs writers, the sealer, and verification.

Run: python bench/seal.py [--seconds 10] [--rounds 3] [--events 100000] [--profile]

1. Four concurrent writers (pgbench, record() per transaction) with a sealer (hashing included)
   running continuously, against the same writers with no sealer: the ratio of their throughput.
2. audit.verify and the Python verifier, in events per second, against reading the same events
   with COPY ... TO (the whole chain that step 1 sealed; the bench stops if verify fails).
3. A floor for step 1: the same writers beside a sealer that only moves events (a copy of the
   sealer's statement without the block, installed in the throwaway database only). It breaks the
   chain, so it runs after verification.
4. Sealing a backlog with hashing, against the same move without it, in events per second.
5. With --profile: CPU time per event of the sealer's backend, with hashing and without (a backlog
   drained in rounds of 3,000), and of a writer's backend per record() transaction (from /proc).
A throwaway cluster with PostgreSQL's default durability, on disk; medians of --rounds, the order
of the sides alternating from round to round.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

import psycopg
from common import backlog, bench_database, cpu_per_call_us, medians, pgbench

from pgaudit_py import seal
from pgaudit_py.chain import verify_chain
from pgaudit_py.sealing import seal_continuously
from pgaudit_py.tempdb import TemporaryCluster

RECORD = ("\\set n random(1, 1000000)\n"
          "SELECT audit.record(kind => 'order.paid', tenant_id => 't1', actor_id => 'u', target_type => 'order',"
          " target_id => 'o', payload => '{\"amount\": 12.5, \"currency\": \"EUR\"}');\n")

# The sealer's move without the block: for comparison only, never part of the product.
SEAL_WITHOUT_HASHING = """
CREATE FUNCTION bench_seal_without_hashing(max_events integer) RETURNS bigint LANGUAGE plpgsql SET jit = off
    SET session_replication_role = replica AS $$  -- past the guards, which let seal() alone move events
DECLARE v_last bigint; moved_count bigint;
BEGIN
    SELECT last_seq INTO v_last FROM audit.seal_state FOR UPDATE;
    WITH moved AS (
        DELETE FROM audit.event_intake i
         WHERE i.ctid = ANY (ARRAY(SELECT b.ctid FROM audit.event_intake b ORDER BY b.intake_id LIMIT max_events))
        RETURNING i.*),
    sealed AS (
        INSERT INTO audit.event_log (seq, id, tenant_id, actor_type, actor_id, db_role, client_addr, application_name,
            kind, target_type, target_id, outcome, correlation_id, idempotency_key, txid, occurred_at, sealed_at,
            payload, schema_valid, row_before, row_after, changed)
        SELECT v_last + row_number() OVER (ORDER BY m.intake_id), coalesce(m.id, gen_random_uuid()), m.tenant_id,
               m.actor_type, m.actor_id, m.db_role, m.client_addr, m.application_name, m.kind, m.target_type,
               m.target_id, m.outcome, m.correlation_id, m.idempotency_key, m.txid, m.occurred_at, clock_timestamp(),
               m.payload, m.schema_valid, m.row_before, m.row_after,
               CASE WHEN m.row_before IS NOT NULL AND m.row_after IS NOT NULL
                    THEN coalesce(m.changed, '{}') || audit._changed(m.row_before, m.row_after) END
          FROM moved m RETURNING seq)
    SELECT count(*) INTO moved_count FROM sealed;
    UPDATE audit.seal_state SET last_seq = v_last + moved_count;
    RETURN moved_count;
END $$;
"""


def drain(step: Callable[[], int]) -> float:
    started = time.perf_counter()
    while step():
        pass
    return time.perf_counter() - started


def move_continuously(conn: psycopg.Connection, stop: threading.Event) -> None:
    """seal_continuously's loop around the move without hashing."""
    while not stop.is_set():
        if conn.execute("SELECT bench_seal_without_hashing(10000)").fetchone() < (10000,):  # type: ignore[operator]
            stop.wait(0.5)


def writers_beside(cluster: TemporaryCluster, sealer: str, seconds: int) -> float:
    """Throughput of 4 writers while `sealer` ("none", "sealer" or "move") runs beside them."""
    stop = threading.Event()
    with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
        loop = {"sealer": lambda: seal_continuously(conn, stop, interval=0.5),  # pgaudit worker's default
                "move": lambda: move_continuously(conn, stop)}.get(sealer)
        thread = threading.Thread(target=loop) if loop else None
        if thread:
            thread.start()
        try:
            return pgbench(cluster, "bench", RECORD, clients=4, seconds=seconds)
        finally:
            stop.set()
            if thread:
                thread.join()
            drain(lambda: seal(conn).sealed)  # leave nothing pending for the next round


def verification(conn: psycopg.Connection, rounds: int) -> None:
    first, last = conn.execute("SELECT min(first_seq), max(last_seq) FROM audit.blocks").fetchone()  # type: ignore[misc]
    covered = last - first + 1

    def read(how: str) -> float:
        started = time.perf_counter()
        if how == "copy":
            with conn.cursor().copy(f"COPY (SELECT * FROM audit.event_log WHERE seq BETWEEN {first} AND {last})"
                                    " TO STDOUT") as copy:
                for _chunk in copy:
                    pass
        elif how == "sql":
            row = conn.execute("SELECT ok, events_checked FROM audit.verify(from_block => 1)").fetchone()
            # A failed verify stops early: its rate would be no rate of verifying these events.
            if row != (True, covered):
                raise RuntimeError(f"audit.verify did not pass over all {covered} events: {row}")
        else:
            result = verify_chain(conn)
            if not result.ok or result.events_checked != covered:
                raise RuntimeError(f"pgaudit verify did not pass over all {covered} events: {result}")
        return float(covered / (time.perf_counter() - started))

    rates = medians(rounds, ["copy", "sql", "python"], read)
    copy_rate, sql_rate, py_rate = rates["copy"], rates["sql"], rates["python"]
    print(f"reading {covered} sealed events with COPY ... TO: {copy_rate:,.0f} events/s")
    print(f"audit.verify: {sql_rate:,.0f} events/s ({sql_rate / copy_rate:.2f} of COPY)")
    print(f"pgaudit verify (Python): {py_rate:,.0f} events/s ({py_rate / copy_rate:.2f} of COPY)")


def sealing_rates(conn: psycopg.Connection, rounds: int, events: int) -> None:
    times: dict[str, list[float]] = {"hashing": [], "plain": []}
    for r in range(rounds):
        for kind in (("hashing", "plain") if r % 2 == 0 else ("plain", "hashing")):
            backlog(conn, events)
            conn.execute("CHECKPOINT")
            if kind == "hashing":
                times[kind].append(drain(lambda: seal(conn, 10_000).sealed))
            else:
                times[kind].append(drain(lambda: conn.execute(
                    "SELECT bench_seal_without_hashing(10000)").fetchone()[0]))  # type: ignore[index]
    hashed = events / statistics.median(times["hashing"])
    plain = events / statistics.median(times["plain"])
    print(f"sealing {events} events in rounds of 10,000: {hashed:,.0f} events/s with hashing,"
          f" {plain:,.0f} events/s without: {hashed / plain:.2f}")


def profile(cluster: TemporaryCluster, conn: psycopg.Connection, rounds: int, events: int) -> None:
    """Backend CPU per event: the sealer with hashing, the move alone; a writer per record()."""
    def sealer(kind: str) -> float:
        backlog(conn, events)
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as sealing:
            step = {"hashing": lambda: seal(sealing, 3000).sealed,
                    "move": lambda: sealing.execute(
                        "SELECT bench_seal_without_hashing(3000)").fetchone()[0]}[kind]  # type: ignore[index]
            return cpu_per_call_us(sealing, 1, lambda: drain(step)) / events

    per_event = medians(rounds, ["hashing", "move"], sealer)
    with psycopg.connect(cluster.dsn("bench"), autocommit=True) as writer:
        statement = "SELECT audit.record(kind => 'order.paid', tenant_id => 't1', actor_id => 'u', payload => '{}')"
        record_us = statistics.median(
            cpu_per_call_us(writer, 3000, lambda: writer.execute(statement, prepare=True)) for _ in range(rounds))
    print(f"sealer's backend CPU per event: {per_event['hashing']:.1f} us with hashing, {per_event['move']:.1f} us"
          f" moving without it; a writer's backend per record() transaction: {record_us:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="Also measure CPU time per event (from /proc).")
    args = parser.parse_args()

    with bench_database() as cluster:
        rates = medians(args.rounds, ["none", "sealer"], lambda side: writers_beside(cluster, side, args.seconds))
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
            verification(conn, args.rounds)
            conn.execute(SEAL_WITHOUT_HASHING)
            for table in ("event_intake", "event_log"):
                conn.execute(f"ALTER TABLE audit.{table} DISABLE TRIGGER USER")  # the copy is not audit.seal
            floor = medians(args.rounds, ["none", "move"], lambda side: writers_beside(cluster, side, args.seconds))
            sealing_rates(conn, args.rounds, args.events)
            if args.profile:
                profile(cluster, conn, args.rounds, 30_000)
            for table in ("event_intake", "event_log"):
                conn.execute(f"ALTER TABLE audit.{table} ENABLE TRIGGER USER")
        print(f"4 writers, record() per transaction: {rates['none']:.0f} tps alone, {rates['sealer']:.0f} tps with a"
              f" sealer running: {rates['sealer'] / rates['none']:.3f} (bar: at least 0.95);"
              f" floor, a sealer that only moves events: {floor['move'] / floor['none']:.3f}")


if __name__ == "__main__":
    main()
