"""A hundred-and-ninth attacker's trial.

  C. proofs of ownership (migration 0026): procedures and DO blocks with COMMIT (statement_timestamp()
     stays the CALL's across transactions), WITH HOLD cursors materialised at COMMIT, a superuser's
     event trigger running another maintainer's SECURITY DEFINER trojan inside the owner's calls, an
     RLS policy on the owner's table calling the trojan while a baseline is read, and partitions
     detached or attached by a concurrent session while enable_tracking waits for its lock; controls:
     the legit calls inside a procedure with COMMITs.
  D. hostile data: odd Unicode, quotes, newlines in every free-text field, NFC/NFD keys, a tampered key's
     normalisation, a huge payload, a very deep payload read back through the caller's Decimal loader;
     a table whose names hold quotes, dots and newlines; both verifiers must agree.

Each test asserts the safe outcome, so it FAILS when the attack works. Objects are prefixed t109_.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import suppress
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import set_json_loads
from trial_helpers import both_verifiers, drop_made_under, seal_all, tamper

from pgaudit_py import enable_tracking, list_events, record
from pgaudit_py.errors import InvalidPayload

T = "'public.t109_t'::regclass"


# ================================ C: proofs of ownership ================================

@pytest.fixture
def own(db, connect):
    """public.t109_t owned by t109_v (a maintainer, tracked by it); t109_x a maintainer owning nothing but
    public.t109_xlog and public.t109_trojan(oid), a SECURITY DEFINER function that tries to put a rate limit on
    and to untrack the given table, and writes each success into t109_xlog."""
    db.execute("CREATE ROLE t109_v LOGIN IN ROLE audit_maintainer; CREATE ROLE t109_x LOGIN IN ROLE audit_maintainer;"
               " GRANT CREATE ON SCHEMA public TO t109_v, t109_x;"
               " CREATE TABLE public.t109_t (id int PRIMARY KEY, v int); ALTER TABLE public.t109_t OWNER TO t109_v;"
               " INSERT INTO public.t109_t VALUES (1, 1), (2, 2);"
               " CREATE TABLE public.t109_xlog (what text, target oid, at timestamptz DEFAULT clock_timestamp());"
               " ALTER TABLE public.t109_xlog OWNER TO t109_x; GRANT SELECT ON public.t109_xlog TO PUBLIC")
    db.execute("""CREATE FUNCTION public.t109_trojan(target oid) RETURNS int LANGUAGE plpgsql SECURITY DEFINER
                  SET search_path = pg_catalog AS $$
                  DECLARE n int := 0;
                  BEGIN
                      BEGIN
                          PERFORM audit._put_rate_limit(jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object(
                              'scope', 'table', 'target', target::text, 'per_user', 1, 'per_tenant', 1,
                              'window_seconds', 60)), md5(1::text)::uuid);
                          INSERT INTO public.t109_xlog (what, target) VALUES ('put_rate_limit', target);
                          n := n + 1;
                      EXCEPTION WHEN OTHERS THEN NULL;
                      END;
                      BEGIN
                          PERFORM audit._unregister_tracking(target, 'audit.tracking_disabled', md5(1::text)::uuid);
                          INSERT INTO public.t109_xlog (what, target) VALUES ('unregister', target);
                          n := n + 1;
                      EXCEPTION WHEN OTHERS THEN NULL;
                      END;
                      RETURN n;
                  END $$;
                  ALTER FUNCTION public.t109_trojan(oid) OWNER TO t109_x""")
    v = connect("t109_v")
    v.execute(f"SELECT audit.enable_tracking({T})")
    try:
        yield db
    finally:
        with suppress(psycopg.Error):
            db.execute("ROLLBACK")
        for (name,) in db.execute("SELECT evtname FROM pg_event_trigger WHERE evtname LIKE 't109%'").fetchall():
            db.execute(f"DROP EVENT TRIGGER IF EXISTS {name}")
        db.execute("DROP TABLE IF EXISTS public.t109_t, public.t109_p, public.t109_p1, public.t109_p2, public.t109_p3,"
                   " public.t109_xlog CASCADE")
        db.execute("DROP FUNCTION IF EXISTS public.t109_trojan(oid), public.t109_et(), public.t109_left_proofs() CASCADE")
        db.execute("DROP PROCEDURE IF EXISTS public.t109_proc(), public.t109_legit() CASCADE")
        drop_made_under(db, "t109_")


def xlog(db) -> list:
    return db.execute("SELECT what, target::regclass::text FROM public.t109_xlog ORDER BY at").fetchall()


def tracked(db, table: str = "public.t109_t") -> int:
    return db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = to_regclass(%s)", [table]).fetchone()[0]


def limited(db, table: str = "public.t109_t") -> int:
    return db.execute("SELECT count(*) FROM audit.rate_limits WHERE scope = 'table' AND target = to_regclass(%s)::oid::text",
                      [table]).fetchone()[0]


def test_c1_a_procedures_commit_carries_no_proof_into_the_next_transaction(own, connect):
    """Attack: the owner's procedure proves by hand, COMMITs, then calls another maintainer's SECURITY DEFINER
    trojan: statement_timestamp() is still the CALL's in the new transaction, the acting role the same.
    roles.md: a proof serves "only in the statement that made the proof" and "no later statement"; 0026 ties it
    to the transaction (xid) too."""
    db = own
    v = connect("t109_v")
    v.execute(f"""CREATE PROCEDURE public.t109_proc() LANGUAGE plpgsql AS $$
                  BEGIN
                      PERFORM audit._prove_owner({T}, md5(1::text)::uuid);
                      COMMIT;
                      PERFORM public.t109_trojan({T});
                  END $$""")
    v.execute("CALL public.t109_proc()")
    assert xlog(db) == []
    assert tracked(db) == 1 and limited(db) == 0


def test_c2_a_do_block_commit_carries_no_proof_into_the_next_transaction(own, connect):
    """Attack: as c1 in a DO block (non-atomic, autocommit), the trojan run after a COMMIT and again after a
    ROLLBACK that follows a second proof. roles.md: "serves no other role's call and no later statement"."""
    db = own
    v = connect("t109_v")
    v.execute(f"""DO $$
                  BEGIN
                      PERFORM audit._prove_owner({T}, md5(1::text)::uuid);
                      COMMIT;
                      PERFORM public.t109_trojan({T});
                      PERFORM audit._prove_owner({T}, md5(1::text)::uuid);
                      ROLLBACK;
                      PERFORM public.t109_trojan({T});
                  END $$""")
    assert xlog(db) == []
    assert tracked(db) == 1 and limited(db) == 0


def test_c3_a_proof_committed_in_a_procedure_does_not_serve_the_owner_itself_in_the_next_transaction(own, connect):
    """Attack: the owner's own helper call in the transaction after the proof's (same statement_timestamp,
    same role): a committed proof row must never be taken by another transaction. roles.md: "no later
    statement"; _check_owner takes proofs of its own xid only."""
    db = own
    v = connect("t109_v")
    v.execute(f"""CREATE PROCEDURE public.t109_proc() LANGUAGE plpgsql AS $$
                  BEGIN
                      PERFORM audit._prove_owner({T}, md5(1::text)::uuid);
                      COMMIT;
                      BEGIN
                          PERFORM audit._unregister_tracking({T}, 'audit.tracking_disabled', md5(1::text)::uuid);
                      EXCEPTION WHEN insufficient_privilege THEN NULL;
                      END;
                  END $$""")
    v.execute("CALL public.t109_proc()")
    assert tracked(db) == 1


