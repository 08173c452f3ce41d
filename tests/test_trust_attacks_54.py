"""A fifty-fourth attacker's trial, against the mends of trial 52 (1b7b63e): status naming any grant
(of a column too) or trigger but the guards on a partition of the log, a changed option of a view
(`security_invoker`), and a function role's membership through other roles (`sql/80_integrity.sql`
`_integrity_problems`, `_security_snapshot`); and the command line treating a --schema or
PGAUDIT_SCHEMA value that is no valid schema name as any other value given
(`pgaudit_py/cli/common.py` `remember_given`, `without_given`, `say`).

New variants, from roles that are no superuser but hold what real databases give (a member of the
package's owner role, a role with CREATEROLE): the owner's own rights on a partition of the log
(the mend's rule leaves out every grant to the partition's owner); a guard trigger replaced by one
of its name that guards something else (status compares a trigger's name and enabled state only);
a partition of the log whose bounds `_log_partitions()` cannot read (DEFAULT, MINVALUE); the log's
`CHECK (seq > 0)` dropped by the owner role, and events attached below the chain; objects in the
package's schema owned by another role that are not functions, relations, types or operators
(collations, text search configurations and dictionaries, statistics objects, conversions); a
function role's memberships through chains, NOINHERIT roles, ADMIN OPTION and predefined roles;
functions and views changed in their attributes and options; fresh installs that must be intact; and
half a key (32 or 40 hex characters starting with a letter, a valid schema name) given as --schema.

Each test asserts the SAFE outcome per the docs' promises (docs/installer.md `--status`,
docs/security.md "The guards" and "A value given in the wrong place") on what the database (or the
command line's output) holds: it passes when the product holds and fails when the attack works.

Roles: every role made here is named t54_* (schemas installed here are named t54*, so are their
roles), and dropped after its test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress

import psycopg
import pytest
from test_trust_attacks_52 import cli

from pgaudit_py import record
from pgaudit_py.installer import ROLE_SUFFIXES, install, status

# ====================================== helpers and fixtures ======================================


class Made:
    """Roles, databases and statements to undo of one test, all undone after it."""

    def __init__(self, db: psycopg.Connection):
        self.db = db
        self.info = db.info
        self.roles: list[str] = []
        self.databases: list[str] = []
        self.opened: list[psycopg.Connection] = []
        self.sql_after: list[str] = []

    def role(self, name: str, attributes: str = "LOGIN") -> str:
        assert name.startswith("t54"), name
        self.db.execute(f"DROP ROLE IF EXISTS {name}")
        self.db.execute(f"CREATE ROLE {name} {attributes}")
        self.roles.append(name)
        return name

    def schema_roles(self, schema: str) -> None:
        assert schema.startswith("t54"), schema
        self.roles.extend(f"{schema}_{suffix}" for suffix in ROLE_SUFFIXES)

    def database(self, name: str, owner: str | None = None) -> psycopg.Connection:
        assert name.startswith("t54"), name
        self.db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.db.execute(f"CREATE DATABASE {name}" + (f" OWNER {owner}" if owner else ""))
        self.databases.append(name)
        return self.connect(name)

    def connect(self, dbname: str | None = None, user: str | None = None) -> psycopg.Connection:
        conn = psycopg.connect(host=self.info.host, port=self.info.port, user=user or self.info.user,
                               dbname=dbname or self.info.dbname, autocommit=True)
        self.opened.append(conn)
        return conn

    def close(self) -> None:
        for statement in self.sql_after:
            with suppress(psycopg.Error):
                self.db.execute(statement)
        for conn in self.opened:
            conn.close()
        for name in self.databases:
            self.db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for name in reversed(self.roles):
            if self.db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                self.db.execute(f"DROP OWNED BY {name}")  # in the test's own database
                self.db.execute(f"DROP ROLE {name}")


@pytest.fixture
def made(db) -> Iterator[Made]:
    things = Made(db)
    try:
        yield things
    finally:
        things.close()


def problems_of(conn: psycopg.Connection, schema: str = "audit") -> list[str]:
    return status(conn, schema).problems


def as_owner(db: psycopg.Connection, statements: str) -> None:
    """What a member of audit_owner may do (SET ROLE audit_owner: the superuser's rights are gone)."""
    db.execute(f"SET ROLE audit_owner; {statements}; RESET ROLE")


def sealed_partition(db: psycopg.Connection, kind: str = "t54.sealed") -> str:
    """The partition of the log holding a sealed event of this kind (recorded and sealed first)."""
    record(db, kind, payload={"n": 1})
    db.execute("SELECT audit.seal()")
    row = db.execute("SELECT p.part::text FROM audit._log_partitions() p"
                     " WHERE EXISTS (SELECT 1 FROM audit.event_log e WHERE e.kind = %s"
                     " AND e.seq BETWEEN p.first_seq AND p.last_seq)", (kind,)).fetchone()
    assert row is not None
    return row[0]


def verified(db: psycopg.Connection) -> bool:
    return db.execute("SELECT ok FROM audit.verify()").fetchone()[0]


# ============ class 1: the log's partitions: the owner's own rights, look-alike guards, odd bounds ============
#
# docs/security.md, "The guards": every partition carries its own guards, which refuse INSERT, UPDATE,
# DELETE and TRUNCATE to every role, and no role holds a right to change it; status names a partition
# whose guard is missing or disabled, or on which a role was granted one. docs/installer.md: status
# names a missing or disabled guard trigger, and any grant but the guards on a partition of the log.

@pytest.mark.parametrize("privilege", ["DELETE", "TRUNCATE"])
def test_c1_the_owner_granting_itself_a_write_right_on_a_log_partition_is_named(db, privilege):
    """Attack: the owner role grants itself back a right _guard_log_partition revoked from it on a
    partition of sealed events (GRANT DELETE ON audit.event_log_000000 TO audit_owner). 1b7b63e's rule
    names a grant to anyone but the partition's owner (`a.grantee <> c.relowner`), and the snapshot
    leaves the partitions out. Safe: the owner does not hold the right, or status names it."""
    part = sealed_partition(db)
    as_owner(db, f"GRANT {privilege} ON {part} TO audit_owner")
    held = db.execute("SELECT has_table_privilege('audit_owner', %s, %s)", (part, privilege)).fetchone()[0]
    problems = problems_of(db)
    assert not held or any(part in p for p in problems), f"audit_owner holds {privilege} on {part}; status: {problems}"


def test_c1_a_partitions_guard_replaced_by_one_of_its_name_lets_the_owner_delete_sealed_events(db):
    """Attack: the owner role drops a partition's guard_delete and makes a trigger of the same name,
    the same function, enabled, that fires on INSERT instead; grants itself DELETE on the partition;
    and deletes a sealed event through the partition. Status asks only that a trigger of each guard's
    name be enabled ('O'), and leaves out the owner's own grants. Safe: the event is still there, or
    status names the partition."""
    part = sealed_partition(db)
    as_owner(db, f"DROP TRIGGER guard_delete ON {part};"
                 f" CREATE TRIGGER guard_delete BEFORE INSERT ON {part} FOR EACH STATEMENT"
                 " EXECUTE FUNCTION audit._guard_append_only();"
                 f" GRANT DELETE ON {part} TO audit_owner;"
                 f" DELETE FROM {part} WHERE kind = 't54.sealed'")
    left = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't54.sealed'").fetchone()[0]
    problems = problems_of(db)
    assert left == 1 or any(part in p for p in problems), f"a sealed event deleted; status: {problems}"


LOOK_ALIKES = {
    # (table, guard, the event the look-alike fires on instead)
    "event_log guard_update": ("audit.event_log", "guard_update", "INSERT"),
    "blocks guard_change": ("audit.blocks", "guard_change", "INSERT"),
    "event_intake_0 guard_truncate": ("audit.event_intake_0", "guard_truncate", "UPDATE"),
}


@pytest.mark.parametrize("which", list(LOOK_ALIKES))
def test_c1_a_guard_replaced_by_a_trigger_of_its_name_that_guards_something_else_is_named(db, which):
    """Attack: the owner role replaces one of the guards of the log's tables by a trigger of the same
    name and function, enabled, that fires on another event: the statement the guard refused meets no
    guard. The snapshot keeps each trigger's name and enabled state only, and so does the fixed rule.
    Safe: status names the missing guard (docs/installer.md: a missing or disabled guard trigger)."""
    table, guard, event = LOOK_ALIKES[which]
    as_owner(db, f"DROP TRIGGER {guard} ON {table};"
                 f" CREATE TRIGGER {guard} BEFORE {event} ON {table} FOR EACH STATEMENT"
                 " EXECUTE FUNCTION audit._guard_append_only()")
    fires_on = db.execute("SELECT tgtype FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s",
                          (table, guard)).fetchone()[0]
    problems = problems_of(db)
    assert any(guard in p and table.removeprefix("audit.") in p for p in problems), \
        f"{table}.{guard} now fires on {event} (tgtype {fires_on}); status: {problems}"


@pytest.mark.parametrize("how", ["ENABLE REPLICA TRIGGER", "DISABLE TRIGGER"])
def test_c1_held_a_partitions_guard_switched_to_another_mode_is_named(db, how):
    """Held check: ALTER TABLE ... ENABLE REPLICA / DISABLE TRIGGER guard_update on a partition of the
    log. Safe: status names the guard."""
    part = sealed_partition(db)
    as_owner(db, f"ALTER TABLE {part} {how} guard_update")
    problems = problems_of(db)
    assert any("guard_update" in p and part in p for p in problems), problems


def test_c1_held_an_unguarded_default_partition_of_the_log_is_named(db):
    """Held check. Attack: the owner role attaches a DEFAULT partition of its own to the log, with no guard; as its
    owner it may write it directly, which the log's statement triggers never see. _log_partitions()
    reads the bounds of FROM (n) TO (m) only, but lists the partition (with no bounds). Safe: status names the
    partition (docs/security.md: status names a partition whose guard is missing)."""
    as_owner(db, "CREATE TABLE audit.t54_default (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);"
                 " ALTER TABLE audit.event_log ATTACH PARTITION audit.t54_default DEFAULT")
    writable = db.execute("SELECT has_table_privilege('audit_owner', 'audit.t54_default', 'UPDATE')").fetchone()[0]
    guards = db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit.t54_default'::regclass"
                        " AND NOT tgisinternal").fetchone()[0]
    problems = problems_of(db)
    assert any("t54_default" in p for p in problems), \
        f"an unguarded partition ({guards} guards, owner may update: {writable}); status: {problems}"


