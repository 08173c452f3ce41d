"""Benchmark: the same workloads on an untracked and a tracked table, and the ratio.

Run: python bench/capture.py [--rounds 3] [--seconds 10] [--profile]

Conditions (issue 3): table t(id int primary key, a int, b text); PostgreSQL defaults with fsync
and synchronous_commit on; each measurement in a fresh database cloned from a template; starting
rows loaded without capture, then VACUUM ANALYZE and CHECKPOINT before timing; each statement
timed with its commit; the median of --rounds rounds, alternating which side goes first. Sealing
never runs during a timed statement; afterwards the events of each tracked bulk statement are
sealed and timed against the rate at which the statement produced them (medians of the rounds).
With --profile, the CPU time of one single-row UPDATE transaction in the backend (from /proc), on
the untracked table, on the tracked one, and on one whose only trigger inserts the rows' jsonb into
a one-column table (the floor of any trigger that writes a second table).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import psycopg
from common import alternate, cpu_per_call_us, durable_cluster, medians, pgbench, seal_rate

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


MINIMAL_TRIGGER = """
CREATE TABLE copies (row_image jsonb);
CREATE FUNCTION copy_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO copies SELECT to_jsonb(n.*) FROM new_rows n;
    RETURN NULL;
END $$;
CREATE TRIGGER copy_rows AFTER UPDATE ON t REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION copy_rows();
"""


def profile(cluster: TemporaryCluster, dbs: Databases, rounds: int, calls: int = 5000) -> None:
    """Backend CPU per single-row UPDATE transaction: untracked, tracked, and the minimal trigger."""
    def cpu(side: str) -> float:
        name = dbs.clone("loaded", side == "tracked")
        with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
            if side == "minimal trigger":
                conn.execute(MINIMAL_TRIGGER)
            keys = random.Random(7)
            result = cpu_per_call_us(conn, calls, lambda: conn.execute(
                "UPDATE t SET a = a + 1 WHERE id = %s", (keys.randint(1, ROWS),), prepare=True))
        dbs.drop(name)
        return result

    us = medians(rounds, ["untracked", "tracked", "minimal trigger"], cpu)
    print(f"backend CPU per single-row UPDATE transaction: {us['untracked']:.0f} us untracked, {us['tracked']:.0f} us"
          f" tracked (+{us['tracked'] - us['untracked']:.0f} us), {us['minimal trigger']:.0f} us with the minimal"
          f" trigger (+{us['minimal trigger'] - us['untracked']:.0f} us)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", default="", help="Run only the workloads whose name contains this.")
    parser.add_argument("--profile", action="store_true", help="Also measure CPU time per transaction (from /proc).")
    args = parser.parse_args()

    with durable_cluster() as cluster:
        dbs = Databases(cluster)
        sealing: dict[str, list[tuple[float, float]]] = {}
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
                    if tracked:
                        sealing.setdefault(label, []).append((events / elapsed, seal_rate(conn)))
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
        for label, runs in sealing.items():
            produced = statistics.median(p for p, _ in runs)
            sealed = statistics.median(s for _, s in runs)
            print(f"sealing the events of '{label}': {sealed:,.0f} events/s, against {produced:,.0f} events/s"
                  f" produced by the statement: {sealed / produced:.2f}x")
        if args.profile:
            profile(cluster, dbs, args.rounds)
        dbs.admin.close()


if __name__ == "__main__":
    main()
