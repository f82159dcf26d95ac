"""Login sessions outlive a restart of the service: logged in on one app, the cookie and its CSRF
token still work on the next app started on the same data folder (the real Service behind real
HTTP, as tests/test_auth.py runs it), with the users file of the moment deciding who may act."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from contextlib import closing

import httpx

from sorter.controller.api.auth import SESSION_COOKIE
from sorter.controller.api.session_store import SESSIONS_FILE
from sorter.controller.config.auth import UserEntry, read_users_file, write_users_file
from sorter.controller.config.load import load_config
from sorter.messages import SetChuteEnabled, SetPaused
from tests.test_auth import Line, users_config  # noqa: F401  (users_config: the fixture)


def start(users_config) -> Line:   # noqa: F811
    return Line(load_config(users_config))


def carry(line: Line, sid: str) -> httpx.Client:
    """A browser that kept its cookie, talking to `line`."""
    c = line.client()
    c.cookies.set(SESSION_COOKIE, sid)
    return c


def login(line: Line, name: str) -> tuple[str, str]:
    """(session id from the cookie, CSRF token) of a fresh login of `name`."""
    c, csrf = line.login(name)
    with closing(c):
        return c.cookies[SESSION_COOKIE], csrf


def edit_users(line: Line, change) -> None:
    path = line.cfg.auth.users_file
    write_users_file(path, [v for u in read_users_file(path) if (v := change(u)) is not None])


def sessions_files(line: Line) -> list:
    folder = line.cfg.data_dir
    return sorted(folder.glob(SESSIONS_FILE + "*"))


def test_a_login_and_its_csrf_token_survive_a_restart(users_config):  # noqa: F811
    a = start(users_config)
    try:
        sid, csrf = login(a, "sam")
    finally:
        a.close()
    b = start(users_config)
    try:
        with carry(b, sid) as c:
            me = c.get("/api/me").json()
            assert me["user"] == {"name": "sam", "role": "supervisor", "via": "session"} and me["csrf"] == csrf
            assert c.post("/api/chutes/C03/disable").status_code == 403        # still needs the token
            r = c.post("/api/chutes/C03/disable", headers={"X-CSRF-Token": csrf})
            assert r.status_code == 200, r.text
            assert b.sent() == [SetChuteEnabled("C03", False)]
            audit = b.get("/api/audit?limit=5").json()
            assert audit[0]["user"] == "sam" and audit[0]["action"] == "chute_disable"
    finally:
        b.close()


def test_after_a_restart_the_users_file_of_now_decides(users_config):  # noqa: F811
    a = start(users_config)
    try:
        sam, sam_csrf = login(a, "sam")
        vera, vera_csrf = login(a, "vera")
        tess, tess_csrf = login(a, "tess")
    finally:
        a.close()
    # while the service was down: vera removed, tess demoted to supervisor, sam promoted
    role = {"tess": "supervisor", "sam": "technician"}
    vera_entry = next(u for u in read_users_file(a.cfg.auth.users_file) if u.name == "vera")
    edit_users(a, lambda u: None if u.name == "vera" else
               UserEntry(**{**u.model_dump(), "role": role.get(u.name, u.role)}))
    b = start(users_config)
    try:
        with carry(b, vera) as c:
            assert c.get("/api/me").json()["user"] is None
            assert c.post("/api/chutes/C01/disable", headers={"X-CSRF-Token": vera_csrf}).status_code == 401
        with carry(b, tess) as c:
            assert c.get("/api/me").json()["user"]["role"] == "supervisor"
            r = c.post("/api/routes/reload", headers={"X-CSRF-Token": tess_csrf})
            assert r.status_code == 403 and "tess is a supervisor: this needs a technician" == r.json()["detail"]
            assert c.post("/api/pause", headers={"X-CSRF-Token": tess_csrf}).status_code == 200
            assert b.sent() == [SetPaused(True)]
        with carry(b, sam) as c:
            r = c.post("/api/routes/reload", headers={"X-CSRF-Token": sam_csrf})
            assert r.status_code == 200 and r.json()["ok"] is True
        # removed and put back: the old login stays ended
        write_users_file(b.cfg.auth.users_file, read_users_file(b.cfg.auth.users_file) + [vera_entry])
        assert b.app.state.auth.users.get("vera") is not None
        with carry(b, vera) as c:
            assert c.get("/api/me").json()["user"] is None
    finally:
        b.close()


def test_the_file_holds_no_session_id_and_is_private(users_config):  # noqa: F811
    a = start(users_config)
    try:
        sid, csrf = login(a, "sam")
        files = sessions_files(a)
        assert files and all(f.stat().st_mode & 0o077 == 0 for f in files)
        raw = b"".join(f.read_bytes() for f in files)
        assert sid.encode() not in raw
        with closing(sqlite3.connect(files[0])) as db:
            rows = db.execute("SELECT id_sha256, name, role, csrf, expires_wall FROM sessions").fetchall()
        assert [r[:4] for r in rows] == [(hashlib.sha256(sid.encode()).hexdigest(), "sam", "supervisor", csrf)]
        assert all(sid not in str(r) for r in rows)
    finally:
        a.close()


def test_a_logout_on_one_app_ends_the_session_on_the_other(users_config):  # noqa: F811
    a, b = start(users_config), start(users_config)      # the old service still stopping, the new one up
    try:
        sid, csrf = login(a, "sam")
        with carry(b, sid) as c:
            assert c.get("/api/me").json()["user"]["name"] == "sam"
        with carry(a, sid) as c:
            assert c.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
        with carry(b, sid) as c:
            assert c.get("/api/me").json()["user"] is None
            assert c.post("/api/pause", headers={"X-CSRF-Token": csrf}).status_code == 401
        with closing(sqlite3.connect(sessions_files(a)[0])) as db:
            assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    finally:
        a.close()
        b.close()


def test_a_sessions_file_that_cannot_be_made_still_lets_one_log_in(users_config, caplog):  # noqa: F811
    cfg = load_config(users_config)
    (cfg.data_dir / SESSIONS_FILE).mkdir(parents=True)    # in its way: nothing can open it (even as root)
    caplog.set_level(logging.WARNING, logger="sorter.api.sessions")
    a = start(users_config)
    try:
        sid, csrf = login(a, "sam")
        login(a, "vera")
        with carry(a, sid) as c:
            assert c.post("/api/chutes/C02/disable", headers={"X-CSRF-Token": csrf}).status_code == 200
            assert c.get("/api/me").json()["user"]["name"] == "sam"
            assert c.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
            assert c.get("/api/me").json()["user"] is None
        sid, _ = login(a, "sam")
    finally:
        a.close()
    warnings = [r for r in caplog.records if r.name == "sorter.api.sessions" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "in memory" in warnings[0].getMessage()
    b = start(users_config)
    try:
        with carry(b, sid) as c:                             # memory only: not across a restart
            assert c.get("/api/me").json()["user"] is None
    finally:
        b.close()


def test_a_sessions_file_that_refuses_writes_still_lets_one_log_in_and_out(users_config, caplog):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="sorter.api.sessions")
    a = start(users_config)
    try:
        early, early_csrf = login(a, "tess")              # in the file
        # another process holds the file's write lock (as a stuck writer would): no write gets in
        with closing(sqlite3.connect(sessions_files(a)[0], isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            sid, csrf = login(a, "sam")
            with carry(a, sid) as c:
                assert c.post("/api/chutes/C04/disable", headers={"X-CSRF-Token": csrf}).status_code == 200
            with carry(a, early) as c:
                assert c.post("/api/logout", headers={"X-CSRF-Token": early_csrf}).status_code == 200
                assert c.get("/api/me").json()["user"] is None   # its row could not go: refused all the same
            other.execute("ROLLBACK")
        with carry(a, early) as c:
            assert c.get("/api/me").json()["user"] is None
        with carry(a, sid) as c:
            assert c.get("/api/me").json()["user"]["name"] == "sam"
        login(a, "vera")                                   # the file takes writes again: the ended row goes
        with closing(sqlite3.connect(sessions_files(a)[0])) as db:
            names = {r[0] for r in db.execute("SELECT name FROM sessions")}
        assert names == {"vera"}
    finally:
        a.close()
    warnings = [r for r in caplog.records if r.name == "sorter.api.sessions" and r.levelno == logging.WARNING]
    assert len(warnings) == 1


def test_an_expired_session_is_refused_and_its_row_removed(users_config, monkeypatch):  # noqa: F811
    a = start(users_config)
    try:
        sid, csrf = login(a, "sam")
        auth = a.app.state.auth
        later = auth.wall() + auth.cfg.session_hours * 3600 + 1
        monkeypatch.setattr(auth, "wall", lambda: later)
        with carry(a, sid) as c:
            assert c.get("/api/me").json()["user"] is None
        with closing(sqlite3.connect(sessions_files(a)[0])) as db:
            assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    finally:
        a.close()
