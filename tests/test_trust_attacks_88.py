"""An eighty-eighth attacker's trial: new variants of old attacks on the trust boundaries.

Classes (test names carry the letter):
  C. code as the audit owner: a table owner, a plain login with CREATE on public, or an audit
     role's member plants code (casts on enum tenants and keys, composite casts to jsonb, domains
     over composites, generated columns, CHECK constraints, deferred constraint triggers, partition
     key expressions, defaults added after tracking, temp tables named like audit objects, public
     functions that beat pg_catalog's polymorphic ones) and tries to have it run by a SECURITY DEFINER
     function or trigger of the audit schema, or by a superuser's Python calls.
  D. capture switched off or history forged: replica triggers, renamed triggers, inheritance and
     partition parents, MERGE, writable CTEs, ON CONFLICT, COPY, updates through views, internal
     functions executable by lesser roles, the role setting forged.
  L. the guards under German messages (lc_messages de_DE.UTF-8): the same SQLSTATEs.
  V. the verifiers: hostile record() payloads, fields and captured built-in values seal and both
     verifiers agree the log is intact (also under a reader's odd settings and near the 16 MiB line
     limit); a sealed event, or the chain's structure, changed by a superuser with triggers off is
     found by both.
  R. records: idempotency keys across tenants, outcomes, long context values, pooled connections
     reusing a previous actor (sync and asyncio, request_context), operation limits, the Python
     record()'s handling of payloads JSON cannot hold whole and of NUL in text under best_effort.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when
an honest use is refused). Roles: t88_owner, t88_mallory (table_owner_kit), t88_fresh; dropped
afterwards.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress

import psycopg
import pytest
from trial_helpers import (
    both_verifiers,
    events_under,
    is_tracked,
    problems_of,
    quarantine_empty,
    seal_all,
    sqlstate_of,
    table_owner_kit,
    tamper,
    track_new_table,
    try_enable,
    try_write,
)

from pgaudit_py import audit_context, enable_tracking, list_events, record, row_history, status
from pgaudit_py.chain import verify_chain

PRIVILEGED_PREFIXES = ("audit",)


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t88") as k:
        k.ran = []

        def hear(d):
            msg = d.message_primary or ""
            if msg.startswith("t88ran "):
                k.ran.append(msg.removeprefix("t88ran "))

        for c in (k.db, k.owner, k.mallory, k.writer, k.reader, k.maint):
            c.add_notice_handler(hear)
        k.hear = hear
        yield k


def spy_kit(kit, conn=None):
    """public.t88_ran (who, what), and public.t88_spy(text): says current_user and session_user (a
    warning outlives a rolled-back subtransaction) and writes them down; executable by anyone."""
    (conn or kit.owner).execute("""
        CREATE TABLE public.t88_ran (who text, sess text, what text); GRANT ALL ON public.t88_ran TO PUBLIC;
        CREATE FUNCTION public.t88_spy(what text) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            RAISE WARNING 't88ran %', current_user;
            BEGIN INSERT INTO public.t88_ran VALUES (current_user, session_user, what); EXCEPTION WHEN OTHERS THEN NULL; END;
            BEGIN
                INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                VALUES ('user', 'x', 't88.forged_intake', 'success', '1', now(), '{}');
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            RETURN true;
        END $$;
        GRANT EXECUTE ON FUNCTION public.t88_spy(text) TO PUBLIC""")


def privileged_runs(kit) -> set[str]:
    who = set(kit.ran) | {r[0] for r in kit.db.execute("SELECT who FROM public.t88_ran")}
    superusers = {r[0] for r in kit.db.execute("SELECT rolname FROM pg_roles WHERE rolsuper")}
    return {w for w in who if (w.startswith(PRIVILEGED_PREFIXES) and w != "audit_sandbox") or w in superusers}


def forged(kit) -> list[str]:
    return [r[0] for r in kit.db.execute("SELECT kind FROM audit.events WHERE kind LIKE 't88.forged%'")]


def n_all(db) -> tuple[int, int]:
    return db.execute("SELECT count(*), coalesce(sum(hashtext(kind)), 0) FROM audit.events").fetchone()


# ============================================ class C ============================================

C_ROUTES = ["tenant_enum_cast_text", "key_enum_cast_text", "composite_cast_jsonb", "domain_over_composite",
            "generated_column", "check_constraint", "deferred_constraint_trigger", "partition_key_expression",
            "default_added_after_tracking", "array_of_enum_cast", "skip_noop_enum_cast"]


@pytest.mark.parametrize("where", C_ROUTES)
def test_c1_the_table_owners_code_never_runs_as_an_audit_role(kit, where):
    """The table owner's code reachable from capture, tenant and key naming, the no-op rule, baseline,
    history, sealing, verify and status. Safe: no audit role but the sandbox (nor a superuser) ever
    ran it, nothing forged, both verifiers good."""
    spy_kit(kit)
    o = kit.owner
    o.execute("CREATE TYPE public.t88_mood AS ENUM ('ok', 'sad')")
    cast_fn = """CREATE FUNCTION public.t88_mt(public.t88_mood) RETURNS text LANGUAGE plpgsql IMMUTABLE
                   AS $$ BEGIN PERFORM public.t88_spy('cast'); RETURN 'forged'; END $$;
                 CREATE CAST (public.t88_mood AS text) WITH FUNCTION public.t88_mt(public.t88_mood)"""
    cols, opts, parted = "id int PRIMARY KEY, m public.t88_mood, v int", {}, False
    if where == "tenant_enum_cast_text":
        o.execute(cast_fn)
        opts = {"tenant_column": "m"}
    elif where == "key_enum_cast_text":
        o.execute(cast_fn)
        cols = "m public.t88_mood PRIMARY KEY, id int, v int"
    elif where == "skip_noop_enum_cast":
        o.execute(cast_fn)
        opts = {"skip_noop_updates": True}
    elif where == "array_of_enum_cast":
        o.execute(cast_fn)
        cols = "id int PRIMARY KEY, m public.t88_mood, v int, ms public.t88_mood[]"
    elif where == "composite_cast_jsonb":
        o.execute("""CREATE TYPE public.t88_pair AS (a int, b text);
                     CREATE FUNCTION public.t88_pj(public.t88_pair) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
                       AS $$ BEGIN PERFORM public.t88_spy('composite'); RETURN '"forged"'; END $$;
                     CREATE CAST (public.t88_pair AS jsonb) WITH FUNCTION public.t88_pj(public.t88_pair)""")
        cols = "id int PRIMARY KEY, m public.t88_mood, v int, p public.t88_pair"
    elif where == "domain_over_composite":
        o.execute("""CREATE TYPE public.t88_pair AS (a int, b text);
                     CREATE DOMAIN public.t88_dp AS public.t88_pair CHECK (public.t88_spy('domain'))""")
        cols = "id int PRIMARY KEY, m public.t88_mood, v int, p public.t88_dp"
    elif where == "generated_column":
        o.execute("""CREATE FUNCTION public.t88_g(int) RETURNS int LANGUAGE plpgsql IMMUTABLE
                       AS $$ BEGIN PERFORM public.t88_spy('generated'); RETURN $1 + 1; END $$""")
        cols = "id int PRIMARY KEY, m public.t88_mood, v int, g int GENERATED ALWAYS AS (public.t88_g(v)) STORED"
    elif where == "check_constraint":
        cols = "id int PRIMARY KEY, m public.t88_mood, v int CHECK (public.t88_spy('check'))"
    elif where == "partition_key_expression":
        o.execute("""CREATE FUNCTION public.t88_pk(int) RETURNS int LANGUAGE plpgsql IMMUTABLE
                       AS $$ BEGIN PERFORM public.t88_spy('partkey'); RETURN $1; END $$""")
        parted = True
    o.execute("DELETE FROM public.t88_ran")
    if parted:
        o.execute("""CREATE TABLE public.t88_sp (id int, m public.t88_mood, v int) PARTITION BY RANGE (public.t88_pk(id));
                     CREATE TABLE public.t88_sp1 PARTITION OF public.t88_sp FOR VALUES FROM (0) TO (1000)""")
    else:
        o.execute(f"CREATE TABLE public.t88_sp ({cols})")
    o.execute("GRANT ALL ON public.t88_sp TO app_writer")
    o.execute("INSERT INTO public.t88_sp (id, m, v) VALUES (1, 'ok', 1)")
    if where == "deferred_constraint_trigger":
        o.execute("""CREATE FUNCTION public.t88_dt() RETURNS trigger LANGUAGE plpgsql
                       AS $$ BEGIN PERFORM public.t88_spy('deferred'); RETURN NULL; END $$;
                     CREATE CONSTRAINT TRIGGER t88_ct AFTER INSERT OR UPDATE OR DELETE ON public.t88_sp
                       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.t88_dt()""")
    o.execute("DELETE FROM public.t88_ran")
    kit.ran.clear()
    err = try_enable(kit, "t88_sp", baseline=True, **opts)
    if err is not None:
        assert err[:2] == "PA", err  # refused with the package's code: nothing tracked, nothing ran
    else:
        if where == "default_added_after_tracking":
            o.execute("""CREATE FUNCTION public.t88_def() RETURNS int LANGUAGE plpgsql
                           AS $$ BEGIN PERFORM public.t88_spy('default'); RETURN 7; END $$""")
            try_write(o, "ALTER TABLE public.t88_sp ADD COLUMN w int DEFAULT public.t88_def()")
        extra = ", ms" if where == "array_of_enum_cast" else ""
        extra_v = ", '{ok,sad}'" if extra else ""
        m2 = "sad" if where == "key_enum_cast_text" else "ok"
        kit.writer.execute(f"INSERT INTO public.t88_sp (id, m, v{extra}) VALUES (2, '{m2}', 2{extra_v})")
        if where != "key_enum_cast_text":
            kit.writer.execute("UPDATE public.t88_sp SET m = 'sad' WHERE id = 2")
        kit.writer.execute("UPDATE public.t88_sp SET v = v")
        kit.writer.execute("DELETE FROM public.t88_sp WHERE id = 1")
        key = "ok" if where == "key_enum_cast_text" else "2"
        with suppress(psycopg.Error):
            kit.reader.execute("SELECT * FROM audit.row_history('public.t88_sp'::regclass, %s)", [key]).fetchall()
        with suppress(psycopg.Error):
            kit.reader.execute("SELECT audit.row_as_of('public.t88_sp'::regclass, %s, clock_timestamp())", [key]).fetchall()
    kit.reader.execute("SELECT * FROM audit.events WHERE starts_with(kind, 'public.t88_sp.')").fetchall()
    assert seal_all(kit.db) is None
    kit.db.execute("SELECT * FROM audit.verify()").fetchall()
    problems_of(kit.db)
    assert privileged_runs(kit) == set(), (where, privileged_runs(kit))
    assert forged(kit) == [], forged(kit)
    es = events_under(kit.db, "public.t88_sp.")
    assert not any("forged" in json.dumps([e["row_after"], e["row_before"], e["tenant_id"], e["target_id"]]) for e in es), es
    assert both_verifiers(kit.db) == (True, True)


SHADOWS = {
    # public functions that an unqualified call would prefer to pg_catalog's (exact text types beat
    # polymorphic or "any" parameters)
    "to_jsonb(text)": "RETURNS jsonb AS $$ BEGIN PERFORM public.t88_spy('to_jsonb'); RETURN '\"forged\"'; END $$",
    "to_json(text)": "RETURNS json AS $$ BEGIN PERFORM public.t88_spy('to_json'); RETURN '\"forged\"'; END $$",
    "jsonb_build_object(text, text)": "RETURNS jsonb AS $$ BEGIN PERFORM public.t88_spy('jbo'); RETURN '{}'; END $$",
    "jsonb_build_object(text, bigint)": "RETURNS jsonb AS $$ BEGIN PERFORM public.t88_spy('jbo2'); RETURN '{}'; END $$",
    "format(text, text)": "RETURNS text AS $$ BEGIN PERFORM public.t88_spy('format'); RETURN 'forged'; END $$",
    "concat(text, text)": "RETURNS text AS $$ BEGIN PERFORM public.t88_spy('concat'); RETURN 'forged'; END $$",
    "array_to_string(text[], text)": "RETURNS text AS $$ BEGIN PERFORM public.t88_spy('a2s'); RETURN 'forged'; END $$",
    "array_length(bigint[], integer)": "RETURNS integer AS $$ BEGIN PERFORM public.t88_spy('alen'); RETURN 0; END $$",
    "sha256(text)": "RETURNS bytea AS $$ BEGIN PERFORM public.t88_spy('sha'); RETURN '\\x00'; END $$",
    "encode(bytea, unknown)": None,
    "jsonb_typeof(json)": "RETURNS text AS $$ BEGIN PERFORM public.t88_spy('typeof'); RETURN 'object'; END $$",
    "coalesce_(text)": "RETURNS text AS $$ BEGIN RETURN $1; END $$",
    "now()": "RETURNS timestamptz AS $$ BEGIN PERFORM public.t88_spy('now'); RETURN '2000-01-01'; END $$",
    "txid_current()": "RETURNS bigint AS $$ BEGIN PERFORM public.t88_spy('txid'); RETURN 1; END $$",
    "gen_random_uuid()": "RETURNS uuid AS $$ BEGIN PERFORM public.t88_spy('uuid'); RETURN '00000000-0000-0000-0000-000000000000'; END $$",
    "current_setting(text, boolean)": "RETURNS text AS $$ BEGIN PERFORM public.t88_spy('cs'); RETURN 'forged'; END $$",
    "left(text, bigint)": "RETURNS text AS $$ BEGIN PERFORM public.t88_spy('left'); RETURN 'forged'; END $$",
    "greatest(bigint, bigint)": None,
    "max(text)": None,
    "starts_with(text, unknown)": None,
    "pg_column_size(jsonb)": "RETURNS integer AS $$ BEGIN PERFORM public.t88_spy('colsize'); RETURN 1; END $$",
    "octet_length(jsonb)": "RETURNS integer AS $$ BEGIN PERFORM public.t88_spy('octlen'); RETURN 1; END $$",
    "length(jsonb)": "RETURNS integer AS $$ BEGIN PERFORM public.t88_spy('len'); RETURN 1; END $$",
    "jsonb_pretty(json)": "RETURNS text AS $$ BEGIN PERFORM public.t88_spy('pretty'); RETURN 'forged'; END $$",
    "row_to_json(anyelement)": "RETURNS json AS $$ BEGIN PERFORM public.t88_spy('r2j'); RETURN '{}'; END $$",
}


@pytest.mark.parametrize("search_path", ["default", "public_first"])
def test_c2_public_shadows_of_catalog_functions_never_run_for_a_privileged_caller(kit, connect, search_path):
    """A plain login with CREATE on public (mallory) plants functions whose argument types beat
    pg_catalog's polymorphic or "any" ones for an unqualified call, and an operator =(text, text) in
    public. Then: the writer records and writes a tracked table, the maintainer seals, prunes,
    previews, the reader lists and verifies, and a superuser runs the Python verifier, status,
    list_events and row_history with the default search_path (or public first). Safe: no audit role
    or superuser ran the planted code; the events are as written; both verifiers good."""
    spy_kit(kit, kit.mallory)
    for sig, body in SHADOWS.items():
        if body is None:
            continue
        kit.mallory.execute(f"CREATE FUNCTION public.{sig} {body.replace('AS $$', 'LANGUAGE plpgsql AS $$', 1)}")
    kit.mallory.execute("""CREATE FUNCTION public.t88_teq(text, text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
                             AS $$ BEGIN PERFORM public.t88_spy('op'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
                           CREATE OPERATOR public.=== (leftarg = text, rightarg = text, function = public.t88_teq);
                           CREATE FUNCTION public.t88_jeq(jsonb, text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
                             AS $$ BEGIN PERFORM public.t88_spy('jop'); RETURN false; END $$;
                           CREATE OPERATOR public.? (leftarg = jsonb, rightarg = text, function = public.t88_jeq);
                           GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC""")
    kit.mallory.execute("DELETE FROM public.t88_ran")
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    conns = [kit.writer, kit.maint, kit.reader, kit.db]
    if search_path == "public_first":
        for c in conns:
            c.execute("SET search_path = public, pg_catalog")
    kit.ran.clear()
    kit.writer.execute("INSERT INTO public.t88_acct VALUES (1, 0, 'x'), (2, 0, 'y')")
    kit.writer.execute("UPDATE public.t88_acct SET v = 1 WHERE id = 1")
    record(kit.writer, "t88.shadow", payload={"a": "b"}, actor_id="alice", idempotency_key="k1")
    record(kit.writer, "t88.shadow", payload={"a": "b"}, actor_id="alice", idempotency_key="k1")
    assert seal_all(kit.maint) is None
    kit.maint.execute("SELECT * FROM audit.preview_prune(interval '100 years')").fetchall()
    kit.maint.execute("SELECT * FROM audit.prune_events(interval '100 years')").fetchall()
    kit.reader.execute("SELECT * FROM audit.list_events(kind_prefix => 't88.')").fetchall()
    kit.reader.execute("SELECT * FROM audit.verify()").fetchall()
    kit.reader.execute("SELECT * FROM audit.count_events(by_kind_prefix => '{t88.}')").fetchall()
    verify_chain(kit.db)
    verify_chain(kit.reader)
    status(kit.db)
    list_events(kit.db, kind_prefix="t88.")
    row_history(kit.db, "public.t88_acct", "1")
    assert privileged_runs(kit) == set(), (search_path, privileged_runs(kit),
                                           kit.db.execute("SELECT DISTINCT who, what FROM public.t88_ran").fetchall())
    assert forged(kit) == []
    es = events_under(kit.db, "public.t88_acct.")
    assert [e["kind"].rsplit(".", 1)[1] for e in es] == ["insert", "insert", "update"], es
    assert "forged" not in json.dumps(es)
    for c in conns:
        c.execute("RESET search_path")
    assert both_verifiers(kit.db) == (True, True)


TEMP_NAMES = ["event_intake", "event_log", "seal_state", "blocks", "tracked_tables", "quarantine", "prune_points",
              "rate_limits", "owner_proofs", "idempotency_keys", "event_types"]


@pytest.mark.parametrize("who", ["writer", "maint", "superuser"])
def test_c3_temp_tables_named_like_audit_objects_are_never_used(kit, who):
    """A session makes temp tables under every audit table's name (with a trigger that reports who
    writes them) and puts pg_temp first in its search_path; then records, writes a tracked table,
    seals (maintainer, superuser) and verifies. Safe: the temp tables stay empty, no trigger of theirs
    ran as anyone, the real log holds the events, both verifiers good."""
    spy_kit(kit)
    conn = {"writer": kit.writer, "maint": kit.maint, "superuser": kit.conn()}[who]
    conn.add_notice_handler(kit.hear)
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    conn.execute("""CREATE FUNCTION pg_temp.t88_tt() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN PERFORM public.t88_spy('temp ' || TG_TABLE_NAME); RETURN NULL; END $$""")
    for name in TEMP_NAMES:
        conn.execute(f"""CREATE TEMP TABLE {name} (seq bigint, kind text, relid oid, last_block_no bigint,
                            chain_start_seq bigint, block_no bigint, intake_id bigint, kind_prefix text, key text);
                         CREATE TRIGGER t88_tt BEFORE INSERT OR UPDATE OR DELETE ON pg_temp.{name}
                            FOR EACH ROW EXECUTE FUNCTION pg_temp.t88_tt()""")
    conn.execute("INSERT INTO pg_temp.seal_state (last_block_no, chain_start_seq) SELECT 99, 99 WHERE false")
    conn.execute("SET search_path = pg_temp, public, pg_catalog")
    kit.owner.execute("DELETE FROM public.t88_ran")
    kit.ran.clear()
    before = kit.db.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    if who == "writer":
        conn.execute("SELECT audit.record('t88.temp', idempotency_key => 'k1')")
        conn.execute("SELECT audit.record('t88.temp', idempotency_key => 'k1')")
        conn.execute("INSERT INTO public.t88_acct VALUES (1, 0, 'x')")
    else:
        kit.writer.execute("SELECT audit.record('t88.temp', idempotency_key => 'k1')")
        kit.writer.execute("INSERT INTO public.t88_acct VALUES (1, 0, 'x')")
    after = kit.db.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    if who != "writer":
        conn.execute("SELECT * FROM audit.seal(1000)").fetchall()
    if who != "writer":
        conn.execute("SELECT * FROM audit.verify()").fetchall()
    if who == "superuser":
        verify_chain(conn)
    assert seal_all(kit.db) is None
    temp_rows = sum(conn.execute(f"SELECT count(*) FROM pg_temp.{n}").fetchone()[0] for n in TEMP_NAMES)
    assert temp_rows == 0 and kit.ran == [], (temp_rows, kit.ran)
    assert privileged_runs(kit) == set()
    assert after - before == 2, (before, after)
    assert both_verifiers(kit.db) == (True, True)


@pytest.mark.parametrize("how", ["alter_role_search_path", "function_set_role", "set_config_context_in_trigger",
                                 "security_definer_trigger_of_member"])
def test_c4_a_fresh_writer_login_gets_no_audit_rights_by_settings(kit, how):
    """A fresh LOGIN role in audit_writer with CREATE on public: stores a search_path of public first
    for itself, writes a function that SETs role, or plants a trigger on its own tracked table that sets
    audit.* and pgaudit_py.* settings. Safe: its code never runs as an audit role, its events name
    it (db_role), no system kind is forged, the intake takes nothing directly."""
    db = kit.db
    db.execute("CREATE ROLE t88_fresh LOGIN; GRANT audit_writer TO t88_fresh; GRANT CREATE ON SCHEMA public TO t88_fresh;"
               " GRANT t88_fresh TO app_maintainer")
    try:
        spy_kit(kit)
        if how == "alter_role_search_path":
            db.execute(f"ALTER ROLE t88_fresh IN DATABASE {db.info.dbname} SET search_path = public, pg_catalog")
        f = kit.conn("t88_fresh")
        f.add_notice_handler(kit.hear)
        f.execute("""CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql
                       AS $$ BEGIN PERFORM public.t88_spy('now'); RETURN '2000-01-01'; END $$;
                     CREATE FUNCTION public.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE plpgsql
                       AS $$ BEGIN PERFORM public.t88_spy('jbo'); RETURN '{}'; END $$;
                     CREATE TABLE public.t88_f (id int PRIMARY KEY, v int)""")
        enable_tracking(kit.maint, "public.t88_f")
        err = None
        if how == "function_set_role":
            err = try_write(f, """CREATE FUNCTION public.t88_sr() RETURNS text LANGUAGE sql SET role = audit_writer
                                  AS $$ SELECT audit.record('audit.tracking_disabled')::text $$""")
            if err is None:
                err = try_write(f, "SELECT public.t88_sr()")
            err2 = try_write(f, "SELECT set_config('role', 'audit_owner', false)")
            assert err2 is not None, "set_config('role', 'audit_owner') accepted"
        elif how == "set_config_context_in_trigger":
            f.execute("""CREATE FUNCTION public.t88_ctx() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN
                           PERFORM set_config('pgaudit_py.actor_type', 'system', true);
                           PERFORM set_config('audit.origin', 'system', true);
                           PERFORM set_config('pgaudit_py.origin', 'system', true);
                           PERFORM set_config('pgaudit_py.rate_limit_bypass', 'on', true);
                           PERFORM public.t88_spy('ctx');
                           RETURN NEW;
                         END $$;
                         CREATE TRIGGER a_t88_ctx BEFORE INSERT OR UPDATE ON public.t88_f
                           FOR EACH ROW EXECUTE FUNCTION public.t88_ctx()""")
        elif how == "security_definer_trigger_of_member":
            f.execute("""CREATE FUNCTION public.t88_sd() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
                         BEGIN PERFORM public.t88_spy('secdef');
                           BEGIN PERFORM audit.record('audit.tracking_disabled'); EXCEPTION WHEN OTHERS THEN NULL; END;
                           RETURN NEW; END $$;
                         CREATE TRIGGER a_t88_sd BEFORE INSERT OR UPDATE ON public.t88_f
                           FOR EACH ROW EXECUTE FUNCTION public.t88_sd();
                         GRANT ALL ON public.t88_f TO app_writer""")
            try_write(kit.writer, "INSERT INTO public.t88_f VALUES (9, 9)")
        w = try_write(f, "INSERT INTO public.t88_f VALUES (1, 1)")
        f.execute("SELECT audit.record('t88.fresh')")
        try_write(f, "SELECT audit.record('audit.tracking_disabled')")
        assert seal_all(db) is None
        db_roles = {r[0] for r in db.execute("SELECT db_role FROM audit.events WHERE kind = 't88.fresh'"
                                             " OR starts_with(kind, 'public.t88_f.') AND target_id = '1'")}
        system_forged = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracking_disabled'"
                                   " OR (origin = 'system' AND db_role = 't88_fresh')").fetchone()[0]
        assert privileged_runs(kit) == set(), privileged_runs(kit)
        assert forged(kit) == [] and system_forged == 0, (forged(kit), system_forged, err)
        assert db_roles == {"t88_fresh"}, db_roles
        if how == "set_config_context_in_trigger" and w is None:
            ev = db.execute("SELECT origin FROM audit.events WHERE starts_with(kind, 'public.t88_f.')").fetchall()
            assert ev == [("capture",)], ev
        assert both_verifiers(db) == (True, True)
    finally:
        with suppress(psycopg.Error):
            db.execute(f"ALTER ROLE t88_fresh IN DATABASE {db.info.dbname} RESET ALL")
        with suppress(psycopg.Error):
            db.execute("REASSIGN OWNED BY t88_fresh TO " + db.info.user)
        with suppress(psycopg.Error):
            db.execute("DROP OWNED BY t88_fresh")
        with suppress(psycopg.Error):
            db.execute("REVOKE t88_fresh FROM app_maintainer")
        db.execute("DROP ROLE IF EXISTS t88_fresh")


# ============================================ class D ============================================

SWITCH_OFF = {
    "enable_replica": "ALTER TABLE public.t88_acct ENABLE REPLICA TRIGGER audit_capture_insert",
    "enable_replica_update": "ALTER TABLE public.t88_acct ENABLE REPLICA TRIGGER audit_capture_update",
    "enable_always": "ALTER TABLE public.t88_acct ENABLE ALWAYS TRIGGER audit_capture_delete",
    "disable_user": "ALTER TABLE public.t88_acct DISABLE TRIGGER USER",
    "rename_trigger": "ALTER TRIGGER audit_capture_insert ON public.t88_acct RENAME TO t88_gone",
    "inherit_untracked_parent": "CREATE TABLE public.t88_par (id int, v int, note text);"
                                " GRANT ALL ON public.t88_par TO app_writer;"
                                " ALTER TABLE public.t88_acct INHERIT public.t88_par",
    "attach_to_untracked_parent": "CREATE TABLE public.t88_par (id int, v int, note text) PARTITION BY RANGE (id);"
                                  " GRANT ALL ON public.t88_par TO app_writer;"
                                  " ALTER TABLE public.t88_par ATTACH PARTITION public.t88_acct FOR VALUES FROM (0) TO (1000)",
    "set_unlogged": "ALTER TABLE public.t88_acct SET UNLOGGED",
    "replica_identity_nothing": "ALTER TABLE public.t88_acct REPLICA IDENTITY NOTHING",
    "drop_pk_and_readd": "ALTER TABLE public.t88_acct DROP CONSTRAINT t88_acct_pkey",
    "alter_function_owner_trigger": "ALTER TABLE public.t88_acct ALTER COLUMN v SET DEFAULT 5",
}


@pytest.mark.parametrize("how", list(SWITCH_OFF))
def test_d1_the_owner_cannot_switch_capture_off(kit, how):
    """The table owner tries new ways to switch capture off, then the writer inserts, updates and
    deletes through the table (and its new parent where there is one). Safe: every changed row of
    the tracked table has its event and the table is still tracked (or the DDL was refused)."""
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t88_acct VALUES (1, 0, 'a')")
    refused = try_write(kit.owner, SWITCH_OFF[how])
    w = kit.writer
    w.execute("INSERT INTO public.t88_acct VALUES (2, 0, 'b')")
    changed = 1
    has_parent = kit.db.execute("SELECT to_regclass('public.t88_par') IS NOT NULL").fetchone()[0] and refused is None
    if has_parent:
        w.execute("UPDATE public.t88_par SET v = v + 1")
        w.execute("DELETE FROM public.t88_par WHERE id = 2")
        changed += 2 + 1  # two updated rows, one deleted
        if how == "attach_to_untracked_parent":
            w.execute("INSERT INTO public.t88_par VALUES (3, 0, 'c')")
            changed += 1
    else:
        w.execute("UPDATE public.t88_acct SET v = v + 1")
        w.execute("DELETE FROM public.t88_acct WHERE id = 2")
        changed += 3
    got = kit.db.execute("SELECT count(*) FROM audit.events WHERE starts_with(kind, 'public.t88_acct.')"
                         " AND kind <> 'public.t88_acct.baseline'").fetchone()[0] - 1
    assert is_tracked(kit, "public.t88_acct"), (how, refused)
    assert got == changed, (how, refused, got, changed)


WRITE_PATHS = {
    "merge": "MERGE INTO public.t88_acct a USING (VALUES (1, 5), (9, 9)) s(id, v) ON a.id = s.id"
             " WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v, 'm')",
    "merge_delete": "MERGE INTO public.t88_acct a USING (VALUES (1)) s(id) ON a.id = s.id WHEN MATCHED THEN DELETE",
    "on_conflict_update": "INSERT INTO public.t88_acct VALUES (1, 5, 'x'), (9, 9, 'n')"
                          " ON CONFLICT (id) DO UPDATE SET v = excluded.v",
    "on_conflict_nothing": "INSERT INTO public.t88_acct VALUES (1, 5, 'x'), (9, 9, 'n') ON CONFLICT DO NOTHING",
    "writable_cte": "WITH d AS (DELETE FROM public.t88_acct WHERE id = 1 RETURNING *),"
                    " u AS (UPDATE public.t88_acct SET v = 7 WHERE id = 2 RETURNING *)"
                    " INSERT INTO public.t88_acct SELECT id + 100, v, note FROM d",
    "updatable_view": "UPDATE public.t88_view SET v = 3",
    "view_instead_of": "DELETE FROM public.t88_iview WHERE id = 1",
    "delete_using": "DELETE FROM public.t88_acct a USING (VALUES (1), (2)) s(id) WHERE a.id = s.id",
    "update_from_self": "UPDATE public.t88_acct a SET v = b.v + 1 FROM public.t88_acct b WHERE a.id = b.id",
    "function_loop": "SELECT public.t88_loop()",
    "copy_from": None,
}


@pytest.mark.parametrize("path", list(WRITE_PATHS))
def test_d2_every_write_path_leaves_one_event_per_changed_row(kit, path):
    """MERGE (with DELETE), ON CONFLICT, writable CTEs, an updatable view and an INSTEAD OF trigger's
    view made by the owner, DELETE USING, UPDATE FROM itself, a function, COPY FROM. Safe: refused
    (PA008 for MERGE), or the events of the table match the rows that changed exactly."""
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t88_acct VALUES (1, 0, 'a'), (2, 0, 'b')")
    kit.owner.execute("""CREATE VIEW public.t88_view AS SELECT * FROM public.t88_acct; GRANT ALL ON public.t88_view TO app_writer;
        CREATE VIEW public.t88_iview AS SELECT * FROM public.t88_acct; GRANT ALL ON public.t88_iview TO app_writer;
        CREATE FUNCTION public.t88_ivd() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN DELETE FROM public.t88_acct WHERE id = OLD.id; RETURN OLD; END $$;
        CREATE TRIGGER t88_ivd INSTEAD OF DELETE ON public.t88_iview FOR EACH ROW EXECUTE FUNCTION public.t88_ivd();
        CREATE FUNCTION public.t88_loop() RETURNS void LANGUAGE plpgsql AS $$
          BEGIN FOR i IN 10..12 LOOP INSERT INTO public.t88_acct VALUES (i, i, 'l'); END LOOP;
                UPDATE public.t88_acct SET v = 0 WHERE id = 10; DELETE FROM public.t88_acct WHERE id = 11; END $$;
        GRANT EXECUTE ON FUNCTION public.t88_loop() TO app_writer""")
    snap = "SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY id), '[]') FROM public.t88_acct a"
    before_rows = {r["id"]: r for r in kit.db.execute(snap).fetchone()[0]}
    n0 = kit.db.execute("SELECT count(*) FROM audit.events WHERE starts_with(kind, 'public.t88_acct.')").fetchone()[0]
    if path == "copy_from":
        with kit.owner.cursor().copy("COPY public.t88_acct FROM STDIN") as cp:
            cp.write_row((20, 1, "c1"))
            cp.write_row((21, 1, "c2"))
        err = None
    else:
        err = try_write(kit.writer, WRITE_PATHS[path])
    after_rows = {r["id"]: r for r in kit.db.execute(snap).fetchone()[0]}
    if err is not None:
        assert err[:2] in ("PA", "42") and after_rows == before_rows, err
        return
    ids = set(before_rows) | set(after_rows)
    expected = sum(1 for i in ids if before_rows.get(i) != after_rows.get(i))
    n1 = kit.db.execute("SELECT count(*) FROM audit.events WHERE starts_with(kind, 'public.t88_acct.')").fetchone()[0]
    # an UPDATE that changes nothing may be recorded too: at least one event per changed row, and
    # the events of changed rows name them
    got = {r[0] for r in kit.db.execute("SELECT target_id FROM audit.events WHERE starts_with(kind, 'public.t88_acct.')"
                                        " ORDER BY seq NULLS LAST, intake_id OFFSET %s", [n0])}
    changed_ids = {str(i) for i in ids if before_rows.get(i) != after_rows.get(i)}
    assert n1 - n0 >= expected and changed_ids <= got, (path, n1 - n0, expected, changed_ids, got)


@pytest.mark.parametrize("role", ["writer", "reader", "mallory", "owner"])
def test_d3_no_security_definer_helper_is_executable_by_a_lesser_role(kit, role):
    """Every SECURITY DEFINER function of the audit schema a lesser role may EXECUTE (not a trigger
    function, which nobody can call): the writer only record and rate_limit; the reader only its
    documented queries; a table owner or a plain login none. Then each is called with nulls: nothing
    is written."""
    allowed = {
        "writer": {"record", "rate_limit"},
        "reader": {"list_events", "count_events", "monthly_event_counts", "row_history", "row_as_of",
                   "row_state_as_of", "verify", "preview_prune", "seal_status", "archive_lines", "install_status",
                   "authenticate_api_token"},
        "mallory": set(), "owner": set(),
    }[role]
    name = {"writer": "app_writer", "reader": "app_reader", "mallory": "t88_mallory", "owner": "t88_owner"}[role]
    rows = kit.db.execute("""SELECT p.proname, p.oid::regprocedure::text, p.pronargs FROM pg_proc p
                             WHERE p.pronamespace = 'audit'::regnamespace AND p.prosecdef
                               AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
                               AND has_function_privilege(%s, p.oid, 'EXECUTE')""", [name]).fetchall()
    extra = sorted(sig for proname, sig, _ in rows if proname not in allowed)
    conn = getattr(kit, role)
    before = n_all(kit.db)
    for _, sig, _nargs in rows:
        if sig.split("(")[0].removeprefix("audit.") in allowed:
            continue
        fname = sig.split("(")[0]
        argtypes = sig[sig.index("(") + 1:-1]
        args = ", ".join(f"NULL::{t.strip()}" for t in argtypes.split(",")) if argtypes else ""
        try_write(conn, f"SELECT {fname}({args})")
    assert n_all(kit.db) == before
    assert extra == [], (role, extra)


FORGE_ROLE = {
    "set_config_role": "SELECT set_config('role', 'app_maintainer', false)",
    "set_role": "SET ROLE app_maintainer",
    "set_session_authorization": "SET SESSION AUTHORIZATION app_maintainer",
    "set_local_role_in_function": "DO $$ BEGIN PERFORM set_config('role', 'audit_capture', true); END $$",
}


@pytest.mark.parametrize("how", list(FORGE_ROLE))
def test_d4_the_writer_cannot_name_another_db_role(kit, how):
    """db_role is the SET ROLE, else the session user. The writer tries to set the role setting it is
    no member of. Safe: refused; its record and capture name app_writer."""
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    err = try_write(kit.writer, FORGE_ROLE[how])
    kit.writer.execute("SELECT audit.record('t88.role')")
    kit.writer.execute("INSERT INTO public.t88_acct VALUES (1, 0, 'x')")
    roles = {r[0] for r in kit.db.execute("SELECT db_role FROM audit.events WHERE kind = 't88.role'"
                                          " OR kind = 'public.t88_acct.insert'")}
    assert err is not None and roles == {"app_writer"}, (err, roles)


def test_d5_a_role_forged_at_connection_time_is_refused(kit, connect):
    """options='-c role=app_maintainer' in the writer's connection: refused at connect, or the events
    still name app_writer."""
    try:
        c = connect("app_writer", options="-c role=app_maintainer")
    except psycopg.Error:
        return
    c.execute("SELECT audit.record('t88.role_opt')")
    roles = {r[0] for r in kit.db.execute("SELECT db_role FROM audit.events WHERE kind = 't88.role_opt'")}
    assert roles == {"app_writer"}, roles


RESERVED_FORGERIES = ["audit.pruned", "audit.archive_deleted", "secret.read", "tenant.secret.put", "tenant.data_key.rotated",
                      "audit"]


@pytest.mark.parametrize("kind", RESERVED_FORGERIES)
@pytest.mark.parametrize("via", ["record", "register_type", "python_record"])
def test_d6_reserved_kinds_cannot_be_forged(kit, kind, via):
    """The package's own kinds through record (SQL and Python) and register_event_type. Safe: refused
    (PA001), nothing written."""
    before = n_all(kit.db)
    if via == "record":
        err = sqlstate_of(kit.writer, "SELECT audit.record(kind => %s, payload => '{\"last_block\": 1}')", [kind])
    elif via == "register_type":
        err = sqlstate_of(kit.maint, "SELECT audit.register_event_type(kind => %s, schema => '{}')", [kind])
    else:
        try:
            record(kit.writer, kind, payload={"last_seq": 1})
            err = None
        except Exception as e:  # noqa: BLE001
            err = getattr(e, "sqlstate", None) or getattr(getattr(e, "__cause__", None), "sqlstate", None) or type(e).__name__
    assert err in ("PA001", "InvalidKind"), (kind, via, err)
    assert n_all(kit.db) == before


# ============================================ class L ============================================

GERMAN = {
    "record_reserved": ("writer", "SELECT audit.record('audit.pruned')", "PA001"),
    "record_tracked_prefix": ("writer", "SELECT audit.record('public.t88_acct.delete')", "PA001"),
    "bad_outcome": ("writer", "SELECT audit.record('t88.x', outcome => 'ok')", "PA005"),
    "payload_not_object": ("writer", "SELECT audit.record('t88.x', payload => '[1]')", "PA002"),
    "payload_wild": ("writer", "SELECT audit.record('t88.x', payload => '{\"n\": 1e400}')", "PA002"),
    "client_addr_network": ("writer", "SELECT set_config('pgaudit_py.client_addr', '10.0.0.0/8', false),"
                                      " audit.record('t88.x')", "PA007"),
    "bypass": ("writer", "SELECT set_config('pgaudit_py.rate_limit_bypass', 'on', false);"
                         " INSERT INTO public.t88_rl VALUES (1)", "PA010"),
    "intake_update": ("writer", "UPDATE audit.event_intake SET kind = 'x'", "42501"),
    "log_delete_by_reader": ("reader", "DELETE FROM audit.event_log", "42501"),
    "seal_by_writer": ("writer", "SELECT audit.seal(10)", "42501"),
    "disable_capture": ("owner", "ALTER TABLE public.t88_acct DISABLE TRIGGER ALL", "PA008"),
    "enable_replica": ("owner", "ALTER TABLE public.t88_acct ENABLE REPLICA TRIGGER audit_capture_update", "PA008"),
    "merge_partitioned": ("writer", "MERGE INTO public.t88_gp a USING (VALUES (1)) s(id) ON a.id = s.id"
                                    " WHEN MATCHED THEN UPDATE SET id = 15", "0A000"),
    "drop_rule_of_partitioned": ("owner", "DO $$ DECLARE r text; BEGIN SELECT rulename INTO r FROM pg_rules"
                                          " WHERE tablename = 't88_gp'; EXECUTE format('DROP RULE %I ON public.t88_gp', r);"
                                          " END $$", "PA008"),
    "idempotency_other_tenant_content": ("writer", "SELECT audit.record('t88.i', idempotency_key => 'k1',"
                                                   " payload => '{\"a\": 9}')", "PA004"),
    "page_size": ("reader", "SELECT * FROM audit.list_events(page_size => 501)", "PA005"),
    "track_audit_table": ("maint", "SELECT audit.enable_tracking('audit.event_log')", "PA008"),
    "bad_kind": ("writer", "SELECT audit.record('1bad')", "PA001"),
    "history_incomplete_unknown_table": ("reader", "SELECT * FROM audit.row_history('public.t88_nope'::regclass, '1')",
                                         "42P01"),
}


@pytest.mark.parametrize("case", list(GERMAN))
def test_l1_every_guard_keeps_its_sqlstate_in_german(kit, case):
    """lc_messages de_DE.UTF-8 for every role in this database. Safe: each refusal carries its
    SQLSTATE, and nothing it refused happened (no event, tracking kept)."""
    dbname = kit.db.info.dbname
    roles = ["t88_owner", "app_writer", "app_maintainer", "app_reader"]
    for r in roles:
        kit.db.execute(f"ALTER ROLE {r} IN DATABASE {dbname} SET lc_messages = 'de_DE.UTF-8'")
    try:
        conns = {"owner": kit.conn("t88_owner"), "writer": kit.conn("app_writer"), "maint": kit.conn("app_maintainer"),
                 "reader": kit.conn("app_reader")}
        assert conns["writer"].execute("SHOW lc_messages").fetchone()[0].startswith("de")
        conns["owner"].execute("CREATE TABLE public.t88_acct (id int PRIMARY KEY, v int, note text);"
                               " GRANT ALL ON public.t88_acct TO app_writer;"
                               " CREATE TABLE public.t88_rl (v int PRIMARY KEY); GRANT ALL ON public.t88_rl TO app_writer;"
                               " CREATE TABLE public.t88_gp (id int PRIMARY KEY) PARTITION BY RANGE (id);"
                               " CREATE TABLE public.t88_gp1 PARTITION OF public.t88_gp FOR VALUES FROM (0) TO (10);"
                               " CREATE TABLE public.t88_gp2 PARTITION OF public.t88_gp FOR VALUES FROM (10) TO (20);"
                               " GRANT ALL ON public.t88_gp TO app_writer; INSERT INTO public.t88_gp VALUES (1)")
        enable_tracking(conns["maint"], "public.t88_gp")
        enable_tracking(conns["maint"], "public.t88_acct")
        enable_tracking(conns["maint"], "public.t88_rl")
        conns["maint"].execute("SELECT audit.enable_rate_limit('public.t88_rl', per_user_per_minute => 100)")
        conns["writer"].execute("INSERT INTO public.t88_acct VALUES (1, 0, 'x')")
        conns["writer"].execute("SELECT audit.record('t88.i', idempotency_key => 'k1', payload => '{\"a\": 1}')")
        who, stmt, code = GERMAN[case]
        before = n_all(kit.db)
        got, msg = None, None
        try:
            conns[who].execute(stmt)
        except psycopg.Error as e:
            got, msg = e.sqlstate, str(e)
        assert got == code, (case, got, msg)
        assert n_all(kit.db) == before
        assert is_tracked(kit, "public.t88_acct")
        assert kit.db.execute("SELECT count(*) FROM public.t88_acct").fetchone()[0] == 1
        assert kit.db.execute("SELECT array_agg(id) FROM public.t88_gp").fetchone()[0] == [1]
    finally:
        for r in roles:
            kit.db.execute(f"ALTER ROLE {r} IN DATABASE {dbname} RESET lc_messages")


def test_l2_python_verifier_and_status_in_german_after_tamper(kit):
    """A German superuser session: a sealed event changed with triggers off; the SQL and the Python
    verifiers both say so, and status names a problem."""
    kit.db.execute("SET lc_messages = 'de_DE.UTF-8'")
    kit.writer.execute("SELECT audit.record('t88.de', payload => '{\"straße\": \"groß\"}')")
    kit.writer.execute("SELECT audit.record('t88.de2')")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    tamper(kit.db, "UPDATE audit.event_log SET payload = '{\"strasse\": \"groß\"}' WHERE kind = 't88.de'")
    assert both_verifiers(kit.db) == (False, False)


# ============================================ class V ============================================

def _nest(depth: int, inner: str = "1") -> str:
    return '{"a":' * depth + inner + "}" * depth


def _nest_mixed(depth: int) -> str:
    return '{"k": [' * (depth // 2) + '"x"' + "]}" * (depth // 2)


HOSTILE = {
    "deep_object_2000": _nest(2000),
    "deep_object_6000": _nest(6000),
    "deep_mixed_9998": _nest_mixed(9998),
    "deep_object_10000": _nest(10000),
    "string_near_64k": json.dumps({"s": "x" * (65536 - 20)}),
    "string_64k_multibyte": json.dumps({"s": "\U0001f600" * 16000}, ensure_ascii=False),
    "control_chars_expand": json.dumps({"s": "\u0001" * 10000}),
    "escapes_expand": json.dumps({"s": '"\\' * 15000}),
    "lone_surrogate": '{"s": "\\ud800"}',
    "lone_low_surrogate": '{"s": "a\\udc00b"}',
    "surrogate_pair_escaped": '{"s": "\\ud83d\\ude00"}',
    "nul": '{"s": "\\u0000"}',
    "nul_in_key": '{"\\u0000": 1}',
    "normalization_pair": json.dumps({"\u00e9": 1, "e\u0301": 2, "\u212b": 3, "\u00c5": 4}, ensure_ascii=False),
    "big_1e400": '{"n": 1e400}',
    "big_1e399": '{"n": 1e399, "m": -1e-399}',
    "negative_zero": '{"a": -0, "b": -0.0, "c": 0e-10, "d": -0e5}',
    "one_and_one_point_zero": '{"a": 1, "b": 1.0, "c": 1.00, "d": 10e-1, "e": 100E-2}',
    "duplicate_keys": '{"a": 1, "a": "two", "a": {"b": 1, "b": 2}}',
    "byte_vs_codepoint_keys": json.dumps({"\uffff": 1, "\U00010000": 2, "\u00e9": 3, "ab": 4, "\u20ac": 5, "abc": 6,
                                          "\U0001f600": 7, "abcd": 8, "\ud7ff": 9, "\ue000": 10}, ensure_ascii=False),
    "utf16_order_keys": json.dumps({"a\uff61": 1, "a\U0001f600": 2, "a\ue000x": 3}, ensure_ascii=False),
    "many_numbers": json.dumps({"n": [1.5] * 3000}),
    "long_decimals": '{"n": 0.' + "0" * 399 + "1}",
    "line_separators": json.dumps({"s": "\u2028\u2029\u0085\r\n\t\b\f/\\\"\x7f"}, ensure_ascii=False),
    "bom_and_nonchars": json.dumps({"\ufeff": "\ufffe\uffff\U0010ffff"}, ensure_ascii=False),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_v1_hostile_record_payloads_seal_and_both_verifiers_agree(kit, name):
    """record() with a hostile payload, between two ordinary events. Safe: taken, or refused with a
    SQLSTATE that is not an internal error; sealing succeeds; both verifiers say intact."""
    err = try_write(kit.writer, "SELECT audit.record('t88.v', payload => %s::jsonb, target_id => 'v')", [HOSTILE[name]])
    if err is not None:
        deep_limit = name in ("deep_object_10000", "deep_mixed_9998") and err.startswith("54001")
        assert not err.startswith(("XX", "54")) or deep_limit, (name, err)
    kit.writer.execute("SELECT audit.record('t88.after')")
    assert seal_all(kit.db) is None
    sql_ok, py_ok = both_verifiers(kit.db)
    assert (sql_ok, py_ok) == (True, True), (name, err, sql_ok, py_ok, verify_chain(kit.db).problem)
    if err is None:
        assert kit.reader.execute("SELECT count(*) FROM audit.list_events(kind_prefix => 't88.v')").fetchone()[0] == 1


LONG_FIELDS = {
    "kind_128": {"kind": "t" + "x" * 127},
    "kind_129": {"kind": "t" + "x" * 128},
    "target_id_512_4byte": {"target_id": "\U0001f600" * 512},
    "target_id_513": {"target_id": "y" * 513},
    "target_type_128_multibyte": {"target_type": "\u00e9" * 128},
    "actor_id_256_controls": {"actor_id": "\u0001\u001f" * 128},
    "tenant_256_rtl": {"tenant_id": "\u202e" * 256},
    "correlation_257": {"correlation_id": "c" * 257},
    "idempotency_256_nonchar": {"idempotency_key": "\uffff" * 256},
    "actor_type_64": {"actor_type": "u" * 64},
}


@pytest.mark.parametrize("name", list(LONG_FIELDS))
def test_v2_very_long_or_odd_fields_seal_and_verify(kit, name):
    """record() with fields at and just over their documented lengths, in multibyte and control
    characters. Safe: taken or refused (PA001/PA005, never an internal error); both verifiers good."""
    args = {"kind": "t88.long", **LONG_FIELDS[name]}
    names = ", ".join(f"{k} => %s" for k in args)
    err = try_write(kit.writer, f"SELECT audit.record({names})", list(args.values()))
    if err is not None:
        assert err[:5] in ("PA001", "PA005", "PA007"), (name, err)
    else:
        got = kit.db.execute("SELECT kind, target_id, target_type, actor_id, tenant_id, correlation_id, idempotency_key,"
                             " actor_type FROM audit.events ORDER BY intake_id DESC LIMIT 1").fetchone()
        for k, v in LONG_FIELDS[name].items():
            col = ["kind", "target_id", "target_type", "actor_id", "tenant_id", "correlation_id", "idempotency_key",
                   "actor_type"].index(k)
            assert got[col] == v, (name, k)
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)


TAMPER = {
    "payload_scale": "UPDATE audit.event_log SET payload = '{\"a\": 1, \"n\": 1.00}' WHERE kind = 't88.t1'",
    "payload_key_added_null": "UPDATE audit.event_log SET payload = payload || '{\"z\": null}' WHERE kind = 't88.t1'",
    "payload_normalization": "UPDATE audit.event_log SET payload = jsonb_set(payload, '{s}', to_jsonb(E'e\\u0301'::text))"
                             " WHERE kind = 't88.t1'",
    "occurred_at_1us": "UPDATE audit.event_log SET occurred_at = occurred_at + interval '1 microsecond' WHERE kind = 't88.t1'",
    "actor_trailing_space": "UPDATE audit.event_log SET actor_id = actor_id || ' ' WHERE kind = 't88.t1'",
    "tenant_null_to_empty": "UPDATE audit.event_log SET tenant_id = '' WHERE kind = 't88.t2'",
    "schema_valid_null_to_true": "UPDATE audit.event_log SET schema_valid = true WHERE kind = 't88.t1'",
    "origin_record_to_system": "UPDATE audit.event_log SET origin = 'system' WHERE kind = 't88.t1'",
    "client_addr_mapped": "UPDATE audit.event_log SET client_addr = '::ffff:127.0.0.1' WHERE kind = 't88.t1'",
    "client_addr_null": "UPDATE audit.event_log SET client_addr = NULL WHERE kind = 't88.t1'",
    "kind_case": "UPDATE audit.event_log SET kind = 'T88.t1' WHERE kind = 't88.t1'",
    "txid_plus_one": "UPDATE audit.event_log SET txid = (txid::text::bigint + 1)::text::xid8 WHERE kind = 't88.t1'",
    "outcome_flip": "UPDATE audit.event_log SET outcome = 'failure' WHERE kind = 't88.t1'",
    "id_changed": "UPDATE audit.event_log SET id = gen_random_uuid() WHERE kind = 't88.t1'",
    "application_name_null_to_empty": "UPDATE audit.event_log SET application_name = NULL WHERE kind = 't88.t1'",
    "delete_middle_event": "DELETE FROM audit.event_log WHERE kind = 't88.t2'",
    "swap_payloads": "UPDATE audit.event_log a SET payload = b.payload FROM audit.event_log b"
                     " WHERE a.kind = 't88.t1' AND b.kind = 't88.t3' OR a.kind = 't88.t3' AND b.kind = 't88.t1'",
    "row_after_changed": "UPDATE audit.event_log SET row_after = row_after || '{\"v\": 99}'"
                         " WHERE kind = 'public.t88_acct.insert'",
    "changed_emptied": "UPDATE audit.event_log SET changed = '{}' WHERE kind = 'public.t88_acct.update'",
    "hostile_payload_changed": "UPDATE audit.event_log SET payload = jsonb_set(payload, '{n}', '1e398'::jsonb)"
                               " WHERE kind = 't88.t3'",
    "line_hash_also_rewritten": None,
}


@pytest.mark.parametrize("how", list(TAMPER))
def test_v3_a_superusers_tamper_with_triggers_off_is_found_by_both_verifiers(kit, how):
    """Events recorded (one with odd Unicode and wild numbers) and captured, sealed over two blocks;
    then a superuser changes one sealed event with triggers off. Safe: both verifiers say the log is
    not intact."""
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("SELECT audit.record('t88.t1', actor_id => 'alice', payload => '{\"a\": 1, \"n\": 1.0, \"s\": \"\u00e9\"}')")
    kit.writer.execute("SELECT audit.record('t88.t2', actor_id => 'bob')")
    assert seal_all(kit.db) is None
    kit.writer.execute("SELECT audit.record('t88.t3', payload => %s::jsonb)",
                       ['{"n": 1e399, "m": -0.0, "k": "\\u0001", "\u00e9": 1}'])
    kit.writer.execute("INSERT INTO public.t88_acct VALUES (1, 0, 'x')")
    kit.writer.execute("UPDATE public.t88_acct SET v = 1")
    kit.writer.execute("SELECT audit.record('t88.t4')")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    if how == "line_hash_also_rewritten":
        # the event changed and the block's stored line hash recomputed to match (events_hash then differs)
        tamper(kit.db, """UPDATE audit.event_log SET actor_id = 'mallory' WHERE kind = 't88.t1';
                          UPDATE audit.blocks b SET line_hashes = overlay(b.line_hashes PLACING
                                  sha256(convert_to(audit._canonical_event(e, b.canonical_version::smallint), 'UTF8'))
                                  FROM ((e.seq - b.first_seq) * 32 + 1)::int FOR 32)
                            FROM audit.event_log e WHERE e.kind = 't88.t1' AND e.seq BETWEEN b.first_seq AND b.last_seq""")
    else:
        tamper(kit.db, TAMPER[how])
    sql_ok, py_ok = both_verifiers(kit.db)
    assert (sql_ok, py_ok) == (False, False), (how, sql_ok, py_ok)


def test_v4_fields_outside_the_hash_changed_raise_no_false_alarm(kit):
    """sealed_at of an event changed by a superuser (not hashed): both verifiers still say intact
    (a false alarm would make real tampering easy to dismiss)."""
    kit.writer.execute("SELECT audit.record('t88.s1')")
    assert seal_all(kit.db) is None
    tamper(kit.db, "UPDATE audit.event_log SET sealed_at = sealed_at + interval '1 hour'")
    assert both_verifiers(kit.db) == (True, True)


# ============================================ class R ============================================

TENANT_PAIRS = {
    "two_tenants": ("t88a", "t88b"),
    "case": ("t88a", "T88A"),
    "null_and_empty": (None, ""),
    "trailing_space": ("t88a", "t88a "),
    "nfc_nfd": ("\u00e9", "e\u0301"),
}


@pytest.mark.parametrize("pair", list(TENANT_PAIRS))
@pytest.mark.parametrize("via", ["argument", "context"])
def test_r1_one_idempotency_key_in_two_tenants_is_two_events(kit, pair, via):
    """Tenant A records with key k; tenant B (another tenant value) records with the same key and
    other content. Keys are unique per tenant: B gets its own new event, never A's event back and
    never a conflict. (NULL and '' may be one tenant: then a conflict, PA004, is right.)"""
    a, b = TENANT_PAIRS[pair]

    def rec(tenant, payload):
        if via == "argument":
            return kit.writer.execute("SELECT (audit.record(kind => 't88.idem', tenant_id => %s, idempotency_key => 'k',"
                                      " payload => %s::jsonb)).id", [tenant, payload]).fetchone()[0]
        with kit.writer.transaction():
            kit.writer.execute("SELECT set_config('pgaudit_py.tenant_id', coalesce(%s, ''), true)", [tenant])
            return kit.writer.execute("SELECT (audit.record(kind => 't88.idem', idempotency_key => 'k',"
                                      " payload => %s::jsonb)).id", [payload]).fetchone()[0]

    id_a = rec(a, '{"who": "A-SECRET"}')
    try:
        id_b = rec(b, '{"who": "B"}')
        err = None
    except psycopg.Error as e:
        id_b, err = None, e.sqlstate
    stored = kit.db.execute("SELECT tenant_id, payload->>'who' FROM audit.events WHERE kind = 't88.idem' ORDER BY intake_id").fetchall()
    if pair == "null_and_empty" and err == "PA004":
        return
    assert err is None and id_b != id_a, (pair, via, err, stored)
    assert [s[1] for s in stored] == ["A-SECRET", "B"], stored


def test_r2_a_retry_with_the_same_key_in_another_tenant_context_does_not_return_the_original(kit):
    """Same content, same role, same key, but the context names another tenant: never A's event
    (with A's tenant) returned to a writer acting for B."""
    kit.writer.execute("SELECT audit.record(kind => 't88.idem2', tenant_id => 't88a', idempotency_key => 'k')")
    with kit.writer.transaction():
        kit.writer.execute("SELECT set_config('pgaudit_py.tenant_id', 't88b', true)")
        row = kit.writer.execute("SELECT (r).tenant_id FROM (SELECT audit.record(kind => 't88.idem2',"
                                 " idempotency_key => 'k') r) x").fetchone()
    assert row[0] == "t88b", row


BAD_OUTCOMES = ["Success", "success ", " failure", "failure\n", "", "ok", "succe\u017fs", "s\u0075ccess\u200b",
                "FAILURE", "success\u0000"]


@pytest.mark.parametrize("outcome", BAD_OUTCOMES)
def test_r3_an_outcome_other_than_the_two_words_is_refused(kit, outcome):
    before = n_all(kit.db)
    try:
        kit.writer.execute("SELECT audit.record('t88.out', outcome => %s)", [outcome])
        err = None
    except psycopg.Error as e:
        err = e.sqlstate or "client"
    assert err in ("PA005", "client", "22021"), (outcome, err)
    assert n_all(kit.db) == before


@pytest.mark.parametrize("name", ["actor_type", "actor_id", "tenant_id", "correlation_id"])
def test_r4_a_long_context_value_is_refused_or_kept_whole_by_capture(kit, name):
    """The context (pgaudit_py.<name>) set to 5,000 characters, then a captured write and a record().
    Safe: refused with a SQLSTATE (not internal) and nothing written, or stored whole: never cut to a
    prefix that another actor or tenant could share."""
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    value = "Z" * 5000
    kit.writer.execute(f"SELECT set_config('pgaudit_py.{name}', %s, false)", [value])
    e1 = try_write(kit.writer, "INSERT INTO public.t88_acct VALUES (1, 0, 'x')")
    e2 = try_write(kit.writer, "SELECT audit.record('t88.ctx')")
    rows = kit.db.execute(f"SELECT {name} FROM audit.events WHERE kind IN ('public.t88_acct.insert', 't88.ctx')").fetchall()
    for err in (e1, e2):
        assert err is None or not err.startswith("XX"), err
    assert all(r[0] == value for r in rows), (name, e1, e2, [len(r[0] or "") for r in rows])
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)


POOL_ROUTES = ["block_then_plain", "failed_block_then_plain", "block_in_open_tx_then_plain",
               "session_set_then_block_naming_actor_only", "nested_block_inner_tenant"]


@pytest.mark.parametrize("route", POOL_ROUTES)
def test_r5_a_pooled_connection_never_hands_one_users_actor_to_the_next(db, route):
    """A psycopg_pool pool of one connection (app_writer). The first user writes as alice of acme
    (in a block, a failed block, a block inside its own transaction, or a session-level SET before an
    outermost block naming only actor_id); the next user records. Safe: the next user's event names
    neither alice nor acme, unless its own block names them."""
    from psycopg_pool import ConnectionPool

    i = db.info
    autocommit = route != "block_in_open_tx_then_plain"
    pool = ConnectionPool(f"host={i.host} port={i.port} dbname={i.dbname} user=app_writer", min_size=1, max_size=1,
                          kwargs={"autocommit": autocommit}, open=True)
    try:
        with pool.connection() as c:
            if route == "block_then_plain":
                with audit_context(c, actor_id="alice", tenant_id="acme", correlation_id="req-a"):
                    record(c, "t88.pool.first")
            elif route == "failed_block_then_plain":
                with suppress(RuntimeError), audit_context(c, actor_id="alice", tenant_id="acme", correlation_id="req-a"):
                    record(c, "t88.pool.first")
                    raise RuntimeError("boom")
            elif route == "block_in_open_tx_then_plain":
                c.execute("SELECT 1")
                with audit_context(c, actor_id="alice", tenant_id="acme", correlation_id="req-a"):
                    record(c, "t88.pool.first")
                c.commit()
            elif route == "session_set_then_block_naming_actor_only":
                c.execute("SET pgaudit_py.tenant_id = 'acme'; SET pgaudit_py.correlation_id = 'req-a'")
                with audit_context(c, actor_id="alice"):
                    record(c, "t88.pool.first")
            elif route == "nested_block_inner_tenant":
                with audit_context(c, actor_id="bob"):
                    with audit_context(c, actor_id="alice", tenant_id="acme", correlation_id="req-a"):
                        record(c, "t88.pool.first")
                    record(c, "t88.pool.between")
        with pool.connection() as c:
            if route == "session_set_then_block_naming_actor_only":
                with audit_context(c, actor_id="carol"):
                    record(c, "t88.pool.second")
            else:
                record(c, "t88.pool.second")
                if not autocommit:
                    c.commit()
    finally:
        pool.close()
    rows = db.execute("SELECT kind, actor_id, tenant_id, correlation_id FROM audit.events"
                      " WHERE starts_with(kind, 't88.pool.') ORDER BY intake_id").fetchall()
    second = [r for r in rows if r[0] in ("t88.pool.second", "t88.pool.between")]
    assert second and all(r[1] != "alice" and r[2] != "acme" and r[3] != "req-a" for r in second), rows
    if route != "failed_block_then_plain":
        first = [r for r in rows if r[0] == "t88.pool.first"]
        assert first and first[0][1] == "alice", rows


@pytest.mark.parametrize("route", ["block_then_plain", "failed_block_then_plain", "concurrent_tasks"])
def test_r6_an_async_pool_never_hands_one_users_actor_to_the_next(db, route):
    """The asyncio API on an AsyncConnectionPool of one connection: the first task writes as alice
    (or fails inside its block); the next records without a block. With two tasks on two pooled
    connections at once, each event names its own task's actor."""
    from psycopg_pool import AsyncConnectionPool

    from pgaudit_py import aio

    i = db.info
    conninfo = f"host={i.host} port={i.port} dbname={i.dbname} user=app_writer"

    async def main():
        size = 2 if route == "concurrent_tasks" else 1
        pool = AsyncConnectionPool(conninfo, min_size=size, max_size=size, kwargs={"autocommit": True}, open=False)
        await pool.open()
        try:
            if route == "concurrent_tasks":
                async def task(who):
                    for _n in range(10):
                        async with pool.connection() as c, aio.audit_context(c, actor_id=who, tenant_id=who + "-t"):
                            await aio.record(c, "t88.apool." + who)
                            await asyncio.sleep(0)
                await asyncio.gather(task("alice"), task("bob"))
                return
            async with pool.connection() as c:
                try:
                    async with aio.audit_context(c, actor_id="alice", tenant_id="acme"):
                        await aio.record(c, "t88.apool.first")
                        if route == "failed_block_then_plain":
                            raise RuntimeError("boom")
                except RuntimeError:
                    pass
            async with pool.connection() as c:
                await aio.record(c, "t88.apool.second")
        finally:
            await pool.close()

    asyncio.run(main())
    rows = db.execute("SELECT kind, actor_id, tenant_id FROM audit.events WHERE starts_with(kind, 't88.apool.')").fetchall()
    if route == "concurrent_tasks":
        assert len(rows) == 20 and all(r[0].endswith("." + r[1]) and r[2] == r[1] + "-t" for r in rows), rows
    else:
        second = [r for r in rows if r[0] == "t88.apool.second"]
        assert second and second[0][1] in (None, "app_writer") and second[0][2] is None, rows


def test_r7_the_same_key_from_another_actor_of_one_tenant_is_a_conflict_that_names_nothing(kit):
    """Alice records with key k; bob (same role, same tenant) reuses k with other content. Safe:
    PA004, with no word of alice's event (payload, actor) in the message."""
    kit.writer.execute("SELECT audit.record(kind => 't88.k', tenant_id => 't', actor_id => 'alice',"
                       " idempotency_key => 'k', payload => '{\"secret\": \"ALICE-PRIVATE\"}')")
    try:
        kit.writer.execute("SELECT audit.record(kind => 't88.k', tenant_id => 't', actor_id => 'bob',"
                           " idempotency_key => 'k', payload => '{}')")
        got, text = None, ""
    except psycopg.Error as e:
        got = e.sqlstate
        d = e.diag
        text = " ".join(str(x) for x in (e, d.message_detail, d.message_hint, d.context))
    assert got == "PA004", got
    assert "ALICE-PRIVATE" not in text and "alice" not in text, text


# ============================================ later additions ============================================

DDL_AFTER_TRACKING = {
    "add_column_cast_enum": "ALTER TABLE public.t88_sp ADD COLUMN m2 public.t88_mood DEFAULT 'ok'",
    "add_check_constraint": "ALTER TABLE public.t88_sp ADD CONSTRAINT t88_ck CHECK (public.t88_spy('check'))",
    "create_index_expression": "CREATE INDEX t88_ix ON public.t88_sp ((public.t88_imm(v)))",
    "alter_column_type_using": "ALTER TABLE public.t88_sp ALTER COLUMN v TYPE bigint USING public.t88_imm(v)",
    "rename_column": "ALTER TABLE public.t88_sp RENAME COLUMN v TO v2",
    "add_generated": "ALTER TABLE public.t88_sp ADD COLUMN g int GENERATED ALWAYS AS (public.t88_imm(v)) STORED",
    "attach_partition_with_default": None,
    "comment_and_statistics": "COMMENT ON TABLE public.t88_sp IS 'x'; CREATE STATISTICS t88_st ON (public.t88_imm(v)), id"
                              " FROM public.t88_sp; ANALYZE public.t88_sp",
    "policy_added": "ALTER TABLE public.t88_sp ENABLE ROW LEVEL SECURITY; ALTER TABLE public.t88_sp FORCE ROW LEVEL SECURITY;"
                    " CREATE POLICY t88_p ON public.t88_sp USING (public.t88_spy('policy')) WITH CHECK (public.t88_spy('policy'))",
}


@pytest.mark.parametrize("ddl", list(DDL_AFTER_TRACKING))
def test_c5_the_owners_ddl_on_a_tracked_table_never_runs_its_code_as_an_audit_role(kit, ddl):
    """After tracking, the owner's DDL that the audit event triggers follow (regenerating the capture,
    checking casts and columns) carries its own code: a cast on an enum column added, a CHECK, an
    expression index, a USING, a generated column, statistics, a policy. Then writes, history, seal,
    verify, status. Safe: no audit role (but the sandbox) nor superuser ran it; both verifiers good."""
    spy_kit(kit)
    o = kit.owner
    o.execute("""CREATE TYPE public.t88_mood AS ENUM ('ok', 'sad');
                 CREATE FUNCTION public.t88_mt(public.t88_mood) RETURNS text LANGUAGE plpgsql IMMUTABLE
                   AS $$ BEGIN PERFORM public.t88_spy('cast'); RETURN 'forged'; END $$;
                 CREATE CAST (public.t88_mood AS text) WITH FUNCTION public.t88_mt(public.t88_mood);
                 CREATE FUNCTION public.t88_imm(int) RETURNS int LANGUAGE plpgsql IMMUTABLE
                   AS $$ BEGIN PERFORM public.t88_spy('expr'); RETURN $1; END $$""")
    if ddl == "attach_partition_with_default":
        o.execute("""CREATE TABLE public.t88_sp (id int, v int, PRIMARY KEY (id)) PARTITION BY RANGE (id);
                     CREATE TABLE public.t88_sp1 PARTITION OF public.t88_sp FOR VALUES FROM (0) TO (100);
                     GRANT ALL ON public.t88_sp TO app_writer""")
    else:
        o.execute("CREATE TABLE public.t88_sp (id int PRIMARY KEY, v int); GRANT ALL ON public.t88_sp TO app_writer")
    o.execute("INSERT INTO public.t88_sp VALUES (1, 1)")
    enable_tracking(kit.maint, "public.t88_sp")
    o.execute("DELETE FROM public.t88_ran")
    kit.ran.clear()
    if ddl == "attach_partition_with_default":
        stmt = ("CREATE TABLE public.t88_sp2 (id int, v int DEFAULT public.t88_imm(5) CHECK (public.t88_spy('attach')));"
                " INSERT INTO public.t88_sp2 (id) VALUES (150);"
                " ALTER TABLE public.t88_sp ATTACH PARTITION public.t88_sp2 FOR VALUES FROM (100) TO (200)")
    else:
        stmt = DDL_AFTER_TRACKING[ddl]
    err = try_write(o, stmt)
    for c in (kit.maint,):
        try_write(c, "ALTER TABLE public.t88_sp ADD COLUMN t88_extra int")  # the maintainer's DDL too
    try_write(kit.writer, "INSERT INTO public.t88_sp (id, v) VALUES (2, 2)")
    try_write(kit.writer, "UPDATE public.t88_sp SET v = 3 WHERE id = 2")
    try_write(kit.writer, "DELETE FROM public.t88_sp WHERE id = 1")
    with suppress(psycopg.Error):
        kit.reader.execute("SELECT * FROM audit.row_history('public.t88_sp'::regclass, '2')").fetchall()
    assert seal_all(kit.db) is None
    problems_of(kit.db)
    assert privileged_runs(kit) == set(), (ddl, err, privileged_runs(kit),
                                           kit.db.execute("SELECT DISTINCT who, what FROM public.t88_ran").fetchall())
    assert forged(kit) == []
    assert both_verifiers(kit.db) == (True, True)


@pytest.mark.parametrize("write", ["update_moves_out", "merge_moves_out", "merge_update_in_place", "update_in_place",
                                   "delete_via_parent"])
def test_d7_a_tracked_table_attached_under_an_untracked_parent_keeps_every_change(kit, write):
    """The owner makes an untracked partitioned parent (no rule, so MERGE is allowed on it) and
    attaches its tracked table as one partition beside an untracked one; the writer then changes the
    tracked table's rows only through the parent: UPDATE and MERGE moving a row out into the other
    partition, in place, DELETE. Safe: the attach refused, or every row the tracked table lost or
    changed has its event."""
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t88_acct VALUES (1, 0, 'a'), (2, 0, 'b')")
    err = try_write(kit.owner, """CREATE TABLE public.t88_par (id int, v int, note text) PARTITION BY RANGE (id);
        CREATE TABLE public.t88_other (id int, v int, note text);
        ALTER TABLE public.t88_par ATTACH PARTITION public.t88_acct FOR VALUES FROM (0) TO (1000);
        ALTER TABLE public.t88_par ATTACH PARTITION public.t88_other FOR VALUES FROM (1000) TO (2000);
        GRANT ALL ON public.t88_par, public.t88_other TO app_writer""")
    if err is not None:
        assert err[:5] in ("PA008", "42501"), err
        return
    stmt = {
        "update_moves_out": "UPDATE public.t88_par SET id = id + 1000 WHERE id = 1",
        "merge_moves_out": "MERGE INTO public.t88_par p USING (VALUES (1)) s(id) ON p.id = s.id"
                           " WHEN MATCHED THEN UPDATE SET id = p.id + 1000",
        "merge_update_in_place": "MERGE INTO public.t88_par p USING (VALUES (1)) s(id) ON p.id = s.id"
                                 " WHEN MATCHED THEN UPDATE SET v = 42",
        "update_in_place": "UPDATE public.t88_par SET v = 42 WHERE id = 1",
        "delete_via_parent": "DELETE FROM public.t88_par WHERE id = 1",
    }[write]
    n0 = kit.db.execute("SELECT count(*) FROM audit.events WHERE starts_with(kind, 'public.t88_acct.')").fetchone()[0]
    werr = try_write(kit.writer, stmt)
    row1 = kit.db.execute("SELECT to_jsonb(a) FROM public.t88_acct a WHERE id = 1").fetchone()
    n1 = kit.db.execute("SELECT count(*) FROM audit.events WHERE starts_with(kind, 'public.t88_acct.')").fetchone()[0]
    if werr is not None:
        assert werr[:2] in ("PA", "0A", "42"), werr
        return
    assert row1 is None or row1[0]["v"] == 42
    assert n1 - n0 >= 1, (write, n0, n1, kit.db.execute("SELECT kind, target_id FROM audit.events"
                                                          " WHERE starts_with(kind, 'public.t88_acct.')").fetchall())


@pytest.mark.parametrize("action", ["disable_tracking", "enable_tracking", "prune", "register_type", "archive_settings",
                                    "api_token", "operation_limit"])
def test_r8_a_maintainers_session_context_never_files_a_system_event_under_a_tenant(kit, action):
    """The maintainer's session carries an application's context (tenant 't88-victim', correlation
    id, actor 'ceo'), as a pooled connection may. Its administrative actions write pgaudit_py's own
    events. Safe: no system event is filed under the session's tenant (a tenant's readers would see
    the installation's administration as theirs, as the token events already avoid)."""
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    if action == "enable_tracking":
        kit.owner.execute("CREATE TABLE public.t88_b (id int PRIMARY KEY); GRANT ALL ON public.t88_b TO app_writer")
    kit.writer.execute("SELECT audit.record('t88.r8')")
    seal_all(kit.db)
    m = kit.maint
    m.execute("SELECT set_config('pgaudit_py.tenant_id', 't88-victim', false),"
              " set_config('pgaudit_py.actor_id', 'ceo', false),"
              " set_config('pgaudit_py.correlation_id', 'req-victim', false)")
    n0 = kit.db.execute("SELECT coalesce(max(intake_id), 0) FROM audit.event_intake").fetchone()[0]
    before = {r[0] for r in kit.db.execute("SELECT id FROM audit.events WHERE origin = 'system'")}
    stmt = {
        "disable_tracking": "SELECT audit.disable_tracking('public.t88_acct')",
        "enable_tracking": "SELECT audit.enable_tracking('public.t88_b')",
        "prune": "SELECT * FROM audit.prune_events(interval '0 seconds')",
        "register_type": "SELECT audit.register_event_type(kind => 't88.typed', schema => '{}')",
        "archive_settings": "SELECT audit.set_archive_settings(interval '1 day', 10, 3)",
        "api_token": None,
        "operation_limit": "SELECT audit.set_operation_limit('t88.op', 5)",
    }[action]
    if stmt is None:
        from pgaudit_py.tokens import create_token
        create_token(m, "t88-token", "reader")
        err = None
    else:
        err = try_write(m, stmt)
    rows = kit.db.execute("SELECT kind, tenant_id, actor_id, correlation_id FROM audit.events WHERE origin = 'system'"
                          " AND NOT (id = ANY(%s))", [list(before)]).fetchall()
    assert err is None or err[:2] == "PA", err
    assert all(r[1] != "t88-victim" for r in rows), (action, rows, n0)


SANDBOX_PROBES = {
    "intake_insert": "INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)"
                     " VALUES ('user', 'x', 't88.forged_sandbox', 'success', '1', now(), '{}')",
    "record": "SELECT audit.record('t88.forged_sandbox_record')",
    "read_events": "SELECT count(*) FROM audit.events",
    "read_intake": "SELECT count(*) FROM audit.event_intake",
    "read_log": "SELECT count(*) FROM audit.event_log",
    "read_secrets": "SELECT count(*) FROM audit.secret_values",
    "read_victim_table": "SELECT count(*) FROM public.t88_victim",
    "set_role_capture": "SET LOCAL ROLE audit_capture",
    "set_role_owner": "SET LOCAL ROLE audit_owner",
    "set_actor_session": "SELECT set_config('pgaudit_py.actor_id', 'forged-by-sandbox', false)",
    "notify_channel": "SELECT pg_notify('audit', '999999')",
    "create_temp": "CREATE TEMP TABLE t88_sbx (x int)",
    "advisory_lock": "SELECT pg_advisory_lock(42)",
    "seal": "SELECT audit.seal(1)",
    "write_who_ran": "INSERT INTO public.t88_ran VALUES ('x', 'y', 'z')",
}


@pytest.mark.parametrize("route", ["owner_cast_before", "owner_cast_after", "superuser_cast_left_from_upgrade"])
@pytest.mark.parametrize("typ", ["range", "multirange", "enum"])
def test_c6_code_run_in_the_capture_sandbox_can_do_nothing(kit, typ, route):
    """A type whose to_jsonb goes through a cast to json (a range, its multirange, an enum). The
    owner's own cast, made before or after tracking, must be refused (PA). A superuser's PL/pgSQL cast
    left from an older installation (made here with the event triggers idle) calls the owner's
    function, so the owner's code runs in the capture's sandbox by design. It probes what it may do
    there (each probe in its own subtransaction, its success said in a warning that outlives
    rollbacks). Safe: nothing: no write, no read of the audit schema or of another owner's table, no
    role switch, no setting that outlives the cast, no notification on the audit channel."""
    db = kit.db
    db.execute("CREATE TABLE public.t88_victim (secret text); INSERT INTO public.t88_victim VALUES ('V');"
               " GRANT SELECT ON public.t88_victim TO app_reader, app_writer")
    spy_kit(kit)
    caps: list[str] = []

    def hear_caps(d):
        msg = d.message_primary or ""
        if msg.startswith("t88cap "):
            caps.append(msg.removeprefix("t88cap "))

    for c in (kit.db, kit.owner, kit.writer, kit.maint, kit.reader):
        c.add_notice_handler(hear_caps)
    probes = "\n".join(
        f"BEGIN EXECUTE {psycopg.sql.quote(sql_text)}; RAISE WARNING 't88cap % {name}', current_user;"
        f" EXCEPTION WHEN OTHERS THEN NULL; END;"
        for name, sql_text in SANDBOX_PROBES.items())
    if typ == "enum":
        kit.owner.execute("CREATE TYPE public.t88_x AS ENUM ('a', 'b')")
        value, argtype = "'a'", "public.t88_x"
    else:
        kit.owner.execute("CREATE TYPE public.t88_x AS RANGE (subtype = int4, multirange_type_name = public.t88_xm)")
        value, argtype = ("'[1,2)'", "public.t88_x") if typ == "range" else ("'{[1,2)}'", "public.t88_xm")
    kit.owner.execute(f"""CREATE FUNCTION public.t88_probe() RETURNS void LANGUAGE plpgsql AS $fn$ BEGIN
            RAISE WARNING 't88cap who %', current_user;
            {probes}
          END $fn$;
        GRANT EXECUTE ON FUNCTION public.t88_probe() TO PUBLIC""")
    cast = f"""CREATE FUNCTION public.t88_pj({argtype}) RETURNS json LANGUAGE plpgsql
          AS $fn$ BEGIN PERFORM public.t88_probe(); RETURN to_json($1::text); END $fn$;
        CREATE CAST ({argtype} AS json) WITH FUNCTION public.t88_pj({argtype})"""
    if route == "owner_cast_before":
        kit.owner.execute(cast)
    kit.owner.execute(f"CREATE TABLE public.t88_sp (id int PRIMARY KEY, p {argtype}, v int);"
                      " GRANT ALL ON public.t88_sp TO app_writer")
    err = try_enable(kit, "t88_sp")
    if route == "owner_cast_before":
        assert err is not None and err[:2] == "PA", err
        return
    assert err is None, err
    if route == "owner_cast_after":
        err = try_write(kit.owner, cast)
        assert err is not None and err[:2] == "PA", err
        return
    db.execute("BEGIN")
    db.execute("SET LOCAL session_replication_role = replica")
    db.execute(cast)
    db.execute("COMMIT")
    caps.clear()
    listener = kit.conn()
    listener.execute("LISTEN audit")
    kit.writer.execute(f"INSERT INTO public.t88_sp VALUES (1, {value}, 0)")
    kit.writer.execute("UPDATE public.t88_sp SET v = 1")
    kit.writer.execute("SELECT audit.record('t88.after_sandbox')")
    later = db.execute("SELECT actor_id FROM audit.events WHERE kind = 't88.after_sandbox'").fetchone()[0]
    notes = [n.payload for n in listener.notifies(timeout=0.5, stop_after=5)]
    ran_as = {c.split()[1] for c in caps if c.startswith("who ")}
    # rights it must never have, even for the moment before its subtransaction is rolled back
    never = ("intake_insert", "record", "read_events", "read_intake", "read_log", "read_secrets", "read_victim_table",
             "set_role_capture", "set_role_owner", "seal")
    sandboxed = [c for c in caps if c.split()[0] == "audit_sandbox" and c.split()[1] in never]
    assert ran_as <= {"audit_sandbox", "app_writer", "t88_owner"}, ran_as
    assert sandboxed == [], (ran_as, sandboxed)
    lasting = db.execute("SELECT count(*) FROM public.t88_ran WHERE who = 'x'").fetchone()[0]
    assert lasting == 0, lasting
    assert later != "forged-by-sandbox", later
    assert "999999" not in notes, notes
    assert forged(kit) == [] and privileged_runs(kit) == set()
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


FK_ACTIONS = {
    "delete_cascade": ("ON DELETE CASCADE", "DELETE FROM public.t88_parent WHERE id = 1"),
    "delete_set_null": ("ON DELETE SET NULL", "DELETE FROM public.t88_parent WHERE id = 1"),
    "delete_set_default": ("ON DELETE SET DEFAULT", "DELETE FROM public.t88_parent WHERE id = 1"),
    "update_cascade": ("ON UPDATE CASCADE", "UPDATE public.t88_parent SET id = 5 WHERE id = 1"),
    "update_set_null_cols": ("ON DELETE SET NULL (pid)", "DELETE FROM public.t88_parent WHERE id = 1"),
    "truncate_cascade": ("", "TRUNCATE public.t88_parent CASCADE"),
}


@pytest.mark.parametrize("action", list(FK_ACTIONS))
def test_d8_changes_made_by_foreign_key_actions_from_an_untracked_parent_are_captured(kit, action):
    """The tracked table references the owner's untracked table; deleting or updating parent rows
    changes the tracked rows through the foreign key's own triggers (which run as the table's owner),
    TRUNCATE ... CASCADE empties it. Safe: every tracked row changed has its event."""
    fk, stmt = FK_ACTIONS[action]
    kit.owner.execute("CREATE TABLE public.t88_parent (id int PRIMARY KEY); INSERT INTO public.t88_parent VALUES (0), (1), (2);"
                      " GRANT ALL ON public.t88_parent TO app_writer")
    track_new_table(kit, "t88_child", f"id int PRIMARY KEY, pid int DEFAULT 0 REFERENCES public.t88_parent (id) {fk}, v int")
    kit.writer.execute("INSERT INTO public.t88_child VALUES (1, 1, 0), (2, 1, 0), (3, 2, 0)")
    snap = "SELECT coalesce(jsonb_agg(to_jsonb(c) ORDER BY id), '[]') FROM public.t88_child c"
    before = {r["id"]: r for r in kit.db.execute(snap).fetchone()[0]}
    n0 = kit.db.execute("SELECT count(*) FROM audit.events WHERE starts_with(kind, 'public.t88_child.')").fetchone()[0]
    err = try_write(kit.writer, stmt)
    assert err is None, err
    after = {r["id"]: r for r in kit.db.execute(snap).fetchone()[0]}
    changed = {str(i) for i in set(before) | set(after) if before.get(i) != after.get(i)}
    got = [r for r in kit.db.execute("SELECT kind, target_id FROM audit.events WHERE starts_with(kind, 'public.t88_child.')"
                                     " ORDER BY seq NULLS LAST, intake_id OFFSET %s", [n0])]
    assert changed, (before, after)
    named = {t for _, t in got} | ({"*"} if any(k.endswith(".truncate") for k, _ in got) else set())
    assert changed <= named or "*" in named, (action, changed, got)


@pytest.mark.parametrize("route", ["via_untracked_parent", "via_inheritance_parent", "via_updatable_view", "via_merge"])
def test_r9_a_rate_limit_cannot_be_dodged_through_another_relation(kit, route):
    """A limited table (2 writes a minute per user), written 6 times by the writer through an untracked
    partitioned or inheritance parent the owner made, an updatable view, or MERGE. Safe: the parent
    refused, or the limit refuses (PA009) by the third write."""
    track_new_table(kit, "t88_lim", "id int PRIMARY KEY, v int, note text")
    kit.maint.execute("SELECT audit.enable_rate_limit('public.t88_lim', per_user_per_minute => 2, per_tenant_per_minute => 100)")
    setup = {
        "via_untracked_parent": "CREATE TABLE public.t88_par (id int, v int, note text) PARTITION BY RANGE (id);"
                                " ALTER TABLE public.t88_par ATTACH PARTITION public.t88_lim FOR VALUES FROM (0) TO (1000);"
                                " GRANT ALL ON public.t88_par TO app_writer",
        "via_inheritance_parent": "CREATE TABLE public.t88_par (id int, v int, note text);"
                                  " ALTER TABLE public.t88_lim INHERIT public.t88_par; GRANT ALL ON public.t88_par TO app_writer",
        "via_updatable_view": "CREATE VIEW public.t88_par AS SELECT * FROM public.t88_lim; GRANT ALL ON public.t88_par TO app_writer",
        "via_merge": "CREATE VIEW public.t88_par AS SELECT * FROM public.t88_lim",
    }[route]
    kit.db.execute("INSERT INTO public.t88_lim VALUES (1, 0, 'a')")
    err = try_write(kit.owner, setup)
    if err is not None:
        assert err[:5] in ("PA008", "42501"), err
        return
    results = []
    for _ in range(6):
        if route == "via_merge":
            stmt = "MERGE INTO public.t88_lim l USING (VALUES (1)) s(id) ON l.id = s.id WHEN MATCHED THEN UPDATE SET v = v + 1"
        elif route == "via_untracked_parent" or route == "via_inheritance_parent":
            stmt = "UPDATE public.t88_par SET v = v + 1 WHERE id = 1"
        else:
            stmt = "UPDATE public.t88_par SET v = v + 1 WHERE id = 1"
        results.append(try_write(kit.writer, stmt))
    refused = [r for r in results if r is not None]
    assert refused and all(r[:5] == "PA009" for r in refused) and results[2] is not None, (route, results)


BUILTIN_VALUES = {
    "float_specials": ("f float8", ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'4.9e-324'", "'1.7976931348623157e308'"]),
    "real_specials": ("f real", ["'NaN'", "'-0'", "'1.4e-45'", "'3.4028235e38'"]),
    "numeric_specials": ("f numeric", ["'NaN'", "'Infinity'", "'-Infinity'", "'-0.000'", "'1e-1000'", "'1e1000'"]),
    "timestamps": ("f timestamptz", ["'infinity'", "'-infinity'", "'4713-01-01 BC'", "'294276-12-31 23:59:59.999999'"]),
    "intervals": ("f interval", ["'178000000 years'", "'-178000000 years'", "'1 mon -30 days'", "'0.000001 sec'"]),
    "dates": ("f date", ["'infinity'", "'4713-01-01 BC'", "'5874897-12-31'"]),
    "money": ("f money", ["'-92233720368547758.08'", "'92233720368547758.07'"]),
    "text_controls": ("f text", ["E'\\\\u0001\\\\u001f\\\\u007f\\\\u0085\\\\u2028'", "repeat(E'\\\\\\\\', 1000)", "E'\\\\uFFFF\\\\U0010FFFF'"]),
    "char_padding": ("f char(5)", ["'a'", "'a    '", "''"]),
    "name_63": ("f name", ["repeat('\u00e9', 40)", "repeat('x', 100)"]),
    "arrays_odd": ("f int[]", ["'{}'", "'{{1,2},{3,4}}'", "'[-5:-4]={1,2}'", "'{NULL}'"]),
    "geometry": ("f box", ["'(1e308,1e308),(-1e308,-1e308)'", "'(NaN,0),(0,0)'"]),
    "bits": ("f varbit", ["''", "repeat('1', 1000)::varbit"]),
    "jsonb_numbers": ("f jsonb", ["'[1.0, 1.00, -0, 0e10, 1e-400]'", "'{\"\\u00e9\": 1, \"e\\u0301\": 2}'"]),
    "json_text": ("f json", ["'{\"a\": 1, \"a\": 2}'", "'[1.0e+2, -0.0]'", "'\"\\ud83d\\ude00\"'"]),
    "xml": ("f xml", ["'<a>&amp;\u00e9</a>'", "'<!-- x --><b/>'"]),
    "tsvector": ("f tsvector", ["'a:1A b:2B'", "''"]),
    "uuid_inet": ("f inet", ["'::ffff:1.2.3.4/128'", "'fe80::1/64'", "'0.0.0.0/0'"]),
}


@pytest.mark.parametrize("name", list(BUILTIN_VALUES))
def test_v5_hostile_builtin_values_captured_seal_and_both_verifiers_agree(kit, name):
    """A tracked table with one column of a built-in type, written with its edge values, each row
    updated and deleted. Safe: each write captured (or refused with a SQLSTATE that is not internal);
    the images alike pending and sealed; sealed; both verifiers intact."""
    col, values = BUILTIN_VALUES[name]
    track_new_table(kit, "t88_bv", f"id int PRIMARY KEY, {col}, v int")
    taken = 0
    for i, val in enumerate(values):
        err = try_write(kit.writer, f"INSERT INTO public.t88_bv VALUES ({i}, {val}, 0)")
        if err is not None:
            assert not err.startswith("XX"), (val, err)
            continue
        taken += 1
    kit.writer.execute("UPDATE public.t88_bv SET v = 1")
    q = ("SELECT kind, target_id, row_before::text, row_after::text, changed::text FROM audit.events"
         " WHERE starts_with(kind, 'public.t88_bv.') ORDER BY id")
    pending = kit.reader.execute(q).fetchall()
    assert seal_all(kit.db) is None
    sealed = kit.reader.execute(q).fetchall()
    assert pending == sealed, name
    kit.writer.execute("DELETE FROM public.t88_bv")
    assert seal_all(kit.db) is None
    assert kit.db.execute("SELECT count(*) FROM audit.events WHERE starts_with(kind, 'public.t88_bv.')").fetchone()[0] \
        == 3 * taken
    sql_ok, py_ok = both_verifiers(kit.db)
    assert (sql_ok, py_ok) == (True, True), (name, sql_ok, py_ok, verify_chain(kit.db).problem)


RETRY_DIFFERS = {
    "actor_type": {"actor_type": "service"},
    "correlation_id": {"correlation_id": "req-2"},
    "outcome": {"outcome": "failure"},
    "target_type": {"target_type": "invoice"},
    "target_id_space": {"target_id": "o-1 "},
    "payload_nfd": {"payload": '{"name": "Jose\u0301"}'},
    "payload_extra_null": {"payload": '{"name": "Jos\u00e9", "z": null}'},
    "payload_string_number": {"payload": '{"name": "Jos\u00e9", "n": "1"}'},
    "kind_case": {"kind": "T88.idem"},
    "actor_id_from_context": {"context_actor": "mallory"},
}


@pytest.mark.parametrize("differs", list(RETRY_DIFFERS))
def test_r10_a_retry_that_differs_in_any_part_of_its_content_is_a_conflict(kit, differs):
    """The same key in the same tenant from the same role, with one part of the content changed
    (docs/sql.md: kind, actor, target, payload, outcome, correlation id). Safe: PA004 and nothing
    written, never the original returned as if it were this event (a retry that changed the outcome
    from success to failure must not read as done)."""
    base = {"kind": "t88.idem", "tenant_id": "t", "actor_type": "user", "actor_id": "alice", "target_type": "order",
            "target_id": "o-1", "payload": '{"name": "Jos\u00e9", "n": 1}', "outcome": "success", "correlation_id": "req-1",
            "idempotency_key": "k-1"}

    def rec(args, context_actor=None):
        a = dict(args)
        with kit.writer.transaction():
            if context_actor:
                a.pop("actor_id")
                kit.writer.execute("SELECT set_config('pgaudit_py.actor_id', %s, true)", [context_actor])
            names = ", ".join(f"{k} => %s" + ("::jsonb" if k == "payload" else "") for k in a)
            return kit.writer.execute(f"SELECT (audit.record({names})).id", list(a.values())).fetchone()[0]

    first = rec(base)
    change = dict(RETRY_DIFFERS[differs])
    ctx = change.pop("context_actor", None)
    before = n_all(kit.db)
    try:
        again = rec({**base, **change}, ctx)
        err = None
    except psycopg.Error as e:
        again, err = None, e.sqlstate
    assert err == "PA004" and n_all(kit.db) == before, (differs, err, again == first)


@pytest.mark.parametrize("how", ["python_install", "psql_script"])
def test_c7_reinstalling_as_superuser_never_runs_a_public_shadow(kit, how):
    """mallory's shadows of catalogue functions in public (test_c2's set), then the superuser runs the
    installer again (Python, or the psql script) and status. Safe: none of mallory's code ran as the
    superuser or an audit role; the install succeeds; both verifiers good."""
    from trial_helpers import reinstall, script_reinstall

    spy_kit(kit, kit.mallory)
    for sig, body in SHADOWS.items():
        if body is None:
            continue
        kit.mallory.execute(f"CREATE FUNCTION public.{sig} {body.replace('AS $$', 'LANGUAGE plpgsql AS $$', 1)}")
    kit.writer.execute("SELECT audit.record('t88.before_install')")
    seal_all(kit.db)
    kit.mallory.execute("DELETE FROM public.t88_ran")
    kit.ran.clear()
    err = reinstall(kit.db) if how == "python_install" else script_reinstall(kit.db)
    status(kit.db)
    assert err is None, err
    assert privileged_runs(kit) == set(), (privileged_runs(kit),
                                           kit.db.execute("SELECT DISTINCT who, what FROM public.t88_ran").fetchall())
    assert both_verifiers(kit.db) == (True, True)


EXACT_SHADOWS = [
    ("starts_with(text, text)", "boolean", "false"), ("lower(text)", "text", "'forged'"), ("length(text)", "integer", "0"),
    ("quote_ident(text)", "text", "'forged'"), ("quote_literal(text)", "text", "'forged'"),
    ("to_regclass(text)", "regclass", "NULL"), ("format_type(oid, integer)", "text", "'forged'"),
    ("current_database()", "name", "'forged'"), ("pg_trigger_depth()", "integer", "0"), ("clock_timestamp()", "timestamptz", "now()"),
    ("set_config(text, text, boolean)", "text", "'forged'"), ("current_setting(text)", "text", "'forged'"),
    ("hashtextextended(text, bigint)", "bigint", "0"), ("md5(text)", "text", "'forged'"),
    ("sha256(bytea)", "bytea", "'\\x00'::bytea"), ("convert_to(text, name)", "bytea", "'\\x00'::bytea"),
    ("encode(bytea, text)", "text", "'forged'"), ("jsonb_typeof(jsonb)", "text", "'object'"),
    ("replace(text, text, text)", "text", "'forged'"), ("left(text, integer)", "text", "'forged'"),
    ("pg_get_indexdef(oid)", "text", "'forged'"), ("pg_has_role(name, name, text)", "boolean", "true"),
    ("has_table_privilege(name, oid, text)", "boolean", "true"), ("pg_backend_pid()", "integer", "0"),
    ("format(text)", "text", "'forged'"), ("to_jsonb(anyelement)", "jsonb", "'\"forged\"'"),
    ("pg_advisory_xact_lock(bigint)", "void", ""), ("substr(text, integer)", "text", "'forged'"),
    ("split_part(text, text, integer)", "text", "'forged'"), ("regexp_replace(text, text, text)", "text", "'forged'"),
]


@pytest.mark.parametrize("who", ["superuser", "maint"])
def test_c8_exact_shadows_first_on_the_search_path_never_run_in_audit_code(kit, who):
    """mallory puts functions of exactly pg_catalog's signatures in public, and an operator =(text, text);
    a superuser's (or the maintainer's) session names public before pg_catalog and runs DDL on tracked
    tables (what the event triggers follow), seals, verifies, records, and the Python status and
    verifier. Safe: none of mallory's code ran as an audit role or a superuser; both verifiers good."""
    spy_kit(kit, kit.mallory)
    for sig, ret, value in EXACT_SHADOWS:
        kit.mallory.execute(f"CREATE FUNCTION public.{sig} RETURNS {ret} LANGUAGE plpgsql AS $$"
                            f" BEGIN PERFORM public.t88_spy('{sig.split('(')[0]}'); RETURN {value}; END $$")
    kit.mallory.execute("""CREATE FUNCTION public.t88_teq(text, text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
                             AS $$ BEGIN PERFORM public.t88_spy('op='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
                           CREATE OPERATOR public.= (leftarg = text, rightarg = text, function = public.t88_teq);
                           CREATE FUNCTION public.t88_oeq(oid, oid) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
                             AS $$ BEGIN PERFORM public.t88_spy('oid='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
                           CREATE OPERATOR public.= (leftarg = oid, rightarg = oid, function = public.t88_oeq)""")
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    kit.owner.execute("CREATE TABLE public.t88_pp (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);"
                      " CREATE TABLE public.t88_pp1 PARTITION OF public.t88_pp FOR VALUES FROM (0) TO (10);"
                      " GRANT ALL ON public.t88_pp TO app_writer")
    enable_tracking(kit.maint, "public.t88_pp")
    kit.mallory.execute("DELETE FROM public.t88_ran")
    kit.ran.clear()
    conn = kit.conn() if who == "superuser" else kit.maint
    conn.add_notice_handler(kit.hear)
    conn.execute("SET search_path = public, pg_catalog")
    for stmt in ("ALTER TABLE public.t88_acct ADD COLUMN w int",
                 "ALTER TABLE public.t88_acct RENAME COLUMN w TO w2",
                 "COMMENT ON TABLE public.t88_acct IS 'x'",
                 "CREATE INDEX t88_acct_v ON public.t88_acct (v)",
                 "ALTER TABLE public.t88_acct DROP COLUMN w2",
                 "CREATE TABLE public.t88_pp2 PARTITION OF public.t88_pp FOR VALUES FROM (10) TO (20)",
                 "ALTER TABLE public.t88_pp DETACH PARTITION public.t88_pp2",
                 "DROP TABLE public.t88_pp2",
                 "CREATE TABLE public.t88_tmp (id int); DROP TABLE public.t88_tmp",
                 "ALTER TABLE public.t88_acct DISABLE TRIGGER audit_capture_insert"):
        try_write(conn, stmt)
    kit.writer.execute("INSERT INTO public.t88_acct (id, v) VALUES (1, 0)")
    try_write(conn, "SELECT audit.record('t88.shadow8')")
    conn.execute("SELECT * FROM audit.seal(1000)").fetchall()
    conn.execute("SELECT * FROM audit.verify()").fetchall()
    verify_chain(conn)
    if who == "superuser":
        status(conn)
    conn.execute("RESET search_path")
    assert privileged_runs(kit) == set(), (who, privileged_runs(kit),
                                           kit.db.execute("SELECT DISTINCT who, what FROM public.t88_ran").fetchall())
    assert forged(kit) == []
    assert is_tracked(kit, "public.t88_acct") and is_tracked(kit, "public.t88_pp")
    assert both_verifiers(kit.db) == (True, True)
    # control: the shadows do run for whoever calls them unqualified with public first
    kit.mallory.execute("SET search_path = public, pg_catalog")
    kit.mallory.execute("SELECT lower('x'), 'a'::text = 'b'::text")
    assert kit.db.execute("SELECT count(DISTINCT what) FROM public.t88_ran WHERE who = 't88_mallory'").fetchone()[0] >= 2


PREFIX_KINDS = ["t88.a", "t88.zz", "t88.Z", "t88.-", "t88./x", "t88._", "t88z", "t88", "T88.a", "t88-x", "t88_.a", "t87.z",
                "t88.a.b", "t89.a", "t88.~x"]


@pytest.mark.parametrize("phase", ["pending", "sealed", "mixed"])
@pytest.mark.parametrize("prefix", ["t88.", "t88", "t88.a", "t88_", "T88."])
def test_r11_a_kind_prefix_finds_exactly_the_kinds_it_starts(kit, phase, prefix):
    """Kinds around a prefix (other case, punctuation neighbours, a longer word, '_' and '-' that a LIKE
    or a linguistic collation would treat specially). Safe: list_events and count_events by the prefix
    return exactly the kinds that start with it (byte for byte), pending or sealed."""
    written = []
    for i, k in enumerate(PREFIX_KINDS):
        if try_write(kit.writer, "SELECT audit.record(%s)", [k]) is None:
            written.append(k)
        if phase == "mixed" and i == 6:
            assert seal_all(kit.db) is None
    if phase == "sealed":
        assert seal_all(kit.db) is None
    want = sorted(k for k in written if k.startswith(prefix))
    got = sorted(r[0] for r in kit.reader.execute(
        "SELECT kind FROM audit.list_events(kind_prefix => %s, page_size => 500)", [prefix]))
    count = kit.reader.execute("SELECT by_kind_prefix FROM audit.count_events(by_kind_prefix => ARRAY[%s])",
                               [prefix]).fetchone()[0]
    assert got == want, (phase, prefix, got, want)
    assert count.get(prefix) == len(want), (count, want)


ODD_READER_SETTINGS = {
    "timezone_kathmandu": {"TimeZone": "'Asia/Kathmandu'"},
    "timezone_far_future_posix": {"TimeZone": "'<+1445>-14:45'"},
    "bytea_escape": {"bytea_output": "'escape'"},
    "float_digits": {"extra_float_digits": "-15"},
    "serializable_read_only": {"default_transaction_isolation": "'serializable'", "default_transaction_read_only": "on"},
    "german": {"lc_messages": "'de_DE.UTF-8'"},
    "public_first": {"search_path": "'public, pg_catalog'"},
    "quote_all": {"quote_all_identifiers": "on"},
}


@pytest.mark.parametrize("name", list(ODD_READER_SETTINGS))
def test_v6_both_verifiers_under_a_readers_odd_settings_agree_and_catch_a_tamper(kit, name):
    """A fresh reader login with odd stored settings (time zones of odd offsets, bytea as escape,
    fewer float digits, serializable read-only default, German messages, public first, identifiers all
    quoted). Safe: both verifiers say intact for an intact log with hostile values, and both say not
    intact once a superuser changed one event."""
    from trial_helpers import login

    kit.writer.execute("SELECT audit.record('t88.o1', payload => %s::jsonb)",
                       ['{"n": 1.50, "m": 1e300, "s": "\\u0001\u00e9\\\\", "z": -0.0}'])
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, f float8, b bytea, t timestamptz")
    kit.writer.execute("INSERT INTO public.t88_acct VALUES (1, 0.1, '\\x00ff', '2026-03-29 01:30:00+00')")
    kit.writer.execute("SELECT audit.record('t88.o2')")
    assert seal_all(kit.db) is None
    with login(kit.db, kit.conn, "t88_aud", "audit_reader", ODD_READER_SETTINGS[name]) as conn:
        first = both_verifiers(conn)
        tamper(kit.db, "UPDATE audit.event_log SET payload = '{\"n\": 1.5, \"m\": 1e300, \"s\": \"\\u0001\u00e9\\\\\\\\\", \"z\": 0.0}'"
                       " WHERE kind = 't88.o1'")
        changed = kit.db.execute("SELECT payload::text FROM audit.event_log WHERE kind = 't88.o1'").fetchone()[0]
        second = both_verifiers(conn)
    assert first == (True, True), (name, first)
    assert second == (False, False), (name, second, changed)


@pytest.mark.parametrize("route", ["leftover_session_set_then_request", "leftover_session_set_outside_request",
                                   "copied_context_after_request", "async_task_outlives_request",
                                   "nested_request_inside_request"])
def test_r12_request_context_never_names_a_previous_or_finished_request(db, route):
    """pgaudit_py.request_context on a pooled connection (app_writer) that a previous user left holding
    session-level settings (alice of acme), or code that outlives its request (a copied context run
    later, an asyncio task). Safe: each event names the request it belongs to, or nobody (the role):
    never alice, acme or the finished request's actor."""
    import contextvars

    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from pgaudit_py import request_context

    i = db.info
    conninfo = f"host={i.host} port={i.port} dbname={i.dbname} user=app_writer"
    if route == "async_task_outlives_request":
        async def main():
            pool = AsyncConnectionPool(conninfo, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False)
            await pool.open()
            try:
                started = asyncio.Event()

                async def later():
                    started.set()
                    await asyncio.sleep(0.2)
                    async with pool.connection() as c, request_context.transaction_async(c):
                        await c.execute("SELECT audit.record('t88.rc.late')")

                with request_context.serving({"actor_id": "carol", "tenant_id": "carol-t"}):
                    task = asyncio.create_task(later())
                    await started.wait()
                await task
            finally:
                await pool.close()
        asyncio.run(main())
    else:
        pool = ConnectionPool(conninfo, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True)
        try:
            with pool.connection() as c:
                c.execute("SET pgaudit_py.actor_id = 'alice'; SET pgaudit_py.tenant_id = 'acme';"
                          " SET pgaudit_py.correlation_id = 'req-a'")
            with pool.connection() as c:
                if route == "leftover_session_set_then_request":
                    with request_context.serving({"actor_id": "bob"}), request_context.transaction(c):
                        c.execute("SELECT audit.record('t88.rc.bob')")
                elif route == "leftover_session_set_outside_request":
                    with request_context.transaction(c):
                        c.execute("SELECT audit.record('t88.rc.nobody')")
                elif route == "copied_context_after_request":
                    with request_context.serving({"actor_id": "carol", "tenant_id": "carol-t"}):
                        copied = contextvars.copy_context()

                    def job():
                        with request_context.transaction(c):
                            c.execute("SELECT audit.record('t88.rc.late')")
                    copied.run(job)
                elif route == "nested_request_inside_request":
                    with request_context.serving({"actor_id": "outer", "tenant_id": "outer-t"}), \
                            request_context.transaction(c):
                        with request_context.serving({"actor_id": "inner"}), request_context.transaction(c):
                            c.execute("SELECT audit.record('t88.rc.inner')")
                        c.execute("SELECT audit.record('t88.rc.outer')")
        finally:
            pool.close()
    rows = {r[0]: r[1:] for r in db.execute("SELECT kind, actor_id, tenant_id, correlation_id FROM audit.events"
                                            " WHERE starts_with(kind, 't88.rc.')")}
    assert rows, rows
    for actor, tenant, corr in rows.values():
        assert actor not in ("alice", "carol") and tenant not in ("acme", "carol-t") and corr != "req-a", rows
    if "t88.rc.bob" in rows:
        assert rows["t88.rc.bob"][:2] == ("bob", None), rows
    if "t88.rc.inner" in rows:
        assert rows["t88.rc.inner"][:2] == ("inner", None) and rows["t88.rc.outer"][:2] == ("outer", "outer-t"), rows


@pytest.mark.parametrize(("per_minute", "window"), [(1000, None), (1000, 1), (2, 1), (1, 2), (10_000_000, 86400), (2, 60)])
def test_r13_the_maintainers_operation_limit_overrides_what_the_writer_passes(kit, per_minute, window):
    """The maintainer limits operation t88.op to 2 per 60 s. The writer calls rate_limit('t88.op', key,
    per_minute, window_seconds) with a larger limit, a shorter window (its own counter, counted apart),
    or both. Safe: within the maintainer's window the same key is admitted at most twice, whatever
    the writer passes (docs/rate-limits.md: an operation limit set this way overrides what the
    application passes)."""
    kit.maint.execute("SELECT audit.set_operation_limit('t88.op', 2)")
    outcomes = []
    for _ in range(6):
        args = [per_minute] if window is None else [per_minute, window]
        ph = ", ".join(["%s"] * len(args))
        outcomes.append(sqlstate_of(kit.writer, f"SELECT audit.rate_limit('t88.op', 'k1', {ph})", args))
    admitted = sum(1 for o in outcomes if o is None)
    assert admitted <= 2 and all(o in (None, "PA009") for o in outcomes), (per_minute, window, outcomes)


LINE_LIMIT = 16 * 1024 * 1024


@pytest.mark.parametrize("shape", ["ascii_just_under", "two_byte_just_under", "controls_expand_just_under",
                                   "controls_expand_just_over", "update_doubles_over"])
def test_v7_events_near_the_16_mib_line_limit_seal_and_both_verifiers_agree(kit, shape):
    """A captured text value sized so that its canonical line is just under or just over 16 MiB (ASCII,
    two-byte characters, control characters that print six times longer than they are stored, or an
    UPDATE whose before and after images together pass the limit). Safe: sealing never fails (a
    line over the limit goes to the quarantine), a later event seals, and both verifiers say intact."""
    track_new_table(kit, "t88_big", "id int PRIMARY KEY, t text, v int")
    room = LINE_LIMIT - 1400  # the other members of an insert's line take well under 1,400 bytes
    value = {"ascii_just_under": lambda: "x" * room,
             "two_byte_just_under": lambda: "\u00e9" * (room // 2),
             "controls_expand_just_under": lambda: "\u0001" * (room // 6),
             "controls_expand_just_over": lambda: "\u0001" * (LINE_LIMIT // 6 + 10),
             "update_doubles_over": lambda: "y" * (LINE_LIMIT // 2 + 1000)}[shape]()
    kit.writer.execute("INSERT INTO public.t88_big VALUES (1, %s, 0)", [value])
    del value
    if shape == "update_doubles_over":
        kit.writer.execute("UPDATE public.t88_big SET v = 1")
    assert seal_all(kit.db) is None
    kit.writer.execute("SELECT audit.record('t88.after_big')")
    assert seal_all(kit.db) is None
    sealed = kit.db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't88.after_big'").fetchone()[0]
    lengths = kit.db.execute("SELECT kind, octet_length(audit._canonical_event(e, 2::smallint)) FROM audit.event_log e"
                             " WHERE starts_with(kind, 'public.t88_big.')").fetchall()
    q = [r[0] for r in kit.db.execute("SELECT kind FROM audit.quarantine")]
    assert sealed == 1, (lengths, q)
    assert all(n <= LINE_LIMIT for _, n in lengths), lengths
    sql_ok, py_ok = both_verifiers(kit.db)
    assert (sql_ok, py_ok) == (True, True), (shape, sql_ok, py_ok, lengths, q)


NOOP_LOOKALIKES = {
    "domain_over_numeric": ("CREATE DOMAIN public.t88_d AS numeric", "public.t88_d", "1.0", "1.00"),
    "domain_over_float8": ("CREATE DOMAIN public.t88_d AS float8", "public.t88_d", "'0'", "'-0'"),
    "domain_over_jsonb": ("CREATE DOMAIN public.t88_d AS jsonb", "public.t88_d", "'{\"a\": 1.0}'", "'{\"a\": 1.00}'"),
    "domain_over_json": ("CREATE DOMAIN public.t88_d AS json", "public.t88_d", "'{\"a\": 1, \"b\": 2}'", "'{\"b\": 2, \"a\": 1}'"),
    "domain_over_domain_numeric": ("CREATE DOMAIN public.t88_d0 AS numeric; CREATE DOMAIN public.t88_d AS public.t88_d0",
                                   "public.t88_d", "2.5", "2.50"),
    "composite_numeric": ("CREATE TYPE public.t88_d AS (n numeric)", "public.t88_d", "ROW(1.0)", "ROW(1.00)"),
    "composite_float": ("CREATE TYPE public.t88_d AS (f float8)", "public.t88_d", "ROW(0::float8)", "ROW('-0'::float8)"),
    "composite_jsonb": ("CREATE TYPE public.t88_d AS (j jsonb)", "public.t88_d", "ROW('[1.0]'::jsonb)", "ROW('[1.00]'::jsonb)"),
    "composite_array_bounds": ("CREATE TYPE public.t88_d AS (a int[])", "public.t88_d", "ROW('{1,2}'::int[])",
                               "ROW('[0:1]={1,2}'::int[])"),
    "domain_over_composite_numeric": ("CREATE TYPE public.t88_c AS (n numeric); CREATE DOMAIN public.t88_d AS public.t88_c",
                                      "public.t88_d", "ROW(1.0)", "ROW(1.00)"),
    "numrange_bounds": ("", "numrange", "'[1.0,2)'", "'[1.00,2)'"),
    "xml_decl_domain": ("CREATE DOMAIN public.t88_d AS xml", "public.t88_d", "'<a/>'",
                        "'<?xml version=\"1.0\"?><a/>'"),
}


@pytest.mark.parametrize("name", list(NOOP_LOOKALIKES))
def test_d9_an_update_to_a_value_stored_otherwise_but_printed_alike_is_recorded(kit, name):
    """skip_noop_updates (the default) skips an UPDATE whose images are alike; docs/capture.md says the
    rows are then compared as stored too for types to_jsonb prints alike (numeric scale, -0, json key
    order, array bounds, xml declarations). The same types hidden in a domain or a composite. Safe: an
    UPDATE that changes what is stored (its text differs) is recorded."""
    setup, typ, a, b = NOOP_LOOKALIKES[name]
    if setup:
        kit.owner.execute(setup)
    track_new_table(kit, "t88_nl", f"id int PRIMARY KEY, c {typ}")
    kit.writer.execute(f"INSERT INTO public.t88_nl VALUES (1, {a})")
    before = kit.db.execute("SELECT c::text FROM public.t88_nl").fetchone()[0]
    kit.writer.execute(f"UPDATE public.t88_nl SET c = {b}")
    after = kit.db.execute("SELECT c::text FROM public.t88_nl").fetchone()[0]
    assert before != after, (before, after)  # the stored value did change
    ups = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t88_nl.update'").fetchone()[0]
    assert ups == 1, (name, before, after, ups)


@pytest.mark.parametrize("role", ["writer", "reader", "maint", "mallory", "owner"])
def test_d10_no_lesser_role_changes_any_audit_relation_directly(kit, role):
    """Every table and view of the audit schema, tried by each lesser role with INSERT ... DEFAULT
    VALUES, INSERT of a copy of an existing row, UPDATE of one row to itself, DELETE and TRUNCATE.
    Safe: every relation's rows as they were (an owner proof a maintainer may insert is refused by
    its trigger for a table it does not own)."""
    track_new_table(kit, "t88_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t88_acct VALUES (1, 0, 'x')")
    kit.writer.execute("SELECT audit.record('t88.d10', idempotency_key => 'k')")
    seal_all(kit.db)
    kit.writer.execute("SELECT audit.record('t88.d10.pending')")
    rels = [r[0] for r in kit.db.execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'audit'::regnamespace"
        " AND c.relkind IN ('r', 'p', 'v') ORDER BY 1")]

    def snapshot():
        out = {}
        for rel in rels:
            try:
                out[rel] = kit.db.execute(f"SELECT count(*), coalesce(sum(hashtext(x::text)), 0) FROM {rel} x").fetchone()
            except psycopg.Error as e:
                out[rel] = e.sqlstate
        return out

    before = snapshot()
    conn = getattr(kit, role)
    accepted = []
    for rel in rels:
        cols = [r[0] for r in kit.db.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                                             " AND NOT attisdropped ORDER BY attnum LIMIT 1", [rel])]
        first = cols[0] if cols else None
        for stmt in (f"INSERT INTO {rel} DEFAULT VALUES",
                     f"INSERT INTO {rel} SELECT * FROM {rel} LIMIT 1",
                     f"UPDATE {rel} SET {first} = {first} WHERE ctid = (SELECT min(ctid) FROM {rel})" if first else None,
                     f"DELETE FROM {rel}", f"TRUNCATE {rel}"):
            if stmt is None:
                continue
            if try_write(conn, stmt) is None:
                accepted.append(stmt)
    after = snapshot()
    changed = [r for r in rels if before[r] != after[r]]
    assert changed == [], (role, changed, accepted)
    assert not [a for a in accepted if not a.startswith(("UPDATE", "DELETE"))], (role, accepted)


STRUCTURAL = {
    "append_event_past_the_head": None,  # made in the test: a copy of the newest event, one seq further
    "delete_newest_blocks_events": "DELETE FROM audit.event_log WHERE seq > (SELECT first_seq - 1 FROM audit.blocks"
                                   " ORDER BY block_no DESC LIMIT 1)",
    "delete_newest_block_row_only": "DELETE FROM audit.blocks WHERE block_no = (SELECT max(block_no) FROM audit.blocks)",
    "forged_prune_point": "INSERT INTO audit.prune_points (block_no, block_hash, last_seq)"
                          " SELECT block_no, block_hash, last_seq FROM audit.blocks WHERE block_no = 1;"
                          " DELETE FROM audit.event_log WHERE seq <= (SELECT last_seq FROM audit.blocks WHERE block_no = 1)",
    "raise_chain_start": "UPDATE audit.seal_state SET chain_start_seq = chain_start_seq + 1",
    "move_event_between_blocks": "UPDATE audit.event_log SET block_no = block_no + 1 WHERE seq = (SELECT min(seq) FROM audit.event_log)",
    "newest_occurred_at_changed": "UPDATE audit.blocks SET newest_occurred_at = newest_occurred_at - interval '10 years'",
}


@pytest.mark.parametrize("how", list(STRUCTURAL))
def test_v8_structural_tampers_of_the_chain_are_found_or_harmless(kit, how):
    """A superuser with triggers off changes the chain's structure: a sealed-looking event appended past
    the newest block, the newest block's events removed, its row removed, the head pointer lowered, a
    prune point forged with no audit.pruned event, chain_start_seq raised; or changes what is not
    hashed (an event's block_no, a block's newest_occurred_at). Safe: both verifiers agree; they say
    not intact for the first six (each removes or adds events a reader would see, or unverifies some)
    and intact for the last two only if nothing a reader sees changed."""
    for i in range(3):
        kit.writer.execute("SELECT audit.record(%s, payload => %s::jsonb)", [f"t88.s{i}", json.dumps({"i": i})])
        assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    if how == "append_event_past_the_head":
        cols = [r[0] for r in kit.db.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'audit.event_log'::regclass"
                                             " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
        sel = ", ".join({"seq": "seq + 1", "id": "gen_random_uuid()", "kind": "'t88.appended'", "block_no": "NULL"}.get(c, c)
                        for c in cols)
        stmt = (f"INSERT INTO audit.event_log ({', '.join(cols)}) SELECT {sel} FROM audit.event_log"
                " WHERE seq = (SELECT max(seq) FROM audit.event_log)")
    else:
        stmt = STRUCTURAL[how]
    err = None
    try:
        tamper(kit.db, stmt)
    except psycopg.Error as e:
        err = f"{e.sqlstate}: {str(e).splitlines()[0][:150]}"
    if err is not None:
        return  # the tamper itself could not be made: nothing to find
    sql_ok, py_ok = both_verifiers(kit.db)
    assert sql_ok == py_ok, (how, sql_ok, py_ok)
    if how in ("move_event_between_blocks", "newest_occurred_at_changed"):
        return
    assert (sql_ok, py_ok) == (False, False), (how, sql_ok, py_ok)


@pytest.mark.parametrize("then", ["change_uncovered_event", "delete_uncovered_block_and_events"])
def test_v9_a_lowered_chain_head_never_hides_a_change_of_the_events_it_uncovers(kit, then):
    """A superuser (triggers off) lowers seal_state.last_block_no by one, which leaves the newest
    block's events sealed and listed but outside the chain the verifiers walk, and then changes one of
    those events (or removes that block and its events, leaving seal_state's other head fields, its
    last seq and hash, as they were: status sees the mismatch). Safe: both verifiers say not intact."""
    for i in range(3):
        kit.writer.execute("SELECT audit.record(%s, actor_id => 'alice', payload => %s::jsonb)",
                           [f"t88.h{i}", json.dumps({"amount": 100 + i})])
        assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    tamper(kit.db, "UPDATE audit.seal_state SET last_block_no = last_block_no - 1")
    if then == "change_uncovered_event":
        tamper(kit.db, "UPDATE audit.event_log SET payload = '{\"amount\": 1}', actor_id = 'mallory' WHERE kind = 't88.h2'")
    elif then == "delete_uncovered_block_and_events":
        tamper(kit.db, "DELETE FROM audit.event_log WHERE kind = 't88.h2';"
                       " DELETE FROM audit.blocks WHERE block_no = (SELECT max(block_no) FROM audit.blocks)")
    seen = kit.reader.execute("SELECT actor_id, payload::text, seq IS NOT NULL FROM audit.events WHERE kind = 't88.h2'").fetchall()
    sql_ok, py_ok = both_verifiers(kit.db)
    problems = [p for p in problems_of(kit.db) if "block" in p or "chain" in p or "seal" in p]
    assert (sql_ok, py_ok) == (False, False), (then, sql_ok, py_ok, seen, problems)


@pytest.mark.parametrize("case", ["idempotency", "rate_limited", "bypass", "context", "append_only_translated",
                                  "history_unknown_kind"])
def test_l3_python_classes_by_sqlstate_in_german(kit, case):
    """The writer's and maintainer's sessions speak German; the package's calls and translated() raise
    the package's classes by SQLSTATE: IdempotencyConflict, RateLimited (with retry_after_ms parsed
    from the German DETAIL or not at all, never wrong), RateLimitBypassRefused, InvalidContext,
    and a guard's refusal through translated()."""
    from pgaudit_py import errors, rate_limit, translated

    dbname = kit.db.info.dbname
    for r in ("app_writer", "app_maintainer"):
        kit.db.execute(f"ALTER ROLE {r} IN DATABASE {dbname} SET lc_messages = 'de_DE.UTF-8'")
    try:
        w = kit.conn("app_writer")
        assert w.execute("SHOW lc_messages").fetchone()[0].startswith("de")
        if case == "idempotency":
            record(w, "t88.l3", idempotency_key="k", payload={"a": 1})
            with pytest.raises(errors.IdempotencyConflict):
                record(w, "t88.l3", idempotency_key="k", payload={"a": 2})
        elif case == "rate_limited":
            kit.maint.execute("SELECT audit.set_operation_limit('t88.l3', 1)")
            rate_limit(w, "t88.l3", "k")
            with pytest.raises(errors.RateLimited) as ei:
                rate_limit(w, "t88.l3", "k")
            assert ei.value.retry_after_ms is None or 0 < ei.value.retry_after_ms <= 120_000, ei.value.retry_after_ms
        elif case == "bypass":
            w.execute("SET pgaudit_py.rate_limit_bypass = 'on'")
            kit.owner.execute("CREATE TABLE public.t88_rl (v int PRIMARY KEY); GRANT ALL ON public.t88_rl TO app_writer")
            enable_tracking(kit.maint, "public.t88_rl")
            kit.maint.execute("SELECT audit.enable_rate_limit('public.t88_rl')")
            with pytest.raises(errors.RateLimitBypassRefused), translated():
                w.execute("INSERT INTO public.t88_rl VALUES (1)")
        elif case == "context":
            with pytest.raises(errors.InvalidContext), audit_context(w, client_addr="10.0.0.0/8"):
                record(w, "t88.l3")
        elif case == "append_only_translated":
            with pytest.raises((errors.PgAuditError, psycopg.errors.InsufficientPrivilege)), translated():
                w.execute("DELETE FROM audit.event_intake")
        elif case == "history_unknown_kind":
            with pytest.raises(errors.InvalidKind):
                record(w, "audit.forged")
        assert kit.db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'audit.forged%'").fetchone()[0] == 0
    finally:
        for r in ("app_writer", "app_maintainer"):
            kit.db.execute(f"ALTER ROLE {r} IN DATABASE {dbname} RESET lc_messages")


@pytest.mark.parametrize("case", ["dotted_table_name", "quoted_upper_name", "kind_prefix_audit", "kind_prefix_secret",
                                  "kind_prefix_other_table", "kind_prefix_nested_in_other", "kind_prefix_tenant_secret"])
def test_d11_record_cannot_pass_for_a_capture_through_names_or_prefixes(kit, case):
    """A tracked table whose name holds a dot or capitals, or a kind_prefix chosen to collide with the
    package's kinds or another table's. Safe: the colliding kind_prefix is refused (PA001/PA005), and
    record() of a kind under the table's prefix is refused (PA001); row_history reads captures only."""
    o = kit.owner
    if case == "dotted_table_name":
        o.execute('CREATE TABLE public."t88.acct" (id int PRIMARY KEY, v int); GRANT ALL ON public."t88.acct" TO app_writer')
        enable_tracking(kit.maint, 'public."t88.acct"')
        prefix = kit.db.execute("SELECT kind_prefix FROM audit.tracked_tables WHERE relid = 'public.\"t88.acct\"'::regclass").fetchone()[0]
        kit.writer.execute('INSERT INTO public."t88.acct" VALUES (1, 0)')
        err = sqlstate_of(kit.writer, "SELECT audit.record(%s, target_id => '1')", [prefix + ".delete"])
        hist = [r[0] for r in kit.reader.execute("SELECT kind FROM audit.row_history('public.\"t88.acct\"'::regclass, '1')")]
        assert err == "PA001" and hist == [prefix + ".insert"], (prefix, err, hist)
        return
    if case == "quoted_upper_name":
        o.execute('CREATE TABLE public."T88_Up" (id int PRIMARY KEY, v int); GRANT ALL ON public."T88_Up" TO app_writer')
        enable_tracking(kit.maint, 'public."T88_Up"')
        prefix = kit.db.execute("SELECT kind_prefix FROM audit.tracked_tables WHERE relid = 'public.\"T88_Up\"'::regclass").fetchone()[0]
        err = sqlstate_of(kit.writer, "SELECT audit.record(%s)", [prefix + ".update"])
        assert err == "PA001", (prefix, err)
        return
    track_new_table(kit, "t88_other", "id int PRIMARY KEY, v int")
    o.execute("CREATE TABLE public.t88_new (id int PRIMARY KEY, v int); GRANT ALL ON public.t88_new TO app_writer")
    prefix = {"kind_prefix_audit": "audit", "kind_prefix_secret": "secret", "kind_prefix_other_table": "public.t88_other",
              "kind_prefix_nested_in_other": "public.t88_other.x", "kind_prefix_tenant_secret": "tenant.secret"}[case]
    err = try_enable(kit, "t88_new", kind_prefix=prefix)
    if err is None:
        kit.writer.execute("INSERT INTO public.t88_new VALUES (1, 0)")
        kinds = [r[0] for r in kit.db.execute("SELECT kind FROM audit.events WHERE origin = 'capture'"
                                              " AND NOT starts_with(kind, 'public.t88_other.insert')")]
        pytest.fail(f"{case}: kind_prefix {prefix!r} accepted; captured kinds {kinds}")
    assert err[:5] in ("PA001", "PA005", "PA008"), err


def test_r14_an_idempotency_key_belongs_to_the_events_own_tenant_not_the_sessions(kit):
    """The session's context names tenant b while record() names tenant a: the event is a's, and so is
    its key. Safe: a retry naming a through the context alone returns that event; tenant b's own
    first use of the key (other content) is a new event of b, no conflict."""
    w = kit.writer

    def rec(ctx_tenant, arg_tenant, payload):
        with w.transaction():
            w.execute("SELECT set_config('pgaudit_py.tenant_id', %s, true)", [ctx_tenant])
            return w.execute("SELECT (r).id, (r).tenant_id FROM (SELECT audit.record(kind => 't88.r14', tenant_id => %s,"
                             " idempotency_key => 'k', payload => %s::jsonb) r) x", [arg_tenant, payload]).fetchone()

    first = rec("b", "a", '{"x": 1}')
    assert first[1] == "a", first
    try:
        retry = rec("a", None, '{"x": 1}')
    except psycopg.Error as e:
        retry = ("error", e.sqlstate)
    try:
        other = rec("b", None, '{"x": 2}')
    except psycopg.Error as e:
        other = ("error", e.sqlstate)
    n = kit.db.execute("SELECT tenant_id, payload->>'x' FROM audit.events WHERE kind = 't88.r14' ORDER BY intake_id").fetchall()
    assert retry == first, (first, retry, n)
    assert other[0] != "error" and other[1] == "b" and other[0] != first[0], (first, other, n)


EVERY_ESCAPE = "".join(chr(c) for c in range(1, 0x20)) + "\x7f" + "".join(chr(c) for c in range(0x80, 0xa0)) + \
    "\ufffe\uffff\ud7ff\ue000\U0010ffff\U000e0001\u00ad\u061c\u200e\u2066\u2069\"\\/'"


@pytest.mark.parametrize("field", ["kind_free", "tenant_id", "actor_type", "actor_id", "target_type", "target_id",
                                   "correlation_id", "idempotency_key", "payload_key", "payload_value", "application_name"])
def test_v10_every_control_and_odd_character_in_each_field_seals_and_both_verifiers_agree(kit, field):
    """Each C0 and C1 control, DEL, non-characters, the last code point, tag characters, soft hyphen,
    bidi marks, quote, backslash and slash: one record per character in one field (and all together).
    Safe: each taken or refused with a SQLSTATE (never internal); sealed; both verifiers intact."""
    w = kit.writer
    texts = list(EVERY_ESCAPE) + [EVERY_ESCAPE, "a" + EVERY_ESCAPE * 3]
    for t in texts:
        args = {"kind": "t88.esc", "payload": "{}"}
        if field in ("payload_key", "payload_value"):
            args["payload"] = json.dumps({t: 1} if field == "payload_key" else {"k": t})
        elif field == "application_name":
            try_write(w, "SELECT set_config('application_name', %s, false)", [t])
        elif field != "kind_free":
            args[field] = t + ("" if field != "idempotency_key" else str(len(texts)) + str(ord(t[0])) + str(len(t)))
        names = ", ".join(f"{k} => %s" + ("::jsonb" if k == "payload" else "") for k in args)
        err = try_write(w, f"SELECT audit.record({names})", list(args.values()))
        assert err is None or not err.startswith("XX"), (field, repr(t), err)
    assert seal_all(kit.db) is None
    assert quarantine_empty(kit.db)
    sql_ok, py_ok = both_verifiers(kit.db)
    assert (sql_ok, py_ok) == (True, True), (field, sql_ok, py_ok, verify_chain(kit.db).problem)


def _py_payloads():
    from decimal import Decimal
    return {
        "float_nan": {"n": float("nan")},
        "float_inf": {"n": float("-inf")},
        "decimal_nan": {"n": Decimal("NaN")},
        "decimal_infinity": {"n": Decimal("Infinity")},
        "int_and_str_key": {1: "grant", "1": "revoke"},
        "bool_and_str_key": {True: "grant", "true": "revoke"},
        "float_and_str_key": {1.5: "grant", "1.5": "revoke"},
        "none_and_str_key": {None: "grant", "null": "revoke"},
        "nul_in_string": {"s": "a\x00b"},
        "nul_in_key": {"a\x00": 1},
        "lone_surrogate_str": {"s": "\ud800"},
    }


@pytest.mark.parametrize("name", list(_py_payloads()))
@pytest.mark.parametrize("api", ["sync", "async", "sync_best_effort"])
def test_r15_a_python_payload_that_json_cannot_hold_whole_is_refused_as_invalid_input(kit, db, name, api):
    """record(payload=...) from Python with NaN or infinities, or keys that json.dumps writes alike (1
    and "1", True and "true"), so that jsonb would keep only the last. docs/python.md: bad input is an
    InvalidInput, refused with nothing written. Safe: InvalidInput (or the package's InvalidPayload),
    no event; never an event that silently lost one of the two values."""
    from pgaudit_py import aio, errors

    payload = _py_payloads()[name]
    before = n_all(kit.db)
    raised = None
    try:
        if api == "sync":
            record(kit.writer, "t88.py", payload=payload)
        elif api == "sync_best_effort":  # bad input still raises (docs/python.md); never silently dropped
            record(kit.writer, "t88.py", payload=payload, best_effort=True)
        else:
            i = db.info

            async def go():
                async with await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                                 user="app_writer", autocommit=True) as c:
                    await aio.record(c, "t88.py", payload=payload)
            asyncio.run(go())
    except Exception as e:  # noqa: BLE001
        raised = e
    stored = kit.db.execute("SELECT payload::text FROM audit.events WHERE kind = 't88.py'").fetchall()
    assert isinstance(raised, errors.InvalidInput), (name, api, type(raised).__name__, str(raised)[:200], stored)
    assert n_all(kit.db) == before, stored


@pytest.mark.parametrize("api", ["sync", "async"])
@pytest.mark.parametrize("field", ["kind", "target_id", "actor_id", "tenant_id", "correlation_id", "idempotency_key"])
def test_r16_a_nul_in_a_text_argument_is_never_silently_dropped_by_best_effort(kit, db, field, api):
    """record(..., best_effort=True) with a NUL character in a text argument (user input that reached
    it). docs/python.md: bad input still raises, only storage failures are logged and swallowed.
    Safe: an exception (InvalidInput, or at least not silence); never None with no event."""
    from pgaudit_py import aio

    args = {"kind": "t88.nul"}
    args[field] = "x\x00y" if field != "kind" else "t88.nul\x00x"
    kind = args.pop("kind")
    before = n_all(kit.db)
    try:
        if api == "sync":
            got = record(kit.writer, kind, best_effort=True, **args)
        else:
            i = db.info

            async def go():
                async with await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                                 user="app_writer", autocommit=True) as c:
                    return await aio.record(c, kind, best_effort=True, **args)
            got = asyncio.run(go())
        raised = None
    except Exception as e:  # noqa: BLE001
        got, raised = None, e
    assert n_all(kit.db) == before
    assert raised is not None, (field, api, got)
