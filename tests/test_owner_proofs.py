"""A proof of owning a table (audit._prove_owner, consumed by the SECURITY DEFINER helpers through
_check_owner) is taken only with the token it was made under, which only the code that made it
knows, by the role the session acts as, in the statement that made it (tests/test_trust_attacks_106.py).
Here every step is sent in one message, which PostgreSQL runs as one statement as far as
statement_timestamp() goes, so that each rule is tried on its own: the role and statement tests pass
the token on by hand (TOKEN), which the package's functions never do."""

from __future__ import annotations

from contextlib import suppress

import psycopg
import pytest
from trial_helpers import drop_made_under

TOKEN = "'6f1c1d6e-3a51-4c47-9a43-2d6f8a1b0c5e'::uuid"
PROVE = f"SELECT audit._prove_owner('public.po_t'::regclass, {TOKEN})"
HELPERS = {
    "unregister": "SELECT audit._unregister_tracking('public.po_t'::regclass, 'audit.tracking_disabled', {proof})",
    "register": "SELECT audit._register_tracking(jsonb_populate_record(NULL::audit.tracked_tables,"
                " jsonb_build_object('relid', 'public.po_t'::regclass::oid, 'kind_prefix', 'po.by_x')), {proof})",
    "rate_limit": "SELECT audit._put_rate_limit(jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object("
                  "'scope', 'table', 'target', 'public.po_t'::regclass::oid::text, 'per_user', 1, 'per_tenant', 1,"
                  " 'window_seconds', 60)), {proof})",
}


def helper_call(helper: str, proof: str = TOKEN) -> str:
    return HELPERS[helper].format(proof=proof)


@pytest.fixture
def owned(db, connect):
    """public.po_t owned by po_owner (a maintainer); po_x a maintainer owning nothing; app_maintainer a
    member of both; the table tracked by its owner."""
    db.execute("CREATE ROLE po_owner IN ROLE audit_maintainer; CREATE ROLE po_x IN ROLE audit_maintainer;"
               " GRANT po_owner, po_x TO app_maintainer;"
               " CREATE TABLE public.po_t (id int PRIMARY KEY, v int); ALTER TABLE public.po_t OWNER TO po_owner")
    yield db
    with suppress(psycopg.Error):
        db.execute("ROLLBACK")
    db.execute("DROP TABLE IF EXISTS public.po_t CASCADE")
    drop_made_under(db, "po_")


def in_one_message(conn: psycopg.Connection, statements: list[str]) -> str | None:
    """BEGIN; the statements in one message; COMMIT, or ROLLBACK and the SQLSTATE."""
    conn.execute("BEGIN")
    try:
        conn.execute("; ".join(statements))
    except psycopg.Error as e:
        conn.execute("ROLLBACK")
        return e.sqlstate
    conn.execute("COMMIT")
    return None


def state(db) -> tuple:
    return db.execute("""SELECT (SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.po_t'::regclass),
                                (SELECT count(*) FROM audit.rate_limits WHERE target = 'public.po_t'::regclass::oid::text),
                                (SELECT count(*) FROM audit.event_intake WHERE db_role = 'po_x')""").fetchone()


@pytest.mark.parametrize("helper", sorted(HELPERS))
def test_a_proof_made_before_a_set_role_serves_no_other_role_in_the_same_statement(owned, connect, helper):
    db = owned
    if helper == "unregister":
        db.execute("SELECT audit.enable_tracking('public.po_t'::regclass)")
    before = state(db)
    st = in_one_message(connect("app_maintainer"), ["SET LOCAL ROLE po_owner", PROVE, "SET LOCAL ROLE po_x",
                                                    helper_call(helper)])
    assert (st, state(db)) == ("42501", before)


@pytest.mark.parametrize("helper", sorted(HELPERS))
def test_the_owners_proof_serves_the_owner_in_the_statement_that_made_it(owned, connect, helper):
    """The control: the same message without the switch is taken, and nothing is left of the proof."""
    db = owned
    if helper == "unregister":
        db.execute("SELECT audit.enable_tracking('public.po_t'::regclass)")
    before = state(db)
    assert in_one_message(connect("app_maintainer"), ["SET LOCAL ROLE po_owner", PROVE, helper_call(helper)]) is None
    assert state(db) != before
    assert db.execute("SELECT count(*) FROM audit.owner_proofs").fetchone()[0] == 0


@pytest.mark.parametrize("helper", sorted(HELPERS))
def test_a_proof_is_taken_only_with_the_token_it_was_made_under(owned, connect, helper):
    """The owner's proof, made in the same statement by the same role, does not serve a call passing no
    token or another one; the proof made inside the call's own arguments does."""
    db = owned
    if helper == "unregister":
        db.execute("SELECT audit.enable_tracking('public.po_t'::regclass)")
    before = state(db)
    m = connect("app_maintainer")
    for proof in ("DEFAULT", "NULL", "gen_random_uuid()"):
        call = helper_call(helper, proof).replace(", DEFAULT)", ")")
        assert (in_one_message(m, ["SET LOCAL ROLE po_owner", PROVE, call]), state(db)) == ("42501", before)
    call = helper_call(helper, "audit._prove_owner('public.po_t'::regclass)")
    assert in_one_message(m, ["SET LOCAL ROLE po_owner", call]) is None
    assert state(db) != before


