"""A hundred-and-fourth attacker's trial: the privilege claims of README.md, docs/roles.md,
docs/security.md, docs/secrets.md, docs/rate-limits.md and docs/retention.md, each tried as the role
it is about, in variants earlier trials may not have tried.

Claims tried (sentence by sentence, shortened):
  roles.md      writer: "record, rate_limit" / may not "read, seal, prune, register types, touch the
                tables, bypass rate limits"; reader: SELECT on the listed relations and functions /
                may not "write anything, prune, seal, archive; read secrets"; maintainer: may not
                "rewrite events; act on a table it does not own"; secrets: "SELECT secret_values or
                the wrapped keys directly" refused, "The reader, writer and maintainer may call none
                of these functions"; "Every SECURITY DEFINER function sets search_path = pg_catalog,
                pg_temp ... and has EXECUTE revoked from PUBLIC"; any role may not "have its code (a
                cast, a policy) run with a privileged role's rights".
  security.md   "The Python package's own queries ... qualify every type, function and operator ...
                so a caller's search_path (say public, pg_catalog) cannot make them run a look-alike";
                "remove sealed events, visibly: prune_events (whole blocks, recorded)"; tokens:
                "unknown, expired and revoked tokens get the same 401; a tenant token's tenant is put
                into every query whatever the parameters say".
  secrets.md    "The session holds it in a temporary table of the owner role's, which no code the
                session runs can read"; "No error of the secrets functions repeats a slot, a which, a
                value or a key it was given"; "Every read is an event".
  rate-limits   "The user counted is the one the log records"; "Members of the maintainer role";
                "anyone else who sets it is refused (PA010)"; "An operation limit set this way
                overrides what the application passes"; "the shards together admit no more than the
                limit"; "a write that rolls back gives its slot back"; prepared transactions.
  retention.md  "positive with no part negative"; "Pending events are never pruned"; "Each call that
                removes something records one audit.pruned event ... sealed into the chain".

Classes (test names carry the letter):
  A. each audit role tried at every door its row of roles.md closes (writer, reader, maintainer),
     and the catalogue: SECURITY DEFINER settings, PUBLIC's EXECUTE, the maintainer's removers, the
     audit sequences; the SECURITY DEFINER helpers the maintainer may call, called directly on a
     tree it does not own (limits and tracking for future oids, `_cover_partition`, the others).
  F. a role with CREATE on public (and one that also holds the writer role) plants look-alike
     operators and functions over built-in and package types; the writer, reader, maintainer and a
     superuser run every package call with `search_path = public, pg_catalog`.
  R. rate limits: one logged user in several spellings of its context, several sessions with open
     transactions, savepoints rolled back, bypass spellings, operation limits against the caller's
     own numbers, prepared transactions.
  P. retention: ages that are zero or negative in disguise, pending events, the trace a prune leaves
     and a removal of that trace.
  S. secrets: the held key's temporary table read by the secrets session itself, errors given a key
     or value in every argument's place, reads that must each be an event, the other roles.
  T. HTTP tokens: a tenant token against parameter spellings of another tenant, a revoked or
     expired token right after a success, a listing that must hold neither secret nor hash.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t104_; the kit's roles are dropped afterwards.
"""

from __future__ import annotations

import hashlib
import json
import secrets as random
import time
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from trial_helpers import (
    acct,
    both_verifiers,
    drop_made_under,
    seal_all,
    sqlstate_of,
    table_owner_kit,
    tamper,
)

from pgaudit_py import (
    count_events,
    enable_rate_limit,
    list_events,
    monthly_event_counts,
    preview_prune,
    prune_events,
    rate_limit,
    record,
    row_history,
    seal,
    seal_status,
    set_operation_limit,
    status,
)
from pgaudit_py import secrets as sec
from pgaudit_py.chain import verify_chain
from pgaudit_py.tokens import create_token, list_tokens, revoke_token

P = "t104"
DENIED = "42501"


@pytest.fixture
def kit(db, connect):
    try:
        with table_owner_kit(db, connect, P) as k:
            yield k
    finally:
        with suppress(Exception):
            db.execute("RESET ROLE")
        drop_made_under(db, "t104_")


def refused(conn, statement: str, params=None) -> str | None:
    """The SQLSTATE of the refusal, or None when the statement ran; any open transaction rolled back."""
    try:
        return sqlstate_of(conn, statement, params)
    finally:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with suppress(Exception):
                conn.execute("ROLLBACK")


def events_total(db) -> int:
    return db.execute("SELECT (SELECT count(*) FROM audit.event_intake) + (SELECT count(*) FROM audit.event_log)"
                      ).fetchone()[0]


# ================================ A: each role at its closed doors ================================

WRITER_CLOSED = [
    "SELECT * FROM audit.events LIMIT 1",
    "SELECT * FROM audit.event_log LIMIT 1",
    "SELECT * FROM audit.event_intake LIMIT 1",
    "SELECT * FROM audit.rate_counters LIMIT 1",
    "SELECT * FROM audit.rate_limits LIMIT 1",
    "SELECT * FROM audit.list_events()",
    "SELECT * FROM audit.verify()",
    "SELECT * FROM audit.seal()",
    "SELECT * FROM audit.preview_prune('1 day')",
    "SELECT * FROM audit.prune_events('1 day')",
    "SELECT * FROM audit.register_event_type('t104.kind')",
    "SELECT * FROM audit.set_operation_limit('t104.op', 1000000)",
    "SELECT audit.purge_rate_counters()",
    "SELECT * FROM audit.list_api_tokens()",
    "SELECT audit.read_secret('t1', 's')",
    "SELECT * FROM audit.row_history('pg_class'::regclass, '1')",
    "INSERT INTO audit.event_intake (kind) VALUES ('t104.forged')",
    "UPDATE audit.rate_counters SET count = 0",
    "DELETE FROM audit.rate_counters",
    "TRUNCATE audit.rate_counters",
    "UPDATE audit.rate_limits SET per_user = 10000000",
    "DELETE FROM audit.rate_limits",
]


def test_a1_the_writer_reads_nothing_seals_prunes_registers_and_touches_no_table(kit):
    """Attack: app_writer tries every read, seal, prune, type registration, operation-limit change,
    counter purge and table write roles.md closes to it, in one session after a legitimate record().
    Safe: each refused (42501 or, where a function's argument types differ, 42883), nothing
    written but its own record. roles.md: audit_writer may not "read, seal, prune, register types,
    touch the tables, bypass rate limits"."""
    w = kit.writer
    record(w, "t104.ok")
    before = events_total(kit.db)
    ran = {s: refused(w, s) for s in WRITER_CLOSED}
    allowed = {s: st for s, st in ran.items() if st not in (DENIED, "42883")}
    assert allowed == {}, f"the writer got through: {allowed}"
    assert events_total(kit.db) == before


READER_CLOSED = [
    "SELECT audit.record('t104.r')",
    "SELECT * FROM audit.seal()",
    "CALL audit.seal_backlog()",
    "SELECT * FROM audit.prune_events('1 day')",
    "SELECT * FROM audit.set_operation_limit('t104.op', 1)",
    "SELECT audit.purge_rate_counters()",
    "SELECT * FROM audit.list_api_tokens()",
    "SELECT audit.read_secret('t1', 's')",
    "SELECT * FROM audit.list_secrets()",
    "SELECT audit.hold_master_key('')",
    "SELECT * FROM audit.api_tokens",
    "SELECT * FROM audit.secret_values",
    "SELECT * FROM audit.wrapped_data_keys",
    "SELECT * FROM audit.master_keys",
    "SELECT * FROM audit.rate_counters",
    "SELECT * FROM audit.owner_proofs",
    "INSERT INTO audit.event_intake (kind) VALUES ('t104.forged')",
    "INSERT INTO audit.owner_proofs DEFAULT VALUES",
    "UPDATE audit.archive_settings SET hot_retention = '1 second'",
    "DELETE FROM audit.rate_limits",
    "UPDATE audit.tracked_tables SET kind_prefix = 'x'",
    "DELETE FROM audit.prune_points",
    "UPDATE audit.blocks SET block_hash = block_hash",
    "UPDATE audit.seal_state SET last_seq = last_seq",
    "DELETE FROM audit.quarantine",
    "COPY audit.event_intake FROM STDIN",
]


def test_a2_the_reader_writes_nothing_and_reads_no_secret(kit):
    """Attack: app_reader tries record, seal, seal_backlog, prune, limits, counters, tokens, every
    secrets function and table, and DML on each catalogue it may read. Safe: each refused (42501,
    42883 where a signature differs); nothing written. roles.md: audit_reader may not "write
    anything, prune, seal, archive; read secrets"."""
    r = kit.reader
    record(kit.writer, "t104.ok")
    assert seal_all(kit.maint) is None
    before = events_total(kit.db)
    ran = {s: refused(r, s) for s in READER_CLOSED}
    allowed = {s: st for s, st in ran.items() if st not in (DENIED, "42883")}
    assert allowed == {}, f"the reader got through: {allowed}"
    assert events_total(kit.db) == before
    assert both_verifiers(kit.reader) == (True, True)


