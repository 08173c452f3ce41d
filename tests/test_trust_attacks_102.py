"""A hundred-and-second attacker's trial: variants against the mends 5daee27 (the package's own cursors)
and e91c001 (a baseline consumes only the acting role's proofs).

Classes (test names carry the letter):
  C. the package's own cursors (session.cursor / tuples / server_cursor) against what a caller can set
     on a psycopg connection or on psycopg globally: loaders and dumpers registered on psycopg.adapters
     after the package was imported, the connection's type registry changed (a type added under a
     built-in's name, composites, enums and ranges fetched and registered), set_json_loads on the
     connection and globally (Decimal numbers from list_events), autocommit off with an open
     transaction, a notice handler that raises, a connection subclass whose cursor() is its own,
     psycopg_pool connections configured with odd loaders, and the aio API with AsyncClientCursor and
     AsyncRawCursor factories: every function answers as on a plain connection or refuses clearly,
     writes nothing half, and gives no wrong verdict.
  B. baseline proofs after e91c001: set_config('role', ...) after the proof, RESET ROLE after a proof
     made under SET LOCAL ROLE, SET SESSION AUTHORIZATION by a superuser after its proof, a SECURITY
     DEFINER wrapper of the table's owning maintainer called from another role's session, ALTER ROLE
     ... SET role, owners whose names differ in case or need quoting (a legitimate baseline must still
     be taken, named as that role), and partitions proved by different roles.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t102_; roles are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from psycopg.adapt import Loader
from psycopg.types.json import set_json_loads
from trial_helpers import (
    both_verifiers,
    drop_made_under,
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
    row_history,
    seal,
    seal_status,
    status,
    tracked_tables,
)
from pgaudit_py.chain import verify_chain


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t102") as k:
        yield k
    drop_made_under(db, "t102_")


@pytest.fixture
def clean(db):
    yield db
    drop_made_under(db, "t102_")
    for t in ("t102_tab", "t102_c3", "t102_bq", "t102_bp"):
        db.execute(f'DROP TABLE IF EXISTS public."{t}" CASCADE')


def counts(db) -> tuple[int, int]:
    return db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log)").fetchone()


def first_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def clear_refusal(e: BaseException) -> bool:
    return isinstance(e, psycopg.Error) or type(e).__module__.split(".")[0] == "pgaudit_py"


def honest_chain(db, tag: str, n: int = 3) -> None:
    for i in range(n):
        record(db, f"t102.{tag}", tenant_id="t1", payload={"i": i, "f": 1.5, "s": "abc", "big": 12345678901234567890})
        seal(db)


def tracked_table(db) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS public.t102_tab (id int PRIMARY KEY, v int)")
    db.execute("INSERT INTO public.t102_tab VALUES (1, 1) ON CONFLICT DO NOTHING")
    enable_tracking(db, "public.t102_tab")
    db.execute("UPDATE public.t102_tab SET v = v + 1 WHERE id = 1")


def answers(conn, db_tag: str) -> dict:
    """Every read the brief names, as comparable values."""
    out = {}
    out["count"] = count_events(conn, by_kind_prefix=["t102."]).count
    evs = list_events(conn, kind_prefix="t102.")
    out["list"] = sorted((e.kind, e.seq, json.dumps(e.payload, default=str, sort_keys=True)) for e in evs)
    out["history"] = [(e.kind, e.seq) for e in row_history(conn, "public.t102_tab", "1")]
    out["tracked"] = sorted((t.table_name, t.exclude_columns, t.redact_columns) for t in tracked_tables(conn)
                            if t.table_name.startswith("public.t102"))
    out["status"] = status(conn).problems
    out["pending_type"] = type(seal_status(conn).pending).__name__
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
    tamper(db, f"UPDATE audit.event_log SET payload = payload || '{{\"s\": \"abd\"}}' WHERE kind = 't102.{tag}'"
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


class _Upper(Loader):
    def load(self, data):
        return bytes(data).decode().upper()


class _NoItems(Loader):
    def load(self, data):
        return []


# ================================ C: the package's own cursors ================================

class _NaiveUtc(Loader):
    """An application's loader: timestamps as naive UTC datetimes (a common ORM habit)."""

    def load(self, data):
        from psycopg.types.datetime import TimestamptzLoader
        return TimestamptzLoader(1184).load(data).astimezone(timezone.utc).replace(tzinfo=None)


