"""Attacks on the operator page and on the API after the first review's fixes (a second helper's
run). Findings first (each fails against the code it was written against), then attacks that held."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from api_server import sse_messages
from chromium import open_diff, rows, sign_in, wait_rows

from pgaudit_py import record, seal
from pgaudit_py.tokens import revoke_token


def detail_text(page) -> dict[str, str]:
    names = page.eval_on_selector_all("#detail-fields dt", "n => n.map(x => x.textContent)")
    values = page.eval_on_selector_all("#detail-fields dd", "n => n.map(x => x.textContent)")
    return dict(zip(names, values, strict=True))


def open_event(page, text: str) -> None:
    page.click(f"#events tbody tr:has-text('{text}')")
    page.wait_for_selector("#detail:not([hidden])")


# --- findings: the page ---------------------------------------------------------------------------

def test_forget_token_leaves_the_previous_sessions_data_for_the_next_token(db, start_api, make_token, page):
    """A shared tab: a global reader looks at a t2 event and the health view, presses "Forget
    token", and a t1-only colleague signs in. The t2 event's payload and the whole-installation
    views must be gone."""
    db.execute("CREATE TABLE public.payroll (id int PRIMARY KEY, salary int)")
    db.execute("SELECT audit.enable_tracking('public.payroll')")
    record(db, "order.paid", tenant_id="t2", target_id="t2-order", payload={"card": "t2-SECRET-CARD"})
    record(db, "order.paid", tenant_id="t1", target_id="t1-order")
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    wait_rows(page, lambda r: any(row[5] == "t2-order" for row in r))
    open_event(page, "t2-order")
    page.click("nav button[data-view=health]")
    page.wait_for_selector("#tracked tbody tr")
    page.click("nav button[data-view=events]")
    page.click("#forget")
    page.wait_for_selector("#signin:not([hidden])")

    page.fill("#token", make_token(tenant_id="t1"))
    page.click("#signin-form button")
    page.wait_for_selector("#app:not([hidden])")
    wait_rows(page, lambda r: r and {row[2] for row in r} == {"t1"})
    leaks = []
    if page.is_visible("#detail") and "t2-SECRET-CARD" in page.text_content("#detail-payload"):
        leaks.append("the t2 event's payload is still open in the detail pane")
    if page.is_visible("nav button[data-view=health]"):
        leaks.append("the whole installation's views are offered to a tenant's token")
    if "public.payroll" in page.text_content("#view-health"):
        leaks.append("the previous token's tracked tables are still shown in Health")
    assert leaks == []


def test_a_tenant_session_leaves_the_tenant_filter_locked_for_the_next_token(db, start_api, make_token, page):
    record(db, "order.paid", tenant_id="t2", target_id="t2-order")
    seal(db)
    api = start_api()
    sign_in(page, api, make_token(tenant_id="t1"))
    page.click("#forget")
    page.wait_for_selector("#signin:not([hidden])")
    page.fill("#token", make_token())  # a reader of every tenant
    page.click("#signin-form button")
    page.wait_for_selector("#app:not([hidden])")
    time.sleep(1)
    assert not page.eval_on_selector("#filters [name=tenant_id]", "i => i.readOnly"), \
        "the tenant filter stays locked to t1 for a token that reads every tenant"


def test_a_deeply_nested_payload_shows_the_previous_events_payload(db, start_api, make_token, page):
    """JSON.stringify is recursive in V8: a payload ~5,000 levels deep (well within the 64 KiB a
    payload may hold) throws in openEvent after the header was written, so the pane shows the new
    event's fields over the old event's payload."""
    record(db, "harmless.event", target_id="first", payload={"approved_by": "the-cfo"})
    depth = 6000
    db.execute("SELECT audit.record(kind => 'hostile.deep', target_id => 'second', payload => %s::jsonb)",
               ('{"d": ' + "[" * depth + "]" * depth + "}",))
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    wait_rows(page, lambda r: any("second" in row[5] for row in r))
    open_event(page, "first")
    open_event(page, "second")
    assert detail_text(page)["kind"] == "hostile.deep"
    assert "the-cfo" not in page.text_content("#detail-payload"), \
        "the deep event's detail shows the previous event's payload"


def test_payload_numbers_are_shown_as_stored(db, start_api, make_token, page):
    """The API sends PostgreSQL's own text of a payload (encoding.py keeps 1e350 as stored); the page
    parses it into doubles and prints it again: 1e350 becomes null, a 64-bit id or an exact amount
    is rounded."""
    db.execute("SELECT audit.record(kind => 'payment.made', target_id => 'numbers', payload =>"
               " '{\"amount\": 12345678901234567.89, \"account\": 9007199254740993, \"huge\": 1e350}'::jsonb)")
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    wait_rows(page, lambda r: any("numbers" in row[5] for row in r))
    open_event(page, "numbers")
    shown = page.text_content("#detail-payload")
    assert "9007199254740993" in shown and "12345678901234567.89" in shown and "null" not in shown, shown


def test_a_changed_bigint_column_shows_the_same_value_before_and_after(db, start_api, make_token, page):
    """A captured update of a bigint (or numeric) column: the row is marked changed, and its before
    and after cells read the same, because both were rounded to the nearest double."""
    db.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, balance bigint)")
    db.execute("SELECT audit.enable_tracking('public.ledger')")
    db.execute("INSERT INTO public.ledger VALUES (1, 9007199254740993)")
    db.execute("UPDATE public.ledger SET balance = 9007199254740992 WHERE id = 1")
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    diff = open_diff(page, "public.ledger.update")
    balance = next(d for d in diff if d[1] == "balance")
    assert balance[0] == "changed"
    assert balance[2] != balance[3], f"changed, yet shown as {balance[2]} before and {balance[3]} after"


def test_an_inserted_rows_before_image_of_prototype_named_columns_is_null(db, start_api, make_token, page):
    """row_before is null for an INSERT, and the page indexes {} with the column's name: columns
    named constructor, toString or __proto__ read Object.prototype's members."""
    db.execute('CREATE TABLE public.odd (id int PRIMARY KEY, "constructor" text, "__proto__" text, "toString" text)')
    db.execute("SELECT audit.enable_tracking('public.odd')")
    db.execute("INSERT INTO public.odd VALUES (1, 'a', 'b', 'c')")
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    diff = open_diff(page, "public.odd.insert")
    assert {column: before for _, column, before, _ in diff} == {
        "id": "null", "constructor": "null", "__proto__": "null", "toString": "null"}, diff


