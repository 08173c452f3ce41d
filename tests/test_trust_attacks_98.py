"""A ninety-eighth attacker's trial: the first trial's classes, in variants no earlier trial tried.

Classes (test names carry the letter):
  O. the table owner's code run with an audit role's (or another caller's) rights: spies on an
     inheritance child of a tracked table (index expression, folded partial-index predicate, CHECK,
     statistics, forced row-level security) while a baseline, history, status and the verifiers run
     over the parent; a composite key made of the owner's domain (CHECK calling the spy) and the
     owner's range type (subtype_diff calling the spy) looked up by the reader in several spellings.
  C. capture switched off or lying: a tracked child under an untracked grandparent made after
     tracking (DDL on the parent, not the tracked table) written through the grandparent (UPDATE,
     DELETE, MERGE, writable CTE, TRUNCATE); a baseline through an inheritance child whose forced
     policy hides rows; an owner's rule that turns a writer's DELETE into an UPDATE of another row.
  F. forged history: an owner's BEFORE trigger that rewrites the writer's context settings for the
     capture and NEW in one go (db_role must stay the writer's); a record() that claims a captured
     kind of a tracked table spelled by case or by a look-alike prefix; a kind_prefix a maintainer
     gives one table that is another tracked table's prefix.
  L. locale and settings: under lc_messages German, with DateStyle, IntervalStyle, TimeZone,
     extra_float_digits, bytea_output, standard_conforming_strings off and a hostile search_path
     (pg_temp look-alikes), the guards refuse with the same SQLSTATEs and both verifiers agree.
  V. hostile values: a row of odd built-in types (money, timetz, intervals, arrays with odd bounds,
     bit strings, tsvector, tsquery, xml, pg_lsn, macaddr8, multiranges, geometric -0 and NaN),
     updates to values only storage tells apart, json with \\u0000, lone surrogates, duplicate keys,
     noncharacters and RTL overrides; both verifiers agree after sealing and both catch a tamper.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t98_; the kit's roles are dropped afterwards.
"""

from __future__ import annotations

import json
from contextlib import suppress

import psycopg
import pytest
from trial_helpers import (
    both_verifiers,
    n_events,
    problems_of,
    seal_all,
    sqlstate_of,
    table_owner_kit,
    tamper,
    try_write,
)

from pgaudit_py import enable_tracking, list_events, record, row_as_of, row_history, status
from pgaudit_py.chain import verify_chain


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t98") as k:
        yield k


MAY_RUN_AS = {"t98_owner", "app_writer", "audit_sandbox", "t98_mallory"}


def spy_sink(conns) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def keep(n: psycopg.errors.Diagnostic) -> None:
        m = n.message_primary or ""
        if m.startswith("t98spy "):
            what, who = m.removeprefix("t98spy ").split("|", 1)
            seen.append((what, who))

    for c in conns:
        c.add_notice_handler(keep)
    return seen


SPY = """
CREATE FUNCTION public.t98_spy(what text, v anyelement) RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 't98spy %|%', what, current_user;
    RETURN true;
END $$;
"""


def kinds(db, prefix: str) -> list[str]:
    return [r[0].rsplit(".", 1)[1] for r in db.execute(
        "SELECT kind FROM audit.events WHERE starts_with(kind, %s) ORDER BY seq NULLS LAST, intake_id", [prefix])]


def refusal(conn, sql: str, params=None) -> str | None:
    """None, or the SQLSTATE of a refusal (rolled back in autocommit)."""
    return sqlstate_of(conn, sql, params)


# ================================ O: the owner's code, as whom ================================

def test_o1_spies_on_a_partition_only_never_run_as_a_privileged_role(kit):
    """Attack: the tracked table's owner partitions it, and hangs its code on one partition only (an index expression, a partial index whose predicate is a folded constant, a
    CHECK, expression statistics, forced row-level security with a policy). Then the maintainer
    tracks the parent with a baseline (which reads the hierarchy), the writer writes through the
    parent, and the sealer, both verifiers, the reader's list and history, and status run. Safe: the
    spy never reports an audit role but the sandbox, nor the maintainer, reader or superuser."""
    db = kit.db
    seen = spy_sink([db, kit.owner, kit.writer, kit.reader, kit.maint, kit.mallory])
    o = kit.owner
    o.execute(SPY)
    o.execute("""CREATE TABLE public.t98_p (id int PRIMARY KEY, v int, note text) PARTITION BY RANGE (id);
                 CREATE TABLE public.t98_p0 PARTITION OF public.t98_p FOR VALUES FROM (0) TO (2);
                 CREATE TABLE public.t98_c PARTITION OF public.t98_p FOR VALUES FROM (2) TO (100);
                 INSERT INTO public.t98_p VALUES (1, 1, 'a');
                 INSERT INTO public.t98_c VALUES (2, 2, 'b');
                 CREATE INDEX t98_c_ix ON public.t98_c ((public.t98_spy('child_index', v)));
                 CREATE INDEX t98_c_px ON public.t98_c (v) WHERE public.t98_spy('child_folded', 1);
                 ALTER TABLE public.t98_c ADD CONSTRAINT t98_c_ck CHECK (public.t98_spy('child_check', v));
                 CREATE STATISTICS public.t98_c_st ON (v + 1), (public.t98_spy('child_stats', 3)) FROM public.t98_c;
                 GRANT ALL ON public.t98_p, public.t98_p0, public.t98_c TO app_writer""")
    # no RLS first: the baseline would (rightly) refuse it on the table itself
    try:
        enable_tracking(kit.maint, "public.t98_p", baseline=True)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"an honest baseline of a parent with a plain child was refused: {e}")
    o.execute("""ALTER TABLE public.t98_c ENABLE ROW LEVEL SECURITY; ALTER TABLE public.t98_c FORCE ROW LEVEL SECURITY;
                 CREATE POLICY t98_c_pol ON public.t98_c USING (public.t98_spy('child_policy', v))
                   WITH CHECK (public.t98_spy('child_policy_check', v))""")
    w = kit.writer
    w.execute("UPDATE public.t98_p SET v = v + 10")
    w.execute("INSERT INTO public.t98_c VALUES (3, 3, 'c')")
    w.execute("DELETE FROM public.t98_c WHERE id = 3")
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    at = kit.tick()
    list_events(kit.reader, kind_prefix="public.t98_p")
    row_history(kit.reader, "public.t98_p", "2")
    row_history(kit.reader, "public.t98_c", "2")
    row_as_of(kit.reader, "public.t98_c", "2", at)
    status(db)
    ran_as = {who for _, who in seen}
    assert ran_as, "the spy never ran: the attack was not set up"
    assert ran_as <= MAY_RUN_AS, f"the child's code ran as {sorted(ran_as - MAY_RUN_AS)}: {sorted(set(seen))}"
    assert both_verifiers(db) == (True, True)


