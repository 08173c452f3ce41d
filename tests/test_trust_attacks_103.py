"""A hundred-and-third attacker's trial: variants nobody tried against the mends of trials 100 to 102
(the package's own cursors, psycopg's adapters as they were at import; a baseline consumes only the
acting role's proofs; the verifier's timestamptz loader).

Classes (test names carry the letter):
  C. the package's own cursors against what an application can set after import: loaders registered
     globally for built-in types trial 102 did not try (json, jsonb, numeric, date, timestamp, int4,
     bool, uuid, inet, oid, name, interval, float8, varchar, bpchar, regclass), global dumpers for
     float (numeric), int, bytes, uuid, ipaddress, date; psycopg.types.json.set_json_loads set globally
     (it patches psycopg's own loader class, which the package's map shares) with objects read as
     SimpleNamespace or numbers as floats, then install / status / seal / verify_chain; TypeInfo
     registrations made globally (hstore, composite, multirange, an array of domains); a connection that
     prepares everything, reads dict rows through a client cursor and is in a pipeline; the caller's
     failed transaction; the secret functions under global text/bytea loaders; a raw or SimpleNamespace
     JSON loader (on the connection or global) against every public function; and the aio API on an
     AsyncConnection with the same tricks at once.
  T. times: odd TimeZone settings (POSIX offsets, half-hour zones, Etc signs inverted) and DateStyle
     'ISO, DMY' on the caller's connection; occurred_at set (by hand, as superuser) to infinity, a year
     past 9999 or BC: both verifiers must name the change, not pass it, not crash; bytea_output=escape,
     standard_conforming_strings=off and other output settings before every function.
  B. baseline proofs: a SECURITY INVOKER function whose SET clause sets role, a proof in one session and
     the baseline in another of the same role, a table given away between proof and baseline, the
     owner renamed between proof and baseline (and a non-owner renamed to its name), a role dropped and
     re-created under the owner's name, case-folded names in set_config('role', ...), role changes
     inside the owner's SECURITY DEFINER function, and a rename before the proof (the legit path).

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t103_; roles are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from ipaddress import ip_address
from types import SimpleNamespace
from uuid import UUID

import psycopg
import pytest
from psycopg.adapt import Loader
from psycopg.types.json import set_json_loads
from trial_helpers import (
    both_verifiers,
    drop_made_under,
    seal_all,
    table_owner_kit,
    tamper,
)

from pgaudit_py import (
    aio,
    count_events,
    disable_tracking,
    enable_tracking,
    install,
    list_events,
    monthly_event_counts,
    preview_prune,
    record,
    row_as_of,
    row_history,
    row_state_as_of,
    seal,
    seal_status,
    status,
    tracked_tables,
)
from pgaudit_py.chain import verify_chain
from pgaudit_py.errors import UnsupportedSession


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t103") as k:
        yield k
    drop_made_under(db, "t103_")


@pytest.fixture
def clean(db):
    yield db
    for t in ("t103_tab", "t103_b", "T103_Bq"):
        db.execute(f'DROP TABLE IF EXISTS public."{t}" CASCADE')
    with suppress(psycopg.Error):
        db.execute("DROP TYPE IF EXISTS public.t103_comp, public.t103_dom_arr_holder CASCADE")
    with suppress(psycopg.Error):
        db.execute("DROP DOMAIN IF EXISTS public.t103_dom CASCADE")
    drop_made_under(db, "t103_")


def first_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def clear_refusal(e: BaseException) -> bool:
    return isinstance(e, psycopg.Error) or type(e).__module__.split(".")[0] == "pgaudit_py"


def honest_chain(db, tag: str, n: int = 3) -> None:
    for i in range(n):
        record(db, f"t103.{tag}", tenant_id="t1", payload={"i": i, "f": 1.5, "s": "abc", "big": 12345678901234567890})
        seal(db)


def tracked_table(db) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS public.t103_tab (id int PRIMARY KEY, v int, d date, n numeric)")
    db.execute("INSERT INTO public.t103_tab VALUES (1, 1, '2020-01-02', 1.25) ON CONFLICT DO NOTHING")
    enable_tracking(db, "public.t103_tab")
    db.execute("UPDATE public.t103_tab SET v = v + 1 WHERE id = 1")


def answers(conn, at: datetime, json_too: bool = True) -> dict:
    """Every read the brief names, as comparable values (JSON as text, unless json_too is False)."""
    out = {}
    j = (lambda v: json.dumps(v, default=str, sort_keys=True)) if json_too else (lambda v: None)
    c = count_events(conn, by_kind_prefix=["t103."])
    out["count"] = (c.count, j(c.by_kind_prefix))
    evs = list_events(conn, kind_prefix="t103.")
    out["list"] = sorted((e.kind, e.seq, e.tenant_id, e.db_role, str(e.occurred_at.timestamp()), e.txid, str(e.id),
                          j(e.payload), e.origin) for e in evs)
    out["history"] = [(e.kind, e.seq, j(e.row_after), j(e.changed)) for e in row_history(conn, "public.t103_tab", "1")]
    st = row_state_as_of(conn, "public.t103_tab", "1", at)
    out["state"] = (st.state, j(st.image))
    out["as_of"] = j(row_as_of(conn, "public.t103_tab", "1", at))
    out["tracked"] = sorted((t.table_name, t.exclude_columns, t.redact_columns) for t in tracked_tables(conn)
                            if t.table_name.startswith("public.t103"))
    out["status"] = status(conn).problems
    ss = seal_status(conn)
    out["seal_status"] = (type(ss.pending).__name__, ss.pending, ss.quarantined)
    out["monthly"] = [(m.month, m.count, j(m.by_kind_prefix)) for m in monthly_event_counts(conn, month_count=2,
                                                                                         by_kind_prefix=["t103."])]
    pp = preview_prune(conn, timedelta(days=3650))
    out["prune"] = (pp.events, pp.first_seq, pp.last_seq, pp.batches)
    return out


def verdicts(conn, db, tag: str) -> list[str]:
    wrong = []
    try:
        v = verify_chain(conn)
        if (v.ok, v.problem) != (True, None):
            wrong.append(f"honest chain read as {v.ok}: {v.problem}")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(f"honest: {first_error(e)}")
    tamper(db, f"UPDATE audit.event_log SET payload = payload || '{{\"s\": \"abd\"}}' WHERE kind = 't103.{tag}'"
               " AND payload->>'i' = '1'")
    try:
        if verify_chain(conn).ok:
            wrong.append("tampered chain read as verified")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(f"tampered: {first_error(e)}")
    return wrong


class _AsStr(Loader):
    def load(self, data):
        return "x" + bytes(data).decode()


class _Const(Loader):
    def load(self, data):
        return 7


def _setup(db) -> datetime:
    honest_chain(db, "c")
    tracked_table(db)
    return db.execute("SELECT clock_timestamp()").fetchone()[0]


# ================================ C: the package's own cursors ================================

GLOBAL_TYPES = ["json", "jsonb", "numeric", "date", "timestamp", "int4", "bool", "uuid", "inet", "oid", "name",
                "interval", "float8", "varchar", "bpchar", "regclass", "int2", "text[]", "int8[]", "timestamptz[]"]


@pytest.mark.parametrize("which", GLOBAL_TYPES)
def test_c1_global_loaders_for_more_builtin_types(db, connect, clean, psycopg_globals, which):
    """Attack: after import, a loader of the application's registered globally (psycopg.adapters) for a
    built-in type trial 102 did not try; then a connection is opened. Safe (docs/python.md: 'read and
    send every type (arrays too) with psycopg's adapters as they were when the package was imported,
    JSON apart'): every answer as on a plain connection (for json/jsonb, only the JSON values returned
    may differ), both verdicts hold, or a clear refusal."""
    at = _setup(db)
    is_json = which in ("json", "jsonb")
    want = answers(connect(), at, json_too=not is_json)
    oid = db.execute("SELECT %s::regtype::oid", [which]).fetchone()[0]
    psycopg.adapters.register_loader(oid, _Const if which in ("bool", "int4", "int2", "oid") else _AsStr)
    wrong = []
    theirs = connect()
    try:
        got = answers(theirs, at, json_too=not is_json)
        if got != want:
            wrong.append(f"answered {[(k, got[k], want[k]) for k in got if got[k] != want[k]]}")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(first_error(e))
    wrong += verdicts(theirs, db, "c")
    assert wrong == [], wrong


def test_c2_global_dumpers_for_float_int_bytes_uuid_ip_date(db, connect, clean, psycopg_globals):
    """Attack: after import the application registers globally: float as numeric (Decimal dumper), int
    as numeric, str as unknown-typed text, date/datetime without zone, uuid and ipaddress as text,
    bytes as text. Safe: record's stored values, list_events' window and row_state_as_of as on a
    plain connection (docs/python.md: 'and send every type ... with psycopg's adapters as they were')."""
    from psycopg.types.datetime import DatetimeNoTzDumper
    from psycopg.types.numeric import DecimalDumper, Int2Dumper
    from psycopg.types.string import StrDumperUnknown

    class AsText(psycopg.adapt.Dumper):
        oid = 25

        def dump(self, obj):
            return ("X" + str(obj)).encode()

    at = _setup(db)
    opts = "-c TimeZone=Pacific/Kiritimati"
    since = datetime.now(timezone.utc) - timedelta(minutes=30)
    plain = connect(options=opts)
    want = (len(list_events(plain, kind_prefix="t103.", since=since)),
            row_state_as_of(plain, "public.t103_tab", "1", at).state)
    for cls, dumper in [(float, DecimalDumper), (int, Int2Dumper), (str, StrDumperUnknown),
                        (datetime, DatetimeNoTzDumper), (UUID, AsText), (type(ip_address("1.2.3.4")), AsText),
                        (bytes, AsText), (date, AsText), (bool, AsText)]:
        psycopg.adapters.register_dumper(cls, dumper)
    theirs = connect(options=opts)
    got = (len(list_events(theirs, kind_prefix="t103.", since=since)),
           row_state_as_of(theirs, "public.t103_tab", "1", at).state)
    ev = record(theirs, "t103.c2x", tenant_id="t9", payload={"s": "é", "f": 0.1, "n": 3, "b": True})
    stored = db.execute("SELECT tenant_id, payload::text FROM audit.events WHERE kind = 't103.c2x'").fetchall()
    assert (got, ev.kind, stored) == (want, "t103.c2x", [("t9", '{"b": true, "f": 0.1, "n": 3, "s": "é"}')])
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("how", ["namespace", "int_as_float", "float_as_str", "decimal"])
def test_c3_global_set_json_loads_then_install_status_seal_verify(db, connect, clean, psycopg_globals, how):
    """Attack: after import, set_json_loads(...) globally: objects read as SimpleNamespace, ints as
    floats, or floats as str. psycopg's global set_json_loads patches its own loader class, which
    the package's 'adapters as they were at import' share. Then: install again (it reads and merges
    its security snapshot), status, record, seal, enable_tracking, tracked_tables, verify_chain.
    Safe (docs/python.md: the package reads 'with psycopg's adapters as they were when the package
    was imported, JSON apart. JSON values the package returns to you are read by your connection's
    JSON loader'): nothing the package reads for itself is read through it: no crash, no changed
    snapshot (status, read with the default loader afterwards, as before), verdicts hold."""
    honest_chain(db, "c3")
    before = status(db).problems + status(db).warnings
    loads = {"namespace": lambda s: json.loads(s, object_hook=lambda d: SimpleNamespace(**d)),
             "int_as_float": lambda s: json.loads(s, parse_int=float),
             "float_as_str": lambda s: json.loads(s, parse_float=str),
             "decimal": lambda s: json.loads(s, parse_float=Decimal, parse_int=Decimal)}[how]
    snap_before = db.execute("SELECT snapshot::text FROM audit._install ORDER BY installed_at DESC LIMIT 1").fetchone()
    from psycopg.types.json import _JsonLoader
    old = _JsonLoader._loads
    set_json_loads(loads)
    wrong = []
    theirs = connect()
    try:
        for name, fn in [("install", lambda: install(theirs)), ("status", lambda: status(theirs)),
                         ("record", lambda: record(theirs, "t103.c3x", payload={"a": 1})),
                         ("seal", lambda: seal(theirs)),
                         ("track", lambda: (db.execute("CREATE TABLE public.t103_tab (id int PRIMARY KEY)"),
                                            enable_tracking(theirs, "public.t103_tab", baseline=True))),
                         ("tracked", lambda: tracked_tables(theirs)), ("seal_status", lambda: seal_status(theirs))]:
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                wrong.append(f"{name}: {first_error(e)}")  # any refusal is wrong here: nothing was wrong
        wrong += verdicts(theirs, db, "c3")
    finally:
        _JsonLoader._loads = old
    after = status(db).problems + status(db).warnings
    snap_after = db.execute("SELECT snapshot::text FROM audit._install ORDER BY installed_at DESC LIMIT 1").fetchone()
    assert wrong == [], wrong
    assert after == before, f"status after the install under the caller's json loads: {after}"
    assert json.loads(snap_after[0]) == json.loads(snap_before[0]) if snap_before and snap_after else True


def test_c4_global_typeinfo_registrations(db, connect, clean, psycopg_globals):
    """Attack: after import, the application registers globally (context None): hstore, a composite, a
    multirange, a domain over int8 and its array; plus a TypeInfo named 'text' pointing at int8.
    Safe: every answer as on a plain connection; verdicts hold."""
    from psycopg.types import TypeInfo
    from psycopg.types.composite import CompositeInfo, register_composite
    from psycopg.types.hstore import register_hstore
    from psycopg.types.multirange import MultirangeInfo, register_multirange
    db.execute("CREATE EXTENSION IF NOT EXISTS hstore")
    db.execute("CREATE TYPE public.t103_comp AS (a int8, b text); CREATE DOMAIN public.t103_dom AS int8")
    at = _setup(db)
    want = answers(connect(), at)
    register_hstore(TypeInfo.fetch(db, "hstore"))
    register_composite(CompositeInfo.fetch(db, "public.t103_comp"))
    register_multirange(MultirangeInfo.fetch(db, "int8multirange"))
    TypeInfo.fetch(db, "public.t103_dom").register()
    psycopg.adapters.types.add(TypeInfo("text", 20, 1016))
    psycopg.adapters.types.add(TypeInfo("jsonb", 25, 1009))
    wrong = []
    theirs = connect()
    try:
        got = answers(theirs, at)
        if got != want:
            wrong.append(f"answered {[(k, got[k], want[k]) for k in got if got[k] != want[k]]}")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(first_error(e))
    wrong += verdicts(theirs, db, "c")
    db.execute("DROP EXTENSION hstore")
    assert wrong == [], wrong


def test_c5_prepared_dict_rows_client_cursor_in_a_pipeline(db, connect, clean):
    """Attack: a connection with prepare_threshold=0, row_factory=dict_row, ClientCursor as its cursor
    factory, per-connection loaders for int8 / timestamptz / bool; every function run inside
    conn.pipeline(), then the same after the application deallocates every prepared statement behind
    psycopg's back (DEALLOCATE ALL sent raw). Safe (docs/python.md: 'A connection that prepares every
    statement works as any other. In pipeline mode the wrappers sync first and answer'): answers as
    plain, or a clear refusal; verdicts hold."""
    from psycopg.rows import dict_row
    at = _setup(db)
    want = answers(connect(), at)
    theirs = connect(prepare_threshold=0, row_factory=dict_row, cursor_factory=psycopg.ClientCursor)
    for t in ("int8", "timestamptz", "bool"):
        theirs.adapters.register_loader(t, _AsStr)
    wrong = []
    for phase in ("pipeline", "deallocated"):
        try:
            if phase == "pipeline":
                with theirs.pipeline():
                    got = answers(theirs, at)
            else:
                theirs.pgconn.exec_(b"DEALLOCATE ALL")
                got = answers(theirs, at)
            if got != want:
                wrong.append(f"{phase}: {[(k, got[k], want[k]) for k in got if got[k] != want[k]]}")
        except Exception as e:  # noqa: BLE001
            if not clear_refusal(e):
                wrong.append(f"{phase}: {first_error(e)}")
            with suppress(Exception):
                theirs.rollback()
    wrong += verdicts(theirs, db, "c")
    assert wrong == [], wrong


def test_c6_sync_pipeline_writes_record_seal_baseline(db, connect, clean):
    """Attack: inside conn.pipeline() on a prepare-everything connection: record twice (one
    best_effort), seal, enable_tracking with a baseline, disable_tracking. Safe: each stored once, as
    given, the baseline taken, verdicts hold; or refused clearly with nothing half written."""
    honest_chain(db, "c6", 1)
    db.execute("CREATE TABLE public.t103_tab (id int PRIMARY KEY, v int); INSERT INTO public.t103_tab VALUES (1, 1)")
    theirs = connect(prepare_threshold=0)
    err = None
    try:
        with theirs.pipeline():
            record(theirs, "t103.c6x", payload={"a": 1})
            record(theirs, "t103.c6y", payload={"a": 2}, best_effort=True)
            seal(theirs)
            enable_tracking(theirs, "public.t103_tab", baseline=True)
            gone = disable_tracking(theirs, "public.t103_tab")
    except Exception as e:  # noqa: BLE001
        err = e
    assert err is None or clear_refusal(err), first_error(err)
    got = db.execute("SELECT kind, payload::text FROM audit.events WHERE kind IN ('t103.c6x', 't103.c6y',"
                     " 'public.t103_tab.baseline') ORDER BY kind").fetchall()
    if err is None:
        assert gone is True
        assert got == [("public.t103_tab.baseline", got[0][1]), ("t103.c6x", '{"a": 1}'), ("t103.c6y", '{"a": 2}')]
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("trick", ["dict_rows_prepared_loaders", "pipeline", "json_decimal_global",
                                   "raw_cursor_binary"])
def test_c7_aio_with_the_same_tricks(db, clean, psycopg_globals, trick):
    """Attack: an AsyncConnection with one of: dict_row + prepare_threshold=0 + its own int8, text,
    timestamptz, date and bool loaders; every call inside conn.pipeline(); set_json_loads (Decimal)
    set globally after import; AsyncRawCursor as factory with binary loaders. Safe: every aio function
    answers as the sync API on a plain connection (docs/python.md: 'every function that takes a
    connection (sync and aio ...) answers and writes as on a plain connection')."""
    from psycopg.rows import dict_row
    at = _setup(db)
    want = answers(db, at)
    want.pop("status")
    i = db.info
    if trick == "json_decimal_global":
        set_json_loads(lambda s: json.loads(s, parse_float=Decimal))
        want = answers(psycopg.connect(host=i.host, port=i.port, dbname=i.dbname, user=i.user, autocommit=True), at)
        want.pop("status")

    async def go():
        kw = {}
        if trick == "dict_rows_prepared_loaders":
            kw = {"row_factory": dict_row, "prepare_threshold": 0}
        if trick == "raw_cursor_binary":
            kw = {"cursor_factory": psycopg.AsyncRawCursor}
        conn = await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user=i.user,
                                                     autocommit=True, **kw)
        if trick == "dict_rows_prepared_loaders":
            for t in ("int8", "text", "timestamptz", "date", "bool"):
                conn.adapters.register_loader(t, _AsStr)
        try:
            async def body():
                j = lambda v: json.dumps(v, default=str, sort_keys=True)  # noqa: E731
                out = {}
                c = await aio.count_events(conn, by_kind_prefix=["t103."])
                out["count"] = (c.count, j(c.by_kind_prefix))
                evs = await aio.list_events(conn, kind_prefix="t103.")
                out["list"] = sorted((e.kind, e.seq, e.tenant_id, e.db_role, str(e.occurred_at.timestamp()), e.txid,
                                      str(e.id), j(e.payload), e.origin) for e in evs)
                out["history"] = [(e.kind, e.seq, j(e.row_after), j(e.changed))
                                  for e in await aio.row_history(conn, "public.t103_tab", "1")]
                st = await aio.row_state_as_of(conn, "public.t103_tab", "1", at)
                out["state"] = (st.state, j(st.image))
                out["as_of"] = j(await aio.row_as_of(conn, "public.t103_tab", "1", at))
                out["tracked"] = sorted((t.table_name, t.exclude_columns, t.redact_columns)
                                        for t in await aio.tracked_tables(conn) if t.table_name.startswith("public.t103"))
                ss = await aio.seal_status(conn)
                out["seal_status"] = (type(ss.pending).__name__, ss.pending, ss.quarantined)
                out["monthly"] = [(m.month, m.count, j(m.by_kind_prefix)) for m in
                                  await aio.monthly_event_counts(conn, month_count=2, by_kind_prefix=["t103."])]
                pp = await aio.preview_prune(conn, timedelta(days=3650))
                out["prune"] = (pp.events, pp.first_seq, pp.last_seq, pp.batches)
                async with aio.audit_context(conn, actor_id="u%s", tenant_id="t%s"):
                    ev = await aio.record(conn, "t103.c7x", payload={"q": "%s", "f": 0.1, "n": 2})
                sealed = (await aio.seal(conn)).sealed
                return out, ev.kind, type(sealed).__name__
            if trick == "pipeline":
                async with conn.pipeline():
                    return await body()
            return await body()
        finally:
            await conn.close()

    try:
        got, kind, sealed = asyncio.run(go())
    except Exception as e:  # noqa: BLE001
        assert clear_refusal(e), first_error(e)
        assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't103.c7x'").fetchone() == (0,)
        return
    stored = db.execute("SELECT tenant_id, actor_id, payload::text FROM audit.events WHERE kind = 't103.c7x'").fetchall()
    assert {k: got[k] for k in got if got[k] != want[k]} == {}, {k: want[k] for k in got if got[k] != want[k]}
    assert (kind, sealed, stored) == ("t103.c7x", "int", [("t%s", "u%s", '{"f": 0.1, "n": 2, "q": "%s"}')])
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("api", ["sync", "aio"])
def test_c8_a_raw_json_loader_on_the_connection_and_row_as_of(db, connect, clean, api):
    """Attack: the application reads JSON raw on its connection, set_json_loads(lambda b: bytes(b).decode(),
    conn) (to pass it through unparsed, as an HTTP layer might). Safe (docs/python.md: 'JSON values the
    package returns to you are read by your connection's JSON loader'): every function returns what that
    loader makes of its JSON values, or refuses clearly; none crashes with a non-package exception.
    row_as_of is the one returning a JSON value alone."""
    at = _setup(db)
    raw = lambda b: bytes(b).decode()  # noqa: E731
    got = {}
    if api == "sync":
        theirs = connect()
        set_json_loads(raw, theirs)
        calls = {"list_events": lambda: list_events(theirs, kind_prefix="t103.")[0].payload,
                 "row_state_as_of": lambda: row_state_as_of(theirs, "public.t103_tab", "1", at).image,
                 "row_as_of": lambda: row_as_of(theirs, "public.t103_tab", "1", at),
                 "row_history": lambda: row_history(theirs, "public.t103_tab", "1")[0].row_after,
                 "count_events": lambda: count_events(theirs, by_kind_prefix=["t103."]).by_kind_prefix}
        for name, fn in calls.items():
            try:
                got[name] = type(fn()).__name__
            except Exception as e:  # noqa: BLE001
                got[name] = "refused" if clear_refusal(e) else f"crashed: {first_error(e)}"
    else:
        i = db.info

        async def go():
            conn = await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user=i.user,
                                                         autocommit=True)
            set_json_loads(raw, conn)
            try:
                for name, fn in {"row_as_of": lambda: aio.row_as_of(conn, "public.t103_tab", "1", at),
                                 "row_state_as_of": lambda: aio.row_state_as_of(conn, "public.t103_tab", "1", at)
                                 }.items():
                    try:
                        got[name] = type(await fn()).__name__
                    except Exception as e:  # noqa: BLE001
                        got[name] = "refused" if clear_refusal(e) else f"crashed: {first_error(e)}"
            finally:
                await conn.close()
        asyncio.run(go())
    assert [f"{k}: {v}" for k, v in got.items() if v.startswith("crashed")] == [], got