def test_the_streams_error_event_is_not_taken_for_an_audit_event(db, connect, start_api, make_token, page):
    """On revocation the stream sends `event: error`; the page's reader ignores the event type, takes
    {"code": "unauthorized"} for an audit event, shows it as a row and sets newestSeq to undefined."""
    make_token(name="soon-revoked")
    api = start_api(poll_interval=0.2)
    token = make_token(name="operator")
    sign_in(page, api, token)
    page.wait_for_selector("#live-state.live")
    revoke_token(connect("app_maintainer"), "operator")
    # The stream's error event signs the page out (a reload), never becomes a row.
    page.wait_for_selector("#signin:not([hidden])", timeout=15000)
    assert "revoked or expired" in page.text_content("#signin-error")
    assert page.evaluate("sessionStorage.getItem('pgaudit.token')") is None


def test_invisible_and_bidi_characters_are_made_visible(db, start_api, make_token, page):
    """An actor id of U+202E + 'ecila' reads 'alice' on screen; a filter for alice never finds it."""
    record(db, "money.moved", actor_type="user", actor_id="\u202eecila", target_id="bidi")
    record(db, "money.moved", actor_type="user", actor_id="al\u200bice", target_id="zwsp")
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    got = wait_rows(page, lambda r: sum(row[4] == "money.moved" for row in r) == 2)
    actors = [row[3] for row in got if row[4] == "money.moved"]
    assert not any(c in a for a in actors for c in "\u202e\u200b"), [a.encode("unicode_escape") for a in actors]


