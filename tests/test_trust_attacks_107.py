"""A hundred-and-seventh attacker's trial: variants nobody tried against the last session's mends in the
Python package (deep_json.tolerant / read_deep, identity_cache.by_identity, session._callers_json_map and
_PSYCOPGS, the aio API, tracking.row_as_of returning the image as the caller's loader read it).

Classes (test names carry the letter):
  A. the caller's JSON loader: a loader class whose instances set their own `loads`, one whose `load` is
     replaced (or restored) after the first call, a JSON function that refuses a value on purpose, one
     returning non-dicts, a bound method of a changing object, callables that lie about equality and
     hash, functions of one code with different defaults, json and jsonb loaders set apart, loaders
     discarded (their ids reused), a fresh loader at every call in threads and asyncio tasks.
  D. deep JSON (about 10,000 levels) through every wrapper that returns JSON, under each loader
     configuration, sync and aio, and the sealer and both verifiers on it.
  H. hostile payloads: an integer longer than Python reads by default, and what both verifiers say of
     odd Unicode, huge and tiny numbers, -0.0, duplicate keys, deep nesting, and a tamper that keeps
     the numbers equal.
  G. the package's own reads (install, status, seal, verify) under global JSON functions that raise,
     and with hostile global JSON adapters registered before the package is imported.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects made here are prefixed t107_.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import subprocess
import sys
import threading
from contextlib import suppress
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import JsonbLoader, JsonLoader, set_json_loads
from trial_helpers import both_verifiers, drop_made_under, reinstall, seal_all, tamper

from pgaudit_py import (
    aio,
    enable_tracking,
    list_events,
    record,
    row_as_of,
    row_history,
    row_state_as_of,
    status,
)
from pgaudit_py.chain import verify_chain

DEPTH = 9_990  # nesting of the deep values (jsonb refused 10,500 here: about its limit; see test_d0)


@pytest.fixture
def jt(db):
    """public.t107_j (id, v, doc jsonb), tracked; row 1 written with doc {"x": 1.5}; an event t107.j with
    payload {"n": 1.5, "k": "plain"}. Yields a moment after both."""
    db.execute("CREATE TABLE public.t107_j (id int PRIMARY KEY, v int, doc jsonb)")
    try:
        enable_tracking(db, "public.t107_j")
        db.execute("""INSERT INTO public.t107_j VALUES (1, 7, '{"x": 1.5}')""")
        record(db, "t107.j", payload={"n": Decimal("1.5"), "k": "plain"})
        yield db.execute("SELECT clock_timestamp()").fetchone()[0]
    finally:
        with suppress(Exception):
            db.execute("ROLLBACK")
        db.execute("DROP TABLE IF EXISTS public.t107_j CASCADE")
        drop_made_under(db, "t107_")


def reads(conn, at):
    """(row_as_of's image, the t107.j payload, row_history's last row_after, row_state_as_of's image)."""
    img = row_as_of(conn, "public.t107_j", "1", at)
    ev = list_events(conn, kind_prefix="t107.j")
    hist = row_history(conn, "public.t107_j", "1")
    state = row_state_as_of(conn, "public.t107_j", "1", at)
    return img, (ev[-1].payload if ev else "no event"), hist[-1].row_after, state.image


def own_read(conn):
    """What the caller's own statement reads of the same values: (image, payload)."""
    img = conn.execute("SELECT row_after FROM audit.events WHERE kind LIKE 'public.t107\\_j.%' ORDER BY intake_id DESC LIMIT 1").fetchone()[0]
    pay = conn.execute("SELECT payload FROM audit.events WHERE kind = 't107.j' LIMIT 1").fetchone()[0]
    return img, pay


class Tagger:
    """A JSON function (not a closure, so psycopg caches its class by identity) tagging what it reads."""

    def __init__(self, tag):
        self.tag = tag

    def __call__(self, s):
        v = json.loads(s)
        return {"_tag": self.tag, **v} if isinstance(v, dict) else (self.tag, v)


def tag_of(v):
    if isinstance(v, dict):
        return v.get("_tag")
    if isinstance(v, tuple):
        return v[0]
    return None


def nest(n: int, leaf: str = "1.5") -> str:
    return "[" * n + leaf + "]" * n


def depth_leaf(v):
    d = 0
    while True:
        if isinstance(v, list) and len(v) == 1:
            v, d = v[0], d + 1
        elif isinstance(v, dict) and len(v) == 1 and "_tag" not in v:
            v, d = next(iter(v.values())), d + 1
        else:
            return d, v


DEC = functools.partial(json.loads, parse_float=Decimal)


# ================================ A: the caller's JSON loader ================================

@pytest.mark.parametrize("how", ["init", "property"])
def test_a1_a_loader_whose_instances_set_their_own_loads(db, connect, jt, how):
    """Attack: the caller's JsonbLoader subclass keeps psycopg's load() and class `_loads`, but each instance
    reads with Decimal (its __init__ sets self.loads; or `loads` is a property). The caller's own statements
    read Decimal; do the wrappers? python.md: "JSON values the package returns to you are read by your
    connection's JSON loader (below), and returned as it made them"."""
    if how == "init":
        class Mine(JsonbLoader):
            def __init__(self, oid, context=None):
                super().__init__(oid, context)
                self.loads = DEC
    else:
        class Mine(JsonbLoader):
            loads = property(lambda self: DEC, lambda self, v: None)
    c = connect()
    c.adapters.register_loader("jsonb", Mine)
    assert type(own_read(c)[1]["n"]) is Decimal  # the caller's own read: Decimal
    img, pay, hist, state = reads(c, jt)
    got = [type(x["doc"]["x"]).__name__ for x in (img, hist, state)] + [type(pay["n"]).__name__]
    assert got == ["Decimal"] * 4, got


def test_a2_a_loader_class_whose_load_is_replaced_after_the_first_call(db, connect, jt):
    """Attack: the caller's JsonbLoader subclass reads by its JSON function at the first call (so the
    package deepens it and caches the map); then the caller replaces the class's load() with one
    wrapping each value. Safe: the second call returns the wrapped values. python.md: "A JSON loader
    class of your own that reads otherwise than by calling its JSON function (one that overrides
    `load`) is used as it is"."""
    class Mine(JsonbLoader):
        pass
    c = connect()
    c.adapters.register_loader("jsonb", Mine)
    first = reads(c, jt)
    Mine.load = lambda self, data: ("W", json.loads(bytes(data)))
    assert own_read(c)[1][0] == "W"
    second = reads(c, jt)
    assert isinstance(first[0], dict)
    assert [tag_of(x) for x in second] == ["W"] * 4, second


def test_a3_a_loader_class_whose_load_override_is_removed_after_the_first_call(db, connect, jt):
    """Attack: the caller's subclass overrides load() at the first call (used as is), then the override is
    deleted: it now reads by calling its JSON function, and a deep payload is recorded. Safe: the deep
    payload is read (made to read deeper), not a RecursionError from a stale cached map. python.md: "A
    value nested deeper than Python's JSON parser goes ... is read all the same"."""
    class Mine(JsonbLoader):
        def load(self, data):
            return ("W", json.loads(bytes(data)))
    c = connect()
    c.adapters.register_loader("jsonb", Mine)
    assert tag_of(reads(c, jt)[1]) == "W"
    del Mine.load
    db.execute("SELECT audit.record(kind => 't107.jdeep2', payload => %s::jsonb)", [f'{{"d": {nest(DEPTH)}}}'])
    try:
        ev = list_events(c, kind_prefix="t107.jdeep2")
        err = None
    except Exception as e:  # noqa: BLE001
        ev, err = [], f"{type(e).__name__}: {str(e)[:120]}"
    assert err is None, err
    assert depth_leaf(ev[0].payload["d"]) == (DEPTH, 1.5)


@pytest.mark.parametrize("scope", ["connection", "global", "aio"])
def test_a4_a_json_function_that_refuses_a_value_is_not_bypassed(db, connect, jt, psycopg_globals, scope):
    """Attack: the caller's JSON function refuses (ValueError) any object holding the key "secret" (a
    policy: never hand such a value on). A writer records {"secret": "s3"} (shallow, 1 level). Safe: the
    wrapper does not hand the value back (it raises, as the caller's own statement does), rather than
    re-parsing it with the package's loop. python.md: "where it fails on a value (`RecursionError`, or
    another library's depth limit), parse that value again with a loop"."""
    def hook(d):
        if "secret" in d:
            raise ValueError("refused by policy")
        return d
    refusing = functools.partial(json.loads, object_hook=hook)
    db.execute("""SELECT audit.record(kind => 't107.sec', payload => '{"secret": "s3", "note": "x"}'::jsonb)""")
    if scope == "aio":
        info = db.info

        async def go():
            async with await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                             user=info.user, autocommit=True) as a:
                set_json_loads(refusing, a)
                try:
                    return [e.payload for e in await aio.list_events(a, kind_prefix="t107.sec")]
                except Exception:  # noqa: BLE001
                    return []
        leaked = asyncio.run(go())
        assert leaked == [], leaked
        return
    c = connect()
    set_json_loads(refusing, c if scope == "connection" else None)
    with pytest.raises(ValueError):
        c.execute("SELECT payload FROM audit.events WHERE kind = 't107.sec'").fetchone()
    try:
        got = list_events(c, kind_prefix="t107.sec")
        leaked = [e.payload for e in got]
    except Exception:  # noqa: BLE001
        leaked = []
    assert leaked == [], leaked


