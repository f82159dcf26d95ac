"""Uploads to carriers and the platform: the outbox in a real SQLite records file, POSTed over real
HTTP to a small receiver in the test that behaves as a carrier's should: it checks the signature,
keeps each idempotency key once, and can be down, failing, or slow to answer. The sender is also
killed with SIGKILL in the middle of a batch."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import uvicorn

from sorter.controller.config.site import UploadTarget
from sorter.controller.records.outbox import Outbox
from sorter.controller.records.store import RecordStore
from sorter.controller.service.uploads import Uploads
from tests.conftest import ROOT
from tests.servers import free_port
from tests.test_processes import wait_for

SECRET = b"zto-signing-key"


def record(run_id: str, pid: int, waybill: bool = True) -> dict:
    return {"run_id": run_id, "parcel_id": pid, "induct_wall": 1_700_000_000.0 + pid, "ended_wall": 1_700_000_002.0 + pid,
            "reads": [], "waybill": f"ZT{pid:012d}" if waybill else None, "carrier": "ZTO" if waybill else None,
            "destination": "泽国镇", "chute": "C03", "actual_chute": "C03", "outcome": "sorted", "reason": ""}


class Receiver:
    """A carrier's webhook: 200 for a signed batch, keys kept once (a key seen again is a
    re-delivery, answered 200 and not stored twice)."""

    def __init__(self, secret: bytes = SECRET):
        self.secret, self.port = secret, free_port()
        self.accepted: dict[str, dict] = {}   # key -> event, first delivery
        self.order: list[str] = []
        self.redeliveries = 0
        self.requests = 0
        self.status = 200                     # what it answers (503: failing)
        self.hold = threading.Event()         # set: the next batch is taken, then the answer waits
        self.holding = threading.Event()      # a batch is held
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sig = "sha256=" + hmac.new(rx.secret, body, hashlib.sha256).hexdigest()
                with rx.lock:
                    rx.requests += 1
                if not hmac.compare_digest(sig, self.headers.get("X-Sorter-Signature", "")):
                    return self._answer(401, b"bad signature")
                if rx.status != 200:
                    return self._answer(rx.status, b"try later")
                events = json.loads(body)["events"]
                keys = self.headers["Idempotency-Key"].split(",")
                assert keys == [e["key"] for e in events]
                with rx.lock:
                    for e in events:
                        if e["key"] in rx.accepted:
                            rx.redeliveries += 1
                        else:
                            rx.accepted[e["key"]] = e
                            rx.order.append(e["key"])
                if rx.hold.is_set():
                    rx.hold.clear()
                    rx.holding.set()
                    rx.release.wait(60)
                self._answer(200, b"ok")

            def _answer(self, code: int, text: bytes):
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the sender is gone

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None


@pytest.fixture
def receiver():
    rx = Receiver()
    yield rx
    rx.release.set()
    rx.down()


def target(url: str, **kw) -> UploadTarget:
    return UploadTarget(name="zto", url=url, secret_env="ZTO_KEY", **{"batch_size": 10, "backoff_s": 0.05,
                                                                       "backoff_max_s": 0.3, **kw})


def test_outbox_holds_an_arrival_and_a_sort_event_per_parcel_once(tmp_path):
    db = tmp_path / "records.db"
    with RecordStore(db) as store:
        store.write_many([record("old", 1)])  # before uploads were switched on: never uploaded
        sf = UploadTarget(name="sf", url="http://127.0.0.1:9/", carriers=["SF"])
        arrivals = UploadTarget(name="platform", url="http://127.0.0.1:9/", events=["arrival"])
        box = Outbox(db, "L1", [target("http://127.0.0.1:9/"), sf, arrivals])
        store.write_many([record("r", i) for i in range(1, 6)] + [record("r", 6, waybill=False)])
    assert box.fill() == 6
    assert box.fill() == 0  # the cursor moved with the rows: nothing is made twice
    counts = box.counts()
    assert counts["zto"]["pending"] == 10    # 5 parcels with a waybill x (arrival, sort)
    assert counts["sf"]["pending"] == 0      # none of them is SF's
    assert counts["platform"]["pending"] == 5
    assert box.due("zto", 1)[0][1] == "L1:r:1:arrival"
    ev = json.loads(box.due("zto", 2)[1][2])
    assert ev["key"] == "L1:r:1:sort" and ev["event"] == "sort" and ev["chute"] == "C03" and ev["outcome"] == "sorted"
    box.close()


def test_a_receiver_down_for_a_while_gets_every_event_exactly_once(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("ZTO_KEY", SECRET.decode())
    db = tmp_path / "records.db"
    store = RecordStore(db)
    up = Uploads(db, "L1", [target(receiver.url)], {"zto": SECRET})
    store.write_many(record("run1", i) for i in range(1, 61))
    up.start()
    try:
        wait_for(lambda: up.senders["zto"].failures_in_row >= 3, 30, "failed tries while the receiver is down")
        store.write_many(record("run1", i) for i in range(61, 101))  # the line goes on
        wait_for(lambda: up.status()["targets"][0]["pending"] == 200, 30, "the outbox to hold 200 events")
        st = up.status()["targets"][0]
        assert "Connection refused" in st["last_error"] or "ConnectionRefused" in st["last_error"]
        assert st["failed"] == 0 and st["sent"] == 0
        receiver.up()
        wait_for(lambda: len(receiver.accepted) == 200, 60, "every event delivered")
        up._counts_at = 0
        wait_for(lambda: up.status()["targets"][0]["pending"] == 0, 30, "the outbox to mark them sent")
    finally:
        up.stop()
        store.close()
    assert receiver.redeliveries == 0
    expected = [f"L1:run1:{i}:{e}" for i in range(1, 101) for e in ("arrival", "sort")]
    assert receiver.order == expected  # in the line's order
    assert up.status()["targets"][0]["sent"] == 200


def test_dead_letters_are_shown_and_resent_through_the_api_with_the_token(tmp_path, receiver):
    from sorter.controller.api.app import create_app
    db = tmp_path / "records.db"
    receiver.up()
    receiver.status = 503
    up = Uploads(db, "L1", [target(receiver.url, max_tries=3, batch_size=20)], {"zto": SECRET})
    with RecordStore(db) as store:
        store.write_many(record("run2", i) for i in range(1, 6))
    up.start()

    class Control:  # what the service offers the API (Service.resend_uploads)
        def resend_uploads(self, name):
            return up.resend(name)

    port = free_port()
    app = create_app(up.status, RecordStore(db), control=Control(), token="t0ken")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        wait_for(lambda: server.started, 10, "the API")
        wait_for(lambda: up.status()["targets"][0]["failed"] == 10, 30, "10 dead-lettered events")
        st = up.status()["targets"][0]
        assert st["pending"] == 0 and st["last_error"].startswith("HTTP 503")
        assert receiver.requests == 3
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/api/uploads/resend?target=zto").status_code == 401
        assert httpx.post(f"{base}/api/uploads/resend?target=nope",
                          headers={"Authorization": "Bearer t0ken"}).status_code == 404
        receiver.status = 200
        r = httpx.post(f"{base}/api/uploads/resend?target=zto", headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 200 and r.json()["resent"] == 10
        wait_for(lambda: len(receiver.accepted) == 10, 30, "the re-sent events")
        up._counts_at = 0
        wait_for(lambda: up.status()["targets"][0]["sent"] == 10, 30, "them marked sent")
    finally:
        server.should_exit = True
        th.join(5)
        up.stop()


def test_a_wrong_signing_key_is_refused_and_dead_lettered(tmp_path, receiver):
    db = tmp_path / "records.db"
    receiver.up()
    up = Uploads(db, "L1", [target(receiver.url, max_tries=2)], {"zto": b"not-the-key"})
    with RecordStore(db) as store:
        store.write_many([record("run3", 1)])
    up.start()
    try:
        wait_for(lambda: up.status()["targets"][0]["failed"] == 2, 30, "dead letters")
    finally:
        up.stop()
    assert up.senders["zto"].last_error.startswith("HTTP 401") and not receiver.accepted


SENDER = """
import sys, time
from sorter.controller.config.site import UploadTarget
from sorter.controller.service.uploads import Uploads
t = UploadTarget(name="zto", url=sys.argv[2], batch_size=10, backoff_s=0.05, backoff_max_s=0.3, timeout_s=60)
up = Uploads(sys.argv[1], "L1", [t], {"zto": sys.argv[3].encode()})
up.start()
print("started", flush=True)
while True:
    time.sleep(0.1)
    if up.outbox.counts()["zto"]["pending"] == 0 and up.outbox.fill() == 0:
        break
