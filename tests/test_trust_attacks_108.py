"""A hundred-and-eighth attacker's trial, against the day's two mends.

  A. proofs of ownership (audit._prove_owner / _check_owner, migrations/0026): multi-statement messages
     mixing roles, set_config('role') in one SELECT, function SET clauses, DO blocks, pipeline mode
     (each Bind/Execute its own statement?), proofs left behind by the legit functions and taken by a
     trojan later in the same message; controls: the legit paths under SET ROLE, in one message, in a
     pipeline, partitions, baseline, the Python API.
  B. deep JSON reading (deep_json.deep_reading / nested, DEEP = 32; session._callers_json_map):
     strings full of brackets and escapes, values 31/32/33 deep, hostile loader classes, caches under
     thousands of loader classes, threads, asyncio, both verifiers.

Each test asserts the safe outcome, so it FAILS when the attack works. Objects are prefixed t108_.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from contextlib import suppress
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import JsonbLoader, JsonLoader, set_json_loads
from trial_helpers import both_verifiers, drop_made_under, seal_all

from pgaudit_py import (
    aio,
    deep_json,
    disable_rate_limit,
    disable_tracking,
    enable_rate_limit,
    enable_tracking,
    list_events,
    record,
    row_as_of,
    row_history,
    row_state_as_of,
)

T = "'public.t108_t'::regclass"
PROVE = f"SELECT audit._prove_owner({T}, md5(1::text)::uuid)"
UNREGISTER = f"SELECT audit._unregister_tracking({T}, 'audit.tracking_disabled', md5(1::text)::uuid)"


# ================================ A: proofs of ownership ================================

@pytest.fixture
def own(db, connect):
    """public.t108_t owned by t108_owner (a maintainer); t108_x a maintainer owning nothing; app_maintainer
    a member of both. public.t108_trojan(): t108_x's SECURITY DEFINER function that tries to untrack the
    table, and says whether it could. The table tracked by its owner."""
    db.execute("CREATE ROLE t108_owner IN ROLE audit_maintainer; CREATE ROLE t108_x LOGIN IN ROLE audit_maintainer;"
               " GRANT t108_owner, t108_x TO app_maintainer;"
               " GRANT CREATE ON SCHEMA public TO t108_owner, t108_x;"
               " CREATE TABLE public.t108_t (id int PRIMARY KEY, v int); ALTER TABLE public.t108_t OWNER TO t108_owner;"
               " INSERT INTO public.t108_t VALUES (1, 1), (2, 2)")
    db.execute(f"""CREATE FUNCTION public.t108_trojan() RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
                   SET search_path = pg_catalog AS $$
                   BEGIN PERFORM audit._unregister_tracking({T}, 'audit.tracking_disabled', md5(1::text)::uuid); RETURN true;
                   EXCEPTION WHEN insufficient_privilege THEN RETURN false; END $$;
                   ALTER FUNCTION public.t108_trojan() OWNER TO t108_x""")
    try:
        yield db
    finally:
        with suppress(psycopg.Error):
            db.execute("ROLLBACK")
        db.execute("DROP TABLE IF EXISTS public.t108_t, public.t108_pt, public.t108_xlog CASCADE")
        db.execute("DROP FUNCTION IF EXISTS public.t108_trojan(), public.t108_set_role(), public.t108_clause(),"
                   " public.t108_invoker_clause(), public.t108_xlog_trig() CASCADE")
        drop_made_under(db, "t108_")


def tracked(db) -> int:
    return db.execute(f"SELECT count(*) FROM audit.tracked_tables WHERE relid = {T}").fetchone()[0]


def x_events(db) -> int:
    return db.execute("SELECT count(*) FROM audit.event_intake WHERE db_role = 't108_x'").fetchone()[0]


def message(conn, statements: list[str]) -> tuple[str | None, list]:
    """BEGIN; the statements in one simple-query message; COMMIT (or ROLLBACK and the SQLSTATE); the last
    statement's rows."""
    conn.execute("BEGIN")
    try:
        cur = conn.execute("; ".join(statements))
        rows = []
        while True:
            with suppress(psycopg.ProgrammingError):
                rows = cur.fetchall()
            if not cur.nextset():
                break
    except psycopg.Error as e:
        conn.execute("ROLLBACK")
        message.last = str(e)
        return e.sqlstate, []
    conn.execute("COMMIT")
    return None, rows


def legit_calls():
    return {
        "enable_tracking": f"SELECT audit.enable_tracking({T})",
        "enable_tracking_baseline": f"SELECT audit.enable_tracking({T}, baseline => true)",
        "enable_rate_limit": f"SELECT audit.enable_rate_limit({T})",
        "disable_rate_limit": f"SELECT audit.disable_rate_limit({T})",
    }


