"""A sixty-seventh attacker's trial: variants against 1523b54 (one hand-over before the files run:
every function of the package's schemas goes to the role the files make it as, read by
function_makers from the files' SET ROLE and CREATE FUNCTION lines; the intake's sequence goes to
the sealer role; the one take-back covers all the function roles own).

Classes (test names carry the letter):
  H. hand-over abuse: the owner role makes a function of its own choosing under a name the files
     make as a function role (an overload of seal, prune_events, delete_archived, _row_images; a
     trigger function; a procedure; an aggregate); does the re-install give the owner's code to the
     sealer, the pruner or the sandbox (so that it runs with their rights)?
  S. the intake's sequence: replaced by an identity's sequence, a sequence OWNED BY a table of the
     owner's, a view, a table, a sequence of the owner's choosing (descending), or dropped outright:
     the re-install fails unnamed (status itself failing), or leaves the order of sealing to the
     owner role?
  R. signatures: a package function dropped and made anew with another return type or argument
     names (the files' CREATE OR REPLACE fails): named by status?
  T. take-back gaps: default privileges of the owner role and of audit_capture; a grant passed on
     through audit_capture on an owner's function; a grant on a generated _capture_<oid> function
     (left by the take-back), and a maintainer using it to fire that capture function.
  P. the psql script (install_script) with the hand-over abuse.
  Z. false alarms: fresh install and re-install, the psql script on an installed database, an
     upgrade.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works; when the
attack's first step is refused (as the owner role), it passes.
"""

from __future__ import annotations

from contextlib import suppress

import psycopg
from trial_helpers import as_owner, both_verifiers, owner_tries, problems_of, reinstall, script_reinstall, seal_all

from pgaudit_py import record

SEQ = "audit.event_intake_intake_id_seq"
FUNCTION_ROLES = ("audit_capture", "audit_sealer", "audit_pruner", "audit_sandbox")


# ============================================ helpers ============================================


def sealed_order(db: psycopg.Connection, like: str = "t67.%", schema: str = "audit") -> list[str]:
    return [k for (k,) in db.execute(f"SELECT kind FROM {schema}.event_log WHERE kind LIKE %s ORDER BY seq", [like])]


def owner_of_routine(db: psycopg.Connection, signature: str) -> str | None:
    row = db.execute("SELECT proowner::regrole::text FROM pg_proc WHERE oid = to_regprocedure(%s)", [signature]).fetchone()
    return row[0] if row else None


def owner_of_rel(db: psycopg.Connection, rel: str) -> str | None:
    row = db.execute("SELECT relowner::regrole::text FROM pg_class WHERE oid = to_regclass(%s)", [rel]).fetchone()
    return row[0] if row else None


def who_table(db: psycopg.Connection) -> str | None:
    """A table of the owner role's in the audit schema where its planted code says who ran it; every
    role may write it (the owner grants it)."""
    return owner_tries(db, "CREATE TABLE audit.t67_who (who text, at timestamptz DEFAULT clock_timestamp());"
                           " GRANT INSERT, SELECT ON audit.t67_who TO PUBLIC")


def who_ran(db: psycopg.Connection) -> list[str]:
    return [w for (w,) in db.execute("SELECT who FROM audit.t67_who ORDER BY at")]


def routines_of_function_roles(db: psycopg.Connection) -> set[str]:
    return {s for (s,) in db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " WHERE p.pronamespace IN ('audit'::regnamespace, 'audit_capture'::regnamespace)"
        "   AND p.proowner::regrole::text = ANY (%s)"
        "   AND NOT (p.pronamespace = 'audit_capture'::regnamespace AND p.proname ~ '^_capture_[0-9]+$')",
        [list(FUNCTION_ROLES)])}


# ================================== class H: hand-over abuse ==================================


_DEFINER_WHO = ("RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
                " AS $$ SELECT current_user::text $$")


def _overload_attack(db, connect, signature: str, create: str, call: str, caller: str = "app_writer"):
    """The owner role makes `create` (a routine under a name the files make as a function role),
    the installer runs (as status asks: the function is named added), then `caller` calls it.
    Returns (before, refused, reinstall error, owner after, who ran it, problems after)."""
    release = routines_of_function_roles(db)
    refused = owner_tries(db, create)
    if refused:
        return None
    named_before = problems_of(db)
    error = reinstall(db)
    owner = owner_of_routine(db, signature)
    who = []
    with suppress(psycopg.Error):
        who = [connect(caller).execute(call).fetchone()[0]]
    return {"release": release, "named_before": named_before, "error": error, "owner": owner,
            "who": who, "after": routines_of_function_roles(db), "problems": problems_of(db)}


