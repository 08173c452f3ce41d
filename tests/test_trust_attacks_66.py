"""A sixty-sixth attacker's trial: new variants against the mends of 8a0b742, c601391 and 71637b9.

Classes (test names carry the letter):
  G. grants and the re-install (71637b9 takes back every grant on the sealer's and the pruner's
     functions and on the intake's sequence): objects of the other function roles (the sandbox's
     _row_images and _baseline_images) that the schema's owner drops and makes anew; a grant
     WITH GRANT OPTION to audit_capture (the owner role's one membership) that audit_capture passes
     on to the writers, on a replaced prune_events or intake sequence; USAGE on a composite type of
     the schema taken from PUBLIC (the function roles' CREATE FUNCTION needs it); seal() made anew
     as audit_capture; the owner acting as audit_capture granting on a capture function; a column
     grant on the intake; default privileges of audit_capture, and of audit_sealer; a view dropped
     and made anew with a grant to PUBLIC; grants on the package's schemas; _capture_truncate()
     dropped and made anew in the owner's schema with a grant, which the hand-over moves back; a
     grant to a role whose name needs quoting (the take-back quotes it twice);
  Q. the intake's id sequence (8a0b742): no role of the package, the owner acting as audit_capture
     included, may move it, alter it, or set default privileges for its owner;
  F. persistence (c601391): a replacement intake sequence made UNLOGGED (the re-install's SET LOGGED
     takes tables alone; the sealer's own sequence set UNLOGGED is q1's); a cycle of UNLOGGED tables through a
     package table;
  P. publications read by status (c601391, 71637b9): a row filter on the primary key alone, which
     the default identity covers (a false alarm if named); a partition of the intake whose identity
     the owner changes after a filtered publication of the whole-row root; a whole-row table
     (idempotency_keys, quarantine, the intake) given another identity after a filtered
     publication; a truncate-only one;
  Z. false alarms: fresh install and re-install, an upgrade from 4858460 with pending events, the
     psql script (with its take-back) on an installed database, both verifiers agreeing.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
"""

from __future__ import annotations

import time
from contextlib import suppress
from datetime import timedelta

import psycopg
import pytest
from earlier_releases import installer_at
from trial_helpers import (
    both_verifiers,
    drop_publications,
    owner_publishes,
    owner_tries,
    problems_of,
    reinstall,
    seal_all,
)

from pgaudit_py import prune_events, record, seal, seal_status

SEQ = "audit.event_intake_intake_id_seq"
SLOT = 16384


# ============================================ helpers ============================================


def sealed_order(db: psycopg.Connection, like: str = "t66.%", schema: str = "audit") -> list[str]:
    return [k for (k,) in db.execute(f"SELECT kind FROM {schema}.event_log WHERE kind LIKE %s ORDER BY seq", [like])]


def owner_of(db: psycopg.Connection, what: str, kind: str = "rel") -> str:
    q = ("SELECT relowner::regrole::text FROM pg_class WHERE oid = %s::regclass" if kind == "rel"
         else "SELECT proowner::regrole::text FROM pg_proc WHERE oid = %s::regprocedure")
    return db.execute(q, [what]).fetchone()[0]


def pending_ids(db: psycopg.Connection, schema: str) -> list[tuple[int, str]]:
    return [tuple(r) for r in db.execute(f"SELECT intake_id, kind FROM {schema}.event_intake ORDER BY intake_id")]


def _old_with_pending(db, tmp_path_factory, schema: str = "t66u"):
    """An install by 4858460 with one block sealed and events pending in two intake slots."""
    old = installer_at("4858460", tmp_path_factory)
    old.install(db, schema)
    db.execute(f"SELECT {schema}.record('t66.sealed', payload => '{{\"n\": 0}}')")
    seal(db, audit_schema=schema)
    db.execute(f"SELECT {schema}.record('t66.p1')")
    db.execute(f"SELECT {schema}.record('t66.p2')")
    seq = db.execute(f"SELECT pg_get_serial_sequence('{schema}.event_intake', 'intake_id')").fetchone()[0]
    db.execute(f"SELECT setval('{seq}', {SLOT - 1})")  # the next write falls in the next slot
    db.execute(f"SELECT {schema}.record('t66.p3')")
    return old


