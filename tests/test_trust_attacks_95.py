"""A ninety-fifth attacker's trial: new variants of the classes trials 93 and 94 found, after their mends.

Classes (test names carry the letter):
  B. a borrowed role at install: stored role settings for the superuser or for everyone in a
     database, session_authorization, SET LOCAL role in the caller's transaction, the --sql script
     applied under a stored role; honest superuser and database-owner installs still work.
  F. whole-text checks: schema names, kinds, kind prefixes, numbers and master keys ending in or
     holding a line separator, a control character, full-width or surrounding whitespace.
  V. the Python verifier against audit.verify(): hand-made values in event_log, blocks, seal_state
     and prune_points (times at the edges of what PostgreSQL holds, addresses, txids, ids, block
     numbers, JSON values); hand-made pending values sealed honestly; `pgaudit verify`'s exit.
  P. the pytest plugin: the template against a role with CREATEDB; AuditTrail.events at page
     boundaries, with pending and sealed events mixed, with the caller's own cursors, and with a
     sealer running between its pages.
  W. status' worker count: a worker's name in another database, lesser roles taking the name.
  M. messages: refusals of readers, the CLI and the HTTP parameters never repeat a value given.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or
when an honest use is refused). Objects and roles made here are prefixed t95_.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import suppress

import psycopg
import pytest
from click.testing import CliRunner
from trial_helpers import acct, drop_made_under, dsn_of, problems_of, seal_all, table_owner_kit, tamper

from pgaudit_py import InvalidArgument, install, list_events, record, seal
from pgaudit_py.chain import verify_chain
from pgaudit_py.cli import cli as cli_group
from pgaudit_py.install_script import install_script
from pgaudit_py.installer import FUNCTION_ROLES
from pgaudit_py.pytest_plugin import TEMPLATE, AuditTrail
from pgaudit_py.tempdb import find_binary

TOKEN = "pga_0123456789ab_" + "5f3e9a1c" * 8


def cli(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def try_install(conn, schema: str, **kw) -> str:
    try:
        install(conn, schema, **kw)
        return "installed"
    except Exception as e:  # noqa: BLE001
        with suppress(Exception):
            conn.rollback()
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"


def member_of_owner(db, role: str, schema: str):
    row = db.execute("SELECT pg_has_role(%s, oid, 'MEMBER') FROM pg_roles WHERE rolname = %s",
                     (role, f"{schema}_owner")).fetchone()
    return None if row is None else row[0]


# ============================================ class B ============================================

@pytest.fixture
def dbo_database(db, fresh_database):
    """A fresh database owned by t95_dbo (LOGIN CREATEROLE, no superuser); (name) yielded; all dropped after."""
    made = []

    def make(name: str, schema: str) -> str:
        c = fresh_database(name)
        c.close()
        db.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 't95_dbo')"
                   " THEN CREATE ROLE t95_dbo LOGIN CREATEROLE; END IF; END $$")
        db.execute(f"ALTER DATABASE {name} OWNER TO t95_dbo")
        made.append((name, schema))
        return name

    yield make
    with suppress(Exception):
        db.execute("RESET ROLE")
    for name, schema in made:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        with suppress(psycopg.Error):
            db.execute(f"ALTER ROLE {db.info.user} IN DATABASE {name} RESET ALL")
        drop_made_under(db, f"{schema}_")
        drop_made_under(db, schema)
    with suppress(psycopg.Error):
        db.execute(f"ALTER ROLE {db.info.user} RESET role")
    db.execute("DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 't95_dbo') THEN"
               " EXECUTE 'REASSIGN OWNED BY t95_dbo TO ' || quote_ident(current_user);"
               " EXECUTE 'DROP OWNED BY t95_dbo'; END IF; END $$")
    db.execute("DROP ROLE IF EXISTS t95_dbo")


def test_b1_an_honest_superuser_install_works_and_leaves_the_owner_and_function_roles_without_members(
        db, dbo_database):
    name = dbo_database("t95_b1", "t95bh")
    with psycopg.connect(dsn_of(db, name), autocommit=True) as su:
        outcome = try_install(su, "t95bh")
        triggers = su.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0]
        problems = problems_of(su, "t95bh") if outcome == "installed" else ["not installed"]
    members = db.execute(
        "SELECT r.rolname || ' <- ' || m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid"
        " JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = ANY(%s)"
        # the owner role is the capture role's one member by design (docs/roles.md)
        " AND NOT (r.rolname = 't95bh_capture' AND m.rolname = 't95bh_owner') ORDER BY 1",
        ([f"t95bh_{s}" for s in ("owner", *FUNCTION_ROLES)],)).fetchall()
    assert (outcome, triggers > 0, members, problems) == ("installed", True, [], []), (outcome, members, problems)


def test_b2_an_honest_install_by_the_databases_owner_with_createrole_works(db, dbo_database):
    name = dbo_database("t95_b2", "t95bn")
    with psycopg.connect(dsn_of(db, name, "t95_dbo"), autocommit=True) as dbo:
        outcome = try_install(dbo, "t95bn")
        version = dbo.execute("SELECT to_regclass('t95bn.event_log') IS NOT NULL").fetchone()[0]
    assert (outcome, version) == ("installed", True)
    assert member_of_owner(db, "t95_dbo", "t95bn") is True  # the installer is the owner role's member


def test_b3_a_database_owner_cannot_store_a_role_for_the_superuser_and_a_stored_all_role_is_refused(
        db, dbo_database):
    name = dbo_database("t95_b3", "t95b3")
    su_name = db.info.user
    with psycopg.connect(dsn_of(db, name, "t95_dbo"), autocommit=True) as dbo:
        for_su = sqlstate(dbo, f"ALTER ROLE {su_name} IN DATABASE {name} SET role = 't95_dbo'")
        for_all = sqlstate(dbo, f"ALTER ROLE ALL IN DATABASE {name} SET role = 't95_dbo'")
    assert for_su is not None, "the database's owner stored a role for the superuser's sessions"
    with psycopg.connect(dsn_of(db, name), autocommit=True) as su:
        started = su.execute("SELECT session_user::text, current_user::text").fetchone()
        outcome = try_install(su, "t95b3")
        triggers = su.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0]
    member = member_of_owner(db, "t95_dbo", "t95b3")
    if outcome == "installed":
        assert (member, triggers > 0) == (False, True), (for_all, started, member, triggers)
    else:
        assert member in (None, False), (for_all, started, outcome)


def test_b4_a_database_owner_cannot_store_session_authorization_for_its_database(db, dbo_database):
    name = dbo_database("t95_b4", "t95b4")
    with psycopg.connect(dsn_of(db, name, "t95_dbo"), autocommit=True) as dbo:
        stored = sqlstate(dbo, f"ALTER DATABASE {name} SET session_authorization = 't95_dbo'")
    with psycopg.connect(dsn_of(db, name), autocommit=True) as su:
        started = su.execute("SELECT session_user::text, current_user::text").fetchone()
        outcome = try_install(su, "t95b4")
        triggers = su.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0]
    member = member_of_owner(db, "t95_dbo", "t95b4")
    assert started == (db.info.user, db.info.user), (stored, started)
    assert (outcome, member, triggers > 0) == ("installed", False, True), (stored, outcome)


def test_b5_a_superusers_session_under_set_session_authorization_is_refused_as_a_borrowed_role(db, dbo_database):
    """docs/security.md: a superuser's session that runs as a role that is not one is refused."""
    name = dbo_database("t95_b5", "t95b5")
    with psycopg.connect(dsn_of(db, name), autocommit=True) as su:
        su.execute("SET SESSION AUTHORIZATION t95_dbo")
        outcome = try_install(su, "t95b5")
        with suppress(Exception):
            su.execute("RESET SESSION AUTHORIZATION")
        made = su.execute("SELECT to_regnamespace('t95b5') IS NOT NULL").fetchone()[0]
    member = member_of_owner(db, "t95_dbo", "t95b5")
    assert outcome != "installed" and member in (None, False) and not made, (outcome, member, made)


