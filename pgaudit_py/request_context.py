"""The request being served, for whatever database work it does: web framework middleware sets it
(pgaudit_py.integrations), and each transaction the request runs takes its actor, tenant,
correlation id and client address into the transaction-local pgaudit_py.* settings (a SQLAlchemy
session hook, or `transaction()` for psycopg). Being transaction-local, nothing of one request
stays on a pooled connection for the next."""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import psycopg

from pgaudit_py.context import CONTEXT_NAMES, SET_CONTEXT


@dataclass(frozen=True)
class RequestContext:
    actor_type: str | None = None
    actor_id: str | None = None
    tenant_id: str | None = None
    correlation_id: str | None = None
    client_addr: str | None = None

    def values(self) -> list[str]:
        """In CONTEXT_NAMES order; "" clears a setting (set_config takes no NULL)."""
        return [getattr(self, name) or "" for name in CONTEXT_NAMES]


@dataclass
class _Served:
    context: RequestContext
    over: bool = False  # the request has ended: a task it started and that outlives it names nobody


_current: contextvars.ContextVar[_Served | None] = contextvars.ContextVar("pgaudit_request", default=None)


def ip_address(host: str | None) -> str | None:
    """The client's address if it is one (a test client says "testclient", a Unix socket nothing;
    an IPv6 zone, fe80::1%eth0, is left out): pgaudit_py.client_addr takes an IP address or nothing,
    and would refuse the transaction's events."""
    try:
        return str(ipaddress.ip_address(host.strip().split("%")[0])) if host else None
    except ValueError:
        return None


def current() -> RequestContext | None:
    served = _current.get()
    return served.context if served and not served.over else None


@contextmanager
def serving(context: RequestContext | Mapping[str, str | None]) -> Iterator[RequestContext]:
    """The request being served, for the code that runs inside (middleware uses this)."""
    ctx = context if isinstance(context, RequestContext) else RequestContext(**context)
    ctx = RequestContext(ctx.actor_type, ctx.actor_id, ctx.tenant_id, ctx.correlation_id, ip_address(ctx.client_addr))
    served = _Served(ctx)
    token = _current.set(served)
    try:
        yield ctx
    finally:
        served.over = True  # also for the copies of the context that tasks started meanwhile hold
        _current.reset(token)


def settings_of_request() -> list[str]:
    """The values to put into a transaction: the request's, or none at all outside a request (so
    that a transaction outside any request says nobody rather than somebody else)."""
    ctx = current()
    return ctx.values() if ctx else [""] * len(CONTEXT_NAMES)


@contextmanager
def transaction(conn: psycopg.Connection) -> Iterator[psycopg.Transaction]:
    """conn.transaction(), attributed to the request being served."""
    with conn.transaction() as tx:
        conn.execute(SET_CONTEXT, settings_of_request())
        yield tx


@asynccontextmanager
async def transaction_async(conn: psycopg.AsyncConnection) -> AsyncIterator[psycopg.AsyncTransaction]:
    """conn.transaction() of an AsyncConnection, attributed to the request being served."""
    async with conn.transaction() as tx:
        await conn.execute(SET_CONTEXT, settings_of_request())
        yield tx
