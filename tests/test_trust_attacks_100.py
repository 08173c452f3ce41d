"""A hundredth attacker's trial: variants against the mends of trial 99.

Classes (test names carry the letter):
  L. the caller's connection state against the package's own reads and writes: own_loaders now
     registers psycopg's loader only where the connection has another (checked in text format):
     binary loaders with a cursor_factory that reads binary, loaders for types outside the list
     (arrays, "char", regclass, xid8, json and jsonb), json loads that parse floats as Decimal or return
     text, the caller's dumpers (str as text or binary, int as int8 or numeric, datetime without a
     zone, a Jsonb dumps of its own), a transaction in error on entry, prepare_threshold=0 in a
     pipeline, and the aio API under the same: every call answers as on a plain connection, or
     refuses clearly, writes nothing half, and gives no wrong verdict.
  A. ages: _is_age at and past its epoch bound in SQL spellings (ISO 8601, '@ ... ago', mixed
     signs, months against days), and the CLI's parse_age under odd spellings (exponents, unicode
     digits, signs, ISO forms, whitespace, very long digit strings): refused with exit 2, nothing
     changed.
  B. baseline proofs: a proof committed earlier, a proof made by one role then SET ROLE to a
     maintainer that owns nothing, a proof consumed by one baseline then reused, a proof of another
     session racing.
  E. event types: kind names with Unicode look-alikes, zero-width and RTL marks, at and past the
     length bound; strict NULL over an absent kind; a replace load after a strict registration.
  V. canonical line: payload numbers whose text jsonb keeps (1.0 / 1.00, -0), Unicode NFC/NFD and
     invisible marks in text columns, deep jsonb, occurred_at moved by a microsecond, a NULL made
     empty: both verifiers agree and catch each tamper.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t100_; roles are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.types.json import set_json_dumps, set_json_loads
from trial_helpers import (
    both_verifiers,
    drop_made_under,
    dsn_of,
    problems_of,
    seal_all,
    sqlstate_of,
    table_owner_kit,
    tamper,
)

from pgaudit_py import (
    aio,
    count_events,
    enable_tracking,
    list_events,
    record,
    register_event_type,
    seal,
    seal_status,
    status,
)
from pgaudit_py.catalogues import load_catalogue
from pgaudit_py.chain import verify_chain
from pgaudit_py.retention import preview_prune, prune_events


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t100") as k:
        yield k
    drop_made_under(db, "t100_")


def counts(db) -> tuple[int, int, int]:
    return db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log),"
                      " (SELECT count(*) FROM audit.blocks)").fetchone()


def honest_chain(db, tag: str, n: int = 3) -> None:
    for i in range(n):
        record(db, f"t100.{tag}", tenant_id="t1", payload={"i": i, "f": 1.5, "s": "abc", "big": 12345678901234567890})
        seal(db)


def first_error(e: BaseException) -> str:
    """The error's first line, and where in the package it was raised."""
    import traceback
    where = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_tb(e.__traceback__)
             if "pgaudit_py" in f.filename][-1:]
    return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''} {where}"


def clear_refusal(e: BaseException) -> bool:
    """A refusal the caller can read: the database's or the package's error, not a crash of a read."""
    return isinstance(e, psycopg.Error) or type(e).__module__.split(".")[0] == "pgaudit_py"


# ================================ L: the caller's connection state ================================

class _UpperText(Loader):
    def load(self, data):
        return bytes(data).decode().upper()


class _AsStr(Loader):
    def load(self, data):
        return "x" + bytes(data).decode()


def _verdicts(theirs, db, tag: str) -> list[str]:
    """verify_chain on the caller's connection: honest True, after a payload tamper False."""
    wrong = []
    try:
        v = verify_chain(theirs)
        if (v.ok, v.problem) != (True, None):
            wrong.append(f"honest chain read as {v.ok}: {v.problem}")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(f"honest: {first_error(e)}")
    tamper(db, f"UPDATE audit.event_log SET payload = payload || '{{\"s\": \"abd\"}}' WHERE kind = 't100.{tag}'"
               " AND payload->>'i' = '1'")
    try:
        if verify_chain(theirs).ok:
            wrong.append("tampered chain read as verified")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(f"tampered: {first_error(e)}")
    return wrong


JSON_LOADS = {
    "decimal_floats": lambda s: json.loads(s, parse_float=Decimal),
    "raw_text": lambda s: s if isinstance(s, str) else bytes(s).decode(),
    "ints_as_str": lambda s: json.loads(s, parse_int=str, parse_float=str),
}


@pytest.mark.parametrize("name", list(JSON_LOADS))
def test_l1_the_callers_json_loads_change_no_verdict(db, connect, name):
    """Attack: set_json_loads on the connection (floats as Decimal, JSON as raw text, numbers as str):
    the verifier's lines are JSON text. Safe: honest verifies, tampered does not; record and
    list_events still answer."""
    honest_chain(db, "l1")
    theirs = connect()
    set_json_loads(JSON_LOADS[name], theirs)
    wrong = []
    try:
        record(theirs, "t100.l1b", payload={"a": 1})
        list_events(theirs, kind_prefix="t100.")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(f"record/list: {first_error(e)}")
    wrong += _verdicts(theirs, db, "l1")
    assert wrong == [], wrong
    assert both_verifiers(db) == (False, False)