# ================================ class G: grants and the re-install ================================


@pytest.mark.parametrize("typ", ["seal_result", "prune_result"])
def test_g1_usage_on_a_type_taken_from_public_cannot_make_every_reinstall_fail_unnamed(db, typ):
    """Attack: the owner role owns the schema's composite types (seal()'s and prune_events()'s result
    types). It revokes USAGE on one from PUBLIC: nothing at run time checks it, and the snapshot does
    not hold types' grants, so status stays empty; but the installer's CREATE OR REPLACE FUNCTION as
    the sealer (or the pruner), which holds USAGE through PUBLIC alone, is refused: every re-install
    and every upgrade fails, and nothing says why. Safe: the re-install succeeds, or status names the
    type's grant."""
    refused = owner_tries(db, f"REVOKE USAGE ON TYPE audit.{typ} FROM PUBLIC")
    if refused:
        return
    problems = problems_of(db)
    error = reinstall(db)
    assert error is None or any(typ in p for p in problems), (
        f"the re-install fails ({error}); status {problems}")


SANDBOX = {
    "_row_images": ("audit._row_images(anyarray)", """DROP FUNCTION audit._row_images(anyarray);
        CREATE FUNCTION audit._row_images(rows anyarray) RETURNS jsonb[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp AS $$ SELECT ARRAY(SELECT pg_catalog.to_jsonb(pg_catalog.unnest(rows))) $$;
        REVOKE ALL ON FUNCTION audit._row_images(anyarray) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION audit._row_images(anyarray) TO audit_capture"""),
    "_baseline_images": ("audit._baseline_images(oid, tid, tid)", """DROP FUNCTION audit._baseline_images(oid, tid, tid);
        CREATE FUNCTION audit._baseline_images(part oid, first_row tid, end_row tid) RETURNS SETOF jsonb
            LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT NULL::jsonb WHERE false $$;
        REVOKE ALL ON FUNCTION audit._baseline_images(oid, tid, tid) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION audit._baseline_images(oid, tid, tid) TO audit_capture"""),
    # The sealer's own, made anew as audit_capture (not the owner role's: the hand-over passes it by).
    "seal_as_capture": ("audit.seal(integer)", """DROP FUNCTION audit.seal(integer);
        GRANT CREATE ON SCHEMA audit TO audit_capture;
        SET ROLE audit_capture;
        CREATE FUNCTION audit.seal(max_events integer DEFAULT 10000) RETURNS audit.seal_result LANGUAGE sql
            SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT NULL::audit.seal_result $$;
        REVOKE ALL ON FUNCTION audit.seal(integer) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION audit.seal(integer) TO audit_maintainer;
        SET ROLE audit_owner;
        REVOKE CREATE ON SCHEMA audit FROM audit_capture"""),
}
OWNERS = {"_row_images": "audit_sandbox", "_baseline_images": "audit_sandbox", "seal_as_capture": "audit_sealer"}


@pytest.mark.parametrize("which", list(SANDBOX))
def test_g2_a_sandbox_function_the_owner_made_anew_is_handed_back_by_the_reinstall(db, which):
    """Attack (and, seal_as_capture, the sealer's seal() made anew as audit_capture, whose functions
    the hand-over passes by): the owner role, the schema's owner, drops the sandbox's function (which runs users'
    casts to JSON with no privilege at all) and makes one of its own in its place, SECURITY DEFINER
    as the owner role (users' casts then run with the owner's rights). Status names the changed
    function; the operator re-runs the installer, as it asks. The hand-over takes only the sealer's
    and the pruner's functions back, and the file's CREATE OR REPLACE as the sandbox is refused
    (must be owner): the re-install fails, and the replacement stays. Safe: the drop is refused, or
    the re-install succeeds and the function is the sandbox's again."""
    signature, statements = SANDBOX[which]
    refused = owner_tries(db, statements)
    if refused:
        return
    assert problems_of(db) != []
    error = reinstall(db)
    owner = owner_of(db, signature, "proc")
    assert error is None and owner == OWNERS[which], f"re-install: {error}; {signature} is {owner}'s"


