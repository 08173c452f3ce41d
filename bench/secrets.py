"""Benchmark: reading a secret against a plain SELECT of a row of the same size; rotation rates.

Run: python bench/secrets.py [--reads 3000] [--rounds 3] [--tenants 2000] [--values 5000]

Reads: one connection, a prepared statement per call, autocommit (each read also records its
audit event and commits it), in client-key mode and in server-key mode, against SELECTing the
same-length text from an ordinary table; median per-call latency of --rounds, alternating which
side goes first. Rotation: a master-key rotation over --tenants data keys (to a new client key,
and to a new server key file), and one tenant's data-key rotation over --values values, each in
batches of 500 committed one by one; medians of --rounds rotations (there is no baseline to
alternate with). A throwaway cluster with default durability.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import psycopg
from common import alternate, bench_database

from pgaudit_py import install, secrets

VALUE = "sk_live_" + "x" * 100


def latency_us(conn: psycopg.Connection, query: str, params: tuple[object, ...], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        conn.execute(query, params, prepare=True).fetchone()
    return (time.perf_counter() - started) / n * 1e6


def key_file(cluster_dir: str, key: str) -> str:
    path = os.path.join(cluster_dir, f"bench-{key[:6]}.key")
    with open(path, "w") as f:
        f.write(key + "\n")
    os.chmod(path, 0o600)
    if os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--values", type=int, default=5000)
    args = parser.parse_args()

    with bench_database() as cluster, psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
        conn.execute("CREATE TABLE plain (tenant_id text, key text, value text, PRIMARY KEY (tenant_id, key))")
        conn.execute("INSERT INTO plain VALUES ('t1', 'api.key', %s)", (VALUE,))
        client_key = os.urandom(32).hex()
        with secrets.use_master_key(conn, None, new_key=client_key):
            secrets.add_master_key(conn)
        secrets._set(conn, "master_key", client_key)
        secrets.declare_secret(conn, "api.key", "bench")
        secrets.put_secret(conn, "t1", "api.key", VALUE)

        def read(secret: bool) -> float:
            if secret:
                return latency_us(conn, "SELECT audit.read_secret(%s, %s)", ("t1", "api.key"), args.reads)
            return latency_us(conn, "SELECT value FROM plain WHERE tenant_id = %s AND key = %s",
                              ("t1", "api.key"), args.reads)

        plain_us, client_us = alternate(args.rounds, read)
        print(f"read latency, client-key mode: {client_us:.0f} us against {plain_us:.0f} us for a plain SELECT"
              f" ({client_us / plain_us:.1f}x)")
        # Most of the difference is the audit event: a read writes and commits one.
        record_us = statistics.median(latency_us(conn, "SELECT audit.record('bench.read', 't1')", (), args.reads)
                                      for _ in range(args.rounds))
        print(f"  for scale: recording one event and committing it alone takes {record_us:.0f} us")

        # Master-key rotation over many tenants (client keys), then the same into server-key mode.
        for t in range(args.tenants):
            secrets.put_secret(conn, f"tenant{t}", "api.key", VALUE)
        data_keys = args.tenants + 1
        times = []
        current = client_key
        for _ in range(args.rounds):
            new_key = os.urandom(32).hex()
            with secrets.use_master_key(conn, current, new_key=new_key):
                secrets.add_master_key(conn)
                times.append(timed(lambda: secrets.rotate_master_key(conn, batch_size=500)))
            current = new_key
        seconds = statistics.median(times)
        print(f"master-key rotation (client keys): {data_keys} data keys re-wrapped in {seconds:.2f} s,"
              f" {data_keys / seconds:.0f}/s")
        secrets._set(conn, "master_key", current)
        install(conn, server_keys=True)  # lets the owner role read key files
        times = []
        for _ in range(args.rounds):
            secrets.add_master_key(conn, key_file(str(cluster.directory), os.urandom(32).hex()))
            times.append(timed(lambda: secrets.rotate_master_key(conn, batch_size=500)))
            secrets._set(conn, "master_key", "")  # from the second round on, file to file
        seconds = statistics.median(times)
        print(f"master-key rotation (to a server key file): {data_keys} data keys re-wrapped in {seconds:.2f} s,"
              f" {data_keys / seconds:.0f}/s")

        plain_us, server_us = alternate(args.rounds, read)
        print(f"read latency, server-key mode: {server_us:.0f} us against {plain_us:.0f} us for a plain SELECT"
              f" ({server_us / plain_us:.1f}x)")

        with conn.transaction():
            for v in range(args.values):
                secrets.declare_secret(conn, f"slot{v}", "bench")
                secrets.put_secret(conn, "big", f"slot{v}", VALUE)
        seconds = statistics.median(timed(lambda: secrets.rotate_tenant_key(conn, "big", batch_size=500))
                                    for _ in range(args.rounds))
        print(f"data-key rotation: {args.values} values re-encrypted in {seconds:.2f} s, {args.values / seconds:.0f}/s")


if __name__ == "__main__":
    main()