@pytest.mark.parametrize("type_name", ["jsonb", "json", "text[]", "int8[]", "char", "regclass", "xid8", "name",
                                       "varchar", "oid", "uuid", "inet", "bool", "interval", "date"])
def test_l2_loaders_for_other_types_change_no_verdict(db, connect, type_name):
    """Attack: the caller registered a loader by name for a type own_loaders does not (or does)
    cover: arrays, "char", regclass, xid8, json/jsonb. Safe: verify_chain, seal, seal_status and
    status answer as on a plain connection (or refuse clearly)."""
    honest_chain(db, "l2")
    plain_status = problems_of(db)
    theirs = connect()
    oid = db.execute("SELECT %s::regtype::oid", [type_name]).fetchone()[0]
    theirs.adapters.register_loader(oid, _AsStr)
    wrong = []
    for name, call, expect in [("seal", lambda: type(seal(theirs).sealed), int),
                               ("seal_status", lambda: type(seal_status(theirs).pending), int),
                               ("status", lambda: status(theirs).problems, plain_status),
                               ("count", lambda: type(count_events(theirs).count), int)]:
        try:
            got = call()
            if got != expect:
                wrong.append(f"{name}: {got!r}")
        except Exception as e:  # noqa: BLE001
            if not clear_refusal(e):
                wrong.append(f"{name}: {first_error(e)}")
    wrong += _verdicts(theirs, db, "l2")
    assert wrong == [], wrong


class _NoItems(Loader):
    def load(self, data):
        return []


def test_l2b_a_text_array_loader_hides_no_problem(db, connect):
    """Attack: the caller's loader for text[] (an application's own array handling, here one that
    reads every array as empty); the installation has a problem status names (the log granted to
    PUBLIC). Safe: status on the caller's connection names the same problems, or refuses clearly:
    it never reports a loosened installation as healthy."""
    db.execute("GRANT INSERT, UPDATE ON audit.event_log TO PUBLIC")
    try:
        plain = problems_of(db)
        assert plain != [], plain
        theirs = connect()
        theirs.adapters.register_loader(db.execute("SELECT 'text[]'::regtype::oid").fetchone()[0], _NoItems)
        try:
            got = status(theirs).problems
        except Exception as e:  # noqa: BLE001
            got = "refused" if clear_refusal(e) else first_error(e)
    finally:
        db.execute("REVOKE INSERT, UPDATE ON audit.event_log FROM PUBLIC")
    assert got in (plain, "refused") and got != [], f"status on the caller's connection: {got!r}; on a plain one: {plain}"


def test_l2c_an_array_loader_hides_no_excluded_or_redacted_column(db, connect):
    """Attack: the caller's loaders for text[] and int2[] read every array as empty; an auditor reads
    tracked_tables (sync and aio) on that connection. Safe: the excluded and redacted columns are
    named as stored (or the call refuses clearly): a table whose 'secret' column goes uncaptured
    never reads as one captured whole."""
    db.execute("CREATE TABLE public.t100_l2c (id int PRIMARY KEY, secret text, card text)")
    enable_tracking(db, "public.t100_l2c", exclude_columns=["secret"], redact_columns=["card"])
    oids = [db.execute("SELECT %s::regtype::oid", [t]).fetchone()[0] for t in ("text[]", "int2[]", "int4[]", "name[]")]
    info = db.info

    def mine(rows):
        return [(t.exclude_columns, t.redact_columns) for t in rows if t.table_name == "public.t100_l2c"]

    from pgaudit_py import tracked_tables
    plain = mine(tracked_tables(db))
    theirs = connect()
    for oid in oids:
        theirs.adapters.register_loader(oid, _NoItems)
    try:
        got = mine(tracked_tables(theirs))
    except Exception as e:  # noqa: BLE001
        got = "refused" if clear_refusal(e) else first_error(e)

    async def go():
        conn = await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                     user=info.user, autocommit=True)
        try:
            for oid in oids:
                conn.adapters.register_loader(oid, _NoItems)
            try:
                return mine(await aio.tracked_tables(conn))
            except Exception as e:  # noqa: BLE001
                return "refused" if clear_refusal(e) else first_error(e)
        finally:
            await conn.close()

    got_aio = asyncio.run(go())
    assert plain == [(["secret"], ["card"])], plain
    assert (got, got_aio) in ((plain, plain), ("refused", "refused")), f"sync {got}, aio {got_aio}, plain {plain}"


