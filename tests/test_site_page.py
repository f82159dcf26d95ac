"""The status page's site panel (static/site.js) in headless Chromium, over real HTTP: the three
parts' figures shown, text from outside (an error message, a target name) shown as text only, and
the panel hidden on a line that is no part of a site."""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn

from sorter.controller.records.store import RecordStore
from tests import browser
from tests.servers import free_port

HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'

SITE = {
    "site_db": {"url": "postgresql://sorter:***@db:5432/site", "connected": False, "backlog": 4321, "sent": 100,
                "last_error": "OperationalError: " + HOSTILE},
    "mqtt": {"broker": "10.0.0.3:1883", "topic": "sorter/L1", "connected": True, "queued": 0, "acked": 77,
             "dropped": 0, "last_error": None},
    "uploads": {"targets": [{"name": "zto", "url": "http://x/", "pending": 12, "sent": 30, "failed": 3,
                             "last_error": "HTTP 503: " + HOSTILE, "last_ok_wall": 1.7e9, "failures_in_row": 2,
                             "retry_at_wall": None}], "pending": 12, "failed": 3, "fill_error": None},
}


def base_status() -> dict:
    return {"line": {"name": "Line 1", "state": "running", "plc": {"url": "tcp://x", "connected": True}},
            "counts": {"total": 0, "outcomes": {}}, "chutes": [], "cameras": [], "alarms": [], "recent": []}


class Control:
    """What the service offers the API for the panel's button (Service.resend_uploads)."""

    def __init__(self):
        self.calls: list = []

    def resend_uploads(self, target):
        self.calls.append(target)
        return 3 if target == "zto" else None


def serve(status: dict, tmp_path, control=None):
    from sorter.controller.api.app import create_app
    app = create_app(lambda: status, RecordStore(tmp_path / "records.db"), control=control, token="t0ken")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    end = time.monotonic() + 60
    while not server.started and time.monotonic() < end:
        time.sleep(0.05)
    return server, th, f"http://127.0.0.1:{port}"


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_site_panel_shows_the_three_parts_as_text_and_resends(tmp_path):
    control = Control()
    server, th, url = serve({**base_status(), **SITE}, tmp_path, control)
    try:
        with browser.chromium() as b:
            page = browser.Page(b, url)
            p = page.page
            p.goto("/")
            p.wait_for_selector("#site-panel:not([hidden]) table")
            text = p.inner_text("#site-panel")
            html = p.inner_html("#site-panel")
            assert "中心数据库 Site database" in text and "4321" in text and "断开 down" in text
            assert "sorter/L1/…" in text and "在线 connected" in text
            assert "zto" in text and "重发 Re-send" in text
            assert HOSTILE in text and "&lt;img src=x" in html and "<img" not in html  # shown, never run
            assert "pwned" not in p.title()
            p.evaluate("sessionStorage.setItem('sorter-token', 't0ken')")
            p.click("#site-panel button.site-resend")
            p.wait_for_function("() => document.querySelector('#site-panel .site-msg').textContent.length > 0")
            assert p.inner_text("#site-panel .site-msg") == "✓ 3 重发 re-sent"
            assert control.calls == ["zto"]
            assert not page.unexpected_dialogs and not page.errors, (page.unexpected_dialogs, page.errors)
            page.close()
    finally:
        server.should_exit = True
        th.join(10)


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_site_panel_is_hidden_on_a_line_of_its_own(tmp_path):
    status = {**base_status(), "site_db": None, "mqtt": None, "uploads": None}
    server, th, url = serve(status, tmp_path)
    try:
        with browser.chromium() as b:
            page = browser.Page(b, url)
            p = page.page
            p.goto("/")
            p.wait_for_function("() => Number(document.getElementById('site-panel').dataset.polls) >= 2")
            assert p.get_attribute("#site-panel", "hidden") is not None
            assert p.inner_html("#site-panel") == ""
            page.close()
    finally:
        server.should_exit = True
        th.join(10)
