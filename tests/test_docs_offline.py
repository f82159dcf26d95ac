"""`/docs` on a line PC without internet: Swagger UI's assets come from the app (/static/swagger),
and the page renders in a real Chromium with every request off this server blocked. The schema
names the response models of the reading endpoints."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from sorter.controller.api.app import create_app
from sorter.controller.records.store import RecordStore
from tests import browser
from tests.test_api import make_status, serve

SWAGGER = Path(__file__).resolve().parents[1] / "controller" / "api" / "static" / "swagger"


@pytest.fixture()
def server(tmp_path):
    store = RecordStore(tmp_path / "r.db")
    srv = serve(create_app(make_status, store))
    yield srv
    srv.stop()
    store.close()


def test_docs_page_loads_nothing_from_outside(server):
    r = httpx.get(server.url + "/docs", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    urls = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert urls and all(u.startswith("/static/swagger/") for u in urls), urls
    assert "<script>" not in r.text  # no inline script: the CSP would refuse it
    for u in urls:
        assert httpx.get(server.url + u, timeout=10).status_code == 200, u


def test_vendored_files_are_the_recorded_ones():
    """VENDORED.md says which release and which checksums; the files must be those."""
    notes = (SWAGGER / "VENDORED.md").read_text(encoding="utf-8")
    for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", notes, re.M):
        assert hashlib.sha256((SWAGGER / name).read_bytes()).hexdigest() == digest, name
    assert "5.35.0" in notes and (SWAGGER / "LICENSE").exists()


def test_schema_has_the_response_models(server):
    spec = httpx.get(server.url + "/openapi.json", timeout=10).json()
    ref = lambda path: spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]  # noqa: E731
    assert ref("/api/status") == {"$ref": "#/components/schemas/Status"}
    assert ref("/api/stats") == {"$ref": "#/components/schemas/Stats"}
    assert ref("/api/chutes")["items"] == {"$ref": "#/components/schemas/Chute"}
    assert ref("/api/parcels")["items"] == {"$ref": "#/components/schemas/ParcelRecord"}
    assert ref("/api/totals") == {"$ref": "#/components/schemas/Totals"}
    assert ref("/api/totals/carriers") == {"$ref": "#/components/schemas/GroupTotals"}
    assert ref("/api/series") == {"$ref": "#/components/schemas/Series"}
    status = spec["components"]["schemas"]["Status"]["properties"]
    assert {"line", "counts", "chutes", "cameras", "alarms", "recent", "fire_hist"} <= set(status)
    assert "text/event-stream" in spec["paths"]["/api/events"]["get"]["responses"]["200"]["content"]


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_docs_render_in_chromium_with_the_network_blocked(server, tmp_path):
    blocked: list[str] = []
    with browser.chromium() as b:
        page = browser.Page(b, server.url)
        try:
            def route(r):
                if r.request.url.startswith(server.url + "/"):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()
            page.context.route("**/*", route)
            page.page.goto("/docs")
            page.page.wait_for_selector(".opblock-summary-path", timeout=60_000)
            paths = page.page.locator(".opblock-summary-path").all_inner_texts()
            assert "/api/status" in [p.strip() for p in paths]
            assert any("/api/export" in p for p in paths)
            page.page.wait_for_selector("section.models", timeout=30_000)
            assert "Status" in page.page.locator("section.models").inner_text()
            page.page.screenshot(path=str(tmp_path / "docs-offline.png"))
            assert page.errors == []
        finally:
            page.close()
    assert blocked == []  # it did not even try to reach the internet