@pytest.mark.parametrize("odd_loaders", [False, True])
def test_l3_binary_loaders_under_a_binary_cursor_factory(db, connect, odd_loaders):
    """Attack: the connection's cursor_factory reads binary (a subclass that sets format), and the
    caller registered binary loaders for int8, bytea and text: own_loaders compares text loaders
    only. Safe: verify_chain gives the right verdict both ways, or refuses clearly; seal answers."""
    from psycopg.types.numeric import Int8BinaryLoader
    from psycopg.types.string import ByteaBinaryLoader, TextBinaryLoader

    class BinCursor(psycopg.Cursor):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.format = Format.BINARY

    class OddInt8(Int8BinaryLoader):
        def load(self, data):
            return str(super().load(data))

    class OddBytea(ByteaBinaryLoader):
        def load(self, data):
            return bytes(super().load(data)).hex()

    class OddText(TextBinaryLoader):
        def load(self, data):
            return str(super().load(data)).upper()

    honest_chain(db, "l3")
    theirs = connect(cursor_factory=BinCursor)
    for n, cls in (("int8", OddInt8), ("bytea", OddBytea), ("text", OddText)):
        if odd_loaders:
            theirs.adapters.register_loader(n, cls)
    wrong = []
    try:
        if type(seal(theirs).sealed) is not int:
            wrong.append("seal answered otherwise")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(f"seal: {first_error(e)}")
    wrong += _verdicts(theirs, db, "l3")
    assert wrong == [], wrong


def _dumper_configs():
    from psycopg.types.datetime import DatetimeNoTzDumper
    from psycopg.types.numeric import Int8Dumper, IntNumericDumper
    from psycopg.types.string import StrBinaryDumper, StrDumper
    return {
        "str_text": (str, StrDumper),
        "str_binary": (str, StrBinaryDumper),
        "int_int8": (int, Int8Dumper),
        "int_numeric": (int, IntNumericDumper),
        "datetime_notz": (datetime, DatetimeNoTzDumper),
    }


@pytest.mark.parametrize("config", ["str_text", "str_binary", "int_int8", "int_numeric", "datetime_notz"])
def test_l4_the_callers_dumpers(db, connect, config):
    """Attack: the caller's dumpers (str sent as text or binary, int as int8 or numeric, a datetime
    without its zone). Safe: record, register_event_type, preview_prune, list_events(since) and
    verify_chain answer as on a plain connection (same stored values, same counts) or refuse
    clearly with nothing written."""
    typ, dumper = _dumper_configs()[config]
    honest_chain(db, "l4")
    theirs = connect(options="-c TimeZone=America/New_York")
    theirs.adapters.register_dumper(typ, dumper)
    plain = connect(options="-c TimeZone=America/New_York")
    since = datetime.now(timezone.utc) - timedelta(hours=2)
    wrong = []

    def answer(conn, tag):
        out = {}
        out["record"] = record(conn, f"t100.l4{tag}", tenant_id="t1", payload={"n": 7, "s": "x"}).kind
        out["register"] = register_event_type(conn, f"t100.l4{tag}t", {"type": "object", "required": ["n"]}).kind
        out["preview"] = preview_prune(conn, timedelta(days=1), 10).events
        out["listed"] = len(list_events(conn, tenant_id="t1", since=since))
        out["verify"] = verify_chain(conn).ok
        return out

    want = answer(plain, "p")
    before = counts(db)
    try:
        got = answer(theirs, "q")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(first_error(e))
        got = None
    if got is not None:
        got["record"] = got["record"].replace("l4q", "l4p")
        got["register"] = got["register"].replace("l4q", "l4p")
        got["listed"] -= 1  # the plain call's own event
        if got != want:
            wrong.append(f"answered {got}, a plain connection {want}")
        stored = db.execute("SELECT payload, tenant_id FROM audit.events WHERE kind = 't100.l4q'").fetchall()
        if stored != [({"n": 7, "s": "x"}, "t1")]:
            wrong.append(f"stored {stored}")
        schema = db.execute("SELECT schema FROM audit.event_types WHERE kind = 't100.l4qt'").fetchone()
        if schema != ({"type": "object", "required": ["n"]},):
            wrong.append(f"schema stored {schema}")
    else:
        after = counts(db)
        if after[0] > before[0] + 1:
            wrong.append(f"refused after writing {before} -> {after}")
    assert wrong == [], wrong
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_l5_a_json_dumps_of_the_callers_own(db, connect):
    """Attack: set_json_dumps on the connection that drops None values and sorts keys (as an
    application's 'compact' dumps might). Safe: the package's own writes of JSON (a registered
    schema, record's payload as given) are stored as given, or refused."""
    theirs = connect()

    def compact(obj):
        def strip(o):
            if isinstance(o, dict):
                return {k: strip(v) for k, v in o.items() if v is not None}
            if isinstance(o, list):
                return [strip(v) for v in o]
            return o
        return json.dumps(strip(obj), sort_keys=True)

    set_json_dumps(compact, theirs)
    schema = {"type": "object", "properties": {"a": {"default": None}}}
    register_event_type(theirs, "t100.l5", schema)
    stored = db.execute("SELECT schema FROM audit.event_types WHERE kind = 't100.l5'").fetchone()[0]
    ev = db.execute("SELECT payload->'registered_schema', payload FROM audit.events WHERE kind ="
                    " 'audit.event_type_registered' AND target_id = 't100.l5'").fetchone()
    from pgaudit_py.catalogues import read_catalogue
    load_catalogue(theirs, "auth")
    cat = read_catalogue("auth")["kinds"]
    differ = [k for k, entry in cat.items()
              if db.execute("SELECT schema FROM audit.event_types WHERE kind = %s", [k]).fetchone()[0] != entry["schema"]]
    assert ev is not None
    assert (stored == schema, differ) == (True, []), f"registered {schema}, stored {stored}; catalogue kinds differ: {differ}"