def test_o2_a_key_of_the_owners_domain_and_range_is_looked_up_without_running_their_code(kit):
    """Attack: the key is (d, r): d of the owner's domain over int whose CHECK calls the spy, r of the
    owner's range type over int whose subtype_diff calls the spy (a GiST exclusion makes it used).
    The reader asks row_history, row_as_of and row_state_as_of for the row in several spellings (the
    doc: a domain is read as its base type, a type of anyone's making taken as given). Safe: the
    spy never runs as the reader, the maintainer, an audit role but the sandbox, or the superuser,
    and the row's history is found by its own spelling."""
    db = kit.db
    seen = spy_sink([db, kit.owner, kit.writer, kit.reader, kit.maint])
    o = kit.owner
    o.execute(SPY)
    o.execute("""CREATE DOMAIN public.t98_dom AS int CHECK (public.t98_spy('domain', VALUE));
                 CREATE FUNCTION public.t98_diff(a int4, b int4) RETURNS float8 IMMUTABLE LANGUAGE plpgsql AS $$
                 BEGIN RAISE NOTICE 't98spy %|%', 'subtype_diff', current_user; RETURN b - a; END $$;
                 CREATE TYPE public.t98_rng AS RANGE (subtype = int4, subtype_diff = public.t98_diff);
                 CREATE TABLE public.t98_k (d public.t98_dom, r public.t98_rng, v int, PRIMARY KEY (d, r));
                 GRANT ALL ON public.t98_k TO app_writer""")
    enable_tracking(kit.maint, "public.t98_k", baseline=True)
    w = kit.writer
    w.execute("INSERT INTO public.t98_k VALUES (7, '[1,3)', 1)")
    w.execute("UPDATE public.t98_k SET v = 2")
    seen.clear()
    at = kit.tick()
    key = db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.t98_k.insert'").fetchone()[0]
    found = {}
    for spelled in [key, '[7, "[1,3)"]', '[ 7 , "[1,2]" ]', '["7", "[1,3)"]']:
        found[spelled] = (kit.history("public.t98_k", spelled), kit.state("public.t98_k", spelled, at)[0])
        with suppress(Exception):
            row_history(kit.reader, "public.t98_k", spelled)
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    status(db)
    ran_as = {who for _, who in seen}
    assert ran_as <= {"audit_sandbox", "t98_owner", "app_writer"}, f"the owner's code ran as {sorted(ran_as)}: {seen}"
    assert found[key] == (["public.t98_k.insert", "public.t98_k.update"], "existed"), found


# ============================= C: capture switched off or lying =============================

@pytest.mark.parametrize("route", ["inherit", "partition"])
def test_c1_writes_through_an_untracked_grandparent_made_after_tracking(kit, route):
    """Attack: the owner's tracked table t98_t is made a child (or partition) of an untracked t98_mid
    (refused or captured: trial 11). After that, the owner makes t98_mid a child (or partition) of
    a new untracked t98_top: DDL on t98_mid and t98_top, never on the tracked table. Then the writer
    writes through t98_top: UPDATE, DELETE, MERGE, a writable CTE, TRUNCATE. Safe: every change of
    t98_t's rows has its event, or a DDL that makes the route is refused."""
    db, o = kit.db, kit.owner
    part = " PARTITION BY RANGE (id)" if route == "partition" else ""
    o.execute(f"""CREATE TABLE public.t98_mid (id int, v int, note text){part};
                 CREATE TABLE public.t98_t (id int PRIMARY KEY, v int, note text);
                 INSERT INTO public.t98_t VALUES (1, 0, 'a'), (2, 0, 'b'), (3, 0, 'c'), (4, 0, 'd');
                 CREATE TABLE public.t98_top (id int, v int, note text){part};
                 GRANT ALL ON public.t98_mid, public.t98_t, public.t98_top TO app_writer""")
    if route == "partition":  # the tracked table is the partitioned t98_mid, t98_t its partition
        o.execute("ALTER TABLE public.t98_mid ATTACH PARTITION public.t98_t FOR VALUES FROM (0) TO (100);"
                  " ALTER TABLE public.t98_mid ADD PRIMARY KEY (id)")
        enable_tracking(kit.maint, "public.t98_mid")
    else:
        enable_tracking(kit.maint, "public.t98_t")
    if route == "inherit":
        if try_write(o, "ALTER TABLE public.t98_t INHERIT public.t98_mid") is not None:
            return  # refused: safe
        if try_write(o, "ALTER TABLE public.t98_mid INHERIT public.t98_top") is not None:
            return
    else:
        if try_write(o, "ALTER TABLE public.t98_top ATTACH PARTITION public.t98_mid FOR VALUES FROM (0) TO (1000)") is not None:
            return
    w = kit.writer
    prefix = "public.t98_mid." if route == "partition" else "public.t98_t."
    done = {}
    steps = [
        ("update", "UPDATE public.t98_top SET v = v + 1 WHERE id = 1", ["update"]),
        ("delete", "DELETE FROM public.t98_top WHERE id = 2", ["delete"]),
        ("merge", "MERGE INTO public.t98_top t USING (VALUES (3)) s(id) ON t.id = s.id"
                  " WHEN MATCHED THEN UPDATE SET v = 9", ["update"]),
        ("cte", "WITH x AS (UPDATE public.t98_top SET note = 'z' WHERE id = 4 RETURNING 1) SELECT count(*) FROM x",
         ["update"]),
        ("truncate", "TRUNCATE public.t98_top", ["truncate"]),
    ]
    for name, sql, want in steps:
        before = kinds(db, prefix)
        err = try_write(w, sql)
        after = kinds(db, prefix)
        done[name] = (err, after[len(before):], want)
    lost = {n: d for n, d in done.items() if d[0] is None and d[1] != d[2]}
    assert lost == {}, f"changes of the tracked table's rows through its grandparent left no event: {lost}"
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("depth", ["leaf", "sub_leaf", "sub_leaf_not_forced"])
def test_c2_a_baseline_through_a_partition_whose_forced_policy_hides_rows_is_whole_or_refused(kit, depth):
    """Attack: the doc says a baseline refuses a table with row-level security (its policies would
    decide which rows it shows). The owner enables and forces RLS on one partition only, with a
    policy hiding row 2, so the parent has none. If the baseline reads the partition as itself,
    the policy hides the row, and row 2 reads 'absent' at a time it existed. Safe: refused, or every
    row the hierarchy holds has its baseline event and reads 'existed'."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t98_bp (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t98_b0 PARTITION OF public.t98_bp FOR VALUES FROM (0) TO (2);
                 """ + ("""CREATE TABLE public.t98_bc PARTITION OF public.t98_bp FOR VALUES FROM (2) TO (100);"""
                        if depth == "leaf" else
                        """CREATE TABLE public.t98_bm PARTITION OF public.t98_bp FOR VALUES FROM (2) TO (100) PARTITION BY RANGE (id);
                           CREATE TABLE public.t98_bc PARTITION OF public.t98_bm FOR VALUES FROM (2) TO (100);""") + """
                 INSERT INTO public.t98_bp VALUES (1, 1);
                 INSERT INTO public.t98_bc VALUES (2, 2), (3, 3);
                 ALTER TABLE public.t98_bc ENABLE ROW LEVEL SECURITY;
                 CREATE POLICY t98_hide ON public.t98_bc USING (id <> 2);
                 GRANT ALL ON ALL TABLES IN SCHEMA public TO app_writer""")
    if depth != "sub_leaf_not_forced":
        o.execute("ALTER TABLE public.t98_bc FORCE ROW LEVEL SECURITY")
    try:
        enable_tracking(kit.maint, "public.t98_bp", baseline=True)
    except Exception:  # noqa: BLE001  refused: safe
        assert n_events(db, "public.t98_bp.baseline") == 0
        return
    at = kit.tick()
    keys = sorted(r[0] for r in db.execute("SELECT target_id FROM audit.events WHERE kind LIKE 'public.t98_b%%.baseline'"))
    states = {k: kit.state("public.t98_bc", k, at)[0] for k in ("2", "3")}
    parent_states = {k: kit.state("public.t98_bp", k, at)[0] for k in ("1", "2", "3")}
    assert keys == ["1", "2", "3"], f"the baseline holds {keys}: the child's policy chose its rows"
    assert "absent" not in set(states.values()) | set(parent_states.values()), (states, parent_states)


