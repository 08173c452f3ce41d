"""A ninety-first attacker's trial: secrets read past their audit, across tenants or after rotation;
prune and its bookkeeping; archives changed a byte at a time where a verifier might not look; and the
HTTP API's tenant tokens under hostile tenant names and parameters.

Classes (test names carry the letter):
  S. secrets: no role but the secrets role reaches a value or the functions beneath read_secret; every
     read (through a cursor, a prepared statement, a temporary view or SQL function, many rows of one
     statement, a read-only transaction) leaves its event; a ciphertext or wrapped key moved to another
     tenant, slot or version never decrypts; tenant and master rotation lose nothing and leave nothing
     readable under the retired key; no value or key in an event, pg_stat_activity or an error; the
     same SQLSTATEs under German lc_messages.
  P. prune and delete_archived: refused to every role but the maintainer, with nothing deleted; an
     honest prune of hostile data in small batches removes nothing young or pending, is recorded, and
     raises no false alarm; forged prune points and block bookkeeping by a superuser with triggers off
     are found by both verifiers or status.
  A. archives: the offline verifiers (built-in and standalone) and the online one refuse a last
     manifest changed in bytes but not in meaning, a recompressed data object, lines reordered with
     their hashes recomputed, a batch duplicated under the next one's name; hostile honest data on
     S3 raises no false alarm and restores whole.
  T. HTTP API tenant tokens: tenants named with LIKE wildcards, case and Unicode variants, spaces;
     other tenants' targets, kinds and seqs asked for by a tenant token; headers naming a tenant;
     an expired or revoked token refused at once; the token (whole, its secret half, in capitals,
     cut short) never said back, whether sent in the wrong place or pasted as a filter value
     (by_kind_prefix, tenant_id, ...) of the listing, count and monthly endpoints.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when
an honest use is refused). Roles made here are named t91_* and dropped afterwards.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import unicodedata
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from test_archive import aws, s3_endpoint  # noqa: F401  (fixtures)
from test_archive_offline import verifier_file  # noqa: F401  (fixture)
from test_secrets import client_key_setup, keys  # noqa: F401  (fixture)
from trial_helpers import both_verifiers, login, problems_of, seal_all, tamper, try_write

from pgaudit_py import archive as archiving
from pgaudit_py import canonical, prune_events, record, seal, secrets
from pgaudit_py.archive_targets import open_target
from pgaudit_py.checkpoint import generate_keys, load_keys
from pgaudit_py.cli import cli
from pgaudit_py.errors import SecretIntegrityError

VALUE = "sk_live_t91_Zq8x7PaYm3"


# ============================================ class S ============================================

@pytest.fixture
def vault(db, connect, keys):  # noqa: F811
    """app_secrets holding a fresh client master key; slot t91.api_key declared; t1 and t2 each hold
    a value."""
    app = connect("app_secrets")
    key = keys.new()
    client_key_setup(app, key)
    secrets.declare_secret(app, "t91.api_key", "t91 slot")
    secrets.declare_secret(app, "t91.other", "t91 other slot")
    secrets.put_secret(app, "t1", "t91.api_key", VALUE + "_one")
    secrets.put_secret(app, "t2", "t91.api_key", VALUE + "_two")
    app.key = key
    return app


def reads(db, tenant="t1", slot="t91.api_key") -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = 'tenant.secret.read' AND tenant_id = %s"
                      " AND target_id = %s", [tenant, slot]).fetchone()[0]


@pytest.fixture
def plain_login(db, connect):
    db.execute("CREATE ROLE t91_plain LOGIN")
    try:
        yield connect("t91_plain")
    finally:
        with suppress_all():
            db.execute("DROP OWNED BY t91_plain")
        db.execute("DROP ROLE IF EXISTS t91_plain")


class suppress_all:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], Exception)


@pytest.mark.parametrize("role", ["app_reader", "app_writer", "app_maintainer", "t91_plain"])
def test_s1_no_other_role_reaches_a_value_or_the_helpers_beneath_read_secret(db, connect, vault, plain_login, role):
    """Every other role tries read_secret, list_secrets, the stored rows, and every function of the
    audit schema named like a key or decryption helper. Safe: all refused; no value in any answer."""
    conn = connect(role)
    got = []
    helpers = [r[0] for r in db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'audit' AND p.proname ~ '(decrypt|data_key|unwrap|_key$|secret|master)'")]
    for h in helpers:
        if has := db.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", [role, h]).fetchone()[0]:
            got.append(("may execute", h, has))
    for sql in ["SELECT audit.read_secret('t1', 't91.api_key')",
                "SELECT * FROM audit.list_secrets('t1')",
                "SELECT ciphertext FROM audit.secret_values",
                "SELECT wrapped FROM audit.wrapped_data_keys"]:
        try:
            rows = conn.execute(sql).fetchall()
            got.append((sql, rows))
        except psycopg.Error:
            pass
    assert got == []


def test_s2_the_secrets_role_cannot_call_the_decryption_helpers_directly(db, vault):
    """The secrets role calls the internal helpers beneath read_secret (a data key, a decryption)
    itself. Safe: refused; else it reads a value with no tenant.secret.read event."""
    helpers = [r[0] for r in db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'audit' AND p.proname ~ '^_' AND p.proname ~ '(decrypt|data_key|unwrap|master|wrap)'")]
    callable_ = [h for h in helpers
                 if db.execute("SELECT has_function_privilege('app_secrets', %s, 'EXECUTE')", [h]).fetchone()[0]]
    assert callable_ == []


def test_s3_reads_through_a_cursor_leave_one_event_each(db, vault):
    """A cursor over read_secret for three rows, fetched in a committed transaction. Safe: three
    read events for three values."""
    before = reads(db)
    with vault.transaction():
        vault.execute("DECLARE t91_c CURSOR FOR SELECT audit.read_secret('t1', 't91.api_key') FROM generate_series(1, 3)")
        got = [r[0] for r in vault.execute("FETCH ALL FROM t91_c")]
        vault.execute("CLOSE t91_c")
    assert got == [VALUE + "_one"] * 3
    assert reads(db) - before == 3


def test_s4_reads_through_a_prepared_statement_leave_one_event_each(db, vault):
    """PREPARE ... EXECUTE twice (autocommit). Safe: two events."""
    before = reads(db)
    vault.execute("PREPARE t91_p(text, text) AS SELECT audit.read_secret($1, $2)")
    a = vault.execute("EXECUTE t91_p('t1', 't91.api_key')").fetchone()[0]
    b = vault.execute("EXECUTE t91_p('t1', 't91.api_key')").fetchone()[0]
    vault.execute("DEALLOCATE t91_p")
    assert (a, b) == (VALUE + "_one",) * 2
    assert reads(db) - before == 2


def test_s5_reads_through_a_temporary_view_and_sql_function_leave_their_events(db, vault):
    """The secrets session hides the call behind a temporary view and an inlinable SQL function in
    pg_temp. Safe: each value returned comes with its event."""
    vault.execute("CREATE TEMP VIEW t91_v AS SELECT audit.read_secret('t1', 't91.api_key') AS v")
    vault.execute("CREATE FUNCTION pg_temp.t91_f(t text) RETURNS text LANGUAGE sql STABLE"
                  " AS $$ SELECT audit.read_secret(t, 't91.api_key') $$")
    before = reads(db)
    v1 = vault.execute("SELECT v FROM t91_v").fetchone()[0]
    v2 = vault.execute("SELECT pg_temp.t91_f('t1')").fetchone()[0]
    v3 = vault.execute("WITH x AS MATERIALIZED (SELECT pg_temp.t91_f('t1') AS v) SELECT v FROM x").fetchone()[0]
    assert (v1, v2, v3) == (VALUE + "_one",) * 3
    assert reads(db) - before == 3


def test_s6_a_read_in_a_read_only_transaction_fails_or_is_recorded(db, vault):
    """BEGIN READ ONLY (and default_transaction_read_only): the event cannot be written. Safe: the
    read fails (no value), or the event is in the log after commit."""
    before = reads(db)
    got = None
    try:
        with vault.transaction():
            vault.execute("SET TRANSACTION READ ONLY")
            got = vault.execute("SELECT audit.read_secret('t1', 't91.api_key')").fetchone()[0]
    except psycopg.Error:
        got = None
    assert got is None or reads(db) - before == 1


def test_s7_a_read_of_many_rows_in_one_statement_is_one_event_a_value(db, vault):
    """One statement reading the same slot for 5 rows and another slot's absent value. Safe: as
    many read events as values handed out."""
    before = reads(db)
    got = vault.execute("SELECT audit.read_secret('t1', 't91.api_key') FROM generate_series(1, 5)").fetchall()
    assert len(got) == 5 and all(r[0] == VALUE + "_one" for r in got)
    assert reads(db) - before == 5


S_MOVES = {
    "value_to_other_tenant": "UPDATE audit.secret_values SET ciphertext = (SELECT ciphertext FROM audit.secret_values"
                             " WHERE tenant_id = 't1' AND key = 't91.api_key') WHERE tenant_id = 't2' AND key = 't91.api_key'",
    "value_to_other_slot": "INSERT INTO audit.secret_values SELECT * FROM audit.secret_values WHERE tenant_id = 't1'"
                           " AND key = 't91.api_key' ON CONFLICT DO NOTHING",
    "wrapped_key_to_other_tenant": "UPDATE audit.wrapped_data_keys SET wrapped = (SELECT wrapped FROM audit.wrapped_data_keys"
                                   " WHERE tenant_id = 't1' LIMIT 1) WHERE tenant_id = 't2'",
    "value_relabelled_to_another_version": "INSERT INTO audit.data_keys (tenant_id, version) VALUES ('t2', 2)"
                                           " ON CONFLICT DO NOTHING; UPDATE audit.secret_values SET key_version = 2"
                                           " WHERE tenant_id = 't2'",
}


@pytest.mark.parametrize("move", list(S_MOVES))
def test_s8_a_value_or_wrapped_key_moved_to_another_tenant_or_slot_never_decrypts(db, vault, move):
    """A superuser (triggers off) moves t1's ciphertext or wrapped data key to t2 (or to another
    slot). Safe: the read raises PA012; never t1's value under t2's name."""
    if move == "value_to_other_slot":
        cols = [r[0] for r in db.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'audit.secret_values'::regclass"
                                         " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
        sel = ", ".join("'t91.other'" if c == "key" else c for c in cols)
        tamper(db, f"INSERT INTO audit.secret_values ({', '.join(cols)}) SELECT {sel} FROM audit.secret_values"
                   " WHERE tenant_id = 't1' AND key = 't91.api_key'")
        tenant, slot = "t1", "t91.other"
    else:
        tamper(db, S_MOVES[move])
        tenant, slot = "t2", "t91.api_key"
    try:
        got = secrets.read_secret(vault, tenant, slot)
    except SecretIntegrityError:
        got = "PA012"
    except psycopg.Error as e:
        got = e.sqlstate
    assert got == "PA012"


def test_s9_a_tenant_rotation_loses_nothing_and_leaves_no_old_key_or_ciphertext(db, vault):
    """Six values for t1 over three slots and versions, rotated one value a batch. Safe: every value
    reads back, nothing is under the old version, the old data key and its wrappings are gone, and t2
    is untouched."""
    for i in range(4):
        secrets.declare_secret(vault, f"t91.s{i}", "x")
        secrets.put_secret(vault, "t1", f"t91.s{i}", f"{VALUE}_{i}")
    before = {r[0]: r[1] for r in db.execute("SELECT key, key_version FROM audit.secret_values WHERE tenant_id = 't1'")}
    old = max(before.values())
    assert secrets.rotate_tenant_key(vault, "t1", batch_size=1).done
    after = db.execute("SELECT key, key_version FROM audit.secret_values WHERE tenant_id = 't1'").fetchall()
    assert sorted(k for k, _ in after) == sorted(before) and all(v > old for _, v in after)
    assert db.execute("SELECT count(*) FROM audit.wrapped_data_keys WHERE tenant_id = 't1' AND version <= %s",
                      [old]).fetchone()[0] == 0
    for i in range(4):
        assert secrets.read_secret(vault, "t1", f"t91.s{i}") == f"{VALUE}_{i}"
    assert secrets.read_secret(vault, "t1", "t91.api_key") == VALUE + "_one"
    assert secrets.read_secret(vault, "t2", "t91.api_key") == VALUE + "_two"


def test_s10_after_master_rotation_the_retired_key_alone_reads_nothing(db, vault, keys):  # noqa: F811
    """Rotate the master key; then a session holding only the old one. Safe: no value read; no wrapping
    under the retired version remains; the new key reads all."""
    old, new = vault.key, keys.new()
    with secrets.use_master_key(vault, old, new_key=new):
        secrets.add_master_key(vault)
        assert secrets.rotate_master_key(vault, batch_size=1).done
    assert db.execute("SELECT count(*) FROM audit.wrapped_data_keys w JOIN audit.master_keys m"
                      " ON m.version = w.master_version WHERE m.state = 'retired'").fetchone()[0] == 0
    got = []
    with secrets.use_master_key(vault, old), suppress(Exception):
        got.append(secrets.read_secret(vault, "t1", "t91.api_key"))
    assert got == []
    with secrets.use_master_key(vault, new):
        assert secrets.read_secret(vault, "t2", "t91.api_key") == VALUE + "_two"


def test_s11_no_value_in_any_event_or_in_pg_stat_activity_after_every_operation(db, vault):
    """put, read, list, rotate, delete. Safe: neither the values nor the master key appear in the log's
    text or the session's pg_stat_activity query."""
    secrets.put_secret(vault, "t1", "t91.other", VALUE + "_three")
    secrets.read_secret(vault, "t1", "t91.other")
    secrets.list_secrets(vault, "t1")
    secrets.rotate_tenant_key(vault, "t1", batch_size=1)
    secrets.delete_secret(vault, "t1", "t91.other")
    seal_all(db)
    text = db.execute("SELECT string_agg(concat_ws(' ', kind, tenant_id, target_id, actor_id, payload::text,"
                      " row_before::text, row_after::text), E'\\n') FROM audit.events").fetchone()[0]
    activity = db.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [vault.info.backend_pid]).fetchone()[0]
    assert [w for w in (VALUE, vault.key, vault.key.upper()) if w in text or w in activity] == []