# ================================ T: times ================================

@pytest.mark.parametrize("setting", ["TimeZone=<+0545>-05:45", "TimeZone=Asia/Kathmandu", "TimeZone=Etc/GMT+12",
                                     "TimeZone=UTC+14", "TimeZone=America/St_Johns", "DateStyle=ISO,DMY",
                                     "TimeZone=posix/Australia/Lord_Howe", "TimeZone=-11:30",
                                     "IntervalStyle=iso_8601", "DateStyle=SQL,DMY", "DateStyle=German",
                                     "client_encoding=LATIN1", "client_encoding=SQL_ASCII"])
def test_t1_odd_time_settings_on_the_callers_connection(db, connect, clean, setting):
    """Attack: the caller's connection has an odd TimeZone (a POSIX offset, a 45-minute zone, Etc's
    inverted sign, a bare offset) or DateStyle 'ISO, DMY'. Safe: list_events' occurred_at is the same
    instant as on a plain connection, its `since` window the same, row_state_as_of the same, and both
    verdicts hold (honest passes, tampered fails)."""
    at = _setup(db)
    since = datetime.now(timezone.utc) - timedelta(minutes=30)
    plain = connect()
    want = (sorted((e.seq, e.occurred_at) for e in list_events(plain, kind_prefix="t103.", since=since)),
            row_state_as_of(plain, "public.t103_tab", "1", at).state)
    theirs = connect(options="-c " + setting.replace(" ", "\\ "))
    try:
        got = (sorted((e.seq, e.occurred_at) for e in list_events(theirs, kind_prefix="t103.", since=since)),
               row_state_as_of(theirs, "public.t103_tab", "1", at).state)
    except UnsupportedSession:  # refused before reading: clear (docs/python.md)
        got = want
    assert got == want
    assert verdicts(theirs, db, "c") == []