@pytest.mark.parametrize("call", sorted(legit_calls()))
def test_a1_no_proof_left_by_a_legit_call_serves_a_trojan_later_in_the_same_message(own, connect, call):
    """Attack: the owner's one message runs a legit call (which proves and consumes) and then a maintainer's
    SECURITY DEFINER trojan, same statement_timestamp, same acting role: a proof the call left behind would
    serve it. roles.md: "functions prove and consume in one call, and leave no proof"."""
    db = own
    m = connect("app_maintainer")
    if call != "enable_tracking" and call != "enable_tracking_baseline":
        m.execute(f"SET ROLE t108_owner; SELECT audit.enable_tracking({T}); RESET ROLE")
    else:
        db.execute("UPDATE public.t108_t SET v = v")
    st, rows = message(m, ["SET LOCAL ROLE t108_owner", legit_calls()[call], "SELECT public.t108_trojan()"])
    assert st is None
    assert rows == [(False,)]
    assert tracked(db) == 1


def test_a2_set_config_role_inside_one_select_does_not_carry_a_proof_across(own, connect):
    """Attack: one SELECT whose target list switches role with set_config, proves as the owner, switches to
    t108_x and calls the helper: one statement, two roles. roles.md: "it takes a proof only for the role
    the session acts as (the one its events name as `db_role`)"."""
    db = own
    db.execute(f"SELECT audit.enable_tracking({T})")
    m = connect("app_maintainer")
    st, _ = message(m, ["SELECT set_config('role', 't108_owner', true), audit._prove_owner('public.t108_t'::regclass, md5(1::text)::uuid),"
                        " set_config('role', 't108_x', true),"
                        " audit._unregister_tracking('public.t108_t'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid)"])
    assert st == "42501"
    assert (tracked(db), x_events(db)) == (1, 0)


def test_a3_a_definer_trojan_may_not_switch_the_role_setting_to_the_owner(own, connect):
    """Attack: t108_x's SECURITY DEFINER function, run in the owner's session after the owner's hand-made
    proof... no: with no proof, it sets the `role` setting to the owner (set_config) so that _db_role()
    names the owner, proves (as itself) and unregisters. roles.md: "a helper ... takes a proof only for
    the role the session acts as"."""
    db = own
    db.execute(f"SELECT audit.enable_tracking({T})")
    db.execute(f"""CREATE FUNCTION public.t108_set_role() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
                   BEGIN PERFORM set_config('role', 't108_owner', true);
                         PERFORM audit._prove_owner({T}, md5(1::text)::uuid);
                         PERFORM audit._unregister_tracking({T}, 'audit.tracking_disabled', md5(1::text)::uuid); END $$;
                   ALTER FUNCTION public.t108_set_role() OWNER TO t108_x""")
    m = connect("app_maintainer")
    st, _ = message(m, ["SET LOCAL ROLE t108_owner", "SELECT public.t108_set_role()"])
    assert st is not None
    assert tracked(db) == 1


def test_a4_a_definer_function_with_a_set_role_clause_does_not_serve_as_the_owner(own, connect):
    """Attack: a SECURITY DEFINER function owned by t108_x carrying `SET role = t108_owner` (made by someone
    allowed to, then given to x): called by the owner's session (whose session user may set that role), its
    body would act as the owner with x's code. roles.md: "a proof of owning it serves the role the session
    acts as"."""
    db = own
    db.execute(f"SELECT audit.enable_tracking({T})")
    db.execute(f"""CREATE FUNCTION public.t108_clause() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
                   BEGIN PERFORM audit._prove_owner({T}, md5(1::text)::uuid);
                         PERFORM audit._unregister_tracking({T}, 'audit.tracking_disabled', md5(1::text)::uuid); END $$""")
    with suppress(psycopg.Error):
        db.execute("ALTER FUNCTION public.t108_clause() SET role = t108_owner")
    db.execute("ALTER FUNCTION public.t108_clause() OWNER TO t108_x")
    m = connect("app_maintainer")
    st, _ = message(m, ["SET LOCAL ROLE t108_owner", "SELECT public.t108_clause()"])
    assert st is not None
    assert tracked(db) == 1


def test_a5_an_invoker_function_with_a_set_role_clause_to_x_takes_no_owner_proof(own, connect):
    """Attack: the owner proves by hand, then (same statement) calls t108_x's plain function whose SET clause
    switches the role to t108_x: inside, _db_role() is x and the helper is called. roles.md: "it takes a
    proof only for the role the session acts as (the one its events name as `db_role`)"."""
    db = own
    db.execute(f"SELECT audit.enable_tracking({T})")
    x = connect("t108_x")
    x.execute(f"""CREATE FUNCTION public.t108_invoker_clause() RETURNS boolean LANGUAGE plpgsql
                  SET role = t108_x AS $$
                  BEGIN PERFORM audit._unregister_tracking({T}, 'audit.tracking_disabled', md5(1::text)::uuid); RETURN true;
                  EXCEPTION WHEN insufficient_privilege THEN RETURN false; END $$""")
    m = connect("app_maintainer")
    st, rows = message(m, ["SET LOCAL ROLE t108_owner", f"{PROVE}, public.t108_invoker_clause()"])
    assert [r[1:] for r in rows] in ([(False,)], []) and (st is None or st == "42501")  # r[0]: the proof's token
    assert (tracked(db), x_events(db)) == (1, 0)


