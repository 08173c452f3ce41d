"""A hundred-and-sixteenth attacker's trial: new variants of trial 114's mended classes.

Classes (test names carry the letter):
  K. key files of every kind the package reads, of the wrong kind or no file at all: one line,
     exit 1 or 2, no traceback, none of the key's bytes in the output.
  U. archive target URLs holding credentials in other spellings than user:password@.
  I. installs refused midway in other ways: nothing left behind, a later install still works.
  L. long-running commands by roles that pass a first check but lack a later right.
  H. the HTTP API's answers and serve's log lines when requests carry secrets.

Each test asserts the secure outcome the docs state, so it FAILS when the attack works. Objects and
roles made here are prefixed t116_.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import traceback
from contextlib import suppress
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from trial_helpers import drop_made_under

from pgaudit_py import record, seal
from pgaudit_py.cli import cli, install_standalone

ROOT = Path(__file__).parent.parent
SECRET = "Zq7t116Vx"  # short: the long-piece scrubbing does not hide it


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def invoke(root, args, env=None, input=None):
    result = CliRunner().invoke(root, list(args), env=env, input=input, catch_exceptions=True)
    shown = result.output + "\n" + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        shown += "\n" + "".join(traceback.format_exception(result.exception)) + repr(result.exception.args)
        shown += "\nTraceback"
    return result.exit_code, shown, result


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def run_cli(args, env=None, timeout=25, module="pgaudit_py.cli"):
    """(exit code or 'timeout', stdout, stderr) of `python -m pgaudit_py.cli ARGS`, at most 1 GiB of memory."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, "-m", module, *args] if module else [sys.executable, *args]
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", preexec_fn=_limit_memory, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        return "timeout", out, err


def dsn_for(db, role=None, dbname=None):
    i = db.info
    return f"host={i.host} port={i.port} dbname={dbname or i.dbname} user={role or i.user}"


# K. Key files.

def markers_of(data: bytes) -> list[str]:
    """Pieces of a key file's bytes as an error could show them: raw text, hex, repr escapes, base64."""
    out = []
    text = data.decode("latin-1")
    body = "".join(ln for ln in text.splitlines() if ln and not ln.startswith("-----"))
    if re.fullmatch(r"[A-Za-z0-9+/=\s]+", body or "!"):  # PEM or base64: slices of the body
        out += [body[i:i + 12] for i in range(0, max(len(body) - 12, 1), 7) if len(body[i:i + 12]) == 12]
    else:
        raw = data[:4096]
        for i in range(0, max(len(raw) - 3, 1), 1):
            w = raw[i:i + 3]
            if len(w) < 3 or w in (b"\0\0\0",):
                continue
            out.append(w.hex())
            out.append("".join(f"\\x{b:02x}" for b in w))
            out.append(" ".join(f"0x{b:02x}" for b in w))
        for i in range(0, max(len(raw) - 6, 1), 5):
            out.append(base64.b64encode(raw[i:i + 6]).decode())
        printable = re.findall(rb"[A-Za-z0-9]{8,}", raw)
        out += [p.decode()[:12] for p in printable]
    return [m for m in out if len(m) >= 6]


def echoed(data: bytes, shown: str) -> list[str]:
    low = shown.lower()
    return [m for m in markers_of(data) if m.lower() in low][:5]


