"""Output for people (aligned tables) and for scripts (JSON)."""

from __future__ import annotations

import dataclasses
import unicodedata
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


# Characters a terminal draws as nothing or as blank space, though Python counts them printable:
# Unicode's Default_Ignorable_Code_Point (variation selectors, the combining grapheme joiner, tag
# characters, the Hangul fillers; the others of it Python escapes anyway) and the braille blank.
# Escaped, so that "x" and "x" + one of them never look alike; the operator page escapes the same
# (server/static/app.js, HIDDEN).
_DEFAULT_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
                      (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
                      (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
                      (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))
BLANK_LOOKING = frozenset(chr(c) for low, high in _DEFAULT_IGNORABLE for c in range(low, high + 1)) | {"\u2800"}


class Rendered(str):
    """Text already written so that no other value reads the same (part(), pair(), a label of
    pgaudit_py's own): print_table escapes it and quotes nothing."""


@dataclasses.dataclass(frozen=True)
class AsJson:
    """A value print_table writes as JSON whatever its type: a row image's, where the text "1" and
    the number 1, or the text '{"a":1}' and the object, must not read alike."""

    value: Any


def part(value: str | None) -> Rendered:
    """A value in a cell or line shared with others: "-" for none, and in double quotes (a quote in
    it doubled) wherever it could read as something else (empty, "-", a quote first, a ':' that
    joins a type to its id, a ',' that joins a list, a space between fields), so that no two values
    print alike. printable() then escapes what a terminal would not show as it is."""
    if value is None:
        return Rendered("-")
    if value in ("", "-") or value.startswith('"') or any(c in ":," or c.isspace() for c in value):
        return Rendered('"' + value.replace('"', '""') + '"')
    return Rendered(value)


def pair(kind: str | None, ident: str | None) -> Rendered:
    """An actor's or a target's type and id, joined by ':'; a target without a type, its id alone."""
    return Rendered(f"{part(kind)}:{part(ident)}" if kind is not None else part(ident))


def listed(values: Sequence[str] | None) -> Rendered | None:
    """Names joined by ',' (each through part()); None for no list at all."""
    return None if values is None else Rendered(",".join(part(v) for v in values))


def printable(text: str) -> str:
    """Text a terminal shows as it is: control characters (a newline in an actor id, an escape
    sequence), line or paragraph separators, lone surrogates (a byte of a file name that is not
    UTF-8) and characters drawn as nothing or as blank written as escapes, so no value can fake a row or pass for
    another; and a backslash as two, so no value can
    spell another's escape (a name holding the characters \\udcff, one holding the byte 0xff)."""
    return _escaped(text.replace("\\", "\\\\"))


def _escaped(text: str) -> str:
    """printable() for JSON text, whose backslashes are JSON's escapes already. In a text that is not
    in NFC, the marks and Hangul jamo that NFC would compose are escaped too: "jose" + U+0301 does not
    read as "josé" (trial 86, s1; the operator page does the same)."""
    composed = unicodedata.normalize("NFC", text) == text
    return "".join(
        ch if (ch.isprintable() or ch == " ") and ch not in BLANK_LOOKING and (composed or not _composable(ch))
        else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _composable(ch: str) -> bool:
    """A mark, or a Hangul jamo: what NFC composes with what comes before it."""
    return unicodedata.category(ch).startswith("M") or any(
        low <= ord(ch) <= high for low, high in ((0x1100, 0x11FF), (0xA960, 0xA97F), (0xD7B0, 0xD7FF)))


def _columns(text: str) -> int:
    """How many terminal columns text takes: two for a wide character, none for a combining mark
    (nonspacing or enclosing, as wcwidth reads them: Thai's vowel marks are of combining class 0)."""
    return sum(0 if unicodedata.category(c) in ("Mn", "Me") else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Cells: None as "-", text through part() unless Rendered, JSON values (and AsJson) as JSON, each
    padded to the terminal columns it takes."""
    def cell(v: Any) -> str:
        if isinstance(v, (AsJson, dict, list, Decimal)):
            return _escaped(dumps(v.value if isinstance(v, AsJson) else v, ensure_ascii=False, separators=(",", ":")))
        if v is None:
            return "-"
        if isinstance(v, datetime):
            return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(v, str):
            return printable(v if isinstance(v, Rendered) else part(v))
        return printable(str(v))

    def padded(text: str, width: int) -> str:
        return text + " " * (width - _columns(text))

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([_columns(h), *(_columns(r[i]) for r in text)]) for i, h in enumerate(headers)]
    click.echo("  ".join(padded(h, w) for h, w in zip(headers, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for r in text:
        click.echo("  ".join(padded(v, w) for v, w in zip(r, widths, strict=True)).rstrip())