def test_g3_a_grant_option_passed_on_through_audit_capture_cannot_make_the_reinstall_fail(db, connect):
    """Attack: the owner role drops the pruner's prune_events and makes a stub in its place, granting
    EXECUTE WITH GRANT OPTION to audit_capture (a role it is a member of); as audit_capture it grants
    EXECUTE to audit_writer. The grant's grantor is audit_capture: the installer's take-back, a
    superuser's REVOKE ALL ... FROM each grantee, acts as the function's owner, leaves the writer's
    grant and is refused for audit_capture's (dependent privileges exist): the re-install status asks
    for fails, and prune_events stays the owner's stub that the writers may run. Safe: the grant is
    refused, or the re-install succeeds and no writer may execute prune_events."""
    refused = owner_tries(db, """DROP FUNCTION audit.prune_events(interval, integer);
        CREATE FUNCTION audit.prune_events(older_than interval, batch_size integer DEFAULT 1000)
            RETURNS audit.prune_result LANGUAGE sql AS $$ SELECT NULL::audit.prune_result $$;
        REVOKE ALL ON FUNCTION audit.prune_events(interval, integer) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION audit.prune_events(interval, integer) TO audit_capture WITH GRANT OPTION;
        SET ROLE audit_capture;
        GRANT EXECUTE ON FUNCTION audit.prune_events(interval, integer) TO audit_writer""")
    if refused:
        return
    error = reinstall(db)
    runs = db.execute("SELECT has_function_privilege('app_writer', 'audit.prune_events(interval, integer)', 'EXECUTE')").fetchone()[0]
    owner = owner_of(db, "audit.prune_events(interval, integer)", "proc")
    assert error is None and not runs, f"re-install: {error}; prune_events is {owner}'s, the writer may run it: {runs}"


def test_g4_a_grant_option_on_a_replaced_sequence_passed_on_through_audit_capture(db, connect):
    """Attack: as g3, on the intake's sequence: the owner role drops the sealer's sequence, makes its
    own, grants UPDATE WITH GRANT OPTION to audit_capture, and as audit_capture grants UPDATE to
    audit_writer. 30_sealing.sql's take-back runs as the sealer and revokes only what the sealer
    granted. Safe: the re-install succeeds and no writer may move the sequence (nor the owner role
    acting as audit_capture), or status names it."""
    nxt = db.execute(f"SELECT last_value + 1 FROM {SEQ}").fetchone()[0]
    refused = owner_tries(db, f"""DROP SEQUENCE {SEQ} CASCADE;
        CREATE SEQUENCE {SEQ} AS bigint START {nxt} CACHE 1 NO CYCLE;
        ALTER TABLE audit.event_intake ALTER COLUMN intake_id SET DEFAULT nextval('{SEQ}');
        GRANT USAGE ON SEQUENCE {SEQ} TO audit_pruner;
        GRANT USAGE, UPDATE ON SEQUENCE {SEQ} TO audit_capture WITH GRANT OPTION;
        SET ROLE audit_capture;
        GRANT UPDATE ON SEQUENCE {SEQ} TO audit_writer""")
    if refused:
        return
    error = reinstall(db)
    movers = [r for (r,) in db.execute(
        "SELECT r FROM unnest(ARRAY['audit_writer', 'audit_capture', 'audit_owner']) r"
        " WHERE has_sequence_privilege(r, %s, 'UPDATE')", [SEQ])]
    problems = problems_of(db)
    assert error is None and (not movers or problems), (
        f"re-install: {error}; {movers} may move the sequence; status {problems}")


def test_g5_the_owner_as_audit_capture_granting_on_a_capture_function_stays_named_after_a_reinstall(db):
    """Attack: the owner role acts as audit_capture (its one membership) and grants EXECUTE on
    _take_baseline (SECURITY DEFINER, writes baseline events as the capture role) to audit_writer, or
    drops it and makes it anew (same body) with that grant. The operator re-runs the installer.
    Safe: after it, no writer may execute it, or status names it."""
    fn = "audit_capture._take_baseline(oid, uuid)"
    refused = owner_tries(db, f"SET ROLE audit_capture; GRANT EXECUTE ON FUNCTION {fn} TO audit_writer")
    if refused:
        return
    named = problems_of(db)
    error = reinstall(db)
    runs = db.execute("SELECT has_function_privilege('app_writer', %s, 'EXECUTE')", [fn]).fetchone()[0]
    problems = problems_of(db)
    assert named and error is None and (not runs or problems), (named, error, runs, problems)


