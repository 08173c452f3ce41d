"""Benchmark: the same workloads on an untracked and a tracked table, and the ratio.

Run: python bench/capture.py [--rounds 3] [--seconds 10]

Conditions (issue 3): table t(id int primary key, a int, b text); PostgreSQL defaults with fsync
and synchronous_commit on; each measurement in a fresh database cloned from a template; starting
rows loaded without capture, then VACUUM ANALYZE and CHECKPOINT before timing; each statement
timed with its commit; the median of --rounds rounds, alternating which side goes first. Sealing
never runs during a timed statement; afterwards the events of the tracked INSERT and UPDATE are
sealed and timed against the rate at which the statement produced them.
"""

from __future__ import annotations

import argparse
import time

import psycopg
from common import alternate, durable_cluster, pgbench, seal_rate

from pgaudit_py import install, seal
from pgaudit_py.tempdb import TemporaryCluster

ROWS = 100_000
BULK = {
    "INSERT of 100,000 rows in one statement": (
        "empty", f"INSERT INTO t SELECT g, g, md5(g::text) FROM generate_series(1, {ROWS}) g", 2.5),
    "UPDATE of all 100,000 rows in one statement": ("loaded", "UPDATE t SET a = a + 1", 4.0),
    "DELETE of 50,000 rows in one statement": ("loaded", "DELETE FROM t WHERE id <= 50000", 8.0),
}
SINGLE = {
    "single-row UPDATE by random key, 2 clients": (
        f"\\set id random(1, {ROWS})\nUPDATE t SET a = a + 1 WHERE id = :id;\n", 0.93),
    "single-row INSERT, 2 clients": (
        "INSERT INTO t (id, a, b) VALUES (nextval('t_ins'), 1, 'x');\n", 0.95),
}


class Databases:
    """Templates for each starting state and side; a fresh clone for every measurement."""

    def __init__(self, cluster: TemporaryCluster):
        self.cluster = cluster
        self.admin = psycopg.connect(cluster.dsn(), autocommit=True)
        self.clones = 0
        for state in ("empty", "loaded"):
            for tracked in (False, True):
                name = self.template(state, tracked)
                self.admin.execute(f"CREATE DATABASE {name}")
                with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
                    install(conn)
                    conn.execute("CREATE TABLE t (id int PRIMARY KEY, a int, b text)")
                    conn.execute("CREATE SEQUENCE t_ins START 10000001")
                    if state == "loaded":
                        conn.execute(f"INSERT INTO t SELECT g, g, md5(g::text) FROM generate_series(1, {ROWS}) g")
                    if tracked:
                        conn.execute("SELECT audit.enable_tracking('t')")
                        while seal(conn).sealed:  # the audit.tracking_enabled event
                            pass

    @staticmethod
    def template(state: str, tracked: bool) -> str:
        return f"tpl_{state}_{'tracked' if tracked else 'plain'}"

    def clone(self, state: str, tracked: bool) -> str:
        self.clones += 1
        name = f"run_{self.clones}"
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE {self.template(state, tracked)}")
        with psycopg.connect(self.cluster.dsn(name), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE t")
        self.admin.execute("CHECKPOINT")
        return name

    def drop(self, name: str) -> None:
        self.admin.execute(f"DROP DATABASE {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", default="", help="Run only the workloads whose name contains this.")
    args = parser.parse_args()

    with durable_cluster() as cluster:
        dbs = Databases(cluster)
        sealing: dict[str, tuple[float, float]] = {}
        print(f"{'workload':<46}{'untracked':>11}{'tracked':>11}{'ratio':>8}{'bar':>8}")

        for label, (state, statement, bar) in BULK.items():
            if args.only not in label:
                continue
            def timed(tracked: bool, state: str = state, statement: str = statement, label: str = label) -> float:
                name = dbs.clone(state, tracked)
                with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
                    started = time.perf_counter()
                    events = conn.execute(statement).rowcount
                    elapsed = time.perf_counter() - started
                    if tracked and label not in sealing:
                        sealing[label] = (events / elapsed, seal_rate(conn))
                dbs.drop(name)
                return elapsed

            plain, tracked = alternate(args.rounds, timed)
            ratio = tracked / plain
            print(f"{label:<46}{plain * 1000:>9.0f}ms{tracked * 1000:>9.0f}ms{ratio:>7.2f}x"
                  f"{'<= ' + str(bar):>8} {'ok' if ratio <= bar else 'MISSED'}")

        for label, (script, bar) in SINGLE.items():
            if args.only not in label:
                continue
            def tps(tracked: bool, script: str = script) -> float:
                name = dbs.clone("loaded", tracked)
                rate = pgbench(cluster, name, script, clients=2, seconds=args.seconds)
                dbs.drop(name)
                return rate

            plain, tracked = alternate(args.rounds, tps)
            ratio = tracked / plain
            print(f"{label:<46}{plain:>8.0f}tps{tracked:>8.0f}tps{ratio:>7.2f}x"
                  f"{'>= ' + str(bar):>8} {'ok' if ratio >= bar else 'MISSED'}")

        print()
        for label, (produced, sealed) in sealing.items():
            print(f"sealing the events of '{label}': {sealed:,.0f} events/s, against {produced:,.0f} events/s"
                  f" produced by the statement: {sealed / produced:.2f}x")
        dbs.admin.close()


if __name__ == "__main__":
    main()
