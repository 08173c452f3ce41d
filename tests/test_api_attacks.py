"""Attacks on the HTTP API, from a helper's attack run (each failed once; each names what it tries):
revocation of an open stream, the failure brake, verify and NOTIFY floods against the pool, forged
log lines, redirects, ambiguous ids, attribution, odd headers and parameters, tenant escapes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import threading
import time

import httpx
import psycopg
import pytest
from api_server import sse_messages

from pgaudit_py import record, seal
from pgaudit_py.tokens import create_token, revoke_token


def _raw(api, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes to the server and return what it answers (up to the close or the timeout)."""
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


# --- findings -------------------------------------------------------------------------------------

def test_a_revoked_token_stops_reading_an_open_stream(db, connect, start_api, make_token):
    """Revocation is the incident response to a leaked token: an open stream must not outlive it."""
    token = make_token("reader", name="leaked", tenant_id="t1")
    seal(db)
    api = start_api(poll_interval=0.2, heartbeat=0.5)
    got_after_revoke = []
    with api.client(token) as client, client.stream("GET", "/v1/audit/stream") as response:
        messages = sse_messages(response)
        next(messages)
        revoke_token(connect("app_maintainer"), "leaked")
        time.sleep(1)
        record(db, "order.paid", tenant_id="t1", actor_id="after-revocation")
        seal(db)
        deadline = time.monotonic() + 5
        try:
            for m in messages:
                if m.event == "error":
                    assert json.loads(m.data)["code"] == "unauthorized"
                    break
                if m.data and json.loads(m.data)["actor_id"] == "after-revocation":
                    got_after_revoke.append(json.loads(m.data)["actor_id"])
                    break
                if time.monotonic() > deadline:
                    break
        except httpx.HTTPError:
            pass  # the server ended the stream: good
    assert got_after_revoke == [], "a revoked token kept receiving events on its open stream"


def test_an_invalid_kind_prefix_on_the_stream_is_a_400(db, start_api, make_token):
    record(db, "order.paid")
    seal(db)
    api = start_api()
    with api.client(make_token()) as client, client.stream(
            "GET", "/v1/audit/stream", params={"kind_prefix": "a b", "since_seq": "0"}) as response:
        status = response.status_code
        try:
            body = b"".join(response.iter_bytes())
        except httpx.HTTPError as exc:
            body = repr(exc).encode()
    assert status == 400, (status, body[:300])


def test_the_access_log_cannot_be_forged_with_an_encoded_newline(start_api, caplog):
    api = start_api()
    caplog.set_level(logging.INFO, logger="pgaudit_py.server.access")
    forged = ("/x%0D%0A2026-01-01 00:00:00 pgaudit_py.server.access INFO POST /v1/audit/archive/run 200 token=abc 1.0ms"
              .replace(" ", "%20"))
    _raw(api, f"GET {forged} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout=5)
    deadline = time.monotonic() + 5
    while not [r for r in caplog.records if r.name == "pgaudit_py.server.access"] and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "pgaudit_py.server.access"]
    assert lines and not any("\n" in line or "\r" in line for line in lines), lines


def test_spoofed_x_forwarded_for_does_not_bypass_the_failure_brake(start_api):
    api = start_api(failures_allowed=3)
    codes = []
    with api.client("pga_000000000000_" + "1" * 64) as bad:
        for i in range(20):
            codes.append(bad.get("/v1/audit", headers={"X-Forwarded-For": f"10.0.{i}.1"}).status_code)
    assert 429 in codes, codes


