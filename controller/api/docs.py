"""`/docs` offline: Swagger UI from the app's own /static/swagger (vendored, see its VENDORED.md),
not from a CDN that a line PC without internet cannot reach. The app is built with
`docs_url=None`; this router serves the page."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse

ASSETS = "/static/swagger"
# scripts only from here; Swagger UI sets element styles from script (allowed) and its CSS
# inlines its icons as data: URLs
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


def page(title: str, openapi_url: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)} — API</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body data-openapi="{escape(openapi_url)}">
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/init.js"></script>
</body>
</html>
"""


def router(app: FastAPI) -> APIRouter:
    r = APIRouter()
    html = page(app.title, app.openapi_url or "/openapi.json")

    @r.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_CSP, "Referrer-Policy": "no-referrer",
                                           "Cache-Control": "no-cache"})

    return r
