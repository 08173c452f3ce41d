"""Following the log: sealed events in seq order, as they are sealed.

seq is handed out when the sealer commits, in order and without gaps, so "every event after seq N"
is a complete answer at any moment: a consumer that resumes from the last seq it saw misses
nothing (a transaction that commits late gets a later seq) and sees nothing twice. Pending events
are never followed: an event reaches a follower once it is sealed, within the sealing interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from pgaudit_py.events import Event, list_events
from pgaudit_py.sealing import seal_status
from pgaudit_py.transactions import require_no_transaction

PAGE = 500


def sealed_high_water(conn: psycopg.Connection, audit_schema: str) -> int:
    """The last seq sealed and committed: every event up to it is visible now."""
    return seal_status(conn, audit_schema=audit_schema).last_seq


def follow(conn: psycopg.Connection, since_seq: int | None = None, *, audit_schema: str = "audit",
           poll_interval: float = 5.0, stop: threading.Event | None = None,
           tenant_id: str | None = None, kind_prefix: str | None = None, target_type: str | None = None,
           target_id: str | None = None, correlation_id: str | None = None, outcome: str | None = None,
           actor_type: str | None = None, actor_id: str | None = None, since: datetime | None = None,
           until: datetime | None = None) -> Iterator[Event]:
    """Yield sealed events with seq above since_seq (default: the last sealed now) that match the
    filters, in seq order, and wait for more when caught up: the sealer's NOTIFY on the channel
    named after the schema wakes it, and it looks again every poll_interval seconds in any case.
    Ends when `stop` is set (checked at least once a second while it waits). The connection must be in
    autocommit mode and is used by nothing else meanwhile: it LISTENs."""
    require_no_transaction(conn, "follow waits for notifications between transactions")
    if not conn.autocommit:
        raise psycopg.ProgrammingError("follow needs a connection in autocommit mode (notifications "
                                       "arrive between transactions)")
    filters: dict[str, Any] = {
        "tenant_id": tenant_id, "kind_prefix": kind_prefix, "target_type": target_type, "target_id": target_id,
        "correlation_id": correlation_id, "outcome": outcome, "actor_type": actor_type, "actor_id": actor_id,
        "since": since, "until": until}
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(audit_schema)))
    interrupted = False
    try:
        after = sealed_high_water(conn, audit_schema) if since_seq is None else since_seq
        while stop is None or not stop.is_set():
            # Read up to the high-water mark taken first: everything at or below it is committed,
            # so once a page comes back short, nothing matching is left below it.
            high = sealed_high_water(conn, audit_schema)
            while after < high:
                page = list_events(conn, since_seq=after, before_seq=high + 1, page_size=PAGE,
                                   audit_schema=audit_schema, **filters)
                for event in page:
                    assert event.seq is not None
                    after = event.seq
                    yield event
                if len(page) < PAGE:
                    after = high
            # Wait for a round's notification, or the poll interval, looking at `stop` every second.
            waited_until = time.monotonic() + poll_interval
            while (stop is None or not stop.is_set()) and (left := waited_until - time.monotonic()) > 0:
                if any(True for _ in conn.notifies(timeout=min(1.0, left), stop_after=1)):
                    break
    except KeyboardInterrupt:
        interrupted = True  # nothing more is asked of a connection that may not answer (its owner closes it)
        raise
    finally:
        if not interrupted and not conn.closed and not conn.broken:
            conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(audit_schema)))
