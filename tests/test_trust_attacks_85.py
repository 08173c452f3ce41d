"""An eighty-fifth attacker's trial: the HTTP API and its live stream, the operator page in a real
browser, the archive and the auditor's kit, and secrets, rate limits, prune and the command line's
least privilege, against fc05a3b.

Classes (test names carry the letter):
  H. HTTP API and stream: tokens (expired, revoked, another tenant's, forged, cut, case and space
     variants, huge headers), tenant isolation, forged cursors and Last-Event-IDs, hostile parameters.
  P. the operator page in Chromium: hostile values render as text; no request beyond the token's scope.
  A. archives: forged, replayed, cut and re-signed manifests and objects; restore refuses what
     verification refuses; hostile content survives archive and restore byte for byte.
  S. secrets, rate limits, prune, the CLI's least roles and passwords in its output.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when
an honest use is refused). Roles made here are named t85_*, dropped afterwards.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
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
from test_archive import aws, s3_endpoint  # noqa: F401  (fixtures)
from test_archive_offline import batches, both, build_archive, rewrite_data, verifier_file  # noqa: F401
from test_secrets import client_key_setup
from trial_helpers import both_verifiers, seal_all, sqlstate_of

from pgaudit_py import canonical, record, seal, secrets
from pgaudit_py.checkpoint import generate_keys, load_keys, sign
from pgaudit_py.cli import cli
from pgaudit_py.tokens import create_token, revoke_token

# ============================================ helpers ============================================


def secret_part(token: str) -> str:
    return token.rsplit("_", 1)[1]


def n_intake_and_log(db) -> tuple[int, int]:
    return db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log)").fetchone()


def two_tenants(db, n: int = 3) -> None:
    for i in range(n):
        record(db, "order.paid", tenant_id="t85a", target_id=f"a-{i}", payload={"who": "a"})
        record(db, "order.paid", tenant_id="t85b", target_id=f"b-{i}", payload={"who": "b-SECRET"})
    seal_all(db)


def stream_collect(api, token: str, *, params=None, headers=None, seconds: float = 3.0) -> tuple[int, list]:
    """The status and the data messages a stream sends within `seconds` (heartbeats keep it moving)."""
    got: list = []
    with api.client(token) as client, client.stream("GET", "/v1/audit/stream", params=params or {},
                                                    headers=headers or {}) as response:
        status = response.status_code
        if status != 200:
            return status, got
        deadline = time.monotonic() + seconds
        try:
            for m in sse_messages(response):
                if m.data is not None:
                    got.append((m.id, m.event, m.data))
                if time.monotonic() > deadline:
                    break
        except httpx.HTTPError:
            pass
    return status, got


def run_cli(*args: str, dsn_role: str | None = None, db=None, input: str | None = None, env=None):
    extra: list[str] = []
    if dsn_role is not None:
        i = db.info
        extra = ["--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user={dsn_role}"]
    result = CliRunner().invoke(cli, [*args, *extra], input=input, env=env)
    try:
        err = result.stderr
    except ValueError:
        err = ""
    return result.exit_code, result.output + err, result


# ============================================ class H ============================================


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/count", "/v1/audit/monthly", "/v1/whoami", "/v1/audit/stream"])
def test_h1_an_expired_token_is_refused_everywhere_like_an_unknown_one(db, start_api, make_token, path):
    """A token that expired a moment ago: 401, the same answer as an unknown token's, nothing read."""
    record(db, "order.paid", tenant_id="t85a")
    seal(db)
    token = make_token("reader", expires_at=datetime.now(timezone.utc) + timedelta(seconds=1))
    api = start_api()
    with api.client(token) as c:
        assert c.get("/v1/whoami").status_code == 200  # honest while live
    time.sleep(1.5)
    with api.client(token) as c, api.client("pga_000000000000_" + "7" * 64) as u:
        with c.stream("GET", path, params={"since_seq": "0"} if path.endswith("stream") else {}) as r:
            status = r.status_code
            body = r.read() if status != 200 else b""
        unknown = u.get("/v1/whoami")
    assert status == 401, (status, body[:300])
    assert json.loads(body) == unknown.json()
    assert secret_part(token).encode() not in body


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/count", "/v1/audit/verify", "/v1/whoami"])
def test_h2_a_revoked_token_is_refused_from_the_next_request(db, connect, start_api, make_token, path):
    token = make_token("reader", name="t85-revoked")
    api = start_api()
    with api.client(token) as c:
        assert c.get(path).status_code == 200
        revoke_token(connect("app_maintainer"), "t85-revoked")
        r = c.get(path)
    assert r.status_code == 401 and "events" not in r.json() and "count" not in r.json(), r.text[:300]


def test_h3_a_rotated_token_old_dies_new_lives(db, connect, start_api, make_token):
    """Rotation as an operator does it: a new token, the old one revoked. The old one reads nothing
    more, the new one reads at once."""
    old = make_token("reader", name="t85-rot-1", tenant_id="t85a")
    api = start_api()
    new = make_token("reader", name="t85-rot-2", tenant_id="t85a")
    revoke_token(connect("app_maintainer"), old)  # revoked by pasting the whole token
    with api.client(old) as o, api.client(new) as n:
        assert o.get("/v1/audit").status_code == 401
        assert n.get("/v1/audit").status_code == 200
    live = db.execute("SELECT name FROM audit.api_tokens WHERE revoked_at IS NULL ORDER BY name").fetchall()
    assert ("t85-rot-1",) not in live and ("t85-rot-2",) in live


def test_h4_a_tenant_token_lists_only_its_tenant_whatever_it_asks(db, start_api, make_token):
    two_tenants(db)
    api = start_api()
    with api.client(make_token(tenant_id="t85a")) as c:
        mine = c.get("/v1/audit", params={"limit": "500"})
        assert mine.status_code == 200
        assert {e["tenant_id"] for e in mine.json()["events"]} == {"t85a"}
        for other in ("t85b", "t85a ", "T85A", "t85a\u200b", "%", "t85%"):
            r = c.get("/v1/audit", params={"tenant_id": other})
            assert r.status_code == 403, (other, r.status_code)
            assert "b-SECRET" not in r.text


def test_h5_a_tenant_tokens_count_and_monthly_are_its_tenants_alone(db, start_api, make_token):
    two_tenants(db, 4)
    record(db, "order.paid", tenant_id="t85b")
    seal(db)
    api = start_api()
    with api.client(make_token(tenant_id="t85a")) as c:
        count = c.get("/v1/audit/count", params=[("by_kind_prefix", "order.")]).json()
        monthly = c.get("/v1/audit/monthly", params=[("by_kind_prefix", "order.")]).json()
    truth = db.execute("SELECT count(*) FROM audit.events WHERE tenant_id = 't85a'").fetchone()[0]
    assert count["count"] == truth
    assert sum(m["count"] for m in monthly["months"]) == truth


def test_h6_a_next_link_from_one_tenant_replayed_by_another_reads_only_its_own(db, start_api, make_token):
    for i in range(6):
        record(db, "order.paid", tenant_id="t85a", target_id=f"a-{i}")
        record(db, "order.paid", tenant_id="t85b", target_id=f"b-{i}")
    seal_all(db)
    api = start_api()
    with api.client(make_token(tenant_id="t85a")) as a, api.client(make_token(tenant_id="t85b")) as b:
        first = a.get("/v1/audit", params={"limit": "2"}).json()
        link = first["next"]
        assert link and "before_seq" in link
        replay = b.get(link)  # B follows A's cursor: no tenant_id in it, so B's own tenant applies
        assert replay.status_code == 200
        assert {e["tenant_id"] for e in replay.json()["events"]} <= {"t85b"}
        forged = b.get(link + "&tenant_id=t85a")
        assert forged.status_code in (400, 403)
        # a cursor of a seq far beyond, or before everything: no other tenant either way
        for seq in ("1", str(2**63 - 1)):
            r = b.get("/v1/audit", params={"before_seq": seq, "limit": "500"})
            assert r.status_code == 200 and {e["tenant_id"] for e in r.json()["events"]} <= {"t85b"}


@pytest.mark.parametrize("path", ["/v1/audit/verify", "/v1/audit/status", "/v1/audit/archives", "/v1/audit/tracked",
                                  "/v1/audit/limits"])
def test_h7_a_tenant_token_gets_nothing_from_whole_installation_endpoints(db, start_api, make_token, path):
    two_tenants(db, 1)
    api = start_api()
    with api.client(make_token(tenant_id="t85a")) as c:
        r = c.get(path)
    assert r.status_code == 403 and set(r.json()) == {"error"}, r.text[:300]


def test_h8_a_reader_token_cannot_run_an_archive_and_nothing_is_written(db, start_api, make_token, tmp_path):
    generate_keys(tmp_path / "keys")
    record(db, "order.paid")
    seal(db)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 10, 3)")
    time.sleep(1.1)
    api = start_api(archive_target=f"file://{tmp_path}/arch",
                    archive_keys=load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem"))
    tokens = (make_token("reader"), make_token("reader", tenant_id="t85a"))
    before = n_intake_and_log(db)
    for token in tokens:
        with api.client(token) as c:
            r = c.post("/v1/audit/archive/run")
        assert r.status_code == 403, r.text[:200]
    assert db.execute("SELECT count(*) FROM audit.archive_batches").fetchone()[0] == 0
    assert n_intake_and_log(db) == before
    assert not (tmp_path / "arch").exists() or not any((tmp_path / "arch").iterdir())


def test_h9_a_maintainer_token_bound_to_a_tenant_is_refused_at_creation(db, connect):
    with pytest.raises(Exception):  # noqa: B017
        create_token(connect("app_maintainer"), "t85-mt", "maintainer", tenant_id="t85a")
    assert db.execute("SELECT count(*) FROM audit.api_tokens WHERE name = 't85-mt'").fetchone()[0] == 0


def _variants(token: str) -> dict[str, dict[str, str]]:
    tid, secret = token[4:16], secret_part(token)
    return {
        "upper-case hex": {"Authorization": f"Bearer pga_{tid}_{secret.upper()}"},
        "upper-case prefix": {"Authorization": f"Bearer PGA_{tid}_{secret}"},
        "cut by one": {"Authorization": f"Bearer {token[:-1]}"},
        "one more digit": {"Authorization": f"Bearer {token}0"},
        "other token id": {"Authorization": f"Bearer pga_{'0' * 12}_{secret}"},
        "secret alone": {"Authorization": f"Bearer {secret}"},
        "basic scheme": {"Authorization": f"Basic {token}"},
        "no scheme": {"Authorization": token},
        "two tokens": {"Authorization": f"Bearer {token} {token}"},
        "comma list": {"Authorization": f"Bearer {token}, Bearer {token}"},
        "fullwidth digit": {"Authorization": f"Bearer {token[:-1]}\uff10"},
        "NUL inside": {"Authorization": f"Bearer {token[:20]}%00{token[20:]}"},
        "in a cookie": {"Cookie": f"token={token}"},
        "X-Api-Key": {"X-Api-Key": token},
    }


@pytest.mark.parametrize("variant", list(_variants("pga_" + "0" * 12 + "_" + "0" * 64)))
def test_h10_forged_cut_and_case_variants_of_a_live_token_are_refused_and_never_said_back(
        db, start_api, make_token, variant):
    two_tenants(db, 1)
    token = make_token("reader")
    api = start_api()
    headers = _variants(token)[variant]
    with httpx.Client(base_url=api.url, timeout=30) as c:
        try:
            r = c.get("/v1/audit", headers=headers)
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            return  # the client itself refuses to send it: nothing reached the server
    assert r.status_code in (400, 401), (variant, r.status_code)
    assert secret_part(token) not in r.text and secret_part(token).upper() not in r.text
    assert "events" not in r.text


@pytest.mark.parametrize("where", ["query", "path", "method"])
def test_h11_a_token_sent_in_the_wrong_place_is_not_logged_or_repeated(db, start_api, make_token, caplog, where):
    token = make_token("reader")
    api = start_api()
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=api.url, timeout=30) as c:
        if where == "query":
            r = c.get("/v1/audit", params={"access_token": token})
        elif where == "path":
            r = c.get(f"/v1/audit/{token}")
        else:
            r = c.request(token[:40].upper().replace("_", ""), "/v1/audit")
    time.sleep(0.3)
    logged = "\n".join(rec.getMessage() for rec in caplog.records if rec.name.startswith(("pgaudit_py", "uvicorn")))
    assert r.status_code in (400, 401, 404, 405)
    assert secret_part(token)[:32] not in r.text and secret_part(token)[:32] not in logged
    assert token[4:16] not in r.text