@pytest.fixture(scope="module")
def keyzoo(tmp_path_factory):
    """name -> path of a file that is no key of the kind asked, or no key at all."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    from pgaudit_py.checkpoint import generate_keys
    from pgaudit_py.secrets import generate_master_key

    d = tmp_path_factory.mktemp("t116k")
    generate_keys(d / "good")
    generate_master_key(d / "master.key")
    ed = Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    files = {
        "rsa_pkcs1": rsa_key.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()),
        "rsa_public_pkcs1": rsa_key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.PKCS1),
        "openssh_private": ed.private_bytes(s.Encoding.PEM, s.PrivateFormat.OpenSSH, s.NoEncryption()),
        "openssh_public": ed.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH),
        "der_private": ed.private_bytes(s.Encoding.DER, s.PrivateFormat.PKCS8, s.NoEncryption()),
        "der_public": ed.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo),
        "x25519_private": x25519.X25519PrivateKey.generate().private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8,
                                                                          s.NoEncryption()),
        "ec_private": ec.generate_private_key(ec.SECP256R1()).private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8,
                                                                           s.NoEncryption()),
        "raw_ed25519": ed.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption()),
        "invalid_utf8": bytes([0xdd, 0xa7, 0xfe, 0x81]) + os.urandom(40),
        "nuls": b"\0" * 8 + os.urandom(24) + b"\0" * 8,
        "master_key": (d / "master.key").read_bytes(),
        "hmac_key": (d / "good" / "checkpoint-hmac.key").read_bytes(),
        "private_pem": (d / "good" / "checkpoint-ed25519.pem").read_bytes(),
        "public_pem": (d / "good" / "checkpoint-ed25519.pub.pem").read_bytes(),
    }
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t116")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ed.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(ed, None))
    files["certificate"] = cert.public_bytes(s.Encoding.PEM)
    paths = {}
    for k, v in files.items():
        p = d / k
        p.write_bytes(v)
        paths[k] = p
    (d / "a_directory").mkdir()
    paths["directory"] = d / "a_directory"
    fifo = d / "fifo"
    os.mkfifo(fifo)
    paths["fifo"] = fifo
    paths["dev_zero"] = Path("/dev/zero")
    (d / "environ").symlink_to("/proc/self/environ")
    paths["environ"] = d / "environ"
    huge = d / "huge"
    with huge.open("wb") as f:
        f.truncate(300 << 20)  # sparse, 300 MiB
        f.seek(0)
        f.write(b"-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(os.urandom(60)) + b"\n")
    paths["huge"] = huge
    paths["good_dir"] = d / "good"
    return paths


ENV_SECRET = "T116EnvSecretValue"
WRONG_FOR_SIGNING = ["rsa_pkcs1", "openssh_private", "der_private", "x25519_private", "ec_private", "raw_ed25519",
                     "certificate", "public_pem", "hmac_key", "master_key", "invalid_utf8", "nuls", "directory",
                     "fifo", "dev_zero", "environ", "huge"]
WRONG_FOR_PUBLIC = ["rsa_public_pkcs1", "openssh_public", "der_public", "x25519_private", "private_pem",
                    "certificate", "hmac_key", "master_key", "invalid_utf8", "nuls", "directory", "fifo", "dev_zero",
                    "environ", "huge"]
WRONG_FOR_HMAC = ["directory", "fifo", "dev_zero"]
WRONG_FOR_CHECKPOINT = ["hmac_key", "master_key", "private_pem", "invalid_utf8", "nuls", "directory", "fifo",
                        "dev_zero", "environ", "huge", "raw_ed25519"]
WRONG_FOR_MASTER = ["hmac_key", "private_pem", "invalid_utf8", "nuls", "fifo", "dev_zero", "environ", "huge",
                    "raw_ed25519", "directory"]


def judge_key_run(kind, path, code, out, err):
    problems = []
    shown = out + err
    if code not in (1, 2):
        problems.append(f"exit {code}")
    if "Traceback" in shown:
        problems.append("traceback")
    errs = lines_of(err)
    if len(errs) != 1 or not errs[0].startswith("pgaudit: "):
        problems.append(f"stderr {err[-300:]!r}")
    data = b""
    if kind not in ("fifo", "dev_zero", "directory", "environ", "huge"):
        data = path.read_bytes()
    elif kind == "huge":
        data = path.open("rb").read(200)
    found = echoed(data, shown) if data else []
    if ENV_SECRET.lower() in shown.lower():
        found.append("environ")
    if found:
        problems.append(f"echoed {found}")
    return problems


@pytest.mark.parametrize("slot", ["signing", "public", "hmac", "checkpoint", "master"])
def test_K_a_key_file_of_the_wrong_kind_is_refused_in_one_line_repeating_none_of_it(db, keyzoo, slot, tmp_path):
    record(db, "t116.k")
    seal(db)
    good = keyzoo["good_dir"]
    reader = dsn_for(db, "app_reader")
    cp = tmp_path / "good-cp.json"
    done = invoke(cli, ["checkpoint", "--dsn", reader, "--signing-key", str(good / "checkpoint-ed25519.pem"),
                        "--out", str(cp)])
    assert done[0] == 0, done[1]
    kinds = {"signing": WRONG_FOR_SIGNING, "public": WRONG_FOR_PUBLIC, "hmac": WRONG_FOR_HMAC,
             "checkpoint": WRONG_FOR_CHECKPOINT, "master": WRONG_FOR_MASTER}[slot]
    wrong = []
    for kind in kinds:
        p = keyzoo[kind]
        runs = []
        if slot == "signing":
            runs.append(["checkpoint", "--dsn", reader, "--signing-key", str(p), "--out", str(tmp_path / f"o-{kind}")])
            runs.append(["archive", "run", "--dsn", dsn_for(db, "app_maintainer"), "--target",
                         f"file://{tmp_path}/arch-{kind}", "--signing-key", str(p)])
        elif slot == "public":
            runs.append(["verify", "--dsn", reader, "--checkpoint", str(cp), "--public-key", str(p)])
            runs.append(["archive", "verify", "--dsn", reader, "--target", f"file://{tmp_path}/none",
                         "--public-key", str(p)])
        elif slot == "hmac":
            runs.append(["checkpoint", "--dsn", reader, "--hmac-key-file", str(p), "--out", str(tmp_path / f"h-{kind}")])
            runs.append(["verify", "--dsn", reader, "--checkpoint", str(cp), "--hmac-key-file", str(p)])
        elif slot == "checkpoint":
            runs.append(["verify", "--dsn", reader, "--checkpoint", str(p), "--public-key",
                         str(good / "checkpoint-ed25519.pub.pem")])
        else:
            runs.append(["secrets", "get", "--dsn", dsn_for(db, "app_secrets"), "--tenant", "t", "t116.k",
                         "--master-key-file", str(p)])
        for args in runs:
            code, out, err = run_cli(args, env={"T116_ENV": ENV_SECRET}, timeout=20)
            problems = judge_key_run(kind, p, code, out, err)
            if problems:
                wrong.append((kind, " ".join(args[:2]), [str(x)[:160] for x in problems]))
    assert not wrong, wrong
    assert not list(tmp_path.glob("o-*")) and not list(tmp_path.glob("h-*"))


def test_K_the_offline_verifier_with_files_of_the_wrong_kind(db, keyzoo, tmp_path):
    """`pgaudit archive verifier` as an auditor runs it: PROBLEM lines and exit 1, no traceback, no key bytes."""
    code, shown, r = invoke(cli, ["archive", "verifier"])
    assert code == 0
    script = tmp_path / "verify_archive.py"
    script.write_text(r.stdout)
    archive = tmp_path / "arch"
    archive.mkdir()
    good = keyzoo["good_dir"]
    wrong = []
    for kind in WRONG_FOR_PUBLIC:
        code, out, err = run_cli([str(script), str(archive), "--public-key", str(keyzoo[kind])], module=None,
                                 env={"T116_ENV": ENV_SECRET}, timeout=20)
        data = keyzoo[kind].read_bytes() if kind not in ("fifo", "dev_zero", "directory", "environ", "huge") else b""
        if code != 1 or "Traceback" in out + err or (data and echoed(data, out + err)) or ENV_SECRET in out + err:
            wrong.append(("public", kind, code, (out + err)[-300:]))
    for kind in WRONG_FOR_CHECKPOINT:
        code, out, err = run_cli([str(script), str(archive), "--public-key", str(good / "checkpoint-ed25519.pub.pem"),
                                  "--checkpoint", str(keyzoo[kind])], module=None, env={"T116_ENV": ENV_SECRET},
                                 timeout=20)
        data = keyzoo[kind].read_bytes() if kind not in ("fifo", "dev_zero", "directory", "environ", "huge") else b""
        if code != 1 or "Traceback" in out + err or (data and echoed(data, out + err)) or ENV_SECRET in out + err:
            wrong.append(("checkpoint", kind, code, (out + err)[-300:]))
    # pgaudit archive verify --offline, the same verifier inside the command.
    for kind in ("invalid_utf8", "hmac_key", "fifo"):
        code, out, err = run_cli(["archive", "verify", "--offline", "--target", f"file://{archive}", "--public-key",
                                  str(good / "checkpoint-ed25519.pub.pem"), "--checkpoint", str(keyzoo[kind])],
                                 timeout=20)
        data = keyzoo[kind].read_bytes() if kind != "fifo" else b""
        if code not in (1, 2) or "Traceback" in out + err or (data and echoed(data, out + err)):
            wrong.append(("offline", kind, code, (out + err)[-300:]))
    assert not wrong, wrong


@pytest.mark.parametrize("kind", ["hmac_key", "invalid_utf8", "nuls", "fifo", "directory", "environ", "private_pem"])
def test_K_a_server_key_file_of_the_wrong_kind_is_refused_repeating_none_of_it(db, keyzoo, kind, request):
    """secrets init --server-key-file: the server reads the file; its refusal names the path only
    (docs/secrets.md: only a key file's absolute path is named)."""
    from pgaudit_py.installer import install
    install(db, server_keys=True)
    # The owner role is the cluster's: its right to read server files would outlive this test.
    request.addfinalizer(lambda: db.execute("REVOKE pg_read_server_files FROM audit_owner"))
    path = keyzoo[kind]
    if kind == "environ":
        path = Path("/proc/self/environ")  # the server backend's own environment
    code, out, err = run_cli(["secrets", "init", "--dsn", dsn_for(db), "--server-key-file", str(path)], timeout=20)
    if code == "timeout":
        db.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%add_master_key%'"
                   " AND pid <> pg_backend_pid()")
    problems = []
    if code not in (1, 2):
        problems.append(f"exit {code}")
    if "Traceback" in out + err:
        problems.append("traceback")
    errs = lines_of(err)
    if len(errs) != 1 or not errs[0].startswith("pgaudit: "):
        problems.append(f"stderr {err[-300:]!r}")
    if kind not in ("fifo", "directory", "environ"):
        found = echoed(path.read_bytes(), out + err)
        # PostgreSQL's "invalid byte sequence" names bytes as 0xdd 0xa7: one or two bytes of the key.
        found += [m for m in re.findall(r"0x[0-9a-f]{2}(?: 0x[0-9a-f]{2})*", out + err)
                  if all(int(b, 16) in path.read_bytes() for b in m.split()) and m != "0x00"]
        if found:
            problems.append(f"echoed {found}")
    assert db.execute("SELECT count(*) FROM audit.master_keys").fetchone() == (0,)
    assert not problems, (problems, (out + err)[-400:])