MAINT_CLOSED = [
    "UPDATE audit.event_log SET payload = '{}'",
    "DELETE FROM audit.event_log",
    "TRUNCATE audit.event_log",
    "UPDATE audit.event_intake SET payload = '{}'",
    "DELETE FROM audit.event_intake",
    "DELETE FROM audit.blocks",
    "UPDATE audit.blocks SET block_hash = block_hash",
    "INSERT INTO audit.prune_points SELECT * FROM audit.prune_points",
    "DELETE FROM audit.prune_points",
    "UPDATE audit.seal_state SET last_seq = last_seq",
    "DELETE FROM audit.quarantine",
    "UPDATE audit.api_tokens SET revoked_at = NULL",
    "SELECT * FROM audit.api_tokens",
    "SELECT audit.read_secret('t1', 's')",
    "SELECT * FROM audit.list_secrets()",
    "SELECT audit.hold_master_key('')",
    "SELECT * FROM audit.secret_values",
    "ALTER TABLE audit.event_log DISABLE TRIGGER ALL",
    "CREATE TRIGGER t104_trg AFTER INSERT ON audit.event_log FOR EACH STATEMENT EXECUTE FUNCTION pg_catalog.now()",
]


def test_a3_the_maintainer_rewrites_no_event_and_reads_no_secret(kit):
    """Attack: app_maintainer, after sealing and pruning honestly, tries DML and DDL on the log, the
    intake, the blocks, the prune points, the seal state, the tokens' table, and the secrets.
    Safe: each refused; both verifiers still agree. roles.md: audit_maintainer may not "rewrite
    events"; secrets: "The reader, writer and maintainer may call none of these functions"."""
    m = kit.maint
    for i in range(3):
        record(kit.writer, "t104.ok", target_id=str(i))
    assert seal_all(m) is None
    before = kit.db.execute("SELECT count(*), max(seq) FROM audit.event_log").fetchone()
    ran = {s: refused(m, s) for s in MAINT_CLOSED}
    allowed = {s: st for s, st in ran.items() if st is None}
    assert allowed == {}, f"the maintainer got through: {allowed}"
    assert kit.db.execute("SELECT count(*), max(seq) FROM audit.event_log").fetchone() == before
    assert both_verifiers(kit.reader) == (True, True)


def test_a4_the_maintainer_acts_on_no_table_it_does_not_own(kit):
    """Attack: mallory (no audit role, app_maintainer not its member) owns a table; the maintainer
    calls enable_tracking, enable_rate_limit, disable_rate_limit and disable_tracking on it, with
    its name, its oid, and through a view over it. Safe: each refused, no tracking and no limit
    on it. roles.md: audit_maintainer may not "act on a table it does not own"."""
    kit.mallory.execute("CREATE TABLE public.t104_mine (id int PRIMARY KEY, v int);"
                        " CREATE VIEW public.t104_mine_v AS SELECT * FROM public.t104_mine;"
                        " GRANT ALL ON public.t104_mine, public.t104_mine_v TO PUBLIC")
    oid = kit.db.execute("SELECT 'public.t104_mine'::regclass::oid").fetchone()[0]
    m = kit.maint
    calls = ["SELECT audit.enable_tracking('public.t104_mine')",
             f"SELECT audit.enable_tracking({oid}::oid::regclass)",
             "SELECT audit.enable_tracking('public.t104_mine_v')",
             "SELECT audit.enable_rate_limit('public.t104_mine')",
             f"SELECT audit.enable_rate_limit({oid}::oid::regclass, 1, 1, 1)",
             "SELECT audit.disable_rate_limit('public.t104_mine')",
             "SELECT audit.disable_tracking('public.t104_mine')"]
    ran = {c: refused(m, c) for c in calls}
    tracked = kit.db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = %s", [oid]).fetchone()[0]
    limited = kit.db.execute("SELECT count(*) FROM audit.rate_limits WHERE target = %s", [str(oid)]).fetchone()[0]
    assert (tracked, limited) == (0, 0), f"the maintainer acted on mallory's table: {ran}"
    assert all(st is not None for c, st in ran.items() if not c.startswith("SELECT audit.disable")), ran


def test_a5_security_definer_settings_and_no_execute_for_public(db):
    """Attack: the catalogue read as a superuser: any function of the audit and audit_capture
    schemas that PUBLIC may execute (a NULL ACL is PUBLIC's EXECUTE), and any SECURITY DEFINER one
    without `search_path=pg_catalog, pg_temp`. Safe: none of either. roles.md: "Every SECURITY
    DEFINER function sets search_path = pg_catalog, pg_temp ... and has EXECUTE revoked from PUBLIC"."""
    rows = db.execute("""
        SELECT p.oid::regprocedure::text, p.prosecdef, p.proconfig,
               p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0
                                                      AND a.privilege_type = 'EXECUTE') AS public_exec
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('audit', 'audit_capture')""").fetchall()
    assert rows
    public = [r[0] for r in rows if r[3]]
    unpinned = [r[0] for r in rows if r[1] and "search_path=pg_catalog, pg_temp" not in (r[2] or [])]
    assert public == [], f"PUBLIC may execute: {public}"
    assert unpinned == [], f"SECURITY DEFINER without the pinned search_path: {unpinned}"


def test_a6_the_maintainer_may_remove_events_only_through_the_documented_functions(db):
    """Attack: every function the maintainer (or reader, writer, secrets role) may execute whose
    name speaks of removing (prune, delete, drop, truncate, purge, detach, forget, revoke). Safe:
    the maintainer holds only the documented ones, the others none. roles.md: maintainer's
    `prune_events`, `delete_archived`, `drop_restored_batch`, `purge_rate_counters`,
    `revoke_api_token`, `disable_*`; security.md: "remove sealed events, visibly: prune_events ...
    delete_archived"."""
    documented = {"prune_events", "preview_prune", "delete_archived", "drop_restored_batch", "purge_rate_counters",
                  "revoke_api_token", "disable_tracking", "disable_rate_limit", "_refuse_merge",
                  # named in roles.md's list, or running with the caller's rights, or the trigger it attaches
                  "_columns_with_dropped_attributes", "_check_prune_args", "_capture_truncate", "_drop_rate_limit"}
    secrets_ok = {"delete_secret"}
    found = {}
    for role in ("app_maintainer", "app_reader", "app_writer", "app_secrets"):
        found[role] = sorted({r[0] for r in db.execute("""
            SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname IN ('audit', 'audit_capture')
               AND p.proname ~ '(prune|delete|drop|truncate|purge|detach|forget|revoke|remove)'
               AND has_function_privilege(%s, p.oid, 'EXECUTE')""", [role])})
    assert set(found["app_maintainer"]) <= documented, found
    assert set(found["app_reader"]) <= {"preview_prune", "_check_prune_args"}, found
    assert set(found["app_writer"]) == set(), found
    assert set(found["app_secrets"]) <= secrets_ok, found


# ================================ F: look-alikes on the search_path ================================

PLANT = """
CREATE FUNCTION public.t104_spy(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 't104spy %|%', what, current_user; RETURN true; END $$;
CREATE FUNCTION public.t104_texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('text='); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.t104_texteq,
                          COMMUTATOR = OPERATOR(public.=));
CREATE FUNCTION public.t104_textcat(a text, b text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('text||'); RETURN pg_catalog.textcat(a, b); END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = public.t104_textcat);
CREATE FUNCTION public.t104_int8eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('int8='); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.t104_int8eq);
CREATE FUNCTION public.t104_jget(a jsonb, b text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('jsonb->'); RETURN a OPERATOR(pg_catalog.->) b; END $$;
CREATE OPERATOR public.-> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.t104_jget);
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM public.t104_spy('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM public.t104_spy('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION public.current_setting(a text, b boolean) RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM public.t104_spy('current_setting'); RETURN pg_catalog.current_setting(a, b); END $$;
CREATE FUNCTION public.current_setting(a text) RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM public.t104_spy('current_setting1'); RETURN pg_catalog.current_setting(a); END $$;
CREATE FUNCTION public.lower(a text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('lower'); RETURN pg_catalog.lower(a); END $$;
CREATE FUNCTION public.starts_with(a text, b text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('starts_with'); RETURN pg_catalog.starts_with(a, b); END $$;
CREATE FUNCTION public.char_length(a text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('char_length'); RETURN pg_catalog.char_length(a); END $$;
CREATE FUNCTION public.to_jsonb(a anyelement) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM public.t104_spy('to_jsonb'); RETURN pg_catalog.to_jsonb(a); END $$;
CREATE FUNCTION public.sha256(a bytea) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('sha256'); RETURN pg_catalog.sha256(a); END $$;
CREATE FUNCTION public.encode(a bytea, b text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('encode'); RETURN pg_catalog.encode(a, b); END $$;
CREATE FUNCTION public.pg_has_role(a name, b name, c text) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN PERFORM public.t104_spy('pg_has_role'); RETURN pg_catalog.pg_has_role(a, b, c); END $$;
CREATE FUNCTION public.left(a text, b int) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('left'); RETURN pg_catalog.left(a, b); END $$;
CREATE FUNCTION public.replace(a text, b text, c text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM public.t104_spy('replace'); RETURN pg_catalog.replace(a, b, c); END $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC;
"""


