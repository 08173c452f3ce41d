"""The append-only guards decide by current_user, which no session can forge and no locale changes:
attacks that fooled the earlier guards (which read the call stack's text) at owner level, and the
privileged functions at work under a German lc_messages."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from conftest import MESSAGES_LOCALE, messages_locale_available

from pgaudit_py import AppendOnlyViolation, disable_tracking, enable_tracking, prune_events, record, seal, status
from pgaudit_py.errors import translated

FUNCTION_ROLES = ("audit_capture", "audit_sealer", "audit_pruner", "audit_sandbox")


@pytest.fixture
def owner_member(db, connect):
    """A login role that holds the owner role, as the installing role of a non-superuser install does."""
    db.execute("CREATE ROLE owner_member LOGIN")
    db.execute("GRANT audit_owner TO owner_member")
    yield connect("owner_member")
    db.execute("DROP OWNED BY owner_member")
    db.execute("DROP ROLE owner_member")


@pytest.fixture
def one_of_each(db, connect, counts):
    record(connect("app_writer"), "sealed.event")
    seal(db)
    record(connect("app_writer"), "pending.event")
    assert counts() == (1, 1)


# The call stack's text, as the earlier guard searched it: a comment, or a function's name, put it there.
FORGERIES = [
    "DELETE FROM audit.event_intake /* function audit.seal( */",
    "DELETE FROM audit.event_log /* function audit.prune_events( function audit.delete_archived( */",
    "INSERT INTO audit.event_log (seq, id, actor_type, db_role, kind, outcome, txid, occurred_at, sealed_at, payload)"
    " VALUES (99, gen_random_uuid(), 'user', 'x', 'forged.event', 'success', '1', now(), now(), '{}')"
    " -- function audit.seal(",
]


@pytest.mark.parametrize("statement", FORGERIES)
def test_a_member_of_the_owner_role_forges_no_privileged_caller(owner_member, counts, one_of_each, statement):
    owner_member.execute("SET ROLE audit_owner")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        owner_member.execute(statement)
    assert counts() == (1, 1)


@pytest.mark.parametrize("statement", FORGERIES)
def test_a_function_named_like_a_privileged_one_opens_nothing(db, owner_member, counts, one_of_each, statement):
    """The earlier guard searched the call stack's text, where a statement run by EXECUTE appears whole."""
    db.execute("CREATE SCHEMA audit_look_alike AUTHORIZATION audit_owner")
    owner_member.execute("SET ROLE audit_owner")
    owner_member.execute("CREATE FUNCTION audit_look_alike.seal(statement text) RETURNS void LANGUAGE plpgsql"
                         " AS $f$ BEGIN EXECUTE statement; END $f$")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        owner_member.execute("SELECT audit_look_alike.seal(%s)", (statement,))
    assert counts() == (1, 1)


@pytest.mark.parametrize("statement", FORGERIES)
def test_a_superuser_meets_the_guard_whatever_the_text(db, counts, one_of_each, statement):
    """A superuser holds every privilege: only the guard refuses it (it can still switch triggers
    off, which is what the chain and checkpoints are for)."""
    with pytest.raises(AppendOnlyViolation) as caught, translated():
        db.execute(statement)
    assert caught.value.sqlstate == "PA006"
    assert counts() == (1, 1)


def test_nobody_is_or_becomes_a_function_role(db, owner_member):
    """But the owner role, the capture role's one member, which hands it the capture functions it
    generates: the capture role may do nothing the owner may not (append to the intake)."""
    rows = db.execute("""SELECT r.rolname, r.rolcanlogin, r.rolsuper,
                                ARRAY(SELECT m.member::regrole::text FROM pg_auth_members m WHERE m.roleid = r.oid)
                           FROM pg_roles r WHERE r.rolname = ANY(%s) ORDER BY 1""", (list(FUNCTION_ROLES),)).fetchall()
    assert rows == sorted((name, False, False, ["audit_owner"] if name == "audit_capture" else [])
                          for name in FUNCTION_ROLES)
    for role in FUNCTION_ROLES:
        if role != "audit_capture":
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                owner_member.execute(f"SET ROLE {role}")


def test_status_names_a_member_of_a_function_role(db):
    db.execute("GRANT audit_sealer TO app_writer")
    assert "role audit_sealer has members (app_writer): only its functions may act as it" in status(db).problems
    db.execute("REVOKE audit_sealer FROM app_writer")
    assert status(db).problems == []


# ---- lc_messages: the call stack's text is translated; nothing here may depend on it ----

needs_german = pytest.mark.skipif(not messages_locale_available(),
                                  reason=f"locale {MESSAGES_LOCALE} is not installed (.ci/run generates it)")


@needs_german
def test_the_test_cluster_speaks_german(db):
    """Every test runs against a cluster whose lc_messages is German (where the machine has the
    locale), so that any check reading message text fails somewhere in the suite."""
    assert db.execute("SHOW lc_messages").fetchone() == (MESSAGES_LOCALE,)
    with pytest.raises(psycopg.errors.DivisionByZero, match="Division durch Null"):
        db.execute("SELECT 1 / 0")


@needs_german
def test_sealing_pruning_and_untracking_under_a_german_session(db, connect, counts):
    """What the earlier guards refused as soon as PG_CONTEXT came back translated."""
    maintainer = connect("app_maintainer")
    db.execute(f"ALTER ROLE app_maintainer SET lc_messages = '{MESSAGES_LOCALE}'")
    try:
        maintainer = connect("app_maintainer")
        assert maintainer.execute("SHOW lc_messages").fetchone() == (MESSAGES_LOCALE,)
        db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                      VALUES ('user', 'x', 'old.event', 'success', '1', now() - interval '400 days', '{}')""")
        assert seal(maintainer).sealed == 1
        assert prune_events(maintainer, timedelta(days=365)).deleted == 1
        db.execute("CREATE TABLE public.t (id int PRIMARY KEY); ALTER TABLE public.t OWNER TO app_maintainer")
        enable_tracking(maintainer, "public.t")
        assert disable_tracking(maintainer, "public.t") is True
        assert seal(maintainer).sealed == 3  # audit.pruned, audit.tracking_enabled, audit.tracking_disabled
        assert counts() == (0, 3)
    finally:
        db.execute("ALTER ROLE app_maintainer RESET lc_messages")