@pytest.mark.parametrize("call", ["record", "seal", "seal_status", "status", "verify_chain", "load_catalogue",
                                  "register_event_type", "prune_events", "enable_tracking", "count_events"])
def test_l6_a_transaction_in_error_on_entry(db, connect, call):
    """Attack: autocommit off, the caller's transaction has failed (INERROR) after its own insert.
    Safe: the call refuses clearly (not a crash), the caller's transaction is neither committed
    nor silently replaced (still failed, or still the caller's to roll back), nothing written."""
    db.execute("CREATE TABLE public.t100_l6 (id int PRIMARY KEY); INSERT INTO public.t100_l6 VALUES (1)")
    honest_chain(db, "l6", 1)
    theirs = connect(autocommit=False)
    theirs.execute("INSERT INTO public.t100_l6 VALUES (2)")
    with suppress(psycopg.Error):
        theirs.execute("SELECT 1/0")
    assert theirs.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    before = counts(db)
    calls = {
        "record": lambda: record(theirs, "t100.l6x"),
        "seal": lambda: seal(theirs),
        "seal_status": lambda: seal_status(theirs),
        "status": lambda: status(theirs),
        "verify_chain": lambda: verify_chain(theirs),
        "load_catalogue": lambda: load_catalogue(theirs, "auth"),
        "register_event_type": lambda: register_event_type(theirs, "t100.l6t", {"type": "object"}),
        "prune_events": lambda: prune_events(theirs, timedelta(days=1)),
        "enable_tracking": lambda: enable_tracking(theirs, "public.t100_l6"),
        "count_events": lambda: count_events(theirs),
    }
    outcome = None
    try:
        calls[call]()
        outcome = "answered"
    except Exception as e:  # noqa: BLE001
        outcome = "refused" if clear_refusal(e) else f"crashed: {first_error(e)}"
    state = theirs.info.transaction_status
    with suppress(psycopg.Error):
        theirs.rollback()
    assert not outcome.startswith("crashed"), outcome
    assert db.execute("SELECT count(*) FROM public.t100_l6").fetchone() == (1,), "the caller's failed work committed"
    assert counts(db) == before, f"{call} wrote from a failed transaction: {before} -> {counts(db)}"
    assert outcome == "refused" or state != psycopg.pq.TransactionStatus.IDLE, (
        f"{call} answered, leaving the caller's failed transaction gone ({state.name})")
    assert db.execute("SELECT count(*) FROM audit.event_types WHERE kind = 't100.l6t'").fetchone() == (0,)


def test_l7_prepare_threshold_zero_inside_a_pipeline(db, connect):
    """Attack: prepare_threshold=0 and pipeline mode together, over the writing calls. Safe: each
    answers or refuses, nothing half-written; the chain is whole and status clean after."""
    honest_chain(db, "l7")
    piped = connect(prepare_threshold=0)
    wrong = []
    with piped.pipeline():
        for name, call in [("record", lambda: record(piped, "t100.l7x", payload={"a": 1}).kind == "t100.l7x"),
                           ("register", lambda: register_event_type(piped, "t100.l7t", {"type": "object"}).kind
                            == "t100.l7t"),
                           ("load_catalogue", lambda: len(load_catalogue(piped, "auth")) > 0),
                           ("seal", lambda: seal(piped).sealed >= 0),
                           ("seal_status", lambda: seal_status(piped).pending >= 0),
                           ("status", lambda: isinstance(status(piped).problems, list)),
                           ("prune", lambda: prune_events(piped, timedelta(days=3650)).deleted == 0)]:
            try:
                if call() is not True:
                    wrong.append(f"{name}: answered otherwise")
            except Exception as e:  # noqa: BLE001
                if not clear_refusal(e):
                    wrong.append(f"{name}: {first_error(e)}")
    assert wrong == [], wrong
    assert problems_of(db) == []
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
    n_types = db.execute("SELECT count(*) FROM audit.event_types WHERE kind = 't100.l7t'").fetchone()[0]
    n_reg = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.event_type_registered'"
                       " AND target_id = 't100.l7t'").fetchone()[0]
    assert n_types == n_reg, (n_types, n_reg)


