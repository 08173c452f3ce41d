"""The request being served, for whatever database work it does: web framework middleware sets it
(pgaudit_py.integrations), and each transaction the request runs takes its actor, tenant,
correlation id and client address into the transaction-local pgaudit_py.* settings (a SQLAlchemy
session hook, or `transaction()` for psycopg). Being transaction-local, nothing of one request
stays on a pooled connection for the next."""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from dataclasses import dataclass, replace

import psycopg

from pgaudit_py.aio import audit_context as audit_context_async
from pgaudit_py.context import CONTEXT_NAMES, audit_context


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
    an IPv6 zone, fe80::1%eth0, is left out; an unspecified, broadcast or multicast address is none):
    pgaudit_py.client_addr takes one host's address or nothing, and would refuse the transaction's
    events."""
    if not host:
        return None
    try:
        addr = ipaddress.ip_address(host.strip().split("%")[0])
    except ValueError:
        return None
    # No client sends from these: the database refuses them too (IPv4-compatible ::a.b.c.d is deprecated).
    sender = getattr(addr, "ipv4_mapped", None) or addr
    if sender.is_unspecified or sender.is_multicast or str(sender) == "255.255.255.255" or (
            sender.version == 6 and int(sender) < 2 ** 32 and int(sender) != 1):
        return None
    return str(addr)


def current() -> RequestContext | None:
    served = _current.get()
    return served.context if served and not served.over else None


@contextmanager
def serving(context: RequestContext | Mapping[str, str | None]) -> Iterator[RequestContext]:
    """The request being served, for the code that runs inside (middleware uses this)."""
    ctx = context if isinstance(context, RequestContext) else RequestContext(**context)
    ctx = replace(ctx, client_addr=ip_address(ctx.client_addr))
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


def transaction(conn: psycopg.Connection) -> AbstractContextManager[psycopg.Transaction]:
    """conn.transaction(), attributed to the request being served (audit_context with every value
    given: inside another transaction, the values from before it are back when it ends)."""
    return audit_context(conn, **dict(zip(CONTEXT_NAMES, settings_of_request(), strict=True)))


def transaction_async(conn: psycopg.AsyncConnection) -> AbstractAsyncContextManager[psycopg.AsyncTransaction]:
    """conn.transaction() of an AsyncConnection, attributed to the request being served."""
    return audit_context_async(conn, **dict(zip(CONTEXT_NAMES, settings_of_request(), strict=True)))