@pytest.mark.parametrize("value", ["infinity", "-infinity", "10000-01-01 00:00:00+00", "0044-03-15 12:00:00+00 BC",
                                   "0001-01-01 00:00:00+14", "294276-12-31 23:59:59+00"])
@pytest.mark.parametrize("loader", ["own", "global_timestamptz_loader"])
def test_t2_occurred_at_python_cannot_hold(db, connect, clean, psycopg_globals, value, loader):
    """Attack: a superuser sets a sealed event's occurred_at to a time Python's datetime cannot hold
    (infinity, past 9999, BC), with or without a global timestamptz loader registered after import.
    Safe (chain._TimeOrText: 'a hand-made change, which must get a verdict, not raise DataError'): both
    verifiers say not ok, naming the block; neither raises; the pending count unchanged."""
    honest_chain(db, "t2")
    if loader != "own":
        psycopg.adapters.register_loader("timestamptz", _AsStr)
    tamper(db, f"UPDATE audit.event_log SET occurred_at = '{value}' WHERE kind = 't103.t2' AND payload->>'i' = '1'")
    theirs = connect(options="-c TimeZone=Asia/Kathmandu")
    try:
        v = verify_chain(theirs)
        py = (v.ok, v.bad_block is not None)
    except Exception as e:  # noqa: BLE001
        py = first_error(e)
    sql_ok = db.execute("SELECT ok FROM audit.verify()").fetchone()[0]
    assert (py, sql_ok) == ((False, True), False)


