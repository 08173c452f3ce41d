"""The library for asyncio applications: the same functions, for a psycopg AsyncConnection.

The jobs that commit batch after batch (prune_all, archive, key rotations, install) run from the
command line or the worker, and have no asyncio form.

SQLAlchemy (psycopg dialect): pass `(await connection.get_raw_connection()).driver_connection` for an
AsyncConnection of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pgaudit_py import blocks, leftovers
from pgaudit_py.context import CONTEXT_NAMES, GET_CONTEXT, SET_CONTEXT
from pgaudit_py.errors import InvalidInput, translated
from pgaudit_py.events import (
    Event,
    EventCount,
    MonthlyCount,
    count_events_call,
    list_events_call,
    monthly_event_counts_call,
    not_recorded,
    record_call,
)
from pgaudit_py.retention import PrunePreview, PruneResult, preview_prune_call, prune_events_call
from pgaudit_py.sealing import SealResult, SealStatus, seal_call, seal_status_call
from pgaudit_py.secrets import (
    KEYS,
    SecretSlot,
    StoredSecret,
    declare_secret_call,
    delete_secret_call,
    hold_key_statement,
    list_secrets_call,
    parse_master_key,
    put_secret_call,
    read_secret_call,
)
from pgaudit_py.session import tuples
from pgaudit_py.tracking import (
    RowState,
    TrackedTable,
    disable_tracking_call,
    enable_tracking_call,
    row_as_of_call,
    row_history_call,
    row_state_as_of_call,
    tracked_tables_call,
)
from pgaudit_py.transactions import end_failed_transaction_async, read_committed_async, synced_async

__all__ = ["audit_context", "count_events", "declare_secret", "delete_secret", "disable_tracking", "enable_tracking",
           "list_events", "list_secrets", "monthly_event_counts", "preview_prune", "prune_events", "put_secret",
           "read_secret", "record", "row_as_of", "row_history", "row_state_as_of", "seal", "seal_status",
           "tracked_tables", "use_master_key"]


@asynccontextmanager
async def audit_context(conn: psycopg.AsyncConnection, *, actor_type: str | None = None,
                        actor_id: str | None = None, tenant_id: str | None = None,
                        correlation_id: str | None = None,
                        client_addr: str | None = None) -> AsyncIterator[psycopg.AsyncTransaction]:
    """As pgaudit_py.audit_context: a transaction (a savepoint inside another) whose events are
    attributed to these values; inside another transaction it overrides only what it names, for
    the block only."""
    named = (actor_type, actor_id, tenant_id, correlation_id, client_addr)
    await synced_async(conn)  # what the server is in, not a statement still on its way
    async with blocks.held_async(conn), conn.transaction() as tx, \
            tuples(conn) as cursor:  # not the caller's row_factory
        outermost = not tx.savepoint_name  # as psycopg decided, under the connection's lock
        before: tuple[str, ...] = ("",) * len(CONTEXT_NAMES)
        if not outermost:
            row = await (await cursor.execute(GET_CONTEXT)).fetchone()
            assert row is not None
            before = tuple(row)
        await cursor.execute(SET_CONTEXT, [own if own is not None else outer
                                                for own, outer in zip(named, before, strict=True)])
        yield tx
        if not outermost:
            await cursor.execute(SET_CONTEXT, list(before))


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
    async with blocks.writing_async(conn):
        await leftovers.clear_if_due_async(conn)  # a request's, where an integration marked the session
        try:
            if not best_effort:
                return await call.one_async(conn)
            async with conn.transaction():
                return await call.one_async(conn)
        except InvalidInput:
            raise
        except psycopg.Error as exc:
            not_recorded(kind, exc, best_effort)
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
    async with read_committed_async(conn):
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


async def row_as_of(conn: psycopg.AsyncConnection, table: str, key: str, at: datetime, *,
                    audit_schema: str = "audit") -> Any:
    """As pgaudit_py.row_as_of."""
    return await row_as_of_call(table, key, at, audit_schema=audit_schema).one_async(conn)


async def enable_tracking(conn: psycopg.AsyncConnection, table: str, *, exclude_columns: list[str] | None = None,
                          redact_columns: list[str] | None = None, tenant_column: str | None = None,
                          skip_noop_updates: bool = True, kind_prefix: str | None = None, baseline: bool = False,
                          audit_schema: str = "audit") -> TrackedTable:
    """As pgaudit_py.enable_tracking."""
    call = enable_tracking_call(table, exclude_columns=exclude_columns, redact_columns=redact_columns,
                                tenant_column=tenant_column, skip_noop_updates=skip_noop_updates,
                                kind_prefix=kind_prefix, baseline=baseline, audit_schema=audit_schema)
    if not baseline:
        return await call.one_async(conn)
    async with read_committed_async(conn):
        return await call.one_async(conn)


async def disable_tracking(conn: psycopg.AsyncConnection, table: str, *, audit_schema: str = "audit") -> bool:
    """As pgaudit_py.disable_tracking."""
    return bool(await disable_tracking_call(table, audit_schema=audit_schema).one_async(conn))


async def tracked_tables(conn: psycopg.AsyncConnection, *, audit_schema: str = "audit") -> list[TrackedTable]:
    """As pgaudit_py.tracked_tables."""
    return await tracked_tables_call(audit_schema=audit_schema).all_async(conn)


async def preview_prune(conn: psycopg.AsyncConnection, older_than: timedelta | str, batch_size: int = 1000, *,
                        audit_schema: str = "audit") -> PrunePreview:
    """As pgaudit_py.preview_prune."""
    return await preview_prune_call(older_than, batch_size, audit_schema=audit_schema).one_async(conn)


async def prune_events(conn: psycopg.AsyncConnection, older_than: timedelta | str, batch_size: int = 1000, *,
                       audit_schema: str = "audit") -> PruneResult:
    """As pgaudit_py.prune_events (one batch)."""
    return await prune_events_call(older_than, batch_size, audit_schema=audit_schema).one_async(conn)


@asynccontextmanager
async def use_master_key(conn: psycopg.AsyncConnection, key: str | None, *, new_key: str | None = None,
                         audit_schema: str = "audit") -> AsyncIterator[None]:
    """As pgaudit_py.secrets.use_master_key: client-key mode for this session, forgotten on exit."""
    held = {which: parse_master_key(value, which) for which, value in zip(KEYS, (key, new_key), strict=True)
            if value is not None}
    try:
        for which, value in held.items():
            with translated():
                await tuples(conn).execute(hold_key_statement(audit_schema), (value, which))
        yield
    finally:
        if not conn.closed and not conn.broken and await end_failed_transaction_async(conn):
            began = not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            for which in held:
                await tuples(conn).execute(hold_key_statement(audit_schema), ("", which))
            if began:
                await conn.commit()


async def declare_secret(conn: psycopg.AsyncConnection, key: str, description: str, *,
                         audit_schema: str = "audit") -> SecretSlot:
    """As pgaudit_py.secrets.declare_secret."""
    return await declare_secret_call(key, description, audit_schema=audit_schema).one_async(conn)


async def put_secret(conn: psycopg.AsyncConnection, tenant_id: str, key: str, value: str, *,
                     audit_schema: str = "audit") -> int:
    """As pgaudit_py.secrets.put_secret."""
    return int(await put_secret_call(tenant_id, key, value, audit_schema=audit_schema).one_async(conn))


async def read_secret(conn: psycopg.AsyncConnection, tenant_id: str, key: str, *,
                      audit_schema: str = "audit") -> str | None:
    """As pgaudit_py.secrets.read_secret (the read is recorded as an event)."""
    value = await read_secret_call(tenant_id, key, audit_schema=audit_schema).one_async(conn)
    return None if value is None else str(value)


async def delete_secret(conn: psycopg.AsyncConnection, tenant_id: str, key: str, *,
                        audit_schema: str = "audit") -> bool:
    """As pgaudit_py.secrets.delete_secret."""
    return bool(await delete_secret_call(tenant_id, key, audit_schema=audit_schema).one_async(conn))


async def list_secrets(conn: psycopg.AsyncConnection, tenant_id: str | None = None, *,
                       audit_schema: str = "audit") -> list[StoredSecret]:
    """As pgaudit_py.secrets.list_secrets."""
    return await list_secrets_call(tenant_id, audit_schema=audit_schema).all_async(conn)