def test_a5_json_functions_returning_non_dicts_come_back_as_made(db, connect, jt):
    """Attack: the caller's JSON function reads objects as tuples of pairs (object_pairs_hook=tuple), on
    the connection. Safe: row_as_of, row_history, row_state_as_of and the payload are exactly what the
    caller's own statement reads, not dicts. python.md: "`row_as_of` gives you its image as the loader
    read it"."""
    c = connect()
    set_json_loads(functools.partial(json.loads, object_pairs_hook=tuple), c)
    img, pay, hist, state = reads(c, jt)
    own_img, own_pay = own_read(c)
    assert (img, hist, state) == (own_img, own_img, own_img) and isinstance(img, tuple), (img, own_img)
    assert pay == own_pay and isinstance(pay, tuple)


def test_a6_a_bound_method_of_an_object_whose_state_changes(db, connect, jt):
    """Attack: the connection's JSON function is a bound method of an object; between calls the object's
    mode changes (float, then Decimal, then float). Safe: each call reads in the mode in force. python.md:
    "The function in force at each call is the one used"."""
    class Reader:
        mode = "float"

        def read(self, s):
            return json.loads(s, parse_float=Decimal if self.mode == "dec" else float)
    r = Reader()
    c = connect()
    set_json_loads(r.read, c)
    seen = []
    for mode in ("float", "dec", "float"):
        r.mode = mode
        img, pay, _, _ = reads(c, jt)
        seen.append((type(img["doc"]["x"]).__name__, type(pay["n"]).__name__))
    assert seen == [("float", "float"), ("Decimal", "Decimal"), ("float", "float")], seen