# U. Archive target URLs.

AWS_ENV = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "t116", "AWS_SECRET_ACCESS_KEY": "t116",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard",
           "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "0", "AWS_EC2_METADATA_DISABLED": "true"}


def urls(tmp: Path) -> dict[str, str]:
    return {
        "empty_password": f"s3://AKIA{SECRET}:@bucket/p",
        "user_only": f"file://{SECRET}@/{tmp}/u1",
        "pct40_host": f"s3://AKIA%3A{SECRET}%40bucket/p",
        "query_aws_secret": f"s3://t116-bucket/p?aws_secret_access_key={SECRET}",
        "query_amz_credential": f"s3://t116-bucket/p?X-Amz-Credential=AKIA%2F{SECRET}",
        "file_query": f"file://{tmp}/u2?password={SECRET}",
        "file_fragment": f"file://{tmp}/u3#{SECRET}",
        "upper_scheme": f"S3://AKIA:{SECRET}@bucket/p",
        "upper_file": f"FILE://t116:{SECRET}@/{tmp}/u4",
        "backslashes": f"s3:\\\\AKIA:{SECRET}@bucket\\p",
        "single_slash": f"s3:/AKIA:{SECRET}@bucket/p",
        "leading_space": f"  s3://AKIA:{SECRET}@bucket/p",
        "trailing_space": f"s3://AKIA:{SECRET}@bucket/p  ",
        "ipv6_open": f"s3://[AKIA:{SECRET}@bucket/p",
        "ipv6_close": f"s3://AKIA:{SECRET}@bucket]/p",
        "unknown_scheme_query": f"ftp://host/x?password={SECRET}",
        "file_host_query": f"file://otherhost/x?token={SECRET}",
        "s3_no_bucket_query": f"s3:///p?aws_secret_access_key={SECRET}",
    }