@pytest.mark.parametrize("which", ["int8", "text", "timestamptz", "timestamptz_naive", "text[]", "bytea"])
def test_c1_global_loaders_after_import(db, connect, clean, psycopg_globals, which):
    """Attack: after the package was imported the application registers, on psycopg.adapters (globally),
    a loader of its own for a built-in type; then opens a connection. Safe: the package reads with
    psycopg's adapters as they were at import (docs/python.md), so every answer and both verdicts
    are as on a plain connection, or it refuses clearly."""
    honest_chain(db, "c1")
    tracked_table(db)
    want = answers(connect(), "c1")
    oid = db.execute("SELECT %s::regtype::oid", [which.removesuffix("_naive")]).fetchone()[0]
    before = psycopg.adapters._loaders[0].get(oid)
    loader = (_NaiveUtc if which.endswith("_naive") else _NoItems if which.endswith("[]")
              else _Upper if which == "text" else _AsStr)
    psycopg.adapters.register_loader(oid, loader)
    wrong = []
    try:
        theirs = connect()
        try:
            got = answers(theirs, "c1")
            if got != want:
                wrong.append(f"answered {got}, plain {want}")
        except Exception as e:  # noqa: BLE001
            if not clear_refusal(e):
                wrong.append(first_error(e))
        wrong += verdicts(theirs, db, "c1")
    finally:
        if before is not None:
            psycopg.adapters.register_loader(oid, before)
    assert wrong == [], wrong


def test_c2_global_dumpers_after_import(db, connect, clean, psycopg_globals):
    """Attack: after import, the application registers globally a dumper for datetime that sends it
    without its zone, and str as binary. Safe: list_events' window and record's stored values are
    as on a plain connection."""
    from psycopg.types.datetime import DatetimeDumper, DatetimeNoTzDumper
    from psycopg.types.string import StrBinaryDumper, StrDumper
    honest_chain(db, "c2")
    since = datetime.now(timezone.utc) - timedelta(minutes=30)
    opts = "-c TimeZone=Pacific/Kiritimati"
    want = len(list_events(connect(options=opts), kind_prefix="t102.", since=since))
    psycopg.adapters.register_dumper(datetime, DatetimeNoTzDumper)
    psycopg.adapters.register_dumper(str, StrBinaryDumper)
    try:
        theirs = connect(options=opts)
        got = len(list_events(theirs, kind_prefix="t102.", since=since))
        ev = record(theirs, "t102.c2x", tenant_id="t9", payload={"s": "é"})
    finally:
        psycopg.adapters.register_dumper(datetime, DatetimeDumper)
        psycopg.adapters.register_dumper(str, StrDumper)
    stored = db.execute("SELECT tenant_id, payload FROM audit.events WHERE kind = 't102.c2x'").fetchall()
    assert (got, ev.kind, stored) == (want, "t102.c2x", [("t9", {"s": "é"})])


def test_c3_type_registry_and_fetched_types(db, connect, clean):
    """Attack: on the caller's connection a composite, an enum and a range are fetched and registered
    (TypeInfo.fetch + register), and a TypeInfo named 'int8' and one named 'text' are added pointing
    at other oids. Safe: every function answers as on a plain connection."""
    from psycopg.types import TypeInfo
    from psycopg.types.composite import CompositeInfo, register_composite
    from psycopg.types.enum import EnumInfo, register_enum
    from psycopg.types.range import RangeInfo, register_range
    honest_chain(db, "c3")
    tracked_table(db)
    db.execute("CREATE TYPE public.t102_comp AS (a int8, b text); CREATE TYPE public.t102_en AS ENUM ('x', 'y');"
               " CREATE TYPE public.t102_rng AS RANGE (subtype = int8)")
    want = answers(connect(), "c3")
    theirs = connect()
    register_composite(CompositeInfo.fetch(theirs, "public.t102_comp"), theirs)
    register_enum(EnumInfo.fetch(theirs, "public.t102_en"), theirs)
    register_range(RangeInfo.fetch(theirs, "public.t102_rng"), theirs)
    theirs.adapters.types.add(TypeInfo("int8", 25, 1009))
    theirs.adapters.types.add(TypeInfo("text", 20, 1016))
    theirs.adapters.types.add(TypeInfo("timestamptz", 1114, 1115))
    wrong = []
    try:
        got = answers(theirs, "c3")
        if got != want:
            wrong.append(f"answered {got}, plain {want}")
    except Exception as e:  # noqa: BLE001
        if not clear_refusal(e):
            wrong.append(first_error(e))
    wrong += verdicts(theirs, db, "c3")
    db.execute("DROP TYPE public.t102_comp, public.t102_en, public.t102_rng")
    assert wrong == [], wrong