def test_g6_a_column_grant_on_the_intake_stays_named_after_a_reinstall(db):
    """Attack: the owner role owns the intake and grants UPDATE (intake_id) and SELECT (payload) to
    audit_writer as column grants (the table-level check reads relacl alone). Safe: named, and after
    a re-install either taken back or still named."""
    refused = owner_tries(db, "GRANT UPDATE (intake_id), SELECT (payload) ON audit.event_intake TO audit_writer")
    if refused:
        return
    named = problems_of(db)
    error = reinstall(db)
    left = db.execute("SELECT has_column_privilege('audit_writer', 'audit.event_intake', 'intake_id', 'UPDATE')").fetchone()[0]
    problems = problems_of(db)
    assert named and error is None and (not left or problems), (named, error, left, problems)


def test_g7_default_privileges_of_audit_capture_set_by_the_owner_are_named(db):
    """Attack: as a member of audit_capture, the owner role sets default privileges for it in its
    schema: every capture function tracking generates would be executable by the writers. And it
    tries the same for audit_sealer, which it is no member of. Safe: named (the installer refuses
    them too), and the sealer's refused."""
    refused = owner_tries(db, "ALTER DEFAULT PRIVILEGES FOR ROLE audit_capture IN SCHEMA audit_capture"
                              " GRANT EXECUTE ON FUNCTIONS TO audit_writer")
    sealer = owner_tries(db, "ALTER DEFAULT PRIVILEGES FOR ROLE audit_sealer GRANT UPDATE ON SEQUENCES TO audit_writer")
    problems = problems_of(db)
    assert sealer is not None
    assert refused or any("audit_capture" in p and "DEFAULT PRIVILEGES" in p for p in problems), problems


def test_g8_a_view_the_owner_made_anew_with_a_grant_to_public_stays_named_after_a_reinstall(db):
    """Attack: the owner role drops audit.events (the reader's view of the log) and makes it anew with
    the same definition and grants, plus SELECT to PUBLIC: any login reads every event. The re-install
    replaces the view's definition (CREATE OR REPLACE keeps its grants). Safe: named, and after the
    re-install PUBLIC may not read it, or status still names it."""
    definition = db.execute("SELECT pg_get_viewdef('audit.events'::regclass)").fetchone()[0]
    grants = db.execute("SELECT string_agg(format('GRANT %s ON audit.events TO %s', a.privilege_type,"
                        " a.grantee::regrole), '; ') FROM pg_class c, aclexplode(c.relacl) a"
                        " WHERE c.oid = 'audit.events'::regclass AND a.grantee <> c.relowner").fetchone()[0]
    refused = owner_tries(db, f"DROP VIEW audit.events CASCADE; CREATE VIEW audit.events AS {definition};"
                              f" {grants}; GRANT SELECT ON audit.events TO PUBLIC")
    if refused:
        return
    named = problems_of(db)
    error = reinstall(db)
    public = db.execute("SELECT has_table_privilege('app_attacker', 'audit.events', 'SELECT')").fetchone()[0]
    problems = problems_of(db)
    assert named and error is None and (not public or problems), (named, error, public, problems)


@pytest.mark.parametrize("statement", [
    "GRANT USAGE ON SCHEMA audit TO PUBLIC",
    "SET ROLE audit_capture; GRANT CREATE ON SCHEMA audit_capture TO audit_writer",
    "SET ROLE audit_capture; GRANT USAGE ON SCHEMA audit_capture TO PUBLIC",
])
def test_g9_a_grant_on_a_package_schema_stays_named_after_a_reinstall(db, statement):
    """Attack: the owner role grants on the schema it owns, or (acting as audit_capture) on the
    capture schema: USAGE to PUBLIC, CREATE to the writers (a function of theirs found by the
    package's calls). Safe: named, and after a re-install taken back or still named."""
    refused = owner_tries(db, statement)
    if refused:
        return
    named = problems_of(db)
    error = reinstall(db)
    left = db.execute("SELECT has_schema_privilege('app_attacker', 'audit', 'USAGE')"
                      " OR has_schema_privilege('app_writer', 'audit_capture', 'CREATE')"
                      " OR has_schema_privilege('app_attacker', 'audit_capture', 'USAGE')").fetchone()[0]
    problems = problems_of(db)
    assert named and error is None and (not left or problems), (named, error, left, problems)