S_BAD = {
    "value_too_big": ("SELECT audit.put_secret('t1', 't91.api_key', %s)", lambda: ("sk_live_BIGt91" * 6000,)),
    "undeclared_slot_like_value": ("SELECT audit.put_secret('t1', %s, 'v')", lambda: ("sk_live_SLOTt91zzq",)),
    "read_undeclared_slot_like_value": ("SELECT audit.read_secret('t1', %s)", lambda: ("sk_live_SLOTt91zzq",)),
    "delete_undeclared": ("SELECT audit.delete_secret('t1', %s)", lambda: ("sk_live_SLOTt91zzq",)),
}


@pytest.mark.parametrize("case", list(S_BAD))
def test_s12_refused_secrets_input_is_not_repeated_and_keeps_its_sqlstate_in_german(db, connect, vault, case):
    """The same bad call as app_secrets under C and as a secrets login under lc_messages de_DE.UTF-8.
    Safe: refused with the same SQLSTATE; neither message, detail, hint nor context repeats the text."""
    sql, args = S_BAD[case]
    given = args()

    def attempt(conn):
        try:
            conn.execute(sql, given)
            return None, ""
        except psycopg.Error as e:
            d = e.diag
            return e.sqlstate, " ".join(str(x) for x in (str(e), d.message_detail, d.message_hint, d.context))

    with login(db, connect, "t91_c", "app_secrets", {"lc_messages": "'C'"}) as c:
        secrets._set(c, "master_key", vault.key)
        c_state, c_text = attempt(c)
    with login(db, connect, "t91_de", "app_secrets", {"lc_messages": "'de_DE.UTF-8'"}) as de:
        secrets._set(de, "master_key", vault.key)
        de_state, de_text = attempt(de)
    assert c_state is not None and c_state == de_state, (c_state, de_state)
    assert "Funktion" in de_text and "Funktion" not in c_text  # German was in force, and C
    needle = given[0][:14]
    assert needle not in c_text and needle not in de_text


