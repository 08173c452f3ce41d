"""Canonical form, reproduced outside PostgreSQL (docs/canonical-form.md).

A sealed event's canonical line is PostgreSQL's jsonb text of a fixed set of fields (version 2
adds "origin" to version 1); a block's hash covers a canonical header. The event's JSON values
(payload, row images, changed) go into the line as the jsonb text they are stored as, never parsed
and printed again: a value nested thousands deep or a number of thousands of digits is as valid
there as anywhere in PostgreSQL. `dumps` writes JSON exactly as jsonb prints it, for the headers,
manifests and checkpoints made here.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

VERSION = 2  # of the event line the sealer writes now; blocks sealed before 0.2 are version 1
HEADER_VERSION = 1  # of the block header, unchanged
GENESIS = bytes(32)
# Fields of the event line; those holding JSON values arrive as jsonb text and are spliced in as is.
JSON_FIELDS = ("payload", "row_before", "row_after", "changed")
EVENT_FIELDS = ("seq", "id", "tenant_id", "actor_type", "actor_id", "db_role", "client_addr", "application_name",
                "kind", "target_type", "target_id", "outcome", "correlation_id", "idempotency_key", "txid",
                "occurred_at", "payload", "schema_valid", "row_before", "row_after", "changed", "origin")
FIELDS_BY_VERSION = {1: EVENT_FIELDS[:-1], 2: EVENT_FIELDS}
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dumps(value: Any) -> str:
    """JSON text exactly as PostgreSQL prints a jsonb value (keys ordered by length, then bytes)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):  # no negative zero: PostgreSQL prints -0.0 as 0.0
        return format(value.copy_abs() if value.is_zero() else value, "f")
    if isinstance(value, float):
        raise TypeError("parse JSON with parse_float=Decimal: a float cannot keep numeric's digits")
    if isinstance(value, _JsonText):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{_string(k)}: {dumps(value[k])}" for k in keys) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


# How deep a manifest or checkpoint may nest: they nest four levels. A deeper one is no document of
# ours, and dumps (recursive, as the signatures' form is) must never be handed one past Python's
# recursion limit.
MAX_DOCUMENT_DEPTH = 32


def too_deep(value: Any, limit: int = MAX_DOCUMENT_DEPTH) -> bool:
    """Whether a parsed JSON document nests deeper than limit (walked without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            pending.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def timestamp(value: datetime) -> str:
    """As the sealer writes occurred_at: to_char(... AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    whose year has at least four digits (strftime's %Y writes the year 44 as "44")."""
    v = value.astimezone(timezone.utc)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}Z"


# PostgreSQL's text of a timestamptz in UTC and ISO style, for the times datetime cannot hold.
_PG_TIME = re.compile(r"([0-9]{4,}-[0-9]{2}-[0-9]{2}) ([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,6}))?\+00( BC)?")


def timestamp_text(text: str) -> str:
    """A time datetime cannot hold (a year past 9999 or before 1, infinity), given as PostgreSQL's
    text in UTC, written as the sealer writes it: to_char's text and " BC" for a year before 1,
    "infinity" and "-infinity" as they are. Only a change made by hand holds one, but its line is
    still built and compared, never a crash."""
    if text in ("infinity", "-infinity"):
        return text
    match = _PG_TIME.fullmatch(text)
    if match is None:
        return text  # no line the sealer writes: the event reads as changed
    day, time, fraction, era = match.groups()
    return f"{day}T{time}.{(fraction or '').ljust(6, '0')}Z{era or ''}"


class _JsonText(str):
    """JSON text that goes into a line as it is (a stored jsonb value's text)."""


def event_line(row: dict[str, Any], version: int = VERSION) -> str:
    """The canonical line of one sealed event in a canonical form version, from its column values:
    JSON columns as jsonb text, client_addr and txid as PostgreSQL's text, occurred_at as a datetime
    (or, where datetime cannot hold it, as PostgreSQL's text in UTC)."""
    if version not in FIELDS_BY_VERSION:
        raise ValueError(f"unknown canonical form version {version}")
    fields: dict[str, Any] = {"v": version}
    for name in FIELDS_BY_VERSION[version]:
        value = row[name]
        if name in JSON_FIELDS and value is not None:
            value = _JsonText(value)
        elif name == "occurred_at" and value is not None:
            value = timestamp(value) if isinstance(value, datetime) else timestamp_text(value)
        elif name == "id" and value is not None:
            value = str(value)
        fields[name] = value
    return dumps(fields)


def events_hash(lines: list[str]) -> bytes:
    return hashlib.sha256(b"".join(hashlib.sha256(line.encode()).digest() for line in lines)).digest()


def block_hash(block_no: int, first_seq: int, last_seq: int, event_count: int, events: bytes, prev: bytes) -> bytes:
    header = dumps({"v": HEADER_VERSION, "block_no": block_no, "first_seq": first_seq, "last_seq": last_seq,
                    "event_count": event_count, "events_hash": events.hex(), "prev_hash": prev.hex()})
    return hashlib.sha256(header.encode()).digest()