def test_h1_an_overload_of_seal_made_by_the_owner_is_not_handed_to_the_sealer(db, connect):
    """Attack: the owner role makes audit.seal(text), SECURITY DEFINER, search_path pinned, whose body
    is its own (here: it writes current_user). The hand-over reads 'audit.seal' as the sealer's name
    and gives it to audit_sealer: its code then runs as the sealer (which may write the log, delete
    the intake and owns the sequence), for whoever may execute it (PUBLIC: its ACL is NULL, which
    the take-back's aclexplode never sees). Safe: the owner's code never runs as a function role;
    the function roles own what the release makes and nothing else."""
    r = _overload_attack(db, connect, "audit.seal(text)",
                         f"CREATE FUNCTION audit.seal(t67 text) {_DEFINER_WHO}",
                         "SELECT audit.seal('x')")
    if r is None:
        return
    assert not set(r["who"]) & set(FUNCTION_ROLES), (r["who"], r["error"], r["problems"])
    assert r["owner"] != "audit_sealer", r
    assert r["after"] <= r["release"], r


def test_h2_a_trigger_function_named_seal_runs_as_the_sealer_and_deletes_pending_events(db, connect):
    """Attack: the owner role makes audit.seal() RETURNS trigger, SECURITY DEFINER, whose body deletes
    the intake (the sealer's DELETE passes its guard), and a trigger on a table of its own. A
    trigger's function is not checked for EXECUTE when it fires, so the take-back of grants is no
    help. After the re-install (seal() now the sealer's) the owner inserts a row: events pending in
    the intake are gone, never sealed. Safe: the pending events are still there and get sealed."""
    writer = connect("app_writer")
    record(writer, "t67.a")
    record(writer, "t67.b")
    refused = owner_tries(db, """
        CREATE TABLE audit.t67_fire (x int);
        CREATE FUNCTION audit.seal() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ BEGIN DELETE FROM audit.event_intake; RETURN NULL; END $$;
        CREATE TRIGGER t67_fire AFTER INSERT ON audit.t67_fire FOR EACH STATEMENT EXECUTE FUNCTION audit.seal();""")
    if refused:
        return
    error = reinstall(db)
    handed = owner_of_routine(db, "audit.seal()")
    with suppress(psycopg.Error):
        as_owner(db, "INSERT INTO audit.t67_fire VALUES (1)")
    pending = [k for (k,) in db.execute("SELECT kind FROM audit.event_intake ORDER BY intake_id")]
    assert pending == ["t67.a", "t67.b"], (error, handed, pending)
    assert handed != "audit_sealer", (error, handed)


def test_h3_a_trigger_function_named_prune_events_deletes_sealed_history_as_the_pruner(db, connect):
    """Attack: as h2 with audit.prune_events() RETURNS trigger, whose body deletes the sealed log (the
    pruner's DELETE passes the log's guard). Safe: the sealed events are still there and verify."""
    writer = connect("app_writer")
    record(writer, "t67.a")
    record(writer, "t67.b")
    assert seal_all(db) is None
    refused = owner_tries(db, """
        CREATE TABLE audit.t67_fire (x int);
        CREATE FUNCTION audit.prune_events() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ BEGIN DELETE FROM audit.event_log WHERE kind LIKE 't67.%'; RETURN NULL; END $$;
        CREATE TRIGGER t67_fire AFTER INSERT ON audit.t67_fire FOR EACH STATEMENT
            EXECUTE FUNCTION audit.prune_events();""")
    if refused:
        return
    error = reinstall(db)
    handed = owner_of_routine(db, "audit.prune_events()")
    with suppress(psycopg.Error):
        as_owner(db, "INSERT INTO audit.t67_fire VALUES (1)")
    assert sealed_order(db) == ["t67.a", "t67.b"], (error, handed, sealed_order(db))
    assert handed != "audit_pruner", (error, handed)


def test_h9_events_deleted_through_a_handed_over_trigger_function_leave_a_trace(db, connect):
    """Attack: h2, then the owner role covers its tracks: it drops the trigger, its table and the
    function (now the sealer's: it owns the schema, so it may drop it), and a superuser re-installs
    as status asks. Safe: the events written are sealed, or status names something."""
    writer = connect("app_writer")
    record(writer, "t67.a")
    record(writer, "t67.b")
    refused = owner_tries(db, """
        CREATE TABLE audit.t67_fire (x int);
        CREATE FUNCTION audit.seal() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ BEGIN DELETE FROM audit.event_intake; RETURN NULL; END $$;
        CREATE TRIGGER t67_fire AFTER INSERT ON audit.t67_fire FOR EACH STATEMENT EXECUTE FUNCTION audit.seal();""")
    if refused:
        return
    reinstall(db)
    with suppress(psycopg.Error):
        as_owner(db, "INSERT INTO audit.t67_fire VALUES (1)")
    owner_tries(db, "DROP TABLE audit.t67_fire; DROP FUNCTION audit.seal()")
    error = reinstall(db)
    record(writer, "t67.c")
    failure = seal_all(db)
    order = sealed_order(db)
    problems = problems_of(db)
    assert order == ["t67.a", "t67.b", "t67.c"] or problems or both_verifiers(db) != (True, True), \
        (order, failure, error, problems)