def test_g10_a_grant_on_a_capture_function_made_in_the_owners_schema_is_not_recorded_by_the_reinstall(db):
    """Attack: the owner role, acting as audit_capture, drops the capture role's _capture_truncate()
    (EXECUTE on it is what attaching it as a trigger needs: the maintainer's alone), and makes one of
    that name in the audit schema as itself, granting EXECUTE to audit_writer. Status names it; the
    re-install hands it to audit_capture and moves it to the capture schema (as releases before 0.2
    made them), which rewrites the grant's grantor to audit_capture, and no take-back covers the
    capture role's functions: the record now holds the writers' EXECUTE as installed. Safe: the
    drop is refused, or after the re-install no writer may execute it, or status names it."""
    refused = owner_tries(db, """SET ROLE audit_capture; DROP FUNCTION audit_capture._capture_truncate();
        SET ROLE audit_owner;
        CREATE FUNCTION audit._capture_truncate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
        REVOKE ALL ON FUNCTION audit._capture_truncate() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION audit._capture_truncate() TO audit_maintainer, audit_writer""")
    if refused:
        return
    named = problems_of(db)
    error = reinstall(db)
    runs = db.execute("SELECT has_function_privilege('app_writer', 'audit_capture._capture_truncate()', 'EXECUTE')").fetchone()[0]
    problems = problems_of(db)
    assert named and error is None and (not runs or problems), (
        f"named {bool(named)}; re-install: {error}; the writer may attach it: {runs}; status {problems}")


APP = '"t66_App"'  # a role whose name needs quoting


@pytest.mark.parametrize("target", ["sequence", "prune_events"])
def test_g11_a_grant_to_a_role_whose_name_needs_quoting_cannot_make_the_reinstall_fail(db, target):
    """Attack: the cluster has a login whose name needs quoting ("t66_App", as many applications'
    roles do). The owner role drops the sealer's sequence (or the pruner's prune_events) and makes
    its own, granting UPDATE (EXECUTE) to that role. The take-back (30_sealing.sql's DO block, and
    take_back_grants_statement) quotes a::regrole::text, which is already quoted, a second time:
    REVOKE ... FROM a thrice-quoted name names no role, and the re-install fails. Safe: the re-install
    succeeds and the role may not move the sequence (run prune_events)."""
    db.execute(f"CREATE ROLE {APP} LOGIN")
    try:
        if target == "sequence":
            nxt = db.execute(f"SELECT last_value + 1 FROM {SEQ}").fetchone()[0]
            refused = owner_tries(db, f"""DROP SEQUENCE {SEQ} CASCADE;
                CREATE SEQUENCE {SEQ} AS bigint START {nxt} CACHE 1 NO CYCLE;
                ALTER TABLE audit.event_intake ALTER COLUMN intake_id SET DEFAULT nextval('{SEQ}');
                GRANT USAGE ON SEQUENCE {SEQ} TO audit_capture, audit_pruner;
                GRANT UPDATE ON SEQUENCE {SEQ} TO {APP}""")
        else:
            refused = owner_tries(db, f"""DROP FUNCTION audit.prune_events(interval, integer);
                CREATE FUNCTION audit.prune_events(older_than interval, batch_size integer DEFAULT 1000)
                    RETURNS audit.prune_result LANGUAGE sql AS $$ SELECT NULL::audit.prune_result $$;
                GRANT EXECUTE ON FUNCTION audit.prune_events(interval, integer) TO {APP}""")
        if refused:
            return
        error = reinstall(db)
        left = db.execute("SELECT has_sequence_privilege(%s, %s, 'UPDATE')"
                          " OR has_function_privilege(%s, 'audit.prune_events(interval, integer)', 'EXECUTE')",
                          [APP.strip('"'), SEQ, APP.strip('"')]).fetchone()[0]
        assert error is None and not left, f"re-install: {error}; the role keeps its right: {left}"
    finally:
        with suppress(psycopg.Error):
            db.execute("RESET ROLE")
        db.execute(f"DROP OWNED BY {APP}; DROP ROLE {APP}")


