"""What wraps every request: security headers, and one access-log line without secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgaudit_py.server.errors import error_response, internal_error_response

access_log = logging.getLogger("pgaudit_py.server.access")
# The methods the log writes by name (RFC 9110's, and PATCH); any other is the client's text.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
log = logging.getLogger("pgaudit_py.server")

# The operator page runs only its own script and style, from this server, in no frame.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
                                 b" connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """The headers above on every answer, and `Cache-Control: no-store` on those that say nothing
    of caching (the log's answers: nothing of it stays in a browser's cache after sign-out)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *SECURITY_HEADERS]
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


class LastResort:
    """An exception nothing else handled: logged here, answered with a JSON 500 that says nothing
    of it. (Starlette's own handler for it runs outside every middleware, so its answer would lack
    the headers above and the access log's status.)"""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            # The server stopping cut it short (uvicorn cancels what is left when its graceful
            # shutdown times out): no application's failure, no traceback; answered 503 if it can be.
            if scope["type"] != "http":
                raise
            if not started:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await error_response(503, "server_stopping", "the server is stopping")(scope, receive, send)
        except Exception:
            if scope["type"] != "http" or started:
                raise
            log.exception("request failed")
            await internal_error_response()(scope, receive, send)


class AccessLog:
    """One line a request: method, path (no query string: it may hold ids someone considers
    private), status, the token's public id, milliseconds. Never a header, so never a token; a
    method only when it is a standard one (`METHODS`) and a path only when it is one of the
    server's own (`paths`), else `-`: any other is the client's text, a token sent as the method
    or pasted into the URL say."""

    def __init__(self, app: ASGIApp, paths: frozenset[str]):
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 0

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            token = scope.get("state", {}).get("token_id", "-")
            method = scope["method"] if scope["method"] in METHODS else "-"
            path = scope["path"] if scope["path"] in self.paths else "-"
            access_log.info("%s %s %s token=%s %.1fms", method, path,
                            status, token, (time.perf_counter() - started) * 1000)


