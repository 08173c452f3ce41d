"""Events as the API writes them: the JSON of payloads and row images exactly as PostgreSQL holds
it (read as text and spliced in), never parsed and printed again. A number such as 1e350, which
jsonb keeps and Python would turn into an infinity that JSON cannot carry, comes out as stored;
and 50 events cost a fraction of a millisecond."""

from __future__ import annotations

import json
from dataclasses import fields, make_dataclass
from datetime import datetime
from typing import Any

from pgaudit_py.calls import Call, function_call
from pgaudit_py.events import EVENT_CASTS, LIST_EVENTS_ARGUMENTS, Event

JSON_FIELDS = ("payload", "row_before", "row_after", "changed")
SCALAR_FIELDS = tuple(f.name for f in fields(Event) if f.name not in JSON_FIELDS)

# An Event whose JSON fields hold PostgreSQL's text of them.
RawEvent: Any = make_dataclass("RawEvent", [(f.name, str | None if f.name in JSON_FIELDS else f.type)
                                            for f in fields(Event)], frozen=True)


def list_events_call(audit_schema: str, **arguments: Any) -> Call[Any]:
    """list_events(...) with the JSON fields as text; `arguments` as list_events takes them."""
    return function_call(audit_schema, "list_events", RawEvent, LIST_EVENTS_ARGUMENTS,
                         [arguments.get(name) for name in LIST_EVENTS_ARGUMENTS],
                         {**EVENT_CASTS, **{name: "text" for name in JSON_FIELDS}})


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # UUID, IP address


def event_json(event: Any) -> str:
    head = json.dumps({name: _scalar(getattr(event, name)) for name in SCALAR_FIELDS}, ensure_ascii=False,
                      separators=(",", ":"))
    return head[:-1] + "".join(f',"{name}":{getattr(event, name) or "null"}' for name in JSON_FIELDS) + "}"


def events_json(events: list[Any]) -> str:
    return "[" + ",".join(event_json(e) for e in events) + "]"


# Line breaks to str.splitlines() and to many SSE clients, though not to the SSE standard (CR and LF
# only, which JSON text never holds raw): inside a JSON string their escapes mean the same.
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    return text.translate(_LINE_BREAKS)