def test_h4_a_procedure_named_delete_archived_is_not_handed_to_the_pruner(db, connect):
    """Attack: the owner role makes PROCEDURE audit.delete_archived(integer), SECURITY DEFINER; the
    hand-over gives it to audit_pruner. Safe: the owner's code never runs as the pruner."""
    refused = owner_tries(db, "CREATE PROCEDURE audit.delete_archived(INOUT t67 name) LANGUAGE sql SECURITY DEFINER"
                              " SET search_path = pg_catalog, pg_temp AS $$ SELECT current_user $$")
    if refused:
        return
    error = reinstall(db)
    handed = owner_of_routine(db, "audit.delete_archived(name)")
    who = []
    for role in ("app_maintainer", "app_writer"):
        with suppress(psycopg.Error):
            who.append(connect(role).execute("CALL audit.delete_archived(NULL::name)").fetchone()[0])
    assert not set(who) & set(FUNCTION_ROLES), (error, handed, who, problems_of(db))
    assert handed != "audit_pruner", (error, handed)


def test_h5_an_overload_of_row_images_is_not_handed_to_the_sandbox(db, connect):
    """Attack: the owner role makes audit._row_images(integer), SECURITY DEFINER: the hand-over gives
    it to audit_sandbox. Safe: it is not the sandbox's, and runs as nobody of the package's."""
    r = _overload_attack(db, connect, "audit._row_images(integer)",
                         f"CREATE FUNCTION audit._row_images(t67 integer) {_DEFINER_WHO}",
                         "SELECT audit._row_images(1)")
    if r is None:
        return
    assert not set(r["who"]) & set(FUNCTION_ROLES), (r["who"], r["error"], r["problems"])
    assert r["owner"] != "audit_sandbox", r


def test_h6_an_aggregate_named_seal_neither_stops_the_reinstall_unnamed_nor_goes_to_the_sealer(db):
    """Attack: the owner role makes AGGREGATE audit.seal(bigint). The hand-over's ALTER ROUTINE on an
    aggregate: refused (the re-install fails) or it hands it over. Safe: the re-install succeeds, or
    fails with status naming something; the aggregate is not the sealer's."""
    refused = owner_tries(db, "CREATE AGGREGATE audit.seal(bigint) (SFUNC = int8larger, STYPE = bigint)")
    if refused:
        return
    error = reinstall(db)
    problems = problems_of(db)
    assert error is None or problems, (error, problems)
    assert owner_of_routine(db, "audit.seal(bigint)") != "audit_sealer", (error, problems)


def test_h7_the_capture_roles_function_named_like_the_sealers_is_not_handed_to_the_sealer(db, connect):
    """Attack: the owner role, as audit_capture (its one membership), makes in the capture schema a
    function seal(text) and, in its own schema, _baseline_images(integer) as itself; a function the
    files make as the capture role, audit_capture._take_baseline(integer), SECURITY DEFINER. Safe:
    none of them ends up the sealer's, the pruner's or the sandbox's."""
    refused = owner_tries(db, f"""
        CREATE FUNCTION audit._baseline_images(t67 integer) {_DEFINER_WHO};
        SET ROLE audit_capture;
        CREATE FUNCTION audit_capture.seal(t67 text) {_DEFINER_WHO};""")
    if refused:
        return
    error = reinstall(db)
    owners = {s: owner_of_routine(db, s) for s in ("audit._baseline_images(integer)", "audit_capture.seal(text)")}
    assert owners["audit._baseline_images(integer)"] != "audit_sandbox", (error, owners)
    assert owners["audit_capture.seal(text)"] not in ("audit_sealer", "audit_pruner", "audit_sandbox"), (error, owners)


def test_h8_status_names_a_function_handed_to_a_function_role_after_the_reinstall(db, connect):
    """Attack: as h1 (audit.prune_events(text), SECURITY DEFINER, EXECUTE taken from PUBLIC so that no
    ACL rule names it). Safe: the re-install leaves it no function role's, or status names it still."""
    refused = owner_tries(db, "CREATE FUNCTION audit.prune_events(t67 text) RETURNS text LANGUAGE sql"
                              " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT current_user::text $$;"
                              " REVOKE ALL ON FUNCTION audit.prune_events(text) FROM PUBLIC")
    if refused:
        return
    error = reinstall(db)
    handed = owner_of_routine(db, "audit.prune_events(text)")
    problems = problems_of(db)
    assert handed != "audit_pruner" or problems, (error, handed, problems)


