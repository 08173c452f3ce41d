"""Capture: which tables are tracked, and what their rows looked like."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from pgaudit_py.calls import Call, function_call, table_read
from pgaudit_py.errors import translated
from pgaudit_py.events import EVENT_CASTS, Event


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


def enable_tracking(conn: psycopg.Connection, table: str, *, exclude_columns: list[str] | None = None,
                    redact_columns: list[str] | None = None, tenant_column: str | None = None,
                    skip_noop_updates: bool = True, kind_prefix: str | None = None, baseline: bool = False,
                    audit_schema: str = "audit") -> TrackedTable:
    """Capture every write on `table` (a name as SQL would resolve it) from now on; with
    `baseline`, first record a `<prefix>.baseline` event for each row it holds."""
    return function_call(audit_schema, "enable_tracking", TrackedTable, {
        "target": "regclass", "exclude_columns": "text[]", "redact_columns": "text[]", "tenant_column": "text",
        "skip_noop_updates": "boolean", "kind_prefix": "text", "baseline": "boolean"},
        (table, exclude_columns or [], redact_columns or [], tenant_column, skip_noop_updates, kind_prefix,
         baseline)).one(conn)


def disable_tracking(conn: psycopg.Connection, table: str, *, audit_schema: str = "audit") -> bool:
    """Stop capturing `table`; False if it was not tracked."""
    query = sql.SQL("SELECT {}.disable_tracking(target => %s::regclass)").format(sql.Identifier(audit_schema))
    with translated():
        row = conn.execute(query, (table,)).fetchone()
    return bool(row and row[0])


def tracked_tables(conn: psycopg.Connection, *, audit_schema: str = "audit") -> list[TrackedTable]:
    return table_read(audit_schema, "tracked_tables", TrackedTable, order_by="table_name").all(conn)


def row_history(conn: psycopg.Connection, table: str, key: str, *, audit_schema: str = "audit") -> list[Event]:
    """Every captured version of one row, oldest first. key: the primary key as text, or a JSON
    array such as '[1, "EU"]' for a composite key."""
    return row_history_call(table, key, audit_schema=audit_schema).all(conn)


def row_history_call(table: str, key: str, *, audit_schema: str = "audit") -> Call[Event]:
    return function_call(audit_schema, "row_history", Event, {"target": "regclass", "key": "text"},
                         (table, key), EVENT_CASTS)


def row_as_of(conn: psycopg.Connection, table: str, key: str, at: datetime, *,
              audit_schema: str = "audit") -> dict[str, Any] | None:
    """The row as captured at `at`, or None if it did not exist then."""
    query = sql.SQL("SELECT {}.row_as_of(target => %s::regclass, key => %s::text, at => %s::timestamptz)"
                    ).format(sql.Identifier(audit_schema))
    with translated():
        row = conn.execute(query, (table, key, at)).fetchone()
    return row[0] if row else None


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
