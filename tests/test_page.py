"""The operator page in a real browser (Debian's Chromium, driven by Playwright) against a real
server on loopback and a real PostgreSQL: signing in, live events, filters and paging, a captured
update's changed columns, hostile payloads shown as text, roles and tenants, integrity, archives.
Each view is saved as a screenshot under test-artifacts/ (or $PGAUDIT_ARTIFACTS)."""

from __future__ import annotations

import time

from chromium import open_diff, rows, shot, sign_in, wait_rows

from pgaudit_py import record, seal
from pgaudit_py.checkpoint import generate_keys, load_keys


def test_a_reader_signs_in_sees_events_and_new_ones_arrive_without_a_reload(db, start_api, make_token, page):
    token = make_token()
    record(db, "order.paid", tenant_id="acme", actor_id="alice", target_type="order", target_id="o-1")
    seal(db)
    record(db, "order.refunded", tenant_id="acme", actor_id="alice", target_type="order", target_id="o-1")  # pending
    api = start_api()
    sign_in(page, api, token)
    got = wait_rows(page, lambda r: len(r) == 3)
    assert [r[4] for r in got] == ["order.refunded", "order.paid", "audit.api_token.created"]
    assert got[0][0] == "pending" and got[1][6] == "success"
    page.wait_for_selector("#live-state.live")
    assert page.evaluate("sessionStorage.getItem('pgaudit.token')") == token
    assert page.context.cookies() == []
    loaded = page.evaluate("performance.timeOrigin")
    record(db, "user.login", tenant_id="acme", actor_id="bob")  # from another connection
    seal(db)
    got = wait_rows(page, lambda r: r and r[0][4] == "user.login")
    assert got[0][3] == "user:bob" and page.evaluate("performance.timeOrigin") == loaded  # no reload
    # The sealed copy replaced the pending one.
    assert [r[4] for r in got].count("order.refunded") == 1 and "pending" not in [r[0] for r in got]
    shot(page, "events")
    page.click("#forget")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('pgaudit.token')") is None


def test_filters_and_paging(db, start_api, make_token, page):
    token = make_token()
    db.execute("SELECT audit.record(kind => CASE WHEN i % 2 = 0 THEN 'order.paid' ELSE 'user.login' END,"
               " target_id => i::text) FROM generate_series(1, 130) i")
    seal(db)
    api = start_api()
    sign_in(page, api, token)
    page.fill("#filters [name=kind_prefix]", "order.")
    page.click("#filters button[type=submit]")
    got = wait_rows(page, lambda r: r and all(row[4] == "order.paid" for row in r))
    assert len(got) == 50
    page.click("#older")
    wait_rows(page, lambda r: len(r) == 65)
    assert page.is_hidden("#older")
    assert [int(r[5]) for r in rows(page)] == list(range(130, 0, -2))
    page.click("#clear-filters")
    wait_rows(page, lambda r: len(r) == 50 and {row[4] for row in r} == {"order.paid", "user.login"})


def test_a_captured_update_shows_its_changed_columns(db, connect, start_api, make_token, page):
    db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, status text, total int, note text)")
    db.execute("SELECT audit.enable_tracking('public.orders')")
    db.execute("INSERT INTO public.orders VALUES (1, 'new', 10, 'x')")
    db.execute("UPDATE public.orders SET status = 'paid', total = 12 WHERE id = 1")
    seal(db)
    token = make_token()
    seal(db)
    api = start_api()
    sign_in(page, api, token)
    diff = open_diff(page, "public.orders.update")
    assert {column: (marked, before, after) for marked, column, before, after in diff} == {
        "id": ("", "1", "1"), "status": ("changed", '"new"', '"paid"'), "total": ("changed", "10", "12"),
        "note": ("", '"x"', '"x"')}
    shot(page, "captured-update")


def test_a_hostile_payload_is_shown_as_text_and_runs_nothing(db, start_api, make_token, page):
    hostile = "<img src=x onerror=alert(1)>"
    record(db, "comment.posted", actor_id=hostile, target_id="<script>alert(2)</script>",
           payload={"body": hostile, "html": "<b onmouseover=alert(3)>hi</b>"})
    seal(db)
    api = start_api()
    sign_in(page, api, make_token())
    got = wait_rows(page, lambda r: any(row[4] == "comment.posted" for row in r))
    assert [r[3] for r in got if r[4] == "comment.posted"] == [f'user:"{hostile}"']  # quoted: it holds spaces
    page.click("#events tbody tr:has-text('comment.posted')")
    payload = page.text_content("#detail-payload")
    assert hostile in payload and "<b onmouseover=alert(3)>hi</b>" in payload
    assert page.eval_on_selector_all("img, script:not([src]), b", "nodes => nodes.length") == 0
    page.hover("#detail-payload")
    time.sleep(0.3)
    assert page.dialogs == []
    shot(page, "hostile-payload")