def spy_sink(conns) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def keep(n: psycopg.errors.Diagnostic) -> None:
        m = n.message_primary or ""
        if m.startswith("t104spy "):
            what, who = m.removeprefix("t104spy ").split("|", 1)
            seen.append((what, who))

    for c in conns:
        c.add_notice_handler(keep)
    return seen


def test_f1_look_alikes_in_public_never_run_inside_a_package_call_of_any_role(kit, connect):
    """Attack: mallory (CREATE on public) plants public `=`(text,text), `||`, `=`(bigint,bigint),
    `->`(jsonb,text), now(), clock_timestamp(), current_setting(), lower(), starts_with(),
    char_length(), to_jsonb(), sha256(), encode(), pg_has_role(), left(), replace(). The writer,
    reader, maintainer and a superuser each set `search_path = public, pg_catalog` and run their
    package calls (record, rate_limit, a limited tracked write; the events view, list/count/monthly,
    row_history, verify, preview_prune, seal_status; seal, prune, limits, tokens; status).
    Safe: the spy never runs as any of them. security.md: "a caller's search_path (say public,
    pg_catalog) cannot make them run a look-alike that another role, such as a table owner with
    CREATE on public, put first on it"; roles.md: no role may "have its code ... run with a
    privileged role's rights"."""
    acct(kit)
    enable_rate_limit(kit.maint, "public.t104_acct", per_user_per_minute=1000, per_tenant_per_minute=1000)
    kit.mallory.execute(PLANT)
    su = connect()
    w, r, m = kit.writer, kit.reader, kit.maint
    seen = spy_sink([w, r, m, su])
    for c in (w, r, m, su):
        c.execute("SET search_path = public, pg_catalog")
    try:
        with suppress(psycopg.Error):
            w.execute("SET pgaudit_py.actor_id = 'alice'")
        record(w, "t104.ok", tenant_id="t1", target_id="x", payload={"a": 1})
        rate_limit(w, "t104.op", "k", 100)
        w.execute("UPDATE public.t104_acct SET v = v + 1 WHERE id = 1")
        r.execute("SELECT * FROM audit.events ORDER BY intake_id DESC LIMIT 5").fetchall()
        list_events(r, kind_prefix="t104.")
        count_events(r, by_kind_prefix=["t104."])
        monthly_event_counts(r)
        row_history(r, "public.t104_acct", "1")
        seal(m)
        r.execute("SELECT * FROM audit.verify()").fetchall()
        verify_chain(r)
        preview_prune(r, "1 day")
        seal_status(r)
        r.execute("SELECT * FROM audit.install_status()").fetchall()
        r.execute("SELECT * FROM audit.authenticate_api_token(%s)", [b"\0" * 32]).fetchall()
        prune_events(m, "36500 days")
        set_operation_limit(m, "t104.op", 5)
        create_token(m, "t104tok", "reader", tenant_id="t1")
        list_tokens(m)
        m.execute("SELECT audit.purge_rate_counters()")
        status(su)
    finally:
        for c in (w, r, m, su):
            with suppress(Exception):
                c.execute("ROLLBACK")
            with suppress(Exception):
                c.execute("RESET search_path")
    ran_as = sorted({(what, who) for what, who in seen if who != "t104_mallory"})
    mine = spy_sink([kit.mallory])
    kit.mallory.execute("SET search_path = public, pg_catalog")
    kit.mallory.execute("SELECT now(), 'a'::text = 'b'::text, lower('X')")
    assert mine, "the look-alikes were not in force (the attack tried nothing)"
    assert ran_as == [], f"mallory's look-alikes ran inside package calls as: {ran_as}"


def test_f2_a_writer_with_create_plants_operators_over_package_types(kit, db, connect):
    """Attack: t104_wc holds audit_writer and CREATE on public: it makes a domain over
    audit.rate_limits, an `=` and a cast-like function over audit.rate_limits and audit.events,
    and a function named like an internal helper (`public._context(text)`) in public; then, with
    `search_path = public, pg_catalog`, records and writes a limited table. Safe: the domain and
    operators over package types are refused, or never run; and no spy runs as another role.
    roles.md: any role may not "have its code (a cast, a policy) run with a privileged role's rights"."""
    db.execute("CREATE ROLE t104_wc LOGIN; GRANT audit_writer TO t104_wc; GRANT CREATE ON SCHEMA public TO t104_wc")
    acct(kit)
    kit.owner.execute("GRANT ALL ON public.t104_acct TO t104_wc")
    enable_rate_limit(kit.maint, "public.t104_acct", per_user_per_minute=1000, per_tenant_per_minute=1000)
    wc = connect("t104_wc")
    wc.execute(PLANT)
    made = {}
    for name, stmt in {
        "domain": "CREATE DOMAIN public.t104_rl AS audit.rate_limits",
        "op_rl": """CREATE FUNCTION public.t104_rleq(a audit.rate_limits, b audit.rate_limits) RETURNS boolean
                    LANGUAGE plpgsql AS $$ BEGIN PERFORM public.t104_spy('rl='); RETURN true; END $$;
                    CREATE OPERATOR public.= (LEFTARG = audit.rate_limits, RIGHTARG = audit.rate_limits,
                                              FUNCTION = public.t104_rleq)""",
        "ctx": """CREATE FUNCTION public._context(a text) RETURNS text LANGUAGE plpgsql AS $$
                  BEGIN PERFORM public.t104_spy('_context'); RETURN 'mallory'; END $$""",
        "isnull": """CREATE FUNCTION public.t104_evnull(a audit.events) RETURNS boolean LANGUAGE plpgsql AS $$
                     BEGIN PERFORM public.t104_spy('events'); RETURN true; END $$""",
    }.items():
        made[name] = refused(wc, stmt)
    seen = spy_sink([wc, kit.maint, kit.reader, db])
    wc.execute("SET search_path = public, pg_catalog")
    try:
        record(wc, "t104.wc", tenant_id="t1")
        wc.execute("UPDATE public.t104_acct SET v = v + 1 WHERE id = 1")
        rate_limit(wc, "t104.op", "k", 100)
    finally:
        with suppress(Exception):
            wc.execute("ROLLBACK")
    assert seal_all(kit.maint) is None
    list_events(kit.reader, kind_prefix="t104.")
    status(db)
    ran_as = sorted({(what, who) for what, who in seen if who != "t104_wc"})
    ran_as_wc = sorted({what for what, who in seen if who == "t104_wc"})
    actors = [r[0] for r in db.execute("SELECT DISTINCT actor_id FROM audit.events WHERE db_role = 't104_wc'")]
    assert "mallory" not in actors, f"a planted _context named the actor: {actors}"
    assert ran_as == [], f"the writer's look-alikes ran as: {ran_as}"
    assert ran_as_wc == [], f"the package ran the writer's look-alikes inside its own calls: {ran_as_wc} ({made})"


# ================================ R: rate limits ================================

def limited(kit, per_user: int = 3, per_tenant: int | None = 1000) -> None:
    acct(kit)
    enable_rate_limit(kit.maint, "public.t104_acct", per_user_per_minute=per_user,
                      per_tenant_per_minute=per_tenant, window_seconds=60)


def per_logged_user(db) -> dict[tuple, int]:
    rows = db.execute("""SELECT tenant_id, actor_type, actor_id, db_role, count(*) FROM audit.events
                          WHERE kind = 'public.t104_acct.update' GROUP BY 1, 2, 3, 4""").fetchall()
    return {tuple(r[:4]): r[4] for r in rows}


CONTEXTS = [
    {},
    {"actor_type": "db_role"},
    {"actor_type": "db_role", "actor_id": "app_writer"},
    {"actor_id": "app_writer"},
    {"actor_type": "user", "actor_id": "alice"},
    {"actor_id": "alice"},
    {"actor_id": "alice", "actor_type": ""},
    {"actor_id": "alice", "tenant_id": ""},
    {"actor_type": "", "actor_id": ""},
]


def test_r1_one_logged_user_in_many_spellings_of_its_context_gets_one_allowance(kit):
    """Attack: the writer writes a per-user-limited table (3 a minute) five times under each of
    several spellings of one user's context: none; type db_role alone; type db_role with its own
    role's name; its role's name as an id; `alice` with type `user` named or not, or with an empty
    type or tenant; empty strings for both. Safe: however the context was spelled, no user the log
    records (tenant, actor type, actor id, db_role) got more than 3 writes in. rate-limits.md: "The
    user counted is the one the log records"."""
    limited(kit, per_user=3)
    w = kit.writer
    for ctx in CONTEXTS:
        for _ in range(5):
            try:
                w.execute("BEGIN")
                for k, v in ctx.items():
                    w.execute("SELECT set_config(%s, %s, true)", [f"pgaudit_py.{k}", v])
                w.execute("UPDATE public.t104_acct SET v = v + 1 WHERE id = 1")
                w.execute("COMMIT")
            except psycopg.Error as e:
                assert e.sqlstate == "PA009", e
                w.execute("ROLLBACK")
    counts = per_logged_user(kit.db)
    over = {k: n for k, n in counts.items() if n > 3}
    assert over == {}, f"users the log records got more than their allowance: {over}"


