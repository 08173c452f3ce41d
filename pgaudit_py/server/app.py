"""The HTTP API of `pgaudit serve`: a Starlette application over a pool of connections.

Starlette rather than FastAPI: a dozen routes need no validation framework (pydantic), and the
OpenAPI document is written out in openapi.py, where a reviewer reads the whole contract at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pgaudit_py.archive import ArchiveBatch
from pgaudit_py.calls import MAX_SEQ
from pgaudit_py.checkpoint import Keys
from pgaudit_py.dsn import WithheldAsyncConnection
from pgaudit_py.errors import InvalidInput, PgAuditError
from pgaudit_py.events import count_events_call, monthly_event_counts_call
from pgaudit_py.output import json_bytes
from pgaudit_py.rate_limits import rate_limits_call
from pgaudit_py.sealing import seal_status_call
from pgaudit_py.server import params
from pgaudit_py.server.archive_runs import ArchiveRunner, last_checkpoint
from pgaudit_py.server.auth import FAILURES_ALLOWED, Authenticator, FailureBrake
from pgaudit_py.server.encoding import events_json, list_events_call
from pgaudit_py.server.errors import ApiError, api_error, http_error, internal_error_response
from pgaudit_py.server.middleware import AccessLog, LastResort, SecurityHeaders
from pgaudit_py.server.openapi import openapi_document
from pgaudit_py.server.page import ASSETS, page_routes
from pgaudit_py.server.stream import Notifier, high_water, sealed_events
from pgaudit_py.server.verification import ChainVerifier
from pgaudit_py.session import pin_async, tuples
from pgaudit_py.tokens import Bearer
from pgaudit_py.tracking import tracked_tables_call

log = logging.getLogger("pgaudit_py.server")

# What the API shows of a tracked table (not its attribute numbers).
TRACKED_SHOWN = ("table_name", "kind_prefix", "key_columns", "exclude_columns", "redact_columns", "tenant_column",
                 "skip_noop_updates", "enabled_at", "enabled_by", "baseline_at")


@dataclass(frozen=True)
class ServerConfig:
    dsn: str
    audit_schema: str = "audit"
    pool_size: int = 10
    heartbeat: float = 15.0  # seconds of silence before a stream sends a comment line
    poll_interval: float = 5.0  # how often a stream looks without a notification
    archive_target: str | None = None  # for POST /v1/audit/archive/run
    archive_keys: Keys | None = None  # the manifests' signing keys
    checkpoint_dir: Path | None = None  # where signed checkpoints are kept, for /v1/audit/verify
    checkpoint_keys: Keys | None = None  # to check their signatures
    failures_allowed: int = FAILURES_ALLOWED  # failed authentications per client address a minute


async def _bounded(conn: psycopg.AsyncConnection) -> None:
    # No request holds a pooled connection for long (verify has a connection of its own).
    await conn.execute("SET statement_timeout = '30s'")
    await pin_async(conn)


def _tenant(bearer: Bearer, asked: str | None) -> str | None:
    """The tenant a request may read: a tenant token's own, whatever was asked."""
    if bearer.tenant_id is None:
        return asked
    if asked is not None and asked != bearer.tenant_id:
        raise ApiError(403, "this token reads one tenant's events only", "tenant_forbidden")
    return bearer.tenant_id


def _whole_installation(bearer: Bearer) -> None:
    if bearer.tenant_id is not None:
        raise ApiError(403, "this token reads one tenant's events; this endpoint covers every tenant",
                       "tenant_forbidden")


def _json(value: Any, status: int = 200) -> Response:
    return Response(json_bytes(value, separators=(",", ":")), status_code=status,
                    media_type="application/json")