def test_c3_an_owners_rule_that_redirects_a_delete_is_captured_as_what_happened(kit):
    """Attack: the owner adds rules: a writer's DELETE of a row becomes an UPDATE of it (a 'soft
    delete'), and a writer's UPDATE also updates another row (DO ALSO). The log must tell what the
    table holds: no delete event for a row that still exists, an update event for each row changed."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t98_r (id int PRIMARY KEY, v int, gone boolean DEFAULT false);
                 INSERT INTO public.t98_r VALUES (1, 0), (2, 0);
                 GRANT ALL ON public.t98_r TO app_writer""")
    enable_tracking(kit.maint, "public.t98_r")
    o.execute("""CREATE RULE t98_soft AS ON DELETE TO public.t98_r DO INSTEAD
                   UPDATE public.t98_r SET gone = true WHERE id = OLD.id;
                 CREATE RULE t98_also AS ON UPDATE TO public.t98_r WHERE NEW.v <> OLD.v DO ALSO
                   INSERT INTO public.t98_r (id, v) VALUES (OLD.id + 10, -1)""")
    w = kit.writer
    w.execute("DELETE FROM public.t98_r WHERE id = 1")
    w.execute("UPDATE public.t98_r SET v = 5 WHERE id = 1")
    rows = db.execute("SELECT id, v, gone FROM public.t98_r ORDER BY id").fetchall()
    assert rows == [(1, 5, True), (2, 0, False), (11, -1, False)]
    ev = db.execute("SELECT kind, target_id, row_after->>'v', row_after->>'gone' FROM audit.events"
                    " WHERE starts_with(kind, 'public.t98_r.') ORDER BY seq NULLS LAST, intake_id").fetchall()
    assert sorted(e[0].rsplit(".", 1)[1] for e in ev) == ["insert", "update", "update"], ev
    last = {e[1]: (e[2], e[3]) for e in ev}
    assert last == {"1": ("5", "true"), "11": ("-1", "false")}, ev
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


# =================================== F: forged history ===================================

