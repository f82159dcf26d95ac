"""Users, roles, logins, sessions and CSRF, over real HTTP against the real service (its records,
routing and alarms), with the timing process replaced by reading the end of its pipe: what the
API asks of the line arrives there as the messages the timing process would get."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import subprocess
import sys
import time
from contextlib import closing

import httpx
import pytest
import yaml

from sorter.controller.api.server import ApiServer
from sorter.controller.api.guard import GuessLimiter
from sorter.controller.cli import users as users_cli
from sorter.controller.config.load import load_config
from sorter.controller.config.auth import read_users_file
from sorter.controller.records.store import RecordStore
from sorter.controller.service.service import Service
from sorter.messages import SetChuteEnabled, SetPaused, SetTestMode, SilenceBuzzer
from tests.conftest import ROOT, load_line_config

TOKEN = "machine-token-0123456789"
PASSWORDS = {"vera": "viewer-pass-1", "sam": "super-pass-1", "tess": "tech-pass-12"}
ROLES = {"vera": "viewer", "sam": "supervisor", "tess": "technician"}


def add_user(config, name: str, role: str, password: str | None = None, token: bool = False) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "sorter", "user", "add", name, "--role", role, "--config", str(config)]
    args += ["--password-stdin"] if password is not None else ["--no-password"]
    if token:
        args.append("--token")
    return subprocess.run(args, input=(password or "") + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60)


class Line:
    """The real Service (records, routing, alarms) behind a real HTTP server; `sent()` is what
    reached the timing process's end of the pipe."""

    def __init__(self, cfg, token: str | None = TOKEN):
        self.cfg = cfg
        self.svc = Service(cfg, token=token)
        self.svc.open_records()
        self.svc.open_routing()
        self.svc.timing_conn, self._timing_end = mp.Pipe(duplex=True)
        self.svc.timing_proc = mp.current_process()   # "alive": the snapshot says so
        self.svc._rebuild_snapshot()
        # the API as `sorter run` serves it (controller/api/server.py: every area's endpoints)
        self.srv = ApiServer(self.svc, "127.0.0.1", 0)
        self.srv.start()
        self.url = f"http://127.0.0.1:{self.srv.port}"
        self.app = self.srv.server.config.app

    def sent(self, wait: float = 2.0) -> list:
        out = []
        while self._timing_end.poll(wait if not out else 0):
            out += pickle.loads(self._timing_end.recv_bytes())
        return out

    def client(self) -> httpx.Client:
        # a login verifies an argon2 hash: most of a second of a core, seconds on a loaded machine
        return httpx.Client(base_url=self.url, timeout=60)

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, timeout=60, **kw)

    def login(self, name: str) -> tuple[httpx.Client, str]:
        c = self.client()
        r = c.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
        assert r.status_code == 200, r.text
        return c, r.json()["csrf"]

    def close(self) -> None:
        self.srv.stop()
        self.svc.close_routing()
        self.svc.close_records()
        self.svc.timing_conn.close()
        self._timing_end.close()


@pytest.fixture
def users_config(tmp_path):
    """The example line with three users added by `sorter user add` (the real CLI)."""
    cfg = load_line_config(tmp_path / "line")
    path = tmp_path / "line" / "line.yaml"
    for name, password in PASSWORDS.items():      # what `sorter user add` does (its own test runs it)
        users_cli.add_user(load_config(path), name, ROLES[name], password)
    return path


@pytest.fixture
def line(users_config):
    from sorter.controller.config.load import load_config
    ln = Line(load_config(users_config))
    yield ln
    ln.close()