def test_l8_aio_under_loaders_error_and_pipeline(db):
    """Attack: the aio API on an AsyncConnection with loaders for int8 and text, then inside a
    failed transaction, then in a pipeline with prepare_threshold=0. Safe: answers as plain, or
    refuses clearly, nothing written from the failed transaction."""
    info = db.info
    honest_chain(db, "l8")

    async def go():
        out = []
        conn = await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                     user=info.user, autocommit=True, prepare_threshold=0)
        try:
            conn.adapters.register_loader("int8", _AsStr)
            conn.adapters.register_loader("text", _UpperText)
            ev = await aio.record(conn, "t100.l8", payload={"a": "b"})
            out.append(ev.kind)
            out.append(type((await aio.seal(conn)).sealed).__name__)
            out.append(type((await aio.count_events(conn)).count).__name__)
            await conn.set_autocommit(False)
            with suppress(psycopg.Error):
                await conn.execute("SELECT 1/0")
            try:
                await aio.record(conn, "t100.l8err")
                out.append("answered in a failed transaction")
            except Exception as e:  # noqa: BLE001
                out.append("refused" if clear_refusal(e) else first_error(e))
            await conn.rollback()
            await conn.set_autocommit(True)
            async with conn.pipeline():
                try:
                    out.append((await aio.record(conn, "t100.l8p")).kind)
                    out.append(type((await aio.seal_status(conn)).pending).__name__)
                except Exception as e:  # noqa: BLE001
                    out.append("refused" if clear_refusal(e) else first_error(e))
        finally:
            await conn.close()
        return out

    got = asyncio.run(go())
    assert got[:4] == ["t100.l8", "int", "int", "refused"], got
    assert got[4:] in (["t100.l8p", "int"], ["refused"]), got
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't100.l8err'").fetchone() == (0,)
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


# ================================ A: ages ================================

@pytest.mark.parametrize(("spelling", "is_age"), [
    ("36600 days", True), ("P36600D", True), ("P100Y", True), ("@ 36600 days", True),
    ("36600 days 1 microsecond", False), ("P36600DT0.000001S", False), ("-0 days", False), ("0", False),
    ("@ 1 day ago", False), ("1 year -400 days", False), ("1 year -1 day", False), ("-1 mon 31 days", False),
    ("100 years 3 mons", False), ("P100Y2M16D", False), ("1 day -86399 seconds", False),
    ("3162240000 seconds", True), ("3162240000.000001 seconds", False), ("878400:00:00.000001", False),
    ("-2147483648 days 2147483647 days", False), ("1 mon -1 day", False), ("00:00:00.000001", True),
])
def test_a1_is_age_spellings(db, spelling, is_age):
    """_is_age in the spellings PostgreSQL reads (ISO 8601, '@ ... ago', mixed signs)."""
    try:
        got = db.execute("SELECT audit._is_age(%s::interval)", [spelling]).fetchone()[0]
    except psycopg.Error:
        got = False  # PostgreSQL reads no interval: never an age
    assert got is is_age, (spelling, got)


@pytest.mark.parametrize("spelling", ["@ 1 day ago", "1 year -400 days", "P100Y2M16D", "-0 days",
                                      "36600 days 1 microsecond", "1 mon -1 day"])
def test_a2_python_prune_takes_a_spelling_as_sql(db, spelling):
    """prune_events and preview_prune with the age as text: refused (PA005 through the package's
    error) with nothing pruned, where _is_age says no."""
    honest_chain(db, "a2")
    before = counts(db)
    refused = []
    for fn in (preview_prune, prune_events):
        try:
            fn(db, spelling)
        except Exception as e:  # noqa: BLE001
            refused.append(clear_refusal(e))
    assert refused == [True, True], (spelling, refused)
    assert counts(db) == before


CLI_SPELLINGS = ["36600 days 1 microsecond", "-0d", "1e5d", "P100Y", "@ 1 day ago", "1 year -400 days",
                 "\uff13\uff16\uff16\uff10\uff10d", "\u0661d", "+5d", "5 d\u200b", "5\u00a0d", "0d", "00000d",
                 "36600d 1s", "5D", "9" * 400 + "d", "5dd", "1_000d", "\n5d\n\n", "5d\x00"]


@pytest.mark.parametrize("spelling", CLI_SPELLINGS, ids=[repr(s)[:30] for s in CLI_SPELLINGS])
def test_a3_cli_hot_retention_odd_spellings(db, spelling):
    """archive settings --hot-retention in odd spellings: each is either refused (exit 2, no
    traceback, nothing changed) or stored as an age the SQL takes and the CLI's grammar names
    (digits 0-9 and one of s m h d w)."""
    from pgaudit_py.cli import cli

    kept = db.execute("SELECT * FROM audit.archive_settings").fetchall()
    r = CliRunner().invoke(cli, ["archive", "settings", "--hot-retention", spelling, "--dsn", dsn_of(db)],
                           catch_exceptions=True)
    out = r.output + (r.stderr if r.stderr_bytes is not None else "")
    assert "Traceback" not in out and r.exception is None or isinstance(r.exception, SystemExit), (
        spelling, out, r.exception)
    if r.exit_code == 0:
        import re
        assert re.fullmatch(r"\s*[0-9]+\s*[smhdw]\s*", spelling, re.ASCII), f"{spelling!r} taken: {out}"
        st = db.execute("SELECT audit._is_age(hot_retention) FROM audit.archive_settings").fetchone()[0]
        assert st is True
    else:
        assert r.exit_code == 2, (spelling, r.exit_code, out)
        assert db.execute("SELECT * FROM audit.archive_settings").fetchall() == kept