def test_a7_callables_that_lie_about_equality_and_hash(db, connect, jt, psycopg_globals):
    """Attack: callable instances whose __eq__ is always True and __hash__ constant, reading A then B,
    set globally one after the other (and on two connections). Safe: the wrappers follow the function in
    force globally, and on each connection agree with what the caller's own statement reads. python.md:
    "The function in force at each call is the one used, even one equal to an earlier function (`==`)
    that reads differently"."""
    class Liar(Tagger):
        def __eq__(self, other):
            return True

        def __hash__(self):
            return 7
    c = connect()
    seen = []
    for t in ("A", "B", "A2"):
        set_json_loads(Liar(t))
        img, pay, _, _ = reads(c, jt)
        seen.append((t, tag_of(img), tag_of(pay)))
    c1, c2 = connect(), connect()
    set_json_loads(Liar("C1"), c1)
    set_json_loads(Liar("C2"), c2)
    for cc in (c1, c2, c1):
        img, pay, _, _ = reads(cc, jt)
        own = own_read(cc)
        seen.append(("own", tag_of(img) == tag_of(own[0]), tag_of(pay) == tag_of(own[1])))
    assert seen[:3] == [("A", "A", "A"), ("B", "B", "B"), ("A2", "A2", "A2")], seen
    assert all(s[1:] == (True, True) for s in seen[3:]), seen


def test_a8_functions_of_one_code_with_different_defaults(db, connect, jt, psycopg_globals):
    """Attack: JSON functions made by one lambda with a default argument (same __code__, no closure):
    globally float, then Decimal, then float. Safe: each call follows the one in force. python.md: "The
    function in force at each call is the one used"."""
    def make(pf):
        return lambda s, pf=pf: json.loads(s, parse_float=pf)
    c = connect()
    seen = []
    for pf in (float, Decimal, float, Decimal):
        set_json_loads(make(pf))
        img, pay, hist, _ = reads(c, jt)
        seen.append((pf.__name__, type(img["doc"]["x"]).__name__, type(pay["n"]).__name__))
    assert all(s[0] == s[1] == s[2] for s in seen), seen


def test_a9_json_and_jsonb_loaders_set_apart(db, connect, jt):
    """Attack: on the connection a json loader tagging J that overrides load(), and a jsonb loader tagging
    B through its JSON function; then the jsonb loader put back to psycopg's while json keeps its odd one.
    Safe: the wrappers' jsonb values read with the jsonb loader in force (B, then plain), never J's.
    python.md: "JSON values the package returns to you are read by your connection's JSON loader"."""
    class JsonOdd(JsonLoader):
        def load(self, data):
            return ("J", json.loads(bytes(data)))
    c = connect()
    c.adapters.register_loader("json", JsonOdd)
    set_json_loads(Tagger("B"), c)
    c.adapters.register_loader("json", JsonOdd)  # set_json_loads set json too: the odd one again
    first = [tag_of(x) for x in reads(c, jt)]
    c.adapters.register_loader("jsonb", JsonbLoader)
    second = [tag_of(x) for x in reads(c, jt)]
    assert (first, second) == (["B"] * 4, [None] * 4), (first, second)