def test_b6_set_local_role_in_the_callers_transaction_does_not_make_an_install_the_lesser_roles(db, dbo_database):
    name = dbo_database("t95_b6", "t95b6")
    with psycopg.connect(dsn_of(db, name)) as su:  # not autocommit: the caller's transaction
        su.execute("SET LOCAL ROLE t95_dbo")
        outcome = try_install(su, "t95b6")
        su.rollback()
        su.autocommit = True
        triggers = su.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0]
    member = member_of_owner(db, "t95_dbo", "t95b6")
    if outcome == "installed":
        assert (member, triggers > 0) == (False, True), outcome
    else:
        assert member in (None, False), outcome


def test_b7_an_honest_script_applied_under_a_stored_role_is_refused_and_makes_nothing(db, dbo_database):
    name = dbo_database("t95_b7", "t95b7")
    with psycopg.connect(dsn_of(db, name), autocommit=True) as su:
        script = install_script(su, "t95b7")  # honest: nothing stored yet
    with psycopg.connect(dsn_of(db, name, "t95_dbo"), autocommit=True) as dbo:
        dbo.execute(f"ALTER DATABASE {name} SET role = 't95_dbo'")
    i = db.info
    done = subprocess.run([find_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", i.host, "-p",
                           str(i.port), "-U", i.user, "-d", name, "-f", "-"], input=script, capture_output=True,
                          text=True, timeout=300)
    with psycopg.connect(dsn_of(db, name), autocommit=True, options="-c role=" + i.user) as su:
        made = su.execute("SELECT to_regnamespace('t95b7') IS NOT NULL").fetchone()[0]
    member = member_of_owner(db, "t95_dbo", "t95b7")
    roles = [r[0] for r in db.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, 't95b7')")]
    assert (done.returncode != 0, made, member in (None, False), roles) == (True, False, True, []), \
        (done.returncode, made, member, roles, done.stderr[-300:])


def test_b8_a_stored_role_for_the_superuser_is_outranked_by_the_role_given_when_connecting(db, dbo_database):
    """docs/security.md: a role given when connecting (PGOPTIONS='-c role=postgres') outranks the setting."""
    name = dbo_database("t95_b8", "t95b8")
    su_name = db.info.user
    db.execute(f"ALTER ROLE {su_name} IN DATABASE {name} SET role = 't95_dbo'")
    try:
        with psycopg.connect(dsn_of(db, name), autocommit=True) as plain:
            borrowed = (plain.execute("SELECT current_user::text").fetchone()[0], try_install(plain, "t95b8"))
        with psycopg.connect(dsn_of(db, name), autocommit=True, options=f"-c role={su_name}") as su:
            outcome = try_install(su, "t95b8")
            triggers = su.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0]
    finally:
        db.execute(f"ALTER ROLE {su_name} IN DATABASE {name} RESET role")
    member = member_of_owner(db, "t95_dbo", "t95b8")
    assert borrowed[0] == "t95_dbo" and borrowed[1] != "installed", borrowed
    assert (outcome, triggers > 0, member) == ("installed", True, False), (outcome, member)