def test_failed_guesses_from_a_shared_address_do_not_lock_out_a_valid_token(start_api, make_token):
    """Behind a proxy that sets no X-Forwarded-For (or a NAT), every client has one address."""
    api = start_api(failures_allowed=3)
    known, new = make_token(), make_token()
    with api.client("garbage") as attacker, api.client(known) as victim:
        for _ in range(10):  # malformed: refused without asking the database, and not counted
            assert attacker.get("/v1/audit").status_code == 401
        assert victim.get("/v1/audit").status_code == 200
    with api.client("pga_000000000000_" + "2" * 64) as guesser, api.client(known) as victim, \
            api.client(new) as newcomer:
        assert [guesser.get("/v1/audit").status_code for _ in range(4)] == [401, 401, 401, 429]
        assert victim.get("/v1/audit").status_code == 200  # it authenticated before: still looked up
        assert newcomer.get("/v1/audit").status_code == 429  # the price of the brake, for a minute


def test_the_brake_keeps_a_bounded_number_of_short_keys():
    from starlette.requests import Request

    from pgaudit_py.server.auth import ADDRESSES_KEPT, FailureBrake, client_key

    brake = FailureBrake()
    for i in range(ADDRESSES_KEPT + 5000):
        brake.failed(client_key(Request({"type": "http", "client": (f"2001:db8:{i:x}::{i % 7}", 1)})), b"")
    assert len(brake._failures) == ADDRESSES_KEPT
    assert max(len(k) for k in brake._failures) <= len("2001:db8:ffff::/64")
    # One host's /64 is one key, and a name that is no address is one key for all such names.
    assert client_key(Request({"type": "http", "client": ("2001:db8::1", 1)})) == client_key(
        Request({"type": "http", "client": ("2001:db8::ffff:1", 2)}))
    assert client_key(Request({"type": "http", "client": ("x" * 8000, 1)})) == "unknown"


def test_a_time_with_a_fractional_second_offset_is_a_400_not_a_500(start_api, make_token):
    api = start_api()
    with api.client(make_token()) as client:
        for value in ("2026-01-01T00:00:00+05:30:15.123456", "2026-01-01T00:00:00+05:30:15",
                      "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
            for path in ("/v1/audit", "/v1/audit/count"):
                response = client.get(path, params={"since": value})
                assert response.status_code in (200, 400), (path, value, response.status_code, response.text)


def test_a_trailing_slash_is_a_json_404_not_a_redirect_to_the_host_header(start_api, make_token):
    api = start_api()
    answer = _raw(api, b"GET /v1/audit/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert "evil.example" not in head and head.startswith("HTTP/1.1 404"), head


def test_revoke_by_id_is_not_ambiguous_with_a_name(db, connect):
    from pgaudit_py.errors import InvalidInput

    maintainer = connect("app_maintainer")
    victim = create_token(maintainer, "victim", "reader")
    # A name that looks like the victim's id is refused, so an id names one token.
    with pytest.raises(InvalidInput, match="look like a token id"):
        create_token(maintainer, victim.info.token_id, "reader")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO audit.api_tokens (token_id, name, role, token_sha256, created_by)"
                   " VALUES ('0123456789ab', 'abcdef012345', 'reader', sha256('x'), 'x')")
    gone = revoke_token(maintainer, victim.info.token_id)  # the operator copies the id from `tokens list`
    assert gone.name == "victim"


def test_token_events_are_not_attributed_by_the_sessions_context(db, connect):
    """create/revoke record tenant and actor from pgaudit_py.* settings when the token has none."""
    maintainer = connect("app_maintainer")
    maintainer.execute("SELECT set_config('pgaudit_py.tenant_id', 'victim-tenant', false),"
                       " set_config('pgaudit_py.actor_type', 'user', false),"
                       " set_config('pgaudit_py.actor_id', 'alice', false)")
    create_token(maintainer, "global-maint", "maintainer")
    seal(db)
    row = db.execute("SELECT tenant_id, actor_type, actor_id FROM audit.events"
                     " WHERE kind = 'audit.api_token.created'").fetchone()
    assert row == (None, "db_role", "app_maintainer"), row


def test_last_event_id_is_held_to_the_same_range_as_since_seq(start_api, make_token):
    api = start_api()
    with api.client(make_token()) as client, client.stream(
            "GET", "/v1/audit/stream", headers={"Last-Event-ID": "9999999999999999999"}) as r:
        assert r.status_code == 400


def test_many_open_streams_do_not_starve_other_requests(db, start_api, make_token):
    """Every stream queries the pool on every round; with a small pool other requests must still be served."""
    token = make_token()
    seal(db)
    api = start_api(pool_size=2, poll_interval=0.05, heartbeat=60)
    stop = threading.Event()

    def hold_stream():
        with contextlib.suppress(httpx.HTTPError), \
                httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c, \
                c.stream("GET", "/v1/audit/stream", params={"target_id": "nothing", "since_seq": "0"}) as r:
            for _ in r.iter_lines():  # until the server stops under it, at the end
                if stop.is_set():
                    return

    threads = [threading.Thread(target=hold_stream, daemon=True) for _ in range(60)]
    for t in threads:
        t.start()
    time.sleep(2)
    with api.client(token) as client:
        started = time.monotonic()
        assert client.get("/v1/audit", params={"limit": "1"}).status_code == 200
        took = time.monotonic() - started
    stop.set()
    assert took < 1.0, f"a one-event page took {took:.1f} s behind 60 idle streams"


# --- attacks that held ----------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    "bearer {t}", "BEARER {t}", "Bearer  {t}", "Bearer {t} ", "Basic {t}", "Bearer\t{t}", "{t}", "Bearer",
    "Bearer pga_" + "0" * 12 + "_" + "0" * 64, "Bearer " + "A" * 8000, "Bearer pga_é€",
])
def test_odd_authorization_headers(start_api, make_token, header):
    token = make_token()
    api = start_api(failures_allowed=1000)
    value = header.format(t=token)
    answer = _raw(api, b"GET /v1/audit HTTP/1.1\r\nHost: x\r\nAuthorization: " + value.encode("utf-8")
                  + b"\r\nConnection: close\r\n\r\n")
    status = int(answer.split(b" ", 2)[1])
    ok = value.split(" ", 1)[0].lower() == "bearer" and value.split(" ", 1)[1].strip() == token \
        if " " in value else False
    assert status == (200 if ok else 401), (value[:40], status)