def test_s13_the_integrity_error_names_no_slot_it_was_given(db, vault):
    """t2's ciphertext replaced by t1's (a superuser, triggers off); the secrets role reads t2's slot.
    Safe (docs/secrets.md: "No error of the secrets functions repeats a slot, a which, a value or a
    key it was given (only a tenant that holds a data key and a key file's absolute path are
    named)"): PA012, and neither message, detail, hint nor context repeats the slot."""
    tamper(db, S_MOVES["value_to_other_tenant"])
    try:
        vault.execute("SELECT audit.read_secret('t2', 't91.api_key')")
        text, state = "", None
    except psycopg.Error as e:
        d = e.diag
        text, state = " ".join(str(x) for x in (str(e), d.message_detail, d.message_hint, d.context)), e.sqlstate
    assert state == "PA012"
    assert "t91.api_key" not in text, text


def test_s14_writes_and_deletes_in_the_middle_of_a_tenant_rotation_lose_nothing(db, vault):
    """Four values; one rotation batch; then a write to a rotated slot, a write to an unrotated one,
    a delete and a new slot; then the rotation finishes. Safe: every live value reads as last
    written, the deleted one is gone, and nothing is left under the old data key."""
    for i in range(4):
        secrets.declare_secret(vault, f"t91.m{i}", "x")
        secrets.put_secret(vault, "t1", f"t91.m{i}", f"{VALUE}_m{i}")
    old = db.execute("SELECT max(version) FROM audit.data_keys WHERE tenant_id = 't1'").fetchone()[0]
    vault.execute("SELECT * FROM audit.rotate_tenant_key('t1', 1)")
    vault.execute("SELECT * FROM audit.rotate_tenant_key('t1', 1)")
    secrets.put_secret(vault, "t1", "t91.m0", VALUE + "_m0b")
    secrets.put_secret(vault, "t1", "t91.m3", VALUE + "_m3b")
    secrets.delete_secret(vault, "t1", "t91.m2")
    secrets.put_secret(vault, "t1", "t91.other", VALUE + "_new")
    assert secrets.rotate_tenant_key(vault, "t1", batch_size=1).done
    want = {"t91.m0": VALUE + "_m0b", "t91.m1": VALUE + "_m1", "t91.m2": None, "t91.m3": VALUE + "_m3b",
            "t91.other": VALUE + "_new", "t91.api_key": VALUE + "_one"}
    assert {k: secrets.read_secret(vault, "t1", k) for k in want} == want
    assert db.execute("SELECT count(*) FROM audit.secret_values WHERE tenant_id = 't1' AND key_version <= %s",
                      [old]).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit.data_keys WHERE tenant_id = 't1' AND version <= %s",
                      [old]).fetchone()[0] == 0


def test_s15_a_tenants_first_key_made_mid_master_rotation_by_an_old_key_session_survives(db, connect, vault, keys):  # noqa: F811
    """The master rotation runs one batch; another secrets session holding only the old key writes a
    new tenant's first secret; the rotation finishes. Safe: a session with the new key alone reads it,
    and no wrapping under the retired key is left."""
    old, new = vault.key, keys.new()
    with secrets.use_master_key(vault, old, new_key=new):
        secrets.add_master_key(vault)
        vault.execute("SELECT * FROM audit.rotate_master_key(1)")
        other = connect("app_secrets")
        with secrets.use_master_key(other, old):
            secrets.put_secret(other, "t91_newcomer", "t91.api_key", VALUE + "_newcomer")
        assert secrets.rotate_master_key(vault, batch_size=1).done
    with secrets.use_master_key(vault, new):
        got = secrets.read_secret(vault, "t91_newcomer", "t91.api_key")
    assert got == VALUE + "_newcomer"
    assert db.execute("SELECT count(*) FROM audit.wrapped_data_keys w JOIN audit.master_keys m"
                      " ON m.version = w.master_version WHERE m.state = 'retired'").fetchone()[0] == 0


@pytest.mark.parametrize("value", ["a" * 65536, "\u00e9" * 32768, "\U0001f600" * 16384],
                         ids=["ascii_64KiB", "two_byte_64KiB", "four_byte_64KiB"])
def test_s16_honest_values_of_exactly_64_kib_are_stored_and_read_back(db, vault, value):
    """docs/secrets.md: "values are at most 64 KiB of text". Safe: a value of exactly 65,536 bytes
    (in one, two or four-byte characters) is stored and read back whole; one byte more is refused."""

    assert len(value.encode()) == 65536
    secrets.put_secret(vault, "t1", "t91.other", value)
    assert secrets.read_secret(vault, "t1", "t91.other") == value
    assert try_write(vault, "SELECT audit.put_secret('t1', 't91.other', %s)", [value + "a"]) is not None


def test_s17_a_read_copied_out_with_copy_to_stdout_leaves_its_event(db, vault):
    """COPY (SELECT read_secret ... FROM generate_series(1, 2)) TO STDOUT. Safe: two values out, two
    events in."""
    before = reads(db)
    with vault.cursor() as cur, cur.copy("COPY (SELECT audit.read_secret('t1', 't91.api_key') FROM generate_series(1, 2))"
                                         " TO STDOUT") as cp:
        out = b"".join(bytes(chunk) for chunk in cp)
    assert out.count((VALUE + "_one").encode()) == 2
    assert reads(db) - before == 2


