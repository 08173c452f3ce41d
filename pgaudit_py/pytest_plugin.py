"""A pytest plugin for testing an application's own auditing (`pip install 'pgaudit_py[pytest]'`;
registered through the `pytest11` entry point, so installing is enabling).

Fixtures:
- `pgaudit_db`: a psycopg connection (autocommit, superuser) to a fresh database with pgaudit_py
  installed, cloned for each test from a template installed once a session (pytest-postgresql's
  janitor), so a test costs a CREATE DATABASE ... TEMPLATE, not an install.
- `pgaudit_dsn`: that database's connection string, for the application under test.
- `audit_trail`: assertions on what the log holds (`assert_recorded`), and sealing on demand.
- `pgaudit_cluster`: the PostgreSQL they run on; a throwaway one by default (as the `postgres`
  system user when the tests run as root). Override it in your conftest.py to use another.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgaudit_py.events import Event, list_events
from pgaudit_py.output import pair, part, printable
from pgaudit_py.sealing import SealResult, seal

TEMPLATE = "pgaudit_plugin"


class AuditTrail:
    """What the log of one database holds, for assertions in tests."""

    def __init__(self, conn: psycopg.Connection, audit_schema: str = "audit"):
        self.conn = conn
        self.audit_schema = audit_schema

    def seal(self) -> SealResult:
        """Seal everything pending (what `pgaudit worker` does in production)."""
        return seal(self.conn, 1_000_000, audit_schema=self.audit_schema)

    def events(self, **filters: Any) -> list[Event]:
        """Every event matching the list_events filters, newest first (pending ones first); with
        since_seq, the sealed ones after it, oldest first, as list_events pages them. Each once: one
        sealed between two pages is listed again among the sealed ones, and kept where first read."""
        found: dict[Any, Event] = {}
        asked = dict(filters)
        while True:
            page = list_events(self.conn, page_size=500, audit_schema=self.audit_schema, **asked)
            for event in page:
                found.setdefault(event.id, event)
            if len(page) < 500:
                return list(found.values())
            last = page[-1]
            if filters.get("since_seq") is not None:  # forwards: the next page starts after this one
                asked["since_seq"] = last.seq
            elif last.pending:
                asked["before_intake_id"] = last.intake_id
            else:
                asked.pop("before_intake_id", None)
                asked["before_seq"] = last.seq

    def assert_recorded(self, kind: str | None = None, *, target: str | None = None, actor: str | None = None,
                        tenant: str | None = None, outcome: str | None = None,
                        changed: Iterable[str] | dict[str, Any] | None = None,
                        payload: dict[str, Any] | None = None) -> Event:
        """The newest event that matches everything given, or an AssertionError listing what was
        recorded instead. `target` and `actor` are "type:id" or an id alone; `changed` names columns
        a captured update changed (or maps them to their new values); `payload` is a subset of it."""
        wanted = {name: value for name, value in (("kind", kind), ("target", target), ("actor", actor),
                                                  ("tenant", tenant), ("outcome", outcome), ("changed", changed),
                                                  ("payload", payload)) if value is not None}
        # The kind narrows the reading to its own events (a prefix that is the whole kind).
        recorded = self.events(kind_prefix=kind) if kind else self.events()
        for event in recorded:
            if all(_matches(event, name, value) for name, value in wanted.items()):
                return event
        asked = ", ".join(f"{name}={value!r}" for name, value in wanted.items())
        newest = list_events(self.conn, page_size=21, audit_schema=self.audit_schema)  # of every kind
        lines = [_describe(e) for e in newest[:20]] or ["(nothing)"]
        more = "\n  ... and more" if len(newest) > 20 else ""
        raise AssertionError(f"no audit event with {asked}; recorded, newest first:\n  " + "\n  ".join(lines) + more)


def _pair(value: str, kind: str | None, ident: str | None) -> bool:
    if ":" in value:
        wanted_kind, _, wanted_id = value.partition(":")
        return (kind, ident) == (wanted_kind, wanted_id)
    return ident == value


def _matches(event: Event, name: str, value: Any) -> bool:
    if name == "kind":
        return bool(event.kind == value)
    if name == "target":
        return _pair(value, event.target_type, event.target_id)
    if name == "actor":
        return _pair(value, event.actor_type, event.actor_id)
    if name == "tenant":
        return bool(event.tenant_id == value)
    if name == "outcome":
        return bool(event.outcome == value)
    if name == "payload":
        return all(k in event.payload and _same(event.payload[k], v) for k, v in value.items())
    # changed: only a captured change has changed columns, and changed=[] asks for one
    if event.changed is None:
        return False
    if isinstance(value, dict):
        after = event.row_after or {}
        return all(k in event.changed and k in after and _same(after[k], v) for k, v in value.items())
    return set(value) <= set(event.changed)


def _same(recorded: Any, wanted: Any) -> bool:
    """JSON equality: true is not 1, nor 1.0 true (Python's == says they are); a number is its
    value however it was read, Decimal('19.99') the 19.99 a float holds (== says they differ)."""
    if isinstance(recorded, bool) or isinstance(wanted, bool):
        return type(recorded) is type(wanted) and recorded == wanted
    if isinstance(recorded, (int, float, Decimal)) and isinstance(wanted, (int, float, Decimal)):
        return _number(recorded) == _number(wanted)
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        return recorded.keys() == wanted.keys() and all(_same(recorded[k], wanted[k]) for k in wanted)
    if isinstance(recorded, list) and isinstance(wanted, list):
        return len(recorded) == len(wanted) and all(_same(r, w) for r, w in zip(recorded, wanted, strict=True))
    return bool(recorded == wanted)


def _number(value: int | float | Decimal) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)  # a float as JSON wrote it


def _describe(event: Event) -> str:
    what = event.changed if event.changed is not None else event.payload
    return printable(f"{event.kind} target={pair(event.target_type, event.target_id)}"
                     f" actor={pair(event.actor_type, event.actor_id)} tenant={part(event.tenant_id)}"
                     f" outcome={event.outcome} {what}")


@pytest.fixture(scope="session")
def pgaudit_cluster() -> Iterator[Any]:
    """The PostgreSQL server the fixtures use: a throwaway cluster unless overridden. Whatever
    replaces it must have `host`, `port` and `user` (a superuser)."""
    from pgaudit_py.tempdb import TemporaryCluster

    with TemporaryCluster.start() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pgaudit_template(pgaudit_cluster: Any) -> Iterator[str]:
    """A template database with pgaudit_py installed, once a session; its name."""
    from pytest_postgresql.janitor import DatabaseJanitor

    from pgaudit_py.installer import install

    def load(host: str, port: int, user: str, dbname: str, **_: object) -> None:
        with psycopg.connect(host=host, port=port, user=user, dbname=dbname, autocommit=True) as conn:
            install(conn)

    c = pgaudit_cluster
    with DatabaseJanitor(user=c.user, host=c.host, port=c.port, dbname=TEMPLATE, as_template=True) as janitor:
        janitor.load(load)
        # Every test's database starts from it: no role may connect and write there meanwhile (a
        # clone needs no connection; template0 is kept alike).
        with psycopg.connect(host=c.host, port=c.port, user=c.user, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(TEMPLATE)))
        yield TEMPLATE


@pytest.fixture
def pgaudit_db(pgaudit_cluster: Any, pgaudit_template: str) -> Iterator[psycopg.Connection]:
    """A fresh database with pgaudit_py installed, cloned from the template; dropped after the test."""
    from pytest_postgresql.janitor import DatabaseJanitor

    c = pgaudit_cluster
    name = f"pgaudit_{uuid.uuid4().hex[:12]}"
    with DatabaseJanitor(user=c.user, host=c.host, port=c.port, dbname=name, template_dbname=pgaudit_template), \
            psycopg.connect(host=c.host, port=c.port, user=c.user, dbname=name, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pgaudit_dsn(pgaudit_db: psycopg.Connection) -> str:
    info = pgaudit_db.info
    return make_conninfo(host=info.host, port=info.port, dbname=info.dbname, user=info.user)


@pytest.fixture
def audit_trail(pgaudit_db: psycopg.Connection) -> AuditTrail:
    return AuditTrail(pgaudit_db)