def test_c4_control_legit_calls_in_a_procedure_between_commits(own, connect):
    """Control: the owner's procedure runs disable_tracking, enable_tracking (baseline), enable_rate_limit and
    disable_rate_limit, COMMITting between them: each proves and consumes in its own call, so none is
    refused although all share the CALL's statement_timestamp()."""
    db = own
    v = connect("t109_v")
    v.execute(f"""CREATE PROCEDURE public.t109_legit() LANGUAGE plpgsql AS $$
                  BEGIN
                      PERFORM audit.disable_tracking({T});
                      COMMIT;
                      PERFORM audit.enable_tracking({T}, baseline => true);
                      COMMIT;
                      PERFORM audit.enable_rate_limit({T});
                      COMMIT;
                      PERFORM audit.disable_rate_limit({T});
                      COMMIT;
                      PERFORM audit.enable_rate_limit({T});
                  END $$""")
    v.execute("CALL public.t109_legit()")
    assert tracked(db) == 1 and limited(db) == 1
    kinds = [r[0] for r in db.execute("SELECT kind FROM audit.events WHERE db_role = 't109_v' ORDER BY intake_id")]
    assert kinds.count("audit.tracking_disabled") == 1
    assert kinds.count("audit.tracking_enabled") == 2
    assert kinds.count("audit.rate_limit_removed") == 1


def test_c5_with_hold_cursors_materialised_at_commit(own, connect):
    """Attack: two WITH HOLD cursors, a legit enable_rate_limit and then the trojan, both run by the COMMIT
    (one statement for statement_timestamp()). roles.md: "The public functions prove and consume in one
    call, and leave no proof"."""
    db = own
    v = connect("t109_v")
    v.execute("BEGIN")
    v.execute(f"DECLARE t109_c1 CURSOR WITH HOLD FOR SELECT audit.enable_rate_limit({T})")
    v.execute(f"DECLARE t109_c2 CURSOR WITH HOLD FOR SELECT public.t109_trojan({T}::oid)")
    v.execute("COMMIT")
    with suppress(psycopg.Error):
        v.execute("FETCH ALL FROM t109_c2").fetchall()
    assert [w for w, _ in xlog(db)] == []
    assert tracked(db) == 1


def test_c6_a_superusers_event_trigger_runs_a_trojan_inside_the_owners_calls(own, connect):
    """Attack: a superuser's event trigger (ddl_command_end and sql_drop, which the GRANTs, CREATE TRIGGERs and
    DROP TRIGGERs inside enable_tracking and the limit functions fire) calls another maintainer's SECURITY
    DEFINER trojan in the owner's statements. roles.md: a helper takes a proof only "in the statement that made
    the proof" and the public functions "leave no proof"."""
    db = own
    db.execute(f"""CREATE FUNCTION public.t109_et() RETURNS event_trigger LANGUAGE plpgsql AS $$
                   BEGIN PERFORM public.t109_trojan({T}); END $$;
                   CREATE EVENT TRIGGER t109_et_end ON ddl_command_end EXECUTE FUNCTION public.t109_et();
                   CREATE EVENT TRIGGER t109_et_drop ON sql_drop EXECUTE FUNCTION public.t109_et()""")
    v = connect("t109_v")
    errors = []
    for stmt in (f"SELECT audit.enable_tracking({T}, baseline => true)", f"SELECT audit.enable_rate_limit({T})",
                 f"SELECT audit.disable_rate_limit({T})", f"SELECT audit.enable_rate_limit({T})"):
        try:
            v.execute(stmt)
        except psycopg.Error as e:
            errors.append(f"{e.sqlstate}")
    assert xlog(db) == [], errors