# ================================ class Q: the intake's id sequence ================================


def test_q1_no_role_of_the_package_may_move_or_alter_the_sealers_sequence(db, connect):
    """Attack: every route a role of the package has to the sealer's sequence: UPDATE (setval) or
    ownership for the owner, capture, maintainer, writer, reader, pruner, secrets; the owner role
    acting as audit_capture runs setval, ALTER SEQUENCE ... RESTART, SET UNLOGGED, OWNER TO. Safe:
    none may, and the sequence is the sealer's."""
    roles = ["audit_owner", "audit_capture", "audit_maintainer", "audit_writer", "audit_reader", "audit_pruner",
             "audit_secrets"]
    movers = [r for r in roles if db.execute("SELECT has_sequence_privilege(%s, %s, 'UPDATE')"
                                             " OR pg_has_role(%s, 'audit_sealer', 'USAGE')", [r, SEQ, r]).fetchone()[0]]
    done = []
    for statement in [f"SELECT setval('{SEQ}', 1)", f"ALTER SEQUENCE {SEQ} RESTART WITH 1",
                      f"ALTER SEQUENCE {SEQ} SET UNLOGGED", f"ALTER SEQUENCE {SEQ} OWNER TO audit_capture",
                      f"ALTER SEQUENCE {SEQ} MAXVALUE 100"]:
        for prefix in ("", "SET ROLE audit_capture; "):
            if owner_tries(db, prefix + statement) is None:
                done.append(prefix + statement)
    # A GRANT by one without the grant option is no error (a warning): what it granted counts.
    for prefix in ("", "SET ROLE audit_capture; "):
        owner_tries(db, f"{prefix}GRANT UPDATE ON SEQUENCE {SEQ} TO audit_writer")
    for login in ("app_writer", "app_maintainer"):
        with suppress(psycopg.Error):
            connect(login).execute(f"SELECT setval('{SEQ}', 1)")
            done.append(f"{login}: setval")
    movers += [r for r in roles if db.execute("SELECT has_sequence_privilege(%s, %s, 'UPDATE')", [r, SEQ]).fetchone()[0]]
    assert not movers and not done and owner_of(db, SEQ) == "audit_sealer", (movers, done)


# ===================================== class F: persistence =====================================


def test_f1_an_unlogged_replacement_sequence_is_logged_again_by_the_reinstall(db, connect):
    """Attack: the owner role (the schema's owner) drops the sealer's sequence and makes its own
    UNLOGGED, with the same start, default and grants. Status names it; the re-install hands it to
    the sealer, but its SET LOGGED loop takes tables alone (relkind 'r'): the sequence stays
    unlogged, and a crash puts it back to its start (later writes then take ids of sealed or pending
    events). Safe: the replacement is refused, or after the re-install it is logged (and status
    quiet)."""
    writer = connect("app_writer")
    record(writer, "t66.a")
    nxt = db.execute(f"SELECT last_value + 1 FROM {SEQ}").fetchone()[0]
    refused = owner_tries(db, f"""DROP SEQUENCE {SEQ} CASCADE;
        CREATE UNLOGGED SEQUENCE {SEQ} AS bigint START {nxt} CACHE 1 NO CYCLE;
        ALTER TABLE audit.event_intake ALTER COLUMN intake_id SET DEFAULT nextval('{SEQ}');
        GRANT USAGE ON SEQUENCE {SEQ} TO audit_capture, audit_pruner""")
    if refused:
        return
    named = problems_of(db)
    error = reinstall(db)
    persistence = db.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass", [SEQ]).fetchone()[0]
    assert named and error is None and persistence == "p", (
        f"named {bool(named)}; re-install: {error}; the sequence's persistence {persistence!r}; status {problems_of(db)}")


def test_f2_a_cycle_of_unlogged_tables_through_a_package_table_is_named(db):
    """Attack: the owner role sets rate_counters UNLOGGED and adds an UNLOGGED table of its own, each
    with a foreign key to the other: no SET LOGGED can take either alone, so every re-install fails
    at sql/10_guards.sql. Safe: the re-install succeeds, or status names the unlogged package table
    and the added one."""
    refused = owner_tries(db, """ALTER TABLE audit.rate_counters SET UNLOGGED;
        CREATE UNLOGGED TABLE audit.t66_x (id int PRIMARY KEY, key text, shard integer,
            FOREIGN KEY (key, shard) REFERENCES audit.rate_counters);
        ALTER TABLE audit.rate_counters ADD COLUMN t66 int REFERENCES audit.t66_x""")
    if refused:
        return
    problems = problems_of(db)
    error = reinstall(db)
    named = [p for p in problems if "rate_counters" in p] and [p for p in problems if "t66_x" in p]
    assert error is None or named, f"the re-install fails ({error}); status {problems}"