# ============ class 2: the log's CHECK (seq > 0), dropped by the owner role ============
#
# docs/security.md: "The log's CHECK (seq > 0), which a partition must carry to be attached, keeps any
# event out of the seqs below the chain, even for the owner role's DDL". Neither verifier looks below
# the chain's first seq; the snapshot compares no constraint of a table.

@pytest.mark.parametrize("bounds", ["FROM (MINVALUE) TO (0)", "FROM (-1000000) TO (0)"])
def test_c2_events_below_the_chain_cannot_be_attached_by_the_owner_role(db, bounds):
    """Attack: the owner role drops event_log_seq_positive from the log (it owns the log; the
    partitions' copies go with it), makes a table of forged events at seq -1, guards it as the package
    guards a partition (audit._guard_log_partition, its own helper), and attaches it below the chain.
    Safe: no forged event in audit.events, or audit.verify() fails, or status names the change."""
    sealed_partition(db)
    as_owner(db, "ALTER TABLE audit.event_log DROP CONSTRAINT event_log_seq_positive;"
                 " CREATE TABLE audit.t54_before (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);"
                 " INSERT INTO audit.t54_before SELECT * FROM audit.event_log WHERE kind = 't54.sealed';"
                 " UPDATE audit.t54_before SET seq = -1, kind = 't54.forged', block_no = NULL,"
                 "     payload = '{\"approved_by\": \"ceo\"}';"
                 " SELECT audit._guard_log_partition('audit.t54_before');"
                 f" ALTER TABLE audit.event_log ATTACH PARTITION audit.t54_before FOR VALUES {bounds}")
    forged = db.execute("SELECT count(*) FROM audit.events WHERE kind = 't54.forged'").fetchone()[0]
    ok = verified(db)
    problems = problems_of(db)
    assert forged == 0 or not ok or problems, \
        f"{forged} forged event below the chain in audit.events, verify() ok, status intact"