def test_h12_a_very_long_authorization_header_is_refused_and_the_server_lives_on(db, start_api, make_token):
    token = make_token("reader")
    api = start_api()
    statuses = []
    with httpx.Client(base_url=api.url, timeout=30) as c:
        for size in (8_000, 70_000, 1_000_000):
            try:
                statuses.append(c.get("/v1/audit", headers={"Authorization": "Bearer " + "a" * size}).status_code)
            except httpx.HTTPError:
                statuses.append(None)  # the connection was closed: also a refusal
        ok = c.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert all(s in (None, 400, 401, 413, 431) for s in statuses), statuses
    assert ok.status_code == 200


HOSTILE_PARAMS = {
    "limit -1": ("/v1/audit", {"limit": "-1"}),
    "limit 0": ("/v1/audit", {"limit": "0"}),
    "limit 501": ("/v1/audit", {"limit": "501"}),
    "limit NaN": ("/v1/audit", {"limit": "NaN"}),
    "limit 1e3": ("/v1/audit", {"limit": "1e3"}),
    "limit fullwidth": ("/v1/audit", {"limit": "\uff15"}),
    "limit arabic digit": ("/v1/audit", {"limit": "\u0665"}),
    "limit huge": ("/v1/audit", {"limit": "9" * 40}),
    "limit space": ("/v1/audit", {"limit": " 5"}),
    "before_seq 0": ("/v1/audit", {"before_seq": "0"}),
    "before_seq negative": ("/v1/audit", {"before_seq": "-5"}),
    "before_seq 2**63": ("/v1/audit", {"before_seq": str(2**63)}),
    "before_seq and before_intake_id": ("/v1/audit", {"before_seq": "5", "before_intake_id": "5"}),
    "since NaN": ("/v1/audit", {"since": "NaN"}),
    "since month 13": ("/v1/audit", {"since": "2026-13-01"}),
    "since offset +23:59": ("/v1/audit", {"since": "2026-01-01T00:00:00+23:59"}),
    "until offset -23:59:59": ("/v1/audit", {"until": "2026-01-01T00:00:00-23:59:59"}),
    "since year 1 east": ("/v1/audit", {"since": "0001-01-01T00:00:00+14:00"}),
    "until year 9999 west": ("/v1/audit", {"until": "9999-12-31T23:59:59.999999-14:00"}),
    "since week date": ("/v1/audit", {"since": "2026-W01-1"}),
    "since after until": ("/v1/audit", {"since": "2026-02-01", "until": "2026-01-01"}),
    "tenant NUL": ("/v1/audit", {"tenant_id": "a\x00b"}),
    "tenant 5000 chars": ("/v1/audit", {"tenant_id": "x" * 5000}),
    "tenant lone surrogate bytes": ("/v1/audit?tenant_id=%ED%A0%80", {}),
    "tenant invalid utf-8": ("/v1/audit?tenant_id=%FF%FE", {}),
    "kind_prefix sql": ("/v1/audit", {"kind_prefix": "order'; DROP TABLE audit.event_log; --"}),
    "kind_prefix percent": ("/v1/audit", {"kind_prefix": "%"}),
    "kind_prefix unicode": ("/v1/audit", {"kind_prefix": "\u043erder."}),
    "target_id sql": ("/v1/audit", {"target_id": "1' OR '1'='1"}),
    "outcome other": ("/v1/audit", {"outcome": "SUCCESS"}),
    "actor_id RTL": ("/v1/audit", {"actor_id": "\u202eecila"}),
    "unknown param": ("/v1/audit", {"evil": "1"}),
    "repeated limit": ("/v1/audit?limit=1&limit=2", {}),
    "count months": ("/v1/audit/monthly", {"months": "0"}),
    "monthly 121": ("/v1/audit/monthly", {"months": "121"}),
    "count duplicate prefixes": ("/v1/audit/count?by_kind_prefix=order.&by_kind_prefix=order.", {}),
    "monthly duplicate prefixes": ("/v1/audit/monthly?by_kind_prefix=order.&by_kind_prefix=order.", {}),
    "count 101 prefixes": ("/v1/audit/count?" + "&".join(f"by_kind_prefix=p{i}." for i in range(101)), {}),
    "count empty prefix": ("/v1/audit/count?by_kind_prefix=", {}),
    "count since NaN": ("/v1/audit/count", {"since": "nan"}),
    "count since +23:59": ("/v1/audit/count", {"since": "2026-01-01T00:00:00+23:59"}),
    "monthly tenant NUL": ("/v1/audit/monthly", {"tenant_id": "\x00"}),
    "verify with a param": ("/v1/audit/verify", {"x": "1"}),
}


@pytest.mark.parametrize("case", list(HOSTILE_PARAMS))
def test_h13_hostile_parameters_are_refused_clearly_or_answered_never_a_500(db, start_api, make_token, case):
    """Each hostile parameter: a 400 (invalid_parameter), or a 200 that holds only what the filter says;
    never a 500, and the log is untouched."""
    two_tenants(db, 1)
    api = start_api()
    token = make_token("reader")
    before = n_intake_and_log(db)
    path, params = HOSTILE_PARAMS[case]
    with api.client(token) as c:
        r = c.get(path, params=params)
        alive = c.get("/v1/whoami").status_code
    assert r.status_code in (200, 400), (case, r.status_code, r.text[:300])
    if r.status_code == 400:
        assert r.json()["error"]["code"] == "invalid_parameter", r.text[:300]
    assert alive == 200
    assert n_intake_and_log(db) == before
    assert db.execute("SELECT to_regclass('audit.event_log') IS NOT NULL").fetchone()[0]


@pytest.mark.parametrize("last_id", ["abc", "-1", "1e5", str(2**63), "\uff11", "", "+1", "0x10", "1.0", "\u0661"])
def test_h14_a_forged_last_event_id_is_refused_before_the_stream(db, start_api, make_token, last_id):
    two_tenants(db, 1)
    api = start_api(heartbeat=0.3, poll_interval=0.2)
    status, got = stream_collect(api, make_token("reader"), headers={"Last-Event-ID": last_id.encode()}, seconds=1)
    assert status == 400 and got == [], (last_id, status, got[:2])


def test_h15_a_tenant_stream_resumed_from_zero_or_mid_other_tenant_sends_only_its_tenant(db, start_api, make_token):
    two_tenants(db, 4)
    b_seqs = [r[0] for r in db.execute("SELECT seq FROM audit.events WHERE tenant_id = 't85b' ORDER BY seq")]
    api = start_api(heartbeat=0.3, poll_interval=0.2)
    token = make_token(tenant_id="t85a")
    for headers, params in (({"Last-Event-ID": "0"}, {}), ({}, {"since_seq": "0"}),
                            ({"Last-Event-ID": str(b_seqs[0])}, {"since_seq": "0"})):
        status, got = stream_collect(api, token, headers=headers, params=params, seconds=1.5)
        assert status == 200
        events = [json.loads(d) for _, e, d in got if e == "audit"]
        assert events and {e["tenant_id"] for e in events} == {"t85a"}, (headers, params)
        assert "b-SECRET" not in json.dumps(events)
    status, _ = stream_collect(api, token, params={"tenant_id": "t85b", "since_seq": "0"}, seconds=0.5)
    assert status in (400, 403)


def test_h16_a_stream_with_last_event_id_resumes_exactly_after_it(db, start_api, make_token):
    """Honest use: resuming after seq N gives N+1.. once each, in order."""
    for i in range(6):
        record(db, "order.paid", target_id=f"o-{i}")
    seal_all(db)
    seqs = [r[0] for r in db.execute("SELECT seq FROM audit.events ORDER BY seq")]
    api = start_api(heartbeat=0.3, poll_interval=0.2)
    status, got = stream_collect(api, make_token(), headers={"Last-Event-ID": str(seqs[2])}, seconds=1.5)
    assert status == 200
    assert [int(i) for i, e, _ in got if e == "audit"] == seqs[3:]


def test_h17_token_events_never_hold_the_token_or_its_hash_and_ignore_claimed_context(db, connect):
    m = connect("app_maintainer")
    m.execute("SELECT set_config('pgaudit_py.actor_id', 'mallory', false), set_config('pgaudit_py.tenant_id', 't85b', false),"
              " set_config('pgaudit_py.actor_type', 'user', false)")
    made = create_token(m, "t85-attr", "reader", tenant_id="t85a")
    revoke_token(m, "t85-attr")
    rows = db.execute("SELECT kind, tenant_id, actor_id, db_role, to_jsonb(e)::text FROM audit.events e"
                      " WHERE kind LIKE 'audit.api_token.%' ORDER BY intake_id").fetchall()
    assert [r[0] for r in rows] == ["audit.api_token.created", "audit.api_token.revoked"]
    sha = hashlib.sha256(made.token.encode()).hexdigest()
    for kind, tenant, actor, role, text in rows:
        assert tenant == "t85a", (kind, tenant)
        assert actor in (None, "app_maintainer") and role == "app_maintainer", (kind, actor)
        assert secret_part(made.token) not in text and sha not in text and sha[:32] not in text


def test_h18_the_reader_sees_no_token_hashes(db, connect, make_token):
    make_token("reader", name="t85-hash")
    reader = connect("app_reader")
    assert sqlstate_of(reader, "SELECT token_sha256 FROM audit.api_tokens") == "42501"
    assert sqlstate_of(reader, "SELECT * FROM audit.list_api_tokens()") == "42501"
    assert sqlstate_of(connect("app_writer"), "SELECT * FROM audit.authenticate_api_token('\\x00'::bytea)") == "42501"


def test_h19_a_revoked_token_cannot_page_on_from_a_next_link(db, connect, start_api, make_token):
    for i in range(5):
        record(db, "order.paid", target_id=f"o-{i}")
    seal_all(db)
    token = make_token(name="t85-pager")
    api = start_api()
    with api.client(token) as c:
        link = c.get("/v1/audit", params={"limit": "2"}).json()["next"]
        revoke_token(connect("app_maintainer"), "t85-pager")
        r = c.get(link)
    assert r.status_code == 401 and "events" not in r.json()


def test_h20_a_tenant_token_on_head_and_on_the_stream_with_filters_gets_its_tenant(db, start_api, make_token):
    two_tenants(db, 2)
    api = start_api(heartbeat=0.3, poll_interval=0.2)
    token = make_token(tenant_id="t85a")
    with api.client(token) as c:
        assert c.head("/v1/audit/stream", params={"tenant_id": "t85b"}).status_code in (400, 403)
        assert c.head("/v1/audit/stream").status_code == 200
    status, got = stream_collect(api, token, params={"since_seq": "0", "target_id": "b-0"}, seconds=1)
    assert status == 200 and [d for _, e, d in got if e == "audit"] == []


# ============================================ class P ============================================

HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def _page_guard(page) -> None:
    page.evaluate("window.__violations = 0; document.addEventListener('securitypolicyviolation', () => window.__violations++)")


def _no_markup(page) -> None:
    time.sleep(0.5)
    assert page.dialogs == []
    assert page.evaluate("document.querySelectorAll('img, iframe, object, embed, script:not([src]), [onerror], [onload]').length") == 0
    assert page.evaluate("[...document.querySelectorAll('a[href]')].filter(a => /^\\s*javascript:/i.test(a.getAttribute('href'))).length") == 0
    assert page.evaluate("window.__violations") == 0