def test_a4_cli_prune_odd_spellings_prune_nothing(db):
    """pgaudit prune --older-than with spellings that are no age: exit 2, nothing pruned."""
    from pgaudit_py.cli import cli

    honest_chain(db, "a4")
    before = counts(db)
    taken = []
    for spelling in ["0d", "-1d", "1e5d", "P1D", "36601d", "3162240001s", "\u0661d", "1d ago"]:
        r = CliRunner().invoke(cli, ["prune", "--older-than", spelling, "--yes", "--dsn", dsn_of(db)])
        if r.exit_code != 2:
            taken.append((spelling, r.exit_code, r.output[-200:]))
    assert taken == []
    assert counts(db) == before


@pytest.mark.parametrize("stored", ["P100Y2M16D", "1 year -1 day", "P36600DT0.000001S"])
def test_a5_hand_stored_hot_retention_plans_nothing(db, stored):
    """A hot_retention stored by hand in another spelling that is no age: next_archive_batch
    refuses (PA005), status names it."""
    honest_chain(db, "a5")
    tamper(db, f"UPDATE audit.archive_settings SET hot_retention = '{stored}'")
    assert sqlstate_of(db, "SELECT * FROM audit.next_archive_batch()") == "PA005"
    assert any("hot_retention" in p for p in problems_of(db)), problems_of(db)


# ================================ B: baseline proofs ================================

def _baselines(db, table: str) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = %s", [f"public.{table}.baseline"]).fetchone()[0]


def _own_tracked(kit, name: str) -> None:
    kit.owner.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY); INSERT INTO public.{name} VALUES (1), (2);"
                      f" GRANT SELECT ON public.{name} TO audit_sandbox; GRANT SELECT, UPDATE ON public.{name} TO PUBLIC")
    enable_tracking(kit.maint, f"public.{name}")


def test_b1_a_proof_committed_earlier_takes_no_baseline(kit):
    """Attack: the maintainer commits a proof (autocommit), then in a later transaction calls
    _take_baseline. Safe: refused, 42501; the stale proof is gone."""
    _own_tracked(kit, "t100_b1")
    m = kit.maint
    m.execute("SELECT audit._prove_owner('public.t100_b1'::regclass, md5(1::text)::uuid)")
    m.execute("BEGIN")
    m.execute("LOCK public.t100_b1 IN SHARE MODE")
    st = sqlstate_of(m, "SELECT audit_capture._take_baseline('public.t100_b1'::regclass, md5(1::text)::uuid)")
    m.execute("ROLLBACK")
    assert st == "42501", st
    assert _baselines(kit.db, "t100_b1") == 0


def test_b2_a_proof_then_set_role_to_a_maintainer_who_owns_nothing(kit):
    """Attack: app_maintainer (member of the owner) proves, then SET ROLE to t100_m2, a maintainer
    that owns nothing and has only writes on the table, and takes the baseline as t100_m2. Safe:
    refused 42501 (a maintainer with only writes takes none), no baseline under t100_m2."""
    db = kit.db
    _own_tracked(kit, "t100_b2")
    db.execute("CREATE ROLE t100_m2 IN ROLE audit_maintainer; GRANT t100_m2 TO app_maintainer")
    m = kit.maint
    m.execute("BEGIN")
    try:
        m.execute("SELECT audit._prove_owner('public.t100_b2'::regclass, md5(1::text)::uuid)")
        m.execute("SET LOCAL ROLE t100_m2")
        m.execute("LOCK public.t100_b2 IN SHARE MODE")
        st = sqlstate_of(m, "SELECT audit_capture._take_baseline('public.t100_b2'::regclass, md5(1::text)::uuid)")
        roles = m.execute("SELECT current_user").fetchone()[0] if st is None else None
    finally:
        m.execute("COMMIT" if st is None else "ROLLBACK")
    who = db.execute("SELECT db_role FROM audit.events WHERE kind = 'public.t100_b2.baseline'").fetchall()
    assert st == "42501", f"taken as {roles}; baseline events under {who}"


def test_b3_one_proof_takes_one_baseline(kit):
    """Attack: one proof, then _take_baseline twice in the same transaction. Safe: the second is
    refused (the proof was consumed)."""
    db = kit.db
    _own_tracked(kit, "t100_b3")
    m = kit.maint
    m.execute("BEGIN")
    try:
        m.execute("LOCK public.t100_b3 IN SHARE MODE")
        # one statement: a proof serves the statement that made it (trial 106)
        first = sqlstate_of(m, "SELECT audit._prove_owner('public.t100_b3'::regclass, md5(1::text)::uuid),"
                               " audit_capture._take_baseline('public.t100_b3'::regclass, md5(1::text)::uuid)")
        m.execute("SAVEPOINT s")
        second = sqlstate_of(m, "SELECT audit_capture._take_baseline('public.t100_b3'::regclass, md5(1::text)::uuid)")
    finally:
        m.execute("ROLLBACK")
    assert second == "42501", (first, second)
    assert _baselines(db, "t100_b3") == 0