@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_s18_a_tenant_rotation_at_another_isolation_level_is_refused_and_changes_nothing(db, vault, level):
    """docs/secrets.md: rotate_tenant_key "refuses another isolation level". Safe: refused; the data
    keys and ciphertexts are as they were."""
    before = db.execute("SELECT tenant_id, key, key_version, ciphertext FROM audit.secret_values ORDER BY 1, 2").fetchall()
    keys_before = db.execute("SELECT tenant_id, version FROM audit.data_keys ORDER BY 1, 2").fetchall()
    refused = None
    try:
        with vault.transaction():
            vault.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
            vault.execute("SELECT * FROM audit.rotate_tenant_key('t1', 1)")
    except psycopg.Error as e:
        refused = e.sqlstate
    assert refused is not None
    assert db.execute("SELECT tenant_id, key, key_version, ciphertext FROM audit.secret_values ORDER BY 1, 2"
                      ).fetchall() == before
    assert db.execute("SELECT tenant_id, version FROM audit.data_keys ORDER BY 1, 2").fetchall() == keys_before


def test_s19_failing_secrets_calls_put_no_value_in_the_server_log(db, vault, keys):  # noqa: F811
    """put_secret (too big, undeclared slot, NULL tenant) and read_secret of a tampered value fail
    under the server's logging of failing statements. Safe: no value given is in the server log."""
    marks = [f"sk_live_LOGt91_{i}_{uuid.uuid4().hex[:8]}" for i in range(3)]
    calls = [lambda: secrets.put_secret(vault, "t1", "t91.api_key", marks[0] * 3000),
             lambda: secrets.put_secret(vault, "t1", "t91.undeclared", marks[1]),
             lambda: secrets.put_secret(vault, None, "t91.api_key", marks[2])]
    for call in calls:
        with suppress_all():
            call()
    tamper(db, S_MOVES["value_to_other_tenant"])
    with suppress_all():
        secrets.read_secret(vault, "t2", "t91.api_key")
    logged = keys.logged()
    assert [m for m in marks + [VALUE + "_one", VALUE + "_two"] if m in logged] == []


WILD_TENANTS = ["t91_", "t91x", "t91%", "t91", "t910", "T91_", "t91_ ", "t91\\", "\u00e9t\u0301" + "x" * 200]


@pytest.mark.parametrize("rotated", ["t91_", "t91%", "t91"])
def test_s20_a_tenant_rotation_touches_only_that_exact_tenant(db, vault, rotated):
    """Tenants whose names are LIKE-wildcard, case, space, backslash and prefix twins of each other;
    one is rotated. Safe: only its values move to a new data key; every other tenant's data keys and
    ciphertexts are untouched, and every value reads back."""
    for t in WILD_TENANTS:
        secrets.put_secret(vault, t, "t91.other", f"{VALUE}_{t}")
    others = db.execute("SELECT tenant_id, key, key_version, ciphertext FROM audit.secret_values WHERE tenant_id <> %s"
                        " ORDER BY 1, 2", [rotated]).fetchall()
    assert secrets.rotate_tenant_key(vault, rotated, batch_size=1).done
    assert db.execute("SELECT tenant_id, key, key_version, ciphertext FROM audit.secret_values WHERE tenant_id <> %s"
                      " ORDER BY 1, 2", [rotated]).fetchall() == others
    assert {t: secrets.read_secret(vault, t, "t91.other") for t in WILD_TENANTS} == {
        t: f"{VALUE}_{t}" for t in WILD_TENANTS}


def test_s21_a_master_rotation_keeps_every_hostile_tenants_secrets(db, vault, keys):  # noqa: F811
    """Tenants with wildcard, Unicode and long names; the master key rotated one data key a batch.
    Safe: the new key alone reads every value; the old key alone reads none."""
    for t in WILD_TENANTS:
        secrets.put_secret(vault, t, "t91.other", f"{VALUE}_{t}")
    old, new = vault.key, keys.new()
    with secrets.use_master_key(vault, old, new_key=new):
        secrets.add_master_key(vault)
        assert secrets.rotate_master_key(vault, batch_size=1).done
    with secrets.use_master_key(vault, new):
        got = {t: secrets.read_secret(vault, t, "t91.other") for t in WILD_TENANTS}
    assert got == {t: f"{VALUE}_{t}" for t in WILD_TENANTS}


# ============================================ class P ============================================

def make_blocks(db, n, per=3, tenant="t1", payload=None):
    for b in range(n):
        for i in range(per):
            record(db, "t91.ev", tenant_id=tenant, payload=payload or {"b": b, "i": i})
        seal(db)


@pytest.mark.parametrize("role", ["app_reader", "app_writer", "app_secrets", "t91_plain"])
def test_p1_every_other_role_is_refused_prune_and_delete_archived_and_nothing_goes(db, connect, plain_login, role):
    """Each other role calls prune_events and delete_archived (and preview with hostile arguments).
    Safe: refused; the log keeps every event."""
    make_blocks(db, 3)
    time.sleep(0.05)
    n = db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    conn = connect(role)
    done = [sql for sql in ["SELECT * FROM audit.prune_events(interval '1 millisecond', 100000)",
                            "SELECT audit.delete_archived('blocks-000000000001-000000000001')"]
            if try_write(conn, sql) is None]
    assert done == []
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0] == n


HOSTILE = [
    {"deep": json.loads("[" * 900 + "]" * 900)},
    {"sep": "a\u2028b\u2029c\u0085d", "bom": "\ufeffx", "bidi": "\u202eevil"},
    {unicodedata.normalize("NFC", "é"): 1, unicodedata.normalize("NFD", "é"): 2},
    {"big": "x" * 60_000},
    {"n": 1e308, "m": -0.0, "e": "\\u0000"},
]


def test_p2_an_honest_prune_of_hostile_data_in_small_batches_takes_only_what_it_may(db, connect):
    """Old blocks of hostile but honest payloads; a pending event; a young block; prune by the
    maintainer one event at a time. Safe: only whole old blocks go, nothing pending or young; each
    call recorded with its actor; both verifiers good and status clean."""
    for p in HOSTILE:
        record(db, "t91.old", tenant_id="t1", payload=p)
        seal(db)
    time.sleep(1.2)
    record(db, "t91.young", tenant_id="t1", payload={"y": 1})
    seal(db)
    record(db, "t91.pending", tenant_id="t1")
    maint = connect("app_maintainer")
    calls = 0
    while True:
        r = prune_events(maint, timedelta(seconds=1), batch_size=1)
        calls += 1 if r.deleted else 0
        if not r.more:
            break
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't91.old'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind IN ('t91.young', 't91.pending')").fetchone()[0] == 2
    seal_all(db)
    pruned = db.execute("SELECT actor_id, db_role FROM audit.events WHERE kind = 'audit.pruned'").fetchall()
    assert len(pruned) == calls >= 1 and all(r[1] == "app_maintainer" for r in pruned)
    assert both_verifiers(db) == (True, True)
    assert problems_of(db) == []