def test_b9_a_stored_role_for_every_session_is_refused_by_the_cli_install_dry_run_and_sql_alike(db, dbo_database):
    name = dbo_database("t95_b9", "t95b9")
    db.execute(f"ALTER ROLE ALL IN DATABASE {name} SET role = 't95_dbo'")
    try:
        results = [CliRunner().invoke(cli_group, ["install", "--dsn", dsn_of(db, name), "--schema", "t95b9", *extra])
                   for extra in (["--dry-run"], ["--sql"], [])]
    finally:
        db.execute(f"ALTER ROLE ALL IN DATABASE {name} RESET role")
    with psycopg.connect(dsn_of(db, name), autocommit=True) as su:
        made = su.execute("SELECT to_regnamespace('t95b9') IS NOT NULL").fetchone()[0]
    member = member_of_owner(db, "t95_dbo", "t95b9")
    printed_sql = "CREATE" in results[1].output
    roles = [r[0] for r in db.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, 't95b9')")]
    assert ([r.exit_code != 0 for r in results], made, member in (None, False), printed_sql, roles) == \
        ([True, True, True], False, True, False, []), ([r.exit_code for r in results], made, member, roles)


def psql_apply(db, name: str, user: str, script: str, options: str | None = None) -> subprocess.CompletedProcess:
    i = db.info
    env = {**os.environ, **({"PGOPTIONS": options} if options else {})}
    return subprocess.run([find_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", i.host, "-p",
                           str(i.port), "-U", user, "-d", name, "-f", "-"], input=script, capture_output=True,
                          text=True, timeout=300, env=env)


def test_b10_honest_scripts_still_apply_a_database_owners_and_a_superusers_with_the_role_given_at_connect(
        db, dbo_database):
    owners = dbo_database("t95_b10a", "t95ba")
    with psycopg.connect(dsn_of(db, owners, "t95_dbo"), autocommit=True) as dbo:
        done_dbo = psql_apply(db, owners, "t95_dbo", install_script(dbo, "t95ba"))
        made_dbo = dbo.execute("SELECT to_regclass('t95ba.event_log') IS NOT NULL").fetchone()[0]
    supers = dbo_database("t95_b10b", "t95bb")
    with psycopg.connect(dsn_of(db, supers, "t95_dbo"), autocommit=True) as dbo:
        dbo.execute(f"ALTER DATABASE {supers} SET role = 't95_dbo'")
    su_name = db.info.user
    with psycopg.connect(dsn_of(db, supers), autocommit=True, options=f"-c role={su_name}") as su:
        done_su = psql_apply(db, supers, su_name, install_script(su, "t95bb"), options=f"-c role={su_name}")
        made_su = su.execute("SELECT to_regclass('t95bb.event_log') IS NOT NULL").fetchone()[0]
        triggers = su.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0]
    assert (done_dbo.returncode, made_dbo) == (0, True), done_dbo.stderr[-300:]
    assert (done_su.returncode, made_su, triggers > 0) == (0, True, True), done_su.stderr[-300:]
    assert member_of_owner(db, "t95_dbo", "t95bb") is False


def sqlstate(conn, statement: str) -> str | None:
    try:
        conn.execute(statement)
        return None
    except psycopg.Error as e:
        return e.sqlstate


# ============================================ class F ============================================

ODD_SCHEMAS = ["t95f\u2028", "t95f\r", "t95f\x0b", "t95f\x1c", " t95f", "t95f ", "t95f\t", "\uff54" + "95f",
               "t95f\u00a0", "t95f\u0085", "t95f\n\n", "t95f\u2029"]


def test_f1_schema_names_with_line_separators_controls_or_spaces_are_refused_before_anything_is_made(db):
    accepted = []
    for name in ODD_SCHEMAS:
        for how in ("install", "dry_run", "script"):
            try:
                if how == "install":
                    install(db, name)
                elif how == "dry_run":
                    install(db, name, dry_run=True)
                else:
                    install_script(db, name)
                accepted.append((name, how))
            except InvalidArgument:
                pass
            except Exception as e:  # noqa: BLE001
                accepted.append((name, how, type(e).__name__))
            with suppress(Exception):
                db.execute("RESET ROLE")
    made = [r[0] for r in db.execute(
        "SELECT rolname FROM pg_roles WHERE rolname ~ '95f' UNION ALL SELECT nspname FROM pg_namespace"
        " WHERE nspname ~ '95f'")]
    try:
        assert (accepted, made) == ([], [])
    finally:
        for name in made:
            drop_made_under(db, name)


@pytest.mark.parametrize("value", ["5\u2028", "\uff15", "5\x1c", "5\u00a0", "\u0665", "5_0", "0x5", "5\x00"])
def test_f2_cli_numbers_with_odd_characters_exit_2_naming_the_option(db, value):
    result = CliRunner().invoke(cli_group, ["events", "--dsn", dsn_of(db, user="app_reader"), "--page-size", value])
    assert result.exit_code == 2, (result.exit_code, result.output[-300:])


@pytest.mark.parametrize("value", ["90d\u2028", "\uff19\uff10d", "90d\x1c", "90\u0434", "90 d\u00a0", "90d\n7d"])
def test_f3_cli_durations_and_times_with_odd_characters_are_refused(db, value):
    result = CliRunner().invoke(cli_group, ["events", "--dsn", dsn_of(db, user="app_reader"), "--since", value])
    assert result.exit_code == 2, (result.exit_code, result.output[-300:])


