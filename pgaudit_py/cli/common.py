"""What every `pgaudit` command shares: connecting, the common options, and turning expected
failures into one line and an exit code (0 success, 1 failure, 2 bad input)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import sys
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import click
import psycopg
from psycopg.types.json import set_json_loads

from pgaudit_py.dsn import connect as connect_safely
from pgaudit_py.errors import InvalidInput, PgAuditError
from pgaudit_py.events import Event
from pgaudit_py.installer import SCHEMA_NAME
from pgaudit_py.output import printable
from pgaudit_py.session import pin

exact_json = functools.partial(json.loads, parse_float=Decimal)

# ASCII digits only, as the HTTP API reads numbers: "1\u0661d" is no duration (trial 85, s45).
DURATION = re.compile(r"\s*([0-9]+)\s*(s|m|h|d|w)\s*", re.ASCII)  # fullmatch
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Number(click.IntRange):
    """A whole number in the digits 0-9, as the HTTP API reads one: int() would also take "1\u0661"
    (an Arabic-Indic one after a 1), a mathematical bold nine or "1_000", which an operator may not
    read as the number stored (trial 85, s45). Bounds as click.IntRange's."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not re.fullmatch(r"\s*[+-]?[0-9]+\s*", value, re.ASCII):
            self.fail(f"{value!r} is not a whole number in the digits 0-9", param, ctx)
        return super().convert(value, param, ctx)


