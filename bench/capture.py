"""Benchmark: the same workloads on an untracked and a tracked table, and the ratio.

Run: python bench/capture.py [--rounds 3] [--seconds 10] [--profile]

Conditions (issue 3): table t(id int primary key, a int, b text); PostgreSQL defaults with fsync
and synchronous_commit on; each measurement in a fresh database cloned from a template; starting
rows loaded without capture, then VACUUM ANALYZE and CHECKPOINT before timing; each statement
timed with its commit; the median of --rounds rounds, alternating which side goes first. Sealing
never runs during a timed statement; afterwards the events of each tracked bulk statement are
sealed (seal(max_events => 1000000) until the intake is empty) and timed: "including sealing"
rows add that time to the tracked statement's. In the same clone, the sealed rows are then
inserted, with one INSERT ... SELECT, into a copy of the log with the log's indexes (the floor of
writing the log's rows once), and the log's growth is measured per event (table, TOAST, indexes)
beside the size of the captured row. The single-row workloads run a second time with `pgaudit
worker` (default settings) sealing beside the tracked side.
With --profile, the CPU time of one single-row UPDATE transaction in the backend (from /proc), on
the untracked table, on the tracked one, and on one whose only trigger inserts the rows' jsonb into
a one-column table (the floor of any trigger that writes a second table).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import psycopg
from common import alternate, cpu_per_call_us, durable_cluster, log_sizes, medians, pgbench

from pgaudit_py import install, seal
from pgaudit_py.tempdb import TemporaryCluster

ROWS = 100_000
BULK = {  # state, statement, bar, bar including sealing (issue 16)
    "INSERT of 100,000 rows in one statement": (
        "empty", f"INSERT INTO t SELECT g, g, md5(g::text) FROM generate_series(1, {ROWS}) g", 2.5, 3.5),
    "UPDATE of all 100,000 rows in one statement": ("loaded", "UPDATE t SET a = a + 1", 4.0, 6.0),
    "DELETE of 50,000 rows in one statement": ("loaded", "DELETE FROM t WHERE id <= 50000", 8.0, 15.0),
}
WORKER_BAR = 0.80  # single-row writers with the worker sealing beside them (issue 16)


@dataclass(frozen=True)
class Sealed:
    """What sealing one tracked bulk statement's events cost, in its clone."""
    events: int
    statement_s: float
    sealing_s: float
    copy_s: float  # the same rows, one INSERT ... SELECT into a copy of the log with its indexes
    table_bytes: float  # per event
    toast_bytes: float
    index_bytes: float
    row_bytes: float  # the captured row, as stored in t




def seal_and_measure(conn: psycopg.Connection, events: int, statement_s: float) -> Sealed:
    """Seal everything pending in rounds of up to 1,000,000, then write the same rows once more
    into a copy of the log with the log's indexes; the log's growth per event."""
    row = conn.execute("SELECT coalesce(avg(pg_column_size(t.*)), 0), (SELECT last_seq FROM audit.seal_state)"
                       " FROM t").fetchone()
    assert row is not None
    row_bytes, last_seq = float(row[0]), int(row[1])
    before = log_sizes(conn)
    started = time.perf_counter()
    while seal(conn, 1_000_000).sealed:
        pass
    sealing_s = time.perf_counter() - started
    after = log_sizes(conn)
    conn.execute("CREATE TABLE log_copy (LIKE audit.event_log INCLUDING INDEXES)")
    conn.execute("CHECKPOINT")
    started = time.perf_counter()
    copied = conn.execute("INSERT INTO log_copy SELECT * FROM audit.event_log WHERE seq > %s", (last_seq,)).rowcount
    copy_s = time.perf_counter() - started
    assert copied == events, (copied, events)
    table, toast, indexes = ((a - b) / events for a, b in zip(after, before, strict=True))
    return Sealed(events, statement_s, sealing_s, copy_s, table, toast, indexes, row_bytes)


