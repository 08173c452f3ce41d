"""A hundred-and-eleventh attacker's trial.

  A. a table's owner (no audit role) running its code with a privileged role's rights: an index expression,
     a generated column, a CHECK on a domain in the key column, a column DEFAULT, an RLS policy and a trigger
     of its own, each reporting who ran it, while the maintainer enables tracking with a baseline, disables
     it, enables a rate limit, while the sealer seals, the reader verifies, reads row_history and status;
     a partition the owner adds (CREATE TABLE ... PARTITION OF / ATTACH) under a superuser's event trigger.
  B. switching capture off: every trigger switch the owner has (DISABLE TRIGGER ALL/USER, ENABLE REPLICA,
     ALTER TRIGGER RENAME, CREATE OR REPLACE TRIGGER), a DO INSTEAD rule, inheritance, a partitioned table
     attached with partitions of its own to a tracked and rate-limited table (by a maintainer and by a table
     owner that is none), DETACH then re-ATTACH, MERGE, ON CONFLICT, writable CTE, COPY, TRUNCATE.
  C. forged history: every named role writing the intake, the log and the chain directly, forged origins.
  D. guards under other message locales (lc_messages C, German, French when present).
  E. hostile payloads in record() and in captured json/jsonb/numeric/float8/text[]/composite/range/domain
     columns: both verifiers must agree and say ok.

Each test asserts the secure outcome, so it FAILS when the attack works. Objects are prefixed t111_.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import suppress

import psycopg
import pytest
from trial_helpers import both_verifiers, drop_made_under, seal_all

from pgaudit_py import disable_tracking, enable_tracking, record, status
from pgaudit_py.rate_limits import enable_rate_limit

PRIVILEGED = ("audit_owner", "audit_capture", "audit_sealer", "audit_pruner", "audit_maintainer", "audit_reader",
              "audit_secrets", "app_maintainer", "app_reader", "app_secrets", "postgres")


@pytest.fixture
def clean(db):
    yield db
    with suppress(psycopg.Error):
        db.execute("ROLLBACK")
    with suppress(psycopg.Error):
        db.execute("RESET ROLE")
    for (name,) in db.execute("SELECT evtname FROM pg_event_trigger WHERE evtname LIKE 't111%'").fetchall():
        db.execute(f"DROP EVENT TRIGGER IF EXISTS {name}")
    drop_made_under(db, "t111_")


def leaks(db) -> list:
    """Rows of who_ran naming a privileged role, or one that could forge an event."""
    return db.execute("SELECT who, what, forged FROM public.who_ran WHERE forged OR who = ANY(%s)",
                      [list(PRIVILEGED)]).fetchall()


def ran(db) -> list:
    return db.execute("SELECT DISTINCT who, what FROM public.who_ran ORDER BY 1, 2").fetchall()


def captures(db, like: str = "%") -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE origin = 'capture' AND kind LIKE %s", [like]).fetchone()[0]


def state_of(conn, statement: str, params=None) -> str | None:
    try:
        conn.execute(statement, params)
        return None
    except psycopg.Error as e:
        with suppress(psycopg.Error):
            conn.execute("ROLLBACK")
        return e.sqlstate or type(e).__name__


def exercise(db, connect, table: str, key: str = "1") -> dict:
    """Everything the audit roles run on a tracked table: writes, seal, verify (both), status, row_history,
    rate limit, disable tracking; returns what each said."""
    out = {}
    maint, reader = connect("app_maintainer"), connect("app_reader")
    out["seal"] = seal_all(db)
    out["verify"] = both_verifiers(db)
    out["status"] = status(db).problems
    out["history"] = state_of(reader, "SELECT * FROM audit.row_history(%s::regclass, %s)", [table, key])
    out["as_of"] = state_of(reader, "SELECT audit.row_as_of(%s::regclass, %s, now())", [table, key])
    out["limit"] = state_of(maint, "SELECT audit.enable_rate_limit(%s::regclass, 100, 100, 60)", [table])
    out["disable"] = state_of(maint, "SELECT audit.disable_tracking(%s::regclass)", [table])
    return out


SPY_NOTICE = """
CREATE FUNCTION public.t111_ispy(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE NOTICE 'who_ran %', json_build_object('who', current_user, 'what', 'ispy', 'forged', false);
    RETURN x;
END $$"""


# ================================ A: the owner's code as a privileged role ================================

def test_a1_index_expression_and_generated_column_never_run_as_an_audit_role(clean, attacker, connect):
    """roles.md (any role may not): "have its code (a cast, a policy) run with a privileged role's rights".
    The owner's table carries an index on t111_ispy(v) and a stored generated column of it; the maintainer
    tracks with a baseline, the writer writes, the sealer seals, the reader reads history, the maintainer
    limits and untracks."""
    db = clean
    attacker.execute(SPY_NOTICE)
    attacker.execute("""CREATE TABLE public.t111_a1 (id int PRIMARY KEY, v int, g int GENERATED ALWAYS AS (public.t111_ispy(v)) STORED);
                        CREATE INDEX t111_a1_i ON public.t111_a1 (public.t111_ispy(v));
                        GRANT ALL ON public.t111_a1 TO app_writer;
                        INSERT INTO public.t111_a1 (id, v) VALUES (1, 1), (2, 2)""")
    enable_tracking(connect("app_maintainer"), "public.t111_a1", baseline=True)
    connect("app_writer").execute("UPDATE public.t111_a1 SET v = v + 1; INSERT INTO public.t111_a1 (id, v) VALUES (3, 3)")
    out = exercise(db, connect, "public.t111_a1")
    print("RAN", ran(db), out)
    assert leaks(db) == [], (ran(db), out)
    assert out["verify"] == (True, True)


def test_a2_rls_policy_and_domain_check_in_the_key_never_run_as_an_audit_role(clean, attacker, connect):
    """roles.md: a table owner's policy never runs with a privileged role's rights. A FORCE'd RLS policy calling
    spy() and a domain key whose CHECK calls spy(); baseline, writes, seal, history, status, limit, untrack."""
    db = clean
    attacker.execute("""CREATE DOMAIN public.t111_key AS int CHECK (public.spy('domain-check'));
                        CREATE TABLE public.t111_a2 (id public.t111_key PRIMARY KEY, v int);
                        ALTER TABLE public.t111_a2 ENABLE ROW LEVEL SECURITY;
                        ALTER TABLE public.t111_a2 FORCE ROW LEVEL SECURITY;
                        CREATE POLICY t111_p ON public.t111_a2 USING (public.spy('policy')) WITH CHECK (public.spy('policy-check'));
                        GRANT ALL ON public.t111_a2 TO app_writer;
                        GRANT USAGE ON TYPE public.t111_key TO PUBLIC;
                        INSERT INTO public.t111_a2 VALUES (1, 1), (2, 2)""")
    err = state_of(connect("app_maintainer"), "SELECT audit.enable_tracking('public.t111_a2'::regclass, baseline => true)")
    if err is None:
        connect("app_writer").execute("UPDATE public.t111_a2 SET v = v + 1; INSERT INTO public.t111_a2 VALUES (3, 3)")
        out = exercise(db, connect, "public.t111_a2")
    else:
        out = {"enable": err}
    print("RAN", ran(db), out)
    assert leaks(db) == [], (ran(db), out)


@pytest.mark.parametrize("shape", ["rls", "domain_key", "domain_tenant", "domain_key_array"])
def test_a2b_each_of_policy_and_domain_checks_alone(clean, attacker, connect, shape):
    """roles.md (any role may not): "have its code (a cast, a policy) run with a privileged role's rights". Each
    alone: a FORCE'd RLS policy calling spy(); a domain whose CHECK calls spy() as the key column, as the tenant
    column, and as an array element type; then baseline, writes, seal, verify, history (the key text cast to
    the domain), as_of, limit, untrack."""
    db = clean
    attacker.execute("""CREATE DOMAIN public.t111_key AS int CHECK (public.spy('domain-check'));
                        GRANT USAGE ON TYPE public.t111_key TO PUBLIC""")
    cols = {"rls": "id int PRIMARY KEY, v int, t text",
            "domain_key": "id public.t111_key PRIMARY KEY, v int, t text",
            "domain_tenant": "id int PRIMARY KEY, v int, t public.t111_key",
            "domain_key_array": "id int PRIMARY KEY, v public.t111_key[], t text"}[shape]
    attacker.execute(f"CREATE TABLE public.t111_a2 ({cols}); GRANT ALL ON public.t111_a2 TO app_writer")
    if shape == "rls":
        attacker.execute("""ALTER TABLE public.t111_a2 ENABLE ROW LEVEL SECURITY; ALTER TABLE public.t111_a2 FORCE ROW LEVEL SECURITY;
                            CREATE POLICY t111_p ON public.t111_a2 USING (public.spy('policy')) WITH CHECK (public.spy('policy-check'))""")
    vals = "(1, '{1}', NULL), (2, '{2}', NULL)" if shape == "domain_key_array" else "(1, 1, '1'), (2, 2, '2')"
    attacker.execute(f"INSERT INTO public.t111_a2 VALUES {vals}")
    opts = ", tenant_column => 't'" if shape == "domain_tenant" else ""
    opts += ", baseline => " + ("false" if shape == "rls" else "true")  # capture.md: RLS refuses a baseline
    err = state_of(connect("app_maintainer"), f"SELECT audit.enable_tracking('public.t111_a2'::regclass{opts})")
    out = {"enable": err}
    if err is None:
        w = connect("app_writer")
        more = "(3, '{3}', NULL)" if shape == "domain_key_array" else "(3, 3, '3')"
        out["write"] = state_of(w, f"UPDATE public.t111_a2 SET v = v; INSERT INTO public.t111_a2 VALUES {more}")
        out.update(exercise(db, connect, "public.t111_a2"))
    print("RAN", shape, ran(db), out)
    assert leaks(db) == [], (ran(db), out)
    if shape == "rls":
        assert err is None, out


def test_a3_defaults_and_own_triggers_fire_as_the_writer_not_the_capture_role(clean, attacker, connect):
    """roles.md: any role may not "have its code ... run with a privileged role's rights". The owner's table has
    a DEFAULT calling spy() and BEFORE/AFTER row and statement triggers of its own calling spy(); the writer
    writes (INSERT, UPDATE, DELETE, TRUNCATE); then seal and untrack."""
    db = clean
    attacker.execute("""CREATE TABLE public.t111_a3 (id int PRIMARY KEY, v int, d boolean DEFAULT public.spy('default'));
                        CREATE FUNCTION public.t111_trg() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN PERFORM public.spy('trigger ' || TG_WHEN || ' ' || TG_LEVEL || ' ' || TG_OP);
                              IF TG_LEVEL = 'ROW' AND TG_OP <> 'DELETE' THEN RETURN NEW; END IF; RETURN OLD; END $$;
                        CREATE TRIGGER t111_b BEFORE INSERT OR UPDATE OR DELETE ON public.t111_a3 FOR EACH ROW EXECUTE FUNCTION public.t111_trg();
                        CREATE TRIGGER t111_s AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.t111_a3 FOR EACH STATEMENT EXECUTE FUNCTION public.t111_trg();
                        CREATE TRIGGER zzzz_t111_a AFTER INSERT OR UPDATE OR DELETE ON public.t111_a3 FOR EACH ROW EXECUTE FUNCTION public.t111_trg();
                        GRANT ALL ON public.t111_a3 TO app_writer;
                        INSERT INTO public.t111_a3 (id, v) VALUES (1, 1)""")
    enable_tracking(connect("app_maintainer"), "public.t111_a3", baseline=True)
    w = connect("app_writer")
    w.execute("INSERT INTO public.t111_a3 (id, v) VALUES (2, 2); UPDATE public.t111_a3 SET v = 9; DELETE FROM public.t111_a3 WHERE id = 2")
    w.execute("TRUNCATE public.t111_a3")
    out = exercise(db, connect, "public.t111_a3")
    print("RAN", ran(db), out)
    assert leaks(db) == [], (ran(db), out)
    assert captures(db) >= 4, out


def test_a4_owner_operator_and_cast_on_a_custom_key_type_never_run_privileged(clean, attacker, connect):
    """security.md: "No owner's code or DDL decides what is recorded" / roles.md: no owner code run with a
    privileged role's rights. The key column is a composite type of the owner's; the owner adds an = operator
    on it (spy inside) and a text cast; enabling, writing, row_history, disabling."""
    db = clean
    attacker.execute("""CREATE TYPE public.t111_k AS (a int, b text);
                        CREATE FUNCTION public.t111_keq(public.t111_k, public.t111_k) RETURNS boolean LANGUAGE plpgsql AS $$
                        BEGIN PERFORM public.spy('operator'); RETURN $1.a = $2.a; END $$;
                        CREATE OPERATOR public.= (LEFTARG = public.t111_k, RIGHTARG = public.t111_k, FUNCTION = public.t111_keq);
                        CREATE FUNCTION public.t111_ktext(public.t111_k) RETURNS text LANGUAGE plpgsql AS $$
                        BEGIN PERFORM public.spy('cast'); RETURN 'forged'; END $$;
                        CREATE CAST (public.t111_k AS text) WITH FUNCTION public.t111_ktext(public.t111_k);
                        CREATE TABLE public.t111_a4 (id int PRIMARY KEY, k public.t111_k, v int);
                        GRANT ALL ON public.t111_a4 TO app_writer; GRANT USAGE ON TYPE public.t111_k TO PUBLIC;
                        INSERT INTO public.t111_a4 VALUES (1, ROW(1, 'x'), 1)""")
    err = state_of(connect("app_maintainer"), "SELECT audit.enable_tracking('public.t111_a4'::regclass, baseline => true)")
    out = {"enable": err}
    if err is None:
        connect("app_writer").execute("UPDATE public.t111_a4 SET k = ROW(2, 'y'), v = 2")
        out.update(exercise(db, connect, "public.t111_a4"))
        txt = db.execute("SELECT payload::text FROM audit.events WHERE origin = 'capture' ORDER BY intake_id DESC NULLS LAST, seq DESC LIMIT 1").fetchone()
        assert "forged" not in (txt[0] if txt else ""), txt
    print("RAN", ran(db), out)
    assert leaks(db) == [], (ran(db), out)


def test_a5_owners_partition_added_under_a_superusers_event_trigger(clean, attacker, connect):
    """security.md: "Partitions are covered at every level, those created or attached later included (by a member
    of the maintainer role owning them: others are refused ...)". The table owner (no maintainer role) adds a
    partition by CREATE ... PARTITION OF and by ATTACH (its partition's DEFAULT calls spy()), while a
    superuser's own ddl_command_end event trigger exists: each is refused or covered, and no spy runs privileged."""
    db = clean
    db.execute("""CREATE FUNCTION public.t111_et() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
                  CREATE EVENT TRIGGER t111_et ON ddl_command_end EXECUTE FUNCTION public.t111_et()""")
    attacker.execute("""CREATE TABLE public.t111_p (id int PRIMARY KEY, v int, d boolean DEFAULT public.spy('pdefault')) PARTITION BY RANGE (id);
                        CREATE TABLE public.t111_p1 PARTITION OF public.t111_p FOR VALUES FROM (0) TO (100);
                        GRANT ALL ON public.t111_p TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.t111_p")
    s1 = state_of(attacker, "CREATE TABLE public.t111_p2 PARTITION OF public.t111_p FOR VALUES FROM (100) TO (200)")
    attacker.execute("CREATE TABLE public.t111_p3 (id int PRIMARY KEY, v int, d boolean DEFAULT public.spy('p3default'))")
    s2 = state_of(attacker, "ALTER TABLE public.t111_p ATTACH PARTITION public.t111_p3 FOR VALUES FROM (200) TO (300)")
    w = connect("app_writer")
    before = captures(db)
    for i in (150, 250):
        with suppress(psycopg.Error):
            w.execute("INSERT INTO public.t111_p (id, v) VALUES (%s, 1)", [i])
    landed = db.execute("SELECT count(*) FROM public.t111_p WHERE id IN (150, 250)").fetchone()[0]
    assert captures(db) - before == landed, (s1, s2, landed)
    print("RAN", ran(db), s1, s2, landed)
    assert leaks(db) == [], ran(db)
    assert status(db).problems == []


# ================================ B: switching capture off ================================

@pytest.fixture
def tracked(clean, attacker, connect):
    attacker.execute("""CREATE TABLE public.t111_b (id int PRIMARY KEY, v int, note text);
                        GRANT ALL ON public.t111_b TO app_writer;
                        INSERT INTO public.t111_b (id, v) VALUES (1, 0), (2, 0)""")
    enable_tracking(connect("app_maintainer"), "public.t111_b")
    return clean


def test_b1_every_trigger_switch_the_owner_has_is_refused(tracked, attacker, connect):
    """security.md, No switch-off: "the event triggers refuse any command that leaves a table otherwise". The
    owner tries each switch; a write after each is still captured."""
    db = tracked
    trig = db.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.t111_b'::regclass AND NOT tgisinternal").fetchall()
    tries = ["ALTER TABLE public.t111_b DISABLE TRIGGER ALL", "ALTER TABLE public.t111_b DISABLE TRIGGER USER"]
    for (t,) in trig:
        tries += [f'ALTER TABLE public.t111_b DISABLE TRIGGER "{t}"', f'ALTER TABLE public.t111_b ENABLE REPLICA TRIGGER "{t}"',
                  f'ALTER TRIGGER "{t}" ON public.t111_b RENAME TO t111_x', f'DROP TRIGGER "{t}" ON public.t111_b']
    got = {s: state_of(attacker, s) for s in tries}
    assert all(v is not None for v in got.values()), {k: v for k, v in got.items() if v is None}
    before = captures(db)
    connect("app_writer").execute("UPDATE public.t111_b SET v = v + 1")
    assert captures(db) - before == 2


def test_b2_a_do_instead_rule_on_the_tracked_table(tracked, attacker, connect):
    """security.md No switch-off / capture: writes on a tracked table are captured. A rule ON UPDATE DO INSTEAD
    that rewrites the update into an UPDATE of the same table under another condition still fires the triggers;
    a rule DO ALSO that writes the table again too: every row change of t111_b is captured."""
    db = tracked
    s = state_of(attacker, "CREATE RULE t111_r AS ON UPDATE TO public.t111_b WHERE NEW.note = 'x' DO INSTEAD"
                           " UPDATE public.t111_b SET v = NEW.v + 100 WHERE id = OLD.id AND note IS DISTINCT FROM 'x'")
    before = captures(db)
    with suppress(psycopg.Error):
        connect("app_writer").execute("UPDATE public.t111_b SET note = 'x', v = 5 WHERE id = 1")
    v = db.execute("SELECT v FROM public.t111_b WHERE id = 1").fetchone()[0]
    changed = 1 if v != 0 else 0
    assert captures(db) - before == changed, (s, v)


def test_b3_inheritance_both_ways_is_refused(tracked, attacker):
    """security.md: "no table may come to inherit from a tracked one" and "a tracked table cannot come under an
    untracked parent"."""
    attacker.execute("CREATE TABLE public.t111_child (id int, v int, note text); CREATE TABLE public.t111_par (id int, v int, note text)")
    got = [state_of(attacker, "ALTER TABLE public.t111_child INHERIT public.t111_b"),
           state_of(attacker, "CREATE TABLE public.t111_child2 () INHERITS (public.t111_b)"),
           state_of(attacker, "ALTER TABLE public.t111_b INHERIT public.t111_par")]
    assert all(g is not None for g in got), got


def test_b4_partitioned_table_with_its_partitions_attached_by_a_non_maintainer(clean, attacker, connect):
    """security.md: partitions "created or attached later included (by a member of the maintainer role owning
    them: others are refused, since nobody could attach their triggers)". The table owner (no audit role)
    attaches a partitioned table with two partitions of its own to a tracked, rate-limited table: refused, or
    every write through it captured."""
    db = clean
    attacker.execute("""CREATE TABLE public.t111_tree (id int, body text) PARTITION BY RANGE (id);
                        CREATE TABLE public.t111_tree_1 PARTITION OF public.t111_tree FOR VALUES FROM (0) TO (100);
                        GRANT ALL ON public.t111_tree TO app_writer""")
    m = connect("app_maintainer")
    enable_tracking(m, "public.t111_tree")
    enable_rate_limit(m, "public.t111_tree", per_user_per_minute=1000, per_tenant_per_minute=None)
    attacker.execute("""CREATE TABLE public.t111_br (id int, body text) PARTITION BY RANGE (id);
                        CREATE TABLE public.t111_br_1 PARTITION OF public.t111_br FOR VALUES FROM (100) TO (150);
                        CREATE TABLE public.t111_br_2 PARTITION OF public.t111_br FOR VALUES FROM (150) TO (200)""")
    s = state_of(attacker, "ALTER TABLE public.t111_tree ATTACH PARTITION public.t111_br FOR VALUES FROM (100) TO (200)")
    before = captures(db)
    w = connect("app_writer")
    with suppress(psycopg.Error):
        w.execute("INSERT INTO public.t111_tree VALUES (120, 'a'), (170, 'b')")
    landed = db.execute("SELECT count(*) FROM public.t111_tree WHERE id >= 100").fetchone()[0]
    assert captures(db) - before == landed, (s, landed)
    assert status(db).problems == []


@pytest.fixture
def maint_owner(clean, connect):
    clean.execute("CREATE ROLE t111_m LOGIN IN ROLE audit_maintainer; GRANT CREATE ON SCHEMA public TO t111_m")
    m = connect("t111_m")
    yield m
    for t in ("t111_mt", "t111_mb", "t111_mc"):
        with suppress(psycopg.Error):
            clean.execute(f"DROP TABLE IF EXISTS public.{t} CASCADE")


def test_b5_three_level_tree_attached_to_a_tracked_and_limited_table_is_captured_and_limited(maint_owner, clean, connect):
    """Mends ccf6c04/b8f23ea; security.md: "Partitions are covered at every level, those created or attached later
    included". A maintainer attaches a partitioned table whose partition is itself partitioned (three levels) to
    a tracked, rate-limited table; a write to the deepest leaf is captured and counted by the limit."""
    db, m = clean, maint_owner
    m.execute("""CREATE TABLE public.t111_mt (id int, body text) PARTITION BY RANGE (id);
                 CREATE TABLE public.t111_mt_1 PARTITION OF public.t111_mt FOR VALUES FROM (0) TO (100);
                 GRANT ALL ON public.t111_mt TO app_writer""")
    enable_tracking(m, "public.t111_mt")
    enable_rate_limit(m, "public.t111_mt", per_user_per_minute=2, per_tenant_per_minute=None)
    m.execute("""CREATE TABLE public.t111_mb (id int, body text) PARTITION BY RANGE (id);
                 CREATE TABLE public.t111_mb_1 PARTITION OF public.t111_mb FOR VALUES FROM (100) TO (150) PARTITION BY RANGE (id);
                 CREATE TABLE public.t111_mb_1a PARTITION OF public.t111_mb_1 FOR VALUES FROM (100) TO (120);
                 CREATE TABLE public.t111_mb_1b PARTITION OF public.t111_mb_1 FOR VALUES FROM (120) TO (150);
                 CREATE TABLE public.t111_mb_2 PARTITION OF public.t111_mb FOR VALUES FROM (150) TO (200)""")
    s = state_of(m, "ALTER TABLE public.t111_mt ATTACH PARTITION public.t111_mb FOR VALUES FROM (100) TO (200)")
    assert s is None, s
    limited = {n for (n,) in db.execute("SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                                        " WHERE t.tgname = 'audit_rate_limit' AND c.relname LIKE 't111_m%'")}
    assert limited == {"t111_mt", "t111_mt_1", "t111_mb", "t111_mb_1", "t111_mb_1a", "t111_mb_1b", "t111_mb_2"}, limited
    m.execute("GRANT ALL ON public.t111_mb_1a, public.t111_mb_1b TO app_writer")
    w = connect("app_writer")
    before = captures(db)
    w.execute("INSERT INTO public.t111_mb_1a VALUES (101, 'leaf')")
    w.execute("INSERT INTO public.t111_mt VALUES (121, 'via root')")
    third = state_of(w, "INSERT INTO public.t111_mb_1b VALUES (122, 'third')")
    assert captures(db) - before == 2
    assert third is not None, "the third write in a minute passed a limit of 2"
    assert status(db).problems == []


def test_b6_detach_then_attach_a_swapped_table_in_one_transaction(maint_owner, clean, connect):
    """security.md: partitions attached later are covered; "the event triggers refuse any command that leaves a
    table otherwise". A maintainer, in one transaction, detaches a partition, renames a fresh untracked table
    to its name and attaches that: writes through the parent into the new partition are captured."""
    db, m = clean, maint_owner
    m.execute("""CREATE TABLE public.t111_mt (id int, body text) PARTITION BY RANGE (id);
                 CREATE TABLE public.t111_mt_1 PARTITION OF public.t111_mt FOR VALUES FROM (0) TO (100);
                 GRANT ALL ON public.t111_mt TO app_writer""")
    enable_tracking(m, "public.t111_mt")
    s = state_of(m, """BEGIN;
                       ALTER TABLE public.t111_mt DETACH PARTITION public.t111_mt_1;
                       ALTER TABLE public.t111_mt_1 RENAME TO t111_mt_old;
                       CREATE TABLE public.t111_mt_1 (id int, body text);
                       ALTER TABLE public.t111_mt ATTACH PARTITION public.t111_mt_1 FOR VALUES FROM (0) TO (100);
                       COMMIT""")
    before = captures(db)
    w = connect("app_writer")
    with suppress(psycopg.Error):
        w.execute("INSERT INTO public.t111_mt VALUES (5, 'x')")
    landed = db.execute("SELECT count(*) FROM public.t111_mt WHERE id = 5").fetchone()[0]
    assert captures(db) - before == landed, (s, landed)
    with suppress(psycopg.Error):
        db.execute("DROP TABLE IF EXISTS public.t111_mt_old")


def test_b7_merge_on_conflict_cte_copy_truncate_all_captured(tracked, connect):
    """capture.md / security.md: writes on tracked tables are captured (MERGE refused by a rule or captured).
    The writer changes rows by ON CONFLICT DO UPDATE, a writable CTE, COPY FROM, MERGE and TRUNCATE."""
    db = tracked
    w = connect("app_writer")
    before = captures(db)
    w.execute("INSERT INTO public.t111_b VALUES (1, 10, 'oc') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v")  # 1
    w.execute("WITH d AS (DELETE FROM public.t111_b WHERE id = 2 RETURNING *) INSERT INTO public.t111_b SELECT id + 10, v, 'cte' FROM d")  # 2
    with w.cursor().copy("COPY public.t111_b (id, v, note) FROM STDIN") as cp:
        cp.write_row((30, 1, "copy"))  # 1
    merged = state_of(w, "MERGE INTO public.t111_b t USING (VALUES (1, 99)) s(id, v) ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v")
    expected = 4 + (1 if merged is None else 0)
    assert captures(db) - before == expected, merged
    rows_before = db.execute("SELECT count(*) FROM public.t111_b").fetchone()[0]
    w.execute("TRUNCATE public.t111_b")
    assert db.execute("SELECT count(*) FROM audit.events WHERE origin = 'capture' AND kind LIKE '%truncate%'").fetchone()[0] >= 1, rows_before


def test_b8_owner_cannot_replace_the_capture_function_or_reorder_via_rename_swap(tracked, attacker, connect):
    """security.md: "a capture function refuses any table, trigger name or timing but its own" and triggers must
    be exactly those tracking creates. The owner renames the tracked table away and a copy into its name:
    writes to the renamed (still tracked) table stay captured and status names no problem."""
    db = tracked
    s = [state_of(attacker, "ALTER TABLE public.t111_b RENAME TO t111_b_old"),
         state_of(attacker, "CREATE TABLE public.t111_b (LIKE public.t111_b_old INCLUDING ALL)")]
    target = "public.t111_b_old" if s[0] is None else "public.t111_b"
    before = captures(db)
    connect("app_writer").execute(f"UPDATE {target} SET v = v + 1") if s[0] is None else \
        connect("app_writer").execute("UPDATE public.t111_b SET v = v + 1")
    assert captures(db) - before == 2, s
    assert status(db).problems == []


def system_events(db) -> list:
    return db.execute("SELECT kind, payload::text FROM audit.events WHERE origin = 'system' AND kind <> 'audit.tracking_enabled'"
                      " ORDER BY seq NULLS LAST, intake_id").fetchall()


def test_b9_value_changing_ddl_by_the_owner_is_refused_or_recorded(clean, attacker, connect):
    """security.md: "ALTER COLUMN ... TYPE rewrites every row with no row trigger (an event trigger on
    table_rewrite refuses it on a covered table). A change to a type a covered table uses (ALTER TYPE ...
    RENAME VALUE) is recorded, with the command." The owner changes what rows hold with no row trigger:
    ADD COLUMN with a volatile DEFAULT (a rewrite), ALTER COLUMN TYPE ... USING, a composite's RENAME ATTRIBUTE,
    an enum's RENAME VALUE, RENAME COLUMN, a default on an existing column, DROP COLUMN: each refused, or an
    event recorded."""
    db = clean
    attacker.execute("""CREATE TYPE public.t111_c AS (a int, b text); CREATE TYPE public.t111_en AS ENUM ('red', 'blue');
                        CREATE TABLE public.t111_b9 (id int PRIMARY KEY, v int, c public.t111_c, e public.t111_en, x int);
                        GRANT ALL ON public.t111_b9 TO app_writer;
                        INSERT INTO public.t111_b9 VALUES (1, 1, ROW(1, 'x'), 'red', 5)""")
    enable_tracking(connect("app_maintainer"), "public.t111_b9")
    tries = ["ALTER TABLE public.t111_b9 ADD COLUMN r float8 DEFAULT random()",
             "ALTER TABLE public.t111_b9 ADD COLUMN g int GENERATED ALWAYS AS (v * 1000) STORED",
             "ALTER TABLE public.t111_b9 ALTER COLUMN v TYPE bigint USING v + 1000",
             "ALTER TYPE public.t111_c RENAME ATTRIBUTE b TO secret",
             "ALTER TYPE public.t111_en RENAME VALUE 'red' TO 'green'",
             "ALTER TABLE public.t111_b9 RENAME COLUMN x TO y",
             "ALTER TABLE public.t111_b9 DROP COLUMN e"]
    silent = []
    for st in tries:
        before = len(system_events(db))
        err = state_of(attacker, st)
        if err is None and len(system_events(db)) == before:
            silent.append(st)
    assert silent == [], silent


def test_b10_owner_detaching_or_dropping_a_partition_is_recorded(clean, attacker, connect):
    """security.md, Not covered: "Rows removed by dropping or detaching a partition are not captured one by one;
    the partition's removal is recorded (audit.tracked_partition_removed)". The owner detaches one partition
    (plain, inside a transaction rolled forward), drops another, and detaches a third with FINALIZE tricks
    refused: each removal leaves an event."""
    db = clean
    attacker.execute("""CREATE TABLE public.t111_pp (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                        CREATE TABLE public.t111_pp1 PARTITION OF public.t111_pp FOR VALUES FROM (0) TO (10);
                        CREATE TABLE public.t111_pp2 PARTITION OF public.t111_pp FOR VALUES FROM (10) TO (20);
                        CREATE TABLE public.t111_pp3 PARTITION OF public.t111_pp FOR VALUES FROM (20) TO (30);
                        INSERT INTO public.t111_pp VALUES (1, 1), (11, 1), (21, 1)""")
    enable_tracking(connect("app_maintainer"), "public.t111_pp")
    got = [state_of(attacker, "ALTER TABLE public.t111_pp DETACH PARTITION public.t111_pp1"),
           state_of(attacker, "DROP TABLE public.t111_pp2"),
           state_of(attacker, "ALTER TABLE public.t111_pp DETACH PARTITION public.t111_pp3 CONCURRENTLY")]
    still = db.execute("SELECT count(*) FROM public.t111_pp").fetchone()[0]
    removed = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_removed'").fetchone()[0]
    assert removed == 3 - still, (got, still, removed)


# ================================ C: forged history ================================

ROLES_TRIED = ["app_writer", "app_reader", "app_maintainer", "app_secrets", "app_attacker", "table_owner"]


def test_c1_no_named_role_writes_intake_log_or_chain_directly(clean, attacker, connect):
    """roles.md: writer may not "touch the tables", "write a captured or system event"; reader may not "write
    anything"; maintainer may not "rewrite events". Each role INSERTs into the intake (origin capture/system),
    UPDATEs and DELETEs the log and chain, and calls record() with a forged origin column."""
    db = clean
    record(db, "t111.seed", payload={"a": 1})
    seal_all(db)
    wins = []
    for role in ROLES_TRIED:
        c = connect(role)
        for s in ["INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, origin)"
                  " VALUES ('user', 'postgres', 't111.forged', 'success', '1', now(), '{}', 'capture')",
                  "INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)"
                  " VALUES ('user', 'postgres', 'audit.tracking_enabled', 'success', '1', now(), '{}')",
                  "UPDATE audit.event_log SET payload = '{\"a\": 2}' WHERE kind = 't111.seed'",
                  "DELETE FROM audit.event_log WHERE kind = 't111.seed'",
                  "UPDATE audit.blocks SET block_hash = block_hash",
                  "UPDATE audit.seal_state SET last_seq = last_seq",
                  "DELETE FROM audit.event_intake"]:
            if state_of(c, s) is None:
                wins.append((role, s[:60]))
    assert wins == [], wins
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't111.forged'").fetchone()[0] == 0
    assert both_verifiers(db) == (True, True)


def test_c2_idempotency_replay_does_not_change_the_first_event(clean, connect):
    """docs: an idempotency key names one event; replaying it with another payload as another role must not
    make a second event nor alter the first."""
    db = clean
    w, m = connect("app_writer"), connect("app_maintainer")
    e1 = record(w, "t111.idem", payload={"n": 1}, idempotency_key="t111-k")
    with suppress(Exception):
        record(m, "t111.idem", payload={"n": 2}, idempotency_key="t111-k")
    with suppress(Exception):
        record(w, "t111.idem", payload={"n": 3}, idempotency_key="t111-k", actor_id="ceo")
    rows = db.execute("SELECT payload::text, db_role FROM audit.events WHERE kind = 't111.idem'").fetchall()
    assert len([r for r in rows if r[1] == "app_writer"]) == 1, rows
    assert json.loads([r for r in rows if r[1] == "app_writer"][0][0]) == {"n": 1}, (rows, e1)


def test_c3_table_owner_cannot_forge_db_role_through_set_role_or_session_auth(clean, attacker, connect):
    """security.md: "What the database vouches for is db_role, which no code in the session changes but by the
    roles the writer may act as." The table owner's trigger tries SET ROLE / set_config('role') to an audit role
    inside the writer's write; the captured db_role is the writer's."""
    db = clean
    attacker.execute("""CREATE TABLE public.t111_c3 (id int PRIMARY KEY, v int);
                        CREATE FUNCTION public.t111_c3t() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN
                          BEGIN PERFORM set_config('role', 'audit_maintainer', true); EXCEPTION WHEN OTHERS THEN NULL; END;
                          BEGIN PERFORM set_config('session_authorization', 'postgres', true); EXCEPTION WHEN OTHERS THEN NULL; END;
                          RETURN NEW; END $$;
                        CREATE TRIGGER a_t111 BEFORE INSERT OR UPDATE ON public.t111_c3 FOR EACH ROW EXECUTE FUNCTION public.t111_c3t();
                        GRANT ALL ON public.t111_c3 TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.t111_c3")
    connect("app_writer").execute("INSERT INTO public.t111_c3 VALUES (1, 1)")
    roles = [r[0] for r in db.execute("SELECT db_role FROM audit.events WHERE origin = 'capture'")]
    assert roles == ["app_writer"], roles


# ================================ D: locales ================================

def locales() -> list[str]:
    listed = {n.lower().replace("-", "") for n in subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()}
    out = ["C"]
    for loc in ("de_DE.UTF-8", "fr_FR.UTF-8", "es_ES.UTF-8", "ru_RU.UTF-8", "ja_JP.UTF-8"):
        if loc.lower().replace("-", "") in listed:
            out.append(loc)
    return out


@pytest.mark.parametrize("loc", locales())
def test_d1_guards_refuse_and_allow_alike_in_every_message_locale(clean, attacker, connect, loc):
    """security.md: "Nothing reads a setting ... or message text (a session can forge it, and lc_messages
    translates it)". Under lc_messages=loc (a superuser's ALTER ROLE, so each session starts in it): the owner's
    trigger switch-off, the writer's direct intake write, a record of a reserved kind, untracking another's
    table are refused; tracking, a write's capture, sealing and verify work."""
    db = clean
    roles = ["app_writer", "app_maintainer", "table_owner", "app_reader"]
    for r in roles:
        db.execute(f"ALTER ROLE {r} SET lc_messages = '{loc}'")
    try:
        own = connect("table_owner")
        own.execute("CREATE TABLE public.t111_d (id int PRIMARY KEY, v int); GRANT ALL ON public.t111_d TO app_writer")
        m = connect("app_maintainer")
        enable_tracking(m, "public.t111_d")
        w = connect("app_writer")
        got = [state_of(own, "ALTER TABLE public.t111_d DISABLE TRIGGER ALL"),
               state_of(w, "INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)"
                           " VALUES ('user', 'x', 'x', 'success', '1', now(), '{}')"),
               state_of(w, "SELECT audit.record('audit.tracking_enabled', NULL, NULL, NULL, NULL, NULL, '{}'::jsonb)"),
               state_of(connect("app_reader"), "SELECT audit.disable_tracking('public.t111_d'::regclass)")]
        assert all(g is not None for g in got), got
        w.execute("INSERT INTO public.t111_d VALUES (1, 1); UPDATE public.t111_d SET v = 2")
        assert captures(db) == 2
        assert seal_all(m) is None
        assert both_verifiers(connect("app_reader")) == (True, True)
        assert status(db).problems == []
        assert disable_tracking(m, "public.t111_d") is True
    finally:
        for r in roles:
            db.execute(f"ALTER ROLE {r} RESET lc_messages")


# ================================ E: hostile payloads ================================

HOSTILE = [
    {"deep": json.loads("[" * 200 + "]" * 200)},
    {"big": 10 ** 400, "neg0": -0.0, "exp": 1.5e300, "tiny": 5e-324, "int": 2 ** 70},
    {"nanlike": ["NaN", "Infinity", "-Infinity", "-0", "1e400"]},
    {"odd": "\u202e\u0301e\u0301\ufffe\uffff\U0010ffff\u200d\ufeff"},
    {"\u00e9": 1, "e\u0301": 2},
    {"nul_escape_text": "a\\u0000b", "quotes": "\"'\\\n\t\r"},
]


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_e1_hostile_record_payloads_leave_both_verifiers_agreeing(clean, i):
    """tamper-evidence.md / canonical-form.md: the SQL and the Python verifier recompute the same chain. Each
    hostile payload recorded (or refused), sealed: both verifiers say ok."""
    db = clean
    with suppress(Exception):
        record(db, "t111.hostile", payload=HOSTILE[i])
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


JSON_TEXTS = [
    '{"a": 1, "a": 2}',
    '{"x": "\\ud83d\\ude00", "y": "\\u00e9"}',
    '{"n": 1e400, "m": -0, "k": 1E+2, "z": 0.0000000000000000000001}',
    '{"deep": ' + "[" * 500 + "]" * 500 + "}",
    '{"s": "\\u0000"}',
    '{"s": "\\ud800"}',
    '[1, 2, {"b": 1, "a": 0, "b": 3}]',
    '{"big": 123456789012345678901234567890123456789012345678901234567890}',
]


@pytest.mark.parametrize("i", range(len(JSON_TEXTS)))
def test_e2_hostile_captured_json_rows_leave_both_verifiers_agreeing(clean, connect, i):
    """The SQL verifier and the Python verifier must agree on captured rows with hostile json/jsonb values
    (duplicate keys in json, surrogates, \\u0000, huge numbers, depth)."""
    db = clean
    db.execute("CREATE TABLE public.t111_e (id int PRIMARY KEY, j json, jb jsonb); GRANT ALL ON public.t111_e TO app_writer")
    enable_tracking(db, "public.t111_e")
    w = connect("app_writer")
    jb_ok = state_of(w, "SELECT %s::jsonb", [JSON_TEXTS[i]]) is None
    inserted = state_of(w, "INSERT INTO public.t111_e VALUES (1, %s::json, " + ("%s::jsonb" if jb_ok else "NULL") + ")",
                        [JSON_TEXTS[i]] + ([JSON_TEXTS[i]] if jb_ok else []))
    if inserted is None:
        w.execute("UPDATE public.t111_e SET j = j")
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True), inserted
    with suppress(psycopg.Error):
        db.execute("DROP TABLE public.t111_e CASCADE")


def test_e3_wild_columns_numeric_float_arrays_composites_ranges_domains(clean, connect):
    """Both verifiers agree on captured rows of numeric NaN/Infinity, float8 -0/NaN/1e308, text[] with odd Unicode,
    a composite with NULLs and quotes, ranges (empty, infinite) and a domain over jsonb."""
    db = clean
    db.execute("""CREATE TYPE public.t111_comp AS (a text, b float8, c numeric);
                  CREATE DOMAIN public.t111_dj AS jsonb CHECK (VALUE IS NOT NULL);
                  CREATE TABLE public.t111_w (id int PRIMARY KEY, n numeric, f float8, a text[], c public.t111_comp,
                                              r numrange, tr tstzrange, d public.t111_dj);
                  GRANT ALL ON public.t111_w TO app_writer""")
    enable_tracking(db, "public.t111_w")
    w = connect("app_writer")
    rows = [
        (1, "NaN", "-0", ["\u202e", "e\u0301", "\ufffe", "", None, '"', "\\"], "(\"a,\"\"b\",NaN,Infinity)", "empty", "(,)", '{"a": -0}'),
        (2, "Infinity", "NaN", ["\U0010ffff"], "(,,)", "[1e-30,1e30)", "[-infinity,infinity]", '{"x": 1e400}'),
        (3, "-Infinity", "1e308", [], "(\u0301,-0,-0.000)", "(-0,0]", "empty", '[[[[[[[[[]]]]]]]]]'),
        (4, "1e-16383", "-Infinity", ["a\tb\nc"], "(x,5e-324,1e131071)", None, None, '"\\u00e9"'),
    ]
    errs = []
    for r in rows:
        e = state_of(w, "INSERT INTO public.t111_w VALUES (%s, %s::numeric, %s::float8, %s, %s::public.t111_comp, %s::numrange,"
                        " %s::tstzrange, %s::public.t111_dj)", list(r))
        if e:
            errs.append((r[0], e))
    w.execute("UPDATE public.t111_w SET n = n, f = f, a = a")
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True), errs
    assert status(db).problems == []


def test_e4_cli_verify_agrees_on_hostile_text(clean, connect):
    """cli.md: `pgaudit verify` exits 0 on an intact chain. Events whose kinds, targets and actors hold odd Unicode
    and control characters, sealed: the CLI's verify and audit.verify() both say ok."""
    db = clean
    for k, t in [("t111.a\u202e", "x\u0000y".replace("\u0000", "\\u0000")), ("t111.b", "\ud7ff\ue000"), ("t111.c", "\r\n\x1b[31m")]:
        with suppress(Exception):
            record(db, k, target_type="t111", target_id=t, actor_id="\u0301\u200d", payload={"k": t})
    assert seal_all(db) is None
    info = db.info
    import sys
    cp = subprocess.run([sys.executable, "-c", "import sys; from pgaudit_py.cli import main; sys.exit(main())", "verify", "--dsn",
                         f"host={info.host} port={info.port} dbname={info.dbname} user={info.user}"],
                        capture_output=True, text=True, timeout=120)
    assert both_verifiers(db) == (True, True)
    assert cp.returncode == 0, (cp.stdout[-400:], cp.stderr[-400:])


@pytest.mark.parametrize("loc", locales())
def test_d2_python_error_classes_do_not_depend_on_the_message_locale(clean, connect, loc):
    """security.md: nothing reads "message text (... lc_messages translates it)". Under lc_messages=loc for the
    writer: a reserved kind raises InvalidKind, a replayed idempotency key with other content raises
    IdempotencyConflict, and an exceeded operation limit raises RateLimited, as in English."""
    from pgaudit_py.errors import IdempotencyConflict, InvalidKind, PgAuditError
    db = clean
    db.execute(f"ALTER ROLE app_writer SET lc_messages = '{loc}'")
    try:
        w = connect("app_writer")
        got = {}
        for name, call in [("reserved", lambda: record(w, "audit.t111", payload={})),
                           ("first", lambda: record(w, "t111.k", payload={"a": 1}, idempotency_key="t111-d2")),
                           ("replay", lambda: record(w, "t111.k", payload={"a": 2}, idempotency_key="t111-d2"))]:
            try:
                call()
                got[name] = None
            except PgAuditError as e:
                got[name] = type(e).__name__
            except psycopg.Error as e:
                got[name] = "psycopg:" + (e.sqlstate or "")
        assert got == {"reserved": InvalidKind.__name__, "first": None, "replay": IdempotencyConflict.__name__}, got
    finally:
        db.execute("ALTER ROLE app_writer RESET lc_messages")


@pytest.mark.parametrize("depth", [900, 1100, 5000, 30000])
def test_e5_very_deep_captured_values_and_sql_recorded_payloads_keep_verifiers_agreeing(clean, connect, depth):
    """tamper-evidence.md: both verifiers recompute the same chain; the Python one must not raise a false
    alarm (RecursionError) where the SQL one says ok. A captured jsonb and json column and a payload recorded
    through SQL by the writer, nested `depth` deep."""
    db = clean
    db.execute("CREATE TABLE public.t111_deep (id int PRIMARY KEY, j json, jb jsonb); GRANT ALL ON public.t111_deep TO app_writer")
    enable_tracking(db, "public.t111_deep")
    w = connect("app_writer")
    text = '{"a":' * depth + "1" + "}" * depth
    got = [state_of(w, "INSERT INTO public.t111_deep VALUES (1, %s::json, %s::jsonb)", [text, text]),
           state_of(w, "SELECT audit.record('t111.deep', NULL, NULL, NULL, NULL, NULL, %s::jsonb)", [text])]
    assert seal_all(db) is None
    sql_ok = db.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    try:
        from pgaudit_py.chain import verify_chain
        py = verify_chain(db)
        py_ok = (py.ok, getattr(py, "problem", None))
    except RecursionError as e:
        py_ok = ("RecursionError", str(e)[:80])
    assert (sql_ok[0], py_ok[0]) == (True, True), (got, sql_ok, py_ok)


def test_e6_text_that_mimics_the_canonical_form_cannot_collide_two_events(clean, connect):
    """canonical-form.md: each event's canonical text is unambiguous. Two events whose field texts shift a
    separator between kind/target/payload are hashed apart; both verifiers ok, and a tamper moving the
    boundary is caught by both."""
    db = clean
    w = connect("app_writer")
    record(w, "t111.a", target_type="t", target_id='x","payload":{}', payload={"k": "v"})
    record(w, "t111.a", target_type='t","target_id":"x', target_id="", payload={"k": "v"})
    record(w, "t111.b", payload={"\n": "\r", "\u2028": "\u2029", "\\": "\"", "": ""})
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
    from trial_helpers import tamper
    tamper(db, """UPDATE audit.event_log SET target_type = 't","target_id":"x', target_id = ''
                  WHERE seq = (SELECT min(seq) FROM audit.event_log WHERE kind = 't111.a')""")
    assert both_verifiers(db) == (False, False)


def _limited_tree(m):
    m.execute("""CREATE TABLE public.t111_mt (id int, body text) PARTITION BY RANGE (id);
                 CREATE TABLE public.t111_mt_1 PARTITION OF public.t111_mt FOR VALUES FROM (0) TO (100) PARTITION BY RANGE (id);
                 CREATE TABLE public.t111_mt_1a PARTITION OF public.t111_mt_1 FOR VALUES FROM (0) TO (50);
                 CREATE FUNCTION public.t111_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
                 GRANT ALL ON public.t111_mt, public.t111_mt_1, public.t111_mt_1a TO app_writer""")
    enable_tracking(m, "public.t111_mt")
    enable_rate_limit(m, "public.t111_mt", per_user_per_minute=3, per_tenant_per_minute=None)


def test_b11_switches_on_a_leaf_or_middle_of_a_tracked_limited_tree_are_refused(maint_owner, clean, connect):
    """security.md, No switch-off, and the mend ccf6c04 (_refuse_switched_off given a trigger just made checks the
    rate limit only for the rate-limit trigger): the owner (a maintainer) tries, on a leaf and a middle
    partition, DISABLE TRIGGER ALL/USER, ENABLE REPLICA of each audit trigger, DROP and RENAME, and
    CREATE OR REPLACE TRIGGER with its own function under each audit trigger's name; all refused."""
    db, m = clean, maint_owner
    _limited_tree(m)
    wins = []
    for rel in ("public.t111_mt_1a", "public.t111_mt_1", "public.t111_mt"):
        names = [r[0] for r in db.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [rel])]
        tries = [f"ALTER TABLE {rel} DISABLE TRIGGER ALL", f"ALTER TABLE {rel} DISABLE TRIGGER USER"]
        for t in names:
            tries += [f'ALTER TABLE {rel} ENABLE REPLICA TRIGGER "{t}"', f'ALTER TABLE {rel} DISABLE TRIGGER "{t}"',
                      f'DROP TRIGGER "{t}" ON {rel}', f'ALTER TRIGGER "{t}" ON {rel} RENAME TO t111_x',
                      f'CREATE OR REPLACE TRIGGER "{t}" AFTER INSERT ON {rel} FOR EACH ROW EXECUTE FUNCTION public.t111_noop()',
                      f'CREATE OR REPLACE TRIGGER "{t}" BEFORE INSERT ON {rel} FOR EACH STATEMENT EXECUTE FUNCTION public.t111_noop()']
        for st in tries:
            if state_of(m, st) is None:
                wins.append(st)
    assert wins == [], wins
    w = connect("app_writer")
    before = captures(db)
    w.execute("INSERT INTO public.t111_mt_1a VALUES (1, 'a')")
    w.execute("INSERT INTO public.t111_mt VALUES (2, 'b')")
    w.execute("INSERT INTO public.t111_mt_1 VALUES (3, 'c')")
    assert captures(db) - before == 3
    assert state_of(w, "INSERT INTO public.t111_mt_1a VALUES (4, 'd')") is not None, "fourth write passed a limit of 3"


def test_b12_a_branch_whose_leaf_belongs_to_a_non_maintainer_attached_to_a_tracked_limited_table(maint_owner, clean, connect):
    """security.md: partitions attached later are covered "by a member of the maintainer role owning them: others
    are refused, since nobody could attach their triggers". The maintainer owns a branch whose leaf a plain role
    owns; it attaches the branch to its tracked, rate-limited table: refused, or the leaf's writes captured."""
    db, m = clean, maint_owner
    _limited_tree(m)
    db.execute("CREATE ROLE t111_plain")
    m.execute("""CREATE TABLE public.t111_mb (id int, body text) PARTITION BY RANGE (id);
                 CREATE TABLE public.t111_mb_1 PARTITION OF public.t111_mb FOR VALUES FROM (100) TO (150)""")
    db.execute("ALTER TABLE public.t111_mb_1 OWNER TO t111_plain; GRANT ALL ON public.t111_mb_1 TO app_writer")
    s = state_of(m, "ALTER TABLE public.t111_mt ATTACH PARTITION public.t111_mb FOR VALUES FROM (100) TO (200)")
    w = connect("app_writer")
    before = captures(db)
    with suppress(psycopg.Error):
        w.execute("INSERT INTO public.t111_mt VALUES (120, 'x')")
    landed = db.execute("SELECT count(*) FROM public.t111_mt WHERE id = 120").fetchone()[0]
    assert captures(db) - before == landed, (s, landed)
    assert status(db).problems == [], s


@pytest.mark.parametrize("addr", ["::ffff:1.2.3.4", "::ffff:0:0", "0:0:0:0:0:ffff:7f00:1", "::", "1.2.3.4/32", "::1/128",
                                  "2001:db8::1:0:0:1", "255.255.255.255"])
def test_e7_session_claimed_context_values_keep_verifiers_agreeing(clean, connect, addr):
    """canonical-form.md: client_addr is hashed as PostgreSQL's text; the Python verifier must agree with the SQL
    one for every address form the session may claim (IPv4-mapped IPv6 prints differently in Python's
    ipaddress) and for actor/tenant/correlation texts with control characters, U+2028, BOM and combining marks;
    the event captured by a tracked table's trigger and one recorded."""
    db = clean
    db.execute("CREATE TABLE public.t111_ctx (id int PRIMARY KEY, v int); GRANT ALL ON public.t111_ctx TO app_writer")
    enable_tracking(db, "public.t111_ctx")
    w = connect("app_writer")
    w.execute("BEGIN")
    st = state_of(w, "SELECT set_config('pgaudit_py.client_addr', %s, true), set_config('pgaudit_py.actor_id', %s, true),"
                     " set_config('pgaudit_py.tenant_id', %s, true), set_config('pgaudit_py.correlation_id', %s, true),"
                     " set_config('pgaudit_py.actor_type', %s, true)",
                  [addr, "\x01\x1f\x7f\u2028\ufeffe\u0301", "t\u202e\u0085", "c\\\"\n", "user"])
    if st is None:
        st = state_of(w, "INSERT INTO public.t111_ctx VALUES (1, 1)")
    if st is None:
        st = state_of(w, "SELECT audit.record('t111.ctx', NULL, NULL, NULL, NULL, NULL, '{}'::jsonb)")
    if st is None:
        w.execute("COMMIT")
    else:
        with suppress(psycopg.Error):
            w.execute("ROLLBACK")
    n = db.execute("SELECT count(*) FROM audit.events WHERE kind = 't111.ctx' OR origin = 'capture'").fetchone()[0]
    print("CTX", addr, st, n)
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True), (st, n)