# ================================ B: baseline proofs ================================

def _baselines(db, table: str) -> list:
    return db.execute("SELECT db_role FROM audit.events WHERE kind = %s", [f"public.{table}.baseline"]).fetchall()


def _owned_by(db, table: str, owner: str) -> None:
    db.execute(f'CREATE TABLE public."{table}" (id int PRIMARY KEY, v int); INSERT INTO public."{table}" VALUES (1, 1),'
               f' (2, 2); GRANT UPDATE ON public."{table}" TO PUBLIC; GRANT SELECT ON public."{table}" TO audit_sandbox')
    db.execute(f'ALTER TABLE public."{table}" OWNER TO {owner}')
    enable_tracking(db, f'public."{table}"')


@pytest.fixture
def roles(db, connect):
    """t103_mo: owns tables, a maintainer; t103_x: a maintainer owning nothing; app_maintainer a member of both."""
    db.execute("CREATE ROLE t103_mo IN ROLE audit_maintainer; CREATE ROLE t103_x LOGIN IN ROLE audit_maintainer;"
               " GRANT t103_mo, t103_x TO app_maintainer; GRANT CREATE ON SCHEMA public TO t103_mo, t103_x")
    yield db
    with suppress(psycopg.Error):
        db.execute("RESET ROLE")
    for t in ("t103_b", "T103_Bq"):
        db.execute(f'DROP TABLE IF EXISTS public."{t}" CASCADE')
    for f in ("t103_prove()", "t103_take()", "t103_both()"):
        with suppress(psycopg.Error):
            db.execute(f"DROP FUNCTION IF EXISTS public.{f}")
    drop_made_under(db, "t103_")
    for r in ("T103_MO", "T103_Mo"):
        with suppress(psycopg.Error):
            db.execute(f'DROP OWNED BY "{r}"')
        db.execute(f'DROP ROLE IF EXISTS "{r}"')


