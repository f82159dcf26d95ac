"""Uploads to carriers and the county platform: the outbox's events POSTed to one HTTP webhook
per target, in the service process.

Per target, one thread sends the oldest pending events in batches of `batch_size`, in order:

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <key>[,<key>…]          the keys of the events in the body, in order
    X-Sorter-Signature: sha256=<hex>         HMAC-SHA256 of the body with the target's key (secret_env)
    <the target's headers>

    {"line_id": "L1", "target": "zto", "sent_wall": …, "events": [{"key": …, "event": "arrival", …}, …]}

Any 2xx marks the batch sent. Anything else (no answer, a 5xx, a 4xx) is a failed try for each
event in it: the target waits `backoff_s`, doubled with each failure in a row up to
`backoff_max_s`, and an event that failed `max_tries` times is dead-lettered (shown on the page,
re-sent from there). Delivery is at least once: after a crash between the receiver's answer and
the mark, the batch is sent again with the same keys, and the receiver drops the keys it has (it
should answer 2xx to a key it already has).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from sorter.controller.records.outbox import Outbox

log = logging.getLogger("sorter.uploads")
FILL_S = 0.5       # how often new records become outbox events
COUNTS_S = 2.0     # the status counts are read at most this often (a GROUP BY over the outbox)


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[bool, str]:
    """(ok, what happened): ok for a 2xx answer."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the configured target
            resp.read(65536)
            return True, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        text = exc.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
        return False, f"HTTP {exc.code}" + (f": {text}" if text else "")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{type(reason).__name__}: {reason}"


