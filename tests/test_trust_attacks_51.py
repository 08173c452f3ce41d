"""A fifty-first attacker's trial, against installing and upgrading: the installer (`install()`,
`pgaudit-install`), the script it writes (`pgaudit-install --sql`), yoyo's bookkeeping, and the
integrity check (`sql/80_integrity.sql`, `pgaudit status`), by roles that are no superuser but hold
what real databases give: the database's owner, a role with CREATE on the database, a role with
CREATEROLE that made the package's roles before the first install, the owner level (a member of the
owner role, as the docs grant a non-superuser installer) leaving changes that status must name, and
a table's owner. New variants: where pgcrypto lands (the installer creates it in the first schema of
its session's search_path: a "$user" schema another role made, the database owner's public or a
schema the database's search_path names) and who may then drop it, cascading into the package's
functions; group roles made beforehand with members, CREATEROLE, or memberships of their own;
default privileges set for the owner role before it creates anything; owner-level changes outside
what the snapshot compares (column privileges, sequences, row level security, rules, members of
the owner role); the install script applied after a squatter made its schemas; an install killed
while yoyo held its lock; and standard_conforming_strings, which decides how the package's
PL/pgSQL reads a backslash.

Each test asserts the SAFE outcome on what the database holds: it passes when the product holds and
fails when the attack works.

Roles: every role made here is named t51_* (schemas installed here are named t51*, so are their
roles), and dropped after its test; table_owner is the conftest `attacker` fixture's.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator

import psycopg
import pytest

from pgaudit_py import enable_tracking, list_events, record, seal
from pgaudit_py.errors import InstallError
from pgaudit_py.install_script import install_script
from pgaudit_py.installer import ROLE_SUFFIXES, install, status
from pgaudit_py.tempdb import find_binary

# ====================================== helpers and fixtures ======================================


class Cluster:
    """Databases and roles of one test, all dropped after it (databases first: roles own things there)."""

    def __init__(self, db: psycopg.Connection):
        self.db = db
        self.info = db.info
        self.databases: list[str] = []
        self.roles: list[str] = []
        self.opened: list[psycopg.Connection] = []

    def role(self, name: str, attributes: str = "LOGIN") -> str:
        assert name.startswith("t51"), name
        self.db.execute(f"DROP ROLE IF EXISTS {name}")
        self.db.execute(f"CREATE ROLE {name} {attributes}")
        self.roles.append(name)
        return name

    def schema_roles(self, schema: str) -> None:
        """The roles the installer makes for a schema of this file: dropped after the test."""
        assert schema.startswith("t51"), schema
        self.roles.extend(f"{schema}_{suffix}" for suffix in ROLE_SUFFIXES)

    def database(self, name: str, owner: str | None = None) -> psycopg.Connection:
        assert name.startswith("t51"), name
        self.db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.db.execute(f"CREATE DATABASE {name}" + (f" OWNER {owner}" if owner else ""))
        self.databases.append(name)
        return self.connect(name)

    def connect(self, dbname: str, user: str | None = None) -> psycopg.Connection:
        conn = psycopg.connect(host=self.info.host, port=self.info.port, user=user or self.info.user,
                               dbname=dbname, autocommit=True)
        self.opened.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.opened:
            conn.close()
        for name in self.databases:
            self.db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for name in reversed(self.roles):
            if self.db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                self.db.execute(f"DROP OWNED BY {name}")  # in the test's own database
                self.db.execute(f"DROP ROLE {name}")


@pytest.fixture
def cluster(db) -> Iterator[Cluster]:
    made = Cluster(db)
    try:
        yield made
    finally:
        made.close()


def package_functions(conn: psycopg.Connection, schema: str = "audit") -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = to_regnamespace(%s)",
        (schema,)).fetchall()}


def pgcrypto_home(conn: psycopg.Connection) -> tuple[str, str]:
    row = conn.execute("SELECT n.nspname, n.nspowner::regrole::text FROM pg_extension e"
                       " JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto'").fetchone()
    assert row is not None
    return row


def problems_of(conn: psycopg.Connection, schema: str = "audit") -> list[str]:
    return status(conn, schema).problems


def psql(conn: psycopg.Connection, script: str) -> tuple[int, str]:
    """Applies a script as the connection's role, as docs/installer.md says: psql -1, ON_ERROR_STOP."""
    info = conn.info
    done = subprocess.run([find_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", info.host,
                           "-p", str(info.port), "-U", info.user, "-d", info.dbname, "-f", "-"],
                          input=script, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


# ================ class 1: pgcrypto created where a role that is no superuser can drop it ================
#
# install() runs `CREATE EXTENSION IF NOT EXISTS pgcrypto` with its session's search_path, so the
# extension goes to the first schema of it that exists: "$user" (a schema named after the installing
# role, which any role with CREATE on the database may make), then public (owned, since PostgreSQL
# 15, by the database's owner), or whatever `ALTER DATABASE ... SET search_path` names. The installer
# refuses a pgcrypto whose OWNER is no superuser ("it could drop the extension and put look-alikes in
# its place"), but not one whose SCHEMA's owner is no superuser: a schema's owner may drop it, and
# DROP SCHEMA ... CASCADE takes the extension with it, and every function of the package bound to it.

def _squat_user_schema(cl: Cluster) -> psycopg.Connection:
    cl.role("t51_sq")
    su = cl.database("t51_crypto")
    su.execute("GRANT CREATE ON DATABASE t51_crypto TO t51_sq")
    with cl.connect("t51_crypto", "t51_sq") as sq:  # named after the superuser that will install
        sq.execute(f'CREATE SCHEMA "{cl.info.user}"; GRANT USAGE ON SCHEMA "{cl.info.user}" TO PUBLIC')
    return su


def _public_of_the_database_owner(cl: Cluster) -> psycopg.Connection:
    cl.role("t51_sq")
    return cl.database("t51_crypto", owner="t51_sq")


def _database_search_path(cl: Cluster) -> psycopg.Connection:
    cl.role("t51_sq")
    su = cl.database("t51_crypto", owner="t51_sq")
    su.execute(f'ALTER SCHEMA public OWNER TO "{cl.info.user}"')  # a hardened public: the superuser's
    with cl.connect("t51_crypto", "t51_sq") as dbo:
        dbo.execute("CREATE SCHEMA ext; GRANT USAGE ON SCHEMA ext TO PUBLIC;"
                    " ALTER DATABASE t51_crypto SET search_path = ext, public")
    return cl.connect("t51_crypto")  # a session that starts with the database's setting


PGCRYPTO_HOMES: dict[str, Callable[[Cluster], psycopg.Connection]] = {
    "a $user schema made by a role with CREATE on the database": _squat_user_schema,
    "public, owned by the database's owner": _public_of_the_database_owner,
    "a schema the database owner's ALTER DATABASE SET search_path names": _database_search_path,
}


@pytest.mark.parametrize("home", PGCRYPTO_HOMES)
def test_c1_the_schema_pgcrypto_is_put_in_cannot_be_dropped_with_the_packages_functions(cluster, home):
    """Attack: the ground is prepared so that the superuser's install creates pgcrypto in a schema
    t51_sq owns; afterwards t51_sq runs DROP SCHEMA ... CASCADE. Safe: the install refuses, or every
    function of the package is still there afterwards (the secrets' crypto helpers, bound by oid to
    pgcrypto, go with the extension)."""
    su = PGCRYPTO_HOMES[home](cluster)
    try:
        install(su)
    except InstallError:
        return  # refused: safe
    before = package_functions(su)
    where, owner = pgcrypto_home(su)
    with cluster.connect("t51_crypto", "t51_sq") as sq, contextlib.suppress(psycopg.Error):
        sq.execute(f'DROP SCHEMA "{where}" CASCADE')
    missing = sorted(before - package_functions(su))
    assert missing == [], (f"pgcrypto was created in schema {where} (owned by {owner}), whose owner dropped it and "
                           f"with it {missing}")


def test_c1_status_names_pgcrypto_in_a_schema_a_role_that_is_no_superuser_owns(cluster):
    """The same ground ($user squatted): before anything is dropped, the installation rests on a schema
    that a role with nothing but CREATE on the database owns. Safe: the install refuses, or status
    does not call it intact."""
    su = _squat_user_schema(cluster)
    try:
        install(su)
    except InstallError:
        return
    where, owner = pgcrypto_home(su)
    assert owner != "t51_sq" or problems_of(su) != [], f"status is intact with pgcrypto in {where}, owned by {owner}"


# ================ class 2: the package's roles made beforehand by a role with CREATEROLE ================
#
# _ensure_roles() reuses any role of the package's names as it finds it (roles are shared by the
# cluster's databases). The integrity check looks at members of the four function roles only, and at
# LOGIN, SUPERUSER and BYPASSRLS: members of the owner role, a group role's own attributes
# (CREATEROLE) and the roles a function role is a member of go unseen.

@pytest.fixture
def precreated(cluster):
    """t51_cr (LOGIN CREATEROLE) prepares the roles of schema t51p; t51_friend is its friend, a login
    with no right of its own. Yields (run as t51_cr, install as the superuser -> its connection)."""
    cluster.role("t51_cr", "LOGIN CREATEROLE")
    cluster.role("t51_friend")
    cluster.schema_roles("t51p")
    su = cluster.database("t51_pre")
    maker = cluster.connect("t51_pre", "t51_cr")

    def do_install() -> psycopg.Connection:
        install(su, "t51p")
        return su

    return maker, do_install


def test_c2_a_member_the_maker_gave_the_owner_role_beforehand_is_removed_or_named(precreated, cluster):
    """Attack: t51_cr makes t51p_owner and grants it to t51_friend (who keeps it if t51_cr later loses
    CREATEROLE). A superuser installs: the installer is no member, so no member is expected (docs:
    nobody logs in as it; only a non-superuser installer is a member). Safe: the friend is no longer
    a member, or status names it."""
    maker, do_install = precreated
    maker.execute("CREATE ROLE t51p_owner NOLOGIN; GRANT t51p_owner TO t51_friend")
    su = do_install()
    member = su.execute("SELECT pg_has_role('t51_friend', 't51p_owner', 'MEMBER')").fetchone()[0]
    problems = problems_of(su, "t51p")
    assert not member or any("t51_friend" in p for p in problems), \
        f"t51_friend may act as the owner role and status says {problems}"


@pytest.mark.parametrize("group", ["writer", "reader"])
def test_c2_a_group_role_made_with_createrole_does_not_let_its_members_take_the_owner_role(precreated, cluster, group):
    """Attack: t51_cr makes t51p_writer (or _reader) NOLOGIN CREATEROLE. The applications the DBA then
    grants it to may SET ROLE to it and, in PostgreSQL 15, grant themselves any role that is no
    superuser: t51p_owner. Safe: that grant fails (the installer made the group role harmless, or
    refused it), or status named the attribute first."""
    maker, do_install = precreated
    maker.execute(f"CREATE ROLE t51p_{group} NOLOGIN CREATEROLE")
    su = do_install()
    problems = problems_of(su, "t51p")
    su.execute(f"GRANT t51p_{group} TO t51_friend")  # what the docs say to do with the group roles
    with cluster.connect("t51_pre", "t51_friend") as app, contextlib.suppress(psycopg.Error):
        app.execute(f"SET ROLE t51p_{group}; GRANT t51p_owner TO t51_friend")
    member = su.execute("SELECT pg_has_role('t51_friend', 't51p_owner', 'MEMBER')").fetchone()[0]
    assert not member or any(f"t51p_{group}" in p for p in problems), \
        f"a member of t51p_{group} made itself a member of the owner role; status said {problems}"


@pytest.mark.parametrize("grant", ["GRANT t51p_reader TO t51p_sandbox", "GRANT t51p_secrets TO t51p_capture"],
                         ids=["the sandbox a member of the reader", "the capture role a member of secrets"])
def test_c2_a_function_role_that_is_a_member_of_another_role_is_named(precreated, cluster, grant):
    """Attack: the function roles hold "nothing at all" (the sandbox, which runs users' casts) or
    "exactly what their functions need"; t51_cr makes them members of a group role first, so that
    what runs as them reads events or secrets. Safe: after the install the membership is gone, or
    status names it."""
    maker, do_install = precreated
    member, group = grant.split()[3], grant.split()[1]
    maker.execute(f"CREATE ROLE {group} NOLOGIN; CREATE ROLE {member} NOLOGIN; {grant}")
    su = do_install()
    held = su.execute("SELECT pg_has_role(%s, %s, 'USAGE')", (member, group)).fetchone()[0]
    problems = problems_of(su, "t51p")
    assert not held or any(member in p and group in p for p in problems), \
        f"{member} holds {group}'s rights and status says {problems}"


@pytest.mark.parametrize("made", [
    "CREATE ROLE t51p_sealer NOLOGIN; GRANT t51p_sealer TO t51_friend WITH ADMIN OPTION",
    "CREATE ROLE t51p_owner LOGIN PASSWORD 't51-secret'",
], ids=["an admin option on the sealer role", "a login owner role"])
def test_c2_what_status_already_checks_of_a_precreated_role_is_named(precreated, cluster, made):
    """Controls: a member of a function role (with the ADMIN OPTION) and LOGIN on the owner role, made
    before the install, are named by status."""
    maker, do_install = precreated
    maker.execute(made)
    assert any(("t51p_sealer" in p and "t51_friend" in p) or "t51p_owner can log in" in p
               for p in problems_of(do_install(), "t51p"))


# ================ class 3: default privileges set for the owner role before the install ================
#
# A role that could act as the owner role (t51_cr, with CREATEROLE, grants itself t51d_owner for a
# moment) sets ALTER DEFAULT PRIVILEGES FOR ROLE t51d_owner in the database. Every table, sequence
# and function the install then creates carries those grants. sql/90_grants.sql revokes from PUBLIC
# and the package's own roles only, and never on sequences; the snapshot status compares with is
# taken after the install, so the grants are the baseline.

DEFAULTS = {
    "SELECT on tables to a login": (
        "GRANT SELECT ON TABLES TO t51_friend",
        "SELECT count(*) FROM t51d.secret_values"),
    "UPDATE on sequences to the writer role": (
        "GRANT ALL ON SEQUENCES TO t51d_writer",
        "SELECT setval('t51d.event_intake_intake_id_seq', 1)"),
    "EXECUTE on functions to a login": (
        "GRANT EXECUTE ON FUNCTIONS TO t51_friend",
        "SELECT t51d._drop_log_partitions()"),
}


@pytest.mark.parametrize("default", DEFAULTS)
def test_c3_default_privileges_planted_for_the_owner_role_are_not_kept(cluster, default):
    """Attack, then the friend (a member of t51d_writer, as an application is) uses the right: reads
    the secrets' table (docs: nobody may SELECT secret_values), resets the intake's id sequence (the
    order of pending events), or runs an internal SECURITY DEFINER function kept for the pruner.
    Safe: the friend's statement is refused, or status names the grant."""
    grant, use = DEFAULTS[default]
    cluster.role("t51_cr", "LOGIN CREATEROLE")
    cluster.role("t51_friend")
    cluster.schema_roles("t51d")
    su = cluster.database("t51_defaults")
    maker = cluster.connect("t51_defaults", "t51_cr")
    maker.execute(f"CREATE ROLE t51d_owner NOLOGIN; CREATE ROLE t51d_writer NOLOGIN; GRANT t51d_writer TO t51_friend;"
                  f" GRANT t51d_owner TO t51_cr; ALTER DEFAULT PRIVILEGES FOR ROLE t51d_owner {grant};"
                  f" REVOKE t51d_owner FROM t51_cr")
    try:  # (mended: the installer refuses, naming the role; nothing is installed)
        install(su, "t51d")
    except InstallError as refused:
        assert "t51d_owner" in refused.message
        assert su.execute("SELECT to_regnamespace('t51d')").fetchone() == (None,)
        return
    problems = problems_of(su, "t51d")
    friend = cluster.connect("t51_defaults", "t51_friend")
    if "t51d_writer" in grant:
        friend.execute("SET ROLE t51d_writer")
    try:
        friend.execute(use)
        used = True
    except psycopg.Error:
        used = False
    assert not used or any("t51_friend" in p or "t51d_writer" in p for p in problems), \
        f"the planted default ({grant}) let the friend run {use!r}; status said {problems}"


# ================ class 4: owner-level changes the integrity check does not compare ================
#
# _security_snapshot() keeps, per relation of kind r, v or p, its ACL, a view's definition and its
# triggers; the fixed rules look at members of function roles, schema ACLs and write grants on the
# log's tables (relacl only). The owner level (docs: a superuser, or the non-superuser installer, a
# member of audit_owner) can change what readers see and what is written in ways status does not
# look at: a column privilege, a sequence's grants, row level security, a rule, another member.

def _as_owner(db: psycopg.Connection, statements: str) -> None:
    db.execute(f"SET ROLE audit_owner; {statements}; RESET ROLE")


def test_c4_a_column_privilege_on_the_secrets_table_is_named(db, cluster):
    """Attack: GRANT SELECT (tenant_id, ...) ON audit.secret_values to a login: relacl does not change
    (attacl does). Safe: status names it."""
    cluster.role("t51_friend")
    _as_owner(db, "GRANT SELECT (tenant_id, ciphertext) ON audit.secret_values TO t51_friend")
    columns = db.execute("SELECT has_column_privilege('t51_friend', 'audit.secret_values', 'ciphertext', 'SELECT')"
                         ).fetchone()[0]
    problems = problems_of(db)
    assert not columns or any("t51_friend" in p for p in problems), f"status says {problems}"


def test_c4_a_grant_on_the_intakes_id_sequence_is_named(db, cluster):
    """Attack: GRANT UPDATE ON SEQUENCE audit.event_intake_intake_id_seq to a login, which may then
    setval() it (sequences are outside the snapshot and outside 90_grants' revokes). Safe: status
    names it."""
    cluster.role("t51_friend")
    _as_owner(db, "GRANT USAGE, UPDATE ON SEQUENCE audit.event_intake_intake_id_seq TO t51_friend")
    granted = db.execute("SELECT has_sequence_privilege('t51_friend', 'audit.event_intake_intake_id_seq', 'UPDATE')"
                         ).fetchone()[0]  # the sealer role's sequence since 0021: the owner role's grant grants nothing
    problems = problems_of(db)
    assert not granted or any("t51_friend" in p for p in problems), f"status says {problems}"


def test_c4_row_level_security_that_hides_a_kind_from_readers_is_named(db, connect):
    """Attack: FORCE ROW LEVEL SECURITY on the intake and the log with a policy hiding one kind unless
    current_user is the owner role: SECURITY DEFINER functions (verify) see everything, the readers'
    view does not. Safe: the reader sees the event, or status names the policy."""
    policy = "USING (kind <> 'hidden.kind' OR current_user = 'audit_owner')"
    _as_owner(db, f"""ALTER TABLE audit.event_intake ENABLE ROW LEVEL SECURITY;
                      ALTER TABLE audit.event_intake FORCE ROW LEVEL SECURITY;
                      CREATE POLICY t51_hide ON audit.event_intake {policy};
                      ALTER TABLE audit.event_log ENABLE ROW LEVEL SECURITY;
                      ALTER TABLE audit.event_log FORCE ROW LEVEL SECURITY;
                      CREATE POLICY t51_hide ON audit.event_log {policy}""")
    record(connect("app_writer"), "hidden.kind")
    seen = [e.kind for e in list_events(connect("app_reader"))]
    problems = problems_of(db)
    assert "hidden.kind" in seen or problems != [], "readers do not see the event and status is intact"


def test_c4_a_rule_that_drops_captured_events_is_named(db, connect, attacker):
    """Attack: CREATE RULE ... AS ON INSERT TO audit.event_intake WHERE new.origin = 'capture' DO INSTEAD
    NOTHING (a conditional rule: record()'s INSERT ... RETURNING still works; the capture functions'
    INSERT has no RETURNING). Safe: the captured change is in the log, or status names the rule."""
    attacker.execute("CREATE TABLE public.t51_acct (id int PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.t51_acct")
    _as_owner(db, "CREATE RULE t51_drop AS ON INSERT TO audit.event_intake WHERE new.origin = 'capture'"
                  " DO INSTEAD NOTHING")
    writer = connect("table_owner")
    writer.execute("INSERT INTO public.t51_acct VALUES (1, 1)")
    captured = db.execute("SELECT count(*) FROM audit.events WHERE target_id = '1' AND origin = 'capture'"
                          " AND kind LIKE '%insert%'").fetchone()[0]
    problems = problems_of(db)
    assert captured == 1 or problems != [], "the captured insert was dropped and status is intact"


def test_c4_a_member_of_the_owner_role_after_a_superuser_install_is_named(db, cluster):
    """Attack: GRANT audit_owner TO a login, in an installation a superuser made (no member expected).
    Safe: status names the member."""
    cluster.role("t51_friend")
    db.execute("GRANT audit_owner TO t51_friend")
    problems = problems_of(db)
    assert any("t51_friend" in p for p in problems), f"status says {problems}"


def test_c4_a_migration_record_the_installer_would_apply_again_is_named(db):
    """status reads yoyo's table by migration_id, the installer (yoyo) by migration_hash. Attack: the
    owner level changes the hash of 0020's row: status counts 0020 as applied, yoyo does not, and the
    next install runs it again (its CREATE INDEX fails there, and so does every install after).
    Safe: status names the record, or the next install runs nothing again and succeeds."""
    last = db.execute("SELECT max(migration_id) FROM audit._yoyo_migration").fetchone()[0]
    _as_owner(db, f"UPDATE audit._yoyo_migration SET migration_hash = md5('t51') WHERE migration_id = '{last}'")
    report = status(db)
    intact = report.intact
    try:
        again = install(db).migrations
    except Exception as exc:  # noqa: BLE001 - whatever stops the install
        again = [f"{type(exc).__name__}: {exc}"]
    assert not intact or again == [], f"status was intact; the next install then ran {again}"


def test_c4_a_trigger_on_a_package_table_is_named(db, cluster):
    """Control: a trigger the owner level puts on a package table is in the snapshot, and named."""
    _as_owner(db, """CREATE FUNCTION audit.t51_nothing() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
                     CREATE TRIGGER t51_nothing BEFORE INSERT ON audit.event_types
                         FOR EACH ROW EXECUTE FUNCTION audit.t51_nothing()""")
    assert any("audit.event_types changed" in p for p in problems_of(db))


# ================ class 5: the install script applied after a squatter made its schemas ================
#
# install_script() checks the schema is free (or the package's) when it WRITES the script; the
# script itself checks, when psql applies it, only the migrations applied and where pgcrypto is.
# It runs CREATE SCHEMA IF NOT EXISTS audit + ALTER SCHEMA audit OWNER TO audit_owner, and CREATE
# SCHEMA IF NOT EXISTS audit_capture: a schema made in between is taken over, with what it holds, or
# left its maker's. The installer refuses both (tests/test_trust_attacks_9.py, _10.py).

SQUATS = {
    "audit, holding an overload the maintainer's calls pick":
        "CREATE SCHEMA audit; CREATE FUNCTION audit._prove_owner(target regclass, token uuid DEFAULT NULL) RETURNS uuid"
        " LANGUAGE sql AS 'SELECT NULL::uuid'",
    "audit_capture, open to PUBLIC":
        "CREATE SCHEMA audit_capture; GRANT USAGE, CREATE ON SCHEMA audit_capture TO PUBLIC",
}


@pytest.mark.parametrize("squat", SQUATS)
def test_c5_the_install_script_does_not_take_over_a_schema_made_after_it_was_written(cluster, squat):
    """Attack: the DBA writes the script (docs: shortly before applying it); t51_sq, with CREATE on
    the database, makes the schema before psql applies it. Safe: the script stops, changing nothing,
    or the package's schemas end up owned by its roles with nothing of t51_sq's inside."""
    cluster.role("t51_sq")
    su = cluster.database("t51_script")
    su.execute("GRANT CREATE ON DATABASE t51_script TO t51_sq")
    script = install_script(su)
    with cluster.connect("t51_script", "t51_sq") as sq:
        sq.execute(SQUATS[squat])
    code, _ = psql(su, script)
    if code != 0:
        assert su.execute("SELECT to_regclass('audit.event_log')").fetchone() == (None,)
        return  # stopped, nothing changed: safe
    held = su.execute("""
        SELECT n.nspname || ' (schema)' FROM pg_namespace n
         WHERE n.nspname IN ('audit', 'audit_capture') AND n.nspowner = 't51_sq'::regrole
        UNION ALL
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('audit', 'audit_capture'))
           AND p.proowner = 't51_sq'::regrole""").fetchall()
    assert held == [], f"the script applied and t51_sq holds {held} in the package's schemas"


# ================ class 6: a setting that changes how the package's PL/pgSQL reads its literals ================

def test_c6_standard_conforming_strings_off_does_not_let_detach_concurrently_through(db, connect, attacker):
    """_refuse_detach_concurrently() reads the statement with current_query() ~* '\\mconcurrently\\M':
    a PL/pgSQL literal, parsed in the caller's session, under the caller's standard_conforming_strings.
    Attack: the table's owner sets it off (any role may, any session), so that '\\m' reads as 'm', and
    runs DETACH PARTITION ... CONCURRENTLY on a tracked table (which, cancelled in its wait, leaves
    the partition's rows out of the table with no event). Safe: refused (PA008), still attached."""
    attacker.execute("""CREATE TABLE public.t51_book (id int PRIMARY KEY) PARTITION BY RANGE (id);
                        CREATE TABLE public.t51_book_1 PARTITION OF public.t51_book FOR VALUES FROM (0) TO (10);
                        CREATE TABLE public.t51_book_2 PARTITION OF public.t51_book FOR VALUES FROM (10) TO (20)""")
    enable_tracking(connect("app_maintainer"), "public.t51_book")
    owner = connect("table_owner")
    owner.execute("SET standard_conforming_strings = off")
    refused = None
    try:
        owner.execute("ALTER TABLE public.t51_book DETACH PARTITION public.t51_book_1 CONCURRENTLY")
    except psycopg.Error as exc:
        refused = exc.sqlstate
    attached = db.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.t51_book'::regclass").fetchone()[0]
    assert (refused, attached) == ("PA008", 2)


# ================ class 7: an install killed midway, run again ================

KILLED_AT = {
    # yoyo has inserted its lock row (committed) and is about to apply the first migration
    "with yoyo's lock held, before the first migration": "_GivenConnectionBackend.apply_migrations",
    # the SQL files have run, in their one transaction, not yet committed
    "inside the SQL files' transaction": "_grant_temporary",
}


@pytest.mark.parametrize("where", KILLED_AT)
def test_c7_an_install_killed_midway_can_be_run_again(cluster, where):
    """A kill -9 of pgaudit-install (an operator's Ctrl-\\, an OOM kill, a deploy timeout) at a point
    of the install; then the install is run again, as the docs say it is safe to. Safe: the second
    run succeeds and status is intact (yoyo's lock row, which the dead installer never deleted,
    does not stop every later install until someone runs `yoyo break-lock`)."""
    su = cluster.database("t51_killed")
    target = KILLED_AT[where]
    owner, _, name = target.rpartition(".")
    patched = f"installer.{owner}" if owner else "installer"
    child = (
        "import os, psycopg\n"
        "from pgaudit_py import installer\n"
        f"setattr({patched}, {name!r}, lambda *a, **k: os._exit(9))\n"
        f"conn = psycopg.connect(host={su.info.host!r}, port={su.info.port}, user={su.info.user!r},"
        " dbname='t51_killed', autocommit=True)\n"
        "installer.install(conn)\n")
    killed = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr[-2000:]
    try:
        install(su)
        again: object = "installed"
    except Exception as exc:  # noqa: BLE001 - whatever stops the second run
        again = f"{type(exc).__name__}: {exc}"
    assert again == "installed"
    assert problems_of(su) == []
    record(su, "after.kill")
    assert seal(su).sealed >= 1
