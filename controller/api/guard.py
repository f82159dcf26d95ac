"""What stands between the LAN and the API's endpoints: request body limits, a strict JSON check,
short error answers, and the bearer token with a limit on wrong guesses.

- Bodies: every POST has a size limit by endpoint (413 beyond it, before the body is buffered).
- JSON: nesting depth is limited, and NaN, Infinity, numbers that overflow to infinity (1e309)
  and lone surrogates ("\\ud800") are refused with a 422 naming the field. Python's json accepts
  all of them, and each ended in a 500 further in (an answer that cannot be encoded, a
  RecursionError).
- Errors: every 4xx is a short JSON message that names the field and never echoes more than
  a few hundred characters of what was sent.
- Token: a client address that keeps sending wrong tokens is refused (429) for a time that
  doubles with each round of guesses, with one log line per round instead of one per guess.

`install(app, token)` puts all of it on an app; create_app calls it.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("sorter.api.guard")

MAX_ECHO = 200            # characters of a client's input an error message may quote
MAX_DETAIL = 600          # characters of an error message in all
MAX_JSON_DEPTH = 32       # nesting of a JSON body (a manifest row is 2 deep)
DEFAULT_BODY_LIMIT = 64 << 10
DEFAULT_BODY_LIMITS: dict[str, int] = {"/api/manifest": 64 << 20}
# endpoints that read and check their own (large) bodies: only their size is limited here
RAW_BODY_PATHS = frozenset({"/api/manifest"})


# ---------------------------------------------------------------------------------- messages
def clip(text: Any, limit: int = MAX_ECHO) -> str:
    """`text` as printable, encodable text of at most `limit` characters (lone surrogates are
    shown as \\udXXX escapes: an answer must always encode as UTF-8)."""
    s = text if isinstance(text, str) else repr(text)
    if len(s) > limit:
        s = s[:limit] + f"... ({len(s)} characters)"
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def problem(status: int, detail: str, field_name: str | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": clip(detail, MAX_DETAIL)}
    if field_name is not None:
        body["field"] = clip(field_name, 100)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _dotted(loc: tuple | list) -> str:
    return ".".join(str(p) for p in loc)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own answer echoes each bad input whole (10 MB of it, or a NaN that JSON cannot
    # carry: a 500); this one names the fields and quotes none of it
    errors = exc.errors()
    parts = []
    for err in errors[:5]:
        loc = tuple(err.get("loc") or ())
        parts.append(f"{_dotted(loc) or 'body'}: {err.get('msg', 'invalid')}")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    first = tuple(errors[0].get("loc") or ()) if errors else ()
    field_name = _dotted(first[1:] if first[:1] in (("body",), ("query",), ("path",)) else first) or None
    return problem(422, "; ".join(parts) or "invalid request", field_name)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if isinstance(detail, dict):
        # e.g. {"problems": [...]}: kept structured, each part clipped
        detail = {clip(k, 40): [clip(p, MAX_ECHO * 2) for p in v[:10]] if isinstance(v, list) else clip(v, MAX_DETAIL)
                  for k, v in list(detail.items())[:10]}
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)
    return problem(exc.status_code, str(detail), headers=exc.headers)


# ---------------------------------------------------------------------------------- JSON check
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def too_deep(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True if the JSON text nests deeper than max_depth (brackets inside strings do not count).
    Checked before parsing: the parser recurses, and 100,000 levels end in a RecursionError."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    depth = 0
    for m in _JSON_TOKENS.finditer(raw):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        elif c in (b"]", b"}"):
            depth -= 1
    return False


class _NotFinite(str):
    """A number the parser met that is no finite float (NaN, Infinity, 1e309): kept as its text so
    the walk can name where it was."""


def _not_finite_constant(text: str) -> _NotFinite:
    return _NotFinite(text)


def _float(text: str) -> float | _NotFinite:
    f = float(text)
    return f if f - f == 0 else _NotFinite(text)


def _has_lone_surrogate(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _find_bad(obj: Any) -> tuple[str, str] | None:
    """(where, what) of the first value JSON should not have carried, or None. Iterative (the
    depth is limited, but a walk need not rely on it)."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, _NotFinite):
            return where, f"{clip(str(v), 40)} is not a finite number"
        if isinstance(v, str):
            if _has_lone_surrogate(v):
                return where, "text with a lone surrogate (not valid Unicode)"
        elif isinstance(v, dict):
            for k, item in v.items():
                if _has_lone_surrogate(k):
                    return where or "body", "a key with a lone surrogate (not valid Unicode)"
                stack.append((f"{where}.{k}" if where else str(k), item))
        elif isinstance(v, list):
            stack.extend((f"{where}.{i}" if where else str(i), item) for i, item in enumerate(v))
    return None