def test_a6_a_do_block_that_proves_then_switches_role_is_refused(own, connect):
    """Attack: a DO block (one statement) sets the owner's role, proves, sets t108_x's role, and calls the
    helper. roles.md: "it takes a proof only for the role the session acts as"."""
    db = own
    db.execute(f"SELECT audit.enable_tracking({T})")
    m = connect("app_maintainer")
    st, _ = message(m, [f"""DO $$ BEGIN SET LOCAL ROLE t108_owner; PERFORM audit._prove_owner({T}, md5(1::text)::uuid);
                           SET LOCAL ROLE t108_x;
                           PERFORM audit._unregister_tracking({T}, 'audit.tracking_disabled', md5(1::text)::uuid); END $$"""])
    assert st == "42501"
    assert (tracked(db), x_events(db)) == (1, 0)


def test_a7_pipeline_statements_each_have_their_own_timestamp(own, connect):
    """Attack: in pipeline mode many statements go out back to back (extended protocol); if two shared a
    statement_timestamp, a proof made in one would serve the next. roles.md: "only in the statement that
    made the proof"."""
    m = connect("app_maintainer")
    with m.transaction():
        curs = []
        with m.pipeline():
            for _ in range(300):
                curs.append(m.execute("SELECT statement_timestamp()"))
        stamps = [c.fetchone()[0] for c in curs]
    assert len(set(stamps)) == len(stamps)


def test_a8_pipeline_proof_then_trojan_never_taken(own, connect):
    """Attack: the owner in pipeline mode sends its hand-made proof and (next Execute) a maintainer's trojan,
    200 times in one transaction, hoping for a statement_timestamp collision. roles.md: "only in the
    statement that made the proof"."""
    db = own
    db.execute(f"SELECT audit.enable_tracking({T})")
    m = connect("app_maintainer")
    m.execute("SET ROLE t108_owner")
    results = []
    with m.transaction():
        with m.pipeline():
            curs = []
            for _ in range(200):
                m.execute(PROVE)
                curs.append(m.execute("SELECT public.t108_trojan()"))
        results = [c.fetchone()[0] for c in curs]
    m.execute("RESET ROLE")
    assert not any(results)
    assert tracked(db) == 1


def test_a9_trigger_in_the_owners_statement_after_enable_tracking_takes_nothing(own, connect):
    """Attack: t108_x owns a log table whose AFTER trigger (x's SECURITY DEFINER) runs the trojan; the owner
    writes it in the same statement (a CTE) as enable_tracking. roles.md: "functions prove and consume in
    one call, and leave no proof"."""
    db = own
    x = connect("t108_x")
    x.execute("""CREATE TABLE public.t108_xlog (n int); GRANT INSERT, SELECT ON public.t108_xlog TO PUBLIC;
                 CREATE FUNCTION public.t108_xlog_trig() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
                 BEGIN PERFORM public.t108_trojan(); RETURN NULL; END $$;
                 CREATE TRIGGER t108_x AFTER INSERT ON public.t108_xlog FOR EACH STATEMENT
                     EXECUTE FUNCTION public.t108_xlog_trig()""")
    m = connect("app_maintainer")
    st, _ = message(m, ["SET LOCAL ROLE t108_owner",
                        f"WITH w AS (INSERT INTO public.t108_xlog VALUES (1) RETURNING n)"
                        f" SELECT audit.enable_tracking({T}) FROM w"])
    assert st is None, message.last
    assert tracked(db) == 1


def test_a10_default_expression_evaluated_between_prove_and_take(own, connect):
    """Attack: the owner's statement computes enable_tracking's argument with x's function (a plain function
    called after enable_tracking in the target list, and before it): the proofs are taken inside the call.
    roles.md: "functions prove and consume in one call, and leave no proof"."""
    db = own
    m = connect("app_maintainer")
    st, rows = message(m, ["SET LOCAL ROLE t108_owner",
                           f"SELECT public.t108_trojan() AS before, (audit.enable_tracking({T})).relid IS NOT NULL,"
                           " public.t108_trojan() AS after"])
    assert st is None
    assert rows == [(False, True, False)]
    assert tracked(db) == 1


def test_a15_a_proof_committed_mid_message_serves_nothing_after(own, connect):
    """Attack: one simple-query message with an explicit COMMIT in the middle: the proof is committed, and
    the next transaction in the same message shares its statement_timestamp; the trojan runs there.
    roles.md: "only in the statement that made the proof"."""
    db = own
    db.execute(f"SELECT audit.enable_tracking({T})")
    m = connect("app_maintainer")
    cur = m.execute(f"SET ROLE t108_owner; BEGIN; {PROVE}; COMMIT; SELECT public.t108_trojan()")
    while cur.nextset():
        pass
    assert cur.fetchall() == [(False,)]
    m.execute("RESET ROLE")
    assert tracked(db) == 1