def test_p1_hostile_actor_target_tenant_render_as_text(db, start_api, make_token, page):
    record(db, "hostile.actor", tenant_id="<b>t</b>", actor_type="</td><td>", actor_id=HOSTILE,
           target_type="javascript:alert(3)", target_id="javascript:alert(4)//\u202egnp.exe",
           correlation_id="<svg onload=alert(5)>", payload={"href": "javascript:alert(6)", HOSTILE: HOSTILE})
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    _page_guard(page)
    got = wait_rows(page, lambda r: any(row[4] == "hostile.actor" for row in r))
    row = next(r for r in got if r[4] == "hostile.actor")
    text = " ".join(row)
    assert "\u202e" not in text  # a direction override shown as an escape, never in force
    page.click("#events tbody tr:has-text('hostile.actor')")
    page.wait_for_selector("#detail:not([hidden])")
    _no_markup(page)
    assert "\u202e" not in page.text_content("#detail")
    assert "javascript:alert(4)" in page.text_content("#detail")


def test_p2_huge_values_are_cut_in_the_table_and_do_not_hang_the_page(db, start_api, make_token, page):
    huge = "W" * 50_000
    record(db, "hostile.huge", actor_id="a" * 256, target_id="t" * 500, payload={"k": huge, "n": [huge[:1000]] * 10})
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    _page_guard(page)
    got = wait_rows(page, lambda r: any(row[4] == "hostile.huge" for row in r))
    row = next(r for r in got if r[4] == "hostile.huge")
    assert max(len(cell) for cell in row) <= 200, [len(c) for c in row]
    page.click("#events tbody tr:has-text('hostile.huge')")
    page.wait_for_selector("#detail:not([hidden])")
    assert huge in page.text_content("#detail-payload")  # the whole value a click away
    _no_markup(page)


def test_p3_a_tenant_tokens_page_asks_for_nothing_beyond_its_tenant(db, start_api, make_token, page):
    two_tenants(db, 2)
    api = start_api()
    seen: list[tuple[str, str, int, str]] = []

    def on_response(resp):
        body = ""
        with suppress(Exception):
            if "/v1/" in resp.url and "stream" not in resp.url:
                body = resp.text()
        seen.append((resp.request.method, resp.url, resp.status, body))

    page.on("response", on_response)
    sign_in(page, api, make_token(tenant_id="t85a"))
    wait_rows(page, lambda r: r and {row[2] for row in r} == {"t85a"})
    for view in ("integrity", "storage", "health", "events"):
        button = page.locator(f"nav button[data-view={view}]")
        if button.is_visible():  # the whole installation's views are not offered to it (p8's mend)
            button.click()
            time.sleep(0.5)
    time.sleep(1)
    from urllib.parse import parse_qs, urlsplit
    for method, url, status, body in seen:
        q = parse_qs(urlsplit(url).query)
        assert q.get("tenant_id", ["t85a"]) == ["t85a"], url
        assert method != "POST", url
        if status == 200:
            assert "b-SECRET" not in body and '"t85b"' not in body, url


def test_p4_a_reader_page_offers_no_archive_run_and_sends_no_post(db, start_api, make_token, page, tmp_path):
    generate_keys(tmp_path / "keys")
    api = start_api(archive_target=f"file://{tmp_path}/arch",
                    archive_keys=load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem"))
    posts = []
    page.on("request", lambda req: req.method != "GET" and posts.append(req.url))
    sign_in(page, api, make_token("reader"))
    page.click("nav button[data-view=storage]")
    page.wait_for_selector("#view-storage:not([hidden])")
    assert not page.is_visible("#archive-run")
    page.evaluate("document.getElementById('archive-run') && document.getElementById('archive-run').click()")
    time.sleep(1)
    assert db.execute("SELECT count(*) FROM audit.archive_batches").fetchone()[0] == 0
    # a forced click may send a POST, which the server must refuse: nothing archived either way
    assert all("archive/run" in p for p in posts)


def test_p5_an_unrecordable_hostile_kind_is_refused_at_the_source(db):
    for kind in ("<script>.x", "javascript:alert(1)", "a\u202eb", "a b", "x" * 129, ".x"):
        with pytest.raises(Exception):  # noqa: B017
            record(db, kind)
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone()[0] == 0


# ============================================ class A ============================================

_ARCH: dict[str, Path] = {}


@pytest.fixture
def arch(request, tmp_path, tmp_path_factory):
    """A real signed archive built once for the module's offline attacks, copied for each test."""
    if "dir" not in _ARCH:
        root = tmp_path_factory.mktemp("t85arch")
        _ARCH["public"] = build_archive(request.getfixturevalue("db"), root / "keys", f"file://{root / 'archive'}")
        _ARCH["dir"] = root / "archive"
        _ARCH["keys"] = root / "keys"
    d = tmp_path / "archive"
    shutil.copytree(_ARCH["dir"], d)
    return d, _ARCH["public"]


def _manifest(d: Path, b: str) -> dict:
    return json.loads((d / f"{b}.manifest.json").read_text())


def _write(d: Path, b: str, doc: dict) -> None:
    (d / f"{b}.manifest.json").write_text(canonical.dumps(doc) + "\n")


def _refused_by_both(verifier, d: Path, public: Path) -> None:
    builtin, standalone, out, stdout = both(verifier, f"file://{d}", public)
    assert builtin == 1 and standalone == 1, (builtin, standalone, out[-500:], stdout[-500:])
    assert "Traceback" not in out + stdout


def test_a1_intact_archive_verifies_by_both(arch, verifier_file):  # noqa: F811
    d, public = arch
    builtin, standalone, out, stdout = both(verifier_file, f"file://{d}", public)
    assert (builtin, standalone) == (0, 0) and out == stdout, out + stdout


def test_a2_ed25519_stripped_leaving_only_an_hmac_is_refused(arch, verifier_file):  # noqa: F811
    d, public = arch
    b = batches(d)[1]
    doc = _manifest(d, b)
    doc["signatures"] = {"hmac-sha256": "00" * 32}
    _write(d, b, doc)
    _refused_by_both(verifier_file, d, public)


def test_a3_empty_signatures_are_refused(arch, verifier_file):  # noqa: F811
    d, public = arch
    b = batches(d)[0]
    doc = _manifest(d, b)
    doc["signatures"] = {}
    _write(d, b, doc)
    _refused_by_both(verifier_file, d, public)


def test_a4_an_edit_fully_rehashed_and_resigned_with_the_attackers_embedded_key_is_refused(
        arch, verifier_file, tmp_path):  # noqa: F811
    """The attacker edits a line, recomputes every hash in the manifest (data, block events hash), and
    signs with a key of its own whose public half it embeds in the manifest."""
    d, public = arch
    b = batches(d)[0]
    rewrite_data(d, b, lambda ls: [ls[0].replace(b'"order.paid"', b'"order.free"'), *ls[1:]])
    raw = gzip.decompress((d / f"{b}.jsonl.gz").read_bytes())
    lines = raw.split(b"\n")[:-1]
    doc = _manifest(d, b)
    body = doc["manifest"]
    gz = (d / f"{b}.jsonl.gz").read_bytes()
    body.update(gz_bytes=len(gz), gz_sha256=hashlib.sha256(gz).hexdigest(), data_bytes=len(raw),
                data_sha256=hashlib.sha256(raw).hexdigest())
    first = body["blocks"][0]
    n = first["event_count"]
    first["events_hash"] = hashlib.sha256(b"".join(hashlib.sha256(x).digest() for x in lines[:n])).hexdigest()
    generate_keys(tmp_path / "evil")
    doc["signatures"] = sign(body, load_keys(signing_key=tmp_path / "evil" / "checkpoint-ed25519.pem"))
    _write(d, b, doc)
    _refused_by_both(verifier_file, d, public)


def test_a5_a_batch_replayed_under_a_later_name_is_refused(arch, verifier_file):  # noqa: F811
    d, public = arch
    first = batches(d)[0]
    for suffix in (".manifest.json", ".jsonl.gz"):
        shutil.copy(d / f"{first}{suffix}", d / f"blocks-000000000900-000000000901{suffix}")
    _refused_by_both(verifier_file, d, public)


def test_a6_a_manifest_cut_in_half_is_refused(arch, verifier_file):  # noqa: F811
    d, public = arch
    p = d / f"{batches(d)[0]}.manifest.json"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    _refused_by_both(verifier_file, d, public)


def test_a7_a_data_object_cut_at_a_line_boundary_with_a_valid_gzip_is_refused(arch, verifier_file):  # noqa: F811
    d, public = arch
    rewrite_data(d, batches(d)[0], lambda ls: ls[:-1])
    _refused_by_both(verifier_file, d, public)


def test_a8_two_manifests_swapped_with_their_objects_kept_is_refused(arch, verifier_file):  # noqa: F811
    d, public = arch
    a, b = batches(d)[:2]
    ma, mb = (d / f"{a}.manifest.json").read_bytes(), (d / f"{b}.manifest.json").read_bytes()
    (d / f"{a}.manifest.json").write_bytes(mb)
    (d / f"{b}.manifest.json").write_bytes(ma)
    _refused_by_both(verifier_file, d, public)


def test_a9_a_duplicated_line_is_refused(arch, verifier_file):  # noqa: F811
    d, public = arch
    rewrite_data(d, batches(d)[1], lambda ls: [ls[0], ls[0], *ls[1:]])
    _refused_by_both(verifier_file, d, public)


def test_a10_the_previous_manifest_link_nulled_and_resigned_by_another_key_is_refused(
        arch, verifier_file, tmp_path):  # noqa: F811
    d, public = arch
    b = batches(d)[1]
    doc = _manifest(d, b)
    doc["manifest"]["prev_manifest_sha256"] = None
    generate_keys(tmp_path / "evil")
    doc["signatures"] = sign(doc["manifest"], load_keys(signing_key=tmp_path / "evil" / "checkpoint-ed25519.pem"))
    _write(d, b, doc)
    _refused_by_both(verifier_file, d, public)


def _hostile_archive(db, tmp_path) -> tuple[Path, Path, str]:
    db.execute("SELECT audit.record(kind => 't85.hostile', tenant_id => %s, actor_id => %s, target_id => %s,"
               " payload => %s::jsonb)",
               ("\u202etenant", "<script>x</script>", "\u2028line\u2029", json.dumps(
                   {"z": 1, "a": "\u0085\u2028\ud7ff\U0001f600", "n": 12.50, "big": 12345678901234567890123,
                    "e": "\\u0000", "html": "</script><!--", "quote": "\"'`"})))
    db.execute("SELECT audit.record(kind => 't85.hostile', payload => %s::jsonb)", ('{"x": 1e350, "y": -0.0}',))
    public = build_archive(db, tmp_path / "keys", f"file://{tmp_path / 'archive'}", rounds=3)
    return tmp_path / "archive", public, str(tmp_path / "keys")


def test_a11_restore_loads_hostile_lines_byte_for_byte_and_both_verifiers_agree(db, tmp_path, verifier_file):  # noqa: F811
    d, public, _ = _hostile_archive(db, tmp_path)
    builtin, standalone, out, stdout = both(verifier_file, f"file://{d}", public)
    assert (builtin, standalone) == (0, 0) and out == stdout, out + stdout
    code, text, _ = run_cli("archive", "verify", "--target", f"file://{d}", "--public-key", str(public),
                            dsn_role="app_reader", db=db)
    assert code == 0, text
    lines: dict[int, bytes] = {}
    for b in batches(d):
        for line in gzip.decompress((d / f"{b}.jsonl.gz").read_bytes()).split(b"\n")[:-1]:
            lines[int(re.search(rb'"seq": (\d+)', line).group(1))] = line  # the top level's: shorter keys first
        code, text, _ = run_cli("archive", "restore", "--target", f"file://{d}", "--batch", b,
                                dsn_role="app_maintainer", db=db)
        assert code == 0, text
    restored = dict(db.execute("SELECT seq, event::text FROM audit.restored_events").fetchall())
    assert set(restored) == set(lines)
    hostile = [s for s, line in lines.items() if b"t85.hostile" in line]
    assert len(hostile) == 2
    for s, line in lines.items():
        assert restored[s].encode() == line, (s, restored[s][:200], line[:200])


def test_a12_restore_refuses_a_data_object_swapped_for_another_batchs(db, tmp_path):
    d, public, _ = _hostile_archive(db, tmp_path)
    a, b = batches(d)[:2]
    (d / f"{a}.jsonl.gz").write_bytes((d / f"{b}.jsonl.gz").read_bytes())
    code, text, _ = run_cli("archive", "restore", "--target", f"file://{d}", "--batch", a,
                            dsn_role="app_maintainer", db=db)
    assert code != 0 and "Traceback" not in text
    assert db.execute("SELECT count(*) FROM audit.restored_events").fetchone()[0] == 0


def test_a13_restore_refuses_an_edited_object_under_a_resigned_manifest(db, tmp_path):
    d, public, _ = _hostile_archive(db, tmp_path)
    b = batches(d)[0]
    rewrite_data(d, b, lambda ls: [ls[0].replace(b'"success"', b'"failure"'), *ls[1:]])
    doc = _manifest(d, b)
    gz = (d / f"{b}.jsonl.gz").read_bytes()
    raw = gzip.decompress(gz)
    doc["manifest"].update(gz_bytes=len(gz), gz_sha256=hashlib.sha256(gz).hexdigest(), data_bytes=len(raw),
                           data_sha256=hashlib.sha256(raw).hexdigest())
    generate_keys(tmp_path / "evil")
    doc["signatures"] = sign(doc["manifest"], load_keys(signing_key=tmp_path / "evil" / "checkpoint-ed25519.pem"))
    _write(d, b, doc)
    code, text, _ = run_cli("archive", "restore", "--target", f"file://{d}", "--batch", b,
                            dsn_role="app_maintainer", db=db)
    assert code != 0 and "Traceback" not in text
    assert db.execute("SELECT count(*) FROM audit.restored_events").fetchone()[0] == 0
    code, text, _ = run_cli("archive", "verify", "--target", f"file://{d}", "--public-key", str(public),
                            dsn_role="app_reader", db=db)
    assert code == 1


def test_a14_the_maintainer_cannot_restore_made_up_lines_by_sql(db, connect, tmp_path):
    d, public, _ = _hostile_archive(db, tmp_path)
    b = batches(d)[0]
    lines = [x.decode() for x in gzip.decompress((d / f"{b}.jsonl.gz").read_bytes()).split(b"\n")[:-1]]
    forged = [lines[0].replace('"success"', '"failure"'), *lines[1:]]
    m = connect("app_maintainer")
    assert sqlstate_of(m, "SELECT audit.restore_archive_batch(%s, %s::text[]::jsonb[])", [b, lines]) is None  # honest
    m.execute("SELECT audit.drop_restored_batch(%s)", [b])
    assert sqlstate_of(m, "SELECT audit.restore_archive_batch(%s, %s::text[]::jsonb[])", [b, forged]) is not None
    assert db.execute("SELECT count(*) FROM audit.restored_events").fetchone()[0] == 0


# ============================================ class S ============================================


@pytest.fixture
def vault(db, connect):
    app = connect("app_secrets")
    key = os.urandom(32).hex()
    client_key_setup(app, key)
    secrets.declare_secret(app, "stripe.api_key", "Stripe")
    secrets.put_secret(app, "t85a", "stripe.api_key", "sk_live_AAAA_t85a_value")
    secrets.put_secret(app, "t85b", "stripe.api_key", "sk_live_BBBB_t85b_value")
    app.key = key
    return app


def everything_text(db) -> str:
    rows = db.execute("SELECT to_jsonb(e)::text FROM audit.events e").fetchall()
    return "\n".join(r[0] for r in rows)


def test_s1_a_cross_tenant_read_is_recorded_for_the_tenant_read_whatever_the_session_claims(db, vault):
    vault.execute("SELECT set_config('pgaudit_py.tenant_id', 't85a', false), set_config('pgaudit_py.actor_id', 'bob', false)")
    assert secrets.read_secret(vault, "t85b", "stripe.api_key") == "sk_live_BBBB_t85b_value"
    rows = db.execute("SELECT tenant_id, target_id, db_role FROM audit.events WHERE kind = 'tenant.secret.read'").fetchall()
    assert rows == [("t85b", "stripe.api_key", "app_secrets")]


@pytest.mark.parametrize("role", ["app_reader", "app_writer", "app_maintainer", "app_attacker"])
def test_s2_no_other_role_reads_secrets_or_the_wrapped_keys(db, vault, connect, role):
    c = connect(role)
    for stmt in ("SELECT * FROM audit.secret_values", "SELECT * FROM audit.wrapped_data_keys",
                 "SELECT audit.read_secret('t85a', 'stripe.api_key')", "SELECT * FROM audit.list_secrets()"):
        assert sqlstate_of(c, stmt) is not None, (role, stmt)


def test_s3_no_value_or_key_shows_in_events_status_or_listing_after_rotation(db, vault):
    assert secrets.rotate_tenant_key(vault, "t85a", 100) is not None
    secrets.put_secret(vault, "t85a", "stripe.api_key", "sk_live_CCCC_t85a_rotated")
    assert secrets.read_secret(vault, "t85a", "stripe.api_key") == "sk_live_CCCC_t85a_rotated"
    listed = repr(secrets.list_secrets(vault))
    from pgaudit_py import status
    st = status(db)
    texts = everything_text(db) + listed + repr(st.problems) + repr(st.warnings)
    for value in ("sk_live_AAAA", "sk_live_BBBB", "sk_live_CCCC", vault.key, vault.key.upper()):
        assert value not in texts, value


def test_s4_an_oversized_value_is_refused_without_repeating_it_and_writes_nothing(db, vault):
    big = "Q7zK" + "x" * 70_000 + "ENDMARK"
    before = db.execute("SELECT count(*) FROM audit.event_intake").fetchone()[0]
    with pytest.raises(Exception) as refused:  # noqa: B017
        secrets.put_secret(vault, "t85a", "stripe.api_key", big)
    assert "Q7zK" not in str(refused.value) and "ENDMARK" not in str(refused.value) and "xxxxxxxxxx" not in str(refused.value)
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone()[0] == before
    if vault.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        vault.execute("ROLLBACK")
    assert secrets.read_secret(vault, "t85a", "stripe.api_key") == "sk_live_AAAA_t85a_value"


def test_s5_a_wrong_master_key_on_the_cli_reads_nothing_and_says_no_key(db, vault):
    wrong = os.urandom(32).hex()
    code, text, _ = run_cli("secrets", "get", "--tenant", "t85a", "stripe.api_key", dsn_role="app_secrets", db=db,
                            env={"PGAUDIT_MASTER_KEY": wrong})
    assert code != 0 and "Traceback" not in text
    assert wrong not in text and wrong.upper() not in text and vault.key not in text and "sk_live" not in text
    found = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'tenant.secret.read'"
                       " AND (payload->>'found')::boolean").fetchone()[0]
    assert found == 0