def check_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str | None] | None:
    """(problem, field) for a JSON body that must not reach an endpoint, or None when it may."""
    if too_deep(raw, max_depth):
        return f"JSON nested deeper than {max_depth} levels", None
    try:
        obj = json.loads(raw.decode("utf-8-sig"), parse_constant=_not_finite_constant, parse_float=_float)
    except UnicodeDecodeError as exc:
        return f"body is not UTF-8 (byte {exc.start})", None
    except RecursionError:
        return f"JSON nested deeper than {max_depth} levels", None
    except ValueError as exc:   # JSONDecodeError, and integers past Python's digit limit
        return f"not JSON: {clip(str(exc), 120)}", None
    bad = _find_bad(obj)
    if bad is None:
        return None
    where, what = bad
    return f"{where or 'body'}: {what}", where or None


# ---------------------------------------------------------------------------------- body limits
@dataclass(frozen=True)
class BodyLimits:
    """Bytes a request body may have, by endpoint path (others: `default`)."""
    default: int = DEFAULT_BODY_LIMIT
    by_path: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_BODY_LIMITS))
    max_json_depth: int = MAX_JSON_DEPTH

    def for_path(self, path: str) -> int:
        return self.by_path.get(path, self.default)


class _TooLarge(Exception):
    pass


def _mb(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} KB" if n >= 1 << 10 else f"{n} bytes"