def test_two_authorization_headers_use_the_first(start_api, make_token):
    reader, tenant = make_token(), make_token(tenant_id="t1")
    api = start_api()
    answer = _raw(api, (f"GET /v1/audit/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tenant}\r\n"
                        f"Authorization: Bearer {reader}\r\nConnection: close\r\n\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 403")


@pytest.mark.parametrize("query", [
    "tenant_id=t2", "tenant_id=t1&tenant_id=t2", "tenant_id=t2&tenant_id=t1", "tenant%5Fid=t2", "TENANT_ID=t2",
    "tenant_id=t1%00", "tenant_id=%74%32", "tenant_id=t%FF", "tenant_id=t1;tenant_id=t2", "tenant_id[]=t2",
    "tenant_id=t1%E2%80%8B", "tenant_id=%EF%BC%B41",
])
def test_tenant_escape_through_parameter_tricks(db, start_api, make_token, query):
    for tenant in ("t1", "t2"):
        record(db, "order.paid", tenant_id=tenant)
    seal(db)
    api = start_api()
    with api.client(make_token(tenant_id="t1")) as client:
        for path in ("/v1/audit", "/v1/audit/count", "/v1/audit/monthly"):
            response = client.get(f"{path}?{query}")
            if response.status_code == 200:
                body = response.json()
                if "events" in body:
                    assert {e["tenant_id"] for e in body["events"]} <= {"t1"}
                if "count" in body:
                    assert body["count"] == 2  # t1's order.paid and its own token's creation
            else:
                assert response.status_code in (400, 403), (path, query, response.status_code)


def test_tenant_token_next_links_and_last_event_id_stay_in_the_tenant(db, start_api, make_token):
    for i in range(10):
        record(db, "order.paid", tenant_id="t1" if i % 2 else "t2", target_id=str(i))
    seal(db)
    api = start_api()
    with api.client(make_token(tenant_id="t1")) as client:
        link, seen = "/v1/audit?limit=2", []
        while link:
            page = client.get(link).json()
            seen += page["events"]
            link = page["next"]
        assert seen and {e["tenant_id"] for e in seen} == {"t1"}
        with client.stream("GET", "/v1/audit/stream", headers={"Last-Event-ID": "0"}) as r:
            got = []
            for m in sse_messages(r):
                if m.data:
                    got.append(json.loads(m.data)["tenant_id"])
                if len(got) == 5:
                    break
        assert set(got) == {"t1"}


@pytest.mark.parametrize(("method", "path"), [
    ("HEAD", "/v1/audit/verify"), ("GET", "/v1/audit/verify/"), ("GET", "/v1/audit//verify"),
    ("GET", "/v1/audit/./verify"), ("GET", "/v1/audit/%2e/verify"), ("GET", "/V1/audit/verify"),
    ("GET", "/v1/audit/verify%00"), ("GET", "/v1/audit/archives?x=1"), ("HEAD", "/v1/audit/archives"),
])
def test_a_tenant_token_never_reaches_whole_installation_endpoints(start_api, make_token, method, path):
    api = start_api()
    token = make_token(tenant_id="t1")
    answer = _raw(api, f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                       "Connection: close\r\n\r\n".encode(), timeout=5)
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]


