"""A hundred-and-tenth attacker's trial: the proof tokens of migration 0027 (commits 4d71da5, 5abf46b).

  K. tokens: a non-owner making a proof under a token it chose (INSERT, COPY, writable CTE, ON CONFLICT),
     reading tokens (SELECT, RETURNING, COPY TO, EXPLAIN), switching the stamp off (replica mode), a
     token of its own proof used on another table, NULL and all-zero tokens, one proof taken by two
     helpers, another maintainer's SECURITY DEFINER trojan hunting the owner's token in every text it can
     read inside the owner's statement (current_query, pg_stat_activity, PG_CONTEXT) while the owner
     proves by hand, runs the public functions, or adds partitions (a superuser's event trigger runs it);
     a trojan setting the role GUC; overloads squatting on the public schema; nonexistent or
     non-canonical oids given to the rate-limit helpers; internal helpers not granted.
  L. legit paths: the owner's enable/disable tracking with and without baseline, partitions (two
     levels), partitions added later, rate limits, SET ROLE into an owning maintainer group, two calls
     in one statement, a first call refused inside an exception block, the documented by-hand call.

Each test asserts the secure outcome, so it FAILS when the attack works. Objects are prefixed t110_.
"""

from __future__ import annotations

from contextlib import suppress

import psycopg
import pytest
from trial_helpers import drop_made_under

from pgaudit_py import disable_tracking, enable_tracking
from pgaudit_py.rate_limits import disable_rate_limit, enable_rate_limit

DENIED = "42501"
T = "'public.t110_t'::regclass"
UUID_RE = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

# Another maintainer's trojan: every uuid it can read in the statement's texts, NULL and zero, tried
# as the token of every helper on the given table; each success is written to t110_xlog.
TROJAN = f"""
CREATE FUNCTION public.t110_trojan(target oid) RETURNS int LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog AS $$
DECLARE
    n int := 0;
    ctx text;
    cand uuid;
    cands uuid[] := ARRAY[NULL::uuid, '00000000-0000-0000-0000-000000000000'::uuid];
    texts text := coalesce(current_query(), '');
BEGIN
    GET DIAGNOSTICS ctx = PG_CONTEXT;
    texts := texts || ' ' || coalesce(ctx, '');
    texts := texts || ' ' || coalesce((SELECT string_agg(coalesce(a.query, ''), ' ') FROM pg_stat_activity a), '');
    BEGIN
        texts := texts || ' ' || coalesce((SELECT string_agg(p::text, ' ') FROM public.t110_peek p), '');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    cands := cands || ARRAY(SELECT DISTINCT m[1]::uuid FROM regexp_matches(texts, '({UUID_RE})', 'g') m);
    INSERT INTO public.t110_xlog (what, target) VALUES ('candidates ' || coalesce(array_length(cands, 1), 0), target);
    FOREACH cand IN ARRAY cands LOOP
        BEGIN
            PERFORM audit._put_rate_limit(jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object(
                'scope', 'table', 'target', target::text, 'per_user', 1, 'per_tenant', 1, 'window_seconds', 60)), cand);
            INSERT INTO public.t110_xlog (what, target) VALUES ('put_rate_limit ' || coalesce(cand::text, 'null'), target);
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        BEGIN
            PERFORM audit._unregister_tracking(target, 'audit.tracking_disabled', cand);
            INSERT INTO public.t110_xlog (what, target) VALUES ('unregister ' || coalesce(cand::text, 'null'), target);
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        BEGIN
            PERFORM audit._drop_rate_limit('table', target::text, cand);
            INSERT INTO public.t110_xlog (what, target) VALUES ('drop_rate_limit ' || coalesce(cand::text, 'null'), target);
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        BEGIN
            PERFORM audit._cover_partition(target, cand);
            INSERT INTO public.t110_xlog (what, target) VALUES ('cover ' || coalesce(cand::text, 'null'), target);
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    RETURN n;
END $$"""


@pytest.fixture
def kit(db, connect):
    """t110_v (maintainer) owns public.t110_t (two rows, tracked by it); t110_x (maintainer) owns public.t110_xt,
    public.t110_xlog and the trojan; returns (v, x) sessions."""
    db.execute("CREATE ROLE t110_v LOGIN IN ROLE audit_maintainer; CREATE ROLE t110_x LOGIN IN ROLE audit_maintainer;"
               " GRANT CREATE ON SCHEMA public TO t110_v, t110_x")
    v, x = connect("t110_v"), connect("t110_x")
    v.execute("CREATE TABLE public.t110_t (id int PRIMARY KEY, v int); INSERT INTO public.t110_t VALUES (1, 1), (2, 2)")
    x.execute("CREATE TABLE public.t110_xt (id int PRIMARY KEY, v int);"
              " CREATE TABLE public.t110_xlog (what text, target oid, at timestamptz DEFAULT clock_timestamp());"
              " GRANT SELECT, INSERT ON public.t110_xlog TO PUBLIC;"
              " CREATE TABLE public.t110_peek (t text); GRANT SELECT ON public.t110_peek TO PUBLIC")
    x.execute(TROJAN)
    x.execute("GRANT EXECUTE ON FUNCTION public.t110_trojan(oid) TO PUBLIC")
    v.execute(f"SELECT audit.enable_tracking({T})")
    try:
        yield v, x
    finally:
        with suppress(psycopg.Error):
            db.execute("ROLLBACK")
        with suppress(psycopg.Error):
            db.execute("RESET ROLE")
        for (name,) in db.execute("SELECT evtname FROM pg_event_trigger WHERE evtname LIKE 't110%'").fetchall():
            db.execute(f"DROP EVENT TRIGGER IF EXISTS {name}")
        for (name,) in db.execute("SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                  " WHERE n.nspname = 'public' AND c.relname LIKE 't110%' AND c.relkind IN ('r', 'p')"
                                  " AND NOT c.relispartition").fetchall():
            db.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
        for (sig,) in db.execute("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.proname LIKE 't110%'"
                                 " OR (p.pronamespace = 'public'::regnamespace AND p.proname IN"
                                 " ('_prove_owner', 'enable_tracking', 'disable_tracking', 'enable_rate_limit',"
                                 " 'disable_rate_limit', 'gen_random_uuid'))").fetchall():
            db.execute(f"DROP FUNCTION IF EXISTS {sig} CASCADE")
        drop_made_under(db, "t110_")


