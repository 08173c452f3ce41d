"""What record() takes from its caller, checked before anything is sent: under best_effort a
database's refusal is logged and swallowed, so input the database cannot store as given must be
refused here, as the InvalidInput it is (tests/test_trust_attacks_88.py, r15, r16)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import psycopg

from pgaudit_py.deep_json import key_text, tolerant_dumps
from pgaudit_py.errors import InvalidArgument, InvalidInput, InvalidKind, InvalidPayload

# What PostgreSQL's numeric, in which jsonb keeps numbers, holds: digits before and after the point.
NUMERIC_DIGITS_BEFORE, NUMERIC_DIGITS_AFTER = 131072, 16383


def refused_input(exc: psycopg.Error) -> InvalidInput | None:
    """The InvalidInput a database error on record()'s input is (a data exception, class 22, psycopg's
    own for text it cannot send among them; or a program limit, class 54: a payload nested too deep),
    else None: what a check above missed is still bad input, never a storage failure to swallow. A
    sequence at its end (2200H, the intake's ids) is the log's condition, not the input's."""
    if exc.sqlstate == "2200H":
        return None
    if isinstance(exc, psycopg.DataError) or (exc.sqlstate or "").startswith("54"):
        return InvalidInput(f"the database cannot store this input as given ({type(exc).__name__}, SQLSTATE "
                            f"{exc.sqlstate or 'none'})")
    return None


def text_problem(text: str) -> str | None:
    """Why PostgreSQL's text (or a jsonb string) cannot hold this text as given; None if it can."""
    if "\x00" in text:
        return "holds a NUL character, which PostgreSQL cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate, which is no character UTF-8 can hold"
    return None


def check_texts(fields: dict[str, str | None]) -> None:
    """Raises InvalidKind (for kind) or InvalidArgument for a text argument PostgreSQL cannot hold;
    the message names the argument, never its value."""
    for name, value in fields.items():
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise (InvalidKind if name == "kind" else InvalidArgument)(f"{name} {problem}")


def payload_json(payload: Any) -> str:
    """The payload's JSON text, or InvalidPayload where jsonb would not store it as given: a number
    that is not finite (NaN and the infinities are no JSON), a NUL or a lone surrogate in a string or
    a key, or two keys of one object written alike (1 and "1", True and "true": jsonb keeps only
    the last). Walked with a stack, not recursion: a payload may be nested as deep as jsonb holds."""
    pending, seen = [payload], set()
    while pending:
        value = pending.pop()
        if isinstance(value, (dict, list, tuple)):
            if id(value) in seen:  # shared, or a cycle, which tolerant_dumps refuses
                continue
            seen.add(id(value))
        if isinstance(value, dict):
            keys: set[str] = set()
            for key, item in value.items():
                try:
                    written = key_text(key)
                except (TypeError, ValueError) as exc:  # ValueError: an int longer than Python writes
                    raise InvalidPayload(f"payload cannot be written as JSON: {exc}") from None
                if written in keys:
                    raise InvalidPayload("payload has two keys in one object that JSON writes alike (1 and \"1\", "
                                         "True and \"true\"): only one value would be kept")
                keys.add(written)
                _check_text(written, "key")
                pending.append(item)
        elif isinstance(value, (list, tuple)):
            pending.extend(value)
        elif isinstance(value, str):
            _check_text(value, "string")
        elif isinstance(value, (float, Decimal)) and not (math.isfinite(value) if isinstance(value, float)
                                                          else value.is_finite()):
            raise InvalidPayload("payload holds a number that is not finite (NaN or an infinity), which JSON cannot")
        elif isinstance(value, Decimal) and (value.adjusted() >= NUMERIC_DIGITS_BEFORE
                                             or -int(value.as_tuple().exponent) > NUMERIC_DIGITS_AFTER):
            raise InvalidPayload("payload holds a number with more digits than PostgreSQL's numeric holds")
    try:
        return tolerant_dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"payload cannot be written as JSON: {exc}") from None


def _check_text(text: str, what: str) -> None:
    problem = text_problem(text)
    if problem is not None:
        raise InvalidPayload(f"payload has a {what} that {problem}")