# ================================== class S: the intake's sequence ==================================


def _replace_sequence(db, make: str) -> str | None:
    """The owner role drops the sealer's sequence (it owns the schema; CASCADE drops the intake's
    default), makes `make` under its name, and sets the default again."""
    return owner_tries(db, f"DROP SEQUENCE {SEQ} CASCADE; {make};"
                           f" ALTER TABLE audit.event_intake ALTER COLUMN intake_id SET DEFAULT nextval('{SEQ}')")


def _problems_or_failure(db) -> list[str] | str:
    """status' problems, or its error (status itself failing names nothing)."""
    try:
        return problems_of(db)
    except Exception as e:  # noqa: BLE001
        with suppress(Exception):
            db.execute("ROLLBACK")
        return f"status failed: {type(e).__name__} {getattr(e, 'sqlstate', '')}"


def _sequence_outcome(db, connect):
    named_before = _problems_or_failure(db)
    error = reinstall(db)
    kind = db.execute("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", [SEQ]).fetchone()
    return {"named_before": named_before, "error": error, "owner": owner_of_rel(db, SEQ),
            "kind": kind[0] if kind else None, "problems": _problems_or_failure(db)}


def test_s1_an_identity_sequence_under_the_intakes_name_is_named_or_handed_over(db, connect):
    """Attack: the owner role drops the sequence and makes a table audit.event_intake_intake with an
    identity column id: PostgreSQL names its sequence event_intake_intake_id_seq, the intake's. The
    hand-over's ALTER SEQUENCE ... OWNER TO on an identity's sequence is refused: every re-install
    fails, and the owner keeps the sequence (it may RESTART it). Safe: the re-install succeeds with
    the sequence the sealer's, or status names it before and after."""
    refused = _replace_sequence(db, "CREATE TABLE audit.event_intake_intake (id bigint GENERATED ALWAYS AS IDENTITY"
                                    " (START 1000 CACHE 1))")
    if refused:
        return
    r = _sequence_outcome(db, connect)
    assert r["named_before"], r
    assert (r["error"] is None and r["owner"] == "audit_sealer") or r["problems"], r


def test_s2_a_sequence_owned_by_the_intakes_column_is_named_or_handed_over(db, connect):
    """Attack: the owner role makes the sequence anew OWNED BY audit.event_intake.intake_id (its
    table): ALTER SEQUENCE ... OWNER TO is refused for a sequence linked to a table, so the
    re-install fails, and the sequence stays the owner's. It starts past every id: nothing reads
    'moved'. Safe: the re-install succeeds with the sequence the sealer's, or status names it."""
    record(connect("app_writer"), "t67.a")
    refused = _replace_sequence(db, f"CREATE SEQUENCE {SEQ} AS bigint START 100 CACHE 1 NO CYCLE"
                                    " OWNED BY audit.event_intake.intake_id")
    if refused:
        return
    r = _sequence_outcome(db, connect)
    assert r["named_before"], r
    assert (r["error"] is None and r["owner"] == "audit_sealer") or r["problems"], r
    if r["owner"] != "audit_sealer":  # the owner moves the order of sealing
        owner_tries(db, f"ALTER SEQUENCE {SEQ} RESTART 50")
        record(connect("app_writer"), "t67.b")
        owner_tries(db, f"ALTER SEQUENCE {SEQ} RESTART 10")
        record(connect("app_writer"), "t67.c")
        seal_all(db)
        assert sealed_order(db) in ([], ["t67.a"], ["t67.a", "t67.b", "t67.c"]) or problems_of(db), r


def test_s3_a_view_under_the_sequences_name_is_named(db, connect):
    """Attack: the owner role drops the sequence and makes a view of its name: the hand-over's ALTER
    SEQUENCE is refused (a view). Safe: named before and after the failing re-install."""
    refused = owner_tries(db, f"DROP SEQUENCE {SEQ} CASCADE; CREATE VIEW {SEQ} AS SELECT 1::bigint AS last_value")
    if refused:
        return
    r = _sequence_outcome(db, connect)
    assert r["named_before"], r
    assert (r["error"] is None and r["kind"] == "S" and r["owner"] == "audit_sealer") or r["problems"], r


