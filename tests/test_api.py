"""The HTTP API on a real loopback server: every endpoint against every kind of token, tenant
tokens confined to their tenant whatever the parameters say, paging, bad parameters, errors as
JSON, archiving on demand, and no token in any log line."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from stop_signals import signal_until_exit

from pgaudit_py import record, seal
from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint
from pgaudit_py.tokens import revoke_token

GETS = ["/v1/audit", "/v1/audit/count", "/v1/audit/monthly", "/v1/audit/stream", "/v1/audit/verify",
        "/v1/audit/status", "/v1/audit/archives", "/v1/audit/tracked", "/v1/audit/limits", "/v1/whoami"]
WHOLE_INSTALLATION = {"/v1/audit/verify", "/v1/audit/status", "/v1/audit/archives", "/v1/audit/tracked",
                      "/v1/audit/limits"}
ARCHIVE_RUN = "/v1/audit/archive/run"


@pytest.fixture
def archive_keys(tmp_path):
    generate_keys(tmp_path / "keys")
    return load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem")


@pytest.fixture
def tokens(db, connect, make_token):
    made = {"reader": make_token("reader"), "maintainer": make_token("maintainer"),
            "tenant": make_token("reader", tenant_id="t1"), "expired": make_token("reader", name="expired"),
            "revoked": make_token("reader", name="revoked"), "unknown": "pga_000000000000_" + "0" * 64,
            "malformed": "not-a-token"}
    db.execute("UPDATE audit.api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'expired'")
    revoke_token(connect("app_maintainer"), "revoked")
    return made


def _status(client: httpx.Client, method: str, path: str) -> int:
    if path.endswith("/stream"):
        with client.stream(method, path) as response:
            return response.status_code
    return client.request(method, path).status_code


EXPECTED = {
    None: {**{p: 401 for p in GETS}, ARCHIVE_RUN: 401},
    "malformed": {**{p: 401 for p in GETS}, ARCHIVE_RUN: 401},
    "unknown": {**{p: 401 for p in GETS}, ARCHIVE_RUN: 401},
    "expired": {**{p: 401 for p in GETS}, ARCHIVE_RUN: 401},
    "revoked": {**{p: 401 for p in GETS}, ARCHIVE_RUN: 401},
    "reader": {**{p: 200 for p in GETS}, ARCHIVE_RUN: 403},
    "maintainer": {**{p: 200 for p in GETS}, ARCHIVE_RUN: 200},
    "tenant": {**{p: 403 if p in WHOLE_INSTALLATION else 200 for p in GETS}, ARCHIVE_RUN: 403},
}


@pytest.mark.parametrize("who", list(EXPECTED))
def test_every_endpoint_answers_each_kind_of_token_as_it_should(db, start_api, tokens, who, tmp_path, archive_keys):
    api = start_api(failures_allowed=1000, archive_target=f"file://{tmp_path}/archive", archive_keys=archive_keys)
    with api.client(tokens[who] if who else None) as client:
        got = {path: _status(client, "GET", path) for path in GETS}
        got[ARCHIVE_RUN] = _status(client, "POST", ARCHIVE_RUN)
        assert got == EXPECTED[who]
        assert client.get("/healthz").status_code == 200 and client.get("/openapi.json").status_code == 200
        if who in (None, "malformed", "unknown", "expired", "revoked"):
            body = client.get("/v1/audit").json()
            assert body["error"]["code"] == "unauthorized" and "WWW-Authenticate" in client.get("/v1/audit").headers


def _tenant_data(db) -> None:
    # The same kind, target, actor and correlation in two tenants and in none.
    for tenant in ("t1", "t2", None):
        for i in range(3):
            record(db, "order.paid", tenant_id=tenant, target_type="order", target_id="o-1", actor_id="alice",
                   actor_type="user", correlation_id="c-1", outcome="failure" if i == 2 else "success")
    seal(db)
    record(db, "order.refunded", tenant_id="t2", target_type="order", target_id="o-1", actor_id="alice")  # pending


@pytest.mark.parametrize("query", [
    {}, {"kind_prefix": "order"}, {"target_type": "order"}, {"target_id": "o-1"}, {"correlation_id": "c-1"},
    {"outcome": "failure"}, {"actor_type": "user"}, {"actor_id": "alice"}, {"since": "2000-01-01T00:00:00Z"},
    {"before_seq": "100"}, {"limit": "500"}, {"tenant_id": "t1"}])
def test_a_tenant_token_reads_its_tenant_through_every_filter(db, start_api, tokens, query):
    _tenant_data(db)
    api = start_api()
    with api.client(tokens["tenant"]) as client:
        events = client.get("/v1/audit", params=query).json()["events"]
        assert events and {e["tenant_id"] for e in events} == {"t1"}
        count = client.get("/v1/audit/count", params={k: v for k, v in query.items()
                                                        if k in ("tenant_id", "since")}).json()
        assert count["count"] == db.execute("SELECT count(*) FROM audit.events WHERE tenant_id = 't1'").fetchone()[0]
        months = client.get("/v1/audit/monthly").json()["months"]
        assert sum(m["count"] for m in months) == count["count"]
    with api.client(tokens["reader"]) as client:  # an unscoped token sees the others
        assert {e["tenant_id"] for e in client.get("/v1/audit", params={"target_id": "o-1"}).json()["events"]} == {
            "t1", "t2", None}


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/count", "/v1/audit/monthly", "/v1/audit/stream"])
def test_a_tenant_token_asking_for_another_tenant_gets_403_and_no_events(db, start_api, tokens, path):
    _tenant_data(db)
    api = start_api()
    with api.client(tokens["tenant"]) as client:
        for other in ("t2", "T1", "t1 ", ""):
            response = client.get(path, params={"tenant_id": other})
            assert response.status_code in (400, 403), (other, response.status_code)
            assert "events" not in response.json() and "count" not in response.json()


def test_the_stream_of_a_tenant_token_carries_its_tenant_only(db, start_api, tokens):
    from api_server import sse_messages

    _tenant_data(db)
    api = start_api()
    with api.client(tokens["tenant"]) as client, client.stream("GET", "/v1/audit/stream",
                                                               params={"since_seq": "0"}) as response:
        seen = []
        for message in sse_messages(response):
            if message.data:
                seen.append(json.loads(message.data)["tenant_id"])
            if len(seen) == 3:
                break
    assert seen == ["t1", "t1", "t1"]


def test_pages_follow_next_links_newest_first_through_pending_and_sealed(db, start_api, tokens):
    db.execute("SELECT audit.record(kind => 'order.paid', target_id => i::text) FROM generate_series(1, 130) i")
    seal(db)
    db.execute("SELECT audit.record(kind => 'order.paid', target_id => i::text) FROM generate_series(131, 190) i")
    api = start_api()
    seen: list[str] = []
    with api.client(tokens["reader"]) as client:
        link: str | None = "/v1/audit?limit=50&kind_prefix=order"
        while link:
            page = client.get(link).json()
            assert len(page["events"]) <= 50
            seen += [e["target_id"] for e in page["events"]]
            link = page["next"]
            assert link is None or "kind_prefix=order" in link
    assert seen == [str(i) for i in range(190, 0, -1)]


@pytest.mark.parametrize(("query", "says"), [
    ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "abc"}, "limit"), ({"limit": "-1"}, "limit"),
    ({"limit": "1e3"}, "limit"), ({"limit": "٣"}, "limit"), ({"limit": "99999999999999999999999"}, "limit"),
    ({"before_seq": "0"}, "before_seq"), ({"before_seq": "1", "before_intake_id": "1"}, "not both"),
    ({"outcome": "maybe"}, "outcome"), ({"since": "yesterday"}, "since"),
    ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "after"),
    ({"kind_prefix": "a b"}, "kind prefix"), ({"actor_id": "a\x00b"}, "NUL"), ({"actor_id": "x" * 1025}, "1024"),
    ({"tenant": "t1"}, "an unknown parameter; this endpoint takes: "), ({"token": "x"}, "Authorization header"),
    ({"access_token": "x"}, "Authorization header"), ({"limit": ["5", "6"]}, "more than once"),
])
def test_each_bad_parameter_is_a_400_that_names_it_and_writes_nothing(db, start_api, tokens, counts, query, says):
    api = start_api()
    before = counts()
    with api.client(tokens["reader"]) as client:
        response = client.get("/v1/audit", params=query)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_parameter" and says in response.json()["error"]["message"]
    assert counts() == before


@pytest.mark.parametrize(("path", "query", "says"), [
    ("/v1/audit/count", {"by_kind_prefix": ["ok", "b a d"]}, "kind prefix"),
    ("/v1/audit/count", {"by_kind_prefix": [f"k{i}" for i in range(101)]}, "at most 100"),
    ("/v1/audit/monthly", {"months": "121"}, "months"), ("/v1/audit/monthly", {"months": "0"}, "months"),
    ("/v1/audit/stream", {"since_seq": "-5"}, "since_seq"), ("/v1/audit/verify", {"x": "1"}, "unknown parameter"),
])
def test_bad_parameters_of_the_other_endpoints(start_api, tokens, path, query, says):
    api = start_api()
    with api.client(tokens["reader"]) as client:
        response = client.get(path, params=query)
    assert response.status_code == 400 and says in response.json()["error"]["message"]


def test_a_bad_last_event_id_is_a_400(start_api, tokens):
    api = start_api()
    with api.client(tokens["reader"]) as client:
        assert client.get("/v1/audit/stream", headers={"Last-Event-ID": "abc"}).status_code == 400


def test_unknown_paths_and_wrong_methods_answer_json(start_api, tokens):
    api = start_api()
    with api.client(tokens["reader"]) as client:
        missing = client.get("/v1/audits")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        for method, path in (("POST", "/v1/audit"), ("DELETE", "/v1/audit"), ("GET", ARCHIVE_RUN),
                             ("PUT", "/healthz")):
            wrong = client.request(method, path)
            assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
            assert wrong.headers["allow"]
        assert "GET" in client.post("/v1/audit").headers["allow"]
        assert client.get(ARCHIVE_RUN).headers["allow"] == "POST"


def test_unknown_tokens_are_refused_after_ten_a_minute_from_one_address(start_api, tokens, db):
    api = start_api()
    with api.client("pga_000000000000_" + "1" * 64) as bad, api.client(tokens["reader"]) as good:
        assert [bad.get("/v1/audit").status_code for _ in range(10)] == [401] * 10
        # From now on a lookup would fail (a 500): the 429s below come before the database is asked.
        db.execute("REVOKE EXECUTE ON FUNCTION audit.authenticate_api_token(bytea) FROM audit_reader")
        refused = [bad.get("/v1/audit") for _ in range(20)]
        assert {r.status_code for r in refused} == {429} and int(refused[0].headers["retry-after"]) >= 1
        # A token this server has not yet seen authenticate waits too; /healthz needs none.
        assert good.get("/v1/audit").status_code == 429
        assert good.get("/healthz").status_code == 200


def test_no_token_reaches_a_log_line(start_api, tokens, caplog):
    api = start_api()
    caplog.set_level(logging.INFO, logger="pgaudit_py")
    with api.client(tokens["reader"]) as client:
        client.get("/v1/audit", params={"actor_id": "alice"})
        client.get("/v1/audit", params={"token": tokens["maintainer"]})  # a token misplaced in the URL
        lost = client.get(f"/v1/audit/{tokens['maintainer']}")  # ... or in its path: logged as `-`
        assert lost.status_code == 404 and tokens["maintainer"] not in lost.text
    with api.client(tokens["revoked"]) as client:
        client.get("/v1/audit")
    deadline = time.monotonic() + 5  # the line is written once the response has gone out
    while caplog.text.count("pgaudit_py.server.access") < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    text = caplog.text
    assert "/v1/audit 200 token=" in text and "/v1/audit 400" in text and "/v1/audit 401 token=-" in text
    assert "GET - 404" in text
    for token in tokens.values():
        assert token.rsplit("_", 1)[-1] not in text
    assert "alice" not in text  # no query strings either


def test_archive_run_archives_with_the_servers_target_and_names_the_token(db, start_api, tokens, tmp_path,
                                                                          archive_keys, connect):
    db.execute("SELECT audit.record(kind => 'order.paid') FROM generate_series(1, 30)")
    seal(db)
    connect("app_maintainer").execute("SELECT audit.set_archive_settings(interval '1 second', 1000, 3)")
    time.sleep(1.1)
    sealed = db.execute("SELECT max(seq) FROM audit.event_log").fetchone()[0]  # the tokens' events too
    api = start_api(archive_target=f"file://{tmp_path}/archive", archive_keys=archive_keys)
    with api.client(tokens["maintainer"]) as client:
        run = client.post(ARCHIVE_RUN).json()
        assert run["skipped"] is False and run["events"] == sealed and run["batches"][0]["last_seq"] == sealed
        batches = client.get("/v1/audit/archives").json()["batches"]
        assert [(b["state"], b["first_seq"], b["last_seq"]) for b in batches] == [("deleted", 1, sealed)]
        verdict = client.get("/v1/audit/verify").json()
        assert verdict["ok"] and verdict["highest_archived_seq"] == sealed
        assert client.post(ARCHIVE_RUN).json() == {"skipped": False, "events": 0, "batches": []}
    assert list((tmp_path / "archive").rglob("*.jsonl.gz"))
    actor = db.execute("SELECT actor_type, actor_id FROM audit.events WHERE kind = 'audit.archived'").fetchone()
    assert actor == ("api_token", "t1")  # the maintainer token's name (make_token numbers them)


def test_archive_run_without_a_target_or_with_a_reader_database_role_is_a_503(start_api, tokens, tmp_path,
                                                                              archive_keys):
    with start_api().client(tokens["maintainer"]) as client:
        response = client.post(ARCHIVE_RUN)
        assert response.status_code == 503 and response.json()["error"]["code"] == "archive_not_configured"
    api = start_api("app_reader", archive_target=f"file://{tmp_path}/a", archive_keys=archive_keys)
    with api.client(tokens["maintainer"]) as client:
        response = client.post(ARCHIVE_RUN)
        assert response.status_code == 503 and response.json()["error"]["code"] == "archive_not_permitted"


def test_verify_reports_the_tier_boundary_and_the_newest_checkpoint(db, start_api, tokens, tmp_path, connect):
    generate_keys(tmp_path / "keys")
    keys = load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem")
    db.execute("SELECT audit.record(kind => 'order.paid') FROM generate_series(1, 10)")
    seal(db)
    (tmp_path / "cp").mkdir()
    (tmp_path / "cp" / "old.json").write_text(json.dumps(make_checkpoint(db, keys)))
    db.execute("SELECT audit.record(kind => 'order.paid') FROM generate_series(1, 5)")
    seal(db)
    (tmp_path / "cp" / "new.json").write_text(json.dumps(make_checkpoint(db, keys)))
    (tmp_path / "cp" / "junk.json").write_text("{not json")
    api = start_api(checkpoint_dir=tmp_path / "cp",
                    checkpoint_keys=load_keys(public_key=tmp_path / "keys" / "checkpoint-ed25519.pub.pem"))
    with api.client(tokens["reader"]) as client:
        verdict = client.get("/v1/audit/verify").json()
    assert verdict["ok"] and verdict["oldest_hot_seq"] == 1 and verdict["highest_archived_seq"] is None
    assert verdict["events_checked"] == 21  # with the tokens' six events
    checkpoint = verdict["last_checkpoint"]
    assert (checkpoint["file"], checkpoint["block_no"], checkpoint["last_seq"], checkpoint["ok"]) == (
        "new.json", 2, 21, True)
    # Signed by another key: the server says so.
    generate_keys(tmp_path / "other")
    other = load_keys(signing_key=tmp_path / "other" / "checkpoint-ed25519.pem")
    (tmp_path / "cp" / "forged.json").write_text(json.dumps({**make_checkpoint(db, other)}).replace(
        '"block_no": 2', '"block_no": 3'))
    with api.client(tokens["reader"]) as client:
        checkpoint = client.get("/v1/audit/verify").json()["last_checkpoint"]
    assert checkpoint["file"] == "forged.json" and not checkpoint["ok"] and len(checkpoint["problems"]) == 2


def test_a_right_taken_back_while_serving_answers_503_in_one_log_line(db, start_api, tokens, caplog):
    """docs/http.md: a right of the server's role taken back meanwhile is 503
    database_role_not_permitted, with one log line and no traceback, not a 500 per request."""
    db.execute("CREATE ROLE api_demoted LOGIN IN ROLE audit_reader")
    try:
        api = start_api("api_demoted")
        with api.client(tokens["reader"]) as client:
            assert client.get("/v1/audit").status_code == 200
            db.execute("REVOKE audit_reader FROM api_demoted")
            caplog.clear()
            refused = client.get("/v1/audit")
        api.stop()
    finally:
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'api_demoted'")
        db.execute("DROP ROLE api_demoted")
    assert (refused.status_code, refused.json()["error"]["code"]) == (503, "database_role_not_permitted")
    said = [r for r in caplog.records if r.name.startswith("pgaudit_py.server") and r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in said] == [
        "the server's database role may not do what a request needs (docs/cli.md names its least role)"]
    assert not any(r.exc_info for r in caplog.records)


def test_status_reports_backlog_and_lag(db, start_api, tokens):
    seal(db)
    db.execute("SELECT audit.record(kind => 'order.paid') FROM generate_series(1, 7)")
    api = start_api()
    with api.client(tokens["maintainer"]) as client:
        status = client.get("/v1/audit/status").json()
    assert status["pending"] == 7 and status["last_seq"] == 6 and status["lag_seconds"] >= 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(dsn: str, port: int) -> subprocess.Popen[str]:
    """`pgaudit serve` in a process of its own, once it answers /healthz (its output: stdout)."""
    server = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "serve", "--dsn", dsn, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise AssertionError(f"pgaudit serve did not start: {server.communicate()[0][-2000:]}") from None
            time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_pgaudit_serve_stops_cleanly_however_often_it_is_told_to(db, tokens, stop):
    """Ctrl-C pressed again and again (or SIGTERM repeated) while a stream is open: the second
    signal stops at once, the later ones land as the process exits; status 0, no traceback."""
    info = db.info
    port = _free_port()
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=app_reader"
    server = _serve(dsn, port)
    try:
        headers = {"Authorization": f"Bearer {tokens['reader']}"}
        with httpx.stream("GET", f"http://127.0.0.1:{port}/v1/audit/stream", headers=headers) as stream:
            assert next(stream.iter_lines()).startswith("retry:")
            output, _ = signal_until_exit(server, stop)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "Traceback" not in output and "CancelledError" not in output, output


def test_pgaudit_serve_answers_a_request_its_stop_cuts_short_with_503(db, connect, tokens):
    """docs/http.md: a request still waiting when the stop's 5 s have passed (here on a lock held
    elsewhere for good) is answered 503 server_stopping; the server exits 0, no traceback."""
    info = db.info
    port = _free_port()
    server = _serve(f"host={info.host} port={info.port} dbname={info.dbname} user=app_reader", port)
    answers: list[httpx.Response] = []
    locker = connect(autocommit=False)
    try:
        locker.execute("LOCK TABLE audit.event_log IN ACCESS EXCLUSIVE MODE")
        asking = threading.Thread(target=lambda: answers.append(httpx.get(
            f"http://127.0.0.1:{port}/v1/audit", headers={"Authorization": f"Bearer {tokens['reader']}"},
            timeout=60)))
        asking.start()
        deadline = time.monotonic() + 30
        while not db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                             " AND usename = 'app_reader' AND wait_event_type = 'Lock'").fetchone():
            assert time.monotonic() < deadline, "the request never waited on the lock"
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
        asking.join(timeout=60)
    finally:
        locker.rollback()
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=30)
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [(503, "server_stopping")], output
    assert server.returncode == 0 and "Traceback" not in output, output


def test_pgaudit_serve_binds_loopback_serves_and_stops_on_sigterm(db, tokens):
    info = db.info
    port = _free_port()
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=app_reader"
    server = _serve(dsn, port)
    stopping = None
    try:
        record(db, "order.paid")
        headers = {"Authorization": f"Bearer {tokens['reader']}"}
        events = httpx.get(f"http://127.0.0.1:{port}/v1/audit", headers=headers).json()["events"]
        assert [e["kind"] for e in events][:1] == ["order.paid"]
        # An open stream (the operator page keeps one) ends when the server is asked to stop.
        with httpx.stream("GET", f"http://127.0.0.1:{port}/v1/audit/stream", headers=headers) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            stopping = time.monotonic()
            server.send_signal(signal.SIGTERM)
            rest = list(lines)
        assert any("server is stopping" in line for line in rest)
    finally:
        if stopping is None:  # failed before asking it to stop (a second signal stops at once)
            server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0 and time.monotonic() - stopping < 4, output
    assert "Traceback" not in output and "CancelledError" not in output
    assert f"127.0.0.1:{port}" in output and "GET /v1/audit 200" in output
    assert tokens["reader"].rsplit("_", 1)[1] not in output


def test_pgaudit_serve_refuses_to_start_with_a_dsn_it_cannot_use(db):
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=nobody_here"
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "serve", "--dsn", dsn, "--port", str(_free_port())],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "cannot connect" in done.stderr


def test_pgaudit_serve_refuses_a_checkpoint_directory_that_is_not_there(db, tmp_path):
    """Not a server whose /v1/audit/verify says "no checkpoint" for good because of a typo."""
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=app_reader"
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "serve", "--dsn", dsn, "--port", str(_free_port()),
                           "--checkpoint-dir", str(tmp_path / "missing")], capture_output=True, text=True, timeout=30)
    # The value itself is not printed back (docs/cli.md): a key given there would be.
    assert done.returncode == 2 and "--checkpoint-dir" in done.stderr and "does not exist" in done.stderr


@pytest.mark.parametrize("target, said", [("ftp://h.invalid/x", "archive targets are file:///dir or s3://"),
                                          ("s3://", "an S3 URL without a bucket name"),
                                          ("file://elsewhere/x", "a file URL names a local directory")])
def test_pgaudit_serve_refuses_an_archive_target_that_is_none_before_it_starts(db, target, said):
    """Not a server whose every POST /v1/audit/archive/run answers 503 because of a typo."""
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=app_maintainer"
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "serve", "--dsn", dsn, "--port", str(_free_port()),
                           "--archive-target", target], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert done.stderr.startswith("pgaudit: ") and done.stderr.count("\n") == 1, done.stderr


def test_created_tokens_work_at_once_and_revoked_ones_stop_at_the_next_request(start_api, make_token, connect):
    api = start_api()
    token = make_token(name="short-lived", expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    with api.client(token) as client:
        assert client.get("/v1/audit").status_code == 200
        revoke_token(connect("app_maintainer"), "short-lived")
        assert client.get("/v1/audit").status_code == 401


def test_the_core_package_does_not_import_the_server():
    probe = subprocess.run([sys.executable, "-c", "import sys, pgaudit_py, pgaudit_py.cli; "
                            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                            "('starlette', 'uvicorn', 'psycopg_pool')))"],
                           capture_output=True, text=True, env={**os.environ}, timeout=60)
    assert probe.stdout.strip() == "[]", probe.stderr


def test_create_app_mounts_inside_another_starlette_application(db, make_token):
    from api_server import LiveServer
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from pgaudit_py.server import create_app

    info = db.info
    audit_api = create_app(f"host={info.host} port={info.port} dbname={info.dbname} user=app_reader")
    host = Starlette(routes=[Route("/", lambda request: PlainTextResponse("the application")),
                             Mount("/audit", app=audit_api)], lifespan=audit_api.router.lifespan_context)
    token = make_token()
    server = LiveServer(app=host)
    try:
        with server.client(token) as client:
            assert client.get("/").text == "the application"
            assert client.get("/audit/healthz").json()["database"] is True
            page = client.get("/audit/v1/audit", params={"limit": "1"}).json()
            assert page["events"][0]["kind"] == "audit.api_token.created"
            assert page["next"].startswith("/audit/v1/audit?limit=1&before_intake_id=")
            assert client.get(page["next"]).status_code == 200
    finally:
        server.stop()


def test_pgaudit_serve_logs_no_long_piece_of_its_dsn(db, tokens):
    """The pool's own warnings (a lost connection, a failed reconnection, which repeat the server's
    message) go through the same replacement as every other stderr line of the command line: a long
    piece of what was given (here the role's name in --dsn) is not printed (docs/cli.md)."""
    role = "t_api_serve_role_named_as_long_as_a_key_0123"
    db.execute(f"CREATE ROLE {role} LOGIN IN ROLE audit_reader")
    info = db.info
    port = _free_port()
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user={role}"
    server = _serve(dsn, port)
    try:
        db.execute(f"ALTER ROLE {role} NOLOGIN")
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        headers = {"Authorization": f"Bearer {tokens['reader']}"}
        with suppress(httpx.TimeoutException):  # the server waits for the pool, which cannot connect
            httpx.get(f"http://127.0.0.1:{port}/v1/audit", headers=headers, timeout=3)
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        db.execute(f"DROP ROLE {role}")
    assert "psycopg.pool" in output and "the value given" in output, output
    assert role not in output and role[:32] not in output, output