def oid_of(db, name: str) -> int:
    return db.execute("SELECT %s::regclass::oid", [name]).fetchone()[0]


def xlog_wins(db) -> list[str]:
    return [r[0] for r in db.execute("SELECT what FROM public.t110_xlog WHERE what NOT LIKE 'candidates%' ORDER BY at")]


def tracked(db, name: str = "public.t110_t") -> tuple | None:
    return db.execute("SELECT kind_prefix, enabled_by FROM audit.tracked_tables WHERE relid = to_regclass(%s)",
                      [name]).fetchone()


def limit_of(db, name: str = "public.t110_t") -> tuple | None:
    return db.execute("SELECT per_user, changed_by FROM audit.rate_limits WHERE scope = 'table' AND target ="
                      " to_regclass(%s)::oid::text", [name]).fetchone()


def proofs_left(db) -> int:
    return db.execute("SELECT count(*) FROM audit.owner_proofs").fetchone()[0]


def state_of(conn, statement: str, params=None) -> str | None:
    try:
        conn.execute(statement, params)
        return None
    except psycopg.Error as e:
        with suppress(psycopg.Error):
            conn.execute("ROLLBACK")
        return e.sqlstate


def events_by(db, role: str) -> list[str]:
    return [r[0] for r in db.execute("SELECT kind FROM audit.events WHERE db_role = %s AND kind LIKE 'audit.%%'"
                                     " ORDER BY intake_id NULLS LAST, seq", [role])]


# ================================ K: tokens ================================

def test_k1_a_non_owner_cannot_make_a_proof_under_a_token_it_chose(kit, db, connect):
    """Claim (roles.md): the BEFORE trigger of owner_proofs "refuses a role that does not own the table": t110_x
    inserts a proof of t110_v's table under a token of its choosing by INSERT, INSERT ... ON CONFLICT DO
    NOTHING, a writable CTE, INSERT ... SELECT and COPY FROM STDIN; each is refused and no row is left."""
    v, x = kit
    tok = "11111111-2222-3333-4444-555555555555"
    tries = [
        f"INSERT INTO audit.owner_proofs (relid, token) VALUES ({T}, '{tok}')",
        f"INSERT INTO audit.owner_proofs (relid, token) VALUES ({T}, '{tok}') ON CONFLICT DO NOTHING",
        f"WITH w AS (INSERT INTO audit.owner_proofs (relid, token) VALUES ({T}, '{tok}')) SELECT 1",
        f"INSERT INTO audit.owner_proofs (relid, role, xid, token) SELECT {T}, 't110_v', pg_current_xact_id(), '{tok}'",
        f"SELECT audit._prove_owner({T}, '{tok}')",
    ]
    got = [state_of(x, s) for s in tries]
    copy_state = None
    try:
        with x.cursor().copy("COPY audit.owner_proofs (relid, token) FROM STDIN") as cp:
            cp.write_row((oid_of(db, "public.t110_t"), tok))
    except psycopg.Error as e:
        copy_state = e.sqlstate
    assert got == [DENIED] * len(tries), got
    assert copy_state == DENIED
    assert proofs_left(db) == 0


def test_k2_no_maintainer_reads_a_token_not_even_the_tables_owner(kit, db):
    """Claim (roles.md): "only the owner role may read owner_proofs": SELECT, INSERT ... RETURNING (its own
    fresh proof), COPY TO, EXPLAIN ANALYZE and a view of its own are all refused to maintainers."""
    v, x = kit
    tries = ["SELECT token FROM audit.owner_proofs",
             f"INSERT INTO audit.owner_proofs (relid) VALUES ({T}) RETURNING token",
             f"INSERT INTO audit.owner_proofs (relid) VALUES ({T}) RETURNING length(token::text)",
             "COPY audit.owner_proofs TO STDOUT",
             "EXPLAIN ANALYZE SELECT * FROM audit.owner_proofs",
             "SELECT count(*) FROM audit.owner_proofs WHERE token IS NOT NULL"]
    got_v = [state_of(v, s) for s in tries]
    got_x = [state_of(x, s) for s in tries[:1] + tries[3:]]
    assert set(got_v) == {DENIED}, got_v
    assert set(got_x) == {DENIED}, got_x
    # a view of its own (the right to create it is not the right to read through it)
    v.execute("CREATE VIEW public.t110_peekv AS SELECT * FROM audit.owner_proofs")
    assert state_of(v, "SELECT token FROM public.t110_peekv") == DENIED


def test_k3_the_stamp_cannot_be_switched_off_by_a_maintainer(kit, db):
    """Claim (roles.md): the stamp trigger runs for every proof; replica mode, which skips ordinary triggers,
    is not open to a maintainer (SET, set_config, SET LOCAL), nor is disabling the trigger."""
    v, x = kit
    got = [state_of(x, "SET session_replication_role = replica"),
           state_of(x, "SELECT set_config('session_replication_role', 'replica', false)"),
           state_of(x, "ALTER TABLE audit.owner_proofs DISABLE TRIGGER stamp")]
    assert all(g is not None for g in got), got
    assert x.execute("SHOW session_replication_role").fetchone()[0] == "origin"