@pytest.mark.parametrize("override", [{"X-HTTP-Method-Override": "POST"}, {"X-Method-Override": "POST"}])
def test_a_reader_cannot_run_the_archiver(start_api, make_token, override, tmp_path):
    api = start_api()
    with api.client(make_token()) as client:
        assert client.get("/v1/audit/archive/run", headers=override).status_code == 405
        assert client.post("/v1/audit/archive/run", headers=override).status_code == 403
        assert client.post("/v1/audit/archive/run/").status_code in (403, 404, 405, 307)


@pytest.mark.parametrize("role", ["app_reader", "app_writer", "app_attacker", "app_secrets"])
def test_database_roles_cannot_touch_tokens_or_forge_their_events(connect, make_token, role):
    make_token(name="existing")
    conn = connect(role)
    attempts = [
        "SELECT token_sha256 FROM audit.api_tokens",
        "SELECT audit._record('audit.api_token.created', NULL, NULL, NULL, 'api_token', 'x', '{}', 'success', NULL,"
        " NULL)",
        "SELECT audit.record('audit.api_token.revoked')",
        "SELECT audit._token_shown(a) FROM audit.api_tokens a",
        "INSERT INTO audit.api_tokens (token_id, name, role, token_sha256, created_by)"
        " VALUES ('aaaaaaaaaaaa', 'x', 'maintainer', '\\x" + "00" * 32 + "', 'x')",
        "SELECT * FROM audit.list_api_tokens()",
        "SELECT * FROM audit.revoke_api_token('existing')",
    ]
    for statement in attempts:
        with pytest.raises(psycopg.Error):
            conn.execute(statement)


def test_security_definer_token_functions_pin_search_path_and_deny_public(db):
    rows = db.execute("""
        SELECT p.proname, p.prosecdef, p.proconfig, has_function_privilege('public', p.oid, 'EXECUTE'),
               has_function_privilege('app_attacker', p.oid, 'EXECUTE'),
               has_function_privilege('app_writer', p.oid, 'EXECUTE')
          FROM pg_proc p WHERE p.pronamespace = 'audit'::regnamespace AND p.proname LIKE '%api_token%'""").fetchall()
    assert len(rows) == 4
    for name, secdef, config, public, attacker, writer in rows:
        assert secdef and config == ["search_path=pg_catalog, pg_temp"], name
        assert not public and not attacker and not writer, name


