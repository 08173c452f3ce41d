"""Thin wrappers of the event functions: record, list, count, monthly tallies, event types."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from pgaudit_py import blocks, leftovers
from pgaudit_py.calls import Call, function_call
from pgaudit_py.deep_json import tolerant_dumps
from pgaudit_py.errors import InvalidInput
from pgaudit_py.record_input import check_texts, payload_json, refused_input

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
    catalogue: str | None  # the shipped catalogue that registered it (pgaudit types load), if one did


# txid is xid8, which psycopg has no loader for: it arrives as text.
EVENT_CASTS = {"txid": "text"}


def record_call(kind: str, *, tenant_id: str | None = None, actor_type: str | None = None,
                actor_id: str | None = None, target_type: str | None = None, target_id: str | None = None,
                payload: dict[str, Any] | None = None, outcome: str = "success",
                correlation_id: str | None = None, idempotency_key: str | None = None,
                audit_schema: str = "audit") -> Call[Event]:
    # Refused here, before anything is sent: under best_effort the database's refusal would be
    # swallowed with the event (pgaudit_py.record_input).
    check_texts({"kind": kind, "tenant_id": tenant_id, "actor_type": actor_type, "actor_id": actor_id,
                 "target_type": target_type, "target_id": target_id, "outcome": outcome,
                 "correlation_id": correlation_id, "idempotency_key": idempotency_key})
    text = payload_json(payload if payload is not None else {})
    return function_call(audit_schema, "record", Event, {
        "kind": "text", "tenant_id": "text", "actor_type": "text", "actor_id": "text", "target_type": "text",
        "target_id": "text", "payload": "jsonb", "outcome": "text", "correlation_id": "text",
        "idempotency_key": "text"},
        (kind, tenant_id, actor_type, actor_id, target_type, target_id,
         Jsonb(payload, lambda _: text), outcome, correlation_id, idempotency_key),
        EVENT_CASTS)


def record(conn: psycopg.Connection, kind: str, *, tenant_id: str | None = None,
           actor_type: str | None = None, actor_id: str | None = None,
           target_type: str | None = None, target_id: str | None = None,
           payload: dict[str, Any] | None = None, outcome: str = "success",
           correlation_id: str | None = None, idempotency_key: str | None = None,
           best_effort: bool = False, audit_schema: str = "audit") -> Event | None:
    """Record an application event in the caller's transaction; returns it (pending until sealed).

    With best_effort=True a storage failure is logged and None returned, inside a savepoint so
    the caller's transaction goes on; bad input (InvalidInput) still raises. UnsupportedSession when
    another thread's or task's audit_context block is open on the connection.
    """
    call = record_call(kind, tenant_id=tenant_id, actor_type=actor_type, actor_id=actor_id,
                       target_type=target_type, target_id=target_id, payload=payload, outcome=outcome,
                       correlation_id=correlation_id, idempotency_key=idempotency_key, audit_schema=audit_schema)
    with blocks.writing(conn):
        leftovers.clear_if_due(conn, conn.autocommit)  # a request's, where an integration marked the session
        try:
            if not best_effort:
                return call.one(conn)
            with conn.transaction():
                return call.one(conn)
        except InvalidInput:
            raise
        except psycopg.Error as exc:
            not_recorded(kind, exc, best_effort)
            return None


def not_recorded(kind: str, exc: psycopg.Error, best_effort: bool) -> None:
    """What a database error in record() (sync or async) becomes: InvalidInput when it refused the
    input, which raises under best_effort too; else the error, or under best_effort a warning and None."""
    refused = refused_input(exc)
    if refused is not None:
        raise refused from exc
    if not best_effort:
        raise exc
    # Never the payload: it may hold what an audit log must not leak into application logs.
    log.warning("audit event %s not recorded: %s (SQLSTATE %s)", kind, type(exc).__name__, exc.sqlstate)


# list_events' arguments and their types, in order.
LIST_EVENTS_ARGUMENTS = {
    "tenant_id": "text", "kind_prefix": "text", "target_type": "text", "target_id": "text", "correlation_id": "text",
    "outcome": "text", "actor_type": "text", "actor_id": "text", "since": "timestamptz", "until": "timestamptz",
    "since_seq": "int8", "before_seq": "int8", "page_size": "int4", "before_intake_id": "int8"}


def list_events_call(*, tenant_id: str | None = None, kind_prefix: str | None = None,
                     target_type: str | None = None, target_id: str | None = None,
                     correlation_id: str | None = None, outcome: str | None = None,
                     actor_type: str | None = None, actor_id: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     since_seq: int | None = None, before_seq: int | None = None, page_size: int = 50,
                     before_intake_id: int | None = None, audit_schema: str = "audit") -> Call[Event]:
    return function_call(audit_schema, "list_events", Event, LIST_EVENTS_ARGUMENTS,
        (tenant_id, kind_prefix, target_type, target_id, correlation_id, outcome, actor_type, actor_id, since,
         until, since_seq, before_seq, page_size, before_intake_id), EVENT_CASTS)


def list_events(conn: psycopg.Connection, *, tenant_id: str | None = None,
                kind_prefix: str | None = None, target_type: str | None = None,
                target_id: str | None = None, correlation_id: str | None = None,
                outcome: str | None = None, actor_type: str | None = None,
                actor_id: str | None = None, since: datetime | None = None,
                until: datetime | None = None, since_seq: int | None = None,
                before_seq: int | None = None, page_size: int = 50,
                before_intake_id: int | None = None, audit_schema: str = "audit") -> list[Event]:
    """Events matching every filter given. Newest first: pending events lead (page back through
    them with before_intake_id, the intake_id of the last one seen), then sealed ones (page back
    with before_seq); since_seq pages forwards over sealed events."""
    return list_events_call(tenant_id=tenant_id, kind_prefix=kind_prefix, target_type=target_type,
                            target_id=target_id, correlation_id=correlation_id, outcome=outcome,
                            actor_type=actor_type, actor_id=actor_id, since=since, until=until, since_seq=since_seq,
                            before_seq=before_seq, page_size=page_size, before_intake_id=before_intake_id,
                            audit_schema=audit_schema).all(conn)


def count_events_call(*, tenant_id: str | None = None, since: datetime | None = None,
                      until: datetime | None = None, by_kind_prefix: list[str] | None = None,
                      audit_schema: str = "audit") -> Call[EventCount]:
    return function_call(audit_schema, "count_events", EventCount, {
        "tenant_id": "text", "since": "timestamptz", "until": "timestamptz", "by_kind_prefix": "text[]"},
        (tenant_id, since, until, by_kind_prefix or []))


def count_events(conn: psycopg.Connection, *, tenant_id: str | None = None,
                 since: datetime | None = None, until: datetime | None = None,
                 by_kind_prefix: list[str] | None = None, audit_schema: str = "audit") -> EventCount:
    return count_events_call(tenant_id=tenant_id, since=since, until=until, by_kind_prefix=by_kind_prefix,
                             audit_schema=audit_schema).one(conn)


def monthly_event_counts_call(*, tenant_id: str | None = None, month_count: int = 12,
                              by_kind_prefix: list[str] | None = None,
                              audit_schema: str = "audit") -> Call[MonthlyCount]:
    return function_call(audit_schema, "monthly_event_counts", MonthlyCount, {
        "tenant_id": "text", "month_count": "int4", "by_kind_prefix": "text[]"},
        (tenant_id, month_count, by_kind_prefix or []))


def monthly_event_counts(conn: psycopg.Connection, *, tenant_id: str | None = None,
                         month_count: int = 12, by_kind_prefix: list[str] | None = None,
                         audit_schema: str = "audit") -> list[MonthlyCount]:
    return monthly_event_counts_call(tenant_id=tenant_id, month_count=month_count, by_kind_prefix=by_kind_prefix,
                                     audit_schema=audit_schema).all(conn)


def register_event_type(conn: psycopg.Connection, kind: str, json_schema: dict[str, Any], *,
                        strict: bool | None = False, replace: bool = False, catalogue: str | None = None,
                        audit_schema: str = "audit") -> EventType:
    """Register the payload schema of a kind. A kind a catalogue registered is replaced only with
    replace=True (and, loading a catalogue, a kind registered by hand with another schema).
    strict=None keeps the kind's strictness (a new kind is not strict)."""
    return function_call(audit_schema, "register_event_type", EventType,
                         {"kind": "text", "schema": "jsonb", "strict": "bool", "replace": "bool",
                          "catalogue": "text"},
                         (kind, Jsonb(json_schema, tolerant_dumps), strict, replace, catalogue)).one(conn)
