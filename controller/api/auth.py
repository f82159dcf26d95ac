"""Users, roles, logins and sessions of the page and the API.

- A person logs in on /login with name and password (argon2 hashes in the config or the users
  file, see controller/config/auth.py); the answer sets a session cookie (HttpOnly,
  SameSite=Strict) and gives the session's CSRF token, which the page sends back as the
  `X-CSRF-Token` header on every POST: a POST that comes with the cookie but without the token is
  refused, so another site cannot make a logged-in browser act.
- A machine sends `Authorization: Bearer <token>`: its user's own token, or the single
  SORTER_API_TOKEN (technician rights, as before users existed).
- Wrong passwords are limited per client address like wrong tokens (controller/api/guard.py).
- `require_role("supervisor")` is the dependency every control endpoint takes; it returns the
  Principal who acts, for the audit.

Sessions are kept in `sessions.db` in the line's data folder (controller/api/session_store.py):
a restart of the service logs nobody out. Each use checks the user still exists and takes the
role the users file gives now.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sorter.controller.api.session_store import Session, SessionStore, session_key, sessions_file_of  # noqa: F401
from sorter.controller.api.guard import LEGACY_TOKEN, GuessLimiter, TokenGuard, clip, token_guard
from sorter.controller.config.auth import AuthConfig, UserEntry, UsersError, all_users, role_rank, token_digest

log = logging.getLogger("sorter.api.auth")

SESSION_COOKIE = "sorter_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
MAX_SESSIONS = 1000
_HASHER = PasswordHasher()
# verified against when the name is unknown, so a wrong name costs as long as a wrong password
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class Principal:
    """Who acts: a user (by session or own token) or the machine token."""
    name: str
    role: str
    via: str          # "session", "user_token", "token"

    def as_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "via": self.via}


MACHINE = Principal("token", "technician", "token")


class Users:
    """The users of the config and the users file; the file is read again when it changes, so a
    `sorter user add` takes effect without a restart. A file that became unreadable keeps the
    users last read (and says so in the log) rather than locking everybody out."""

    def __init__(self, cfg: AuthConfig | None):
        self.cfg = cfg or AuthConfig()
        self._lock = threading.Lock()
        self._sig: tuple | None = None
        self._by_name: dict[str, UserEntry] = {}
        self._by_token: dict[str, UserEntry] = {}
        self.error: str | None = None
        self.refresh()

    def _file_sig(self) -> tuple | None:
        p = self.cfg.users_file
        try:
            st = Path(p).stat() if p is not None else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st is not None else None

    def refresh(self) -> None:
        sig = self._file_sig()
        with self._lock:
            if sig == self._sig and self._by_name:
                return
            try:
                users = all_users(self.cfg)
            except UsersError as exc:
                if self.error != str(exc):
                    log.error("users file refused, the users last read stay: %s", exc)
                self.error = str(exc)
                self._sig = sig
                return
            self.error = None
            self._sig = sig
            self._by_name = {u.name: u for u in users}
            self._by_token = {u.token_sha256: u for u in users if u.token_sha256}

    def get(self, name: str) -> UserEntry | None:
        self.refresh()
        return self._by_name.get(name)

    def by_token(self, token: str) -> UserEntry | None:
        self.refresh()
        return self._by_token.get(token_digest(token))

    def __len__(self) -> int:
        self.refresh()
        return len(self._by_name)


class Auth:
    """The app's users, sessions and the password guess limit (one per app)."""

    def __init__(self, cfg: AuthConfig | None = None, clock: Callable[[], float] = time.monotonic,
                 sessions_file: Path | None = None, wall: Callable[[], float] = time.time):
        """`sessions_file`: where logins outlive a restart (None: in memory only). `clock` times the
        guess limit; `wall` the sessions' expiry, which must mean the same after a reboot."""
        self.cfg = cfg or AuthConfig()
        self.clock = clock
        self.wall = wall
        self.users = Users(self.cfg)
        self.passwords = GuessLimiter("password", clock)
        self.sessions = SessionStore(sessions_file, MAX_SESSIONS, wall)

    @property
    def read_open(self) -> bool:
        return self.cfg.read == "open"

    def has_users(self) -> bool:
        return len(self.users) > 0

    # ---------------------------------------------------------------- machines
    def lookup_token(self, token: str) -> Principal | None:
        u = self.users.by_token(token)
        return Principal(u.name, u.role, "user_token") if u is not None else None

    # ---------------------------------------------------------------- people
    def login(self, client: str, name: str, password: str) -> tuple[str, Session]:
        """(session id, session), or the HTTPException that refuses it (401, or 429 when this
        address has guessed too often)."""
        self.passwords.refuse_if_blocked(client)
        u = self.users.get(name)
        ok = False
        try:
            ok = _HASHER.verify(u.password_hash if u is not None and u.password_hash else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or u is None or not u.password_hash:
            self.passwords.wrong(client)
            raise HTTPException(401, "wrong name or password")
        self.passwords.right(client)
        sid = secrets.token_urlsafe(32)
        s = Session(u.name, u.role, secrets.token_urlsafe(24), self.wall() + self._lifetime_s(),
                    created_wall=self.wall())
        self.sessions.add(session_key(sid), s)
        log.info("login: %s (%s) from %s", u.name, u.role, client)
        return sid, s

    def logout(self, sid: str) -> None:
        if sid:
            self.sessions.remove(session_key(sid))

    def session(self, sid: str | None) -> Session | None:
        """The live session of `sid` (its idle time starts again), or None."""
        if not sid:
            return None
        key = session_key(sid)
        s = self.sessions.get(key)
        if s is None:
            return None
        now = self.wall()
        if now >= s.expires:
            self.sessions.remove(key)
            return None
        # the user's role is what the users file says now (a demoted user loses rights at once)
        u = self.users.get(s.name)
        if u is None:
            self.sessions.remove(key)
            return None
        self.sessions.extend(key, s, now + self._lifetime_s())
        s.role = u.role
        return s

    def _lifetime_s(self) -> float:
        return self.cfg.session_hours * 3600


def app_auth(request: Request) -> Auth:
    auth = getattr(request.app.state, "auth", None)
    if auth is None:
        auth = request.app.state.auth = Auth()
    return auth


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def identify(request: Request, fallback: TokenGuard | None = None) -> Principal | None:
    """Who sends `request` (a session or a bearer token), None for nobody; raises the 401/403/429
    for a wrong token, an expired session, or a POST without its CSRF token."""
    auth = app_auth(request)
    sid = request.cookies.get(SESSION_COOKIE)
    if sid and "authorization" not in request.headers:
        s = auth.session(sid)
        if s is None:
            raise HTTPException(401, "your login has expired: log in again")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), s.csrf.encode()):
                raise HTTPException(403, "CSRF token missing or wrong (reload the page)")
        return Principal(s.name, s.role, "session")
    if "authorization" not in request.headers:
        return None
    who = token_guard(request, fallback).require(request)
    return MACHINE if who == LEGACY_TOKEN else who