def test_c4_decimal_json_on_the_connection_and_globally(db, connect, clean, psycopg_globals):
    """Attack: set_json_loads with Decimal floats, on the connection and then globally after import.
    Safe: list_events returns numbers as stored (Decimal equal to the stored text), the docs' promise;
    verify_chain's verdicts unchanged either way."""
    big = "12345678901234567.89"
    db.execute("SELECT audit.record(kind => 't102.c4', payload => %s::jsonb)", [f'{{"amt": {big}, "i": 1, "s": "abc"}}'])
    seal(db)
    loads = lambda s: json.loads(s, parse_float=Decimal)  # noqa: E731
    theirs = connect()
    set_json_loads(loads, theirs)
    on_conn = [e.payload["amt"] for e in list_events(theirs, kind_prefix="t102.c4")]
    from psycopg.types.json import JsonbLoader, JsonLoader
    set_json_loads(loads)
    try:
        later = connect()
        globally = [e.payload["amt"] for e in list_events(later, kind_prefix="t102.c4")]
        honest = verify_chain(later).ok
        tamper(db, "UPDATE audit.event_log SET payload = jsonb_set(payload, '{amt}', '12345678901234567.88')"
                   " WHERE kind = 't102.c4'")
        tampered = verify_chain(later).ok
    finally:
        psycopg.adapters.register_loader("json", JsonLoader)
        psycopg.adapters.register_loader("jsonb", JsonbLoader)
    assert (on_conn, globally) == ([Decimal(big)], [Decimal(big)])
    assert (honest, tampered) == (True, False)


@pytest.mark.parametrize("call", ["record", "seal", "seal_status", "status", "verify_chain", "enable_tracking",
                                  "enable_tracking_baseline", "count_events", "list_events", "tracked_tables"])