def test_c7_an_rls_policy_on_the_owners_table_runs_the_trojan_while_the_baseline_is_read(own, connect):
    """Attack: the owner's table has row security whose policy calls another maintainer's SECURITY DEFINER
    trojan; enable_tracking(baseline) lets the sandbox read the rows right around its proofs.
    roles.md: "any role ... may not have its code (a cast, a policy) run with a privileged role's rights";
    proofs serve the role the session acts as only."""
    db = own
    v = connect("t109_v")
    v.execute(f"""ALTER TABLE public.t109_t ENABLE ROW LEVEL SECURITY;
                  CREATE POLICY t109_pol ON public.t109_t USING (public.t109_trojan({T}) >= 0)""")
    with suppress(psycopg.Error):
        v.execute(f"SELECT audit.enable_tracking({T}, baseline => true)")
    assert xlog(db) == []
    assert tracked(db) == 1 and limited(db) == 0


def _partitioned(db):
    db.execute("""CREATE TABLE public.t109_p (id int, v int) PARTITION BY RANGE (id);
                  CREATE TABLE public.t109_p1 PARTITION OF public.t109_p FOR VALUES FROM (0) TO (100);
                  CREATE TABLE public.t109_p2 PARTITION OF public.t109_p FOR VALUES FROM (100) TO (200);
                  ALTER TABLE public.t109_p OWNER TO t109_v; ALTER TABLE public.t109_p1 OWNER TO t109_v;
                  ALTER TABLE public.t109_p2 OWNER TO t109_v;
                  INSERT INTO public.t109_p VALUES (1, 1), (150, 2)""")
    # What the statement leaves in owner_proofs, which no maintainer may read: the superuser's function.
    db.execute("""CREATE FUNCTION public.t109_left_proofs() RETURNS bigint LANGUAGE sql SECURITY DEFINER
                  SET search_path = pg_catalog AS $$
                  SELECT count(*) FROM audit.owner_proofs WHERE xid = pg_current_xact_id() $$""")


def _race(db, connect, ddl: str, statement: str):
    """Session B (the owner) runs ddl in an open transaction; session A (the owner) runs statement, which
    waits for B's lock; B commits; A's result or error."""
    b = connect("t109_v")
    a = connect("t109_v")
    b.execute("BEGIN")
    b.execute(ddl)
    out: dict = {}

    def run():
        try:
            out["rows"] = a.execute(statement).fetchall()
        except psycopg.Error as e:
            out["error"] = f"{e.sqlstate}: {str(e).splitlines()[0]}"

    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if db.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [a.info.backend_pid]).fetchone()[0]:
            break
        time.sleep(0.02)
    out["waited"] = bool(db.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted",
                                    [a.info.backend_pid]).fetchone()[0])
    b.execute("COMMIT")
    th.join(20)
    return out


def test_c8_a_partition_detached_while_enable_tracking_waits_leaves_no_proof_for_a_trojan(own, connect):
    """Attack: enable_tracking proves every partition, then waits for its lock while another session of the
    owner detaches t109_p2; the helper then walks the tree anew and consumes the proofs of what is still
    there: the detached table's proof would be left in the statement, for a trojan run right after in the
    same SELECT. roles.md: "The public functions prove and consume in one call, and leave no proof"."""
    db = own
    _partitioned(db)
    out = _race(db, connect, "ALTER TABLE public.t109_p DETACH PARTITION public.t109_p2",
                "SELECT audit.enable_tracking('public.t109_p'::regclass) IS NOT NULL,"
                " public.t109_trojan('public.t109_p2'::regclass), public.t109_left_proofs()")
    assert xlog(db) == [], out
    assert limited(db, "public.t109_p2") == 0 and tracked(db, "public.t109_p2") == 0
    assert [r[1:] for r in out.get("rows", [])] == [(0, 0)], out  # no proof left, whatever takes it


def test_c8b_the_detached_partitions_left_proof_lets_a_trojan_register_its_tracking(own, connect):
    """Attack: as c8, the trojan registering tracking of the detached table under a kind prefix of its own
    choosing (t109.byx). roles.md: the maintainer may not "act on a table it does not own"; the public
    functions "leave no proof"."""
    db = own
    _partitioned(db)
    db.execute("""CREATE FUNCTION public.t109_trojan_reg(target oid) RETURNS int LANGUAGE plpgsql SECURITY DEFINER
                  SET search_path = pg_catalog AS $$
                  BEGIN
                      PERFORM audit._register_tracking(jsonb_populate_record(NULL::audit.tracked_tables,
                          jsonb_build_object('relid', target, 'kind_prefix', 't109.byx')), md5(1::text)::uuid);
                      INSERT INTO public.t109_xlog (what, target) VALUES ('register', target);
                      RETURN 1;
                  EXCEPTION WHEN OTHERS THEN RETURN 0;
                  END $$;
                  ALTER FUNCTION public.t109_trojan_reg(oid) OWNER TO t109_x""")
    out = _race(db, connect, "ALTER TABLE public.t109_p DETACH PARTITION public.t109_p2",
                "SELECT audit.enable_tracking('public.t109_p'::regclass) IS NOT NULL,"
                " public.t109_trojan_reg('public.t109_p2'::regclass)")
    db.execute("DROP FUNCTION public.t109_trojan_reg(oid)")
    events = db.execute("SELECT kind, db_role, target_id, payload->>'kind_prefix' FROM audit.events"
                        " WHERE kind LIKE 'audit.tracking%%' ORDER BY intake_id").fetchall()
    assert xlog(db) == [], (out, events)
    assert tracked(db, "public.t109_p2") == 0
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracking_enabled'"
                      " AND payload->>'kind_prefix' = 't109.byx'").fetchone()[0] == 0