def test_a16_prepared_pipeline_statements_bind_only_never_share_a_proof(own, connect):
    """Attack: as a8 with every statement prepared (prepare_threshold=0: Bind/Execute only, no Parse),
    hoping the timestamp is set per Parse only. roles.md: "only in the statement that made the proof"."""
    db = own
    db.execute(f"SELECT audit.enable_tracking({T})")
    m = connect("app_maintainer", prepare_threshold=0)
    m.execute("SET ROLE t108_owner")
    with m.transaction():
        with m.pipeline():
            curs = []
            for _ in range(150):
                m.execute(PROVE)
                curs.append(m.execute("SELECT public.t108_trojan()"))
        results = [c.fetchone()[0] for c in curs]
    m.execute("RESET ROLE")
    assert not any(results)
    assert tracked(db) == 1


def test_a17_a_server_side_cursor_proves_in_one_fetch_and_the_trojan_runs_in_the_next(own, connect):
    """Attack: the owner declares a cursor whose rows prove (lazily, at FETCH); a trojan cursor in the same
    transaction runs at a later FETCH. roles.md: "only in the statement that made the proof"."""
    db = own
    db.execute(f"SELECT audit.enable_tracking({T})")
    m = connect("app_maintainer")
    m.execute("BEGIN")
    try:
        m.execute("SET LOCAL ROLE t108_owner")
        m.execute(f"DECLARE c1 CURSOR FOR SELECT audit._prove_owner({T}, md5(1::text)::uuid) FROM generate_series(1, 3)")
        m.execute("DECLARE c2 CURSOR FOR SELECT public.t108_trojan() FROM generate_series(1, 3)")
        m.execute("FETCH 1 FROM c1")
        got = m.execute("FETCH 1 FROM c2").fetchall()
        m.execute("COMMIT")
    except psycopg.Error:
        m.execute("ROLLBACK")
        raise
    assert got == [(False,)]
    assert tracked(db) == 1


# ---- controls: the legit paths still work ----

def test_a11_control_partitions_by_the_owner_under_set_role_in_one_transaction(own, connect):
    """Control: the owner, under SET ROLE, tracks a partitioned table, then creates one partition and
    attaches another, in one transaction of many statements; each is covered. capture.md/roles.md: a
    maintainer owning the table may track it and its partitions."""
    db = own
    m = connect("app_maintainer")
    with m.transaction():
        m.execute("SET LOCAL ROLE t108_owner")
        m.execute("CREATE TABLE public.t108_pt (id int, v int) PARTITION BY RANGE (id)")
        m.execute("CREATE TABLE public.t108_pt1 PARTITION OF public.t108_pt FOR VALUES FROM (0) TO (10)")
        m.execute("SELECT audit.enable_tracking('public.t108_pt'::regclass)")
        m.execute("CREATE TABLE public.t108_pt2 PARTITION OF public.t108_pt FOR VALUES FROM (10) TO (20)")
        m.execute("CREATE TABLE public.t108_pt3 (id int, v int)")
        m.execute("ALTER TABLE public.t108_pt ATTACH PARTITION public.t108_pt3 FOR VALUES FROM (20) TO (30)")
        m.execute("INSERT INTO public.t108_pt VALUES (1, 1), (11, 1), (21, 1)")
    n = db.execute("SELECT count(*) FROM audit.event_intake WHERE kind = 'public.t108_pt.insert'"
                   " OR kind LIKE 'public.t108_pt.%insert%'").fetchone()[0]
    assert n >= 3, db.execute("SELECT kind FROM audit.event_intake ORDER BY intake_id").fetchall()


def test_a12_control_pipeline_and_one_message_legit_calls(own, connect):
    """Control: enable_tracking (with baseline), enable_rate_limit, disable_rate_limit, disable_tracking in
    pipeline mode under SET ROLE, and again all in one message: each is taken."""
    db = own
    m = connect("app_maintainer")
    m.execute("SET ROLE t108_owner")
    with m.transaction(), m.pipeline():
        m.execute(f"SELECT audit.enable_tracking({T}, baseline => true)")
        m.execute(f"SELECT audit.enable_rate_limit({T})")
        m.execute(f"SELECT audit.disable_rate_limit({T})")
    assert tracked(db) == 1
    with m.transaction(), m.pipeline():
        m.execute(f"SELECT audit.disable_tracking({T})")
    assert tracked(db) == 0
    m.execute("RESET ROLE")
    st, _ = message(m, ["SET LOCAL ROLE t108_owner", f"SELECT audit.enable_tracking({T}, baseline => true)",
                        f"SELECT audit.enable_rate_limit({T})", f"SELECT audit.disable_rate_limit({T})"])
    assert st is None and tracked(db) == 1