def test_b4_another_sessions_proof_is_not_mine(kit, connect):
    """Attack: the owner's maintainer holds a proof uncommitted; t100_m3 (a maintainer owning
    nothing) calls _take_baseline meanwhile. Safe: refused 42501 without waiting on it."""
    db = kit.db
    _own_tracked(kit, "t100_b4")
    db.execute("CREATE ROLE t100_m3 LOGIN IN ROLE audit_maintainer")
    m = kit.maint
    m.execute("BEGIN")
    m.execute("SELECT audit._prove_owner('public.t100_b4'::regclass, md5(1::text)::uuid)")
    result = {}

    def other():
        c = connect("t100_m3")
        c.execute("BEGIN")
        c.execute("SET LOCAL lock_timeout = '5s'")
        c.execute("LOCK public.t100_b4 IN SHARE MODE")
        result["st"] = sqlstate_of(c, "SELECT audit_capture._take_baseline('public.t100_b4'::regclass, md5(1::text)::uuid)")
        c.execute("ROLLBACK")

    th = threading.Thread(target=other)
    th.start()
    th.join(20)
    m.execute("ROLLBACK")
    assert result.get("st") == "42501", result
    assert _baselines(db, "t100_b4") == 0


# ================================ E: event types ================================

ODD_KINDS = ["t100.cafe\u0301", "t100.caf\u00e9", "t100.a\u200bb", "t100.a\u202eb", "t100.\uff41", "t100.a\u00a0",
             "t100.A\u0130", "t100.a\nb", "t100.a\tb", "t100.a b", "t100." + "x" * 124, "t100.ok\u0000"]


@pytest.mark.parametrize("kind", ODD_KINDS, ids=[repr(k)[:24] for k in ODD_KINDS])
def test_e1_odd_kind_names_are_refused_with_nothing_written(db, kind):
    """A kind with a look-alike, zero-width, RTL mark, control or too long: refused by
    register_event_type and record, nothing registered or recorded."""
    before = counts(db)
    n_types = db.execute("SELECT count(*) FROM audit.event_types").fetchone()[0]
    for call in (lambda: register_event_type(db, kind, {"type": "object"}, strict=True),
                 lambda: record(db, kind)):
        with pytest.raises(Exception) as e:  # noqa: PT011
            call()
        assert clear_refusal(e.value), first_error(e.value)
    assert counts(db) == before
    assert db.execute("SELECT count(*) FROM audit.event_types").fetchone()[0] == n_types


def test_e2_the_longest_kind_and_strict_none(db):
    kind = "t100." + "x" * 123  # 128 characters
    t = register_event_type(db, kind, {"type": "object", "required": ["a"]}, strict=None)
    assert t.strict is False and len(kind) == 128
    assert sqlstate_of(db, "SELECT audit.register_event_type(%s, '{}'::jsonb, NULL)", [kind + "y"]) is not None
    register_event_type(db, kind, {"type": "object", "required": ["a"]}, strict=True)
    with pytest.raises(Exception):  # noqa: B017, PT011
        record(db, kind, payload={"b": 1})
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = %s", [kind]).fetchone() == (0,)


def test_e3_a_replace_load_keeps_a_strict_registration(db):
    """load_catalogue(replace=True) over a catalogue kind made strict by hand with the catalogue's
    schema: strictness kept, and an event the schema refuses stays refused."""
    from pgaudit_py.catalogues import read_catalogue

    cat = read_catalogue("auth")
    kind, entry = next(iter(cat["kinds"].items()))
    load_catalogue(db, "auth")
    register_event_type(db, kind, entry["schema"], strict=True, replace=True)
    load_catalogue(db, "auth", replace=True)
    assert db.execute("SELECT strict FROM audit.event_types WHERE kind = %s", [kind]).fetchone() == (True,)


# ================================ V: canonical line ================================

def _seal_payloads(db, tag: str, payloads: list) -> list[int]:
    for i, p in enumerate(payloads):
        db.execute("SELECT audit.record(kind => %s, payload => %s::jsonb, target_id => %s)",
                   [f"t100.{tag}", p, str(i)])
    assert seal_all(db) is None
    return [r[0] for r in db.execute("SELECT seq FROM audit.event_log WHERE kind = %s ORDER BY seq", [f"t100.{tag}"])]


