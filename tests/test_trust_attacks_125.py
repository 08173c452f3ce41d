"""A hundred-and-twenty-fifth attacker's trial: claims without tests. Checkable sentences of
docs/http.md, docs/python.md and docs/integrations.md that no test would catch breaking (or whose
test asserts too little), tried as the token, role or input they are about.

  S. the stream: a token revoked while the stream waits for its first read, the paging
     parameters it refuses, HEAD, where the first block says it starts.
  B. numbers at their exact bounds: limit 500, months 120, 100 by_kind_prefix, an expiry before
     the year 9999.
  U. 401s: no token, a malformed, unknown, expired and revoked one, the same answer for each.
  V. /verify: a verdict reused for 10 s whatever happens, and saying so.

Each test asserts the claim, so it FAILS when the claim breaks (or the doc sentence is wrong).
Every database object made is named t125_* and dropped (tokens live in the per-test database).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import psycopg
import pytest
from api_server import sse_messages

from pgaudit_py import record, seal
from pgaudit_py.errors import PgAuditError
from pgaudit_py.tokens import create_token, revoke_token

WAIT = 30  # seconds: an upper bound for things that happen at once, never asserted on as a time


def _wait_for(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _server_waits_on_lock(db: psycopg.Connection, text: str) -> bool:
    return bool(db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'pgaudit serve' AND wait_event_type = 'Lock' AND query ILIKE %s",
        [f"%{text}%"]).fetchone()[0])


# ---------------------------------------------------------------- S: the stream

def test_s1_a_token_revoked_before_the_stream_reads_gets_no_event(db, connect, start_api, make_token):
    """http.md: "A stream whose token is revoked or expires ends with `event: error` (...): the
    token is asked again before each event goes out (an answer at most 0.5 s old, so that a reader
    that stalls mid-page and resumes after a revocation gets nothing more than was already on its
    way ...)" and "refused from the server's next request".

    The attack: the request is authenticated, then waits (here on a lock a superuser holds on
    seal_state, as it would on a busy pool) for the high-water mark it reads before the 200; the
    token is revoked meanwhile. When the wait ends, no event may go out on the revoked token: the
    answer it was let in on is older than 0.5 s by then."""
    for i in range(20):
        record(db, "t125.gap", target_id=str(i))
    seal(db)
    token = make_token("reader", name="t125_gap")
    api = start_api(poll_interval=0.2, heartbeat=0.5)
    with api.client(token) as warm:  # the server is up, its listener has read its mark
        assert warm.get("/v1/whoami").status_code == 200
    got: dict[str, object] = {"events": [], "error": None, "status": None}

    def read() -> None:
        try:
            with api.client(token) as client, client.stream(
                    "GET", "/v1/audit/stream", params={"since_seq": "0"}) as response:
                got["status"] = response.status_code
                if response.status_code != 200:
                    return
                deadline = time.monotonic() + 10
                for m in sse_messages(response):
                    if m.event == "audit":
                        got["events"].append(m.id)  # type: ignore[union-attr]
                    if m.event == "error":
                        got["error"] = m.data
                        return
                    if time.monotonic() > deadline:
                        return
        except httpx.HTTPError as exc:
            got["exc"] = repr(exc)

    locker = connect(autocommit=False)
    locker.execute("LOCK TABLE audit.seal_state IN ACCESS EXCLUSIVE MODE")
    reader = threading.Thread(target=read, daemon=True)
    try:
        reader.start()
        _wait_for(lambda: _server_waits_on_lock(db, "seal_state"), "the stream to wait for seal_state")
        revoke_token(connect("app_maintainer"), "t125_gap")
        assert db.execute("SELECT revoked_at IS NOT NULL FROM audit.api_tokens WHERE name = 't125_gap'").fetchone()[0]
    finally:
        locker.rollback()
    reader.join(timeout=WAIT)
    assert not reader.is_alive()
    assert got["events"] == [], (f"a token revoked before the stream's first read received {len(got['events'])} "
                                 f"events (status {got['status']}, then error {got['error']!r})")


@pytest.mark.parametrize("query", [{"limit": "5"}, {"before_seq": "5"}, {"before_intake_id": "5"}])
def test_s2_the_stream_refuses_its_limit_and_paging_parameters_before_the_200(db, start_api, make_token, query):
    """http.md: "every sealed event after `since_seq` ... that matches the filters (those of
    `/v1/audit`; its `limit` and paging parameters are refused)" and "Filters are checked before the
    `200` (a bad one is a 400), and `HEAD` answers the headers alone." Each, on GET and on HEAD."""
    record(db, "t125.s2")
    seal(db)
    api = start_api()
    with api.client(make_token()) as client:
        with client.stream("GET", "/v1/audit/stream", params=query) as response:
            status = response.status_code
            body = response.read() if status != 200 else b"(a stream)"
        assert status == 400, (query, status, body[:200])
        assert b"invalid_parameter" in body
        head = client.head("/v1/audit/stream", params=query)
        assert head.status_code == 400, (query, head.status_code)
        ok = client.head("/v1/audit/stream")
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/event-stream")
        assert ok.content == b""


