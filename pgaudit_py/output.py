"""Output for people (aligned tables) and for scripts (JSON)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import click

# A number the CLI read exactly (its connections parse JSON numbers with decimals as Decimal) goes
# out as written: json cannot print a Decimal, so it passes through as a string between two NULs,
# which no value read from PostgreSQL holds, and the quotes and NULs are then taken off.
_NUMBER = re.compile(r'"\\u0000([-+.0-9Ee]+)\\u0000"')


def dumps(value: Any, **options: Any) -> str:
    """JSON text of `value` (after to_jsonable), its Decimals printed as the numbers they are."""
    return _NUMBER.sub(r"\1", json.dumps(to_jsonable(value), **options))


def to_jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"\0{value}\0"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def emit_json(value: Any) -> None:
    click.echo(dumps(value, indent=2, ensure_ascii=False))


def printable(text: str) -> str:
    """Text a terminal shows as it is: control characters (a newline in an actor id, an escape
    sequence) and line or paragraph separators written as escapes, so no value can fake a row."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in text)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, datetime):
            return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(v, (dict, list, Decimal)):
            return printable(dumps(v, ensure_ascii=False, separators=(",", ":")))
        return printable(str(v))

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for r in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
