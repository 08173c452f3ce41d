"""Benchmark: the HTTP API (issue 17).

Run: python bench/api.py [--events 1000000] [--requests 300] [--stream-seconds 20]

1. A log of --events sealed record() events (as bench/scale.py builds it: 50 tenants, 10,000
   actors, six kinds and a rare one, ...).
2. `pgaudit serve` in its own process, as a login role holding audit_reader, with a reader token.
   For GET /v1/audit?limit=50 without a filter, with each single filter, and one page deep in
   keyset paging: p50 and p99 over --requests sequential requests on one keep-alive connection
   (bar: p99 at most 25 ms), beside the same list_events(page_size => 50) called over SQL in the
   same run (the baseline: the ratio is what HTTP, JSON and the token check add). Requests per
   second without a filter, from 4 client threads.
3. The stream: `pgaudit worker` at its defaults seals while two writers record 1,000 events a
   second in all (each its own transaction) for --stream-seconds; an SSE client on
   /v1/audit/stream takes the time from each writer's commit to the event's arrival: p50 and p99
   (bar: p99 at most 1.5 s).
A throwaway cluster with PostgreSQL's default durability, on disk; the client, the server, the
worker and PostgreSQL share this machine's cores.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
from common import bench_database
from scale import ROUND, record_round, seal_all

from pgaudit_py import list_events, record
from pgaudit_py.tokens import create_token

CLI = [sys.executable, "-m", "pgaudit_py.cli"]


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed_ms(calls: int, call: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("pgaudit serve did not start")
        time.sleep(0.2)


def reads(conn: psycopg.Connection, client: httpx.Client, calls: int, total: int) -> None:
    hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    deep = total // 10
    cases: dict[str, dict[str, str]] = {
        "no filter": {}, "tenant_id": {"tenant_id": "t7"}, "kind_prefix": {"kind_prefix": "order."},
        "kind_prefix, a rare kind": {"kind_prefix": "refund."}, "target_type": {"target_type": "invoice"},
        "target_id": {"target_id": "o-4242"}, "correlation_id": {"correlation_id": "c-42424"},
        "outcome": {"outcome": "failure"}, "actor_type": {"actor_type": "service"}, "actor_id": {"actor_id": "u4242"},
        "since": {"since": hour_ago}, f"before_seq {deep:,} (deep page)": {"before_seq": str(deep)},
    }
    print(f"GET /v1/audit?limit=50 on a log of {total:,} events ({calls} requests each; SQL: list_events over"
          " psycopg, the same filters, in the same run):")
    worst = 0.0
    for name, query in cases.items():
        sql_args: dict[str, object] = {k: (datetime.fromisoformat(v) if k == "since" else
                                           int(v) if k == "before_seq" else v) for k, v in query.items()}
        response = client.get("/v1/audit", params={"limit": "50", **query})
        assert response.status_code == 200, response.text
        http = timed_ms(calls, functools.partial(client.get, "/v1/audit", params={"limit": "50", **query}))
        direct = timed_ms(calls, functools.partial(list_events, conn, page_size=50, **sql_args))  # type: ignore[arg-type]
        (h50, h99), (s50, s99) = percentiles(http), percentiles(direct)
        worst = max(worst, h99)
        print(f"  {name}: HTTP p50 {h50:.1f} ms, p99 {h99:.1f} ms; SQL p50 {s50:.1f} ms, p99 {s99:.1f} ms;"
              f" HTTP/SQL p50 {h50 / s50:.2f}{'  MISSED (bar 25 ms)' if h99 > 25 else ''}")
    print(f"  worst p99 {worst:.1f} ms (bar: at most 25 ms)")


def throughput(url: str, token: str, seconds: float = 5.0, threads: int = 4) -> None:
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    def loop() -> int:
        done = 0
        with httpx.Client(base_url=url, headers=headers) as client:
            while time.monotonic() < stop:
                client.get("/v1/audit", params={"limit": "50"}).raise_for_status()
                done += 1
        return done

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: loop(), range(threads)))
    print(f"GET /v1/audit?limit=50 from {threads} threads: {total / seconds:,.0f} requests/s")


def stream_delay(dsn: str, url: str, token: str, seconds: float, rate: int = 1000) -> None:
    committed: dict[int, float] = {}
    delays: list[float] = []
    done = threading.Event()
    ready = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=None) as client, \
                client.stream("GET", "/v1/audit/stream", params={"kind_prefix": "bench.stream"}) as response:
            for line in response.iter_lines():
                ready.set()
                if line.startswith("data: "):
                    n = json.loads(line[6:])["payload"]["n"]
                    arrived = time.perf_counter()
                    while n not in committed:  # the writer is between its commit and its bookkeeping
                        time.sleep(0.0001)
                    delays.append(arrived - committed[n])
                if done.is_set() and len(delays) >= len(committed):
                    return

    def write(first: int, step: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.perf_counter()
            k = 0
            while (due := started + k * step / rate) < started + seconds:  # this writer's share of the rate
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
                n = first + k * step
                record(conn, "bench.stream", payload={"n": n})
                committed[n] = time.perf_counter()
                k += 1

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(30)
    writers = [threading.Thread(target=write, args=(i, 2)) for i in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    listener.join(timeout=30)
    p50, p99 = percentiles(delays)
    print(f"stream: {len(committed):,} events written at {rate:,}/s for {seconds:.0f} s with `pgaudit worker` at its"
          f" defaults; {len(delays):,} arrived; commit to SSE client p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
          f" (bar: p99 at most 1,500 ms){'  MISSED' if p99 > 1.5 else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--stream-seconds", type=float, default=20.0)
    args = parser.parse_args()
    events = max(ROUND, args.events // ROUND * ROUND)

    with bench_database() as cluster, psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
        started = time.perf_counter()
        for first in range(0, events, ROUND):
            record_round(conn, first)
            seal_all(conn, ROUND)
        conn.execute("VACUUM ANALYZE audit.event_log")
        conn.execute("VACUUM audit.event_intake")
        print(f"built a log of {events:,} sealed events in {time.perf_counter() - started:.0f} s")
        conn.execute("CREATE ROLE bench_reader LOGIN; GRANT audit_reader TO bench_reader")
        token = create_token(conn, "bench", "reader").token
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        logs = Path(cluster.directory)
        server = start([*CLI, "serve", "--dsn", cluster.dsn("bench", "bench_reader"), "--port", str(port)],
                       logs / "serve.log")
        try:
            wait_healthy(url)
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
                reads(conn, client, args.requests, events)
            throughput(url, token)
            worker = start([*CLI, "worker", "--dsn", cluster.dsn("bench")], logs / "worker.log")
            try:
                time.sleep(2)
                stream_delay(cluster.dsn("bench"), url, token, args.stream_seconds)
            finally:
                worker.terminate()
                worker.wait(30)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