def test_f4_the_databases_own_checks_take_the_whole_text(db, connect):
    writer, reader = connect("app_writer"), connect("app_reader")
    took = []
    for kind in ["t95.x\n", "t95.x\u2028", "t95.x\r", "t95.\uff58", " t95.x", "t95.x "]:
        if sqlstate(writer, f"SELECT audit.record(kind => {lit(kind)})") is None:
            took.append(("record", kind))
    for prefix in ["t95\n", "t95\u2028", "t95 ", "\uff54"]:
        if sqlstate(reader, f"SELECT count(*) FROM audit.list_events(kind_prefix => {lit(prefix)})") is None:
            took.append(("list_events", prefix))
        if sqlstate(reader, f"SELECT * FROM audit.count_events(by_kind_prefix => ARRAY[{lit(prefix)}])") is None:
            took.append(("count_events", prefix))
    assert took == []
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind ~ '95'").fetchone()[0] == 0


def test_f6_slot_token_and_catalogue_names_are_taken_whole_by_the_database(db, connect):
    maint = connect("app_maintainer")
    took = []
    for odd in ("\n", "\u2028", "\r", " ", "\uff58"):
        if sqlstate(db, f"SELECT audit.declare_secret({lit('t95slot' + odd)}, 'd')") is None:
            took.append(("declare_secret", odd))
        if sqlstate(maint, f"SELECT audit.create_api_token('0123456789ab', {lit('t95name' + odd)}, 'reader',"
                           " sha256('x'))") is None:
            took.append(("create_api_token", odd))
        if sqlstate(maint, f"SELECT audit.create_api_token({lit('0123456789ab' + odd)}, 't95tok', 'reader',"
                           " sha256('x'))") is None:
            took.append(("token_id", odd))
        if sqlstate(db, f"SELECT audit.register_event_type('t95.cat', '{{}}', catalogue => {lit('t95cat' + odd)})") is None:
            took.append(("catalogue", odd))
    assert took == []
    assert sqlstate(db, "SELECT audit.declare_secret('t95slot', 'd')") is None  # the honest name is taken


def lit(text: str) -> str:
    return "U&'" + "".join(c if c.isalnum() and c.isascii() or c in "._" else f"\\{ord(c):04x}" for c in text) + "'"


def test_f5_master_key_text_and_http_numbers_take_the_whole_text():
    from pgaudit_py.secrets import parse_master_key
    from pgaudit_py.server.errors import ApiError
    from pgaudit_py.server.params import number

    key = "ab" * 32
    odd = [key[:32] + "\u2028" + key[32:], key.replace("a", "\uff41"), key[:-1] + "\u0669", key + "\x00",
           key[:63] + "\n" + key[63:]]
    took = []
    for text in odd:
        with suppress(InvalidArgument):
            parse_master_key(text, "t95")
            took.append(text)
    for value in ["5\n", "\uff15", "5\u2028", " 5", "\u00b2", "5 "]:
        with suppress(ApiError):
            number("limit", value, 1, 500)
            took.append(value)
    assert took == []


# ============================================ class V ============================================

@pytest.fixture
def sealed3(db, connect):
    writer, m = connect("app_writer"), connect("app_maintainer")
    for b in range(3):
        for i in range(3):
            if (b, i) == (1, 1):
                record(writer, "t95.v.full", tenant_id="t95t", actor_id="u1", target_type="doc", target_id="d1",
                       payload={"a": [1, 2.5, "x"]}, correlation_id="c1", idempotency_key="t95ik1")
            else:
                record(writer, f"t95.v.{b}.{i}", payload={"n": f"{b}{i}"})
        seal(m)
    assert verdicts(db)[:2] == ((True, None), (True, None))
    return m


def verdicts(db):
    try:
        row = db.execute("SELECT ok, bad_block FROM audit.verify()").fetchone()
        sql_v = (row[0], row[1])
    except psycopg.Error as e:
        sql_v = ("raised", type(e).__name__)
    try:
        py = verify_chain(db)
        py_v = (py.ok, py.bad_block)
    except Exception as e:  # noqa: BLE001
        py_v = ("raised", f"{type(e).__name__}: {str(e)[:200]}")
    return sql_v, py_v


def cli_verify(db) -> tuple[int, bool, int]:
    done = cli("verify", "--dsn", dsn_of(db, user="app_reader"))
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    return done.returncode, "Traceback" in done.stderr + done.stdout, len(lines)


EDGE_TIMES = ["0999-12-31 23:59:59.999999+00", "9999-12-31 23:59:59.999999+00", "0001-01-01 00:00:00+00 BC",
              "294276-12-31 23:59:59.999999+00", "4714-11-24 00:00:00+00 BC", "1999-12-31 23:59:59.9999996+00",
              "0001-12-31 23:00:00-01", "10000-01-01 00:00:00.5+00", "0100-02-29 12:00:00+00 BC",
              "9999-12-31 23:59:59.9999996+00"]

