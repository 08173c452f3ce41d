"""Thin wrappers of the event functions: record, list, count, monthly tallies, event types."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from pgaudit_py.errors import InvalidInput, translated

log = logging.getLogger("pgaudit_py")


@dataclass(frozen=True)
class Event:
    seq: int | None
    pending: bool
    id: UUID | None
    tenant_id: str | None
    actor_type: str
    actor_id: str | None
    db_role: str
    client_addr: IPv4Address | IPv6Address | None
    application_name: str | None
    kind: str
    target_type: str | None
    target_id: str | None
    outcome: str
    correlation_id: str | None
    idempotency_key: str | None
    txid: str
    occurred_at: datetime
    sealed_at: datetime | None
    payload: dict[str, Any]
    schema_valid: bool | None
    row_before: dict[str, Any] | None
    row_after: dict[str, Any] | None
    changed: dict[str, Any] | None
    block_no: int | None
    origin: str | None  # record, capture or system; None for events written before 0.2
    intake_id: int | None  # pending events only: they are sealed in this order


@dataclass(frozen=True)
class EventCount:
    count: int
    by_kind_prefix: dict[str, int]


@dataclass(frozen=True)
class MonthlyCount:
    month: date
    count: int
    by_kind_prefix: dict[str, int]


@dataclass(frozen=True)
class EventType:
    kind: str
    schema: dict[str, Any]
    strict: bool
    registered_at: datetime
    registered_by: str


# txid is xid8, which psycopg has no loader for: it arrives as text.
_EVENT_COLUMNS = sql.SQL(", ").join(
    sql.SQL("txid::text") if name == "txid" else sql.Identifier(name)
    for name in Event.__dataclass_fields__)


def _call(audit_schema: str, function: str, args: list[str]) -> sql.Composed:
    return sql.SQL("SELECT {cols} FROM {s}.{f}({args})").format(
        cols=_EVENT_COLUMNS, s=sql.Identifier(audit_schema), f=sql.Identifier(function),
        args=sql.SQL(", ").join(sql.SQL(a) for a in args))


def record(conn: psycopg.Connection, kind: str, *, tenant_id: str | None = None,
           actor_type: str | None = None, actor_id: str | None = None,
           target_type: str | None = None, target_id: str | None = None,
           payload: dict[str, Any] | None = None, outcome: str = "success",
           correlation_id: str | None = None, idempotency_key: str | None = None,
           best_effort: bool = False, audit_schema: str = "audit") -> Event | None:
    """Record an application event in the caller's transaction; returns it (pending until sealed).

    With best_effort=True a storage failure is logged and None returned, inside a savepoint so
    the caller's transaction goes on; bad input (InvalidInput) still raises.
    """
    query = _call(audit_schema, "record", [
        "kind => %s::text", "tenant_id => %s::text", "actor_type => %s::text",
        "actor_id => %s::text", "target_type => %s::text", "target_id => %s::text",
        "payload => %s::jsonb", "outcome => %s::text", "correlation_id => %s::text",
        "idempotency_key => %s::text"])
    params = (kind, tenant_id, actor_type, actor_id, target_type, target_id,
              Jsonb(payload if payload is not None else {}), outcome, correlation_id, idempotency_key)

    def run() -> Event:
        with translated(), conn.cursor(row_factory=class_row(Event)) as cur:
            row = cur.execute(query, params).fetchone()
            assert row is not None
            return row

    if not best_effort:
        return run()
    try:
        with conn.transaction():
            return run()
    except InvalidInput:
        raise
    except psycopg.Error as exc:
        # Never the payload: it may hold what an audit log must not leak into application logs.
        log.warning("audit event %s not recorded: %s (SQLSTATE %s)", kind, type(exc).__name__, exc.sqlstate)
        return None


def list_events(conn: psycopg.Connection, *, tenant_id: str | None = None,
                kind_prefix: str | None = None, target_type: str | None = None,
                target_id: str | None = None, correlation_id: str | None = None,
                outcome: str | None = None, actor_type: str | None = None,
                actor_id: str | None = None, since: datetime | None = None,
                until: datetime | None = None, since_seq: int | None = None,
                before_seq: int | None = None, page_size: int = 50,
                audit_schema: str = "audit") -> list[Event]:
    query = _call(audit_schema, "list_events", [
        "tenant_id => %s::text", "kind_prefix => %s::text", "target_type => %s::text",
        "target_id => %s::text", "correlation_id => %s::text", "outcome => %s::text",
        "actor_type => %s::text", "actor_id => %s::text", "since => %s::timestamptz",
        "until => %s::timestamptz", "since_seq => %s::bigint", "before_seq => %s::bigint",
        "page_size => %s::integer"])
    params = (tenant_id, kind_prefix, target_type, target_id, correlation_id, outcome,
              actor_type, actor_id, since, until, since_seq, before_seq, page_size)
    with translated(), conn.cursor(row_factory=class_row(Event)) as cur:
        return cur.execute(query, params).fetchall()


def count_events(conn: psycopg.Connection, *, tenant_id: str | None = None,
                 since: datetime | None = None, until: datetime | None = None,
                 by_kind_prefix: list[str] | None = None, audit_schema: str = "audit") -> EventCount:
    query = sql.SQL("SELECT * FROM {}.count_events(tenant_id => %s::text, since => %s::timestamptz,"
                    " until => %s::timestamptz, by_kind_prefix => %s::text[])").format(sql.Identifier(audit_schema))
    with translated(), conn.cursor(row_factory=class_row(EventCount)) as cur:
        row = cur.execute(query, (tenant_id, since, until, by_kind_prefix or [])).fetchone()
        assert row is not None
        return row


def monthly_event_counts(conn: psycopg.Connection, *, tenant_id: str | None = None,
                         month_count: int = 12, by_kind_prefix: list[str] | None = None,
                         audit_schema: str = "audit") -> list[MonthlyCount]:
    query = sql.SQL("SELECT * FROM {}.monthly_event_counts(tenant_id => %s::text,"
                    " month_count => %s::integer, by_kind_prefix => %s::text[])").format(sql.Identifier(audit_schema))
    with translated(), conn.cursor(row_factory=class_row(MonthlyCount)) as cur:
        return cur.execute(query, (tenant_id, month_count, by_kind_prefix or [])).fetchall()


def register_event_type(conn: psycopg.Connection, kind: str, json_schema: dict[str, Any], *,
                        strict: bool = False, audit_schema: str = "audit") -> EventType:
    query = sql.SQL("SELECT * FROM {}.register_event_type(kind => %s::text, schema => %s::jsonb,"
                    " strict => %s::boolean)").format(sql.Identifier(audit_schema))
    with translated(), conn.cursor(row_factory=class_row(EventType)) as cur:
        row = cur.execute(query, (kind, Jsonb(json_schema), strict)).fetchone()
        assert row is not None
        return row