def test_k4_the_token_of_a_proof_of_ones_own_table_takes_nothing_on_another(kit, db):
    """Claim (roles.md): a proof is taken only for its table: t110_x proves its own t110_xt under token K, then
    passes K to every helper on t110_v's table in the same statement; all refused, v's table unchanged."""
    v, x = kit
    tok = "22222222-3333-4444-5555-666666666666"
    x.execute("BEGIN")
    x.execute(f"""SELECT audit._prove_owner('public.t110_xt'::regclass, '{tok}'),
                         audit._prove_owner('public.t110_xt'::regclass, '{tok}')""")
    x.execute("ROLLBACK")
    stmts = [
        f"SELECT audit._prove_owner('public.t110_xt'::regclass, '{tok}'),"
        f" audit._unregister_tracking({T}, 'audit.tracking_disabled', '{tok}')",
        f"SELECT audit._prove_owner('public.t110_xt'::regclass, '{tok}'), audit._put_rate_limit("
        f"jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object('scope', 'table', 'target', {T}::oid::text,"
        f" 'per_user', 1, 'per_tenant', 1, 'window_seconds', 60)), '{tok}')",
        f"SELECT audit._prove_owner('public.t110_xt'::regclass, '{tok}'), audit._register_tracking("
        f"jsonb_populate_record(NULL::audit.tracked_tables, jsonb_build_object('relid', {T}::oid,"
        f" 'kind_prefix', 't110.stolen')), '{tok}')",
    ]
    got = [state_of(x, s) for s in stmts]
    assert got == [DENIED] * 3, got
    assert tracked(db) == ("public.t110_t", "t110_v")
    assert limit_of(db) is None
    assert events_by(db, "t110_x") == []


def test_k5_one_proof_serves_one_helper_and_null_tokens_none(kit, db):
    """Claim (sql/62_tracking.sql, _check_owner): "consumes the caller's proof": the owner's DO block (one
    statement) proves once under token K and passes K to two helpers: the second is refused. A proof made
    under a NULL token serves a helper passed NULL nowhere."""
    v, x = kit
    v.execute(f"""DO $$
        DECLARE tok uuid := audit._prove_owner({T});
        BEGIN
            PERFORM audit._put_rate_limit(jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object(
                'scope', 'table', 'target', {T}::oid::text, 'per_user', 5, 'per_tenant', 5, 'window_seconds', 60)), tok);
            BEGIN
                PERFORM audit._unregister_tracking({T}, 'audit.tracking_disabled', tok);
                RAISE NOTICE 'second taken';
                INSERT INTO public.t110_xlog (what) VALUES ('second helper took the same proof');
            EXCEPTION WHEN insufficient_privilege THEN NULL;
            END;
            PERFORM audit._prove_owner({T}, NULL);
            BEGIN
                PERFORM audit._unregister_tracking({T}, 'audit.tracking_disabled', NULL);
                INSERT INTO public.t110_xlog (what) VALUES ('null token took a null proof');
            EXCEPTION WHEN insufficient_privilege THEN NULL;
            END;
        END $$""")
    assert xlog_wins(db) == []
    assert tracked(db) == ("public.t110_t", "t110_v")
    assert limit_of(db) == (5, "t110_v")


def test_k6_a_trojan_run_right_after_the_owners_proof_by_hand_finds_no_token(kit, db):
    """Claim (roles.md): "another maintainer's SECURITY DEFINER function run in the same statement, even right
    after a proof the owner made by hand, does not know it": the owner proves by hand (default random token)
    and calls t110_x's trojan in the same SELECT, in a subquery and in a LATERAL after a helper; the trojan
    tries every uuid in current_query(), PG_CONTEXT and pg_stat_activity, NULL and zero."""
    v, x = kit
    v.execute(f"SELECT audit._prove_owner({T}), public.t110_trojan({T})")
    v.execute(f"SELECT public.t110_trojan({T}) FROM (SELECT audit._prove_owner({T}) p) s WHERE p IS NOT NULL")
    v.execute(f"""SELECT audit._put_rate_limit(jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object(
                      'scope', 'table', 'target', {T}::oid::text, 'per_user', 7, 'per_tenant', 7, 'window_seconds', 60)),
                      p), public.t110_trojan({T})
                    FROM (SELECT audit._prove_owner({T}) p, audit._prove_owner({T}) q) s""")
    assert xlog_wins(db) == []
    assert tracked(db) == ("public.t110_t", "t110_v")
    assert limit_of(db) == (7, "t110_v")
    assert events_by(db, "t110_x") == []


def test_k7_a_trojan_in_an_event_trigger_inside_every_public_call_finds_no_token(kit, db):
    """Claim (roles.md): the public functions "prove and consume in one call, and leave no proof": a superuser's
    event trigger (ddl_command_start, ddl_command_end, sql_drop) calls t110_x's trojan on every table the
    owner's calls touch while enable_tracking (baseline, partitions), disable_tracking, enable_rate_limit,
    disable_rate_limit and partition DDL run; it hunts the token in every text it reads."""
    v, x = kit
    v.execute("""CREATE TABLE public.t110_p (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_p1 PARTITION OF public.t110_p FOR VALUES FROM (0) TO (100);
                 INSERT INTO public.t110_p VALUES (1, 1)""")
    db.execute("""CREATE FUNCTION public.t110_et() RETURNS event_trigger LANGUAGE plpgsql AS $$
                  DECLARE r oid;
                  BEGIN
                      FOR r IN SELECT c.oid FROM pg_class c WHERE c.relname IN ('t110_t', 't110_p', 't110_p1', 't110_p2')
                                 AND c.relnamespace = 'public'::regnamespace LOOP
                          PERFORM public.t110_trojan(r);
                      END LOOP;
                  END $$;
                  CREATE EVENT TRIGGER t110_et_start ON ddl_command_start EXECUTE FUNCTION public.t110_et();
                  CREATE EVENT TRIGGER t110_et_end ON ddl_command_end EXECUTE FUNCTION public.t110_et();
                  CREATE EVENT TRIGGER t110_et_drop ON sql_drop EXECUTE FUNCTION public.t110_et()""")
    enable_tracking(v, "public.t110_p", baseline=True)
    v.execute("CREATE TABLE public.t110_p2 PARTITION OF public.t110_p FOR VALUES FROM (100) TO (200)")
    enable_rate_limit(v, "public.t110_p", per_user_per_minute=9)
    disable_rate_limit(v, "public.t110_p")
    disable_tracking(v, "public.t110_t")
    enable_tracking(v, "public.t110_t", baseline=True)
    db.execute("DROP EVENT TRIGGER t110_et_start; DROP EVENT TRIGGER t110_et_end; DROP EVENT TRIGGER t110_et_drop")
    assert db.execute("SELECT count(*) FROM public.t110_xlog WHERE what LIKE 'candidates%'").fetchone()[0] > 0
    assert xlog_wins(db) == []
    assert tracked(db, "public.t110_p") == ("public.t110_p", "t110_v")
    assert tracked(db) == ("public.t110_t", "t110_v")
    assert limit_of(db, "public.t110_p") is None
    assert events_by(db, "t110_x") == []
    assert proofs_left(db) == 0