def test_f1_two_tables_given_one_kind_prefix_never_share_a_history(kit):
    """Attack: the maintainer (or a table owner it serves) tracks two tables with the same
    kind_prefix, or gives one table the prefix another table's default name will have. The owner
    then writes row 1 of the decoy and deletes it. Safe: refused, or the victim's row 1 history
    holds only its own events and never reads 'absent' while it exists."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t98_victim (id int PRIMARY KEY, v int);
                 CREATE TABLE public.t98_decoy (id int PRIMARY KEY, v int);
                 INSERT INTO public.t98_victim VALUES (1, 1);
                 GRANT ALL ON public.t98_victim, public.t98_decoy TO app_writer""")
    enable_tracking(kit.maint, "public.t98_victim", kind_prefix="t98shared", baseline=True)
    outcomes = {}
    for prefix in ("t98shared", "T98SHARED", "t98shared ", "t98shared.baseline"):
        try:
            enable_tracking(kit.maint, "public.t98_decoy", kind_prefix=prefix)
        except Exception as e:  # noqa: BLE001
            outcomes[prefix] = f"refused: {type(e).__name__}"
            continue
        outcomes[prefix] = "tracked"
        kit.writer.execute("INSERT INTO public.t98_decoy VALUES (1, 666); DELETE FROM public.t98_decoy WHERE id = 1")
        at = kit.tick()
        hist = kit.history("public.t98_victim", "1")
        st = kit.state("public.t98_victim", "1", at)
        assert hist == ["t98shared.baseline"], (prefix, hist)
        assert st == ("existed", {"id": 1, "v": 1}), (prefix, st)
        from pgaudit_py import disable_tracking
        disable_tracking(kit.maint, "public.t98_decoy")
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_f2_a_record_made_while_a_table_was_untracked_is_never_read_as_its_history(kit):
    """Attack: a table tracked under kind_prefix 't98orders' is untracked for a moment. A writer
    records 't98orders.delete' for key 1 (no longer a reserved kind) and 't98orders.insert' with a
    forged row_after; tracking is enabled again under the same prefix. Safe: row_history and
    row_state_as_of read only captured changes (the doc: 'never recorded ones'): row 1 never reads
    absent nor the forged image."""
    from pgaudit_py import disable_tracking
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t98_o (id int PRIMARY KEY, v int);
                 GRANT ALL ON public.t98_o TO app_writer""")
    enable_tracking(kit.maint, "public.t98_o", kind_prefix="t98orders")
    kit.writer.execute("INSERT INTO public.t98_o VALUES (1, 10)")
    refused_while_tracked = refusal(kit.writer, "SELECT audit.record(kind => 't98orders.delete', target_id => '1')")
    disable_tracking(kit.maint, "public.t98_o")
    w = kit.writer
    r1 = refusal(w, "SELECT audit.record(kind => 't98orders.delete', target_type => 't98orders', target_id => '1',"
                    " payload => '{\"row_before\": {\"id\": 1, \"v\": 10}}')")
    r2 = refusal(w, "SELECT audit.record(kind => 't98orders.insert', target_type => 't98orders', target_id => '1',"
                    " payload => '{\"row_after\": {\"id\": 1, \"v\": 999}}')")
    enable_tracking(kit.maint, "public.t98_o", kind_prefix="t98orders", baseline=True)
    at = kit.tick()
    assert refused_while_tracked is not None
    st = kit.state("public.t98_o", "1", at)
    hist = kit.history("public.t98_o", "1")
    assert st == ("existed", {"id": 1, "v": 10}), (r1, r2, st)
    assert hist == ["t98orders.insert", "t98orders.baseline"], (r1, r2, hist)
    assert seal_all(kit.maint) is None
    st2 = kit.state("public.t98_o", "1", kit.tick())
    assert st2 == ("existed", {"id": 1, "v": 10}), st2
    assert both_verifiers(db) == (True, True)


def test_f3_an_owners_security_definer_trigger_cannot_file_a_writers_change_under_another_role(kit):
    """Attack: the owner's BEFORE ROW trigger, SECURITY DEFINER and owned by the owner, runs
    SET ROLE-like tricks (set_config('role', ...) is refused in a SECURITY DEFINER function) and
    rewrites NEW; its AFTER ROW trigger (also SECURITY DEFINER) writes a second row. The writer's
    own change must be filed under the writer's db_role; the second row's under whichever role
    PostgreSQL says wrote it, never the superuser or an audit role."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t98_s (id int PRIMARY KEY, v int, who text);
                 GRANT ALL ON public.t98_s TO app_writer;
                 CREATE FUNCTION public.t98_b() RETURNS trigger SECURITY DEFINER LANGUAGE plpgsql AS $$
                 BEGIN
                   BEGIN PERFORM set_config('role', 'app_maintainer', true); EXCEPTION WHEN others THEN NULL; END;
                   BEGIN PERFORM set_config('session_authorization', 'app_maintainer', true); EXCEPTION WHEN others THEN NULL; END;
                   NEW.who := current_user; RETURN NEW;
                 END $$;
                 CREATE FUNCTION public.t98_a() RETURNS trigger SECURITY DEFINER LANGUAGE plpgsql AS $$
                 BEGIN
                   IF NEW.id < 100 THEN INSERT INTO public.t98_s VALUES (NEW.id + 100, 0); END IF; RETURN NULL;
                 END $$;""")
    enable_tracking(kit.maint, "public.t98_s")
    o.execute("""CREATE TRIGGER t98_bt BEFORE INSERT ON public.t98_s FOR EACH ROW EXECUTE FUNCTION public.t98_b();
                 CREATE TRIGGER t98_at AFTER INSERT ON public.t98_s FOR EACH ROW EXECUTE FUNCTION public.t98_a()""")
    kit.writer.execute("INSERT INTO public.t98_s VALUES (1, 1)")
    got = dict(db.execute("SELECT target_id, db_role FROM audit.events WHERE kind = 'public.t98_s.insert'").fetchall())
    assert set(got) == {"1", "101"}, got
    assert got["1"] == "app_writer", got
    assert got["101"] in {"app_writer", "t98_owner"}, got
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


# ======================================= L: locale and settings =======================================

GUARD_ATTEMPTS = [
    "UPDATE audit.event_log SET kind = kind",
    "DELETE FROM audit.event_log",
    "TRUNCATE audit.event_log",
    "UPDATE audit.blocks SET event_count = event_count",
    "DELETE FROM audit.blocks",
    "INSERT INTO audit.blocks SELECT * FROM audit.blocks LIMIT 1",
    "UPDATE audit.seal_state SET last_seq = last_seq",
    "DELETE FROM audit.seal_state",
    "TRUNCATE audit.seal_state",
    "INSERT INTO audit.event_log SELECT * FROM audit.event_log LIMIT 1",
]

HOSTILE = {"lc_messages": "'de_DE.UTF-8'", "DateStyle": "'SQL, DMY'", "IntervalStyle": "'iso_8601'",
           "TimeZone": "'America/St_Johns'", "extra_float_digits": "-15", "bytea_output": "'escape'",
           "standard_conforming_strings": "off", "search_path": "'pg_temp, public'",
           "lc_monetary": "'de_DE.UTF-8'", "lc_numeric": "'de_DE.UTF-8'"}


def _guard_states(conn, prefix: str = "") -> dict[str, str | None]:
    out = {}
    for s in GUARD_ATTEMPTS:
        out[s] = sqlstate_of(conn, prefix + s)
    return out


def test_l1_guards_refuse_alike_under_german_and_every_odd_setting_for_the_superuser(kit):
    """Attack: the superuser's session (guards apply to superusers too) set to German messages and
    every odd setting, with look-alike temp tables named like the audit tables on a search_path
    that puts pg_temp first; then the guarded statements. Safe: each is refused, with the same
    SQLSTATE as under lc_messages C and default settings, and the log is unchanged."""
    db = kit.db
    kit.writer.execute("SELECT audit.record(kind => 't98.l1', payload => '{\"a\": 1}')")
    assert seal_all(kit.maint) is None
    kit.writer.execute("SELECT audit.record(kind => 't98.l1', payload => '{\"a\": 2}')")
    assert seal_all(kit.maint) is None
    before = db.execute("SELECT count(*), max(seq) FROM audit.event_log").fetchone()
    db.execute("SET lc_messages = 'C'")
    plain = _guard_states(db)
    for k, v in HOSTILE.items():
        db.execute(f"SET {k} = {v}")
    db.execute("CREATE TEMP TABLE event_log (seq bigint); CREATE TEMP TABLE blocks (block_no bigint)")
    try:
        odd = _guard_states(db)
    finally:
        db.execute("RESET ALL; DROP TABLE IF EXISTS pg_temp.event_log, pg_temp.blocks")
    assert {s: v for s, v in plain.items() if v is None} == {}, plain
    assert odd == plain, {s: (plain[s], odd[s]) for s in plain if plain[s] != odd[s]}
    assert db.execute("SELECT count(*), max(seq) FROM audit.event_log").fetchone() == before
    assert both_verifiers(db) == (True, True)


def test_l2_a_maintainer_and_reader_with_every_odd_setting_stored_seal_and_verify_alike(kit, connect):
    """Attack: logins of the maintainer and reader roles with German messages, DateStyle SQL/DMY,
    IntervalStyle iso_8601, a half-hour TimeZone, extra_float_digits -15, bytea_output escape,
    standard_conforming_strings off, lc_numeric/lc_monetary German and search_path pg_temp first
    stored on them. Writes of odd values, then seal and verify in those sessions. Safe: both
    verifiers agree with the default session's verdict and counts, and nothing is refused."""
    from trial_helpers import login
    db = kit.db
    kit.owner.execute("""CREATE TABLE public.t98_l (id int PRIMARY KEY, f float8, n numeric, m money, iv interval,
                           ts timestamptz, b bytea, t text);
                         GRANT ALL ON public.t98_l TO app_writer""")
    py_ok = {k: v for k, v in HOSTILE.items() if k not in ("DateStyle", "IntervalStyle")}
    with login(db, connect, "t98_lm", "audit_maintainer", py_ok) as lm, \
            login(db, connect, "t98_lr", "audit_reader", HOSTILE) as lr:
        db.execute("GRANT t98_owner TO t98_lm")
        enable_tracking(lm, "public.t98_l", baseline=True)
        kit.writer.execute("INSERT INTO public.t98_l VALUES (1, 1349.01, 1.50, 12.34, '1 day -01:00:00.5',"
                           " '2028-02-29 23:59:59.5+05:45'::text::timestamptz, '\\x5c00', E'back\\\\slash ''q''')")
        kit.writer.execute("UPDATE public.t98_l SET f = 1349.02, n = 1.500")
        record(kit.writer, "t98.l2", payload={"x": 0.1, "d": "12.03.2026"})
        assert seal_all(lm) is None
        vr = db.execute("SELECT ok, blocks_checked, events_checked FROM audit.verify()").fetchone()
        got_r = lr.execute("SELECT ok, blocks_checked, events_checked FROM audit.verify()").fetchone()
        py_default = verify_chain(db)
        from pgaudit_py import UnsupportedSession
        try:
            py_reader_ok = verify_chain(lr).ok
        except UnsupportedSession:
            py_reader_ok = "refused"
        py_lm = verify_chain(lm)
        assert tuple(got_r) == tuple(vr) and vr[0] is True, (vr, got_r)
        assert py_reader_ok in (True, "refused") and py_default.ok and py_lm.ok, (py_reader_ok, py_default, py_lm)
        images = json.loads(db.execute("SELECT row_after::text FROM audit.events WHERE kind = 'public.t98_l.update'").fetchone()[0],
                            parse_float=str)
        assert images["f"] == "1349.02" and images["n"] == "1.500", images
        assert images["m"] == "$12.34", images
        db.execute("REVOKE t98_owner FROM t98_lm")