SEALED_EDITS = {
    **{f"time_{i}": f"UPDATE audit.event_log SET occurred_at = '{t}' WHERE kind = 't95.v.full'"
       for i, t in enumerate(EDGE_TIMES)},
    "addr_mapped": "UPDATE audit.event_log SET client_addr = '::ffff:10.0.0.1' WHERE kind = 't95.v.full'",
    "addr_mask": "UPDATE audit.event_log SET client_addr = '10.0.0.0/8' WHERE kind = 't95.v.full'",
    "addr_v6": "UPDATE audit.event_log SET client_addr = '2001:db8::1/64' WHERE kind = 't95.v.full'",
    "txid_max": "UPDATE audit.event_log SET txid = '18446744073709551615' WHERE kind = 't95.v.full'",
    "txid_zero": "UPDATE audit.event_log SET txid = '0' WHERE kind = 't95.v.full'",
    "id_zero": "UPDATE audit.event_log SET id = '00000000-0000-0000-0000-000000000000' WHERE kind = 't95.v.full'",
    "origin_null": "UPDATE audit.event_log SET origin = NULL WHERE kind = 't95.v.full'",
    "origin_system": "UPDATE audit.event_log SET origin = 'system' WHERE kind = 't95.v.full'",
    "block_no_zero": "UPDATE audit.event_log SET block_no = 0 WHERE kind = 't95.v.full'",
    "block_no_max": "UPDATE audit.event_log SET block_no = 9223372036854775807 WHERE kind = 't95.v.full'",
    "schema_valid": "UPDATE audit.event_log SET schema_valid = true WHERE kind = 't95.v.full'",
    "row_before_string": "UPDATE audit.event_log SET row_before = '\"\\u2028\"'::jsonb WHERE kind = 't95.v.full'",
    "tenant_controls": "UPDATE audit.event_log SET tenant_id = E't95\\x7f\\x1f\\u2028\\\\\"' WHERE kind = 't95.v.full'",
    "payload_big_number": "UPDATE audit.event_log SET payload = '{\"n\": 1e400}' WHERE kind = 't95.v.full'",
    "version_1": "UPDATE audit.blocks SET canonical_version = 1 WHERE block_no = 2",
    "version_min": "UPDATE audit.blocks SET canonical_version = -32768 WHERE block_no = 2",
    "chain_start_down": "UPDATE audit.seal_state SET chain_start_seq = chain_start_seq - 1",
    "chain_start_up": "UPDATE audit.seal_state SET chain_start_seq = chain_start_seq + 1",
    "head_seq_max": "UPDATE audit.seal_state SET last_seq = 9223372036854775807",
    "prune_odd_hash": "INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
                      " SELECT 1, '\\x00ff', last_seq, now(), 't95' FROM audit.blocks WHERE block_no = 1",
    "prune_true_hash": "INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
                       " SELECT 1, block_hash, last_seq, now(), 't95' FROM audit.blocks WHERE block_no = 1",
    "prune_point_zero": "INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
                        " SELECT 0, block_hash, last_seq, now(), 't95' FROM audit.blocks WHERE block_no = 1",
    "prune_point_negative": "INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
                            " SELECT -1, block_hash, -5, now(), 't95' FROM audit.blocks WHERE block_no = 1",
    "prune_point_past_head": "INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
                             " VALUES (99, '\\x00', 9999, now(), 't95')",
    "head_hash_short": "UPDATE audit.seal_state SET last_block_hash = '\\x00'",
    "head_no_negative": "UPDATE audit.seal_state SET last_block_no = -1",
    "line_hashes_odd_and_edit": "UPDATE audit.blocks SET line_hashes = '\\x00' WHERE block_no = 2;"
                                " UPDATE audit.event_log SET actor_id = 'u2' WHERE kind = 't95.v.full'",
}


@pytest.mark.parametrize("how", sorted(SEALED_EDITS))
def test_v1_hand_made_values_get_one_verdict_from_both_verifiers_and_the_cli(db, sealed3, how):
    try:
        tamper(db, SEALED_EDITS[how])
    except psycopg.Error:
        return  # the table refuses the value itself
    sql_v, py_v = verdicts(db)
    rc, traceback, _ = cli_verify(db)
    assert sql_v[0] is False, (sql_v, py_v)
    assert py_v == sql_v, (sql_v, py_v)
    assert (rc, traceback) == (1, False), (rc, traceback)


PENDING_EDITS = {
    **{f"time_{i}": f"occurred_at = '{t}'" for i, t in enumerate(EDGE_TIMES)},
    "addr_mapped": "client_addr = '::ffff:10.0.0.1'",
    "addr_mask": "client_addr = '10.0.0.0/8'",
    "time_infinity": "occurred_at = 'infinity'",
    "time_minus_infinity": "occurred_at = '-infinity'",
    "addr_v6_full": "client_addr = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128'",
    "txid_max": "txid = '18446744073709551615'",
    "tenant_controls": "tenant_id = E't95\\x7f\\x1f\\u2028\\\\\"\\u00e9'",
    "target_lone_backslash": "target_id = E'\\\\'",
    "row_after_deep": "row_after = '[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]'::jsonb",
    "payload_exponent": "payload = '{\"n\": 1e-400, \"m\": -0.0, \"o\": 100000000000000000000000}'::jsonb",
}


@pytest.mark.parametrize("how", sorted(PENDING_EDITS))
def test_v2_hand_made_pending_values_sealed_honestly_raise_no_false_alarm_in_either_verifier(db, connect, how):
    writer = connect("app_writer")
    for i in range(3):
        record(writer, "t95.p.full" if i == 1 else f"t95.p.{i}", payload={"i": i})
    try:
        tamper(db, f"UPDATE audit.event_intake SET {PENDING_EDITS[how]} WHERE kind = 't95.p.full'")
    except psycopg.Error:
        return  # the intake refuses the value itself
    failure = seal_all(connect("app_maintainer"))
    sql_v, py_v = verdicts(db)
    rc, traceback, _ = cli_verify(db)
    assert failure is None, failure
    assert (sql_v, py_v) == ((True, None), (True, None)), (sql_v, py_v)
    assert (rc, traceback) == (0, False), (rc, traceback)


