"""Benchmark: the first page of list_events while captured events wait to be sealed.

Run: python bench/pending_page.py [--events 20000] [--calls 50]

A table t(id int primary key, a int, doc jsonb) is tracked, and one statement inserts --events
rows whose doc holds 80 small objects (about 5 kB of JSON, compressed in the intake). While their
events are pending, list_events(page_size => 50) (no filter, and with a kind prefix that matches
every event) and count_events() are timed; then everything is sealed and the same calls are timed
again, over the sealed log with its indexes: the baseline, in the same run. The intake has no
index, so every call reads all pending events; what matters is that a page computes the stored
form (wild numbers tamed, as the sealer will store them) of its own events only.
A throwaway cluster with PostgreSQL's default durability, on disk.
"""
from __future__ import annotations

import argparse

import psycopg
from common import bench_database, latencies_ms

from pgaudit_py import enable_tracking, list_events, seal
from pgaudit_py.events import count_events


def timings(conn: psycopg.Connection, calls: int) -> dict[str, tuple[float, float]]:
    return {
        "list_events(page_size => 50)": latencies_ms(calls, lambda: list_events(conn, page_size=50)),
        "list_events(kind_prefix => 'public.t', page_size => 50)":
            latencies_ms(calls, lambda: list_events(conn, kind_prefix="public.t", page_size=50)),
        "count_events()": latencies_ms(calls, lambda: count_events(conn)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with bench_database() as cluster, psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, a int, doc jsonb)")
        enable_tracking(conn, "public.t")
        conn.execute("INSERT INTO t SELECT g, g, (SELECT jsonb_agg(jsonb_build_object('k', i, 'v', md5(i::text)))"
                     " FROM generate_series(1, 80) i) FROM generate_series(1, %s) g", (args.events,))
        conn.execute("VACUUM ANALYZE audit.event_intake")
        pending = timings(conn, args.calls)
        while seal(conn, 1_000_000).sealed:
            pass
        conn.execute("VACUUM ANALYZE audit.event_log")
        sealed = timings(conn, args.calls)
    print(f"{args.events:,} captured events of about 5 kB each; p50 / p99 over {args.calls} calls")
    for name, (p50, p99) in pending.items():
        base50, base99 = sealed[name]
        print(f"  {name}: pending {p50:.1f} / {p99:.1f} ms, sealed {base50:.1f} / {base99:.1f} ms"
              f" ({p99 / base99:.1f}x at p99)")


if __name__ == "__main__":
    main()