def test_a_redacted_column_list_cannot_be_mistaken_for_another(db, connect, start_api, make_token, page):
    """Health joins column names with ', ': a table owner renames a redacted column to 'ssn, email',
    and the operator reads that ssn and email are redacted, while both are logged in clear."""
    db.execute("CREATE TABLE public.people (id int PRIMARY KEY, ssn text, email text, notes text)")
    db.execute("SELECT audit.enable_tracking('public.people', redact_columns => '{notes}')")
    db.execute('ALTER TABLE public.people RENAME COLUMN notes TO "ssn, email"')
    db.execute("CREATE TABLE public.staff (id int PRIMARY KEY, ssn text, email text)")
    db.execute("SELECT audit.enable_tracking('public.staff', redact_columns => '{ssn,email}')")
    api = start_api()
    sign_in(page, api, make_token())
    page.click("nav button[data-view=health]")
    page.wait_for_selector("#tracked tbody tr")
    cells = page.eval_on_selector_all("#tracked tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")
    redacted = {c[0]: c[3] for c in cells}
    assert redacted["public.people"] != redacted["public.staff"], redacted


def test_a_response_for_the_forgotten_token_is_not_shown_to_the_next_one(db, start_api, make_token, page):
    """signOut aborts the stream only: a page of events asked for with the old token that arrives after
    the next person signed in (a slow query, a slow network) replaces the new session's events."""
    record(db, "order.paid", tenant_id="t2", target_id="t2-only")
    record(db, "order.paid", tenant_id="t1", target_id="t1-only")
    seal(db)
    api = start_api()
    everyone, t1 = make_token(), make_token(tenant_id="t1")
    held = []

    def hold_the_global_readers_pages(route):
        if route.request.headers.get("authorization") == f"Bearer {everyone}" and not held:
            held.append(route)  # answered later, as a slow query would be
        else:
            route.continue_()

    sign_in(page, api, everyone)
    wait_rows(page, lambda r: any(row[5] == "t2-only" for row in r))
    page.route("**/v1/audit?*", hold_the_global_readers_pages)
    page.click("#filters button[type=submit]")  # reloads: held
    deadline = time.monotonic() + 5
    while not held:
        assert time.monotonic() < deadline
        page.wait_for_timeout(50)
    page.click("#forget")
    page.fill("#token", t1)
    page.click("#signin-form button")
    wait_rows(page, lambda r: r and {row[2] for row in r} == {"t1"})
    held[0].continue_()
    page.wait_for_timeout(1500)
    assert {row[2] for row in rows(page)} == {"t1"}, rows(page)


def test_integrity_does_not_say_intact_when_the_signed_checkpoint_does_not_hold(db, start_api, make_token, page,
                                                                                 tmp_path):
    """A superuser who rewrites sealed events and recomputes the chain leaves verify() ok; only the
    signed checkpoint shows it. The page's headline still reads "intact" in green, the checkpoint's
    verdict in a line below, cut at 120 characters."""
    from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint, sign

    generate_keys(tmp_path / "keys")
    keys = load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem")
    db.execute("SELECT audit.record(kind => 'order.paid') FROM generate_series(1, 10)")
    seal(db)
    document = make_checkpoint(db, keys)
    body = {**document["checkpoint"], "block_hash": "00" * 32}  # what the chain held when it was signed
    (tmp_path / "cp").mkdir()
    (tmp_path / "cp" / "signed.json").write_text(json.dumps({"checkpoint": body, "signatures": sign(body, keys)}))
    api = start_api(checkpoint_dir=tmp_path / "cp",
                    checkpoint_keys=load_keys(public_key=tmp_path / "keys" / "checkpoint-ed25519.pub.pem"))
    token = make_token()
    with api.client(token) as client:
        verdict = client.get("/v1/audit/verify").json()
    assert verdict["ok"] and not verdict["last_checkpoint"]["ok"]
    sign_in(page, api, token)
    page.click("nav button[data-view=integrity]")
    page.wait_for_selector("#integrity strong")
    assert page.text_content("#integrity strong") != "intact", "rewritten up to a signed block, and shown as intact"


# --- findings: the API -------------------------------------------------------------------------

def test_answers_that_carry_the_log_are_not_stored_by_the_browser(db, start_api, make_token):
    """Only the stream says Cache-Control: no-store; every other authenticated answer (payloads,
    row images, the token's own name and tenant) may be kept in the browser's disk cache after
    "Forget token", and by any cache between that ignores the Authorization rule."""
    record(db, "order.paid", payload={"card": "4111"})
    seal(db)
    api = start_api()
    with api.client(make_token()) as client:
        for path in ("/v1/audit", "/v1/whoami", "/v1/audit/count", "/v1/audit/verify", "/v1/audit/tracked"):
            assert "no-store" in client.get(path).headers.get("cache-control", ""), path


