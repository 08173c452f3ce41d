"""A thirty-seventh attacker's trial, on the mends since c3bc532: the access log and error answers keep
the client's text out (d15bcf1, be7dcb0, 117eec6); the stream re-checks its token before events go out
and starts where it says (c16d169); the failure brake (06d2ce3); the CLI's DSN scrubbing (f79bac5,
cebfd7f); the verifiers' refusal of hostile documents (0c4b18c, 117eec6, d86fb07, 0dcaf1f).

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from conftest import messages_locale_available
from schema_changes import checkpoint_readers, verifier_and_key

from pgaudit_py import canonical, enable_tracking, seal
from pgaudit_py.tokens import revoke_token

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


class _Collected(logging.Handler):
    """Every log record, its traceback included, as text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name} {record.levelname} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@contextlib.contextmanager
def _every_log_line():
    """What the server writes to any logger (its own, uvicorn's) while the block runs. Not uvicorn.access:
    `pgaudit serve` turns it off (no handler, no propagation), and a handler added to it turns it on."""
    handler = _Collected()
    loggers = [logging.getLogger(name) for name in ("", "uvicorn")]
    ours = logging.getLogger("pgaudit_py")
    level = ours.level
    ours.setLevel(logging.DEBUG)
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        ours.setLevel(level)
        for logger in loggers:
            logger.removeHandler(handler)


def _raw(api, data: bytes, timeout: float = 5, seconds: float | None = None) -> bytes:
    """What the server answers to these bytes, until it closes (or `seconds` have passed)."""
    host, port = api.url.removeprefix("http://").split(":")
    got = bytearray()
    deadline = time.monotonic() + (seconds if seconds is not None else 60)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                s.settimeout(max(0.05, min(timeout, deadline - time.monotonic())))
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    return bytes(got)


def _secret_pieces(token: str) -> list[str]:
    secret = token.rsplit("_", 1)[1]
    return [secret[:16], secret[24:40], secret[-16:]]


# --- 1. d15bcf1 / be7dcb0 / 117eec6: a token anywhere in a request but the Authorization header ----------------

PLACES = {
    "the method": "{T} /v1/audit HTTP/1.1\r\nHost: x\r\n{A}",
    "the method, of the stream": "{T} /v1/audit/stream HTTP/1.1\r\nHost: x\r\n{A}",
    "the method, upper-cased": "{U} /v1/audit HTTP/1.1\r\nHost: x\r\n{A}",
    "the method, an unknown path": "{T} /nowhere HTTP/1.1\r\nHost: x\r\n{A}",
    "the Host header": "GET /v1/audit HTTP/1.1\r\nHost: {T}\r\n{A}",
    "the Host header, with a port": "GET /nowhere HTTP/1.1\r\nHost: {T}:8080\r\n{A}",
    "Referer": "GET /v1/audit/nowhere HTTP/1.1\r\nHost: x\r\nReferer: https://x/?token={T}\r\n{A}",
    "User-Agent": "GET /v1/audit?limit=x HTTP/1.1\r\nHost: x\r\nUser-Agent: {T}\r\n{A}",
    "Cookie": "GET /v1/audit HTTP/1.1\r\nHost: x\r\nCookie: token={T}\r\n",
    "X-Forwarded-For": "GET /v1/audit HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {T}\r\n{A}",
    "Forwarded": "GET /v1/audit HTTP/1.1\r\nHost: x\r\nForwarded: for={T};host={T}\r\n{A}",
    "Last-Event-ID": "GET /v1/audit/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {T}\r\n{A}",
    "Last-Event-ID after digits": "GET /v1/audit/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 5{T}\r\n{A}",
    "Authorization without a scheme": "GET /v1/audit HTTP/1.1\r\nHost: x\r\nAuthorization: {T}\r\n",
    "Authorization, Basic": "GET /v1/audit HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {T}\r\n",
    "Authorization, with a trailing control byte": "GET /v1/audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {T}\x01\r\n",
    "a header line h11 cannot read": "GET /v1/audit HTTP/1.1\r\nHost: x\r\nX-Token : {T}\r\n{A}",
    "a fragment": "GET /v1/audit#{T} HTTP/1.1\r\nHost: x\r\n{A}",
    "a matrix segment": "GET /v1/audit;{T} HTTP/1.1\r\nHost: x\r\n{A}",
    "a matrix segment of the stream": "GET /v1/audit/stream;token={T} HTTP/1.1\r\nHost: x\r\n{A}",
    "a percent-encoded path": "GET /v1/audit/{P} HTTP/1.1\r\nHost: x\r\n{A}",
    "a double-encoded slash": "GET /v1/audit%252F{T} HTTP/1.1\r\nHost: x\r\n{A}",
    "an own path, encoded, then a bare token": "GET /v1/%61udit?{T} HTTP/1.1\r\nHost: x\r\n{A}",
    "an absolute-form target": "GET http://{T}@x/v1/audit HTTP/1.1\r\nHost: x\r\n{A}",
    "an overlong request line": "GET /v1/audit/{T}{LONG} HTTP/1.1\r\nHost: x\r\n{A}",
    "the HTTP version": "GET /v1/audit HTTP/{T}\r\nHost: x\r\n{A}",
    "Transfer-Encoding": "GET /v1/audit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {T}\r\n{A}",
}