@pytest.mark.parametrize(("stored", "tampered"), [
    ('{"a": 1.0}', '{"a": 1.00}'), ('{"a": 1.0}', '{"a": 1}'), ('{"a": -0}', '{"a": 0}'),
    ('{"a": 0.0}', '{"a": -0.0}'), ('{"a": 1e2}', '{"a": 100.0}'),
    ('{"a": "caf\u00e9"}', '{"a": "cafe\u0301"}'), ('{"a": "ab"}', '{"a": "a\u200bb"}'),
    ('{"a": "x"}', '{"a": "x\u2028"}'), ('{"a": "\\\\u0000"}', '{"a": "\\\\u0001"}'),
    ('{"a\u00e9": 1}', '{"ae\u0301": 1}'), ('{"a": [1, 2]}', '{"a": [2, 1]}'),
    ('{"a": {}}', '{"a": []}'), ('{"a": null}', '{}'),
])
def test_v1_payload_tampers_that_keep_a_jsonb_value_close(db, stored, tampered):
    """Seal a payload, then change it to a near-equal one (numbers whose text jsonb keeps, Unicode
    look-alikes): both verifiers catch it and agree."""
    seqs = _seal_payloads(db, "v1", [stored, '{"b": 2}'])
    assert both_verifiers(db) == (True, True)
    same = db.execute("SELECT %s::jsonb::text = %s::jsonb::text", [stored, tampered]).fetchone()[0]
    tamper(db, f"UPDATE audit.event_log SET payload = %s::jsonb WHERE seq = {seqs[0]}".replace("%s", "'"
           + tampered.replace("'", "''") + "'"))
    if same:
        assert both_verifiers(db) == (True, True)
    else:
        assert both_verifiers(db) == (False, False), (stored, tampered)


@pytest.mark.parametrize(("column", "value", "to"), [
    ("tenant_id", "caf\u00e9", "cafe\u0301"), ("actor_id", "alice", "alice\u200b"),
    ("target_id", "x", "x\u202e"), ("tenant_id", "a", None), ("actor_id", "", None),
    ("correlation_id", "c", "C"), ("target_type", "t", "t "),
])
def test_v2_text_columns_near_equal(db, column, value, to):
    db.execute(f"SELECT audit.record(kind => 't100.v2', {column} => %s)", [value])
    seal_all(db)
    assert both_verifiers(db) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't100.v2'").fetchone()[0]
    lit = "NULL" if to is None else "'" + to.replace("'", "''") + "'"
    tamper(db, f"UPDATE audit.event_log SET {column} = {lit} WHERE seq = {seq}")
    assert both_verifiers(db) == (False, False)


def test_v3_deep_and_wide_jsonb_and_a_microsecond(db):
    deep = "[" * 2000 + "1" + "]" * 2000
    wide = json.dumps({f"k{i}": i * 1.5 for i in range(1500)})
    seqs = _seal_payloads(db, "v3", [f'{{"d": {deep}}}', wide, '{"z": 1}'])
    assert both_verifiers(db) == (True, True)
    tamper(db, f"UPDATE audit.event_log SET occurred_at = occurred_at + interval '1 microsecond' WHERE seq = {seqs[2]}")
    assert both_verifiers(db) == (False, False)
    tamper(db, f"UPDATE audit.event_log SET occurred_at = occurred_at - interval '1 microsecond' WHERE seq = {seqs[2]}")
    assert both_verifiers(db) == (True, True)
    deeper = "[" * 2000 + "2" + "]" * 2000
    tamper(db, f"UPDATE audit.event_log SET payload = '{{\"d\": {deeper}}}' WHERE seq = {seqs[0]}")
    assert both_verifiers(db) == (False, False)


def test_v4_schema_valid_and_outcome(db):
    register_event_type(db, "t100.v4", {"type": "object", "required": ["a"]})
    record(db, "t100.v4", payload={"b": 1})
    seal_all(db)
    assert both_verifiers(db) == (True, True)
    sv = db.execute("SELECT schema_valid FROM audit.event_log WHERE kind = 't100.v4'").fetchone()[0]
    for to in ("NULL", "true" if sv is False else "false"):
        tamper(db, f"UPDATE audit.event_log SET schema_valid = {to} WHERE kind = 't100.v4'")
        assert both_verifiers(db) == (False, False), to
    tamper(db, f"UPDATE audit.event_log SET schema_valid = {'NULL' if sv is None else sv} WHERE kind = 't100.v4'")
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("spelling", ["", " ", "0d", "-1d", "1e5d", "P1D", "\u0661d", "36601d", "1d ago", "never"])
def test_a6_cli_token_expires_odd_spellings_make_no_token(db, spelling):
    """pgaudit tokens create --expires in spellings that are no age: exit 2, no token made (an
    expiry given wrong is never a token that never expires)."""
    from pgaudit_py.cli import cli

    before = db.execute("SELECT count(*) FROM audit.api_tokens").fetchone()[0]
    r = CliRunner().invoke(cli, ["tokens", "create", "--name", "t100tok", "--expires", spelling, "--dsn", dsn_of(db)])
    after = db.execute("SELECT count(*) FROM audit.api_tokens").fetchone()[0]
    assert (r.exit_code, after) == (2, before), (spelling, r.exit_code, r.output[-300:])