class Worker:
    """`pgaudit worker` with its default settings, as its own process, for the duration of a block."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        self.process = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "worker", "--dsn", self.dsn],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        time.sleep(1.0)  # started and connected
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
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
        sealing: dict[str, list[Sealed]] = {}
        totals: list[str] = []
        print(f"{'workload':<58}{'untracked':>11}{'tracked':>11}{'ratio':>8}{'bar':>8}")

        for label, (state, statement, bar, total_bar) in BULK.items():
            if args.only not in label:
                continue
            def timed(tracked: bool, state: str = state, statement: str = statement, label: str = label) -> float:
                name = dbs.clone(state, tracked)
                with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
                    started = time.perf_counter()
                    events = conn.execute(statement).rowcount
                    elapsed = time.perf_counter() - started
                    if tracked:
                        sealing.setdefault(label, []).append(seal_and_measure(conn, events, elapsed))
                dbs.drop(name)
                return elapsed

            plain, tracked = alternate(args.rounds, timed)
            ratio = tracked / plain
            print(f"{label:<58}{plain * 1000:>9.0f}ms{tracked * 1000:>9.0f}ms{ratio:>7.2f}x"
                  f"{'<= ' + str(bar):>8} {'ok' if ratio <= bar else 'MISSED'}")
            total = statistics.median(r.statement_s + r.sealing_s for r in sealing[label])
            totals.append(f"{label + ', including sealing':<58}{plain * 1000:>9.0f}ms{total * 1000:>9.0f}ms"
                          f"{total / plain:>7.2f}x{'<= ' + str(total_bar):>8}"
                          f" {'ok' if total / plain <= total_bar else 'MISSED'}")

        for label, (script, bar) in SINGLE.items():
            for beside in (False, True):
                if args.only not in label:
                    continue
                def tps(tracked: bool, script: str = script, beside: bool = beside) -> float:
                    name = dbs.clone("loaded", tracked)
                    if tracked and beside:
                        with Worker(cluster.dsn(name)):
                            rate = pgbench(cluster, name, script, clients=2, seconds=args.seconds)
                    else:
                        rate = pgbench(cluster, name, script, clients=2, seconds=args.seconds)
                    dbs.drop(name)
                    return rate

                plain, tracked = alternate(args.rounds, tps)
                ratio = tracked / plain
                line_bar = WORKER_BAR if beside else bar
                line = (f"{label + (', worker beside' if beside else ''):<58}{plain:>8.0f}tps{tracked:>8.0f}tps"
                        f"{ratio:>7.2f}x{'>= ' + str(line_bar):>8} {'ok' if ratio >= line_bar else 'MISSED'}")
                if beside:
                    totals.append(line)  # printed with the other figures that count sealing
                else:
                    print(line)

        print()
        for line in totals:
            print(line)
        print()
        for label, runs in sealing.items():
            events = runs[0].events
            sealed = statistics.median(r.events / r.sealing_s for r in runs)
            produced = statistics.median(r.events / r.statement_s for r in runs)
            copied = statistics.median(r.events / r.copy_s for r in runs)
            print(f"sealing the {events:,} events of '{label}': {sealed:,.0f} events/s; the statement produced"
                  f" {produced:,.0f}/s; the same rows INSERTed into a copy of the log with its indexes:"
                  f" {copied:,.0f}/s (sealing {sealed / copied:.2f}x of that)")
            size = runs[-1]
            print(f"  log growth per event: {size.table_bytes:,.0f} bytes table, {size.toast_bytes:,.0f} TOAST,"
                  f" {size.index_bytes:,.0f} indexes ({size.table_bytes + size.toast_bytes + size.index_bytes:,.0f}"
                  f" in all), for a captured row of {size.row_bytes:,.0f} bytes")
        if args.profile:
            profile(cluster, dbs, args.rounds)
        dbs.admin.close()


if __name__ == "__main__":
    main()