@pytest.mark.parametrize("name", ["x'); DROP TABLE audit.api_tokens; --", "a\nb", "é", "-x", "a" * 129, ""])
def test_hostile_token_names_are_refused(connect, name):
    from pgaudit_py.errors import PgAuditError
    with pytest.raises((psycopg.Error, PgAuditError)):
        create_token(connect("app_maintainer"), name, "reader")


def test_hostile_tenant_id_is_stored_verbatim_and_confines(db, connect, start_api):
    tenant = "t1' OR '1'='1"
    token = create_token(connect("app_maintainer"), "odd", "reader", tenant_id=tenant).token
    record(db, "order.paid", tenant_id="t1")
    record(db, "order.paid", tenant_id=tenant)
    seal(db)
    api = start_api()
    with api.client(token) as client:
        assert {e["tenant_id"] for e in client.get("/v1/audit").json()["events"]} == {tenant}


@pytest.mark.parametrize("query", [
    "limit=%00", "since=2026-01-01%00", "actor_id=%FF%FE", "before_seq=9223372036854775808",
    "before_seq=9223372036854775807", "limit=00000000000000000050", "since=2026-13-01", "since=-infinity",
    "since=0000-01-01", "kind_prefix=%C0%AF", "a=" + "b" * 9000, "&".join(f"p{i}=1" for i in range(2000)),
    "limit=%EF%BC%95", "until=2026-01-01T00:00:00%2B99:00",
])
def test_odd_parameters_are_400_never_500(db, start_api, make_token, counts, query):
    api = start_api()
    before = counts()
    with api.client(make_token()) as client:
        seal(db)
        before = counts()
        response = client.get(f"/v1/audit?{query}")
    assert response.status_code in (200, 400, 414, 431), (query[:60], response.status_code, response.text[:200])
    assert counts() == before


def test_unknown_and_revoked_tokens_answer_alike_and_revocation_is_immediate(start_api, make_token, connect):
    token = make_token(name="soon-gone")
    api = start_api(failures_allowed=1000)
    with api.client(token) as client:
        assert client.get("/v1/audit").status_code == 200
        revoke_token(connect("app_maintainer"), "soon-gone")
        revoked = client.get("/v1/audit")
    with api.client("pga_" + token.split("_")[1] + "_" + "0" * 64) as client:
        unknown = client.get("/v1/audit")
    assert revoked.status_code == unknown.status_code == 401
    assert revoked.json() == unknown.json()
    assert revoked.headers["www-authenticate"] == unknown.headers["www-authenticate"]


def test_hostile_scalars_are_escaped_on_the_stream(db, start_api, make_token):
    record(db, "order.paid", tenant_id="t\u2028x", actor_id="a\u2029\u0085b", target_id="</script><x>",
           payload={"n": "\u2028"})
    db.execute("SELECT audit.record(kind => 'order.paid', payload => '{\"n\": 1e350, \"d\": "
               + "[" * 100 + "]" * 100 + "}'::jsonb)")
    seal(db)
    api = start_api()
    with api.client(make_token()) as client, client.stream("GET", "/v1/audit/stream",
                                                           params={"since_seq": "0", "kind_prefix": "order."}) as r:
        raw = []
        for line in r.iter_lines():
            if line.startswith("data: "):
                raw.append(line[6:])
            if len(raw) == 2:
                break
    for data in raw:
        assert not any(c in data for c in "\u2028\u2029\u0085\r\n")
        json.loads(data)
    assert "1e350" in raw[1] or "1e+350" in raw[1] or "1" + "0" * 350 in raw[1]


def test_the_token_hash_alone_does_not_authenticate(start_api, make_token):
    token = make_token()
    api = start_api(failures_allowed=1000)
    with api.client(hashlib.sha256(token.encode()).hexdigest()) as client:
        assert client.get("/v1/audit").status_code == 401