CHANGED_TABLES = {
    # every event written from now on gets one id, chosen by the owner level (held: record() and
    # the capture name each event's id, the default is never used)
    "HELD: the intake's id default": (
        "event_intake",
        "ALTER TABLE audit.event_intake ALTER COLUMN id SET DEFAULT '00000000-0000-4000-8000-000000000054'",
        "SELECT count(DISTINCT id) < count(*) FROM audit.event_intake WHERE kind LIKE 't54.%'"),
    # a CHECK the log was installed with (its payload is an object), dropped
    "a CHECK of the log dropped": (
        "event_log",
        "ALTER TABLE audit.event_log DROP CONSTRAINT event_log_payload_check",
        "SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'audit.event_log'::regclass"
        " AND conname = 'event_log_payload_check')"),
}


@pytest.mark.parametrize("change", list(CHANGED_TABLES))
def test_c2_a_package_table_changed_by_the_owner_role_is_named(db, change):
    """Attack: the owner role changes one of the log's tables (docs/installer.md: status names a
    missing or changed function, view or table); the snapshot keeps a table's grants, policies,
    rules, options and triggers, never its columns' defaults or its constraints. Safe: the change did
    not take, or status names the table."""
    table, statement, changed = CHANGED_TABLES[change]
    as_owner(db, statement)
    record(db, "t54.one", payload={})
    record(db, "t54.two", payload={})
    took = db.execute(changed).fetchone()[0]
    problems = problems_of(db)
    assert not took or any(table in p for p in problems), f"{change}; status: {problems}"


