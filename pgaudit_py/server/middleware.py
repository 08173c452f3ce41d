"""What wraps every request: security headers, and one access-log line without secrets."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("pgaudit_py.server.access")

# The operator page runs only its own script and style, from this server, in no frame.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
                                 b" connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, sending)


class AccessLog:
    """One line a request: method, path (no query string: it may hold ids someone considers
    private), status, the token's public id, milliseconds. Never a header, so never a token."""

    def __init__(self, app: ASGIApp):
        self.app = app

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
            # The path percent-encoded again: it is the client's text, and a newline or a space in it
            # would forge a line or a field.
            access_log.info("%s %s %s token=%s %.1fms", quote(scope["method"], safe=""), quote(scope["path"]),
                            status, token, (time.perf_counter() - started) * 1000)