@pytest.mark.parametrize("column", ["row_after", "row_before", "changed"])
def test_v3_a_row_image_turned_from_sql_null_to_json_null_is_caught_or_changes_no_answer(db, connect, column):
    """The canonical line prints a JSON null and an SQL NULL alike (docs/canonical-form.md). A superuser
    turns the absent image of each captured event into JSON null. Safe: both verifiers say not ok, or
    every reader's answer about the row is what it was."""
    with table_owner_kit(db, connect, "t95v3") as kit:
        acct(kit)
        kit.writer.execute("UPDATE public.t95v3_acct SET v = 5 WHERE id = 1")
        mid = kit.tick()
        kit.writer.execute("DELETE FROM public.t95v3_acct WHERE id = 1")
        after = kit.tick()
        assert seal_all(kit.maint) is None

        def answers():
            return [kit.state("public.t95v3_acct", "1", mid), kit.state("public.t95v3_acct", "1", after),
                    kit.as_of("public.t95v3_acct", "1", mid), kit.as_of("public.t95v3_acct", "1", after),
                    kit.history("public.t95v3_acct", "1"),
                    [(e.kind, e.row_before, e.row_after, e.changed) for e in
                     AuditTrail(db).events(kind_prefix="public.t95v3_acct")]]

        before = answers()
        tamper(db, f"UPDATE audit.event_log SET {column} = 'null'::jsonb"
                   f" WHERE kind LIKE 'public.t95v3_acct.%' AND {column} IS NULL")
        sql_v, py_v = verdicts(db)
        now = answers()
        if (sql_v[0], py_v[0]) == (True, True):
            assert now == before, f"both verifiers accept, and the readers now answer {now} where they said {before}"
        else:
            assert sql_v == py_v and sql_v[0] is False, (sql_v, py_v)


@pytest.mark.parametrize("when", ["-infinity", "infinity", "4714-11-24 00:00:00+00 BC", "294276-12-31 23:59:59+00"])
def test_v5_a_pending_event_with_an_edge_time_gets_a_verdict_and_a_status(db, connect, sealed3, when):
    """A superuser sets a pending event's occurred_at to an edge PostgreSQL holds. Safe: both verifiers
    return (the sealed chain is intact: ok), `pgaudit verify` exits 0 and `pgaudit status` answers
    without a traceback."""
    record(connect("app_writer"), "t95.v5.pending")
    tamper(db, f"UPDATE audit.event_intake SET occurred_at = '{when}' WHERE kind = 't95.v5.pending'")
    sql_v, py_v = verdicts(db)
    rc, traceback, _ = cli_verify(db)
    status = cli("status", "--dsn", dsn_of(db, user="app_reader"), "--json")
    assert (sql_v, py_v) == ((True, None), (True, None)), (sql_v, py_v)
    assert (rc, traceback) == (0, False)
    assert "Traceback" not in status.stderr and status.returncode in (0, 1), status.stderr[-300:]


def test_v4_an_event_forged_at_the_chains_start_on_a_new_install_is_caught(db, sealed3):
    """docs/tamper-evidence.md: `event seq S is outside every block` (an event inserted). On a new
    install the chain starts at 0 (docs/canonical-form.md): no event was sealed before it, so one
    that appears at seq 0 was put there by hand."""
    start = db.execute("SELECT chain_start_seq FROM audit.seal_state").fetchone()[0]
    try:
        tamper(db, "INSERT INTO audit.event_log (seq, id, actor_type, actor_id, db_role, kind, outcome, txid, occurred_at,"
                   " sealed_at, payload, block_no, origin) SELECT chain_start_seq, gen_random_uuid(), 'user', 't95_ceo',"
                   " 'app_writer', 't95.forged.approval', 'success', '1', now() - interval '1 day', now(), '{}', 1,"
                   " 'record' FROM audit.seal_state")
    except psycopg.Error:
        return  # the log refuses it (seq must be positive): nothing was forged
    sql_v, py_v = verdicts(db)
    shown = db.execute("SELECT count(*) FROM audit.events WHERE kind = 't95.forged.approval'").fetchone()[0]
    named = [p for p in problems_of(db) if "seq" in p or "chain" in p]
    assert start == 0
    assert sql_v[0] is False or py_v[0] is False or named or shown == 0, \
        f"a forged sealed event at seq {start} is shown to readers ({shown}) and passes both verifiers {sql_v, py_v}"


# ============================================ class P ============================================

