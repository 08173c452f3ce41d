"""Retention: preview and paginated prune of sealed events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from pgaudit_py.calls import Call, function_call
from pgaudit_py.transactions import require_no_transaction


@dataclass(frozen=True)
class PrunePreview:
    cutoff: datetime
    events: int
    first_seq: int | None
    last_seq: int | None
    batches: int


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    deleted: int
    first_seq: int | None
    last_seq: int | None
    more: bool


def preview_prune_call(older_than: timedelta | str, batch_size: int = 1000, *,
                       audit_schema: str = "audit") -> Call[PrunePreview]:
    return function_call(audit_schema, "preview_prune", PrunePreview,
                         {"older_than": "interval", "batch_size": "int4"}, (older_than, batch_size))


def prune_events_call(older_than: timedelta | str, batch_size: int = 1000, *,
                      audit_schema: str = "audit") -> Call[PruneResult]:
    return function_call(audit_schema, "prune_events", PruneResult,
                         {"older_than": "interval", "batch_size": "int4"}, (older_than, batch_size))


def preview_prune(conn: psycopg.Connection, older_than: timedelta | str, batch_size: int = 1000, *,
                  audit_schema: str = "audit") -> PrunePreview:
    return preview_prune_call(older_than, batch_size, audit_schema=audit_schema).one(conn)


def prune_events(conn: psycopg.Connection, older_than: timedelta | str, batch_size: int = 1000, *,
                 audit_schema: str = "audit") -> PruneResult:
    """Delete one batch of old sealed events (maintainer role); see `more` for whether to go on."""
    return prune_events_call(older_than, batch_size, audit_schema=audit_schema).one(conn)


def prune_all(conn: psycopg.Connection, older_than: timedelta | str, batch_size: int = 1000, *,
              audit_schema: str = "audit",
              on_batch: Callable[[PruneResult], None] | None = None) -> int:
    """Prune batch after batch, each in its own short transaction; returns how many went."""
    require_no_transaction(conn, "prune_all commits every batch")
    total = 0
    while True:
        with conn.transaction():
            result = prune_events(conn, older_than, batch_size, audit_schema=audit_schema)
        total += result.deleted
        if on_batch:
            on_batch(result)
        if not result.more or result.deleted == 0:
            return total
