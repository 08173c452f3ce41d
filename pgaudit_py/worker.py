"""The background work: sealing without end, and a daily duty between rounds, surviving lost
sessions. The `pgaudit worker` command runs it; so can any host process (a service, an HTTP server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import psycopg

from pgaudit_py.errors import CannotConnect, PgAuditError
from pgaudit_py.rate_limits import purge_rate_counters
from pgaudit_py.sealing import SealResult, seal_continuously
from pgaudit_py.session import tuples

Connect = Callable[[], AbstractContextManager[psycopg.Connection]]
Daily = Callable[[psycopg.Connection], None]
# The duties between rounds wait no longer than this for a lock: one held for good (a transaction
# left open, or prepared) makes a duty fail, to be tried again next minute, and sealing goes on.
DUTY_LOCK_TIMEOUT = "10s"


@contextmanager
def _waiting_at_most(conn: psycopg.Connection, timeout: str) -> Iterator[None]:
    before = tuples(conn).execute("SELECT pg_catalog.current_setting('lock_timeout')").fetchone()
    tuples(conn).execute("SELECT pg_catalog.set_config('lock_timeout', %s, false)", (timeout,))
    try:
        yield
    finally:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        tuples(conn).execute("SELECT pg_catalog.set_config('lock_timeout', %s, false)", (before[0] if before else "0",))


def run_worker(connect: Connect, stop: threading.Event, *, interval: float = 0.5, max_events: int = 10000,
               audit_schema: str = "audit", daily: Daily | None = None,
               on_round: Callable[[SealResult], None] | None = None,
               say: Callable[[str], None] = lambda message: None) -> None:
    """Seal until `stop` is set. Each minute between rounds, rate-limit counters whose windows have
    passed are purged and `daily` (the archive run, say) is offered; their failures are reported
    through `say` and sealing goes on. A lost session (server
    restart, failover, terminated backend) is reconnected with backoff, 1 s doubling to 30 s; a
    first connection that fails is a configuration error and raises."""
    next_check = 0.0
    conn: psycopg.Connection | None = None

    def between_rounds() -> None:
        nonlocal next_check
        if conn is None or time.monotonic() < next_check:
            return
        next_check = time.monotonic() + 60  # once a minute: the daily duty is claimed in the database
        with _waiting_at_most(conn, DUTY_LOCK_TIMEOUT):
            try:
                purge_rate_counters(conn, audit_schema=audit_schema)
            except (PgAuditError, psycopg.Error) as exc:
                if stop.is_set():  # a stop cut it short (its interrupt can surface as a failed clean-up's error)
                    return
                say(f"purging rate-limit counters failed (sealing goes on): {str(exc).strip().splitlines()[0]}")
            if daily is None:
                return
            try:
                daily(conn)
            except (PgAuditError, psycopg.Error) as exc:
                if stop.is_set():
                    return
                say(f"archiving failed (sealing goes on): {str(exc).strip().splitlines()[0]}")

    retry_in = 0.0
    while not stop.is_set():
        try:
            with connect() as conn:
                say("reconnected" if retry_in else f"sealing every {interval} s in schema {audit_schema}; Ctrl-C stops")
                retry_in = 1.0
                seal_continuously(conn, stop, interval=interval, max_events=max_events, audit_schema=audit_schema,
                                  on_round=on_round, between_rounds=between_rounds)
                return
        except (psycopg.OperationalError, CannotConnect) as exc:
            if not retry_in:
                raise
            if stop.is_set():
                return
            reason = exc.message if isinstance(exc, CannotConnect) else (
                f"connection lost ({str(exc).strip().splitlines()[0]})")
            say(f"{reason}; reconnecting in {retry_in:.0f} s")
            stop.wait(retry_in)
            retry_in = min(retry_in * 2, 30.0)