P_FORGERIES = {
    # the real prune took block 1; the forger moves the point to 2 and deletes block 2's events
    "point_moved_forward": ["DELETE FROM audit.event_log WHERE seq BETWEEN (SELECT first_seq FROM audit.blocks WHERE block_no = 2)"
                            " AND (SELECT last_seq FROM audit.blocks WHERE block_no = 2)",
                            "INSERT INTO audit.prune_points SELECT block_no, block_hash, last_seq, now(), now(), 'app_maintainer'"
                            " FROM audit.blocks WHERE block_no = 2"],
    # a point past every block sealed
    "point_past_the_end": ["INSERT INTO audit.prune_points VALUES (999, '\\x00', 999999, now(), now(), 'app_maintainer')"],
    # the real point's hash changed
    "point_hash_changed": ["UPDATE audit.prune_points SET block_hash = sha256(block_hash)"],
    # the real point's last_seq stretched over block 2, its events deleted
    "point_last_seq_stretched": ["UPDATE audit.prune_points SET last_seq = (SELECT last_seq FROM audit.blocks WHERE block_no = 2)",
                                 "DELETE FROM audit.event_log WHERE seq BETWEEN (SELECT first_seq FROM audit.blocks WHERE block_no = 2)"
                                 " AND (SELECT last_seq FROM audit.blocks WHERE block_no = 2)"],
    # block 3's events deleted under a point naming block 3 while block 2 stays (not a prefix)
    "hole_under_a_later_point": ["DELETE FROM audit.event_log WHERE seq BETWEEN (SELECT first_seq FROM audit.blocks WHERE block_no = 3)"
                                 " AND (SELECT last_seq FROM audit.blocks WHERE block_no = 3)",
                                 "INSERT INTO audit.prune_points SELECT block_no, block_hash, last_seq, now(), now(), 'app_maintainer'"
                                 " FROM audit.blocks WHERE block_no = 3"],
    # the prune point of block 1 erased: block 1's absence unexplained
    "point_erased": ["DELETE FROM audit.prune_points"],
    # block 2's event_count lowered and its newest event deleted
    "block_count_lowered": ["DELETE FROM audit.event_log WHERE seq = (SELECT last_seq FROM audit.blocks WHERE block_no = 2)",
                            "UPDATE audit.blocks SET event_count = event_count - 1, last_seq = last_seq - 1 WHERE block_no = 2"],
}


@pytest.mark.parametrize("how", list(P_FORGERIES))
def test_p3_forged_prune_bookkeeping_is_found_by_both_verifiers_or_status(db, connect, how):
    """Five blocks, an honest prune of block 1 (the control: no alarm), then a superuser with triggers
    off forges the prune points or block rows. Safe: SQL verify, Python verify or status says so."""
    make_blocks(db, 1)
    time.sleep(1.1)
    make_blocks(db, 4)
    r = prune_events(connect("app_maintainer"), timedelta(seconds=1), batch_size=1)
    assert r.deleted == 3
    seal_all(db)
    assert both_verifiers(db) == (True, True) and problems_of(db) == []
    for stmt in P_FORGERIES[how]:
        tamper(db, stmt)
    sql_ok, py_ok = both_verifiers(db)
    assert not (sql_ok and py_ok and problems_of(db) == []), "the forgery went unnoticed"
    assert not sql_ok and not py_ok, f"the verifiers disagree: sql={sql_ok} python={py_ok}"


# ============================================ class A ============================================

def build(db, tmp_path, url, rounds=4, payloads=None):
    keys_dir = tmp_path / "keys"
    generate_keys(keys_dir)
    for r in range(rounds):
        for p in (payloads or [{"r": r, "i": i} for i in range(3)]):
            record(db, "t91.arch", tenant_id="t1", target_id=f"r{r}", payload=p)
        seal(db)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 3, 3)")
    time.sleep(0.05)
    done = archiving.archive(db, open_target(url), load_keys(signing_key=keys_dir / "checkpoint-ed25519.pem"),
                             older_than=timedelta(milliseconds=1))
    assert len(done.batches) >= 3
    return keys_dir / "checkpoint-ed25519.pub.pem", [b.batch_id for b in done.batches]


def verdicts(db, verifier, directory, public) -> dict[str, bool]:
    """ok? by the built-in offline command, the standalone file, and the online verify_archive."""
    builtin = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", f"file://{directory}",
                                       "--public-key", str(public)])
    standalone = subprocess.run([sys.executable, "-I", str(verifier), str(directory), "--public-key", str(public)],
                                capture_output=True, text=True, timeout=120, cwd=verifier.parent)
    online = archiving.verify_archive(db, open_target(f"file://{directory}"), load_keys(public_key=public))
    return {"builtin": builtin.exit_code == 0, "standalone": standalone.returncode == 0, "online": online.ok}


def last_manifest(directory: Path, ids) -> Path:
    return directory / f"{ids[-1]}.manifest.json"


def edit_manifest_bytes(change):
    def run(directory, ids):
        p = last_manifest(directory, ids)
        p.write_bytes(change(p.read_bytes()))
    return run


def recompress(directory, ids):
    p = directory / f"{ids[0]}.jsonl.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes()), compresslevel=1, mtime=0))


def reorder_lines_with_hashes(directory, ids):
    """Swap two lines of the last batch and put the new data hashes into its manifest (unsigned)."""
    import hashlib
    p = directory / f"{ids[-1]}.jsonl.gz"
    lines = gzip.decompress(p.read_bytes()).split(b"\n")[:-1]
    lines[0], lines[1] = lines[1], lines[0]
    raw = b"".join(x + b"\n" for x in lines)
    gz = gzip.compress(raw, mtime=0)
    p.write_bytes(gz)
    m = last_manifest(directory, ids)
    doc = json.loads(m.read_bytes())
    doc["manifest"].update(data_sha256=hashlib.sha256(raw).hexdigest(), gz_sha256=hashlib.sha256(gz).hexdigest(),
                           gz_bytes=len(gz))
    m.write_text(canonical.dumps(doc) + "\n")


def duplicate_batch_over_next(directory, ids):
    """The second batch's objects replaced by copies of the first's."""
    for suffix in (".jsonl.gz", ".manifest.json"):
        (directory / f"{ids[1]}{suffix}").write_bytes((directory / f"{ids[0]}{suffix}").read_bytes())


def truncate_last_object(directory, ids):
    p = directory / f"{ids[-1]}.jsonl.gz"
    p.write_bytes(p.read_bytes()[:-9])


def escape_a_digit(raw: bytes) -> bytes:
    """A digit of a hash string in the last manifest's body written as a JSON \\u escape: the same
    document, other bytes."""
    text = raw.decode()
    i = text.index('"last_block_hash": "') + len('"last_block_hash": "')
    return (text[:i] + f"\\u{ord(text[i]):04x}" + text[i + 1:]).encode()


A_CHANGES = {
    "last_manifest_crlf": edit_manifest_bytes(lambda b: b.rstrip(b"\n") + b"\r\n"),
    "last_manifest_no_newline": edit_manifest_bytes(lambda b: b.rstrip(b"\n")),
    "last_manifest_extra_space": edit_manifest_bytes(lambda b: b.replace(b'", "', b'",  "', 1)),
    "last_manifest_leading_bom": edit_manifest_bytes(lambda b: b"\xef\xbb\xbf" + b),
    "last_manifest_escaped_digit": edit_manifest_bytes(escape_a_digit),
    "last_manifest_unknown_top_field": edit_manifest_bytes(
        lambda b: (b.rstrip(b"\n")[:-1] + b', "t91": 1}\n')),
    "data_recompressed": recompress,
    "lines_reordered_hashes_recomputed": reorder_lines_with_hashes,
    "batch_duplicated_over_the_next": duplicate_batch_over_next,
    "last_object_truncated": truncate_last_object,
}


