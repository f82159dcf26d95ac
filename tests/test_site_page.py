"""The status page's site panel (static/site.js) in headless Chromium, over real HTTP: the three
parts' figures shown, text from outside (an error message, a target name) shown as text only, and
the panel hidden on a line that is no part of a site."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest
import uvicorn

from sorter.controller.records.store import RecordStore
from tests.servers import free_port

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and os.path.exists(p)), None)
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


def serve(status: dict, tmp_path):
    from sorter.controller.api.app import create_app
    app = create_app(lambda: status, RecordStore(tmp_path / "records.db"), token="t")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    end = time.monotonic() + 30
    while not server.started and time.monotonic() < end:
        time.sleep(0.05)
    return server, th, f"http://127.0.0.1:{port}/"


def dump_dom(url: str, profile) -> str:
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-dev-shm-usage",
                          f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=300)
    return res.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (./scripts/setup.sh test installs it)")
def test_site_panel_shows_the_three_parts_as_text(tmp_path):
    server, th, url = serve({**base_status(), **SITE}, tmp_path)
    try:
        dom = dump_dom(url, tmp_path / "profile")
    finally:
        server.should_exit = True
        th.join(10)
    panel = dom.split('id="site-panel"', 1)[1].split("</section>", 1)[0]
    assert "中心数据库 Site database" in panel and "4321" in panel and "断开 down" in panel
    assert "sorter/L1/…" in panel and "在线 connected" in panel
    assert "zto" in panel and "12" in panel and "重发 Re-send" in panel
    assert "&lt;img src=x" in panel and "<img" not in panel  # shown, never run
    assert "pwned" not in dom.split("<title>")[1].split("</title>")[0]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (./scripts/setup.sh test installs it)")
def test_site_panel_is_hidden_on_a_line_of_its_own(tmp_path):
    server, th, url = serve({**base_status(), "site_db": None, "mqtt": None, "uploads": None}, tmp_path)
    try:
        dom = dump_dom(url, tmp_path / "profile")
    finally:
        server.should_exit = True
        th.join(10)
    assert '<section class="panel" id="site-panel" hidden=""></section>' in dom