# ============ class 3: objects in the package's schema owned by another role ============
#
# docs/installer.md, --status: "a package schema or an object in one owned by another role". The rule
# reads pg_proc, pg_class, pg_type and pg_operator only. A member of audit_owner (the installer of a
# non-superuser install) makes them: it holds the owner role's CREATE on the schema, and owns what it
# makes.

OBJECTS = {
    "collation": "CREATE COLLATION audit.t54_thing FROM \"C\"",
    "text search configuration": "CREATE TEXT SEARCH CONFIGURATION audit.t54_thing (COPY = pg_catalog.simple)",
    "text search dictionary": "CREATE TEXT SEARCH DICTIONARY audit.t54_thing (TEMPLATE = pg_catalog.simple)",
    "statistics object": "CREATE STATISTICS audit.t54_thing ON kind, tenant_id FROM audit.event_intake",
    "conversion": "CREATE CONVERSION audit.t54_thing FOR 'LATIN1' TO 'UTF8' FROM pg_catalog.iso8859_1_to_utf8",
    "HELD: function": "CREATE FUNCTION audit.t54_thing() RETURNS int LANGUAGE sql AS 'SELECT 1'",
}


@pytest.mark.parametrize("kind", list(OBJECTS))
def test_c3_an_object_another_role_owns_in_the_package_schema_is_named(db, made, kind):
    """Attack: t54_member, a member of audit_owner, makes an object in the audit schema, owned by
    itself. Safe: status names the object (a line naming t54_thing: that the member is named for
    being one is another line)."""
    made.role("t54_member")
    db.execute("GRANT audit_owner TO t54_member")
    member = made.connect(user="t54_member")
    member.execute(OBJECTS[kind])
    problems = problems_of(db)
    assert any("t54_thing" in p for p in problems), f"a {kind} of t54_member's in schema audit; status: {problems}"


