"""Benchmark: events archived per second, to a local directory and to an S3 server, against
reading the same events with COPY ... TO.

Run: python bench/archive.py [--events 100000] [--batch 10000] [--rounds 3]

For each target and round, two sets of --events events are recorded and sealed: the newer set is
read with COPY (the baseline), the oldest unarchived --events events are archived in batches of
--batch events (canonical lines, gzip, upload, read-back check, manifest, record, delete); which
of the two goes first alternates from round to round, and each figure is the median of --rounds.
The S3 server is moto's, started as a separate process on loopback (so its CPU is not this
process's). A throwaway cluster with default durability.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
from common import bench_database
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pgaudit_py import archive as archiving
from pgaudit_py.archive_targets import S3Target, Target, open_target
from pgaudit_py.checkpoint import Keys


def make_events(conn: psycopg.Connection, n: int, block: int) -> tuple[int, int]:
    """n events, sealed in blocks of `block` events (an archive batch holds whole blocks)."""
    conn.execute("SELECT audit.record('order.created', tenant_id => 't' || (g %% 10), target_type => 'order',"
                 " target_id => g::text, payload => jsonb_build_object('n', g, 'price', 12.5, 'note', 'benchmark'))"
                 " FROM generate_series(1, %s) g", (n,))
    first = None
    while True:
        row = conn.execute("SELECT sealed, first_seq, last_seq FROM audit.seal(%s)", (block,)).fetchone()
        assert row is not None
        if not row[0]:
            break
        first = first or row[1]
        last = row[2]
    assert first is not None
    return first, last


def copy_rate(conn: psycopg.Connection, first: int, last: int) -> float:
    started = time.perf_counter()
    size = 0
    with conn.cursor().copy("COPY (SELECT * FROM audit.event_log WHERE seq BETWEEN %s AND %s) TO STDOUT",
                            (first, last)) as copy:
        for chunk in copy:
            size += len(chunk)
    return (last - first + 1) / (time.perf_counter() - started)


def archive_rate(conn: psycopg.Connection, target: Target, keys: Keys, n: int, batch: int) -> float:
    started = time.perf_counter()
    run = archiving.archive(conn, target, keys, older_than=None, max_batches=n // batch)
    elapsed = time.perf_counter() - started
    # The system events archiving records (audit.archived, ...) are sealed in small blocks of their
    # own, which shift batch boundaries: count what was archived.
    assert run.events >= n - batch, run.events
    return run.events / elapsed


def rates(conn: psycopg.Connection, target: Target, keys: Keys, events: int, batch: int,
          rounds: int) -> tuple[float, float]:
    """Medians of (COPY, archive) events per second, alternating which goes first."""
    copied, archived = [], []
    for r in range(rounds):
        make_events(conn, events, batch)
        first, last = make_events(conn, events, batch)
        conn.execute("CHECKPOINT")
        for step in (("copy", "archive") if r % 2 == 0 else ("archive", "copy")):
            if step == "copy":
                copied.append(copy_rate(conn, first, last))
            else:
                archived.append(archive_rate(conn, target, keys, events, batch))
    return statistics.median(copied), statistics.median(archived)


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/")
            break
        except OSError:
            time.sleep(0.1)
    return server, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100000)
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.events % args.batch:
        parser.error("--events must be a multiple of --batch")
    private = Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, hmac_key=os.urandom(32))

    server, endpoint = start_moto()
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        with bench_database() as cluster, psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn, \
                tempfile.TemporaryDirectory() as directory:
            conn.execute("SELECT audit.set_archive_settings('1 millisecond', %s, NULL)", (args.batch,))
            s3 = open_target("s3://bench/audit")
            assert isinstance(s3, S3Target)
            s3.client.create_bucket(Bucket="bench")
            for name, target in (("local directory", open_target(f"file://{directory}")), ("S3 (moto)", s3)):
                copied, archived = rates(conn, target, keys, args.events, args.batch, args.rounds)
                print(f"{name}: {archived:,.0f} events/s archived against {copied:,.0f} events/s read with COPY TO"
                      f" ({archived / copied:.2f})")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