@pytest.mark.parametrize("move", ["set_schema", "revoke_type", "schema_revoke"])
def test_b13_owner_hides_its_table_or_types_from_the_sandbox(clean, attacker, connect, move):
    """capture.md: enable_tracking refuses "a table in a schema the sandbox may not use"; security.md No switch-off.
    After tracking, the owner moves its table (whose key is a domain of its own, converted in the sandbox) into a
    schema of its own the sandbox may not use, revokes USAGE on its type, or revokes the sandbox's USAGE on its
    own schema: a write is refused at the DDL, fails, or is captured; never lands unrecorded."""
    db = clean
    attacker.execute("""CREATE SCHEMA t111_s; GRANT USAGE ON SCHEMA t111_s TO app_writer, audit_sandbox;
                        CREATE DOMAIN public.t111_dk AS int CHECK (VALUE > 0);
                        CREATE TABLE public.t111_h (id public.t111_dk PRIMARY KEY, v int);
                        GRANT ALL ON public.t111_h TO app_writer""")
    if move == "schema_revoke":
        attacker.execute("ALTER TABLE public.t111_h SET SCHEMA t111_s")
        enable_tracking(connect("app_maintainer"), "t111_s.t111_h")
        st = state_of(attacker, "REVOKE USAGE ON SCHEMA t111_s FROM audit_sandbox")
        name = "t111_s.t111_h"
    else:
        enable_tracking(connect("app_maintainer"), "public.t111_h")
        st = state_of(attacker, "REVOKE USAGE ON SCHEMA t111_s FROM audit_sandbox; ALTER TABLE public.t111_h SET SCHEMA t111_s"
                      if move == "set_schema" else "REVOKE USAGE ON TYPE public.t111_dk FROM PUBLIC")
        name = "t111_s.t111_h" if (move == "set_schema" and st is None) else "public.t111_h"
    w = connect("app_writer")
    before = captures(db)
    wst = state_of(w, f"INSERT INTO {name} VALUES (1, 1)")
    landed = db.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    assert captures(db) - before == landed, (st, wst, landed)
    assert status(db).problems == [] or landed == 0, (st, wst)


