"""The operator page's tests drive Debian's Chromium with Playwright: where it is, what they share
(signing in, reading the events table, screenshots). The fixtures `browser` (skipped where
Chromium is missing) and `page` are in conftest.py."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("PGAUDIT_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=True)


def sign_in(page, api, token: str) -> None:
    page.goto(api.url + "/")
    page.fill("#token", token)
    page.click("#signin-form button")
    page.wait_for_selector("#app:not([hidden])")


def rows(page) -> list[list[str]]:
    return page.eval_on_selector_all("#events tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")


def wait_rows(page, predicate, timeout: float = 15) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        got = rows(page)
        if predicate(got):
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def open_diff(page, kind: str) -> list[list[str]]:
    """Waits for an event of this kind, opens it, and reads its row diff: [class, column, before,
    after] for each column."""
    wait_rows(page, lambda r: any(row[4] == kind for row in r))
    page.click(f"#events tbody tr:has-text('{kind}')")
    page.wait_for_selector("#detail:not([hidden])")
    return page.eval_on_selector_all("#detail-diff tbody tr",
                                     "trs => trs.map(tr => [tr.className, ...[...tr.cells].map(td => td.textContent)])")