def test_s6_secret_values_never_reach_cli_listing_or_events_of_the_cli(db, vault):
    code, text, _ = run_cli("secrets", "list", dsn_role="app_secrets", db=db, env={"PGAUDIT_MASTER_KEY": vault.key})
    assert code == 0 and "stripe.api_key" in text and "sk_live" not in text and vault.key not in text
    code, text, _ = run_cli("events", "--json", dsn_role="app_reader", db=db)
    assert code == 0 and "sk_live" not in text


@pytest.fixture
def limited(db, connect):
    db.execute("""CREATE TABLE public.t85_rl (id serial PRIMARY KEY, v int);
                  ALTER TABLE public.t85_rl OWNER TO app_maintainer;
                  GRANT SELECT, INSERT, UPDATE, DELETE ON public.t85_rl TO app_writer;
                  GRANT USAGE ON SEQUENCE public.t85_rl_id_seq TO app_writer""")
    connect("app_maintainer").execute("SELECT audit.enable_rate_limit('public.t85_rl', 3, 1000, 60)")
    db.execute("CREATE ROLE t85_w2 LOGIN")
    db.execute("GRANT audit_writer TO t85_w2")
    db.execute("GRANT SELECT, INSERT ON public.t85_rl TO t85_w2; GRANT USAGE ON SEQUENCE public.t85_rl_id_seq TO t85_w2")
    try:
        yield
    finally:
        with suppress(psycopg.Error):
            db.execute("DROP OWNED BY t85_w2")
        db.execute("DROP ROLE IF EXISTS t85_w2")


def as_alice(conn):
    conn.execute("SELECT set_config('pgaudit_py.actor_id', 'alice', false)")
    return conn


def insert_ok(conn) -> bool:
    try:
        conn.execute("INSERT INTO public.t85_rl (v) VALUES (1)")
        return True
    except psycopg.Error as e:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.execute("ROLLBACK")
        assert e.sqlstate == "PA009", e.sqlstate
        return False


def test_s7_many_sessions_of_one_user_share_one_limit(db, connect, limited):
    sessions = [as_alice(connect("app_writer")) for _ in range(5)]
    done = [insert_ok(s) for s in sessions for _ in range(2)]
    assert sum(done) == 3, done
    assert db.execute("SELECT count(*) FROM public.t85_rl").fetchone()[0] == 3


def test_s8_another_writer_role_naming_the_same_user_shares_its_limit(db, connect, limited):
    a, b = as_alice(connect("app_writer")), as_alice(connect("t85_w2"))
    done = [insert_ok(c) for c in (a, b, a, b, a, b)]
    assert sum(done) == 3, done


def test_s9_released_savepoints_count_and_a_rolled_back_one_gives_back(db, connect, limited):
    w = as_alice(connect("app_writer", autocommit=False))
    results = []
    for i in range(5):
        w.execute(f"SAVEPOINT s{i}")
        try:
            w.execute("INSERT INTO public.t85_rl (v) VALUES (1)")
            w.execute(f"RELEASE SAVEPOINT s{i}")
            results.append(True)
        except psycopg.Error as e:
            assert e.sqlstate == "PA009"
            w.execute(f"ROLLBACK TO SAVEPOINT s{i}")
            results.append(False)
    w.commit()
    assert results == [True, True, True, False, False]
    assert db.execute("SELECT count(*) FROM public.t85_rl").fetchone()[0] == 3


def test_s10_clock_and_zone_games_in_the_session_do_not_reset_the_window(db, connect, limited):
    w = as_alice(connect("app_writer"))
    assert [insert_ok(w) for _ in range(3)] == [True] * 3
    w.execute("SET TimeZone = 'Pacific/Kiritimati'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'iso_8601'")
    assert insert_ok(w) is False
    w.execute("SELECT set_config('pgaudit_py.actor_type', 'user', false)")  # the same user, named in full
    assert insert_ok(w) is False


def test_s11_the_writer_may_not_bypass_reset_or_reconfigure_limits(db, connect, limited):
    w = as_alice(connect("app_writer"))
    assert [insert_ok(w) for _ in range(3)] == [True] * 3
    for stmt in ("DELETE FROM audit.rate_counters", "UPDATE audit.rate_counters SET count = 0",
                 "SELECT audit.purge_rate_counters(10000)",
                 "SELECT audit.enable_rate_limit('public.t85_rl', 1000, 1000, 60)",
                 "SELECT audit.disable_rate_limit('public.t85_rl')",
                 "SELECT audit.set_operation_limit('x.y', 1000)"):
        assert sqlstate_of(w, stmt) is not None, stmt
    assert sqlstate_of(w, "SET pgaudit_py.rate_limit_bypass = on; INSERT INTO public.t85_rl (v) VALUES (1)") is not None
    w.execute("RESET pgaudit_py.rate_limit_bypass")
    assert insert_ok(w) is False
    assert db.execute("SELECT count(*) FROM public.t85_rl").fetchone()[0] == 3


def test_s12_an_operation_limit_set_by_the_maintainer_overrides_the_applications(db, connect):
    connect("app_maintainer").execute("SELECT audit.set_operation_limit('t85.export', 2)")
    w = connect("app_writer")
    states = [sqlstate_of(w, "SELECT audit.rate_limit('t85.export', 'k1', 10000)") for _ in range(4)]
    assert states == [None, None, "PA009", "PA009"], states


def _sealed_blocks(db, n: int = 3) -> None:
    for b in range(n):
        for i in range(4):
            record(db, "order.paid", target_id=f"{b}-{i}")
        seal(db)