class Api:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.schema = config.audit_schema
        self.pool = AsyncConnectionPool(config.dsn, connection_class=WithheldAsyncConnection, min_size=1,
                                        max_size=config.pool_size, open=False,
                                        kwargs={"autocommit": True, "application_name": "pgaudit serve"},
                                        configure=_bounded)
        self.auth = Authenticator(self.pool, self.schema, FailureBrake(allowed=config.failures_allowed))
        self.notifier = Notifier(config.dsn, self.schema, self.pool)
        self.archiver = ArchiveRunner(config.dsn, self.schema, config.archive_target, config.archive_keys)
        self.verifier = ChainVerifier(config.dsn, self.schema)

    async def _one(self, call: Any) -> Any:
        async with self.pool.connection() as conn:
            return await call.one_async(conn)

    async def _all(self, call: Any) -> Any:
        async with self.pool.connection() as conn:
            return await call.all_async(conn)

    async def list_events(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        q = request.query_params
        params.check_names(q, params.FILTERS + ("limit", "before_seq", "before_intake_id"))
        limit = params.integer(q, "limit", 1, params.MAX_LIMIT, 50)
        before_seq = params.integer(q, "before_seq", 1, MAX_SEQ)
        before_intake_id = params.integer(q, "before_intake_id", 1, MAX_SEQ)
        if before_seq is not None and before_intake_id is not None:
            raise params.bad("give before_seq or before_intake_id, not both")
        filters = params.filters(q)
        filters["tenant_id"] = _tenant(bearer, filters["tenant_id"])
        events = await self._all(list_events_call(self.schema, page_size=limit, before_seq=before_seq,
                                                  before_intake_id=before_intake_id, **filters))
        next_link = None
        if len(events) == limit:
            last = events[-1]
            cursor = {"before_intake_id": last.intake_id} if last.pending else {"before_seq": last.seq}
            kept = [(k, v) for k, v in q.multi_items() if k not in ("before_seq", "before_intake_id")]
            # Relative: behind a proxy, the client's host and scheme stay its own.
            next_link = f"{request.url.path}?{urlencode([*kept, *cursor.items()])}"
        return Response(f'{{"events":{events_json(events)},"next":{json.dumps(next_link)}}}',
                        media_type="application/json")

    async def count(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        q = request.query_params
        params.check_names(q, ("tenant_id", "since", "until", "by_kind_prefix"))
        tenant = _tenant(bearer, params.text(q, "tenant_id"))
        since, until = params.time(q, "since"), params.time(q, "until")
        if since and until and since > until:
            raise params.bad("since is after until")
        result = await self._one(count_events_call(tenant_id=tenant, since=since, until=until,
                                                   by_kind_prefix=params.kind_prefixes(q), audit_schema=self.schema))
        return _json(result)

    async def monthly(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        q = request.query_params
        params.check_names(q, ("tenant_id", "months", "by_kind_prefix"))
        tenant = _tenant(bearer, params.text(q, "tenant_id"))
        months = params.integer(q, "months", 1, 120, 12)
        rows = await self._all(monthly_event_counts_call(tenant_id=tenant, month_count=months or 12,
                                                         by_kind_prefix=params.kind_prefixes(q),
                                                         audit_schema=self.schema))
        return _json({"months": rows})

    async def stream(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        q = request.query_params
        params.check_names(q, params.FILTERS + ("since_seq",))
        after = params.integer(q, "since_seq", 0, MAX_SEQ)
        last_id = request.headers.get("last-event-id")
        if last_id is not None:  # a reconnecting EventSource: resume after what it saw
            after = params.number("Last-Event-ID", last_id, 0, MAX_SEQ)
        filters = params.filters(q)
        filters["tenant_id"] = _tenant(bearer, filters["tenant_id"])
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":
            return Response(media_type="text/event-stream", headers=headers)
        high = await high_water(self.pool, self.schema)  # before the 200: a failure here is still a 503
        digest = request.state.token_sha256

        async def still_valid() -> bool:
            return await self.auth.lookup(digest) is not None

        body = sealed_events(self.pool, self.notifier, self.schema, high if after is None else after, high, filters,
                             still_valid, heartbeat=self.config.heartbeat, poll_interval=self.config.poll_interval)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    async def verify(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        params.check_names(request.query_params, ())
        _whole_installation(bearer)
        verdict = await self.verifier.verdict()
        checkpoint = await last_checkpoint(self.pool, self.schema, self.config.checkpoint_dir,
                                           self.config.checkpoint_keys)
        return _json({**verdict, "last_checkpoint": checkpoint})

    async def status(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        params.check_names(request.query_params, ())
        _whole_installation(bearer)
        s = await self._one(seal_status_call(audit_schema=self.schema))
        return _json({"pending": s.pending, "oldest_pending_at": s.oldest_pending_at, "last_seq": s.last_seq,
                      "last_sealed_at": s.last_sealed_at, "quarantined": s.quarantined,
                      "lag_seconds": s.lag.total_seconds(), "now": s.now})

    async def archives(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        params.check_names(request.query_params, ())
        _whole_installation(bearer)
        async with self.pool.connection() as conn:
            cur = await tuples(conn).execute(sql.SQL(
                "SELECT batch_id, state, first_block, last_block, first_seq, last_seq, event_count, target,"
                " data_bytes, gz_bytes, pg_catalog.encode(manifest_sha256, 'hex'), planned_at, archived_at,"
                " archived_by, deleted_at FROM {}.archive_batches ORDER BY first_block"
            ).format(sql.Identifier(self.schema)))
            rows = await cur.fetchall()
        names = ("batch_id", "state", "first_block", "last_block", "first_seq", "last_seq", "event_count", "target",
                 "data_bytes", "gz_bytes", "manifest_sha256", "planned_at", "archived_at", "archived_by",
                 "deleted_at")
        return _json({"batches": [dict(zip(names, r, strict=True)) for r in rows]})

    async def run_archive(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request, role="maintainer")
        params.check_names(request.query_params, ())
        run = await self.archiver.run(bearer)
        return _json({"skipped": run.skipped, "events": run.events,
                      "batches": [_batch_summary(b) for b in run.batches]})

    async def whoami(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        params.check_names(request.query_params, ())
        return _json(bearer)

    async def tracked(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        params.check_names(request.query_params, ())
        _whole_installation(bearer)
        tables = await self._all(tracked_tables_call(audit_schema=self.schema))
        return _json({"tables": [{name: getattr(t, name) for name in TRACKED_SHOWN} for t in tables]})

    async def limits(self, request: Request) -> Response:
        bearer = await self.auth.bearer(request)
        params.check_names(request.query_params, ())
        _whole_installation(bearer)
        return _json({"limits": await self._all(rate_limits_call(audit_schema=self.schema))})

    async def healthz(self, request: Request) -> Response:
        try:
            async with self.pool.connection(timeout=5) as conn:
                await conn.execute("SELECT 1")
        except Exception:
            return _json({"status": "unavailable", "database": False}, 503)
        return _json({"status": "ok", "database": True})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())



def _batch_summary(b: ArchiveBatch) -> dict[str, Any]:
    return {"batch_id": b.batch_id, "first_seq": b.first_seq, "last_seq": b.last_seq, "event_count": b.event_count,
            "gz_bytes": b.gz_bytes, "manifest_sha256": b.manifest_sha256.hex() if b.manifest_sha256 else None}


async def _database_errors(request: Request, exc: Exception) -> Response:
    if isinstance(exc, InvalidInput):  # the database's own check of a value (a kind prefix, ...)
        return await api_error(request, ApiError(400, exc.message, "invalid_parameter"))
    if isinstance(exc, (psycopg.OperationalError, TimeoutError)) or type(exc).__name__ == "PoolTimeout":
        log.warning("database unavailable: %s", type(exc).__name__)
        return await api_error(request, ApiError(503, "the database is unavailable", "database_unavailable"))
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):  # a right of the server's role taken back meanwhile
        log.warning("the server's database role may not do what a request needs (docs/cli.md names its least role)")
        return await api_error(request, ApiError(503, "the server's database role lacks a right this request needs",
                                                 "database_role_not_permitted"))
    log.exception("request failed")
    return internal_error_response()


def create_app(dsn: str | None = None, *, config: ServerConfig | None = None, **settings: Any) -> Starlette:
    """The API as an ASGI application, to run with uvicorn or mount in another ASGI app (it opens
    its pool and listener at startup: mount it where lifespan events reach it, or use
    `app.router.lifespan_context`)."""
    if config is None:
        if dsn is None:
            raise TypeError("create_app needs a dsn or a config")
        config = ServerConfig(dsn=dsn, **settings)
    api = Api(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await api.pool.open(wait=False)
        listener = asyncio.create_task(api.notifier.run())
        try:
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await api.pool.close()

    get = ["GET"]
    routes = [
        Route("/healthz", api.healthz, methods=get),
        Route("/openapi.json", api.openapi, methods=get),
        Route("/v1/audit", api.list_events, methods=get),
        Route("/v1/audit/count", api.count, methods=get),
        Route("/v1/audit/monthly", api.monthly, methods=get),
        Route("/v1/audit/stream", api.stream, methods=get),
        Route("/v1/audit/verify", api.verify, methods=get),
        Route("/v1/audit/status", api.status, methods=get),
        Route("/v1/audit/archives", api.archives, methods=get),
        Route("/v1/audit/archive/run", api.run_archive, methods=["POST"]),
        Route("/v1/whoami", api.whoami, methods=get),
        Route("/v1/audit/tracked", api.tracked, methods=get),
        Route("/v1/audit/limits", api.limits, methods=get),
        *page_routes(),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: api_error, HTTPException: http_error, PgAuditError: _database_errors,
        psycopg.Error: _database_errors, TimeoutError: _database_errors}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.router.redirect_slashes = False  # /v1/audit/ is a 404, never a redirect to the Host header
    app.add_middleware(LastResort)  # the last added is the outermost
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog, paths=frozenset(
        {r.path for r in routes if "{" not in r.path} | {f"/page/{name}" for name in ASSETS}))
    app.state.api = api
    return app
