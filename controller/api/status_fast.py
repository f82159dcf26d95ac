"""`GET /api/status` answered straight from the published bytes, as a plain ASGI middleware.

Every wall screen asks for it once a second; the bytes are ready (service/status_cache.py), yet
FastAPI's routing, dependency solving and exception layers cost more CPU per request than the
answer itself, on the event loop the SSE streams and the other endpoints share, and under the
service process's GIL. Placed inside the read gate (page_gate.py), which still decides who may read
and adds the headers; anything it does not answer itself (HEAD, no snapshot yet, a failing source)
goes on to the route, which says why. The answer is the route's: the same body, ETag and 304.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

PATH = "/api/status"


class StatusFastPath:
    def __init__(self, app: ASGIApp, *, source: Any):
        self.app, self.source = app, source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        try:
            pub = self.source.latest()
        except Exception:  # noqa: BLE001 - the route logs it and answers 503
            pub = None
        if pub is None:
            await self.app(scope, receive, send)
            return
        etag = pub.etag.encode("latin-1")
        asked = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
        if asked == etag:
            await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", etag)]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = pub.body
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"etag", etag), (b"content-length", str(len(body)).encode()),
                                (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