def _run(conn, statements: list[str]) -> str | None:
    """BEGIN; each statement; COMMIT when all ran, else ROLLBACK; the first failure's SQLSTATE."""
    conn.execute("BEGIN")
    st = None
    try:
        for s in statements:
            try:
                conn.execute(s)
            except psycopg.Error as e:
                st = e.sqlstate or "?"
                break
    finally:
        conn.execute("COMMIT" if st is None else "ROLLBACK")
    return st


PROVE = "SELECT audit._prove_owner('public.t103_b'::regclass, md5(1::text)::uuid)"
TAKE = "SELECT audit_capture._take_baseline('public.t103_b'::regclass, md5(1::text)::uuid)"
LOCK = "LOCK public.t103_b IN SHARE MODE"


def test_b1_a_function_whose_set_clause_sets_the_role(roles, connect):
    """Attack: public.t103_prove() (SECURITY INVOKER, SET role = t103_mo) proves as the owner; back in
    the caller's role (app_maintainer, owning nothing) the baseline is taken; and the other way: the
    proof made under SET LOCAL ROLE t103_mo, the baseline taken inside t103_take() whose SET clause sets
    role t103_x. Safe (docs/capture.md: 'The proof must be the acting role's, the one the baseline's
    events name as db_role'): 42501 both ways; a function that sets role t103_mo and does both is the
    legit path, its events naming t103_mo."""
    db = roles
    _owned_by(db, "t103_b", "t103_mo")
    db.execute(f"CREATE FUNCTION public.t103_prove() RETURNS void LANGUAGE sql SET role = 't103_mo' AS $$ {PROVE} $$;"
               f" CREATE FUNCTION public.t103_take() RETURNS bigint LANGUAGE sql SET role = 't103_x' AS $$ {TAKE} $$;"
               f" CREATE FUNCTION public.t103_both() RETURNS bigint LANGUAGE plpgsql SET role = 't103_mo' AS $$"
               f" BEGIN PERFORM audit._prove_owner('public.t103_b'::regclass, md5(1::text)::uuid);"
               f" RETURN audit_capture._take_baseline('public.t103_b'::regclass, md5(1::text)::uuid); END $$;"
               " GRANT EXECUTE ON FUNCTION public.t103_prove(), public.t103_take(), public.t103_both() TO PUBLIC")
    m = connect("app_maintainer")
    a = _run(m, [LOCK, "SELECT public.t103_prove()", TAKE])
    b = _run(m, [LOCK, "SET LOCAL ROLE t103_mo", PROVE, "SELECT public.t103_take()"])
    assert (a, b, _baselines(db, "t103_b")) == ("42501", "42501", [])
    c = _run(m, [LOCK, "SELECT public.t103_both()"])
    assert (c, _baselines(db, "t103_b")) == (None, [("t103_mo",), ("t103_mo",)])


def test_b2_proof_in_one_session_baseline_in_another_of_the_same_role(roles, connect):
    """Attack: two sessions of t103_mo's (app_maintainer under SET ROLE): one proves and keeps its
    transaction open; the other, without a proof of its own, takes the baseline. Safe: 42501 (a proof
    is its transaction's)."""
    db = roles
    _owned_by(db, "t103_b", "t103_mo")
    one, two = connect("app_maintainer"), connect("app_maintainer")
    one.execute("BEGIN; SET LOCAL ROLE t103_mo")
    try:
        one.execute(PROVE)
        st = _run(two, ["SET LOCAL ROLE t103_mo", LOCK, TAKE])
    finally:
        one.execute("ROLLBACK")
    assert (st, _baselines(db, "t103_b")) == ("42501", [])