def test_a13_control_python_api_under_set_role(own, connect):
    """Control: pgaudit_py.enable_tracking / enable_rate_limit / disable_rate_limit / disable_tracking as the
    owner (SET ROLE), and the sync and aio paths."""
    db = own
    m = connect("app_maintainer")
    m.execute("SET ROLE t108_owner")
    enable_tracking(m, "public.t108_t", baseline=True)
    enable_rate_limit(m, "public.t108_t")
    assert disable_rate_limit(m, "public.t108_t") is True
    assert disable_tracking(m, "public.t108_t") is True
    assert tracked(db) == 0

    async def go():
        info = db.info
        a = await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                  user="app_maintainer", autocommit=True)
        try:
            await a.execute("SET ROLE t108_owner")
            await aio.enable_tracking(a, "public.t108_t")
        finally:
            await a.close()
    asyncio.run(go())
    assert tracked(db) == 1


def test_a14_x_under_its_own_role_cannot_piggyback_on_the_owners_enable_in_one_message(own, connect):
    """Attack: one message: owner enables tracking, then SET LOCAL ROLE t108_x and x's direct helper call;
    events would name x. roles.md: "it takes a proof only for the role the session acts as"."""
    db = own
    m = connect("app_maintainer")
    st, _ = message(m, ["SET LOCAL ROLE t108_owner", f"SELECT audit.enable_tracking({T})",
                        "SET LOCAL ROLE t108_x", UNREGISTER])
    assert st == "42501"
    assert x_events(db) == 0


def test_a18_control_python_api_in_one_transaction_of_many_statements(own, connect):
    """Control: a non-autocommit connection, SET ROLE, then the Python API's enable_tracking (baseline),
    enable_rate_limit, disable_rate_limit, disable_tracking and enable_tracking again, one transaction."""
    db = own
    m = connect("app_maintainer", autocommit=False)
    m.execute("SET ROLE t108_owner")
    enable_tracking(m, "public.t108_t", baseline=True)
    enable_rate_limit(m, "public.t108_t")
    disable_rate_limit(m, "public.t108_t")
    disable_tracking(m, "public.t108_t")
    enable_tracking(m, "public.t108_t")
    m.commit()
    assert tracked(db) == 1


def test_a19_partition_created_by_the_owner_with_a_trojan_in_the_same_message(own, connect):
    """Attack: the owner's one message creates a partition of its tracked tree (the event trigger proves and
    covers it) and runs x's trojan aimed at the tracked parent. roles.md: "functions prove and consume in
    one call, and leave no proof"."""
    db = own
    db.execute("""CREATE OR REPLACE FUNCTION public.t108_trojan() RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER
                   SET search_path = pg_catalog AS $$
                   BEGIN PERFORM audit._unregister_tracking('public.t108_pt'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid);
                   RETURN true; EXCEPTION WHEN insufficient_privilege THEN RETURN false; END $$""")
    m = connect("app_maintainer")
    m.execute("SET ROLE t108_owner; CREATE TABLE public.t108_pt (id int, v int) PARTITION BY RANGE (id);"
              " SELECT audit.enable_tracking('public.t108_pt'::regclass); RESET ROLE")
    st, rows = message(m, ["SET LOCAL ROLE t108_owner",
                           "CREATE TABLE public.t108_pt1 PARTITION OF public.t108_pt FOR VALUES FROM (0) TO (10)",
                           "SELECT public.t108_trojan()"])
    assert (st, rows) == (None, [(False,)]), getattr(message, "last", None)
    assert db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.t108_pt'::regclass").fetchone()[0] == 1


# ================================ B: deep JSON reading ================================

def nest(n: int, leaf: str = "1") -> str:
    return "[" * n + leaf + "]" * n


@pytest.fixture
def jt(db):
    """public.t108_j (id, doc jsonb), tracked; row 1. Events t108.* recorded by the tests."""
    db.execute("CREATE TABLE public.t108_j (id int PRIMARY KEY, doc jsonb)")
    try:
        enable_tracking(db, "public.t108_j")
        yield db
    finally:
        with suppress(Exception):
            db.execute("ROLLBACK")
        db.execute("DROP TABLE IF EXISTS public.t108_j CASCADE")
        drop_made_under(db, "t108_")


def put(db, kind: str, payload_json: str) -> None:
    db.execute("SELECT audit.record(%s, payload => %s::jsonb)", (kind, payload_json))


def refusing(marker: str):
    def f(s):
        if marker.encode() in bytes(s):
            raise ValueError("refused on purpose")
        return json.loads(s)
    return f


BRACKETS = ["[[[[" * 20, "]]]]" * 20, '\\"[[[[' * 20, "\\\\" + "[" * 60, '{{{{"' * 10, "\\u005b" * 40]


@pytest.mark.parametrize("i", range(len(BRACKETS)))
def test_b1_a_shallow_value_with_bracketful_strings_is_refused_as_the_loader_refused(jt, psycopg_globals, i):
    """Attack: a shallow payload whose strings hold many brackets, quotes and backslashes, to make nested()
    count depth inside strings and re-read a value the caller's loader refused on purpose. python.md:
    "An error your function raises on a value less deeply nested is raised to you as it is"."""
    db = jt
    put(db, "t108.b1", json.dumps({"s": BRACKETS[i], "refuse_me": 1}))
    set_json_loads(refusing("refuse_me"), db)
    with pytest.raises(ValueError):
        list_events(db, kind_prefix="t108.b1")