@pytest.fixture
def archived(db, tmp_path):
    directory = tmp_path / "archive"
    public, ids = build(db, tmp_path, f"file://{directory}")
    return directory, public, ids


def test_a0_the_intact_archive_verifies_everywhere(db, archived, verifier_file):  # noqa: F811
    directory, public, _ = archived
    assert verdicts(db, verifier_file, directory, public) == {"builtin": True, "standalone": True, "online": True}


@pytest.mark.parametrize("change", list(A_CHANGES))
def test_a1_a_changed_archive_object_is_refused_by_every_verifier(db, archived, verifier_file, change):  # noqa: F811
    """One change to an archived object or manifest. Safe: the built-in offline command, the
    standalone verifier (public key only) and the online verifier all refuse it."""
    directory, public, ids = archived
    A_CHANGES[change](directory, ids)
    assert verdicts(db, verifier_file, directory, public) == {"builtin": False, "standalone": False, "online": False}


def test_a2_hostile_honest_data_on_s3_raises_no_false_alarm_and_restores_whole(db, connect, aws, tmp_path):  # noqa: F811
    """Deep, huge and odd-Unicode payloads archived to a real S3 API. Safe: online verify good, both
    chain verifiers good after the delete, and a restore holds every archived event's line."""
    bucket = f"t91-{uuid.uuid4().hex[:10]}"
    target = open_target(f"s3://{bucket}/a")
    target.client.create_bucket(Bucket=bucket)
    public, ids = build(db, tmp_path, f"s3://{bucket}/a", rounds=3, payloads=HOSTILE[:3] + [{"k\u2028": "\u0085"}])
    checked = archiving.verify_archive(db, target, load_keys(public_key=public))
    assert checked.problems == []
    assert both_verifiers(db) == (True, True)
    maint = connect("app_maintainer")
    n = archiving.restore_batch(maint, target, ids[0])
    got = db.execute("SELECT count(*) FROM audit.restored_events WHERE batch_id = %s", [ids[0]]).fetchone()[0]
    assert n == got > 0
    assert problems_of(db) == []


A_DATA_CHANGES = ["data_recompressed", "lines_reordered_hashes_recomputed", "batch_duplicated_over_the_next",
                  "last_object_truncated"]


@pytest.mark.parametrize("change", A_DATA_CHANGES)
def test_a3_the_online_restore_refuses_what_the_verifiers_refuse(db, connect, archived, change):
    """The changes to a data object the verifiers refuse, then a restore of that batch by the
    maintainer. Safe: the restore refuses (it agrees with the verifiers) and restored_events holds
    nothing of the batch."""
    directory, public, ids = archived
    A_CHANGES[change](directory, ids)
    batch = {"data_recompressed": ids[0], "batch_duplicated_over_the_next": ids[1]}.get(change, ids[-1])
    maint = connect("app_maintainer")
    try:
        archiving.restore_batch(maint, open_target(f"file://{directory}"), batch)
        refused = False
    except Exception:  # noqa: BLE001
        refused = True
    held = db.execute("SELECT count(*) FROM audit.restored_events WHERE batch_id = %s", [batch]).fetchone()[0]
    assert (refused, held) == (True, 0)


def test_a4_hostile_honest_data_in_a_directory_raises_no_false_alarm_anywhere(db, tmp_path, verifier_file):  # noqa: F811
    """Deep, large, separator, BOM, bidi, NFC/NFD twin keys, 1e308 and -0 payloads archived to a
    directory. Safe: the built-in, standalone and online verifiers all say good; both chain verifiers
    too."""
    directory = tmp_path / "archive"
    public, _ = build(db, tmp_path, f"file://{directory}", rounds=3, payloads=HOSTILE)
    assert verdicts(db, verifier_file, directory, public) == {"builtin": True, "standalone": True, "online": True}
    assert both_verifiers(db) == (True, True)


def test_a5_a_batch_record_stretched_over_a_hot_block_then_deleted_is_found(db, connect, archived):
    """After an honest archive, a superuser (triggers off) stretches the last batch's record over the
    next hot block and marks it undeleted; the maintainer calls delete_archived on it. Safe: refused,
    or the loss of that never-archived block is named by the online archive verifier, either chain
    verifier or status."""
    directory, public, ids = archived
    make_blocks(db, 2)
    b = db.execute("SELECT last_block FROM audit.archive_batches WHERE batch_id = %s", [ids[-1]]).fetchone()[0]
    nxt = db.execute("SELECT last_seq FROM audit.blocks WHERE block_no = %s", [b + 1]).fetchone()[0]
    n = db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    tamper(db, f"UPDATE audit.archive_batches SET last_block = {b + 1}, last_seq = {nxt}, deleted_at = NULL"
               f" WHERE batch_id = '{ids[-1]}'")
    refused = try_write(connect("app_maintainer"), "SELECT audit.delete_archived(%s)", [ids[-1]])
    gone = n - db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    if refused is not None or gone == 0:
        return
    online = archiving.verify_archive(db, open_target(f"file://{directory}"), load_keys(public_key=public))
    sql_ok, py_ok = both_verifiers(db)
    assert (online.ok and sql_ok and py_ok and problems_of(db) == []) is False, \
        f"{gone} events of never-archived block {b + 1} deleted, and nothing says so"


A_SIGNATURES = {
    "hmac_only_forged": lambda sig: {"hmac-sha256": "ab" * 32},
    "none": lambda sig: {},
    "ed25519_null": lambda sig: {"ed25519": None},
    "ed25519_empty_signature": lambda sig: {"ed25519": {"public_key": sig["ed25519"]["public_key"], "signature": ""}},
    "ed25519_list_of_two": lambda sig: {"ed25519": [sig["ed25519"], sig["ed25519"]]},
}


@pytest.mark.parametrize("sigs", list(A_SIGNATURES))
def test_a6_a_changed_last_batch_with_its_signature_stripped_or_swapped_is_refused(db, archived, verifier_file, sigs):  # noqa: F811
    """The last batch's lines reordered, its data hashes put in its manifest, and the Ed25519 signature
    replaced by an HMAC one the auditor cannot check, by nothing, or by malformed ones. Safe: with the
    public key, every verifier refuses (an archive signed with Ed25519 is not passed unsigned)."""
    directory, public, ids = archived
    reorder_lines_with_hashes(directory, ids)
    m = last_manifest(directory, ids)
    doc = json.loads(m.read_bytes())
    doc["signatures"] = A_SIGNATURES[sigs](doc["signatures"])
    m.write_text(canonical.dumps(doc) + "\n")
    assert verdicts(db, verifier_file, directory, public) == {"builtin": False, "standalone": False, "online": False}


# ============================================ class T ============================================

def tenant_events(db, tenants):
    for t in tenants:
        record(db, "t91.api", tenant_id=t, target_id=f"tgt-{t}", payload={"owner": t})
        record(db, f"t91.secretkind.{abs(hash(t)) % 1000}", tenant_id=t, target_id=f"tgt-{t}")
    seal_all(db)