def test_c8c_the_detach_race_in_a_transaction_leaves_no_proof_for_a_later_helper_call(own, connect):
    """Attack: as c8 but enable_tracking(baseline) and the trojan in one SELECT as well: the baseline proves and
    claims again after the lock; the first round's proof of the detached table must not survive.
    roles.md: "The public functions prove and consume in one call, and leave no proof"."""
    db = own
    _partitioned(db)
    out = _race(db, connect, "ALTER TABLE public.t109_p DETACH PARTITION public.t109_p2",
                "SELECT audit.enable_tracking('public.t109_p'::regclass, baseline => true) IS NOT NULL,"
                " public.t109_trojan('public.t109_p2'::regclass), public.t109_left_proofs()")
    assert xlog(db) == [], out
    assert limited(db, "public.t109_p2") == 0
    assert [r[1:] for r in out.get("rows", [])] == [(0, 0)], out  # no proof left, whatever takes it


def test_c12_roles_without_the_maintainer_role_cannot_prove_or_write_proofs(own, connect):
    """Claim (roles.md): internal helpers are executable by the owner only, except those the maintainer's
    functions need (`_prove_owner` among them); only the maintainer may insert into owner_proofs, "only
    through this trigger". Tried as the reader, the writer, a login with no audit role, and a table owner
    who is not a maintainer."""
    db = own
    db.execute("CREATE ROLE t109_plain LOGIN; GRANT CREATE ON SCHEMA public TO t109_plain")
    plain = connect("t109_plain")
    plain.execute("CREATE TABLE public.t109_pt (id int PRIMARY KEY)")
    for role in ("app_reader", "app_writer", "app_attacker", "t109_plain"):
        c = connect(role)
        for stmt in (f"SELECT audit._prove_owner({T}, md5(1::text)::uuid)", "SELECT audit._prove_owner('public.t109_pt'::regclass, md5(1::text)::uuid)",
                     "INSERT INTO audit.owner_proofs (relid) VALUES ('public.t109_pt'::regclass)",
                     "SELECT audit.enable_tracking('public.t109_pt'::regclass)",
                     "SELECT audit.enable_rate_limit('public.t109_pt'::regclass)",
                     f"SELECT audit.disable_tracking({T})"):
            c.execute("BEGIN")
            try:
                c.execute(stmt)
                ok = True
            except psycopg.Error:
                ok = False
            c.execute("ROLLBACK")
            assert not ok, (role, stmt)
    assert tracked(db) == 1 and tracked(db, "public.t109_pt") == 0
    db.execute("DROP TABLE public.t109_pt")


def test_c13_another_maintainer_cannot_change_the_owners_table_through_the_public_functions(own, connect):
    """Claim (roles.md): the maintainer may not "act on a table it does not own": t109_x calls every public
    function on t109_t, alone and after a hand-made proof in the same statement."""
    db = own
    x = connect("t109_x")
    for stmt in (f"SELECT audit.disable_tracking({T})", f"SELECT audit.enable_tracking({T}, kind_prefix => 't109.x')",
                 f"SELECT audit.enable_rate_limit({T})", f"SELECT audit.disable_rate_limit({T})",
                 f"SELECT audit._prove_owner({T}, md5(1::text)::uuid), audit.disable_tracking({T})"):
        with suppress(psycopg.Error):
            x.execute(stmt)
    assert tracked(db) == 1 and limited(db) == 0
    assert db.execute("SELECT kind_prefix FROM audit.tracked_tables WHERE relid = 'public.t109_t'::regclass"
                      ).fetchone()[0] == "public.t109_t"
    assert db.execute("SELECT count(*) FROM audit.events WHERE db_role = 't109_x'").fetchone()[0] == 0


def test_c14_control_an_owner_through_a_chain_of_groups_then_revoked(own, connect):
    """Control and attack: t109_gt is owned by group t109_g; t109_v is a member through t109_mid. The legit
    path (membership through a chain) is not refused; once t109_mid is revoked from t109_v, the same calls are
    refused and nothing changes. roles.md: "refuses a role that does not own the table"."""
    db = own
    db.execute("CREATE ROLE t109_g; CREATE ROLE t109_mid IN ROLE t109_g; GRANT t109_mid TO t109_v;"
               " CREATE TABLE public.t109_gt (id int PRIMARY KEY); ALTER TABLE public.t109_gt OWNER TO t109_g")
    v = connect("t109_v")
    v.execute("SELECT audit.enable_tracking('public.t109_gt'::regclass)")
    v.execute("SELECT audit.enable_rate_limit('public.t109_gt'::regclass)")
    assert tracked(db, "public.t109_gt") == 1 and limited(db, "public.t109_gt") == 1
    db.execute("REVOKE t109_mid FROM t109_v")
    v2 = connect("t109_v")
    for stmt in ("SELECT audit.disable_tracking('public.t109_gt'::regclass)",
                 "SELECT audit.disable_rate_limit('public.t109_gt'::regclass)"):
        with suppress(psycopg.Error):
            v2.execute(stmt)
    assert tracked(db, "public.t109_gt") == 1 and limited(db, "public.t109_gt") == 1
    db.execute("DROP TABLE public.t109_gt CASCADE")


def test_c15_a_renamed_owner_keeps_its_legit_path(own, connect):
    """Control: the owner renamed (ALTER ROLE RENAME) between its calls, each in its own statement, still
    changes its table's tracking and limits: a legit owner path is not refused."""
    db = own
    db.execute("ALTER ROLE t109_v RENAME TO t109_v2")
    try:
        v = connect("t109_v2")
        v.execute(f"SELECT audit.enable_rate_limit({T})")
        v.execute(f"SELECT audit.disable_tracking({T})")
        assert tracked(db) == 0 and limited(db) == 1
    finally:
        db.execute("ALTER ROLE t109_v2 RENAME TO t109_v")