def require_role(role: str, fallback: TokenGuard | None = None) -> Callable[[Request], Principal]:
    """The dependency of an endpoint that needs `role` (or a higher one). `fallback`: the token
    guard of a router mounted on an app without create_app's (a test, a tool)."""
    need = role_rank(role)
    if need < 0:
        raise ValueError(f"unknown role {role!r}")

    def dependency(request: Request) -> Principal:
        who = identify(request, fallback)
        if who is None:
            # nobody: the token guard's answer (403 when nothing is configured, else 401)
            token_guard(request, fallback).require(request)
            raise HTTPException(401, "log in or send a bearer token")   # not reached
        if role_rank(who.role) < need:
            raise HTTPException(403, f"{clip(who.name, 64)} is a {who.role}: this needs a {role}")
        request.state.principal = who
        return who

    dependency.__name__ = f"require_{role}"
    return dependency


require_viewer = require_role("viewer")
require_supervisor = require_role("supervisor")
require_technician = require_role("technician")
# what endpoints gated by "the token" before users existed take: the technician's rights
require_token = require_technician


def may_read(request: Request) -> bool:
    """Reading is open, or the request is from a logged-in viewer (or better) or a machine."""
    auth = app_auth(request)
    if auth.read_open:
        return True
    try:
        return identify(request) is not None
    except HTTPException:
        return False


def session_cookie_kwargs(request: Request, max_age_s: float) -> dict[str, Any]:
    return {"key": SESSION_COOKIE, "httponly": True, "samesite": "strict", "path": "/",
            "max_age": int(max_age_s), "secure": request.url.scheme == "https"}


# ---------------------------------------------------------------------------------- endpoints
class Login(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


def auth_router() -> APIRouter:
    """POST /api/login, POST /api/logout, GET /api/me."""
    from sorter.controller.api.audit import audit_record

    r = APIRouter(tags=["auth"])

    @r.post("/api/login", summary="Log in: sets the session cookie, answers the CSRF token for POSTs")
    def login(body: Login, request: Request) -> JSONResponse:
        auth = app_auth(request)
        store = getattr(request.app.state, "store", None)
        try:
            sid, s = auth.login(_client(request), body.name, body.password)
        except HTTPException as exc:
            if exc.status_code == 401:
                audit_record(store, request, Principal(body.name, "?", "login"), "login", None, "refused",
                             "wrong name or password")
            raise
        who = Principal(s.name, s.role, "session")
        audit_record(store, request, who, "login", None, "ok")
        resp = JSONResponse({"name": s.name, "role": s.role, "csrf": s.csrf})
        resp.set_cookie(value=sid, **session_cookie_kwargs(request, auth.cfg.session_hours * 3600))
        return resp

    @r.post("/api/logout", summary="Log out (ends the session)")
    def logout(request: Request, who: Principal = Depends(require_viewer)) -> JSONResponse:
        app_auth(request).logout(request.cookies.get(SESSION_COOKIE, ""))
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @r.get("/api/me", summary="Who this browser is logged in as, and its CSRF token")
    def me(request: Request) -> dict:
        auth = app_auth(request)
        try:
            who = identify(request)
        except HTTPException:
            who = None
        s = auth.session(request.cookies.get(SESSION_COOKIE)) if who is not None and who.via == "session" else None
        return {"user": who.as_dict() if who else None, "csrf": s.csrf if s else None,
                "read": auth.cfg.read, "users": auth.has_users()}

    return r
