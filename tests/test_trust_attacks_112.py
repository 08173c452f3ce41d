"""A hundred-and-twelfth attacker's trial: the read side and the newcomer's path.

Classes (test names carry the letter):
  H. the HTTP API and its tokens: hand-made keyset cursors over another tenant's pending events,
     HEAD with another tenant, a token expiring under an open stream, token secrets in the
     server's statement log, pg_stat_activity and the access log, hostile parameter names and
     values not tried before.
  S. the live stream: uncommitted and rolled-back events never streamed, stalled clients that do
     not read do not block others, dropped streams leave no sessions behind.
  P. the operator page in Chromium: markup in every event field (target, actor, tenant,
     correlation id, payload keys and values, a tracked table's column names), arriving live and
     listed, and in the page's URL, is never turned into elements.
  K. the auditor's kit offline: a gzip member appended to a data object, trailing bytes, a middle
     batch left out, a manifest re-signed by another key, and odd numbers and Unicode on which the
     offline verifiers and audit.verify() must agree.
  C. the least-privilege CLI (role/command pairs no earlier trial tried) and the actor context
     (an exception inside nested blocks, another thread and another asyncio task on a connection
     with a block open, a pooled connection after a failed block, session values before a block).

Each test asserts the secure outcome the docs state, so it FAILS when the attack works. Objects and
roles made here are prefixed t112_.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import socket
import threading
import time
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest
from api_server import sse_messages
from chromium import sign_in, wait_rows
from click.testing import CliRunner
from test_archive_offline import batches, both, build_archive, verifier_file  # noqa: F401
from trial_helpers import seal_all

from pgaudit_py import aio, audit_context, canonical, enable_tracking, record, seal
from pgaudit_py.checkpoint import generate_keys, load_keys, sign
from pgaudit_py.cli import cli
from pgaudit_py.errors import UnsupportedSession
from pgaudit_py.tokens import revoke_token

MARK = '<b data-t112="1">x</b><img data-t112="2" src=x onerror="window.t112=1">'


def secret_part(token: str) -> str:
    return token.rsplit("_", 1)[1]


def n_intake_and_log(db) -> tuple[int, int]:
    return db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log)").fetchone()


def run_cli(db, role: str, *args: str, input: str | None = "y\n"):
    i = db.info
    result = CliRunner().invoke(cli, [*args, "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user={role}"],
                                input=input)
    try:
        err = result.stderr
    except ValueError:
        err = ""
    return result.exit_code, result.output + err


def collect(api, token, *, params=None, headers=None, seconds=3.0, until=None):
    got: list = []
    with api.client(token) as client, client.stream("GET", "/v1/audit/stream", params=params or {},
                                                    headers=headers or {}) as response:
        if response.status_code != 200:
            return response.status_code, got
        deadline = time.monotonic() + seconds
        with suppress(httpx.HTTPError):
            for m in sse_messages(response):
                if m.data is not None:
                    got.append((time.monotonic(), m.id, m.event, m.data))
                    if m.event == "error":
                        break
                if until and until(got):
                    break
                if time.monotonic() > deadline:
                    break
        return 200, got


# ============================================ class H ============================================


class RawResponse:
    def __init__(self, status: int, headers, body: bytes):
        self.status_code, self.headers, self.content = status, headers, body
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


def raw_get(api, token: str, path: str) -> RawResponse | None:
    """A GET sent as written (httpx refuses URLs past 64 kB): None when the server hangs up."""
    import http.client

    host, port = api.url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.putrequest("GET", path, skip_accept_encoding=True)
        c.putheader("Authorization", f"Bearer {token}")
        c.endheaders()
        r = c.getresponse()
        return RawResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


def test_h1_a_hand_made_before_intake_id_over_another_tenants_pending_events_reads_only_its_own(db, start_api,
                                                                                              make_token):
    """Pending events of t112b sit between t112a's; a t112a token pages by before_intake_id crafted by
    hand (just above each of t112b's ids, and the largest id there is): nothing of t112b's."""
    for i in range(4):
        record(db, "order.paid", tenant_id="t112a", target_id=f"a-{i}")
        record(db, "order.paid", tenant_id="t112b", target_id=f"b-{i}", payload={"who": "B-SECRET"})
    b_ids = [r[0] for r in db.execute("SELECT intake_id FROM audit.events WHERE tenant_id = 't112b'")]
    api = start_api()
    with api.client(make_token(tenant_id="t112a")) as c:
        for bid in [*(x + 1 for x in b_ids), *b_ids, 2**63 - 1]:
            r = c.get("/v1/audit", params={"before_intake_id": str(bid), "limit": "500"})
            assert r.status_code == 200, (bid, r.status_code, r.text[:200])
            assert {e["tenant_id"] for e in r.json()["events"]} <= {"t112a"}, bid
            assert "B-SECRET" not in r.text


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/count", "/v1/audit/monthly", "/v1/audit/stream"])
def test_h2_head_naming_another_tenant_is_refused_like_get(db, start_api, make_token, path):
    record(db, "order.paid", tenant_id="t112b")
    seal(db)
    api = start_api()
    with api.client(make_token(tenant_id="t112a")) as c:
        r = c.head(path, params={"tenant_id": "t112b"})
    assert r.status_code == 403, (path, r.status_code)


def test_h3_a_token_that_expires_under_an_open_stream_ends_it_and_gets_nothing_after(db, start_api, make_token,
                                                                                    connect):
    """http.md: "A stream whose token is revoked or expires ends with event: error ... the token is
    asked again before each event goes out (an answer at most 0.5 s old)"."""
    expires = datetime.now(timezone.utc) + timedelta(seconds=2)
    token = make_token("reader", expires_at=expires)
    api = start_api(heartbeat=0.5, poll_interval=0.2)
    writer = connect()
    stop = threading.Event()

    def feed():
        n = 0
        while not stop.is_set():
            record(writer, "t112.tick", target_id=str(n))
            with suppress(Exception):
                seal(writer)
            n += 1
            time.sleep(0.1)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        status, got = collect(api, token, seconds=12)
    finally:
        stop.set()
        t.join(10)
    assert status == 200
    expiry_mono = time.monotonic() - (datetime.now(timezone.utc) - expires).total_seconds()
    late = [(round(at - expiry_mono, 2), i) for at, i, e, _ in got if e == "audit" and at > expiry_mono + 1.0]
    assert any(e == "error" for _, _, e, _ in got), "the stream never ended"
    assert late == [], late[:5]


def test_h4_token_secrets_never_reach_the_statement_log_or_pg_stat_activity(db, pg_cluster, start_api, connect):
    """security.md: "Tokens travel in the Authorization header alone and reach no log line"; the
    database keeps each token's SHA-256, never the token. With every statement logged for the
    maintainer and the reader, a token made, used and revoked leaves its secret nowhere."""
    from pgaudit_py.tokens import create_token

    name = db.info.dbname
    for role in ("app_maintainer", "app_reader"):
        db.execute(f"ALTER ROLE {role} IN DATABASE {name} SET log_statement = 'all'")
        db.execute(f"ALTER ROLE {role} IN DATABASE {name} SET log_min_duration_statement = 0")
    try:
        start = pg_cluster.log.stat().st_size
        made = create_token(connect("app_maintainer"), "t112-logged", "reader")
        api = start_api("app_reader")
        seen: list[str] = []
        with api.client(made.token) as c:
            assert c.get("/v1/audit").status_code == 200
            assert c.get("/v1/audit/count").status_code == 200
            seen += [r[0] or "" for r in db.execute("SELECT query FROM pg_stat_activity")]
        revoke_token(connect("app_maintainer"), made.token)
        time.sleep(0.5)
        logged = pg_cluster.log.read_bytes()[start:].decode("utf-8", "replace")
    finally:
        for role in ("app_maintainer", "app_reader"):
            db.execute(f"ALTER ROLE {role} IN DATABASE {name} RESET ALL")
    secret = secret_part(made.token)
    assert "t112-logged" in logged, "the log did not record the statements (test set-up)"
    assert secret not in logged and secret.upper() not in logged
    assert secret[:32] not in logged and secret[32:] not in logged
    assert not any(secret in q for q in seen)
    texts = db.execute("SELECT to_jsonb(e)::text FROM audit.events e").fetchall()
    assert not any(secret in t[0] for t in texts)


HOSTILE = {
    "param name NUL": "/v1/audit?limit%00=5",
    "param name upper": "/v1/audit?LIMIT=5",
    "param name token": "/v1/audit?pga_0123456789ab_" + "a" * 64 + "=1",
    "empty name": "/v1/audit?=5",
    "limit plus": "/v1/audit?limit=%2B5",
    "limit leading zeros 20": "/v1/audit?limit=" + "0" * 19 + "5",
    "limit superscript": "/v1/audit?limit=%C2%B2",
    "limit tab": "/v1/audit?limit=5%09",
    "before_seq underscore": "/v1/audit?before_seq=1_000",
    "since basic format": "/v1/audit?since=20260101T000000Z",
    "since only hour": "/v1/audit?since=2026-01-01T10",
    "since fraction 9 digits": "/v1/audit?since=2026-01-01T10:00:00.123456789Z",
    "until +14:00 year 1": "/v1/audit?until=0001-01-01T00:00:00%2B14:00",
    "since_seq on listing": "/v1/audit?since_seq=1",
    "tenant 1025 chars": "/v1/audit?tenant_id=" + "x" * 1025,
    "tenant 100k chars": "/v1/audit?tenant_id=" + "x" * 100_000,
    "months unicode": "/v1/audit/monthly?months=%D9%A3",
    "months 2^64": "/v1/audit/monthly?months=18446744073709551617",
    "by_kind_prefix 128 hex": "/v1/audit/count?by_kind_prefix=" + "ab" * 64,
    "by_kind_prefix dashed uuid": "/v1/audit/monthly?by_kind_prefix=0123abcd-0123-abcd-0123-0123456789ab",
    "count limit": "/v1/audit/count?limit=5",
    "10k repeated tenant": "/v1/audit?" + "&".join(["tenant_id=a"] * 10_000),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_h5_hostile_parameters_are_a_400_or_an_honest_200_never_repeating_the_value(db, start_api, make_token,
                                                                                    caplog, case):
    record(db, "order.paid", tenant_id="t112a")
    seal(db)
    api = start_api()
    token = make_token("reader")
    caplog.set_level(logging.DEBUG)
    before = n_intake_and_log(db)
    url = HOSTILE[case]
    r = raw_get(api, token, url)
    with api.client(token) as c:
        alive = c.get("/v1/whoami").status_code
    assert alive == 200
    assert n_intake_and_log(db) == before
    if r is None:
        return
    assert r.status_code in (200, 400, 414, 431), (case, r.status_code, r.text[:300])
    if r.status_code == 400 and r.headers.get("content-type", "").startswith("application/json"):
        assert r.json()["error"]["code"] == "invalid_parameter", r.text[:300]
        assert "pga_0123456789ab" not in r.text and "ab" * 32 not in r.text and "x" * 200 not in r.text
    logged = "\n".join(rec.getMessage() for rec in caplog.records if rec.name.startswith(("pgaudit_py", "uvicorn")))
    assert "pga_0123456789ab" not in logged and "ab" * 32 not in logged and "0123abcd-0123" not in logged
    assert secret_part(token) not in logged


def test_h6_a_reader_that_stalls_mid_page_and_resumes_after_revocation_gets_nothing_more(db, start_api, make_token,
                                                                                        connect):
    """http.md: the token is asked again before each event goes out (an answer at most 0.5 s old), "so
    a reader that stalls mid-page and resumes after a revocation gets nothing more". A raw client
    reads a little of a large backlog, stops reading, the token is revoked, and it reads on: what
    it gets after the revocation is at most what was already in flight (uvicorn's and the kernel's
    buffers), never the rest of the page."""
    w = connect()
    w.execute("SELECT audit.record(kind => 't112.page', payload => jsonb_build_object('pad', repeat('p', 2000)))"
              " FROM generate_series(1, 3000) i")
    seal_all(db)
    api = start_api(heartbeat=0.5, poll_interval=0.2)
    token = make_token("reader", name="t112-stall")
    host, port = api.url.removeprefix("http://").split(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window from the start
    s.connect((host, int(port)))
    s.sendall(f"GET /v1/audit/stream?since_seq=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    s.settimeout(10)
    first = b""
    deadline = time.monotonic() + 20
    while first.count(b"event: audit") < 5 and time.monotonic() < deadline:
        chunk = s.recv(4096)
        if not chunk:
            break
        first += chunk
    assert first.count(b"event: audit") >= 5, first[:300]
    time.sleep(2)  # stalled: the server's buffers fill
    import subprocess
    queued = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{port} or dport = :{port} )"],
                            capture_output=True, text=True).stdout
    in_kernel = sum(int(line.split()[0]) + int(line.split()[1]) for line in queued.splitlines() if line.strip())
    revoke_token(connect("app_maintainer"), "t112-stall")
    time.sleep(1.5)
    s.settimeout(3)
    rest = b""
    with suppress(OSError):
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    s.close()
    after = rest.count(b"event: audit")
    total = db.execute("SELECT count(*) FROM audit.events WHERE kind = 't112.page'").fetchone()[0]
    assert b"unauthorized" in rest, rest[-300:]
    # in flight when it stalled: a few hundred kilobytes at most (2 kB an event)
    # in flight at the revocation: the kernel's queues both ways, uvicorn's write buffer (64 kB), one event
    # (and the event the stalled send held, the error event and chunk framing: 8 kB)
    assert len(rest) <= in_kernel + 65536 + 8192, (after, len(rest), in_kernel, total)


# ============================================ class S ============================================


def test_s1_uncommitted_and_rolled_back_events_never_reach_the_stream(db, start_api, make_token, connect):
    api = start_api(heartbeat=0.3, poll_interval=0.2)
    token = make_token("reader")
    open_tx = connect(autocommit=False)
    record(open_tx, "t112.uncommitted")  # left open while the stream reads and the sealer seals
    rolled = connect(autocommit=False)
    record(rolled, "t112.rolled_back")
    rolled.rollback()
    with connect().transaction() as _:
        pass
    w = connect()
    record(w, "t112.committed")
    seal_all(db)
    status, got = collect(api, token, params={"since_seq": "0"}, seconds=2.0)
    kinds = [json.loads(d)["kind"] for _, _, e, d in got if e == "audit"]
    open_tx.rollback()
    seal_all(db)
    assert status == 200
    assert "t112.committed" in kinds
    assert "t112.uncommitted" not in kinds and "t112.rolled_back" not in kinds


def test_s2_streams_that_never_read_do_not_block_other_clients(db, start_api, make_token, connect):
    """A stream holds a pooled connection only while it reads: three clients that stop reading,
    against a pool of two, with megabytes to send, leave the listing and a fourth stream served."""
    w = connect()
    w.execute("SELECT audit.record(kind => 't112.big', payload => jsonb_build_object('pad', repeat(md5(i::text), 200)))"
              " FROM generate_series(1, 1500) i")
    seal_all(db)
    api = start_api(pool_size=2, heartbeat=0.5, poll_interval=0.2)
    token = make_token("reader")
    host, port = api.url.removeprefix("http://").split(":")
    stalled = []
    for _ in range(3):
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET /v1/audit/stream?since_seq=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        stalled.append(s)
    try:
        time.sleep(3)
        t0 = time.monotonic()
        with api.client(token) as c:
            r = c.get("/v1/audit", params={"limit": "5"})
        took = time.monotonic() - t0
        status, got = collect(api, token, params={"since_seq": "0", "kind_prefix": "t112."}, seconds=5,
                              until=lambda g: len(g) >= 50)
    finally:
        for s in stalled:
            s.close()
    assert r.status_code == 200 and took < 5, (r.status_code, took)
    assert status == 200 and len([1 for g in got if g[2] == "audit"]) >= 50


def test_s3_dropped_streams_leave_no_sessions_or_open_transactions(db, start_api, make_token):
    for i in range(20):
        record(db, "t112.drop", target_id=str(i))
    seal_all(db)
    api = start_api(pool_size=3, heartbeat=0.3, poll_interval=0.2)
    token = make_token("reader")
    for i in range(25):
        with api.client(token) as c, c.stream("GET", "/v1/audit/stream", params={"since_seq": str(i % 5)}) as r:
            assert r.status_code == 200
            for _ in r.iter_lines():
                break  # the first line, then hang up
    time.sleep(2)
    rows = db.execute("SELECT state, count(*) FROM pg_stat_activity WHERE datname = current_database()"
                      " AND application_name LIKE 'pgaudit serve%' GROUP BY state").fetchall()
    states = dict(rows)
    assert sum(states.values()) <= 3 + 1, states  # the pool and the listener, no more
    assert "idle in transaction" not in states and "active" not in states or states.get("active", 0) <= 1, states


# ============================================ class P ============================================


def injected(page) -> int:
    return page.evaluate("document.querySelectorAll('[data-t112]').length + (window.t112 ? 1000 : 0)")


def test_p1_markup_in_every_event_field_listed_live_and_in_detail_stays_text(db, start_api, make_token, page,
                                                                            connect):
    w = connect("app_writer")
    fields = dict(target_type="t112" + MARK[:20].replace("<", "x"), target_id=MARK + "\n\u202e" + '"\'',
                  payload={MARK: MARK, "k\"'\n": [MARK, {"</script>": MARK}]})
    with audit_context(w, actor_type="user", actor_id=MARK + "\u202e", tenant_id="t112" + MARK,
                       correlation_id=MARK):
        record(w, "t112.listed", **fields)
    seal_all(db)
    api = start_api()
    sign_in(page, api, make_token("reader"))
    wait_rows(page, lambda r: any("t112.listed" in " ".join(x) for x in r))
    with audit_context(w, actor_type="user", actor_id=MARK, tenant_id=MARK, correlation_id=MARK):
        record(w, "t112.live", **fields)
    seal_all(db)
    wait_rows(page, lambda r: any("t112.live" in " ".join(x) for x in r), timeout=20)
    for kind in ("t112.listed", "t112.live"):
        page.click(f"#events tbody tr:has-text('{kind}')")
        page.wait_for_selector("#detail:not([hidden])")
        time.sleep(0.3)
        assert injected(page) == 0, kind
    assert MARK[:10] in page.content().replace("&lt;", "<") or "data-t112" in page.inner_text("body")
    assert page.dialogs == []


def test_p2_markup_in_a_tracked_tables_column_names_and_values_stays_text(db, start_api, make_token, page, connect):
    db.execute(f'''CREATE TABLE public.t112_cols (id int PRIMARY KEY, "{MARK.replace('"', "'")}" text,
                   "a""b\nc\u202ed" text); ALTER TABLE public.t112_cols OWNER TO app_maintainer;
                   GRANT ALL ON public.t112_cols TO app_writer''')
    enable_tracking(connect("app_maintainer"), "public.t112_cols")
    w = connect("app_writer")
    w.execute('INSERT INTO public.t112_cols VALUES (1, %s, %s)', (MARK, MARK))
    w.execute('UPDATE public.t112_cols SET "a""b\nc\u202ed" = %s WHERE id = 1', (MARK + "2",))
    seal_all(db)
    api = start_api()
    sign_in(page, api, make_token("reader"))
    rows = wait_rows(page, lambda r: any("update" in " ".join(x) for x in r))
    for label in ("insert", "update"):
        page.click(f"#events tbody tr:has-text('.{label}')")
        page.wait_for_selector("#detail:not([hidden])")
        time.sleep(0.3)
        assert injected(page) == 0, (label, rows[:2])
    assert page.dialogs == []


@pytest.mark.parametrize("suffix", ["?t=" + MARK, "#" + MARK, "?token=x#%3Cb%20data-t112%3D1%3E",
                                    "page/../?<b data-t112=1>"])
def test_p3_markup_in_the_pages_url_is_never_rendered(db, start_api, make_token, page, suffix):
    record(db, "order.paid")
    seal(db)
    api = start_api()
    page.goto(api.url + "/" + suffix)
    page.fill("#token", make_token("reader"))
    page.click("#signin-form button")
    page.wait_for_selector("#app:not([hidden])")
    time.sleep(0.5)
    assert injected(page) == 0 and page.dialogs == []


def test_p4_markup_in_tracked_table_and_column_names_on_the_health_view_stays_text(db, start_api, make_token, page,
                                                                                  connect):
    col = "<b data-t112=1>x</b>"  # names are cut at 63 bytes
    db.execute(f'''CREATE SCHEMA "t112_{col}"; GRANT USAGE ON SCHEMA "t112_{col}" TO PUBLIC;
                   CREATE TABLE "t112_{col}"."{col}" (id int PRIMARY KEY, "x{col}" text, "y{col}" text, "z{col}" text);
                   ALTER TABLE "t112_{col}"."{col}" OWNER TO app_maintainer''')
    m = connect("app_maintainer")
    from pgaudit_py.rate_limits import enable_rate_limit
    try:
        qualified = f'"t112_{col}"."{col}"'
        enable_tracking(m, qualified, exclude_columns=[f"x{col}"], redact_columns=[f"y{col}"], tenant_column=f"z{col}",
                        kind_prefix="t112.hostile")
        enable_rate_limit(m, qualified, per_user_per_minute=5)
        api = start_api()
        sign_in(page, api, make_token("reader"))
        page.click("nav button[data-view=health]")
        deadline = time.monotonic() + 15
        while not (page.eval_on_selector_all("#tracked tbody tr", "t => t.length")
                   and page.eval_on_selector_all("#limits tbody tr", "t => t.length")):
            assert time.monotonic() < deadline, "the health view never filled"
            time.sleep(0.1)
        time.sleep(0.3)
        text = page.inner_text("#tracked")
        assert injected(page) == 0 and page.dialogs == []
        assert "data-t112" in text, text[:300]
    finally:
        db.execute(f'DROP SCHEMA "t112_{col}" CASCADE')


def test_p5_a_tenant_tokens_live_view_shows_only_its_tenant(db, start_api, make_token, page, connect):
    record(db, "order.paid", tenant_id="t112a", target_id="a-0")
    seal(db)
    api = start_api(heartbeat=0.3, poll_interval=0.2)
    sign_in(page, api, make_token(tenant_id="t112a"))
    wait_rows(page, lambda r: any("a-0" in " ".join(x) for x in r))
    w = connect()
    for i in range(5):
        record(w, "order.paid", tenant_id="t112b", target_id=f"B-SECRET-{i}")
        record(w, "order.paid", tenant_id="t112a", target_id=f"a-{i + 1}")
        seal(w)
    got = wait_rows(page, lambda r: any("a-5" in " ".join(x) for x in r), timeout=20)
    assert not any("B-SECRET" in " ".join(x) for x in got)
    assert "B-SECRET" not in page.content()


def test_p6_a_token_revoked_under_an_open_page_is_forgotten_and_never_sent_again(db, start_api, make_token, page,
                                                                                connect):
    """http.md: "a 401 forgets it too"; "a stream's error event reload[s] the page, so that nothing of
    one session is left for the next"."""
    record(db, "order.paid", target_id="t112-first")
    seal(db)
    api = start_api(heartbeat=0.3, poll_interval=0.2)
    token = make_token("reader", name="t112-page")
    sign_in(page, api, token)
    wait_rows(page, lambda r: any("t112-first" in " ".join(x) for x in r))
    revoke_token(connect("app_maintainer"), "t112-page")
    record(db, "order.paid", target_id="t112-after")
    seal(db)
    page.wait_for_selector("#app", state="hidden", timeout=15000)
    sent_after: list[str] = []
    page.on("request", lambda req: sent_after.append(req.url) if token in (req.headers.get("authorization") or "")
            else None)
    time.sleep(3)
    stored = page.evaluate("JSON.stringify(Object.entries(sessionStorage))")
    assert token not in stored and secret_part(token) not in stored, stored
    assert sent_after == [], sent_after[:3]
    assert "t112-after" not in page.content()


# ============================================ class K ============================================


@pytest.fixture
def arch(db, tmp_path):
    directory = tmp_path / "archive"
    public = build_archive(db, tmp_path / "keys", f"file://{directory}", rounds=6)
    return directory, public, tmp_path


def _refused(verifier, directory, public):
    builtin, standalone, out, stdout = both(verifier, f"file://{directory}", public)
    return builtin, standalone, out, stdout


def test_k1_a_gzip_member_appended_to_a_data_object_is_refused(arch, verifier_file):  # noqa: F811
    directory, public, _ = arch
    b = batches(directory)[1]
    path = directory / f"{b}.jsonl.gz"
    first_line = gzip.decompress(path.read_bytes()).split(b"\n")[0]
    path.write_bytes(path.read_bytes() + gzip.compress(first_line + b"\n", mtime=0))
    builtin, standalone, out, stdout = _refused(verifier_file, directory, public)
    assert builtin == standalone == 1, out + stdout
    assert "Traceback" not in out + stdout


@pytest.mark.parametrize("tail", [b"\x00" * 8, b"garbage", gzip.compress(b"", mtime=0)])
def test_k2_bytes_after_the_gzip_stream_are_refused_cleanly(arch, verifier_file, tail):  # noqa: F811
    directory, public, _ = arch
    path = directory / f"{batches(directory)[0]}.jsonl.gz"
    path.write_bytes(path.read_bytes() + tail)
    builtin, standalone, out, stdout = _refused(verifier_file, directory, public)
    assert builtin == standalone == 1, out + stdout
    assert "Traceback" not in out + stdout and out == stdout


def test_k3_a_middle_batch_left_out_is_refused(arch, verifier_file):  # noqa: F811
    directory, public, _ = arch
    middle = batches(directory)[1]
    for suffix in (".manifest.json", ".jsonl.gz"):
        (directory / f"{middle}{suffix}").unlink()
    builtin, standalone, out, stdout = _refused(verifier_file, directory, public)
    assert builtin == standalone == 1 and "PROBLEM" in stdout, out + stdout


def test_k4_the_whole_archive_resigned_by_another_key_is_refused_with_the_genuine_public_key(
        arch, verifier_file):  # noqa: F811
    """Every manifest re-signed, consistently (links recomputed), with the attacker's key and its
    public key embedded: the auditor's genuine public key refuses it."""
    directory, public, tmp = arch
    generate_keys(tmp / "evil")
    evil = load_keys(signing_key=tmp / "evil" / "checkpoint-ed25519.pem")
    prev = None
    for b in batches(directory):
        path = directory / f"{b}.manifest.json"
        doc = json.loads(path.read_text())
        body = doc["manifest"]
        body["prev_manifest_sha256"] = prev
        doc["signatures"] = sign(body, evil)
        text = canonical.dumps(doc) + "\n"
        path.write_text(text)
        prev = hashlib.sha256(text.encode()).hexdigest()
    builtin, standalone, out, stdout = _refused(verifier_file, directory, public)
    assert builtin == standalone == 1, out + stdout


ODD = [
    '{"n": 1e-400, "m": -0, "big": 100000000000000000000000000000000000001, "f": 0.1e1, "e": 1E+2}',
    '{"s": "\\uffff\\ufffe\\ud83d\\ude00\\u2028\\u0085\\u00ad\\u200b", "k\\u0301": "e\\u0301", "\\u00e9": 1}',
    '{"deep": ' + "[" * 30 + "1.000000000000000000000000000001" + "]" * 30 + "}",
    '{"n": 123456789012345678901234567890.123456789012345678901234567890e-5}',
]


def test_k5_odd_numbers_and_unicode_archived_verify_alike_offline_online_and_in_sql(db, tmp_path,
                                                                                  verifier_file):  # noqa: F811
    generate_keys(tmp_path / "keys")
    for _r in range(4):
        for p in ODD:
            db.execute("SELECT audit.record(kind => 't112.odd', payload => %s::jsonb)", (p,))
        seal(db)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 10, 3)")
    time.sleep(0.05)
    from pgaudit_py.archive import archive
    from pgaudit_py.archive_targets import open_target
    url = f"file://{tmp_path}/arch"
    archive(db, open_target(url), load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem"),
            older_than=timedelta(milliseconds=1))
    public = tmp_path / "keys" / "checkpoint-ed25519.pub.pem"
    builtin, standalone, out, stdout = both(verifier_file, url, public)
    sql_ok = db.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    i = db.info
    online = CliRunner().invoke(cli, ["archive", "verify", "--target", url, "--public-key", str(public), "--dsn",
                                      f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"])
    assert sql_ok[0] is True, sql_ok
    assert (builtin, standalone, online.exit_code) == (0, 0, 0), out + stdout + online.output
    # one line edited to an equal-looking number: every verifier refuses
    b = batches(Path(f"{tmp_path}/arch"))[0]
    path = Path(f"{tmp_path}/arch/{b}.jsonl.gz")
    lines = gzip.decompress(path.read_bytes()).split(b"\n")[:-1]
    idx = next(k for k, line in enumerate(lines) if b"1e-400" in line or b"big" in line)
    lines[idx] = lines[idx].replace(b"100000000000000000000000000000000000001", b"1.00000000000000000000000000000000000001e38")
    path.write_bytes(gzip.compress(b"".join(x + b"\n" for x in lines), mtime=0))
    b2, s2, o2, st2 = both(verifier_file, url, public)
    assert b2 == s2 == 1, o2 + st2


# ============================================ class C ============================================

CLI_CASES = {
    "secrets role revokes a token": ("app_secrets", ["tokens", "revoke", "t112-live"],
                                     "SELECT count(*) FROM audit.api_tokens WHERE revoked_at IS NULL"),
    "writer revokes a token": ("app_writer", ["tokens", "revoke", "t112-live"],
                               "SELECT count(*) FROM audit.api_tokens WHERE revoked_at IS NULL"),
    "secrets role creates a token": ("app_secrets", ["tokens", "create", "--name", "t112-new"],
                                     "SELECT count(*) FROM audit.api_tokens"),
    "writer lists tokens": ("app_writer", ["tokens", "list"], "SELECT 0"),
    "secrets role prunes": ("app_secrets", ["prune", "--older-than", "1s", "--yes"],
                            "SELECT count(*) FROM audit.event_log"),
    "writer archive settings": ("app_writer", ["archive", "settings", "--hot-retention", "1d"],
                                "SELECT hot_retention::text FROM audit.archive_settings"),
    "reader limits unset": ("app_reader", ["limits", "unset", "public.t112_lim"],
                            "SELECT count(*) FROM audit.rate_limits"),
    "writer untrack": ("app_writer", ["untrack", "public.t112_tr"], "SELECT count(*) FROM audit.tracked_tables"),
    "secrets role seals": ("app_secrets", ["seal"], "SELECT count(*) FROM audit.event_intake"),
    "reader secrets list": ("app_reader", ["secrets", "list"], "SELECT 0"),
    "writer history": ("app_writer", ["history", "public.t112_tr", "1"], "SELECT 0"),
    "writer count": ("app_writer", ["count"], "SELECT 0"),
    "secrets role events": ("app_secrets", ["events"], "SELECT 0"),
    "attacker status": ("app_attacker", ["status"], "SELECT 0"),
    "attacker record": ("app_attacker", ["record", "t112.cli"], "SELECT count(*) FROM audit.event_intake"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_c1_each_role_running_a_command_it_may_not_is_refused_with_nothing_changed(db, connect, make_token, case):
    db.execute("""CREATE TABLE public.t112_tr (id int PRIMARY KEY); ALTER TABLE public.t112_tr OWNER TO app_maintainer;
                  CREATE TABLE public.t112_lim (id int PRIMARY KEY); ALTER TABLE public.t112_lim OWNER TO app_maintainer;
                  GRANT ALL ON public.t112_tr TO app_writer""")
    m = connect("app_maintainer")
    m.execute("SELECT audit.enable_tracking('public.t112_tr')")
    with suppress(Exception):
        CliRunner().invoke(cli, ["limits", "set", "public.t112_lim", "--per-user", "5", "--dsn",
                                 f"host={db.info.host} port={db.info.port} dbname={db.info.dbname} user=app_maintainer"])
    connect("app_writer").execute("INSERT INTO public.t112_tr VALUES (1)")
    token = make_token(name="t112-live")
    record(db, "order.paid")
    seal(db)
    record(db, "order.pending")
    time.sleep(1.1)
    role, args, probe = CLI_CASES[case]
    before, events_before = db.execute(probe).fetchall(), n_intake_and_log(db)
    code, text = run_cli(db, role, *args)
    assert code != 0, (case, text[-300:])
    assert "Traceback" not in text
    assert secret_part(token) not in text
    assert db.execute(probe).fetchall() == before, case
    if case != "secrets role seals":
        assert n_intake_and_log(db) == events_before, case


def _who(db, kind):
    return db.execute("SELECT actor_type, actor_id, tenant_id FROM audit.events WHERE kind = %s ORDER BY intake_id",
                      (kind,)).fetchall()


def test_c2_an_exception_inside_a_nested_block_gives_back_the_outer_values(db, connect):
    w = connect("app_writer")
    with audit_context(w, actor_type="user", actor_id="t112_outer", tenant_id="t112_t"):
        with suppress(RuntimeError), audit_context(w, actor_id="t112_inner", tenant_id="t112_other"):
            record(w, "t112.inner_lost")
            raise RuntimeError("boom")
        record(w, "t112.outer_after")
    record(w, "t112.outside")
    assert _who(db, "t112.inner_lost") == []  # rolled back with its savepoint
    assert _who(db, "t112.outer_after") == [("user", "t112_outer", "t112_t")]
    assert _who(db, "t112.outside") == [("db_role", "app_writer", None)]


def test_c3_another_threads_record_on_a_connection_with_a_block_open_is_refused(db, connect):
    """python.md: "another thread's or asyncio task's audit_context or record on a connection where a
    block is open is refused with UnsupportedSession, while the block lasts"."""
    w = connect("app_writer")
    inside, done = threading.Event(), threading.Event()
    errors: list[BaseException | None] = []

    def other():
        inside.wait(10)
        try:
            record(w, "t112.other_thread")
            errors.append(None)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with audit_context(w, actor_type="user", actor_id="t112_alice", tenant_id="t112_t"):
        inside.set()
        done.wait(10)
    t.join(10)
    assert errors and isinstance(errors[0], UnsupportedSession), errors
    assert _who(db, "t112.other_thread") == []


def test_c4_another_asyncio_tasks_block_on_a_shared_connection_is_refused(db):
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_writer"
    outcome: dict[str, object] = {}

    async def go():
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            gate = asyncio.Event()

            async def alice():
                async with aio.audit_context(conn, actor_type="user", actor_id="t112_alice"):
                    gate.set()
                    await asyncio.sleep(0.3)
                    await aio.record(conn, "t112.alice")

            async def mallory():
                await gate.wait()
                try:
                    async with aio.audit_context(conn, actor_type="user", actor_id="t112_mallory"):
                        await aio.record(conn, "t112.mallory")
                    outcome["mallory"] = None
                except Exception as e:  # noqa: BLE001
                    outcome["mallory"] = e

            await asyncio.gather(asyncio.create_task(alice()), asyncio.create_task(mallory()))
        finally:
            await conn.close()

    t = threading.Thread(target=lambda: asyncio.run(go()))  # Playwright's loop runs in this thread
    t.start()
    t.join(30)
    assert isinstance(outcome.get("mallory"), UnsupportedSession), outcome
    assert _who(db, "t112.alice") == [("user", "t112_alice", None)]
    assert _who(db, "t112.mallory") == []


def test_c5_a_pooled_connection_after_a_failed_block_names_nobody(db):
    from psycopg_pool import ConnectionPool

    i = db.info
    pool = ConnectionPool(f"host={i.host} port={i.port} dbname={i.dbname} user=app_writer", min_size=1, max_size=1,
                          kwargs={"autocommit": True}, open=True)
    try:
        with suppress(RuntimeError), pool.connection() as conn:
            conn.execute("SELECT set_config('pgaudit_py.actor_id', 't112_leak', false),"
                         " set_config('pgaudit_py.tenant_id', 't112_leak_t', false),"
                         " set_config('pgaudit_py.actor_type', 'user', false)")
            with audit_context(conn, actor_type="user", actor_id="t112_alice", tenant_id="t112_t"):
                record(conn, "t112.failed_block")
                raise RuntimeError("boom")
        with pool.connection() as conn, audit_context(conn, correlation_id="t112-next"):
            record(conn, "t112.next_borrower")
    finally:
        pool.close()
    assert _who(db, "t112.failed_block") == []
    assert _who(db, "t112.next_borrower") == [("db_role", "app_writer", None)]


def test_c6_a_block_outside_a_transaction_clears_what_the_session_set_before(db, connect):
    """python.md: "Outside any transaction, the values it does not name are cleared (nothing carries
    over from the session)"."""
    w = connect("app_writer")
    w.execute("SET pgaudit_py.actor_id = 't112_mallory'; SET pgaudit_py.actor_type = 'user';"
              " SET pgaudit_py.tenant_id = 't112_victim'; SET pgaudit_py.correlation_id = 't112-forged'")
    with audit_context(w, correlation_id="t112-real"):
        record(w, "t112.cleared")
    row = db.execute("SELECT actor_type, actor_id, tenant_id, correlation_id FROM audit.events"
                     " WHERE kind = 't112.cleared'").fetchone()
    assert row == ("db_role", "app_writer", None, "t112-real"), row
