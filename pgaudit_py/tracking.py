"""Capture: which tables are tracked, and what their rows looked like."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pgaudit_py.calls import Call, ValueCall, function_call, table_read, value_call
from pgaudit_py.events import EVENT_CASTS, Event
from pgaudit_py.transactions import read_committed


@dataclass(frozen=True)
class TrackedTable:
    relid: int
    table_name: str
    kind_prefix: str
    key_columns: list[str] | None
    exclude_columns: list[str]
    redact_columns: list[str]
    tenant_column: str | None
    exclude_attnums: list[int]
    redact_attnums: list[int]
    tenant_attnum: int | None
    skip_noop_updates: bool
    enabled_at: datetime
    enabled_by: str
    baseline_at: datetime | None  # when its rows were imaged as <prefix>.baseline events


def enable_tracking_call(table: str, *, exclude_columns: list[str] | None = None,
                         redact_columns: list[str] | None = None, tenant_column: str | None = None,
                         skip_noop_updates: bool = True, kind_prefix: str | None = None, baseline: bool = False,
                         audit_schema: str = "audit") -> Call[TrackedTable]:
    return function_call(audit_schema, "enable_tracking", TrackedTable, {
        "target": "regclass", "exclude_columns": "text[]", "redact_columns": "text[]", "tenant_column": "text",
        "skip_noop_updates": "bool", "kind_prefix": "text", "baseline": "bool"},
        (table, exclude_columns or [], redact_columns or [], tenant_column, skip_noop_updates, kind_prefix,
         baseline))


def enable_tracking(conn: psycopg.Connection, table: str, *, exclude_columns: list[str] | None = None,
                    redact_columns: list[str] | None = None, tenant_column: str | None = None,
                    skip_noop_updates: bool = True, kind_prefix: str | None = None, baseline: bool = False,
                    audit_schema: str = "audit") -> TrackedTable:
    """Capture every write on `table` (a name as SQL would resolve it) from now on; with
    `baseline`, first record a `<prefix>.baseline` event for each row it holds."""
    call = enable_tracking_call(table, exclude_columns=exclude_columns, redact_columns=redact_columns,
                                tenant_column=tenant_column, skip_noop_updates=skip_noop_updates,
                                kind_prefix=kind_prefix, baseline=baseline, audit_schema=audit_schema)
    if not baseline:
        return call.one(conn)
    with read_committed(conn):
        return call.one(conn)


def disable_tracking_call(table: str, *, audit_schema: str = "audit") -> ValueCall:
    return value_call(audit_schema, "disable_tracking", {"target": "regclass"}, (table,))


def disable_tracking(conn: psycopg.Connection, table: str, *, audit_schema: str = "audit") -> bool:
    """Stop capturing `table`; False if it was not tracked."""
    return bool(disable_tracking_call(table, audit_schema=audit_schema).one(conn))


def tracked_tables_call(*, audit_schema: str = "audit") -> Call[TrackedTable]:
    return table_read(audit_schema, "tracked_tables", TrackedTable, order_by="table_name")


def tracked_tables(conn: psycopg.Connection, *, audit_schema: str = "audit") -> list[TrackedTable]:
    return tracked_tables_call(audit_schema=audit_schema).all(conn)


def row_history(conn: psycopg.Connection, table: str, key: str, *, audit_schema: str = "audit") -> list[Event]:
    """Every captured version of one row, oldest first. key: the primary key as text, or a JSON
    array such as '[1, "EU"]' for a composite key."""
    return row_history_call(table, key, audit_schema=audit_schema).all(conn)


def row_history_call(table: str, key: str, *, audit_schema: str = "audit") -> Call[Event]:
    return function_call(audit_schema, "row_history", Event, {"target": "regclass", "key": "text"},
                         (table, key), EVENT_CASTS)


def row_as_of_call(table: str, key: str, at: datetime, *, audit_schema: str = "audit") -> ValueCall:
    return value_call(audit_schema, "row_as_of", {"target": "regclass", "key": "text", "at": "timestamptz"},
                      (table, key, at))


def row_as_of(conn: psycopg.Connection, table: str, key: str, at: datetime, *,
              audit_schema: str = "audit") -> Any:
    """The row as captured at `at` (a dict, as psycopg's JSON loader reads it, or whatever the
    connection's own JSON loader makes of it), or None if it did not exist then."""
    return row_as_of_call(table, key, at, audit_schema=audit_schema).one(conn)


@dataclass(frozen=True)
class RowState:
    state: str  # existed, absent, or unknown (no record: before tracking, or unchanged since before it)
    image: dict[str, Any] | None


def row_state_as_of(conn: psycopg.Connection, table: str, key: str, at: datetime, *,
                    audit_schema: str = "audit") -> RowState:
    """What row_as_of's None cannot say: whether the row is known not to have existed at `at`
    ("absent"), or whether there is no record of it then ("unknown")."""
    return row_state_as_of_call(table, key, at, audit_schema=audit_schema).one(conn)


def row_state_as_of_call(table: str, key: str, at: datetime, *, audit_schema: str = "audit") -> Call[RowState]:
    return function_call(audit_schema, "row_state_as_of", RowState,
                         {"target": "regclass", "key": "text", "at": "timestamptz"}, (table, key, at))