def test_s3_the_first_block_names_where_the_stream_starts(db, start_api, make_token):
    """http.md: "the first block's `id` is the `seq` the stream starts after (`since_seq`, or the last
    sealed one when it starts from now)", and a `Last-Event-ID` reconnect "resumes right after
    it, and gets every later event exactly once, in `seq` order"."""
    for i in range(6):
        record(db, "t125.s3", target_id=str(i))
    seal(db)
    last = db.execute("SELECT last_seq FROM audit.seal_state").fetchone()[0]
    api = start_api(poll_interval=0.2, heartbeat=0.3)
    token = make_token()

    def first(params: dict, headers: dict | None = None, events: int = 0) -> list:
        seen = []
        with api.client(token) as client, client.stream("GET", "/v1/audit/stream", params=params,
                                                        headers=headers or {}) as response:
            assert response.status_code == 200
            for m in sse_messages(response):
                if m.comment is None:
                    seen.append(m.id)
                if len(seen) > events:
                    return seen
        return seen

    assert first({}) == [str(last)]
    assert first({"since_seq": str(last - 3)}, events=3) == [str(last - 3), str(last - 2), str(last - 1), str(last)]
    # Last-Event-ID wins over since_seq, as an EventSource reconnecting sends both.
    assert first({"since_seq": "0"}, {"Last-Event-ID": str(last - 1)}, events=1) == [str(last - 1), str(last)]


# ---------------------------------------------------------------- B: numbers at their bounds

def test_b1_limit_500_is_taken_and_pages_on(db, start_api, make_token):
    """http.md: "`limit` 1 to 500 (default 50)" (the 400s past it are tested; this is the bound
    itself, and the default): 500 events a page, and a `next` link when there are more."""
    db.execute("SELECT audit.record(kind => 't125.b1', target_id => i::text) FROM generate_series(1, 501) i")
    seal(db)
    api = start_api()
    with api.client(make_token()) as client:
        page = client.get("/v1/audit", params={"limit": "500", "kind_prefix": "t125.b1"})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["events"]) == 500 and body["next"] is not None
        rest = client.get(body["next"]).json()
        assert [e["target_id"] for e in rest["events"]] == ["1"] and rest["next"] is None
        default = client.get("/v1/audit", params={"kind_prefix": "t125.b1"}).json()
        assert len(default["events"]) == 50
        one = client.get("/v1/audit", params={"limit": "1", "kind_prefix": "t125.b1"}).json()
        assert [e["target_id"] for e in one["events"]] == ["501"]


def test_b2_months_120_and_100_prefixes_are_taken(db, start_api, make_token):
    """http.md: "`/v1/audit/monthly` ... `months` 1 to 120 (default 12)" and "`/v1/audit/count` ...
    `by_kind_prefix` repeated up to 100 times": the bounds themselves answer 200, with that many
    months and prefixes."""
    record(db, "t125.b2")
    api = start_api()
    prefixes = [f"t125.p{i}" for i in range(100)]
    with api.client(make_token()) as client:
        r = client.get("/v1/audit/monthly", params={"months": "120"})
        assert r.status_code == 200, r.text
        assert len(r.json()["months"]) == 120
        assert len(client.get("/v1/audit/monthly").json()["months"]) == 12
        assert len(client.get("/v1/audit/monthly", params={"months": "1"}).json()["months"]) == 1
        c = client.get("/v1/audit/count", params={"by_kind_prefix": prefixes})
        assert c.status_code == 200, c.text
        assert sorted(c.json()["by_kind_prefix"]) == sorted(prefixes)
        m = client.get("/v1/audit/monthly", params={"by_kind_prefix": [*prefixes, "t125.x"]})
        assert m.status_code == 400, m.text