def test_a10_loaders_discarded_and_their_ids_reused(db, connect, jt):
    """Attack: 150 times: a new connection, a new JSON function (a fresh Tagger, a fresh loader class), a
    call, then all dropped and collected, so that later ones may get the ids of earlier ones (past the
    cache's 64). Safe: every answer is the tag of the function in force. python.md: "The function in
    force at each call is the one used"."""
    c = connect()
    wrong = []
    for i in range(150):
        class L(JsonbLoader):
            _loads = Tagger(f"T{i}")
        c.adapters.register_loader("jsonb", L)
        img = row_as_of(c, "public.t107_j", "1", jt)
        if tag_of(img) != f"T{i}":
            wrong.append((i, tag_of(img)))
        del L
        if i % 10 == 0:
            gc.collect()
    assert wrong == []


def test_a11_a_fresh_loader_at_every_call_in_threads(db, connect, jt):
    """Attack: six threads, each with its connection, set a new JSON function before every one of 25 calls
    (150 distinct functions at once, past the caches' 64). Safe: each answer carries its own call's tag.
    python.md: "read by your connection's JSON loader"."""
    conns = [connect() for _ in range(6)]
    wrong: list = []
    barrier = threading.Barrier(6)

    def run(i):
        barrier.wait()
        for k in range(25):
            t = f"{i}-{k}"
            set_json_loads(Tagger(t), conns[i])
            try:
                img, pay, _, _ = reads(conns[i], jt)
                if (tag_of(img), tag_of(pay)) != (t, t):
                    wrong.append((t, tag_of(img), tag_of(pay)))
            except Exception as e:  # noqa: BLE001
                wrong.append((t, repr(e)[:100]))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert wrong == []


def test_a12_a_fresh_loader_at_every_call_in_asyncio_tasks(db, jt):
    """Attack: five asyncio tasks, each on its AsyncConnection, set a new JSON function (or a new loader
    class) before each of 20 aio calls, interleaved. Safe: each answer carries its own call's tag.
    python.md: "JSON values the package returns to you are read by your connection's JSON loader"."""
    info = db.info
    wrong: list = []

    async def task(i):
        async with await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                         user=info.user, autocommit=True) as a:
            for k in range(20):
                t = f"a{i}-{k}"
                if k % 2:
                    set_json_loads(Tagger(t), a)
                else:
                    a.adapters.register_loader("jsonb", type("L", (JsonbLoader,), {"_loads": Tagger(t)}))
                img = await aio.row_as_of(a, "public.t107_j", "1", jt)
                await asyncio.sleep(0)
                ev = await aio.list_events(a, kind_prefix="t107.j")
                if (tag_of(img), tag_of(ev[0].payload)) != (t, t):
                    wrong.append((t, tag_of(img), tag_of(ev[0].payload)))

    async def go():
        await asyncio.gather(*(task(i) for i in range(5)))
    asyncio.run(go())
    assert wrong == []


def test_a13_aio_loader_class_whose_load_is_replaced_after_the_first_call(db, jt):
    """Attack: as a2 on an AsyncConnection: the caller's JsonbLoader subclass reads by its JSON function at
    the first aio call; then its load() is replaced by one wrapping each value. Safe: the second aio call
    returns wrapped values. python.md: "A JSON loader class of your own that reads otherwise than by
    calling its JSON function (one that overrides `load`) is used as it is"."""
    info = db.info

    class Mine(JsonbLoader):
        pass

    async def go():
        async with await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                         user=info.user, autocommit=True) as a:
            a.adapters.register_loader("jsonb", Mine)
            first = await aio.row_as_of(a, "public.t107_j", "1", jt)
            Mine.load = lambda self, data: ("W", json.loads(bytes(data)))
            second = await aio.row_as_of(a, "public.t107_j", "1", jt)
            ev = await aio.list_events(a, kind_prefix="t107.j")
            return first, second, ev[0].payload
    first, second, pay = asyncio.run(go())
    assert isinstance(first, dict)
    assert (tag_of(second), tag_of(pay)) == ("W", "W"), (second, pay)


def test_a14_discarded_json_functions_are_not_kept_alive_without_bound(db, connect, jt, psycopg_globals):
    """Attack: 300 distinct JSON functions set globally one after another (each used for one call, then
    dropped by the caller). Safe: the package keeps a bounded number of them (its caches hold 64): the
    dropped ones are collected, and psycopg's class cache does not grow by hundreds of classes.
    identity_cache.py: "The last `size` results of the function, least recently used out first"."""
    import weakref

    from psycopg.types import json as pj
    c = connect()
    refs = []
    before = len(pj._loaders_cache)
    for i in range(300):
        f = Tagger(f"G{i}")
        set_json_loads(f)
        assert tag_of(row_as_of(c, "public.t107_j", "1", jt)) == f"G{i}"
        refs.append(weakref.ref(f))
        del f
    set_json_loads(json.loads)
    gc.collect()
    alive = sum(r() is not None for r in refs)
    grown = len(pj._loaders_cache) - before
    assert alive <= 70 and grown <= 4 * 70, (alive, grown)