class Seconds(click.types.FloatParamType):
    """A length of time in seconds, in the digits 0-9 with an optional fraction ("0.5"): float()
    would take other scripts' digits, "1_0", "nan" and "inf", under which a lag warning never fires
    (trial 86, s3, s4)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        if not re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*", str(value), re.ASCII):
            self.fail(f"{value!r} is not a number of seconds in the digits 0-9 (like 60 or 0.5)", param, ctx)
        return float(value)


def say(line: str, err: bool = False) -> None:
    """A line for people, through printable(): a name or value in it (a file name that is not
    UTF-8, a newline in a key's name) can neither fail the write nor forge a line. A line for
    stderr (an error, a warning, the worker's reports) holds no long value given (without_given)."""
    click.echo(printable(without_given(line) if err else line), err=err)


def fail(message: str, code: int = 1) -> NoReturn:
    say(f"pgaudit: {message}", err=True)
    sys.exit(code)


# What this run was given, on its command line and in the variables it reads. A refusal of the
# command line repeats none of it, since a key, a token or a password given in the wrong place would
# be printed back, to a terminal or a job's log (tests/test_trust_attacks_47.py, _48.py, _50.py).
# Any other line on stderr repeats no long piece of it (32 characters or more between spaces,
# slashes, dots, '=' and the like: a key, half a key, a token), in any case, cut to PostgreSQL's 63 for a
# name, or normalized; shorter values stay named (a table, a column, a tenant), since that is how a
# user finds the mistake.
_given: list[str] = []
_long_given: list[str] = []
LONG = 32
BATCH_ID = re.compile(r"blocks-[0-9]{12}-[0-9]{12}")  # 32 characters, and a name, no secret: named


def remember_given(args: list[str], command: click.Command) -> None:
    """Values, not names: a word that is an option's or a command's name, or the schema's name
    (named in most messages; a valid one shorter than a long piece), is not one."""
    names = _names_in(command)
    schemas = {args[i + 1] for i, a in enumerate(args[:-1]) if a == "--schema"}
    schemas |= {a.removeprefix("--schema=") for a in args if a.startswith("--schema=")}
    schemas = {s for s in schemas if SCHEMA_NAME.fullmatch(s) and len(s) < LONG}
    values = [a.split("=", 1)[1] if a.startswith("-") and "=" in a else a for a in args]
    values = [v for v in values if v and v not in names and v not in schemas]
    _given[:] = sorted(set(values), key=len, reverse=True)
    values += [os.environ.get(n, "") for n in ("PGAUDIT_DSN", "PGAUDIT_ARCHIVE_URL", "PGAUDIT_SCHEMA")]
    values += [urllib.parse.unquote(v) for v in values]  # a URI's %40 is libpq's @, and the server's messages say so
    pieces = {p for v in values for p in re.split(r"[\s/\\=,;:?&#@.'\"<>()\[\]{}|]+", v)
              if len(p) >= LONG and not BATCH_ID.fullmatch(p)}
    # As given, cut to PostgreSQL's 63 bytes for a name, or normalized.
    forms = {f for p in pieces for f in (p, p.encode()[:63].decode(errors="ignore"), unicodedata.normalize("NFC", p),
                                         unicodedata.normalize("NFKC", p))}
    _long_given[:] = sorted(forms, key=len, reverse=True)


_CLICK_WORDS = frozenset((
    "a", "an", "and", "argument", "arguments", "choose", "command", "did", "does", "error", "exist", "extra", "file",
    "for", "from", "got", "invalid", "is", "mean", "missing", "no", "not", "of", "one", "option", "options", "or",
    "parameter", "range", "such", "the", "unexpected", "usage", "valid", "value", "values", "you"))


def without_given(message: str, every: bool = False) -> str:
    """message with each long piece of what was given replaced, wherever it stands; with every,
    each value given too where it stands as a word of its own (after a space, a quote or a
    bracket): 'table public.t' keeps its 't' when t was given."""
    for piece in _long_given:
        message = re.sub(re.escape(piece), "the value given", message, flags=re.IGNORECASE)
    for value in _given if every else []:
        # A word of click's own messages, given as a value, is no secret, and replacing it would
        # garble the message ('Got unexpected extra argument (extra)').
        for form in (repr(value),) if value.lower() in _CLICK_WORDS else (repr(value), value):
            message = re.sub(rf"(?<![^\s'\"(\[«»„“‚‘]){re.escape(form)}(?![^\s'\"),.:;\]«»“”‘’])", "the value given",
                             message)
    # click names a path by its kind first ('Directory '/x' does not exist.'): keep the sentence whole.
    return re.sub(r"\b(File|Directory|Path) the value given\b", lambda m: f"the {m[1].lower()} given", message)


def _names_in(command: click.Command) -> set[str]:
    names = {command.name or ""} | {o for p in command.params for o in p.opts + p.secondary_opts}
    for sub in getattr(command, "commands", {}).values():
        names |= _names_in(sub)
    return names


_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class Utf8Text(click.types.StringParamType):
    """Text that is UTF-8. Python reads argv and the environment with surrogateescape, so a byte
    that is not UTF-8 arrives as a lone surrogate, which psycopg cannot send to the database (its
    UnicodeEncodeError repeats the whole value, a password too): refused before the command runs,
    without the value. Paths (click.Path) may hold any bytes and are left as they are."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = super().convert(value, param, ctx)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("it is not UTF-8 (its text is not repeated here)", param, ctx)
        return text


def _text_is_utf8(command: click.Command) -> None:
    """Every text option and argument of command and its subcommands becomes Utf8Text."""
    for param in command.params:
        if type(param.type) is click.types.StringParamType:
            param.type = Utf8Text()
    for sub in getattr(command, "commands", {}).values():
        _text_is_utf8(sub)


class OneLineErrors:
    """Click's usage errors (a missing option, a value out of range, text that is not UTF-8) as one
    line and exit 2, like every other error of the command line, instead of a usage block."""

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        assert isinstance(self, click.Command)
        _text_is_utf8(self)
        remember_given(list(kwargs.get("args", args[0] if args else sys.argv[1:]) or []), self)
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)  # type: ignore[misc]
        except _NO_ARGS_IS_HELP as exc:
            exc.show()  # a group run with no command: its help, as click does
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
            fail(without_given(exc.format_message(), every=True) + hint, 2)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("aborted", 1)
        sys.exit(code if isinstance(code, int) else 0)


class Group(OneLineErrors, click.Group):
    pass


class Command(OneLineErrors, click.Command):
    pass


def what_it_says(event: Event) -> object:
    """A recorded event's payload; for a captured write, what changed (an UPDATE), or the row
    written (INSERT) or removed (DELETE). What `events` and `history` show."""
    if event.origin == "record" or (event.row_before is None and event.row_after is None):
        return event.payload
    return event.changed if event.changed is not None else (event.row_after or event.row_before)


def explained(exc: PgAuditError) -> str:
    """The message, then its detail (which names what it is about: the first event of an
    idempotency key, ...) and hint, on one line."""
    return exc.message + "".join(f" ({extra})" for extra in (exc.detail, exc.hint) if extra)


# Longer than any retention or lifetime asked of an audit log, and short enough that a time this
# far before or after now is still a date (a larger one overflowed, with a traceback).
LONGEST = timedelta(days=100 * 366)


def parse_duration(value: str) -> timedelta:
    match = DURATION.fullmatch(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration like 90d, 12h, 30m, 2w or 45s")
    amount = int(match.group(1))
    if amount > LONGEST.total_seconds() or timedelta(**{UNITS[match.group(2)]: amount}) > LONGEST:
        raise click.BadParameter(f"{value!r} is longer than 100 years")
    return timedelta(**{UNITS[match.group(2)]: amount})


def parse_age(value: str, option: str) -> timedelta:
    """A duration that must be longer than zero (a cutoff, a retention, an expiry)."""
    age = parse_duration(value)
    if not age:
        raise click.BadParameter("it must be longer than 0", param_hint=f"'{option}'")
    return age


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time (UTC if it names no zone), or a duration before now (1h, 7d, ...)."""
    if value is None:
        return None
    if DURATION.fullmatch(value):
        return datetime.now(timezone.utc) - parse_duration(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither an ISO 8601 time nor a duration like 1h or 7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclasses.dataclass
class Settings:
    dsn: str
    schema: str

    @contextmanager
    def connect(self, application_name: str = "pgaudit") -> Iterator[psycopg.Connection]:
        conn = connect_safely(self.dsn, autocommit=True, application_name=application_name)
        with conn:
            pin(conn)
            # Numbers as written: an amount of 12345678901234567.89 is no float's 1.2345678901234568e+16,
            # nor 2e308 an infinity (pgaudit_py.output prints them back as they are).
            set_json_loads(exact_json, conn)
            yield conn


def run_guarded(entry: Callable[[], Any]) -> None:
    """Turn expected failures into one line and an exit code; never a traceback."""
    try:
        entry()
    except InvalidInput as exc:
        fail(explained(exc), 2)
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidName) as exc:
        fail(str(exc).strip().splitlines()[0], 2)  # a table name that does not resolve
    except PgAuditError as exc:
        fail(explained(exc))
    except psycopg.errors.InsufficientPrivilege as exc:
        fail(f"{str(exc).strip().splitlines()[0]} (docs/cli.md names the least role each command needs)")
    except psycopg.Error as exc:
        fail(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    except UnicodeError:  # text from elsewhere than the command line (Utf8Text); its repr holds it all
        fail("a value is not UTF-8 (its text is not repeated here)", 2)
    except KeyboardInterrupt:
        fail("interrupted", 130)


dsn_option = click.option("--dsn", envvar="PGAUDIT_DSN", default="", show_envvar=True,
                          help="libpq connection string or URL; else the PG* variables apply.")
schema_option = click.option("--schema", envvar="PGAUDIT_SCHEMA", default="audit", show_envvar=True,
                             help="Schema pgaudit_py lives in.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--dsn and --schema on every command; the command receives them as `settings`."""
    @functools.wraps(f)
    def wrapper(*args: Any, dsn: str, schema: str, **kwargs: Any) -> Any:
        return f(Settings(dsn=dsn, schema=schema), *args, **kwargs)
    return dsn_option(schema_option(wrapper))


def _with_options(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def apply(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f
    return apply


# The checkpoint keys, which also sign archive manifests.
key_options = [
    click.option("--signing-key", type=click.Path(path_type=Path), help="Ed25519 private key (PEM)."),
    click.option("--public-key", type=click.Path(path_type=Path), help="Ed25519 public key (PEM)."),
    click.option("--hmac-key-file", type=click.Path(path_type=Path), help="HMAC-SHA-256 key file."),
]
