"""Who is asking: the bearer token of each request, checked against the database on every request
(a revocation holds from the next request), and a brake on clients that keep failing."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from pgaudit_py.server.errors import ApiError
from pgaudit_py.tokens import Bearer, token_sha256

FAILURES_ALLOWED = 10  # per client address and window
FAILURE_WINDOW = 60.0  # seconds


@dataclass
class FailureBrake:
    """Refuses a client address for the rest of the window once it has failed authentication
    FAILURES_ALLOWED times in it: guessing tokens is hopeless anyway (256 bits), this keeps a
    guesser from costing the database a query a request."""
    allowed: int = FAILURES_ALLOWED
    window: float = FAILURE_WINDOW
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._failures.get(client)
        if seen is None:
            return deque()
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if not seen:
            del self._failures[client]
        return seen

    def check(self, client: str) -> None:
        now = time.monotonic()
        seen = self._recent(client, now)
        if len(seen) >= self.allowed:
            retry = max(1, int(seen[0] + self.window - now) + 1)
            raise ApiError(429, f"too many failed authentications from this address; retry in {retry} s",
                           headers={"Retry-After": str(retry)})

    def failed(self, client: str) -> None:
        if len(self._failures) > 100_000:  # a flood of addresses: forget the oldest half
            for key in list(self._failures)[:50_000]:
                del self._failures[key]
        self._failures.setdefault(client, deque()).append(time.monotonic())


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


class Authenticator:
    def __init__(self, pool: AsyncConnectionPool, audit_schema: str, brake: FailureBrake | None = None):
        self.pool = pool
        self.brake = brake or FailureBrake()
        self.query = sql.SQL("SELECT token_id, name, role, tenant_id FROM {}.authenticate_api_token(%s)").format(
            sql.Identifier(audit_schema))

    async def bearer(self, request: Request, role: str = "reader") -> Bearer:
        """The request's token, or ApiError 401 (none, unknown, expired, revoked: alike), 403 (a
        reader's token where a maintainer's is needed) or 429 (this address failed too often)."""
        client = request.client.host if request.client else "unknown"
        self.brake.check(client)
        token = _bearer_token(request)
        if not token:
            if token is not None:
                self.brake.failed(client)
            raise ApiError(401, "send a token: Authorization: Bearer <token>",
                           headers={"WWW-Authenticate": 'Bearer realm="pgaudit"'})
        async with self.pool.connection() as conn:
            row = await (await conn.execute(self.query, (token_sha256(token),))).fetchone()
        if row is None:
            self.brake.failed(client)
            raise ApiError(401, "the token is unknown, expired or revoked",
                           headers={"WWW-Authenticate": 'Bearer realm="pgaudit", error="invalid_token"'})
        bearer = Bearer(*row)
        request.state.token_id = bearer.token_id  # for the access log: the id, never the token
        if role == "maintainer" and bearer.role != "maintainer":
            raise ApiError(403, "this needs a maintainer token", "maintainer_only")
        return bearer