def test_a_proof_made_in_an_earlier_statement_serves_nothing(owned, connect):
    """The owner's proof left in its transaction, then (in the next statement) a maintainer's SECURITY
    DEFINER function run by the owner: the function's role is not the session's, and the helper cannot
    tell; the proof no longer serves (trial 106, s5)."""
    db = owned
    db.execute("SELECT audit.enable_tracking('public.po_t'::regclass)")
    db.execute(f"""CREATE FUNCTION public.po_trojan() RETURNS void LANGUAGE sql SECURITY DEFINER
                   AS $$ {helper_call('unregister')} $$;
                   ALTER FUNCTION public.po_trojan() OWNER TO po_x""")
    m = connect("app_maintainer")
    m.execute("BEGIN")
    m.execute("SET LOCAL ROLE po_owner")
    m.execute(PROVE)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        m.execute("SELECT public.po_trojan()")
    m.execute("ROLLBACK")
    assert state(db)[0] == 1


def test_a_proof_made_by_hand_serves_no_other_roles_function_in_the_same_statement(owned, connect):
    """A maintainer's SECURITY DEFINER function run in the statement in which the owner proved by hand
    cannot take the proof: it does not know the token, and cannot read it from owner_proofs (the
    helper asked with no token, or with each token it might read, is refused)."""
    db = owned
    db.execute("SELECT audit.enable_tracking('public.po_t'::regclass)")
    db.execute("""CREATE FUNCTION public.po_trojan() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
                  DECLARE t uuid;
                  BEGIN
                      BEGIN  -- what a thief would try first
                          FOR t IN SELECT p.token FROM audit.owner_proofs p LOOP
                              PERFORM audit._unregister_tracking('public.po_t'::regclass, 'audit.tracking_disabled', t);
                          END LOOP;
                      EXCEPTION WHEN insufficient_privilege THEN NULL;
                      END;
                      PERFORM audit._unregister_tracking('public.po_t'::regclass, 'audit.tracking_disabled');
                  END $$;
                  ALTER FUNCTION public.po_trojan() OWNER TO po_x""")
    m = connect("app_maintainer")
    st = in_one_message(m, ["SET LOCAL ROLE po_owner",
                            "SELECT audit._prove_owner('public.po_t'::regclass), public.po_trojan()"])
    assert (st, state(db)[0]) == ("42501", 1)
    st = in_one_message(m, ["SET LOCAL ROLE po_owner",
                            "SELECT public.po_trojan() FROM audit._prove_owner('public.po_t'::regclass)"])
    assert (st, state(db)[0]) == ("42501", 1)


@pytest.mark.parametrize("role", ["app_maintainer", "po_x", "po_owner", "app_reader", "app_writer"])
def test_no_role_but_the_owner_role_reads_the_proofs(owned, connect, role):
    """The token is a proof's only key: no role a session may act as reads owner_proofs, nor changes it."""
    c = connect("app_maintainer" if role.startswith("po_") else role)
    if role.startswith("po_"):  # roles that cannot log in
        c.execute(f"SET ROLE {role}")
    for statement in ("SELECT token FROM audit.owner_proofs", "SELECT count(*) FROM audit.owner_proofs",
                      "UPDATE audit.owner_proofs SET token = NULL", "DELETE FROM audit.owner_proofs"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(statement)


@pytest.fixture
def tree(owned):
    """public.po_tree, partitioned, owned by po_owner and tracked; po_owner's SECURITY DEFINER function
    public.po_add_part() adds a partition; both maintainers may run it."""
    db = owned
    db.execute("GRANT CREATE ON SCHEMA public TO po_owner;"
               " CREATE TABLE public.po_tree (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);"
               " ALTER TABLE public.po_tree OWNER TO po_owner;"
               " SELECT audit.enable_tracking('public.po_tree'::regclass);"
               " CREATE FUNCTION public.po_add_part() RETURNS void LANGUAGE sql SECURITY DEFINER"
               " AS $$ CREATE TABLE public.po_part PARTITION OF public.po_tree FOR VALUES FROM (1) TO (100) $$;"
               " ALTER FUNCTION public.po_add_part() OWNER TO po_owner;"
               " GRANT EXECUTE ON FUNCTION public.po_add_part() TO po_x")
    yield db
    db.execute("DROP TABLE IF EXISTS public.po_tree CASCADE; DROP FUNCTION IF EXISTS public.po_add_part()")


def added(db) -> tuple:
    return db.execute("""SELECT to_regclass('public.po_part') IS NOT NULL,
                                (SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_added'
                                                                    AND target_id LIKE '%%po_part%%')
                        """).fetchone()


def test_a_partition_added_by_the_owners_definer_function_in_another_roles_session_is_refused(tree, connect):
    """docs/capture.md: DDL run by a SECURITY DEFINER function of the owner's in a session acting as
    another role is refused with PA008 (the event would name that role); run by the owner, it is covered."""
    db = tree
    st = in_one_message(connect("app_maintainer"), ["SET LOCAL ROLE po_x", "SELECT public.po_add_part()"])
    assert (st, added(db)) == ("PA008", (False, 0))
    assert in_one_message(connect("app_maintainer"), ["SET LOCAL ROLE po_owner", "SELECT public.po_add_part()"]) is None
    assert added(db) == (True, 1)
    assert db.execute("SELECT db_role FROM audit.events WHERE kind = 'audit.tracked_partition_added'"
                      " AND target_id LIKE '%po_part%'").fetchall() == [("po_owner",)]