def test_r2_sessions_with_open_transactions_and_savepoints_admit_no_more_than_the_limit(kit, connect):
    """Attack: five writer sessions each open a transaction and write as `alice` (limit 3); two
    more write inside a savepoint they roll back and then write again; all commit. Then one
    session writes in a loop of SAVEPOINT / write / RELEASE. Safe: `alice` committed at most 3
    writes in all. rate-limits.md: "under its lock a shard's count is exact, so the shards together
    admit no more than the limit"; "a write that rolls back gives its slot back"."""
    limited(kit, per_user=3)
    sessions = [connect("app_writer") for _ in range(7)]
    opened = []
    try:
        for i, s in enumerate(sessions):
            s.execute("BEGIN")
            opened.append(s)
            s.execute("SELECT set_config('pgaudit_py.actor_id', 'alice', true)")
            try:
                if i >= 5:
                    s.execute("SAVEPOINT a")
                    s.execute("UPDATE public.t104_acct SET v = v + 1 WHERE id = 2")
                    s.execute("ROLLBACK TO SAVEPOINT a")
                s.execute("UPDATE public.t104_acct SET v = v + 1 WHERE id = 1")
            except psycopg.Error as e:
                assert e.sqlstate == "PA009", e
                s.execute("ROLLBACK")
                opened.remove(s)
        for s in list(opened):
            s.execute("COMMIT")
            opened.remove(s)
        s = sessions[0]
        s.execute("BEGIN")
        opened.append(s)
        s.execute("SELECT set_config('pgaudit_py.actor_id', 'alice', true)")
        for _ in range(6):
            s.execute("SAVEPOINT b")
            try:
                s.execute("UPDATE public.t104_acct SET v = v + 1 WHERE id = 1")
                s.execute("RELEASE SAVEPOINT b")
            except psycopg.Error as e:
                assert e.sqlstate == "PA009", e
                s.execute("ROLLBACK TO SAVEPOINT b")
        s.execute("COMMIT")
        opened.remove(s)
    finally:
        for s in opened:
            with suppress(Exception):
                s.execute("ROLLBACK")
    alice = sum(n for (t, at, aid, role), n in per_logged_user(kit.db).items() if aid == "alice")
    assert alice <= 3, f"alice committed {alice} writes against a limit of 3"


@pytest.mark.parametrize("value", ["on", "ON", "true", "1", "yes", " on", "of", "0", "t"])
def test_r3_every_spelling_of_the_bypass_setting_is_refused_to_the_writer(kit, value):
    """Attack: a writer at its limit (1) sets pgaudit_py.rate_limit_bypass to one spelling, per
    session (SET) and per transaction, and writes again; also calls rate_limit() likewise. Safe:
    refused (PA010, or PA009 as counted) and never admitted. rate-limits.md: "anyone else who sets
    it is refused (PA010)"; roles.md: the writer may not "bypass rate limits"."""
    limited(kit, per_user=1)
    w = kit.writer
    w.execute("UPDATE public.t104_acct SET v = v + 1 WHERE id = 1")
    rate_limit(w, "t104.byp", "k", 1)
    outcomes = []
    try:
        w.execute("SELECT set_config('pgaudit_py.rate_limit_bypass', %s, false)", [value])
        outcomes.append(refused(w, "UPDATE public.t104_acct SET v = v + 1 WHERE id = 1"))
        outcomes.append(refused(w, "SELECT audit.rate_limit('t104.byp', 'k', 1)"))
    finally:
        w.execute("RESET pgaudit_py.rate_limit_bypass")
    assert all(o in ("PA010", "PA009") for o in outcomes), f"bypass {value!r} admitted: {outcomes}"


def test_r4_an_operation_limit_overrides_every_number_the_writer_passes(kit):
    """Attack: the maintainer sets `t104.login` to 2 a minute; the writer calls rate_limit for one
    key with per_minute 10,000,000 and window 1, 86400, and the default, three times each. Safe:
    only 2 calls are admitted for the key, whatever numbers were passed. rate-limits.md: "An
    operation limit set this way overrides what the application passes"."""
    set_operation_limit(kit.maint, "t104.login", 2)
    admitted = 0
    for per, window in [(10_000_000, 1), (10_000_000, 86400), (60, 60)] * 3:
        st = refused(kit.writer, "SELECT audit.rate_limit('t104.login', '10.0.0.1', %s, %s)", [per, window])
        assert st in (None, "PA009"), st
        admitted += st is None
    assert admitted <= 2, f"{admitted} calls admitted against an operation limit of 2"


def test_r5_a_prepared_transaction_holds_no_slot_past_its_limit(kit, db, connect):
    """Attack: the writer takes its only slot (limit 1) in a transaction it PREPAREs, then writes
    again from another session, then commits the prepared one. Safe: the server refuses PREPARE
    TRANSACTION (max_prepared_transactions = 0, asserted), or the user still has at most 1 write
    committed. rate-limits.md: "`max_prepared_transactions = 0`, the default, closes it"."""
    limited(kit, per_user=1)
    maxp = int(db.execute("SHOW max_prepared_transactions").fetchone()[0])
    w = kit.writer
    w.execute("BEGIN")
    try:
        w.execute("SELECT set_config('pgaudit_py.actor_id', 'bob', true)")
        w.execute("UPDATE public.t104_acct SET v = v + 1 WHERE id = 1")
        st = refused(w, "PREPARE TRANSACTION 't104_gx'")
    finally:
        with suppress(Exception):
            w.execute("ROLLBACK")
    if maxp == 0:
        assert st == "55000", f"PREPARE TRANSACTION under max_prepared_transactions = 0 gave {st}"
        return
    try:
        other = connect("app_writer")
        other.execute("BEGIN")
        other.execute("SELECT set_config('pgaudit_py.actor_id', 'bob', true)")
        refused(other, "UPDATE public.t104_acct SET v = v + 1 WHERE id = 1")
        with suppress(Exception):
            other.execute("COMMIT")
    finally:
        with suppress(Exception):
            db.execute("COMMIT PREPARED 't104_gx'")
    bob = sum(n for k, n in per_logged_user(db).items() if k[2] == "bob")
    assert bob <= 1


# ================================ P: retention ================================

def sealed_events(kit, n: int, kind: str = "t104.old") -> None:
    for i in range(n):
        record(kit.writer, kind, target_id=str(i))
    assert seal_all(kit.maint) is None


@pytest.mark.parametrize("age", ["0", "-1 day", "1 day -24 hours", "1 mon -30 days", "1 mon -1 day", "P-1D",
                                 "-0.000001 seconds", "1 year -12 mons", "@ 1 day ago", "0 years 0 mons",
                                 "36601 days", "1 day -86400 seconds", "00:00:00"])
def test_p1_ages_that_are_zero_negative_or_too_far_in_disguise_prune_nothing(kit, age):
    """Attack: the maintainer prunes with an age that is zero, negative in one part, or compares as
    zero (`1 day -24 hours`, `1 mon -30 days`), as ISO or `ago`, or past 36600 days, in SQL and
    through the Python wrapper. Safe: refused (PA005 or the wrapper's refusal), nothing removed,
    no `audit.pruned`. retention.md: "`older_than` is an age, positive with no part negative and
    reaching at most 36600 days back"."""
    sealed_events(kit, 4)
    time.sleep(0.02)
    before = kit.db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    st = refused(kit.maint, "SELECT * FROM audit.prune_events(%s::interval, 1000)", [age])
    with suppress(Exception):
        prune_events(kit.maint, age)
    with suppress(Exception):
        kit.maint.execute("ROLLBACK")
    after = kit.db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    assert after == before and st is not None, f"prune with {age!r} ran ({st}): {before} -> {after}"
    assert kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.pruned'").fetchone()[0] == 0


def test_p2_pending_events_are_never_pruned_and_a_prune_leaves_its_trace(kit):
    """Attack: the maintainer seals some events, records more without sealing, waits, then prunes with
    the smallest age (1 microsecond), repeatedly; in a savepoint rolled back too. Safe: every
    pending event is still there; each call that removed something left one `audit.pruned`, with
    the maintainer as actor, sealed into a chain both verifiers accept. retention.md: "Pending
    events are never pruned"; "Each call that removes something records one audit.pruned event"."""
    sealed_events(kit, 5)
    for i in range(3):
        record(kit.writer, "t104.pending", target_id=str(i))
    time.sleep(0.05)
    m = kit.maint
    m.execute("BEGIN")
    m.execute("SAVEPOINT s")
    m.execute("SELECT * FROM audit.prune_events('1 microsecond', 100000)")
    m.execute("ROLLBACK TO SAVEPOINT s")
    m.execute("COMMIT")
    removed_calls = 0
    for _ in range(5):
        res = prune_events(m, timedelta(microseconds=1), 100000)
        removed_calls += res.deleted > 0
    pending = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 't104.pending'").fetchone()[0]
    assert pending == 3
    pruned = kit.db.execute("SELECT actor_id, db_role FROM audit.events WHERE kind = 'audit.pruned'").fetchall()
    assert removed_calls >= 1 and len(pruned) == removed_calls, (removed_calls, pruned)
    assert all(r[1] == "app_maintainer" for r in pruned), pruned
    assert seal_all(m) is None
    assert both_verifiers(kit.reader) == (True, True)