class BodyGuard:
    """ASGI middleware: the size limit of every request body, and the JSON check of the small ones
    (FastAPI's own parser takes NaN, 1e309 and 100,000 levels of nesting)."""

    def __init__(self, app, limits: BodyLimits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        limit = self.limits.for_path(path)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        too_large = problem(413, f"request body larger than {_mb(limit)} (the limit of {clip(path, 80)})")
        length = headers.get("content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            return await too_large(scope, receive, send)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        is_json = ctype in ("", "application/json") or ctype.endswith("+json")
        if path in RAW_BODY_PATHS or not is_json:
            return await self._streamed(scope, receive, send, limit, too_large)
        body = bytearray()
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            body += msg.get("body", b"")
            if len(body) > limit:
                return await too_large(scope, receive, send)
            if not msg.get("more_body"):
                break
        if body:
            bad = check_json(bytes(body), self.limits.max_json_depth)
            if bad is not None:
                return await problem(422, bad[0], bad[1])(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _streamed(self, scope, receive, send, limit: int, too_large) -> None:
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return msg

        async def tracked(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await too_large(scope, receive, send)


# ---------------------------------------------------------------------------------- the token
@dataclass
class _Client:
    wrong: int = 0                # wrong guesses in this round
    first_wrong: float = 0.0
    blocked_until: float = 0.0
    block_s: float = 0.0          # the last block (the next one doubles it)
    refused: int = 0              # attempts refused while blocked, for the next summary line
    last: float = 0.0


class GuessLimiter:
    """Wrong guesses (tokens, passwords) counted per client address: after FREE_TRIES of them,
    the address is refused (429) for FIRST_BLOCK_S, doubling with every further round up to
    MAX_BLOCK_S, with one log line per round instead of one per guess."""

    FREE_TRIES = 5
    FIRST_BLOCK_S = 1.0
    MAX_BLOCK_S = 300.0
    FORGET_S = 900.0          # a client with no wrong guess for this long starts afresh
    MAX_CLIENTS = 10_000      # addresses remembered (the oldest forgotten first)

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic):
        self.what = what          # "API token", "password": the log lines and answers say which
        self.clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def refuse_if_blocked(self, client: str) -> None:
        """Raise the 429 while `client` is blocked (not even a right guess is looked at then)."""
        now = self.clock()
        c = self._clients.get(client)
        if c is not None and now - c.last > self.FORGET_S and now >= c.blocked_until:
            del self._clients[client]
            c = None
        if c is not None and now < c.blocked_until:
            c.refused += 1
            raise HTTPException(429, f"too many wrong {self.what}s from {clip(client, 60)}: try again in "
                                     f"{c.blocked_until - now:.0f} s",
                                headers={"Retry-After": str(max(1, round(c.blocked_until - now + 0.5)))})

    def right(self, client: str) -> None:
        self._clients.pop(client, None)

    def wrong(self, client: str) -> None:
        now = self.clock()
        c = self._clients.get(client)
        if c is None:
            c = self._clients[client] = _Client(first_wrong=now)
            while len(self._clients) > self.MAX_CLIENTS:
                self._clients.popitem(last=False)
        self._clients.move_to_end(client)
        c.last = now
        if c.wrong == 0:
            c.first_wrong = now
            if c.block_s == 0:
                log.warning("wrong %s from %s", self.what, client)
        c.wrong += 1
        if c.wrong >= self.FREE_TRIES:
            c.block_s = min(self.MAX_BLOCK_S, c.block_s * 2 if c.block_s else self.FIRST_BLOCK_S)
            c.blocked_until = now + c.block_s
            extra = f" (and {c.refused} tries refused while it was blocked)" if c.refused else ""
            log.warning("%d wrong %ss from %s in %.0f s%s: refusing it for %.0f s",
                        c.wrong, self.what, client, now - c.first_wrong, extra, c.block_s)
            c.wrong, c.refused = 0, 0

    def blocked(self, client: str) -> bool:
        c = self._clients.get(client)
        return c is not None and self.clock() < c.blocked_until


LEGACY_TOKEN = "token"    # what check() returns for the single configured token (SORTER_API_TOKEN)


class TokenGuard(GuessLimiter):
    """The control endpoints' bearer tokens, the same answer everywhere: no token configured (and
    no user tokens) -> 403; no bearer token -> 401; a wrong one -> 401, and after FREE_TRIES of
    them from one client address, 429 for FIRST_BLOCK_S, doubling with every further round up to
    MAX_BLOCK_S. While blocked, not even the right token is looked at (a guess must learn nothing).

    `token` is the single machine token; `lookup(token)` finds a user's own token (it returns the
    user, or None). check() returns LEGACY_TOKEN or what lookup returned."""

    def __init__(self, token: str | None, clock: Callable[[], float] = time.monotonic,
                 lookup: Callable[[str], Any] | None = None, users_exist: Callable[[], bool] | None = None):
        super().__init__("API token", clock)
        self.token = token or None    # an empty string is no token
        self.lookup = lookup
        self.users_exist = users_exist

    @property
    def configured(self) -> bool:
        """Anybody could be let in: the machine token, or users (with their own tokens or logins)."""
        return self.token is not None or (self.lookup is not None and
                                          (self.users_exist is None or self.users_exist()))

    def require(self, request: Request) -> Any:
        """Raise the HTTPException that refuses `request`, or return who its token is."""
        return self.check(request.client.host if request.client else "?", request.headers.get("authorization", ""))

    def check(self, client: str, authorization: str) -> Any:
        if not self.configured:
            raise HTTPException(403, "control disabled: set api token")
        self.refuse_if_blocked(client)
        scheme, _, given = authorization.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(401, "bearer token required", headers={"WWW-Authenticate": "Bearer"})
        if self.token is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                          self.token.encode()):
            self.right(client)
            return LEGACY_TOKEN
        who = self.lookup(given) if self.lookup is not None else None
        if who is not None:
            self.right(client)
            return who
        self.wrong(client)
        raise HTTPException(401, "wrong token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def token_guard(request: Request, fallback: TokenGuard | None = None) -> TokenGuard:
    """The app's TokenGuard (one per app, so that every endpoint counts the same wrong guesses)."""
    guard = getattr(request.app.state, "token_guard", None)
    if guard is None:
        if fallback is None:
            raise HTTPException(403, "control disabled: set api token")
        return fallback
    return guard


def install(app: FastAPI, token: str | None, body_limits: BodyLimits | None = None,
            lookup: Callable[[str], Any] | None = None,
            users_exist: Callable[[], bool] | None = None) -> TokenGuard:
    """Body limits, the JSON check, short error answers and the token guard, on `app`."""
    guard = TokenGuard(token, lookup=lookup, users_exist=users_exist)
    app.state.token_guard = guard
    app.state.body_limits = body_limits or BodyLimits()
    app.add_middleware(BodyGuard, limits=app.state.body_limits)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    return guard