def test_p1_a_createdb_role_can_neither_open_rename_nor_unmark_the_template(db, pgaudit_db):
    row = db.execute("SELECT datallowconn, datistemplate, pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                     (TEMPLATE,)).fetchone()
    db.execute("CREATE ROLE t95_cdb LOGIN CREATEDB")
    try:
        with psycopg.connect(dsn_of(db, "postgres", "t95_cdb"), autocommit=True) as c:
            done = {s: sqlstate(c, s) for s in (
                f"ALTER DATABASE {TEMPLATE} ALLOW_CONNECTIONS true", f"ALTER DATABASE {TEMPLATE} IS_TEMPLATE false",
                f"ALTER DATABASE {TEMPLATE} RENAME TO t95_tmpl", f"ALTER DATABASE {TEMPLATE} SET role = 't95_cdb'",
                f"ALTER DATABASE {TEMPLATE} OWNER TO t95_cdb", f"DROP DATABASE {TEMPLATE}",
                f"COMMENT ON DATABASE {TEMPLATE} IS 't95'")}
        opened = []
        for role in ("app_writer", "t95_cdb", "app_maintainer"):
            try:
                psycopg.connect(dsn_of(db, TEMPLATE, role)).close()
                opened.append(role)
            except psycopg.Error:
                pass
    finally:
        for (name,) in db.execute("SELECT datname FROM pg_database WHERE pg_get_userbyid(datdba) = 't95_cdb'").fetchall():
            db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        db.execute("DROP ROLE t95_cdb")
    assert row[:2] == (False, True), row
    assert [s for s, state in done.items() if state is None] == [], done
    assert opened == []


def _page_counts(events) -> tuple[int, int]:
    return len(events), len({e.id for e in events})


@pytest.mark.parametrize("n", [500, 1000])
def test_p2_exactly_a_page_or_two_of_events_each_once_with_and_without_since_seq(db, n):
    trail = AuditTrail(db)
    start = db.execute("SELECT coalesce(max(seq), 0) FROM audit.event_log").fetchone()[0]
    db.execute(f"SELECT audit.record(kind => 't95.page', actor_id => 't95_p' || g) FROM generate_series(1, {n}) g")
    assert seal_all(db) is None
    db.execute(f"SELECT audit.record(kind => 't95.page', actor_id => 't95_q' || g) FROM generate_series(1, {n}) g")
    got = {
        "prefix": _page_counts(trail.events(kind_prefix="t95.page")),
        "since": _page_counts(trail.events(since_seq=start, kind_prefix="t95.page")),
        "actor_type": _page_counts([e for e in trail.events(actor_type="user") if e.kind == "t95.page"]),
    }
    assert got == {"prefix": (2 * n, 2 * n), "since": (n, n), "actor_type": (2 * n, 2 * n)}


def test_p3_the_callers_own_cursors_and_bounds_are_kept_each_event_once(db):
    trail = AuditTrail(db)
    start = db.execute("SELECT coalesce(max(seq), 0) FROM audit.event_log").fetchone()[0]
    db.execute("SELECT audit.record(kind => 't95.cur', actor_id => 't95_p' || g) FROM generate_series(1, 1200) g")
    assert seal_all(db) is None
    db.execute("SELECT audit.record(kind => 't95.cur', actor_id => 't95_q' || g) FROM generate_series(1, 700) g")
    mid_intake = db.execute("SELECT min(intake_id) + 350 FROM audit.events WHERE pending AND kind = 't95.cur'").fetchone()[0]
    got = {
        "window": _page_counts(trail.events(since_seq=start, before_seq=start + 1101, kind_prefix="t95.cur")),
        "before_seq": _page_counts(trail.events(before_seq=start + 1101, kind_prefix="t95.cur")),
        "before_intake": _page_counts(trail.events(before_intake_id=mid_intake, kind_prefix="t95.cur")),
    }
    assert got == {"window": (1100, 1100), "before_seq": (1100, 1100), "before_intake": (350 + 1200, 350 + 1200)}


def test_p4_a_sealer_running_between_pages_neither_repeats_nor_loses_an_event(db, connect, monkeypatch):
    """docs/integrations.md: events(**filters) returns each matching event once. A worker seals while
    the reader pages (the pending events it read on the first page are sealed before the second)."""
    import pgaudit_py.pytest_plugin as plugin

    trail = AuditTrail(db)
    connect("app_writer").execute("SELECT audit.record(kind => 't95.race', actor_id => 't95_r' || g)"
                                  " FROM generate_series(1, 600) g")
    maintainer = connect("app_maintainer")
    real, calls = plugin.list_events, []

    def paging_while_sealing(*args, **kwargs):
        page = real(*args, **kwargs)
        calls.append(kwargs.get("before_intake_id"))
        if len(calls) == 1:
            assert seal_all(maintainer) is None  # the worker's round, between two pages
        return page

    monkeypatch.setattr(plugin, "list_events", paging_while_sealing)
    events = trail.events(kind_prefix="t95.race")
    assert _page_counts(events) == (600, 600)


# ============================================ class W ============================================

def _workers(db) -> int:
    done = cli("status", "--dsn", dsn_of(db, user="app_reader"), "--json")
    return json.loads(done.stdout)["workers"]


def test_w1_a_worker_named_session_in_another_database_or_of_a_lesser_role_is_not_counted(db, connect, fresh_database):
    other = fresh_database("t95_w1_other")
    other.close()
    i = db.info
    away = psycopg.connect(host=i.host, port=i.port, user="app_maintainer", dbname="t95_w1_other",
                           application_name="pgaudit worker", autocommit=True)
    try:
        fakes = [connect(role, application_name="pgaudit worker") for role in ("app_reader", "app_writer")]
        for f in fakes:
            f.execute("SELECT 1")
        counted = _workers(db)
    finally:
        away.close()
    assert counted == 0, f"status counts {counted} worker(s) where none runs here"
    honest = connect("app_maintainer", application_name="pgaudit worker")
    honest.execute("SELECT 1")
    assert _workers(db) == 1


def test_w2_a_role_given_execute_on_seal_outside_the_package_roles_is_named_by_status(db):
    db.execute("CREATE ROLE t95_w2 LOGIN")
    try:
        db.execute("GRANT EXECUTE ON FUNCTION audit.seal(integer) TO t95_w2")
        named = [p for p in problems_of(db) if "t95_w2" in p or "seal" in p]
    finally:
        db.execute("REVOKE ALL ON FUNCTION audit.seal(integer) FROM t95_w2")
        db.execute("DROP ROLE t95_w2")
    assert named != [], "a foreign EXECUTE grant on seal() goes unnamed by status"


# ============================================ class M ============================================

SECRETISH = "t95sekrit" + "9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c"


def test_m1_row_history_targets_in_wrong_forms_never_repeat_the_key(db, connect):
    with table_owner_kit(db, connect, "t95m") as kit:
        acct(kit)
        kit.owner.execute("CREATE TABLE public.t95m_pair (a int, b text, v int, PRIMARY KEY (a, b));"
                          " GRANT ALL ON public.t95m_pair TO app_writer")
        from pgaudit_py import enable_tracking
        enable_tracking(kit.maint, "public.t95m_pair")
        said = []
        for table, key in [("public.t95m_acct", SECRETISH), ("public.t95m_acct", f'["{SECRETISH}"]'),
                           ("public.t95m_acct", f'{{"id": "{SECRETISH}"}}'), ("public.t95m_pair", f'[1, "{SECRETISH}", 3]'),
                           ("public.t95m_pair", f'["{SECRETISH}", "x"]'), ("public.t95m_pair", f'{{"a": "{SECRETISH}"}}'),
                           ("public.t95m_pair", f'"{SECRETISH}"')]:
            for statement in ("SELECT count(*) FROM audit.row_history(%s::regclass, %s)",
                              "SELECT audit.row_as_of(%s::regclass, %s, now())",
                              "SELECT state FROM audit.row_state_as_of(%s::regclass, %s, now())"):
                try:
                    kit.reader.execute(statement, [table, key])
                except psycopg.Error as e:
                    text = " ".join(filter(None, [str(e), e.diag.message_detail, e.diag.message_hint, e.diag.context]))
                    if SECRETISH[-20:] in text:
                        said.append((statement.split("(")[1][:20], key, text[:160]))
        assert said == []


def test_m2_the_cli_refuses_a_token_given_as_a_time_duration_or_filter_without_repeating_it(db):
    said = []
    for args in (["events", "--since", TOKEN], ["events", "--until", TOKEN], ["events", "--since-seq", TOKEN],
                 ["events", "--kind-prefix", TOKEN + "!"], ["count", "--by-kind-prefix", TOKEN + "!"],
                 ["events", "--outcome", TOKEN], ["prune", "--older-than", TOKEN]):
        done = cli(*args, "--dsn", dsn_of(db, user="app_reader"))
        if TOKEN[20:52] in done.stdout + done.stderr or "Traceback" in done.stderr:
            said.append((args[:2], done.returncode, done.stderr[-200:]))
    assert said == []


def test_m3_python_readers_refuse_without_repeating_the_filter_values(db):
    said = []
    for kwargs in ({"kind_prefix": TOKEN + "!"}, {"outcome": TOKEN}, {"page_size": 501},
                   {"since_seq": -1}, {"before_seq": 2 ** 63}):
        try:
            list_events(db, **kwargs)
        except Exception as e:  # noqa: BLE001
            text = str(e) + " " + str(getattr(e, "__cause__", "") or "")
            if TOKEN[20:52] in text:
                said.append((kwargs, text[:160]))
    assert said == []


def test_m5_enable_tracking_refuses_a_reserved_or_overlapping_prefix_without_repeating_it(db, connect):
    from pgaudit_py import enable_tracking

    with table_owner_kit(db, connect, "t95m5") as kit:
        acct(kit)
        kit.owner.execute("CREATE TABLE public.t95m5_other (id int PRIMARY KEY);"
                          " GRANT ALL ON public.t95m5_other TO app_writer")
        said = []
        for prefix in ("audit." + TOKEN, "public.t95m5_acct." + TOKEN, "public." + TOKEN[:40]):
            try:
                enable_tracking(kit.maint, "public.t95m5_other", kind_prefix=prefix)
            except Exception as e:  # noqa: BLE001
                cause = e.__cause__ or e.__context__
                text = " ".join(str(x) for x in (e, cause, getattr(getattr(cause, "diag", None), "message_detail", ""),
                                                  getattr(getattr(cause, "diag", None), "message_hint", "")) if x)
                if TOKEN[20:36] in text:
                    said.append((prefix[:20], text[:200]))
                continue
            with suppress(Exception):
                from pgaudit_py import disable_tracking
                disable_tracking(kit.maint, "public.t95m5_other")
        assert said == []


def test_m6_the_http_parameters_refuse_without_repeating_the_value():
    from starlette.datastructures import QueryParams

    from pgaudit_py.server.errors import ApiError
    from pgaudit_py.server.params import check_names, filters, integer, kind_prefixes

    said = []
    for query in (f"since={TOKEN}", f"until={TOKEN}", f"kind_prefix={TOKEN}!", f"outcome={TOKEN}",
                  f"tenant_id={TOKEN}%00", f"by_kind_prefix={TOKEN}", f"by_kind_prefix={TOKEN}!", f"limit={TOKEN}",
                  f"{TOKEN}=1", "since=2030-01-01&until=2020-01-01"):
        params = QueryParams(query)
        try:
            check_names(params, ["since", "until", "kind_prefix", "outcome", "tenant_id", "by_kind_prefix", "limit"])
            filters(params)
            kind_prefixes(params)
            integer(params, "limit", 1, 500)
        except ApiError as e:
            if TOKEN[20:36] in str(e) + repr(getattr(e, "__dict__", {})):
                said.append((query[:20], str(e)[:160]))
    assert said == []


def test_m4_the_sql_readers_refuse_without_repeating_filter_values(db, connect):
    reader = connect("app_reader")
    said = []
    for statement in (f"SELECT count(*) FROM audit.list_events(kind_prefix => '{TOKEN}!')",
                      f"SELECT count(*) FROM audit.list_events(outcome => '{TOKEN}')",
                      f"SELECT * FROM audit.count_events(by_kind_prefix => ARRAY['{TOKEN}!'])",
                      f"SELECT * FROM audit.monthly_event_counts(by_kind_prefix => ARRAY['{TOKEN}!'])"):
        try:
            reader.execute(statement)
        except psycopg.Error as e:
            text = " ".join(filter(None, [str(e), e.diag.message_detail, e.diag.message_hint]))
            if TOKEN[20:52] in text:
                said.append((statement[:60], text[:160]))
    assert said == []