def test_b3_an_expiry_just_before_the_year_9999_is_taken_and_9999_is_not(db, connect):
    """http.md: "An expiry is a time before the year 9999 (`create_api_token` refuses
    `'infinity'`); a token with none never expires." At the exact bound, and one microsecond
    before it."""
    maintainer = connect("app_maintainer")
    just_before = datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    made = create_token(maintainer, "t125_b3_ok", "reader", expires_at=just_before)
    assert made.info.expires_at == just_before
    at_bound = datetime(9999, 1, 1, tzinfo=timezone.utc)
    east = datetime(9999, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))  # the same instant, written otherwise
    for when in (at_bound, east):
        with pytest.raises((psycopg.Error, PgAuditError)):
            create_token(maintainer, "t125_b3_no", "reader", expires_at=when)
    with pytest.raises((psycopg.Error, PgAuditError)):
        maintainer.execute("SELECT audit.create_api_token('abcdefabcdef', 't125_b3_inf', 'reader',"
                           " '\\x00'::bytea, NULL, 'infinity')")
    names = [r[0] for r in db.execute("SELECT name FROM audit.api_tokens WHERE name LIKE 't125_b3%'")]
    assert names == ["t125_b3_ok"]


# ---------------------------------------------------------------- U: 401s

def test_u1_malformed_unknown_expired_and_revoked_tokens_get_one_answer(db, connect, start_api, make_token):
    """http.md: "No token, or an unknown, malformed, expired or revoked one: 401 with
    `WWW-Authenticate`, the same answer for each." The four kinds of token a guesser can hold,
    compared byte for byte (status, body, WWW-Authenticate), on a route of each kind."""
    maintainer = connect("app_maintainer")
    expiring = create_token(maintainer, "t125_u1_exp", "reader",
                            expires_at=db.execute("SELECT now() + interval '1.5 s'").fetchone()[0]).token
    revoked = make_token(name="t125_u1_rev")
    revoke_token(maintainer, "t125_u1_rev")
    _wait_for(lambda: db.execute("SELECT now() > expires_at FROM audit.api_tokens WHERE name = 't125_u1_exp'")
              .fetchone()[0], "the token to expire")
    unknown = "pga_" + "0" * 12 + "_" + "1" * 64
    malformed = "pga_" + "0" * 12 + "_" + "1" * 63
    api = start_api(failures_allowed=1000)  # the brake's 429 is another claim (below the table)
    for path, method in (("/v1/audit", "GET"), ("/v1/audit/stream", "GET"), ("/v1/audit/archive/run", "POST"),
                         ("/v1/whoami", "GET")):
        answers = {}
        for label, token in (("malformed", malformed), ("unknown", unknown), ("expired", expiring),
                             ("revoked", revoked), ("upper-case", revoked.upper())):
            with api.client(token) as client:
                r = client.request(method, path)
            answers[label] = (r.status_code, r.content, r.headers.get("www-authenticate"))
        assert len(set(answers.values())) == 1, (path, answers)
        assert next(iter(answers.values()))[0] == 401 and next(iter(answers.values()))[2]


def test_u2_no_token_gets_the_same_answer_as_an_unknown_one(start_api):
    """http.md: "An unknown, malformed, expired or revoked token (or another scheme than `Bearer`):
    401 with `WWW-Authenticate` (`error="invalid_token"`), the same answer for each; no
    `Authorization` header: 401 asking for a token". No header at all, a scheme other than Bearer,
    and an unknown token."""
    api = start_api()
    answers = {}
    for label, headers in (("none", {}), ("basic", {"Authorization": "Basic dXNlcjpwYXNz"}),
                           ("unknown", {"Authorization": "Bearer pga_" + "0" * 12 + "_" + "2" * 64})):
        with api.client() as client:
            r = client.get("/v1/audit", headers=headers)
        answers[label] = (r.status_code, r.json()["error"], r.headers.get("www-authenticate"))
    assert all(a[0] == 401 and a[2] for a in answers.values()), answers
    assert answers["basic"] == answers["unknown"] != answers["none"], answers
    assert 'error="invalid_token"' in answers["unknown"][2] and "invalid_token" not in answers["none"][2], answers


# ---------------------------------------------------------------- V: /verify

def test_v1_a_verdict_is_reused_within_10_s_whatever_happens_and_says_so(db, start_api, make_token):
    """http.md: "a verdict is reused for 10 s whatever happens, so that no reader can keep the
    database recomputing, ... and says so: `verified_at`, `reused`". Two calls, an event sealed
    between them: the second is the first's verdict (same `verified_at`, `reused` true), with
    the pending count read afresh; no second verify() ran."""
    token = make_token()
    record(db, "t125.v1")
    seal(db)
    api = start_api()
    with api.client(token) as client:
        t0 = time.monotonic()
        first = client.get("/v1/audit/verify").json()
        record(db, "t125.v1")
        seal(db)
        record(db, "t125.v1.pending")
        second = client.get("/v1/audit/verify").json()
        elapsed = time.monotonic() - t0
    assert first["reused"] is False and first["ok"] is True
    if elapsed < 9:  # the claim is about 10 s; a machine this slow says nothing about it either way
        assert second["reused"] is True and second["verified_at"] == first["verified_at"], (first, second)
        assert second["events_checked"] == first["events_checked"]
    assert first["pending"] == 0 and second["pending"] == 1, (first, second)