@pytest.mark.parametrize("place", list(PLACES))
def test_a_token_anywhere_but_the_authorization_header_reaches_no_answer_and_no_log(start_api, make_token, place):
    """Attack: a client (or a tool that confuses its arguments: `http $TOKEN $URL` makes the token the
    method) sends its live token in the method, the Host, Referer, User-Agent, Cookie, forwarding
    headers, Last-Event-ID, a malformed Authorization, a header line the parser refuses, a fragment,
    a matrix segment, a percent- or double-encoded path, an absolute-form target, an overlong request
    line, the HTTP version, Transfer-Encoding. docs/http.md: the access log writes a path only when it
    is one of the server's own, a 404 and a 400 say no client text back; docs/security.md: tokens
    reach no log line. A break: the token's secret is in the answer or in any line the server logs
    (its access log, its own logger, uvicorn's), a traceback included."""
    token = make_token("reader", name="placed")
    api = start_api()
    with _every_log_line() as logs:
        request = PLACES[place].format(T=token, U=token.upper(), A=f"Authorization: Bearer {token}\r\n",
                                       P="".join(f"%{b:02X}" for b in token.encode()), LONG="a" * 70000)
        answer = _raw(api, (request + "Connection: close\r\n\r\n").encode("latin-1"))
        time.sleep(0.3)
    lines = "\n".join(logs.lines)
    found, body = [], answer.split(b"\r\n\r\n", 1)[-1][:300]
    for piece in _secret_pieces(token):
        if piece.lower() in answer.decode("latin-1").lower():
            found.append(f"the answer says the token back: {body!r}")
        found += [f"the server's log holds the token: {line[:300]!r}" for line in logs.lines
                  if piece.lower() in line.lower()]
    assert not found, f"{place}: " + "; ".join(sorted(set(found)))
    assert "Traceback" not in lines, f"{place}: a traceback in the server's log: {lines[-600:]}"


# --- 2. c16d169: the stream, forged Last-Event-ID, a tenant's scope across moves -------------------------------

LAST_EVENT_IDS = ["-1", "+3", " 3", "3 ", "0x10", "1e3", "3.0", "\uff13", "\u0663", "", "3, 4",
                  "9223372036854775807", "9223372036854775808", "18446744073709551616", "9" * 400,
                  "T2_SEQ", "T2_SEQ_MINUS_1", "0"]