def test_p3_removing_the_pruned_trace_or_one_more_event_is_caught(kit):
    """Attack: after an honest prune, sealed, a superuser (replica mode) deletes the sealed
    `audit.pruned` event; separately, one retained event. Safe: both verifiers fail each time.
    retention.md: "sealed into the chain and so signed by the next checkpoint"; security.md:
    "change or delete a sealed event undetected: no"."""
    sealed_events(kit, 5)
    time.sleep(0.05)
    record(kit.writer, "t104.later")
    prune_events(kit.maint, timedelta(microseconds=1), 100000)
    record(kit.writer, "t104.after")
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    tamper(kit.db, "DELETE FROM audit.event_log WHERE kind = 'audit.pruned'")
    assert both_verifiers(kit.reader) == (False, False)


# ================================ S: secrets ================================

def client_key_setup(conn: psycopg.Connection, key: str) -> None:
    with sec.use_master_key(conn, None, new_key=key):
        sec.add_master_key(conn)
    sec._set(conn, "master_key", key)


@pytest.fixture
def vault(connect):
    key = random.token_hex(32)
    app = connect("app_secrets")
    client_key_setup(app, key)
    sec.declare_secret(app, "t104.slot", "a slot")
    sec.put_secret(app, "t1", "t104.slot", "sk_live_t104_SECRET")
    return app, key


def test_s1_the_secrets_session_cannot_read_the_key_it_holds(vault, db):
    """Attack: app_secrets holds the master key, then, in the same session, reads the owner's
    temporary table that holds it: SELECT, TABLE, COPY TO STDOUT, through a view and a SQL function
    of its own over it, row_to_json of it, pg_stats, and the internal `_session_keys()` /
    `_master_key(1)`. Safe: every way is refused and no output holds the key. secrets.md: "The
    session holds it in a temporary table of the owner role's, which no code the session runs can
    read"."""
    app, key = vault
    raw = bytes.fromhex(key)
    got = []
    for stmt in ["SELECT * FROM pg_temp.pgaudit_py_master_keys",
                 "TABLE pg_temp.pgaudit_py_master_keys",
                 "SELECT row_to_json(h)::text FROM pg_temp.pgaudit_py_master_keys h",
                 "CREATE TEMP VIEW t104_v AS SELECT * FROM pg_temp.pgaudit_py_master_keys",
                 "SELECT * FROM pg_stats WHERE tablename = 'pgaudit_py_master_keys'",
                 "SELECT audit._session_keys()",
                 "SELECT audit._master_key(1)",
                 "ANALYZE pg_temp.pgaudit_py_master_keys",
                 "CREATE INDEX ON pg_temp.pgaudit_py_master_keys (key)",
                 "ALTER TABLE pg_temp.pgaudit_py_master_keys OWNER TO app_secrets",
                 "GRANT SELECT ON pg_temp.pgaudit_py_master_keys TO app_secrets"]:
        try:
            rows = app.execute(stmt).fetchall() if stmt.startswith(("SELECT", "TABLE")) else app.execute(stmt)
            got.append((stmt, rows))
        except psycopg.Error:
            with suppress(Exception):
                app.execute("ROLLBACK")
    try:
        with app.cursor().copy("COPY pg_temp.pgaudit_py_master_keys TO STDOUT") as cp:
            got.append(("copy", b"".join(bytes(b) for b in cp)))
    except psycopg.Error:
        pass
    leaked = [g for g in got if key in repr(g) or raw in repr(g).encode("latin-1", "replace")
              or key in str(g[1]).lower() or (isinstance(g[1], list) and any(raw in repr(r).encode() for r in g[1]))]
    readable = [g[0] for g in got if isinstance(g[1], list) and g[1] and "pg_stats" not in g[0]]
    assert leaked == [] and readable == [], f"the session read the held key: {readable} {leaked}"
    assert sec.read_secret(app, "t1", "t104.slot") == "sk_live_t104_SECRET"


def test_s2_no_secrets_error_repeats_a_key_or_value_given_in_another_place(vault, pg_cluster):
    """Attack: the secrets role passes the master key or a secret value where a slot, a tenant or a
    `which` goes, to every secrets function, and a 63-hex near-key as the key. Safe: no error
    (message, detail, hint, context) nor NOTICE, nor the server log since, repeats it. secrets.md:
    "No error of the secrets functions repeats a slot, a which, a value or a key it was given"."""
    app, key = vault
    value = "sk_live_" + random.token_hex(20)
    log = Path(pg_cluster.log)
    start = log.stat().st_size
    notices: list[str] = []
    app.add_notice_handler(lambda n: notices.append(str(n.message_primary) + str(n.message_detail)))
    calls = [("SELECT audit.declare_secret(%s, 'd')", [value + " x"]),
             ("SELECT audit.declare_secret(%s, 'd')", [key]),
             ("SELECT audit.put_secret('t1', %s, 'v')", [value]),
             ("SELECT audit.put_secret(%s, %s, 'v')", ["t1", key + "!"]),
             ("SELECT audit.read_secret('t1', %s)", [key]),
             ("SELECT audit.read_secret(%s, 't104.slot')", ["x" * 300 + value]),
             ("SELECT audit.delete_secret('t1', %s)", [value + "/"]),
             ("SELECT * FROM audit.list_secrets(%s)", ["x" * 300 + key]),
             ("SELECT audit.hold_master_key('', %s)", [key]),
             ("SELECT audit.hold_master_key(%s)", [key[:-1]]),
             ("SELECT audit.hold_master_key(%s)", [key + key]),
             ("SELECT audit.rotate_tenant_key(%s)", ["x" * 300 + key]),
             ("SELECT audit.add_master_key(%s)", [key])]
    errors = []
    for stmt, params in calls:
        try:
            app.execute(stmt, params)
        except psycopg.Error as e:
            d = e.diag
            errors.append(" ".join(str(x) for x in (e, d.message_detail, d.message_hint, d.context)))
            with suppress(Exception):
                app.execute("ROLLBACK")
    logged = log.read_bytes()[start:].decode("utf-8", "replace")
    text = "\n".join(errors + notices)
    for needle in (key, key[:-1], value, key.upper()):
        assert needle not in text, f"an error repeated what it was given: {needle[:10]}..."
        assert needle not in logged, f"the server log holds what was given: {needle[:10]}..."


def test_s3_every_read_is_an_event_in_every_query_shape(vault, db):
    """Attack: the secrets role reads one secret three times in one statement (generate_series),
    through a CTE, a correlated LATERAL join (an uncorrelated one calls it once, for both rows), a scalar subquery, EXPLAIN ANALYZE, a cursor, and in a READ ONLY
    transaction. Safe: each read that returned the value (committed) has its own
    `tenant.secret.read` event; the read-only transaction's read fails. secrets.md: "Every read is
    an event. `read_secret` records `tenant.secret.read` ... in the reading transaction: if the
    event cannot be written, the read fails"."""
    app, _ = vault

    def reads() -> int:
        return db.execute("SELECT count(*) FROM audit.events WHERE kind = 'tenant.secret.read'").fetchone()[0]

    short = []
    for stmt in ["SELECT audit.read_secret('t1', 't104.slot') FROM generate_series(1, 3)",
                 "WITH x AS MATERIALIZED (SELECT audit.read_secret('t1', 't104.slot') v) SELECT v FROM x",
                 "SELECT s.v FROM generate_series(1, 2) g,"
                 " LATERAL (SELECT audit.read_secret('t1', 't104.slot') v WHERE g > 0) s",
                 "SELECT (SELECT audit.read_secret('t1', 't104.slot'))",
                 "SELECT audit.read_secret('t1', 't104.slot') WHERE random() < 2",
                 "EXPLAIN (ANALYZE, VERBOSE) SELECT audit.read_secret('t1', 't104.slot')"]:
        n0 = reads()
        rows = app.execute(stmt).fetchall()
        got = len([r for r in rows if r[0] and "sk_live" in str(r[0])])
        if stmt.startswith("EXPLAIN"):
            got = 1  # it ran the read, whether or not it shows the value
        if reads() - n0 < got:
            short.append((stmt, got, reads() - n0))
    n0 = reads()
    with app.transaction():
        cur = app.cursor(name="t104_cur")
        cur.execute("SELECT audit.read_secret('t1', 't104.slot') FROM generate_series(1, 2)")
        got = len([r for r in cur.fetchall() if r[0]])
        cur.close()
    if reads() - n0 < got:
        short.append(("cursor", got, reads() - n0))
    ro = refused(app, "BEGIN READ ONLY; SELECT audit.read_secret('t1', 't104.slot'); COMMIT")
    assert ro is not None, "a read in a read-only transaction returned the value without its event"
    assert short == [], f"values returned without their read events (statement, returned, events): {short}"