LOOKALIKES = {
    "like_percent": ("t91%", ["t91x", "t91%"]),
    "like_underscore": ("t91_a", ["t91_a", "t91Xa"]),
    "backslash": ("t91\\", ["t91\\", "t91\\\\"]),
    "case": ("acme", ["acme", "ACME", "Acme"]),
    "nfc_nfd": (unicodedata.normalize("NFC", "café"), [unicodedata.normalize("NFC", "café"),
                                                      unicodedata.normalize("NFD", "café")]),
    "sharp_s": ("straße", ["straße", "STRASSE", "strasse"]),
    "trailing_space": ("acme", ["acme", "acme ", " acme"]),
    "fullwidth": ("acme", ["acme", "ａｃｍｅ"]),
}


def get(server, token, path, params=None, headers=None):
    with server.client(token) as c:
        return c.get(path, params=params, headers=headers or {})


@pytest.mark.parametrize("case", list(LOOKALIKES))
def test_t1_a_tenant_token_reads_only_its_exact_tenant_on_every_reader_endpoint(db, start_api, make_token, case):
    """A token bound to a tenant whose name has LIKE wildcards, a backslash, a case, normal form or
    width twin; events of the twins. Safe: listing, count and monthly give its tenant alone."""
    own, tenants = LOOKALIKES[case]
    tenants = list(dict.fromkeys([own, *tenants]))
    tenant_events(db, tenants)
    token = make_token("reader", tenant_id=own)
    server = start_api("app_reader")
    seen = {e["tenant_id"] for e in get(server, token, "/v1/audit", {"limit": 500}).json()["events"]}
    assert seen == {own}
    assert get(server, token, "/v1/audit/count").json()["count"] == db.execute(
        "SELECT count(*) FROM audit.events WHERE tenant_id = %s", [own]).fetchone()[0]
    months = get(server, token, "/v1/audit/monthly").json()["months"]
    assert sum(m["count"] for m in months) == db.execute(
        "SELECT count(*) FROM audit.events WHERE tenant_id = %s", [own]).fetchone()[0]


T_ASKS = [
    {"tenant_id": "evil"},
    {"tenant_id": "EVIL"},
    {"tenant_id": "acme\u200b"},
    {"tenant_id": ["acme", "evil"]},
    {"tenant_id": ["evil", "acme"]},
    {"target_id": "tgt-evil"},
    {"kind_prefix": "t91."},
    {"actor_id": "%"},
    {"before_seq": "999999"},
    {"kind_prefix": "%"},
]


@pytest.mark.parametrize("ask", T_ASKS, ids=[json.dumps(a, ensure_ascii=True) for a in T_ASKS])
def test_t2_a_tenant_token_asking_for_another_tenant_in_any_form_gets_none_of_it(db, start_api, make_token, ask):
    """Tenant acme's token asks listing, count and the stream for evil's events by tenant, target,
    kind, wildcards and repeats. Safe: 200 with acme's alone, or a 4xx that names no evil event."""
    tenant_events(db, ["acme", "evil"])
    evil_seqs = {r[0] for r in db.execute("SELECT seq FROM audit.events WHERE tenant_id = 'evil'")}
    token = make_token("reader", tenant_id="acme")
    server = start_api("app_reader")
    bad = []
    for path in ("/v1/audit", "/v1/audit/count"):
        r = get(server, token, path, ask)
        if r.status_code >= 500:
            bad.append((path, r.status_code))
        if "tgt-evil" in r.text or '"evil"' in r.text or "owner\": \"evil" in r.text:
            bad.append((path, r.text[:200]))
        if r.status_code == 200 and path == "/v1/audit":
            bad += [(path, e["seq"]) for e in r.json()["events"] if e["tenant_id"] != "acme" or e["seq"] in evil_seqs]
        if r.status_code == 200 and path == "/v1/audit/count":
            n = r.json()["count"]
            if n > db.execute("SELECT count(*) FROM audit.events WHERE tenant_id = 'acme'").fetchone()[0]:
                bad.append((path, n))
    assert bad == []


@pytest.mark.parametrize("header", ["X-Tenant-Id", "X-Pgaudit-Tenant", "Forwarded", "X-Forwarded-User", "X-Original-URL"])
def test_t3_headers_naming_another_tenant_or_path_change_nothing(db, start_api, make_token, header):
    tenant_events(db, ["acme", "evil"])
    token = make_token("reader", tenant_id="acme")
    server = start_api("app_reader")
    value = "/v1/audit?tenant_id=evil" if header == "X-Original-URL" else "evil"
    r = get(server, token, "/v1/audit", {"limit": 500}, {header: value})
    assert r.status_code == 200 and {e["tenant_id"] for e in r.json()["events"]} == {"acme"}


def test_t4_a_token_expired_a_moment_ago_and_one_revoked_are_refused_at_once(db, connect, start_api, make_token):
    """A token expiring in two seconds; another revoked mid-use. Safe: both 401 on every reader
    endpoint from then on, with no event in the answer; neither secret said back."""
    from pgaudit_py.tokens import revoke_token
    tenant_events(db, ["acme"])
    short = make_token("reader", expires_at=datetime.now(UTC) + timedelta(seconds=2))
    live = make_token("reader")
    server = start_api("app_reader")
    assert get(server, short, "/v1/audit").status_code == 200
    assert get(server, live, "/v1/audit").status_code == 200
    revoke_token(connect("app_maintainer"), live)
    time.sleep(2.2)
    bad = []
    for tok in (short, live):
        for path in ("/v1/audit", "/v1/audit/count", "/v1/audit/monthly", "/v1/audit/verify", "/v1/audit/status",
                     "/v1/whoami", "/v1/audit/archives", "/v1/audit/tracked"):
            r = get(server, tok, path)
            if r.status_code not in (401, 429) or "t91.api" in r.text or tok.split("_")[-1] in r.text:
                bad.append((path, r.status_code, r.text[:120]))
    assert bad == []


@pytest.mark.parametrize("where", ["query_token", "query_access_token", "path", "x_api_key", "cookie", "lowercase_bearer_tail"])
def test_t5_a_token_sent_anywhere_is_never_said_back(db, start_api, make_token, where, caplog):
    """The token (or its secret half) in the query, the path, a header, a cookie. Safe: no answer
    repeats the secret half in any case."""
    tenant_events(db, ["acme"])
    token = make_token("reader", tenant_id="acme")
    secret = token.split("_")[-1]
    caplog.set_level("DEBUG")
    server = start_api("app_reader")
    with server.client() as c:
        if where == "query_token":
            r = c.get("/v1/audit", params={"token": token})
        elif where == "query_access_token":
            r = c.get("/v1/audit", params={"tenant_id": "acme", "access_token": token})
        elif where == "path":
            r = c.get(f"/v1/audit/{token}")
        elif where == "x_api_key":
            r = c.get("/v1/audit", headers={"X-Api-Key": token, "Authorization": f"Token {token}"})
        elif where == "cookie":
            r = c.get("/v1/audit", headers={"Cookie": f"token={token}"})
        else:
            r = c.get("/v1/audit", headers={"Authorization": f"bearer {token.upper()}"})
    time.sleep(0.2)
    server_log = "\n".join(f"{rec.name} {rec.getMessage()}" for rec in caplog.records
                            if not rec.name.startswith(("httpx", "httpcore")))  # the client's own log is not the server's
    assert "pgaudit_py.server" in server_log or "uvicorn" in server_log
    text = (r.text + json.dumps(dict(r.headers)) + server_log).lower()
    assert secret.lower() not in text and secret[:32].lower() not in text


