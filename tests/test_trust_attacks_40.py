"""A fortieth attacker's trial, on the mends of trial 39 (5f2dea0, 7368c34): text that is not
UTF-8 refused by Utf8Text at the command line and by run_guarded's UnicodeEncodeError fallback;
what reaches the commands from elsewhere than argv and the environment (a key file, standard
input); click types that are not StringParamType; what the text output prints (printable, and
the lines that do not go through it).

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import messages_locale_available

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
ODD = b"a\xffb"  # not UTF-8: Python reads it from argv, the environment or a file name as "a\udcffb"
NOWHERE = "host=127.0.0.1 port=1 user=u dbname=d connect_timeout=3"


def _env(strict: bool = True, **extra: str | bytes) -> dict[bytes, bytes]:
    """The environment of a run; strict: a UTF-8 locale whose standard streams are strict (de_DE's:
    C.UTF-8 makes Python read them with surrogateescape), as on most workstations."""
    env = {k.encode(): v.encode() for k, v in ENV.items()}
    if strict:
        if not messages_locale_available():
            pytest.skip("no de_DE.UTF-8 locale")
        env.update({b"LANG": b"de_DE.UTF-8", b"LC_ALL": b"de_DE.UTF-8"})
    env.update({k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in extra.items()})
    return env


def _dsn(info: psycopg.ConnectionInfo) -> str:
    return f"host={info.host} port={info.port} dbname={info.dbname} user={info.user}"


def _run(args: list, env: dict[bytes, bytes], stdin: bytes = b"", timeout: float = 60) -> tuple[int, str, str]:
    done = subprocess.run(
        [os.fsencode(a) if isinstance(a, (str, Path)) else a for a in args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def _cli(*args: str | bytes | Path) -> list:
    return [sys.executable, "-m", "pgaudit_py.cli", *args]


def _one_line_failure(code: int, out: str, err: str) -> list[str]:
    """What is wrong with a failure that should be `pgaudit: ...` on one line, exit 1 or 2."""
    problems = []
    if "Traceback" in out + err:
        problems.append(f"a traceback: {(out + err).strip().splitlines()[-1]}")
    if code not in (1, 2):
        problems.append(f"exit {code}")
    if not err.startswith("pgaudit: ") or len(err.strip().splitlines()) != 1:
        problems.append(f"not one line: {err[-300:]!r}")
    return problems


# --- 1. Text that is not UTF-8 from files and standard input, not argv --------------------------------


@pytest.mark.parametrize("command", ["secrets init", "secrets rotate-master"])
def test_a_master_key_file_that_is_not_utf8_is_refused_in_one_line(tmp_path, command):
    """Attack: --master-key-file (click.Path: any bytes, so Utf8Text does not look at it) names a
    file whose content is not UTF-8 (a binary key, a key file in Latin-1, the wrong file). The
    mend's fallback in run_guarded catches UnicodeEncodeError, not the UnicodeDecodeError of reading
    the file. A break: a traceback instead of `pgaudit: ...` on one line, exit 1 or 2 (the same as
    a file of the wrong text gets: 'does not hold a master key')."""
    key = tmp_path / "master.key"
    key.write_bytes(b"\xff" + b"ab" * 32 + b"\n")
    args = {
        "secrets init": ["secrets", "init", "--master-key-file", key],
        "secrets rotate-master": ["secrets", "rotate-master", "--new-master-key-file", key],
    }[command]
    code, out, err = _run(_cli(*args, "--dsn", NOWHERE), _env(strict=False), stdin=b"value")
    problems = _one_line_failure(code, out, err)
    assert not problems, f"{command}: {problems}"


def test_a_secret_on_standard_input_that_is_not_utf8_is_refused_in_one_line():
    """Attack: `pgaudit secrets put` reads the secret from standard input as text; a binary secret
    (a DER key, a random token) or one in Latin-1 is not UTF-8. Under a UTF-8 locale Python reads
    standard input strictly, so the read raises UnicodeDecodeError, which run_guarded does not
    catch (its fallback is for UnicodeEncodeError). A break: a traceback instead of one line
    `pgaudit: ...`, exit 1 or 2."""
    code, out, err = _run(
        _cli("secrets", "put", "--tenant", "t1", "k", "--dsn", NOWHERE), _env(strict=True), stdin=b"s3cr\xe9t\n"
    )
    problems = _one_line_failure(code, out, err)
    assert not problems, problems


def test_an_escaped_lone_surrogate_in_a_payload_is_refused_and_not_recorded(db):
    """Attack: the payload is ASCII on the command line (so Utf8Text passes it) but JSON's escape
    \\udcff makes a lone surrogate of it once parsed, which UTF-8 cannot encode and jsonb does not
    take. A break: a traceback, an exit other than 1 or 2, or an event recorded."""
    before = db.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    code, out, err = _run(
        _cli("record", "odd.payload", "--payload", '{"a":"x\\udcffy"}', "--dsn", _dsn(db.info)), _env(strict=False)
    )
    problems = _one_line_failure(code, out, err)
    after = db.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    assert not problems and after == before, (problems, before, after)


# --- 2. Click types other than StringParamType ---------------------------------------------------------

TYPED = {
    "tokens create --role (Choice)": ["tokens", "create", "--name", "n", "--role", ODD],
    "archive verify --sse (Choice)": ["archive", "verify", "--target", "file:///nonexistent", "--sse", ODD],
    "count --prefix (multiple)": ["count", "--json", "--prefix", "ok", "--prefix", ODD],
    "track --exclude (multiple)": ["track", "public.t", "--exclude", ODD],
    "events --since (parsed text)": ["events", "--json", "--since", ODD],
    "pgaudit-install --schema": "INSTALL",
}


@pytest.mark.parametrize("case", list(TYPED))
def test_a_typed_parameter_that_is_not_utf8_is_refused_in_one_line(db, case):
    """Attack: parameters the mend's _text_is_utf8 leaves as they are or that reach the database
    another way: a Choice, an option given many times (multiple=True), a time parsed from text, and
    the pgaudit-install entry point, whose command is built apart from `pgaudit`'s group. A break: a
    traceback, or an exit other than 1 or 2."""
    args = TYPED[case]
    if args == "INSTALL":
        command = [
            sys.executable,
            "-c",
            "import sys; from pgaudit_py.cli import install_main; sys.argv[0] = 'pgaudit-install'; install_main()",
            "--schema",
            ODD,
        ]
    else:
        command = _cli(*args)
    code, out, err = _run([*command, "--dsn", _dsn(db.info)], _env(strict=True))
    problems = _one_line_failure(code, out, err)
    assert not problems, f"{case}: {problems}"


# --- 3. What the text output prints --------------------------------------------------------------------


def test_key_file_names_that_are_not_utf8_print_apart_and_after_the_key_is_written_no_traceback(tmp_path):
    """Attack: printable() now writes every byte of a file name that is not UTF-8 apart;
    `pgaudit secrets keygen FILE` and `pgaudit keygen --dir` echo the path without it, after the
    key is written and outside run_guarded. Two names differing only in a byte that is not UTF-8
    (0xff, 0xfe), under a UTF-8 locale (strict standard output). A break: a traceback (exit 1 with
    the key written), or the two names print alike (U+FFFD for each byte)."""
    base = os.fsencode(tmp_path)
    said, problems = [], []
    for name in (b"/k\xff.key", b"/k\xfe.key"):
        code, out, err = _run(_cli("secrets", "keygen", base + name), _env(strict=True))
        if code != 0 or "Traceback" in err:
            problems.append(f"secrets keygen: exit {code}, {err.strip().splitlines()[-1:]}")
        said.append(out.strip())
    if said[0] == said[1]:
        problems.append(f"two files print alike: {said}")
    os.makedirs(base + b"/d\xff")
    code, out, err = _run(_cli("keygen", "--dir", base + b"/d\xff"), _env(strict=True))
    if code != 0 or "Traceback" in err or "\ufffd" in out:
        problems.append(f"keygen --dir: exit {code}, {out.strip().splitlines()[:1]} {err.strip().splitlines()[-1:]}")
    assert not problems, "\n".join(problems)


def test_a_key_file_name_never_forges_a_line(tmp_path):
    """Attack: a file name holding a newline and then a line another command prints (`chain
    intact: ...`); `pgaudit secrets keygen` and `pgaudit keygen --dir` echo it raw, where
    printable() would write the newline as \\n. A break: the command's output is more lines than it
    writes for a plain name (one for secrets keygen, three for keygen)."""
    base = os.fsencode(tmp_path)
    forged = b"\nchain intact: 0 blocks"
    problems = []
    code, out, err = _run(_cli("secrets", "keygen", base + b"/k" + forged), _env(strict=False))
    if len(out.strip().splitlines()) != 1:
        problems.append(f"secrets keygen: {out.strip().splitlines()}")
    os.makedirs(base + b"/d" + forged)
    code, out, err = _run(_cli("keygen", "--dir", base + b"/d" + forged), _env(strict=False))
    if len(out.strip().splitlines()) != 3:
        problems.append(f"keygen --dir: {out.strip().splitlines()}")
    assert not problems, "\n".join(problems)


def _record(db, **fields: str | None) -> None:
    db.execute(
        "SELECT audit.record(kind => 'odd.print', actor_type => %(actor_type)s, actor_id => %(actor_id)s,"
        " target_type => %(target_type)s, target_id => %(target_id)s, tenant_id => %(tenant_id)s)",
        fields,
    )


def test_two_events_never_print_alike_in_the_events_table(db):
    """Attack: `pgaudit events` prints an actor as type:id and a target as type:id, or the id
    alone when there is no type; a ':' in a type or an id, or a target id spelled like a typed
    target, makes two different events print the same cells (printable keeps each text apart, the
    joining does not). Pairs: target (order, 1) and target id 'order:1' with no type; actor
    (svc:a, b) and (svc, a:b); no actor and the actor None:None. A break: two events of a pair print
    the same line (but for seq and time)."""
    pairs = [
        (dict(target_type="order", target_id="1"), dict(target_type=None, target_id="order:1")),
        (dict(actor_type="svc:a", actor_id="b"), dict(actor_type="svc", actor_id="a:b")),
        (dict(actor_type=None, actor_id=None), dict(actor_type="None", actor_id="None")),
    ]
    base = dict(actor_type="app", actor_id="x", target_type=None, target_id=None, tenant_id=None)
    for first, second in pairs:
        _record(db, **{**base, **first})
        _record(db, **{**base, **second})
    code, out, err = _run(_cli("events", "--kind-prefix", "odd.", "--dsn", _dsn(db.info)), _env(strict=True))
    assert code == 0, err[-300:]
    rows = [" ".join(line.split()[3:]) for line in out.strip().splitlines()[2:]]  # past "pending N" and time
    assert len(rows) == 6, out
    rows.reverse()  # newest first
    alike = [(rows[i], rows[i + 1]) for i in range(0, 6, 2) if rows[i] == rows[i + 1]]
    assert not alike, f"two events print alike: {alike}"
