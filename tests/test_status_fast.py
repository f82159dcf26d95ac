"""`GET /api/status` from the published bytes (controller/api/status_fast.py) answers what the
FastAPI route answers: the same body and headers, the same 304 for the ETag a page already has,
and the route's own 503 while nothing is published."""

from __future__ import annotations

import httpx

from sorter.controller.api.app import create_app
from sorter.controller.api.status_fast import StatusFastPath
from sorter.controller.service.status_cache import StatusCache
from tests.test_api import make_status, serve

VARYING = {"date", "server"}


def answers(app) -> list[tuple[int, dict, bytes]]:
    srv = serve(app)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            first = c.get("/api/status")
            etag = first.headers.get("etag", "")
            again = c.get("/api/status", headers={"If-None-Match": etag})
            other = c.get("/api/status", headers={"If-None-Match": '"s0"'})
            head = c.head("/api/status")
        return [(r.status_code, {k: v for k, v in r.headers.items() if k not in VARYING}, r.content)
                for r in (first, again, other, head)]
    finally:
        srv.stop()


def without_fast_path(app):
    app.user_middleware = [m for m in app.user_middleware if m.cls is not StatusFastPath]
    return app


def test_the_fast_answer_is_the_routes():
    cache = StatusCache()
    cache.publish(make_status())
    fast = answers(create_app(make_status, None, published=cache))
    route = answers(without_fast_path(create_app(make_status, None, published=cache)))
    assert fast == route
    (s1, h1, b1), (s2, h2, b2), (s3, _, b3), _ = fast
    assert s1 == 200 and h1["content-type"] == "application/json" and b1 == cache.latest().body
    assert h1["cache-control"] == "no-store" and h1["x-content-type-options"] == "nosniff"  # the gate's headers
    assert (s2, b2, h2["etag"]) == (304, b"", h1["etag"]) and (s3, b3) == (200, b1)


def test_nothing_published_yet_is_the_routes_503():
    cache = StatusCache()
    fast = answers(create_app(make_status, None, published=cache))
    assert fast[0][0] == 503 and b"not published a snapshot yet" in fast[0][2]
    assert fast == answers(without_fast_path(create_app(make_status, None, published=cache)))