@pytest.mark.parametrize("last_id", LAST_EVENT_IDS)
def test_a_forged_last_event_id_never_widens_a_tenant_tokens_stream(db, connect, attacker, start_api, make_token,
                                                                     last_id):
    """Attack: a t1 token reconnects to /v1/audit/stream with a forged Last-Event-ID: negative, signed,
    padded, hexadecimal, exponent, a decimal, full-width and Arabic-Indic digits, empty, a list, the
    largest bigint and past it, 400 digits, the seq of one of t2's events (and the one before it), 0.
    The log holds t2's private records and a row moved t2 -> t1 -> t2 (each move two events, one under
    each tenant). A break: a 5xx or a traceback, a 400 that says the value back, or any event that is
    not t1's (or carries t2's text) in t1's stream."""
    attacker.execute("CREATE TABLE public.cases (id int PRIMARY KEY, tenant text, note text)")
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    attacker.execute("INSERT INTO public.cases VALUES (1, 't2', 'T2-PRIVATE-A')")
    db.execute("SELECT audit.record(kind => 'x.t1', tenant_id => 't1', payload => '{\"n\": \"t1-own\"}')")
    db.execute("SELECT audit.record(kind => 'x.t2', tenant_id => 't2', payload => '{\"n\": \"T2-PRIVATE-R\"}')")
    attacker.execute("UPDATE public.cases SET tenant = 't1', note = 't1-own-B' WHERE id = 1")
    attacker.execute("UPDATE public.cases SET tenant = 't2', note = 'T2-PRIVATE-C' WHERE id = 1")
    db.execute("SELECT audit.record(kind => 'x.t2', tenant_id => 't2', payload => '{\"n\": \"T2-PRIVATE-S\"}')")
    seal(db)
    t2_seqs = [r[0] for r in db.execute("SELECT seq FROM audit.event_log WHERE tenant_id = 't2' ORDER BY seq")]
    t1_count = db.execute("SELECT count(*) FROM audit.event_log WHERE tenant_id = 't1'").fetchone()[0]
    value = {"T2_SEQ": str(t2_seqs[0]), "T2_SEQ_MINUS_1": str(t2_seqs[0] - 1)}.get(last_id, last_id)
    token = make_token("reader", tenant_id="t1")
    api = start_api("app_reader", poll_interval=0.2, heartbeat=1)
    with _every_log_line() as logs:
        # HTTP/1.0, so that the body is not chunked; sent raw, as a client may (httpx refuses padding).
        answer = _raw(api, (f"GET /v1/audit/stream HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                            f"Last-Event-ID: {value}\r\n\r\n").encode(), timeout=1, seconds=3)
    head, _, text = answer.decode(errors="replace").partition("\r\n\r\n")
    status = int(head.split(" ", 2)[1]) if head.startswith("HTTP/") else 0
    data = [block.split("data: ", 1)[1] for block in text.split("\n\n") if "event: audit" in block]
    assert status in (200, 400), (last_id, status, answer[:300])
    if status == 400 and len(value) >= 3:
        assert value not in text, f"Last-Event-ID {last_id!r}: the 400 says the value back: {text[:300]}"
    if status == 200 and value == "0":
        assert len(data) == t1_count, (f"from 0, t1's stream carries {len(data)} events, not t1's {t1_count}", text)
    for event in data:
        parsed = json.loads(event)
        assert parsed["tenant_id"] == "t1" and "T2-PRIVATE" not in event, (
            f"Last-Event-ID {last_id!r}: t1's stream carries {event[:300]}")
    assert not [line for line in logs.lines if "Traceback" in line], (last_id, logs.lines[-3:])


@pytest.mark.parametrize("ended_by", ["expired", "revoked"])
def test_a_token_that_ends_while_events_flow_gets_none_past_the_recheck(db, connect, start_api, make_token,
                                                                         ended_by):
    """Attack: a leaked reader token follows the stream while events are sealed every 0.1 s, so that
    the stream never goes quiet (the idle re-check every 5 s never runs); the token expires (or is
    revoked) midway. docs/http.md: the token is asked again before events go out, its answer at most
    0.5 s old. A break: audit events still arrive more than 1.5 s after the token ended, or the stream
    never ends with its error event."""
    ends_at = time.monotonic() + 2.5
    expires = datetime.now(timezone.utc) + timedelta(seconds=2.5) if ended_by == "expired" else None
    token = make_token("reader", name="flowing", expires_at=expires)
    api = start_api("app_reader", poll_interval=0.05, heartbeat=30)
    writer, maintainer = connect(), connect("app_maintainer")
    stop = threading.Event()

    def write() -> None:
        revoked = False
        while not stop.is_set():
            writer.execute("SELECT audit.record(kind => 'flow.tick')")
            seal(writer)
            if ended_by == "revoked" and not revoked and time.monotonic() >= ends_at:
                revoke_token(maintainer, "flowing")
                revoked = True
            time.sleep(0.1)

    from api_server import sse_messages

    thread = threading.Thread(target=write, daemon=True)
    late: list[float] = []
    ended = False
    thread.start()
    try:
        with api.client(token) as client, client.stream("GET", "/v1/audit/stream") as r:
            assert r.status_code == 200
            deadline = ends_at + 8
            for m in sse_messages(r):
                now = time.monotonic()
                if m.event == "audit" and now > ends_at + 1.5:
                    late.append(round(now - ends_at, 2))
                if m.event == "error":
                    ended = True
                    break
                if now > deadline:
                    break
    finally:
        stop.set()
        thread.join(10)
    assert not late, f"{len(late)} events arrived after the {ended_by} token ended (seconds after: {late[:5]})"
    assert ended, f"the stream of a {ended_by} token never ended"


# --- 3. 06d2ce3: the failure brake, by a burst and by variants of a token ------------------------------------------

def test_a_parallel_burst_of_unknown_tokens_is_braked_like_a_sequence(start_api):
    """Attack: the brake counts an address's failures only once their lookups have failed; every
    request checks the count before its own lookup. A guesser sends 60 well-formed unknown tokens at
    once, from one address (60 connections). docs/http.md: an address that presented 10 (here 3)
    unknown tokens within a minute gets 429 "before the database is asked about a new token"; its
    purpose is that a guesser cannot cost a query a request. A break: far more than the allowed
    number of the burst are looked up in the database (answered 401 rather than 429) -- each minute a
    guesser gets as many lookups as it opens connections."""
    allowed = 3
    api = start_api(failures_allowed=allowed, pool_size=2)
    guesses = [f"pga_{i:012x}_{os.urandom(32).hex()}" for i in range(60)]
    ready = threading.Barrier(len(guesses))

    def guess(token: str) -> int:
        with httpx.Client(base_url=api.url, timeout=60) as client:
            client.get("/healthz")  # the connection is open before the burst
            ready.wait()
            return client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code

    with ThreadPoolExecutor(len(guesses)) as pool:
        codes = list(pool.map(guess, guesses))
    looked_up = codes.count(401)
    assert set(codes) <= {401, 429}, codes
    assert looked_up <= 2 * allowed, (
        f"a burst of {len(guesses)} unknown tokens from one address: {looked_up} were looked up in the database"
        f" (401), {codes.count(429)} braked (429); the brake allows {allowed}")


VARIANTS = {
    "upper-cased": lambda t: t.upper(),
    "upper-cased hex only": lambda t: t[:4] + t[4:].upper(),
    "trailing space": lambda t: t + " ",
    "trailing NBSP": lambda t: t + "\xa0",
    "trailing NEL": lambda t: t + "\x85",
    "leading tab": lambda t: "\t" + t,
    "trailing byte": lambda t: t + "0",
    "one byte short": lambda t: t[:-1],
    "a Cyrillic a": lambda t: t.replace("a", "\u0430", 2),
    "full-width digits": lambda t: t[:-3] + "\uff10\uff11\uff12",
    "last hex digit changed": lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_of_a_valid_token_do_not_pass_the_brake(start_api, make_token, variant):
    """Attack: an address is braked (3 unknown tokens); the guesser then sends variants of a valid
    token it never used from there (case, whitespace the header parser strips, NBSP, NEL, trailing
    and missing bytes, lookalikes, one digit off), hoping one is looked up (or accepted) though
    braked. A break: a variant gets 200 (it was looked up past the brake), or anything but 401/429,
    or the brake lets the guesser's next unknown token be looked up (401)."""
    api = start_api(failures_allowed=3)
    valid = make_token("reader")
    sent = VARIANTS[variant](valid)
    # Raw bytes: latin-1 where it can be (as a header is read), else UTF-8 (what a client would send).
    header = ("Bearer " + sent).encode("latin-1") if all(ord(c) < 256 for c in sent) else ("Bearer " + sent).encode()

    def status(authorization: bytes) -> int:
        answer = _raw(api, b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: " + authorization
                      + b"\r\nConnection: close\r\n\r\n")
        return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0

    for _ in range(3):
        status(f"Bearer pga_{os.urandom(6).hex()}_{os.urandom(32).hex()}".encode())
    assert status(f"Bearer pga_{os.urandom(6).hex()}_{'1' * 64}".encode()) == 429
    answer = status(header)
    after = status(f"Bearer pga_{os.urandom(6).hex()}_{'2' * 64}".encode())
    assert answer in (400, 401, 429), f"{variant}: {answer}"
    assert after == 429, f"{variant}: after it, an unknown token was looked up ({after})"


# --- 4. f79bac5 / cebfd7f: a DSN's password through every command's error path ---------------------------------

# Each DSN is written with its password's letters as {a} and {b}: run once with the attacker's letters
# and once with others, an output that differs says something of the password.
DSNS = {
    "a comma and a slash in a URI password (a host list)": "postgresql://u:{a},{b}/x@127.0.0.1:1/app",
    "a backslash after an unencoded @": "postgresql://u:{a}@{b}\\q@127.0.0.1:1/app",
    "both quotes after an unencoded @": "postgresql://u:{a}@{b}'q\"@127.0.0.1:1/app",
    "a tab (encoded) after an unencoded @": "postgresql://u:{a}@{b}%09q@127.0.0.1:1/app",
    "a zero-width space after an unencoded @": "postgresql://u:{a}@{b}%E2%80%8Bq@127.0.0.1:1/app",
    "a non-ASCII letter after an unencoded @": "postgresql://u:{a}@{b}\u00e9q@127.0.0.1:1/app",
    "a comma in a key=value host list": "host=127.0.0.1,127.0.0.1 port=1,2 user=u password={a},{b}",
    "a word of libpq's message as the password": "host=127.0.0.1 port=1 user=u password=server",
    "a word of libpq's message, in a URI": "postgresql://u:running@127.0.0.1:1/app",
    "PGPASSWORD and a bad port": "ENV:host=127.0.0.1 port=1x user=u",
    "PGPASSWORD and an unresolvable host": "ENV:host=nohost.invalid port=1 user=u",
}
LETTERS = ("Zq8w", "Vx3k")
OTHER = ("Hy5t", "Rm2p")


def _run_with(dsn: str, command: list[str], letters: tuple[str, str]) -> tuple[int, str]:
    env = dict(ENV)
    text = dsn.format(a=letters[0], b=letters[1])
    if text.startswith("ENV:"):
        text = text.removeprefix("ENV:")
        env["PGPASSWORD"] = letters[0] + letters[1]
    if command == ["pgaudit-install"]:
        args = [sys.executable, "-c", "import sys; from pgaudit_py.cli import install_main;"
                " sys.argv[0] = 'pgaudit-install'; install_main()", "--dsn", text]
    else:
        args = [sys.executable, "-m", "pgaudit_py.cli", *command, "--dsn", text]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("dsn", list(DSNS))
@pytest.mark.parametrize("command", [["status"], ["demo"], ["serve", "--port", "0"], ["verify"],
                                     ["pgaudit-install"]])
def test_no_command_says_anything_of_a_dsn_password(dsn, command):
    """Attack: connection strings whose password libpq (or psycopg) repeats in its message, reshaped:
    a ',' in a URI password splits it into a host list, a second half after an unencoded '@' holding
    a backslash, quotes, a tab, a zero-width space (psycopg writes the host with repr(), which escapes
    them, so the text no longer equals what is taken out), a password that is a word libpq's message
    holds ("server", "running": the scrubber replaces every occurrence of it), PGPASSWORD beside a bad
    port. Each command is run twice, with the password's letters and with others. A break: the
    password's letters are printed, or the two outputs differ (what is printed depends on the
    password: a reader learns it)."""
    code, out = _run_with(DSNS[dsn], command, LETTERS)
    assert code != 0, out
    assert "Traceback" not in out, out[-500:]
    for piece in LETTERS:
        assert piece not in out, f"{command[0]} prints part of the password ({piece}): {out.strip()[-300:]}"
    _, control = _run_with(DSNS[dsn], command, OTHER)
    assert out.replace(OTHER[0], "").replace(OTHER[1], "") == control.replace(OTHER[0], "").replace(OTHER[1], ""), (
        f"{command[0]}: what is printed depends on the password: {out.strip()[-250:]!r}"
        f" against {control.strip()[-250:]!r}")
    if "word" in dsn:
        word = "server" if "server" in DSNS[dsn] else "running"
        plain = DSNS[dsn].replace(f"password={word}", "password=Qj7zKp").replace(f"u:{word}@", "u:Qj7zKp@")
        _, other = _run_with(plain, command, LETTERS)
        assert out == other, (f"{command[0]}: the password {word!r} is masked where libpq's message says"
                              f" {word!r}, so the mask names it: {out.strip()[-200:]!r} against {other.strip()[-200:]!r}")


# --- 5. 0c4b18c / 117eec6: checkpoints the three verifiers read differently -------------------------------------

def _archive_and_checkpoint(db, tmp_path: Path):
    """A real archive of every sealed block and a checkpoint of its last block, signed with a key
    the test holds: (archive dir, checkpoint document, private key, public key path)."""
    from cryptography.hazmat.primitives import serialization

    from pgaudit_py.archive import archive
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint

    keys_dir = tmp_path / "keys"
    generate_keys(keys_dir)
    for r in range(3):
        db.execute("SELECT audit.record(kind => 'order.paid', target_id => %s || '-' || i) FROM generate_series(1, 3) i",
                   (f"r{r}",))
        seal(db)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 10, 3)")
    time.sleep(0.05)
    keys = load_keys(signing_key=keys_dir / "checkpoint-ed25519.pem")
    directory = tmp_path / "archive"
    done = archive(db, open_target(f"file://{directory}"), keys, older_than=timedelta(milliseconds=1))
    assert done.batches, "nothing archived"
    document = make_checkpoint(db, keys)
    private = serialization.load_pem_private_key((keys_dir / "checkpoint-ed25519.pem").read_bytes(), None)
    return directory, document, private, keys_dir / "checkpoint-ed25519.pub.pem"


def _signed(body: dict, private) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return json.dumps({"ed25519": {"public_key": base64.b64encode(raw).decode(),
                                   "signature": base64.b64encode(private.sign(canonical.dumps(body).encode())).decode()}})


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _hostile_checkpoint(case: str, body: dict, private) -> bytes:
    """The checkpoint file's bytes for one case; every body is signed with the key unless said."""
    def text(b: dict, sig: str | None = None) -> str:
        return '{"checkpoint": ' + canonical.dumps(b) + ', "signatures": ' + (sig or _signed(b, private)) + "}\n"

    n = body["block_no"]
    inner = canonical.dumps(body)
    if case == "as written":
        return text(body).encode()
    if case == "a duplicate block_no, the first another block's":
        return ('{"checkpoint": {"block_no": ' + str(n + 1000) + ", " + inner[1:] + ', "signatures": '
                + _signed(body, private) + "}\n").encode()
    if case == "a duplicate checkpoint member, the first another block's":
        other = {**body, "block_no": n + 1000}
        return ('{"checkpoint": ' + canonical.dumps(other) + ', "checkpoint": ' + inner + ', "signatures": '
                + _signed(body, private) + "}\n").encode()
    if case == "a UTF-8 byte order mark":
        return b"\xef\xbb\xbf" + text(body).encode()
    if case == "UTF-16":
        return text(body).encode("utf-16")
    if case == "UTF-32":
        return text(body).encode("utf-32")
    if case.startswith("block_no as "):
        value = {"block_no as a string": str(n), "block_no as a list": [n], "block_no as null": None,
                 "block_no as an object": {"n": n}}[case]
        return text({**body, "block_no": value}).encode()
    if case == "block_hash upper-case":
        return text({**body, "block_hash": body["block_hash"].upper()}).encode()
    if case.startswith("a member nested "):
        depth = int(case.split()[3])
        # The document is level 1, the checkpoint 2: the member's own brackets add depth - 2.
        b = {**body, "x": json.loads(_nested(depth - 2))}
        return text(b).encode()
    if case.startswith("an integer of "):
        digits = int(case.split()[3])
        if digits <= 4300:
            return text({**body, "x": int("7" * digits)}).encode()
        return ('{"checkpoint": {"x": ' + "7" * digits + ", " + inner[1:] + ', "signatures": '
                + _signed(body, private) + "}\n").encode()
    if case == "a NUL and U+2028 in a member":
        return text({**body, "x": "a\u0000b\u2028c"}).encode()
    if case.startswith("signatures as "):
        value = case.removeprefix("signatures as ")
        return text(body, value).encode()
    raise AssertionError(case)


CHECKPOINT_CASES = [
    "as written", "a duplicate block_no, the first another block's",
    "a duplicate checkpoint member, the first another block's", "a UTF-8 byte order mark", "UTF-16", "UTF-32",
    "block_no as a string", "block_no as a list", "block_no as null", "block_no as an object",
    "block_hash upper-case", "a member nested 32 deep", "a member nested 33 deep", "an integer of 4300 digits",
    "an integer of 4301 digits", "a NUL and U+2028 in a member", "signatures as 7", "signatures as null",
    "signatures as []", 'signatures as "ed25519"',
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_the_three_verifiers_agree_on_a_hostile_checkpoint(db, tmp_path, case):
    """Attack: one archive, one checkpoint of its last block, and the checkpoint file rewritten: a
    duplicate member whose first value names another block (Python's reader keeps the last; another
    reader keeps the first), a byte order mark, UTF-16 and UTF-32, block_no as a string, a list,
    null or an object, an upper-case hash, a member nested 32 and 33 deep, integers of 4300 and 4301
    digits, NUL and U+2028, and `signatures` that is no object. Each body is signed with the
    installation's key, except where the signatures themselves are the case. Read by the standalone
    verifier, `pgaudit archive verify --offline --checkpoint` and `pgaudit verify --checkpoint`. A
    break: a traceback from any of them, or their verdicts differ (one accepts what another refuses)."""
    directory, document, private, public = _archive_and_checkpoint(db, tmp_path)
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_bytes(_hostile_checkpoint(case, document["checkpoint"], private))
    verifier, _ = verifier_and_key(tmp_path)
    runs = checkpoint_readers(verifier, directory, public, checkpoint, db.info)
    verdicts: dict[str, str] = {}
    for name, args in runs.items():
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)
        out = (done.stdout + done.stderr).strip()
        assert "Traceback" not in out, f"{case}: {name} crashes: {out.splitlines()[-1]}"
        said = [line for line in out.splitlines() if "PROBLEM" in line or "checkpoint" in line] or out.splitlines()
        verdicts[name] = ("accepts" if done.returncode == 0 else f"refuses (exit {done.returncode})") + \
            f": {said[0][:200] if said else ''}"
    accepted = {name for name, v in verdicts.items() if v.startswith("accepts")}
    if case == "as written":
        assert len(accepted) == 3, verdicts
    assert accepted in (set(), set(runs)), f"{case}: the verifiers disagree: {json.dumps(verdicts, indent=1)}"


# --- 5b. a file name the standalone verifier cannot print ------------------------------------------------------

@pytest.mark.parametrize("how", ["standalone", "archive verify --offline"])
def test_a_file_name_that_is_not_utf8_is_named_not_a_traceback(tmp_path, how):
    """Attack: whoever holds the archive directory (the party an auditor does not trust) drops a file
    whose name is not UTF-8 (b'\\xff...') beside the batches. The verifier names every file that is no
    batch's, printing its name; Python holds the name with a lone surrogate, which a UTF-8 terminal's
    strict encoder refuses. Run under the auditor's ordinary locale (de_DE.UTF-8, or UTF-8 strict
    output). A break: a traceback instead of a named problem and a verdict."""
    verifier, key = verifier_and_key(tmp_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "blocks-000000000001-000000000001.manifest.json").write_text("{}\n")
    with open(os.fsencode(archive) + b"/\xffnot-utf8", "wb"):
        pass
    env = dict(ENV)
    if messages_locale_available():
        env.update(LANG="de_DE.UTF-8", LC_ALL="de_DE.UTF-8")
    else:
        env["PYTHONIOENCODING"] = "utf-8"
    args = ([sys.executable, "-I", str(verifier), str(archive), "--public-key", str(key)] if how == "standalone"
            else [sys.executable, "-m", "pgaudit_py.cli", "archive", "verify", "--offline", "--target",
                  f"file://{archive}", "--public-key", str(key)])
    done = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=120, cwd=ROOT, env=env)
    out = done.stdout + done.stderr
    assert "Traceback" not in out, f"{how}: {out.strip().splitlines()[-1]}"
    assert done.returncode == 1 and "NOT VERIFIED" in out, (done.returncode, out[-300:])


# --- 5c. part files and symlinks in a file target ----------------------------------------------------------------

@pytest.mark.parametrize("intruder", ["a .part- file of a batch's object", "a .part- file of an object not there",
                                      "a symlink to a file outside", "a symlink loop", "a directory named as a batch"])
def test_an_intruder_in_a_file_target_is_named_by_the_offline_verifiers(db, tmp_path, intruder):
    """Attack: beside a finished archive, a `.part-` file (what a crashed write leaves, named after a
    batch's object or one that is not there), a symlink named as a batch's data object pointing
    outside the directory, a symlink loop, a directory named as a manifest. A break: a traceback, or
    a verdict of 0 for an archive that holds something other than its batches (the standalone
    verifier insists on nothing else), or the two offline verifiers disagree."""
    directory, _document, _private, public = _archive_and_checkpoint(db, tmp_path)
    names = sorted(p.name for p in directory.iterdir())
    data = next(n for n in names if n.endswith(".jsonl.gz"))
    if intruder == "a .part- file of a batch's object":
        (directory / f".part-{data}-x1y2z3").write_bytes(b"half")
    elif intruder == "a .part- file of an object not there":
        (directory / ".part-blocks-999999999998-999999999999.manifest.json-q").write_bytes(b"{}")
    elif intruder == "a symlink to a file outside":
        outside = tmp_path / "outside.gz"
        (directory / data).rename(outside)
        (directory / data).symlink_to(outside)
    elif intruder == "a symlink loop":
        (directory / "blocks-999999999998-999999999999.jsonl.gz").symlink_to(
            directory / "blocks-999999999998-999999999999.jsonl.gz")
    else:
        (directory / "blocks-999999999998-999999999999.manifest.json").mkdir()
    verifier, _ = verifier_and_key(tmp_path)
    codes = {}
    for name, args in {
        "standalone": [sys.executable, "-I", str(verifier), str(directory), "--public-key", str(public)],
        "archive verify --offline": [sys.executable, "-m", "pgaudit_py.cli", "archive", "verify", "--offline",
                                     "--target", f"file://{directory}", "--public-key", str(public)],
    }.items():
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)
        out = done.stdout + done.stderr
        assert "Traceback" not in out, f"{intruder}: {name}: {out.strip().splitlines()[-1]}"
        codes[name] = done.returncode
    assert len(set(codes.values())) == 1, f"{intruder}: {codes}"
    if intruder != "a symlink to a file outside":  # the same bytes, read through a link: either verdict is sound
        assert set(codes.values()) == {1}, f"{intruder}: accepted: {codes}"
