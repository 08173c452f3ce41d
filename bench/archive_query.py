"""Benchmark: querying an archive with DuckDB, as it is (gzip JSON Lines) and from a columnar copy
(Parquet) made of the same events, in the same run (issue 20: is a Parquet copy worth adding?).

Run: python bench/archive_query.py [--events 500000]

Builds a log of --events record() events (bench/scale.py's mix), archives it to a directory in
batches of 100,000 events, then times making the archive's view (each line's JSON columns cut from
its text, beside DuckDB reading the same lines alone) and three queries (a tenant's events in a
period, counts by kind, one target's history) over it and over a Parquet file written from it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import psycopg
from common import bench_database
from scale import ROUND, record_round, seal_all

from pgaudit_py.archive import archive
from pgaudit_py.archive_query import create_events_view, data_objects
from pgaudit_py.archive_targets import open_target
from pgaudit_py.checkpoint import generate_keys, load_keys

QUERIES = {
    "a tenant's events in a period": "SELECT count(*) FROM events WHERE tenant_id = 't7'"
                                     " AND occurred_at >= now() - INTERVAL 1 DAY",
    "counts by kind": "SELECT kind, count(*) FROM events GROUP BY kind",
    "one target's history": "SELECT seq, kind FROM events WHERE target_id = 'o-4242' ORDER BY seq",
}


def timed(db: duckdb.DuckDBPyConnection, sql: str, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        db.execute(sql).fetchall()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    args = parser.parse_args()
    with bench_database() as cluster, psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn, \
            tempfile.TemporaryDirectory() as scratch:
        for first in range(0, args.events, ROUND):
            record_round(conn, first)
            seal_all(conn, ROUND)
        conn.execute("SELECT audit.set_archive_settings(interval '1 second', 100000, 3)")
        generate_keys(Path(scratch) / "keys")
        keys = load_keys(signing_key=Path(scratch) / "keys" / "checkpoint-ed25519.pem")
        directory = Path(scratch) / "archive"
        done = archive(conn, open_target(f"file://{directory}"), keys, older_than=timedelta(milliseconds=1))
        size = sum(p.stat().st_size for p in directory.glob("*.jsonl.gz"))
        print(f"archived {done.events:,} events in {len(done.batches)} batches, {size / 1e6:.0f} MB of gzip JSON Lines")
        db = duckdb.connect(":memory:")
        db.execute("SET TimeZone = 'UTC'")
        listed = ", ".join(f"'{p}'" for p in data_objects(directory))
        started = time.perf_counter()
        db.execute(f"SELECT count(json->'payload') FROM read_json_objects([{listed}], format = 'newline_delimited')")
        read = time.perf_counter() - started
        (cut := Path(scratch) / "cut").mkdir()
        started = time.perf_counter()
        create_events_view(db, directory, cut)
        made = time.perf_counter() - started
        print(f"view made in {made:.1f} s (the JSON columns cut from each line), DuckDB reading the same lines alone"
              f" {read:.1f} s, {made / read:.1f}x")
        parquet = Path(scratch) / "events.parquet"
        started = time.perf_counter()
        db.execute(f"COPY (SELECT * EXCLUDE (line) FROM events) TO '{parquet}' (FORMAT parquet)")
        print(f"Parquet copy written in {time.perf_counter() - started:.1f} s, {parquet.stat().st_size / 1e6:.0f} MB")
        db.execute(f"CREATE VIEW columnar AS SELECT * FROM read_parquet('{parquet}')")
        for name, sql in QUERIES.items():
            jsonl = timed(db, sql)
            columnar = timed(db, sql.replace("FROM events", "FROM columnar"))
            print(f"  {name}: JSON Lines {jsonl:.2f} s, Parquet {columnar:.3f} s, {jsonl / columnar:.0f}x")


if __name__ == "__main__":
    main()
