"""The page's gate and headers, as one plain ASGI middleware.

- The read gate: with `auth.read: login`, nothing is shown or answered before a login (or a bearer
  token): a page redirects to the login, an API read answers 401.
- A request HTTP/1.1 says must carry a Host header and does not: 400.
- The headers: `nosniff` on every answer; the pages and their assets get the strict CSP, no
  referrer and `no-cache`; the API gets `no-store`.

Plain ASGI rather than Starlette's `@app.middleware("http")`: that one runs every request through
an extra task and memory streams, which a room of wall screens polling `/api/status` and holding
Server-Sent Events streams pays for on every request and every event.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import quote

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class PageGate:
    def __init__(self, app: ASGIApp, *, pages: frozenset[str], before_login: frozenset[str], csp: str,
                 may_read: Callable[[Request], bool]):
        self.app, self.pages, self.before_login, self.csp, self.may_read = app, pages, before_login, csp, may_read

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("http_version") == "1.1" and not any(k == b"host" for k, _ in scope["headers"]):
            # RFC 9112 3.2: h11 refused this itself; httptools (the service's parser) lets it through
            await JSONResponse({"detail": "an HTTP/1.1 request needs a Host header"}, status_code=400)(
                scope, receive, send)
            return
        path = scope["path"]
        page = path in self.pages or path.startswith("/static/")
        api = path.startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("X-Content-Type-Options", "nosniff")
                if page:
                    h["Content-Security-Policy"] = self.csp
                    h["Referrer-Policy"] = "no-referrer"
                    h["Cache-Control"] = "no-cache"
                if api:
                    h["Cache-Control"] = "no-store"
            await send(message)

        if scope["method"] in ("GET", "HEAD") and path not in self.before_login and not self.may_read(Request(scope)):
            if path in self.pages:
                refused = RedirectResponse("/login?next=" + quote(path), status_code=303)
            else:
                refused = JSONResponse({"detail": "log in first (this line's page needs a login to read)"},
                                       status_code=401)
            await refused(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)