def test_a_reader_has_no_archive_button_and_a_forged_post_is_refused(db, start_api, make_token, page, tmp_path):
    generate_keys(tmp_path / "keys")
    api = start_api(archive_target=f"file://{tmp_path}/archive",
                    archive_keys=load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem"))
    sign_in(page, api, make_token())
    page.click("nav button[data-view=storage]")
    page.wait_for_selector("#view-storage:not([hidden])")
    assert page.is_hidden("#archive-run")
    status = page.evaluate("""async () => (await fetch('v1/audit/archive/run', {method: 'POST',
        headers: {Authorization: 'Bearer ' + sessionStorage.getItem('pgaudit.token')}})).status""")
    assert status == 403
    assert db.execute("SELECT count(*) FROM audit.archive_batches").fetchone() == (0,)


def test_a_maintainer_runs_an_archive_and_sees_the_batch(db, connect, start_api, make_token, page, tmp_path):
    generate_keys(tmp_path / "keys")
    token = make_token("maintainer")
    db.execute("SELECT audit.record(kind => 'order.paid') FROM generate_series(1, 20)")
    seal(db)
    connect("app_maintainer").execute("SELECT audit.set_archive_settings(interval '1 second', 1000, 3)")
    time.sleep(1.1)
    api = start_api(archive_target=f"file://{tmp_path}/archive",
                    archive_keys=load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem"))
    sign_in(page, api, token)
    page.click("nav button[data-view=storage]")
    page.wait_for_selector("#batches-empty:not([hidden])")
    page.click("#archive-run")
    page.wait_for_selector("#batches tbody tr")
    assert page.dialogs and "Archive" in page.dialogs[0]  # it asked first
    assert "archived 1 batches, 21 events" in page.text_content("#archive-result")
    cells = page.eval_on_selector_all("#batches tbody tr td", "tds => tds.map(td => td.textContent)")
    assert cells[1] == "deleted" and cells[3] == "1..21" and cells[4] == "21"
    assert list((tmp_path / "archive").rglob("*.jsonl.gz"))
    shot(page, "cold-storage")
    page.click("nav button[data-view=integrity]")
    page.wait_for_selector("#integrity strong.ok")
    text = page.text_content("#integrity")
    assert "intact" in text and "21" in text  # the highest archived seq
    shot(page, "integrity")


def test_a_tenant_token_never_sees_another_tenants_event(db, start_api, make_token, page):
    for tenant in ("t1", "t2", None):
        record(db, "order.paid", tenant_id=tenant, target_id=f"of-{tenant}")
    seal(db)
    api = start_api()
    sign_in(page, api, make_token(tenant_id="t1"))  # its creation event is t1's too
    wait_rows(page, lambda r: any(row[5] == "of-t1" for row in r))
    assert page.input_value("#filters [name=tenant_id]") == "t1"
    page.wait_for_selector("#live-state.live")
    record(db, "order.refunded", tenant_id="t2", target_id="or-t2")
    record(db, "order.refunded", tenant_id="t1", target_id="or-t1")
    seal(db)
    wait_rows(page, lambda r: r and r[0][5] == "or-t1")
    time.sleep(1)
    got = rows(page)
    assert {r[2] for r in got} == {"t1"} and not any(r[5] in ("of-t2", "or-t2", "of-None") for r in got)
    # The views of the whole installation are not offered to it (trial 85, p8).
    assert [page.is_visible(f"nav button[data-view={v}]") for v in ("events", "integrity", "storage", "health")] == [
        True, False, False, False]


def test_health_shows_sealing_tracked_tables_limits_and_a_monthly_chart(db, start_api, make_token, page):
    db.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, secret text, tenant text)")
    db.execute("SELECT audit.enable_tracking('public.accounts', redact_columns => '{secret}', tenant_column => 'tenant')")
    db.execute("SELECT audit.enable_rate_limit('public.accounts', 100, 1000, 60)")
    db.execute("SELECT audit.record(kind => 'order.paid') FROM generate_series(1, 5)")
    seal(db)
    db.execute("SELECT audit.record(kind => 'user.login') FROM generate_series(1, 3)")
    api = start_api()
    sign_in(page, api, make_token())
    page.click("nav button[data-view=health]")
    page.wait_for_selector("#chart svg")
    assert "public.accounts" in page.text_content("#tracked") and "secret" in page.text_content("#tracked")
    assert "100" in page.text_content("#limits")
    sealing = dict(zip(page.eval_on_selector_all("#sealing dt", "n => n.map(x => x.textContent)"),
                       page.eval_on_selector_all("#sealing dd", "n => n.map(x => x.textContent)"), strict=True))
    assert sealing["pending events"] == "4" and sealing["last seq"] == "7"
    assert page.eval_on_selector_all("#chart rect", "r => r.length") >= 12
    shot(page, "health")


def test_the_page_sends_its_security_headers(start_api):
    import httpx

    api = start_api()
    response = httpx.get(api.url + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(api.url + "/page/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(api.url + "/page/..%2fapp.py").status_code == 404
    assert httpx.get(api.url + "/page/index.html").status_code == 404
