"""Benchmark: the rotating intake against the one before it (issue 16), side by side in one cluster.

Run: python bench/rotation.py [--rounds 4] [--seconds 30]

The schema "before" is installed by the installer of commit 2851591 (from this repository's git
history: the intake as one table), the schema "audit" by this checkout; each tracks a table
t(id int primary key, a int, b text). Medians of --rounds, the order of the sides alternating:
1. A tracked INSERT of 100,000 rows in one statement (the writer's cost of routing rows to a
   partition).
2. Single-row tracked INSERTs (pgbench, 2 clients, --seconds) with a sealer beside them
   (seal_continuously, the worker's default interval): throughput, and the intake's size and dead
   rows when they stop: what every reader of pending events and the sealer scan.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from io import BytesIO
from pathlib import Path
from types import ModuleType

import psycopg
from common import durable_cluster, medians, pgbench

from pgaudit_py import install, seal
from pgaudit_py.sealing import seal_continuously
from pgaudit_py.tempdb import TemporaryCluster

BEFORE = "2851591"
CHECKOUT = Path(__file__).resolve().parent.parent


def installer_before(root: Path) -> ModuleType:
    archived = subprocess.run(["git", "-C", str(CHECKOUT), "archive", BEFORE, "sql", "migrations",
                               "pgaudit_py/installer.py"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archived)) as tar:
        tar.extractall(root, filter="data")
    spec = importlib.util.spec_from_file_location("installer_before", root / "pgaudit_py" / "installer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def drain(conn: psycopg.Connection, schema: str) -> None:
    while seal(conn, 1_000_000, audit_schema=schema).sealed:
        pass


def bulk_insert(conn: psycopg.Connection, schema: str) -> float:
    conn.execute(f"TRUNCATE t_{schema}")
    conn.execute("CHECKPOINT")
    started = time.perf_counter()
    conn.execute(f"INSERT INTO t_{schema} SELECT n, n, 'row ' || n FROM generate_series(1, 100000) n")
    seconds = time.perf_counter() - started
    drain(conn, schema)
    return seconds


def intake_state(conn: psycopg.Connection, schema: str) -> tuple[float, int]:
    """MB and dead rows of the intake (its partitions, where it has them)."""
    row = conn.execute(
        "SELECT sum(pg_total_relation_size(r)), coalesce(sum(n_dead_tup), 0)"
        "  FROM (SELECT %s::regclass AS r UNION ALL SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass) x"
        "  LEFT JOIN pg_stat_user_tables s ON s.relid = x.r",
        [f"{schema}.event_intake", f"{schema}.event_intake"]).fetchone()
    assert row is not None
    return float(row[0]) / 1e6, int(row[1])


def writers_beside_sealer(cluster: TemporaryCluster, conn: psycopg.Connection, schema: str, seconds: int,
                          states: dict[str, list[tuple[float, int]]]) -> float:
    stop = threading.Event()
    with psycopg.connect(cluster.dsn("bench"), autocommit=True) as sealer:
        thread = threading.Thread(target=lambda: seal_continuously(sealer, stop, interval=0.5, audit_schema=schema))
        thread.start()
        try:
            tps = pgbench(cluster, "bench", f"\\set k random(1, 1000000000)\n"
                          f"INSERT INTO t_{schema} VALUES (:k, 1, 'x') ON CONFLICT DO NOTHING;\n",
                          clients=2, seconds=seconds)
        finally:
            stop.set()
            thread.join()
    states[schema].append(intake_state(conn, schema))
    drain(conn, schema)
    return tps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, durable_cluster() as cluster:
        before = installer_before(Path(tmp))
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
            before.install(conn, "before")
            install(conn)
            for schema in ("before", "audit"):
                conn.execute(f"CREATE TABLE t_{schema} (id int PRIMARY KEY, a int, b text)")
                conn.execute(f"SELECT {schema}.enable_tracking('t_{schema}')")
            bulk = medians(args.rounds, ["before", "audit"], lambda schema: bulk_insert(conn, schema))
            print(f"tracked INSERT of 100,000 rows: {bulk['before'] * 1000:.0f} ms with one intake table,"
                  f" {bulk['audit'] * 1000:.0f} ms rotating: {bulk['audit'] / bulk['before']:.2f}")
            states: dict[str, list[tuple[float, int]]] = {"before": [], "audit": []}
            tps = medians(args.rounds, ["before", "audit"],
                          lambda schema: writers_beside_sealer(cluster, conn, schema, args.seconds, states))
            for schema, name in (("before", "one intake table"), ("audit", "rotating")):
                mb = statistics.median(s[0] for s in states[schema])
                dead = statistics.median(s[1] for s in states[schema])
                print(f"single-row tracked INSERTs, 2 clients, a sealer beside, {name}: {tps[schema]:.0f} tps;"
                      f" the intake then: {mb:.1f} MB, {dead:,.0f} dead rows (medians)")
            print(f"throughput rotating / one table: {tps['audit'] / tps['before']:.2f}")


if __name__ == "__main__":
    main()
