"""Query parameters, checked before anything reaches the database: a bad one is a 400 that says
which and why, and nothing is read or written."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from starlette.datastructures import QueryParams

from pgaudit_py.server.errors import ApiError
from pgaudit_py.tokens import holds_a_token

MAX_LIMIT = 500
KIND_PREFIX = re.compile(r"[A-Za-z0-9_./-]{1,128}")  # as the database checks it (_check_prefixes)
MAX_TEXT = 1024  # longer than any filterable column allows (target_id: 512)

# list_events' filters, in its order; every list endpoint takes them.
TEXT_FILTERS = ("tenant_id", "kind_prefix", "target_type", "target_id", "correlation_id", "outcome", "actor_type",
                "actor_id")
TIME_FILTERS = ("since", "until")
FILTERS = TEXT_FILTERS + TIME_FILTERS


def bad(message: str) -> ApiError:
    return ApiError(400, message, "invalid_parameter")


def check_names(params: QueryParams, allowed: Iterable[str]) -> None:
    """Unknown or repeated names refused. An unknown name is never said back, nor is any value: it
    is the client's text, a token pasted into the URL (in whatever case, or cut) say."""
    known = set(allowed)
    for name in params:
        if name not in known:
            hint = (" (a token goes in the Authorization header, never in a URL)"
                    if "token" in name.lower() or "pga_" in name.lower() else "")
            raise bad(f"an unknown parameter{hint}; this endpoint takes: {', '.join(sorted(known))}")
    for name in known:
        if len(params.getlist(name)) > 1 and name != "by_kind_prefix":
            raise bad(f"{name} is given more than once")


def text(params: QueryParams, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if value == "" or len(value) > MAX_TEXT or "\x00" in value:
        raise bad(f"{name} must be 1 to {MAX_TEXT} characters, without NUL")
    return value


def number(name: str, value: str, low: int, high: int) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 19 or not low <= int(value) <= high:
        raise bad(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def integer(params: QueryParams, name: str, low: int, high: int, default: int | None = None) -> int | None:
    value = params.get(name)
    return default if value is None else number(name, value, low, high)


def time(params: QueryParams, name: str) -> datetime | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad(f"{name} must be an ISO 8601 time such as 2026-12-01T10:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def filters(params: QueryParams) -> dict[str, Any]:
    found: dict[str, Any] = {name: text(params, name) for name in TEXT_FILTERS}
    found.update({name: time(params, name) for name in TIME_FILTERS})
    if found["kind_prefix"] is not None and not KIND_PREFIX.fullmatch(found["kind_prefix"]):
        raise bad("invalid kind prefix: 1 to 128 letters, digits, _ . / -")
    if found["outcome"] not in (None, "success", "failure"):
        raise bad("outcome must be success or failure")
    if found["since"] and found["until"] and found["since"] > found["until"]:
        raise bad("since is after until")
    return found


def kind_prefixes(params: QueryParams) -> list[str]:
    prefixes = params.getlist("by_kind_prefix")
    if len(prefixes) > 100:
        raise bad("at most 100 by_kind_prefix values")
    for p in prefixes:
        if not KIND_PREFIX.fullmatch(p):
            raise bad("invalid kind prefix in by_kind_prefix: 1 to 128 letters, digits, _ . / -")
        # The answer is keyed by each prefix given: one holding a token would be said back.
        if holds_a_token(p):
            raise bad("a by_kind_prefix value holds what a token holds (a token goes in the Authorization header,"
                      " never in a URL)")
    return prefixes