@pytest.mark.parametrize("role", ["app_reader", "app_writer", "app_maintainer"])
def test_s4_no_other_role_calls_a_secrets_function(vault, connect, role):
    """Attack: the reader, writer and maintainer each call every secrets function, with and without
    named arguments, and read the key tables. Safe: each 42501 (or 42883), the value unread.
    roles.md: "The reader, writer and maintainer may call none of these functions"."""
    conn = connect(role)
    calls = ["SELECT audit.read_secret('t1', 't104.slot')",
             "SELECT audit.read_secret(tenant_id => 't1', key => 't104.slot')",
             "SELECT audit.put_secret('t1', 't104.slot', 'x')",
             "SELECT audit.delete_secret('t1', 't104.slot')",
             "SELECT audit.declare_secret('t104.s2', 'd')",
             "SELECT * FROM audit.list_secrets()",
             "SELECT audit.add_master_key()",
             "SELECT * FROM audit.rotate_master_key()",
             "SELECT * FROM audit.rotate_tenant_key('t1')",
             "SELECT audit.hold_master_key('')",
             "SELECT audit._data_key('t1', 1)",
             "SELECT * FROM audit._current_data_key('t1')",
             "SELECT * FROM audit.secret_values",
             "SELECT * FROM audit.wrapped_data_keys",
             "SELECT * FROM audit.master_keys",
             "SELECT * FROM audit.secret_slots"]
    ran = {c: refused(conn, c) for c in calls}
    allowed = {c: st for c, st in ran.items() if st not in (DENIED, "42883", "42P01")}
    assert allowed == {}, f"{role} got through: {allowed}"


# ================================ T: HTTP tokens ================================

def tenant_events(db) -> None:
    for t, n in (("acme", 2), ("other", 3), ("ACME", 1), ("acme ", 1)):
        for i in range(n):
            record(db, "t104.http", tenant_id=t, target_id=f"{t}-{i}")
    seal(db)


QUERIES = [{"tenant_id": "other"}, {"tenant_id": "ACME"}, {"tenant_id": "acme "}, {"tenant_id": ["acme", "other"]},
           {"tenant_id": ["other", "acme"]}, {"TENANT_ID": "other"}, {"tenant_id[]": "other"}, {"tenant": "other"},
           {"tenant_id": " acme"}, {"tenant_id": "acme\u200b"}, {"tenant_id": "%"}, {"tenant_id": ""},
           {"target_id": "other-1"}, {"kind_prefix": "t104.", "before_seq": "999999999"}]


def test_t1_a_tenant_token_never_sees_another_tenants_event_whatever_the_parameters(db, start_api, make_token):
    """Attack: a reader token bound to `acme` asks /v1/audit and /v1/audit/count with another tenant
    in many spellings: other case, a trailing or leading space, zero-width space, `%`, empty,
    repeated in either order, other parameter names, a target of another tenant's. Safe: 4xx, or
    only `acme`'s events and `acme`'s count. security.md: "a tenant token's tenant is put into
    every query whatever the parameters say"."""
    tenant_events(db)
    token = make_token("reader", tenant_id="acme")
    api = start_api(failures_allowed=1000)
    leaks = []
    with api.client(token) as client:
        for q in QUERIES:
            r = client.get("/v1/audit", params=q)
            if r.status_code == 200:
                tenants = {e["tenant_id"] for e in r.json()["events"]}
                if tenants - {"acme"}:
                    leaks.append(("list", q, sorted(tenants)))
            elif r.status_code >= 500:
                leaks.append(("list-5xx", q, r.status_code))
            c = client.get("/v1/audit/count", params={**q, "by_kind_prefix": "t104."})
            if c.status_code == 200 and (c.json()["count"] not in (0, 2) or c.json()["by_kind_prefix"].get("t104.", 0) > 2):
                leaks.append(("count", q, c.json()))
            mo = client.get("/v1/audit/monthly", params={**q, "by_kind_prefix": "t104."})
            if mo.status_code == 200 and sum(x["by_kind_prefix"].get("t104.", 0) for x in mo.json()["months"]) > 2:
                leaks.append(("monthly", q, mo.json()["months"]))
    assert leaks == [], f"the acme token saw others: {leaks}"


def test_t2_a_token_revoked_or_expired_right_after_a_success_is_refused_at_once(db, start_api, connect):
    """Attack: a reader token succeeds once, is revoked by the maintainer, and is used again at once;
    another, expiring in 2 s, succeeds, then is used again after it expired. Safe: 401 both times,
    as an unknown token. security.md: "unknown, expired and revoked tokens get the same 401";
    http.md: "A token whose last lookup in this server succeeded is still looked up"."""
    m = connect("app_maintainer")
    gone = create_token(m, "t104gone", "reader").token
    soon = create_token(m, "t104soon", "reader",
                        expires_at=db.execute("SELECT now() + interval '2 seconds'").fetchone()[0]).token
    api = start_api(failures_allowed=1000)
    with api.client(gone) as c:
        assert c.get("/v1/audit").status_code == 200
        revoke_token(m, "t104gone")
        after_revoke = c.get("/v1/audit")
    with api.client(soon) as c:
        assert c.get("/v1/audit").status_code == 200
        time.sleep(2.5)
        after_expiry = c.get("/v1/audit")
    with api.client("pga_" + "0" * 12 + "_" + "0" * 64) as c:
        unknown = c.get("/v1/audit")
    assert after_revoke.status_code == 401, after_revoke.text
    assert after_expiry.status_code == 401, after_expiry.text
    assert after_revoke.json() == unknown.json() == after_expiry.json()


def test_t3_no_listing_error_or_event_shows_a_tokens_secret_or_hash(db, connect, start_api):
    """Attack: the maintainer lists tokens (Python and SQL), revokes with the whole token and with
    half its secret, and a tenant token asks for a maintainer endpoint with its token in the query
    string too. Safe: no listing, event, error or response body holds the secret part, half of it,
    or the SHA-256. security.md: "The database keeps each token's SHA-256, never the token"; roles.md:
    "list_api_tokens: never a token's hash"."""
    m = connect("app_maintainer")
    new = create_token(m, "t104list", "reader", tenant_id="acme",
                       expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    secret = new.token.rsplit("_", 1)[1]
    digest = hashlib.sha256(new.token.encode()).hexdigest()
    shown = [repr(list_tokens(m)), repr(m.execute("SELECT * FROM audit.list_api_tokens()").fetchall())]
    api = start_api(failures_allowed=1000)
    with api.client(new.token) as c:
        shown.append(c.get("/v1/audit", params={"token": new.token}).text)
        shown.append(c.post("/v1/audit/archive/run").text)
        shown.append(c.get("/v1/audit/verify").text)
        shown.append(c.get("/v1/whoami").text)
    for attempt in (secret[:32], secret, new.token.upper()):
        try:
            revoke_token(m, attempt)
        except Exception as e:  # noqa: BLE001
            shown.append(str(e))
    seal(db)
    shown.append(db.execute("SELECT string_agg(row_to_json(e)::text, ' ') FROM audit.events e").fetchone()[0])
    everything = "\n".join(shown).lower()
    for needle in (secret[:32], secret[32:], digest):
        assert needle not in everything, f"shown: {needle[:8]}..."


def test_a7_the_maintainer_plants_no_limit_or_tracking_for_a_table_it_will_never_own(kit, db):
    """Attack: `_check_owner` lets "a table that no longer exists" pass, and the maintainer may call
    `_put_rate_limit` and `_register_tracking` directly: it reads the next oid (a temporary object's)
    and stores limits (and a tracking) for the next 300 oids, none a table yet; then mallory, with no
    audit role, makes tables. Safe: the helpers refuse, or no stored row names mallory's tables
    (their limits and tracking would be the maintainer's choice on a table it does not own).
    roles.md: audit_maintainer may not "act on a table it does not own"."""
    m = kit.maint
    m.execute("CREATE TEMP TABLE t104_probe (x int)")
    base = int(m.execute("SELECT 'pg_temp.t104_probe'::regclass::oid").fetchone()[0])
    planted = {"limit": None, "tracking": None}
    planted["limit"] = refused(m, """
        SELECT audit._put_rate_limit(jsonb_populate_record(NULL::audit.rate_limits,
               jsonb_build_object('scope', 'table', 'target', g::text, 'per_user', 1, 'per_tenant', 1,
                                  'window_seconds', 86400, 'changed_by', 'x')), md5(1::text)::uuid)
          FROM generate_series(%s::bigint + 1, %s::bigint + 300) g""", [base, base])
    planted["tracking"] = refused(m, """
        SELECT audit._register_tracking(jsonb_populate_record(NULL::audit.tracked_tables,
               jsonb_build_object('relid', g, 'kind_prefix', 't104planted' || g, 'key_columns', ARRAY['id'])), md5(1::text)::uuid)
          FROM generate_series(%s::bigint + 1, %s::bigint + 300) g""", [base, base])
    for i in range(20):
        kit.mallory.execute(f"CREATE TABLE public.t104_m{i} (id int PRIMARY KEY, v int)")
    mine = [r[0] for r in db.execute("SELECT oid FROM pg_class WHERE relname ~ '^t104_m[0-9]+$'")]
    limits = db.execute("SELECT target FROM audit.rate_limits WHERE scope = 'table' AND target = ANY(%s)",
                        [[str(o) for o in mine]]).fetchall()
    tracked = db.execute("SELECT relid::regclass::text FROM audit.tracked_tables WHERE relid = ANY(%s::oid[])",
                         [mine]).fetchall()
    assert (limits, tracked) == ([], []), f"the maintainer pre-set mallory's tables ({planted}): {limits} {tracked}"
    stored = db.execute("SELECT count(*) FROM audit.rate_limits WHERE scope = 'table'"
                        " AND target::bigint BETWEEN %s AND %s + 300", [base, base]).fetchone()[0]
    assert stored == 0, f"limits stored for {stored} oids that named no table ({planted})"


def test_p4_a_block_holding_one_young_event_is_not_pruned(kit):
    """Attack: three events are recorded, a second and a half passes, one more is recorded, and all
    four are sealed in one block; the maintainer prunes with `1 second` (the block is mostly old),
    with batch sizes 1 and 100000. Safe: the young event is still in the log, and so are the old
    ones beside it. retention.md: "an event stays until its whole block is old enough"."""
    for i in range(3):
        record(kit.writer, "t104.aged", target_id=str(i))
    time.sleep(1.5)
    record(kit.writer, "t104.young")
    seal(kit.maint, 1_000_000)
    blocks = kit.db.execute("SELECT count(DISTINCT block_no) FROM audit.event_log"
                            " WHERE kind IN ('t104.aged', 't104.young')").fetchone()[0]
    for size in (1, 100000):
        prune_events(kit.maint, "1 second", size)
    young = kit.db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't104.young'").fetchone()[0]
    aged = kit.db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't104.aged'").fetchone()[0]
    assert young == 1, "an event younger than older_than was pruned"
    if blocks == 1:
        assert aged == 3, "events of a block not yet wholly old were pruned"
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)