def test_revocation_stops_a_stream_that_is_catching_up(db, connect, start_api, make_token):
    """The token is asked again only between rounds: a leaked token that opens the stream at
    since_seq=0 keeps receiving the whole backlog, page after page, after it is revoked."""
    db.execute("SELECT audit.record(kind => 'bulk.event', payload => jsonb_build_object('i', i, 'pad', repeat('x', 2000)))"
               " FROM generate_series(1, 30000) i")
    seal(db, 100000)
    token = make_token(name="leaked")
    api = start_api()
    after = 0
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c, \
            c.stream("GET", "/v1/audit/stream", params={"since_seq": "0"}) as r:
        messages = sse_messages(r)
        next(m for m in messages if m.event == "audit")
        revoke_token(connect("app_maintainer"), "leaked")
        time.sleep(1.5)
        try:
            for m in messages:
                if m.event == "error":
                    break
                if m.event == "audit":
                    after += 1
        except httpx.HTTPError:
            pass
    assert after < 5000, f"{after} events (~{after * 2 // 1000} MB) went out after the token was revoked"


def test_a_reused_verdict_says_so_and_a_fresh_one_finds_the_tampering(db, start_api, make_token, page, monkeypatch):
    """A verdict is reused for 10 s whatever happens (no reader can keep the database recomputing),
    and longer while nothing is sealed: a superuser's rewrite of a sealed row changes nothing the
    server watches. The reused verdict says when it was made, and so does the page; the next fresh
    one finds the rewrite."""
    from pgaudit_py.server import verification

    for i in range(5):
        record(db, "order.paid", target_id=f"o-{i}", payload={"amount": 10})
    seal(db)
    api = start_api()
    token = make_token()
    seal(db)
    with api.client(token) as client:
        first = client.get("/v1/audit/verify").json()
        assert first["ok"] is True and first["reused"] is False
        db.execute("ALTER TABLE audit.event_log DISABLE TRIGGER ALL")
        db.execute("UPDATE audit.event_log SET payload = '{\"amount\": 1000000}' WHERE target_id = 'o-2'")
        db.execute("ALTER TABLE audit.event_log ENABLE TRIGGER ALL")
        assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (False,)  # the chain knows
        reused = client.get("/v1/audit/verify").json()
        assert reused["reused"] is True and reused["verified_at"] == first["verified_at"]
    sign_in(page, api, token)
    page.click("nav button[data-view=integrity]")
    page.wait_for_selector("#integrity strong")
    assert "reused" in page.text_content("#integrity")
    monkeypatch.setattr(verification, "MIN_INTERVAL", 0.0)
    monkeypatch.setattr(verification, "REUSE", 0.0)
    page.click("#verify-now")
    page.wait_for_selector("#integrity strong.bad")
    assert "FAILED" in page.text_content("#integrity strong")


def test_an_unhandled_error_still_carries_the_security_headers(start_api, make_token, caplog, monkeypatch):
    """Starlette runs its handler of Exception outside every middleware: a 500 it made would lack
    the security headers (and the access log would write status 0). Any unforeseen failure will do."""
    import logging

    from pgaudit_py.server import app as server_app

    async def broken(*args, **kwargs):
        raise RuntimeError("an unforeseen failure, with a secret in its message")

    monkeypatch.setattr(server_app, "last_checkpoint", broken)
    caplog.set_level(logging.INFO, logger="pgaudit_py.server.access")
    api = start_api()
    with api.client(make_token()) as client:
        response = client.get("/v1/audit/verify")
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert "secret" not in response.text
    missing = [h for h in ("content-security-policy", "x-frame-options", "x-content-type-options", "referrer-policy")
               if h not in response.headers]
    time.sleep(0.2)
    logged = [r.getMessage() for r in caplog.records if r.name == "pgaudit_py.server.access"]
    assert missing == [] and any("/v1/audit/verify 500" in line for line in logged), (missing, logged)