def test_b2_depth_counting_is_not_thrown_off_by_escaped_backslashes_before_quotes(jt, psycopg_globals):
    """Attack: strings ending in backslashes (`\\\\"`) so that a naive scanner thinks a string goes on and
    skips real brackets: a value 40 deep, refused by a loader that fails only by depth (RecursionError), must
    still be read. python.md: "where that fails on a value nested 32 levels deep or more ... reads"."""
    db = jt
    inner = nest(40, json.dumps("x\\"))
    doc = json.dumps({"a": "\\", "b": "\\\\\"", "c": json.loads(inner)})

    def shallow_only(s):
        if deep_json.nested(s, 20):
            raise RecursionError("too deep")
        return json.loads(s)
    put(db, "t108.b2", doc)
    set_json_loads(shallow_only, db)
    ev = list_events(db, kind_prefix="t108.b2")
    assert ev[0].payload["b"] == "\\\\\""
    v = ev[0].payload["c"]
    for _ in range(40):
        v = v[0]
    assert v == "x\\"


@pytest.mark.parametrize("depth,raised", [(30, True), (31, True), (32, False), (33, False)])
def test_b3_the_threshold_at_31_32_33(jt, psycopg_globals, depth, raised):
    """Attack/edge: the caller's function refuses every array on purpose (ValueError); a payload nested
    `depth` levels (the object counts one). python.md: "An error your function raises on a value less
    deeply nested is raised to you as it is ... Past 32 levels the package cannot tell a refusal from a depth
    limit, and reads the value"."""
    db = jt
    put(db, "t108.b3", json.dumps({"a": json.loads(nest(depth - 1))}))
    set_json_loads(refusing("["), db)
    if raised:
        with pytest.raises(ValueError):
            list_events(db, kind_prefix="t108.b3")
    else:
        ev = list_events(db, kind_prefix="t108.b3")
        assert deep_json.nested(json.dumps(ev[0].payload).encode(), depth)


def test_b4_a_loader_class_whose_init_subclass_raises(jt, psycopg_globals):
    """Attack: the caller's loader class forbids subclasses (__init_subclass__ raises): the package's
    subclass cannot be made. The wrappers must still read through the caller's class (or fail cleanly), never
    fall back to psycopg's default silently. python.md: "JSON values the package returns to you are read by
    your connection's JSON loader"."""
    db = jt
    put(db, "t108.b4", '{"n": 1.5}')

    class Final(JsonbLoader):
        def __init_subclass__(cls, **kw):
            raise TypeError("final")

        def load(self, data):
            return ("mine", json.loads(bytes(data)))
    db.adapters.register_loader("jsonb", Final)
    try:
        ev = list_events(db, kind_prefix="t108.b4")
    except TypeError:
        return  # refused, not silently another loader's reading
    assert ev[0].payload == ("mine", {"n": 1.5})


def test_b5_a_loader_class_with_a_metaclass_and_classmethod_load(jt, psycopg_globals):
    """Attack: a loader class made by a metaclass whose __eq__ says every loader is equal and whose load is a
    classmethod; another, equal to it, reads differently. python.md: "JSON values the package returns to you
    are read by your connection's JSON loader"."""
    db = jt
    put(db, "t108.b5", '{"n": 1.5}')

    class Meta(type(JsonbLoader)):
        def __eq__(cls, other):
            return isinstance(other, Meta)

        def __hash__(cls):
            return 1

    def make(tag):
        class L(JsonbLoader, metaclass=Meta):  # noqa
            @classmethod
            def load(cls, data):
                return (tag, json.loads(bytes(data)))
        return L
    for tag in ("one", "two", "three"):
        db.adapters.register_loader("jsonb", make(tag))
        own = db.execute("SELECT payload FROM audit.events WHERE kind = 't108.b5'").fetchone()[0]
        assert list_events(db, kind_prefix="t108.b5")[0].payload == own


def test_b6_a_staticmethod_load_refusing_shallow_is_raised(jt, psycopg_globals):
    """Attack: a loader whose load is a staticmethod refusing on purpose (RecursionError, to pass for depth),
    on a value 40 deep: the package must not re-read it past the caller's overridden load. python.md: "A
    JSON loader class of ... as it is"."""
    db = jt
    put(db, "t108.b6", json.dumps({"a": json.loads(nest(40))}))

    class L(JsonbLoader):
        @staticmethod
        def load(data):
            raise RecursionError("on purpose")
    db.adapters.register_loader("jsonb", L)
    with pytest.raises(RecursionError):
        list_events(db, kind_prefix="t108.b6")


def test_b7_json_loader_set_but_not_jsonb(jt, psycopg_globals):
    """Attack: a loader registered for json only: jsonb values (payloads) must be read by psycopg's jsonb
    loader, json values by the caller's. python.md: "json and jsonb loaders"... read by your connection's
    JSON loader."""
    db = jt
    put(db, "t108.b7", '{"n": 1.5}')

    class J(JsonLoader):
        def load(self, data):
            return "json-loader"
    db.adapters.register_loader("json", J)
    ev = list_events(db, kind_prefix="t108.b7")
    assert ev[0].payload == {"n": 1.5}
    assert db.execute("SELECT '{}'::json").fetchone()[0] == "json-loader"