def test_k8_a_trojan_in_a_partitions_default_expression_finds_no_token(kit, db):
    """Claim (roles.md): covering a new partition consumes the proof the DDL's role makes: the owner's tree has
    a column default calling t110_x's trojan; a row inserted by the owner's INSERT ... that also creates
    (via a DO block) a partition in the same statement runs the trojan next to the partition proof."""
    v, x = kit
    v.execute(f"""CREATE TABLE public.t110_p (id int, v int DEFAULT public.t110_trojan({T})) PARTITION BY RANGE (id);
                  CREATE TABLE public.t110_p1 PARTITION OF public.t110_p FOR VALUES FROM (0) TO (100)""")
    enable_tracking(v, "public.t110_p")
    v.execute("""DO $$ BEGIN
                     CREATE TABLE public.t110_p2 PARTITION OF public.t110_p FOR VALUES FROM (100) TO (200);
                     INSERT INTO public.t110_p (id) VALUES (150);
                     PERFORM public.t110_trojan('public.t110_p2'::regclass);
                 END $$""")
    assert xlog_wins(db) == []
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_added'"
                      " AND target_id = 'public.t110_p2' AND db_role = 't110_v'").fetchone()[0] == 1
    assert limit_of(db) is None and tracked(db) == ("public.t110_t", "t110_v")


def test_k9_a_trojan_cannot_set_the_role_the_session_acts_as(kit, db, connect):
    """Claim (roles.md): a proof serves "the role the session acts as": t110_x's SECURITY DEFINER function, run in
    t110_v's session, sets the role GUC to itself (set_config, SET LOCAL) to make its own proofs serve, then
    registers tracking of t110_v's table with a proof of its own table. Refused; nothing changes."""
    v, x = kit
    tok = "33333333-4444-5555-6666-777777777777"
    x.execute(f"""CREATE FUNCTION public.t110_role_trojan() RETURNS int LANGUAGE plpgsql SECURITY DEFINER
                  SET search_path = pg_catalog AS $$
                  BEGIN
                      BEGIN PERFORM set_config('role', 't110_x', true); EXCEPTION WHEN OTHERS THEN NULL; END;
                      BEGIN EXECUTE 'SET LOCAL ROLE t110_x'; EXCEPTION WHEN OTHERS THEN NULL; END;
                      BEGIN
                          PERFORM audit._prove_owner('public.t110_xt'::regclass, '{tok}');
                          PERFORM audit._unregister_tracking({T}, 'audit.tracking_disabled', '{tok}');
                          INSERT INTO public.t110_xlog (what) VALUES ('unregistered under a role it set');
                      EXCEPTION WHEN OTHERS THEN NULL;
                      END;
                      RETURN 0;
                  END $$;
                  GRANT EXECUTE ON FUNCTION public.t110_role_trojan() TO PUBLIC""")
    v.execute("SELECT public.t110_role_trojan()")
    assert xlog_wins(db) == []
    assert tracked(db) == ("public.t110_t", "t110_v")


def test_k10_another_maintainers_code_cannot_track_its_own_table_naming_the_sessions_role(kit, db):
    """Claim (roles.md): a proof serves only "the role the session acts as (the one its events name as
    db_role)": t110_x's SECURITY DEFINER function calls the public enable_tracking and enable_rate_limit on
    t110_x's own table in t110_v's session; if it passed, the events would name t110_v for x's act."""
    v, x = kit
    x.execute("""CREATE FUNCTION public.t110_self() RETURNS int LANGUAGE plpgsql SECURITY DEFINER
                 SET search_path = pg_catalog AS $$
                 BEGIN
                     BEGIN PERFORM audit.enable_tracking('public.t110_xt'::regclass);
                           INSERT INTO public.t110_xlog (what) VALUES ('tracked in v''s session');
                     EXCEPTION WHEN OTHERS THEN NULL; END;
                     BEGIN PERFORM audit.enable_rate_limit('public.t110_xt'::regclass);
                           INSERT INTO public.t110_xlog (what) VALUES ('limited in v''s session');
                     EXCEPTION WHEN OTHERS THEN NULL; END;
                     RETURN 0;
                 END $$; GRANT EXECUTE ON FUNCTION public.t110_self() TO PUBLIC""")
    v.execute("SELECT public.t110_self()")
    assert xlog_wins(db) == []
    assert tracked(db, "public.t110_xt") is None and limit_of(db, "public.t110_xt") is None


def test_k11_overloads_squatting_on_the_public_schema_are_never_called(kit, db, connect):
    """Claim (roles.md): every function "qualifies every name": t110_x plants public._prove_owner(regclass),
    (text), (oid, text), public.gen_random_uuid() and public enable_tracking/rate-limit look-alikes taking
    text; t110_v, with public first on its search_path, runs the package's Python calls. None is called."""
    v, x = kit
    for sig, ret in [("_prove_owner(target regclass)", "uuid"), ("_prove_owner(target text)", "uuid"),
                     ("_prove_owner(target oid, token text)", "uuid"), ("gen_random_uuid()", "uuid"),
                     ("enable_tracking(target text)", "int"), ("disable_tracking(target text)", "int"),
                     ("enable_rate_limit(target text)", "int"), ("disable_rate_limit(target text)", "int")]:
        val = "'44444444-5555-6666-7777-888888888888'::uuid" if ret == "uuid" else "0"
        x.execute(f"""CREATE FUNCTION public.{sig} RETURNS {ret} LANGUAGE plpgsql AS $$
                      BEGIN INSERT INTO public.t110_xlog (what) VALUES ('squat {sig.split('(')[0]} ' || current_user);
                      RETURN {val}; END $$""")
        x.execute(f"GRANT EXECUTE ON FUNCTION public.{sig} TO PUBLIC")
    v.execute("SET search_path = public, audit, pg_catalog")
    disable_tracking(v, "public.t110_t")
    enable_tracking(v, "public.t110_t", baseline=True)
    enable_rate_limit(v, "public.t110_t", per_user_per_minute=3)
    disable_rate_limit(v, "public.t110_t")
    v.execute("""CREATE TABLE public.t110_p (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_p1 PARTITION OF public.t110_p FOR VALUES FROM (0) TO (100)""")
    enable_tracking(v, "public.t110_p")
    v.execute("CREATE TABLE public.t110_p2 PARTITION OF public.t110_p FOR VALUES FROM (100) TO (200)")
    assert xlog_wins(db) == []
    assert tracked(db) == ("public.t110_t", "t110_v")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_added'"
                      " AND target_id = 'public.t110_p2'").fetchone()[0] == 1


