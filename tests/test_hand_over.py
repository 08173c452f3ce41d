"""The installer gives each function of the package to the role the files make it as, and the
intake's id sequence to the sealer role, before the files run (installer.hand_over_statements), and
takes back every grant on what the function roles own (take_back_grants_statement): the owner role
owns the schema and may drop a function and make it anew under another of its roles, with grants
of its own."""

from __future__ import annotations

import psycopg
import pytest

from pgaudit_py import install, status
from pgaudit_py.installer import function_makers


def owners(db: psycopg.Connection) -> dict[str, str]:
    """Each function of the package's schemas (but the generated capture functions), by qualified
    name, and its owner."""
    return {name: owner for name, owner in db.execute(
        "SELECT n.nspname || '.' || p.proname, p.proowner::regrole::text"
        "  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('audit', 'audit_capture') AND p.proname !~ '^_capture_[0-9]+$'")}


def test_the_files_make_each_function_as_function_makers_reads_them(db):
    """function_makers reads the files' SET ROLE and CREATE FUNCTION lines: what it reads is what
    an install makes, for every function of the package's schemas a role of the package owns."""
    makers = function_makers("audit")
    found = {name: owner for name, owner in owners(db).items() if owner.startswith("audit_")}
    assert found == {name: makers[name] for name in found}
    assert set(makers) <= set(found)
    assert {makers[n] for n in ("audit.seal", "audit.prune_events", "audit._row_images",
                                "audit_capture._take_baseline", "audit.record")} == {
        "audit_sealer", "audit_pruner", "audit_sandbox", "audit_capture", "audit_owner"}


def remake_as(db: psycopg.Connection, function: str, role: str, grant_to: str) -> None:
    """As the owner role (the schema's owner, a member of audit_capture): drops the function and
    makes it anew, with the same definition, as `role`, with EXECUTE granted to `grant_to`."""
    definition = db.execute("SELECT pg_get_functiondef(%s::regprocedure)", [function]).fetchone()[0]
    db.execute("SET ROLE audit_owner")
    try:
        db.execute("GRANT CREATE ON SCHEMA audit TO audit_capture")
        db.execute(f"DROP FUNCTION {function}")
        db.execute(f"SET ROLE {role}")
        db.execute(definition)
        db.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {grant_to}")
        db.execute("SET ROLE audit_owner")
        db.execute("REVOKE CREATE ON SCHEMA audit FROM audit_capture")
    finally:
        db.execute("RESET ROLE")


@pytest.mark.parametrize(("function", "made_by", "as_role"), [
    ("audit.count_events(text, timestamp with time zone, timestamp with time zone, text[])", "audit_owner",
     "audit_capture"),
    ("audit._row_images(anyarray)", "audit_sandbox", "audit_owner"),
    ("audit.seal(integer)", "audit_sealer", "audit_capture"),
    ("audit.prune_events(interval, integer)", "audit_pruner", "audit_owner"),
])
def test_a_function_made_anew_under_another_role_is_given_back_by_the_reinstall(db, function, made_by, as_role):
    remake_as(db, function, as_role, "audit_writer")
    assert db.execute("SELECT proowner::regrole::text FROM pg_proc WHERE oid = %s::regprocedure",
                      [function]).fetchone()[0] == as_role

    install(db)

    owner, runs = db.execute("SELECT proowner::regrole::text, has_function_privilege('app_writer', oid, 'EXECUTE')"
                             "  FROM pg_proc WHERE oid = %s::regprocedure", [function]).fetchone()
    assert owner == made_by
    if made_by != "audit_owner":  # the owner role may grant on its own functions: status names it
        assert not runs
    assert owners(db)[function.split("(")[0]] == made_by


def test_the_sequence_made_anew_by_the_owner_is_the_sealers_with_no_grant_but_the_releases(db):
    nxt = db.execute("SELECT last_value + 1 FROM audit.event_intake_intake_id_seq").fetchone()[0]
    db.execute("SET ROLE audit_owner")
    db.execute("DROP SEQUENCE audit.event_intake_intake_id_seq CASCADE")
    db.execute(f"CREATE UNLOGGED SEQUENCE audit.event_intake_intake_id_seq START {nxt}")
    db.execute("ALTER TABLE audit.event_intake ALTER COLUMN intake_id"
               " SET DEFAULT nextval('audit.event_intake_intake_id_seq')")
    db.execute("GRANT ALL ON SEQUENCE audit.event_intake_intake_id_seq TO audit_capture WITH GRANT OPTION")
    db.execute("SET ROLE audit_capture")
    db.execute("GRANT UPDATE ON SEQUENCE audit.event_intake_intake_id_seq TO audit_writer")
    db.execute("RESET ROLE")

    install(db)

    owner, persistence = db.execute("SELECT relowner::regrole::text, relpersistence FROM pg_class"
                                    " WHERE oid = 'audit.event_intake_intake_id_seq'::regclass").fetchone()
    acl = sorted(db.execute("SELECT a.grantee::regrole::text, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a"
                            " WHERE c.oid = 'audit.event_intake_intake_id_seq'::regclass"
                            " AND a.grantee <> c.relowner").fetchall())
    assert (owner, persistence) == ("audit_sealer", "p")
    assert acl == [("audit_capture", "USAGE"), ("audit_owner", "SELECT"), ("audit_owner", "USAGE"),
                   ("audit_pruner", "USAGE")]
    assert status(db).problems == []
