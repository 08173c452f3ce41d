"""Benchmark: audit.record() against plain INSERTs of the same rows, and sealing against recording.

Run: python bench/record.py [--seconds 4] [--rounds 3]

A throwaway cluster with PostgreSQL's default durability (fsync and synchronous_commit on), on
disk. Each figure is the median of --rounds pgbench runs, alternating which side goes first;
ratios compare sides measured in the same run, because these machines are shared and noisy.
Sealing a backlog, against recording it in one statement: medians of --rounds backlogs (the
backlog must be recorded before it is sealed, so these two cannot alternate).
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from common import alternate, backlog, bench_database, pgbench, seal_rate

from pgaudit_py import seal
from pgaudit_py.tempdb import TemporaryCluster

VALUES = ("'order.paid', 't' || (n % 10), 'user', 'u' || n, 'order', 'o-' || n, "
          "jsonb_build_object('amount', n, 'currency', 'EUR') FROM (SELECT (:n)::int AS n) AS v")
RECORD = (f"SELECT audit.record(kind => x.k, tenant_id => x.t, actor_type => x.at, actor_id => x.a, "
          f"target_type => x.tt, target_id => x.ti, payload => x.p)"
          f" FROM (SELECT {VALUES}) AS x(k, t, at, a, tt, ti, p);")
# The same row into an equivalent table without any index, with the values record() computes.
PLAIN = (f"INSERT INTO bench_plain (id, tenant_id, actor_type, actor_id, db_role, client_addr, application_name,"
         f" kind, target_type, target_id, outcome, txid, occurred_at, payload)"
         f" SELECT gen_random_uuid(), x.t, x.at, x.a, current_user, inet_client_addr(),"
         f" current_setting('application_name'), x.k, x.tt, x.ti, 'success', pg_current_xact_id(),"
         f" clock_timestamp(), x.p FROM (SELECT {VALUES}) AS x(k, t, at, a, tt, ti, p);")


def script(statement: str, per_transaction: int) -> str:
    body = "\n".join([statement] * per_transaction)
    wrapped = f"BEGIN;\n{body}\nCOMMIT;" if per_transaction > 1 else body
    return f"\\set n random(1, 1000000)\n{wrapped}\n"


def compare(cluster: TemporaryCluster, clients: int, per_tx: int, seconds: int,
            rounds: int) -> tuple[float, float]:
    """(record, plain) events per second."""
    scripts = {True: script(RECORD, per_tx), False: script(PLAIN, per_tx)}
    plain, recorded = alternate(rounds, lambda rec: pgbench(cluster, "bench", scripts[rec], clients, seconds) * per_tx)
    return recorded, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=100_000)
    args = parser.parse_args()

    with bench_database() as cluster:
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
            conn.execute("CREATE TABLE bench_plain (LIKE audit.event_intake INCLUDING DEFAULTS INCLUDING IDENTITY)")

        print(f"{'workload':<36}{'record/s':>12}{'plain/s':>12}{'ratio':>8}")
        record_rate = 0.0
        for per_tx, label in ((1, "one event per transaction"), (20, "20 events per transaction")):
            for clients in (1, 4):
                rec, plain = compare(cluster, clients, per_tx, args.seconds, args.rounds)
                record_rate = max(record_rate, rec)
                print(f"{label + f', {clients} client(s)':<36}{rec:>12.0f}{plain:>12.0f}{rec / plain:>8.2f}")

        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
            while seal(conn, 50_000).sealed:
                pass
            bulk_rates, sealing_rates = [], []
            for _ in range(args.rounds):
                started = time.perf_counter()
                backlog(conn, args.backlog)
                bulk_rates.append(args.backlog / (time.perf_counter() - started))
                sealing_rates.append(seal_rate(conn))
            bulk_rate, sealing = statistics.median(bulk_rates), statistics.median(sealing_rates)
        print(f"\nsealing a backlog of {args.backlog} events: {sealing:.0f} events/s (rounds of 10,000)")
        print(f"  against the best recording rate above ({record_rate:.0f}/s): {sealing / record_rate:.2f}x")
        print(f"  against recording in one statement ({bulk_rate:.0f}/s): {sealing / bulk_rate:.2f}x")


if __name__ == "__main__":
    main()
