"""A thirty-ninth attacker's trial, on the mends since trial 38: JSON output through
output.json_bytes (1adabc0) and what does not go through it; a connection string's password withheld
(ce03f5f, 3a379c9, pgaudit_py/dsn.py) and the connections that do not go through dsn.connect; the
tenant split of d690c19 under odd tenant columns.

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
Tables are table_owner's (the `attacker` fixture) and tracked by app_maintainer unless said otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import messages_locale_available
from schema_changes import both_verifiers_ok

from pgaudit_py import enable_tracking, seal

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
PIECES = ("Zq8w", "Vx3k")
ODD = b"a\xffb"  # not UTF-8: Python reads it from argv, the environment or a file name as "a\udcffb"


def _env(**extra: str | bytes) -> dict[bytes, bytes]:
    env = {k.encode(): v.encode() for k, v in ENV.items()}
    if messages_locale_available():
        env.update({b"LANG": b"de_DE.UTF-8", b"LC_ALL": b"de_DE.UTF-8"})
    env.update({k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in extra.items()})
    return env


def _dsn(info: psycopg.ConnectionInfo, user: str | None = None) -> str:
    return f"host={info.host} port={info.port} dbname={info.dbname} user={user or info.user}"


def _run(args: list, env: dict[bytes, bytes], timeout: float = 60) -> tuple[int, str, str]:
    done = subprocess.run(
        [os.fsencode(a) if isinstance(a, str) else a for a in args],
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def _cli(*args: str | bytes) -> list:
    return [sys.executable, "-m", "pgaudit_py.cli", *args]


INSTALL = [
    sys.executable,
    "-c",
    "import sys; from pgaudit_py.cli import install_main; sys.argv[0] = 'pgaudit-install'; install_main()",
]


# --- 1. Text that is not UTF-8, from argv, the environment and file names (1adabc0) ---------------------

DSN_COMMANDS = {
    "status": _cli("status"),
    "events --json": _cli("events", "--json"),
    "verify --json": _cli("verify", "--json"),
    "worker": _cli("worker"),
    "serve": _cli("serve", "--port", "0"),
    "pgaudit-install": INSTALL,
}


@pytest.mark.parametrize("command", list(DSN_COMMANDS))
def test_a_connection_string_that_is_not_utf8_is_one_line_and_keeps_its_password(postgresql, command):
    """Attack: PGAUDIT_DSN holds a byte that is not UTF-8 inside its password (a secret manager
    wrote a Latin-1 password; Python reads it with surrogateescape). dsn.connect asks
    conninfo_to_dict, which encodes the text as UTF-8 before libpq sees it. A break: a traceback
    instead of the one-line error every other unreadable DSN gets (exit 1 or 2), or a piece of the
    password in what the command printed."""
    dsn = _dsn(postgresql.info).encode() + b" password=" + PIECES[0].encode() + b"\xff" + PIECES[1].encode()
    code, out, err = _run(DSN_COMMANDS[command], _env(PGAUDIT_DSN=dsn), timeout=30)
    said = (out + err).strip()
    assert "Traceback" not in said and code in (1, 2), (
        f"{command}: exit {code}: {said.splitlines()[-1] if said else ''}"
    )
    assert not any(p in said for p in PIECES), said[-400:]


def test_the_python_api_refuses_a_connection_string_that_is_not_utf8_without_repeating_it():
    """Attack: an application passes dsn.connect a connection string read from a file or the
    environment with surrogateescape (a password byte that is not UTF-8) and logs the failure with
    repr() or a traceback, as trial 38's test does for a failed connection. A break: anything but
    CannotConnect, or a piece of the password in its str(), repr() or formatted traceback (a
    UnicodeEncodeError's repr holds the whole string it could not encode)."""
    from pgaudit_py.dsn import connect as connect_dsn
    from pgaudit_py.errors import CannotConnect

    dsn = "host=127.0.0.1 port=1 user=u password=" + "\udcff".join(PIECES)
    try:
        connect_dsn(dsn, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - what it raises is what is tried
        texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        leaks = [t[-200:] for t in texts if any(p in t for p in PIECES)]
        assert isinstance(exc, CannotConnect) and not leaks, (type(exc).__name__, leaks)
    else:
        raise AssertionError("connected")


ARGUMENTS = {
    "events --json --tenant": ["events", "--json", "--tenant", ODD],
    "count --json --tenant": ["count", "--json", "--tenant", ODD],
    "history --json": ["history", "--json", b"public.t" + ODD, "1"],
    "track": ["track", b"public." + ODD],
    "tokens create --name": ["tokens", "create", "--name", ODD, "--role", "reader"],
    "seal --json --schema": ["seal", "--json", "--schema", ODD],
    "archive run --target": ["archive", "run", "--target", "ARCHIVE", "--signing-key", "KEY"],
}


def _due_archive(db, tmp_path: Path) -> Path:
    """Three sealed blocks, due for archiving at once; the signing key's path."""
    from pgaudit_py.checkpoint import generate_keys

    generate_keys(tmp_path / "keys")
    for r in range(3):
        db.execute(
            "SELECT audit.record(kind => 'order.paid', target_id => %s || '-' || i) FROM generate_series(1, 3) i",
            (f"r{r}",),
        )
        seal(db)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 10, 3)")
    time.sleep(1.1)
    return tmp_path / "keys" / "checkpoint-ed25519.pem"


@pytest.mark.parametrize("case", list(ARGUMENTS))
def test_a_text_argument_that_is_not_utf8_is_refused_in_one_line(db, tmp_path, case):
    """Attack: a tenant, a table name, a token name, a schema, an archive target directory given on
    the command line with a byte that is not UTF-8 (a shell variable from a Latin-1 file; Python
    holds it as a lone surrogate, which psycopg cannot send). --json is asked where the command has
    it. A break: a traceback (run_guarded catches psycopg's errors and pgaudit's, not the
    UnicodeEncodeError of a parameter) instead of one line `pgaudit: ...` and exit 1 or 2; --json
    output that is not JSON."""
    args = list(ARGUMENTS[case])
    if case == "archive run --target":
        key = _due_archive(db, tmp_path)
        args[3] = os.fsencode(f"file://{tmp_path}/arc") + ODD
        args[5] = str(key)
    code, out, err = _run(_cli(*args, "--dsn", _dsn(db.info)), _env())
    assert "Traceback" not in out + err and code in (1, 2), (
        f"{case}: exit {code}: {(out + err).strip().splitlines()[-1] if (out + err).strip() else ''}"
    )
    assert err.startswith("pgaudit: "), err[-300:]


def test_the_servers_archive_run_to_a_target_that_is_not_utf8_answers_json(db, tmp_path, start_api, make_token):
    """Attack: `pgaudit serve --archive-target` (or PGAUDIT_ARCHIVE_URL) names a directory that is
    not UTF-8; POST /v1/audit/archive/run archives to it (the objects are written) and then stores
    the target's text in the log, which psycopg cannot encode. A break: a 500 (the error nothing
    handled) rather than an answer in the API's JSON with a code of its own."""
    from pgaudit_py.checkpoint import load_keys

    key = _due_archive(db, tmp_path)
    target = f"file://{tmp_path}/arc" + os.fsdecode(ODD)
    api = start_api(archive_target=target, archive_keys=load_keys(signing_key=key))
    token = make_token("maintainer", name="ops")
    with httpx.Client(base_url=api.url, timeout=60) as client:
        answer = client.post("/v1/audit/archive/run", headers={"Authorization": f"Bearer {token}"})
    body = answer.json()
    assert answer.status_code < 500 or body["error"]["code"] != "internal_error", (answer.status_code, body)


def test_two_names_never_print_alike(db, tmp_path):
    """Attack: JSON's \\udcXX escape keeps a name that is not UTF-8 apart from one that spells the
    escape (a backslash is escaped too); the text output writes the surrogate with the same six
    characters a real name can hold. Two files, one named with the byte 0xff and one with the
    characters backslash-u-d-c-f-f, both handed to `pgaudit verify --checkpoint` (neither is a
    checkpoint). A break: the two refusals name the file alike (text), or the JSON does."""
    real = os.fsencode(tmp_path) + b"/cp" + b"\xff" + b".json"
    spelt = os.fsencode(tmp_path) + b"/cp\\udcff.json"
    for name in (real, spelt):
        with open(name, "wb") as f:
            f.write(b"{}\n")
    said: dict[str, list[str]] = {"text": [], "--json": []}
    for mode in said:
        for name in (real, spelt):
            args = _cli(
                "verify", *(["--json"] if mode == "--json" else []), "--checkpoint", name, "--dsn", _dsn(db.info)
            )
            code, out, err = _run(args, _env())
            assert "Traceback" not in out + err, (mode, name, (out + err)[-300:])
            said[mode].append((out + err).strip())
    assert said["--json"][0] != said["--json"][1], said["--json"]
    assert said["text"][0] != said["text"][1], f"two files print alike: {said['text']}"


# --- 2. A connection string's password (ce03f5f, 3a379c9) ----------------------------------------------


def test_serve_logs_no_libpq_message_when_the_connection_string_holds_a_password(db, tmp_path):
    """Attack: dsn.connect withholds libpq's whole message when the DSN holds a password, since a
    password can be a word of it (its docstring). `pgaudit serve` checks the DSN with it once, but
    its pool (psycopg_pool, which logs each failed connection's message at WARNING), its LISTEN
    connection and its verifier connect with psycopg directly. The role's password is its name
    (the case dsn.py names); after start the role may no longer log in (its backends ended), and a
    request makes the pool reconnect. A break: a piece of the password in what serve printed."""
    secret = "zq8wvx3k"
    db.execute(f"CREATE ROLE {secret} LOGIN PASSWORD '{secret}'")
    db.execute(f"GRANT audit_reader TO {secret}")
    dsn = _dsn(db.info, user=secret) + f" password={secret}"
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen(
            _cli("serve", "--port", "0", "--dsn", dsn), stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=_env()
        )
    try:
        deadline = time.monotonic() + 20
        while b"Uvicorn running" not in log.read_bytes():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-500:]
            time.sleep(0.1)
        db.execute(f"ALTER ROLE {secret} NOLOGIN")
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (secret,))
        port = log.read_text(errors="replace").split("http://127.0.0.1:")[1].split()[0]
        time.sleep(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            client.get("/healthz")
        time.sleep(4)
    finally:
        server.terminate()
        server.wait(timeout=20)
        db.execute(f"DROP ROLE {secret}")
    printed = log.read_text(errors="replace")
    leaks = [line for line in printed.splitlines() if secret in line.lower() and "--dsn" not in line]
    assert not leaks, "\n".join(leaks[:3])


SERVICE = "[svc]\nhost=127.0.0.1\nport=1\nuser=u\npassword=Zq8w-Vx3k\n"
DSN_FORMS = {
    "a percent-encoded key in a URI's query": "postgresql://u@127.0.0.1:1/app?pass%77ord=Zq8w%40Vx3k",
    "a mixed-case key in a URI's query": "postgresql://u@127.0.0.1:1/app?Password=Zq8wVx3k",
    "a mixed-case key": "host=127.0.0.1 port=1 user=u Password=Zq8wVx3k",
    "a backslash-escaped quote and spaces around =": "host=127.0.0.1 port=1 user=u password  =  'Zq8w\\\\\\' Vx3k'",
    "a password given, then given empty": "host=127.0.0.1 port=1 user=u password=Zq8w@Vx3k password=",
    "a URI's password, then an empty ?password=": "postgresql://u:Zq8w@Vx3k@127.0.0.1:1/app?password=",
    "two hosts, an unencoded @ in the password": "postgresql://u:Zq8w@Vx3k@127.0.0.1:1,127.0.0.1:2/app",
    "a service file's password and PGPASSWORD too": "SERVICE:service=svc dbname=nope",
    "options holding a password-like value": "host=127.0.0.1 port=1 user=u password=Zq8wVx3k options='-c x.y=Zq8wVx3k'",
    "a password in dbname and user too": "host=127.0.0.1 port=1 user=Zq8wVx3k dbname=Zq8wVx3k password=Zq8wVx3k",
    "the password in a second host of a list": "host=127.0.0.1,Zq8w-Vx3k.invalid port=1 user=u password=Zq8w-Vx3k",
}
FORM_COMMANDS = {
    "status": _cli("status"),
    "verify --json": _cli("verify", "--json"),
    "worker": _cli("worker"),
    "serve": _cli("serve", "--port", "0"),
    "pgaudit-install": INSTALL,
}


@pytest.mark.parametrize("form", list(DSN_FORMS))
def test_no_command_prints_a_password_given_in_new_spellings(tmp_path, form):
    """Attack: spellings of a password beyond trial 38's fifteen: a percent-encoded key and a
    mixed-case key in a URI's query, a mixed-case key, a backslash-escaped quote with spaces
    around '=', a password given and then given empty (libpq keeps the last), a URI's
    userinfo password with an empty ?password= after it, two hosts with an unencoded '@', a
    service file's password with PGPASSWORD set too, options holding the same text, the password
    in dbname and user too, and in a second host of a list. Commands status, verify --json,
    worker, serve, pgaudit-install. A break: a piece of the password in the output, or a
    traceback."""
    dsn, extra = DSN_FORMS[form], {}
    if dsn.startswith("SERVICE:"):
        (tmp_path / "pg_service.conf").write_text(SERVICE)
        extra = {"PGSERVICEFILE": str(tmp_path / "pg_service.conf"), "PGPASSWORD": "Zq8w+Vx3k"}
        dsn = dsn.removeprefix("SERVICE:")
    found = []
    for name, command in FORM_COMMANDS.items():
        code, out, err = _run([*command, "--dsn", dsn], _env(**extra), timeout=30)
        said = out + err
        if "Traceback" in said or any(p in said for p in PIECES):
            found.append(f"{name} (exit {code}): {said.strip()[-300:]!r}")
    assert not found, f"{form}:\n" + "\n".join(found)


# --- 3. The tenant split (d690c19) under odd tenant columns --------------------------------------------

TENANT_TYPES = {
    # type of the column, a value before, a value after (SQL literals), extra DDL before the table
    "uuid": ("uuid", "'00000000-0000-0000-0000-00000000000a'", "'00000000-0000-0000-0000-00000000000b'", ""),
    "bigint": ("bigint", "9223372036854775807", "-9223372036854775808", ""),
    "numeric scale only": ("numeric", "1.0", "1.00", ""),
    "NFC to NFD": ("text", "U&'\\00E9'", "U&'e\\0301'", ""),
    "bidi and line separators": ("text", "U&'t1\\202E'", "U&'t1\\2028\\0085'", ""),
    "domain with a spying check": (
        "public.tenant_d",
        "'t1'",
        "'t2'",
        "CREATE DOMAIN public.tenant_d AS text CHECK (public.spy('domain check'))",
    ),
    "enum": ("public.tenant_e", "'t1'", "'t2'", "CREATE TYPE public.tenant_e AS ENUM ('t1', 't2')"),
    # (A text[] or jsonb tenant column is refused since trial 84, k1 and k2: test_capture_integrity.)
    "timestamptz": ("timestamptz", "'2026-01-01 00:00+00'", "'2026-01-01 00:00+01'", ""),
}


def _captured(db, prefix: str) -> list[tuple]:
    return db.execute(
        "SELECT kind, tenant_id, target_id, payload, row_before, row_after, changed, id FROM audit.events"
        " WHERE origin = 'capture' AND kind LIKE %s ORDER BY coalesce(seq, 0), intake_id",
        (prefix + ".%",),
    ).fetchall()


def _image_tenant(db, table: str, key: int) -> str | None:
    return db.execute(f"SELECT to_jsonb(t) ->> 'tenant' FROM {table} t WHERE id = %s", (key,)).fetchone()[0]


@pytest.mark.parametrize("case", list(TENANT_TYPES))
def test_a_move_between_tenants_of_an_odd_type_is_two_events_filed_rightly(db, connect, attacker, case):
    """Attack on the split (d690c19), with the tenant column of odd types: uuid, bigint at its
    bounds, numeric differing only in scale (1.0 to 1.00), text in NFC to NFD, text with a
    right-to-left override and line separators, a domain whose CHECK runs the owner's code, an enum
    (the sandbox), timestamptz (a text array, and jsonb from the string "1" to the number 1, until
    trial 84 refused them as tenant columns). A dropped column sits before the tenant, a generated column after it; the UPDATE
    also changes the key. A break: the tenant ids are not the column's text in the image before
    and after; a move whose tenant text changed is not one moved-out event (row_before only, under
    the old tenant, named by the old key) and one moved-in (row_after only, under the new, new
    key), or one whose text did not change is split; the owner's code ran as any audit role; the
    two verifiers disagree once sealed."""
    typ, old, new, ddl = TENANT_TYPES[case]
    if ddl:
        attacker.execute(ddl)
    attacker.execute(
        f"CREATE TABLE public.acc (id int PRIMARY KEY, gone text, tenant {typ}, note text,"
        f" loud text GENERATED ALWAYS AS (upper(note)) STORED)"
    )
    attacker.execute("ALTER TABLE public.acc DROP COLUMN gone")
    attacker.execute(f"INSERT INTO public.acc (id, tenant, note) VALUES (1, {old}, 'a'), (2, {old}, 'b')")
    enable_tracking(connect("app_maintainer"), "public.acc", tenant_column="tenant")
    t_old = _image_tenant(db, "public.acc", 1)
    n = len(_captured(db, "public.acc"))
    writer = connect("table_owner")
    writer.execute("SELECT set_config('pgaudit_py.tenant_id', 't9', false)")
    writer.execute(f"UPDATE public.acc SET tenant = {new}, note = 'c', id = 11 WHERE id = 1")
    writer.execute("UPDATE public.acc SET note = 'd' WHERE id = 2")
    t_new = _image_tenant(db, "public.acc", 11)
    events = _captured(db, "public.acc")[n:]
    first = [e for e in events if e[2] in ("1", "11")]
    problems = []
    if t_old != t_new:
        shape = [(e[1], e[2], (e[3] or {}).get("tenant"), e[4] is not None, e[5] is not None, e[6]) for e in first]
        if shape != [(t_old, "1", "moved out", True, False, None), (t_new, "11", "moved in", False, True, None)]:
            problems.append(f"move {t_old!r} -> {t_new!r}: {shape}")
    elif [(e[1], (e[3] or {}).get("tenant")) for e in first] != [(t_old, None)]:
        problems.append(f"no move ({t_old!r}), yet {[(e[1], e[2], e[3]) for e in first]}")
    second = [(e[1], e[2]) for e in events if e[2] == "2"]
    if second != [(t_old, "2")]:
        problems.append(f"row 2 stays under {t_old!r}: {second}")
    ran = db.execute("SELECT DISTINCT who FROM public.who_ran").fetchall()
    if any(w[0] != "table_owner" for w in ran):
        problems.append(f"the owner's code ran as {ran}")
    assert not problems, f"{case}:\n" + "\n".join(problems)
    seal(db)
    both_verifiers_ok(db)


def test_a_tenant_column_swapped_by_name_with_another_follows_the_column(db, connect, attacker):
    """Attack: after tracking with tenant_column 'tenant', the owner swaps names in one
    transaction: tenant -> tmp, note -> tenant, tmp -> note (each rename fires the event trigger),
    then writes. The column that was the tenant now holds 't1'/'t2' under the name `note`. A
    break: events filed under the other column's values (the old name now names the notes); or a
    row moving between the real tenants is not split."""
    attacker.execute("CREATE TABLE public.acc (id int PRIMARY KEY, tenant text, note text)")
    attacker.execute("INSERT INTO public.acc VALUES (1, 't1', 'note-x')")
    enable_tracking(connect("app_maintainer"), "public.acc", tenant_column="tenant")
    # Since trial 87 (k11) the swap itself is refused: the tenant column's name goes to no other
    # column. The rest of the test follows the column through the two renames that are left.
    attacker.execute("BEGIN")
    attacker.execute("ALTER TABLE public.acc RENAME COLUMN tenant TO tmp")
    with pytest.raises(psycopg.Error, match="cannot give tenant of tracked table public.acc") as refused:
        attacker.execute("ALTER TABLE public.acc RENAME COLUMN note TO tenant")
    assert refused.value.sqlstate == "PA008"
    attacker.execute("ROLLBACK")
    named = db.execute("SELECT tenant_column FROM audit.tracked_tables WHERE table_name = 'public.acc'").fetchone()
    assert named == ("tenant",)
    n = len(_captured(db, "public.acc"))
    attacker.execute("UPDATE public.acc SET tenant = 't2' WHERE id = 1")  # the tenant column moves
    attacker.execute("UPDATE public.acc SET note = 'note-y' WHERE id = 1")  # the notes change
    events = [(e[1], (e[3] or {}).get("tenant")) for e in _captured(db, "public.acc")[n:]]
    assert events == [("t1", "moved out"), ("t2", "moved in"), ("t2", None)], (named, events)
    seal(db)
    both_verifiers_ok(db)