@pytest.mark.parametrize("params", [{}, {"tenant_id": "other"}, {"tenant_id": "ACME"}, {"since_seq": "0"},
                                    {"tenant_id": ["acme", "other"]}])
def test_t4_a_tenant_tokens_stream_carries_its_tenant_only(db, start_api, make_token, params):
    """Attack: an `acme` reader token follows /v1/audit/stream with another tenant named, in other
    case, repeated, or from seq 0, and with `Last-Event-ID: 0`. Safe: 403 (or 4xx), or a stream
    whose every event is `acme`'s. security.md: "a tenant token's tenant is put into every query
    whatever the parameters say"; http.md: the tenant token "reads that tenant's events, and only
    those, on every endpoint that returns events"."""
    from api_server import sse_messages

    tenant_events(db)
    token = make_token("reader", tenant_id="acme")
    api = start_api(failures_allowed=1000, heartbeat=0.3, poll_interval=0.1)
    seen: list[str] = []
    with api.client(token) as client, client.stream("GET", "/v1/audit/stream", params=params,
                                                     headers={"Last-Event-ID": "0"}) as response:
        if response.status_code != 200:
            assert 400 <= response.status_code < 500, response.status_code
            return
        deadline = time.monotonic() + 3
        comments = 0
        for message in sse_messages(response):
            if message.comment:
                comments += 1
            if message.data is not None and message.event == "audit":
                seen.append(json.loads(message.data)["tenant_id"])
            if time.monotonic() > deadline or comments >= 3 or len(seen) >= 20:
                break
    assert set(seen) <= {"acme"}, f"the acme token's stream carried: {seen}"
    if "tenant_id" not in params:
        assert seen, "the stream from Last-Event-ID 0 carried none of acme's own events (the attack tried nothing)"


RESERVED_TWINS = ["Tenant.Secret.Read", "TENANT.SECRET.READ", "tenant.Secret.read", "Audit.pruned", "AUDIT.PRUNED",
                  "Secret.listed", "SECRET.master_key_added", "Tenant.data_key.rotated", "Audit", "tenant.secret.reads",
                  "tenant.secret", "tenant.secret-read", "tenant.secretread", "audit_pruned", "audit/pruned"]


def test_s5_no_forged_twin_of_a_package_kind_answers_whose_secret_was_read(kit, db, connect):
    """Attack: the writer records twins of the package's own kinds (other case, a missing dot, a
    kind that starts like one) targeting `stripe.api_key` with tenant t1; the reader then asks the
    documented question, list_events(kind_prefix='tenant.secret.read', target_id='stripe.api_key'),
    and list_events(kind_prefix='audit.pruned'). Safe: refused, or never among the answers; the
    writer may also not register a schema for them. roles.md: the writer may not "write a captured or
    system event"; secrets.md: "who read the payment key, and when" is that list_events call."""
    accepted = []
    for kind in RESERVED_TWINS:
        try:
            record(kit.writer, kind, tenant_id="t1", target_id="stripe.api_key", payload={"found": True})
            accepted.append(kind)
        except Exception:  # noqa: BLE001
            with suppress(Exception):
                kit.writer.execute("ROLLBACK")
    assert seal_all(kit.maint) is None
    read = [e.kind for e in list_events(kit.reader, kind_prefix="tenant.secret.read", target_id="stripe.api_key")]
    pruned = [e.kind for e in list_events(kit.reader, kind_prefix="audit.pruned")]
    secret = [e.kind for e in list_events(kit.reader, kind_prefix="secret.")]
    assert read == [] and pruned == [] and secret == [], (accepted, read, pruned, secret)
    system = db.execute("SELECT kind FROM audit.events WHERE origin = 'system' AND db_role = 'app_writer'").fetchall()
    assert system == [], system


@pytest.mark.parametrize("how", ["revoke", "expire"])
def test_t5_a_stream_whose_token_dies_carries_no_later_event(db, start_api, connect, how):
    """Attack: a reader token follows /v1/audit/stream; after its first event arrives, the token is
    revoked (or its expiry set to now by a superuser, as time would), 0.6 s pass, and new events
    are recorded and sealed. Safe: no event recorded after the token died reaches the client; the
    stream ends with `event: error`. http.md: "A stream whose token is revoked or expires ends with
    `event: error` ... (an answer at most 0.5 s old ...)"."""
    from api_server import sse_messages

    m = connect("app_maintainer")
    token = create_token(m, "t104stream", "reader").token
    record(db, "t104.before")
    seal(db)
    api = start_api(failures_allowed=1000, heartbeat=0.3, poll_interval=0.1)
    after: list[str] = []
    ended_with_error = False
    with api.client(token) as client, client.stream("GET", "/v1/audit/stream", headers={"Last-Event-ID": "0"}) as resp:
        assert resp.status_code == 200
        killed = False
        deadline = time.monotonic() + 6
        for message in sse_messages(resp):
            if message.event == "error":
                ended_with_error = True
                break
            if message.event == "audit" and message.data and not killed:
                if how == "revoke":
                    revoke_token(m, "t104stream")
                else:
                    db.execute("UPDATE audit.api_tokens SET expires_at = now() WHERE name = 't104stream'")
                killed = True
                time.sleep(0.6)
                for i in range(3):
                    record(db, "t104.after", target_id=str(i))
                seal(db)
                continue
            if message.event == "audit" and message.data and json.loads(message.data)["kind"] == "t104.after":
                after.append(message.data)
            if time.monotonic() > deadline:
                break
    assert after == [], f"events recorded after the token died reached the stream: {len(after)}"
    assert ended_with_error, "the stream did not end with event: error"


def test_r6_the_maintainer_cannot_give_a_limited_user_its_allowance_back(kit):
    """Attack: `alice` spends her allowance (2 a minute); the maintainer then runs
    purge_rate_counters with every batch size, and tries DELETE, UPDATE and TRUNCATE on the
    counters and a call of the internal `_rate_take`; `alice` writes again. Safe: she is still
    refused (PA009). rate-limits.md: purge "deletes such rows" (two windows old) "skipping any a
    writer holds"; the counters are the owner role's: "only the owner role's functions may lock
    those rows"."""
    limited(kit, per_user=2)
    w, m = kit.writer, kit.maint

    def alice_writes() -> str | None:
        try:
            w.execute("BEGIN")
            w.execute("SELECT set_config('pgaudit_py.actor_id', 'alice', true)")
            w.execute("UPDATE public.t104_acct SET v = v + 1 WHERE id = 1")
            w.execute("COMMIT")
            return None
        except psycopg.Error as e:
            w.execute("ROLLBACK")
            return e.sqlstate

    assert [alice_writes() for _ in range(3)] == [None, None, "PA009"]
    for size in (1, 100, 10000):
        with suppress(psycopg.Error):
            m.execute("SELECT audit.purge_rate_counters(%s)", [size])
    tries = {s: refused(m, s) for s in ["DELETE FROM audit.rate_counters", "UPDATE audit.rate_counters SET count = 0",
                                        "TRUNCATE audit.rate_counters",
                                        "SELECT audit._rate_take('x', 1, 60)"]}
    assert all(st is not None for st in tries.values()), tries
    assert alice_writes() == "PA009", "the maintainer's purge gave alice her allowance back"