# ======================================= V: hostile values =======================================

ODD_COLUMNS = """id int PRIMARY KEY, m money, tz timetz, iv interval, a int[], a2 text[], bt bit(5), vb varbit,
tv tsvector, tq tsquery, x xml, lsn pg_lsn, mac macaddr8, mr int8multirange, pt point, bx box, ci circle,
num numeric, f4 real, f8 float8, t text, j json, jb jsonb, by bytea, ip inet, d date, ts timestamptz, c3 char(3)"""

ODD_ROW = {
    "m": "-92233720368547758.08", "tz": "23:59:59.999999+15:59", "iv": "-1 year +2 mons -3 days +04:05:06.789",
    "a": "[-5:-4]={1,2}", "a2": '[0:1][2:3]={{"a,b","NULL"},{"\\\\",""}}', "bt": "10101", "vb": "",
    "tv": "'a':1A,3B 'b''c':2 'é\u0301':4", "tq": "!( a & b ) <-> c:* | 'd''e':AB", "x": "<a b=\"&lt;&#x10FFFF;\"><![CDATA[]]]]><![CDATA[>]]></a>",
    "lsn": "FFFFFFFF/FFFFFFFF", "mac": "08:00:2b:01:02:03:04:05", "mr": "{[1,3), [5,7)}", "pt": "(-0,NaN)",
    "bx": "(1,1),(-0,-0)", "ci": "<(NaN,-0),0>", "num": "NaN", "f4": "-0", "f8": "-Infinity",
    "t": "\u202eevil\u202c \ufffe\uffff\U0010ffff \u0301 \U0001F600 \ud7ff",
    "j": '{"a":1,"a":2,"\\u0000":"\\ud800","x":1E+2,"y":-0,"z":1.0000000000000000001,"k\\u00e9":1,"ke\\u0301":2}',
    "jb": '{"k\u00e9": 1, "ke\u0301": 2, "n": 1E+2, "m": -0, "big": 1.0000000000000000001, "deep": ' + "[" * 200 + "]" * 200 + '}',
    "by": "\\x00ff5c27", "ip": "::ffff:1.2.3.4/128", "d": "infinity", "ts": "294276-12-31 23:59:59.999999+00", "c3": "a",
}

# Updates whose new value only storage tells apart (or only a setting shows): each must be an event.
ODD_UPDATES = [
    ("f4", "0"), ("num", "'NaN'"), ("a", "'{1,2}'"), ("pt", "'(0,NaN)'"), ("j", "'{\"a\":2,\"a\":1}'"),
    ("jb", "jb || '{\"big\": 1.00000000000000000010}'"), ("c3", "'a  '"), ("iv", "'-1 year +2 mons -3 days +04:05:06.789'::interval + '0 s'"),
    ("x", "'<?xml version=\"1.0\"?><a b=\"&lt;&#x10FFFF;\"><![CDATA[]]]]><![CDATA[>]]></a>'"), ("bx", "'(1,1),(0,0)'"),
]


def test_v1_a_row_of_odd_built_in_types_captures_every_stored_change_and_both_verifiers_agree(kit):
    """Attack: a row of every built-in type with an unusual output (money at its minimum, timetz at
    +15:59, mixed-sign intervals, arrays with odd and 2-D bounds, bit strings, tsvector and tsquery
    with weights and quotes, xml with CDATA and a character reference, pg_lsn at its top, macaddr8,
    multiranges, -0 and NaN in geometry, numeric NaN, -0 and -Infinity floats, RTL overrides,
    noncharacters, json with duplicate keys, \\u0000 and a lone surrogate, jsonb with look-alike keys
    and numbers jsonb normalizes, 200-deep nesting). Then updates to values only storage tells
    apart. Safe: each statement that changed stored bytes has its event (skip_noop compares stored
    rows), sealing works, both verifiers agree the log is intact, and both catch a tamper that
    keeps the image jsonb-equal-looking (a numeric's trailing zero)."""
    db, o = kit.db, kit.owner
    o.execute(f"CREATE TABLE public.t98_v ({ODD_COLUMNS}); GRANT ALL ON public.t98_v TO app_writer")
    enable_tracking(kit.maint, "public.t98_v")
    cols = ", ".join(["id", *ODD_ROW])
    marks = ", ".join(["%s"] * (len(ODD_ROW) + 1))
    kit.writer.execute(f"INSERT INTO public.t98_v ({cols}) VALUES ({marks})", [1, *ODD_ROW.values()])
    missing = []
    for col, expr in ODD_UPDATES:
        n0 = n_events(db, "public.t98_v.update")
        stored_before = db.execute(f"SELECT {col}::text, pg_column_size({col}) FROM public.t98_v").fetchone()
        err = try_write(kit.writer, f"UPDATE public.t98_v SET {col} = {expr} WHERE id = 1")
        assert err is None, (col, err)
        stored_after = db.execute(f"SELECT {col}::text, pg_column_size({col}) FROM public.t98_v").fetchone()
        same = db.execute("SELECT true FROM public.t98_v WHERE id = 1").fetchone()
        n1 = n_events(db, "public.t98_v.update")
        changed_bytes = stored_before != stored_after
        if changed_bytes and n1 == n0:
            missing.append((col, stored_before, stored_after))
        del same
    assert missing == [], f"updates that changed stored values left no event: {missing}"
    assert seal_all(kit.maint) is None
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] == 0
    assert both_verifiers(kit.reader) == (True, True)
    # a tamper of a sealed image that keeps its value equal as a number
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t98_v.insert'").fetchone()[0]
    tamper(db, f"UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{{jb,big}}', '1.00000000000000000010')"
               f" WHERE seq = {seq}")
    assert both_verifiers(db) == (False, False)