def test_k12_rate_limit_helpers_with_nonexistent_or_noncanonical_oids(kit, db):
    """Claim (roles.md: maintainers may not "act on a table it does not own"): t110_x calls _put_rate_limit on
    an oid no table has (a future table's, "a table that no longer exists passes" in _check_owner), and
    _drop_rate_limit on t110_v's limited table named by ' oid', '0oid', '+oid' and the negative form oid-2^32,
    and with scope NULL or 'TABLE'. Nothing is stored or removed, nothing recorded naming x."""
    v, x = kit
    enable_rate_limit(v, "public.t110_t", per_user_per_minute=4)
    o = oid_of(db, "public.t110_t")
    future = db.execute("SELECT max(oid)::bigint + 50000 FROM pg_class").fetchone()[0]
    entry = ("jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object('scope', 'table', 'target', %s,"
             " 'per_user', 1, 'per_tenant', 1, 'window_seconds', 60))")
    got_put = [state_of(x, f"SELECT audit._put_rate_limit({entry}, NULL)", [str(future)]),
               state_of(x, f"SELECT audit._put_rate_limit({entry}, gen_random_uuid())", [str(future)])]
    for text in [f" {o}", f"0{o}", f"+{o}", str(o - 2**32), f"{o} "]:
        state_of(x, "SELECT audit._drop_rate_limit('table', %s, NULL)", [text])
    for scope in [None, "TABLE", "operation"]:
        state_of(x, "SELECT audit._drop_rate_limit(%s, %s, NULL)", [scope, str(o)])
    assert all(g is not None for g in got_put), got_put
    assert db.execute("SELECT count(*) FROM audit.rate_limits WHERE target = %s", [str(future)]).fetchone()[0] == 0
    assert limit_of(db) == (4, "t110_v")
    assert events_by(db, "t110_x") == []


def test_k13_helpers_without_a_proof_and_internal_checks_not_granted(kit, db):
    """Claim (roles.md): the proof checks are internal (not executable by maintainers: _check_owner,
    _claim_baseline, _stamp_owner_proof), and _cover_partition / _take_baseline refuse t110_x on t110_v's
    partition and table given x's own token; nothing recorded naming x."""
    v, x = kit
    v.execute("""CREATE TABLE public.t110_p (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_p1 PARTITION OF public.t110_p FOR VALUES FROM (0) TO (100);
                 INSERT INTO public.t110_p VALUES (1, 1); GRANT UPDATE ON public.t110_p, public.t110_p1 TO t110_x""")
    enable_tracking(v, "public.t110_p")
    tok = "55555555-6666-7777-8888-999999999999"
    got = [state_of(x, f"SELECT audit._check_owner({T}, '{tok}')"),
           state_of(x, f"SELECT audit._claim_baseline({T}, '{tok}')"),
           state_of(x, f"SELECT audit._prove_owner('public.t110_xt'::regclass, '{tok}'),"
                       f" audit._cover_partition('public.t110_p1'::regclass, '{tok}')")]
    x.execute("BEGIN")
    x.execute("LOCK TABLE public.t110_p IN SHARE ROW EXCLUSIVE MODE")
    base = state_of(x, f"SELECT audit._prove_owner('public.t110_xt'::regclass, '{tok}'),"
                       f" audit_capture._take_baseline('public.t110_p'::regclass, '{tok}')")
    with suppress(psycopg.Error):
        x.execute("ROLLBACK")
    assert got == [DENIED, DENIED, DENIED], got
    assert base is not None
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.t110_p.baseline%'").fetchone()[0] == 0
    assert events_by(db, "t110_x") == []


def test_k14_a_proof_by_hand_with_the_owners_token_in_a_later_message_is_refused(kit, db):
    """Claim (roles.md): a proof "left in the transaction, serves ... no later statement, even to a caller that
    knows its token": the owner proves under its own chosen token, then in the next statement of the same
    transaction calls the helper with it."""
    v, x = kit
    tok = "66666666-7777-8888-9999-aaaaaaaaaaaa"
    v.execute("BEGIN")
    v.execute(f"SELECT audit._prove_owner({T}, '{tok}')")
    got = state_of(v, f"SELECT audit._unregister_tracking({T}, 'audit.tracking_disabled', '{tok}')")
    with suppress(psycopg.Error):
        v.execute("ROLLBACK")
    assert got == DENIED
    assert tracked(db) == ("public.t110_t", "t110_v")


# ================================ L: legit paths ================================