# ---------------------------------------------------------------- R: the failure brake, at once

def test_r1_unknown_tokens_sent_at_once_get_no_more_than_10_lookups(db, connect, start_api):
    """http.md: "A lookup counts from when it starts, so that requests sent at once get no more
    lookups than one after another: an address's lookups still under way and those that failed
    within the minute are 10 at most (when lookups under way make up part of the count, the 429
    says `Retry-After: 1`)." 30 distinct unknown tokens at once, while every lookup is held up (a
    superuser's lock on the token table): at most 10 are looked up (401), the rest are 429 with
    `Retry-After: 1`; afterwards the address waits out the minute (a longer Retry-After)."""
    api = start_api()
    locker = connect(autocommit=False)
    locker.execute("LOCK TABLE audit.api_tokens IN ACCESS EXCLUSIVE MODE")
    answers: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        with api.client(f"pga_{i:012x}_" + "3" * 64) as client:
            r = client.get("/v1/audit/count")
        with lock:
            answers.append((r.status_code, r.headers.get("retry-after")))

    threads = [threading.Thread(target=guess, args=(i,), daemon=True) for i in range(30)]
    try:
        for t in threads:
            t.start()
        # Every request that the brake let through is now waiting for the lock (or for a pooled
        # connection); the others have been answered.
        _wait_for(lambda: len(answers) >= 20, "twenty answers while the lookups are held up")
        _wait_for(lambda: _server_waits_on_lock(db, "authenticate_api_token"), "a lookup held up by the lock")
    finally:
        locker.rollback()
    for t in threads:
        t.join(timeout=WAIT)
    statuses = sorted(s for s, _ in answers)
    assert len(answers) == 30
    assert statuses.count(401) == 10, statuses
    assert set(statuses) <= {401, 429}, statuses
    assert {ra for s, ra in answers if s == 429} == {"1"}, answers
    with api.client("pga_" + "f" * 12 + "_" + "3" * 64) as client:
        later = client.get("/v1/audit/count")
    assert later.status_code == 429 and int(later.headers["retry-after"]) > 1, later.headers


# ---------------------------------------------------------------- F: files that are not what they seem

SWAPPER = r"""
import os, sys
d = sys.argv[1]
name, tmp = os.path.join(d, "x.json"), os.path.join(d, "x.tmp")
while True:
    for target in ("good.keep", "fifo.keep"):
        try:
            os.symlink(target, tmp)
            os.replace(tmp, name)
        except FileExistsError:
            os.unlink(tmp)
"""


def _release_fifo_readers(fifo) -> int:
    """Whoever is blocked opening the FIFO for reading gets it, and reads its end at once: how many were."""
    quiet = released = 0
    while quiet < 20:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader waiting
            quiet += 1
            time.sleep(0.05)
            continue
        os.close(fd)
        quiet, released = 0, released + 1
    return released


def test_f1_a_checkpoint_that_becomes_a_fifo_after_its_stat_does_not_hang_verify(db, start_api, make_token, tmp_path):
    """http.md: "`GET /v1/audit/verify` ... `last_checkpoint`: the newest signed checkpoint in
    `--checkpoint-dir` (by block), whether its signatures verify ... (`null` without a directory)",
    and "Every answer is JSON in UTF-8". The server reads a candidate only if `stat` says it is a
    regular file (verify_archive.regular_file), then opens it by name again: a file swapped for a
    FIFO between the two (here a process flipping a symlink between a regular file and a FIFO)
    blocks the read, with no writer, for ever; the request never answers, and it holds one of
    asyncio's few worker threads."""
    cp = tmp_path / "cp"
    cp.mkdir()
    (cp / "good.keep").write_text("{}")
    fifo = cp / "fifo.keep"
    os.mkfifo(fifo)
    token = make_token()
    seal(db)
    api = start_api(checkpoint_dir=cp)
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(cp)])
    hung = None
    try:
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=15) as client:
            for i in range(400):
                try:
                    r = client.get("/v1/audit/verify")
                except httpx.TimeoutException:
                    hung = i
                    break
                assert r.status_code == 200, r.text
    finally:
        swapper.kill()
        swapper.wait(timeout=WAIT)
        released = _release_fifo_readers(fifo)
    assert hung is None, (f"GET /v1/audit/verify no longer answered (request {hung}); writer openings that found"
                          f" the FIFO opened for reading (a blocked reader): {released}")