def test_b14_several_modifying_ctes_on_one_tracked_table_are_all_captured(tracked, connect):
    """security.md: every write on a tracked table is captured (transition tables of one statement). One statement
    with two INSERT CTEs, an UPDATE CTE and a DELETE CTE on the same table, and a main INSERT: five changes."""
    db = tracked
    w = connect("app_writer")
    before = captures(db)
    w.execute("""WITH a AS (INSERT INTO public.t111_b VALUES (10, 1, 'a') RETURNING 1),
                      b AS (INSERT INTO public.t111_b VALUES (11, 1, 'b') RETURNING 1),
                      c AS (UPDATE public.t111_b SET v = 7 WHERE id = 1 RETURNING 1),
                      d AS (DELETE FROM public.t111_b WHERE id = 2 RETURNING 1)
                 INSERT INTO public.t111_b SELECT 12, (SELECT count(*) FROM a) + (SELECT count(*) FROM b)
                        + (SELECT count(*) FROM c) + (SELECT count(*) FROM d), 'main'""")
    assert captures(db) - before == 5


@pytest.mark.xfail(strict=True, reason="a known limit (docs/security.md, What db_role names): db_role names the role the session acts as, not the rights a change was made with; a SECURITY DEFINER capture cannot read the role it was called as; strict, so that a change that closes it says so")
def test_c4_the_owners_security_definer_trigger_frames_the_writer_for_a_table_it_may_not_touch(clean, attacker, connect):
    """security.md: "What the database vouches for is db_role, which no code in the session changes but by the roles
    the writer may act as"; sql/17_context.sql: db_role is "The acting database role". The writer inserts into the
    owner's tracked t111_pub; the owner's SECURITY DEFINER trigger on it deletes every row of the owner's other
    tracked table t111_vault, on which the writer holds no privilege at all. The vault's delete events must not
    say the writer's role did it."""
    db = clean
    attacker.execute("""CREATE TABLE public.t111_pub (id int PRIMARY KEY);
                        CREATE TABLE public.t111_vault (id int PRIMARY KEY, secret text);
                        INSERT INTO public.t111_vault VALUES (1, 'a'), (2, 'b');
                        GRANT INSERT ON public.t111_pub TO app_writer;
                        CREATE FUNCTION public.t111_frame() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
                        SET search_path = pg_catalog AS $$ BEGIN DELETE FROM public.t111_vault; RETURN NULL; END $$;
                        CREATE TRIGGER t111_frame AFTER INSERT ON public.t111_pub FOR EACH STATEMENT EXECUTE FUNCTION public.t111_frame()""")
    m = connect("app_maintainer")
    enable_tracking(m, "public.t111_pub")
    enable_tracking(m, "public.t111_vault")
    w = connect("app_writer")
    assert state_of(w, "DELETE FROM public.t111_vault") is not None  # the writer may not
    w.execute("INSERT INTO public.t111_pub VALUES (1)")
    roles = db.execute("SELECT db_role, kind FROM audit.events WHERE origin = 'capture' AND kind LIKE '%%vault%%'").fetchall()
    assert roles and all(r[0] != "app_writer" for r in roles), roles


