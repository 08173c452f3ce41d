"""Write rate limits: per table (per user and per tenant) and per named operation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from pgaudit_py.calls import Call, function_call, value_call
from pgaudit_py.errors import RateLimited, translated
from pgaudit_py.events import record
from pgaudit_py.session import tuples
from pgaudit_py.transactions import end_failed_transaction, require_no_transaction

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RateLimit:
    scope: str
    target: str
    per_user: int | None
    per_tenant: int | None
    per_key: int | None
    window_seconds: int
    changed_at: datetime
    changed_by: str


def enable_rate_limit(conn: psycopg.Connection, table: str, *, per_user_per_minute: int | None = 60,
                      per_tenant_per_minute: int | None = 600, window_seconds: int = 60,
                      audit_schema: str = "audit") -> RateLimit:
    """Limit writes (statements) on `table`; None switches one of the two limits off."""
    return function_call(audit_schema, "enable_rate_limit", RateLimit, {
        "target": "regclass", "per_user_per_minute": "int4", "per_tenant_per_minute": "int4",
        "window_seconds": "int4"}, (table, per_user_per_minute, per_tenant_per_minute, window_seconds)).one(conn)


def disable_rate_limit(conn: psycopg.Connection, table: str, *, audit_schema: str = "audit") -> bool:
    with translated():
        row = tuples(conn).execute(sql.SQL("SELECT {}.disable_rate_limit(target => %s::pg_catalog.regclass)").format(
            sql.Identifier(audit_schema)), (table,)).fetchone()
    return bool(row and row[0])


def set_operation_limit(conn: psycopg.Connection, operation: str, per_minute: int, *, window_seconds: int = 60,
                        audit_schema: str = "audit") -> RateLimit:
    """Override, at run time, the limit application code passes for `operation`."""
    return function_call(audit_schema, "set_operation_limit", RateLimit, {
        "operation": "text", "per_minute": "int4", "window_seconds": "int4"},
        (operation, per_minute, window_seconds)).one(conn)


def rate_limits_call(*, audit_schema: str = "audit") -> Call[RateLimit]:
    query = sql.SQL("SELECT r.scope, CASE WHEN r.scope OPERATOR(pg_catalog.=) 'table'"
                    " THEN r.target::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text ELSE r.target END"
                    " AS target, r.per_user, r.per_tenant, r.per_key, r.window_seconds, r.changed_at, r.changed_by"
                    " FROM {}.rate_limits r ORDER BY 1, 2").format(sql.Identifier(audit_schema))
    return Call(query, (), RateLimit)


def rate_limits(conn: psycopg.Connection, *, audit_schema: str = "audit") -> list[RateLimit]:
    return rate_limits_call(audit_schema=audit_schema).all(conn)


def rate_limit(conn: psycopg.Connection, operation: str, key: str, per_minute: int = 60, *,
               window_seconds: int = 60, audit_schema: str = "audit") -> None:
    """Count one call of `operation` for `key`; raises RateLimited past the limit."""
    value_call(audit_schema, "rate_limit", {"operation": "text", "key": "text", "per_minute": "int4",
                                            "window_seconds": "int4"},
               (operation, key, per_minute, window_seconds)).one(conn)


def record_refusal(conn: psycopg.Connection, refusal: RateLimited, *, target: str | None = None,
                   audit_schema: str = "audit") -> None:
    """Record `security.rate_limited` in its own transaction (the refused one cannot commit).

    Call it once the refused transaction has ended (it rolls back a failed implicit one itself):
    inside a transaction block the event could only be part of the block, which then rolls back.
    """
    end_failed_transaction(conn)
    require_no_transaction(conn, "record_refusal must run after the refused transaction has ended")
    with conn.transaction():
        record(conn, "security.rate_limited", target_type="rate_limit", target_id=target,
               payload={"reason": refusal.message, "retry_after_ms": refusal.retry_after_ms},
               outcome="failure", audit_schema=audit_schema)
    refusal.recorded = True


def rate_limited(operation: str, *, key: Callable[..., str], per_minute: int = 60, window_seconds: int = 60,
                 audit_schema: str = "audit") -> Callable[[F], F]:
    """Decorate a function whose first argument is the connection: each call counts one
    `operation` for key(*args, **kwargs); a refusal is recorded, then raised as RateLimited.
    Called inside the caller's open transaction, it raises the refusal unrecorded
    (`recorded` False): only the caller can end that transaction, then record_refusal."""
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(conn: psycopg.Connection, *args: Any, **kwargs: Any) -> Any:
            limited_key = key(conn, *args, **kwargs)
            ours = conn.info.transaction_status == TransactionStatus.IDLE  # the refused transaction, if any
            try:
                rate_limit(conn, operation, limited_key, per_minute, window_seconds=window_seconds,
                           audit_schema=audit_schema)
            except RateLimited as refusal:
                if ours:
                    record_refusal(conn, refusal, target=f"{operation}:{limited_key}", audit_schema=audit_schema)
                raise
            return fn(conn, *args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate


def purge_rate_counters(conn: psycopg.Connection, batch_size: int = 10000, *, audit_schema: str = "audit") -> int:
    """Delete up to batch_size counter rows whose windows have passed (maintainer); how many went.
    The worker runs it every minute."""
    purge = value_call(audit_schema, "purge_rate_counters", {"batch_size": "int4"}, (batch_size,))
    with conn.transaction():
        return int(purge.one(conn) or 0)