def test_c5_an_open_transaction_of_the_callers(db, connect, clean, call):
    """Attack: autocommit off, the caller's transaction has written a row and is open. Safe: the call
    answers or refuses clearly, the caller's row is not committed behind its back (rolled back, it
    is gone), and rolling back leaves nothing the call wrote half (intake as before, or the call's
    events gone with the caller's transaction)."""
    db.execute("CREATE TABLE public.t102_tab (id int PRIMARY KEY, v int); INSERT INTO public.t102_tab VALUES (1, 1)")
    honest_chain(db, "c5", 1)
    record(db, "t102.c5p")
    theirs = connect(autocommit=False)
    outcome = None
    before = counts(db)
    try:
        theirs.execute("INSERT INTO public.t102_tab VALUES (2, 2)")
        calls = {
            "record": lambda: record(theirs, "t102.c5x"),
            "seal": lambda: seal(theirs),
            "seal_status": lambda: seal_status(theirs),
            "status": lambda: status(theirs),
            "verify_chain": lambda: verify_chain(theirs),
            "enable_tracking": lambda: enable_tracking(theirs, "public.t102_tab"),
            "enable_tracking_baseline": lambda: enable_tracking(theirs, "public.t102_tab", baseline=True),
            "count_events": lambda: count_events(theirs),
            "list_events": lambda: list_events(theirs),
            "tracked_tables": lambda: tracked_tables(theirs),
        }
        try:
            calls[call]()
            outcome = "answered"
        except Exception as e:  # noqa: BLE001
            outcome = "refused" if clear_refusal(e) else f"crashed: {first_error(e)}"
    finally:
        with suppress(psycopg.Error):
            theirs.rollback()
    assert not outcome.startswith("crashed"), outcome
    assert db.execute("SELECT count(*) FROM public.t102_tab").fetchone() == (1,), f"{call} committed the caller's row"
    assert counts(db) == before, f"{call} left writes after the caller's rollback: {before} -> {counts(db)}"
    assert db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.t102_tab'::regclass"
                      ).fetchone() == (0,)
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_c6_a_notice_handler_that_raises_and_one_that_writes(db, connect, clean):
    """Attack: the caller's notice handlers: one raises, one runs a statement on the same connection.
    Safe: record, seal and enable_tracking (which may notice) answer; nothing doubled; verdicts hold."""
    honest_chain(db, "c6")
    theirs = connect()

    def boom(n):
        raise RuntimeError("caller's handler")

    theirs.add_notice_handler(boom)
    before = counts(db)
    wrong = []
    for name, fn in [("record", lambda: record(theirs, "t102.c6x")), ("seal", lambda: seal(theirs)),
                     ("track", lambda: (db.execute("CREATE TABLE public.t102_tab (id int PRIMARY KEY)"),
                                        enable_tracking(theirs, "public.t102_tab", baseline=True)))]:
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            if not clear_refusal(e):
                wrong.append(f"{name}: {first_error(e)}")
    assert wrong == [], wrong
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't102.c6x'").fetchone() == (1,)
    assert counts(db)[0] + counts(db)[1] >= before[0] + before[1] + 1
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


class _NamedCursorConnection(psycopg.Connection):
    """A caller's connection whose cursor() gives server-side cursors in binary, with odd loaders."""

    def cursor(self, *args, **kwargs):
        kwargs.setdefault("binary", True)
        return super().cursor(*args, **kwargs)


class _ExecuteRewritingConnection(psycopg.Connection):
    """A caller's connection whose execute() rewrites SET TRANSACTION (a 'helpful' wrapper that turns
    every transaction read-write serializable)."""

    def execute(self, query, params=None, **kwargs):
        if isinstance(query, str) and "ISOLATION LEVEL" in query.upper():
            query = "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"
        return super().execute(query, params, **kwargs)


@pytest.mark.parametrize("cls", [_NamedCursorConnection, _ExecuteRewritingConnection])
def test_c7_a_connection_subclass_with_its_own_cursor_or_execute(db, clean, cls):
    """Attack: a psycopg.Connection subclass whose cursor() reads binary, or whose execute() rewrites
    the isolation the package asks for. Safe: answers as plain or refuses clearly; verify_chain's
    verdicts hold; seal does not seal under another isolation than it needs."""
    honest_chain(db, "c7")
    tracked_table(db)
    i = db.info
    theirs = cls.connect(host=i.host, port=i.port, dbname=i.dbname, user=i.user, autocommit=True)
    theirs.adapters.register_loader("int8", _AsStr)
    try:
        want = answers(db, "c7")
        wrong = []
        record(db, "t102.c7p")
        try:
            got = answers(theirs, "c7")
            got["count"] -= 1
            got["list"] = [x for x in got["list"] if x[0] != "t102.c7p"]
            if got != want:
                wrong.append(f"answered {got}, plain {want}")
        except Exception as e:  # noqa: BLE001
            if not clear_refusal(e):
                wrong.append(first_error(e))
        try:
            seal(theirs)
        except Exception as e:  # noqa: BLE001
            if not clear_refusal(e):
                wrong.append(f"seal: {first_error(e)}")
        wrong += verdicts(theirs, db, "c7")
    finally:
        theirs.close()
    assert wrong == [], wrong


