"""The installer gives each function of the package to the role the files make it as, and the
intake's id sequence to the sealer role, before the files run (installer.hand_over_statements), and
takes back every grant on what the function roles own (take_back_grants_statement): the owner role
owns the schema and may drop a function and make it anew under another of its roles, with grants
of its own."""

from __future__ import annotations

import psycopg
import pytest

from pgaudit_py import install, status
from pgaudit_py.installer import FUNCTION_ROLES_MAKE


def owners(db: psycopg.Connection) -> dict[str, str]:
    """Each function of the package's schemas (but the generated capture functions), by identity,
    and its owner."""
    return {name: owner for name, owner in db.execute(
        "SELECT format('%I.%I(%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes)), p.proowner::regrole::text"
        "  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('audit', 'audit_capture') AND p.proname !~ '^_capture_[0-9]+$'")}


def test_the_files_make_as_the_function_roles_what_the_installer_hands_over(db):
    """FUNCTION_ROLES_MAKE is what an install makes as the function roles, no more, no less; every
    other function of the package's schemas is the owner role's."""
    listed = {f"audit_capture.{f.removeprefix('capture.')}" if f.startswith("capture.") else f"audit.{f}":
              f"audit_{role}" for f, role in FUNCTION_ROLES_MAKE.items()}
    found = owners(db)
    assert {f: o for f, o in found.items() if o != "audit_owner"} == listed


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


@pytest.mark.parametrize(("overload", "name_of"), [
    ("audit.seal()", "the sealer's seal(integer)"),
    ("audit.prune_events()", "the pruner's prune_events(interval, integer)"),
    ("audit._row_images()", "the sandbox's _row_images(anyarray)"),
])
def test_an_overload_the_owner_makes_with_a_function_roles_name_stays_the_owners(db, connect, overload, name_of):
    """A trigger runs its function without a check of EXECUTE: a SECURITY DEFINER trigger function
    of the owner role's, named as one of the function roles', handed to that role by its name would
    run the owner's code with that role's rights on every write to the owner's table."""
    db.execute("SET ROLE audit_owner")
    db.execute(f"""CREATE FUNCTION {overload} RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
                       SET search_path = pg_catalog, pg_temp
                       AS $$ BEGIN INSERT INTO public.t67_ran VALUES (current_user); RETURN NULL; END $$""")
    db.execute("RESET ROLE")
    db.execute("CREATE TABLE public.t67_ran (who text)")
    db.execute("GRANT INSERT ON public.t67_ran TO PUBLIC")
    db.execute("CREATE TABLE public.t67_owned (id int)")
    db.execute("ALTER TABLE public.t67_owned OWNER TO audit_owner")
    db.execute("SET ROLE audit_owner")
    db.execute(f"CREATE TRIGGER t67 AFTER INSERT ON public.t67_owned FOR EACH STATEMENT EXECUTE FUNCTION {overload}")
    db.execute("RESET ROLE")

    install(db)
    db.execute("SET ROLE audit_owner")
    db.execute("INSERT INTO public.t67_owned VALUES (1)")
    db.execute("RESET ROLE")

    owner = db.execute("SELECT proowner::regrole::text FROM pg_proc WHERE oid = %s::regprocedure",
                       [overload]).fetchone()[0]
    ran_as = [who for (who,) in db.execute("SELECT who FROM public.t67_ran")]
    assert (owner, ran_as) == ("audit_owner", ["audit_owner"]), name_of
    assert any(overload.removeprefix("audit.") in p for p in status(db).problems)