@pytest.mark.parametrize("role", ["app_reader", "app_writer", "app_secrets", "app_attacker"])
def test_s13_prune_by_a_lesser_role_is_refused_and_deletes_nothing(db, connect, role):
    _sealed_blocks(db)
    time.sleep(0.05)
    before = n_intake_and_log(db)
    c = connect(role)
    for stmt in ("SELECT * FROM audit.prune_events(interval '1 millisecond')",
                 "DELETE FROM audit.event_log", "TRUNCATE audit.event_log"):
        assert sqlstate_of(c, stmt) is not None, (role, stmt)
    assert n_intake_and_log(db) == before


def test_s14_prune_never_takes_pending_events_and_leaves_a_verifiable_chain(db, connect):
    _sealed_blocks(db, 3)
    for i in range(3):
        record(db, "order.pending", target_id=str(i))
    time.sleep(0.05)
    m = connect("app_maintainer")
    while m.execute("SELECT more FROM audit.prune_events(interval '1 millisecond', 1000)").fetchone()[0]:
        pass
    assert db.execute("SELECT count(*) FROM audit.event_intake WHERE kind = 'order.pending'").fetchone()[0] == 3
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'order.paid'").fetchone()[0] == 0
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
    pruned = db.execute("SELECT payload FROM audit.events WHERE kind = 'audit.pruned'").fetchall()
    assert pruned and sum(p[0]["deleted"] for p in pruned) == 12


@pytest.mark.parametrize("args", ["interval '1 ms', 0", "interval '1 ms', -5", "interval '1 ms', 100001",
                                  "NULL::interval"])
def test_s15_prune_with_hostile_arguments_deletes_nothing(db, connect, args):
    _sealed_blocks(db, 2)
    time.sleep(0.05)
    before = n_intake_and_log(db)
    m = connect("app_maintainer")
    state = sqlstate_of(m, f"SELECT * FROM audit.prune_events({args})")
    assert n_intake_and_log(db)[1] == before[1], (args, state)


# --- the command line, each command as a role less than the one docs/cli.md names ---------------

LESSER = {
    "track": (["track", "public.t85_orders"], "app_reader", "SELECT count(*) FROM audit.tracked_tables"),
    "untrack": (["untrack", "public.t85_tracked"], "app_reader", "SELECT count(*) FROM audit.tracked_tables"),
    "limits set": (["limits", "set", "public.t85_orders", "--per-user", "5"], "app_reader",
                   "SELECT count(*) FROM audit.rate_limits"),
    "limits set-operation": (["limits", "set-operation", "x.y", "--per-minute", "5"], "app_writer",
                             "SELECT count(*) FROM audit.rate_limits"),
    "tokens create": (["tokens", "create", "--name", "t85-cli"], "app_reader", "SELECT count(*) FROM audit.api_tokens"),
    "tokens list": (["tokens", "list"], "app_reader", "SELECT 0"),
    "tokens revoke": (["tokens", "revoke", "t85-live"], "app_reader",
                      "SELECT count(*) FROM audit.api_tokens WHERE revoked_at IS NULL"),
    "prune": (["prune", "--older-than", "1s", "--yes"], "app_reader", "SELECT count(*) FROM audit.event_log"),
    "seal": (["seal"], "app_writer", "SELECT count(*) FROM audit.event_intake"),
    "record": (["record", "t85.cli"], "app_reader", "SELECT count(*) FROM audit.event_intake"),
    "types load": (["types", "load", "auth"], "app_reader", "SELECT count(*) FROM audit.event_types"),
    "archive settings": (["archive", "settings", "--hot-retention", "1d"], "app_reader",
                         "SELECT hot_retention::text FROM audit.archive_settings"),
    "secrets declare": (["secrets", "declare", "t85.slot", "desc"], "app_maintainer",
                        "SELECT count(*) FROM audit.secret_slots"),
    "status as writer": (["status"], "app_writer", "SELECT 0"),
    "events as writer": (["events"], "app_writer", "SELECT 0"),
}


@pytest.mark.parametrize("case", list(LESSER))
def test_s16_each_cli_command_as_a_lesser_role_is_refused_with_nothing_half_written(db, connect, make_token, case):
    db.execute("""CREATE TABLE public.t85_orders (id int PRIMARY KEY); ALTER TABLE public.t85_orders OWNER TO app_maintainer;
                  CREATE TABLE public.t85_tracked (id int PRIMARY KEY); ALTER TABLE public.t85_tracked OWNER TO app_maintainer""")
    connect("app_maintainer").execute("SELECT audit.enable_tracking('public.t85_tracked')")
    make_token(name="t85-live")
    record(db, "order.paid")
    seal(db)
    record(db, "order.pending")
    time.sleep(1.1)
    args, role, probe = LESSER[case]
    before = db.execute(probe).fetchall()
    events_before = n_intake_and_log(db)
    code, text, _ = run_cli(*args, dsn_role=role, db=db, input="y\n")
    assert code != 0, (case, text[-400:])
    assert "Traceback" not in text
    assert db.execute(probe).fetchall() == before, case
    if case not in ("seal",):
        assert n_intake_and_log(db) == events_before, case


PASSWORD = "Zq7Xk2PwQ9"
DSNS = {
    "uri": f"postgresql://app_reader:{PASSWORD}@127.0.0.1:1/x",
    "postgres scheme": f"postgres://app_reader:{PASSWORD}@127.0.0.1:1/x",
    "empty user": f"postgresql://:{PASSWORD}@127.0.0.1:1/x",
    "query password": f"postgresql://app_reader@127.0.0.1:1/x?password={PASSWORD}",
    "query password after another": f"postgresql://127.0.0.1:1/x?connect_timeout=2&password={PASSWORD}",
    "keyword": f"host=127.0.0.1 port=1 password={PASSWORD}",
    "keyword spaced quoted": f"host=127.0.0.1 port=1 password = '{PASSWORD} x'",
    "unencoded at": f"postgresql://u:{PASSWORD[:5]}@{PASSWORD[5:]}@nohost.invalid:1/x",
    "unencoded comma": f"postgresql://u:{PASSWORD[:5]},{PASSWORD[5:]}@nohost.invalid:1/x",
    "percent encoded": "postgresql://u:" + "".join(f"%{ord(c):02X}" for c in PASSWORD) + "@nohost.invalid:1/x",
    "uppercase scheme": f"POSTGRESQL://u:{PASSWORD}@nohost.invalid:1/x",
    "leading space": f"  postgresql://u:{PASSWORD}@nohost.invalid:1/x",
    "unknown option beside": f"host=127.0.0.1 password={PASSWORD} bogus=1",
    "unterminated quote": f"host=127.0.0.1 password='{PASSWORD}",
}


@pytest.mark.parametrize("command", [["status"]])
@pytest.mark.parametrize("form", list(DSNS))
def test_s17_a_password_in_the_dsn_never_reaches_the_cli_output(command, form, tmp_path):
    for how in ("flag", "env"):
        if how == "flag":
            result = CliRunner().invoke(cli, [*command, "--dsn", DSNS[form]], env={"PGCONNECT_TIMEOUT": "2"})
        else:
            result = CliRunner().invoke(cli, command, env={"PGAUDIT_DSN": DSNS[form], "PGCONNECT_TIMEOUT": "2"})
        try:
            err = result.stderr
        except ValueError:
            err = ""
        text = result.output + err + repr(result.exception or "")
        assert result.exit_code != 0
        for piece in (PASSWORD, PASSWORD[:5], PASSWORD[5:], PASSWORD.lower()):
            assert piece not in text, (form, how, text[-300:])
        assert "Traceback" not in text


def test_s18_tokens_on_the_cli_print_once_and_revoke_by_paste_without_repeating(db):
    code, text, result = run_cli("tokens", "create", "--name", "t85-cli-tok", "--tenant", "t85a",
                                 dsn_role="app_maintainer", db=db)
    assert code == 0
    token = result.stdout.strip()
    assert token.startswith("pga_")
    code, listed, _ = run_cli("tokens", "list", dsn_role="app_maintainer", db=db)
    assert code == 0 and secret_part(token) not in listed
    code, text, _ = run_cli("tokens", "revoke", f"  Bearer {token.upper().replace('PGA_', 'pga_')}  ",
                            dsn_role="app_maintainer", db=db)
    assert code == 0, text
    assert secret_part(token) not in text and secret_part(token).upper() not in text
    assert db.execute("SELECT revoked_at IS NOT NULL FROM audit.api_tokens WHERE name = 't85-cli-tok'").fetchone()[0]
    fake = "pga_" + "1" * 12 + "_" + "ab" * 32
    code, text, _ = run_cli("tokens", "revoke", fake, dsn_role="app_maintainer", db=db)
    assert code != 0 and "ab" * 16 not in text and "Traceback" not in text


@pytest.mark.parametrize("name", ["pga_x", "a" * 12, "0123456789ab", "x-" + "0123456789abcdef" * 2,
                                  "550e8400-e29b-41d4-a716-446655440000", "k" + "\uff10" * 32])
def test_s19_a_token_name_that_looks_like_a_token_or_id_is_refused_and_not_recorded(db, connect, name):
    m = connect("app_maintainer")
    with pytest.raises(Exception):  # noqa: B017
        create_token(m, name, "reader")
    if m.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        m.execute("ROLLBACK")
    text = everything_text(db)
    assert db.execute("SELECT count(*) FROM audit.api_tokens").fetchone()[0] == 0
    assert name not in text
    fake_sha = hashlib.sha256(b"t85").digest()
    assert sqlstate_of(m, "SELECT audit.create_api_token('abcdef012345', %s, 'reader', %s)", [name, fake_sha]) is not None
    assert db.execute("SELECT count(*) FROM audit.api_tokens").fetchone()[0] == 0


# ============================================ more: H, A, S ============================================


def test_h21_a_tenant_token_lists_no_other_tenants_pending_events(db, start_api, make_token):
    record(db, "order.pending", tenant_id="t85b", payload={"who": "b-SECRET"})
    record(db, "order.pending", tenant_id="t85a")
    record(db, "order.pending")
    api = start_api()
    with api.client(make_token(tenant_id="t85a")) as c:
        r = c.get("/v1/audit", params={"limit": "500"})
        link_page = c.get("/v1/audit", params={"limit": "1"}).json()
        nxt = c.get(link_page["next"]) if link_page["next"] else None
    assert r.status_code == 200 and {e["tenant_id"] for e in r.json()["events"]} == {"t85a"}
    assert "b-SECRET" not in r.text
    if nxt is not None:
        assert {e["tenant_id"] for e in nxt.json()["events"]} <= {"t85a"}


