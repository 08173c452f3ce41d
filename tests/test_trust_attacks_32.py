"""Trial 32: attacks on the read side and the auditor's kit (HTTP API tokens, the live stream, the
CLI's output, the offline verifier). Each test asserts the SAFE outcome: it passes when the product
holds and fails when the attack works."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgaudit_py import record, seal
from pgaudit_py.cli import cli
from pgaudit_py.tokens import revoke_token

ROOT = Path(__file__).resolve().parent.parent


def _dsn(db, role: str | None = None) -> str:
    i = db.info
    return f"host={i.host} port={i.port} dbname={i.dbname} user={role or i.user}"


def _tcp_wmem_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


# --- 1. the stream: a stalled reader and a revoked token ---------------------------------------------

def test_a_stalled_stream_reader_gets_no_page_read_before_its_token_was_revoked(db, connect, start_api, make_token):
    """Attack: a leaked reader token opens /v1/audit/stream?since_seq=0 over a backlog of large
    events and stops reading, so that the server is suspended mid-page inside its generator; the
    operator revokes the token; the attacker resumes reading later. docs/http.md: "the token is
    asked again before events go out (an answer at most 0.5 s old)". A break: after the revocation
    (and long after the last check) the stream still delivers the rest of the 500-event page it
    had read while the token was live, far more than the kernel's socket buffers could have held
    at the moment of revocation."""
    token = make_token("reader", name="stalled")
    blob = "x" * 40_000
    db.execute("SELECT audit.record(kind => 'bulk.event', target_id => i::text,"
               " payload => jsonb_build_object('blob', %s::text)) FROM generate_series(1, 520) i", (blob,))
    seal(db)
    api = start_api(poll_interval=0.2, heartbeat=60)
    host, port = api.url.removeprefix("http://").split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    try:
        s.connect((host, int(port)))
        s.sendall(f"GET /v1/audit/stream?since_seq=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  f"Connection: close\r\n\r\n".encode())
        s.settimeout(10)
        head = s.recv(4096)
        assert b" 200 " in head.split(b"\r\n", 1)[0], head[:200]
        time.sleep(2.0)  # the reader stalls: the server fills the socket and waits in its page
        revoke_token(connect("app_maintainer"), "stalled")
        time.sleep(1.5)  # well past the 0.5 s the answer may be old
        after = bytearray()
        s.settimeout(5)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(1 << 20)
            except TimeoutError:
                break
            if not chunk:
                break
            after += chunk
            if b"event: error" in after:
                break
    finally:
        s.close()
    delivered_events = after.count(b"event: audit")
    in_flight_bound = _tcp_wmem_max() + (1 << 20)  # the server's send buffer, ours, uvicorn's write buffer
    assert len(after) <= in_flight_bound, (
        f"{delivered_events} events ({len(after)} bytes) were delivered after the token was revoked; "
        f"the socket buffers could hold at most about {in_flight_bound} bytes then")


# --- 2. a revoked token keeps its exemption from the failure brake -----------------------------------

@pytest.mark.parametrize("ended_by", ["revoked", "expired"])
def test_a_token_that_stopped_authenticating_is_not_exempt_from_the_brake(db, connect, start_api, make_token,
                                                                          ended_by):
    """Attack: a token leaks and is revoked (or expires). Its holder keeps presenting it from one
    address: each request costs the database a lookup. docs/http.md: an address that presented
    10 unknown tokens within a minute gets 429 before the database is asked; the exemption is for
    "a token that has authenticated before", so that a dashboard behind a shared NAT is not locked
    out. A break: a token that no longer authenticates keeps that exemption forever, so its holder
    is never braked (every request one more query; the brake is moot for the leaked token)."""
    from datetime import datetime, timedelta, timezone

    expires = datetime.now(timezone.utc) + timedelta(seconds=2) if ended_by == "expired" else None
    token = make_token("reader", name="gone", expires_at=expires)
    api = start_api(failures_allowed=3)
    with api.client(token) as client:
        assert client.get("/v1/whoami").status_code == 200  # it authenticated once
        if ended_by == "revoked":
            revoke_token(connect("app_maintainer"), "gone")
        else:
            time.sleep(2.5)
        statuses = [client.get("/v1/whoami").status_code for _ in range(12)]
    assert set(statuses) <= {401, 429}, statuses
    assert 429 in statuses, f"12 requests with a {ended_by} token from one address, never braked: {statuses}"


# --- 3. a token in the path reaches the access log ---------------------------------------------------

def test_a_token_put_in_the_path_never_reaches_the_access_log(start_api, make_token, caplog):
    """Attack (on the operator's logs): a client puts its token in the URL path rather than the
    header (`curl $API/v1/audit/$TOKEN`, a misconfigured SIEM connector). The server refuses a
    token in a query parameter and keeps queries out of its log precisely because such mistakes
    happen; docs/security.md: "Tokens travel in the Authorization header alone and reach no log
    line". A break: the access log line holds the whole live token, for anyone who reads the logs."""
    token = make_token("reader", name="pathy")
    caplog.set_level(logging.INFO, logger="pgaudit_py.server.access")
    api = start_api()
    with api.client() as client:
        for path in (f"/v1/audit/{token}", f"/{token}", f"/v1/audit;token={token}"):
            assert client.get(path).status_code in (401, 404)
    time.sleep(0.3)
    lines = [r.getMessage() for r in caplog.records if r.name == "pgaudit_py.server.access"]
    assert lines, "no access log line at all"
    secret = token.rsplit("_", 1)[1]
    leaked = [line for line in lines if secret in line]
    assert not leaked, f"the token's secret is in the access log: {leaked[0][:160]}"


# --- 4. the CLI echoes the password of a malformed DSN -----------------------------------------------

PASSWORD = "Tr0ub4dor-s3cret"


@pytest.mark.parametrize("dsn", [
    f"postgresql://app_reader:{PASSWORD}%@127.0.0.1:5432/app",      # a '%' in the password, unencoded
    f"postgresql://app_reader:{PASSWORD}@[::1/app",                  # a typo in an IPv6 host
    f"postgresql://app_reader:{PASSWORD}@127.0.0.1:5432/app?x=1",    # an unknown parameter
])
@pytest.mark.parametrize("command", [["status"], ["tokens", "list"], ["serve", "--port", "0"], ["seal"]])
def test_a_malformed_dsn_is_refused_without_echoing_its_password(dsn, command):
    """Attack (on whatever keeps the CLI's output: CI logs, cron mail, a terminal recording): the
    operator gives a DSN with a small mistake. A break: the command's error message prints the
    DSN's password (libpq's parse error quotes the offending part of the URI, and run_guarded prints
    it verbatim)."""
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *command, "--dsn", dsn], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert PASSWORD not in out, f"exit {done.returncode}, the password is printed: {out.strip()[:300]}"