def test_c9_control_a_partition_attached_while_enable_tracking_waits(own, connect):
    """Control (legit path): the owner's enable_tracking waits while another session of the owner creates a
    partition; once it runs, the tracking covers every partition, the new one too (with its capture
    triggers), or it is refused in a way that leaves nothing half-done: a legit owner is not refused for a
    partition it owns."""
    db = own
    _partitioned(db)
    out = _race(db, connect, "CREATE TABLE public.t109_p3 PARTITION OF public.t109_p FOR VALUES FROM (200) TO (300)",
                "SELECT audit.enable_tracking('public.t109_p'::regclass) IS NOT NULL")
    assert "error" not in out, out
    n_trig = db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.t109_p3'::regclass"
                        " AND tgname LIKE 'audit_capture_%'").fetchone()[0]
    assert n_trig == 4, out


def test_c10_control_detach_race_still_tracks_what_remains(own, connect):
    """Control: after the c8 race with no trojan, enable_tracking succeeds and the table with its remaining
    partition is tracked (a legit owner path is not refused)."""
    db = own
    _partitioned(db)
    out = _race(db, connect, "ALTER TABLE public.t109_p DETACH PARTITION public.t109_p2",
                "SELECT audit.enable_tracking('public.t109_p'::regclass) IS NOT NULL")
    assert "error" not in out, out
    assert tracked(db, "public.t109_p") == 1


def test_c11_a_maintainer_who_owns_nothing_cannot_call_the_trojan_path_itself_in_a_procedure(own, connect):
    """Attack: t109_x runs a procedure that proves t109_t (refused, it does not own it) inside an exception
    block, COMMITs and calls its own trojan: nothing of the owner's may serve. security.md/roles.md: "act on a
    table it does not own" is what the maintainer may not."""
    db = own
    x = connect("t109_x")
    x.execute(f"""CREATE PROCEDURE public.t109_proc() LANGUAGE plpgsql AS $$
                  BEGIN
                      BEGIN PERFORM audit._prove_owner({T}, md5(1::text)::uuid); EXCEPTION WHEN OTHERS THEN NULL; END;
                      COMMIT;
                      PERFORM public.t109_trojan({T});
                  END $$""")
    x.execute("CALL public.t109_proc()")
    assert xlog(db) == []
    assert tracked(db) == 1 and limited(db) == 0


# ================================ D: hostile data ================================

ODD = ["quote ' \" \\ back", "new\nline\r\n", "dot.ted.name", "\u2028\u2029 separators", "\u202e RTL override",
       "\ufeff BOM", "e\u0301 NFD", "\u00e9 NFC", "emoji \U0001f600", "tab\tand\x7f", "  ", "", "🏳️‍🌈", "\\u0000"]


@pytest.fixture
def clean(db):
    yield db
    with suppress(psycopg.Error):
        db.execute("ROLLBACK")
    db.execute('DROP TABLE IF EXISTS public."t109_a.b""c\nd" CASCADE')
    drop_made_under(db, "t109_")


def test_d1_odd_unicode_in_every_free_text_field_both_verifiers_agree(clean):
    """Attack: events whose ids, tenants and payload keys and values hold quotes, newlines, separators, RTL
    overrides, BOM, NFC and NFD forms of one letter; sealed. tamper-evidence.md: both verifiers recompute
    the chain alike."""
    db = clean
    for i, s in enumerate(ODD):
        with suppress(Exception):
            record(db, "t109.odd", tenant_id=s or None, actor_id=s or None, target_id=s or None,
                   payload={s: s, "i": i, "nested": {s: [s, {s: s}]}, "e\u0301": 1, "\u00e9": 2})
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't109.odd'").fetchone()[0] >= len(ODD) - 2
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_d2_a_key_turned_from_nfc_to_nfd_is_caught_by_both(clean):
    """Attack: after sealing, a superuser with the triggers off changes a payload key from NFC to NFD (same
    glyph, different bytes). tamper-evidence.md: any change to a sealed event is found, by both verifiers."""
    db = clean
    record(db, "t109.nfc", payload={"caf\u00e9": 1})
    record(db, "t109.nfc2", payload={"x": 1})
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
    tamper(db, "UPDATE audit.event_log SET payload = jsonb_build_object('cafe\u0301', 1) WHERE kind = 't109.nfc'")
    assert both_verifiers(db) == (False, False)


def test_d3_payloads_at_the_size_limit_both_verifiers_agree(clean):
    """Attack: payloads just under the 64 KiB limit (random hex; thousands of keys), one over it (refused);
    sealed. Both verifiers must agree."""
    db = clean
    import os
    with pytest.raises(InvalidPayload):
        record(db, "t109.big", payload={"blob": os.urandom(40_000).hex()})
    record(db, "t109.big", payload={"blob": os.urandom(30_000).hex()[:63_000], "u": "\U0001f600" * 100})
    record(db, "t109.big", payload={f"k{i}": [i, "\u00e9"] for i in range(2500)})
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't109.big'").fetchone()[0] == 2
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_d4_a_very_deep_payload_read_through_the_callers_decimal_loader(clean, psycopg_globals):
    """Attack: a payload nested 3,000 levels deep (past Python's recursion) with floats at top and bottom,
    read by a caller whose connection loads JSON with Decimal. python.md: numbers read "with your function,
    so Decimal holds at every depth"; and both verifiers agree after sealing."""
    db = clean
    deep = "1.5"
    for _ in range(3000):
        deep = "[" + deep + "]"
    db.execute("SELECT audit.record(kind => 't109.deep', payload => %s::jsonb)",
               [json.dumps({"top": 2.25, "d": "@@"}).replace('"@@"', deep)])
    set_json_loads(lambda s: json.loads(s, parse_float=Decimal), db)
    ev = list_events(db, kind_prefix="t109.deep")[0]
    assert ev.payload["top"] == Decimal("2.25") and isinstance(ev.payload["top"], Decimal)
    v = ev.payload["d"]
    for _ in range(3000):
        v = v[0]
    assert isinstance(v, Decimal) and v == Decimal("1.5")
    set_json_loads(json.loads, db)
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_d5_repeated_deep_reads_do_not_grow_the_loader_maps(clean, psycopg_globals):
    """Attack: the same deep read done 200 times, each with a new loads function on the connection: nothing
    the package keeps may grow with use (python.md / deep_json: bounded caches)."""
    db = clean
    from pgaudit_py import deep_json
    deep = "0"
    for _ in range(100):
        deep = "[" + deep + "]"
    db.execute("SELECT audit.record(kind => 't109.rep', payload => jsonb_build_object('d', %s::jsonb))", [deep])

    def sizes():
        out = []
        for name in dir(deep_json):
            obj = getattr(deep_json, name)
            if type(obj) in (dict, list, set):
                out.append(len(obj))
            for attr in ("_cache", "_classes", "_by_class", "_loaders"):
                inner = getattr(obj, attr, None)
                if type(inner) in (dict, list, set):
                    out.append(len(inner))
        return sum(out)

    for i in range(20):
        set_json_loads(lambda s, i=i: json.loads(s), db)
        list_events(db, kind_prefix="t109.rep")
    before = sizes()
    for i in range(200):
        set_json_loads(lambda s, i=i: json.loads(s), db)
        assert list_events(db, kind_prefix="t109.rep")[0].payload["d"] is not None
    assert sizes() <= before + 5