def test_a_checkpoint_file_with_an_impossible_number_is_not_a_checkpoint(start_api, make_token, tmp_path):
    (tmp_path / "z.json").write_text('{"checkpoint": {"block_no": 1e400}}')
    api = start_api(checkpoint_dir=tmp_path)
    with api.client(make_token()) as client:
        response = client.get("/v1/audit/verify")
    assert response.status_code == 200 and response.json()["last_checkpoint"] is None


def test_a_burst_of_events_does_not_freeze_the_live_page(db, start_api, make_token, page):
    """Every event that arrives re-renders the whole table (renderEvents), and the list only grows:
    any writer who records a few thousand events at once makes every open operator page freeze."""
    api = start_api()
    sign_in(page, api, make_token())
    page.wait_for_selector("#live-state.live")
    db.execute("SELECT audit.record(kind => 'flood.event', target_id => i::text) FROM generate_series(1, 4000) i")
    seal(db, 10000)
    time.sleep(3)  # the stream has delivered them by now; the page is busy rendering
    started = time.monotonic()
    page.evaluate("1")  # waits for the page's main thread
    blocked = time.monotonic() - started
    count = page.evaluate("document.querySelectorAll('#events tbody tr').length")
    assert blocked < 2 and count <= 1000, f"the page was blocked for {blocked:.1f} s more and holds {count} rows"


def test_ipv4_clients_named_as_mapped_addresses_have_brakes_of_their_own(make_token, postgresql):
    """A proxy on a dual-stack socket (nginx `listen [::]:443 ipv6only=off`, which --trusted-proxy
    believes) or a dual-stack server the app is mounted in names an IPv4 client ::ffff:a.b.c.d, and
    client_key takes its /64: ::/64, one key for every IPv4 client on the Internet. One guesser then
    locks every new token out, whoever presents it."""
    import threading

    import uvicorn

    from pgaudit_py.server import ServerConfig, create_app
    from pgaudit_py.server.running import uvicorn_config

    info = postgresql.info
    app = create_app(config=ServerConfig(dsn=f"host={info.host} port={info.port} dbname={info.dbname} user=app_maintainer",
                                         failures_allowed=3))
    config = uvicorn_config(app, host="127.0.0.1", port=0, trusted_proxies=["127.0.0.1"])  # as --trusted-proxy
    config.log_level = "warning"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        with httpx.Client(base_url=url, timeout=10) as proxy:
            guess = {"Authorization": "Bearer pga_000000000000_" + "3" * 64, "X-Forwarded-For": "::ffff:198.51.100.7"}
            assert [proxy.get("/v1/whoami", headers=guess).status_code for _ in range(4)][-1] == 429
            victim = {"Authorization": f"Bearer {make_token()}", "X-Forwarded-For": "::ffff:203.0.113.9"}
            assert proxy.get("/v1/whoami", headers=victim).status_code == 200, "another IPv4 client is locked out"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_readers_cannot_make_verify_recompute_the_whole_chain_back_to_back(db, start_api, make_token):
    """The verdict is reused only while nothing was sealed: on a live log (a seal every 0.5 s) each
    GET /v1/audit/verify recomputes the whole chain, so one reader token keeps a backend reading the
    whole log for as long as it likes."""
    db.execute(f"ALTER DATABASE {db.info.dbname} SET track_functions = 'all'")
    db.execute("SELECT audit.record(kind => 'order.paid') FROM generate_series(1, 2000)")
    seal(db, 10000)
    api = start_api()
    with api.client(make_token()) as client:
        for i in range(6):
            record(db, "order.paid", target_id=str(i))
            seal(db)
            assert client.get("/v1/audit/verify").status_code == 200
    time.sleep(1)  # the statistics are flushed at most once a second
    db.execute("SELECT pg_stat_clear_snapshot()")
    calls = db.execute("SELECT calls FROM pg_stat_user_functions WHERE schemaname = 'audit' AND funcname = 'verify'"
                       ).fetchone()
    assert calls is not None and calls[0] <= 2, f"{calls[0]} full verifications in a few seconds, for one reader"


# --- attacks that held ----------------------------------------------------------------------------

HOSTILE = "<img src=x onerror=alert(1)>"