# --- 5. the standalone verifier given the wrong key --------------------------------------------------

def _keys(tmp_path: Path) -> dict[str, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    pem, spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ed = ed25519.Ed25519PrivateKey.generate()
    return {
        "the private key instead of the public one": write("private.pem", ed.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        "an Ed448 public key": write("ed448.pub.pem", ed448.Ed448PrivateKey.generate().public_key().public_bytes(pem, spki)),
        "an EC public key": write("ec.pub.pem", ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(pem, spki)),
        "an HMAC key file": write("hmac.key", b"0123456789abcdef0123456789abcdef\n"),
        "a missing file": tmp_path / "nowhere.pem",
    }


@pytest.mark.parametrize("case", ["the private key instead of the public one", "an Ed448 public key",
                                  "an EC public key", "an HMAC key file", "a missing file"])
def test_the_standalone_verifier_names_a_wrong_key_rather_than_crashing(tmp_path, case):
    """Attack (on the auditor's kit): the auditor is handed, or picks, the wrong key file: the
    signing key itself, another algorithm's key, the HMAC key file, a path that does not exist.
    docs/auditors.md: verify_archive.py exits 0 only when everything holds "and names each problem
    otherwise". A break: a Python traceback (an exception nobody caught) instead of a one-line
    named problem; the auditor, who need not trust pgaudit_py, is left reading its internals."""
    printed = CliRunner().invoke(cli, ["archive", "verifier"])
    assert printed.exit_code == 0
    verifier = tmp_path / "verify_archive.py"
    verifier.write_text(printed.output)
    archive = tmp_path / "archive"
    archive.mkdir()
    key = _keys(tmp_path)[case]
    done = subprocess.run([sys.executable, "-I", str(verifier), str(archive), "--public-key", str(key)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode not in (0,), done.stdout
    assert "Traceback" not in done.stderr, f"{case}: {done.stderr.strip().splitlines()[-1]}"


# --- 6. the operator page: one writer's event breaks the Health view for every operator -------------

def test_one_long_kind_recorded_by_a_writer_does_not_break_the_health_chart(db, start_api, make_token, page):
    """Attack: any role holding audit_writer records one event with a valid kind of 128 characters
    and no dot (the kind check allows 1 to 128). The page builds the Health chart's by_kind_prefix
    from the first segment of each shown event's kind plus ".", 129 characters, which the API
    refuses (a prefix is 1 to 128). A break: while that event is among the newest shown, every
    operator's Health view shows an error instead of the monthly chart."""
    from chromium import sign_in

    record(db, "order.paid", tenant_id="t1")
    record(db, "a" * 128)
    seal(db)
    api = start_api()
    sign_in(page, api, make_token("reader"))
    page.wait_for_selector("#events tbody tr")
    page.click("nav button[data-view=health]")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        error = page.text_content("#health-error") or ""
        chart = page.eval_on_selector("#chart", "c => c.querySelectorAll('svg rect').length")
        if error or chart:
            break
        time.sleep(0.2)
    assert not error, f"the Health view fails for every operator: {error!r}"
    assert chart, "no monthly chart was drawn"


# --- 7. hostile payloads: the API, both chain verifiers and the offline verifier agree --------------

HOSTILE_PAYLOADS = [
    '{"a": 1, "a": 2, "b": {"x": 1, "x": [1, 2]}}',                    # duplicate keys (jsonb keeps the last)
    '{"z": -0, "y": -0.0, "x": 0e-5, "w": 1E+2, "v": 1.5e-300}',        # zeros and exponents
    '{"big": 123456789012345678901234567890123456789, "neg": -9223372036854775809}',
    '{"u": "\\uffff\\u2028\\u0085\\ud83d\\ude00 e\\u0301 \\u00e9", "\\u2029k": "\\u001f\\u007f"}',
    '{"": "", " ": {"": []}, "\\"\\\\/": "\\/"}',
    '{"d": ' + '[' * 400 + '{"deep": 1e308}' + ']' * 400 + '}',
]


def test_hostile_payloads_read_alike_through_the_api_and_verify_everywhere(db, connect, start_api, make_token,
                                                                            tmp_path):
    """Attack: a writer stores payloads chosen to be read differently by different parsers
    (duplicate keys, -0, exponents, integers past 64 bits, U+2028/U+0085/surrogate pairs/combining
    marks, empty and quote keys, deep nesting). A break: the API hands a reader a payload other than
    the one PostgreSQL stores, the stream's line is not one JSON document, or the SQL verifier, the
    CLI's verifier, `archive verify` and the standalone offline verifier disagree on the chain."""
    from datetime import timedelta

    from pgaudit_py.archive import archive
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import generate_keys, load_keys

    for i, payload in enumerate(HOSTILE_PAYLOADS):
        db.execute("SELECT audit.record(kind => 'hostile.payload', target_id => %s, payload => %s::jsonb)",
                   (str(i), payload))
    seal(db)
    stored = {r[0]: r[1] for r in db.execute(
        "SELECT target_id, payload::text FROM audit.events WHERE kind = 'hostile.payload'").fetchall()}
    api = start_api()
    token = make_token("reader")
    with api.client(token) as client:
        answer = client.get("/v1/audit?kind_prefix=hostile.&limit=50")
        assert answer.status_code == 200
        events = json.loads(answer.text)["events"]
        with client.stream("GET", "/v1/audit/stream", params={"since_seq": "0", "kind_prefix": "hostile."}) as r:
            from api_server import sse_messages
            streamed = []
            for m in sse_messages(r):
                if m.event == "audit":
                    streamed.append(json.loads(m.data))
                if len(streamed) == len(HOSTILE_PAYLOADS):
                    break
    got = {e["target_id"]: json.dumps(e["payload"], ensure_ascii=False) for e in events}
    want = {k: json.dumps(json.loads(v), ensure_ascii=False) for k, v in stored.items()}
    assert got == want
    assert {e["target_id"]: json.dumps(e["payload"], ensure_ascii=False) for e in streamed} == want

    sql_ok = db.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    assert sql_ok[0] is True, sql_ok
    cli_verify = CliRunner().invoke(cli, ["verify", "--dsn", _dsn(db, "app_reader")])
    assert cli_verify.exit_code == 0, cli_verify.output

    keys_dir = tmp_path / "keys"
    generate_keys(keys_dir)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 10, 3)")
    time.sleep(0.05)
    url = f"file://{tmp_path / 'archive'}"
    done = archive(db, open_target(url), load_keys(signing_key=keys_dir / "checkpoint-ed25519.pem"),
                   older_than=timedelta(milliseconds=1))
    assert done.batches
    public = keys_dir / "checkpoint-ed25519.pub.pem"
    online = CliRunner().invoke(cli, ["archive", "verify", "--target", url, "--public-key", str(public),
                                      "--dsn", _dsn(db)])
    assert online.exit_code == 0, online.output
    printed = CliRunner().invoke(cli, ["archive", "verifier"])
    verifier = tmp_path / "verify_archive.py"
    verifier.write_text(printed.output)
    offline = subprocess.run([sys.executable, "-I", str(verifier), str(tmp_path / "archive"), "--public-key",
                              str(public)], capture_output=True, text=True, timeout=120)
    assert offline.returncode == 0, offline.stdout + offline.stderr[-500:]


# --- 8. the operator page's live view resumes from "now" when it shows no sealed event ---------------

def test_the_live_view_shows_events_sealed_while_it_was_reconnecting(db, start_api, make_token, page):
    """Attack (on what the operator sees): the live view has no sealed event on screen yet (a fresh
    install, or a filter nothing sealed matches so far; here only the pending event of the token's
    own creation). The stream is lost (a restart of `pgaudit serve` ends every stream; a proxy
    drops it); while the page waits its 2 s to reconnect, events are sealed. docs/http.md: the
    live view "reconnects from there every 2 s after a loss". A break: with no sealed event shown
    the page reconnects with no since_seq (the server then starts "from now"), so the events sealed
    during the gap never appear, and the pending event sealed in that gap stays "pending" on screen."""
    from chromium import sign_in, wait_rows

    def live_state(wanted: str) -> None:
        deadline = time.monotonic() + 15
        while (page.text_content("#live-state") or "") != wanted:
            assert time.monotonic() < deadline, f"the live view never said {wanted!r}"
            time.sleep(0.05)

    token = make_token("reader")  # its creation event stays pending: nothing sealed is shown
    api = start_api(poll_interval=0.2, heartbeat=60)
    notifier = api.app.state.api.notifier
    sign_in(page, api, token)
    live_state("live")
    notifier.closing = True  # as on SIGTERM: open streams end, clients reconnect later
    live_state("reconnecting")
    notifier.closing = False
    record(db, "gap.event", target_id="sealed-while-reconnecting")
    seal(db)
    live_state("live")
    time.sleep(0.5)
    record(db, "later.event", target_id="sealed-after-reconnecting")
    seal(db)
    shown = wait_rows(page, lambda r: any(row[4] == "later.event" for row in r))
    kinds = [row[4] for row in shown]
    assert "gap.event" in kinds, f"an event sealed during the reconnect never appeared live: {kinds}"
    assert not any(row[0] == "pending" for row in shown), f"a sealed event is still shown as pending: {shown}"


# --- 9. the auditor's verifier after an archiver crash the product says it survives ------------------

CRASHING_ARCHIVER = """
import os, signal, sys
from datetime import timedelta
from pathlib import Path
import psycopg
from pgaudit_py.archive import archive
from pgaudit_py.archive_targets import open_target
from pgaudit_py.checkpoint import load_keys

def killed(src, dst):  # kill -9 (or a power loss) after the object's temporary file is written, before its rename
    os.kill(os.getpid(), signal.SIGKILL)

os.replace = killed
dsn, url, key = sys.argv[1:4]
with psycopg.connect(dsn, autocommit=True) as conn:
    archive(conn, open_target(url), load_keys(signing_key=Path(key)), older_than=timedelta(milliseconds=1))
"""


def test_an_archive_completed_after_a_crashed_upload_verifies_offline_as_online(db, connect, tmp_path):
    """Attack (by circumstance, on the auditor's kit): `pgaudit archive run` is killed (kill -9,
    OOM, power loss) while it writes a batch's object to a file:// target: the object's temporary
    `.part-*` file stays. The next run completes the batch (docs/security.md: crashes at each step
    lose nothing and duplicate nothing), and the online `archive verify` passes, since the
    target's listing skips `.part-*` files. A break: the auditor's offline verifier (standalone
    and `--offline`) answers NOT VERIFIED for this intact archive, forever, naming a file the
    product itself left there; the two verifiers disagree on the same archive."""
    from datetime import timedelta

    from pgaudit_py.archive import archive
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import generate_keys, load_keys

    keys_dir = tmp_path / "keys"
    generate_keys(keys_dir)
    for r in range(3):
        db.execute("SELECT audit.record(kind => 'order.paid', target_id => %s || i) FROM generate_series(1, 4) i",
                   (f"r{r}-",))
        seal(db)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 10, 3)")
    time.sleep(0.05)
    url = f"file://{tmp_path / 'archive'}"
    signing = keys_dir / "checkpoint-ed25519.pem"
    crashed = subprocess.run([sys.executable, "-c", CRASHING_ARCHIVER, _dsn(db, "app_maintainer"), url, str(signing)],
                             capture_output=True, text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    assert crashed.returncode == -9, (crashed.returncode, crashed.stderr[-800:])
    left = sorted(p.name for p in (tmp_path / "archive").iterdir())
    done = archive(connect("app_maintainer"), open_target(url), load_keys(signing_key=signing),
                   older_than=timedelta(milliseconds=1))
    assert done.batches
    public = keys_dir / "checkpoint-ed25519.pub.pem"
    online = CliRunner().invoke(cli, ["archive", "verify", "--target", url, "--public-key", str(public),
                                      "--dsn", _dsn(db)])
    assert online.exit_code == 0, online.output
    printed = CliRunner().invoke(cli, ["archive", "verifier"])
    verifier = tmp_path / "verify_archive.py"
    verifier.write_text(printed.output)
    offline = subprocess.run([sys.executable, "-I", str(verifier), str(tmp_path / "archive"), "--public-key",
                              str(public)], capture_output=True, text=True, timeout=120)
    assert offline.returncode == 0, (f"left by the crash: {left}; the offline verifier says: "
                                     f"{offline.stdout.strip()[-400:]}")



# --- 10. a row handed from one tenant to another: each tenant's token sees the other's version -------

def test_a_row_moved_between_tenants_shows_neither_tenant_the_others_version(db, connect, attacker, start_api,
                                                                              make_token):
    """Attack (multi-tenant read side): a table tracked with tenant_column; a row belongs to tenant
    t2 and holds t2's private note; the application hands the row to tenant t1 (an ownership
    transfer), writing t1's own note in the same UPDATE. docs/http.md: a tenant token "reads that
    tenant's events, and only those"; docs/capture.md: the event's tenant is "that column of the
    row". A break: the one UPDATE event is filed under one of the two tenants and carries both row
    images, so that tenant's token reads the other tenant's version of the row (t1 reads t2's
    note in row_before, or t2 reads t1's note in row_after)."""
    from pgaudit_py.tracking import enable_tracking

    attacker.execute("CREATE TABLE public.cases (id int PRIMARY KEY, tenant text NOT NULL, note text)")
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    attacker.execute("INSERT INTO public.cases VALUES (1, 't2', 't2-private-diagnosis')")
    attacker.execute("UPDATE public.cases SET tenant = 't1', note = 't1-own-note' WHERE id = 1")
    seal(db)
    api = start_api("app_reader")
    seen = {}
    for tenant in ("t1", "t2"):
        with api.client(make_token("reader", tenant_id=tenant)) as client:
            response = client.get("/v1/audit", params={"limit": "500"})
            assert response.status_code == 200, response.text
            seen[tenant] = response.text
    assert "t2-private-diagnosis" not in seen["t1"], "t1's token reads t2's version of the row (row_before)"
    assert "t1-own-note" not in seen["t2"], "t2's token reads t1's version of the row (row_after)"
