"""The library for asyncio applications: the same functions, for a psycopg AsyncConnection.

SQLAlchemy (psycopg dialect): pass `(await connection.get_raw_connection()).driver_connection` for an
AsyncConnection of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from pgaudit_py.context import CONTEXT_NAMES, GET_CONTEXT, SET_CONTEXT
from pgaudit_py.errors import InvalidInput
from pgaudit_py.events import (
    Event,
    EventCount,
    MonthlyCount,
    count_events_call,
    list_events_call,
    log_not_recorded,
    monthly_event_counts_call,
    record_call,
)
from pgaudit_py.sealing import SealResult, SealStatus, seal_call, seal_status_call
from pgaudit_py.tracking import RowState, row_history_call, row_state_as_of_call

__all__ = ["audit_context", "count_events", "list_events", "monthly_event_counts", "record", "row_history",
           "row_state_as_of", "seal", "seal_status"]


@asynccontextmanager
async def audit_context(conn: psycopg.AsyncConnection, *, actor_type: str | None = None,
                        actor_id: str | None = None, tenant_id: str | None = None,
                        correlation_id: str | None = None,
                        client_addr: str | None = None) -> AsyncIterator[psycopg.AsyncTransaction]:
    """As pgaudit_py.audit_context: a transaction (a savepoint inside another) whose events are
    attributed to these values; inside another transaction it overrides only what it names, for
    the block only."""
    named = (actor_type, actor_id, tenant_id, correlation_id, client_addr)
    outermost = conn.info.transaction_status == TransactionStatus.IDLE
    async with conn.transaction() as tx:
        before: tuple[str, ...] = ("",) * len(CONTEXT_NAMES)
        if not outermost:
            row = await (await conn.execute(GET_CONTEXT)).fetchone()
            assert row is not None
            before = tuple(row)
        await conn.execute(SET_CONTEXT, [own if own is not None else outer
                                          for own, outer in zip(named, before, strict=True)])
        yield tx
        if not outermost:
            await conn.execute(SET_CONTEXT, list(before))


async def record(conn: psycopg.AsyncConnection, kind: str, *, tenant_id: str | None = None,
                 actor_type: str | None = None, actor_id: str | None = None,
                 target_type: str | None = None, target_id: str | None = None,
                 payload: dict[str, Any] | None = None, outcome: str = "success",
                 correlation_id: str | None = None, idempotency_key: str | None = None,
                 best_effort: bool = False, audit_schema: str = "audit") -> Event | None:
    """As pgaudit_py.record."""
    call = record_call(kind, tenant_id=tenant_id, actor_type=actor_type, actor_id=actor_id,
                       target_type=target_type, target_id=target_id, payload=payload, outcome=outcome,
                       correlation_id=correlation_id, idempotency_key=idempotency_key, audit_schema=audit_schema)
    if not best_effort:
        return await call.one_async(conn)
    try:
        async with conn.transaction():
            return await call.one_async(conn)
    except InvalidInput:
        raise
    except psycopg.Error as exc:
        log_not_recorded(kind, exc)
        return None


async def list_events(conn: psycopg.AsyncConnection, *, tenant_id: str | None = None,
                      kind_prefix: str | None = None, target_type: str | None = None,
                      target_id: str | None = None, correlation_id: str | None = None,
                      outcome: str | None = None, actor_type: str | None = None,
                      actor_id: str | None = None, since: datetime | None = None,
                      until: datetime | None = None, since_seq: int | None = None,
                      before_seq: int | None = None, page_size: int = 50,
                      before_intake_id: int | None = None, audit_schema: str = "audit") -> list[Event]:
    """As pgaudit_py.list_events."""
    return await list_events_call(
        tenant_id=tenant_id, kind_prefix=kind_prefix, target_type=target_type, target_id=target_id,
        correlation_id=correlation_id, outcome=outcome, actor_type=actor_type, actor_id=actor_id, since=since,
        until=until, since_seq=since_seq, before_seq=before_seq, page_size=page_size,
        before_intake_id=before_intake_id, audit_schema=audit_schema).all_async(conn)


async def count_events(conn: psycopg.AsyncConnection, *, tenant_id: str | None = None,
                       since: datetime | None = None, until: datetime | None = None,
                       by_kind_prefix: list[str] | None = None, audit_schema: str = "audit") -> EventCount:
    """As pgaudit_py.count_events."""
    return await count_events_call(tenant_id=tenant_id, since=since, until=until, by_kind_prefix=by_kind_prefix,
                                   audit_schema=audit_schema).one_async(conn)


async def monthly_event_counts(conn: psycopg.AsyncConnection, *, tenant_id: str | None = None,
                               month_count: int = 12, by_kind_prefix: list[str] | None = None,
                               audit_schema: str = "audit") -> list[MonthlyCount]:
    """As pgaudit_py.monthly_event_counts."""
    return await monthly_event_counts_call(tenant_id=tenant_id, month_count=month_count,
                                           by_kind_prefix=by_kind_prefix, audit_schema=audit_schema).all_async(conn)


async def seal(conn: psycopg.AsyncConnection, max_events: int = 10000, *, audit_schema: str = "audit") -> SealResult:
    """As pgaudit_py.seal."""
    return await seal_call(max_events, audit_schema=audit_schema).one_async(conn)


async def seal_status(conn: psycopg.AsyncConnection, *, audit_schema: str = "audit") -> SealStatus:
    """As pgaudit_py.seal_status."""
    return await seal_status_call(audit_schema=audit_schema).one_async(conn)


async def row_history(conn: psycopg.AsyncConnection, table: str, key: str, *,
                      audit_schema: str = "audit") -> list[Event]:
    """As pgaudit_py.row_history."""
    return await row_history_call(table, key, audit_schema=audit_schema).all_async(conn)


async def row_state_as_of(conn: psycopg.AsyncConnection, table: str, key: str, at: datetime, *,
                          audit_schema: str = "audit") -> RowState:
    """As pgaudit_py.row_state_as_of."""
    return await row_state_as_of_call(table, key, at, audit_schema=audit_schema).one_async(conn)