def test_l1_owner_tracks_a_two_level_tree_with_baseline_and_a_later_partition(kit, db):
    """Control (roles.md, capture.md): the owner's enable_tracking with baseline on a tree with a sub-partitioned
    partition, a partition added later at each level, and rate limits; all pass, events name t110_v, no proof
    is left."""
    v, x = kit
    v.execute("""CREATE TABLE public.t110_p (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_p1 PARTITION OF public.t110_p FOR VALUES FROM (0) TO (100) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_p1a PARTITION OF public.t110_p1 FOR VALUES FROM (0) TO (50);
                 INSERT INTO public.t110_p VALUES (1, 1), (2, 2)""")
    enable_tracking(v, "public.t110_p", baseline=True)
    v.execute("CREATE TABLE public.t110_p1b PARTITION OF public.t110_p1 FOR VALUES FROM (50) TO (100);"
              " CREATE TABLE public.t110_p2 (id int, v int);"
              " ALTER TABLE public.t110_p ATTACH PARTITION public.t110_p2 FOR VALUES FROM (100) TO (200)")
    assert tracked(db, "public.t110_p") == ("public.t110_p", "t110_v")
    added = {r[0] for r in db.execute("SELECT target_id FROM audit.events WHERE kind = 'audit.tracked_partition_added'"
                                      " AND db_role = 't110_v'")}
    assert {"public.t110_p1b", "public.t110_p2"} <= added
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t110_p.baseline'"
                      " AND db_role = 't110_v'").fetchone()[0] == 2
    enable_rate_limit(v, "public.t110_p", per_user_per_minute=100)
    assert limit_of(db, "public.t110_p") == (100, "t110_v")
    disable_rate_limit(v, "public.t110_p")
    assert disable_tracking(v, "public.t110_p") is True
    assert tracked(db, "public.t110_p") is None and limit_of(db, "public.t110_p") is None
    assert proofs_left(db) == 0


def test_l2_set_role_into_an_owning_maintainer_group(kit, db, connect):
    """Control (roles.md): a login without the maintainer role of its own, member of a NOLOGIN group that holds
    it and owns the table, SET ROLE to the group: enable (baseline), limits and disable all pass, and
    enabled_by, changed_by and the events name the group."""
    db.execute("CREATE ROLE t110_g NOLOGIN IN ROLE audit_maintainer; CREATE ROLE t110_gl LOGIN IN ROLE t110_g;"
               " GRANT CREATE ON SCHEMA public TO t110_g")
    g = connect("t110_gl")
    g.execute("SET ROLE t110_g")
    g.execute("CREATE TABLE public.t110_gt (id int PRIMARY KEY, v int); INSERT INTO public.t110_gt VALUES (1, 1)")
    enable_tracking(g, "public.t110_gt", baseline=True)
    enable_rate_limit(g, "public.t110_gt", per_user_per_minute=11)
    assert tracked(db, "public.t110_gt") == ("public.t110_gt", "t110_g")
    assert limit_of(db, "public.t110_gt") == (11, "t110_g")
    assert disable_rate_limit(g, "public.t110_gt") is True
    assert disable_tracking(g, "public.t110_gt") is True
    kinds = events_by(db, "t110_g")
    assert kinds.count("audit.tracking_enabled") == 1 and "audit.tracking_disabled" in kinds
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t110_gt.baseline'"
                      " AND db_role = 't110_g'").fetchone()[0] == 1
    assert events_by(db, "t110_gl") == []


def test_l3_two_public_calls_in_one_statement_and_the_same_table_twice(kit, db):
    """Control: one SELECT enables tracking of two tables, and another enables the same table twice and limits it
    twice; each call's token is its own, so every call passes."""
    v, x = kit
    v.execute("CREATE TABLE public.t110_u (id int PRIMARY KEY, v int)")
    v.execute(f"SELECT audit.enable_tracking('public.t110_u'::regclass), audit.disable_tracking({T})")
    v.execute(f"SELECT audit.enable_tracking({T}) FROM generate_series(1, 2)")
    v.execute(f"SELECT audit.enable_rate_limit({T}, g) FROM generate_series(1, 2) g")
    assert tracked(db) == ("public.t110_t", "t110_v")
    assert tracked(db, "public.t110_u") == ("public.t110_u", "t110_v")
    assert limit_of(db) == (2, "t110_v")
    assert proofs_left(db) == 0


def test_l4_a_refused_call_in_an_exception_block_leaves_the_next_call_working(kit, db):
    """Control: the owner's DO block tries enable_tracking with an unknown column (PA005, caught: its
    subtransaction's proofs go with it), then the same call right; the second passes and no proof is left."""
    v, x = kit
    v.execute(f"""DO $$ BEGIN
                     BEGIN PERFORM audit.enable_tracking({T}, redact_columns => ARRAY['nope']);
                     EXCEPTION WHEN OTHERS THEN NULL; END;
                     PERFORM audit.enable_tracking({T}, redact_columns => ARRAY['v']);
                  END $$""")
    assert db.execute(f"SELECT redact_columns FROM audit.tracked_tables WHERE relid = {T}").fetchone()[0] == ["v"]
    assert proofs_left(db) == 0


def test_l5_the_documented_call_by_hand_works(kit, db):
    """Control (roles.md): "SELECT audit._unregister_tracking(t, 'audit.tracking_disabled', audit._prove_owner(t))
    is disable_tracking(t) without the triggers' removal": the owner's call passes and names t110_v."""
    v, x = kit
    v.execute(f"SELECT audit._unregister_tracking({T}, 'audit.tracking_disabled', audit._prove_owner({T}))")
    assert tracked(db) is None
    assert "audit.tracking_disabled" in events_by(db, "t110_v")
    assert proofs_left(db) == 0


def _add_partition(v) -> str | None:
    try:
        v.execute("CREATE TABLE public.t110_q2 PARTITION OF public.t110_q FOR VALUES FROM (100) TO (200)")
        return None
    except psycopg.Error as e:
        return f"{e.sqlstate}: {str(e).splitlines()[0][:200]}"


def test_l6_the_owner_adds_a_partition_to_a_tracked_and_rate_limited_table(kit, db):
    """Control (roles.md: the maintainer may do "adding partitions to a tracked table it owns"; a rate-limited
    table's partition "is limited with it", sql/65_schema_changes.sql): the owner's table is tracked and
    rate-limited (both through the public functions); the owner adds a partition. It must pass, be covered
    by both, and its event name t110_v."""
    v, x = kit
    v.execute("""CREATE TABLE public.t110_q (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_q1 PARTITION OF public.t110_q FOR VALUES FROM (0) TO (100)""")
    enable_tracking(v, "public.t110_q")
    enable_rate_limit(v, "public.t110_q", per_user_per_minute=100)
    refused = _add_partition(v)
    assert refused is None, refused
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_added'"
                      " AND target_id = 'public.t110_q2' AND db_role = 't110_v'").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.t110_q2'::regclass"
                      " AND tgname IN ('audit_rate_limit', 'audit_capture_insert')").fetchone()[0] == 2