def test_user_add_writes_hashes_never_the_password(users_config, tmp_path):
    from sorter.controller.config.load import load_config
    cfg = load_config(users_config)
    text = cfg.auth.users_file.read_text(encoding="utf-8")
    for pw in PASSWORDS.values():
        assert pw not in text
    users = {u.name: u for u in read_users_file(cfg.auth.users_file)}
    assert users["sam"].role == "supervisor" and users["sam"].password_hash.startswith("$argon2id$")
    assert cfg.auth.users_file.stat().st_mode & 0o077 == 0          # the hashes are nobody else's to read
    res = add_user(users_config, "plc-gateway", "supervisor", token=True)
    assert res.returncode == 0, res.stderr
    token = res.stdout.split("API token (shown once, keep it): ")[1].strip()
    assert token not in cfg.auth.users_file.read_text(encoding="utf-8")
    assert read_users_file(cfg.auth.users_file)[-1].token_sha256 is not None
    # bad input: a short password, an unknown role
    bad = add_user(users_config, "x", "supervisor", "short")
    assert bad.returncode == 2 and "at least 8" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "sorter", "user", "add", "x", "--role", "boss", "--config",
                          str(users_config), "--no-password"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_a_broken_users_file_names_the_file_and_entry(tmp_path):
    from sorter.controller.config.auth import UsersError
    p = tmp_path / "users.yaml"
    p.write_text(yaml.safe_dump({"users": [{"name": "ok", "role": "viewer"}, {"name": "bad", "role": "boss"}]}))
    with pytest.raises(UsersError) as e:
        read_users_file(p)
    assert f"{p}: users.1.role" in str(e.value)


def test_login_sets_a_strict_httponly_cookie_and_wrong_passwords_are_limited(line):
    with line.client() as c:
        r = c.post("/api/login", json={"name": "sam", "password": PASSWORDS["sam"]})
        assert r.status_code == 200 and r.json()["role"] == "supervisor" and r.json()["csrf"]
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        me = c.get("/api/me").json()
        assert me["user"] == {"name": "sam", "role": "supervisor", "via": "session"} and me["csrf"] == r.json()["csrf"]
    with line.client() as c:
        codes = [c.post("/api/login", json={"name": "sam", "password": "guess"}).status_code
                 for _ in range(GuessLimiter.FREE_TRIES + 3)]
        assert codes[:GuessLimiter.FREE_TRIES] == [401] * GuessLimiter.FREE_TRIES
        assert set(codes[GuessLimiter.FREE_TRIES:]) == {429}
        # blocked: not even the right password is looked at
        r = c.post("/api/login", json={"name": "sam", "password": PASSWORDS["sam"]})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # an unknown name is the same 401 as a wrong password (nobody learns who exists)
    line.app.state.auth.passwords.right("127.0.0.1")
    with line.client() as c:
        r = c.post("/api/login", json={"name": "nobody", "password": "whatever1"})
        assert r.status_code == 401 and r.json()["detail"] == "wrong name or password"
    audit = line.get("/api/audit?limit=50").json()
    assert any(a["action"] == "login" and a["user"] == "sam" and a["result"] == "ok" for a in audit)
    assert any(a["action"] == "login" and a["result"] == "refused" for a in audit)
    assert all("guess" not in str(a) and PASSWORDS["sam"] not in str(a) for a in audit)