def stored_text(db) -> str:
    parts = []
    for t in ("archive_batches", "archive_settings"):
        if db.execute("SELECT to_regclass(%s)", (f"audit.{t}",)).fetchone()[0] is not None:
            parts.append(db.execute(f"SELECT coalesce(string_agg(x::text, '|'), '') FROM audit.{t} x").fetchone()[0])
    parts.append(db.execute("SELECT coalesce(string_agg(e::text, '|'), '') FROM audit.events e").fetchone()[0])
    return "\n".join(parts)


@pytest.mark.parametrize("case", list(urls(Path("/x"))))
def test_U_credentials_in_an_archive_url_are_never_repeated_or_stored(db, keyzoo, tmp_path, case):
    url = urls(tmp_path)[case]
    good = keyzoo["good_dir"]
    record(db, "t116.u")
    seal(db)
    time.sleep(1.2)
    maint = dsn_for(db, "app_maintainer")
    said = []
    for args in (["archive", "run", "--older-than", "1s", "--signing-key", str(good / "checkpoint-ed25519.pem")],
                 ["archive", "verify", "--public-key", str(good / "checkpoint-ed25519.pub.pem")],
                 ["archive", "restore", "--batch", "1"]):
        for via_env in (False, True):
            full = [*args, "--dsn", maint] + ([] if via_env else ["--target", url])
            env = {**AWS_ENV, **({"PGAUDIT_ARCHIVE_URL": url} if via_env else {})}
            code, shown, _ = invoke(cli, full, env=env)
            said.append((args[:2], via_env, code, shown))
    stored = stored_text(db)
    leaks = [(a, e, c, s.strip()[-300:]) for a, e, c, s in said if SECRET.lower() in s.lower()]
    tracebacks = [(a, e, c, s.strip()[-300:]) for a, e, c, s in said if "Traceback" in s]
    in_db = [ln[max(0, ln.find(SECRET) - 150):ln.find(SECRET) + 20] for ln in stored.split("|") if SECRET in ln][:2]
    assert not tracebacks and not leaks and not in_db, {"tracebacks": tracebacks[:2], "output": leaks[:2], "stored": in_db}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(args, env=None):
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "serve", "--port", str(port), *args],
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        with suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code in (200, 503):
                break
        time.sleep(0.3)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc, timeout=20):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    return proc.returncode, out, err