def test_s4_a_descending_sequence_of_the_owners_is_not_handed_to_the_sealer_silently(db, connect):
    """Attack: the owner role makes the sequence anew, descending (INCREMENT BY -1) from a high
    value; the re-install hands it to the sealer as it is, made logged: later writes take lower ids,
    and would be sealed first. Safe: status names it after the re-install, and history is sealed
    in the order it was written (or sealing refuses)."""
    refused = _replace_sequence(db, f"CREATE SEQUENCE {SEQ} AS bigint INCREMENT BY -1 MINVALUE 1 MAXVALUE 1000000"
                                    " START 1000000 CACHE 1")
    if refused:
        return
    r = _sequence_outcome(db, connect)
    writer = connect("app_writer")
    for k in ("t67.a", "t67.b", "t67.c"):
        with suppress(Exception):
            record(writer, k)
    failure = seal_all(db)
    order = sealed_order(db)
    assert order in ([], ["t67.a"], ["t67.a", "t67.b"], ["t67.a", "t67.b", "t67.c"]), (order, failure, r)
    assert r["problems"] or r["error"], r


def test_s5_the_owner_role_cannot_alter_the_sealers_sequence_in_place(db):
    """Attack: the owner role alters the sealer's sequence in place (INCREMENT BY 2). Safe: refused;
    its parameters stay the release's (increment 1, no cycle, cache 1)."""
    refused = owner_tries(db, f"ALTER SEQUENCE {SEQ} INCREMENT BY 2")
    params = db.execute("SELECT seqincrement, seqcycle, seqcache FROM pg_sequence WHERE seqrelid = %s::regclass",
                        [SEQ]).fetchone()
    assert refused or params == (1, False, 1), params


# ================================== class R: signatures ==================================


def test_r1_seal_dropped_and_made_anew_with_another_return_type_is_named_and_not_the_sealers(db, connect):
    """Attack: the owner role drops audit.seal(integer) (it owns the schema) and makes
    seal(max_events integer) RETURNS text, SECURITY DEFINER, as itself: the hand-over gives it to the
    sealer, then the files' CREATE OR REPLACE as the sealer fails (another return type). Safe: status
    names it before and after; the maintainer's seal never runs the owner's code as the sealer."""
    refused = owner_tries(db, "DROP FUNCTION audit.seal(integer) CASCADE;"
                              " CREATE FUNCTION audit.seal(max_events integer DEFAULT 1000) RETURNS text LANGUAGE sql"
                              " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT current_user::text $$;"
                              " GRANT EXECUTE ON FUNCTION audit.seal(integer) TO audit_maintainer")
    if refused:
        return
    named_before = problems_of(db)
    error = reinstall(db)
    who = None
    with suppress(psycopg.Error):
        who = connect("app_maintainer").execute("SELECT audit.seal(1)::text").fetchone()[0]
    problems = problems_of(db)
    assert named_before, (error, problems)
    assert error is None or problems, (error, problems)
    assert who not in FUNCTION_ROLES, (who, error, owner_of_routine(db, "audit.seal(integer)"))


def test_r2_a_sandbox_function_made_anew_with_other_argument_names_is_named(db, connect):
    """Attack: the owner role drops audit._baseline_images(oid, tid, tid) and makes it anew with other
    argument names and a body of its own: the hand-over gives it to the sandbox, the files' CREATE
    OR REPLACE is refused (argument names). Safe: the re-install succeeds (the release's body), or
    status names it."""
    result = db.execute("SELECT pg_get_function_result('audit._baseline_images(oid,tid,tid)'::regprocedure)").fetchone()[0]
    release = db.execute("SELECT md5(pg_get_functiondef('audit._baseline_images(oid,tid,tid)'::regprocedure))").fetchone()[0]
    body = f"SELECT NULL::{result.removeprefix('SETOF ')} WHERE false"
    refused = owner_tries(db, "DROP FUNCTION audit._baseline_images(oid, tid, tid) CASCADE;"
                              f" CREATE FUNCTION audit._baseline_images(a oid, b tid, c tid) RETURNS {result}"
                              f" LANGUAGE sql AS $$ {body} $$")
    if refused:
        return
    error = reinstall(db)
    problems = problems_of(db)
    now = db.execute("SELECT md5(pg_get_functiondef(p.oid)), p.proowner::regrole::text FROM pg_proc p"
                     " WHERE p.oid = to_regprocedure('audit._baseline_images(oid,tid,tid)')").fetchone()
    assert error is None or problems, (error, problems)
    assert problems or now == (release, "audit_sandbox"), (error, now)


# ================================== class T: take-back gaps ==================================


def test_t1_default_privileges_of_the_owner_role_on_functions_are_named_or_undone(db, connect):
    """Attack: the owner role sets default privileges: EXECUTE on the functions it makes in its
    schema to the writers; the re-install makes functions anew (DROP ... CREATE). Safe: the writers
    may execute no more functions than before, or status names it after the re-install."""
    q = ("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'audit'::regnamespace"
         " AND has_function_privilege('audit_writer', p.oid, 'EXECUTE')")
    before = {s for (s,) in db.execute(q)}
    refused = owner_tries(db, "ALTER DEFAULT PRIVILEGES IN SCHEMA audit GRANT EXECUTE ON FUNCTIONS TO audit_writer")
    if refused:
        return
    error = reinstall(db)
    after = {s for (s,) in db.execute(q)}
    problems = problems_of(db)
    assert after <= before or problems, (after - before, error)