# ================================ D: deep JSON ================================

@pytest.fixture
def deep(db, jt):
    """A deep payload (t107.deep: {"d": DEPTH levels of lists, 1.5 at the bottom}) and a deep row image
    (row 2's doc), pending, and a moment after them."""
    db.execute("SELECT audit.record(kind => 't107.deep', payload => %s::jsonb)", [f'{{"d": {nest(DEPTH)}}}'])
    db.execute("INSERT INTO public.t107_j VALUES (2, 0, %s::jsonb)", [nest(DEPTH - 5)])
    return db.execute("SELECT clock_timestamp()").fetchone()[0]


def test_d0_the_depths_used_here_are_stored(db, deep):
    """Control: the deep payload and row image are stored (jsonb held them), so that the D tests read real
    deep values. python.md: "nested as deep as jsonb holds (about 10,000 levels ...)"."""
    n = db.execute("SELECT count(*) FROM audit.events WHERE kind IN ('t107.deep', 'public.t107_j.insert')").fetchone()[0]
    assert n >= 3


CONFIGS = ["default", "conn_decimal", "global_decimal", "bound_method", "callable_instance", "loader_class"]


def configure(c, how):
    class R:
        def read(self, s):
            return json.loads(s, parse_float=Decimal)

    class Call:
        def __call__(self, s):
            return json.loads(s, parse_float=Decimal)
    if how == "conn_decimal":
        set_json_loads(DEC, c)
    elif how == "global_decimal":
        set_json_loads(DEC)
    elif how == "bound_method":
        set_json_loads(R().read, c)
    elif how == "callable_instance":
        set_json_loads(Call(), c)
    elif how == "loader_class":
        c.adapters.register_loader("jsonb", type("DecL", (JsonbLoader,), {"_loads": staticmethod(DEC)}))
    return float if how == "default" else Decimal


@pytest.mark.parametrize("how", CONFIGS)
def test_d1_deep_values_through_every_wrapper_under_each_loader(db, connect, deep, psycopg_globals, how):
    """Attack: a payload DEPTH levels deep and a row image DEPTH-5 deep; read through list_events,
    row_history, row_as_of and row_state_as_of under each loader configuration. Safe: nothing raises, the
    values are whole, and the number at the bottom is read by the caller's function (Decimal where it
    says so). python.md: "reading each number with your function, so `Decimal` holds at every depth"."""
    c = connect()
    want = configure(c, how)
    ev = list_events(c, kind_prefix="t107.deep")
    hist = row_history(c, "public.t107_j", "2")
    img = row_as_of(c, "public.t107_j", "2", deep)
    st = row_state_as_of(c, "public.t107_j", "2", deep)
    got = [depth_leaf(ev[0].payload["d"]), depth_leaf(hist[-1].row_after["doc"]), depth_leaf(img["doc"]),
           depth_leaf(st.image["doc"])]
    assert [d for d, _ in got] == [DEPTH, DEPTH - 5, DEPTH - 5, DEPTH - 5], [d for d, _ in got]
    assert [type(v) for _, v in got] == [want] * 4, got


def test_d2_deep_values_through_aio_with_a_decimal_loader_and_a_per_instance_loader(db, deep):
    """Attack: the aio wrappers on deep values, with the documented Decimal function on the connection,
    then with a loader class whose instances read Decimal (self.loads in __init__). Safe: whole values,
    Decimal at the bottom, each time. python.md: "Decimal holds at every depth"."""
    info = db.info

    class PerInstance(JsonbLoader):
        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            self.loads = DEC

    async def go():
        out = []
        async with await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                         user=info.user, autocommit=True) as a:
            for step in ("conn", "instance"):
                if step == "conn":
                    set_json_loads(DEC, a)
                else:
                    a.adapters.register_loader("jsonb", PerInstance)
                ev = await aio.list_events(a, kind_prefix="t107.deep")
                img = await aio.row_as_of(a, "public.t107_j", "2", deep)
                hist = await aio.row_history(a, "public.t107_j", "2")
                out.append((step, [type(depth_leaf(x)[1]).__name__ for x in
                                   (ev[0].payload["d"], img["doc"], hist[-1].row_after["doc"])]))
        return out
    out = asyncio.run(go())
    assert out == [("conn", ["Decimal"] * 3), ("instance", ["Decimal"] * 3)], out