def test_b8_a_loads_property_that_raises(jt, psycopg_globals):
    """Attack: the caller's loader class defines `loads` as a property raising on read: the package's deep
    path reads self.loads. A refusal must come out as the caller's error, not a silent default reading.
    python.md: "JSON values the package returns to you are read by your connection's JSON loader"."""
    db = jt
    put(db, "t108.b8", json.dumps({"a": json.loads(nest(50))}))

    class P(JsonbLoader):
        @property
        def loads(self):
            raise LookupError("no loads for you")

        @loads.setter
        def loads(self, v):
            pass
    db.adapters.register_loader("jsonb", P)
    with pytest.raises(LookupError):
        db.execute("SELECT '{}'::jsonb").fetchone()
    with pytest.raises(LookupError):
        list_events(db, kind_prefix="t108.b8")


def test_b9_a_shallow_recursionerror_on_purpose_is_raised_in_every_wrapper(jt, psycopg_globals):
    """Attack: a JSON function raising RecursionError on purpose for a shallow value marked 'secret': each
    JSON-returning wrapper must raise it. python.md: "a function that refuses a value refuses it in the
    package's functions too"."""
    db = jt
    db.execute("""INSERT INTO public.t108_j VALUES (1, '{"secret": 1}')""")
    put(db, "t108.b9", '{"secret": 2}')
    at = db.execute("SELECT clock_timestamp()").fetchone()[0]

    def f(s):
        if b"secret" in bytes(s):
            raise RecursionError("on purpose")
        return json.loads(s)
    set_json_loads(f, db)
    for call in (lambda: list_events(db, kind_prefix="t108.b9"),
                 lambda: row_as_of(db, "public.t108_j", "1", at),
                 lambda: row_history(db, "public.t108_j", "1"),
                 lambda: row_state_as_of(db, "public.t108_j", "1", at)):
        with pytest.raises(RecursionError):
            call()


def test_b10_thousands_of_loader_classes_keep_caches_bounded(jt, psycopg_globals):
    """Attack (memory): 1,500 distinct loader classes set one after another on the connection, each read
    through list_events: the package's caches and psycopg's class cache must stay bounded. python.md:
    "no stale cache" / trial 107 a14: psycopg's class cache had grown by four for each."""
    from psycopg.types import json as pj
    db = jt
    put(db, "t108.b10", '{"n": 1}')
    make_cache = getattr(pj, "_make_loader", None)
    before = make_cache.cache_info().currsize if hasattr(make_cache, "cache_info") else None
    from psycopg.adapt import AdaptersMap
    gc.collect()
    opt_before = len(AdaptersMap._optimised)
    for i in range(1500):
        cls = type(f"L{i}", (JsonbLoader,), {})
        db.adapters.register_loader("jsonb", cls)
        list_events(db, kind_prefix="t108.b10", page_size=1)
        del cls
    db.adapters.register_loader("jsonb", JsonbLoader)
    gc.collect()
    # the classes made from a loader class are its subclasses (a scan of gc.get_objects() with
    # isinstance woke Django's lazy objects, left unconfigured by earlier tests, which raised)
    below, live = [JsonbLoader], []
    while below:
        for c in below.pop().__subclasses__():
            below.append(c)
            live += [c] if c.__name__.startswith("DeepReading") else []
    # the caller's own registrations put each class in psycopg's AdaptersMap._optimised once; the package's
    # reads must add nothing there (nor keep a subclass alive for each class)
    grown = len(AdaptersMap._optimised) - opt_before
    assert (len(live) <= 200, grown <= 1500 + 10) == (True, True), (len(live), grown)
    if before is not None:
        assert make_cache.cache_info().currsize == before


def test_b11_threads_each_with_their_own_loader_read_their_own(jt, connect, psycopg_globals):
    """Attack: eight threads, each connection with its own tagging loader class, reading at once (the
    by_identity caches shared): each must get its own tag. python.md: "read by your connection's JSON
    loader"."""
    jt.execute("SELECT audit.record('t108.b11', payload => '{\"n\": 1}'::jsonb)")
    errors: list = []

    def work(i):
        try:
            c = connect()
            tag = f"tag{i}"

            class L(JsonbLoader):
                def load(self, data, tag=tag):
                    return (tag, json.loads(bytes(data)))
            c.adapters.register_loader("jsonb", L)
            for _ in range(40):
                got = list_events(c, kind_prefix="t108.b11")[0].payload
                if got != (tag, {"n": 1}):
                    errors.append((tag, got))
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