def test_d6_a_table_with_quotes_dots_and_newlines_in_its_names(clean, connect):
    """Attack: a table named `t109_a.b"c<newline>d` with columns named likewise, tracked (its default kind
    prefix would hold the quote and newline): either refused cleanly, or every write is captured and both
    verifiers agree. capture.md: every write on a tracked table is captured."""
    db = clean
    db.execute('CREATE TABLE public."t109_a.b""c\nd" (id int PRIMARY KEY, "we""ird\ncol" text, "x.y" text);'
               ' GRANT ALL ON public."t109_a.b""c\nd" TO app_writer')
    table = 'public."t109_a.b""c\nd"'
    refused = None
    try:
        enable_tracking(connect("app_maintainer"), table)
    except Exception as e:  # noqa: BLE001
        refused = e
    if refused is not None:
        # a clean refusal: nothing tracked, nothing half-done
        assert db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = %s::regclass",
                          [table]).fetchone()[0] == 0
        db.execute('SET ROLE app_maintainer; RESET ROLE')
        enable_tracking(db, table, kind_prefix="t109.weird")
    w = connect("app_writer")
    w.execute(f"""INSERT INTO {table} VALUES (1, 'a''"\n', 'x'); UPDATE {table} SET "x.y" = 'z';
                  DELETE FROM {table}""")
    n = db.execute("SELECT count(*) FROM audit.events WHERE origin = 'capture' AND table_name IS NOT NULL"
                   " AND table_name LIKE %s", ['%t109_a.b%']).fetchone()[0] if _has_col(db, "table_name") else None
    kinds = [r[0] for r in db.execute("SELECT kind FROM audit.events WHERE kind ~ '(insert|update|delete)$'"
                                      " ORDER BY intake_id")]
    assert len(kinds) >= 3, (kinds, n, refused)
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def _has_col(db, col: str) -> bool:
    return db.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'audit'"
                      " AND table_name = 'events' AND column_name = %s", [col]).fetchone()[0] > 0


# ================================ E: the caller's JSON loaders ================================

from psycopg.types.json import JsonbLoader, JsonLoader  # noqa: E402


def _tagging(tag):
    class Tagged(JsonbLoader):
        def load(self, data):
            return (tag, json.loads(bytes(data)))
    return Tagged


def test_e1_a_loader_class_registered_on_the_connection_is_honoured_for_every_json_field(clean, connect, psycopg_globals):
    """Claim (python.md): "JSON values the package returns to you are read by your connection's JSON loader ...
    and returned as it made them", payload, row images and `changed` alike; a class overriding load is
    "used as it is"."""
    db = clean
    db.execute("CREATE TABLE public.t109_j (id int PRIMARY KEY, v int); GRANT ALL ON public.t109_j TO app_writer")
    enable_tracking(db, "public.t109_j")
    w = connect("app_writer")
    w.execute("INSERT INTO public.t109_j VALUES (1, 1); UPDATE public.t109_j SET v = 2")
    record(db, "t109.e1", payload={"a": 1})
    c = connect()
    c.adapters.register_loader("jsonb", _tagging("mine"))
    ev = list_events(c, kind_prefix="t109.e1")[0]
    assert ev.payload == ("mine", {"a": 1})
    from pgaudit_py import row_history
    hist = row_history(c, "public.t109_j", "1")
    upd = [e for e in hist if e.kind.endswith("update")][0]
    assert upd.row_before[0] == "mine" and upd.row_after[0] == "mine"
    assert upd.changed is None or upd.changed[0] == "mine"
    db.execute("DROP TABLE public.t109_j CASCADE")


def test_e2_a_hostile_loader_on_the_connection_and_globally_does_not_fool_the_verifiers(clean, psycopg_globals):
    """Attack: the caller's connection (and psycopg's globals) read every json/jsonb as one constant object;
    the chain is then tampered. python.md: "JSON the package reads for itself ... it reads with json.loads,
    whatever set_json_loads you set"; the verifiers must still see the tampering, and pass a clean chain."""
    db = clean
    record(db, "t109.e2", payload={"a": 1})
    record(db, "t109.e2", payload={"a": 2})
    assert seal_all(db) is None

    class Const(JsonbLoader):
        def load(self, data):
            return {"a": 1}

    class ConstJ(JsonLoader):
        def load(self, data):
            return {"a": 1}

    for a in (db.adapters, psycopg.adapters):
        a.register_loader("jsonb", Const)
        a.register_loader("json", ConstJ)
    set_json_loads(lambda s: {"a": 1}, db)
    assert both_verifiers(db) == (True, True)
    tamper(db, "UPDATE audit.event_log SET payload = '{\"a\": 3}' WHERE kind = 't109.e2' AND payload->>'a' = '2'")
    assert both_verifiers(db) == (False, False)