@pytest.mark.parametrize("between", ["ALTER TABLE public.t103_b OWNER TO t103_x", "REVOKE audit_maintainer FROM t103_mo"])
def test_b3_table_given_away_between_proof_and_baseline(roles, connect, between):
    """Attack: t103_mo proves (before locking), the table is then given to t103_x, or t103_mo loses the
    maintainer role (committed by the superuser), and t103_mo locks and takes the baseline with the
    proof it made before. Safe (docs/capture.md: 'the caller proved, with its own rights, that it owns
    the table'; 'a maintainer that may only write the table ... is refused with 42501'): 42501 (it no
    longer owns it, or is no maintainer), or the events name the table's owner."""
    db = roles
    _owned_by(db, "t103_b", "t103_mo")
    m = connect("app_maintainer")
    m.execute("BEGIN")
    st = None
    try:
        m.execute("SET LOCAL ROLE t103_mo")
        m.execute(PROVE)
        db.execute(between)
        try:
            m.execute(LOCK)
            m.execute(TAKE)
        except psycopg.Error as e:
            st = e.sqlstate
    finally:
        m.execute("COMMIT" if st is None else "ROLLBACK")
    who = _baselines(db, "t103_b")
    if "REVOKE" in between:
        db.execute("GRANT audit_maintainer TO t103_mo")
        assert st == "42501", f"taken ({st}) by a role no longer a maintainer, events name {who}"
    assert st == "42501" or {r for (r,) in who} <= {"t103_x"}, f"taken ({st}), events name {who}"


def test_b4_owner_renamed_and_a_non_owner_renamed_to_its_name(roles, connect):
    """Attack: app_maintainer, under SET LOCAL ROLE t103_mo, proves; the superuser then renames t103_mo
    to t103_mo_old and t103_x (owning nothing) to t103_mo; the session sets role t103_mo again (now the
    non-owner) and takes the baseline: the proof's role name and the acting role's name are equal,
    the roles are not. Safe (docs/capture.md: 'The proof must be the acting role's'): 42501."""
    db = roles
    _owned_by(db, "t103_b", "t103_mo")
    m = connect("app_maintainer")
    m.execute("BEGIN")
    st = None
    try:
        m.execute(LOCK)
        m.execute("SET LOCAL ROLE t103_mo")
        m.execute(PROVE)
        db.execute("ALTER ROLE t103_mo RENAME TO t103_mo_old; ALTER ROLE t103_x RENAME TO t103_mo")
        try:
            m.execute("SELECT count(*) FROM pg_catalog.pg_database")  # a new lock: the session sees the renames
            m.execute("SET LOCAL ROLE t103_mo")
            acting = m.execute("SELECT current_user::text, (SELECT relowner::regrole::text FROM pg_class"
                               " WHERE oid = 'public.t103_b'::regclass)").fetchone()
            m.execute(TAKE)
        except psycopg.Error as e:
            st = e.sqlstate
    finally:
        m.execute("COMMIT" if st is None else "ROLLBACK")
    db.execute("ALTER ROLE t103_mo RENAME TO t103_x; ALTER ROLE t103_mo_old RENAME TO t103_mo")
    who = _baselines(db, "t103_b")
    assert st == "42501" or (acting[0] == acting[1] and who == [(acting[0],)] * 2), \
        f"taken as {acting} (current_user, table owner) with the proof made as t103_mo before the renames: events name {who}"


def test_b5_owner_renamed_after_its_proof_events_name_a_stale_role(roles, connect):
    """Attack: under SET LOCAL ROLE t103_mo the session proves; the superuser renames t103_mo to
    t103_mo_old and creates a new t103_mo (a maintainer owning nothing); the session takes the
    baseline without setting its role again. current_setting('role') still says t103_mo (the name it
    was set with), current_user says t103_mo_old. Safe: refused, or the events name the role that
    acted and proved (t103_mo_old), not the new t103_mo that owns nothing (docs/capture.md: 'the one
    the baseline's events name as db_role')."""
    db = roles
    _owned_by(db, "t103_b", "t103_mo")
    m = connect("app_maintainer")
    m.execute("BEGIN")
    st = None
    try:
        m.execute(LOCK)
        m.execute("SET LOCAL ROLE t103_mo")
        m.execute(PROVE)
        db.execute("ALTER ROLE t103_mo RENAME TO t103_mo_old; CREATE ROLE t103_mo IN ROLE audit_maintainer")
        try:
            m.execute(TAKE)
        except psycopg.Error as e:
            st = e.sqlstate
    finally:
        m.execute("COMMIT" if st is None else "ROLLBACK")
    who = _baselines(db, "t103_b")
    assert st is not None or who == [("t103_mo_old",), ("t103_mo_old",)], f"taken, events name {who}"


def test_b6_role_dropped_and_recreated_under_the_owners_name(roles, connect):
    """Attack: t103_mo proves; then (another session) the table is given to t103_x, t103_mo is dropped
    and re-created (new OID, a maintainer owning nothing); the first session takes the baseline. Safe:
    refused (42501 or another clear error); no baseline naming the new t103_mo."""
    db = roles
    _owned_by(db, "t103_b", "t103_mo")
    m = connect("app_maintainer")
    m.execute("BEGIN")
    st = None
    try:
        m.execute("SET LOCAL ROLE t103_mo")
        m.execute(PROVE)
        db.execute("ALTER TABLE public.t103_b OWNER TO t103_x; REVOKE CREATE ON SCHEMA public FROM t103_mo;"
                   " DROP ROLE t103_mo; CREATE ROLE t103_mo IN ROLE audit_maintainer; GRANT t103_mo TO app_maintainer")
        try:
            m.execute(LOCK)
            m.execute(TAKE)
        except psycopg.Error as e:
            st = e.sqlstate
    finally:
        m.execute("COMMIT" if st is None else "ROLLBACK")
    assert st is not None and _baselines(db, "t103_b") == [], f"taken ({st}): {_baselines(db, 't103_b')}"