# ============ class 4: function roles' memberships (held checks of 1b7b63e) ============
#
# docs/installer.md: status names a function role that is a member of another role (through others
# too); only the sealer's membership of pg_read_all_stats is left. Made by a role with CREATEROLE, which
# PostgreSQL 15 lets grant any role that is not a superuser's.

MEMBERSHIPS = {
    "a chain of three roles": (
        ["CREATE ROLE t54_a NOLOGIN", "CREATE ROLE t54_b NOLOGIN", "CREATE ROLE t54_c NOLOGIN",
         "GRANT pg_write_server_files TO t54_a", "GRANT t54_a TO t54_b", "GRANT t54_b TO t54_c",
         "GRANT t54_c TO audit_pruner"],
        "audit_pruner", "pg_write_server_files"),
    "through a NOINHERIT role": (
        ["CREATE ROLE t54_a NOLOGIN", "CREATE ROLE t54_b NOLOGIN NOINHERIT", "GRANT t54_a TO t54_b",
         "GRANT t54_b TO audit_sandbox"],
        "audit_sandbox", "t54_a"),
    "with ADMIN OPTION": (
        ["CREATE ROLE t54_a NOLOGIN", "GRANT t54_a TO audit_capture WITH ADMIN OPTION"],
        "audit_capture", "t54_a"),
    "pg_signal_backend granted to pg_read_all_stats": (
        ["GRANT pg_signal_backend TO pg_read_all_stats"], "audit_sealer", "pg_signal_backend"),
    "pg_read_all_stats granted to the pruner": (
        ["GRANT pg_read_all_stats TO audit_pruner"], "audit_pruner", "pg_read_all_stats"),
}


@pytest.mark.parametrize("how", list(MEMBERSHIPS))
def test_c4_held_a_function_roles_membership_through_others_is_named(db, made, how):
    """Held check: t54_cr (CREATEROLE, no superuser) makes a function role a member of another role,
    as described. Safe: the function role is not a member, or status names the membership."""
    made.role("t54_cr", "LOGIN CREATEROLE")
    made.roles += ["t54_a", "t54_b", "t54_c"]
    made.sql_after += ["REVOKE pg_signal_backend FROM pg_read_all_stats", "REVOKE pg_read_all_stats FROM audit_pruner"]
    statements, member, of = MEMBERSHIPS[how]
    cr = made.connect(user="t54_cr")
    for statement in statements:
        cr.execute(statement)
    reaches = db.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (member, of)).fetchone()[0]
    problems = problems_of(db)
    assert not reaches or any(member in p and of in p for p in problems), problems


# ============ class 5: functions and views changed in their attributes (held checks) ============

FUNCTION_CHANGES = {
    "volatility": ("verify", "VOLATILE"),
    "SECURITY INVOKER": ("seal_status", "SECURITY INVOKER"),
    "search_path reset": ("count_events", "RESET search_path"),
    "cost and parallel safety": ("list_events", "COST 1 PARALLEL SAFE"),
}


@pytest.mark.parametrize("change", list(FUNCTION_CHANGES))
def test_c5_held_a_package_function_changed_in_its_attributes_is_named(db, change):
    """Held check: the owner role alters one of its functions' attributes (docs/installer.md: a changed
    function). Safe: status names the function."""
    name, clause = FUNCTION_CHANGES[change]
    (signature,) = db.execute("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.proname = %s"
                              " AND p.pronamespace = 'audit'::regnamespace ORDER BY p.oid LIMIT 1", (name,)).fetchone()
    as_owner(db, f"ALTER FUNCTION {signature} {clause}")
    problems = problems_of(db)
    assert any(name in p for p in problems), problems


@pytest.mark.parametrize("option", ["security_barrier = true", "security_invoker = true"])
def test_c5_held_a_view_option_changed_is_named(db, option):
    """Held check: the owner role sets an option of the readers' view (docs/installer.md: a changed
    option of a view). Safe: status names the view."""
    as_owner(db, f"ALTER VIEW audit.events SET ({option})")
    problems = problems_of(db)
    assert any("audit.events" in p for p in problems), problems