def test_h22_the_archive_run_by_a_maintainer_token_names_the_token_never_its_secret(db, connect, start_api, make_token,
                                                                                   tmp_path):
    generate_keys(tmp_path / "keys")
    _sealed_blocks(db, 2)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 10, 3)")
    time.sleep(1.1)
    token = make_token("maintainer", name="t85-archiver")
    api = start_api(archive_target=f"file://{tmp_path}/arch",
                    archive_keys=load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem"))
    with api.client(token) as c:
        r = c.post("/v1/audit/archive/run")
    assert r.status_code == 200 and r.json()["batches"], r.text[:300]
    rows = db.execute("SELECT actor_type, actor_id, to_jsonb(e)::text FROM audit.events e"
                      " WHERE kind IN ('audit.archived', 'audit.archive_deleted')").fetchall()
    assert rows and {(a, b) for a, b, _ in rows} == {("api_token", "t85-archiver")}
    assert not any(secret_part(token)[:32] in t for _, _, t in rows)
    files = " ".join(p.read_bytes().decode("latin-1") for p in (tmp_path / "arch").iterdir())
    assert secret_part(token)[:32] not in files


def test_a15_a_batch_recorded_with_made_up_hashes_and_deleted_is_named_by_archive_verify(db, connect, tmp_path):
    """A maintainer plans a batch, records it without storing anything (made-up hashes), and deletes
    its events. The chain still verifies (the block rows stay); archive verify must say the
    objects are missing."""
    generate_keys(tmp_path / "keys")
    _sealed_blocks(db, 2)
    time.sleep(0.05)
    m = connect("app_maintainer")
    batch = m.execute("SELECT batch_id FROM audit.next_archive_batch(interval '1 millisecond')").fetchone()[0]
    assert batch
    z = b"\x00" * 32
    m.execute("SELECT audit.record_archive_batch(%s, %s, 1, 1, %s, %s, %s, NULL)",
              [batch, f"file://{tmp_path}/nothing", z, z, z])
    m.execute("SELECT audit.delete_archived(%s)", [batch])
    (tmp_path / "nothing").mkdir()
    code, text, _ = run_cli("archive", "verify", "--target", f"file://{tmp_path}/nothing", "--public-key",
                            str(tmp_path / "keys" / "checkpoint-ed25519.pub.pem"), dsn_role="app_reader", db=db)
    assert code == 1 and "Traceback" not in text, text[-400:]
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.archive_deleted'").fetchone()[0] == 1


def test_a16_prune_stops_before_a_planned_batch_and_the_archive_completes_it(db, connect, tmp_path):
    generate_keys(tmp_path / "keys")
    _sealed_blocks(db, 3)
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 4, 3)")
    time.sleep(0.05)
    m = connect("app_maintainer")
    planned = m.execute("SELECT batch_id, first_seq, last_seq FROM audit.next_archive_batch(interval '1 millisecond')").fetchone()
    assert planned[0]
    while m.execute("SELECT more FROM audit.prune_events(interval '1 millisecond', 1000)").fetchone()[0]:
        pass
    kept = db.execute("SELECT count(*) FROM audit.event_log WHERE seq BETWEEN %s AND %s", planned[1:]).fetchone()[0]
    assert kept == planned[2] - planned[1] + 1
    time.sleep(1.1)
    code, text, _ = run_cli("archive", "run", "--target", f"file://{tmp_path}/arch", "--older-than", "1s",
                            "--signing-key", str(tmp_path / "keys" / "checkpoint-ed25519.pem"),
                            dsn_role="app_maintainer", db=db)
    assert code == 0, text[-400:]
    code, text, _ = run_cli("archive", "verify", "--target", f"file://{tmp_path}/arch", "--public-key",
                            str(tmp_path / "keys" / "checkpoint-ed25519.pub.pem"), dsn_role="app_reader", db=db)
    assert code == 0, text[-400:]
    assert both_verifiers(db) == (True, True)


def test_a17_the_reader_and_writer_cannot_restore_or_drop_restored_batches(db, connect, tmp_path):
    d, public, _ = _hostile_archive(db, tmp_path)
    b = batches(d)[0]
    lines = [x.decode() for x in gzip.decompress((d / f"{b}.jsonl.gz").read_bytes()).split(b"\n")[:-1]]
    m = connect("app_maintainer")
    m.execute("SELECT audit.restore_archive_batch(%s, %s::text[]::jsonb[])", [b, lines])
    n = db.execute("SELECT count(*) FROM audit.restored_events").fetchone()[0]
    for role in ("app_reader", "app_writer", "app_secrets"):
        c = connect(role)
        for stmt, args in (("SELECT audit.drop_restored_batch(%s)", [b]),
                           ("SELECT audit.restore_archive_batch(%s, %s::text[]::jsonb[])", [b, lines]),
                           ("DELETE FROM audit.restored_events", None),
                           ("UPDATE audit.restored_events SET kind = 'x'", None)):
            assert sqlstate_of(c, stmt, args) is not None, (role, stmt)
    assert db.execute("SELECT count(*) FROM audit.restored_events").fetchone()[0] == n


def test_s20_the_secrets_role_cannot_read_the_stored_ciphertexts_or_wrapped_keys(db, vault, connect):
    for stmt in ("SELECT * FROM audit.secret_values", "SELECT * FROM audit.wrapped_data_keys",
                 "SELECT * FROM audit.data_keys"):
        assert sqlstate_of(vault, stmt) == "42501", stmt


def test_s21_a_key_table_planted_by_the_session_before_holding_is_refused(db, connect):
    app = connect("app_secrets")
    app.execute("CREATE TEMPORARY TABLE pgaudit_py_master_keys (which text PRIMARY KEY, key bytea NOT NULL)")
    key = os.urandom(32).hex()
    assert sqlstate_of(app, "SELECT audit.hold_master_key(%s)", [key]) is not None
    assert app.execute("SELECT count(*) FROM pg_temp.pgaudit_py_master_keys").fetchone()[0] == 0


def test_s22_every_read_in_one_statement_is_its_own_event(db, vault):
    got = vault.execute("SELECT audit.read_secret('t85a', 'stripe.api_key') FROM generate_series(1, 3)").fetchall()
    assert len(got) == 3
    n = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'tenant.secret.read'").fetchone()[0]
    assert n == 3, n


@pytest.mark.parametrize("role", ["app_reader", "app_maintainer", "app_writer"])
def test_s23_secrets_get_on_the_cli_as_a_lesser_role_reads_nothing(db, vault, role):
    code, text, _ = run_cli("secrets", "get", "--tenant", "t85a", "stripe.api_key", dsn_role=role, db=db,
                            env={"PGAUDIT_MASTER_KEY": vault.key})
    assert code != 0 and "sk_live" not in text and vault.key not in text and "Traceback" not in text
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'tenant.secret.read'").fetchone()[0] == 0


def test_s24_archive_run_on_the_cli_as_the_reader_writes_nothing_anywhere(db, tmp_path):
    generate_keys(tmp_path / "keys")
    _sealed_blocks(db, 2)
    time.sleep(1.1)
    before = n_intake_and_log(db)
    code, text, _ = run_cli("archive", "run", "--target", f"file://{tmp_path}/arch", "--older-than", "1s",
                            "--signing-key", str(tmp_path / "keys" / "checkpoint-ed25519.pem"), dsn_role="app_reader", db=db)
    assert code != 0 and "Traceback" not in text
    assert db.execute("SELECT count(*) FROM audit.archive_batches").fetchone()[0] == 0
    assert n_intake_and_log(db) == before
    assert not (tmp_path / "arch").exists() or not any((tmp_path / "arch").iterdir())


def test_s25_declining_the_prune_confirmation_deletes_nothing(db):
    _sealed_blocks(db, 2)
    time.sleep(1.1)
    before = n_intake_and_log(db)
    code, text, _ = run_cli("prune", "--older-than", "1s", dsn_role="app_maintainer", db=db, input="n\n")
    assert code == 1 and "Traceback" not in text
    assert n_intake_and_log(db) == before


def test_s26_a_maintainer_token_with_a_tenant_on_the_cli_is_refused_with_no_row(db):
    code, text, _ = run_cli("tokens", "create", "--name", "t85-mtt", "--role", "maintainer", "--tenant", "t85a",
                            dsn_role="app_maintainer", db=db)
    assert code != 0 and "pga_" not in text
    assert db.execute("SELECT count(*) FROM audit.api_tokens").fetchone()[0] == 0


def test_s27_a_revoked_tokens_secret_pasted_as_a_name_is_never_recorded(db, connect):
    m = connect("app_maintainer")
    made = create_token(m, "t85-paste", "reader")
    for text in (made.token, secret_part(made.token), secret_part(made.token)[:32],
                 "-".join(secret_part(made.token)[i:i + 8] for i in range(0, 64, 8))):
        with suppress(Exception):
            revoke_token(m, text)
        with suppress(Exception):
            create_token(m, text, "reader")
        if m.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            m.execute("ROLLBACK")
    everything = everything_text(db) + " ".join(r[0] for r in db.execute("SELECT name FROM audit.api_tokens"))
    assert secret_part(made.token)[:16] not in everything and secret_part(made.token)[-16:] not in everything


def test_h23_a_token_bound_to_an_empty_or_spaced_tenant_reads_no_other(db, connect, start_api, make_token):
    two_tenants(db, 1)
    record(db, "order.paid", payload={"who": "no-tenant-SECRET"})
    seal(db)
    api = start_api()
    for tenant in ("", " ", "t85a "):
        try:
            token = make_token(tenant_id=tenant)
        except Exception:  # noqa: BLE001 - refusing such a tenant is as good
            continue
        with api.client(token) as c:
            r = c.get("/v1/audit", params={"limit": "500"})
            n = c.get("/v1/audit/count").json()
        assert r.status_code == 200
        assert {e["tenant_id"] for e in r.json()["events"]} <= {tenant}, tenant
        assert "SECRET" not in r.text
        truth = db.execute("SELECT count(*) FROM audit.events WHERE tenant_id = %s", [tenant]).fetchone()[0]
        assert n["count"] == truth, (tenant, n, truth)


def test_a18_a_genuine_signature_copied_from_another_manifest_is_refused(arch, verifier_file):  # noqa: F811
    d, public = arch
    a, b = batches(d)[:2]
    da, db_ = _manifest(d, a), _manifest(d, b)
    db_["signatures"] = da["signatures"]
    _write(d, b, db_)
    _refused_by_both(verifier_file, d, public)


def test_s28_copy_into_a_limited_table_is_counted(db, connect, limited):
    w = as_alice(connect("app_writer"))
    done = []
    for _ in range(5):
        try:
            with w.cursor().copy("COPY public.t85_rl (v) FROM STDIN") as cp:
                cp.write_row((1,))
            done.append(True)
        except psycopg.Error as e:
            assert e.sqlstate == "PA009", e.sqlstate
            done.append(False)
    assert sum(done) == 3, done


def test_s29_a_block_with_one_young_event_is_not_pruned(db, connect):
    record(db, "order.old", target_id="old")
    time.sleep(1.5)
    record(db, "order.young", target_id="young")
    seal(db)  # one block: the old and the young
    m = connect("app_maintainer")
    m.execute("SELECT * FROM audit.prune_events(interval '1 second', 1000)")
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind IN ('order.old', 'order.young')").fetchone()[0] == 2


def test_s30_prune_is_recorded_as_the_role_that_pruned_whatever_the_session_claims(db, connect):
    _sealed_blocks(db, 2)
    time.sleep(0.05)
    m = connect("app_maintainer")
    m.execute("SELECT set_config('pgaudit_py.actor_id', 'someone-else', false), set_config('pgaudit_py.tenant_id', 't85b', false)")
    m.execute("SELECT * FROM audit.prune_events(interval '1 millisecond', 1000)")
    rows = db.execute("SELECT db_role FROM audit.events WHERE kind = 'audit.pruned'").fetchall()
    assert rows == [("app_maintainer",)]


def test_s31_checkpoint_as_the_writer_is_refused_and_writes_no_file(db, tmp_path):
    generate_keys(tmp_path / "keys")
    _sealed_blocks(db, 1)
    out = tmp_path / "cp.json"
    code, text, _ = run_cli("checkpoint", "--signing-key", str(tmp_path / "keys" / "checkpoint-ed25519.pem"),
                            "--out", str(out), dsn_role="app_writer", db=db)
    assert code != 0 and "Traceback" not in text
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name not in ("keys",)]


@pytest.mark.parametrize("how", ["file", "symlink to a file", "dangling symlink"])
def test_s32_secrets_keygen_and_checkpoint_never_overwrite(db, tmp_path, how):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = tmp_path / "target"
    if how == "file":
        target.write_text("precious\n")
        victim = target
    elif how == "symlink to a file":
        target.symlink_to(victim)
    else:
        target.symlink_to(tmp_path / "elsewhere")
    code, text, _ = run_cli("secrets", "keygen", str(target))
    assert code != 0 and "Traceback" not in text
    assert victim.read_text() == "precious\n" and not (tmp_path / "elsewhere").exists()
    generate_keys(tmp_path / "keys")
    _sealed_blocks(db, 1)
    code, text, _ = run_cli("checkpoint", "--signing-key", str(tmp_path / "keys" / "checkpoint-ed25519.pem"),
                            "--out", str(target), dsn_role="app_reader", db=db)
    assert code != 0 and "Traceback" not in text
    assert victim.read_text() == "precious\n" and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("existing", ["checkpoint-hmac.key", "checkpoint-ed25519.pub.pem"])
def test_s33_keygen_into_a_directory_holding_a_key_refuses_with_nothing_half_written(tmp_path, existing):
    d = tmp_path / "keys"
    d.mkdir()
    (d / existing).write_bytes(b"old key\n")
    code, text, _ = run_cli("keygen", "--dir", str(d))
    assert code != 0 and "Traceback" not in text
    assert sorted(p.name for p in d.iterdir()) == [existing], sorted(p.name for p in d.iterdir())
    assert (d / existing).read_bytes() == b"old key\n"