def test_c8_a_pool_whose_configure_registers_odd_loaders(db, clean):
    """Attack: psycopg_pool's ConnectionPool, configure() registering int8 as str, text upper-cased, a
    binary cursor_factory, and dict rows. Safe: answers as plain; verdicts hold."""
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool
    honest_chain(db, "c8")
    tracked_table(db)
    want = answers(db, "c8")
    i = db.info

    class Bin(psycopg.Cursor):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.format = psycopg.pq.Format.BINARY

    def configure(conn):
        conn.adapters.register_loader("int8", _AsStr)
        conn.adapters.register_loader("text", _Upper)
        conn.cursor_factory = Bin
        conn.row_factory = dict_row

    pool = ConnectionPool(f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}", min_size=1, max_size=1,
                          configure=configure, kwargs={"autocommit": True}, open=True)
    wrong = []
    try:
        with pool.connection() as conn:
            try:
                got = answers(conn, "c8")
                if got != want:
                    wrong.append(f"answered {got}, plain {want}")
            except Exception as e:  # noqa: BLE001
                if not clear_refusal(e):
                    wrong.append(first_error(e))
            wrong += verdicts(conn, db, "c8")
    finally:
        pool.close()
    assert wrong == [], wrong


@pytest.mark.parametrize("factory", ["client", "raw"])
def test_c9_aio_with_client_or_raw_cursor_factory(db, clean, factory):
    """Attack: an AsyncConnection whose cursor_factory is AsyncClientCursor or AsyncRawCursor, with an
    int8 loader of its own. Safe: every aio function answers as the sync API on a plain connection:
    record stores as given, counts, lists, row history, tracked tables, seal."""
    honest_chain(db, "c9")
    tracked_table(db)
    want = answers(db, "c9")
    i = db.info
    cf = psycopg.AsyncClientCursor if factory == "client" else psycopg.AsyncRawCursor

    async def go():
        conn = await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user=i.user,
                                                     autocommit=True, cursor_factory=cf)
        conn.adapters.register_loader("int8", _AsStr)
        try:
            out = {}
            out["count"] = (await aio.count_events(conn, by_kind_prefix=["t102."])).count
            evs = await aio.list_events(conn, kind_prefix="t102.")
            out["list"] = sorted((e.kind, e.seq, json.dumps(e.payload, default=str, sort_keys=True)) for e in evs)
            out["history"] = [(e.kind, e.seq) for e in await aio.row_history(conn, "public.t102_tab", "1")]
            out["tracked"] = sorted((t.table_name, t.exclude_columns, t.redact_columns)
                                    for t in await aio.tracked_tables(conn) if t.table_name.startswith("public.t102"))
            out["status"] = want["status"]
            out["pending_type"] = type((await aio.seal_status(conn)).pending).__name__
            ev = await aio.record(conn, "t102.c9x", tenant_id="t%s", payload={"q": "%s", "n": 2})
            sealed = type((await aio.seal(conn)).sealed).__name__
            return out, ev.kind, sealed
        finally:
            await conn.close()

    try:
        got, kind, sealed = asyncio.run(go())
    except Exception as e:  # noqa: BLE001
        assert clear_refusal(e), first_error(e)
        assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't102.c9x'").fetchone() == (0,)
        return
    stored = db.execute("SELECT tenant_id, payload FROM audit.events WHERE kind = 't102.c9x'").fetchall()
    assert (got, kind, sealed, stored) == (want, "t102.c9x", "int", [("t%s", {"q": "%s", "n": 2})])
    assert both_verifiers(db) == (True, True)


# ================================ B: baseline proofs ================================

def _baselines(db, table: str) -> list:
    return db.execute("SELECT db_role FROM audit.events WHERE kind = %s", [f"public.{table}.baseline"]).fetchall()


def _owned_by(db, table: str, owner: str) -> None:
    """public.<table> with two rows, owned by owner, tracked (no baseline)."""
    db.execute(f'CREATE TABLE public."{table}" (id int PRIMARY KEY, v int); INSERT INTO public."{table}" VALUES (1, 1), (2, 2); GRANT UPDATE ON public."{table}" TO PUBLIC; GRANT SELECT ON public."{table}" TO audit_sandbox')
    db.execute(f'ALTER TABLE public."{table}" OWNER TO {owner}')
    enable_tracking(db, f'public."{table}"')


LAST_ERROR: list[str] = []