# ============ class 6: fresh installs that status must call intact ============

def test_c6_a_second_database_installed_by_the_superuser_with_the_clusters_roles_is_intact(made):
    """A superuser installs schema audit into a second database of the cluster, whose audit_* roles the
    template's install made (the installer reuses them; the sealer already holds pg_read_all_stats),
    then records and seals. Safe (no false alarm): status names no problem there."""
    other = made.database("t54_second")
    install(other)
    record(other, "t54.first", payload={})
    other.execute("SELECT audit.seal()")
    assert problems_of(other) == []


def test_c6_a_fresh_install_by_a_database_owner_that_seals_is_intact(made):
    """A database owner with CREATEROLE installs schema t54n and records and seals (a partition of the
    log made by seal() as the owner role). Safe: status names no problem but the event triggers only a
    superuser may make."""
    made.role("t54_dbo", "LOGIN CREATEROLE")
    made.schema_roles("t54n")
    made.database("t54_fresh_dbo", owner="t54_dbo")
    dbo = made.connect("t54_fresh_dbo", "t54_dbo")
    install(dbo, "t54n")
    dbo.execute("GRANT t54n_writer, t54n_maintainer TO t54_dbo")
    record(dbo, "t54.first", payload={}, audit_schema="t54n")
    dbo.execute("SELECT t54n.seal()")
    problems = [p for p in problems_of(dbo, "t54n") if not p.startswith("event trigger ")]
    assert problems == []


# ============ class 7: half a key, a valid schema name, given as --schema ============
#
# docs/security.md: stderr lines replace each long piece (32 characters or more: "a key, half a key, a
# token") given on the command line; the schema's name stays named "when it is a valid one (at most 40
# characters), and a key given as `--schema` or `PGAUDIT_SCHEMA` is not". remember_given() exempts every
# --schema value SCHEMA_NAME matches: lower-case hex of 32 to 40 characters starting with a letter is one.

def half_key(length: int) -> str:
    return "a" + os.urandom(32).hex()[: length - 1]


def install_cli(db: psycopg.Connection, *args: str) -> subprocess.CompletedProcess[str]:
    dsn = f"host={db.info.host} port={db.info.port} dbname={db.info.dbname} user=app_maintainer"
    return subprocess.run([sys.executable, "-c", "import sys; from pgaudit_py.cli import install_main;"
                           " sys.argv[0] = 'pgaudit-install'; install_main()", *args, "--dsn", dsn],
                          capture_output=True, text=True, timeout=60)


KEY_AS_SCHEMA = {
    "status --schema KEY32": (32, lambda db, k: cli(db, "status", "--schema", k)),
    "status --schema KEY40": (40, lambda db, k: cli(db, "status", "--schema", k)),
    "events --schema KEY32": (32, lambda db, k: cli(db, "events", "--schema", k)),
    "pgaudit-install --status --schema KEY32": (32, lambda db, k: install_cli(db, "--status", "--schema", k)),
    "HELD: status --schema=KEY32": (32, lambda db, k: cli(db, "status", f"--schema={k}")),
    "HELD: PGAUDIT_SCHEMA=KEY32": (32, lambda db, k: cli(db, "status", env={"PGAUDIT_SCHEMA": k})),
}


@pytest.mark.parametrize("how", list(KEY_AS_SCHEMA))
def test_c7_half_a_key_given_as_the_schemas_name_is_not_written_to_stderr(db, how):
    """Attack: half of a hex key (32 characters, or 40, starting with a letter: a valid schema name) is
    pasted where the schema's name goes; no such schema is installed. Safe: refused, and the stderr
    lines hold neither the key nor its upper-case form."""
    length, run = KEY_AS_SCHEMA[how]
    key = half_key(length)
    done = run(db, key)
    assert done.returncode != 0, (done.stdout + done.stderr)[-400:]
    assert key not in done.stderr.lower(), done.stderr[-400:]