CONTROL = "\x1b[2J\x1b]0;pwned\x07\r\x08\u2028\u202e\x00"


def _raw_controls(text: str) -> list[str]:
    return [c for c in ("\x1b", "\r", "\x08", "\x07", "\u2028", "\u202e", "\x00") if c in text]


def test_s34_hostile_values_print_escaped_in_every_cli_table(db, connect):
    hostile = CONTROL.replace("\x00", "")
    record(db, "t85.ctl", tenant_id="t" + hostile, actor_type="user", actor_id="a" + hostile,
           target_type="x" + hostile, target_id="y" + hostile, payload={"k" + hostile: "v" + hostile})
    db.execute(f"""CREATE TABLE public."t85{hostile}" (id int PRIMARY KEY, "c{hostile}" text);
                   ALTER TABLE public."t85{hostile}" OWNER TO app_maintainer""")
    quoted = 'public."t85' + hostile + '"'
    m = connect("app_maintainer")
    m.execute("SELECT audit.enable_tracking(%s::regclass, kind_prefix => 't85.tbl')", [quoted])
    m.execute("SELECT audit.enable_rate_limit(%s::regclass, 100, 1000, 60)", [quoted])
    db.execute(f'INSERT INTO {quoted} VALUES (1, %s)', ["z" + hostile])
    seal_all(db)
    for args in (["events"], ["tracked"], ["limits"], ["history", quoted, "1"], ["count", "--prefix", "t85."]):
        code, text, _ = run_cli(*args, dsn_role="app_reader", db=db)
        assert code == 0, (args, text[-300:])
        assert _raw_controls(text) == [], (args, _raw_controls(text))
    code, text, _ = run_cli("events", "--json", dsn_role="app_reader", db=db)
    assert code == 0
    got = json.loads(text)
    assert any(e.get("actor_id") == "a" + hostile for e in got)


def test_s35_values_that_differ_never_print_alike_in_the_events_table(db):
    record(db, "t85.alike", actor_type="user", actor_id="a:b", target_type="t", target_id="x,y")
    record(db, "t85.alike", actor_type="user:a", actor_id="b", target_type="t:x", target_id="y")
    record(db, "t85.alike", actor_type="user", actor_id="-", target_id='"q"')
    record(db, "t85.alike", actor_type="user", actor_id=None, target_id="q")
    code, text, _ = run_cli("events", "--kind-prefix", "t85.alike", dsn_role="app_reader", db=db)
    if code == 2:  # the filter's flag is named otherwise: read everything
        code, text, _ = run_cli("events", dsn_role="app_reader", db=db)
    assert code == 0, text[-300:]
    lines = [ln for ln in text.splitlines() if "t85.alike" in ln]
    assert len(lines) == 4
    def strip_time(line):
        return " ".join(w for w in line.split() if not w[:1].isdigit())
    assert len({strip_time(ln) for ln in lines}) == 4, lines


def _bad_keys() -> dict[str, str]:
    k = os.urandom(32).hex()
    return {"63 digits": k[:-1], "65 digits": k + "a", "0x prefix": "0x" + k, "space inside": k[:32] + " " + k[32:],
            "non-hex": "g" + k[1:], "fullwidth digit": "\uff10" + k[1:], "two keys": k + "\n" + k}


@pytest.mark.parametrize("form", list(_bad_keys()))
@pytest.mark.parametrize("via", ["env", "file"])
def test_s36_a_malformed_master_key_is_refused_without_repeating_it(db, vault, tmp_path, form, via):
    bad = _bad_keys()[form]
    env = {"PGAUDIT_MASTER_KEY": vault.key}
    args = ["secrets", "get", "--tenant", "t85a", "stripe.api_key"]
    if via == "env":
        env = {"PGAUDIT_MASTER_KEY": bad}
    else:
        f = tmp_path / "bad.key"
        f.write_text(bad)
        args = ["secrets", "rotate-master", "--new-master-key-file", str(f)]
    code, text, _ = run_cli(*args, dsn_role="app_secrets", db=db, env=env)
    pieces = [p for p in bad.replace("\n", " ").split() if len(p) >= 16]
    assert code != 0 and "Traceback" not in text, text[-300:]
    for p in pieces:
        assert p[:16] not in text and p[-16:] not in text, (form, via, text[-300:])
    assert "sk_live" not in text
    assert db.execute("SELECT count(*) FROM audit.master_keys").fetchone()[0] == 1


def _cli_subprocess(args: list[str], seconds: float, env_extra=None):
    import signal
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return proc.returncode, out + err


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"], ["events", "--follow"], ["seal", "--follow"]])
def test_s37_long_running_commands_never_print_a_password_from_the_dsn(db, command):
    """The password of a DSN that cannot connect: never in what the command prints."""
    code, text = _cli_subprocess([*command, "--dsn", f"postgresql://app_maintainer:{PASSWORD}@127.0.0.1:1/x"], 20,
                                 {"PGCONNECT_TIMEOUT": "2"})
    assert PASSWORD not in text and PASSWORD[:5] not in text and PASSWORD[5:] not in text, text[-400:]
    assert "Traceback" not in text


@pytest.mark.parametrize("command", [["worker", "--interval", "0.2"], ["events", "--follow"]])
def test_s38_a_reconnecting_command_never_prints_the_password_of_its_dsn(db, command):
    """The DSN carries a password (trust authentication ignores it): the command connects, its backend
    is terminated, it reconnects. What it prints on the way holds no part of the password."""
    import subprocess
    import sys
    i = db.info
    role = "app_maintainer" if command[0] == "worker" else "app_reader"
    dsn = f"postgresql://{role}:{PASSWORD}@{i.host}:{i.port}/{i.dbname}?application_name=t85{PASSWORD}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", *command, "--dsn", dsn],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        time.sleep(3)
        for _ in range(2):
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
                       [role])
            time.sleep(2.5)
        record(db, "t85.after")
        seal(db)
        time.sleep(2)
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "reconnect" in out.lower(), out[-600:]
    assert PASSWORD not in out and PASSWORD[:5] not in out and PASSWORD[5:] not in out, out[-600:]


def test_p6_a_hostile_event_arriving_on_the_live_stream_renders_as_text(db, start_api, make_token, page):
    record(db, "order.paid", target_id="first")
    seal(db)
    api = start_api(poll_interval=0.2, heartbeat=1)
    sign_in(page, api, make_token())
    _page_guard(page)
    page.wait_for_selector("#live-state.live")
    record(db, "hostile.live", actor_id=HOSTILE + "\u202e\u2066x", target_id="javascript:alert(7)",
           payload={"a": HOSTILE, "b": "\r\ndata: {\"seq\": 1}\r\n\r\n", "c": "\u2028event: audit"})
    seal(db)
    got = wait_rows(page, lambda r: any(row[4] == "hostile.live" for row in r))
    assert sum(1 for row in got if row[4] == "hostile.live") == 1
    assert not any("\u202e" in cell or "\u2066" in cell for row in got for cell in row)
    page.click("#events tbody tr:has-text('hostile.live')")
    page.wait_for_selector("#detail:not([hidden])")
    _no_markup(page)


def test_p7_the_token_is_in_no_element_of_the_page_after_signing_in(db, start_api, make_token, page):
    record(db, "order.paid")
    seal(db)
    api = start_api()
    token = make_token()
    sign_in(page, api, token)
    page.wait_for_selector("#live-state.live")
    html = page.content()
    assert secret_part(token) not in html
    assert page.evaluate("[...document.querySelectorAll('input')].map(i => i.value).join(' ')").find(secret_part(token)) == -1


def test_s39_a_tenant_limit_holds_across_many_made_up_actors(db, connect):
    db.execute("""CREATE TABLE public.t85_tl (id serial PRIMARY KEY, v int);
                  ALTER TABLE public.t85_tl OWNER TO app_maintainer;
                  GRANT SELECT, INSERT ON public.t85_tl TO app_writer; GRANT USAGE ON SEQUENCE public.t85_tl_id_seq TO app_writer""")
    connect("app_maintainer").execute("SELECT audit.enable_rate_limit('public.t85_tl', 100, 3, 60)")
    w = connect("app_writer")
    w.execute("SELECT set_config('pgaudit_py.tenant_id', 't85a', false)")
    ok = 0
    for i in range(8):
        w.execute("SELECT set_config('pgaudit_py.actor_id', %s, false)", [f"made-up-{i}"])
        if sqlstate_of(w, "INSERT INTO public.t85_tl (v) VALUES (1)") is None:
            ok += 1
    assert ok == 3, ok


def _catalog_fingerprint(db) -> tuple:
    return db.execute("""SELECT (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
                                (SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles),
                                (SELECT md5(string_agg(p.oid::text || p.proname || p.prosrc || coalesce(p.proacl::text, ''), ''
                                                       ORDER BY p.oid))
                                   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'audit'),
                                (SELECT md5(string_agg(c.oid::text || c.relname || coalesce(c.relacl::text, ''), '' ORDER BY c.oid))
                                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'audit'),
                                (SELECT count(*) FROM pg_event_trigger)""").fetchone()


@pytest.mark.parametrize("role", ["app_maintainer", "app_reader"])
@pytest.mark.parametrize("command", [["install"], ["install", "--schedule-seal"], ["demo"]])
def test_s40_install_and_demo_as_a_lesser_role_change_nothing(db, role, command):
    before = _catalog_fingerprint(db)
    events = n_intake_and_log(db)
    code, text, _ = run_cli(*command, dsn_role=role, db=db)
    assert code != 0 and "Traceback" not in text, (command, role, text[-300:])
    assert _catalog_fingerprint(db) == before
    assert n_intake_and_log(db) == events


def test_p8_a_tenant_tokens_page_offers_only_what_the_token_may_read(db, start_api, make_token, page):
    """docs/http.md: what the operator page offers follows whoami's role and tenant. A tenant token's
    page sends no request the server must refuse (403): views of the whole installation are not
    offered to it, or not asked for."""
    two_tenants(db, 1)
    api = start_api()
    refused: list[str] = []
    page.on("response", lambda resp: resp.status == 403 and refused.append(resp.url))
    sign_in(page, api, make_token(tenant_id="t85a"))
    wait_rows(page, lambda r: bool(r))
    for view in ("integrity", "storage", "health", "events"):
        button = page.locator(f"nav button[data-view={view}]")
        if button.is_visible():
            button.click()
            time.sleep(0.7)
    assert refused == [], refused


@pytest.mark.parametrize("bad", ["public key as signing key", "missing key file", "hmac file as pem", "ftp target",
                                 "s3 target with no bucket", "target is a file"])
def test_s41_archive_run_with_a_bad_key_or_target_plans_and_writes_nothing(db, tmp_path, bad):
    generate_keys(tmp_path / "keys")
    _sealed_blocks(db, 2)
    time.sleep(1.1)
    keys = tmp_path / "keys"
    key = {"public key as signing key": keys / "checkpoint-ed25519.pub.pem", "missing key file": keys / "nope.pem",
           "hmac file as pem": keys / "checkpoint-hmac.key"}.get(bad, keys / "checkpoint-ed25519.pem")
    (tmp_path / "afile").write_text("x")
    target = {"ftp target": "ftp://example.invalid/x", "s3 target with no bucket": "s3:///prefix",
              "target is a file": f"file://{tmp_path}/afile"}.get(bad, f"file://{tmp_path}/arch")
    before = n_intake_and_log(db)
    code, text, _ = run_cli("archive", "run", "--target", target, "--older-than", "1s", "--signing-key", str(key),
                            dsn_role="app_maintainer", db=db)
    assert code != 0 and "Traceback" not in text, text[-300:]
    assert db.execute("SELECT count(*) FROM audit.archive_batches").fetchone()[0] == 0, bad
    assert n_intake_and_log(db) == before
    assert not (tmp_path / "arch").exists() or not any((tmp_path / "arch").iterdir())