def test_t6_a_tenant_stream_from_zero_sends_none_of_another_tenants_events(db, start_api, make_token):
    """Tenant acme's token opens the stream from seq 0 with a kind prefix the other tenant uses, and with
    tenant_id=evil. Safe: only acme's events, or a 4xx."""
    from api_server import sse_messages
    tenant_events(db, ["acme", "evil"])
    token = make_token("reader", tenant_id="acme")
    server = start_api("app_reader")
    last = db.execute("SELECT max(seq) FROM audit.events").fetchone()[0]
    got, codes = [], []
    for params in ({"since_seq": 0, "kind_prefix": "t91."}, {"since_seq": 0, "tenant_id": "evil"}):
        with server.client(token) as c, c.stream("GET", "/v1/audit/stream", params=params) as r:
            codes.append(r.status_code)
            if r.status_code != 200:
                continue
            start = time.monotonic()
            for m in sse_messages(r):
                if m.event == "audit":
                    e = json.loads(m.data)
                    got.append(e["tenant_id"])
                    if e["seq"] >= last:
                        break
                if time.monotonic() - start > 3 or (m.comment and "heartbeat" in m.comment):
                    break
                if m.id and int(m.id) >= last and m.event != "audit":
                    break
    assert all(c in (200, 400, 403) for c in codes)
    assert set(got) <= {"acme"}


@pytest.mark.parametrize("path", ["/v1/audit/count", "/v1/audit/monthly"])
def test_t7_a_tenant_tokens_kind_breakdown_holds_no_other_tenants_kinds(db, start_api, make_token, path):
    """Tenant acme's token asks for a breakdown by a kind only tenant evil writes (and by the common
    prefix). Safe: the evil-only kind counts 0; the common prefix counts acme's alone."""
    tenant_events(db, ["acme", "evil"])
    evil_kind = db.execute("SELECT kind FROM audit.events WHERE tenant_id = 'evil' AND kind LIKE 't91.secretkind.%'"
                           ).fetchone()[0]
    acme_n = db.execute("SELECT count(*) FROM audit.events WHERE tenant_id = 'acme'").fetchone()[0]
    token = make_token("reader", tenant_id="acme")
    server = start_api("app_reader")
    r = get(server, token, path, [("by_kind_prefix", evil_kind), ("by_kind_prefix", "t91.")])
    assert r.status_code == 200, r.text
    body = r.json()
    parts = [body] if path.endswith("count") else body["months"]
    evil = sum(p["by_kind_prefix"].get(evil_kind, 0) for p in parts)
    common = sum(p["by_kind_prefix"].get("t91.", 0) for p in parts)
    assert (evil, common) == (0, acme_n)


@pytest.mark.parametrize("tenant", ["t91&tenant_id=evil", "t91#frag", "t91/../evil", "t91%2Fx", "t91+x y", "t91?limit=1"])
@pytest.mark.parametrize("bound", [True, False], ids=["tenant_token", "reader_token_filtering"])
def test_t8_next_links_under_a_hostile_tenant_name_page_through_exactly_its_events(db, start_api, make_token, tenant,
                                                                                   bound):
    """A tenant named with URL syntax; five of its events and two of evil's; pages of two followed by
    their next links (a token bound to it, or a reader token filtering on it). Safe (honest use
    served): the pages hold exactly its five events, once each, and none of evil's."""
    for i in range(5):
        record(db, "t91.page", tenant_id=tenant, target_id=f"p{i}")
    for i in range(2):
        record(db, "t91.page", tenant_id="evil", target_id=f"e{i}")
    seal_all(db)
    token = make_token("reader", tenant_id=tenant) if bound else make_token("reader")
    server = start_api("app_reader")
    seen, url, params, pages = [], "/v1/audit", {"limit": 2, "tenant_id": tenant}, 0
    with server.client(token) as c:
        while url and pages < 10:
            r = c.get(url, params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            seen += [(e["tenant_id"], e["target_id"]) for e in body["events"] if e["kind"] == "t91.page"]
            url, params, pages = body["next"], None, pages + 1
    assert sorted(seen) == [(tenant, f"p{i}") for i in range(5)]


def test_t9_a_kind_prefix_with_like_wildcards_matches_only_itself(db, start_api, make_token):
    """Kinds t91_a.ev and t91xa.ev; a reader lists and counts with kind_prefix t91_a. Safe: only the
    first kind, through the API and list_events alike."""
    record(db, "t91_a.ev", tenant_id="acme")
    record(db, "t91xa.ev", tenant_id="acme")
    seal_all(db)
    token = make_token("reader")
    server = start_api("app_reader")
    kinds = {e["kind"] for e in get(server, token, "/v1/audit", {"kind_prefix": "t91_a"}).json()["events"]}
    counted = get(server, token, "/v1/audit/count", [("by_kind_prefix", "t91_a")]).json()["by_kind_prefix"]["t91_a"]
    sql = {r[0] for r in db.execute("SELECT kind FROM audit.list_events(kind_prefix => 't91_a')")}
    assert (kinds, counted, sql) == ({"t91_a.ev"}, 1, {"t91_a.ev"})


T_PASTE_PARAMS = ["kind_prefix", "tenant_id", "target_id", "target_type", "actor_id", "correlation_id", "by_kind_prefix"]


@pytest.mark.parametrize("form", ["whole", "secret_half", "upper", "cut_short"])
@pytest.mark.parametrize("param", T_PASTE_PARAMS)
def test_t10_a_token_pasted_as_a_filter_value_is_never_said_back_in_a_next_link_or_breakdown(
        db, start_api, make_token, param, form):
    """docs/http.md: "No answer says a value back ...: a token pasted into a URL, in whatever case or cut
    short, is never repeated." A reader pastes a live token (whole, its secret half, in capitals, cut
    short) as a filter value; events exist so that a next link is made. Safe: no answer of listing,
    count or monthly holds 32 hex digits of the secret in any case."""
    for _i in range(3):
        record(db, "t91.paste", tenant_id="acme")
    seal_all(db)
    reader = make_token("reader")
    pasted = make_token("reader", name="t91_victim")
    secret = pasted.split("_")[-1]
    value = {"whole": pasted, "secret_half": secret, "upper": pasted.upper(), "cut_short": pasted[:-8]}[form]
    server = start_api("app_reader")
    said = []
    for path in ("/v1/audit", "/v1/audit/count", "/v1/audit/monthly"):
        if param == "by_kind_prefix" and path == "/v1/audit":
            continue
        if param not in ("by_kind_prefix", "tenant_id") and path != "/v1/audit":
            continue
        params = {param: value, "limit": 1} if path == "/v1/audit" else {param: value}
        r = get(server, reader, path, params)
        text = (r.text + json.dumps(dict(r.headers))).lower()
        if secret[:32].lower() in text or secret[-32:].lower() in text or secret[8:40].lower() in text:
            said.append((path, r.status_code, r.text[:160]))
    assert said == []