def test_d3_deep_values_sealed_then_both_verifiers_and_status_under_hostile_globals(db, deep, psycopg_globals):
    """Attack: the deep payload and row images sealed; then globally a JSON function that raises on every
    value, and a global jsonb/json loader that overrides load() to raise. Safe: seal works, both verifiers
    True, status names no new problem. python.md: "JSON the package reads for itself ... it reads with
    `json.loads`, whatever `set_json_loads` you set, on the connection or globally"."""
    before = set(status(db).problems)
    assert seal_all(db) is None

    def boom(s):
        raise ValueError("hostile")

    class Boom(JsonbLoader):
        def load(self, data):
            raise RuntimeError("hostile loader")
    set_json_loads(boom)
    psycopg.adapters.register_loader("jsonb", Boom)
    psycopg.adapters.register_loader("json", Boom)
    db.execute("SELECT audit.record(kind => 't107.after', payload => %s::jsonb)", [f'{{"d": {nest(DEPTH)}}}'])
    sealed = seal_all(db)
    assert sealed is None, sealed
    assert both_verifiers(db) == (True, True)
    assert set(status(db).problems) - before == set()


def test_d4_deep_values_inside_objects_with_escapes_and_unicode(db, connect, jt):
    """Attack: a deep value whose levels are objects keyed with escapes, astral and combining characters,
    quotes and backslashes, a string at the bottom holding JSON-looking text; read with the Decimal
    function. Safe: what list_events returns equals the stored value (compared level by level).
    python.md: "A value nested deeper than Python's JSON parser goes ... is read all the same"."""
    keys = ["k\"q", "b\\s", "\u00e9\u0301", "\U0001f600", "\u2028", "tab\t", "[", "{\"x\":"]
    text, n = '"[[[{\\"a\\": 1}]]] \\\\u0000-free \\ud83d\\ude00"', 3000
    for i in range(n):
        text = "{" + json.dumps(keys[i % len(keys)]) + ": " + text + "}"
    db.execute("SELECT audit.record(kind => 't107.keys', payload => %s::jsonb)", [text])
    c = connect()
    set_json_loads(DEC, c)
    v = list_events(c, kind_prefix="t107.keys")[0].payload
    bad = None
    for i in range(n):
        k = keys[(n - 1 - i) % len(keys)]
        if not (isinstance(v, dict) and list(v) == [k]):
            bad = (i, list(v) if isinstance(v, dict) else v)
            break
        v = v[k]
    assert bad is None, bad
    assert v == '[[[{"a": 1}]]] \\u0000-free \U0001f600'


def test_d5_follow_yields_deep_sealed_events_read_with_the_callers_function(db, connect, deep):
    """Attack: the deep payload sealed, then followed (pgaudit_py.follow) on a connection reading Decimal.
    Safe: follow yields it whole, Decimal at the bottom, without raising. python.md: "reading each number
    with your function, so `Decimal` holds at every depth"."""
    from pgaudit_py.follow import follow
    assert seal_all(db) is None
    c = connect()
    set_json_loads(DEC, c)
    stop = threading.Event()
    got = []
    try:
        for e in follow(c, since_seq=0, kind_prefix="t107.deep", poll_interval=0.2, stop=stop):
            got.append(depth_leaf(e.payload["d"]))
            stop.set()
            break
    except Exception as e:  # noqa: BLE001
        got.append(f"{type(e).__name__}: {str(e)[:100]}")
    assert got == [(DEPTH, Decimal("1.5"))], got


def test_d6_the_cli_prints_deep_events_whole_as_stored(db, deep):
    """Attack: `pgaudit events --json` on the deep payload (pending). Safe: exit 0, and the printed payload
    is the stored value whole (DEPTH levels, 1.5 at the bottom). python.md: "The CLI prints such values
    whole"."""
    i = db.info
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "events", "--dsn",
                           f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}", "--kind-prefix",
                           "t107.deep", "--json"], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    assert done.returncode == 0, done.stderr[-500:]
    text = done.stdout
    assert text.count("[") >= DEPTH and nest(DEPTH).replace("[", "").replace("]", "") in text
    assert "[" * DEPTH + "1.5" + "]" * DEPTH in text.replace(" ", "").replace("\n", "")


# ================================ H: hostile payloads ================================

@pytest.mark.parametrize("loader", ["default", "documented_decimal"])
def test_h1_a_writers_huge_integer_does_not_fail_the_readers_page(db, connect, jt, psycopg_globals, loader):
    """Attack: a writer records a payload holding an integer of 5,001 digits (Decimal("1E+5000"), which the
    package takes and jsonb keeps), past Python's int_max_str_digits (4,300): json.loads raises
    ValueError. Safe: the reader's list_events still returns the page (the other events too), as for a deep
    value. python.md: "A value nested deeper than Python's JSON parser goes ... is read all the same" and
    deep_json.py: "one writer's deep row or payload would fail every read of a page that holds it"."""
    w = connect("app_writer")
    for attempt in (lambda: record(w, "t107.huge", payload={"n": Decimal("1E+5000")}),
                    lambda: w.execute("SELECT audit.record(kind => 't107.huge', payload => %s::jsonb)",
                                      ['{"n": 1' + "0" * 5000 + ', "f": 1.' + "1" * 6000 + '}'])):
        with suppress(Exception):  # refused at intake is safe too
            attempt()
    record(w, "t107.huge2", payload={"n": 1})
    r = connect("app_reader")
    if loader == "documented_decimal":
        set_json_loads(functools.partial(json.loads, parse_float=Decimal), r)
    try:
        got = sorted(e.kind for e in list_events(r, kind_prefix="t107.huge"))
        err = None
    except Exception as e:  # noqa: BLE001
        got, err = [], f"{type(e).__name__}: {str(e)[:100]}"
    assert err is None, err
    assert "t107.huge2" in got, got