def test_b7_set_config_role_case_folded_names(roles, connect):
    """Attack: roles "T103_MO" (owns the table) and t103_mo (owns nothing), both maintainers; the
    session proves as "T103_MO" via set_config('role', 'T103_MO', true), then set_config('role',
    't103_mo', true), and takes the baseline; the control: proves and takes as "T103_MO" via
    set_config alone. Safe: the first 42501, the control taken with its events naming T103_MO."""
    db = roles
    db.execute('CREATE ROLE "T103_MO" IN ROLE audit_maintainer; GRANT "T103_MO" TO app_maintainer')
    _owned_by(db, "t103_b", '"T103_MO"')
    m = connect("app_maintainer")
    # the proof and its use in one message: a proof serves the statement that made it (trial 106)
    a = _run(m, [LOCK, f"SELECT set_config('role', 'T103_MO', true); {PROVE}; SELECT set_config('role', 't103_mo', true); {TAKE}"])
    assert (a, _baselines(db, "t103_b")) == ("42501", [])
    b = _run(m, [LOCK, f"SELECT set_config('role', 'T103_MO', true); {PROVE}; {TAKE}"])
    assert (b, _baselines(db, "t103_b")) == (None, [("T103_MO",), ("T103_MO",)])


@pytest.mark.parametrize("inside", ["SET LOCAL ROLE t103_mo", "RESET ROLE", "SELECT set_config('role', 't103_mo', true)",
                                    "SELECT set_config('role', 'none', true)"])
def test_b8_role_changes_inside_the_owners_security_definer_function(roles, connect, inside):
    """Attack: t103_mo's SECURITY DEFINER function, called by t103_x (owns nothing), changes the role GUC
    inside itself (SET LOCAL ROLE, RESET ROLE, set_config('role', ...)) so that the acting role would read
    as the proof's, then proves and takes the baseline. Safe (docs/capture.md, trial 102 b5: 'a SECURITY
    DEFINER function of the owner's that takes a baseline in another role's session' is refused): refused,
    no baseline."""
    db = roles
    _owned_by(db, "t103_b", "t103_mo")
    db.execute("SET ROLE t103_mo")
    try:
        db.execute(f"""CREATE FUNCTION public.t103_both() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
                       SET search_path = pg_catalog AS $$ BEGIN
                         EXECUTE {psycopg.sql.quote(inside)};
                         PERFORM audit._prove_owner('public.t103_b'::regclass, md5(1::text)::uuid);
                         RETURN audit_capture._take_baseline('public.t103_b'::regclass, md5(1::text)::uuid); END $$;
                       GRANT EXECUTE ON FUNCTION public.t103_both() TO t103_x""")
    finally:
        db.execute("RESET ROLE")
    st = _run(connect("t103_x"), [LOCK, "SELECT public.t103_both()"])
    assert st is not None and _baselines(db, "t103_b") == [], f"taken ({st}): {_baselines(db, 't103_b')}"
    assert st != "PA005", "refused for the lock, not for the role: the attack was not tried"


def test_b9_control_an_owner_renamed_before_its_proof_takes_its_baseline(roles, connect):
    """Control: t103_mo is renamed t103_mo2 before anything; app_maintainer sets role t103_mo2, and takes
    the baseline through enable_tracking(baseline=True). Safe: taken, its events naming t103_mo2 (a
    rename must not make the legit path fail)."""
    db = roles
    db.execute('CREATE TABLE public.t103_b (id int PRIMARY KEY); INSERT INTO public.t103_b VALUES (1);'
               " ALTER TABLE public.t103_b OWNER TO t103_mo; ALTER ROLE t103_mo RENAME TO t103_mo2")
    m = connect("app_maintainer")
    m.execute("SET ROLE t103_mo2")
    err = None
    try:
        enable_tracking(m, "public.t103_b", baseline=True)
    except Exception as e:  # noqa: BLE001
        err = first_error(e)
    finally:
        m.execute("RESET ROLE")
        db.execute("ALTER ROLE t103_mo2 RENAME TO t103_mo")
    assert (err, _baselines(db, "t103_b")) == (None, [("t103_mo2",)])


@pytest.mark.parametrize("call", ["record", "record_best_effort", "seal", "status", "enable_tracking", "count_events",
                                  "list_events", "verify_chain"])
def test_c9_a_failed_transaction_of_the_callers(db, connect, clean, call):
    """Attack: autocommit off, the caller's transaction has failed (a statement errored) and is left so.
    Safe: the call refuses clearly (or, record best_effort, returns None), nothing is written, and the
    caller's failed transaction is not ended behind its back into a new one that commits."""
    db.execute("CREATE TABLE public.t103_tab (id int PRIMARY KEY)")
    honest_chain(db, "c9", 1)
    theirs = connect(autocommit=False)
    before = db.execute("SELECT count(*) FROM audit.events").fetchone()
    outcome = None
    try:
        with suppress(psycopg.Error):
            theirs.execute("SELECT 1/0")
        fn = {"record": lambda: record(theirs, "t103.c9x"),
              "record_best_effort": lambda: record(theirs, "t103.c9x", best_effort=True),
              "seal": lambda: seal(theirs), "status": lambda: status(theirs),
              "enable_tracking": lambda: enable_tracking(theirs, "public.t103_tab"),
              "count_events": lambda: count_events(theirs), "list_events": lambda: list_events(theirs),
              "verify_chain": lambda: verify_chain(theirs)}[call]
        try:
            r = fn()
            outcome = f"answered {type(r).__name__}"
        except Exception as e:  # noqa: BLE001
            outcome = "refused" if clear_refusal(e) else f"crashed: {first_error(e)}"
        theirs.execute("INSERT INTO public.t103_tab VALUES (5)") if theirs.info.transaction_status == 0 else None
    except psycopg.Error:
        pass
    finally:
        with suppress(psycopg.Error):
            theirs.rollback()
    assert not outcome.startswith("crashed"), outcome
    assert call != "record" or outcome == "refused", outcome
    assert db.execute("SELECT count(*) FROM audit.events").fetchone() == before
    assert db.execute("SELECT count(*) FROM public.t103_tab").fetchone() == (0,)


@pytest.mark.parametrize("setting", ["bytea_output=escape", "standard_conforming_strings=off", "extra_float_digits=-15",
                                     "timezone_abbreviations=India", "lc_numeric=C", "intervalstyle=postgres_verbose"])
def test_t3_other_output_settings_before_every_function(db, connect, clean, setting):
    """Attack: the caller's session prints bytea as escape (block hashes, line hashes), strings without
    standard conforming escapes, floats with fewer digits, or other output settings. Safe: every answer
    as on a plain connection (or UnsupportedSession, refused before reading), both verdicts hold."""
    at = _setup(db)
    want = answers(connect(), at)
    theirs = connect(options=f"-c {setting}")
    try:
        got = answers(theirs, at)
    except UnsupportedSession:
        got = want
    assert {k: got[k] for k in got if got[k] != want[k]} == {}
    assert verdicts(theirs, db, "c") == []