def test_a8_no_role_moves_a_sequence_of_the_audit_schemas(kit, db):
    """Attack: the writer, reader, maintainer, secrets role, a table owner and mallory each call
    nextval, setval and ALTER SEQUENCE on every sequence in the audit schemas (the intake's id
    sequence among them), and SELECT its last value. Safe: every move refused and every sequence
    where it was. roles.md: the sealer "owns the intake's id sequence, the order events are sealed
    in, which no other role may move"."""
    seqs = [r[0] for r in db.execute("""SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n
                                          ON n.oid = c.relnamespace
                                         WHERE c.relkind = 'S' AND n.nspname IN ('audit', 'audit_capture')""")]
    assert seqs, "no sequence found"

    def values():
        return {s: db.execute(f"SELECT last_value, is_called FROM {s}").fetchone() for s in seqs}  # noqa: S608

    before = values()
    app_secrets = kit.conn("app_secrets")
    moved = []
    for name, conn in [("writer", kit.writer), ("reader", kit.reader), ("maint", kit.maint),
                       ("secrets", app_secrets), ("owner", kit.owner), ("mallory", kit.mallory)]:
        for s in seqs:
            for stmt in (f"SELECT nextval('{s}')", f"SELECT setval('{s}', 1)", f"ALTER SEQUENCE {s} RESTART",
                         f"ALTER SEQUENCE {s} INCREMENT BY -1", f"SELECT pg_catalog.setval('{s}', 9000000000)"):
                if refused(conn, stmt) is None:
                    moved.append((name, stmt))
    assert moved == [], f"moved: {moved}"
    assert values() == before


def test_t6_a_token_sent_anywhere_but_the_bearer_header_reaches_no_log_line_or_body(start_api, make_token, caplog):
    """Attack: a live maintainer token is sent as `Basic`, `Token`, lower-case `bearer` with two
    spaces, in X-Api-Key, Cookie, User-Agent, Referer, X-Forwarded-For; as a query parameter's
    name; percent-encoded in the path; upper-cased in the path; as the HTTP method. Safe: neither its
    secret part nor either half is in any log line the server writes (pgaudit_py and uvicorn
    loggers) or any response body. security.md: "Tokens travel in the Authorization header alone
    and reach no log line"."""
    import logging

    token = make_token("maintainer")
    secret = token.rsplit("_", 1)[1]
    caplog.set_level(logging.DEBUG)
    api = start_api(failures_allowed=1000)
    bodies = []
    with api.client() as c:
        for headers in ({"Authorization": f"Basic {token}"}, {"Authorization": f"Token {token}"},
                        {"Authorization": f"bearer  {token}"}, {"Authorization": f"Bearer {token}x"},
                        {"Authorization": f"Bearer {token.upper()}"}, {"X-Api-Key": token},
                        {"Cookie": f"token={token}"}, {"User-Agent": token}, {"Referer": f"http://x/{token}"},
                        {"X-Forwarded-For": token}):
            bodies.append(c.get("/v1/audit", headers=headers).text)
        bodies.append(c.get("/v1/audit", params={token: "1"}).text)
        bodies.append(c.get("/v1/audit/" + "".join(f"%{b:02X}" for b in token.encode())).text)
        bodies.append(c.get(f"/v1/{token.upper()}").text)
        bodies.append(c.get(f"/v1/audit?{token}").text)
        with suppress(Exception):
            bodies.append(c.request(token.upper()[:40], "/v1/audit").text)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and caplog.text.count("pgaudit_py.server.access") < 10:
        time.sleep(0.05)
    server_lines = [f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records
                    if r.name.startswith(("pgaudit_py", "uvicorn"))]  # the client's own httpx lines are not the server's
    assert any("access" in line for line in server_lines), "no access line captured (the attack saw nothing)"
    text = ("\n".join(server_lines) + "\n".join(bodies)).lower()
    for needle in (secret, secret[:32], secret[32:]):
        assert needle.lower() not in text, f"the token's secret ({needle[:6]}...) was logged or echoed"


def test_a9_a_maintainer_who_does_not_own_a_tracked_tree_cannot_cover_its_partition(kit, db):
    """Attack: t104_owner's partitioned table is tracked with a baseline; the maintainer's membership
    in t104_owner is then revoked. A new partition with a row arrives while the event triggers are
    off (as on a non-superuser install, where "capture ... does not cover new partitions"), and the
    maintainer, owning neither, calls the SECURITY DEFINER helper `_cover_partition` on it, and on an
    old covered partition. Safe: refused (42501); no `audit.tracked_partition_added` for the
    partition, whose writes no trigger captures; the tracked table's baseline stays. roles.md: "eight
    SECURITY DEFINER helpers, each of which is a trigger function or consumes a proof that its caller
    owns the table"; the maintainer may not "act on a table it does not own"."""
    o = kit.owner
    o.execute("""CREATE TABLE public.t104_pt (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t104_pt1 PARTITION OF public.t104_pt FOR VALUES FROM (0) TO (100);
                 INSERT INTO public.t104_pt VALUES (1, 1);
                 GRANT ALL ON public.t104_pt TO app_writer""")
    from pgaudit_py import enable_tracking
    enable_tracking(kit.maint, "public.t104_pt", baseline=True)
    db.execute("REVOKE t104_owner FROM app_maintainer")
    triggers = [r[0] for r in db.execute("SELECT evtname FROM pg_event_trigger WHERE evtenabled <> 'D'")]
    try:
        for t in triggers:
            db.execute(f'ALTER EVENT TRIGGER "{t}" DISABLE')
        o.execute("CREATE TABLE public.t104_pt2 PARTITION OF public.t104_pt FOR VALUES FROM (100) TO (200);"
                  " INSERT INTO public.t104_pt2 VALUES (150, 1)")
    finally:
        for t in triggers:
            db.execute(f'ALTER EVENT TRIGGER "{t}" ENABLE')
    base_before = db.execute("SELECT baseline_at FROM audit.tracked_tables WHERE relid = 'public.t104_pt'::regclass"
                             ).fetchone()[0]
    results = {p: refused(kit.maint, "SELECT audit._cover_partition(%s::regclass, md5(1::text)::uuid)", [p])
               for p in ("public.t104_pt2", "public.t104_pt1")}
    added = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_added'"
                       " AND db_role = 'app_maintainer' AND target_id LIKE '%%t104_pt2%%'").fetchone()[0]
    base_after = db.execute("SELECT baseline_at FROM audit.tracked_tables WHERE relid = 'public.t104_pt'::regclass"
                            ).fetchone()[0]
    pt2_triggers = [r[0] for r in db.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.t104_pt2'::regclass"
                                             " AND NOT tgisinternal")]
    assert added == 0, (f"the maintainer recorded coverage of a partition it does not own ({results}); the partition's"
                        f" capture triggers: {pt2_triggers}; baseline {base_before} -> {base_after}")
    assert base_after == base_before, f"the maintainer cleared another owner's baseline ({results})"
    assert all(st == DENIED for st in results.values()), f"_cover_partition consumed no proof: {results}"


def test_a10_every_security_definer_helper_the_maintainer_may_call_wants_a_proof(kit, db):
    """Attack: with the event triggers on (a superuser's install), t104_owner's tracked partitioned
    table and the maintainer no longer its member; the maintainer calls each SECURITY DEFINER
    helper it may execute on that tree with no proof: `_cover_partition` (a covered partition),
    `_unregister_tracking`, `_drop_rate_limit`, `_put_rate_limit`, `_register_tracking` (the
    table's own row), `_take_baseline`. Safe: each refused (42501, or another refusal for the
    baseline's lock checks), nothing recorded by app_maintainer. roles.md: "eight SECURITY DEFINER
    helpers, each of which is a trigger function or consumes a proof that its caller owns the table"."""
    o = kit.owner
    o.execute("""CREATE TABLE public.t104_pt (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t104_pt1 PARTITION OF public.t104_pt FOR VALUES FROM (0) TO (100);
                 GRANT ALL ON public.t104_pt TO app_writer""")
    from pgaudit_py import enable_tracking
    enable_tracking(kit.maint, "public.t104_pt")
    enable_rate_limit(kit.maint, "public.t104_pt", per_user_per_minute=5, per_tenant_per_minute=50)
    db.execute("REVOKE t104_owner FROM app_maintainer")
    n0 = db.execute("SELECT count(*) FROM audit.events WHERE db_role = 'app_maintainer'").fetchone()[0]
    oid = db.execute("SELECT 'public.t104_pt'::regclass::oid").fetchone()[0]
    calls = {
        "_cover_partition": ("SELECT audit._cover_partition('public.t104_pt1'::regclass, md5(1::text)::uuid)", None),
        "_unregister_tracking": ("SELECT audit._unregister_tracking(%s, 'audit.tracking_disabled', md5(1::text)::uuid)", [oid]),
        "_drop_rate_limit": ("SELECT audit._drop_rate_limit('table', %s, md5(1::text)::uuid)", [str(oid)]),
        "_put_rate_limit": ("SELECT audit._put_rate_limit(r, md5(1::text)::uuid) FROM audit.rate_limits r WHERE r.target = %s", [str(oid)]),
        "_register_tracking": ("SELECT audit._register_tracking(t, md5(1::text)::uuid) FROM audit.tracked_tables t WHERE t.relid = %s",
                               [oid]),
        "_take_baseline": ("SELECT audit_capture._take_baseline(%s, md5(1::text)::uuid)", [oid]),
    }
    results = {name: refused(kit.maint, stmt, params) for name, (stmt, params) in calls.items()}
    n1 = db.execute("SELECT count(*) FROM audit.events WHERE db_role = 'app_maintainer'").fetchone()[0]
    ran = {k: v for k, v in results.items() if v is None}
    assert ran == {}, f"SECURITY DEFINER helpers ran for a maintainer owning nothing, with no proof: {ran}"
    assert n1 == n0