def _raw(api, request: bytes) -> bytes:
    import socket
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def test_every_kind_of_response_carries_the_security_headers(db, start_api, make_token):
    api = start_api(failures_allowed=1)
    token = make_token()
    requests = [("GET", "/", None), ("HEAD", "/", None), ("GET", "/page/app.js", None), ("GET", "/page/app.css", None),
                ("GET", "/page/nope.js", None), ("GET", "/nope", None), ("POST", "/", None), ("OPTIONS", "/v1/audit", None),
                ("GET", "/healthz", None), ("GET", "/openapi.json", None), ("GET", "/v1/audit", None),
                ("GET", "/v1/audit?limit=0", token), ("HEAD", "/v1/audit/stream", token),
                ("GET", "/v1/audit/stream?kind_prefix=a%20b", token), ("GET", "/v1/whoami", "pga_000000000000_" + "4" * 64),
                ("GET", "/v1/whoami", "pga_000000000000_" + "5" * 64)]  # the second one: 429
    seen = set()
    for method, path, bearer in requests:
        headers = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
        answer = _raw(api, f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
        head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
        seen.add(head.split(" ", 2)[1])
        for name in ("content-security-policy: default-src 'none'", "x-frame-options: deny",
                     "x-content-type-options: nosniff", "referrer-policy: no-referrer"):
            assert name in head, (method, path, head)
    assert {"200", "400", "401", "404", "405", "429"} <= seen, seen
    with api.client(token) as client, client.stream("GET", "/v1/audit/stream") as r:
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/page/app.js/", "/page/%2e%2e/app.py", "/page/..%2F..%2Fapp.py", "/page/app.js%00",
                                  "/page/APP.JS", "/page//app.js", "/page/app.js;x", "/page/./app.js", "//page/app.js",
                                  "/page/%61pp.js%2F", "/page/__init__.py", "/page/", "/page", "/index.html",
                                  "/page/app.js?x=/etc/passwd"])