@pytest.mark.parametrize("case", ["query_aws_secret", "file_query", "file_fragment", "pct40_host", "upper_scheme",
                                  "ipv6_open", "unknown_scheme_query", "user_only"])
def test_U_serve_and_worker_with_credentials_in_the_archive_url(db, keyzoo, make_token, tmp_path, case):
    url = urls(tmp_path)[case]
    good = keyzoo["good_dir"]
    record(db, "t116.u")
    seal(db)
    maint = dsn_for(db, "app_maintainer")
    token = make_token("maintainer", name="t116_m")
    shown = []
    proc, base = start_serve(["--dsn", maint, "--archive-target", url, "--signing-key",
                              str(good / "checkpoint-ed25519.pem")], env=AWS_ENV)
    bodies = ""
    if proc.poll() is None:
        with suppress(httpx.HTTPError):
            r = httpx.post(f"{base}/v1/audit/archive/run", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            bodies += f"{r.status_code} {r.text}"
    code, out, err = stop(proc)
    shown.append(("serve", code, bodies + out + err))
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "worker", "--interval", "0.2", "--dsn", maint,
                             "--archive-target", url, "--signing-key", str(good / "checkpoint-ed25519.pem")],
                            env={**os.environ, "PYTHONPATH": str(ROOT), **AWS_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    time.sleep(4)
    code, out, err = stop(proc)
    shown.append(("worker", code, out + err))
    stored = stored_text(db)
    assert not [(w, c, s[-400:]) for w, c, s in shown if SECRET.lower() in s.lower()]
    assert not [(w, c, s[-800:]) for w, c, s in shown if "Traceback" in s]
    assert SECRET not in stored


# H. The HTTP API with secrets in requests.

def test_H_secrets_in_requests_are_not_echoed_by_answers_or_log_lines(db, make_token):
    token = make_token("reader", name="t116_r")
    proc, base = start_serve(["--dsn", dsn_for(db, "app_reader"), "--trusted-proxy", "127.0.0.1"])
    assert proc.poll() is None, proc.communicate()
    secret_tok = token[:-6] + SECRET[:6]
    said = []
    try:
        requests = [
            ("GET", "/v1/audit", {"Authorization": f"Bearer {SECRET}garbage{'x' * 5}"}),
            ("GET", "/v1/audit", {"Authorization": f"Bearer {secret_tok}"}),
            ("GET", "/v1/audit", {"Authorization": f"Basic {base64.b64encode(f'u:{SECRET}'.encode()).decode()}"}),
            ("GET", "/v1/audit", {"Authorization": f"{SECRET}"}),
            ("GET", "/v1/audit", {"Authorization": f"Bearer {token} {SECRET}"}),
            ("GET", f"/v1/audit?token={SECRET}", {}),
            ("GET", f"/v1/audit?access_token={SECRET}&limit=1", {"Authorization": f"Bearer {token}"}),
            ("GET", f"/v1/audit?limit={SECRET}", {"Authorization": f"Bearer {token}"}),
            ("GET", f"/v1/audit?kind_prefix=x&password={SECRET}", {"Authorization": f"Bearer {token}"}),
            ("GET", f"/v1/audit/stream?token={SECRET}", {}),
            ("GET", "/v1/audit", {"Authorization": f"Bearer {token}", "X-Forwarded-For": f"{SECRET}, 10.0.0.1"}),
            ("GET", "/v1/audit", {"Authorization": f"Bearer {token}", "X-Forwarded-For": f"u:{SECRET}@1.2.3.4"}),
            ("GET", "/v1/audit", {"Authorization": f"Bearer {SECRET}" + "A" * 20000}),
            ("GET", "/v1/audit", {"Authorization": f"Bearer {token}", "X-T116": SECRET * 3000}),
            ("GET", f"/v1/{SECRET}", {"Authorization": f"Bearer {token}"}),
            ("POST", "/v1/audit/archive/run", {"Authorization": f"Bearer {token}", "X-Api-Key": SECRET}),
            ("GET", f"/v1/audit/events/{SECRET}", {"Authorization": f"Bearer {token}"}),
        ]
        for method, path, headers in requests:
            try:
                r = httpx.request(method, base + path, headers=headers, timeout=15)
                said.append((path[:40], r.status_code, r.text + str(dict(r.headers))))
            except httpx.HTTPError as e:
                said.append((path[:40], "error", str(e)))
    finally:
        code, out, err = stop(proc)
    leaks = [(p, c, t[:300]) for p, c, t in said if SECRET.lower() in t.lower()]
    log_leaks = [ln for ln in (out + err).splitlines() if SECRET.lower() in ln.lower()]
    assert "Traceback" not in err, err[-1500:]
    assert not leaks, leaks
    assert not log_leaks, log_leaks[:5]
    stored = db.execute("SELECT coalesce(string_agg(e::text, '|'), '') FROM audit.events e").fetchone()[0]
    assert SECRET not in stored


# I. Installs refused midway.

def roles_and_members(db):
    roles = db.execute("SELECT array_agg(rolname::text ORDER BY rolname) FROM pg_roles").fetchone()[0]
    members = db.execute("SELECT array_agg(roleid::regrole::text || '>' || member::regrole::text ORDER BY 1)"
                         " FROM pg_auth_members").fetchone()[0]
    spaces = db.execute("SELECT array_agg(nspname::text ORDER BY 1) FROM pg_namespace").fetchone()[0]
    return roles, members, spaces


def test_I_an_install_waiting_for_the_lock_leaves_nothing(db, monkeypatch):
    from pgaudit_py import installer
    monkeypatch.setattr(installer, "_INSTALL_LOCK_WAIT", 2.0)
    i = db.info
    holder = psycopg.connect(host=i.host, port=i.port, user=i.user, dbname=i.dbname, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (installer._INSTALL_LOCK,))
        before = roles_and_members(db)
        t0 = time.monotonic()
        code, shown, r = invoke(install_standalone, ["--dsn", dsn_for(db), "--schema", "t116_lk"])
        took = time.monotonic() - t0
        after = roles_and_members(db)
        assert code in (1, 2) and "Traceback" not in shown, (code, shown[-500:])
        assert len(lines_of(r.stderr)) == 1 and r.stderr.startswith("pgaudit: "), r.stderr
        assert took < 30, took
        assert after == before, [set(a or []) ^ set(b or []) for a, b in zip(after, before, strict=False)]
        holder.execute("SELECT pg_advisory_unlock_all()")
        code, shown, r = invoke(install_standalone, ["--dsn", dsn_for(db), "--schema", "t116_lk"])
        assert code == 0, shown[-500:]
    finally:
        holder.close()
        drop_made_under(db, "t116_")


@pytest.mark.parametrize("collide", ["schema_by_other", "role_named_owner", "role_named_capture_login",
                                     "default_privileges", "pgcrypto_by_non_superuser"])
def test_I_an_install_refused_by_what_another_role_made_leaves_nothing(db, fresh_database, collide):
    i = db.info
    conn = fresh_database("t116_dbi")
    db.execute("CREATE ROLE t116_other LOGIN CREATEROLE")
    db.execute("GRANT CREATE ON DATABASE t116_dbi TO t116_other")
    other = psycopg.connect(host=i.host, port=i.port, user="t116_other", dbname="t116_dbi", autocommit=True)
    try:
        if collide == "schema_by_other":
            other.execute("CREATE SCHEMA t116_s")
        elif collide == "role_named_owner":
            other.execute("CREATE ROLE t116_s_owner LOGIN")
        elif collide == "role_named_capture_login":
            other.execute("CREATE ROLE t116_s_capture LOGIN")
        elif collide == "default_privileges":
            conn.execute("CREATE ROLE t116_s_writer NOLOGIN")
            conn.execute("ALTER DEFAULT PRIVILEGES FOR ROLE t116_s_writer GRANT SELECT ON TABLES TO t116_other")
        else:
            db.execute("ALTER ROLE t116_other SUPERUSER")
            other.execute("CREATE SCHEMA t116_ext")
            other.execute("CREATE EXTENSION pgcrypto SCHEMA t116_ext")
            db.execute("ALTER ROLE t116_other NOSUPERUSER")
        before = roles_and_members(conn)
        code, shown, r = invoke(install_standalone, ["--dsn", dsn_for(db, dbname="t116_dbi"), "--schema", "t116_s"])
        after = roles_and_members(conn)
        member_of_other = conn.execute(
            "SELECT array_agg(roleid::regrole::text || '>' || member::regrole::text) FROM pg_auth_members"
            " WHERE member::regrole::text LIKE 't116_other' OR roleid::regrole::text LIKE 't116_other'"
            " OR member::regrole::text LIKE 't116_s_%' AND roleid::regrole::text NOT LIKE 't116_s_%'"
            " AND NOT (member::regrole::text = 't116_s_sealer' AND roleid::regrole::text = 'pg_read_all_stats')"
            ).fetchone()[0]
        assert "Traceback" not in shown, shown[-800:]
        if code != 0:
            assert len(lines_of(r.stderr)) == 1 and r.stderr.startswith("pgaudit: "), r.stderr
            assert after == before, [sorted(set(a or []) ^ set(b or [])) for a, b in zip(after, before, strict=False)]
        else:
            # Taken: a package role the other made that can log in is at least named (status's rules).
            other_rights = conn.execute(
                "SELECT array_agg(r.rolname::text) FROM pg_roles r WHERE r.rolname IN ('t116_s_owner','t116_s_capture',"
                "'t116_s_writer') AND r.rolcanlogin").fetchone()[0] or []
            assert all(f"role {n} can log in" in r.stderr for n in other_rights), (other_rights, r.stderr[-500:])
            assert not member_of_other, member_of_other
    finally:
        other.close()
        conn.close()
        db.execute("DROP DATABASE IF EXISTS t116_dbi WITH (FORCE)")
        drop_made_under(db, "t116_")


# L. Long-running commands whose role lacks a later right.

def watch(args, seconds=10, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", *args], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=seconds)
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        code, out, err = stop(proc)
        return code, out, err, True


@pytest.mark.parametrize("args", [["worker", "--interval", "0.2"], ["seal", "--follow", "--interval", "0.2"],
                                  ["events", "--follow"], ["serve"]])
def test_L_a_role_granted_seal_state_alone_is_refused_in_one_line(db, connect, args):
    db.execute("CREATE ROLE t116_half LOGIN")
    try:
        db.execute("GRANT USAGE ON SCHEMA audit TO t116_half; GRANT SELECT ON audit.seal_state TO t116_half")
        record(connect("app_writer"), "t116.pending")
        answers = []
        if args == ["serve"]:
            from pgaudit_py.tokens import create_token
            token = create_token(connect("app_maintainer"), "t116_h", "reader").token
            proc, base = start_serve(["--dsn", dsn_for(db, "t116_half")])
            ran_on = proc.poll() is None
            if ran_on:
                for path in ("/v1/audit", "/healthz"):
                    with suppress(httpx.HTTPError):
                        r = httpx.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=40)
                        answers.append((path, r.status_code, r.text[:120]))
                time.sleep(3)
            code, out, err = stop(proc)
        else:
            code, out, err, ran_on = watch([*args, "--dsn", dsn_for(db, "t116_half")], seconds=12)
        if answers:
            err = err + "\n" + repr(answers)
        assert "Traceback" not in err, err[-800:]
        assert not ran_on, (args, code, err[:600])
        assert code in (1, 2), (code, err[-500:])
        errs = lines_of(err)
        assert errs and errs[-1].startswith("pgaudit: "), err[-500:]
    finally:
        drop_made_under(db, "t116_")


def test_L_serve_whose_reader_membership_is_revoked_does_not_look_alive(db, make_token):
    db.execute("CREATE ROLE t116_srv LOGIN IN ROLE audit_reader")
    token = make_token("reader", name="t116_r2")
    proc, base = start_serve(["--dsn", dsn_for(db, "t116_srv")])
    try:
        assert proc.poll() is None, proc.communicate()
        ok = httpx.get(f"{base}/v1/audit", headers={"Authorization": f"Bearer {token}"}, timeout=15)
        assert ok.status_code == 200, ok.text
        db.execute("REVOKE audit_reader FROM t116_srv")
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 't116_srv'")
        time.sleep(1)
        answers = []
        for _ in range(3):
            with suppress(httpx.HTTPError):
                r = httpx.get(f"{base}/v1/audit", headers={"Authorization": f"Bearer {token}"}, timeout=40)
                answers.append((r.status_code, r.text[:200]))
        health = httpx.get(f"{base}/healthz", timeout=10)
    finally:
        code, out, err = stop(proc)
        drop_made_under(db, "t116_")
    assert "Traceback" not in err, err[-1500:]
    assert all(a[0] != 200 for a in answers), answers
    # Healthy while nothing it serves can be read is a server that looks alive.
    assert health.status_code != 200 or "withheld" in err or "permission" in err.lower() or "may not" in err, \
        (health.status_code, health.text[:200], answers, err[-600:])


def test_L_serve_with_connection_limit_one(db, make_token):
    db.execute("CREATE ROLE t116_one LOGIN CONNECTION LIMIT 1 IN ROLE audit_reader")
    token = make_token("reader", name="t116_r3")
    proc, base = start_serve(["--dsn", dsn_for(db, "t116_one"), "--pool-size", "4"])
    try:
        alive = proc.poll() is None
        answers = []
        if alive:
            for _ in range(3):
                with suppress(httpx.HTTPError):
                    r = httpx.get(f"{base}/v1/audit", headers={"Authorization": f"Bearer {token}"}, timeout=40)
                    answers.append(r.status_code)
            with suppress(httpx.HTTPError):
                health = httpx.get(f"{base}/healthz", timeout=10)
                answers.append(("healthz", health.status_code, health.text[:80]))
    finally:
        code, out, err = stop(proc)
        drop_made_under(db, "t116_")
    assert "Traceback" not in err, err[-1500:]
    # Either refused at start in one line, or it serves: never up while it answers nothing.
    if not alive:
        assert code in (1, 2) and lines_of(err)[-1].startswith("pgaudit: "), err[-600:]
    else:
        # Up while every request waits 30 s for a 503 and /healthz says ok is a server that looks alive.
        assert 200 in answers or answers[-1][1] != 200, (answers, err[-800:])
