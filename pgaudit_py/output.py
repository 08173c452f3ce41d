"""Output for people (aligned tables) and for scripts (JSON)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import click

from pgaudit_py import deep_json


def dumps(value: Any, **layout: Any) -> str:
    """JSON text of `value` at any depth (deep_json.dumps, laid out as json.dumps lays it out):
    dataclasses written as objects, dates in ISO form, durations in seconds, a Decimal (the CLI
    reads JSON numbers exactly) as the number it is, anything else as its str()."""
    return deep_json.dumps(value, convert=_shallow, **layout)


def _shallow(value: Any) -> Any:
    """One level of `value` as JSON sees it (what is inside is converted when written)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, (str, int, float, bool, Decimal, dict, list, tuple)):
        return value
    return str(value)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """"1 event", "2 events": a count people read."""
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def json_bytes(value: Any, **layout: Any) -> bytes:
    """UTF-8 of dumps(value), a lone surrogate written as JSON's \\udcXX escape. Python reads a file
    name or an argument that is not UTF-8 with one, which UTF-8 cannot encode; escaped, it reads back
    as the same name. A JSON document's structure is ASCII, so one is only ever inside a string."""
    return dumps(value, ensure_ascii=False, **layout).encode("utf-8", "backslashreplace")


def emit_json(value: Any) -> None:
    click.echo(json_bytes(value, indent=2))


def printable(text: str) -> str:
    """Text a terminal shows as it is: control characters (a newline in an actor id, an escape
    sequence), line or paragraph separators and lone surrogates (a byte of a file name that is not
    UTF-8) written as escapes, so no value can fake a row; and a backslash as two, so no value can
    spell another's escape (a name holding the characters \\udcff, one holding the byte 0xff)."""
    return _escaped(text.replace("\\", "\\\\"))


def _escaped(text: str) -> str:
    """printable() for JSON text, whose backslashes are JSON's escapes already."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in text)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, datetime):
            return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(v, (dict, list, Decimal)):
            return _escaped(dumps(v, ensure_ascii=False, separators=(",", ":")))
        return printable(str(v))

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for r in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