class TargetSender:
    """Sends one target's events; a thread of its own."""

    def __init__(self, outbox: Outbox, target, line_id: str, secret: bytes | None,
                 post: Callable[[str, bytes, dict[str, str], float], tuple[bool, str]] = http_post,
                 clock: Callable[[], float] = time.time):
        self.outbox, self.t, self.line_id, self.secret = outbox, target, line_id, secret
        self.post, self.clock = post, clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.failures_in_row = 0
        self.batches = 0
        self.last_error: str | None = None
        self.last_ok_wall: float | None = None
        self.retry_at_wall: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"upload-{target.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        """Try now (a re-send from the page), whatever the back-off."""
        self.failures_in_row = 0
        self._wake.set()

    def backoff_s(self) -> float:
        return min(self.t.backoff_s * 2 ** max(self.failures_in_row - 1, 0), self.t.backoff_max_s)

    def send_once(self) -> int | None:
        """Send one batch. Returns how many events were in it (0: none due), None when it failed."""
        batch = self.outbox.due(self.t.name, self.t.batch_size)
        if not batch:
            return 0
        ids = [b[0] for b in batch]
        keys = [b[1] for b in batch]
        now = self.clock()
        body = json.dumps({"line_id": self.line_id, "target": self.t.name, "sent_wall": now,
                           "events": [json.loads(b[2]) for b in batch]}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")
        headers = {**self.t.headers, "Content-Type": "application/json", "Idempotency-Key": ",".join(keys),
                   "User-Agent": "sorter-uploads"}
        if self.secret is not None:
            headers["X-Sorter-Signature"] = sign(self.secret, body)
        ok, what = self.post(self.t.url, body, headers, self.t.timeout_s)
        if ok:
            self.outbox.mark_sent(ids, self.clock())
            self.failures_in_row, self.last_ok_wall, self.retry_at_wall = 0, self.clock(), None
            self.batches += 1
            return len(ids)
        self.failures_in_row += 1
        self.last_error = what
        dead = self.outbox.mark_failed(ids, what, self.t.max_tries, self.clock())
        if self.failures_in_row == 1 or dead:
            log.warning("upload to %s failed (%s)%s", self.t.name, what,
                        f"; {dead} events dead-lettered after {self.t.max_tries} tries" if dead else "")
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.send_once()
            except Exception as exc:  # noqa: BLE001 - the outbox's database failed: try again later
                self.last_error = f"outbox: {type(exc).__name__}: {exc}"
                log.error("upload to %s: %s", self.t.name, self.last_error)
                n = None
                self.failures_in_row += 1
            if n is None:
                wait = self.backoff_s()
                self.retry_at_wall = self.clock() + wait
                self._wake.wait(wait)
                self._wake.clear()
            elif n == 0:
                self._wake.wait(FILL_S)
                self._wake.clear()


class Uploads:
    """The part: the outbox filler and one sender per target."""

    def __init__(self, records_path, line_id: str, targets: list, secrets: dict[str, bytes | None],
                 post=http_post):
        self.outbox = Outbox(records_path, line_id, targets)
        self.senders = {t.name: TargetSender(self.outbox, t, line_id, secrets.get(t.name), post) for t in targets}
        self._stop = threading.Event()
        self._filler = threading.Thread(target=self._fill, name="upload-outbox", daemon=True)
        self.fill_error: str | None = None
        self._counts: dict = {}
        self._counts_at = 0.0

    @classmethod
    def from_config(cls, cfg) -> "Uploads":
        secrets: dict[str, bytes | None] = {}
        for i, t in enumerate(cfg.site.uploads):
            secrets[t.name] = None
            if t.secret_env:
                value = os.environ.get(t.secret_env)
                if not value:
                    raise ValueError(f"site.uploads.{i}.secret_env: environment variable {t.secret_env} is not set "
                                     f"(the signing key of upload target {t.name})")
                secrets[t.name] = value.encode("utf-8")
        return cls(cfg.records.database, cfg.site.line_id, list(cfg.site.uploads), secrets)

    def start(self) -> None:
        self.outbox.fill()
        self._filler.start()
        for s in self.senders.values():
            s.start()

    def stop(self) -> None:
        """What is not sent stays pending in the outbox, for the next start."""
        self._stop.set()
        self._filler.join(5)
        try:
            self.outbox.fill()  # the last records of the run become events now, not at the next start
        except Exception as exc:  # noqa: BLE001
            log.warning("outbox: last fill failed (%s); done at the next start", exc)
        for s in self.senders.values():
            s.stop()
        self.outbox.close()

    def _fill(self) -> None:
        while not self._stop.wait(FILL_S):
            try:
                while self.outbox.fill() and not self._stop.is_set():
                    pass
                self.fill_error = None
            except Exception as exc:  # noqa: BLE001 - the records database is busy or failing: next round
                self.fill_error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox fill failed: %s", self.fill_error)

    def resend(self, target: str | None = None) -> int | None:
        """Dead-lettered events of one target (None: every target) back to pending, sent now.
        None when there is no such target."""
        if target is not None and target not in self.senders:
            return None
        n = self.outbox.resend(target)
        for name, s in self.senders.items():
            if target is None or name == target:
                s.wake()
        self._counts_at = 0.0
        log.info("uploads: %d dead-lettered events of %s re-sent", n, target or "every target")
        return n

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._counts_at >= COUNTS_S:
            try:
                self._counts, self._counts_at = self.outbox.counts(), now
            except Exception as exc:  # noqa: BLE001
                self.fill_error = f"{type(exc).__name__}: {exc}"
        targets = []
        for name, s in self.senders.items():
            c = self._counts.get(name, {})
            targets.append({"name": name, "url": s.t.url, "pending": c.get("pending", 0), "sent": c.get("sent", 0),
                            "failed": c.get("dead", 0), "last_error": s.last_error or c.get("last_error"),
                            "last_ok_wall": s.last_ok_wall, "failures_in_row": s.failures_in_row,
                            "retry_at_wall": s.retry_at_wall if s.failures_in_row else None})
        return {"targets": targets, "pending": sum(t["pending"] for t in targets),
                "failed": sum(t["failed"] for t in targets), "fill_error": self.fill_error}