@pytest.mark.parametrize("expires", ["0d", "-1d", "0s", "3000000d", "1e3d", "NaNd", "1\u0661d"])
def test_s42_a_token_with_an_impossible_expiry_is_refused_with_no_row(db, expires):
    code, text, _ = run_cli("tokens", "create", "--name", "t85-exp", "--expires", expires, dsn_role="app_maintainer", db=db)
    assert code != 0 and "pga_" not in text and "Traceback" not in text, (expires, text[-300:])
    assert db.execute("SELECT count(*) FROM audit.api_tokens").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit.event_intake WHERE kind LIKE 'audit.api_token.%'").fetchone()[0] == 0


@pytest.mark.parametrize("args", [["history", "public.t85_h", "1"], ["verify"], ["archive", "list"], ["tracked"],
                                  ["limits"], ["count"], ["types", "list"]])
def test_s43_reading_commands_as_the_writer_or_a_stranger_show_nothing(db, connect, args):
    db.execute("CREATE TABLE public.t85_h (id int PRIMARY KEY, v text); ALTER TABLE public.t85_h OWNER TO app_maintainer")
    connect("app_maintainer").execute("SELECT audit.enable_tracking('public.t85_h')")
    db.execute("INSERT INTO public.t85_h VALUES (1, 'SECRETROW')")
    record(db, "t85.read", payload={"x": "SECRETPAYLOAD"})
    seal_all(db)
    for role in ("app_writer", "app_attacker"):
        code, text, _ = run_cli(*args, dsn_role=role, db=db)
        assert code != 0 and "Traceback" not in text, (args, role, text[-300:])
        assert "SECRETROW" not in text and "SECRETPAYLOAD" not in text and "t85_h" not in text.replace("public.t85_h", "")


LONG = "f3a9c1e07b5d4a2c9e8f1b3d5a7c9e0b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c"


@pytest.mark.parametrize(("args", "role"), [
    (["record", "1bad kind", "--actor-id", LONG], "app_writer"),
    (["record", "t85.x", "--tenant", LONG * 5], "app_writer"),
    (["record", "t85.x", "--payload", '{"k": "' + LONG + '"'], "app_writer"),
    (["history", "public.t85_nope", LONG], "app_reader"),
    (["track", "public.t" + LONG], "app_maintainer"),
    (["untrack", "public.t" + LONG], "app_maintainer"),
    (["limits", "set-operation", LONG + " x", "--per-minute", "5"], "app_maintainer"),
    (["limits", "set", "public.t" + LONG], "app_maintainer"),
    (["archive", "restore", "--target", "file:///nonexistent-t85", "--batch", LONG], "app_maintainer"),
    (["types", "load", LONG], "app_maintainer"),
    (["tokens", "revoke", "x" + LONG], "app_maintainer"),
    (["tokens", "create", "--name", "t85 " + LONG[:40]], "app_maintainer"),
    (["events", "--since", LONG], "app_reader"),
    (["count", "--prefix", LONG + "!"], "app_reader"),
    (["secrets", "delete", "--tenant", LONG, LONG], "app_secrets"),
])
def test_s44_a_long_value_given_in_the_wrong_place_is_not_repeated_on_stderr(db, args, role):
    code, text, result = run_cli(*args, dsn_role=role, db=db)
    assert code != 0, (args, text[-300:])
    assert LONG not in text and LONG[:32] not in text and LONG[-32:] not in text, (args, text[-400:])
    assert "Traceback" not in text


@pytest.mark.parametrize("value", ["1\u0661d", "\u0669\u0660d", "9\u200b0d", "\U0001d7d7d"])
def test_s45_a_duration_in_lookalike_digits_is_refused_as_the_api_refuses_them(db, value):
    """The HTTP API takes ASCII digits only (params.number); the command line's durations take any
    script's digits, so '1١d' (a 1 and an Arabic-Indic one) is read as 11 days. Safe: refused (exit 2),
    nothing changed."""
    before = db.execute("SELECT hot_retention::text FROM audit.archive_settings").fetchone()
    code, text, _ = run_cli("archive", "settings", "--hot-retention", value, dsn_role="app_maintainer", db=db)
    assert code == 2, (value, code, text[-200:])
    assert db.execute("SELECT hot_retention::text FROM audit.archive_settings").fetchone() == before


INVISIBLE = {"tag letter A": "\U000e0041", "tag space": "\U000e0020", "braille blank": "\u2800",
             "variation selector 16": "\ufe0f", "combining grapheme joiner": "\u034f",
             "musical begin beam": "\U0001d173", "shorthand overlap": "\U0001bca0", "no-break space at end": "\u00a0",
             "hangul filler (control)": "\u3164"}


@pytest.mark.parametrize("name", list(INVISIBLE))
def test_p9_an_invisible_character_cannot_make_one_actor_read_as_another(db, start_api, make_token, page, name):
    """docs/http.md: invisible characters are shown as escapes, so that no value can read as another.
    'alice' and 'alice' + an invisible character must not render alike, in the table or the detail pane."""
    c = INVISIBLE[name]
    record(db, "t85.inv.real", actor_id="alice", target_id="alice")
    record(db, "t85.inv.fake", actor_id="alice" + c, target_id="alice" + c)
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    got = wait_rows(page, lambda r: {"t85.inv.real", "t85.inv.fake"} <= {row[4] for row in r})
    real = next(r for r in got if r[4] == "t85.inv.real")
    fake = next(r for r in got if r[4] == "t85.inv.fake")
    assert not any(c in cell for cell in fake), (name, fake)
    assert [x for i, x in enumerate(real) if i not in (0, 1, 4)] != [x for i, x in enumerate(fake) if i not in (0, 1, 4)]
    page.click("#events tbody tr:has-text('t85.inv.fake')")
    page.wait_for_selector("#detail:not([hidden])")
    assert c not in page.text_content("#detail"), name


@pytest.mark.parametrize("name", list(INVISIBLE))
def test_s46_an_invisible_character_cannot_make_one_actor_print_as_another_on_the_cli(db, name):
    """docs/cli.md: no two values print alike. 'alice' and 'alice' + an invisible character, in the
    events table."""
    c = INVISIBLE[name]
    record(db, "t85.inv.real", actor_id="alice", target_id="alice")
    record(db, "t85.inv.fake", actor_id="alice" + c, target_id="alice" + c)
    code, text, _ = run_cli("events", dsn_role="app_reader", db=db)
    assert code == 0
    fake = next(ln for ln in text.splitlines() if "t85.inv.fake" in ln)
    real = next(ln for ln in text.splitlines() if "t85.inv.real" in ln)
    assert c not in fake, (name, fake)
    assert fake.split("t85.inv.fake")[1].split() != real.split("t85.inv.real")[1].split()


@pytest.mark.parametrize(("real", "fake"), [
    ({"actor_type": "user", "actor_id": "alice:admin"}, {"actor_type": "user:alice", "actor_id": "admin"}),
    ({"target_type": "order", "target_id": "1:refund"}, {"target_type": "order:1", "target_id": "refund"}),
    ({"tenant_id": None}, {"tenant_id": ""}),
])
def test_p10_two_different_actors_or_targets_never_show_alike_in_the_detail_pane(db, start_api, make_token, page,
                                                                                   real, fake):
    """A writer names an actor type holding ':' so that its event shows as another actor's. The page
    must show the two differently, at least where the whole event is shown (the detail pane)."""
    record(db, "t85.who.real", **real)
    record(db, "t85.who.fake", **fake)
    seal(db)
    stored = db.execute("SELECT actor_type, actor_id, target_type, target_id, tenant_id FROM audit.events"
                        " WHERE kind LIKE 't85.who.%'").fetchall()
    assert len(set(stored)) == 2, stored  # the log holds two different events
    api = start_api()
    sign_in(page, api, make_token())
    wait_rows(page, lambda r: {"t85.who.real", "t85.who.fake"} <= {row[4] for row in r})
    shown = {}
    for kind in ("t85.who.real", "t85.who.fake"):
        page.click(f"#events tbody tr:has-text('{kind}')")
        page.wait_for_selector(f"#detail-fields dd:has-text('{kind}')")
        names = page.eval_on_selector_all("#detail-fields dt", "n => n.map(x => x.textContent)")
        values = page.eval_on_selector_all("#detail-fields dd", "n => n.map(x => x.textContent)")
        d = dict(zip(names, values, strict=True))
        shown[kind] = (d.get("actor"), d.get("target"), d.get("tenant"))
    assert shown["t85.who.real"] != shown["t85.who.fake"], shown


def test_h24_honest_use_a_tenant_token_naming_its_own_tenant_is_served_everywhere(db, start_api, make_token):
    two_tenants(db, 2)
    api = start_api(heartbeat=0.3, poll_interval=0.2)
    token = make_token(tenant_id="t85a")
    with api.client(token) as c:
        for path in ("/v1/audit", "/v1/audit/count", "/v1/audit/monthly"):
            r = c.get(path, params={"tenant_id": "t85a"})
            assert r.status_code == 200, (path, r.text[:200])
    status, got = stream_collect(api, token, params={"tenant_id": "t85a", "since_seq": "0"}, seconds=1)
    assert status == 200 and {json.loads(d)["tenant_id"] for _, e, d in got if e == "audit"} == {"t85a"}
    with api.client(make_token("maintainer")) as c:
        assert c.get("/v1/audit").status_code == 200 and c.get("/v1/audit/verify").json()["ok"] is True


def test_s47_honest_use_the_maintainer_is_never_limited(db, connect, limited):
    m = connect("app_maintainer")
    m.execute("SELECT set_config('pgaudit_py.actor_id', 'alice', false)")
    for _ in range(6):
        m.execute("INSERT INTO public.t85_rl (v) VALUES (1)")
    assert db.execute("SELECT count(*) FROM public.t85_rl").fetchone()[0] == 6


def test_h25_behind_a_trusted_proxy_a_spoofed_leftmost_forwarded_address_does_not_dodge_the_brake(postgresql):
    """--trusted-proxy 127.0.0.1: the proxy appends the real client's address to X-Forwarded-For; a
    client that puts a new address of its own before it on each guess is still one client."""
    from api_server import LiveServer

    from pgaudit_py.server import ServerConfig

    i = postgresql.info
    server = LiveServer(ServerConfig(dsn=f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader",
                                     failures_allowed=3), trusted_proxies=["127.0.0.1"])
    try:
        codes = []
        with server.client("pga_000000000000_" + "5" * 64) as c:
            for n in range(8):
                codes.append(c.get("/v1/audit", headers={"X-Forwarded-For": f"10.9.{n}.1, 203.0.113.9"}).status_code)
    finally:
        server.stop()
    assert 429 in codes, codes


def test_s48_no_key_or_value_reaches_the_server_log_through_failures_and_rotation(db, connect, pg_cluster):
    log = Path(pg_cluster.log)
    start = log.stat().st_size
    app = connect("app_secrets")
    key, new_key = os.urandom(32).hex(), os.urandom(32).hex()
    client_key_setup(app, key)
    secrets.declare_secret(app, "stripe.api_key", "Stripe")
    secrets.put_secret(app, "t85a", "stripe.api_key", "sk_live_LOGCHECK_1")
    for bad in (lambda: secrets.put_secret(app, "t85a", "stripe.api_key", "sk_live_LOGCHECK_2" + "x" * 70_000),
                lambda: secrets.put_secret(app, "t85a", "undeclared.slot", "sk_live_LOGCHECK_3"),
                lambda: app.execute("SELECT audit.hold_master_key(%s, %s)", [key[:-2], "master_key"]),
                lambda: app.execute("SELECT audit.hold_master_key('x', %s)", [new_key])):
        with suppress(Exception):
            bad()
        if app.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            app.execute("ROLLBACK")
    with secrets.use_master_key(app, key, new_key=new_key):
        secrets.add_master_key(app)
        while not secrets.rotate_master_key(app, 10).done:
            pass
    with secrets.use_master_key(app, new_key):
        assert secrets.read_secret(app, "t85a", "stripe.api_key") == "sk_live_LOGCHECK_1"
        secrets.rotate_tenant_key(app, "t85a", 10)
    time.sleep(0.5)
    with log.open("rb") as f:
        f.seek(start)
        logged = f.read().decode("utf-8", "replace")
    for secret in (key, new_key, key.upper(), new_key.upper(), key[:-2], "sk_live_LOGCHECK"):
        assert secret not in logged, secret[:12]
