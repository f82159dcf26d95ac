"""Real-time lookup of waybills the manifest does not have (a carrier's or the platform's HTTP API).

The timing process never waits for it: `Router.decide` runs there on the hot path (no threads, no
blocking I/O). Instead the service process, which relays every camera read, hands each read to a
`LookupService` the moment it arrives (while the parcel is still in the scan zone). Its worker
threads ask the manifest whether the waybill is known; if not, they query the API with a timeout
that fits the parcel's decision budget, and write the answer into the manifest (SQLite, WAL),
where the timing process's decision finds it with its usual primary-key lookup. A waybill the
lookup could not answer gets a note (`lookup_status`: pending, not_found, timeout, error,
circuit_open, bad_answer) that the decision gives as its `no_route` reason.

`LookupClient` is the HTTP part: stdlib `http.client`, a deadline for the whole request, an LRU
cache with TTLs (found and not-found answers), counters, and a circuit breaker that stops asking
a dead service for a cool-down after repeated failures.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from sorter.controller.routing.carriers import normalise
from sorter.controller.routing.manifest import Manifest, _header_map, validate_row

log = logging.getLogger("sorter.lookup")

FOUND, NOT_FOUND, TIMEOUT, ERROR, BAD_ANSWER, CIRCUIT_OPEN, PENDING = (
    "found", "not_found", "timeout", "error", "bad_answer", "circuit_open", "pending")
MAX_BODY = 64 * 1024
TWO_D = frozenset({"qrcode", "qr", "datamatrix", "pdf417", "aztec"})


@dataclass(frozen=True)
class LookupResult:
    state: str                 # FOUND, NOT_FOUND, TIMEOUT, ERROR, BAD_ANSWER, CIRCUIT_OPEN
    row: tuple | None = None   # a manifest row in COLUMNS order when FOUND
    reason: str = ""
    ms: float = 0.0
    cached: bool = False


class LookupClient:
    """Blocking HTTP query for one waybill (call it from a worker thread), thread safe."""

    def __init__(self, url: str, timeout_s: float = 0.25, cache_size: int = 50_000, ttl_s: float = 600.0,
                 negative_ttl_s: float = 60.0, breaker_failures: int = 5, breaker_cooldown_s: float = 10.0,
                 headers: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic):
        self.url, self.timeout_s = url, float(timeout_s)
        self.cache_size, self.ttl_s, self.negative_ttl_s = int(cache_size), float(ttl_s), float(negative_ttl_s)
        self.breaker_failures, self.breaker_cooldown_s = int(breaker_failures), float(breaker_cooldown_s)
        self.headers = {"Accept": "application/json", "User-Agent": "sorter-lookup/1", **(headers or {})}
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, LookupResult]] = OrderedDict()
        self._lock = threading.Lock()
        self._fails = 0              # consecutive failures
        self._open_until = 0.0       # circuit open until this clock time
        self._trial = False          # one trial query in flight while half-open
        self.counters = {"queries": 0, FOUND: 0, NOT_FOUND: 0, TIMEOUT: 0, ERROR: 0, BAD_ANSWER: 0,
                         CIRCUIT_OPEN: 0, "cache_hits": 0, "circuit_opened": 0}
        self._ms: list[float] = []

    # ---- cache ----------------------------------------------------------------------
    def _cached(self, key: str) -> LookupResult | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            if hit[0] < self.clock():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            self.counters["cache_hits"] += 1
            return hit[1]

    def _remember(self, key: str, res: LookupResult) -> None:
        ttl = self.ttl_s if res.state == FOUND else self.negative_ttl_s if res.state == NOT_FOUND else 0
        if ttl <= 0 or self.cache_size <= 0:
            return
        with self._lock:
            self._cache[key] = (self.clock() + ttl, res)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    # ---- circuit breaker ------------------------------------------------------------
    def circuit_open(self) -> bool:
        return self.clock() < self._open_until

    def _admit(self) -> bool:
        with self._lock:
            now = self.clock()
            if now < self._open_until:
                return False
            if self._fails >= self.breaker_failures:  # half-open: one trial at a time
                if self._trial:
                    return False
                self._trial = True
            return True

    def _outcome(self, ok: bool) -> None:
        with self._lock:
            self._trial = False
            if ok:
                self._fails = 0
                return
            self._fails += 1
            if self._fails >= self.breaker_failures:
                self._open_until = self.clock() + self.breaker_cooldown_s
                self.counters["circuit_opened"] += 1

    # ---- the query ------------------------------------------------------------------
    def query(self, waybill: str, carrier: str | None = None) -> LookupResult:
        key = f"{carrier or ''}/{waybill}"
        hit = self._cached(key)
        if hit is not None:
            return LookupResult(hit.state, hit.row, hit.reason, 0.0, True)
        if not self._admit():
            self._count(CIRCUIT_OPEN, None)
            return LookupResult(CIRCUIT_OPEN, None, f"service failed {self._fails} times in a row; "
                                f"not asked for {self.breaker_cooldown_s:g} s")
        t0 = time.perf_counter()
        res = self._http(waybill, carrier, t0)
        ms = (time.perf_counter() - t0) * 1000
        res = LookupResult(res.state, res.row, res.reason, ms)
        self._outcome(res.state in (FOUND, NOT_FOUND))
        self._count(res.state, ms)
        self._remember(key, res)
        return res

    def _count(self, state: str, ms: float | None) -> None:
        with self._lock:
            self.counters[state] += 1
            if ms is not None:
                self.counters["queries"] += 1
                self._ms.append(ms)
                if len(self._ms) > 2000:
                    del self._ms[:1000]

    def _http(self, waybill: str, carrier: str | None, t0: float) -> LookupResult:
        url = self.url.format(waybill=quote(waybill, safe=""), carrier=quote(carrier or "", safe=""))
        u = urlsplit(url)
        deadline = t0 + self.timeout_s

        def left() -> float:
            r = deadline - time.perf_counter()
            if r <= 0:
                raise socket.timeout("deadline")
            return r

        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname or "", u.port, timeout=left())
        try:
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            conn.request("GET", path, headers=self.headers)
            conn.sock.settimeout(left())
            resp = conn.getresponse()
            chunks, size = [], 0
            while True:
                if conn.sock is not None:
                    conn.sock.settimeout(left())
                b = resp.read1(16384) if hasattr(resp, "read1") else resp.read(16384)
                if not b:
                    break
                size += len(b)
                if size > MAX_BODY:
                    return LookupResult(BAD_ANSWER, None, f"answer larger than {MAX_BODY} bytes")
                chunks.append(b)
            left()
            status = resp.status
        except (socket.timeout, TimeoutError):
            return LookupResult(TIMEOUT, None, f"no answer within {self.timeout_s * 1000:.0f} ms")
        except (OSError, http.client.HTTPException) as exc:
            return LookupResult(ERROR, None, f"{type(exc).__name__}: {exc}"[:200])
        finally:
            conn.close()
        if status == 404:
            return LookupResult(NOT_FOUND, None, "the service does not know it")
        if status != 200:
            return LookupResult(ERROR, None, f"HTTP {status}")
        try:
            data = json.loads(b"".join(chunks).decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return LookupResult(BAD_ANSWER, None, f"not JSON: {exc}"[:200])
        return parse_answer(waybill, data)


def parse_answer(waybill: str, data) -> LookupResult:
    """An API's JSON answer -> a validated manifest row. Accepted: an object with the manifest's
    column names (as in a CSV header: town/乡镇, sort_code/三段码, address/地址, carrier, service,
    weight_kg, intercept), possibly under "data"; {"found": false} or {} is not found."""
    if isinstance(data, Mapping) and isinstance(data.get("data"), Mapping):
        data = data["data"]
    if not isinstance(data, Mapping):
        return LookupResult(BAD_ANSWER, None, f"expected a JSON object, got {type(data).__name__}")
    if data.get("found") is False or not data:
        return LookupResult(NOT_FOUND, None, "the service does not know it")
    obj = {k: v for k, v in data.items() if k != "found"}
    keys = _header_map(obj.keys())
    vals = list(obj.values())
    given = {c: (vals[keys[c]] if c in keys else None) for c in keys}
    if given.get("waybill") is not None and normalise(str(given["waybill"])) != waybill:
        return LookupResult(BAD_ANSWER, None, f"answer is for waybill {str(given['waybill'])[:40]!r}")
    given["waybill"] = waybill
    rec, problem = validate_row(given.get)
    if rec is None:
        return LookupResult(BAD_ANSWER, None, (problem or "bad answer")[:200])
    return LookupResult(FOUND, rec, "")


class LookupService:
    """Looks up, in the background, the waybills of camera reads that the manifest does not have.

    `submit_codes` / `submit` never block (a bounded queue; a full one drops the read and counts
    it); a waybill is asked about once per `repeat_s` however many frames read it.
    """

    def __init__(self, client: LookupClient, manifest_path: str | Path, carriers_fn: Callable[[], object],
                 only: Iterable[str] = (), workers: int = 4, max_pending: int = 1000, repeat_s: float = 30.0,
                 budget_s: float | None = None):
        self.client = client
        self.manifest_path = Path(manifest_path)
        self.carriers_fn = carriers_fn          # () -> CarrierTable in force (follows reloads)
        self.only = frozenset(c.upper() for c in only)
        self.repeat_s = repeat_s
        self.budget_s = budget_s
        self._q: queue.Queue = queue.Queue(maxsize=max_pending)
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._local = threading.local()
        self._stop = threading.Event()
        self.counters = {"submitted": 0, "dropped": 0, "in_manifest": 0, "stored": 0, "late": 0,
                         "store_errors": 0}
        Manifest(self.manifest_path).close()    # create the file and tables now, not in a worker
        self._threads = [threading.Thread(target=self._work, name=f"lookup-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    @classmethod
    def from_config(cls, cfg, router) -> "LookupService | None":
        """The service of a line config (None without `routing.lookup`). The timeout is capped at
        the parcel's decision budget: the time a parcel takes through the scan zone plus the
        decision grace (a later answer could not route it anyway)."""
        lc = getattr(cfg.routing, "lookup", None)
        if lc is None:
            return None
        budget = decision_budget_s(cfg)
        timeout = min(lc.timeout_ms / 1000, budget)
        if timeout < lc.timeout_ms / 1000:
            log.warning("lookup timeout %.0f ms capped at the decision budget %.0f ms", lc.timeout_ms, budget * 1000)
        headers = {}
        if lc.token_env and os.environ.get(lc.token_env):
            headers["Authorization"] = f"Bearer {os.environ[lc.token_env]}"
        client = LookupClient(lc.url, timeout, lc.cache_size, lc.cache_ttl_s, lc.negative_ttl_s,
                              lc.breaker_failures, lc.breaker_cooldown_s, headers)
        return cls(client, cfg.routing.manifest, lambda: router.carriers, lc.carriers, lc.workers,
                   lc.max_pending, budget_s=budget)

    # ---- called by the service process for every read (cheap, never blocks) ------------
    def submit_codes(self, codes: Iterable[tuple]) -> None:
        """A camera frame's codes as relayed: (symbology, text, ...) each."""
        for c in codes:
            self.submit(c[0], c[1])

    def submit(self, symbology: str | None, text: str | None) -> None:
        if not text or self._stop.is_set():
            return
        carriers = self.carriers_fn()
        if carriers.is_product_code(symbology, text):
            return
        if (symbology or "").lower() in TWO_D:
            found = carriers.find_waybills(text)
        else:
            t = normalise(text)
            code = carriers.identify(t)
            found = [(t, code)] if code is not None else []
        now = time.monotonic()
        for wb, code in found:
            if self.only and code not in self.only:
                continue
            with self._seen_lock:
                t_seen = self._seen.get(wb)
                if t_seen is not None and now - t_seen < self.repeat_s:
                    continue
                self._seen[wb] = now
                self._seen.move_to_end(wb)
                while len(self._seen) > 100_000:
                    self._seen.popitem(last=False)
            try:
                self._q.put_nowait((wb, code, now))
                self.counters["submitted"] += 1
            except queue.Full:
                self.counters["dropped"] += 1
                with self._seen_lock:
                    self._seen.pop(wb, None)

    # ---- worker threads ---------------------------------------------------------------
    def _manifest(self) -> Manifest:
        m = getattr(self._local, "m", None)
        if m is None:
            m = self._local.m = Manifest(self.manifest_path)
        return m

    def _work(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                item = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                self._q.task_done()
                break
            wb, code, t_sub = item
            try:
                self._one(wb, code, t_sub)
            except Exception as exc:  # a worker never dies of one waybill
                self.counters["store_errors"] += 1
                log.warning("lookup of %s failed: %s", wb, exc)
            finally:
                self._q.task_done()
            n += 1
            if n % 10_000 == 0:
                try:
                    self._manifest().prune_lookup_notes()
                except Exception:
                    pass
        m = getattr(self._local, "m", None)
        if m is not None:
            m.close()

    def _one(self, wb: str, code: str | None, t_sub: float) -> None:
        m = self._manifest()
        if m.lookup_row(wb) is not None:
            self.counters["in_manifest"] += 1
            return
        if not self.client.circuit_open():
            # best effort, never holding up the query: a bulk import may hold the write lock
            try:
                m._db.execute("PRAGMA busy_timeout = 20")
                m.note_lookup(wb, PENDING, "asked the service, no answer yet")
            except sqlite3.OperationalError:
                pass
            finally:
                m._db.execute("PRAGMA busy_timeout = 10000")
        res = self.client.query(wb, code)
        if res.state == FOUND and res.row is not None:
            m.answer_lookup(res.row)
            self.counters["stored"] += 1
            if self.budget_s is not None and time.monotonic() - t_sub > self.budget_s:
                self.counters["late"] += 1
        else:
            m.note_lookup(wb, res.state, res.reason or None)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """For tests: True once every submitted lookup has been handled."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._q.unfinished_tasks == 0:
                return True
            time.sleep(0.005)
        return False

    def stats(self) -> dict:
        c = self.client
        ms = sorted(c._ms)
        pct = (lambda q: round(ms[min(len(ms) - 1, int(q * len(ms)))], 1)) if ms else (lambda q: None)
        return {**self.counters, **c.counters, "pending": self._q.qsize(), "circuit_open": c.circuit_open(),
                "timeout_ms": round(c.timeout_s * 1000, 1),
                "budget_ms": None if self.budget_s is None else round(self.budget_s * 1000, 1),
                "ms_p50": pct(0.5), "ms_p99": pct(0.99)}

    def close(self) -> None:
        self._stop.set()
        for _ in self._threads:
            try:
                self._q.put_nowait(None)
            except queue.Full:
                break
        for t in self._threads:
            t.join(max(1.0, self.client.timeout_s + 0.5))


def decision_budget_s(cfg) -> float:
    """How long after a parcel's first read its decision is made at the latest: the scan zone's
    transit time at the nominal belt speed plus the decision grace. A lookup answer later than
    this cannot route the parcel."""
    line = cfg.line
    zone_mm = max(0.0, line.scan_zone.end_mm - line.scan_zone.start_mm)
    return zone_mm / (line.belt_speed_mps * 1000) + line.decision_grace_ms / 1000
