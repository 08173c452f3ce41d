"""Benchmark: what each of the log's indexes costs a sealed event, written row by row or built in bulk.

Run: python bench/log_indexes.py [--rounds 3] [--rows 100000]

The events of one tracked INSERT of --rows rows into t(id int primary key, a int, b text) are
sealed; then their log rows are written again, with one INSERT ... SELECT each time:
1. into a copy of the log without indexes; beside it, the untracked INSERT of the same rows into t
   and the tracked one (its events sealed before the next round);
2. into a copy with one of the log's indexes (its cost: the difference with 1), for each index;
3. into a copy with all of them (what sealing writes, beside its other work);
4. into a copy without indexes, then every index built with CREATE INDEX, as a partition that is
   full could be indexed in bulk.
Beside them, hashing the same events' canonical lines with nothing written (what the chain costs
in any design that keeps the canonical form). Microseconds per event, in units of the untracked
INSERT (as bench/capture.py's bars are), and the floors they set for the tracked INSERT including
sealing: the tracked statement plus the log's rows written once, whatever else sealing does, and
with their lines hashed. A throwaway cluster with PostgreSQL's default
durability, on disk; medians of --rounds, each measurement after a CHECKPOINT.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import psycopg
from common import durable_cluster

from pgaudit_py import install, seal


def timed(conn: psycopg.Connection, prepare: Callable[[], object], statements: list[str]) -> float:
    """Seconds that `statements` take, after `prepare` and a CHECKPOINT."""
    prepare()
    conn.execute("CHECKPOINT")
    started = time.perf_counter()
    for statement in statements:
        conn.execute(statement)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    rows = int(args.rows)

    with durable_cluster() as cluster, psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        install(conn)
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, a int, b text)")
        conn.execute("SELECT audit.enable_tracking('t')")
        conn.execute(f"INSERT INTO t SELECT g, g, md5(g::text) FROM generate_series(1, {rows}) g")
        while seal(conn, 1_000_000).sealed:
            pass
        conn.execute("CREATE TABLE sealed AS SELECT * FROM audit.event_log WHERE origin = 'capture'")
        last_seq = conn.execute("SELECT last_seq FROM audit.seal_state").fetchone()[0]  # type: ignore[index]
        conn.execute("VACUUM ANALYZE sealed")
        # The first partition's indexes: every partition has the same.
        indexes = conn.execute(
            "SELECT c.relname, regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', 'USING ')"
            "  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'audit.event_log_000000'::regclass ORDER BY c.relname").fetchall()

        def fresh(with_indexes: list[str]) -> None:
            conn.execute("DROP TABLE IF EXISTS log_copy")
            conn.execute("CREATE TABLE log_copy (LIKE audit.event_log)")
            for definition in with_indexes:
                conn.execute(f"CREATE INDEX ON log_copy {definition}")

        def fresh_with(definition: str) -> Callable[[], None]:
            return lambda: fresh([definition])

        def plain() -> None:
            conn.execute("DROP TABLE IF EXISTS plain")
            conn.execute("CREATE TABLE plain (id int PRIMARY KEY, a int, b text)")

        def emptied() -> None:
            conn.execute("TRUNCATE t")
            while seal(conn, 1_000_000).sealed:
                pass

        copy = "INSERT INTO log_copy SELECT * FROM sealed"
        sides: dict[str, tuple[Callable[[], object], list[str]]] = {
            "untracked INSERT into t": (plain, [f"INSERT INTO plain SELECT g, g, md5(g::text)"
                                                f" FROM generate_series(1, {rows}) g"]),
            "tracked INSERT into t": (emptied, [f"INSERT INTO t SELECT g, g, md5(g::text)"
                                               f" FROM generate_series(1, {rows}) g"]),
            "no index": (lambda: fresh([]), [copy]),
        }
        for name, definition in indexes:
            sides[name] = (fresh_with(definition), [copy])
        sides["all indexes, row by row"] = (lambda: fresh([d for _, d in indexes]), [copy])
        sides["all indexes, built after the rows"] = (
            lambda: fresh([]), [copy] + [f"CREATE INDEX ON log_copy {d}" for _, d in indexes])

        sides["their canonical lines hashed, nothing written"] = (  # without JIT, as seal() runs
            lambda: conn.execute("SET jit = off"),
            [f"SELECT count(audit._event_hash(l, 2::smallint)) FROM audit.event_log l"
             f" WHERE l.origin = 'capture' AND l.seq <= {int(last_seq)}", "RESET jit"])

        results: dict[str, list[float]] = {side: [] for side in sides}
        for r in range(args.rounds):
            for side in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                prepare, statements = sides[side]
                results[side].append(timed(conn, prepare, statements))
        seconds = {side: statistics.median(values) for side, values in results.items()}

        unit = seconds.pop("untracked INSERT into t")
        tracked = seconds.pop("tracked INSERT into t")
        bare = seconds["no index"]
        print(f"{rows:,} captured INSERT events; the untracked INSERT of their rows took {unit * 1000:.0f} ms (= 1x),"
              f" the tracked one {tracked / unit:.2f}x")
        print(f"{'their log rows written into a copy of the log':<58}{'µs/event':>10}{'x untracked':>13}")
        hashing = seconds.pop("their canonical lines hashed, nothing written")
        whole = ("no index", "all indexes, row by row", "all indexes, built after the rows")
        for side, s in seconds.items():
            cost = s if side in whole else s - bare
            label = side if side in whole else f"  + {side}"
            print(f"{label:<58}{cost / rows * 1e6:>10.2f}{cost / unit:>12.2f}x")
        print(f"{'their canonical lines hashed, nothing written':<58}{hashing / rows * 1e6:>10.2f}"
              f"{hashing / unit:>12.2f}x")
        print("floor of the tracked INSERT including sealing (bar 3.5x): the statement, the rows written once")
        for side in whole:
            print(f"  {'with ' + side:<56}{(tracked + seconds[side]) / unit:>22.2f}x")
        least = tracked + seconds["no index"] + hashing
        print(f"  {'with no index, and their lines hashed':<56}{least / unit:>22.2f}x")

if __name__ == "__main__":
    main()