# ---------------------------------------------------------------- G: clients that go away

def test_g1_streams_abandoned_mid_page_leave_the_pool_to_requests(db, start_api, make_token):
    """http.md: "A stream holds a pooled connection only while it reads", and requests "share a
    pool of connections (`--pool-size`)". With a pool of 2: six streams from the log's start over
    3,000 events, each read for one event and then dropped (the socket closed mid-page) or left
    unread (stalled), and the server still answers a count with the database's number."""
    token = make_token()
    db.execute("SELECT audit.record(kind => 't125.g1', target_id => i::text) FROM generate_series(1, 3000) i")
    seal(db)
    api = start_api(pool_size=2, poll_interval=0.2, heartbeat=0.5)
    stalled = []
    try:
        for i in range(6):
            client = api.client(token)
            request = client.build_request("GET", "/v1/audit/stream", params={"since_seq": "0", "kind_prefix": "t125.g1"})
            response = client.send(request, stream=True)
            assert response.status_code == 200
            assert next(m for m in sse_messages(response) if m.event == "audit").id
            if i % 2:
                response.close()
                client.close()
            else:
                stalled.append((client, response))
        with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=25) as client:
            r = client.get("/v1/audit/count", params={"by_kind_prefix": "t125.g1"})
        assert r.status_code == 200, r.text
        assert r.json()["by_kind_prefix"] == {"t125.g1": 3000}
    finally:
        for client, response in stalled:
            response.close()
            client.close()


# ---------------------------------------------------------------- T: token names

def _dsn(db: psycopg.Connection, user: str) -> str:
    i = db.info
    return f"host={i.host} port={i.port} dbname={i.dbname} user={user}"


def test_t1_no_name_looks_like_an_id_in_upper_case_either(db, connect):
    """http.md: "no name looks like an id (twelve hex digits), so that `revoke` finds one token".
    A maintainer names a decoy token after a victim token's id written in upper case (twelve hex
    digits still, and `tokens list` is where an operator copies ids from, by eye or by hand); the
    operator then revokes the leaked victim by its id as typed: the decoy is revoked, the victim
    stays live. The name must be refused at creation."""
    maintainer = connect("app_maintainer")
    victim = create_token(maintainer, "t125_victim", "reader")
    for n in range(8):  # an id with a letter in it (all digits: one chance in 280)
        if victim.info.token_id.upper() != victim.info.token_id:
            break
        victim = create_token(maintainer, f"t125_victim{n}", "reader")
    typed = victim.info.token_id.upper()
    try:
        create_token(maintainer, typed, "reader")
        made = True
    except (PgAuditError, psycopg.Error):
        made = False
    revoked = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "tokens", "revoke", typed,
                              "--dsn", _dsn(db, "app_maintainer")], capture_output=True, text=True, timeout=120)
    live = db.execute("SELECT name FROM audit.api_tokens WHERE revoked_at IS NULL ORDER BY name").fetchall()
    assert not made, (f"a token named {typed} (the victim's id in upper case) was created; `pgaudit tokens revoke"
                      f" {typed}` then exited {revoked.returncode} and the live tokens are {live}")


# ---------------------------------------------------------------- P: the pytest plugin

def test_p1_assert_recorded_compares_numbers_as_json(db, trail):
    """integrations.md: "Values are compared as JSON (`true` is not `1`)", of `assert_recorded(...,
    payload=)` "a subset for `payload`". An amount recorded as a `Decimal` (as python.md advises,
    "Decimal("12345678901234567.89") is stored with every digit") and asserted with the same
    Decimal, or with the float a test would write, is the JSON number 19.99 either way: found. And
    `true` is still not `1`."""
    from decimal import Decimal

    record(db, "t125.price", payload={"amount": Decimal("19.99"), "paid": True})
    trail.seal()
    missed = []
    for wanted in (Decimal("19.99"), 19.99):
        try:
            trail.assert_recorded("t125.price", payload={"amount": wanted})
        except AssertionError as exc:
            missed.append((wanted, str(exc).splitlines()[0][:200]))
    with pytest.raises(AssertionError):
        trail.assert_recorded("t125.price", payload={"paid": 1})
    assert missed == [], missed
