"""Who is asking: the bearer token of each request, checked against the database on every request
(a revocation holds from the next request), and a brake on addresses that keep presenting
unknown tokens."""

from __future__ import annotations

import ipaddress
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from pgaudit_py.server.errors import ApiError
from pgaudit_py.session import tuples
from pgaudit_py.tokens import Bearer, token_sha256

FAILURES_ALLOWED = 10  # unknown tokens per client address and window
FAILURE_WINDOW = 60.0  # seconds
ADDRESSES_KEPT = 10_000  # the brake forgets the least recently failing address beyond this
TOKENS_KEPT = 10_000
TOKEN_SHAPE = re.compile(r"pga_[0-9a-f]{12}_[0-9a-f]{64}")
WWW_AUTHENTICATE = 'Bearer realm="pgaudit"'


def client_key(request: Request) -> str:
    """The brake's key: the client's address, an IPv6 one by its /64 (what one host can hold)."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "unknown"
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # ::ffff:a.b.c.d is an IPv4 client
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class FailureBrake:
    """Refuses, for the rest of the window, tokens from an address that presented FAILURES_ALLOWED
    unknown ones within it, before the database is asked: guessing a 256-bit token is hopeless
    anyway; this keeps a guesser from costing a query a request. A lookup counts from when it
    starts (`check`) until it ends (`done`), so that a parallel burst gets no more lookups than a
    sequence: at most `allowed` of an address's lookups are in flight or failed within the window.
    A token whose last lookup (in this process) succeeded is still looked up, and not counted, so
    that a guesser sharing an address with a dashboard (a NAT, a proxy) does not lock the dashboard
    out."""
    allowed: int = FAILURES_ALLOWED
    window: float = FAILURE_WINDOW
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _in_flight: dict[str, int] = field(default_factory=dict)
    _known_good: OrderedDict[bytes, None] = field(default_factory=OrderedDict)

    def check(self, client: str, digest: bytes) -> bool:
        """Before a lookup: ApiError 429 when the address's failed and unfinished lookups reach
        `allowed`; else whether this lookup is counted as in flight, which `done` is told."""
        if digest in self._known_good:
            return False
        seen = self._failures.get(client, deque())
        now = time.monotonic()
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        in_flight = self._in_flight.get(client, 0)
        if len(seen) + in_flight >= self.allowed:
            # Lookups in flight end within seconds; failures when the window passes them.
            retry = max(1, int(seen[0] + self.window - now) + 1) if len(seen) >= self.allowed else 1
            raise ApiError(429, f"too many unknown tokens from this address; retry in {retry} s",
                           headers={"Retry-After": str(retry)})
        self._in_flight[client] = in_flight + 1
        return True

    def done(self, client: str, digest: bytes, counted: bool, found: bool | None) -> None:
        """After a lookup that `check` let through: found, unknown (False), or None when the
        database could not say (nothing learnt: the lookup counts no more)."""
        if counted:
            self._in_flight[client] -= 1
            if not self._in_flight[client]:
                del self._in_flight[client]
        if found:
            self.succeeded(digest)
        elif found is False:
            self.failed(client, digest)

    def failed(self, client: str, digest: bytes) -> None:
        # A token that authenticated before and no longer does (revoked, expired) is exempt no more.
        self._known_good.pop(digest, None)
        seen = self._failures.pop(client, None) or deque(maxlen=self.allowed)
        seen.append(time.monotonic())
        self._failures[client] = seen  # the most recent last
        while len(self._failures) > ADDRESSES_KEPT:
            self._failures.popitem(last=False)

    def succeeded(self, digest: bytes) -> None:
        self._known_good[digest] = None
        self._known_good.move_to_end(digest)
        while len(self._known_good) > TOKENS_KEPT:
            self._known_good.popitem(last=False)


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class Authenticator:
    def __init__(self, pool: AsyncConnectionPool[Any], audit_schema: str, brake: FailureBrake | None = None):
        self.pool = pool
        self.brake = brake or FailureBrake()
        self.query = sql.SQL("SELECT token_id, name, role, tenant_id FROM {}.authenticate_api_token(%s)").format(
            sql.Identifier(audit_schema))

    async def lookup(self, digest: bytes) -> Bearer | None:
        """The live token with this SHA-256, or None."""
        async with self.pool.connection() as conn:
            row = await (await tuples(conn).execute(self.query, (digest,))).fetchone()
        return Bearer(*row) if row else None

    async def bearer(self, request: Request, role: str = "reader") -> Bearer:
        """The request's token, or ApiError 401 (none, malformed, unknown, expired, revoked: alike),
        403 (a reader's token where a maintainer's is needed) or 429 (this address presented too
        many unknown tokens)."""
        token = _bearer_token(request)
        if token is None:
            raise ApiError(401, "send a token: Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": WWW_AUTHENTICATE})
        unknown = ApiError(401, "the token is unknown, expired or revoked",
                           headers={"WWW-Authenticate": WWW_AUTHENTICATE + ', error="invalid_token"'})
        if not TOKEN_SHAPE.fullmatch(token):
            raise unknown  # no token of ours looks like that: nothing to ask the database
        digest = token_sha256(token)
        client = client_key(request)
        counted = self.brake.check(client, digest)
        found: bool | None = None
        try:
            bearer = await self.lookup(digest)
            found = bearer is not None
        finally:  # a cancelled or failed lookup ends too, learning nothing
            self.brake.done(client, digest, counted, found)
        if bearer is None:
            raise unknown
        request.state.token_id = bearer.token_id  # for the access log: the id, never the token
        request.state.token_sha256 = digest  # for a stream, which checks again as it goes
        if role == "maintainer" and bearer.role != "maintainer":
            raise ApiError(403, "this needs a maintainer token", "maintainer_only")
        return bearer