def _try_baseline(conn, table: str, before: str, after: str = "") -> str | None:
    """BEGIN; <before>; LOCK; <after>; _take_baseline; COMMIT on success, ROLLBACK otherwise. All but
    BEGIN in one message, so one statement as far as a proof goes (it serves the statement that made
    it, trial 106): what is tried here is who may take it."""
    st = "not run"
    conn.execute("BEGIN")
    try:
        try:
            conn.execute("; ".join(filter(None, [before, f'LOCK public."{table}" IN SHARE MODE', after,
                                                 f"""SELECT audit_capture._take_baseline('public."{table}"'::regclass, md5(1::text)::uuid)"""])))
            st = None
        except psycopg.Error as e:
            st = e.sqlstate
            LAST_ERROR[:] = [f"{str(e).splitlines()[0]} | {e.diag.message_detail}"]
    finally:
        conn.execute("COMMIT" if st is None else "ROLLBACK")
    return st


@pytest.fixture
def roles(db, connect):
    """t102_mo: owns tables and is a maintainer; t102_x: a maintainer (login) owning nothing; app_maintainer
    a member of both."""
    db.execute("CREATE ROLE t102_mo IN ROLE audit_maintainer; CREATE ROLE t102_x LOGIN IN ROLE audit_maintainer;"
               " GRANT t102_mo, t102_x TO app_maintainer")
    yield db
    for t in ("t102_b", "t102_bp", "T102_Bq", "t102_sd"):
        db.execute(f'DROP TABLE IF EXISTS public."{t}" CASCADE')
    with suppress(psycopg.Error):
        db.execute("DROP FUNCTION IF EXISTS public.t102_sd_baseline()")
    drop_made_under(db, "t102_")
    for r in ("T102_Own", 't102 "q', "T102_x"):
        with suppress(psycopg.Error):
            db.execute(f'DROP OWNED BY "{r.replace(chr(34), chr(34) * 2)}"')
        db.execute(f'DROP ROLE IF EXISTS "{r.replace(chr(34), chr(34) * 2)}"')


def test_b1_set_config_role_after_the_proof(roles, connect):
    """Attack: the maintainer proves as t102_mo (SET LOCAL ROLE), then set_config('role', 't102_x', true)
    and takes the baseline. Safe: 42501, no baseline."""
    db = roles
    _owned_by(db, "t102_b", "t102_mo")
    st = _try_baseline(connect("app_maintainer"), "t102_b",
                       "SET LOCAL ROLE t102_mo; SELECT audit._prove_owner('public.t102_b'::regclass, md5(1::text)::uuid);"
                       " SELECT set_config('role', 't102_x', true)")
    assert (st, _baselines(db, "t102_b")) == ("42501", [])


def test_b2_reset_role_after_a_proof_under_set_local_role(roles, connect):
    """Attack: proof as t102_mo under SET LOCAL ROLE, then RESET ROLE: the baseline would be named
    app_maintainer. Safe (docs/capture.md: 'The proof must be the acting role's'): 42501."""
    db = roles
    _owned_by(db, "t102_b", "t102_mo")
    st = _try_baseline(connect("app_maintainer"), "t102_b",
                       "SET LOCAL ROLE t102_mo; SELECT audit._prove_owner('public.t102_b'::regclass, md5(1::text)::uuid); RESET ROLE")
    assert (st, _baselines(db, "t102_b")) == ("42501", [])


def test_b3_the_legit_path_under_set_role_names_that_role(roles, connect):
    """Control and attack: SET ROLE t102_mo before the proof (the owning maintainer acts): the baseline
    is taken and every event names t102_mo; the same after SET ROLE t102_x after proof is refused."""
    db = roles
    _owned_by(db, "t102_b", "t102_mo")
    m = connect("app_maintainer")
    ok = _try_baseline(m, "t102_b", "SET LOCAL ROLE t102_mo; SELECT audit._prove_owner('public.t102_b'::regclass, md5(1::text)::uuid)")
    assert (ok, _baselines(db, "t102_b")) == (None, [("t102_mo",), ("t102_mo",)]), LAST_ERROR


