"""A hundred-and-fourteenth attacker's trial: secrets in output, the installer's last changes, and
the least privilege of the command line.

Classes (test names carry the letter):
  S. secrets in output: every command of `pgaudit` and `pgaudit-install` (and `worker`, `serve`)
     given a connection string, PGAUDIT_DSN or PGPASSWORD holding a distinctive password, made to
     fail every way we could; the Python functions taking a DSN; key files malformed, of the wrong
     kind or encrypted; API tokens given where a name belongs.
  I. the installer: what status finds said on stderr after an install (text, --json, not --dry-run),
     the warning when it joins an owner role that was there, hostile schema and role names, an
     upgrade of an earlier release in place.
  L. least privilege: commands run as a role with less than docs/cli.md's least role are refused in
     one line and write nothing.

Each test asserts the secure outcome the docs state, so it FAILS when the attack works. Objects and
roles made here are prefixed t114_.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import urllib.parse
from contextlib import suppress
from pathlib import Path

import psycopg
import psycopg.sql
import pytest
from click.testing import CliRunner
from trial_helpers import both_verifiers, drop_made_under

from pgaudit_py import record, seal, status
from pgaudit_py.cli import cli, install_standalone

PW = "Sekr3t-t114-Q@w,e/x%y"  # short (under 32): the long-piece scrubbing does not hide it
PW_ENC = urllib.parse.quote(PW, safe="")
MARK = "ekr3t-t114"  # in every form of the password: as given, escaped, %-encoded (no '-' encoded)


def leaked(text: str) -> bool:
    low = text.lower()
    return MARK.lower() in low or "sekr3t" in low or PW_ENC.lower() in low


def invoke(root, args, env=None, input=None):
    """(exit code, everything the run showed: stdout, stderr, an exception's text and traceback)."""
    result = CliRunner().invoke(root, list(args), env=env, input=input, catch_exceptions=True)
    shown = result.output + "\n" + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        shown += "\n" + "".join(traceback.format_exception(result.exception)) + repr(result.exception.args)
        shown += "\nTraceback"
    return result.exit_code, shown, result


# Every command that connects, with the arguments it needs to get as far as connecting.
def commands(tmp: Path) -> list[tuple[object, list[str]]]:
    key = tmp / "keys" / "checkpoint-ed25519.pem"
    target = f"file://{tmp}/archive"
    return [
        (cli, ["status"]), (cli, ["events"]), (cli, ["count"]), (cli, ["seal"]), (cli, ["tracked"]),
        (cli, ["limits"]), (cli, ["verify"]), (cli, ["archive", "list"]), (cli, ["archive", "settings"]),
        (cli, ["types", "list"]), (cli, ["tokens", "list"]), (cli, ["tokens", "create", "--name", "t114_tok"]),
        (cli, ["tokens", "revoke", "t114_tok"]), (cli, ["record", "t114.kind"]), (cli, ["track", "public.t114_x"]),
        (cli, ["untrack", "public.t114_x"]), (cli, ["history", "public.t114_x", "1"]),
        (cli, ["prune", "--older-than", "1d", "--yes"]), (cli, ["secrets", "list"]),
        (cli, ["secrets", "get", "--tenant", "t", "k"]), (cli, ["secrets", "init"]),
        (cli, ["checkpoint", "--signing-key", str(key), "--out", str(tmp / "cp.json")]),
        (cli, ["archive", "run", "--target", target, "--signing-key", str(key)]),
        (cli, ["archive", "restore", "--target", target, "--batch", "1"]),
        (cli, ["archive", "verify", "--target", target, "--public-key", str(tmp / "keys" / "checkpoint-ed25519.pub.pem")]),
        (cli, ["limits", "set", "public.t114_x", "--per-user", "1"]), (cli, ["types", "load", "auth"]),
        (cli, ["install", "--dry-run"]), (cli, ["install", "--status"]), (cli, ["install", "--sql"]),
        (install_standalone, ["--status"]), (install_standalone, ["--dry-run"]), (install_standalone, ["--json"]),
        (install_standalone, []), (cli, ["install"]), (cli, ["demo"]),
    ]


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    from pgaudit_py.checkpoint import generate_keys
    tmp = tmp_path_factory.mktemp("t114")
    generate_keys(tmp / "keys")
    return tmp


def _dsns(host: str, port: int, dbname: str, user: str) -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (the --dsn given, extra environment); every one fails before anything is written."""
    q = PW.replace("\\", "\\\\").replace("'", "\\'")
    h = urllib.parse.quote(host, safe="")
    return {
        "wrong_port": (f"host={host} port=1 dbname={dbname} user={user} password='{q}'", {}),
        "unknown_host": (f"host=t114-nohost.invalid port={port} dbname={dbname} user={user} password='{q}'"
                         " connect_timeout=3", {}),
        "no_database": (f"host={host} port={port} dbname=t114_nodb user={user} password='{q}'", {}),
        "no_role": (f"host={host} port={port} dbname={dbname} user=t114_norole password='{q}'", {}),
        "unbalanced_quote": (f"host={host} port={port} dbname={dbname} password='{q}", {}),
        "odd_keyword": (f"host={host} port={port} password='{q}' t114bogus=1", {}),
        "bad_sslmode": (f"host={host} port={port} password='{q}' sslmode=t114", {}),
        "uri_wrong_port": (f"postgresql://{user}:{PW_ENC}@/{dbname}?host={h}&port=1", {}),
        "uri_no_database": (f"postgresql://{user}:{PW_ENC}@/t114_nodb?host={h}&port={port}", {}),
        "uri_raw_password": (f"postgresql://{user}:{PW}@/{dbname}?host={h}&port=1", {}),
        "uri_bad_escape": (f"postgresql://{user}:{PW_ENC}%zz@/{dbname}?host={h}&port={port}", {}),
        "uri_password_query": (f"postgresql:///t114_nodb?host={h}&port={port}&password={PW_ENC}", {}),
        "pgpassword_env": (f"host={host} port={port} dbname=t114_nodb user={user}", {"PGPASSWORD": PW}),
        "pgpassword_env_no_role": (f"host={host} port={port} dbname={dbname} user=t114_norole", {"PGPASSWORD": PW}),
        "sslpassword": (f"host={host} port={port} dbname=t114_nodb user={user} sslpassword='{q}'", {}),
        "sslpassword_badkey": (f"host=127.0.0.1 port={port} dbname=t114_nodb user={user} sslmode=require"
                               f" sslkey=/nonexistent/t114.key sslcert=/nonexistent/t114.crt sslpassword='{q}'"
                               " connect_timeout=3", {}),
    }


DSN_CASES = ["wrong_port", "unknown_host", "no_database", "no_role", "unbalanced_quote", "odd_keyword", "bad_sslmode",
             "uri_wrong_port", "uri_no_database", "uri_raw_password", "uri_bad_escape", "uri_password_query",
             "pgpassword_env", "pgpassword_env_no_role", "sslpassword", "sslpassword_badkey"]


@pytest.mark.parametrize("case", DSN_CASES)
@pytest.mark.parametrize("via", ["option", "env"])
def test_S_no_command_repeats_the_password_of_a_failing_connection(pg_cluster, keydir, case, via):
    dsn, extra = _dsns(pg_cluster.host, pg_cluster.port, "postgres", pg_cluster.user)[case]
    leaks, tracebacks, zero = [], [], []
    for root, args in commands(keydir):
        env = {"PGAUDIT_MASTER_KEY": "00" * 32, **extra}
        if via == "option":
            code, shown, _ = invoke(root, [*args, "--dsn", dsn], env=env)
        else:
            code, shown, _ = invoke(root, args, env={**env, "PGAUDIT_DSN": dsn})
        if leaked(shown):
            leaks.append((args, shown[-600:]))
        if "Traceback" in shown:
            tracebacks.append((args, shown[-600:]))
        if code == 0:
            zero.append(args)
    assert not leaks, leaks[:3]
    assert not tracebacks, tracebacks[:3]
    assert not zero, zero


@pytest.mark.parametrize("case", ["schema_missing", "role_without_rights"])
def test_S_no_command_repeats_the_password_after_connecting(db, keydir, case):
    """Trust authentication lets these connect: the failure comes after, from the database."""
    i = db.info
    q = PW.replace("'", "\\'")
    user = "app_attacker" if case == "role_without_rights" else i.user
    schema = ["--schema", "t114_none"] if case == "schema_missing" else []
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={user} password='{q}'"
    uri = f"postgresql://{user}:{PW_ENC}@/{i.dbname}?host={urllib.parse.quote(i.host, safe='')}&port={i.port}"
    leaks, tracebacks = [], []
    try:
        for root, args in commands(keydir):
            if case == "schema_missing" and (args[:1] in (["install"], ["demo"]) or root is install_standalone):
                continue  # as a superuser these would install or run the demo, which is no failure
            for d in (dsn, uri):
                code, shown, _ = invoke(root, [*args, *schema, "--dsn", d], env={"PGAUDIT_MASTER_KEY": "00" * 32})
                if leaked(shown):
                    leaks.append((args, shown[-600:]))
                if "Traceback" in shown:
                    tracebacks.append((args, shown[-600:]))
    finally:
        drop_made_under(db, "t114_")
    assert not leaks, leaks[:3]
    assert not tracebacks, tracebacks[:3]


def test_S_worker_and_serve_do_not_repeat_the_password(pg_cluster):
    d = _dsns(pg_cluster.host, pg_cluster.port, "postgres", pg_cluster.user)
    shown = []
    for case in ("wrong_port", "no_database", "uri_raw_password", "unbalanced_quote", "pgpassword_env"):
        dsn, extra = d[case]
        for args in (["worker", "--interval", "0.1"], ["serve", "--port", "0"], ["seal", "--follow"],
                     ["events", "--follow"]):
            env = {**os.environ, **extra, "PYTHONPATH": str(Path(__file__).parent.parent)}
            try:
                done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args, "--dsn", dsn], env=env,
                                      capture_output=True, text=True, timeout=30)
                shown.append((case, args, done.returncode, done.stdout + done.stderr))
            except subprocess.TimeoutExpired as e:
                shown.append((case, args, "timeout", str(e.stdout) + str(e.stderr)))
    assert not [s for s in shown if leaked(s[3])], [s for s in shown if leaked(s[3])][:3]
    assert not [s for s in shown if "Traceback" in s[3]], [s for s in shown if "Traceback" in s[3]][:3]
    assert all(s[2] not in (0, "timeout") for s in shown), [(s[0], s[1], s[2]) for s in shown]


def test_S_python_functions_taking_a_dsn_do_not_repeat_the_password(pg_cluster):
    from pgaudit_py import demo
    from pgaudit_py.dsn import WithheldAsyncConnection, connect
    from pgaudit_py.errors import PgAuditError

    d = _dsns(pg_cluster.host, pg_cluster.port, "postgres", pg_cluster.user)
    said = []
    for case in DSN_CASES:
        dsn, extra = d[case]
        if extra:
            continue
        for call in (lambda dsn=dsn: connect(dsn), lambda dsn=dsn: demo.main(dsn),
                     lambda dsn=dsn: asyncio.run(WithheldAsyncConnection.connect(dsn))):
            try:
                call()
                said.append((case, "connected?!"))
            except (PgAuditError, psycopg.Error, Exception) as e:  # noqa: BLE001
                text = str(e) + repr(e) + repr(e.args) + "".join(traceback.format_exception(e))
                said.append((case, text))
    assert not [s for s in said if leaked(s[1])], [s for s in said if leaked(s[1])][:3]


def test_S_an_encrypted_signing_key_is_refused_in_one_line(db, tmp_path):
    """A PEM private key under a passphrase (what `openssl genpkey -aes256` writes) is a key file of
    the wrong kind: one line, exit 2, no traceback."""
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    record(db, "t114.a")
    seal(db)
    key = tmp_path / "enc.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        s.Encoding.PEM, s.PrivateFormat.PKCS8, s.BestAvailableEncryption(b"Sekr3t-t114-pem")))
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader"
    runs = {
        "checkpoint": invoke(cli, ["checkpoint", "--dsn", dsn, "--signing-key", str(key), "--out", str(tmp_path / "o")]),
        "archive run": invoke(cli, ["archive", "run", "--dsn", dsn, "--target", f"file://{tmp_path}/a",
                                    "--signing-key", str(key)]),
    }
    bad = {k: (c, s[-400:]) for k, (c, s, _) in runs.items() if "Traceback" in s or c not in (1, 2)}
    assert not bad, bad
    assert not (tmp_path / "o").exists()
    body = key.read_text().splitlines()[1]
    assert not [k for k, (_, s, _) in runs.items() if body[:20] in s or leaked(s)]


def test_S_a_key_file_given_as_the_checkpoint_is_not_echoed(db, tmp_path):
    """The HMAC key (32 random bytes), or a raw private key, given by mistake as --checkpoint: the
    refusal names the file, and repeats none of its bytes."""
    from pgaudit_py.checkpoint import generate_keys

    generate_keys(tmp_path / "k")
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader"
    hmac_key = tmp_path / "k" / "checkpoint-hmac.key"
    # A key that is surely not UTF-8 (os.urandom's could be): its bytes as UnicodeDecodeError names them.
    raw = tmp_path / "raw.key"
    raw.write_bytes(bytes([0xdd, 0xa7]) + os.urandom(30))
    found = []
    for f in (hmac_key, raw):
        data = f.read_bytes()
        for args in (["verify", "--checkpoint", str(f), "--public-key", str(tmp_path / "k" / "checkpoint-ed25519.pub.pem")],
                     ["verify", "--checkpoint", str(f), "--hmac-key-file", str(hmac_key)]):
            code, shown, _ = invoke(cli, [*args, "--dsn", dsn])
            assert code == 2 and "Traceback" not in shown, shown
            echoed = [f"0x{b:02x}" for b in data if f"0x{b:02x}" in shown] + ([data.hex()[:8]] if data.hex()[:8] in shown else [])
            if echoed:
                found.append((f.name, echoed, shown.strip()[-300:]))
    assert not found, found


def test_S_a_token_given_where_a_name_belongs_is_not_repeated(db):
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_maintainer"
    code, shown, result = invoke(cli, ["tokens", "create", "--name", "t114_tok", "--dsn", dsn])
    assert code == 0, shown
    token = result.stdout.strip()
    secret = token.rsplit("_", 1)[-1]
    assert len(secret) >= 32
    said = []
    for args in (["tokens", "revoke", token], ["tokens", "revoke", secret], ["tokens", "create", "--name", token],
                 ["tokens", "create", "--name", "t114_tok", "--tenant", token], ["events", "--tenant", token],
                 ["tokens", "revoke", token[:40]], ["record", token], ["history", f"public.{secret}", "1"]):
        code, shown, _ = invoke(cli, [*args, "--dsn", dsn])
        said.append((args[:2], code, shown))
    assert not [(a, c, s[-300:]) for a, c, s in said if secret[:16] in s or secret[-16:] in s]
    assert not [(a, s[-300:]) for a, c, s in said if "Traceback" in s]
    # A whole token pasted is revoked by its id (docs): the one named t114_tok, and no other made.
    assert db.execute("SELECT name, revoked_at IS NOT NULL FROM audit.api_tokens").fetchall() == [("t114_tok", True)]


# I. The installer's last changes.

def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_I_install_reports_status_on_stderr_and_dry_run_does_not(db):
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"
    try:
        dry = CliRunner().invoke(install_standalone, ["--dsn", dsn, "--schema", "t114_i", "--dry-run"])
        assert dry.exit_code == 0 and "PROBLEM" not in dry.stderr and "WARNING" not in dry.stderr, dry.stderr
        assert db.execute("SELECT to_regnamespace('t114_i')").fetchone() == (None,)
        first = CliRunner().invoke(install_standalone, ["--dsn", dsn, "--schema", "t114_i", "--json"])
        assert first.exit_code == 0, first.stderr
        report = json.loads(first.stdout)
        assert report["schema"] == "t114_i" and report["joined_owner"] is False
        # Status is intact after the superuser's install: nothing to say on stderr.
        assert not [ln for ln in lines_of(first.stderr) if ln.startswith("PROBLEM")], first.stderr
        again = CliRunner().invoke(install_standalone, ["--dsn", dsn, "--schema", "t114_i"])
        assert again.exit_code == 0 and "already up to date, nothing changed" in again.stdout
        assert status(db, "t114_i").intact
        # A problem made between runs is said after the next install, or repaired by it.
        db.execute("GRANT EXECUTE ON FUNCTION t114_i.prune_events(interval, integer) TO PUBLIC")
        fixed = CliRunner().invoke(install_standalone, ["--dsn", dsn, "--schema", "t114_i", "--json"])
        assert fixed.exit_code == 0
        json.loads(fixed.stdout)
        assert status(db, "t114_i").intact
        assert db.execute("SELECT has_function_privilege('app_attacker', 't114_i.prune_events(interval, integer)',"
                          " 'EXECUTE')").fetchone() == (False,)
    finally:
        drop_made_under(db, "t114_")


def test_I_a_database_owner_joining_an_existing_owner_role_is_warned(db, fresh_database):
    """The roles of schema t114_j made by a superuser's install elsewhere; a database owner with
    CREATEROLE installs t114_j into its own database: warned that it joined t114_j_owner (text and
    --json), the event triggers it could not make named as PROBLEM/WARNING lines."""
    i = db.info
    first = fresh_database("t114_dbj1")
    first.execute("CREATE ROLE t114_dbo LOGIN CREATEROLE")
    try:
        from pgaudit_py.installer import install
        install(first, "t114_j")
        first.close()
        db.execute("DROP DATABASE IF EXISTS t114_dbj2")
        db.execute("CREATE DATABASE t114_dbj2 OWNER t114_dbo")
        dsn = f"host={i.host} port={i.port} dbname=t114_dbj2 user=t114_dbo"
        done = CliRunner().invoke(install_standalone, ["--dsn", dsn, "--schema", "t114_j", "--json"])
        assert done.exit_code == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["joined_owner"] is True
        err = lines_of(done.stderr)
        assert any(ln.startswith("WARNING: the roles of schema 't114_j' already existed") for ln in err), err
        assert all(ln.startswith(("PROBLEM: ", "WARNING: ", "pg_cron")) for ln in err), err
        again = CliRunner().invoke(install_standalone, ["--dsn", dsn, "--schema", "t114_j"])
        assert again.exit_code == 0, again.stderr
        # Not joined again: the role is a member already.
        assert not any("already existed" in ln for ln in lines_of(again.stderr)), again.stderr
    finally:
        with suppress(Exception):
            first.close()
        for name in ("t114_dbj1", "t114_dbj2"):
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        drop_made_under(db, "t114_")


HOSTILE_ROLES = ['t114_x\nPROBLEM: all is well', 't114_"q", PROBLEM: x', "t114_\r\x1b[2Kclean", "t114_\u202eevil"]


def test_I_a_hostile_role_name_forges_no_line_of_status_or_install(db):
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"
    made = []
    try:
        for name in HOSTILE_ROLES:
            db.execute(psycopg.sql.SQL("CREATE ROLE {}").format(psycopg.sql.Identifier(name)))
            made.append(name)
            db.execute(psycopg.sql.SQL("GRANT audit_owner TO {}").format(psycopg.sql.Identifier(name)))
        found = status(db)
        named = [p for p in found.problems + found.warnings if "t114_" in p]
        assert len(named) >= len(HOSTILE_ROLES), named
        runs = {
            "status": CliRunner().invoke(cli, ["status", "--dsn", dsn]),
            "install --status": CliRunner().invoke(install_standalone, ["--dsn", dsn, "--status"]),
            "install": CliRunner().invoke(install_standalone, ["--dsn", dsn]),
            "install --json": CliRunner().invoke(install_standalone, ["--dsn", dsn, "--json"]),
        }
        forged = []
        for what, r in runs.items():
            for ln in (r.stdout + r.stderr).splitlines():
                if ln.strip() in ("PROBLEM: all is well", "clean") or ln.startswith(("PROBLEM: all", "clean")) \
                        or "\x1b" in ln or "\r" in ln or "\u202e" in ln:
                    forged.append((what, ln))
        assert not forged, forged
        assert runs["status"].exit_code == 1 and runs["install --status"].exit_code == 1
        # Every problem said after the install is one line naming the roles, as status has them.
        said = [ln for ln in lines_of(runs["install"].stderr) if "t114_" in ln]
        assert len(said) >= len(HOSTILE_ROLES), runs["install"].stderr
        status_json = json.loads(CliRunner().invoke(cli, ["status", "--dsn", dsn, "--json"]).stdout)
        assert any("t114_x\nPROBLEM: all is well" in w for w in status_json["warnings"]), status_json["warnings"]
        json.loads(runs["install --json"].stdout)
    finally:
        for name in made:
            with suppress(psycopg.Error):
                db.execute(psycopg.sql.SQL("REVOKE audit_owner FROM {}").format(psycopg.sql.Identifier(name)))
            db.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(name)))


@pytest.mark.parametrize("schema", ["t114 x", 't114_"q"', "t114_é", "--dry-run", "-h", "t114_" + "a" * 40,
                                    "t114_x\n", "T114_UP", "t114_x;drop", "t114_\u0430", "", "--json", "1t114"])
def test_I_a_hostile_schema_name_is_refused_before_anything(db, schema):
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"
    before_ns = db.execute("SELECT count(*) FROM pg_namespace").fetchone()
    before_roles = db.execute("SELECT count(*) FROM pg_roles").fetchone()
    try:
        for root, args in ((install_standalone, ["--schema", schema]), (install_standalone, ["--schema", schema, "--json"]),
                           (cli, ["install", "--schema", schema]), (install_standalone, [f"--schema={schema}", "--dry-run"]),
                           (install_standalone, [f"--schema={schema}", "--sql"])):
            code, shown, r = invoke(root, [*args, "--dsn", dsn])
            assert code == 2, (args, code, shown[-400:])
            assert "Traceback" not in shown
            assert r.stdout == "", (args, r.stdout[:300])
            assert len(lines_of(r.stderr)) == 1, r.stderr
        assert db.execute("SELECT count(*) FROM pg_namespace").fetchone() == before_ns
        assert db.execute("SELECT count(*) FROM pg_roles").fetchone() == before_roles
    finally:
        drop_made_under(db, "t114")


@pytest.fixture(scope="module")
def previous_installer(tmp_path_factory):
    from earlier_releases import installer_at
    return installer_at("c7a2a6e", tmp_path_factory)


def test_I_an_earlier_release_with_events_upgrades_in_place_through_the_cli(db, previous_installer):
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"
    try:
        db.execute("SET lc_messages = 'C'")
        previous_installer.install(db, "t114_up")
        for n in range(5):
            db.execute("SELECT t114_up.record(kind => %s, payload => %s::jsonb)", (f"t114.e{n}", json.dumps({"n": n})))
        seal(db, audit_schema="t114_up")
        db.execute("SELECT t114_up.record(kind => 't114.pending')")
        db.execute("RESET lc_messages")
        done = CliRunner().invoke(install_standalone, ["--dsn", dsn, "--schema", "t114_up", "--json"])
        assert done.exit_code == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["migrations"] and report["changed"] is True
        err = lines_of(done.stderr)
        assert all(ln.startswith(("PROBLEM: ", "WARNING: ")) for ln in err), err
        st = status(db, "t114_up")
        assert [ln.removeprefix("PROBLEM: ") for ln in err if ln.startswith("PROBLEM: ")] == st.problems
        assert st.intact, st.problems
        seal(db, audit_schema="t114_up")
        assert both_verifiers(db, "t114_up") == (True, True)
        assert db.execute("SELECT count(*) FROM t114_up.events WHERE kind LIKE 't114.%'").fetchone() == (6,)
        again = CliRunner().invoke(install_standalone, ["--dsn", dsn, "--schema", "t114_up"])
        assert again.exit_code == 0 and "already up to date" in again.stdout, again.stdout + again.stderr
        assert both_verifiers(db, "t114_up") == (True, True)
    finally:
        with suppress(Exception):
            db.execute("RESET lc_messages")
        drop_made_under(db, "t114_up")


# L. Least privilege.

def snapshot(db) -> dict:
    tables = ["event_intake", "event_log", "blocks", "seal_state", "tracked_tables", "rate_limits", "api_tokens",
              "event_types", "archive_settings", "archive_batches", "restored_events", "quarantine",
              "secret_values", "secret_slots", "master_keys"]
    out = {}
    for t in tables:
        if db.execute("SELECT to_regclass(%s)", (f"audit.{t}",)).fetchone()[0] is None:
            continue
        out[t] = db.execute(f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM audit.{t} x"
                            ).fetchone()[0]
    out["triggers"] = db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.t114_orders'::regclass"
                                 ).fetchone()[0]
    out["namespaces"] = db.execute("SELECT count(*) FROM pg_namespace").fetchone()[0]
    out["roles"] = db.execute("SELECT count(*) FROM pg_roles").fetchone()[0]
    return out


LESSER = [
    # (role, command): each below the least role docs/cli.md names.
    ("app_reader", ["seal"]), ("app_reader", ["prune", "--older-than", "1s", "--yes"]),
    ("app_reader", ["track", "public.t114_orders"]), ("app_reader", ["untrack", "public.t114_orders"]),
    ("app_reader", ["limits", "set", "public.t114_orders", "--per-user", "1"]),
    ("app_reader", ["limits", "unset", "public.t114_orders"]),
    ("app_reader", ["limits", "set-operation", "t114.op", "--per-minute", "1"]),
    ("app_reader", ["tokens", "create", "--name", "t114_r"]), ("app_reader", ["tokens", "list"]),
    ("app_reader", ["tokens", "revoke", "t114_m"]), ("app_reader", ["types", "load", "auth"]),
    ("app_reader", ["archive", "settings", "--max-batch-events", "1"]),
    ("app_reader", ["archive", "settings", "--never"]),
    ("app_reader", ["record", "t114.kind"]),
    ("app_writer", ["events"]), ("app_writer", ["status"]), ("app_writer", ["count"]), ("app_writer", ["verify"]),
    ("app_writer", ["seal"]), ("app_writer", ["tracked"]), ("app_writer", ["history", "public.t114_orders", "1"]),
    ("app_attacker", ["record", "t114.kind"]), ("app_attacker", ["status"]), ("app_attacker", ["limits"]),
    ("app_attacker", ["types", "list"]), ("app_attacker", ["archive", "list"]),
    ("app_maintainer", ["secrets", "list"]), ("app_maintainer", ["secrets", "declare", "t114.k", "d"]),
    ("app_maintainer", ["secrets", "init"]), ("app_reader", ["secrets", "get", "--tenant", "t", "t114.k"]),
    ("app_maintainer", ["install"]), ("app_maintainer", ["install", "--schema", "t114_l"]),
    ("app_secrets", ["seal"]), ("app_secrets", ["tokens", "create", "--name", "t114_s"]),
]


def test_L_each_command_below_its_least_role_is_refused_and_writes_nothing(db, connect, tmp_path):
    db.execute("""CREATE TABLE public.t114_orders (id int PRIMARY KEY, v int);
                  ALTER TABLE public.t114_orders OWNER TO app_maintainer;
                  GRANT ALL ON public.t114_orders TO app_writer""")
    maint = connect("app_maintainer")
    from pgaudit_py import enable_tracking
    from pgaudit_py.tokens import create_token
    enable_tracking(maint, "public.t114_orders")
    create_token(maint, "t114_m", "reader")
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.t114_orders VALUES (1, 1)")
    record(writer, "t114.pending")
    seal(maint)
    time.sleep(1.2)  # something prune --older-than 1s would delete
    record(writer, "t114.pending")
    keys = tmp_path / "keys"
    from pgaudit_py.checkpoint import generate_keys
    generate_keys(keys)
    extra = [("app_writer", ["checkpoint", "--signing-key", str(keys / "checkpoint-ed25519.pem"),
                             "--out", str(tmp_path / "cp.json")]),
             ("app_reader", ["archive", "run", "--target", f"file://{tmp_path}/arch", "--older-than", "1s",
                             "--signing-key", str(keys / "checkpoint-ed25519.pem")]),
             ("app_writer", ["archive", "verify", "--target", f"file://{tmp_path}/arch",
                             "--public-key", str(keys / "checkpoint-ed25519.pub.pem")]),
             ("app_reader", ["archive", "restore", "--target", f"file://{tmp_path}/arch", "--batch", "1"])]
    i = db.info
    wrong = []
    try:
        for role, args in LESSER + extra:
            before = snapshot(db)
            dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={role}"
            code, shown, r = invoke(cli, [*args, "--dsn", dsn], env={"PGAUDIT_MASTER_KEY": "00" * 32})
            after = snapshot(db)
            errs = lines_of(r.stderr)
            problem = []
            if code not in (1, 2):
                problem.append(f"exit {code}")
            if "Traceback" in shown:
                problem.append("traceback")
            # Progress lines ("pruning", ...) may come first; the refusal is one line, the last.
            if [e.startswith("pgaudit: ") for e in errs].count(True) != 1 or not errs[-1].startswith("pgaudit: "):
                problem.append(f"stderr {r.stderr[-300:]!r}")
            if after != before:
                problem.append(f"changed {[k for k in before if before[k] != after.get(k)]}")
            if problem:
                wrong.append((role, args, problem, r.stdout[-200:]))
    finally:
        drop_made_under(db, "t114_l")
    assert not wrong, wrong
    assert not (tmp_path / "cp.json").exists()
    assert not (tmp_path / "arch").exists() or not any((tmp_path / "arch").rglob("*.gz"))


@pytest.mark.parametrize("role, args", [
    ("app_reader", ["worker", "--interval", "0.2"]), ("app_writer", ["worker", "--interval", "0.2"]),
    ("app_reader", ["seal", "--follow", "--interval", "0.2"]), ("app_attacker", ["events", "--follow"]),
    ("app_writer", ["serve", "--port", "0"]), ("app_attacker", ["serve", "--port", "0"]),
])
def test_L_a_long_running_command_below_its_least_role_stops_with_one_line(db, connect, role, args):
    """worker, seal --follow, events --follow and serve as a role below docs/cli.md's least role:
    refused with a one-line reason and a non-zero exit, rather than running on (and, for the
    worker, leaving the pending events unsealed while it looks alive)."""
    record(connect("app_writer"), "t114.pending")
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={role}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", *args, "--dsn", dsn], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=12)
        still_running = False
    except subprocess.TimeoutExpired:
        still_running = True
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err[-800:]
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,)
    assert not still_running, (role, args, proc.returncode, f"{err.count('retrying')} retry lines", err[:700])
    assert proc.returncode in (1, 2), (proc.returncode, err[-600:])
    errs = lines_of(err)
    assert errs and errs[-1].startswith("pgaudit: ") and [e.startswith("pgaudit: ") for e in errs].count(True) == 1, \
        err[-600:]


@pytest.mark.parametrize("target", [f"ftp://t114:{PW_ENC}@h.invalid/x", f"https://t114:{PW_ENC}@h.invalid/x",
                                    f"file://t114:{PW_ENC}@/tmp/t114-x", f"s3://AKIAT114:{PW_ENC}@bucket/p"])
def test_S_a_password_in_an_archive_url_is_not_repeated(db, keydir, target):
    """A URL's user:password@, the form docs/cli.md withholds libpq's message for in a DSN, given as
    --target or PGAUDIT_ARCHIVE_URL: the refusal says the URL is not a target without the password."""
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_maintainer"
    key, pub = str(keydir / "keys" / "checkpoint-ed25519.pem"), str(keydir / "keys" / "checkpoint-ed25519.pub.pem")
    said = []
    for args in (["archive", "run", "--signing-key", key], ["archive", "verify", "--public-key", pub],
                 ["archive", "restore", "--batch", "1"], ["archive", "verify", "--offline", "--public-key", pub]):
        for env in (False, True):
            full = [*args, "--dsn", dsn] + ([] if env else ["--target", target])
            code, shown, _ = invoke(cli, full, env={"PGAUDIT_ARCHIVE_URL": target} if env else None)
            said.append((args[:2], env, code, shown.strip()[-300:]))
    assert not [s for s in said if leaked(s[3])], [s for s in said if leaked(s[3])][:4]
    assert not [s for s in said if "Traceback" in s[3]]


def test_S_serve_pool_and_listener_logs_do_not_repeat_the_password(db):
    """pgaudit serve connects with a password in its DSN; its sessions are ended and new ones
    refused for a while: the pool's and the listener's log lines withhold libpq's message."""
    i = db.info
    q = PW.replace("'", "\\'")
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader password='{q}'"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "serve", "--port", "0", "--dsn", dsn], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    admin = psycopg.connect(host=i.host, port=i.port, user=i.user, dbname="postgres", autocommit=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgaudit serve%'").fetchone()[0] < 1:
            time.sleep(0.2)
        admin.execute(f'ALTER DATABASE "{i.dbname}" ALLOW_CONNECTIONS false')
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'pgaudit serve%'")
        time.sleep(4)
        admin.execute(f'ALTER DATABASE "{i.dbname}" ALLOW_CONNECTIONS true')
        time.sleep(1)
    finally:
        admin.execute(f'ALTER DATABASE "{i.dbname}" ALLOW_CONNECTIONS true')
        admin.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "withheld" in err or "no connection" in err, err[-800:]
    assert not leaked(out + err), [ln for ln in (out + err).splitlines() if leaked(ln)][:3]
    assert "Traceback" not in err, err[-1500:]