def test_e3_a_text_key_that_looks_like_a_json_array_is_not_another_rows_history(clean, connect):
    """Attack: in a table keyed by one text column, the writer inserts a row keyed '["victim"]' (and '"victim"')
    beside the row keyed 'victim'; the reader asks the victim row's history and image. python.md/sql.md: key is
    "the primary key as text, or a JSON array ... for a composite key": each row's history is its own."""
    db = clean
    from pgaudit_py import row_as_of, row_history
    db.execute("CREATE TABLE public.t109_k (id text PRIMARY KEY, v int); GRANT ALL ON public.t109_k TO app_writer")
    enable_tracking(db, "public.t109_k")
    w = connect("app_writer")
    w.execute("""INSERT INTO public.t109_k VALUES ('victim', 1)""")
    w.execute("""INSERT INTO public.t109_k VALUES ('["victim"]', 666), ('"victim"', 667)""")
    w.execute("""UPDATE public.t109_k SET v = v + 1000 WHERE id <> 'victim'""")
    r = connect("app_reader")
    hist = row_history(r, "public.t109_k", "victim")
    vals = [(e.row_after or e.row_before or {}).get("v") for e in hist]
    assert vals == [1], vals
    at = db.execute("SELECT clock_timestamp()").fetchone()[0]
    img = row_as_of(r, "public.t109_k", "victim", at)
    assert img is not None and img.get("v") == 1, img
    hist2 = row_history(r, "public.t109_k", '["victim"]')
    vals2 = sorted((e.row_after or e.row_before or {}).get("v") for e in hist2)
    assert 1 not in vals2, vals2
    db.execute("DROP TABLE public.t109_k CASCADE")


def test_e4_composite_keys_with_commas_quotes_and_brackets_stay_apart(clean, connect):
    """Attack: a composite key (a text, b text) whose parts hold commas, quotes and brackets, so that
    ('x,y', 'z') and ('x', 'y,z') or ('[1', '2]') might meet in one key text. Each row's history is its own."""
    db = clean
    from pgaudit_py import row_history
    db.execute("CREATE TABLE public.t109_ck (a text, b text, v int, PRIMARY KEY (a, b));"
               " GRANT ALL ON public.t109_ck TO app_writer")
    enable_tracking(db, "public.t109_ck")
    w = connect("app_writer")
    rows = [("x,y", "z", 1), ("x", "y,z", 2), ('x","y', "z", 3), ("x", '","y', 4), ("[1", "2]", 5), ("", "", 6)]
    for a, b, v in rows:
        w.execute("INSERT INTO public.t109_ck VALUES (%s, %s, %s)", [a, b, v])
    r = connect("app_reader")
    for a, b, v in rows:
        hist = row_history(r, "public.t109_ck", json.dumps([a, b]))
        assert [e.row_after.get("v") for e in hist] == [v], (a, b, [e.row_after for e in hist])
    db.execute("DROP TABLE public.t109_ck CASCADE")


def test_f1_a_limit_planted_on_a_future_tables_oid_does_not_reach_the_owners_new_table(own, connect):
    """Attack: _check_owner lets through a table that does not exist; t109_x (a maintainer owning nothing of the
    victim's) reads the OID counter from a scratch table of its own and stores table limits for the next few
    hundred OIDs through the SECURITY DEFINER helper _put_rate_limit; then t109_v creates a table. roles.md:
    the maintainer may not "act on a table it does not own"; rate-limits.md: limits of a table are set by
    its owner."""
    db = own
    x = connect("t109_x")
    x.execute("CREATE TABLE public.t109_scratch (id int)")
    base = x.execute("SELECT 'public.t109_scratch'::regclass::oid::bigint").fetchone()[0]
    x.execute("DROP TABLE public.t109_scratch")
    planted = 0
    for o in range(base + 1, base + 300):
        try:
            x.execute("SELECT audit._put_rate_limit(jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object("
                      "'scope', 'table', 'target', %s::text, 'per_user', 1, 'per_tenant', 1, 'window_seconds', 60)), md5(1::text)::uuid)",
                      [str(o)])
            planted += 1
        except psycopg.Error:
            pass
    v = connect("t109_v")
    v.execute("CREATE TABLE public.t109_victim (id int PRIMARY KEY, v int)")
    oid = db.execute("SELECT 'public.t109_victim'::regclass::oid::bigint").fetchone()[0]
    hit = db.execute("SELECT changed_by, per_user FROM audit.rate_limits WHERE scope = 'table' AND target = %s",
                     [str(oid)]).fetchall()
    ddl = None
    try:
        v.execute("ALTER TABLE public.t109_victim ADD COLUMN w int")
    except psycopg.Error as e:
        ddl = f"{e.sqlstate}: {str(e).splitlines()[0]}"
    db.execute("DROP TABLE IF EXISTS public.t109_victim CASCADE")
    assert hit == [], (planted, base, oid, hit, ddl)
    assert ddl is None, ddl


NUMBERS = ('{"a": 1.0, "b": 1.00, "c": 100e-2, "d": -0, "e": -0.0, "f": 1e399, "g": 1e-399, '
           '"h": 123456789012345678901234567890.123456789, "i": 0.00000000000000000001, "j": 9007199254740993, '
           '"k": [1E+2, 1e2, 0.1000000000000000055511151231257827], "l": 5e-324, "m": 1.7976931348623157e309}')


