"""MQTT: the publisher against a real Mosquitto (tests/servers.py) with a real paho subscriber, as
Home Assistant or Node-RED would subscribe. Every parcel event arrives, in order; the broker is
restarted mid-run and the events queued meanwhile arrive after the reconnect; the last will says
"offline" when the line's process is killed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from sorter.controller.config.site import MqttConfig
from sorter.controller.service.mqtt import MqttPublisher
from tests.conftest import ROOT
from tests.servers import mosquitto  # noqa: F401 - the fixture
from tests.test_processes import wait_for

mqtt = pytest.importorskip("paho.mqtt.client")


class Subscriber:
    """A persistent session (clean_session=False) with QoS 1: the broker keeps its messages across
    the subscriber's own reconnect and, with persistence, across a broker restart."""

    def __init__(self, port: int, topic: str = "sorter/#", client_id: str = "test-sub"):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        assert self.subscribed.wait(10), "subscriber did not subscribe"

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def seqs(self, topic: str = "sorter/L1/parcel") -> list[int]:
        return [json.loads(p)["seq"] for p in self.on(topic)]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def record(pid: int) -> dict:
    return {"run_id": "run-m", "parcel_id": pid, "waybill": f"YT{pid:013d}", "carrier": "YTO", "destination": "城南镇",
            "chute": "C07", "actual_chute": "C07", "outcome": "sorted", "reason": "", "ended_wall": 1.7e9 + pid,
            "reads": [{"camera": "top", "symbology": "code128", "text": f"YT{pid:013d}"}]}


STATUS = {"line": {"state": "running", "state_reason": "", "test_mode": None, "induct_enable": True},
          "alarms": [{"key": "camera_top", "text": "camera top: no frames"}],
          "counts": {"total": 3, "outcomes": {"sorted": 3}}, "throughput_pph": 9000, "read_rate": 0.98}


def publisher(port: int, status=lambda: STATUS, **kw) -> MqttPublisher:
    cfg = MqttConfig(host="127.0.0.1", port=port, reconnect_max_s=2, **kw)
    p = MqttPublisher(cfg, "L1", status, tick_s=0.1)
    p.start()
    return p


def test_every_parcel_event_arrives_in_order_with_retained_availability_and_state(mosquitto):
    sub = Subscriber(mosquitto.port)
    pub = publisher(mosquitto.port)
    try:
        wait_for(lambda: pub.connected, 10, "the publisher to connect")
        for pid in range(1, 501):
            pub.on_record(record(pid))
        wait_for(lambda: len(sub.seqs()) >= 500, 30, "500 parcel events")
        assert sub.seqs() == list(range(1, 501))
        ev = json.loads(sub.on("sorter/L1/parcel")[-1])
        assert ev["parcel_id"] == 500 and ev["outcome"] == "sorted" and ev["chute"] == "C07" and ev["reads"] == 1
        assert sub.on("sorter/L1/availability")[-1] == b"online"
        assert json.loads(sub.on("sorter/L1/state")[-1])["state"] == "running"
        assert json.loads(sub.on("sorter/L1/alarms")[-1])[0]["key"] == "camera_top"
        assert json.loads(sub.on("sorter/L1/stats")[-1])["throughput_pph"] == 9000
        wait_for(lambda: pub.status()["queued"] == 0, 10, "every message acknowledged")
        # a newcomer (a dashboard opened now) gets the retained topics at once
        late = Subscriber(mosquitto.port, client_id="late-sub")
        wait_for(lambda: late.on("sorter/L1/state"), 10, "the retained state")
        assert late.on("sorter/L1/availability") == [b"online"] and not late.on("sorter/L1/parcel")
        late.close()
    finally:
        pub.stop()
        sub.close()
    # a clean stop says offline, retained
    after = Subscriber(mosquitto.port, client_id="after-sub")
    wait_for(lambda: after.on("sorter/L1/availability"), 10, "the retained availability")
    assert after.on("sorter/L1/availability") == [b"offline"]
    after.close()


def test_a_line_state_change_is_published_once(mosquitto):
    st = {"line": {"state": "running"}, "alarms": []}
    sub = Subscriber(mosquitto.port)
    pub = publisher(mosquitto.port, status=lambda: st)
    try:
        wait_for(lambda: sub.on("sorter/L1/state"), 10, "the first state")
        st = {"line": {"state": "paused", "state_reason": "paused by a supervisor"}, "alarms": []}
        wait_for(lambda: len(sub.on("sorter/L1/state")) >= 2, 10, "the paused state")
        time.sleep(0.5)  # several ticks: no repeat while nothing changes
        states = [json.loads(p)["state"] for p in sub.on("sorter/L1/state")]
        assert states == ["running", "paused"]
    finally:
        pub.stop()
        sub.close()


def test_broker_restarted_mid_run_loses_no_queued_event(mosquitto):
    sub = Subscriber(mosquitto.port)
    pub = publisher(mosquitto.port)
    try:
        wait_for(lambda: pub.connected, 10, "the publisher to connect")
        for pid in range(1, 201):
            pub.on_record(record(pid))
            time.sleep(0.002)
        mosquitto.stop()  # the site's broker goes down; the line goes on
        wait_for(lambda: not pub.connected, 10, "the publisher to see it")
        for pid in range(201, 401):
            pub.on_record(record(pid))
        assert pub.status()["queued"] >= 200
        time.sleep(1.0)
        mosquitto.start()
        for pid in range(401, 501):
            pub.on_record(record(pid))
            time.sleep(0.002)
        wait_for(lambda: set(range(1, 501)) <= set(sub.seqs()), 60, "every event after the restart")
        wait_for(lambda: pub.status()["queued"] == 0, 20, "every message acknowledged")
    finally:
        pub.stop()
        sub.close()
    seqs = sub.seqs()
    first = list(dict.fromkeys(seqs))
    assert first == list(range(1, 501))  # every event, in order (a resend may repeat one: seq tells)
    assert pub.status()["connects"] >= 2 and pub.status()["dropped"] == 0
    print(f"\nbroker restart: 500 events, {len(seqs) - 500} duplicates (resent after the reconnect), "
          f"0 lost, {pub.status()['connects']} connects")


PUBLISHER = """
import sys, time
from sorter.controller.config.site import MqttConfig
from sorter.controller.service.mqtt import MqttPublisher
p = MqttPublisher(MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), keepalive_s=5), "L9", None)
p.start()
while not p.connected:
    time.sleep(0.05)
print("connected", flush=True)
time.sleep(600)
"""


def test_last_will_says_offline_when_the_line_process_is_killed(mosquitto):
    sub = Subscriber(mosquitto.port, topic="sorter/L9/availability")
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(mosquitto.port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "connected", proc.stderr.read()
        wait_for(lambda: sub.on("sorter/L9/availability") == [b"online"], 10, "online")
        proc.kill()
        proc.wait(10)
        wait_for(lambda: sub.on("sorter/L9/availability")[-1:] == [b"offline"], 20, "the last will")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
        sub.close()
