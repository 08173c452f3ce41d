"""Sealing: moving committed events from the intake into the sequenced log."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from pgaudit_py.calls import Call, function_call
from pgaudit_py.errors import InstallError
from pgaudit_py.session import tuples
from pgaudit_py.transactions import read_committed, read_committed_transaction, require_no_transaction

WORKER_APPLICATION_NAME = "pgaudit worker"


@dataclass(frozen=True)
class SealResult:
    sealed: int
    first_seq: int | None
    last_seq: int | None
    block_no: int | None


@dataclass(frozen=True)
class SealStatus:
    pending: int
    oldest_pending_at: datetime | None
    last_seq: int
    last_sealed_at: datetime | None
    quarantined: int  # events the sealer set aside (audit.quarantine)
    now: datetime

    @property
    def lag(self) -> timedelta:
        """How long the oldest pending event has waited; zero when nothing is pending."""
        return self.now - self.oldest_pending_at if self.oldest_pending_at else timedelta(0)


def seal_call(max_events: int = 10000, *, audit_schema: str = "audit") -> Call[SealResult]:
    return function_call(audit_schema, "seal", SealResult, {"max_events": "int4"}, (max_events,))


def seal(conn: psycopg.Connection, max_events: int = 10000, *, audit_schema: str = "audit") -> SealResult:
    with read_committed(conn):
        return seal_call(max_events, audit_schema=audit_schema).one(conn)


def seal_status(conn: psycopg.Connection, *, audit_schema: str = "audit") -> SealStatus:
    return seal_status_call(audit_schema=audit_schema).one(conn)


def seal_status_call(*, audit_schema: str = "audit") -> Call[SealStatus]:
    # `now` is the server's clock, which the lag is measured against.
    query = sql.SQL("SELECT s.pending, s.oldest_pending_at, s.last_seq, s.last_sealed_at, s.quarantined,"
                    " pg_catalog.now() AS now"
                    " FROM {}.seal_status() s").format(sql.Identifier(audit_schema))
    return Call(query, (), SealStatus)


def seal_continuously(conn: psycopg.Connection, stop: threading.Event, *, interval: float = 0.5,
                      max_events: int = 10000, audit_schema: str = "audit",
                      on_round: Callable[[SealResult], None] | None = None,
                      between_rounds: Callable[[], None] | None = None) -> None:
    """Seal until `stop` is set: each round its own transaction; no pause while a round is full.
    `between_rounds` runs after every round (the worker's other duties)."""
    require_no_transaction(conn, "seal_continuously commits every round")
    while not stop.is_set():
        with read_committed_transaction(conn):
            result = seal(conn, max_events, audit_schema=audit_schema)
        if result.sealed and on_round:
            on_round(result)
        if between_rounds:
            between_rounds()
        if result.sealed < max_events:
            stop.wait(interval)


def schedule_sealing(conn: psycopg.Connection, *, schedule: str = "* * * * *", max_events: int = 10000,
                     audit_schema: str = "audit") -> int:
    """Have pg_cron run `CALL <schema>.seal_backlog()` in this database; returns the job id.

    pg_cron must be installed in this database (its `cron.database_name`). Scheduling again
    replaces the job of the same name.
    """
    row = tuples(conn).execute("SELECT pg_catalog.to_regprocedure("
                               "'cron.schedule_in_database(text,text,text,text,text,boolean)')"
                               " IS NOT NULL").fetchone()
    if not row or not row[0]:
        raise InstallError("pg_cron is not installed in this database: sealing cannot be scheduled",
                           hint="CREATE EXTENSION pg_cron (it needs shared_preload_libraries = 'pg_cron' "
                                "and cron.database_name set to this database), or run `pgaudit worker`")
    command = sql.SQL("CALL {}.seal_backlog({})").format(sql.Identifier(audit_schema), sql.Literal(max_events))
    job = tuples(conn).execute("SELECT cron.schedule_in_database(%s, %s, %s, pg_catalog.current_database())",
                               (f"pgaudit_py seal {audit_schema}", schedule, command.as_string(conn))).fetchone()
    assert job is not None
    return int(job[0])