def test_l7_control_partition_added_to_a_table_only_tracked_or_only_limited(kit, db):
    """Control beside l6: the same partition added to a table that is only tracked, and to one only limited;
    both pass."""
    v, x = kit
    v.execute("""CREATE TABLE public.t110_q (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_q1 PARTITION OF public.t110_q FOR VALUES FROM (0) TO (100)""")
    enable_rate_limit(v, "public.t110_q", per_user_per_minute=100)
    only_limited = _add_partition(v)
    v.execute("DROP TABLE public.t110_q2")
    disable_rate_limit(v, "public.t110_q")
    enable_tracking(v, "public.t110_q")
    only_tracked = _add_partition(v)
    assert (only_limited, only_tracked) == (None, None)


def test_k15_a_dropped_limited_tables_limit_does_not_outlive_it(kit, db):
    """Claim (roles.md: maintainers may not "act on a table it does not own"; _check_owner: "A table that no
    longer exists passes"): the owner limits and tracks a table and drops it; no limit or tracking row of its
    oid is left, so t110_x can neither remove it (an event naming x) nor leave it waiting for a new table
    that takes the oid."""
    v, x = kit
    v.execute("CREATE TABLE public.t110_d (id int PRIMARY KEY, v int)")
    enable_rate_limit(v, "public.t110_d", per_user_per_minute=5)
    enable_tracking(v, "public.t110_d")
    o = oid_of(db, "public.t110_d")
    v.execute("DROP TABLE public.t110_d")
    left = db.execute("SELECT (SELECT count(*) FROM audit.rate_limits WHERE scope = 'table' AND target = %s),"
                      " (SELECT count(*) FROM audit.tracked_tables WHERE relid = %s)", [str(o), o]).fetchone()
    state_of(x, "SELECT audit._drop_rate_limit('table', %s, NULL)", [str(o)])
    state_of(x, "SELECT audit._unregister_tracking(%s::oid, 'audit.tracking_disabled', NULL)", [o])
    state_of(x, "SELECT audit._unregister_tracking(%s::oid, 'audit.tracked_table_dropped', NULL)", [o])
    assert left == (0, 0), left
    assert events_by(db, "t110_x") == []


def test_l6b_attach_and_a_superusers_partition_of_a_tracked_and_limited_table(kit, db):
    """Control (as l6, the other ways in): a table of the owner's ATTACHed to its tracked and rate-limited tree,
    and a partition a superuser creates there; both must pass and be covered by both; the owner can still
    disable both afterwards."""
    v, x = kit
    v.execute("""CREATE TABLE public.t110_q (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_q1 PARTITION OF public.t110_q FOR VALUES FROM (0) TO (100);
                 CREATE TABLE public.t110_q3 (id int, v int)""")
    enable_tracking(v, "public.t110_q")
    enable_rate_limit(v, "public.t110_q", per_user_per_minute=100)
    attach = state_of(v, "ALTER TABLE public.t110_q ATTACH PARTITION public.t110_q3 FOR VALUES FROM (300) TO (400)")
    superuser = state_of(db, "CREATE TABLE public.t110_q4 PARTITION OF public.t110_q FOR VALUES FROM (400) TO (500)")
    # The superuser's partition is its own: the owner drops the triggers of its tree once it owns it all.
    db.execute("ALTER TABLE IF EXISTS public.t110_q4 OWNER TO t110_v")
    assert disable_rate_limit(v, "public.t110_q") is True
    assert disable_tracking(v, "public.t110_q") is True
    assert (attach, superuser) == (None, None)


def test_k16_helpers_called_without_a_token_are_refused_even_to_the_owner(kit, db):
    """Claim (commit 4d71da5): "a call without it is refused 42501": the owner proves (random token it does not
    pass) and calls each helper with the token left to its default, in the same statement; each refused."""
    v, x = kit
    v.execute("""CREATE TABLE public.t110_p (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_p1 PARTITION OF public.t110_p FOR VALUES FROM (0) TO (100)""")
    enable_tracking(v, "public.t110_p")
    lim = ("jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object('scope', 'table', 'target',"
           f" {T}::oid::text, 'per_user', 1, 'per_tenant', 1, 'window_seconds', 60))")
    got = [state_of(v, f"SELECT audit._prove_owner({T}), audit._unregister_tracking({T}, 'audit.tracking_disabled')"),
           state_of(v, f"SELECT audit._prove_owner({T}), audit._put_rate_limit({lim})"),
           state_of(v, f"SELECT audit._prove_owner({T}), audit._drop_rate_limit('table', {T}::oid::text)"),
           state_of(v, "SELECT audit._prove_owner('public.t110_p1'::regclass),"
                       " audit._cover_partition('public.t110_p1'::regclass)"),
           state_of(v, f"SELECT audit._prove_owner({T}), audit._register_tracking(jsonb_populate_record("
                       f"NULL::audit.tracked_tables, jsonb_build_object('relid', {T}::oid, 'kind_prefix', 't110.x')))")]
    assert got == [DENIED] * 5, got
    assert tracked(db) == ("public.t110_t", "t110_v") and limit_of(db) is None