# ===================================== class P: publications =====================================


@pytest.mark.parametrize("table,where", [("event_log", "seq > 0"), ("blocks", "block_no > 0"),
                                         ("seal_state", "singleton IS NOT NULL")])
def test_p1_a_row_filter_on_the_primary_key_alone_is_no_false_alarm(db, connect, table, where):
    """False alarm: a superuser's change-data capture publishes a package table's updates and deletes
    with a row filter on its primary key alone, which the table's default replica identity (that
    key) covers: PostgreSQL accepts every UPDATE and DELETE, and sealing and prune go on. Safe:
    sealing and prune work, and status names no problem."""
    db.execute(f"CREATE PUBLICATION t66_cdc FOR TABLE audit.{table} WHERE ({where})"
               " WITH (publish = 'update, delete', publish_via_partition_root = true)")
    try:
        record(db, "t66.old")
        failure = seal_all(db)
        time.sleep(1.1)
        record(db, "t66.new")
        failure = failure or seal_all(db)
        error = None
        try:
            prune_events(connect("app_maintainer"), timedelta(seconds=1))
        except psycopg.Error as e:
            error = str(e).splitlines()[0]
        failure = failure or seal_all(db)  # prune's own event
        left = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't66.old'").fetchone()[0]
        problems = problems_of(db)
    finally:
        drop_publications(db, "t66")
    assert failure is None and error is None and left == 0 and seal_status(db).pending == 0, (failure, error, left)
    assert problems == [], problems


@pytest.mark.parametrize("identity", ["DEFAULT", "NOTHING"])
def test_p2_a_partitions_identity_changed_under_a_filtered_publication_of_the_whole_row_root_is_named(db, identity):
    """Attack: a row filter on the intake is not named (its identity is the whole row). The owner
    role publishes the intake's deletes through its root with a row filter, then sets the identity
    of a partition writers reach (event_intake_0 has no key: DEFAULT is none) to DEFAULT or NOTHING:
    sealing's DELETE there is refused. Safe: sealing goes on, or status names it."""
    if not owner_publishes(db, "CREATE PUBLICATION t66_pub FOR TABLE audit.event_intake WHERE (kind <> '')"
                               " WITH (publish = 'delete', publish_via_partition_root = true)"):
        return
    try:
        quiet = problems_of(db)
        refused = owner_tries(db, f"ALTER TABLE audit.event_intake_0 REPLICA IDENTITY {identity}")
        record(db, "t66.a")
        failure = seal_all(db)
        pending = seal_status(db).pending
        problems = problems_of(db)
    finally:
        drop_publications(db, "t66")
    assert quiet == []
    assert refused or pending == 0 or problems, f"sealing stopped ({failure}); status intact"


def test_p3_a_truncate_only_publication_with_a_row_filter_is_no_false_alarm(db):
    """False alarm: a publication of the intake's and the log's truncates only, with a row filter:
    it refuses nothing. Safe: sealing works and status names no problem."""
    db.execute("CREATE PUBLICATION t66_tr FOR TABLE audit.event_intake WHERE (kind <> ''),"
               " audit.event_log WHERE (kind <> '') WITH (publish = 'truncate', publish_via_partition_root = true)")
    try:
        record(db, "t66.a")
        failure = seal_all(db)
        problems = problems_of(db)
    finally:
        drop_publications(db, "t66")
    assert failure is None and problems == [], (failure, problems)


@pytest.mark.parametrize("table,identity", [("idempotency_keys", "DEFAULT"), ("quarantine", "NOTHING"),
                                            ("event_intake", "DEFAULT")])
