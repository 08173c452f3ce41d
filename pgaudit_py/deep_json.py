"""JSON as deep as PostgreSQL stores it. jsonb holds values nested about 10,000 levels deep, and
Python's json.loads and json.dumps stop at about 1,000 (RecursionError): one writer's deep row or
payload would fail every read of a page that holds it. The package's reads keep the connection's own
JSON function and, when it fails on a value nested DEEP levels or more, parse it again here with a
loop instead of recursion (a deep value is rare, so the fast path stays psycopg's); its writes of
JSON do the same."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from json.decoder import JSONDecodeError
from typing import Any

from psycopg import abc
from psycopg.adapt import Loader
from psycopg.types.json import _JsonLoader

Loads = Callable[[Any], Any]
scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]

_SPACE = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null")


def loads(data: str | bytes, scalar: Loads = json.loads, *, unique_keys: bool = False) -> Any:
    """The value of a JSON text, however deep; each number and literal read by `scalar` (so that a
    connection's choice, Decimal for instance, holds at every depth), objects as dicts, arrays as
    lists. Raises JSONDecodeError (a ValueError) for text that is not JSON, and with unique_keys for
    an object with a key twice (of which a dict, and jsonb, would keep the last value only)."""
    s = data if isinstance(data, str) else bytes(data).decode("utf-8")
    open_: list[dict[str, Any] | list[Any]] = []  # the containers not yet closed, outermost first
    keys: list[str] = []  # for each open object, the key its next value goes under
    i = _SPACE.match(s, 0).end()  # type: ignore[union-attr]  # matches the empty string
    while True:
        value: Any
        if s.startswith("{", i):
            i = _SPACE.match(s, i + 1).end()  # type: ignore[union-attr]
            if not s.startswith("}", i):
                key, i = _key(s, i)
                open_.append({})
                keys.append(key)
                continue
            value, i = {}, i + 1
        elif s.startswith("[", i):
            i = _SPACE.match(s, i + 1).end()  # type: ignore[union-attr]
            if not s.startswith("]", i):
                open_.append([])
                continue
            value, i = [], i + 1
        elif s.startswith('"', i):
            value, i = scanstring(s, i + 1)
        else:
            match = _SCALAR.match(s, i)
            if match is None:
                raise JSONDecodeError("Expecting value", s, i)
            value, i = scalar(match.group().encode()), match.end()
        while True:  # the value is whole: place it, and close what it completes
            i = _SPACE.match(s, i).end()  # type: ignore[union-attr]
            if not open_:
                if i != len(s):
                    raise JSONDecodeError("Extra data", s, i)
                return value
            top = open_[-1]
            if isinstance(top, list):
                top.append(value)
            else:
                if unique_keys and keys[-1] in top:
                    raise JSONDecodeError("An object has a key twice", s, i)
                top[keys[-1]] = value
            if s.startswith(",", i):
                i = _SPACE.match(s, i + 1).end()  # type: ignore[union-attr]
                if isinstance(top, dict):
                    keys[-1], i = _key(s, i)
                break
            if not s.startswith("]" if isinstance(top, list) else "}", i):
                raise JSONDecodeError("Expecting ',' delimiter", s, i)
            value, i = open_.pop(), i + 1
            if isinstance(value, dict):
                keys.pop()


def _key(s: str, i: int) -> tuple[str, int]:
    if not s.startswith('"', i):
        raise JSONDecodeError("Expecting property name enclosed in double quotes", s, i)
    key, i = scanstring(s, i + 1)
    i = _SPACE.match(s, i).end()  # type: ignore[union-attr]
    if not s.startswith(":", i):
        raise JSONDecodeError("Expecting ':' delimiter", s, i)
    return key, _SPACE.match(s, i + 1).end()  # type: ignore[union-attr]


# A value nested this deep or deeper that a loader fails on is read again by `loads`. Shallower, the
# failure is the loader's answer (a JSON function may refuse a value on purpose), and is raised.
DEEP = 32
_NESTING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def nested(data: Any, levels: int = DEEP) -> bool:
    """Whether the JSON text nests `levels` containers deep somewhere (strings skipped)."""
    depth = 0
    for match in _NESTING.finditer(bytes(data)):
        bracket = match.group()
        if bracket in (b"[", b"{"):
            depth += 1
            if depth >= levels:
                return True
        elif bracket in (b"]", b"}"):
            depth -= 1
    return False


class DeepReading(Loader):
    """The loader of json and jsonb in the package's maps. It reads through the loader class the map
    names for the type (`JSON_LOADERS`: the caller's connection's, for values returned to the
    caller) or else `own`, and where that fails on a value nested DEEP levels or more, reads the
    value again with `loads`, each number through the loader's own JSON function. One class for
    every caller's loader, looked up as each cursor reads: psycopg keeps every loader class ever
    registered, so one made for each of the caller's classes would never be freed (trial 108), and
    a class, its load() or its JSON function changed after a call holds from the next."""

    own: dict[int, type[abc.Loader]] = {}  # the package's own, by type oid: psycopg's, reading with json.loads

    def __init__(self, oid: int, context: abc.AdaptContext | None = None):
        super().__init__(oid, context)
        named = getattr(context.adapters, JSON_LOADERS, None) if context is not None else None
        loader = (named or {}).get(oid)
        if loader is None or issubclass(loader, DeepReading):  # this class again would recurse
            loader = self.own[oid]
        self.inner: Any = loader(oid, context)

    def load(self, data: Any) -> Any:
        try:
            return self.inner.load(data)
        except (RecursionError, ValueError):
            # Only a loader that reads by calling its JSON function is read again, with that function
            # for each number; one that overrides load() is used as it is.
            if getattr(type(self.inner), "load", None) is not _JsonLoader.load or not nested(data):
                raise
            return loads(data, self.inner.loads)


JSON_LOADERS = "pgaudit_py_json_loaders"  # the attribute of a map that names the loader classes to read with


def dumps(value: Any, *, convert: Callable[[Any], Any] | None = None, indent: int | None = None,
          separators: tuple[str, str] | None = None, ensure_ascii: bool = True) -> str:
    """JSON text of `value`, laid out as json.dumps lays it out, however deep; a Decimal written as
    the number it is. `convert` turns each value into one of dict, list, str, int, float, bool, None
    or Decimal first; without it, any other type is a TypeError, as in json.dumps."""
    comma, colon = separators or ((",", ": ") if indent is not None else (", ", ": "))
    out: list[str] = []
    open_: list[tuple[Iterator[Any], str, bool, int]] = []  # each container's rest, closer, is an object, id
    written: list[bool] = []  # for each open container: whether an item was written yet
    inside: set[int] = set()  # the open containers: one inside itself would be written forever

    def start(v: Any) -> None:
        if convert is not None:
            v = convert(v)
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, (dict, list)) and v:
            if id(v) in inside:
                raise ValueError("Circular reference detected")
            inside.add(id(v))
            out.append("{" if isinstance(v, dict) else "[")
            open_.append((iter(v.items() if isinstance(v, dict) else v), "}" if isinstance(v, dict) else "]",
                          isinstance(v, dict), id(v)))
            written.append(False)
        elif isinstance(v, (dict, list)):
            out.append("{}" if isinstance(v, dict) else "[]")
        elif isinstance(v, Decimal):
            out.append(decimal_text(v))
        elif v is None or isinstance(v, (str, int, float)):
            out.append(json.dumps(v, ensure_ascii=ensure_ascii))
        else:
            raise TypeError(f"Object of type {type(v).__name__} is not JSON serializable")

    def newline() -> str:
        # Indented as json.dumps indents, to INDENTED_DEPTH: deeper, each level's indentation would
        # make the text grow with the square of the depth (13 kB of a deep value printed as 32 MB).
        depth = len(open_)
        return "" if indent is None or depth > INDENTED_DEPTH else "\n" + " " * (indent * depth)

    start(value)
    while open_:
        items, closer, is_object, key = open_[-1]
        item: Any = next(items, _END)
        if item is _END:
            open_.pop()
            written.pop()
            inside.discard(key)
            out.append(newline() + closer)
            continue
        out.append((comma if written[-1] else "") + newline())
        written[-1] = True
        if is_object:
            key, item = item
            out.append(json.dumps(key_text(key), ensure_ascii=ensure_ascii) + colon)
        start(item)
    return "".join(out)


_END = object()
INDENTED_DEPTH = 64


def decimal_text(number: Decimal) -> str:
    """A Decimal as PostgreSQL prints a numeric, its digits written out (str() writes 0.0000001 as
    1E-7): what a stored number read as Decimal was, whose exponent is never above 0 (PostgreSQL
    writes no exponent). Others as str(): a caller's 1E+131071, written out, would be 131,072 digits
    sent for the database to refuse."""
    exponent = number.as_tuple().exponent
    return format(number, "f") if isinstance(exponent, int) and -16383 <= exponent <= 0 else str(number)


def key_text(key: Any) -> str:
    """An object's key as json.dumps writes it."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (int, float)):
        return json.dumps(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def tolerant_dumps(value: Any) -> str:
    """json.dumps, or where it cannot write a value (too deep, a Decimal), dumps: for values the
    package writes to PostgreSQL (a record()'s payload)."""
    try:
        return json.dumps(value)
    except (RecursionError, TypeError):
        return dumps(value)