def test_b15_truncate_cascade_and_fk_cascades_from_an_untracked_parent_are_captured(clean, attacker, connect):
    """security.md: a TRUNCATE is recorded; every row change of a tracked table captured. The owner's untracked
    parent has an ON DELETE CASCADE / ON UPDATE CASCADE foreign key from the tracked child; the writer updates
    and deletes parent rows, then TRUNCATEs the parent CASCADE: each change of the child is captured."""
    db = clean
    attacker.execute("""CREATE TABLE public.t111_par (id int PRIMARY KEY);
                        CREATE TABLE public.t111_kid (id int PRIMARY KEY, par int REFERENCES public.t111_par ON DELETE CASCADE ON UPDATE CASCADE);
                        INSERT INTO public.t111_par VALUES (1), (2), (3); INSERT INTO public.t111_kid VALUES (1, 1), (2, 2), (3, 3);
                        GRANT ALL ON public.t111_par, public.t111_kid TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.t111_kid")
    w = connect("app_writer")
    w.execute("UPDATE public.t111_par SET id = 10 WHERE id = 1")
    w.execute("DELETE FROM public.t111_par WHERE id = 2")
    kinds = [r[0] for r in db.execute("SELECT kind FROM audit.events WHERE origin = 'capture' ORDER BY intake_id")]
    assert kinds == ["public.t111_kid.update", "public.t111_kid.delete"], kinds
    w.execute("TRUNCATE public.t111_par CASCADE")
    assert db.execute("SELECT count(*) FROM audit.events WHERE origin = 'capture' AND kind LIKE '%%kid%%truncate%%'").fetchone()[0] == 1


@pytest.mark.parametrize("payload", [{None: 1, "null": 2}, {1.5: 1, "1.5": 2}, {False: 1, "false": 2}, {1e16: 1, "1e+16": 2},
                                     {-0.0: 1, "-0.0": 2}, {"a": {2: 1, "2": 2}}])
def test_e8_record_keys_that_json_writes_alike_are_refused_not_silently_merged(clean, payload):
    """record_input.payload_json: refuses "two keys of one object written alike ... jsonb keeps only the last". Each
    payload is refused (InvalidPayload) or stored with every value it was given."""
    from pgaudit_py.errors import InvalidPayload
    db = clean
    try:
        record(db, "t111.keys", payload=payload)
    except InvalidPayload:
        return
    stored = db.execute("SELECT payload::text FROM audit.events WHERE kind = 't111.keys'").fetchone()[0]
    inner = payload.get("a", payload)
    assert len(json.loads(stored).get("a", json.loads(stored))) == len(inner), stored


@pytest.mark.xfail(strict=True, reason="a known limit (docs/security.md, What db_role names): db_role names the role the session acts as, not the rights a change was made with; a SECURITY DEFINER capture cannot read the role it was called as; strict, so that a change that closes it says so")
def test_c5_the_owners_security_definer_default_frames_the_writer_too(clean, attacker, connect):
    """As c4, at depth 0: the owner's column DEFAULT calls its SECURITY DEFINER function, which updates the owner's
    tracked t111_vault (no privilege of the writer's). capture.md: "db_role is always the real database role";
    how-it-works.md: "the role that really wrote it in db_role"."""
    db = clean
    attacker.execute("""CREATE TABLE public.t111_vault (id int PRIMARY KEY, secret text);
                        INSERT INTO public.t111_vault VALUES (1, 'a');
                        CREATE FUNCTION public.t111_meddle() RETURNS int LANGUAGE plpgsql SECURITY DEFINER
                        SET search_path = pg_catalog AS $$ BEGIN UPDATE public.t111_vault SET secret = 'changed'; RETURN 1; END $$;
                        CREATE TABLE public.t111_pub (id int PRIMARY KEY, d int DEFAULT public.t111_meddle());
                        GRANT INSERT ON public.t111_pub TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.t111_vault")
    w = connect("app_writer")
    assert state_of(w, "UPDATE public.t111_vault SET secret = 'x'") is not None  # the writer may not
    w.execute("INSERT INTO public.t111_pub (id) VALUES (1)")
    roles = db.execute("SELECT db_role FROM audit.events WHERE origin = 'capture' AND kind LIKE '%%vault%%'").fetchall()
    assert roles and all(r[0] != "app_writer" for r in roles), roles