def test_page_paths_reach_only_the_two_assets(start_api, path):
    api = start_api()
    answer = _raw(api, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status = answer.split(b" ", 2)[1]
    body = answer.split(b"\r\n\r\n", 1)[1]
    if status == b"200":
        assert path.startswith("/page/app.js?") and b"use strict" in body
    else:
        assert status in (b"404", b"400"), (path, answer[:200])
        assert b"import" not in body and b"root:" not in body


def test_hostile_values_from_every_source_render_as_text(db, connect, start_api, make_token, page, tmp_path):
    """Every value the page shows, from the log and from the installation's configuration, carries markup:
    nothing runs, no element is made of it, no CSP violation is reported."""
    table = 'public."' + HOSTILE + '\n' + "x'" + '"'
    db.execute(f'CREATE TABLE {table} (id int PRIMARY KEY, "{HOSTILE}" text)')
    db.execute(f"SELECT audit.enable_tracking('{table.replace(chr(39), chr(39) * 2)}', kind_prefix => 'hostile.table')")
    db.execute(f"SELECT audit.enable_rate_limit('{table.replace(chr(39), chr(39) * 2)}', 100, 1000, 60)")
    db.execute(f'INSERT INTO {table} VALUES (1, %s)', (HOSTILE,))
    db.execute(f'UPDATE {table} SET "{HOSTILE}" = %s', ("<script>alert(2)</script>",))
    writer = connect("app_writer", application_name=HOSTILE[:60])
    writer.execute("SELECT audit.record(kind => 'hostile.values', tenant_id => %s, actor_type => %s, actor_id => %s,"
                   " target_type => %s, target_id => %s, correlation_id => %s, idempotency_key => %s,"
                   " payload => %s::jsonb)",
                   (HOSTILE, "</td><td>", HOSTILE, "<svg onload=alert(3)>", HOSTILE, HOSTILE, HOSTILE,
                    json.dumps({HOSTILE: HOSTILE, "a\u2028": "\u2029", "deep": [[[HOSTILE]]]})))
    seal(db)
    (tmp_path / "cp.json").write_text(json.dumps({"checkpoint": {"block_no": 999999, "last_seq": HOSTILE,
                                                                 "block_hash": HOSTILE, "created_at": HOSTILE}}))
    api = start_api(checkpoint_dir=tmp_path)
    page.evaluate("() => 0")
    sign_in(page, api, make_token())
    page.evaluate("window.__violations = 0; document.addEventListener('securitypolicyviolation', () => window.__violations++)")
    wait_rows(page, lambda r: any(row[4] == "hostile.values" for row in r))
    open_event(page, "hostile.values")
    page.click("#events tbody tr:has-text('hostile.table.update')")
    for view, ready in (("integrity", "#integrity strong"), ("storage", "#view-storage:not([hidden])"),
                        ("health", "#tracked tbody tr")):
        page.click(f"nav button[data-view={view}]")
        page.wait_for_selector(ready)
    time.sleep(0.5)
    assert page.dialogs == []
    assert page.evaluate("document.querySelectorAll('img, script:not([src]), svg [onload], [onerror]').length") == 0
    assert page.evaluate("window.__violations") == 0
    assert HOSTILE in page.text_content("#tracked") and HOSTILE in page.text_content("#limits")
    # Whole, not cut (trial 86, p1: two values cut alike read alike).
    assert "block 999999 is not in the chain" in page.text_content("#integrity")


def test_the_token_stays_in_the_header_and_the_tab(db, start_api, make_token, page):
    record(db, "order.paid", target_id="o-1")
    seal(db)
    api = start_api()
    token = make_token()
    sent = []
    page.on("request", lambda request: sent.append((request.url, request.headers)))
    sign_in(page, api, token)
    page.wait_for_selector("#live-state.live")
    for view in ("integrity", "storage", "health", "events"):
        page.click(f"nav button[data-view={view}]")
    time.sleep(1)
    assert sent and not any(token in url for url, _ in sent)
    assert not any(headers.get("referer") for _, headers in sent)
    assert page.context.cookies() == [] and page.evaluate("localStorage.length") == 0
    assert token not in page.url and page.evaluate("history.length") <= 2  # about:blank, then the page
    other = page.context.new_page()  # another tab of the same browser
    other.goto(api.url + "/")
    assert other.evaluate("sessionStorage.getItem('pgaudit.token')") is None
    assert other.is_visible("#signin")
    other.close()


def test_forget_token_ends_the_stream_and_nothing_more_is_sent(db, start_api, make_token, page, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="pgaudit_py.server.access")
    api = start_api()
    sign_in(page, api, make_token())
    page.wait_for_selector("#live-state.live")
    page.click("#forget")
    page.wait_for_selector("#signin:not([hidden])")
    sent = []
    page.on("request", lambda request: sent.append(request.url))
    record(db, "order.paid")
    seal(db)
    time.sleep(3)
    ended = [r.getMessage() for r in caplog.records if r.name == "pgaudit_py.server.access"]
    assert sent == [] and any("GET /v1/audit/stream 200" in line for line in ended), ended  # the server saw it end
    assert page.evaluate("state.stream") is None and page.evaluate("sessionStorage.length") == 0


def test_a_revoked_token_mid_session_signs_the_page_out(db, connect, start_api, make_token, page):
    api = start_api()
    sign_in(page, api, make_token(name="revoke-me"))
    page.wait_for_selector("#live-state.live")
    revoke_token(connect("app_maintainer"), "revoke-me")
    page.wait_for_selector("#signin:not([hidden])", timeout=15000)
    assert page.evaluate("sessionStorage.getItem('pgaudit.token')") is None and page.evaluate("state.stream") is None


def test_an_expired_token_stops_an_idle_stream(db, start_api, make_token):
    from datetime import datetime, timedelta, timezone

    token = make_token(expires_at=datetime.now(timezone.utc) + timedelta(seconds=2))
    seal(db)
    api = start_api(poll_interval=0.2)
    with api.client(token) as client, client.stream("GET", "/v1/audit/stream") as r:
        messages = sse_messages(r)
        next(messages)
        time.sleep(2.5)
        record(db, "order.paid", actor_id="after-expiry")
        seal(db)
        got = []
        for m in messages:
            if m.event in ("error", "audit"):
                got.append((m.event, m.data))
                break
    assert got and got[0][0] == "error", got


def test_dismissing_the_archive_confirm_sends_nothing(db, start_api, make_token, browser, tmp_path):
    from pgaudit_py.checkpoint import generate_keys, load_keys

    generate_keys(tmp_path / "keys")
    api = start_api(archive_target=f"file://{tmp_path}/archive",
                    archive_keys=load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem"))
    context = browser.new_context()
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.dismiss())
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    sign_in(page, api, make_token("maintainer"))
    page.click("nav button[data-view=storage]")
    page.click("#archive-run")
    page.keyboard.press("Enter")
    time.sleep(1)
    assert posts == []
    context.close()


def test_tenant_tokens_on_the_new_endpoints(db, start_api, make_token):
    for tenant in ("t1", "t2", "t2", None):
        record(db, "order.paid", tenant_id=tenant)
    seal(db)
    api = start_api()
    with api.client(make_token(tenant_id="t1", name="tenant-one")) as client:
        assert client.get("/v1/whoami").json() == {**client.get("/v1/whoami").json(), "tenant_id": "t1",
                                                   "role": "reader", "name": "tenant-one"}
        for path in ("/v1/audit/tracked", "/v1/audit/limits", "/v1/audit/verify", "/v1/audit/status",
                     "/v1/audit/archives"):
            assert client.get(path).status_code == 403, path
        assert client.get("/v1/whoami", params={"tenant_id": "t2"}).status_code == 400
        months = client.get("/v1/audit/monthly", params={"by_kind_prefix": "order."}).json()["months"]
        assert sum(m["count"] for m in months) == 2 and sum(m["by_kind_prefix"]["order."] for m in months) == 1
        assert client.get("/v1/audit/monthly", params={"tenant_id": "t2"}).status_code == 403


def test_a_line_separator_in_a_payload_value_cannot_fake_a_payload_line(db, start_api, make_token, page):
    """JSON.stringify leaves U+2028 raw, and Chromium breaks the line there in the payload's <pre>:
    a value can draw a key of its own, such as "approved_by": "cfo", on a line of its own."""
    record(db, "expense.filed", target_id="plain", payload={"note": 'lunch  "approved_by": "cfo",'})
    record(db, "expense.filed", target_id="forged", payload={"note": 'lunch\u2028  "approved_by": "cfo",'})
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    wait_rows(page, lambda r: any(row[5] == "forged" for row in r))
    heights = {}
    for name in ("plain", "forged"):
        open_event(page, name)
        heights[name] = page.eval_on_selector("#detail-payload", "p => p.getBoundingClientRect().height")
    assert heights["forged"] == heights["plain"], f"the value drew an extra line: {heights}"


def test_verify_floods_with_a_large_checkpoint_directory_do_not_starve_the_pool(
        db, start_api, make_token, tmp_path):
    """The verdict is cached and runs on its own connection, but each GET /v1/audit/verify takes a
    pooled connection and holds it while it reads and parses every file of --checkpoint-dir (a daily
    checkpoint for ten years: 3,650 files) in a thread: a few readers asking for verify in a loop
    hold the whole pool, and everyone else waits."""
    import threading

    from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint

    generate_keys(tmp_path / "keys")
    keys = load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem")
    record(db, "order.paid")
    seal(db)
    text = json.dumps(make_checkpoint(db, keys))
    (tmp_path / "cp").mkdir()
    for day in range(3650):
        (tmp_path / "cp" / f"checkpoint-{day:05d}.json").write_text(text)
    token = make_token()
    seal(db)
    api = start_api(pool_size=2, checkpoint_dir=tmp_path / "cp",
                    checkpoint_keys=load_keys(public_key=tmp_path / "keys" / "checkpoint-ed25519.pub.pem"))
    stop = threading.Event()

    def ask():
        with api.client(token) as c:
            while not stop.is_set():
                c.get("/v1/audit/verify")

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(2)
    waits = []
    with api.client(token) as client:
        for _ in range(5):
            started = time.monotonic()
            assert client.get("/v1/audit", params={"limit": "1"}).status_code == 200
            waits.append(time.monotonic() - started)
    stop.set()
    for t in threads:
        t.join()
    assert max(waits) < 1.5, f"a one-event page waited {max(waits):.2f} s behind six readers asking for verify"
