"""What the benchmarks share: a durable throwaway cluster and pgbench."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg

from pgaudit_py import install, seal
from pgaudit_py.tempdb import TemporaryCluster, find_binary

T = TypeVar("T")


def log_sizes(conn: psycopg.Connection) -> tuple[int, int, int]:
    """Bytes of the log's table, TOAST and indexes, summed over its partitions."""
    row = conn.execute("SELECT sum(pg_relation_size(c.oid))::bigint,"
                       " sum(coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0))::bigint,"
                       " sum(pg_indexes_size(c.oid))::bigint"
                       " FROM pg_partition_tree('audit.event_log') t JOIN pg_class c ON c.oid = t.relid"
                       " WHERE t.isleaf").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@contextmanager
def durable_cluster() -> Iterator[TemporaryCluster]:
    """PostgreSQL's default settings (fsync, synchronous_commit, full_page_writes on), on disk."""
    with TemporaryCluster.start(parent=tempfile.gettempdir(), fast=False) as cluster:
        yield cluster


@contextmanager
def bench_database() -> Iterator[TemporaryCluster]:
    """A durable cluster with pgaudit_py installed in its database "bench"."""
    with durable_cluster() as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
            install(conn)
        yield cluster


def backlog(conn: psycopg.Connection, events: int) -> None:
    """Record `events` application events in one statement (ten tenants, a target each)."""
    conn.execute(f"SELECT audit.record(kind => 'order.paid', tenant_id => 't' || (n % 10), actor_id => 'u' || n,"
                 f" target_type => 'order', target_id => 'o-' || n, payload => jsonb_build_object('amount', n))"
                 f" FROM generate_series(1, {int(events)}) n")


def seal_rate(conn: psycopg.Connection) -> float:
    """Events per second sealing everything pending, in rounds of 10,000."""
    started = time.perf_counter()
    total = 0
    while (moved := seal(conn, 10_000).sealed):
        total += moved
    return total / (time.perf_counter() - started)


def latencies_ms(calls: int, call: Callable[[], object]) -> tuple[float, float]:
    """The p50 and p99 wall time of `calls` calls, in milliseconds."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def backend_cpu(conn: psycopg.Connection) -> float:
    """CPU seconds (user and system) the connection's backend has used so far, from /proc: the
    cluster runs on this machine. Resolution is a clock tick (10 ms): measure many operations."""
    fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_call_us(conn: psycopg.Connection, calls: int, call: Callable[[], object]) -> float:
    """The backend CPU time of one call, in microseconds, over `calls` calls."""
    before = backend_cpu(conn)
    for _ in range(calls):
        call()
    return (backend_cpu(conn) - before) / calls * 1e6


def medians(rounds: int, sides: Sequence[T], measure: Callable[[T], float]) -> dict[T, float]:
    """The median of measure(side) for each side over `rounds`, reversing the order every other round."""
    results: dict[T, list[float]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            results[side].append(measure(side))
    return {side: statistics.median(values) for side, values in results.items()}


def alternate(rounds: int, measure: Callable[[bool], float]) -> tuple[float, float]:
    """Medians of measure(False) and measure(True) over `rounds`, alternating which goes first."""
    both = medians(rounds, (False, True), measure)
    return both[False], both[True]


def pgbench(cluster: TemporaryCluster, dbname: str, script: str, clients: int, seconds: int,
            user: str | None = None) -> float:
    """Transactions per second of `script` (pgbench -M prepared)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    try:
        done = subprocess.run(
            [find_binary("pgbench"), "-n", "-M", "prepared", "-f", f.name, "-c", str(clients),
             "-j", str(min(clients, 2)), "-T", str(seconds), "-h", cluster.host, "-p", str(cluster.port),
             "-U", user or cluster.user, dbname], capture_output=True, text=True)
    finally:
        Path(f.name).unlink()
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    for line in done.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(done.stdout)