def test_b4_session_authorization_by_a_superuser_after_its_proof(roles, connect):
    """Attack: a superuser proves (it owns everything), then SET SESSION AUTHORIZATION t102_x (a maintainer
    that owns nothing) and takes the baseline. Safe: 42501: the events would name t102_x."""
    db = roles
    _owned_by(db, "t102_b", "t102_mo")
    su = connect()
    st = _try_baseline(su, "t102_b", "SELECT audit._prove_owner('public.t102_b'::regclass, md5(1::text)::uuid)",
                       "SET SESSION AUTHORIZATION t102_x")
    with suppress(psycopg.Error):
        su.execute("RESET SESSION AUTHORIZATION")
    assert (st, _baselines(db, "t102_b")) == ("42501", [])


def test_b5_a_security_definer_wrapper_of_the_owner_called_by_another_role(roles, connect):
    """Attack: t102_mo (owning maintainer) writes a SECURITY DEFINER function that proves and takes the
    baseline; t102_x (owns nothing) calls it. The proof is t102_mo's (current_user), the events would
    name t102_x (the session's role). Safe: refused 42501 (docs: the proof must be the acting role's,
    the one the events name), or, if taken, its events name a role that owns the table."""
    db = roles
    _owned_by(db, "t102_sd", "t102_mo")
    db.execute("GRANT CREATE ON SCHEMA public TO t102_mo")
    db.execute("SET ROLE t102_mo")
    try:
        db.execute("""CREATE FUNCTION public.t102_sd_baseline() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER
                      SET search_path = pg_catalog AS $$ BEGIN
                        PERFORM audit._prove_owner('public.t102_sd'::regclass, md5(1::text)::uuid);
                        RETURN audit_capture._take_baseline('public.t102_sd'::regclass, md5(1::text)::uuid); END $$;
                      GRANT EXECUTE ON FUNCTION public.t102_sd_baseline() TO t102_x""")
    finally:
        db.execute("RESET ROLE")
    x = connect("t102_x")
    x.execute("BEGIN")
    try:
        st = sqlstate_of(x, "LOCK public.t102_sd IN SHARE MODE; SELECT public.t102_sd_baseline()")
    finally:
        x.execute("COMMIT" if st is None else "ROLLBACK")
    who = _baselines(db, "t102_sd")
    owners = {r for (r,) in who if db.execute("SELECT pg_has_role(%s, 't102_mo', 'MEMBER')", [r]).fetchone()[0]
              and r != "t102_x"}
    assert st == "42501" or (who and owners == {r for (r,) in who}), f"taken ({st}), events name {who}"
    assert st == "42501", LAST_ERROR


def test_b6_alter_role_set_role_at_login(roles, connect):
    """Control: ALTER ROLE t102_x SET role = 't102_mo' (t102_x a member of t102_mo): the login acts as
    t102_mo, proves and takes the baseline; the events name t102_mo, never t102_x."""
    db = roles
    _owned_by(db, "t102_b", "t102_mo")
    db.execute("GRANT t102_mo TO t102_x; ALTER ROLE t102_x SET role = 't102_mo'")
    c = connect("t102_x")
    st = _try_baseline(c, "t102_b", "SELECT audit._prove_owner('public.t102_b'::regclass, md5(1::text)::uuid)")
    db.execute("ALTER ROLE t102_x RESET role")
    assert (st, _baselines(db, "t102_b")) == (None, [("t102_mo",), ("t102_mo",)]), LAST_ERROR