def test_v2_record_payloads_of_every_json_oddity_verify_in_both_and_tamper_is_caught(kit):
    """Attack: record() payloads holding what jsonb normalizes or keeps oddly: keys that differ only by
    normalization or by a zero-width joiner, 1E+2 and 100 and 100.0, -0, 1e-400-ish decimals,
    RTL overrides in keys, noncharacters, a key of 5,000 characters, 3,000-deep nesting,
    an empty key and a key '\\\\u0000' spelled with an escaped backslash. Safe: all seal, both
    verifiers agree; swapping two events' payloads is caught by both."""
    db, w = kit.db, kit.writer
    payloads = [
        '{"k\u00e9": 1, "ke\u0301": 2, "k\u200de": 3}',
        '{"a": 1E+2, "b": 100, "c": 100.0, "d": -0, "e": -0.0, "f": 0.' + "0" * 398 + '1}',
        '{"\u202eadmin\u202c": "\ufdd0\ufffe\uffff", "": null, "\\\\u0000": "\\\\ud800"}',
        '{"' + "k" * 5000 + '": "' + "\U0010ffff" * 1000 + '"}',
        '{"deep": ' + "[" * 3000 + "]" * 3000 + '}',
        '{"n": 1.0000000000000000001, "m": 123456789012345678901234567890}',
    ]
    errs = [refusal(w, "SELECT audit.record(kind => 't98.v2', payload => %s::jsonb)", [p]) for p in payloads]
    accepted = sum(e is None for e in errs)
    assert accepted >= len(payloads) - 1, errs
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    seqs = [r[0] for r in db.execute("SELECT seq FROM audit.event_log WHERE kind = 't98.v2' ORDER BY seq LIMIT 2")]
    tamper(db, f"""UPDATE audit.event_log e SET payload = o.payload FROM audit.event_log o
                   WHERE (e.seq, o.seq) IN (({seqs[0]}, {seqs[1]}), ({seqs[1]}, {seqs[0]}))""")
    assert both_verifiers(db) == (False, False)


@pytest.mark.parametrize("when", ["before_tracking", "after_tracking", "attached_after", "rule_dropped"])
def test_c4_merge_moving_rows_inside_a_sub_partitioned_partition_is_refused_or_captured(kit, when):
    """Attack: on PostgreSQL 15 a MERGE that moves rows between partitions passes them to no
    transition table; the package keeps MERGE off a tracked partitioned table with a rule. The owner
    makes one of its partitions partitioned in turn (before tracking, after it, or attaches such a
    table), and the writer MERGEs into that sub-partitioned partition, moving a row between its
    own partitions, and inserting one. Safe: the MERGE is refused, or each row it changed has its
    event (and the move names the row)."""
    db, o = kit.db, kit.owner
    o.execute("CREATE TABLE public.t98_mp (id int, v int, note text, PRIMARY KEY (id, v)) PARTITION BY RANGE (id)")
    sub = """CREATE TABLE public.t98_mp1 PARTITION OF public.t98_mp FOR VALUES FROM (0) TO (100) PARTITION BY LIST (v);
             CREATE TABLE public.t98_mp1a PARTITION OF public.t98_mp1 FOR VALUES IN (1);
             CREATE TABLE public.t98_mp1b PARTITION OF public.t98_mp1 FOR VALUES IN (2);"""
    o.execute("CREATE TABLE public.t98_mp2 PARTITION OF public.t98_mp FOR VALUES FROM (100) TO (200)")
    if when in ("before_tracking", "rule_dropped"):
        o.execute(sub)
        enable_tracking(kit.maint, "public.t98_mp")
        if when == "rule_dropped":
            _tried = [try_write(c, f"{verb} RULE {name} ON public.{t}{tail}")
                     for c in (o, kit.maint) for t in ("t98_mp1", "t98_mp")
                     for verb, name, tail in (("DROP", "audit_no_merge", ""),
                                              ("ALTER", "audit_no_merge", " RENAME TO t98_gone"),
                                              ("DROP", "t98_gone", ""),
                                              ("ALTER", "t98_gone", " RENAME TO t98_gone2"),
                                              ("DROP", "t98_gone2", ""))]
            left = db.execute("SELECT ev_class::regclass::text, rulename FROM pg_rewrite"
                              " WHERE ev_class IN ('public.t98_mp'::regclass, 'public.t98_mp1'::regclass)").fetchall()
            if len(left) < 2:
                assert problems_of(db), f"a tracked table lost its MERGE rule ({left}) and status says nothing"
    elif when == "after_tracking":
        enable_tracking(kit.maint, "public.t98_mp")
        if try_write(kit.maint, sub) is not None:
            return
    else:
        enable_tracking(kit.maint, "public.t98_mp")
        kit.maint.execute("""CREATE TABLE public.t98_mp1 (id int, v int, note text, PRIMARY KEY (id, v)) PARTITION BY LIST (v);
                     CREATE TABLE public.t98_mp1a PARTITION OF public.t98_mp1 FOR VALUES IN (1);
                     CREATE TABLE public.t98_mp1b PARTITION OF public.t98_mp1 FOR VALUES IN (2)""")
        if try_write(kit.maint, "ALTER TABLE public.t98_mp ATTACH PARTITION public.t98_mp1 FOR VALUES FROM (0) TO (100)") is not None:
            return
    db.execute("GRANT ALL ON public.t98_mp, public.t98_mp1, public.t98_mp1a, public.t98_mp1b, public.t98_mp2 TO app_writer")
    kit.writer.execute("INSERT INTO public.t98_mp VALUES (1, 1, 'a'), (2, 1, 'b')")
    n0 = len(kinds(db, "public.t98_mp."))
    err = try_write(kit.writer, """MERGE INTO public.t98_mp1 t USING (VALUES (1), (3)) s(id) ON t.id = s.id
                                   WHEN MATCHED THEN UPDATE SET v = 2, note = 'moved'
                                   WHEN NOT MATCHED THEN INSERT VALUES (s.id, 1, 'new')""")
    rows = db.execute("SELECT id, v, note FROM public.t98_mp ORDER BY id").fetchall()
    new = db.execute("SELECT kind, target_id, payload FROM audit.events WHERE starts_with(kind, 'public.t98_mp.')"
                     " ORDER BY seq NULLS LAST, intake_id").fetchall()[n0:]
    if err is None:
        assert rows == [(1, 2, "moved"), (2, 1, "b"), (3, 1, "new")], rows
        got = sorted((k.rsplit(".", 1)[1], t) for k, t, _ in new)
        assert got == [("insert", "[3, 1]"), ("update", "[1, 2]")], f"MERGE's changes left {new}"
    else:
        assert rows == [(1, 1, "a"), (2, 1, "b")], rows
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_l3_status_names_replica_mode_stored_for_a_writer_whatever_the_superusers_session_says(kit, connect):
    """Attack: a superuser stores session_replication_role = replica for a writer login (its writes
    would fire no capture). The superuser who runs status has German messages, an odd TimeZone,
    extra_float_digits, standard_conforming_strings off and a search_path with pg_temp first holding
    look-alike tables of the catalogues status reads. Safe: status names it as under default settings."""
    from trial_helpers import login
    db = kit.db
    with login(db, connect, "t98_rw", "audit_writer", {"session_replication_role": "replica"}):
        plain = [p for p in problems_of(db) + status(db).warnings if "replica" in p or "session_replication_role" in p]
        for k in ("lc_messages", "TimeZone", "extra_float_digits", "standard_conforming_strings", "search_path"):
            db.execute(f"SET {k} = {HOSTILE[k]}")
        db.execute("CREATE TEMP TABLE pg_db_role_setting (setdatabase oid, setrole oid, setconfig text[]);"
                   " CREATE TEMP TABLE pg_roles (rolname name, oid oid, rolsuper boolean)")
        try:
            st = status(db)
            odd = [p for p in st.problems + st.warnings if "replica" in p or "session_replication_role" in p]
        finally:
            db.execute("RESET ALL; DROP TABLE IF EXISTS pg_temp.pg_db_role_setting, pg_temp.pg_roles")
    assert plain, "status never named replica mode stored for a writer"
    assert odd == plain, (plain, odd)