def test_concurrent_verify_requests_do_not_starve_the_pool(db, start_api, make_token):
    """verify recomputes the whole chain: it runs one at a time, on a connection of its own, so
    that readers asking for it again and again cannot hold the pool's connections."""
    db.execute("SELECT audit.record(kind => 'order.paid', payload => jsonb_build_object('i', i))"
               " FROM generate_series(1, 120000) i")
    seal(db, 200000)
    token = make_token()
    api = start_api(pool_size=2)
    results = []

    def verify():
        with api.client(token) as c:
            results.append(c.get("/v1/audit/verify").json())

    threads = [threading.Thread(target=verify, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    with api.client(token) as client:
        started = time.monotonic()
        health = client.get("/healthz")
        page = client.get("/v1/audit", params={"limit": "1"})
        waited = time.monotonic() - started
    for t in threads:
        t.join()
    assert (health.status_code, page.status_code) == (200, 200) and waited < 1.0, waited
    assert [r["reused"] for r in results].count(False) == 1  # one ran; the others waited for it and took its verdict
    verdicts = [{k: v for k, v in r.items() if k != "reused"} for r in results]
    assert len(results) == 6 and all(v == verdicts[0] for v in verdicts) and verdicts[0]["ok"], results
    assert results[0]["events_checked"] == 120000  # the token's event is pending
    verifying = db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgaudit serve (verify)'")
    assert verifying.fetchone() == (0,)  # each verify's connection is closed after it


def _seal_state_reads(db) -> int:
    db.execute("SELECT pg_stat_clear_snapshot()")
    row = db.execute("SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
                     " WHERE relid = 'audit.seal_state'::regclass").fetchone()
    return int(row[0])


def test_any_database_login_cannot_make_every_stream_query_in_a_loop(db, connect, start_api, make_token):
    """NOTIFY needs no privilege: app_attacker (no audit role at all) wakes every open stream, and
    each stream then reads the high-water mark through the pool."""
    token = make_token()
    seal(db)
    api = start_api(pool_size=3, poll_interval=30, heartbeat=60)
    stop = threading.Event()
    opened = threading.Semaphore(0)

    def hold_stream():
        with contextlib.suppress(httpx.HTTPError), \
                httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c, \
                c.stream("GET", "/v1/audit/stream") as r:
            opened.release()
            for _ in r.iter_lines():  # until the server stops under it, at the end
                if stop.is_set():
                    return

    streams = 20
    for _ in range(streams):
        threading.Thread(target=hold_stream, daemon=True).start()
    for _ in range(streams):
        assert opened.acquire(timeout=20)
    time.sleep(0.5)
    attacker = connect("app_attacker")
    before = _seal_state_reads(db)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        attacker.execute("NOTIFY audit")
    time.sleep(0.5)
    reads = _seal_state_reads(db) - before
    with api.client(token) as client:
        assert client.get("/v1/audit", params={"limit": "1"}).status_code == 200
    stop.set()
    # Nothing was sealed: the streams have nothing to read. One look per round at most would be ~1 a stream.
    assert reads < 5 * streams, f"{reads} high-water reads in 3 s, forced by a role with no audit privilege"


def test_a_tenant_token_does_not_learn_other_tenants_volume(db, start_api, make_token):
    """The stream's first comment, and each event's seq, block_no and intake_id, count every tenant's events."""
    token = make_token(tenant_id="t1")
    seal(db)
    api = start_api()
    with api.client(token) as client, client.stream("GET", "/v1/audit/stream") as r:
        first = next(m for m in sse_messages(r) if m.comment).comment
    db.execute("SELECT audit.record(kind => 'order.paid', tenant_id => 't2') FROM generate_series(1, 500)")
    seal(db)
    with api.client(token) as client, client.stream("GET", "/v1/audit/stream") as r:
        second = next(m for m in sse_messages(r) if m.comment).comment
    assert first == second, (first, second)  # t2's 500 events showed through


def test_head_on_the_stream_ends(start_api, make_token):
    api = start_api()
    token = make_token()
    started = time.monotonic()
    answer = _raw(api, f"HEAD /v1/audit/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                       "Connection: close\r\n\r\n".encode(), timeout=5)
    assert answer.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 4, answer[:100]