def test_b12_aio_reads_deep_and_refuses_shallow(jt, psycopg_globals):
    """Attack: the aio wrappers under a loader refusing a shallow value on purpose, and reading one 33 deep
    (failing by RecursionError at depth 20). python.md: same rules for pgaudit_py.aio."""
    db = jt
    put(db, "t108.b12s", '{"refuse_me": 1}')
    put(db, "t108.b12d", json.dumps({"a": json.loads(nest(40))}))

    def f(s):
        if b"refuse_me" in bytes(s):
            raise ValueError("on purpose")
        if deep_json.nested(s, 20):
            raise RecursionError("deep")
        return json.loads(s, parse_float=Decimal)

    async def go():
        info = db.info
        a = await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                  user=info.user, autocommit=True)
        try:
            set_json_loads(f, a)
            with pytest.raises(ValueError):
                await aio.list_events(a, kind_prefix="t108.b12s")
            ev = await aio.list_events(a, kind_prefix="t108.b12d")
            return ev[0].payload
        finally:
            await a.close()
    payload = asyncio.run(go())
    v = payload["a"]
    for _ in range(40):
        v = v[0]
    assert v == 1


def test_b13_both_verifiers_agree_on_payloads_built_to_fool_nested(jt):
    """Attack: payloads of bracketful strings, escaped quotes, exactly 31/32/33 deep, sealed; both
    verifiers must say the chain holds (and agree). tamper-evidence.md: both verifiers recompute the same
    chain."""
    db = jt
    for i, s in enumerate(BRACKETS):
        put(db, f"t108.b13.{i}", json.dumps({"s": s, "k": '\\"' * 33}))
    for d in (31, 32, 33, 200):
        put(db, f"t108.b13.d{d}", json.dumps({"a": json.loads(nest(d, json.dumps("[\\\"{")))}))
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_b14_record_then_read_back_values_exactly_32_deep_under_decimal(jt, psycopg_globals):
    """Edge: a Decimal-reading loader that fails at depth 32 exactly (RecursionError): the value is read by
    the loop, numbers still Decimal. python.md: "reading each number with your function, so `Decimal` holds
    at every depth"."""
    db = jt
    record(db, "t108.b14", payload={"a": json.loads(nest(31, "1.25"))})

    def f(s):
        if deep_json.nested(s, 32):
            raise RecursionError("deep")
        return json.loads(s, parse_float=Decimal)
    set_json_loads(f, db)
    v = list_events(db, kind_prefix="t108.b14")[0].payload["a"]
    for _ in range(31):
        v = v[0]
    assert v == Decimal("1.25") and isinstance(v, Decimal)


@pytest.mark.parametrize("depth,raised", [(31, True), (33, False)])
def test_b15_row_as_of_threshold_on_a_row_image(jt, psycopg_globals, depth, raised):
    """Edge: a tracked row whose doc nests so that the image is `depth` deep; the caller's function refuses
    arrays on purpose. python.md: "An error your function raises on a value less deeply nested is raised to
    you as it is"."""
    db = jt
    db.execute("INSERT INTO public.t108_j VALUES (1, %s::jsonb)", (nest(depth - 2),))
    at = db.execute("SELECT clock_timestamp()").fetchone()[0]
    set_json_loads(refusing("["), db)
    if raised:
        with pytest.raises(ValueError):
            row_as_of(db, "public.t108_j", "1", at)
    else:
        img = row_as_of(db, "public.t108_j", "1", at)
        assert img["id"] == 1


def test_b16_asyncio_tasks_each_with_their_own_loader(jt, psycopg_globals):
    """Attack: six asyncio connections at once, each with its own tagging loader class, reading through
    pgaudit_py.aio concurrently. python.md: "read by your connection's JSON loader"."""
    db = jt
    put(db, "t108.b16", '{"n": 1}')
    info = db.info

    async def one(i):
        a = await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                  user=info.user, autocommit=True)
        try:
            class L(JsonbLoader):
                def load(self, data, tag=i):
                    return (tag, json.loads(bytes(data)))
            a.adapters.register_loader("jsonb", L)
            out = []
            for _ in range(20):
                out.append((await aio.list_events(a, kind_prefix="t108.b16"))[0].payload)
                await asyncio.sleep(0)
            return [o for o in out if o != (i, {"n": 1})]
        finally:
            await a.close()

    async def go():
        return await asyncio.gather(*(one(i) for i in range(6)))
    assert asyncio.run(go()) == [[]] * 6


def test_b17_a_loader_class_whose_metaclass_lies_about_its_name(jt, psycopg_globals):
    """Attack: the caller's loader class comes from a metaclass whose __name__ is not a str (psycopg reads
    with the class all the same): the package names its subclass after it. python.md: "JSON values the
    package returns to you are read by your connection's JSON loader ... and returned as it made them"."""
    db = jt
    put(db, "t108.b17", '{"n": 1.5}')

    class Meta(type(JsonbLoader)):
        @property
        def __name__(cls):
            return 17

    class L(JsonbLoader, metaclass=Meta):
        pass
    db.adapters.register_loader("jsonb", L)
    own = db.execute("SELECT payload FROM audit.events WHERE kind = 't108.b17'").fetchone()[0]
    assert list_events(db, kind_prefix="t108.b17")[0].payload == own