def test_d7_numbers_that_json_libraries_disagree_on_both_verifiers_agree(clean):
    """Attack: a payload of numbers Python and jsonb read differently (trailing zeros, -0, past double range,
    more digits than a double); sealed; both verifiers must pass. Then the scale of one number is changed
    (1.0 to 1.000, same value) and another's sign of zero: both verifiers must still give one answer.
    canonical-form.md / tamper-evidence.md: the two verifiers recompute the same hashes."""
    db = clean
    db.execute("SELECT audit.record(kind => 't109.num', payload => %s::jsonb)", [NUMBERS])
    record(db, "t109.num2", payload={"z": 1})
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
    tamper(db, "UPDATE audit.event_log SET payload = jsonb_set(payload, '{a}', '1.000'::jsonb) WHERE kind = 't109.num'")
    sql_ok, py_ok = both_verifiers(db)
    assert sql_ok == py_ok, (sql_ok, py_ok)
    tamper(db, "UPDATE audit.event_log SET payload = jsonb_set(payload, '{d}', '0'::jsonb) WHERE kind = 't109.num'")
    sql_ok2, py_ok2 = both_verifiers(db)
    assert sql_ok2 == py_ok2, (sql_ok2, py_ok2)


def test_d8_a_tracked_row_image_with_numbers_past_doubles_both_verifiers_agree(clean, connect):
    """Attack: a tracked numeric column holding values past a double's range and precision, NaN and
    Infinity (numeric has them; JSON has not); captured, sealed; both verifiers agree and pass."""
    db = clean
    db.execute("CREATE TABLE public.t109_n (id int PRIMARY KEY, x numeric, y float8); GRANT ALL ON public.t109_n TO app_writer")
    enable_tracking(db, "public.t109_n")
    w = connect("app_writer")
    w.execute("INSERT INTO public.t109_n VALUES (1, 'NaN', 'NaN'), (2, 'Infinity', '-Infinity'),"
              " (3, 1e400, 5e-324), (4, -0.0, '-0'), (5, 123456789012345678901234567890.1234567890123, 1.7976931348623157e308)")
    w.execute("UPDATE public.t109_n SET x = x")
    n = db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.t109_n.%'").fetchone()[0]
    assert n >= 5
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
    db.execute("DROP TABLE public.t109_n CASCADE")


def test_g1_the_writer_cannot_forge_a_tables_history_before_or_after_it_is_tracked(clean, connect):
    """Claim (roles.md): audit_writer may not "write a captured or system event". Attack: before the table is
    tracked, the writer records events under the kinds tracking will use (public.t109_w.insert/update,
    t109.w.update) with row-image-like payloads and target ids of the row's key; then the table is tracked
    (default prefix, and again under t109.w); after, it tries again. The row's history and image as of now
    must hold only what capture recorded."""
    db = clean
    from pgaudit_py import row_as_of, row_history
    w = connect("app_writer")
    forged_kinds = ["public.t109_w.insert", "public.t109_w.update", "t109.w.update", "public.t109_w.baseline"]
    before = []
    for k in forged_kinds:
        try:
            record(w, k, target_type="table", target_id="1", payload={"id": 1, "v": 666, "row_after": {"id": 1, "v": 666}})
            before.append(k)
        except Exception:  # noqa: BLE001
            pass
    db.execute("CREATE TABLE public.t109_w (id int PRIMARY KEY, v int); GRANT ALL ON public.t109_w TO app_writer")
    track_err = None
    try:
        enable_tracking(db, "public.t109_w")
    except Exception as e:  # noqa: BLE001
        track_err = e
    if track_err is None:
        w.execute("INSERT INTO public.t109_w VALUES (1, 1)")
        after = []
        for k in forged_kinds:
            try:
                record(w, k, target_type="table", target_id="1", payload={"id": 1, "v": 777})
                after.append(k)
            except Exception:  # noqa: BLE001
                pass
        assert not [k for k in after if k.startswith("public.t109_w.")], after
        r = connect("app_reader")
        hist = row_history(r, "public.t109_w", "1")
        assert [(e.row_after or {}).get("v") for e in hist] == [1], [(e.kind, e.payload, e.row_after) for e in hist]
        at = db.execute("SELECT clock_timestamp()").fetchone()[0]
        assert row_as_of(r, "public.t109_w", "1", at) == {"id": 1, "v": 1}
    else:
        # tracking refused because forged kinds sit under its prefix: nothing tracked, and the refusal names it
        assert db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.t109_w'::regclass"
                          ).fetchone()[0] == 0
    db.execute("DROP TABLE public.t109_w CASCADE")


def test_c16_a_partition_given_to_another_role_while_enable_tracking_waits_is_not_taken_over(own, connect):
    """Attack: enable_tracking of t109_p proves t109_p2 while t109_v owns it, then waits for its lock while a
    superuser's transaction gives t109_p2 to t109_x; the proof must not survive the change of owner.
    roles.md: a helper consumes the row "only while that role still owns the table"."""
    db = own
    _partitioned(db)
    b = connect()
    a = connect("t109_v")
    b.execute("BEGIN")
    b.execute("ALTER TABLE public.t109_p2 OWNER TO t109_x")
    out: dict = {}

    def run():
        try:
            out["rows"] = a.execute("SELECT audit.enable_tracking('public.t109_p'::regclass) IS NOT NULL").fetchall()
        except psycopg.Error as e:
            out["error"] = f"{e.sqlstate}: {str(e).splitlines()[0]}"

    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not db.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [a.info.backend_pid]).fetchone()[0]:
        time.sleep(0.02)
    b.execute("COMMIT")
    th.join(20)
    assert "error" in out, out
    assert tracked(db, "public.t109_p") == 0