def test_k17_another_maintainers_open_transaction_on_owner_proofs_does_not_block_the_owner(kit, db, connect):
    """Control (sql/62_tracking.sql: old proofs go "never waiting for a row another transaction holds"): t110_x
    holds an open transaction with a proof of its own table and the strongest lock its INSERT right gives on
    owner_proofs; t110_v's calls (lock_timeout 5 s) pass; x may not delete, update or truncate proofs."""
    v, x = kit
    x.execute("BEGIN")
    x.execute("LOCK TABLE audit.owner_proofs IN ROW EXCLUSIVE MODE")
    x.execute("SELECT audit._prove_owner('public.t110_xt'::regclass)")
    v.execute("SET lock_timeout = '5s'")
    disable_tracking(v, "public.t110_t")
    enable_tracking(v, "public.t110_t", baseline=True)
    enable_rate_limit(v, "public.t110_t", per_user_per_minute=8)
    x.execute("ROLLBACK")
    got = [state_of(x, s) for s in ["DELETE FROM audit.owner_proofs", "UPDATE audit.owner_proofs SET token = NULL",
                                    "TRUNCATE audit.owner_proofs",
                                    "BEGIN; LOCK TABLE audit.owner_proofs IN ACCESS EXCLUSIVE MODE; COMMIT"]]
    assert got == [DENIED] * 4, got
    assert tracked(db) == ("public.t110_t", "t110_v") and limit_of(db) == (8, "t110_v")


def test_l8_detach_and_drop_partitions_of_a_tracked_and_limited_tree(kit, db):
    """Control (roles.md: the maintainer may change "tracking ... on tables it owns"): the owner's tracked and
    rate-limited tree loses one partition by DETACH and another by DROP; both pass and the detached one's
    removal names t110_v."""
    v, x = kit
    v.execute("""CREATE TABLE public.t110_q (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_q1 PARTITION OF public.t110_q FOR VALUES FROM (0) TO (100);
                 CREATE TABLE public.t110_q2 PARTITION OF public.t110_q FOR VALUES FROM (100) TO (200);
                 CREATE TABLE public.t110_q3 PARTITION OF public.t110_q FOR VALUES FROM (200) TO (300)""")
    enable_tracking(v, "public.t110_q")
    enable_rate_limit(v, "public.t110_q", per_user_per_minute=100)
    detach = state_of(v, "ALTER TABLE public.t110_q DETACH PARTITION public.t110_q2")
    drop = state_of(v, "DROP TABLE public.t110_q3")
    assert (detach, drop) == (None, None)
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_removed'"
                      " AND db_role = 't110_v'").fetchone()[0] == 2


def test_k18_no_side_channel_object_on_owner_proofs_and_no_statistics_of_tokens(kit, db):
    """Claim (roles.md): "only the owner role may read owner_proofs" and "INSERT is all the maintainer may do
    there": t110_x tries a trigger, a rule, a policy, row security, an index, extended statistics, a foreign
    key probing tokens, a publication; then, with committed proofs left (the owner's insert by hand) and the
    table ANALYZEd by a superuser, reads pg_stats and pg_stats_ext for token values."""
    v, x = kit
    x.execute("""CREATE FUNCTION public.t110_tg() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN INSERT INTO public.t110_peek VALUES (NEW.token::text); RETURN NEW; END $$""")
    tries = ["CREATE TRIGGER t110_leak BEFORE INSERT ON audit.owner_proofs FOR EACH ROW EXECUTE FUNCTION public.t110_tg()",
             "CREATE RULE t110_leak AS ON INSERT TO audit.owner_proofs DO ALSO INSERT INTO public.t110_peek VALUES (NEW.token::text)",
             "CREATE POLICY t110_leak ON audit.owner_proofs USING (true)",
             "ALTER TABLE audit.owner_proofs ENABLE ROW LEVEL SECURITY",
             "CREATE INDEX t110_leak ON audit.owner_proofs (token)",
             "CREATE STATISTICS public.t110_leak ON relid, token FROM audit.owner_proofs",
             "CREATE TABLE public.t110_fk (tok uuid REFERENCES audit.owner_proofs (token))",
             "CREATE PUBLICATION t110_leak FOR TABLE audit.owner_proofs",
             "ANALYZE audit.owner_proofs"]
    got = [state_of(x, s) for s in tries]
    assert all(g is not None for g in got[:-1]), got
    v.execute(f"INSERT INTO audit.owner_proofs (relid, token) VALUES ({T}, gen_random_uuid()), ({T}, gen_random_uuid())")
    db.execute("ANALYZE audit.owner_proofs")
    seen = x.execute("SELECT coalesce(string_agg(s::text, ' '), '') FROM pg_stats s WHERE s.tablename = 'owner_proofs'"
                     ).fetchone()[0]
    seen += x.execute("SELECT coalesce(string_agg(s::text, ' '), '') FROM pg_stats_ext s"
                      " WHERE s.tablename = 'owner_proofs'").fetchone()[0]
    tokens = [str(r[0]) for r in db.execute("SELECT token FROM audit.owner_proofs WHERE token IS NOT NULL")]
    assert tokens and not any(t in seen for t in tokens)
    assert db.execute("SELECT count(*) FROM public.t110_peek").fetchone()[0] == 0


def test_l9_partitions_added_under_set_role_and_a_superusers_calls(kit, db, connect):
    """Control: under SET ROLE into the owning maintainer group, a partition added to the group's tracked tree is
    covered and its event names the group; a superuser's enable_tracking / enable_rate_limit /
    disable_tracking on the owner's table pass and name the superuser."""
    db.execute("CREATE ROLE t110_g NOLOGIN IN ROLE audit_maintainer; CREATE ROLE t110_gl LOGIN IN ROLE t110_g;"
               " GRANT CREATE ON SCHEMA public TO t110_g")
    g = connect("t110_gl")
    g.execute("SET ROLE t110_g")
    g.execute("""CREATE TABLE public.t110_gp (id int, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t110_gp1 PARTITION OF public.t110_gp FOR VALUES FROM (0) TO (100)""")
    enable_tracking(g, "public.t110_gp", baseline=True)
    added = state_of(g, "CREATE TABLE public.t110_gp2 PARTITION OF public.t110_gp FOR VALUES FROM (100) TO (200)")
    assert added is None, added
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_added'"
                      " AND target_id = 'public.t110_gp2' AND db_role = 't110_g'").fetchone()[0] == 1
    who = db.info.user
    enable_tracking(db, "public.t110_t", kind_prefix="t110.su")
    enable_rate_limit(db, "public.t110_t", per_user_per_minute=12)
    assert tracked(db) == ("t110.su", who) and limit_of(db) == (12, who)
    assert disable_tracking(db, "public.t110_t") is True