@pytest.mark.parametrize("name", ["T102_Own", 't102 "q'])
def test_b7_an_owner_whose_name_needs_quoting_takes_its_baseline(roles, connect, name):
    """Control: a maintainer role named with capitals, or a space and a quote, owns a table; beside it
    t102_own (lower case) is another maintainer owning nothing. The owner takes its baseline through
    enable_tracking(baseline=True) under SET ROLE: taken, its events naming it exactly. The lower
    case one, having proved as the owner then SET ROLE to itself, is refused."""
    db = roles
    q = '"' + name.replace('"', '""') + '"'
    db.execute(f"CREATE ROLE {q} IN ROLE audit_maintainer; GRANT {q} TO app_maintainer")
    db.execute('DROP ROLE IF EXISTS "t102_own"; CREATE ROLE t102_own IN ROLE audit_maintainer; GRANT t102_own TO app_maintainer')
    db.execute('CREATE TABLE public."T102_Bq" (id int PRIMARY KEY); INSERT INTO public."T102_Bq" VALUES (1); GRANT UPDATE ON public."T102_Bq" TO PUBLIC')
    db.execute(f'ALTER TABLE public."T102_Bq" OWNER TO {q}')
    m = connect("app_maintainer")
    m.execute(f"SET ROLE {q}")
    err = None
    try:
        enable_tracking(m, 'public."T102_Bq"', baseline=True)
    except Exception as e:  # noqa: BLE001
        err = first_error(e)
    m.execute("RESET ROLE")
    who = _baselines(db, "T102_Bq")
    st = _try_baseline(m, "T102_Bq", f"""SET LOCAL ROLE {q}; SELECT audit._prove_owner('public."T102_Bq"'::regclass, md5(1::text)::uuid);"""
                       " SET LOCAL ROLE t102_own")
    assert (err, who) == (None, [(name,)])
    assert st == "42501"


def test_b8_partitions_proved_by_different_roles(roles, connect):
    """Attack: a partitioned table owned by t102_mo with a partition owned by t102_x (both maintainers;
    app_maintainer a member of both). The parent is proved as t102_mo, the partition as t102_x, and the
    baseline taken as t102_x (or as t102_mo). Safe: 42501 both ways: each proof must be the acting
    role's. And each owner alone cannot prove the other's part."""
    db = roles
    db.execute("CREATE TABLE public.t102_bp (id int PRIMARY KEY) PARTITION BY RANGE (id);"
               " CREATE TABLE public.t102_bp_1 PARTITION OF public.t102_bp FOR VALUES FROM (0) TO (100);"
               " INSERT INTO public.t102_bp VALUES (1), (2); GRANT UPDATE ON public.t102_bp, public.t102_bp_1 TO PUBLIC;"
               " ALTER TABLE public.t102_bp OWNER TO t102_mo; ALTER TABLE public.t102_bp_1 OWNER TO t102_x")
    enable_tracking(db, "public.t102_bp")
    m = connect("app_maintainer")
    got = []
    for last in ("t102_x", "t102_mo"):
        got.append(_try_baseline(m, "t102_bp",
                                 "SET LOCAL ROLE t102_mo; SELECT audit._prove_owner('public.t102_bp'::regclass, md5(1::text)::uuid);"
                                 " SET LOCAL ROLE t102_x; SELECT audit._prove_owner('public.t102_bp_1'::regclass, md5(1::text)::uuid);"
                                 f" SET LOCAL ROLE {last}", "LOCK public.t102_bp_1 IN SHARE MODE"))
    only = connect("t102_x")
    got.append(sqlstate_of(only, "BEGIN; SELECT audit._prove_owner('public.t102_bp'::regclass, md5(1::text)::uuid)"))
    only.execute("ROLLBACK")
    assert (got, _baselines(db, "t102_bp")) == (["42501", "42501", "42501"], [])
    _ = problems_of  # the trials' shared helpers


def test_b9_a_proof_made_in_a_rolled_back_savepoint_then_role_regained(roles, connect):
    """Attack: SAVEPOINT; SET LOCAL ROLE t102_mo; prove; ROLLBACK TO SAVEPOINT (role back to
    app_maintainer, the proof rolled back with it); SET LOCAL ROLE t102_mo; take. Safe: 42501 (no proof
    survives a rolled-back savepoint)."""
    db = roles
    _owned_by(db, "t102_b", "t102_mo")
    st = _try_baseline(connect("app_maintainer"), "t102_b",
                       "SAVEPOINT s; SET LOCAL ROLE t102_mo; SELECT audit._prove_owner('public.t102_b'::regclass, md5(1::text)::uuid);"
                       " ROLLBACK TO SAVEPOINT s; SET LOCAL ROLE t102_mo")
    assert (st, _baselines(db, "t102_b")) == ("42501", [])