@pytest.mark.parametrize("who", ["owner_without_createrole", "createrole_not_owner", "plain_login"])
def test_L_an_install_by_a_role_below_the_installers_leaves_nothing_half_written(db, who):
    """docs/installer.md: a superuser, or a database owner with CREATEROLE. Anyone less is refused in
    one line, leaving no schema, role, extension or yoyo table behind in the database or cluster."""
    i = db.info
    attrs = {"owner_without_createrole": "LOGIN", "createrole_not_owner": "LOGIN CREATEROLE",
             "plain_login": "LOGIN"}[who]
    db.execute(f"CREATE ROLE t114_inst {attrs}")
    db.execute("DROP DATABASE IF EXISTS t114_dbh")
    owner = "t114_inst" if who == "owner_without_createrole" else i.user
    db.execute(f"CREATE DATABASE t114_dbh OWNER {owner} TEMPLATE template0")
    try:
        before_roles = db.execute("SELECT array_agg(rolname ORDER BY rolname) FROM pg_roles").fetchone()[0]
        dsn = f"host={i.host} port={i.port} dbname=t114_dbh user=t114_inst"
        code, shown, r = invoke(install_standalone, ["--dsn", dsn, "--schema", "t114_h"])
        with psycopg.connect(host=i.host, port=i.port, user=i.user, dbname="t114_dbh", autocommit=True) as c:
            left = c.execute("""SELECT (SELECT array_agg(nspname::text) FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'
                                          AND nspname NOT IN ('public', 'information_schema')),
                                       (SELECT array_agg(extname::text) FROM pg_extension WHERE extname <> 'plpgsql'),
                                       (SELECT array_agg(relname::text) FROM pg_class c JOIN pg_namespace n
                                          ON n.oid = c.relnamespace WHERE n.nspname = 'public')""").fetchone()
        after_roles = db.execute("SELECT array_agg(rolname ORDER BY rolname) FROM pg_roles").fetchone()[0]
        assert code in (1, 2) and "Traceback" not in shown, (code, shown[-800:])
        assert len(lines_of(r.stderr)) == 1 and r.stderr.startswith("pgaudit: "), r.stderr
        assert left == (None, None, None), left
        assert after_roles == before_roles, (r.stderr, sorted(set(after_roles) ^ set(before_roles)))
        assert after_roles == before_roles, sorted(set(after_roles) ^ set(before_roles))
    finally:
        db.execute("DROP DATABASE IF EXISTS t114_dbh WITH (FORCE)")
        drop_made_under(db, "t114_")