def test_t2_default_privileges_of_the_capture_role_in_the_capture_schema_are_named(db, connect):
    """Attack: the owner role, as audit_capture, sets default privileges in the capture schema
    (EXECUTE on functions to the writers) and the installer makes a capture function anew. Safe:
    the writers execute nothing of the capture schema, or status names it."""
    refused = owner_tries(db, "SET ROLE audit_capture; ALTER DEFAULT PRIVILEGES IN SCHEMA audit_capture"
                              " GRANT EXECUTE ON FUNCTIONS TO audit_writer")
    if refused:
        return
    owner_tries(db, "SET ROLE audit_capture; DROP FUNCTION audit_capture._take_baseline(oid, uuid)")
    error = reinstall(db)
    granted = {s for (s,) in db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'audit_capture'::regnamespace"
        " AND has_function_privilege('audit_writer', p.oid, 'EXECUTE')")}
    assert not granted or problems_of(db), (granted, error)


def test_t3_a_grant_passed_on_through_capture_on_an_owners_definer_function_is_named(db, connect):
    """Attack: the owner role grants EXECUTE on create_api_token (its SECURITY DEFINER function) to
    audit_capture WITH GRANT OPTION; as audit_capture it passes it to the writers. The files' REVOKE
    (no CASCADE, by the owner) meets capture's grant. Safe: the re-install succeeds and the writers
    may not call it, or status names it."""
    sig = db.execute("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.proname = 'create_api_token'"
                     " AND p.pronamespace = 'audit'::regnamespace").fetchone()[0]
    refused = owner_tries(db, f"GRANT EXECUTE ON FUNCTION {sig} TO audit_capture WITH GRANT OPTION;"
                              f" SET ROLE audit_capture; GRANT EXECUTE ON FUNCTION {sig} TO audit_writer")
    if refused:
        return
    error = reinstall(db)
    may = db.execute("SELECT has_function_privilege('audit_writer', %s::regprocedure, 'EXECUTE')", [sig]).fetchone()[0]
    problems = problems_of(db)
    assert (error is None and not may) or problems, (error, may, problems)


# ================================== class P: the psql script ==================================


def test_p1_the_psql_script_does_not_hand_the_owners_overload_to_the_sealer(db, connect):
    """Attack: as h1, then the psql script (install_script) instead of install(). Safe: the owner's
    code does not run as the sealer."""
    refused = owner_tries(db, f"CREATE FUNCTION audit.seal(t67 text) {_DEFINER_WHO}")
    if refused:
        return
    error = script_reinstall(db)
    who = None
    with suppress(psycopg.Error):
        who = connect("app_writer").execute("SELECT audit.seal('x')").fetchone()[0]
    assert who not in FUNCTION_ROLES, (who, error, owner_of_routine(db, "audit.seal(text)"))


def test_p2_the_psql_script_with_a_sequence_owned_by_the_intake_is_named(db, connect):
    """Attack: as s2, then the psql script. Safe: it succeeds with the sequence the sealer's, or
    status names it."""
    refused = _replace_sequence(db, f"CREATE SEQUENCE {SEQ} AS bigint START 100 CACHE 1 NO CYCLE"
                                    " OWNED BY audit.event_intake.intake_id")
    if refused:
        return
    error = script_reinstall(db)
    problems = problems_of(db)
    assert (error is None and owner_of_rel(db, SEQ) == "audit_sealer") or problems, (error, problems)


# ================================== class Z: false alarms ==================================


def test_z1_fresh_install_and_reinstall_leave_no_problems(db, connect):
    """False alarm: a fresh install and a re-install: no problems, the function roles own what the
    release makes, the sequence the sealer's, events sealed in order, both verifiers pass."""
    release = routines_of_function_roles(db)
    record(connect("app_writer"), "t67.a")
    assert problems_of(db) == []
    assert reinstall(db) is None
    assert routines_of_function_roles(db) == release
    record(connect("app_writer"), "t67.b")
    assert owner_of_rel(db, SEQ) == "audit_sealer"
    assert seal_all(connect("app_maintainer")) is None
    assert sealed_order(db) == ["t67.a", "t67.b"]
    assert problems_of(db) == []
    assert both_verifiers(db) == (True, True)


def test_z2_the_psql_script_twice_on_an_installed_database(db, connect):
    """False alarm: the psql script applied twice to an installed database with a pending event."""
    record(connect("app_writer"), "t67.a")
    assert script_reinstall(db) is None
    assert script_reinstall(db) is None
    assert problems_of(db) == []
    assert seal_all(connect("app_maintainer")) is None
    assert sealed_order(db) == ["t67.a"]
    assert both_verifiers(db) == (True, True)


