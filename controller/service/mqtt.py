"""MQTT: the line's availability, state, parcel events, alarms and statistics, published to the
site's broker (paho-mqtt 2, its v2 callback API) from the service process.

Topics (all under `<topic_prefix>/<line_id>/`, README *A site of several lines*):

    availability   "online" / "offline", retained; "offline" is also the last will, so the broker
                   says it when the line PC dies or its network goes
    state          the line state, retained, on each change: {"state", "reason", "test_mode", …}
    parcel         one JSON event per parcel outcome, not retained, in order: {"seq", "run_id",
                   "parcel_id", "waybill", "outcome", "chute", …}
    alarms         the active alarms, retained, on each change: [{"key", "text", …}]
    stats          counts, throughput and read rate, retained, every `stats_interval_s`

Everything is QoS 1 through one client, so the broker gets it in the order it was made. The
guarantee: a message published while the broker is away waits in paho's queue (up to
`queue_max`), and one sent but not acknowledged when the connection broke is sent again after the
reconnect: at least once, in order, for as long as this process lives. A restart of the controller
loses what was still queued (the records themselves are in the database and the site database),
and a subscriber sees a resent event twice: `seq` (per run) tells it so.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Callable

log = logging.getLogger("sorter.mqtt")
_PARCEL_KEYS = ("run_id", "parcel_id", "waybill", "carrier", "destination", "sort_code", "chute", "actual_chute",
                "outcome", "reason", "induct_wall", "ended_wall", "routing_version", "rule", "fire_error_ms")


class MqttPublisher:
    def __init__(self, cfg, line_id: str, status: Callable[[], dict] | None = None, password: str | None = None,
                 tick_s: float = 1.0):
        self.cfg, self.line_id, self._status, self.password, self.tick_s = cfg, line_id, status, password, tick_s
        self.base = f"{cfg.topic_prefix.rstrip('/')}/{line_id}"
        self.connected = False
        self.connects = 0
        self.published = 0   # handed to paho
        self.acked = 0       # PUBACK from the broker
        self.dropped = 0     # refused: paho's queue was full
        self.seq = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()  # seq order == publish order
        self._stop = threading.Event()
        self._last_state: str | None = None
        self._last_alarms: str | None = None
        self._next_stats = 0.0
        self.client = None

    @classmethod
    def from_config(cls, cfg, status: Callable[[], dict] | None = None) -> "MqttPublisher":
        m = cfg.site.mqtt
        password = None
        if m.password_env:
            password = os.environ.get(m.password_env)
            if password is None:
                raise ValueError(f"site.mqtt.password_env: environment variable {m.password_env} is not set")
        return cls(m, cfg.site.line_id, status, password)

    def topic(self, leaf: str) -> str:
        return f"{self.base}/{leaf}"

    # ---------------------------------------------------------------- the part
    def start(self) -> None:
        import paho.mqtt.client as mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id or f"sorter-{self.line_id}",
                        protocol=mqtt.MQTTv311, clean_session=True)
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.password)
        c.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=self.cfg.reconnect_max_s)
        c.max_queued_messages_set(self.cfg.queue_max)
        c.max_inflight_messages_set(20)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c
        # connects in the background and keeps reconnecting: a broker that is away never stops the line
        c.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        c.loop_start()
        self._ticker = threading.Thread(target=self._tick, name="mqtt-ticker", daemon=True)
        self._ticker.start()

    def stop(self, timeout: float = 3) -> None:
        """Say "offline" (retained) and disconnect cleanly; what the broker has not taken within
        `timeout` is lost with the process (the records are in the database)."""
        self._stop.set()
        self._ticker.join(5)
        c = self.client
        info = c.publish(self.topic("availability"), "offline", qos=1, retain=True)
        end = time.monotonic() + timeout
        while self.connected and time.monotonic() < end and (self.acked < self.published or not info.is_published()):
            time.sleep(0.02)
        c.disconnect()
        c.loop_stop()

    def status(self) -> dict[str, Any]:
        return {"broker": f"{self.cfg.host}:{self.cfg.port}", "topic": self.base, "connected": self.connected,
                "connects": self.connects, "published": self.published, "acked": self.acked,
                "queued": max(self.published - self.acked, 0), "dropped": self.dropped, "last_error": self.last_error}

    # ---------------------------------------------------------------- what is published
    def on_record(self, rec: dict) -> None:
        """A parcel's outcome (the service calls this for every record, in order)."""
        with self._lock:
            self.seq += 1
            event = {"seq": self.seq, "line_id": self.line_id, **{k: rec.get(k) for k in _PARCEL_KEYS},
                     "reads": len(rec.get("reads") or [])}
            self._publish("parcel", event, retain=False)

    def _publish(self, leaf: str, payload: Any, retain: bool) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, default=str)
        info = self.client.publish(self.topic(leaf), data, qos=1, retain=retain)
        if info.rc == 0 or info.rc == 4:  # 4 = MQTT_ERR_NO_CONN: queued, sent once connected
            self.published += 1
        else:
            self.dropped += 1
            self.last_error = f"message to {leaf} dropped (paho rc {info.rc}: queue of {self.cfg.queue_max} full?)"

    def _tick(self) -> None:
        """State and alarms on change, stats at their interval, from the service snapshot."""
        while not self._stop.wait(self.tick_s):
            try:
                self.publish_status(force=False)
            except Exception:  # noqa: BLE001 - a bad snapshot must not end the publisher
                log.exception("mqtt: publishing the status failed")

    def publish_status(self, force: bool) -> None:
        st = self._status() if self._status is not None else None
        if not st:
            return
        line = st.get("line") or {}
        with self._lock:
            state = {"state": line.get("state"), "reason": line.get("state_reason"),
                     "test_mode": line.get("test_mode"), "since_wall": line.get("state_since_wall"),
                     "induct_enable": line.get("induct_enable")}
            text = json.dumps(state, ensure_ascii=False, default=str)
            if force or text != self._last_state:
                self._last_state = text
                self._publish("state", text, retain=True)
            alarms = json.dumps(st.get("alarms") or [], ensure_ascii=False, default=str)
            if force or alarms != self._last_alarms:
                self._last_alarms = alarms
                self._publish("alarms", alarms, retain=True)
            if force or time.monotonic() >= self._next_stats:
                self._next_stats = time.monotonic() + self.cfg.stats_interval_s
                counts = st.get("counts") or {}
                self._publish("stats", {"counts": counts, "throughput_pph": st.get("throughput_pph"),
                                        "read_rate": st.get("read_rate"), "wall": time.time()}, retain=True)

    # ---------------------------------------------------------------- paho callbacks (its thread)
    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.warning("mqtt: %s", self.last_error)
            return
        self.connected = True
        self.connects += 1
        log.info("mqtt: connected to %s:%d, publishing under %s/", self.cfg.host, self.cfg.port, self.base)
        with self._lock:
            self._publish("availability", "online", retain=True)
        try:
            self.publish_status(force=True)  # a restarted broker without persistence has lost the retained ones
        except Exception:  # noqa: BLE001
            log.exception("mqtt: publishing the status failed")

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if self.connected:
            log.warning("mqtt: connection to %s:%d lost (%s); reconnecting", self.cfg.host, self.cfg.port, reason_code)
        self.connected = False
        if not self._stop.is_set():
            self.last_error = f"disconnected: {reason_code}"

    def _on_publish(self, _client, _userdata, _mid, _reason_code, _properties) -> None:
        self.acked += 1