@pytest.mark.parametrize("api", ["sync", "aio"])
def test_c10_secrets_under_global_and_connection_loaders(db, connect, clean, psycopg_globals, api):
    """Attack: after import, text and bytea loaders of the application's registered globally, the
    connection reading dict rows through a client cursor and preparing everything, an int8 loader of
    its own; then the secret functions round trip a value with quotes, percent signs and non-ASCII.
    Safe (docs/python.md: 'checkpoints, archives and secrets included ... answers and writes as on a
    plain connection'): the value read back is the value put, list_secrets names it, and its events hold."""
    import os

    from psycopg.rows import dict_row

    from pgaudit_py import secrets
    key = os.urandom(32).hex()
    value = "p%s'w\"d é %(x)s"
    plain = connect("app_secrets")
    with secrets.use_master_key(plain, None, new_key=key):
        secrets.add_master_key(plain)
    psycopg.adapters.register_loader("text", _AsStr)
    psycopg.adapters.register_loader("bytea", _AsStr)
    i = db.info
    if api == "sync":
        theirs = connect("app_secrets", prepare_threshold=0, row_factory=dict_row, cursor_factory=psycopg.ClientCursor)
        theirs.adapters.register_loader("int8", _AsStr)
        with secrets.use_master_key(theirs, key):
            secrets.declare_secret(theirs, "t103_k", "a test key")
            secrets.put_secret(theirs, "t1", "t103_k", value)
            got = secrets.read_secret(theirs, "t1", "t103_k")
            listed = [s.key for s in secrets.list_secrets(theirs, "t1")]
    else:
        async def go():
            conn = await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user="app_secrets",
                                                         autocommit=True, prepare_threshold=0, row_factory=dict_row,
                                                         cursor_factory=psycopg.AsyncClientCursor)
            conn.adapters.register_loader("int8", _AsStr)
            try:
                async with aio.use_master_key(conn, key):
                    await aio.declare_secret(conn, "t103_k", "a test key")
                    await aio.put_secret(conn, "t1", "t103_k", value)
                    return (await aio.read_secret(conn, "t1", "t103_k"),
                            [s.key for s in await aio.list_secrets(conn, "t1")])
            finally:
                await conn.close()
        got, listed = asyncio.run(go())
    assert (got, listed) == (value, ["t103_k"])
    with secrets.use_master_key(plain, key):
        assert secrets.read_secret(plain, "t1", "t103_k") == value
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("scope", ["connection", "global"])
@pytest.mark.parametrize("how", ["namespace", "raw"])
def test_c11_every_public_function_under_an_odd_json_loader(db, connect, clean, psycopg_globals, scope, how):
    """Attack: set_json_loads with objects read as SimpleNamespace, or JSON passed through raw, on the
    connection or globally after import; then every public function of pgaudit_py. Safe (docs/python.md:
    'JSON values the package returns to you are read by your connection's JSON loader'): each returns
    what the loader makes of its JSON values, or refuses clearly; none crashes in the package's own code
    with a non-package exception; verdicts hold."""
    from pgaudit_py import (
        audit_context,
        disable_rate_limit,
        enable_rate_limit,
        prune_events,
        rate_limit,
        rate_limits,
        register_event_type,
        set_operation_limit,
    )
    at = _setup(db)
    problems_before = status(db).problems
    loads = {"namespace": lambda s: json.loads(s, object_hook=lambda d: SimpleNamespace(**d)),
             "raw": lambda b: bytes(b).decode()}[how]
    theirs = connect()
    if scope == "global":
        set_json_loads(loads)
        theirs = connect()
    else:
        set_json_loads(loads, theirs)

    def in_context():
        with audit_context(theirs, actor_id="u1", tenant_id="t1"):
            return record(theirs, "t103.c11ctx", payload={"a": {"b": 1}})

    calls = {
        "record": lambda: record(theirs, "t103.c11", payload={"a": {"b": [1, 2]}}),
        "record_best_effort": lambda: record(theirs, "t103.c11b", payload={"a": 1}, best_effort=True),
        "audit_context": in_context,
        "list_events": lambda: list_events(theirs, kind_prefix="t103."),
        "count_events": lambda: count_events(theirs, by_kind_prefix=["t103."]),
        "monthly_event_counts": lambda: monthly_event_counts(theirs, by_kind_prefix=["t103."]),
        "register_event_type": lambda: register_event_type(theirs, "t103.typed", {"type": "object",
                                                                                  "properties": {"a": {"type": "integer"}}}),
        "seal": lambda: seal(theirs), "seal_status": lambda: seal_status(theirs), "status": lambda: status(theirs),
        "row_history": lambda: row_history(theirs, "public.t103_tab", "1"),
        "row_state_as_of": lambda: row_state_as_of(theirs, "public.t103_tab", "1", at),
        "row_as_of": lambda: row_as_of(theirs, "public.t103_tab", "1", at),
        "tracked_tables": lambda: tracked_tables(theirs),
        "enable_tracking": lambda: enable_tracking(theirs, "public.t103_tab", exclude_columns=["n"], baseline=True),
        "enable_rate_limit": lambda: enable_rate_limit(theirs, "public.t103_tab"),
        "rate_limits": lambda: rate_limits(theirs),
        "set_operation_limit": lambda: set_operation_limit(theirs, "t103.op", 5),
        "rate_limit": lambda: rate_limit(theirs, "t103.op", "k1", 5),
        "disable_rate_limit": lambda: disable_rate_limit(theirs, "public.t103_tab"),
        "preview_prune": lambda: preview_prune(theirs, timedelta(days=3650)),
        "prune_events": lambda: prune_events(theirs, timedelta(days=3650)),
        "disable_tracking": lambda: disable_tracking(theirs, "public.t103_tab"),
        "install": lambda: install(theirs),
    }
    crashed = []
    for name, fn in calls.items():
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            if not clear_refusal(e):
                crashed.append(f"{name}: {first_error(e)}")
            with suppress(psycopg.Error):
                theirs.execute("ROLLBACK") if theirs.info.transaction_status else None
    crashed += verdicts(theirs, db, "c")
    from psycopg.types.json import _JsonLoader
    _JsonLoader._loads = json.loads  # the default again, to read what install left
    after = [p for p in status(connect()).problems if "changed since the last install" in p]
    assert (crashed, [p[:300] for p in after]) == ([], [p[:300] for p in problems_before
                                                       if "changed since the last install" in p])