up.stop()
print("done", flush=True)
"""


def test_kill_9_of_the_sender_mid_batch_redelivers_only_what_the_receiver_already_has(tmp_path, receiver):
    db = tmp_path / "records.db"
    Outbox(db, "L1", [target(receiver.url)]).close()  # uploads switched on, then the parcels come
    with RecordStore(db) as store:
        store.write_many(record("run4", i) for i in range(1, 41))
    receiver.up()
    receiver.hold.set()  # the first batch is taken, and its answer waits: the sender dies meanwhile
    cmd = [sys.executable, "-c", SENDER, str(db), receiver.url, SECRET.decode()]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert receiver.holding.wait(60), first.stderr.read() if first.poll() is not None else "no batch came"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
        first.stdout.close()
        first.stderr.close()
    receiver.release.set()
    held = len(receiver.accepted)
    with sqlite3.connect(db) as c:  # the batch the receiver took is not marked sent: the kill came first
        assert c.execute("SELECT COUNT(*) FROM outbox WHERE state = 'sent'").fetchone()[0] == 0
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(receiver.accepted) == 80  # distinct keys == 40 parcels x 2 events
    assert receiver.redeliveries == held == 10  # the held batch came again, and only it
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM outbox WHERE state = 'sent'").fetchone()[0] == 80
    print(f"\nkill -9 mid-batch: {len(receiver.accepted)} distinct keys accepted, {receiver.redeliveries} "
          f"re-deliveries dropped by key, {receiver.requests} requests")


def test_sign_matches_an_independent_hmac():
    from sorter.controller.service.uploads import sign
    body = json.dumps({"events": []}).encode()
    assert sign(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    with socket.socket():
        pass
