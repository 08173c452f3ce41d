"""Every error the API returns: JSON {"error": {"code", "message"}} with a stable code."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pgaudit_py.output import json_bytes

# The code each status gets when nothing more specific is said.
_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 429: "too_many_failures", 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or _CODES[status]
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json_bytes({"error": {"code": code, "message": message}}, separators=(",", ":")),
                    status_code=status, headers=headers, media_type="application/json")


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own: an unknown path (404) or a method the path does not take (405, with Allow)."""
    assert isinstance(exc, HTTPException)
    # Neither the path nor the method is said back: a client's text (a token pasted into the path or
    # sent as the method, say) stays out of answers. Allow names the methods the path takes.
    message = {404: "no such path",
               405: "this method is not allowed here"}.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, _CODES.get(exc.status_code, "error"), message, exc.headers)


def internal_error_response() -> Response:
    # Nothing of the exception reaches the client: it may name a table, a role or worse.
    return error_response(500, "internal_error", "the server failed; its log says why")