def test_h2_a_huge_numeric_in_a_tracked_row_does_not_fail_its_history(db, connect, jt):
    """Attack: a tracked table with a numeric column; the writer sets it to 10^5000 (a row image holding a
    5,001-digit integer). Safe: row_history and row_as_of of that row still answer for the reader.
    python.md: "JSON values (`payload`, the row images, `changed`) are read by psycopg's JSON loader";
    deep_json.py: "one writer's deep row or payload would fail every read of a page that holds it"."""
    db.execute("CREATE TABLE public.t107_n (id int PRIMARY KEY, amount numeric)")
    try:
        db.execute("GRANT ALL ON public.t107_n TO app_writer")
        enable_tracking(db, "public.t107_n")
        w = connect("app_writer")
        w.execute("INSERT INTO public.t107_n VALUES (1, 1)")
        w.execute("UPDATE public.t107_n SET amount = 10::numeric ^ 5000 WHERE id = 1")
        at = db.execute("SELECT clock_timestamp()").fetchone()[0]
        r = connect("app_reader")
        try:
            kinds = [e.kind for e in row_history(r, "public.t107_n", "1")]
            img = row_as_of(r, "public.t107_n", "1", at)
            err = None
        except Exception as e:  # noqa: BLE001
            kinds, img, err = [], None, f"{type(e).__name__}: {str(e)[:100]}"
        assert err is None, err
        assert kinds == ["public.t107_n.insert", "public.t107_n.update"] and img is not None
    finally:
        db.execute("DROP TABLE IF EXISTS public.t107_n CASCADE")


HOSTILE = {
    "unicode": '{"a": "\\u2028\\u2029\\ufeff\\u00e9\\u0065\\u0301\\ud83d\\ude00", "\\u00e9": 1, "e\\u0301": 2, "\\ud83d\\ude00": 3}',
    "huge": '{"big": 9.99e399, "tiny": 1.1e-399, "neg0": -0.0, "negz": -0, "f": 0.10, "g": 1.000, "long": '
            + "9" * 399 + ", \"frac\": 0." + "0" * 398 + "1}",
    "dups": '{"a": 1, "a": 2, "b": {"c": 1, "c": [1, 2], "c": null}, "bb": 1, "b": 3}',
    "keys": '{"\\u00ff": 1, "yy": 2, "\\u0100": 3, "\\u07ff": 4, "\\u0800": 5, "": 6, "zz": 7}',
    "longfrac": '{"f": 1.' + "1" * 6000 + ', "g": -0.' + "0" * 390 + '1}',
    "deep": '{"d": ' + nest(DEPTH, '{"x": -0.0, "y": 1e399}') + "}",
}


@pytest.mark.parametrize("what", list(HOSTILE))
def test_h3_both_verifiers_agree_on_hostile_payloads(db, jt, what):
    """Attack: payloads stored through audit.record as JSON text: odd Unicode, 1e400, 1e-400, -0.0, a 5,000
    digit number, duplicate keys, keys that sort differently by characters and by bytes, deep nesting;
    sealed. Safe: audit.verify() and verify_chain both say True. tamper-evidence: the two verifiers
    recompute the same chain."""
    db.execute("SELECT audit.record(kind => 't107.h3', payload => %s::jsonb)", [HOSTILE[what]])
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_h4_a_tamper_that_keeps_every_number_equal_is_seen_by_both(db, jt):
    """Attack: after sealing, the payload {"f": 1.0, "s": "x"} is rewritten as {"f": 1.00, "s": "x"} (equal
    as jsonb, as numbers and as Python values, but not the text sealed). Safe: both verifiers say False.
    tamper-evidence: a change to a sealed event is found by both verifiers."""
    db.execute("""SELECT audit.record(kind => 't107.h4', payload => '{"f": 1.0, "s": "x"}'::jsonb)""")
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
    tamper(db, """UPDATE audit.event_log SET payload = '{"f": 1.00, "s": "x"}'::jsonb WHERE kind = 't107.h4'""")
    assert db.execute("SELECT payload::text FROM audit.event_log WHERE kind = 't107.h4'").fetchone()[0] == '{"f": 1.00, "s": "x"}'
    assert both_verifiers(db) == (False, False)