def test_S_commands_that_succeed_with_a_password_in_the_dsn_do_not_print_it(db, tmp_path):
    """Trust authentication ignores the password: the commands run, and neither their output nor
    what they write (a checkpoint, an archive, the events) holds it."""
    from pgaudit_py.checkpoint import generate_keys
    generate_keys(tmp_path / "k")
    i = db.info
    q = PW.replace("'", "\\'")
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user} password='{q}'"
    uri = f"postgresql://{i.user}:{PW_ENC}@/{i.dbname}?host={urllib.parse.quote(i.host, safe='')}&port={i.port}"
    said = []
    try:
        for d in (dsn, uri):
            for root, args in ((cli, ["record", "t114.ok"]), (cli, ["seal"]), (cli, ["status"]), (cli, ["events"]),
                               (cli, ["verify"]), (install_standalone, ["--status"]), (install_standalone, []),
                               (install_standalone, ["--json"]), (cli, ["demo"]),
                               (cli, ["checkpoint", "--signing-key", str(tmp_path / "k" / "checkpoint-ed25519.pem"),
                                      "--out", str(tmp_path / f"cp{len(said)}.json")]),
                               (cli, ["tokens", "create", "--name", f"t114_{len(said)}"])):
                code, shown, _ = invoke(root, [*args, "--dsn", d])
                said.append((args[:2], code, shown))
        files = "".join(p.read_text() for p in tmp_path.glob("cp*.json"))
        stored = db.execute("SELECT string_agg(e::text, '') FROM audit.events e").fetchone()[0] or ""
        assert not [(a, s[-300:]) for a, c, s in said if leaked(s)]
        assert not [(a, c, s[-300:]) for a, c, s in said if c != 0 and a != ["status"]]
        assert not leaked(files) and not leaked(stored)
    finally:
        drop_made_under(db, "t114_")
