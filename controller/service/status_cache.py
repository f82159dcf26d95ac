"""The status snapshot, serialised once per change and shared by every reader.

A room of wall screens polls `GET /api/status` once a second each and holds `GET /api/events` open;
building the JSON (16 KB with the recent parcels) per request costs the service process's GIL that
the record writer and the timing pipe need. So the supervisor publishes each new snapshot here
once, the bytes are made then, and every reader gets the same immutable :class:`Published`.

Thread-safe without a lock on the read side: a publication is one object, swapped in by a single
attribute assignment. Subscribers (the SSE endpoint's event loop) are called from the publishing
thread and must only schedule work, never block.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None; walks dicts, lists and tuples."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _fallback(value: Any) -> Any:
    """A value JSON has no type for (a numpy integer, a Path ...): its number, else its text. The
    supervisor publishes the snapshot: an odd value must not stop it."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            v = item()
            if isinstance(v, (int, float, str, bool)) or v is None:
                return json_safe(v)
        except (TypeError, ValueError):
            pass
    if not _fallback_logged:
        _fallback_logged.append(type(value).__name__)
        log.warning("status snapshot: a %s value sent as text", type(value).__name__)
    return str(value)


_fallback_logged: list[str] = []


def to_json_bytes(obj: Any) -> bytes:
    # allow_nan=False: json_safe has removed NaN and inf, so the bytes are valid JSON for a browser
    return json.dumps(json_safe(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=_fallback).encode()


@dataclass(frozen=True)
class Published:
    version: int          # 1, 2, 3 ... per publication
    snapshot: dict        # the snapshot itself (readers must not change it)
    body: bytes           # its JSON, NaN as null
    wall: float           # when it was published (epoch seconds)

    @property
    def etag(self) -> str:
        return f'"s{self.version}"'


class StatusCache:
    """The latest published snapshot. `publish()` from one thread (the supervisor), `latest()` from
    any."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._latest: Published | None = None
        self._version = 0
        self._subscribers: list[Callable[[Published], None]] = []
        self._sub_lock = threading.Lock()

    def publish(self, snapshot: dict) -> Published:
        body = to_json_bytes(snapshot)
        prev = self._latest
        if prev is not None and prev.body == body:
            return prev  # nothing changed: readers and SSE clients keep what they have
        self._version += 1
        pub = Published(self._version, snapshot, body, self._clock())
        self._latest = pub
        with self._sub_lock:
            subs = list(self._subscribers)
        for fn in subs:
            try:
                fn(pub)
            except Exception:  # noqa: BLE001 - a reader's problem must not stop the supervisor
                pass
        return pub

    def latest(self) -> Published | None:
        return self._latest

    def subscribe(self, fn: Callable[[Published], None]) -> None:
        with self._sub_lock:
            self._subscribers.append(fn)

    def unsubscribe(self, fn: Callable[[Published], None]) -> None:
        with self._sub_lock:
            if fn in self._subscribers:
                self._subscribers.remove(fn)


class PulledStatus:
    """A `status()` callable (tests, tools) seen as a cache: serialised again only when it returns
    another object than last time. A snapshot must be replaced, not changed in place, as the
    service's is. It publishes nothing by itself: SSE readers of it fall back on their tick."""

    def __init__(self, status: Callable[[], dict], clock: Callable[[], float] = time.time):
        self._status = status
        self._clock = clock
        self._obj: Any = None  # held, so that its id cannot be reused by another dict
        self._pub: Published | None = None
        self._lock = threading.Lock()

    def latest(self) -> Published | None:
        obj = self._status()
        if not isinstance(obj, dict):
            raise TypeError(f"status() returned {type(obj).__name__}, not a dict")
        with self._lock:
            if self._pub is not None and obj is self._obj:
                return self._pub
            body = to_json_bytes(obj)
            version = (self._pub.version if self._pub else 0) + (0 if self._pub and self._pub.body == body else 1)
            self._obj, self._pub = obj, Published(version, obj, body, self._clock())
            return self._pub

    def subscribe(self, fn: Callable[[Published], None]) -> None:
        pass

    def unsubscribe(self, fn: Callable[[Published], None]) -> None:
        pass