KEY_TYPES = {
    "money": ("1.50", "150.00"),
    "timestamptz": ("2026-01-02 03:04:05.5+00", "2026-02-01 03:04:05.5+00"),
    "date": ("2026-01-02", "2026-02-01"),
    "interval": ("1 day 02:00:00", "-1 days +02:00:00"),
    "float8": ("1349.01", "1349.0100000000002"),
}


@pytest.mark.parametrize("typ", sorted(KEY_TYPES))
def test_l4_a_key_looked_up_by_its_stored_spelling_under_a_readers_german_settings(kit, connect, typ):
    """Attack: a table keyed by money, timestamptz, date, interval or float8 (two rows whose values
    a locale or a DateStyle could confuse: 1.50 and 150.00 read with '.' as the thousands separator,
    2 January and 1 February under DMY). A reader whose login stores German lc_monetary and
    lc_numeric, DateStyle 'SQL, DMY', IntervalStyle sql_standard and extra_float_digits -15 asks
    row_state_as_of and row_history by each row's target_id exactly as the log holds it. Safe: each
    finds its own row and never the other's."""
    from trial_helpers import login
    db = kit.db
    a, b = KEY_TYPES[typ]
    kit.owner.execute(f"CREATE TABLE public.t98_k{typ} (k {typ} PRIMARY KEY, v int); GRANT ALL ON public.t98_k{typ} TO app_writer")
    try:
        enable_tracking(kit.maint, f"public.t98_k{typ}")
    except Exception:  # noqa: BLE001  a key type that cannot be tracked: safe
        return
    kit.writer.execute(f"INSERT INTO public.t98_k{typ} VALUES (%s::{typ}, 1), (%s::{typ}, 2)", [a, b])
    at = kit.tick()
    ids = dict(db.execute("SELECT (row_after->>'v')::int, target_id FROM audit.events WHERE kind = %s",
                          [f"public.t98_k{typ}.insert"]).fetchall())
    settings = {"lc_monetary": "'de_DE.UTF-8'", "lc_numeric": "'de_DE.UTF-8'", "DateStyle": "'SQL, DMY'",
                "IntervalStyle": "'sql_standard'", "extra_float_digits": "-15", "lc_messages": "'de_DE.UTF-8'",
                "TimeZone": "'Asia/Kathmandu'"}
    with login(db, connect, "t98_rk", "audit_reader", settings) as r:
        got = {}
        for v, tid in ids.items():
            row = r.execute("SELECT state, image->>'v' FROM audit.row_state_as_of(%s::regclass, %s, %s)",
                            [f"public.t98_k{typ}", tid, at]).fetchone()
            hist = [x[0] for x in r.execute("SELECT row_after->>'v' FROM audit.row_history(%s::regclass, %s)",
                                             [f"public.t98_k{typ}", tid])]
            got[v] = (tuple(row), hist)
    assert got == {1: (("existed", "1"), ["1"]), 2: (("existed", "2"), ["2"])}, (ids, got)


@pytest.mark.parametrize("typ", sorted(KEY_TYPES))
def test_l5_a_key_spelled_as_the_readers_german_session_prints_it_never_reads_another_row_or_absent(kit, connect, typ):
    """Attack: as l4, but the reader gives each key as its own session prints the value (money as
    '1,50 €', a date as '02.01.2026', an interval in SQL-standard form, a float with -15 digits). The
    doc: another spelling of the same value finds the row, 'a timestamptz as your session prints it'.
    Safe: each answer is the row's own image (or 'unknown' for a type whose equal values print
    apart), never 'absent' and never the other row's image."""
    from trial_helpers import login
    db = kit.db
    a, b = KEY_TYPES[typ]
    kit.owner.execute(f"CREATE TABLE public.t98_k{typ} (k {typ} PRIMARY KEY, v int); GRANT ALL ON public.t98_k{typ} TO app_writer")
    try:
        enable_tracking(kit.maint, f"public.t98_k{typ}")
    except Exception:  # noqa: BLE001
        return
    kit.writer.execute(f"INSERT INTO public.t98_k{typ} VALUES (%s::{typ}, 1), (%s::{typ}, 2)", [a, b])
    at = kit.tick()
    settings = {"lc_monetary": "'de_DE.UTF-8'", "lc_numeric": "'de_DE.UTF-8'", "DateStyle": "'SQL, DMY'",
                "IntervalStyle": "'sql_standard'", "extra_float_digits": "-15", "lc_messages": "'de_DE.UTF-8'",
                "TimeZone": "'Asia/Kathmandu'"}
    with login(db, connect, "t98_rk", "audit_reader", settings) as r:
        got = {}
        for v, literal in ((1, a), (2, b)):
            if typ == "money":
                spelled = r.execute("SELECT (%s::numeric)::money::text", [literal]).fetchone()[0]
            else:
                spelled = r.execute(f"SELECT %s::{typ}::text", [literal]).fetchone()[0]
            row = r.execute("SELECT state, image->>'v' FROM audit.row_state_as_of(%s::regclass, %s, %s)",
                            [f"public.t98_k{typ}", spelled, at]).fetchone()
            got[v] = (spelled, tuple(row))
    bad = {v: g for v, g in got.items() if g[1] != ("existed", str(v)) and g[1][0] != "unknown"}
    assert bad == {}, got