def test_z3_the_reinstall_after_a_repaired_attack_leaves_no_problems(db, connect):
    """False alarm: the owner role's overload (h1) dropped again by a superuser, then the re-install:
    no problems, the release's owners."""
    release = routines_of_function_roles(db)
    if owner_tries(db, f"CREATE FUNCTION audit.seal(t67 text) {_DEFINER_WHO}"):
        return
    reinstall(db)
    db.execute("DROP FUNCTION IF EXISTS audit.seal(text)")
    assert reinstall(db) is None
    assert routines_of_function_roles(db) == release
    assert problems_of(db) == []


def test_z4_an_upgrade_from_4858460_then_reinstall(db, connect, tmp_path_factory):
    """False alarm: an install by 4858460 with sealed and pending events, upgraded and re-installed:
    no problems, order kept, both verifiers pass."""
    from test_trust_attacks_66 import _old_with_pending
    _old_with_pending(db, tmp_path_factory, "t67u")
    assert reinstall(db, "t67u") is None
    assert owner_of_rel(db, "t67u.event_intake_intake_id_seq") == "t67u_sealer"
    assert problems_of(db, "t67u") == []
    assert reinstall(db, "t67u") is None
    assert problems_of(db, "t67u") == []
    db.execute("SELECT t67u.record('t66.p4')")
    assert seal_all(db, "t67u") is None
    assert sealed_order(db, "t66.%", "t67u") == ["t66.sealed", "t66.p1", "t66.p2", "t66.p3", "t66.p4"]
    assert both_verifiers(db, "t67u") == (True, True)


def test_t4_a_grant_on_a_generated_capture_function_is_named_or_taken_back(db, connect):
    """Attack: the take-back leaves the generated audit_capture._capture_<oid> functions alone. The
    owner role, as audit_capture, grants EXECUTE on one to the writers WITH GRANT OPTION. Safe: the
    re-install takes it back, or status names it."""
    from pgaudit_py.tracking import enable_tracking
    db.execute("CREATE TABLE public.t67_tracked (id int PRIMARY KEY, v text)")
    enable_tracking(db, "public.t67_tracked")
    oid = db.execute("SELECT 'public.t67_tracked'::regclass::oid").fetchone()[0]
    fn = f"audit_capture._capture_{oid}()"
    refused = owner_tries(db, f"SET ROLE audit_capture; GRANT EXECUTE ON FUNCTION {fn} TO audit_writer WITH GRANT OPTION")
    if refused:
        return
    error = reinstall(db)
    may = db.execute("SELECT has_function_privilege('audit_writer', %s::regprocedure, 'EXECUTE')", [fn]).fetchone()[0]
    problems = problems_of(db)
    assert not may or problems, (error, may, problems)


def test_t5_a_maintainer_given_a_capture_function_cannot_forge_a_tracked_tables_events(db, connect):
    """Attack: as t4, the owner role (as audit_capture) grants EXECUTE on a tracked table's generated
    capture function to audit_maintainer, which already holds USAGE on the capture schema; the
    take-back leaves it, and status (t4) does not name it. A maintainer then fires that capture
    function from a trigger on a table of its own: its rows would be recorded as captured changes
    of the tracked table (another role's, which it may not touch). Safe: no captured event of the
    maintainer's made-up row, or status names something."""
    from pgaudit_py.tracking import enable_tracking
    db.execute("CREATE TABLE public.t67_tracked (id int PRIMARY KEY, v text)")
    enable_tracking(db, "public.t67_tracked")
    oid = db.execute("SELECT 'public.t67_tracked'::regclass::oid").fetchone()[0]
    fn = f"audit_capture._capture_{oid}()"
    refused = owner_tries(db, f"SET ROLE audit_capture; GRANT EXECUTE ON FUNCTION {fn} TO audit_maintainer")
    if refused:
        return
    error = reinstall(db)
    db.execute("CREATE SCHEMA t67w AUTHORIZATION app_maintainer")
    maintainer = connect("app_maintainer")
    forged = None
    try:
        maintainer.execute("CREATE TABLE t67w.fake (id int PRIMARY KEY, v text)")
        maintainer.execute(f"CREATE TRIGGER t67_forge AFTER INSERT OR UPDATE OR DELETE ON t67w.fake"
                           f" FOR EACH ROW EXECUTE FUNCTION {fn}")
        maintainer.execute("INSERT INTO t67w.fake VALUES (666, 't67forged')")
    except psycopg.Error as e:
        forged = f"{type(e).__name__}: {e.sqlstate}"
    seal_all(db)
    rows = db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 'public.t67_tracked.%%'"
                      " AND target_id = '666'").fetchone()[0]
    problems = problems_of(db)
    assert rows == 0 or problems, (rows, forged, error, problems)