def test_p4_a_whole_row_identity_given_up_after_a_filtered_publication_is_named(db, table, identity):
    """Attack: the owner role publishes a whole-row-identity table's updates and deletes with a row
    filter (not named: the whole row covers it), then sets its identity to DEFAULT (no key: none) or
    NOTHING: its updates and deletes are refused from then on. Safe: refused, or status names it
    (the identity, or the publication)."""
    if not owner_publishes(db, f"CREATE PUBLICATION t66_pub FOR TABLE audit.{table} WHERE (true)"
                               " WITH (publish = 'update, delete', publish_via_partition_root = true)"):
        return
    try:
        quiet = problems_of(db)
        refused = owner_tries(db, f"ALTER TABLE audit.{table} REPLICA IDENTITY {identity}")
        problems = problems_of(db)
    finally:
        drop_publications(db, "t66")
    assert quiet == []
    assert refused or problems, "the identity given up under a filtered publication, status intact"


# ===================================== class Z: false alarms =====================================


def test_z1_a_fresh_install_and_a_reinstall_leave_no_problems_and_both_verifiers_agree(db, connect):
    """False alarm: a fresh install and a re-install: the sequence the sealer's, logged, no grant on
    the sealer's or pruner's functions but the release's, events sealed in order, no problems, both
    verifiers pass."""
    writer = connect("app_writer")
    record(writer, "t66.a")
    assert problems_of(db) == []
    assert reinstall(db) is None
    record(writer, "t66.b")
    assert owner_of(db, SEQ) == "audit_sealer"
    assert db.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass", [SEQ]).fetchone()[0] == "p"
    assert seal_all(db) is None
    assert sealed_order(db) == ["t66.a", "t66.b"]
    assert problems_of(db) == []
    assert both_verifiers(db) == (True, True)


def test_z2_an_upgrade_from_4858460_with_pending_events_then_a_reinstall(db, connect, tmp_path_factory):
    """False alarm: an install by 4858460 with sealed and pending events, upgraded, re-installed,
    sealed: ids and order kept, no problems, both verifiers pass."""
    _old_with_pending(db, tmp_path_factory)
    before = pending_ids(db, "t66u")
    assert reinstall(db, "t66u") is None
    assert pending_ids(db, "t66u") == before
    assert owner_of(db, "t66u.event_intake_intake_id_seq") == "t66u_sealer"
    assert problems_of(db, "t66u") == []
    assert reinstall(db, "t66u") is None
    assert problems_of(db, "t66u") == []
    db.execute("SELECT t66u.record('t66.p4')")
    assert seal_all(db, "t66u") is None
    assert sealed_order(db, schema="t66u") == ["t66.sealed", "t66.p1", "t66.p2", "t66.p3", "t66.p4"]
    assert both_verifiers(db, "t66u") == (True, True)


def test_z3_the_psql_script_on_an_installed_database_takes_back_nothing_the_release_grants(db, connect):
    """False alarm: the script install_script prints (with 71637b9's take-back), applied with psql
    to an installed database with a pending event: no problems, the release's grants on the sealer's
    and the pruner's functions and on the sequence kept (the maintainer seals and prunes), both
    verifiers pass."""
    from test_install_script import psql_apply

    from pgaudit_py.install_script import install_script
    record(connect("app_writer"), "t66.a")
    grants = db.execute("SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc p"
                        " WHERE p.proowner IN ('audit_sealer'::regrole, 'audit_pruner'::regrole) ORDER BY 1").fetchall()
    seq_acl = db.execute("SELECT relacl::text FROM pg_class WHERE oid = %s::regclass", [SEQ]).fetchone()[0]
    script = install_script(db, "audit")
    assert "REVOKE ALL ON ROUTINE" in script
    psql_apply(db, script)
    assert db.execute("SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc p"
                      " WHERE p.proowner IN ('audit_sealer'::regrole, 'audit_pruner'::regrole) ORDER BY 1").fetchall() == grants
    assert db.execute("SELECT relacl::text FROM pg_class WHERE oid = %s::regclass", [SEQ]).fetchone()[0] == seq_acl
    assert problems_of(db) == []
    maintainer = connect("app_maintainer")
    assert seal_all(maintainer) is None
    record(connect("app_writer"), "t66.b")
    assert seal_all(maintainer) is None
    assert sealed_order(db) == ["t66.a", "t66.b"]
    assert both_verifiers(db) == (True, True)