def test_f4_the_owner_cannot_hang_the_capture_function_again_with_swapped_transition_tables(kit):
    """Attack: the capture function reads transition tables by the names its triggers give them
    (old_rows, new_rows). The owner (with the maintainer's help: a member of its role) adds a
    second trigger on the tracked table that runs the same capture function, on UPDATE, with the
    names swapped, or on DELETE with the old rows named new_rows: the log would hold an update
    reversed, or a delete recorded as an insert. Safe: the trigger cannot be made (or cannot run),
    and each write has exactly its true events."""
    db = kit.db
    kit.owner.execute("CREATE TABLE public.t98_sw (id int PRIMARY KEY, v int); INSERT INTO public.t98_sw VALUES (1, 1), (2, 2);"
                      " GRANT ALL ON public.t98_sw TO app_writer")
    enable_tracking(kit.maint, "public.t98_sw")
    fn = db.execute("SELECT p.oid::regprocedure::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                    " WHERE t.tgrelid = 'public.t98_sw'::regclass AND NOT t.tgisinternal AND t.tgtype & 16 <> 0").fetchone()[0]
    fn = fn.removesuffix("()")
    made = {}
    for who, conn in (("owner", kit.owner), ("maintainer", kit.maint), ("mallory", kit.mallory)):
        made[who] = [
            try_write(conn, f"CREATE TRIGGER t98_swap_{who} AFTER UPDATE ON public.t98_sw REFERENCING OLD TABLE AS new_rows"
                            f" NEW TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"),
            try_write(conn, f"CREATE TRIGGER t98_del_{who} AFTER DELETE ON public.t98_sw REFERENCING OLD TABLE AS new_rows"
                            f" FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"),
        ]
    u = try_write(kit.writer, "UPDATE public.t98_sw SET v = 10 WHERE id = 1")
    d = try_write(kit.writer, "DELETE FROM public.t98_sw WHERE id = 2")
    ev = db.execute("SELECT kind, target_id, row_before->>'v', row_after->>'v' FROM audit.events"
                    " WHERE starts_with(kind, 'public.t98_sw.') ORDER BY intake_id").fetchall()
    want = ([("public.t98_sw.update", "1", "1", "10")] if u is None else []) + \
           ([("public.t98_sw.delete", "2", "2", None)] if d is None else [])
    rows = db.execute("SELECT id, v FROM public.t98_sw ORDER BY id").fetchall()
    assert rows == ([(1, 10)] if u is None else [(1, 1)]) + ([] if d is None else [(2, 2)])
    assert ev == want, (made, u, d, ev)
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("route", ["sub_partitioned", "detached_and_back", "detached_changed_and_back"])
def test_c5_rows_a_partition_brings_never_read_absent_after_a_baseline(kit, route):
    """Attack: a table tracked with a baseline; the maintainer (owning it through the owner's role)
    attaches a partition that brings rows with no event: a partitioned table whose own leaf holds
    them (the partitioned table itself has no pages), or a partition detached, written while out
    (a row inserted, one deleted, one changed), and attached back. The doc: rows so brought clear
    baseline_at, and keys without events are 'unknown' again. Safe: no row the table holds reads
    'absent', and a row brought with no event of its own never reads 'existed' with an image it does
    not hold. (Rows that had events before their partition left keep answering their last image: the
    known limit of capture.md, trial 70; not asserted here.)"""
    db, m = kit.db, kit.maint
    kit.owner.execute("""CREATE TABLE public.t98_bt (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                         CREATE TABLE public.t98_bt0 PARTITION OF public.t98_bt FOR VALUES FROM (0) TO (100);
                         INSERT INTO public.t98_bt VALUES (1, 1), (2, 2), (3, 3)""")
    enable_tracking(m, "public.t98_bt", baseline=True)
    if route == "sub_partitioned":
        m.execute("""CREATE TABLE public.t98_bts (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                     CREATE TABLE public.t98_bts1 PARTITION OF public.t98_bts FOR VALUES FROM (100) TO (200);
                     INSERT INTO public.t98_bts VALUES (150, 150)""")
        err = try_write(m, "ALTER TABLE public.t98_bt ATTACH PARTITION public.t98_bts FOR VALUES FROM (100) TO (200)")
        probe = {"150": "existed"}
    else:
        err = try_write(m, "ALTER TABLE public.t98_bt DETACH PARTITION public.t98_bt0")
        if err is None:
            if route == "detached_changed_and_back":
                m.execute("INSERT INTO public.t98_bt0 VALUES (77, 77); DELETE FROM public.t98_bt0 WHERE id = 2;"
                          " UPDATE public.t98_bt0 SET v = 33 WHERE id = 3")
            err = try_write(m, "ALTER TABLE public.t98_bt ATTACH PARTITION public.t98_bt0 FOR VALUES FROM (0) TO (100)")
        probe = {"1": "existed", "3": "existed"}
        if route == "detached_changed_and_back":
            probe.update({"77": "existed", "2": "absent"})
    if err is not None:
        return  # refused: safe
    at = kit.tick()
    held = dict(db.execute("SELECT id::text, v FROM public.t98_bt").fetchall())
    got = {k: kit.state("public.t98_bt", k, at) for k in probe}
    wrong = {}
    for k, (state, image) in got.items():
        if k in held and state == "absent":
            wrong[k] = (state, image, "held")
        had_events = k in ("1", "2", "3")
        if k in held and state == "existed" and image.get("v") != held[k] and not had_events:
            wrong[k] = (state, image, f"holds v={held[k]}")
        if k not in held and state == "existed" and not had_events:
            wrong[k] = (state, image, "not held")
    bl = db.execute("SELECT baseline_at FROM audit.tracked_tables WHERE relid = 'public.t98_bt'::regclass").fetchone()
    assert wrong == {}, (wrong, got, bl, kinds(db, "public.t98_bt."))


def test_f5_a_maintainer_who_does_not_own_a_table_cannot_take_its_baseline_directly(kit, connect):
    """Attack: the capture role's _take_baseline is executable by every maintainer (enable_tracking
    calls it). A second maintainer login, who does not own the tracked table but may update it (an
    application role), with the table readable by PUBLIC (so the sandbox may read it), locks the
    table and calls _take_baseline itself, under a claimed actor. roles.md: a maintainer may not
    'act on a table it does not own'. Safe: refused, and no baseline event or baseline_at is made."""
    from trial_helpers import login
    db = kit.db
    kit.owner.execute("""CREATE TABLE public.t98_nb (id int PRIMARY KEY, v int);
                         INSERT INTO public.t98_nb VALUES (1, 1), (2, 2);
                         GRANT ALL ON public.t98_nb TO app_writer""")
    enable_tracking(kit.maint, "public.t98_nb")
    kit.owner.execute("GRANT SELECT ON public.t98_nb TO PUBLIC")
    with login(db, connect, "t98_m2", "audit_maintainer", {}) as m2:
        kit.owner.execute("GRANT UPDATE ON public.t98_nb TO t98_m2")
        err = None
        try:
            with m2.transaction():
                m2.execute("SET LOCAL pgaudit_py.actor_id = 'the-owner-team'")
                m2.execute("LOCK TABLE public.t98_nb IN SHARE MODE")
                m2.execute("SELECT audit_capture._take_baseline('public.t98_nb'::regclass, md5(1::text)::uuid)")
        except psycopg.Error as e:
            err = e.sqlstate
        made = n_events(db, "public.t98_nb.baseline")
        bl = db.execute("SELECT baseline_at FROM audit.tracked_tables WHERE relid = 'public.t98_nb'::regclass").fetchone()[0]
        kit.owner.execute("REVOKE ALL ON public.t98_nb FROM t98_m2")
    assert err is not None and made == 0 and bl is None, \
        f"a maintainer not owning the table took its baseline: sqlstate {err}, {made} baseline events, baseline_at {bl}"