def test_h10_odd_names_near_the_makers_names_are_not_handed_over(db, connect):
    """Attack: functions whose names differ from a maker name by case, a trailing space, a dot or the
    schema: audit."Seal"(text), audit."seal "(text), audit."seal.x"(text), audit."audit.seal"(text),
    and as audit_capture, audit_capture.prune_events(text). Safe: none is the sealer's, the pruner's
    or the sandbox's after the re-install."""
    names = ['audit."Seal"', 'audit."seal "', 'audit."seal.x"', 'audit."audit.seal"']
    refused = owner_tries(db, " ".join(f"CREATE FUNCTION {n}(t67 text) {_DEFINER_WHO};" for n in names)
                          + f" SET ROLE audit_capture; CREATE FUNCTION audit_capture.prune_events(t67 text) {_DEFINER_WHO};")
    if refused:
        return
    error = reinstall(db)
    owners = {n: owner_of_routine(db, f"{n}(text)") for n in [*names, "audit_capture.prune_events"]}
    assert not set(owners.values()) & {"audit_sealer", "audit_pruner", "audit_sandbox"}, (error, owners)


def test_s6_the_sequence_dropped_outright_is_named_before_and_after_the_failing_reinstall(db, connect):
    """Attack: the owner role drops the sequence (CASCADE: the intake's default goes with it) and
    makes nothing: the hand-over's unconditional ALTER SEQUENCE fails, so does every re-install, and
    every write. Safe: status names it before and after."""
    refused = owner_tries(db, f"DROP SEQUENCE {SEQ} CASCADE")
    if refused:
        return
    r = _sequence_outcome(db, connect)
    assert isinstance(r["named_before"], list) and r["named_before"], r
    assert r["error"] is None or (isinstance(r["problems"], list) and r["problems"]), r


def test_s7_a_table_under_the_sequences_name_is_named_not_a_crash_of_status(db, connect):
    """Attack: the owner role drops the sequence and makes a table of its name with no last_value
    column: the hand-over's ALTER SEQUENCE fails (not a sequence), so does every re-install. Safe:
    status returns and names it, before and after."""
    refused = owner_tries(db, f"DROP SEQUENCE {SEQ} CASCADE; CREATE TABLE {SEQ} (t67 int)")
    if refused:
        return
    r = _sequence_outcome(db, connect)
    assert isinstance(r["named_before"], list) and r["named_before"], r
    assert r["error"] is None or (isinstance(r["problems"], list) and r["problems"]), r


def test_h11_a_writer_empties_the_intake_through_an_overload_handed_to_the_sealer(db, connect):
    """Attack: the owner role makes audit.seal(text), SECURITY DEFINER, search_path pinned, whose body
    deletes the intake; its ACL is NULL (PUBLIC may execute), which the take-back never reads. After
    the re-install it is the sealer's: a writer calls it, and events written and not yet sealed are
    gone. Safe: the writer may not, and every event written is sealed."""
    writer = connect("app_writer")
    record(writer, "t67.a")
    refused = owner_tries(db, "CREATE FUNCTION audit.seal(t67 text) RETURNS bigint LANGUAGE sql SECURITY DEFINER"
                              " SET search_path = pg_catalog, pg_temp"
                              " AS $$ WITH d AS (DELETE FROM audit.event_intake RETURNING 1) SELECT count(*) FROM d $$")
    if refused:
        return
    error = reinstall(db)
    record(writer, "t67.b")
    deleted = None
    with suppress(psycopg.Error):
        deleted = writer.execute("SELECT audit.seal('x')").fetchone()[0]
    record(writer, "t67.c")
    failure = seal_all(db)
    assert sealed_order(db) == ["t67.a", "t67.b", "t67.c"], (deleted, error, failure, sealed_order(db))


def test_z5_the_psql_script_and_a_reinstall_with_a_tracked_table(db, connect):
    """False alarm: a tracked table (its generated capture function in the capture schema), then the
    psql script and a re-install: no problems, its writes captured and sealed."""
    from pgaudit_py.tracking import enable_tracking
    db.execute("CREATE TABLE public.t67_tracked (id int PRIMARY KEY, v text)")
    enable_tracking(db, "public.t67_tracked")
    assert script_reinstall(db) is None
    assert reinstall(db) is None
    db.execute("INSERT INTO public.t67_tracked VALUES (1, 'a')")
    assert problems_of(db) == []
    assert seal_all(db) is None
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 'public.t67_tracked.insert'"
                      " AND target_id = '1'").fetchone()[0] == 1
    assert both_verifiers(db) == (True, True)