def test_a_cookie_post_needs_the_csrf_token(line):
    c, csrf = line.login("sam")
    with closing(c):
        r = c.post("/api/chutes/C03/disable")
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = c.post("/api/chutes/C03/disable", headers={"X-CSRF-Token": "not-it"})
        assert r.status_code == 403
        assert line.sent(0.3) == []                                  # nothing reached the line
        r = c.post("/api/chutes/C03/disable", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json() == {"ok": True, "chute": "C03", "enabled": False}
        assert line.sent() == [SetChuteEnabled("C03", False)]
        r = c.post("/api/logout", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200
        assert c.post("/api/chutes/C03/enable", headers={"X-CSRF-Token": csrf}).status_code == 401
    assert line.sent(0.3) == []


def test_roles_decide_what_each_user_may_do(line):
    v, vcsrf = line.login("vera")
    s, scsrf = line.login("sam")
    t, tcsrf = line.login("tess")
    with closing(v), closing(s), closing(t):
        r = v.post("/api/pause", headers={"X-CSRF-Token": vcsrf})
        assert r.status_code == 403 and "vera is a viewer: this needs a supervisor" == r.json()["detail"]
        assert v.get("/api/status").status_code == 200                # a viewer reads
        assert s.post("/api/pause", headers={"X-CSRF-Token": scsrf}).status_code == 200
        assert line.sent() == [SetPaused(True)]
        r = s.post("/api/routes/reload", headers={"X-CSRF-Token": scsrf})
        assert r.status_code == 403 and "needs a technician" in r.json()["detail"]
        r = t.post("/api/routes/reload", headers={"X-CSRF-Token": tcsrf})
        assert r.status_code == 200 and r.json()["ok"] is True
        # the manifest import is the technician's; a route test (it tells an address) the supervisor's
        assert s.post("/api/manifest", content=b"[]", headers={"X-CSRF-Token": scsrf}).status_code == 403
        assert s.post("/api/routes/test", json={"waybill": "SF1423456789012"},
                      headers={"X-CSRF-Token": scsrf}).status_code == 200
    audit = line.get("/api/audit").json()
    mine = [(a["user"], a["role"], a["action"], a["result"]) for a in audit if a["action"] != "login"]
    assert ("sam", "supervisor", "pause", "ok") in mine and ("tess", "technician", "routes_reload", "ok") in mine
    assert not any(u == "vera" for u, *_ in mine)                    # refused before it was an action


def test_machine_tokens(line, users_config):
    res = add_user(users_config, "wms", "supervisor", token=True)
    token = res.stdout.split("API token (shown once, keep it): ")[1].strip()
    with line.client() as c:
        # a user's own token, picked up from the users file while the line runs
        r = c.post("/api/chutes/C05/disable", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        r = c.post("/api/routes/reload", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403                                     # its user is a supervisor
        # the old single token: a technician
        assert c.post("/api/routes/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.post("/api/pause", headers={"Authorization": "Bearer wrong"}).status_code == 401
    audit = line.get("/api/audit").json()
    assert [a["user"] for a in audit if a["action"] == "chute_disable"] == ["wms"]
    assert [a["user"] for a in audit if a["action"] == "routes_reload"] == ["token"]


def test_login_required_to_read_when_configured(tmp_path):
    from sorter.controller.config.load import load_config
    load_line_config(tmp_path / "line", **{"auth.read": "login"})
    path = tmp_path / "line" / "line.yaml"
    users_cli.add_user(load_config(path), "vera", "viewer", PASSWORDS["vera"])
    ln = Line(load_config(path))
    try:
        with ln.client() as c:
            refused = c.get("/api/status")
            assert refused.status_code == 401
            # the gate's own answers carry the same headers as everything else
            assert refused.headers["x-content-type-options"] == "nosniff" and refused.headers["cache-control"] == "no-store"
            assert c.get("/api/parcels").status_code == 401
            r = c.get("/", follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
            assert "default-src" in r.headers["content-security-policy"]
            assert c.get("/login").status_code == 200 and c.get("/static/login.js").status_code == 200
            assert c.get("/api/me").json()["read"] == "login"
            assert c.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        c, _ = ln.login("vera")
        with closing(c):
            assert c.get("/api/status").status_code == 200 and c.get("/").status_code == 200
    finally:
        ln.close()


def test_acknowledge_keeps_who_and_silences_the_buzzer(line):
    line.svc.alarms.raise_("camera_top", "camera top: no frames for 5 s; reconnecting")
    line.svc._rebuild_snapshot()
    st = line.get("/api/status").json()
    a = next(a for a in st["alarms"] if a["id"] == "camera_top")
    assert a["code"] == "camera_down" and a["params"] == {"camera": "top"} and a["severity"] == "warning"
    assert a["count"] == 1 and a["acked_by"] is None
    c, csrf = line.login("sam")
    with closing(c):
        assert c.post("/api/alarms/camera_top/ack", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert line.sent() == [SilenceBuzzer("sam")]
        assert c.post("/api/alarms/nope/ack", headers={"X-CSRF-Token": csrf}).status_code == 404
        r = c.post("/api/alarms/camera_top/shelve?minutes=30", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200
    a = next(a for a in line.get("/api/status").json()["alarms"] if a["id"] == "camera_top")
    assert a["acked_by"] == "sam" and a["shelved"] is True and a["shelved_by"] == "sam"
    hist = line.get("/api/alarms/history").json()
    assert hist[0]["alarm_id"] == "camera_top" and hist[0]["acked_by"] == "sam"


def test_chute_emptied_starts_its_count_again(line):
    line.svc.stats.add({"outcome": "sorted", "actual_chute": "C02", "chute": "C02", "ended_wall": time.time(),
                        "reads": [], "waybill": "SF1423456789012"})
    line.svc._rebuild_snapshot()
    ch = {c["id"]: c for c in line.get("/api/chutes").json()}
    assert ch["C02"]["count"] == 1 and ch["C02"]["since_emptied"] == 1
    c, csrf = line.login("sam")
    with closing(c):
        assert c.post("/api/chutes/C02/emptied", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert c.post("/api/chutes/NOPE/emptied", headers={"X-CSRF-Token": csrf}).status_code == 404
    ch = {c["id"]: c for c in line.get("/api/chutes").json()}
    assert ch["C02"]["count"] == 1 and ch["C02"]["since_emptied"] == 0 and ch["C02"]["emptied_by"] == "sam"


def test_audit_survives_a_restart(line):
    c, csrf = line.login("sam")
    with closing(c):
        c.post("/api/resume", headers={"X-CSRF-Token": csrf})
    with RecordStore(line.cfg.records.database) as store:       # another connection, as after a restart
        rows = store.recent_audit(5)
    assert rows[0]["user"] == "sam" and rows[0]["action"] == "resume" and rows[0]["result"] == "ok"
    assert rows[0]["client"] == "127.0.0.1" and rows[0]["wall"] > time.time() - 60


def test_test_modes_are_the_technicians(line):
    s, scsrf = line.login("sam")
    t, tcsrf = line.login("tess")
    with closing(s), closing(t):
        r = s.post("/api/line/test-mode?mode=round_robin", headers={"X-CSRF-Token": scsrf})
        assert r.status_code == 403
        r = t.post("/api/line/test-mode?mode=fixed&chute=C03", headers={"X-CSRF-Token": tcsrf})
        assert r.status_code == 200 and r.json()["ok"] is True
        assert line.sent() == [SetTestMode("fixed", "C03", "tess")]
        r = t.post("/api/line/test-mode?mode=fixed&chute=REJECT", headers={"X-CSRF-Token": tcsrf})
        assert r.status_code == 409 and "needs a chute with a diverter" in r.json()["message"]
        assert t.post("/api/line/test-mode?mode=off", headers={"X-CSRF-Token": tcsrf}).status_code == 200
        assert line.sent() == [SetTestMode("off", None, "tess")]


def test_camera_commissioning_is_the_technicians(line):
    """The set-up page's controls (controller/api/commission.py) take the technician role, by
    session as by token; a supervisor is refused before anything reaches the camera."""
    s, scsrf = line.login("sam")
    t, tcsrf = line.login("tess")
    with closing(s), closing(t):
        r = s.post("/api/commission/top/snapshot", headers={"X-CSRF-Token": scsrf})
        assert r.status_code == 403
        r = t.post("/api/commission/top/snapshot", headers={"X-CSRF-Token": tcsrf})
        assert r.status_code not in (401, 403), r.text  # past the gate (no camera frame here: 409 or 503)
        r = httpx.post(line.url + "/api/commission/top/snapshot", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code not in (401, 403), r.text