def test_h5_both_verifiers_agree_on_row_images_with_odd_column_names(db, jt):
    """Attack: a tracked table whose columns are named with NFC and NFD forms of one letter, an astral
    character, a quote, a line separator, and names that sort differently by characters and by bytes;
    rows written with deep, odd-number and odd-Unicode values; sealed. Safe: both verifiers say True, and
    row_as_of answers. tamper-evidence: the two verifiers recompute the same chain."""
    cols = ["\u00e9", "e\u0301", "\U0001f600", 'a"b', "l\u2028s", "\u00ff", "yy", "\u0100"]
    q = ['"' + c.replace('"', '""') + '"' for c in cols]
    db.execute(f"CREATE TABLE public.t107_u (id int PRIMARY KEY, {', '.join(n + ' jsonb' for n in q)})")
    try:
        enable_tracking(db, "public.t107_u")
        vals = [nest(3000), '"\\u2028\u00e9"', "-0.0", "9.99e399", "1e-399", '{"\u00e9": 1, "e\u0301": 2}', "[]", "null"]
        db.execute(f"INSERT INTO public.t107_u VALUES (1, {', '.join(['%s::jsonb'] * len(cols))})", vals)
        db.execute(f"UPDATE public.t107_u SET {q[2]} = '1.10'::jsonb WHERE id = 1")
        at = db.execute("SELECT clock_timestamp()").fetchone()[0]
        assert seal_all(db) is None
        assert both_verifiers(db) == (True, True)
        img = row_as_of(db, "public.t107_u", "1", at)
        assert sorted(img) == sorted(["id", *cols]), sorted(img)
    finally:
        db.execute("DROP TABLE IF EXISTS public.t107_u CASCADE")


# ================================ G: the package's own reads ================================

@pytest.mark.parametrize("how", ["value_error", "recursion_error", "returns_none"])
def test_g1_package_reads_under_a_global_json_function_that_fails(db, jt, psycopg_globals, how):
    """Attack: globally, a JSON function that raises ValueError, RecursionError, or returns None for every
    value; then install again, record, seal, status, both verifiers. Safe: all work as before. python.md:
    "JSON the package reads for itself (an installation's snapshot) it reads with `json.loads`, whatever
    `set_json_loads` you set, on the connection or globally"."""
    before = set(status(db).problems)

    def fails(s):
        if how == "value_error":
            raise ValueError("no")
        if how == "recursion_error":
            raise RecursionError("no")
        return None
    set_json_loads(fails)
    err = reinstall(db)
    db.execute("SELECT audit.record(kind => 't107.g1', payload => '{\"i\": 1}'::jsonb)")  # not read back
    sealed = seal_all(db)
    assert (err, sealed) == (None, None)
    assert set(status(db).problems) - before == set()
    assert both_verifiers(db) == (True, True)
    assert verify_chain(db).ok


def test_g2_hostile_global_json_adapters_registered_before_the_package_is_imported(db, jt):
    """Attack: a fresh interpreter registers, before importing pgaudit_py, a global jsonb and json loader
    that override load() (tuples), binary ones too, and a global JSON function reading objects as lists of
    pairs; then installs again, records, seals, asks status and both verifiers. Safe: all as on a plain
    interpreter. python.md: "JSON the package reads for itself ... it reads with `json.loads`, whatever
    `set_json_loads` you set, on the connection or globally"."""
    i = db.info
    script = f"""
import json, psycopg
from psycopg.types.json import JsonbLoader, JsonLoader, JsonbBinaryLoader, set_json_loads
class T(JsonbLoader):
    def load(self, data): return ("T", json.loads(bytes(data)))
class TJ(JsonLoader):
    def load(self, data): return ("T", json.loads(bytes(data)))
class TB(JsonbBinaryLoader):
    def load(self, data): return ("T",)
for n, c in (("jsonb", T), ("json", TJ), ("jsonb", TB)):
    psycopg.adapters.register_loader(n, c)
set_json_loads(lambda s: json.loads(s, object_pairs_hook=list))
from pgaudit_py import install, record, seal, status
from pgaudit_py.chain import verify_chain
with psycopg.connect(host={i.host!r}, port={i.port}, dbname={i.dbname!r}, user={i.user!r}, autocommit=True) as c:
    install(c)
    record(c, "t107.g2", payload={{"a": 1}})
    while seal(c).sealed: pass
    ok = c.execute("SELECT ok FROM audit.verify()").fetchone()[0]
    print(json.dumps([ok, verify_chain(c).ok, status(c).problems]))
"""
    before = set(status(db).problems)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    assert done.returncode == 0, done.stderr[-600:]
    ok_sql, ok_py, problems = json.loads(done.stdout.strip().splitlines()[-1])
    assert (ok_sql, ok_py) == (True, True)
    assert set(problems) - before == set()
